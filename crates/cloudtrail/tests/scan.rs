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

/// Hands out its bytes a few at a time, so every scanner state meets a buffer boundary.
struct Trickle<'a> {
    bytes: &'a [u8],
    sizes: Vec<usize>,
    turn: usize,
}

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let size = self.sizes[self.turn % self.sizes.len()].min(buf.len()).min(self.bytes.len());
        self.turn += 1;
        buf[..size].copy_from_slice(&self.bytes[..size]);
        self.bytes = &self.bytes[size..];
        Ok(size)
    }
}

/// How the records array of `{"Records":[...` ends, by the splitter's documented rules,
/// walked one byte at a time: the yardstick for the block-at-a-time scanner.
#[derive(Debug, PartialEq)]
enum Expected {
    /// The array closed; later values are not compared.
    Closed(Vec<String>),
    Failed(Vec<String>, String),
}

fn expected_split(input: &[u8], from: usize, max_depth: usize) -> Expected {
    let ws = |b: u8| matches!(b, b' ' | b'\n' | b'\r' | b'\t');
    let end = input.len() as u64;
    let mut records = Vec::new();
    let mut pos = from;
    let fail = |records: Vec<String>, e: ObjectError| Expected::Failed(records, format!("{e:?}"));
    macro_rules! skip_ws {
        () => {
            while pos < input.len() && ws(input[pos]) {
                pos += 1;
            }
        };
    }
    skip_ws!();
    if input.get(pos) == Some(&b']') {
        return Expected::Closed(records);
    }
    loop {
        skip_ws!();
        let Some(&first) = input.get(pos) else {
            return fail(records, ObjectError::Truncated { offset: end });
        };
        let start = pos;
        match first {
            b'"' | b'{' | b'[' => {
                let (mut depth, mut in_string) = (0usize, false);
                loop {
                    let Some(&b) = input.get(pos) else {
                        return fail(records, ObjectError::Truncated { offset: end });
                    };
                    match (in_string, b) {
                        (true, b'"') => in_string = false,
                        (true, b'\\') => pos += 1,
                        (true, _) => {}
                        (false, b'"') => in_string = true,
                        (false, b'{' | b'[') => {
                            depth += 1;
                            if depth > max_depth {
                                let e = ObjectError::TooDeep { offset: pos as u64, limit: max_depth };
                                return fail(records, e);
                            }
                        }
                        (false, b'}' | b']') => depth -= 1,
                        (false, _) => {}
                    }
                    pos += 1;
                    if !in_string && depth == 0 {
                        break;
                    }
                }
            }
            b'}' | b']' | b',' | b':' => {
                let e = ObjectError::Malformed { offset: pos as u64, what: "a value was expected" };
                return fail(records, e);
            }
            _ => loop {
                match input.get(pos) {
                    None | Some(b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t' | b':') => break,
                    Some(b'"' | b'{' | b'[') => {
                        let e = ObjectError::Malformed { offset: pos as u64, what: "unexpected value" };
                        return fail(records, e);
                    }
                    Some(_) => pos += 1,
                }
            },
        }
        records.push(String::from_utf8_lossy(&input[start..pos]).into_owned());
        skip_ws!();
        match input.get(pos) {
            Some(b',') => pos += 1,
            Some(b']') => return Expected::Closed(records),
            Some(_) => {
                let what = "',' or ']' was expected in an array";
                return fail(records, ObjectError::Malformed { offset: pos as u64, what });
            }
            None => return fail(records, ObjectError::Truncated { offset: end }),
        }
    }
}

/// Splits `{"Records":[` followed by `elements` (each opened with `{`, joined by commas),
/// delivered in reads of `sizes`, and compares with the byte-at-a-time rules.
fn check_split(
    elements: &[Vec<u8>],
    sizes: Vec<usize>,
    max_depth: usize,
) -> Result<(), proptest::test_runner::TestCaseError> {
    let prefix = b"{\"Records\":[";
    let mut input = prefix.to_vec();
    for (i, element) in elements.iter().enumerate() {
        if i > 0 {
            input.push(b',');
        }
        input.push(b'{');
        input.extend_from_slice(element);
    }
    let expected = expected_split(&input, prefix.len(), max_depth);
    let limits = Limits { max_depth, ..Limits::default() };
    let mut got = Vec::new();
    let result = for_each_record(Trickle { bytes: &input, sizes, turn: 0 }, &limits, |r| {
        got.push(String::from_utf8_lossy(r).into_owned());
        Ok::<(), Infallible>(())
    });
    match expected {
        Expected::Closed(records) => {
            proptest::prop_assert!(got.len() >= records.len());
            proptest::prop_assert_eq!(&got[..records.len()], &records[..]);
        }
        Expected::Failed(records, error) => {
            proptest::prop_assert_eq!(&got, &records);
            let Err(granttrail_cloudtrail::ScanError::Object(e)) = result else {
                return Err(proptest::test_runner::TestCaseError::fail(format!("{result:?}: no error")));
            };
            proptest::prop_assert_eq!(format!("{e:?}"), error);
        }
    }
    Ok(())
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

    /// Records split from any bytes, delivered in any read sizes, are what the byte-at-a-time
    /// rules give: the same records, and the same error at the same offset.
    #[test]
    fn splitting_matches_the_byte_at_a_time_rules(
        elements in proptest::collection::vec(
            proptest::collection::vec(proptest::sample::select(b"{}[]\"\\a1 ,:".to_vec()), 0..60),
            1..6,
        ),
        sizes in proptest::collection::vec(1usize..12, 1..8),
        max_depth in 2usize..6,
    ) {
        check_split(&elements, sizes, max_depth)?;
    }

    /// The same for records longer than the splitter's 64-byte blocks, mostly plain text as in
    /// CloudTrail, so that whole blocks without escapes are classified together; backslashes
    /// are rare, and records span reads of any size.
    #[test]
    fn long_records_split_as_the_byte_at_a_time_rules(
        elements in proptest::collection::vec(
            proptest::collection::vec(
                proptest::prop_oneof![
                    24 => proptest::sample::select(b"abc1 :,".to_vec()),
                    8 => proptest::sample::select(b"\"{}[]".to_vec()),
                    1 => proptest::strategy::Just(b'\\'),
                ],
                0..400,
            ),
            1..5,
        ),
        sizes in proptest::collection::vec(1usize..300, 1..6),
        max_depth in 2usize..12,
    ) {
        check_split(&elements, sizes, max_depth)?;
    }
}

#[test]
fn the_hashed_read_gives_the_records_and_the_hash_a_digest_lists() {
    use granttrail_cloudtrail::digest::sha256_of_content;
    use granttrail_cloudtrail::for_each_record_hashed;
    use std::io::Write as _;

    // Larger than a read chunk, with whitespace after the last value: all of it is hashed.
    let text =
        format!("{{\"Records\":[{{\"eventName\":\"Decrypt\",\"x\":\"{}\"}}]}}\n\n", "y".repeat(300_000));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(text.as_bytes()).unwrap();
    let gzipped = gz.finish().unwrap();
    for bytes in [text.as_bytes(), &gzipped[..]] {
        let mut seen = 0;
        let (summary, hash) = for_each_record_hashed(bytes, &Limits::default(), |_| {
            seen += 1;
            Ok::<(), Infallible>(())
        })
        .unwrap();
        assert_eq!((summary.records, seen), (1, 1));
        assert_eq!(hash, sha256_of_content(bytes, u64::MAX).unwrap());
    }
    // A different byte is a different hash.
    let other = text.replacen("Decrypt", "Encrypt", 1);
    let (_, hash) =
        for_each_record_hashed(other.as_bytes(), &Limits::default(), |_| Ok::<(), Infallible>(())).unwrap();
    assert_ne!(hash, sha256_of_content(text.as_bytes(), u64::MAX).unwrap());
}
