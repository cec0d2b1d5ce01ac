//! `granttrail report`: the HTML page in headless Chromium, the Markdown golden file, escaping
//! in every format, determinism, and the --key/--since/--until scope.
//!
//! The golden file is fixtures/golden/report-example.md. After an intended change to the
//! report, regenerate it (and the screenshot in docs/) with
//!
//!     GRANTTRAIL_BLESS=1 cargo test -p granttrail --test report
//!
//! and review the diff.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod devtools;

use std::path::{Path, PathBuf};

use common::{Workspace, fixtures};
use serde_json::Value;

const XSS_NAME: &str = "<img src=x onerror=alert(1)>";
const K_APP: &str = "arn:aws:kms:us-east-1:111122223333:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
const K_SHARED: &str = "arn:aws:kms:us-east-1:111122223333:key/5e4d3c2b-1a09-8f7e-6d5c-4b3a29180706";

fn fixture(name: &str) -> String {
    fixtures().join(name).to_str().unwrap().to_string()
}

fn bless() -> bool {
    std::env::var_os("GRANTTRAIL_BLESS").is_some_and(|v| !v.is_empty() && v != "0")
}

/// The bundled example plus the report fixture (hostile strings, trail changes).
fn example_and_hostile() -> Workspace {
    let ws = Workspace::new();
    ws.ok(&["ingest", "-q", &fixture("example"), &fixture("report")]);
    ws
}

/// Runs `report` with `args` and returns what it wrote to standard output.
fn report(ws: &Workspace, args: &[&str]) -> String {
    let mut all = vec!["report"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "-"]);
    ws.ok(&all)
}

fn report_json(ws: &Workspace, args: &[&str]) -> Value {
    let mut all = vec!["--format", "json"];
    all.extend_from_slice(args);
    serde_json::from_str(&report(ws, &all)).unwrap()
}

#[test]
fn markdown_report_of_the_example_matches_the_golden_file() {
    let ws = Workspace::new();
    ws.ok(&["ingest", "-q", &fixture("example")]);
    let out = ws.path("report.md");
    ws.ok(&["report", "--format", "md", "-o", out.to_str().unwrap()]);
    let actual = std::fs::read_to_string(&out).unwrap();
    let golden = fixtures().join("golden/report-example.md");
    if bless() {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::write(&golden, &actual).unwrap();
    }
    let expected = std::fs::read_to_string(&golden).unwrap_or_default();
    assert!(
        actual == expected,
        "the Markdown report differs from {}; if the change is intended, rerun with GRANTTRAIL_BLESS=1 and review the diff.\n--- actual ---\n{actual}",
        golden.display()
    );
}

/// Counts the `|` that are not escaped with a backslash.
fn cell_separators(line: &str) -> usize {
    let mut n = 0;
    let mut escaped = false;
    for c in line.chars() {
        match c {
            '\\' if !escaped => escaped = true,
            '|' if !escaped => n += 1,
            _ => escaped = false,
        }
        if c != '\\' {
            escaped = false;
        }
    }
    n
}

#[test]
fn markdown_keeps_log_strings_as_text() {
    let ws = example_and_hostile();
    let md = report(&ws, &["--format", "md"]);
    for raw in ["<", "`", "*bold", "[link"] {
        let bare = md.match_indices(raw).filter(|(at, _)| !md[..*at].ends_with('\\')).count();
        assert_eq!(bare, 0, "{raw:?} reached the Markdown unescaped:\n{md}");
    }
    assert!(md.contains("\\<img src=x onerror=alert(1)\\>"), "{md}");
    assert!(
        md.contains("md\\|pipe \\`code\\` \\*bold\\* \\[link\\](http://example.invalid) second line"),
        "{md}"
    );
    // Every row of a table has as many cells as its header: no pipe or newline from a log
    // split a row.
    let mut table: Option<usize> = None;
    for line in md.lines() {
        if line.starts_with('|') {
            let n = cell_separators(line);
            match table {
                None => table = Some(n),
                Some(expected) => assert_eq!(n, expected, "row with a different cell count: {line}"),
            }
        } else {
            table = None;
        }
    }
}

#[test]
fn csv_is_one_row_per_grant_and_formula_safe() {
    let ws = example_and_hostile();
    let csv_text = report(&ws, &["--format", "csv"]);
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let header = reader.headers().unwrap().clone();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let grants = ws.grants_json();
    assert_eq!(rows.len(), grants.as_array().unwrap().len());
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    for row in &rows {
        for cell in row {
            assert!(!cell.starts_with(['=', '+', '-', '@']), "a spreadsheet would run {cell:?}");
        }
    }
    let formula = rows.iter().find(|r| r[column("name")].contains("HYPERLINK")).unwrap();
    assert_eq!(&formula[column("name")], "'=HYPERLINK(\"http://example.invalid\",\"x\")");
    assert_eq!(&formula[column("retiring_principal")], "'@SUM(1+1)");
    let xss = rows.iter().find(|r| &r[column("name")] == XSS_NAME).unwrap();
    assert_eq!(&xss[column("state")], "active");
    assert_eq!(&xss[column("uses")], "1");
    assert!(xss[column("created_user_agent")].starts_with("<b>agent</b>"));
    let multi_line = rows.iter().find(|r| r[column("name")].starts_with("md|pipe")).unwrap();
    assert!(multi_line[column("name")].contains('\n'), "CSV keeps the value whole, quoted");
}

#[test]
fn html_escapes_every_log_string() {
    let ws = example_and_hostile();
    let html = report(&ws, &["--format", "html"]);
    for raw in ["<img", "<script", "<svg onload", "</td><script>", "<b>agent"] {
        assert!(!html.contains(raw), "{raw:?} reached the HTML unescaped");
    }
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(html.contains("&lt;b&gt;agent&lt;/b&gt;"), "the user agent is escaped");
    assert!(html.contains("x&quot;&gt;&lt;svg onload=alert(3)&gt;"), "the encryption context is escaped");
    // Self-contained: no external references at all.
    for external in ["http://", "https://", "<link", "@import", "url("] {
        // The SVG namespace, and the fixture's own text (a grant name, cut short in the chart).
        let allowed = ["http://www.w3.org/2000/svg", "http://example.invali"];
        let mut rest = html.as_str();
        while let Some(at) = rest.find(external) {
            let tail = &rest[at..];
            assert!(
                allowed.iter().any(|a| tail.starts_with(a)),
                "external reference {:?}",
                &tail[..tail.len().min(60)]
            );
            rest = &tail[external.len()..];
        }
    }
    assert!(html.contains("Content-Security-Policy"));
}

#[test]
fn reports_are_deterministic() {
    let first = example_and_hostile();
    // The same logs ingested in the other order, then rebuilt.
    let second = Workspace::new();
    second.ok(&["ingest", "-q", &fixture("report")]);
    second.ok(&["ingest", "-q", &fixture("example")]);
    second.ok(&["rebuild"]);
    for format in ["html", "md", "csv", "json"] {
        let a = report(&first, &["--format", format]);
        assert_eq!(a, report(&first, &["--format", format]), "{format}: two runs differ");
        assert_eq!(a, report(&second, &["--format", format]), "{format}: ingest order changed the report");
    }
}

#[test]
fn json_report_structure() {
    let ws = example_and_hostile();
    let r = report_json(&ws, &[]);
    let keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
    for k in ["report_version", "generator", "scope", "summary", "keys", "grants", "findings", "coverage"] {
        assert!(keys.contains(&k), "{k} missing from {keys:?}");
    }
    assert_eq!(r["report_version"], 1);
    assert_eq!(r["scope"]["as_of"], "2024-05-03T14:40:00Z", "as of the latest KMS event");
    assert_eq!(r["scope"]["as_of_from"], "latest_event");
    assert_eq!(r["summary"]["grants"], 8);
    assert_eq!(r["summary"]["keys"], 3);
    assert_eq!(r["summary"]["accounts"], 2);
    assert_eq!(r["summary"]["grant_only_calls"], 2);
    let findings = r["findings"].as_array().unwrap();
    assert!(!findings.is_empty());
    assert_eq!(r["summary"]["top_findings"][0], findings[0]["id"]);
    assert_eq!(findings[0]["severity"], "high", "most severe first");
    for f in findings {
        assert!(!f["remediation"].as_str().unwrap().is_empty());
    }
    // Coverage: the day between the example and the report fixture has no KMS events, and the
    // trail changes say which trails stopped logging KMS events.
    let sources = r["coverage"]["sources"].as_array().unwrap();
    let us_east =
        sources.iter().find(|s| s["account"] == "111122223333" && s["region"] == "us-east-1").unwrap();
    assert_eq!(
        us_east["days_without_events"],
        serde_json::json!([{"from": "2024-05-02", "to": "2024-05-02", "days": 1}])
    );
    let changes = r["coverage"]["trail_changes"].as_array().unwrap();
    let logging: Vec<(&str, &str)> =
        changes.iter().map(|c| (c["trail"].as_str().unwrap(), c["kms_logging"].as_str().unwrap())).collect();
    assert_eq!(logging, [("org-trail", "none"), ("eu-audit", "write_only")]);
    assert_eq!(r["coverage"]["gaps"][0]["hours"], 51);
}

#[test]
fn key_since_and_until_narrow_the_report() {
    let ws = example_and_hostile();
    let grant_ids = |r: &Value| -> Vec<String> {
        r["grants"].as_array().unwrap().iter().map(|g| g["grant_id"].as_str().unwrap().to_string()).collect()
    };

    let shared = report_json(&ws, &["--key", K_SHARED]);
    assert_eq!(shared["grants"].as_array().unwrap().len(), 1);
    assert_eq!(shared["keys"].as_array().unwrap().len(), 1);
    assert_eq!(shared["keys"][0]["key_arn"], K_SHARED);
    assert!(shared["findings"].as_array().unwrap().iter().all(|f| f["key_arn"] == K_SHARED));
    let sources = shared["coverage"]["sources"].as_array().unwrap();
    assert!(sources.iter().all(|s| s["account"] == "111122223333" && s["region"] == "us-east-1"));

    // From May 2: grants alive then (the partner's, still active) and those created later.
    let since = report_json(&ws, &["--since", "2024-05-02T00:00:00Z"]);
    let grants = since["grants"].as_array().unwrap();
    assert_eq!(grants.len(), 4, "{:#}", since["grants"]);
    assert!(
        grants.iter().all(|g| g["ended_at"].is_null() || g["ended_at"].as_str().unwrap() >= "2024-05-02")
    );
    assert_eq!(since["summary"]["calls_through_grants"], 1, "only the May 3 use is in the period");
    assert_eq!(since["coverage"]["first_day"], "2024-05-02");

    // Until 09:20 on May 1: bob's grant (09:05-09:16) and the one created before the logs
    // (ended 09:44, so still active as of 09:20).
    let until = report_json(&ws, &["--until", "2024-05-01T09:20:00Z"]);
    assert_eq!(until["scope"]["as_of"], "2024-05-01T09:20:00Z");
    assert_eq!(until["grants"].as_array().unwrap().len(), 2, "{:#}", until["grants"]);
    assert_eq!(until["summary"]["active"], 1);
    assert_eq!(until["summary"]["ended"], 1);
    let states: Vec<&str> =
        until["grants"].as_array().unwrap().iter().map(|g| g["state_as_of"].as_str().unwrap()).collect();
    assert_eq!(states, ["active (retired later)", "revoked"]);
    // An --as-of before a grant's creation: the grant is listed but did not exist yet.
    let early = report_json(&ws, &["--until", "2024-05-01T09:20:00Z", "--as-of", "2024-05-01T09:01:00Z"]);
    let states: Vec<&str> =
        early["grants"].as_array().unwrap().iter().map(|g| g["state_as_of"].as_str().unwrap()).collect();
    assert_eq!(states, ["active (retired later)", "not yet created"]);
    assert_eq!(early["summary"]["active"], 1);
    assert_eq!(early["summary"]["ended"], 0);
    assert!(until["coverage"]["trail_changes"].as_array().unwrap().is_empty(), "the changes come later");

    // Both ends, and a key: the grants on the app key alive on May 3.
    let both = report_json(
        &ws,
        &["--key", K_APP, "--since", "2024-05-03T00:00:00Z", "--until", "2024-05-04T00:00:00Z"],
    );
    assert_eq!(both["grants"].as_array().unwrap().len(), 3);
    assert!(grant_ids(&both).iter().all(|id| grant_ids(&report_json(&ws, &["--key", K_APP])).contains(id)));

    // Markdown and HTML follow the same scope.
    let md = report(&ws, &["--format", "md", "--key", K_SHARED]);
    assert!(!md.contains(K_APP), "{md}");
}

/// Chromium, when the test machine has it (scripts/test-tools installs Debian's package).
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("GRANTTRAIL_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|p| p.is_file())
}

#[test]
fn html_report_in_headless_chromium() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is missing; scripts/test-tools installs it (or set GRANTTRAIL_CHROMIUM)"
        );
        eprintln!("SKIPPED html_report_in_headless_chromium: chromium not found (run scripts/test-tools)");
        return;
    };
    let ws = example_and_hostile();
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report");
    std::fs::create_dir_all(&out_dir).unwrap();
    let page = out_dir.join("report.html");
    ws.ok(&["report", "--format", "html", "-o", page.to_str().unwrap()]);

    let result = devtools::load_page(&browser, &page, (1280, 2000));
    assert!(result.console.is_empty(), "console messages or errors: {:#?}", result.console);
    assert!(result.dialogs.is_empty(), "a script opened a dialog: {:?}", result.dialogs);
    let page_url = result.page_url.clone();
    let foreign: Vec<&String> = result.requests.iter().filter(|u| **u != page_url).collect();
    assert!(foreign.is_empty(), "the page made requests: {foreign:?}");
    assert_eq!(result.requests, std::slice::from_ref(&page_url), "the page itself is the only load");

    let dom = &result.dom;
    assert_eq!(dom["timelines"], 3, "one timeline per key: {dom}");
    assert_eq!(dom["svgs"], 3, "no other SVG element (the encryption context's <svg> is text): {dom}");
    assert!(dom["bars"].as_u64().unwrap() >= 8, "a bar per grant: {dom}");
    assert!(dom["marks"].as_u64().unwrap() >= 1, "use marks: {dom}");
    assert_eq!(dom["images"], 0, "the grant name made no <img>: {dom}");
    assert_eq!(dom["scripts"], 0, "{dom}");
    assert_eq!(dom["name_as_text"], true, "the grant name shows as text: {dom}");
    assert_eq!(dom["name_escaped_in_markup"], true, "{dom}");
    assert!(dom["scroll_width"].as_u64().unwrap() <= 1280, "no horizontal scrolling on a laptop: {dom}");
    assert!(result.pdf_bytes > 1000, "the page prints");

    let png = &result.screenshot;
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    assert_eq!(width, 1280);
    let shot = out_dir.join("report-screenshot.png");
    std::fs::write(&shot, png).unwrap();
    eprintln!("screenshot: {}", shot.display());
    if bless() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/report-screenshot.png");
        std::fs::write(docs, png).unwrap();
    }
}

/// The harness itself: a page that does load something and does log an error must be caught,
/// or the checks above prove nothing.
#[test]
fn chromium_harness_sees_requests_console_errors_and_markup() {
    let Some(browser) = chromium() else {
        assert!(std::env::var_os("CI").is_none(), "chromium is missing; scripts/test-tools installs it");
        eprintln!("SKIPPED chromium_harness_sees_requests_console_errors_and_markup: chromium not found");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("bad.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html><html><head><title>bad</title></head><body><p>x</p>\
         <img src=\"http://127.0.0.1:9/pixel.png\"><script>console.error('boom'); undefinedFunction();</script>\
         <svg class=\"timeline\"></svg></body></html>",
    )
    .unwrap();
    let result = devtools::load_page(&browser, &page, (800, 600));
    assert!(result.requests.iter().any(|u| u.starts_with("http://127.0.0.1:9/")), "{:?}", result.requests);
    assert!(result.console.iter().any(|c| c.contains("boom")), "{:?}", result.console);
    assert!(result.console.iter().any(|c| c.contains("undefinedFunction")), "{:?}", result.console);
    assert_eq!(result.dom["images"], 1);
    assert_eq!(result.dom["scripts"], 1);
    assert_eq!(result.dom["timelines"], 1);
}

/// Trail selector changes are kept for the coverage notes but are not permission changes: one
/// in the middle of the example's stories changes no call label (even one that names no trail,
/// which a permission-change filter would take as touching every principal of the account).
#[test]
fn trail_selector_changes_do_not_change_labels() {
    let plain = Workspace::new();
    plain.ok(&["ingest", "-q", &fixture("example")]);
    let with_change = Workspace::new();
    let record = serde_json::json!({"Records": [{
        "eventVersion": "1.09", "eventSource": "cloudtrail.amazonaws.com", "eventName": "PutEventSelectors",
        "eventTime": "2024-05-01T09:08:00Z", "awsRegion": "us-east-1", "eventID": "selector-change-mid-story",
        "recipientAccountId": "111122223333",
        "userIdentity": {"type": "IAMUser", "accountId": "111122223333", "arn": "arn:aws:iam::111122223333:user/bob"},
        "requestParameters": {"eventSelectors": [{"readWriteType": "All", "includeManagementEvents": true}]},
        "responseElements": null
    }]});
    let file = with_change.path("selectors.json");
    std::fs::write(&file, record.to_string()).unwrap();
    with_change.ok(&["ingest", "-q", &fixture("example"), file.to_str().unwrap()]);
    let calls = |ws: &Workspace| ws.ok(&["calls", "--format", "json"]);
    assert_eq!(calls(&plain), calls(&with_change));
    let r = report_json(&with_change, &[]);
    assert_eq!(r["coverage"]["trail_changes"][0]["kms_logging"], "all");
    assert_eq!(r["coverage"]["trail_changes"][0]["trail"], Value::Null);
}

/// A key called in the period counts in the summary whether or not it has grants: here a
/// multi-Region replica key is called, and only its primary key has a grant.
#[test]
fn the_key_count_counts_every_key_called() {
    let ws = Workspace::new();
    let logs = fixtures().join("scenarios/T29_multi_region_replica_is_another_key/logs");
    ws.ok(&["ingest", "-q", logs.to_str().unwrap()]);
    let report: Value = serde_json::from_str(&ws.ok(&["report", "--format", "json", "-o", "-"])).unwrap();
    assert_eq!(report["summary"]["grants"], 1);
    assert_eq!(report["summary"]["keys"], 2, "{:#}", report["summary"]);
    let replica = "arn:aws:kms:eu-west-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab";
    let one: Value =
        serde_json::from_str(&ws.ok(&["report", "--format", "json", "-o", "-", "--key", replica])).unwrap();
    assert_eq!((one["summary"]["grants"].as_u64(), one["summary"]["keys"].as_u64()), (Some(0), Some(1)));
}
