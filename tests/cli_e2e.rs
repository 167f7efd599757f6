//! The binary as a shell pipeline sees it: output into a pipe whose reader has gone away
//! (`ssm-companion … | head -1`, `| grep -q`) ends the command quietly, without a panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::disallowed_methods)] // tests start programs directly

mod common;

use std::process::{Command, Stdio};

/// Runs the binary with stdout on a pipe whose read end is already closed, so its first write
/// fails with EPIPE; returns (exit status, stderr).
fn into_closed_pipe(args: &[&str]) -> (Option<i32>, String) {
    let (reader, writer) = nix::unistd::pipe().unwrap();
    drop(reader);
    let out = Command::new(common::bin())
        .args(args)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .env("SSM_COMPANION_VENDOR_CONFIG_DIR", "/nonexistent")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn output_into_a_closed_pipe_exits_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[accounts]\nallowed_groups = [\"ops\"]\nsudo_group = \"ops\"\n[paths]\nstate_dir = \"{}\"\n",
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    for args in [
        vec!["version"],
        vec!["version", "--json"],
        vec!["--config", config, "config", "check"],
        vec!["--config", config, "config", "check", "--json"],
        vec!["--config", config, "iam-policy"],
        vec!["--config", config, "iam-policy", "--json"],
        vec!["--config", config, "accounts", "list", "--json"],
    ] {
        let (code, stderr) = into_closed_pipe(&args);
        assert_eq!(
            code,
            Some(141),
            "ssm-companion {args:?}: exit status {code:?}, stderr: {stderr}"
        );
        assert!(
            stderr.is_empty(),
            "ssm-companion {args:?} printed on stderr: {stderr}"
        );
    }
}

#[test]
fn help_into_a_closed_pipe_does_not_panic() {
    let (code, stderr) = into_closed_pipe(&["--help"]);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_ne!(code, Some(101), "a panic exits 101: {stderr}");
}

#[test]
fn a_uid_range_that_useradd_cannot_follow_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let subuid = dir.path().join("subuid");
    std::fs::write(&subuid, "alice:100000:65536\n").unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[accounts]\nuid_range = [100000, 199999]\n[paths]\nlogin_defs = \"/nonexistent\"\nsubuid = \"{}\"\nsubgid = \"/nonexistent\"\nstate_dir = \"{}\"\n",
            subuid.display(),
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    for args in [
        vec!["config", "check"],
        vec!["accounts", "plan"],
        vec!["accounts", "apply"],
    ] {
        let out = Command::new(common::bin())
            .arg("--config")
            .arg(&config)
            .args(&args)
            .env("SSM_COMPANION_VENDOR_CONFIG_DIR", "/nonexistent")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{args:?}: {stderr}");
        assert!(
            stderr.contains("accounts.uid_range")
                && stderr.contains("subordinate UIDs 100000..165535 of `alice`"),
            "{args:?}: {stderr}"
        );
    }
}
