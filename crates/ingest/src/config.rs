//! `granttrail.toml`: the optional settings the CLI and the Lambda share (documented in the
//! README).

use granttrail_grants::Settings;
use granttrail_grants::findings::RulesConfig;
use serde::Deserialize;

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// How calls are matched to grants and labelled.
    pub labels: Settings,
    /// Which findings are raised, and allowlists.
    pub findings: RulesConfig,
    /// How long stored records are kept.
    pub store: StoreConfig,
}

/// `[store]`: retention of the stored records.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `granttrail prune` drops the records of calls older than this many days (default:
    /// keep everything). See `granttrail_grants::retention` for what is always kept.
    pub keep_call_records_days: Option<u32>,
}

impl Config {
    /// Parses the text of a `granttrail.toml`; the error says what is wrong and where.
    pub fn from_toml(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        let labels = &config.labels;
        if labels.consistency_window_seconds < 0 || labels.clock_tolerance_seconds < 0 {
            return Err("time windows cannot be negative".into());
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use granttrail_grants::settings::KeyCase;

    #[test]
    fn partial_config_keeps_defaults() {
        let c = Config::from_toml(
            "[labels]\nconsistency_window_seconds = 60\nconstraint_key_case = \"sensitive\"\n",
        )
        .unwrap();
        assert_eq!(c.labels.consistency_window_seconds, 60);
        assert_eq!(c.labels.constraint_key_case, KeyCase::Sensitive);
        assert_eq!(c.labels.clock_tolerance_seconds, Settings::DEFAULT_CLOCK_TOLERANCE_SECONDS);
        assert!(Config::from_toml("[labels]\nwindow = 1\n").is_err(), "typos are errors");
        assert!(Config::from_toml("[labels]\nclock_tolerance_seconds = -1\n").is_err());
    }
}
