//! Test helpers for the accounts capability: an in-memory host and a small world that runs
//! plan + apply cycles against it (unit tests only; the integration tests use real shadow-utils).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::apply::{self, Applied};
use super::desired::{self, Claim};
use super::host::{Host, HostError, NewUser};
use super::ledger::{self, Binding, Ledger};
use super::local::{FilesOnly, GroupEntry, HomeState, LocalView, PasswdEntry};
use super::plan::{self, Change, Plan, PlanInput, PlanSettings};
use crate::exec::{Argv, ExecError};

/// When the fake host simulates a crash (`panic!`) around its `n`-th mutation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crash {
    /// Before doing it.
    Before(usize),
    /// Right after doing it.
    After(usize),
}

/// An in-memory `/etc/passwd` + `/etc/group` + homes + sudoers.
#[derive(Debug, Clone, Default)]
pub struct FakeHost {
    pub users: BTreeMap<String, PasswdEntry>,
    pub groups: BTreeMap<String, GroupEntry>,
    pub homes: BTreeMap<String, HomeState>,
    pub sudoers: Option<String>,
    /// Every mutation, in order (`useradd alice`, …).
    pub log: Vec<String>,
    /// Tool exit codes to fail with, by `"<tool> <name>"`.
    pub fail: BTreeMap<String, i32>,
    /// Processes per UID (ended by `end_processes`).
    pub processes: BTreeMap<u32, usize>,
    pub crash: Option<Crash>,
    pub uid_min: u32,
    /// Names in sysusers.d files.
    pub sysusers: BTreeMap<String, PathBuf>,
}

impl FakeHost {
    /// A host with root, a few system accounts and `docker`/`adm` groups.
    pub fn new() -> Self {
        let mut h = Self {
            uid_min: 1000,
            ..Self::default()
        };
        h.add_user("root", 0, "/root", "/bin/bash");
        h.add_user("daemon", 1, "/usr/sbin", "/usr/sbin/nologin");
        h.add_user("nobody", 65534, "/nonexistent", "/usr/sbin/nologin");
        h.add_group("sudo", 27, &[]);
        h.add_group("adm", 4, &[]);
        h.add_group("docker", 999, &[]);
        h
    }

    /// Adds an unmanaged user (and its group).
    pub fn add_user(&mut self, name: &str, uid: u32, home: &str, shell: &str) {
        self.users.insert(
            name.into(),
            PasswdEntry {
                name: name.into(),
                uid,
                gid: uid,
                gecos: String::new(),
                home: home.into(),
                shell: shell.into(),
            },
        );
        self.add_group(name, uid, &[]);
    }

    /// Adds a group.
    pub fn add_group(&mut self, name: &str, gid: u32, members: &[&str]) {
        self.groups.insert(
            name.into(),
            GroupEntry {
                name: name.into(),
                gid,
                members: members.iter().map(|m| m.to_string()).collect(),
            },
        );
    }

    /// Supplementary groups of `name`.
    pub fn member_of(&self, name: &str) -> BTreeSet<String> {
        self.groups
            .values()
            .filter(|g| g.members.iter().any(|m| m == name))
            .map(|g| g.name.clone())
            .collect()
    }

    fn mutate(&mut self, what: String) -> Result<(), HostError> {
        let n = self.log.len() + 1;
        if self.crash == Some(Crash::Before(n)) {
            self.crash = None;
            panic!("simulated crash before {what}");
        }
        let tool_and_name = what.clone();
        if let Some(code) = self.fail.get(&tool_and_name) {
            return Err(HostError::Exec(ExecError::Failed {
                argv: Argv(vec![what.clone().into()]),
                code: Some(*code),
                stderr: format!("simulated failure of {what}"),
            }));
        }
        self.log.push(what);
        Ok(())
    }

    fn after(&mut self) {
        if self.crash == Some(Crash::After(self.log.len())) {
            self.crash = None;
            panic!(
                "simulated crash after {}",
                self.log.last().cloned().unwrap_or_default()
            );
        }
    }

    fn set_groups(&mut self, name: &str, groups: &[String]) {
        for g in self.groups.values_mut() {
            g.members.retain(|m| m != name);
            if groups.contains(&g.name) {
                g.members.push(name.into());
            }
        }
    }
}

impl Host for FakeHost {
    fn snapshot(&self, names: &BTreeSet<String>) -> Result<LocalView, HostError> {
        let mut v = LocalView::new(
            self.users.values().cloned().collect(),
            self.groups.values().cloned().collect(),
            Arc::new(FilesOnly),
        );
        v.uid_min = self.uid_min;
        v.gid_min = self.uid_min;
        for n in names {
            v.homes.insert(
                n.clone(),
                self.homes.get(n).cloned().unwrap_or(HomeState::Missing),
            );
        }
        v.sudoers = self.sudoers.clone();
        v.sysusers = self.sysusers.clone();
        for (name, h) in &self.homes {
            if let HomeState::Dir { uid } = h {
                v.home_owners.entry(*uid).or_default().insert(name.clone());
            }
        }
        Ok(v)
    }

    fn create_group(&mut self, name: &str) -> Result<Option<u32>, HostError> {
        self.mutate(format!("groupadd {name}"))?;
        let gid = (100..999)
            .find(|g| self.groups.values().all(|x| x.gid != *g))
            .unwrap_or(998);
        self.add_group(name, gid, &[]);
        self.after();
        Ok(Some(gid))
    }

    fn create_user(&mut self, u: &NewUser<'_>) -> Result<(), HostError> {
        assert!(u.uid != 0, "never uid 0");
        self.mutate(format!("useradd {}", u.name))?;
        if self.users.contains_key(u.name) {
            return Err(HostError::Exec(ExecError::Failed {
                argv: Argv(vec![]),
                code: Some(9),
                stderr: "exists".into(),
            }));
        }
        let gid = match u.primary_group {
            Some(g) => match self.groups.get(g) {
                Some(g) => g.gid,
                None => {
                    return Err(HostError::Exec(ExecError::Failed {
                        argv: Argv(vec![]),
                        code: Some(6),
                        stderr: format!("group '{g}' does not exist"),
                    }));
                }
            },
            None => u.uid,
        };
        self.users.insert(
            u.name.into(),
            PasswdEntry {
                name: u.name.into(),
                uid: u.uid,
                gid,
                gecos: plan::COMMENT.into(),
                home: u.home.to_path_buf(),
                shell: u.shell.to_path_buf(),
            },
        );
        if u.primary_group.is_none() {
            self.add_group(u.name, u.uid, &[]);
        }
        let groups = u.groups.to_vec();
        self.set_groups(u.name, &groups);
        if u.create_home {
            self.homes
                .insert(u.name.into(), HomeState::Dir { uid: u.uid });
        }
        self.after();
        Ok(())
    }

    fn modify_user(&mut self, name: &str, changes: &[Change]) -> Result<(), HostError> {
        self.mutate(format!("usermod {name}"))?;
        for c in changes {
            if let Change::PrimaryGroup {
                to,
                create: Some(g),
                ..
            } = c
            {
                self.add_group(g, *to, &[]);
            }
            if let Change::CreateHome { .. } = c {
                let uid = self.users.get(name).map_or(0, |u| u.uid);
                self.homes.insert(name.into(), HomeState::Dir { uid });
            }
            let Some(u) = self.users.get_mut(name) else {
                continue;
            };
            match c {
                Change::PrimaryGroup { to, .. } => u.gid = *to,
                Change::CreateHome { .. } => {}
                Change::Shell { to, .. } => u.shell = to.clone(),
                Change::Home { to, .. } => u.home = to.clone(),
                Change::Comment { to, .. } => u.gecos = to.clone(),
                Change::Groups { result, .. } => {
                    let r = result.clone();
                    self.set_groups(name, &r);
                }
            }
        }
        self.after();
        Ok(())
    }

    fn end_processes(&mut self, uid: u32) -> Result<usize, HostError> {
        Ok(self.processes.remove(&uid).unwrap_or(0))
    }

    fn delete_user(&mut self, name: &str, _remove_home: bool) -> Result<(), HostError> {
        if self.fail.get(&format!("userdel {name}")) == Some(&8) {
            return Err(HostError::LoggedIn { user: name.into() });
        }
        self.mutate(format!("userdel {name}"))?;
        self.users.remove(name);
        self.groups.remove(name);
        self.set_groups(name, &[]);
        self.after();
        Ok(())
    }

    fn write_sudoers(&mut self, content: &str) -> Result<(), HostError> {
        self.mutate("write-sudoers".into())?;
        self.sudoers = Some(content.into());
        self.after();
        Ok(())
    }

    fn remove_sudoers(&mut self) -> Result<(), HostError> {
        self.mutate("remove-sudoers".into())?;
        self.sudoers = None;
        self.after();
        Ok(())
    }
}

/// A claim for `name` from principal `arn:…:user/<name>`.
pub fn claim(name: &str) -> Claim {
    Claim {
        principal: format!("arn:aws:iam::123456789012:user/{name}"),
        run_as: name.into(),
        groups: vec![],
        host_groups: None,
    }
}

/// A principal of the source that maps to no account here (Session Manager refuses `root`, so
/// the value is rejected): an answer with only this one is not an empty answer, so the
/// retirements it implies are not held back as `empty-source`.
pub fn bystander() -> Claim {
    Claim {
        principal: "arn:aws:iam::123456789012:role/bystander".into(),
        run_as: "root".into(),
        groups: vec![],
        host_groups: None,
    }
}

/// A claim asking for groups.
pub fn claim_groups(name: &str, groups: &[&str]) -> Claim {
    Claim {
        groups: groups.iter().map(|g| g.to_string()).collect(),
        ..claim(name)
    }
}

/// Default planner settings for tests.
pub fn settings() -> PlanSettings {
    PlanSettings {
        shell: "/bin/bash".into(),
        home_base: "/home".into(),
        uid_range: [20000, 59999],
        sudo_group: None,
        allowed_groups: BTreeSet::new(),
        retire_grace: Duration::from_secs(3600),
        retire_confirmations: 3,
        max_retire_fraction: 0.25,
        remove_home: false,
        sudoers_file: "/etc/sudoers.d/ssm-companion".into(),
        reserved_names: Vec::new(),
        primary_group: None,
    }
}

/// A test start time.
pub fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000)
}

/// A host, its ledger on disk, and a clock: runs sync cycles.
pub struct World {
    pub host: FakeHost,
    pub settings: PlanSettings,
    pub now: SystemTime,
    pub binding: Binding,
    _dir: tempfile::TempDir,
    pub ledger_path: PathBuf,
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

impl World {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ledger_path = dir.path().join(ledger::FILE_NAME);
        Self {
            host: FakeHost::new(),
            settings: settings(),
            now: t0(),
            binding: Binding {
                machine_id: "m1".into(),
                instance_id: Some("i-1".into()),
            },
            _dir: dir,
            ledger_path,
        }
    }

    pub fn ledger(&self) -> Ledger {
        ledger::load(&self.ledger_path, &self.binding, false)
            .unwrap()
            .ledger
    }

    pub fn path(&self) -> &Path {
        &self.ledger_path
    }

    /// Plans against the current state.
    pub fn plan(&self, claims: &[Claim], complete: bool) -> Plan {
        self.plan_with(claims, complete, false)
    }

    pub fn plan_with(&self, claims: &[Claim], complete: bool, allow_mass_retire: bool) -> Plan {
        let loaded = ledger::load(&self.ledger_path, &self.binding, false).unwrap();
        let policy = desired::Policy {
            host_groups: BTreeSet::new(),
            allowed_groups: self.settings.allowed_groups.clone(),
        };
        let desired = desired::build(claims, &policy);
        let names = desired
            .accounts
            .keys()
            .chain(loaded.ledger.accounts.keys())
            .cloned()
            .collect();
        let local = self.host.snapshot(&names).unwrap();
        plan::plan(PlanInput {
            desired: &desired,
            complete,
            local: &local,
            ledger: &loaded.ledger,
            binding: &loaded.binding,
            settings: &self.settings,
            now: self.now,
            allow_mass_retire,
            empty_source: complete && super::source::is_empty_answer(claims),
        })
    }

    /// One plan + apply cycle.
    pub fn cycle(&mut self, claims: &[Claim], complete: bool) -> (Plan, Applied) {
        self.cycle_with(claims, complete, false)
    }

    /// One plan + apply cycle, with `--allow-mass-retire` or not.
    pub fn cycle_with(
        &mut self,
        claims: &[Claim],
        complete: bool,
        allow_mass_retire: bool,
    ) -> (Plan, Applied) {
        let p = self.plan_with(claims, complete, allow_mass_retire);
        let mut ledger = ledger::load(&self.ledger_path, &self.binding, true)
            .unwrap()
            .ledger;
        let a = apply::apply(&p, &mut self.host, &mut ledger, &self.ledger_path, self.now);
        (p, a)
    }

    /// Cycles until a plan has no changes (at most `max`); returns the number of cycles.
    pub fn converge(&mut self, claims: &[Claim], max: usize) -> usize {
        self.converge_with(claims, max, false)
    }

    /// [`World::converge`], with `--allow-mass-retire` or not.
    pub fn converge_with(
        &mut self,
        claims: &[Claim],
        max: usize,
        allow_mass_retire: bool,
    ) -> usize {
        for i in 0..max {
            let p = self.plan_with(claims, true, allow_mass_retire);
            if !p.has_changes() {
                return i;
            }
            self.cycle_with(claims, true, allow_mass_retire);
        }
        panic!(
            "did not converge in {max} cycles: {:#?}",
            self.plan(claims, true)
        );
    }
}

/// The actions of a plan as `(action, subject)` pairs.
pub fn actions(p: &Plan) -> Vec<(String, String)> {
    p.steps
        .iter()
        .map(|s| (s.action().to_string(), s.subject()))
        .collect()
}
