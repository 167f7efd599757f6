//! kill -9 between any two steps of a sync: the real binary kills itself with SIGKILL at a named
//! point (`--features failpoints`), and the next run must converge to the same end state with a
//! consistent user database.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::disallowed_methods)] // tests sleep and start programs directly

mod common;

use std::os::unix::process::ExitStatusExt;

use common::{Emulator, Host};

const CONFIG: &str = "allowed_groups = [\"ops-sudo\"]\nsudo_group = \"ops-sudo\"\nretire_confirmations = 1\nretire_grace = \"0s\"\nmax_retire_fraction = 1.0\n";

/// Runs `apply` with a failpoint and asserts it died of SIGKILL.
fn crash_at(host: &Host, point: &str) {
    let out = host.ssmc_env(
        &["accounts", "apply", "--json"],
        &[("SSM_COMPANION_FAILPOINT", point)],
    );
    assert_eq!(
        out.status.signal(),
        Some(9),
        "{point}: expected a SIGKILL, got {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn converges(host: &Host) {
    let doc = host.apply(0);
    assert_eq!(doc["converged"], true, "{doc:#}");
    let out = host.ssmc(&["accounts", "plan", "--detailed-exitcode"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_crash_at_any_create_step_converges() {
    require_root!();
    for point in [
        "create-group:ops-sudo:before",
        "create-group:ops-sudo:after",
        "write-atomic:accounts-ledger.json:before-rename",
        "write-atomic:ssm-companion:before-rename",
        "create:alice:before",
        "create:alice:after",
    ] {
        let emu = Emulator::start();
        let host = Host::new();
        host.configure(&emu, CONFIG);
        emu.user(
            "alice",
            "/",
            &[
                ("SSMSessionRunAs", "alice"),
                ("ssm-companion:groups", "ops-sudo"),
            ],
        );
        crash_at(&host, point);
        if point.contains(":ssm-companion:") {
            // Killed between writing the validated temporary file and renaming it: sudo ignores
            // it (its name has a dot), and the next write removes it.
            assert!(
                host.sh_ok("ls -A /etc/sudoers.d")
                    .contains(".ssm-companion.tmp"),
                "{point}"
            );
            assert!(
                host.sh("test -e /etc/sudoers.d/ssm-companion")
                    .status
                    .code()
                    == Some(1)
            );
        }
        converges(&host);
        assert!(
            !host.sh_ok("ls -A /etc/sudoers.d").contains(".tmp"),
            "{point}: temporary file left"
        );
        assert_eq!(host.groups("alice"), ["ops-sudo"], "{point}");
        assert!(
            host.sh_ok("sudo -l -U alice").contains("NOPASSWD: ALL"),
            "{point}"
        );
        // No temporary sudoers file is left where sudo would read it (names with a dot are skipped
        // by sudo's includedir), and the installed one is valid.
        host.sh_ok("visudo -c");
        let list = host.json(&["accounts", "list", "--json"], 0);
        assert_eq!(list["accounts"][0]["state"], "active", "{point}");
        host.assert_consistent(&["alice"]);
    }
}

#[test]
fn a_crash_at_any_retire_step_converges() {
    require_root!();
    for point in [
        "retire-start:alice:after",
        "retire-finish:alice:before",
        "retire-finish:alice:after",
    ] {
        let emu = Emulator::start();
        let host = Host::new();
        host.configure(&emu, CONFIG);
        emu.user(
            "alice",
            "/",
            &[
                ("SSMSessionRunAs", "alice"),
                ("ssm-companion:groups", "ops-sudo"),
            ],
        );
        emu.user("bob", "/", &[("SSMSessionRunAs", "bob")]);
        host.apply(0);
        let uid = host.uid("alice").unwrap();
        emu.untag_user("alice", "SSMSessionRunAs");
        if point.starts_with("retire-finish") {
            host.apply(0); // retire-start
        }
        crash_at(&host, point);
        // Two more syncs: retirement needs one more complete read after it starts.
        host.apply(0);
        converges(&host);
        assert!(host.getent("alice").is_none(), "{point}");
        let ledger: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(host.state.join("accounts-ledger.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            ledger["tombstones"]["alice"]["uid"], uid,
            "{point}: uid reserved"
        );
        assert!(ledger["accounts"].get("alice").is_none(), "{point}");
        host.assert_consistent(&["alice", "bob"]);
    }
}
