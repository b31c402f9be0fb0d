use serde_json::json;

use super::testutil::*;
use super::*;
use crate::config::OneOrMany;

fn to(r: &RouteConfig) -> Vec<String> {
    r.to.as_ref().map(OneOrMany::to_vec).unwrap_or_default()
}

fn one(ann: &str) -> RouteConfig {
    let c = convert(&simple_ingress(ann)).unwrap();
    assert_eq!(c.routes.len(), 1);
    c.routes.into_iter().next().unwrap()
}

fn err(ann: &str) -> String {
    convert(&simple_ingress(ann)).unwrap_err()
}

fn extras(ann: &str) -> BTreeMap<String, Value> {
    convert(&simple_ingress(ann)).unwrap().extras
}

// ---------------------------------------------------------------------------------------------
// §2 managed or not

fn managed(ing: &str, classes: &str, opts: ConvertOptions) -> Result<(), String> {
    let st = state(classes);
    let ctx = ConversionContext::new(&st, &opts);
    is_managed(&ingress(ing), &ctx).map_err(|e| e.to_string())
}

const ING_NO_CLASS: &str =
    "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: i, namespace: ns1}\nspec: {}\n";

#[test]
fn managed_by_class_name() {
    let ing = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: i, namespace: ns1}\nspec: {ingressClassName: pomerium}\n";
    assert_eq!(managed(ing, CLASS, ConvertOptions::default()), Ok(()));
    assert_eq!(
        managed(ing, "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: pomerium}\nspec: {controller: k8s.io/nginx}\n", ConvertOptions::default()),
        Err("IngressClass pomerium not found or is not assigned to this controller pomerium.io/ingress-controller".into())
    );
    assert_eq!(
        managed(ing, "", ConvertOptions::default()),
        Err("IngressClass pomerium not found or is not assigned to this controller pomerium.io/ingress-controller".into())
    );
    let other_name = ConvertOptions {
        controller_name: "example.com/other".into(),
        ..Default::default()
    };
    assert_eq!(
        managed(ing, CLASS, other_name),
        Err("IngressClass pomerium not found or is not assigned to this controller example.com/other".into())
    );
}

#[test]
fn managed_by_legacy_annotation() {
    let ing = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: i, namespace: ns1, annotations: {kubernetes.io/ingress.class: pomerium}}\nspec: {}\n";
    assert_eq!(managed(ing, CLASS, ConvertOptions::default()), Ok(()));
    let ing = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: i, namespace: ns1, annotations: {kubernetes.io/ingress.class: nginx}}\nspec: {}\n";
    assert!(managed(ing, CLASS, ConvertOptions::default())
        .unwrap_err()
        .starts_with("IngressClass nginx not found"));
}

#[test]
fn managed_without_class_needs_our_default_class() {
    let no_default = "the ingress did not specify an ingressClass, and no ingressClass managed by controller pomerium.io/ingress-controller is marked as default";
    assert_eq!(
        managed(ING_NO_CLASS, CLASS, ConvertOptions::default()),
        Err(no_default.into())
    );
    for (v, ok) in [
        ("'true'", true),
        ("'1'", true),
        ("'T'", true),
        ("'TRUE'", true),
        ("'True'", true),
        ("'yes'", false),
        ("'false'", false),
        ("'tRuE'", false),
    ] {
        let class = format!("apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {{name: pomerium, annotations: {{ingressclass.kubernetes.io/is-default-class: {v}}}}}\nspec: {{controller: pomerium.io/ingress-controller}}\n");
        assert_eq!(
            managed(ING_NO_CLASS, &class, ConvertOptions::default()).is_ok(),
            ok,
            "{v}"
        );
    }
    // A default class of another controller does not count.
    let class = "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: nginx, annotations: {ingressclass.kubernetes.io/is-default-class: 'true'}}\nspec: {controller: k8s.io/nginx}\n";
    assert_eq!(
        managed(ING_NO_CLASS, class, ConvertOptions::default()),
        Err(no_default.into())
    );
}

#[test]
fn managed_namespace_filter() {
    let ing = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: i, namespace: ns1}\nspec: {ingressClassName: pomerium}\n";
    let opts = ConvertOptions {
        namespaces: vec!["ns2".into(), "ns3".into()],
        ..Default::default()
    };
    assert_eq!(
        managed(ing, CLASS, opts),
        Err("ingress ns1/i is not in the namespace list this controller is managing".into())
    );
    let opts = ConvertOptions {
        namespaces: vec!["ns2".into(), "ns1".into()],
        ..Default::default()
    };
    assert_eq!(managed(ing, CLASS, opts), Ok(()));
}

// ---------------------------------------------------------------------------------------------
// §4.2-§4.4 hosts, paths, upstreams, ids

#[test]
fn basic_route_from_endpoints_by_port_name() {
    let c = convert(&simple_ingress("")).unwrap();
    let r = &c.routes[0];
    assert_eq!(r.from, "https://a.example.com");
    assert_eq!(r.prefix.as_deref(), Some("/"));
    assert_eq!(r.path, None);
    assert_eq!(
        r.id.as_deref(),
        Some(r#"{"n":"ing","ns":"default","h":"a.example.com","p":"/"}"#)
    );
    assert_eq!(r.name.as_deref(), Some("default-ing-a-example-com"));
    // notReady addresses ignored, URLs sorted.
    assert_eq!(to(r), ["http://10.0.0.1:8080", "http://10.0.0.2:8080"]);
    assert_eq!(r.tls_server_name, None);
    assert!(!c.http01_solver);
    assert!(c
        .dependencies
        .contains(&ObjectKey::new(Kind::Service, "default", "svc")));
    assert!(c
        .dependencies
        .contains(&ObjectKey::new(Kind::Endpoints, "default", "svc")));
}

fn ingress_paths(paths: &str, ann: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: ing\n  namespace: default\n  annotations: {{{ann}}}\nspec:\n  ingressClassName: pomerium\n  rules:\n  - host: a.example.com\n    http:\n      paths:\n{paths}"
    )
}

fn path(p: &str, t: &str, port: &str) -> String {
    format!("      - {{path: '{p}', pathType: {t}, backend: {{service: {{name: svc, port: {port}}}}}}}\n")
}

#[test]
fn path_types_map_to_route_fields() {
    let paths = [
        path("/exact", "Exact", "{number: 80}"),
        path("/prefix", "Prefix", "{number: 80}"),
        path("/impl", "ImplementationSpecific", "{number: 80}"),
        path("", "ImplementationSpecific", "{number: 443}"),
    ]
    .concat();
    let c = convert(&ingress_paths(&paths, "")).unwrap();
    let r = &c.routes;
    assert_eq!(r[0].path.as_deref(), Some("/exact"));
    assert_eq!(
        (r[0].prefix.as_deref(), r[0].regex.as_deref()),
        (None, None)
    );
    assert_eq!(r[1].prefix.as_deref(), Some("/prefix"));
    assert_eq!(r[2].prefix.as_deref(), Some("/impl"));
    // Empty ImplementationSpecific path: no prefix at all (matches everything).
    assert_eq!((r[3].prefix.as_deref(), r[3].path.as_deref()), (None, None));
    assert_eq!(r[3].name.as_deref(), Some("default-ing-a-example-com"));
    assert_eq!(
        r[0].name.as_deref(),
        Some("default-ing-a-example-com-exact")
    );
    // Port by number: Service port 80 → targetPort 8080 → endpoint port 8080.
    assert_eq!(to(&r[0]), ["http://10.0.0.1:8080", "http://10.0.0.2:8080"]);
    assert_eq!(to(&r[3]), ["http://10.0.0.1:8443", "http://10.0.0.2:8443"]);

    let regex = [
        path("/api/v[0-9]+/.*", "ImplementationSpecific", "{number: 80}"),
        path("/p", "Prefix", "{number: 80}"),
    ]
    .concat();
    let c = convert(&ingress_paths(
        &regex,
        "ingress.pomerium.io/path_regex: 'TRUE'",
    ))
    .unwrap();
    assert_eq!(c.routes[0].regex.as_deref(), Some("/api/v[0-9]+/.*"));
    assert_eq!(c.routes[0].prefix, None);
    // path_regex only affects ImplementationSpecific.
    assert_eq!(c.routes[1].prefix.as_deref(), Some("/p"));
}

#[test]
fn path_errors() {
    let e = convert(&ingress_paths(&path("/a", "''", "{number: 80}"), "")).unwrap_err();
    assert_eq!(
        e,
        "parsing ingress: pathToRoute: &HTTPIngressPath{Path:/a,PathType:nil,Backend:IngressBackend{Service:&IngressServiceBackend{Name:svc,Port:ServiceBackendPort{Name:,Number:80,},},Resource:nil,},}: path: pathType is required"
    );
    let e = convert(&ingress_paths(&path("/a", "Exact", "{name: nope}"), "")).unwrap_err();
    assert_eq!(
        e,
        "parsing ingress: pathToRoute: &HTTPIngressPath{Path:/a,PathType:*Exact,Backend:IngressBackend{Service:&IngressServiceBackend{Name:svc,Port:ServiceBackendPort{Name:nope,Number:0,},},Resource:nil,},}: backend: get service hosts: get service from path: get service default/svc port by name nope: could not find port nope on service default/svc"
    );
}

#[test]
fn upstream_port_matching_and_fallbacks() {
    // Port number with no Service port: DNS name fallback.
    let c = convert(&ingress_paths(&path("/", "Prefix", "{number: 8080}"), "")).unwrap();
    assert_eq!(
        to(&c.routes[0]),
        ["http://svc.default.svc.cluster.local:8080"]
    );
    // Named targetPort matches nothing → DNS fallback with the Service port.
    let extra = "apiVersion: v1\nkind: Service\nmetadata: {name: named, namespace: default}\nspec: {ports: [{name: web, port: 80, targetPort: web}]}\n---\napiVersion: v1\nkind: Endpoints\nmetadata: {name: named, namespace: default}\nsubsets: [{addresses: [{ip: 10.1.0.1}], ports: [{name: web, port: 8080}]}]\n";
    let ing = ingress_paths(
        "      - {path: /, pathType: Prefix, backend: {service: {name: named, port: {number: 80}}}}\n      - {path: /n, pathType: Prefix, backend: {service: {name: named, port: {name: web}}}}\n",
        "",
    );
    let c = convert_with(&ing, extra).unwrap();
    assert_eq!(
        to(&c.routes[0]),
        ["http://named.default.svc.cluster.local:80"]
    );
    // By name: the endpoint port of that name.
    assert_eq!(to(&c.routes[1]), ["http://10.1.0.1:8080"]);
}

#[test]
fn service_proxy_external_name_secure_upstream() {
    let r = one("    ingress.pomerium.io/service_proxy_upstream: 'true'");
    assert_eq!(to(&r), ["http://svc.default.svc.cluster.local:80"]);
    assert_eq!(r.tls_server_name, None);

    let r = one("    ingress.pomerium.io/secure_upstream: 'true'");
    assert_eq!(to(&r), ["https://10.0.0.1:8080", "https://10.0.0.2:8080"]);
    assert_eq!(
        r.tls_server_name.as_deref(),
        Some("svc.default.svc.cluster.local")
    );

    let r = one("    ingress.pomerium.io/secure_upstream: 'true'\n    ingress.pomerium.io/tls_server_name: backend.internal");
    assert_eq!(r.tls_server_name.as_deref(), Some("backend.internal"));

    // With the DNS name, no server name is forced.
    let r = one("    ingress.pomerium.io/secure_upstream: 'true'\n    ingress.pomerium.io/service_proxy_upstream: 'true'");
    assert_eq!(to(&r), ["https://svc.default.svc.cluster.local:80"]);
    assert_eq!(r.tls_server_name, None);

    // ExternalName: no Endpoints needed.
    let extra = "apiVersion: v1\nkind: Service\nmetadata: {name: ext, namespace: default}\nspec: {type: ExternalName, externalName: api.example.org}\n";
    let ing = ingress_paths(
        "      - {path: /, pathType: Prefix, backend: {service: {name: ext, port: {number: 443}}}}\n",
        "ingress.pomerium.io/secure_upstream: 'true'",
    );
    let c = convert_with(&ing, extra).unwrap();
    assert_eq!(to(&c.routes[0]), ["https://api.example.org:443"]);
}

#[test]
fn endpoint_slices_when_no_endpoints_object() {
    let extra = "apiVersion: v1\nkind: Service\nmetadata: {name: sl, namespace: default}\nspec: {ports: [{name: http, port: 80, targetPort: 8080}]}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: sl-abc, namespace: default, labels: {kubernetes.io/service-name: sl}}\naddressType: IPv6\nendpoints:\n- {addresses: ['fd00::1']}\n- {addresses: ['fd00::2'], conditions: {ready: false}}\nports: [{name: http, port: 8080}]\n";
    let ing = ingress_paths(
        "      - {path: /, pathType: Prefix, backend: {service: {name: sl, port: {number: 80}}}}\n",
        "",
    );
    let c = convert_with(&ing, extra).unwrap();
    assert_eq!(to(&c.routes[0]), ["http://[fd00::1]:8080"]);
    assert!(c
        .dependencies
        .contains(&ObjectKey::new(Kind::EndpointSlice, "default", "sl")));
}

#[test]
fn hosts_wildcards_and_empty_host() {
    let ing = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: ing, namespace: default}\nspec:\n  ingressClassName: pomerium\n  rules:\n  - host: '*.example.com'\n    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: svc, port: {number: 80}}}}]}\n";
    let c = convert(ing).unwrap();
    assert_eq!(c.routes[0].from, "https://*.example.com");
    assert_eq!(c.routes[0].name.as_deref(), Some("default-ing-example-com"));

    let empty = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: ing, namespace: default, annotations: {ANN}}\nspec:\n  ingressClassName: pomerium\n  rules:\n  - http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: svc, port: {number: 80}}}}]}\n";
    assert_eq!(
        convert(&empty.replace("ANN", "")).unwrap_err(),
        "parsing ingress: ingress rule has empty host; if this is intentional, set the annotation 'ingress.pomerium.io/subtle_allow_empty_host=true'"
    );
    let c = convert(&empty.replace("ANN", "ingress.pomerium.io/subtle_allow_empty_host: 'true'"))
        .unwrap();
    assert_eq!(c.routes[0].from, "https://*");
    assert_eq!(
        c.routes[0].id.as_deref(),
        Some(r#"{"n":"ing","ns":"default","h":"*","p":"/"}"#)
    );

    let no_http = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: ing, namespace: default}\nspec:\n  ingressClassName: pomerium\n  rules:\n  - host: a.example.com\n";
    assert_eq!(
        convert(no_http).unwrap_err(),
        "parsing ingress: rules.http is required"
    );
}

#[test]
fn name_annotation_and_id_escaping() {
    let r = one("    ingress.pomerium.io/name: My App");
    assert_eq!(r.name.as_deref(), Some("My App"));
    let ing = ingress_paths(&path("/a&b", "Exact", "{number: 80}"), "");
    let c = convert(&ing).unwrap();
    assert_eq!(
        c.routes[0].id.as_deref(),
        Some(r#"{"n":"ing","ns":"default","h":"a.example.com","p":"/a\u0026b"}"#)
    );
    assert_eq!(
        c.routes[0].name.as_deref(),
        Some("default-ing-a-example-com-aandb")
    );
}

#[test]
fn default_backend() {
    let ing = |tls: &str, rules: &str| {
        format!("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: ing, namespace: default}}\nspec:\n  ingressClassName: pomerium\n  defaultBackend: {{service: {{name: svc, port: {{number: 80}}}}}}\n  tls: {tls}\n  rules: {rules}\n")
    };
    let c = convert(&ing("[{hosts: [d.example.com]}]", "[]")).unwrap();
    assert_eq!(c.routes.len(), 1);
    assert_eq!(c.routes[0].from, "https://d.example.com");
    assert_eq!(c.routes[0].prefix.as_deref(), Some("/"));
    assert_eq!(
        c.routes[0].id.as_deref(),
        Some(r#"{"n":"ing","ns":"default","h":"d.example.com","p":"/"}"#)
    );
    assert_eq!(
        convert(&ing("[]", "[]")).unwrap_err(),
        "parsing ingress: defaultBackend: deriving host: expected one TLS spec, got 0"
    );
    assert_eq!(
        convert(&ing("[{hosts: [a.example.com, b.example.com]}]", "[]")).unwrap_err(),
        "parsing ingress: defaultBackend: deriving host: expected exactly one Host in the TLS spec, got 2"
    );
    // defaultBackend plus a `/` rule on the TLS host: duplicate id.
    let rules = "[{host: d.example.com, http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: svc, port: {number: 80}}}}]}}]";
    assert_eq!(
        convert(&ing("[{hosts: [d.example.com]}]", rules)).unwrap_err(),
        "indexing new routes: duplicate route {Name:ing Namespace:default Host:d.example.com Path:/}"
    );
}

#[test]
fn duplicate_exact_and_prefix_same_path() {
    let paths = [
        path("/a", "Exact", "{number: 80}"),
        path("/a", "Prefix", "{number: 80}"),
    ]
    .concat();
    assert_eq!(
        convert(&ingress_paths(&paths, "")).unwrap_err(),
        "indexing new routes: duplicate route {Name:ing Namespace:default Host:a.example.com Path:/a}"
    );
}

// ---------------------------------------------------------------------------------------------
// §4.1 fetch errors

#[test]
fn fetch_errors() {
    let ing = ingress_paths(
        "      - {path: /x, pathType: Prefix, backend: {service: {name: missing, port: {name: http}}}}\n",
        "",
    );
    assert_eq!(
        convert(&ing).unwrap_err(),
        "services: rule host=a.example.com path=/x refers to service default/missing port=&ServiceBackendPort{Name:http,Number:0,}, failed to get service information: Service \"missing\" not found"
    );
    // A selector-less Service without Endpoints.
    let extra = "apiVersion: v1\nkind: Service\nmetadata: {name: bare, namespace: default}\nspec: {ports: [{port: 80}]}\n";
    let ing = ingress_paths(
        "      - {path: /x, pathType: Prefix, backend: {service: {name: bare, port: {number: 80}}}}\n",
        "",
    );
    assert_eq!(
        convert_with(&ing, extra).unwrap_err(),
        "services: rule host=a.example.com path=/x refers to service default/bare port=&ServiceBackendPort{Name:,Number:80,}, failed to get service information: Endpoints \"bare\" not found"
    );
    let ing = ingress_paths(
        "      - {path: /x, pathType: Prefix, backend: {resource: {kind: Bucket, name: b}}}\n",
        "",
    );
    assert_eq!(
        convert(&ing).unwrap_err(),
        "services: rule host=a.example.com path=/x has no backend service defined"
    );
    let db = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: ing, namespace: default}\nspec:\n  ingressClassName: pomerium\n  defaultBackend: {service: {name: gone, port: {number: 80}}}\n  tls: [{hosts: [d.example.com]}]\n";
    assert_eq!(
        convert(db).unwrap_err(),
        "services: defaultBackend: Service \"gone\" not found"
    );
    let tls = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: ing, namespace: default}\nspec:\n  ingressClassName: pomerium\n  tls: [{hosts: [a.example.com], secretName: nope}]\n";
    assert_eq!(
        convert(tls).unwrap_err(),
        "tls: get secret default/nope: Secret \"nope\" not found"
    );
    assert_eq!(
        err("    ingress.pomerium.io/tls_custom_ca_secret: ca"),
        "tls: get secret default/ca: Secret \"ca\" not found"
    );
    // Even an unknown key ending in _secret is fetched first.
    assert_eq!(
        err("    ingress.pomerium.io/whatever_secret: s1"),
        "tls: get secret default/s1: Secret \"s1\" not found"
    );
}

// ---------------------------------------------------------------------------------------------
// §3 annotations

#[test]
fn unknown_and_rejected_keys() {
    assert_eq!(
        err("    ingress.pomerium.io/foo: bar"),
        "parsing ingress: annotations: unknown ingress.pomerium.io/foo"
    );
    assert_eq!(
        err("    ingress.pomerium.io/allowed_groups: '[\"admins\"]'"),
        "parsing ingress: annotations: ingress.pomerium.io/allowed_groups no longer supported, see https://docs.pomerium.com/docs/overview/upgrading#idp-directory-sync"
    );
    // Other prefixes are ignored.
    one("    other.example.com/foo: bar\n    ingress.pomerium.io.evil/foo: x");
    // A custom prefix.
    let st = state(&format!("{CLASS}\n---\n{SVC}"));
    let opts = ConvertOptions {
        prefix: "corp.example.com".into(),
        ..Default::default()
    };
    let ctx = ConversionContext::new(&st, &opts);
    let i = ingress(&simple_ingress(
        "    corp.example.com/allow_websockets: 'true'\n    ingress.pomerium.io/foo: ignored",
    ));
    let c = convert_ingress(&i, &ctx).unwrap();
    assert_eq!(c.routes[0].allow_websockets, Some(true));
    let i = ingress(&simple_ingress("    corp.example.com/nope: x"));
    assert_eq!(
        convert_ingress(&i, &ctx).unwrap_err().to_string(),
        "parsing ingress: annotations: unknown corp.example.com/nope"
    );
}

#[test]
fn group_b_bools_and_flags() {
    let r = one(
        "    ingress.pomerium.io/allow_any_authenticated_user: 'true'\n    ingress.pomerium.io/allow_spdy: 'True'\n    ingress.pomerium.io/allow_websockets: 'TRUE'\n    ingress.pomerium.io/cors_allow_preflight: 'false'\n    ingress.pomerium.io/preserve_host_header: 'true'\n    ingress.pomerium.io/tls_skip_verify: 'true'\n    ingress.pomerium.io/pass_identity_headers: 'false'",
    );
    assert_eq!(r.allow_any_authenticated_user, Some(true));
    assert_eq!(r.allow_spdy, Some(true));
    assert_eq!(r.allow_websockets, Some(true));
    assert_eq!(r.cors_allow_preflight, Some(false));
    assert_eq!(r.preserve_host_header, Some(true));
    assert_eq!(r.tls_skip_verify, Some(true));
    assert_eq!(r.pass_identity_headers, Some(false));
    assert_eq!(one("").pass_identity_headers, None);
    // YAML 1.1 words are not booleans.
    for bad in ["yes", "on", "'1'"] {
        let e = err(&format!("    ingress.pomerium.io/allow_websockets: {bad}"));
        assert!(
            e.starts_with("parsing ingress: annotations: proto: "),
            "{e}"
        );
        assert!(e.contains("allow_websockets"), "{e}");
    }
    // Flags: anything but "true" (any case) is false, no error.
    let r = one("    ingress.pomerium.io/secure_upstream: 'yes'");
    assert!(to(&r)[0].starts_with("http://"));
    let r = one("    ingress.pomerium.io/secure_upstream: 'TrUe'");
    assert!(to(&r)[0].starts_with("https://"));
}

#[test]
fn group_b_durations_strings_lists_maps() {
    let r =
        one("    ingress.pomerium.io/timeout: 1h30m\n    ingress.pomerium.io/idle_timeout: 1.5s");
    assert_eq!(r.timeout.as_deref(), Some("1h30m"));
    assert_eq!(r.idle_timeout.as_deref(), Some("1.5s"));
    assert_eq!(
        one("    ingress.pomerium.io/timeout: 0s")
            .timeout
            .as_deref(),
        Some("0s")
    );
    let e = err("    ingress.pomerium.io/timeout: '30'");
    assert!(
        e.starts_with("parsing ingress: annotations: proto: "),
        "{e}"
    );
    assert!(err("    ingress.pomerium.io/idle_timeout: soon").contains("proto: "));

    let r = one(
        "    ingress.pomerium.io/description: my app\n    ingress.pomerium.io/host_rewrite: internal.example.com\n    ingress.pomerium.io/prefix_rewrite: /v2/\n    ingress.pomerium.io/remove_request_headers: '[\"X-A\", \"X-B\"]'\n    ingress.pomerium.io/set_request_headers: '{\"X-Num\": 5, \"X-Disable\": true, \"X-S\": s}'\n    ingress.pomerium.io/set_response_headers: |\n      X-Frame-Options: DENY",
    );
    assert_eq!(r.description.as_deref(), Some("my app"));
    assert_eq!(r.host_rewrite.as_deref(), Some("internal.example.com"));
    assert_eq!(r.prefix_rewrite.as_deref(), Some("/v2/"));
    assert_eq!(
        r.remove_request_headers,
        Some(vec!["X-A".into(), "X-B".into()])
    );
    let h = r.set_request_headers.unwrap();
    assert_eq!(h["X-Num"], "5");
    assert_eq!(h["X-Disable"], "true");
    assert_eq!(h["X-S"], "s");
    assert_eq!(r.set_response_headers.unwrap()["X-Frame-Options"], "DENY");

    // A number for a string field fails.
    assert!(err("    ingress.pomerium.io/host_rewrite: '123'").contains("proto: "));
    // YAML syntax errors name the key.
    let e = err("    ingress.pomerium.io/set_request_headers: '{a: [}'");
    assert!(
        e.starts_with("parsing ingress: annotations: set_request_headers: yaml: "),
        "{e}"
    );

    let r = one(
        "    ingress.pomerium.io/host_path_regex_rewrite_pattern: '^/(.+)/.+$'\n    ingress.pomerium.io/host_path_regex_rewrite_substitution: '\\1'\n    ingress.pomerium.io/host_rewrite_header: X-Host",
    );
    assert_eq!(
        r.host_path_regex_rewrite_pattern.as_deref(),
        Some("^/(.+)/.+$")
    );
    assert_eq!(
        r.host_path_regex_rewrite_substitution.as_deref(),
        Some("\\1")
    );
    assert_eq!(r.host_rewrite_header.as_deref(), Some("X-Host"));
    let r = one(
        "    ingress.pomerium.io/regex_rewrite_pattern: '^/service/([^/]+)(/.*)$'\n    ingress.pomerium.io/regex_rewrite_substitution: '\\2/instance/\\1'",
    );
    assert_eq!(
        r.regex_rewrite_pattern.as_deref(),
        Some("^/service/([^/]+)(/.*)$")
    );
}

#[test]
fn group_b_options_without_route_fields_go_to_extras() {
    let x = extras(
        "    ingress.pomerium.io/bearer_token_format: idp_access_token\n    ingress.pomerium.io/logo_url: https://example.com/logo.png\n    ingress.pomerium.io/depends_on: '[a.example.com, b.example.com]'\n    ingress.pomerium.io/idp_access_token_allowed_audiences: '[aud1]'\n    ingress.pomerium.io/rewrite_response_headers: '[{\"header\": \"Location\", \"prefix\": \"http://x/\", \"value\": \"https://x/\"}]'\n    ingress.pomerium.io/circuit_breaker_thresholds: '{\"max_connections\": 10, \"maxRetries\": 3}'",
    );
    assert_eq!(
        one("    ingress.pomerium.io/bearer_token_format: idp_access_token").bearer_token_format,
        Some("idp_access_token".into())
    );
    assert!(!x.contains_key("bearer_token_format"), "a route option now");
    assert_eq!(x["logo_url"], json!("https://example.com/logo.png"));
    assert_eq!(x["depends_on"], json!(["a.example.com", "b.example.com"]));
    assert_eq!(x["idp_access_token_allowed_audiences"], json!(["aud1"]));
    assert!(
        !x.contains_key("rewrite_response_headers"),
        "a route option now"
    );
    let c = convert(&simple_ingress(
        "    ingress.pomerium.io/rewrite_response_headers: '[{\"header\": \"Location\", \"prefix\": \"http://x/\", \"value\": \"https://x/\"}]'",
    ))
    .unwrap();
    assert_eq!(
        c.routes[0].rewrite_response_headers,
        Some(vec![crate::config::file::RewriteResponseHeader {
            header: "Location".into(),
            prefix: "http://x/".into(),
            value: "https://x/".into(),
        }])
    );
    assert_eq!(
        one("    ingress.pomerium.io/circuit_breaker_thresholds: '{\"max_connections\": 10, \"maxRetries\": 3}'")
            .circuit_breaker_thresholds,
        Some(json!({"max_connections": 10, "max_retries": 3}))
    );
    assert!(
        !x.contains_key("circuit_breaker_thresholds"),
        "a route option now"
    );
    let e = err("    ingress.pomerium.io/circuit_breaker_thresholds: '{\"max_conns\": 1}'");
    assert!(
        e.contains("proto: ") && e.contains("unknown field \"max_conns\""),
        "{e}"
    );
    assert!(err("    ingress.pomerium.io/bearer_token_format: jwt").contains("proto: "));
    assert!(err("    ingress.pomerium.io/depends_on: '[a, b, c, d, e, f]'").contains("at most 5"));
}

#[test]
fn group_e_health_checks_and_load_balancing() {
    let r = one(
        "    ingress.pomerium.io/health_checks: '[{\"timeout\": \"10s\", \"interval\": \"1m\", \"healthy_threshold\": 1, \"unhealthy_threshold\": 2, \"http_health_check\": {\"path\": \"/\"}}]'\n    ingress.pomerium.io/outlier_detection: '{\"consecutive_5xx\": 5}'\n    ingress.pomerium.io/healthy_panic_threshold: '50'",
    );
    assert_eq!(
        r.health_checks.as_ref().unwrap()[0]["interval"],
        json!("1m")
    );
    assert_eq!(r.outlier_detection, Some(json!({"consecutive_5xx": 5})));
    assert_eq!(r.healthy_panic_threshold, Some(50.0));
    // The pre-v0.32 Percent form still works.
    let r = one("    ingress.pomerium.io/healthy_panic_threshold: '{\"value\": 25}'");
    assert_eq!(r.healthy_panic_threshold, Some(25.0));
    assert!(err("    ingress.pomerium.io/healthy_panic_threshold: '120'").contains("proto: "));
    assert!(
        err("    ingress.pomerium.io/health_checks: '[{\"timeout\": 10}]'").contains("proto: ")
    );
    assert!(
        err("    ingress.pomerium.io/health_checks: '[{\"bogus\": 1}]'").contains("unknown field")
    );
    // Well-formed but not servable: the check needs a kind and its required fields.
    assert_eq!(
        err("    ingress.pomerium.io/health_checks: '[{\"timeout\": \"1s\", \"interval\": \"1s\", \"healthy_threshold\": 1, \"unhealthy_threshold\": 1}]'"),
        "parsing ingress: annotations: `health_checks[0]`: http_health_check or tcp_health_check is required"
    );
    assert_eq!(
        err("    ingress.pomerium.io/outlier_detection: '{\"max_ejection_percent\": 101}'"),
        "parsing ingress: annotations: `outlier_detection.max_ejection_percent`: 101 is not a percentage (0-100)"
    );

    let r = one("    ingress.pomerium.io/load_balancing_policy: least_request");
    assert_eq!(r.load_balancing_policy.as_deref(), Some("LEAST_REQUEST"));
    assert!(err("    ingress.pomerium.io/load_balancing_policy: FASTEST").contains("proto: "));
}

#[test]
fn removed_v032_load_balancer_keys_say_what_to_use() {
    assert_eq!(
        err("    ingress.pomerium.io/lb_policy: MAGLEV"),
        "parsing ingress: annotations: ingress.pomerium.io/lb_policy was removed in Pomerium v0.32, use ingress.pomerium.io/load_balancing_policy (round_robin, least_request, ring_hash, random, maglev)"
    );
    for key in [
        "least_request_lb_config",
        "ring_hash_lb_config",
        "maglev_lb_config",
    ] {
        assert_eq!(
            err(&format!("    ingress.pomerium.io/{key}: '{{}}'")),
            format!("parsing ingress: annotations: ingress.pomerium.io/{key} was removed in Pomerium v0.32 (load balancer tuning is no longer configurable), use ingress.pomerium.io/load_balancing_policy")
        );
    }
}

#[test]
fn group_p_policy_fields() {
    let r = one(
        "    ingress.pomerium.io/allowed_users: '[\"alice@example.com\"]'\n    ingress.pomerium.io/allowed_domains: '[example.com]'\n    ingress.pomerium.io/allowed_idp_claims: '{\"groups\": [\"admins\", 1]}'\n    ingress.pomerium.io/allow_public_unauthenticated_access: 'false'",
    );
    assert_eq!(r.allowed_users, Some(vec!["alice@example.com".into()]));
    assert_eq!(r.allowed_domains, Some(vec!["example.com".into()]));
    assert_eq!(
        r.allowed_idp_claims.unwrap()["groups"],
        vec![json!("admins"), json!(1)]
    );
    assert_eq!(r.allow_public_unauthenticated_access, Some(false));
    assert!(
        err("    ingress.pomerium.io/allowed_idp_claims: '{\"groups\": \"admins\"}'")
            .contains("proto: ")
    );

    let r = one("    ingress.pomerium.io/policy: |\n      - allow:\n          or:\n            - email:\n                is: alice@example.com\n            - claim/groups: admins");
    assert_eq!(
        r.policy,
        Some(
            json!([{"allow": {"or": [{"email": {"is": "alice@example.com"}}, {"claim/groups": "admins"}]}}])
        )
    );
    let r = one("    ingress.pomerium.io/policy: '{\"allow\":{\"and\":[{\"domain\":{\"is\":\"example.com\"}}]},\"deny\":{\"or\":[]}}'");
    assert_eq!(
        r.policy.unwrap()["allow"]["and"][0]["domain"]["is"],
        json!("example.com")
    );
}

#[test]
fn policy_error_texts() {
    let prefix = "parsing ingress: annotations: applying policy annotations: parsing policy: ";
    let cases = [
        (r#"{"allow":{"maybe":[{"accept":true}]}}"#, r#"invalid rules in policy: unsupported conditional "maybe", only and, or, not, nor and action are allowed"#),
        (r#"{"permit":{"and":[]}}"#, "invalid rules in policy: invalid action in rule: unsupported action: permit"),
        (r#"{"allow":[{"accept":true}]}"#, "invalid rules in policy: invalid value for action in rule, expected Object, got parser.Array"),
        (r#"{"allow":{"and":[{"email":{"is":"a"},"domain":{"is":"b"}}]}}"#, r#"invalid rules in policy: invalid criteria in "and"): each criteria may only contain a single key and value"#),
        (r#"{"allow":{"and":{"email":{"is":"a"}}}}"#, r#"invalid rules in policy: invalid criteria in "and"): unsupported type for criteria: parser.Object"#),
        ("just-a-string", "invalid rules in policy: unsupported type for rule: parser.String"),
        (r#"{"allow":{"or":[{"emial":{"is":"a"}}]}}"#, "unknown policy criterion: emial"),
    ];
    for (doc, want) in cases {
        let e = err(&format!("    ingress.pomerium.io/policy: '{doc}'"));
        assert_eq!(e, format!("{prefix}{want}"), "{doc}");
    }
    assert_eq!(
        err("    ingress.pomerium.io/policy: ''"),
        format!("{prefix}EOF")
    );
    // Deeper checks come from the policy engine.
    let e = err(
        "    ingress.pomerium.io/policy: '{\"allow\":{\"or\":[{\"email\":{\"matches\":\"a\"}}]}}'",
    );
    assert!(
        e.starts_with(&format!(
            "{prefix}error generating criterion rules: unknown string matcher operator: matches"
        )),
        "{e}"
    );
}

#[test]
fn contradictory_legacy_policy_fields_fail_validation() {
    let e = err("    ingress.pomerium.io/allow_public_unauthenticated_access: 'true'\n    ingress.pomerium.io/allowed_domains: '[example.com]'");
    assert_eq!(
        e,
        "config validation: default/ing route default-ing-a-example-com: config: policy route marked as public but contains whitelists"
    );
}

#[test]
fn group_t_tls_secrets() {
    let (ca, _) = cert(&["ca.example.com"]);
    let (cc, ck) = cert(&["client"]);
    let extra = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: ca, namespace: default}}\ndata: {{ca.crt: {}}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: client, namespace: default}}\ntype: kubernetes.io/tls\ndata: {{tls.crt: {}, tls.key: {}}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: empty, namespace: default}}\ndata: {{ca.crt: '', tls.crt: {}}}\n",
        b64(&ca),
        b64(&cc),
        b64(&ck),
        b64(&cc)
    );
    let ing = simple_ingress(
        "    ingress.pomerium.io/tls_custom_ca_secret: ca\n    ingress.pomerium.io/tls_client_secret: client\n    ingress.pomerium.io/tls_downstream_client_ca_secret: ca",
    );
    let c = convert_with(&ing, &extra).unwrap();
    let r = &c.routes[0];
    assert_eq!(r.tls_custom_ca.as_deref(), Some(b64(&ca).as_str()));
    assert_eq!(r.tls_client_cert.as_deref(), Some(b64(&cc).as_str()));
    assert_eq!(r.tls_client_key.as_deref(), Some(b64(&ck).as_str()));
    assert_eq!(
        r.tls_downstream_client_ca.as_deref(),
        Some(b64(&ca).as_str())
    );
    assert!(!c.extras.contains_key("tls_downstream_client_ca"));
    // The client Secret is kubernetes.io/tls: a certificate candidate too.
    assert_eq!(c.certificates.len(), 1);
    assert_eq!(c.certificates[0].name, "client");

    let e = convert_with(
        &simple_ingress("    ingress.pomerium.io/tls_custom_ca_secret: empty"),
        &extra,
    )
    .unwrap_err();
    assert_eq!(
        e,
        "parsing ingress: annotations: annotation tls_custom_ca_secret references secret empty, key ca.crt has no data"
    );
    // Quirk: the text says ca.crt although tls.key is what is missing.
    let e = convert_with(
        &simple_ingress("    ingress.pomerium.io/tls_client_secret: empty"),
        &extra,
    )
    .unwrap_err();
    assert_eq!(
        e,
        "parsing ingress: annotations: annotation tls_client_secret references secret empty, key ca.crt has no data"
    );
}

#[test]
fn group_s_secret_annotations() {
    let extra = "apiVersion: v1\nkind: Secret\nmetadata: {name: hdrs, namespace: default}\ntype: Opaque\nstringData: {X-Api-Key: k1, X-Other: o}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: tlsy, namespace: default}\ntype: kubernetes.io/tls\nstringData: {a: b}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: sa, namespace: default}\ntype: kubernetes.io/service-account-token\nstringData: {token: tok}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: sa-empty, namespace: default}\ntype: kubernetes.io/service-account-token\nstringData: {other: x}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: oauth, namespace: default}\nstringData: {client_id: cid}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: nothing, namespace: default}\nstringData: {foo: bar}\n";
    let conv = |ann: &str| convert_with(&simple_ingress(ann), extra);

    let c = conv("    ingress.pomerium.io/set_request_headers: '{X-Plain: p}'\n    ingress.pomerium.io/set_request_headers_secret: hdrs\n    ingress.pomerium.io/set_response_headers_secret: hdrs").unwrap();
    let h = c.routes[0].set_request_headers.clone().unwrap();
    assert_eq!(
        (h["X-Api-Key"].as_str(), h["X-Plain"].as_str()),
        ("k1", "p")
    );
    assert_eq!(
        c.routes[0].set_response_headers.clone().unwrap()["X-Other"],
        "o"
    );

    assert_eq!(
        conv("    ingress.pomerium.io/set_request_headers: '{X-Api-Key: p}'\n    ingress.pomerium.io/set_request_headers_secret: hdrs").unwrap_err(),
        "parsing ingress: annotations: annotation set_request_headers_secret: secret contains key X-Api-Key that was already specified by a non-secret rule"
    );
    assert_eq!(
        conv("    ingress.pomerium.io/set_response_headers: '{X-Other: p}'\n    ingress.pomerium.io/set_response_headers_secret: hdrs").unwrap_err(),
        "parsing ingress: annotations: annotation set_response_headers_secret: secret contains key X-Other that was already specified by a non-secret rule"
    );
    // The key match is exact (case-sensitive).
    conv("    ingress.pomerium.io/set_request_headers: '{x-api-key: p}'\n    ingress.pomerium.io/set_request_headers_secret: hdrs").unwrap();
    assert_eq!(
        conv("    ingress.pomerium.io/set_request_headers_secret: tlsy").unwrap_err(),
        "parsing ingress: annotations: annotation set_request_headers_secret secret is expected to have type Opaque, got kubernetes.io/tls"
    );

    let c = conv("    ingress.pomerium.io/kubernetes_service_account_token_secret: sa").unwrap();
    assert_eq!(
        c.routes[0].kubernetes_service_account_token.as_deref(),
        Some("tok")
    );
    assert_eq!(
        conv("    ingress.pomerium.io/kubernetes_service_account_token_secret: hdrs").unwrap_err(),
        "parsing ingress: annotations: annotation kubernetes_service_account_token_secret secret is expected to have type kubernetes.io/service-account-token, got Opaque"
    );
    assert_eq!(
        conv("    ingress.pomerium.io/kubernetes_service_account_token_secret: sa-empty").unwrap_err(),
        "parsing ingress: annotations: annotation kubernetes_service_account_token_secret: secret must have token key"
    );

    let c = conv("    ingress.pomerium.io/mcp_server_upstream_oauth2_secret: oauth\n    ingress.pomerium.io/mcp_server_upstream_oauth2_scopes: ' read , write,'").unwrap();
    assert_eq!(
        c.extras["mcp"],
        json!({"server": {"upstream_oauth2": {"client_id": "cid", "scopes": ["read", "write"]}}})
    );
    assert_eq!(
        conv("    ingress.pomerium.io/mcp_server_upstream_oauth2_secret: nothing").unwrap_err(),
        "parsing ingress: annotations: annotation mcp_server_upstream_oauth2_secret: secret must have at least one of client_id or client_secret keys"
    );
}

#[test]
fn group_m_mcp() {
    let x = extras("    ingress.pomerium.io/mcp_server: 'true'\n    ingress.pomerium.io/mcp_server_max_request_bytes: '1048576'\n    ingress.pomerium.io/mcp_server_path: /mcp");
    assert_eq!(
        x["mcp"],
        json!({"server": {"max_request_bytes": 1048576, "path": "/mcp"}})
    );
    assert_eq!(
        extras("    ingress.pomerium.io/mcp_client: ''")["mcp"],
        json!({"client": {}})
    );
    // Any mcp_server_* key implies server mode.
    assert!(extras("    ingress.pomerium.io/mcp_server_path: /m")["mcp"]["server"].is_object());
    assert_eq!(
        err("    ingress.pomerium.io/mcp_server: 'true'\n    ingress.pomerium.io/mcp_client: 'true'"),
        "parsing ingress: annotations: cannot specify both MCP server and client configurations"
    );
    assert_eq!(
        err("    ingress.pomerium.io/mcp_client: 'true'\n    ingress.pomerium.io/mcp_server_path: /m"),
        "parsing ingress: annotations: cannot specify both MCP server and client configurations"
    );
    assert_eq!(
        err("    ingress.pomerium.io/mcp_server: 'yes'"),
        "parsing ingress: annotations: mcp_server annotation should be 'true' or omitted, got \"yes\""
    );
    assert_eq!(
        err("    ingress.pomerium.io/mcp_client: 'false'"),
        "parsing ingress: annotations: mcp_client annotation should be 'true' or omitted, got \"false\""
    );
    let e = err("    ingress.pomerium.io/mcp_server_max_request_bytes: lots");
    assert!(
        e.starts_with("parsing ingress: annotations: invalid max_request_bytes value \"lots\": "),
        "{e}"
    );
}

#[test]
fn v032_keys_accepted() {
    let ann = "    ingress.pomerium.io/allow_upgrades: '[websocket, CONNECT-UDP]'\n    ingress.pomerium.io/enable_google_cloud_serverless_authentication: 'true'\n    ingress.pomerium.io/upstream_tunnel: '{}'\n    ingress.pomerium.io/ssh_upstream: 'false'\n    ingress.pomerium.io/mcp_server_upstream_oauth2_auth_style: in_header\n    ingress.pomerium.io/mcp_server_authorization_server_url: https://as.example.com";
    let x = extras(ann);
    assert_eq!(
        one(ann).allow_upgrades,
        Some(vec!["websocket".into(), "CONNECT-UDP".into()])
    );
    assert!(!x.contains_key("allow_upgrades"));
    assert!(err("    ingress.pomerium.io/allow_upgrades: websocket").contains("proto: "));
    assert_eq!(
        x["enable_google_cloud_serverless_authentication"],
        json!(true)
    );
    assert_eq!(
        x["mcp"]["server"]["upstream_oauth2"]["auth_style"],
        json!("in_header")
    );
}

// ---------------------------------------------------------------------------------------------
// §4.2 tcp/udp

#[test]
fn tcp_upstream_paths() {
    let ann = "ingress.pomerium.io/tcp_upstream: 'true'";
    let e = convert(&ingress_paths(&path("/x", "Prefix", "{number: 80}"), ann)).unwrap_err();
    assert!(
        e.ends_with("path: tcp services must have ImplementationSpecific path type"),
        "{e}"
    );
    let e = convert(&ingress_paths(
        &path("/x", "ImplementationSpecific", "{number: 80}"),
        ann,
    ))
    .unwrap_err();
    assert!(
        e.ends_with("path: tcp services must not specify path, got /x"),
        "{e}"
    );
    let e = convert(&ingress_paths(
        &path("/x", "Exact", "{number: 80}"),
        "ingress.pomerium.io/udp_upstream: 'true'",
    ))
    .unwrap_err();
    assert!(
        e.ends_with("path: udp services must have ImplementationSpecific path type"),
        "{e}"
    );
    // A well-formed TCP route converts, but the proxy does not serve tcp+https routes: the
    // error says so (not "must start with https://").
    let e = convert(&ingress_paths(
        &path("", "ImplementationSpecific", "{number: 80}"),
        ann,
    ))
    .unwrap_err();
    assert!(e.starts_with("config validation: "), "{e}");
    assert!(e.contains("tcp+https://a.example.com:80"), "{e}");
    assert!(
        e.contains(crate::config::route::TCP_UDP_UNSUPPORTED) && !e.contains("must start with"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------
// §5 HTTP-01 solver

#[test]
fn http01_solver() {
    let ing = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: cm-acme-http-solver-abcde\n  namespace: default\n  labels: {acme.cert-manager.io/http01-solver: 'TRUE'}\n  annotations:\n    kubernetes.io/ingress.class: pomerium\n    ingress.pomerium.io/not-a-key: whatever\n    ingress.pomerium.io/path_regex: 'true'\nspec:\n  rules:\n  - host: a.example.com\n    http:\n      paths:\n      - path: /.well-known/acme-challenge/tok123\n        pathType: ImplementationSpecific\n        backend: {service: {name: svc, port: {number: 80}}}\n";
    let c = convert(ing).unwrap();
    assert!(c.http01_solver);
    let r = &c.routes[0];
    assert_eq!(r.allow_public_unauthenticated_access, Some(true));
    assert_eq!(r.preserve_host_header, Some(true));
    // Annotations (including path_regex) are not processed: a prefix match.
    assert_eq!(
        r.prefix.as_deref(),
        Some("/.well-known/acme-challenge/tok123")
    );
    assert_eq!(r.regex, None);
}

// ---------------------------------------------------------------------------------------------
// §4.6 certificates

#[test]
fn certificates_from_tls_secrets() {
    let extra = format!(
        "{}---\n{}---\napiVersion: v1\nkind: Secret\nmetadata: {{name: opaque, namespace: default}}\nstringData: {{a: b}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: junk, namespace: default}}\ntype: kubernetes.io/tls\nstringData: {{tls.crt: not a pem, tls.key: x}}\n",
        tls_secret("a-cert", &["a.example.com"]),
        tls_secret("wild", &["*.example.com"]),
    );
    let ing = |secrets: &str| {
        format!("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: ing, namespace: default}}\nspec:\n  ingressClassName: pomerium\n  tls: {secrets}\n  rules:\n  - host: a.example.com\n    http: {{paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: svc, port: {{number: 80}}}}}}}}]}}\n")
    };
    let c = convert_with(
        &ing("[{secretName: a-cert}, {secretName: wild}, {secretName: opaque}, {hosts: [x]}]"),
        &extra,
    )
    .unwrap();
    let names: Vec<&str> = c.certificates.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["a-cert", "wild"]);
    assert_eq!(c.certificates[0].dns_names, ["a.example.com"]);
    assert!(c.certificates[0].not_after > 0);
    assert!(String::from_utf8_lossy(&c.certificates[0].cert_pem).contains("BEGIN CERTIFICATE"));
    assert_eq!(
        convert_with(&ing("[{secretName: junk}]"), &extra).unwrap_err(),
        "removing unused certs: failed to decode cert block"
    );
}

#[test]
fn host_set_san_matching() {
    let mut h = certs::HostSet::default();
    h.insert("a.example.com");
    h.insert("*.wild.test");
    assert!(h.matches_san("a.example.com"));
    assert!(h.matches_san("*.example.com"));
    assert!(!h.matches_san("*.a.example.com"));
    assert!(!h.matches_san("b.example.com"));
    assert!(h.matches_san("*.wild.test"));
    assert!(!h.matches_san("*.test"));
    h.insert("a.example.com");
    h.remove("a.example.com");
    assert!(h.matches_san("a.example.com"));
    h.remove("a.example.com");
    assert!(!h.matches_san("a.example.com"));
    assert!(!h.matches_san("*.example.com"));
    assert_eq!(
        certs::from_host("https://a.example.com:8443"),
        "a.example.com"
    );
    assert_eq!(
        certs::from_host("tcp+https://a.example.com:80"),
        "a.example.com"
    );
}

#[test]
fn dependencies_cover_every_reference() {
    let ing = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: ing\n  namespace: ns\n  annotations: {ingress.pomerium.io/tls_custom_ca_secret: ca, ingress.pomerium.io/set_request_headers_secret: hdrs}\nspec:\n  defaultBackend: {service: {name: dflt, port: {number: 80}}}\n  tls: [{secretName: cert}, {secretName: ''}]\n  rules:\n  - host: a\n    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: s1, port: {number: 80}}}}]}\n";
    let (st, opts) = (ClusterState::new(), ConvertOptions::default());
    let deps = ingress_dependencies(&ingress(ing), &ConversionContext::new(&st, &opts));
    let got: Vec<String> = deps.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        got,
        [
            "Service ns/dflt",
            "Service ns/s1",
            "Endpoints ns/dflt",
            "Endpoints ns/s1",
            "EndpointSlice ns/dflt",
            "EndpointSlice ns/s1",
            "Secret ns/ca",
            "Secret ns/cert",
            "Secret ns/hdrs",
        ]
    );
}

#[test]
fn h2c_upstream_flag_makes_h2c_urls() {
    let r = one("    ingress.pomerium.io/h2c_upstream: 'true'");
    let to = r.to.unwrap().to_vec();
    assert!(!to.is_empty());
    assert!(to.iter().all(|u| u.starts_with("h2c://")), "{to:?}");
    let r = one("    ingress.pomerium.io/h2c_upstream: 'false'");
    assert!(r.to.unwrap().to_vec()[0].starts_with("http://"));
}

#[test]
fn identity_provider_secret_keys_are_each_optional() {
    let extra = "apiVersion: v1\nkind: Secret\nmetadata: {name: both, namespace: default}\ntype: Opaque\nstringData: {client_id: cid, client_secret: cs}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: idonly, namespace: default}\ntype: Opaque\nstringData: {client_id: cid2}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: sa, namespace: default}\ntype: kubernetes.io/service-account-token\nstringData: {token: t}\n";
    let conv = |name: &str| {
        convert_with(
            &simple_ingress(&format!(
                "    ingress.pomerium.io/identity_provider_secret: {name}"
            )),
            extra,
        )
    };
    let r = conv("both").unwrap().routes.remove(0);
    assert_eq!(
        (r.idp_client_id.as_deref(), r.idp_client_secret.as_deref()),
        (Some("cid"), Some("cs"))
    );
    let r = conv("idonly").unwrap().routes.remove(0);
    assert_eq!(
        (r.idp_client_id.as_deref(), r.idp_client_secret.as_deref()),
        (Some("cid2"), None)
    );
    assert_eq!(
        conv("sa").unwrap_err(),
        "parsing ingress: annotations: annotation identity_provider_secret secret is expected to have type Opaque, got kubernetes.io/service-account-token"
    );
}
