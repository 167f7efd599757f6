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

use common::{AgentDirs, Host, wait_for};
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

/// The agent's move: written to `pending/`, renamed into `current/`.
fn start_session(state: &Path, id: &str, user: &str) {
    let docs = state.join(INSTANCE).join("document/state");
    let pending = docs.join("pending").join(id);
    std::fs::write(&pending, state_file(id, user, std::process::id())).unwrap();
    std::fs::rename(&pending, docs.join("current").join(id)).unwrap();
}

fn end_session(state: &Path, id: &str) {
    std::fs::remove_file(state.join(INSTANCE).join("document/state/current").join(id)).unwrap();
}

/// `audit tail --json`: (activity, session id) of every event, in spool order.
fn tail(host: &Host) -> Vec<(String, String, Value)> {
    let out = host.ssmc(&["audit", "tail", "--json", "-n", "1000"]);
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

fn drain(child: &mut std::process::Child) -> std::thread::JoinHandle<String> {
    let mut stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    })
}

#[test]
fn sessions_are_recorded_once_across_kill_9_and_restarts() {
    require_root!();
    let host = Host::new();
    let d = AgentDirs::new(host.dir());
    for sub in ["pending", "current"] {
        std::fs::create_dir_all(d.state.join(INSTANCE).join("document/state").join(sub)).unwrap();
    }
    // Not sessions: a Run Command document, garbage, a FIFO (never opened blocking).
    let current = d.state.join(INSTANCE).join("document/state/current");
    std::fs::write(
        current.join("5f0c2a5e-command-0001"),
        state_file("5f0c2a5e-command-0001", "x", 1).replace("StartSession", "SendCommand"),
    )
    .unwrap();
    std::fs::write(current.join("junk-0002"), b"\x00\xff not json").unwrap();
    nix::unistd::mkfifo(&current.join("fifo-0003"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    std::fs::write(
        &host.config,
        format!(
            "[aws]\nimds_endpoint = \"http://127.0.0.1:9\"\nregion = \"us-east-1\"\n[accounts]\nenabled = false\n[health]\nenabled = false\n[audit]\nenabled = true\nrescan_interval = \"1s\"\n{}",
            d.paths_toml(&host.state)
        ),
    )
    .unwrap();
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

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    daemon.wait().unwrap();
    let log2 = log2.join().unwrap();
    for log in [&log1, &log2] {
        assert!(!log.contains("panicked"), "{log}");
    }
    assert!(log2.contains("audit: on; spool at seq 3"), "{log2}");
}
