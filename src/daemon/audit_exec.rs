//! The exec capture in the daemon: a thread reading the chosen backend (kernel events must be
//! drained at once, whatever the audit loop is doing), keeping the lineage table, and handing
//! the sessions' commands to the audit loop over a bounded channel. When the channel is full
//! the thread waits, and the kernel's buffer takes the burst (its overflow is counted).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::audit::exec::{self, Backend, Capture, Item, table::Table};
use crate::clock::Clock;
use crate::config::{ExecBackend, ExecScope, Settings};
use crate::state::exec_status::Tried;

/// Batches in flight between the thread and the loop.
const CHANNEL: usize = 256;

/// The loop's end of a running capture.
pub(crate) struct ExecCapture {
    rx: mpsc::Receiver<Vec<Item>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The backend that runs.
    pub backend: &'static str,
    /// Processes tracked (updated by the thread).
    pub tracked: Arc<AtomicUsize>,
    /// Why the thread stopped, once it has.
    pub failed: Arc<Mutex<Option<String>>>,
}

/// What starting the capture gave: the capture (none when off or nothing works) and the
/// backends tried in vain.
pub(crate) struct Started {
    pub capture: Option<ExecCapture>,
    pub tried: Vec<Tried>,
}

/// The backends `setting` allows, best first.
fn candidates(setting: ExecBackend) -> Vec<&'static str> {
    match setting {
        ExecBackend::Auto => exec::ORDER.to_vec(),
        ExecBackend::Ebpf => vec!["ebpf"],
        ExecBackend::ProcConnector => vec!["proc-connector"],
        ExecBackend::Audit => vec!["audit"],
        ExecBackend::Off => Vec::new(),
    }
}

/// Starts the capture `settings` ask for (blocking: loading a backend and walking `/proc`).
pub(crate) fn start(settings: &Settings, clock: Arc<dyn Clock>) -> Started {
    let scope_all = settings.audit.exec_scope == ExecScope::All;
    let (backend, tried) = exec::open_first(&candidates(settings.audit.exec_backend), scope_all);
    let tried = tried
        .into_iter()
        .map(|(backend, why)| Tried { backend, why })
        .collect();
    let Some(backend) = backend else {
        return Started {
            capture: None,
            tried,
        };
    };
    // Subscribed first, then the table seeded: a fork in between is in the backend's queue.
    let proc = PathBuf::from("/proc");
    let table = Table::seed(&proc);
    let mut backend = backend;
    let mut tried: Vec<Tried> = tried;
    if let Err(e) = backend.seed(&mut table.pids()) {
        // The kernel-side filter misses the sessions open now; new ones are still seen.
        tried.push(Tried {
            backend: backend.name().into(),
            why: format!("the open sessions' processes could not be handed to it: {e}"),
        });
    }
    let capture = Capture::new(table, scope_all, proc);
    let (tx, rx) = mpsc::channel(CHANNEL);
    let stop = Arc::new(AtomicBool::new(false));
    let tracked = Arc::new(AtomicUsize::new(capture.table().len()));
    let failed = Arc::new(Mutex::new(None));
    let name = backend.name();
    let thread = {
        let (stop, tracked, failed) = (stop.clone(), tracked.clone(), failed.clone());
        std::thread::Builder::new()
            .name("exec-capture".into())
            .spawn(move || {
                if let Err(e) = pump(backend, capture, &tx, &stop, &tracked, clock.as_ref()) {
                    *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                }
            })
    };
    match thread {
        Ok(t) => Started {
            capture: Some(ExecCapture {
                rx,
                stop,
                thread: Some(t),
                backend: name,
                tracked,
                failed,
            }),
            tried,
        },
        Err(e) => {
            let mut tried = tried;
            tried.push(Tried {
                backend: name.into(),
                why: format!("cannot start its thread: {e}"),
            });
            Started {
                capture: None,
                tried,
            }
        }
    }
}

/// Commands handed over at once at most…
const BATCH: usize = 1024;
/// …or after waiting this long for more: one turn of the audit loop per batch, not per read.
const COALESCE: Duration = Duration::from_millis(20);

/// The thread: reads, attributes, hands over in batches; until told to stop or the loop has
/// gone.
fn pump(
    mut backend: Box<dyn Backend>,
    mut capture: Capture,
    tx: &mpsc::Sender<Vec<Item>>,
    stop: &AtomicBool,
    tracked: &AtomicUsize,
    clock: &dyn Clock,
) -> Result<(), String> {
    let mut raws = Vec::new();
    let mut items = Vec::new();
    let mut first: Option<std::time::Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        // With commands waiting, sleep out the rest of the batch's time and take what came
        // meanwhile (the kernel's buffer holds it): a wake-up per record cost more than the
        // records (measured: 0.75 ms of daemon CPU per exec in a burst).
        let wait = match first {
            Some(t) => {
                crate::clock::sleep_blocking(COALESCE.saturating_sub(t.elapsed()));
                Duration::ZERO
            }
            None => Duration::from_millis(250),
        };
        let drained_ns = crate::clock::monotonic_ns();
        backend
            .read(&mut raws, wait)
            .map_err(|e| format!("reading the {} backend: {e}", backend.name()))?;
        // Also with no events: held commands are handed over once nothing can still come.
        let now = crate::clock::epoch_ms(clock.now());
        capture.step(std::mem::take(&mut raws), now, drained_ns, &mut items);
        tracked.store(capture.table().len(), Ordering::Relaxed);
        if items.is_empty() {
            continue;
        }
        let since = *first.get_or_insert_with(std::time::Instant::now);
        if (items.len() >= BATCH || since.elapsed() >= COALESCE)
            && tx.blocking_send(std::mem::take(&mut items)).is_err()
        {
            break;
        }
        if items.is_empty() {
            first = None;
        }
    }
    Ok(())
}

impl ExecCapture {
    /// The next batches handed over (at least one; up to 64 at once); `None` once the thread
    /// has ended.
    pub(crate) async fn next(&mut self) -> Option<Vec<Item>> {
        let mut items = self.rx.recv().await?;
        for _ in 0..64 {
            match self.rx.try_recv() {
                Ok(more) => items.extend(more),
                Err(_) => break,
            }
        }
        Some(items)
    }

    /// Why the thread ended.
    pub(crate) fn failure(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for ExecCapture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.rx.close();
        // The thread wakes within its read timeout; it is not waited for in async code.
        drop(self.thread.take());
    }
}
