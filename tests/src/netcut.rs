//! A TCP proxy that can partition the network between a client and a real server (a
//! coordinator and its catalog's PostgreSQL): [`NetCut::cut`] stops every byte in both
//! directions without closing anything, as a switch or a firewall that starts dropping
//! packets would; the client's connections hang, new ones are accepted and hang too.
//! [`NetCut::server_notices`] then closes the server's side only, as the server does when its
//! TCP keepalives go unanswered: the server ends those sessions (and releases their locks)
//! while the client still sees nothing. [`NetCut::heal`] forwards new connections again; the
//! connections that were cut stay dead.
//!
//! While cut, the proxy still reads (and drops) what the client sends, so the client's kernel
//! sees its segments acknowledged: this exercises timeouts in the application (a query that
//! never answers), not TCP keepalive or `TCP_USER_TIMEOUT` on the client's side.

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct State {
    cut: AtomicBool,
    stop: AtomicBool,
    /// The server side of every forwarded connection.
    upstream: Mutex<Vec<TcpStream>>,
    /// Connections accepted while cut: held open, never forwarded.
    held: Mutex<Vec<TcpStream>>,
}

pub struct NetCut {
    addr: SocketAddr,
    state: Arc<State>,
}

impl NetCut {
    /// Listens on `ip` (a free port) and forwards each connection to `server`.
    pub fn start(ip: IpAddr, server: SocketAddr) -> Self {
        let listener = TcpListener::bind((ip, 0)).expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(State::default());
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                if st.cut.load(Ordering::SeqCst) {
                    st.held.lock().expect("held").push(client);
                    continue;
                }
                let Ok(up) = TcpStream::connect(server) else {
                    continue;
                };
                let (Ok(client2), Ok(up2), Ok(up3)) =
                    (client.try_clone(), up.try_clone(), up.try_clone())
                else {
                    continue;
                };
                st.upstream.lock().expect("upstream").push(up3);
                let (a, b) = (st.clone(), st.clone());
                std::thread::spawn(move || pump(client, up, &a));
                std::thread::spawn(move || pump(up2, client2, &b));
            }
        });
        Self { addr, state }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// From now on nothing passes, either way; nothing is closed.
    pub fn cut(&self) {
        self.state.cut.store(true, Ordering::SeqCst);
    }

    /// The server's side of every connection is closed (the server gave up on its peer); the
    /// client's side stays open and silent.
    pub fn server_notices(&self) {
        for s in self.state.upstream.lock().expect("upstream").drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// New connections are forwarded again (those cut stay dead).
    pub fn heal(&self) {
        for s in self.state.held.lock().expect("held").drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        self.state.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for NetCut {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.server_notices();
        self.heal();
        // Wakes the accepting thread so that it sees `stop`.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Copies `from` to `to` until either ends; while cut, what arrives is dropped and an end is
/// not passed on (a partitioned peer sees nothing, not even a close).
fn pump(mut from: TcpStream, mut to: TcpStream, state: &State) {
    let mut buf = [0u8; 16 * 1024];
    // Once cut, a connection stays dead: its streams have lost bytes.
    let mut dead = false;
    loop {
        dead |= state.cut.load(Ordering::SeqCst);
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => {
                if !dead && !state.cut.load(Ordering::SeqCst) {
                    let _ = to.shutdown(Shutdown::Write);
                }
                return;
            }
            Ok(n) => n,
        };
        dead |= state.cut.load(Ordering::SeqCst);
        if dead {
            continue;
        }
        if to.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}
