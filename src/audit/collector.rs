//! The session collector: turns listings of the agent's session files into start and end events
//! in the spool, with the set of open sessions as its checkpoint.
//!
//! The checkpoint is the spool's position for the `sessions` source — `{"open": {"<session id>":
//! <start ms>, …}}`, written in the same record as the event that changed it — so after a crash
//! the spool itself says which sessions were open: a restart neither repeats a start nor loses
//! an end. What the end event needs besides (owner, user, document) is kept in
//! `<state>/audit/sessions.json`, written before the start is spooled; when it is lost the end
//! event still names the session and its duration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ocsf;
use super::session::{self, Change, Found, SessionInfo};
use super::spool::{Spool, SpoolError};

/// The spool source name of session events.
pub const SOURCE: &str = "sessions";
/// The open sessions' details, in the audit directory.
pub const DETAILS_FILE: &str = "sessions.json";
/// The most open sessions the checkpoint names (a position is at most 64 KiB): beyond, a restart
/// may report a session's start twice (with the same `metadata.uid`).
pub const MAX_TRACKED: usize = 1000;

/// The host, as every event names it.
#[derive(Debug, Clone, Default)]
pub struct Host {
    /// `device`.
    pub device: ocsf::Device,
    /// `cloud`.
    pub cloud: Option<ocsf::Cloud>,
    /// The alert rules every event is marked with before it is spooled.
    pub alerts: std::sync::Arc<super::alert::Alerts>,
    /// The redaction of command lines (`audit.redact`).
    pub redact: std::sync::Arc<super::redact::Redactor>,
}

impl Host {
    /// What every event goes through before it is spooled: secrets masked, then the alert
    /// rules (which so never see a secret either).
    pub fn prepare(&self, event: &mut ocsf::Event) {
        self.redact.event(event);
        self.alerts.mark(event);
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Checkpoint {
    open: BTreeMap<String, i64>,
}

/// What a pass did.
#[derive(Debug, Default)]
pub struct Pass {
    /// The events spooled, in order.
    pub spooled: Vec<ocsf::Event>,
    /// True when the spool was full: the rest waits for the next pass (the listing is replayable).
    pub paused: bool,
    /// Files that could not be read as sessions yet, with why.
    pub unreadable: BTreeMap<String, String>,
}

/// The checkpoint naming `open` (at most [`MAX_TRACKED`] sessions).
fn checkpoint(open: &BTreeMap<String, SessionInfo>) -> String {
    let c = Checkpoint {
        open: open
            .iter()
            .take(MAX_TRACKED)
            .map(|(id, s)| (id.clone(), s.started_ms))
            .collect(),
    };
    serde_json::to_string(&c).unwrap_or_default()
}

/// Writes the open sessions' details (a failure is logged: the ends then name only the session).
fn save_details(path: &Path, open: &BTreeMap<String, SessionInfo>) {
    if let Err(e) =
        crate::state::ensure_dir(path.parent().unwrap_or(Path::new("."))).and_then(|()| {
            let json = serde_json::to_vec(open).unwrap_or_default();
            crate::state::write_atomic(path, &json, 0o600)
        })
    {
        tracing::warn!("audit: cannot save the open sessions' details: {e}");
    }
}

/// The collector's state.
#[derive(Debug)]
pub struct Sessions {
    open: BTreeMap<String, SessionInfo>,
    agent_state_dir: PathBuf,
    details: PathBuf,
}

impl Sessions {
    /// Restores the open sessions from the spool's checkpoint (and their details from
    /// `audit_dir`). A checkpoint that cannot be read counts as no open session (logged): the
    /// sessions running now are then reported as started, with their own start times and the
    /// same `metadata.uid` as before.
    pub fn restore(spool: &Spool, agent_state_dir: &Path, audit_dir: &Path) -> Self {
        let details_path = audit_dir.join(DETAILS_FILE);
        let details: BTreeMap<String, SessionInfo> = crate::state::read_json(&details_path)
            .unwrap_or_else(|e| {
                tracing::warn!(
                    "audit: {e}: open sessions' details are lost (their ends name only the session)"
                );
                None
            })
            .unwrap_or_default();
        let checkpoint = spool
            .position(SOURCE)
            .map(serde_json::from_str::<Checkpoint>);
        let open = match checkpoint {
            None => BTreeMap::new(),
            Some(Err(e)) => {
                tracing::warn!(
                    "audit: the sessions checkpoint in the spool is unreadable ({e}): sessions running now are reported as started"
                );
                BTreeMap::new()
            }
            Some(Ok(c)) => c
                .open
                .into_iter()
                .filter(|(id, _)| session::valid_id(id))
                .map(|(id, started_ms)| {
                    let info = details
                        .get(&id)
                        .filter(|d| d.started_ms == started_ms)
                        .cloned()
                        .unwrap_or_else(|| SessionInfo {
                            id: id.clone(),
                            started_ms,
                            ..SessionInfo::default()
                        });
                    (id, info)
                })
                .collect(),
        };
        Self {
            open,
            agent_state_dir: agent_state_dir.to_path_buf(),
            details: details_path,
        }
    }

    /// The sessions open now.
    pub fn open(&self) -> &BTreeMap<String, SessionInfo> {
        &self.open
    }

    /// Lists the session files, spools a start for each new session and an end for each one
    /// gone (`now_ms` is its end), and moves the checkpoint with each record.
    pub fn pass(
        &mut self,
        spool: &mut Spool,
        host: &Host,
        now_ms: i64,
    ) -> Result<Pass, SpoolError> {
        let listing = session::list(&self.agent_state_dir, now_ms);
        let mut pass = Pass {
            unreadable: listing
                .iter()
                .filter_map(|(id, f)| match f {
                    Found::Unreadable(why) => Some((id.clone(), why.clone())),
                    Found::Session(_) => None,
                })
                .collect(),
            ..Pass::default()
        };
        for change in session::reconcile(&self.open, &listing) {
            // Spool with the checkpoint that includes this change; keep it only once spooled.
            let mut open = self.open.clone();
            let mut event = match &change {
                Change::Start(s) => {
                    open.insert(s.id.clone(), (**s).clone());
                    // The details first: whatever a checkpoint names has them.
                    save_details(&self.details, &open);
                    session::start_event(s, &self.device(host, s), host.cloud.as_ref())
                }
                Change::End(s) => {
                    open.remove(&s.id);
                    session::end_event(s, now_ms, &self.device(host, s), host.cloud.as_ref())
                }
            };
            event.metadata.sequence = Some(spool.next_seq());
            host.prepare(&mut event);
            let body = serde_json::to_vec(&event).unwrap_or_default();
            match spool.append(SOURCE, &checkpoint(&open), &body) {
                Ok(_) => {
                    self.open = open;
                    if matches!(change, Change::End(_)) {
                        save_details(&self.details, &self.open);
                    }
                    pass.spooled.push(event);
                }
                Err(SpoolError::Full { .. }) => {
                    pass.paused = true;
                    return Ok(pass);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(pass)
    }

    /// The device an event names: the host's, with the session file's instance id when the host
    /// has none (a hybrid host without IMDS).
    fn device(&self, host: &Host, s: &SessionInfo) -> ocsf::Device {
        let mut d = host.device.clone();
        if d.instance_uid.is_none() && !s.instance_id.is_empty() {
            d.instance_uid = Some(s.instance_id.clone());
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::spool::{self, Options, Read};

    /// 2026-12-05T10:00:00Z, the sessions' start in [`state_file`].
    const T0: i64 = 1_796_464_800_000;

    fn state_file(id: &str) -> String {
        format!(
            r#"{{"DocumentInformation":{{"DocumentID":"{id}","InstanceID":"i-0123456789abcdef0","DocumentName":"SSM-SessionManagerRunShell","RunAsUser":"alice","SessionOwner":"arn:aws:iam::123456789012:user/alice","ProcInfo":{{"Pid":77,"StartTime":"2026-12-05T10:00:00Z"}}}},"DocumentType":"StartSession","InstancePluginsInformation":[{{"Configuration":{{"SessionId":"{id}","PluginName":"Standard_Stream","RunAsEnabled":true,"RunAsUser":"alice"}}}}]}}"#
        )
    }

    fn kinds(dir: &Path) -> Vec<String> {
        spool::read(dir, 0, usize::MAX)
            .unwrap()
            .into_iter()
            .filter_map(|r| match r {
                Read::Record(r) => {
                    let e: ocsf::Event = serde_json::from_slice(&r.body).unwrap();
                    Some(format!("{} {}", e.activity_name, e.session.unwrap().uid))
                }
                Read::Gap { .. } => None,
            })
            .collect()
    }

    #[test]
    fn a_restart_neither_repeats_a_start_nor_loses_an_end() {
        let agent = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let current = agent
            .path()
            .join("i-0123456789abcdef0/document/state/current");
        std::fs::create_dir_all(&current).unwrap();
        let spool_dir = state.path().join("spool");
        let host = Host::default();
        let opts = Options::default();
        std::fs::write(current.join("alice-01"), state_file("alice-01")).unwrap();
        std::fs::write(current.join("alice-02"), "{").unwrap(); // half written
        {
            let mut spool = Spool::open(&spool_dir, opts.clone()).unwrap();
            let mut s = Sessions::restore(&spool, agent.path(), state.path());
            let p = s.pass(&mut spool, &host, 1_000).unwrap();
            assert_eq!(p.spooled.len(), 1);
            assert!(p.unreadable.contains_key("alice-02"));
            assert!(s.pass(&mut spool, &host, 2_000).unwrap().spooled.is_empty());
            // No sync: the checkpoint comes back from the records themselves (the spool's own
            // tests cover a torn tail after kill -9).
            drop(spool);
        }
        std::fs::write(current.join("alice-02"), state_file("alice-02")).unwrap();
        std::fs::remove_file(current.join("alice-01")).unwrap();
        let mut spool = Spool::open(&spool_dir, opts).unwrap();
        let mut s = Sessions::restore(&spool, agent.path(), state.path());
        assert_eq!(s.open().len(), 1);
        assert_eq!(s.open()["alice-01"].user, "alice", "details restored");
        let p = s.pass(&mut spool, &host, T0 + 90_000).unwrap();
        assert_eq!(p.spooled.len(), 2);
        let end = p.spooled.iter().find(|e| e.activity_id == 2).unwrap();
        assert_eq!(end.user.as_ref().unwrap().name.as_deref(), Some("alice"));
        assert_eq!(end.duration, Some(90_000));
        assert_eq!(
            kinds(&spool_dir),
            ["Logon alice-01", "Logon alice-02", "Logoff alice-01"]
        );
    }

    #[test]
    fn a_full_spool_pauses_the_listing_and_loses_nothing() {
        let agent = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let current = agent
            .path()
            .join("mi-0123456789abcdef0/document/state/current");
        std::fs::create_dir_all(&current).unwrap();
        let spool_dir = state.path().join("spool");
        let opts = Options {
            max_bytes: 2500,
            segment_bytes: 1 << 20,
            sync_every: std::time::Duration::from_secs(1),
        };
        let mut spool = Spool::open(&spool_dir, opts).unwrap();
        let mut s = Sessions::restore(&spool, agent.path(), state.path());
        for i in 0..3 {
            let id = format!("bob-0{i}");
            std::fs::write(current.join(&id), state_file(&id)).unwrap();
        }
        let p = s.pass(&mut spool, &Host::default(), 1_000).unwrap();
        assert!(p.paused, "the third start does not fit");
        let spooled = p.spooled.len();
        assert!(spooled < 3);
        assert_eq!(s.open().len(), spooled, "what was not spooled is not open");
        // The hybrid host's id comes from the session file.
        assert_eq!(
            p.spooled[0].device.instance_uid.as_deref(),
            Some("i-0123456789abcdef0")
        );
    }
}
