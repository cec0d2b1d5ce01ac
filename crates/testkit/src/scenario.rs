//! What a classification scenario (fixtures/scenarios/*/expected.json) expects, checked
//! against labels and grants in the JSON of `calls --format json` and `grants --format json`:
//! the same check for the binary and for the domain alone.

use serde_json::Value;

/// Checks `calls` and `grants` (JSON objects as the CLI prints them) against scenario `name`'s
/// `expected`: each expected call side has the fields given (flags: at least those), no absent
/// event is labelled, each expected grant has the fields given.
pub fn check_expected(name: &str, expected: &Value, calls: &[Value], grants: &[Value]) {
    for want in expected["calls"].as_array().unwrap() {
        let got = calls
            .iter()
            .find(|c| c["event_id"] == want["event_id"] && c["side"] == want["side"])
            .unwrap_or_else(|| {
                panic!("{name}: no labelled call {} ({}); calls: {calls:#?}", want["event_id"], want["side"])
            });
        for (field, value) in want.as_object().unwrap() {
            assert!(got.get(field).is_some(), "{name}: no field {field} to compare in {got:#}");
            if field == "flags" {
                for flag in value.as_array().unwrap() {
                    assert!(
                        got["flags"].as_array().unwrap().contains(flag),
                        "{name}: flag {flag} missing in {got:#}"
                    );
                }
            } else {
                assert_eq!(
                    &got[field], value,
                    "{name}: {field} of {} {}: {got:#}",
                    got["event_name"], got["event_id"]
                );
            }
        }
    }
    for absent in expected["absent"].as_array().unwrap() {
        assert!(
            !calls.iter().any(|c| &c["event_id"] == absent),
            "{name}: {absent} must not be a labelled call"
        );
    }
    for want in expected["grants"].as_array().unwrap() {
        let got = grants
            .iter()
            .find(|g| g["grant_id"] == want["grant_id"])
            .unwrap_or_else(|| panic!("{name}: no grant {}", want["grant_id"]));
        for (field, value) in want.as_object().unwrap() {
            assert!(got.get(field).is_some(), "{name}: no grant field {field} to compare");
            assert_eq!(&got[field], value, "{name}: {field} of grant {}", got["grant_id"]);
        }
    }
}
