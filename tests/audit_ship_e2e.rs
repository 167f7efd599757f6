//! Shipping the audit spool to S3 end to end: the daemon with `[audit.s3]` against moto's S3
//! (started by the test), the spool fed through the auth log while the daemon is killed with
//! SIGKILL at random points and S3 answers 503 and 500 now and then; `audit flush` waits until S3
//! has everything; the objects are read back: valid gzip JSON Lines under Hive-style keys, every
//! event once. Then S3 refusing (AccessDenied): a clear reason, nothing lost, and everything
//! shipped once access returns.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::disallowed_methods)] // tests start programs directly

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{AgentDirs, Emulator, Host, append, drain, stop, wait_for};
use serde_json::Value;

const BUCKET: &str = "audit-bucket";

fn sudo_line(command: &str) -> String {
    format!(
        "{} ip-10-0-1-23 sudo:    alice : TTY=pts/9 ; PWD=/home/alice ; USER=root ; COMMAND={command}\n",
        chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
    )
}

/// The host's config: AWS on the emulator, audit on with the auth log as its only busy source,
/// shipping to the test bucket in small objects.
fn configure(host: &Host, d: &AgentDirs, emu: &Emulator, s3: &str) {
    std::fs::write(
        &host.config,
        format!(
            "[aws]\nendpoint_url = \"{}\"\nimds_endpoint = \"{}\"\nmax_attempts = 1\n[accounts]\nenabled = false\n[health]\nenabled = false\n[audit]\nenabled = true\nrescan_interval = \"1s\"\nprivilege_source = \"auth-log\"\ndefault_alerts = false\n[audit.s3]\nbucket = \"{BUCKET}\"\nprefix = \"audit/v1\"\nmax_delay = \"1s\"\nmax_object_size = \"64KiB\"\n{s3}\n{}",
            emu.moto,
            emu.imds,
            d.paths_toml(&host.state)
        ),
    )
    .unwrap();
}

/// Every event in the bucket, object by object, each object checked: a Hive-style key, gzip
/// with header time 0, one OCSF JSON object per line.
fn shipped(emu: &Emulator) -> Vec<(String, Vec<Value>)> {
    let key_re = regex::Regex::new(
        r"^audit/v1/account_id=123456789012/region=us-east-1/dt=\d{4}-\d{2}-\d{2}/instance_id=i-[0-9a-f]+/(\d{20})-(\d{20})-[0-9a-f]{16}\.json\.gz$",
    )
    .unwrap();
    emu.objects(BUCKET)
        .into_iter()
        .map(|(key, bytes)| {
            assert!(key_re.is_match(&key), "unexpected key {key}");
            assert_eq!(&bytes[..2], &[0x1f, 0x8b], "{key} is not gzip");
            assert_eq!(&bytes[4..8], &[0, 0, 0, 0], "{key}: header time not 0");
            let mut text = String::new();
            std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut text)
                .unwrap_or_else(|e| panic!("{key}: {e}"));
            assert!(text.ends_with('\n'), "{key}: last line unterminated");
            let events: Vec<Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{key}: {e}: {l}")))
                .collect();
            let c = key_re.captures(&key).unwrap();
            let (first, last): (u64, u64) = (c[1].parse().unwrap(), c[2].parse().unwrap());
            let seqs: Vec<u64> = events
                .iter()
                .filter_map(|e| e["metadata"]["sequence"].as_u64())
                .collect();
            assert_eq!(seqs.first(), Some(&first), "{key}");
            assert_eq!(seqs.last(), Some(&last), "{key}");
            (key, events)
        })
        .collect()
}

/// `audit flush --json`: (exit code, document).
fn flush(host: &Host, timeout: &str) -> (i32, Value) {
    let out = host.ssmc(&["audit", "flush", "--json", "--timeout", timeout]);
    let doc = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), doc)
}

#[test]
fn every_event_reaches_s3_once_across_fifty_kill_9s_and_s3_errors() {
    require_root!();
    let emu = Emulator::start();
    emu.bucket(BUCKET);
    let host = Host::new();
    let d = AgentDirs::new(host.dir());
    configure(&host, &d, &emu, "");
    let notify = host.dir().join("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    let stop_writer = Arc::new(AtomicBool::new(false));
    let writer = {
        let log = d.auth_log();
        let stop_writer = stop_writer.clone();
        std::thread::spawn(move || {
            let mut written = Vec::new();
            let mut i = 0u32;
            while !stop_writer.load(Ordering::Relaxed) {
                let command = format!("/usr/bin/true ship-{i}");
                append(&log, &sudo_line(&command));
                written.push(command);
                i += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            written
        })
    };
    let mut logs = Vec::new();
    for round in 0..50 {
        // S3 in trouble now and then: SlowDown, and its own failures.
        if round % 10 == 3 {
            emu.faults(serde_json::json!([
                {"service": "s3", "action": "PUT", "times": 2, "status": 503, "code": "SlowDown"},
            ]));
        }
        if round % 10 == 7 {
            emu.faults(serde_json::json!([
                {"service": "s3", "action": "PUT", "times": 2, "status": 500, "code": "InternalError"},
            ]));
        }
        let mut daemon = host.daemon(&notify, &[]);
        logs.push(drain(&mut daemon));
        std::thread::sleep(Duration::from_millis(fastrand::u64(200..1300)));
        daemon.kill().unwrap();
        daemon.wait().unwrap();
    }
    stop_writer.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap();
    emu.faults(serde_json::json!([]));
    let mut daemon = host.daemon(&notify, &[]);
    logs.push(drain(&mut daemon));
    let mut seen = Vec::new();
    wait_for(
        &sock,
        "audit: 0 session(s) open",
        Duration::from_secs(30),
        &mut seen,
    );
    // Everything the auth log holds is spooled once the daemon has read it: flush until S3 has
    // the spool's last record and that record is the last line written.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let events = loop {
        let (code, doc) = flush(&host, "60s");
        assert_eq!(code, 0, "{doc:#}");
        let objects = shipped(&emu);
        let events: Vec<Value> = objects.into_iter().flat_map(|(_, e)| e).collect();
        let last_written = written.last().unwrap();
        if events
            .iter()
            .any(|e| e["process"]["cmd_line"] == last_written.as_str())
        {
            break events;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the last line never reached S3"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    stop(&mut daemon);
    let logs: Vec<String> = logs.into_iter().map(|l| l.join().unwrap()).collect();
    for log in &logs {
        assert!(!log.contains("panicked"), "{log}");
    }
    // Exactly once: no id twice, every line written once.
    let mut uids = BTreeSet::new();
    for e in &events {
        assert!(
            uids.insert(e["metadata"]["uid"].as_str().unwrap().to_string()),
            "shipped twice: {e:#}"
        );
    }
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for e in &events {
        if let Some(c) = e["process"]["cmd_line"].as_str() {
            *count.entry(c.to_string()).or_default() += 1;
        }
    }
    let missing: Vec<&String> = written.iter().filter(|c| !count.contains_key(*c)).collect();
    let twice: Vec<(&String, &usize)> = count.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        missing.is_empty() && twice.is_empty(),
        "every sudo line in S3 exactly once: {} of {} missing (first: {:?}), {} more than once (first: {:?})",
        missing.len(),
        written.len(),
        missing.iter().take(5).collect::<Vec<_>>(),
        twice.len(),
        twice.iter().take(5).collect::<Vec<_>>()
    );
    assert_eq!(count.len(), written.len(), "nothing but the lines written");
    // Sequence numbers are contiguous across objects: nothing skipped between batches.
    let mut seqs: Vec<u64> = events
        .iter()
        .filter_map(|e| e["metadata"]["sequence"].as_u64())
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    // Shipped segments were deleted: the spool holds less than everything.
    let status = host.json(&["audit", "status", "--json"], 0);
    assert_eq!(status["spool"]["unshipped"], 0, "{status:#}");
    assert!(
        status["shipping"]["objects"].as_u64().unwrap() > 1,
        "{status:#}"
    );

    // Read the way Athena would: DuckDB over the bucket's tree, Hive partitions as columns.
    let q = query(&emu);
    let groups = q["groups"].as_array().unwrap();
    let total: u64 = groups.iter().map(|g| g["n"].as_u64().unwrap()).sum();
    assert_eq!(total, events.len() as u64, "{q:#}");
    assert_eq!(q["distinct_uids"].as_u64().unwrap(), events.len() as u64);
    for g in groups {
        assert_eq!(g["account_id"], "123456789012", "{g}");
        assert_eq!(g["region"], "us-east-1", "{g}");
        assert!(g["instance_id"].as_str().unwrap().starts_with("i-"), "{g}");
    }
}

/// Downloads the bucket into a directory tree and runs tests/support/duckdb_query.py over it.
fn query(emu: &Emulator) -> Value {
    let root = tempfile::tempdir().unwrap();
    for (key, bytes) in emu.objects(BUCKET) {
        let path = root.path().join(&key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    let out = std::process::Command::new(common::python())
        .arg(common::repo().join("tests/support/duckdb_query.py"))
        .arg(root.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "duckdb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn access_denied_is_reported_and_nothing_is_lost_once_access_returns() {
    require_root!();
    let emu = Emulator::start();
    emu.bucket(BUCKET);
    let host = Host::new();
    let d = AgentDirs::new(host.dir());
    configure(&host, &d, &emu, "");
    emu.faults(serde_json::json!([
        {"service": "s3", "action": "PUT", "status": 403, "code": "AccessDenied", "message": "Access Denied"},
    ]));
    let notify = host.dir().join("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    let mut daemon = host.daemon(&notify, &[]);
    let log = drain(&mut daemon);
    for i in 0..20 {
        append(
            &d.auth_log(),
            &sudo_line(&format!("/usr/bin/true denied-{i}")),
        );
    }
    let mut seen = Vec::new();
    wait_for(
        &sock,
        "s3 failing: aws:AccessDenied",
        Duration::from_secs(30),
        &mut seen,
    );
    let (code, doc) = flush(&host, "3s");
    assert_eq!(code, 1, "{doc:#}");
    let why = doc["error"].as_str().unwrap();
    assert!(
        why.contains("AccessDenied") && why.contains("s3:PutObject"),
        "{why}"
    );
    let status = host.json(&["audit", "status", "--json"], 0);
    assert!(
        status["spool"]["unshipped"].as_u64().unwrap() >= 20,
        "{status:#}"
    );
    assert!(
        status["shipping"]["last_error"]
            .as_str()
            .unwrap()
            .contains("AccessDenied"),
        "{status:#}"
    );
    assert!(emu.objects(BUCKET).is_empty());
    // With the daemon stopped, flush says nobody would ship (at once, not after its timeout).
    stop(&mut daemon);
    let log = log.join().unwrap();
    assert!(log.contains("AccessDenied"), "{log}");
    let out = host.ssmc(&["audit", "flush", "--timeout", "60s"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the daemon is not running"), "{err}");
    // Access granted, the daemon back: everything arrives, once.
    emu.faults(serde_json::json!([]));
    let mut daemon = host.daemon(&notify, &[]);
    let log = drain(&mut daemon);
    wait_for(
        &sock,
        "audit: 0 session(s) open",
        Duration::from_secs(30),
        &mut seen,
    );
    let (code, doc) = flush(&host, "120s");
    assert_eq!(code, 0, "{doc:#}");
    stop(&mut daemon);
    assert!(!log.join().unwrap().contains("panicked"));
    let events: Vec<Value> = shipped(&emu).into_iter().flat_map(|(_, e)| e).collect();
    let commands: BTreeSet<&str> = events
        .iter()
        .filter_map(|e| e["process"]["cmd_line"].as_str())
        .collect();
    assert_eq!(commands.len(), 20);
    assert_eq!(events.len(), 20);
}
