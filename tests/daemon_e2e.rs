//! The daemon (`run`) end to end: sd_notify READY/STATUS/WATCHDOG/STOPPING over a real
//! notification socket, periodic syncs, SIGHUP reload (a bad config is refused and the old one
//! kept), SIGTERM; and account changes as real journald entries with a fixed MESSAGE_ID.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::disallowed_methods)] // tests start programs directly

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Emulator, Host, bin, wait_for};

/// Runs a script in the mount namespace of `pid`.
fn sh_in(pid: u32, script: &str) -> String {
    let out = Command::new("nsenter")
        .args([
            "-t",
            &pid.to_string(),
            "-m",
            "--",
            "/bin/bash",
            "-c",
            script,
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn run_notifies_systemd_syncs_reloads_and_stops() {
    require_root!();
    let emu = Emulator::start();
    let host = Host::new();
    let base = "interval = \"2s\"\n";
    host.configure(&emu, base);
    emu.user("alice", "/", &[("SSMSessionRunAs", "alice")]);

    let notify_path = host.dir().join("notify.sock");
    let sock = UnixDatagram::bind(&notify_path).unwrap();
    let mut child = host.daemon(&notify_path, &[("WATCHDOG_USEC", "1000000")]);
    let pid = child.id();
    let mut seen = Vec::new();

    let ready = wait_for(&sock, "READY=1", Duration::from_secs(20), &mut seen);
    assert!(ready.contains("STATUS=running"), "{ready}");
    wait_for(
        &sock,
        "accounts: 1 managed",
        Duration::from_secs(30),
        &mut seen,
    );
    assert!(sh_in(pid, "getent passwd alice").starts_with("alice:"));
    wait_for(&sock, "WATCHDOG=1", Duration::from_secs(5), &mut seen);

    // A bad configuration is refused; the daemon keeps running on the old one.
    std::fs::write(&host.config, "[accounts]\ninterval = \"soon\"\n").unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    wait_for(&sock, "RELOADING=1", Duration::from_secs(5), &mut seen);
    let refused = wait_for(&sock, "READY=1", Duration::from_secs(5), &mut seen);
    assert!(refused.contains("reload refused"), "{refused}");
    assert!(
        child.try_wait().unwrap().is_none(),
        "the daemon survived a bad reload"
    );

    // A good one is taken, and a sync runs with it.
    host.configure(&emu, &format!("{base}extra = [\"bob\"]\n"));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    let reloaded = wait_for(&sock, "STATUS=reloaded", Duration::from_secs(5), &mut seen);
    assert!(reloaded.contains("READY=1"), "{reloaded}");
    wait_for(
        &sock,
        "accounts: 2 managed",
        Duration::from_secs(30),
        &mut seen,
    );
    assert!(sh_in(pid, "getent passwd bob").starts_with("bob:"));

    // SIGTERM: STOPPING=1 and a clean exit.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    wait_for(&sock, "STOPPING=1", Duration::from_secs(10), &mut seen);
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the daemon did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("reload refused, keeping the previous configuration"),
        "{stderr}"
    );
    assert!(
        stderr.contains("`soon` is not a duration"),
        "the log names the problem: {stderr}"
    );
    assert!(
        stderr.contains("account create alice"),
        "changes are logged: {stderr}"
    );
    // Under systemd (JOURNAL_STREAM), no timestamps: journald adds its own.
    for line in stderr.lines() {
        assert!(
            !line.starts_with("20"),
            "a timestamp in a journald-bound line: {line}"
        );
    }
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with(" INFO ") || l.starts_with("INFO ")),
        "{stderr}"
    );
}

#[test]
fn account_changes_are_journal_entries_with_a_fixed_message_id() {
    require_root!();
    let emu = Emulator::start();
    let host = Host::new();
    host.configure(&emu, "");
    emu.user("alice", "/", &[("SSMSessionRunAs", "alice")]);
    // A private journald in the private /run (test-harness.md §5.2), then apply, then read the
    // journal with journalctl.
    let script = format!(
        r#"set -e
mkdir -p /run/systemd/journal /run/log/journal
/lib/systemd/systemd-journald >/dev/null 2>&1 &
for i in $(seq 100); do [ -S /run/systemd/journal/socket ] && break; sleep 0.05; done
SSM_COMPANION_VENDOR_CONFIG_DIR={vendor} {bin} --config {cfg} accounts apply --json >/dev/null
# journald takes the entry over its socket and writes it a moment later: wait for it.
for i in $(seq 200); do
    journalctl --no-pager -o json MESSAGE_ID={id} SSM_COMPANION_ACTION=create | grep -q . && break
    sleep 0.05
done
journalctl --no-pager -o json MESSAGE_ID={id}
kill %1"#,
        vendor = host.dir().join("vendor").display(),
        bin = bin().display(),
        cfg = host.config.display(),
        id = ssm_companion::events::ACCOUNT_CHANGE,
    );
    let out = host.sh_ok(&script);
    let entries: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let create = entries
        .iter()
        .find(|e| e["SSM_COMPANION_ACTION"] == "create")
        .unwrap_or_else(|| panic!("no create entry in {out}"));
    assert_eq!(create["SSM_COMPANION_USER"], "alice");
    assert_eq!(create["SYSLOG_IDENTIFIER"], "ssm-companion");
    assert_eq!(create["SSM_COMPANION_OUTCOME"], "done");
    assert_eq!(
        create["PRIORITY"], "5",
        "notice: tracing-journald maps INFO to 5"
    );
    assert!(
        create["SSM_COMPANION_PRINCIPALS"]
            .as_str()
            .unwrap()
            .ends_with(":user/alice")
    );
    assert!(
        create["MESSAGE"]
            .as_str()
            .unwrap()
            .starts_with("account create alice")
    );
    assert!(
        create["SSM_COMPANION_UID"]
            .as_str()
            .unwrap()
            .parse::<u32>()
            .is_ok()
    );
}
