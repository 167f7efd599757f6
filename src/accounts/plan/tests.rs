//! The safety rules of the planner, one test (at least) each, plus properties over random worlds.

use super::*;
use crate::accounts::desired::{Claim, RejectReason};
use crate::accounts::host::Host;
use crate::accounts::ledger;
use crate::accounts::ledger::{Binding, Tombstone};
use crate::accounts::testkit::{World, actions, bystander, claim, claim_groups};

fn skip_reason(p: &Plan, user: &str) -> Option<SkipReason> {
    p.skipped.iter().find(|s| s.user == user).map(|s| s.reason)
}

fn step<'a>(p: &'a Plan, action: &str, user: &str) -> Option<&'a Step> {
    p.steps
        .iter()
        .find(|s| s.action() == action && s.subject() == user)
}

fn created_uid(p: &Plan, user: &str) -> u32 {
    match step(p, "create", user) {
        Some(Step::Create { uid, .. }) => *uid,
        other => panic!("no create for {user}: {other:?}\n{p:#?}"),
    }
}

#[test]
fn creates_with_a_deterministic_uid_in_range() {
    let w = World::new();
    let p = w.plan(&[claim("alice"), claim("bob")], true);
    assert_eq!(
        actions(&p),
        [
            ("create".into(), "alice".into()),
            ("create".into(), "bob".into())
        ]
    );
    let a = created_uid(&p, "alice");
    assert!((20000..=59999).contains(&a));
    assert_eq!(a, preferred_uid("alice", [20000, 59999]));
    // Another host, another order: the same UID.
    let w2 = World::new();
    assert_eq!(
        created_uid(&w2.plan(&[claim("bob"), claim("alice")], true), "alice"),
        a
    );
    match step(&p, "create", "alice") {
        Some(Step::Create {
            home,
            shell,
            create_home,
            ..
        }) => {
            assert_eq!(home, &PathBuf::from("/home/alice"));
            assert_eq!(shell, &PathBuf::from("/bin/bash"));
            assert!(create_home);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn existing_accounts_are_never_touched() {
    let mut w = World::new();
    w.host
        .add_user("ec2-user", 1000, "/home/ec2-user", "/bin/sh");
    w.settings.allowed_groups = ["docker".to_string(), "ops".to_string()].into();
    w.settings.sudo_group = Some("ops".into());
    let p = w.plan(&[claim_groups("ec2-user", &["docker", "ops"])], true);
    assert_eq!(
        skip_reason(&p, "ec2-user"),
        Some(SkipReason::ExistsUnmanaged)
    );
    assert!(p.steps.iter().all(|s| s.subject() != "ec2-user"), "{p:#?}");
}

#[test]
fn accounts_from_other_nss_sources_are_unmanaged_too() {
    #[derive(Debug)]
    struct Ldap;
    impl crate::accounts::local::Nss for Ldap {
        fn user_by_name(&self, name: &str) -> Result<Option<(u32, u32)>, String> {
            match name {
                "carol" => Ok(Some((70001, 70001))),
                "dan" => Err("sssd: timed out".into()),
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
    let w = World::new();
    let mut local = w.host.snapshot(&BTreeSet::new()).unwrap();
    local.nss = std::sync::Arc::new(Ldap);
    let desired =
        crate::accounts::desired::build(&[claim("carol"), claim("dan")], &Default::default());
    let ledger = Ledger::new(Binding::default());
    let p = plan(PlanInput {
        desired: &desired,
        complete: true,
        local: &local,
        ledger: &ledger,
        binding: &BindingCheck::Same,
        settings: &w.settings,
        now: w.now,
        allow_mass_retire: false,
        empty_source: false,
    });
    assert_eq!(skip_reason(&p, "carol"), Some(SkipReason::ExistsUnmanaged));
    // A directory that cannot answer is not "no such user": dan is not created.
    assert_eq!(skip_reason(&p, "dan"), Some(SkipReason::LookupFailed));
    assert!(p.steps.is_empty());
}

#[test]
fn system_accounts_and_groups_are_rejected() {
    let mut w = World::new();
    w.host.add_group("netdev", 108, &[]);
    let p = w.plan(
        &[
            claim("daemon"),
            claim("netdev"),
            claim("sudo"),
            claim("nobody"),
        ],
        true,
    );
    let reasons: Vec<_> = p
        .rejections
        .iter()
        .map(|r| (r.value.as_str(), r.reason))
        .collect();
    assert_eq!(
        reasons,
        [
            ("daemon", RejectReason::SystemAccount),
            ("netdev", RejectReason::SystemAccount),
            ("nobody", RejectReason::SystemAccount),
            ("sudo", RejectReason::SystemAccount)
        ]
    );
    assert!(p.steps.is_empty());
}

#[test]
fn own_group_names_are_rejected() {
    let mut w = World::new();
    w.settings.allowed_groups = ["ops".to_string()].into();
    w.settings.sudo_group = Some("ops".into());
    let p = w.plan(&[claim("ops")], true);
    assert!(p.rejections.iter().any(|r| r.value == "ops"), "{p:#?}");
    assert!(p.steps.iter().all(|s| !matches!(s, Step::Create { .. })));
}

#[test]
fn a_same_named_group_blocks_the_create() {
    let mut w = World::new();
    w.host.add_group("devs", 1500, &[]);
    let p = w.plan(&[claim("devs")], true);
    assert_eq!(skip_reason(&p, "devs"), Some(SkipReason::GroupNameTaken));
}

#[test]
fn uid_collisions_are_probed_past_and_tombstones_never_reused() {
    let mut w = World::new();
    let pref = preferred_uid("alice", [20000, 59999]);
    w.host
        .add_user("squatter", pref, "/home/squatter", "/bin/sh");
    // The next UID is a group's GID.
    w.host.add_group("grp", pref + 1, &[]);
    // The one after is reserved for a deleted account of another name.
    let mut l = Ledger::new(w.binding.clone());
    l.tombstones.insert(
        "old".into(),
        Tombstone {
            uid: pref + 2,
            retired_at: w.now,
        },
    );
    ledger::save(&w.ledger_path, &l).unwrap();
    let p = w.plan(&[claim("alice")], true);
    assert_eq!(created_uid(&p, "alice"), pref + 3);
}

#[test]
fn a_returning_name_gets_its_old_uid() {
    let w = World::new();
    let mut l = Ledger::new(w.binding.clone());
    l.tombstones.insert(
        "alice".into(),
        Tombstone {
            uid: 31337,
            retired_at: w.now,
        },
    );
    ledger::save(&w.ledger_path, &l).unwrap();
    assert_eq!(
        created_uid(&w.plan(&[claim("alice")], true), "alice"),
        31337
    );
}

#[test]
fn two_creates_in_one_plan_never_share_a_uid() {
    let mut w = World::new();
    w.settings.uid_range = [20000, 20001];
    let p = w.plan(&[claim("a1"), claim("a2"), claim("a3")], true);
    let uids: BTreeSet<u32> = p.steps.iter().filter_map(Step::uid).collect();
    assert_eq!(uids.len(), 2, "{p:#?}");
    assert_eq!(p.skipped.len(), 1);
    assert_eq!(p.skipped[0].reason, SkipReason::UidExhausted);
    assert!(p.skipped[0].detail.contains("widen the range"));
}

#[test]
fn home_conflicts_stop_the_create() {
    let mut w = World::new();
    let uid = preferred_uid("mine", [20000, 59999]);
    w.host.homes.insert("link".into(), HomeState::Symlink);
    w.host.homes.insert("file".into(), HomeState::NotADirectory);
    w.host
        .homes
        .insert("other".into(), HomeState::Dir { uid: 4242 });
    w.host.homes.insert(
        "nfs".into(),
        HomeState::Unreadable("Stale file handle".into()),
    );
    w.host.homes.insert("mine".into(), HomeState::Dir { uid });
    let p = w.plan(
        &[
            claim("link"),
            claim("file"),
            claim("other"),
            claim("nfs"),
            claim("mine"),
        ],
        true,
    );
    for n in ["link", "file", "other", "nfs"] {
        assert_eq!(skip_reason(&p, n), Some(SkipReason::HomeConflict), "{n}");
    }
    assert!(
        p.skipped
            .iter()
            .find(|s| s.user == "link")
            .unwrap()
            .detail
            .contains("symbolic link")
    );
    match step(&p, "create", "mine") {
        Some(Step::Create { create_home, .. }) => {
            assert!(!create_home, "an existing home of the same uid is reused")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn groups_come_only_from_the_allowlist_and_must_exist() {
    let mut w = World::new();
    w.settings.allowed_groups = ["docker".to_string(), "missing".to_string()].into();
    let p = w.plan(
        &[claim_groups("alice", &["docker", "missing", "adm"])],
        true,
    );
    match step(&p, "create", "alice") {
        Some(Step::Create { groups, .. }) => assert_eq!(groups, &["docker".to_string()]),
        other => panic!("{other:?}"),
    }
    assert!(
        p.rejections
            .iter()
            .any(|r| r.value == "adm" && r.reason == RejectReason::GroupNotAllowed)
    );
    assert!(
        p.notices
            .iter()
            .any(|n| n.code == "group-missing" && n.message.contains("`missing`"))
    );
}

#[test]
fn sudo_group_is_created_and_granted_through_one_dropin() {
    let mut w = World::new();
    w.settings.allowed_groups = ["ops-sudo".to_string()].into();
    w.settings.sudo_group = Some("ops-sudo".into());
    let p = w.plan(&[claim_groups("alice", &["ops-sudo"])], true);
    assert_eq!(
        actions(&p),
        [
            ("create-group".to_string(), "ops-sudo".to_string()),
            (
                "write-sudoers".into(),
                "/etc/sudoers.d/ssm-companion".into()
            ),
            ("create".into(), "alice".into()),
        ]
    );
    match step(&p, "write-sudoers", "/etc/sudoers.d/ssm-companion") {
        Some(Step::WriteSudoers { content, .. }) => {
            assert!(content.starts_with(SUDOERS_HEADER));
            assert!(content.contains("\n%ops-sudo ALL=(ALL:ALL) NOPASSWD: ALL\n"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_existing_sudo_group_we_did_not_create_grants_nothing() {
    let mut w = World::new();
    w.host.add_group("wheel", 10, &["admin"]);
    w.settings.allowed_groups = ["wheel".to_string()].into();
    w.settings.sudo_group = Some("wheel".into());
    let p = w.plan(&[claim_groups("alice", &["wheel"])], true);
    assert!(
        p.notices.iter().any(|n| n.code == "sudo-group-unmanaged"),
        "{p:#?}"
    );
    assert!(
        !p.steps
            .iter()
            .any(|s| matches!(s, Step::WriteSudoers { .. } | Step::CreateGroup { .. }))
    );
    match step(&p, "create", "alice") {
        Some(Step::Create { groups, .. }) => assert!(groups.is_empty()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn sudoers_dropin_lifecycle() {
    let mut w = World::new();
    w.settings.allowed_groups = ["ops".to_string()].into();
    w.settings.sudo_group = Some("ops".into());
    w.converge(&[claim("alice")], 5);
    assert!(w.host.sudoers.is_some());
    // Unchanged: nothing to write.
    assert!(!w.plan(&[claim("alice")], true).has_changes());
    // Sudo switched off: our file is removed.
    w.settings.sudo_group = None;
    let p = w.plan(&[claim("alice")], true);
    assert!(
        step(&p, "remove-sudoers", "/etc/sudoers.d/ssm-companion").is_some(),
        "{p:#?}"
    );
    // A file we did not write is never touched.
    w.host.sudoers = Some("%admins ALL=(ALL) ALL\n".into());
    w.settings.sudo_group = Some("ops".into());
    let p = w.plan(&[claim("alice")], true);
    assert!(p.notices.iter().any(|n| n.code == "sudoers-foreign"));
    assert!(
        !p.steps
            .iter()
            .any(|s| matches!(s, Step::WriteSudoers { .. } | Step::RemoveSudoers { .. }))
    );
}

#[test]
fn sudoers_not_included_is_reported() {
    let mut w = World::new();
    w.settings.allowed_groups = ["ops".to_string()].into();
    w.settings.sudo_group = Some("ops".into());
    let desired = crate::accounts::desired::build(&[claim("alice")], &Default::default());
    let mut local = w.host.snapshot(&BTreeSet::new()).unwrap();
    local.sudoers_included = false;
    let ledger = Ledger::new(w.binding.clone());
    let p = plan(PlanInput {
        desired: &desired,
        complete: true,
        local: &local,
        ledger: &ledger,
        binding: &BindingCheck::Same,
        settings: &w.settings,
        now: w.now,
        allow_mass_retire: false,
        empty_source: false,
    });
    assert!(p.notices.iter().any(|n| n.code == "sudoers-not-included"));
}

#[test]
fn drift_is_repaired_and_group_removal_waits_for_a_complete_read() {
    let mut w = World::new();
    w.settings.allowed_groups = ["docker".to_string()].into();
    let claims = [claim_groups("alice", &["docker"])];
    w.converge(&claims, 3);
    // An admin changes the shell, home and comment, and adds alice to adm.
    let u = w.host.users.get_mut("alice").unwrap();
    u.shell = "/bin/sh".into();
    u.home = "/srv/alice".into();
    u.gecos = "Alice".into();
    w.host
        .groups
        .get_mut("adm")
        .unwrap()
        .members
        .push("alice".into());
    let p = w.plan(&claims, true);
    match step(&p, "repair", "alice") {
        Some(Step::Repair {
            changes,
            reinstate: false,
            ..
        }) => {
            assert_eq!(changes.len(), 4, "{changes:#?}");
            assert!(changes.contains(&Change::Groups {
                add: vec![],
                remove: vec!["adm".into()],
                result: vec!["docker".into()]
            }));
        }
        other => panic!("{other:?}"),
    }
    // Incomplete read: the shell is fixed, but no group is removed.
    let p = w.plan(&claims, false);
    match step(&p, "repair", "alice") {
        Some(Step::Repair { changes, .. }) => {
            assert!(!changes.iter().any(|c| matches!(c, Change::Groups { .. })))
        }
        other => panic!("{other:?}"),
    }
    w.converge(&claims, 3);
    assert_eq!(
        w.host.member_of("alice").into_iter().collect::<Vec<_>>(),
        ["docker"]
    );
    assert_eq!(w.host.users["alice"].shell, PathBuf::from("/bin/bash"));
}

#[test]
fn retirement_waits_for_confirmations_and_grace() {
    let mut w = World::new();
    w.settings.allowed_groups = ["docker".to_string()].into();
    w.settings.max_retire_fraction = 1.0;
    w.converge(&[claim_groups("alice", &["docker"]), claim("bob")], 3);
    let only_bob = [claim("bob")];

    // First complete read without alice: groups removed at once.
    let (p, _) = w.cycle(&only_bob, true);
    assert!(
        matches!(step(&p, "retire-start", "alice"), Some(Step::RetireStart { remove_groups, .. }) if remove_groups == &["docker".to_string()])
    );
    assert!(w.host.member_of("alice").is_empty());
    assert!(w.host.users.contains_key("alice"));

    // Reads 2 and 3 within the grace period: wait.
    for reads in 2..=3 {
        w.now += Duration::from_secs(60);
        let (p, _) = w.cycle(&only_bob, true);
        assert!(
            matches!(step(&p, "retire-wait", "alice"), Some(Step::RetireWait { reads: r, needed: 3, .. }) if *r == reads),
            "{p:#?}"
        );
        assert!(!p.has_changes(), "waiting is not a change");
    }
    // Grace over, but an incomplete read: still nothing.
    w.now += Duration::from_secs(3600);
    let p = w.plan(&only_bob, false);
    assert_eq!(skip_reason(&p, "alice"), Some(SkipReason::RetireBlocked));
    assert!(step(&p, "retire-finish", "alice").is_none());
    // Complete read after the grace: delete.
    let (p, _) = w.cycle(&only_bob, true);
    assert!(step(&p, "retire-finish", "alice").is_some(), "{p:#?}");
    assert!(!w.host.users.contains_key("alice"));
    let l = w.ledger();
    assert!(!l.accounts.contains_key("alice"));
    assert!(l.tombstones.contains_key("alice"));
}

#[test]
fn an_account_wanted_again_while_retiring_is_reinstated() {
    let mut w = World::new();
    w.settings.allowed_groups = ["docker".to_string()].into();
    w.settings.max_retire_fraction = 1.0;
    let claims = [claim_groups("alice", &["docker"])];
    w.converge(&claims, 3);
    w.cycle(&[bystander()], true);
    assert!(w.host.member_of("alice").is_empty());
    let (p, _) = w.cycle(&claims, true);
    assert!(
        matches!(
            step(&p, "reinstate", "alice"),
            Some(Step::Repair {
                reinstate: true,
                ..
            })
        ),
        "{p:#?}"
    );
    assert_eq!(
        w.host.member_of("alice").into_iter().collect::<Vec<_>>(),
        ["docker"]
    );
    assert_eq!(w.ledger().accounts["alice"].state, AccountState::Active);
    assert_eq!(w.ledger().accounts["alice"].missing_reads, 0);
}

#[test]
fn incomplete_reads_and_unverified_ledgers_retire_nothing() {
    let mut w = World::new();
    w.settings.max_retire_fraction = 1.0;
    w.converge(&[claim("alice")], 3);
    let p = w.plan(&[], false);
    assert_eq!(skip_reason(&p, "alice"), Some(SkipReason::RetireBlocked));
    assert!(p.notices.iter().any(|n| n.code == "incomplete-read"));
    assert!(!p.destructive_allowed);
    // Same with a complete read but no instance id to check the ledger against.
    w.binding.instance_id = None;
    let p = w.plan(&[bystander()], true);
    assert_eq!(skip_reason(&p, "alice"), Some(SkipReason::RetireBlocked));
    assert!(p.notices.iter().any(|n| n.code == "ledger-unverified"));
    // That is a safety stop holding alice's retirement: pending, not converged.
    assert_eq!(p.holds.len(), 1, "{p:#?}");
    assert_eq!(p.holds[0].code, "ledger-unverified");
    assert_eq!(p.holds[0].users, ["alice"]);
    assert!(p.pending());
    // An unverified ledger holds even with nothing to retire (no removal could happen).
    let p = w.plan(&[claim("alice")], true);
    assert!(!p.has_changes() && p.pending(), "{p:#?}");
}

#[test]
fn mass_retirement_is_capped_unless_overridden() {
    let mut w = World::new();
    let all: Vec<Claim> = ["a", "b", "c", "d"].iter().map(|n| claim(n)).collect();
    w.converge(&all, 3);
    // Half vanish at once: cap = floor(0.25 × 4) = 1 < 2.
    let p = w.plan(&all[..2], true);
    assert!(
        p.steps.iter().all(|s| s.action() != "retire-start"),
        "{p:#?}"
    );
    assert_eq!(skip_reason(&p, "c"), Some(SkipReason::RetireCapped));
    assert!(
        p.notices
            .iter()
            .any(|n| n.code == "retire-capped" && n.message.contains("--allow-mass-retire"))
    );
    // A capped change is pending (detailed exit code 2), not convergence.
    assert_eq!(p.holds.len(), 1);
    assert_eq!(p.holds[0].code, "retire-capped");
    assert_eq!(p.holds[0].users, ["c", "d"]);
    assert!(!p.has_changes() && p.pending());
    // One at a time is fine.
    let p = w.plan(&all[..3], true);
    assert!(step(&p, "retire-start", "d").is_some());
    // The override.
    let p = w.plan_with(&all[..2], true, true);
    assert_eq!(
        p.steps
            .iter()
            .filter(|s| s.action() == "retire-start")
            .count(),
        2
    );
}

#[test]
fn inherited_accounts_lose_access_but_are_never_deleted_automatically() {
    let mut w = World::new();
    w.settings.allowed_groups = ["docker".to_string()].into();
    w.settings.retire_confirmations = 1;
    w.settings.retire_grace = Duration::ZERO;
    w.settings.max_retire_fraction = 1.0;
    w.converge(&[claim_groups("baked", &["docker"]), claim("keep")], 3);
    // The disk boots as another instance (an image): the ledger is rebound, entries inherited.
    w.binding = Binding {
        machine_id: "m2".into(),
        instance_id: Some("i-2".into()),
    };
    let p = w.plan(&[claim("keep")], true);
    assert!(
        p.notices.iter().any(|n| n.code == "ledger-foreign"),
        "{p:#?}"
    );
    w.cycle(&[claim("keep")], true);
    assert!(
        w.host.member_of("baked").is_empty(),
        "access is removed at once"
    );
    let (p, _) = w.cycle(&[claim("keep")], true);
    assert_eq!(
        skip_reason(&p, "baked"),
        Some(SkipReason::RetireBlocked),
        "{p:#?}"
    );
    assert_eq!(p.holds[0].code, "retire-blocked");
    assert_eq!(p.holds[0].users, ["baked"]);
    assert!(
        p.skipped
            .iter()
            .any(|s| s.detail.contains("--trust-inherited"))
    );
    assert!(
        w.host.users.contains_key("baked"),
        "never deleted automatically"
    );
    // Wanted again, it is managed as before (not "exists-unmanaged").
    let (p, _) = w.cycle(&[claim_groups("baked", &["docker"]), claim("keep")], true);
    assert!(step(&p, "reinstate", "baked").is_some(), "{p:#?}");
    assert_eq!(
        w.host.member_of("baked").into_iter().collect::<Vec<_>>(),
        ["docker"]
    );
}

#[test]
fn an_inherited_entry_in_state_deleting_is_not_deleted() {
    let mut w = World::new();
    w.settings.retire_confirmations = 1;
    w.settings.retire_grace = Duration::ZERO;
    w.converge(&[claim("baked"), claim("keep")], 3);
    // A ledger from another machine that was interrupted in the middle of a delete.
    let mut l = w.ledger();
    let a = l.accounts.get_mut("baked").unwrap();
    a.state = ledger::AccountState::Deleting;
    a.inherited_from = Some("machine-id builder".into());
    ledger::save(&w.ledger_path, &l).unwrap();
    let (p, _) = w.cycle(&[claim("keep")], true);
    assert!(step(&p, "retire-finish", "baked").is_none(), "{p:#?}");
    assert_eq!(skip_reason(&p, "baked"), Some(SkipReason::RetireBlocked));
    assert!(w.host.users.contains_key("baked"), "never deleted");
    // The same entry of this machine's own ledger is finished.
    let mut l = w.ledger();
    l.accounts.get_mut("baked").unwrap().inherited_from = None;
    ledger::save(&w.ledger_path, &l).unwrap();
    let (p, _) = w.cycle(&[claim("keep")], true);
    assert!(step(&p, "retire-finish", "baked").is_some(), "{p:#?}");
}

#[test]
fn ledger_entries_that_cannot_be_ours_are_never_acted_on() {
    let mut w = World::new();
    w.settings.retire_confirmations = 1;
    w.settings.retire_grace = Duration::ZERO;
    w.settings.max_retire_fraction = 1.0;
    w.converge(&[claim("alice")], 3);
    w.host.add_user("svc", 20500, "/home/svc", "/bin/sh");
    w.host.add_user("legacy", 800, "/home/legacy", "/bin/sh");
    w.host.add_user("wide", 60500, "/home/wide", "/bin/sh");
    w.host.processes.insert(0, 40);
    let mut l = w.ledger();
    let entry = |uid, state| ledger::ManagedAccount {
        uid,
        state,
        ..l.accounts["alice"].clone()
    };
    // A hand-edited (or attacker-edited) ledger: root retiring, uid 0 under another name, a
    // system account, a UID outside the range, a name we would refuse.
    let bad = [
        ("root", entry(0, ledger::AccountState::Retiring)),
        ("svc", entry(0, ledger::AccountState::Deleting)),
        ("legacy", entry(800, ledger::AccountState::Retiring)),
        ("wide", entry(60500, ledger::AccountState::Retiring)),
        ("Bad.Name", entry(20600, ledger::AccountState::Retiring)),
    ];
    for (n, e) in &bad {
        l.accounts.insert(n.to_string(), e.clone());
    }
    ledger::save(&w.ledger_path, &l).unwrap();
    let (p, a) = w.cycle(&[claim("alice"), claim("svc")], true);
    for (n, _) in &bad {
        assert_eq!(
            skip_reason(&p, n),
            Some(SkipReason::LedgerEntryInvalid),
            "{n}: {p:#?}"
        );
        assert!(p.steps.iter().all(|s| s.subject() != *n), "{n}: {p:#?}");
    }
    let hold = &p.holds[0];
    assert_eq!(hold.code, "ledger-entry-invalid");
    assert_eq!(hold.users, ["Bad.Name", "legacy", "root", "svc", "wide"]);
    let detail = |n: &str| {
        p.skipped
            .iter()
            .find(|s| s.user == n)
            .map(|s| s.detail.clone())
            .unwrap()
    };
    assert!(
        detail("root").contains("never managed"),
        "{}",
        detail("root")
    );
    assert!(detail("svc").contains("uid is 0"));
    assert!(detail("legacy").contains("below UID_MIN"));
    assert!(detail("wide").contains("outside accounts.uid_range"));
    assert!(detail("Bad.Name").contains("not one ssm-companion accepts"));
    assert_eq!(w.host.processes.get(&0), Some(&40), "no root process ended");
    assert!(a.results.iter().all(|r| r.outcome == "done"));
    assert!(
        w.host
            .log
            .iter()
            .all(|l| !l.contains("root") && !l.contains("svc")),
        "{:?}",
        w.host.log
    );
}

#[test]
fn remove_home_only_for_a_plain_home_of_the_account() {
    let mut w = World::new();
    w.settings.retire_confirmations = 1;
    w.settings.retire_grace = Duration::ZERO;
    w.settings.max_retire_fraction = 1.0;
    w.settings.remove_home = true;
    w.converge(&[claim("a1"), claim("a2"), claim("a3")], 3);
    w.cycle(&[bystander()], true);
    // a2's home field was pointed elsewhere, a3's home replaced by a symlink.
    w.host.users.get_mut("a2").unwrap().home = "/srv/shared".into();
    w.host.homes.insert("a3".into(), HomeState::Symlink);
    let p = w.plan(&[bystander()], true);
    let remove = |u: &str| match step(&p, "retire-finish", u) {
        Some(Step::RetireFinish { remove_home, .. }) => *remove_home,
        other => panic!("{u}: {other:?}"),
    };
    assert!(remove("a1"));
    assert!(
        !remove("a2"),
        "never userdel -r a home field pointing elsewhere"
    );
    assert!(!remove("a3"), "never through a symlink");
    assert_eq!(
        p.notices.iter().filter(|n| n.code == "home-kept").count(),
        2
    );
}

#[test]
fn a_replaced_or_half_created_sudo_group() {
    let mut w = World::new();
    w.settings.allowed_groups = ["ops".to_string()].into();
    w.settings.sudo_group = Some("ops".into());
    w.converge(&[claim_groups("alice", &["ops"])], 3);
    let gid = w.ledger().groups["ops"].gid.unwrap();
    // Someone deletes and recreates the group: another gid, not ours any more.
    w.host.groups.get_mut("ops").unwrap().gid = gid + 1;
    let p = w.plan(&[claim_groups("alice", &["ops"])], true);
    assert!(
        p.notices
            .iter()
            .any(|n| n.code == "sudo-group-unmanaged" && n.message.contains("replaced")),
        "{p:#?}"
    );
    assert!(
        !p.steps
            .iter()
            .any(|s| matches!(s, Step::WriteSudoers { .. }))
    );
    // A groupadd interrupted after it ran: recorded with its gid.
    let mut w = World::new();
    w.settings.allowed_groups = ["ops".to_string()].into();
    w.settings.sudo_group = Some("ops".into());
    let mut l = Ledger::new(w.binding.clone());
    l.groups.insert(
        "ops".into(),
        crate::accounts::ledger::ManagedGroup {
            gid: None,
            state: GroupState::Creating,
            created_at: w.now,
            inherited_from: None,
        },
    );
    ledger::save(&w.ledger_path, &l).unwrap();
    w.host.add_group("ops", 901, &[]);
    let (p, _) = w.cycle(&[claim("alice")], true);
    assert!(
        matches!(p.steps[0], Step::ResumeGroup { gid: 901, .. }),
        "{p:#?}"
    );
    assert_eq!(w.ledger().groups["ops"].gid, Some(901));
}

#[test]
fn the_last_account_can_leave() {
    let mut w = World::new();
    w.converge(&[claim("solo")], 3);
    let p = w.plan(&[bystander()], true);
    assert!(
        step(&p, "retire-start", "solo").is_some(),
        "a single departure is never capped: {p:#?}"
    );
    assert!(p.holds.is_empty());
}

#[test]
fn an_empty_answer_retires_nothing_without_an_override() {
    let mut w = World::new();
    w.settings.allowed_groups = ["ops".to_string()].into();
    w.settings.sudo_group = Some("ops".into());
    w.converge(&[claim_groups("solo", &["ops"])], 3);
    // No principal at all: the one managed account keeps its sudo, and the plan says why.
    let (p, _) = w.cycle(&[], true);
    assert!(step(&p, "retire-start", "solo").is_none(), "{p:#?}");
    assert_eq!(skip_reason(&p, "solo"), Some(SkipReason::RetireCapped));
    assert_eq!(p.holds.len(), 1, "{p:#?}");
    assert_eq!(p.holds[0].code, "empty-source");
    assert_eq!(p.holds[0].users, ["solo"]);
    assert!(p.holds[0].message.contains("--allow-mass-retire"));
    assert!(
        p.pending() && !p.has_changes(),
        "held is pending, not a change"
    );
    assert_eq!(
        w.host.member_of("solo").into_iter().collect::<Vec<_>>(),
        ["ops"]
    );
    // `extra` names are not the source: still empty.
    let mut extra = claim("fed");
    extra.principal = crate::accounts::source::EXTRA_PRINCIPAL.into();
    let p = w.plan(&[extra], true);
    assert!(step(&p, "retire-start", "solo").is_none(), "{p:#?}");
    // The operator's override.
    let p = w.plan_with(&[], true, true);
    assert!(step(&p, "retire-start", "solo").is_some(), "{p:#?}");
    assert!(p.holds.is_empty());
}

#[test]
fn accounts_deleted_outside_are_recreated_or_forgotten() {
    let mut w = World::new();
    w.converge(&[claim("alice"), claim("bob")], 3);
    let alice_uid = w.host.users["alice"].uid;
    w.host.users.remove("alice");
    w.host.groups.remove("alice");
    w.host.users.remove("bob");
    w.host.groups.remove("bob");
    let p = w.plan(&[claim("alice")], true);
    match step(&p, "create", "alice") {
        Some(Step::Create {
            uid, note: Some(n), ..
        }) => {
            assert_eq!(*uid, alice_uid, "recreated with its uid");
            assert!(n.contains("deleted outside"));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        step(&p, "forget", "bob"),
        Some(Step::Forget { .. })
    ));
}

#[test]
fn a_managed_account_whose_uid_changed_is_left_alone() {
    let mut w = World::new();
    w.settings.max_retire_fraction = 1.0;
    w.converge(&[claim("alice")], 3);
    w.host.users.get_mut("alice").unwrap().uid = 5000;
    let p = w.plan(&[claim("alice")], true);
    assert_eq!(
        skip_reason(&p, "alice"),
        Some(SkipReason::ManagedAccountChanged)
    );
    let p = w.plan(&[bystander()], true);
    assert_eq!(
        skip_reason(&p, "alice"),
        Some(SkipReason::ManagedAccountChanged)
    );
    assert!(p.steps.is_empty(), "never retired: {p:#?}");
}

#[test]
fn out_of_scope_names_are_skipped_and_managed_ones_retire() {
    let mut w = World::new();
    w.settings.max_retire_fraction = 1.0;
    w.converge(&[claim("alice")], 3);
    // The planner sees scope through the desired set.
    let mut desired = crate::accounts::desired::Desired::default();
    desired
        .out_of_scope
        .insert("alice".into(), ["arn:x".to_string()].into());
    desired
        .out_of_scope
        .insert("zed".into(), ["arn:z".to_string()].into());
    let loaded = ledger::load(&w.ledger_path, &w.binding, false).unwrap();
    let local = w
        .host
        .snapshot(&["alice".to_string(), "zed".to_string()].into())
        .unwrap();
    let p = plan(PlanInput {
        desired: &desired,
        complete: true,
        local: &local,
        ledger: &loaded.ledger,
        binding: &BindingCheck::Same,
        settings: &w.settings,
        now: w.now,
        allow_mass_retire: false,
        empty_source: false,
    });
    assert_eq!(skip_reason(&p, "zed"), Some(SkipReason::OutOfScope));
    assert!(step(&p, "retire-start", "alice").is_some());
}

#[test]
fn plans_do_not_depend_on_claim_order() {
    let mut w = World::new();
    w.settings.allowed_groups = ["docker".to_string()].into();
    let mut claims = vec![
        claim("c"),
        claim_groups("a", &["docker"]),
        claim("Bad"),
        claim("b"),
        claim("a"),
    ];
    let p1 = w.plan(&claims, true);
    claims.reverse();
    assert_eq!(w.plan(&claims, true), p1);
}

mod properties {
    use super::*;
    use crate::accounts::testkit::Crash;
    use proptest::prelude::*;

    const POOL: &[&str] = &[
        "alice", "bob", "carol", "dave", "erin", "ec2-user", "daemon", "Bad", "ops",
    ];

    fn claims_from(mask: u16, groups: bool) -> Vec<Claim> {
        POOL.iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, n)| {
                if groups {
                    claim_groups(n, &["docker", "ops"])
                } else {
                    claim(n)
                }
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        /// Over any sequence of reads (complete or not, with or without groups), with a
        /// pre-existing user and crashes at random mutations: unmanaged accounts are never
        /// changed, UIDs are unique and in range, nothing is removed on an incomplete read,
        /// and once the reads settle the host converges and the next plan is empty.
        #[test]
        fn invariants_hold_across_random_histories(
            history in proptest::collection::vec((0u16..512, any::<bool>(), any::<bool>()), 1..8),
            crash in proptest::option::of((1usize..6, any::<bool>())),
        ) {
            let mut w = World::new();
            w.host.add_user("ec2-user", 1000, "/home/ec2-user", "/bin/sh");
            w.settings.allowed_groups = ["docker".to_string(), "ops".to_string()].into();
            w.settings.sudo_group = Some("ops".into());
            w.settings.retire_confirmations = 2;
            w.settings.retire_grace = Duration::from_secs(60);
            w.settings.max_retire_fraction = 1.0;
            let ec2_before = w.host.users["ec2-user"].clone();
            if let Some((n, after)) = crash {
                w.host.crash = Some(if after { Crash::After(n) } else { Crash::Before(n) });
            }
            for (mask, complete, groups) in &history {
                let claims = claims_from(*mask, *groups);
                let before: BTreeSet<String> = w.host.users.keys().cloned().collect();
                let groups_before: Vec<(String, BTreeSet<String>)> =
                    before.iter().map(|u| (u.clone(), w.host.member_of(u))).collect();
                let sudoers_before = w.host.sudoers.clone();
                crate::accounts::apply::tests::quiet_simulated_crashes();
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.cycle(&claims, *complete)));
                if !*complete {
                    let after: BTreeSet<String> = w.host.users.keys().cloned().collect();
                    prop_assert!(before.is_subset(&after), "an incomplete read removed accounts");
                    for (u, g) in &groups_before {
                        prop_assert!(g.is_subset(&w.host.member_of(u)), "an incomplete read removed groups of {}", u);
                    }
                    if sudoers_before.is_some() {
                        prop_assert_eq!(&w.host.sudoers, &sudoers_before, "an incomplete read changed sudoers");
                    }
                }
                let _ = outcome; // a simulated crash: the next cycle must recover
                w.now += Duration::from_secs(120);
                prop_assert_eq!(&w.host.users["ec2-user"], &ec2_before);
                prop_assert!(w.host.member_of("ec2-user").is_empty(), "ec2-user was given groups");
                let uids: Vec<u32> = w.host.users.values().map(|u| u.uid).collect();
                let unique: BTreeSet<u32> = uids.iter().copied().collect();
                prop_assert_eq!(uids.len(), unique.len(), "duplicate uids");
                for (name, m) in &w.ledger().accounts {
                    prop_assert!((20000..=59999).contains(&m.uid), "{} has uid {}", name, m.uid);
                }
            }
            // Settle: the last desired set, complete reads, until nothing changes.
            let last = claims_from(history.last().map(|h| h.0).unwrap_or(0), true);
            // A source that names no principal never starts a retirement on its own
            // (the empty-source hold); everyone leaving takes `--allow-mass-retire`.
            let mass = crate::accounts::source::is_empty_answer(&last);
            if mass {
                let p = w.plan(&last, true);
                prop_assert!(!p.steps.iter().any(|s| s.action() == "retire-start"),
                    "an empty source started retirements: {:?}", actions(&p));
            }
            for _ in 0..4 {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.cycle_with(&last, true, mass)));
                w.now += Duration::from_secs(120);
            }
            let n = w.converge_with(&last, 6, mass);
            prop_assert!(n <= 1);
            let wanted: BTreeSet<&str> = last.iter().map(|c| c.run_as.as_str())
                .filter(|n| !["ec2-user", "daemon", "Bad", "ops"].contains(n)).collect();
            let managed: BTreeSet<String> = w.ledger().accounts.keys().cloned().collect();
            prop_assert_eq!(managed.iter().map(String::as_str).collect::<BTreeSet<_>>(), wanted.clone());
            for name in &wanted {
                prop_assert_eq!(w.host.member_of(name).into_iter().collect::<Vec<_>>(), vec!["docker".to_string(), "ops".to_string()]);
            }
            prop_assert!(w.host.sudoers.as_deref().is_some_and(|s| s.contains("%ops ")));
        }
    }
}

#[test]
fn names_that_belong_to_the_system_are_refused_and_managed_ones_retired() {
    let mut w = World::new();
    w.settings.max_retire_fraction = 1.0;
    // `docker` is absent from this host (no group, no user): still refused, because the
    // package that brings it would adopt our user and group.
    w.host.groups.remove("docker");
    w.host
        .sysusers
        .insert("myapp".into(), "/usr/lib/sysusers.d/myapp.conf".into());
    w.settings.reserved_names = vec!["svc-*".into()];
    let p = w.plan(
        &[
            claim("docker"),
            claim("systemd-coredump"),
            claim("_apt"),
            claim("postgres"),
            claim("myapp"),
            claim("svc-deploy"),
            claim("alice"),
        ],
        true,
    );
    let refused: Vec<_> = p
        .rejections
        .iter()
        .map(|r| (r.value.as_str(), r.reason))
        .collect();
    assert_eq!(
        refused,
        [
            ("_apt", RejectReason::ReservedName),
            ("docker", RejectReason::ReservedName),
            ("myapp", RejectReason::ReservedName),
            ("postgres", RejectReason::ReservedName),
            ("svc-deploy", RejectReason::ReservedName),
            ("systemd-coredump", RejectReason::ReservedName),
        ]
    );
    let why = |v: &str| {
        p.rejections
            .iter()
            .find(|r| r.value == v)
            .unwrap()
            .detail
            .clone()
    };
    assert!(why("myapp").contains("/usr/lib/sysusers.d/myapp.conf"));
    assert!(why("svc-deploy").contains("accounts.reserved_names"));
    assert!(why("docker").contains("adopt"));
    assert_eq!(actions(&p), [("create".into(), "alice".into())]);

    // An existing account of such a name is fine for Run As and never touched.
    w.host
        .add_user("postgres", 20300, "/var/lib/postgresql", "/bin/bash");
    let p = w.plan(&[claim("postgres")], true);
    assert_eq!(
        skip_reason(&p, "postgres"),
        Some(SkipReason::ExistsUnmanaged)
    );

    // An account ssm-companion made before the name became reserved is retired.
    w.converge(&[claim("alice"), claim("legacy")], 3);
    w.settings.reserved_names = vec!["legacy".into()];
    let p = w.plan(&[claim("alice"), claim("legacy")], true);
    assert!(step(&p, "retire-start", "legacy").is_some(), "{p:#?}");
    assert!(why_rejected(&p, "legacy").contains("is retired"));
}

fn why_rejected(p: &Plan, value: &str) -> String {
    p.rejections
        .iter()
        .find(|r| r.value == value)
        .map(|r| r.detail.clone())
        .unwrap_or_default()
}

#[test]
fn a_primary_group_changed_to_the_sudo_group_is_repaired_and_never_survives_retirement() {
    let mut w = World::new();
    w.settings.allowed_groups = ["ops".to_string()].into();
    w.settings.sudo_group = Some("ops".into());
    w.settings.max_retire_fraction = 1.0;
    w.converge(&[claim("alice"), claim("bob"), claim("carol")], 3);
    let ops = w.host.groups["ops"].gid;
    // Someone makes the sudo group alice's and bob's primary group.
    w.host.users.get_mut("alice").unwrap().gid = ops;
    w.host.users.get_mut("bob").unwrap().gid = ops;
    let p = w.plan(&[claim("alice"), claim("bob"), claim("carol")], true);
    let alice_uid = w.host.users["alice"].uid;
    match step(&p, "repair", "alice") {
        Some(Step::Repair { changes, .. }) => assert_eq!(
            changes,
            &[Change::PrimaryGroup {
                from: ops,
                to: alice_uid,
                create: None
            }]
        ),
        other => panic!("{other:?}"),
    }
    // Bob leaves while his primary group is the sudo group: retire-start puts it back.
    let (p, _) = w.cycle(&[claim("alice"), claim("carol")], true);
    match step(&p, "retire-start", "bob") {
        Some(Step::RetireStart { primary_group, .. }) => {
            assert!(
                matches!(primary_group, Some(Change::PrimaryGroup { from, .. }) if *from == ops)
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(w.host.users["bob"].gid, w.host.users["bob"].uid);
    assert_eq!(w.host.users["alice"].gid, alice_uid);
    // A retiring account whose primary group is changed again is repaired again.
    w.host.users.get_mut("bob").unwrap().gid = ops;
    let (p, _) = w.cycle(&[claim("alice"), claim("carol")], true);
    assert!(step(&p, "repair", "bob").is_some(), "{p:#?}");
    assert_ne!(w.host.users["bob"].gid, ops);
    // A deleted private group is made again with the account's UID as its GID.
    w.host.groups.remove("carol");
    w.host.users.get_mut("carol").unwrap().gid = ops;
    let (p, _) = w.cycle(&[claim("alice"), claim("carol")], true);
    let carol = w.host.users["carol"].uid;
    match step(&p, "repair", "carol") {
        Some(Step::Repair { changes, .. }) => assert_eq!(
            changes,
            &[Change::PrimaryGroup {
                from: ops,
                to: carol,
                create: Some("carol".into())
            }]
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(w.host.groups["carol"].gid, carol);
    assert_eq!(w.host.users["carol"].gid, carol);
}

#[test]
fn a_shared_primary_group_is_ours_or_nothing_is_created() {
    let mut w = World::new();
    w.settings.primary_group = Some("ssm-users".into());
    let (p, _) = w.cycle(&[claim("alice")], true);
    assert!(matches!(
        &p.steps[0],
        Step::CreateGroup { group, purpose: GroupPurpose::Primary } if group == "ssm-users"
    ));
    match step(&p, "create", "alice") {
        Some(Step::Create { primary_group, .. }) => {
            assert_eq!(primary_group.as_deref(), Some("ssm-users"))
        }
        other => panic!("{other:?}"),
    }
    let shared = w.host.groups["ssm-users"].gid;
    assert_eq!(w.host.users["alice"].gid, shared);
    assert!(!w.host.groups.contains_key("alice"), "no private group");
    assert_eq!(w.ledger().groups["ssm-users"].gid, Some(shared));
    assert_eq!(w.converge(&[claim("alice")], 3), 0);
    // The name of the shared group is never a user.
    let p = w.plan(&[claim("alice"), claim("ssm-users")], true);
    assert_eq!(p.rejections[0].reason, RejectReason::OwnGroup);

    // A group of that name that is not ours: no account is created with it.
    let mut w = World::new();
    w.settings.primary_group = Some("staffers".into());
    w.host.add_group("staffers", 1500, &["someone"]);
    let p = w.plan(&[claim("bob")], true);
    assert_eq!(
        skip_reason(&p, "bob"),
        Some(SkipReason::PrimaryGroupUnusable)
    );
    assert!(p.steps.is_empty(), "{p:#?}");
    assert!(
        p.notices
            .iter()
            .any(|n| n.code == "primary-group-unmanaged"),
        "{p:#?}"
    );
}

#[test]
fn a_missing_home_is_made_again_and_a_foreign_one_is_reported() {
    let mut w = World::new();
    w.converge(&[claim("alice"), claim("bob")], 3);
    // useradd made the account but not its home (exit 12), or an admin removed it.
    w.host.homes.remove("alice");
    let (p, _) = w.cycle(&[claim("alice"), claim("bob")], true);
    match step(&p, "repair", "alice") {
        Some(Step::Repair { changes, .. }) => assert_eq!(
            changes,
            &[Change::CreateHome {
                path: "/home/alice".into()
            }]
        ),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        w.host.homes.get("alice"),
        Some(HomeState::Dir { .. })
    ));
    // Someone else's directory at /home/bob: reported and held, never changed.
    w.host
        .homes
        .insert("bob".into(), HomeState::Dir { uid: 1000 });
    let p = w.plan(&[claim("alice"), claim("bob")], true);
    assert!(step(&p, "repair", "bob").is_none(), "{p:#?}");
    assert_eq!(p.holds[0].code, "home-foreign");
    assert_eq!(p.holds[0].users, ["bob"]);
    let said = |p: &Plan| {
        p.notices
            .iter()
            .find(|n| n.code == "home-foreign")
            .map(|n| n.message.clone())
            .unwrap_or_default()
    };
    assert!(said(&p).contains("/home/bob of `bob` (uid"), "{p:#?}");
    assert!(said(&p).contains("owned by uid 1000"), "{p:#?}");
    w.host.homes.insert("bob".into(), HomeState::Symlink);
    let p = w.plan(&[claim("alice"), claim("bob")], true);
    assert!(said(&p).contains("symbolic link"), "{p:#?}");
}

#[test]
fn an_interrupted_create_without_its_home_gets_it() {
    let mut w = World::new();
    w.converge(&[claim("alice")], 3);
    // The state a failed `useradd --create-home` (exit 12) leaves: the account without home,
    // the ledger still saying `creating`.
    let mut l = w.ledger();
    l.accounts.get_mut("alice").unwrap().state = ledger::AccountState::Creating;
    ledger::save(&w.ledger_path, &l).unwrap();
    w.host.homes.remove("alice");
    let (p, _) = w.cycle(&[claim("alice")], true);
    assert!(step(&p, "resume", "alice").is_some(), "{p:#?}");
    assert!(step(&p, "repair", "alice").is_some(), "{p:#?}");
    assert!(matches!(
        w.host.homes.get("alice"),
        Some(HomeState::Dir { .. })
    ));
}
