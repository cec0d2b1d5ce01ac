//! The Lambda evaluates findings only on the keys a batch relabelled: on every fixture
//! scenario, the findings on each key alone are exactly that key's share of all findings.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use granttrail_grants::findings::RulesConfig;
use granttrail_ingest::{Limits, Outcome, ingest_object};
use granttrail_store::Store;
use granttrail_testkit::files_under;

#[test]
fn findings_on_some_keys_are_those_keys_share_of_all_findings() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir(fixtures.join("scenarios")).unwrap().map(|e| e.unwrap().path()).collect();
    dirs.push(fixtures.join("example"));
    dirs.sort();
    let rules = RulesConfig::default();
    let mut checked = 0;
    for dir in dirs.iter().filter(|d| d.is_dir()) {
        let mut store = Store::open_in_memory().unwrap();
        for file in files_under(dir).iter().filter(|f| f.to_string_lossy().contains(".json")) {
            if file.file_name().is_some_and(|n| n == "expected.json" || n == "findings.json") {
                continue;
            }
            let bytes = std::fs::read(file).unwrap();
            match ingest_object(&mut store, &file.to_string_lossy(), bytes.as_slice(), &Limits::default(), 0)
                .unwrap()
            {
                Outcome::Ingested { .. } | Outcome::AlreadyIngested | Outcome::Rejected(_) => {}
            }
        }
        let relabelled = store.refresh_labels().unwrap();
        let all = store.findings(&rules, 1_800_000_000, Some(1_800_000_000)).unwrap();
        let mut keys: Vec<String> = all.iter().map(|f| f.key_arn.clone()).collect();
        keys.sort();
        keys.dedup();
        for key in &keys {
            assert!(relabelled.keys.contains(key), "{}: a key with findings was relabelled", dir.display());
            let alone = store
                .findings_on_keys(&rules, 1_800_000_000, Some(1_800_000_000), std::slice::from_ref(key))
                .unwrap();
            let share: Vec<_> = all.iter().filter(|f| &f.key_arn == key).cloned().collect();
            assert_eq!(alone, share, "{}: {key}", dir.display());
            checked += alone.len();
        }
        assert_eq!(
            store.findings_on_keys(&rules, 1_800_000_000, Some(1_800_000_000), &relabelled.keys).unwrap(),
            all
        );
    }
    assert!(checked >= 15, "only {checked} findings compared");
}
