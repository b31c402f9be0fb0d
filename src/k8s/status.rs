//! Status the controller writes (ingress-controller spec §6.3, §6.4), as plain values: the
//! `Pomerium` object's `status.ingress` / `status.settingsStatus` patches and an Ingress's
//! `status.loadBalancer` derived from the proxy Service.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::{
    IngressLoadBalancerIngress, IngressLoadBalancerStatus, IngressPortStatus,
};
use serde_json::{json, Value};

/// RFC 3339 timestamp with second precision (`2024-01-02T03:04:05Z`), as `metav1.Time`.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc());
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Merge patch for `status.ingress["<ns>/<name>"]`. Every field is written, absent ones as
/// `null`: a merge patch (RFC 7386) leaves keys it omits untouched, so an error fixed since the
/// last write would otherwise stay in the status.
pub fn ingress_entry_patch(
    key: &str,
    generation: Option<i64>,
    observed_at: &str,
    error: Option<&str>,
) -> Value {
    let entry = json!({
        "observedAt": observed_at,
        "observedGeneration": generation,
        "reconciled": error.is_none(),
        "error": error,
    });
    json!({"status": {"ingress": {key: entry}}})
}

/// Merge patch removing `status.ingress["<ns>/<name>"]`. Upstream sends the JSON patch
/// `remove /status/ingress/<ns>~1<name>`; a merge patch with `null` has the same effect and,
/// unlike the JSON patch, does not fail when the entry is already gone.
pub fn ingress_entry_remove(key: &str) -> Value {
    json!({"status": {"ingress": {key: null}}})
}

/// Merge patch for `status.settingsStatus`; absent fields (no error, no warnings) are `null`
/// so they are removed, as in `ingress_entry_patch`.
pub fn settings_status_patch(
    generation: Option<i64>,
    observed_at: &str,
    error: Option<&str>,
    warnings: &[String],
) -> Value {
    let s = json!({
        "observedAt": observed_at,
        "observedGeneration": generation,
        "reconciled": error.is_none(),
        "error": error,
        "warnings": if warnings.is_empty() { Value::Null } else { json!(warnings) },
    });
    json!({"status": {"settingsStatus": s}})
}

/// `status.loadBalancer` of the Ingresses, from the proxy Service (§6.4): LoadBalancer copies the
/// Service's ingress points, NodePort gives `[{ip: clusterIP}]`, other types nothing.
pub fn load_balancer_from_service(svc: &Service) -> IngressLoadBalancerStatus {
    let spec = svc.spec.as_ref();
    let ingress = match spec.and_then(|s| s.type_.as_deref()) {
        Some("LoadBalancer") => svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .map(|points| {
                points
                    .iter()
                    .map(|p| IngressLoadBalancerIngress {
                        ip: p.ip.clone(),
                        hostname: p.hostname.clone(),
                        ports: p.ports.as_ref().map(|ports| {
                            ports
                                .iter()
                                .map(|port| IngressPortStatus {
                                    port: port.port,
                                    protocol: port.protocol.clone(),
                                    error: port.error.clone(),
                                })
                                .collect()
                        }),
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default(),
        Some("NodePort") => vec![IngressLoadBalancerIngress {
            ip: spec.and_then(|s| s.cluster_ip.clone()),
            ..Default::default()
        }],
        _ => Vec::new(),
    };
    IngressLoadBalancerStatus {
        ingress: if ingress.is_empty() {
            None
        } else {
            Some(ingress)
        },
    }
}

/// Merge patch setting an Ingress's `status.loadBalancer` (the whole list is replaced).
pub fn ingress_load_balancer_patch(lb: &IngressLoadBalancerStatus) -> Value {
    let points = lb.ingress.clone().unwrap_or_default();
    json!({"status": {"loadBalancer": {"ingress": points}}})
}

/// Error when the `--update-status-from-service` Service is missing.
pub fn missing_status_service(namespace: &str, name: &str) -> String {
    format!("update ingress status: get pomerium-proxy service {namespace}/{name}: Service \"{name}\" not found")
}

/// Status writes waiting to be sent, merged so a burst (e.g. an initial sync of thousands of
/// Ingresses) becomes one patch of the `Pomerium` object instead of one per Ingress.
#[derive(Debug, Default)]
pub struct PendingStatus {
    /// `status.ingress` entries; `Value::Null` removes one.
    ingress: std::collections::BTreeMap<String, Value>,
    settings: Option<Value>,
    /// Ingress `status.loadBalancer` patches by (namespace, name).
    load_balancers: std::collections::BTreeMap<(String, String), Value>,
}

/// One flush: at most one `Pomerium` status patch plus Ingress status patches.
#[derive(Debug, Default, PartialEq)]
pub struct StatusBatch {
    pub pomerium: Option<Value>,
    pub ingresses: Vec<((String, String), Value)>,
}

impl PendingStatus {
    pub fn is_empty(&self) -> bool {
        self.ingress.is_empty() && self.settings.is_none() && self.load_balancers.is_empty()
    }

    pub fn ingress_entry(
        &mut self,
        key: &str,
        generation: Option<i64>,
        observed_at: &str,
        error: Option<&str>,
    ) {
        let p = ingress_entry_patch(key, generation, observed_at, error);
        self.ingress
            .insert(key.to_string(), p["status"]["ingress"][key].clone());
    }

    pub fn remove_ingress_entry(&mut self, key: &str) {
        self.ingress.insert(key.to_string(), Value::Null);
    }

    pub fn settings(
        &mut self,
        generation: Option<i64>,
        observed_at: &str,
        error: Option<&str>,
        warnings: &[String],
    ) {
        let p = settings_status_patch(generation, observed_at, error, warnings);
        self.settings = Some(p["status"]["settingsStatus"].clone());
    }

    pub fn load_balancer(&mut self, namespace: &str, name: &str, lb: &IngressLoadBalancerStatus) {
        self.load_balancers.insert(
            (namespace.to_string(), name.to_string()),
            ingress_load_balancer_patch(lb),
        );
    }

    /// Everything pending, as patches; leaves this empty.
    pub fn take(&mut self) -> StatusBatch {
        let ingress = std::mem::take(&mut self.ingress);
        let settings = self.settings.take();
        let pomerium = if ingress.is_empty() && settings.is_none() {
            None
        } else {
            let mut st = serde_json::Map::new();
            if !ingress.is_empty() {
                st.insert(
                    "ingress".into(),
                    Value::Object(ingress.into_iter().collect()),
                );
            }
            if let Some(s) = settings {
                st.insert("settingsStatus".into(), s);
            }
            Some(json!({"status": st}))
        };
        StatusBatch {
            pomerium,
            ingresses: std::mem::take(&mut self.load_balancers)
                .into_iter()
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(v: Value) -> Service {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn crd_status_patches() {
        let p = ingress_entry_patch("default/web", Some(3), "2024-01-01T00:00:00Z", None);
        assert_eq!(
            p,
            json!({"status": {"ingress": {"default/web": {"observedGeneration": 3, "observedAt": "2024-01-01T00:00:00Z", "reconciled": true, "error": null}}}})
        );
        let p = ingress_entry_patch("default/web", Some(3), "t", Some("boom"));
        assert_eq!(p["status"]["ingress"]["default/web"]["error"], "boom");
        assert_eq!(p["status"]["ingress"]["default/web"]["reconciled"], false);
        assert_eq!(
            ingress_entry_remove("default/web"),
            json!({"status": {"ingress": {"default/web": null}}})
        );
        let p = settings_status_patch(Some(2), "t", Some("settings: x"), &["w".into()]);
        assert_eq!(p["status"]["settingsStatus"]["reconciled"], false);
        assert_eq!(p["status"]["settingsStatus"]["warnings"], json!(["w"]));
        // Fixed: the error and the warnings are deleted by the merge patch (null), not omitted.
        let p = settings_status_patch(Some(3), "t", None, &[]);
        let s = p["status"]["settingsStatus"].as_object().unwrap();
        assert_eq!(s["error"], Value::Null);
        assert_eq!(s["warnings"], Value::Null);
        assert!(s.contains_key("error") && s.contains_key("warnings"));
        assert!(now_rfc3339().ends_with('Z'));
    }

    #[test]
    fn pending_writes_merge_into_one_patch() {
        let mut p = PendingStatus::default();
        assert!(p.is_empty());
        p.ingress_entry("default/a", Some(1), "t1", None);
        p.ingress_entry("default/b", Some(1), "t1", Some("boom"));
        p.ingress_entry("default/a", Some(2), "t2", None);
        p.remove_ingress_entry("default/c");
        p.settings(Some(3), "t2", None, &[]);
        let lb = IngressLoadBalancerStatus::default();
        p.load_balancer("default", "a", &lb);
        p.load_balancer("default", "a", &lb);
        let b = p.take();
        assert!(p.is_empty());
        let pom = b.pomerium.unwrap();
        assert_eq!(
            pom["status"]["ingress"]["default/a"]["observedGeneration"],
            json!(2)
        );
        assert_eq!(
            pom["status"]["ingress"]["default/b"]["error"],
            json!("boom")
        );
        assert_eq!(pom["status"]["ingress"]["default/c"], Value::Null);
        assert!(pom["status"]["ingress"]
            .as_object()
            .unwrap()
            .contains_key("default/c"));
        assert_eq!(
            pom["status"]["settingsStatus"]["observedGeneration"],
            json!(3)
        );
        assert_eq!(b.ingresses.len(), 1);
        assert_eq!(p.take(), StatusBatch::default());
    }

    #[test]
    fn load_balancer_by_service_type() {
        let lb = svc(
            json!({"metadata": {"name": "p"}, "spec": {"type": "LoadBalancer"},
            "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.1", "ports": [{"port": 443, "protocol": "TCP"}]}, {"hostname": "lb.example"}]}}}),
        );
        let s = load_balancer_from_service(&lb);
        let points = s.ingress.unwrap();
        assert_eq!(points[0].ip.as_deref(), Some("10.0.0.1"));
        assert_eq!(points[0].ports.as_ref().unwrap()[0].port, 443);
        assert_eq!(points[1].hostname.as_deref(), Some("lb.example"));
        let np = svc(
            json!({"metadata": {"name": "p"}, "spec": {"type": "NodePort", "clusterIP": "10.96.0.5"}}),
        );
        assert_eq!(
            load_balancer_from_service(&np).ingress.unwrap()[0]
                .ip
                .as_deref(),
            Some("10.96.0.5")
        );
        let ci = svc(
            json!({"metadata": {"name": "p"}, "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.5"}}),
        );
        assert!(load_balancer_from_service(&ci).ingress.is_none());
        assert_eq!(
            ingress_load_balancer_patch(&load_balancer_from_service(&ci)),
            json!({"status": {"loadBalancer": {"ingress": []}}})
        );
        assert_eq!(
            missing_status_service("pomerium", "pomerium-proxy"),
            "update ingress status: get pomerium-proxy service pomerium/pomerium-proxy: Service \"pomerium-proxy\" not found"
        );
    }
}
