//! The one event schema: OCSF, pinned to [`VERSION`]. Every audit event is built here, as the
//! class that fits what happened:
//!
//! | What | OCSF class (`class_uid`) | activity |
//! |---|---|---|
//! | a session starts / ends | Authentication (3002) | Logon (1) / Logoff (2) |
//! | a session fails to start (Run As user missing, …) | Authentication (3002) | Logon (1), `status_id` Failure (2) |
//! | an account is created, repaired, retired, deleted, given or denied sudo | Account Change (3001) | Create (1), Other (99), Lock (9), Delete (6), Attach/Detach Policy (7/8) |
//! | `sudo` runs a command (or is refused) | Process Activity (1007) | Launch (1), `status_id` Failure when refused |
//! | `su` switches user (or is refused) | Authentication (3002) | Account Switch (7) |
//! | events were lost (a source that cannot pause, a damaged record) | Event Log Activity (1008) | Other (99), `status_id` Failure |
//!
//! `metadata.uid` is deterministic: the same source position always gives the same id, so a
//! replay after a crash produces the same event, and a consumer can drop duplicates by it.
//! The device is the host (`instance_uid`, `hostname`, `region`), the cloud the AWS account; the
//! IAM principal is the actor, the OS account the `user`; the session id is `session.uid`.
//! What OCSF has no attribute for (the SSM document, the requested Run As user, the logging
//! destinations the session asked for) is under `unmapped.ssm`.

use serde::{Deserialize, Serialize};

/// The OCSF schema version every event declares.
pub const VERSION: &str = "1.7.0";

/// An OCSF event (the attributes ssm-companion uses; absent ones are left out).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The class (3002 Authentication, 3001 Account Change, 1008 Event Log Activity, …).
    pub class_uid: u32,
    /// The class's name.
    pub class_name: String,
    /// Its category (3 Identity & Access Management, 1 System Activity).
    pub category_uid: u32,
    /// The category's name.
    pub category_name: String,
    /// The activity within the class.
    pub activity_id: u32,
    /// The activity's name.
    pub activity_name: String,
    /// `class_uid * 100 + activity_id`.
    pub type_uid: u64,
    /// `<class>: <activity>`.
    pub type_name: String,
    /// 1 Informational, 2 Low, 3 Medium, 4 High, 5 Critical (alert rules raise it).
    pub severity_id: u32,
    /// The severity's name.
    pub severity: String,
    /// When it happened, in milliseconds since the epoch.
    pub time: i64,
    /// 1 Success, 2 Failure.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub status_id: Option<u32>,
    /// The status's name.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub status: Option<String>,
    /// Why it failed, in the source's words.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub status_detail: Option<String>,
    /// One line an on-call engineer reads.
    pub message: String,
    /// Product, version, deterministic uid, source position.
    pub metadata: Metadata,
    /// This host.
    pub device: Device,
    /// The AWS account and region, when known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cloud: Option<Cloud>,
    /// Who acted: the IAM principal (session owner), or the process that changed an account.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub actor: Option<Actor>,
    /// The OS account logged into, or changed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub user: Option<User>,
    /// The Session Manager session.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub session: Option<Session>,
    /// The process that started the session (`ssm-session-worker`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub logon_process: Option<Process>,
    /// The process launched (Process Activity: what sudo ran, as whom, where).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub process: Option<Process>,
    /// 10 Remote Interactive (a shell), 3 Network (port forwarding), 4 Batch (commands).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub logon_type_id: Option<u32>,
    /// Always true for a Session Manager session.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub is_remote: Option<bool>,
    /// The service the session came through.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub service: Option<Service>,
    /// Session start, in milliseconds since the epoch (on a logoff).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub start_time: Option<i64>,
    /// Session end (on a logoff).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub end_time: Option<i64>,
    /// How long the session lasted, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub duration: Option<i64>,
    /// How many events a gap stands for.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub count: Option<u64>,
    /// The source's own bytes (a piece of a session's terminal output).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub raw_data: Option<String>,
    /// What OCSF has no attribute for (`ssm`: the session's document and requests).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub unmapped: Option<serde_json::Map<String, serde_json::Value>>,
}

/// `metadata`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// [`VERSION`].
    pub version: String,
    /// ssm-companion and its version.
    pub product: Product,
    /// Deterministic: `<source>:<position>` hashed with the host's id (see [`uid`]).
    pub uid: String,
    /// The collector (`sessions`, `journal`, `accounts`, `spool`).
    pub log_name: String,
    /// Where in the source it was read (a file's session id, a journal cursor, …).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub log_provider: Option<String>,
    /// The source's own event id, when it has one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub original_event_uid: Option<String>,
    /// The spool's sequence number, once spooled.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sequence: Option<u64>,
    /// Alert rules that matched (`alert:<name>`).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub labels: Vec<String>,
}

/// `metadata.product`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    /// `ssm-companion`.
    pub name: String,
    /// `ssm-companion`.
    pub vendor_name: String,
    /// This build's version.
    pub version: String,
}

impl Default for Product {
    fn default() -> Self {
        Self {
            name: "ssm-companion".into(),
            vendor_name: "ssm-companion".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// `device`: this host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// 6 Virtual (an EC2 instance), 1 Server (a hybrid host), 0 Unknown.
    pub type_id: u32,
    /// The host name.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub hostname: Option<String>,
    /// The instance id (`i-…`, or `mi-…` on a hybrid host).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub instance_uid: Option<String>,
    /// The region.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub region: Option<String>,
}

/// `cloud`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cloud {
    /// `AWS`.
    pub provider: String,
    /// The region.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub region: Option<String>,
    /// The AWS account.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub account: Option<Account>,
}

/// An account (`type_id` 10 AWS Account, 9 Linux Account, 3 IAM user, 4 IAM role).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The account type.
    pub type_id: u32,
    /// Its id.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub uid: Option<String>,
    /// Its name.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub name: Option<String>,
}

/// `actor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The principal.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub user: Option<User>,
    /// The process that acted.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub process: Option<Process>,
}

/// `user`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The name (an OS user name; an IAM principal's short name).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub name: Option<String>,
    /// The id (a UID; an IAM ARN).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub uid: Option<String>,
    /// 1 User, 2 Admin (root), 0 Unknown.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub type_id: Option<u32>,
    /// The account it belongs to.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub account: Option<Account>,
}

/// `session`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The Session Manager session id.
    pub uid: String,
    /// When it started (ms).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub created_time: Option<i64>,
    /// Its terminal (`pts/3`), when known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub terminal: Option<String>,
    /// Always true.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub is_remote: Option<bool>,
}

/// `process`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    /// The pid.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pid: Option<u32>,
    /// The name.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub name: Option<String>,
    /// The command line.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cmd_line: Option<String>,
    /// The user it runs as.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub user: Option<User>,
    /// Its working directory.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub working_directory: Option<String>,
    /// The Session Manager session it belongs to.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub session: Option<Session>,
    /// The program it runs.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub file: Option<File>,
    /// Its parent (the pid only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub parent_process: Option<Box<Process>>,
}

/// `file`: a program's file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct File {
    /// Its name (the last component of the path).
    pub name: String,
    /// Its path.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub path: Option<String>,
    /// 1 Regular File.
    pub type_id: u32,
}

/// `service`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// `AWS Systems Manager Session Manager`.
    pub name: String,
}

/// The severity names of `severity_id`.
pub fn severity_name(id: u32) -> &'static str {
    match id {
        1 => "Informational",
        2 => "Low",
        3 => "Medium",
        4 => "High",
        5 => "Critical",
        6 => "Fatal",
        99 => "Other",
        _ => "Unknown",
    }
}

/// The event classes used, with their category.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// 3002, Identity & Access Management.
    Authentication,
    /// 3001, Identity & Access Management.
    AccountChange,
    /// 1008, System Activity.
    EventLogActivity,
    /// 1007, System Activity.
    ProcessActivity,
}

impl Class {
    fn uid(self) -> u32 {
        match self {
            Class::Authentication => 3002,
            Class::AccountChange => 3001,
            Class::EventLogActivity => 1008,
            Class::ProcessActivity => 1007,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Class::Authentication => "Authentication",
            Class::AccountChange => "Account Change",
            Class::EventLogActivity => "Event Log Activity",
            Class::ProcessActivity => "Process Activity",
        }
    }

    fn category(self) -> (u32, &'static str) {
        match self {
            Class::Authentication | Class::AccountChange => (3, "Identity & Access Management"),
            Class::EventLogActivity | Class::ProcessActivity => (1, "System Activity"),
        }
    }
}

/// Where an event came from: the collector, its position in its source, and the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// The collector (`sessions`, `journal`, `accounts`, `spool`).
    pub source: String,
    /// The position in that source: the same position is the same event.
    pub position: String,
}

/// The deterministic `metadata.uid` of an event: the first 128 bits of the SHA-256 of the
/// host's instance id, the source and the position, in hex — stable across releases and hosts'
/// restarts, distinct between hosts.
pub fn uid(instance: &str, origin: &Origin) -> String {
    use sha2::Digest;
    let text = format!("{instance}\u{0}{}\u{0}{}", origin.source, origin.position);
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new event of `class`/`activity` at `time_ms`, from `origin`, on `device`.
pub fn event(
    class: Class,
    activity: (u32, &str),
    time_ms: i64,
    origin: &Origin,
    device: &Device,
    cloud: Option<&Cloud>,
) -> Event {
    let (category_uid, category_name) = class.category();
    Event {
        class_uid: class.uid(),
        class_name: class.name().into(),
        category_uid,
        category_name: category_name.into(),
        activity_id: activity.0,
        activity_name: activity.1.into(),
        type_uid: u64::from(class.uid()) * 100 + u64::from(activity.0),
        type_name: format!("{}: {}", class.name(), activity.1),
        severity_id: 1,
        severity: severity_name(1).into(),
        time: time_ms,
        status_id: None,
        status: None,
        status_detail: None,
        message: String::new(),
        metadata: Metadata {
            version: VERSION.into(),
            product: Product::default(),
            uid: uid(device.instance_uid.as_deref().unwrap_or_default(), origin),
            log_name: origin.source.clone(),
            log_provider: Some(origin.position.clone()),
            original_event_uid: None,
            sequence: None,
            labels: Vec::new(),
        },
        device: device.clone(),
        cloud: cloud.cloned(),
        actor: None,
        user: None,
        session: None,
        logon_process: None,
        process: None,
        logon_type_id: None,
        is_remote: None,
        service: None,
        start_time: None,
        end_time: None,
        duration: None,
        count: None,
        raw_data: None,
        unmapped: None,
    }
}

impl Event {
    /// Marks success (1) or failure (2), with the source's reason.
    pub fn with_status(mut self, ok: bool, detail: Option<String>) -> Self {
        self.status_id = Some(if ok { 1 } else { 2 });
        self.status = Some(if ok { "Success" } else { "Failure" }.into());
        self.status_detail = detail;
        self
    }

    /// Raises the severity (never lowers it).
    pub fn raise_severity(&mut self, id: u32) {
        if id > self.severity_id && id != 99 {
            self.severity_id = id;
            self.severity = severity_name(id).into();
        }
    }
}

/// The lost-events event: `count` events of `source` were dropped (a full spool for a source
/// that cannot pause) or damaged (a record that failed its CRC), between two positions.
pub fn gap(
    time_ms: i64,
    origin: &Origin,
    device: &Device,
    cloud: Option<&Cloud>,
    count: Option<u64>,
    why: &str,
) -> Event {
    let mut e = event(
        Class::EventLogActivity,
        (99, "Other"),
        time_ms,
        origin,
        device,
        cloud,
    )
    .with_status(false, Some(why.to_string()));
    e.count = count;
    e.severity_id = 3;
    e.severity = severity_name(3).into();
    e.message = match count {
        Some(n) => format!("audit gap: {n} event(s) lost: {why}"),
        None => format!("audit gap: {why}"),
    };
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(p: &str) -> Origin {
        Origin {
            source: "sessions".into(),
            position: p.into(),
        }
    }

    #[test]
    fn the_same_position_is_the_same_uid() {
        let a = uid("i-0123", &origin("s-1/start"));
        assert_eq!(a, uid("i-0123", &origin("s-1/start")));
        assert_eq!(a.len(), 32);
        assert_ne!(a, uid("i-0123", &origin("s-1/end")));
        assert_ne!(a, uid("i-0456", &origin("s-1/start")));
        // No ambiguity between the parts.
        assert_ne!(
            uid("i-0123", &origin("a\u{0}b")),
            uid("i-0123\u{0}sessions\u{0}a", &origin("b"))
        );
    }

    #[test]
    fn type_uid_and_names_follow_the_class() {
        let d = Device {
            type_id: 6,
            instance_uid: Some("i-0123".into()),
            ..Device::default()
        };
        let e = event(
            Class::Authentication,
            (2, "Logoff"),
            5,
            &origin("x"),
            &d,
            None,
        );
        assert_eq!(
            (e.class_uid, e.category_uid, e.type_uid),
            (3002, 3, 300_202)
        );
        assert_eq!(e.type_name, "Authentication: Logoff");
        assert_eq!(e.metadata.version, VERSION);
        let g = gap(5, &origin("y"), &d, None, Some(3), "spool full");
        assert_eq!(
            (g.class_uid, g.type_uid, g.status_id),
            (1008, 100_899, Some(2))
        );
        assert!(g.message.contains("3 event(s) lost"));
        let mut e = e;
        e.raise_severity(4);
        e.raise_severity(2);
        assert_eq!((e.severity_id, e.severity.as_str()), (4, "High"));
    }
}
