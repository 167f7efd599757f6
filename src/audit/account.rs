//! Account changes as audit events. The accounts capability records each change as a journal
//! entry with `MESSAGE_ID` [`crate::events::ACCOUNT_CHANGE`] and `SSM_COMPANION_*` fields
//! (`crate::events::account_change`); the journal source reads them with sudo and su, so the
//! two capabilities share only the journal, and the cursor checkpoint covers both.
//!
//! | Action (`SSM_COMPANION_ACTION`) | OCSF Account Change activity |
//! |---|---|
//! | `create`, `resume` (a creation finished after a crash) | Create (1) |
//! | `reinstate` (a retiring account wanted again) | Enable (2) |
//! | `retire-start` (login locked, sudo withdrawn) | Lock (9) |
//! | `retire-finish` (the account deleted) | Delete (6) |
//! | `write-sudoers` (sudo granted) | Attach Policy (7) |
//! | `remove-sudoers` (sudo withdrawn) | Detach Policy (8) |
//! | `repair`, `retire-wait`, `forget`, `create-group`, `resume-group` | Other (99) |

use super::ocsf;
use super::privilege::Entry;

/// The spool source of account changes (the journal source's cursor covers them).
pub use super::journal::SOURCE;

/// The OCSF activity of an action.
pub fn activity(action: &str) -> (u32, &'static str) {
    match action {
        "create" | "resume" => (1, "Create"),
        "reinstate" => (2, "Enable"),
        "retire-start" => (9, "Lock"),
        "retire-finish" => (6, "Delete"),
        "write-sudoers" => (7, "Attach Policy"),
        "remove-sudoers" => (8, "Detach Policy"),
        _ => (99, "Other"),
    }
}

/// Whether ssm-companion wrote the entry: the kernel's `_COMM`, and root (the daemon and
/// `accounts apply` both run as root). Anything else carrying the `MESSAGE_ID` is forged.
pub fn trusted(e: &Entry) -> bool {
    e.comm == "ssm-companion" && e.uid == Some(0)
}

/// The event of an account change entry.
pub fn event(e: &Entry, device: &ocsf::Device, cloud: Option<&ocsf::Cloud>) -> ocsf::Event {
    let field = |k: &str| e.fields.get(k).map(String::as_str).unwrap_or_default();
    let action = field("SSM_COMPANION_ACTION");
    let origin = ocsf::Origin {
        source: SOURCE.into(),
        position: e.cursor.clone(),
    };
    let mut ev = ocsf::event(
        ocsf::Class::AccountChange,
        activity(action),
        e.realtime_us / 1000,
        &origin,
        device,
        cloud,
    );
    let subject = field("SSM_COMPANION_USER");
    ev.user = Some(ocsf::User {
        name: Some(subject.to_string()).filter(|s| !s.is_empty()),
        uid: Some(field("SSM_COMPANION_UID").to_string()).filter(|s| !s.is_empty()),
        type_id: Some(if subject == "root" { 2 } else { 1 }),
        account: Some(ocsf::Account {
            type_id: 9,
            uid: None,
            name: None,
        }),
    });
    // The principals whose tags asked for the account: the first is the actor, all are kept.
    let principals: Vec<&str> = field("SSM_COMPANION_PRINCIPALS")
        .split_whitespace()
        .collect();
    ev.actor = Some(ocsf::Actor {
        user: principals.first().map(|p| ocsf::User {
            name: None,
            uid: Some((*p).to_string()),
            type_id: None,
            account: None,
        }),
        process: Some(ocsf::Process {
            pid: e.pid,
            name: Some("ssm-companion".into()),
            cmd_line: Some(e.cmdline.clone()).filter(|c| !c.is_empty()),
            ..ocsf::Process::default()
        }),
    });
    let failed = field("SSM_COMPANION_OUTCOME") == "failed";
    ev = ev.with_status(!failed, failed.then(|| e.message.clone()));
    ev.message = e.message.clone();
    ev.metadata.original_event_uid = Some(e.cursor.clone());
    let mut unmapped = serde_json::Map::new();
    unmapped.insert(
        "account".into(),
        serde_json::json!({ "action": action, "principals": principals }),
    );
    ev.unmapped = Some(unmapped);
    ev
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(comm: &str, uid: u32, outcome: &str) -> Entry {
        let v = serde_json::json!({
            "__CURSOR": "s=1;i=9", "__REALTIME_TIMESTAMP": "1796464830000000",
            "MESSAGE": "account create dave: useradd", "MESSAGE_ID": crate::events::ACCOUNT_CHANGE,
            "SSM_COMPANION_ACTION": "create", "SSM_COMPANION_USER": "dave",
            "SSM_COMPANION_UID": "2001",
            "SSM_COMPANION_PRINCIPALS": "arn:aws:iam::123456789012:user/dave arn:aws:iam::123456789012:role/Ops",
            "SSM_COMPANION_OUTCOME": outcome,
            "_COMM": comm, "_UID": uid.to_string(), "_PID": "77",
        });
        Entry::from_json(&v).unwrap()
    }

    #[test]
    fn a_change_names_the_account_and_the_principal_that_caused_it() {
        let e = entry("ssm-companion", 0, "done");
        assert!(trusted(&e));
        let ev = event(&e, &ocsf::Device::default(), None);
        assert_eq!((ev.class_uid, ev.activity_id), (3001, 1));
        let user = ev.user.as_ref().unwrap();
        assert_eq!(
            (user.name.as_deref(), user.uid.as_deref()),
            (Some("dave"), Some("2001"))
        );
        let actor = ev.actor.as_ref().unwrap().user.as_ref().unwrap();
        assert_eq!(
            actor.uid.as_deref(),
            Some("arn:aws:iam::123456789012:user/dave")
        );
        assert_eq!(ev.status_id, Some(1));
        let failed = event(
            &entry("ssm-companion", 0, "failed"),
            &ocsf::Device::default(),
            None,
        );
        assert_eq!(failed.status_id, Some(2));
        // The same MESSAGE_ID from another program, or from a user: not ours.
        assert!(!trusted(&entry("python3", 0, "done")));
        assert!(!trusted(&entry("ssm-companion", 1000, "done")));
    }

    #[test]
    fn every_action_has_an_activity() {
        assert_eq!(activity("retire-finish"), (6, "Delete"));
        assert_eq!(activity("write-sudoers"), (7, "Attach Policy"));
        assert_eq!(activity("something-new"), (99, "Other"));
    }
}
