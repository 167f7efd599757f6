//! Audit end to end: the daemon with `[audit] enabled`, the agent's document-state files written
//! as the agent writes them (into `pending/`, renamed into `current/`, deleted at the end), a
//! kill -9 mid-session and starts and ends while the daemon is down; `audit tail --json` and
//! `audit status --json` read back what the spool holds: every start once, every end once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::disallowed_methods)] // tests start programs directly

mod common;

use std::collections::BTreeMap;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

use common::{AgentDirs, Host, append, drain, stop, wait_for};
use serde_json::Value;

const INSTANCE: &str = "i-0123456789abcdef0";

/// A document-state file as the agent writes it (ssm-agent.md §10.2).
fn state_file(id: &str, user: &str, pid: u32) -> String {
    format!(
        r#"{{
  "DocumentInformation": {{
    "DocumentID": "{id}", "CommandID": "", "MessageID": "aws.ssm.{id}.{INSTANCE}",
    "InstanceID": "{INSTANCE}", "CreatedDate": "2026-12-05T10:00:00.000Z",
    "DocumentName": "SSM-SessionManagerRunShell", "DocumentStatus": "InProgress",
    "RunAsUser": "{user}", "SessionOwner": "arn:aws:iam::123456789012:user/{user}",
    "ClientId": "5e1c4d3a-0000-4000-8000-000000000001",
    "ProcInfo": {{"Pid": {pid}, "StartTime": "2026-12-05T10:00:01Z"}}
  }},
  "DocumentType": "StartSession",
  "SchemaVersion": "1.0",
  "InstancePluginsInformation": [{{
    "Configuration": {{
      "SessionId": "{id}", "PluginName": "Standard_Stream",
      "RunAsEnabled": true, "RunAsUser": "{user}",
      "SessionOwner": "arn:aws:iam::123456789012:user/{user}"
    }},
    "Name": "Standard_Stream"
  }}]
}}"#
    )
}

/// The agent's `document/state/pending/` and `current/` directories of [`INSTANCE`].
fn session_dirs(d: &AgentDirs) {
    for sub in ["pending", "current"] {
        std::fs::create_dir_all(d.state.join(INSTANCE).join("document/state").join(sub)).unwrap();
    }
}

/// The agent's move: written to `pending/`, renamed into `current/`.
fn start_session(state: &Path, id: &str, user: &str) {
    start_session_of(state, id, user, std::process::id());
}

/// The same, naming the session's worker process.
fn start_session_of(state: &Path, id: &str, user: &str, worker: u32) {
    let docs = state.join(INSTANCE).join("document/state");
    let pending = docs.join("pending").join(id);
    std::fs::write(&pending, state_file(id, user, worker)).unwrap();
    std::fs::rename(&pending, docs.join("current").join(id)).unwrap();
}

fn end_session(state: &Path, id: &str) {
    std::fs::remove_file(state.join(INSTANCE).join("document/state/current").join(id)).unwrap();
}

/// `audit tail --json`: (activity, session id) of every event, in spool order.
fn tail(host: &Host) -> Vec<(String, String, Value)> {
    let out = host.ssmc(&["audit", "tail", "--json", "-n", "100000"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let e: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            (
                e["activity_name"].as_str().unwrap_or_default().to_string(),
                e["session"]["uid"].as_str().unwrap_or_default().to_string(),
                e,
            )
        })
        .collect()
}

#[test]
fn sessions_are_recorded_once_across_kill_9_and_restarts() {
    require_root!();
    let host = Host::new();
    let d = AgentDirs::new(host.dir());
    session_dirs(&d);
    // Not sessions: a Run Command document, garbage, a FIFO (never opened blocking).
    let current = d.state.join(INSTANCE).join("document/state/current");
    std::fs::write(
        current.join("5f0c2a5e-command-0001"),
        state_file("5f0c2a5e-command-0001", "x", 1).replace("StartSession", "SendCommand"),
    )
    .unwrap();
    std::fs::write(current.join("junk-0002"), b"\x00\xff not json").unwrap();
    nix::unistd::mkfifo(&current.join("fifo-0003"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    configure(&host, &d, "enabled = false", "");
    // A session already running when the daemon starts.
    start_session(&d.state, "alice-0c20c0d902585cf86", "alice");

    let notify = host.dir().join("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    let mut seen = Vec::new();
    let mut daemon = host.daemon(&notify, &[]);
    let log1 = drain(&mut daemon);
    wait_for(
        &sock,
        "audit: 1 session(s) open",
        Duration::from_secs(30),
        &mut seen,
    );
    start_session(&d.state, "bob-07f3a2b1c0d9e8f76", "bob");
    wait_for(
        &sock,
        "audit: 2 session(s) open",
        Duration::from_secs(30),
        &mut seen,
    );

    // kill -9 mid-session; alice's session ends and carol's starts while the daemon is down.
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    let log1 = log1.join().unwrap();
    end_session(&d.state, "alice-0c20c0d902585cf86");
    start_session(&d.state, "carol-011e8a35a1cd6e285", "carol");

    let mut daemon = host.daemon(&notify, &[]);
    let log2 = drain(&mut daemon);
    // bob and carol open, alice's end recorded.
    wait_for(
        &sock,
        "audit: 2 session(s) open, spool at seq 5",
        Duration::from_secs(30),
        &mut seen,
    );
    end_session(&d.state, "bob-07f3a2b1c0d9e8f76");
    wait_for(
        &sock,
        "audit: 1 session(s) open",
        Duration::from_secs(30),
        &mut seen,
    );

    let events = tail(&host);
    let mut count: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (activity, id, _) in &events {
        *count.entry((activity.clone(), id.clone())).or_default() += 1;
    }
    let want: BTreeMap<(String, String), usize> = [
        ("Logon", "alice-0c20c0d902585cf86"),
        ("Logon", "bob-07f3a2b1c0d9e8f76"),
        ("Logon", "carol-011e8a35a1cd6e285"),
        ("Logoff", "alice-0c20c0d902585cf86"),
        ("Logoff", "bob-07f3a2b1c0d9e8f76"),
    ]
    .into_iter()
    .map(|(a, i)| ((a.to_string(), i.to_string()), 1))
    .collect();
    assert_eq!(count, want, "every start once, every end once: {events:#?}");
    let bob_end = &events
        .iter()
        .find(|(a, i, _)| a == "Logoff" && i.starts_with("bob"))
        .unwrap()
        .2;
    assert_eq!(bob_end["user"]["name"], "bob");
    assert_eq!(
        bob_end["actor"]["user"]["uid"],
        "arn:aws:iam::123456789012:user/bob"
    );
    assert!(bob_end["duration"].as_i64().unwrap() > 0, "{bob_end}");
    assert_eq!(bob_end["device"]["region"], "us-east-1");
    // alice's end survived the kill -9: its details came back from the state directory.
    let alice_end = &events
        .iter()
        .find(|(a, i, _)| a == "Logoff" && i.starts_with("alice"))
        .unwrap()
        .2;
    assert_eq!(alice_end["user"]["name"], "alice", "{alice_end}");
    // Sequence numbers are the spool's, contiguous.
    let seqs: Vec<i64> = events
        .iter()
        .map(|(_, _, e)| e["metadata"]["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=5).collect::<Vec<_>>());

    let status = host.json(&["audit", "status", "--json"], 0);
    assert_eq!(status["spool"]["events"], 5, "{status:#}");
    assert_eq!(status["spool"]["gaps"], 0, "{status:#}");
    let open = status["sessions"]["open"].as_array().unwrap();
    assert_eq!(open.len(), 1, "{status:#}");
    assert_eq!(open[0]["id"], "carol-011e8a35a1cd6e285");
    assert_eq!(open[0]["user"], "carol");

    // The text views: one line per event, the status in words.
    let text =
        String::from_utf8_lossy(&host.ssmc(&["audit", "tail", "-n", "2"]).stdout).into_owned();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.contains("Authentication: Logoff"), "{text}");
    let text = String::from_utf8_lossy(&host.ssmc(&["audit", "status"]).stdout).into_owned();
    assert!(text.contains("open sessions: 1"), "{text}");

    stop(&mut daemon);
    let log2 = log2.join().unwrap();
    for log in [&log1, &log2] {
        assert!(!log.contains("panicked"), "{log}");
    }
    assert!(log2.contains("audit: on; spool at seq 3"), "{log2}");
}

/// Waits until the daemon's STATUS says the spool reached `seq` (or more: one pass may spool
/// several events) with `open` sessions; the spool's content is then checked by `audit tail`.
fn wait_for_seq(sock: &UnixDatagram, open: usize, seq: u64, seen: &mut Vec<String>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let want = format!("audit: {open} session(s) open, spool at seq ");
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        assert!(
            !left.is_zero(),
            "no STATUS with {want}>={seq}; seen: {seen:#?}"
        );
        let msg = wait_for(sock, &want, left, seen);
        let at: u64 = msg
            .split(&want)
            .nth(1)
            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if at >= seq {
            return;
        }
    }
}

/// Writes the host's config: no AWS (IMDS refused), health off, audit on (listing every
/// second), the agent's directories of `d`, then `extra` (TOML: `[accounts]`, more `[audit]`
/// keys go first in `audit`).
fn configure(host: &Host, d: &AgentDirs, accounts: &str, audit: &str) {
    std::fs::write(
        &host.config,
        format!(
            "[aws]\nimds_endpoint = \"http://127.0.0.1:9\"\nregion = \"us-east-1\"\n[accounts]\n{accounts}\n[health]\nenabled = false\n[audit]\nenabled = true\nrescan_interval = \"1s\"\nexec_backend = \"off\"\n{audit}\n{}",
            d.paths_toml(&host.state)
        ),
    )
    .unwrap();
}

/// `actor.process.cmd_line` is `want`, or absent: journald lost the sender's `_CMDLINE`.
fn assert_invocation(got: &Value, want: &str) {
    assert!(
        got.is_null() || got == want,
        "invocation {got} is neither `{want}` nor absent"
    );
}

/// The session an event names: `session` (su, sessions) or `process.session` (sudo).
fn session_of(e: &Value) -> &str {
    e["session"]["uid"]
        .as_str()
        .or(e["process"]["session"]["uid"].as_str())
        .unwrap_or_default()
}

#[test]
fn sudo_and_su_in_a_session_are_attributed_by_its_terminal_and_read_once_across_kill_9() {
    require_root!();
    let host = Host::with_journal();
    let d = AgentDirs::new(host.dir());
    session_dirs(&d);
    configure(&host, &d, "enabled = false", "redact = [\"token=\\\\S+\"]");
    // nobody may run sudo without a password prompt, and is refused: sudo logs the refusal.
    host.sh_ok(
        "echo 'Defaults:nobody !authenticate' > /etc/sudoers.d/zz-test && chmod 440 /etc/sudoers.d/zz-test && visudo -c -q",
    );
    let worker_bin = host.dir().join("ssm-session-worker");
    common::compile_support("ssm-session-worker.c", &worker_bin, &["-O2"], &["-lutil"]);

    let notify = host.dir().join("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    let mut seen = Vec::new();
    let mut daemon = host.daemon(&notify, &[]);
    let log1 = drain(&mut daemon);
    wait_for(
        &sock,
        "audit: 0 session(s) open",
        Duration::from_secs(30),
        &mut seen,
    );

    // The session: its shell on a real pts waits for a gate, then uses sudo and su; a second
    // gate runs one more sudo while the daemon is down.
    let id = "alice-0c20c0d902585cf86";
    let gate = |n: u32| host.dir().join(format!("gate{n}"));
    let script = format!(
        "until [ -e {g1} ]; do sleep 0.05; done
         python3 -c \"$FORGE\"
         sudo -u nobody /usr/bin/id
         su -s /bin/sh -c 'sudo -n /usr/bin/id' nobody
         until [ -e {g2} ]; do sleep 0.05; done
         sudo -u nobody /usr/bin/true token=s3cret
         touch {done}
         sleep 600",
        g1 = gate(1).display(),
        g2 = gate(2).display(),
        done = gate(3).display(),
    );
    // A line shaped like sudo's from another program, alive while journald reads who sent it.
    let forge = "import socket, time; s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.sendto(b'<85>sudo: alice : TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/forged', '/dev/log'); time.sleep(0.5)";
    let script = format!("FORGE=\"{forge}\"\n{script}");
    let mut worker = host.spawn(&worker_bin, &[id, &script]);
    start_session_of(&d.state, id, "root", worker.id());
    wait_for_seq(&sock, 1, 2, &mut seen);
    std::fs::write(gate(1), "").unwrap();
    // The start, sudo, su and sudo's refusal: the forged line is not one.
    wait_for_seq(&sock, 1, 5, &mut seen);

    daemon.kill().unwrap();
    daemon.wait().unwrap();
    let log1 = log1.join().unwrap();
    std::fs::write(gate(2), "").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !gate(3).exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the session's second sudo did not run"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut daemon = host.daemon(&notify, &[]);
    let log2 = drain(&mut daemon);
    // Only the sudo run while it was down is new.
    wait_for_seq(&sock, 1, 6, &mut seen);
    worker.kill().unwrap();
    worker.wait().unwrap();
    end_session(&d.state, id);
    wait_for_seq(&sock, 0, 7, &mut seen);

    let events = tail(&host);
    let summary: Vec<String> = events
        .iter()
        .map(|(_, _, e)| format!("{} {}", e["message"].as_str().unwrap(), session_of(e)))
        .collect();
    let expect_msgs = [
        "started:",
        "sudo: root ran `/usr/bin/id` as nobody",
        "su: root became nobody",
        "sudo refused: nobody ran `/usr/bin/id` as root (user NOT in sudoers)",
        "sudo: root ran `/usr/bin/true ***` as nobody",
        "ended:",
    ];
    assert_eq!(events.len(), expect_msgs.len(), "{summary:#?}\n{log1}");
    for (e, want) in summary.iter().zip(expect_msgs) {
        assert!(
            e.contains(want) && e.ends_with(id),
            "{want} in session {id}: {summary:#?}"
        );
    }
    let sudo = &events[1].2;
    assert_eq!(sudo["class_uid"], 1007);
    assert_eq!(sudo["process"]["session"]["terminal"], "pts/0");
    assert_eq!(sudo["actor"]["user"]["name"], "root");
    assert_eq!(sudo["process"]["user"]["name"], "nobody");
    // `_CMDLINE` is the kernel's: journald reads it from /proc after the fact and loses it when
    // sudo has already exited (seen under load), so it is that invocation or nothing.
    assert_invocation(
        &sudo["actor"]["process"]["cmd_line"],
        "sudo -u nobody /usr/bin/id",
    );
    assert_eq!(events[3].2["status_id"], 2, "{:#}", events[3].2);
    // The built-in rules: the session as root is a root shell, every sudo is marked (su to
    // nobody is no alert); the daemon wrote each marked event to the journal.
    let alerted: Vec<String> = events
        .iter()
        .map(|(_, _, e)| e["metadata"]["labels"].to_string())
        .collect();
    assert_eq!(
        alerted,
        [
            "[\"alert:root-shell\"]",
            "[\"alert:sudo\"]",
            "null",
            "[\"alert:sudo\"]",
            "[\"alert:sudo\"]",
            "null"
        ],
        "{summary:#?}"
    );
    assert_eq!(sudo["severity_id"], 3);
    let journal =
        host.sh_ok("journalctl --no-pager -q -o json MESSAGE_ID=5b7e2d9c4a1f4e6b8c3d0a9f1e2b7c45");
    let alerts: Vec<Value> = journal
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(alerts.len(), 4, "{journal}");
    assert_eq!(alerts[0]["SSM_COMPANION_RULES"], "root-shell");
    assert_eq!(alerts[0]["PRIORITY"], "3", "high: an error");
    assert_eq!(alerts[1]["SSM_COMPANION_RULES"], "sudo");
    assert_eq!(alerts[1]["PRIORITY"], "4", "medium: a warning");
    assert_eq!(
        alerts[1]["SSM_COMPANION_EVENT_UID"],
        sudo["metadata"]["uid"]
    );
    assert_eq!(events[2].2["class_uid"], 3002);
    assert!(
        !summary.iter().any(|s| s.contains("forged")),
        "{summary:#?}"
    );
    assert!(
        log1.contains("came from `/usr/bin/python3"),
        "the forged line is reported: {log1}"
    );
    // audit.redact: the secret never reached the spool's files.
    let true_run = &events[4].2;
    assert_eq!(true_run["process"]["cmd_line"], "/usr/bin/true ***");
    assert_invocation(
        &true_run["actor"]["process"]["cmd_line"],
        "sudo -u nobody /usr/bin/true ***",
    );
    for f in std::fs::read_dir(host.state.join("audit/spool")).unwrap() {
        let bytes = std::fs::read(f.unwrap().path()).unwrap();
        assert!(
            !bytes.windows(6).any(|w| w == b"s3cret"),
            "a secret in the spool"
        );
    }
    let seqs: Vec<i64> = events
        .iter()
        .map(|(_, _, e)| e["metadata"]["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=6).collect::<Vec<_>>());

    stop(&mut daemon);
    let log2 = log2.join().unwrap();
    for log in [&log1, &log2] {
        assert!(!log.contains("panicked"), "{log}");
    }
}

#[test]
fn account_changes_reach_the_spool_with_the_principal_that_caused_them() {
    require_root!();
    let host = Host::with_journal();
    let d = AgentDirs::new(host.dir());
    let list = host.dir().join("accounts.json");
    std::fs::write(
        &list,
        r#"{"account": [{"name": "dave", "principals": ["arn:aws:iam::123456789012:user/dave"]}]}"#,
    )
    .unwrap();
    configure(
        &host,
        &d,
        &format!(
            "source = \"file\"\nfile = \"{}\"\nsplay = \"0s\"\nread_session_preferences = false",
            list.display()
        ),
        "",
    );
    // Someone else's entry with the same MESSAGE_ID: not an account change of ours.
    host.sh_ok(&format!(
        "python3 -c \"import socket, time; s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.sendto(b'MESSAGE=account create mallory\\nMESSAGE_ID={}\\nSSM_COMPANION_ACTION=create\\nSSM_COMPANION_USER=mallory\\n', '/run/systemd/journal/socket'); time.sleep(0.5)\"",
        "a6f2c4d1b8e94c0e9d57c1f3e2b8a901"
    ));
    let notify = host.dir().join("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    let mut seen = Vec::new();
    let mut daemon = host.daemon(&notify, &[]);
    let log = drain(&mut daemon);
    // The daemon's accounts capability creates dave; its journal entry comes back as an event.
    wait_for_seq(&sock, 0, 2, &mut seen);
    assert_eq!(
        host.getent("dave").map(|e| e[0].clone()),
        Some("dave".into())
    );
    stop(&mut daemon);
    let log = log.join().unwrap();
    let events = tail(&host);
    let changes: Vec<&Value> = events
        .iter()
        .map(|(_, _, e)| e)
        .filter(|e| e["class_uid"] == 3001)
        .collect();
    let create = changes
        .iter()
        .find(|e| e["activity_name"] == "Create")
        .unwrap_or_else(|| panic!("no Create in {events:#?}\n{log}"));
    assert_eq!(create["user"]["name"], "dave");
    assert_eq!(
        create["actor"]["user"]["uid"], "arn:aws:iam::123456789012:user/dave",
        "{create:#}"
    );
    assert_eq!(create["status_id"], 1);
    assert!(
        !events
            .iter()
            .any(|(_, _, e)| e["user"]["name"] == "mallory"),
        "{events:#?}"
    );
    assert!(log.contains("came from `python3`"), "{log}");
}

#[test]
fn a_run_as_failure_is_an_event_and_gets_the_wanted_user_created_at_once() {
    require_root!();
    let host = Host::new();
    let d = AgentDirs::new(host.dir());
    let list = host.dir().join("accounts.json");
    std::fs::write(&list, r#"{"account": []}"#).unwrap();
    configure(
        &host,
        &d,
        &format!(
            "source = \"file\"\nfile = \"{}\"\nsplay = \"0s\"\ninterval = \"1h\"\nread_session_preferences = false",
            list.display()
        ),
        "",
    );
    let notify = host.dir().join("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    let mut seen = Vec::new();
    let mut daemon = host.daemon(&notify, &[]);
    let log = drain(&mut daemon);
    wait_for(
        &sock,
        "accounts: 0 managed",
        Duration::from_secs(30),
        &mut seen,
    );

    // erin's tag arrives after the sync; her first session fails, as the agent logs it.
    std::fs::write(
        &list,
        r#"{"account": [{"name": "erin", "principals": ["arn:aws:iam::123456789012:user/erin"]}]}"#,
    )
    .unwrap();
    let now = chrono::Local::now().format("%Y-%m-%d %H:%M:%S");
    let id = "erin-0c20c0d902585cf86";
    std::fs::write(
        d.log_file(),
        format!(
            "{now} INFO [MGSInteractor] Parsing AgentMessage 0b1c, Payload: {{\"DocumentName\":\"SSM-SessionManagerRunShell\",\"SessionId\":\"{id}\",\"RunAsUser\":\"erin\",\"SessionOwner\":\"arn:aws:iam::123456789012:user/erin\"}}\n\
             {now} ERROR [ssm-session-worker] [{id}] [DataBackend] [pluginName=Standard_Stream] Unable to start command: failed to start pty since RunAs user erin does not exist\n\n"
        ),
    )
    .unwrap();
    // The interval is an hour: only the audit's request makes this sync.
    wait_for(
        &sock,
        "accounts: 1 managed",
        Duration::from_secs(30),
        &mut seen,
    );
    assert!(host.getent("erin").is_some());
    stop(&mut daemon);
    let log = log.join().unwrap();
    let events = tail(&host);
    let failed = events
        .iter()
        .map(|(_, _, e)| e)
        .find(|e| e["status_id"] == 2 && e["class_uid"] == 3002)
        .unwrap_or_else(|| panic!("no failed logon in {events:#?}\n{log}"));
    assert_eq!(failed["session"]["uid"], id);
    assert_eq!(failed["user"]["name"], "erin");
    assert_eq!(
        failed["actor"]["user"]["uid"],
        "arn:aws:iam::123456789012:user/erin"
    );
    assert!(
        failed["status_detail"]
            .as_str()
            .unwrap()
            .contains("does not exist"),
        "{failed:#}"
    );
    assert!(log.contains("accounts: created `erin`"), "{log}");
}

#[test]
fn a_full_disk_pauses_the_journal_and_loses_nothing_once_space_returns() {
    require_root!();
    let host = Host::with_journal();
    let d = AgentDirs::new(host.dir());
    // The audit directory on a small tmpfs of the namespace, filled up below.
    let audit = host.state.join("audit");
    std::fs::create_dir_all(&audit).unwrap();
    host.sh_ok(&format!(
        "mount -t tmpfs -o size=256k tmpfs {}",
        audit.display()
    ));
    configure(&host, &d, "enabled = false", "");
    let notify = host.dir().join("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    let mut seen = Vec::new();
    let mut daemon = host.daemon(&notify, &[]);
    let log = drain(&mut daemon);
    wait_for(
        &sock,
        "audit: 0 session(s) open",
        Duration::from_secs(30),
        &mut seen,
    );
    let sudo = |from: u32, to: u32| {
        host.sh_ok(&format!(
            "for i in $(seq {from} {to}); do sudo -u nobody /usr/bin/true run-$i; done"
        ));
    };
    sudo(1, 5);
    wait_for_seq(&sock, 0, 6, &mut seen);
    // The disk fills up (the filler takes what is left), then 20 more sudo runs.
    let filler = audit.join("filler");
    host.sh(&format!("head -c 1M /dev/zero > {}", filler.display()));
    sudo(6, 25);
    // Long enough for the daemon to try (it reads the journal within milliseconds).
    std::thread::sleep(Duration::from_secs(3));
    // (The tmpfs is the namespace's: remove the filler there.)
    host.sh_ok(&format!("rm {}", filler.display()));
    wait_for_seq(&sock, 0, 26, &mut seen);
    stop(&mut daemon);
    let log = log.join().unwrap();
    assert!(
        log.contains("No space left on device"),
        "the disk was never full: {log}"
    );
    let events = tail(&host);
    let runs: Vec<String> = events
        .iter()
        .map(|(_, _, e)| e["process"]["cmd_line"].as_str().unwrap().to_string())
        .collect();
    let want: Vec<String> = (1..=25).map(|i| format!("/usr/bin/true run-{i}")).collect();
    assert_eq!(runs, want, "every run once, in order\n{log}");
    let status = host.json(&["audit", "status", "--json"], 0);
    assert_eq!(status["spool"]["gaps"], 0, "{status:#}");
    assert_eq!(status["spool"]["events"], 25, "{status:#}");
}

/// What the writer of the kill -9 loop produced.
#[derive(Default)]
struct Written {
    sudo: Vec<String>,
    failed: Vec<String>,
    sessions: Vec<String>,
}

/// Three sources appending while the daemon is killed: sudo lines in the auth log (its
/// fallback for hosts without journald), Run As failures in the agent's log, sessions starting
/// and ending in the agent's state directory.
fn write_sources(d: &AgentDirs, stop: &std::sync::atomic::AtomicBool) -> Written {
    let mut w = Written::default();
    let mut tick = 0u32;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let now = chrono::Local::now();
        let command = format!("/usr/bin/true run-{tick}");
        append(
            &d.auth_log(),
            &format!(
                "{} ip-10-0-1-23 sudo:    alice : TTY=pts/9 ; PWD=/home/alice ; USER=root ; COMMAND={command}\n",
                now.to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
            ),
        );
        w.sudo.push(command);
        if tick.is_multiple_of(2) {
            let id = format!("fail-{tick:017x}");
            append(
                &d.log_file(),
                &format!(
                    "{} ERROR [ssm-session-worker] [{id}] [DataBackend] [pluginName=Standard_Stream] Unable to start command: failed to start pty since RunAs user erin does not exist\n",
                    now.format("%Y-%m-%d %H:%M:%S")
                ),
            );
            w.failed.push(id);
        }
        if tick.is_multiple_of(4) {
            let id = format!("sess-{tick:017x}");
            start_session(&d.state, &id, "alice");
            w.sessions.push(id);
            // Each session lives 25 starts (five seconds).
            if let Some(old) = w
                .sessions
                .len()
                .checked_sub(26)
                .map(|i| w.sessions[i].clone())
            {
                end_session(&d.state, &old);
            }
        }
        tick += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    for id in w.sessions.iter().rev().take(25) {
        end_session(&d.state, id);
    }
    w
}

#[test]
fn fifty_kill_9s_while_three_sources_append_lose_nothing_and_repeat_nothing() {
    require_root!();
    let host = Host::new();
    let d = AgentDirs::new(host.dir());
    session_dirs(&d);
    configure(
        &host,
        &d,
        "enabled = false",
        "privilege_source = \"auth-log\"\ndefault_alerts = false",
    );
    let notify = host.dir().join("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    let stop_writer = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let d = d.clone();
        let stop_writer = stop_writer.clone();
        std::thread::spawn(move || write_sources(&d, &stop_writer))
    };
    let mut logs = Vec::new();
    for round in 0..50 {
        // What killed daemons sent is old news.
        sock.set_nonblocking(true).unwrap();
        while sock.recv(&mut [0u8; 4096]).is_ok() {}
        sock.set_nonblocking(false).unwrap();
        let mut daemon = host.daemon(&notify, &[]);
        logs.push(drain(&mut daemon));
        // Every other daemon is killed anywhere, start-up (spool recovery) included; the
        // others once their loop ran a pass, so the sessions are listed however busy the
        // machine is.
        if round % 2 == 0 {
            let mut seen = Vec::new();
            wait_for(
                &sock,
                "session(s) open, spool at seq",
                Duration::from_secs(60),
                &mut seen,
            );
        }
        std::thread::sleep(Duration::from_millis(fastrand::u64(50..600)));
        daemon.kill().unwrap();
        daemon.wait().unwrap();
    }
    stop_writer.store(true, std::sync::atomic::Ordering::Relaxed);
    let w = writer.join().unwrap();
    // The last start takes in what the killed ones left.
    let mut seen = Vec::new();
    let mut daemon = host.daemon(&notify, &[]);
    logs.push(drain(&mut daemon));
    // The last daemon reads what the killed ones left: every line of the two logs (they are
    // replayable), and the sessions' ends.
    let replayable = w.sudo.len() + w.failed.len();
    wait_for(
        &sock,
        "audit: 0 session(s) open",
        Duration::from_secs(30),
        &mut seen,
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let got = tail_all(&host)
            .iter()
            .filter(|e| e["process"]["cmd_line"].is_string() || e["status_id"] == 2)
            .count();
        if got >= replayable {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{got} of {replayable} log lines spooled"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    stop(&mut daemon);
    let logs: Vec<String> = logs.into_iter().map(|l| l.join().unwrap()).collect();
    for log in &logs {
        assert!(!log.contains("panicked"), "{log}");
    }

    let events = tail_all(&host);
    // Nothing twice: every id, and every source line, once.
    let mut uids = std::collections::BTreeSet::new();
    for e in &events {
        assert!(
            uids.insert(e["metadata"]["uid"].as_str().unwrap().to_string()),
            "spooled twice: {e:#}"
        );
    }
    let count = |pred: &dyn Fn(&Value) -> Option<String>| -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for e in &events {
            if let Some(k) = pred(e) {
                *m.entry(k).or_default() += 1;
            }
        }
        m
    };
    let once = |items: &[String]| -> BTreeMap<String, usize> {
        items.iter().map(|i| (i.clone(), 1)).collect()
    };
    assert_eq!(
        count(&|e| e["process"]["cmd_line"].as_str().map(String::from)),
        once(&w.sudo),
        "every sudo line once"
    );
    assert_eq!(
        count(&|e| (e["status_id"] == 2).then(|| session_of(e).to_string())),
        once(&w.failed),
        "every Run As failure once"
    );
    // Sessions: each start and end at most once, every recorded start ended. A session whose
    // whole life fell between two daemons' listings is not seen (documented); with five-second
    // lives and every other daemon running a pass, that is rare.
    let starts = count(&|e| {
        (e["activity_name"] == "Logon" && e["status_id"] != 2).then(|| session_of(e).to_string())
    });
    let ends = count(&|e| (e["activity_name"] == "Logoff").then(|| session_of(e).to_string()));
    assert!(
        starts.values().chain(ends.values()).all(|n| *n == 1),
        "{starts:?} {ends:?}"
    );
    assert_eq!(
        starts.keys().collect::<Vec<_>>(),
        ends.keys().collect::<Vec<_>>(),
        "every session recorded as started is recorded as ended"
    );
    assert!(starts.keys().all(|id| w.sessions.contains(id)));
    assert!(
        starts.len() * 10 >= w.sessions.len() * 8,
        "only {} of {} sessions seen",
        starts.len(),
        w.sessions.len()
    );
    assert_eq!(
        events.len(),
        replayable + starts.len() + ends.len(),
        "nothing else"
    );
    // Every event a daemon said it spooled is there (the log line is written after the append).
    let messages: std::collections::BTreeSet<&str> = events
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    let mut acknowledged = 0;
    for log in &logs {
        for line in log.lines() {
            let Some(m) = line.split(" audit: ").nth(1) else {
                continue;
            };
            if m.starts_with("sudo") || m.starts_with("session ") {
                acknowledged += 1;
                assert!(messages.contains(m), "acknowledged but not read back: {m}");
            }
        }
    }
    // A daemon killed between an append and its log line acknowledged less than it spooled.
    assert!(acknowledged > 0, "no daemon said it spooled anything");

    // A flipped byte in a record: the CRC catches it, the reader reports a gap and goes on.
    let spool = host.state.join("audit/spool");
    let segment = std::fs::read_dir(&spool)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .min()
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&segment, &bytes).unwrap();
    let after = tail_all(&host);
    let gaps: Vec<&Value> = after
        .iter()
        .filter(|e| {
            e["message"]
                .as_str()
                .unwrap_or_default()
                .contains("failed CRC32C")
        })
        .collect();
    assert_eq!(gaps.len(), 1, "one gap for one flipped byte");
    let lost = events.len() + 1 - after.len();
    assert!(
        (1..=2).contains(&lost),
        "{lost} records lost to one flipped byte"
    );
    let status = host.json(&["audit", "status", "--json"], 0);
    assert_eq!(status["spool"]["gaps"], 1, "{status:#}");
}

/// Every event the spool holds, in spool order.
fn tail_all(host: &Host) -> Vec<Value> {
    tail(host).into_iter().map(|(_, _, e)| e).collect()
}

#[test]
fn the_terminal_stream_is_recorded_once_redacted_and_without_control_sequences() {
    require_root!();
    let host = Host::new();
    let d = AgentDirs::new(host.dir());
    session_dirs(&d);
    configure(
        &host,
        &d,
        "enabled = false",
        "transcript = true\nredact = ['TOKEN=\\S+']",
    );
    let id = "alice-0c20c0d902585cf86";
    let ipc_dir = d
        .state
        .join(INSTANCE)
        .join("session/orchestration")
        .join(id)
        .join("Standard_Stream");
    std::fs::create_dir_all(&ipc_dir).unwrap();
    let ipc = ipc_dir.join("ipcTempFile.log");
    append(
        &ipc,
        "\u{1b}]0;alice@host: ~\u{7}\u{1b}[01;32malice@host\u{1b}[00m:~$ export TOKEN=s3cret\r\n",
    );
    start_session(&d.state, id, "alice");
    let notify = host.dir().join("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    let mut seen = Vec::new();
    let mut daemon = host.daemon(&notify, &[]);
    let log1 = drain(&mut daemon);
    // The start and the first piece.
    wait_for_seq(&sock, 1, 3, &mut seen);
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    // More output while the daemon is down; a long line over several pieces.
    let long = "x".repeat(10_000);
    append(
        &ipc,
        &format!("alice@host:~$ id\r\nuid=1001(alice)\r\n{long}\r\n"),
    );
    let mut daemon = host.daemon(&notify, &[]);
    let log2 = drain(&mut daemon);
    wait_for_seq(&sock, 1, 7, &mut seen);
    append(&ipc, "logout\r\n");
    end_session(&d.state, id);
    wait_for_seq(&sock, 0, 9, &mut seen);
    stop(&mut daemon);
    for log in [log1.join().unwrap(), log2.join().unwrap()] {
        assert!(!log.contains("panicked"), "{log}");
        assert!(!log.contains("s3cret"), "{log}");
    }
    let events = tail_all(&host);
    let output: Vec<&Value> = events
        .iter()
        .filter(|e| e["raw_data"].is_string())
        .collect();
    let text: String = output
        .iter()
        .map(|e| e["raw_data"].as_str().unwrap())
        .collect();
    assert_eq!(
        text,
        format!("alice@host:~$ export ***\nalice@host:~$ id\nuid=1001(alice)\n{long}\nlogout\n"),
        "every byte once, in order"
    );
    for e in &output {
        assert_eq!(e["session"]["uid"], id);
        assert_eq!(e["activity_id"], 99);
        assert!(e["raw_data"].as_str().unwrap().len() <= 4096);
    }
    let spool = std::fs::read_dir(host.state.join("audit/spool"))
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect::<Vec<_>>()
        .concat();
    assert!(
        !String::from_utf8_lossy(&spool).contains("s3cret"),
        "the secret reached the spool"
    );
}
