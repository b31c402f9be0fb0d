//! Reconciler at scale: 10,000 Ingresses, each with its own Service and Endpoints.
//! Prints the time to the first full route table, the time from one change to the new route
//! list, and the peak RSS. Run: `cargo bench --bench reconcile`.
//! Targets: full sync < 5 s, one update < 50 ms, RSS < 300 MB.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressClass, IngressClassSpec,
    IngressRule, IngressServiceBackend, IngressSpec, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use rampart::k8s::convert::ConvertOptions;
use rampart::k8s::reconcile::{Change, IngressResult, Reconciler};
use rampart::k8s::KubeObject;

const N: usize = 10_000;

fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(ns.into()),
        ..Default::default()
    }
}

fn ns(i: usize) -> String {
    format!("team-{}", i % 50)
}

fn ingress(i: usize, timeout: &str) -> Ingress {
    let mut m = meta(&ns(i), &format!("app-{i}"));
    m.annotations = Some(BTreeMap::from([
        (
            "ingress.pomerium.io/allowed_domains".to_string(),
            r#"["example.com"]"#.to_string(),
        ),
        (
            "ingress.pomerium.io/timeout".to_string(),
            timeout.to_string(),
        ),
        (
            "ingress.pomerium.io/set_request_headers".to_string(),
            r#"{"X-App": "app"}"#.to_string(),
        ),
    ]));
    let path = |p: &str, t: &str| HTTPIngressPath {
        path: Some(p.into()),
        path_type: t.into(),
        backend: IngressBackend {
            service: Some(IngressServiceBackend {
                name: format!("svc-{i}"),
                port: Some(ServiceBackendPort {
                    name: Some("http".into()),
                    number: None,
                }),
            }),
            resource: None,
        },
    };
    Ingress {
        metadata: m,
        spec: Some(IngressSpec {
            ingress_class_name: Some("pomerium".into()),
            rules: Some(vec![IngressRule {
                // Three apps share each host.
                host: Some(format!("host-{}.apps.example.com", i / 3)),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![
                        path(&format!("/app-{i}"), "Prefix"),
                        path(&format!("/app-{i}/health"), "Exact"),
                    ],
                }),
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

fn service(i: usize) -> Service {
    Service {
        metadata: meta(&ns(i), &format!("svc-{i}")),
        spec: Some(ServiceSpec {
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                target_port: Some(IntOrString::Int(8080)),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

fn endpoints(i: usize, generation: usize) -> Endpoints {
    Endpoints {
        metadata: meta(&ns(i), &format!("svc-{i}")),
        subsets: Some(vec![EndpointSubset {
            addresses: Some(
                (0..3)
                    .map(|k| EndpointAddress {
                        ip: format!("10.{}.{}.{}", (i / 250) % 250, i % 250, k + 1 + generation),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ports: Some(vec![EndpointPort {
                name: Some("http".into()),
                port: 8080,
                ..Default::default()
            }]),
            ..Default::default()
        }]),
    }
}

fn vm_hwm_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn stats(mut v: Vec<Duration>) -> String {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "median {:.2} ms, p95 {:.2} ms, max {:.2} ms",
        ms(v[v.len() / 2]),
        ms(v[v.len() * 95 / 100]),
        ms(v[v.len() - 1])
    )
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run small then.
    let full = std::env::args().any(|a| a == "--bench");
    let n = if full { N } else { 200 };

    let mut objects = Vec::with_capacity(3 * n + 1);
    objects.push(KubeObject::IngressClass(Box::new(IngressClass {
        metadata: ObjectMeta {
            name: Some("pomerium".into()),
            ..Default::default()
        },
        spec: Some(IngressClassSpec {
            controller: Some("pomerium.io/ingress-controller".into()),
            parameters: None,
        }),
    })));
    for i in 0..n {
        objects.push(KubeObject::Service(Box::new(service(i))));
        objects.push(KubeObject::Endpoints(Box::new(endpoints(i, 0))));
        objects.push(KubeObject::Ingress(Box::new(ingress(i, "30s"))));
    }

    let start = Instant::now();
    let mut rec = Reconciler::new(ConvertOptions::default());
    let out = rec.apply_all(objects);
    let routes = rec.routes();
    let full_sync = start.elapsed();
    let errors = out
        .results
        .iter()
        .filter(|(_, r)| !matches!(r, IngressResult::Updated))
        .count();
    assert_eq!(
        errors,
        0,
        "{:?}",
        out.results
            .iter()
            .find(|(_, r)| !matches!(r, IngressResult::Updated))
    );
    assert_eq!(routes.len(), 2 * n);
    println!("ingresses: {n}, routes: {}", routes.len());
    println!(
        "full sync to first route table: {:.3} s",
        full_sync.as_secs_f64()
    );

    let rounds = if full { 200 } else { 20 };
    let mut ingress_updates = Vec::with_capacity(rounds);
    let mut apply_only = Vec::with_capacity(rounds);
    let mut snapshot_updates = Vec::with_capacity(rounds);
    let mut route_list_only = Vec::with_capacity(rounds);
    let mut drops = Vec::with_capacity(rounds);
    let mut endpoint_updates = Vec::with_capacity(rounds);
    // The previous snapshot stays alive while the next one is built, as it does in the proxy;
    // freeing it is measured separately.
    let mut previous = rec.routes();
    for k in 0..rounds {
        let i = (k * 7919) % n;
        let t = Instant::now();
        let out = rec.apply(Change::Upsert(KubeObject::Ingress(Box::new(ingress(
            i,
            &format!("{}s", 31 + k),
        )))));
        let applied = t.elapsed();
        let snapshot = rec.route_snapshot();
        let shared = t.elapsed();
        let routes = rec.routes();
        let total = t.elapsed() - shared + applied;
        snapshot_updates.push(shared);
        assert_eq!(snapshot.len(), 2 * n);
        apply_only.push(applied);
        route_list_only.push(total - applied);
        ingress_updates.push(total);
        assert!(out.routes_changed);
        assert_eq!(routes.len(), 2 * n);
        let t = Instant::now();
        drop(std::mem::replace(&mut previous, routes));
        drops.push(t.elapsed());

        let t = Instant::now();
        let out = rec.apply(Change::Upsert(KubeObject::Endpoints(Box::new(endpoints(
            i,
            k + 1,
        )))));
        let _ = rec.route_snapshot();
        let _ = rec.certificates();
        endpoint_updates.push(t.elapsed());
        let routes = rec.routes();
        assert!(out.routes_changed);
        drop(std::mem::replace(&mut previous, routes));
    }
    println!(
        "one Ingress update → new shared route list (apply + route_snapshot): {}",
        stats(snapshot_updates)
    );
    println!(
        "one Ingress update → new copied route list (apply + routes): {}",
        stats(ingress_updates)
    );
    println!("  apply alone (convert + merge): {}", stats(apply_only));
    println!(
        "  routes() alone (deep copy of every route): {}",
        stats(route_list_only)
    );
    println!("  freeing the previous copied list: {}", stats(drops));
    println!(
        "one Endpoints update → new shared route list + certificates: {}",
        stats(endpoint_updates)
    );
    println!("peak RSS (VmHWM): {:.1} MB", vm_hwm_kb() as f64 / 1024.0);
}
