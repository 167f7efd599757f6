//! `cargo bench --bench fleet` (root; the emulator's venv as for the tests): the fleet mapping.
//!
//! 1. **The publisher**: `BENCH_ACCOUNTS` accounts (default 3; the first is the publisher's own,
//!    the others reached through `sts:AssumeRole`) with `BENCH_PRINCIPALS` tagged IAM users each
//!    (default 1,000), in the emulator without an account pin: the wall time and CPU time of a
//!    first `publish`, of an unchanged rerun and of a dry run, with the IAM calls, KMS signatures
//!    and S3 requests the emulator counted.
//! 2. **Hosts**: `BENCH_HOSTS` daemons (default 50, each in a private user database, the mapping
//!    source at `interval = "BENCH_INTERVAL"` s, default 10) behind S3 budgets of
//!    `BENCH_BUDGETS` GETs per second (the emulator's fault rule answers the rest 503 SlowDown;
//!    default "20,4": above and below the fleet's demand; IAM throttled to 1 call a second
//!    meanwhile): for each, the time until every daemon applied a new generation (waiting at
//!    most `BENCH_DEADLINE` s, default 600) and the GETs tried; then the time until every daemon
//!    has the last generation once the throttling stopped; IAM calls from hosts, account changes
//!    other than creations, each daemon's peak RSS (VmHWM).
//!
//! `BENCH_ONLY=publisher` or `BENCH_ONLY=hosts` runs one of the two.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{Emulator, Host, block_on};
use serde_json::{Value, json};

const BUCKET: &str = "bench-mapping";
const ROLE: &str = "ssm-companion-publish-read";

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Users `first..n` in `account`, each tagged with a name of its own.
fn seed(emu: &Emulator, account: &str, first: u64, n: u64) {
    let iam = aws_sdk_iam::Client::new(&emu.in_account(account, ROLE));
    block_on(async {
        for i in first..n {
            let tag = aws_sdk_iam::types::Tag::builder()
                .key("SSMSessionRunAs")
                .value(format!("u{i:05}"))
                .build()
                .unwrap();
            iam.create_user()
                .user_name(format!("u{account}x{i:05}"))
                .tags(tag)
                .send()
                .await
                .unwrap();
        }
    });
}

/// Children's CPU seconds so far (user + system).
fn children_cpu() -> f64 {
    let ru = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).unwrap();
    let tv = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    tv(ru.user_time()) + tv(ru.system_time())
}

/// Runs `publish --json` and returns (report, wall seconds, CPU seconds).
fn publish(host: &Host, args: &[&str]) -> (Value, f64, f64) {
    let mut all = vec!["publish", "--json"];
    all.extend_from_slice(args);
    let cpu = children_cpu();
    let t = Instant::now();
    let out = host.ssmc(&all);
    let wall = t.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "publish {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (
        serde_json::from_slice(&out.stdout).unwrap(),
        wall,
        children_cpu() - cpu,
    )
}

fn count(stats: &Value, prefix: &str) -> u64 {
    stats
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(_, v)| v.as_u64().unwrap_or(0))
        .sum()
}

fn publisher() {
    let accounts_n = env("BENCH_ACCOUNTS", 3);
    let principals = env("BENCH_PRINCIPALS", 1000);
    let emu = Emulator::start_multi_account();
    emu.bucket(BUCKET);
    let accounts: Vec<String> = (0..accounts_n)
        .map(|i| {
            if i == 0 {
                "123456789012".to_string()
            } else {
                format!("{:012}", 111_111_111_111u64 * i)
            }
        })
        .collect();
    let t = Instant::now();
    for a in &accounts {
        seed(&emu, a, 0, principals);
    }
    eprintln!(
        "# seeded {} × {principals} users in {:.1} s",
        accounts.len(),
        t.elapsed().as_secs_f64()
    );
    let key = emu.signing_key();
    let host = Host::new();
    let list = accounts
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ");
    host.configure(
        &emu,
        &format!(
            "\n[publish]\nbucket = \"{BUCKET}\"\nkms_key_id = \"{key}\"\naccounts = [{list}]\nrole_name = \"{ROLE}\"\n"
        ),
    );
    println!("## The publisher: {accounts_n} accounts × {principals} principals\n");
    println!("| Run | Wall | CPU | IAM calls | kms:Sign | S3 GET / PUT |");
    println!("|---|---|---|---|---|---|");
    for (name, args) in [
        ("first publish", &[][..]),
        ("unchanged rerun", &[][..]),
        ("dry run", &["--dry-run"][..]),
    ] {
        emu.reset_stats();
        let (report, wall, cpu) = publish(&host, args);
        let stats = emu.stats();
        let outcomes: Vec<&str> = report["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["outcome"].as_str().unwrap())
            .collect();
        eprintln!("# {name}: {outcomes:?}");
        println!(
            "| {name} | {wall:.2} s | {cpu:.2} s | {} | {} | {} / {} |",
            count(&stats, "iam:"),
            count(&stats, "kms:Sign"),
            count(&stats, "s3:GET"),
            count(&stats, "s3:PUT"),
        );
    }
    println!();
}

fn hosts() {
    let n = env("BENCH_HOSTS", 50) as usize;
    let interval = env("BENCH_INTERVAL", 10);
    let budgets: Vec<u64> = std::env::var("BENCH_BUDGETS")
        .unwrap_or_else(|_| "20,4".into())
        .split(',')
        .filter_map(|b| b.trim().parse().ok())
        .collect();
    let emu = Emulator::start();
    emu.bucket(BUCKET);
    let key = emu.signing_key();
    seed(&emu, "123456789012", 0, 2);
    let publisher = Host::new();
    publisher.configure(
        &emu,
        &format!("\n[publish]\nbucket = \"{BUCKET}\"\nkms_key_id = \"{key}\"\n"),
    );
    let (first, _, _) = publish(&publisher, &[]);
    let pem = first["public_key"].as_str().unwrap().to_string();
    let mut daemons = Vec::new();
    let mut socks = Vec::new();
    for _ in 0..n {
        let host = Host::new();
        host.configure(
            &emu,
            &format!(
                "source = \"mapping\"\n[accounts.mapping]\nbucket = \"{BUCKET}\"\npublic_keys = [\"\"\"{pem}\"\"\"]\ninterval = \"{interval}s\"\n[health]\nenabled = false\n"
            ),
        );
        let notify = host.dir().join("notify.sock");
        let sock = std::os::unix::net::UnixDatagram::bind(&notify).unwrap();
        sock.set_nonblocking(true).unwrap();
        let mut child = host.daemon(&notify, &[]);
        let log = common::drain(&mut child);
        socks.push(sock);
        daemons.push((host, child, log));
    }
    // When each daemon applied `want` managed accounts (its STATUS line says so), in seconds
    // from now, sorted; `None` for one that had not after `BENCH_DEADLINE` s (default 600).
    let deadline = Duration::from_secs(env("BENCH_DEADLINE", 600));
    let wait_all = |want: &str, socks: &[std::os::unix::net::UnixDatagram]| {
        let t = Instant::now();
        let mut done: Vec<Option<f64>> = vec![None; socks.len()];
        let mut buf = [0u8; 4096];
        while done.iter().any(Option::is_none) && t.elapsed() < deadline {
            for (i, s) in socks.iter().enumerate() {
                while let Ok(k) = s.recv(&mut buf) {
                    if done[i].is_none() && String::from_utf8_lossy(&buf[..k]).contains(want) {
                        done[i] = Some(t.elapsed().as_secs_f64());
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut times: Vec<f64> = done.into_iter().flatten().collect();
        times.sort_by(f64::total_cmp);
        times
    };
    let describe = |times: &[f64]| {
        let at =
            |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
        if times.is_empty() {
            return format!("none of {n} within {} s", deadline.as_secs());
        }
        format!(
            "{} of {n}{}; p50 {:.1} s, p90 {:.1} s, last {:.1} s",
            times.len(),
            if times.len() < n {
                format!(" within {} s", deadline.as_secs())
            } else {
                String::new()
            },
            at(0.5),
            at(0.9),
            times[times.len() - 1]
        )
    };
    let start = describe(&wait_all("accounts: 2 managed", &socks));
    // Each round: one more principal published, then every daemon must apply it while S3
    // answers at most `budget` GETs a second (the rest 503 SlowDown).
    let mut rounds = Vec::new();
    for (i, budget) in budgets.iter().enumerate() {
        let users = 3 + i as u64;
        seed(&emu, "123456789012", users - 1, users);
        publish(&publisher, &[]);
        emu.reset_stats();
        // IAM throttled too, as a fleet reading IAM itself would find it: hosts must not care.
        emu.faults(json!([
            {"service": "s3", "action": "GET", "per_second": budget, "status": 503, "code": "SlowDown", "message": "Please reduce your request rate."},
            {"service": "iam", "action": "GetAccountAuthorizationDetails", "per_second": 1, "status": 400, "code": "Throttling", "message": "Rate exceeded"}
        ]));
        let secs = describe(&wait_all(&format!("accounts: {users} managed"), &socks));
        emu.faults(json!([]));
        let stats = emu.stats();
        rounds.push((
            *budget,
            secs,
            count(&stats, "s3:GET"),
            count(&stats, "iam:"),
        ));
    }
    // After the throttling: every daemon has the last generation (those still backing off
    // when a round ended get there now).
    let last = 2 + budgets.len();
    let after = describe(&wait_all(&format!("accounts: {last} managed"), &socks));
    let hwm: Vec<u64> = daemons
        .iter()
        .map(|(_, c, _)| {
            let status =
                std::fs::read_to_string(format!("/proc/{}/status", c.id())).unwrap_or_default();
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        })
        .collect();
    let mut deletions = 0;
    for (host, mut child, log) in daemons {
        common::stop(&mut child);
        let log = log.join().unwrap_or_default();
        deletions += log
            .lines()
            .filter(|l| l.contains("INFO account ") && !l.contains("INFO account create"))
            .count();
        drop(host);
    }
    let max_hwm = hwm.iter().max().copied().unwrap_or(0);
    let mean_hwm = hwm.iter().sum::<u64>() / hwm.len().max(1) as u64;
    println!(
        "## {n} hosts, interval {interval} s (demand {:.1} GET/s)\n",
        n as f64 / interval as f64
    );
    println!("| Figure | Value |");
    println!("|---|---|");
    println!("| first sync after the start | {start} |");
    for (budget, secs, gets, iam) in &rounds {
        println!(
            "| S3 budget {budget} GET/s: a new generation applied | {secs} ({gets} GETs tried, {iam} IAM calls) |"
        );
    }
    println!("| every daemon at the last generation, once the throttling stopped | {after} |");
    println!("| account changes other than creations, all rounds | {deletions} |");
    println!("| peak RSS per daemon (VmHWM), mean / max | {mean_hwm} / {max_hwm} KiB |");
    println!();
}

fn main() {
    if !common::is_root() {
        eprintln!("the fleet bench needs root (private user databases)");
        std::process::exit(1);
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "publisher" {
        publisher();
    }
    if only.is_empty() || only == "hosts" {
        hosts();
    }
}
