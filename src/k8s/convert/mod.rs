//! Ingress → routes (ingress-controller spec §2, §4, §5) and `Pomerium` CRD → settings (§7, §8).
//! Pure functions over a read-only `ConversionContext`.

pub mod backend;
pub mod certs;
pub mod context;
pub mod ids;
pub mod settings;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, Ingress, IngressBackend, IngressClass, IngressTLS,
};
use serde_json::Value;
use thiserror::Error;

use crate::config::route::{validate_route, RouteDefaults};
use crate::config::{OneOrMany, RouteConfig};
use crate::k8s::annotations::{self, Flags, ParsedAnnotations};
use crate::k8s::{ns_of, Kind, ObjectKey};

pub use certs::TlsCert;
pub use context::{ClusterState, ConversionContext, ConvertOptions, SecretLookup, WatchedSecrets};
pub use settings::pomerium_to_settings;

/// Legacy class annotation (cert-manager HTTP-01 solvers still use it).
pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
pub const HTTP01_SOLVER_LABEL: &str = "acme.cert-manager.io/http01-solver";
pub const SECRET_TYPE_TLS: &str = "kubernetes.io/tls";

/// Why an Ingress is not ours (the reason text of spec §2).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct NotManaged(pub String);

/// Why an Ingress was rejected. `Display` is the full upstream-style text (spec §4.1, §6.1).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConvertError {
    /// Fetch stage: `tls: get secret …`, `services: rule host=… …`.
    #[error("{0}")]
    Fetch(String),
    #[error("parsing ingress: {0}")]
    Parse(String),
    #[error("indexing new routes: {0}")]
    Index(String),
    #[error("removing unused certs: {0}")]
    Certs(String),
    #[error("config validation: {0}")]
    Validation(String),
}

/// The result of converting one Ingress.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConvertedIngress {
    /// One route per (rule, path), plus the defaultBackend route; each with `id` (§4.4 JSON
    /// id) and `name`. Not sorted.
    pub routes: Vec<RouteConfig>,
    /// Every `kubernetes.io/tls` Secret the Ingress references (spec.tls and `*_secret`
    /// annotations). The merge step drops the ones matching no route host.
    pub certificates: Vec<TlsCert>,
    /// Every Service/Endpoints/EndpointSlice/Secret the Ingress refers to.
    pub dependencies: Vec<ObjectKey>,
    /// Route options accepted from annotations that `RouteConfig` has no field for yet; they
    /// apply to every route of this Ingress.
    pub extras: BTreeMap<String, Value>,
    /// cert-manager HTTP-01 solver (§5): routes are public and must also be served on the
    /// plain HTTP listener.
    pub http01_solver: bool,
}

/// Go `strconv.ParseBool` true values.
fn parse_bool_true(v: &str) -> bool {
    matches!(v, "1" | "t" | "T" | "TRUE" | "true" | "True")
}

/// The class an Ingress asks for: `spec.ingressClassName`, else the legacy annotation.
pub fn ingress_class_name(ing: &Ingress) -> Option<&str> {
    if let Some(c) = ing
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref())
        .filter(|c| !c.is_empty())
    {
        return Some(c);
    }
    let legacy = ing
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION))
        .map(String::as_str)
        .filter(|c| !c.is_empty());
    if legacy.is_some() {
        tracing::debug!(
            "use of deprecated annotation kubernetes.io/ingress.class, please use spec.ingressClassName instead"
        );
    }
    legacy
}

/// Decides whether the controller manages this Ingress (spec §2).
pub fn is_managed(ing: &Ingress, ctx: &ConversionContext) -> Result<(), NotManaged> {
    let ns = ns_of(&ing.metadata);
    let name = ing.metadata.name.as_deref().unwrap_or("");
    let opts = ctx.options;
    if !opts.namespaces.is_empty() && !opts.namespaces.iter().any(|n| n == ns) {
        return Err(NotManaged(format!(
            "ingress {ns}/{name} is not in the namespace list this controller is managing"
        )));
    }
    let ours = |c: &k8s_openapi::api::networking::v1::IngressClass| {
        c.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(opts.controller_name.as_str())
    };
    match ingress_class_name(ing) {
        Some(class) => match ctx.state.ingress_class(class) {
            Some(c) if ours(c) => Ok(()),
            _ => Err(NotManaged(format!(
                "IngressClass {class} not found or is not assigned to this controller {}",
                opts.controller_name
            ))),
        },
        None => {
            let default = ctx.state.ingress_classes().any(|c| {
                ours(c)
                    && c.metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                        .is_some_and(|v| parse_bool_true(v))
            });
            if default {
                Ok(())
            } else {
                Err(NotManaged(format!(
                    "the ingress did not specify an ingressClass, and no ingressClass managed by controller {} is marked as default",
                    opts.controller_name
                )))
            }
        }
    }
}

/// The IngressClass an Ingress is managed through: the one it names, else the default class
/// owned by this controller.
fn managing_class<'a>(ing: &Ingress, ctx: &ConversionContext<'a>) -> Option<&'a IngressClass> {
    match ingress_class_name(ing) {
        Some(class) => ctx.state.ingress_class(class),
        None => ctx.state.ingress_classes().find(|c| {
            c.spec.as_ref().and_then(|s| s.controller.as_deref())
                == Some(ctx.options.controller_name.as_str())
                && c.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                    .is_some_and(|v| parse_bool_true(v))
        }),
    }
}

/// Default route annotations for every Ingress of a class: the `‹prefix›/…` annotations of
/// its IngressClass (rampart only; an Ingress's own annotations override them key by key).
/// Returns the class name and the defaults; empty when the class has none.
pub fn class_defaults(
    ing: &Ingress,
    ctx: &ConversionContext,
) -> (String, BTreeMap<String, String>) {
    let Some(class) = managing_class(ing, ctx) else {
        return (String::new(), BTreeMap::new());
    };
    let prefix = format!("{}/", ctx.options.prefix);
    let defaults = class
        .metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    (class.metadata.name.clone().unwrap_or_default(), defaults)
}

/// The annotations a conversion reads: the class defaults with the Ingress's own on top.
fn effective_annotations(
    ing: &Ingress,
    ctx: &ConversionContext,
) -> Option<BTreeMap<String, String>> {
    let (_, mut merged) = class_defaults(ing, ctx);
    if merged.is_empty() {
        return ing.metadata.annotations.clone();
    }
    merged.extend(
        ing.metadata
            .annotations
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    Some(merged)
}

/// cert-manager HTTP-01 solver Ingress (label value `true`, case-insensitive).
pub fn is_http01_solver(ing: &Ingress) -> bool {
    ing.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(HTTP01_SOLVER_LABEL))
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn backends(ing: &Ingress) -> impl Iterator<Item = &IngressBackend> {
    let spec = ing.spec.as_ref();
    spec.and_then(|s| s.default_backend.as_ref())
        .into_iter()
        .chain(
            spec.and_then(|s| s.rules.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|r| r.http.as_ref())
                .flat_map(|h| h.paths.iter().map(|p| &p.backend)),
        )
}

fn tls_secret_names(ing: &Ingress) -> impl Iterator<Item = &str> {
    ing.spec
        .as_ref()
        .and_then(|s| s.tls.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|t| t.secret_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// Every object the conversion of `ing` reads (found or not), sorted. An EndpointSlice key
/// names the Service whose slices are read.
pub fn ingress_dependencies(ing: &Ingress, ctx: &ConversionContext) -> Vec<ObjectKey> {
    let ns = ns_of(&ing.metadata);
    let mut deps = Vec::new();
    for s in tls_secret_names(ing) {
        deps.push(ObjectKey::new(Kind::Secret, ns, s));
    }
    let annotations = effective_annotations(ing, ctx);
    for (_, s) in annotations::secret_refs(annotations.as_ref(), &ctx.options.prefix) {
        deps.push(ObjectKey::new(Kind::Secret, ns, s));
    }
    for b in backends(ing) {
        if let Some(svc) = &b.service {
            for kind in [Kind::Service, Kind::Endpoints, Kind::EndpointSlice] {
                deps.push(ObjectKey::new(kind, ns, svc.name.clone()));
            }
        }
    }
    deps.sort();
    deps.dedup();
    deps
}

const EMPTY_HOST: &str = "ingress rule has empty host; if this is intentional, set the annotation 'ingress.pomerium.io/subtle_allow_empty_host=true'";

/// Converts one managed Ingress into routes and certificates.
pub fn convert_ingress(
    ing: &Ingress,
    ctx: &ConversionContext,
) -> Result<ConvertedIngress, ConvertError> {
    let ns = ns_of(&ing.metadata);
    let name = ing.metadata.name.as_deref().unwrap_or("");
    let state = ctx.state;
    let solver = is_http01_solver(ing);
    let mut effective = effective_annotations(ing, ctx);
    let nginx = if solver {
        None
    } else {
        nginx_translation(ing, ctx, &mut effective)?
    };
    let annotations = effective.as_ref();

    // --- fetch stage (§4.1) ---
    let mut fetched: Vec<(&str, &Secret)> = Vec::new();
    let annotation_secrets = if solver {
        Vec::new()
    } else {
        annotations::secret_refs(annotations, &ctx.options.prefix)
    };
    for secret_name in tls_secret_names(ing).chain(annotation_secrets.iter().map(|(_, n)| *n)) {
        match state.secret(ns, secret_name) {
            Some(s) => {
                if !fetched.iter().any(|(n, _)| *n == secret_name) {
                    fetched.push((secret_name, s));
                }
            }
            None => {
                return Err(ConvertError::Fetch(format!(
                    "tls: get secret {ns}/{secret_name}: Secret {secret_name:?} not found"
                )))
            }
        }
    }
    let spec = ing.spec.as_ref();
    for rule in spec.and_then(|s| s.rules.as_ref()).into_iter().flatten() {
        let Some(http) = &rule.http else { continue };
        let host = rule.host.as_deref().unwrap_or("");
        for p in &http.paths {
            let path = p.path.as_deref().unwrap_or("");
            let Some(svc) = &p.backend.service else {
                return Err(ConvertError::Fetch(format!(
                    "services: rule host={host} path={path} has no backend service defined"
                )));
            };
            backend::fetch_service(state, ns, &svc.name).map_err(|e| {
                ConvertError::Fetch(format!(
                    "services: rule host={host} path={path} refers to service {ns}/{} port={}, failed to get service information: {e}",
                    svc.name,
                    ids::go_port(svc.port.as_ref())
                ))
            })?;
        }
    }
    if let Some(db) = spec.and_then(|s| s.default_backend.as_ref()) {
        let Some(svc) = &db.service else {
            return Err(ConvertError::Fetch(
                "services: defaultBackend: no backend service defined".into(),
            ));
        };
        backend::fetch_service(state, ns, &svc.name)
            .map_err(|e| ConvertError::Fetch(format!("services: defaultBackend: {e}")))?;
    }

    // --- annotations (§3, §5) ---
    let parsed = if solver {
        let mut p = ParsedAnnotations::default();
        p.route.allow_public_unauthenticated_access = Some(true);
        p.route.preserve_host_header = Some(true);
        p
    } else {
        let lookup = |n: &str| state.secret(ns, n);
        // Bad class defaults name the IngressClass, not the Ingress.
        let (class, defaults) = class_defaults(ing, ctx);
        if !defaults.is_empty() {
            annotations::parse_annotations(Some(&defaults), &ctx.options.prefix, &lookup).map_err(
                |e| ConvertError::Parse(format!("annotations: IngressClass {class} defaults: {e}")),
            )?;
        }
        annotations::parse_annotations(annotations, &ctx.options.prefix, &lookup)
            .map_err(|e| ConvertError::Parse(format!("annotations: {e}")))?
    };

    // --- routes (§4.2-§4.4) ---
    let builder = RouteBuilder {
        ctx,
        ns,
        name,
        tmpl: &parsed.route,
        flags: parsed.flags,
    };
    let mut routes: Vec<(String, String, RouteConfig)> = Vec::new();
    if let Some(db) = spec.and_then(|s| s.default_backend.as_ref()) {
        let host = default_backend_host(spec.and_then(|s| s.tls.as_deref()).unwrap_or(&[]))
            .map_err(|e| ConvertError::Parse(format!("defaultBackend: deriving host: {e}")))?;
        let p = HTTPIngressPath {
            backend: db.clone(),
            path: Some("/".into()),
            path_type: "Prefix".into(),
        };
        let r = builder
            .path_route(&host, &p)
            .map_err(|e| ConvertError::Parse(format!("defaultBackend: {e}")))?;
        routes.push((host, "/".into(), r));
    }
    for rule in spec.and_then(|s| s.rules.as_ref()).into_iter().flatten() {
        let mut host = rule.host.as_deref().unwrap_or("").to_string();
        if host.is_empty() {
            if !parsed.flags.subtle_allow_empty_host {
                return Err(ConvertError::Parse(EMPTY_HOST.into()));
            }
            host = "*".into();
        }
        let Some(http) = &rule.http else {
            return Err(ConvertError::Parse("rules.http is required".into()));
        };
        for p in &http.paths {
            let r = builder.path_route(&host, p).map_err(ConvertError::Parse)?;
            routes.push((host.clone(), p.path.clone().unwrap_or_default(), r));
        }
    }

    if let Some(t) = &nginx {
        for (_, _, r) in &mut routes {
            t.apply_to_route(r);
        }
    }

    // --- duplicate ids (§4.5) ---
    let mut seen = HashSet::with_capacity(routes.len());
    for (host, path, r) in &routes {
        if !seen.insert(r.id.as_deref().unwrap_or("")) {
            return Err(ConvertError::Index(format!(
                "duplicate route {{Name:{name} Namespace:{ns} Host:{host} Path:{path}}}"
            )));
        }
    }

    // --- certificates (§4.6) ---
    let mut certificates = Vec::new();
    for (secret_name, s) in &fetched {
        if context::secret_type(s) == SECRET_TYPE_TLS {
            certificates.push(certs::tls_cert(ns, secret_name, s).map_err(ConvertError::Certs)?);
        }
    }

    // --- validation: every route must load in the proxy ---
    let defaults = RouteDefaults {
        timeout: Duration::from_secs(30),
    };
    let routes: Vec<RouteConfig> = routes.into_iter().map(|(_, _, r)| r).collect();
    for r in &routes {
        let label = format!("{ns}/{name} route {}", r.name.as_deref().unwrap_or(""));
        validate_route(&label, r.id.clone().unwrap_or_default(), r, &defaults)
            .map_err(|e| ConvertError::Validation(e.to_string()))?;
        crate::policy::compile_route_config(r)
            .map_err(|e| ConvertError::Validation(format!("{label}: {e}")))?;
    }

    Ok(ConvertedIngress {
        routes,
        certificates,
        dependencies: ingress_dependencies(ing, ctx),
        extras: parsed.extras,
        http01_solver: solver,
    })
}

/// Is ingress-nginx compatibility on for this Ingress: `--ingress-nginx-compat`, or the
/// `rampart.io/ingress-nginx-compat: "true"` annotation on its IngressClass.
pub fn nginx_compat_enabled(ing: &Ingress, ctx: &ConversionContext) -> bool {
    ctx.options.ingress_nginx_compat
        || managing_class(ing, ctx).is_some_and(|c| {
            c.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(crate::k8s::nginx_compat::COMPAT_CLASS_ANNOTATION))
                .is_some_and(|v| parse_bool_true(v))
        })
}

/// With compatibility on, translates the Ingress's nginx annotations into ours (added to
/// `effective`); any untranslatable one rejects the Ingress.
fn nginx_translation(
    ing: &Ingress,
    ctx: &ConversionContext,
    effective: &mut Option<BTreeMap<String, String>>,
) -> Result<Option<crate::k8s::nginx_compat::Translation>, ConvertError> {
    use crate::k8s::nginx_compat;
    if !nginx_compat_enabled(ing, ctx) {
        return Ok(None);
    }
    let all = effective.get_or_insert_with(BTreeMap::new);
    let t = nginx_compat::translate(all, &ctx.options.prefix, &Default::default());
    if t.is_empty() {
        return Ok(None);
    }
    t.check()
        .map_err(|e| ConvertError::Parse(format!("annotations: {e}")))?;
    for n in &t.notes {
        tracing::info!(
            ingress = %format!("{}/{}", ns_of(&ing.metadata), ing.metadata.name.as_deref().unwrap_or("")),
            "{n}"
        );
    }
    for (k, v) in &t.annotations {
        all.insert(format!("{}/{k}", ctx.options.prefix), v.clone());
    }
    Ok(Some(t))
}

fn default_backend_host(tls: &[IngressTLS]) -> Result<String, String> {
    if tls.len() != 1 {
        return Err(format!("expected one TLS spec, got {}", tls.len()));
    }
    let hosts = tls[0].hosts.as_deref().unwrap_or(&[]);
    if hosts.len() != 1 {
        return Err(format!(
            "expected exactly one Host in the TLS spec, got {}",
            hosts.len()
        ));
    }
    Ok(hosts[0].clone())
}

struct RouteBuilder<'a> {
    ctx: &'a ConversionContext<'a>,
    ns: &'a str,
    name: &'a str,
    tmpl: &'a RouteConfig,
    flags: Flags,
}

impl RouteBuilder<'_> {
    /// One route; errors read `pathToRoute: ‹Go dump›: ‹stage›: …`.
    fn path_route(&self, host: &str, p: &HTTPIngressPath) -> Result<RouteConfig, String> {
        self.build(host, p)
            .map_err(|e| format!("pathToRoute: {}: {e}", ids::go_path(p)))
    }

    fn build(&self, host: &str, p: &HTTPIngressPath) -> Result<RouteConfig, String> {
        let f = &self.flags;
        let mut r = self.tmpl.clone();
        let raw_path = p.path.as_deref().unwrap_or("");
        let l4 = if f.tcp_upstream {
            Some("tcp")
        } else if f.udp_upstream {
            Some("udp")
        } else {
            None
        };
        let svc = p.backend.service.as_ref();

        // from
        r.from = match l4 {
            Some(kind) => {
                let svc = svc.ok_or("from: service must be specified")?;
                let service = self.ctx.state.service(self.ns, &svc.name).ok_or_else(|| {
                    format!(
                        "from: service {}/{} was not fetched, this is a bug",
                        self.ns, svc.name
                    )
                })?;
                let port = backend::service_port(self.ns, svc, service)
                    .map_err(|e| format!("from: {e}"))?;
                format!("{kind}+https://{host}:{port}")
            }
            None => format!("https://{host}"),
        };

        // path
        if p.path_type.is_empty() {
            return Err("path: pathType is required".into());
        }
        match l4 {
            Some(kind) => {
                if p.path_type != "ImplementationSpecific" {
                    return Err(format!(
                        "path: {kind} services must have ImplementationSpecific path type"
                    ));
                }
                if !raw_path.is_empty() {
                    return Err(format!(
                        "path: {kind} services must not specify path, got {raw_path}"
                    ));
                }
            }
            None => {
                let non_empty = (!raw_path.is_empty()).then(|| raw_path.to_string());
                match p.path_type.as_str() {
                    "ImplementationSpecific" if f.path_regex => r.regex = non_empty,
                    "ImplementationSpecific" | "Prefix" => r.prefix = non_empty,
                    "Exact" => r.path = non_empty,
                    other => return Err(format!("path: unknown pathType {other}")),
                }
            }
        }

        // id and name
        r.id = Some(ids::route_id(self.name, self.ns, host, raw_path));
        if r.name.as_deref().is_none_or(str::is_empty) {
            r.name = Some(ids::route_slug(self.ns, self.name, host, raw_path));
        }

        // upstream
        let svc = svc.ok_or(
            "backend: get service hosts: get service from path: service must be specified",
        )?;
        let up = backend::upstream(self.ctx.state, self.ns, svc, f)
            .map_err(|e| format!("backend: get service hosts: {e}"))?;
        if r.tls_server_name.as_deref().is_none_or(str::is_empty) {
            if let Some(sni) = up.tls_server_name {
                r.tls_server_name = Some(sni);
            }
        }
        r.to = Some(OneOrMany::Many(up.urls));
        Ok(r)
    }
}

impl fmt::Display for ConvertedIngress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} routes, {} certificates",
            self.routes.len(),
            self.certificates.len()
        )
    }
}

#[cfg(test)]
pub(crate) mod testutil;

#[cfg(test)]
mod tests;
