//! Controller set-up shared by the Kubernetes tests: command-line arguments pointing at the
//! fake API server, and the Secrets a `Pomerium` object refers to.

use base64::Engine;
use rampart::controller::ControllerArgs;
use serde_json::{json, Value};

use super::fake_kube::FakeKube;

/// Standard base64, as Secret `data` wants it.
pub fn b64(v: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(v)
}

/// `rampart controller` arguments parsed as on the command line: the fake API server's URL,
/// the health probes on a free port, then `extra`.
pub fn controller_args(kube: &FakeKube, extra: &[&str]) -> ControllerArgs {
    use clap::Parser;
    #[derive(Parser)]
    struct A {
        #[command(flatten)]
        a: ControllerArgs,
    }
    let mut v = vec![
        "test",
        "--kube-api-url",
        kube.url(),
        "--health-probe-bind-address",
        "127.0.0.1:0",
    ];
    v.extend_from_slice(extra);
    A::parse_from(v).a
}

/// `controller_args` for a controller that also serves: its proxy on `127.0.0.1:port` with
/// one worker and no HTTP redirect listener, then `extra`.
pub fn serving_controller_args(kube: &FakeKube, port: u16, extra: &[&str]) -> ControllerArgs {
    let server_addr = format!("127.0.0.1:{port}");
    let mut v = vec![
        "--server-addr",
        &server_addr,
        "--http-redirect-addr",
        "",
        "--proxy-workers",
        "1",
    ];
    v.extend_from_slice(extra);
    controller_args(kube, &v)
}

/// A ClusterIP Service `default/<name>` whose port `port` targets `target_port` (ports
/// unnamed).
pub fn cluster_ip_service(name: &str, cluster_ip: &str, port: u16, target_port: u16) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
           "spec": {"type": "ClusterIP", "clusterIP": cluster_ip, "ports": [{"port": port, "targetPort": target_port, "protocol": "TCP"}]}})
}

/// An EndpointSlice `default/<slice>` of Service `service`: every address in `ips` ready, on
/// `port` (unnamed).
pub fn ready_endpoint_slice(service: &str, slice: &str, ips: &[&str], port: u16) -> Value {
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
           "metadata": {"name": slice, "namespace": "default", "labels": {"kubernetes.io/service-name": service}},
           "endpoints": ips.iter().map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}})).collect::<Vec<_>>(),
           "ports": [{"port": port, "protocol": "TCP"}]})
}

/// The `pomerium` IngressClass of the pomerium.io controller.
pub fn ingress_class() -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
           "metadata": {"name": "pomerium"}, "spec": {"controller": "pomerium.io/ingress-controller"}})
}

/// `pomerium/bootstrap`: the shared and cookie secrets (fixed test values).
pub fn bootstrap_secret() -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
           "metadata": {"name": "bootstrap", "namespace": "pomerium"},
           "data": {"shared_secret": b64(&[1u8; 32]), "cookie_secret": b64(&[2u8; 32])}})
}

/// `pomerium/idp`: the client id and secret the test OpenID provider knows
/// (`rampart` / `rampart-secret`).
pub fn idp_secret() -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
           "metadata": {"name": "idp", "namespace": "pomerium"},
           "data": {"client_id": b64(b"rampart"), "client_secret": b64(b"rampart-secret")}})
}

/// `pomerium/<name>`: a CA bundle (`ca.crt`) for `caSecrets`.
pub fn ca_secret(name: &str, ca_pem: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
           "metadata": {"name": name, "namespace": "pomerium"},
           "data": {"ca.crt": b64(ca_pem.as_bytes())}})
}
