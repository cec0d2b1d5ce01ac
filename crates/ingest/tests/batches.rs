//! A run of many objects is committed in batches: each object in a batch is still all or
//! nothing, and a rejected one leaves its neighbours in the batch untouched.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read;

use granttrail_ingest::{COMMIT_BYTES, Limits, Outcome, Plan, ingest_parallel};
use granttrail_store::Store;
use serde_json::json;

const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/aaaa0000-0000-0000-0000-000000000001";

fn decrypt(id: &str) -> serde_json::Value {
    json!({
        "eventVersion": "1.09", "eventSource": "kms.amazonaws.com", "eventName": "Decrypt",
        "eventTime": "2024-05-01T10:00:00Z", "eventID": id, "awsRegion": "us-east-1",
        "userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::111122223333:assumed-role/App/s",
            "accountId": "111122223333"},
        "recipientAccountId": "111122223333", "resources": [{"type": "AWS::KMS::Key", "ARN": KEY}],
        "requestParameters": {"encryptionAlgorithm": "SYMMETRIC_DEFAULT"}, "responseElements": null,
    })
}

fn log_file(ids: &[String]) -> Vec<u8> {
    let records: Vec<_> = ids.iter().map(|id| decrypt(id)).collect();
    serde_json::to_vec(&json!({ "Records": records })).unwrap()
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

#[test]
fn a_rejected_object_in_a_batch_leaves_nothing_and_spares_its_neighbours() {
    // One batch for everything, and a batch per object.
    for commit_bytes in [COMMIT_BYTES, 1] {
        rejected_object_in_a_run(commit_bytes);
    }
}

fn rejected_object_in_a_run(commit_bytes: u64) {
    // More events than one hand-over from a decoder, so the writer has stored part of the
    // broken object before its end turns out to be missing.
    let broken_ids = ids("broken", 1500);
    let mut broken = log_file(&broken_ids);
    broken.truncate(broken.len() - 3);
    let objects: Vec<(String, Vec<u8>)> = vec![
        ("a.json".into(), log_file(&ids("a", 3))),
        ("b-broken.json".into(), broken),
        ("c.json".into(), log_file(&ids("c", 2))),
    ];
    let mut store = Store::open_in_memory().unwrap();
    let open = |o: &(String, Vec<u8>)| -> std::io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(std::io::Cursor::new(o.1.clone())))
    };
    let plan = Plan { limits: Limits::default(), jobs: 2, now: 0, commit_bytes, hash_content: false };
    let mut reported = Vec::new();
    ingest_parallel(&mut store, &objects, &|o| o.0.clone(), &open, &plan, &mut |_, name, outcome| {
        reported.push((name.to_string(), matches!(outcome, Outcome::Ingested { .. })));
    })
    .unwrap();

    assert_eq!(
        reported,
        vec![("a.json".into(), true), ("b-broken.json".into(), false), ("c.json".into(), true)]
    );
    assert_eq!(store.totals().unwrap().1, 5, "the events of a and c, none of the broken object");
    assert!(store.event("broken-0").unwrap().is_none());
    assert!(store.event("c-1").unwrap().is_some());
    assert!(!store.is_ingested("b-broken.json").unwrap());
    assert!(store.is_ingested("a.json").unwrap() && store.is_ingested("c.json").unwrap());
}

/// Workers decode only a few objects ahead of the writer, however many objects there are and
/// however small: decoded events wait in memory until they are written.
#[test]
fn objects_are_decoded_only_a_few_ahead_of_the_writer() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let objects: Vec<(String, Vec<u8>)> =
        (0..60).map(|i| (format!("o{i:02}.json"), log_file(&ids(&format!("o{i}"), 200)))).collect();
    let (opened, written, most_ahead) = (AtomicUsize::new(0), AtomicUsize::new(0), AtomicUsize::new(0));
    let open = |o: &(String, Vec<u8>)| -> std::io::Result<Box<dyn Read + Send>> {
        let ahead = opened.fetch_add(1, Ordering::SeqCst) + 1 - written.load(Ordering::SeqCst);
        most_ahead.fetch_max(ahead, Ordering::SeqCst);
        Ok(Box::new(std::io::Cursor::new(o.1.clone())))
    };
    let jobs = 2;
    // A commit per object, so each object is reported as soon as it is written.
    let plan = Plan { limits: Limits::default(), jobs, now: 0, commit_bytes: 1, hash_content: false };
    let mut store = Store::open_in_memory().unwrap();
    ingest_parallel(&mut store, &objects, &|o| o.0.clone(), &open, &plan, &mut |_, _, outcome| {
        assert!(matches!(outcome, Outcome::Ingested { .. }));
        written.fetch_add(1, Ordering::SeqCst);
    })
    .unwrap();
    assert_eq!(written.load(Ordering::SeqCst), 60);
    let most = most_ahead.load(Ordering::SeqCst);
    assert!(most <= 2 * jobs + 2, "{most} objects were opened before the writer caught up");
}

/// With `hash_content`, each object ingested comes back with the SHA-256 a CloudTrail digest
/// lists for it (of the decompressed content), from the one read that stored its events.
#[test]
fn a_hashing_run_reports_each_objects_content_hash() {
    use granttrail_cloudtrail::digest::sha256_of_content;
    use std::io::Write as _;
    let plain = log_file(&ids("p", 700));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&log_file(&ids("g", 3))).unwrap();
    let objects: Vec<(String, Vec<u8>)> =
        vec![("plain.json".into(), plain), ("gzip.json.gz".into(), gz.finish().unwrap())];
    let open = |o: &(String, Vec<u8>)| -> std::io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(std::io::Cursor::new(o.1.clone())))
    };
    for hash_content in [true, false] {
        let plan = Plan { limits: Limits::default(), jobs: 2, now: 0, commit_bytes: 1, hash_content };
        let mut store = Store::open_in_memory().unwrap();
        let mut hashes = Vec::new();
        ingest_parallel(&mut store, &objects, &|o| o.0.clone(), &open, &plan, &mut |o, _, outcome| {
            let Outcome::Ingested { content_sha256, .. } = outcome else { panic!("{outcome:?}") };
            let expected = hash_content.then(|| sha256_of_content(o.1.as_slice(), u64::MAX).unwrap());
            hashes.push((content_sha256, expected));
        })
        .unwrap();
        assert_eq!(hashes.len(), 2);
        assert!(hashes.iter().all(|(got, expected)| got == expected), "{hashes:?}");
        // Kept with the object, for a digest that arrives later.
        let stored: Vec<_> = objects.iter().map(|o| store.content_sha256(&o.0).unwrap()).collect();
        assert_eq!(stored, hashes.iter().map(|(got, _)| *got).collect::<Vec<_>>());
    }
}
