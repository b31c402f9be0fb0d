//! Helpers for k8s unit tests: objects from YAML, generated certificates.

use std::path::Path;

use base64::Engine;
use k8s_openapi::api::networking::v1::Ingress;

use crate::k8s::render::parse_documents;
use crate::k8s::KubeObject;

use super::{
    convert_ingress, is_managed, ClusterState, ConversionContext, ConvertOptions, ConvertedIngress,
};

pub fn objects(yaml: &str) -> Vec<KubeObject> {
    parse_documents(yaml, Path::new("test.yaml"))
        .expect("test YAML")
        .0
}

pub fn ingress(yaml: &str) -> Ingress {
    match objects(yaml).pop() {
        Some(KubeObject::Ingress(i)) => *i,
        other => panic!("not an Ingress: {other:?}"),
    }
}

pub const CLASS: &str = "
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: pomerium}
spec: {controller: pomerium.io/ingress-controller}
";

/// Service `svc` (port 80 named http → targetPort 8080, port 443 named https → 8443) with
/// Endpoints 10.0.0.1 and 10.0.0.2 on both ports, in namespace `default`.
pub const SVC: &str = "
apiVersion: v1
kind: Service
metadata: {name: svc, namespace: default}
spec:
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: https, port: 443, targetPort: 8443}
---
apiVersion: v1
kind: Endpoints
metadata: {name: svc, namespace: default}
subsets:
- addresses: [{ip: 10.0.0.2}, {ip: 10.0.0.1}]
  notReadyAddresses: [{ip: 10.0.0.9}]
  ports: [{name: http, port: 8080}, {name: https, port: 8443}]
";

pub fn state(yaml: &str) -> ClusterState {
    let mut s = ClusterState::new();
    for o in objects(yaml) {
        s.upsert(&o);
    }
    s
}

/// Converts `ing` (YAML) against `CLASS` + `SVC` + `extra` objects.
pub fn convert_with(ing: &str, extra: &str) -> Result<ConvertedIngress, String> {
    let st = state(&format!("{CLASS}\n---\n{SVC}\n---\n{extra}"));
    let opts = ConvertOptions::default();
    let ctx = ConversionContext::new(&st, &opts);
    let i = ingress(ing);
    is_managed(&i, &ctx).map_err(|e| format!("not managed: {e}"))?;
    convert_ingress(&i, &ctx).map_err(|e| e.to_string())
}

pub fn convert(ing: &str) -> Result<ConvertedIngress, String> {
    convert_with(ing, "")
}

/// Ingress `default/ing` on `a.example.com` with one path to `svc:http`, plus annotations
/// (a YAML mapping body, already indented for `annotations:`).
pub fn simple_ingress(annotations: &str) -> String {
    format!(
        "
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: ing
  namespace: default
  annotations:
    kubernetes.io/description: x
{annotations}
spec:
  ingressClassName: pomerium
  rules:
  - host: a.example.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend: {{service: {{name: svc, port: {{name: http}}}}}}
"
    )
}

/// A self-signed certificate (PEM cert, PEM key) for the given DNS names.
pub fn cert(names: &[&str]) -> (String, String) {
    let ck =
        rcgen::generate_simple_self_signed(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("rcgen");
    (ck.cert.pem(), ck.key_pair.serialize_pem())
}

pub fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A `kubernetes.io/tls` Secret in `default`.
pub fn tls_secret(name: &str, names: &[&str]) -> String {
    let (c, k) = cert(names);
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: default}}\ntype: kubernetes.io/tls\ndata: {{tls.crt: {}, tls.key: {}}}\n",
        b64(&c),
        b64(&k)
    )
}
