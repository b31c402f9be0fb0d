//! Forward auth end to end with real parts: nginx (`nginx-light`) with `auth_request` in front of
//! the real `rampart serve` forward-auth listener and an echo upstream, the test OpenID provider
//! (tests/oidc) for sign-in, and Traefik/Caddy/Envoy-style requests sent the way those proxies
//! send them (none of them is installable here).
//!
//! nginx asks from 127.0.0.2 (`proxy_bind`), the only trusted proxy; the test's own direct
//! requests come from 127.0.0.1 (untrusted) or bind 127.0.0.2 to play a trusted proxy.

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::{Method, StatusCode};
use support::browser::{Jar, Resp};
use support::oidc::OpBuilder;
use support::process::{wait_port, Proc};
use support::{free_port, Proxy, Upstream};

/// nginx in front of `upstream`, asking rampart's forward-auth listener on `fwd_port`.
fn start_nginx(dir: &std::path::Path, port: u16, fwd_port: u16, upstream: SocketAddr) -> Proc {
    let conf = format!(
        r#"worker_processes 1;
pid {dir}/nginx.pid;
error_log stderr warn;
daemon off;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi; uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
  server {{
    listen 127.0.0.1:{port};
    # Every request is checked by rampart first.
    location / {{
      auth_request /_rampart;
      auth_request_set $rampart_signin $upstream_http_x_sign_in_url;
      auth_request_set $rampart_jwt $upstream_http_x_pomerium_jwt_assertion;
      auth_request_set $rampart_email $upstream_http_x_pomerium_claim_email;
      auth_request_set $rampart_team $upstream_http_x_team;
      error_page 401 = @signin;
      proxy_set_header X-Pomerium-Jwt-Assertion $rampart_jwt;
      proxy_set_header X-Pomerium-Claim-Email $rampart_email;
      proxy_set_header X-Team $rampart_team;
      proxy_pass http://{upstream};
    }}
    location = /_rampart {{
      internal;
      proxy_pass http://127.0.0.1:{fwd_port}/nginx;
      proxy_bind 127.0.0.2;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URL $scheme://$http_host$request_uri;
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }}
    location @signin {{
      return 302 $rampart_signin;
    }}
    # The sign-in callback sets the session cookie for this host.
    location /.pomerium/ {{
      proxy_pass http://127.0.0.1:{fwd_port};
      proxy_bind 127.0.0.2;
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-Proto $scheme;
    }}
  }}
}}
"#,
        dir = dir.display()
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let mut cmd = Command::new("nginx");
    cmd.arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&path)
        .arg("-e")
        .arg("stderr");
    let (nginx, _) = Proc::spawn("nginx (apt-get install nginx-light)", cmd, None);
    wait_port(port, "nginx");
    nginx
}

/// A GET with a raw request target (no client-side normalisation); returns the response head.
async fn raw_get(port: u16, target: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let req = format!(
        "GET {target} HTTP/1.1\r\nHost: app.localhost:{port}\r\nAccept: text/html\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    text.split("\r\n\r\n").next().unwrap_or("").to_string()
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn rampart_config(port: u16, fwd_port: u16, issuer: &str, upstream: &str) -> String {
    format!(
        r#"address: 127.0.0.1:{port}
insecure_server: true
authenticate_service_url: http://authenticate.localhost:{port}
idp_provider: oidc
idp_provider_url: {issuer}
idp_client_id: rampart
idp_client_secret: rampart-secret
idp_scopes: [openid, profile, email, groups]
shared_secret: {ss}
cookie_secret: {cs}
databroker_storage_type: memory
pass_identity_headers: true
jwt_claims_headers: [email]
forward_auth:
  address: 127.0.0.1:{fwd_port}
  trusted_proxies: [127.0.0.2/32]
routes:
  - from: https://app.localhost
    prefix: /public
    to: {upstream}
    allow_public_unauthenticated_access: true
  - from: https://app.localhost
    to: {upstream}
    set_request_headers:
      X-Team: blue
    policy:
      - allow:
          or:
            - email: {{is: alice@example.com}}
"#,
        ss = b64(&[7; 32]),
        cs = b64(&[8; 32]),
    )
}

/// A browser: a cookie jar, no automatic redirects, every `*.localhost` on 127.0.0.1.
struct Browser {
    client: reqwest::Client,
    jar: Jar,
    /// `follow` stops before a redirect to this host.
    stop_at_host: Option<&'static str>,
}

impl Browser {
    fn new() -> Browser {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        Browser {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .resolve("app.localhost", any)
                .resolve("authenticate.localhost", any)
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            jar: Jar::default(),
            stop_at_host: None,
        }
    }

    async fn send(
        &mut self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        form: Option<&[(&str, &str)]>,
    ) -> Resp {
        let url = reqwest::Url::parse(url).unwrap();
        let mut req = self
            .client
            .request(method, url.clone())
            .header("accept", "text/html,*/*;q=0.8");
        if let Some(c) = self.jar.header(url.host_str().unwrap_or("")) {
            req = req.header("cookie", c);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(f) = form {
            req = req.form(f);
        }
        let r = req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
        let status = r.status();
        let headers = r.headers().clone();
        self.jar.store(&url, &headers);
        let body = r.text().await.unwrap_or_default();
        Resp {
            status,
            url,
            headers,
            body,
        }
    }

    async fn follow(&mut self, mut r: Resp) -> Resp {
        for _ in 0..20 {
            if !r.status.is_redirection() {
                return r;
            }
            let next = r.location();
            let host = url::Url::parse(&next)
                .unwrap()
                .host_str()
                .map(str::to_string);
            if self.stop_at_host.is_some() && host.as_deref() == self.stop_at_host {
                return r;
            }
            r = self.send(Method::GET, &next, &[], None).await;
        }
        panic!("redirect loop at {}", r.url);
    }

    async fn get(&mut self, url: &str, headers: &[(&str, &str)]) -> Resp {
        let r = self.send(Method::GET, url, headers, None).await;
        self.follow(r).await
    }

    /// From the OP's login form (where a redirect chain landed) to the end of the chain.
    async fn login(&mut self, at: Resp, user: &str) -> Resp {
        assert!(
            at.url.path().starts_with("/interaction/"),
            "expected the OP login form, got {} {}\n{}",
            at.status,
            at.url,
            at.body
        );
        let form = [("prompt", "login"), ("login", user), ("password", "x")];
        let r = self
            .send(Method::POST, at.url.as_str(), &[], Some(&form))
            .await;
        self.follow(r).await
    }
}

struct World {
    _op: Proc,
    _nginx: Proc,
    rampart: Proxy,
    /// The rampart config as started.
    config: String,
    _upstream: Upstream,
    _dir: tempfile::TempDir,
    nginx_port: u16,
    rampart_port: u16,
    fwd_port: u16,
}

fn world() -> World {
    let rampart_port = free_port();
    let fwd_port = free_port();
    let nginx_port = free_port();
    let (op, issuer) = OpBuilder::new(&format!(
        "http://authenticate.localhost:{rampart_port}/oauth2/callback"
    ))
    .auto_consent()
    .start();
    let upstream = Upstream::start("app");
    let config = rampart_config(rampart_port, fwd_port, &issuer, &upstream.url());
    let rampart = Proxy::start(&config, rampart_port);
    wait_port(fwd_port, "the forward-auth listener");
    let dir = tempfile::tempdir().unwrap();
    let nginx = start_nginx(dir.path(), nginx_port, fwd_port, upstream.addr);
    World {
        _op: op,
        _nginx: nginx,
        rampart,
        config,
        _upstream: upstream,
        _dir: dir,
        nginx_port,
        rampart_port,
        fwd_port,
    }
}

impl World {
    fn app(&self, path: &str) -> String {
        format!("http://app.localhost:{}{path}", self.nginx_port)
    }

    /// A browser signed in as `user` through nginx; returns it and the page it landed on.
    async fn signed_in(&self, user: &str) -> (Browser, Resp) {
        let mut b = Browser::new();
        let r = b.get(&self.app("/admin?x=1"), &[]).await;
        let r = b.login(r, user).await;
        (b, r)
    }

    /// A client for the forward-auth listener, bound to `local` (127.0.0.2 is trusted).
    fn fwd_client(&self, local: &str) -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .local_address(local.parse::<std::net::IpAddr>().unwrap())
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap()
    }

    fn fwd(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.fwd_port)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request_lets_alice_in_keeps_bob_out_and_sends_others_to_sign_in() {
    let w = world();

    // No session: nginx turns rampart's 401 into a redirect to the signed sign-in URL.
    let mut anon = Browser::new();
    let r = anon
        .send(Method::GET, &w.app("/admin?x=1"), &[], None)
        .await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.body);
    let signin = r.location();
    assert!(
        signin.starts_with(&format!(
            "http://authenticate.localhost:{}/.pomerium/sign_in?",
            w.rampart_port
        )),
        "{signin}"
    );
    let redirect_uri = url::Url::parse(&signin)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "pomerium_redirect_uri")
        .map(|(_, v)| v.into_owned());
    assert_eq!(redirect_uri.as_deref(), Some(w.app("/admin?x=1").as_str()));
    // The public path passes without a session.
    let r = anon.get(&w.app("/public/page"), &[]).await;
    assert_eq!(r.echo()["uri"], "/public/page");

    // alice signs in and lands back on the original URL with her identity.
    let (mut alice, r) = w.signed_in("alice@example.com").await;
    assert_eq!(r.url.as_str(), w.app("/admin?x=1"), "{}", w.rampart.log());
    let echo = r.echo();
    assert_eq!(echo["uri"], "/admin?x=1");
    assert_eq!(
        support::header(&echo, "x-pomerium-claim-email"),
        Some("alice@example.com")
    );
    assert_eq!(support::header(&echo, "x-team"), Some("blue"));
    let jwt = support::header(&echo, "x-pomerium-jwt-assertion").expect("identity JWT");
    let payload = jwt.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["aud"], "app.localhost");
    // Her session works for other paths too, and a POST is checked as a POST.
    let r = alice.get(&w.app("/admin/other"), &[]).await;
    assert_eq!(r.echo()["uri"], "/admin/other");

    // bob signs in too, but the policy keeps him out.
    let (mut bob, r) = w.signed_in("bob@example.com").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(r.url.as_str(), w.app("/admin?x=1"));

    // The 2026 oauth2-proxy bypass: bob names an allowed path in the headers other proxies
    // use; nginx passes them on, rampart reads only X-Original-URL (set by nginx).
    let spoof = [
        ("x-forwarded-uri", "/public"),
        ("x-forwarded-method", "GET"),
        ("x-original-uri", "/public"),
        ("x-forwarded-host", "app.localhost"),
        ("x-forwarded-proto", "http"),
    ];
    let r = bob.get(&w.app("/admin"), &spoof).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = anon.send(Method::GET, &w.app("/admin"), &spoof, None).await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.body);
    assert!(r.location().contains("/.pomerium/sign_in?"));
    // nginx's own X-Original-URL cannot be replaced by the client either.
    let r = bob
        .get(&w.app("/admin"), &[("x-original-url", &w.app("/public/x"))])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    // A traversal to the protected path (sent raw: clients would resolve it) is judged on
    // the normalised path, not on the `/public` prefix it starts with.
    for target in [
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public/..%2fadmin",
    ] {
        let head = raw_get(w.nginx_port, target).await;
        // 302 to sign-in; an escaped slash is refused (rampart's 400 becomes nginx's 500).
        assert!(
            head.starts_with("HTTP/1.1 302") || head.starts_with("HTTP/1.1 500"),
            "{target}: {head}"
        );
    }

    // Directly to rampart from an untrusted address: the forwarded headers are not believed.
    let direct = w.fwd_client("127.0.0.1");
    for path in ["/nginx", "/traefik", "/envoy/public"] {
        let r = direct
            .get(w.fwd(path))
            .header("x-original-url", w.app("/public"))
            .header("x-original-method", "GET")
            .header("x-forwarded-method", "GET")
            .header("x-forwarded-proto", "http")
            .header("x-forwarded-host", "app.localhost")
            .header("x-forwarded-uri", "/public")
            .header("host", "app.localhost")
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
        let body = r.text().await.unwrap();
        assert!(body.contains("trusted_proxies"), "{path}: {body}");
    }
    drop(alice);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traefik_caddy_and_envoy_style_answers() {
    let w = world();
    let proxy = w.fwd_client("127.0.0.2");
    let forwarded = |uri: &str| {
        vec![
            ("x-forwarded-method", "GET".to_string()),
            ("x-forwarded-proto", "http".to_string()),
            (
                "x-forwarded-host",
                format!("app.localhost:{}", w.nginx_port),
            ),
            ("x-forwarded-uri", uri.to_string()),
        ]
    };
    let ask = |endpoint: &'static str, headers: Vec<(&'static str, String)>, accept: &str| {
        let mut req = proxy.get(w.fwd(endpoint)).header("accept", accept);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send()
    };
    const HTML: &str = "text/html,*/*;q=0.8";
    const JSON: &str = "application/json";

    // No session: browsers get the 302 to sign-in (returned to the client as is by Traefik
    // and Caddy), with the URL also in X-Sign-In-Url; API clients get 401.
    for endpoint in ["/traefik", "/caddy"] {
        let r = ask(endpoint, forwarded("/admin?x=1"), HTML).await.unwrap();
        assert_eq!(r.status(), StatusCode::FOUND, "{endpoint}");
        let location = r.headers()["location"].to_str().unwrap().to_string();
        assert!(
            location.starts_with(&format!(
                "http://authenticate.localhost:{}/.pomerium/sign_in?",
                w.rampart_port
            )),
            "{location}"
        );
        assert_eq!(r.headers()["x-sign-in-url"], location.as_str());
        let r = ask(endpoint, forwarded("/admin"), JSON).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.headers().contains_key("x-sign-in-url"));
    }
    // The nginx endpoint always answers 401 (auth_request accepts nothing else).
    let r = proxy
        .get(w.fwd("/nginx"))
        .header("accept", HTML)
        .header("x-original-url", w.app("/admin"))
        .header("x-original-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers()["x-sign-in-url"]
        .to_str()
        .unwrap()
        .contains("/.pomerium/sign_in?"));

    // Public path: allowed without a session.
    let r = ask("/traefik", forwarded("/public/a"), HTML).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Missing forwarded headers and unknown hosts are clear client errors.
    let mut partial = forwarded("/admin");
    partial.remove(3);
    let r = ask("/traefik", partial, JSON).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body = r.text().await.unwrap();
    assert!(body.contains("x-forwarded-uri"), "{body}");
    let mut other = forwarded("/");
    other[2].1 = "nowhere.localhost".into();
    let r = ask("/traefik", other, JSON).await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(r.text().await.unwrap().contains("nowhere.localhost"));
    let r = proxy.get(w.fwd("/unknown")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // A whole sign-in through a Traefik-style proxy played by this test: it asks /traefik
    // with every request to the app host and returns a non-2xx answer to the browser as is.
    // The sign-in callback on the app host is answered by rampart through the same check.
    let mut b = Browser::new();
    let traefik = |b: &Browser, uri: &str| {
        let mut headers = forwarded(uri);
        if let Some(c) = b.jar.header("app.localhost") {
            headers.push(("cookie", c));
        }
        ask("/traefik", headers, HTML)
    };
    let r = traefik(&b, "/admin?x=1").await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let signin = r.headers()["location"].to_str().unwrap().to_string();
    b.stop_at_host = Some("app.localhost");
    let r = b.get(&signin, &[]).await;
    let r = b.login(r, "alice@example.com").await;
    // The browser is sent to the app host's callback; the proxy asks rampart about it.
    assert!(r.status.is_redirection(), "{} {}", r.status, r.url);
    let callback = url::Url::parse(&r.location()).unwrap();
    assert_eq!(callback.path(), "/.pomerium/callback/");
    let uri = format!("{}?{}", callback.path(), callback.query().unwrap());
    let r = traefik(&b, &uri).await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let back = r.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(back, w.app("/admin?x=1"), "lands back on the original URL");
    b.jar.store(&callback, r.headers());
    let cookie = b.jar.header("app.localhost").expect("session cookie set");
    let r = traefik(&b, "/admin?x=1").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-pomerium-claim-email"], "alice@example.com");
    assert_eq!(r.headers()["x-team"], "blue");
    assert!(r.headers().contains_key("x-pomerium-jwt-assertion"));

    // rampart's own pages cannot be answered through the check: never a 2xx, which would
    // send the request on to the upstream unchecked.
    for uri in ["/.pomerium/", "/.pomerium/user", "/.pomerium/jwt"] {
        let r = traefik(&b, uri).await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{uri}");
    }

    // Envoy ext_authz / Gateway API ExternalAuth: original path after /envoy, original Host.
    let envoy = |path: &str, cookie: Option<&str>, accept: &str| {
        let mut req = proxy
            .get(w.fwd(&format!("/envoy{path}")))
            .header("host", format!("app.localhost:{}", w.nginx_port))
            .header("x-forwarded-proto", "http")
            .header("accept", accept);
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        req.send()
    };
    let r = envoy("/admin", Some(&cookie), HTML).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-pomerium-claim-email"], "alice@example.com");
    let r = envoy("/admin", None, HTML).await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let r = envoy("/public/x", None, JSON).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxies_follow_config_reloads() {
    let w = world();
    let direct = w.fwd_client("127.0.0.1");
    let ask = || {
        direct
            .get(w.fwd("/traefik"))
            .header("x-forwarded-method", "GET")
            .header("x-forwarded-proto", "http")
            .header("x-forwarded-host", "app.localhost")
            .header("x-forwarded-uri", "/public/x")
            .send()
    };
    assert_eq!(ask().await.unwrap().status(), StatusCode::FORBIDDEN);
    w.rampart.rewrite_config(&w.config.replace(
        "trusted_proxies: [127.0.0.2/32]",
        "trusted_proxies: [127.0.0.1/32]",
    ));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = ask().await.unwrap().status();
        if status == StatusCode::OK {
            break;
        }
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(
            Instant::now() < deadline,
            "reload not applied:\n{}",
            w.rampart.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // nginx at 127.0.0.2 is no longer trusted: its check fails closed.
    let r = Browser::new()
        .send(Method::GET, &w.app("/public/x"), &[], None)
        .await;
    assert_ne!(r.status, StatusCode::OK, "{}", r.body);
}
