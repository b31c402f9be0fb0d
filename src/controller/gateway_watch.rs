//! Watchers of the Gateway API kinds (only with `--gateway-api`). A kind whose CRD is not
//! installed (404/403 on the first list) is logged and no longer waited for.

use actix::prelude::*;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::runtime::watcher;

use super::watch_scopes::WatchScopes;
use crate::actors::k8s_watch::{Watched, WatcherActor};
use crate::k8s::gateway::{Gateway, GatewayClass, HttpRoute, PolicyFilter, ReferenceGrant};
use crate::k8s::{Kind, KubeObject};

/// The kinds watched for the Gateway API.
pub const KINDS: [Kind; 6] = [
    Kind::Namespace,
    Kind::GatewayClass,
    Kind::Gateway,
    Kind::HttpRoute,
    Kind::ReferenceGrant,
    Kind::PolicyFilter,
];

fn wrap_namespace(o: Namespace) -> KubeObject {
    KubeObject::Namespace(Box::new(o))
}
fn wrap_class(o: GatewayClass) -> KubeObject {
    KubeObject::GatewayClass(Box::new(o))
}
fn wrap_gateway(o: Gateway) -> KubeObject {
    KubeObject::Gateway(Box::new(o))
}
fn wrap_route(o: HttpRoute) -> KubeObject {
    KubeObject::HttpRoute(Box::new(o))
}
fn wrap_grant(o: ReferenceGrant) -> KubeObject {
    KubeObject::ReferenceGrant(Box::new(o))
}
fn wrap_filter(o: PolicyFilter) -> KubeObject {
    KubeObject::PolicyFilter(Box::new(o))
}

fn not_installed(kind: Kind) -> impl FnOnce() + Send + 'static {
    move || tracing::warn!(kind = %kind, "Gateway API kind is not served (CRD not installed?); ignoring it")
}

/// Starts one watcher per Gateway API kind (and namespace, with `--namespaces`).
pub fn start(client: &kube::Client, scopes: &WatchScopes, target: &Recipient<Watched>) {
    WatcherActor::new(
        Kind::Namespace,
        None,
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default(),
        wrap_namespace,
        target.clone(),
    )
    .on_unavailable(not_installed(Kind::Namespace))
    .start();
    WatcherActor::new(
        Kind::GatewayClass,
        None,
        Api::<GatewayClass>::all(client.clone()),
        watcher::Config::default(),
        wrap_class,
        target.clone(),
    )
    .on_unavailable(not_installed(Kind::GatewayClass))
    .start();
    for ns in scopes.namespaces(Kind::Gateway) {
        super::watch_in(client, Kind::Gateway, ns, wrap_gateway, target)
            .on_unavailable(not_installed(Kind::Gateway))
            .start();
    }
    for ns in scopes.namespaces(Kind::HttpRoute) {
        super::watch_in(client, Kind::HttpRoute, ns, wrap_route, target)
            .on_unavailable(not_installed(Kind::HttpRoute))
            .start();
    }
    for ns in scopes.namespaces(Kind::ReferenceGrant) {
        super::watch_in(client, Kind::ReferenceGrant, ns, wrap_grant, target)
            .on_unavailable(not_installed(Kind::ReferenceGrant))
            .start();
    }
    for ns in scopes.namespaces(Kind::PolicyFilter) {
        super::watch_in(client, Kind::PolicyFilter, ns, wrap_filter, target)
            .on_unavailable(not_installed(Kind::PolicyFilter))
            .start();
    }
}
