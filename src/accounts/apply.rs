//! Executing a plan: each step through the [`Host`], recorded in the ledger before and after.
//!
//! Crash safety: every step that creates or deletes something is first written to the ledger as
//! an intent (`creating`, `deleting`, a `creating` group), all in one durable write before the
//! first change; outcomes are written at checkpoints and at the end. If the process dies in
//! between, the next plan sees the intent next to the host's real state and finishes or undoes it
//! (`Resume`, a repeated `Create`, `Forget`, a repeated `RetireFinish`). If the ledger cannot be
//! written (full disk), nothing more is changed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::SystemTime;

use serde::Serialize;

use super::host::{Host, HostError, NewUser};
use super::ledger::{
    self, AccountState, GroupState, Ledger, LedgerError, ManagedAccount, ManagedGroup, Tombstone,
};
use super::plan::{Change, Plan, Step};
use crate::events::{self, Outcome};

/// What happened to one step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepResult {
    /// The step.
    #[serde(flatten)]
    pub step: Step,
    /// "done", "failed" or "not-run".
    pub outcome: &'static str,
    /// The error, when failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The result of applying a plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Applied {
    /// One entry per step, in order.
    pub results: Vec<StepResult>,
    /// Set when apply stopped early (the ledger could not be written).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aborted: Option<String>,
}

impl Applied {
    /// Steps that failed or were not run.
    pub fn failed(&self) -> usize {
        self.results.iter().filter(|r| r.outcome != "done").count()
    }
}

struct Run<'a> {
    host: &'a mut dyn Host,
    ledger: &'a mut Ledger,
    now: SystemTime,
    /// Ledger entries replaced by a create intent, restored if the tool changed nothing.
    replaced: BTreeMap<String, Option<ManagedAccount>>,
    /// Groups whose creation failed in this run: nobody is added to them, no sudo through them.
    unusable_groups: BTreeSet<String>,
}

/// The ledger is written after this many steps (and at the end), so a long first sync keeps
/// its progress without paying a full rewrite per account.
const CHECKPOINT_EVERY: usize = 64;

impl Run<'_> {
    fn account(&mut self, name: &str) -> Option<&mut ManagedAccount> {
        self.ledger.accounts.get_mut(name)
    }

    /// `groups` without the ones this run could not create.
    fn usable(&self, groups: &[String]) -> Vec<String> {
        groups
            .iter()
            .filter(|g| !self.unusable_groups.contains(*g))
            .cloned()
            .collect()
    }

    /// The account is gone: out of the ledger, its UID kept reserved by a tombstone.
    fn bury(&mut self, name: &str, uid: u32) {
        self.ledger.accounts.remove(name);
        self.ledger.tombstones.insert(
            name.to_string(),
            Tombstone {
                uid,
                retired_at: self.now,
            },
        );
    }

    /// The name is back: its tombstone goes; if it came back with another UID, the old one
    /// stays reserved (its kept files still carry it).
    fn forget_tombstone(&mut self, name: &str, uid: u32) {
        if let Some(t) = self.ledger.tombstones.remove(name)
            && t.uid != uid
        {
            self.ledger.retired_uids.insert(t.uid, name.to_string());
        }
    }

    /// Records the intent of every step that creates or deletes something (written to disk by
    /// the caller before any step runs).
    fn record_intents(&mut self, plan: &Plan) {
        let now = self.now;
        for step in &plan.steps {
            match step {
                Step::CreateGroup { group, .. } => {
                    self.ledger.groups.insert(
                        group.clone(),
                        ManagedGroup {
                            gid: None,
                            state: GroupState::Creating,
                            created_at: now,
                            inherited_from: None,
                        },
                    );
                }
                Step::Create {
                    user,
                    uid,
                    principals,
                    ..
                } => {
                    let previous = self.ledger.accounts.get(user).cloned();
                    let entry = ManagedAccount {
                        uid: *uid,
                        state: AccountState::Creating,
                        principals: principals.iter().cloned().collect(),
                        created_at: previous.as_ref().map_or(now, |p| p.created_at),
                        since: now,
                        missing_reads: 0,
                        missing_since: None,
                        inherited_from: previous.as_ref().and_then(|p| p.inherited_from.clone()),
                    };
                    self.ledger.accounts.insert(user.clone(), entry);
                    self.replaced.insert(user.clone(), previous);
                }
                Step::RetireFinish { user, .. } => {
                    if let Some(a) = self.account(user) {
                        a.state = AccountState::Deleting;
                        a.since = now;
                    }
                }
                _ => {}
            }
        }
    }

    fn step(&mut self, step: &Step) -> Result<String, HostError> {
        let now = self.now;
        match step {
            Step::CreateGroup { group, purpose } => {
                crate::failpoint!("create-group:{group}:before");
                let gid = match self.host.create_group(group) {
                    Ok(gid) => gid,
                    Err(e) => {
                        // Nothing this run does may rely on the group now: it may be someone
                        // else's (groupadd exit 9: it appeared since the snapshot).
                        self.unusable_groups.insert(group.clone());
                        if e.nothing_changed() {
                            self.ledger.groups.remove(group);
                        }
                        return Err(e);
                    }
                };
                crate::failpoint!("create-group:{group}:after");
                if let Some(g) = self.ledger.groups.get_mut(group) {
                    g.state = GroupState::Active;
                    g.gid = gid;
                }
                Ok(match gid {
                    Some(gid) => format!("system group created (gid {gid}, {})", purpose.key()),
                    None => format!("system group created ({})", purpose.key()),
                })
            }
            Step::ResumeGroup { group, gid, .. } => {
                if let Some(g) = self.ledger.groups.get_mut(group) {
                    g.state = GroupState::Active;
                    g.gid = Some(*gid);
                }
                Ok(format!(
                    "an interrupted groupadd had completed (gid {gid}); recorded"
                ))
            }
            Step::WriteSudoers {
                path,
                group,
                content,
            } => {
                if self.unusable_groups.contains(group) {
                    return Err(HostError::NotRun(format!(
                        "not written: the sudo group `{group}` could not be created"
                    )));
                }
                self.host.write_sudoers(content)?;
                Ok(format!(
                    "{} grants sudo to members of `{group}`",
                    path.display()
                ))
            }
            Step::RemoveSudoers { path } => {
                self.host.remove_sudoers()?;
                Ok(format!("{} removed", path.display()))
            }
            Step::Create {
                user,
                uid,
                groups,
                shell,
                home,
                create_home,
                primary_group,
                note,
                ..
            } => {
                crate::failpoint!("create:{user}:before");
                if let Some(g) = primary_group
                    && self.unusable_groups.contains(g)
                {
                    if let Some(p) = self.replaced.remove(user) {
                        match p {
                            Some(p) => self.ledger.accounts.insert(user.clone(), p),
                            None => self.ledger.accounts.remove(user),
                        };
                    }
                    return Err(HostError::NotRun(format!(
                        "not created: its primary group `{g}` could not be created"
                    )));
                }
                let groups = self.usable(groups);
                let result = self.host.create_user(&NewUser {
                    name: user,
                    uid: *uid,
                    groups: &groups,
                    shell,
                    home,
                    create_home: *create_home,
                    primary_group: primary_group.as_deref(),
                });
                if let Err(e) = result {
                    if e.nothing_changed() {
                        match self.replaced.remove(user).flatten() {
                            Some(p) => self.ledger.accounts.insert(user.clone(), p),
                            None => self.ledger.accounts.remove(user),
                        };
                    }
                    return Err(e);
                }
                crate::failpoint!("create:{user}:after");
                if let Some(a) = self.account(user) {
                    a.state = AccountState::Active;
                }
                self.forget_tombstone(user, *uid);
                let mut detail = format!("uid {uid}, home {}", home.display());
                if !groups.is_empty() {
                    detail.push_str(&format!(", groups {}", groups.join(",")));
                }
                if let Some(n) = note {
                    detail.push_str(&format!(" ({n})"));
                }
                Ok(detail)
            }
            Step::Resume { user, uid } => {
                if let Some(a) = self.account(user) {
                    a.state = AccountState::Active;
                    a.since = now;
                }
                self.forget_tombstone(user, *uid);
                Ok("an interrupted create had completed; recorded".into())
            }
            Step::Repair {
                user,
                changes,
                reinstate,
                ..
            } => {
                let changes: Vec<Change> = changes
                    .iter()
                    .map(|c| match c {
                        Change::Groups {
                            add,
                            remove,
                            result,
                        } => Change::Groups {
                            add: self.usable(add),
                            remove: remove.clone(),
                            result: self.usable(result),
                        },
                        other => other.clone(),
                    })
                    .collect();
                self.host.modify_user(user, &changes)?;
                crate::failpoint!("repair:{user}:after");
                if *reinstate && let Some(a) = self.account(user) {
                    a.state = AccountState::Active;
                    a.since = now;
                    a.missing_reads = 0;
                    a.missing_since = None;
                }
                Ok(super::report::changes_text(&changes, *reinstate))
            }
            Step::RetireStart {
                user,
                remove_groups,
                primary_group,
                ..
            } => {
                let mut changes = Vec::new();
                if !remove_groups.is_empty() {
                    changes.push(Change::Groups {
                        add: vec![],
                        remove: remove_groups.clone(),
                        result: vec![],
                    });
                }
                changes.extend(primary_group.iter().cloned());
                if !changes.is_empty() {
                    self.host.modify_user(user, &changes)?;
                }
                crate::failpoint!("retire-start:{user}:after");
                if let Some(a) = self.account(user) {
                    a.state = AccountState::Retiring;
                    a.since = now;
                    a.missing_reads = 1;
                    a.missing_since = Some(now);
                }
                let mut detail = if remove_groups.is_empty() {
                    "absent from the source; retiring".to_string()
                } else {
                    format!(
                        "absent from the source; retiring, groups removed: {}",
                        remove_groups.join(",")
                    )
                };
                if let Some(c) = primary_group {
                    detail.push_str("; ");
                    detail.push_str(&super::report::changes_text(std::slice::from_ref(c), false));
                }
                Ok(detail)
            }
            Step::RetireWait {
                user,
                reads,
                needed,
                grace_left_secs,
                ..
            } => {
                if let Some(a) = self.account(user) {
                    a.missing_reads = *reads;
                }
                Ok(format!(
                    "{reads}/{needed} complete reads without it, {grace_left_secs}s of grace left"
                ))
            }
            Step::RetireFinish {
                user,
                uid,
                remove_home,
            } => {
                crate::failpoint!("retire-finish:{user}:before");
                let ended = self.host.end_processes(*uid)?;
                self.host.delete_user(user, *remove_home)?;
                crate::failpoint!("retire-finish:{user}:after");
                self.bury(user, *uid);
                Ok(format!(
                    "deleted ({ended} process(es) ended, home {})",
                    if *remove_home { "removed" } else { "kept" }
                ))
            }
            Step::Forget { user, uid, reason } => {
                self.bury(user, *uid);
                Ok(format!("{reason}; uid {uid} stays reserved"))
            }
        }
    }
}

/// Applies `plan`, updating `ledger` (saved to `ledger_path`).
///
/// First the intents of every create and delete are written in one durable ledger write; no
/// host change happens before that succeeds. Then the steps run; their outcomes are written every
/// [`CHECKPOINT_EVERY`] steps and at the end. A crash anywhere leaves intents that the next plan
/// finishes or undoes; a ledger that cannot be written stops apply before the next change.
pub fn apply(
    plan: &Plan,
    host: &mut dyn Host,
    ledger: &mut Ledger,
    ledger_path: &Path,
    now: SystemTime,
) -> Applied {
    let mut run = Run {
        host,
        ledger,
        now,
        replaced: BTreeMap::new(),
        unusable_groups: BTreeSet::new(),
    };
    let mut results = Vec::with_capacity(plan.steps.len());
    let mut aborted = None;
    let stop = |e: LedgerError| {
        format!("stopped: the ledger could not be written, so no further change is made: {e}")
    };
    run.record_intents(plan);
    if plan.steps.iter().any(Step::is_change)
        && let Err(e) = ledger::save(ledger_path, run.ledger)
    {
        aborted = Some(stop(e));
    }
    for (i, step) in plan.steps.iter().enumerate() {
        if aborted.is_some() {
            results.push(StepResult {
                step: step.clone(),
                outcome: "not-run",
                error: None,
            });
            continue;
        }
        let principals: Vec<String> = match step {
            Step::Create { principals, .. } => principals.clone(),
            _ => plan
                .principals
                .get(&step.subject())
                .map(|p| p.iter().cloned().collect())
                .unwrap_or_default(),
        };
        match run.step(step) {
            Ok(detail) => {
                if step.is_change() {
                    events::account_change(
                        step.action(),
                        &step.subject(),
                        step.uid(),
                        &principals,
                        &detail,
                        Outcome::Done,
                    );
                } else {
                    tracing::info!(user = %step.subject(), "{}: {detail}", step.action());
                }
                results.push(StepResult {
                    step: step.clone(),
                    outcome: "done",
                    error: None,
                });
            }
            Err(e) => {
                let msg = e.to_string();
                events::account_change(
                    step.action(),
                    &step.subject(),
                    step.uid(),
                    &principals,
                    &msg,
                    Outcome::Failed,
                );
                results.push(StepResult {
                    step: step.clone(),
                    outcome: "failed",
                    error: Some(msg),
                });
            }
        }
        if (i + 1) % CHECKPOINT_EVERY == 0
            && let Err(e) = ledger::save(ledger_path, run.ledger)
        {
            aborted = Some(stop(e));
        }
    }
    // Record who maps to each managed account.
    if plan.complete {
        for (name, principals) in &plan.principals {
            if let Some(a) = run.ledger.accounts.get_mut(name) {
                a.principals = principals.iter().cloned().collect::<BTreeSet<_>>();
            }
        }
    }
    if aborted.is_none()
        && (!plan.steps.is_empty() || !plan.principals.is_empty())
        && let Err(e) = ledger::save(ledger_path, run.ledger)
    {
        aborted = Some(format!(
            "the ledger could not be written after the changes (the next sync reconciles them): {e}"
        ));
    }
    Applied { results, aborted }
}

#[cfg(test)]
pub(crate) mod tests;
