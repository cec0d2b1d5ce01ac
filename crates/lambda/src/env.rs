//! The function's configuration, from its environment variables.

use granttrail_cloudtrail::digest::PublicKeys;
use granttrail_ingest::Config;
use granttrail_store::Location;

/// What the function is told by its environment (see infra/README.md).
#[derive(Debug, Clone)]
pub struct Env {
    /// `GRANTTRAIL_DB`: the SQLite file on the durable file system, or a `postgres://` URL
    /// (without its password when `GRANTTRAIL_DB_SECRET_ARN` gives it).
    pub db: Location,
    /// `GRANTTRAIL_DB_SECRET_ARN`: a Secrets Manager secret whose JSON `password` (and
    /// `username`, when the URL names no user) the function connects to PostgreSQL with.
    pub db_secret_arn: Option<String>,
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
        let db = Location::parse(&set("GRANTTRAIL_DB").unwrap_or_else(|| DEFAULT_DB.to_string()))
            .map_err(|e| format!("GRANTTRAIL_DB: {e}"))?;
        let db_secret_arn = set("GRANTTRAIL_DB_SECRET_ARN");
        if db_secret_arn.is_some() && !matches!(db, Location::Postgres(_)) {
            return Err("GRANTTRAIL_DB_SECRET_ARN is set but GRANTTRAIL_DB is not a postgres:// URL".into());
        }
        Ok(Env {
            db,
            db_secret_arn,
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
        assert_eq!(env.db, Location::File(DEFAULT_DB.into()));
        assert!(env.findings_topic_arn.is_none() && env.snapshot.is_none());
        let env = Env::from_vars(|name| match name {
            "GRANTTRAIL_DB" => Some("/tmp/x.db".into()),
            "GRANTTRAIL_SNAPSHOT_BUCKET" => Some("snaps".into()),
            "GRANTTRAIL_SNAPSHOT_PREFIX" => Some("granttrail/".into()),
            "GRANTTRAIL_FINDINGS_TOPIC_ARN" => Some(" ".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(env.db, Location::File("/tmp/x.db".into()));
        let pg = Env::from_vars(|name| match name {
            "GRANTTRAIL_DB" => {
                Some("postgres://granttrail@db.internal:5432/granttrail?sslmode=require".into())
            }
            "GRANTTRAIL_DB_SECRET_ARN" => {
                Some("arn:aws:secretsmanager:us-east-1:111122223333:secret:db".into())
            }
            _ => None,
        })
        .unwrap();
        assert!(matches!(pg.db, Location::Postgres(_)) && pg.db_secret_arn.is_some());
        let secret_for_a_file = Env::from_vars(|name| match name {
            "GRANTTRAIL_DB_SECRET_ARN" => {
                Some("arn:aws:secretsmanager:us-east-1:111122223333:secret:db".into())
            }
            _ => None,
        });
        assert!(secret_for_a_file.unwrap_err().contains("not a postgres:// URL"));
        let other_engine = Env::from_vars(|n| (n == "GRANTTRAIL_DB").then(|| "mysql://db/x".into()));
        assert!(other_engine.unwrap_err().contains("GRANTTRAIL_DB: mysql://"));
        assert_eq!(env.snapshot, Some(("snaps".into(), "granttrail/".into())));
        assert!(env.findings_topic_arn.is_none(), "blank means unset");
        let missing = Env::from_vars(|n| (n == "GRANTTRAIL_CONFIG").then(|| "/nonexistent.toml".into()));
        assert!(missing.unwrap_err().contains("GRANTTRAIL_CONFIG /nonexistent.toml"));
        let keys = Env::from_vars(|n| (n == "GRANTTRAIL_PUBLIC_KEYS").then(|| "/nonexistent.json".into()));
        assert!(keys.unwrap_err().contains("GRANTTRAIL_PUBLIC_KEYS /nonexistent.json"));
    }
}
