//! `granttrail ingest s3://...` against a real S3-compatible server (moto) on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Workspace, stderr};
use granttrail_testkit::{Moto, files_under};
use serde_json::Value;

const BUCKET: &str = "trail-bucket";
const DAY: &str = "AWSLogs/o-a1b2c3d4e5/111122223333/CloudTrail/us-east-1/2024/05/01/";

struct Bucket {
    moto: Moto,
    runtime: tokio::runtime::Runtime,
}

impl Bucket {
    /// A bucket holding the bundled example, under the same keys.
    fn with_example() -> Option<Bucket> {
        let bucket = Bucket { moto: Moto::start()?, runtime: tokio::runtime::Runtime::new().unwrap() };
        let client = bucket.moto.client();
        bucket.runtime.block_on(client.create_bucket().bucket(BUCKET).send()).unwrap();
        let root = common::fixtures().join("example");
        for entry in files_under(&root) {
            let key = entry.strip_prefix(&root).unwrap().to_string_lossy().replace('\\', "/");
            bucket.put(&key, &std::fs::read(&entry).unwrap());
        }
        Some(bucket)
    }

    fn put(&self, key: &str, body: &[u8]) {
        let request = self.moto.client().put_object().bucket(BUCKET).key(key).body(body.to_vec().into());
        self.runtime.block_on(request.send()).unwrap();
    }

    fn ingest(&self, ws: &Workspace, args: &[&str]) -> std::process::Output {
        let mut full = vec!["ingest", "-q", "--endpoint-url", &self.moto.endpoint];
        full.extend_from_slice(args);
        ws.run_env(&full, &self.moto.env())
    }

    /// Object keys the server has served with GetObject so far.
    fn downloaded(&self) -> Vec<String> {
        self.moto
            .requests()
            .iter()
            .filter_map(|r| r.strip_prefix(&format!("GET /{BUCKET}/")))
            .filter(|r| r.contains(".json"))
            .map(|r| r.split([' ', '?']).next().unwrap_or_default().to_string())
            .collect()
    }

    /// The `prefix` parameters of the listing requests so far.
    fn listed_prefixes(&self) -> Vec<String> {
        self.moto
            .requests()
            .iter()
            .filter(|r| r.contains("list-type=2"))
            .filter_map(|r| r.split(['?', '&', ' ']).find_map(|p| p.strip_prefix("prefix=")).map(decode))
            .collect()
    }
}

fn decode(text: &str) -> String {
    granttrail_cloudtrail::envelope::url_decode(text)
}

fn grants(ws: &Workspace) -> Value {
    ws.grants_json()
}

#[test]
fn a_bucket_ingests_like_the_same_files_and_a_rerun_downloads_nothing() {
    let Some(bucket) = Bucket::with_example() else { return };
    let from_s3 = Workspace::new();
    let out = bucket.ingest(&from_s3, &[&format!("s3://{BUCKET}")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let local = Workspace::new();
    local.ok(&["ingest", "-q", common::fixtures().join("example").to_str().unwrap()]);
    assert_eq!(grants(&from_s3), grants(&local), "the same grants from S3 as from the files");
    let downloads = bucket.downloaded();
    assert_eq!(downloads.len(), 10, "every log file once, the digest never: {downloads:?}");
    assert!(downloads.iter().all(|k| !k.contains("Digest")));
    let stored: Value = serde_json::from_str(&from_s3.ok(&["calls", "--format", "json"])).unwrap();
    assert!(stored.as_array().is_some_and(|c| !c.is_empty()));

    // Resuming: everything is already in the database, so nothing is downloaded again.
    let again = bucket.ingest(&from_s3, &[&format!("s3://{BUCKET}/AWSLogs/")]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(common::stdout(&again).contains("(10 already ingested"), "{}", common::stdout(&again));
    assert_eq!(bucket.downloaded().len(), 10, "a rerun downloads nothing");
    assert_eq!(grants(&from_s3), grants(&local));
}

#[test]
fn time_account_and_region_windows_prune_the_listing_and_the_downloads() {
    let Some(bucket) = Bucket::with_example() else { return };
    let sample = std::fs::read(
        files_under(&common::fixtures().join("example"))
            .iter()
            .find(|p| p.to_string_lossy().contains("us-east-1_20240501T0910Z"))
            .unwrap(),
    )
    .unwrap();
    for (day, stamp) in [("2024/04/30", "20240430T2355Z"), ("2024/05/03", "20240503T0000Z")] {
        let key = format!(
            "AWSLogs/o-a1b2c3d4e5/111122223333/CloudTrail/us-east-1/{day}/111122223333_CloudTrail_us-east-1_{stamp}_Other.json.gz"
        );
        bucket.put(&key, &sample);
    }
    let ws = Workspace::new();
    let out = bucket.ingest(
        &ws,
        &[
            &format!("s3://{BUCKET}"),
            "--since",
            "2024-05-01T09:30:00Z",
            "--until",
            "2024-05-01T09:50:00Z",
            "--account",
            "111122223333",
            "--region",
            "us-east-1",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let mut got: Vec<String> =
        bucket.downloaded().iter().map(|k| k.rsplit('_').nth(1).unwrap().to_string()).collect();
    got.sort();
    // Delivered from 09:30 to 10:50 (an hour of delivery slack after --until), in us-east-1 of
    // account 1111..., and nothing from other days.
    assert_eq!(
        got,
        ["20240501T0935Z", "20240501T0940Z", "20240501T0950Z", "20240501T0955Z", "20240501T1040Z"]
    );
    let prefixes = bucket.listed_prefixes();
    assert!(prefixes.iter().any(|p| p == DAY), "{prefixes:?}");
    for pruned in
        ["/2024/04/30/", "/2024/05/03/", "/eu-west-1/", "/444455556666/CloudTrail/", "CloudTrail-Digest"]
    {
        assert!(!prefixes.iter().any(|p| p.contains(pruned)), "{pruned} must not be listed: {prefixes:?}");
    }
}

#[test]
fn a_poison_object_is_named_and_the_others_commit() {
    let Some(bucket) = Bucket::with_example() else { return };
    let poison = format!("{DAY}111122223333_CloudTrail_us-east-1_20240501T0999Z_Poison.json.gz");
    let poison = poison.replace("0999Z", "0959Z");
    bucket.put(&poison, b"\x1f\x8b\x08\x00 not really gzip");
    let ws = Workspace::new();
    let out = bucket.ingest(&ws, &[&format!("s3://{BUCKET}")]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains(&format!("rejected s3://{BUCKET}/{poison}: gzip")), "{err}");
    assert!(common::stdout(&out).contains("ingested 10 object(s)"), "{}", common::stdout(&out));
}

#[test]
fn a_missing_bucket_is_a_clear_error() {
    let Some(bucket) = Bucket::with_example() else { return };
    let ws = Workspace::new();
    let out = bucket.ingest(&ws, &["s3://no-such-bucket/AWSLogs/"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("listing s3://no-such-bucket/AWSLogs/") && err.contains("NoSuchBucket"), "{err}");
}
