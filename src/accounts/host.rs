//! The host side of accounts: reading the user database and changing it with shadow-utils.
//!
//! [`Host`] is the side-effect boundary: [`ShadowHost`] is the real one (absolute tool paths,
//! fixed argv, `--` before every name, never a shell, through [`crate::exec`]); tests of the
//! apply logic use an in-memory host (`accounts::apply` tests).

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::local::{self, HomeState, LocalView, Nss};
use super::plan::{COMMENT, Change};
use crate::config::Settings;
use crate::exec::{self, ExecError};
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

/// The real host, through shadow-utils.
#[derive(Debug, Clone)]
pub struct ShadowHost {
    paths: crate::config::Paths,
    tool_timeout: Duration,
    stop_timeout: Duration,
    nss: Arc<dyn Nss>,
}

impl ShadowHost {
    /// A host using the paths and timeouts of `settings`.
    pub fn new(settings: &Settings) -> Self {
        Self {
            paths: settings.paths.clone(),
            tool_timeout: settings.accounts.tool_timeout,
            stop_timeout: settings.accounts.stop_timeout,
            nss: Arc::new(local::SystemNss),
        }
    }

    fn tool(&self, program: &Path, args: &[&OsStr]) -> Result<exec::Output, HostError> {
        Ok(exec::run_ok(program, args, None, self.tool_timeout)?)
    }

    /// PIDs whose real, effective, saved or filesystem UID is `uid`.
    fn pids_of(&self, uid: u32) -> Vec<nix::unistd::Pid> {
        let Ok(entries) = std::fs::read_dir(&self.paths.proc) else {
            return Vec::new();
        };
        let me = std::process::id();
        entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|&pid| pid != me)
            .filter(|pid| {
                let status =
                    std::fs::read_to_string(self.paths.proc.join(pid.to_string()).join("status"))
                        .unwrap_or_default();
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("Uid:"))
                    .is_some_and(|ids| ids.split_whitespace().any(|id| id.parse() == Ok(uid)))
            })
            .filter_map(|pid| i32::try_from(pid).ok().map(nix::unistd::Pid::from_raw))
            .collect()
    }
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
        let mut view = LocalView::new(users, groups, self.nss.clone());
        view.malformed = malformed;
        if let Ok(defs) = std::fs::read_to_string(&self.paths.login_defs) {
            let d = local::parse_login_defs(&defs);
            (view.uid_min, view.gid_min, view.uid_max) = (d.uid_min, d.gid_min, d.uid_max);
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
        let mut args: Vec<&OsStr> = vec![
            os("--uid"),
            os(&uid),
            os("--user-group"),
            os("--comment"),
            os(COMMENT),
            os("--home-dir"),
            u.home.as_os_str(),
            os("--shell"),
            u.shell.as_os_str(),
        ];
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

    fn modify_user(&mut self, name: &str, changes: &[Change]) -> Result<(), HostError> {
        let mut owned: Vec<String> = Vec::new();
        for c in changes {
            match c {
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
        if owned.is_empty() {
            return Ok(());
        }
        let mut args: Vec<&OsStr> = owned.iter().map(OsStr::new).collect();
        args.extend([os("--"), os(name)]);
        self.tool(&self.paths.usermod, &args)?;
        Ok(())
    }

    fn end_processes(&mut self, uid: u32) -> Result<usize, HostError> {
        use nix::sys::signal::{Signal, kill};
        let pids = self.pids_of(uid);
        if pids.is_empty() {
            return Ok(0);
        }
        for &p in &pids {
            let _ = kill(p, Signal::SIGTERM);
        }
        let step = Duration::from_millis(100);
        let mut waited = Duration::ZERO;
        while waited < self.stop_timeout && !self.pids_of(uid).is_empty() {
            crate::clock::sleep_blocking(step);
            waited += step;
        }
        for p in self.pids_of(uid) {
            let _ = kill(p, Signal::SIGKILL);
        }
        Ok(pids.len())
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
