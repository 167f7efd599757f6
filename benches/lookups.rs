//! `cargo bench --bench lookups`: the first sync's planning for 1,000 and 10,000 principals on
//! this machine's real user database — the snapshot (passwd, group, login.defs, sysusers.d,
//! `/home`), the desired set and the plan, with every NSS lookup they make — three ways, side by
//! side in one run:
//!
//! - `sequential`: what versions before 0.2 did: each name and UID asked of NSS one at a time
//!   while planning (`getpwnam`, `getgrnam`, `getpwuid`, `getgrgid` through glibc);
//! - `auto`: what the daemon does now: nsswitch.conf decides; on a host whose `passwd` and
//!   `group` come from the files (and `systemd`) alone, the files are the answer, no lookup;
//! - `parallel`: what it does with a directory in nsswitch.conf (`sss`, `ldap`): the names and
//!   first UIDs the files lack asked in advance on 8 threads within `accounts.lookup_timeout`
//!   (forced here, so glibc's own backends answer).
//!
//! Each variant runs in a child process of its own (wall time, CPU time and peak RSS of the
//! whole process), three times; the median is printed.
#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark harness: failing loudly is right
#![allow(clippy::disallowed_methods)] // it re-runs itself and reads the clock

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};

use ssm_companion::accounts::desired::{self, Claim, Policy};
use ssm_companion::accounts::host::{Host, Lookups, ShadowHost};
use ssm_companion::accounts::ledger::{Binding, BindingCheck, Ledger};
use ssm_companion::accounts::plan::{self, PlanInput, PlanSettings};
use ssm_companion::config::Settings;

const VARIANT_ENV: &str = "SSMC_BENCH_LOOKUPS";

fn claims(n: usize) -> Vec<Claim> {
    (0..n)
        .map(|i| Claim {
            principal: format!("arn:aws:iam::123456789012:user/engineering/user{i}"),
            run_as: format!("bench-u{i}"),
            groups: vec![],
            host_groups: None,
        })
        .collect()
}

/// One first-sync plan; returns its number of steps.
fn run_once(n: usize, lookups: Lookups) -> usize {
    let settings = Settings::default();
    let host = ShadowHost::new(&settings).with_lookups(lookups);
    let ps = PlanSettings::from(&settings);
    let d = desired::build(
        &claims(n),
        &Policy {
            host_groups: BTreeSet::new(),
            allowed_groups: BTreeSet::new(),
        },
    );
    let names = d.accounts.keys().cloned().collect();
    let local = host.snapshot(&names).expect("snapshot of this machine");
    let p = plan::plan(PlanInput {
        desired: &d,
        complete: true,
        local: &local,
        ledger: &Ledger::new(Binding::default()),
        binding: &BindingCheck::Same,
        settings: &ps,
        now: SystemTime::UNIX_EPOCH,
        allow_mass_retire: false,
        empty_source: false,
    });
    p.steps.len()
}

fn child(spec: &str) {
    let (variant, n) = spec.split_once(':').expect("variant:n");
    let n: usize = n.parse().expect("n");
    let lookups = match variant {
        "sequential" => Lookups::Sequential,
        "auto" => Lookups::Auto,
        _ => Lookups::Parallel,
    };
    let t = Instant::now();
    let steps = run_once(n, lookups);
    let wall = t.elapsed();
    let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
        .expect("getrusage");
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(u64::try_from(t.tv_sec()).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec()).unwrap_or(0))
    };
    println!(
        "{} {} {} {} {steps}",
        wall.as_secs_f64(),
        tv(u.user_time()).as_secs_f64(),
        tv(u.system_time()).as_secs_f64(),
        u.max_rss()
    );
}

fn main() {
    if let Ok(spec) = std::env::var(VARIANT_ENV) {
        return child(&spec);
    }
    let nsswitch = std::fs::read_to_string("/etc/nsswitch.conf").unwrap_or_default();
    let line = |db: &str| {
        nsswitch
            .lines()
            .find(|l| l.trim_start().starts_with(db))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|| format!("{db}: (none)"))
    };
    println!(
        "This machine: `{}`, `{}`; {} lines in /etc/passwd.\n",
        line("passwd:"),
        line("group:"),
        std::fs::read_to_string("/etc/passwd")
            .map(|t| t.lines().count())
            .unwrap_or(0)
    );
    println!(
        "| principals | lookups | wall (median of 3) | user CPU | system CPU | peak RSS | steps |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|");
    let me = std::env::current_exe().expect("own path");
    for n in [1_000usize, 10_000] {
        for variant in ["sequential", "parallel", "auto"] {
            let mut runs: Vec<(f64, f64, f64, u64, String)> = (0..3)
                .map(|_| {
                    let out = std::process::Command::new(&me)
                        .env(VARIANT_ENV, format!("{variant}:{n}"))
                        .output()
                        .expect("run the child");
                    let text = String::from_utf8_lossy(&out.stdout);
                    let f: Vec<&str> = text.split_whitespace().collect();
                    assert!(
                        f.len() == 5,
                        "child failed: {text} {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    (
                        f[0].parse().unwrap(),
                        f[1].parse().unwrap(),
                        f[2].parse().unwrap(),
                        f[3].parse().unwrap(),
                        f[4].to_string(),
                    )
                })
                .collect();
            runs.sort_by(|a, b| a.0.total_cmp(&b.0));
            let (wall, user, sys, rss, steps) = &runs[1];
            println!(
                "| {n} | {variant} | {:.3} s | {:.3} s | {:.3} s | {:.1} MiB | {steps} |",
                wall,
                user,
                sys,
                *rss as f64 / 1024.0
            );
        }
    }
}
