//! systemd notification (`sd_notify(3)` protocol): one datagram per message to `$NOTIFY_SOCKET`.
//!
//! Failures are logged, never fatal: the daemon also runs without systemd.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// A handle on the notification socket (a no-op when not under systemd).
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` and `WATCHDOG_USEC` (with `WATCHDOG_PID`) from the environment.
    pub fn from_env() -> Self {
        let target = std::env::var("NOTIFY_SOCKET")
            .ok()
            .and_then(|path| Self::target(&path));
        let pid_ok = std::env::var("WATCHDOG_PID")
            .ok()
            .is_none_or(|p| p.trim() == std::process::id().to_string());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|u| *u > 0 && pid_ok)
            .map(Duration::from_micros);
        Self { target, watchdog }
    }

    /// The socket and address for `NOTIFY_SOCKET=path` (`@name`: an abstract socket).
    fn target(path: &str) -> Option<(UnixDatagram, SocketAddr)> {
        let addr = match path.strip_prefix('@') {
            Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name.as_bytes()),
            None => SocketAddr::from_pathname(path),
        };
        // Non-blocking: a manager that stops reading (its queue full) must never stall the
        // daemon's single thread; such a notification is dropped instead.
        match (
            UnixDatagram::unbound().and_then(|s| s.set_nonblocking(true).map(|()| s)),
            addr,
        ) {
            (Ok(sock), Ok(addr)) => Some((sock, addr)),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!("NOTIFY_SOCKET={path} is unusable: {e}");
                None
            }
        }
    }

    /// The watchdog period systemd expects (`WatchdogSec=`), if enabled.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Sends one notification (e.g. `READY=1\nSTATUS=…`).
    pub fn send(&self, state: &str) {
        if let Some((sock, addr)) = &self.target
            && let Err(e) = sock.send_to_addr(state.as_bytes(), addr)
        {
            if e.kind() == std::io::ErrorKind::WouldBlock {
                tracing::debug!("systemd's notification queue is full: dropped {state:?}");
            } else {
                tracing::warn!("cannot notify systemd ({state:?}): {e}");
            }
        }
    }

    /// `READY=1` with a status line.
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// `STATUS=…`.
    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={}", one_line(status)));
    }

    /// `WATCHDOG=1`.
    pub fn watchdog_ping(&self) {
        self.send("WATCHDOG=1");
    }

    /// `RELOADING=1` … then `READY=1` when done.
    pub fn reloading(&self) {
        self.send("RELOADING=1");
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping");
    }
}

fn one_line(s: &str) -> String {
    s.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_datagrams_to_a_path_socket() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier {
            target: Some((
                UnixDatagram::unbound().unwrap(),
                SocketAddr::from_pathname(&path).unwrap(),
            )),
            watchdog: None,
        };
        n.ready("accounts: 2 managed\nsecond line");
        let mut buf = [0u8; 256];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(
            &buf[..len],
            b"READY=1\nSTATUS=accounts: 2 managed second line"
        );
    }

    #[test]
    fn a_manager_that_stops_reading_never_blocks_the_daemon() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("notify");
        let _server = UnixDatagram::bind(&path).unwrap(); // never read
        let n = Notifier {
            target: Notifier::target(path.to_str().unwrap()),
            watchdog: None,
        };
        // Far more than a datagram queue holds: each send returns at once.
        for i in 0..5000 {
            n.status(&format!("status {i}"));
        }
    }

    #[test]
    fn no_socket_is_a_no_op() {
        let n = Notifier {
            target: None,
            watchdog: None,
        };
        n.ready("x");
        n.watchdog_ping();
    }
}
