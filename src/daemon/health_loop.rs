//! The health capability's loop in the daemon: local checks every `health.interval`, network checks
//! every `health.network_interval` (each jittered), the agent's log followed by inode between
//! runs; after each run, verdict changes become journal events, `health.json` (and the
//! Prometheus textfile) is rewritten atomically, a safe fix is tried if enabled, and the report
//! goes to SSM Inventory when due.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{TaskContext, TaskError, jittered, stopped};
use crate::aws::Aws;
use crate::config::Settings;
use crate::health::agent_log::{self, Digest, Follower};
use crate::health::{self, CheckResult, LocalFacts, Status, inventory, report};

/// File name of the report in the state directory.
pub const REPORT_FILE: &str = "health.json";

struct State {
    /// The last Inventory send, also kept here: the rate limit holds when its record cannot be
    /// written (a full disk).
    sent: Option<inventory::Sent>,
    follower: Follower,
    /// The digest was seeded by a backward read of the log (the first run).
    seeded: bool,
    digest: Digest,
    local: Vec<CheckResult>,
    facts: LocalFacts,
    /// The last network run's results; `None` until the first one after the start.
    network: Option<Vec<CheckResult>>,
    last: BTreeMap<String, Status>,
}

fn write_outputs(settings: &Settings, r: &report::Report, unix: u64) {
    let dir = &settings.paths.state_dir;
    let mut json = report::json(r).into_bytes();
    json.push(b'\n');
    if let Err(e) = crate::state::ensure_dir(dir)
        .and_then(|()| crate::state::write_atomic(&dir.join(REPORT_FILE), &json, 0o644))
    {
        tracing::warn!("health: {e}");
    }
    let textfile = &settings.health.prometheus_textfile;
    if !textfile.is_empty()
        && let Err(e) = crate::state::write_atomic(
            std::path::Path::new(textfile),
            report::prometheus(
                r,
                unix,
                crate::state::shipping_status::load(dir)
                    .ok()
                    .flatten()
                    .filter(|_| settings.audit.enabled && !settings.audit.s3.bucket.is_empty())
                    .as_ref(),
            )
            .as_bytes(),
            0o644,
        )
    {
        tracing::warn!("health: cannot write the Prometheus textfile {textfile}: {e}");
    }
}

/// The checks of a report, and whether it is partial (no network run yet).
fn assemble(local: &[CheckResult], network: Option<&[CheckResult]>) -> (Vec<CheckResult>, bool) {
    let mut checks = local.to_vec();
    checks.extend(network.unwrap_or_default().iter().cloned());
    (checks, network.is_none())
}

/// Whether a check's status is worth an event: a change, or at start a warning or critical
/// (a check still unknown at start is not news: `unknown -> unknown`).
fn is_change(before: Option<Status>, now: Status) -> bool {
    match before {
        Some(b) => b != now,
        None => matches!(now, Status::Warning | Status::Critical),
    }
}

/// Logs every check whose status changed as a journal event (non-ok ones at start).
fn log_changes(r: &report::Report, last: &mut BTreeMap<String, Status>) {
    for c in &r.checks {
        let before = last.insert(c.id.clone(), c.status);
        let changed = is_change(before, c.status);
        if changed {
            crate::events::health_change(
                &c.id,
                before.map_or("unknown", Status::as_str),
                c.status.as_str(),
                &c.detail,
            );
        }
    }
}

async fn send_inventory(
    ctx: &mut TaskContext,
    settings: &Settings,
    aws: &Aws,
    r: &report::Report,
    sent: &mut Option<inventory::Sent>,
) {
    let dir = &settings.paths.state_dir;
    let now = ctx.clock.now();
    let last = sent.clone().unwrap_or_else(|| inventory::load(dir));
    let hash = report::status_hash(r);
    if !inventory::due(
        &last,
        &hash,
        now,
        settings.health.inventory_min_interval,
        settings.health.inventory_max_age,
    ) {
        return;
    }
    let Some(instance) = r.instance_id.clone() else {
        tracing::warn!("health: not sending inventory: this instance's id is unknown");
        return;
    };
    let Some(sdk) = aws.sdk() else {
        tracing::warn!("health: not sending inventory: no AWS configuration");
        return;
    };
    // Like the agent: a random delay so a fleet restarted at once does not send at once.
    let delay = settings.health.inventory_splay.mul_f64(fastrand::f64());
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        () = stopped(&mut ctx.stop) => return,
    }
    let record = match inventory::send(&crate::aws::clients::ssm(sdk), &instance, r, now).await {
        Ok(hash) => {
            tracing::info!("health: sent {} for {instance}", report::INVENTORY_TYPE);
            inventory::Sent::success(now, hash)
        }
        Err(e) => {
            let next = last.failure(now);
            tracing::warn!(
                "health: {e} (attempt {}; retrying with backoff)",
                next.failures
            );
            next
        }
    };
    if let Err(e) = inventory::save(dir, &record) {
        tracing::warn!(
            "health: cannot record the inventory send (the limit holds until a restart): {e}"
        );
    }
    *sent = Some(record);
}

/// The health loop: local checks every `health.interval`, network checks every
/// `health.network_interval`, each jittered, and both right after a reload.
pub(crate) async fn run(mut ctx: TaskContext) -> Result<(), TaskError> {
    let mut settings: Arc<Settings> = ctx.settings.borrow_and_update().clone();
    let mut aws = ctx.aws.get(&settings).await;
    let mut st = State {
        sent: None,
        follower: Follower::default(),
        seeded: false,
        digest: Digest::default(),
        local: Vec::new(),
        facts: LocalFacts::default(),
        network: None,
        last: BTreeMap::new(),
    };
    let mut next_local = Instant::now();
    let mut next_network = Instant::now() + Duration::from_millis(fastrand::u64(0..5_000));
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next_local.min(next_network)) => {}
            changed = ctx.settings.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                settings = ctx.settings.borrow_and_update().clone();
                aws = ctx.aws.get(&settings).await;
                next_local = Instant::now();
                next_network = Instant::now();
                continue;
            }
            () = stopped(&mut ctx.stop) => return Ok(()),
        }
        let h = &settings.health;
        if !h.enabled {
            ctx.heartbeats.idle("health", "health: disabled".into());
            next_local = Instant::now() + h.interval;
            next_network = next_local;
            continue;
        }
        ctx.heartbeats.busy("health");
        let now = ctx.clock.now();
        if Instant::now() >= next_local {
            let s = settings.clone();
            let seeded = st.seeded;
            st.seeded = true;
            let mut follower = std::mem::take(&mut st.follower);
            let mut digest = std::mem::take(&mut st.digest);
            let run = tokio::task::spawn_blocking(move || {
                let dir = &s.paths.agent_log_dir;
                let present = dir.join(agent_log::LOG_FILE).exists();
                if seeded {
                    if let Ok(records) = follower.poll(dir, health::LOG_READ_LIMIT) {
                        digest.add(&records);
                    }
                } else {
                    // The first run: note where every file ends, then read backwards as far as
                    // it matters (a busy log's tail alone could hide the last health line).
                    let _ = follower.poll(dir, 0);
                    let freq = health::agent::config(&s.paths.agent_config_dir)
                        .0
                        .health_frequency_minutes;
                    let (window_start, horizon) =
                        health::log_horizon(now, s.health.log_window, freq);
                    let recent = agent_log::read_back(dir, window_start, horizon);
                    digest.add(&recent.records);
                    digest.started = recent.started;
                }
                digest.prune(now, s.health.log_window);
                let (results, facts) = health::local_checks(&s, now, Some((&digest, present)));
                (follower, digest, results, facts)
            })
            .await
            .map_err(|source| TaskError::Blocking {
                what: "local health checks",
                source,
            })?;
            (st.follower, st.digest, st.local, st.facts) = run;
            next_local = Instant::now() + jittered(h.interval);
        }
        if Instant::now() >= next_network {
            // Loaded again when the identity or the SDK configuration was missing.
            aws = ctx.aws.get(&settings).await;
            let started = Instant::now();
            st.network = Some(health::network_checks(&settings, &aws, &st.facts, now).await);
            tracing::debug!(
                "health: network checks done in {} ms",
                started.elapsed().as_millis()
            );
            next_network = Instant::now() + jittered(h.network_interval);
        }
        let (checks, partial) = assemble(&st.local, st.network.as_deref());
        let mut r = health::make_report(checks, &st.facts, &aws, now);
        r.partial = partial;
        log_changes(&r, &mut st.last);
        let unix = now
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        write_outputs(&settings, &r, unix);
        if h.fix
            && let Some(outcome) = health::fix::remediate(&settings, &r, ctx.clock.as_ref()).await
        {
            tracing::warn!("health.fix: {outcome}");
            // The agent needs a while to come up: look again soon.
            if outcome.ran() {
                next_local = Instant::now() + Duration::from_secs(30);
            }
        }
        // Fleet-wide, only a full report: a local-only one would say "ok" for a host that
        // cannot reach AWS until the next send (up to inventory_min_interval later).
        if h.inventory && !r.partial {
            send_inventory(&mut ctx, &settings, &aws, &r, &mut st.sent).await;
        }
        let problems = r.checks.iter().filter(|c| c.status != Status::Ok).count();
        ctx.heartbeats.idle(
            "health",
            format!("health: {} ({problems} check(s) not ok)", r.overall),
        );
        ctx.notifier.status(&ctx.heartbeats.line());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_before_the_first_network_run_is_partial() {
        let local = [CheckResult::ok("agent.installed", "")];
        let (checks, partial) = assemble(&local, None);
        assert!(partial);
        assert_eq!(checks.len(), 1);
        let network = [CheckResult::new("sts.identity", Status::Critical, "", "")];
        let (checks, partial) = assemble(&local, Some(&network));
        assert!(!partial);
        assert_eq!(checks.len(), 2);
        // A network run that found nothing to check still makes the report whole.
        assert!(!assemble(&local, Some(&[])).1);
    }

    #[test]
    fn only_news_is_logged() {
        assert!(!is_change(None, Status::Ok));
        assert!(
            !is_change(None, Status::Unknown),
            "unknown -> unknown at start"
        );
        assert!(is_change(None, Status::Warning) && is_change(None, Status::Critical));
        assert!(is_change(Some(Status::Ok), Status::Unknown));
        assert!(!is_change(Some(Status::Critical), Status::Critical));
    }
}
