//! The standalone proxy end to end: the real `rampart` binary, real TLS (rcgen certificates),
//! real upstreams started by the tests.

mod support;

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use support::*;

fn url(host: &str, port: u16, path: &str) -> String {
    format!("https://{host}:{port}{path}")
}

/// A TLS proxy with a `*.example.com` certificate from a fresh CA.
struct Env {
    ca: Ca,
    proxy: Proxy,
    client: reqwest::Client,
}

impl Env {
    fn start(routes: &str, extra: &str) -> Env {
        let ca = Ca::new("test CA");
        let proxy = Proxy::start_tls(
            &ca,
            &["*.example.com", "example.com"],
            &format!("{extra}routes:\n{routes}"),
        );
        let client = https_client(&ca.pem, proxy.addr(), &HOSTS);
        Env { ca, proxy, client }
    }

    fn url(&self, host: &str, path: &str) -> String {
        url(host, self.proxy.port, path)
    }

    async fn get(&self, host: &str, path: &str) -> reqwest::Response {
        self.client.get(self.url(host, path)).send().await.unwrap()
    }
}

const HOSTS: [&str; 16] = [
    "match.example.com",
    "rewrite.example.com",
    "regex.example.com",
    "hostrw.example.com",
    "preserve.example.com",
    "headers.example.com",
    "default.example.com",
    "private.example.com",
    "nowhere.example.com",
    "ws.example.com",
    "nows.example.com",
    "rr.example.com",
    "a.example.com",
    "b.example.com",
    "up.example.com",
    "app.example.com",
];

#[tokio::test]
async fn tls_sni_fallback_http2_and_redirect() {
    let up = Upstream::start("a");
    let ca = Ca::new("test CA");
    let dir = tempfile::tempdir().unwrap();
    let (c1, k1) = ca.leaf(&["app.example.com"]).write(dir.path(), "app");
    let (c2, k2) = ca.leaf(&["*.wild.example.com"]).write(dir.path(), "wild");
    let port = free_port();
    let redirect_port = free_port();
    let config = format!(
        "address: 127.0.0.1:{port}
http_redirect_addr: 127.0.0.1:{redirect_port}
http_redirect_port: {port}
certificates:
  - {{cert: {}, key: {}}}
  - {{cert: {}, key: {}}}
routes:
  - from: https://app.example.com
    to: {}
    allow_public_unauthenticated_access: true
",
        c1.display(),
        k1.display(),
        c2.display(),
        k2.display(),
        up.url()
    );
    let proxy = Proxy::start_in(dir, &config, port);
    let client = https_client(
        &ca.pem,
        proxy.addr(),
        &["app.example.com", "other.example.org"],
    );

    // The configured certificate verifies against the CA; ALPN gives HTTP/2.
    let resp = client
        .get(url("app.example.com", port, "/hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let e = echo(resp).await;
    assert_eq!(e["uri"], "/hello");

    // SNI picks exact, then wildcard, then the generated fallback.
    assert_eq!(
        presented_names(proxy.addr(), "app.example.com").await,
        vec!["app.example.com"]
    );
    assert_eq!(
        presented_names(proxy.addr(), "x.wild.example.com").await,
        vec!["*.wild.example.com"]
    );
    let fallback = presented_names(proxy.addr(), "other.example.org").await;
    assert!(!fallback.is_empty());
    assert!(
        !fallback.iter().any(|n| n.contains("example.com")),
        "{fallback:?}"
    );
    // The fallback is not trusted by a client that trusts only the CA.
    assert!(client
        .get(url("other.example.org", port, "/"))
        .send()
        .await
        .is_err());

    // The HTTP listener redirects to HTTPS on the proxy port (`http_redirect_port`; by default
    // no port), keeping path and query.
    assert_https_redirect("app.example.com", redirect_port, "/a/b?c=d", port).await;
}

#[tokio::test]
async fn route_matching_and_rewrites() {
    let a = Upstream::start("a");
    let b = Upstream::start("b");
    let c = Upstream::start("c");
    let routes = format!(
        "  - {{from: https://match.example.com, prefix: /api, to: {a}, allow_public_unauthenticated_access: true}}
  - {{from: https://match.example.com, path: /exact, to: {b}, allow_public_unauthenticated_access: true}}
  - {{from: https://match.example.com, regex: '/re/[0-9]+', to: {c}, allow_public_unauthenticated_access: true}}
  - {{from: https://rewrite.example.com, prefix: /old/, prefix_rewrite: /new/, to: {a}, allow_public_unauthenticated_access: true}}
  - from: https://regex.example.com
    to: {a}
    regex_rewrite_pattern: '^/service/([^/]+)(/.*)$'
    regex_rewrite_substitution: '\\2/instance/\\1'
    allow_public_unauthenticated_access: true
  - {{from: https://hostrw.example.com, to: {a}, host_rewrite: rewritten.internal, allow_public_unauthenticated_access: true}}
  - {{from: https://preserve.example.com, to: {a}, preserve_host_header: true, allow_public_unauthenticated_access: true}}
  - {{from: https://default.example.com, to: {a}, allow_public_unauthenticated_access: true}}
",
        a = a.url(),
        b = b.url(),
        c = c.url()
    );
    let env = Env::start(&routes, "");
    let p = env.proxy.port;

    let e = echo(env.get("match.example.com", "/api/x").await).await;
    assert_eq!(e["upstream"], "a");
    // `prefix` is a raw string prefix.
    assert_eq!(
        echo(env.get("match.example.com", "/apix").await).await["upstream"],
        "a"
    );
    assert_eq!(
        echo(env.get("match.example.com", "/exact").await).await["upstream"],
        "b"
    );
    assert_eq!(
        echo(env.get("match.example.com", "/re/12").await).await["upstream"],
        "c"
    );
    // Regex is a full match; an exact host with no matching path does not fall through.
    assert_eq!(env.get("match.example.com", "/re/12/x").await.status(), 404);
    assert_eq!(env.get("match.example.com", "/other").await.status(), 404);
    // `//` is merged before matching and forwarding.
    let e = echo(env.get("match.example.com", "//api//merged").await).await;
    assert_eq!(e["uri"], "/api/merged");

    let e = echo(env.get("rewrite.example.com", "/old/thing?q=1").await).await;
    assert_eq!(e["uri"], "/new/thing?q=1");
    let e = echo(env.get("regex.example.com", "/service/foo/v1/api").await).await;
    assert_eq!(e["uri"], "/v1/api/instance/foo");

    let original = format!("hostrw.example.com:{p}");
    let e = echo(env.get("hostrw.example.com", "/").await).await;
    assert_eq!(header(&e, "host"), Some("rewritten.internal"));
    assert_eq!(header(&e, "x-forwarded-host"), Some(original.as_str()));

    let e = echo(env.get("preserve.example.com", "/").await).await;
    assert_eq!(
        header(&e, "host"),
        Some(format!("preserve.example.com:{p}").as_str())
    );
    assert_eq!(header(&e, "x-forwarded-host"), None);

    // Default: Host is the upstream's host:port.
    let e = echo(env.get("default.example.com", "/").await).await;
    assert_eq!(header(&e, "host"), Some(a.addr.to_string().as_str()));
    assert_eq!(
        header(&e, "x-forwarded-host"),
        Some(format!("default.example.com:{p}").as_str())
    );
}

#[tokio::test]
async fn request_and_response_headers() {
    let a = Upstream::start("a");
    let routes = format!(
        "  - from: https://headers.example.com
    to: {a}
    allow_public_unauthenticated_access: true
    set_request_headers: {{X-Custom: v1, X-Both: set, X-Dollar: 'a$$b', X-Copied: '${{pomerium.request.headers[\"X-In\"]}}'}}
    remove_request_headers: [X-Remove-Me, X-Both]
    set_response_headers: {{X-Frame-Options: ROUTE, X-Route: 'yes'}}
  - {{from: https://default.example.com, to: {a}, allow_public_unauthenticated_access: true}}
  - {{from: https://private.example.com, to: {a}}}
",
        a = a.url()
    );
    let env = Env::start(&routes, "");

    let resp = env
        .client
        .get(env.url("headers.example.com", "/h"))
        .header("x-remove-me", "1")
        .header("x-in", "copied-value")
        .header("x-forwarded-for", "1.2.3.4")
        .header("x-forwarded-proto", "http")
        .header("x-request-id", "spoofed-id")
        .header("x-pomerium-authorization", "secret")
        .header("x-pomerium-reproxy-policy", "p")
        .header("x-pomerium-reproxy-policy-hmac", "h")
        .header("authorization", "Pomerium token")
        .header("cookie", "a=1; _pomerium=session; b=2")
        .header("x-pomerium-jwt-assertion", "forged")
        .send()
        .await
        .unwrap();
    // Route response headers win over global ones and over the upstream's.
    assert_eq!(resp.headers()["x-frame-options"], "ROUTE");
    assert_eq!(resp.headers()["x-route"], "yes");
    assert_eq!(resp.headers()["x-xss-protection"], "1; mode=block");
    assert!(resp.headers().get("via").is_none());
    let response_id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let e = echo(resp).await;
    assert_eq!(header(&e, "x-custom"), Some("v1"));
    assert_eq!(header(&e, "x-both"), Some("set"));
    assert_eq!(header(&e, "x-dollar"), Some("a$b"));
    assert_eq!(header(&e, "x-copied"), Some("copied-value"));
    assert_eq!(header(&e, "x-remove-me"), None);
    assert_eq!(header(&e, "x-forwarded-for"), Some("1.2.3.4, 127.0.0.1"));
    assert_eq!(header(&e, "x-forwarded-proto"), Some("https"));
    assert_eq!(header(&e, "x-pomerium-authorization"), None);
    assert_eq!(header(&e, "x-pomerium-reproxy-policy"), None);
    assert_eq!(header(&e, "x-pomerium-reproxy-policy-hmac"), None);
    assert_eq!(header(&e, "authorization"), None);
    assert_eq!(header(&e, "cookie"), Some("a=1; b=2"));
    assert_eq!(header(&e, "x-pomerium-jwt-assertion"), None);
    assert_eq!(header(&e, "via"), None);
    // A fresh request id, forwarded and echoed.
    let forwarded_id = header(&e, "x-request-id").unwrap();
    assert_ne!(forwarded_id, "spoofed-id");
    assert_eq!(forwarded_id, response_id);
    assert!(uuid::Uuid::parse_str(forwarded_id).is_ok());

    // Non-Pomerium Authorization passes; global response headers replace the upstream's.
    let resp = env
        .client
        .get(env.url("default.example.com", "/"))
        .header("authorization", "Bearer abc")
        .header("connection", "x-hop")
        .header("x-hop", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-frame-options"], "SAMEORIGIN");
    assert_eq!(resp.headers()["x-upstream"], "a");
    let e = echo(resp).await;
    assert_eq!(header(&e, "authorization"), Some("Bearer abc"));
    assert_eq!(header(&e, "x-hop"), None);

    // Underscores in header names and escaped slashes are refused.
    let resp = env
        .client
        .get(env.url("default.example.com", "/"))
        .header("x_bad", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = env.get("default.example.com", "/a%2Fb").await;
    assert_eq!(resp.status(), 400);
    let resp = env.get("default.example.com", "/a%5cb").await;
    assert_eq!(resp.status(), 400);

    // A route without any policy denies everyone, anonymous users included (Pomerium's default
    // deny: no rule carries a reason, so there is no sign-in); robots.txt is served instead.
    let resp = env.get("private.example.com", "/").await;
    assert_eq!(resp.status(), 403);
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("<title>403 Forbidden</title>"));
    let resp = env.get("private.example.com", "/robots.txt").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "User-agent: *\nDisallow: /");
}

#[tokio::test]
async fn error_pages_404_html_and_json() {
    let a = Upstream::start("a");
    let env = Env::start(
        &format!(
            "  - {{from: https://default.example.com, to: {}, allow_public_unauthenticated_access: true}}\n",
            a.url()
        ),
        "",
    );
    let resp = env.get("nowhere.example.com", "/x").await;
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["x-pomerium-intercepted-response"], "true");
    assert_eq!(resp.headers()["content-type"], "text/html; charset=UTF-8");
    assert_eq!(resp.headers()["x-frame-options"], "SAMEORIGIN");
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let body = resp.text().await.unwrap();
    assert!(body.contains("<title>404 Not Found</title>"), "{body}");
    assert!(
        body.contains(&format!(
            "contact your administrator with your request id {id}."
        )),
        "{body}"
    );

    let resp = env
        .client
        .get(env.url("nowhere.example.com", "/x"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let json: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        json,
        serde_json::json!({"error": "Not Found", "request_id": id})
    );

    let resp = env
        .client
        .get(env.url("nowhere.example.com", "/x"))
        .header(
            "user-agent",
            "kubectl/v1.31.0 (linux/amd64) kubernetes/abcdef",
        )
        .send()
        .await
        .unwrap();
    let json: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(json["kind"], "Status");
    assert_eq!(json["reason"], "NotFound");
    assert_eq!(json["code"], 404);

    let resp = env
        .client
        .post(env.url("nowhere.example.com", "/pkg.Svc/Method"))
        .header("content-type", "application/grpc")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["grpc-status"], "12");
    assert_eq!(resp.headers()["grpc-message"], "Not Found");
}

/// Opens a websocket through the proxy over TLS.
async fn ws_connect(
    env: &Env,
    host: &str,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
    tokio_tungstenite::tungstenite::Error,
> {
    let cfg = env.ca.client_config();
    let tcp = tokio::net::TcpStream::connect(env.proxy.addr())
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
        .connect(
            rustls::pki_types::ServerName::try_from(host.to_string()).unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let (ws, _) =
        tokio_tungstenite::client_async(format!("wss://{host}:{}/chat", env.proxy.port), tls)
            .await?;
    Ok(ws)
}

#[tokio::test]
async fn websockets_tunnel_refusal_and_idle_timeout() {
    use tokio_tungstenite::tungstenite::Message;
    let ws_up = websocket_echo();
    let upstream_ca = Ca::new("upstream CA");
    let wss_up = websocket_echo_tls(&upstream_ca.leaf(&["ws.internal"]));
    let ca_dir = tempfile::tempdir().unwrap();
    let ca_path = ca_dir.path().join("ca.pem");
    std::fs::write(&ca_path, &upstream_ca.pem).unwrap();
    let routes = format!(
        "  - {{from: https://ws.example.com, to: http://{ws_up}, allow_websockets: true, timeout: 1s, allow_public_unauthenticated_access: true}}
  - {{from: https://nows.example.com, to: http://{ws_up}, allow_public_unauthenticated_access: true}}
  - {{from: https://a.example.com, to: http://{ws_up}, allow_websockets: true, idle_timeout: 1s, allow_public_unauthenticated_access: true}}
  - {{from: https://b.example.com, to: 'https://{wss_up}', allow_websockets: true, tls_custom_ca_file: {ca}, tls_server_name: ws.internal, allow_public_unauthenticated_access: true}}
",
        ca = ca_path.display()
    );
    let env = Env::start(&routes, "");

    let mut ws = ws_connect(&env, "ws.example.com").await.unwrap();
    // The route `timeout` (1s) does not cut an open websocket.
    for i in 0..5 {
        ws.send(Message::text(format!("hello {i}"))).await.unwrap();
        let msg = ws.next().await.unwrap().unwrap();
        assert_eq!(msg, Message::text(format!("hello {i}")));
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::binary(vec![1u8, 2, 3])
    );
    ws.close(None).await.unwrap();

    // A TLS upstream (custom CA, server name) through the tunnel.
    let mut ws = ws_connect(&env, "b.example.com").await.unwrap();
    ws.send(Message::text("over tls")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("over tls"));
    ws.close(None).await.unwrap();

    // Without allow_websockets: 403 before policy.
    match ws_connect(&env, "nows.example.com").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 403)
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("upgrade should be refused"),
    }

    // idle_timeout closes a quiet tunnel.
    let mut ws = ws_connect(&env, "a.example.com").await.unwrap();
    ws.send(Message::text("ping")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("ping"));
    let started = Instant::now();
    let next = tokio::time::timeout(Duration::from_secs(20), ws.next())
        .await
        .expect("idle tunnel should be closed");
    assert!(!matches!(next, Some(Ok(Message::Text(_)))), "{next:?}");
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn streams_100mb_up_and_down_without_buffering() {
    let a = Upstream::start("a");
    let env = Env::start(
        &format!(
            "  - {{from: https://up.example.com, to: {}, timeout: 0s, allow_public_unauthenticated_access: true}}\n",
            a.url()
        ),
        "",
    );
    // Warm up, then measure the proxy's resident memory while 100 MiB go through.
    echo(env.get("up.example.com", "/").await).await;
    let before = env.proxy.rss_kib();
    const CHUNK: usize = 1024 * 1024;
    let chunks = futures::stream::iter(0..100).map(|_| Ok::<_, std::io::Error>(vec![7u8; CHUNK]));
    let pid = env.proxy.pid();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                    if let Some(kib) = s
                        .lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                    {
                        peak.fetch_max(kib, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let resp = env
        .client
        .post(env.url("up.example.com", "/upload"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.text().await.unwrap(),
        format!("received {}", 100 * CHUNK)
    );
    // The same over HTTP/1.1 with a chunked request body.
    let h1 = reqwest::Client::builder()
        .use_rustls_tls()
        .http1_only()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(env.ca.pem.as_bytes()).unwrap())
        .resolve("up.example.com", env.proxy.addr())
        .build()
        .unwrap();
    let chunks = futures::stream::iter(0..100).map(|_| Ok::<_, std::io::Error>(vec![7u8; CHUNK]));
    let resp = h1
        .post(env.url("up.example.com", "/upload"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    assert_eq!(
        resp.text().await.unwrap(),
        format!("received {}", 100 * CHUNK)
    );
    sampler.abort();
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("proxy RSS before {before} KiB, peak {peak} KiB");
    assert!(
        peak < before + 40 * 1024,
        "proxy RSS grew from {before} KiB to {peak} KiB"
    );
}

#[tokio::test]
async fn server_sent_events_arrive_incrementally() {
    let a = Upstream::start("a");
    let env = Env::start(
        &format!(
            "  - {{from: https://up.example.com, to: {}, allow_public_unauthenticated_access: true}}\n",
            a.url()
        ),
        "",
    );
    let resp = env.get("up.example.com", "/sse").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut stream = resp.bytes_stream();
    let mut arrivals = Vec::new();
    let mut text = String::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        arrivals.push(Instant::now());
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert_eq!(text.matches("data: event").count(), 5, "{text}");
    // Events were sent 400 ms apart: they must not all arrive at once at the end.
    assert!(arrivals.len() >= 3, "{} chunks", arrivals.len());
    assert!(
        *arrivals.last().unwrap() - arrivals[0] >= Duration::from_millis(800),
        "events arrived together"
    );
}

#[tokio::test]
async fn timeouts_504_and_idle() {
    let a = Upstream::start("a");
    let routes = format!(
        "  - {{from: https://a.example.com, to: {a}, timeout: 1s, allow_public_unauthenticated_access: true}}
  - {{from: https://b.example.com, to: {a}, idle_timeout: 1s, allow_public_unauthenticated_access: true}}
",
        a = a.url()
    );
    let env = Env::start(&routes, "");
    // /slow answers after 3 s: the 1 s route timeout fires first.
    let resp = env
        .client
        .get(env.url("a.example.com", "/slow"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 504);
    let json: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(json["error"], "Gateway Timeout");

    // idle_timeout: headers and a first chunk arrive, then the stalled stream is cut.
    let resp = env.get("b.example.com", "/stall").await;
    assert_eq!(resp.status(), 200);
    let started = Instant::now();
    let body = tokio::time::timeout(Duration::from_secs(20), resp.bytes())
        .await
        .expect("stalled stream should be cut by idle_timeout");
    assert!(body.is_err(), "a cut stream is an error, got {body:?}");
    assert!(started.elapsed() >= Duration::from_millis(500));
    // Waiting 3 s for the response head is also 3 s without traffic.
    let resp = env.get("b.example.com", "/slow").await;
    assert_eq!(resp.status(), 504);
}

#[tokio::test]
async fn load_balancing_and_unavailable_upstreams() {
    let a = Upstream::start("a");
    let b = Upstream::start("b");
    let dead1 = free_port();
    let dead2 = free_port();
    let routes = format!(
        "  - {{from: https://rr.example.com, to: [{a}, {b}], allow_public_unauthenticated_access: true}}
  - {{from: https://a.example.com, to: ['http://127.0.0.1:{dead1}', {a}], allow_public_unauthenticated_access: true}}
  - {{from: https://b.example.com, to: ['http://127.0.0.1:{dead1}', 'http://127.0.0.1:{dead2}'], allow_public_unauthenticated_access: true}}
",
        a = a.url(),
        b = b.url()
    );
    let env = Env::start(&routes, "");
    let mut seen = Vec::new();
    for _ in 0..6 {
        let e = echo(env.get("rr.example.com", "/").await).await;
        seen.push(e["upstream"].as_str().unwrap().to_string());
    }
    // Round-robin alternates.
    for pair in seen.windows(2) {
        assert_ne!(pair[0], pair[1], "{seen:?}");
    }

    // A dead upstream is skipped.
    for _ in 0..4 {
        let e = echo(env.get("a.example.com", "/").await).await;
        assert_eq!(e["upstream"], "a");
    }

    // All dead: 503.
    let resp = env
        .client
        .get(env.url("b.example.com", "/"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let json: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(json["error"], "Service Unavailable");
    let resp = env.get("b.example.com", "/").await;
    assert_eq!(resp.status(), 503);
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("upstream_reset_before_response_started{connection_failure}"));
}

#[tokio::test]
async fn https_upstream_custom_ca_and_server_name() {
    let upstream_ca = Ca::new("upstream CA");
    let tls_up = Upstream::start_tls("secure", &upstream_ca.leaf(&["upstream.internal"]));
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("upstream-ca.pem");
    std::fs::write(&ca_path, &upstream_ca.pem).unwrap();
    let routes = format!(
        "  - {{from: https://a.example.com, to: 'https://127.0.0.1:{port}', tls_custom_ca_file: {ca}, tls_server_name: upstream.internal, allow_public_unauthenticated_access: true}}
  - {{from: https://b.example.com, to: 'https://127.0.0.1:{port}', tls_custom_ca_file: {ca}, allow_public_unauthenticated_access: true}}
  - {{from: https://rr.example.com, to: 'https://127.0.0.1:{port}', tls_server_name: upstream.internal, allow_public_unauthenticated_access: true}}
  - {{from: https://up.example.com, to: 'https://127.0.0.1:{port}', tls_skip_verify: true, allow_public_unauthenticated_access: true}}
",
        port = tls_up.addr.port(),
        ca = ca_path.display()
    );
    let env = Env::start(&routes, "");
    let e = echo(env.get("a.example.com", "/secure").await).await;
    assert_eq!(e["upstream"], "secure");
    assert_eq!(e["uri"], "/secure");
    // The upstream offers h2 by ALPN, so the proxy speaks HTTP/2 to it.
    assert_eq!(e["version"], "HTTP/2.0");
    // Name mismatch (the certificate is for upstream.internal, not 127.0.0.1).
    assert_eq!(env.get("b.example.com", "/").await.status(), 503);
    // Unknown CA without tls_custom_ca.
    assert_eq!(env.get("rr.example.com", "/").await.status(), 503);
    // tls_skip_verify accepts it.
    assert_eq!(
        echo(env.get("up.example.com", "/").await).await["upstream"],
        "secure"
    );
}

#[tokio::test]
async fn https_upstream_client_certificate() {
    let upstream_ca = Ca::new("upstream CA");
    let client_ca = Ca::new("client CA");
    let up = Upstream::start_mtls(
        "mtls",
        &upstream_ca.leaf(&["upstream.internal"]),
        &client_ca.pem,
    );
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("upstream-ca.pem");
    std::fs::write(&ca_path, &upstream_ca.pem).unwrap();
    let (client_cert, client_key) = client_ca
        .leaf(&["proxy.internal"])
        .write(dir.path(), "client");
    let routes = format!(
        "  - {{from: https://a.example.com, to: 'https://127.0.0.1:{port}', tls_custom_ca_file: {ca}, tls_server_name: upstream.internal, tls_client_cert_file: {cert}, tls_client_key_file: {key}, allow_public_unauthenticated_access: true}}
  - {{from: https://b.example.com, to: 'https://127.0.0.1:{port}', tls_custom_ca_file: {ca}, tls_server_name: upstream.internal, allow_public_unauthenticated_access: true}}
",
        port = up.addr.port(),
        ca = ca_path.display(),
        cert = client_cert.display(),
        key = client_key.display()
    );
    let env = Env::start(&routes, "");
    assert_eq!(
        echo(env.get("a.example.com", "/").await).await["upstream"],
        "mtls"
    );
    // Without the client certificate the upstream refuses the connection.
    let status = env.get("b.example.com", "/").await.status();
    assert!(status == 502 || status == 503, "{status}");
}

#[tokio::test]
async fn hot_reload_good_and_bad_edits_and_metrics() {
    let a = Upstream::start("a");
    let metrics_port = free_port();
    let routes_one = format!(
        "  - {{from: https://a.example.com, to: {}, allow_public_unauthenticated_access: true}}\n",
        a.url()
    );
    let extra = format!("metrics_address: 127.0.0.1:{metrics_port}\n");
    let env = Env::start(&routes_one, &extra);
    assert_eq!(env.get("a.example.com", "/").await.status(), 200);
    assert_eq!(env.get("b.example.com", "/").await.status(), 404);

    let config = std::fs::read_to_string(&env.proxy.config_path).unwrap();
    let with_b = format!(
        "{config}  - {{from: https://b.example.com, to: {}, allow_public_unauthenticated_access: true}}\n",
        a.url()
    );
    env.proxy.rewrite_config(&with_b);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if env.get("b.example.com", "/").await.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "new route not served:\n{}",
            env.proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // An invalid edit is rejected; both routes keep working.
    env.proxy.rewrite_config(&format!(
        "{config}  - {{from: https://b.example.com, to: {}, timeout: not-a-duration}}\n",
        a.url()
    ));
    let deadline = Instant::now() + Duration::from_secs(15);
    while !env.proxy.log().contains("rejected") {
        assert!(
            Instant::now() < deadline,
            "bad edit not noticed:\n{}",
            env.proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        env.proxy.log().contains("not-a-duration"),
        "{}",
        env.proxy.log()
    );
    assert_eq!(env.get("a.example.com", "/").await.status(), 200);
    assert_eq!(env.get("b.example.com", "/").await.status(), 200);

    // Health and metrics.
    let plain = reqwest::Client::new();
    let m = |path: &str| format!("http://127.0.0.1:{metrics_port}{path}");
    assert_eq!(plain.get(m("/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(plain.get(m("/readyz")).send().await.unwrap().status(), 200);
    let text = plain
        .get(m("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("rampart_config_reloads_total{result=\"ok\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("rampart_config_reloads_total{result=\"error\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("rampart_http_requests_total{route=\"route-0\",status=\"200\"}"),
        "{text}"
    );
    assert!(
        text.contains("rampart_http_request_duration_seconds_bucket"),
        "{text}"
    );
}

#[tokio::test]
async fn invalid_initial_config_exits_with_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(
        &path,
        "address: 127.0.0.1:1\nroutes:\n  - {from: https://a.example.com, to: http://x, timout: 5s}\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown field `timout`"), "{stderr}");
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests() {
    let a = Upstream::start("a");
    let mut env = Env::start(
        &format!(
            "  - {{from: https://up.example.com, to: {}, allow_public_unauthenticated_access: true}}\n",
            a.url()
        ),
        "",
    );
    let resp = env.get("up.example.com", "/sse").await;
    let mut stream = resp.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: event 0"));
    let pid = env.proxy.pid() as i32;
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let mut text = String::from_utf8(first.to_vec()).unwrap();
    while let Some(chunk) = stream.next().await {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    assert_eq!(text.matches("data: event").count(), 5, "{text}");
    let status = env.proxy.terminate();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn insecure_server_plain_http() {
    let a = Upstream::start("a");
    let proxy = Proxy::start_insecure(
        "",
        &format!(
            "  - {{from: https://a.example.com, to: {}, allow_public_unauthenticated_access: true}}\n",
            a.url()
        ),
    );
    let port = proxy.port;
    let client = http_client(proxy.addr(), &["a.example.com"]);
    let resp = client
        .get(format!("http://a.example.com:{port}/plain"))
        .send()
        .await
        .unwrap();
    // No certificate configured: the default HSTS header is dropped.
    assert!(resp.headers().get("strict-transport-security").is_none());
    assert_eq!(resp.headers()["x-frame-options"], "SAMEORIGIN");
    let e = echo(resp).await;
    assert_eq!(header(&e, "x-forwarded-proto"), Some("http"));

    // HEAD keeps the upstream's Content-Length and has no body.
    let resp = client
        .head(format!("http://a.example.com:{port}/plain"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let len: usize = resp.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(len > 0);
    assert!(resp.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn rewrite_response_headers_replace_a_leading_prefix() {
    let a = Upstream::start("internal-a");
    let routes = format!(
        "  - {{from: https://headers.example.com, to: {}, allow_public_unauthenticated_access: true, rewrite_response_headers: [{{header: X-Upstream, prefix: 'internal-', value: 'public-'}}, {{header: X-Frame-Options, prefix: 'NOPE', value: 'x'}}]}}\n",
        a.url()
    );
    let env = Env::start(&routes, "");
    let resp = env.get("headers.example.com", "/").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-upstream"], "public-a");
    // Unmatched prefix: the header is left as it was (then global headers apply as usual).
    assert_eq!(resp.headers()["x-frame-options"], "SAMEORIGIN");
}

/// A raw HTTP/1.1 upstream answering each accepted connection with one scripted response and
/// closing it afterwards (after `linger`), so pooled connections go stale.
fn scripted_upstream(responses: Vec<&'static str>, linger: Duration) -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for response in responses {
            let (mut s, _) = listener.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            s.write_all(response.as_bytes()).unwrap();
            std::thread::sleep(linger);
        }
    });
    addr
}

#[tokio::test]
async fn upstream_framings_and_stale_keep_alive_connections() {
    let up = scripted_upstream(
        vec![
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Up: 2\r\n\r\n3\r\nsec\r\n3;x=y\r\nond\r\n0\r\nTrailer-A: 1\r\n\r\n",
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nConnection: close\r\n\r\nthird, to the close",
        ],
        Duration::from_millis(100),
    );
    let proxy = Proxy::start_insecure(
        "",
        &format!(
            "  - {{from: https://s.example.com, to: http://{up}, allow_public_unauthenticated_access: true}}\n"
        ),
    );
    let port = proxy.port;
    let client = http_client(proxy.addr(), &["s.example.com"]);
    let get = |path: &'static str| {
        let client = client.clone();
        async move {
            let resp = client
                .get(format!("http://s.example.com:{port}{path}"))
                .send()
                .await
                .unwrap();
            let status = resp.status();
            let x_up = resp.headers().get("x-up").cloned();
            (status, x_up, resp.text().await.unwrap())
        }
    };
    let (status, _, body) = get("/1").await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "first"));
    // The upstream has closed the kept-alive connection by now: the next request must not fail
    // on it (a fresh connection is used, or the request is retried on one).
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, x_up, body) = get("/2").await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "second"));
    assert_eq!(x_up.unwrap(), "2");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, _, body) = get("/3").await;
    assert_eq!(
        (status.as_u16(), body.as_str()),
        (200, "third, to the close")
    );
}
