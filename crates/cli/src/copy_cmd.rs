//! `granttrail copy`: a whole database into a new one, on either engine.

use std::io::Write;
use std::process::ExitCode;

use clap::Args;
use granttrail_store::{Journal, Location, Store};

use crate::grants_cmd::open_existing;
use crate::parse_db;

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// The database to copy: a SQLite file or a postgres:// URL.
    #[arg(long, value_name = "DB", value_parser = parse_db)]
    from: Location,

    /// The database to copy into (created if missing; must hold nothing yet).
    #[arg(long, value_name = "DB", value_parser = parse_db)]
    to: Location,
}

pub fn run(args: &CopyArgs) -> anyhow::Result<ExitCode> {
    if args.from == args.to {
        anyhow::bail!("--from and --to are the same database ({})", args.from);
    }
    let started = std::time::Instant::now();
    let mut from = open_existing(&args.from)?;
    let mut to = Store::open_at(&args.to, Journal::Wal, &mut |_| {})?;
    let bar = crate::ingest_cmd::counting_bar(0, "rows");
    let copied = from.copy_into(&mut to, &mut |table, rows| {
        bar.set_message(table.to_string());
        bar.set_position(rows);
    });
    bar.finish_and_clear();
    let copied = copied.map_err(|e| anyhow::anyhow!("copying {} into {}: {e}", args.from, args.to))?;
    let rows: u64 = copied.tables.iter().map(|(_, n)| n).sum();
    let events = copied.tables.iter().find(|(t, _)| *t == "event_rows").map_or(0, |(_, n)| *n);
    writeln!(
        std::io::stdout(),
        "copied {} into {}: {rows} row(s), {events} event(s), in {:.1} s",
        args.from,
        args.to,
        started.elapsed().as_secs_f64()
    )?;
    Ok(ExitCode::SUCCESS)
}
