//! Exec capture end to end, with the kernel's real interfaces (root, the initial user, pid and
//! network namespaces; the daemon in a private mount namespace): a stand-in
//! `ssm-session-worker` on a real pty runs the session's commands, and `audit tail --json`
//! reads back what the daemon spooled. Other tests' processes run on this machine at the same
//! time: every assertion is about this test's own session (or markers), never global counts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::disallowed_methods)] // tests start programs directly

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{AgentDirs, AuditRule, Host, audit_state, drain, execve_rule, stop, wait_for};
use serde_json::Value;

const INSTANCE: &str = "i-0123456789abcdef0";

/// One test at a time: a 10,000-process burst of one test starves another's daemon on 2 cores
/// (the proc connector then loses events, as measured), and each daemon sees every test's
/// sessions.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// A document-state file naming the session's worker (as in audit_e2e.rs).
fn start_session(state: &Path, id: &str, user: &str, worker: u32) {
    let docs = state.join(INSTANCE).join("document/state");
    for sub in ["pending", "current"] {
        std::fs::create_dir_all(docs.join(sub)).unwrap();
    }
    let body = format!(
        r#"{{"DocumentInformation": {{"DocumentID": "{id}", "InstanceID": "{INSTANCE}",
  "CreatedDate": "2026-12-05T10:00:00.000Z", "DocumentName": "SSM-SessionManagerRunShell",
  "DocumentStatus": "InProgress", "RunAsUser": "{user}",
  "SessionOwner": "arn:aws:iam::123456789012:user/{user}",
  "ProcInfo": {{"Pid": {worker}, "StartTime": "2026-12-05T10:00:01Z"}}}},
 "DocumentType": "StartSession", "SchemaVersion": "1.0",
 "InstancePluginsInformation": [{{"Configuration": {{"SessionId": "{id}",
   "PluginName": "Standard_Stream", "RunAsEnabled": true, "RunAsUser": "{user}",
   "SessionOwner": "arn:aws:iam::123456789012:user/{user}"}}, "Name": "Standard_Stream"}}]}}"#
    );
    let pending = docs.join("pending").join(id);
    std::fs::write(&pending, body).unwrap();
    std::fs::rename(&pending, docs.join("current").join(id)).unwrap();
}

/// A host with the daemon's config: audit on with exec capture by `backend` in `scope`.
fn configure(host: &Host, d: &AgentDirs, backend: &str, scope: &str) {
    std::fs::write(
        &host.config,
        format!(
            "[aws]\nimds_endpoint = \"http://127.0.0.1:9\"\nregion = \"us-east-1\"\n[accounts]\nenabled = false\n[health]\nenabled = false\n[audit]\nenabled = true\nrescan_interval = \"1s\"\nprivilege = false\nexec_backend = \"{backend}\"\nexec_scope = \"{scope}\"\n{}",
            d.paths_toml(&host.state)
        ),
    )
    .unwrap();
}

/// The stand-in worker, built once per test.
fn worker_bin(host: &Host) -> PathBuf {
    let bin = host.dir().join("ssm-session-worker");
    common::compile_support("ssm-session-worker.c", &bin, &["-O2"], &["-lutil"]);
    bin
}

/// Every event `audit tail --json` prints.
fn tail(host: &Host) -> Vec<Value> {
    let out = host.ssmc(&["audit", "tail", "--json", "-n", "1000000"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The exec events (Process Activity from the exec source).
fn commands(events: &[Value]) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| e["metadata"]["log_name"] == "exec")
        .collect()
}

/// Asserts that no exec event was lost (no gap event of the exec source).
fn assert_no_gaps(events: &[Value]) {
    let gaps: Vec<_> = events
        .iter()
        .filter(|e| e["metadata"]["log_name"] == "exec" && e["class_uid"] == 1008)
        .collect();
    assert!(
        gaps.is_empty(),
        "the kernel or the spool lost events: {gaps:#?}"
    );
}

fn argv_has(e: &Value, marker: &str) -> bool {
    e["process"]["cmd_line"]
        .as_str()
        .is_some_and(|c| c.contains(marker))
}

/// Waits until `audit tail` holds events satisfying `done` (the daemon spools in batches).
fn wait_events(
    host: &Host,
    what: &str,
    timeout: Duration,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let events = tail(host);
        if done(&events) {
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not spooled within {timeout:?}; {} exec event(s) so far",
            commands(&events).len()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn wait_file(p: &Path, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !p.exists() {
        assert!(Instant::now() < deadline, "{} never appeared", p.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts the daemon and waits for its exec capture to run with `backend`.
fn start_daemon(
    host: &Host,
    backend: &str,
) -> (
    std::process::Child,
    std::thread::JoinHandle<String>,
    UnixDatagram,
) {
    let notify = host.dir().join("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    let mut daemon = host.daemon(&notify, &[]);
    let log = drain(&mut daemon);
    let mut seen = Vec::new();
    wait_for(
        &sock,
        &format!("exec {backend}"),
        Duration::from_secs(60),
        &mut seen,
    );
    (daemon, log, sock)
}

const BURST: usize = 10_000;

/// A digit per backend, for session ids and markers of their own.
fn tag(backend: &str) -> u8 {
    if backend == "ebpf" { 4 } else { 3 }
}

/// A burst of 10,000 short processes in a session (50 at a time): every exec is recorded,
/// once, attributed to the session and its IAM principal; nothing is lost. With the proc
/// connector, argv is read from /proc afterwards: its completeness is measured and printed.
#[test]
fn a_burst_of_short_commands_in_a_session_is_recorded_whole_by_ebpf() {
    require_root!();
    let _one = serial();
    let complete = burst("ebpf");
    assert_eq!(
        complete, BURST,
        "eBPF reads argv in the kernel: every one whole"
    );
}

#[test]
fn a_burst_of_short_commands_in_a_session_is_recorded_whole_by_the_proc_connector() {
    require_root!();
    let _one = serial();
    burst("proc-connector");
}

/// Runs the burst with `backend`; returns how many of its execs have their argv whole.
fn burst(backend: &str) -> usize {
    let host = Host::new();
    let d = AgentDirs::new(host.dir());
    configure(&host, &d, backend, "sessions");
    let bin = worker_bin(&host);
    let (mut daemon, log, _sock) = start_daemon(&host, backend);

    // Tests run side by side: each backend's session has its own id.
    let id: &str = &format!("alice-0b0a5f1e2d3c4b5a{}", tag(backend));
    let done = host.dir().join("burst-done");
    let script = format!(
        "seq {BURST} | xargs -n1 -P 50 /bin/true; exec /bin/touch {}",
        done.display()
    );
    let mut worker = host.spawn(&bin, &[id, &script]);
    start_session(&d.state, id, "alice", worker.id());
    wait_file(&done, Duration::from_secs(300));
    assert!(worker.wait().unwrap().success());
    // sh, seq, xargs, the burst and touch.
    let want = BURST + 4;
    let events = wait_events(&host, "the burst", Duration::from_secs(120), |ev| {
        commands(ev)
            .iter()
            .filter(|e| e["process"]["session"]["uid"] == id)
            .count()
            >= want
    });
    stop(&mut daemon);
    let log = log.join().unwrap();
    let ours: Vec<_> = commands(&events)
        .into_iter()
        .filter(|e| e["process"]["session"]["uid"] == id)
        .collect();
    assert_eq!(ours.len(), want, "exec events of the session; log:\n{log}");
    assert_no_gaps(&events);
    for e in &ours {
        assert_eq!(e["class_uid"], 1007);
        assert_eq!(e["activity_id"], 1);
        assert_eq!(
            e["actor"]["user"]["uid"], "arn:aws:iam::123456789012:user/alice",
            "{e}"
        );
        assert_eq!(e["process"]["session"]["uid"], id);
    }
    let complete = ours
        .iter()
        .filter(|e| e["unmapped"]["exec"]["argv_complete"] == true && argv_has(e, "/bin/true "))
        .count();
    // Whole events never lie: a complete argv is the burst's `/bin/true N` with N in range.
    for e in ours.iter().filter(|e| argv_has(e, "/bin/true ")) {
        let n: usize = e["process"]["cmd_line"].as_str().unwrap()["/bin/true ".len()..]
            .parse()
            .unwrap();
        assert!((1..=BURST).contains(&n), "{e}");
    }
    println!(
        "{backend}: {} exec events of the session ({BURST} in the burst), argv readable for {complete} of the burst ({:.1} %)",
        ours.len(),
        complete as f64 * 100.0 / BURST as f64
    );
    complete
}

/// The attribution cases of the reference (audit-capture.md §4), typed in one session: each
/// `sleep 3.00N` is a process that left its parent, its sid or its terminal in another way, and
/// each is recorded with the session. A 1 ms command, and one run by a background job after
/// its shell has exited, too.
#[test]
fn commands_that_leave_the_shell_are_still_the_sessions_with_ebpf() {
    require_root!();
    let _one = serial();
    let (with_argv, _) = lineage("ebpf");
    assert_eq!(
        with_argv, 2,
        "eBPF reads argv in the kernel: both 1 ms runs whole"
    );
}

#[test]
fn commands_that_leave_the_shell_are_still_the_sessions_with_the_proc_connector() {
    require_root!();
    let _one = serial();
    lineage("proc-connector");
}

/// Runs the cases with `backend`; returns how many of the two 1 ms commands have their argv,
/// and how many of the session's events are unread.
fn lineage(backend: &str) -> (usize, usize) {
    let host = Host::new();
    let d = AgentDirs::new(host.dir());
    configure(&host, &d, backend, "sessions");
    let bin = worker_bin(&host);
    let one_ms = host.dir().join("one-ms-marker");
    std::fs::copy("/bin/sleep", &one_ms).unwrap();
    let (mut daemon, log, _sock) = start_daemon(&host, backend);

    let id: &str = &format!("bob-0d1c2b3a495867f0{}", tag(backend));
    let t = tag(backend);
    let dir = host.dir().display().to_string();
    let q = "</dev/null >/dev/null 2>&1";
    let script = format!(
        "trap '' HUP
         sleep {t}.001 {q} &
         sh -c 'sleep {t}.002; true' {q} &
         (sh -c 'sleep {t}.003; true' {q} &)
         nohup sleep {t}.004 {q} &
         setsid sleep {t}.005 {q} &
         setsid sh -c 'sh -c \"sleep {t}.006\" {q} &' {q} &
         sudo -u nobody sleep {t}.007 {q} &
         script -qfc 'sleep {t}.008' /dev/null {q} &
         TERM=xterm tmux -S {dir}/tmux.sock new-session -d 'sleep {t}.009'
         sh -c 'sleep 1; exec {m} 0.001' {q} &
         {m} 0.001
         exit 0",
        m = one_ms.display()
    );
    let mut worker = host.spawn(&bin, &[id, &script]);
    start_session(&d.state, id, "bob", worker.id());
    let _ = worker.wait().unwrap();
    let marker = |n: usize| format!("sleep {t}.00{n}");
    let events = wait_events(&host, "the nine cases", Duration::from_secs(60), |ev| {
        (1..=9).all(|n| commands(ev).iter().any(|e| argv_has(e, &marker(n))))
    });
    // The tmux server outlives everything: stop it.
    let _ = host.sh(&format!("tmux -S {dir}/tmux.sock kill-server"));
    stop(&mut daemon);
    let log = log.join().unwrap();
    let ours: Vec<_> = commands(&events)
        .into_iter()
        .filter(|e| e["process"]["session"]["uid"] == id)
        .collect();
    for n in 1..=9 {
        let m = marker(n);
        let hits: Vec<_> = commands(&events)
            .into_iter()
            .filter(|e| e["process"]["cmd_line"] == m.as_str())
            .collect();
        let gaps: Vec<_> = events.iter().filter(|e| e["class_uid"] == 1008).collect();
        assert_eq!(
            hits.len(),
            1,
            "`{m}` recorded once: {hits:#?}\ngaps: {gaps:#?}\nthe session's: {:#?}\n{log}",
            ours.iter()
                .map(|e| &e["process"]["cmd_line"])
                .collect::<Vec<_>>()
        );
        assert_eq!(
            hits[0]["process"]["session"]["uid"], id,
            "`{m}`: {}",
            hits[0]
        );
        assert_eq!(
            hits[0]["actor"]["user"]["uid"],
            "arn:aws:iam::123456789012:user/bob"
        );
    }
    // sudo's command runs as nobody.
    let sudo = ours
        .iter()
        .find(|e| e["process"]["cmd_line"] == marker(7).as_str())
        .unwrap();
    assert_eq!(sudo["process"]["user"]["name"], "nobody", "{sudo}");
    // The two 1 ms runs: recorded with the session, whole, or marked unread when the process
    // was gone before /proc was read (the proc connector's limit; never dropped).
    let one = ours
        .iter()
        .filter(|e| e["process"]["cmd_line"] == format!("{} 0.001", one_ms.display()).as_str())
        .count();
    let unread = ours
        .iter()
        .filter(|e| e["unmapped"]["exec"]["argv_complete"] == false)
        .count();
    assert!(
        one + unread >= 2,
        "the 1 ms commands: {one} with argv, {unread} unread"
    );
    assert!(
        commands(&events)
            .iter()
            .all(|e| !argv_has(e, &one_ms.display().to_string())
                || e["process"]["session"]["uid"] == id),
        "a 1 ms command attributed elsewhere"
    );
    (one, unread)
}

/// One process that execs program after program (3,000 in about a second, each with its own
/// argv): with the proc connector the argv is read from `/proc` afterwards, when the process may
/// already run the next program. Each recorded command line must be its own exec's or marked
/// unread: never a later program's (it was, across the daemon's read batches, before the
/// capture held each command until no later exec could be on its way).
#[test]
fn a_chain_of_execs_in_one_process_never_gets_another_programs_argv() {
    require_root!();
    let _one = serial();
    let host = Host::new();
    let d = AgentDirs::new(host.dir());
    configure(&host, &d, "proc-connector", "sessions");
    let bin = worker_bin(&host);
    let chain = host.dir().join("exec-chain");
    common::compile_support("exec-chain.c", &chain, &["-O2"], &[]);
    let (mut daemon, log, _sock) = start_daemon(&host, "proc-connector");

    const LIMIT: usize = 3000;
    let id = "dave-0c1d2e3f4a5b6c7d8";
    let done = host.dir().join("chain-done");
    let script = format!("exec {} 1 {LIMIT} {}", chain.display(), done.display());
    let mut worker = host.spawn(&bin, &[id, &script]);
    start_session(&d.state, id, "dave", worker.id());
    wait_file(&done, Duration::from_secs(120));
    assert!(worker.wait().unwrap().success());
    // The shell, the chain, touch.
    let want = LIMIT + 2;
    let ours = |ev: &[Value]| -> Vec<Value> {
        commands(ev)
            .into_iter()
            .filter(|e| e["process"]["session"]["uid"] == id)
            .cloned()
            .collect()
    };
    let events = wait_events(&host, "the chain", Duration::from_secs(60), |ev| {
        ours(ev).len() >= want
    });
    stop(&mut daemon);
    let log = log.join().unwrap();
    assert_no_gaps(&events);
    let ours = ours(&events);
    assert_eq!(ours.len(), want, "exec events of the session; log:\n{log}");
    let pid = &ours[0]["process"]["pid"];
    let mut expected = vec![format!("sh -c '{script}'")];
    expected
        .extend((1..=LIMIT).map(|n| format!("{} {n} {LIMIT} {}", chain.display(), done.display())));
    expected.push(format!("touch {}", done.display()));
    let mut whole = 0;
    for (i, (e, want)) in ours.iter().zip(&expected).enumerate() {
        assert_eq!(&e["process"]["pid"], pid, "one process: {e}");
        if e["unmapped"]["exec"]["argv_complete"] == false {
            assert!(e["process"]["cmd_line"].is_null(), "unread, yet: {e}");
            continue;
        }
        whole += 1;
        assert_eq!(
            e["process"]["cmd_line"].as_str(),
            Some(want.as_str()),
            "exec #{i} of the chain recorded with another program's argv"
        );
    }
    println!(
        "proc-connector: {whole} of {want} execs of one chain with their argv, the rest unread"
    );
}

/// With `exec_scope = "all"`: a process that escaped its session before the daemon started
/// (reparented to PID 1 and in its own sid) is recorded as unattributed, never guessed; one that
/// kept the session shell's sid is the session's; a program of no session is recorded without
/// one.
#[test]
fn a_process_that_escaped_before_the_daemon_started_is_unattributed_with_ebpf() {
    require_root!();
    let _one = serial();
    escaped("ebpf");
}

#[test]
fn a_process_that_escaped_before_the_daemon_started_is_unattributed_with_the_proc_connector() {
    require_root!();
    let _one = serial();
    escaped("proc-connector");
}

fn escaped(backend: &str) {
    let host = Host::new();
    let d = AgentDirs::new(host.dir());
    configure(&host, &d, backend, "all");
    let bin = worker_bin(&host);
    let id: &str = &format!("carol-0e1d2c3b4a596870{}", tag(backend));
    let q = "</dev/null >/dev/null 2>&1";
    let ready = host.dir().join("escaped");
    let script = format!(
        "trap '' HUP
         (setsid sh -c 'sleep 6; exec sh -c \"sleep 0.5; true\" escaped-marker-{backend}' {q} &)
         (sh -c 'sleep 6; exec sh -c \"sleep 0.5; true\" kept-sid-marker-{backend}' {q} &)
         touch {}
         sleep 12",
        ready.display()
    );
    let mut worker = host.spawn(&bin, &[id, &script]);
    start_session(&d.state, id, "carol", worker.id());
    wait_file(&ready, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    // The daemon starts after both have left the shell's children.
    let (mut daemon, log, _sock) = start_daemon(&host, backend);
    // Not the script's last command: a shell execs its last command in its own process, and of
    // two execs of one pid in a row the proc connector records the first unread (its argv is
    // read afterwards), so the marker would not be found.
    host.sh_ok(&format!(
        "sh -c 'sleep 0.5; true' no-session-marker-{backend}; true"
    ));
    let events = wait_events(&host, "the markers", Duration::from_secs(60), |ev| {
        ["escaped-marker", "kept-sid-marker", "no-session-marker"]
            .iter()
            .map(|m| format!("{m}-{backend}"))
            .all(|m| commands(ev).iter().any(|e| argv_has(e, &m)))
    });
    let _ = worker.kill();
    let _ = worker.wait();
    stop(&mut daemon);
    let log = log.join().unwrap();
    let find = |m: &str| {
        let hits: Vec<_> = commands(&events)
            .into_iter()
            .filter(|e| e["process"]["cmd_line"] == format!("sh -c 'sleep 0.5; true' {m}").as_str())
            .collect();
        assert_eq!(hits.len(), 1, "{m}: {hits:#?}\n{log}");
        hits[0].clone()
    };
    let kept = find(&format!("kept-sid-marker-{backend}"));
    assert_eq!(kept["process"]["session"]["uid"], id, "{kept}");
    for m in [
        format!("escaped-marker-{backend}"),
        format!("no-session-marker-{backend}"),
    ] {
        let e = find(&m);
        assert!(e["process"]["session"].is_null(), "{m} attributed: {e}");
        assert_eq!(e["unmapped"]["exec"]["attributed"], false);
        assert!(
            e["metadata"]["labels"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l == "exec:unattributed"),
            "{e}"
        );
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .contains("outside any session")
        );
    }
}

/// The backend chosen when the better ones cannot run here (the daemon started without their
/// capabilities, as a unit without them would start it): `auto` falls back in order, a named
/// backend that cannot run leaves the capture off; the STATUS line, `audit status` (text and
/// JSON) say which runs and why each better one was not used.
#[test]
fn the_backend_falls_back_and_says_why() {
    require_root!();
    let _one = serial();
    let no_bpf = "-bpf,-perfmon,-sys_admin";
    // (audit.exec_backend, capabilities dropped, the backend that runs, those tried: why)
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, &'a [(&'a str, &'a str)]);
    let cases: [Case; 4] = [
        (
            "auto",
            no_bpf,
            Some("proc-connector"),
            &[("ebpf", "CAP_BPF")],
        ),
        ("ebpf", no_bpf, None, &[("ebpf", "CAP_BPF")]),
        (
            "proc-connector",
            "-net_admin",
            None,
            &[("proc-connector", "CAP_NET_ADMIN")],
        ),
        (
            "auto",
            "-bpf,-perfmon,-sys_admin,-net_admin",
            None,
            &[("ebpf", "CAP_BPF"), ("proc-connector", "CAP_NET_ADMIN")],
        ),
    ];
    for (setting, drop, runs, tried) in cases {
        let host = Host::new();
        let d = AgentDirs::new(host.dir());
        configure(&host, &d, setting, "sessions");
        let notify = host.dir().join("notify.sock");
        let sock = UnixDatagram::bind(&notify).unwrap();
        let bounding = format!("--bounding-set={drop}");
        let mut daemon = host.daemon_under(&["setpriv", &bounding], &notify, &[]);
        let log = drain(&mut daemon);
        let mut seen = Vec::new();
        let line = wait_for(
            &sock,
            &format!("exec {}", runs.unwrap_or("off")),
            Duration::from_secs(60),
            &mut seen,
        );
        let out = host.ssmc(&["audit", "status", "--json"]);
        let text = host.ssmc(&["audit", "status"]);
        stop(&mut daemon);
        let log = log.join().unwrap();
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        let exec = &doc["exec"];
        let case = format!("{setting} without {drop}: {exec}\n{line}\n{log}");
        assert_eq!(exec["backend"].as_str(), runs, "{case}");
        let got = exec["tried"].as_array().unwrap();
        assert_eq!(got.len(), tried.len(), "{case}");
        for ((name, needs), t) in tried.iter().zip(got) {
            assert_eq!(t["backend"], *name, "{case}");
            assert!(t["why"].as_str().unwrap().contains(needs), "{case}");
        }
        let text = String::from_utf8_lossy(&text.stdout).into_owned();
        match runs {
            Some(b) => assert!(text.contains(&format!("exec capture: {b}")), "{text}"),
            None => {
                assert!(text.contains("exec capture: none running"), "{text}");
                assert!(log.contains("no exec backend works here"), "{log}");
            }
        }
        for (name, _) in tried {
            assert!(text.contains(&format!("  {name} not used: ")), "{text}");
        }
    }
}

/// The kernel-audit backend beside an "auditd" (the test's own execve rule, scoped to its
/// session by a login uid): the session's commands are recorded with their argv and session,
/// and the daemon — killed with SIGKILL — leaves the kernel's audit state exactly as it found it.
#[test]
fn the_audit_backend_reads_beside_auditd_and_changes_nothing() {
    require_root!();
    let _one = serial();
    let rule = AuditRule::load(
        &execve_rule(&["-F", "auid=4242"], "ssmc-exec-test"),
        "ssmc-exec-test",
    );
    let original = rule.original().clone();
    let with_rule = audit_state();

    let host = Host::new();
    let d = AgentDirs::new(host.dir());
    configure(&host, &d, "audit", "sessions");
    let bin = worker_bin(&host);
    let id = "dave-0f1e2d3c4b5a69781";
    let gate = host.dir().join("gate");
    let done = host.dir().join("done");
    // The shell takes login uid 4242 (the rule's scope), waits for the daemon, then runs.
    let script = format!(
        "echo 4242 > /proc/self/loginuid
         until [ -e {g} ]; do sleep 0.05; done
         /bin/echo audit-marker-1 'two words' >/dev/null
         sh -c '/bin/true audit-marker-2; /bin/true audit-marker-3'
         exec /bin/touch {done}",
        g = gate.display(),
        done = done.display()
    );
    let mut worker = host.spawn(&bin, &[id, &script]);
    start_session(&d.state, id, "dave", worker.id());
    let (mut daemon, log, _sock) = start_daemon(&host, "audit");
    std::fs::write(&gate, "").unwrap();
    wait_file(&done, Duration::from_secs(30));
    let _ = worker.wait();
    let events = wait_events(
        &host,
        "the audited commands",
        Duration::from_secs(60),
        |ev| {
            (1..=3).all(|n| {
                commands(ev)
                    .iter()
                    .any(|e| argv_has(e, &format!("audit-marker-{n}")))
            })
        },
    );
    // SIGKILL: nothing to clean up, nothing was changed.
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    let log = log.join().unwrap();
    assert_eq!(
        audit_state(),
        with_rule,
        "the daemon changed the audit state\n{log}"
    );
    let find = |cmd: &str| {
        let hits: Vec<_> = commands(&events)
            .into_iter()
            .filter(|e| e["process"]["cmd_line"] == cmd)
            .collect();
        assert_eq!(hits.len(), 1, "`{cmd}` once: {hits:#?}\n{log}");
        hits[0].clone()
    };
    for cmd in [
        "/bin/echo audit-marker-1 'two words'",
        "/bin/true audit-marker-2",
        "/bin/true audit-marker-3",
    ] {
        let e = find(cmd);
        assert_eq!(e["process"]["session"]["uid"], id, "{e}");
        assert_eq!(
            e["actor"]["user"]["uid"],
            "arn:aws:iam::123456789012:user/dave"
        );
        assert_eq!(e["unmapped"]["exec"]["argv_complete"], true);
    }
    drop(rule);
    assert_eq!(
        audit_state(),
        original,
        "the kernel's audit state was not restored"
    );
}
