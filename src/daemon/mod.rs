//! `ssm-companion run`: the supervisor.
//!
//! - READY=1 once the configuration is valid and the state directory is open; STATUS= after
//!   every sync; WATCHDOG=1 only while every capability is idle or making progress; STOPPING=1 on
//!   SIGTERM/SIGINT, after which a running sync is allowed to finish.
//! - SIGHUP reloads the configuration; a configuration that does not validate is refused and the
//!   old one stays in force (logged, and shown in STATUS).
//! - Each capability runs as its own task; one that fails or panics is restarted with
//!   exponential backoff (1 s doubling to 5 min) without touching the others.
//! - Signal streams are created once, before the loop.

mod health;
pub mod notify;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::accounts::{self, Mode};
use crate::aws::Aws;
use crate::clock::{self, Clock};
use crate::config::{self, LoadOptions, Settings};
use crate::state::StateDir;
use notify::Notifier;

/// A capability busy for longer than this is considered stuck: the watchdog stops being fed,
/// so systemd restarts the service.
pub const STALL_LIMIT: Duration = Duration::from_secs(15 * 60);

/// How long a stop waits for a running sync to finish (each step of a sync is crash-safe, so
/// stopping in the middle is safe, just untidy).
pub const STOP_LIMIT: Duration = Duration::from_secs(60);

/// The first restart delay of a failed capability (doubles up to [`MAX_BACKOFF`]).
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest restart delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    /// The state directory is unusable.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

/// What each capability task reports about itself (for the watchdog and STATUS).
#[derive(Debug, Default)]
pub struct Heartbeats {
    beats: Mutex<BTreeMap<&'static str, (Option<Instant>, String)>>,
}

impl Heartbeats {
    fn with<T>(
        &self,
        f: impl FnOnce(&mut BTreeMap<&'static str, (Option<Instant>, String)>) -> T,
    ) -> T {
        f(&mut self.beats.lock().unwrap_or_else(|e| e.into_inner()))
    }
    /// `name` starts work.
    pub fn busy(&self, name: &'static str) {
        self.with(|b| b.entry(name).or_default().0 = Some(Instant::now()));
    }
    /// `name` is done, with a status line.
    pub fn idle(&self, name: &'static str, status: String) {
        self.with(|b| *b.entry(name).or_default() = (None, status));
    }
    /// False when some capability has been busy for longer than `limit`.
    pub fn fresh(&self, limit: Duration) -> bool {
        self.with(|b| {
            b.values()
                .all(|(busy, _)| busy.is_none_or(|t| t.elapsed() < limit))
        })
    }
    /// Every capability's status line, joined.
    pub fn line(&self) -> String {
        self.with(|b| {
            b.values()
                .map(|(_, s)| s.as_str())
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join("; ")
        })
    }
}

/// Runs `make()` until it returns `Ok` or `stop` turns true; an `Err` or a panic is logged and
/// the task restarted after a backoff that doubles from [`FIRST_BACKOFF`] to [`MAX_BACKOFF`]
/// (reset after an hour without failure). Returns the number of restarts.
pub async fn supervise<F, Fut>(
    name: &'static str,
    mut make: F,
    mut stop: watch::Receiver<bool>,
) -> u32
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let mut backoff = FIRST_BACKOFF;
    let mut restarts = 0;
    loop {
        let started = tokio::time::Instant::now();
        let outcome = tokio::spawn(make()).await;
        let why = match outcome {
            Ok(Ok(())) => return restarts,
            Ok(Err(e)) => e,
            Err(e) if e.is_panic() => format!("panicked: {}", panic_message(e.into_panic())),
            Err(e) => format!("was cancelled: {e}"),
        };
        if *stop.borrow() {
            return restarts;
        }
        if started.elapsed() > Duration::from_secs(3600) {
            backoff = FIRST_BACKOFF;
        }
        tracing::error!(
            "capability {name} {why}; restarting in {}",
            humantime::format_duration(backoff)
        );
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = stopped(&mut stop) => return restarts,
        }
        restarts += 1;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Resolves once `stop` is true (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Shared by the capability tasks.
#[derive(Clone)]
pub(crate) struct TaskContext {
    pub(crate) settings: watch::Receiver<Arc<Settings>>,
    pub(crate) stop: watch::Receiver<bool>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) heartbeats: Arc<Heartbeats>,
    pub(crate) notifier: Arc<Notifier>,
}

/// ±10 % of `d`, uniformly.
pub(crate) fn jittered(d: Duration) -> Duration {
    d.mul_f64(0.9 + fastrand::f64() * 0.2)
}

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

async fn accounts_task(mut ctx: TaskContext) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    let mut settings = ctx.settings.borrow_and_update().clone();
    let mut aws = Aws::load(&settings.aws).await;
    if let Some(p) = &aws.imds_problem {
        tracing::info!("no EC2 instance identity: {p}");
    }
    let splay = settings.accounts.splay.mul_f64(fastrand::f64());
    tracing::info!(
        "accounts: first sync in {}",
        humantime::format_duration(Duration::from_secs(splay.as_secs()))
    );
    let mut wait = splay;
    loop {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            changed = ctx.settings.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                let new = ctx.settings.borrow_and_update().clone();
                if new.aws != settings.aws {
                    aws = Aws::load(&new.aws).await;
                }
                settings = new;
                tracing::info!("accounts: configuration reloaded; syncing now");
            }
            () = stopped(&mut ctx.stop) => return Ok(()),
        }
        wait = jittered(settings.accounts.interval);
        if !settings.accounts.enabled {
            ctx.heartbeats.idle("accounts", "accounts: disabled".into());
            continue;
        }
        ctx.heartbeats.busy("accounts");
        // Identity or region missing (IMDS not up yet at boot, a network blip): try again, so
        // one bad start does not leave the daemon unable to verify its ledger for good.
        if aws.imds_problem.is_some() || aws.sdk.is_err() {
            aws = Aws::load(&settings.aws).await;
        }
        let status = match accounts::sync(
            &settings,
            Some(&aws),
            ctx.clock.as_ref(),
            Mode::Apply {
                allow_mass_retire: false,
                trust_inherited: false,
            },
        )
        .await
        {
            Ok(r) => {
                let changes = r.applied.as_ref().map_or(0, |a| {
                    a.results.iter().filter(|x| x.step.is_change()).count()
                });
                let failed = r.applied.as_ref().map_or(0, accounts::Applied::failed);
                log_sync(&r, &mut seen);
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
                line
            }
            Err(e) => {
                tracing::error!("accounts: sync failed: {e}");
                format!(
                    "accounts: last sync {} failed: {e}",
                    clock::rfc3339(ctx.clock.now())
                )
            }
        };
        ctx.heartbeats.idle("accounts", status);
        ctx.notifier.status(&ctx.heartbeats.line());
    }
}

/// Runs the daemon until SIGTERM/SIGINT.
pub async fn run(
    opts: LoadOptions,
    initial: config::Loaded,
    clock: Arc<dyn Clock>,
) -> Result<(), DaemonError> {
    let mut sigterm = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    let mut sighup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;
    for w in &initial.warnings {
        tracing::warn!("config: {w} (ignored)");
    }
    let settings = Arc::new(initial.settings);
    StateDir::open(&settings.paths.state_dir)?;

    let notifier = Arc::new(Notifier::from_env());
    let (settings_tx, settings_rx) = watch::channel(settings.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let heartbeats = Arc::new(Heartbeats::default());
    heartbeats.idle("accounts", "accounts: starting".into());
    heartbeats.idle("health", "health: starting".into());
    let ctx = TaskContext {
        settings: settings_rx,
        stop: stop_rx.clone(),
        clock,
        heartbeats: heartbeats.clone(),
        notifier: notifier.clone(),
    };
    let accounts = {
        let ctx = ctx.clone();
        tokio::spawn(supervise(
            "accounts",
            move || accounts_task(ctx.clone()),
            stop_rx.clone(),
        ))
    };
    let health = tokio::spawn(supervise(
        "health",
        move || health::run(ctx.clone()),
        stop_rx,
    ));
    notifier.ready(&format!("running ({} config file(s))", initial.files.len()));
    tracing::info!(
        "ssm-companion {} running; config from {} file(s)",
        crate::VERSION,
        initial.files.len()
    );

    let watchdog_period = notifier.watchdog().map(|w| w / 2);
    let mut watchdog = tokio::time::interval(watchdog_period.unwrap_or(Duration::from_secs(3600)));
    loop {
        tokio::select! {
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            _ = sighup.recv() => {
                notifier.reloading();
                match config::load(&opts) {
                    Ok(loaded) => {
                        for w in &loaded.warnings {
                            tracing::warn!("config: {w} (ignored)");
                        }
                        tracing::info!("configuration reloaded from {} file(s)", loaded.files.len());
                        let _ = settings_tx.send(Arc::new(loaded.settings));
                        notifier.ready(&format!("reloaded; {}", heartbeats.line()));
                    }
                    Err(e) => {
                        tracing::error!("reload refused, keeping the previous configuration: {e}");
                        notifier.ready(&format!("reload refused (invalid configuration, see the log); {}", heartbeats.line()));
                    }
                }
            }
            _ = watchdog.tick(), if watchdog_period.is_some() => {
                if heartbeats.fresh(STALL_LIMIT) {
                    notifier.watchdog_ping();
                } else {
                    tracing::error!("a capability has been busy for over {}; not feeding the watchdog", humantime::format_duration(STALL_LIMIT));
                }
            }
        }
    }
    tracing::info!("stopping (a running sync is finished first; SIGTERM again to stop at once)");
    notifier.stopping();
    let _ = stop_tx.send(true);
    let both = async {
        let _ = accounts.await;
        let _ = health.await;
    };
    tokio::select! {
        () = both => tracing::info!("stopped"),
        () = tokio::time::sleep(STOP_LIMIT) => tracing::warn!(
            "stopping without waiting any longer: a sync is still running after {}",
            humantime::format_duration(STOP_LIMIT)
        ),
        _ = sigterm.recv() => tracing::warn!("second SIGTERM: stopping at once"),
        _ = sigint.recv() => tracing::warn!("second SIGINT: stopping at once"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn failing_capability_is_restarted_with_backoff() {
        let (_tx, rx) = watch::channel(false);
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        let start = tokio::time::Instant::now();
        let restarts = supervise(
            "test",
            move || {
                let r = r.clone();
                async move {
                    match r.fetch_add(1, Ordering::SeqCst) {
                        0 => Err("boom".to_string()),
                        1 => panic!("kaboom"),
                        2 => Err("again".to_string()),
                        _ => Ok(()),
                    }
                }
            },
            rx,
        )
        .await;
        assert_eq!(restarts, 3);
        assert_eq!(runs.load(Ordering::SeqCst), 4);
        // 1 s + 2 s + 4 s of backoff.
        assert_eq!(start.elapsed().as_secs(), 7);
    }

    #[tokio::test(start_paused = true)]
    async fn stop_ends_the_backoff_wait() {
        let (tx, rx) = watch::channel(false);
        let handle = tokio::spawn(supervise(
            "test",
            || async { Err("always".to_string()) },
            rx,
        ));
        tokio::time::sleep(Duration::from_millis(500)).await;
        tx.send(true).unwrap();
        assert_eq!(handle.await.unwrap(), 0);
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..1000 {
            let d = jittered(Duration::from_secs(300));
            assert!(
                d >= Duration::from_secs(270) && d <= Duration::from_secs(330),
                "{d:?}"
            );
        }
    }

    #[test]
    fn heartbeat_goes_stale_only_while_busy() {
        let h = Heartbeats::default();
        assert!(h.fresh(Duration::ZERO));
        h.idle("health", "health: ok".into());
        h.busy("accounts");
        assert!(!h.fresh(Duration::ZERO));
        assert!(h.fresh(Duration::from_secs(60)));
        h.idle("accounts", "accounts: 2 managed".into());
        assert!(h.fresh(Duration::ZERO));
        assert_eq!(h.line(), "accounts: 2 managed; health: ok");
    }
}
