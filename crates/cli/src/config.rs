//! `granttrail.toml`: optional settings, documented in the README.

use std::path::{Path, PathBuf};

use anyhow::Context;
use granttrail_grants::Settings;
use serde::Deserialize;

/// The name looked for in the working directory when `--config` is not given.
pub const DEFAULT_CONFIG: &str = "granttrail.toml";

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// How calls are matched to grants and labelled.
    pub labels: Settings,
    /// Which findings are raised, and allowlists.
    pub findings: granttrail_grants::findings::RulesConfig,
}

/// Loads `--config PATH`, or `granttrail.toml` in the working directory if present, or the
/// defaults.
pub fn load(explicit: Option<&Path>) -> anyhow::Result<Config> {
    let path: PathBuf = match explicit {
        Some(p) => p.to_path_buf(),
        None if Path::new(DEFAULT_CONFIG).is_file() => PathBuf::from(DEFAULT_CONFIG),
        None => return Ok(Config::default()),
    };
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("cannot read config {}", path.display()))?;
    let config: Config = toml::from_str(&text).with_context(|| format!("config {}", path.display()))?;
    let labels = &config.labels;
    if labels.consistency_window_seconds < 0 || labels.clock_tolerance_seconds < 0 {
        anyhow::bail!("config {}: time windows cannot be negative", path.display());
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use granttrail_grants::settings::KeyCase;

    #[test]
    fn partial_config_keeps_defaults() {
        let c: Config = toml::from_str(
            "[labels]\nconsistency_window_seconds = 60\nconstraint_key_case = \"sensitive\"\n",
        )
        .unwrap();
        assert_eq!(c.labels.consistency_window_seconds, 60);
        assert_eq!(c.labels.constraint_key_case, KeyCase::Sensitive);
        assert_eq!(c.labels.clock_tolerance_seconds, Settings::DEFAULT_CLOCK_TOLERANCE_SECONDS);
        assert!(toml::from_str::<Config>("[labels]\nwindow = 1\n").is_err(), "typos are errors");
    }
}
