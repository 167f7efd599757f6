//! End to end, the safety rules that a hostile review of the accounts capability pinned: safety
//! stops that hold a change back are visible (plan exit code, apply JSON, the daemon's log, the
//! health report), an empty answer retires nothing, a garbled instance id never rebinds the
//! ledger. The real binary, the AWS SDK against the emulator (moto + strict IMDSv2 stub), real
//! shadow-utils, sudo and pwck in a private user database.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::disallowed_methods)] // tests sleep and start programs directly

mod common;

use std::io::Read as _;
use std::os::unix::net::UnixDatagram;

use std::time::{Duration, Instant};

use common::{Emulator, Host};
use serde_json::Value;

const SUDO: &str = "allowed_groups = [\"ops-sudo\"]\nsudo_group = \"ops-sudo\"\n";

fn setup(accounts: &str) -> (Emulator, Host) {
    let emu = Emulator::start();
    let host = Host::new();
    host.configure(&emu, accounts);
    (emu, host)
}

fn hold_codes(doc: &Value) -> Vec<String> {
    doc["holds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["code"].as_str().unwrap().to_string())
        .collect()
}

fn status_file(host: &Host) -> Value {
    serde_json::from_str(&std::fs::read_to_string(host.state.join("accounts-status.json")).unwrap())
        .unwrap()
}

#[test]
fn a_capped_retirement_is_pending_not_converged() {
    require_root!();
    let (emu, host) = setup(&format!(
        "{SUDO}[health]\ntimeout = \"1s\"\nservices = [\"ssm\"]\nrequired_services = [\"ssm\"]\n"
    ));
    for n in ["a1", "a2", "a3", "a4"] {
        emu.user(
            n,
            "/",
            &[("SSMSessionRunAs", n), ("ssm-companion:groups", "ops-sudo")],
        );
    }
    let doc = host.apply(0);
    assert_eq!(doc["converged"], true);
    assert_eq!(doc["holds"], serde_json::json!([]));
    assert_eq!(status_file(&host)["converged"], true);
    let check = host.doctor_check("accounts.sync");
    assert_eq!(check["status"], "ok", "{check:#}");

    // Half the principals vanish: more than max_retire_fraction (0.25) allows.
    emu.untag_user("a3", "SSMSessionRunAs");
    emu.untag_user("a4", "SSMSessionRunAs");
    let out = host.ssmc(&["accounts", "plan", "--detailed-exitcode"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a held change is pending:\n{text}"
    );
    assert!(text.contains("Held back by a safety stop"), "{text}");
    assert!(text.contains("retire-capped [a3, a4]"), "{text}");

    let doc = host.apply(1);
    assert_eq!(doc["converged"], false, "{doc:#}");
    assert_eq!(hold_codes(&doc), ["retire-capped"]);
    assert_eq!(doc["holds"][0]["users"], serde_json::json!(["a3", "a4"]));
    assert_eq!(
        host.groups("a3"),
        ["ops-sudo"],
        "nothing retired while held"
    );
    let status = status_file(&host);
    assert_eq!(status["converged"], false);
    assert_eq!(status["holds"][0]["code"], "retire-capped");
    let check = host.doctor_check("accounts.sync");
    assert_eq!(check["status"], "warning", "{check:#}");
    let detail = check["detail"].as_str().unwrap();
    assert!(
        detail.contains("held by retire-capped [a3, a4]: ")
            && detail.contains("--allow-mass-retire"),
        "{detail}"
    );

    // The operator's override starts both; then the host converges again.
    let doc = host.json(&["accounts", "apply", "--json", "--allow-mass-retire"], 0);
    assert_eq!(Host::steps(&doc, "retire-start"), ["a3", "a4"]);
    assert!(host.groups("a3").is_empty());
    assert_eq!(host.doctor_check("accounts.sync")["status"], "ok");
    host.assert_consistent(&["a1", "a2", "a3", "a4"]);
}

#[test]
fn an_empty_answer_keeps_the_last_account_and_its_sudo() {
    require_root!();
    let (emu, host) = setup(SUDO);
    emu.user(
        "solo",
        "/",
        &[
            ("SSMSessionRunAs", "solo"),
            ("ssm-companion:groups", "ops-sudo"),
        ],
    );
    emu.user("untagged", "/", &[("Team", "x")]);
    host.apply(0);
    assert!(host.sh_ok("sudo -l -U solo").contains("NOPASSWD: ALL"));

    // IAM answers, successfully, with no principal carrying SSMSessionRunAs at all.
    emu.untag_user("solo", "SSMSessionRunAs");
    let doc = host.apply(1);
    assert_eq!(doc["complete"], true);
    assert_eq!(hold_codes(&doc), ["empty-source"], "{doc:#}");
    assert_eq!(Host::skipped(&doc, "retire-capped"), ["solo"]);
    assert!(
        host.sh_ok("sudo -l -U solo").contains("NOPASSWD: ALL"),
        "one managed account is not retired on an empty answer"
    );
    let doc = host.json(&["accounts", "apply", "--json", "--allow-mass-retire"], 0);
    assert_eq!(Host::steps(&doc, "retire-start"), ["solo"]);
    assert!(!host.sh_ok("sudo -l -U solo || true").contains("NOPASSWD"));
    host.assert_consistent(&["solo"]);
}

#[test]
fn a_garbled_instance_id_never_rebinds_the_ledger() {
    require_root!();
    let (emu, host) =
        setup("retire_confirmations = 1\nretire_grace = \"0s\"\nmax_retire_fraction = 1.0\n");
    emu.user("alice", "/", &[("SSMSessionRunAs", "alice")]);
    emu.user("bob", "/", &[("SSMSessionRunAs", "bob")]);
    host.apply(0);
    emu.untag_user("alice", "SSMSessionRunAs");
    // IMDS answers HTTP 200 with an empty, then a nonsensical instance id.
    for garbled in ["", "<html>oops</html>", "i-0123"] {
        emu.imds_config(serde_json::json!({ "instance_id": garbled }));
        let doc = host.apply(1);
        assert_eq!(
            hold_codes(&doc),
            ["ledger-unverified"],
            "{garbled:?}: {doc:#}"
        );
        assert!(doc["ledger_set_aside"].is_null(), "{doc:#}");
        assert_eq!(Host::skipped(&doc, "retire-blocked"), ["alice"]);
        let list = host.json(&["accounts", "list", "--json"], 0);
        assert!(
            list["accounts"]
                .as_array()
                .unwrap()
                .iter()
                .all(|a| a["inherited_from"].is_null()),
            "{garbled:?}: nothing becomes inherited: {list:#}"
        );
    }
    // IMDS is well again: the same machine, so alice's departure proceeds normally.
    emu.imds_config(serde_json::json!({ "instance_id": "i-0123456789abcdef0" }));
    let doc = host.apply(0);
    assert_eq!(Host::steps(&doc, "retire-start"), ["alice"], "{doc:#}");
    let doc = host.apply(0);
    assert_eq!(Host::steps(&doc, "retire-finish"), ["alice"], "{doc:#}");
    let names: Vec<String> = std::fs::read_dir(&host.state)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.contains("foreign")),
        "no ledger was set aside: {names:?}"
    );
    host.assert_consistent(&["alice", "bob"]);
}

/// Reads sd_notify messages until one contains `needle`.
fn notified(sock: &UnixDatagram, needle: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            if msg.contains(needle) {
                return msg;
            }
            seen.push(msg);
        }
    }
    panic!("no notification containing {needle:?} within {timeout:?}: {seen:#?}");
}

#[test]
fn the_daemon_warns_about_a_hold_every_cycle_it_persists() {
    require_root!();
    let (emu, host) = setup("interval = \"2s\"\n[health]\nenabled = false\n");
    for n in ["b1", "b2", "b3", "b4"] {
        emu.user(n, "/", &[("SSMSessionRunAs", n)]);
    }
    host.apply(0);
    emu.untag_user("b1", "SSMSessionRunAs");
    emu.untag_user("b2", "SSMSessionRunAs");

    let notify = host.dir().join("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    let mut child = host.daemon(&notify, &[]);
    // Three syncs reported as held (STATUS= after each, told apart by their time), then stop.
    let mut syncs = std::collections::BTreeSet::new();
    while syncs.len() < 3 {
        let s = notified(&sock, "held (retire-capped)", Duration::from_secs(30));
        assert!(s.contains("accounts: 4 managed"), "{s}");
        let at = s
            .split("last sync ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("no sync time in {s}"));
        syncs.insert(at.to_string());
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    child.wait().unwrap();
    let warnings = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("held by retire-capped [b1, b2]"))
        .count();
    assert!(
        warnings >= 3,
        "a warning for every held cycle, got {warnings}:\n{log}"
    );
}

/// Live (not zombie) processes of `uid` on this machine.
fn live_processes(uid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let owned = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .is_some_and(|ids| ids.split_whitespace().any(|id| id == uid.to_string()));
            let zombie = status
                .lines()
                .find_map(|l| l.strip_prefix("State:"))
                .is_some_and(|s| s.trim_start().starts_with('Z'));
            owned && !zombie
        })
        .collect()
}

/// Kills whatever a test left running as `uid`, whatever happened to the test.
struct Reaper(u32);

impl Drop for Reaper {
    fn drop(&mut self) {
        for _ in 0..500 {
            let pids = live_processes(self.0);
            if pids.is_empty() {
                return;
            }
            for p in pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(i32::try_from(p).unwrap()),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[test]
fn retirement_ends_a_process_that_hops_to_a_new_pid() {
    require_root!();
    let (emu, host) = setup(
        "retire_confirmations = 1\nretire_grace = \"0s\"\nmax_retire_fraction = 1.0\nstop_timeout = \"1s\"\n",
    );
    emu.user("hopper", "/", &[("SSMSessionRunAs", "hopper")]);
    emu.user("stays", "/", &[("SSMSessionRunAs", "stays")]);
    host.apply(0);
    let uid = host.uid("hopper").unwrap();
    let _reaper = Reaper(uid);
    // A process that ignores SIGTERM, starts its successor at once and lets itself die a
    // moment later: at any instant the newest one has already forked the next.
    host.sh_ok(&format!(
        r#"cat > /home/hopper/hop.sh <<'SH'
#!/bin/bash
trap '' TERM HUP
"$0" &
sleep 0.05
SH
chmod 0755 /home/hopper/hop.sh
setpriv --reuid={uid} --regid={uid} --clear-groups -- setsid -f /home/hopper/hop.sh </dev/null >/dev/null 2>&1"#
    ));
    let t = Instant::now();
    while live_processes(uid).is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the hopper never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    emu.untag_user("hopper", "SSMSessionRunAs");
    let doc = host.apply(0);
    assert_eq!(Host::steps(&doc, "retire-start"), ["hopper"]);
    let doc = host.apply(0);
    assert_eq!(Host::steps(&doc, "retire-finish"), ["hopper"], "{doc:#}");
    assert!(host.getent("hopper").is_none());
    // Nothing of that UID runs on after the account is gone.
    let left = live_processes(uid);
    assert!(
        left.is_empty(),
        "uid {uid} still runs {left:?} after retire-finish"
    );
    host.assert_consistent(&["hopper", "stays"]);
}

fn rejections(doc: &Value) -> Vec<(String, String, String)> {
    doc["rejections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["value"].as_str().unwrap().to_string(),
                r["reason"].as_str().unwrap().to_string(),
                r["detail"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn names_a_package_would_adopt_are_never_created() {
    require_root!();
    let (emu, host) = setup("reserved_names = [\"svc-*\"]\n");
    // This host has no Docker and no PostgreSQL; a package that arrives later brings them.
    host.sh_ok(
        "if getent group docker >/dev/null; then groupdel docker; fi; if getent passwd redis >/dev/null; then userdel redis; fi; if getent group redis >/dev/null; then groupdel redis; fi",
    );
    host.sh_ok(
        "mkdir -p /etc/sysusers.d && printf 'u myapp - \"My App\"\\n' > /etc/sysusers.d/myapp.conf",
    );
    for (principal, value) in [
        ("dev1", "docker"),
        ("dev2", "redis"),
        ("dev3", "systemd-coredump"),
        ("dev4", "_myservice"),
        ("dev5", "myapp"),
        ("dev6", "svc-deploy"),
        ("dev7", "alice"),
    ] {
        emu.user(principal, "/", &[("SSMSessionRunAs", value)]);
    }
    let doc = host.apply(0);
    assert_eq!(Host::steps(&doc, "create"), ["alice"], "{doc:#}");
    let refused = rejections(&doc);
    let reason = |v: &str| {
        refused
            .iter()
            .find(|r| r.0 == v)
            .unwrap_or_else(|| panic!("{v} not rejected: {refused:?}"))
            .clone()
    };
    for v in [
        "docker",
        "redis",
        "systemd-coredump",
        "_myservice",
        "myapp",
        "svc-deploy",
    ] {
        assert_eq!(reason(v).1, "reserved-name", "{v}");
    }
    assert!(reason("myapp").2.contains("/etc/sysusers.d/myapp.conf"));
    assert!(reason("docker").2.contains("adopt"));
    // The package's maintainer script now makes its own group, and nobody is in it.
    host.sh_ok("getent group docker >/dev/null || groupadd --system docker");
    assert!(
        host.sh_ok("getent group docker").trim_end().ends_with(':'),
        "no member"
    );
    host.assert_consistent(&["alice"]);
}

#[test]
fn a_primary_group_moved_to_the_sudo_group_is_repaired_and_gone_at_retirement() {
    require_root!();
    let (emu, host) = setup(&format!(
        "{SUDO}retire_confirmations = 1\nretire_grace = \"0s\"\nmax_retire_fraction = 1.0\n"
    ));
    for n in ["alice", "bob", "carol"] {
        emu.user(n, "/", &[("SSMSessionRunAs", n)]);
    }
    host.apply(0);
    // No one has sudo; then an admin makes the sudo group alice's and bob's primary group.
    host.sh_ok("usermod -g ops-sudo alice && usermod -g ops-sudo bob");
    assert!(host.sh_ok("sudo -l -U bob").contains("NOPASSWD: ALL"));
    // Bob leaves: at retire-start his primary group goes back, so sudo is gone at once.
    emu.untag_user("bob", "SSMSessionRunAs");
    let doc = host.apply(0);
    assert_eq!(Host::steps(&doc, "retire-start"), ["bob"], "{doc:#}");
    assert!(
        !host.sh_ok("sudo -l -U bob || true").contains("NOPASSWD"),
        "no path to sudo is left"
    );
    // Alice stays: her primary group was repaired as drift in the same sync.
    assert_eq!(Host::steps(&doc, "repair"), ["alice"]);
    assert!(!host.sh_ok("sudo -l -U alice || true").contains("NOPASSWD"));
    assert_eq!(
        host.sh_ok("id -g alice").trim(),
        host.uid("alice").unwrap().to_string()
    );
    // Carol's own group deleted outright (after moving her to the sudo group): made again.
    host.sh_ok("usermod -g ops-sudo carol && groupdel carol");
    let doc = host.apply(0);
    assert_eq!(Host::steps(&doc, "repair"), ["carol"], "{doc:#}");
    let uid = host.uid("carol").unwrap();
    assert_eq!(
        host.sh_ok("getent group carol").split(':').nth(2),
        Some(uid.to_string().as_str())
    );
    assert_eq!(host.sh_ok("id -g carol").trim(), uid.to_string());
    host.assert_consistent(&["alice", "bob", "carol"]);
}

#[test]
fn a_shared_primary_group_keeps_pwck_and_grpck_clean() {
    require_root!();
    let (emu, host) = setup(
        "primary_group = \"ssm-users\"\nretire_confirmations = 1\nretire_grace = \"0s\"\nmax_retire_fraction = 1.0\n",
    );
    for n in ["alice", "bob"] {
        emu.user(n, "/", &[("SSMSessionRunAs", n)]);
    }
    let doc = host.apply(0);
    assert_eq!(Host::steps(&doc, "create-group"), ["ssm-users"], "{doc:#}");
    let gid = host
        .sh_ok("getent group ssm-users")
        .split(':')
        .nth(2)
        .unwrap()
        .to_string();
    assert_eq!(host.getent("alice").unwrap()[3], gid, "primary group");
    assert!(
        host.sh("getent group alice").stdout.is_empty(),
        "no user private group"
    );
    host.assert_consistent(&["alice", "bob"]);
    // Retiring removes the user, never the shared group.
    emu.untag_user("alice", "SSMSessionRunAs");
    host.apply(0);
    host.apply(0);
    assert!(host.getent("alice").is_none());
    assert!(
        host.sh_ok("getent group ssm-users")
            .starts_with("ssm-users:")
    );
    host.assert_consistent(&["alice", "bob"]);
}

/// Makes `/home` immutable inside the host's private database for as long as it lives.
struct ImmutableHome<'a>(&'a Host);

impl Drop for ImmutableHome<'_> {
    fn drop(&mut self) {
        let _ = self.0.sh("chattr -i /home");
    }
}

#[test]
fn a_home_that_useradd_could_not_make_or_an_admin_removed_is_made_again() {
    require_root!();
    let (emu, host) = setup("");
    emu.user("alice", "/", &[("SSMSessionRunAs", "alice")]);
    emu.user("bob", "/", &[("SSMSessionRunAs", "bob")]);
    // useradd cannot make alice's home (exit 12): the account exists without it.
    {
        let _guard = ImmutableHome(&host);
        host.sh_ok("chattr +i /home");
        let doc = host.apply(1);
        assert!(doc["steps"].to_string().contains("failed"), "{doc:#}");
    }
    assert!(host.getent("alice").is_some());
    assert!(!host.sh("test -d /home/alice").status.success());
    // The next sync records the create and makes the home from the skeleton.
    let doc = host.apply(0);
    assert_eq!(Host::steps(&doc, "resume"), ["alice", "bob"], "{doc:#}");
    assert_eq!(Host::steps(&doc, "repair"), ["alice", "bob"], "{doc:#}");
    let uid = host.uid("alice").unwrap();
    assert_eq!(host.sh_ok("stat -c %u /home/alice").trim(), uid.to_string());
    assert!(host.sh_ok("ls -A /home/alice").contains(".bashrc"));
    // An admin removes bob's home: made again.
    host.sh_ok("rm -rf /home/bob");
    let doc = host.apply(0);
    assert_eq!(Host::steps(&doc, "repair"), ["bob"], "{doc:#}");
    assert!(host.sh_ok("ls -A /home/bob").contains(".bashrc"));
    // Someone else's directory in its place: reported and held, never touched.
    host.sh_ok("rm -rf /home/bob && mkdir /home/bob && chown 1234:1234 /home/bob && touch /home/bob/.bashrc");
    let doc = host.apply(1);
    assert_eq!(hold_codes(&doc), ["home-foreign"], "{doc:#}");
    assert_eq!(doc["holds"][0]["users"], serde_json::json!(["bob"]));
    assert!(
        doc["notices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["code"] == "home-foreign"
                && n["message"].as_str().unwrap().contains("owned by uid 1234")),
        "{doc:#}"
    );
    assert_eq!(host.sh_ok("stat -c %u /home/bob").trim(), "1234");
    host.assert_consistent(&["alice"]);
}
