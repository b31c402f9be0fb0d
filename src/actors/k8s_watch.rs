//! Watcher actor: one per watched kind, a thin shell over `kube::runtime::watcher` (list, then
//! watch; it re-watches from the last resourceVersion after a dropped stream and re-lists after
//! 410 Gone, with backoff on errors: `WatchBackoff`, capped at 1 s so recovery after an API
//! server outage is quick). It buffers a list (`Init`..`InitDone`) into one
//! `Listed` message and forwards single changes, all to the reconciler actor.

use std::fmt::Debug;

use actix::prelude::*;
use futures::StreamExt;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

use crate::k8s::backoff::WatchBackoff;
use crate::k8s::watch::WatchEvent;
use crate::k8s::{Kind, KubeObject};

/// Carries a `WatchEvent` to the reconciler actor.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Watched(pub WatchEvent);

type WatchItem<K> = Result<watcher::Event<K>, watcher::Error>;

pub struct WatcherActor<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Unpin + 'static,
{
    kind: Kind,
    /// The namespace `api` is limited to; `None`: cluster-wide.
    namespace: Option<String>,
    api: Option<Api<K>>,
    config: watcher::Config,
    wrap: fn(K) -> KubeObject,
    target: Recipient<Watched>,
    buffer: Vec<KubeObject>,
    listed_once: bool,
    /// Called (once) when the first list fails with 404/403: the kind is not served.
    on_unavailable: Option<Box<dyn FnOnce() + Send>>,
}

impl<K> WatcherActor<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Unpin + 'static,
    K::DynamicType: Default,
{
    /// `namespace` must be the one `api` is limited to (`None` for `Api::all`).
    pub fn new(
        kind: Kind,
        namespace: Option<String>,
        api: Api<K>,
        config: watcher::Config,
        wrap: fn(K) -> KubeObject,
        target: Recipient<Watched>,
    ) -> Self {
        WatcherActor {
            kind,
            namespace,
            api: Some(api),
            config,
            wrap,
            target,
            buffer: Vec::new(),
            listed_once: false,
            on_unavailable: None,
        }
    }

    /// What to do if this kind turns out not to be served (e.g. start an Endpoints watcher
    /// when EndpointSlices are unavailable). Without it, the watcher keeps retrying.
    pub fn on_unavailable(mut self, f: impl FnOnce() + Send + 'static) -> Self {
        self.on_unavailable = Some(Box::new(f));
        self
    }
}

impl<K> Actor for WatcherActor<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Unpin + 'static,
    K::DynamicType: Default,
{
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let api = self.api.take().expect("watcher started once");
        let stream = watcher(api, self.config.clone())
            .backoff(WatchBackoff::default())
            .boxed();
        ctx.add_stream(stream);
        tracing::debug!(kind = ?self.kind, namespace = ?self.namespace, "watch started");
    }
}

fn not_served(e: &watcher::Error) -> bool {
    match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s)) => s.code == 404 || s.code == 403,
        _ => false,
    }
}

impl<K> StreamHandler<WatchItem<K>> for WatcherActor<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Unpin + 'static,
    K::DynamicType: Default,
{
    fn handle(&mut self, item: WatchItem<K>, ctx: &mut Context<Self>) {
        let send = |ev: WatchEvent| self.target.do_send(Watched(ev));
        match item {
            Ok(watcher::Event::Init) => self.buffer.clear(),
            Ok(watcher::Event::InitApply(o)) => self.buffer.push((self.wrap)(o)),
            Ok(watcher::Event::InitDone) => {
                self.listed_once = true;
                let objects = std::mem::take(&mut self.buffer);
                tracing::debug!(kind = ?self.kind, count = objects.len(), "listed");
                send(WatchEvent::Listed {
                    kind: self.kind,
                    namespace: self.namespace.clone(),
                    objects,
                });
            }
            Ok(watcher::Event::Apply(o)) => send(WatchEvent::Applied((self.wrap)(o))),
            Ok(watcher::Event::Delete(o)) => send(WatchEvent::Deleted((self.wrap)(o))),
            Err(e) => {
                if !self.listed_once && not_served(&e) {
                    if let Some(f) = self.on_unavailable.take() {
                        tracing::warn!(kind = ?self.kind, error = %e, "kind not served; falling back");
                        send(WatchEvent::Unavailable(self.kind, self.namespace.clone()));
                        f();
                        ctx.stop();
                        return;
                    }
                }
                match e {
                    watcher::Error::WatchError(ref s) if s.code == 410 => {
                        tracing::info!(kind = ?self.kind, "watch expired (410 Gone), re-listing")
                    }
                    _ => {
                        tracing::warn!(kind = ?self.kind, namespace = ?self.namespace, error = %e, "watch error, retrying")
                    }
                }
            }
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        tracing::warn!(kind = ?self.kind, "watch stream ended");
        ctx.stop();
    }
}
