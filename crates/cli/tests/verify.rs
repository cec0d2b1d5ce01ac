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
    assert!(!ws.db().exists(), "verify alone writes no database");
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
