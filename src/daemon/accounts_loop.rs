//! The accounts capability in the daemon: a sync after a random splay, then every
//! `accounts.interval` (jittered) and right after a reload; each sync's outcome is logged
//! (standing problems once) and becomes the capability's status line.

use std::time::Duration;

use super::requests::SyncRequest;
use super::{TaskContext, TaskError, jittered, stopped};
use crate::accounts::mapping::schedule::Schedule;
use crate::accounts::{self, Mode};
use crate::clock;
use crate::config::{Settings, SourceKind};

/// Logs what a sync reported. Rejections and notices are warnings the first time they are seen
/// and debug messages while they persist, so a standing problem does not flood the log every
/// interval; problems of the read itself are warnings every time.
fn log_sync(r: &accounts::SyncReport, seen: &mut std::collections::BTreeSet<String>) {
    // A safety stop holding a change back is a warning every cycle it persists (its notice is
    // not repeated separately).
    for h in &r.plan.holds {
        tracing::warn!("accounts: held by {}: {}", h.label(), h.message);
    }
    let notices = r
        .plan
        .notices
        .iter()
        .filter(|n| r.plan.holds.iter().all(|h| h.code != n.code))
        .map(|n| format!("accounts: {}: {}", n.code, n.message));
    let rejections = r.plan.rejections.iter().map(|j| {
        format!(
            "accounts: rejected {:?} from {}: {} ({})",
            j.value,
            j.principal,
            j.reason.as_str(),
            j.detail
        )
    });
    let now: std::collections::BTreeSet<String> = notices.chain(rejections).collect();
    for line in &now {
        if seen.contains(line) {
            tracing::debug!("{line}");
        } else {
            tracing::warn!("{line}");
        }
    }
    for p in &r.read.problems {
        tracing::warn!("accounts: {p}");
    }
    *seen = now;
}

/// The least time between two syncs asked for by another capability (a session that failed for
/// want of its Run As user): each reads the source (IAM) again, and a principal retrying a
/// session must not turn into a stream of IAM calls.
const MIN_REQUESTED_GAP: Duration = Duration::from_secs(30);

/// Says what became of the users requested syncs asked for.
fn log_requested(r: &accounts::SyncReport, requested: &[SyncRequest]) {
    for q in requested {
        let created = r.applied.as_ref().is_some_and(|a| {
            a.results
                .iter()
                .any(|x| x.step.action() == "create" && x.step.subject() == q.user)
        });
        if created {
            tracing::info!("accounts: created `{}`, which {}", q.user, q.why);
        } else {
            tracing::warn!(
                "accounts: `{}` was not created: {}, and no source wants `{}` on this host (or it was there already); check the principal's SSMSessionRunAs tag and accounts.source",
                q.user,
                q.why,
                q.user
            );
        }
    }
}

/// The polling schedule of the mapping source (`None` for the others): phased by the instance
/// id, or the host name off EC2.
fn mapping_schedule(settings: &Settings, aws: &crate::aws::Aws) -> Option<Schedule> {
    (settings.accounts.source == SourceKind::Mapping).then(|| {
        let id = aws.identity.instance_id.clone().unwrap_or_else(|| {
            nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        Schedule::new(&id, settings.accounts.mapping.interval)
    })
}

/// Whether a sync may stop after an unchanged mapping read (a 304): the last full sync converged
/// less than `repair` (`accounts.interval`) ago, and nobody asked for a sync (a session that
/// failed for want of its user: a local repair may be what it needs).
fn unchanged_is_done(
    last_full: Option<(tokio::time::Instant, bool)>,
    now: tokio::time::Instant,
    repair: Duration,
    asked: bool,
) -> bool {
    !asked && last_full.is_some_and(|(at, converged)| converged && now < at + repair)
}

fn since_epoch(t: std::time::SystemTime) -> Duration {
    t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default()
}

/// The accounts loop: a first sync after a random splay, then one every
/// `accounts.interval` (jittered), one right after each reload, and one when another capability
/// asks (at most one such every 30 s).
pub(crate) async fn run(mut ctx: TaskContext) -> Result<(), TaskError> {
    let mut seen = std::collections::BTreeSet::new();
    let mut settings = ctx.settings.borrow_and_update().clone();
    let start = since_epoch(ctx.clock.now());
    let aws = ctx.aws.get(&settings).await;
    let splay = match mapping_schedule(&settings, &aws) {
        // The mapping's polls are spread by the instance id: the first one over a whole interval.
        Some(s) => s.first_delay(fastrand::f64()),
        None => settings.accounts.splay.mul_f64(fastrand::f64()),
    };
    let mut failures = 0u32;
    tracing::info!(
        "accounts: first sync in {}",
        humantime::format_duration(Duration::from_secs(splay.as_secs()))
    );
    let mut wait = splay;
    let mut next_requested = tokio::time::Instant::now();
    let mut requested: Vec<SyncRequest> = Vec::new();
    // The mapping source's last full sync (when, and whether it converged): unchanged polls
    // between two full syncs do no local work.
    let mut last_full: Option<(tokio::time::Instant, bool)> = None;
    loop {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = ctx.requests.wait() => {
                let now = tokio::time::Instant::now();
                let new = ctx.requests.take();
                for q in &new {
                    tracing::info!("accounts: sync asked for: {}", q.why);
                }
                requested.extend(new);
                if now < next_requested {
                    // Too soon after the last one: it comes at the end of the gap.
                    wait = next_requested - now;
                    continue;
                }
            }
            changed = ctx.settings.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                settings = ctx.settings.borrow_and_update().clone();
                last_full = None;
                tracing::info!("accounts: configuration reloaded; syncing now");
            }
            () = stopped(&mut ctx.stop) => return Ok(()),
        }
        wait = jittered(settings.accounts.interval);
        let asked = std::mem::take(&mut requested);
        if !asked.is_empty() {
            next_requested = tokio::time::Instant::now() + MIN_REQUESTED_GAP;
        }
        if !settings.accounts.enabled {
            ctx.heartbeats.idle("accounts", "accounts: disabled".into());
            continue;
        }
        ctx.heartbeats.busy("accounts");
        // Loaded again when the identity or region was missing (see SharedAws::get), so one
        // bad start does not leave the daemon unable to verify its ledger for good.
        let aws = ctx.aws.get(&settings).await;
        let may_skip = settings.accounts.source == SourceKind::Mapping
            && unchanged_is_done(
                last_full,
                tokio::time::Instant::now(),
                settings.accounts.interval,
                !asked.is_empty(),
            );
        let (status, failed) = match accounts::sync(
            &settings,
            Some(aws.as_ref()),
            ctx.clock.as_ref(),
            Mode::Apply {
                allow_mass_retire: false,
                trust_inherited: false,
                unchanged_is_done: may_skip,
            },
        )
        .await
        {
            Ok(r) if may_skip && r.read.unchanged && r.read.complete => {
                let line = format!(
                    "accounts: {} managed, {} at {} (no local work; the next full sync within {})",
                    r.managed,
                    r.read.source,
                    clock::rfc3339(r.at),
                    humantime::format_duration(settings.accounts.interval)
                );
                tracing::info!("{line}");
                (line, false)
            }
            Ok(r) => {
                last_full = Some((tokio::time::Instant::now(), r.converged()));
                let changes = r.applied.as_ref().map_or(0, |a| {
                    a.results.iter().filter(|x| x.step.is_change()).count()
                });
                let failed = r.applied.as_ref().map_or(0, accounts::Applied::failed);
                log_sync(&r, &mut seen);
                log_requested(&r, &asked);
                let line = format!(
                    "accounts: {} managed, last sync {} {}{}{}{}",
                    r.managed,
                    clock::rfc3339(r.at),
                    if failed == 0 { "ok" } else { "with failures" },
                    if r.plan.holds.is_empty() {
                        String::new()
                    } else {
                        format!(
                            ", held ({})",
                            r.plan
                                .holds
                                .iter()
                                .map(|h| h.code.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    },
                    if changes > 0 {
                        format!(", {changes} change(s)")
                    } else {
                        String::new()
                    },
                    if r.read.complete {
                        ""
                    } else {
                        ", source read incomplete"
                    }
                );
                tracing::info!("{line}");
                (line, !r.read.complete && r.read.claims.is_empty())
            }
            Err(e) => {
                last_full = None;
                tracing::error!("accounts: sync failed: {e}");
                let line = format!(
                    "accounts: last sync {} failed: {e}",
                    clock::rfc3339(ctx.clock.now())
                );
                (line, true)
            }
        };
        if let Some(s) = mapping_schedule(&settings, &aws) {
            // A failed or throttled poll backs off with full jitter; a good one goes back to
            // this host's slot (never before the start + P: the first polls fill that interval).
            wait = if failed {
                failures = failures.saturating_add(1);
                s.backoff(failures - 1, fastrand::f64())
            } else {
                failures = 0;
                s.next_delay(
                    since_epoch(ctx.clock.now()),
                    start + s.interval,
                    fastrand::f64() * 2.0 - 1.0,
                )
            };
        }
        ctx.heartbeats.idle("accounts", status);
        ctx.notifier.status(&ctx.heartbeats.line());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    #[test]
    fn an_unchanged_poll_skips_local_work_only_after_a_recent_converged_sync() {
        let t0 = Instant::now();
        let repair = Duration::from_secs(300);
        let at = |s: u64| t0 + Duration::from_secs(s);
        // Never synced fully (a start, a reload): a full sync.
        assert!(!unchanged_is_done(None, at(10), repair, false));
        assert!(unchanged_is_done(Some((t0, true)), at(299), repair, false));
        // The repair interval is over: a full sync repairs local drift.
        assert!(!unchanged_is_done(Some((t0, true)), at(300), repair, false));
        // The last sync did not converge (a failed step, a hold): a full sync again.
        assert!(!unchanged_is_done(Some((t0, false)), at(10), repair, false));
        // A session failed for want of its user: a full sync.
        assert!(!unchanged_is_done(Some((t0, true)), at(10), repair, true));
    }
}
