//! `granttrail prune`: drop the records of old calls, keeping everything the evidence rests on.

use granttrail_store::Location;
use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use granttrail_grants::{retention, timestamp};

use crate::config::Config;
use crate::grants_cmd::open_existing;
use crate::parse_time;

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Keep the records of calls made in the last N days (default: `[store]
    /// keep_call_records_days` of the settings file).
    #[arg(long, value_name = "N")]
    keep_days: Option<u32>,

    /// The time the days are counted back from, and the findings are evaluated at (default:
    /// now).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    as_of: Option<i64>,
}

pub fn run(db: &Location, config: &Config, args: &PruneArgs) -> anyhow::Result<ExitCode> {
    let Some(days) = args.keep_days.or(config.store.keep_call_records_days) else {
        bail!(
            "say how many days of call records to keep: --keep-days N, or keep_call_records_days under [store] in granttrail.toml"
        );
    };
    let mut store = open_existing(db)?;
    store.use_settings(&config.labels, false)?;
    let now = args.as_of.unwrap_or_else(granttrail_ingest::now);
    let cutoff = now - i64::from(days) * retention::DAY;
    let (pruned, cited) = store.prune_call_records(&config.findings, now, days)?;
    // Closed first: the freed pages leave the file when its write-ahead log is checkpointed.
    drop(store);
    let size = match db {
        Location::File(path) => {
            let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            format!(" {db} is now {:.1} MB.", bytes as f64 / 1e6)
        }
        // PostgreSQL's autovacuum reuses the space; the database does not shrink on disk.
        Location::Postgres(_) => String::new(),
    };
    println!(
        "dropped the records of {} call(s) made before {} ({:.1} MB compressed); kept the records of grant \
         lifecycle and key events, events outside KMS, and the {} event(s) findings and grant-only labels cite.{size}",
        pruned.records,
        timestamp::format(cutoff),
        pruned.bytes as f64 / 1e6,
        cited,
    );
    Ok(ExitCode::SUCCESS)
}
