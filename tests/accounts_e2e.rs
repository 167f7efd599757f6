//! End to end: the real binary, the AWS SDK against the emulator (moto + strict IMDSv2 stub),
//! and real shadow-utils, sudo and pwck in a private user database. Every scenario ends with
//! `pwck -r`/`grpck -r` on the database.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::disallowed_methods)] // tests sleep and start programs directly

mod common;

use common::{Emulator, Host};
use serde_json::Value;

const GROUPS: &str = "allowed_groups = [\"docker\", \"ops-sudo\"]\nsudo_group = \"ops-sudo\"\n";

fn setup(accounts: &str) -> (Emulator, Host) {
    let emu = Emulator::start();
    let host = Host::new();
    host.configure(&emu, accounts);
    // The private database starts from this machine's /etc; give it a docker group.
    host.sh_ok("getent group docker >/dev/null || groupadd --system docker");
    (emu, host)
}

fn rejected(doc: &Value) -> Vec<(String, String)> {
    doc["rejections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["value"].as_str().unwrap().to_string(),
                r["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn create_with_groups_and_sudo_then_nothing_to_do() {
    require_root!();
    let (emu, host) = setup(GROUPS);
    emu.user(
        "alice",
        "/",
        &[
            ("SSMSessionRunAs", "alice"),
            ("ssm-companion:groups", "docker ops-sudo"),
        ],
    );
    emu.user("bob", "/eng/", &[("SSMSessionRunAs", "bob")]);
    emu.role(
        "oncall",
        &[
            ("SSMSessionRunAs", "oncall"),
            ("ssm-companion:groups", "docker"),
        ],
    );
    emu.user("nobody-tagged", "/", &[("Team", "x")]);

    let plan = host.plan();
    assert_eq!(plan["schema"], "ssm-companion/accounts-sync/v1");
    assert_eq!(plan["complete"], true);
    assert_eq!(Host::steps(&plan, "create"), ["alice", "bob", "oncall"]);
    assert!(host.getent("alice").is_none(), "plan changes nothing");

    let doc = host.apply(0);
    assert_eq!(doc["converged"], true, "{doc:#}");
    let alice = host.getent("alice").unwrap();
    let uid: u32 = alice[2].parse().unwrap();
    assert!((20000..=59999).contains(&uid));
    assert_eq!(alice[3], alice[2], "user private group with GID = UID");
    assert_eq!(alice[4], "ssm-companion");
    assert_eq!(alice[5], "/home/alice");
    assert_eq!(alice[6], "/bin/bash");
    assert_eq!(
        host.sh_ok("stat -c %u /home/alice").trim(),
        uid.to_string(),
        "home owned by alice"
    );
    assert!(
        host.sh_ok("ls -A /home/alice").contains(".bashrc"),
        "home made from /etc/skel"
    );
    assert_eq!(host.groups("alice"), ["docker", "ops-sudo"]);
    assert_eq!(host.groups("oncall"), ["docker"]);
    assert!(host.groups("bob").is_empty());

    // Sudo through the one drop-in, validated, mode 0440; real sudo agrees.
    assert_eq!(
        host.sh_ok("stat -c %a /etc/sudoers.d/ssm-companion").trim(),
        "440"
    );
    host.sh_ok("visudo -c");
    let sudo_l = host.sh_ok("sudo -l -U alice");
    assert!(sudo_l.contains("NOPASSWD: ALL"), "{sudo_l}");
    let sudo_l = host.sh_ok("sudo -l -U bob || true");
    assert!(!sudo_l.contains("NOPASSWD"), "{sudo_l}");

    // Idempotent: the next plan is empty and --detailed-exitcode says so.
    let out = host.ssmc(&["accounts", "plan", "--detailed-exitcode"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let list = host.json(&["accounts", "list", "--json"], 0);
    let names: Vec<&str> = list["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "bob", "oncall"]);
    assert!(
        list["accounts"][0]["principals"][0]
            .as_str()
            .unwrap()
            .ends_with(":user/alice")
    );
    host.assert_consistent(&["alice", "bob", "oncall"]);

    // The same name gets the same UID on another host.
    let other = Host::new();
    other.configure(&emu, GROUPS);
    other.sh_ok("getent group docker >/dev/null || groupadd --system docker");
    other.apply(0);
    assert_eq!(other.uid("alice"), Some(uid));
}

#[test]
fn drift_of_managed_attributes_is_repaired() {
    require_root!();
    let (emu, host) = setup(GROUPS);
    emu.user(
        "alice",
        "/",
        &[
            ("SSMSessionRunAs", "alice"),
            ("ssm-companion:groups", "docker"),
        ],
    );
    host.apply(0);
    host.sh_ok("usermod -s /bin/sh -c 'Alice Admin' alice && gpasswd -a alice adm >/dev/null");
    let plan = host.plan();
    assert_eq!(Host::steps(&plan, "repair"), ["alice"]);
    let doc = host.apply(0);
    assert_eq!(doc["converged"], true);
    let alice = host.getent("alice").unwrap();
    assert_eq!(alice[6], "/bin/bash");
    assert_eq!(alice[4], "ssm-companion");
    assert_eq!(
        host.groups("alice"),
        ["docker"],
        "adm was not allowlisted: removed"
    );
    // Someone deletes the account: it comes back with the same UID.
    let uid = host.uid("alice").unwrap();
    host.sh_ok("userdel alice");
    host.apply(0);
    assert_eq!(host.uid("alice"), Some(uid));
    host.assert_consistent(&["alice"]);
}

#[test]
fn homes_never_follow_symlinks() {
    require_root!();
    let (emu, host) = setup("");
    // A skeleton with a symlink to a secret, and a pre-made /home/mallory pointing at /etc.
    host.sh_ok("ln -s /etc/shadow /etc/skel/.evil && ln -s /etc /home/mallory");
    emu.user("alice", "/", &[("SSMSessionRunAs", "alice")]);
    emu.user("mallory", "/", &[("SSMSessionRunAs", "mallory")]);
    let doc = host.apply(0);
    assert_eq!(Host::steps(&doc, "create"), ["alice"]);
    assert_eq!(Host::skipped(&doc, "home-conflict"), ["mallory"]);
    assert!(host.getent("mallory").is_none());
    // The skeleton's symlink is copied as a symlink, never followed into a copy of the secret.
    assert_eq!(
        host.sh_ok("readlink /home/alice/.evil").trim(),
        "/etc/shadow"
    );
    assert_eq!(
        host.sh_ok("stat -c %U /etc/shadow").trim(),
        "root",
        "nothing was chowned through it"
    );
    host.assert_consistent(&["alice"]);
}

#[test]
fn host_groups_scope_accounts() {
    require_root!();
    let (emu, host) = setup("host_groups = [\"web\"]\n");
    emu.user(
        "webby",
        "/",
        &[
            ("SSMSessionRunAs", "webby"),
            ("ssm-companion:host-groups", "web edge"),
        ],
    );
    emu.user(
        "dba",
        "/",
        &[
            ("SSMSessionRunAs", "dba"),
            ("ssm-companion:host-groups", "db"),
        ],
    );
    emu.user("eve", "/", &[("SSMSessionRunAs", "eve")]);
    let doc = host.apply(0);
    assert_eq!(Host::steps(&doc, "create"), ["eve", "webby"]);
    assert_eq!(Host::skipped(&doc, "out-of-scope"), ["dba"]);
    assert!(host.getent("dba").is_none());
    // The host leaves the "web" group: webby is retired (groups at once, deletion later).
    host.configure(&emu, "host_groups = [\"db\"]\nmax_retire_fraction = 1.0\n");
    let doc = host.apply(0);
    assert_eq!(Host::steps(&doc, "create"), ["dba"]);
    assert_eq!(Host::steps(&doc, "retire-start"), ["webby"]);
    host.assert_consistent(&["eve", "webby", "dba"]);
}

#[test]
fn pre_existing_accounts_and_groups_are_never_touched() {
    require_root!();
    let (emu, host) = setup("allowed_groups = [\"admins\", \"docker\"]\nsudo_group = \"admins\"\n");
    host.sh_ok("useradd -m -s /bin/sh -c 'Bob Local' bob && groupadd admins && gpasswd -a bob admins >/dev/null");
    let before =
        host.sh_ok("getent passwd bob; getent shadow bob; getent group admins; id -nG bob");
    emu.user(
        "bob",
        "/",
        &[
            ("SSMSessionRunAs", "bob"),
            ("ssm-companion:groups", "docker admins"),
        ],
    );
    emu.user(
        "alice",
        "/",
        &[
            ("SSMSessionRunAs", "alice"),
            ("ssm-companion:groups", "admins"),
        ],
    );
    let doc = host.apply(0);
    assert_eq!(Host::skipped(&doc, "exists-unmanaged"), ["bob"]);
    let codes: Vec<&str> = doc["notices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"sudo-group-unmanaged"), "{codes:?}");
    assert_eq!(
        host.sh_ok("getent passwd bob; getent shadow bob; getent group admins; id -nG bob"),
        before
    );
    assert!(
        host.groups("alice").is_empty(),
        "no membership in a group we do not own"
    );
    assert!(
        host.sh("test -e /etc/sudoers.d/ssm-companion")
            .status
            .code()
            == Some(1),
        "no sudo granted"
    );
    // Even when bob's tag goes away, bob stays: he was never ours.
    emu.untag_user("bob", "SSMSessionRunAs");
    host.apply(0);
    assert_eq!(
        host.sh_ok("getent passwd bob; getent shadow bob; getent group admins; id -nG bob"),
        before
    );
    host.assert_consistent(&["alice", "bob"]);
}

#[test]
fn retirement_removes_access_at_once_and_deletes_after_grace() {
    require_root!();
    let (emu, host) = setup(&format!(
        "{GROUPS}retire_confirmations = 2\nretire_grace = \"3s\"\nmax_retire_fraction = 1.0\nstop_timeout = \"2s\"\n"
    ));
    emu.user(
        "alice",
        "/",
        &[
            ("SSMSessionRunAs", "alice"),
            ("ssm-companion:groups", "docker ops-sudo"),
        ],
    );
    emu.user("bob", "/", &[("SSMSessionRunAs", "bob")]);
    host.apply(0);
    let uid = host.uid("alice").unwrap();
    // alice has a process running.
    host.sh_ok(&format!("setsid setpriv --reuid={uid} --regid={uid} --clear-groups sleep 300 </dev/null >/dev/null 2>&1 &"));
    assert!(
        host.sh_ok(&format!("pgrep -u {uid} sleep || true"))
            .trim()
            .len()
            > 1
    );

    emu.untag_user("alice", "SSMSessionRunAs");
    let doc = host.apply(0);
    assert_eq!(Host::steps(&doc, "retire-start"), ["alice"]);
    assert!(
        host.groups("alice").is_empty(),
        "groups and sudo removed at once"
    );
    assert!(!host.sh_ok("sudo -l -U alice || true").contains("NOPASSWD"));
    assert!(host.getent("alice").is_some(), "not deleted yet");

    // Second complete read, grace not over: wait.
    let doc = host.apply(0);
    assert_eq!(Host::steps(&doc, "retire-wait"), ["alice"]);
    assert!(host.getent("alice").is_some());

    std::thread::sleep(std::time::Duration::from_secs(3));
    let doc = host.apply(0);
    assert_eq!(Host::steps(&doc, "retire-finish"), ["alice"], "{doc:#}");
    assert!(host.getent("alice").is_none());
    // (A zombie waiting for its parent to reap it is ended; only live processes count.)
    assert!(
        host.sh_ok(&format!("ps -u {uid} -o stat= | grep -v '^Z' || echo none"))
            .contains("none"),
        "its processes were ended"
    );
    assert_eq!(
        host.sh_ok("stat -c %u /home/alice").trim(),
        uid.to_string(),
        "home kept by default"
    );
    let list = host.json(&["accounts", "list", "--json"], 0);
    assert_eq!(list["accounts"].as_array().unwrap().len(), 1);

    // Back again: the same UID, and the kept home is reused.
    emu.tag_user("alice", "SSMSessionRunAs", "alice");
    host.apply(0);
    assert_eq!(host.uid("alice"), Some(uid));
    host.assert_consistent(&["alice", "bob"]);
}

#[test]
fn incomplete_reads_never_retire() {
    require_root!();
    let (emu, host) = setup(
        "iam_page_size = 1\nretire_confirmations = 1\nretire_grace = \"0s\"\nmax_retire_fraction = 1.0\n",
    );
    for n in ["ann", "ben", "cat"] {
        emu.user(n, "/", &[("SSMSessionRunAs", n)]);
    }
    emu.reset_stats();
    host.apply(0);
    assert_eq!(
        emu.stats()["iam:GetAccountAuthorizationDetails"],
        3,
        "one call per page"
    );

    // Throttled once on page 2: the SDK's retry heals it, the read is complete.
    emu.faults(serde_json::json!([{"service": "iam", "action": "GetAccountAuthorizationDetails", "page": 2, "times": 1, "status": 400, "code": "Throttling", "message": "Rate exceeded"}]));
    emu.untag_user("cat", "SSMSessionRunAs");
    let plan = host.plan();
    assert_eq!(plan["complete"], true, "{plan:#}");
    assert_eq!(Host::steps(&plan, "retire-start"), ["cat"]);

    // Throttled on every try of page 2: unknown, so nothing is retired.
    for (code, status) in [
        ("Throttling", 400),
        ("ExpiredToken", 403),
        ("InternalFailure", 500),
    ] {
        emu.faults(serde_json::json!([{"service": "iam", "action": "GetAccountAuthorizationDetails", "page": 2, "status": status, "code": code, "message": "injected"}]));
        let doc = host.apply(1);
        assert_eq!(doc["complete"], false, "{code}");
        assert!(
            doc["problems"][0].as_str().unwrap().contains(code),
            "{code}: {doc:#}"
        );
        // ben is on the failed page: absent from this read too, and not retired either.
        assert_eq!(
            Host::skipped(&doc, "retire-blocked"),
            ["ben", "cat"],
            "{code}"
        );
        assert!(host.getent("ben").is_some());
        assert!(host.getent("cat").is_some());
    }
    emu.faults(serde_json::json!([]));
    let doc = host.apply(0);
    assert_eq!(Host::steps(&doc, "retire-start"), ["cat"]);
    host.assert_consistent(&["ann", "ben", "cat"]);
}

#[test]
fn hostile_tag_values_are_rejected_one_by_one() {
    require_root!();
    let (emu, host) = setup("");
    let long33 = "a".repeat(33);
    let long256 = "b".repeat(256);
    let exact32 = format!("x{}", "y".repeat(31));
    let hostile: Vec<&str> = vec![
        "",
        "   ",
        " alice",
        "alice ",
        "root",
        "ssm-user",
        "daemon",
        "nobody",
        "Alice",
        "jöhn",
        "\u{0430}dmin",
        "1234",
        "0day",
        "-g",
        "--help",
        "-o",
        ".hidden",
        ".",
        "..",
        "../root",
        "a/b",
        "a:b",
        "a,b",
        "a=b",
        "a+b",
        "user@example.com",
        "machine$",
        "a;b",
        "$(touch /tmp/ssmc-pwned)",
        "`touch /tmp/ssmc-pwned`",
        "a b",
        "a\nb",
        long33.as_str(),
        long256.as_str(),
        "sudo",
        "adm",
    ];
    for (i, v) in hostile.iter().enumerate() {
        emu.user(&format!("h{i}"), "/", &[("SSMSessionRunAs", v)]);
    }
    emu.user("good1", "/", &[("SSMSessionRunAs", "agent")]);
    emu.user("good2", "/", &[("SSMSessionRunAs", "testagent")]);
    emu.user("good3", "/", &[("SSMSessionRunAs", exact32.as_str())]);
    // Two principals, one value: one account.
    emu.user("dup1", "/", &[("SSMSessionRunAs", "shared")]);
    emu.role("dup2", &[("SSMSessionRunAs", "shared")]);

    let _ = std::fs::remove_file("/tmp/ssmc-pwned");
    let doc = host.apply(0);
    let mut created = Host::steps(&doc, "create");
    created.sort();
    let mut expect = vec![
        "agent".to_string(),
        "shared".into(),
        "testagent".into(),
        exact32.clone(),
    ];
    expect.sort();
    assert_eq!(created, expect);
    let rejected = rejected(&doc);
    for v in &hostile {
        assert!(
            rejected.iter().any(|(value, _)| value == v),
            "{v:?} was not rejected: {rejected:?}"
        );
    }
    for (value, reason) in &rejected {
        assert!(
            ["invalid-name", "reserved-name", "system-account"].contains(&reason.as_str()),
            "{value:?}: {reason}"
        );
    }
    assert_eq!(
        rejected.len(),
        hostile.len(),
        "each value rejected once, with its principal"
    );
    assert!(
        !std::path::Path::new("/tmp/ssmc-pwned").exists(),
        "a tag value reached a shell"
    );
    let shared = doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["user"] == "shared")
        .unwrap();
    assert_eq!(shared["principals"].as_array().unwrap().len(), 2);
    // The human table escapes control characters.
    let out = host.ssmc(&["accounts", "plan"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(r#""a\nb""#), "{text}");
    host.assert_consistent(&["agent", "testagent", "shared"]);
}

#[test]
fn a_ledger_from_another_instance_is_inherited_and_never_deletes() {
    require_root!();
    let (emu, host) = setup(&format!(
        "{GROUPS}retire_confirmations = 1\nretire_grace = \"0s\"\nmax_retire_fraction = 1.0\n"
    ));
    emu.user(
        "alice",
        "/",
        &[
            ("SSMSessionRunAs", "alice"),
            ("ssm-companion:groups", "docker ops-sudo"),
        ],
    );
    emu.user(
        "bob",
        "/",
        &[
            ("SSMSessionRunAs", "bob"),
            ("ssm-companion:groups", "ops-sudo"),
        ],
    );
    host.apply(0);
    // The same disk now boots as another instance (a baked image).
    emu.imds_config(serde_json::json!({"instance_id": "i-0fedcba9876543210"}));
    emu.untag_user("alice", "SSMSessionRunAs");
    let plan = host.plan();
    let codes: Vec<&str> = plan["notices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"ledger-foreign"), "{plan:#}");
    let doc = host.apply(0);
    let aside = doc["ledger_set_aside"].as_str().unwrap();
    assert!(aside.contains("accounts-ledger.json.foreign-"), "{aside}");
    assert!(std::path::Path::new(aside).exists(), "the original is kept");
    // The image's accounts stay managed: bob keeps sudo, alice loses her access at once...
    assert_eq!(Host::steps(&doc, "retire-start"), ["alice"]);
    assert!(host.groups("alice").is_empty());
    assert_eq!(host.groups("bob"), ["ops-sudo"]);
    assert!(
        host.sh_ok("sudo -l -U bob").contains("NOPASSWD: ALL"),
        "sudo survives the image"
    );
    // ...but is never deleted automatically: a safety stop that holds the sync from
    // converging (exit 1), named in the JSON.
    let doc = host.apply(1);
    assert_eq!(Host::skipped(&doc, "retire-blocked"), ["alice"], "{doc:#}");
    assert_eq!(doc["converged"], false);
    assert_eq!(doc["holds"][0]["code"], "retire-blocked", "{doc:#}");
    assert_eq!(doc["holds"][0]["users"], serde_json::json!(["alice"]));
    assert!(host.getent("alice").is_some());
    // An operator confirms: now it goes.
    let doc = host.json(&["accounts", "apply", "--json", "--trust-inherited"], 0);
    assert_eq!(Host::steps(&doc, "retire-finish"), ["alice"], "{doc:#}");
    assert!(host.getent("alice").is_none());
    // A changed machine-id is noticed the same way.
    host.sh_ok("echo 0123456789abcdef0123456789abcdef > /etc/machine-id");
    let doc = host.apply(0);
    assert!(doc["ledger_set_aside"].is_string());
    let list = host.json(&["accounts", "list", "--json"], 0);
    assert_eq!(list["accounts"][0]["name"], "bob");
    host.assert_consistent(&["alice", "bob"]);
}

#[test]
fn session_preferences_default_user_and_run_as_off() {
    require_root!();
    let (emu, host) = setup("");
    emu.preferences(false, "ops-default");
    let doc = host.apply(0);
    assert_eq!(Host::steps(&doc, "create"), ["ops-default"]);
    let codes: Vec<&str> = doc["notices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"run-as-disabled"), "{codes:?}");
    assert_eq!(emu.stats()["ssm:GetDocument"], 1);
    host.assert_consistent(&["ops-default"]);
}

#[test]
fn file_source_and_extra_names_work_without_aws() {
    require_root!();
    let host = Host::new();
    let list = host.dir().join("accounts.json");
    std::fs::write(
        &list,
        r#"{"account": [{"name": "carol", "principals": ["idp:carol@example.com"], "groups": ["adm"]}, {"name": "Bad"}]}"#,
    )
    .unwrap();
    std::fs::write(
        &host.config,
        format!(
            "[aws]\nimds_endpoint = \"http://127.0.0.1:9\"\n[accounts]\nsource = \"file\"\nfile = \"{}\"\nextra = [\"fed-user\"]\nallowed_groups = [\"adm\"]\n[paths]\nstate_dir = \"{}\"\n",
            list.display(),
            host.state.display()
        ),
    )
    .unwrap();
    let doc = host.apply(0);
    assert_eq!(
        doc["source"].as_str().unwrap(),
        format!("file:{}", list.display())
    );
    assert_eq!(Host::steps(&doc, "create"), ["carol", "fed-user"]);
    assert_eq!(host.groups("carol"), ["adm"]);
    assert_eq!(
        rejected(&doc),
        [("Bad".to_string(), "invalid-name".to_string())]
    );
    // A broken list is "unknown": nothing is retired.
    std::fs::write(&list, "{ not json").unwrap();
    let doc = host.apply(1);
    assert_eq!(doc["complete"], false);
    assert!(host.getent("carol").is_some());
    host.assert_consistent(&["carol", "fed-user"]);
}
