//! `cargo bench --bench ship` (root; the emulator's venv as for the tests): shipping the audit
//! spool to S3 (moto, started here).
//!
//! 1. Objects on one core, in process: the spool read into batches of the default
//!    `max_object_size` and each gzipped, as the shipper does before a PUT — events/s.
//! 2. A backlog of `BENCH_BACKLOG` events (default 1,000,000) written into the spool of a stopped
//!    daemon, which then starts and ships it to moto: wall time, the daemon's CPU seconds (so
//!    events per CPU-second: one core's throughput, moto's share of the wall time left out),
//!    PUTs, and the daemon's RSS sampled every 200 ms (peak and at the end).
//! 3. Event → S3 latency with the default `max_delay` (10 s), with the sudo lines not alerts and
//!    then as the built-in rule marks them: sudo lines appended to the auth log
//!    at `BENCH_RATE` per second (default 2, a busy interactive session) for `BENCH_SECS`
//!    (default 120); the bucket is listed every 200 ms, and each event's latency is the moment its
//!    object was first listed minus the moment its line was written — p50/p99. The PUTs of that
//!    run give PUTs per busy host-hour and the S3 request cost for 10,000 hosts.
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
use std::time::{Duration, Instant};

use common::{AgentDirs, Emulator, Host, append, block_on, cpu_ticks, rss_kib, wait_for};
use serde_json::Value;

use ssm_companion::audit::ocsf::Device;
use ssm_companion::audit::ship;
use ssm_companion::audit::spool::{Options, Spool};

const BUCKET: &str = "bench-audit";
/// S3 Standard PUT price, us-east-1 (docs/development/benchmarks.md names the source).
const PUT_PER_1000: f64 = 0.005;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A sudo event as spooled (the documented example), ~1 KiB.
fn body() -> Vec<u8> {
    serde_json::to_vec(&ssm_companion::audit::examples()[0]).unwrap()
}

/// Writes `n` events into a spool at `dir` (closed again before the daemon opens it).
fn fill(dir: &std::path::Path, n: u64) {
    let mut spool = Spool::open(
        dir,
        Options {
            max_bytes: 1 << 40,
            ..Options::default()
        },
    )
    .unwrap();
    let body = body();
    for i in 0..n {
        spool.append("bench", &i.to_string(), &body).unwrap();
        spool.sync_if_due().unwrap();
    }
    spool.sync().unwrap();
}

/// Part 1: batches and gzip on one core.
fn objects(n: u64) {
    let dir = tempfile::Builder::new()
        .prefix("ssmc-bench-ship")
        .tempdir_in("/var/tmp")
        .unwrap();
    let spool = dir.path().join("spool");
    fill(&spool, n);
    let max = 4 << 20;
    let device = Device::default();
    let t = Instant::now();
    let (mut shipped, mut objects, mut raw, mut gz) = (0, 0u64, 0usize, 0usize);
    while let Some(b) = ship::next_batch(&spool, shipped, n, max, &device).unwrap() {
        let o = ship::object(&b.lines);
        raw += b.bytes;
        gz += o.len();
        objects += 1;
        shipped = b.last;
    }
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(shipped, n);
    println!(
        "objects from the spool, one core: {n} events ({:.0} MiB) into {objects} objects of <= 4 MiB in {secs:.2} s: {:.0} events/s, {:.0} MiB/s; gzip {:.1}x",
        raw as f64 / 1048576.0,
        n as f64 / secs,
        raw as f64 / 1048576.0 / secs,
        raw as f64 / gz as f64
    );
}

/// The host's config: AWS on the emulator, audit from the auth log, shipping to the bucket.
fn configure(host: &Host, d: &AgentDirs, emu: &Emulator, audit: &str) {
    std::fs::write(
        &host.config,
        format!(
            "[aws]\nendpoint_url = \"{}\"\nimds_endpoint = \"{}\"\n[accounts]\nenabled = false\n[health]\nenabled = false\n[audit]\nenabled = true\nexec_backend = \"off\"\nprivilege_source = \"auth-log\"\n{audit}\n[audit.s3]\nbucket = \"{BUCKET}\"\n{}",
            emu.moto,
            emu.imds,
            d.paths_toml(&host.state)
        ),
    )
    .unwrap();
}

fn puts(emu: &Emulator) -> u64 {
    // The emulator counts S3 calls by method: a PUT here is a PutObject.
    let s = emu.stats();
    s["s3:PUT"].as_u64().unwrap_or(0)
}

/// The seq the status line says S3 has.
fn shipped_seq(line: &str) -> Option<u64> {
    line.split("s3 shipped through seq ")
        .nth(1)?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Part 2: a backlog shipped by the daemon.
fn backlog(n: u64) {
    let emu = Emulator::start();
    emu.bucket(BUCKET);
    let host = Host::with_journal();
    let d = AgentDirs::new(host.dir());
    configure(&host, &d, &emu, "spool_max = \"1024GiB\"");
    let t = Instant::now();
    fill(&ssm_companion::audit::spool_dir(&host.state), n);
    println!(
        "backlog: {n} events written into the spool in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    emu.reset_stats();
    let notify = host.dir().join("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let t = Instant::now();
    let mut daemon = host.daemon(&notify, &[]);
    let pid = daemon.id();
    let log = common::drain(&mut daemon);
    let (mut peak, mut buf) = (0u64, [0u8; 4096]);
    let deadline = Instant::now() + Duration::from_secs(3600);
    loop {
        peak = peak.max(rss_kib(pid));
        if let Ok(k) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..k]);
            if shipped_seq(&msg).is_some_and(|s| s >= n) {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the backlog was not shipped in an hour"
        );
    }
    let secs = t.elapsed().as_secs_f64();
    let cpu = cpu_ticks(pid) as f64 / 100.0;
    let end = rss_kib(pid);
    let puts = puts(&emu);
    common::stop(&mut daemon);
    let log = log.join().unwrap();
    assert!(!log.contains("panicked"), "{log}");
    println!(
        "backlog of {n} events shipped by the daemon to moto in {secs:.1} s ({:.0} events/s with moto on the same 2 cores); daemon CPU {cpu:.1} s = {:.0} events per CPU-second; {puts} PUTs; RSS peak {:.1} MiB, {:.1} MiB at the end",
        n as f64 / secs,
        n as f64 / cpu,
        peak as f64 / 1024.0,
        end as f64 / 1024.0
    );
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Part 3: event → S3 latency with the defaults, and the PUTs it takes: with the sudo lines not
/// alerts (`default_alerts = false`: each waits for its batch, up to `max_delay`), and as the
/// built-in `sudo` rule marks them (an alert's batch goes at once).
fn latency(rate: u64, secs: u64, alerts: bool) {
    let emu = Emulator::start();
    emu.bucket(BUCKET);
    let client = emu.s3();
    let host = Host::with_journal();
    let d = AgentDirs::new(host.dir());
    configure(
        &host,
        &d,
        &emu,
        if alerts { "" } else { "default_alerts = false" },
    );
    // The auth log exists before the daemon starts, as on a host (it is then watched from the
    // first pass; one made later would be found at the next rescan).
    std::fs::File::create(d.auth_log()).unwrap();
    let notify = host.dir().join("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    let mut daemon = host.daemon(&notify, &[]);
    let log = common::drain(&mut daemon);
    wait_for(
        &sock,
        "audit: 0 session(s) open",
        Duration::from_secs(30),
        &mut Vec::new(),
    );
    emu.reset_stats();
    let start = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel::<(String, Instant)>();
    let writer = {
        let log = d.auth_log();
        std::thread::spawn(move || {
            let every = Duration::from_secs_f64(1.0 / rate as f64);
            for i in 0..rate * secs {
                let at = start + every * i as u32;
                std::thread::sleep(at.saturating_duration_since(Instant::now()));
                let command = format!("/usr/bin/true latency-{i}");
                append(
                    &log,
                    &format!(
                        "{} ip-10-0-1-23 sudo:    alice : TTY=pts/9 ; PWD=/home/alice ; USER=root ; COMMAND={command}\n",
                        chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
                    ),
                );
                tx.send((command, Instant::now())).unwrap();
            }
        })
    };
    // The bucket listed every 200 ms; each new object read once.
    let mut seen_at: BTreeMap<String, Instant> = BTreeMap::new();
    let mut listed: BTreeMap<String, Instant> = BTreeMap::new();
    let total = (rate * secs) as usize;
    let deadline = start + Duration::from_secs(secs + 60);
    while seen_at.len() < total && Instant::now() < deadline {
        let keys: Vec<String> = block_on(client.list_objects_v2().bucket(BUCKET).send())
            .unwrap()
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect();
        let now = Instant::now();
        for k in keys {
            if listed.contains_key(&k) {
                continue;
            }
            listed.insert(k.clone(), now);
            let bytes = block_on(async {
                client
                    .get_object()
                    .bucket(BUCKET)
                    .key(&k)
                    .send()
                    .await
                    .unwrap()
                    .body
                    .collect()
                    .await
                    .unwrap()
                    .into_bytes()
            });
            let mut text = String::new();
            std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut text)
                .unwrap();
            for line in text.lines() {
                let e: Value = serde_json::from_str(line).unwrap();
                if let Some(c) = e["process"]["cmd_line"].as_str() {
                    seen_at.insert(c.to_string(), now);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    writer.join().unwrap();
    let written: Vec<(String, Instant)> = rx.try_iter().collect();
    let puts = puts(&emu);
    let run = start.elapsed().as_secs_f64();
    common::stop(&mut daemon);
    assert!(!log.join().unwrap().contains("panicked"));
    let mut lat: Vec<f64> = written
        .iter()
        .map(|(c, at)| {
            seen_at
                .get(c)
                .unwrap_or_else(|| panic!("{c} never reached S3"))
                .saturating_duration_since(*at)
                .as_secs_f64()
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    let per_hour = puts as f64 / run * 3600.0;
    let fleet_hour = per_hour * 10_000.0 * PUT_PER_1000 / 1000.0;
    println!(
        "event -> S3 with the default max_delay (10 s), {rate} sudo lines/s for {secs} s, {}: p50 {:.1} s, p99 {:.1} s, max {:.1} s; {puts} PUTs in {run:.0} s = {per_hour:.0} PUTs per busy host-hour; 10,000 hosts busy all hour: ${fleet_hour:.2}/hour, 8 busy hours a day for 30 days: ${:.0}/month (PUT at ${PUT_PER_1000}/1,000)",
        if alerts {
            "each an alert (the built-in sudo rule: its batch goes at once)"
        } else {
            "not alerts (default_alerts = false: each waits for its batch)"
        },
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or_default(),
        fleet_hour * 8.0 * 30.0
    );
}

fn main() {
    // `cargo bench` passes --bench; nothing else is read.
    objects(env("BENCH_OBJECTS", 200_000));
    backlog(env("BENCH_BACKLOG", 1_000_000));
    let (rate, secs) = (env("BENCH_RATE", 2), env("BENCH_SECS", 120));
    latency(rate, secs, false);
    latency(rate, secs, true);
}
