//! `granttrail ingest s3://bucket[/prefix]`: list the bucket, pruned by the CloudTrail layout
//! and the time window, and stream the wanted objects through the same pipeline as files.

use std::io::Read;

use anyhow::Context;
use clap::Args;
use granttrail_cloudtrail::digest::{PublicKeys, stored_bytes_bound};
use granttrail_cloudtrail::{KeyClass, ObjectKey};
use granttrail_ingest::verify::walk::{self, Layout, Walked};
use granttrail_ingest::verify::{
    Filter, Input, MAX_DIGEST_STORED_BYTES, Verification, digest_from_stored, log_from_stored, read_parallel,
};
use granttrail_ingest::{Plan, ingest_parallel};
use granttrail_s3::{
    ClientOptions, Listed, S3Url, Walker, Window, connect, fetch_digest_object, fetch_object, list_all,
    object_name, open_object,
};
use granttrail_store::Store;
use indicatif::HumanBytes;

use crate::ingest_cmd::Reporter;
use crate::parse_when;
use crate::verify_cmd::Gathered;
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
    pub since: Option<When>,
    /// Only objects that can hold records from before this time (delivered up to an hour
    /// later): RFC 3339, a date, or a duration back from now.
    #[arg(long, value_name = "TIME", value_parser = parse_when)]
    pub until: Option<When>,
    /// Only this account's logs (repeatable).
    #[arg(long = "account", value_name = "ID")]
    pub accounts: Vec<String>,
    /// Only logs of this region (repeatable). The bucket's own region is --bucket-region.
    #[arg(long = "region", value_name = "REGION")]
    pub regions: Vec<String>,
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
    mut gathered: Option<&mut Gathered>,
    quiet: bool,
) -> anyhow::Result<()> {
    let location = S3Url::parse(url).with_context(|| format!("{url}: not an s3://bucket[/prefix] URL"))?;
    // The run's one time: the verification's filter counts back from it too.
    let now = plan.now;
    let window = args.window(now);
    let (runtime, client) = args.client()?;
    let handle = runtime.handle().clone();
    let bucket = location.bucket.as_str();
    // Verifying reads the digests too, a day either side: they list files up to an hour after
    // their delivery. Only the log files the window selects are ingested.
    let walk = match gathered {
        Some(_) => args.verify_window(now),
        None => window.clone(),
    };
    let mut walker = Walker::new(client.clone(), bucket, &location.prefix, walk);
    let (mut listed_bytes, mut done_bytes) = (0u64, 0u64);
    let name = |o: &Listed| object_name(bucket, &o.key);
    let open = |o: &Listed| -> std::io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(open_object(&client, &handle, bucket, &o.key)?))
    };
    while let Some(page) = walker.next_page(&handle).with_context(|| format!("listing {url}"))? {
        let (digests, page): (Vec<Listed>, Vec<Listed>) =
            page.into_iter().partition(|o| ObjectKey::parse(&o.key).class == KeyClass::Digest);
        let page: Vec<Listed> = page.into_iter().filter(|o| window.wants(&o.key)).collect();
        reporter.bar.inc_length(page.len() as u64);
        listed_bytes += page.iter().map(|o| o.size).sum::<u64>();
        ingest_parallel(store, &page, &name, &open, plan, &mut |object, name, outcome| {
            done_bytes += object.size;
            if let Some(gathered) = gathered.as_deref_mut() {
                gathered.outcome(name, &object.key, &outcome);
            }
            reporter.outcome(name, outcome);
            reporter.bar.set_prefix(format!("{}/{}", HumanBytes(done_bytes), HumanBytes(listed_bytes)));
        })
        .context("while storing")?;
        if let Some(gathered) = gathered.as_deref_mut() {
            let max = plan.limits.max_object_bytes;
            gathered.hash_unread(
                |name| store.content_sha256(name).ok().flatten(),
                plan.jobs,
                |name, key| {
                    let stored = fetch_object(&client, &handle, bucket, key, stored_bytes_bound(max));
                    log_from_stored(name.to_string(), key, stored, max)
                },
            );
            let read =
                read_parallel(&digests, plan.jobs, |o| read_digest_object(&client, &handle, bucket, o));
            for (o, result) in digests.iter().zip(read) {
                match result {
                    Ok(input) => gathered.inputs.push(input),
                    Err(e) => gathered.errors.push((object_name(bucket, &o.key), e)),
                }
            }
        }
    }
    if !quiet && reporter.bar.is_hidden() {
        eprintln!("granttrail: {url}: {} of objects listed", HumanBytes(listed_bytes));
    }
    Ok(())
}

impl S3Args {
    /// The objects `ingest` selects.
    fn window(&self, now: i64) -> Window {
        Window {
            since: self.since.map(|w| w.resolve(now)),
            until: self.until.map(|w| w.resolve(now)),
            accounts: self.accounts.clone(),
            regions: self.regions.clone(),
            digests: false,
        }
    }

    /// What verifying them needs: digests too, and a day either side, since digests list files
    /// up to an hour after their delivery.
    fn verify_window(&self, now: i64) -> Window {
        let window = self.window(now);
        Window {
            since: window.since.map(|t| t - 86_400),
            until: window.until.map(|t| t + 86_400),
            digests: true,
            ..window
        }
    }

    /// A client for these options, on a runtime of its own (kept alive by the caller).
    fn client(&self) -> anyhow::Result<(tokio::runtime::Runtime, granttrail_s3::Client)> {
        let options = ClientOptions {
            profile: self.profile.clone(),
            region: self.bucket_region.clone(),
            endpoint_url: self.endpoint_url.clone(),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("cannot start the S3 client's runtime")?;
        let client = runtime.block_on(connect(&options));
        Ok((runtime, client))
    }
}

/// Verifies the objects under `url` a day at a time ([`walk`]), `slice_done` hearing each
/// day's verdicts.
pub fn verify(
    url: &str,
    args: &S3Args,
    jobs: Option<usize>,
    max_object_bytes: u64,
    keys: Option<&PublicKeys>,
    filter: &Filter,
    slice_done: &mut dyn FnMut(&Verification) -> Result<(), String>,
) -> anyhow::Result<Walked> {
    let location = S3Url::parse(url).with_context(|| format!("{url}: not an s3://bucket[/prefix] URL"))?;
    let (runtime, client) = args.client()?;
    let bucket =
        Bucket { client, handle: runtime.handle().clone(), name: location.bucket.clone(), max_object_bytes };
    let jobs = jobs.unwrap_or(DEFAULT_JOBS);
    walk::walk(&bucket, &[location.prefix], &[], keys, filter, jobs, slice_done).map_err(anyhow::Error::msg)
}

/// A bucket, as the verifier walks it.
struct Bucket {
    client: granttrail_s3::Client,
    handle: tokio::runtime::Handle,
    name: String,
    max_object_bytes: u64,
}

impl Layout for Bucket {
    fn list(&self, prefix: &str) -> Result<(Vec<String>, Vec<String>), String> {
        list_all(&self.client, &self.handle, &self.name, prefix, true).map_err(|e| e.to_string())
    }

    fn read(&self, key: &str, class: KeyClass) -> Result<Input, String> {
        let listed = Listed { key: key.to_string(), size: 0 };
        match class {
            KeyClass::Digest => read_digest_object(&self.client, &self.handle, &self.name, &listed),
            _ => {
                let max = self.max_object_bytes;
                let stored =
                    fetch_object(&self.client, &self.handle, &self.name, key, stored_bytes_bound(max));
                let log = log_from_stored(object_name(&self.name, key), key, stored, max);
                Ok(Input::Log(log.map_err(|e| e.to_string())?))
            }
        }
    }
}

/// Reads a digest object with the signature in its metadata.
fn read_digest_object(
    client: &granttrail_s3::Client,
    handle: &tokio::runtime::Handle,
    bucket: &str,
    o: &Listed,
) -> Result<Input, String> {
    let stored = fetch_digest_object(client, handle, bucket, &o.key, MAX_DIGEST_STORED_BYTES);
    let digest = digest_from_stored(object_name(bucket, &o.key), &o.key, Some(bucket.to_string()), stored);
    Ok(Input::Digest(Box::new(digest.map_err(|e| e.to_string())?)))
}
