//! Signed chains of the tests' own, intact and then tampered with: each tampering is reported
//! exactly, and nothing intact is.

use granttrail_cloudtrail::digest::PublicKeys;
use granttrail_cloudtrail::{KeyClass, ObjectKey};
use granttrail_testkit::trail::SignedTrail;
use serde_json::json;

use super::*;

/// Three hours of a trail: two log files an hour, each hour's digest after it.
fn three_hours() -> (SignedTrail, Vec<String>, Vec<String>) {
    let mut trail = SignedTrail::new("111122223333", "eu-west-1");
    let mut logs = Vec::new();
    let mut digests = Vec::new();
    for hour in 10..13 {
        for minute in ["05", "35"] {
            let at = format!("2025-03-04T{hour}:{minute}:00Z");
            logs.push(trail.log_file(&at, &[json!({"eventID": at, "eventSource": "kms.amazonaws.com"})]));
        }
        digests.push(
            trail.digest(&format!("2025-03-04T{hour}:00:00Z"), &format!("2025-03-04T{}:00:00Z", hour + 1)),
        );
    }
    (trail, logs, digests)
}

/// The trail's objects as a downloaded copy (`copy`) or as read from S3 with metadata.
fn inputs(trail: &SignedTrail, from_s3: bool) -> Vec<Input> {
    trail
        .objects
        .iter()
        .map(|(key, bytes)| {
            let name = if from_s3 { format!("s3://{}/{key}", trail.bucket) } else { format!("/copy/{key}") };
            let place = if from_s3 { key.clone() } else { format!("/copy/{key}") };
            match ObjectKey::parse(key).class {
                KeyClass::Digest => Input::Digest(Box::new(read_digest(
                    name,
                    &place,
                    from_s3.then(|| trail.bucket.clone()),
                    bytes.as_slice(),
                    if from_s3 { trail.signatures.get(key).cloned() } else { None },
                ))),
                _ => Input::Log(read_log(name, &place, bytes.as_slice(), 1 << 30)),
            }
        })
        .collect()
}

fn keys(trail: &SignedTrail) -> PublicKeys {
    PublicKeys::parse(trail.public_keys_json().as_bytes()).unwrap()
}

fn verdicts(v: &Verification) -> Vec<(ProblemKind, String)> {
    v.problems
        .iter()
        .map(|p| (p.verdict, p.object.rsplit('/').next().unwrap_or_default().to_string()))
        .collect()
}

fn file(key: &str) -> String {
    key.rsplit('/').next().unwrap().to_string()
}

/// Each of `logs` reported unlisted.
fn unlisted(logs: &[String]) -> Vec<(ProblemKind, String)> {
    logs.iter().map(|log| (ProblemKind::Unlisted, file(log))).collect()
}

/// Alters the digest `key` (a space in a field name) and returns its new content.
fn alter_digest(trail: &mut SignedTrail, key: &str) -> String {
    let text = trail.content(key).unwrap().replace("\"newestEventTime\"", "\"newestEventTime \"");
    trail.tamper(key, &text);
    text
}

/// Sets one field of the digest `key`.
fn set_digest_field(trail: &mut SignedTrail, key: &str, field: &str, value: &str) {
    let mut body: serde_json::Value = serde_json::from_str(&trail.content(key).unwrap()).unwrap();
    body[field] = json!(value);
    trail.tamper(key, &body.to_string());
}

#[test]
fn an_intact_copy_is_verified_and_only_the_newest_signature_is_left_unchecked() {
    let (trail, logs, _) = three_hours();
    let v = analyse(&inputs(&trail, false), Some(&keys(&trail)), &Filter::default());
    assert_eq!(verdicts(&v), vec![]);
    assert!(!v.failed());
    let s = &v.summaries[0];
    assert_eq!((s.account.as_str(), s.region.as_str()), ("111122223333", "eu-west-1"));
    assert_eq!((s.verified, s.altered, s.missing, s.unlisted, s.not_covered), (6, 0, 0, 0, 0));
    assert_eq!((s.digests, s.digests_trusted, s.signatures_valid, s.signatures_unchecked), (3, 3, 2, 1));
    assert_eq!(s.gaps, vec![]);
    assert_eq!(v.log_files.len(), logs.len());
    assert!(v.log_files.iter().all(|(_, verdict, _)| *verdict == LogVerdict::Verified));
}

#[test]
fn from_s3_the_newest_signature_is_checked_too() {
    let (trail, _, _) = three_hours();
    let v = analyse(&inputs(&trail, true), Some(&keys(&trail)), &Filter::default());
    assert_eq!(verdicts(&v), vec![]);
    assert_eq!((v.summaries[0].signatures_valid, v.summaries[0].signatures_unchecked), (3, 0));
}

#[test]
fn without_keys_nothing_is_said_of_signatures() {
    let (trail, _, _) = three_hours();
    let v = analyse(&inputs(&trail, false), None, &Filter::default());
    assert!(!v.signatures_checked);
    assert_eq!(verdicts(&v), vec![]);
    assert_eq!((v.summaries[0].signatures_valid, v.summaries[0].signatures_unchecked), (0, 3));
}

#[test]
fn an_altered_log_file_is_reported_alone() {
    let (mut trail, logs, _) = three_hours();
    let text = trail.content(&logs[2]).unwrap().replace("kms", "sts");
    trail.tamper(&logs[2], &text);
    let v = analyse(&inputs(&trail, false), Some(&keys(&trail)), &Filter::default());
    assert_eq!(verdicts(&v), vec![(ProblemKind::Altered, file(&logs[2]))]);
    assert_eq!(v.summaries[0].verified, 5);
}

/// A digest planted to list an altered copy's content does not outvote the digest it
/// contradicts, even read first (its name sorts before the hourly one's) and unsigned where
/// a downloaded copy cannot check it: the file is altered, and the disagreement named.
#[test]
fn a_planted_digest_listing_an_altered_copy_does_not_verify_it() {
    let (mut trail, logs, digests) = three_hours();
    let text = trail.content(&logs[2]).unwrap().replace("kms", "sts");
    trail.add_log_content(&logs[2], &text);
    let planted = trail.backfill_digest("2025-03-04T10:00:00Z", "2025-03-04T11:00:00Z");
    assert!(planted < digests[1], "the planted digest is read before the one that lists the file");
    let v = analyse(&inputs(&trail, false), Some(&keys(&trail)), &Filter::default());
    assert_eq!(verdicts(&v), vec![(ProblemKind::Altered, file(&logs[2]))]);
    let reason = &v.problems[0].reason;
    assert!(reason.contains("disagree") && reason.contains(&file(&planted)), "{reason}");
    assert!(v.failed());
}

/// An object too large to read whole is a file that cannot be read (as content over the limit
/// is), not an error of the read, and no digest's listing makes it verified.
#[test]
fn a_log_file_too_large_to_read_cannot_be_verified() {
    let (trail, logs, _) = three_hours();
    let mut inputs = inputs(&trail, true);
    let too_large = std::io::Error::new(std::io::ErrorKind::FileTooLarge, "larger than 10 bytes as stored");
    let name = format!("s3://{}/{}", trail.bucket, logs[1]);
    let log = log_from_stored(name.clone(), &logs[1], Err(too_large), 10).unwrap();
    inputs.retain(|i| !matches!(i, Input::Log(l) if l.name == name));
    inputs.push(Input::Log(log));
    let v = analyse(&inputs, Some(&keys(&trail)), &Filter::default());
    assert_eq!(verdicts(&v), vec![(ProblemKind::Altered, file(&logs[1]))]);
    assert!(v.problems[0].reason.contains("larger than 10 bytes"), "{}", v.problems[0].reason);
    let other = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
    assert!(
        log_from_stored(name, &logs[1], Err(other), 10).is_err(),
        "a failed read is an error, not a verdict"
    );
}

/// A digest planted to follow a genuine one (a copy of the next digest under another name,
/// naming the same previous digest and its true hash): the chain forks, which CloudTrail never
/// writes, and that is reported on the digest both name.
#[test]
fn a_second_digest_naming_the_same_previous_one_is_a_fork() {
    let (mut trail, _, digests) = three_hours();
    let genuine = trail.content(&digests[2]).unwrap();
    let planted = digests[2].replace("20250304T130000Z", "20250304T123000Z");
    let text = genuine.replace(&digests[2], &planted).replace("2025-03-04T13:00:00Z", "2025-03-04T12:30:00Z");
    trail.tamper(&planted, &text);
    let v = analyse(&inputs(&trail, false), Some(&keys(&trail)), &Filter::default());
    assert_eq!(verdicts(&v), vec![(ProblemKind::DigestChainForked, file(&digests[1]))]);
    let reason = &v.problems[0].reason;
    assert!(reason.contains(&file(&planted)) && reason.contains(&file(&digests[2])), "{reason}");
    assert!(v.failed());
}

#[test]
fn a_deleted_log_file_is_missing_and_named_as_listed() {
    let (mut trail, logs, _) = three_hours();
    trail.objects.remove(&logs[3]);
    let v = analyse(&inputs(&trail, false), Some(&keys(&trail)), &Filter::default());
    assert_eq!(verdicts(&v), vec![(ProblemKind::Missing, file(&logs[3]))]);
    assert_eq!(v.problems[0].object, format!("s3://trail-bucket/{}", logs[3]));
    assert_eq!(v.missing.len(), 1);
    assert_eq!(
        (v.missing[0].file_name.as_str(), v.missing[0].region.as_str()),
        (file(&logs[3]).as_str(), "eu-west-1")
    );
    assert!(
        v.problems[0].reason.contains("2025-03-04T11:00:00Z to 2025-03-04T12:00:00Z"),
        "{}",
        v.problems[0].reason
    );
}

#[test]
fn a_planted_file_is_unlisted_inside_the_digests_hours_and_only_not_covered_after_them() {
    let (mut trail, _, _) = three_hours();
    let planted = trail.log_file("2025-03-04T10:50:00Z", &[json!({"eventSource": "kms.amazonaws.com"})]);
    let later = trail.log_file("2025-03-04T12:40:00Z", &[]);
    let v = analyse(&inputs(&trail, false), Some(&keys(&trail)), &Filter::default());
    assert_eq!(verdicts(&v), vec![(ProblemKind::Unlisted, file(&planted))]);
    let not_covered: Vec<_> = v
        .log_files
        .iter()
        .filter(|(_, verdict, _)| *verdict == LogVerdict::NotCovered)
        .map(|(n, _, _)| file(n))
        .collect();
    assert_eq!(not_covered, vec![file(&later)], "the newest hour is not covered yet, not a forgery");
}

#[test]
fn a_deleted_digest_breaks_the_chain_and_leaves_its_hour_unverified() {
    let (mut trail, _, digests) = three_hours();
    trail.objects.remove(&digests[1]);
    let v = analyse(&inputs(&trail, false), Some(&keys(&trail)), &Filter::default());
    assert_eq!(verdicts(&v), vec![(ProblemKind::DigestMissing, file(&digests[1]))]);
    let s = &v.summaries[0];
    assert_eq!((s.verified, s.not_covered), (4, 2), "the deleted digest's files can no longer be checked");
    assert_eq!(s.hours_without_digests, 1);
}

#[test]
fn an_altered_digest_is_caught_by_the_next_one_and_its_files_are_not_vouched_for() {
    let (mut trail, logs, digests) = three_hours();
    alter_digest(&mut trail, &digests[0]);
    let v = analyse(&inputs(&trail, false), Some(&keys(&trail)), &Filter::default());
    let mut expected = unlisted(&logs[..2]);
    expected.push((ProblemKind::DigestAltered, file(&digests[0])));
    assert_eq!(verdicts(&v), expected);
}

#[test]
fn a_corrupt_signature_is_caught_with_the_keys() {
    let (mut trail, logs, digests) = three_hours();
    let corrupt = |signature: &str| {
        format!("{}{}", if signature.starts_with('0') { "1" } else { "0" }, &signature[1..])
    };
    let newest = trail.signatures.get(&digests[2]).unwrap().clone();
    trail.signatures.insert(digests[2].clone(), corrupt(&newest));
    let v = analyse(&inputs(&trail, true), Some(&keys(&trail)), &Filter::default());
    assert_eq!(
        verdicts(&v),
        vec![
            (ProblemKind::Unlisted, file(&logs[4])),
            (ProblemKind::Unlisted, file(&logs[5])),
            (ProblemKind::DigestSignatureInvalid, file(&digests[2])),
        ]
    );

    // An older digest's metadata disagreeing with what the next digest recorded.
    let (mut trail, logs, digests) = three_hours();
    let first = trail.signatures.get(&digests[0]).unwrap().clone();
    trail.signatures.insert(digests[0].clone(), corrupt(&first));
    let v = analyse(&inputs(&trail, true), Some(&keys(&trail)), &Filter::default());
    assert_eq!(
        verdicts(&v),
        vec![
            (ProblemKind::Unlisted, file(&logs[0])),
            (ProblemKind::Unlisted, file(&logs[1])),
            (ProblemKind::DigestSignatureInvalid, file(&digests[0])),
        ]
    );
}

#[test]
fn a_key_the_public_keys_do_not_hold_leaves_the_digest_untrusted() {
    let other = SignedTrail::new("111122223333", "eu-west-1");
    let (trail, _, digests) = three_hours();
    let v = analyse(&inputs(&trail, false), Some(&keys(&other)), &Filter::default());
    let unknown: Vec<_> = v
        .problems
        .iter()
        .filter(|p| p.verdict == ProblemKind::DigestKeyUnknown)
        .map(|p| file(&p.object))
        .collect();
    assert_eq!(unknown, vec![file(&digests[0]), file(&digests[1])], "the newest has no signature offline");
}

#[test]
fn a_moved_digest_is_not_trusted() {
    let (mut trail, logs, digests) = three_hours();
    let bytes = trail.objects.remove(&digests[2]).unwrap();
    let moved = digests[2].replace("eu-west-1/2025", "eu-west-1/2024");
    trail.objects.insert(moved.clone(), bytes);
    let v = analyse(&inputs(&trail, false), Some(&keys(&trail)), &Filter::default());
    assert_eq!(
        verdicts(&v),
        vec![
            (ProblemKind::Unlisted, file(&logs[4])),
            (ProblemKind::Unlisted, file(&logs[5])),
            (ProblemKind::DigestMoved, file(&moved)),
        ]
    );
}

#[test]
fn a_chain_restarted_after_validation_was_off_is_a_gap_not_an_error() {
    let (mut trail, _, _) = three_hours();
    trail.restart_chain();
    let quiet = trail.log_file("2025-03-04T14:10:00Z", &[]);
    trail.restart_chain();
    trail.log_file("2025-03-04T16:10:00Z", &[]);
    trail.digest("2025-03-04T16:00:00Z", "2025-03-04T17:00:00Z");
    let v = analyse(&inputs(&trail, false), Some(&keys(&trail)), &Filter::default());
    assert_eq!(verdicts(&v), vec![]);
    let s = &v.summaries[0];
    assert_eq!(s.gaps.len(), 1);
    assert_eq!(s.hours_without_digests, 3);
    assert_eq!((s.verified, s.not_covered), (7, 1));
    assert!(v.log_files.contains(&(format!("/copy/{quiet}"), LogVerdict::NotCovered, None)));
}

#[test]
fn organization_layouts_and_prefixes_verify_alike() {
    let mut trail = SignedTrail::new("444455556666", "us-east-2");
    trail.prefix = "logs/org".to_string();
    trail.org_id = Some("o-abcdef1234".to_string());
    trail.log_file("2025-03-04T10:05:00Z", &[]);
    trail.digest("2025-03-04T10:00:00Z", "2025-03-04T11:00:00Z");
    trail.digest("2025-03-04T11:00:00Z", "2025-03-04T12:00:00Z");
    let v = analyse(&inputs(&trail, false), Some(&keys(&trail)), &Filter::default());
    assert_eq!(verdicts(&v), vec![]);
    assert_eq!((v.summaries[0].verified, v.summaries[0].signatures_valid), (1, 1));
}

#[test]
fn the_filter_keeps_what_is_outside_it_out_of_the_verdict() {
    let (mut trail, logs, _) = three_hours();
    trail.objects.remove(&logs[0]);
    let filter = Filter {
        since: Some(granttrail_grants::timestamp::parse("2025-03-04T11:00:00Z").unwrap()),
        ..Filter::default()
    };
    let v = analyse(&inputs(&trail, false), Some(&keys(&trail)), &filter);
    assert_eq!(verdicts(&v), vec![], "a file before --since is not missing");
    assert_eq!(v.summaries[0].verified, 4);
    let filter = Filter { regions: vec!["us-east-1".to_string()], ..Filter::default() };
    assert!(analyse(&inputs(&trail, false), None, &filter).summaries.is_empty());
}

#[test]
fn a_backfill_digest_vouches_for_its_files_and_stays_out_of_the_chain() {
    let (mut trail, _, _) = three_hours();
    // A file of 10:50 that the hourly digests did not list, listed later by a backfill digest.
    let late = trail.log_file("2025-03-04T10:50:00Z", &[]);
    let backfill = trail.backfill_digest("2025-03-04T10:00:00Z", "2025-03-04T11:00:00Z");
    assert!(backfill.ends_with("_backfill.json.gz"));
    let v = analyse(&inputs(&trail, true), Some(&keys(&trail)), &Filter::default());
    assert_eq!(verdicts(&v), vec![], "the late file is listed, and the chain is whole");
    let s = &v.summaries[0];
    assert_eq!((s.verified, s.unlisted, s.digests, s.digests_trusted, s.signatures_valid), (7, 0, 4, 4, 4));
    assert_eq!(s.gaps, vec![]);

    // Without the backfill digest the late file is unlisted; with it altered, altered.
    let mut without = inputs(&trail, true);
    without.retain(|i| !matches!(i, Input::Digest(d) if d.key == backfill));
    let v = analyse(&without, Some(&keys(&trail)), &Filter::default());
    assert_eq!(verdicts(&v), vec![(ProblemKind::Unlisted, file(&late))]);
    trail.tamper(&late, r#"{"Records":[{"eventName":"CreateGrant"}]}"#);
    let v = analyse(&inputs(&trail, true), Some(&keys(&trail)), &Filter::default());
    assert_eq!(verdicts(&v), vec![(ProblemKind::Altered, file(&late))]);
}

#[test]
fn one_digest_judged_as_it_arrives_with_the_one_before_it() {
    let (mut trail, logs, digests) = three_hours();
    // What the Lambda reads when the 13:00 digest arrives: it, the 12:00 digest it chains to,
    // and the files it lists (one altered, one gone).
    trail.tamper(&logs[5], r#"{"Records":[]}"#);
    let arrived = format!("s3://{}/{}", trail.bucket, digests[2]);
    let wanted = [digests[1].as_str(), digests[2].as_str(), logs[4].as_str(), logs[5].as_str()];
    let mut read = inputs(&trail, true);
    read.retain(|i| match i {
        Input::Digest(d) => wanted.contains(&d.key.as_str()),
        Input::Log(l) => wanted.iter().any(|w| l.name.ends_with(w)) && !l.name.ends_with(&logs[4]),
    });
    let filter = Filter { listings_of: Some(arrived), ..Filter::default() };
    let v = analyse(&read, Some(&keys(&trail)), &filter);
    // The earlier digest's own files are not judged (not missing), its signature is checked
    // through the new digest, and its own predecessor is not asked for.
    assert_eq!(
        verdicts(&v),
        vec![(ProblemKind::Altered, file(&logs[5])), (ProblemKind::Missing, file(&logs[4]))]
    );
    assert_eq!(v.summaries[0].signatures_valid, 2);
    assert_eq!(v.log_files.len(), 1);

    // Files known by name only, from a listing of the bucket: one the earlier digest lists
    // is not judged again; one nobody lists, in the hours the two digests cover, is unlisted.
    let planted = trail.log_file("2025-03-04T11:50:00Z", &[]);
    let mut named = read.clone();
    for key in [&logs[2], &planted] {
        named.push(Input::Log(named_log(format!("s3://{}/{key}", trail.bucket), key)));
    }
    let v = analyse(&named, Some(&keys(&trail)), &filter);
    assert_eq!(
        verdicts(&v),
        vec![
            (ProblemKind::Altered, file(&logs[5])),
            (ProblemKind::Missing, file(&logs[4])),
            (ProblemKind::Unlisted, file(&planted))
        ]
    );
    assert_eq!(v.log_files.len(), 2, "{:?}", v.log_files);

    // A forged predecessor is caught by the hash the arriving digest records.
    trail.tamper(&digests[1], &trail.content(&digests[1]).unwrap().replace("11:00:00Z", "11:00:01Z"));
    let mut read = inputs(&trail, true);
    read.retain(|i| matches!(i, Input::Digest(d) if wanted.contains(&d.key.as_str())));
    let v = analyse(&read, Some(&keys(&trail)), &filter);
    assert!(verdicts(&v).contains(&(ProblemKind::DigestAltered, file(&digests[1]))), "{:?}", verdicts(&v));
}

/// Three days of a trail, a digest an hour and two log files an hour.
fn three_days() -> (SignedTrail, Vec<String>, Vec<String>) {
    let mut trail = SignedTrail::new("111122223333", "eu-west-1");
    let (mut logs, mut digests) = (Vec::new(), Vec::new());
    for day in 1..=3 {
        for hour in 0..24 {
            let start = format!("2025-03-{day:02}T{hour:02}:00:00Z");
            for minute in ["20", "50"] {
                let at = format!("2025-03-{day:02}T{hour:02}:{minute}:00Z");
                logs.push(trail.log_file(&at, &[json!({"eventID": at, "eventSource": "kms.amazonaws.com"})]));
            }
            let end = granttrail_grants::timestamp::format(
                granttrail_grants::timestamp::parse(&start).unwrap() + 3600,
            );
            digests.push(trail.digest(&start, &end));
        }
    }
    (trail, logs, digests)
}

/// The walk, a day at a time, against judging everything at once: the same problems and
/// summaries, and no slice holding more than a day of log files.
fn walk_matches_whole(trail: &SignedTrail, filter: &Filter) -> Verification {
    let dir = tempfile::tempdir().unwrap();
    trail.write_to(dir.path()).unwrap();
    let root = format!("{}/", dir.path().display());
    let whole = {
        let read = read_paths(&[dir.path().to_path_buf()], 2, 1 << 30);
        assert!(read.errors.is_empty());
        analyse(&read.inputs, Some(&keys(trail)), filter)
    };
    let mut most = 0;
    let mut judged = 0;
    let walked = walk::walk(
        &walk::Directory { max_object_bytes: 1 << 30 },
        std::slice::from_ref(&root),
        &[],
        Some(&keys(trail)),
        filter,
        2,
        &mut |v| {
            most = most.max(v.log_files.len());
            judged += v.log_files.len();
            Ok(())
        },
    )
    .unwrap();
    assert!(walked.errors.is_empty(), "{:?}", walked.errors);
    assert_eq!(judged, whole.log_files.len(), "each file judged once");
    assert!(most <= 49, "a slice judged {most} files: more than a day (48, and one planted)");
    let v = walked.verification(true);
    assert_eq!(v.problems, whole.problems);
    assert_eq!(v.summaries, whole.summaries);
    v
}

#[test]
fn a_walk_day_by_day_finds_what_judging_everything_at_once_finds() {
    let (mut trail, logs, digests) = three_days();
    assert!(walk_matches_whole(&trail, &Filter::default()).problems.is_empty());
    // Across midnight: the 23:50 file of the 1st is listed by the digest in the 2nd's folder.
    trail.objects.remove(&logs[47]);
    trail.tamper(&logs[70], r#"{"Records":[]}"#);
    trail.objects.remove(&digests[30]);
    trail.tamper(
        &digests[50],
        &trail.content(&digests[50]).unwrap().replace(r#""logFiles":["#, r#""logFiles": ["#),
    );
    trail.tamper(&digests[71], &trail.content(&digests[71]).unwrap().replace("eu-west-1", "eu-west-2"));
    trail.log_file("2025-03-03T05:10:00Z", &[]);
    let mut planted = trail.log_file("2025-03-02T23:55:00Z", &[]);
    planted = file(&planted);
    let v = walk_matches_whole(&trail, &Filter::default());
    let kinds: Vec<ProblemKind> = v.problems.iter().map(|p| p.verdict).collect();
    assert!(kinds.contains(&ProblemKind::Missing) && kinds.contains(&ProblemKind::Altered), "{kinds:?}");
    for kind in [ProblemKind::DigestMissing, ProblemKind::DigestAltered, ProblemKind::DigestMoved] {
        assert!(kinds.contains(&kind), "{kind:?} in {kinds:?}");
    }
    assert!(v.problems.iter().any(|p| p.object.ends_with(&planted) && p.verdict == ProblemKind::Unlisted));
    // A day without digests: the break in the chain is still found.
    let mut gapped = trail.objects.clone();
    for d in &digests[24..48] {
        gapped.remove(d);
    }
    let saved = std::mem::replace(&mut trail.objects, gapped);
    let v = walk_matches_whole(&trail, &Filter::default());
    assert!(v.problems.iter().any(|p| p.verdict == ProblemKind::DigestMissing), "{:?}", verdicts(&v));
    trail.objects = saved;
    // A log file where CloudTrail writes none (a folder inside a day): judged, not left out.
    let stray = logs[10].replace("/2025/03/01/", "/2025/03/01/extra/");
    let content = trail.content(&logs[10]).unwrap();
    trail.tamper(&stray, &content);
    walk_matches_whole(&trail, &Filter::default());
    // A window, and another account and region filtered away, alike.
    let since = granttrail_grants::timestamp::parse("2025-03-02T06:00:00Z");
    walk_matches_whole(&trail, &Filter { since, ..Filter::default() });
    walk_matches_whole(&trail, &Filter { regions: vec!["us-east-1".into()], ..Filter::default() });
    let until = granttrail_grants::timestamp::parse("2025-03-02T18:00:00Z");
    walk_matches_whole(&trail, &Filter { since, until, ..Filter::default() });
    // Windows months after the trail (its month is pruned) or before its year (the year is):
    // nothing judged, as when judging everything at once.
    for (since, until) in [(Some("2025-06-01T00:00:00Z"), None), (None, Some("2024-06-01T00:00:00Z"))] {
        let filter = Filter {
            since: since.and_then(granttrail_grants::timestamp::parse),
            until: until.and_then(granttrail_grants::timestamp::parse),
            ..Filter::default()
        };
        let v = walk_matches_whole(&trail, &filter);
        assert!(v.problems.is_empty() && v.summaries.is_empty(), "{:?}", v.summaries);
    }
}

#[test]
fn a_walk_from_inside_the_layout_or_without_it_judges_the_same() {
    let (mut trail, logs, _) = three_hours();
    trail.tamper(&logs[2], r#"{"Records":[]}"#);
    let dir = tempfile::tempdir().unwrap();
    trail.write_to(dir.path()).unwrap();
    let judge = |root: String| {
        let walked = walk::walk(
            &walk::Directory { max_object_bytes: 1 << 30 },
            std::slice::from_ref(&root),
            &[],
            Some(&keys(&trail)),
            &Filter::default(),
            2,
            &mut |_| Ok(()),
        )
        .unwrap();
        let v = walked.verification(true);
        assert_eq!(verdicts(&v), vec![(ProblemKind::Altered, file(&logs[2]))], "{root}");
        assert_eq!(v.summaries[0].verified, 5, "{root}");
    };
    let account = dir.path().join("AWSLogs/111122223333");
    judge(account.display().to_string());
    // A copy deeper in a case folder than the walk looks for `AWSLogs/`: judged together, none
    // left out.
    let case = tempfile::tempdir().unwrap();
    let deep = case.path().join("a/b/c/d/e/f");
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::rename(dir.path().join("AWSLogs"), deep.join("AWSLogs")).unwrap();
    judge(case.path().display().to_string());
}

#[test]
fn a_digest_in_s3_without_its_signature_is_not_trusted() {
    let (trail, logs, digests) = three_hours();
    let mut read = inputs(&trail, true);
    for input in &mut read {
        if let Input::Digest(d) = input
            && d.key == digests[2]
        {
            d.metadata_signature = None;
        }
    }
    let v = analyse(&read, Some(&keys(&trail)), &Filter::default());
    assert_eq!(
        verdicts(&v),
        vec![
            (ProblemKind::Unlisted, file(&logs[4])),
            (ProblemKind::Unlisted, file(&logs[5])),
            (ProblemKind::DigestSignatureInvalid, file(&digests[2]))
        ]
    );
    // Without keys nothing is said of signatures, present or not.
    assert_eq!(verdicts(&analyse(&read, None, &Filter::default())), vec![]);
}

/// A digest planted after the newest one, naming it as previous with another hash or another
/// signature: read from S3 with the keys, the planted digest's own signature fails, so what it
/// records of the genuine digest counts for nothing; the genuine one and its files stay
/// verified, and only the planted digest is reported.
#[test]
fn a_planted_digest_that_fails_its_own_checks_does_not_discredit_the_one_it_names() {
    for field in ["previousDigestHashValue", "previousDigestSignature"] {
        let (mut trail, _, digests) = three_hours();
        let planted = trail.digest("2025-03-04T13:00:00Z", "2025-03-04T14:00:00Z");
        let body: serde_json::Value = serde_json::from_str(&trail.content(&planted).unwrap()).unwrap();
        let recorded = body[field].as_str().unwrap();
        let other = format!("{}{}", if recorded.starts_with('0') { "1" } else { "0" }, &recorded[1..]);
        set_digest_field(&mut trail, &planted, field, &other);
        let v = analyse(&inputs(&trail, true), Some(&keys(&trail)), &Filter::default());
        assert_eq!(verdicts(&v), vec![(ProblemKind::DigestSignatureInvalid, file(&planted))], "{field}");
        let s = &v.summaries[0];
        assert_eq!((s.verified, s.unlisted, s.digests, s.digests_trusted), (6, 0, 4, 3), "{field}");
        assert!(v.log_files.iter().all(|(_, verdict, _)| *verdict == LogVerdict::Verified), "{field}");
        assert!(!v.problems.iter().any(|p| p.object.ends_with(&file(&digests[2]))), "{field}");
    }
}

/// The other way round, offline where a digest's signature is known only from the next one: a
/// digest altered together with the next digest's record of its hash is still not vouched for
/// by that record, whose own digest no longer hashes as the one after it records.
#[test]
fn a_digest_altered_with_the_next_ones_record_of_it_is_still_caught() {
    use granttrail_cloudtrail::digest::{hex, sha256};
    let (mut trail, logs, digests) = three_hours();
    let altered = alter_digest(&mut trail, &digests[0]);
    set_digest_field(&mut trail, &digests[1], "previousDigestHashValue", &hex(&sha256(altered.as_bytes())));
    let v = analyse(&inputs(&trail, false), Some(&keys(&trail)), &Filter::default());
    let mut expected = unlisted(&logs[..4]);
    expected.push((ProblemKind::DigestAltered, file(&digests[1])));
    expected.push((ProblemKind::DigestSignatureInvalid, file(&digests[0])));
    assert_eq!(verdicts(&v), expected);
}

/// Offline, a digest altered to claim a later end than the digest after it, with that digest's
/// record of its hash altered to match, is still checked against the signature that record
/// carries: the order digests claim does not decide when a signature is checked.
#[test]
fn a_digest_moved_after_the_next_one_in_time_is_still_checked() {
    use granttrail_cloudtrail::digest::{hex, sha256};
    let (mut trail, _, digests) = three_hours();
    let mut body: serde_json::Value = serde_json::from_str(&trail.content(&digests[1]).unwrap()).unwrap();
    body["digestEndTime"] = json!("2025-03-04T14:00:00Z");
    body["previousDigestS3Object"] = serde_json::Value::Null;
    body["logFiles"] = json!([]);
    let altered = body.to_string();
    trail.tamper(&digests[1], &altered);
    set_digest_field(&mut trail, &digests[2], "previousDigestHashValue", &hex(&sha256(altered.as_bytes())));
    let v = analyse(&inputs(&trail, false), Some(&keys(&trail)), &Filter::default());
    assert!(
        verdicts(&v).contains(&(ProblemKind::DigestSignatureInvalid, file(&digests[1]))),
        "{:?}",
        verdicts(&v)
    );
}
