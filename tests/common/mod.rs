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

/// Tests with real components need root (mount namespaces). Without root they fail, unless
/// `SSM_COMPANION_SKIP_ROOT_TESTS=1` asks to skip them, which is then said on stderr: never a
/// silent pass.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::common::is_root() {
            if std::env::var_os("SSM_COMPANION_SKIP_ROOT_TESTS").is_some() {
                eprintln!(
                    "SKIPPED {}: needs root (a mount namespace with overlays over /etc)",
                    module_path!()
                );
                return;
            }
            panic!(
                "this test needs root (a private user database in a mount namespace); run it as root, or set SSM_COMPANION_SKIP_ROOT_TESTS=1 to skip it"
            );
        }
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
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("imds.json");
        std::fs::write(&cfg, imds.to_string()).unwrap();
        let mut child = Command::new(python())
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
        Self { dir, config, state }
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
        let mut c = Command::new(repo().join("scripts/private-userdb.sh"));
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
