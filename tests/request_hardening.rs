//! Request normalisation and request-side limits through the real binary: percent-encoded
//! path tricks against a policy, escaped slashes, merged slashes, headers with underscores,
//! malformed chunked bodies, HTTP/2 `:authority` vs `Host`, absolute-form targets and slow
//! request bodies. Raw TCP where a client library would clean the request up first.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response read off a raw connection.
struct Raw {
    status: u16,
    text: String,
}

impl Raw {
    /// The upstream echo's JSON (`{"uri": …, "headers": …}`) in the body.
    fn echo(&self) -> serde_json::Value {
        let start = self.text.find('{').expect("no JSON body");
        let end = self.text.rfind('}').expect("no JSON body");
        serde_json::from_str(&self.text[start..=end]).unwrap()
    }

    fn uri(&self) -> String {
        self.echo()["uri"].as_str().unwrap().to_string()
    }
}

/// Sends `head` (CRLFs added; `Connection: close` appended) and then `body` parts, each after
/// `pause`, and reads the whole answer.
async fn raw_exchange(addr: SocketAddr, head: &str, body: &[&[u8]], pause: Duration) -> Raw {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = head.replace('\n', "\r\n");
    req.push_str("Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    for part in body {
        tokio::time::sleep(pause).await;
        if s.write_all(part).await.is_err() {
            break;
        }
    }
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0u8; 8192];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    });
    read.await.expect("no answer within 20 s");
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    Raw { status, text }
}

async fn raw_get(addr: SocketAddr, host: &str, target: &str) -> Raw {
    raw_exchange(
        addr,
        &format!("GET {target} HTTP/1.1\nHost: {host}\n"),
        &[],
        Duration::ZERO,
    )
    .await
}

/// Everyone may in, except to `/admin…`.
fn deny_admin_route(host: &str, upstream: &Upstream) -> String {
    format!(
        "  - from: https://{host}\n    to: {}\n    policy:\n      - allow: {{or: [{{accept: true}}]}}\n        deny: {{or: [{{http_path: {{starts_with: /admin}}}}]}}\n",
        upstream.url()
    )
}

#[tokio::test]
async fn encoded_paths_are_normalised_before_policy_and_forwarded_normalised() {
    let up = Upstream::start("a");
    let proxy = Proxy::start_insecure("", &deny_admin_route("a.example.com", &up));
    let addr = proxy.addr();

    // The policy denies /admin however the path spells it.
    for target in [
        "/admin",
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public/%2E%2E/admin",
        "/public/.%2e/admin",
        "/public/%2e./admin",
        "/%61dmin",
        "/adm%69n/x",
        "/%2e/admin",
        "//admin",
        "/public/%2e%2e//%2E/%61dmin/",
        "/public\\..\\admin",
        "/public/..;x=y/admin",
    ] {
        let r = raw_get(addr, "a.example.com", target).await;
        assert_eq!(r.status, 403, "{target} was not denied:\n{}", r.text);
    }

    // Allowed requests reach the upstream with the normalised path (query untouched).
    for (target, upstream_sees) in [
        ("/public/%2e%2e/ok", "/ok"),
        ("/%70ublic/./x/..//y?q=%2e%2e", "/public/y?q=%2e%2e"),
        ("/a%20b/%7euser", "/a%20b/~user"),
        ("/a%3Fb", "/a%3Fb"),
    ] {
        let r = raw_get(addr, "a.example.com", target).await;
        assert_eq!(r.status, 200, "{target}:\n{}", r.text);
        assert_eq!(r.uri(), upstream_sees, "{target}");
    }

    // Escaped slashes and backslashes stay rejected by default, and so does an escaped NUL.
    for target in [
        "/public%2F..%2Fadmin",
        "/a%2fb",
        "/a%5Cb",
        "/a%5cb",
        "/admin%00.html",
    ] {
        let r = raw_get(addr, "a.example.com", target).await;
        assert_eq!(r.status, 400, "{target}:\n{}", r.text);
    }
}

#[tokio::test]
async fn normalisation_settings_change_what_is_forwarded() {
    let up = Upstream::start("a");
    let route = format!(
        "  - {{from: https://a.example.com, to: {}, allow_public_unauthenticated_access: true}}\n",
        up.url()
    );

    // Defaults: slashes merged, headers with underscores rejected.
    let proxy = Proxy::start_insecure("", &route);
    let r = raw_get(proxy.addr(), "a.example.com", "//x///y").await;
    assert_eq!((r.status, r.uri().as_str()), (200, "/x/y"), "{}", r.text);
    let r = raw_exchange(
        proxy.addr(),
        "GET /h HTTP/1.1\nHost: a.example.com\nX_User: admin\n",
        &[],
        Duration::ZERO,
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("underscore"), "{}", r.text);
    drop(proxy);

    // merge_slashes off, escaped slashes unescaped with a redirect, underscore headers dropped.
    let proxy = Proxy::start_insecure(
        "merge_slashes: false\npath_with_escaped_slashes_action: unescape_and_redirect\nheaders_with_underscores_action: DROP_HEADER\n",
        &route,
    );
    let r = raw_get(proxy.addr(), "a.example.com", "//x///y/./z").await;
    assert_eq!(
        (r.status, r.uri().as_str()),
        (200, "//x///y/z"),
        "{}",
        r.text
    );
    let r = raw_get(proxy.addr(), "a.example.com", "/a%2Fb/..%2fc?k=v").await;
    assert_eq!(r.status, 307, "{}", r.text);
    assert!(
        r.text
            .to_ascii_lowercase()
            .contains("location: /a/c?k=v\r\n"),
        "{}",
        r.text
    );
    let r = raw_exchange(
        proxy.addr(),
        "GET /h HTTP/1.1\nHost: a.example.com\nX_User: admin\nX-Kept: 1\n",
        &[],
        Duration::ZERO,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let e = r.echo();
    assert_eq!(header(&e, "x-kept"), Some("1"));
    assert_eq!(header(&e, "x_user"), None, "{e}");
    drop(proxy);

    // Underscore headers allowed; escaped slashes kept as they are; no normalisation.
    let proxy = Proxy::start_insecure(
        "normalize_path: false\npath_with_escaped_slashes_action: keep_unchanged\nheaders_with_underscores_action: allow\n",
        &route,
    );
    let r = raw_exchange(
        proxy.addr(),
        "GET /a%2Fb/%2e%2e/c HTTP/1.1\nHost: a.example.com\nX_User: admin\n",
        &[],
        Duration::ZERO,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.uri(), "/a%2Fb/%2e%2e/c");
    assert_eq!(header(&r.echo(), "x_user"), Some("admin"));
}

/// `rampart_upstream_errors_total` samples with a non-zero value.
async fn upstream_error_samples(metrics: SocketAddr) -> Vec<String> {
    let text = metrics_text(metrics).await;
    text.lines()
        .filter(|l| l.starts_with("rampart_upstream_errors_total{"))
        .filter(|l| !l.ends_with(" 0"))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn malformed_chunked_bodies_are_the_clients_fault() {
    let up = Upstream::start("a");
    let metrics_port = free_port();
    let proxy = Proxy::start_insecure(
        &format!("metrics_address: 127.0.0.1:{metrics_port}\n"),
        &format!(
            "  - {{from: https://a.example.com, to: {}, allow_public_unauthenticated_access: true}}\n",
            up.url()
        ),
    );
    let metrics = SocketAddr::from(([127, 0, 0, 1], metrics_port));
    let head = "POST /upload HTTP/1.1\nHost: a.example.com\nTransfer-Encoding: chunked\n";

    // A well-formed chunked body goes through.
    let r = raw_exchange(
        proxy.addr(),
        head,
        &[b"5\r\nhello\r\n0\r\n\r\n"],
        Duration::ZERO,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.text.ends_with("received 5"), "{}", r.text);

    for (what, body) in [
        ("bad chunk size", &b"zz\r\nhello\r\n0\r\n\r\n"[..]),
        (
            "overlong chunk data",
            &b"5\r\nhello, world\r\n0\r\n\r\n"[..],
        ),
        ("bare LF chunk lines", &b"5\nhello\n0\n\n"[..]),
    ] {
        let r = raw_exchange(proxy.addr(), head, &[body], Duration::from_millis(50)).await;
        assert_eq!(r.status, 400, "{what}:\n{}", r.text);
        assert!(
            r.text.contains("invalid request body"),
            "{what}:\n{}",
            r.text
        );
        assert_eq!(
            r.text.matches("HTTP/1.1 ").count(),
            1,
            "{what}:\n{}",
            r.text
        );
    }
    assert_eq!(
        upstream_error_samples(metrics).await,
        Vec::<String>::new(),
        "client errors counted as upstream errors"
    );
}

#[tokio::test]
async fn slow_request_bodies_get_408() {
    let up = Upstream::start("a");
    let metrics_port = free_port();
    let proxy = Proxy::start_insecure(
        &format!("metrics_address: 127.0.0.1:{metrics_port}\nrequest_body_idle_timeout: 1s\n"),
        &format!(
            "  - {{from: https://a.example.com, to: {}, allow_public_unauthenticated_access: true}}\n",
            up.url()
        ),
    );
    let head = "POST /upload HTTP/1.1\nHost: a.example.com\nContent-Length: 10\n";

    // A body that keeps trickling in (every 0.4 s, 2 s in all) is not idle.
    let r = raw_exchange(
        proxy.addr(),
        head,
        &[b"01", b"23", b"45", b"67", b"89"],
        Duration::from_millis(400),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.text.ends_with("received 10"), "{}", r.text);

    // A body that stops is cut after the idle timeout with 408.
    let started = Instant::now();
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    s.write_all(format!("{}\r\n0123", head.replace('\n', "\r\n")).as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(10), async {
        while !out.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("no answer to a stalled body within 10 s");
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    let metrics = SocketAddr::from(([127, 0, 0, 1], metrics_port));
    assert_eq!(upstream_error_samples(metrics).await, Vec::<String>::new());
}

#[tokio::test]
async fn absolute_form_targets_route_and_authorise_by_their_authority() {
    let a = Upstream::start("a");
    let b = Upstream::start("b");
    let proxy = Proxy::start_insecure(
        "",
        &format!(
            "  - {{from: https://a.example.com, to: {}, allow_public_unauthenticated_access: true}}\n  - {{from: https://b.example.com, to: {}}}\n",
            a.url(),
            b.url()
        ),
    );
    let port = proxy.port;
    // Host names b (a route that denies everyone); the target names a: a serves it.
    let r = raw_get(
        proxy.addr(),
        "b.example.com",
        &format!("http://a.example.com:{port}/x"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.echo()["upstream"], "a");
    assert_eq!(r.uri(), "/x");
    // And the other way round: the target names the denying route, a permissive Host
    // does not open it.
    let r = raw_get(
        proxy.addr(),
        "a.example.com",
        &format!("http://b.example.com:{port}/x"),
    )
    .await;
    assert!(
        r.status == 401 || r.status == 403,
        "absolute-form target b was not denied:\n{}",
        r.text
    );
    // Origin form still routes by Host.
    let r = raw_get(proxy.addr(), "a.example.com", "/x").await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn http2_authority_and_host_must_agree() {
    let up = Upstream::start("a");
    let ca = Ca::new("test CA");
    let proxy = Proxy::start_tls(
        &ca,
        &["*.example.com"],
        &format!(
            "routes:\n  - {{from: https://a.example.com, to: {}, allow_public_unauthenticated_access: true}}\n  - {{from: https://b.example.com, to: {}, allow_public_unauthenticated_access: true}}\n",
            up.url(),
            up.url()
        ),
    );
    let port = proxy.port;
    let client = https_client(&ca.pem, proxy.addr(), &["a.example.com", "b.example.com"]);
    let url = format!("https://a.example.com:{port}/x");

    let resp = client.get(&url).send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);

    let resp = client
        .get(&url)
        .header("host", format!("a.example.com:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);

    let resp = client
        .get(&url)
        .header("host", "b.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let status = resp.status();
    let body = resp.text().await.unwrap();
    assert_eq!(status, 400, "{body}");
}
