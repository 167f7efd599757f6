//! `ssm-companion fleet health`: the fleet's view, read from SSM Inventory
//! (`Custom:SsmCompanionHealth`, written by every host's daemon with `health.inventory = true`)
//! with one paginated `GetInventory`. Needs `ssm:GetInventory` on the operator's credentials.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use aws_sdk_ssm::types::ResultAttribute;
use serde::Serialize;

use super::model::Status;
use super::report::INVENTORY_TYPE;
use crate::aws::sdk_error;

/// One instance's last report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instance {
    /// Instance id.
    pub instance_id: String,
    /// Overall status.
    pub overall: Status,
    /// Checks that are not ok: (id, status, detail).
    pub failing: Vec<(String, Status, String)>,
    /// The agent's version.
    pub agent_version: Option<String>,
    /// When the report was captured.
    pub capture_time: Option<String>,
    /// The report is older than `--stale-after` (or has no readable time): its verdicts say
    /// nothing about now, so `overall` is unknown.
    pub stale: bool,
}

/// The check id a stale report is listed under.
pub const STALE_CHECK: &str = "report.stale";

/// Marks reports older than `stale_after` (daemons refresh theirs at least every
/// `health.inventory_max_age`, 24 h by default) as unknown, naming their age.
pub fn mark_stale(v: &mut FleetView, now: std::time::SystemTime, stale_after: std::time::Duration) {
    for i in &mut v.instances {
        let at = i
            .capture_time
            .as_deref()
            .and_then(super::identity::parse_time);
        let detail = match at {
            None => "the report has no readable capture time".to_string(),
            Some(t) => match now.duration_since(t) {
                Ok(age) if age > stale_after => format!(
                    "last report {} ago ({} was {}): the daemon stopped reporting, or the instance is off",
                    humantime::format_duration(std::time::Duration::from_secs(
                        age.as_secs() / 60 * 60
                    )),
                    i.capture_time.as_deref().unwrap_or_default(),
                    i.overall.as_str()
                ),
                _ => continue,
            },
        };
        i.stale = true;
        i.overall = Status::Unknown;
        i.failing
            .insert(0, (STALE_CHECK.to_string(), Status::Unknown, detail));
    }
}

/// The fleet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FleetView {
    /// Every instance that reports.
    pub instances: Vec<Instance>,
}

impl FleetView {
    /// The worst overall status (the exit code of the command).
    pub fn worst(&self) -> Status {
        self.instances
            .iter()
            .fold(Status::Ok, |a, i| a.worst(i.overall))
    }

    /// Failing checks by number of instances.
    pub fn failing_checks(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for i in &self.instances {
            for (id, _, _) in &i.failing {
                *m.entry(id.clone()).or_insert(0) += 1;
            }
        }
        m
    }

    /// Agent versions by number of instances.
    pub fn versions(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for i in &self.instances {
            *m.entry(i.agent_version.clone().unwrap_or_else(|| "unknown".into()))
                .or_insert(0) += 1;
        }
        m
    }
}

fn status(s: &str) -> Status {
    match s {
        "ok" => Status::Ok,
        "warning" => Status::Warning,
        "critical" => Status::Critical,
        _ => Status::Unknown,
    }
}

/// One instance from its inventory rows.
pub fn instance(
    id: &str,
    capture_time: Option<String>,
    rows: &[BTreeMap<String, String>],
) -> Instance {
    let get = |r: &BTreeMap<String, String>, k: &str| r.get(k).cloned().unwrap_or_default();
    let mut overall = Status::Unknown;
    let mut version = None;
    let mut failing = Vec::new();
    for r in rows {
        let check = get(r, "Check");
        let st = status(&get(r, "Status"));
        if check == "overall" {
            overall = st;
            version = Some(get(r, "Value")).filter(|v| !v.is_empty());
        } else if st != Status::Ok {
            failing.push((check, st, get(r, "Detail")));
        }
    }
    Instance {
        instance_id: id.to_string(),
        overall,
        failing,
        agent_version: version,
        capture_time,
        stale: false,
    }
}

/// Reads every instance's report (all pages).
pub async fn read(client: &aws_sdk_ssm::Client) -> Result<FleetView, String> {
    let attr = ResultAttribute::builder()
        .type_name(INVENTORY_TYPE)
        .build()
        .map_err(|e| e.to_string())?;
    let mut view = FleetView::default();
    let mut pages = client
        .get_inventory()
        .result_attributes(attr)
        .max_results(50)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| format!("GetInventory: {}", sdk_error(&e)))?;
        for e in page.entities() {
            let Some(id) = e.id() else { continue };
            let Some(item) = e.data().and_then(|d| d.get(INVENTORY_TYPE)) else {
                continue;
            };
            let rows: Vec<BTreeMap<String, String>> = item
                .content()
                .iter()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .collect();
            view.instances
                .push(instance(id, item.capture_time().map(str::to_string), &rows));
        }
    }
    view.instances
        .sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
    Ok(view)
}

/// For people.
pub fn text(v: &FleetView) -> String {
    let mut out = String::new();
    let n = |s: Status| v.instances.iter().filter(|i| i.overall == s).count();
    let _ = writeln!(
        out,
        "{} instance(s) report {INVENTORY_TYPE}: {} ok, {} warning, {} critical, {} unknown",
        v.instances.len(),
        n(Status::Ok),
        n(Status::Warning),
        n(Status::Critical),
        n(Status::Unknown)
    );
    let bad: Vec<Vec<String>> = v
        .instances
        .iter()
        .filter(|i| i.overall != Status::Ok)
        .map(|i| {
            vec![
                i.instance_id.clone(),
                i.overall.as_str().into(),
                i.agent_version.clone().unwrap_or_default(),
                i.capture_time.clone().unwrap_or_default(),
                i.failing
                    .iter()
                    .map(|(c, _, _)| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            ]
        })
        .collect();
    if !bad.is_empty() {
        out.push_str("\nUnhealthy instances:\n");
        out.push_str(&crate::render::table(
            &["INSTANCE", "OVERALL", "AGENT", "REPORTED", "FAILING CHECKS"],
            &bad,
        ));
    }
    let mut checks: Vec<(String, usize)> = v.failing_checks().into_iter().collect();
    checks.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    if !checks.is_empty() {
        out.push_str("\nFailing checks:\n");
        let rows: Vec<Vec<String>> = checks
            .into_iter()
            .map(|(c, k)| vec![k.to_string(), c])
            .collect();
        out.push_str(&crate::render::table(&["INSTANCES", "CHECK"], &rows));
    }
    let mut versions: Vec<(String, usize)> = v.versions().into_iter().collect();
    versions.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    if !versions.is_empty() {
        out.push_str("\nAgent versions:\n");
        let rows: Vec<Vec<String>> = versions
            .into_iter()
            .map(|(ver, k)| vec![k.to_string(), ver])
            .collect();
        out.push_str(&crate::render::table(&["INSTANCES", "VERSION"], &rows));
    }
    out
}

/// For scripts (`ssm-companion/fleet-health/v1`).
pub fn json(v: &FleetView) -> String {
    #[derive(Serialize)]
    struct Doc<'a> {
        schema: &'static str,
        worst: Status,
        instances: &'a [Instance],
        failing_checks: BTreeMap<String, usize>,
        agent_versions: BTreeMap<String, usize>,
    }
    serde_json::to_string_pretty(&Doc {
        schema: "ssm-companion/fleet-health/v1",
        worst: v.worst(),
        instances: &v.instances,
        failing_checks: v.failing_checks(),
        agent_versions: v.versions(),
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(check: &str, status: &str, value: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("Check".into(), check.into()),
            ("Status".into(), status.into()),
            ("Detail".into(), format!("{check} detail")),
            ("Remedy".into(), String::new()),
            ("Value".into(), value.into()),
        ])
    }

    #[test]
    fn other_hosts_values_cannot_drive_the_terminal() {
        // Any instance role can PutInventory: its rows are untrusted. Clear-screen, an OSC 52
        // clipboard write and a line break that fakes a healthy summary.
        let v = FleetView {
            instances: vec![instance(
                "i-1\u{1b}[2J",
                Some("2026-12-05T00:00:00Z\u{1b}]52;c;Y3VybCBldmls\u{7}".into()),
                &[
                    row("overall", "critical", "3.3.987.0\n0 instance(s): ALL OK"),
                    row("agent.service\u{9b}31m", "critical", ""),
                ],
            )],
        };
        let t = text(&v);
        assert!(
            !t.chars().any(|c| c.is_control() && c != '\n'),
            "a control character reached the terminal: {t:?}"
        );
        assert!(
            !t.lines().any(|l| l.starts_with("0 instance(s)")),
            "a value started a line of its own: {t}"
        );
        assert!(
            t.contains("i-1\\u{1b}[2J"),
            "the value is shown, escaped: {t}"
        );
    }

    #[test]
    fn summarises_the_fleet() {
        let v = FleetView {
            instances: vec![
                instance(
                    "i-1",
                    None,
                    &[
                        row("overall", "ok", "3.3.987.0"),
                        row("agent.service", "ok", ""),
                    ],
                ),
                instance(
                    "i-2",
                    None,
                    &[
                        row("overall", "critical", "3.3.987.0"),
                        row("endpoint.ssmmessages", "critical", ""),
                    ],
                ),
                instance(
                    "i-3",
                    None,
                    &[
                        row("overall", "warning", "3.2.1.0"),
                        row("endpoint.ssmmessages", "warning", ""),
                        row("clock.skew", "warning", ""),
                    ],
                ),
            ],
        };
        assert_eq!(v.worst(), Status::Critical);
        assert_eq!(v.failing_checks()["endpoint.ssmmessages"], 2);
        assert_eq!(v.versions()["3.3.987.0"], 2);
        let t = text(&v);
        assert!(t.starts_with("3 instance(s) report Custom:SsmCompanionHealth: 1 ok, 1 warning, 1 critical, 0 unknown"), "{t}");
        let line = |needle: &str| {
            t.lines()
                .find(|l| l.contains(needle))
                .unwrap_or("")
                .to_string()
        };
        assert!(line("i-2").contains("critical"), "{t}");
        assert!(
            line("i-3").contains("endpoint.ssmmessages, clock.skew"),
            "{t}"
        );
        assert!(!t.contains("i-1"), "healthy instances are not listed: {t}");
        let section = t.split("Failing checks:").nth(1).unwrap_or("");
        assert!(
            section
                .lines()
                .any(|l| l.starts_with("2 ") && l.ends_with("endpoint.ssmmessages")),
            "{t}"
        );
        let j: serde_json::Value = serde_json::from_str(&json(&v)).unwrap();
        assert_eq!(j["worst"], "critical");
        assert_eq!(j["agent_versions"]["3.2.1.0"], 1);
    }

    #[test]
    fn old_reports_are_unknown() {
        let rows = [row("overall", "ok", "3.3.987.0")];
        let mut v = FleetView {
            instances: vec![
                instance("i-fresh", Some("2026-11-29T10:00:00Z".into()), &rows),
                instance("i-old", Some("2026-11-27T10:00:00Z".into()), &rows),
                instance("i-none", None, &rows),
                // A host whose clock runs ahead is not stale.
                instance("i-ahead", Some("2026-11-29T12:05:00Z".into()), &rows),
            ],
        };
        let now = super::super::identity::parse_time("2026-11-29T12:00:00Z").unwrap();
        mark_stale(&mut v, now, std::time::Duration::from_secs(26 * 3600));
        let get = |id: &str| v.instances.iter().find(|i| i.instance_id == id).unwrap();
        assert_eq!(get("i-fresh").overall, Status::Ok);
        assert!(!get("i-ahead").stale);
        let old = get("i-old");
        assert!(old.stale);
        assert_eq!(old.overall, Status::Unknown);
        assert!(old.failing[0].2.contains("2days 2h ago"), "{old:?}");
        assert!(old.failing[0].2.contains("was ok"), "{old:?}");
        assert!(get("i-none").stale);
        assert_eq!(v.worst(), Status::Unknown);
        assert_eq!(v.failing_checks()[STALE_CHECK], 2);
    }
}
