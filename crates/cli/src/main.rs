//! `granttrail`: rebuild the history of every AWS KMS grant from CloudTrail logs.
#![forbid(unsafe_code)]

mod calls_cmd;
mod config;
mod copy_cmd;
mod event_cmd;
mod finding_formats;
mod findings_cmd;
mod grants_cmd;
mod import_cmd;
mod ingest_cmd;
mod ingest_s3;
mod output;
mod provenance;
mod prune_cmd;
mod report;
mod verify_cmd;
mod views;

use granttrail_store::Location;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use granttrail_grants::when::{self, When};

/// Rebuild the history of every AWS KMS grant from CloudTrail logs.
///
/// granttrail reads CloudTrail log files (gzip or JSON, as delivered to S3, as printed by
/// `aws cloudtrail lookup-events`, or one record per line), keeps every KMS event in a SQLite
/// database, and derives each grant's lifecycle: who created it, for whom, what it allows,
/// and when and by whom it was retired, revoked or ended by key deletion.
#[derive(Debug, Parser)]
#[command(name = "granttrail", version, max_term_width = 100)]
struct Cli {
    /// Database to use: a SQLite file (created if missing) or a postgres:// URL (tables created if missing).
    #[arg(long, global = true, env = "GRANTTRAIL_DB", default_value = "granttrail.db", value_parser = parse_db)]
    db: Location,

    /// Settings file (default: granttrail.toml in the working directory, if present).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Read CloudTrail objects and store their KMS events and grants.
    ///
    /// Takes files, directories (walked recursively; CloudTrail digest and Insights files are
    /// recognised and skipped) and `-` for standard input. Each object is committed whole or
    /// not at all; objects already ingested are skipped. Exits non-zero if any object was
    /// rejected.
    Ingest(ingest_cmd::IngestArgs),
    /// List grants.
    Grants(grants_cmd::GrantsArgs),
    /// Show one grant's whole story: its attributes, every event that touched it, and the
    /// calls it covered.
    Grant(grants_cmd::GrantArgs),
    /// List successful KMS calls with the grants that could have authorised them and a label
    /// saying how strongly the logs show the call depended on a grant.
    Calls(calls_cmd::CallsArgs),
    /// Show one stored event: its normalised fields, the object it came from and the other
    /// accounts' copies of the call, or (`--format json`) the CloudTrail record exactly as
    /// delivered.
    Event(event_cmd::EventArgs),
    /// List grants that deserve a look: cross-account grantees, re-delegation, grants made by
    /// hand, grants left active, self-granted access, and more. Exit status 3 with --fail-on
    /// when a finding is at least that severe.
    Findings(findings_cmd::FindingsArgs),
    /// Write a report for auditors: a summary, the grant inventory, a timeline of grant
    /// lifetimes and uses per key, the findings, and what the logs do not cover.
    ///
    /// HTML is one self-contained page (no scripts, no network requests), printable; md is
    /// Markdown; csv is the grant inventory; json is the whole report. The output depends only
    /// on the database and the options, so the same database gives the same report.
    Report(report::ReportArgs),
    /// Import a key policy or IAM snapshot for stronger evidence, or a list-grants output to
    /// reconcile with.
    #[command(subcommand)]
    Import(import_cmd::ImportCommand),
    /// Recompute all derived tables (grants, call labels) from the stored events, with the
    /// current settings.
    Rebuild,
    /// Drop the records as delivered of calls older than N days, to keep a long-running
    /// database small.
    ///
    /// The normalised events, grants, labels and findings stay as they are. The records of
    /// grant lifecycle and key-policy events, of events outside KMS, and of every event a
    /// finding or a grant-only label cites are always kept. Freed space goes back to the file
    /// system.
    Prune(prune_cmd::PruneArgs),
    /// Check log files against CloudTrail's signed digests (log file integrity validation),
    /// offline: on a downloaded copy of the log bucket, or on `s3://bucket[/prefix]`.
    ///
    /// Per account and region: every log file a digest lists must be present with the SHA-256
    /// it lists (else altered or missing); every log file present must be listed by a digest
    /// when digests cover its delivery (else unlisted); each digest must hash as the next one
    /// in its chain records and sit where it says it was delivered; with --public-keys, each
    /// digest's signature is checked. Hours with no digests are reported as unverified, not as
    /// errors. Exit status 1 if anything is altered, missing or unlisted, or a digest fails.
    ///
    /// The verdicts are recorded in the database (created if missing), by log file name, so
    /// `grant`, `calls`, `findings` (GT106-GT108) and `report` say whether the events they
    /// cite come from files CloudTrail vouches for, whether verify ran before or after ingest.
    Verify(verify_cmd::VerifyArgs),
    /// Copy a whole database into a new one: a SQLite file into PostgreSQL when a deployment
    /// outgrows one machine, or PostgreSQL into a file to take away.
    ///
    /// Every row is copied as it is (events, records, grants, labels, imports, verdicts), in one
    /// transaction of the target's and one consistent read of the source's while its writers go
    /// on, so the copy answers every command exactly as the original. `--db` is not used.
    Copy(copy_cmd::CopyArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = config::load(cli.config.as_deref()).and_then(|config| match cli.command {
        Command::Ingest(args) => ingest_cmd::run(&cli.db, &config, &args),
        Command::Grants(args) => grants_cmd::list(&cli.db, &args),
        Command::Grant(args) => grants_cmd::story(&cli.db, &args),
        Command::Calls(args) => calls_cmd::run(&cli.db, &args),
        Command::Event(args) => event_cmd::run(&cli.db, &args),
        Command::Findings(args) => findings_cmd::run(&cli.db, &config, &args),
        Command::Report(args) => report::run(&cli.db, &config, &args),
        Command::Import(command) => grants_cmd::open_configured(&cli.db, &config)
            .and_then(|mut store| import_cmd::run(&mut store, &command)),
        Command::Rebuild => grants_cmd::rebuild(&cli.db, &config),
        Command::Prune(args) => prune_cmd::run(&cli.db, &config, &args),
        Command::Verify(args) => verify_cmd::run(&cli.db, &config, &args),
        Command::Copy(args) => copy_cmd::run(&args),
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("granttrail: error: {}", output::terminal_safe(&describe(&e)));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each said once. Errors that print their cause in their own message
/// (SQLite's `Error code 14: unable to open database file` under `unable to open database
/// file: PATH`) would otherwise say it two or three times.
fn describe(e: &anyhow::Error) -> String {
    let mut said: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        let words = match text.strip_prefix("Error code ") {
            Some(rest) => rest.split_once(": ").map_or(text.as_str(), |(_, words)| words),
            None => text.as_str(),
        };
        if !said.iter().any(|s| s.contains(words)) {
            said.push(text);
        }
    }
    said.join(": ")
}

/// `granttrail grants | head` closes the pipe early; that is not an error. (serde_json keeps
/// the I/O error it met inside its own.)
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    let broken = Some(std::io::ErrorKind::BrokenPipe);
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().map(std::io::Error::kind) == broken
            || c.downcast_ref::<serde_json::Error>().and_then(serde_json::Error::io_error_kind) == broken
    })
}

/// Parses a time given on the command line: RFC 3339 or a date.
fn parse_time(text: &str) -> Result<i64, String> {
    when::parse_moment(text).ok_or_else(|| {
        format!("{text:?} is not a time: give RFC 3339 (2024-05-01T12:00:00Z) or a date (2024-05-01)")
    })
}

/// Parses the start or end of a period: RFC 3339, a date, or a duration back from the
/// reference time.
/// A database: a SQLite file's path or a `postgres://` URL.
fn parse_db(text: &str) -> Result<Location, String> {
    Location::parse(text)
}

fn parse_when(text: &str) -> Result<When, String> {
    when::parse_when(text).ok_or_else(|| {
        format!(
            "{text:?} is not a time: give RFC 3339 (2024-05-01T12:00:00Z), a date (2024-05-01) or a \
             duration back from the reference time in days, hours or minutes (30d, 12h, 90m)"
        )
    })
}
