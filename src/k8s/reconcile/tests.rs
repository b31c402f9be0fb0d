use super::*;
use crate::config::route::route_order;
use crate::config::OneOrMany;
use crate::k8s::convert::testutil::*;

fn ing(name: &str, host: &str, paths: &[(&str, &str)], extra_meta: &str) -> KubeObject {
    let paths: String = paths
        .iter()
        .map(|(p, t)| {
            format!("      - {{path: '{p}', pathType: {t}, backend: {{service: {{name: svc, port: {{number: 80}}}}}}}}\n")
        })
        .collect();
    objects(&format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: default\n{extra_meta}spec:\n  ingressClassName: pomerium\n  rules:\n  - host: {host}\n    http:\n      paths:\n{paths}"
    ))
    .pop()
    .unwrap()
}

fn base() -> Vec<KubeObject> {
    objects(&format!("{CLASS}\n---\n{SVC}"))
}

fn ids(r: &Reconciler) -> Vec<(String, String)> {
    r.routes()
        .iter()
        .map(|r| {
            let id: serde_json::Value = serde_json::from_str(r.id.as_deref().unwrap()).unwrap();
            (
                id["n"].as_str().unwrap().to_string(),
                id["p"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn key(name: &str) -> IngressKey {
    IngressKey::new("default", name)
}

fn endpoints(ips: &[&str]) -> KubeObject {
    let addrs: Vec<String> = ips.iter().map(|ip| format!("{{ip: {ip}}}")).collect();
    objects(&format!(
        "apiVersion: v1\nkind: Endpoints\nmetadata: {{name: svc, namespace: default}}\nsubsets: [{{addresses: [{}], ports: [{{name: http, port: 8080}}]}}]\n",
        addrs.join(", ")
    ))
    .pop()
    .unwrap()
}

#[test]
fn route_key_order_matches_config_route_order() {
    let mk =
        |from: &str, path: Option<&str>, regex: Option<&str>, prefix: Option<&str>, id: &str| {
            RouteConfig {
                from: from.into(),
                path: path.map(Into::into),
                regex: regex.map(Into::into),
                prefix: prefix.map(Into::into),
                id: Some(id.into()),
                ..Default::default()
            }
        };
    let routes = vec![
        mk("https://b", None, None, Some("/"), "1"),
        mk("https://a", None, None, Some("/"), "2"),
        mk("https://a", Some("/x"), None, None, "3"),
        mk("https://a", None, Some("/r.*"), None, "4"),
        mk("https://a", None, None, Some("/a/b"), "5"),
        mk("https://a", None, None, None, "6"),
        mk("https://a", None, None, Some("/"), "0"),
    ];
    let mut by_key = routes.clone();
    by_key.sort_by_key(RouteKey::of);
    let mut by_cfg = routes.clone();
    by_cfg.sort_by(|a, b| route_order(a, b, a.id.as_deref().unwrap(), b.id.as_deref().unwrap()));
    assert_eq!(by_key, by_cfg);
    let ids: Vec<&str> = by_key.iter().map(|r| r.id.as_deref().unwrap()).collect();
    assert_eq!(ids, ["3", "4", "5", "0", "2", "6", "1"]);
}

#[test]
fn initial_sync_merges_and_sorts_shared_hosts() {
    let mut r = Reconciler::new(ConvertOptions::default());
    let mut objs = base();
    objs.push(ing(
        "zeta",
        "a.example.com",
        &[("/", "Prefix"), ("/a/b", "Prefix")],
        "",
    ));
    objs.push(ing(
        "alpha",
        "a.example.com",
        &[("/", "Prefix"), ("/exact", "Exact")],
        "",
    ));
    objs.push(ing(
        "rx",
        "a.example.com",
        &[("/r.*", "ImplementationSpecific")],
        "  annotations: {ingress.pomerium.io/path_regex: 'true'}\n",
    ));
    objs.push(ing("other", "0.example.com", &[("/", "Prefix")], ""));
    let out = r.apply_all(objs);
    assert!(out.routes_changed);
    assert_eq!(out.results.len(), 4);
    assert!(out
        .results
        .iter()
        .all(|(_, res)| *res == IngressResult::Updated));
    assert_eq!(
        ids(&r),
        [
            ("other".to_string(), "/".to_string()),
            ("alpha".into(), "/exact".into()),
            ("rx".into(), "/r.*".into()),
            ("zeta".into(), "/a/b".into()),
            // Identical paths from two Ingresses: both kept, lower id (name) first.
            ("alpha".into(), "/".into()),
            ("zeta".into(), "/".into()),
        ]
    );
    // The rendered routes load as a config.
    let settings = crate::config::Settings {
        routes: r.routes().as_ref().clone(),
        ..Default::default()
    };
    let cfg = crate::config::build(settings).unwrap();
    assert_eq!(cfg.routes.len(), 6);
}

#[test]
fn dependency_change_reconverts_only_dependents() {
    let mut r = Reconciler::new(ConvertOptions::default());
    let mut objs = base();
    objs.push(ing("a", "a.example.com", &[("/", "Prefix")], ""));
    objs.extend(objects(
        "apiVersion: v1\nkind: Service\nmetadata: {name: other, namespace: default}\nspec: {ports: [{port: 80}]}\n",
    ));
    r.apply_all(objs);
    let before = r.routes();

    // Unrelated object: nothing re-converted.
    let out = r.apply(Change::Upsert(
        objects("apiVersion: v1\nkind: Service\nmetadata: {name: other, namespace: default}\nspec: {ports: [{port: 81}]}\n").pop().unwrap(),
    ));
    assert_eq!(out, Outcome::default());
    assert!(Arc::ptr_eq(&before, &r.routes()));

    // Endpoints change: the route's `to` follows.
    let out = r.apply(Change::Upsert(endpoints(&["10.9.9.9"])));
    assert_eq!(out.results, vec![(key("a"), IngressResult::Updated)]);
    assert!(out.routes_changed);
    assert_eq!(
        r.routes()[0].to,
        Some(OneOrMany::Many(vec!["http://10.9.9.9:8080".into()]))
    );
    // Same Endpoints again: Updated, but the route list did not change.
    let out = r.apply(Change::Upsert(endpoints(&["10.9.9.9"])));
    assert_eq!(out.results, vec![(key("a"), IngressResult::Updated)]);
    assert!(!out.routes_changed);
}

#[test]
fn failing_update_keeps_last_good_routes() {
    let mut r = Reconciler::new(ConvertOptions::default());
    let mut objs = base();
    objs.push(ing("a", "a.example.com", &[("/", "Prefix")], ""));
    r.apply_all(objs);
    let good = r.routes();
    assert_eq!(good.len(), 1);

    let out = r.apply(Change::Upsert(ing(
        "a",
        "b.example.com",
        &[("/", "Prefix")],
        "  annotations: {ingress.pomerium.io/bogus: x}\n",
    )));
    assert_eq!(
        out.results,
        vec![(
            key("a"),
            IngressResult::Error(
                "parsing ingress: annotations: unknown ingress.pomerium.io/bogus".into()
            )
        )]
    );
    assert!(!out.routes_changed);
    assert_eq!(r.routes(), good);
    assert!(r.error(&key("a")).is_some());

    // Endpoints vanish: fetch error, old routes kept; they come back: fixed.
    let out = r.apply(Change::Upsert(ing(
        "a",
        "a.example.com",
        &[("/", "Prefix")],
        "",
    )));
    assert_eq!(out.results, vec![(key("a"), IngressResult::Updated)]);
    let out = r.apply(Change::Delete(
        Kind::Endpoints,
        "default".into(),
        "svc".into(),
    ));
    assert_eq!(
        out.results,
        vec![(key("a"), IngressResult::Error("services: rule host=a.example.com path=/ refers to service default/svc port=&ServiceBackendPort{Name:,Number:80,}, failed to get service information: Endpoints \"svc\" not found".into()))]
    );
    assert_eq!(r.routes().len(), 1);
    let out = r.apply(Change::Upsert(endpoints(&["10.1.1.1"])));
    assert_eq!(out.results, vec![(key("a"), IngressResult::Updated)]);
    assert!(r.error(&key("a")).is_none());
}

#[test]
fn missing_secret_then_created() {
    let mut r = Reconciler::new(ConvertOptions::default());
    let mut objs = base();
    objs.push(ing(
        "a",
        "a.example.com",
        &[("/", "Prefix")],
        "  annotations: {ingress.pomerium.io/set_request_headers_secret: hdrs}\n",
    ));
    let out = r.apply_all(objs);
    assert_eq!(
        out.results,
        vec![(
            key("a"),
            IngressResult::Error("tls: get secret default/hdrs: Secret \"hdrs\" not found".into())
        )]
    );
    assert!(r.routes().is_empty());
    // The missing Secret was recorded as a dependency: creating it re-reconciles.
    let out = r.apply(Change::Upsert(
        objects("apiVersion: v1\nkind: Secret\nmetadata: {name: hdrs, namespace: default}\nstringData: {X-K: v}\n").pop().unwrap(),
    ));
    assert_eq!(out.results, vec![(key("a"), IngressResult::Updated)]);
    assert!(out.routes_changed);
    assert_eq!(
        r.routes()[0].set_request_headers.as_ref().unwrap()["X-K"],
        "v"
    );
}

#[test]
fn class_changes_and_deletes_remove_routes() {
    let mut r = Reconciler::new(ConvertOptions::default());
    let mut objs = base();
    objs.push(ing("a", "a.example.com", &[("/", "Prefix")], ""));
    objs.push(ing("b", "b.example.com", &[("/", "Prefix")], ""));
    r.apply_all(objs);
    assert_eq!(r.routes().len(), 2);

    let out = r.apply(Change::Delete(
        Kind::IngressClass,
        String::new(),
        "pomerium".into(),
    ));
    let reason = "IngressClass pomerium not found or is not assigned to this controller pomerium.io/ingress-controller";
    assert_eq!(
        out.results,
        vec![
            (key("a"), IngressResult::Removed(reason.into())),
            (key("b"), IngressResult::Removed(reason.into())),
        ]
    );
    assert!(out.routes_changed);
    assert!(r.routes().is_empty());
    assert!(r.managed().is_empty());

    let out = r.apply(Change::Upsert(objects(CLASS).pop().unwrap()));
    assert_eq!(out.results.len(), 2);
    assert_eq!(r.routes().len(), 2);

    let out = r.apply(Change::Delete(Kind::Ingress, "default".into(), "a".into()));
    assert_eq!(
        out.results,
        vec![(key("a"), IngressResult::Removed(DELETED_REASON.into()))]
    );
    assert_eq!(r.routes().len(), 1);

    // Switching to another class: removed with the §2 reason.
    let moved = objects("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: b, namespace: default}\nspec: {ingressClassName: nginx}\n").pop().unwrap();
    let out = r.apply(Change::Upsert(moved.clone()));
    assert_eq!(
        out.results,
        vec![(key("b"), IngressResult::Removed("IngressClass nginx not found or is not assigned to this controller pomerium.io/ingress-controller".into()))]
    );
    assert!(r.routes().is_empty());
    // Not managed and never was: no result at all.
    let out = r.apply(Change::Upsert(moved));
    assert!(out.results.is_empty());
    assert!(!out.routes_changed);
}

#[test]
fn endpoint_slices_are_dependencies() {
    let mut r = Reconciler::new(ConvertOptions::default());
    let mut objs = objects(&format!(
        "{CLASS}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: svc, namespace: default}}\nspec: {{ports: [{{name: http, port: 80, targetPort: 8080}}]}}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: svc-1, namespace: default, labels: {{kubernetes.io/service-name: svc}}}}\naddressType: IPv4\nendpoints: [{{addresses: [10.0.0.1]}}]\nports: [{{name: http, port: 8080}}]\n"
    ));
    objs.push(ing("a", "a.example.com", &[("/", "Prefix")], ""));
    r.apply_all(objs);
    assert_eq!(
        r.routes()[0].to,
        Some(OneOrMany::Many(vec!["http://10.0.0.1:8080".into()]))
    );
    let out = r.apply(Change::Upsert(objects("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: svc-2, namespace: default, labels: {kubernetes.io/service-name: svc}}\naddressType: IPv4\nendpoints: [{addresses: [10.0.0.2]}]\nports: [{name: http, port: 8080}]\n").pop().unwrap()));
    assert_eq!(out.results, vec![(key("a"), IngressResult::Updated)]);
    assert_eq!(
        r.routes()[0].to,
        Some(OneOrMany::Many(vec![
            "http://10.0.0.1:8080".into(),
            "http://10.0.0.2:8080".into()
        ]))
    );
    let out = r.apply(Change::Delete(
        Kind::EndpointSlice,
        "default".into(),
        "svc-1".into(),
    ));
    assert_eq!(out.results, vec![(key("a"), IngressResult::Updated)]);
    assert_eq!(
        r.routes()[0].to,
        Some(OneOrMany::Many(vec!["http://10.0.0.2:8080".into()]))
    );
}

#[test]
fn unused_certificates_are_dropped() {
    let mut r = Reconciler::new(ConvertOptions::default());
    let mut objs = base();
    objs.extend(objects(&tls_secret("a-cert", &["a.example.com"])));
    objs.extend(objects(&tls_secret("wild", &["*.example.com"])));
    objs.extend(objects(&tls_secret("unused", &["nothing.test"])));
    objs.extend(objects(&tls_secret("b-cert", &["b.example.com"])));
    let with_tls = |name: &str, host: &str, secrets: &[&str]| {
        let tls: Vec<String> = secrets
            .iter()
            .map(|s| format!("{{secretName: {s}}}"))
            .collect();
        objects(&format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  ingressClassName: pomerium\n  tls: [{}]\n  rules:\n  - host: {host}\n    http: {{paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: svc, port: {{number: 80}}}}}}}}]}}\n",
            tls.join(", ")
        ))
        .pop()
        .unwrap()
    };
    objs.push(with_tls(
        "a",
        "a.example.com",
        &["a-cert", "wild", "unused", "b-cert"],
    ));
    r.apply_all(objs);
    let names: Vec<String> = r.certificates().iter().map(|c| c.name.clone()).collect();
    assert_eq!(names, ["a-cert", "wild"]);
    // Another Ingress's host makes b-cert (referenced by `a`) used.
    r.apply(Change::Upsert(with_tls("b", "b.example.com", &[])));
    let names: Vec<String> = r.certificates().iter().map(|c| c.name.clone()).collect();
    assert_eq!(names, ["a-cert", "b-cert", "wild"]);
}

#[test]
fn http01_routes_listed_separately() {
    let mut r = Reconciler::new(ConvertOptions::default());
    let mut objs = base();
    objs.push(ing("app", "a.example.com", &[("/", "Prefix")], ""));
    objs.push(ing(
        "cm-acme-http-solver-x",
        "a.example.com",
        &[("/.well-known/acme-challenge/t", "ImplementationSpecific")],
        "  labels: {acme.cert-manager.io/http01-solver: 'true'}\n",
    ));
    r.apply_all(objs);
    assert_eq!(r.routes().len(), 2);
    let h = r.http01_routes();
    assert_eq!(h.len(), 1);
    assert_eq!(
        h[0].prefix.as_deref(),
        Some("/.well-known/acme-challenge/t")
    );
    assert_eq!(h[0].allow_public_unauthenticated_access, Some(true));
    // Longer prefix first within the host.
    assert_eq!(
        r.routes()[0].prefix.as_deref(),
        Some("/.well-known/acme-challenge/t")
    );
}

#[test]
fn route_snapshot_shares_unchanged_routes() {
    let mut r = Reconciler::new(ConvertOptions::default());
    let mut objs = base();
    objs.push(ing("a", "a.example.com", &[("/", "Prefix")], ""));
    objs.push(ing("b", "b.example.com", &[("/", "Prefix")], ""));
    r.apply_all(objs);
    let s1 = r.route_snapshot();
    let copied: Vec<RouteConfig> = s1.iter().map(|x| (**x).clone()).collect();
    assert_eq!(copied, *r.routes());
    // Re-applying an identical Ingress keeps the very same snapshot.
    let out = r.apply(Change::Upsert(ing(
        "a",
        "a.example.com",
        &[("/", "Prefix")],
        "",
    )));
    assert!(!out.routes_changed);
    assert!(Arc::ptr_eq(&s1, &r.route_snapshot()));
    // Changing `a` replaces only a's route; b's is shared with the old snapshot.
    r.apply(Change::Upsert(ing(
        "a",
        "a.example.com",
        &[("/x", "Prefix")],
        "",
    )));
    let s2 = r.route_snapshot();
    assert_eq!(s2.len(), 2);
    assert!(!Arc::ptr_eq(&s1[0], &s2[0]));
    assert!(Arc::ptr_eq(&s1[1], &s2[1]));
    let copied: Vec<RouteConfig> = s2.iter().map(|x| (**x).clone()).collect();
    assert_eq!(copied, *r.routes());
    assert_eq!(
        r.converted(&key("a")).unwrap().routes[0].prefix.as_deref(),
        Some("/x")
    );
}

mod incremental {
    //! Property: after any sequence of changes, every managed Ingress without an error has
    //! exactly the routes a fresh conversion gives (no stale dependency), and the merged list
    //! is the sorted union of every Ingress's last good routes.

    use super::*;
    use crate::k8s::convert::{convert_ingress, is_managed, ConversionContext};
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Ingress {
            i: u8,
            host: u8,
            svc: u8,
            path: u8,
            bad: bool,
        },
        DeleteIngress(u8),
        Service(u8),
        DeleteService(u8),
        Endpoints {
            svc: u8,
            ip: u8,
        },
        DeleteEndpoints(u8),
        Class(bool),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..6u8, 0..3u8, 0..3u8, 0..3u8, proptest::bool::weighted(0.15))
                .prop_map(|(i, host, svc, path, bad)| Op::Ingress { i, host, svc, path, bad }),
            1 => (0..6u8).prop_map(Op::DeleteIngress),
            2 => (0..3u8).prop_map(Op::Service),
            1 => (0..3u8).prop_map(Op::DeleteService),
            3 => (0..3u8, 0..4u8).prop_map(|(svc, ip)| Op::Endpoints { svc, ip }),
            1 => (0..3u8).prop_map(Op::DeleteEndpoints),
            1 => any::<bool>().prop_map(Op::Class),
        ]
    }

    fn change(op: &Op) -> Change {
        let one = |yaml: String| Change::Upsert(objects(&yaml).pop().unwrap());
        match op {
            Op::Ingress { i, host, svc, path, bad } => {
                let ann = if *bad { "  annotations: {ingress.pomerium.io/nope: x}\n" } else { "" };
                one(format!(
                    "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: ing{i}\n  namespace: default\n{ann}spec:\n  ingressClassName: pomerium\n  rules:\n  - host: h{host}.example.com\n    http: {{paths: [{{path: /p{path}, pathType: Prefix, backend: {{service: {{name: s{svc}, port: {{number: 80}}}}}}}}]}}\n"
                ))
            }
            Op::DeleteIngress(i) => Change::Delete(Kind::Ingress, "default".into(), format!("ing{i}")),
            Op::Service(s) => one(format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: s{s}, namespace: default}}\nspec: {{ports: [{{port: 80, targetPort: 8080}}]}}\n"
            )),
            Op::DeleteService(s) => Change::Delete(Kind::Service, "default".into(), format!("s{s}")),
            Op::Endpoints { svc, ip } => one(format!(
                "apiVersion: v1\nkind: Endpoints\nmetadata: {{name: s{svc}, namespace: default}}\nsubsets: [{{addresses: [{{ip: 10.0.0.{ip}}}], ports: [{{port: 8080}}]}}]\n"
            )),
            Op::DeleteEndpoints(s) => Change::Delete(Kind::Endpoints, "default".into(), format!("s{s}")),
            Op::Class(true) => one(CLASS.to_string()),
            Op::Class(false) => Change::Delete(Kind::IngressClass, String::new(), "pomerium".into()),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
        #[test]
        fn incremental_matches_fresh_conversion(ops in proptest::collection::vec(op(), 1..40)) {
            let mut r = Reconciler::new(ConvertOptions::default());
            r.apply_all(objects(CLASS));
            for op in &ops {
                r.apply(change(op));
            }
            let ctx = ConversionContext::new(r.state(), r.options());
            let mut union: Vec<RouteConfig> = Vec::new();
            for i in 0..6 {
                let k = key(&format!("ing{i}"));
                let managed = r.ingress(&k).is_some_and(|ing| is_managed(ing, &ctx).is_ok());
                prop_assert_eq!(managed, r.managed().contains(&k), "managed set for {}", k);
                if !managed {
                    continue;
                }
                let fresh = convert_ingress(r.ingress(&k).unwrap(), &ctx);
                match (&fresh, r.error(&k)) {
                    (Ok(c), None) => {
                        prop_assert_eq!(&c.routes, &r.converted(&k).unwrap().routes, "stale routes for {}", k);
                    }
                    (Err(e), Some(err)) => prop_assert_eq!(e.to_string(), err),
                    (f, e) => prop_assert!(false, "{}: fresh {:?} vs recorded error {:?}", k, f.as_ref().err(), e),
                }
                if let Some(c) = r.converted(&k) {
                    union.extend(c.routes.iter().cloned());
                }
            }
            union.sort_by(|a, b| route_order(a, b, a.id.as_deref().unwrap(), b.id.as_deref().unwrap()));
            let routes = r.routes();
            prop_assert_eq!(&union, routes.as_ref());
            let shared: Vec<RouteConfig> = r.route_snapshot().iter().map(|x| (**x).clone()).collect();
            prop_assert_eq!(&union, &shared);
        }
    }
}
