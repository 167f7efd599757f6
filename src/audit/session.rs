//! Session lifecycle from the agent's document-state files
//! (`<agent state>/<instance id>/document/state/current/<session id>`, ssm-agent.md §10.2): a
//! file appears (renamed in from `pending/`) when a session starts and is deleted when it ends.
//!
//! A listing of every `current/` directory is the truth; inotify only says when to look again.
//! [`reconcile`] compares a listing with the sessions known to be open (the checkpoint kept with
//! the spool) and says which sessions started and which ended — so a restart, a kill -9 or a
//! missed inotify event never gives a duplicate start or loses an end. A file that cannot be
//! parsed yet (the agent rewrites it in place: a reader can see it empty or half written) is
//! neither a start nor an end: it is looked at again on the next pass.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ocsf;

/// What a session's state file says (the fields that matter for an audit).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The session id (the file's name, and `DocumentInformation.DocumentID`).
    pub id: String,
    /// The IAM principal that started it (`SessionOwner`, an ARN).
    pub owner: String,
    /// The Run As user the principal's tag asked for (`DocumentInformation.RunAsUser`; may be
    /// empty).
    #[serde(default)]
    pub run_as_requested: String,
    /// The OS user the shell runs as: root with `runAsElevated`, the Run As user when Run As is
    /// on, else `ssm-user`.
    pub user: String,
    /// Whether Run As was on.
    #[serde(default)]
    pub run_as_enabled: bool,
    /// `runAsElevated` in the session document: a root shell.
    #[serde(default)]
    pub run_as_elevated: bool,
    /// The session document (`SSM-SessionManagerRunShell`, `AWS-StartPortForwardingSession`, …).
    #[serde(default)]
    pub document: String,
    /// The plugin: `Standard_Stream`, `InteractiveCommands`, `NonInteractiveCommands`, `Port`.
    #[serde(default)]
    pub session_type: String,
    /// The client's id.
    #[serde(default)]
    pub client_id: String,
    /// The instance (or managed instance) id the agent runs as.
    #[serde(default)]
    pub instance_id: String,
    /// The `ssm-session-worker` pid.
    #[serde(default)]
    pub worker_pid: Option<u32>,
    /// When the session started (ms since the epoch): the worker's start, else the document's
    /// creation, else when the file was first seen.
    pub started_ms: i64,
    /// Where the agent itself sends the session's log, as the session asked.
    #[serde(default)]
    pub logging: Logging,
}

/// The logging destinations a session asked the agent for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Logging {
    /// `OutputS3BucketName`.
    #[serde(default)]
    pub s3_bucket: String,
    /// `OutputS3KeyPrefix`.
    #[serde(default)]
    pub s3_prefix: String,
    /// `CloudWatchLogGroup`.
    #[serde(default)]
    pub cloudwatch_log_group: String,
    /// `CloudWatchStreamingEnabled`.
    #[serde(default)]
    pub cloudwatch_streaming: bool,
}

/// The most of a state file that is read: a real one is a few KiB.
const MAX_FILE: u64 = 1 << 20;

/// A session id as the file name gives it: the principal's name, `-`, 17 hex digits; treated as
/// opaque, but only characters an IAM name or role session name can hold, at most 256.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 256
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@=,+".contains(&b))
}

fn field<'a>(v: &'a serde_json::Value, path: &[&str]) -> Option<&'a serde_json::Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

fn text(v: &serde_json::Value, path: &[&str]) -> String {
    field(v, path)
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn flag(v: &serde_json::Value, path: &[&str]) -> bool {
    match field(v, path) {
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

fn millis(rfc3339: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .map(|t| t.timestamp_millis())
        .filter(|ms| *ms > 0)
}

/// Why a state file is not (yet) a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotASession {
    /// Not JSON, or not whole yet (the agent rewrites it in place): try again later.
    Unreadable(String),
    /// A document that is not a session (Run Command, State Manager): never one.
    Other(String),
}

/// Parses a state file's bytes. `id` is the file's name; `seen_ms` is when it was first seen
/// (the start time when the file gives none).
pub fn parse(id: &str, bytes: &[u8], seen_ms: i64) -> Result<SessionInfo, NotASession> {
    let v: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| NotASession::Unreadable(format!("not JSON yet: {e}")))?;
    let doc_type = text(&v, &["DocumentType"]);
    if doc_type != "StartSession" {
        return Err(NotASession::Other(format!(
            "DocumentType {:?} is not StartSession",
            doc_type.chars().take(40).collect::<String>()
        )));
    }
    let info = field(&v, &["DocumentInformation"])
        .cloned()
        .unwrap_or_default();
    let config = field(&v, &["InstancePluginsInformation"])
        .and_then(|p| p.get(0))
        .and_then(|p| p.get("Configuration"))
        .cloned()
        .unwrap_or_default();
    let doc_id = text(&info, &["DocumentID"]);
    if !doc_id.is_empty() && doc_id != id {
        return Err(NotASession::Other(format!(
            "DocumentID does not match the file name `{id}`"
        )));
    }
    let owner = Some(text(&info, &["SessionOwner"]))
        .filter(|o| !o.is_empty())
        .unwrap_or_else(|| text(&config, &["SessionOwner"]));
    let run_as_enabled = flag(&config, &["RunAsEnabled"]);
    let run_as_elevated = flag(&config, &["Properties", "linux", "runAsElevated"])
        || flag(&config, &["Properties", "runAsElevated"]);
    let run_as_requested = text(&info, &["RunAsUser"]);
    let effective = text(&config, &["RunAsUser"]);
    let user = if run_as_elevated {
        "root".to_string()
    } else if run_as_enabled {
        Some(effective)
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| run_as_requested.clone())
    } else {
        "ssm-user".to_string()
    };
    let pid = field(&info, &["ProcInfo", "Pid"])
        .and_then(serde_json::Value::as_u64)
        .and_then(|p| u32::try_from(p).ok())
        .filter(|p| *p > 0);
    let started_ms = millis(&text(&info, &["ProcInfo", "StartTime"]))
        .or_else(|| millis(&text(&info, &["CreatedDate"])))
        .unwrap_or(seen_ms);
    Ok(SessionInfo {
        id: id.to_string(),
        owner,
        run_as_requested,
        user,
        run_as_enabled,
        run_as_elevated,
        document: text(&info, &["DocumentName"]),
        session_type: Some(text(&config, &["PluginName"]))
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| text(&v, &["InstancePluginsInformation", "0", "Name"])),
        client_id: text(&info, &["ClientId"]),
        instance_id: text(&info, &["InstanceID"]),
        worker_pid: pid,
        started_ms,
        logging: Logging {
            s3_bucket: text(&config, &["OutputS3BucketName"]),
            s3_prefix: text(&config, &["OutputS3KeyPrefix"]),
            cloudwatch_log_group: text(&config, &["CloudWatchLogGroup"]),
            cloudwatch_streaming: flag(&config, &["CloudWatchStreamingEnabled"]),
        },
    })
}

/// One state file found by a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// A session.
    Session(Box<SessionInfo>),
    /// A file that is not readable as a session yet.
    Unreadable(String),
}

/// The `document/state/current/` directories under the agent's state directory: one per
/// instance or registration id.
pub fn current_dirs(agent_state_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(agent_state_dir) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path().join("document/state/current"))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// Lists every session state file: sessions by id. Files that are not sessions (other
/// documents) are left out; files that cannot be read yet are [`Found::Unreadable`]. `seen_ms`
/// stands in for a start time the file does not give.
pub fn list(agent_state_dir: &Path, seen_ms: i64) -> BTreeMap<String, Found> {
    use std::io::Read as _;
    let mut out = BTreeMap::new();
    for dir in current_dirs(agent_state_dir) {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            let Some(id) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if !valid_id(&id) {
                continue;
            }
            let mut bytes = Vec::new();
            let read = crate::state::open_regular(&e.path())
                .and_then(|f| f.take(MAX_FILE + 1).read_to_end(&mut bytes));
            let found = match read {
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(err) => Found::Unreadable(err.to_string()),
                Ok(_) if bytes.len() as u64 > MAX_FILE => {
                    Found::Unreadable(format!("larger than {} KiB", MAX_FILE >> 10))
                }
                Ok(_) => match parse(&id, &bytes, seen_ms) {
                    Ok(s) => Found::Session(Box::new(s)),
                    Err(NotASession::Other(_)) => continue,
                    Err(NotASession::Unreadable(why)) => Found::Unreadable(why),
                },
            };
            out.insert(id, found);
        }
    }
    out
}

/// What a listing changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A session not known before.
    Start(Box<SessionInfo>),
    /// A known session whose file is gone.
    End(Box<SessionInfo>),
}

/// Compares a listing with the open sessions: starts for sessions not open yet, ends for open
/// ones whose file is gone. A file that is there but unreadable keeps an open session open and
/// starts nothing until it can be read.
pub fn reconcile(
    open: &BTreeMap<String, SessionInfo>,
    listing: &BTreeMap<String, Found>,
) -> Vec<Change> {
    let mut changes = Vec::new();
    for (id, found) in listing {
        if let Found::Session(s) = found
            && !open.contains_key(id)
        {
            changes.push(Change::Start(s.clone()));
        }
    }
    let present: BTreeSet<&String> = listing.keys().collect();
    for (id, s) in open {
        if !present.contains(id) {
            changes.push(Change::End(Box::new(s.clone())));
        }
    }
    changes
}

/// The AWS account an IAM ARN belongs to, and the principal's short name (the user, or the
/// role session).
fn principal(arn: &str) -> (Option<String>, Option<String>) {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let account = parts
        .get(4)
        .filter(|a| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()))
        .map(|a| a.to_string());
    let resource = parts.get(5).copied().unwrap_or_default();
    let name = resource
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    (account, name)
}

fn logon_type(session_type: &str) -> u32 {
    match session_type {
        "Standard_Stream" | "InteractiveCommands" => 10,
        "Port" => 3,
        "NonInteractiveCommands" => 4,
        _ => 0,
    }
}

/// The IAM principal that started session `s`, as an event's `actor.user`.
pub fn owner_user(s: &SessionInfo) -> ocsf::User {
    let (account, name) = principal(&s.owner);
    ocsf::User {
        name,
        uid: Some(s.owner.clone()).filter(|o| !o.is_empty()),
        type_id: Some(1),
        account: account.map(|uid| ocsf::Account {
            type_id: 10,
            uid: Some(uid),
            name: None,
        }),
    }
}

fn base(
    s: &SessionInfo,
    activity: (u32, &str),
    time_ms: i64,
    position: String,
    device: &ocsf::Device,
    cloud: Option<&ocsf::Cloud>,
) -> ocsf::Event {
    let origin = ocsf::Origin {
        source: "sessions".into(),
        position,
    };
    let mut e = ocsf::event(
        ocsf::Class::Authentication,
        activity,
        time_ms,
        &origin,
        device,
        cloud,
    );
    e.actor = Some(ocsf::Actor {
        user: Some(owner_user(s)),
        process: None,
    });
    e.user = Some(ocsf::User {
        name: Some(s.user.clone()).filter(|u| !u.is_empty()),
        uid: None,
        type_id: Some(if s.user == "root" { 2 } else { 1 }),
        account: Some(ocsf::Account {
            type_id: 9,
            uid: None,
            name: None,
        }),
    });
    e.session = Some(ocsf::Session {
        uid: s.id.clone(),
        created_time: Some(s.started_ms),
        terminal: None,
        is_remote: Some(true),
    });
    e.logon_process = s.worker_pid.map(|pid| ocsf::Process {
        pid: Some(pid),
        name: Some("ssm-session-worker".into()),
        ..ocsf::Process::default()
    });
    e.logon_type_id = Some(logon_type(&s.session_type));
    e.is_remote = Some(true);
    e.service = Some(ocsf::Service {
        name: "AWS Systems Manager Session Manager".into(),
    });
    let ssm = serde_json::json!({
        "document": s.document,
        "session_type": s.session_type,
        "client_id": s.client_id,
        "run_as_requested": s.run_as_requested,
        "run_as_enabled": s.run_as_enabled,
        "run_as_elevated": s.run_as_elevated,
        "logging": s.logging,
    });
    let mut unmapped = serde_json::Map::new();
    unmapped.insert("ssm".into(), ssm);
    e.unmapped = Some(unmapped);
    e
}

/// The owner as a message names it.
fn owner_text(s: &SessionInfo) -> &str {
    if s.owner.is_empty() {
        "an unknown principal"
    } else {
        &s.owner
    }
}

/// The session start event (Authentication: Logon).
pub fn start_event(
    s: &SessionInfo,
    device: &ocsf::Device,
    cloud: Option<&ocsf::Cloud>,
) -> ocsf::Event {
    let mut e = base(
        s,
        (1, "Logon"),
        s.started_ms,
        format!("{}/start", s.id),
        device,
        cloud,
    )
    .with_status(true, None);
    e.message = format!(
        "session {} started: {} as `{}`{} ({})",
        s.id,
        owner_text(s),
        s.user,
        if s.run_as_elevated {
            " (runAsElevated: a root shell)"
        } else {
            ""
        },
        if s.session_type.is_empty() {
            "unknown type"
        } else {
            &s.session_type
        }
    );
    e
}

/// A piece of a session's terminal output (Authentication: Other, `Terminal Output`), read at
/// `at_ms` from `offset` of its `ipcTempFile.log`: the text in `raw_data`. Its id is
/// `<session id>/output@<offset>`: the same bytes read again are the same event.
pub fn output_event(
    s: &SessionInfo,
    at_ms: i64,
    offset: u64,
    bytes: u64,
    text: String,
    device: &ocsf::Device,
    cloud: Option<&ocsf::Cloud>,
) -> ocsf::Event {
    let mut e = base(
        s,
        (99, "Terminal Output"),
        at_ms,
        format!("{}/output@{offset}", s.id),
        device,
        cloud,
    );
    e.metadata.log_name = "transcript".into();
    e.message = format!(
        "session {} output: {bytes} bytes at offset {offset} ({} as `{}`)",
        s.id,
        owner_text(s),
        s.user
    );
    e.unmapped.get_or_insert_default().insert(
        "transcript".into(),
        serde_json::json!({ "offset": offset, "bytes": bytes }),
    );
    e.raw_data = Some(text);
    e
}

/// A session that could not start (Authentication: Logon, `status_id` 2), at `at_ms`, with the
/// agent's reason. Its id is `<session id>/failed`: the same failure read again is the same
/// event.
pub fn failed_event(
    s: &SessionInfo,
    at_ms: i64,
    reason: &str,
    device: &ocsf::Device,
    cloud: Option<&ocsf::Cloud>,
) -> ocsf::Event {
    let mut e = base(
        s,
        (1, "Logon"),
        at_ms,
        format!("{}/failed", s.id),
        device,
        cloud,
    )
    .with_status(false, Some(reason.to_string()));
    e.metadata.log_name = "agent-log".into();
    e.message = format!(
        "session {} failed to start: {} as `{}`: {reason}",
        s.id,
        owner_text(s),
        s.user
    );
    e
}

/// The session end event (Authentication: Logoff), at `end_ms`.
pub fn end_event(
    s: &SessionInfo,
    end_ms: i64,
    device: &ocsf::Device,
    cloud: Option<&ocsf::Cloud>,
) -> ocsf::Event {
    let mut e = base(
        s,
        (2, "Logoff"),
        end_ms,
        format!("{}/end", s.id),
        device,
        cloud,
    )
    .with_status(true, None);
    let duration = end_ms.saturating_sub(s.started_ms).max(0);
    e.start_time = Some(s.started_ms);
    e.end_time = Some(end_ms);
    e.duration = Some(duration);
    e.message = format!(
        "session {} ended: {} as `{}` after {}",
        s.id,
        owner_text(s),
        s.user,
        humantime::format_duration(std::time::Duration::from_secs(
            u64::try_from(duration / 1000).unwrap_or(0)
        ))
    );
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "alice-0c20c0d902585cf86";

    fn state_file(run_as: &str, elevated: bool) -> String {
        format!(
            r#"{{
  "DocumentInformation": {{
    "DocumentID": "{ID}", "CommandID": "", "MessageID": "aws.ssm.{ID}.i-0123456789abcdef0",
    "InstanceID": "i-0123456789abcdef0", "CreatedDate": "2026-12-05T10:00:00.000Z",
    "DocumentName": "SSM-SessionManagerRunShell", "DocumentStatus": "InProgress",
    "RunAsUser": "{run_as}", "SessionOwner": "arn:aws:iam::123456789012:user/alice",
    "ClientId": "5e1c4d3a-0000-4000-8000-000000000001",
    "ProcInfo": {{"Pid": 4242, "StartTime": "2026-12-05T10:00:01.5Z"}}
  }},
  "DocumentType": "StartSession",
  "SchemaVersion": "1.0",
  "InstancePluginsInformation": [{{
    "Configuration": {{
      "SessionId": "{ID}", "PluginName": "Standard_Stream",
      "OutputS3BucketName": "audit-bucket", "OutputS3KeyPrefix": "sessions",
      "CloudWatchLogGroup": "", "CloudWatchStreamingEnabled": false,
      "RunAsEnabled": true, "RunAsUser": "{run_as}",
      "ShellProfile": {{"windows": "", "linux": ""}},
      "SessionOwner": "arn:aws:iam::123456789012:user/alice",
      "Properties": {{"linux": {{"runAsElevated": {elevated}}}}}
    }},
    "Name": "Standard_Stream"
  }}]
}}"#
        )
    }

    #[test]
    fn a_state_file_is_read_as_the_agent_writes_it() {
        let s = parse(ID, state_file("alice", false).as_bytes(), 7).unwrap();
        assert_eq!(s.owner, "arn:aws:iam::123456789012:user/alice");
        assert_eq!(
            (s.user.as_str(), s.run_as_requested.as_str()),
            ("alice", "alice")
        );
        assert_eq!(s.session_type, "Standard_Stream");
        assert_eq!(s.document, "SSM-SessionManagerRunShell");
        assert_eq!(s.worker_pid, Some(4242));
        assert_eq!(s.started_ms, 1_796_464_801_500);
        assert_eq!(s.logging.s3_bucket, "audit-bucket");
        assert!(!s.run_as_elevated);
        let root = parse(ID, state_file("alice", true).as_bytes(), 7).unwrap();
        assert!(root.run_as_elevated);
        assert_eq!(root.user, "root");
    }

    #[test]
    fn half_written_and_foreign_files_are_not_sessions() {
        let whole = state_file("alice", false);
        assert!(matches!(parse(ID, b"", 0), Err(NotASession::Unreadable(_))));
        assert!(matches!(
            parse(ID, &whole.as_bytes()[..100], 0),
            Err(NotASession::Unreadable(_))
        ));
        let command = whole.replace("\"StartSession\"", "\"SendCommand\"");
        assert!(matches!(
            parse(ID, command.as_bytes(), 0),
            Err(NotASession::Other(_))
        ));
        // A file whose name is not its session: never trusted.
        assert!(matches!(
            parse("bob-0000", whole.as_bytes(), 0),
            Err(NotASession::Other(_))
        ));
        for bad in ["", ".hidden", "a/b", "x y", "\u{1b}[2J", &"a".repeat(257)] {
            assert!(!valid_id(bad), "{bad:?}");
        }
        assert!(valid_id(ID) && valid_id("Role.Name@corp=x,y+z-011e8a35a1cd6e285"));
    }

    #[test]
    fn reconcile_never_repeats_a_start_nor_loses_an_end() {
        let s = |id: &str| SessionInfo {
            id: id.into(),
            user: "alice".into(),
            started_ms: 1,
            ..SessionInfo::default()
        };
        let mut open = BTreeMap::new();
        let mut listing = BTreeMap::new();
        listing.insert("a".to_string(), Found::Session(Box::new(s("a"))));
        listing.insert("b".to_string(), Found::Unreadable("half written".into()));
        let c = reconcile(&open, &listing);
        assert_eq!(c, [Change::Start(Box::new(s("a")))]);
        open.insert("a".to_string(), s("a"));
        // The same listing again (a restart from the checkpoint): nothing.
        assert!(reconcile(&open, &listing).is_empty());
        // b readable now: its start; a unreadable for a moment: still open, no end.
        listing.insert("b".to_string(), Found::Session(Box::new(s("b"))));
        listing.insert("a".to_string(), Found::Unreadable("rewritten".into()));
        assert_eq!(
            reconcile(&open, &listing),
            [Change::Start(Box::new(s("b")))]
        );
        open.insert("b".to_string(), s("b"));
        // a gone: its end, once.
        listing.remove("a");
        assert_eq!(reconcile(&open, &listing), [Change::End(Box::new(s("a")))]);
    }

    #[test]
    fn events_name_the_principal_the_user_and_the_session() {
        let s = parse(ID, state_file("alice", true).as_bytes(), 7).unwrap();
        let d = ocsf::Device {
            type_id: 6,
            instance_uid: Some("i-0123456789abcdef0".into()),
            ..ocsf::Device::default()
        };
        let start = start_event(&s, &d, None);
        assert_eq!(start.type_uid, 300_201);
        let actor = start.actor.as_ref().unwrap().user.as_ref().unwrap();
        assert_eq!(
            actor.uid.as_deref(),
            Some("arn:aws:iam::123456789012:user/alice")
        );
        assert_eq!(actor.name.as_deref(), Some("alice"));
        assert_eq!(actor.account.as_ref().unwrap().type_id, 10);
        assert_eq!(
            actor.account.as_ref().unwrap().uid.as_deref(),
            Some("123456789012")
        );
        assert_eq!(start.user.as_ref().unwrap().name.as_deref(), Some("root"));
        assert_eq!(start.session.as_ref().unwrap().uid, ID);
        assert!(start.message.contains("a root shell"), "{}", start.message);
        let end = end_event(&s, s.started_ms + 90_000, &d, None);
        assert_eq!((end.type_uid, end.duration), (300_202, Some(90_000)));
        assert_ne!(start.metadata.uid, end.metadata.uid);
        assert_eq!(start.metadata.uid, start_event(&s, &d, None).metadata.uid);
    }
}
