//! The real `granttrail-lambda` binary, driven through a Lambda Runtime API on loopback, with
//! its objects in moto's S3 and its findings published to moto's SNS (delivered over HTTP to
//! a subscriber in the test).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use granttrail_store::{GrantFilter, Journal, Store};
use granttrail_testkit::{HttpSink, Moto, RuntimeApi, files_under};
use serde_json::{Value, json};

const BUCKET: &str = "trail-bucket";
const SNAPSHOTS: &str = "granttrail-snapshots";
const DAY: &str = "AWSLogs/o-a1b2c3d4e5/111122223333/CloudTrail/us-east-1/2024/05/01/";
const WAIT: Duration = Duration::from_secs(60);

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/example")
}

fn example_file(stamp: &str) -> (String, Vec<u8>) {
    let path = files_under(&example()).into_iter().find(|p| p.to_string_lossy().contains(stamp)).unwrap();
    let key = path.strip_prefix(example()).unwrap().to_string_lossy().replace('\\', "/");
    (key, std::fs::read(path).unwrap())
}

/// moto with the trail bucket, the snapshot bucket and a findings topic whose messages reach
/// `sink`; the function binary talking to it; the runtime API feeding it.
struct Deployment {
    moto: Moto,
    runtime: tokio::runtime::Runtime,
    topic: String,
    sink: HttpSink,
    dir: tempfile::TempDir,
    api: RuntimeApi,
    function: Option<Child>,
    /// More environment for the function.
    env: Vec<(String, String)>,
}

impl Deployment {
    fn start() -> Option<Deployment> {
        Deployment::start_with(Vec::new())
    }

    fn start_with(env: Vec<(String, String)>) -> Option<Deployment> {
        let mut d = Deployment::without_function(env)?;
        d.start_function();
        Some(d)
    }

    /// moto, its buckets and topic, and the runtime API, with no function started yet: a
    /// function started and killed while idle would take the next event with it.
    fn without_function(env: Vec<(String, String)>) -> Option<Deployment> {
        let moto = Moto::start()?;
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let s3 = moto.client();
        runtime.block_on(s3.create_bucket().bucket(BUCKET).send()).unwrap();
        runtime.block_on(s3.create_bucket().bucket(SNAPSHOTS).send()).unwrap();
        let sns = sns_client(&moto);
        let topic = runtime.block_on(sns.create_topic().name("granttrail-findings").send()).unwrap();
        let topic = topic.topic_arn().unwrap().to_string();
        let sink = HttpSink::start();
        runtime
            .block_on(sns.subscribe().topic_arn(&topic).protocol("http").endpoint(&sink.url).send())
            .unwrap();
        Some(Deployment {
            moto,
            runtime,
            topic,
            sink,
            dir: tempfile::tempdir().unwrap(),
            api: RuntimeApi::start(),
            function: None,
            env,
        })
    }

    /// Ends the function process at once (SIGKILL), as Lambda ends a sandbox that timed out.
    fn kill_function(&mut self) {
        if let Some(mut old) = self.function.take() {
            let _ = old.kill();
            let _ = old.wait();
        }
    }

    /// Starts (or restarts) the function process.
    fn start_function(&mut self) {
        self.kill_function();
        let child = Command::new(env!("CARGO_BIN_EXE_granttrail-lambda"))
            .envs(self.moto.env())
            .env("AWS_LAMBDA_RUNTIME_API", &self.api.address)
            .env("AWS_LAMBDA_FUNCTION_NAME", "granttrail")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
            .env("GRANTTRAIL_DB", self.db())
            .env("GRANTTRAIL_FINDINGS_TOPIC_ARN", &self.topic)
            .env("GRANTTRAIL_SNAPSHOT_BUCKET", SNAPSHOTS)
            .env("GRANTTRAIL_SNAPSHOT_PREFIX", "granttrail/")
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(std::fs::File::create(self.dir.path().join("function.log")).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.function = Some(child);
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("granttrail.db")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("function.log")).unwrap_or_default()
    }

    fn put(&self, key: &str, body: &[u8]) {
        let request = self.moto.client().put_object().bucket(BUCKET).key(key).body(body.to_vec().into());
        self.runtime.block_on(request.send()).unwrap();
    }

    fn get(&self, bucket: &str, key: &str) -> Vec<u8> {
        let object =
            self.runtime.block_on(self.moto.client().get_object().bucket(bucket).key(key).send()).unwrap();
        self.runtime.block_on(object.body.collect()).unwrap().into_bytes().to_vec()
    }

    /// Invokes the function with `event` and waits for its answer.
    fn invoke(&self, event: &Value) -> (bool, Value) {
        let id = self.api.push(&event.to_string());
        let answer = self.api.wait_for(&id, WAIT);
        (answer.ok, answer.body)
    }

    fn store(&self) -> Store {
        Store::open_with_journal(&self.db(), Journal::Rollback).unwrap()
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        if let Some(mut child) = self.function.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The SDK's settings for moto: its endpoint, static test credentials, one Region.
fn moto_config(moto: &Moto) -> aws_config::SdkConfig {
    let creds = aws_sdk_sns::config::Credentials::new("test", "test", None, None, "granttrail-tests");
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sns::config::SharedCredentialsProvider::new(creds))
        .endpoint_url(&moto.endpoint)
        .build()
}

fn sns_client(moto: &Moto) -> aws_sdk_sns::Client {
    aws_sdk_sns::Client::new(&moto_config(moto))
}

fn secrets_client(moto: &Moto) -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(&moto_config(moto))
}

/// Keys in S3 notifications are URL-encoded: a space is `+`.
fn encode(key: &str) -> String {
    let mut out = String::new();
    for b in key.bytes() {
        match b {
            b' ' => out.push('+'),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn s3_notification(keys: &[&str]) -> Value {
    let records: Vec<Value> = keys
        .iter()
        .map(|key| {
            json!({
                "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
                "eventTime": "2024-05-01T10:00:00.000Z", "eventName": "ObjectCreated:Put",
                "userIdentity": {"principalId": "AWS:AROAEXAMPLE:regionalDeliverySession"},
                "requestParameters": {"sourceIPAddress": "203.0.113.10"},
                "responseElements": {"x-amz-request-id": "EXAMPLE123456789", "x-amz-id-2": "EXAMPLE/abc"},
                "s3": {"s3SchemaVersion": "1.0", "configurationId": "granttrail",
                    "bucket": {"name": BUCKET, "ownerIdentity": {"principalId": "EXAMPLE"}, "arn": format!("arn:aws:s3:::{BUCKET}")},
                    "object": {"key": encode(key), "size": 1024, "eTag": "0123456789abcdef0123456789abcdef", "sequencer": "0A1B2C3D4E5F678901"}}
            })
        })
        .collect();
    json!({ "Records": records })
}

fn sns_wrapped(message: &Value) -> Value {
    json!({
        "Type": "Notification", "MessageId": "8f5f0a1c-0000-4000-8000-000000000001",
        "TopicArn": "arn:aws:sns:us-east-1:111122223333:trail-notifications", "Subject": "Amazon S3 Notification",
        "Message": message.to_string(), "Timestamp": "2024-05-01T10:00:00.000Z", "SignatureVersion": "1",
        "Signature": "EXAMPLE", "SigningCertURL": "https://sns.us-east-1.amazonaws.com/x.pem",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe"
    })
}

fn object_created(key: &str) -> Value {
    json!({
        "version": "0", "id": "17793124-05d4-b198-2fde-7ededc63b103", "detail-type": "Object Created",
        "source": "aws.s3", "account": "111122223333", "time": "2024-05-01T10:00:00Z", "region": "us-east-1",
        "resources": [format!("arn:aws:s3:::{BUCKET}")],
        "detail": {"version": "0", "bucket": {"name": BUCKET}, "object": {"key": key, "size": 1024},
            "request-id": "N4N7GDK58NMKJ12R", "requester": "111122223333", "reason": "PutObject"}
    })
}

fn sqs(messages: &[(&str, Value)]) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|(id, body)| {
            let body = match body {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            json!({
                "messageId": id, "receiptHandle": format!("handle-{id}"), "body": body,
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1714557600000",
                    "SenderId": "AIDAEXAMPLE", "ApproximateFirstReceiveTimestamp": "1714557600000"},
                "messageAttributes": {}, "md5OfBody": "0123456789abcdef0123456789abcdef",
                "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:111122223333:granttrail",
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    json!({ "Records": records })
}

fn failures(body: &Value) -> Vec<String> {
    body["batchItemFailures"]
        .as_array()
        .unwrap_or_else(|| panic!("no batchItemFailures in {body}"))
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap().to_string())
        .collect()
}

fn counts(store: &Store) -> (u64, u64, u64) {
    store.totals().unwrap()
}

#[test]
fn an_sqs_batch_commits_the_good_messages_and_returns_only_the_poison_one() {
    let Some(d) = Deployment::start() else { return };
    let (good, body) = example_file("us-east-1_20240501T0910Z");
    d.put(&good, &body);
    let spaced = format!("{DAY}111122223333_CloudTrail_us-east-1_20240501T0920Z_with space+plus.json.gz");
    d.put(&spaced, &example_file("us-east-1_20240501T0920Z").1);
    let (partner, body) = example_file("444455556666_CloudTrail_us-east-1");
    d.put(&partner, &body);
    let (europe, body) = example_file("eu-west-1_20240501T1010Z");
    d.put(&europe, &body);
    let poison = format!("{DAY}111122223333_CloudTrail_us-east-1_20240501T0930Z_Poison.json.gz");
    d.put(&poison, b"\x1f\x8b\x08\x00 this is not a gzip stream");
    let (digest, body) = example_file("CloudTrail-Digest");
    d.put(&digest, &body);

    let test_event = json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2024-05-01T10:00:00.000Z",
        "Bucket": BUCKET, "RequestId": "5582815E1AEA5ADF", "HostId": "EXAMPLE"});
    let event = sqs(&[
        ("m-direct", s3_notification(&[&good, &spaced])),
        ("m-poison", s3_notification(&[&poison])),
        ("m-sns", sns_wrapped(&s3_notification(&[&partner]))),
        ("m-eventbridge", object_created(&europe)),
        ("m-test", test_event),
        ("m-digest", s3_notification(&[&digest])),
        ("m-garbage", Value::String("neither JSON nor a test message".into())),
    ]);
    let (ok, body) = d.invoke(&event);
    assert!(ok, "the batch answers, it does not fail: {body}\n{}", d.log());
    assert_eq!(failures(&body), ["m-poison", "m-garbage"], "{}", d.log());

    let store = d.store();
    for key in [&good, &spaced, &partner, &europe] {
        assert!(store.is_ingested(&format!("s3://{BUCKET}/{key}")).unwrap(), "{key} committed");
    }
    assert!(!store.is_ingested(&format!("s3://{BUCKET}/{poison}")).unwrap());
    assert!(
        !store.is_ingested(&format!("s3://{BUCKET}/{digest}")).unwrap(),
        "digests are checked, not stored"
    );
    let log = d.log();
    assert!(log.contains(&format!("s3://{BUCKET}/{poison}")) && log.contains("gzip"), "{log}");
    let object_line = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["fields"]["object"] == format!("s3://{BUCKET}/{good}").as_str())
        .unwrap_or_else(|| panic!("no JSON log line for the object: {log}"));
    for field in ["records", "kms_events", "grant_events", "duration_ms"] {
        assert!(object_line["fields"][field].is_u64(), "{field} in {object_line}");
    }
    assert!(log.lines().any(|l| l.contains("\"invocation\"")), "{log}");
    let before = counts(&store);
    assert!(before.1 > 0);
    drop(store);

    // Redelivery (SQS retries the failed messages, or the whole batch after a timeout): the
    // committed objects are recognised and nothing is counted twice.
    let (ok, body) = d.invoke(&event);
    assert!(ok);
    assert_eq!(failures(&body), ["m-poison", "m-garbage"]);
    assert_eq!(counts(&d.store()), before, "redelivery changes nothing");
}

#[test]
fn new_findings_are_published_once_each_with_their_evidence() {
    let Some(d) = Deployment::start() else { return };
    let keys: Vec<String> = files_under(&example())
        .into_iter()
        .map(|p| {
            let key = p.strip_prefix(example()).unwrap().to_string_lossy().replace('\\', "/");
            d.put(&key, &std::fs::read(&p).unwrap());
            key
        })
        .collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let (ok, body) = d.invoke(&sqs(&[("m1", s3_notification(&refs))]));
    assert!(ok && failures(&body).is_empty(), "{body}\n{}", d.log());

    let at = granttrail_ingest::now();
    let expected = d.store().findings(&Default::default(), at, Some(at)).unwrap();
    assert!(expected.iter().any(|f| f.rule.id == "GT001"), "the example has a cross-account grant");
    let bodies = d.sink.wait_for(expected.len(), WAIT);
    assert_eq!(bodies.len(), expected.len(), "one message per finding");
    let mut published: Vec<Value> = bodies
        .iter()
        .map(|b| {
            let envelope: Value = serde_json::from_str(b).unwrap();
            assert_eq!(envelope["TopicArn"], d.topic.as_str());
            serde_json::from_str(envelope["Message"].as_str().unwrap()).unwrap()
        })
        .collect();
    published.sort_by_key(|m| m["finding"]["id"].as_str().unwrap().to_string());
    let cross = published.iter().find(|m| m["finding"]["rule_id"] == "GT001").unwrap();
    assert!(!cross["finding"]["event_ids"].as_array().unwrap().is_empty());
    // The shape `findings --format json` prints (grants::findings::FindingView).
    assert_eq!(cross["finding"]["severity"], "high");
    let evidence = cross["finding"]["evidence"].as_array().unwrap();
    assert!(evidence.iter().all(|e| e["object"].as_str().unwrap().starts_with("s3://")), "{evidence:?}");
    let objects = cross["objects"].as_array().unwrap();
    assert!(
        objects.iter().all(|o| o.as_str().unwrap().starts_with(&format!("s3://{BUCKET}/AWSLogs/"))),
        "{objects:?}"
    );
    assert!(!objects.is_empty());

    // Another batch with nothing new publishes nothing again.
    let (ok, _) = d.invoke(&sqs(&[("m2", s3_notification(&refs))]));
    assert!(ok);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(d.sink.bodies().len(), expected.len(), "each finding is published once");
}

#[test]
fn a_snapshot_is_a_consistent_database_in_s3() {
    let Some(d) = Deployment::start() else { return };
    let (key, body) = example_file("us-east-1_20240501T0910Z");
    d.put(&key, &body);
    let (ok, _) = d.invoke(&sqs(&[("m1", s3_notification(&[&key]))]));
    assert!(ok);
    let (ok, answer) = d.invoke(&json!({"granttrail": "snapshot"}));
    assert!(ok, "{answer}\n{}", d.log());
    let latest = answer["latest"].as_str().unwrap();
    assert_eq!(latest, format!("s3://{SNAPSHOTS}/granttrail/latest.db"));
    let stamped = answer["snapshot"].as_str().unwrap();
    assert!(stamped.starts_with(&format!("s3://{SNAPSHOTS}/granttrail/granttrail-")), "{stamped}");
    let copy = d.dir.path().join("downloaded.db");
    std::fs::write(&copy, d.get(SNAPSHOTS, "granttrail/latest.db")).unwrap();
    let snapshot = Store::open(&copy).unwrap();
    assert_eq!(counts(&snapshot), counts(&d.store()));
    assert_eq!(
        snapshot.grants(&GrantFilter::default()).unwrap().len(),
        d.store().grants(&GrantFilter::default()).unwrap().len()
    );
    let conn = rusqlite::Connection::open(&copy).unwrap();
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
}

/// A KMS CreateGrant record, as CloudTrail writes it.
fn create_grant_record(event_id: &str, grantee: &str) -> Value {
    json!({
        "eventVersion": "1.08", "eventID": event_id, "eventTime": "2024-06-01T12:00:00Z",
        "eventSource": "kms.amazonaws.com", "eventName": "CreateGrant", "awsRegion": "us-east-1",
        "sourceIPAddress": "198.51.100.7", "userAgent": "aws-cli/2.15.0", "eventType": "AwsApiCall",
        "recipientAccountId": "111122223333", "readOnly": false, "managementEvent": true,
        "eventCategory": "Management",
        "userIdentity": {"type": "AssumedRole", "principalId": "AROAEXAMPLE:alice", "accountId": "111122223333",
            "arn": "arn:aws:sts::111122223333:assumed-role/KeyAdmin/alice",
            "sessionContext": {"sessionIssuer": {"type": "Role", "principalId": "AROAEXAMPLE",
                "arn": "arn:aws:iam::111122223333:role/KeyAdmin", "accountId": "111122223333", "userName": "KeyAdmin"}}},
        "requestParameters": {"keyId": "arn:aws:kms:us-east-1:111122223333:key/11111111-2222-3333-4444-555555555555",
            "granteePrincipal": grantee, "operations": ["Decrypt"]},
        "responseElements": {"grantId": format!("grant-{event_id}"), "keyId": "arn:aws:kms:us-east-1:111122223333:key/11111111-2222-3333-4444-555555555555"},
        "resources": [{"accountId": "111122223333", "type": "AWS::KMS::Key",
            "ARN": "arn:aws:kms:us-east-1:111122223333:key/11111111-2222-3333-4444-555555555555"}]
    })
}

#[test]
fn records_carried_by_cloudwatch_logs_and_eventbridge_are_ingested() {
    let Some(d) = Deployment::start() else { return };
    let logged =
        create_grant_record("0a000000-0000-4000-8000-000000000001", "arn:aws:iam::111122223333:role/Reader");
    let payload = json!({"messageType": "DATA_MESSAGE", "owner": "111122223333", "logGroup": "aws-cloudtrail-logs",
        "logStream": "111122223333_CloudTrail_us-east-1", "subscriptionFilters": ["granttrail"],
        "logEvents": [{"id": "1", "timestamp": 1717243200000u64, "message": logged.to_string()}]});
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(payload.to_string().as_bytes()).unwrap();
    let data = base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap());
    let (ok, answer) = d.invoke(&json!({"awslogs": {"data": data}}));
    assert!(ok, "{answer}\n{}", d.log());

    let api_call = json!({"version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": "AWS API Call via CloudTrail", "source": "aws.kms", "account": "111122223333",
        "time": "2024-06-01T12:05:00Z", "region": "us-east-1", "resources": [],
        "detail": create_grant_record("0a000000-0000-4000-8000-000000000002", "arn:aws:iam::444455556666:role/Partner")});
    let (ok, answer) = d.invoke(&api_call);
    assert!(ok, "{answer}\n{}", d.log());
    // The same event again (Lambda's own retry of an async invocation) adds nothing.
    assert!(d.invoke(&api_call).0);

    let grants = d.store().grants(&GrantFilter::default()).unwrap();
    let mut ids: Vec<&str> = grants.iter().map(|g| g.grant_id.as_str()).collect();
    ids.sort();
    assert_eq!(
        ids,
        ["grant-0a000000-0000-4000-8000-000000000001", "grant-0a000000-0000-4000-8000-000000000002"]
    );
}

#[test]
fn outside_sqs_a_failure_fails_the_invocation_and_names_the_object() {
    let Some(d) = Deployment::start() else { return };
    let poison = format!("{DAY}111122223333_CloudTrail_us-east-1_20240501T0930Z_Poison.json.gz");
    d.put(&poison, b"{\"Records\": [");
    let (ok, answer) = d.invoke(&s3_notification(&[&poison]));
    assert!(!ok, "a direct invocation reports failure so Lambda retries it: {answer}");
    assert!(answer.to_string().contains(&format!("s3://{BUCKET}/{poison}")), "{answer}");
    let missing = format!("{DAY}111122223333_CloudTrail_us-east-1_20240501T0931Z_Missing.json.gz");
    let (ok, answer) = d.invoke(&s3_notification(&[&missing]));
    assert!(!ok);
    assert!(answer.to_string().contains(&missing) && answer.to_string().contains("NoSuchKey"), "{answer}");
    let (ok, answer) = d.invoke(&json!({"granttrail": "snapshot"}));
    assert!(ok, "the function keeps serving after failures: {answer}");
}

/// The totals and grants a database holds, to compare runs.
fn state(store: &Store) -> (u64, u64, u64, Vec<String>) {
    let (a, b, c) = store.totals().unwrap();
    let mut grants: Vec<String> = store
        .grants(&GrantFilter::default())
        .unwrap()
        .iter()
        .map(|g| serde_json::to_string(g).unwrap())
        .collect();
    grants.sort();
    (a, b, c, grants)
}

#[test]
fn a_batch_cut_short_by_a_timeout_is_redelivered_without_loss_or_double_counting() {
    let corpus = tempfile::tempdir().unwrap();
    granttrail_corpus::write_corpus(&granttrail_corpus::Options {
        out: corpus.path().to_path_buf(),
        records: 24_000,
        kms_share: 0.3,
        grant_share: 0.01,
        files: 4,
        accounts: 2,
        regions: 1,
        seed: 7,
        gzip: true,
    })
    .unwrap();
    let files = files_under(corpus.path());
    let keys: Vec<String> = files
        .iter()
        .map(|p| p.strip_prefix(corpus.path()).unwrap().to_string_lossy().replace('\\', "/"))
        .collect();

    // What one uninterrupted run stores.
    let reference = Store::open_in_memory().unwrap();
    let mut reference = reference;
    for (file, key) in files.iter().zip(&keys) {
        let reader = std::fs::File::open(file).unwrap();
        let name = format!("s3://{BUCKET}/{key}");
        granttrail_ingest::ingest_object(&mut reference, &name, reader, &Default::default(), 0).unwrap();
    }
    reference.refresh_labels().unwrap();
    let expected = state(&reference);

    // Killed at several points of the batch (Lambda ends a sandbox that times out), then the
    // whole batch is redelivered to a fresh process.
    let mut interrupted = Vec::new();
    for delay_ms in [30u64, 250, 700] {
        let Some(mut d) = Deployment::start() else { return };
        for (file, key) in files.iter().zip(&keys) {
            d.put(key, &std::fs::read(file).unwrap());
        }
        let messages: Vec<(String, Value)> =
            keys.iter().enumerate().map(|(i, k)| (format!("m{i}"), s3_notification(&[k]))).collect();
        let refs: Vec<(&str, Value)> = messages.iter().map(|(id, v)| (id.as_str(), v.clone())).collect();
        let event = sqs(&refs);
        d.api.push(&event.to_string());
        while d.api.handed_out() == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        d.kill_function();
        interrupted.push(d.store().totals().unwrap().0);
        d.start_function();
        let (ok, body) = d.invoke(&event);
        assert!(ok && failures(&body).is_empty(), "{body}\n{}", d.log());
        let store = d.store();
        assert_eq!(state(&store), expected, "killed after {delay_ms} ms: redelivery gives one run's state");
        let conn = rusqlite::Connection::open(d.db()).unwrap();
        let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(check, "ok");
    }
    assert!(
        interrupted.iter().any(|&committed| committed < files.len() as u64),
        "some kill must land before the batch was done: {interrupted:?} objects committed"
    );
}

/// The bundled example's us-east-1 day for 111122223333 as a signed trail lists it, tampered
/// with: one file altered after delivery, one deleted, one planted.
fn tampered_example() -> (granttrail_testkit::trail::SignedTrail, Vec<String>, String, String, String) {
    let (mut trail, mut logs) = granttrail_testkit::trail::example_trail(&example(), DAY).unwrap();
    let altered = logs[3].clone();
    let pretty = serde_json::to_string_pretty(
        &serde_json::from_str::<Value>(&trail.content(&altered).unwrap()).unwrap(),
    )
    .unwrap();
    trail.tamper(&altered, &pretty);
    let deleted = logs[5].clone();
    trail.objects.remove(&deleted);
    logs.retain(|k| *k != deleted);
    // Planted: a CreateGrant nobody made, in a file of 10:45 no digest lists.
    let mut records: Value = serde_json::from_str(&trail.content(&logs[2]).unwrap()).unwrap();
    let create = records["Records"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|r| r["eventName"] == "CreateGrant")
        .unwrap();
    create["eventID"] = json!("00000000-0000-4000-8000-00000000beef");
    create["responseElements"]["grantId"] = json!(PLANTED_GRANT);
    let planted = format!("{DAY}111122223333_CloudTrail_us-east-1_20240501T1045Z_PLANTEDPLANTED01.json.gz");
    trail.tamper(&planted, &json!({"Records": [create.clone()]}).to_string());
    logs.push(planted.clone());
    (trail, logs, altered, deleted, planted)
}

const PLANTED_GRANT: &str = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";

#[test]
fn each_digest_is_checked_as_it_arrives_and_tampering_is_published() {
    let (trail, logs, altered, deleted, planted) = tampered_example();
    let keys_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(keys_file.path(), trail.public_keys_json()).unwrap();
    let env = vec![("GRANTTRAIL_PUBLIC_KEYS".to_string(), keys_file.path().display().to_string())];
    let Some(d) = Deployment::start_with(env) else { return };
    let s3 = d.moto.client();
    let mut digests = Vec::new();
    for (key, body) in &trail.objects {
        let mut put = s3.put_object().bucket(BUCKET).key(key).body(body.clone().into());
        if let Some(signature) = trail.signatures.get(key) {
            put = put.metadata("signature", signature).metadata("signature-algorithm", "SHA256withRSA");
            digests.push(key.clone());
        }
        d.runtime.block_on(put.send()).unwrap();
    }

    // The log files arrive first and are ingested (each one's hash kept), then the digests.
    let refs: Vec<&str> = logs.iter().map(String::as_str).collect();
    let (ok, body) = d.invoke(&sqs(&[("logs", s3_notification(&refs))]));
    assert!(ok && failures(&body).is_empty(), "{body}\n{}", d.log());
    let at = granttrail_ingest::now();
    let before = d.store().findings(&Default::default(), at, Some(at)).unwrap().len();
    assert_eq!(d.sink.wait_for(before, WAIT).len(), before);

    let refs: Vec<&str> = digests.iter().map(String::as_str).collect();
    let event = sqs(&[("digests", s3_notification(&refs))]);
    let (ok, body) = d.invoke(&event);
    assert!(ok && failures(&body).is_empty(), "{body}\n{}", d.log());

    let store = d.store();
    let verdict = |key: &str| store.log_verdict(&format!("s3://{BUCKET}/{key}")).unwrap().map(|v| v.verdict);
    assert_eq!(verdict(&altered), Some(granttrail_ingest::verify::LogVerdict::Altered));
    assert_eq!(verdict(&planted), Some(granttrail_ingest::verify::LogVerdict::Unlisted));
    assert!(
        logs.iter()
            .filter(|k| **k != altered && **k != planted)
            .all(|k| verdict(k) == Some(granttrail_ingest::verify::LogVerdict::Verified)),
        "every other file is verified"
    );
    let missing: Vec<String> = store.missing_log_files().unwrap().into_iter().map(|m| m.object).collect();
    assert_eq!(missing, [format!("s3://{BUCKET}/{deleted}")]);
    let log = d.log();
    let digest_lines: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["fields"]["message"] == "digest")
        .collect();
    assert_eq!(digest_lines.len(), digests.len(), "{log}");
    assert!(digest_lines.iter().all(|l| l["fields"]["signatures_checked"] == true), "{log}");
    // Each problem is a line the template's alarm counts.
    let problems: Vec<String> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["fields"]["message"] == "log integrity")
        .map(|l| l["fields"]["problem"].as_str().unwrap_or_default().to_string())
        .collect();
    for problem in ["altered", "missing", "unlisted"] {
        assert!(problems.iter().any(|p| p == problem), "{problem} in {problems:?}");
    }

    // GT106 (a grant's evidence in the altered file), GT107 and GT108, through SNS.
    let after = store.findings(&Default::default(), at, Some(at)).unwrap();
    let bodies = d.sink.wait_for(after.len(), WAIT);
    assert_eq!(bodies.len(), after.len(), "{log}");
    let mut rules: Vec<String> = bodies[before..]
        .iter()
        .map(|b| {
            let envelope: Value = serde_json::from_str(b).unwrap();
            let message: Value = serde_json::from_str(envelope["Message"].as_str().unwrap()).unwrap();
            message["finding"]["rule_id"].as_str().unwrap().to_string()
        })
        .collect();
    let planted_finding = bodies[before..].iter().any(|b| {
        let envelope: Value = serde_json::from_str(b).unwrap();
        let message: Value = serde_json::from_str(envelope["Message"].as_str().unwrap()).unwrap();
        message["finding"]["rule_id"] == "GT106" && message["finding"]["grant_id"] == PLANTED_GRANT
    });
    assert!(planted_finding, "GT106 on the planted grant: {log}");
    rules.sort();
    rules.dedup();
    assert_eq!(rules, ["GT106", "GT107", "GT108"], "{log}");

    // A redelivered digest changes nothing and publishes nothing again.
    let (ok, _) = d.invoke(&event);
    assert!(ok);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(d.sink.bodies().len(), after.len());
    assert_eq!(store.missing_log_files().unwrap().len(), 1);

    // A digest announced and deleted before it is read: a problem, not a retry.
    let gone = digests[0].replace("T100000Z", "T130000Z");
    let (ok, body) = d.invoke(&sqs(&[("gone", s3_notification(&[&gone]))]));
    assert!(ok && failures(&body).is_empty(), "{body}");
    let log = d.log();
    assert!(
        log.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).any(|l| {
            l["fields"]["message"] == "log integrity"
                && l["fields"]["problem"] == "digest missing"
                && l["fields"]["object"].as_str().is_some_and(|o| o.ends_with(&gone))
        }),
        "{log}"
    );
}

/// `cargo lambda watch`'s Lambda emulator (from scripts/test-tools) with only its APIs on:
/// the real function binaries started by the test poll it, as they would Lambda's.
struct Watch {
    server: Child,
    address: String,
    functions: Vec<Child>,
    dir: tempfile::TempDir,
}

impl Watch {
    fn start() -> Option<Watch> {
        let program = granttrail_testkit::tool("cargo-lambda", "cargo-lambda")?;
        let port = granttrail_testkit::free_port();
        let dir = tempfile::tempdir().unwrap();
        let server = Command::new(program)
            .args(["lambda", "watch", "--only-lambda-apis", "-A", "127.0.0.1", "-P", &port.to_string()])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(std::fs::File::create(dir.path().join("watch.log")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("watch.err")).unwrap())
            .spawn()
            .unwrap();
        let address = format!("127.0.0.1:{port}");
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(&address).is_err() {
            assert!(started.elapsed() < WAIT, "cargo lambda watch did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(Watch { server, address, functions: Vec::new(), dir })
    }

    /// Starts one more instance of the function.
    fn add_function(&mut self, env: &[(&str, String)]) {
        let log = self.dir.path().join(format!("function-{}.log", self.functions.len()));
        let child = Command::new(env!("CARGO_BIN_EXE_granttrail-lambda"))
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("AWS_LAMBDA_RUNTIME_API", format!("http://{}/.rt", self.address))
            .env("AWS_LAMBDA_FUNCTION_NAME", "_")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
            .env("RUST_LOG", "info")
            .stdout(std::fs::File::create(log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.functions.push(child);
    }

    /// Invokes the function through the emulator's invoke API and returns its answer.
    fn invoke(&self, event: &Value) -> Value {
        use std::io::Read;
        let body = event.to_string();
        let mut stream = std::net::TcpStream::connect(&self.address).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        write!(
            stream,
            "POST /2015-03-31/functions/_/invocations HTTP/1.0\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.address,
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.") && head.contains(" 200"), "{head}\n{body}");
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }

    fn logs(&self) -> String {
        (0..self.functions.len())
            .map(|i| {
                std::fs::read_to_string(self.dir.path().join(format!("function-{i}.log"))).unwrap_or_default()
            })
            .collect()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        for child in self.functions.iter_mut().chain([&mut self.server]) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Aurora mode across a failover and a rotated password: the database server of a warm
/// instance restarts (every session ends) after its password was changed in the server and
/// in the secret. The instance opens the database again with the secret read again, and the
/// message that met the closed connection is written, not returned to the queue. As the
/// template connects it: over TLS only, the server's certificate checked against the
/// authorities of a file in the package.
#[test]
fn a_warm_instance_opens_the_database_again_after_a_restart_and_a_rotated_password() {
    let Some(pg) = granttrail_testkit::Postgres::start_tls_with_passwords() else { return };
    let Some(mut d) = Deployment::without_function(Vec::new()) else { return };
    let url = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        pg.password_database("rotating", "first password"),
        pg.certificate().display()
    );
    let secrets = secrets_client(&d.moto);
    let secret = |password: &str| {
        json!({"username": granttrail_testkit::PASSWORD_ROLE, "password": password}).to_string()
    };
    let created = d
        .runtime
        .block_on(
            secrets
                .create_secret()
                .name("granttrail-database")
                .secret_string(secret("first password"))
                .send(),
        )
        .unwrap();
    let arn = created.arn().unwrap().to_string();
    d.env = vec![("GRANTTRAIL_DB".into(), url.clone()), ("GRANTTRAIL_DB_SECRET_ARN".into(), arn.clone())];
    d.start_function();

    let (first, body) = example_file("us-east-1_20240501T0910Z");
    d.put(&first, &body);
    let (ok, body) = d.invoke(&sqs(&[("m-first", s3_notification(&[&first]))]));
    assert!(ok && failures(&body).is_empty(), "{body}\n{}", d.log());

    // The rotation: the server's password, then the secret's; then a failover.
    pg.change_password("second password");
    d.runtime
        .block_on(secrets.put_secret_value().secret_id(&arn).secret_string(secret("second password")).send())
        .unwrap();
    pg.restart();

    let (second, body) = example_file("us-east-1_20240501T0920Z");
    d.put(&second, &body);
    let (ok, body) = d.invoke(&sqs(&[("m-second", s3_notification(&[&second]))]));
    assert!(ok && failures(&body).is_empty(), "{body}\n{}", d.log());
    assert!(d.log().contains("the database connection was lost: opening it again"), "{}", d.log());
    let stored = Store::open_at(
        &granttrail_store::Location::Postgres(url.replace('@', ":second%20password@")),
        Journal::Rollback,
        &mut |_| {},
    )
    .unwrap();
    for key in [&first, &second] {
        assert!(stored.is_ingested(&format!("s3://{BUCKET}/{key}")).unwrap(), "{key} committed");
    }
}

/// Organisation scale, under the emulator deployers use: several function instances at once
/// (reserved concurrency above one), fed overlapping batches of the same objects concurrently,
/// write one PostgreSQL database; the result is what one instance writing a SQLite file gets.
#[test]
fn several_instances_at_once_into_postgres_equal_one_into_sqlite() {
    let Some(pg) = granttrail_testkit::Postgres::start() else { return };
    let Some(mut watch) = Watch::start() else { return };
    let url = pg.database("lambda");
    let keys: Vec<String> = files_under(&example())
        .iter()
        .map(|p| p.strip_prefix(example()).unwrap().to_string_lossy().replace('\\', "/"))
        .collect();
    assert!(keys.len() > 5);
    let Some(sqlite) = Deployment::start() else { return };
    for key in &keys {
        sqlite.put(key, &std::fs::read(example().join(key)).unwrap());
    }
    let all: Vec<&str> = keys.iter().map(String::as_str).collect();
    let (ok, body) = sqlite.invoke(&sqs(&[("all", s3_notification(&all))]));
    assert!(ok && failures(&body).is_empty(), "{body}");

    // Three instances on the same bucket (moto) and the same database.
    let mut env = sqlite.moto.env();
    env.push(("GRANTTRAIL_DB", url.clone()));
    env.push(("GRANTTRAIL_FINDINGS_TOPIC_ARN", sqlite.topic.clone()));
    for _ in 0..3 {
        watch.add_function(&env);
    }
    // Each batch holds every third object and the next batch's first one: overlapping
    // batches, all in flight at once.
    let batches: Vec<Value> = (0..3)
        .map(|i| {
            let messages: Vec<(String, Value)> = all
                .iter()
                .enumerate()
                .filter(|(j, _)| j % 3 == i || *j == (i + 1) % 3)
                .map(|(j, key)| (format!("m{j}"), s3_notification(&[*key])))
                .collect();
            let messages: Vec<(&str, Value)> =
                messages.iter().map(|(id, m)| (id.as_str(), m.clone())).collect();
            sqs(&messages)
        })
        .collect();
    let answers: Vec<Value> = std::thread::scope(|scope| {
        let calls: Vec<_> = batches.iter().map(|b| scope.spawn(|| watch.invoke(b))).collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    for answer in &answers {
        assert!(failures(answer).is_empty(), "{answer}\n{}", watch.logs());
    }
    let shared =
        Store::open_at(&granttrail_store::Location::Postgres(url), Journal::Rollback, &mut |_| {}).unwrap();
    let single = sqlite.store();
    assert_eq!(counts(&shared), counts(&single));
    assert_eq!(
        format!("{:?}", shared.grants(&GrantFilter::default()).unwrap()),
        format!("{:?}", single.grants(&GrantFilter::default()).unwrap())
    );
    let calls = |s: &Store| format!("{:?}", s.calls(&granttrail_store::CallFilter::default()).unwrap());
    assert_eq!(calls(&shared), calls(&single));
    assert!(!shared.grants(&GrantFilter::default()).unwrap().is_empty());
    // More than one instance did the work.
    let served = (0..3)
        .filter(|i| {
            std::fs::read_to_string(watch.dir.path().join(format!("function-{i}.log")))
                .unwrap_or_default()
                .contains("\"invocation\"")
        })
        .count();
    assert!(served > 1, "one instance served every invocation:\n{}", watch.logs());

    // Aurora mode's schedule: every key evaluated (and old records pruned), no snapshot.
    let evaluated = watch.invoke(&json!({"granttrail": "evaluate"}));
    assert!(evaluated["published_findings"].is_u64(), "{evaluated}");
    assert!(evaluated.get("snapshot").is_none(), "{evaluated}");
}
