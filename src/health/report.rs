//! The health report and its renderings: the table an on-call engineer reads, JSON, the
//! Prometheus textfile, and the SSM Inventory item.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::model::{CheckResult, Status};
use crate::render::table;
use crate::state::shipping_status::ShippingStatus;

/// The `schema` of the JSON report (`doctor --json`, `health.json`).
pub const SCHEMA: &str = "ssm-companion/health/v1";
/// The SSM Inventory custom type.
pub const INVENTORY_TYPE: &str = "Custom:SsmCompanionHealth";
/// Its schema version.
pub const INVENTORY_SCHEMA_VERSION: &str = "1.0";

/// A whole report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// [`SCHEMA`].
    pub schema: String,
    /// When (RFC 3339).
    pub generated_at: String,
    /// EC2 instance id or hybrid `mi-…`, when known.
    pub instance_id: Option<String>,
    /// Region, when known.
    pub region: Option<String>,
    /// The agent's version, when known.
    pub agent_version: Option<String>,
    /// The worst status.
    pub overall: Status,
    /// Only the local checks so far: the daemon has not finished its first network run since it
    /// started (reports from before this field read as `false`). A partial report is never sent
    /// to Inventory.
    #[serde(default)]
    pub partial: bool,
    /// Every check, in a stable order.
    pub checks: Vec<CheckResult>,
}

/// The table: a summary line, the problems first, each with its remedy, then what is fine.
pub fn text(r: &Report) -> String {
    let mut out = String::new();
    let count = |s: Status| r.checks.iter().filter(|c| c.status == s).count();
    let _ = writeln!(
        out,
        "{}: {} critical, {} warning, {} unknown, {} ok — {}{}{}",
        r.overall.as_str().to_uppercase(),
        count(Status::Critical),
        count(Status::Warning),
        count(Status::Unknown),
        count(Status::Ok),
        r.instance_id.as_deref().unwrap_or("unknown instance"),
        r.region
            .as_deref()
            .map(|x| format!(" ({x})"))
            .unwrap_or_default(),
        r.agent_version
            .as_deref()
            .map(|v| format!(", agent {v}"))
            .unwrap_or_default(),
    );
    out.push('\n');
    let order = [
        Status::Critical,
        Status::Warning,
        Status::Unknown,
        Status::Ok,
    ];
    let groups = endpoint_groups(&r.checks);
    let mut done: Vec<&str> = Vec::new();
    let mut rows: Vec<Vec<String>> = Vec::new();
    for s in order {
        for c in r.checks.iter().filter(|c| c.status == s) {
            if done.contains(&c.id.as_str()) {
                continue;
            }
            match groups
                .iter()
                .find(|g| g.members.iter().any(|m| m.id == c.id))
            {
                Some(g) => {
                    done.extend(g.members.iter().map(|m| m.id.as_str()));
                    group_rows(&mut rows, g);
                }
                None => check_rows(&mut rows, c),
            }
        }
    }
    out.push_str(&table(&["STATUS", "CHECK", "DETAIL"], &rows));
    out
}

/// Failed endpoint checks that share a cause (two or more): one root cause, said once.
struct Group<'a> {
    cause: &'a str,
    status: Status,
    members: Vec<&'a CheckResult>,
    /// How many endpoints were probed in all.
    of: usize,
}

fn endpoint_groups(checks: &[CheckResult]) -> Vec<Group<'_>> {
    let endpoints: Vec<&CheckResult> = checks
        .iter()
        .filter(|c| c.id.starts_with("endpoint."))
        .collect();
    let mut groups: Vec<Group<'_>> = Vec::new();
    for c in &endpoints {
        let Some(cause) = c.cause.as_deref().filter(|_| c.status != Status::Ok) else {
            continue;
        };
        match groups.iter_mut().find(|g| g.cause == cause) {
            Some(g) => {
                g.status = g.status.worst(c.status);
                g.members.push(c);
            }
            None => groups.push(Group {
                cause,
                status: c.status,
                members: vec![c],
                of: endpoints.len(),
            }),
        }
    }
    groups.retain(|g| g.members.len() >= 2);
    groups
}

fn group_rows(rows: &mut Vec<Vec<String>>, g: &Group<'_>) {
    let what = match g.cause {
        "dns" => "DNS resolution fails",
        "tcp" => "TCP connections fail",
        "proxy" => "the proxy refuses CONNECT",
        "tls" => "TLS handshakes fail",
        "timeout" => "nothing answers in time",
        _ => "the same failure",
    };
    let n = g.members.len();
    let scope = if n == g.of {
        format!("all {n} AWS endpoints")
    } else {
        format!("{n} of {} AWS endpoints", g.of)
    };
    push_lines(
        rows,
        g.status.as_str().to_uppercase(),
        "endpoint.*".into(),
        &format!("{what} for {scope} (cause: {}):", g.cause),
    );
    for m in &g.members {
        let tag = if m.status == g.status {
            String::new()
        } else {
            format!(" [{}]", m.status)
        };
        push_lines(
            rows,
            String::new(),
            String::new(),
            &format!("  {}{tag}: {}", m.id, m.detail),
        );
    }
    // Members share a cause; their remedies differ only when some went through a proxy.
    let mut remedies: Vec<&str> = g.members.iter().map(|m| m.remedy.as_str()).collect();
    remedies.sort_unstable();
    remedies.dedup();
    for remedy in remedies.into_iter().filter(|x| !x.is_empty()) {
        push_lines(
            rows,
            String::new(),
            String::new(),
            &format!("fix: {remedy}"),
        );
    }
}

fn check_rows(rows: &mut Vec<Vec<String>>, c: &CheckResult) {
    push_lines(
        rows,
        c.status.as_str().to_uppercase(),
        c.id.clone(),
        &c.detail,
    );
    if !c.remedy.is_empty() && c.status != Status::Ok {
        push_lines(
            rows,
            String::new(),
            String::new(),
            &format!("fix: {}", c.remedy),
        );
    }
}

/// One row per line of `text` (an error chain prints as indented lines, not a literal `\n`);
/// each line is made safe to print by the table.
fn push_lines(rows: &mut Vec<Vec<String>>, status: String, id: String, text: &str) {
    let mut lines = text.lines();
    rows.push(vec![
        status,
        id,
        lines.next().unwrap_or_default().to_string(),
    ]);
    for l in lines.filter(|l| !l.trim().is_empty()) {
        rows.push(vec![
            String::new(),
            String::new(),
            format!("  {}", l.trim_start()),
        ]);
    }
}

/// JSON, pretty-printed.
pub fn json(r: &Report) -> String {
    serde_json::to_string_pretty(r).unwrap_or_default()
}

fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

/// The audit shipping metrics (the shipper's last status; `generated_unix` is now).
fn shipping_metrics(out: &mut String, s: &ShippingStatus, generated_unix: u64) {
    let unix = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    };
    metric(
        out,
        "ssm_companion_audit_shipped_seq",
        "gauge",
        "The last audit record in S3 (spool sequence number).",
        s.shipped_seq,
    );
    metric(
        out,
        "ssm_companion_audit_unshipped_records",
        "gauge",
        "Durable audit records not yet in S3.",
        s.durable_seq.saturating_sub(s.shipped_seq),
    );
    metric(
        out,
        "ssm_companion_audit_oldest_unshipped_age_seconds",
        "gauge",
        "How long the oldest audit record not yet in S3 has waited (0: none waits).",
        s.oldest_unshipped
            .map_or(0, |t| generated_unix.saturating_sub(unix(t))),
    );
    metric(
        out,
        "ssm_companion_audit_objects_shipped_total",
        "counter",
        "Objects uploaded to S3 from this spool.",
        s.objects,
    );
    metric(
        out,
        "ssm_companion_audit_bytes_shipped_total",
        "counter",
        "Compressed bytes uploaded to S3 from this spool.",
        s.bytes,
    );
    if let Some(t) = s.last_upload {
        metric(
            out,
            "ssm_companion_audit_last_upload_seconds",
            "gauge",
            "When the last upload succeeded (Unix time).",
            unix(t),
        );
    }
    metric(
        out,
        "ssm_companion_audit_shipping_failing",
        "gauge",
        "1 while uploads fail (the cause is in the audit.shipping check), else 0.",
        u8::from(s.error.is_some()),
    );
}

/// The node_exporter textfile format; with the audit shipper's status, its metrics too.
pub fn prometheus(r: &Report, generated_unix: u64, shipping: Option<&ShippingStatus>) -> String {
    let mut out = String::new();
    out.push_str("# HELP ssm_companion_health_check_status Check status: 0 ok, 1 warning, 2 critical, 3 unknown.\n");
    out.push_str("# TYPE ssm_companion_health_check_status gauge\n");
    for c in &r.checks {
        let _ = writeln!(
            out,
            "ssm_companion_health_check_status{{check=\"{}\"}} {}",
            label(&c.id),
            c.status.value()
        );
    }
    out.push_str("# HELP ssm_companion_health_status Overall status: 0 ok, 1 warning, 2 critical, 3 unknown.\n");
    out.push_str("# TYPE ssm_companion_health_status gauge\n");
    let _ = writeln!(out, "ssm_companion_health_status {}", r.overall.value());
    out.push_str(
        "# HELP ssm_companion_health_generated_seconds When the report was made (Unix time).\n",
    );
    out.push_str("# TYPE ssm_companion_health_generated_seconds gauge\n");
    let _ = writeln!(
        out,
        "ssm_companion_health_generated_seconds {generated_unix}"
    );
    if let Some(v) = &r.agent_version {
        out.push_str("# HELP ssm_companion_agent_info The agent's version.\n");
        out.push_str("# TYPE ssm_companion_agent_info gauge\n");
        let _ = writeln!(
            out,
            "ssm_companion_agent_info{{version=\"{}\"}} 1",
            label(v)
        );
    }
    if let Some(st) = shipping {
        shipping_metrics(&mut out, st, generated_unix);
    }
    out
}

/// Inventory values are at most 4,096 characters (keys 64; at most 50 keys per row).
fn cap(s: &str) -> String {
    s.chars().take(4096).collect()
}

/// The Inventory content: one row per check plus an `overall` row; every row has the same keys
/// (`Check`, `Status`, `Detail`, `Remedy`, `Value`), as Inventory wants a stable schema.
pub fn inventory_content(r: &Report) -> Vec<BTreeMap<String, String>> {
    let row = |check: &str, status: Status, detail: &str, remedy: &str, value: &str| {
        BTreeMap::from([
            ("Check".to_string(), cap(check)),
            ("Status".to_string(), status.as_str().to_string()),
            ("Detail".to_string(), cap(detail)),
            ("Remedy".to_string(), cap(remedy)),
            ("Value".to_string(), cap(value)),
        ])
    };
    let mut rows = vec![row(
        "overall",
        r.overall,
        &format!("generated {}", r.generated_at),
        "",
        r.agent_version.as_deref().unwrap_or(""),
    )];
    for c in &r.checks {
        let value = if c.id == "agent.version" {
            r.agent_version.as_deref().unwrap_or("")
        } else {
            ""
        };
        rows.push(row(&c.id, c.status, &c.detail, &c.remedy, value));
    }
    rows
}

/// FNV-1a over strings, each terminated by a NUL (so `["ab", ""]` and `["a", "b"]` differ).
fn fnv<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for s in parts {
        for b in s.bytes().chain(std::iter::once(0)) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// What decides whether the report is worth sending again: the verdicts and the agent version,
/// not the details (durations, latencies and expiry countdowns change every run).
pub fn status_hash(r: &Report) -> String {
    let mut parts = vec![r.overall.as_str(), r.agent_version.as_deref().unwrap_or("")];
    for c in &r.checks {
        parts.push(&c.id);
        parts.push(c.status.as_str());
    }
    fnv(parts)
}

/// Inventory's `ContentHash`: of everything sent, the time included. Inventory skips an item
/// whose hash did not change, keeping its old capture time, so a periodic refresh must change it.
pub fn content_hash(r: &Report) -> String {
    let rows = inventory_content(r);
    fnv(rows
        .iter()
        .flat_map(|m| m.iter().flat_map(|(k, v)| [k.as_str(), v.as_str()])))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            schema: SCHEMA.into(),
            generated_at: "2026-11-29T12:00:00Z".into(),
            instance_id: Some("i-0123456789abcdef0".into()),
            region: Some("us-east-1".into()),
            agent_version: Some("3.3.987.0".into()),
            overall: Status::Critical,
            partial: false,
            checks: vec![
                CheckResult::ok("agent.installed", "installed"),
                CheckResult::new(
                    "agent.service",
                    Status::Critical,
                    "stopped",
                    "systemctl start amazon-ssm-agent",
                ),
            ],
        }
    }

    #[test]
    fn table_puts_problems_first_with_their_fix() {
        let t = text(&report());
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("CRITICAL: 1 critical, 0 warning, 0 unknown, 1 ok — i-0123456789abcdef0 (us-east-1), agent 3.3.987.0"), "{t}");
        assert!(lines[3].starts_with("CRITICAL  agent.service"), "{t}");
        assert!(
            lines[4].contains("fix: systemctl start amazon-ssm-agent"),
            "{t}"
        );
        assert!(lines[5].starts_with("OK"), "{t}");
    }

    #[test]
    fn one_cause_for_every_endpoint_is_said_once_with_the_endpoints_under_it() {
        let dns = crate::aws::fault::Fault::Dns;
        let mut r = report();
        r.checks.clear();
        for (svc, status) in [
            ("ssm", Status::Critical),
            ("ssmmessages", Status::Critical),
            ("ec2messages", Status::Critical),
            ("kms", Status::Warning),
        ] {
            r.checks.push(
                CheckResult::new(
                    format!("endpoint.{svc}"),
                    status,
                    format!("{svc}.us-east-1.amazonaws.com: DNS failed: no such host"),
                    "check the VPC's DNS resolution",
                )
                .caused_by(&dns),
            );
        }
        r.checks
            .push(CheckResult::ok("agent.installed", "installed"));
        let t = text(&r);
        assert_eq!(
            t.matches("DNS resolution fails for all 4 AWS endpoints (cause: dns)")
                .count(),
            1,
            "{t}"
        );
        // The remedy once, every endpoint listed under the cause, the optional one marked.
        assert_eq!(
            t.matches("fix: check the VPC's DNS resolution").count(),
            1,
            "{t}"
        );
        for svc in ["ssm", "ssmmessages", "ec2messages"] {
            assert!(
                t.contains(&format!("  endpoint.{svc}: {svc}.us-east-1")),
                "{t}"
            );
        }
        assert!(t.contains("endpoint.kms [warning]: kms.us-east-1"), "{t}");
        assert!(
            t.lines()
                .nth(3)
                .unwrap()
                .starts_with("CRITICAL  endpoint.*"),
            "{t}"
        );
        // A single failure stays a row of its own.
        r.checks.truncate(1);
        let t = text(&r);
        assert!(!t.contains("endpoint.*"), "{t}");
        assert!(t.contains("CRITICAL  endpoint.ssm"), "{t}");
    }

    #[test]
    fn an_error_chain_prints_as_indented_lines() {
        let mut r = report();
        r.checks[1].detail =
            "a signed STS call failed: dispatch failure\n  caused by: io error\n  caused by: \u{1b}[2Jgone".into();
        let t = text(&r);
        assert!(!t.contains("\\n"), "{t}");
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[3].ends_with("a signed STS call failed: dispatch failure"),
            "{t}"
        );
        assert!(
            lines[4].trim_start().starts_with("caused by: io error"),
            "{t}"
        );
        // Each line is still made safe: the escape sequence is shown, not acted on.
        assert!(lines[5].contains("\\u{1b}[2J"), "{t}");
        assert!(!t.contains('\u{1b}'), "{t}");
    }

    #[test]
    fn prometheus_textfile() {
        let p = prometheus(&report(), 1_796_000_000, None);
        assert!(!p.contains("audit"), "{p}");
        assert!(
            p.contains("ssm_companion_health_check_status{check=\"agent.service\"} 2\n"),
            "{p}"
        );
        assert!(p.contains("ssm_companion_health_status 2\n"));
        assert!(p.contains("ssm_companion_agent_info{version=\"3.3.987.0\"} 1\n"));
        assert!(p.ends_with('\n'));
    }

    #[test]
    fn prometheus_textfile_with_the_shipping_status() {
        let t = |s: u64| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s);
        let st = ShippingStatus {
            at: t(1_796_000_000),
            destination: "s3://b/p".into(),
            shipped_seq: 40,
            durable_seq: 45,
            objects: 7,
            bytes: 12_345,
            last_upload: Some(t(1_795_999_990)),
            oldest_unshipped: Some(t(1_795_999_900)),
            error: Some("upload failed".into()),
            cause: Some("http:503".into()),
            needs_operator: false,
        };
        let p = prometheus(&report(), 1_796_000_000, Some(&st));
        for line in [
            "ssm_companion_audit_shipped_seq 40\n",
            "ssm_companion_audit_unshipped_records 5\n",
            "ssm_companion_audit_oldest_unshipped_age_seconds 100\n",
            "# TYPE ssm_companion_audit_objects_shipped_total counter\nssm_companion_audit_objects_shipped_total 7\n",
            "ssm_companion_audit_bytes_shipped_total 12345\n",
            "ssm_companion_audit_last_upload_seconds 1795999990\n",
            "ssm_companion_audit_shipping_failing 1\n",
        ] {
            assert!(p.contains(line), "no {line:?} in {p}");
        }
        // Every metric has its HELP and TYPE right before it.
        let names: Vec<&str> = p
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(['{', ' ']).next())
            .collect();
        for n in names {
            assert!(p.contains(&format!("# TYPE {n} ")), "{n} has no TYPE");
        }
    }

    #[test]
    fn inventory_rows_share_one_schema_and_respect_limits() {
        let mut r = report();
        r.checks[1].detail = "x".repeat(10_000);
        let rows = inventory_content(&r);
        assert_eq!(rows.len(), 3);
        let keys: Vec<Vec<&String>> = rows.iter().map(|m| m.keys().collect()).collect();
        assert!(keys.windows(2).all(|w| w[0] == w[1]));
        assert!(
            rows.iter()
                .all(|m| m.values().all(|v| v.chars().count() <= 4096) && m.len() <= 50)
        );
        assert_eq!(rows[0]["Value"], "3.3.987.0");
    }

    #[test]
    fn status_hash_ignores_time_and_details_but_not_verdicts() {
        let a = report();
        let mut b = report();
        b.generated_at = "2026-11-30T00:00:00Z".into();
        b.checks[1].detail = "valid for 5h 59m".into();
        assert_eq!(status_hash(&a), status_hash(&b));
        // What Inventory is told changes with the time, so a refresh is not skipped.
        assert_ne!(content_hash(&a), content_hash(&b));
        b.checks[1].status = Status::Ok;
        assert_ne!(status_hash(&a), status_hash(&b));
        let mut c = report();
        c.agent_version = Some("3.3.1000.0".into());
        assert_ne!(status_hash(&a), status_hash(&c));
    }
}
