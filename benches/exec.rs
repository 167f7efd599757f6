//! `cargo bench --bench exec` (root): the exec capture's figures, per backend.
//!
//! 1. Cost on a fork+exec storm: 3,000 serial `/bin/true` run by a shell, in a stand-in session
//!    and outside any, with no daemon, with the daemon on eBPF and on the proc connector —
//!    µs per exec, rounds interleaved so the modes are compared side by side.
//! 2. The per-syscall cost left on other processes: `getppid()` in a process started after the
//!    daemon (a kernel audit rule made every syscall of new processes 56 % slower; these backends
//!    should cost nothing).
//! 3. Loss and the daemon's CPU: bursts of 10,000 and 100,000 `/bin/true` (50 at a time) in a
//!    session — events recorded against the execs run, and daemon CPU per 1,000 execs.
//! 4. The kernel-audit backend on a host whose auditd already has an execve rule (loaded here
//!    with auditctl, and taken out after): the storm and `getppid()` with no rule, with the rule
//!    and no daemon, and with the rule and the daemon reading — the reader must add nothing to
//!    what the rule already costs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    clippy::cast_possible_truncation
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{AgentDirs, AuditRule, Host, cpu_ticks, drain, execve_rule, stop, wait_for};

const STORM: usize = 3000;
const ROUNDS: usize = 3;

/// The session's document-state file, as the agent writes it while the session runs.
fn session_file(d: &AgentDirs, id: &str) {
    let docs = d.state.join("i-0123456789abcdef0/document/state/current");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(
        docs.join(id),
        format!(
            r#"{{"DocumentInformation": {{"DocumentID": "{id}", "InstanceID": "i-0123456789abcdef0",
 "DocumentName": "SSM-SessionManagerRunShell", "RunAsUser": "root",
 "SessionOwner": "arn:aws:iam::123456789012:user/bench"}}, "DocumentType": "StartSession",
 "InstancePluginsInformation": [{{"Configuration": {{"SessionId": "{id}",
 "PluginName": "Standard_Stream", "SessionOwner": "arn:aws:iam::123456789012:user/bench"}}}}]}}"#
        ),
    )
    .unwrap();
}

fn configure(host: &Host, d: &AgentDirs, backend: &str) {
    std::fs::write(
        &host.config,
        format!(
            "[aws]\nimds_endpoint = \"http://127.0.0.1:9\"\nregion = \"us-east-1\"\n[accounts]\nenabled = false\n[health]\nenabled = false\n[audit]\nenabled = true\nprivilege = false\nexec_backend = \"{backend}\"\n{}",
            d.paths_toml(&host.state)
        ),
    )
    .unwrap();
}

struct Running {
    daemon: std::process::Child,
    log: std::thread::JoinHandle<String>,
    _sock: UnixDatagram,
}

fn start(host: &Host, backend: &str) -> Running {
    let notify = host.dir().join("notify.sock");
    let _ = std::fs::remove_file(&notify);
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
    Running {
        daemon,
        log,
        _sock: sock,
    }
}

fn finish(mut r: Running) -> String {
    stop(&mut r.daemon);
    r.log.join().unwrap()
}

/// µs per exec of the storm, run by `worker` as session `id` (or by a plain shell).
fn storm(host: &Host, worker: Option<(&Path, &str)>) -> f64 {
    let script = format!("i=0; while [ $i -lt {STORM} ]; do /bin/true; i=$((i+1)); done");
    let t = Instant::now();
    match worker {
        Some((bin, id)) => {
            let mut w = host.spawn(bin, &[id, &script]);
            assert!(w.wait().unwrap().success());
        }
        None => {
            host.sh_ok(&script);
        }
    }
    t.elapsed().as_secs_f64() * 1e6 / STORM as f64
}

/// ns per `getppid()` in a new process (this benchmark run again with BENCH_GETPPID set).
fn getppid_ns() -> f64 {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env("BENCH_GETPPID", "1")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn time_getppid() {
    let n = 5_000_000u32;
    let t = Instant::now();
    let mut sum = 0u64;
    for _ in 0..n {
        sum = sum.wrapping_add(u64::from(nix::unistd::getppid().as_raw().unsigned_abs()));
    }
    std::hint::black_box(sum);
    println!("{:.1}", t.elapsed().as_secs_f64() * 1e9 / f64::from(n));
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn exec_events(host: &Host) -> u64 {
    let out = host.ssmc(&["audit", "status", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    doc["sources"]["exec"]["events"].as_u64().unwrap_or(0)
}

/// A burst of `n` in a session: (events recorded of the n + 4 execs, daemon CPU s).
fn burst(host: &Host, d: &AgentDirs, bin: &Path, backend: &str, n: usize) -> (u64, u64, f64) {
    configure(host, d, backend);
    let r = start(host, backend);
    let before = exec_events(host);
    let pid = r.daemon.id();
    let c0 = cpu_ticks(pid);
    let id = format!("burst-0a0b0c0d0e0f{n:05}");
    session_file(d, &id);
    let script = format!("seq {n} | xargs -n1 -P 50 /bin/true");
    let mut w = host.spawn(bin, &[&id, &script]);
    assert!(w.wait().unwrap().success());
    // Until the count stops moving for 3 s.
    let mut last = (0, Instant::now());
    loop {
        let now = exec_events(host);
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(3) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let cpu = (cpu_ticks(pid) - c0) as f64 / 100.0;
    let log = finish(r);
    if log.contains("ERROR") {
        println!("{log}");
    }
    // The shell, seq, xargs and the burst.
    (last.0 - before, n as u64 + 3, cpu)
}

fn main() {
    if std::env::var_os("BENCH_GETPPID").is_some() {
        time_getppid();
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    assert!(common::is_root(), "run as root");
    let host = Host::new();
    let d = AgentDirs::new(host.dir());
    let bin: PathBuf = host.dir().join("ssm-session-worker");
    common::compile_support("ssm-session-worker.c", &bin, &["-O2"], &["-lutil"]);

    // 1 and 2, interleaved: no daemon, eBPF, the proc connector.
    let modes = ["none", "ebpf", "proc-connector"];
    let mut inside = vec![Vec::new(); modes.len()];
    let mut outside = vec![Vec::new(); modes.len()];
    let mut ppid = vec![Vec::new(); modes.len()];
    for round in 0..ROUNDS {
        for (m, mode) in modes.iter().enumerate() {
            let running = (*mode != "none").then(|| {
                configure(&host, &d, mode);
                start(&host, mode)
            });
            let id = format!("storm-0a0b0c0d0e0f{round}{m}");
            session_file(&d, &id);
            inside[m].push(storm(&host, Some((&bin, &id))));
            outside[m].push(storm(&host, None));
            ppid[m].push(getppid_ns());
            if let Some(r) = running {
                finish(r);
            }
        }
    }
    println!("fork+exec+wait of /bin/true, {STORM} serial, median of {ROUNDS} interleaved rounds:");
    let (base_in, base_out, base_ppid) = (
        median(inside[0].clone()),
        median(outside[0].clone()),
        median(ppid[0].clone()),
    );
    for (m, mode) in modes.iter().enumerate() {
        let (i, o, p) = (
            median(inside[m].clone()),
            median(outside[m].clone()),
            median(ppid[m].clone()),
        );
        println!(
            "  {mode:15} in a session {i:7.1} µs/exec ({:.2}×), outside {o:7.1} µs/exec ({:.2}×); getppid {p:6.1} ns ({:.2}×)",
            i / base_in,
            o / base_out,
            p / base_ppid
        );
    }

    audit_backend(&host, &d, &bin);

    // 3. Loss and CPU.
    for backend in ["ebpf", "proc-connector"] {
        for n in [10_000, 100_000] {
            let (got, want, cpu) = burst(&host, &d, &bin, backend, n);
            println!(
                "{backend:15} burst of {n} (50 at a time): {got} of {want} execs recorded ({} lost), daemon CPU {cpu:.2} s = {:.1} ms per 1,000 execs",
                want.saturating_sub(got),
                cpu * 1000.0 / (want as f64 / 1000.0)
            );
        }
    }
}

/// 4: the storm and `getppid()` with no audit rule, with an execve rule (what auditd on AL2 or
/// RHEL has) and no daemon, and with the rule and the daemon on the kernel-audit backend.
fn audit_backend(host: &Host, d: &AgentDirs, bin: &Path) {
    let modes = ["no rule", "rule", "rule + daemon"];
    let mut inside = vec![Vec::new(); modes.len()];
    let mut ppid = vec![Vec::new(); modes.len()];
    for round in 0..ROUNDS {
        for (m, mode) in modes.iter().enumerate() {
            let rule = (m > 0)
                .then(|| AuditRule::load(&execve_rule(&[], "ssmc-exec-bench"), "ssmc-exec-bench"));
            let running = (m == 2).then(|| {
                configure(host, d, "audit");
                start(host, "audit")
            });
            let id = format!("audit-0a0b0c0d0e0f{round}{m}");
            session_file(d, &id);
            inside[m].push(storm(host, Some((bin, &id))));
            ppid[m].push(getppid_ns());
            if let Some(r) = running {
                let log = finish(r);
                assert!(!log.contains("ERROR"), "{mode}: {log}");
            }
            drop(rule);
        }
    }
    println!(
        "the kernel-audit backend beside an execve rule for every process, median of {ROUNDS} interleaved rounds:"
    );
    let (base_in, base_ppid) = (median(inside[0].clone()), median(ppid[0].clone()));
    let (rule_in, rule_ppid) = (median(inside[1].clone()), median(ppid[1].clone()));
    for (m, mode) in modes.iter().enumerate() {
        let (i, p) = (median(inside[m].clone()), median(ppid[m].clone()));
        println!(
            "  {mode:15} in a session {i:7.1} µs/exec ({:.2}× no rule, {:.2}× rule); getppid {p:6.1} ns ({:.2}× no rule, {:.2}× rule)",
            i / base_in,
            i / rule_in,
            p / base_ppid,
            p / rule_ppid
        );
    }
}
