//! The ways CloudTrail objects and records announce themselves to a function: S3 event
//! notifications (direct, in SQS, in SNS, in SQS of SNS, raw or not), EventBridge "Object
//! Created" and "AWS API Call via CloudTrail", CloudTrail's own SNS notification, CloudWatch
//! Logs subscriptions, and the test messages each sends. Decided by shape, not configuration.

use std::io::Read;

use base64::Engine;
use serde_json::Value;

/// What one message asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// A CloudTrail object to read (the key already URL-decoded).
    Object { bucket: String, key: String },
    /// Records the event carries itself, each as JSON text.
    Records(Vec<String>),
    /// Acknowledged and ignored, with why.
    Ignored(&'static str),
}

/// One message of an event: an SQS record (with its id, for partial batch failures), or the
/// whole event when it did not come through SQS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: Option<String>,
    /// What the message asks for, or why it cannot be understood.
    pub deliveries: Result<Vec<Delivery>, String>,
}

/// Payloads nest (SQS body → SNS message → S3 notification); deeper means something is wrong.
const MAX_NESTING: usize = 6;

/// Unwraps a function event into its messages.
pub fn unwrap_event(event: &[u8]) -> Result<Vec<Message>, String> {
    let value: Value = serde_json::from_slice(event).map_err(|e| format!("event is not JSON: {e}"))?;
    let records = value.get("Records").and_then(Value::as_array);
    let from_sqs = records
        .is_some_and(|r| !r.is_empty() && r.iter().all(|m| m.get("eventSource") == Some(&"aws:sqs".into())));
    if let (true, Some(records)) = (from_sqs, records) {
        return Ok(records
            .iter()
            .map(|m| Message {
                id: m.get("messageId").and_then(Value::as_str).map(str::to_string),
                deliveries: match m.get("body") {
                    Some(body) => payload(body, 0),
                    None => Err("SQS message without a body".into()),
                },
            })
            .collect());
    }
    Ok(vec![Message { id: None, deliveries: payload(&value, 0) }])
}

fn text<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(*k))?.as_str()
}

/// What one payload asks for.
fn payload(v: &Value, depth: usize) -> Result<Vec<Delivery>, String> {
    if depth > MAX_NESTING {
        return Err("payload nested too deeply".into());
    }
    match v {
        Value::String(s) if s.trim() == "CloudTrail validation message." => {
            Ok(vec![Delivery::Ignored("CloudTrail SNS validation message")])
        }
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(inner) => payload(&inner, depth + 1),
            Err(_) => Err("message is neither JSON nor a known test message".into()),
        },
        Value::Object(map) => {
            if let Some(records) = map.get("Records").and_then(Value::as_array) {
                return records_payload(records, depth);
            }
            if map.get("Type").and_then(Value::as_str) == Some("Notification")
                && let Some(message) = map.get("Message")
            {
                return payload(message, depth + 1);
            }
            if map.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
                return Ok(vec![Delivery::Ignored("S3 test event")]);
            }
            if let (Some(bucket), Some(keys)) = (
                map.get("s3Bucket").and_then(Value::as_str),
                map.get("s3ObjectKey").and_then(Value::as_array),
            ) {
                // CloudTrail's own notification: keys are plain, not URL-encoded.
                return Ok(keys
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|k| Delivery::Object { bucket: bucket.to_string(), key: k.to_string() })
                    .collect());
            }
            match map.get("detail-type").and_then(Value::as_str) {
                Some("Object Created") => {
                    let bucket = text(v, &["detail", "bucket", "name"])
                        .ok_or("Object Created event without a bucket")?;
                    let key =
                        text(v, &["detail", "object", "key"]).ok_or("Object Created event without a key")?;
                    return Ok(vec![Delivery::Object { bucket: bucket.to_string(), key: key.to_string() }]);
                }
                Some("AWS API Call via CloudTrail") => {
                    let detail = map.get("detail").ok_or("API call event without a detail")?;
                    return Ok(vec![Delivery::Records(vec![detail.to_string()])]);
                }
                Some(_) => return Ok(vec![Delivery::Ignored("an EventBridge event of another kind")]),
                None => {}
            }
            if let Some(data) = text(v, &["awslogs", "data"]) {
                return logs_payload(data);
            }
            Err("unrecognised event shape".into())
        }
        _ => Err("unrecognised event shape".into()),
    }
}

fn records_payload(records: &[Value], depth: usize) -> Result<Vec<Delivery>, String> {
    let mut out = Vec::new();
    let mut carried = Vec::new();
    for r in records {
        if let Some(sns) = r.get("Sns") {
            let message = sns.get("Message").ok_or("SNS record without a Message")?;
            out.extend(payload(message, depth + 1)?);
        } else if r.get("s3").is_some() {
            let name = text(r, &["eventName"]).unwrap_or_default();
            if !name.starts_with("ObjectCreated:") {
                out.push(Delivery::Ignored("an S3 notification that is not ObjectCreated"));
                continue;
            }
            let bucket = text(r, &["s3", "bucket", "name"]).ok_or("S3 notification without a bucket")?;
            let key = text(r, &["s3", "object", "key"]).ok_or("S3 notification without a key")?;
            out.push(Delivery::Object { bucket: bucket.to_string(), key: url_decode(key) });
        } else if r.get("eventVersion").is_some() && r.get("eventSource").is_some() {
            carried.push(r.to_string());
        } else {
            return Err("a Records entry of unknown shape".into());
        }
    }
    if !carried.is_empty() {
        out.push(Delivery::Records(carried));
    }
    Ok(out)
}

/// CloudWatch Logs subscription data: base64 of gzip of `{"messageType", "logEvents"}`; each
/// log event's message is one CloudTrail record.
fn logs_payload(data: &str) -> Result<Vec<Delivery>, String> {
    let compressed = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| format!("CloudWatch Logs data is not base64: {e}"))?;
    let mut json = Vec::new();
    // A subscription payload is at most 1 MB compressed; the cap keeps a bomb harmless.
    flate2::read::MultiGzDecoder::new(compressed.as_slice())
        .take(64 << 20)
        .read_to_end(&mut json)
        .map_err(|e| format!("CloudWatch Logs data is not gzip: {e}"))?;
    let doc: Value =
        serde_json::from_slice(&json).map_err(|e| format!("CloudWatch Logs data is not JSON: {e}"))?;
    match doc.get("messageType").and_then(Value::as_str) {
        Some("CONTROL_MESSAGE") => Ok(vec![Delivery::Ignored("CloudWatch Logs control message")]),
        Some("DATA_MESSAGE") => {
            let events =
                doc.get("logEvents").and_then(Value::as_array).ok_or("DATA_MESSAGE without logEvents")?;
            let records = events
                .iter()
                .filter_map(|e| e.get("message").and_then(Value::as_str))
                .map(str::to_string)
                .collect();
            Ok(vec![Delivery::Records(records)])
        }
        _ => Err("CloudWatch Logs data without a known messageType".into()),
    }
}

/// Decodes an S3 notification key: `+` is a space and `%XX` a byte.
pub fn url_decode(key: &str) -> String {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = key.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_url_decoded() {
        assert_eq!(url_decode("AWSLogs/red+flower%2B%C3%A9.json.gz"), "AWSLogs/red flower+é.json.gz");
        assert_eq!(url_decode("bad%zz%"), "bad%zz%");
        assert_eq!(url_decode("%4"), "%4");
    }

    #[test]
    fn sqs_of_s3_with_one_bad_message() {
        let event = r#"{"Records":[
            {"messageId":"m1","eventSource":"aws:sqs","body":"{\"Records\":[{\"eventName\":\"ObjectCreated:Put\",\"s3\":{\"bucket\":{\"name\":\"trail\"},\"object\":{\"key\":\"AWSLogs/a+b.json.gz\"}}}]}"},
            {"messageId":"m2","eventSource":"aws:sqs","body":"not json"}]}"#;
        let messages = unwrap_event(event.as_bytes()).unwrap();
        assert_eq!(messages[0].id.as_deref(), Some("m1"));
        assert_eq!(
            messages[0].deliveries,
            Ok(vec![Delivery::Object { bucket: "trail".into(), key: "AWSLogs/a b.json.gz".into() }])
        );
        assert!(messages[1].deliveries.is_err());
    }

    #[test]
    fn validation_and_test_messages_are_ignored() {
        let sns = r#"{"Records":[{"EventSource":"aws:sns","Sns":{"Type":"Notification","Message":"CloudTrail validation message."}}]}"#;
        assert_eq!(
            unwrap_event(sns.as_bytes()).unwrap()[0].deliveries,
            Ok(vec![Delivery::Ignored("CloudTrail SNS validation message")])
        );
        let s3_test = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}"#;
        assert_eq!(
            unwrap_event(s3_test.as_bytes()).unwrap()[0].deliveries,
            Ok(vec![Delivery::Ignored("S3 test event")])
        );
        assert!(unwrap_event(br#""just text""#).unwrap()[0].deliveries.is_err());
        assert!(unwrap_event(b"{").is_err());
    }
}
