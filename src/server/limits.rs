//! Hostile clients: the server's own accept loop and per-client limits.
//!
//! - **Connections**: at most [`ServerOptions::max_connections`] open at once and
//!   [`ServerOptions::max_connections_per_ip`] from one address; a connection past either cap
//!   gets a one-shot `503` (all connections) or `429` (one address) in OpenAI's error shape and
//!   is closed at once, so idle sockets cannot pile up until the process runs out of file
//!   descriptors.
//! - **Headers**: a request's line and headers must arrive within
//!   [`ServerOptions::header_timeout`] (else the connection is closed) and fit in
//!   [`MAX_HEADER_BYTES`] (else `431`).
//! - **Uploads**: at most [`ServerOptions::max_uploads_per_ip`] bodies are read at once from one
//!   address (more get `429`), and a body must arrive within [`ServerOptions::body_timeout`]
//!   (else `408`); the handlers enforce both with [`Clients::start_upload`].
//!
//! [`ServerOptions::max_connections`]: super::ServerOptions::max_connections
//! [`ServerOptions::max_connections_per_ip`]: super::ServerOptions::max_connections_per_ip
//! [`ServerOptions::header_timeout`]: super::ServerOptions::header_timeout
//! [`ServerOptions::max_uploads_per_ip`]: super::ServerOptions::max_uploads_per_ip
//! [`ServerOptions::body_timeout`]: super::ServerOptions::body_timeout

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tower_service::Service;

use super::{ApiError, AppState};

/// The largest request line plus headers accepted; larger ones get `431`.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// The client address of a request, put in its extensions by [`serve`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Peer(pub IpAddr);

/// Open connections and uploads in progress, in all and per client address.
#[derive(Default)]
pub(super) struct Clients {
    connections: AtomicUsize,
    uploads: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, PerIp>>,
}

#[derive(Default, Clone, Copy)]
struct PerIp {
    connections: usize,
    uploads: usize,
}

/// Why a connection was refused.
enum Refusal {
    /// Every connection the server takes is open.
    Full,
    /// This address has its share open.
    PerIp,
}

impl Clients {
    /// Open connections now.
    pub(super) fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Uploads being read now.
    pub(super) fn uploads(&self) -> usize {
        self.uploads.load(Ordering::SeqCst)
    }

    fn connect(
        self: &Arc<Self>,
        ip: IpAddr,
        max: usize,
        max_per_ip: usize,
    ) -> Result<ClientGuard, Refusal> {
        let mut map = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if self.connections.load(Ordering::SeqCst) >= max {
            return Err(Refusal::Full);
        }
        let entry = map.entry(ip).or_default();
        if entry.connections >= max_per_ip {
            return Err(Refusal::PerIp);
        }
        entry.connections += 1;
        self.connections.fetch_add(1, Ordering::SeqCst);
        Ok(ClientGuard {
            clients: self.clone(),
            ip,
            upload: false,
        })
    }

    /// Counts an upload from `ip` until the guard is dropped, or `None` when `ip` already has
    /// `max` uploads in progress.
    pub(super) fn start_upload(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<ClientGuard> {
        let mut map = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map.entry(ip).or_default();
        if entry.uploads >= max {
            if entry.connections == 0 && entry.uploads == 0 {
                map.remove(&ip);
            }
            return None;
        }
        entry.uploads += 1;
        self.uploads.fetch_add(1, Ordering::SeqCst);
        Some(ClientGuard {
            clients: self.clone(),
            ip,
            upload: true,
        })
    }
}

/// A connection or an upload counted against its address, given back when dropped.
pub(super) struct ClientGuard {
    clients: Arc<Clients>,
    ip: IpAddr,
    upload: bool,
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        let mut map = self
            .clients
            .per_ip
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = map.get_mut(&self.ip) {
            if self.upload {
                entry.uploads = entry.uploads.saturating_sub(1);
            } else {
                entry.connections = entry.connections.saturating_sub(1);
            }
            if entry.connections == 0 && entry.uploads == 0 {
                map.remove(&self.ip);
            }
        }
        if self.upload {
            self.clients.uploads.fetch_sub(1, Ordering::SeqCst);
        } else {
            self.clients.connections.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// An IPv4 client seen through an IPv6 socket (`::ffff:a.b.c.d`) counts as `a.b.c.d`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Answers a refused connection without reading its request, then closes it.
fn refuse(stream: tokio::net::TcpStream, refusal: &Refusal, state: &AppState) {
    let (error, reason) = match refusal {
        Refusal::Full => (
            ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: format!(
                    "The server has {} connections open, its limit (--max-connections); retry later.",
                    state.options.max_connections
                ),
                kind: "server_error",
                param: None,
                code: Some("too_many_connections"),
                retry_after: Some(1),
            },
            "Service Unavailable",
        ),
        Refusal::PerIp => (
            ApiError {
                status: StatusCode::TOO_MANY_REQUESTS,
                message: format!(
                    "Too many connections from your address (--max-connections-per-ip {}).",
                    state.options.max_connections_per_ip
                ),
                kind: "invalid_request_error",
                param: None,
                code: Some("too_many_connections"),
                retry_after: Some(1),
            },
            "Too Many Requests",
        ),
    };
    let body = error.json_body();
    let response = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{body}",
        error.status.as_u16(),
        body.len()
    );
    // Best effort, bounded: at most REFUSING answers in flight, each given a second to go
    // out; past that a refused connection is closed without one.
    static REFUSING: AtomicUsize = AtomicUsize::new(0);
    if REFUSING.fetch_add(1, Ordering::SeqCst) >= REFUSING_MAX {
        REFUSING.fetch_sub(1, Ordering::SeqCst);
        return;
    }
    tokio::spawn(async move {
        let bytes = response.as_bytes();
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let mut sent = 0;
            while sent < bytes.len() {
                stream.writable().await?;
                match stream.try_write(&bytes[sent..]) {
                    Ok(n) => sent += n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            Ok::<_, std::io::Error>(())
        })
        .await;
        if let Ok(stream) = stream.into_std() {
            let _ = stream.shutdown(std::net::Shutdown::Write);
        }
        REFUSING.fetch_sub(1, Ordering::SeqCst);
    });
}

/// Refused connections answered at once (the rest are closed without an answer).
const REFUSING_MAX: usize = 256;

/// Serves `state`'s router on `listener` until `shutdown` resolves, then waits for requests
/// in flight to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = super::router(state.clone());
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(state.options.header_timeout)
        .max_header_size(MAX_HEADER_BYTES);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut last_accept_error: Option<Instant> = None;
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: keep serving the connections
                    // that are open, try again shortly, and say so at most once a second.
                    if last_accept_error.is_none_or(|t| t.elapsed() > Duration::from_secs(1)) {
                        eprintln!("verbatim: cannot accept a connection: {e}");
                        last_accept_error = Some(Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let ip = canonical(peer.ip());
        let guard = match state.clients.connect(
            ip,
            state.options.max_connections,
            state.options.max_connections_per_ip,
        ) {
            Ok(guard) => guard,
            Err(refusal) => {
                refuse(stream, &refusal, &state);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(Peer(ip));
            let mut router = router.clone();
            async move { router.call(req).await }
        });
        let conn = http.serve_connection(TokioIo::new(stream), service);
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _guard = guard;
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = stop.wait_for(|stop| *stop) => {}
            }
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(stop_rx);
    stop_tx.closed().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_address_and_in_all() {
        let clients = Arc::new(Clients::default());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = clients.connect(a, 3, 2).ok().unwrap();
        let _a2 = clients.connect(a, 3, 2).ok().unwrap();
        assert!(matches!(clients.connect(a, 3, 2), Err(Refusal::PerIp)));
        let _b1 = clients.connect(b, 3, 2).ok().unwrap();
        assert!(matches!(clients.connect(b, 3, 2), Err(Refusal::Full)));
        drop(a1);
        assert_eq!(clients.connections(), 2);
        assert!(clients.connect(b, 3, 2).is_ok());
        let u = clients.start_upload(a, 1).unwrap();
        assert!(clients.start_upload(a, 1).is_none());
        assert_eq!(clients.uploads(), 1);
        drop(u);
        assert_eq!(clients.uploads(), 0);
        assert_eq!(
            canonical("::ffff:1.2.3.4".parse().unwrap()),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
    }
}
