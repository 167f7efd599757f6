//! The agent on the host: installed binaries, version, processes, its config file, its proxy.
//!
//! Processes are matched on `/proc/<pid>/exe`, never on `comm` (truncated to 15 characters:
//! `amazon-ssm-agen`), as the agent itself does.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::model::{CheckResult, Status};
use crate::config::HealthPaths;
use crate::{exec, procfs};

/// A running process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    /// PID.
    pub pid: u32,
    /// Parent PID.
    pub ppid: u32,
    /// Real UID.
    pub uid: u32,
    /// Executable path (`/proc/<pid>/exe`, without a ` (deleted)` suffix).
    pub exe: PathBuf,
}

/// All processes whose executable can be read.
pub fn processes(proc_dir: &Path) -> Vec<Proc> {
    let mut out = Vec::new();
    for pid in procfs::pids(proc_dir) {
        let status = procfs::status(proc_dir, pid);
        let uid = status.uid().unwrap_or(u32::MAX);
        let exe = match procfs::exe(proc_dir, pid) {
            Some(exe) => exe,
            // Without CAP_SYS_PTRACE (the hardened unit) the exe link of a process with more
            // capabilities than ours, such as the agent, cannot be read. For root's processes
            // the program path of the command line stands in: only root can start those.
            None if uid == 0 => match procfs::program_path(proc_dir, pid) {
                Some(p) => p,
                None => continue,
            },
            None => continue,
        };
        out.push(Proc {
            pid,
            ppid: status.ppid.unwrap_or(0),
            uid,
            exe,
        });
    }
    out.sort_by_key(|p| p.pid);
    out
}

/// Where the agent is installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Install {
    /// `deb/rpm` or `snap`.
    pub kind: &'static str,
    /// Directory of the binaries.
    pub dir: PathBuf,
}

impl Install {
    /// Path of one of the agent's binaries.
    pub fn bin(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Binaries a working install has.
const REQUIRED: [&str; 3] = ["amazon-ssm-agent", "ssm-agent-worker", "ssm-session-worker"];

/// Finds the install (snap first: on Ubuntu AMIs it is the default) and checks its binaries:
/// present, owned by root, not writable by group or others (the agent's own rule for workers).
pub fn installed(paths: &HealthPaths) -> (Option<Install>, CheckResult) {
    const ID: &str = "agent.installed";
    let candidates = [
        Install {
            kind: "snap",
            dir: paths.snap_dir.clone(),
        },
        Install {
            kind: "deb/rpm",
            dir: paths.bin_dir.clone(),
        },
    ];
    // Resolve symlinks (the snap's `current` points at a revision directory): /proc/<pid>/exe
    // shows the real path, and the processes are matched on it.
    let found = candidates
        .into_iter()
        .find(|c| c.bin("amazon-ssm-agent").exists())
        .map(|c| Install {
            kind: c.kind,
            dir: std::fs::canonicalize(&c.dir).unwrap_or(c.dir),
        });
    let Some(install) = found else {
        return (
            None,
            CheckResult::new(
                ID,
                Status::Critical,
                format!(
                    "amazon-ssm-agent is not installed (neither {} nor {} exists)",
                    paths.bin_dir.join("amazon-ssm-agent").display(),
                    paths.snap_dir.join("amazon-ssm-agent").display()
                ),
                "install amazon-ssm-agent (deb/rpm from the regional S3 bucket, or `snap install amazon-ssm-agent --classic`)",
            ),
        );
    };
    let problems: Vec<String> = REQUIRED
        .iter()
        .filter_map(|name| binary_problem(&install.bin(name)))
        .collect();
    let result = if problems.is_empty() {
        CheckResult::ok(
            ID,
            format!("installed ({}) in {}", install.kind, install.dir.display()),
        )
    } else {
        CheckResult::new(
            ID,
            Status::Critical,
            problems.join("; "),
            "reinstall amazon-ssm-agent; never leave its binaries writable by non-root users",
        )
    };
    (Some(install), result)
}

/// What makes one of the agent's binaries unsafe to have (and to run as root): missing, not
/// owned by root, or writable by group or others (the agent's own rule for its workers).
pub fn binary_problem(p: &Path) -> Option<String> {
    match std::fs::metadata(p) {
        Err(_) => Some(format!("{} is missing", p.display())),
        Ok(m) if m.uid() != 0 => Some(format!(
            "{} is owned by uid {}, not root",
            p.display(),
            m.uid()
        )),
        Ok(m) if m.mode() & 0o022 != 0 => Some(format!(
            "{} is writable by group or others (mode {:o})",
            p.display(),
            m.mode() & 0o777
        )),
        Ok(_) => None,
    }
}

/// Parses `SSM Agent version: 3.3.987.0`.
pub fn parse_version(output: &str) -> Option<String> {
    output.lines().find_map(|l| {
        l.split_once("SSM Agent version:")
            .map(|(_, v)| v.trim().to_string())
            .filter(|v| !v.is_empty())
    })
}

/// Compares dotted numeric versions (`3.3.987.0` < `3.3.1345.0`); missing parts count as 0.
pub fn version_lt(a: &str, b: &str) -> bool {
    let parts = |v: &str| -> Vec<u64> {
        v.split('.')
            .map(|p| p.trim().parse().unwrap_or(0))
            .collect()
    };
    let (x, y) = (parts(a), parts(b));
    for i in 0..x.len().max(y.len()) {
        let (p, q) = (
            x.get(i).copied().unwrap_or(0),
            y.get(i).copied().unwrap_or(0),
        );
        if p != q {
            return p < q;
        }
    }
    false
}

/// Runs `<agent> -version` (the only flag: with any other, or none, it would start a second
/// agent) and compares with the configured minimum.
pub fn version(
    install: Option<&Install>,
    minimum: &str,
    timeout: Duration,
) -> (Option<String>, CheckResult) {
    const ID: &str = "agent.version";
    let Some(install) = install else {
        return (
            None,
            CheckResult::new(ID, Status::Unknown, "the agent is not installed", ""),
        );
    };
    let bin = install.bin("amazon-ssm-agent");
    // Never run as root what agent.installed calls unsafe: whoever could write it would be root.
    if let Some(why) = binary_problem(&bin) {
        return (
            None,
            CheckResult::new(
                ID,
                Status::Unknown,
                format!("`{} -version` not run: {why}", bin.display()),
                "see agent.installed",
            ),
        );
    }
    let out = match exec::run(&bin, &[OsStr::new("-version")], None, timeout) {
        Ok(o) => o,
        Err(e) => {
            return (
                None,
                CheckResult::new(
                    ID,
                    Status::Unknown,
                    format!("cannot ask the agent its version: {e}"),
                    "",
                ),
            );
        }
    };
    let Some(v) = parse_version(&out.stdout) else {
        return (
            None,
            CheckResult::new(
                ID,
                Status::Unknown,
                format!(
                    "`{} -version` printed no version: {}",
                    bin.display(),
                    out.stdout.trim()
                ),
                "",
            ),
        );
    };
    let result = if !minimum.is_empty() && version_lt(&v, minimum) {
        CheckResult::new(
            ID,
            Status::Warning,
            format!("agent {v} is older than the required {minimum} (health.min_agent_version)"),
            "update the agent (the AWS-UpdateSSMAgent document, or your package manager)",
        )
    } else {
        CheckResult::ok(ID, format!("agent {v}"))
    };
    (Some(v), result)
}

/// Under systemd, `agent.service` from the unit's state, made critical when the core agent runs
/// as another user than root (a `User=` drop-in): systemd sees nothing wrong, but Run As and
/// `ssm-user` need a root agent.
pub fn with_root_check(
    service: CheckResult,
    install: Option<&Install>,
    procs: &[Proc],
) -> CheckResult {
    let Some(install) = install else {
        return service;
    };
    let core_exe = install.bin("amazon-ssm-agent");
    match procs.iter().find(|p| p.exe == core_exe && p.uid != 0) {
        Some(c) => CheckResult::new(
            "agent.service",
            Status::Critical,
            format!(
                "the agent runs as uid {}, not root (pid {}): Run As and ssm-user fail",
                c.uid, c.pid
            ),
            "remove `User=` from the agent's unit (`systemctl cat amazon-ssm-agent`), then restart it",
        ),
        None => service,
    }
}

/// Process-level state: the core agent and its worker. Without systemd, this is also how the
/// service is judged (`agent.service`).
pub fn processes_verdict(
    install: Option<&Install>,
    procs: &[Proc],
    with_systemd: bool,
) -> Vec<CheckResult> {
    let Some(install) = install else {
        let mut out = Vec::new();
        if !with_systemd {
            out.push(CheckResult::new(
                "agent.service",
                Status::Unknown,
                "the agent is not installed",
                "",
            ));
        }
        out.push(CheckResult::new(
            "agent.worker",
            Status::Unknown,
            "the agent is not installed",
            "",
        ));
        return out;
    };
    let core_exe = install.bin("amazon-ssm-agent");
    let worker_exe = install.bin("ssm-agent-worker");
    let cores: Vec<&Proc> = procs.iter().filter(|p| p.exe == core_exe).collect();
    let workers: Vec<&Proc> = procs.iter().filter(|p| p.exe == worker_exe).collect();
    let mut out = Vec::new();
    if !with_systemd {
        out.push(match cores.as_slice() {
            [] => CheckResult::new(
                "agent.service",
                Status::Critical,
                format!(
                    "no {} process is running (no systemd: judged by a process scan)",
                    core_exe.display()
                ),
                "start the agent (its init script, or `amazon-ssm-agent &` under a supervisor)",
            ),
            [c] if c.uid != 0 => CheckResult::new(
                "agent.service",
                Status::Critical,
                format!(
                    "the agent runs as uid {}, not root: Run As and most plugins fail",
                    c.uid
                ),
                "run amazon-ssm-agent as root",
            ),
            [c] => CheckResult::ok(
                "agent.service",
                format!("running as pid {} (no systemd: process scan)", c.pid),
            ),
            many => CheckResult::new(
                "agent.service",
                Status::Warning,
                format!("{} core agent processes are running", many.len()),
                "stop the extra copies (one was probably started by hand)",
            ),
        });
    }
    let core_pids: Vec<u32> = cores.iter().map(|c| c.pid).collect();
    let children: Vec<&&Proc> = workers
        .iter()
        .filter(|w| core_pids.contains(&w.ppid))
        .collect();
    out.push(match (cores.len(), children.len(), workers.len()) {
        (0, _, _) => CheckResult::new("agent.worker", Status::Unknown, "the core agent is not running", ""),
        (n, _, _) if n > 1 => CheckResult::new(
            "agent.worker",
            Status::Warning,
            format!("{n} core agent processes are running: they compete for the same messages"),
            "stop the copy that systemd did not start",
        ),
        (_, 1, _) => CheckResult::ok("agent.worker", format!("ssm-agent-worker runs as pid {}", children[0].pid)),
        (_, 0, _) => CheckResult::new(
            "agent.worker",
            Status::Critical,
            "the core agent runs but ssm-agent-worker does not: no session can start",
            "look for `Worker ssm-agent-worker is not running` in amazon-ssm-agent.log; restart the agent",
        ),
        (_, n, _) => CheckResult::new(
            "agent.worker",
            Status::Warning,
            format!("{n} ssm-agent-worker processes under one core agent"),
            "restart the agent",
        ),
    });
    out
}

/// What the agent's own config file says that health needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentConfig {
    /// `Ssm.HealthFrequencyMinutes` (5 when unset; the agent clamps to 5..60).
    pub health_frequency_minutes: u32,
    /// Endpoint overrides by service (`ssm`, `ssmmessages`, `ec2messages`, `s3`, `kms`).
    pub endpoints: BTreeMap<String, String>,
    /// `Agent.ServiceDomain`, when set.
    pub service_domain: Option<String>,
    /// `Agent.Region`, when set.
    pub region: Option<String>,
}

/// The fields health reads from `amazon-ssm-agent.json`, as the agent's decoder sees them.
#[derive(Debug, Default, PartialEq, Eq)]
struct Fields {
    health_frequency: Option<i64>,
    endpoints: BTreeMap<String, String>,
    service_domain: Option<String>,
    region: Option<String>,
}

/// Go's `encoding/json` key lookup: the exact name, else the first that matches ignoring case.
fn go_get<'a>(
    obj: &'a serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Option<&'a serde_json::Value> {
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// A section (`"Ssm": {…}`): absent or `null` is none; anything but an object fails decoding.
fn section<'a>(
    root: &'a serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<Option<&'a serde_json::Map<String, serde_json::Value>>, String> {
    match go_get(root, name) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Object(o)) => Ok(Some(o)),
        Some(other) => Err(format!("`{name}` is {}, not an object", kind(other))),
    }
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// A string field: `null` leaves the default; another type fails decoding.
fn string_field(
    sec: &serde_json::Map<String, serde_json::Value>,
    sname: &str,
    key: &str,
) -> Result<Option<String>, String> {
    match go_get(sec, key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.clone()).filter(|s| !s.is_empty())),
        Some(other) => Err(format!("`{sname}.{key}` is {}, not a string", kind(other))),
    }
}

fn decode(v: &serde_json::Value) -> Result<Fields, String> {
    let serde_json::Value::Object(root) = v else {
        return Err(format!("the document is {}, not an object", kind(v)));
    };
    let mut f = Fields::default();
    if let Some(ssm) = section(root, "Ssm")? {
        f.health_frequency = match go_get(ssm, "HealthFrequencyMinutes") {
            None | Some(serde_json::Value::Null) => None,
            // Go's int: a whole number that fits (10.0 and 1e3 fail as they do in Go).
            Some(serde_json::Value::Number(n)) => Some(n.as_i64().ok_or_else(|| {
                format!("`Ssm.HealthFrequencyMinutes` is {n}, not a whole number")
            })?),
            Some(other) => {
                return Err(format!(
                    "`Ssm.HealthFrequencyMinutes` is {}, not a number",
                    kind(other)
                ));
            }
        };
    }
    for (name, svc) in [
        ("Ssm", "ssm"),
        ("Mgs", "ssmmessages"),
        ("Mds", "ec2messages"),
        ("S3", "s3"),
        ("Kms", "kms"),
    ] {
        if let Some(sec) = section(root, name)?
            && let Some(e) = string_field(sec, name, "Endpoint")?
        {
            f.endpoints.insert(svc.into(), e);
        }
    }
    if let Some(agent) = section(root, "Agent")? {
        f.service_domain = string_field(agent, "Agent", "ServiceDomain")?;
        f.region = string_field(agent, "Agent", "Region")?;
    }
    Ok(f)
}

/// Reads `amazon-ssm-agent.json`: a missing file is fine (defaults); invalid JSON is a warning,
/// because the agent then silently runs with all defaults.
pub fn config(dir: &Path) -> (AgentConfig, CheckResult) {
    const ID: &str = "agent.config";
    let mut cfg = AgentConfig {
        health_frequency_minutes: 5,
        ..AgentConfig::default()
    };
    let path = dir.join("amazon-ssm-agent.json");
    let text = match crate::state::read_capped(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return (
                cfg,
                CheckResult::ok(
                    ID,
                    format!("no {} (the agent's defaults apply)", path.display()),
                ),
            );
        }
        Err(e) => {
            return (
                cfg,
                CheckResult::new(
                    ID,
                    Status::Unknown,
                    format!("cannot read {}: {e}", path.display()),
                    "",
                ),
            );
        }
    };
    // Decoded as the agent's Go decoder does (agent/appconfig: json.Unmarshal into its structs):
    // keys match case-insensitively (an exact match first); invalid JSON or a value of the wrong
    // type fails the whole file ("Failed to unmarshal config override. Fall back to default.").
    let decoded = serde_json::from_str::<serde_json::Value>(&text)
        .map_err(|e| format!("not valid JSON ({e})"))
        .and_then(|v| decode(&v));
    let fields = match decoded {
        Ok(f) => f,
        Err(e) => {
            return (
                cfg,
                CheckResult::new(
                    ID,
                    Status::Warning,
                    format!(
                        "{}: {e}; the agent cannot decode the file (it logs \"Failed to unmarshal config override. Fall back to default.\") and silently runs with every default",
                        path.display()
                    ),
                    format!(
                        "fix {} (compare with amazon-ssm-agent.json.template)",
                        path.display()
                    ),
                ),
            );
        }
    };
    // Out of 5..=60 the agent takes its default, 5 (appconfig_parser.go, getNumericValue).
    if let Some(f) = fields.health_frequency {
        cfg.health_frequency_minutes = u32::try_from(f)
            .ok()
            .filter(|f| (5..=60).contains(f))
            .unwrap_or(5);
    }
    cfg.endpoints = fields.endpoints;
    cfg.service_domain = fields.service_domain;
    cfg.region = fields.region;
    let mut detail = format!("{} is valid", path.display());
    if !cfg.endpoints.is_empty() {
        detail.push_str(&format!(
            "; endpoint overrides: {}",
            cfg.endpoints
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    (cfg, CheckResult::ok(ID, detail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_non_root_agent_is_critical_under_systemd_too() {
        let install = Install {
            kind: "deb/rpm",
            dir: "/usr/bin".into(),
        };
        let core = |uid| Proc {
            pid: 7,
            ppid: 1,
            uid,
            exe: "/usr/bin/amazon-ssm-agent".into(),
        };
        let ok = CheckResult::ok("agent.service", "running");
        let v = with_root_check(ok.clone(), Some(&install), &[core(65534)]);
        assert_eq!(v.status, Status::Critical);
        assert!(
            v.detail.contains("uid 65534") && v.remedy.contains("User="),
            "{v:?}"
        );
        assert_eq!(with_root_check(ok.clone(), Some(&install), &[core(0)]), ok);
        assert_eq!(with_root_check(ok.clone(), None, &[core(65534)]), ok);
    }

    #[test]
    fn a_binary_reported_unsafe_is_never_run() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let marker = d.path().join("ran");
        let bin = d.path().join("amazon-ssm-agent");
        std::fs::write(
            &bin,
            format!(
                "#!/bin/sh\ntouch {}\necho 'SSM Agent version: 3.3.987.0'\n",
                marker.display()
            ),
        )
        .unwrap();
        // Writable by anyone: whoever wrote it would run code as root.
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o777)).unwrap();
        let install = Install {
            kind: "deb/rpm",
            dir: d.path().to_path_buf(),
        };
        let (v, r) = version(Some(&install), "", Duration::from_secs(5));
        assert!(!marker.exists(), "the unsafe binary was run");
        assert_eq!((v, r.status), (None, Status::Unknown), "{r:?}");
        assert!(r.detail.contains("not run"), "{r:?}");
    }

    #[test]
    fn versions() {
        assert_eq!(
            parse_version("SSM Agent version: 3.3.987.0\n"),
            Some("3.3.987.0".into())
        );
        assert_eq!(parse_version("nope"), None);
        assert!(version_lt("3.3.987.0", "3.3.1345.0"));
        assert!(!version_lt("3.3.1345.0", "3.3.987.0"));
        assert!(!version_lt("3.3", "3.3.0.0"));
        assert!(version_lt("2.3.68.0", "3"));
    }

    #[test]
    fn agent_config_file() {
        let d = tempfile::tempdir().unwrap();
        let (c, r) = config(d.path());
        assert_eq!((c.health_frequency_minutes, r.status), (5, Status::Ok));
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/agent-state");
        let (c, r) = config(&fixtures.join("etc-valid"));
        assert_eq!(r.status, Status::Ok, "{r:?}");
        assert_eq!(c.health_frequency_minutes, 10);
        assert_eq!(c.region.as_deref(), Some("us-east-1"));
        std::fs::copy(
            fixtures.join("etc-invalid/amazon-ssm-agent.json"),
            d.path().join("amazon-ssm-agent.json"),
        )
        .unwrap();
        let (c, r) = config(d.path());
        assert_eq!(r.status, Status::Warning);
        assert!(
            r.detail.contains("silently runs with every default"),
            "{r:?}"
        );
        assert_eq!(c.health_frequency_minutes, 5);
        // Out of range: the agent's default (5), not the nearest bound.
        let (c, r) = config(&fixtures.join("etc-frequency-out-of-range"));
        assert_eq!(c.health_frequency_minutes, 5, "the agent falls back to 5");
        assert_eq!(
            c.endpoints.get("ssm").map(String::as_str),
            Some("vpce-1.ssm.us-east-1.vpce.amazonaws.com")
        );
        assert!(!c.endpoints.contains_key("ssmmessages"));
        assert!(r.detail.contains("endpoint overrides"));
    }

    #[test]
    fn the_agent_config_is_decoded_as_the_agents_go_decoder_does() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/agent-state");
        // A value of the wrong type fails the whole file: every default, and a warning.
        let (c, r) = config(&fixtures.join("etc-wrong-type"));
        assert_eq!(r.status, Status::Warning, "{r:?}");
        assert!(
            r.detail
                .contains("`Ssm.HealthFrequencyMinutes` is a string"),
            "{r:?}"
        );
        assert!(r.detail.contains("Fall back to default"), "{r:?}");
        assert_eq!((c.health_frequency_minutes, c.region), (5, None));
        // Keys match whatever their case.
        let (c, r) = config(&fixtures.join("etc-lowercase-keys"));
        assert_eq!(r.status, Status::Ok, "{r:?}");
        assert_eq!(c.health_frequency_minutes, 15);
        assert_eq!(c.region.as_deref(), Some("eu-west-1"));
        assert_eq!(
            c.endpoints.get("ssm").map(String::as_str),
            Some("vpce-2.ssm.eu-west-1.vpce.amazonaws.com")
        );
        // Other shapes the decoder refuses, and null, which it skips.
        for (doc, refused) in [
            (r#"{"Ssm":"x"}"#, true),
            (r#"{"Ssm":{"HealthFrequencyMinutes":10.5}}"#, true),
            (r#"{"Agent":{"Region":7}}"#, true),
            (r#"[]"#, true),
            (r#"{"Ssm":null,"Agent":{"Region":null}}"#, false),
        ] {
            assert_eq!(
                decode(&serde_json::from_str(doc).unwrap()).is_err(),
                refused,
                "{doc}"
            );
        }
        assert!(r.detail.contains("endpoint overrides"));
    }

    #[test]
    fn processes_and_workers() {
        let install = Install {
            kind: "deb/rpm",
            dir: "/usr/bin".into(),
        };
        let p = |pid, ppid, uid, exe: &str| Proc {
            pid,
            ppid,
            uid,
            exe: exe.into(),
        };
        let healthy = [
            p(10, 1, 0, "/usr/bin/amazon-ssm-agent"),
            p(11, 10, 0, "/usr/bin/ssm-agent-worker"),
        ];
        let r = processes_verdict(Some(&install), &healthy, false);
        assert_eq!(
            r.iter().map(|c| c.status).collect::<Vec<_>>(),
            [Status::Ok, Status::Ok]
        );
        let no_worker = [p(10, 1, 0, "/usr/bin/amazon-ssm-agent")];
        let r = processes_verdict(Some(&install), &no_worker, true);
        assert_eq!(
            r.len(),
            1,
            "with systemd, agent.service comes from systemctl"
        );
        assert_eq!(r[0].status, Status::Critical);
        let stopped: [Proc; 0] = [];
        let r = processes_verdict(Some(&install), &stopped, false);
        assert_eq!(r[0].status, Status::Critical);
        let two = [
            p(10, 1, 0, "/usr/bin/amazon-ssm-agent"),
            p(20, 1, 0, "/usr/bin/amazon-ssm-agent"),
        ];
        let r = processes_verdict(Some(&install), &two, false);
        assert_eq!(r[0].status, Status::Warning);
        let non_root = [p(10, 1, 1000, "/usr/bin/amazon-ssm-agent")];
        assert_eq!(
            processes_verdict(Some(&install), &non_root, false)[0].status,
            Status::Critical
        );
    }

    #[test]
    fn this_process_is_found_by_exe() {
        let me = std::env::current_exe().unwrap();
        let procs = processes(Path::new("/proc"));
        assert!(
            procs
                .iter()
                .any(|p| p.pid == std::process::id() && p.exe == me),
            "{me:?}"
        );
    }
}
