//! The function's configuration, from its environment variables.

use std::path::PathBuf;

use granttrail_cloudtrail::digest::PublicKeys;
use granttrail_ingest::Config;

/// What the function is told by its environment (see infra/README.md).
#[derive(Debug, Clone)]
pub struct Env {
    /// `GRANTTRAIL_DB`: the SQLite file, on the durable file system.
    pub db: PathBuf,
    /// `GRANTTRAIL_FINDINGS_TOPIC_ARN`: where new findings go (none: not published).
    pub findings_topic_arn: Option<String>,
    /// `GRANTTRAIL_SNAPSHOT_BUCKET` and `GRANTTRAIL_SNAPSHOT_PREFIX`: where snapshots go.
    pub snapshot: Option<(String, String)>,
    /// `GRANTTRAIL_CONFIG`: a granttrail.toml, parsed.
    pub config: Config,
    /// `GRANTTRAIL_PUBLIC_KEYS`: the output of `aws cloudtrail list-public-keys`, parsed, to
    /// check each arriving digest's signature (none: signatures are not checked).
    pub public_keys: Option<PublicKeys>,
}

/// Where the database lives when `GRANTTRAIL_DB` is not set: the template's EFS mount.
pub const DEFAULT_DB: &str = "/mnt/granttrail/granttrail.db";

impl Env {
    /// Reads the configuration through `var` (the process environment in the binary).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Env, String> {
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let config = match set("GRANTTRAIL_CONFIG") {
            None => Config::default(),
            Some(path) => {
                let text =
                    std::fs::read_to_string(&path).map_err(|e| format!("GRANTTRAIL_CONFIG {path}: {e}"))?;
                Config::from_toml(&text).map_err(|e| format!("GRANTTRAIL_CONFIG {path}: {e}"))?
            }
        };
        let public_keys = match set("GRANTTRAIL_PUBLIC_KEYS") {
            None => None,
            Some(path) => {
                let bytes =
                    std::fs::read(&path).map_err(|e| format!("GRANTTRAIL_PUBLIC_KEYS {path}: {e}"))?;
                Some(PublicKeys::parse(&bytes).map_err(|e| format!("GRANTTRAIL_PUBLIC_KEYS {path}: {e}"))?)
            }
        };
        Ok(Env {
            db: PathBuf::from(set("GRANTTRAIL_DB").unwrap_or_else(|| DEFAULT_DB.to_string())),
            findings_topic_arn: set("GRANTTRAIL_FINDINGS_TOPIC_ARN"),
            snapshot: set("GRANTTRAIL_SNAPSHOT_BUCKET")
                .map(|bucket| (bucket, set("GRANTTRAIL_SNAPSHOT_PREFIX").unwrap_or_default())),
            config,
            public_keys,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let env = Env::from_vars(|_| None).unwrap();
        assert_eq!(env.db, PathBuf::from(DEFAULT_DB));
        assert!(env.findings_topic_arn.is_none() && env.snapshot.is_none());
        let env = Env::from_vars(|name| match name {
            "GRANTTRAIL_DB" => Some("/tmp/x.db".into()),
            "GRANTTRAIL_SNAPSHOT_BUCKET" => Some("snaps".into()),
            "GRANTTRAIL_SNAPSHOT_PREFIX" => Some("granttrail/".into()),
            "GRANTTRAIL_FINDINGS_TOPIC_ARN" => Some(" ".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(env.db, PathBuf::from("/tmp/x.db"));
        assert_eq!(env.snapshot, Some(("snaps".into(), "granttrail/".into())));
        assert!(env.findings_topic_arn.is_none(), "blank means unset");
        let missing = Env::from_vars(|n| (n == "GRANTTRAIL_CONFIG").then(|| "/nonexistent.toml".into()));
        assert!(missing.unwrap_err().contains("GRANTTRAIL_CONFIG /nonexistent.toml"));
        let keys = Env::from_vars(|n| (n == "GRANTTRAIL_PUBLIC_KEYS").then(|| "/nonexistent.json".into()));
        assert!(keys.unwrap_err().contains("GRANTTRAIL_PUBLIC_KEYS /nonexistent.json"));
    }
}
