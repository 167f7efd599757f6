//! Health end to end: `doctor` against a stand-in agent (a native binary under the agent's names,
//! `tests/support/stand-in-ssm-agent.c`), real endpoints in a network namespace (reachable,
//! refused, timeout, TLS failure, DNS failure, and through an authenticating CONNECT proxy), the
//! IMDSv2 stub and STS on moto; the daemon's
//! health.json, Prometheus textfile and SSM Inventory item read back by `fleet health`; and
//! real systemd as PID 1 in a namespace running the stand-in as `amazon-ssm-agent.service`,
//! stopped and started again by `doctor --fix`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::disallowed_methods)] // tests start programs directly

mod common;

use std::os::unix::fs::PermissionsExt;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{AgentDirs, Emulator, Host, INSTANCE, NetNs, StandInAgent, Systemd, bin, repo};
use serde_json::Value;

fn checks(doc: &Value) -> Vec<(String, String, String)> {
    doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().into(),
                c["status"].as_str().unwrap().into(),
                c["detail"].as_str().unwrap().into(),
            )
        })
        .collect()
}

fn status_of(doc: &Value, id: &str) -> (String, String) {
    checks(doc)
        .into_iter()
        .find(|(i, _, _)| i == id)
        .map(|(_, s, d)| (s, d))
        .unwrap_or_else(|| panic!("no check {id} in {doc:#}"))
}

/// Writes the host's config: the emulator's endpoints, `[health]` lines, the agent's paths.
fn write_config(host: &Host, emu: &Emulator, d: &AgentDirs, health: &str) {
    std::fs::write(
        &host.config,
        format!(
            "[aws]\nendpoint_url = \"{}\"\nimds_endpoint = \"{}\"\nmax_attempts = 1\n[health]\n{health}{}",
            emu.moto,
            emu.imds,
            d.paths_toml(&host.state)
        ),
    )
    .unwrap();
}

/// A network namespace with the emulator in it, and a private host whose commands run there.
fn in_netns() -> (NetNs, Emulator, Host) {
    let ns = NetNs::new();
    let emu = Emulator::start_in(
        Some(&ns),
        serde_json::json!({"instance_id": INSTANCE, "region": "us-east-1"}),
    );
    let mut host = Host::new();
    host.netns = Some(ns.name.clone());
    (ns, emu, host)
}

#[test]
fn doctor_in_a_network_namespace() {
    require_root!();
    let (ns, emu, host) = in_netns();
    let names = common::endpoint_names(&[
        "ssm",
        "ssmmessages",
        "ec2messages",
        "s3",
        "logs",
        "kms",
        "sts",
    ]);
    let (ca, _listeners) = common::tls_endpoints(
        &ns,
        host.dir(),
        &names,
        &["--plain".into(), "10.213.0.4:443".into()],
    );
    let d = AgentDirs::new(host.dir());
    let agent = StandInAgent::start(&d.bin, &d.log_file(), 60, "");
    std::fs::write(
        &host.config,
        format!(
            "[aws]\nendpoint_url = \"{}\"\nimds_endpoint = \"{}\"\nmax_attempts = 1\n[health]\ntimeout = \"2s\"\nextra_ca_file = \"{}\"\n{}",
            emu.moto,
            emu.imds,
            ca.display(),
            d.paths_toml(&host.state)
        ),
    )
    .unwrap();
    // DNS inside the private /etc: ok, ok, swallowed (timeout), refused, not TLS, unknown (kms), ok.
    let hosts = "10.213.0.1 ssm.us-east-1.amazonaws.com ssmmessages.us-east-1.amazonaws.com sts.us-east-1.amazonaws.com\n10.213.0.99 ec2messages.us-east-1.amazonaws.com\n10.213.0.2 s3.us-east-1.amazonaws.com\n10.213.0.4 logs.us-east-1.amazonaws.com\n";
    let script = format!(
        "printf '{hosts}' >> /etc/hosts; printf 'nameserver 10.213.0.250\\noptions timeout:1 attempts:1\\n' > /etc/resolv.conf; SSM_COMPANION_VENDOR_CONFIG_DIR={v} {bin} --config {cfg} doctor --json",
        v = host.dir().join("vendor").display(),
        bin = bin().display(),
        cfg = host.config.display()
    );
    let started = Instant::now();
    let out = host.sh(&script);
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let doc: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(doc["schema"], "ssm-companion/health/v1");
    assert_eq!(doc["instance_id"], INSTANCE);
    assert_eq!(doc["region"], "us-east-1");
    assert_eq!(doc["agent_version"], "3.3.987.0");

    let ok = |id: &str| {
        let (s, detail) = status_of(&doc, id);
        assert_eq!(s, "ok", "{id}: {detail}");
        detail
    };
    assert!(ok("endpoint.ssm").contains("private: a VPC endpoint"));
    assert!(ok("endpoint.ssmmessages").contains("TLS"));
    ok("endpoint.sts");
    for (id, needle) in [
        (
            "endpoint.ec2messages",
            "TCP failed: 10.213.0.99:443: timed out",
        ),
        (
            "endpoint.s3",
            "TCP failed: 10.213.0.2:443: Connection refused",
        ),
        ("endpoint.logs", "TLS failed"),
        ("endpoint.kms", "DNS failed"),
    ] {
        let (s, detail) = status_of(&doc, id);
        assert_eq!(s, "warning", "{id}: {detail} (not a required service)");
        assert!(detail.contains(needle), "{id}: {detail}");
    }
    for id in [
        "agent.installed",
        "agent.version",
        "agent.service",
        "agent.worker",
        "agent.config",
        "agent.proxy",
        "agent.log.health",
        "agent.log.errors",
        "identity",
        "credentials.agent",
        "credentials.instance_profile",
        "sts.identity",
        "clock.skew",
        "disk.agent",
        "runas.preferences",
        "runas.users",
    ] {
        ok(id);
    }
    assert!(ok("agent.service").contains(&format!("pid {}", agent.pid())));
    assert_eq!(doc["overall"], "warning");
    assert_eq!(out.status.code(), Some(1), "exit 1 = warning");
    // All probes run in parallel, each step bounded by the 2 s timeout.
    eprintln!("doctor took {took:?}");
}

#[test]
fn doctor_probes_through_the_agents_proxy_without_leaking_its_password() {
    require_root!();
    let (ns, emu, host) = in_netns();
    let proxy_log = host.dir().join("proxy.log");
    let (ca, _listeners) = common::tls_endpoints(
        &ns,
        host.dir(),
        &common::endpoint_names(&["ssm", "sts"]),
        &[
            "--proxy".into(),
            "10.213.0.4:3128".into(),
            "--proxy-upstream".into(),
            "10.213.0.1:443".into(),
            "--proxy-auth".into(),
            "ops:s3cret/pw".into(),
            "--proxy-log".into(),
            proxy_log.display().to_string(),
        ],
    );
    let d = AgentDirs::new(host.dir());
    std::fs::write(
        &host.config,
        format!(
            "[aws]\nendpoint_url = \"{}\"\nimds_endpoint = \"{}\"\nmax_attempts = 1\n[health]\ntimeout = \"2s\"\nservices = [\"ssm\", \"sts\"]\nlatest_agent_check = false\nextra_ca_file = \"{}\"\n{}",
            emu.moto,
            emu.imds,
            ca.display(),
            d.paths_toml(&host.state)
        ),
    )
    .unwrap();
    // Only sts resolves here (and bypasses the proxy through no_proxy); ssm is left to the
    // proxy to resolve, as behind a corporate proxy without internal DNS for AWS.
    let doctor = || {
        let script = format!(
            "printf '10.213.0.1 sts.us-east-1.amazonaws.com\\n' >> /etc/hosts; printf 'nameserver 10.213.0.250\\noptions timeout:1 attempts:1\\n' > /etc/resolv.conf; SSM_COMPANION_VENDOR_CONFIG_DIR={v} {bin} --config {cfg} doctor --json",
            v = host.dir().join("vendor").display(),
            bin = bin().display(),
            cfg = host.config.display()
        );
        let out = host.sh(&script);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let doc: Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
        (doc, stdout)
    };
    let log = d.log_file();
    // The password has a `/`, percent-encoded in the URL as the agent's users must write it.
    let agent = StandInAgent::start_with_env(
        &d.bin,
        &log,
        60,
        "",
        &[
            ("https_proxy", "http://ops:s3cret%2Fpw@10.213.0.4:3128"),
            ("no_proxy", "169.254.169.254,sts.us-east-1.amazonaws.com"),
        ],
    );
    let (doc, stdout) = doctor();
    assert!(
        !stdout.contains("s3cret"),
        "the proxy password leaked: {stdout}"
    );
    let (s, detail) = status_of(&doc, "endpoint.ssm");
    assert_eq!(s, "ok", "{detail}");
    assert!(
        detail.contains("via proxy http://***@10.213.0.4:3128"),
        "{detail}"
    );
    let (s, detail) = status_of(&doc, "endpoint.sts");
    assert_eq!(s, "ok", "{detail}");
    assert!(
        !detail.contains("via proxy"),
        "no_proxy is honoured: {detail}"
    );
    let (_, detail) = status_of(&doc, "agent.proxy");
    assert!(detail.contains("***@10.213.0.4:3128"), "{detail}");
    let seen = std::fs::read_to_string(&proxy_log).unwrap();
    assert_eq!(
        seen.lines().collect::<Vec<_>>(),
        ["CONNECT ssm.us-east-1.amazonaws.com:443 ok"],
        "one authenticated CONNECT, for ssm only"
    );
    drop(agent);

    // A wrong password: the proxy's 407 is the named cause.
    let agent = StandInAgent::start_with_env(
        &d.bin,
        &log,
        60,
        "",
        &[("https_proxy", "http://ops:wrong@10.213.0.4:3128")],
    );
    let (doc, stdout) = doctor();
    assert!(
        !stdout.contains("wrong"),
        "the proxy password leaked: {stdout}"
    );
    let (s, detail) = status_of(&doc, "endpoint.ssm");
    assert_eq!(s, "critical", "{detail}");
    assert!(detail.contains("proxy CONNECT failed"), "{detail}");
    assert!(detail.contains("407"), "{detail}");
    drop(agent);
}

/// `agent.latest`: the region's latest release read over real TLS from the release bucket's
/// name (an HTTPS listener in the network namespace), once a day, through the agent's proxy;
/// hostile or missing answers never fail the run, never reach the output, never hold it.
#[test]
fn the_latest_agent_release_is_read_once_a_day_and_never_fails_the_run() {
    require_root!();
    let (ns, emu, host) = in_netns();
    let web = host.dir().join("web");
    let answers = web.join("answers");
    std::fs::create_dir_all(&answers).unwrap();
    let answer =
        |path: &str, raw: &[u8]| std::fs::write(answers.join(path.replace('/', "_")), raw).unwrap();
    let ok = |body: &str| {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    answer(
        "/amazon-ssm-us-east-1/latest/VERSION",
        ok("3.3.1142.0\n").as_bytes(),
    );
    answer("/old/VERSION", ok("3.5.100.0").as_bytes());
    answer("/major/VERSION", ok("4.0.1.0").as_bytes());
    answer(
        "/escapes/VERSION",
        ok("\u{1b}[2J\u{1b}]52;c;QUxMIE9L\u{7}ALL OK 3.3.1142.0").as_bytes(),
    );
    let mut huge = b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n".to_vec();
    huge.extend(std::iter::repeat_n(b'9', 1 << 20));
    answer("/huge/VERSION", &huge);
    answer(
        "/truncated/VERSION",
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n3.3",
    );
    answer("/hang/VERSION", b"HANG");
    answer(
        "/forbidden/VERSION",
        b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n",
    );
    let proxy_log = host.dir().join("proxy.log");
    let (ca, _listeners) = common::tls_endpoints(
        &ns,
        host.dir(),
        &common::endpoint_names(&["ssm", "s3"]),
        &[
            "--http-dir".into(),
            web.display().to_string(),
            "--proxy".into(),
            "10.213.0.4:3128".into(),
            "--proxy-upstream".into(),
            "10.213.0.1:443".into(),
            "--proxy-auth".into(),
            "ops:pw".into(),
            "--proxy-log".into(),
            proxy_log.display().to_string(),
        ],
    );
    let d = AgentDirs::new(host.dir());
    let config = |url_path: &str| {
        let url = if url_path.is_empty() {
            String::new()
        } else {
            format!("https://s3.us-east-1.amazonaws.com{url_path}")
        };
        std::fs::write(
            &host.config,
            format!(
                "[aws]\nendpoint_url = \"{}\"\nimds_endpoint = \"{}\"\nmax_attempts = 1\n[health]\ntimeout = \"2s\"\nservices = [\"ssm\"]\nlatest_agent_url = \"{url}\"\nextra_ca_file = \"{}\"\n{}",
                emu.moto,
                emu.imds,
                ca.display(),
                d.paths_toml(&host.state)
            ),
        )
        .unwrap();
    };
    let doctor = || {
        let script = format!(
            "grep -q s3.us-east-1 /etc/hosts || printf '10.213.0.1 s3.us-east-1.amazonaws.com ssm.us-east-1.amazonaws.com\\n' >> /etc/hosts; SSM_COMPANION_VENDOR_CONFIG_DIR={v} {bin} --config {cfg} doctor --json",
            v = host.dir().join("vendor").display(),
            bin = bin().display(),
            cfg = host.config.display()
        );
        let started = Instant::now();
        let out = host.sh(&script);
        let took = started.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let doc: Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
        let (s, detail) = status_of(&doc, "agent.latest");
        (s, detail, stdout, took)
    };
    let requests = || {
        std::fs::read_to_string(web.join("requests.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let agent = StandInAgent::start(&d.bin, &d.log_file(), 60, "");

    // The region's bucket, read once, then from the day's cache.
    config("");
    let (s, detail, _, _) = doctor();
    assert_eq!(s, "ok", "{detail}");
    assert!(
        detail.contains("the latest release in us-east-1 is 3.3.1142.0 (read now)"),
        "{detail}"
    );
    assert!(detail.contains("agent 3.3.987.0"), "{detail}");
    let (s, detail, _, _) = doctor();
    assert_eq!(s, "ok", "{detail}");
    assert!(detail.contains("read within the last day"), "{detail}");
    assert_eq!(
        requests(),
        ["GET /amazon-ssm-us-east-1/latest/VERSION HTTP/1.1"],
        "one read a day"
    );

    // Behind: two minor versions, or a major one, warn (exit 1); never critical.
    for (path, needle) in [
        ("/old/VERSION", "2 minor versions behind"),
        ("/major/VERSION", "a major version behind"),
    ] {
        config(path);
        let (s, detail, _, _) = doctor();
        assert_eq!(s, "warning", "{path}: {detail}");
        assert!(detail.contains(needle), "{path}: {detail}");
    }

    // Hostile and missing answers: ok, said, nothing of them printed, bounded by the timeout.
    for (path, needle) in [
        ("/escapes/VERSION", "not a version"),
        ("/huge/VERSION", "longer than 256 bytes"),
        ("/truncated/VERSION", "broke off"),
        ("/forbidden/VERSION", "HTTP 403"),
        ("/missing/VERSION", "HTTP 404"),
        ("/hang/VERSION", "no answer within"),
    ] {
        config(path);
        let (s, detail, stdout, took) = doctor();
        assert_eq!(s, "ok", "{path}: {detail}");
        assert!(detail.contains("could not be read"), "{path}: {detail}");
        assert!(detail.contains(needle), "{path}: {detail}");
        assert!(
            !stdout.contains("ALL OK") && !stdout.contains("\\u001b") && !stdout.contains("99999"),
            "{path}: the answer reached the output: {detail}"
        );
        // timeout = 2s for the whole network phase (a coarse bound on a busy machine).
        assert!(
            took < Duration::from_secs(5),
            "{path}: doctor took {took:?}"
        );
        // Not tried again within the hour.
        let (_, detail, _, _) = doctor();
        assert!(
            detail.contains("tried again an hour later"),
            "{path}: {detail}"
        );
    }
    assert_eq!(
        requests().iter().filter(|r| r.contains("/hang/")).count(),
        1,
        "a failed read waits an hour"
    );
    drop(agent);

    // Through the agent's proxy (its environment), as the agent would read it.
    config("/via-proxy/VERSION");
    answer("/via-proxy/VERSION", ok("3.3.1142.0").as_bytes());
    let agent = StandInAgent::start_with_env(
        &d.bin,
        &d.log_file(),
        60,
        "",
        &[("https_proxy", "http://ops:pw@10.213.0.4:3128")],
    );
    let (s, detail, _, _) = doctor();
    assert_eq!(s, "ok", "{detail}");
    assert!(detail.contains("read now"), "{detail}");
    let seen = std::fs::read_to_string(&proxy_log).unwrap();
    assert!(
        seen.lines()
            .any(|l| l == "CONNECT s3.us-east-1.amazonaws.com:443 ok"),
        "{seen}"
    );
    drop(agent);
}

#[test]
fn doctor_flags_a_hibernating_or_stopped_agent() {
    require_root!();
    let emu = Emulator::start_with(serde_json::json!({"instance_id": INSTANCE}));
    let host = Host::new();
    let d = AgentDirs::new(host.dir());
    write_config(&host, &emu, &d, "services = []\n");
    let agent = StandInAgent::start(&d.bin, &d.log_file(), 60, "hibernate");
    let doc = host.json(&["doctor", "--json"], 2);
    let (s, detail) = status_of(&doc, "agent.log.errors");
    assert_eq!(s, "critical");
    assert!(detail.contains("hibernation"), "{detail}");
    let table = String::from_utf8_lossy(&host.ssmc(&["doctor"]).stdout).into_owned();
    assert!(table.starts_with("CRITICAL: "), "{table}");
    assert!(
        table.contains("fix: fix the cause in the line"),
        "remedies are printed: {table}"
    );
    drop(agent);
    let doc = host.json(&["doctor", "--json"], 2);
    let (s, detail) = status_of(&doc, "agent.service");
    assert_eq!(s, "critical", "{detail}");
    assert!(detail.contains("process scan"), "{detail}");
    // The worker died with it.
    assert_eq!(status_of(&doc, "agent.worker").0, "unknown");
}

#[test]
fn daemon_writes_health_json_textfile_and_inventory() {
    require_root!();
    let emu = Emulator::start_with(serde_json::json!({"instance_id": INSTANCE}));
    let host = Host::new();
    let d = AgentDirs::new(host.dir());
    let agent = StandInAgent::start(&d.bin, &d.log_file(), 60, "");
    let textfile = host.dir().join("ssm_companion.prom");
    std::fs::write(
        &host.config,
        format!(
            "[aws]\nendpoint_url = \"{}\"\nimds_endpoint = \"{}\"\n[accounts]\nenabled = false\n[health]\ninterval = \"5s\"\nnetwork_interval = \"10s\"\nservices = []\ninventory = true\ninventory_splay = \"0s\"\nprometheus_textfile = \"{}\"\n{}",
            emu.moto,
            emu.imds,
            textfile.display(),
            d.paths_toml(&host.state)
        ),
    )
    .unwrap();
    // The record of the last send cannot be written (a full disk, say): the rate limit must
    // hold all the same.
    std::fs::create_dir_all(host.state.join("health-inventory.json")).unwrap();
    let mut daemon = Command::new(repo().join("scripts/private-userdb.sh"))
        .arg(host.dir().join("db"))
        .arg(bin())
        .args(["--config"])
        .arg(&host.config)
        .arg("run")
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("SSM_COMPANION_VENDOR_CONFIG_DIR", host.dir().join("vendor"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let stderr = stderr.clone();
        let mut pipe = daemon.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = std::io::Read::read(&mut pipe, &mut buf) {
                if n == 0 {
                    break;
                }
                stderr
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    let report = host.state.join("health.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    let inventory = loop {
        let inv: Value =
            serde_json::from_str(&common::http(&emu.moto, "GET", "/_emulator/inventory", None).1)
                .unwrap();
        let item = inv["inventory"]["us-east-1"][INSTANCE]["Custom:SsmCompanionHealth"].clone();
        if report.exists() && !item.is_null() {
            break item;
        }
        assert!(
            Instant::now() < deadline,
            "no health.json/inventory item yet: {inv:#}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(doc["schema"], "ssm-companion/health/v1");
    assert_eq!(status_of(&doc, "agent.log.health").0, "ok");
    let prom = std::fs::read_to_string(&textfile).unwrap();
    assert!(
        prom.contains("ssm_companion_health_check_status{check=\"agent.worker\"} 0\n"),
        "{prom}"
    );
    let rows = inventory["Content"].as_array().unwrap();
    assert_eq!(rows[0]["Check"], "overall");
    // The first report sent is a full one: the network checks are in it (a local-only report
    // said "ok" fleet-wide for a host that could not reach AWS).
    assert!(
        rows.iter().any(|r| r["Check"] == "sts.identity"),
        "the first Inventory report lacks the network checks: {rows:#?}"
    );
    assert_eq!(doc["partial"], false, "{doc:#}");
    assert!(
        rows.iter()
            .any(|r| r["Check"] == "agent.version" && r["Value"] == "3.3.987.0")
    );
    // Unchanged reports are not sent again within inventory_min_interval, even though the
    // record of the send could not be written.
    std::thread::sleep(Duration::from_secs(12));
    let inv: Value =
        serde_json::from_str(&common::http(&emu.moto, "GET", "/_emulator/inventory", None).1)
            .unwrap();
    assert_eq!(inv["counters"]["put_calls"], 1, "{inv:#}");

    // The fleet view reads it back.
    let fleet = host.json(&["fleet", "health", "--json"], 0);
    assert_eq!(fleet["schema"], "ssm-companion/fleet-health/v1");
    assert_eq!(fleet["instances"][0]["instance_id"], INSTANCE);
    assert_eq!(fleet["agent_versions"]["3.3.987.0"], 1);

    // The agent dies: the change is logged (a journal event under systemd) within an interval.
    drop(agent);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !stderr
        .lock()
        .unwrap()
        .contains("health agent.service: ok -> critical")
    {
        assert!(
            Instant::now() < deadline,
            "no change event: {}",
            stderr.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(status_of(&doc, "agent.service").0, "critical");
    // A critical change is an error (journal priority err), not a warning; a check still
    // unknown at start is not a change.
    let log = stderr.lock().unwrap().clone();
    let line = log
        .lines()
        .find(|l| l.contains("health agent.service: ok -> critical"))
        .unwrap_or_default();
    assert!(line.contains("ERROR"), "{line}");
    assert!(!log.contains("unknown -> unknown"), "{log}");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = daemon.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    reader.join().unwrap();
}

#[test]
fn real_systemd_runs_the_agent_unit_and_doctor_fixes_a_stopped_agent() {
    require_root!();
    let emu = Emulator::start_with(serde_json::json!({"instance_id": INSTANCE}));
    let work = tempfile::Builder::new()
        .prefix("ssmc-sd")
        .tempdir_in("/tmp")
        .unwrap();
    let d = AgentDirs::new(work.path());
    let unit = work.path().join("amazon-ssm-agent.service");
    std::fs::write(
        &unit,
        format!(
            "[Unit]\nDescription=stand-in amazon-ssm-agent (ssm-companion tests)\nAfter=network-online.target\n\n[Service]\nType=simple\nWorkingDirectory=/usr/bin/\nExecStart={bin}/amazon-ssm-agent\nEnvironment=STAND_IN_LOG={log}/amazon-ssm-agent.log STAND_IN_PERIOD=60\nKillMode=process\nRestart=always\nRestartPreventExitStatus=194\nRestartSec=90\n\n[Install]\nWantedBy=multi-user.target\n",
            bin = d.bin.display(),
            log = d.log.display()
        ),
    )
    .unwrap();
    let state = work.path().join("own-state");
    let config = work.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[aws]\nendpoint_url = \"{}\"\nimds_endpoint = \"{}\"\n[health]\nservices = []\nfix_min_interval = \"1m\"\n{}",
            emu.moto,
            emu.imds,
            d.paths_toml(&state)
        ),
    )
    .unwrap();
    let target = bin();
    let bin_dir = target.parent().unwrap();
    let sd = Systemd::start(
        &work.path().join("systemd"),
        &[&unit],
        &[bin_dir, &d.bin, &config, &d.state, &d.config],
        &[&d.log, work.path()],
    );
    let out = sd.exec(&["systemctl", "enable", "--now", "amazon-ssm-agent.service"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let doctor = |extra: &[&str]| -> (i32, Value) {
        let mut args = vec![
            target.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "doctor",
            "--json",
        ];
        args.extend_from_slice(extra);
        let out = sd.exec(&args);
        let doc = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{e}: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().unwrap_or(-1), doc)
    };
    // The agent starts its worker a moment after systemd started it: wait until doctor itself
    // sees both.
    let deadline = Instant::now() + Duration::from_secs(30);
    let doc = loop {
        let (_, doc) = doctor(&[]);
        if status_of(&doc, "agent.service").0 == "ok" && status_of(&doc, "agent.worker").0 == "ok" {
            break doc;
        }
        assert!(
            Instant::now() < deadline,
            "the agent never came up: {doc:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let (s, detail) = status_of(&doc, "agent.service");
    assert_eq!(s, "ok", "{detail}");
    assert!(
        detail.contains("amazon-ssm-agent.service is running"),
        "{detail}"
    );
    assert_eq!(status_of(&doc, "agent.worker").0, "ok");

    // Stopped: critical, and the remedy is the command.
    let out = sd.exec(&["systemctl", "stop", "amazon-ssm-agent.service"]);
    assert!(out.status.success());
    // KillMode=process leaves the worker: kill it, as a crash would.
    let _ = Command::new("pkill")
        .args(["-f", &d.bin.join("ssm-agent-worker").display().to_string()])
        .status();
    let (code, doc) = doctor(&[]);
    let (s, detail) = status_of(&doc, "agent.service");
    assert_eq!((code, s.as_str()), (2, "critical"), "{detail}");
    assert!(detail.contains("inactive"), "{detail}");

    // --fix starts it (once: the rate limit is remembered).
    let (code, doc) = doctor(&["--fix"]);
    assert_eq!(status_of(&doc, "agent.service").0, "ok", "{doc:#}");
    assert_ne!(code, 2);
    let active = sd.exec(&["systemctl", "is-active", "amazon-ssm-agent.service"]);
    assert_eq!(String::from_utf8_lossy(&active.stdout).trim(), "active");
    sd.exec(&["systemctl", "stop", "amazon-ssm-agent.service"]);
    let out = sd.exec(&[
        target.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "doctor",
        "--fix",
    ]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not fixing: the last attempt was at"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A drop-in makes the agent run as nobody: systemd says all is well, but Run As and
    // ssm-user need a root agent.
    let _ = Command::new("pkill")
        .args(["-f", &d.bin.display().to_string()])
        .status();
    std::fs::set_permissions(&d.log, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = sd.exec(&[
        "sh",
        "-c",
        "mkdir -p /run/systemd/system/amazon-ssm-agent.service.d && printf '[Service]\\nUser=nobody\\n' > /run/systemd/system/amazon-ssm-agent.service.d/user.conf && systemctl daemon-reload && systemctl restart amazon-ssm-agent.service",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let doc = loop {
        let (_, doc) = doctor(&[]);
        if status_of(&doc, "agent.worker").0 == "ok" {
            break doc;
        }
        assert!(
            Instant::now() < deadline,
            "the agent never came up as nobody: {doc:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let (s, detail) = status_of(&doc, "agent.service");
    assert_eq!(s, "critical", "{detail}");
    assert!(detail.contains("not root"), "{detail}");
    let _ = Command::new("pkill")
        .args(["-f", &d.bin.display().to_string()])
        .status();

    // A crash loop: the agent exits at once and systemd waits RestartSec before trying again.
    // `--fix` must not wait out the delay with a `start`, and the verdict stays critical.
    let fix_loop = |dropin: &str, wanted: &[&str]| -> (i32, Value, String) {
        let script = format!(
            "printf '{dropin}' > /run/systemd/system/amazon-ssm-agent.service.d/user.conf && systemctl daemon-reload && systemctl restart amazon-ssm-agent.service"
        );
        let out = sd.exec(&["sh", "-c", &script]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = sd.exec(&[
                "systemctl",
                "show",
                "-p",
                "SubState,ActiveState,Result,NRestarts",
                "amazon-ssm-agent.service",
            ]);
            let show = String::from_utf8_lossy(&out.stdout).into_owned();
            // All of them at once: systemd passes through `failed` on its way to
            // `auto-restart`, so one property alone can be a moment of a transition.
            if wanted.iter().all(|p| show.lines().any(|l| l == *p)) {
                break;
            }
            assert!(Instant::now() < deadline, "never {wanted:?}: {show}");
            std::thread::sleep(Duration::from_millis(200));
        }
        // The earlier fix is forgotten, so the rate limit does not answer first.
        let _ = std::fs::remove_file(state.join("health-fix.json"));
        let out = sd.exec(&[
            target.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "doctor",
            "--json",
            "--fix",
        ]);
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        (
            out.status.code().unwrap_or(-1),
            doc,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, doc, stderr) = fix_loop(
        "[Service]\\nUser=\\nExecStart=\\nExecStart=/bin/false\\nRestartSec=90\\n",
        &["SubState=auto-restart"],
    );
    assert_eq!(code, 2, "{doc:#}");
    assert_eq!(status_of(&doc, "agent.service").0, "critical", "{doc:#}");
    assert!(
        stderr.contains("not fixing") && stderr.contains("crash-looping"),
        "{stderr}"
    );
    // Crashing so fast that systemd gave up (its start limit: systemd 252 then says failed,
    // Result=exit-code, after automatic restarts): said so, nothing started.
    let (code, doc, stderr) = fix_loop(
        "[Unit]\\nStartLimitBurst=3\\nStartLimitIntervalSec=60\\n[Service]\\nUser=\\nExecStart=\\nExecStart=/bin/false\\nRestartSec=100ms\\n",
        &["ActiveState=failed", "SubState=failed"],
    );
    assert_eq!(code, 2, "{doc:#}");
    assert_eq!(status_of(&doc, "agent.service").0, "critical", "{doc:#}");
    assert!(
        stderr.contains("stopped restarting") && stderr.contains("reset-failed"),
        "{stderr}"
    );
}

#[test]
fn doctor_refuses_to_run_as_another_user_with_unknown() {
    require_root!();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(bin())
        .args(["--config", "/dev/null", "doctor"])
        .env("SSM_COMPANION_VENDOR_CONFIG_DIR", "/nonexistent")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "exit 3 = unknown: {stderr}");
    assert!(stderr.contains("`doctor` must run as root"), "{stderr}");
    assert!(out.stdout.is_empty(), "no half report");
}

/// When DNS fails for every endpoint and for the AWS calls, the table says the root cause once
/// with the endpoints under it, and no check blames a permission or the security groups: the
/// remedies follow the kind of failure the real SDK and probes met.
#[test]
fn a_dns_outage_is_one_root_cause_with_dns_remedies() {
    require_root!();
    let (_ns, emu, host) = in_netns();
    let d = AgentDirs::new(host.dir());
    let agent = StandInAgent::start(&d.bin, &d.log_file(), 60, "");
    // The AWS calls go to a name that does not resolve either.
    std::fs::write(
        &host.config,
        format!(
            "[aws]\nendpoint_url = \"http://moto.us-east-1.amazonaws.invalid:5000\"\nimds_endpoint = \"{}\"\nmax_attempts = 1\n[health]\ntimeout = \"2s\"\n{}",
            emu.imds,
            d.paths_toml(&host.state)
        ),
    )
    .unwrap();
    // A resolver that never answers: every lookup fails within a second.
    let doctor = |args: &str| {
        let script = format!(
            "printf 'nameserver 10.213.0.250\\noptions timeout:1 attempts:1\\n' > /etc/resolv.conf; SSM_COMPANION_VENDOR_CONFIG_DIR={v} {bin} --config {cfg} doctor {args}",
            v = host.dir().join("vendor").display(),
            bin = bin().display(),
            cfg = host.config.display()
        );
        String::from_utf8_lossy(&host.sh(&script).stdout).into_owned()
    };
    let stdout = doctor("--json");
    let doc: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let all = doc["checks"].as_array().unwrap();
    let endpoints: Vec<&Value> = all
        .iter()
        .filter(|c| c["id"].as_str().unwrap().starts_with("endpoint."))
        .collect();
    assert_eq!(endpoints.len(), 7, "{stdout}");
    for c in &endpoints {
        assert_eq!(c["cause"], "dns", "{c}");
    }
    let check = |id: &str| {
        all.iter()
            .find(|c| c["id"] == id)
            .unwrap_or_else(|| panic!("no {id}: {stdout}"))
    };
    // The SDK's own DNS failure is recognised: the DNS remedy, not a permission.
    for id in ["sts.identity", "runas.preferences"] {
        let c = check(id);
        assert_eq!(c["cause"], "dns", "{c}");
        let remedy = c["remedy"].as_str().unwrap();
        assert!(remedy.contains("DNS"), "{c}");
        assert!(!remedy.contains("grant"), "{c}");
    }
    let table = doctor("");
    assert_eq!(
        table
            .matches("DNS resolution fails for all 7 AWS endpoints")
            .count(),
        1,
        "{table}"
    );
    assert_eq!(
        table.matches("fix: check the VPC's DNS resolution").count(),
        // Once for the endpoints, once each for the two AWS calls.
        3,
        "{table}"
    );
    assert!(!table.contains("security group"), "{table}");
    assert!(!table.contains("\\n"), "no literal \\n: {table}");
    drop(agent);
}

/// A hibernating agent stays "hibernating" after `health.log_window`: `doctor` reads
/// `hibernate.log` (UTC lines, as current agents write it), and remembers the last failure in
/// its state directory so a later run — a new process — still names the cause, never "restart
/// the agent".
#[test]
fn a_hibernation_is_never_forgotten() {
    require_root!();
    let emu = Emulator::start_with(serde_json::json!({"instance_id": INSTANCE}));
    let host = Host::new();
    let d = AgentDirs::new(host.dir());
    write_config(&host, &emu, &d, "services = []\n");
    let local = |ago: u64| {
        (chrono::Local::now() - chrono::Duration::seconds(ago as i64))
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    };
    let utc = |ago: u64| {
        (chrono::Utc::now() - chrono::Duration::seconds(ago as i64))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    };
    let main_log = d.log.join("amazon-ssm-agent.log");
    let hibernating = format!(
        "{} INFO [ssm-agent-worker] [HealthCheck] HealthCheck reporting agent health.\n{} INFO [ssm-agent-worker] Entering SSM Agent hibernate - AccessDeniedException: User: arn:aws:sts::123456789012:assumed-role/app/i-0123456789abcdef0 is not authorized to perform: ssm:UpdateInstanceInformation\n",
        local(7300),
        local(7200)
    );
    std::fs::write(&main_log, &hibernating).unwrap();
    std::fs::write(
        d.log.join("hibernate.log"),
        format!(
            "{} INFO Agent is in hibernate mode. Reducing logging. Logging will be reduced to one log per backoff period\n{} ERROR Health ping failed with error - AccessDeniedException: not authorized to perform: ssm:UpdateInstanceInformation\n",
            utc(7190),
            utc(600)
        ),
    )
    .unwrap();
    let health = |doc: &Value| {
        doc["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == "agent.log.health")
            .cloned()
            .unwrap()
    };
    // Two hours after the hibernation line: outside the 30-minute window.
    let c = health(&host.json(&["doctor", "--json"], 2));
    assert_eq!(c["status"], "critical", "{c}");
    assert!(
        c["detail"].as_str().unwrap().contains("hibernating since"),
        "{c}"
    );
    let remedy = c["remedy"].as_str().unwrap();
    assert!(remedy.contains("ssm:UpdateInstanceInformation"), "{c}");
    assert!(!remedy.contains("restart the agent"), "{c}");

    // A failure seen within the window is remembered by one run and named by the next, after
    // the window (and the process) are gone and hibernate.log was rotated away.
    std::fs::remove_file(d.log.join("hibernate.log")).unwrap();
    std::fs::write(
        &main_log,
        format!(
            "{} INFO [ssm-agent-worker] [HealthCheck] HealthCheck reporting agent health.\n{} INFO [ssm-agent-worker] Entering SSM Agent hibernate - AccessDeniedException: is not authorized to perform: ssm:UpdateInstanceInformation\n",
            local(1300),
            local(1200)
        ),
    )
    .unwrap();
    host.json(&["doctor", "--json"], 2);
    std::fs::write(&main_log, &hibernating).unwrap();
    let c = health(&host.json(&["doctor", "--json"], 2));
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains("last known failure (hibernation"),
        "{c}"
    );
    assert!(
        !c["remedy"].as_str().unwrap().contains("restart the agent"),
        "{c}"
    );
}

/// Name lookups that never return (an NSS module that hangs, as a stuck LDAP/SSSD source
/// does, enabled only in the private /etc): `doctor` still ends within its deadlines — it does
/// not wait for the stuck lookup threads at exit — and says why the endpoints failed.
#[test]
fn a_hung_name_service_never_holds_doctor_past_its_deadlines() {
    require_root!();
    let emu = Emulator::start_with(serde_json::json!({"instance_id": INSTANCE}));
    let host = Host::new();
    let d = AgentDirs::new(host.dir());
    let _agent = StandInAgent::start(&d.bin, &d.log_file(), 60, "");
    // Every name hangs: the endpoints', the AWS API's (the signed STS and SSM calls resolve it)
    // and the mapped Run As user's.
    std::fs::write(
        &host.config,
        format!(
            "[aws]\nendpoint_url = \"https://api.hang.example\"\nimds_endpoint = \"{}\"\nmax_attempts = 1\n[health]\ntimeout = \"2s\"\nservices = [\"ssm\", \"ssmmessages\", \"ec2messages\"]\n{}",
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
    let started = Instant::now();
    let out = host.ssmc_env(
        &["doctor", "--json"],
        &[(
            "SSM_COMPANION_VENDOR_CONFIG_DIR",
            host.dir().join("vendor").to_str().unwrap(),
        )],
    );
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let doc: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    for id in [
        "endpoint.ssm",
        "endpoint.ssmmessages",
        "endpoint.ec2messages",
    ] {
        let (s, detail) = status_of(&doc, id);
        assert_ne!(s, "ok", "{id}: {detail}");
        assert!(
            detail.contains("DNS failed: no answer within 2s"),
            "{id}: {detail}"
        );
    }
    let (s, detail) = status_of(&doc, "sts.identity");
    assert_ne!(s, "ok", "sts.identity: {detail}");
    let (s, detail) = status_of(&doc, "runas.users");
    assert_eq!(s, "unknown", "runas.users: {detail}");
    assert!(detail.contains("`alice`"), "runas.users: {detail}");
    // One budget for the whole network phase: the run ends within health.timeout + 1 s (the
    // issue's bound), not after the lookups that never end.
    eprintln!("doctor with hung NSS: {took:?}");
    assert!(
        took < Duration::from_secs(3),
        "doctor took {took:?} with hung lookups and timeout = 2s"
    );
}

/// A healthy hybrid (on-premises, `mi-…`) host: no IMDS, the agent registered and sharing its
/// credentials (`ShareFile`). `doctor` signs with those credentials and reports ok — it used to
/// stay unknown (exit 3) for ever, speaking of Default Host Management.
#[test]
fn a_healthy_hybrid_host_is_ok() {
    require_root!();
    let emu = Emulator::start_with(serde_json::json!({"instance_id": INSTANCE}));
    let host = Host::new();
    let d = AgentDirs::new(host.dir());
    let _agent = StandInAgent::start(&d.bin, &d.log_file(), 60, "");
    let creds = host.dir().join("agent-credentials");
    std::fs::write(
        &creds,
        "[default]\naws_access_key_id = AKIAHYBRIDEXAMPLE\naws_secret_access_key = secret\naws_session_token = token\n",
    )
    .unwrap();
    std::fs::write(
        d.state.join("registration"),
        r#"{"ManagedInstanceID":"mi-0123456789abcdef0","Region":"us-east-1"}"#,
    )
    .unwrap();
    std::fs::create_dir_all(d.state.join("runtimeconfig")).unwrap();
    let expires = (chrono::Utc::now() + chrono::Duration::minutes(50))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    std::fs::write(
        d.state.join("runtimeconfig/identity_config.json"),
        format!(
            r#"{{"SchemaVersion":"1.1","InstanceId":"mi-0123456789abcdef0","IdentityType":"OnPrem","ShareFile":"{}","ShareProfile":"","CredentialsExpiresAt":"{expires}","CredentialSource":"SSM"}}"#,
            creds.display()
        ),
    )
    .unwrap();
    // IMDS answers nothing here: a closed port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let imds = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    std::fs::write(
        &host.config,
        format!(
            "[aws]\nendpoint_url = \"{}\"\nimds_endpoint = \"{imds}\"\n[health]\nservices = []\n{}",
            emu.moto,
            d.paths_toml(&host.state)
        ),
    )
    .unwrap();
    let out = host.ssmc(&["doctor", "--json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let doc: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    assert!(!stdout.contains("Default Host Management"), "{stdout}");
    assert!(
        !stdout.contains("AKIAHYBRID"),
        "no key is printed: {stdout}"
    );
    for id in [
        "identity",
        "credentials.agent",
        "credentials.instance_profile",
        "sts.identity",
        "clock.skew",
    ] {
        let (s, detail) = status_of(&doc, id);
        assert_eq!(s, "ok", "{id}: {detail}\n{doc:#}");
    }
    assert_eq!(doc["instance_id"], "mi-0123456789abcdef0", "{doc:#}");
    assert_ne!(out.status.code(), Some(3), "{doc:#}");
}
