//! Finding `granttrail.toml` (see [`Config`] for what it holds).

use std::path::{Path, PathBuf};

use anyhow::Context;
pub use granttrail_ingest::Config;

/// The name looked for in the working directory when `--config` is not given.
pub const DEFAULT_CONFIG: &str = "granttrail.toml";

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
    Config::from_toml(&text).map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))
}
