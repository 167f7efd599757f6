//! The host's accounts as the files and NSS show them, and the parsers for those files (pure).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One `/etc/passwd` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    /// Login name.
    pub name: String,
    /// UID.
    pub uid: u32,
    /// Primary GID.
    pub gid: u32,
    /// GECOS / comment.
    pub gecos: String,
    /// Home directory.
    pub home: PathBuf,
    /// Login shell.
    pub shell: PathBuf,
}

/// One `/etc/group` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    /// Group name.
    pub name: String,
    /// GID.
    pub gid: u32,
    /// Supplementary members.
    pub members: Vec<String>,
}

/// What is at `/home/<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HomeState {
    /// Nothing.
    Missing,
    /// A real directory (not a symlink) owned by `uid`.
    Dir {
        /// Owner.
        uid: u32,
    },
    /// A symlink (never followed).
    Symlink,
    /// A file, socket, …
    NotADirectory,
    /// `lstat` failed (NFS down, permissions).
    Unreadable(String),
}

/// Answers about accounts that are not in the local files (LDAP, SSSD, AD, …).
///
/// A lookup that fails (a directory timing out) is an `Err`, never "not found": a user we cannot
/// see might exist, so it must not be created, and an ID we cannot check is treated as taken.
pub trait Nss: Send + Sync + fmt::Debug {
    /// A user by name: (uid, gid).
    fn user_by_name(&self, name: &str) -> Result<Option<(u32, u32)>, String>;
    /// A group by name: gid.
    fn group_by_name(&self, name: &str) -> Result<Option<u32>, String>;
    /// True when some user has this UID.
    fn uid_exists(&self, uid: u32) -> bool;
    /// True when some group has this GID.
    fn gid_exists(&self, gid: u32) -> bool;
}

/// No sources beyond the files (unit tests).
#[derive(Debug, Default, Clone, Copy)]
pub struct FilesOnly;

impl Nss for FilesOnly {
    fn user_by_name(&self, _: &str) -> Result<Option<(u32, u32)>, String> {
        Ok(None)
    }
    fn group_by_name(&self, _: &str) -> Result<Option<u32>, String> {
        Ok(None)
    }
    fn uid_exists(&self, _: u32) -> bool {
        false
    }
    fn gid_exists(&self, _: u32) -> bool {
        false
    }
}

/// The system's NSS (`getpwnam(3)` and friends: files, LDAP, SSSD, …).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemNss;

impl Nss for SystemNss {
    fn user_by_name(&self, name: &str) -> Result<Option<(u32, u32)>, String> {
        nix::unistd::User::from_name(name)
            .map(|u| u.map(|u| (u.uid.as_raw(), u.gid.as_raw())))
            .map_err(|e| format!("looking up user `{name}` through NSS failed: {e}"))
    }
    fn group_by_name(&self, name: &str) -> Result<Option<u32>, String> {
        nix::unistd::Group::from_name(name)
            .map(|g| g.map(|g| g.gid.as_raw()))
            .map_err(|e| format!("looking up group `{name}` through NSS failed: {e}"))
    }
    fn uid_exists(&self, uid: u32) -> bool {
        // An NSS error is not "free": treat it as taken, so we never hand out a UID we could
        // not check.
        !matches!(
            nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)),
            Ok(None)
        )
    }
    fn gid_exists(&self, gid: u32) -> bool {
        !matches!(
            nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid)),
            Ok(None)
        )
    }
}

/// A user known to the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownUser {
    /// UID.
    pub uid: u32,
    /// Primary GID.
    pub gid: u32,
    /// The passwd line, when the user is in the local files.
    pub entry: Option<PasswdEntry>,
}

/// Everything the planner needs to know about the host.
#[derive(Debug, Clone)]
pub struct LocalView {
    /// `/etc/passwd` by name.
    pub users: BTreeMap<String, PasswdEntry>,
    /// `/etc/group` by name.
    pub groups: BTreeMap<String, GroupEntry>,
    /// `UID_MIN` from login.defs (1000 by default).
    pub uid_min: u32,
    /// `GID_MIN` from login.defs (1000 by default).
    pub gid_min: u32,
    /// `UID_MAX` from login.defs (60000 by default): accounts above it (nobody) are special.
    pub uid_max: u32,
    /// What is at `<home_base>/<name>` for names the planner may create.
    pub homes: BTreeMap<String, HomeState>,
    /// Content of our sudoers drop-in, if it exists.
    pub sudoers: Option<String>,
    /// Whether the main sudoers file includes the drop-in directory.
    pub sudoers_included: bool,
    /// Lines of the account files that could not be parsed.
    pub malformed: Vec<String>,
    /// Owners of the entries directly under the home base (kept homes of deleted accounts),
    /// with the entries' names: those numbers are not handed out to anyone else.
    pub home_owners: BTreeMap<u32, BTreeSet<String>>,
    /// Lookups beyond the files.
    pub nss: Arc<dyn Nss>,
    by_uid: BTreeSet<u32>,
    by_gid: BTreeSet<u32>,
    memberships: BTreeMap<String, BTreeSet<String>>,
}

impl LocalView {
    /// A view of the given files' content.
    pub fn new(users: Vec<PasswdEntry>, groups: Vec<GroupEntry>, nss: Arc<dyn Nss>) -> Self {
        let by_uid = users.iter().map(|u| u.uid).collect();
        let by_gid = groups.iter().map(|g| g.gid).collect();
        let mut memberships: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for g in &groups {
            for m in &g.members {
                memberships
                    .entry(m.clone())
                    .or_default()
                    .insert(g.name.clone());
            }
        }
        Self {
            users: users.into_iter().map(|u| (u.name.clone(), u)).collect(),
            groups: groups.into_iter().map(|g| (g.name.clone(), g)).collect(),
            uid_min: 1000,
            gid_min: 1000,
            uid_max: 60000,
            homes: BTreeMap::new(),
            sudoers: None,
            sudoers_included: true,
            malformed: Vec::new(),
            home_owners: BTreeMap::new(),
            nss,
            by_uid,
            by_gid,
            memberships,
        }
    }

    /// A user from the files or, failing that, NSS; `Err` when NSS could not answer.
    pub fn user(&self, name: &str) -> Result<Option<KnownUser>, String> {
        if let Some(e) = self.users.get(name) {
            return Ok(Some(KnownUser {
                uid: e.uid,
                gid: e.gid,
                entry: Some(e.clone()),
            }));
        }
        Ok(self.nss.user_by_name(name)?.map(|(uid, gid)| KnownUser {
            uid,
            gid,
            entry: None,
        }))
    }

    /// A group's GID from the files or NSS; `Err` when NSS could not answer.
    pub fn group_gid(&self, name: &str) -> Result<Option<u32>, String> {
        match self.groups.get(name) {
            Some(g) => Ok(Some(g.gid)),
            None => self.nss.group_by_name(name),
        }
    }

    /// True when a user or a group already uses this number (we keep UID = GID), or a home
    /// directory other than `<home_base>/<name>` belongs to it.
    pub fn id_taken_by_other(&self, id: u32, name: &str) -> bool {
        self.by_uid.contains(&id)
            || self.by_gid.contains(&id)
            || self
                .home_owners
                .get(&id)
                .is_some_and(|dirs| dirs.iter().any(|d| d != name))
            || self.nss.uid_exists(id)
            || self.nss.gid_exists(id)
    }

    /// The supplementary groups `name` is a member of, per `/etc/group` (indexed when the view
    /// was made).
    pub fn member_of(&self, name: &str) -> BTreeSet<String> {
        self.memberships.get(name).cloned().unwrap_or_default()
    }
}

/// Parses `/etc/passwd`; malformed lines are returned separately.
pub fn parse_passwd(text: &str) -> (Vec<PasswdEntry>, Vec<String>) {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for line in text.lines() {
        if skip_line(line) {
            continue;
        }
        let f: Vec<&str> = line.split(':').collect();
        match (
            f.as_slice(),
            f.get(2).and_then(|s| s.parse().ok()),
            f.get(3).and_then(|s| s.parse().ok()),
        ) {
            ([name, _, _, _, gecos, home, shell], Some(uid), Some(gid)) => out.push(PasswdEntry {
                name: (*name).to_string(),
                uid,
                gid,
                gecos: (*gecos).to_string(),
                home: PathBuf::from(home),
                shell: PathBuf::from(shell),
            }),
            _ => bad.push(format!("passwd: {line}")),
        }
    }
    (out, bad)
}

/// Parses `/etc/group`; malformed lines are returned separately.
pub fn parse_group(text: &str) -> (Vec<GroupEntry>, Vec<String>) {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for line in text.lines() {
        if skip_line(line) {
            continue;
        }
        let f: Vec<&str> = line.split(':').collect();
        match (f.as_slice(), f.get(2).and_then(|s| s.parse().ok())) {
            ([name, _, _, members], Some(gid)) => out.push(GroupEntry {
                name: (*name).to_string(),
                gid,
                members: members
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(str::to_string)
                    .collect(),
            }),
            _ => bad.push(format!("group: {line}")),
        }
    }
    (out, bad)
}

fn skip_line(line: &str) -> bool {
    let t = line.trim();
    // `+`/`-` lines are NIS compat entries: NSS answers for them.
    t.is_empty() || t.starts_with('#') || t.starts_with('+') || t.starts_with('-')
}

/// `UID_MIN`, `GID_MIN` and `UID_MAX` from login.defs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginDefs {
    /// `UID_MIN` (default 1000).
    pub uid_min: u32,
    /// `GID_MIN` (default 1000).
    pub gid_min: u32,
    /// `UID_MAX` (default 60000).
    pub uid_max: u32,
}

/// Reads login.defs text; absent or unparsable keys keep shadow's defaults.
pub fn parse_login_defs(text: &str) -> LoginDefs {
    let mut d = LoginDefs {
        uid_min: 1000,
        gid_min: 1000,
        uid_max: 60000,
    };
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next().and_then(|v| v.parse().ok())) {
            (Some("UID_MIN"), Some(v)) => d.uid_min = v,
            (Some("GID_MIN"), Some(v)) => d.gid_min = v,
            (Some("UID_MAX"), Some(v)) => d.uid_max = v,
            _ => {}
        }
    }
    d
}

/// True when the sudoers text includes `dir` (`@includedir`/`#includedir`, as sudo reads them).
pub fn sudoers_includes(text: &str, dir: &Path) -> bool {
    text.lines().any(|l| {
        let mut w = l.split_whitespace();
        matches!(w.next(), Some("@includedir" | "#includedir"))
            && w.next().map(Path::new) == Some(dir)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lines() {
        let (u, bad) = parse_passwd(
            "root:x:0:0:root:/root:/bin/bash\n# comment\n+@nis\nalice:x:20001:20001:ssm-companion:/home/alice:/bin/bash\nbroken:x:abc:1::/:/bin/sh\nshort:x:1\n",
        );
        assert_eq!(u.len(), 2);
        assert_eq!(u[1].name, "alice");
        assert_eq!(u[1].home, PathBuf::from("/home/alice"));
        assert_eq!(bad.len(), 2);
    }

    #[test]
    fn group_lines() {
        let (g, bad) = parse_group("sudo:x:27:bob,alice\nempty:x:100:\nbad:x::\n");
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].members, ["bob", "alice"]);
        assert!(g[1].members.is_empty());
        assert_eq!(bad.len(), 1);
    }

    #[test]
    fn login_defs() {
        assert_eq!(
            parse_login_defs("# x\nUID_MIN\t\t 1500\nGID_MIN 2000\nUID_MAX 70000\n"),
            LoginDefs {
                uid_min: 1500,
                gid_min: 2000,
                uid_max: 70000
            }
        );
        assert_eq!(
            parse_login_defs(""),
            LoginDefs {
                uid_min: 1000,
                gid_min: 1000,
                uid_max: 60000
            }
        );
    }

    #[test]
    fn sudoers_include_forms() {
        let d = Path::new("/etc/sudoers.d");
        assert!(sudoers_includes("@includedir /etc/sudoers.d\n", d));
        assert!(sudoers_includes("#includedir /etc/sudoers.d\n", d));
        assert!(!sudoers_includes("# includedir /etc/sudoers.d\n", d));
        assert!(!sudoers_includes("@includedir /etc/other\n", d));
    }

    #[test]
    fn view_answers_from_files_then_nss() {
        let (u, _) = parse_passwd("alice:x:20001:20001::/home/alice:/bin/bash\n");
        let (g, _) = parse_group("docker:x:999:alice\nalice:x:20001:\n");
        let v = LocalView::new(u, g, Arc::new(FilesOnly));
        assert_eq!(v.user("alice").unwrap().map(|u| u.uid), Some(20001));
        assert!(v.user("bob").unwrap().is_none());
        assert!(v.id_taken_by_other(999, "x"));
        assert!(v.id_taken_by_other(20001, "x"));
        assert!(!v.id_taken_by_other(20002, "x"));
        let mut v = v;
        v.home_owners.insert(20002, ["olduser".to_string()].into());
        assert!(
            v.id_taken_by_other(20002, "x"),
            "a kept home's owner is taken"
        );
        assert!(
            !v.id_taken_by_other(20002, "olduser"),
            "but not for that home's own name"
        );
        assert_eq!(
            v.member_of("alice").into_iter().collect::<Vec<_>>(),
            ["docker"]
        );
    }
}
