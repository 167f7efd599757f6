//! Harness for the integration tests: the local AWS emulator (moto + a strict IMDSv2 stub,
//! `tests/emulator/emulator.py`) and a private user database (`scripts/private-userdb.sh`) in which the
//! real `ssm-companion` binary runs real shadow-utils, sudo and pwck.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::disallowed_methods)] // tests start programs directly

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Appends `text` to `path` in one write (as a syslog daemon or the agent's logger does).
pub fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// Collects a child's stderr on a thread (the daemon's log, read after it stopped).
pub fn drain(child: &mut Child) -> std::thread::JoinHandle<String> {
    let mut stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    })
}

/// SIGTERM, and waits for the daemon to stop.
pub fn stop(daemon: &mut Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(daemon.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    daemon.wait().unwrap();
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ssm-companion"))
}

/// Compiles `tests/support/<source>` with gcc into `out` (`flags` before `-o`, `libs` after the
/// source); panics with gcc's messages when it fails.
pub fn compile_support(source: &str, out: &Path, flags: &[&str], libs: &[&str]) {
    let o = Command::new("gcc")
        .args(flags)
        .arg("-o")
        .arg(out)
        .arg(repo().join("tests/support").join(source))
        .args(libs)
        .output()
        .expect("gcc is needed to build the tests' stand-ins");
    assert!(
        o.status.success(),
        "gcc {source}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
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

/// Reads notifications until one contains `needle` (or panics after `timeout`).
pub fn wait_for(
    sock: &std::os::unix::net::UnixDatagram,
    needle: &str,
    timeout: Duration,
    seen: &mut Vec<String>,
) -> String {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        sock.set_read_timeout(Some(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(10)),
        ))
        .unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            seen.push(msg.clone());
            if msg.contains(needle) {
                return msg;
            }
        }
    }
    panic!("no notification containing {needle:?} within {timeout:?}; seen: {seen:#?}");
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

mod agent;
mod emulator;
mod gate;
mod host;
mod kaudit;
mod netns;
mod systemd;

// Each test file uses a part of the harness.
#[allow(unused_imports)]
pub use agent::*;
#[allow(unused_imports)]
pub use emulator::*;
#[allow(unused_imports)]
pub use gate::*;
#[allow(unused_imports)]
pub use host::*;
#[allow(unused_imports)]
pub use kaudit::*;
#[allow(unused_imports)]
pub use netns::*;
#[allow(unused_imports)]
pub use systemd::*;

/// utime + stime of a process, in clock ticks (100 per second here).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    f.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
}

/// A process's resident set, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
