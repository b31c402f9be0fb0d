//! TEMPORARY stand-in for the `k8s-convert` branch's API (KubeObject, Kind, Reconciler,
//! Change, Outcome) so this branch compiles before that branch lands. Removed on merge.
#![allow(dead_code)]

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Endpoints, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};

use crate::config::RouteConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Ingress,
    IngressClass,
    Service,
    Endpoints,
    EndpointSlice,
    Secret,
    Pomerium,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NamespacedName {
    pub namespace: String,
    pub name: String,
}
pub type IngressKey = NamespacedName;

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Pomerium {
    #[serde(default)]
    pub metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
}

#[derive(Debug, Clone)]
pub enum KubeObject {
    Ingress(Box<Ingress>),
    IngressClass(Box<IngressClass>),
    Service(Box<Service>),
    Endpoints(Box<Endpoints>),
    EndpointSlice(Box<EndpointSlice>),
    Secret(Box<Secret>),
    Pomerium(Box<Pomerium>),
}

impl KubeObject {
    pub fn kind(&self) -> Kind {
        unimplemented!()
    }
    pub fn namespace(&self) -> &str {
        unimplemented!()
    }
    pub fn name(&self) -> &str {
        unimplemented!()
    }
}

#[derive(Debug, Clone)]
pub enum Change {
    Upsert(KubeObject),
    Delete(Kind, String, String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngressResult {
    Updated,
    Error(String),
    Removed(String),
}

pub struct Outcome {
    pub results: Vec<(IngressKey, IngressResult)>,
    pub routes_changed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsCert {
    pub cert_pem: Vec<u8>,
}

#[derive(Debug, Clone, Default)]
pub struct ConvertOptions {
    pub prefix: String,
    pub controller_name: String,
    pub namespaces: Vec<String>,
}

pub struct ClusterState;

pub fn pomerium_to_settings(
    _p: &Pomerium,
    _secrets: &ClusterState,
) -> Result<(crate::config::Settings, Vec<String>), String> {
    unimplemented!()
}

pub const DELETED_REASON: &str = "Ingress resource was deleted";

pub struct Reconciler;
impl Reconciler {
    pub fn new(_o: ConvertOptions) -> Self {
        Reconciler
    }
    pub fn apply_all(&mut self, _o: impl IntoIterator<Item = KubeObject>) -> Outcome {
        unimplemented!()
    }
    pub fn state(&self) -> &ClusterState {
        &ClusterState
    }
    pub fn ingress(&self, _key: &IngressKey) -> Option<&Ingress> {
        None
    }
    pub fn pomerium(&self, _name: &str) -> Option<&Pomerium> {
        None
    }
    pub fn apply(&mut self, _c: Change) -> Outcome {
        unimplemented!()
    }
    pub fn routes(&self) -> Arc<Vec<RouteConfig>> {
        unimplemented!()
    }
    pub fn http01_routes(&self) -> Arc<Vec<RouteConfig>> {
        unimplemented!()
    }
    pub fn certificates(&self) -> Arc<Vec<TlsCert>> {
        unimplemented!()
    }
}

impl kube::Resource for Pomerium {
    type DynamicType = ();
    type Scope = kube::core::ClusterResourceScope;
    fn kind(_: &()) -> std::borrow::Cow<'_, str> {
        "Pomerium".into()
    }
    fn group(_: &()) -> std::borrow::Cow<'_, str> {
        "ingress.pomerium.io".into()
    }
    fn version(_: &()) -> std::borrow::Cow<'_, str> {
        "v1".into()
    }
    fn api_version(_: &()) -> std::borrow::Cow<'_, str> {
        "ingress.pomerium.io/v1".into()
    }
    fn plural(_: &()) -> std::borrow::Cow<'_, str> {
        "pomerium".into()
    }
    fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        &mut self.metadata
    }
}
