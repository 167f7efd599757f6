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

use common::{AgentDirs, Emulator, Gate, Host, append, drain, stop, wait_for};
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
    configure_at(host, d, emu, &emu.moto, s3);
}

/// [`configure`] with AWS at `endpoint` (a [`Gate`] in front of the emulator).
fn configure_at(host: &Host, d: &AgentDirs, emu: &Emulator, endpoint: &str, s3: &str) {
    std::fs::write(
        &host.config,
        format!(
            "[aws]\nendpoint_url = \"{}\"\nimds_endpoint = \"{}\"\nmax_attempts = 1\n[accounts]\nenabled = false\n[health]\nenabled = false\n[audit]\nenabled = true\nrescan_interval = \"1s\"\nexec_backend = \"off\"\nprivilege_source = \"auth-log\"\ndefault_alerts = false\n[audit.s3]\nbucket = \"{BUCKET}\"\nprefix = \"audit/v1\"\nmax_delay = \"1s\"\nmax_object_size = \"64KiB\"\n{s3}\n{}",
            endpoint,
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

/// Every line written is in S3 exactly once, nothing else is, and no event id repeats.
fn exactly_once(written: &[String], events: &[Value]) {
    let mut uids = BTreeSet::new();
    for e in events {
        assert!(
            uids.insert(e["metadata"]["uid"].as_str().unwrap().to_string()),
            "shipped twice: {e:#}"
        );
    }
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for e in events {
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
}

/// A writer thread appending a sudo line every 20 ms (`prefix-<n>`) until told to stop; it
/// returns the commands written.
fn writer(d: &AgentDirs, prefix: &str) -> (Arc<AtomicBool>, std::thread::JoinHandle<Vec<String>>) {
    let log = d.auth_log();
    let stop_writer = Arc::new(AtomicBool::new(false));
    let stop = stop_writer.clone();
    let prefix = prefix.to_string();
    let handle = std::thread::spawn(move || {
        let mut written = Vec::new();
        let mut i = 0u32;
        while !stop.load(Ordering::Relaxed) {
            let command = format!("/usr/bin/true {prefix}-{i}");
            append(&log, &sudo_line(&command));
            written.push(command);
            i += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
        written
    });
    (stop_writer, handle)
}

const LOG_GROUP: &str = "/ssm-companion/audit";

/// `[audit.cloudwatch]` for [`configure`]'s extra text.
fn cloudwatch(events: &str) -> String {
    format!(
        "[audit.cloudwatch]\nlog_group = \"{LOG_GROUP}\"\nevents = \"{events}\"\nmax_delay = \"1s\"\n"
    )
}

/// Waits until the CloudWatch sink has sent through the spool's last record, by `audit
/// status`: its `cloudwatch.sent_seq` against the spool's `last_seq`.
fn cloudwatch_caught_up(host: &Host, timeout: Duration) -> Value {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let st = host.json(&["audit", "status", "--json"], 0);
        let last = st["spool"]["last_seq"].as_u64();
        if last.is_some() && st["cloudwatch"]["sent_seq"].as_u64() >= last {
            return st;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the CloudWatch sink did not catch up within {timeout:?}: {st:#}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The events in the log group: each message an OCSF event (JSON), in one stream named after
/// the instance, in time order.
fn cloudwatch_events(emu: &Emulator) -> Vec<Value> {
    let events = emu.log_events(LOG_GROUP);
    let mut last = i64::MIN;
    events
        .into_iter()
        .map(|(stream, ts, message)| {
            assert!(stream.starts_with("i-"), "stream {stream}");
            assert!(ts >= last, "out of time order at {message}");
            last = ts;
            let e: Value = serde_json::from_str(&message)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {message}"));
            assert_eq!(e["time"].as_i64(), Some(ts), "{e}");
            e
        })
        .collect()
}

#[test]
fn every_event_reaches_s3_once_across_fifty_kill_9s_and_s3_errors() {
    require_root!();
    let emu = Emulator::start();
    emu.bucket(BUCKET);
    let host = Host::new();
    emu.log_group(LOG_GROUP);
    let d = AgentDirs::new(host.dir());
    // Every event to CloudWatch Logs too: at least once there.
    configure(&host, &d, &emu, &cloudwatch("all"));
    let notify = host.dir().join("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    let (stop_writer, writer) = writer(&d, "ship");
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
                {"service": "logs", "action": "PutLogEvents", "times": 2, "status": 400, "code": "ThrottlingException"},
                {"service": "logs", "action": "PutLogEvents", "times": 1, "status": 503, "code": "ServiceUnavailableException"},
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
    // CloudWatch Logs: every event at least once (a kill between a call and the cursor's
    // write sends that batch again), nothing else.
    cloudwatch_caught_up(&host, Duration::from_secs(90));
    stop(&mut daemon);
    let logs: Vec<String> = logs.into_iter().map(|l| l.join().unwrap()).collect();
    for log in &logs {
        assert!(!log.contains("panicked"), "{log}");
    }
    exactly_once(&written, &events);
    let in_s3: BTreeSet<&str> = events
        .iter()
        .map(|e| e["metadata"]["uid"].as_str().unwrap())
        .collect();
    let cw = cloudwatch_events(&emu);
    let in_cw: BTreeSet<&str> = cw
        .iter()
        .map(|e| e["metadata"]["uid"].as_str().unwrap())
        .collect();
    assert_eq!(
        in_cw.len(),
        in_s3.len(),
        "CloudWatch has {} distinct events, S3 {}",
        in_cw.len(),
        in_s3.len()
    );
    assert_eq!(in_cw, in_s3, "the same events in CloudWatch Logs as in S3");
    eprintln!(
        "CloudWatch Logs: {} events, {} distinct, across 50 kill -9s",
        cw.len(),
        in_cw.len()
    );
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
    // The smallest spool allowed, so that refusals fill it.
    let config = std::fs::read_to_string(&host.config).unwrap();
    std::fs::write(
        &host.config,
        config.replace(
            "[audit]\nenabled = true\n",
            "[audit]\nenabled = true\nspool_max = \"8MiB\"\n",
        ),
    )
    .unwrap();
    emu.faults(serde_json::json!([
        {"service": "s3", "action": "PUT", "status": 403, "code": "AccessDenied", "message": "Access Denied"},
    ]));
    let notify = host.dir().join("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    let mut daemon = host.daemon(&notify, &[]);
    let log = drain(&mut daemon);
    let mut seen = Vec::new();
    wait_for(
        &sock,
        "audit: 0 session(s) open",
        Duration::from_secs(30),
        &mut seen,
    );
    for i in 0..20 {
        append(
            &d.auth_log(),
            &sudo_line(&format!("/usr/bin/true denied-{i}")),
        );
    }
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
    // Critical at once, with the cause and the fix.
    let check = host.doctor_check("audit.shipping");
    assert_eq!(check["status"], "critical", "{check:#}");
    assert_eq!(check["cause"], "aws:AccessDenied", "{check:#}");
    assert!(
        check["remedy"].as_str().unwrap().contains("iam-policy"),
        "{check:#}"
    );
    // Capture goes on until the spool is full, then the auth log waits.
    let mut written: Vec<String> = (0..20)
        .map(|i| format!("/usr/bin/true denied-{i}"))
        .collect();
    let more: Vec<String> = (0..9000)
        .map(|i| format!("/usr/bin/true more-{i}"))
        .collect();
    append(
        &d.auth_log(),
        &more.iter().map(|c| sudo_line(c)).collect::<String>(),
    );
    written.extend(more);
    wait_for(
        &sock,
        "(full: sources paused)",
        Duration::from_secs(60),
        &mut seen,
    );
    let status = host.json(&["audit", "status", "--json"], 0);
    assert!(
        status["shipping"]["last_error"]
            .as_str()
            .unwrap()
            .contains("AccessDenied"),
        "{status:#}"
    );
    let unshipped = status["spool"]["unshipped"].as_u64().unwrap();
    assert!(
        (20..9020).contains(&unshipped),
        "the spool holds part of the lines: {status:#}"
    );
    assert!(emu.objects(BUCKET).is_empty());
    // With the daemon stopped, flush says nobody would ship (at once, not after its timeout).
    stop(&mut daemon);
    let log = log.join().unwrap();
    assert!(log.contains("AccessDenied"), "{log}");
    assert_eq!(
        log.matches("the spool is full (audit.spool_max): the auth log")
            .count(),
        1,
        "told once, not at every pass: {log}"
    );
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
        "s3 shipped through seq",
        Duration::from_secs(30),
        &mut seen,
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let events = loop {
        let (code, doc) = flush(&host, "60s");
        assert_eq!(code, 0, "{doc:#}");
        let events: Vec<Value> = shipped(&emu).into_iter().flat_map(|(_, e)| e).collect();
        if events
            .iter()
            .any(|e| e["process"]["cmd_line"] == written.last().unwrap().as_str())
        {
            break events;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the last line never reached S3"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let check = host.doctor_check("audit.shipping");
    stop(&mut daemon);
    assert!(!log.join().unwrap().contains("panicked"));
    exactly_once(&written, &events);
    assert_eq!(check["status"], "ok", "{check:#}");
}

#[test]
fn a_minute_without_s3_then_a_full_spool_disk_lose_and_duplicate_nothing() {
    require_root!();
    let emu = Emulator::start();
    emu.bucket(BUCKET);
    let gate = Gate::new(&emu.moto);
    // A namespace that lasts (its tmpfs too): the one with a private journald.
    let host = Host::with_journal();
    let d = AgentDirs::new(host.dir());
    // The audit directory (the spool and its ledger) on a small tmpfs of the namespace.
    let audit = host.state.join("audit");
    std::fs::create_dir_all(&audit).unwrap();
    host.sh_ok(&format!(
        "mount -t tmpfs -o size=24m tmpfs {}",
        audit.display()
    ));
    configure_at(&host, &d, &emu, &gate.url(), "");
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
    let (stop_writer, writer) = writer(&d, "outage");
    wait_for(
        &sock,
        "s3 shipped through seq",
        Duration::from_secs(30),
        &mut seen,
    );
    // S3 unreachable for a minute: connections refused, open ones reset.
    gate.down();
    let down = std::time::Instant::now();
    wait_for(&sock, "s3 failing: ", Duration::from_secs(30), &mut seen);
    let status = std::fs::read_to_string(host.state.join("audit-shipping.json")).unwrap();
    let status: Value = serde_json::from_str(&status).unwrap();
    assert!(status["error"].is_string(), "{status:#}");
    assert!(status["oldest_unshipped"].is_string(), "{status:#}");
    let check = host.doctor_check("audit.shipping");
    assert_eq!(
        check["status"], "ok",
        "a minute's outage is no warning yet: {check:#}"
    );
    assert!(
        check["detail"].as_str().unwrap().contains("failing: "),
        "{check:#}"
    );
    std::thread::sleep(Duration::from_secs(60).saturating_sub(down.elapsed()));
    // The spool's disk fills up, the daemon is killed, S3 comes back and the daemon restarts:
    // it has a backlog to ship and cannot write its intent; capture pauses too.
    let filler = audit.join("filler");
    host.sh(&format!("head -c 64M /dev/zero > {}", filler.display()));
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    let killed_log = log.join().unwrap();
    gate.up();
    let mut daemon = host.daemon(&notify, &[]);
    let log = drain(&mut daemon);
    let line = wait_for(
        &sock,
        "s3 failing: cannot write the shipping ledger",
        Duration::from_secs(30),
        &mut seen,
    );
    if !line.contains("(full: sources paused)") {
        wait_for(
            &sock,
            "(full: sources paused)",
            Duration::from_secs(30),
            &mut seen,
        );
    }
    host.sh_ok(&format!("rm {}", filler.display()));
    stop_writer.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap();
    // Everything written reaches S3 (flush until the last line is there: the daemon reads
    // the rest of the auth log once the spool has room).
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let events = loop {
        let (code, doc) = flush(&host, "90s");
        assert_eq!(code, 0, "{doc:#}");
        let events: Vec<Value> = shipped(&emu).into_iter().flat_map(|(_, e)| e).collect();
        if events
            .iter()
            .any(|e| e["process"]["cmd_line"] == written.last().unwrap().as_str())
        {
            break events;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the last line never reached S3"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let check = host.doctor_check("audit.shipping");
    stop(&mut daemon);
    let log = log.join().unwrap();
    assert!(!log.contains("panicked"), "{log}");
    assert!(!killed_log.contains("panicked"), "{killed_log}");
    assert!(
        log.contains("No space left on device"),
        "the disk was never full: {log}"
    );
    assert!(
        log.contains("cannot write the shipping ledger"),
        "the shipper never met the full disk: {log}"
    );
    exactly_once(&written, &events);
    assert_eq!(check["status"], "ok", "{check:#}");
    assert!(
        check["detail"]
            .as_str()
            .unwrap()
            .contains("nothing waiting"),
        "{check:#}"
    );
}

#[test]
fn events_land_in_the_partition_of_their_own_day_and_a_second_daemon_ships_nothing() {
    require_root!();
    let emu = Emulator::start();
    emu.bucket(BUCKET);
    let host = Host::new();
    let d = AgentDirs::new(host.dir());
    configure(&host, &d, &emu, "");
    let notify = host.dir().join("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    let mut seen = Vec::new();
    let mut first = host.daemon(&notify, &[]);
    let first_log = drain(&mut first);
    wait_for(
        &sock,
        "audit: 0 session(s) open",
        Duration::from_secs(30),
        &mut seen,
    );
    // A second daemon on the same state directory finds the spool taken and ships nothing.
    let notify2 = host.dir().join("notify2.sock");
    let sock2 = UnixDatagram::bind(&notify2).unwrap();
    let mut second = host.daemon(&notify2, &[]);
    let second_log = drain(&mut second);
    wait_for(
        &sock2,
        "is in use by another process",
        Duration::from_secs(30),
        &mut Vec::new(),
    );
    // The host's clock crosses midnight, then is set back across it and forward again.
    let times = [
        "2026-12-05T23:59:58.250000+00:00",
        "2026-12-06T00:00:01.000000+00:00",
        "2026-12-06T00:00:02.000000+00:00",
        "2026-12-05T23:59:59.500000+00:00",
        "2026-12-06T00:00:03.000000+00:00",
    ];
    let mut written = Vec::new();
    for (i, t) in times.iter().enumerate() {
        let command = format!("/usr/bin/true midnight-{i}");
        append(
            &d.auth_log(),
            &format!(
                "{t} ip-10-0-1-23 sudo:    alice : TTY=pts/9 ; PWD=/home/alice ; USER=root ; COMMAND={command}\n"
            ),
        );
        written.push(command);
    }
    // Flush until the last line is in S3 (the daemon reads the auth log at its next pass).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let objects = loop {
        let (code, doc) = flush(&host, "30s");
        assert_eq!(code, 0, "{doc:#}");
        let objects = shipped(&emu);
        if objects
            .iter()
            .flat_map(|(_, e)| e)
            .any(|e| e["process"]["cmd_line"] == written.last().unwrap().as_str())
        {
            break objects;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the last line never reached S3"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    stop(&mut second);
    stop(&mut first);
    let (first_log, second_log) = (first_log.join().unwrap(), second_log.join().unwrap());
    assert!(!first_log.contains("panicked"), "{first_log}");
    assert!(
        !second_log.contains("audit: shipped"),
        "the second daemon shipped: {second_log}"
    );
    // Every object holds one day: the day of each of its events' own time.
    let mut days = Vec::new();
    for (key, events) in &objects {
        let dt = key.split("/dt=").nth(1).unwrap().split('/').next().unwrap();
        for e in events {
            let ms = e["time"].as_i64().unwrap();
            let day = chrono::DateTime::from_timestamp_millis(ms)
                .unwrap()
                .format("%Y-%m-%d")
                .to_string();
            assert_eq!(day, dt, "{key}: an event of {day}");
        }
        days.push(dt.to_string());
    }
    // Five lines, four runs of one day: four objects, in sequence order.
    days.sort_by_key(|d| d.clone());
    let keys: Vec<&String> = objects.iter().map(|(k, _)| k).collect();
    assert_eq!(objects.len(), 4, "{keys:#?}");
    assert_eq!(
        days,
        ["2026-12-05", "2026-12-05", "2026-12-06", "2026-12-06"],
        "{keys:#?}"
    );
    let events: Vec<Value> = objects.into_iter().flat_map(|(_, e)| e).collect();
    exactly_once(&written, &events);
}

#[test]
fn alerts_reach_cloudwatch_logs_and_a_missing_log_group_is_critical_until_it_exists() {
    require_root!();
    let emu = Emulator::start();
    emu.bucket(BUCKET);
    let host = Host::new();
    let d = AgentDirs::new(host.dir());
    // An alert rule of our own: commands with `alert-` in them.
    configure(
        &host,
        &d,
        &emu,
        &format!(
            "[[audit.alert]]\nname = \"marked\"\nseverity = \"high\"\nregex = {{ \"process.cmd_line\" = 'alert-' }}\n{}",
            cloudwatch("alerts")
        ),
    );
    let notify = host.dir().join("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    let mut daemon = host.daemon(&notify, &[]);
    let log = drain(&mut daemon);
    let mut seen = Vec::new();
    wait_for(
        &sock,
        "audit: 0 session(s) open",
        Duration::from_secs(30),
        &mut seen,
    );
    // The log group does not exist yet: the sink says so, and the check is critical with the fix.
    append(&d.auth_log(), &sudo_line("/usr/bin/true alert-0"));
    wait_for(
        &sock,
        "cloudwatch failing: aws:ResourceNotFoundException",
        Duration::from_secs(30),
        &mut seen,
    );
    let check = host.doctor_check("audit.shipping");
    assert_eq!(check["status"], "critical", "{check:#}");
    assert_eq!(check["cause"], "aws:ResourceNotFoundException", "{check:#}");
    let detail = check["detail"].as_str().unwrap();
    assert!(
        detail.contains("s3://audit-bucket/audit/v1")
            && detail.contains("cloudwatch:///ssm-companion/audit/i-"),
        "{detail}"
    );
    assert!(
        detail.contains("create-log-group --log-group-name /ssm-companion/audit"),
        "{detail}"
    );
    let st = host.json(&["audit", "status", "--json"], 0);
    assert_eq!(st["cloudwatch"]["enabled"], true, "{st:#}");
    assert!(
        st["cloudwatch"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("does not exist")),
        "{st:#}"
    );
    // S3 is not held up by it.
    let (code, doc) = flush(&host, "30s");
    assert_eq!(code, 0, "{doc:#}");

    // The group is created: the sink catches up; only the alerts are there, each once.
    emu.log_group(LOG_GROUP);
    let mut written = vec!["/usr/bin/true alert-0".to_string()];
    for i in 1..30 {
        let command = if i % 3 == 0 {
            format!("/usr/bin/true alert-{i}")
        } else {
            format!("/usr/bin/true plain-{i}")
        };
        append(&d.auth_log(), &sudo_line(&command));
        written.push(command);
    }
    let (code, doc) = flush(&host, "30s");
    assert_eq!(code, 0, "{doc:#}");
    let st = cloudwatch_caught_up(&host, Duration::from_secs(60));
    let events: Vec<Value> = shipped(&emu).into_iter().flat_map(|(_, e)| e).collect();
    exactly_once(&written, &events);
    let want: BTreeSet<String> = events
        .iter()
        .filter(|e| {
            e["metadata"]["labels"]
                .as_array()
                .is_some_and(|l| l.iter().any(|l| l == "alert:marked"))
        })
        .map(|e| e["process"]["cmd_line"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(want.len(), 10, "{want:?}");
    let cw = cloudwatch_events(&emu);
    let got: Vec<String> = cw
        .iter()
        .map(|e| e["process"]["cmd_line"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        got.iter().cloned().collect::<BTreeSet<_>>(),
        want,
        "the alerts and nothing else"
    );
    assert_eq!(got.len(), want.len(), "no repeats without a crash: {got:?}");
    assert_eq!(st["cloudwatch"]["sent_events"], 10, "{st:#}");
    assert!(st["cloudwatch"]["last_error"].is_null(), "{st:#}");
    let check = host.doctor_check("audit.shipping");
    assert_eq!(check["status"], "ok", "{check:#}");
    stop(&mut daemon);
    let log = log.join().unwrap();
    // The failure was logged once with the fix, not at every retry.
    assert_eq!(
        log.matches("log group `/ssm-companion/audit` does not exist")
            .count(),
        1,
        "{log}"
    );
}

#[test]
fn a_batch_of_several_calls_is_retried_from_the_call_that_failed() {
    require_root!();
    let emu = Emulator::start();
    emu.bucket(BUCKET);
    emu.log_group(LOG_GROUP);
    let host = Host::new();
    let d = AgentDirs::new(host.dir());
    configure(&host, &d, &emu, &cloudwatch("all"));
    // About 3 MiB of events in the auth log before the daemon starts: one batch, three calls.
    let written: Vec<String> = (0..2000)
        .map(|i| format!("/usr/bin/true {i:04}-{}", "x".repeat(600)))
        .collect();
    let text: String = written.iter().map(|c| sudo_line(c)).collect();
    append(&d.auth_log(), &text);
    // The first PutLogEvents passes, the second fails once.
    emu.faults(serde_json::json!([
        {"service": "logs", "action": "PutLogEvents", "times": 1, "delay_ms": 0},
        {"service": "logs", "action": "PutLogEvents", "times": 1, "status": 503, "code": "ServiceUnavailableException"},
    ]));
    let notify = host.dir().join("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    let mut daemon = host.daemon(&notify, &[]);
    let log = drain(&mut daemon);
    let mut seen = Vec::new();
    wait_for(
        &sock,
        "cloudwatch failing: aws:ServiceUnavailableException",
        Duration::from_secs(30),
        &mut seen,
    );
    cloudwatch_caught_up(&host, Duration::from_secs(60));
    stop(&mut daemon);
    let log = log.join().unwrap();
    let cw = cloudwatch_events(&emu);
    let commands: Vec<&str> = cw
        .iter()
        .filter_map(|e| e["process"]["cmd_line"].as_str())
        .collect();
    let distinct: BTreeSet<&str> = commands.iter().copied().collect();
    assert_eq!(distinct.len(), written.len(), "every event there");
    assert_eq!(
        commands.len(),
        written.len(),
        "the calls before the one that failed were not sent again"
    );
    // A batch of over 1,000 events of ~2.4 KiB: several calls of at most 1 MiB.
    let re = regex::Regex::new(r"sent (\d+) event\(s\) of seq").unwrap();
    assert!(
        re.captures_iter(&log)
            .any(|c| c[1].parse::<u32>().unwrap() >= 1000),
        "one batch of several calls: {log}"
    );
}

#[test]
fn a_line_in_the_auth_log_is_read_at_once_not_at_the_next_rescan() {
    require_root!();
    let emu = Emulator::start();
    emu.bucket(BUCKET);
    let host = Host::new();
    let d = AgentDirs::new(host.dir());
    configure(&host, &d, &emu, "");
    // A rescan five minutes away: only the auth log's inotify watch can start a pass sooner.
    // The auth log in a directory of its own (the agent's log directory is watched too).
    let auth_log = host.dir().join("var-log/auth.log");
    std::fs::create_dir_all(auth_log.parent().unwrap()).unwrap();
    let config = std::fs::read_to_string(&host.config).unwrap();
    std::fs::write(
        &host.config,
        config
            .replace("rescan_interval = \"1s\"", "rescan_interval = \"300s\"")
            .replace(
                &d.auth_log().display().to_string(),
                &auth_log.display().to_string(),
            ),
    )
    .unwrap();
    append(&auth_log, &sudo_line("/usr/bin/true before"));
    let notify = host.dir().join("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    let mut daemon = host.daemon(&notify, &[]);
    let log = drain(&mut daemon);
    let mut seen = Vec::new();
    wait_for(&sock, "spool at seq 2,", Duration::from_secs(30), &mut seen);
    for i in 1..=2 {
        // Quiet first: what was spooled is in S3 (a shipment also starts a pass).
        wait_for(
            &sock,
            &format!("s3 shipped through seq {i};"),
            Duration::from_secs(30),
            &mut seen,
        );
        std::thread::sleep(Duration::from_millis(1500));
        append(&auth_log, &sudo_line(&format!("/usr/bin/true after-{i}")));
        wait_for(
            &sock,
            &format!("spool at seq {},", i + 2),
            Duration::from_secs(20),
            &mut seen,
        );
    }
    stop(&mut daemon);
    assert!(!log.join().unwrap().contains("panicked"));
}
