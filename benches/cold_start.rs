//! `cargo bench --features package-tests --bench cold_start` (root, after `make packages`): how
//! fast the packaged daemon comes up under real systemd (PID 1 in a namespace over a minimal
//! Debian root, `tests/common`), with the hardened unit and the release binary of the .deb:
//!
//! - `dpkg -i` to READY: installing the package, which enables and starts the unit
//!   (`deb-systemd-invoke start` returns when the daemon has sent READY=1);
//! - install to accounts synced: until the two accounts of the emulator exist (splay 0);
//! - restart to READY, `BENCH_RUNS` times (default 20): systemd's own timestamps, from the fork
//!   of the main process (`ExecMainStartTimestampMonotonic`: sandbox set-up, exec and start-up
//!   follow) to READY=1 (`ActiveEnterTimestampMonotonic`). Median and the worst.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{Emulator, Systemd, package};

const UNIT: &str = "ssm-companion.service";

fn micros(sd: &Systemd, prop: &str) -> u64 {
    sd.sh(&format!("systemctl show -p {prop} --value {UNIT}"))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{prop}: {e}"))
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    if !common::is_root() {
        eprintln!("cold_start: needs root (namespaces, systemd as PID 1)");
        std::process::exit(1);
    }
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let deb = package("_amd64.deb");
    let emu = Emulator::start();
    emu.user("alice", "/", &[("SSMSessionRunAs", "alice")]);
    emu.role("OpsRole", &[("SSMSessionRunAs", "bob")]);
    let work = tempfile::Builder::new()
        .prefix("ssmc-bench")
        .tempdir_in("/tmp")
        .unwrap();
    let sd = common::boot_debian(work.path(), &emu);
    sd.put(&deb, "/tmp/ssm-companion.deb");

    let t = Instant::now();
    sd.sh("dpkg -i /tmp/ssm-companion.deb >/dev/null 2>&1");
    let install = t.elapsed();
    assert_eq!(
        sd.sh(&format!("systemctl is-active {UNIT}")).trim(),
        "active"
    );
    while !(sd.exec(&["getent", "passwd", "alice"]).status.success()
        && sd.exec(&["getent", "passwd", "bob"]).status.success())
    {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no accounts after 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let synced = t.elapsed();

    let mut to_ready = Vec::new();
    for _ in 0..runs {
        // reset-failed: systemd's start rate limit (5 starts in 10 s) would refuse the sixth.
        sd.sh(&format!(
            "systemctl reset-failed {UNIT}; systemctl restart {UNIT}"
        ));
        // ExecMainStartTimestamp is taken when systemd forks the main process: what follows
        // includes the sandbox set-up (namespaces, mounts, seccomp), the exec and the daemon's
        // start (configuration, state directory) up to READY=1.
        let forked = micros(&sd, "ExecMainStartTimestampMonotonic");
        let ready = micros(&sd, "ActiveEnterTimestampMonotonic");
        assert!(
            ready > forked,
            "READY at {ready} before the fork at {forked}"
        );
        to_ready.push(Duration::from_micros(ready - forked));
    }
    to_ready.sort();
    println!(
        "cold start of the packaged daemon under real systemd (hardened unit, release binary):"
    );
    println!(
        "  dpkg -i to READY (enable + start):        {}",
        ms(install)
    );
    println!("  dpkg -i to 2 accounts synced (splay 0):   {}", ms(synced));
    println!(
        "  restart, fork to READY, median/max:       {} / {} ({runs} runs)",
        ms(to_ready[runs / 2]),
        ms(*to_ready.last().unwrap())
    );
}
