//! Upstream `to` URLs of a Service backend (ingress-controller spec §4.3).

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::IngressServiceBackend;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::context::ClusterState;
use crate::k8s::annotations::Flags;

/// The Service port number a backend refers to (by number, or by the name of a Service port).
pub fn service_port(
    ns: &str,
    backend: &IngressServiceBackend,
    svc: &Service,
) -> Result<i32, String> {
    let port = backend.port.as_ref();
    match port.and_then(|p| p.name.as_deref()).filter(|n| !n.is_empty()) {
        Some(name) => svc
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .and_then(|ports| ports.iter().find(|p| p.name.as_deref() == Some(name)))
            .map(|p| p.port)
            .ok_or_else(|| {
                format!(
                    "get service {ns}/{svc_name} port by name {name}: could not find port {name} on service {ns}/{svc_name}",
                    svc_name = backend.name
                )
            }),
        None => Ok(port.and_then(|p| p.number).unwrap_or(0)),
    }
}

fn is_external_name(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("ExternalName")
}

/// `host:port` with brackets around IPv6 addresses.
fn join_host_port(host: &str, port: i32) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Resolved upstream of one backend.
pub struct Upstream {
    /// Sorted `scheme://host:port` URLs.
    pub urls: Vec<String>,
    /// Service port (used by tcp/udp `from`).
    pub port: i32,
    /// Set when endpoint IPs are used with `secure_upstream`: `svc.ns.svc.cluster.local`.
    pub tls_server_name: Option<String>,
}

/// Computes the `to` URLs. The Service (and, unless ExternalName, its endpoints) were checked
/// to exist by the fetch stage.
pub fn upstream(
    state: &ClusterState,
    ns: &str,
    backend: &IngressServiceBackend,
    flags: &Flags,
) -> Result<Upstream, String> {
    let svc = state.service(ns, &backend.name).ok_or_else(|| {
        format!(
            "service {ns}/{} was not fetched, this is a bug",
            backend.name
        )
    })?;
    let port = service_port(ns, backend, svc).map_err(|e| format!("get service from path: {e}"))?;
    let dns = || join_host_port(&format!("{}.{ns}.svc.cluster.local", backend.name), port);
    let mut tls_server_name = None;
    let hosts: Vec<String> = if is_external_name(svc) {
        let ext = svc
            .spec
            .as_ref()
            .and_then(|s| s.external_name.as_deref())
            .unwrap_or("");
        vec![join_host_port(ext, port)]
    } else if flags.service_proxy_upstream {
        vec![dns()]
    } else {
        let hosts = endpoint_hosts(state, ns, backend, svc);
        if hosts.is_empty() {
            vec![dns()]
        } else {
            if flags.secure_upstream {
                tls_server_name = Some(format!("{}.{ns}.svc.cluster.local", backend.name));
            }
            hosts
        }
    };
    let scheme = if flags.tcp_upstream {
        "tcp"
    } else if flags.udp_upstream {
        "udp"
    } else if flags.secure_upstream {
        "https"
    } else if flags.h2c_upstream {
        "h2c"
    } else {
        "http"
    };
    let mut urls: Vec<String> = hosts.iter().map(|h| format!("{scheme}://{h}")).collect();
    urls.sort();
    urls.dedup();
    Ok(Upstream {
        urls,
        port,
        tls_server_name,
    })
}

/// How endpoint ports are matched for a backend.
enum PortMatch {
    /// Backend port by name: endpoint ports of that name.
    Name(String),
    /// Backend port by number: endpoint ports equal to the Service port's numeric targetPort.
    Target(i32),
}

impl PortMatch {
    fn matches(&self, name: Option<&str>, port: i32) -> bool {
        match self {
            PortMatch::Name(n) => name == Some(n.as_str()),
            PortMatch::Target(t) => *t == port,
        }
    }
}

fn port_match(backend: &IngressServiceBackend, svc: &Service) -> Option<PortMatch> {
    let bp = backend.port.as_ref();
    if let Some(name) = bp.and_then(|p| p.name.as_deref()).filter(|n| !n.is_empty()) {
        return Some(PortMatch::Name(name.to_string()));
    }
    let number = bp.and_then(|p| p.number)?;
    let sp = svc
        .spec
        .as_ref()?
        .ports
        .as_ref()?
        .iter()
        .find(|p| p.port == number)?;
    match &sp.target_port {
        // The API server defaults targetPort to port; hand-written files may omit it.
        None => Some(PortMatch::Target(sp.port)),
        Some(IntOrString::Int(t)) => Some(PortMatch::Target(*t)),
        // A named targetPort matches nothing (upstream reads only its numeric value).
        Some(IntOrString::String(_)) => None,
    }
}

/// Ready endpoint `host:port`s: from the Endpoints object, else from EndpointSlices.
fn endpoint_hosts(
    state: &ClusterState,
    ns: &str,
    backend: &IngressServiceBackend,
    svc: &Service,
) -> Vec<String> {
    let Some(pm) = port_match(backend, svc) else {
        return Vec::new();
    };
    let mut hosts = Vec::new();
    if let Some(ep) = state.endpoints(ns, &backend.name) {
        for subset in ep.subsets.iter().flatten() {
            for addr in subset.addresses.iter().flatten() {
                for p in subset.ports.iter().flatten() {
                    if pm.matches(p.name.as_deref(), p.port) {
                        hosts.push(join_host_port(&addr.ip, p.port));
                    }
                }
            }
        }
        return hosts;
    }
    for slice in state.endpoint_slices(ns, &backend.name) {
        for e in slice.endpoints.iter().flatten() {
            if e.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            for addr in &e.addresses {
                for p in slice.ports.iter().flatten() {
                    let Some(port) = p.port else { continue };
                    if pm.matches(p.name.as_deref(), port) {
                        hosts.push(join_host_port(addr, port));
                    }
                }
            }
        }
    }
    hosts
}

/// Whether the Service exists and, unless ExternalName, has endpoints (an Endpoints object or
/// at least one EndpointSlice). `Err` is the Kubernetes-style not-found text.
pub fn fetch_service(state: &ClusterState, ns: &str, name: &str) -> Result<(), String> {
    let svc = state
        .service(ns, name)
        .ok_or_else(|| format!("Service {name:?} not found"))?;
    if is_external_name(svc) {
        return Ok(());
    }
    if state.endpoints(ns, name).is_some() || !state.endpoint_slices(ns, name).is_empty() {
        return Ok(());
    }
    Err(format!("Endpoints {name:?} not found"))
}
