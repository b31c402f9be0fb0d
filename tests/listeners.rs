//! Listener settings changed in the watched config file apply without a restart, through the
//! real `rampart` binary; and the request-header limits of the HTTP/1 listener.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use support::*;

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn accepts(port: u16) -> bool {
    TcpStream::connect_timeout(&local(port), Duration::from_millis(500)).is_ok()
}

/// Polls `check` until it holds (15 s), else fails with `what` and the proxy log.
async fn eventually<F, Fut>(proxy: &Proxy, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen:\n{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn plain_config(port: u16, extra: &str, upstream: &Upstream) -> String {
    format!(
        "address: 127.0.0.1:{port}\ninsecure_server: true\n{extra}routes:\n  - {{from: https://app.example.com, to: {}, allow_public_unauthenticated_access: true}}\n",
        upstream.url()
    )
}

async fn status_via(port: u16, path: &str) -> Option<u16> {
    let client = http_client(local(port), &["app.example.com"]);
    client
        .get(format!("http://app.example.com:{port}{path}"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

#[actix_web::test]
async fn moved_listeners_answer_and_the_old_ones_stop_without_a_restart() {
    let upstream = Upstream::start("app");
    let (old_port, old_metrics) = (free_port(), free_port());
    let proxy = Proxy::start(
        &plain_config(
            old_port,
            &format!("metrics_address: 127.0.0.1:{old_metrics}\n"),
            &upstream,
        ),
        old_port,
    );
    let pid = proxy.pid();
    assert_eq!(status_via(old_port, "/").await, Some(200));
    assert!(accepts(old_metrics));

    // A response streaming on the old listener is drained, not cut.
    let resp = http_client(local(old_port), &["app.example.com"])
        .get(format!("http://app.example.com:{old_port}/sse"))
        .send()
        .await
        .unwrap();
    let in_flight = tokio::spawn(resp.text());

    let (new_port, new_metrics, redirect) = (free_port(), free_port(), free_port());
    proxy.rewrite_config(&plain_config(
        new_port,
        &format!(
            "metrics_address: 127.0.0.1:{new_metrics}\nhttp_redirect_addr: 127.0.0.1:{redirect}\nhttp_redirect_port: {new_port}\n"
        ),
        &upstream,
    ));
    eventually(&proxy, "the new address answering", || async {
        status_via(new_port, "/").await == Some(200)
    })
    .await;
    eventually(&proxy, "the old address closing", || async {
        !accepts(old_port)
    })
    .await;
    let events = in_flight.await.unwrap().unwrap();
    assert_eq!(events.matches("data: event").count(), 5, "{events}");

    // Metrics moved too.
    let plain = reqwest::Client::new();
    let healthz = plain
        .get(format!("http://127.0.0.1:{new_metrics}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(healthz.status(), 200);
    eventually(&proxy, "the old metrics address closing", || async {
        !accepts(old_metrics)
    })
    .await;

    // The new redirect listener points at the HTTPS port it is given (`http_redirect_port`).
    assert_https_redirect("app.example.com", redirect, "/x?y=1", new_port).await;

    // Turning the redirect listener off closes it.
    proxy.rewrite_config(&plain_config(
        new_port,
        &format!("metrics_address: 127.0.0.1:{new_metrics}\n"),
        &upstream,
    ));
    eventually(&proxy, "the redirect listener closing", || async {
        !accepts(redirect)
    })
    .await;
    assert_eq!(status_via(new_port, "/").await, Some(200));
    assert_eq!(proxy.pid(), pid);
    assert!(proxy.log().contains("draining the previous listener"));
}

#[actix_web::test]
async fn insecure_server_switches_to_https_on_the_same_port() {
    let upstream = Upstream::start("app");
    let port = free_port();
    let proxy = Proxy::start(&plain_config(port, "", &upstream), port);
    assert_eq!(status_via(port, "/").await, Some(200));

    let ca = Ca::new("test CA");
    let (cert, key) = ca.leaf(&["app.example.com"]).write(proxy.dir.path(), "app");
    proxy.rewrite_config(&format!(
        "address: 127.0.0.1:{port}\ncertificate_file: {}\ncertificate_key_file: {}\nroutes:\n  - {{from: https://app.example.com, to: {}, allow_public_unauthenticated_access: true}}\n",
        cert.display(),
        key.display(),
        upstream.url()
    ));
    let https = https_client(&ca.pem, proxy.addr(), &["app.example.com"]);
    eventually(&proxy, "HTTPS on the same port", || async {
        match https
            .get(format!("https://app.example.com:{port}/"))
            .send()
            .await
        {
            Ok(r) => r.status() == 200,
            Err(_) => false,
        }
    })
    .await;
    // Plain HTTP is no longer served there.
    eventually(&proxy, "plain HTTP refused", || async {
        status_via(port, "/").await.is_none()
    })
    .await;
}

#[actix_web::test]
async fn an_address_that_cannot_be_bound_keeps_the_previous_configuration() {
    let upstream = Upstream::start("app");
    let port = free_port();
    let proxy = Proxy::start(&plain_config(port, "", &upstream), port);

    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    // The same edit adds a route; it must not be applied either.
    proxy.rewrite_config(&format!(
        "{}  - {{from: https://other.example.com, to: {}, allow_public_unauthenticated_access: true}}\n",
        plain_config(taken_port, "", &upstream),
        upstream.url()
    ));
    eventually(&proxy, "the bind error logged", || async {
        proxy.log().contains("configuration rejected")
    })
    .await;
    let log = proxy.log();
    assert!(
        log.contains(&format!(
            "cannot listen on `address` 127.0.0.1:{taken_port}"
        )),
        "{log}"
    );
    assert_eq!(status_via(port, "/").await, Some(200));
    let other = http_client(local(port), &["other.example.com"])
        .get(format!("http://other.example.com:{port}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404, "the rejected edit's route is served");
}

/// Sends a raw HTTP/1.1 GET with `extra` headers; returns the status line.
fn raw_get(port: u16, extra: &[(String, String)]) -> String {
    let mut req =
        format!("GET / HTTP/1.1\r\nHost: app.example.com:{port}\r\nConnection: close\r\n");
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut s = TcpStream::connect(local(port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The server may answer and close before reading everything.
    let _ = s.write_all(req.as_bytes());
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    String::from_utf8_lossy(&resp)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

fn headers(count: usize, value_len: usize) -> Vec<(String, String)> {
    (0..count)
        .map(|i| (format!("x-h{i}"), "v".repeat(value_len)))
        .collect()
}

#[actix_web::test]
async fn request_header_limits() {
    let upstream = Upstream::start("app");
    let port = free_port();
    let _proxy = Proxy::start(&plain_config(port, "", &upstream), port);

    // 90 extra headers (92 in all) carrying 112 KiB are served.
    let status = tokio::task::spawn_blocking(move || raw_get(port, &headers(90, 1280)))
        .await
        .unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    // More than 96 header lines: a 431, not a dropped connection.
    let status = tokio::task::spawn_blocking(move || raw_get(port, &headers(100, 8)))
        .await
        .unwrap();
    assert!(status.starts_with("HTTP/1.1 431"), "{status}");
    // More than 128 KiB of headers: 431 as well.
    let status = tokio::task::spawn_blocking(move || raw_get(port, &headers(40, 4096)))
        .await
        .unwrap();
    assert!(status.starts_with("HTTP/1.1 431"), "{status}");
}
