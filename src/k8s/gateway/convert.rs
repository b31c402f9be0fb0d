//! The pure Gateway API conversion (see the module docs of `k8s::gateway`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::networking::v1::{IngressServiceBackend, ServiceBackendPort};
use serde_json::{json, Value};

use super::types::*;
use super::{GatewayOptions, GatewayStore};
use crate::config::duration::parse_go_duration;
use crate::config::route::{validate_route, RouteDefaults};
use crate::config::{OneOrMany, RequestValueMatch, RouteConfig};
use crate::k8s::annotations::Flags;
use crate::k8s::convert::{backend, certs, ClusterState, TlsCert};
use crate::k8s::{Kind, NamespacedName, ObjectKey};

/// Routes and certificates of one HTTPRoute.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Converted {
    pub routes: Vec<RouteConfig>,
    /// Certificates of the HTTPS listeners the route is attached to.
    pub certificates: Vec<TlsCert>,
}

/// The status one object should have (`status` of a merge patch on its status subresource).
#[derive(Debug, Clone, PartialEq)]
pub struct StatusWrite {
    pub kind: Kind,
    /// Empty for GatewayClass.
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
    /// Conditions carry no `lastTransitionTime`; the writer adds it.
    pub status: Value,
}

/// Output of `convert_gateway`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GatewayOutput {
    /// Every HTTPRoute attached to at least one listener of ours: its routes or why it was
    /// rejected (the event text).
    pub routes: BTreeMap<NamespacedName, Result<Converted, String>>,
    /// Desired status of every GatewayClass, Gateway and HTTPRoute of ours, sorted by object.
    pub statuses: Vec<StatusWrite>,
    /// Non-Gateway-API objects read (Services, Endpoints, EndpointSlices, Secrets).
    pub dependencies: BTreeSet<ObjectKey>,
}

fn cond(type_: &str, ok: bool, reason: &str, message: &str, generation: Option<i64>) -> Value {
    let mut c = json!({
        "type": type_,
        "status": if ok { "True" } else { "False" },
        "reason": reason,
        "message": message,
    });
    if let Some(g) = generation {
        c["observedGeneration"] = json!(g);
    }
    c
}

/// Why a rule or reference failed.
#[derive(Debug, Clone, PartialEq)]
enum Problem {
    /// `ResolvedRefs=False` with this reason (`RefNotPermitted`, `BackendNotFound`,
    /// `InvalidKind`).
    Refs(&'static str, String),
    /// `Accepted=False`, reason `UnsupportedValue`.
    Invalid(String),
}

impl Problem {
    fn text(&self) -> &str {
        match self {
            Problem::Refs(_, m) | Problem::Invalid(m) => m,
        }
    }
}

/// Whether a ReferenceGrant in `to_ns` lets `from_kind` objects of `from_ns` refer to
/// `to_group`/`to_kind` `to_name`.
fn granted(
    store: &GatewayStore,
    from_kind: &str,
    from_ns: &str,
    to_ns: &str,
    to_group: &str,
    to_kind: &str,
    to_name: &str,
) -> bool {
    store
        .grants
        .iter()
        .filter(|(k, _)| k.namespace == to_ns)
        .any(|(_, g)| {
            g.spec
                .from
                .iter()
                .any(|f| f.group == GATEWAY_GROUP && f.kind == from_kind && f.namespace == from_ns)
                && g.spec.to.iter().any(|t| {
                    t.group == to_group
                        && t.kind == to_kind
                        && t.name.as_deref().is_none_or(|n| n == to_name)
                })
        })
}

/// Resolved listener of one of our Gateways.
struct ListenerInfo<'a> {
    listener: &'a Listener,
    /// Listener-level problem (unsupported protocol, bad certificate ref): no routes attach.
    problem: Option<(&'static str, &'static str, String)>,
    certificates: Vec<TlsCert>,
    attached: usize,
}

struct GatewayInfo<'a> {
    key: NamespacedName,
    gateway: &'a Gateway,
    listeners: Vec<ListenerInfo<'a>>,
}

fn listener_info<'a>(
    gw_ns: &str,
    l: &'a Listener,
    store: &GatewayStore,
    state: &ClusterState,
    deps: &mut BTreeSet<ObjectKey>,
) -> ListenerInfo<'a> {
    let mut info = ListenerInfo {
        listener: l,
        problem: None,
        certificates: Vec::new(),
        attached: 0,
    };
    match l.protocol.as_str() {
        "HTTP" => {}
        "HTTPS" => {
            let refs = l
                .tls
                .as_ref()
                .map(|t| t.certificate_refs.as_slice())
                .unwrap_or(&[]);
            for r in refs {
                let group = r.group.as_deref().unwrap_or("");
                let kind = r.kind.as_deref().unwrap_or("Secret");
                let ns = r.namespace.as_deref().unwrap_or(gw_ns);
                if !group.is_empty() || kind != "Secret" {
                    info.problem = Some((
                        "ResolvedRefs",
                        "InvalidCertificateRef",
                        format!("certificateRef {group}/{kind} {} is not a Secret", r.name),
                    ));
                    break;
                }
                if ns != gw_ns && !granted(store, "Gateway", gw_ns, ns, "", "Secret", &r.name) {
                    info.problem = Some((
                        "ResolvedRefs",
                        "RefNotPermitted",
                        format!(
                            "certificateRef Secret {ns}/{} is in another namespace and no ReferenceGrant allows it",
                            r.name
                        ),
                    ));
                    break;
                }
                deps.insert(ObjectKey::new(Kind::Secret, ns, r.name.clone()));
                let cert = state
                    .secret(ns, &r.name)
                    .ok_or_else(|| format!("Secret {ns}/{} not found", r.name))
                    .and_then(|s| certs::tls_cert(ns, &r.name, s));
                match cert {
                    Ok(c) => info.certificates.push(c),
                    Err(e) => {
                        info.problem = Some((
                            "ResolvedRefs",
                            "InvalidCertificateRef",
                            format!("certificateRef Secret {ns}/{}: {e}", r.name),
                        ));
                        break;
                    }
                }
            }
        }
        other => {
            info.problem = Some((
                "Accepted",
                "UnsupportedProtocol",
                format!("protocol {other:?} is not supported (use HTTP or HTTPS)"),
            ))
        }
    }
    info
}

/// Whether a listener's `allowedRoutes` admits an HTTPRoute from `route_ns`. `Err` is the
/// message for `NotAllowedByListeners`.
fn allows(
    l: &Listener,
    gw_ns: &str,
    route_ns: &str,
    namespaces: &BTreeMap<String, BTreeMap<String, String>>,
) -> Result<(), String> {
    let ar = l.allowed_routes.as_ref();
    if let Some(kinds) = ar.and_then(|a| a.kinds.as_ref()) {
        let ok = kinds.iter().any(|k| {
            k.kind == "HTTPRoute" && k.group.as_deref().unwrap_or(GATEWAY_GROUP) == GATEWAY_GROUP
        });
        if !ok {
            return Err(format!(
                "listener {} does not allow HTTPRoute kinds",
                l.name
            ));
        }
    }
    let from = ar
        .and_then(|a| a.namespaces.as_ref())
        .and_then(|n| n.from.as_deref())
        .unwrap_or("Same");
    match from {
        "All" => Ok(()),
        "Same" if route_ns == gw_ns => Ok(()),
        "Same" => Err(format!(
            "listener {} only allows routes from namespace {gw_ns}",
            l.name
        )),
        "Selector" => {
            let sel = ar
                .and_then(|a| a.namespaces.as_ref())
                .and_then(|n| n.selector.as_ref());
            let Some(sel) = sel else {
                return Err(format!(
                    "listener {}: allowedRoutes.namespaces.from is Selector but no selector is set",
                    l.name
                ));
            };
            let labels = namespaces.get(route_ns);
            match labels {
                Some(labels) if selector_matches(sel, labels) => Ok(()),
                Some(_) => Err(format!(
                    "listener {}: namespace {route_ns} does not match the allowedRoutes selector",
                    l.name
                )),
                None => Err(format!(
                    "listener {}: namespace {route_ns} is unknown (its labels are needed for the allowedRoutes selector)",
                    l.name
                )),
            }
        }
        other => Err(format!(
            "listener {}: allowedRoutes.namespaces.from {other:?} is not supported (use Same, All or Selector)",
            l.name
        )),
    }
}

/// Kubernetes label selector semantics (`matchLabels` and `matchExpressions`: In, NotIn,
/// Exists, DoesNotExist); an empty selector matches everything.
pub fn selector_matches(
    sel: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    labels: &BTreeMap<String, String>,
) -> bool {
    let by_label = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_expr = sel.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or(&[]);
        let have = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => have.is_some_and(|v| values.contains(v)),
            "NotIn" => have.is_none_or(|v| !values.contains(v)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            _ => false,
        }
    });
    by_label && by_expr
}

/// `host` matches the wildcard `pattern` (`*.example.com`: one or more labels in front).
fn wildcard_covers(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
        None => pattern == host,
    }
}

/// The hostnames an HTTPRoute serves through a listener (Gateway API hostname intersection).
fn effective_hosts(listener: Option<&str>, route: &[String]) -> Vec<String> {
    let listener = listener.filter(|h| !h.is_empty());
    let mut out: Vec<String> = match (listener, route.is_empty()) {
        (None, true) => vec!["*".into()],
        (None, false) => route.iter().map(|h| h.to_ascii_lowercase()).collect(),
        (Some(l), true) => vec![l.to_ascii_lowercase()],
        (Some(l), false) => {
            let l = l.to_ascii_lowercase();
            route
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .filter_map(|h| {
                    if h == l || wildcard_covers(&l, &h) {
                        Some(h)
                    } else if wildcard_covers(&h, &l) {
                        Some(l.clone())
                    } else {
                        None
                    }
                })
                .collect()
        }
    };
    out.sort();
    out.dedup();
    out
}

/// Escapes `$` for `set_request_headers` templates.
fn dollar_escape(s: &str) -> String {
    s.replace('$', "$$")
}

/// One (rule, match) of an HTTPRoute, without its host.
struct Template {
    cfg: RouteConfig,
    rule: usize,
    matched: usize,
    /// Gateway API precedence inside one path: method, then header count, then query count.
    specificity: u32,
}

struct RuleContext<'a> {
    ns: &'a str,
    store: &'a GatewayStore,
    state: &'a ClusterState,
}

fn rule_templates(
    ctx: &RuleContext,
    index: usize,
    rule: &HttpRouteRule,
    deps: &mut BTreeSet<ObjectKey>,
) -> Result<Vec<Template>, Problem> {
    let label = format!("rules[{index}]");
    let mut base = RouteConfig {
        // Gateway API: the Host header goes upstream unchanged unless rewritten.
        preserve_host_header: Some(true),
        ..Default::default()
    };

    // --- backends ---
    let with_weights = rule.backend_refs.len() > 1;
    let mut to: Vec<String> = Vec::new();
    for (j, b) in rule.backend_refs.iter().enumerate() {
        let t = &b.target;
        let group = t.group.as_deref().unwrap_or("");
        let kind = t.kind.as_deref().unwrap_or("Service");
        let ns = t.namespace.as_deref().unwrap_or(ctx.ns);
        let what = format!("{label}.backendRefs[{j}]");
        if !group.is_empty() || kind != "Service" {
            return Err(Problem::Refs(
                "InvalidKind",
                format!("{what}: {group}/{kind} {} is not a Service", t.name),
            ));
        }
        if ns != ctx.ns && !granted(ctx.store, "HTTPRoute", ctx.ns, ns, "", "Service", &t.name) {
            return Err(Problem::Refs(
                "RefNotPermitted",
                format!(
                    "{what}: Service {ns}/{} is in another namespace and no ReferenceGrant allows it",
                    t.name
                ),
            ));
        }
        let Some(port) = t.port else {
            return Err(Problem::Invalid(format!(
                "{what}: port is required for a Service"
            )));
        };
        for k in [Kind::Service, Kind::Endpoints, Kind::EndpointSlice] {
            deps.insert(ObjectKey::new(k, ns, t.name.clone()));
        }
        let weight = b.weight.unwrap_or(1);
        if weight < 0 {
            return Err(Problem::Invalid(format!(
                "{what}: negative weight {weight}"
            )));
        }
        if weight == 0 {
            continue;
        }
        backend::fetch_service(ctx.state, ns, &t.name).map_err(|e| {
            Problem::Refs(
                "BackendNotFound",
                format!("{what}: Service {ns}/{}: {e}", t.name),
            )
        })?;
        let svc = IngressServiceBackend {
            name: t.name.clone(),
            port: Some(ServiceBackendPort {
                number: Some(port),
                name: None,
            }),
        };
        let up = backend::upstream(ctx.state, ns, &svc, &Flags::default())
            .map_err(|e| Problem::Refs("BackendNotFound", format!("{what}: {e}")))?;
        let n = up.urls.len().max(1) as i64;
        for u in up.urls {
            if with_weights {
                // A backend's weight is shared among its endpoints.
                let w = ((weight as i64 * 100) / n).max(1);
                to.push(format!("{u},{w}"));
            } else {
                to.push(u);
            }
        }
    }
    let has_redirect = rule.filters.iter().any(|f| f.type_ == "RequestRedirect");
    if to.is_empty() && !has_redirect {
        return Err(Problem::Invalid(format!(
            "{label}: no backendRefs with a non-zero weight (rampart needs a backend for every rule without a RequestRedirect)"
        )));
    }
    if !to.is_empty() {
        base.to = Some(OneOrMany::Many(to));
    }

    // --- timeouts ---
    if let Some(t) = &rule.timeouts {
        let mut best: Option<(Duration, String)> = None;
        for (key, v) in [
            ("request", &t.request),
            ("backendRequest", &t.backend_request),
        ] {
            let Some(v) = v else { continue };
            let d = parse_go_duration(v)
                .map_err(|e| Problem::Invalid(format!("{label}.timeouts.{key}: {e}")))?;
            if d.is_zero() {
                continue;
            }
            if best.as_ref().is_none_or(|(b, _)| d < *b) {
                best = Some((d, v.clone()));
            }
        }
        base.timeout = Some(best.map(|(_, v)| v).unwrap_or_else(|| "0s".into()));
    }

    // --- filters ---
    let mut policies: Vec<Value> = Vec::new();
    let mut rewrite: Option<&PathModifier> = None;
    let mut redirect: Option<&RequestRedirect> = None;
    for (j, f) in rule.filters.iter().enumerate() {
        let what = format!("{label}.filters[{j}]");
        let missing = || Problem::Invalid(format!("{what}: type {} without its field", f.type_));
        match f.type_.as_str() {
            "RequestHeaderModifier" => {
                let m = f.request_header_modifier.as_ref().ok_or_else(missing)?;
                let set = base.set_request_headers.get_or_insert_with(BTreeMap::new);
                for h in &m.set {
                    set.insert(h.name.clone(), dollar_escape(&h.value));
                }
                let add = base.add_request_headers.get_or_insert_with(BTreeMap::new);
                for h in &m.add {
                    add.insert(h.name.clone(), h.value.clone());
                }
                base.remove_request_headers
                    .get_or_insert_with(Vec::new)
                    .extend(m.remove.iter().cloned());
            }
            "ResponseHeaderModifier" => {
                let m = f.response_header_modifier.as_ref().ok_or_else(missing)?;
                let set = base.set_response_headers.get_or_insert_with(BTreeMap::new);
                for h in &m.set {
                    set.insert(h.name.clone(), h.value.clone());
                }
                let add = base.add_response_headers.get_or_insert_with(BTreeMap::new);
                for h in &m.add {
                    add.insert(h.name.clone(), h.value.clone());
                }
                base.remove_response_headers
                    .get_or_insert_with(Vec::new)
                    .extend(m.remove.iter().cloned());
            }
            "URLRewrite" => {
                let m = f.url_rewrite.as_ref().ok_or_else(missing)?;
                if let Some(h) = m.hostname.as_deref().filter(|h| !h.is_empty()) {
                    base.host_rewrite = Some(h.to_string());
                    base.preserve_host_header = None;
                }
                rewrite = m.path.as_ref();
            }
            "RequestRedirect" => {
                let m = f.request_redirect.as_ref().ok_or_else(missing)?;
                if let Some(c) = m.status_code.filter(|c| ![301, 302].contains(c)) {
                    return Err(Problem::Invalid(format!(
                        "{what}: statusCode {c} (use 301 or 302)"
                    )));
                }
                redirect = Some(m);
            }
            "ExtensionRef" => {
                let r = f.extension_ref.as_ref().ok_or_else(missing)?;
                let group = r.group.as_deref().unwrap_or("");
                let kind = r.kind.as_deref().unwrap_or("");
                if group != POLICY_FILTER_GROUP || kind != "PolicyFilter" {
                    return Err(Problem::Invalid(format!(
                        "{what}: extensionRef {group}/{kind} is not supported (use {POLICY_FILTER_GROUP}/PolicyFilter)"
                    )));
                }
                let key = NamespacedName::new(ctx.ns, r.name.clone());
                let pf = ctx.store.filters.get(&key).ok_or_else(|| {
                    Problem::Invalid(format!("{what}: PolicyFilter {key} not found"))
                })?;
                let ppl: Value = serde_yaml::from_str(&pf.spec.ppl).map_err(|e| {
                    Problem::Invalid(format!("{what}: PolicyFilter {key}: invalid PPL: {e}"))
                })?;
                match ppl {
                    Value::Array(items) => policies.extend(items),
                    Value::Null => {}
                    other => policies.push(other),
                }
            }
            other => {
                return Err(Problem::Invalid(format!(
                    "{what}: filter type {other:?} is not supported by rampart"
                )))
            }
        }
    }
    if !policies.is_empty() {
        base.policy = Some(Value::Array(policies));
    }

    // --- matches ---
    let default_match = [HttpRouteMatch::default()];
    let matches: &[HttpRouteMatch] = if rule.matches.is_empty() {
        &default_match
    } else {
        &rule.matches
    };
    let mut out = Vec::new();
    for (j, m) in matches.iter().enumerate() {
        let what = format!("{label}.matches[{j}]");
        let mut cfg = base.clone();
        let path_type = m
            .path
            .as_ref()
            .and_then(|p| p.type_.as_deref())
            .unwrap_or("PathPrefix");
        let value = m
            .path
            .as_ref()
            .and_then(|p| p.value.as_deref())
            .unwrap_or("/");
        let mut prefix_trimmed: Option<String> = None;
        match path_type {
            "Exact" => cfg.path = Some(value.to_string()),
            "PathPrefix" => {
                if !value.starts_with('/') {
                    return Err(Problem::Invalid(format!(
                        "{what}: path {value:?} must start with /"
                    )));
                }
                let trimmed = value.trim_end_matches('/');
                if trimmed.is_empty() {
                    cfg.prefix = Some("/".into());
                } else {
                    // Element-wise prefix: `/foo` matches `/foo` and `/foo/…`, not `/foobar`.
                    cfg.regex = Some(format!("{}(?:/.*)?", regex::escape(trimmed)));
                }
                prefix_trimmed = Some(trimmed.to_string());
            }
            "RegularExpression" => {
                regex::Regex::new(value).map_err(|e| {
                    Problem::Invalid(format!("{what}: invalid regular expression {value:?}: {e}"))
                })?;
                cfg.regex = Some(value.to_string());
            }
            other => {
                return Err(Problem::Invalid(format!(
                    "{what}: path type {other:?} is not supported"
                )))
            }
        }
        if let Some(pm) = rewrite {
            match pm.type_.as_str() {
                "ReplaceFullPath" => {
                    let to = pm.replace_full_path.as_deref().unwrap_or("/");
                    cfg.regex_rewrite_pattern = Some("^.*$".into());
                    // Envoy substitution syntax (`\1`); `$` is literal there.
                    cfg.regex_rewrite_substitution = Some(to.to_string());
                }
                "ReplacePrefixMatch" => {
                    let Some(p) = &prefix_trimmed else {
                        return Err(Problem::Invalid(format!(
                            "{what}: ReplacePrefixMatch needs a PathPrefix match"
                        )));
                    };
                    let to = pm.replace_prefix_match.as_deref().unwrap_or("/");
                    cfg.regex_rewrite_pattern = Some(format!("^{}(/.*)?$", regex::escape(p)));
                    cfg.regex_rewrite_substitution =
                        Some(format!("{}\\1", to.trim_end_matches('/')));
                }
                other => {
                    return Err(Problem::Invalid(format!(
                        "{label}: URLRewrite path type {other:?} is not supported"
                    )))
                }
            }
        }
        if let Some(rr) = redirect {
            let mut r = crate::config::RedirectConfig {
                scheme_redirect: rr.scheme.clone(),
                host_redirect: rr.hostname.clone(),
                port_redirect: rr.port.and_then(|p| u16::try_from(p).ok()),
                response_code: Some(rr.status_code.unwrap_or(302)),
                ..Default::default()
            };
            if let Some(pm) = &rr.path {
                match pm.type_.as_str() {
                    "ReplaceFullPath" => {
                        r.path_redirect = Some(pm.replace_full_path.clone().unwrap_or_default())
                    }
                    "ReplacePrefixMatch" => {
                        let Some(p) = &prefix_trimmed else {
                            return Err(Problem::Invalid(format!(
                                "{what}: RequestRedirect ReplacePrefixMatch needs a PathPrefix match"
                            )));
                        };
                        r.prefix_rewrite =
                            Some(pm.replace_prefix_match.clone().unwrap_or_default());
                        r.prefix_match = Some(if p.is_empty() { "/".into() } else { p.clone() });
                    }
                    other => {
                        return Err(Problem::Invalid(format!(
                            "{label}: RequestRedirect path type {other:?} is not supported"
                        )))
                    }
                }
            }
            cfg.redirect = Some(r);
        }
        let vm = |kind: &str, v: &ValueMatch| -> Result<RequestValueMatch, Problem> {
            match v.type_.as_deref().unwrap_or("Exact") {
                "Exact" => Ok(RequestValueMatch {
                    name: v.name.clone(),
                    value: Some(v.value.clone()),
                    regex: None,
                }),
                "RegularExpression" => {
                    regex::Regex::new(&v.value).map_err(|e| {
                        Problem::Invalid(format!(
                            "{what}: {kind} {}: invalid regular expression {:?}: {e}",
                            v.name, v.value
                        ))
                    })?;
                    Ok(RequestValueMatch {
                        name: v.name.clone(),
                        value: None,
                        regex: Some(v.value.clone()),
                    })
                }
                other => Err(Problem::Invalid(format!(
                    "{what}: {kind} {}: match type {other:?} is not supported",
                    v.name
                ))),
            }
        };
        if !m.headers.is_empty() {
            cfg.match_headers = Some(
                m.headers
                    .iter()
                    .map(|h| vm("header", h))
                    .collect::<Result<_, _>>()?,
            );
        }
        if !m.query_params.is_empty() {
            cfg.match_query = Some(
                m.query_params
                    .iter()
                    .map(|h| vm("query parameter", h))
                    .collect::<Result<_, _>>()?,
            );
        }
        cfg.match_method = m.method.clone();
        let specificity = u32::from(m.method.is_some()) * 10_000
            + (m.headers.len().min(99) as u32) * 100
            + m.query_params.len().min(99) as u32;
        out.push(Template {
            cfg,
            rule: index,
            matched: j,
            specificity,
        });
    }
    Ok(out)
}

/// Converts every Gateway API object of ours. See the module docs.
pub fn convert_gateway(
    store: &GatewayStore,
    state: &ClusterState,
    opts: &GatewayOptions,
) -> GatewayOutput {
    let mut out = GatewayOutput::default();
    let mut deps = BTreeSet::new();

    // --- classes ---
    let ours: BTreeSet<&str> = store
        .classes
        .iter()
        .filter(|(_, c)| c.spec.controller_name == opts.controller_name)
        .map(|(n, _)| n.as_str())
        .collect();
    for name in &ours {
        let c = &store.classes[*name];
        let g = c.metadata.generation;
        out.statuses.push(StatusWrite {
            kind: Kind::GatewayClass,
            namespace: String::new(),
            name: name.to_string(),
            uid: c.metadata.uid.clone(),
            status: json!({"conditions": [
                cond("Accepted", true, "Accepted", "accepted by rampart", g),
            ]}),
        });
    }

    // --- gateways and listeners ---
    let mut gateways: BTreeMap<NamespacedName, GatewayInfo> = BTreeMap::new();
    for (key, gw) in &store.gateways {
        if !ours.contains(gw.spec.gateway_class_name.as_str()) {
            continue;
        }
        let listeners = gw
            .spec
            .listeners
            .iter()
            .map(|l| listener_info(&key.namespace, l, store, state, &mut deps))
            .collect();
        gateways.insert(
            key.clone(),
            GatewayInfo {
                key: key.clone(),
                gateway: gw,
                listeners,
            },
        );
    }

    // --- routes ---
    for (rkey, route) in &store.routes {
        let generation = route.metadata.generation;
        let mut parents: Vec<Value> = Vec::new();
        let mut hosts: BTreeSet<String> = BTreeSet::new();
        let mut certificates: Vec<TlsCert> = Vec::new();
        let mut any_accepted = false;
        let ctx = RuleContext {
            ns: &rkey.namespace,
            store,
            state,
        };
        // Rules first (the same for every parent).
        let mut rdeps = BTreeSet::new();
        let templates: Result<Vec<Template>, Problem> = route
            .spec
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| rule_templates(&ctx, i, r, &mut rdeps))
            .collect::<Result<Vec<_>, _>>()
            .map(|v| v.into_iter().flatten().collect());
        for pref in &route.spec.parent_refs {
            let group = pref.group.as_deref().unwrap_or(GATEWAY_GROUP);
            let kind = pref.kind.as_deref().unwrap_or("Gateway");
            if group != GATEWAY_GROUP || kind != "Gateway" {
                continue;
            }
            let gkey = NamespacedName::new(
                pref.namespace.as_deref().unwrap_or(&rkey.namespace),
                pref.name.clone(),
            );
            let Some(info) = gateways.get_mut(&gkey) else {
                continue;
            };
            let mut reason: (&str, String) = (
                "NoMatchingParent",
                match (&pref.section_name, pref.port) {
                    (Some(s), _) => format!("Gateway {gkey} has no listener named {s}"),
                    (None, Some(p)) => format!("Gateway {gkey} has no listener on port {p}"),
                    (None, None) => format!("Gateway {gkey} has no listeners"),
                },
            );
            let mut accepted_here = false;
            for li in info.listeners.iter_mut() {
                let l = li.listener;
                if pref.section_name.as_ref().is_some_and(|s| *s != l.name)
                    || pref.port.is_some_and(|p| p != l.port)
                {
                    continue;
                }
                if let Some((_, r, m)) = &li.problem {
                    reason = (
                        "NotAllowedByListeners",
                        format!("listener {}: {r}: {m}", l.name),
                    );
                    continue;
                }
                if let Err(m) = allows(l, &gkey.namespace, &rkey.namespace, &store.namespaces) {
                    reason = ("NotAllowedByListeners", m);
                    continue;
                }
                let h = effective_hosts(l.hostname.as_deref(), &route.spec.hostnames);
                if h.is_empty() {
                    if reason.0 != "NotAllowedByListeners" {
                        reason = (
                            "NoMatchingListenerHostname",
                            format!(
                                "no hostname of the route matches listener {} hostname {}",
                                l.name,
                                l.hostname.as_deref().unwrap_or("")
                            ),
                        );
                    }
                    continue;
                }
                accepted_here = true;
                li.attached += 1;
                hosts.extend(h);
                certificates.extend(li.certificates.iter().cloned());
            }
            any_accepted |= accepted_here;
            let (accepted, resolved) = match (&templates, accepted_here) {
                (_, false) => (
                    cond("Accepted", false, reason.0, &reason.1, generation),
                    None,
                ),
                (Ok(_), true) => (
                    cond("Accepted", true, "Accepted", "accepted", generation),
                    Some(cond(
                        "ResolvedRefs",
                        true,
                        "ResolvedRefs",
                        "resolved",
                        generation,
                    )),
                ),
                (Err(Problem::Refs(r, m)), true) => (
                    cond("Accepted", true, "Accepted", "accepted", generation),
                    Some(cond("ResolvedRefs", false, r, m, generation)),
                ),
                (Err(Problem::Invalid(m)), true) => (
                    cond("Accepted", false, "UnsupportedValue", m, generation),
                    Some(cond(
                        "ResolvedRefs",
                        true,
                        "ResolvedRefs",
                        "resolved",
                        generation,
                    )),
                ),
            };
            let resolved = resolved.unwrap_or_else(|| {
                let (ok, r, m) = match &templates {
                    Err(Problem::Refs(r, m)) => (false, *r, m.as_str()),
                    _ => (true, "ResolvedRefs", "resolved"),
                };
                cond("ResolvedRefs", ok, r, m, generation)
            });
            let mut parent_ref = json!({
                "group": GATEWAY_GROUP,
                "kind": "Gateway",
                "namespace": gkey.namespace,
                "name": gkey.name,
            });
            if let Some(s) = &pref.section_name {
                parent_ref["sectionName"] = json!(s);
            }
            if let Some(p) = pref.port {
                parent_ref["port"] = json!(p);
            }
            parents.push(json!({
                "parentRef": parent_ref,
                "controllerName": opts.controller_name,
                "conditions": [accepted, resolved],
            }));
        }
        let current: Vec<&Value> = route
            .status
            .as_ref()
            .and_then(|st| st.get("parents"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .collect();
        let ours = |p: &Value| p["controllerName"].as_str() == Some(opts.controller_name.as_str());
        if parents.is_empty() && !current.iter().any(|p| ours(p)) {
            continue;
        }
        // Keep other controllers' entries (a merge patch replaces the whole list); a route
        // no longer attached to our Gateways loses only our entries.
        parents.extend(current.into_iter().filter(|p| !ours(p)).cloned());
        out.statuses.push(StatusWrite {
            kind: Kind::HttpRoute,
            namespace: rkey.namespace.clone(),
            name: rkey.name.clone(),
            uid: route.metadata.uid.clone(),
            status: json!({ "parents": parents }),
        });
        if !any_accepted {
            continue;
        }
        deps.extend(rdeps);
        let result = templates
            .map_err(|p| format!("HTTPRoute {rkey}: {}", p.text()))
            .and_then(|t| stamp_routes(rkey, &t, &hosts));
        certificates.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        certificates.dedup_by(|a, b| a.namespace == b.namespace && a.name == b.name);
        out.routes.insert(
            rkey.clone(),
            result.map(|routes| Converted {
                routes,
                certificates,
            }),
        );
    }

    // --- gateway status ---
    for info in gateways.values() {
        let gw = info.gateway;
        let g = gw.metadata.generation;
        let listeners: Vec<Value> = info
            .listeners
            .iter()
            .map(|li| {
                let mut conds = vec![];
                let (acc, res) = match &li.problem {
                    Some(("Accepted", r, m)) => (
                        cond("Accepted", false, r, m, g),
                        cond("ResolvedRefs", true, "ResolvedRefs", "resolved", g),
                    ),
                    Some((_, r, m)) => (
                        cond("Accepted", true, "Accepted", "accepted", g),
                        cond("ResolvedRefs", false, r, m, g),
                    ),
                    None => (
                        cond("Accepted", true, "Accepted", "accepted", g),
                        cond("ResolvedRefs", true, "ResolvedRefs", "resolved", g),
                    ),
                };
                conds.push(acc);
                conds.push(res);
                conds.push(match &li.problem {
                    None => cond("Programmed", true, "Programmed", "programmed", g),
                    Some(_) => cond("Programmed", false, "Invalid", "listener is invalid", g),
                });
                json!({
                    "name": li.listener.name,
                    "supportedKinds": [{"group": GATEWAY_GROUP, "kind": "HTTPRoute"}],
                    "attachedRoutes": li.attached,
                    "conditions": conds,
                })
            })
            .collect();
        let all_bad =
            !info.listeners.is_empty() && info.listeners.iter().all(|l| l.problem.is_some());
        let (acc, prog) = if all_bad {
            (
                cond(
                    "Accepted",
                    false,
                    "ListenersNotValid",
                    "no listener is valid",
                    g,
                ),
                cond("Programmed", false, "Invalid", "no listener is valid", g),
            )
        } else {
            (
                cond("Accepted", true, "Accepted", "accepted by rampart", g),
                cond("Programmed", true, "Programmed", "programmed", g),
            )
        };
        out.statuses.push(StatusWrite {
            kind: Kind::Gateway,
            namespace: info.key.namespace.clone(),
            name: info.key.name.clone(),
            uid: gw.metadata.uid.clone(),
            status: json!({"conditions": [acc, prog], "listeners": listeners}),
        });
    }
    out.statuses
        .sort_by(|a, b| (a.kind, &a.namespace, &a.name).cmp(&(b.kind, &b.namespace, &b.name)));
    out.dependencies = deps;
    out
}

/// One route per (host, rule, match), checked as the proxy would load it.
fn stamp_routes(
    rkey: &NamespacedName,
    templates: &[Template],
    hosts: &BTreeSet<String>,
) -> Result<Vec<RouteConfig>, String> {
    let defaults = RouteDefaults {
        timeout: Duration::from_secs(30),
    };
    let mut routes = Vec::with_capacity(templates.len() * hosts.len());
    for host in hosts {
        for t in templates {
            let mut r = t.cfg.clone();
            r.from = format!("https://{host}");
            // Lower ids sort first among routes with the same host and path.
            r.id = Some(format!(
                "httproute-{:05}-{}-{}-{}-{}-{host}",
                99_999 - t.specificity.min(99_999),
                rkey.namespace,
                rkey.name,
                t.rule,
                t.matched
            ));
            r.name = Some(format!(
                "{}-{}-r{}-m{}",
                rkey.namespace, rkey.name, t.rule, t.matched
            ));
            let label = format!("HTTPRoute {rkey} rules[{}].matches[{}]", t.rule, t.matched);
            validate_route(&label, r.id.clone().unwrap_or_default(), &r, &defaults)
                .map_err(|e| e.to_string())?;
            crate::policy::compile_route_config(&r).map_err(|e| format!("{label}: {e}"))?;
            routes.push(r);
        }
    }
    Ok(routes)
}
