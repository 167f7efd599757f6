//! The host side of accounts: reading the user database and changing it with shadow-utils.
//!
//! [`Host`] is the side-effect boundary: [`ShadowHost`] is the real one (absolute tool paths,
//! fixed argv, `--` before every name, never a shell, through [`crate::exec`]); tests of the
//! apply logic use an in-memory host (`accounts::apply` tests).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::local::{self, HomeState, LocalView, Nss};
use super::plan::{COMMENT, Change};
use crate::config::Settings;
use crate::exec::{self, ExecError};
use crate::procfs;
use crate::state::{self, StateError};

/// A user to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser<'a> {
    /// Name.
    pub name: &'a str,
    /// UID (and GID of the user private group).
    pub uid: u32,
    /// Supplementary groups.
    pub groups: &'a [String],
    /// Login shell.
    pub shell: &'a Path,
    /// Home directory.
    pub home: &'a Path,
    /// Create the home from the skeleton.
    pub create_home: bool,
    /// The shared primary group; `None`: a user private group with GID = UID.
    pub primary_group: Option<&'a str>,
}

/// A change to the host that failed.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A tool failed or could not run.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// `userdel` refused: the user is logged in / has processes.
    #[error("`{user}` still has processes or a session (userdel exit 8); retrying next cycle")]
    LoggedIn {
        /// Name.
        user: String,
    },
    /// Processes of a retiring user outlived every SIGKILL round.
    #[error(
        "processes of uid {uid} survived {}s of SIGKILL rounds (pids {pids:?}); the account is not deleted this cycle",
        KILL_DEADLINE.as_secs()
    )]
    ProcessesSurvived {
        /// The UID.
        uid: u32,
        /// What was still running.
        pids: Vec<i32>,
    },
    /// `visudo` rejected the drop-in.
    #[error("visudo rejected the new sudoers drop-in; the old file was kept: {0}")]
    SudoersInvalid(String),
    /// Reading or writing a file failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// Not attempted, because an earlier step it depends on failed.
    #[error("{0}")]
    NotRun(String),
    /// Reading the account files failed.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// File.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
}

impl HostError {
    /// True when the tool guarantees it changed nothing (so an intent record can be dropped).
    pub fn nothing_changed(&self) -> bool {
        // useradd: 2 usage, 3 bad argument, 4 UID in use, 6 group missing, 9 name in use.
        // groupadd: 2, 3, 4 GID in use, 9 name in use.
        matches!(self, HostError::Exec(e) if matches!(e.exit_code(), Some(2 | 3 | 4 | 6 | 9)))
            || matches!(
                self,
                HostError::Exec(ExecError::Spawn { .. } | ExecError::NotAbsolute(_))
            )
    }
}

/// Reading and changing the host's accounts.
pub trait Host {
    /// The current state; `names` are the names whose home directory the planner needs.
    fn snapshot(&self, names: &BTreeSet<String>) -> Result<LocalView, HostError>;
    /// `groupadd` a system group; returns its GID when it can be read back.
    fn create_group(&mut self, name: &str) -> Result<Option<u32>, HostError>;
    /// `useradd`.
    fn create_user(&mut self, user: &NewUser<'_>) -> Result<(), HostError>;
    /// `usermod` with the given changes.
    fn modify_user(&mut self, name: &str, changes: &[Change]) -> Result<(), HostError>;
    /// Ends every process of `uid` (TERM, then KILL after the stop timeout); returns how many.
    fn end_processes(&mut self, uid: u32) -> Result<usize, HostError>;
    /// `userdel` (with `--remove` to delete the home).
    fn delete_user(&mut self, name: &str, remove_home: bool) -> Result<(), HostError>;
    /// Validates with `visudo -cf` and installs the sudoers drop-in atomically.
    fn write_sudoers(&mut self, content: &str) -> Result<(), HostError>;
    /// Removes the sudoers drop-in.
    fn remove_sudoers(&mut self) -> Result<(), HostError>;
}

/// How a snapshot asks NSS about names and IDs the local files do not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookups {
    /// Decide from nsswitch.conf: nothing when `passwd`/`group` come only from the files (see
    /// [`local::nss_is_local`]), else [`Lookups::Parallel`].
    Auto,
    /// Ask in advance, in parallel, within `accounts.lookup_timeout` ([`local::prefetch`]).
    Parallel,
    /// Ask one at a time while planning, without a deadline (what versions before 0.2 did;
    /// kept for the benchmark that compares them).
    Sequential,
}

/// The real host, through shadow-utils.
#[derive(Debug, Clone)]
pub struct ShadowHost {
    lookups: Lookups,
    lookup_timeout: Duration,
    uid_range: [u32; 2],
    paths: crate::config::Paths,
    tool_timeout: Duration,
    stop_timeout: Duration,
    nss: Arc<dyn Nss>,
}

impl ShadowHost {
    /// A host using the paths and timeouts of `settings`.
    pub fn new(settings: &Settings) -> Self {
        Self {
            lookups: Lookups::Auto,
            lookup_timeout: settings.accounts.lookup_timeout,
            uid_range: settings.accounts.uid_range,
            paths: settings.paths.clone(),
            tool_timeout: settings.accounts.tool_timeout,
            stop_timeout: settings.accounts.stop_timeout,
            nss: Arc::new(local::SystemNss),
        }
    }

    /// login.defs as it is now (shadow's defaults for what it lacks, or when it is missing).
    fn login_defs(&self) -> crate::sysfiles::LoginDefs {
        std::fs::read_to_string(&self.paths.login_defs)
            .map(|t| crate::sysfiles::parse_login_defs(&t))
            .unwrap_or_default()
    }

    /// The same host with another way of asking NSS (benchmarks, tests).
    pub fn with_lookups(mut self, lookups: Lookups) -> Self {
        self.lookups = lookups;
        self
    }

    /// The NSS answers a snapshot uses for `names` (besides the files' own `users`).
    fn nss_for(&self, names: &BTreeSet<String>, users: &[local::PasswdEntry]) -> Arc<dyn Nss> {
        let parallel = match self.lookups {
            Lookups::Sequential => return self.nss.clone(),
            Lookups::Parallel => true,
            Lookups::Auto => !local::nss_is_local(
                std::fs::read_to_string(&self.paths.nsswitch)
                    .ok()
                    .as_deref(),
            ),
        };
        if !parallel {
            return Arc::new(local::FilesOnly);
        }
        let in_files: BTreeSet<&str> = users.iter().map(|u| u.name.as_str()).collect();
        let missing: BTreeSet<String> = names
            .iter()
            .filter(|n| !in_files.contains(n.as_str()))
            .cloned()
            .collect();
        // The first UID the planner tries for each (collisions ask later, within the deadline).
        let ids: BTreeSet<u32> = missing
            .iter()
            .map(|n| super::plan::preferred_uid(n, self.uid_range))
            .collect();
        Arc::new(local::prefetch(
            self.nss.clone(),
            &missing,
            &ids,
            self.lookup_timeout,
        ))
    }

    fn tool(&self, program: &Path, args: &[&OsStr]) -> Result<exec::Output, HostError> {
        Ok(exec::run_ok(program, args, None, self.tool_timeout)?)
    }

    /// The processes whose real, effective, saved or filesystem UID is `uid`: the live ones,
    /// and how many zombies (they run nothing and cannot be signalled; their parent or init
    /// reaps them, and `userdel` counts them until then).
    fn pids_of(&self, uid: u32) -> (Vec<nix::unistd::Pid>, usize) {
        processes_of(&self.paths.proc, uid)
    }

    /// Kills the user's systemd slice at once with `cgroup.kill` (cgroup v2, Linux ≥ 5.14),
    /// when it has one (logins through PAM and logind; Session Manager's Run As sessions run in
    /// the agent's own cgroup instead). The kernel kills every process of the cgroup, including
    /// those forking at that moment. Best effort: the scan loop follows either way.
    fn kill_user_slice(&self, uid: u32) {
        let file = self
            .paths
            .cgroup
            .join(format!("user.slice/user-{uid}.slice/cgroup.kill"));
        if !file.exists() {
            return;
        }
        match std::fs::write(&file, b"1") {
            Ok(()) => tracing::info!(uid, "killed the user's slice ({})", file.display()),
            Err(e) => tracing::debug!(uid, "cannot write {}: {e}", file.display()),
        }
    }
}

/// Pause between two rounds of the kill loop.
const KILL_ROUND: Duration = Duration::from_millis(20);
/// How long SIGKILL rounds may go on before the retirement is given up for this cycle.
pub const KILL_DEADLINE: Duration = Duration::from_secs(10);

/// The processes of `uid` under `proc`: live PIDs, and the number of zombies (see
/// [`ShadowHost::pids_of`]).
fn processes_of(proc: &Path, uid: u32) -> (Vec<nix::unistd::Pid>, usize) {
    let (live, zombies, _) = scan(proc, uid);
    (live, zombies)
}

/// One scan of `proc` for `uid`: its live PIDs, its zombies, and the process groups whose every
/// live member is `uid`'s (a group with anyone else's process in it is not among them).
fn scan(proc: &Path, uid: u32) -> (Vec<nix::unistd::Pid>, usize, Vec<u32>) {
    let me = std::process::id();
    let mut live = Vec::new();
    let mut zombies = 0;
    // pgid → whether every live member seen is uid's.
    let mut groups: BTreeMap<u32, bool> = BTreeMap::new();
    for pid in procfs::pids(proc).into_iter().filter(|&pid| pid != me) {
        let status = procfs::status(proc, pid);
        if status.is_dead() {
            zombies += usize::from(status.owned_by(uid));
            continue;
        }
        let ours = status.owned_by(uid);
        if let Some(g) = status.pgid {
            *groups.entry(g).or_insert(true) &= ours;
        }
        if ours {
            live.extend(i32::try_from(pid).ok().map(nix::unistd::Pid::from_raw));
        }
    }
    let own_groups = groups
        .into_iter()
        // Never our own group (this process is left out of the scan above).
        .filter(|&(g, all_ours)| {
            all_ours && g > 1 && i64::from(g) != i64::from(nix::unistd::getpgrp().as_raw())
        })
        .map(|(g, _)| g)
        .collect();
    (live, zombies, own_groups)
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn read(path: &Path) -> Result<String, HostError> {
    std::fs::read_to_string(path).map_err(|source| HostError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn home_state(path: &Path) -> HomeState {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => HomeState::Symlink,
        Ok(m) if m.is_dir() => HomeState::Dir { uid: m.uid() },
        Ok(_) => HomeState::NotADirectory,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => HomeState::Missing,
        Err(e) => HomeState::Unreadable(e.to_string()),
    }
}

impl Host for ShadowHost {
    fn snapshot(&self, names: &BTreeSet<String>) -> Result<LocalView, HostError> {
        let (users, mut malformed) = local::parse_passwd(&read(&self.paths.passwd)?);
        let (groups, bad_groups) = local::parse_group(&read(&self.paths.group)?);
        malformed.extend(bad_groups);
        let nss = self.nss_for(names, &users);
        let mut view = LocalView::new(users, groups, nss);
        view.malformed = malformed;
        let d = self.login_defs();
        (view.uid_min, view.gid_min, view.uid_max) = (d.uid_min, d.gid_min, d.uid_max);
        // Users and groups that systemd-sysusers creates for the host's packages (now or at
        // their next start): reserved. Unreadable directories are skipped (most hosts lack
        // some of them).
        for dir in &self.paths.sysusers_dirs {
            for f in crate::sysfiles::files_in(dir, "conf").unwrap_or_default() {
                if let Ok(text) = std::fs::read_to_string(&f) {
                    for name in local::parse_sysusers(&text) {
                        view.sysusers.entry(name).or_insert_with(|| f.clone());
                    }
                }
            }
        }
        for n in names {
            view.homes
                .insert(n.clone(), home_state(&self.paths.home_base.join(n)));
        }
        // Who owns what under the home base: kept homes of deleted accounts keep their number.
        if let Ok(entries) = std::fs::read_dir(&self.paths.home_base) {
            for e in entries.filter_map(Result::ok) {
                if let Ok(m) = e.metadata() {
                    view.home_owners
                        .entry(m.uid())
                        .or_default()
                        .insert(e.file_name().to_string_lossy().into_owned());
                }
            }
        }
        view.sudoers = match std::fs::read_to_string(&self.paths.sudoers_file) {
            Ok(c) => Some(c),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(HostError::Read {
                    path: self.paths.sudoers_file.clone(),
                    source: e,
                });
            }
        };
        let dropin_dir = self.paths.sudoers_file.parent().unwrap_or(Path::new("/"));
        view.sudoers_included = std::fs::read_to_string(&self.paths.sudoers_main)
            .is_ok_and(|t| local::sudoers_includes(&t, dropin_dir));
        Ok(view)
    }

    fn create_group(&mut self, name: &str) -> Result<Option<u32>, HostError> {
        self.tool(&self.paths.groupadd, &[os("--system"), os("--"), os(name)])?;
        let (groups, _) = local::parse_group(&read(&self.paths.group)?);
        Ok(groups.into_iter().find(|g| g.name == name).map(|g| g.gid))
    }

    fn create_user(&mut self, u: &NewUser<'_>) -> Result<(), HostError> {
        let uid = u.uid.to_string();
        let groups = u.groups.join(",");
        let mut args: Vec<&OsStr> = vec![os("--uid"), os(&uid)];
        match u.primary_group {
            Some(g) => args.extend([os("--gid"), os(g), os("--no-user-group")]),
            None => args.push(os("--user-group")),
        }
        args.extend([
            os("--comment"),
            os(COMMENT),
            os("--home-dir"),
            u.home.as_os_str(),
            os("--shell"),
            u.shell.as_os_str(),
        ]);
        if u.create_home {
            args.extend([
                os("--create-home"),
                os("--skel"),
                self.paths.skel.as_os_str(),
            ]);
        } else {
            args.push(os("--no-create-home"));
        }
        if !groups.is_empty() {
            args.extend([os("--groups"), os(&groups)]);
        }
        args.extend([os("--"), os(u.name)]);
        self.tool(&self.paths.useradd, &args)?;
        Ok(())
    }

    /// `usermod` with the changes; before it, `groupadd --gid` a user private group to make
    /// again; after it, `mkhomedir_helper` for a home to make again (it reads the home from
    /// passwd, so it runs once the home field is right).
    fn modify_user(&mut self, name: &str, changes: &[Change]) -> Result<(), HostError> {
        for c in changes {
            if let Change::PrimaryGroup {
                to,
                create: Some(group),
                ..
            } = c
            {
                let gid = to.to_string();
                self.tool(
                    &self.paths.groupadd,
                    &[os("--gid"), os(&gid), os("--"), os(group)],
                )?;
            }
        }
        let mut owned: Vec<String> = Vec::new();
        let mut make_home = false;
        for c in changes {
            match c {
                Change::PrimaryGroup { to, .. } => owned.extend(["--gid".into(), to.to_string()]),
                Change::CreateHome { .. } => make_home = true,
                Change::Shell { to, .. } => {
                    owned.extend(["--shell".into(), to.display().to_string()])
                }
                Change::Home { to, .. } => {
                    owned.extend(["--home".into(), to.display().to_string()])
                }
                Change::Comment { to, .. } => owned.extend(["--comment".into(), to.clone()]),
                Change::Groups { result, .. } => {
                    owned.extend(["--groups".into(), result.join(",")])
                }
            }
        }
        if !owned.is_empty() {
            let mut args: Vec<&OsStr> = owned.iter().map(OsStr::new).collect();
            args.extend([os("--"), os(name)]);
            self.tool(&self.paths.usermod, &args)?;
        }
        if make_home {
            // `mkhomedir_helper USER UMASK SKEL`: the argv every PAM version takes (the home
            // mode argument is newer); login.defs' UMASK, as useradd uses. It creates nothing
            // when the home exists.
            let umask = format!("{:04o}", self.login_defs().umask);
            self.tool(
                &self.paths.mkhomedir_helper,
                &[os(name), os(&umask), self.paths.skel.as_os_str()],
            )?;
        }
        Ok(())
    }

    /// Ends every process of `uid` until none is left: the user's slice is killed if it has
    /// one; then every process gets SIGTERM (and so does each one that appears meanwhile) and
    /// `stop_timeout` to exit; then rounds of scan + SIGKILL run until a scan finds none. A
    /// process that forks and lets its parent exit (a "hopper") is caught by the next round.
    /// Zombies left behind are waited for within the same deadline (`userdel` counts them as
    /// processes). If live processes are still there after [`KILL_DEADLINE`], the error says so
    /// and the account is not deleted this cycle (a UID without a passwd entry must not keep
    /// running); if only zombies are, `userdel` says so and the next cycle tries again.
    fn end_processes(&mut self, uid: u32) -> Result<usize, HostError> {
        use nix::sys::signal::{Signal, kill};
        // The planner never asks for this (ledger entries are checked before use); a second
        // line of defence against signalling every root process.
        if uid == 0 {
            return Err(HostError::NotRun(
                "refusing to end the processes of uid 0".into(),
            ));
        }
        let mut seen: BTreeSet<i32> = BTreeSet::new();
        let (live, zombies) = self.pids_of(uid);
        if live.is_empty() && zombies == 0 {
            return Ok(0);
        }
        if !live.is_empty() {
            self.kill_user_slice(uid);
        }
        let step = Duration::from_millis(100);
        let mut waited = Duration::ZERO;
        while waited < self.stop_timeout {
            let (live, _) = self.pids_of(uid);
            if live.is_empty() {
                break;
            }
            for p in live {
                if seen.insert(p.as_raw()) {
                    let _ = kill(p, Signal::SIGTERM);
                }
            }
            crate::clock::sleep_blocking(step);
            waited += step;
        }
        let mut spent = Duration::ZERO;
        loop {
            let (live, zombies, own_groups) = scan(&self.paths.proc, uid);
            if live.is_empty() && zombies == 0 {
                return Ok(seen.len());
            }
            if spent >= KILL_DEADLINE {
                if live.is_empty() {
                    tracing::warn!(
                        uid,
                        "{zombies} zombie process(es) of uid {uid} not reaped yet; userdel decides"
                    );
                    return Ok(seen.len());
                }
                return Err(HostError::ProcessesSurvived {
                    uid,
                    pids: live.iter().map(|p| p.as_raw()).collect(),
                });
            }
            // A whole group of the user's processes at once: the kernel lets no fork in that
            // group escape a group kill, while a chain of forks can outrun rounds of
            // per-process kills on a busy machine. Groups shared with anyone else are left to
            // the per-process kills.
            for g in own_groups {
                if let Ok(g) = i32::try_from(g) {
                    let _ = kill(nix::unistd::Pid::from_raw(-g), Signal::SIGKILL);
                }
            }
            for p in live {
                seen.insert(p.as_raw());
                let _ = kill(p, Signal::SIGKILL);
            }
            crate::clock::sleep_blocking(KILL_ROUND);
            spent += KILL_ROUND;
        }
    }

    fn delete_user(&mut self, name: &str, remove_home: bool) -> Result<(), HostError> {
        let mut args = Vec::new();
        if remove_home {
            args.push(os("--remove"));
        }
        args.extend([os("--"), os(name)]);
        let out = exec::run(&self.paths.userdel, &args, None, self.tool_timeout)?;
        match out.code {
            // 6: no such user (already gone); 12: deleted, but the home could not be removed.
            Some(0 | 6) => Ok(()),
            Some(12) => {
                tracing::warn!(user = name, stderr = %out.stderr.trim(), "userdel removed the account but not its home");
                Ok(())
            }
            Some(8) => Err(HostError::LoggedIn { user: name.into() }),
            code => Err(ExecError::Failed {
                argv: exec::Argv(
                    std::iter::once(self.paths.userdel.clone().into_os_string())
                        .chain(args.iter().map(|a| a.to_os_string()))
                        .collect(),
                ),
                code,
                stderr: out.stderr,
            }
            .into()),
        }
    }

    fn write_sudoers(&mut self, content: &str) -> Result<(), HostError> {
        let visudo = self.paths.visudo.clone();
        let timeout = self.tool_timeout;
        state::write_atomic_checked(&self.paths.sudoers_file, content.as_bytes(), 0o440, |tmp| {
            let out = exec::run(
                &visudo,
                &[os("-c"), os("-f"), tmp.as_os_str()],
                None,
                timeout,
            )?;
            if out.success() {
                Ok(())
            } else {
                Err(HostError::SudoersInvalid(format!(
                    "{}{}",
                    out.stdout.trim(),
                    out.stderr.trim()
                )))
            }
        })
    }

    fn remove_sudoers(&mut self) -> Result<(), HostError> {
        Ok(state::remove_file(&self.paths.sudoers_file)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_states() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(home_state(&d.path().join("none")), HomeState::Missing);
        std::fs::create_dir(d.path().join("dir")).unwrap();
        assert!(matches!(
            home_state(&d.path().join("dir")),
            HomeState::Dir { .. }
        ));
        std::os::unix::fs::symlink("/etc", d.path().join("link")).unwrap();
        assert_eq!(home_state(&d.path().join("link")), HomeState::Symlink);
        std::fs::write(d.path().join("file"), b"").unwrap();
        assert_eq!(home_state(&d.path().join("file")), HomeState::NotADirectory);
    }

    #[test]
    fn only_groups_of_the_users_processes_alone_are_killed_as_groups() {
        let d = tempfile::tempdir().unwrap();
        let proc_ = |pid: u32, uid: u32, pgid: u32, state: &str| {
            let dir = d.path().join(pid.to_string());
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(
                dir.join("status"),
                format!("State:\t{state}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nNSpgid:\t{pgid}\n"),
            )
            .unwrap();
        };
        proc_(101, 20001, 100, "S (sleeping)"); // the user's own group
        proc_(102, 20001, 100, "R (running)");
        proc_(201, 20001, 200, "S (sleeping)"); // shared with root's process: not as a group
        proc_(202, 0, 200, "S (sleeping)");
        proc_(301, 20001, 300, "Z (zombie)");
        let (live, zombies, groups) = scan(d.path(), 20001);
        let mut live: Vec<i32> = live.iter().map(|p| p.as_raw()).collect();
        live.sort_unstable();
        assert_eq!((live, zombies, groups), (vec![101, 102, 201], 1, vec![100]));
    }

    #[test]
    fn a_user_slice_is_killed_through_cgroup_kill() {
        let d = tempfile::tempdir().unwrap();
        let slice = d.path().join("user.slice/user-20001.slice");
        std::fs::create_dir_all(&slice).unwrap();
        std::fs::write(slice.join("cgroup.kill"), b"").unwrap();
        let mut settings = Settings::default();
        settings.paths.cgroup = d.path().to_path_buf();
        let host = ShadowHost::new(&settings);
        host.kill_user_slice(20001);
        assert_eq!(std::fs::read(slice.join("cgroup.kill")).unwrap(), b"1");
        // No slice: nothing is created.
        host.kill_user_slice(20002);
        assert!(!d.path().join("user.slice/user-20002.slice").exists());
    }

    #[test]
    fn uid_zero_is_never_signalled() {
        let mut host = ShadowHost::new(&Settings::default());
        assert!(matches!(host.end_processes(0), Err(HostError::NotRun(_))));
    }

    #[test]
    fn nothing_changed_codes() {
        let failed = |code| {
            HostError::Exec(ExecError::Failed {
                argv: exec::Argv(vec![]),
                code: Some(code),
                stderr: String::new(),
            })
        };
        assert!(failed(9).nothing_changed());
        assert!(failed(4).nothing_changed());
        assert!(
            !failed(1).nothing_changed(),
            "exit 1 may have half-written the files"
        );
        assert!(
            !failed(12).nothing_changed(),
            "exit 12: the account exists without its home"
        );
    }
}
