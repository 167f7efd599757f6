//! Apply against the in-memory host: intents recorded before changes, crash recovery, tool
//! failures, and a ledger that cannot be written.

use std::time::Duration;

use super::*;
use crate::accounts::testkit::{Crash, World, actions, bystander, claim};

pub(crate) fn quiet_simulated_crashes() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .unwrap_or("");
            if !msg.starts_with("simulated crash") {
                default(info);
            }
        }));
    });
}

fn crashing_cycle(w: &mut World, claims: &[crate::accounts::desired::Claim]) {
    quiet_simulated_crashes();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.cycle(claims, true)));
    assert!(r.is_err(), "the simulated crash did not happen");
}

#[test]
fn a_crash_before_useradd_leaves_an_intent_that_the_next_cycle_completes() {
    let mut w = World::new();
    w.host.crash = Some(Crash::Before(1));
    crashing_cycle(&mut w, &[claim("alice")]);
    assert!(!w.host.users.contains_key("alice"));
    let l = w.ledger();
    assert_eq!(
        l.accounts["alice"].state,
        AccountState::Creating,
        "the intent was recorded first"
    );
    let (p, a) = w.cycle(&[claim("alice")], true);
    assert_eq!(actions(&p), [("create".to_string(), "alice".to_string())]);
    assert!(
        p.steps
            .iter()
            .any(|s| matches!(s, Step::Create { note: Some(n), .. } if n.contains("interrupted")))
    );
    assert_eq!(a.failed(), 0);
    assert_eq!(w.ledger().accounts["alice"].state, AccountState::Active);
    assert_eq!(
        w.ledger().accounts["alice"].uid,
        l.accounts["alice"].uid,
        "same uid as the intent"
    );
}

#[test]
fn a_crash_after_useradd_is_resumed_not_redone() {
    let mut w = World::new();
    w.host.crash = Some(Crash::After(1));
    crashing_cycle(&mut w, &[claim("alice")]);
    assert!(w.host.users.contains_key("alice"));
    assert_eq!(w.ledger().accounts["alice"].state, AccountState::Creating);
    let (p, _) = w.cycle(&[claim("alice")], true);
    assert_eq!(actions(&p), [("resume".to_string(), "alice".to_string())]);
    assert_eq!(
        w.host
            .log
            .iter()
            .filter(|l| l.starts_with("useradd"))
            .count(),
        1,
        "useradd ran once"
    );
    assert_eq!(w.ledger().accounts["alice"].state, AccountState::Active);
}

#[test]
fn a_crash_during_deletion_is_finished() {
    let mut w = World::new();
    w.settings.retire_confirmations = 1;
    w.settings.retire_grace = Duration::ZERO;
    w.converge(&[claim("alice")], 3);
    w.cycle(&[bystander()], true); // retire-start
    let before = w.host.log.len();
    w.host.crash = Some(Crash::Before(before + 1));
    crashing_cycle(&mut w, &[]);
    assert_eq!(w.ledger().accounts["alice"].state, AccountState::Deleting);
    let (p, _) = w.cycle(&[bystander()], true);
    assert_eq!(
        actions(&p),
        [("retire-finish".to_string(), "alice".to_string())]
    );
    assert!(!w.host.users.contains_key("alice"));
    // Crash after userdel: the next cycle only forgets.
    let mut w = World::new();
    w.settings.retire_confirmations = 1;
    w.settings.retire_grace = Duration::ZERO;
    w.converge(&[claim("bob")], 3);
    w.cycle(&[bystander()], true);
    w.host.crash = Some(Crash::After(w.host.log.len() + 1));
    crashing_cycle(&mut w, &[]);
    assert!(!w.host.users.contains_key("bob"));
    let (p, _) = w.cycle(&[bystander()], true);
    assert_eq!(actions(&p), [("forget".to_string(), "bob".to_string())]);
    assert!(w.ledger().tombstones.contains_key("bob"));
}

#[test]
fn a_tool_that_changed_nothing_drops_the_intent() {
    let mut w = World::new();
    w.host.fail.insert("useradd alice".into(), 9);
    let (_, a) = w.cycle(&[claim("alice")], true);
    assert_eq!(a.failed(), 1);
    assert!(
        a.results[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("exit status 9"),
        "{a:?}"
    );
    assert!(
        !w.ledger().accounts.contains_key("alice"),
        "exit 9 changed nothing: no intent kept"
    );
}

#[test]
fn a_tool_that_may_have_half_done_keeps_the_intent() {
    let mut w = World::new();
    w.host.fail.insert("useradd alice".into(), 1);
    let (_, a) = w.cycle(&[claim("alice")], true);
    assert_eq!(a.failed(), 1);
    assert_eq!(w.ledger().accounts["alice"].state, AccountState::Creating);
    w.host.fail.clear();
    w.converge(&[claim("alice")], 3);
    assert_eq!(w.ledger().accounts["alice"].state, AccountState::Active);
}

#[test]
fn a_logged_in_user_is_retried_next_cycle() {
    let mut w = World::new();
    w.settings.retire_confirmations = 1;
    w.settings.retire_grace = Duration::ZERO;
    w.converge(&[claim("alice")], 3);
    w.cycle(&[bystander()], true);
    w.host.fail.insert("userdel alice".into(), 8);
    let (_, a) = w.cycle(&[bystander()], true);
    assert_eq!(a.failed(), 1);
    assert!(
        a.results[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("still has processes")
    );
    assert!(w.host.users.contains_key("alice"));
    w.host.fail.clear();
    let uid = w.host.users["alice"].uid;
    w.host.processes.insert(uid, 3);
    let (_, a) = w.cycle(&[bystander()], true);
    assert_eq!(a.failed(), 0);
    assert!(!w.host.users.contains_key("alice"));
    assert!(
        w.host.processes.is_empty(),
        "its processes were ended first"
    );
}

#[test]
fn nothing_changes_when_the_ledger_cannot_be_written() {
    let mut w = World::new();
    let p = w.plan(&[claim("alice"), claim("bob")], true);
    // The ledger's path is a directory: every save fails (as on a full or read-only disk).
    std::fs::create_dir_all(&w.ledger_path).unwrap();
    let mut ledger = Ledger::new(w.binding.clone());
    let path = w.ledger_path.clone();
    let a = apply(&p, &mut w.host, &mut ledger, &path, w.now);
    assert!(
        w.host.log.is_empty(),
        "no host change without a recorded intent: {:?}",
        w.host.log
    );
    assert!(
        a.aborted
            .as_deref()
            .unwrap_or("")
            .contains("ledger could not be written"),
        "{a:?}"
    );
    assert_eq!(a.results[1].outcome, "not-run");
    assert_eq!(a.failed(), 2);
}

#[test]
fn principals_are_recorded_for_managed_accounts() {
    let mut w = World::new();
    w.converge(&[claim("ops")], 3);
    let mut second = claim("ops");
    second.principal = "arn:aws:iam::123456789012:role/oncall".into();
    w.cycle(&[claim("ops"), second], true);
    assert_eq!(w.ledger().accounts["ops"].principals.len(), 2);
}

#[test]
fn a_failed_groupadd_grants_no_sudo_and_no_membership() {
    let mut w = World::new();
    w.settings.allowed_groups = ["ops".to_string()].into();
    w.settings.sudo_group = Some("ops".into());
    // The group appears between the snapshot and groupadd (config management, LDAP).
    w.host.fail.insert("groupadd ops".into(), 9);
    let (_, a) = w.cycle(
        &[crate::accounts::testkit::claim_groups("alice", &["ops"])],
        true,
    );
    let outcome = |action: &str| {
        a.results
            .iter()
            .find(|r| r.step.action() == action)
            .map(|r| r.outcome)
            .unwrap()
    };
    assert_eq!(outcome("create-group"), "failed");
    assert_eq!(outcome("write-sudoers"), "failed");
    assert!(
        w.host.sudoers.is_none(),
        "no sudo through a group we did not create"
    );
    assert_eq!(outcome("create"), "done");
    assert!(w.host.member_of("alice").is_empty());
    assert!(!w.ledger().groups.contains_key("ops"));
}

#[test]
fn a_name_back_with_another_uid_keeps_its_old_uid_reserved() {
    let mut w = World::new();
    w.settings.retire_confirmations = 1;
    w.settings.retire_grace = Duration::ZERO;
    w.converge(&[claim("alice")], 3);
    let old = w.host.users["alice"].uid;
    w.cycle(&[bystander()], true);
    w.cycle(&[bystander()], true);
    assert!(!w.host.users.contains_key("alice"));
    // Its old uid is taken meanwhile by someone else, and its kept home was moved away (a home
    // owned by the old uid would stop the create).
    w.host
        .add_user("squatter", old, "/home/squatter", "/bin/sh");
    w.host.homes.remove("alice");
    w.converge(&[claim("alice")], 3);
    let new = w.host.users["alice"].uid;
    assert_ne!(new, old);
    let l = w.ledger();
    assert_eq!(l.retired_uids.get(&old).map(String::as_str), Some("alice"));
    assert!(l.reserved_uids().contains_key(&old));
}

#[test]
fn no_change_at_all_when_the_ledger_cannot_be_written_even_for_repairs() {
    let mut w = World::new();
    w.converge(&[claim("alice")], 3);
    w.host.users.get_mut("alice").unwrap().shell = "/bin/sh".into();
    let p = w.plan(&[claim("alice")], true);
    assert_eq!(actions(&p), [("repair".to_string(), "alice".to_string())]);
    let mut ledger = w.ledger();
    let path = w.ledger_path.clone();
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir_all(&path).unwrap();
    let log = w.host.log.len();
    let a = apply(&p, &mut w.host, &mut ledger, &path, w.now);
    assert_eq!(
        w.host.log.len(),
        log,
        "usermod ran without a writable ledger"
    );
    assert!(a.aborted.is_some());
}
