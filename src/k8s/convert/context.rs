//! What the conversion may read: the objects of the cluster (`ClusterState`) and the
//! controller options. Both are read-only during a conversion.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Endpoints, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::IngressClass;

use crate::k8s::{Kind, KubeObject, ObjectKey};

pub const DEFAULT_PREFIX: &str = "ingress.pomerium.io";
pub const DEFAULT_CONTROLLER_NAME: &str = "pomerium.io/ingress-controller";
/// Label of an EndpointSlice naming its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Controller options that affect conversion (`--prefix`, `--name`, `--namespaces`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertOptions {
    /// Annotation prefix without the trailing `/`.
    pub prefix: String,
    /// The `IngressClass.spec.controller` value we own.
    pub controller_name: String,
    /// Namespaces whose Ingresses we manage; empty = all.
    pub namespaces: Vec<String>,
    /// Gateway API input (`--gateway-api`); `None`: Gateway API objects are ignored.
    pub gateway: Option<crate::k8s::gateway::GatewayOptions>,
    /// Translate `nginx.ingress.kubernetes.io/*` annotations (`--ingress-nginx-compat`).
    pub ingress_nginx_compat: bool,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            prefix: DEFAULT_PREFIX.into(),
            controller_name: DEFAULT_CONTROLLER_NAME.into(),
            namespaces: Vec::new(),
            gateway: None,
            ingress_nginx_compat: false,
        }
    }
}

type ByNs<T> = HashMap<String, HashMap<String, T>>;

fn get<'a, T>(m: &'a ByNs<T>, ns: &str, name: &str) -> Option<&'a T> {
    m.get(ns)?.get(name)
}

fn put<T>(m: &mut ByNs<T>, ns: &str, name: &str, v: T) {
    m.entry(ns.to_string())
        .or_default()
        .insert(name.to_string(), v);
}

fn take<T>(m: &mut ByNs<T>, ns: &str, name: &str) -> Option<T> {
    let inner = m.get_mut(ns)?;
    let v = inner.remove(name);
    if inner.is_empty() {
        m.remove(ns);
    }
    v
}

/// The cluster objects (other than Ingresses) that conversions read.
#[derive(Debug, Default, Clone)]
pub struct ClusterState {
    ingress_classes: BTreeMap<String, IngressClass>,
    services: ByNs<Service>,
    endpoints: ByNs<Endpoints>,
    secrets: ByNs<Secret>,
    /// namespace → service name → slice name → slice.
    slices: ByNs<BTreeMap<String, EndpointSlice>>,
    /// namespace → slice name → service name (to find a slice's service on delete).
    slice_service: ByNs<String>,
}

impl ClusterState {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores a copy of an object. Returns the dependency key an Ingress would have recorded
    /// for it (for an EndpointSlice: the key of its Service's slices; when a slice moves to
    /// another Service, both keys), or nothing for Ingress/Pomerium objects, which are not kept
    /// here.
    pub fn upsert(&mut self, obj: &KubeObject) -> Vec<ObjectKey> {
        self.upsert_owned(obj.clone())
    }

    /// `upsert` without the copy.
    pub fn upsert_owned(&mut self, obj: KubeObject) -> Vec<ObjectKey> {
        let ns = obj.namespace().to_string();
        let name = obj.name().to_string();
        match obj {
            KubeObject::IngressClass(c) => {
                self.ingress_classes.insert(name.clone(), *c);
                vec![ObjectKey::new(Kind::IngressClass, "", name)]
            }
            KubeObject::Service(s) => {
                put(&mut self.services, &ns, &name, *s);
                vec![ObjectKey::new(Kind::Service, ns, name)]
            }
            KubeObject::Endpoints(e) => {
                put(&mut self.endpoints, &ns, &name, *e);
                vec![ObjectKey::new(Kind::Endpoints, ns, name)]
            }
            KubeObject::Secret(s) => {
                put(&mut self.secrets, &ns, &name, *s);
                vec![ObjectKey::new(Kind::Secret, ns, name)]
            }
            KubeObject::EndpointSlice(s) => {
                let mut keys = self.remove_slice(&ns, &name);
                let svc = s
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(SERVICE_NAME_LABEL))
                    .cloned()
                    .unwrap_or_default();
                if !svc.is_empty() {
                    self.slices
                        .entry(ns.clone())
                        .or_default()
                        .entry(svc.clone())
                        .or_default()
                        .insert(name.clone(), *s);
                    put(&mut self.slice_service, &ns, &name, svc.clone());
                    let key = ObjectKey::new(Kind::EndpointSlice, ns, svc);
                    if !keys.contains(&key) {
                        keys.push(key);
                    }
                }
                keys
            }
            _ => Vec::new(),
        }
    }

    /// Removes an object; returns the affected dependency keys (see `upsert`).
    pub fn remove(&mut self, kind: Kind, ns: &str, name: &str) -> Vec<ObjectKey> {
        match kind {
            Kind::IngressClass => {
                self.ingress_classes.remove(name);
                vec![ObjectKey::new(kind, "", name)]
            }
            Kind::Service => {
                take(&mut self.services, ns, name);
                vec![ObjectKey::new(kind, ns, name)]
            }
            Kind::Endpoints => {
                take(&mut self.endpoints, ns, name);
                vec![ObjectKey::new(kind, ns, name)]
            }
            Kind::Secret => {
                take(&mut self.secrets, ns, name);
                vec![ObjectKey::new(kind, ns, name)]
            }
            Kind::EndpointSlice => self.remove_slice(ns, name),
            _ => Vec::new(),
        }
    }

    fn remove_slice(&mut self, ns: &str, slice: &str) -> Vec<ObjectKey> {
        let Some(svc) = take(&mut self.slice_service, ns, slice) else {
            return Vec::new();
        };
        if let Some(by_svc) = self.slices.get_mut(ns) {
            if let Some(set) = by_svc.get_mut(&svc) {
                set.remove(slice);
                if set.is_empty() {
                    by_svc.remove(&svc);
                }
            }
            if by_svc.is_empty() {
                self.slices.remove(ns);
            }
        }
        vec![ObjectKey::new(Kind::EndpointSlice, ns, svc)]
    }

    pub fn ingress_class(&self, name: &str) -> Option<&IngressClass> {
        self.ingress_classes.get(name)
    }

    pub fn ingress_classes(&self) -> impl Iterator<Item = &IngressClass> {
        self.ingress_classes.values()
    }

    pub fn service(&self, ns: &str, name: &str) -> Option<&Service> {
        get(&self.services, ns, name)
    }

    pub fn endpoints(&self, ns: &str, name: &str) -> Option<&Endpoints> {
        get(&self.endpoints, ns, name)
    }

    /// The EndpointSlices labelled with Service `ns/service`.
    pub fn endpoint_slices(&self, ns: &str, service: &str) -> Vec<&EndpointSlice> {
        get(&self.slices, ns, service)
            .map(|m| m.values().collect())
            .unwrap_or_default()
    }

    pub fn secret(&self, ns: &str, name: &str) -> Option<&Secret> {
        get(&self.secrets, ns, name)
    }
}

/// Read-only view a conversion works with.
#[derive(Debug, Clone, Copy)]
pub struct ConversionContext<'a> {
    pub state: &'a ClusterState,
    pub options: &'a ConvertOptions,
}

impl<'a> ConversionContext<'a> {
    pub fn new(state: &'a ClusterState, options: &'a ConvertOptions) -> Self {
        ConversionContext { state, options }
    }
}

/// Finds Secrets by namespace and name (used by the CRD → settings conversion).
pub trait SecretLookup {
    fn get_secret(&self, namespace: &str, name: &str) -> Option<&Secret>;
    /// Whether Secrets of this namespace are not watched at all (`--namespaces`), so a
    /// missing one may exist but cannot be read.
    fn not_watched(&self, _namespace: &str) -> bool {
        false
    }
}

/// Secrets as the controller sees them with `--namespaces`: only the watched namespaces.
pub struct WatchedSecrets<'a> {
    pub secrets: &'a dyn SecretLookup,
    /// `None`: every namespace is watched.
    pub namespaces: Option<&'a [String]>,
}

impl SecretLookup for WatchedSecrets<'_> {
    fn get_secret(&self, namespace: &str, name: &str) -> Option<&Secret> {
        self.secrets.get_secret(namespace, name)
    }
    fn not_watched(&self, namespace: &str) -> bool {
        self.namespaces
            .is_some_and(|ns| !ns.iter().any(|n| n == namespace))
    }
}

impl SecretLookup for ClusterState {
    fn get_secret(&self, namespace: &str, name: &str) -> Option<&Secret> {
        self.secret(namespace, name)
    }
}

impl SecretLookup for BTreeMap<(String, String), Secret> {
    fn get_secret(&self, namespace: &str, name: &str) -> Option<&Secret> {
        self.get(&(namespace.to_string(), name.to_string()))
    }
}

/// Bytes of a Secret key, from `data` or (for hand-written manifests) `stringData`.
pub fn secret_bytes<'s>(secret: &'s Secret, key: &str) -> Option<&'s [u8]> {
    if let Some(v) = secret.data.as_ref().and_then(|d| d.get(key)) {
        return Some(&v.0);
    }
    secret
        .string_data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|s| s.as_bytes())
}

/// All keys of a Secret (`data` and `stringData`, sorted).
pub fn secret_keys(secret: &Secret) -> Vec<&str> {
    let mut keys: Vec<&str> = secret
        .data
        .iter()
        .flat_map(|d| d.keys())
        .chain(secret.string_data.iter().flat_map(|d| d.keys()))
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// The Secret type, `Opaque` when unset (the API server's default).
pub fn secret_type(secret: &Secret) -> &str {
    secret
        .type_
        .as_deref()
        .filter(|t| !t.is_empty())
        .unwrap_or("Opaque")
}
