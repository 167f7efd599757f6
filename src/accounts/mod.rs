//! The accounts capability: keep local OS accounts in step with `SSMSessionRunAs`.
//!
//! One sync: read the source ([`source`]) → validate and scope it into the desired set
//! ([`desired`], pure) → snapshot the host ([`host`]) and load the ledger ([`ledger`]) → plan
//! ([`plan`], pure) → apply through shadow-utils ([`apply`]). `accounts plan` stops before apply.

pub mod apply;
pub mod desired;
pub mod host;
pub mod ledger;
pub mod local;
pub mod mapping;
pub mod plan;
pub mod report;
pub mod source;
#[cfg(test)]
#[allow(missing_docs)]
pub mod testkit;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::SystemTime;

use crate::aws::Aws;
use crate::clock::Clock;
use crate::config::Settings;
use crate::state::{StateDir, StateError};

pub use apply::Applied;
pub use desired::SourceRead;
pub use plan::Plan;

/// What a sync does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Compute and show the plan; change nothing (not even the ledger).
    Plan,
    /// Apply the plan.
    Apply {
        /// Lift `max_retire_fraction` for this run.
        allow_mass_retire: bool,
        /// Trust ledger entries inherited from another machine (allow deleting them).
        trust_inherited: bool,
        /// Stop after the read when the source answers that nothing changed since the copy
        /// stored last (the mapping's 304): the caller's previous sync converged on that copy.
        unchanged_is_done: bool,
    },
}

/// The outcome of one sync.
#[derive(Debug, Clone)]
pub struct SyncReport {
    /// When it ran.
    pub at: SystemTime,
    /// What the source said.
    pub read: SourceRead,
    /// The plan.
    pub plan: Plan,
    /// What apply did (`None` for [`Mode::Plan`]).
    pub applied: Option<Applied>,
    /// Where a foreign ledger was moved.
    pub ledger_set_aside: Option<PathBuf>,
    /// Managed accounts after the sync.
    pub managed: usize,
}

impl SyncReport {
    /// True when the host matches the source: the read was complete, no step failed and no
    /// safety stop holds anything back.
    pub fn converged(&self) -> bool {
        self.read.complete
            && self.plan.holds.is_empty()
            && self
                .applied
                .as_ref()
                .is_none_or(|a| a.failed() == 0 && a.aborted.is_none())
    }
}

/// A sync that could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The state directory.
    #[error(transparent)]
    State(#[from] StateError),
    /// The ledger.
    #[error(transparent)]
    Ledger(#[from] ledger::LedgerError),
    /// Reading the host.
    #[error("cannot read the host's accounts: {0}")]
    Host(#[from] host::HostError),
    /// The blocking apply task died.
    #[error("the apply task failed: {0}")]
    Task(String),
}

/// The current machine binding: machine-id and (on EC2) instance id.
pub fn binding(settings: &Settings, aws: Option<&Aws>) -> ledger::Binding {
    ledger::Binding {
        machine_id: ledger::read_machine_id(&settings.paths.machine_id),
        instance_id: aws.and_then(|a| a.identity.instance_id.clone()),
    }
}

/// Runs one sync against the real host.
pub async fn sync(
    settings: &Settings,
    aws: Option<&Aws>,
    clock: &dyn Clock,
    mode: Mode,
) -> Result<SyncReport, SyncError> {
    let result = sync_with(
        settings,
        aws,
        clock,
        mode,
        Box::new(host::ShadowHost::new(settings)),
    )
    .await;
    // Another process syncing (the lock is held) says nothing about how syncs go.
    let busy = matches!(&result, Err(SyncError::State(StateError::Busy { .. })));
    if matches!(mode, Mode::Apply { .. }) && !busy {
        record_status(settings, &result, clock.now());
    }
    result
}

/// Records how an applied sync went for the health capability (`accounts.sync`); a failure to
/// write it is logged, never fatal.
fn record_status(settings: &Settings, result: &Result<SyncReport, SyncError>, now: SystemTime) {
    use crate::state::accounts_status::{AccountsStatus, save};
    let status = match result {
        Ok(r) => AccountsStatus {
            at: r.at,
            source: r.read.source.clone(),
            error: None,
            complete: r.read.complete,
            problems: r.read.problems.clone(),
            failed_steps: r.applied.as_ref().map_or(0, Applied::failed),
            holds: r.plan.holds.clone(),
            managed: r.managed,
            converged: r.converged(),
        },
        Err(e) => AccountsStatus {
            at: now,
            source: settings.accounts.source.to_string(),
            error: Some(e.to_string()),
            complete: false,
            problems: Vec::new(),
            failed_steps: 0,
            holds: Vec::new(),
            managed: 0,
            converged: false,
        },
    };
    if let Err(e) = save(&settings.paths.state_dir, &status) {
        tracing::warn!("cannot record the accounts status for health checks: {e}");
    }
}

/// Runs one sync with the given host (tests pass an in-memory one).
///
/// The source is read on the async runtime; everything that blocks (the ledger, the user
/// database snapshot and its NSS lookups, planning, shadow-utils) runs on a blocking thread, so
/// signals and the watchdog are served meanwhile.
pub async fn sync_with(
    settings: &Settings,
    aws: Option<&Aws>,
    clock: &dyn Clock,
    mode: Mode,
    mut host: Box<dyn host::Host + Send>,
) -> Result<SyncReport, SyncError> {
    // A plan changes nothing, not even by creating the state directory.
    let lock = match mode {
        Mode::Apply { .. } => {
            Some(StateDir::open(&settings.paths.state_dir)?.try_lock("accounts.lock")?)
        }
        Mode::Plan => None,
    };
    let now_binding = binding(settings, aws);

    let persist = matches!(mode, Mode::Apply { .. });
    let mut read = source::read(settings, aws, persist, clock.now()).await;
    if let Some(a) = aws
        && let Err(e) = &a.sdk
        && settings.accounts.source == crate::config::SourceKind::Iam
    {
        read.problems.insert(0, e.to_string());
    }
    let now = clock.now();
    if let Mode::Apply {
        unchanged_is_done: true,
        ..
    } = mode
        && read.unchanged
        && read.complete
    {
        // Nothing changed at the source and the last sync converged: no local work. The
        // managed count is the last sync's.
        let managed = crate::state::accounts_status::load(&settings.paths.state_dir)
            .ok()
            .flatten()
            .map_or(0, |s| s.managed);
        return Ok(SyncReport {
            at: now,
            read,
            plan: plan::Plan::nothing(),
            applied: None,
            ledger_set_aside: None,
            managed,
        });
    }
    let settings = settings.clone();
    let claims = read.claims.clone();
    let prefs = read.preferences.clone();
    let complete = read.complete;
    let empty_source = complete && source::is_empty_answer(&read.claims);
    let (plan, applied, managed, set_aside) = tokio::task::spawn_blocking(move || {
        let ledger_path = settings.paths.state_dir.join(ledger::FILE_NAME);
        let apply_mode = matches!(mode, Mode::Apply { .. });
        let mut loaded = ledger::load(&ledger_path, &now_binding, apply_mode)?;
        if let Mode::Apply { trust_inherited: true, .. } = mode {
            trust_inherited(&mut loaded.ledger, &ledger_path)?;
        }
        let policy = desired::Policy {
            host_groups: settings.accounts.host_groups.clone(),
            allowed_groups: settings.accounts.allowed_groups.clone(),
        };
        let desired = desired::build(&claims, &policy);
        let names: BTreeSet<String> = desired
            .accounts
            .keys()
            .chain(loaded.ledger.accounts.keys())
            .cloned()
            .collect();
        let local = host.snapshot(&names)?;
        let plan_settings = plan::PlanSettings::from(&settings);
        let mut plan = plan::plan(plan::PlanInput {
            desired: &desired,
            complete,
            local: &local,
            ledger: &loaded.ledger,
            binding: &loaded.binding,
            settings: &plan_settings,
            now,
            allow_mass_retire: matches!(mode, Mode::Apply { allow_mass_retire: true, .. }),
            empty_source,
        });
        if let Some(p) = &prefs
            && !p.enabled
        {
            plan.notices.push(plan::Notice {
                code: "run-as-disabled",
                message: "Run As is off in the Session Manager preferences: sessions start as ssm-user and the SSMSessionRunAs tags are ignored by the agent".into(),
            });
        }
        let mut ledger = loaded.ledger;
        let applied = apply_mode.then(|| apply::apply(&plan, host.as_mut(), &mut ledger, &ledger_path, now));
        if apply_mode {
            let map = run_as_map(&desired, &plan, complete, now);
            if let Err(e) = crate::state::run_as::save(&settings.paths.state_dir, &map) {
                tracing::warn!("cannot write the Run As map for health checks: {e}");
            }
        }
        Ok::<_, SyncError>((plan, applied, ledger.accounts.len(), loaded.set_aside))
    })
    .await
    .map_err(|e| SyncError::Task(e.to_string()))??;
    drop(lock);
    Ok(SyncReport {
        at: now,
        read,
        plan,
        applied,
        ledger_set_aside: set_aside,
        managed,
    })
}

/// What this sync mapped, for the health capability's Run As readiness check.
fn run_as_map(
    desired: &desired::Desired,
    plan: &Plan,
    complete: bool,
    now: SystemTime,
) -> crate::state::run_as::RunAsMap {
    use crate::state::run_as::{Mapped, RunAsMap, Unusable};
    // A session as a name that is refused here may still work when the user exists anyway
    // (`daemon`, `ssm-user`): only values that can never be a user are "unusable"; the rest is
    // checked for existence by the health capability.
    let never = |r: &desired::Rejection| {
        r.reason == desired::RejectReason::InvalidName
            || (r.reason == desired::RejectReason::ReservedName && r.value == "root")
    };
    let mut users: std::collections::BTreeMap<String, BTreeSet<String>> = desired
        .accounts
        .iter()
        .map(|(u, w)| (u.clone(), w.principals.clone()))
        .collect();
    let mut unusable = Vec::new();
    for r in &plan.rejections {
        if never(r) {
            unusable.push(Unusable {
                principal: r.principal.clone(),
                value: r.value.clone(),
                reason: r.reason.as_str().into(),
            });
        } else if !matches!(
            r.reason,
            desired::RejectReason::GroupNotAllowed | desired::RejectReason::InvalidGroup
        ) {
            users
                .entry(r.value.clone())
                .or_default()
                .insert(r.principal.clone());
        }
    }
    RunAsMap {
        generated_at: crate::clock::rfc3339(now),
        complete,
        mapped: users
            .into_iter()
            .map(|(user, p)| Mapped {
                user,
                principals: p.into_iter().collect(),
            })
            .collect(),
        unusable,
    }
}

/// The operator confirmed (`--trust-inherited`) that the entries inherited from another machine's
/// ledger are ours: they lose the mark, and can be deleted like any other.
fn trust_inherited(l: &mut ledger::Ledger, path: &std::path::Path) -> Result<(), SyncError> {
    let mut n = 0;
    for a in l.accounts.values_mut() {
        n += usize::from(a.inherited_from.take().is_some());
    }
    for g in l.groups.values_mut() {
        n += usize::from(g.inherited_from.take().is_some());
    }
    if n > 0 {
        tracing::warn!(
            "{n} ledger entr(y/ies) inherited from another machine are now trusted (--trust-inherited)"
        );
        ledger::save(path, l)?;
    }
    Ok(())
}

/// One row of `accounts list`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ListedAccount {
    /// Name.
    pub name: String,
    /// UID.
    pub uid: u32,
    /// Principals mapping to it.
    pub principals: Vec<String>,
    /// `active`, `retiring`, `creating`, `deleting`.
    pub state: &'static str,
    /// Since when (RFC 3339).
    pub since: String,
    /// Whether the account exists in the local files right now with that UID.
    pub present: bool,
    /// Set when the entry came with a ledger from another machine (never deleted automatically).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inherited_from: Option<String>,
}

/// The managed accounts, from the ledger and the passwd file. Starts no thread and no runtime.
pub fn list(settings: &Settings) -> Result<Vec<ListedAccount>, SyncError> {
    let path = settings.paths.state_dir.join(ledger::FILE_NAME);
    let binding = binding(settings, None);
    let loaded = ledger::load(&path, &binding, false)?;
    let passwd = std::fs::read_to_string(&settings.paths.passwd).map_err(|source| {
        host::HostError::Read {
            path: settings.paths.passwd.clone(),
            source,
        }
    })?;
    let (users, _) = local::parse_passwd(&passwd);
    Ok(loaded
        .ledger
        .accounts
        .iter()
        .map(|(name, a)| ListedAccount {
            name: name.clone(),
            uid: a.uid,
            principals: a.principals.iter().cloned().collect(),
            state: a.state.as_str(),
            since: crate::clock::rfc3339(a.since),
            present: users.iter().any(|u| &u.name == name && u.uid == a.uid),
            inherited_from: a.inherited_from.clone(),
        })
        .collect())
}
