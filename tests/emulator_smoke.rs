//! The emulator's own smoke test (`tests/emulator/smoke.py`): every moto extension, fault
//! injection and the strict IMDSv2 behaviour, checked with boto3 — so a moto upgrade that breaks
//! the internals the emulator relies on fails here, not in a confusing place.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

#[test]
fn emulator_smoke_test_passes() {
    let out = std::process::Command::new(common::python())
        .arg(common::repo().join("tests/emulator/smoke.py"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "smoke.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(" 0 failed"), "{stdout}");
}
