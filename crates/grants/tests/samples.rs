//! The public example records in ../shared/samples: every CloudTrail record or log file reads
//! without error, and each KMS grant sample yields the expected normalised fields.
//!
//! shared/ sits beside the repository in development and CI but not in a user's clone; these
//! tests then skip with a message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::path::PathBuf;

use granttrail_cloudtrail::{Limits, for_each_record, may_be_relevant};
use granttrail_grants::{KmsEvent, normalise};

fn samples() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/samples");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipped: {} is absent (shared/ is not part of a user's clone)", dir.display());
        None
    }
}

/// Files that hold CloudTrail records (the rest are notification envelopes, digests, etc.).
fn is_record_file(name: &str) -> bool {
    name.starts_with("kms-")
        || name.starts_with("cloudtrail-logfile-")
        || name.starts_with("cloudtrail-record-")
        || name.starts_with("useridentity-")
}

fn kms_events(name: &str) -> Vec<KmsEvent> {
    let dir = samples().unwrap();
    let bytes = std::fs::read(dir.join(name)).unwrap();
    let mut events = Vec::new();
    for_each_record(bytes.as_slice(), &Limits::default(), |record| {
        if may_be_relevant(record)
            && let Some(e) = normalise(record).unwrap_or_else(|e| panic!("{name}: {e}"))
        {
            events.push(e);
        }
        Ok::<(), Infallible>(())
    })
    .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    events
}

#[test]
fn every_record_sample_reads_without_error() {
    let Some(dir) = samples() else { return };
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if !name.ends_with(".json") || !is_record_file(&name) {
            continue;
        }
        let events = kms_events(&name);
        if name.starts_with("kms-") {
            assert!(!events.is_empty(), "{name}: no KMS event found");
            for e in &events {
                assert!(
                    e.key_arn.is_some() || e.event_name == "Decrypt",
                    "{name}: {} without a key",
                    e.event_name
                );
            }
        }
        checked += 1;
    }
    assert!(checked >= 45, "only {checked} sample files checked");
}

struct Expect {
    file: &'static str,
    grant_id: Option<&'static str>,
    key_arn: &'static str,
    grantee: Option<&'static str>,
    operations: Option<&'static [&'static str]>,
    caller: &'static str,
}

#[test]
fn grant_samples_normalise_to_the_expected_fields() {
    if samples().is_none() {
        return;
    }
    let k_usw2 = "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let cases = [
        Expect {
            file: "kms-creategrant-awsdocs.json",
            grant_id: Some("f020fe75197b93991dc8491d6f19dd3cebb24ee62277a05914386724f3d48758"),
            key_arn: k_usw2,
            grantee: Some("EX_PRINCIPAL_ID"),
            operations: Some(&["Encrypt", "RetireGrant"]),
            caller: "arn:aws:iam::111122223333:user/Alice",
        },
        Expect {
            file: "kms-creategrant-assumedrole-invokedby-dynamodb-awsdocs.json",
            grant_id: Some("5c5cd4a3d68e65e77795f5ccc2516dff057308172b0cd107c85b5215c6e48bde"),
            key_arn: k_usw2,
            grantee: Some("dynamodb.us-west-2.amazonaws.com"),
            operations: Some(&[
                "DescribeKey",
                "GenerateDataKey",
                "Decrypt",
                "Encrypt",
                "ReEncryptFrom",
                "ReEncryptTo",
                "RetireGrant",
            ]),
            caller: "arn:aws:sts::111122223333:assumed-role/Admin/user01",
        },
        Expect {
            file: "kms-creategrant-granteeprincipal-awsinternal-forecast-awsdocs.json",
            grant_id: Some("0ab0ac0d0b000f00ea00cc0a0e00fc00bce000c000f0000000c0bc0a0000aaafSAMPLE"),
            key_arn: "arn:aws:kms:region:111122223333:key/1234abcd-12ab-34cd-56ef-123456SAMPLE",
            grantee: Some("AWS Internal"),
            operations: Some(&["Decrypt", "GenerateDataKey"]),
            caller: "arn:aws:sts::111122223333:assumed-role/Admin/Sampleuser01",
        },
        Expect {
            file: "kms-creategrant-dryrun-failure-awsservice-fargate-awsdocs.json",
            grant_id: None,
            key_arn: "arn:aws:kms:us-west-2:account-id:key/a1b2c3d4-5678-90ab-cdef-EXAMPLE11111",
            grantee: Some("fargate.us-west-2.amazonaws.com"),
            operations: Some(&["Decrypt"]),
            caller: "fargate.amazonaws.com",
        },
        Expect {
            file: "kms-retiregrant-awsdocs.json",
            grant_id: Some("abcde1237f76e4ba7987489ac329fbfba6ad343d6f7075dbd1ef191f0120514a"),
            key_arn: k_usw2,
            grantee: None,
            operations: None,
            caller: "arn:aws:iam::111122223333:user/Alice",
        },
        Expect {
            file: "kms-retiregrant-awsservice-datazone-awsdocs.json",
            grant_id: Some("0ab0ac0d0b000f00ea00cc0a0e00fc00bce000c000f0000000c0bc0a0000aaafSAMPLE"),
            key_arn: "arn:aws:kms:us-east-2:111122223333:key/1234abcd-12ab-34cd-56ef-123456SAMPLE",
            grantee: None,
            operations: None,
            caller: "datazone.amazonaws.com",
        },
        Expect {
            file: "kms-revokegrant-awsdocs.json",
            grant_id: Some("abcde1237f76e4ba7987489ac329fbfba6ad343d6f7075dbd1ef191f0120514a"),
            key_arn: k_usw2,
            grantee: None,
            operations: None,
            caller: "arn:aws:iam::111122223333:user/Alice",
        },
    ];
    for case in cases {
        let events = kms_events(case.file);
        assert_eq!(events.len(), 1, "{}", case.file);
        let e = &events[0];
        assert_eq!(e.grant_id.as_deref(), case.grant_id, "{}: grant id", case.file);
        assert_eq!(e.key_arn.as_deref(), Some(case.key_arn), "{}: key", case.file);
        let spec = e.grant_spec.clone().unwrap_or_default();
        assert_eq!(spec.grantee_principal.as_deref(), case.grantee, "{}: grantee", case.file);
        let ops: Option<Vec<&str>> = spec.operations.as_ref().map(|o| o.iter().map(String::as_str).collect());
        assert_eq!(ops.as_deref(), case.operations, "{}: operations", case.file);
        assert_eq!(e.caller.principal(), Some(case.caller), "{}: caller", case.file);
    }
}

#[test]
fn ec2_volume_log_file_shows_the_grant_and_its_use() {
    if samples().is_none() {
        return;
    }
    let events = kms_events("kms-logfile-ec2-volume-grant-awsdocs-2021.json");
    let names: Vec<&str> = events.iter().map(|e| e.event_name.as_str()).collect();
    assert_eq!(names, vec!["CreateGrant", "GenerateDataKeyWithoutPlaintext", "Decrypt"]);
    let create = &events[0];
    let key = "arn:aws:kms:us-east-1:123456789012:key/e29ddfd4-1bf6-4e1b-8ecb-08216bd70d07";
    assert_eq!(create.key_arn.as_deref(), Some(key));
    assert_eq!(events[1].request_key_id.as_deref(), Some("alias/aws/ebs"));
    assert_eq!(events[1].key_arn.as_deref(), Some(key), "the key comes from resources, not the alias");
    assert_eq!(create.caller.invoked_by.as_deref(), Some("AWS Internal"));
    let spec = create.grant_spec.as_ref().unwrap();
    assert_eq!(spec.operations, None, "the 2014 record has no operations: unknown, not empty");
    assert!(granttrail_grants::grantee_is(spec.grantee_principal.as_deref().unwrap(), &events[2].caller));
}
