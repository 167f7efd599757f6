//! Rendering sync results for people (tables) and scripts (JSON, a documented contract).
//!
//! Values that came from tags or files are printed with control characters escaped, so a hostile
//! tag value cannot rewrite the operator's terminal.

use std::fmt::Write as _;

use serde::Serialize;

use super::plan::{Change, GroupPurpose, Step};
use super::{ListedAccount, SyncReport};
use crate::clock;
use crate::render::{clean, table};

/// The `schema` value of `accounts plan --json` / `accounts apply --json`.
pub const SYNC_SCHEMA: &str = "ssm-companion/accounts-sync/v1";
/// The `schema` value of `accounts list --json`.
pub const LIST_SCHEMA: &str = "ssm-companion/accounts-list/v1";

/// The JSON document of a sync.
#[derive(Debug, Serialize)]
struct SyncJson<'a> {
    schema: &'static str,
    mode: &'static str,
    generated_at: String,
    source: &'a str,
    complete: bool,
    problems: &'a [String],
    api_calls: u32,
    destructive_allowed: bool,
    changes_pending: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    converged: Option<bool>,
    managed_accounts: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    ledger_set_aside: Option<String>,
    steps: serde_json::Value,
    skipped: &'a [super::plan::Skip],
    rejections: &'a [super::desired::Rejection],
    notices: &'a [super::plan::Notice],
    holds: &'a [super::plan::Hold],
    #[serde(skip_serializing_if = "Option::is_none")]
    aborted: Option<&'a str>,
}

/// The sync as JSON (pretty-printed).
pub fn sync_json(r: &SyncReport) -> String {
    let steps = match &r.applied {
        Some(a) => serde_json::to_value(&a.results),
        None => serde_json::to_value(&r.plan.steps),
    }
    .unwrap_or(serde_json::Value::Null);
    let doc = SyncJson {
        schema: SYNC_SCHEMA,
        mode: if r.applied.is_some() { "apply" } else { "plan" },
        generated_at: clock::rfc3339(r.at),
        source: &r.read.source,
        complete: r.read.complete,
        problems: &r.read.problems,
        api_calls: r.read.api_calls,
        destructive_allowed: r.plan.destructive_allowed,
        changes_pending: r.plan.has_changes(),
        converged: r.applied.as_ref().map(|_| r.converged()),
        managed_accounts: r.managed,
        ledger_set_aside: r.ledger_set_aside.as_ref().map(|p| p.display().to_string()),
        steps,
        skipped: &r.plan.skipped,
        rejections: &r.plan.rejections,
        notices: &r.plan.notices,
        holds: &r.plan.holds,
        aborted: r.applied.as_ref().and_then(|a| a.aborted.as_deref()),
    };
    serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// The one-line detail of a step.
pub fn step_detail(step: &Step) -> String {
    match step {
        Step::CreateGroup { purpose, .. } => match purpose {
            GroupPurpose::Sudo => "system group for sudo (accounts.sudo_group)".into(),
            GroupPurpose::Primary => {
                "system group every managed account has as its primary group (accounts.primary_group)".into()
            }
        },
        Step::ResumeGroup { gid, .. } => {
            format!("interrupted groupadd completed (gid {gid}); recording it")
        }
        Step::WriteSudoers { group, .. } => {
            format!("grant sudo to members of `{group}` (validated with visudo -cf)")
        }
        Step::RemoveSudoers { .. } => "no sudo group configured any more".into(),
        Step::Create {
            groups,
            principals,
            home,
            create_home,
            note,
            ..
        } => {
            let mut d = String::new();
            if let Some(n) = note {
                let _ = write!(d, "{n}; ");
            }
            let _ = write!(
                d,
                "home {}{}",
                home.display(),
                if *create_home {
                    ""
                } else {
                    " (exists, reused)"
                }
            );
            if !groups.is_empty() {
                let _ = write!(d, "; groups {}", groups.join(","));
            }
            let _ = write!(d, "; for {}", principals.join(", "));
            clean(&d)
        }
        Step::Resume { .. } => "interrupted create completed; recording it".into(),
        Step::Repair {
            changes, reinstate, ..
        } => changes_text(changes, *reinstate),
        Step::RetireStart {
            remove_groups,
            primary_group,
            ..
        } => {
            let mut d = if remove_groups.is_empty() {
                "absent from the source: start retiring".to_string()
            } else {
                format!(
                    "absent from the source: remove groups {} (and sudo) now",
                    remove_groups.join(",")
                )
            };
            if let Some(c) = primary_group {
                let _ = write!(d, "; {}", change_text(c));
            }
            d
        }
        Step::RetireWait {
            reads,
            needed,
            grace_left_secs,
            ..
        } => format!(
            "retiring: {reads}/{needed} complete reads without it, {} of grace left",
            humantime::format_duration(std::time::Duration::from_secs(*grace_left_secs))
        ),
        Step::RetireFinish { remove_home, .. } => format!(
            "end its processes and delete it (home {})",
            if *remove_home { "removed" } else { "kept" }
        ),
        Step::Forget { reason, .. } => format!("{reason}; forget it, keep its UID reserved"),
    }
}

/// What a repair changes, for tables and logs.
pub fn changes_text(changes: &[Change], reinstate: bool) -> String {
    let mut parts: Vec<String> = changes.iter().map(change_text).collect();
    if reinstate {
        parts.insert(0, "wanted again: retirement cancelled".into());
    }
    clean(&parts.join("; "))
}

fn change_text(c: &Change) -> String {
    match c {
        Change::Shell { from, to } => format!("shell {} -> {}", from.display(), to.display()),
        Change::Home { from, to } => format!("home {} -> {}", from.display(), to.display()),
        Change::Comment { from, to } => format!("comment {from:?} -> {to:?}"),
        Change::PrimaryGroup { from, to, create } => match create {
            Some(g) => format!("primary group {from} -> {to} (group `{g}` made again)"),
            None => format!("primary group {from} -> {to}"),
        },
        Change::CreateHome { path } => {
            format!(
                "home {} missing: made again from the skeleton",
                path.display()
            )
        }
        Change::Groups { add, remove, .. } => {
            let mut v = Vec::new();
            if !add.is_empty() {
                v.push(format!("add groups {}", add.join(",")));
            }
            if !remove.is_empty() {
                v.push(format!("remove groups {}", remove.join(",")));
            }
            v.join(", ")
        }
    }
}

/// The sync for people.
pub fn sync_text(r: &SyncReport) -> String {
    let mut out = String::new();
    let p = &r.plan;
    let _ = writeln!(
        out,
        "Source: {} ({}{})",
        clean(&r.read.source),
        if r.read.complete {
            "complete read"
        } else {
            "INCOMPLETE read: nothing is retired"
        },
        if r.read.api_calls > 0 {
            format!(", {} AWS call(s)", r.read.api_calls)
        } else {
            String::new()
        }
    );
    for problem in &r.read.problems {
        let _ = writeln!(out, "  ! {}", clean(problem));
    }
    if let Some(aside) = &r.ledger_set_aside {
        let _ = writeln!(
            out,
            "Ledger from another machine set aside at {}",
            aside.display()
        );
    }
    let count = |a: &str| p.steps.iter().filter(|s| s.action() == a).count();
    let _ = writeln!(
        out,
        "{}: {} to create, {} to repair, {} to start retiring, {} to delete; {} skipped, {} rejected",
        if r.applied.is_some() {
            "Applied"
        } else {
            "Plan"
        },
        count("create"),
        count("repair") + count("reinstate"),
        count("retire-start"),
        count("retire-finish"),
        p.skipped.len(),
        p.rejections.len()
    );
    if !p.steps.is_empty() {
        out.push('\n');
        let mut header = vec!["ACTION", "USER", "UID"];
        if r.applied.is_some() {
            header.push("RESULT");
        }
        header.push("DETAIL");
        let rows: Vec<Vec<String>> = p
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut row = vec![
                    s.action().to_string(),
                    clean(&s.subject()),
                    s.uid().map(|u| u.to_string()).unwrap_or_else(|| "-".into()),
                ];
                let mut detail = step_detail(s);
                if let Some(a) = &r.applied
                    && let Some(res) = a.results.get(i)
                {
                    row.push(res.outcome.to_string());
                    if let Some(e) = &res.error {
                        detail = clean(e);
                    }
                }
                row.push(detail);
                row
            })
            .collect();
        out.push_str(&table(&header, &rows));
    }
    if !p.skipped.is_empty() {
        out.push_str("\nSkipped:\n");
        let rows: Vec<Vec<String>> = p
            .skipped
            .iter()
            .map(|s| vec![clean(&s.user), serde_plain(&s.reason), clean(&s.detail)])
            .collect();
        out.push_str(&table(&["USER", "REASON", "DETAIL"], &rows));
    }
    if !p.rejections.is_empty() {
        out.push_str("\nRejected:\n");
        let rows: Vec<Vec<String>> = p
            .rejections
            .iter()
            .map(|j| {
                vec![
                    clean(&j.principal),
                    format!("{:?}", j.value),
                    j.reason.as_str().to_string(),
                    clean(&j.detail),
                ]
            })
            .collect();
        out.push_str(&table(&["PRINCIPAL", "VALUE", "REASON", "DETAIL"], &rows));
    }
    // A hold says the same as its notice: the notice is left out here.
    let notices: Vec<_> = p
        .notices
        .iter()
        .filter(|n| p.holds.iter().all(|h| h.code != n.code))
        .collect();
    if !notices.is_empty() {
        out.push_str("\nNotices:\n");
        for n in notices {
            let _ = writeln!(out, "  {}: {}", n.code, clean(&n.message));
        }
    }
    if !p.holds.is_empty() {
        out.push_str(
            "\nHeld back by a safety stop (not converged until an operator acts or it clears):\n",
        );
        for h in &p.holds {
            let _ = writeln!(out, "  {}: {}", clean(&h.label()), clean(&h.message));
        }
    }
    if let Some(a) = r.applied.as_ref().and_then(|a| a.aborted.as_deref()) {
        let _ = writeln!(out, "\n{}", clean(a));
    }
    out
}

fn serde_plain<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// `accounts list` for people.
pub fn list_text(rows: &[ListedAccount]) -> String {
    if rows.is_empty() {
        return "No managed accounts.\n".into();
    }
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|a| {
            vec![
                clean(&a.name),
                a.uid.to_string(),
                format!(
                    "{}{}{}",
                    a.state,
                    if a.present { "" } else { " (missing)" },
                    if a.inherited_from.is_some() {
                        " (inherited)"
                    } else {
                        ""
                    }
                ),
                a.since.clone(),
                clean(&a.principals.join(", ")),
            ]
        })
        .collect();
    table(&["USER", "UID", "STATE", "SINCE", "PRINCIPALS"], &rows)
}

/// `accounts list --json`.
pub fn list_json(rows: &[ListedAccount]) -> String {
    #[derive(Serialize)]
    struct Doc<'a> {
        schema: &'static str,
        accounts: &'a [ListedAccount],
    }
    serde_json::to_string_pretty(&Doc {
        schema: LIST_SCHEMA,
        accounts: rows,
    })
    .unwrap_or_default()
}
