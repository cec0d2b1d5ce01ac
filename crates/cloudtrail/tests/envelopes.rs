//! Every envelope shape in ../shared/samples unwraps to what it announces.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use granttrail_cloudtrail::envelope::{Delivery, unwrap_event};

fn sample(name: &str) -> Option<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/samples");
    if !dir.is_dir() {
        eprintln!("skipped: {} is absent (shared/ is not part of a user's clone)", dir.display());
        return None;
    }
    Some(std::fs::read(dir.join(name)).unwrap())
}

fn deliveries(name: &str) -> Option<Vec<Delivery>> {
    let messages = unwrap_event(&sample(name)?).unwrap();
    Some(messages.into_iter().flat_map(|m| m.deliveries.unwrap_or_else(|e| panic!("{name}: {e}"))).collect())
}

fn objects(d: &[Delivery]) -> Vec<(&str, &str)> {
    d.iter()
        .filter_map(|d| match d {
            Delivery::Object { bucket, key } => Some((bucket.as_str(), key.as_str())),
            _ => None,
        })
        .collect()
}

#[test]
fn s3_notifications_direct_and_through_sqs_and_sns() {
    let Some(direct) = deliveries("s3-event-notification-put-awsdocs.json") else { return };
    assert_eq!(objects(&direct).len(), 1);
    let sqs = deliveries("sqs-lambda-event-s3-notification-body-powertools.json").unwrap();
    assert!(!objects(&sqs).is_empty());
    // SQS of SNS whose message is some application's JSON: unwrapped down to it, then refused.
    let sqs_sns =
        unwrap_event(&sample("sqs-lambda-event-sns-envelope-body-powertools.json").unwrap()).unwrap();
    assert_eq!(sqs_sns[0].id.as_deref(), Some("79406a00-bf15-46ca-978c-22c3613fcb30"));
    assert_eq!(sqs_sns[0].deliveries, Err("unrecognised event shape".to_string()));
    let lambda = deliveries("s3-lambda-event-powertools.json").unwrap();
    assert!(!objects(&lambda).is_empty());
}

#[test]
fn cloudtrail_sns_notifications_list_every_key() {
    let Some(d) = deliveries("cloudtrail-sns-message-multiple-keys-awsdocs.json") else { return };
    let objs = objects(&d);
    assert_eq!(objs.len(), 3);
    assert_eq!(objs[0].0, "your-bucket-name");
    let sqs_body = deliveries("sqs-body-sns-cloudtrail-notification-cpl.json").unwrap();
    assert_eq!(objects(&sqs_body).len(), 2);
    assert!(objects(&sqs_body)[0].1.starts_with("myprefix/AWSLogs/123456789012/CloudTrail/"));
}

#[test]
fn eventbridge_object_created_and_api_calls() {
    let Some(d) = deliveries("eventbridge-s3-object-created-powertools.json") else { return };
    assert_eq!(objects(&d), vec![("example-bucket", "IMG_m7fzo3.jpg")]);
    let api = deliveries("eventbridge-cloudtrail-apicall-s3-putobject-awsdocs.json").unwrap();
    match &api[..] {
        [Delivery::Records(records)] => assert!(records[0].contains("\"eventSource\"")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn cloudwatch_logs_and_test_events() {
    let Some(logs) = deliveries("cwl-subscription-lambda-event-aws-lambda-rust-runtime.json") else { return };
    assert!(matches!(&logs[..], [Delivery::Records(r)] if !r.is_empty()));
    let test = deliveries("s3-test-event-awsdocs.json").unwrap();
    assert_eq!(test, vec![Delivery::Ignored("S3 test event")]);
    // SNS carrying a plain-text message is not something granttrail can read.
    let plain = unwrap_event(&sample("sns-lambda-event-aws-lambda-rust-runtime.json").unwrap()).unwrap();
    assert!(plain[0].deliveries.is_err());
}
