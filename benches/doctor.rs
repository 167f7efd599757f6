//! `cargo bench --bench doctor` (root): wall time of a full `doctor` when all is well, when
//! every endpoint times out, and when DNS is slow (a resolver that never answers, 3 attempts of
//! 5 s: 15 s per lookup) and when NSS hangs (lookups never return) — the probes run in parallel and every lookup is abandoned at its
//! deadline, so it stays bounded by the timeouts — and the idle RSS/CPU of the daemon with health enabled (`BENCH_IDLE_SECS`, default 600).
//! Uses the integration tests' harness: a network namespace with TLS listeners, the emulator,
//! the stand-in agent.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{AgentDirs, Emulator, Host, INSTANCE, NetNs, StandInAgent, bin};

const SERVICES: [&str; 7] = [
    "ssm",
    "ssmmessages",
    "ec2messages",
    "s3",
    "logs",
    "kms",
    "sts",
];

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// What the network does in a run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Net {
    /// Every endpoint answers TLS.
    Well,
    /// Every endpoint, STS and SSM included, is an address that swallows packets.
    Swallowed,
    /// No name is in /etc/hosts and the resolver never answers (15 s per lookup).
    SlowDns,
    /// Host-name lookups never return (an NSS module that hangs).
    HungNss,
}

fn doctor_runs(timeout: &str, net: Net, runs: usize) -> (Duration, i32) {
    let ns = NetNs::new();
    let emu = Emulator::start_in(Some(&ns), serde_json::json!({"instance_id": INSTANCE}));
    let mut host = Host::new();
    host.netns = Some(ns.name.clone());
    let names = common::endpoint_names(&SERVICES);
    let (ca, _l) = common::tls_endpoints(&ns, host.dir(), &names, &[]);
    let d = AgentDirs::new(host.dir());
    let _agent = StandInAgent::start(&d.bin, &d.log_file(), 60, "");
    let aws_endpoint = match net {
        Net::Well => emu.moto.clone(),
        Net::Swallowed => "https://10.213.0.99".to_string(),
        Net::SlowDns | Net::HungNss => "https://sts.us-east-1.amazonaws.com".to_string(),
    };
    if net == Net::HungNss {
        host.hang_host_lookups();
    }
    std::fs::write(
        &host.config,
        format!(
            "[aws]\nendpoint_url = \"{aws_endpoint}\"\nimds_endpoint = \"{}\"\nmax_attempts = 1\n[health]\ntimeout = \"{timeout}\"\nextra_ca_file = \"{}\"\n{}",
            emu.imds,
            ca.display(),
            d.paths_toml(&host.state)
        ),
    )
    .unwrap();
    let setup = match net {
        Net::Well => format!("printf '10.213.0.1 {}\\n' >> /etc/hosts", names.join(" ")),
        Net::Swallowed => format!("printf '10.213.0.99 {}\\n' >> /etc/hosts", names.join(" ")),
        Net::SlowDns => {
            "printf 'nameserver 10.213.0.250\\noptions timeout:5 attempts:3\\n' > /etc/resolv.conf"
                .to_string()
        }
        Net::HungNss => "true".to_string(),
    };
    let script = format!(
        "{setup}; SSM_COMPANION_VENDOR_CONFIG_DIR={v} {bin} --config {cfg} doctor --json >/dev/null",
        v = host.dir().join("vendor").display(),
        bin = bin().display(),
        cfg = host.config.display()
    );
    let mut times = Vec::new();
    let mut code = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let out = host.sh(&script);
        times.push(t.elapsed());
        code = out.status.code().unwrap_or(-1);
    }
    (median(times), code)
}

/// `ssm-companion run` in the host's private user database (private-userdb.sh execs it: the
/// child's pid is the daemon's), logging at `level` to `stderr`.
fn daemon(host: &Host, level: &str, stderr: Stdio) -> std::process::Child {
    Command::new(common::repo().join("scripts/private-userdb.sh"))
        .arg(host.dir().join("db"))
        .arg(bin())
        .arg("--config")
        .arg(&host.config)
        .arg("run")
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("SSM_COMPANION_LOG", level)
        .env("SSM_COMPANION_VENDOR_CONFIG_DIR", host.dir().join("vendor"))
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap()
}

fn idle(secs: u64) -> String {
    let emu = Emulator::start_with(serde_json::json!({"instance_id": INSTANCE}));
    let host = Host::new();
    let d = AgentDirs::new(host.dir());
    let _agent = StandInAgent::start(&d.bin, &d.log_file(), 60, "");
    std::fs::write(
        &host.config,
        format!(
            "[aws]\nendpoint_url = \"{}\"\nimds_endpoint = \"{}\"\n[accounts]\nsplay = \"0s\"\n[health]\nservices = [\"ssm\", \"ssmmessages\", \"sts\"]\ntimeout = \"1s\"\n{}",
            emu.moto,
            emu.imds,
            d.paths_toml(&host.state)
        ),
    )
    .unwrap();
    let mut daemon = daemon(&host, "info", Stdio::null());
    let pid = daemon.id();
    let cpu = || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let f: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        (f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()) as f64 / 100.0
    };
    std::thread::sleep(Duration::from_secs(15));
    let cpu0 = cpu();
    std::thread::sleep(Duration::from_secs(secs.saturating_sub(15).max(1)));
    let used = cpu() - cpu0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .map(|l| l[k.len()..].trim().to_string())
            .unwrap_or_default()
    };
    let window = secs.saturating_sub(15).max(1) as f64;
    let row = format!(
        "| {} | {} | {} | {} | {used:.2} s in {window:.0} s ({:.3} % of a core) |",
        field("VmRSS:"),
        field("RssAnon:"),
        field("VmHWM:"),
        field("Threads:"),
        100.0 * used / window
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = daemon.wait();
    row
}

/// The daemon's thread count over `runs` network runs with every name lookup hung (hosts and
/// passwd): each SIGHUP starts a run, and the daemon's own debug line says when it is done.
/// Returns (threads after the first run, the most seen, after the last).
fn threads_over_network_runs(runs: usize) -> (usize, usize, usize) {
    use std::io::BufRead;
    let emu = Emulator::start_with(serde_json::json!({"instance_id": INSTANCE}));
    let host = Host::new();
    let d = AgentDirs::new(host.dir());
    let _agent = StandInAgent::start(&d.bin, &d.log_file(), 60, "");
    std::fs::write(
        &host.config,
        format!(
            "[aws]\nendpoint_url = \"https://sts.us-east-1.amazonaws.com\"\nimds_endpoint = \"{}\"\nmax_attempts = 1\n[accounts]\nenabled = false\n[health]\ntimeout = \"1s\"\n{}",
            emu.imds,
            d.paths_toml(&host.state)
        ),
    )
    .unwrap();
    std::fs::create_dir_all(&host.state).unwrap();
    std::fs::write(
        host.state.join("run-as-map.json"),
        r#"{"generated_at":"2026-12-05T00:00:00Z","complete":true,"mapped":[{"user":"alice","principals":["arn:aws:iam::123456789012:user/alice"]}],"unusable":[]}"#,
    )
    .unwrap();
    host.hang_lookups(&["hosts", "passwd"]);
    let mut daemon = daemon(&host, "debug", Stdio::piped());
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = daemon.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("health: network checks done") {
                let _ = tx.send(());
            }
        }
    });
    // private-userdb.sh execs the daemon: the same pid.
    let pid = daemon.id();
    let wait_run = || {
        rx.recv_timeout(Duration::from_secs(60))
            .expect("a network run within 60 s")
    };
    wait_run();
    let threads = || {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .unwrap()
            .trim()
            .parse::<usize>()
            .unwrap()
    };
    let first = threads();
    let mut most = first;
    let mut last = first;
    for _ in 1..runs {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGHUP,
        )
        .unwrap();
        wait_run();
        last = threads();
        most = most.max(last);
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = daemon.wait();
    (first, most, last)
}

fn main() {
    if !common::is_root() {
        eprintln!("doctor bench: needs root (network namespaces, private user databases)");
        std::process::exit(1);
    }
    println!("| scenario | health.timeout | doctor wall (median of 5) | exit |");
    println!("|---|---:|---:|---:|");
    for (name, net, timeout) in [
        ("all well", Net::Well, "2s"),
        ("every endpoint times out", Net::Swallowed, "2s"),
        ("every endpoint times out", Net::Swallowed, "5s"),
        ("slow DNS (15 s per lookup)", Net::SlowDns, "5s"),
        ("hung NSS (lookups never return)", Net::HungNss, "5s"),
    ] {
        let (t, code) = doctor_runs(timeout, net, 5);
        println!("| {name} | {timeout} | {:.2} s | {code} |", t.as_secs_f64());
    }
    let runs = std::env::var("BENCH_NETWORK_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let (first, most, last) = threads_over_network_runs(runs);
    println!(
        "\nDaemon threads over {runs} network runs with every lookup hung (timeout 1s): after the first {first}, most {most}, after the last {last}"
    );
    let secs = std::env::var("BENCH_IDLE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    println!(
        "\nDaemon with health enabled (interval 1m, network checks every 10m), after {secs} s:\n"
    );
    println!("| VmRSS | RssAnon | VmHWM | threads | CPU while idle |");
    println!("|---:|---:|---:|---:|---:|");
    println!("{}", idle(secs));
}
