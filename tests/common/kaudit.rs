//! The kernel's audit state, through the real `auditctl` (unpacked by scripts/install-deps.sh
//! into .auditctl; auditd itself is not installed): for the kernel-audit exec backend's test and
//! benchmark, which set up what an auditd with an execve rule would, and put everything back.

use super::repo;

/// Runs auditctl; panics with its stderr when it fails.
pub fn auditctl(args: &[&str]) -> String {
    let root = repo().join(".auditctl");
    let bin = root.join("sbin/auditctl");
    assert!(
        bin.exists(),
        "{} is missing: run scripts/install-deps.sh (it unpacks auditctl there)",
        bin.display()
    );
    let out = std::process::Command::new(&bin)
        .args(args)
        .env("LD_LIBRARY_PATH", root.join("lib/x86_64-linux-gnu"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "auditctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The kernel audit state that matters: `auditctl -s` without its counters, and `-l`.
pub type AuditState = (Vec<String>, String);

pub fn audit_state() -> AuditState {
    let status = auditctl(&["-s"])
        .lines()
        .filter(|l| {
            !["lost ", "backlog ", "backlog_wait_time_actual "]
                .iter()
                .any(|c| l.starts_with(c))
        })
        .map(str::to_string)
        .collect();
    (status, auditctl(&["-l"]))
}

fn status_value(state: &AuditState, key: &str) -> String {
    state
        .0
        .iter()
        .find_map(|l| l.strip_prefix(&format!("{key} ")))
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// An execve rule as an auditd would load it (`-a`/`-d` go in front), tagged with `key`, which
/// `-l` shows: `filter` narrows it (e.g. `["-F", "auid=4242"]`).
pub fn execve_rule<'a>(filter: &[&'a str], key: &'a str) -> Vec<&'a str> {
    let mut rule = vec!["always,exit", "-F", "arch=b64", "-S", "execve,execveat"];
    rule.extend(filter);
    rule.extend(["-k", key]);
    rule
}

/// What an auditd with `rule` would have set up — a backlog limit, the rule, auditing enabled —
/// undone when dropped (also after a panic): the rule out, the enabled flag and backlog limit as
/// they were. A rule left by a run that was killed is taken out first.
pub struct AuditRule {
    rule: Vec<String>,
    key: String,
    original: AuditState,
}

impl AuditRule {
    pub fn load(rule: &[&str], key: &str) -> Self {
        let mut me = Self {
            rule: rule.iter().map(|s| (*s).to_string()).collect(),
            key: key.to_string(),
            original: (Vec::new(), String::new()),
        };
        me.remove_rule();
        me.original = audit_state();
        auditctl(&["-b", "8192"]);
        let mut args = vec!["-a"];
        args.extend(rule);
        auditctl(&args);
        auditctl(&["-e", "1"]);
        me
    }

    /// The state before the rule was loaded.
    pub fn original(&self) -> &AuditState {
        &self.original
    }

    fn remove_rule(&self) {
        if auditctl(&["-l"]).contains(&format!("key={}", self.key)) {
            let mut args = vec!["-d"];
            args.extend(self.rule.iter().map(String::as_str));
            auditctl(&args);
        }
    }
}

impl Drop for AuditRule {
    fn drop(&mut self) {
        self.remove_rule();
        auditctl(&["-e", &status_value(&self.original, "enabled")]);
        auditctl(&["-b", &status_value(&self.original, "backlog_limit")]);
    }
}
