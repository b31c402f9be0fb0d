use super::*;
use crate::k8s::convert::testutil::{objects, tls_secret, SVC};
use crate::k8s::convert::ClusterState;
use crate::k8s::convert::ConvertOptions;
use crate::k8s::reconcile::{Change, IngressResult, Reconciler};
use serde_json::Value;

const BASE: &str = "
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: pomerium}
spec: {controllerName: pomerium.io/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default, generation: 3}
spec:
  gatewayClassName: pomerium
  listeners:
  - {name: https, protocol: HTTPS, port: 443, hostname: '*.example.com',
     tls: {certificateRefs: [{name: wild}]}, allowedRoutes: {namespaces: {from: All}}}
  - {name: same, protocol: HTTP, port: 80}
---
apiVersion: gateway.pomerium.io/v1alpha1
kind: PolicyFilter
metadata: {name: alice-only, namespace: default}
spec:
  ppl: |
    allow:
      and:
        - email:
            is: alice@example.com
";

fn run(extra: &str) -> GatewayOutput {
    let yaml = format!(
        "{BASE}\n---\n{SVC}\n---\n{}\n---\n{extra}",
        tls_secret("wild", &["*.example.com"])
    );
    let mut store = GatewayStore::default();
    let mut state = ClusterState::new();
    for o in objects(&yaml) {
        if let Some(other) = store.upsert(o) {
            state.upsert(&other);
        }
    }
    convert_gateway(&store, &state, &GatewayOptions::default())
}

fn route(spec: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r, namespace: default, generation: 7}}
spec:
{spec}"
    )
}

const PARENT: &str =
    "  parentRefs: [{name: gw, sectionName: https}]\n  hostnames: [app.example.com]\n";

fn routes_of(out: &GatewayOutput) -> Vec<crate::config::RouteConfig> {
    match out.routes.get(&NamespacedName::new("default", "r")) {
        Some(Ok(c)) => c.routes.clone(),
        other => panic!("no routes: {other:?}"),
    }
}

fn error_of(out: &GatewayOutput) -> String {
    match out.routes.get(&NamespacedName::new("default", "r")) {
        Some(Err(e)) => e.clone(),
        other => panic!("expected an error: {other:?}"),
    }
}

fn status_of(out: &GatewayOutput, kind: Kind, name: &str) -> Value {
    out.statuses
        .iter()
        .find(|s| s.kind == kind && s.name == name)
        .map(|s| s.status.clone())
        .unwrap_or_else(|| panic!("no status for {kind} {name}"))
}

fn condition(conds: &Value, t: &str) -> (String, String) {
    let c = conds
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == t)
        .unwrap_or_else(|| panic!("no {t} in {conds}"));
    (
        c["status"].as_str().unwrap().to_string(),
        c["reason"].as_str().unwrap().to_string(),
    )
}

fn parent_conditions(out: &GatewayOutput) -> Value {
    status_of(out, Kind::HttpRoute, "r")["parents"][0]["conditions"].clone()
}

#[test]
fn paths_matches_policy_and_backend() {
    let out = run(&route(&format!(
        "{PARENT}  rules:
  - matches:
    - {{path: {{type: PathPrefix, value: /api/}}, method: POST, headers: [{{name: X-Env, value: canary}}]}}
    - {{path: {{type: Exact, value: /exact}}, queryParams: [{{type: RegularExpression, name: v, value: '[0-9]+'}}]}}
    - {{path: {{type: RegularExpression, value: '/re/[a-z]+'}}}}
    filters:
    - {{type: ExtensionRef, extensionRef: {{group: gateway.pomerium.io, kind: PolicyFilter, name: alice-only}}}}
    backendRefs: [{{name: svc, port: 80}}]
    timeouts: {{request: 10s, backendRequest: 5s}}"
    )));
    let r = routes_of(&out);
    assert_eq!(r.len(), 3);
    assert_eq!(r[0].from, "https://app.example.com");
    assert_eq!(r[0].regex.as_deref(), Some("/api(?:/.*)?"));
    assert_eq!(r[0].match_method.as_deref(), Some("POST"));
    assert_eq!(
        r[0].match_headers.as_ref().unwrap()[0].value.as_deref(),
        Some("canary")
    );
    assert_eq!(r[1].path.as_deref(), Some("/exact"));
    assert_eq!(
        r[1].match_query.as_ref().unwrap()[0].regex.as_deref(),
        Some("[0-9]+")
    );
    assert_eq!(r[2].regex.as_deref(), Some("/re/[a-z]+"));
    assert_eq!(r[0].timeout.as_deref(), Some("5s"));
    assert_eq!(r[0].preserve_host_header, Some(true));
    let to = serde_json::to_value(&r[0].to).unwrap();
    assert_eq!(
        to,
        serde_json::json!(["http://10.0.0.1:8080", "http://10.0.0.2:8080"])
    );
    let policy = r[0].policy.as_ref().unwrap();
    assert_eq!(
        policy[0]["allow"]["and"][0]["email"]["is"],
        "alice@example.com"
    );
    // The method+header match sorts before plain routes of the same path.
    assert!(r[0].id.as_deref().unwrap() < r[2].id.as_deref().unwrap());
    // Listener certificate travels with the route.
    let Some(Ok(c)) = out.routes.values().next() else {
        panic!()
    };
    assert_eq!(c.certificates.len(), 1);
    // Status: accepted, resolved, generation observed; the Gateway counts one attached route.
    let conds = parent_conditions(&out);
    assert_eq!(
        condition(&conds, "Accepted"),
        ("True".into(), "Accepted".into())
    );
    assert_eq!(
        condition(&conds, "ResolvedRefs"),
        ("True".into(), "ResolvedRefs".into())
    );
    assert_eq!(conds[0]["observedGeneration"], 7);
    let gw = status_of(&out, Kind::Gateway, "gw");
    assert_eq!(condition(&gw["conditions"], "Programmed").0, "True");
    assert_eq!(gw["listeners"][0]["attachedRoutes"], 1);
    assert_eq!(gw["listeners"][1]["attachedRoutes"], 0);
    let class = status_of(&out, Kind::GatewayClass, "pomerium");
    assert_eq!(condition(&class["conditions"], "Accepted").0, "True");
}

#[test]
fn filters_become_route_options() {
    let out = run(&route(&format!(
        "{PARENT}  rules:
  - matches: [{{path: {{type: PathPrefix, value: /old}}}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{{name: X-Set, value: 'a$b'}}]
        add: [{{name: X-Add, value: '1'}}]
        remove: [X-Gone]
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        set: [{{name: X-Resp, value: v}}]
        add: [{{name: X-Resp-Add, value: w}}]
        remove: [Server]
    - type: URLRewrite
      urlRewrite: {{hostname: internal.svc, path: {{type: ReplacePrefixMatch, replacePrefixMatch: /new}}}}
    backendRefs: [{{name: svc, port: 80, weight: 3}}, {{name: svc, port: 443, weight: 1}}]
  - matches: [{{path: {{value: /full}}}}]
    filters:
    - {{type: URLRewrite, urlRewrite: {{path: {{type: ReplaceFullPath, replaceFullPath: /x}}}}}}
    backendRefs: [{{name: svc, port: 80}}]"
    )));
    let r = routes_of(&out);
    let a = &r[0];
    assert_eq!(a.set_request_headers.as_ref().unwrap()["X-Set"], "a$$b");
    assert_eq!(a.add_request_headers.as_ref().unwrap()["X-Add"], "1");
    assert_eq!(
        a.remove_request_headers.as_ref().unwrap(),
        &vec!["X-Gone".to_string()]
    );
    assert_eq!(a.set_response_headers.as_ref().unwrap()["X-Resp"], "v");
    assert_eq!(a.add_response_headers.as_ref().unwrap()["X-Resp-Add"], "w");
    assert_eq!(
        a.remove_response_headers.as_ref().unwrap(),
        &vec!["Server".to_string()]
    );
    assert_eq!(a.host_rewrite.as_deref(), Some("internal.svc"));
    assert_eq!(a.preserve_host_header, None);
    assert_eq!(a.regex_rewrite_pattern.as_deref(), Some("^/old(/.*)?$"));
    assert_eq!(a.regex_rewrite_substitution.as_deref(), Some("/new\\1"));
    // Weighted backends: 3:1 spread over each Service's two endpoints.
    let to = serde_json::to_value(&a.to).unwrap();
    assert_eq!(
        to,
        serde_json::json!([
            "http://10.0.0.1:8080,150",
            "http://10.0.0.2:8080,150",
            "http://10.0.0.1:8443,50",
            "http://10.0.0.2:8443,50"
        ])
    );
    let b = &r[1];
    assert_eq!(b.regex_rewrite_pattern.as_deref(), Some("^.*$"));
    assert_eq!(b.regex_rewrite_substitution.as_deref(), Some("/x"));
    // The rewrites load in the proxy and produce the Gateway API paths.
    let route =
        crate::config::route::validate_route("t", "t".into(), a, &Default::default()).unwrap();
    let crate::config::route::PathRewrite::Regex(re, sub) = &route.path_rewrite else {
        panic!("expected a regex rewrite")
    };
    assert_eq!(re.replace_all("/old/a/b", sub.as_str()), "/new/a/b");
    assert_eq!(re.replace_all("/old", sub.as_str()), "/new");
}

#[test]
fn bad_regex_is_rejected_as_unsupported_value() {
    let out = run(&route(&format!(
        "{PARENT}  rules:
  - matches: [{{path: {{type: RegularExpression, value: '/(unclosed'}}}}]
    backendRefs: [{{name: svc, port: 80}}]"
    )));
    assert!(
        error_of(&out).contains("invalid regular expression"),
        "{}",
        error_of(&out)
    );
    let conds = parent_conditions(&out);
    assert_eq!(
        condition(&conds, "Accepted"),
        ("False".into(), "UnsupportedValue".into())
    );
}

#[test]
fn missing_backend_is_backend_not_found() {
    let out = run(&route(&format!(
        "{PARENT}  rules:
  - backendRefs: [{{name: nope, port: 80}}]"
    )));
    assert!(
        error_of(&out).contains("Service default/nope"),
        "{}",
        error_of(&out)
    );
    let conds = parent_conditions(&out);
    assert_eq!(condition(&conds, "Accepted").0, "True");
    assert_eq!(
        condition(&conds, "ResolvedRefs"),
        ("False".into(), "BackendNotFound".into())
    );
}

#[test]
fn non_service_backend_is_invalid_kind() {
    let out = run(&route(&format!(
        "{PARENT}  rules:
  - backendRefs: [{{group: example.com, kind: Bucket, name: b, port: 80}}]"
    )));
    let conds = parent_conditions(&out);
    assert_eq!(
        condition(&conds, "ResolvedRefs"),
        ("False".into(), "InvalidKind".into())
    );
}

const OTHER_NS_SVC: &str = "
apiVersion: v1
kind: Service
metadata: {name: svc, namespace: other}
spec: {ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Endpoints
metadata: {name: svc, namespace: other}
subsets: [{addresses: [{ip: 10.1.0.1}], ports: [{name: http, port: 8080}]}]
";

#[test]
fn cross_namespace_backend_needs_a_reference_grant() {
    let r = route(&format!(
        "{PARENT}  rules:
  - backendRefs: [{{name: svc, namespace: other, port: 80}}]"
    ));
    let out = run(&format!("{r}\n---\n{OTHER_NS_SVC}"));
    let conds = parent_conditions(&out);
    assert_eq!(
        condition(&conds, "ResolvedRefs"),
        ("False".into(), "RefNotPermitted".into())
    );
    assert!(error_of(&out).contains("ReferenceGrant"));

    let grant = "
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: allow, namespace: other}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: default}]
  to: [{group: '', kind: Service}]
";
    let out = run(&format!("{r}\n---\n{OTHER_NS_SVC}\n---\n{grant}"));
    let routes = routes_of(&out);
    let to = serde_json::to_value(&routes[0].to).unwrap();
    assert_eq!(to, serde_json::json!(["http://10.1.0.1:8080"]));
}

#[test]
fn listener_checks_section_namespace_and_hostname() {
    // No listener with that name.
    let out = run(&route(
        "  parentRefs: [{name: gw, sectionName: nope}]\n  rules: [{backendRefs: [{name: svc, port: 80}]}]",
    ));
    assert_eq!(
        condition(&parent_conditions(&out), "Accepted"),
        ("False".into(), "NoMatchingParent".into())
    );
    assert!(out.routes.is_empty());
    // Hostname outside the listener's wildcard.
    let out = run(&route(
        "  parentRefs: [{name: gw, sectionName: https}]\n  hostnames: [app.other.org]\n  rules: [{backendRefs: [{name: svc, port: 80}]}]",
    ));
    assert_eq!(
        condition(&parent_conditions(&out), "Accepted"),
        ("False".into(), "NoMatchingListenerHostname".into())
    );
    // Listener `same` (from: Same by default) refuses a route from another namespace.
    let other = "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: team}
spec:
  parentRefs: [{name: gw, namespace: default, sectionName: same}]
  rules: [{backendRefs: [{name: svc, port: 80}]}]";
    let out = run(other);
    let st = status_of(&out, Kind::HttpRoute, "r");
    assert_eq!(
        condition(&st["parents"][0]["conditions"], "Accepted"),
        ("False".into(), "NotAllowedByListeners".into())
    );
    // Without hostnames on either side, the route serves every host through `same`.
    let out = run(&route(
        "  parentRefs: [{name: gw, sectionName: same}]\n  rules: [{backendRefs: [{name: svc, port: 80}]}]",
    ));
    assert_eq!(routes_of(&out)[0].from, "https://*");
}

#[test]
fn gateways_of_other_classes_are_ignored() {
    let other = "
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: theirs, namespace: default}
spec: {gatewayClassName: nginx, listeners: [{name: http, protocol: HTTP, port: 80}]}
";
    let r =
        route("  parentRefs: [{name: theirs}]\n  rules: [{backendRefs: [{name: svc, port: 80}]}]");
    let out = run(&format!("{other}\n---\n{r}"));
    assert!(out.routes.is_empty());
    assert!(!out
        .statuses
        .iter()
        .any(|s| s.kind == Kind::HttpRoute || s.name == "theirs"));
}

#[test]
fn missing_policy_filter_and_bad_ppl_are_errors() {
    let r = route(&format!(
        "{PARENT}  rules:
  - filters: [{{type: ExtensionRef, extensionRef: {{group: gateway.pomerium.io, kind: PolicyFilter, name: nope}}}}]
    backendRefs: [{{name: svc, port: 80}}]"
    ));
    let out = run(&r);
    assert!(error_of(&out).contains("PolicyFilter default/nope not found"));
    let bad = "
apiVersion: gateway.pomerium.io/v1alpha1
kind: PolicyFilter
metadata: {name: bad, namespace: default}
spec: {ppl: 'allow: {and: [{no_such_criterion: 1}]}'}
";
    let r = route(&format!(
        "{PARENT}  rules:
  - filters: [{{type: ExtensionRef, extensionRef: {{group: gateway.pomerium.io, kind: PolicyFilter, name: bad}}}}]
    backendRefs: [{{name: svc, port: 80}}]"
    ));
    let out = run(&format!("{bad}\n---\n{r}"));
    assert!(
        error_of(&out).contains("no_such_criterion"),
        "{}",
        error_of(&out)
    );
}

#[test]
fn unsupported_listener_protocol_and_bad_certificate() {
    let gw = "
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw2, namespace: default}
spec:
  gatewayClassName: pomerium
  listeners:
  - {name: tcp, protocol: TCP, port: 9000}
  - {name: tls, protocol: HTTPS, port: 443, tls: {certificateRefs: [{name: missing}]}}
";
    let out = run(gw);
    let st = status_of(&out, Kind::Gateway, "gw2");
    assert_eq!(
        condition(&st["listeners"][0]["conditions"], "Accepted"),
        ("False".into(), "UnsupportedProtocol".into())
    );
    assert_eq!(
        condition(&st["listeners"][1]["conditions"], "ResolvedRefs"),
        ("False".into(), "InvalidCertificateRef".into())
    );
    assert_eq!(condition(&st["conditions"], "Accepted").0, "False");
}

#[test]
fn reconciler_keeps_last_good_routes_and_reports_changes() {
    let opts = ConvertOptions {
        gateway: Some(GatewayOptions::default()),
        ..Default::default()
    };
    let mut rec = Reconciler::new(opts);
    let good = route(&format!(
        "{PARENT}  rules: [{{backendRefs: [{{name: svc, port: 80}}]}}]"
    ));
    let yaml = format!(
        "{BASE}\n---\n{SVC}\n---\n{}\n---\n{good}",
        tls_secret("wild", &["*.example.com"])
    );
    let out = rec.apply_all(objects(&yaml));
    assert_eq!(
        out.gateway_results,
        vec![(NamespacedName::new("default", "r"), IngressResult::Updated)]
    );
    assert!(out.gateway_status.len() >= 3);
    assert_eq!(rec.routes().len(), 1);
    assert_eq!(rec.certificates().len(), 1);
    // A bad update: error reported, last good routes kept.
    let bad = route(&format!(
        "{PARENT}  rules: [{{matches: [{{path: {{type: RegularExpression, value: '('}}}}], backendRefs: [{{name: svc, port: 80}}]}}]"
    ));
    let out = rec.apply(Change::Upsert(objects(&bad).pop().unwrap()));
    assert!(matches!(&out.gateway_results[0].1, IngressResult::Error(_)));
    assert_eq!(
        out.gateway_status.len(),
        1,
        "only the HTTPRoute status changed"
    );
    assert_eq!(rec.routes().len(), 1);
    // The same object again changes nothing.
    let out = rec.apply(Change::Upsert(objects(&bad).pop().unwrap()));
    assert!(out.gateway_results.is_empty() && out.gateway_status.is_empty());
    // Endpoints change: the route's upstreams follow.
    let ep = "
apiVersion: v1
kind: Endpoints
metadata: {name: svc, namespace: default}
subsets: [{addresses: [{ip: 10.9.9.9}], ports: [{name: http, port: 8080}]}]
";
    rec.apply(Change::Upsert(objects(&good).pop().unwrap()));
    rec.apply(Change::Upsert(objects(ep).pop().unwrap()));
    let to = serde_json::to_value(&rec.routes()[0].to).unwrap();
    assert_eq!(to, serde_json::json!(["http://10.9.9.9:8080"]));
    // Deleting the HTTPRoute removes its routes.
    let out = rec.apply(Change::Delete(
        Kind::HttpRoute,
        "default".into(),
        "r".into(),
    ));
    assert!(matches!(
        &out.gateway_results[0].1,
        IngressResult::Removed(_)
    ));
    assert!(rec.routes().is_empty());
}

#[test]
fn request_redirect_answers_without_a_backend() {
    let out = run(&route(&format!(
        "{PARENT}  rules:
  - matches: [{{path: {{type: PathPrefix, value: /old}}}}]
    filters:
    - {{type: RequestRedirect, requestRedirect: {{scheme: https, hostname: new.example.com, path: {{type: ReplacePrefixMatch, replacePrefixMatch: /new}}, statusCode: 301}}}}
  - matches: [{{path: {{type: Exact, value: /x}}}}]
    filters:
    - {{type: RequestRedirect, requestRedirect: {{port: 8443}}}}"
    )));
    let r = routes_of(&out);
    let a =
        crate::config::route::validate_route("a", "a".into(), &r[0], &Default::default()).unwrap();
    let red = a.redirect.expect("redirect");
    assert_eq!(red.code, 301);
    assert_eq!(
        red.location("https", "app.example.com:8443", "/old/a", "q=1"),
        "https://new.example.com/new/a?q=1"
    );
    assert_eq!(
        red.location("https", "app.example.com", "/old", ""),
        "https://new.example.com/new"
    );
    let b =
        crate::config::route::validate_route("b", "b".into(), &r[1], &Default::default()).unwrap();
    let red = b.redirect.expect("redirect");
    assert_eq!(red.code, 302);
    assert_eq!(
        red.location("https", "app.example.com:443", "/x", ""),
        "https://app.example.com:8443/x"
    );
    // A status code Gateway API does not allow.
    let out = run(&route(&format!(
        "{PARENT}  rules:
  - filters: [{{type: RequestRedirect, requestRedirect: {{statusCode: 307}}}}]"
    )));
    assert!(error_of(&out).contains("statusCode 307"));
    // Other filters are refused by name, never ignored.
    let out = run(&route(&format!(
        "{PARENT}  rules:
  - filters: [{{type: RequestMirror}}]
    backendRefs: [{{name: svc, port: 80}}]"
    )));
    assert!(error_of(&out).contains("RequestMirror"));
}

#[test]
fn allowed_routes_selector_uses_namespace_labels() {
    let gw = "
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: sel, namespace: default}
spec:
  gatewayClassName: pomerium
  listeners:
  - name: http
    protocol: HTTP
    port: 80
    allowedRoutes:
      namespaces:
        from: Selector
        selector:
          matchLabels: {shared-gateway: 'true'}
          matchExpressions: [{key: env, operator: NotIn, values: [dev]}]
";
    let ns = |name: &str, labels: &str| {
        format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}, labels: {labels}}}\n")
    };
    let svc = OTHER_NS_SVC.replace("other", "team");
    let r = "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: team}
spec:
  parentRefs: [{name: sel, namespace: default}]
  rules: [{backendRefs: [{name: svc, port: 80}]}]";
    let accepted = |labels: &str| {
        let out = run(&format!(
            "{gw}\n---\n{svc}\n---\n{}\n---\n{r}",
            ns("team", labels)
        ));
        let st = status_of(&out, Kind::HttpRoute, "r");
        condition(&st["parents"][0]["conditions"], "Accepted")
    };
    assert_eq!(
        accepted("{shared-gateway: 'true', env: prod}"),
        ("True".into(), "Accepted".into())
    );
    assert_eq!(
        accepted("{shared-gateway: 'true', env: dev}"),
        ("False".into(), "NotAllowedByListeners".into())
    );
    assert_eq!(
        accepted("{}"),
        ("False".into(), "NotAllowedByListeners".into())
    );
}

#[test]
fn other_controllers_parent_statuses_are_kept() {
    let r = route(&format!(
        "{PARENT}  rules: [{{backendRefs: [{{name: svc, port: 80}}]}}]"
    ));
    let r = format!(
        "{r}
status:
  parents:
  - parentRef: {{name: other-gw}}
    controllerName: example.com/other
    conditions: [{{type: Accepted, status: 'True', reason: Accepted}}]
  - parentRef: {{name: gw}}
    controllerName: pomerium.io/gateway-controller
    conditions: [{{type: Accepted, status: 'False', reason: Stale}}]
"
    );
    let out = run(&r);
    let parents = status_of(&out, Kind::HttpRoute, "r")["parents"].clone();
    let parents = parents.as_array().unwrap();
    assert_eq!(parents.len(), 2, "{parents:?}");
    assert_eq!(
        parents[0]["controllerName"],
        "pomerium.io/gateway-controller"
    );
    assert_eq!(condition(&parents[0]["conditions"], "Accepted").0, "True");
    assert_eq!(parents[1]["controllerName"], "example.com/other");
}

#[test]
fn a_detached_route_loses_only_our_parent_status() {
    let r = route("  parentRefs: [{name: elsewhere}]\n  rules: [{backendRefs: [{name: svc, port: 80}]}]\nstatus:\n  parents:\n  - {parentRef: {name: gw}, controllerName: pomerium.io/gateway-controller, conditions: []}\n  - {parentRef: {name: x}, controllerName: example.com/other, conditions: []}\n");
    let out = run(&r);
    let parents = status_of(&out, Kind::HttpRoute, "r")["parents"].clone();
    assert_eq!(parents.as_array().unwrap().len(), 1);
    assert_eq!(parents[0]["controllerName"], "example.com/other");
    assert!(out.routes.is_empty());
    // Without our entry, nothing is written.
    let r = route(
        "  parentRefs: [{name: elsewhere}]\n  rules: [{backendRefs: [{name: svc, port: 80}]}]",
    );
    assert!(!run(&r).statuses.iter().any(|s| s.kind == Kind::HttpRoute));
}
