//! The audit capability's loop in the daemon: the spool opened in `<state>/audit/spool`, the
//! session collector run on every inotify wake-up of the agent's `document/state/current/`
//! directories and at least every `audit.rescan_interval` (the listing is the truth), and the
//! spool's group commit (`fdatasync` within a second of an append, and at every stop).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::time::Duration;

use notify::Watcher as _;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::audit_cloudwatch;
use super::audit_exec::{self, ExecCapture};
use super::audit_journal::{Follower, Next, journald_runs};
use super::audit_ship::{self, Link};
use super::requests::SyncRequest;
use super::{TaskContext, TaskError, stopped};
use crate::audit::agentlog::{self, AgentLog};
use crate::audit::alert::Alerts;
use crate::audit::authlog::{self, AuthLog};
use crate::audit::collector::{Host, Pass, Sessions};
use crate::audit::exec::{self, Execs, Item};
use crate::audit::journal::{self, Batch, Line};
use crate::audit::ocsf;
use crate::audit::redact::Redactor;
use crate::audit::session;
use crate::audit::spool::{Options, Spool, SpoolError};
use crate::audit::transcript::{self, Transcripts};
use crate::audit::{audit_dir, spool_dir};
use crate::config::PrivilegeSource;
use crate::config::Settings;
use crate::state::exec_status::Tried;

/// What names this host in every event: the instance (IMDS, or the agent's registration on a
/// hybrid host, filled in per session), the region, the account (IMDS's identity document), the
/// host name.
async fn host(ctx: &TaskContext, settings: &Settings) -> Host {
    let aws = ctx.aws.get(settings).await;
    let account = match &aws.identity.instance_id {
        Some(_) => match crate::aws::imds_client(&settings.aws) {
            Ok(c) => crate::aws::account_id(&c).await,
            Err(_) => None,
        },
        None => None,
    };
    let region = aws
        .identity
        .region
        .clone()
        .or_else(|| Some(settings.aws.region.clone()).filter(|r| !r.is_empty()));
    Host {
        device: ocsf::Device {
            type_id: if aws.identity.instance_id.is_some() {
                6
            } else {
                1
            },
            hostname: nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok()),
            instance_uid: aws.identity.instance_id.clone(),
            region: region.clone(),
        },
        cloud: Some(ocsf::Cloud {
            provider: "AWS".into(),
            region,
            account: account.map(|uid| ocsf::Account {
                type_id: 10,
                uid: Some(uid),
                name: None,
            }),
        }),
        alerts: Arc::new(Alerts::new(&settings.audit)),
        redact: Arc::new(Redactor::new(&settings.audit.redact)),
    }
}

/// Watches the agent's state directory (new instance directories) and every `current/`
/// directory under it; each event only wakes the loop. Missing directories are left to the
/// periodic listing (and watched once they exist).
struct Watch {
    watcher: Option<notify::RecommendedWatcher>,
    watched: Vec<PathBuf>,
    /// The auth log followed, and the inode watched (a rotation puts another file there).
    auth_log: Option<(PathBuf, u64)>,
}

/// Whether an inotify event means "list again": a file created, renamed, written, removed, or
/// an overflow. Opening and reading do not — the listing itself opens the directory and the
/// files, and waking on that would list for ever.
fn wakes(event: &notify::Event) -> bool {
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode};
    match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Any
        | EventKind::Create(_)
        | EventKind::Modify(_)
        | EventKind::Remove(_)
        | EventKind::Other => true,
    }
}

impl Watch {
    fn new(wake: Arc<Notify>) -> Self {
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if res.as_ref().map_or(true, wakes) {
                wake.notify_one();
            }
        })
        .map_err(|e| tracing::warn!("audit: no inotify ({e}): the session files are listed every audit.rescan_interval only"))
        .ok();
        Self {
            watcher,
            watched: Vec::new(),
            auth_log: None,
        }
    }

    /// Watches the agent's session directories, and the auth log when it is followed: a line
    /// written there starts a pass at once, not at the next `rescan_interval`.
    fn update(&mut self, agent_state_dir: &Path, auth_log: Option<&Path>) {
        let Some(w) = self.watcher.as_mut() else {
            return;
        };
        let now = auth_log.and_then(|p| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (p.to_path_buf(), std::os::unix::fs::MetadataExt::ino(&m)))
        });
        if now != self.auth_log {
            if let Some((old, _)) = self.auth_log.take() {
                let _ = w.unwatch(&old);
            }
            if let Some((p, ino)) = now
                && w.watch(&p, notify::RecursiveMode::NonRecursive).is_ok()
            {
                self.auth_log = Some((p, ino));
            }
        }
        let mut want = vec![agent_state_dir.to_path_buf()];
        want.extend(session::current_dirs(agent_state_dir));
        for p in &want {
            if !self.watched.contains(p)
                && p.is_dir()
                && w.watch(p, notify::RecursiveMode::NonRecursive).is_ok()
            {
                self.watched.push(p.clone());
            }
        }
        // Directories that went away lose their watch by themselves.
        self.watched.retain(|p| p.is_dir());
    }
}

fn now_ms(ctx: &TaskContext) -> i64 {
    crate::clock::epoch_ms(ctx.clock.now())
}

/// The file sources of the loop, moved to the blocking pool for each turn.
struct Sources {
    sessions: Sessions,
    agent_log: AgentLog,
    agent_log_dir: PathBuf,
    /// sudo and su from the auth log, when that is the privilege source.
    auth_log: Option<AuthLog>,
    /// The sessions' terminal output (`audit.transcript`).
    transcripts: Option<Transcripts>,
    agent_state_dir: PathBuf,
    /// The commands of the exec capture.
    execs: Execs,
    /// When a command of a session not listed yet last made the turn list the session files
    /// (ms): at most once a second, so a session without a state file cannot make every
    /// batch list them.
    listed_for_exec: i64,
}

/// What one turn spooled.
#[derive(Default)]
struct Turn {
    sessions: Option<Pass>,
    failed: agentlog::Pass,
    journal: Batch,
    auth_log: authlog::Pass,
    transcript: transcript::Pass,
    exec: exec::Pass,
}

impl Turn {
    /// Whether an event of the turn carries an alert.
    fn alerted(&self) -> bool {
        self.sessions
            .iter()
            .flat_map(|p| &p.spooled)
            .chain(&self.failed.spooled)
            .chain(&self.transcript.spooled)
            .chain(&self.auth_log.spooled)
            .chain(&self.journal.spooled)
            .chain(&self.exec.spooled)
            .any(|e| e.metadata.labels.iter().any(|l| l.starts_with("alert:")))
    }
}

/// One turn of the loop, on the blocking pool: the session files listed (so a session's start
/// is spooled before what happened in it), the agent's and the auth log read, then the journal
/// lines handled.
fn work(
    spool: &mut Spool,
    src: &mut Sources,
    list: bool,
    lines: &[Line],
    commands: Vec<Item>,
    host: &Host,
    now: i64,
) -> Result<Turn, SpoolError> {
    let mut turn = Turn::default();
    // A command of a session not listed yet: its start (and principal) first.
    let unknown = commands.iter().any(|i| match i {
        Item::Command(c) => c
            .session
            .as_ref()
            .is_some_and(|id| !src.sessions.open().contains_key(&**id)),
        Item::Lost(_) => false,
    });
    let list = list || (unknown && now - src.listed_for_exec >= 1000);
    if unknown && list {
        src.listed_for_exec = now;
    }
    if list {
        turn.sessions = Some(src.sessions.pass(spool, host, now)?);
        turn.failed = src
            .agent_log
            .pass(&src.agent_log_dir, spool, host, src.sessions.open())?;
        if let Some(t) = src.transcripts.as_mut() {
            turn.transcript =
                t.pass(spool, host, &src.agent_state_dir, src.sessions.open(), now)?;
        }
    }
    let workers: BTreeMap<u32, String> = src
        .sessions
        .open()
        .values()
        .filter_map(|s| Some((s.worker_pid?, s.id.clone())))
        .collect();
    if let Some(auth_log) = src.auth_log.as_mut() {
        turn.auth_log = auth_log.pass(spool, host, Path::new("/proc"), &workers, now);
    }
    if !lines.is_empty() {
        turn.journal = journal::handle(lines, spool, host, Path::new("/proc"), &workers, now)?;
    }
    if !commands.is_empty() {
        turn.exec = src
            .execs
            .spool(commands, spool, host, src.sessions.open(), now);
    }
    Ok(turn)
}

/// Whether sudo and su come from the journal (else from the auth log).
fn from_journal(settings: &Settings) -> bool {
    match settings.audit.privilege_source {
        PrivilegeSource::Journal => true,
        PrivilegeSource::AuthLog => false,
        PrivilegeSource::Auto => journald_runs(),
    }
}

/// The audit loop (see the module docs). Off while `audit.enabled` is false.
pub(crate) async fn run(mut ctx: TaskContext) -> Result<(), TaskError> {
    let mut settings: Arc<Settings> = ctx.settings.borrow_and_update().clone();
    loop {
        if !settings.audit.enabled {
            ctx.heartbeats
                .idle("audit", "audit: off (audit.enabled = false)".into());
            tokio::select! {
                changed = ctx.settings.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    settings = ctx.settings.borrow_and_update().clone();
                    continue;
                }
                () = stopped(&mut ctx.stop) => return Ok(()),
            }
        }
        let dir = spool_dir(&settings.paths.state_dir);
        let opts = Options {
            max_bytes: settings.audit.spool_max,
            ..Options::default()
        };
        let opened = tokio::task::spawn_blocking(move || Spool::open(&dir, opts))
            .await
            .map_err(|source| TaskError::Blocking {
                what: "audit spool open",
                source,
            })?;
        let mut spool = match opened {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("audit: cannot open the spool: {e}");
                ctx.heartbeats
                    .idle("audit", format!("audit: spool unusable: {e}"));
                ctx.notifier.status(&ctx.heartbeats.line());
                tokio::select! {
                    changed = ctx.settings.changed() => {
                        if changed.is_err() {
                            return Ok(());
                        }
                        settings = ctx.settings.borrow_and_update().clone();
                    }
                    () = tokio::time::sleep(Duration::from_secs(60)) => {}
                    () = stopped(&mut ctx.stop) => return Ok(()),
                }
                continue;
            }
        };
        if spool.truncated() > 0 {
            tracing::warn!(
                "audit: the spool's torn tail ({} bytes, from a crash) was cut at open",
                spool.truncated()
            );
        }
        let agent_state_dir = settings.paths.agent_state_dir.clone();
        let sessions = Sessions::restore(
            &spool,
            &agent_state_dir,
            &audit_dir(&settings.paths.state_dir),
        );
        tracing::info!(
            "audit: on; spool at seq {} ({} bytes), {} session(s) open",
            spool.next_seq(),
            spool.used(),
            sessions.open().len()
        );
        let use_journal = settings.audit.privilege && from_journal(&settings);
        let mut src = Sources {
            sessions,
            agent_log: AgentLog::restore(&spool),
            agent_log_dir: settings.paths.agent_log_dir.clone(),
            auth_log: (settings.audit.privilege && !use_journal)
                .then(|| AuthLog::restore(&spool, &settings.paths.auth_logs)),
            transcripts: (settings.audit.sessions && settings.audit.transcript)
                .then(|| Transcripts::restore(&spool)),
            agent_state_dir: agent_state_dir.clone(),
            execs: Execs::new(now_ms(&ctx)),
            listed_for_exec: 0,
        };
        let (mut capture, exec_tried) = start_capture(&ctx, &settings).await?;
        let host = host(&ctx, &settings).await;
        let wake = Arc::new(Notify::new());
        let mut watch = Watch::new(wake.clone());
        let mut journal = Follower::new();
        let mut next_list = Instant::now();
        let mut sync_due: Option<Instant> = None;
        let mut last_status = String::new();
        // A source paused on a full spool in the last pass: the warnings are logged when it
        // fills, not at every pass of a long outage.
        let mut full = false;
        // The sinks (the S3 shipper when a bucket is named, the CloudWatch Logs sink when a log
        // group is): told how far the spool is durable and when an alert was spooled, each says
        // how far it has sent; segments every sink is past are then deleted.
        let (durable_tx, durable_rx) = tokio::sync::watch::channel(spool.durable_seq());
        let mut sinks: Vec<Sink> = Vec::new();
        if !settings.audit.s3.bucket.is_empty() {
            let (link, sink) = Sink::new(durable_rx.clone());
            let aws = ctx.aws.clone();
            let clock = ctx.clock.clone();
            let s = settings.clone();
            let dir = spool_dir(&settings.paths.state_dir);
            let (device, cloud) = (host.device.clone(), host.cloud.clone());
            sinks.push(sink.with_task(tokio::spawn(async move {
                let aws = aws.get(&s).await;
                audit_ship::run(s, dir, device, cloud, aws, clock, link).await;
            })));
        }
        if !settings.audit.cloudwatch.log_group.is_empty() {
            // The cursor exists before the first pass: a kill before the sink runs cannot make
            // it start past records this run spooled.
            let start = spool.durable_seq();
            let (dir, group, region) = (
                spool_dir(&settings.paths.state_dir),
                settings.audit.cloudwatch.log_group.clone(),
                settings.audit.cloudwatch.region.clone(),
            );
            let begun = tokio::task::spawn_blocking(move || {
                crate::audit::cloudwatch::Cursor::begin(&dir, &group, &region, start)
            })
            .await;
            match begun {
                Ok(Ok((c, Some(why)))) => tracing::info!(
                    "audit: the CloudWatch Logs sink starts after seq {} ({why})",
                    c.sent_seq
                ),
                Ok(Err(e)) => tracing::error!(
                    "audit: cannot write the CloudWatch cursor ({e}); retried by the sink"
                ),
                _ => {}
            }
            let (link, sink) = Sink::new(durable_rx.clone());
            let aws = ctx.aws.clone();
            let clock = ctx.clock.clone();
            let s = settings.clone();
            let dir = spool_dir(&settings.paths.state_dir);
            let device = host.device.clone();
            sinks.push(sink.with_task(tokio::spawn(async move {
                let aws = aws.get(&s).await;
                audit_cloudwatch::run(s, dir, device, aws, clock, start, link).await;
            })));
        }
        drop(durable_rx);
        let mut released = 0u64;
        let reload = loop {
            if use_journal {
                journal.ensure_started(spool.position(journal::SOURCE));
            }
            let next = [sync_due, journal.restart_at().filter(|_| use_journal)]
                .into_iter()
                .flatten()
                .fold(next_list, Instant::min);
            let mut lines = Vec::new();
            let mut commands = Vec::new();
            tokio::select! {
                changed = ctx.settings.changed() => break changed.is_ok(),
                () = stopped(&mut ctx.stop) => break false,
                () = wake.notified() => {}
                () = tokio::time::sleep_until(next) => {}
                got = journal.next(), if journal.is_running() => match got {
                    Next::Lines(l) => lines = l,
                    Next::Ended => journal.ended().await,
                },
                () = Sink::any_changed(&mut sinks) => {}
                got = next_commands(&mut capture) => match got {
                    Some(items) => commands = items,
                    None => {
                        let why = capture
                            .as_ref()
                            .and_then(ExecCapture::failure)
                            .unwrap_or_else(|| "its thread ended".into());
                        tracing::error!("audit: the exec capture stopped: {why}");
                        capture = None;
                        exec_status(&settings, None, &exec_tried, Some(why), &src.execs, 0, now_ms(&ctx));
                    }
                },
            }
            // Released through what every sink has (nothing without a sink).
            let shipped = sinks.iter_mut().map(Sink::sent).min().unwrap_or(0);
            ctx.heartbeats.busy("audit");
            watch.update(
                &agent_state_dir,
                src.auth_log.as_ref().and_then(AuthLog::path),
            );
            let now = now_ms(&ctx);
            let h = host.clone();
            let want_list = settings.audit.sessions;
            let had_lines = !lines.is_empty();
            let release = shipped > released;
            let (back, result, alerted, freed) = tokio::task::spawn_blocking(move || {
                // Segments S3 has wholly: deleted (room for the sources again).
                let freed = release.then(|| spool.release_through(shipped).map(|_| shipped));
                let result = work(&mut spool, &mut src, want_list, &lines, commands, &h, now);
                // An alert is made durable at once, so the shipper can send it now.
                let alerted = result.as_ref().is_ok_and(Turn::alerted);
                let synced = if alerted {
                    spool.sync()
                } else {
                    spool.sync_if_due()
                };
                (
                    (spool, src),
                    result.and_then(|p| synced.map(|_| p)),
                    alerted,
                    freed,
                )
            })
            .await
            .map_err(|source| TaskError::Blocking {
                what: "audit pass",
                source,
            })?;
            (spool, src) = back;
            // The auth log the pass found (at the first pass, or after a rotation) is watched
            // from now on.
            watch.update(
                &agent_state_dir,
                src.auth_log.as_ref().and_then(AuthLog::path),
            );
            let durable = spool.durable_seq();
            durable_tx.send_if_modified(|d| std::mem::replace(d, durable) != durable);
            if alerted {
                for sink in &sinks {
                    sink.alert.notify_one();
                }
            }
            match freed {
                Some(Ok(through)) => released = through,
                Some(Err(e)) => tracing::warn!(
                    "audit: cannot delete the segments shipped through seq {shipped}: {e} (retried at the next pass)"
                ),
                None => {}
            }
            match result {
                Ok(turn) => {
                    let Turn {
                        sessions: pass,
                        failed,
                        journal: batch,
                        auth_log,
                        transcript,
                        exec: exec_pass,
                    } = turn;
                    for e in pass
                        .iter()
                        .flat_map(|p| &p.spooled)
                        .chain(&failed.spooled)
                        .chain(&transcript.spooled)
                        .chain(&auth_log.spooled)
                        .chain(&batch.spooled)
                        .chain(&exec_pass.spooled)
                    {
                        // Terminal output and commands are the spool's business, not the log's.
                        if e.raw_data.is_some() || e.metadata.log_name == exec::SOURCE {
                            tracing::debug!("audit: {}", e.message);
                        } else {
                            tracing::info!("audit: {}", e.message);
                        }
                        let rules: Vec<&str> = e
                            .metadata
                            .labels
                            .iter()
                            .filter_map(|l| l.strip_prefix("alert:"))
                            .collect();
                        if !rules.is_empty() {
                            crate::events::audit_alert(
                                &rules,
                                e.severity_id,
                                &e.severity,
                                &e.metadata.uid,
                                &e.message,
                            );
                        }
                    }
                    if exec_pass.dropped > 0 {
                        match &exec_pass.error {
                            Some(e) => tracing::error!(
                                "audit: {e}: {} command(s) dropped (recorded as a gap once the spool takes events again)",
                                exec_pass.dropped
                            ),
                            None if !full => tracing::warn!(
                                "audit: the spool is full (audit.spool_max): commands are dropped and counted until it has room"
                            ),
                            None => {}
                        }
                    }
                    let now_full = exec_pass.dropped > 0
                        || auth_log.paused
                        || transcript.paused
                        || failed.paused
                        || batch.paused
                        || pass.as_ref().is_some_and(|p| p.paused);
                    let tell = now_full && !full;
                    if full && !now_full {
                        tracing::info!(
                            "audit: the spool has room again: the paused sources resume"
                        );
                    }
                    full = now_full;
                    // The accounts capability decides whether the user is one it should create.
                    for f in &failed.failures {
                        ctx.requests.account_sync(SyncRequest {
                            user: f.user.clone(),
                            why: format!(
                                "session {} of {} failed: Run As user `{}` does not exist",
                                f.session,
                                if f.owner.is_empty() {
                                    "an unknown principal"
                                } else {
                                    &f.owner
                                },
                                f.user
                            ),
                        });
                    }
                    if auth_log.paused {
                        match &auth_log.error {
                            Some(e) => tracing::error!(
                                "audit: {e}: the auth log is read again from the last line spooled once the spool can be written"
                            ),
                            None if tell => tracing::warn!(
                                "audit: the spool is full (audit.spool_max): the auth log is read again from the last line spooled once it has room"
                            ),
                            None => {}
                        }
                    } else if let Some(e) = &auth_log.error {
                        tracing::warn!("audit: {e}");
                    }
                    if transcript.paused && tell {
                        tracing::warn!(
                            "audit: the spool is full (audit.spool_max): terminal output waits until it has room"
                        );
                    }
                    if failed.paused && tell {
                        tracing::warn!(
                            "audit: the spool is full (audit.spool_max): the agent's log is read again once it has room"
                        );
                    }
                    for (comm, uid) in &batch.forged {
                        tracing::warn!(
                            "audit: a journal entry shaped like sudo's, su's or ssm-companion's account change came from `{comm}` (uid {}), not from that program: not recorded",
                            uid.map_or("unknown".into(), |u| u.to_string())
                        );
                    }
                    if !batch.spooled.is_empty() {
                        journal.spooled();
                    }
                    if pass.as_ref().is_some_and(|p| p.paused) && tell {
                        tracing::warn!(
                            "audit: the spool is full (audit.spool_max): session events wait until it has room"
                        );
                    }
                    if batch.paused {
                        match &batch.error {
                            Some(e) => tracing::error!(
                                "audit: {e}: the journal is read again from the last entry spooled once the spool can be written"
                            ),
                            None if tell => tracing::warn!(
                                "audit: the spool is full (audit.spool_max): the journal is read again from the last entry spooled once it has room"
                            ),
                            None => {}
                        }
                        journal.pause(settings.audit.rescan_interval);
                    }
                }
                Err(e) => {
                    tracing::error!("audit: {e}");
                    // The journal lines of this turn were not spooled: read them again.
                    if had_lines {
                        journal.pause(settings.audit.rescan_interval);
                    }
                }
            }
            if !settings.audit.privilege {
                journal.stop();
            }
            sync_due = (spool.durable_seq() + 1 < spool.next_seq())
                .then(|| Instant::now() + Duration::from_secs(1));
            if Instant::now() >= next_list {
                next_list = Instant::now() + settings.audit.rescan_interval;
                if let Some(c) = &capture {
                    exec_status(
                        &settings,
                        Some(c.backend),
                        &exec_tried,
                        None,
                        &src.execs,
                        c.tracked.load(std::sync::atomic::Ordering::Relaxed),
                        now_ms(&ctx),
                    );
                }
            }
            let privilege = match &src.auth_log {
                _ if !settings.audit.privilege => "journal off".to_string(),
                None => format!(
                    "journal {}",
                    journal.state.split(':').next().unwrap_or_default()
                ),
                Some(a) => match a.path() {
                    Some(p) => format!("auth log {}", p.display()),
                    None => "auth log unavailable".to_string(),
                },
            };
            let shipper_state = sinks
                .iter()
                .map(|s| s.state.borrow().clone())
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(", ");
            let line = format!(
                "audit: {} session(s) open, spool at seq {}{}, {privilege}, exec {}{}",
                src.sessions.open().len(),
                spool.next_seq(),
                if full { " (full: sources paused)" } else { "" },
                capture.as_ref().map_or("off", |c| c.backend),
                if shipper_state.is_empty() {
                    String::new()
                } else {
                    format!(", {shipper_state}")
                }
            );
            ctx.heartbeats.idle("audit", line.clone());
            // STATUS only when it changed: a pass runs every rescan_interval.
            if line != last_status {
                ctx.notifier.status(&ctx.heartbeats.line());
                last_status = line;
            }
        };
        journal.stop();
        drop(capture);
        for s in sinks {
            if let Some(t) = s.task {
                t.abort();
            }
        }
        // Stop or reload: everything appended reaches the disk first.
        let synced = tokio::task::spawn_blocking(move || spool.sync())
            .await
            .map_err(|source| TaskError::Blocking {
                what: "audit spool sync",
                source,
            })?;
        if let Err(e) = synced {
            tracing::error!("audit: the last records could not be synced: {e}");
        }
        if !reload {
            return Ok(());
        }
        settings = ctx.settings.borrow_and_update().clone();
    }
}

/// A sink's end of its link with the loop.
struct Sink {
    sent: tokio::sync::watch::Receiver<u64>,
    state: tokio::sync::watch::Receiver<String>,
    alert: Arc<Notify>,
    /// The sink ended (no AWS configuration): its state says why; its mark stays.
    ended: bool,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Sink {
    fn new(durable: tokio::sync::watch::Receiver<u64>) -> (Link, Sink) {
        let (sent_tx, sent) = tokio::sync::watch::channel(0u64);
        let (state_tx, state) = tokio::sync::watch::channel(String::new());
        let alert = Arc::new(Notify::new());
        let link = Link {
            durable,
            shipped: sent_tx,
            alert: alert.clone(),
            state: state_tx,
        };
        (
            link,
            Sink {
                sent,
                state,
                alert,
                ended: false,
                task: None,
            },
        )
    }

    fn with_task(mut self, task: tokio::task::JoinHandle<()>) -> Self {
        self.task = Some(task);
        self
    }

    fn sent(&mut self) -> u64 {
        *self.sent.borrow_and_update()
    }

    /// Waits until a sink sent more (or ended); never, without a live sink.
    async fn any_changed(sinks: &mut [Sink]) {
        let live: Vec<_> = sinks
            .iter_mut()
            .filter(|s| !s.ended)
            .map(|s| {
                Box::pin(async move {
                    if s.sent.changed().await.is_err() {
                        s.ended = true;
                    }
                })
            })
            .collect();
        if live.is_empty() {
            std::future::pending::<()>().await;
        }
        futures_util::future::select_all(live).await;
    }
}

/// The next commands of the capture; never, without one.
async fn next_commands(capture: &mut Option<ExecCapture>) -> Option<Vec<Item>> {
    match capture {
        Some(c) => c.next().await,
        None => std::future::pending().await,
    }
}

/// Writes the exec capture's status file (errors logged: it is only a report).
fn exec_status(
    settings: &Settings,
    backend: Option<&str>,
    tried: &[Tried],
    error: Option<String>,
    execs: &Execs,
    tracked: usize,
    now: i64,
) {
    use crate::state::exec_status::{ExecStatus, save};
    let setting = serde_json::to_value(settings.audit.exec_backend)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let scope = serde_json::to_value(settings.audit.exec_scope)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let status = ExecStatus {
        at: std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(now).unwrap_or(0)),
        setting,
        scope,
        backend: backend.map(str::to_string),
        tried: tried.to_vec(),
        error,
        tracked,
        commands: execs.commands(),
        lost: execs.lost_total(),
    };
    if let Err(e) = save(&settings.paths.state_dir, &status) {
        tracing::warn!("audit: cannot write the exec capture's status: {e}");
    }
}

/// Starts the exec capture `audit.exec_backend` asks for, and reports which backend runs and
/// why the better ones did not.
async fn start_capture(
    ctx: &TaskContext,
    settings: &Arc<Settings>,
) -> Result<(Option<ExecCapture>, Vec<Tried>), TaskError> {
    if settings.audit.exec_backend == crate::config::ExecBackend::Off {
        exec_status(settings, None, &[], None, &Execs::new(0), 0, now_ms(ctx));
        return Ok((None, Vec::new()));
    }
    let s = settings.clone();
    let clock = ctx.clock.clone();
    let started = tokio::task::spawn_blocking(move || audit_exec::start(&s, clock))
        .await
        .map_err(|source| TaskError::Blocking {
            what: "exec capture start",
            source,
        })?;
    for t in &started.tried {
        tracing::warn!("audit: exec backend {} not used: {}", t.backend, t.why);
    }
    let (backend, tracked, error) = match &started.capture {
        Some(c) => {
            tracing::info!(
                "audit: exec capture by {} ({} process(es) of open sessions tracked)",
                c.backend,
                c.tracked.load(std::sync::atomic::Ordering::Relaxed)
            );
            (
                Some(c.backend),
                c.tracked.load(std::sync::atomic::Ordering::Relaxed),
                None,
            )
        }
        None => {
            let why = "no exec backend works here: commands are not recorded".to_string();
            tracing::error!("audit: {why}");
            (None, 0, Some(why))
        }
    };
    exec_status(
        settings,
        backend,
        &started.tried,
        error,
        &Execs::new(0),
        tracked,
        now_ms(ctx),
    );
    Ok((started.capture, started.tried))
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RemoveKind, RenameMode};

    #[test]
    fn reading_the_session_files_does_not_wake_the_loop() {
        let wake = |kind| wakes(&notify::Event::new(kind));
        for quiet in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Access(AccessKind::Read),
        ] {
            assert!(!wake(quiet), "{quiet:?}");
        }
        for loud in [
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Remove(RemoveKind::File),
            EventKind::Other,
        ] {
            assert!(wake(loud), "{loud:?}");
        }
    }
}
