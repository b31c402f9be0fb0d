//! Gateway API input (issue 12): `GatewayClass` → `Gateway` listeners → attached `HTTPRoute`s
//! (with `ReferenceGrant`s and Pomerium `PolicyFilter`s) → the same routes and certificates
//! the Ingress conversion produces, plus the status every object should carry.
//!
//! `convert_gateway` is a pure function over the stored objects (`GatewayStore`) and the
//! cluster state; the reconciler runs it when a Gateway API object or something it read
//! changes.

pub mod convert;
pub mod types;

use std::collections::BTreeMap;

pub use convert::{convert_gateway, Converted, GatewayOutput, StatusWrite};
pub use types::{
    Gateway, GatewayClass, HttpRoute, PolicyFilter, ReferenceGrant, GATEWAY_GROUP,
    POLICY_FILTER_GROUP,
};

use super::{Kind, KubeObject, NamespacedName};

/// Default `GatewayClass.spec.controllerName` we own (Pomerium's).
pub const DEFAULT_GATEWAY_CONTROLLER: &str = "pomerium.io/gateway-controller";

/// Gateway API options (`--gateway-api`, `--gateway-class-controller-name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayOptions {
    pub controller_name: String,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        GatewayOptions {
            controller_name: DEFAULT_GATEWAY_CONTROLLER.into(),
        }
    }
}

/// The Gateway API objects seen so far.
#[derive(Debug, Default, Clone)]
pub struct GatewayStore {
    pub classes: BTreeMap<String, GatewayClass>,
    pub gateways: BTreeMap<NamespacedName, Gateway>,
    pub routes: BTreeMap<NamespacedName, HttpRoute>,
    pub grants: BTreeMap<NamespacedName, ReferenceGrant>,
    pub filters: BTreeMap<NamespacedName, PolicyFilter>,
    /// Namespace labels (watched with the Gateway API, for `allowedRoutes` selectors).
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
}

/// Whether a kind is a Gateway API (or PolicyFilter) kind.
pub fn is_gateway_kind(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::GatewayClass
            | Kind::Gateway
            | Kind::HttpRoute
            | Kind::ReferenceGrant
            | Kind::PolicyFilter
            | Kind::Namespace
    )
}

impl GatewayStore {
    /// Stores a Gateway API object; returns it back when it is of another kind.
    pub fn upsert(&mut self, obj: KubeObject) -> Option<KubeObject> {
        let key = NamespacedName::new(obj.namespace(), obj.name());
        match obj {
            KubeObject::GatewayClass(o) => {
                self.classes.insert(key.name, *o);
            }
            KubeObject::Gateway(o) => {
                self.gateways.insert(key, *o);
            }
            KubeObject::HttpRoute(o) => {
                self.routes.insert(key, *o);
            }
            KubeObject::ReferenceGrant(o) => {
                self.grants.insert(key, *o);
            }
            KubeObject::PolicyFilter(o) => {
                self.filters.insert(key, *o);
            }
            KubeObject::Namespace(o) => {
                self.namespaces
                    .insert(key.name, o.metadata.labels.unwrap_or_default());
            }
            other => return Some(other),
        }
        None
    }

    /// Removes a Gateway API object; false for other kinds.
    pub fn remove(&mut self, kind: Kind, ns: &str, name: &str) -> bool {
        let key = NamespacedName::new(ns, name);
        match kind {
            Kind::GatewayClass => {
                self.classes.remove(name);
            }
            Kind::Gateway => {
                self.gateways.remove(&key);
            }
            Kind::HttpRoute => {
                self.routes.remove(&key);
            }
            Kind::ReferenceGrant => {
                self.grants.remove(&key);
            }
            Kind::PolicyFilter => {
                self.filters.remove(&key);
            }
            Kind::Namespace => {
                self.namespaces.remove(name);
            }
            _ => return false,
        }
        true
    }

    pub fn is_empty(&self) -> bool {
        self.classes.is_empty() && self.gateways.is_empty() && self.routes.is_empty()
    }
}

#[cfg(test)]
mod tests;
