//! `granttrail verify`: check log files against CloudTrail's signed digests, offline.

use granttrail_store::Location;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use granttrail_cloudtrail::digest::PublicKeys;
use granttrail_cloudtrail::{KeyClass, ObjectKey};
use granttrail_grants::timestamp;
use granttrail_ingest::verify::walk::{self, Walked};
use granttrail_ingest::verify::{self, Filter, Input, Verification};
use granttrail_ingest::{Limits, Outcome, now};
use granttrail_store::{Store, VerificationRun};

use crate::config::Config;
use crate::grants_cmd::open_configured;
use crate::output::terminal_safe;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Directories or files of a downloaded copy of the log bucket (digests included), or
    /// `s3://bucket[/prefix]`.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,

    /// The output of `aws cloudtrail list-public-keys` for the period (any region's keys can
    /// be concatenated into one `PublicKeyList`). Without it, signatures are not checked.
    #[arg(long, value_name = "FILE")]
    public_keys: Option<PathBuf>,

    /// `table`: a line per problem and a summary per account and region; `json`: the same as
    /// one object.
    #[arg(long, value_enum, default_value_t = VerifyFormat::Table)]
    format: VerifyFormat,

    /// Threads reading files (default: one per core; for S3, 8 downloads at a time).
    #[arg(long, short, value_name = "N")]
    jobs: Option<usize>,

    /// Treat a log file as altered once it inflates past this many bytes.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::DEFAULT_MAX_OBJECT_BYTES)]
    max_object_bytes: u64,

    #[command(flatten)]
    s3: crate::ingest_s3::S3Args,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum VerifyFormat {
    Table,
    Json,
}

pub fn run(db: &Location, config: &Config, args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let keys = load_public_keys(args.public_keys.as_deref())?;
    let filter = args.s3.filter(now());
    let mut store = open_configured(db, config)?;
    // One time for the whole run: its verdicts are recorded as each day is judged, the
    // summaries last.
    let at = now();
    let mut record_slice = |v: &Verification| -> Result<(), String> {
        let files = v.file_verdicts(at);
        store
            .record_verification(VerificationRun { files: &files, missing: &v.missing, summaries: &[], at })
            .map_err(|e| format!("recording the verification in {}: {e}", db))
    };
    let mut walked: Vec<Walked> = Vec::new();
    let (urls, paths): (Vec<&PathBuf>, Vec<&PathBuf>) =
        args.paths.iter().partition(|p| p.to_string_lossy().starts_with("s3://"));
    if !paths.is_empty() {
        let jobs = args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
        let (mut roots, mut files, mut errors) = (Vec::new(), Vec::new(), Vec::new());
        for path in paths {
            let name = path.display().to_string();
            match std::fs::metadata(path) {
                Ok(meta) if meta.is_dir() => roots.push(name),
                Ok(_) => files.push(name),
                Err(e) => errors.push((name, e.to_string())),
            }
        }
        let layout = walk::Directory { max_object_bytes: args.max_object_bytes };
        let mut found = walk::walk(&layout, &roots, &files, keys.as_ref(), &filter, jobs, &mut record_slice)
            .map_err(anyhow::Error::msg)?;
        found.errors.extend(errors);
        walked.push(found);
    }
    for url in urls {
        walked.push(crate::ingest_s3::verify(
            &url.to_string_lossy(),
            &args.s3,
            args.jobs,
            args.max_object_bytes,
            keys.as_ref(),
            &filter,
            &mut record_slice,
        )?);
    }
    let found = walk::merge(walked);
    for (name, error) in &found.errors {
        eprintln!("granttrail: cannot read {}: {}", terminal_safe(name), terminal_safe(error));
    }
    let verification = found.verification(keys.is_some());
    let summaries = summary_rows(&verification)?;
    store
        .record_verification(VerificationRun { files: &[], missing: &[], summaries: &summaries, at })
        .with_context(|| format!("recording the verification in {}", db))?;

    let mut out = std::io::stdout().lock();
    match args.format {
        VerifyFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &verification)?;
            writeln!(out)?;
        }
        VerifyFormat::Table => print_table(&verification, keys.as_ref(), found.digests, &mut out)?,
    }
    if !found.errors.is_empty() {
        anyhow::bail!("{} path(s) could not be read; the verdict above leaves them out", found.errors.len());
    }
    Ok(if verification.failed() { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// Each account and region's summary as the store keeps it (as JSON).
fn summary_rows(v: &Verification) -> anyhow::Result<Vec<(String, String, String)>> {
    v.summaries.iter().map(|s| Ok((s.account.clone(), s.region.clone(), serde_json::to_string(s)?))).collect()
}

/// Reads `--public-keys FILE` (the output of `aws cloudtrail list-public-keys`), if given.
pub(crate) fn load_public_keys(path: Option<&Path>) -> anyhow::Result<Option<PublicKeys>> {
    let Some(path) = path else { return Ok(None) };
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Some(PublicKeys::parse(&bytes).with_context(|| path.display().to_string())?))
}

/// Keeps the verdicts in the database, so that `grant`, `calls`, `findings` and `report` can say
/// whether the events they cite come from files CloudTrail vouches for.
pub(crate) fn record(store: &mut Store, v: &Verification) -> anyhow::Result<()> {
    let at = now();
    let files = v.file_verdicts(at);
    let summaries = summary_rows(v)?;
    store.record_verification(VerificationRun {
        files: &files,
        missing: &v.missing,
        summaries: &summaries,
        at,
    })?;
    Ok(())
}

/// What `ingest --verify` gathers as it ingests: each log file's hash from the read that
/// stores its events, and the digests beside them.
#[derive(Default)]
pub(crate) struct Gathered {
    pub inputs: Vec<Input>,
    /// Objects ingest did not read to the end (stored before, or rejected), by name and key:
    /// hashed by a read of their own, unless their hash was kept when they were stored.
    unread: Vec<(String, String)>,
    /// Objects that could not be read (not a verdict on their content), by name.
    pub errors: Vec<(String, String)>,
}

impl Gathered {
    /// Takes what ingesting the object `name` (at `key`) produced. Only CloudTrail log files
    /// are judged: other files (lookup-events output, record lines) have no digest to match.
    pub fn outcome(&mut self, name: &str, key: &str, outcome: &Outcome) {
        if ObjectKey::parse(key).class != KeyClass::Log {
            return;
        }
        match outcome {
            Outcome::Ingested { content_sha256: Some(sha256), .. } => {
                self.inputs.push(Input::Log(verify::hashed_log(name.to_string(), key, Ok(*sha256))))
            }
            _ => self.unread.push((name.to_string(), key.to_string())),
        }
    }

    /// Hashes the objects ingest did not read: from the hash kept with a stored object (`kept`,
    /// by name), or by reading it (`read`, by name and key: streamed from a file, or whole from
    /// S3 up to a bound, so that memory stays flat whatever the objects' size).
    pub fn hash_unread(
        &mut self,
        kept: impl Fn(&str) -> Option<[u8; 32]>,
        jobs: usize,
        read: impl Fn(&str, &str) -> std::io::Result<verify::LogObject> + Sync,
    ) {
        let mut unread = Vec::new();
        for (name, key) in std::mem::take(&mut self.unread) {
            match kept(&name) {
                Some(sha256) => self.inputs.push(Input::Log(verify::hashed_log(name, &key, Ok(sha256)))),
                None => unread.push((name, key)),
            }
        }
        let logs = verify::read_parallel(&unread, jobs, |(name, key)| {
            read(name, key).map(Input::Log).map_err(|e| e.to_string())
        });
        for ((name, _), result) in unread.into_iter().zip(logs) {
            match result {
                Ok(input) => self.inputs.push(input),
                Err(e) => self.errors.push((name, e)),
            }
        }
    }

    /// Judges what was gathered, records the verdicts, and says what was found: problems on
    /// standard error, a summary line on standard output. True when anything failed.
    pub fn finish(
        self,
        store: &mut Store,
        keys: Option<&PublicKeys>,
        filter: &Filter,
    ) -> anyhow::Result<bool> {
        for (name, error) in &self.errors {
            eprintln!("granttrail: cannot read {}: {}", terminal_safe(name), terminal_safe(error));
        }
        let digests = self.inputs.iter().filter(|i| matches!(i, Input::Digest(_))).count();
        let v = verify::analyse(&self.inputs, keys, filter);
        drop(self.inputs);
        record(store, &v).context("while recording the verification")?;
        for p in &v.problems {
            eprintln!(
                "granttrail: {}: {}: {}",
                p.verdict.as_str(),
                terminal_safe(&p.object),
                terminal_safe(&p.reason)
            );
        }
        let sum = |f: fn(&verify::Summary) -> u64| v.summaries.iter().map(f).sum::<u64>();
        let mut out = std::io::stdout().lock();
        write!(
            out,
            "verified against {digests} digest(s) ({} trusted): {} log file(s) verified, {} altered, {} missing, \
             {} unlisted, {} not covered by any digest; ",
            sum(|s| s.digests_trusted),
            sum(|s| s.verified),
            sum(|s| s.altered),
            sum(|s| s.missing),
            sum(|s| s.unlisted),
            sum(|s| s.not_covered),
        )?;
        match keys {
            Some(_) => match sum(|s| s.signatures_unchecked) {
                0 => writeln!(out, "{} signature(s) valid", sum(|s| s.signatures_valid))?,
                unchecked => writeln!(
                    out,
                    "{} signature(s) valid, {unchecked} not checked (the newest digest of a downloaded copy is \
                     signed only in its S3 metadata)",
                    sum(|s| s.signatures_valid)
                )?,
            },
            None => writeln!(out, "signatures not checked (give --public-keys FILE)")?,
        }
        Ok(v.failed() || !self.errors.is_empty())
    }
}

fn print_table(
    v: &Verification,
    keys: Option<&PublicKeys>,
    digests: u64,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    for p in &v.problems {
        writeln!(out, "{}\t{}\t{}", p.verdict.as_str(), terminal_safe(&p.object), terminal_safe(&p.reason))?;
    }
    if !v.problems.is_empty() {
        writeln!(out)?;
    }
    for s in &v.summaries {
        writeln!(
            out,
            "{} {}: {} log files verified, {} altered, {} missing, {} unlisted, {} not covered by any digest; \
             {} digests ({} trusted)",
            terminal_safe(&s.account),
            terminal_safe(&s.region),
            s.verified,
            s.altered,
            s.missing,
            s.unlisted,
            s.not_covered,
            s.digests,
            s.digests_trusted
        )?;
        if let (Some(first), Some(last)) = (s.covered.first(), s.covered.last()) {
            writeln!(
                out,
                "  digests cover {} to {}",
                timestamp::format(first.start),
                timestamp::format(last.end)
            )?;
        }
        for gap in &s.gaps {
            writeln!(
                out,
                "  no digests {} to {}: log files delivered then cannot be verified",
                timestamp::format(gap.start),
                timestamp::format(gap.end)
            )?;
        }
        if v.signatures_checked && s.signatures_unchecked > 0 {
            writeln!(
                out,
                "  {} digest signature(s) not checked: the newest digest of a downloaded copy is signed only \
                 in its S3 metadata (verify s3://... to check it)",
                s.signatures_unchecked
            )?;
        }
    }
    match keys {
        Some(keys) => {
            let valid: u64 = v.summaries.iter().map(|s| s.signatures_valid).sum();
            writeln!(out, "signatures: {valid} valid, checked with {} public key(s)", keys.len())?;
        }
        None => writeln!(
            out,
            "signatures: not checked (give --public-keys FILE, the output of `aws cloudtrail list-public-keys`); \
             hashes and the chain were checked, so \"verified\" means as the digests list it, and whoever \
             can write to the bucket can rewrite the digests too"
        )?,
    }
    if digests == 0 {
        writeln!(
            out,
            "no digest files among the inputs: nothing could be verified (is log file validation on for the trail, \
             and were the CloudTrail-Digest folders copied?)"
        )?;
    }
    Ok(())
}

impl crate::ingest_s3::S3Args {
    /// The selection as a verification filter; durations count back from `now`.
    pub fn filter(&self, now: i64) -> Filter {
        Filter {
            since: self.since.map(|w| w.resolve(now)),
            until: self.until.map(|w| w.resolve(now)),
            accounts: self.accounts.clone(),
            regions: self.regions.clone(),
            listings_of: None,
            slice: None,
        }
    }
}
