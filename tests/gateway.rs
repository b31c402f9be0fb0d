//! Gateway API end to end: the controller (real watchers, reconciler, proxy) against the fake
//! API server, a real OpenID provider (tests/oidc over TLS) and real upstreams. A Gateway +
//! HTTPRoute + PolicyFilter lets alice in and keeps bob out; header and method matches pick
//! other backends; status and events are written; a bad update keeps the last good routes.

mod support;

use std::time::{Duration, Instant};

use rampart::controller::ControllerArgs;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::fake_kube::FakeKube;
use support::k8s::{b64, bootstrap_secret, ca_secret, idp_secret, serving_controller_args};
use support::oidc::OpBuilder;
use support::{free_port, Ca, Upstream};

fn service(name: &str, port: u16) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
           "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.30", "ports": [{"name": "http", "port": 80, "targetPort": port, "protocol": "TCP"}]}})
}

fn slice(name: &str, port: u16) -> Value {
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
           "metadata": {"name": format!("{name}-1"), "namespace": "default", "labels": {"kubernetes.io/service-name": name}},
           "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}],
           "ports": [{"name": "http", "port": port, "protocol": "TCP"}]})
}

fn http_route(bad_regex: bool) -> Value {
    let alice_only = json!({"type": "ExtensionRef",
        "extensionRef": {"group": "gateway.pomerium.io", "kind": "PolicyFilter", "name": "alice-only"}});
    let default_path = if bad_regex {
        json!({"type": "RegularExpression", "value": "/(unclosed"})
    } else {
        json!({"type": "PathPrefix", "value": "/"})
    };
    json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
    "metadata": {"name": "app", "namespace": "default", "generation": if bad_regex { 2 } else { 1 }},
    "spec": {
        "parentRefs": [{"name": "gw", "sectionName": "https"}],
        "hostnames": ["app.localhost"],
        "rules": [
            {"matches": [{"path": {"type": "PathPrefix", "value": "/"}, "headers": [{"name": "X-Canary", "value": "1"}]},
                         {"path": {"type": "PathPrefix", "value": "/"}, "method": "DELETE"}],
             "filters": [alice_only.clone(),
                         {"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "X-Via", "value": "gateway"}]}}],
             "backendRefs": [{"name": "canary", "port": 80}]},
            {"matches": [{"path": {"type": "PathPrefix", "value": "/old"}}],
             "filters": [alice_only.clone(),
                         {"type": "RequestRedirect", "requestRedirect": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"}}}]},
            {"matches": [{"path": default_path}],
             "filters": [alice_only,
                         {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"add": [{"name": "X-Served-By", "value": "rampart"}]}}],
             "backendRefs": [{"name": "main", "port": 80}]}
        ]}})
}

/// A browser-like client: cookies, no automatic redirects, every test host on the proxy.
struct Browser {
    client: reqwest::Client,
}

impl Browser {
    fn new(port: u16) -> Browser {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .cookie_store(true)
            .danger_accept_invalid_certs(true)
            .resolve("app.localhost", addr)
            .resolve("authenticate.localhost", addr)
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        Browser { client }
    }

    /// Follows redirects; fills the OP login form as `user` when it shows up.
    async fn run(
        &self,
        mut req: reqwest::RequestBuilder,
        user: &str,
    ) -> (StatusCode, reqwest::header::HeaderMap, String) {
        for _ in 0..30 {
            let resp = req
                .header("accept", "text/html,*/*;q=0.8")
                .send()
                .await
                .unwrap();
            let url = resp.url().clone();
            let status = resp.status();
            if status.is_redirection() {
                let loc = resp.headers()["location"].to_str().unwrap().to_string();
                let next = url.join(&loc).unwrap();
                req = self.client.get(next);
                continue;
            }
            if url.path().starts_with("/interaction/") {
                req = self.client.post(url).form(&[
                    ("prompt", "login"),
                    ("login", user),
                    ("password", "x"),
                ]);
                continue;
            }
            let headers = resp.headers().clone();
            return (status, headers, resp.text().await.unwrap_or_default());
        }
        panic!("too many redirects");
    }
}

async fn eventually<F: FnMut() -> bool>(what: &str, mut f: F) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn condition(conds: &Value, t: &str) -> Option<(String, String)> {
    let c = conds.as_array()?.iter().find(|c| c["type"] == t)?;
    Some((
        c["status"].as_str()?.to_string(),
        c["reason"].as_str()?.to_string(),
    ))
}

#[actix_rt::test]
async fn gateway_httproute_policy_filter_with_real_sign_in() {
    let main = Upstream::start("main");
    let canary = Upstream::start("canary");
    let port = free_port();
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new("test ca");
    let (op_cert, op_key) = ca.leaf(&["127.0.0.1"]).write(tmp.path(), "op");
    let (op, issuer) = OpBuilder::new(&format!(
        "https://authenticate.localhost:{port}/oauth2/callback"
    ))
    .tls(&op_cert, &op_key)
    .auto_consent()
    .start();

    let kube = FakeKube::start();
    kube.apply(bootstrap_secret());
    kube.apply(idp_secret());
    kube.apply(ca_secret("ca", &ca.pem));
    kube.apply(json!({"apiVersion": "ingress.pomerium.io/v1", "kind": "Pomerium", "metadata": {"name": "global"},
        "spec": {"secrets": "pomerium/bootstrap",
                 "authenticate": {"url": format!("https://authenticate.localhost:{port}")},
                 "identityProvider": {"provider": "oidc", "url": issuer, "secret": "pomerium/idp",
                                      "scopes": ["openid", "email", "profile", "groups"]},
                 "caSecrets": ["pomerium/ca"]}}));
    kube.apply(service("main", main.addr.port()));
    kube.apply(slice("main", main.addr.port()));
    kube.apply(service("canary", canary.addr.port()));
    kube.apply(slice("canary", canary.addr.port()));
    let app_cert = rcgen::generate_simple_self_signed(vec!["app.localhost".to_string()]).unwrap();
    kube.apply(json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "app-tls", "namespace": "default"},
        "data": {"tls.crt": b64(app_cert.cert.pem().as_bytes()), "tls.key": b64(app_cert.key_pair.serialize_pem().as_bytes())}}));
    kube.apply(
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
        "metadata": {"name": "pomerium", "generation": 1},
        "spec": {"controllerName": "pomerium.io/gateway-controller"}}),
    );
    kube.apply(
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": "default", "generation": 1},
        "spec": {"gatewayClassName": "pomerium", "listeners": [
            {"name": "https", "protocol": "HTTPS", "port": 443, "hostname": "*.localhost",
             "tls": {"certificateRefs": [{"name": "app-tls"}]}}]}}),
    );
    kube.apply(
        json!({"apiVersion": "gateway.pomerium.io/v1alpha1", "kind": "PolicyFilter",
        "metadata": {"name": "alice-only", "namespace": "default"},
        "spec": {"ppl": "allow:\n  and:\n    - email:\n        is: alice@example.com\n"}}),
    );
    kube.apply(http_route(false));

    let a = serving_controller_args(&kube, port, &["--gateway-api"]);
    let running = rampart::controller::start(&a).await.unwrap();
    let app = format!("https://app.localhost:{port}");

    // Wait for the route: an anonymous request is sent to sign in.
    let anon = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .danger_accept_invalid_certs(true)
        .resolve(
            "app.localhost",
            std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        )
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = anon.get(format!("{app}/")).send().await;
        if matches!(&r, Ok(r) if r.status().is_redirection()) {
            break;
        }
        assert!(Instant::now() < deadline, "route never served: {r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // alice signs in through the OP and reaches `main` (the default rule).
    let alice = Browser::new(port);
    let (status, headers, body) = alice
        .run(
            alice.client.get(format!("{app}/hello")),
            "alice@example.com",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let echo: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echo["upstream"], "main");
    assert_eq!(echo["uri"], "/hello");
    assert_eq!(
        headers.get("x-served-by").map(|v| v.to_str().unwrap()),
        Some("rampart")
    );
    // Header match → canary, with the request header filter applied.
    let (status, _, body) = alice
        .run(
            alice.client.get(format!("{app}/x")).header("X-Canary", "1"),
            "alice@example.com",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let echo: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echo["upstream"], "canary");
    assert_eq!(echo["headers"]["x-via"][0], "gateway");
    // Method match → canary.
    let (status, _, body) = alice
        .run(
            alice.client.delete(format!("{app}/item")),
            "alice@example.com",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let echo: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (echo["upstream"].as_str(), echo["method"].as_str()),
        (Some("canary"), Some("DELETE"))
    );

    // RequestRedirect: the signed-in user gets the redirect, no backend is involved.
    let r = alice
        .client
        .get(format!("{app}/old/page?x=1"))
        .send()
        .await
        .unwrap();
    let st = r.status();
    assert_eq!(st, 302, "{:?}", r.text().await);
    assert_eq!(
        r.headers()["location"].to_str().unwrap(),
        format!("https://app.localhost:{port}/new/page?x=1")
    );

    // bob signs in too, but the PolicyFilter keeps him out.
    let bob = Browser::new(port);
    let (status, _, body) = bob
        .run(bob.client.get(format!("{app}/hello")), "bob@example.com")
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(!body.contains("\"upstream\""));

    // Status written by the controller.
    eventually("HTTPRoute status", || {
        kube.get(
            "gateway.networking.k8s.io/v1",
            "HTTPRoute",
            Some("default"),
            "app",
        )
        .is_some_and(|r| {
            let c = &r["status"]["parents"][0]["conditions"];
            condition(c, "Accepted") == Some(("True".into(), "Accepted".into()))
                && condition(c, "ResolvedRefs") == Some(("True".into(), "ResolvedRefs".into()))
                && r["status"]["parents"][0]["controllerName"] == "pomerium.io/gateway-controller"
                && c[0]["lastTransitionTime"].is_string()
        })
    })
    .await;
    eventually("Gateway status", || {
        kube.get(
            "gateway.networking.k8s.io/v1",
            "Gateway",
            Some("default"),
            "gw",
        )
        .is_some_and(|g| {
            condition(&g["status"]["conditions"], "Programmed")
                == Some(("True".into(), "Programmed".into()))
                && g["status"]["listeners"][0]["attachedRoutes"] == 1
        })
    })
    .await;
    eventually("GatewayClass status", || {
        kube.get(
            "gateway.networking.k8s.io/v1",
            "GatewayClass",
            None,
            "pomerium",
        )
        .is_some_and(|c| {
            condition(&c["status"]["conditions"], "Accepted").is_some_and(|a| a.0 == "True")
        })
    })
    .await;
    eventually("Updated event", || {
        kube.events().iter().any(|e| {
            e.regarding_kind == "HTTPRoute" && e.regarding_name == "app" && e.reason == "Updated"
        })
    })
    .await;

    // A bad update: Accepted=False, an UpdateError event, and the last good routes still serve.
    kube.apply(http_route(true));
    eventually("Accepted=False", || {
        kube.get(
            "gateway.networking.k8s.io/v1",
            "HTTPRoute",
            Some("default"),
            "app",
        )
        .is_some_and(|r| {
            condition(&r["status"]["parents"][0]["conditions"], "Accepted")
                == Some(("False".into(), "UnsupportedValue".into()))
        })
    })
    .await;
    eventually("UpdateError event", || {
        kube.events().iter().any(|e| {
            e.regarding_kind == "HTTPRoute"
                && e.regarding_name == "app"
                && e.type_ == "Warning"
                && e.reason == "UpdateError"
                && e.message.contains("invalid regular expression")
        })
    })
    .await;
    let (status, _, body) = alice
        .run(
            alice.client.get(format!("{app}/still")),
            "alice@example.com",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let echo: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echo["upstream"], "main");

    running.stop().await;
    drop(op);
}

#[test]
fn gateway_flags_and_pomerium_alias() {
    let kube_url = "http://127.0.0.1:1";
    let parse = |extra: &[&str]| {
        use clap::Parser;
        #[derive(Parser)]
        struct A {
            #[command(flatten)]
            a: ControllerArgs,
        }
        let mut v = vec!["test", "--kube-api-url", kube_url];
        v.extend_from_slice(extra);
        A::parse_from(v).a.options().unwrap().convert.gateway
    };
    assert_eq!(parse(&[]), None, "off by default");
    let on = parse(&["--experimental-gateway-api"]).expect("Pomerium's flag enables it");
    assert_eq!(on.controller_name, "pomerium.io/gateway-controller");
    let named = parse(&[
        "--gateway-api",
        "--gateway-class-controller-name",
        "example.com/gw",
    ])
    .unwrap();
    assert_eq!(named.controller_name, "example.com/gw");
}
