//! granttrail on PostgreSQL, against a real server started by the test (testkit::Postgres):
//! every command prints what it prints on SQLite, byte for byte, for the bundled example, every
//! classification scenario (in order, in reverse order, and after a rebuild) and a generated
//! corpus; several ingests at once into one PostgreSQL database give one SQLite ingest's answer,
//! and an ingest or a rebuild killed anywhere loses nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use common::{Workspace, fixtures, read_json, scenario_imports as imports};
use granttrail_testkit::Postgres;
use serde_json::Value;

/// `granttrail [--config dir/config.toml] args...` in `ws`: its exit status and standard output.
fn run(ws: &Workspace, config: Option<&Path>, args: &[&str]) -> (i32, String) {
    let out = run_full(ws, config, args);
    (out.status.code().unwrap_or(-1), String::from_utf8(out.stdout).unwrap())
}

fn run_full(ws: &Workspace, config: Option<&Path>, args: &[&str]) -> std::process::Output {
    let mut full: Vec<String> = Vec::new();
    if let Some(config) = config.filter(|c| c.exists()) {
        full.extend(["--config".to_string(), config.to_string_lossy().into_owned()]);
    }
    full.extend(args.iter().map(|a| a.to_string()));
    let full: Vec<&str> = full.iter().map(String::as_str).collect();
    ws.run(&full)
}

fn ok(ws: &Workspace, config: Option<&Path>, args: &[&str]) -> String {
    let out = run_full(ws, config, args);
    assert!(out.status.success(), "granttrail {args:?} on {} failed: {}", ws.db_arg(), common::stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// What every reading command prints about the database of `ws`, by command. `as_of` adds
/// findings runs at those reference times.
fn outputs(ws: &Workspace, config: Option<&Path>, as_of: &[String]) -> Vec<(String, (i32, String))> {
    let mut commands: Vec<Vec<String>> = [
        &["grants"][..],
        &["grants", "--format", "json"],
        &["grants", "--state", "active", "--format", "csv"],
        &["calls"],
        &["calls", "--format", "json"],
        &["calls", "--grant-only", "--format", "json"],
        &["findings"],
        &["findings", "--format", "json"],
        &["findings", "--format", "sarif"],
    ]
    .iter()
    .map(|c| c.iter().map(|a| a.to_string()).collect())
    .collect();
    for t in as_of {
        commands.push(["findings", "--format", "json", "--as-of", t].map(String::from).to_vec());
    }
    let grants: Value = serde_json::from_str(&ok(ws, config, &["grants", "--format", "json"])).unwrap();
    for g in grants.as_array().unwrap().iter().take(3) {
        let id = g["grant_id"].as_str().unwrap().to_string();
        commands.push(vec!["grant".into(), id.clone()]);
        commands.push(vec!["grant".into(), id, "--format".into(), "json".into()]);
        let key = g["key_arn"].as_str().unwrap().to_string();
        commands.push(vec!["calls".into(), "--key".into(), key.clone(), "--format".into(), "json".into()]);
        commands.push(vec![
            "grants".into(),
            "--key".into(),
            key,
            "--active-at".into(),
            "2024-05-01T10:00:00Z".into(),
        ]);
    }
    let calls: Value = serde_json::from_str(&ok(ws, config, &["calls", "--format", "json"])).unwrap();
    for c in calls.as_array().unwrap().iter().take(3) {
        let id = c["event_id"].as_str().unwrap().to_string();
        commands.push(vec!["event".into(), id.clone()]);
        commands.push(vec!["event".into(), id, "--format".into(), "json".into()]);
    }
    let mut out: Vec<(String, (i32, String))> = commands
        .iter()
        .map(|c| {
            let args: Vec<&str> = c.iter().map(String::as_str).collect();
            (c.join(" "), run(ws, config, &args))
        })
        .collect();
    for format in ["md", "json", "csv", "html"] {
        let file = ws.path(&format!("report.{format}"));
        let status = run(ws, config, &["report", "--format", format, "--output", file.to_str().unwrap()]).0;
        out.push((format!("report {format}"), (status, std::fs::read_to_string(&file).unwrap_or_default())));
    }
    out
}

fn assert_same(what: &str, sqlite: &[(String, (i32, String))], postgres: &[(String, (i32, String))]) {
    assert_eq!(sqlite.len(), postgres.len(), "{what}: a different list of commands");
    for ((command, on_sqlite), (_, on_postgres)) in sqlite.iter().zip(postgres) {
        assert_eq!(
            on_sqlite, on_postgres,
            "{what}: `granttrail {command}` differs between SQLite and PostgreSQL"
        );
    }
}

fn as_of_times(dir: &Path) -> Vec<String> {
    let path = dir.join("findings.json");
    if !path.exists() {
        return Vec::new();
    }
    read_json(&path).as_array().unwrap().iter().map(|c| c["as_of"].as_str().unwrap().to_string()).collect()
}

#[test]
fn every_scenario_reads_the_same_on_postgres_in_any_order_and_after_a_rebuild() {
    let Some(pg) = Postgres::start() else { return };
    let mut names: Vec<PathBuf> =
        std::fs::read_dir(fixtures().join("scenarios")).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    assert!(names.len() > 50, "the scenarios are missing");
    for (i, dir) in names.iter().enumerate() {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let config = dir.join("config.toml");
        let logs = dir.join("logs");
        let as_of = as_of_times(dir);

        let sqlite = Workspace::new();
        ok(&sqlite, Some(&config), &["ingest", "-q", logs.to_str().unwrap()]);
        imports(&sqlite, dir);
        let expected = outputs(&sqlite, Some(&config), &as_of);

        let postgres = Workspace::postgres(pg.database(&format!("scenario_{i}")));
        ok(&postgres, Some(&config), &["ingest", "-q", logs.to_str().unwrap()]);
        imports(&postgres, dir);
        assert_same(&name, &expected, &outputs(&postgres, Some(&config), &as_of));

        // Imports first, then the files one at a time in reverse order (which object a record
        // is shown from is the first that delivered it, on both engines).
        let mut files: Vec<_> = std::fs::read_dir(&logs).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        files.reverse();
        let reversed = |ws: &Workspace| {
            imports(ws, dir);
            for file in &files {
                ok(ws, Some(&config), &["ingest", "-q", file.to_str().unwrap()]);
            }
            outputs(ws, Some(&config), &as_of)
        };
        let on_sqlite = reversed(&Workspace::new());
        let on_postgres = reversed(&Workspace::postgres(pg.database(&format!("scenario_{i}_reversed"))));
        assert_same(&format!("{name} (reversed)"), &on_sqlite, &on_postgres);

        ok(&postgres, Some(&config), &["rebuild"]);
        assert_same(&format!("{name} (rebuilt)"), &expected, &outputs(&postgres, Some(&config), &as_of));
    }
}

#[test]
fn the_example_and_a_generated_corpus_read_the_same_on_postgres() {
    let Some(pg) = Postgres::start() else { return };
    let corpus = tempfile::tempdir().unwrap();
    granttrail_corpus::write_corpus(&granttrail_corpus::Options {
        out: corpus.path().to_path_buf(),
        records: 6_000,
        kms_share: 0.4,
        grant_share: 0.02,
        files: 12,
        accounts: 2,
        regions: 2,
        seed: 5,
        gzip: true,
    })
    .unwrap();
    let example = fixtures().join("example");
    for (i, input) in [example.as_path(), corpus.path()].iter().enumerate() {
        let sqlite = Workspace::new();
        ok(&sqlite, None, &["ingest", "-q", input.to_str().unwrap()]);
        let postgres = Workspace::postgres(pg.database(&format!("input_{i}")));
        ok(&postgres, None, &["ingest", "-q", input.to_str().unwrap()]);
        let expected = outputs(&sqlite, None, &[]);
        assert!(expected.iter().any(|(c, (_, out))| c == "calls --format json" && out.len() > 100));
        assert_same(&input.display().to_string(), &expected, &outputs(&postgres, None, &[]));
        // A second ingest of the same input adds nothing.
        let again = ok(&postgres, None, &["ingest", input.to_str().unwrap()]);
        assert!(again.contains("0 new"), "{again}");
        assert_same(&format!("{} again", input.display()), &expected, &outputs(&postgres, None, &[]));
    }
}

/// A deterministic choice for file `i` in `round`: below `n`.
fn pick(i: usize, round: usize, salt: usize, n: usize) -> usize {
    let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ ((round * 31 + salt) as u64 + 7);
    x ^= x >> 29;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 32;
    (x % n as u64) as usize
}

/// One `granttrail ingest` process for each of `shares`, all at once into the database of `ws`;
/// each must succeed.
fn ingest_at_once(ws: &Workspace, shares: &[Vec<&PathBuf>], what: &str) {
    let children: Vec<_> = shares
        .iter()
        .map(|share| {
            let mut args = vec!["ingest", "-q"];
            args.extend(share.iter().map(|file| file.to_str().unwrap()));
            ws.spawn(&args)
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn concurrent_ingests_into_postgres_give_one_sqlite_ingests_answer() {
    let Some(pg) = Postgres::start() else { return };
    let corpus = tempfile::tempdir().unwrap();
    granttrail_corpus::write_corpus(&granttrail_corpus::Options {
        out: corpus.path().to_path_buf(),
        records: 12_000,
        kms_share: 0.3,
        grant_share: 0.01,
        files: 30,
        accounts: 2,
        regions: 2,
        seed: 23,
        gzip: true,
    })
    .unwrap();
    let mut files: Vec<PathBuf> = granttrail_testkit::files_under(corpus.path());
    files.sort();
    assert_eq!(files.len(), 30, "{files:?}");

    let sqlite = Workspace::new();
    ok(&sqlite, None, &["ingest", "-q", corpus.path().to_str().unwrap()]);
    let grants = ok(&sqlite, None, &["grants", "--format", "json"]);
    let calls = ok(&sqlite, None, &["calls", "--format", "json"]);
    let findings = ok(&sqlite, None, &["findings", "--format", "json"]);

    for (round, writers) in [(0, 2), (1, 3), (2, 4)] {
        let url = pg.database(&format!("writers_{round}"));
        // Every file to one writer, and a third of them to a second as well: overlapping inputs.
        let mut shares: Vec<Vec<&PathBuf>> = vec![Vec::new(); writers];
        for (i, file) in files.iter().enumerate() {
            let first = pick(i, round, 0, writers);
            shares[first].push(file);
            if pick(i, round, 1, 3) == 0 {
                shares[(first + 1 + pick(i, round, 2, writers - 1)) % writers].push(file);
            }
        }
        let ws = Workspace::postgres(url);
        ingest_at_once(&ws, &shares, &format!("round {round}"));
        assert_eq!(ok(&ws, None, &["grants", "--format", "json"]), grants, "round {round}: grants");
        assert_eq!(ok(&ws, None, &["calls", "--format", "json"]), calls, "round {round}: calls");
        assert_eq!(ok(&ws, None, &["findings", "--format", "json"]), findings, "round {round}: findings");
    }
}

#[test]
fn objects_too_big_to_lock_by_name_fit_a_stock_server_beside_other_writers() {
    let Some(pg) = Postgres::start() else { return };
    // An object of about 30,000 KMS events: more eventIDs than a stock server's lock table holds
    // (64 locks a connection), were each locked by name until the commit. Beside it, twenty
    // objects of about 750 events each, most past the most a writer locks by name: each such
    // object meets another writer's names once (a conflict, written again), more conflicts
    // in one run than a writer tries again in a row.
    let corpus = tempfile::tempdir().unwrap();
    let options = |out: &str, records, files, seed| granttrail_corpus::Options {
        out: corpus.path().join(out),
        records,
        kms_share: 0.5,
        grant_share: 0.01,
        files,
        accounts: 2,
        regions: 2,
        seed,
        gzip: true,
    };
    granttrail_corpus::write_corpus(&options("big", 60_000, 1, 5)).unwrap();
    granttrail_corpus::write_corpus(&options("small", 30_000, 20, 6)).unwrap();
    // A second copy of every object, under another name, as two trails deliver one event: the
    // objects differ, their eventIDs are the same. Its records come in the reverse order, so
    // that the two writers' first names differ and both come to lock the whole kind at once.
    let copies = |folder: &str| -> Vec<PathBuf> {
        let mut files = granttrail_testkit::files_under(&corpus.path().join(folder));
        files.sort();
        let mut copied = Vec::new();
        for (i, file) in files.iter().enumerate() {
            let mut log: Value =
                serde_json::from_reader(flate2::read::GzDecoder::new(std::fs::File::open(file).unwrap()))
                    .unwrap();
            log["Records"].as_array_mut().unwrap().reverse();
            let copy = corpus.path().join(format!("{folder}-copy")).join(format!("{i}.json"));
            std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
            std::fs::write(&copy, serde_json::to_vec(&log).unwrap()).unwrap();
            copied.push(copy);
        }
        files.into_iter().chain(copied).collect()
    };
    let big = copies("big");
    let small = copies("small");

    let sqlite = Workspace::new();
    ok(&sqlite, None, &["ingest", "-q", corpus.path().to_str().unwrap()]);
    let grants = ok(&sqlite, None, &["grants", "--format", "json"]);
    let calls = ok(&sqlite, None, &["calls", "--format", "json"]);

    // The big object and its copy are written at once by two writers, each with half of the
    // small objects; a third writes the copies of the small ones meanwhile.
    let url = pg.database("big_objects");
    let (originals, small_copies) = small.split_at(small.len() / 2);
    let (first, second) = originals.split_at(originals.len() / 2);
    let shares = [
        std::iter::once(&big[0]).chain(first).collect::<Vec<_>>(),
        std::iter::once(&big[1]).chain(second).collect(),
        small_copies.iter().collect(),
    ];
    let ws = Workspace::postgres(url);
    ingest_at_once(&ws, &shares, "big objects");
    assert_eq!(ok(&ws, None, &["grants", "--format", "json"]), grants, "grants");
    assert_eq!(ok(&ws, None, &["calls", "--format", "json"]), calls, "calls");
    // Each eventID stored once, and each other delivery of it recorded as a copy: no two
    // writers both took an eventID for new.
    let rows = "SELECT (SELECT count(*) FROM event_rows) || ' ' || (SELECT count(*) FROM event_copies)";
    let conn = rusqlite::Connection::open(sqlite.db()).unwrap();
    let on_sqlite: String = conn.query_row(rows, [], |r| r.get(0)).unwrap();
    assert_eq!(pg.psql_in("big_objects", rows), on_sqlite, "event rows and copies");
}

/// What a kill test compares: every grant, every call and every finding, as JSON.
fn state(ws: &Workspace) -> [String; 3] {
    ["grants", "calls", "findings"].map(|command| ok(ws, None, &[command, "--format", "json"]))
}

/// An ingest or a rebuild killed anywhere (SIGKILL: the connection drops mid-transaction)
/// leaves nothing half-written, and never holds up the next writer: running the work again,
/// or another writer running beside the killed one, ends in one clean ingest's state.
#[test]
fn killing_an_ingest_or_a_rebuild_into_postgres_anywhere_loses_nothing() {
    let Some(pg) = Postgres::start() else { return };
    let corpus = tempfile::tempdir().unwrap();
    granttrail_corpus::write_corpus(&granttrail_corpus::Options {
        out: corpus.path().to_path_buf(),
        records: 8_000,
        kms_share: 0.3,
        grant_share: 0.01,
        files: 20,
        accounts: 2,
        regions: 2,
        seed: 11,
        gzip: true,
    })
    .unwrap();
    let logs = corpus.path().to_str().unwrap();
    let sqlite = Workspace::new();
    ok(&sqlite, None, &["ingest", "-q", logs]);
    let expected = state(&sqlite);
    assert!(expected[0].matches("grant_id").count() > 10, "the corpus has grants");

    let whole = Workspace::postgres(pg.database("whole"));
    let started = Instant::now();
    ok(&whole, None, &["ingest", "-q", logs]);
    let full = started.elapsed();
    assert_eq!(state(&whole), expected);

    for (i, delay) in common::kill_delays(common::crash_iterations(), full).into_iter().enumerate() {
        let ws = Workspace::postgres(pg.database(&format!("killed_{i}")));
        let mut killed = ws.spawn(&["ingest", "-q", logs]);
        // Every other round a second writer runs beside the one killed: it must not wait
        // for a lock the dead connection held.
        let beside = (i % 2 == 1).then(|| ws.spawn(&["ingest", "-q", logs]));
        std::thread::sleep(delay);
        let _ = killed.kill(); // SIGKILL; the process may have finished already
        killed.wait().unwrap();
        if let Some(beside) = beside {
            let out = beside.wait_with_output().unwrap();
            assert!(out.status.success(), "iteration {i}: {}", String::from_utf8_lossy(&out.stderr));
        } else {
            ok(&ws, None, &["ingest", "-q", logs]);
        }
        assert_eq!(state(&ws), expected, "iteration {i}: killed after {delay:?}");
    }

    // A rebuild is one transaction: killed, it leaves the state it started from.
    let started = Instant::now();
    ok(&whole, None, &["rebuild"]);
    let rebuild = started.elapsed();
    for delay in common::kill_delays(common::crash_iterations().div_ceil(2), rebuild) {
        let mut child = whole.spawn(&["rebuild"]);
        std::thread::sleep(delay);
        let _ = child.kill();
        child.wait().unwrap();
        assert_eq!(state(&whole), expected, "rebuild killed after {delay:?}");
    }
}

#[test]
fn a_database_of_a_newer_granttrail_is_refused_and_a_bad_url_is_named() {
    let Some(pg) = Postgres::start() else { return };
    let url = pg.database("newer");
    let ws = Workspace::postgres(url.clone());
    ok(&ws, None, &["ingest", "-q", fixtures().join("example").to_str().unwrap()]);
    pg.psql_in("newer", "UPDATE granttrail_schema SET version = 99");
    let out = ws.run(&["grants"]);
    assert!(!out.status.success());
    let said = common::stderr(&out);
    assert!(said.contains("schema version 99 is newer"), "{said}");

    let closed = format!("postgres://postgres:secret@127.0.0.1:{}/nothing", granttrail_testkit::free_port());
    let out = Workspace::postgres(closed).run(&["grants"]);
    assert!(!out.status.success());
    let said = common::stderr(&out);
    assert!(said.contains("postgres://postgres:***@127.0.0.1"), "names the database: {said}");
    assert!(!said.contains("secret"), "never prints the password: {said}");
}

#[test]
fn copy_moves_a_database_between_engines_and_every_answer_stays() {
    let Some(pg) = Postgres::start() else { return };
    let example = fixtures().join("example");
    let mut files: Vec<PathBuf> = granttrail_testkit::files_under(&example)
        .into_iter()
        .filter(|f| !f.to_string_lossy().contains("Digest"))
        .collect();
    files.sort();
    assert!(files.len() > 4, "{files:?}");
    let (first, rest) = files.split_at(files.len() / 2);
    let ingest = |ws: &Workspace, files: &[PathBuf]| {
        let mut args = vec!["ingest", "-q"];
        args.extend(files.iter().map(|f| f.to_str().unwrap()));
        ok(ws, None, &args);
    };
    let sqlite = Workspace::new();
    ingest(&sqlite, first);
    // Verdicts, and the imports the T39 scenario makes, go along too.
    let scenario = fixtures().join("scenarios/T39_key_policy_proves_grant_only");
    imports(&sqlite, &scenario);
    let _ = sqlite.run(&["verify", example.to_str().unwrap()]);

    // SQLite -> PostgreSQL -> SQLite: the same answers at each step.
    let url = pg.database("copied");
    let copied = ok(&sqlite, None, &["copy", "--from", &sqlite.db_arg(), "--to", &url]);
    assert!(copied.contains("event(s)"), "{copied}");
    let postgres = Workspace::postgres(url.clone());
    let expected = outputs(&sqlite, None, &[]);
    assert_same("copied into PostgreSQL", &expected, &outputs(&postgres, None, &[]));
    let back = Workspace::new();
    ok(&back, None, &["copy", "--from", &url, "--to", &back.db_arg()]);
    assert_same("copied back into SQLite", &expected, &outputs(&back, None, &[]));

    // Ingest goes on in the copy as in the original (ids carry on past the copied ones).
    ingest(&sqlite, rest);
    ingest(&postgres, rest);
    assert_same("ingested after the copy", &outputs(&sqlite, None, &[]), &outputs(&postgres, None, &[]));

    // Never into a database that holds something.
    let out = sqlite.run(&["copy", "--from", &back.db_arg(), "--to", &url]);
    assert!(!out.status.success());
    assert!(common::stderr(&out).contains("copy into a new, empty database"), "{}", common::stderr(&out));
}

/// SQLite lets a column hold a value of any type. One of the wrong type is refused by name
/// when copied, rather than sent as bytes PostgreSQL would read as another number.
#[test]
fn copy_refuses_a_value_of_the_wrong_type_and_names_its_table() {
    let Some(pg) = Postgres::start() else { return };
    let sqlite = Workspace::new();
    ok(&sqlite, None, &["ingest", "-q", fixtures().join("example").to_str().unwrap()]);
    let conn = rusqlite::Connection::open(sqlite.db()).unwrap();
    // Eight bytes of text in an integer column: the size of a bigint.
    conn.execute(
        "UPDATE event_rows SET event_time = 'abcdefgh' WHERE id = (SELECT min(id) FROM event_rows)",
        [],
    )
    .unwrap();
    drop(conn);
    let url = pg.database("mistyped");
    let out = sqlite.run(&["copy", "--from", &sqlite.db_arg(), "--to", &url]);
    assert!(!out.status.success(), "{}", common::stderr(&out));
    let said = common::stderr(&out);
    assert!(said.contains("event_rows") && said.contains("a text cannot be bound"), "{said}");
    assert_eq!(pg.psql_in("mistyped", "SELECT count(*) FROM event_rows"), "0", "nothing was copied");
}

#[test]
fn tls_as_libpq_asks_for_it_and_a_certificate_that_does_not_check_out_is_refused() {
    let Some(pg) = Postgres::start_tls() else { return };
    let url = pg.database("tls");
    let example = fixtures().join("example");
    let cert = pg.certificate();
    let cert = cert.to_str().unwrap();
    // Encrypted without checking the server (libpq's require), and checked against the
    // certificate given as the authority, by IP address and by name.
    for (i, params) in [
        "sslmode=require".to_string(),
        format!("sslmode=verify-full&sslrootcert={cert}"),
        format!("sslrootcert={cert}"),
    ]
    .iter()
    .enumerate()
    {
        let host = if i == 1 { url.replace("127.0.0.1", "localhost") } else { url.clone() };
        let ws = Workspace::postgres(format!("{host}?{params}"));
        ok(&ws, None, &["ingest", "-q", example.to_str().unwrap()]);
        assert!(ok(&ws, None, &["grants", "--format", "json"]).contains("grant_id"), "{params}");
    }
    // The server takes no plain connection; a certificate no authority given vouches for fails.
    for params in ["sslmode=disable", "sslmode=verify-full"] {
        let out = Workspace::postgres(format!("{url}?{params}")).run(&["grants"]);
        assert!(!out.status.success(), "{params} connected");
        let said = common::stderr(&out);
        assert!(said.contains("database postgres://postgres@127.0.0.1"), "{params}: {said}");
    }
}

/// A reading command sees one state of the database: its long listings, read from a cursor in
/// the command's transaction, are of the snapshot its other queries see, whatever a writer
/// commits meanwhile.
#[test]
fn a_listing_reads_the_snapshot_of_its_command() {
    use granttrail_store::{GrantFilter, Journal, Location, Store, StoreError};
    let Some(pg) = Postgres::start() else { return };
    let url = pg.database("snapshot");
    let ws = Workspace::postgres(url.clone());
    ok(&ws, None, &["ingest", "-q", fixtures().join("example").to_str().unwrap()]);
    let open = || Store::open_at(&Location::Postgres(url.clone()), Journal::Wal, &mut |_| {}).unwrap();
    let mut reader = open();
    reader.read_snapshot().unwrap();
    let before = reader.grants(&GrantFilter::default()).unwrap();
    assert!(!before.is_empty());
    pg.psql_in("snapshot", "DELETE FROM grant_rows");
    assert!(open().grants(&GrantFilter::default()).unwrap().is_empty(), "the writer's change is committed");
    let mut listed = Vec::new();
    reader
        .for_each_grant(&GrantFilter::default(), |g| {
            listed.push(g);
            Ok::<_, StoreError>(())
        })
        .unwrap();
    assert_eq!(listed, before);
}

/// A listing longer than one fetch reads every row in order, on the one connection its command
/// opened, which answers other queries between fetches; in the command's snapshot or in a
/// transaction of its own; and an error that stops it leaves the connection as it found it.
#[test]
fn a_long_listing_is_fetched_in_parts_on_the_commands_connection() {
    use granttrail_store::db::Connection;
    use granttrail_store::params;
    let Some(pg) = Postgres::start() else { return };
    let url = pg.database("fetch");
    let sessions = || {
        pg.psql_in(
            "fetch",
            "SELECT count(*) FROM pg_stat_activity WHERE datname = 'fetch' AND pid <> pg_backend_pid()",
        )
    };
    let conn = Connection::connect_postgres(&url).unwrap();
    let list = |conn: &Connection, last: i64| {
        let mut seen = Vec::new();
        conn.for_each_row(
            "SELECT n FROM generate_series(1, CAST(?1 AS bigint)) AS s(n) ORDER BY n",
            params![last],
            |r| {
                let n: i64 = r.get(0)?;
                // A query on the same connection between rows: the cursor is not disturbed.
                let twice: i64 = conn.query_row("SELECT CAST(?1 AS bigint) * 2", params![n], |r| r.get(0))?;
                assert_eq!(twice, 2 * n);
                seen.push(n);
                Ok::<_, granttrail_store::db::Error>(())
            },
        )
        .unwrap()
        .unwrap();
        seen
    };
    for last in [0, 999, 1000, 2500] {
        assert_eq!(list(&conn, last), (1..=last).collect::<Vec<_>>(), "outside a transaction, {last} rows");
    }
    assert_eq!(sessions().trim(), "1", "the listing opened no connection of its own");
    conn.begin_read_snapshot().unwrap();
    assert_eq!(list(&conn, 2500), (1..=2500).collect::<Vec<_>>(), "in the snapshot");

    // An error of `each` stops the reading; the next listing declares its cursor again.
    let mut read = 0;
    let stopped = conn
        .for_each_row("SELECT n FROM generate_series(1, 5000) AS s(n)", params![], |_| {
            read += 1;
            if read == 1500 { Err("enough") } else { Ok(()) }
        })
        .unwrap();
    assert_eq!((stopped, read), (Err("enough"), 1500));
    assert_eq!(list(&conn, 10), (1..=10).collect::<Vec<_>>(), "after a stopped listing, in the snapshot");
    let alone = Connection::connect_postgres(&url).unwrap();
    let stopped = alone.for_each_row("SELECT 1", params![], |_| Err("at once")).unwrap();
    assert_eq!(stopped, Err("at once"));
    assert_eq!(list(&alone, 3), vec![1, 2, 3], "after a stopped listing, outside a transaction");

    // A lookup of `each` that fails aborts the snapshot's transaction: its own error is the one
    // reported, not the closing of the cursor that then fails too.
    let failing = Connection::connect_postgres(&url).unwrap();
    failing.begin_read_snapshot().unwrap();
    let stopped = failing
        .for_each_row("SELECT n FROM generate_series(1, 3) AS s(n)", params![], |_| {
            failing.query_row("SELECT 1 / 0", params![], |r| r.get::<_, i64>(0)).map(|_| ())
        })
        .unwrap();
    let reported = stopped.unwrap_err().to_string();
    assert!(reported.contains("division by zero"), "{reported}");
}

/// granttrail's sessions run without JIT compilation (which cost a listing more than the query
/// itself), whatever the server's default, and keep the options a URL gives of its own.
#[test]
fn sessions_run_without_jit_and_keep_the_urls_own_options() {
    let Some(pg) = Postgres::start() else { return };
    let url = pg.database("jit");
    let show = |url: &str, setting: &str| -> String {
        let conn = granttrail_store::db::Connection::connect_postgres(url).unwrap();
        conn.query_row(&format!("SHOW {setting}"), [], |r| r.get(0)).unwrap()
    };
    assert_eq!(pg.psql_in("jit", "SHOW jit").trim(), "on", "the server's own default");
    assert_eq!(show(&url, "jit"), "off");
    assert_eq!(show(&url, "cursor_tuple_fraction"), "1", "listings read their cursors whole");
    let own = format!("{url}?options=-c%20work_mem%3D7MB");
    assert_eq!(show(&own, "work_mem"), "7MB");
    assert_eq!(show(&own, "jit"), "off");
}

#[test]
fn postgresql_has_the_tables_columns_and_views_of_sqlite() {
    let Some(pg) = Postgres::start() else { return };
    let ws = Workspace::postgres(pg.database("schema"));
    ok(&ws, None, &["grants"]);
    let listed = pg.psql_in(
        "schema",
        "SELECT c.table_name || '.' || c.column_name FROM information_schema.columns c
         JOIN information_schema.tables t ON t.table_name = c.table_name AND t.table_schema = c.table_schema
         WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE' AND c.table_name <> 'granttrail_schema'
         UNION SELECT 'view ' || table_name FROM information_schema.views WHERE table_schema = 'public'
         ORDER BY 1",
    );
    let on_postgres: Vec<String> = listed.lines().map(String::from).collect();

    let sqlite = Workspace::new();
    drop(granttrail_store::Store::open(&sqlite.db()).unwrap());
    let conn = rusqlite::Connection::open(sqlite.db()).unwrap();
    let mut on_sqlite: Vec<String> = Vec::new();
    let mut objects =
        conn.prepare("SELECT name, type FROM sqlite_master WHERE type IN ('table', 'view')").unwrap();
    let objects: Vec<(String, String)> =
        objects.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect();
    for (name, kind) in objects {
        if kind == "view" {
            on_sqlite.push(format!("view {name}"));
            continue;
        }
        let mut columns = conn.prepare(&format!("PRAGMA table_info({name})")).unwrap();
        let columns: Vec<String> = columns.query_map([], |r| r.get(1)).unwrap().map(Result::unwrap).collect();
        on_sqlite.extend(columns.into_iter().map(|c| format!("{name}.{c}")));
    }
    on_sqlite.sort();
    assert!(on_sqlite.len() > 100, "{on_sqlite:?}");
    assert_eq!(on_postgres, on_sqlite, "the two engines' schemas differ");
}
