//! Serving a router on a TCP listener with the limits a listener open to a
//! network needs, for the control REST API and the media API alike:
//!
//! - request headers must arrive within `header_timeout` (also the idle
//!   timeout of a kept-alive connection: the timer runs from the end of one
//!   response to the end of the next request's headers), so a client that
//!   connects and sends nothing, or sends headers slowly, is disconnected;
//! - each request (its body included) must be answered within
//!   `request_timeout`, else `408` (a WebSocket upgrade is answered at once
//!   and then lives on its own);
//! - at most `max_connections_per_ip` open connections per client address;
//!   one more is closed at once.
//!
//! Every refusal is counted ([`render_metrics`]).

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// The limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Headers (and the wait for the next request) must finish within this.
    pub header_timeout: Duration,
    /// A request must be answered within this.
    pub request_timeout: Duration,
    /// Open connections per client IP address.
    pub max_connections_per_ip: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections_per_ip: 1024,
        }
    }
}

static REFUSED_PER_IP: AtomicU64 = AtomicU64::new(0);
static TIMED_OUT: AtomicU64 = AtomicU64::new(0);
static REQUEST_TIMEOUTS: AtomicU64 = AtomicU64::new(0);

/// Prometheus text of the listeners' refusals (every listener of the process).
pub fn render_metrics() -> String {
    format!(
        "# HELP voxbridge_http_connections_refused_total HTTP connections closed at accept: over the per-address limit.\n\
         # TYPE voxbridge_http_connections_refused_total counter\n\
         voxbridge_http_connections_refused_total {}\n\
         # HELP voxbridge_http_header_timeouts_total HTTP connections closed for not sending complete headers in time (or idle).\n\
         # TYPE voxbridge_http_header_timeouts_total counter\n\
         voxbridge_http_header_timeouts_total {}\n\
         # HELP voxbridge_http_request_timeouts_total HTTP requests answered 408 for not completing in time.\n\
         # TYPE voxbridge_http_request_timeouts_total counter\n\
         voxbridge_http_request_timeouts_total {}\n",
        REFUSED_PER_IP.load(Relaxed),
        TIMED_OUT.load(Relaxed),
        REQUEST_TIMEOUTS.load(Relaxed),
    )
}

/// Open connections by client address.
#[derive(Default)]
struct PerIp(Mutex<HashMap<IpAddr, usize>>);

/// Gives its connection's place back when dropped.
struct Slot {
    table: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<Slot> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Slot {
            table: self.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self.table.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Accepts connections until the listener fails, serving `app` on each
/// with `limits`.
pub async fn serve(listener: TcpListener, app: axum::Router, limits: HttpLimits) {
    let table = Arc::new(PerIp::default());
    loop {
        let (sock, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off a little instead of spinning.
                tracing::warn!(error = %e, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = table.take(peer.ip(), limits.max_connections_per_ip) else {
            REFUSED_PER_IP.fetch_add(1, Relaxed);
            tracing::debug!(%peer, "HTTP connection refused: per-address limit");
            continue;
        };
        let app = app.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let app = app.clone();
                async move {
                    let req = req.map(Body::new);
                    let answer = tokio::time::timeout(limits.request_timeout, app.oneshot(req)).await;
                    Ok::<_, std::convert::Infallible>(match answer {
                        Ok(Ok(resp)) => resp,
                        Ok(Err(never)) => match never {},
                        Err(_) => {
                            REQUEST_TIMEOUTS.fetch_add(1, Relaxed);
                            timeout_response()
                        }
                    })
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(TokioIo::new(sock), svc)
                .with_upgrades();
            if let Err(e) = conn.await {
                if e.is_timeout() {
                    TIMED_OUT.fetch_add(1, Relaxed);
                }
                tracing::debug!(%peer, error = %e, "HTTP connection ended");
            }
        });
    }
}

fn timeout_response() -> Response<Body> {
    let body = r#"{"error":{"code":"request_timeout","message":"the request did not complete in time"}}"#;
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::REQUEST_TIMEOUT;
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    r
}
