//! `granttrail ingest`.

use granttrail_store::Location;
use std::io::IsTerminal;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use granttrail_cloudtrail::{KeyClass, ObjectKey};
use granttrail_grants::Label;
use granttrail_ingest::{
    COMMIT_BYTES, Limits, ObjectCounts, Outcome, Plan, Skip, Source, collect_sources, ingest_parallel, now,
};
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Config;
use crate::output::terminal_safe;
use crate::verify_cmd::Gathered;

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Files, directories, `-` for standard input, or `s3://bucket[/prefix]`.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,

    /// Reject an object once it inflates past this many bytes (decompression bombs).
    #[arg(long, value_name = "BYTES", default_value_t = Limits::DEFAULT_MAX_OBJECT_BYTES)]
    max_object_bytes: u64,

    /// Reject an object holding a record larger than this many bytes.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::DEFAULT_MAX_RECORD_BYTES)]
    max_record_bytes: usize,

    /// Reject an object whose JSON nests deeper than this.
    #[arg(long, value_name = "LEVELS", default_value_t = Limits::DEFAULT_MAX_DEPTH)]
    max_depth: usize,

    /// Print only errors and the summary line, no progress bar.
    #[arg(long, short)]
    quiet: bool,

    /// Threads decoding objects (default: one per core; for S3, 8 downloads at a time). The
    /// database has one writer.
    #[arg(long, short, value_name = "N")]
    jobs: Option<usize>,

    /// Also check every log file against CloudTrail's signed digests, hashed in the same read
    /// that stores its events, and record the verdicts, as `granttrail verify` does. Digest
    /// files among the paths are read instead of skipped. Exit status 1 if anything is altered,
    /// missing or unlisted.
    #[arg(long)]
    verify: bool,

    /// With --verify: the output of `aws cloudtrail list-public-keys`, to check the digests'
    /// signatures.
    #[arg(long, value_name = "FILE", requires = "verify")]
    public_keys: Option<PathBuf>,

    #[command(flatten)]
    s3: crate::ingest_s3::S3Args,
}

/// Totals over one run, for the closing summary.
#[derive(Debug, Default)]
struct Totals {
    objects: u64,
    already: u64,
    skipped_files: u64,
    rejected: u64,
    counts: ObjectCounts,
}

impl Totals {
    fn add(&mut self, c: &ObjectCounts) {
        let t = &mut self.counts;
        t.bytes += c.bytes;
        t.records += c.records;
        t.kms_events += c.kms_events;
        t.new_events += c.new_events;
        t.grant_events += c.grant_events;
        t.skipped_records += c.skipped_records;
    }
}

/// Hears about each finished object: keeps the totals, reports problems, moves the bar.
pub(crate) struct Reporter {
    totals: Totals,
    pub failed: bool,
    pub bar: ProgressBar,
}

impl Reporter {
    pub fn outcome(&mut self, name: &str, outcome: Outcome) {
        let (bar, totals) = (&self.bar, &mut self.totals);
        bar.set_message(short_name(name));
        match outcome {
            Outcome::Ingested { counts, first_skip, .. } => {
                totals.objects += 1;
                totals.add(&counts);
                for c in &counts.collisions {
                    bar.suspend(|| {
                        eprintln!(
                            "granttrail: warning: {}: eventID {} is also carried by a different record, from {}; both are kept (the grants they touch show it as an anomaly)",
                            terminal_safe(name),
                            terminal_safe(&c.event_id),
                            terminal_safe(&c.other_object)
                        )
                    });
                }
                if let Some(reason) = first_skip {
                    bar.suspend(|| {
                        eprintln!(
                            "granttrail: {}: skipped {} malformed KMS record(s); first: {}",
                            terminal_safe(name),
                            counts.skipped_records,
                            terminal_safe(&reason.to_string())
                        )
                    });
                }
            }
            Outcome::AlreadyIngested => totals.already += 1,
            Outcome::Rejected(error) => {
                self.failed = true;
                totals.rejected += 1;
                bar.suspend(|| {
                    eprintln!(
                        "granttrail: rejected {}: {}",
                        terminal_safe(name),
                        terminal_safe(&error.to_string())
                    )
                });
            }
        }
        bar.inc(1);
    }

    pub fn skipped(&mut self, what: &str, reason: &str, quiet: bool) {
        self.totals.skipped_files += 1;
        if !quiet {
            self.bar.suspend(|| eprintln!("granttrail: skipped {}: {reason}", terminal_safe(what)));
        }
    }
}

pub fn run(db: &Location, config: &Config, args: &IngestArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let limits = Limits {
        max_object_bytes: args.max_object_bytes,
        max_record_bytes: args.max_record_bytes,
        max_depth: args.max_depth,
    };
    let (urls, paths): (Vec<&PathBuf>, Vec<&PathBuf>) =
        args.paths.iter().partition(|p| p.to_str().is_some_and(|t| t.starts_with("s3://")));
    let paths: Vec<PathBuf> = paths.into_iter().cloned().collect();
    let keys = crate::verify_cmd::load_public_keys(args.public_keys.as_deref())?;
    let mut list = collect_sources(&paths);
    let mut gathered = args.verify.then(Gathered::default);
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let jobs = args.jobs.unwrap_or(cores);
    if let Some(gathered) = gathered.as_mut() {
        // Digests are read, not skipped.
        let (digests, skipped): (Vec<Skip>, Vec<Skip>) = std::mem::take(&mut list.skipped)
            .into_iter()
            .partition(|s| ObjectKey::parse(&s.path.to_string_lossy()).class == KeyClass::Digest);
        list.skipped = skipped;
        let digests: Vec<PathBuf> = digests.into_iter().map(|s| s.path).collect();
        let read = granttrail_ingest::verify::read_paths(&digests, jobs, args.max_object_bytes);
        gathered.errors.extend(read.errors.into_iter().map(|(path, e)| (path.display().to_string(), e)));
        gathered.inputs.extend(read.inputs);
    }
    let mut store = crate::grants_cmd::open_configured(db, config)?;
    let mut reporter = Reporter {
        totals: Totals::default(),
        failed: false,
        bar: progress_bar(list.sources.len() as u64, args.quiet),
    };

    for (path, error) in &list.errors {
        reporter.bar.suspend(|| eprintln!("granttrail: {}: {}", path.display(), terminal_safe(error)));
        reporter.failed = true;
    }
    for skip in &list.skipped {
        reporter.skipped(&skip.path.display().to_string(), skip.reason, args.quiet);
    }

    let stdin_name = format!("stdin:{}", unique_suffix());
    let name = |source: &Source| match source {
        Source::Stdin => stdin_name.clone(),
        Source::File(_) => source.name(),
    };
    let open = |source: &Source| -> std::io::Result<Box<dyn std::io::Read + Send>> {
        match source {
            Source::Stdin => Ok(Box::new(std::io::stdin())),
            Source::File(path) => Ok(Box::new(std::fs::File::open(path)?)),
        }
    };
    let plan = Plan { limits, jobs, now: now(), commit_bytes: COMMIT_BYTES, hash_content: args.verify };
    ingest_parallel(&mut store, &list.sources, &name, &open, &plan, &mut |source, name, outcome| {
        if let (Some(gathered), Source::File(path)) = (gathered.as_mut(), source) {
            gathered.outcome(name, &path.to_string_lossy(), &outcome);
        }
        reporter.outcome(name, outcome)
    })
    .context("while storing")?;
    if let Some(gathered) = gathered.as_mut() {
        let max = args.max_object_bytes;
        gathered.hash_unread(
            |name| store.content_sha256(name).ok().flatten(),
            jobs,
            |name, path| {
                Ok(granttrail_ingest::verify::read_log(
                    name.to_string(),
                    path,
                    std::fs::File::open(path)?,
                    max,
                ))
            },
        );
    }
    for url in urls {
        let plan = Plan { jobs: args.jobs.unwrap_or(crate::ingest_s3::DEFAULT_JOBS), ..plan };
        crate::ingest_s3::ingest(
            &mut store,
            &url.to_string_lossy(),
            &args.s3,
            &plan,
            &mut reporter,
            gathered.as_mut(),
            args.quiet,
        )?;
    }
    let Reporter { totals, failed, bar } = reporter;
    bar.set_message("labelling calls");
    // Among other writers into one PostgreSQL database, the last to end relabels.
    let relabelled = store.refresh_labels_unless_busy().context("while labelling calls")?;
    bar.finish_and_clear();
    print_summary(&totals, started.elapsed())?;
    let mut failed = failed;
    if let Some(gathered) = gathered {
        failed |= gathered.finish(&mut store, keys.as_ref(), &args.s3.filter(plan.now))?;
    }
    if relabelled.is_none() {
        writeln!(
            std::io::stdout(),
            "calls not labelled yet: other writers are writing into this database; the last of them, or the next query, labels them"
        )?;
        return Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS });
    }
    let grant_only = store.count_labels(&[Label::GrantOnly, Label::GrantOnlyLikely])?;
    writeln!(
        std::io::stdout(),
        "{grant_only} call(s) in the database succeeded only through a grant (granttrail calls --grant-only)"
    )?;
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

pub(crate) fn progress_bar(len: u64, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    counting_bar(len, "objects")
}

/// A bar of `len` things on standard error, hidden when that is not a terminal.
pub(crate) fn counting_bar(len: u64, things: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    let template = format!("{{bar:30}} {{pos}}/{{len}} {things} {{prefix}}  {{elapsed}}  {{wide_msg}}");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn print_summary(t: &Totals, elapsed: Duration) -> std::io::Result<()> {
    let c = &t.counts;
    let secs = elapsed.as_secs_f64().max(1e-6);
    writeln!(
        std::io::stdout(),
        "ingested {} object(s) ({} already ingested, {} skipped, {} rejected): {} records, {} KMS events \
         ({} new, {} grant events), {} malformed KMS records skipped; {:.2}s, {:.0} records/s",
        t.objects,
        t.already,
        t.skipped_files,
        t.rejected,
        c.records,
        c.kms_events,
        c.new_events,
        c.grant_events,
        c.skipped_records,
        secs,
        c.records as f64 / secs
    )
}

fn short_name(name: &str) -> String {
    let name = terminal_safe(name);
    name.rsplit('/').next().unwrap_or(&name).to_string()
}

/// Standard input has no name; each read of it is a new object.
fn unique_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}
