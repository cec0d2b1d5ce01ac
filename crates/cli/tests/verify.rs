//! `granttrail verify` through the real binary: a signed trail of the test's own, downloaded
//! to disk, intact and tampered with; and the AWS documentation's digest.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Workspace, stderr, stdout};
use granttrail_testkit::trail::SignedTrail;
use serde_json::{Value, json};

/// Two hours of a trail written under `copy/` as `aws s3 sync` would, and its public keys.
fn downloaded(ws: &Workspace) -> (SignedTrail, Vec<String>) {
    let mut trail = SignedTrail::new("111122223333", "us-east-1");
    let mut logs = Vec::new();
    for hour in ["10", "11"] {
        logs.push(
            trail.log_file(
                &format!("2025-06-01T{hour}:10:00Z"),
                &[json!({"eventSource": "kms.amazonaws.com"})],
            ),
        );
        logs.push(trail.log_file(&format!("2025-06-01T{hour}:40:00Z"), &[]));
        let end = if hour == "10" { "11" } else { "12" };
        trail.digest(&format!("2025-06-01T{hour}:00:00Z"), &format!("2025-06-01T{end}:00:00Z"));
    }
    trail.digest("2025-06-01T12:00:00Z", "2025-06-01T13:00:00Z");
    std::fs::write(ws.path("keys.json"), trail.public_keys_json()).unwrap();
    (trail, logs)
}

fn verify(ws: &Workspace, extra: &[&str]) -> std::process::Output {
    let copy = ws.path("copy");
    let keys = ws.path("keys.json");
    let mut args = vec!["verify", copy.to_str().unwrap(), "--public-keys", keys.to_str().unwrap()];
    args.extend_from_slice(extra);
    ws.run(&args)
}

#[test]
fn an_intact_copy_verifies_with_exit_status_zero() {
    let ws = Workspace::new();
    let (trail, _) = downloaded(&ws);
    trail.write_to(&ws.path("copy")).unwrap();
    let out = verify(&ws, &[]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(
            "111122223333 us-east-1: 4 log files verified, 0 altered, 0 missing, 0 unlisted, 0 not covered"
        ),
        "{text}"
    );
    assert!(text.contains("signatures: 2 valid, checked with 1 public key(s)"), "{text}");
    assert!(text.contains("1 digest signature(s) not checked"), "{text}");
    assert!(ws.db().exists(), "the verdicts are recorded");
}

#[test]
fn tampering_is_reported_line_by_line_and_fails() {
    let ws = Workspace::new();
    let (mut trail, logs) = downloaded(&ws);
    trail.tamper(&logs[0], r#"{"Records":[]}"#);
    trail.objects.remove(&logs[1]);
    let planted = trail.log_file("2025-06-01T11:20:00Z", &[json!({"eventName": "CreateGrant"})]);
    trail.write_to(&ws.path("copy")).unwrap();

    let out = verify(&ws, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<(&str, &str)> = text
        .lines()
        .filter(|l| l.contains('\t'))
        .map(|l| {
            let mut parts = l.split('\t');
            (parts.next().unwrap(), parts.next().unwrap())
        })
        .collect();
    let file = |key: &str| key.rsplit('/').next().unwrap().to_string();
    let named: Vec<(&str, String)> = lines.iter().map(|(v, o)| (*v, file(o))).collect();
    assert_eq!(
        named,
        vec![("altered", file(&logs[0])), ("missing", file(&logs[1])), ("unlisted", file(&planted))],
        "{text}"
    );
    assert!(text.contains("2 log files verified, 1 altered, 1 missing, 1 unlisted"), "{text}");

    let out = verify(&ws, &["--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let verdicts: Vec<&str> =
        v["problems"].as_array().unwrap().iter().map(|p| p["verdict"].as_str().unwrap()).collect();
    assert_eq!(verdicts, ["altered", "missing", "unlisted"]);
    assert_eq!(v["signatures_checked"], true);
    assert_eq!(v["summaries"][0]["covered"][0]["start"], "2025-06-01T10:00:00Z");
}

#[test]
fn without_keys_the_output_says_signatures_were_not_checked() {
    let ws = Workspace::new();
    let (trail, _) = downloaded(&ws);
    trail.write_to(&ws.path("copy")).unwrap();
    let out = ws.run(&["verify", ws.path("copy").to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("signatures: not checked (give --public-keys FILE"), "{}", stdout(&out));
    // What "verified" then rests on: the digests, which the bucket's writers could rewrite too.
    assert!(stdout(&out).contains("can rewrite the digests too"), "{}", stdout(&out));
}

#[test]
fn bad_inputs_name_the_file_and_what_is_wrong() {
    let ws = Workspace::new();
    let (trail, _) = downloaded(&ws);
    trail.write_to(&ws.path("copy")).unwrap();
    std::fs::write(ws.path("keys.json"), "{}").unwrap();
    let out = verify(&ws, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("keys.json") && err.contains("list-public-keys"), "{err}");

    let out = ws.run(&["verify", ws.path("nowhere").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("nowhere"), "{}", stderr(&out));
}

#[test]
fn the_aws_documentation_digest_parses() {
    let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/samples/cloudtrail-digest-file-awsdocs.json");
    let Ok(bytes) = std::fs::read(&sample) else {
        eprintln!("skipped: {} is absent (shared/ is not part of a user's clone)", sample.display());
        return;
    };
    let digest = granttrail_cloudtrail::digest::Digest::parse(&bytes).unwrap();
    assert_eq!(digest.aws_account_id, "111122223333");
    assert_eq!(digest.log_files.len(), 1);
    assert_eq!(
        digest.previous_hash().unwrap().map(|h| granttrail_cloudtrail::digest::hex(&h)).as_deref(),
        digest.previous_digest_hash_value.as_deref()
    );
}

/// The trail in a real S3-compatible server (moto), each digest with its signature in
/// `x-amz-meta-signature` as CloudTrail writes it.
fn in_bucket(trail: &SignedTrail) -> Option<(granttrail_testkit::Moto, tokio::runtime::Runtime)> {
    let moto = granttrail_testkit::Moto::start()?;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = moto.client();
    runtime.block_on(client.create_bucket().bucket(&trail.bucket).send()).unwrap();
    for (key, body) in &trail.objects {
        let mut request = client.put_object().bucket(&trail.bucket).key(key).body(body.clone().into());
        if let Some(signature) = trail.signatures.get(key) {
            request =
                request.metadata("signature", signature).metadata("signature-algorithm", "SHA256withRSA");
        }
        runtime.block_on(request.send()).unwrap();
    }
    Some((moto, runtime))
}

#[test]
fn from_s3_every_signature_is_checked_and_a_forged_newest_digest_is_caught() {
    let ws = Workspace::new();
    let (mut trail, _) = downloaded(&ws);
    let Some((moto, _runtime)) = in_bucket(&trail) else { return };
    let keys = ws.path("keys.json");
    let url = format!("s3://{}", trail.bucket);
    let args = ["verify", &url, "--endpoint-url", &moto.endpoint, "--public-keys", keys.to_str().unwrap()];
    let out = ws.run_env(&args, &moto.env());
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("signatures: 3 valid"), "{}", stdout(&out));
    assert!(stdout(&out).contains("4 log files verified"), "{}", stdout(&out));

    // An intruder rewrites the newest digest; offline nothing could tell, S3's metadata can.
    let newest = trail.signatures.keys().max().unwrap().clone();
    let forged = trail.content(&newest).unwrap().replace("12:00:00Z", "12:00:01Z");
    trail.tamper(&newest, &forged);
    let Some((moto, _runtime)) = in_bucket(&trail) else { return };
    let args = ["verify", &url, "--endpoint-url", &moto.endpoint, "--public-keys", keys.to_str().unwrap()];
    let out = ws.run_env(&args, &moto.env());
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout(&out).contains("digest signature invalid\ts3://trail-bucket/"), "{}", stdout(&out));
}

const EXAMPLE_DAY: &str = "AWSLogs/o-a1b2c3d4e5/111122223333/CloudTrail/us-east-1/2024/05/01";

/// The bundled example's us-east-1 files for 111122223333, as a signed trail lists them.
fn example_trail() -> (SignedTrail, Vec<String>) {
    granttrail_testkit::trail::example_trail(&common::fixtures().join("example"), EXAMPLE_DAY).unwrap()
}

fn findings_by_rule(ws: &Workspace) -> Vec<(String, String, String)> {
    let out = ws.ok(&["findings", "--format", "json"]);
    let findings: Value = serde_json::from_str(&out).unwrap();
    let mut found: Vec<(String, String, String)> = findings
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| ["GT106", "GT107", "GT108"].contains(&f["rule_id"].as_str().unwrap()))
        .map(|f| {
            let rule = f["rule_id"].as_str().unwrap().to_string();
            (rule, f["grant_id"].as_str().unwrap().to_string(), f["detail"].as_str().unwrap().to_string())
        })
        .collect();
    found.sort();
    found
}

/// Verify and ingest the tampered example, in either order: the same GT106-GT108, and each
/// event of a planted grant says its file is unlisted.
#[test]
fn tampered_evidence_travels_into_findings_and_grant_stories() {
    let (mut trail, keys) = example_trail();
    let file = |key: &str| key.rsplit('/').next().unwrap().to_string();
    // Planted: a CreateGrant nobody made, in a file no digest lists.
    let source = trail.content(&keys[2]).unwrap();
    let mut records: Value = serde_json::from_str(&source).unwrap();
    let planted_grant = "f".repeat(64);
    let create = records["Records"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|r| r["eventName"] == "CreateGrant")
        .unwrap();
    create["eventID"] = json!("00000000-0000-4000-8000-00000000beef");
    create["responseElements"]["grantId"] = json!(planted_grant);
    let planted =
        format!("{EXAMPLE_DAY}/111122223333_CloudTrail_us-east-1_20240501T0945Z_PLANTEDPLANTED01.json.gz");
    trail.tamper(&planted, &json!({"Records": [create.clone()]}).to_string());
    // Planted: a grant nobody made, in a record reusing a real eventID (a collision): the real
    // record's file does not vouch for it.
    let forged_grant = "e".repeat(64);
    let mut forged = serde_json::from_str::<Value>(&source).unwrap()["Records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["eventName"] == "CreateGrant")
        .unwrap()
        .clone();
    forged["responseElements"]["grantId"] = json!(forged_grant);
    let collide =
        format!("{EXAMPLE_DAY}/111122223333_CloudTrail_us-east-1_20240501T0946Z_PLANTEDCOLLIDE01.json.gz");
    trail.tamper(&collide, &json!({"Records": [forged]}).to_string());
    // Planted too, but a copy of a real record, ingested before the file CloudTrail listed it
    // in: the event rests on that file too, so it is not unverified evidence.
    let copied = source.clone();
    let echo =
        format!("{EXAMPLE_DAY}/111122223333_CloudTrail_us-east-1_20240501T0930Z_PLANTEDCOPY00001.json.gz");
    assert!(echo < keys[2], "ingested first");
    trail.tamper(&echo, &copied);
    // Altered: the same events, rewritten.
    let altered = keys[3].clone();
    let pretty = serde_json::to_string_pretty(
        &serde_json::from_str::<Value>(&trail.content(&altered).unwrap()).unwrap(),
    )
    .unwrap();
    trail.tamper(&altered, &pretty);
    // Missing: deleted.
    let deleted = keys[5].clone();
    trail.objects.remove(&deleted);

    let verify_first = Workspace::new();
    trail.write_to(&verify_first.path("copy")).unwrap();
    std::fs::write(verify_first.path("keys.json"), trail.public_keys_json()).unwrap();
    let copy = verify_first.path("copy");
    let out = verify(&verify_first, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    verify_first.ok(&["ingest", "-q", copy.to_str().unwrap()]);
    let found = findings_by_rule(&verify_first);

    let rules: Vec<&str> = found.iter().map(|(r, _, _)| r.as_str()).collect();
    assert_eq!(rules, ["GT106", "GT106", "GT106", "GT107", "GT108"], "{found:#?}");
    assert!(found.iter().any(|(r, g, _)| r == "GT106" && *g == forged_grant), "{found:#?}");
    assert!(
        found.iter().any(|(r, g, d)| r == "GT106" && *g == planted_grant && d.contains("unlisted")),
        "{found:#?}"
    );
    assert!(found.iter().any(|(r, _, d)| r == "GT107" && d.contains(&file(&altered))), "{found:#?}");
    assert!(
        !found.iter().any(|(r, _, d)| r == "GT106" && d.contains("PLANTEDCOPY")),
        "events also read from a listed file are vouched for: {found:#?}"
    );
    assert!(found.iter().any(|(r, _, d)| r == "GT108" && d.contains(&file(&deleted))), "{found:#?}");

    let story: Value =
        serde_json::from_str(&verify_first.ok(&["grant", &planted_grant, "--format", "json"])).unwrap();
    assert_eq!(story[0]["events"][0]["log_file"], "unlisted", "{story:#}");
    let calls: Value = serde_json::from_str(&verify_first.ok(&["calls", "--format", "json"])).unwrap();
    assert!(calls.as_array().unwrap().iter().all(|c| c["log_file"].is_string()), "every call says");

    let report: Value =
        serde_json::from_str(&verify_first.ok(&["report", "--format", "json", "--output", "-"])).unwrap();
    let v = &report["coverage"]["verification"][0];
    assert_eq!(
        (v["account"].as_str(), v["region"].as_str()),
        (Some("111122223333"), Some("us-east-1")),
        "{report:#}"
    );
    assert_eq!(
        (v["altered"].as_u64(), v["missing"].as_u64(), v["unlisted"].as_u64()),
        (Some(1), Some(1), Some(3))
    );
    let md = verify_first.ok(&["report", "--format", "md", "--output", "-"]);
    assert!(md.contains("checked against CloudTrail's signed digests"), "{md}");

    // Ingest first, verify after: the same findings.
    let ingest_first = Workspace::new();
    trail.write_to(&ingest_first.path("copy")).unwrap();
    std::fs::write(ingest_first.path("keys.json"), trail.public_keys_json()).unwrap();
    ingest_first.ok(&["ingest", "-q", ingest_first.path("copy").to_str().unwrap()]);
    assert_eq!(verify(&ingest_first, &[]).status.code(), Some(1));
    let again = findings_by_rule(&ingest_first);
    let without_paths = |f: &[(String, String, String)]| -> Vec<(String, String)> {
        f.iter().map(|(r, g, _)| (r.clone(), g.clone())).collect()
    };
    assert_eq!(without_paths(&again), without_paths(&found));

    // Both in one pass (`ingest --verify`): the same findings; run again (every object
    // already stored, so hashed by a read of its own), the same again.
    let one_pass = Workspace::new();
    trail.write_to(&one_pass.path("copy")).unwrap();
    std::fs::write(one_pass.path("keys.json"), trail.public_keys_json()).unwrap();
    let copy = one_pass.path("copy");
    let keys = one_pass.path("keys.json");
    let args = ["ingest", "-q", "--verify", "--public-keys", keys.to_str().unwrap(), copy.to_str().unwrap()];
    for run in 0..2 {
        let out = one_pass.run(&args);
        assert_eq!(out.status.code(), Some(1), "run {run}: {}", stderr(&out));
        let (text, err) = (stdout(&out), stderr(&out));
        assert!(
            text.contains("1 altered, 1 missing, 3 unlisted, 0 not covered by any digest; 2 signature(s) valid, 1 not checked"),
            "run {run}: {text}"
        );
        assert!(err.contains(&format!("granttrail: unlisted: {}", copy.join(&planted).display())), "{err}");
        assert!(!err.contains("digest file"), "digests are read, not skipped: {err}");
        assert_eq!(without_paths(&findings_by_rule(&one_pass)), without_paths(&found), "run {run}");
    }
}

#[test]
fn ingest_verify_from_s3_judges_every_object_and_the_newest_signature() {
    let ws = Workspace::new();
    let (mut trail, logs) = downloaded(&ws);
    trail.tamper(&logs[1], r#"{"Records":[{"eventSource":"s3.amazonaws.com"}]}"#);
    let Some((moto, _runtime)) = in_bucket(&trail) else { return };
    let keys = ws.path("keys.json");
    let url = format!("s3://{}", trail.bucket);
    let args = [
        "ingest",
        "-q",
        "--verify",
        &url,
        "--endpoint-url",
        &moto.endpoint,
        "--public-keys",
        keys.to_str().unwrap(),
    ];
    let out = ws.run_env(&args, &moto.env());
    assert_eq!(out.status.code(), Some(1), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("ingested 4 object(s)"), "digests are not ingested as logs: {text}");
    assert!(
        text.contains(
            "verified against 3 digest(s) (3 trusted): 3 log file(s) verified, 1 altered, 0 missing"
        ),
        "{text}"
    );
    assert!(text.contains("3 signature(s) valid"), "the newest digest's signature from S3 metadata: {text}");
    let altered = format!("granttrail: altered: s3://{}/{}", trail.bucket, logs[1]);
    assert!(stderr(&out).contains(&altered), "{}", stderr(&out));
}

/// Three days of a trail in a bucket, one file of the first day altered: the walk over S3 goes a
/// day at a time, and a window leaves out what is outside it.
#[test]
fn from_s3_a_long_trail_is_walked_day_by_day_and_windows_hold() {
    let ws = Workspace::new();
    let mut trail = SignedTrail::new("111122223333", "eu-west-1");
    trail.org_id = Some("o-a1b2c3d4e5".to_string());
    trail.prefix = "trails".to_string();
    let mut logs = Vec::new();
    for day in 1..=3 {
        for hour in 0..24 {
            let at = format!("2025-03-{day:02}T{hour:02}:30:00Z");
            logs.push(trail.log_file(&at, &[json!({"eventID": at})]));
            let start = format!("2025-03-{day:02}T{hour:02}:00:00Z");
            let end = if hour == 23 {
                format!("2025-03-{:02}T00:00:00Z", day + 1)
            } else {
                format!("2025-03-{day:02}T{:02}:00:00Z", hour + 1)
            };
            trail.digest(&start, &end);
        }
    }
    trail.tamper(&logs[5], r#"{"Records":[]}"#);
    std::fs::write(ws.path("keys.json"), trail.public_keys_json()).unwrap();
    let Some((moto, _runtime)) = in_bucket(&trail) else { return };
    let keys = ws.path("keys.json");
    let url = format!("s3://{}/trails/", trail.bucket);
    let verify = |extra: &[&str]| {
        let mut args =
            vec!["verify", &url, "--endpoint-url", &moto.endpoint, "--public-keys", keys.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--format", "json"]);
        let out = ws.run_env(&args, &moto.env());
        (out.status.code(), serde_json::from_slice::<Value>(&out.stdout).unwrap_or(Value::Null), stderr(&out))
    };

    let (code, v, err) = verify(&[]);
    assert_eq!(code, Some(1), "{err}");
    let s = &v["summaries"][0];
    assert_eq!((s["verified"].as_u64(), s["altered"].as_u64()), (Some(71), Some(1)), "{v:#}");
    assert_eq!(s["signatures_valid"].as_u64(), Some(72), "every digest, the newest from its metadata: {v:#}");
    assert_eq!(v["problems"][0]["verdict"], "altered");

    // From the second day on: the altered file is outside the window, nothing is missing.
    let (code, v, err) = verify(&["--since", "2025-03-02T00:00:00Z"]);
    assert_eq!(code, Some(0), "{v:#}{err}");
    assert_eq!(v["summaries"][0]["verified"].as_u64(), Some(48), "{v:#}");
    // Up to the first day's noon: the altered file is in it.
    let (code, v, _) = verify(&["--until", "2025-03-01T12:00:00Z"]);
    assert_eq!(code, Some(1));
    assert_eq!(v["summaries"][0]["altered"].as_u64(), Some(1), "{v:#}");
}
