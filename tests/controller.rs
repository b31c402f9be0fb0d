//! Ingress controller tests: the real controller (actors, kube client, watchers) against a fake
//! API server speaking real HTTP list/watch.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use rampart::actors::k8s_reconciler::Publisher;
use rampart::config::RouteConfig;
use rampart::controller::health::Health;
use rampart::controller::{serve_health, Controller, ControllerArgs};
use serde_json::{json, Value};
use support::fake_kube::{FakeKube, RecordedEvent};
use support::free_port;
use support::k8s::{
    b64, bootstrap_secret, cluster_ip_service, controller_args, ingress_class,
    ready_endpoint_slice, serving_controller_args,
};

async fn eventually<F: FnMut() -> bool>(what: &str, mut f: F) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

fn service(name: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
           "spec": {"ports": [{"port": 80}]}})
}

#[tokio::test]
async fn fake_kube_serves_list_watch_and_writes() {
    let kube = FakeKube::start();
    kube.apply(service("a"));
    let client = kube.client();
    let api: Api<Service> = Api::namespaced(client.clone(), "default");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let s2 = seen.clone();
    let task = tokio::spawn(async move {
        let mut w = watcher(api, watcher::Config::default()).boxed();
        while let Some(ev) = w.next().await {
            let line = match ev {
                Ok(watcher::Event::InitApply(s)) => format!("init {}", s.metadata.name.unwrap()),
                Ok(watcher::Event::Apply(s)) => format!("apply {}", s.metadata.name.unwrap()),
                Ok(watcher::Event::Delete(s)) => format!("delete {}", s.metadata.name.unwrap()),
                Ok(watcher::Event::Init) => "init".into(),
                Ok(watcher::Event::InitDone) => "done".into(),
                Err(e) => format!("error {e}"),
            };
            s2.lock().unwrap().push(line);
        }
    });
    let has = |s: &str| seen.lock().unwrap().iter().any(|l| l == s);
    eventually("initial list", || has("init a") && has("done")).await;
    eventually("watch open", || kube.open_watches("v1", "Service") == 1).await;
    kube.apply(service("b"));
    eventually("apply b", || has("apply b")).await;
    // A clean end of stream: re-watch from the last rv, no re-list.
    let lists = kube.lists("v1", "Service");
    kube.end_watches();
    eventually("rewatch", || {
        kube.watch_starts("v1", "Service") == 2 && kube.open_watches("v1", "Service") == 1
    })
    .await;
    kube.apply(service("c"));
    eventually("apply c", || has("apply c")).await;
    assert_eq!(kube.lists("v1", "Service"), lists);
    // 410 Gone: re-list.
    kube.delete_silently("v1", "Service", Some("default"), "a");
    kube.expire_watches();
    eventually("relist", || kube.lists("v1", "Service") == lists + 1).await;
    eventually("relist done", || {
        seen.lock().unwrap().iter().filter(|l| *l == "done").count() == 2
    })
    .await;
    {
        let s = seen.lock().unwrap();
        let last_init = s.iter().rposition(|l| l == "init").unwrap();
        let after: Vec<_> = s[last_init..].to_vec();
        assert!(
            after.contains(&"init b".to_string()) && !after.contains(&"init a".to_string()),
            "{after:?}"
        );
    }
    // Writes: create conflict, status patch, stale replace, delete with body.
    let api: Api<Service> = Api::namespaced(client.clone(), "default");
    let err = api
        .create(
            &PostParams::default(),
            &serde_json::from_value(service("b")).unwrap(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    let patched = api
        .patch_status(
            "b",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        patched
            .status
            .unwrap()
            .load_balancer
            .unwrap()
            .ingress
            .unwrap()[0]
            .ip
            .as_deref(),
        Some("1.2.3.4")
    );
    let mut stale = api.get("b").await.unwrap();
    stale.metadata.resource_version = Some("1".into());
    let err = api
        .replace("b", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("Conflict") || err.to_string().contains("modified"),
        "{err}"
    );
    api.delete("b", &Default::default()).await.unwrap();
    assert!(api.get("c").await.is_ok());
    eventually("delete b", || has("delete b")).await;
    task.abort();
}

// ---------------------------------------------------------------------------------------------
// Controller tests
// ---------------------------------------------------------------------------------------------

fn pomerium_global() -> Value {
    json!({"apiVersion": "ingress.pomerium.io/v1", "kind": "Pomerium", "metadata": {"name": "global"},
           "spec": {"secrets": "pomerium/bootstrap"}})
}

fn backend_service(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
           "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}})
}

fn endpoint_slice(svc: &str, ip: &str) -> Value {
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
           "metadata": {"name": format!("{svc}-abc"), "namespace": "default", "labels": {"kubernetes.io/service-name": svc}},
           "endpoints": [{"addresses": [ip], "conditions": {"ready": true}}],
           "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]})
}

fn endpoints(svc: &str, ip: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": svc, "namespace": "default"},
           "subsets": [{"addresses": [{"ip": ip}], "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]})
}

fn ingress(name: &str, host: &str, svc: &str) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
           "metadata": {"name": name, "namespace": "default", "annotations": {}},
           "spec": {"ingressClassName": "pomerium", "rules": [{"host": host, "http": {"paths": [
               {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": svc, "port": {"number": 80}}}}]}}]}})
}

fn tls_secret(name: &str, host: &str) -> (Value, String) {
    let ck = rcgen::generate_simple_self_signed(vec![host.to_string()]).unwrap();
    let cert = ck.cert.pem();
    let key = ck.key_pair.serialize_pem();
    let v = json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
           "metadata": {"name": name, "namespace": "default"},
           "data": {"tls.crt": b64(cert.as_bytes()), "tls.key": b64(key.as_bytes())}});
    (v, cert)
}

/// What the controller published, for assertions.
#[derive(Default, Clone)]
struct Published {
    routes: Arc<ArcSwap<Vec<Arc<RouteConfig>>>>,
    route_publishes: Arc<Mutex<usize>>,
    certs: Arc<Mutex<Vec<String>>>,
    settings: Arc<Mutex<usize>>,
}

impl Published {
    fn publisher(&self) -> Publisher {
        let (r, n, c, s) = (
            self.routes.clone(),
            self.route_publishes.clone(),
            self.certs.clone(),
            self.settings.clone(),
        );
        Publisher::default()
            .on_routes(move |routes| {
                r.store(routes);
                *n.lock().unwrap() += 1;
            })
            .on_certificates(move |certs| {
                *c.lock().unwrap() = certs
                    .iter()
                    .map(|t| String::from_utf8_lossy(&t.cert_pem).into_owned())
                    .collect();
            })
            .on_settings(move |_| *s.lock().unwrap() += 1)
    }
    fn froms(&self) -> Vec<String> {
        self.routes.load().iter().map(|r| r.from.clone()).collect()
    }
    fn has_host(&self, host: &str) -> bool {
        self.froms().iter().any(|f| f == &format!("https://{host}"))
    }
}

struct Running {
    kube: FakeKube,
    published: Published,
    health: Health,
    health_addr: std::net::SocketAddr,
    _controller: Controller,
}

fn seed_cluster(kube: &FakeKube) {
    kube.apply(ingress_class());
    kube.apply(bootstrap_secret());
    kube.apply(pomerium_global());
    kube.apply(backend_service("web"));
    kube.apply(endpoint_slice("web", "10.1.0.1"));
}

async fn start(kube: FakeKube, extra: &[&str]) -> Running {
    let a = controller_args(&kube, extra);
    let options = a.options().unwrap();
    let health = Health::default();
    let health_addr = serve_health(a.health_addr().unwrap(), health.clone()).unwrap();
    let published = Published::default();
    let client = a.client().await.unwrap();
    let controller = Controller::start(client, options, published.publisher(), health.clone());
    Running {
        kube,
        published,
        health,
        health_addr,
        _controller: controller,
    }
}

fn find_events<'a>(evs: &'a [RecordedEvent], kind: &str, name: &str) -> Vec<&'a RecordedEvent> {
    evs.iter()
        .filter(|e| e.regarding_kind == kind && e.regarding_name == name)
        .collect()
}

fn has_event(
    kube: &FakeKube,
    kind: &str,
    name: &str,
    type_: &str,
    reason: &str,
    message: &str,
) -> bool {
    let evs = kube.events();
    find_events(&evs, kind, name)
        .iter()
        .any(|e| e.type_ == type_ && e.reason == reason && e.message == message)
}

fn crd_status(kube: &FakeKube) -> Value {
    kube.get("ingress.pomerium.io/v1", "Pomerium", None, "global")
        .map(|p| p["status"].clone())
        .unwrap_or(Value::Null)
}

#[actix_rt::test]
async fn ingress_create_update_delete_publishes_routes_events_and_status() {
    let kube = FakeKube::start();
    seed_cluster(&kube);
    kube.apply(ingress("a", "a.example.com", "web"));
    let r = start(kube, &[]).await;
    let (kube, published) = (&r.kube, &r.published);

    eventually("initial routes", || published.has_host("a.example.com")).await;
    assert_eq!(
        *published.route_publishes.lock().unwrap(),
        1,
        "initial sync publishes once"
    );
    let route = published
        .routes
        .load()
        .iter()
        .find(|r| r.from == "https://a.example.com")
        .cloned()
        .unwrap();
    assert_eq!(
        route.to.as_ref().unwrap().to_vec(),
        vec!["http://10.1.0.1:8080".to_string()]
    );
    eventually("Updated event on ingress a", || {
        has_event(kube, "Ingress", "a", "Normal", "Updated", "config updated")
    })
    .await;
    eventually("Updated event on Pomerium", || {
        has_event(
            kube,
            "Pomerium",
            "global",
            "Normal",
            "Updated",
            "default/a: config updated",
        )
    })
    .await;
    let ev = kube
        .events()
        .into_iter()
        .find(|e| e.regarding_name == "a")
        .unwrap();
    assert_eq!(ev.reporting_controller, "pomerium-ingress");
    assert_eq!(ev.api_version, "events.k8s.io/v1");
    assert_eq!(ev.regarding_namespace.as_deref(), Some("default"));
    eventually("CRD status entry for a", || {
        crd_status(kube)["ingress"]["default/a"]["reconciled"] == json!(true)
    })
    .await;
    let st = crd_status(kube);
    assert_eq!(st["ingress"]["default/a"]["observedGeneration"], json!(1));
    assert!(st["ingress"]["default/a"]["observedAt"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    eventually("settings status", || {
        crd_status(kube)["settingsStatus"]["reconciled"] == json!(true)
    })
    .await;
    assert!(*published.settings.lock().unwrap() >= 1);
    // No storage in the Pomerium object: the upstream warning, as event and in the status.
    let warning = "storage: please specify a persistent storage backend, please see https://www.pomerium.com/docs/internals/data-storage";
    eventually("Validation warning event", || {
        has_event(kube, "Pomerium", "global", "Warning", "Validation", warning)
    })
    .await;
    assert_eq!(
        crd_status(kube)["settingsStatus"]["warnings"],
        json!([warning])
    );
    assert!(has_event(
        kube,
        "Pomerium",
        "global",
        "Normal",
        "Updated",
        "config updated"
    ));

    // Create.
    kube.apply(ingress("b", "b.example.com", "web"));
    eventually("route for b", || published.has_host("b.example.com")).await;
    assert!(published.has_host("a.example.com"));
    eventually("Updated event on b", || {
        has_event(kube, "Ingress", "b", "Normal", "Updated", "config updated")
    })
    .await;

    // Update: new host replaces the old one.
    kube.apply(ingress("b", "b2.example.com", "web"));
    eventually("b moved to b2", || {
        published.has_host("b2.example.com") && !published.has_host("b.example.com")
    })
    .await;
    eventually("generation 2 in status", || {
        crd_status(kube)["ingress"]["default/b"]["observedGeneration"] == json!(2)
    })
    .await;

    // Endpoint change rewrites `to`.
    kube.apply(endpoint_slice("web", "10.1.0.2"));
    eventually("new endpoint", || {
        published.routes.load().iter().any(|r| {
            r.from == "https://a.example.com"
                && r.to.as_ref().unwrap().to_vec() == vec!["http://10.1.0.2:8080".to_string()]
        })
    })
    .await;

    // Delete.
    assert!(kube.delete("networking.k8s.io/v1", "Ingress", Some("default"), "b"));
    eventually("b gone", || !published.has_host("b2.example.com")).await;
    assert!(published.has_host("a.example.com"));
    eventually("deleted event", || {
        has_event(
            kube,
            "Pomerium",
            "global",
            "Normal",
            "Updated",
            "default/b: deleted: Ingress resource was deleted",
        )
    })
    .await;
    eventually("status entry removed", || {
        crd_status(kube)["ingress"].get("default/b").is_none()
    })
    .await;
    assert_eq!(
        crd_status(kube)["ingress"]["default/a"]["reconciled"],
        json!(true)
    );
    // Status writes go to the status subresource as merge patches.
    assert!(kube.requests().iter().any(|q| q.method == "PATCH"
        && q.path == "/apis/ingress.pomerium.io/v1/pomerium/global/status"
        && q.content_type.starts_with("application/merge-patch+json")));
}

#[actix_rt::test]
async fn broken_ingress_is_rejected_alone() {
    let kube = FakeKube::start();
    seed_cluster(&kube);
    kube.apply(ingress("good", "good.example.com", "web"));
    let r = start(kube, &[]).await;
    let (kube, published) = (&r.kube, &r.published);
    eventually("good route", || published.has_host("good.example.com")).await;

    let mut bad = ingress("bad", "bad.example.com", "web");
    bad["metadata"]["annotations"]["ingress.pomerium.io/foo"] = json!("x");
    kube.apply(bad);
    let text = "parsing ingress: annotations: unknown ingress.pomerium.io/foo";
    eventually("UpdateError on bad", || {
        has_event(kube, "Ingress", "bad", "Warning", "UpdateError", text)
    })
    .await;
    eventually("Pomerium UpdateError", || {
        has_event(
            kube,
            "Pomerium",
            "global",
            "Warning",
            "UpdateError",
            &format!("default/bad: {text}"),
        )
    })
    .await;
    eventually("status error", || {
        crd_status(kube)["ingress"]["default/bad"]["error"] == json!(text)
    })
    .await;
    assert_eq!(
        crd_status(kube)["ingress"]["default/bad"]["reconciled"],
        json!(false)
    );
    assert!(published.has_host("good.example.com"));
    assert!(!published.has_host("bad.example.com"));

    // A broken update keeps the Ingress's last good routes.
    let mut good = ingress("good", "good.example.com", "web");
    good["metadata"]["annotations"]["ingress.pomerium.io/foo"] = json!("x");
    kube.apply(good);
    eventually("UpdateError on good", || {
        has_event(kube, "Ingress", "good", "Warning", "UpdateError", text)
    })
    .await;
    assert!(published.has_host("good.example.com"));

    // A missing backend Service names the culprit.
    kube.apply(ingress("nosvc", "nosvc.example.com", "missing"));
    eventually("missing service error", || {
        kube.events().iter().any(|e| {
            e.regarding_name == "nosvc"
                && e.type_ == "Warning"
                && e.message.contains("Service \"missing\" not found")
        })
    })
    .await;
    assert!(published.has_host("good.example.com"));
    // A TCP route: rejected with a clear "not supported yet" (issue 11 item 5).
    let mut tcp = ingress("tcp", "db.example.com", "web");
    tcp["metadata"]["annotations"]["ingress.pomerium.io/tcp_upstream"] = json!("true");
    tcp["spec"]["rules"][0]["http"]["paths"][0] = json!({"pathType": "ImplementationSpecific", "backend": {"service": {"name": "web", "port": {"number": 80}}}});
    kube.apply(tcp);
    eventually("tcp route error", || {
        crd_status(kube)["ingress"]["default/tcp"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("TCP and UDP routes (tcp+https://, udp+https://; the tcp_upstream and udp_upstream annotations) are not supported by rampart yet"))
    })
    .await;
    assert!(published.has_host("good.example.com"));
}

#[actix_rt::test]
async fn secret_rotation_publishes_new_certificate() {
    let kube = FakeKube::start();
    seed_cluster(&kube);
    let (secret, cert1) = tls_secret("a-tls", "a.example.com");
    kube.apply(secret);
    let mut ing = ingress("a", "a.example.com", "web");
    ing["spec"]["tls"] = json!([{"hosts": ["a.example.com"], "secretName": "a-tls"}]);
    kube.apply(ing);
    let r = start(kube, &[]).await;
    let (kube, published) = (&r.kube, &r.published);
    eventually("first cert", || {
        published.certs.lock().unwrap().contains(&cert1)
    })
    .await;

    let (secret, cert2) = tls_secret("a-tls", "a.example.com");
    assert_ne!(cert1, cert2);
    kube.apply(secret);
    eventually("rotated cert", || {
        let c = published.certs.lock().unwrap();
        c.contains(&cert2) && !c.contains(&cert1)
    })
    .await;
    assert!(published.has_host("a.example.com"));
}

#[actix_rt::test]
async fn watches_recover_from_dropped_streams_and_410_gone() {
    let kube = FakeKube::start();
    seed_cluster(&kube);
    kube.apply(ingress("a", "a.example.com", "web"));
    let r = start(kube, &[]).await;
    let (kube, published) = (&r.kube, &r.published);
    eventually("initial", || published.has_host("a.example.com")).await;
    let ing = |k: &FakeKube| k.open_watches("networking.k8s.io/v1", "Ingress");
    eventually("ingress watch open", || ing(kube) == 1).await;

    // Clean end of stream: re-watch from the last resourceVersion, no re-list.
    let lists = kube.lists("networking.k8s.io/v1", "Ingress");
    let starts = kube.watch_starts("networking.k8s.io/v1", "Ingress");
    kube.end_watches();
    eventually("re-watch", || {
        kube.watch_starts("networking.k8s.io/v1", "Ingress") > starts && ing(kube) == 1
    })
    .await;
    kube.apply(ingress("b", "b.example.com", "web"));
    eventually("b after re-watch", || published.has_host("b.example.com")).await;
    assert_eq!(kube.lists("networking.k8s.io/v1", "Ingress"), lists);

    // Aborted connection: same recovery.
    kube.abort_watches();
    kube.apply(ingress("c", "c.example.com", "web"));
    eventually("c after abort", || published.has_host("c.example.com")).await;

    // 410 Gone: a re-list, which also notices a delete the watch never delivered.
    eventually("ingress watch open again", || ing(kube) == 1).await;
    let lists = kube.lists("networking.k8s.io/v1", "Ingress");
    assert!(kube.delete_silently("networking.k8s.io/v1", "Ingress", Some("default"), "a"));
    kube.expire_watches();
    eventually("re-list", || {
        kube.lists("networking.k8s.io/v1", "Ingress") > lists
    })
    .await;
    eventually("a removed after re-list", || {
        !published.has_host("a.example.com")
    })
    .await;
    assert!(published.has_host("b.example.com") && published.has_host("c.example.com"));
    eventually("deleted event for a", || {
        has_event(
            kube,
            "Pomerium",
            "global",
            "Normal",
            "Updated",
            "default/a: deleted: Ingress resource was deleted",
        )
    })
    .await;
    // Unchanged objects are not re-reported after the re-list.
    let updated_b = |k: &FakeKube| {
        k.events()
            .iter()
            .filter(|e| e.regarding_name == "b" && e.regarding_kind == "Ingress")
            .map(|e| e.count)
            .sum::<i64>()
    };
    let before = updated_b(kube);
    kube.apply(ingress("d", "d.example.com", "web"));
    eventually("d", || published.has_host("d.example.com")).await;
    assert_eq!(updated_b(kube), before);
}

/// Issue 11 item 3: after an API server outage of several seconds, a change made once it is back
/// is served within 2 s (kube-runtime's default backoff had grown to tens of seconds).
#[actix_rt::test]
async fn changes_after_an_api_server_restart_are_served_within_two_seconds() {
    let kube = FakeKube::start();
    seed_cluster(&kube);
    kube.apply(ingress("a", "a.example.com", "web"));
    let mut r = start(kube, &[]).await;
    eventually("initial", || r.published.has_host("a.example.com")).await;
    eventually("ingress watch open", || {
        r.kube.open_watches("networking.k8s.io/v1", "Ingress") == 1
    })
    .await;

    r.kube.stop();
    tokio::time::sleep(Duration::from_secs(8)).await;
    r.kube.restart();
    let back = std::time::Instant::now();
    r.kube.apply(ingress("b", "b.example.com", "web"));
    eventually("b after the restart", || {
        r.published.has_host("b.example.com")
    })
    .await;
    let took = back.elapsed();
    eprintln!("served {took:?} after the API server came back");
    assert!(
        took < Duration::from_secs(2),
        "served {took:?} after the API server came back"
    );
    assert!(r.published.has_host("a.example.com"));
}

async fn get_status(addr: std::net::SocketAddr, path: &str) -> (u16, Value) {
    let resp = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

#[actix_rt::test]
async fn startupz_waits_for_the_pomerium_object() {
    let kube = FakeKube::start();
    kube.apply(ingress_class());
    kube.apply(backend_service("web"));
    kube.apply(endpoint_slice("web", "10.1.0.1"));
    kube.apply(ingress("a", "a.example.com", "web"));
    let r = start(kube, &[]).await;
    let (kube, published) = (&r.kube, &r.published);
    // Ingresses sync without the CRD, but startup is not complete.
    eventually("routes without CRD", || published.has_host("a.example.com")).await;
    let (code, body) = get_status(r.health_addr, "/startupz").await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(
        body["controller.settings.reconciler.bootstrap"]["status"],
        "UNKNOWN"
    );
    assert_eq!(get_status(r.health_addr, "/readyz").await.0, 503);

    // The CRD arrives, its bootstrap Secret does not exist yet: an error, still not ready.
    kube.apply(pomerium_global());
    eventually("bootstrap error", || {
        matches!(
            r.health.get("controller.settings.reconciler.bootstrap"),
            rampart::controller::health::CheckState::Error(_)
        )
    })
    .await;
    let (code, body) = get_status(r.health_addr, "/readyz").await;
    assert_eq!(code, 503);
    let err = body["controller.settings.reconciler.bootstrap"]["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(err.contains("bootstrap"), "{err}");
    eventually("settings error in CRD status", || {
        crd_status(kube)["settingsStatus"]["reconciled"] == json!(false)
    })
    .await;

    kube.apply(bootstrap_secret());
    eventually("started", || r.health.started() && r.health.ready()).await;
    for p in ["/startupz", "/readyz", "/healthz"] {
        let (code, body) = get_status(r.health_addr, p).await;
        assert_eq!(code, 200, "{p}: {body}");
    }
    let resp = reqwest::Client::new()
        .post(format!("http://{}/startupz", r.health_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    eventually("settings ok in CRD status", || {
        crd_status(kube)["settingsStatus"]["reconciled"] == json!(true)
    })
    .await;
}

#[actix_rt::test]
async fn ingress_load_balancer_status_from_service() {
    let kube = FakeKube::start();
    seed_cluster(&kube);
    kube.apply(ingress("a", "a.example.com", "web"));
    let r = start(
        kube,
        &["--update-status-from-service", "pomerium/pomerium-proxy"],
    )
    .await;
    let (kube, published) = (&r.kube, &r.published);
    eventually("routes", || published.has_host("a.example.com")).await;
    let text = "update ingress status: get pomerium-proxy service pomerium/pomerium-proxy: Service \"pomerium-proxy\" not found";
    eventually("missing service error", || {
        has_event(kube, "Ingress", "a", "Warning", "UpdateError", text)
    })
    .await;

    kube.apply(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "pomerium-proxy", "namespace": "pomerium"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 443}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}}));
    let lb = |k: &FakeKube| {
        k.get("networking.k8s.io/v1", "Ingress", Some("default"), "a")
            .map(|i| i["status"]["loadBalancer"]["ingress"][0]["ip"].clone())
    };
    eventually("lb status", || lb(kube) == Some(json!("203.0.113.7"))).await;
    kube.apply(ingress("b", "b.example.com", "web"));
    eventually("lb status on new ingress", || {
        kube.get("networking.k8s.io/v1", "Ingress", Some("default"), "b")
            .is_some_and(|i| {
                i["status"]["loadBalancer"]["ingress"][0]["ip"] == json!("203.0.113.7")
            })
    })
    .await;
}

#[actix_rt::test]
async fn endpoints_fallback_flag_uses_endpoints() {
    let kube = FakeKube::start();
    kube.apply(ingress_class());
    kube.apply(bootstrap_secret());
    kube.apply(pomerium_global());
    kube.apply(backend_service("web"));
    kube.apply(endpoints("web", "10.2.0.1"));
    kube.apply(ingress("a", "a.example.com", "web"));
    let r = start(kube, &["--use-endpoints"]).await;
    let published = &r.published;
    eventually("route via Endpoints", || {
        published.routes.load().iter().any(|r| {
            r.from == "https://a.example.com"
                && r.to.as_ref().unwrap().to_vec() == vec!["http://10.2.0.1:8080".to_string()]
        })
    })
    .await;
    assert_eq!(r.kube.lists("discovery.k8s.io/v1", "EndpointSlice"), 0);
}

#[actix_rt::test]
async fn endpoint_slices_not_served_fall_back_to_endpoints() {
    let kube = FakeKube::start();
    kube.unserve("discovery.k8s.io/v1", "EndpointSlice");
    kube.apply(ingress_class());
    kube.apply(bootstrap_secret());
    kube.apply(pomerium_global());
    kube.apply(backend_service("web"));
    kube.apply(endpoints("web", "10.3.0.1"));
    kube.apply(ingress("a", "a.example.com", "web"));
    let r = start(kube, &[]).await;
    let published = &r.published;
    eventually("route via fallback Endpoints", || {
        published.routes.load().iter().any(|r| {
            r.from == "https://a.example.com"
                && r.to.as_ref().unwrap().to_vec() == vec!["http://10.3.0.1:8080".to_string()]
        })
    })
    .await;
    r.kube.apply(endpoints("web", "10.3.0.2"));
    eventually("endpoints update", || {
        published.routes.load().iter().any(|r| {
            r.from == "https://a.example.com"
                && r.to.as_ref().unwrap().to_vec() == vec!["http://10.3.0.2:8080".to_string()]
        })
    })
    .await;
}

/// The same fallback with `--namespaces`: one Endpoints watcher per namespace.
#[actix_rt::test]
async fn endpoint_slices_not_served_fall_back_per_namespace() {
    let kube = FakeKube::start();
    kube.unserve("discovery.k8s.io/v1", "EndpointSlice");
    kube.apply(ingress_class());
    kube.apply(bootstrap_secret());
    kube.apply(pomerium_global());
    kube.apply(backend_service("web"));
    kube.apply(endpoints("web", "10.3.0.1"));
    kube.apply(ingress("a", "a.example.com", "web"));
    let r = start(
        kube,
        &["--namespaces", "default,b", "--pod-namespace", "pomerium"],
    )
    .await;
    let published = &r.published;
    eventually("route via fallback Endpoints", || {
        published.routes.load().iter().any(|r| {
            r.from == "https://a.example.com"
                && r.to.as_ref().unwrap().to_vec() == vec!["http://10.3.0.1:8080".to_string()]
        })
    })
    .await;
    let paths: Vec<String> = r.kube.requests().into_iter().map(|q| q.path).collect();
    for p in [
        "/api/v1/namespaces/default/endpoints",
        "/api/v1/namespaces/b/endpoints",
    ] {
        assert!(paths.iter().any(|x| x == p), "{p} not watched: {paths:?}");
    }
    assert!(!paths.iter().any(|x| x == "/api/v1/endpoints"));
}

#[test]
fn controller_flags_and_env() {
    use clap::Parser;
    #[derive(Parser)]
    struct A {
        #[command(flatten)]
        a: ControllerArgs,
    }
    let a = A::parse_from(["t"]).a;
    assert_eq!(a.pomerium_config, "global");
    assert_eq!(a.name, "pomerium.io/ingress-controller");
    assert_eq!(a.prefix, "ingress.pomerium.io");
    assert_eq!(a.health_probe_bind_address, "127.0.0.1:28080");
    let a = A::parse_from(["t", "--pomerium-config", "a/b"]).a;
    assert_eq!(
        a.options().unwrap_err().to_string(),
        "--pomerium-config: expected cluster-scoped name"
    );
    let a = A::parse_from([
        "t",
        "--namespaces",
        "x,y",
        "--update-status-from-service",
        "pomerium/pomerium-proxy",
    ])
    .a;
    let o = a.options().unwrap();
    assert_eq!(o.convert.namespaces, vec!["x".to_string(), "y".to_string()]);
    assert_eq!(
        o.status_service,
        Some(("pomerium".into(), "pomerium-proxy".into()))
    );
    assert!(A::parse_from(["t", "--update-status-from-service", "nope"])
        .a
        .options()
        .is_err());
    assert!(A::try_parse_from(["t", "--disable-cert-check"]).is_ok());
}

/// GET through the proxy with SNI/Host `host`; returns status, body and the served leaf cert.
async fn via_proxy(port: u16, host: &str, path: &str) -> Option<(u16, String, Vec<u8>)> {
    let client = reqwest::Client::builder()
        .resolve(host, std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .danger_accept_invalid_certs(true)
        .tls_info(true)
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let resp = client
        .get(format!("https://{host}:{port}{path}"))
        .send()
        .await
        .ok()?;
    let cert = resp
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|t| t.peer_certificate().map(|c| c.to_vec()))
        .unwrap_or_default();
    let code = resp.status().as_u16();
    Some((code, resp.text().await.unwrap_or_default(), cert))
}

#[actix_rt::test]
async fn traffic_flows_through_the_proxy_and_follows_the_cluster() {
    use actix_web::{web, App, HttpServer};
    let backend =
        HttpServer::new(|| App::new().default_service(web::to(|| async { "hello from backend" })))
            .workers(1)
            .bind(("127.0.0.1", 0))
            .unwrap();
    let backend_port = backend.addrs()[0].port();
    actix_rt::spawn(backend.run());

    let kube = FakeKube::start();
    kube.apply(ingress_class());
    kube.apply(bootstrap_secret());
    kube.apply(pomerium_global());
    kube.apply(cluster_ip_service("app", "10.96.0.20", 80, backend_port));
    kube.apply(ready_endpoint_slice(
        "app",
        "app-1",
        &["127.0.0.1"],
        backend_port,
    ));
    let ck1 = rcgen::generate_simple_self_signed(vec!["app.example.com".to_string()]).unwrap();
    let tls = |ck: &rcgen::CertifiedKey| {
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
               "metadata": {"name": "app-tls", "namespace": "default"},
               "data": {"tls.crt": b64(ck.cert.pem().as_bytes()), "tls.key": b64(ck.key_pair.serialize_pem().as_bytes())}})
    };
    kube.apply(tls(&ck1));
    let mut ing = ingress("app", "app.example.com", "app");
    ing["metadata"]["annotations"]["ingress.pomerium.io/allow_public_unauthenticated_access"] =
        json!("true");
    ing["spec"]["tls"] = json!([{"hosts": ["app.example.com"], "secretName": "app-tls"}]);
    kube.apply(ing.clone());
    // A global certificate from the `Pomerium` object, for a host no Ingress has.
    let crd_cert = rcgen::generate_simple_self_signed(vec!["crd.example.com".to_string()]).unwrap();
    let mut crd_secret = tls(&crd_cert);
    crd_secret["metadata"] = json!({"name": "global-tls", "namespace": "pomerium"});
    kube.apply(crd_secret);
    let mut pom = pomerium_global();
    pom["spec"]["certificates"] = json!(["pomerium/global-tls"]);
    kube.apply(pom);

    let port = free_port();
    let a = serving_controller_args(&kube, port, &[]);
    let running = rampart::controller::start(&a).await.unwrap();

    // Routes and the Ingress certificate reach the proxy.
    let mut last = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        last = via_proxy(port, "app.example.com", "/hello").await;
        if matches!(&last, Some((200, body, cert)) if body == "hello from backend" && cert == ck1.cert.der().as_ref())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, body, cert) = last.expect("proxy answered");
    assert_eq!((code, body.as_str()), (200, "hello from backend"));
    assert_eq!(
        cert,
        ck1.cert.der().to_vec(),
        "the Ingress TLS Secret is served"
    );
    let mut crd_served = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline && !crd_served {
        crd_served = matches!(via_proxy(port, "crd.example.com", "/").await, Some((404, _, c)) if c == crd_cert.cert.der().as_ref());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        crd_served,
        "the Pomerium object's certificate is served (no route: 404)"
    );

    // Without the public annotation the sign-in authorizer answers, not the upstream.
    kube.apply(ingress("private", "private.example.com", "app"));
    let mut private = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        private = via_proxy(port, "private.example.com", "/").await;
        if matches!(&private, Some((c, _, _)) if *c != 404) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, body, _) = private.unwrap();
    assert!(
        code != 200 && code != 404 && body != "hello from backend",
        "{code} {body}"
    );

    // Rotating the Secret changes the served certificate on new connections.
    let ck2 = rcgen::generate_simple_self_signed(vec!["app.example.com".to_string()]).unwrap();
    kube.apply(tls(&ck2));
    let mut rotated = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline && !rotated {
        rotated = matches!(via_proxy(port, "app.example.com", "/").await, Some((200, _, c)) if c == ck2.cert.der().as_ref());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(rotated, "rotated certificate served");

    // A broken update keeps serving the last good routes.
    let mut broken = ing.clone();
    broken["metadata"]["annotations"]["ingress.pomerium.io/foo"] = json!("x");
    kube.apply(broken);
    eventually("UpdateError", || {
        has_event(
            &kube,
            "Ingress",
            "app",
            "Warning",
            "UpdateError",
            "parsing ingress: annotations: unknown ingress.pomerium.io/foo",
        )
    })
    .await;
    assert_eq!(
        via_proxy(port, "app.example.com", "/").await.map(|r| r.0),
        Some(200)
    );

    // Deleting the Ingress stops the traffic.
    kube.delete("networking.k8s.io/v1", "Ingress", Some("default"), "app");
    let mut stopped = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline && !stopped {
        stopped = matches!(
            via_proxy(port, "app.example.com", "/").await,
            Some((404, _, _))
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(stopped, "route removed from the proxy");
    running.stop().await;
}

#[actix_rt::test]
async fn the_binary_runs_with_env_configuration_and_stops_on_sigterm() {
    let kube = FakeKube::start();
    kube.apply(ingress_class());
    kube.apply(bootstrap_secret());
    let mut p = pomerium_global();
    p["metadata"]["name"] = json!("from-env");
    kube.apply(p);
    let health = free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rampart"))
        .arg("controller")
        .env("KUBE_API_URL", kube.url())
        .env("POMERIUM_CONFIG", "from-env")
        .env("HEALTH_PROBE_BIND_ADDRESS", format!("127.0.0.1:{health}"))
        .env("SERVER_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("HTTP_REDIRECT_ADDR", "")
        .env("PROXY_WORKERS", "1")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], health));
    let mut started = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline && !started {
        if let Ok(resp) = reqwest::get(format!("http://{addr}/startupz")).await {
            started = resp.status().as_u16() == 200;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        started,
        "/startupz turned 200 with the Pomerium object named by $POMERIUM_CONFIG"
    );
    assert!(kube
        .requests()
        .iter()
        .any(|q| q.path == "/apis/ingress.pomerium.io/v1/pomerium"
            && q.query.contains("metadata.name%3Dfrom-env")));
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "controller did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");
}

#[actix_rt::test]
async fn only_the_leader_writes_events_and_status() {
    use rampart::actors::k8s_leader::Release;
    let kube = FakeKube::start();
    seed_cluster(&kube);
    kube.apply(ingress("a", "a.example.com", "web"));
    let timing = [
        "--leader-elect",
        "--leader-election-namespace",
        "pomerium",
        "--leader-election-lease-duration",
        "1",
        "--leader-election-renew-period",
        "0.2",
        "--leader-election-retry-period",
        "0.1",
    ];
    let start_one = |pod: &str| {
        let mut extra: Vec<&str> = timing.to_vec();
        extra.extend(["--pod-name", pod]);
        let a = controller_args(&kube, &extra);
        let published = Published::default();
        let health = Health::default();
        let options = a.options().unwrap();
        let client = kube.client();
        let c = Controller::start(client, options, published.publisher(), health);
        (c, published)
    };
    let holder = |k: &FakeKube| {
        k.get(
            "coordination.k8s.io/v1",
            "Lease",
            Some("pomerium"),
            "rampart-controller",
        )
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
        .unwrap_or_default()
    };
    let (ca, pa) = start_one("pod-a");
    eventually("a leads", || holder(&kube).starts_with("pod-a_")).await;
    let (_cb, pb) = start_one("pod-b");
    // Every replica serves traffic.
    eventually("both publish routes", || {
        pa.has_host("a.example.com") && pb.has_host("a.example.com")
    })
    .await;
    let by = |k: &FakeKube, instance: &str, ingress: &str| {
        k.events()
            .iter()
            .filter(|e| e.reporting_instance == instance && e.regarding_name == ingress)
            .count()
    };
    eventually("leader's event for a", || by(&kube, "pod-a", "a") >= 1).await;
    kube.apply(ingress("b", "b.example.com", "web"));
    eventually("b everywhere", || {
        pa.has_host("b.example.com") && pb.has_host("b.example.com")
    })
    .await;
    eventually("leader's event for b", || by(&kube, "pod-a", "b") >= 1).await;
    // Give the follower time to (wrongly) write.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        kube.events()
            .iter()
            .all(|e| e.reporting_instance != "pod-b"),
        "the follower wrote events"
    );
    assert!(
        holder(&kube).starts_with("pod-a_"),
        "the leader keeps renewing"
    );

    // The leader steps down; the other replica takes over and reports the current state.
    ca.leader.as_ref().unwrap().send(Release).await.unwrap();
    eventually("b leads", || holder(&kube).starts_with("pod-b_")).await;
    eventually("new leader reports a and b", || {
        by(&kube, "pod-b", "a") >= 1 && by(&kube, "pod-b", "b") >= 1
    })
    .await;
    kube.apply(ingress("c", "c.example.com", "web"));
    eventually("new leader's event for c", || by(&kube, "pod-b", "c") >= 1).await;
    eventually("c everywhere", || {
        pa.has_host("c.example.com") && pb.has_host("c.example.com")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        by(&kube, "pod-a", "c"),
        0,
        "the old leader wrote after stepping down"
    );
    let lease = kube
        .get(
            "coordination.k8s.io/v1",
            "Lease",
            Some("pomerium"),
            "rampart-controller",
        )
        .unwrap();
    assert_eq!(lease["spec"]["leaseTransitions"], json!(1));
}

#[actix_rt::test]
async fn settings_the_proxy_cannot_use_are_reported_and_the_last_good_kept() {
    let kube = FakeKube::start();
    seed_cluster(&kube);
    let r = start(kube, &[]).await;
    let (kube, published) = (&r.kube, &r.published);
    eventually("settings ok", || {
        crd_status(kube)["settingsStatus"]["reconciled"] == json!(true)
    })
    .await;
    let applied = *published.settings.lock().unwrap();
    let mut bad = pomerium_global();
    bad["spec"]["setResponseHeaders"] = json!({"bad header": "x"});
    kube.apply(bad);
    eventually("settings error in status", || {
        crd_status(kube)["settingsStatus"]["reconciled"] == json!(false)
    })
    .await;
    let err = crd_status(kube)["settingsStatus"]["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        err.contains("set_response_headers") && err.contains("bad header"),
        "{err}"
    );
    assert_eq!(
        crd_status(kube)["settingsStatus"]["observedGeneration"],
        json!(2)
    );
    eventually("UpdateError event (type Normal, as upstream)", || {
        has_event(kube, "Pomerium", "global", "Normal", "UpdateError", &err)
    })
    .await;
    assert_eq!(
        *published.settings.lock().unwrap(),
        applied,
        "rejected settings are not published"
    );
    // The proxy keeps the last good settings, so the replica stays ready.
    assert!(
        r.health.ready(),
        "a bad update after a good start must not make the replica unready"
    );
    // Fixed again.
    kube.apply(pomerium_global());
    eventually("settings ok again", || {
        crd_status(kube)["settingsStatus"]["reconciled"] == json!(true)
    })
    .await;
    assert!(r.health.ready());
}

/// Timing of a full start with many Ingresses (not a pass/fail test):
/// `RAMPART_PERF_INGRESSES=5000 cargo test --release --test controller perf -- --ignored --nocapture`
#[actix_rt::test]
#[ignore]
async fn perf_initial_sync_and_one_update() {
    let n: usize = std::env::var("RAMPART_PERF_INGRESSES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let kube = FakeKube::start();
    seed_cluster(&kube);
    for i in 0..n {
        kube.apply(ingress(
            &format!("ing-{i}"),
            &format!("h{i}.example.com"),
            "web",
        ));
    }
    let port = free_port();
    let a = serving_controller_args(&kube, port, &[]);
    let t0 = std::time::Instant::now();
    let running = rampart::controller::start(&a).await.unwrap();
    let routes = |r: &rampart::controller::Running| r.proxy.snapshot.load().routes.len();
    while routes(&running) < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(t0.elapsed() < Duration::from_secs(600));
    }
    let full = t0.elapsed();
    let t1 = std::time::Instant::now();
    kube.apply(ingress("extra", "extra.example.com", "web"));
    while routes(&running) < n + 1 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let one = t1.elapsed();
    let t2 = std::time::Instant::now();
    // Two events per Ingress (on it and on the Pomerium object), plus the extra one's.
    while kube.count("events.k8s.io/v1", "Event") < 2 * (n + 1) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(t2.elapsed() < Duration::from_secs(900));
    }
    let events_done = t2.elapsed();
    while crd_status(&kube)["ingress"]
        .as_object()
        .is_none_or(|m| m.len() <= n)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(t2.elapsed() < Duration::from_secs(900));
    }
    println!(
        "ingresses={n} initial_sync_to_proxy={full:?} one_update_to_proxy={one:?} events_done_after={events_done:?} status_done_after={:?} api_requests={}",
        t2.elapsed(),
        kube.request_count()
    );
    running.stop().await;
}

#[actix_rt::test]
async fn ingresses_that_stop_being_managed_lose_their_routes() {
    let kube = FakeKube::start();
    seed_cluster(&kube);
    kube.apply(ingress("a", "a.example.com", "web"));
    let mut other_ns = ingress("x", "x.example.com", "web");
    other_ns["metadata"]["namespace"] = json!("elsewhere");
    kube.apply(other_ns);
    let r = start(kube, &["--namespaces", "default"]).await;
    let (kube, published) = (&r.kube, &r.published);
    eventually("a routed", || published.has_host("a.example.com")).await;
    assert!(
        !published.has_host("x.example.com"),
        "Ingress outside --namespaces is not managed"
    );
    eventually("a reported", || {
        crd_status(kube)["ingress"]["default/a"]["reconciled"] == json!(true)
    })
    .await;
    assert!(crd_status(kube)["ingress"].get("elsewhere/x").is_none());

    // The class moves to another controller: every route goes, with the §2 reason.
    let mut class = ingress_class();
    class["spec"]["controller"] = json!("example.com/other");
    kube.apply(class);
    eventually("routes removed", || published.routes.load().is_empty()).await;
    let reason = "IngressClass pomerium not found or is not assigned to this controller pomerium.io/ingress-controller";
    eventually("deleted event with reason", || {
        has_event(
            kube,
            "Pomerium",
            "global",
            "Normal",
            "Updated",
            &format!("default/a: deleted: {reason}"),
        )
    })
    .await;
    eventually("status entry removed", || {
        crd_status(kube)["ingress"].get("default/a").is_none()
    })
    .await;
    let e = kube
        .events()
        .into_iter()
        .find(|e| e.message.starts_with("default/a: deleted"))
        .unwrap();
    assert_eq!(e.related_name.as_deref(), Some("a"));

    // And back.
    kube.apply(ingress_class());
    eventually("a routed again", || published.has_host("a.example.com")).await;
    assert!(!published.has_host("x.example.com"));
}

#[tokio::test]
async fn fake_kube_records_core_events_and_leases() {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::Event as CoreEvent;
    let kube = FakeKube::start();
    let client = kube.client();
    let events: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let ev: CoreEvent = serde_json::from_value(json!({
        "metadata": {"generateName": "web."}, "type": "Warning", "reason": "UpdateError", "message": "boom",
        "involvedObject": {"kind": "Ingress", "namespace": "default", "name": "web"},
        "source": {"component": "pomerium-ingress"}, "count": 1}))
    .unwrap();
    let created = events.create(&PostParams::default(), &ev).await.unwrap();
    assert!(created.metadata.name.unwrap().starts_with("web."));
    let rec = kube.events();
    assert_eq!(rec.len(), 1);
    assert_eq!(
        (
            rec[0].api_version.as_str(),
            rec[0].type_.as_str(),
            rec[0].message.as_str(),
            rec[0].regarding_name.as_str()
        ),
        ("v1", "Warning", "boom", "web")
    );
    assert_eq!(rec[0].reporting_controller, "pomerium-ingress");

    let leases: Api<Lease> = Api::namespaced(client, "pomerium");
    let lease: Lease =
        serde_json::from_value(json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "a"}}))
            .unwrap();
    let first = leases.create(&PostParams::default(), &lease).await.unwrap();
    let err = leases
        .create(&PostParams::default(), &lease)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists"),
        "{err}"
    );
    let mut next = first.clone();
    next.spec.as_mut().unwrap().holder_identity = Some("b".into());
    leases
        .replace("l", &PostParams::default(), &next)
        .await
        .unwrap();
    let err = leases
        .replace("l", &PostParams::default(), &first)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 409 && s.reason == "Conflict"),
        "{err}"
    );
    assert_eq!(
        leases
            .get("l")
            .await
            .unwrap()
            .spec
            .unwrap()
            .holder_identity
            .as_deref(),
        Some("b")
    );
    // JSON patch `remove` and a 422 when the path is missing.
    let raw = reqwest::Client::new()
        .patch(format!(
            "{}/apis/coordination.k8s.io/v1/namespaces/pomerium/leases/l",
            kube.url()
        ))
        .header("content-type", "application/json-patch+json")
        .body(r#"[{"op":"remove","path":"/spec/holderIdentity"}]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 200);
    assert!(leases
        .get("l")
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity
        .is_none());
    let raw = reqwest::Client::new()
        .patch(format!(
            "{}/apis/coordination.k8s.io/v1/namespaces/pomerium/leases/l",
            kube.url()
        ))
        .header("content-type", "application/json-patch+json")
        .body(r#"[{"op":"remove","path":"/spec/holderIdentity"}]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 422);
}

#[actix_rt::test]
async fn gen_secrets_creates_a_valid_bootstrap_secret_once() {
    use rampart::controller::gen_secrets::{gen_secrets, Generated};
    let kube = FakeKube::start();
    assert_eq!(
        gen_secrets(kube.client(), "pomerium/bootstrap")
            .await
            .unwrap(),
        Generated::Created
    );
    let first = kube
        .get("v1", "Secret", Some("pomerium"), "bootstrap")
        .unwrap();
    assert_eq!(first["type"], "Opaque");
    assert_eq!(
        gen_secrets(kube.client(), "pomerium/bootstrap")
            .await
            .unwrap(),
        Generated::AlreadyExists
    );
    let second = kube
        .get("v1", "Secret", Some("pomerium"), "bootstrap")
        .unwrap();
    assert_eq!(first, second, "an existing Secret is left alone");
    // The generated Secret boots the controller.
    kube.apply(ingress_class());
    kube.apply(pomerium_global());
    let r = start(kube, &[]).await;
    eventually("bootstrap ok", || r.health.ready()).await;
    assert!(gen_secrets(r.kube.client(), "bootstrap").await.is_err());
}

/// cert-manager HTTP-01: a solver Ingress is answered on the plain HTTP listener (Pomerium can
/// only redirect there); everything else on that listener still redirects to https.
#[actix_rt::test]
async fn http01_solver_is_served_on_the_plain_http_listener() {
    use actix_web::{web, App, HttpRequest, HttpServer};
    let backend = HttpServer::new(|| {
        App::new().default_service(web::to(|req: HttpRequest| async move {
            format!(
                "token for {} at {}",
                req.connection_info().host(),
                req.path()
            )
        }))
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let backend_port = backend.addrs()[0].port();
    actix_rt::spawn(backend.run());

    let kube = FakeKube::start();
    kube.apply(ingress_class());
    kube.apply(bootstrap_secret());
    kube.apply(pomerium_global());
    kube.apply(cluster_ip_service(
        "cm-acme-http-solver",
        "10.96.0.30",
        8089,
        backend_port,
    ));
    kube.apply(ready_endpoint_slice(
        "cm-acme-http-solver",
        "solver-1",
        &["127.0.0.1"],
        backend_port,
    ));
    // What cert-manager creates: legacy class annotation, solver label, an unknown annotation
    // (solvers skip annotation processing), ImplementationSpecific path.
    kube.apply(json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "cm-acme-http-solver-abc", "namespace": "default",
            "labels": {"acme.cert-manager.io/http01-solver": "true"},
            "annotations": {"kubernetes.io/ingress.class": "pomerium", "ingress.pomerium.io/whatever": "x"}},
        "spec": {"rules": [{"host": "app.example.com", "http": {"paths": [
            {"path": "/.well-known/acme-challenge/tok123", "pathType": "ImplementationSpecific",
             "backend": {"service": {"name": "cm-acme-http-solver", "port": {"number": 8089}}}}]}}]}}));

    let port = free_port();
    let http_port = free_port();
    let server_addr = format!("127.0.0.1:{port}");
    let http_addr = format!("127.0.0.1:{http_port}");
    let a = controller_args(
        &kube,
        &[
            "--server-addr",
            &server_addr,
            "--http-redirect-addr",
            &http_addr,
            "--proxy-workers",
            "1",
        ],
    );
    let running = rampart::controller::start(&a).await.unwrap();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let get = |path: &'static str| {
        let client = client.clone();
        async move {
            let resp = client
                .get(format!("http://127.0.0.1:{http_port}{path}"))
                .header("host", "app.example.com")
                .send()
                .await
                .ok()?;
            let code = resp.status().as_u16();
            let location = resp
                .headers()
                .get("location")
                .map(|v| v.to_str().unwrap_or("").to_string());
            Some((code, location, resp.text().await.unwrap_or_default()))
        }
    };

    let mut last = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        last = get("/.well-known/acme-challenge/tok123").await;
        if matches!(&last, Some((200, _, _))) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, _, body) = last.expect("plain listener answered");
    assert_eq!(code, 200, "{body}");
    // The solver sees the original Host (preserve_host_header) and path.
    assert_eq!(
        body,
        "token for app.example.com at /.well-known/acme-challenge/tok123"
    );

    // Other paths, and challenges for hosts without a solver, still redirect to https.
    // The redirect names no port, as Pomerium's: the Service exposes 443, not the container's
    // `--server-addr` port (issue 11 item 2).
    let (code, location, _) = get("/dashboard?x=1").await.unwrap();
    assert_eq!(code, 301);
    assert_eq!(
        location.as_deref(),
        Some("https://app.example.com/dashboard?x=1")
    );
    let other = client
        .get(format!(
            "http://127.0.0.1:{http_port}/.well-known/acme-challenge/tok123"
        ))
        .header("host", "other.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status().as_u16(), 301);
    assert_eq!(
        other.headers().get("connection").map(|v| v.as_bytes()),
        Some(&b"close"[..])
    );
    running.stop().await;
}

/// An endpoint change (a rollout adding a pod, then removing another) updates the upstream set
/// without cutting an open websocket (Pomerium drops every long-lived connection on the route).
#[actix_rt::test]
async fn endpoint_changes_keep_open_websockets() {
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let echo = support::websocket_echo();
    let ca = support::Ca::new("ws test CA");
    let leaf = ca.leaf(&["ws.example.com"]);

    let kube = FakeKube::start();
    kube.apply(ingress_class());
    kube.apply(bootstrap_secret());
    kube.apply(pomerium_global());
    let slice = |ips: &[&str]| ready_endpoint_slice("ws", "ws-1", ips, echo.port());
    kube.apply(cluster_ip_service("ws", "10.96.0.40", 80, echo.port()));
    kube.apply(slice(&["127.0.0.1"]));
    kube.apply(json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "ws-tls", "namespace": "default"},
        "data": {"tls.crt": b64(leaf.cert_pem.as_bytes()), "tls.key": b64(leaf.key_pem.as_bytes())}}));
    let mut ing = ingress("ws", "ws.example.com", "ws");
    ing["metadata"]["annotations"] = json!({
        "ingress.pomerium.io/allow_public_unauthenticated_access": "true",
        "ingress.pomerium.io/allow_websockets": "true"});
    ing["spec"]["tls"] = json!([{"hosts": ["ws.example.com"], "secretName": "ws-tls"}]);
    kube.apply(ing);

    let port = free_port();
    let a = serving_controller_args(&kube, port, &[]);
    let running = rampart::controller::start(&a).await.unwrap();

    let tls_cfg = Arc::new(ca.client_config());
    let connect = || {
        let tls_cfg = tls_cfg.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()?;
            let tls = tokio_rustls::TlsConnector::from(tls_cfg)
                .connect(
                    rustls::pki_types::ServerName::try_from("ws.example.com").unwrap(),
                    tcp,
                )
                .await
                .ok()?;
            tokio_tungstenite::client_async(format!("wss://ws.example.com:{port}/chat"), tls)
                .await
                .ok()
                .map(|(ws, _)| ws)
        }
    };
    let mut ws = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline && ws.is_none() {
        ws = connect().await;
        if ws.is_none() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut ws = ws.expect("websocket through the proxy");
    ws.send(Message::text("before")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("before"));

    // Rollout: a second endpoint appears, then the first one goes away. Nothing listens on
    // 127.0.0.2, so new requests fail while the websocket opened on 127.0.0.1 must live on.
    kube.apply(slice(&["127.0.0.1", "127.0.0.2"]));
    kube.apply(slice(&["127.0.0.2"]));
    eventually("the new endpoint set to reach the proxy", || {
        running
            .proxy
            .snapshot
            .load()
            .routes
            .find("ws.example.com", "/")
            .is_some_and(|e| {
                e.route.upstreams.len() == 1
                    && e.route.upstreams[0].authority.starts_with("127.0.0.2:")
            })
    })
    .await;

    // The open websocket still carries messages both ways.
    for i in 0..3 {
        ws.send(Message::text(format!("after {i}"))).await.unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::text(format!("after {i}"))
        );
    }
    ws.close(None).await.unwrap();
    // New requests go to the new endpoint set (where nothing listens: 503).
    assert_eq!(
        via_proxy(port, "ws.example.com", "/").await.map(|r| r.0),
        Some(503)
    );
    running.stop().await;
}

/// Issue 11 item 1: status merge patches delete a fixed error and an emptied warnings list
/// (RFC 7386: `null` deletes) instead of omitting the keys, which would keep the old values.
/// Item 6: a bootstrap Secret reference without a namespace reads as in Pomerium.
#[actix_rt::test]
async fn fixed_errors_and_warnings_leave_the_status() {
    let kube = FakeKube::start();
    seed_cluster(&kube);
    let mut bad_settings = pomerium_global();
    bad_settings["spec"]["secrets"] = json!("bootstrap");
    kube.apply(bad_settings);
    let mut bad = ingress("bad", "bad.example.com", "web");
    bad["metadata"]["annotations"]["ingress.pomerium.io/foo"] = json!("x");
    kube.apply(bad);
    let r = start(kube, &[]).await;
    let kube = &r.kube;
    eventually("settings error", || {
        crd_status(kube)["settingsStatus"]["error"]
            == json!("secrets: bootstrap secret: parse bootstrap: missing namespace for resource")
    })
    .await;

    // Fix the settings: the error goes, the storage warning stays.
    kube.apply(pomerium_global());
    eventually("settings reconciled", || {
        crd_status(kube)["settingsStatus"]["reconciled"] == json!(true)
    })
    .await;
    let st = crd_status(kube)["settingsStatus"].clone();
    assert!(st.get("error").is_none(), "stale settings error: {st}");
    assert_eq!(st["warnings"].as_array().map(Vec::len), Some(1), "{st}");

    // The Ingress error is there, then fixed.
    eventually("ingress error", || {
        crd_status(kube)["ingress"]["default/bad"]["reconciled"] == json!(false)
    })
    .await;
    kube.apply(ingress("bad", "bad.example.com", "web"));
    eventually("ingress reconciled", || {
        crd_status(kube)["ingress"]["default/bad"]["reconciled"] == json!(true)
    })
    .await;
    let entry = crd_status(kube)["ingress"]["default/bad"].clone();
    assert!(entry.get("error").is_none(), "stale ingress error: {entry}");

    // Storage configured: the warnings list becomes empty and leaves the status.
    let mut with_storage = pomerium_global();
    with_storage["spec"]["storage"] = json!({"file": {"path": "/tmp/rampart-test-storage"}});
    let generation = kube.apply(with_storage)["metadata"]["generation"].clone();
    eventually("warnings gone", || {
        let st = crd_status(kube)["settingsStatus"].clone();
        st["observedGeneration"] == generation && st.get("warnings").is_none()
    })
    .await;
    assert_eq!(
        crd_status(kube)["settingsStatus"]["reconciled"],
        json!(true)
    );
}

/// Issue 11 item 8: `ingress.pomerium.io/*` annotations on the IngressClass are defaults for
/// every Ingress of the class; an Ingress's own annotation wins; a change to the class
/// re-converts its Ingresses; a bad default names the IngressClass.
#[actix_rt::test]
async fn ingress_class_annotations_are_route_defaults() {
    let kube = FakeKube::start();
    seed_cluster(&kube);
    let mut class = ingress_class();
    class["metadata"]["annotations"] = json!({
        "ingress.pomerium.io/timeout": "7s",
        "ingress.pomerium.io/allow_any_authenticated_user": "true",
        "ingressclass.kubernetes.io/is-default-class": "true",
    });
    kube.apply(class.clone());
    kube.apply(ingress("plain", "plain.example.com", "web"));
    let mut own = ingress("own", "own.example.com", "web");
    own["metadata"]["annotations"]["ingress.pomerium.io/timeout"] = json!("9s");
    kube.apply(own);
    // No class named: the default class's annotations apply.
    let mut classless = ingress("classless", "classless.example.com", "web");
    classless["spec"]
        .as_object_mut()
        .unwrap()
        .remove("ingressClassName");
    kube.apply(classless);
    let r = start(kube, &[]).await;
    let (kube, published) = (&r.kube, &r.published);
    let route = |host: &str| {
        published
            .routes
            .load()
            .iter()
            .find(|r| r.from == format!("https://{host}"))
            .cloned()
    };
    eventually("routes", || {
        ["plain", "own", "classless"]
            .iter()
            .all(|h| published.has_host(&format!("{h}.example.com")))
    })
    .await;
    let plain = route("plain.example.com").unwrap();
    assert_eq!(plain.timeout.as_deref(), Some("7s"));
    assert_eq!(plain.allow_any_authenticated_user, Some(true));
    let own = route("own.example.com").unwrap();
    assert_eq!(own.timeout.as_deref(), Some("9s"), "the Ingress's own wins");
    assert_eq!(own.allow_any_authenticated_user, Some(true));
    assert_eq!(
        route("classless.example.com").unwrap().timeout.as_deref(),
        Some("7s")
    );

    // Changing the class re-converts its Ingresses.
    class["metadata"]["annotations"]["ingress.pomerium.io/timeout"] = json!("8s");
    kube.apply(class.clone());
    eventually("new default", || {
        route("plain.example.com").and_then(|r| r.timeout.clone()) == Some("8s".into())
    })
    .await;
    assert_eq!(
        route("own.example.com").unwrap().timeout.as_deref(),
        Some("9s")
    );

    // A bad default rejects the class's Ingresses (keeping their last good routes), naming
    // the IngressClass.
    class["metadata"]["annotations"]["ingress.pomerium.io/timout"] = json!("1s");
    kube.apply(class.clone());
    let text = "parsing ingress: annotations: IngressClass pomerium defaults: unknown ingress.pomerium.io/timout";
    eventually("class error in status", || {
        crd_status(kube)["ingress"]["default/plain"]["error"] == json!(text)
    })
    .await;
    assert!(published.has_host("plain.example.com"));
    // Removed again: every Ingress converts cleanly without the defaults.
    class["metadata"]["annotations"] =
        json!({"ingressclass.kubernetes.io/is-default-class": "true"});
    kube.apply(class);
    eventually("defaults gone", || {
        route("plain.example.com").is_some_and(|r| r.timeout.is_none())
            && crd_status(kube)["ingress"]["default/plain"]["reconciled"] == json!(true)
    })
    .await;
}

/// Issue 11 item 4: with `--namespaces`, namespaced kinds are listed and watched per namespace
/// (least privilege: no cluster-wide list/watch of Ingresses, Services, Endpoints(lices) or
/// Secrets); Secrets also in the controller's namespace, Services also in the status Service's.
#[actix_rt::test]
async fn namespaces_flag_watches_only_those_namespaces() {
    let kube = FakeKube::start();
    seed_cluster(&kube);
    kube.apply(ingress("a", "a.example.com", "web"));
    let mut other = ingress("o", "o.example.com", "web");
    other["metadata"]["namespace"] = json!("other");
    kube.apply(other);
    let r = start(
        kube,
        &[
            "--namespaces",
            "default,b",
            "--pod-namespace",
            "pomerium",
            "--update-status-from-service",
            "edge/proxy",
        ],
    )
    .await;
    let (kube, published) = (&r.kube, &r.published);
    eventually("route in default", || published.has_host("a.example.com")).await;
    eventually("settings from the bootstrap Secret in pomerium", || {
        crd_status(kube)["settingsStatus"]["reconciled"] == json!(true)
    })
    .await;
    kube.apply(ingress("a2", "a2.example.com", "web"));
    eventually("watched change", || published.has_host("a2.example.com")).await;
    assert!(!published.has_host("o.example.com"));

    let gets: std::collections::BTreeSet<String> = kube
        .requests()
        .into_iter()
        .filter(|q| q.method == "GET")
        .map(|q| q.path)
        .collect();
    for cluster_wide in [
        "/apis/networking.k8s.io/v1/ingresses",
        "/api/v1/services",
        "/api/v1/secrets",
        "/api/v1/endpoints",
        "/apis/discovery.k8s.io/v1/endpointslices",
    ] {
        assert!(
            !gets.contains(cluster_wide),
            "cluster-wide {cluster_wide} requested: {gets:?}"
        );
    }
    for ns in ["default", "b"] {
        for plural in [
            "apis/networking.k8s.io/v1/namespaces/NS/ingresses",
            "api/v1/namespaces/NS/services",
            "api/v1/namespaces/NS/secrets",
            "apis/discovery.k8s.io/v1/namespaces/NS/endpointslices",
        ] {
            let path = format!("/{}", plural.replace("NS", ns));
            assert!(gets.contains(&path), "{path} not watched: {gets:?}");
        }
    }
    assert!(gets.contains("/api/v1/namespaces/pomerium/secrets"));
    assert!(gets.contains("/api/v1/namespaces/edge/services"));
    assert!(!gets.iter().any(|p| p.contains("/namespaces/other/")));
    assert!(!gets.contains("/api/v1/namespaces/pomerium/services"));
    assert!(!gets.contains("/apis/networking.k8s.io/v1/namespaces/pomerium/ingresses"));

    // A Secret in a namespace that is not watched: the error says why it cannot be read.
    let mut elsewhere = bootstrap_secret();
    elsewhere["metadata"]["namespace"] = json!("elsewhere");
    kube.apply(elsewhere);
    let mut p = pomerium_global();
    p["spec"]["secrets"] = json!("elsewhere/bootstrap");
    kube.apply(p);
    eventually("unwatched namespace error", || {
        crd_status(kube)["settingsStatus"]["error"]
            == json!("secrets: bootstrap secret: get elsewhere/bootstrap: Secret \"bootstrap\" not found (namespace elsewhere is not watched: with --namespaces, Secrets are read from the managed namespaces and the controller's own namespace)")
    })
    .await;
}

#[actix_rt::test]
async fn v032_annotations_are_served_health_checks_and_service_account_token() {
    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    // Two endpoints of one Service on the same port: 127.0.0.1 is healthy, 127.0.0.2 fails its
    // health check (but would answer traffic).
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let backend_port = probe.local_addr().unwrap().port();
    drop(probe);
    for (ip, name, healthy) in [("127.0.0.1", "one", true), ("127.0.0.2", "two", false)] {
        let server = HttpServer::new(move || {
            App::new()
                .route(
                    "/healthz",
                    web::get().to(move || async move {
                        if healthy {
                            HttpResponse::Ok().finish()
                        } else {
                            HttpResponse::ServiceUnavailable().finish()
                        }
                    }),
                )
                .default_service(web::to(move |req: HttpRequest| async move {
                    let auth = req
                        .headers()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    HttpResponse::Ok().body(format!("{name} {auth}"))
                }))
        })
        .workers(1)
        .bind((ip, backend_port))
        .unwrap();
        actix_rt::spawn(server.run());
    }

    let kube = FakeKube::start();
    kube.apply(ingress_class());
    kube.apply(bootstrap_secret());
    kube.apply(pomerium_global());
    kube.apply(cluster_ip_service("app", "10.96.0.20", 80, backend_port));
    kube.apply(ready_endpoint_slice(
        "app",
        "app-1",
        &["127.0.0.1", "127.0.0.2"],
        backend_port,
    ));
    kube.apply(
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
        "metadata": {"name": "sa", "namespace": "default"}, "data": {"token": b64(b"sa-token")}}),
    );
    let mut ing = ingress("app", "app.example.com", "app");
    let ann = &mut ing["metadata"]["annotations"];
    ann["ingress.pomerium.io/allow_public_unauthenticated_access"] = json!("true");
    ann["ingress.pomerium.io/kubernetes_service_account_token_secret"] = json!("sa");
    ann["ingress.pomerium.io/health_checks"] = json!(
        "[{\"timeout\": \"1s\", \"interval\": \"200ms\", \"healthy_threshold\": 1, \"unhealthy_threshold\": 1, \"http_health_check\": {\"path\": \"/healthz\"}}]"
    );
    kube.apply(ing.clone());
    // A removed Pomerium key rejects its Ingress with what to use instead.
    let mut old = ingress("old", "old.example.com", "app");
    old["metadata"]["annotations"]["ingress.pomerium.io/lb_policy"] = json!("MAGLEV");
    kube.apply(old);

    let port = free_port();
    let a = serving_controller_args(&kube, port, &[]);
    let running = rampart::controller::start(&a).await.unwrap();

    let mut bodies = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        bodies.clear();
        for _ in 0..6 {
            if let Some((200, body, _)) = via_proxy(port, "app.example.com", "/").await {
                bodies.push(body);
            }
        }
        if bodies.len() == 6 && bodies.iter().all(|b| b == "one Bearer sa-token") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        bodies.len() == 6 && bodies.iter().all(|b| b == "one Bearer sa-token"),
        "{bodies:?}"
    );

    eventually("lb_policy rejected", || {
        has_event(
            &kube,
            "Ingress",
            "old",
            "Warning",
            "UpdateError",
            "parsing ingress: annotations: ingress.pomerium.io/lb_policy was removed in Pomerium v0.32, use ingress.pomerium.io/load_balancing_policy (round_robin, least_request, ring_hash, random, maglev)",
        )
    })
    .await;
    running.stop().await;
}
