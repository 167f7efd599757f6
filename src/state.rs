//! The daemon's state directory and durable file writes.
//!
//! Invariants: every file we own on the host is replaced atomically (temp file in the same
//! directory → write → `fsync` → rename → `fsync` of the directory), so a crash leaves either the
//! old or the new content, never a mix; and one process at a time mutates accounts (an exclusive
//! `flock` on a lock file in the state directory).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// A state-directory operation that failed, with the path it was about.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Any I/O failure on a named path.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What we were doing ("cannot create", "cannot write", …).
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Another process holds the lock.
    #[error(
        "another ssm-companion process is changing accounts (lock {} is held); wait for it to finish",
        path.display()
    )]
    Busy {
        /// The lock file.
        path: PathBuf,
    },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StateError + 'a {
    move |source| StateError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `dir` and its parents when missing.
pub fn ensure_dir(dir: &Path) -> Result<(), StateError> {
    fs::create_dir_all(dir).map_err(io_err("cannot create", dir))
}

/// Writes `data` to `path` atomically with permission bits `mode`.
///
/// The temporary file is `.<name>.tmp*` in the same directory: a name with a dot, so tools that
/// scan directories (sudo's `includedir`) skip it.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), StateError> {
    write_atomic_checked(path, data, mode, |_| Ok::<(), StateError>(()))
}

/// Like [`write_atomic`], but runs `check` on the complete, synced temporary file before the
/// rename; an error from `check` leaves the target untouched (and removes the temporary file).
pub fn write_atomic_checked<E: From<StateError>>(
    path: &Path,
    data: &[u8],
    mode: u32,
    check: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), E> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    remove_stale_temps(dir, &name);
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}.tmp"))
        .permissions(fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .map_err(io_err("cannot create a temporary file in", dir))?;
    // The mode given at creation is reduced by the umask (the unit's UMask=0077 would make a
    // sudoers drop-in 0400, which sudo rejects, and a Prometheus textfile unreadable to the
    // exporter): set it explicitly.
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io_err("cannot set the mode of", tmp.path()))?;
    tmp.write_all(data)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(io_err("cannot write", tmp.path()))?;
    check(tmp.path())?;
    crate::failpoint!("write-atomic:{name}:before-rename");
    tmp.persist(path)
        .map_err(|e| e.error)
        .map_err(io_err("cannot rename into place", path))?;
    sync_dir(dir)?;
    Ok(())
}

/// Removes temporary files a crashed writer of `name` left in `dir` (`.<name>.tmp*`). Callers
/// hold the lock that serialises writers of `name`, so none of them is in use.
fn remove_stale_temps(dir: &Path, name: &str) {
    let prefix = format!(".{name}.tmp");
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        if e.file_name().to_string_lossy().starts_with(&prefix) {
            tracing::info!(
                "removing {}, left by an interrupted write",
                e.path().display()
            );
            let _ = fs::remove_file(e.path());
        }
    }
}

/// `fsync`s a directory so a rename or unlink in it is durable.
pub fn sync_dir(dir: &Path) -> Result<(), StateError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("cannot sync directory", dir))
}

/// Removes a file; a file that is already gone is success.
pub fn remove_file(path: &Path) -> Result<(), StateError> {
    match fs::remove_file(path) {
        Ok(()) => sync_dir(path.parent().unwrap_or(Path::new("."))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("cannot remove", path)(e)),
    }
}

/// The state directory (`/var/lib/ssm-companion` by default).
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

/// An exclusive lock held until dropped.
#[derive(Debug)]
pub struct StateLock {
    _lock: Flock<File>,
}

impl StateDir {
    /// Opens (creating with mode 0700 if needed) the state directory.
    pub fn open(root: &Path) -> Result<Self, StateError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(io_err("cannot create state directory", root))?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// A path inside the state directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Takes the exclusive lock `name` without waiting; [`StateError::Busy`] if held.
    pub fn try_lock(&self, name: &str) -> Result<StateLock, StateError> {
        let path = self.path(name);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err("cannot open lock file", &path))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(StateLock { _lock: lock }),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(StateError::Busy { path }),
            Err((_, e)) => Err(io_err("cannot lock", &path)(io::Error::from(e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A FIFO where a JSON file should be would block a reader for ever; a link to /dev/zero
    /// would fill memory. Both are refused at once, naming the file.
    #[test]
    fn only_regular_files_are_read_and_never_without_a_cap() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("identity_config.json");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let f = fifo.clone();
        std::thread::spawn(move || {
            let _ = tx.send(read_json::<serde_json::Value>(&f).map_err(|e| e.to_string()));
        });
        let got = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("reading a FIFO hung");
        let e = got.unwrap_err();
        assert!(
            e.contains("not a regular file") && e.contains("identity_config.json"),
            "{e}"
        );
        let zero = d.path().join("zero.json");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let e = read_json::<serde_json::Value>(&zero)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a regular file"), "{e}");
        let big = d.path().join("big.json");
        let len = usize::try_from(MAX_READ + 1).unwrap();
        fs::write(&big, vec![b' '; len]).unwrap();
        let e = read_json::<serde_json::Value>(&big)
            .unwrap_err()
            .to_string();
        assert!(e.contains("larger than"), "{e}");
    }

    #[test]
    fn atomic_write_replaces_content_and_sets_mode() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ledger.json");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o640).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
        // A temporary file left by a crashed writer is cleaned up by the next write.
        std::fs::write(d.path().join(".ledger.json.tmpXYZ"), b"partial").unwrap();
        write_atomic(&p, b"three", 0o640).unwrap();
        // No temporary files left behind.
        let names: Vec<_> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("ledger.json")]);
    }

    #[test]
    fn remove_missing_file_is_ok() {
        let d = tempfile::tempdir().unwrap();
        remove_file(&d.path().join("nope")).unwrap();
    }

    #[test]
    fn second_lock_is_busy() {
        let d = tempfile::tempdir().unwrap();
        let s = StateDir::open(&d.path().join("state")).unwrap();
        let _held = s.try_lock("accounts.lock").unwrap();
        let err = s.try_lock("accounts.lock").unwrap_err();
        assert!(matches!(err, StateError::Busy { .. }), "{err}");
        drop(_held);
        s.try_lock("accounts.lock").unwrap();
    }

    #[test]
    fn state_dir_is_private() {
        let d = tempfile::tempdir().unwrap();
        let s = StateDir::open(&d.path().join("state")).unwrap();
        assert_eq!(
            fs::metadata(s.root()).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }
}

/// Writes `value` as pretty JSON to `<state_dir>/<name>` atomically, with `mode`.
pub(crate) fn save_json<T: serde::Serialize>(
    state_dir: &Path,
    name: &str,
    value: &T,
    mode: u32,
) -> Result<(), StateError> {
    let mut text = serde_json::to_vec_pretty(value).unwrap_or_default();
    text.push(b'\n');
    write_atomic(&state_dir.join(name), &text, mode)
}

/// A JSON file that could not be loaded, with its path.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file exists but cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The file is not the JSON document it should be.
    #[error("{} is not valid: {source}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What the parser found.
        source: serde_json::Error,
    },
}

impl LoadError {
    /// A stable slug for scripts and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            LoadError::Read { .. } => "unreadable",
            LoadError::Invalid { .. } => "invalid",
        }
    }
}

/// The most a state or agent file is read into memory (a link to `/dev/zero` cannot fill it).
pub const MAX_READ: u64 = 16 << 20;

/// Opens `path` for reading only if it is a regular file, without blocking: a FIFO (or a
/// device) in its place is refused at once instead of hanging the reader.
pub fn open_regular(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)?;
    if f.metadata()?.is_file() {
        Ok(f)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ))
    }
}

/// Reads a regular file ([`open_regular`]) of at most [`MAX_READ`] bytes as text.
pub fn read_capped(path: &Path) -> io::Result<String> {
    use std::io::Read as _;
    let mut buf = Vec::new();
    open_regular(path)?
        .take(MAX_READ + 1)
        .read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_READ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {} MiB", MAX_READ >> 20),
        ));
    }
    String::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Reads `path` as JSON; `Ok(None)` when it does not exist, an error naming the path when it
/// cannot be read or is not what it should be.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, LoadError> {
    match read_capped(path) {
        Ok(t) => serde_json::from_str(&t)
            .map(Some)
            .map_err(|source| LoadError::Invalid {
                path: path.to_path_buf(),
                source,
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(LoadError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// [`read_json`] of `<state_dir>/<name>`.
pub(crate) fn load_json<T: serde::de::DeserializeOwned>(
    state_dir: &Path,
    name: &str,
) -> Result<Option<T>, LoadError> {
    read_json(&state_dir.join(name))
}

/// What the accounts capability last mapped, for the health capability's Run As readiness check
/// (the capabilities share state, never code): written by each accounts sync, read by `doctor`.
pub mod run_as {
    use std::path::Path;

    use serde::{Deserialize, Serialize};

    use super::StateError;

    /// File name in the state directory.
    pub const FILE_NAME: &str = "run-as-map.json";

    /// One OS user and the principals whose sessions start as it.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Mapped {
        /// The OS user.
        pub user: String,
        /// IAM principals (or other sources) mapping to it.
        pub principals: Vec<String>,
    }

    /// A tag value that cannot be an OS user: those principals' sessions fail.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Unusable {
        /// The principal.
        pub principal: String,
        /// Its `SSMSessionRunAs` value.
        pub value: String,
        /// Why (the accounts reason slug).
        pub reason: String,
    }

    /// The map.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    pub struct RunAsMap {
        /// When it was written (RFC 3339).
        pub generated_at: String,
        /// Whether the source read was complete.
        pub complete: bool,
        /// Users this host should have, in scope.
        pub mapped: Vec<Mapped>,
        /// Values refused as user names.
        pub unusable: Vec<Unusable>,
    }

    /// Writes the map atomically.
    pub fn save(state_dir: &Path, map: &RunAsMap) -> Result<(), StateError> {
        super::save_json(state_dir, FILE_NAME, map, 0o600)
    }

    /// Reads the map; `Ok(None)` when the accounts capability has not written one.
    pub fn load(state_dir: &Path) -> Result<Option<RunAsMap>, super::LoadError> {
        super::load_json(state_dir, FILE_NAME)
    }
}

/// How the accounts capability's last sync went, for the health capability's `accounts.sync`
/// check (shared state, not shared code): written after every `accounts apply` and daemon sync.
pub mod accounts_status {
    use std::path::Path;
    use std::time::SystemTime;

    use serde::{Deserialize, Serialize};

    use super::StateError;
    use crate::clock::serde_rfc3339;

    /// File name in the state directory.
    pub const FILE_NAME: &str = "accounts-status.json";

    /// A safety stop that holds part of a sync back until an operator acts or the condition
    /// clears: the host does not match the source, so the sync is not converged. (The accounts
    /// planner makes them; the health check reads them.)
    #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
    pub struct Hold {
        /// Stable slug: `retire-capped`, `empty-source`, `retire-blocked`,
        /// `ledger-unverified`, `ledger-entry-invalid`, `home-foreign`, `primary-group-drift`.
        pub code: String,
        /// The accounts held back (empty when the hold is about the whole ledger).
        pub users: Vec<String>,
        /// What is held and what to do.
        pub message: String,
    }

    impl Hold {
        /// `code [user, …]`, as logs and reports name it.
        pub fn label(&self) -> String {
            if self.users.is_empty() {
                self.code.clone()
            } else {
                format!("{} [{}]", self.code, self.users.join(", "))
            }
        }
    }

    /// The status.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct AccountsStatus {
        /// When the sync ran.
        #[serde(with = "serde_rfc3339")]
        pub at: SystemTime,
        /// The source as described in reports (`iam`, `file:/…`).
        pub source: String,
        /// Why the sync could not run at all (a corrupt ledger, an unreadable passwd file).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub error: Option<String>,
        /// The source read was complete.
        pub complete: bool,
        /// Problems of the read.
        #[serde(default)]
        pub problems: Vec<String>,
        /// Steps that failed or were not run.
        pub failed_steps: usize,
        /// Safety stops in force.
        #[serde(default)]
        pub holds: Vec<Hold>,
        /// Managed accounts after the sync.
        pub managed: usize,
        /// Complete read, no failure, no hold.
        pub converged: bool,
    }

    /// Writes the status atomically (0644: it names no secret, and monitoring may read it).
    pub fn save(state_dir: &Path, status: &AccountsStatus) -> Result<(), StateError> {
        super::save_json(state_dir, FILE_NAME, status, 0o644)
    }

    /// Reads the status; `Ok(None)` when no sync has recorded one.
    pub fn load(state_dir: &Path) -> Result<Option<AccountsStatus>, super::LoadError> {
        super::load_json(state_dir, FILE_NAME)
    }
}

/// What the audit shipper last knew, for the `audit.shipping` health check and the Prometheus
/// metrics (the shipper writes it; health reads it: neither names the other).
pub mod shipping_status {
    use std::path::Path;
    use std::time::SystemTime;

    use serde::{Deserialize, Serialize};

    use super::StateError;
    use crate::clock::serde_rfc3339;

    /// File name in the state directory: the S3 shipper's status.
    pub const FILE_NAME: &str = "audit-shipping.json";
    /// … and the CloudWatch Logs sink's (`objects` counts its `PutLogEvents` calls).
    pub const CLOUDWATCH_FILE: &str = "audit-cloudwatch.json";

    /// The status.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct ShippingStatus {
        /// When it was written.
        #[serde(with = "serde_rfc3339")]
        pub at: SystemTime,
        /// Where the records go (`s3://bucket/prefix`).
        pub destination: String,
        /// The last record in the destination.
        pub shipped_seq: u64,
        /// The last durable record in the spool.
        pub durable_seq: u64,
        /// Objects and bytes uploaded by this spool.
        pub objects: u64,
        /// Compressed bytes uploaded.
        pub bytes: u64,
        /// The last successful upload.
        #[serde(default, with = "serde_rfc3339::option")]
        pub last_upload: Option<SystemTime>,
        /// When the oldest record not yet shipped reached the spool (none: nothing waits).
        #[serde(default, with = "serde_rfc3339::option")]
        pub oldest_unshipped: Option<SystemTime>,
        /// The last failure, while it lasts.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub error: Option<String>,
        /// Its kind (`aws:AccessDenied`, `dns`, …), as health checks name causes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub cause: Option<String>,
        /// The failure needs an operator (permissions, a missing bucket or key): retrying alone
        /// will not fix it.
        #[serde(default)]
        pub needs_operator: bool,
    }

    /// Writes the status atomically (0644: it names no secret, and monitoring may read it).
    pub fn save(state_dir: &Path, status: &ShippingStatus) -> Result<(), StateError> {
        save_as(state_dir, FILE_NAME, status)
    }

    /// Reads the status; `Ok(None)` when the shipper has written none.
    pub fn load(state_dir: &Path) -> Result<Option<ShippingStatus>, super::LoadError> {
        load_from(state_dir, FILE_NAME)
    }

    /// Writes a sink's status under `file` ([`FILE_NAME`] or [`CLOUDWATCH_FILE`]).
    pub fn save_as(
        state_dir: &Path,
        file: &str,
        status: &ShippingStatus,
    ) -> Result<(), StateError> {
        super::save_json(state_dir, file, status, 0o644)
    }

    /// Reads a sink's status from `file`.
    pub fn load_from(
        state_dir: &Path,
        file: &str,
    ) -> Result<Option<ShippingStatus>, super::LoadError> {
        super::load_json(state_dir, file)
    }
}

/// What the exec capture last knew, for `audit status` and the `audit.exec` health check (the
/// audit loop writes it; health reads it).
pub mod exec_status {
    use std::path::Path;
    use std::time::SystemTime;

    use serde::{Deserialize, Serialize};

    use super::StateError;
    use crate::clock::serde_rfc3339;

    /// File name in the state directory.
    pub const FILE_NAME: &str = "audit-exec.json";

    /// A backend tried before the one that runs, and why it could not.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Tried {
        /// Its name (`ebpf`, `proc-connector`, `audit`).
        pub backend: String,
        /// Why it is not used.
        pub why: String,
    }

    /// The status.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct ExecStatus {
        /// When it was written.
        #[serde(with = "serde_rfc3339")]
        pub at: SystemTime,
        /// `audit.exec_backend` as set.
        pub setting: String,
        /// `audit.exec_scope`.
        pub scope: String,
        /// The backend that runs; none when none could start, or the capture is off.
        #[serde(default)]
        pub backend: Option<String>,
        /// The better ones that could not, in the order tried.
        #[serde(default)]
        pub tried: Vec<Tried>,
        /// Why the capture stopped or could not start.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub error: Option<String>,
        /// Processes of sessions tracked now.
        #[serde(default)]
        pub tracked: usize,
        /// Commands spooled by this run.
        #[serde(default)]
        pub commands: u64,
        /// Exec events the kernel dropped, or the full spool did, in this run.
        #[serde(default)]
        pub lost: u64,
    }

    /// Writes the status atomically (0644).
    pub fn save(state_dir: &Path, status: &ExecStatus) -> Result<(), StateError> {
        super::save_json(state_dir, FILE_NAME, status, 0o644)
    }

    /// Reads the status; `Ok(None)` when none was written.
    pub fn load(state_dir: &Path) -> Result<Option<ExecStatus>, super::LoadError> {
        super::load_json(state_dir, FILE_NAME)
    }
}
