//! `granttrail grants`, `granttrail grant` and `granttrail rebuild`.

use granttrail_store::Location;
use std::io::Write;
use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, ValueEnum};
use granttrail_grants::{Grant, GrantState, timestamp};
use granttrail_store::{CallFilter, GrantFilter, Journal, MigrationProgress, Store, StoredCall};

use crate::calls_cmd::CallView;
use crate::config::Config;
use crate::output::{
    CsvOut, Format, JsonArrayOut, Table, print_csv, print_json, print_json_line, terminal_safe,
};
use crate::parse_time;
use crate::provenance::LogFiles;
use crate::views::{CoveredCallView, EventView, GrantView, StoryView};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum StateArg {
    Active,
    Retired,
    Revoked,
    KeyDeleted,
}

impl From<StateArg> for GrantState {
    fn from(s: StateArg) -> GrantState {
        match s {
            StateArg::Active => GrantState::Active,
            StateArg::Retired => GrantState::Retired,
            StateArg::Revoked => GrantState::Revoked,
            StateArg::KeyDeleted => GrantState::KeyDeleted,
        }
    }
}

#[derive(Debug, Args)]
pub struct GrantsArgs {
    /// Only grants on this key (full key ARN).
    #[arg(long, value_name = "ARN")]
    key: Option<String>,
    /// Only grants whose grantee principal is exactly this.
    #[arg(long, value_name = "PRINCIPAL")]
    grantee: Option<String>,
    /// Only grants in this state.
    #[arg(long, value_enum)]
    state: Option<StateArg>,
    /// Only grants alive at this time (RFC 3339), including grants created before the logs.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    active_at: Option<i64>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Debug, Args)]
pub struct GrantArgs {
    /// The grant id (or a unique prefix of it).
    grant_id: String,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

pub fn list(db: &Location, args: &GrantsArgs) -> anyhow::Result<ExitCode> {
    let mut store = open_existing(db)?;
    store.read_snapshot()?;
    let filter = GrantFilter {
        key_arn: args.key.clone(),
        grantee: args.grantee.clone(),
        state: args.state.map(GrantState::from),
        active_at: args.active_at,
    };
    let mut out = std::io::stdout().lock();
    // All but the table are printed as the grants are read: a listing can be long.
    match args.format {
        Format::Jsonl => store.for_each_grant(&filter, |g| print_json_line(&GrantView::new(&g), &mut out))?,
        Format::Csv => {
            let mut csv = CsvOut::new(&CSV_HEADER, &mut out)?;
            store.for_each_grant(&filter, |g| csv.row(&csv_row(&g)))?;
            csv.finish()?;
        }
        Format::Json => {
            let mut array = JsonArrayOut::new(&mut out);
            store.for_each_grant(&filter, |g| array.item(&GrantView::new(&g)))?;
            array.finish()?;
        }
        Format::Table => {
            let grants = store.grants(&filter)?;
            let mut table = Table::new(vec![
                "KEY",
                "GRANT",
                "STATE",
                "GRANTEE",
                "OPERATIONS",
                "CREATED",
                "ENDED",
                "NAME",
            ]);
            for g in &grants {
                table.row(vec![
                    short_key(&g.key_arn),
                    short_grant(&g.grant_id),
                    state_text(g),
                    g.spec.grantee_principal.clone().unwrap_or_else(|| unknown(g)),
                    g.spec.operations.as_ref().map(|o| o.join(",")).unwrap_or_else(|| unknown(g)),
                    g.created_at.map(timestamp::format).unwrap_or_else(|| "before logs".into()),
                    g.ended_at.map(timestamp::format).unwrap_or_else(|| "-".into()),
                    g.spec.name.clone().unwrap_or_default(),
                ]);
            }
            table.print(&mut out)?;
            writeln!(out, "{} grant(s)", grants.len())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

const CSV_HEADER: [&str; 14] = [
    "key_arn",
    "grant_id",
    "state",
    "creation_seen",
    "grantee_principal",
    "retiring_principal",
    "operations",
    "constraints",
    "name",
    "created_at",
    "created_by",
    "ended_at",
    "ended_by",
    "anomalies",
];

fn csv_row(g: &Grant) -> Vec<String> {
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    vec![
        g.key_arn.clone(),
        g.grant_id.clone(),
        g.state.as_str().into(),
        g.creation_seen.to_string(),
        text(&g.spec.grantee_principal),
        text(&g.spec.retiring_principal),
        g.spec.operations.as_ref().map(|o| o.join(" ")).unwrap_or_default(),
        g.spec.constraints.as_ref().and_then(|c| serde_json::to_string(c).ok()).unwrap_or_default(),
        text(&g.spec.name),
        g.created_at.map(timestamp::format).unwrap_or_default(),
        g.created_by.as_ref().and_then(|a| a.principal.clone()).unwrap_or_default(),
        g.ended_at.map(timestamp::format).unwrap_or_default(),
        g.ended_by.as_ref().and_then(|a| a.principal.clone()).unwrap_or_default(),
        if g.anomalies.is_empty() {
            String::new()
        } else {
            serde_json::to_string(&g.anomalies).unwrap_or_default()
        },
    ]
}

pub fn story(db: &Location, args: &GrantArgs) -> anyhow::Result<ExitCode> {
    let mut store = open_existing(db)?;
    store.refresh_labels()?;
    store.read_snapshot()?;
    let grants = store.grants_by_id(&args.grant_id)?;
    if grants.is_empty() {
        bail!("no grant with id {:?} in {}", args.grant_id, db);
    }
    let ids: std::collections::BTreeSet<&str> = grants.iter().map(|g| g.grant_id.as_str()).collect();
    if ids.len() > 1 {
        bail!("{:?} is the start of {} grant ids; give more of it", args.grant_id, ids.len());
    }
    let mut stories = Vec::new();
    let mut calls = Vec::new();
    for g in &grants {
        stories.push((g, store.parent_candidates(g)?, store.grant_events(&g.key_arn, &g.grant_id)?));
        calls.push(store.calls(&CallFilter { grant_id: Some(g.grant_id.clone()), ..CallFilter::default() })?);
    }
    let mut out = std::io::stdout().lock();
    let log_files = LogFiles::new(&store)?;
    match args.format {
        Format::Json | Format::Jsonl => {
            let views = stories
                .iter()
                .zip(&calls)
                .map(|((g, parents, events), calls)| {
                    Ok(StoryView {
                        grant: GrantView::new(g),
                        created_through_grants: parents.clone(),
                        events: checked(events, &log_files)?,
                        calls: calls
                            .iter()
                            .map(|c| {
                                let log_file = log_files.of_event(&c.event_id)?;
                                let call = CallView::new(c).with_log_file(log_file);
                                Ok(CoveredCallView { depended_on_grant: depended(c), call })
                            })
                            .collect::<anyhow::Result<_>>()?,
                    })
                })
                .collect::<anyhow::Result<Vec<StoryView>>>()?;
            print_json(&views, args.format == Format::Jsonl, &mut out)?;
        }
        Format::Csv => {
            let header = [
                "event_time",
                "event_name",
                "error_code",
                "caller",
                "invoked_by",
                "source_ip",
                "event_id",
                "object",
            ];
            let rows: Vec<Vec<String>> = stories
                .iter()
                .flat_map(|(_, _, events)| events.iter().map(EventView::new))
                .map(|e| {
                    vec![
                        e.event_time,
                        e.event_name.into(),
                        e.error_code.unwrap_or_default().into(),
                        e.caller.unwrap_or_default().into(),
                        e.invoked_by.unwrap_or_default().into(),
                        e.source_ip.unwrap_or_default().into(),
                        e.event_id.into(),
                        e.object.into(),
                    ]
                })
                .collect();
            print_csv(&header, &rows, &mut out)?;
        }
        Format::Table => {
            for ((g, parents, events), calls) in stories.iter().zip(&calls) {
                print_story(g, parents, &checked(events, &log_files)?, &mut out)?;
                print_covered_calls(calls, &mut out)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Each event with what verify said of its log file.
fn checked<'a>(
    events: &'a [granttrail_store::StoredEvent],
    log_files: &LogFiles,
) -> anyhow::Result<Vec<EventView<'a>>> {
    events.iter().map(|e| EventView::checked(e, log_files)).collect()
}

fn print_story(
    g: &Grant,
    parents: &[String],
    events: &[EventView],
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let v = GrantView::new(g);
    let field =
        |out: &mut dyn Write, name: &str, value: &str| writeln!(out, "{name:<20}{}", terminal_safe(value));
    field(out, "grant", v.grant_id)?;
    field(out, "key", v.key_arn)?;
    field(out, "state", &state_text(g))?;
    field(out, "grantee", v.grantee_principal.unwrap_or("unknown"))?;
    field(out, "retiring principal", v.retiring_principal.unwrap_or("-"))?;
    field(out, "operations", &v.operations.map(|o| o.join(", ")).unwrap_or_else(|| "unknown".into()))?;
    let constraints =
        v.constraints.and_then(|c| serde_json::to_string(c).ok()).unwrap_or_else(|| "none".into());
    field(out, "constraints", if g.creation_seen { &constraints } else { "unknown" })?;
    field(out, "name", v.name.unwrap_or("-"))?;
    let actor = |at: &Option<String>, by: Option<&str>, via: Option<&str>, ip: Option<&str>| match at {
        None => "-".to_string(),
        Some(at) => {
            let via = via.map(|s| format!(" via {s}")).unwrap_or_default();
            let ip = ip.map(|s| format!(" from {s}")).unwrap_or_default();
            format!("{at} by {}{via}{ip}", by.unwrap_or("unknown"))
        }
    };
    let created = if g.creation_seen {
        actor(&v.created_at, v.created_by, v.created_by_service, v.created_from_ip)
    } else {
        "before the logs begin (CreateGrant not seen)".into()
    };
    field(out, "created", &created)?;
    field(out, "ended", &actor(&v.ended_at, v.ended_by, v.ended_by_service, v.ended_from_ip))?;
    if !parents.is_empty() {
        field(out, "created through", &parents.join(", "))?;
    }
    for anomaly in &g.anomalies {
        field(out, "anomaly", &serde_json::to_string(anomaly).unwrap_or_default())?;
    }
    writeln!(out)?;
    let mut table =
        Table::new(vec!["TIME", "EVENT", "RESULT", "CALLER", "VIA", "SOURCE IP", "EVENT ID", "OBJECT"]);
    for e in events {
        let object = match e.log_file {
            Some(verdict) => format!("{} ({verdict})", e.object),
            None => e.object.to_string(),
        };
        table.row(vec![
            e.event_time.clone(),
            e.event_name.into(),
            e.error_code.unwrap_or("ok").into(),
            e.caller.unwrap_or("-").into(),
            e.invoked_by.unwrap_or("-").into(),
            e.source_ip.unwrap_or("-").into(),
            e.event_id.into(),
            object,
        ]);
    }
    table.print(out)?;
    writeln!(out)?;
    Ok(())
}

/// Did this call succeed only through a grant (as far as the evidence shows)?
fn depended(c: &StoredCall) -> bool {
    c.label.is_grant_only()
}

fn print_covered_calls(calls: &[StoredCall], out: &mut dyn Write) -> anyhow::Result<()> {
    let depended_count = calls.iter().filter(|c| depended(c)).count();
    writeln!(
        out,
        "calls this grant covered or may have covered: {} ({} depended on it)",
        calls.len(),
        depended_count
    )?;
    if calls.is_empty() {
        writeln!(out)?;
        return Ok(());
    }
    let mut table =
        Table::new(vec!["TIME", "EVENT", "PRINCIPAL", "LABEL", "EVIDENCE", "DEPENDED", "EVENT ID"]);
    for c in calls {
        table.row(vec![
            timestamp::format(c.event_time),
            c.event_name.clone(),
            c.principal.clone().unwrap_or_else(|| "-".into()),
            c.label.as_str().to_string(),
            c.evidence.as_str().to_string(),
            if depended(c) { "yes".into() } else { "-".into() },
            c.event_id.clone(),
        ]);
    }
    table.print(out)?;
    writeln!(out)?;
    Ok(())
}

pub fn rebuild(db: &Location, config: &Config) -> anyhow::Result<ExitCode> {
    let mut store = open_existing(db)?;
    store.use_settings(&config.labels, true)?;
    let grants = store.rebuild()?;
    let (objects, events, _) = store.totals()?;
    writeln!(std::io::stdout(), "rebuilt {grants} grant(s) from {events} event(s) in {objects} object(s)")?;
    Ok(ExitCode::SUCCESS)
}

/// Opens (creating if needed) a database to write to with the configured settings, which must
/// be those its labels were computed with.
pub fn open_configured(db: &Location, config: &Config) -> anyhow::Result<Store> {
    let mut store = open_store(db)?;
    store.use_settings(&config.labels, false)?;
    Ok(store)
}

/// Opens a database that must already exist: a query against a typo'd path should say so,
/// not answer from a new empty database.
pub fn open_existing(db: &Location) -> anyhow::Result<Store> {
    if let Location::File(path) = db
        && !path.exists()
    {
        bail!("database {} does not exist; run `granttrail ingest` first", path.display());
    }
    open_store(db)
}

/// The time of the latest KMS event in the database: the reference time of listings that
/// are not given one.
pub fn latest_event(store: &Store) -> anyhow::Result<Option<i64>> {
    Ok(store.kms_event_span(granttrail_store::Window::default())?.map(|(_, last)| last))
}

/// Opens the database, saying on standard error when an older schema is being migrated
/// (rewriting the records of a large database takes minutes) and how long it took.
fn open_store(db: &Location) -> anyhow::Result<Store> {
    let started = std::time::Instant::now();
    let gigabytes = match db {
        Location::File(path) => std::fs::metadata(path).map(|m| m.len() as f64 / 1e9).unwrap_or(0.0),
        Location::Postgres(_) => 0.0,
    };
    let mut bar: Option<indicatif::ProgressBar> = None;
    let store = Store::open_at(db, Journal::Wal, &mut |p: MigrationProgress| {
        let bar = bar.get_or_insert_with(|| {
            // To the current schema, through every version in between (`p.version` is the step).
            eprintln!(
                "granttrail: migrating {db} ({gigabytes:.2} GB) to schema {}",
                granttrail_store::SCHEMA_VERSION
            );
            crate::ingest_cmd::counting_bar(p.total, "records")
        });
        if p.compacting {
            bar.set_message("compacting the file");
        } else {
            bar.set_length(p.total);
            bar.set_position(p.done);
        }
    })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
        eprintln!("granttrail: migrated {db} in {:.1} s", started.elapsed().as_secs_f64());
    }
    Ok(store)
}

fn state_text(g: &Grant) -> String {
    let state = g.state.as_str();
    if g.creation_seen { state.into() } else { format!("{state} (created before logs)") }
}

fn unknown(g: &Grant) -> String {
    if g.creation_seen { "-".into() } else { "unknown".into() }
}

/// `111122223333/1234abcd` for `arn:aws:kms:region:111122223333:key/1234abcd-...`.
fn short_key(arn: &str) -> String {
    let account = granttrail_grants::event::arn_account(arn).unwrap_or("?");
    let id = arn.rsplit('/').next().unwrap_or(arn);
    let region = arn.split(':').nth(3).unwrap_or("?");
    format!("{account}/{region}/{}", id.chars().take(8).collect::<String>())
}

fn short_grant(id: &str) -> String {
    if id.chars().count() > 12 {
        format!("{}…", id.chars().take(12).collect::<String>())
    } else {
        id.into()
    }
}
