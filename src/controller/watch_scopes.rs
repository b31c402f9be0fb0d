//! Where each kind is watched. Without `--namespaces` every kind is watched cluster-wide. With
//! it, namespaced kinds get one watcher per namespace, so the controller needs read access to
//! those namespaces only (a Role per namespace instead of cluster-wide Secret read):
//! - Ingresses and Endpoints/EndpointSlices: the managed namespaces;
//! - Services: those plus the namespace of `--update-status-from-service`;
//! - Secrets: those plus the controller's own namespace (`$POD_NAMESPACE`), where the
//!   `Pomerium` object's Secrets (bootstrap, IdP, storage) live.
//!
//! IngressClasses and the `Pomerium` object are cluster-scoped and always watched as such.

use crate::k8s::watch::Source;
use crate::k8s::Kind;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct WatchScopes {
    /// `None`: cluster-wide.
    managed: Option<Vec<String>>,
    services: Option<Vec<String>>,
    secrets: Option<Vec<String>>,
}

fn with(namespaces: &[String], extra: Option<&str>) -> Vec<String> {
    let mut v: Vec<String> = namespaces.to_vec();
    v.extend(extra.filter(|e| !e.is_empty()).map(str::to_string));
    v.sort();
    v.dedup();
    v
}

impl WatchScopes {
    /// `managed`: the `--namespaces` list (empty: all); `status_namespace`: the namespace of
    /// `--update-status-from-service`; `own_namespace`: the controller's namespace.
    pub fn new(
        managed: &[String],
        status_namespace: Option<&str>,
        own_namespace: Option<&str>,
    ) -> Self {
        if managed.is_empty() {
            return WatchScopes::default();
        }
        WatchScopes {
            managed: Some(with(managed, None)),
            services: Some(with(managed, status_namespace)),
            secrets: Some(with(managed, own_namespace)),
        }
    }

    /// The namespaces a kind is watched in: `[None]` is one cluster-wide watcher.
    pub fn namespaces(&self, kind: Kind) -> Vec<Option<String>> {
        let list = match kind {
            Kind::IngressClass | Kind::Pomerium | Kind::GatewayClass | Kind::Namespace => None,
            Kind::Service => self.services.as_ref(),
            Kind::Secret => self.secrets.as_ref(),
            Kind::Ingress | Kind::Endpoints | Kind::EndpointSlice => self.managed.as_ref(),
            Kind::Gateway | Kind::HttpRoute | Kind::ReferenceGrant | Kind::PolicyFilter => {
                self.managed.as_ref()
            }
        };
        match list {
            None => vec![None],
            Some(ns) => ns.iter().cloned().map(Some).collect(),
        }
    }

    /// Namespaces whose Secrets are watched; `None`: all.
    pub fn secret_namespaces(&self) -> Option<Vec<String>> {
        self.secrets.clone()
    }

    /// Every watcher of these kinds.
    pub fn sources(&self, kinds: &[Kind]) -> Vec<Source> {
        kinds
            .iter()
            .flat_map(|k| self.namespaces(*k).into_iter().map(move |ns| (*k, ns)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn some(v: &[&str]) -> Vec<Option<String>> {
        v.iter().map(|s| Some(s.to_string())).collect()
    }

    #[test]
    fn cluster_wide_without_namespaces() {
        let s = WatchScopes::new(&[], Some("pomerium"), Some("pomerium"));
        for k in [Kind::Ingress, Kind::Secret, Kind::Service, Kind::Pomerium] {
            assert_eq!(s.namespaces(k), vec![None]);
        }
    }

    #[test]
    fn per_namespace_with_namespaces() {
        let s = WatchScopes::new(&["b".into(), "a".into()], Some("edge"), Some("pomerium"));
        assert_eq!(s.namespaces(Kind::Ingress), some(&["a", "b"]));
        assert_eq!(s.namespaces(Kind::EndpointSlice), some(&["a", "b"]));
        assert_eq!(s.namespaces(Kind::Service), some(&["a", "b", "edge"]));
        assert_eq!(s.namespaces(Kind::Secret), some(&["a", "b", "pomerium"]));
        assert_eq!(s.namespaces(Kind::IngressClass), vec![None]);
        assert_eq!(s.namespaces(Kind::Pomerium), vec![None]);
        assert_eq!(
            s.sources(&[Kind::Ingress, Kind::Pomerium]),
            vec![
                (Kind::Ingress, Some("a".into())),
                (Kind::Ingress, Some("b".into())),
                (Kind::Pomerium, None)
            ]
        );
    }
}
