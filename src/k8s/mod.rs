//! Kubernetes side of rampart.
//!
//! Pure parts (this branch): `crd` (the `Pomerium` custom resource), `annotations`
//! (`ingress.pomerium.io/*` parsing), `convert` (Ingress → routes, CRD → settings),
//! `reconcile` (incremental route table over a changing set of objects) and `render`
//! (`rampart render`: the same conversion over YAML files, no cluster needed).

use std::fmt;

use k8s_openapi::api::core::v1::{Endpoints, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use serde::{Deserialize, Serialize};

pub mod annotations;
pub mod convert;
pub mod crd;
pub mod gateway;
pub mod nginx_compat;
pub mod nginx_convert;
pub mod reconcile;
pub mod render;

#[cfg(test)]
mod fuzz_tests;

pub use crd::Pomerium;

/// The object kinds the conversion reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Kind {
    Ingress,
    IngressClass,
    Service,
    Endpoints,
    /// As a dependency key, an EndpointSlice key names the **Service** the slices belong to
    /// (label `kubernetes.io/service-name`), not one slice.
    EndpointSlice,
    Secret,
    Pomerium,
    GatewayClass,
    Gateway,
    HttpRoute,
    ReferenceGrant,
    PolicyFilter,
    /// Namespaces (their labels, for Gateway listeners' `allowedRoutes` selectors).
    Namespace,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Kind::Ingress => "Ingress",
            Kind::IngressClass => "IngressClass",
            Kind::Service => "Service",
            Kind::Endpoints => "Endpoints",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::Secret => "Secret",
            Kind::Pomerium => "Pomerium",
            Kind::GatewayClass => "GatewayClass",
            Kind::Gateway => "Gateway",
            Kind::HttpRoute => "HTTPRoute",
            Kind::ReferenceGrant => "ReferenceGrant",
            Kind::PolicyFilter => "PolicyFilter",
            Kind::Namespace => "Namespace",
        };
        f.write_str(s)
    }
}

/// `namespace/name` of a namespaced object (namespace empty for cluster-scoped ones).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NamespacedName {
    pub namespace: String,
    pub name: String,
}

impl NamespacedName {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        NamespacedName {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for NamespacedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// Key of an Ingress (`namespace/name`).
pub type IngressKey = NamespacedName;

/// One object the conversion depends on (read, found or not).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectKey {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(kind: Kind, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectKey {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// Any object the reconciler and `render` accept.
#[derive(Debug, Clone)]
pub enum KubeObject {
    Ingress(Box<Ingress>),
    IngressClass(Box<IngressClass>),
    Service(Box<Service>),
    Endpoints(Box<Endpoints>),
    EndpointSlice(Box<EndpointSlice>),
    Secret(Box<Secret>),
    Pomerium(Box<Pomerium>),
    GatewayClass(Box<gateway::GatewayClass>),
    Gateway(Box<gateway::Gateway>),
    HttpRoute(Box<gateway::HttpRoute>),
    ReferenceGrant(Box<gateway::ReferenceGrant>),
    PolicyFilter(Box<gateway::PolicyFilter>),
    Namespace(Box<k8s_openapi::api::core::v1::Namespace>),
}

impl KubeObject {
    pub fn kind(&self) -> Kind {
        match self {
            KubeObject::Ingress(_) => Kind::Ingress,
            KubeObject::IngressClass(_) => Kind::IngressClass,
            KubeObject::Service(_) => Kind::Service,
            KubeObject::Endpoints(_) => Kind::Endpoints,
            KubeObject::EndpointSlice(_) => Kind::EndpointSlice,
            KubeObject::Secret(_) => Kind::Secret,
            KubeObject::Pomerium(_) => Kind::Pomerium,
            KubeObject::GatewayClass(_) => Kind::GatewayClass,
            KubeObject::Gateway(_) => Kind::Gateway,
            KubeObject::HttpRoute(_) => Kind::HttpRoute,
            KubeObject::ReferenceGrant(_) => Kind::ReferenceGrant,
            KubeObject::PolicyFilter(_) => Kind::PolicyFilter,
            KubeObject::Namespace(_) => Kind::Namespace,
        }
    }

    /// The object's metadata.
    pub fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        match self {
            KubeObject::Ingress(o) => &o.metadata,
            KubeObject::IngressClass(o) => &o.metadata,
            KubeObject::Service(o) => &o.metadata,
            KubeObject::Endpoints(o) => &o.metadata,
            KubeObject::EndpointSlice(o) => &o.metadata,
            KubeObject::Secret(o) => &o.metadata,
            KubeObject::Pomerium(o) => &o.metadata,
            KubeObject::GatewayClass(o) => &o.metadata,
            KubeObject::Gateway(o) => &o.metadata,
            KubeObject::HttpRoute(o) => &o.metadata,
            KubeObject::ReferenceGrant(o) => &o.metadata,
            KubeObject::PolicyFilter(o) => &o.metadata,
            KubeObject::Namespace(o) => &o.metadata,
        }
    }

    /// Namespace (`default` when unset; empty for cluster-scoped kinds, whose namespace is
    /// ignored).
    pub fn namespace(&self) -> &str {
        match self.kind() {
            Kind::IngressClass | Kind::Pomerium | Kind::GatewayClass | Kind::Namespace => "",
            _ => ns_of(self.meta()),
        }
    }

    pub fn name(&self) -> &str {
        self.meta().name.as_deref().unwrap_or("")
    }

    /// `kind namespace/name` of this object (for an EndpointSlice: of the slice itself).
    pub fn key(&self) -> ObjectKey {
        ObjectKey::new(self.kind(), self.namespace(), self.name())
    }
}

/// Namespace of an Ingress, `default` when unset (as the API server would fill it in).
pub(crate) fn ns_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.namespace
        .as_deref()
        .filter(|s| !s.is_empty())
        .unwrap_or("default")
}

pub mod backoff;
pub mod events;
pub mod leader;
pub mod status;
pub mod watch;
