#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The record splitter against the object shapes CloudTrail and its users produce.

use granttrail_cloudtrail::{Limits, ObjectError, ObjectFormat, for_each_record};
use std::convert::Infallible;

fn records(input: &[u8]) -> Result<(ObjectFormat, Vec<String>), ObjectError> {
    records_with(input, &Limits::default())
}

fn records_with(input: &[u8], limits: &Limits) -> Result<(ObjectFormat, Vec<String>), ObjectError> {
    let mut out = Vec::new();
    let summary = for_each_record(input, limits, |r| {
        out.push(String::from_utf8_lossy(r).into_owned());
        Ok::<(), Infallible>(())
    })
    .map_err(|e| match e {
        granttrail_cloudtrail::ScanError::Object(o) => o,
        granttrail_cloudtrail::ScanError::Callback(never) => match never {},
    })?;
    assert_eq!(summary.records as usize, out.len());
    Ok((summary.format, out))
}

#[test]
fn log_file_records_come_out_verbatim() {
    let input = br#"{"Records":[{"eventID":"a","x":"}]\"{"} , {"eventID":"b","n":[1,{"k":[]}]}]}"#;
    let (format, recs) = records(input).unwrap();
    assert_eq!(format, ObjectFormat::LogFile);
    assert_eq!(recs, vec![r#"{"eventID":"a","x":"}]\"{"}"#, r#"{"eventID":"b","n":[1,{"k":[]}]}"#]);
}

#[test]
fn records_key_need_not_come_first() {
    let (_, recs) = records(br#"{"other":{"a":[1]},"Records":[{"eventID":"a"}],"tail":true}"#).unwrap();
    assert_eq!(recs.len(), 1);
}

#[test]
fn lookup_events_output_is_unwrapped() {
    let input = br#"{"Events":[{"EventId":"x","ReadOnly":"true","CloudTrailEvent":"{\"eventID\":\"x\",\"eventSource\":\"kms.amazonaws.com\"}"}],"NextToken":"t"}"#;
    let (format, recs) = records(input).unwrap();
    assert_eq!(format, ObjectFormat::LookupEvents);
    assert_eq!(recs, vec![r#"{"eventID":"x","eventSource":"kms.amazonaws.com"}"#]);
}

#[test]
fn json_lines_and_single_records() {
    let input = b"{\"eventID\":\"a\"}\n{\"eventID\":\"b\"}\r\n\n";
    let (format, recs) = records(input).unwrap();
    assert_eq!(format, ObjectFormat::RecordLines);
    assert_eq!(recs, vec!["{\"eventID\":\"a\"}", "{\"eventID\":\"b\"}"]);
    let (format, recs) = records(b"  {\"eventVersion\":\"1.08\",\"eventID\":\"a\"}  ").unwrap();
    assert_eq!(format, ObjectFormat::RecordLines);
    assert_eq!(recs.len(), 1);
}

#[test]
fn records_larger_than_the_read_chunk_survive_refills() {
    let big = "x".repeat(700_000);
    let input = format!(r#"{{"Records":[{{"eventID":"a","pad":"{big}"}},{{"eventID":"b"}}]}}"#);
    let (_, recs) = records(input.as_bytes()).unwrap();
    assert_eq!(recs.len(), 2);
    assert!(recs[0].ends_with(&format!("{big}\"}}")));
    let single = format!(r#"{{"eventID":"a","pad":"{big}"}}"#);
    let (_, recs) = records(single.as_bytes()).unwrap();
    assert_eq!(recs, vec![single]);
}

#[test]
fn whole_object_errors() {
    let cases: &[(&[u8], &str)] = &[
        (b"", "empty object"),
        (b"   \n", "empty object"),
        (b"{}", "neither \"Records\""),
        (b"[]", "JSON array at top level"),
        (b"{\"Records\": 5}", "\"Records\" is not an array"),
        (b"{\"Records\":[{\"eventID\":\"a\"},", "truncated"),
        (b"{\"Records\":[{\"eventID\":\"a\"", "truncated"),
        (b"hello", "not JSON"),
        (b"{\"digestStartTime\":\"x\",\"logFiles\":[]}", "digest file"),
        (b"{\"Records\":[{\"a\":1} {\"b\":2}]}", "',' or ']' was expected"),
    ];
    for (input, expected) in cases {
        let err = records(input).unwrap_err().to_string();
        assert!(err.contains(expected), "{:?}: got {err:?}", String::from_utf8_lossy(input));
    }
}

#[test]
fn limits_are_enforced() {
    let limits = Limits { max_record_bytes: 1000, max_depth: 16, ..Limits::default() };
    let big = format!(r#"{{"Records":[{{"pad":"{}"}}]}}"#, "y".repeat(2000));
    assert!(matches!(records_with(big.as_bytes(), &limits), Err(ObjectError::RecordTooLarge { .. })));
    let deep = format!(r#"{{"Records":[{}{}]}}"#, "[".repeat(20), "]".repeat(20));
    assert!(matches!(records_with(deep.as_bytes(), &limits), Err(ObjectError::TooDeep { .. })));
    let huge_single = format!(r#"{{"eventID":"{}"}}"#, "z".repeat(700_000));
    assert!(matches!(records_with(huge_single.as_bytes(), &limits), Err(ObjectError::RecordTooLarge { .. })));
}
