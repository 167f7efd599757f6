//! Lookups that can hang — `getaddrinfo` and `getpwnam` go through NSS, whose sources (DNS, LDAP,
//! SSSD) may never answer — run on a small, fixed pool of threads, reused for the life of the
//! process. A caller waits at most its deadline; a lookup that hangs keeps its thread, never the
//! caller; and the number of threads never grows: when every worker is stuck, later lookups wait
//! in the queue and time out saying so, instead of each run leaving one more thread behind.
//!
//! The system resolver (not an own DNS client) is used on purpose: it answers as every other
//! program on the host does — `/etc/hosts`, `nsswitch.conf`, `resolv.conf` options, systemd-resolved,
//! LDAP/SSSD for users — which is what the agent and sessions will meet.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Worker threads: enough for the parallel endpoint lookups of one health run to go through
/// the pool in one or two rounds, few enough that a host where NSS hangs keeps a handful.
pub const WORKERS: usize = 4;

/// Lookups waiting for a worker at most: beyond, a caller fails at once (every worker is stuck
/// and the queue is not drained), so a host where NSS hangs for days keeps a bounded queue too.
const MAX_QUEUED: usize = 64;

type Job = Box<dyn FnOnce() + Send>;

struct Pool {
    queue: Mutex<mpsc::Sender<Job>>,
    /// Workers inside a lookup now.
    busy: Arc<AtomicUsize>,
    /// Jobs sent and not yet taken by a worker.
    queued: Arc<AtomicUsize>,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let busy = Arc::new(AtomicUsize::new(0));
        let queued = Arc::new(AtomicUsize::new(0));
        for i in 0..WORKERS {
            let rx = rx.clone();
            let busy = busy.clone();
            let queued = queued.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("lookup-{i}"))
                .spawn(move || {
                    loop {
                        // A poisoned lock only means another worker panicked inside `recv`.
                        let job = match rx.lock().unwrap_or_else(|e| e.into_inner()).recv() {
                            Ok(j) => j,
                            Err(_) => return,
                        };
                        queued.fetch_sub(1, Ordering::SeqCst);
                        busy.fetch_add(1, Ordering::SeqCst);
                        // A lookup that panics costs its answer, not the worker.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                        busy.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!("cannot start lookup thread {i}: {e}");
            }
        }
        Pool {
            queue: Mutex::new(tx),
            busy,
            queued,
        }
    })
}

/// A lookup that gave no answer in time (or, when every worker is stuck and the queue is full,
/// was not even tried: `waited` is zero).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hung {
    /// How long the caller waited.
    pub waited: Duration,
    /// Workers still inside a lookup when the caller gave up.
    pub stuck: usize,
}

impl std::fmt::Display for Hung {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.waited.is_zero() {
            write!(
                f,
                "not tried: all {WORKERS} lookup threads are stuck in earlier lookups and {MAX_QUEUED} more wait for them (a hung NSS source or resolver?)"
            )
        } else {
            write!(
                f,
                "no answer within {} ({} of {WORKERS} lookup threads are still inside earlier lookups: a hung NSS source or resolver?)",
                humantime::format_duration(self.waited),
                self.stuck
            )
        }
    }
}

impl std::error::Error for Hung {}

/// Runs `f` on the pool and waits at most `timeout` for its answer. A job whose caller gave up
/// before a worker took it is not run at all.
pub async fn run<T: Send + 'static>(
    timeout: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Hung> {
    let p = pool();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        if !tx.is_closed() {
            let _ = tx.send(f());
        }
    });
    let hung = |waited| Hung {
        waited,
        stuck: p.busy.load(Ordering::SeqCst),
    };
    if p.queued.fetch_add(1, Ordering::SeqCst) >= MAX_QUEUED {
        p.queued.fetch_sub(1, Ordering::SeqCst);
        return Err(hung(Duration::ZERO));
    }
    let sent = p
        .queue
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send(job)
        .is_ok();
    if !sent {
        p.queued.fetch_sub(1, Ordering::SeqCst);
        return Err(hung(Duration::ZERO));
    }
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(v)) => Ok(v),
        _ => Err(hung(timeout)),
    }
}

/// Resolves `host` with the system resolver, through the pool.
pub async fn resolve(
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<Vec<std::net::IpAddr>, String> {
    use std::net::ToSocketAddrs;
    let name = host.to_string();
    match run(timeout, move || {
        (name.as_str(), port)
            .to_socket_addrs()
            .map(|a| a.map(|s| s.ip()).collect::<Vec<_>>())
    })
    .await
    {
        Ok(Ok(addrs)) => Ok(addrs),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// The pool's threads alive in this process (by name, from /proc): for tests and benchmarks.
pub fn pool_threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| {
        d.filter_map(Result::ok)
            .filter(|t| {
                std::fs::read_to_string(t.path().join("comm"))
                    .is_ok_and(|c| c.starts_with("lookup-"))
            })
            .count()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lookups that never return (until the test lets them): the callers time out, the thread
    /// count stays flat however many more come, the queue stays bounded, and once the workers
    /// are free the pool answers again.
    #[tokio::test(flavor = "current_thread")]
    async fn hung_lookups_keep_their_threads_not_their_callers() {
        // Jobs block until `release` is dropped: lookups that "never" return.
        let (release, gate) = mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        // Start the pool first; a new thread names itself once it runs.
        run(Duration::from_secs(5), || ()).await.unwrap();
        let mut before = pool_threads();
        for _ in 0..100 {
            if before == WORKERS {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            before = pool_threads();
        }
        assert_eq!(before, WORKERS);
        for _ in 0..100 {
            let g = gate.clone();
            let r = run(Duration::from_millis(5), move || {
                let _ = g.lock().map(|rx| rx.recv());
            })
            .await;
            let e = r.unwrap_err();
            assert!(e.stuck <= WORKERS, "{e}");
            assert!(e.to_string().contains("lookup threads"), "{e}");
        }
        assert_eq!(pool_threads(), before, "no thread per lookup");
        drop(release);
        // Freed, the workers drain the queue (jobs whose callers left are skipped) and answer.
        let mut answer = run(Duration::from_secs(5), || 42).await;
        for _ in 0..100 {
            if answer.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            answer = run(Duration::from_secs(5), || 42).await;
        }
        assert_eq!(answer, Ok(42));
        assert_eq!(
            resolve("localhost", 443, Duration::from_secs(5))
                .await
                .map(|a| !a.is_empty()),
            Ok(true)
        );
    }
}
