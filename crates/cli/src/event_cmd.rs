//! `granttrail event`: one stored event and the CloudTrail record behind it.

use granttrail_store::Location;
use std::io::Write;
use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, ValueEnum};
use granttrail_grants::timestamp;
use granttrail_store::{EventRecord, StoredEvent};

use crate::grants_cmd::open_existing;
use crate::output::terminal_safe;

#[derive(Debug, Args)]
pub struct EventArgs {
    /// The event's CloudTrail `eventID`.
    event_id: String,

    /// `table`: the normalised fields, the object the record came from (and any other it was
    /// delivered in again), the other accounts' copies of the call and any different record with
    /// the same eventID; `json`: the record exactly as CloudTrail delivered it.
    #[arg(long, value_enum, default_value_t = EventFormat::Table)]
    format: EventFormat,

    /// Which of the different records stored under this eventID to show (a collision), in the
    /// order they were stored; the table of the first names the others.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    record: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum EventFormat {
    Table,
    Json,
}

pub fn run(db: &Location, args: &EventArgs) -> anyhow::Result<ExitCode> {
    let mut store = open_existing(db)?;
    store.read_snapshot()?;
    let mut all = store.event_records(&args.event_id)?;
    if all.is_empty() {
        bail!("no event with eventID {:?} in {}", args.event_id, db);
    }
    let stored = all.len();
    let index = usize::try_from(args.record - 1)?;
    if index >= stored {
        bail!(
            "eventID {:?} names {stored} stored record(s) in {db}; there is no record {}",
            args.event_id,
            args.record
        );
    }
    let found = all.swap_remove(index);
    let mut out = std::io::stdout().lock();
    match args.format {
        // The bytes as delivered: the record is the evidence, so it is not re-encoded.
        EventFormat::Json => match &found.record {
            Some(record) => writeln!(out, "{record}")?,
            None => bail!(
                "the record of event {:?} was dropped by `granttrail prune`; its normalised fields remain \
                 (granttrail event {})",
                args.event_id,
                args.event_id
            ),
        },
        EventFormat::Table => print_fields(&found, index, &mut out)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The table of `found`, the record at `index` (from 0) of those stored under its eventID.
fn print_fields(found: &EventRecord, index: usize, out: &mut dyn Write) -> anyhow::Result<()> {
    let e = &found.stored.event;
    let c = &e.caller;
    let error = e.error_code.as_ref().map(|code| match &e.error_message {
        Some(message) => format!("{code}: {message}"),
        None => code.clone(),
    });
    let fields: [(&str, Option<String>); 21] = [
        ("event id", Some(e.event_id.clone())),
        ("shared event id", e.shared_event_id.clone()),
        ("time", Some(timestamp::format(e.event_time))),
        ("event", Some(format!("{} ({})", e.event_name, e.event_source))),
        ("type", e.event_type.clone()),
        ("error", error),
        ("dry run", e.dry_run.then(|| "yes".to_string())),
        ("region", e.aws_region.clone()),
        ("recipient account", e.recipient_account_id.clone()),
        ("caller", c.principal().map(str::to_string)),
        ("caller type", c.kind.clone()),
        ("caller account", c.account_id.clone()),
        ("session issuer", c.session_issuer_arn.clone()),
        ("invoked by", c.invoked_by.clone()),
        ("source ip", e.source_ip.clone()),
        ("user agent", e.user_agent.clone()),
        ("key", e.key_arn.clone()),
        ("destination key", e.destination_key_arn.clone()),
        ("key as requested", e.request_key_id.clone()),
        ("grant id", e.grant_id.clone()),
        ("object", Some(found.stored.object.clone())),
    ];
    let width = fields.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    for (name, value) in fields {
        if let Some(value) = value {
            writeln!(out, "{name:<width$}  {}", terminal_safe(&value))?;
        }
    }
    let copies = if found.copies.is_empty() { vec!["none".to_string()] } else { copy_lines(&found.copies) };
    for (i, line) in copies.iter().enumerate() {
        let name = if i == 0 { "other copies" } else { "" };
        writeln!(out, "{name:<width$}  {}", terminal_safe(line))?;
    }
    for (i, object) in found.delivered_again.iter().enumerate() {
        let name = if i == 0 { "also delivered in" } else { "" };
        writeln!(out, "{name:<width$}  {}", terminal_safe(object))?;
    }
    for (i, other) in found.collisions.iter().enumerate() {
        let name = if i == 0 { "same eventID" } else { "" };
        // The collisions are the other records in storage order: this one's place is skipped.
        let number = if i < index { i + 1 } else { i + 2 };
        let line = format!(
            "a different record: {} at {} from {} (--record {number})",
            other.event.event_name,
            timestamp::format(other.event.event_time),
            other.object
        );
        writeln!(out, "{name:<width$}  {}", terminal_safe(&line))?;
    }
    let which = if index == 0 { String::new() } else { format!(" --record {}", index + 1) };
    match found.record {
        Some(_) => writeln!(
            out,
            "\nThe record as delivered: granttrail event {}{which} --format json",
            terminal_safe(&e.event_id)
        )?,
        None => writeln!(out, "\nThe record as delivered was dropped by `granttrail prune`.")?,
    }
    Ok(())
}

/// `EVENT_ID (account ACCOUNT) from OBJECT` for each copy.
fn copy_lines(copies: &[StoredEvent]) -> Vec<String> {
    copies
        .iter()
        .map(|copy| {
            let account = copy.event.recipient_account_id.as_deref().unwrap_or("unknown account");
            format!("{} (account {account}) from {}", copy.event.event_id, copy.object)
        })
        .collect()
}
