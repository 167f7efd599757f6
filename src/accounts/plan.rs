//! The planner: (desired set, host, ledger, settings, now) → the steps of one sync. Pure.
//!
//! Every safety rule of the accounts capability is decided here, where it can be tested
//! exhaustively without a host:
//!
//! - only ledger accounts are modified or removed; any other existing account is
//!   `exists-unmanaged` and never touched, grouped or given sudo;
//! - names of system accounts/groups and of our own groups are refused;
//! - UIDs are deterministic from the name within the range, probe past collisions, are never 0
//!   and never reused for another name (ledger tombstones);
//! - home is exactly `<home_base>/<name>`; an existing home that is a symlink, not a directory,
//!   or owned by another UID stops the create;
//! - groups only from the allowlist; sudo only through the sudo group, which must be ours;
//! - retiring removes groups (and so sudo) at once and deletes only after N complete reads and
//!   the grace period; an incomplete read or an unverified ledger retires nothing and removes no
//!   group; a cycle never starts retiring more than the configured share of managed accounts
//!   unless overridden.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::desired::{Desired, RejectReason, Rejection};
use super::ledger::{AccountState, BindingCheck, GroupState, Ledger, ManagedAccount};
use super::local::{HomeState, LocalView};
use crate::config::Settings;

/// The GECOS comment of every managed account (it may not contain `:` or `,`, so no ARN).
pub const COMMENT: &str = "ssm-companion";

/// First line of the sudoers drop-in; a file without it is not ours and is never touched.
pub const SUDOERS_HEADER: &str =
    "# Managed by ssm-companion; do not edit (changes are overwritten).";

/// The knobs the planner needs, taken from [`Settings`].
#[derive(Debug, Clone)]
pub struct PlanSettings {
    /// Login shell.
    pub shell: PathBuf,
    /// Parent of home directories.
    pub home_base: PathBuf,
    /// UID range (inclusive).
    pub uid_range: [u32; 2],
    /// Sudo group, if any.
    pub sudo_group: Option<String>,
    /// Allowlisted groups.
    pub allowed_groups: BTreeSet<String>,
    /// Grace before deletion.
    pub retire_grace: Duration,
    /// Complete reads before deletion.
    pub retire_confirmations: u32,
    /// Cap on retire starts per cycle.
    pub max_retire_fraction: f64,
    /// `userdel -r`.
    pub remove_home: bool,
    /// The sudoers drop-in path.
    pub sudoers_file: PathBuf,
    /// The operator's reserved names (`name` or `prefix*`), besides the built-in list.
    pub reserved_names: Vec<String>,
    /// The shared primary group of every managed account; `None`: a private group each.
    pub primary_group: Option<String>,
}

impl From<&Settings> for PlanSettings {
    fn from(s: &Settings) -> Self {
        let a = &s.accounts;
        Self {
            shell: a.shell.clone(),
            home_base: s.paths.home_base.clone(),
            uid_range: a.uid_range,
            sudo_group: (!a.sudo_group.is_empty()).then(|| a.sudo_group.clone()),
            allowed_groups: a.allowed_groups.clone(),
            retire_grace: a.retire_grace,
            retire_confirmations: a.retire_confirmations,
            max_retire_fraction: a.max_retire_fraction,
            remove_home: a.remove_home,
            sudoers_file: s.paths.sudoers_file.clone(),
            reserved_names: a.reserved_names.clone(),
            primary_group: (!a.primary_group.is_empty()).then(|| a.primary_group.clone()),
        }
    }
}

/// Everything the planner reads.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    /// The desired set.
    pub desired: &'a Desired,
    /// Whether the source read was complete.
    pub complete: bool,
    /// The host.
    pub local: &'a LocalView,
    /// The ledger.
    pub ledger: &'a Ledger,
    /// The ledger binding check.
    pub binding: &'a BindingCheck,
    /// Settings.
    pub settings: &'a PlanSettings,
    /// The time of the plan.
    pub now: SystemTime,
    /// Operator override of the retire cap.
    pub allow_mass_retire: bool,
    /// The source named no principal at all (only `extra` names or the default user, if any).
    pub empty_source: bool,
}

/// One attribute of a managed account to bring back in line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "attribute", rename_all = "kebab-case")]
pub enum Change {
    /// Login shell.
    Shell {
        /// Current.
        from: PathBuf,
        /// Wanted.
        to: PathBuf,
    },
    /// Home directory field.
    Home {
        /// Current.
        from: PathBuf,
        /// Wanted.
        to: PathBuf,
    },
    /// GECOS comment.
    Comment {
        /// Current.
        from: String,
        /// Wanted.
        to: String,
    },
    /// Supplementary groups.
    Groups {
        /// To add.
        add: Vec<String>,
        /// To remove.
        remove: Vec<String>,
        /// The full resulting list (what `usermod -G` gets).
        result: Vec<String>,
    },
    /// Primary group (the passwd GID), e.g. after someone made it the sudo group.
    PrimaryGroup {
        /// Current GID.
        from: u32,
        /// Wanted GID.
        to: u32,
        /// A user private group to make first (`groupadd --gid <to>`), when it was deleted.
        #[serde(skip_serializing_if = "Option::is_none")]
        create: Option<String>,
    },
    /// The home directory is missing: made again from the skeleton (PAM's
    /// `mkhomedir_helper`, which copies symlinks as symlinks and never follows them).
    CreateHome {
        /// The home.
        path: PathBuf,
    },
}

/// What one of ssm-companion's own groups is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GroupPurpose {
    /// `accounts.sudo_group`.
    Sudo,
    /// `accounts.primary_group`.
    Primary,
}

impl GroupPurpose {
    /// The setting that names it.
    pub fn key(self) -> &'static str {
        match self {
            GroupPurpose::Sudo => "accounts.sudo_group",
            GroupPurpose::Primary => "accounts.primary_group",
        }
    }

    fn what(self) -> &'static str {
        match self {
            GroupPurpose::Sudo => "sudo group",
            GroupPurpose::Primary => "primary group",
        }
    }

    fn code(self, suffix: &str) -> &'static str {
        match (self, suffix) {
            (GroupPurpose::Sudo, "unknown") => "sudo-group-unknown",
            (GroupPurpose::Sudo, _) => "sudo-group-unmanaged",
            (GroupPurpose::Primary, "unknown") => "primary-group-unknown",
            (GroupPurpose::Primary, _) => "primary-group-unmanaged",
        }
    }
}

/// One step of a sync, in execution order.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Step {
    /// `groupadd` one of our groups (the sudo group, the shared primary group).
    CreateGroup {
        /// Group name.
        group: String,
        /// What it is for.
        purpose: GroupPurpose,
    },
    /// An interrupted `groupadd` of one of our groups completed: record it and its GID.
    ResumeGroup {
        /// Group name.
        group: String,
        /// Its GID.
        gid: u32,
        /// What it is for.
        purpose: GroupPurpose,
    },
    /// Install or rewrite the sudoers drop-in.
    WriteSudoers {
        /// File.
        path: PathBuf,
        /// The group it grants.
        group: String,
        /// Full content.
        content: String,
    },
    /// `useradd`.
    Create {
        /// Name.
        user: String,
        /// UID (= GID).
        uid: u32,
        /// Supplementary groups.
        groups: Vec<String>,
        /// Principals mapping to it.
        principals: Vec<String>,
        /// Login shell.
        shell: PathBuf,
        /// Home.
        home: PathBuf,
        /// Whether `useradd` should create the home (false: it exists and is ours).
        create_home: bool,
        /// The shared primary group (`accounts.primary_group`); absent: a private group whose
        /// GID is the UID.
        #[serde(skip_serializing_if = "Option::is_none")]
        primary_group: Option<String>,
        /// Why, when not a plain first create.
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// An interrupted create that completed: record it.
    Resume {
        /// Name.
        user: String,
        /// UID.
        uid: u32,
    },
    /// `usermod` to fix drift, or to bring a retiring account back (`reinstate`).
    Repair {
        /// Name.
        user: String,
        /// UID.
        uid: u32,
        /// What changes.
        changes: Vec<Change>,
        /// True when the account was retiring and is wanted again.
        reinstate: bool,
    },
    /// Remove all supplementary groups (and so sudo) and start the retirement clock.
    RetireStart {
        /// Name.
        user: String,
        /// UID.
        uid: u32,
        /// Groups removed.
        remove_groups: Vec<String>,
        /// The primary group put back when someone changed it (it could be the sudo group).
        #[serde(skip_serializing_if = "Option::is_none")]
        primary_group: Option<Change>,
    },
    /// Still absent: count this read.
    RetireWait {
        /// Name.
        user: String,
        /// UID.
        uid: u32,
        /// Complete reads without it, including this one.
        reads: u32,
        /// Reads needed.
        needed: u32,
        /// Grace left, in seconds.
        grace_left_secs: u64,
    },
    /// End its processes and `userdel`.
    RetireFinish {
        /// Name.
        user: String,
        /// UID.
        uid: u32,
        /// `userdel -r`.
        remove_home: bool,
    },
    /// The account is gone from the host: drop it from the ledger, keep its UID reserved.
    Forget {
        /// Name.
        user: String,
        /// UID.
        uid: u32,
        /// Why.
        reason: String,
    },
    /// Remove our sudoers drop-in.
    RemoveSudoers {
        /// File.
        path: PathBuf,
    },
}

impl Step {
    /// The action slug (JSON `action`).
    pub fn action(&self) -> &'static str {
        match self {
            Step::CreateGroup { .. } => "create-group",
            Step::ResumeGroup { .. } => "resume-group",
            Step::WriteSudoers { .. } => "write-sudoers",
            Step::Create { .. } => "create",
            Step::Resume { .. } => "resume",
            Step::Repair {
                reinstate: true, ..
            } => "reinstate",
            Step::Repair { .. } => "repair",
            Step::RetireStart { .. } => "retire-start",
            Step::RetireWait { .. } => "retire-wait",
            Step::RetireFinish { .. } => "retire-finish",
            Step::Forget { .. } => "forget",
            Step::RemoveSudoers { .. } => "remove-sudoers",
        }
    }

    /// The user (or group, or file) it is about.
    pub fn subject(&self) -> String {
        match self {
            Step::CreateGroup { group, .. } | Step::ResumeGroup { group, .. } => group.clone(),
            Step::WriteSudoers { path, .. } | Step::RemoveSudoers { path } => {
                path.display().to_string()
            }
            Step::Create { user, .. }
            | Step::Resume { user, .. }
            | Step::Repair { user, .. }
            | Step::RetireStart { user, .. }
            | Step::RetireWait { user, .. }
            | Step::RetireFinish { user, .. }
            | Step::Forget { user, .. } => user.clone(),
        }
    }

    /// The UID, for user steps.
    pub fn uid(&self) -> Option<u32> {
        match self {
            Step::Create { uid, .. }
            | Step::Resume { uid, .. }
            | Step::Repair { uid, .. }
            | Step::RetireStart { uid, .. }
            | Step::RetireWait { uid, .. }
            | Step::RetireFinish { uid, .. }
            | Step::Forget { uid, .. } => Some(*uid),
            _ => None,
        }
    }

    /// True when applying it changes the host or the ledger's account set (everything but
    /// counting another read of a retiring account).
    pub fn is_change(&self) -> bool {
        !matches!(self, Step::RetireWait { .. })
    }
}

/// Why a wanted or managed account is left alone this cycle (stable slugs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SkipReason {
    /// The account exists and ssm-companion did not create it: fine for Run As, never touched.
    ExistsUnmanaged,
    /// Every principal for it is scoped to other host groups.
    OutOfScope,
    /// A group of that name exists (useradd would fail; we never adopt groups).
    GroupNameTaken,
    /// `<home_base>/<name>` exists and is not ours.
    HomeConflict,
    /// No free UID in the range.
    UidExhausted,
    /// A managed account's UID changed outside ssm-companion, or it moved out of the local files.
    ManagedAccountChanged,
    /// Retirement waits for a complete read / a verified ledger.
    RetireBlocked,
    /// More retirements than the cap allows in one cycle.
    RetireCapped,
    /// NSS could not answer for the name (a directory timing out): nothing is decided on it.
    LookupFailed,
    /// The ledger entry cannot be ours (root, UID 0, a UID outside `uid_range` or below
    /// `UID_MIN`, a name we would refuse): it is never acted on.
    LedgerEntryInvalid,
    /// `accounts.primary_group` cannot be used (it exists and is not ours, or NSS cannot tell):
    /// no account is created until it can.
    PrimaryGroupUnusable,
}

/// A name left alone, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Skip {
    /// Name.
    pub user: String,
    /// Stable slug.
    pub reason: SkipReason,
    /// Human detail.
    pub detail: String,
    /// Principals asking for it (empty for ledger-only accounts).
    pub principals: Vec<String>,
}

/// Something the operator should know about the whole sync.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Notice {
    /// Stable slug.
    pub code: &'static str,
    /// Human text.
    pub message: String,
}

pub use crate::state::accounts_status::Hold;

/// The result of planning.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// Steps in execution order.
    pub steps: Vec<Step>,
    /// Names left alone.
    pub skipped: Vec<Skip>,
    /// Refused values.
    pub rejections: Vec<Rejection>,
    /// Notices.
    pub notices: Vec<Notice>,
    /// Safety stops holding back changes (a capped or blocked retirement, an unverified ledger):
    /// while any is present the host is not converged.
    pub holds: Vec<Hold>,
    /// The source read was complete.
    pub complete: bool,
    /// Retirements and group removals were allowed this cycle.
    pub destructive_allowed: bool,
    /// Current principals of wanted, managed accounts (recorded in the ledger by apply).
    #[serde(skip)]
    pub principals: BTreeMap<String, BTreeSet<String>>,
}

impl Plan {
    /// The plan of a sync that stopped after an unchanged read: nothing to do.
    pub fn nothing() -> Self {
        Self {
            steps: Vec::new(),
            skipped: Vec::new(),
            rejections: Vec::new(),
            notices: Vec::new(),
            holds: Vec::new(),
            complete: true,
            destructive_allowed: false,
            principals: BTreeMap::new(),
        }
    }

    /// True when some step changes something.
    pub fn has_changes(&self) -> bool {
        self.steps.iter().any(Step::is_change)
    }

    /// True when the host does not match the source after this plan: a change to make, or one
    /// held back by a safety stop (what `plan --detailed-exitcode` reports as 2).
    pub fn pending(&self) -> bool {
        self.has_changes() || !self.holds.is_empty()
    }
}

/// FNV-1a, 64-bit: a stable hash (not for security) so a name maps to the same UID everywhere.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The first UID tried for `name` within `range` (inclusive).
pub fn preferred_uid(name: &str, range: [u32; 2]) -> u32 {
    let size = u64::from(range[1] - range[0]) + 1;
    // The remainder is below `size`, which fits in u32 because the range does.
    range[0] + u32::try_from(fnv1a(name) % size).unwrap_or(0)
}

/// UIDs never handed out (nobody, and -1 as 16-bit).
const NEVER: [u32; 2] = [65534, 65535];

/// The primary group accounts get this cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Primary {
    /// A private group per account (GID = UID).
    Private,
    /// The shared group, with its GID when it exists already.
    Shared {
        /// Name.
        name: String,
        /// GID, unless it is created in this plan.
        gid: Option<u32>,
    },
    /// The shared group cannot be used this cycle.
    Unusable,
}

struct Planner<'a> {
    i: PlanInput<'a>,
    destructive: bool,
    primary: Primary,
    allocated: BTreeSet<u32>,
    reserved: BTreeMap<u32, &'a str>,
    available_groups: BTreeSet<String>,
    front: Vec<Step>,
    users: Vec<Step>,
    retire_start: Vec<Step>,
    retire: Vec<Step>,
    back: Vec<Step>,
    skipped: Vec<Skip>,
    rejections: Vec<Rejection>,
    notices: Vec<Notice>,
    holds: Vec<Hold>,
    principals: BTreeMap<String, BTreeSet<String>>,
}

/// Plans one sync.
pub fn plan(i: PlanInput<'_>) -> Plan {
    // A foreign ledger has been rebound (its entries marked inherited); an unverifiable one
    // (no instance id to compare now) retires nothing.
    let destructive = i.complete && !matches!(i.binding, BindingCheck::Unverified(_));
    let mut p = Planner {
        i,
        destructive,
        primary: Primary::Private,
        allocated: BTreeSet::new(),
        reserved: i.ledger.reserved_uids(),
        available_groups: BTreeSet::new(),
        front: Vec::new(),
        users: Vec::new(),
        retire_start: Vec::new(),
        retire: Vec::new(),
        back: Vec::new(),
        skipped: Vec::new(),
        rejections: i.desired.rejections.clone(),
        notices: Vec::new(),
        holds: Vec::new(),
        principals: BTreeMap::new(),
    };
    p.global_notices();
    p.groups_and_sudo();
    // Ledger entries that cannot be ours are never acted on, wanted or not.
    let mut invalid = BTreeSet::new();
    for (name, m) in &i.ledger.accounts {
        if let Some(problem) = p.ledger_entry_problem(name, m) {
            let principals = i
                .desired
                .accounts
                .get(name)
                .map(|w| w.principals.clone())
                .unwrap_or_default();
            let detail = format!(
                "the ledger entry for `{name}` cannot be one ssm-companion made: {problem}. It is not acted on (no create, repair, retirement or process ended). If you narrowed accounts.uid_range, widen it again; otherwise the ledger ({}) was edited: remove the entry",
                super::ledger::FILE_NAME
            );
            p.skip(name, SkipReason::LedgerEntryInvalid, detail, &principals);
            p.hold(
                "ledger-entry-invalid",
                Some(name),
                "ledger entries that cannot be ones ssm-companion made are never acted on (each skip says why); widen accounts.uid_range again if you narrowed it, else remove the entries from the ledger",
            );
            invalid.insert(name.as_str());
        }
    }
    let mut wanted = BTreeSet::new();
    for (name, want) in &i.desired.accounts {
        if invalid.contains(name.as_str()) {
            continue;
        }
        // A managed account whose name is reserved now (a newer built-in list, a package's
        // sysusers.d file, the operator's list) is refused and retired like a departure.
        if i.ledger.accounts.contains_key(name)
            && let Some(why) = p.reserved(name)
        {
            p.reject(
                name,
                &want.principals,
                RejectReason::ReservedName,
                format!("{why}; the account ssm-companion made under that name is retired"),
            );
            continue;
        }
        wanted.insert(name.as_str());
        p.wanted(name, &want.principals, &want.groups);
    }
    for (name, m) in &i.ledger.accounts {
        if !wanted.contains(name.as_str()) && !invalid.contains(name.as_str()) {
            p.unwanted(name, m);
        }
    }
    for (name, principals) in &i.desired.out_of_scope {
        if !i.ledger.accounts.contains_key(name) {
            p.skip(name, SkipReason::OutOfScope, "every principal for it is scoped to host groups this host is not in (accounts.host_groups)", principals);
        }
    }
    p.apply_cap();
    p.finish()
}

impl<'a> Planner<'a> {
    fn skip(
        &mut self,
        user: &str,
        reason: SkipReason,
        detail: impl Into<String>,
        principals: &BTreeSet<String>,
    ) {
        self.skipped.push(Skip {
            user: user.to_string(),
            reason,
            detail: detail.into(),
            principals: principals.iter().cloned().collect(),
        });
    }

    fn notice(&mut self, code: &'static str, message: String) {
        self.notices.push(Notice { code, message });
    }

    /// Why `name` belongs to the system, now or later (see [`crate::names::reserved_why`]).
    fn reserved(&self, name: &str) -> Option<String> {
        crate::names::reserved_why(
            name,
            &self.i.settings.reserved_names,
            &self.i.local.sysusers,
        )
    }

    /// The change that puts an account's primary group back (`None` when it is right, or when
    /// the wanted group is not known this cycle). A private group that was deleted is made
    /// again first, when its name and GID are free.
    fn primary_change(&mut self, name: &str, uid: u32, current: u32) -> Option<Change> {
        let local = self.i.local;
        match &self.primary {
            Primary::Private if current == uid => None,
            Primary::Private if local.group_by_gid(uid).is_some() => Some(Change::PrimaryGroup {
                from: current,
                to: uid,
                create: None,
            }),
            Primary::Private => {
                // No group has the GID (the branch above); the name must be free too.
                if matches!(local.group_gid(name), Ok(None)) && !local.nss.gid_exists(uid) {
                    Some(Change::PrimaryGroup {
                        from: current,
                        to: uid,
                        create: Some(name.to_string()),
                    })
                } else {
                    let detail = format!(
                        "`{name}` has primary gid {current}, not its own group's {uid}, and that group cannot be made again (its name or gid {uid} is taken): whatever gid {current} grants is not removed. Fix it with usermod --gid"
                    );
                    self.notice("primary-group-drift", detail);
                    self.hold(
                        "primary-group-drift",
                        Some(name),
                        "a primary group that cannot be put back keeps whatever it grants (each notice says which); fix it with usermod --gid",
                    );
                    None
                }
            }
            Primary::Shared { gid: Some(g), .. } if current != *g => Some(Change::PrimaryGroup {
                from: current,
                to: *g,
                create: None,
            }),
            Primary::Shared { .. } | Primary::Unusable => None,
        }
    }

    /// Why a ledger entry cannot be one we made (a ledger edited by hand or by an attacker, or
    /// one from an older, looser build): such an entry must never drive a `usermod`, a kill or
    /// a `userdel`.
    fn ledger_entry_problem(&self, name: &str, m: &ManagedAccount) -> Option<String> {
        let [lo, hi] = self.i.settings.uid_range;
        let uid_min = self.i.local.uid_min;
        if let Err(e) = crate::names::check_syntax(name) {
            return Some(format!("its name is not one ssm-companion accepts ({e})"));
        }
        if crate::names::is_reserved(name) {
            return Some(format!("`{name}` is never managed"));
        }
        if m.uid == 0 {
            return Some("its uid is 0".into());
        }
        if m.uid < uid_min {
            return Some(format!(
                "its uid {} is below UID_MIN {uid_min}: a system account",
                m.uid
            ));
        }
        if let Some(u) = self.i.local.users.get(name)
            && u.uid < uid_min
        {
            return Some(format!(
                "the host's `{name}` is a system account (uid {} below UID_MIN {uid_min})",
                u.uid
            ));
        }
        if !(lo..=hi).contains(&m.uid) {
            return Some(format!(
                "its uid {} is outside accounts.uid_range [{lo}, {hi}]",
                m.uid
            ));
        }
        None
    }

    fn global_notices(&mut self) {
        if !self.i.complete {
            self.notice(
                "incomplete-read",
                "the source read was incomplete: accounts may be created and repaired, but nothing is retired and no group is removed this cycle".into(),
            );
        }
        match self.i.binding {
            BindingCheck::Unverified(why) => {
                let message = format!("the ledger's machine binding cannot be verified ({why}): nothing is retired and no group is removed this cycle");
                self.notice("ledger-unverified", message.clone());
                self.hold("ledger-unverified", None, message);
            }
            BindingCheck::Foreign(why) => self.notice(
                "ledger-foreign",
                format!("the ledger was written on another machine ({why}): a copy was set aside and its entries are kept as inherited, managed but never deleted automatically (see `accounts apply --trust-inherited`)"),
            ),
            BindingCheck::Same => {}
        }
        if !self.i.local.malformed.is_empty() {
            self.notice(
                "malformed-account-files",
                format!(
                    "{} line(s) of the account files could not be parsed and were ignored (run `pwck -r`): {}",
                    self.i.local.malformed.len(),
                    self.i.local.malformed.join(" | ")
                ),
            );
        }
    }

    /// Decides whether one of our own groups can be used this cycle: created when missing,
    /// resumed when its creation was interrupted, refused when it exists and is not ours (or was
    /// replaced). `Some(gid)` when usable (`gid` is `None` while it is created in this plan).
    fn own_group(&mut self, g: &str, purpose: GroupPurpose) -> Option<Option<u32>> {
        let what = purpose.what();
        let key = purpose.key();
        let ours = self.i.ledger.groups.get(g);
        match (self.i.local.group_gid(g), ours) {
            (Err(e), _) => {
                let consequence = match purpose {
                    GroupPurpose::Sudo => "nobody is granted sudo this cycle",
                    GroupPurpose::Primary => "no account is created this cycle",
                };
                self.notice(
                    purpose.code("unknown"),
                    format!("cannot tell whether the {what} `{g}` exists ({e}); {consequence}"),
                );
                None
            }
            (Ok(None), _) => {
                self.front.push(Step::CreateGroup {
                    group: g.to_string(),
                    purpose,
                });
                Some(None)
            }
            (Ok(Some(gid)), Some(m)) if m.gid.is_some_and(|ours| ours != gid) => {
                let consequence = match purpose {
                    GroupPurpose::Sudo => "nobody gets sudo through it",
                    GroupPurpose::Primary => "no account is created with it",
                };
                self.notice(
                    purpose.code("unmanaged"),
                    format!(
                        "the {what} `{g}` now has gid {gid}, not the gid {} ssm-companion created it with: it was replaced outside ssm-companion, so {consequence}. Remove it (ssm-companion then creates it again) or pick another {key}",
                        m.gid.unwrap_or_default()
                    ),
                );
                None
            }
            (Ok(Some(gid)), Some(m)) => {
                if m.state == GroupState::Creating || m.gid.is_none() {
                    self.front.push(Step::ResumeGroup {
                        group: g.to_string(),
                        gid,
                        purpose,
                    });
                }
                Some(Some(gid))
            }
            (Ok(Some(gid)), None) => {
                let consequence = match purpose {
                    GroupPurpose::Sudo => {
                        "granting sudo through it would change the rights of its existing members, so nobody gets sudo"
                    }
                    GroupPurpose::Primary => {
                        "making it every account's primary group would give them its members' files and its members theirs, so no account is created"
                    }
                };
                self.notice(
                    purpose.code("unmanaged"),
                    format!(
                        "the {what} `{g}` (gid {gid}) already exists and was not created by ssm-companion; {consequence}. Name a group that does not exist yet in {key}"
                    ),
                );
                None
            }
        }
    }

    /// Decides whether the sudo group is usable (ours), which allowlisted groups exist, and
    /// what happens to the sudoers drop-in; and which primary group accounts get.
    fn groups_and_sudo(&mut self) {
        let s = self.i.settings;
        let local = self.i.local;
        self.primary = match &s.primary_group {
            None => Primary::Private,
            Some(g) => match self.own_group(g, GroupPurpose::Primary) {
                Some(gid) => Primary::Shared {
                    name: g.clone(),
                    gid,
                },
                None => Primary::Unusable,
            },
        };
        let mut sudo_enabled = false;
        if let Some(g) = &s.sudo_group {
            sudo_enabled = self.own_group(g, GroupPurpose::Sudo).is_some();
            if sudo_enabled && !local.sudoers_included {
                self.notice(
                    "sudoers-not-included",
                    format!(
                        "the main sudoers file does not include the directory of {}: the sudo grant has no effect until it does (`@includedir {}`)",
                        s.sudoers_file.display(),
                        s.sudoers_file.parent().unwrap_or(Path::new("/")).display()
                    ),
                );
            }
        }
        for g in &s.allowed_groups {
            let ok = if Some(g) == s.sudo_group.as_ref() {
                sudo_enabled
            } else {
                // A group NSS cannot answer for is not handed out this cycle.
                matches!(local.group_gid(g), Ok(Some(_)))
            };
            if ok {
                self.available_groups.insert(g.clone());
            }
        }
        let wanted_missing: BTreeSet<&String> = self
            .i
            .desired
            .accounts
            .values()
            .flat_map(|w| &w.groups)
            .filter(|g| !self.available_groups.contains(*g) && Some(*g) != s.sudo_group.as_ref())
            .collect();
        for g in wanted_missing {
            self.notice(
                "group-missing",
                format!("the allowlisted group `{g}` does not exist on this host; accounts asking for it are made without it"),
            );
        }

        // The drop-in.
        let ours = local
            .sudoers
            .as_deref()
            .map(|c| c.starts_with(SUDOERS_HEADER));
        let desired = s
            .sudo_group
            .as_ref()
            .filter(|_| sudo_enabled)
            .map(|g| sudoers_content(g));
        match (ours, desired) {
            (Some(false), _) => self.notice(
                "sudoers-foreign",
                format!(
                    "{} exists but was not written by ssm-companion; it is left alone and no sudo is granted through it",
                    s.sudoers_file.display()
                ),
            ),
            (_, Some(content)) if local.sudoers.as_deref() != Some(content.as_str()) => {
                self.front.push(Step::WriteSudoers {
                    path: s.sudoers_file.clone(),
                    group: s.sudo_group.clone().unwrap_or_default(),
                    content,
                })
            }
            (Some(true), None) => self.back.push(Step::RemoveSudoers {
                path: s.sudoers_file.clone(),
            }),
            _ => {}
        }
    }

    /// The supplementary groups an account should have.
    fn target_groups(&self, want: &BTreeSet<String>) -> BTreeSet<String> {
        want.intersection(&self.available_groups).cloned().collect()
    }

    fn reject(
        &mut self,
        name: &str,
        principals: &BTreeSet<String>,
        reason: RejectReason,
        detail: String,
    ) {
        for p in principals {
            self.rejections.push(Rejection {
                principal: p.clone(),
                value: name.to_string(),
                reason,
                detail: detail.clone(),
            });
        }
    }

    fn wanted(
        &mut self,
        name: &str,
        principals: &BTreeSet<String>,
        want_groups: &BTreeSet<String>,
    ) {
        let local = self.i.local;
        let managed = self.i.ledger.accounts.get(name);
        let existing = match local.user(name) {
            Ok(e) => e,
            Err(e) => {
                return self.skip(
                    name,
                    SkipReason::LookupFailed,
                    format!("{e}; left alone this cycle"),
                    principals,
                );
            }
        };

        // Names the host reserves, checked before anything else, managed or not.
        if let Some(u) = &existing
            // Above UID_MAX only counts in the local files (nobody); directory users often
            // have large UIDs (SSSD ID mapping) and are simply unmanaged.
            && (u.uid < local.uid_min || (u.uid > local.uid_max && u.entry.is_some()))
            && managed.is_none()
        {
            return self.reject(name, principals, RejectReason::SystemAccount, format!(
                "`{name}` is a system account (uid {} is outside UID_MIN..UID_MAX {}..{}); pick another name for the tag",
                u.uid, local.uid_min, local.uid_max
            ));
        }
        let is_own_group = self.i.settings.sudo_group.as_deref() == Some(name)
            || self.i.settings.primary_group.as_deref() == Some(name)
            || self.i.ledger.groups.contains_key(name);
        if is_own_group {
            return self.reject(name, principals, RejectReason::OwnGroup, format!(
                "`{name}` is the name of a group ssm-companion manages; pick another name for the tag"
            ));
        }

        let Some(m) = managed else {
            return self.create_new(name, principals, want_groups, existing.is_some());
        };
        self.principals.insert(name.to_string(), principals.clone());
        match existing {
            None => self.recreate(name, m, principals, want_groups),
            Some(u) if u.uid != m.uid => self.skip(
                name,
                SkipReason::ManagedAccountChanged,
                format!(
                    "the ledger says uid {} but the host has uid {}: it was changed outside ssm-companion and is left alone until an operator restores the uid or deletes the account",
                    m.uid, u.uid
                ),
                principals,
            ),
            Some(u) => {
                let Some(entry) = u.entry else {
                    return self.skip(name, SkipReason::ManagedAccountChanged, "the account is no longer in the local files (another NSS source answers for it); left alone", principals);
                };
                if m.state == AccountState::Creating {
                    self.users.push(Step::Resume { user: name.to_string(), uid: m.uid });
                }
                let target = self.target_groups(want_groups);
                let changes = self.drift(name, m.uid, &entry, &target);
                let reinstate = matches!(m.state, AccountState::Retiring | AccountState::Deleting);
                if reinstate || !changes.is_empty() {
                    self.users.push(Step::Repair { user: name.to_string(), uid: m.uid, changes, reinstate });
                }
            }
        }
    }

    fn create_new(
        &mut self,
        name: &str,
        principals: &BTreeSet<String>,
        want_groups: &BTreeSet<String>,
        exists: bool,
    ) {
        let local = self.i.local;
        if exists {
            return self.skip(name, SkipReason::ExistsUnmanaged, "the account exists and was not created by ssm-companion: Run As works, and it is never modified, given groups or sudo, or removed", principals);
        }
        let group = match local.group_gid(name) {
            Ok(g) => g,
            Err(e) => {
                return self.skip(
                    name,
                    SkipReason::LookupFailed,
                    format!("{e}; not created this cycle"),
                    principals,
                );
            }
        };
        if let Some(gid) = group {
            if gid < local.gid_min {
                return self.reject(name, principals, RejectReason::SystemAccount, format!(
                    "`{name}` is a system group (gid {gid} < GID_MIN {}); pick another name for the tag", local.gid_min
                ));
            }
            return self.skip(name, SkipReason::GroupNameTaken, format!(
                "a group named `{name}` (gid {gid}) already exists and would become the user's group; ssm-companion does not adopt groups. Remove the group or pick another name"
            ), principals);
        }
        if let Some(why) = self.reserved(name) {
            return self.reject(
                name,
                principals,
                RejectReason::ReservedName,
                format!("{why}; pick another name for the tag"),
            );
        }
        if self.primary == Primary::Unusable {
            return self.skip(
                name,
                SkipReason::PrimaryGroupUnusable,
                "accounts.primary_group cannot be used (see the notice); not created this cycle",
                principals,
            );
        }
        let Some(uid) = self.allocate(name) else {
            return self.skip(
                name,
                SkipReason::UidExhausted,
                format!(
                    "no free UID left in accounts.uid_range {:?}; widen the range",
                    self.i.settings.uid_range
                ),
                principals,
            );
        };
        let Some(create_home) = self.home_ok(name, uid, principals) else {
            return;
        };
        self.allocated.insert(uid);
        self.users.push(Step::Create {
            user: name.to_string(),
            uid,
            groups: self.target_groups(want_groups).into_iter().collect(),
            principals: principals.iter().cloned().collect(),
            shell: self.i.settings.shell.clone(),
            home: self.home(name),
            create_home,
            primary_group: self.shared_primary(),
            note: None,
        });
    }

    /// The shared primary group's name, when accounts get one.
    fn shared_primary(&self) -> Option<String> {
        match &self.primary {
            Primary::Shared { name, .. } => Some(name.clone()),
            Primary::Private | Primary::Unusable => None,
        }
    }

    /// A ledger account missing from the host while wanted: create it again with its UID.
    fn recreate(
        &mut self,
        name: &str,
        m: &ManagedAccount,
        principals: &BTreeSet<String>,
        want_groups: &BTreeSet<String>,
    ) {
        let note = match m.state {
            AccountState::Creating => "finishing an interrupted create",
            _ => "it was deleted outside ssm-companion; recreating it with its UID",
        };
        if self.i.local.id_taken_by_other(m.uid, name) {
            return self.skip(name, SkipReason::ManagedAccountChanged, format!(
                "its uid {} is now used by another account or group; left alone until an operator frees it", m.uid
            ), principals);
        }
        if !matches!(self.i.local.group_gid(name), Ok(None)) {
            return self.skip(name, SkipReason::GroupNameTaken, format!(
                "a group named `{name}` exists without the user; remove it so the account can be recreated"
            ), principals);
        }
        if self.primary == Primary::Unusable {
            return self.skip(
                name,
                SkipReason::PrimaryGroupUnusable,
                "accounts.primary_group cannot be used (see the notice); not recreated this cycle",
                principals,
            );
        }
        let Some(create_home) = self.home_ok(name, m.uid, principals) else {
            return;
        };
        self.users.push(Step::Create {
            user: name.to_string(),
            uid: m.uid,
            groups: self.target_groups(want_groups).into_iter().collect(),
            principals: principals.iter().cloned().collect(),
            shell: self.i.settings.shell.clone(),
            home: self.home(name),
            create_home,
            primary_group: self.shared_primary(),
            note: Some(note.to_string()),
        });
    }

    fn home(&self, name: &str) -> PathBuf {
        self.i.settings.home_base.join(name)
    }

    /// `Some(create_home)` when the home is usable for `uid`; otherwise records a skip.
    fn home_ok(&mut self, name: &str, uid: u32, principals: &BTreeSet<String>) -> Option<bool> {
        let home = self.home(name);
        let problem = match self.i.local.homes.get(name).unwrap_or(&HomeState::Missing) {
            HomeState::Missing => return Some(true),
            HomeState::Dir { uid: owner } if *owner == uid => return Some(false),
            HomeState::Dir { uid: owner } => format!(
                "{} exists and is owned by uid {owner}, not {uid}",
                home.display()
            ),
            HomeState::Symlink => format!("{} is a symbolic link (never followed)", home.display()),
            HomeState::NotADirectory => format!("{} exists and is not a directory", home.display()),
            HomeState::Unreadable(e) => format!("{} cannot be inspected: {e}", home.display()),
        };
        self.skip(
            name,
            SkipReason::HomeConflict,
            format!("{problem}; move it away to let the account be created"),
            principals,
        );
        None
    }

    fn allocate(&self, name: &str) -> Option<u32> {
        let [lo, hi] = self.i.settings.uid_range;
        let free = |uid: u32| {
            uid != 0
                && !NEVER.contains(&uid)
                && !self.allocated.contains(&uid)
                && self.reserved.get(&uid).is_none_or(|owner| *owner == name)
                && !self.i.local.id_taken_by_other(uid, name)
        };
        if let Some(t) = self.i.ledger.tombstones.get(name)
            && free(t.uid)
        {
            return Some(t.uid);
        }
        let size = u64::from(hi - lo) + 1;
        let start = u64::from(preferred_uid(name, [lo, hi]) - lo);
        (0..size)
            .map(|i| lo + u32::try_from((start + i) % size).unwrap_or(0))
            .find(|&uid| free(uid))
    }

    /// What of a wanted, managed account differs from what ssm-companion made: shell, home
    /// field, comment, primary group, supplementary groups, and the home directory itself (made
    /// again when missing; reported, never touched, when it belongs to someone else).
    fn drift(
        &mut self,
        name: &str,
        uid: u32,
        e: &super::local::PasswdEntry,
        target: &BTreeSet<String>,
    ) -> Vec<Change> {
        let s = self.i.settings;
        let mut changes = Vec::new();
        if e.shell != s.shell {
            changes.push(Change::Shell {
                from: e.shell.clone(),
                to: s.shell.clone(),
            });
        }
        let home = self.home(name);
        if e.home != home {
            changes.push(Change::Home {
                from: e.home.clone(),
                to: home,
            });
        }
        if e.gecos != COMMENT {
            changes.push(Change::Comment {
                from: e.gecos.clone(),
                to: COMMENT.into(),
            });
        }
        let current = self.i.local.member_of(name);
        let add: Vec<String> = target.difference(&current).cloned().collect();
        let remove: Vec<String> = if self.destructive {
            current.difference(target).cloned().collect()
        } else {
            Vec::new()
        };
        if !add.is_empty() || !remove.is_empty() {
            let result = current
                .union(target)
                .filter(|g| !remove.contains(g))
                .cloned()
                .collect();
            changes.push(Change::Groups {
                add,
                remove,
                result,
            });
        }
        if let Some(c) = self.primary_change(name, uid, e.gid) {
            changes.push(c);
        }
        let home = self.home(name);
        let foreign = match self.i.local.homes.get(name) {
            Some(HomeState::Missing) => {
                changes.push(Change::CreateHome { path: home.clone() });
                None
            }
            Some(HomeState::Dir { uid: owner }) if *owner != uid => {
                Some(format!("it is owned by uid {owner}"))
            }
            Some(HomeState::Symlink) => Some("it is a symbolic link".to_string()),
            Some(HomeState::NotADirectory) => Some("it is not a directory".to_string()),
            Some(HomeState::Unreadable(e)) => {
                self.notice(
                    "home-unreadable",
                    format!("the home {} of `{name}` cannot be inspected ({e}); checked again next cycle", home.display()),
                );
                None
            }
            Some(HomeState::Dir { .. }) | None => None,
        };
        if let Some(why) = foreign {
            let detail = format!(
                "the home {} of `{name}` (uid {uid}) is not the account's: {why}. Sessions start there (the agent sets HOME=/home/<user>), so whoever owns it controls the account's startup files; ssm-companion never changes it. Move it aside (it is then made again from the skeleton) or give it back with chown -R {uid}",
                home.display()
            );
            self.notice("home-foreign", detail);
            self.hold(
                "home-foreign",
                Some(name),
                "homes that belong to someone else are never touched, and sessions start there (each notice says whose); move each aside (it is then made again) or give it back with chown -R",
            );
        }
        changes
    }

    fn unwanted(&mut self, name: &str, m: &ManagedAccount) {
        let local = self.i.local;
        let none = BTreeSet::new();
        let u = match local.user(name) {
            Ok(Some(u)) => u,
            Ok(None) => {
                return self.retire.push(Step::Forget {
                    user: name.to_string(),
                    uid: m.uid,
                    reason: match m.state {
                        AccountState::Creating => "an interrupted create never happened".into(),
                        AccountState::Deleting => "an interrupted delete completed".into(),
                        _ => "the account was deleted outside ssm-companion".into(),
                    },
                });
            }
            Err(e) => {
                return self.skip(
                    name,
                    SkipReason::LookupFailed,
                    format!("{e}; left alone this cycle"),
                    &none,
                );
            }
        };
        let Some(entry) = u.entry.filter(|_| u.uid == m.uid) else {
            return self.skip(name, SkipReason::ManagedAccountChanged, format!(
                "no longer wanted, but the ledger says uid {} and the host has uid {} (or it left the local files): not retired, left alone", m.uid, u.uid
            ), &none);
        };
        if !self.destructive {
            let why = if self.i.complete {
                "the ledger binding is unverified"
            } else {
                "the source read was incomplete"
            };
            let detail =
                format!("absent from the source, but {why}: nothing is retired this cycle");
            if self.i.complete {
                self.hold("ledger-unverified", Some(name), detail.clone());
            }
            return self.skip(name, SkipReason::RetireBlocked, detail, &none);
        }
        let s = self.i.settings;
        match m.state {
            AccountState::Creating | AccountState::Active => {
                let remove_groups: Vec<String> = local.member_of(name).into_iter().collect();
                // No path to sudo may stay: not through a supplementary group, and not through
                // a primary group someone changed (to the sudo group, say).
                let primary_group = self.primary_change(name, m.uid, entry.gid);
                self.retire_start.push(Step::RetireStart {
                    user: name.to_string(),
                    uid: m.uid,
                    remove_groups,
                    primary_group,
                });
            }
            AccountState::Retiring => {
                let current = local.member_of(name);
                let mut changes = Vec::new();
                if !current.is_empty() {
                    changes.push(Change::Groups {
                        add: vec![],
                        remove: current.into_iter().collect(),
                        result: vec![],
                    });
                }
                changes.extend(self.primary_change(name, m.uid, entry.gid));
                if !changes.is_empty() {
                    self.users.push(Step::Repair {
                        user: name.to_string(),
                        uid: m.uid,
                        changes,
                        reinstate: false,
                    });
                }
                let reads = m.missing_reads.saturating_add(1);
                let since = m.missing_since.unwrap_or(m.since);
                let elapsed = self.i.now.duration_since(since).unwrap_or_default();
                if reads < s.retire_confirmations || elapsed < s.retire_grace {
                    return self.retire.push(Step::RetireWait {
                        user: name.to_string(),
                        uid: m.uid,
                        reads,
                        needed: s.retire_confirmations,
                        grace_left_secs: s.retire_grace.saturating_sub(elapsed).as_secs(),
                    });
                }
                if self.inherited_blocks(name, m) {
                    return;
                }
                let remove_home = self.remove_home_ok(name, m.uid, &entry);
                self.retire.push(Step::RetireFinish {
                    user: name.to_string(),
                    uid: m.uid,
                    remove_home,
                });
            }
            AccountState::Deleting => {
                // An interrupted delete is finished, but never for an inherited entry: a ledger
                // copied from another machine can carry any state.
                if self.inherited_blocks(name, m) {
                    return;
                }
                let remove_home = self.remove_home_ok(name, m.uid, &entry);
                self.retire.push(Step::RetireFinish {
                    user: name.to_string(),
                    uid: m.uid,
                    remove_home,
                });
            }
        }
    }

    /// True (with a skip recorded) when `m` came with a ledger from another machine: such an
    /// account is never deleted automatically.
    fn inherited_blocks(&mut self, name: &str, m: &ManagedAccount) -> bool {
        let Some(from) = &m.inherited_from else {
            return false;
        };
        let detail = format!(
            "its access is removed, but it was inherited with a ledger from {from} (an image or a copied disk) and is never deleted automatically: delete it with userdel, or run `ssm-companion accounts apply --trust-inherited` once"
        );
        self.hold("retire-blocked", Some(name), detail.clone());
        self.skip(name, SkipReason::RetireBlocked, detail, &BTreeSet::new());
        true
    }

    /// `userdel --remove` only when asked for and when it can only remove the account's own
    /// home: the passwd field is `<home_base>/<name>` and that path is a real directory (not a
    /// symlink) owned by the account. Otherwise the home is kept, with a notice.
    fn remove_home_ok(&mut self, name: &str, uid: u32, entry: &super::local::PasswdEntry) -> bool {
        if !self.i.settings.remove_home {
            return false;
        }
        let home = self.home(name);
        let ok =
            entry.home == home && self.i.local.homes.get(name) == Some(&HomeState::Dir { uid });
        if !ok {
            self.notice(
                "home-kept",
                format!(
                    "the home of `{name}` is kept although accounts.remove_home is set: its passwd home is {} and {} is not a plain directory owned by uid {uid}",
                    entry.home.display(),
                    home.display()
                ),
            );
        }
        ok
    }

    /// Records that `user` (or, with `None`, the whole ledger) is held back by the safety stop
    /// `code`; the first message of a code describes it.
    fn hold(&mut self, code: &'static str, user: Option<&str>, message: impl Into<String>) {
        let i = match self.holds.iter().position(|h| h.code == code) {
            Some(i) => i,
            None => {
                self.holds.push(Hold {
                    code: code.to_string(),
                    users: Vec::new(),
                    message: message.into(),
                });
                self.holds.len() - 1
            }
        };
        if let Some(u) = user {
            self.holds[i].users.push(u.to_string());
        }
    }

    /// The blast-radius limits on starting retirements: at most `max_retire_fraction` of the
    /// managed accounts per cycle (at least one), and none at all when the source named no
    /// principal while accounts are managed (an empty answer is more likely an outage, a wrong
    /// account or a broken publisher than everyone leaving). Both are lifted by
    /// `--allow-mass-retire`.
    fn apply_cap(&mut self) {
        if self.i.allow_mass_retire || self.retire_start.is_empty() {
            return;
        }
        let f = self.i.settings.max_retire_fraction;
        let managed = self
            .i
            .ledger
            .accounts
            .values()
            .filter(|a| matches!(a.state, AccountState::Active | AccountState::Creating))
            .count();
        // floor(f × managed), but at least one: a single departure is never blocked.
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let cap = ((f * managed as f64).floor() as usize).max(1);
        let n = self.retire_start.len();
        let (code, detail, message) = if self.i.empty_source {
            (
                "empty-source",
                "the source named no principal at all",
                format!(
                    "the source answered with no principal at all while {managed} account(s) are managed: none is retired (an empty answer is more likely an outage, the wrong AWS account or a broken source than everyone leaving). If everyone really left, run `ssm-companion accounts apply --allow-mass-retire` once"
                ),
            )
        } else if f < 1.0 && n > cap {
            (
                "retire-capped",
                "part of a mass retirement above accounts.max_retire_fraction",
                format!(
                    "{n} of {managed} managed accounts vanished from the source at once, more than accounts.max_retire_fraction = {f} allows ({cap}); none is retired. If this is intended, run `ssm-companion accounts apply --allow-mass-retire` once"
                ),
            )
        } else {
            return;
        };
        self.notice(code, message.clone());
        let none = BTreeSet::new();
        for s in std::mem::take(&mut self.retire_start) {
            let user = s.subject();
            self.skip(&user, SkipReason::RetireCapped, detail, &none);
            self.hold(code, Some(&user), message.clone());
        }
    }

    fn finish(self) -> Plan {
        let mut steps = self.front;
        steps.extend(self.users);
        steps.extend(self.retire_start);
        steps.extend(self.retire);
        steps.extend(self.back);
        let mut skipped = self.skipped;
        skipped.sort();
        let mut rejections = self.rejections;
        rejections.sort();
        let mut notices = self.notices;
        notices.sort();
        let mut holds = self.holds;
        for h in &mut holds {
            h.users.sort();
            h.users.dedup();
        }
        holds.sort();
        Plan {
            steps,
            skipped,
            rejections,
            notices,
            holds,
            complete: self.i.complete,
            destructive_allowed: self.destructive,
            principals: self.principals,
        }
    }
}

/// The sudoers drop-in for `group`.
pub fn sudoers_content(group: &str) -> String {
    format!(
        "{SUDOERS_HEADER}\n# Members of `{group}` (accounts.sudo_group) may run any command as any user.\n%{group} ALL=(ALL:ALL) NOPASSWD: ALL\n"
    )
}

#[cfg(test)]
mod tests;
