//! Rule: an HTTP listener (REST API, media API, metrics) bounds what a
//! client can hold: headers must arrive within the header timeout (also the
//! idle timeout between requests), a request must be answered within the
//! request timeout (408), and one address may hold only so many
//! connections; each refusal is counted.

use crate::harness::within;
use axum::routing::get;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use voxbridge::listener::{render_metrics, serve, HttpLimits};

async fn start(limits: HttpLimits) -> std::net::SocketAddr {
    let app = axum::Router::new()
        .route("/", get(|| async { "ok" }))
        .route("/hang", get(std::future::pending::<&'static str>));
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(serve(l, app, limits));
    addr
}

/// Reads until the server closes; returns what it sent.
async fn until_closed(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    within("the server to close the connection", s.read_to_end(&mut out))
        .await
        .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

async fn get_ok(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    until_closed(&mut s).await
}

#[tokio::test]
async fn slow_idle_and_greedy_clients_are_cut_off_and_counted() {
    let addr = start(HttpLimits {
        header_timeout: Duration::from_millis(300),
        request_timeout: Duration::from_millis(300),
        max_connections_per_ip: 1000,
    })
    .await;
    // Nothing at all, then headers that never finish: both closed.
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    let mut partial = TcpStream::connect(addr).await.expect("connect");
    partial
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow:")
        .await
        .expect("write");
    until_closed(&mut silent).await;
    until_closed(&mut partial).await;
    // A kept-alive connection that goes idle after a request: closed too.
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let answered = until_closed(&mut idle).await;
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
    // A request that is not answered in time: 408.
    let slow = get_ok(addr, "/hang").await;
    assert!(slow.starts_with("HTTP/1.1 408"), "{slow}");
    let m = render_metrics();
    let count = |k: &str| -> u64 {
        m.lines()
            .find_map(|l| l.strip_prefix(&format!("{k} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    assert!(count("voxbridge_http_header_timeouts_total") >= 3, "{m}");
    assert!(count("voxbridge_http_request_timeouts_total") >= 1, "{m}");
}

#[tokio::test]
async fn one_address_holds_at_most_its_share_of_connections() {
    let addr = start(HttpLimits {
        header_timeout: Duration::from_secs(30),
        request_timeout: Duration::from_secs(30),
        max_connections_per_ip: 2,
    })
    .await;
    let held = [
        TcpStream::connect(addr).await.expect("connect"),
        TcpStream::connect(addr).await.expect("connect"),
    ];
    // The two are in (served once they send); a third is closed at once.
    let mut third = TcpStream::connect(addr).await.expect("connect");
    assert_eq!(until_closed(&mut third).await, "", "closed without an answer");
    drop(held);
    // Their places come back once the server sees them go.
    let answered = within("a place to come back", async {
        loop {
            let a = get_ok(addr, "/").await;
            if a.starts_with("HTTP/1.1 200") {
                return a;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(answered.ends_with("ok"), "{answered}");
    assert!(render_metrics().contains("voxbridge_http_connections_refused_total"));
}
