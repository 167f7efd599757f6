//! Every kind of audit event validates against the pinned OCSF version, with pydantic-ocsf in the
//! test venv (tests/support/ocsf_validate.py: strict, unknown attributes are errors) — and the
//! validator is shown to refuse what is not OCSF.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)] // a test: it runs the validator and fails loudly

mod common;

use std::process::Command;

use ssm_companion::audit::{examples, ocsf};

fn validate(lines: &[String]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    Command::new(common::python())
        .arg(common::repo().join("tests/support/ocsf_validate.py"))
        .arg(ocsf::VERSION)
        .arg(&file)
        .output()
        .unwrap()
}

#[test]
fn every_event_kind_is_valid_ocsf() {
    let events = examples();
    let lines: Vec<String> = events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect();
    let out = validate(&lines);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        events.len()
    );
    let kinds: std::collections::BTreeSet<u64> = events.iter().map(|e| e.type_uid).collect();
    for want in [300_201, 300_202, 300_207, 100_701, 100_899] {
        assert!(kinds.contains(&want), "no example of type {want}");
    }
}

#[test]
fn the_validator_refuses_what_is_not_ocsf() {
    // A session start (Authentication: Logon), whose class requires `user`.
    let start = examples()
        .into_iter()
        .find(|e| e.type_uid == 300_201)
        .unwrap();
    let good = serde_json::to_value(&start).unwrap();
    let spoil = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = good.clone();
        f(&mut v);
        v.to_string()
    };
    for (what, bad) in [
        ("an unknown attribute", spoil(&|v| v["bogus"] = 1.into())),
        (
            "an unknown nested attribute",
            spoil(&|v| v["session"]["bogus"] = 1.into()),
        ),
        (
            "a string activity_id",
            spoil(&|v| v["activity_id"] = "1".into()),
        ),
        (
            "a wrong type_uid",
            spoil(&|v| v["type_uid"] = 300_299.into()),
        ),
        (
            "a device type OCSF lacks",
            spoil(&|v| v["device"]["type_id"] = 42.into()),
        ),
        (
            "another schema version",
            spoil(&|v| v["metadata"]["version"] = "1.0.0".into()),
        ),
        (
            "no user",
            spoil(&|v| {
                v.as_object_mut().unwrap().remove("user");
            }),
        ),
    ] {
        let out = validate(&[bad]);
        assert!(!out.status.success(), "{what} passed the validator");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("INVALID line 1"),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
