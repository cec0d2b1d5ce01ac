//! `granttrail calls`.

use granttrail_store::Location;
use std::io::Write;
use std::process::ExitCode;

use clap::Args;
use granttrail_grants::when::When;
use granttrail_grants::{Label, timestamp};
use granttrail_store::{CallFilter, StoredCall};

use crate::grants_cmd::{latest_event, open_existing};
use crate::output::{CsvOut, Format, JsonArrayOut, Table, print_json_line};
use crate::parse_when;
use crate::provenance::LogFiles;

fn parse_label(text: &str) -> Result<Label, String> {
    Label::parse(text).ok_or_else(|| {
        let all: Vec<&str> = Label::ALL.iter().map(|l| l.as_str()).collect();
        format!("{text:?} is not a label; labels are {}", all.join(", "))
    })
}

#[derive(Debug, Args)]
pub struct CallsArgs {
    /// Only calls with this label (repeatable).
    #[arg(long = "label", value_name = "LABEL", value_parser = parse_label)]
    labels: Vec<Label>,
    /// Only calls that succeeded only through a grant: labels grant_only and grant_only_likely.
    #[arg(long)]
    grant_only: bool,
    /// Only calls on this key (full key ARN).
    #[arg(long, value_name = "ARN")]
    key: Option<String>,
    /// Only calls by this principal (as shown in the principal column).
    #[arg(long, value_name = "PRINCIPAL")]
    principal: Option<String>,
    /// Only calls this grant covered or may have covered.
    #[arg(long, value_name = "GRANT_ID")]
    grant: Option<String>,
    /// Only calls at or after this time: RFC 3339, a date, or a duration back from the latest
    /// event in the database (30d, 12h, 90m).
    #[arg(long, value_name = "TIME", value_parser = parse_when)]
    since: Option<When>,
    /// Only calls before this time: RFC 3339, a date, or a duration back from the latest event.
    #[arg(long, value_name = "TIME", value_parser = parse_when)]
    until: Option<When>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// One call side as `calls --format json` prints it: a stable interface.
#[derive(Debug, serde::Serialize)]
pub struct CallView<'a> {
    pub event_id: &'a str,
    pub shared_event_id: Option<&'a str>,
    pub event_time: String,
    pub event_name: &'a str,
    pub side: &'a str,
    pub key_arn: &'a str,
    pub operation: Option<&'a str>,
    pub principal: Option<&'a str>,
    pub label: &'a str,
    pub evidence: &'a str,
    pub grant_ids: &'a [String],
    pub reasons: &'a [granttrail_grants::Reason],
    pub flags: &'a [String],
    /// What `granttrail verify` said of the log file the call was read from (absent until
    /// verify has recorded anything).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_file: Option<&'static str>,
}

impl<'a> CallView<'a> {
    pub fn new(c: &'a StoredCall) -> CallView<'a> {
        CallView {
            event_id: &c.event_id,
            shared_event_id: c.shared_event_id.as_deref(),
            event_time: timestamp::format(c.event_time),
            event_name: &c.event_name,
            side: c.side.as_str(),
            key_arn: &c.key_arn,
            operation: c.operation.as_deref(),
            principal: c.principal.as_deref(),
            label: c.label.as_str(),
            evidence: c.evidence.as_str(),
            grant_ids: &c.grant_ids,
            reasons: &c.reasons,
            flags: &c.flags,
            log_file: None,
        }
    }

    pub fn with_log_file(self, log_file: Option<&'static str>) -> CallView<'a> {
        CallView { log_file, ..self }
    }
}

pub fn run(db: &Location, args: &CallsArgs) -> anyhow::Result<ExitCode> {
    let mut store = open_existing(db)?;
    store.refresh_labels()?;
    store.read_snapshot()?;
    let mut labels = args.labels.clone();
    if args.grant_only {
        labels.extend([Label::GrantOnly, Label::GrantOnlyLikely]);
    }
    let relative = args.since.into_iter().chain(args.until).any(|w| matches!(w, When::Ago(_)));
    let latest = if relative { latest_event(&store)?.unwrap_or(0) } else { 0 };
    let filter = CallFilter {
        labels,
        key_arn: args.key.clone(),
        principal: args.principal.clone(),
        grant_id: args.grant.clone(),
        since: args.since.map(|w| w.resolve(latest)),
        until: args.until.map(|w| w.resolve(latest)),
    };
    let mut out = std::io::stdout().lock();
    let log_files = LogFiles::new(&store)?;
    // All but the table are printed as the calls are read: a key's history can be long.
    match args.format {
        Format::Jsonl => store.for_each_call(&filter, |c| {
            let log_file = log_files.of_event(&c.event_id)?;
            print_json_line(&CallView::new(&c).with_log_file(log_file), &mut out)
        })?,
        Format::Csv => {
            let mut csv = CsvOut::new(&CSV_HEADER, &mut out)?;
            store.for_each_call(&filter, |c| csv.row(&csv_row(&c)))?;
            csv.finish()?;
        }
        Format::Json => {
            let mut array = JsonArrayOut::new(&mut out);
            store.for_each_call(&filter, |c| {
                let log_file = log_files.of_event(&c.event_id)?;
                array.item(&CallView::new(&c).with_log_file(log_file))
            })?;
            array.finish()?;
        }
        Format::Table => print_table(&store.calls(&filter)?, &log_files, &mut out)?,
    }
    Ok(ExitCode::SUCCESS)
}

const CSV_HEADER: [&str; 11] = [
    "event_time",
    "event_name",
    "side",
    "key_arn",
    "principal",
    "label",
    "evidence",
    "grant_ids",
    "event_id",
    "shared_event_id",
    "reasons",
];

fn csv_row(c: &StoredCall) -> Vec<String> {
    vec![
        timestamp::format(c.event_time),
        c.event_name.clone(),
        c.side.to_string(),
        c.key_arn.clone(),
        c.principal.clone().unwrap_or_default(),
        c.label.as_str().to_string(),
        c.evidence.as_str().to_string(),
        c.grant_ids.join(" "),
        c.event_id.clone(),
        c.shared_event_id.clone().unwrap_or_default(),
        c.reasons.iter().map(|r| r.text.as_str()).collect::<Vec<_>>().join("; "),
    ]
}

/// The table aligns its columns over every row, so it is printed once all are read.
fn print_table(calls: &[StoredCall], log_files: &LogFiles, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut columns = vec!["TIME", "EVENT", "SIDE", "PRINCIPAL", "LABEL", "EVIDENCE", "GRANTS", "EVENT ID"];
    if log_files.recorded() {
        columns.push("LOG FILE");
    }
    let mut table = Table::new(columns);
    for c in calls {
        let grants: Vec<String> = c.grant_ids.iter().map(|g| g.chars().take(12).collect()).collect();
        let mut row = vec![
            timestamp::format(c.event_time),
            c.event_name.clone(),
            c.side.to_string(),
            c.principal.clone().unwrap_or_else(|| "-".into()),
            c.label.as_str().to_string(),
            c.evidence.as_str().to_string(),
            if grants.is_empty() { "-".into() } else { grants.join(",") },
            c.event_id.clone(),
        ];
        row.extend(log_files.of_event(&c.event_id)?.map(str::to_string));
        table.row(row);
    }
    table.print(out)?;
    writeln!(out, "{} call(s)", calls.len())?;
    Ok(())
}
