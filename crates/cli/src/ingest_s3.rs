//! `granttrail ingest s3://bucket[/prefix]`: list the bucket, pruned by the CloudTrail layout
//! and the time window, and stream the wanted objects through the same pipeline as files.

use std::io::Read;

use anyhow::Context;
use clap::Args;
use granttrail_ingest::{Plan, ingest_parallel};
use granttrail_s3::{ClientOptions, Listed, S3Url, Walker, Window, connect, object_name, open_object};
use granttrail_store::Store;
use indicatif::HumanBytes;

use crate::ingest_cmd::Reporter;
use crate::parse_when;
use granttrail_grants::when::When;

/// Objects downloaded and decoded at once from S3: the network, not the cores, is the limit.
pub const DEFAULT_JOBS: usize = 8;

#[derive(Debug, Args)]
#[command(next_help_heading = "S3 (for s3:// paths)")]
pub struct S3Args {
    /// Only objects delivered at or after this time, judged by the date folders and the time in
    /// each file name, without downloading: RFC 3339, a date, or a duration back from now
    /// (30d, 12h, 90m).
    #[arg(long, value_name = "TIME", value_parser = parse_when)]
    since: Option<When>,
    /// Only objects that can hold records from before this time (delivered up to an hour
    /// later): RFC 3339, a date, or a duration back from now.
    #[arg(long, value_name = "TIME", value_parser = parse_when)]
    until: Option<When>,
    /// Only this account's logs (repeatable).
    #[arg(long = "account", value_name = "ID")]
    accounts: Vec<String>,
    /// Only logs of this region (repeatable). The bucket's own region is --bucket-region.
    #[arg(long = "region", value_name = "REGION")]
    regions: Vec<String>,
    /// AWS profile for the credentials (default: the standard credential chain).
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
    /// The bucket's region (default: from the profile or environment, else us-east-1).
    #[arg(long, value_name = "REGION")]
    bucket_region: Option<String>,
    /// An S3-compatible endpoint such as http://127.0.0.1:9000 (path-style requests).
    #[arg(long, value_name = "URL")]
    endpoint_url: Option<String>,
}

/// Ingests the objects under `url` that `args` select. Objects already in the database are
/// skipped before any download, so an interrupted run is resumed by running it again.
pub fn ingest(
    store: &mut Store,
    url: &str,
    args: &S3Args,
    plan: &Plan,
    reporter: &mut Reporter,
    quiet: bool,
) -> anyhow::Result<()> {
    let location = S3Url::parse(url).with_context(|| format!("{url}: not an s3://bucket[/prefix] URL"))?;
    let now = granttrail_ingest::now();
    let window = Window {
        since: args.since.map(|w| w.resolve(now)),
        until: args.until.map(|w| w.resolve(now)),
        accounts: args.accounts.clone(),
        regions: args.regions.clone(),
    };
    let options = ClientOptions {
        profile: args.profile.clone(),
        region: args.bucket_region.clone(),
        endpoint_url: args.endpoint_url.clone(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the S3 client's runtime")?;
    let handle = runtime.handle().clone();
    let client = runtime.block_on(connect(&options));
    let bucket = location.bucket.as_str();
    let mut walker = Walker::new(client.clone(), bucket, &location.prefix, window);
    let (mut listed_bytes, mut done_bytes) = (0u64, 0u64);
    let name = |o: &Listed| object_name(bucket, &o.key);
    let open = |o: &Listed| -> std::io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(open_object(&client, &handle, bucket, &o.key)?))
    };
    while let Some(page) = walker.next_page(&handle).with_context(|| format!("listing {url}"))? {
        reporter.bar.inc_length(page.len() as u64);
        listed_bytes += page.iter().map(|o| o.size).sum::<u64>();
        ingest_parallel(store, &page, &name, &open, plan, &mut |object, name, outcome| {
            done_bytes += object.size;
            reporter.outcome(name, outcome);
            reporter.bar.set_prefix(format!("{}/{}", HumanBytes(done_bytes), HumanBytes(listed_bytes)));
        })
        .context("while storing")?;
    }
    if !quiet && reporter.bar.is_hidden() {
        eprintln!("granttrail: {url}: {} of objects listed", HumanBytes(listed_bytes));
    }
    Ok(())
}
