//! Status writer actor: merge patches on the `Pomerium` object's status subresource
//! (`status.ingress[..]`, `status.settingsStatus`) and on Ingress `status.loadBalancer`.
//! Writes happen one at a time, in order; failures are logged.

use actix::prelude::*;
use k8s_openapi::api::networking::v1::{Ingress, IngressLoadBalancerStatus};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::Value;

use crate::k8s::status;

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
}

pub struct StatusWriterActor {
    client: kube::Client,
    pomerium_name: String,
}

impl StatusWriterActor {
    pub fn new(client: kube::Client, pomerium_name: &str) -> Self {
        StatusWriterActor {
            client,
            pomerium_name: pomerium_name.to_string(),
        }
    }
}

fn pomerium_api(client: kube::Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("ingress.pomerium.io", "v1", "Pomerium");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "pomerium");
    Api::all_with(client, &ar)
}

impl Actor for StatusWriterActor {
    type Context = Context<Self>;
}

async fn patch_pomerium(client: kube::Client, name: String, patch: Patch<Value>) {
    let api = pomerium_api(client);
    if let Err(e) = api
        .patch_status(&name, &PatchParams::default(), &patch)
        .await
    {
        tracing::warn!(pomerium = %name, error = %e, "cannot update Pomerium status");
    }
}

impl Handler<WriteStatus> for StatusWriterActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: WriteStatus, _ctx: &mut Context<Self>) -> Self::Result {
        let client = self.client.clone();
        let name = self.pomerium_name.clone();
        let at = status::now_rfc3339();
        let fut = async move {
            match msg {
                WriteStatus::IngressEntry {
                    key,
                    generation,
                    error,
                } => {
                    let p = status::ingress_entry_patch(&key, generation, &at, error.as_deref());
                    patch_pomerium(client, name, Patch::Merge(p)).await;
                }
                WriteStatus::RemoveIngressEntry { key } => {
                    let p = status::ingress_entry_remove(&key);
                    patch_pomerium(client, name, Patch::Merge(p)).await;
                }
                WriteStatus::Settings {
                    generation,
                    error,
                    warnings,
                } => {
                    let p =
                        status::settings_status_patch(generation, &at, error.as_deref(), &warnings);
                    patch_pomerium(client, name, Patch::Merge(p)).await;
                }
                WriteStatus::IngressLoadBalancer {
                    namespace,
                    name,
                    status: lb,
                } => {
                    let api: Api<Ingress> = Api::namespaced(client, &namespace);
                    let p = status::ingress_load_balancer_patch(&lb);
                    if let Err(e) = api
                        .patch_status(&name, &PatchParams::default(), &Patch::Merge(p))
                        .await
                    {
                        tracing::warn!(ingress = %format!("{namespace}/{name}"), error = %e, "update ingress status");
                    }
                }
            }
        };
        AtomicResponse::new(Box::pin(fut.into_actor(self)))
    }
}
