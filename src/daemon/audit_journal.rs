//! The journal follower of the audit loop: one `journalctl --follow` child at a time, restarted
//! with a backoff when it ends, stopped while the spool is full (it resumes from the last cursor
//! spooled), and its lines handed to the loop in batches.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, BufReader};
use tokio::process::{Child, ChildStdout};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::audit::journal::{self, Line, LineReader};

/// The most lines handed over at once.
const BATCH: usize = 512;
/// The first wait before a restart; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A child that ran this long was healthy: the backoff starts again.
const HEALTHY: Duration = Duration::from_secs(60);
/// The most stderr kept for the log when journalctl ends.
const STDERR_MAX: u64 = 4096;

struct Running {
    child: Child,
    lines: LineReader<BufReader<ChildStdout>>,
    stderr: JoinHandle<String>,
    started: Instant,
    with_cursor: bool,
}

/// What [`Follower::next`] found.
pub(super) enum Next {
    /// Lines to spool.
    Lines(Vec<Line>),
    /// journalctl ended (or its output failed); it restarts after a backoff.
    Ended,
}

/// The follower (see the module docs).
pub(super) struct Follower {
    running: Option<Running>,
    restart_at: Instant,
    backoff: Duration,
    /// The last start after a cursor failed at once: read from the cursor's second instead.
    since_cursor: bool,
    /// What `audit status` and the log say about the source.
    pub state: String,
}

/// Whether journald runs on this host (its socket exists).
pub(super) fn journald_runs() -> bool {
    Path::new("/run/systemd/journal/socket").exists()
}

fn journalctl() -> Option<PathBuf> {
    journal::JOURNALCTL
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

impl Follower {
    pub(super) fn new() -> Self {
        Self {
            running: None,
            restart_at: Instant::now(),
            backoff: MIN_BACKOFF,
            since_cursor: false,
            state: "starting".into(),
        }
    }

    /// Whether a child runs (the loop polls [`Self::next`] only then).
    pub(super) fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// When the loop should come back to start it.
    pub(super) fn restart_at(&self) -> Option<Instant> {
        self.running.is_none().then_some(self.restart_at)
    }

    /// Starts journalctl after `cursor` when none runs and its restart time has come.
    pub(super) fn ensure_started(&mut self, cursor: Option<&str>) {
        if self.running.is_some() || Instant::now() < self.restart_at {
            return;
        }
        if !journald_runs() {
            self.state = "unavailable: journald does not run on this host (no /run/systemd/journal/socket); sudo and su are not recorded".into();
            self.restart_later(MAX_BACKOFF);
            return;
        }
        let Some(program) = journalctl() else {
            self.state = "unavailable: journalctl not found in /usr/bin or /bin".into();
            self.restart_later(MAX_BACKOFF);
            return;
        };
        let args = journal::argv(cursor, self.since_cursor);
        match crate::exec::spawn(&program, &args) {
            Ok(mut child) => {
                let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take())
                else {
                    // Both were asked for as pipes: spawn gives them.
                    self.state = "unavailable: journalctl's pipes are missing".into();
                    self.restart_later(self.backoff);
                    return;
                };
                let stderr = tokio::spawn(async move {
                    let mut s = String::new();
                    let _ = stderr.take(STDERR_MAX).read_to_string(&mut s).await;
                    s
                });
                tracing::debug!(
                    "audit: following the journal: journalctl {}",
                    args.join(" ")
                );
                self.state = "following".into();
                self.running = Some(Running {
                    child,
                    lines: LineReader::new(BufReader::with_capacity(64 * 1024, stdout)),
                    stderr,
                    started: Instant::now(),
                    with_cursor: cursor.is_some() && !self.since_cursor,
                });
            }
            Err(e) => {
                self.state = format!("unavailable: {e}");
                self.restart_later(self.backoff);
            }
        }
    }

    fn restart_later(&mut self, after: Duration) {
        self.running = None;
        self.restart_at = Instant::now() + after;
    }

    /// Stops the child because the spool is full: it restarts from the last cursor spooled
    /// after `retry`.
    pub(super) fn pause(&mut self, retry: Duration) {
        self.state = "paused: the spool is full (audit.spool_max)".into();
        self.restart_later(retry);
    }

    /// Stops the child (the source was switched off, or the daemon stops).
    pub(super) fn stop(&mut self) {
        self.running = None;
    }

    /// The next lines: waits for one, then takes whatever else is ready (up to [`BATCH`]).
    /// Pending for ever when no child runs.
    pub(super) async fn next(&mut self) -> Next {
        let Some(r) = self.running.as_mut() else {
            return std::future::pending().await;
        };
        let mut lines = Vec::new();
        match r.lines.next().await {
            Ok(Some(l)) => lines.push(l),
            Ok(None) | Err(_) => return Next::Ended,
        }
        while lines.len() < BATCH {
            // A zero timeout polls the read once: only what is already buffered or ready.
            match tokio::time::timeout(Duration::ZERO, r.lines.next()).await {
                Ok(Ok(Some(l))) => lines.push(l),
                _ => break,
            }
        }
        Next::Lines(lines)
    }

    /// journalctl ended: logs why and sets the restart.
    pub(super) async fn ended(&mut self) {
        let Some(mut r) = self.running.take() else {
            return;
        };
        let status = r.child.wait().await;
        let stderr = r.stderr.await.unwrap_or_default();
        let ran = r.started.elapsed();
        // A cursor journalctl cannot seek to ends it at once with a message naming the cursor.
        if r.with_cursor && ran < MIN_BACKOFF && stderr.to_ascii_lowercase().contains("cursor") {
            self.since_cursor = true;
        } else if ran >= HEALTHY {
            self.backoff = MIN_BACKOFF;
            self.since_cursor = false;
        }
        let why = match status {
            Ok(s) => s.to_string(),
            Err(e) => e.to_string(),
        };
        self.state = format!(
            "restarting in {}s: journalctl ended ({why}){}",
            self.backoff.as_secs(),
            if stderr.trim().is_empty() {
                String::new()
            } else {
                format!(": {}", stderr.trim())
            }
        );
        tracing::warn!("audit: journal source {}", self.state);
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        self.restart_later(wait);
    }

    /// Entries were spooled: their cursor is a good one to resume after, and a child that ran
    /// long enough starts the backoff again.
    pub(super) fn spooled(&mut self) {
        self.since_cursor = false;
        if self
            .running
            .as_ref()
            .is_some_and(|r| r.started.elapsed() >= HEALTHY)
        {
            self.backoff = MIN_BACKOFF;
        }
    }
}
