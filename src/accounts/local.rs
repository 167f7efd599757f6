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

/// True when nsswitch.conf answers `passwd` and `group` only from the local files (`files`,
/// and `systemd`, whose extra users — DynamicUser services, systemd-homed — have IDs above
/// `UID_MAX`, outside any `uid_range` that config check accepts, and whose names `useradd`
/// itself still refuses). Then the files ssm-companion parses *are* the NSS answer and no
/// lookup is needed. A missing file, `compat`, `sss`, `ldap`, `winbind`, … mean "ask NSS".
pub fn nss_is_local(nsswitch: Option<&str>) -> bool {
    let Some(text) = nsswitch else {
        return false;
    };
    let sources = |db: &str| -> Option<Vec<String>> {
        text.lines()
            .map(|l| l.split('#').next().unwrap_or(""))
            .find_map(|l| {
                l.trim()
                    .strip_prefix(db)?
                    .strip_prefix(':')
                    .map(str::to_string)
            })
            .map(|rest| {
                rest.split_whitespace()
                    // `[NOTFOUND=return]` and the like are actions, not sources.
                    .filter(|w| !w.starts_with('['))
                    .map(str::to_string)
                    .collect()
            })
    };
    ["passwd", "group"].iter().all(|db| {
        sources(db).is_some_and(|s| {
            !s.is_empty() && s.iter().all(|src| src == "files" || src == "systemd")
        })
    })
}

/// What [`prefetch`] learned, in front of the real NSS: answers for the names and IDs asked in
/// advance (in parallel, within one deadline); anything else goes to `inner`, each call within
/// what is left of the deadline (a hung directory makes the answer an error — "taken" for an
/// ID — never a stalled sync).
#[derive(Debug)]
pub struct PrefetchedNss {
    users: BTreeMap<String, Result<Option<(u32, u32)>, String>>,
    groups: BTreeMap<String, Result<Option<u32>, String>>,
    uids: BTreeMap<u32, bool>,
    gids: BTreeMap<u32, bool>,
    inner: Arc<dyn Nss>,
    deadline: std::time::Instant,
    timeout: std::time::Duration,
}

/// One lookup of a prefetch.
#[derive(Debug, Clone)]
enum Ask {
    User(String),
    Group(String),
    Uid(u32),
    Gid(u32),
}

#[derive(Debug)]
enum Answer {
    User(String, Result<Option<(u32, u32)>, String>),
    Group(String, Result<Option<u32>, String>),
    Uid(u32, bool),
    Gid(u32, bool),
}

fn ask(nss: &dyn Nss, q: Ask) -> Answer {
    match q {
        Ask::User(n) => {
            let r = nss.user_by_name(&n);
            Answer::User(n, r)
        }
        Ask::Group(n) => {
            let r = nss.group_by_name(&n);
            Answer::Group(n, r)
        }
        Ask::Uid(u) => Answer::Uid(u, nss.uid_exists(u)),
        Ask::Gid(g) => Answer::Gid(g, nss.gid_exists(g)),
    }
}

/// How many lookups run at once (directories answer several clients at a time; more threads
/// than this only queue up in sssd/nslcd).
const LOOKUP_THREADS: usize = 8;

/// Asks `inner` for every name (as user and as group) and every ID (as UID and as GID), on a
/// few threads, waiting at most `timeout` in all. Lookups still running at the deadline are
/// abandoned (their threads end when NSS answers; nothing waits for them) and count as errors.
pub fn prefetch(
    inner: Arc<dyn Nss>,
    names: &BTreeSet<String>,
    ids: &BTreeSet<u32>,
    timeout: std::time::Duration,
) -> PrefetchedNss {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};
    let deadline = std::time::Instant::now() + timeout;
    let mut queue: std::collections::VecDeque<Ask> = names
        .iter()
        .flat_map(|n| [Ask::User(n.clone()), Ask::Group(n.clone())])
        .chain(ids.iter().flat_map(|&i| [Ask::Uid(i), Ask::Gid(i)]))
        .collect();
    let total = queue.len();
    let mut out = PrefetchedNss {
        users: BTreeMap::new(),
        groups: BTreeMap::new(),
        uids: BTreeMap::new(),
        gids: BTreeMap::new(),
        inner: inner.clone(),
        deadline,
        timeout,
    };
    if total == 0 {
        return out;
    }
    let queue = Arc::new(Mutex::new(std::mem::take(&mut queue)));
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    for _ in 0..LOOKUP_THREADS.min(total) {
        let (queue, stop, tx, inner) = (queue.clone(), stop.clone(), tx.clone(), inner.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let next = queue.lock().map(|mut q| q.pop_front()).unwrap_or(None);
                let Some(q) = next else { break };
                if tx.send(ask(inner.as_ref(), q)).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let mut received = 0;
    while received < total {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(a) => {
                received += 1;
                out.record(a);
            }
            Err(_) => break,
        }
    }
    stop.store(true, Ordering::Relaxed);
    if received < total {
        tracing::warn!(
            "NSS answered {received} of {total} lookups within {}: the rest count as unknown this cycle (a hung LDAP/SSSD?)",
            humantime::format_duration(timeout)
        );
    }
    out
}

impl PrefetchedNss {
    fn record(&mut self, a: Answer) {
        match a {
            Answer::User(n, r) => {
                self.users.insert(n, r);
            }
            Answer::Group(n, r) => {
                self.groups.insert(n, r);
            }
            Answer::Uid(u, b) => {
                self.uids.insert(u, b);
            }
            Answer::Gid(g, b) => {
                self.gids.insert(g, b);
            }
        }
    }

    /// Asks `inner` on a thread, waiting no longer than the prefetch's deadline.
    fn late(&self, q: Ask) -> Option<Answer> {
        let left = self
            .deadline
            .saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return None;
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let inner = self.inner.clone();
        std::thread::spawn(move || {
            let _ = tx.send(ask(inner.as_ref(), q));
        });
        rx.recv_timeout(left).ok()
    }

    fn no_answer(&self, what: &str) -> String {
        format!(
            "looking up {what} through NSS gave no answer within accounts.lookup_timeout ({}; a hung LDAP/SSSD?)",
            humantime::format_duration(self.timeout)
        )
    }
}

impl Nss for PrefetchedNss {
    fn user_by_name(&self, name: &str) -> Result<Option<(u32, u32)>, String> {
        if let Some(r) = self.users.get(name) {
            return r.clone();
        }
        match self.late(Ask::User(name.to_string())) {
            Some(Answer::User(_, r)) => r,
            _ => Err(self.no_answer(&format!("user `{name}`"))),
        }
    }
    fn group_by_name(&self, name: &str) -> Result<Option<u32>, String> {
        if let Some(r) = self.groups.get(name) {
            return r.clone();
        }
        match self.late(Ask::Group(name.to_string())) {
            Some(Answer::Group(_, r)) => r,
            _ => Err(self.no_answer(&format!("group `{name}`"))),
        }
    }
    fn uid_exists(&self, uid: u32) -> bool {
        if let Some(b) = self.uids.get(&uid) {
            return *b;
        }
        // No answer: taken, so nothing is handed out on a guess.
        !matches!(self.late(Ask::Uid(uid)), Some(Answer::Uid(_, false)))
    }
    fn gid_exists(&self, gid: u32) -> bool {
        if let Some(b) = self.gids.get(&gid) {
            return *b;
        }
        !matches!(self.late(Ask::Gid(gid)), Some(Answer::Gid(_, false)))
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
    /// Users and groups named in the host's sysusers.d files, with the file naming each.
    pub sysusers: BTreeMap<String, PathBuf>,
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
            sysusers: BTreeMap::new(),
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

    /// The group of the local files with this GID, if any.
    pub fn group_by_gid(&self, gid: u32) -> Option<&GroupEntry> {
        if !self.by_gid.contains(&gid) {
            return None;
        }
        self.groups.values().find(|g| g.gid == gid)
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

/// The user and group names a sysusers.d file declares (`u`, `g` and both names of `m`
/// lines; `r` ranges and comments are skipped). Pure.
pub fn parse_sysusers(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let (Some(kind), Some(name)) = (words.next(), words.next()) else {
            continue;
        };
        // `u!` (a locked user, systemd 256) is a user too.
        match kind.trim_end_matches('!') {
            "u" | "g" => names.push(name.to_string()),
            "m" => {
                names.push(name.to_string());
                names.extend(words.next().map(str::to_string));
            }
            _ => {}
        }
    }
    names.retain(|n| n != "-" && !n.is_empty());
    names
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
    fn which_nsswitch_lines_mean_the_files_alone() {
        let local = |t: &str| nss_is_local(Some(t));
        assert!(local("passwd: files\ngroup: files\n"));
        assert!(local(
            "passwd:         files systemd\ngroup:          files systemd\nhosts: files dns\n"
        ));
        assert!(local(
            "passwd: files [NOTFOUND=return] systemd # comment\ngroup: files\n"
        ));
        assert!(!local("passwd: files sss\ngroup: files sss\n"));
        assert!(!local("passwd: files\ngroup: files ldap\n"));
        assert!(!local("passwd: compat\ngroup: compat\n"));
        assert!(!local("passwd: files\n"), "no group line");
        assert!(!local("# passwd: files\n"));
        assert!(!nss_is_local(None), "no nsswitch.conf: ask NSS");
    }

    /// A directory that answers some names, fails others and hangs on one.
    #[derive(Debug)]
    struct SlowDirectory;

    impl Nss for SlowDirectory {
        fn user_by_name(&self, name: &str) -> Result<Option<(u32, u32)>, String> {
            match name {
                "hang" => {
                    crate::clock::sleep_blocking(std::time::Duration::from_secs(30));
                    Ok(None)
                }
                "carol" => Ok(Some((70001, 70001))),
                "broken" => Err("sssd: connection refused".into()),
                _ => Ok(None),
            }
        }
        fn group_by_name(&self, _: &str) -> Result<Option<u32>, String> {
            Ok(None)
        }
        fn uid_exists(&self, uid: u32) -> bool {
            uid == 70001
        }
        fn gid_exists(&self, _: u32) -> bool {
            false
        }
    }

    #[test]
    fn prefetched_lookups_answer_within_one_deadline() {
        let names: BTreeSet<String> = ["alice", "carol", "broken", "hang"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let t = std::time::Instant::now();
        let nss = prefetch(
            Arc::new(SlowDirectory),
            &names,
            &[70001, 20001].into(),
            std::time::Duration::from_millis(300),
        );
        assert!(
            t.elapsed() < std::time::Duration::from_secs(5),
            "a hung lookup does not stall the sync: {:?}",
            t.elapsed()
        );
        assert_eq!(nss.user_by_name("alice"), Ok(None));
        assert_eq!(nss.user_by_name("carol"), Ok(Some((70001, 70001))));
        assert!(nss.user_by_name("broken").is_err());
        let hung = nss.user_by_name("hang").unwrap_err();
        assert!(
            hung.contains("no answer within accounts.lookup_timeout"),
            "{hung}"
        );
        assert!(nss.uid_exists(70001));
        assert!(!nss.uid_exists(20001));
        // Past the deadline, what was not asked in advance is unknown: an ID counts as taken.
        assert!(nss.uid_exists(20002));
        assert!(nss.user_by_name("dave").is_err());
    }

    #[test]
    fn sysusers_lines() {
        let text = "# comment\nu systemd-coredump - \"systemd Core Dumper\"\ng docker -\nm alice wheel\nr - 500-900\nu! locked 999 \"x\" /var/empty\n\n";
        assert_eq!(
            parse_sysusers(text),
            ["systemd-coredump", "docker", "alice", "wheel", "locked"]
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
