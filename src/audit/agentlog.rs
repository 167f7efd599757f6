//! The agent-log source: sessions that failed to start because their Run As user does not exist,
//! read from the agent's own log (ssm-agent.md §11.1):
//!
//! ```text
//! … ERROR [ssm-session-worker] [<session id>] [DataBackend] [pluginName=Standard_Stream] Unable to start command: failed to start pty since RunAs user <user> does not exist
//! ```
//!
//! The line names the session and the user, not the principal: that comes from the session's
//! state file while it was open, else from the agent's `Parsing AgentMessage … Payload: {…
//! "SessionId": …, "SessionOwner": …}` line, read from the same log.
//!
//! The log files are followed by inode ([`crate::follow`]); their offsets are the source's
//! position in the spool, written with each failure event. A restart reads again from the last
//! failure spooled (at most [`LIMIT`] bytes of each file): a failure read twice is the same event
//! (`metadata.uid` from `<session id>/failed`).

use std::collections::BTreeMap;
use std::path::Path;

use super::collector::Host;
use super::ocsf;
use super::session::{self, SessionInfo};
use super::spool::{Spool, SpoolError};
use crate::agent_log::{self, LOG_FILE};
use crate::follow::{Follower, Offsets};

/// The spool source name.
pub const SOURCE: &str = "agent-log";
/// The most read of each log file per pass (and on the first start).
pub const LIMIT: u64 = 8 << 20;
/// The most session owners remembered from `Payload` lines.
const MAX_OWNERS: usize = 1000;

/// A session that could not start because its Run As user does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAsFailure {
    /// The session.
    pub session: String,
    /// The missing user.
    pub user: String,
    /// The principal, when known.
    pub owner: String,
    /// When (ms since the epoch).
    pub at_ms: i64,
    /// The agent's words.
    pub reason: String,
}

/// The session id of a `[ssm-session-worker] [<id>]` line.
fn worker_session(message: &str) -> Option<&str> {
    let rest = message.split("[ssm-session-worker] [").nth(1)?;
    let id = rest.split(']').next()?;
    session::valid_id(id).then_some(id)
}

/// The user of a `… RunAs user <user> does not exist` message.
fn missing_user(message: &str) -> Option<&str> {
    let rest = message.split("since RunAs user ").nth(1)?;
    let user = rest
        .strip_suffix(" does not exist")
        .or_else(|| rest.split_once(" does not exist").map(|(u, _)| u))?;
    // The name reached `sh -c` unquoted; keep what the agent printed, bounded.
    (!user.is_empty() && user.len() <= 256 && !user.contains('\n')).then_some(user)
}

/// `SessionId` and `SessionOwner` of a `Parsing AgentMessage … Payload: {…}` line.
fn payload_owner(message: &str) -> Option<(String, String)> {
    let json = message.split("Payload: ").nth(1)?;
    let v: serde_json::Value = serde_json::from_str(json.trim()).ok()?;
    let id = v.get("SessionId")?.as_str()?;
    let owner = v.get("SessionOwner")?.as_str()?;
    session::valid_id(id).then(|| (id.to_string(), owner.to_string()))
}

/// The Run As failures among the agent's log records, with owners from `owners` (updated with
/// every `Payload` line seen).
pub fn failures(
    records: &[agent_log::Record],
    owners: &mut BTreeMap<String, String>,
) -> Vec<RunAsFailure> {
    let mut out = Vec::new();
    for r in records {
        if let Some((id, owner)) = payload_owner(&r.message) {
            if owners.len() >= MAX_OWNERS
                && let Some(first) = owners.keys().next().cloned()
            {
                owners.remove(&first);
            }
            owners.insert(id, owner);
            continue;
        }
        let (Some(id), Some(user)) = (worker_session(&r.message), missing_user(&r.message)) else {
            continue;
        };
        let at_ms = crate::clock::epoch_ms(r.time);
        out.push(RunAsFailure {
            session: id.to_string(),
            user: user.to_string(),
            owner: owners.get(id).cloned().unwrap_or_default(),
            at_ms,
            reason: format!("Run As user `{user}` does not exist on this host"),
        });
    }
    out
}

/// What a pass found.
#[derive(Debug, Default)]
pub struct Pass {
    /// The failure events spooled.
    pub spooled: Vec<ocsf::Event>,
    /// The failures spooled (for the accounts capability's sync request).
    pub failures: Vec<RunAsFailure>,
    /// The spool was full: the lines are read again at the next pass.
    pub paused: bool,
}

/// The source's state.
#[derive(Debug)]
pub struct AgentLog {
    follower: Follower,
    owners: BTreeMap<String, String>,
}

impl AgentLog {
    /// Resumes from the spool's position (the offsets of the last failure spooled); without
    /// one, the recent history of the current log is read.
    pub fn restore(spool: &Spool) -> Self {
        let follower = match spool.position(SOURCE).map(serde_json::from_str::<Offsets>) {
            Some(Ok(o)) => Follower::resume(LOG_FILE, &o),
            Some(Err(e)) => {
                tracing::warn!(
                    "audit: the agent-log position in the spool is unreadable ({e}): the recent log is read again"
                );
                Follower::new(LOG_FILE)
            }
            None => Follower::new(LOG_FILE),
        };
        Self {
            follower,
            owners: BTreeMap::new(),
        }
    }

    /// Reads what the log gained and spools a failure event for each Run As failure.
    /// `open`: the open sessions (their owners).
    pub fn pass(
        &mut self,
        log_dir: &Path,
        spool: &mut Spool,
        host: &Host,
        open: &BTreeMap<String, SessionInfo>,
    ) -> Result<Pass, SpoolError> {
        let before = self.follower.clone();
        let chunks = match self.follower.poll(log_dir, LIMIT) {
            Ok(c) => c,
            // No log (yet), or unreadable: the health capability reports it.
            Err(_) => return Ok(Pass::default()),
        };
        let records: Vec<agent_log::Record> = chunks
            .iter()
            .flat_map(|c| agent_log::parse(&c.text))
            .collect();
        let found = failures(&records, &mut self.owners);
        let mut pass = Pass::default();
        let n = found.len();
        for (i, f) in found.into_iter().enumerate() {
            let mut s = open.get(&f.session).cloned().unwrap_or_default();
            s.id.clone_from(&f.session);
            s.user.clone_from(&f.user);
            s.run_as_requested.clone_from(&f.user);
            s.run_as_enabled = true;
            if s.owner.is_empty() {
                s.owner.clone_from(&f.owner);
            }
            let mut device = host.device.clone();
            if device.instance_uid.is_none() && !s.instance_id.is_empty() {
                device.instance_uid = Some(s.instance_id.clone());
            }
            let mut event =
                session::failed_event(&s, f.at_ms, &f.reason, &device, host.cloud.as_ref());
            event.metadata.sequence = Some(spool.next_seq());
            host.prepare(&mut event);
            // The last failure of the pass carries the offsets past everything read; earlier
            // ones the offsets before it (a crash in between reads them again: same events).
            let offsets = if i + 1 == n {
                self.follower.offsets()
            } else {
                before.offsets()
            };
            let position = serde_json::to_string(&offsets).unwrap_or_default();
            let body = serde_json::to_vec(&event).unwrap_or_default();
            match spool.append(SOURCE, &position, &body) {
                Ok(_) => {
                    pass.spooled.push(event);
                    pass.failures.push(RunAsFailure {
                        owner: s.owner,
                        ..f
                    });
                }
                Err(SpoolError::Full { .. }) => {
                    // Read again at the next pass; what was spooled has the same ids then.
                    self.follower = before;
                    pass.paused = true;
                    return Ok(pass);
                }
                Err(e) => {
                    self.follower = before;
                    return Err(e);
                }
            }
        }
        Ok(pass)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::spool::Options;

    const PAYLOAD: &str = r#"2026-12-05 10:00:00 INFO [MGSInteractor] Parsing AgentMessage 0b1c, Payload: {"DocumentName":"SSM-SessionManagerRunShell","SessionId":"erin-0c20c0d902585cf86","RunAsUser":"erin","SessionOwner":"arn:aws:iam::123456789012:user/erin"}"#;
    const FAILED: &str = "2026-12-05 10:00:01 ERROR [ssm-session-worker] [erin-0c20c0d902585cf86] [DataBackend] [pluginName=Standard_Stream] Unable to start command: failed to start pty since RunAs user erin does not exist";

    #[test]
    fn a_failure_names_the_session_the_user_and_the_owner() {
        let mut owners = BTreeMap::new();
        let records = agent_log::parse(&format!("{PAYLOAD}\n{FAILED}\n\n"));
        let f = failures(&records, &mut owners);
        assert_eq!(f.len(), 1);
        assert_eq!(
            (
                f[0].session.as_str(),
                f[0].user.as_str(),
                f[0].owner.as_str()
            ),
            (
                "erin-0c20c0d902585cf86",
                "erin",
                "arn:aws:iam::123456789012:user/erin"
            )
        );
        // Other start failures and other lines are not Run As failures.
        let other = agent_log::parse(
            "2026-12-05 10:00:02 ERROR [ssm-session-worker] [x-01] [DataBackend] Unable to start command: Failed to start pty: no pty\n2026-12-05 10:00:03 INFO RunAs user bob does not exist\n",
        );
        assert!(failures(&other, &mut owners).is_empty());
    }

    #[test]
    fn failures_are_spooled_once_and_read_again_after_a_crash_as_the_same_events() {
        let log = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let spool_dir = state.path().join("spool");
        let file = log.path().join(LOG_FILE);
        std::fs::write(&file, format!("{PAYLOAD}\n{FAILED}\n")).unwrap();
        let host = Host::default();
        let open = BTreeMap::new();
        let uid = {
            let mut spool = Spool::open(&spool_dir, Options::default()).unwrap();
            let mut src = AgentLog::restore(&spool);
            let p = src.pass(log.path(), &mut spool, &host, &open).unwrap();
            assert_eq!(p.spooled.len(), 1);
            assert_eq!(p.spooled[0].status_id, Some(2));
            assert!(
                src.pass(log.path(), &mut spool, &host, &open)
                    .unwrap()
                    .spooled
                    .is_empty()
            );
            p.spooled[0].metadata.uid.clone()
        };
        // More lines, then a restart: only the new failure.
        let second = FAILED.replace("erin-0c20c0d902585cf86", "erin-0c20c0d902585cf87");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&file)
            .unwrap();
        std::io::Write::write_all(&mut f, format!("{second}\n").as_bytes()).unwrap();
        let mut spool = Spool::open(&spool_dir, Options::default()).unwrap();
        let mut src = AgentLog::restore(&spool);
        let p = src.pass(log.path(), &mut spool, &host, &open).unwrap();
        assert_eq!(p.spooled.len(), 1, "{:?}", p.spooled);
        assert_ne!(p.spooled[0].metadata.uid, uid);
        assert_eq!(p.failures[0].session, "erin-0c20c0d902585cf87");
    }
}
