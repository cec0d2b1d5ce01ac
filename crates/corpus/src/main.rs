//! `granttrail-corpus`: writes a deterministic (seeded) CloudTrail bucket in the S3 key layout
//! for benchmarks and scale tests: several accounts and regions, realistic identities, request
//! parameters and user agents, 1-2 KB records, a chosen share of KMS records including grant
//! lifecycles (CreateGrant, uses, RetireGrant, RevokeGrant) and their uses.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use clap::Parser;

/// Write a synthetic CloudTrail bucket.
#[derive(Debug, Parser)]
#[command(name = "granttrail-corpus", version)]
struct Args {
    /// Folder to write `AWSLogs/...` into (created; existing files are overwritten).
    #[arg(long)]
    out: PathBuf,
    /// Records in the whole corpus.
    #[arg(long, default_value_t = 200_000)]
    records: u64,
    /// Share of KMS records, from 0 to 1.
    #[arg(long, default_value_t = 0.15)]
    kms_share: f64,
    /// Share of KMS records that create a grant (0.6 times as many end one), at most 0.5.
    #[arg(long, default_value_t = 0.01)]
    grant_share: f64,
    /// Number of log files; records are spread over them unevenly, as real delivery is.
    #[arg(long, default_value_t = 100)]
    files: u64,
    #[arg(long, default_value_t = 4)]
    accounts: u64,
    #[arg(long, default_value_t = 3)]
    regions: u64,
    /// Seed of the generator: the same seed writes the same bytes.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Write the files uncompressed (`.json`) instead of gzip.
    #[arg(long)]
    plain: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !(0.0..=1.0).contains(&args.kms_share) {
        anyhow::bail!("--kms-share must be between 0 and 1");
    }
    if !(0.0..=0.5).contains(&args.grant_share) {
        anyhow::bail!("--grant-share must be between 0 and 0.5");
    }
    let summary = granttrail_corpus::write_corpus(&granttrail_corpus::Options {
        out: args.out,
        records: args.records,
        kms_share: args.kms_share,
        grant_share: args.grant_share,
        files: args.files.max(1),
        accounts: args.accounts.clamp(1, 50),
        regions: args.regions.clamp(1, 8),
        seed: args.seed,
        gzip: !args.plain,
    })?;
    println!(
        "wrote {} files, {} records ({} KMS, {} grant events), {} bytes of JSON, {} bytes on disk",
        summary.files,
        summary.records,
        summary.kms,
        summary.grant_events,
        summary.json_bytes,
        summary.disk_bytes
    );
    Ok(())
}
