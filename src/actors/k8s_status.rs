//! Status writer actor: merge patches on the `Pomerium` object's status subresource
//! (`status.ingress[..]`, `status.settingsStatus`) and on Ingress `status.loadBalancer`.
//! Writes that arrive while a flush is in flight are merged (`PendingStatus`) and sent
//! together by the next flush: a burst of N Ingress results costs one `Pomerium` patch.
//! Failures are logged.

use actix::prelude::*;
use k8s_openapi::api::networking::v1::{Ingress, IngressLoadBalancerStatus};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};

use crate::k8s::status::{self, PendingStatus, StatusBatch};

/// What to write.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub enum WriteStatus {
    /// `status.ingress["<ns>/<name>"]` on the `Pomerium` object.
    IngressEntry {
        key: String,
        generation: Option<i64>,
        error: Option<String>,
    },
    /// Remove `status.ingress["<ns>/<name>"]`.
    RemoveIngressEntry { key: String },
    /// `status.settingsStatus` on the `Pomerium` object.
    Settings {
        generation: Option<i64>,
        error: Option<String>,
        warnings: Vec<String>,
    },
    /// An Ingress's `status.loadBalancer`.
    IngressLoadBalancer {
        namespace: String,
        name: String,
        status: IngressLoadBalancerStatus,
    },
    /// The status of a GatewayClass, Gateway or HTTPRoute (written right away, not batched).
    Gateway(crate::k8s::gateway::StatusWrite),
}

pub struct StatusWriterActor {
    client: kube::Client,
    pomerium_name: String,
    pending: PendingStatus,
    flushing: bool,
}

impl StatusWriterActor {
    pub fn new(client: kube::Client, pomerium_name: &str) -> Self {
        StatusWriterActor {
            client,
            pomerium_name: pomerium_name.to_string(),
            pending: PendingStatus::default(),
            flushing: false,
        }
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.flushing || self.pending.is_empty() {
            return;
        }
        self.flushing = true;
        let batch = self.pending.take();
        let client = self.client.clone();
        let name = self.pomerium_name.clone();
        ctx.spawn(
            send(client, name, batch)
                .into_actor(self)
                .map(|_, act, ctx| {
                    act.flushing = false;
                    act.flush(ctx);
                }),
        );
    }
}

fn pomerium_api(client: kube::Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("ingress.pomerium.io", "v1", "Pomerium");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "pomerium");
    Api::all_with(client, &ar)
}

async fn send(client: kube::Client, pomerium: String, batch: StatusBatch) {
    if let Some(p) = batch.pomerium {
        let api = pomerium_api(client.clone());
        if let Err(e) = api
            .patch_status(&pomerium, &PatchParams::default(), &Patch::Merge(p))
            .await
        {
            tracing::warn!(pomerium = %pomerium, error = %e, "cannot update Pomerium status");
        }
    }
    for ((namespace, name), p) in batch.ingresses {
        let api: Api<Ingress> = Api::namespaced(client.clone(), &namespace);
        if let Err(e) = api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(p))
            .await
        {
            tracing::warn!(ingress = %format!("{namespace}/{name}"), error = %e, "update ingress status");
        }
    }
}

/// `lastTransitionTime` on every condition (Gateway API requires it).
fn stamp_conditions(v: &mut serde_json::Value, at: &str) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                if k == "conditions" {
                    if let serde_json::Value::Array(items) = child {
                        for c in items.iter_mut().filter_map(|c| c.as_object_mut()) {
                            c.insert("lastTransitionTime".into(), at.into());
                        }
                    }
                } else {
                    stamp_conditions(child, at);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|c| stamp_conditions(c, at)),
        _ => {}
    }
}

async fn send_gateway(client: kube::Client, w: crate::k8s::gateway::StatusWrite, at: String) {
    use crate::k8s::gateway::types as t;
    use crate::k8s::Kind;
    let (group, version, kind, plural) = match w.kind {
        Kind::GatewayClass => (
            t::GatewayClass::GROUP,
            t::GatewayClass::VERSION,
            t::GatewayClass::KIND,
            t::GatewayClass::PLURAL,
        ),
        Kind::Gateway => (
            t::Gateway::GROUP,
            t::Gateway::VERSION,
            t::Gateway::KIND,
            t::Gateway::PLURAL,
        ),
        Kind::HttpRoute => (
            t::HttpRoute::GROUP,
            t::HttpRoute::VERSION,
            t::HttpRoute::KIND,
            t::HttpRoute::PLURAL,
        ),
        other => {
            tracing::warn!(kind = %other, "no Gateway API status for this kind");
            return;
        }
    };
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let ar = ApiResource::from_gvk_with_plural(&gvk, plural);
    let api: Api<DynamicObject> = if w.namespace.is_empty() {
        Api::all_with(client, &ar)
    } else {
        Api::namespaced_with(client, &w.namespace, &ar)
    };
    let mut status = w.status;
    stamp_conditions(&mut status, &at);
    let patch = serde_json::json!({ "status": status });
    if let Err(e) = api
        .patch_status(&w.name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        tracing::warn!(kind = %w.kind, object = %format!("{}/{}", w.namespace, w.name), error = %e, "cannot update status");
    }
}

impl Actor for StatusWriterActor {
    type Context = Context<Self>;
}

impl Handler<WriteStatus> for StatusWriterActor {
    type Result = ();

    fn handle(&mut self, msg: WriteStatus, ctx: &mut Context<Self>) {
        let at = status::now_rfc3339();
        match msg {
            WriteStatus::IngressEntry {
                key,
                generation,
                error,
            } => self
                .pending
                .ingress_entry(&key, generation, &at, error.as_deref()),
            WriteStatus::RemoveIngressEntry { key } => self.pending.remove_ingress_entry(&key),
            WriteStatus::Settings {
                generation,
                error,
                warnings,
            } => self
                .pending
                .settings(generation, &at, error.as_deref(), &warnings),
            WriteStatus::IngressLoadBalancer {
                namespace,
                name,
                status,
            } => self.pending.load_balancer(&namespace, &name, &status),
            WriteStatus::Gateway(w) => {
                let client = self.client.clone();
                ctx.spawn(send_gateway(client, w, at).into_actor(self));
                return;
            }
        }
        self.flush(ctx);
    }
}
