//! The ledger: the accounts and groups ssm-companion created on this machine.
//!
//! Only accounts in the ledger are ever modified or removed. The ledger is bound to the machine
//! (`/etc/machine-id` and, on EC2, the instance id): a ledger that was baked into an image or
//! copied from another host is detected on load, set aside (renamed, never deleted), and not
//! trusted; its accounts are then treated as unmanaged, and only its UID reservations are kept so
//! UIDs are still never reused.
//!
//! Each mutation is recorded before it happens (`creating`, `deleting`) and after it succeeded, so
//! a crash at any step is finished or undone on the next cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::clock::serde_rfc3339;
use crate::state::{self, StateError};

/// File name of the ledger in the state directory.
pub const FILE_NAME: &str = "accounts-ledger.json";
/// The format version written by this build.
pub const VERSION: u32 = 1;

/// Lifecycle of a managed account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccountState {
    /// `useradd` is about to run or was interrupted.
    Creating,
    /// Exists and is wanted.
    Active,
    /// No longer wanted: groups and sudo removed, waiting for confirmations and the grace period.
    Retiring,
    /// `userdel` is about to run or was interrupted.
    Deleting,
}

impl AccountState {
    /// The state's name as shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountState::Creating => "creating",
            AccountState::Active => "active",
            AccountState::Retiring => "retiring",
            AccountState::Deleting => "deleting",
        }
    }
}

/// One managed account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedAccount {
    /// UID (= GID of its user private group).
    pub uid: u32,
    /// Lifecycle state.
    pub state: AccountState,
    /// Principals that mapped to it at the last complete read.
    pub principals: BTreeSet<String>,
    /// When it was first recorded.
    #[serde(with = "serde_rfc3339")]
    pub created_at: SystemTime,
    /// When `state` last changed.
    #[serde(with = "serde_rfc3339")]
    pub since: SystemTime,
    /// Complete reads in a row without this account (while retiring).
    #[serde(default)]
    pub missing_reads: u32,
    /// First complete read without it (while retiring).
    #[serde(default, with = "serde_rfc3339::option")]
    pub missing_since: Option<SystemTime>,
    /// Set when the entry came with a ledger written on another machine (a baked image): the
    /// account is managed, but never deleted automatically.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inherited_from: Option<String>,
}

/// Lifecycle of a managed group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GroupState {
    /// `groupadd` is about to run or was interrupted.
    Creating,
    /// Exists.
    Active,
}

/// A group ssm-companion created (the sudo group).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedGroup {
    /// GID once known.
    pub gid: Option<u32>,
    /// Lifecycle state.
    pub state: GroupState,
    /// When it was recorded.
    #[serde(with = "serde_rfc3339")]
    pub created_at: SystemTime,
    /// Set when the entry came with a ledger written on another machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inherited_from: Option<String>,
}

/// A name whose account was deleted: its UID stays reserved for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    /// The UID it had.
    pub uid: u32,
    /// When it was deleted or forgotten.
    #[serde(with = "serde_rfc3339")]
    pub retired_at: SystemTime,
}

/// What the ledger is bound to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// `/etc/machine-id` content.
    pub machine_id: String,
    /// EC2 instance id, when known.
    #[serde(default)]
    pub instance_id: Option<String>,
}

/// How a ledger's binding compares with this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindingCheck {
    /// Same machine.
    Same,
    /// A different machine: the ledger is not ours.
    Foreign(String),
    /// Cannot tell (no instance id now, or no machine id): trust for creates and repairs, not
    /// for removals.
    Unverified(String),
}

impl Binding {
    /// "machine-id M, instance I" for messages.
    pub fn describe(&self) -> String {
        match &self.instance_id {
            Some(i) => format!("machine-id {}, instance {i}", self.machine_id),
            None => format!("machine-id {}", self.machine_id),
        }
    }

    /// Compares the binding recorded in a ledger (`self`) with the current machine's.
    pub fn check(&self, now: &Binding) -> BindingCheck {
        if !self.machine_id.is_empty()
            && !now.machine_id.is_empty()
            && self.machine_id != now.machine_id
        {
            return BindingCheck::Foreign(format!(
                "it was written on machine-id {} and this is machine-id {}",
                self.machine_id, now.machine_id
            ));
        }
        match (&self.instance_id, &now.instance_id) {
            (Some(a), Some(b)) if a != b => {
                return BindingCheck::Foreign(format!(
                    "it was written on instance {a} and this is instance {b}"
                ));
            }
            (Some(a), None) => {
                return BindingCheck::Unverified(format!(
                    "it belongs to instance {a} and this instance's id is unknown right now (IMDS unreachable?)"
                ));
            }
            _ => {}
        }
        if self.machine_id.is_empty() || now.machine_id.is_empty() {
            return BindingCheck::Unverified("no machine-id to compare".into());
        }
        BindingCheck::Same
    }
}

/// The ledger file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// Format version.
    pub version: u32,
    /// The machine it belongs to.
    pub binding: Binding,
    /// Managed accounts by name.
    #[serde(default)]
    pub accounts: BTreeMap<String, ManagedAccount>,
    /// Managed groups by name.
    #[serde(default)]
    pub groups: BTreeMap<String, ManagedGroup>,
    /// Deleted names and their reserved UIDs.
    #[serde(default)]
    pub tombstones: BTreeMap<String, Tombstone>,
    /// UIDs a name used before it came back with another UID (its kept files may still carry
    /// them), by UID, with that name: never handed out again.
    #[serde(default)]
    pub retired_uids: BTreeMap<u32, String>,
}

impl Ledger {
    /// An empty ledger bound to `binding`.
    pub fn new(binding: Binding) -> Self {
        Self {
            version: VERSION,
            binding,
            accounts: BTreeMap::new(),
            groups: BTreeMap::new(),
            tombstones: BTreeMap::new(),
            retired_uids: BTreeMap::new(),
        }
    }

    /// Every UID this ledger reserves (live accounts, tombstones, retired UIDs), with its name.
    pub fn reserved_uids(&self) -> BTreeMap<u32, &str> {
        self.retired_uids
            .iter()
            .map(|(u, n)| (*u, n.as_str()))
            .chain(self.tombstones.iter().map(|(n, t)| (t.uid, n.as_str())))
            .chain(self.accounts.iter().map(|(n, a)| (a.uid, n.as_str())))
            .collect()
    }
}

/// Problems reading or writing the ledger.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The file exists but is not a ledger we can read.
    #[error(
        "the accounts ledger {} is unreadable ({detail}); it was left in place. Fix or move it aside: while it is unreadable no account is created, changed or removed",
        path.display()
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Parser message.
        detail: String,
    },
    /// Written by a newer version.
    #[error(
        "the accounts ledger {} has format version {found}, newer than this build understands ({VERSION}); upgrade ssm-companion",
        path.display()
    )]
    TooNew {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u32,
    },
    /// Reading or writing failed.
    #[error(transparent)]
    State(#[from] StateError),
}

/// A ledger as loaded, and what happened on the way.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The ledger to use.
    pub ledger: Ledger,
    /// The binding check result.
    pub binding: BindingCheck,
    /// Where a foreign ledger was moved, if one was.
    pub set_aside: Option<PathBuf>,
}

/// Loads the ledger at `path`, checking its binding against `now`.
///
/// Missing file: an empty ledger. Foreign ledger: rebound to `now` with every entry marked
/// inherited; with `write`, the original is renamed to `<path>.foreign-<machine-id>` (kept for the
/// operator) and the rebound ledger saved (without `write`, as for `accounts plan`, nothing on disk
/// changes).
pub fn load(path: &Path, now: &Binding, write: bool) -> Result<Loaded, LedgerError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Loaded {
                ledger: Ledger::new(now.clone()),
                binding: BindingCheck::Same,
                set_aside: None,
            });
        }
        Err(e) => {
            return Err(StateError::Io {
                what: "cannot read",
                path: path.to_path_buf(),
                source: e,
            }
            .into());
        }
    };
    #[derive(Deserialize)]
    struct VersionOnly {
        version: u32,
    }
    let version = serde_json::from_str::<VersionOnly>(&text).map_err(|e| LedgerError::Corrupt {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    if version.version > VERSION {
        return Err(LedgerError::TooNew {
            path: path.to_path_buf(),
            found: version.version,
        });
    }
    let mut ledger: Ledger = serde_json::from_str(&text).map_err(|e| LedgerError::Corrupt {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    let binding = ledger.binding.check(now);
    match &binding {
        BindingCheck::Foreign(_) => {
            let tag = if ledger.binding.machine_id.is_empty() {
                ledger
                    .binding
                    .instance_id
                    .clone()
                    .unwrap_or_else(|| "unknown".into())
            } else {
                ledger.binding.machine_id.clone()
            };
            // Rebind it to this machine; every entry keeps being managed but is marked as
            // inherited, so it is never deleted automatically.
            let from = ledger.binding.describe();
            let mut fresh = ledger.clone();
            fresh.binding = now.clone();
            for a in fresh.accounts.values_mut() {
                a.inherited_from.get_or_insert_with(|| from.clone());
            }
            for g in fresh.groups.values_mut() {
                g.inherited_from.get_or_insert_with(|| from.clone());
            }
            if !write {
                return Ok(Loaded {
                    ledger: fresh,
                    binding,
                    set_aside: None,
                });
            }
            let aside = set_aside(path, &tag)?;
            save(path, &fresh)?;
            Ok(Loaded {
                ledger: fresh,
                binding,
                set_aside: Some(aside),
            })
        }
        BindingCheck::Same => {
            // Learn the instance id once it is known (first boot with IMDS reachable).
            if ledger.binding.instance_id.is_none() && now.instance_id.is_some() {
                ledger.binding.instance_id = now.instance_id.clone();
            }
            Ok(Loaded {
                ledger,
                binding,
                set_aside: None,
            })
        }
        BindingCheck::Unverified(_) => Ok(Loaded {
            ledger,
            binding,
            set_aside: None,
        }),
    }
}

/// Moves a foreign ledger to `<path>.foreign-<tag>`, or `….foreign-<tag>.<n>` when that name is
/// taken: a copy set aside earlier is never overwritten (it may be the only record of what a
/// real previous life of this machine created). A hard link is made first and fails rather
/// than replace anything (link(2): no `renameat2`, which glibc 2.17 lacks); then the original
/// is removed. A crash in between leaves both names, and the next load sets the ledger aside
/// again under a new number: a duplicate, never a loss.
fn set_aside(path: &Path, tag: &str) -> Result<PathBuf, StateError> {
    let base = format!(
        "{}.foreign-{}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        tag.chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
    );
    let io = |what, source| StateError::Io {
        what,
        path: path.to_path_buf(),
        source,
    };
    for n in 1..=10_000u32 {
        let aside = if n == 1 {
            path.with_file_name(&base)
        } else {
            path.with_file_name(format!("{base}.{n}"))
        };
        match std::fs::hard_link(path, &aside) {
            Ok(()) => {
                std::fs::remove_file(path).map_err(|e| {
                    io("cannot remove the foreign ledger after setting it aside", e)
                })?;
                if let Some(dir) = path.parent() {
                    state::sync_dir(dir)?;
                }
                return Ok(aside);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io("cannot set aside foreign ledger", e)),
        }
    }
    Err(io(
        "cannot set aside foreign ledger (10000 copies already set aside)",
        std::io::Error::from(std::io::ErrorKind::AlreadyExists),
    ))
}

/// Writes the ledger atomically (mode 0600).
pub fn save(path: &Path, ledger: &Ledger) -> Result<(), LedgerError> {
    let mut text = serde_json::to_vec_pretty(ledger).map_err(|e| LedgerError::Corrupt {
        path: path.to_path_buf(),
        detail: format!("cannot serialize: {e}"),
    })?;
    text.push(b'\n');
    state::write_atomic(path, &text, 0o600)?;
    Ok(())
}

/// Reads a machine-id file (trimmed); empty when missing, unreadable or not a machine id
/// (32 lowercase hexadecimal digits: an image's `uninitialized` placeholder or a garbled file
/// must not look like another machine).
pub fn read_machine_id(path: &Path) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000 + s)
    }

    fn b(m: &str, i: Option<&str>) -> Binding {
        Binding {
            machine_id: m.into(),
            instance_id: i.map(str::to_string),
        }
    }

    fn account(uid: u32) -> ManagedAccount {
        ManagedAccount {
            uid,
            state: AccountState::Active,
            principals: ["arn:aws:iam::1:user/a".to_string()].into(),
            created_at: t(0),
            since: t(0),
            missing_reads: 0,
            missing_since: None,
            inherited_from: None,
        }
    }

    #[test]
    fn binding_rules() {
        let here = b("m1", Some("i-1"));
        assert_eq!(b("m1", Some("i-1")).check(&here), BindingCheck::Same);
        assert_eq!(b("m1", None).check(&here), BindingCheck::Same);
        assert!(matches!(
            b("m2", Some("i-1")).check(&here),
            BindingCheck::Foreign(_)
        ));
        assert!(matches!(
            b("m1", Some("i-2")).check(&here),
            BindingCheck::Foreign(_)
        ));
        assert!(matches!(
            b("m1", Some("i-1")).check(&b("m1", None)),
            BindingCheck::Unverified(_)
        ));
        assert!(matches!(
            b("", None).check(&here),
            BindingCheck::Unverified(_)
        ));
    }

    #[test]
    fn round_trip_and_missing_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(FILE_NAME);
        let here = b("m1", Some("i-1"));
        let l = load(&p, &here, true).unwrap();
        assert!(l.ledger.accounts.is_empty());
        let mut ledger = l.ledger;
        ledger.accounts.insert("alice".into(), account(20001));
        save(&p, &ledger).unwrap();
        let again = load(&p, &here, true).unwrap();
        assert_eq!(again.ledger, ledger);
        assert_eq!(again.binding, BindingCheck::Same);
    }

    #[test]
    fn a_foreign_ledger_is_rebound_with_every_entry_marked_inherited() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(FILE_NAME);
        let mut baked = Ledger::new(b("builder", Some("i-builder")));
        baked.accounts.insert("packer".into(), account(20005));
        baked.groups.insert(
            "ops-sudo".into(),
            ManagedGroup {
                gid: Some(998),
                state: GroupState::Active,
                created_at: t(0),
                inherited_from: None,
            },
        );
        baked.tombstones.insert(
            "gone".into(),
            Tombstone {
                uid: 20009,
                retired_at: t(0),
            },
        );
        save(&p, &baked).unwrap();

        // A read-only load (plan) shows the result without touching the file.
        let ro = load(&p, &b("new", Some("i-new")), false).unwrap();
        assert!(ro.ledger.accounts["packer"].inherited_from.is_some());
        assert!(ro.set_aside.is_none());
        assert_eq!(
            load(&p, &b("builder", Some("i-builder")), false)
                .unwrap()
                .ledger,
            baked
        );

        let l = load(&p, &b("new", Some("i-new")), true).unwrap();
        assert!(matches!(l.binding, BindingCheck::Foreign(_)));
        assert_eq!(l.ledger.binding, b("new", Some("i-new")));
        let packer = &l.ledger.accounts["packer"];
        assert_eq!(packer.uid, 20005);
        assert_eq!(
            packer.inherited_from.as_deref(),
            Some("machine-id builder, instance i-builder")
        );
        assert!(l.ledger.groups["ops-sudo"].inherited_from.is_some());
        assert_eq!(l.ledger.tombstones["gone"].uid, 20009);
        let aside = l.set_aside.unwrap();
        assert!(
            aside.to_string_lossy().ends_with(".foreign-builder"),
            "{aside:?}"
        );
        assert!(aside.exists(), "the original is kept for the operator");
        // The rebound ledger is on disk: the next load is ordinary and keeps the marks.
        let again = load(&p, &b("new", Some("i-new")), true).unwrap();
        assert_eq!(again.binding, BindingCheck::Same);
        assert!(again.ledger.accounts["packer"].inherited_from.is_some());
    }

    #[test]
    fn a_ledger_set_aside_earlier_is_never_overwritten() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(FILE_NAME);
        let mut first = Ledger::new(b("m1", Some("i-real")));
        first.accounts.insert("alice".into(), account(20001));
        save(&p, &first).unwrap();
        // Twice a foreign binding with the same machine-id tag: both copies are kept.
        let one = load(&p, &b("m1", Some("i-other")), true).unwrap();
        let one = one.set_aside.unwrap();
        let two = load(&p, &b("m1", Some("i-third")), true).unwrap();
        let two = two.set_aside.unwrap();
        assert_ne!(one, two);
        assert!(two.to_string_lossy().ends_with(".foreign-m1.2"), "{two:?}");
        let kept: Ledger = serde_json::from_str(&std::fs::read_to_string(&one).unwrap()).unwrap();
        assert_eq!(kept, first, "the first copy is the real ledger, untouched");
        let second: Ledger = serde_json::from_str(&std::fs::read_to_string(&two).unwrap()).unwrap();
        assert_eq!(second.binding, b("m1", Some("i-other")));
    }

    #[test]
    fn only_a_real_machine_id_is_read() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("machine-id");
        std::fs::write(&p, "3d1219c7c4c5404aaa1f6d2a48adfda4\n").unwrap();
        assert_eq!(read_machine_id(&p), "3d1219c7c4c5404aaa1f6d2a48adfda4");
        for bad in [
            "",
            "uninitialized\n",
            "3D1219C7C4C5404AAA1F6D2A48ADFDA4",
            "abc",
        ] {
            std::fs::write(&p, bad).unwrap();
            assert_eq!(read_machine_id(&p), "", "{bad:?}");
        }
        assert_eq!(read_machine_id(&d.path().join("none")), "");
    }

    #[test]
    fn corrupt_and_newer_ledgers_are_refused_and_left_alone() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(FILE_NAME);
        std::fs::write(&p, b"{ truncated").unwrap();
        let err = load(&p, &b("m", None), true).unwrap_err();
        assert!(matches!(err, LedgerError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("left in place"));
        assert_eq!(std::fs::read(&p).unwrap(), b"{ truncated");

        std::fs::write(&p, br#"{"version": 99, "binding": {"machine_id": "m"}}"#).unwrap();
        let err = load(&p, &b("m", None), true).unwrap_err();
        assert!(
            matches!(err, LedgerError::TooNew { found: 99, .. }),
            "{err}"
        );
    }

    #[test]
    fn instance_id_is_learned_once_known() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(FILE_NAME);
        save(&p, &Ledger::new(b("m", None))).unwrap();
        let l = load(&p, &b("m", Some("i-9")), true).unwrap();
        assert_eq!(l.ledger.binding.instance_id.as_deref(), Some("i-9"));
    }
}
