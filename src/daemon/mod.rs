//! `ssm-companion run`: the supervisor.
//!
//! - READY=1 once the configuration is valid and the state directory is open; STATUS= after
//!   every sync; WATCHDOG=1 only while every capability is idle or making progress; STOPPING=1 on
//!   SIGTERM/SIGINT, after which a running sync is allowed to finish.
//! - SIGHUP reloads the configuration; a configuration that does not validate is refused and the
//!   old one stays in force (logged, and shown in STATUS).
//! - Each capability of [`CAPABILITIES`] runs as its own task (its loop in its own file); one
//!   that fails or panics is restarted with exponential backoff (1 s doubling to 5 min) without
//!   touching the others. They share one [`aws::SharedAws`].
//! - Signal streams are created once, before the loop.

mod accounts_loop;
mod audit_cloudwatch;
mod audit_exec;
mod audit_journal;
mod audit_loop;
mod audit_ship;
mod aws;
mod health_loop;
pub mod notify;
mod requests;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::clock::Clock;
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

/// Why a capability's loop ended with an error (the supervisor restarts it).
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// A step on the blocking pool did not finish (it panicked or was cancelled).
    #[error("the {what} failed: {source}")]
    Blocking {
        /// The step.
        what: &'static str,
        /// How it ended.
        source: tokio::task::JoinError,
    },
}

impl TaskError {
    /// A stable slug for scripts and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            TaskError::Blocking { .. } => "blocking-step-failed",
        }
    }
}

/// A capability of the daemon: its name (in logs, STATUS and heartbeats) and its loop.
pub struct Capability {
    /// The name.
    pub name: &'static str,
    run: fn(TaskContext) -> BoxFuture<'static, Result<(), TaskError>>,
}

/// The capabilities the daemon runs, each under [`supervise`]. Adding one is a line here and
/// its loop in `daemon/<name>_loop.rs` (docs/development/README.md).
pub const CAPABILITIES: &[Capability] = &[
    Capability {
        name: "accounts",
        run: |ctx| Box::pin(accounts_loop::run(ctx)),
    },
    Capability {
        name: "health",
        run: |ctx| Box::pin(health_loop::run(ctx)),
    },
    Capability {
        name: "audit",
        run: |ctx| Box::pin(audit_loop::run(ctx)),
    },
];

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
pub async fn supervise<F, Fut, E>(
    name: &'static str,
    mut make: F,
    mut stop: watch::Receiver<bool>,
) -> u32
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let mut backoff = FIRST_BACKOFF;
    let mut restarts = 0;
    loop {
        let started = tokio::time::Instant::now();
        let outcome = tokio::spawn(make()).await;
        let why = match outcome {
            Ok(Ok(())) => return restarts,
            Ok(Err(e)) => format!("failed: {e}"),
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
pub struct TaskContext {
    pub(crate) aws: Arc<aws::SharedAws>,
    pub(crate) settings: watch::Receiver<Arc<Settings>>,
    pub(crate) stop: watch::Receiver<bool>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) heartbeats: Arc<Heartbeats>,
    pub(crate) notifier: Arc<Notifier>,
    /// Requests between capabilities (an accounts sync asked for by audit).
    pub(crate) requests: Arc<requests::Requests>,
}

/// ±10 % of `d`, uniformly.
pub(crate) fn jittered(d: Duration) -> Duration {
    d.mul_f64(0.9 + fastrand::f64() * 0.2)
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
    for c in CAPABILITIES {
        heartbeats.idle(c.name, format!("{}: starting", c.name));
    }
    let ctx = TaskContext {
        aws: Arc::new(aws::SharedAws::default()),
        settings: settings_rx,
        stop: stop_rx.clone(),
        clock,
        heartbeats: heartbeats.clone(),
        notifier: notifier.clone(),
        requests: Arc::new(requests::Requests::default()),
    };
    let mut tasks = JoinSet::new();
    for c in CAPABILITIES {
        let ctx = ctx.clone();
        let run = c.run;
        tasks.spawn(supervise(c.name, move || run(ctx.clone()), stop_rx.clone()));
    }
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
    let all = async { while tasks.join_next().await.is_some() {} };
    tokio::select! {
        () = all => tracing::info!("stopped"),
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
