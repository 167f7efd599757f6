//! `cargo bench --bench plan`: CPU time of planning (desired set + plan) for 100, 1,000 and
//! 10,000 principals, on a first sync (nothing exists yet) and in steady state (everything
//! converged: the cost of a no-change cycle's planning). CPU time (user + system, getrusage), the
//! median of several runs, so a busy machine skews it less than wall time.
#![allow(clippy::expect_used)] // a benchmark harness: failing loudly is right

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use nix::sys::resource::{UsageWho, getrusage};
use ssm_companion::accounts::desired::{self, Claim, Policy};
use ssm_companion::accounts::ledger::{
    AccountState, Binding, BindingCheck, Ledger, ManagedAccount,
};
use ssm_companion::accounts::local::{FilesOnly, GroupEntry, LocalView, PasswdEntry};
use ssm_companion::accounts::plan::{self, COMMENT, PlanInput, PlanSettings};

fn cpu() -> Duration {
    let u = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage cannot fail for RUSAGE_SELF");
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(u64::try_from(t.tv_sec()).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec()).unwrap_or(0))
    };
    tv(u.user_time()) + tv(u.system_time())
}

fn settings() -> PlanSettings {
    PlanSettings {
        shell: "/bin/bash".into(),
        home_base: "/home".into(),
        uid_range: [20000, 59999],
        sudo_group: Some("ops-sudo".into()),
        allowed_groups: ["docker".to_string(), "ops-sudo".to_string()].into(),
        retire_grace: Duration::from_secs(86400),
        retire_confirmations: 3,
        max_retire_fraction: 0.25,
        remove_home: false,
        sudoers_file: "/etc/sudoers.d/ssm-companion".into(),
        reserved_names: Vec::new(),
        primary_group: None,
    }
}

fn claims(n: usize) -> Vec<Claim> {
    (0..n)
        .map(|i| Claim {
            principal: format!("arn:aws:iam::123456789012:user/engineering/user{i}"),
            run_as: format!("u{i}"),
            groups: match i % 3 {
                0 => vec!["docker".into()],
                1 => vec!["docker".into(), "ops-sudo".into()],
                _ => vec![],
            },
            host_groups: None,
        })
        .collect()
}

fn base_host() -> (Vec<PasswdEntry>, Vec<GroupEntry>) {
    let mut users = Vec::new();
    let mut groups = Vec::new();
    for i in 0..30u32 {
        users.push(PasswdEntry {
            name: format!("sys{i}"),
            uid: i,
            gid: i,
            gecos: String::new(),
            home: "/nonexistent".into(),
            shell: "/usr/sbin/nologin".into(),
        });
        groups.push(GroupEntry {
            name: format!("sys{i}"),
            gid: i,
            members: vec![],
        });
    }
    (users, groups)
}

/// A host where the first sync already happened: every account exists, with its groups.
fn converged(n: usize, s: &PlanSettings) -> (LocalView, Ledger) {
    let binding = Binding {
        machine_id: "m".into(),
        instance_id: Some("i-1".into()),
    };
    let policy = Policy {
        host_groups: BTreeSet::new(),
        allowed_groups: s.allowed_groups.clone(),
    };
    let d = desired::build(&claims(n), &policy);
    let (users, mut groups) = base_host();
    groups.push(GroupEntry {
        name: "docker".into(),
        gid: 999,
        members: vec![],
    });
    let local = LocalView::new(users, groups, Arc::new(FilesOnly));
    let p = plan::plan(PlanInput {
        desired: &d,
        complete: true,
        local: &local,
        ledger: &Ledger::new(binding.clone()),
        binding: &BindingCheck::Same,
        settings: s,
        now: SystemTime::UNIX_EPOCH,
        allow_mass_retire: false,
        empty_source: false,
    });
    let (mut users, mut groups) = base_host();
    groups.push(GroupEntry {
        name: "docker".into(),
        gid: 999,
        members: vec![],
    });
    groups.push(GroupEntry {
        name: "ops-sudo".into(),
        gid: 998,
        members: vec![],
    });
    let mut ledger = Ledger::new(binding);
    ledger.groups.insert(
        "ops-sudo".into(),
        ssm_companion::accounts::ledger::ManagedGroup {
            gid: Some(998),
            state: ssm_companion::accounts::ledger::GroupState::Active,
            created_at: SystemTime::UNIX_EPOCH,
            inherited_from: None,
        },
    );
    for step in &p.steps {
        if let plan::Step::Create {
            user,
            uid,
            groups: g,
            principals,
            ..
        } = step
        {
            users.push(PasswdEntry {
                name: user.clone(),
                uid: *uid,
                gid: *uid,
                gecos: COMMENT.into(),
                home: format!("/home/{user}").into(),
                shell: "/bin/bash".into(),
            });
            groups.push(GroupEntry {
                name: user.clone(),
                gid: *uid,
                members: vec![],
            });
            for name in g {
                if let Some(e) = groups.iter_mut().find(|e| &e.name == name) {
                    e.members.push(user.clone());
                }
            }
            ledger.accounts.insert(
                user.clone(),
                ManagedAccount {
                    uid: *uid,
                    state: AccountState::Active,
                    principals: principals.iter().cloned().collect(),
                    created_at: SystemTime::UNIX_EPOCH,
                    since: SystemTime::UNIX_EPOCH,
                    missing_reads: 0,
                    missing_since: None,
                    inherited_from: None,
                },
            );
        }
    }
    let mut local = LocalView::new(users, groups, Arc::new(FilesOnly));
    local.sudoers = Some(plan::sudoers_content("ops-sudo"));
    (local, ledger)
}

fn measure(reps: usize, mut f: impl FnMut() -> usize) -> (Duration, usize) {
    let mut times = Vec::with_capacity(reps);
    let mut steps = 0;
    for _ in 0..reps {
        let t = cpu();
        steps = f();
        times.push(cpu() - t);
    }
    times.sort();
    (times[times.len() / 2], steps)
}

fn main() {
    let s = settings();
    let policy = Policy {
        host_groups: BTreeSet::new(),
        allowed_groups: s.allowed_groups.clone(),
    };
    println!(
        "| principals | first sync: plan CPU (median) | steps | steady state: plan CPU (median) | steps |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for n in [100usize, 1_000, 10_000] {
        let reps = match n {
            100 => 200,
            1_000 => 30,
            _ => 5,
        };
        let c = claims(n);
        let (users, mut groups) = base_host();
        groups.push(GroupEntry {
            name: "docker".into(),
            gid: 999,
            members: vec![],
        });
        let empty = LocalView::new(users, groups, Arc::new(FilesOnly));
        let ledger = Ledger::new(Binding {
            machine_id: "m".into(),
            instance_id: Some("i-1".into()),
        });
        let (first, first_steps) = measure(reps, || {
            let d = desired::build(&c, &policy);
            plan::plan(PlanInput {
                desired: &d,
                complete: true,
                local: &empty,
                ledger: &ledger,
                binding: &BindingCheck::Same,
                settings: &s,
                now: SystemTime::UNIX_EPOCH,
                allow_mass_retire: false,
                empty_source: false,
            })
            .steps
            .len()
        });
        let (local, managed) = converged(n, &s);
        let (steady, steady_steps) = measure(reps, || {
            let d = desired::build(&c, &policy);
            plan::plan(PlanInput {
                desired: &d,
                complete: true,
                local: &local,
                ledger: &managed,
                binding: &BindingCheck::Same,
                settings: &s,
                now: SystemTime::UNIX_EPOCH,
                allow_mass_retire: false,
                empty_source: false,
            })
            .steps
            .len()
        });
        println!(
            "| {n} | {:.2} ms | {first_steps} | {:.2} ms | {steady_steps} |",
            first.as_secs_f64() * 1e3,
            steady.as_secs_f64() * 1e3
        );
    }
}
