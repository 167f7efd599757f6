//! Harness for the integration tests: the local AWS emulator (moto + a strict IMDSv2 stub,
//! `tests/emulator/emulator.py`) and a private user database (`scripts/private-userdb.sh`) in which the
//! real `ssm-companion` binary runs real shadow-utils, sudo and pwck.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::disallowed_methods)] // tests start programs directly

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ssm-companion"))
}

/// True when running as root (needed for the private user database).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Tests with real components need root (mount namespaces). They are built only with the
/// `root-tests` feature; run without root, they fail with this message, never silently pass.
#[macro_export]
macro_rules! require_root {
    () => {
        assert!(
            $crate::common::is_root(),
            "{}: this test needs root (a private user database in a mount namespace); run it as root, or leave out --features root-tests (plain `cargo test` runs the tests that need no root)",
            module_path!()
        );
    };
}

/// The Python that has the emulator's requirements.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("SSM_COMPANION_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let p = repo().join(".venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: the emulator's venv is not installed. Run `make test` (it installs what the tests need), or set SSM_COMPANION_TEST_PYTHON",
        p.display()
    );
    p
}

/// Runs a future to completion on a fresh current-thread runtime.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// A minimal HTTP/1.0 request (the emulator's control endpoints).
pub fn http(base: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, String) {
    let addr = base.trim_start_matches("http://").trim_end_matches('/');
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The emulator process.
pub struct Emulator {
    child: Child,
    /// moto's base URL.
    pub moto: String,
    /// The IMDS stub's base URL.
    pub imds: String,
    _dir: tempfile::TempDir,
}

impl Emulator {
    /// Starts the emulator with the default instance identity.
    pub fn start() -> Self {
        Self::start_with(serde_json::json!({}))
    }

    /// Starts the emulator with an IMDS config (see `tests/emulator/emulator.py`).
    pub fn start_with(imds: Value) -> Self {
        Self::start_in(None, imds)
    }

    /// Starts the emulator inside a network namespace (its URLs are then only reachable there).
    pub fn start_in(ns: Option<&NetNs>, imds: Value) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("imds.json");
        std::fs::write(&cfg, imds.to_string()).unwrap();
        let mut cmd = match ns {
            Some(ns) => ns.command(python()),
            None => Command::new(python()),
        };
        let mut child = cmd
            .arg(repo().join("tests/emulator/emulator.py"))
            .args(["--exit-on-stdin-eof", "--imds-config"])
            .arg(&cfg)
            .arg("--log")
            .arg(dir.path().join("emulator.log"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start the emulator");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("emulator did not start ({e}): {line:?}"));
        Self {
            child,
            moto: v["moto"].as_str().unwrap().to_string(),
            imds: v["imds"].as_str().unwrap().to_string(),
            _dir: dir,
        }
    }

    /// Replaces the fault rules (`[]` clears).
    pub fn faults(&self, rules: Value) {
        let (status, body) = http(&self.moto, "POST", "/_emulator/faults", Some(&rules));
        assert_eq!(status, 200, "{body}");
    }

    /// Request counts per `service:Action`.
    pub fn stats(&self) -> Value {
        serde_json::from_str(&http(&self.moto, "GET", "/_emulator/stats", None).1).unwrap()
    }

    /// Zeroes the request counts.
    pub fn reset_stats(&self) {
        http(&self.moto, "POST", "/_emulator/stats/reset", None);
        http(&self.imds, "POST", "/_emulator/imds/stats/reset", None);
    }

    /// Request counts of the IMDS stub per path.
    pub fn imds_stats(&self) -> Value {
        serde_json::from_str(&http(&self.imds, "GET", "/_emulator/imds/stats", None).1).unwrap()
    }

    /// Merges into the IMDS stub's live config.
    pub fn imds_config(&self, v: Value) {
        let (status, body) = http(&self.imds, "POST", "/_emulator/imds/config", Some(&v));
        assert_eq!(status, 200, "{body}");
    }

    fn sdk(&self) -> aws_config::SdkConfig {
        block_on(
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new("us-east-1"))
                .endpoint_url(&self.moto)
                .credentials_provider(aws_sdk_iam::config::Credentials::new(
                    "test", "test", None, None, "tests",
                ))
                .load(),
        )
    }

    /// An IAM client on the emulator.
    pub fn iam(&self) -> aws_sdk_iam::Client {
        aws_sdk_iam::Client::new(&self.sdk())
    }

    /// Creates an IAM user with tags.
    pub fn user(&self, name: &str, path: &str, tags: &[(&str, &str)]) {
        let iam = self.iam();
        let mut req = iam.create_user().user_name(name).path(path);
        for (k, v) in tags {
            req = req.tags(
                aws_sdk_iam::types::Tag::builder()
                    .key(*k)
                    .value(*v)
                    .build()
                    .unwrap(),
            );
        }
        block_on(req.send()).unwrap();
    }

    /// Creates an IAM role with tags.
    pub fn role(&self, name: &str, tags: &[(&str, &str)]) {
        let iam = self.iam();
        let mut req = iam
            .create_role()
            .role_name(name)
            .assume_role_policy_document(r#"{"Version":"2012-10-17","Statement":[]}"#);
        for (k, v) in tags {
            req = req.tags(
                aws_sdk_iam::types::Tag::builder()
                    .key(*k)
                    .value(*v)
                    .build()
                    .unwrap(),
            );
        }
        block_on(req.send()).unwrap();
    }

    /// Sets (adds or replaces) one tag of a user.
    pub fn tag_user(&self, name: &str, key: &str, value: &str) {
        let tag = aws_sdk_iam::types::Tag::builder()
            .key(key)
            .value(value)
            .build()
            .unwrap();
        block_on(self.iam().tag_user().user_name(name).tags(tag).send()).unwrap();
    }

    /// Removes one tag of a user.
    pub fn untag_user(&self, name: &str, key: &str) {
        block_on(self.iam().untag_user().user_name(name).tag_keys(key).send()).unwrap();
    }

    /// Writes the Session Manager preferences document.
    pub fn preferences(&self, enabled: bool, default_user: &str) {
        let ssm = aws_sdk_ssm::Client::new(&self.sdk());
        let content = serde_json::json!({
            "schemaVersion": "1.0",
            "description": "Session Manager preferences",
            "sessionType": "Standard_Stream",
            "inputs": {"runAsEnabled": enabled, "runAsDefaultUser": default_user},
        })
        .to_string();
        block_on(
            ssm.create_document()
                .name("SSM-SessionManagerRunShell")
                .document_type(aws_sdk_ssm::types::DocumentType::Session)
                .document_format(aws_sdk_ssm::types::DocumentFormat::Json)
                .content(content)
                .send(),
        )
        .unwrap();
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A host: a private user database plus a config and state directory for ssm-companion.
pub struct Host {
    dir: tempfile::TempDir,
    /// Run inside this network namespace.
    pub netns: Option<String>,
    /// The config file the binary is given.
    pub config: PathBuf,
    /// The state directory (outside the namespace's overlays, so it persists).
    pub state: PathBuf,
}

impl Host {
    /// A fresh private user database.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ssmc-host")
            .tempdir()
            .unwrap();
        let config = dir.path().join("config.toml");
        let state = dir.path().join("state");
        std::fs::create_dir_all(dir.path().join("vendor")).unwrap();
        Self {
            dir,
            netns: None,
            config,
            state,
        }
    }

    /// The scratch directory of this host.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Writes the config: emulator endpoints, a private state dir, then `extra` (TOML).
    /// `extra` may contain `[accounts]`; its keys are merged after the defaults given here.
    pub fn configure(&self, emu: &Emulator, accounts: &str) {
        let text = format!(
            "[aws]\nendpoint_url = \"{}\"\nimds_endpoint = \"{}\"\nmax_attempts = 2\ncall_timeout = \"10s\"\n\n[accounts]\nsplay = \"0s\"\n{accounts}\n\n[paths]\nstate_dir = \"{}\"\n",
            emu.moto,
            emu.imds,
            self.state.display()
        );
        std::fs::write(&self.config, text).unwrap();
    }

    fn userdb(&self) -> Command {
        let mut c = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns])
                    .arg(repo().join("scripts/private-userdb.sh"));
                c
            }
            None => Command::new(repo().join("scripts/private-userdb.sh")),
        };
        c.arg(self.dir.path().join("db"));
        c.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", "/root")
            .env(
                "SSM_COMPANION_VENDOR_CONFIG_DIR",
                self.dir.path().join("vendor"),
            );
        c
    }

    /// Runs a shell script inside the private user database.
    pub fn sh(&self, script: &str) -> Output {
        self.userdb()
            .args(["/bin/bash", "-c", script])
            .output()
            .unwrap()
    }

    /// Runs a shell script and returns its stdout; panics when it fails.
    pub fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "script failed ({:?}): {script}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs ssm-companion inside the private user database with this host's config.
    pub fn ssmc(&self, args: &[&str]) -> Output {
        self.ssmc_env(args, &[])
    }

    /// The same with extra environment variables.
    pub fn ssmc_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = self.userdb();
        c.arg(bin()).arg("--config").arg(&self.config).args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    }

    /// Starts `ssm-companion run` in the private user database as systemd would: sd_notify
    /// messages to `notify` (a datagram socket the caller bound), stderr piped (shaped for the
    /// journal: `JOURNAL_STREAM` is set), plus `env`.
    pub fn daemon(&self, notify: &Path, env: &[(&str, &str)]) -> std::process::Child {
        let mut c = self.userdb();
        c.arg(bin())
            .arg("--config")
            .arg(&self.config)
            .arg("run")
            .env("NOTIFY_SOCKET", notify)
            .env("JOURNAL_STREAM", "8:12345")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
        c.spawn().unwrap()
    }

    /// `accounts apply --json`, asserting the exit status.
    pub fn apply(&self, expect_code: i32) -> Value {
        self.json(&["accounts", "apply", "--json"], expect_code)
    }

    /// `accounts plan --json`.
    pub fn plan(&self) -> Value {
        self.json(&["accounts", "plan", "--json"], 0)
    }

    /// Runs a command that prints JSON, asserting its exit status.
    pub fn json(&self, args: &[&str], expect_code: i32) -> Value {
        let out = self.ssmc(args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(expect_code),
            "ssm-companion {args:?}\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
    }

    /// The passwd entry of `name` (fields), if any.
    pub fn getent(&self, name: &str) -> Option<Vec<String>> {
        let out = self.sh(&format!("getent passwd -- '{name}'"));
        out.status.success().then(|| {
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .split(':')
                .map(str::to_string)
                .collect()
        })
    }

    /// The UID of `name`.
    pub fn uid(&self, name: &str) -> Option<u32> {
        self.getent(name).map(|f| f[2].parse().unwrap())
    }

    /// Supplementary groups of `name` (from `id -nG`, without its own group).
    pub fn groups(&self, name: &str) -> Vec<String> {
        let mut g: Vec<String> = self
            .sh_ok(&format!("id -nG -- '{name}'"))
            .split_whitespace()
            .filter(|g| *g != name)
            .map(str::to_string)
            .collect();
        g.sort();
        g
    }

    /// Asserts the database is consistent: `pwck -r -q` and `grpck -r` pass, and `pwck -r`
    /// reports nothing about `managed` users (it does report the host's own system users whose
    /// homes do not exist in the private /home).
    pub fn assert_consistent(&self, managed: &[&str]) {
        let out =
            self.sh("pwck -r -q; echo pwck=$?; grpck -r; echo grpck=$?; pwck -r 2>&1 || true");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(text.contains("pwck=0"), "pwck -r -q failed:\n{text}");
        assert!(text.contains("grpck=0"), "grpck -r failed:\n{text}");
        for m in managed {
            assert!(
                !text.contains(&format!("'{m}'")),
                "pwck complains about {m}:\n{text}"
            );
        }
    }

    /// Steps of a sync JSON with the given action, as subject names.
    pub fn steps(doc: &Value, action: &str) -> Vec<String> {
        doc["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["action"] == action)
            .map(|s| {
                s["user"]
                    .as_str()
                    .or(s["group"].as_str())
                    .unwrap_or("")
                    .to_string()
            })
            .collect()
    }

    /// Skipped names with the given reason.
    pub fn skipped(doc: &Value, reason: &str) -> Vec<String> {
        doc["skipped"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["reason"] == reason)
            .map(|s| s["user"].as_str().unwrap().to_string())
            .collect()
    }
}

impl Default for Host {
    fn default() -> Self {
        Self::new()
    }
}

/// Builds the stand-in agent (`tests/support/stand-in-ssm-agent.c`) into `dir` under the agent's
/// binary names, owned by root, mode 0755.
pub fn install_stand_in_agent(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let core = dir.join("amazon-ssm-agent");
    let out = Command::new("gcc")
        .args(["-O2", "-o"])
        .arg(&core)
        .arg(repo().join("tests/support/stand-in-ssm-agent.c"))
        .output()
        .expect("gcc is needed to build the stand-in agent");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in [
        "ssm-agent-worker",
        "ssm-session-worker",
        "ssm-document-worker",
        "ssm-cli",
    ] {
        std::fs::copy(&core, dir.join(name)).unwrap();
    }
}

/// A running stand-in agent (core + worker), killed on drop.
pub struct StandInAgent {
    core: Child,
}

impl StandInAgent {
    /// Starts the core from `bin_dir`, logging to `log` every `period` seconds (`mode`
    /// "hibernate" logs the hibernation line instead of the health line).
    pub fn start(bin_dir: &Path, log: &Path, period: u32, mode: &str) -> Self {
        Self::start_with_env(bin_dir, log, period, mode, &[])
    }

    /// [`StandInAgent::start`] with extra environment variables (e.g. `https_proxy`), which the
    /// health checks read back from `/proc/<pid>/environ`.
    pub fn start_with_env(
        bin_dir: &Path,
        log: &Path,
        period: u32,
        mode: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let core = Command::new(bin_dir.join("amazon-ssm-agent"))
            .env_clear()
            .envs(env.iter().copied())
            .env("STAND_IN_LOG", log)
            .env("STAND_IN_PERIOD", period.to_string())
            .env("STAND_IN_MODE", mode)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait for the worker's first line.
        for _ in 0..100 {
            if std::fs::read_to_string(log).is_ok_and(|t| t.contains("ssm-agent-worker")) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { core }
    }

    /// The core's PID.
    pub fn pid(&self) -> u32 {
        self.core.id()
    }
}

impl Drop for StandInAgent {
    fn drop(&mut self) {
        // The worker is the core's child: kill both.
        let pid = self.core.id();
        let _ = Command::new("pkill")
            .args(["-KILL", "-P", &pid.to_string()])
            .status();
        let _ = self.core.kill();
        let _ = self.core.wait();
    }
}

/// A network namespace for reachability tests: 10.213.0.1 (TLS listener), 10.213.0.4 (a plain
/// TCP listener, so TLS fails), 10.213.0.2 (nothing listens: refused) on a veth whose peer
/// answers nothing, and a static neighbour 10.213.0.99 that swallows packets (timeouts).
pub struct NetNs {
    /// Its name (for `ip netns exec`).
    pub name: String,
    peer: String,
}

impl NetNs {
    /// Creates it.
    pub fn new() -> Self {
        let tag = format!("{:x}", std::process::id() ^ fastrand_u32());
        let name = format!("ssmc-{tag}");
        let peer = format!("ssmc-p{tag}");
        let (v0, v1) = (format!("sv0{tag}"), format!("sv1{tag}"));
        let sh = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().unwrap();
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        sh(&["netns", "add", &name]);
        sh(&["netns", "add", &peer]);
        sh(&[
            "link",
            "add",
            &v0[..v0.len().min(15)],
            "type",
            "veth",
            "peer",
            "name",
            &v1[..v1.len().min(15)],
        ]);
        let (v0, v1) = (
            v0[..v0.len().min(15)].to_string(),
            v1[..v1.len().min(15)].to_string(),
        );
        sh(&["link", "set", &v0, "netns", &name]);
        sh(&["link", "set", &v1, "netns", &peer]);
        for a in ["10.213.0.1/24", "10.213.0.2/24", "10.213.0.4/24"] {
            sh(&["-n", &name, "addr", "add", a, "dev", &v0]);
        }
        sh(&["-n", &name, "link", "set", &v0, "up"]);
        sh(&["-n", &name, "link", "set", "lo", "up"]);
        sh(&["-n", &peer, "link", "set", &v1, "up"]);
        sh(&[
            "-n",
            &name,
            "neigh",
            "add",
            "10.213.0.99",
            "lladdr",
            "02:00:00:00:00:99",
            "dev",
            &v0,
            "nud",
            "permanent",
        ]);
        Self { name, peer }
    }

    /// `ip netns exec <name>` as a command prefix.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.peer])
            .status();
    }
}

fn fastrand_u32() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    t.subsec_nanos()
}

/// A test CA and a server certificate for `names`, made with openssl: (ca.pem, cert.pem, key.pem).
pub fn make_certs(dir: &Path, names: &[&str]) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=ssm-companion test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "key.pem",
        "-out",
        "req.csr",
        "-subj",
        "/CN=test endpoint",
    ]);
    let san: Vec<String> = names.iter().map(|n| format!("DNS:{n}")).collect();
    std::fs::write(
        dir.join("ext.cnf"),
        format!("subjectAltName={}\n", san.join(",")),
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "req.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "cert.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    )
}

/// Listeners started by [`start_listeners`], stopped on drop.
pub struct Listeners(Child);

impl Drop for Listeners {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `tests/support/listener.py` in `ns`.
pub fn start_listeners(ns: &NetNs, args: &[String]) -> Listeners {
    let mut child = ns
        .command(python())
        .arg(repo().join("tests/support/listener.py"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready", "listener did not start");
    Listeners(child)
}

/// The stand-in agent's directories for a host: bin, log, state (with a fresh
/// `identity_config.json`: EC2 credentials valid for an hour), config.
pub struct AgentDirs {
    /// Binaries (the stand-in under the agent's names).
    pub bin: PathBuf,
    /// `/var/log/amazon/ssm`.
    pub log: PathBuf,
    /// `/var/lib/amazon/ssm`.
    pub state: PathBuf,
    /// `/etc/amazon/ssm`.
    pub config: PathBuf,
}

/// The instance id the health tests use.
pub const INSTANCE: &str = "i-0123456789abcdef0";

impl AgentDirs {
    /// Creates them under `root` and installs the stand-in agent.
    pub fn new(root: &Path) -> Self {
        let d = Self {
            bin: root.join("agent-bin"),
            log: root.join("agent-log"),
            state: root.join("agent-state"),
            config: root.join("agent-config"),
        };
        install_stand_in_agent(&d.bin);
        for p in [&d.log, &d.state.join("runtimeconfig"), &d.config] {
            std::fs::create_dir_all(p).unwrap();
        }
        let now = chrono::Utc::now();
        std::fs::write(
            d.state.join("runtimeconfig/identity_config.json"),
            serde_json::json!({
                "SchemaVersion": "1.1", "InstanceId": INSTANCE, "IdentityType": "EC2", "ShareFile": "", "ShareProfile": "",
                "CredentialsExpiresAt": (now + chrono::Duration::hours(1)).to_rfc3339(),
                "CredentialsRetrievedAt": now.to_rfc3339(), "CredentialSource": "EC2",
            })
            .to_string(),
        )
        .unwrap();
        d
    }

    /// The agent's log file.
    pub fn log_file(&self) -> PathBuf {
        self.log.join("amazon-ssm-agent.log")
    }

    /// A `[paths]` section pointing ssm-companion at these and at `state` (its own state dir).
    pub fn paths_toml(&self, state: &Path) -> String {
        format!(
            "[paths]\nstate_dir = \"{}\"\nagent_bin_dir = \"{}\"\nagent_snap_dir = \"/nonexistent/snap\"\nagent_state_dir = \"{}\"\nagent_log_dir = \"{}\"\nagent_config_dir = \"{}\"\n",
            state.display(),
            self.bin.display(),
            self.state.display(),
            self.log.display(),
            self.config.display()
        )
    }
}

/// `<service>.us-east-1.amazonaws.com` for each service.
pub fn endpoint_names(services: &[&str]) -> Vec<String> {
    services
        .iter()
        .map(|s| format!("{s}.us-east-1.amazonaws.com"))
        .collect()
}

/// A CA and a certificate for `names` under `dir/certs`, and the listeners (`tests/support/listener.py`)
/// serving TLS with it on 10.213.0.1:443, plus `extra` listener arguments. Returns the CA file.
pub fn tls_endpoints(
    ns: &NetNs,
    dir: &Path,
    names: &[String],
    extra: &[String],
) -> (PathBuf, Listeners) {
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (ca, cert, key) = make_certs(&certs, &refs);
    let mut args: Vec<String> = vec![
        "--tls".into(),
        "10.213.0.1:443".into(),
        "--cert".into(),
        cert.display().to_string(),
        "--key".into(),
        key.display().to_string(),
    ];
    args.extend_from_slice(extra);
    (ca, start_listeners(ns, &args))
}

/// `scripts/systemd-ns.sh` around a test: real systemd as PID 1 in private namespaces, stopped
/// (and its cgroups removed) on drop.
pub struct Systemd {
    state: PathBuf,
}

/// How to boot a [`Systemd`].
#[derive(Default)]
pub struct SystemdOptions<'a> {
    /// Unit files installed (not enabled) before boot.
    pub units: &'a [&'a Path],
    /// Host paths bind-mounted read-only at the same place.
    pub bind_ro: &'a [&'a Path],
    /// Host paths bind-mounted read-write at the same place.
    pub bind_rw: &'a [&'a Path],
    /// A root file system to boot (`scripts/debian-root.sh`) instead of the host's.
    pub lower: Option<&'a Path>,
}

impl Systemd {
    /// Boots with `units` over the host's root, with the given bind mounts.
    pub fn start(state: &Path, units: &[&Path], bind_ro: &[&Path], bind_rw: &[&Path]) -> Self {
        Self::boot(
            state,
            &SystemdOptions {
                units,
                bind_ro,
                bind_rw,
                lower: None,
            },
        )
    }

    /// Boots as `opts` say.
    pub fn boot(state: &Path, opts: &SystemdOptions<'_>) -> Self {
        let join = |v: &[&Path]| {
            v.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut cmd = Command::new(repo().join("scripts/systemd-ns.sh"));
        cmd.arg("start")
            .arg(state)
            .args(opts.units)
            .env("SYSTEMD_NS_BIND", join(opts.bind_ro))
            .env("SYSTEMD_NS_BIND_RW", join(opts.bind_rw));
        if let Some(l) = opts.lower {
            cmd.env("SYSTEMD_NS_LOWER", l);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "systemd did not boot: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self {
            state: state.to_path_buf(),
        }
    }

    /// Runs a command inside.
    pub fn exec(&self, args: &[&str]) -> Output {
        self.exec_stdin(args, None)
    }

    /// Runs a command inside with `input` on its stdin (how files get in).
    pub fn exec_stdin(&self, args: &[&str], input: Option<&[u8]>) -> Output {
        let mut child = Command::new(repo().join("scripts/systemd-ns.sh"))
            .arg("exec")
            .arg(&self.state)
            .args(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(data) = input {
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(data).unwrap();
        }
        child.wait_with_output().unwrap()
    }

    /// Runs a shell command inside; panics unless it succeeds; its stdout.
    pub fn sh(&self, script: &str) -> String {
        let out = self.exec(&["sh", "-c", script]);
        assert!(
            out.status.success(),
            "`{script}` failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Copies a host file to `dest` inside.
    pub fn put(&self, src: &Path, dest: &str) {
        let data = std::fs::read(src).unwrap();
        let out = self.exec_stdin(&["sh", "-c", &format!("cat > '{dest}'")], Some(&data));
        assert!(out.status.success(), "copying {} in failed", src.display());
    }
}

impl Drop for Systemd {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("scripts/systemd-ns.sh"))
            .arg("stop")
            .arg(&self.state)
            .output();
    }
}

// ---- The packages (tests/package_e2e.rs, benches/cold_start.rs) ----

/// The one package in target/packages whose name ends with `suffix`.
pub fn package(suffix: &str) -> PathBuf {
    let dir = repo().join("target/packages");
    let found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}: run `make packages` first", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "want exactly one *{suffix} in {} (run `make packages`): {found:?}",
        dir.display()
    );
    found.into_iter().next().unwrap()
}

/// The minimal root (built once, shared by the tests).
pub fn debian_root() -> PathBuf {
    let dir = repo().join("target/debian-root");
    let out = Command::new(repo().join("scripts/debian-root.sh"))
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scripts/debian-root.sh failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

/// Boots systemd over the minimal root, with a drop-in pointing ssm-companion at the emulator
/// (written before the package, as cloud-init would).
pub fn boot_debian(work: &Path, emu: &Emulator) -> Systemd {
    let sd = Systemd::boot(
        &work.join("sd"),
        &SystemdOptions {
            lower: Some(&debian_root()),
            ..Default::default()
        },
    );
    sd.sh(&format!(
        "mkdir -p /etc/ssm-companion/config.d && printf '%s' '[aws]\nendpoint_url = \"{}\"\nimds_endpoint = \"{}\"\nregion = \"us-east-1\"\n[accounts]\nsplay = \"0s\"\ninterval = \"20s\"\n[health]\nservices = []\n' > /etc/ssm-companion/config.d/50-test.toml",
        emu.moto, emu.imds
    ));
    sd
}
