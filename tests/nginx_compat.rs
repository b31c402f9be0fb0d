//! ingress-nginx compatibility end to end: the real `rampart controller` binary with
//! `--ingress-nginx-compat` against the fake API server and the test OpenID provider. An
//! oauth2-proxy-style Ingress (auth-url/auth-signin) is served with rampart's own sign-in (no
//! oauth2-proxy), and a snippet annotation is reported by name.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::fake_kube::FakeKube;
use support::k8s::{
    bootstrap_secret, ca_secret, cluster_ip_service, idp_secret, ingress_class,
    ready_endpoint_slice,
};
use support::oidc::OpBuilder;
use support::process::Proc;
use support::{free_port, Ca, Upstream};

const BIN: &str = env!("CARGO_BIN_EXE_rampart");

/// The ingress-nginx Ingress as users have it with oauth2-proxy.
fn oauth2_proxy_ingress(name: &str, host: &str, extra: Value) -> Value {
    let mut annotations = json!({
        "nginx.ingress.kubernetes.io/auth-url": "https://$host/oauth2/auth",
        "nginx.ingress.kubernetes.io/auth-signin": "https://$host/oauth2/start?rd=$escaped_request_uri",
        "nginx.ingress.kubernetes.io/auth-response-headers": "X-Auth-Request-User,X-Auth-Request-Email",
        "nginx.ingress.kubernetes.io/rewrite-target": "/$2",
        "nginx.ingress.kubernetes.io/proxy-read-timeout": "3600",
        "rampart.io/allowed-emails": "alice@example.com",
    });
    for (k, v) in extra.as_object().unwrap() {
        annotations[k] = v.clone();
    }
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
           "metadata": {"name": name, "namespace": "default", "annotations": annotations},
           "spec": {"ingressClassName": "pomerium", "rules": [{"host": host, "http": {"paths": [
               {"path": "/api(/|$)(.*)", "pathType": "ImplementationSpecific",
                "backend": {"service": {"name": "app", "port": {"number": 80}}}}]}}]}})
}

struct World {
    kube: FakeKube,
    _op: Proc,
    controller: Proc,
    port: u16,
    _upstream: Upstream,
    _dir: tempfile::TempDir,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let authn = format!("https://authenticate.localhost:{port}");

    // The OpenID provider over TLS (the Pomerium object requires an https IdP URL), its CA
    // given to rampart through `caSecrets`.
    let ca = Ca::new("op test ca");
    let (cert, key) = ca.leaf(&["127.0.0.1"]).write(dir.path(), "op");
    let (op, issuer) = OpBuilder::new(&format!("{authn}/oauth2/callback"))
        .post_logout(&format!("{authn}/.pomerium/signed_out"))
        .auto_consent()
        .tls(&cert, &key)
        .start();

    let upstream = Upstream::start("app");
    let kube = FakeKube::start();
    kube.apply(ingress_class());
    kube.apply(bootstrap_secret());
    kube.apply(idp_secret());
    kube.apply(ca_secret("op-ca", &ca.pem));
    kube.apply(json!({"apiVersion": "ingress.pomerium.io/v1", "kind": "Pomerium",
        "metadata": {"name": "global"},
        "spec": {"secrets": "pomerium/bootstrap",
                 "authenticate": {"url": authn},
                 "identityProvider": {"provider": "oidc", "url": issuer, "secret": "pomerium/idp",
                                      "scopes": ["openid", "email", "profile", "groups"]},
                 "caSecrets": ["pomerium/op-ca"],
                 // What oauth2-proxy's X-Auth-Request-* response headers carried.
                 "jwtClaimHeaders": {"X-Auth-Request-Email": "email", "X-Auth-Request-User": "sub"}}}));
    kube.apply(cluster_ip_service(
        "app",
        "10.96.0.20",
        80,
        upstream.addr.port(),
    ));
    kube.apply(ready_endpoint_slice(
        "app",
        "app-1",
        &["127.0.0.1"],
        upstream.addr.port(),
    ));
    kube.apply(oauth2_proxy_ingress("app", "app.example.com", json!({})));

    let mut cmd = Command::new(BIN);
    cmd.arg("controller")
        .arg("--ingress-nginx-compat")
        .env("KUBE_API_URL", kube.url())
        .env(
            "HEALTH_PROBE_BIND_ADDRESS",
            format!("127.0.0.1:{}", free_port()),
        )
        .env("SERVER_ADDR", format!("127.0.0.1:{port}"))
        .env("HTTP_REDIRECT_ADDR", "")
        .env("PROXY_WORKERS", "1")
        .env("RAMPART_DATA_DIR", dir.path())
        .env("RUST_LOG", "info");
    let (controller, _) = Proc::spawn("rampart controller", cmd, None);
    World {
        kube,
        _op: op,
        controller,
        port,
        _upstream: upstream,
        _dir: dir,
    }
}

/// A browser-like client: cookies, HTML Accept, every test host resolved to rampart.
fn browser(port: u16) -> reqwest::Client {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    reqwest::Client::builder()
        .cookie_store(true)
        .danger_accept_invalid_certs(true)
        .resolve("app.example.com", addr)
        .resolve("authenticate.localhost", addr)
        .default_headers({
            let mut h = reqwest::header::HeaderMap::new();
            h.insert(
                "accept",
                "text/html,application/xhtml+xml,*/*;q=0.8".parse().unwrap(),
            );
            h
        })
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Follows the redirects to the OP's login form, signs in as `user` (consent is automatic),
/// and returns the final answer from the app host.
async fn sign_in(client: &reqwest::Client, url: &str, user: &str) -> (u16, String) {
    let r = client.get(url).send().await.unwrap();
    let form = r.url().clone();
    assert!(
        form.path().starts_with("/interaction/"),
        "expected the OP login form, got {} {form}",
        r.status()
    );
    let r = client
        .post(form)
        .form(&[("prompt", "login"), ("login", user), ("password", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.url().host_str(), Some("app.example.com"), "{}", r.url());
    let code = r.status().as_u16();
    (code, r.text().await.unwrap_or_default())
}

async fn eventually<F: FnMut() -> bool>(what: &str, log: impl Fn() -> String, mut f: F) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}; controller log:\n{}", log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_proxy_ingress_is_served_with_sign_in_and_snippets_are_reported() {
    let w = world();
    let app = format!("https://app.example.com:{}", w.port);

    // The route is served: anonymous JSON clients get 401 from the sign-in authorizer (no
    // oauth2-proxy exists anywhere).
    let json_client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .resolve(
            "app.example.com",
            std::net::SocketAddr::from(([127, 0, 0, 1], w.port)),
        )
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last;
    loop {
        match json_client
            .get(format!("{app}/api/hello"))
            .header("accept", "application/json")
            .send()
            .await
        {
            Ok(r) if r.status() == 401 => break,
            Ok(r) => last = format!("{}", r.status()),
            Err(e) => last = e.to_string(),
        }
        assert!(
            Instant::now() < deadline,
            "route not served ({last}); controller log:\n{}",
            w.controller.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // alice (rampart.io/allowed-emails) signs in and reaches the app; rewrite-target /$2
    // strips /api; the identity reaches the upstream.
    let alice = browser(w.port);
    let (code, body) = sign_in(&alice, &format!("{app}/api/hello?x=1"), "alice@example.com").await;
    assert_eq!(code, 200, "{body}\n{}", w.controller.log());
    let echo: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echo["uri"], "/hello?x=1");
    assert_eq!(
        echo["headers"]["x-auth-request-email"][0], "alice@example.com",
        "{echo}"
    );
    assert!(echo["headers"]["x-pomerium-jwt-assertion"][0].is_string());
    // Signed in: later requests go straight through.
    let r = alice.get(format!("{app}/API/v2")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echo["uri"], "/v2");

    // bob signs in fine but is not allowed.
    let bob = browser(w.port);
    let (code, _) = sign_in(&bob, &format!("{app}/api/hello"), "bob@example.com").await;
    assert_eq!(code, 403);

    // A snippet: UpdateError naming it, and the last good routes keep serving.
    w.kube.apply(oauth2_proxy_ingress(
        "app",
        "app.example.com",
        json!({"nginx.ingress.kubernetes.io/configuration-snippet": "more_set_headers \"X-Snippet: 1\";"}),
    ));
    let kube = &w.kube;
    eventually(
        "UpdateError naming the snippet",
        || w.controller.log(),
        || {
            kube.events().iter().any(|e| {
                e.regarding_kind == "Ingress"
                    && e.regarding_name == "app"
                    && e.type_ == "Warning"
                    && e.reason == "UpdateError"
                    && e.message.contains(
                        "nginx.ingress.kubernetes.io/configuration-snippet is not supported",
                    )
            })
        },
    )
    .await;
    let r = alice.get(format!("{app}/api/still")).send().await.unwrap();
    assert_eq!(r.status(), 200, "the last good configuration is kept");
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echo["uri"], "/still");
    assert!(echo["headers"]["x-snippet"].is_null());
}
