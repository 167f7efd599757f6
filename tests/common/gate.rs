//! A TCP forwarder a test can take down and bring back: while down, new connections are refused
//! and open ones are reset — an outage as the host sees it — on the same port throughout.

use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The forwarder (stops with the test process).
pub struct Gate {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Gate {
    /// Forwards a new local port to `target` (`http://host:port`).
    pub fn new(target: &str) -> Self {
        let target: SocketAddr = target
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .unwrap();
        let first = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = first.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (u, o) = (up.clone(), open.clone());
        std::thread::spawn(move || {
            let mut listener = Some(first);
            loop {
                match (&listener, u.load(Ordering::SeqCst)) {
                    (Some(_), false) => {
                        listener = None;
                        for s in o.lock().unwrap().drain(..) {
                            let _ = s.shutdown(Shutdown::Both);
                        }
                    }
                    // The port is ours to take again (std sets SO_REUSEADDR).
                    (None, true) => listener = TcpListener::bind(addr).ok(),
                    _ => {}
                }
                let Some(l) = &listener else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                l.set_nonblocking(true).unwrap();
                match l.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let Ok(server) = TcpStream::connect(target) else {
                            continue;
                        };
                        let mut held = o.lock().unwrap();
                        held.push(client.try_clone().unwrap());
                        held.push(server.try_clone().unwrap());
                        for (mut from, mut to) in [
                            (client.try_clone().unwrap(), server.try_clone().unwrap()),
                            (server, client),
                        ] {
                            std::thread::spawn(move || {
                                let _ = std::io::copy(&mut from, &mut to);
                                let _ = to.shutdown(Shutdown::Write);
                            });
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self { addr, up, open }
    }

    /// The URL to give the program under test.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Takes the path down: refused and reset from now on.
    pub fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
    }

    /// Brings it back.
    pub fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}
