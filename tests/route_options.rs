//! Route options served by the real binary: active health checks and outlier detection steering
//! the balancer between two real upstreams, downstream client certificates, upgrades, the
//! service account token.

mod support;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use support::*;

/// An upstream answering its name, or 500 to everything (health checks too) while `failing`.
struct Switchable {
    addr: SocketAddr,
    failing: Arc<AtomicBool>,
}

impl Switchable {
    fn start(name: &'static str) -> Switchable {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let failing = Arc::new(AtomicBool::new(false));
        let flag = failing.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = HttpServer::new(move || {
                    let flag = flag.clone();
                    App::new().default_service(web::to(move |req: HttpRequest| {
                        let failing = flag.load(Ordering::SeqCst);
                        let header = |n: &str| {
                            req.headers()
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_string()
                        };
                        let auth = header("authorization");
                        let impersonate = header("impersonate-user");
                        async move {
                            if failing {
                                HttpResponse::InternalServerError().body(format!("{name} failing"))
                            } else {
                                HttpResponse::Ok()
                                    .insert_header(("x-authorization-seen", auth))
                                    .insert_header(("x-impersonate-user-seen", impersonate))
                                    .body(name)
                            }
                        }
                    }))
                })
                .workers(1)
                .disable_signals()
                .listen(listener)
                .unwrap()
                .run();
                tx.send(()).unwrap();
                let _ = server.await;
            })
        });
        rx.recv().unwrap();
        Switchable { addr, failing }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn set_failing(&self, on: bool) {
        self.failing.store(on, Ordering::SeqCst);
    }
}

/// Two switchable upstreams behind one plain-HTTP route `https://{host}` (public) with the
/// route settings `options` (YAML lines indented as route keys).
struct TwoUpstreams {
    a: Switchable,
    b: Switchable,
    proxy: Proxy,
    /// Resolves `host` to the proxy.
    client: reqwest::Client,
    /// `http://{host}:{port}/`.
    url: String,
}

fn two_upstreams(host: &str, options: &str) -> TwoUpstreams {
    let a = Switchable::start("a");
    let b = Switchable::start("b");
    let proxy = Proxy::start_insecure(
        "",
        &format!(
            "  - from: https://{host}\n    to: [{}, {}]\n    allow_public_unauthenticated_access: true\n{options}",
            a.url(),
            b.url()
        ),
    );
    let client = http_client(proxy.addr(), &[host]);
    let url = format!("http://{host}:{}/", proxy.port);
    TwoUpstreams {
        a,
        b,
        proxy,
        client,
        url,
    }
}

/// Which upstream answered each of `n` requests (`"a"`, `"b"`, or `"<status>"`).
async fn answers(client: &reqwest::Client, url: &str, n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let r = client.get(url).send().await.unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        out.push(if status.is_success() {
            body
        } else {
            status.as_u16().to_string()
        });
    }
    out
}

async fn until_both(client: &reqwest::Client, url: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let got = answers(client, url, 6).await;
        if got.iter().any(|g| g == "a") && got.iter().any(|g| g == "b") {
            assert!(got.iter().all(|g| g == "a" || g == "b"), "{got:?}");
            return;
        }
        assert!(Instant::now() < deadline, "b did not come back: {got:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_web::test]
async fn active_health_checks_take_a_failing_upstream_out_and_back() {
    let TwoUpstreams {
        a: _a,
        b,
        proxy,
        client,
        url,
    } = two_upstreams(
        "hc.example.com",
        "    health_checks:\n      - timeout: 1s\n        interval: 200ms\n        healthy_threshold: 2\n        unhealthy_threshold: 2\n        http_health_check: {path: /healthz}\n",
    );
    until_both(&client, &url, Duration::from_secs(5)).await;

    b.set_failing(true);
    // No request is needed: the checks alone take b out (2 failures at 200 ms).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = answers(&client, &url, 10).await;
    assert!(got.iter().all(|g| g == "a"), "b still served: {got:?}");

    b.set_failing(false);
    until_both(&client, &url, Duration::from_secs(5)).await;
    let log = proxy.log();
    assert!(log.contains("health check: upstream unhealthy"), "{log}");
    assert!(log.contains("health check: upstream healthy"), "{log}");
}

#[actix_web::test]
async fn outlier_detection_ejects_after_consecutive_5xx_and_returns_it() {
    let TwoUpstreams {
        a: _a,
        b,
        proxy,
        client,
        url,
    } = two_upstreams(
        "od.example.com",
        "    outlier_detection: {consecutive_5xx: 3, base_ejection_time: 2s, max_ejection_percent: 50}\n",
    );
    until_both(&client, &url, Duration::from_secs(5)).await;

    b.set_failing(true);
    // Round-robin: b sees every other request; its third 500 in a row ejects it.
    let got = answers(&client, &url, 6).await;
    assert_eq!(got.iter().filter(|g| *g == "500").count(), 3, "{got:?}");
    let started = Instant::now();
    let got = answers(&client, &url, 10).await;
    assert!(got.iter().all(|g| g == "a"), "b not ejected: {got:?}");

    // After base_ejection_time b is offered again (and answers again once recovered).
    b.set_failing(false);
    tokio::time::sleep(Duration::from_secs(2).saturating_sub(started.elapsed())).await;
    until_both(&client, &url, Duration::from_secs(5)).await;
    assert!(
        proxy
            .log()
            .contains("outlier detection ejected an upstream"),
        "{}",
        proxy.log()
    );
}

#[actix_web::test]
async fn zero_panic_threshold_answers_no_healthy_upstream() {
    let a = Switchable::start("a");
    let proxy = Proxy::start_insecure(
        "",
        &format!(
            "  - from: https://p.example.com\n    to: {}\n    allow_public_unauthenticated_access: true\n    healthy_panic_threshold: 0\n    health_checks: [{{timeout: 1s, interval: 100ms, healthy_threshold: 1, unhealthy_threshold: 1, http_health_check: {{path: /}}}}]\n",
            a.url()
        ),
    );
    let port = proxy.port;
    let client = http_client(proxy.addr(), &["p.example.com"]);
    let url = format!("http://p.example.com:{port}/");
    assert_eq!(answers(&client, &url, 1).await, vec!["a"]);
    a.set_failing(true);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let r = client
        .get(&url)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body = r.text().await.unwrap();
    assert!(body.contains("no_healthy_upstream"), "{body}");
}

#[actix_web::test]
async fn service_account_token_replaces_the_client_authorization() {
    let a = Switchable::start("a");
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "sa-token-123\n").unwrap();
    let proxy = Proxy::start_in(
        dir,
        &format!(
            "address: 127.0.0.1:{port}\ninsecure_server: true\nroutes:\n  - from: https://k.example.com\n    to: {}\n    allow_public_unauthenticated_access: true\n    kubernetes_service_account_token_file: {}\n",
            a.url(),
            token.display()
        ),
        port,
    );
    let client = http_client(proxy.addr(), &["k.example.com"]);
    let r = client
        .get(format!("http://k.example.com:{port}/"))
        .header("authorization", "Bearer client-token")
        .header("impersonate-user", "system:admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["x-authorization-seen"].to_str().unwrap(),
        "Bearer sa-token-123"
    );
    // A client cannot pick whom the service account impersonates.
    assert_eq!(r.headers()["x-impersonate-user-seen"].to_str().unwrap(), "");
}

/// An HTTPS client trusting `ca_pem` that presents `identity` (cert + key PEM).
fn mtls_client(
    ca_pem: &str,
    identity: Option<&Leaf>,
    proxy: SocketAddr,
    hosts: &[&str],
) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(30));
    if let Some(leaf) = identity {
        let pem = format!("{}{}", leaf.cert_pem, leaf.key_pem);
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    for h in hosts {
        b = b.resolve(h, proxy);
    }
    b.build().unwrap()
}

#[actix_web::test]
async fn downstream_client_ca_checks_client_certificates_for_its_route() {
    let a = Switchable::start("a");
    let server_ca = Ca::new("server CA");
    let leaf = server_ca.leaf(&["*.example.com"]);
    let client_ca = Ca::new("client CA");
    let good = client_ca.leaf(&["alice.client"]);
    let rogue = Ca::new("rogue CA").leaf(&["mallory.client"]);
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = leaf.write(dir.path(), "server");
    let ca_file = dir.path().join("client-ca.pem");
    std::fs::write(&ca_file, &client_ca.pem).unwrap();
    let port = free_port();
    let proxy = Proxy::start_in(
        dir,
        &format!(
            "address: 127.0.0.1:{port}\ncertificate_file: {}\ncertificate_key_file: {}\nroutes:\n  - from: https://mtls.example.com\n    to: {up}\n    allow_public_unauthenticated_access: true\n    tls_downstream_client_ca_file: {}\n  - from: https://open.example.com\n    to: {up}\n    allow_public_unauthenticated_access: true\n",
            cert.display(),
            key.display(),
            ca_file.display(),
            up = a.url(),
        ),
        port,
    );
    let hosts = ["mtls.example.com", "open.example.com"];
    let get = |identity: Option<&Leaf>, host: &str| {
        let client = mtls_client(&server_ca.pem, identity, proxy.addr(), &hosts);
        let url = format!("https://{host}:{port}/");
        async move { client.get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(get(Some(&good), "mtls.example.com").await, 200);
    assert_ne!(get(None, "mtls.example.com").await, 200, "no certificate");
    assert_ne!(get(Some(&rogue), "mtls.example.com").await, 200, "other CA");
    // The other route asks nothing of clients: with or without a certificate it serves.
    assert_eq!(get(None, "open.example.com").await, 200);
    assert_eq!(get(Some(&rogue), "open.example.com").await, 200);

    // The handshake asks for a certificate only for the client-CA route's host (SNI).
    for (host, asked) in [("mtls.example.com", true), ("open.example.com", false)] {
        let (client, calls) = counting_client(&server_ca.pem, &good, proxy.addr(), &hosts);
        let status = client
            .get(format!("https://{host}:{port}/"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200, "{host}");
        assert_eq!(
            calls.load(Ordering::SeqCst) > 0,
            asked,
            "certificate requested for {host}"
        );
    }
}

/// Presents `leaf` when asked and counts how often the server asked.
#[derive(Debug)]
struct CountingCert {
    key: Arc<rustls::sign::CertifiedKey>,
    calls: Arc<std::sync::atomic::AtomicUsize>,
}

impl rustls::client::ResolvesClientCert for CountingCert {
    fn resolve(
        &self,
        _hints: &[&[u8]],
        _schemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Some(self.key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn counting_client(
    ca_pem: &str,
    leaf: &Leaf,
    proxy: SocketAddr,
    hosts: &[&str],
) -> (reqwest::Client, Arc<std::sync::atomic::AtomicUsize>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let chain = rustls_pemfile::certs(&mut leaf.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pemfile::private_key(&mut leaf.key_pem.as_bytes())
        .unwrap()
        .unwrap();
    let signing = provider.key_provider.load_private_key(key).unwrap();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let resolver = CountingCert {
        key: Arc::new(rustls::sign::CertifiedKey::new(chain, signing)),
        calls: calls.clone(),
    };
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_cert_resolver(Arc::new(resolver));
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut b = reqwest::Client::builder()
        .use_preconfigured_tls(cfg)
        .pool_max_idle_per_host(0);
    for h in hosts {
        b = b.resolve(h, proxy);
    }
    (b.build().unwrap(), calls)
}

#[actix_web::test]
async fn client_certificate_criterion_sees_the_presented_certificate() {
    let a = Switchable::start("a");
    let server_ca = Ca::new("server CA");
    let leaf = server_ca.leaf(&["*.example.com"]);
    let client_ca = Ca::new("client CA");
    let alice = client_ca.leaf(&["alice.client"]);
    let bob = client_ca.leaf(&["bob.client"]);
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = leaf.write(dir.path(), "server");
    let ca_file = dir.path().join("client-ca.pem");
    std::fs::write(&ca_file, &client_ca.pem).unwrap();
    let port = free_port();
    let proxy = Proxy::start_in(
        dir,
        &format!(
            "address: 127.0.0.1:{port}\ncertificate_file: {}\ncertificate_key_file: {}\nroutes:\n  - from: https://pki.example.com\n    to: {}\n    tls_downstream_client_ca_file: {}\n    policy: {{allow: {{and: [{{client_certificate: {{san_dns: {{is: alice.client}}}}}}]}}}}\n",
            cert.display(),
            key.display(),
            a.url(),
            ca_file.display(),
        ),
        port,
    );
    let get = |identity: &Leaf| {
        let client = mtls_client(
            &server_ca.pem,
            Some(identity),
            proxy.addr(),
            &["pki.example.com"],
        );
        let url = format!("https://pki.example.com:{port}/");
        async move { client.get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(get(&alice).await, 200);
    assert_eq!(get(&bob).await, 403);
}

#[actix_web::test]
async fn circuit_breaker_max_requests_answers_overflow() {
    let up = Upstream::start("slow");
    let proxy = Proxy::start_insecure(
        "",
        &format!(
            "  - from: https://cb.example.com\n    to: {}\n    allow_public_unauthenticated_access: true\n    circuit_breaker_thresholds: {{max_requests: 1}}\n",
            up.url()
        ),
    );
    let port = proxy.port;
    let client = http_client(proxy.addr(), &["cb.example.com"]);
    let url = format!("http://cb.example.com:{port}/slow");
    let first = {
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move { client.get(url).send().await.unwrap().status().as_u16() })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = client.get(&url).send().await.unwrap();
    assert_eq!(second.status(), 503);
    assert_eq!(second.headers()["x-envoy-overloaded"], "true");
    assert_eq!(first.await.unwrap(), 200);
    // Once the first request is done, the next one goes through.
    let third = client
        .get(format!("http://cb.example.com:{port}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(third.status(), 200);
}

#[tokio::test]
async fn allow_upgrades_tunnels_the_listed_protocols() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let ws_up = websocket_echo();
    let proxy = Proxy::start_insecure(
        "",
        &format!(
            "  - {{from: https://up.example.com, to: http://{ws_up}, allow_upgrades: [WebSocket], allow_public_unauthenticated_access: true}}\n  - {{from: https://other.example.com, to: http://{ws_up}, allow_upgrades: [spdy/3.1], allow_public_unauthenticated_access: true}}\n"
        ),
    );
    let port = proxy.port;
    let connect = |host: &'static str| {
        let addr = proxy.addr();
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            tokio_tungstenite::client_async(format!("ws://{host}:{port}/"), tcp).await
        }
    };
    let (mut ws, _) = connect("up.example.com").await.unwrap();
    ws.send(Message::text("through allow_upgrades"))
        .await
        .unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text("through allow_upgrades")
    );
    match connect("other.example.com").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("websocket is not in this route's allow_upgrades"),
    }
}

/// `max_request_body_bytes` (ingress-nginx `proxy-body-size`): 413 for a declared length over
/// the limit (before the upstream is asked) and for a streamed body that passes it; bodies
/// within the limit reach the upstream whole.
#[actix_web::test]
async fn request_bodies_over_max_request_body_bytes_get_413() {
    let up = Upstream::start("u");
    let proxy = Proxy::start_insecure(
        "",
        &format!(
            "  - from: https://b.example.com\n    to: {}\n    allow_public_unauthenticated_access: true\n    max_request_body_bytes: 1000\n  - from: https://free.example.com\n    to: {}\n    allow_public_unauthenticated_access: true\n",
            up.url(),
            up.url()
        ),
    );
    let port = proxy.port;
    let client = http_client(proxy.addr(), &["b.example.com", "free.example.com"]);
    let url = format!("http://b.example.com:{port}/upload");
    let r = client
        .post(&url)
        .body(vec![b'x'; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "received 1000");
    let r = client
        .post(&url)
        .body(vec![b'x'; 1001])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // Chunked (no Content-Length): cut when it passes the limit.
    let chunks = futures::stream::iter(
        (0..8).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'y'; 300]))),
    );
    let r = client
        .post(&url)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let small = futures::stream::iter(
        (0..3).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'y'; 300]))),
    );
    let r = client
        .post(&url)
        .body(reqwest::Body::wrap_stream(small))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "received 900");
    // Other routes have no limit.
    let r = client
        .post(format!("http://free.example.com:{port}/upload"))
        .body(vec![b'x'; 100_000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "received 100000");
}

/// `cors` (ingress-nginx `enable-cors`): the proxy answers preflights itself, even on a route
/// that needs sign-in, and adds the CORS headers to answers for allowed origins (the 401 of the
/// sign-in too); other origins get none.
#[actix_web::test]
async fn cors_preflights_are_answered_and_headers_added() {
    let up = Upstream::start("u");
    let port = free_port();
    let proxy = Proxy::start(
        &format!(
            "address: 127.0.0.1:{port}\ninsecure_server: true\nauthenticate_service_url: http://authenticate.localhost:{port}\nidp_provider: oidc\nidp_provider_url: http://127.0.0.1:9/op\nidp_client_id: x\nidp_client_secret: y\nshared_secret: {ss}\ncookie_secret: {cs}\nroutes:\n  - from: https://c.example.com\n    to: {up}\n    allow_public_unauthenticated_access: true\n    cors: {{allow_origin: ['https://spa.example.com'], expose_headers: X-Upstream}}\n  - from: https://private.example.com\n    to: {up}\n    allow_any_authenticated_user: true\n    cors: {{}}\n",
            up = up.url(),
            ss = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
            cs = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=",
        ),
        port,
    );
    let client = http_client(proxy.addr(), &["c.example.com", "private.example.com"]);
    let pre = |host: &str, origin: &str| {
        client
            .request(
                reqwest::Method::OPTIONS,
                format!("http://{host}:{port}/api"),
            )
            .header("origin", origin)
            .header("access-control-request-method", "PUT")
            .send()
    };
    let h = |r: &reqwest::Response, n: &str| {
        r.headers().get(n).map(|v| v.to_str().unwrap().to_string())
    };
    let r = pre("c.example.com", "https://spa.example.com")
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        h(&r, "access-control-allow-origin").as_deref(),
        Some("https://spa.example.com")
    );
    assert_eq!(
        h(&r, "access-control-allow-methods").as_deref(),
        Some("GET, PUT, POST, DELETE, PATCH, OPTIONS")
    );
    assert_eq!(h(&r, "access-control-max-age").as_deref(), Some("1728000"));
    let r = pre("c.example.com", "https://evil.example.com")
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(h(&r, "access-control-allow-origin"), None);
    // A preflight on a route that needs sign-in does not need it.
    let r = pre("private.example.com", "https://any.example.com")
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        h(&r, "access-control-allow-origin").as_deref(),
        Some("https://any.example.com")
    );

    let r = client
        .get(format!("http://c.example.com:{port}/x"))
        .header("origin", "https://spa.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        h(&r, "access-control-allow-origin").as_deref(),
        Some("https://spa.example.com")
    );
    assert_eq!(
        h(&r, "access-control-allow-credentials").as_deref(),
        Some("true")
    );
    assert_eq!(
        h(&r, "access-control-expose-headers").as_deref(),
        Some("X-Upstream")
    );
    let r = client
        .get(format!("http://private.example.com:{port}/x"))
        .header("origin", "https://any.example.com")
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        h(&r, "access-control-allow-origin").as_deref(),
        Some("https://any.example.com")
    );
}

/// `return_redirect` (ingress-nginx `app-root`, `permanent-redirect`): answered by the proxy,
/// before sign-in; with `path`, only that path is redirected and the rest is proxied.
#[actix_web::test]
async fn return_redirect_answers_before_sign_in() {
    let up = Upstream::start("u");
    let port = free_port();
    let proxy = Proxy::start(
        &format!(
            "address: 127.0.0.1:{port}\ninsecure_server: true\nauthenticate_service_url: http://authenticate.localhost:{port}\nidp_provider: oidc\nidp_provider_url: http://127.0.0.1:9/op\nidp_client_id: x\nidp_client_secret: y\nshared_secret: AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\ncookie_secret: AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=\nroutes:\n  - from: https://root.example.com\n    to: {up}\n    allow_public_unauthenticated_access: true\n    return_redirect: {{location: /app, path: /}}\n  - from: https://old.example.com\n    to: {up}\n    allow_any_authenticated_user: true\n    return_redirect: {{location: 'https://new.example.com/', code: 301}}\n",
            up = up.url(),
        ),
        port,
    );
    let client = http_client(proxy.addr(), &["root.example.com", "old.example.com"]);
    let r = client
        .get(format!("http://root.example.com:{port}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "/app");
    let r = client
        .get(format!("http://root.example.com:{port}/app"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .get(format!("http://old.example.com:{port}/any?x=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 301);
    assert_eq!(r.headers()["location"], "https://new.example.com/");
}

/// `sticky_cookie` (ingress-nginx `affinity: cookie`): a client without the cookie gets one,
/// and with it always reaches the same upstream; other cookie values spread over both.
#[actix_web::test]
async fn sticky_cookie_keeps_a_client_on_one_upstream() {
    let TwoUpstreams {
        a: _a,
        b: _b,
        proxy: _proxy,
        client,
        url,
    } = two_upstreams("s.example.com", "    sticky_cookie: route\n");
    let r = client.get(&url).send().await.unwrap();
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        set.starts_with("route=") && set.contains("HttpOnly"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_string();
    let first = r.text().await.unwrap();
    for _ in 0..20 {
        let r = client
            .get(&url)
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert!(r.headers().get("set-cookie").is_none());
        assert_eq!(r.text().await.unwrap(), first);
    }
    let mut seen = std::collections::HashSet::new();
    for i in 0..40 {
        let r = client
            .get(&url)
            .header("cookie", format!("route=client{i}"))
            .send()
            .await
            .unwrap();
        seen.insert(r.text().await.unwrap());
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
}
