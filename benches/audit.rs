//! `cargo bench --bench audit` (root): the audit capability's figures.
//!
//! 1. Spool append throughput on one core with the documented fsync policy (group commit:
//!    `fdatasync` at least every second, `sync_if_due` after every append), against an
//!    `fdatasync` after every record; ~1 KiB events (a sudo event as spooled).
//! 2. Event → spool latency of the journal source, in process: one sudo journal line parsed,
//!    attributed (the /proc walk and the pts scan of this machine's real /proc), redacted, checked
//!    against the built-in alert rules and appended — p50/p99 per event.
//! 3. The daemon with audit on (a private journald, the real binary): RSS and CPU idle over
//!    `BENCH_IDLE_SECS` (default 30), then with real `sudo` runs at 100/s for 20 s — the daemon's
//!    CPU and its journalctl child's, and that every run was spooled.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    clippy::cast_possible_truncation
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{AgentDirs, Host, cpu_ticks, rss_kib, wait_for};

use ssm_companion::audit::collector::Host as AuditHost;
use ssm_companion::audit::journal::{self, Line};
use ssm_companion::audit::spool::{Options, Spool};

fn body() -> Vec<u8> {
    serde_json::to_vec(&ssm_companion::audit::examples()[0]).unwrap()
}

fn throughput(n: u64, every_record: bool) -> f64 {
    let dir = tempfile::Builder::new()
        .prefix("ssmc-bench-spool")
        .tempdir_in("/var/tmp")
        .unwrap();
    let mut spool = Spool::open(&dir.path().join("spool"), Options::default()).unwrap();
    let body = body();
    let t = Instant::now();
    for i in 0..n {
        spool.append("bench", &i.to_string(), &body).unwrap();
        if every_record {
            spool.sync().unwrap();
        } else {
            spool.sync_if_due().unwrap();
        }
    }
    spool.sync().unwrap();
    n as f64 / t.elapsed().as_secs_f64()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn latency(n: usize) -> (Duration, Duration) {
    let dir = tempfile::Builder::new()
        .prefix("ssmc-bench-lat")
        .tempdir_in("/var/tmp")
        .unwrap();
    let mut spool = Spool::open(&dir.path().join("spool"), Options::default()).unwrap();
    let settings = ssm_companion::config::AuditSettings {
        redact: vec![r"(?i)token=\S+".into()],
        ..Default::default()
    };
    let host = AuditHost {
        alerts: Arc::new(ssm_companion::audit::alert::Alerts::new(&settings)),
        redact: Arc::new(ssm_companion::audit::redact::Redactor::new(
            &settings.redact,
        )),
        ..AuditHost::default()
    };
    let mut took = Vec::with_capacity(n);
    for i in 0..n {
        let line = Line::Text(
            serde_json::json!({
                "__CURSOR": format!("s=1;i={i:x}"), "__REALTIME_TIMESTAMP": "1796464830000000",
                "SYSLOG_IDENTIFIER": "sudo",
                "MESSAGE": "    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/systemctl restart nginx token=x",
                // A process that is gone: the pts scan of the whole /proc runs.
                "_PID": "4000000", "_UID": "1000", "_COMM": "sudo", "_EXE": "/usr/bin/sudo",
                "_CMDLINE": "sudo systemctl restart nginx",
            })
            .to_string()
            .into_bytes(),
        );
        let t = Instant::now();
        let b = journal::handle(
            &[line],
            &mut spool,
            &host,
            Path::new("/proc"),
            &BTreeMap::new(),
            0,
        )
        .unwrap();
        spool.sync_if_due().unwrap();
        took.push(t.elapsed());
        assert_eq!(b.spooled.len(), 1);
    }
    took.sort();
    (percentile(&took, 0.5), percentile(&took, 0.99))
}

fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn daemon(idle: Duration) {
    let host = Host::with_journal();
    let d = AgentDirs::new(host.dir());
    std::fs::write(
        &host.config,
        format!(
            "[aws]\nimds_endpoint = \"http://127.0.0.1:9\"\nregion = \"us-east-1\"\n[accounts]\nenabled = false\n[health]\nenabled = false\n[audit]\nenabled = true\nexec_backend = \"off\"\n{}",
            d.paths_toml(&host.state)
        ),
    )
    .unwrap();
    let notify = host.dir().join("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    let mut seen = Vec::new();
    let mut daemon = host.daemon(&notify, &[]);
    let log = {
        let mut e = daemon.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut e, &mut s);
            s
        })
    };
    wait_for(
        &sock,
        "audit: 0 session(s) open",
        Duration::from_secs(30),
        &mut seen,
    );
    let pid = daemon.id();
    std::thread::sleep(Duration::from_secs(5));
    let c0 = cpu_ticks(pid);
    std::thread::sleep(idle);
    let idle_cpu = (cpu_ticks(pid) - c0) as f64 / 100.0 / idle.as_secs_f64() * 100.0;
    let idle_rss = rss_kib(pid);
    let jctl = children(pid);
    let jctl_rss: u64 = jctl.iter().map(|p| rss_kib(*p)).sum();
    println!(
        "daemon, audit on, idle {}s: RSS {:.1} MiB (+ journalctl {:.1} MiB), CPU {idle_cpu:.3} %",
        idle.as_secs(),
        idle_rss as f64 / 1024.0,
        jctl_rss as f64 / 1024.0
    );

    // 100 sudo runs a second for 20 s.
    let runs = 2000;
    let c0 = cpu_ticks(pid);
    let j0: u64 = jctl.iter().map(|p| cpu_ticks(*p)).sum();
    let t = Instant::now();
    let out = host.sh(&format!(
        "for i in $(seq {runs}); do sudo -u nobody /usr/bin/true $i & sleep 0.01; done; wait"
    ));
    assert!(out.status.success());
    let secs = t.elapsed().as_secs_f64();
    // Until the spool stops growing for 5 s: what was spooled, against what the journal holds.
    let mut last = String::new();
    let mut quiet = Instant::now();
    let mut buf = [0u8; 4096];
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    while quiet.elapsed() < Duration::from_secs(5) {
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            if msg != last {
                last = msg;
                quiet = Instant::now();
            }
        }
    }
    let drained = t.elapsed().as_secs_f64() - 5.0;
    let spooled: u64 = last
        .split("spool at seq ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<u64>().ok())
        .map_or(0, |n| n - 1);
    let in_journal = host
        .sh_ok("journalctl --no-pager -q -o cat SYSLOG_IDENTIFIER=sudo | grep -c 'COMMAND=/usr/bin/true' || true")
        .trim()
        .to_string();
    let cpu = (cpu_ticks(pid) - c0) as f64 / 100.0 / secs * 100.0;
    let jcpu = (jctl.iter().map(|p| cpu_ticks(*p)).sum::<u64>() - j0) as f64 / 100.0 / secs * 100.0;
    println!(
        "daemon, {runs} sudo runs at {:.0}/s: {in_journal} in the journal, {spooled} spooled ({:.1}s after the first run); daemon CPU {cpu:.2} %, journalctl CPU {jcpu:.2} %, RSS {:.1} MiB",
        runs as f64 / secs,
        drained,
        rss_kib(pid) as f64 / 1024.0
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    daemon.wait().unwrap();
    let log = log.join().unwrap();
    let forged = log.matches("not from that program").count();
    let errors = log.matches(" ERROR ").count();
    println!("daemon log: {forged} line(s) refused as not from sudo, {errors} error(s)");
    if forged > 0 {
        for l in log
            .lines()
            .filter(|l| l.contains("not from that program"))
            .take(3)
        {
            println!("    {l}");
        }
    }
}

fn main() {
    // `cargo bench` passes --bench; nothing else is read.
    let group = throughput(200_000, false);
    let each = throughput(5_000, true);
    println!(
        "spool append, ~{} B events, one core: {group:.0} events/s with group commit (fdatasync at least every 1 s); {each:.0} events/s with fdatasync per record ({:.0}x)",
        body().len(),
        group / each
    );
    let (p50, p99) = latency(5_000);
    println!(
        "journal line -> spool (parse, /proc attribution with a pts scan, redaction, alert rules, append): p50 {:.0} µs, p99 {:.0} µs",
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6
    );
    if !common::is_root() {
        println!("not root: the daemon figures need the private journald (skipped)");
        return;
    }
    let idle = std::env::var("BENCH_IDLE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    daemon(Duration::from_secs(idle));
}
