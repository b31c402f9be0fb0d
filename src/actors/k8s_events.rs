//! Event recorder actor: writes `events.k8s.io/v1` Events, at most `IN_FLIGHT` at a time
//! (an initial sync emits two events per Ingress). Publishing failures are logged, never fatal.
//!
//! Why not kube's `Recorder`: its de-duplication key ignores the note, so a second event with
//! the same object/type/reason but a different message (e.g. a new `UpdateError` text, or
//! `default/x: deleted: …` after `default/x: config updated`) is turned into a `series.count`
//! patch of the *first* event and the new text is lost. This writer does the same thing as
//! the Recorder (create `<object>.<hex nanos>`, repeat within 6 minutes → merge patch of
//! `series`), keyed on the full message, and can set annotations (`ingress: ns/name`).
//!
//! A real API server serves `events.k8s.io/v1` Events through core `v1` too, so
//! `kubectl describe` shows them; a second core Event is not written (it would show twice).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix::prelude::*;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::k8s::events::{EventKind, EventSpec};

/// Concurrent event writes.
const IN_FLIGHT: usize = 4;

/// Repeats within this window update the existing event's `series`.
const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

/// Publish one event.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct PublishEvent(pub EventSpec);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    regarding: (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    ),
    related: Option<(Option<String>, Option<String>, Option<String>)>,
    kind: &'static str,
    reason: String,
    message: String,
}

fn ref_key(
    r: &ObjectReference,
) -> (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
) {
    (
        r.kind.clone(),
        r.namespace.clone(),
        r.name.clone(),
        r.uid.clone(),
    )
}

#[derive(Debug, Clone)]
struct Sent {
    namespace: String,
    name: String,
    count: i32,
    last: Instant,
}

pub struct EventRecorderActor {
    client: kube::Client,
    controller: String,
    instance: String,
    sent: HashMap<Key, Sent>,
    permits: std::sync::Arc<tokio::sync::Semaphore>,
}

impl EventRecorderActor {
    /// `controller` is the reporting controller (`pomerium-ingress`); `instance` the pod name
    /// (defaults to the host name, then to `controller`).
    pub fn new(client: kube::Client, controller: &str, instance: Option<String>) -> Self {
        let instance = instance
            .or_else(|| std::env::var("HOSTNAME").ok())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| controller.to_string());
        EventRecorderActor {
            client,
            controller: controller.to_string(),
            instance,
            sent: HashMap::new(),
            permits: std::sync::Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT)),
        }
    }
}

impl Actor for EventRecorderActor {
    type Context = Context<Self>;
}

fn kind_str(k: EventKind) -> &'static str {
    match k {
        EventKind::Normal => "Normal",
        EventKind::Warning => "Warning",
    }
}

impl Handler<PublishEvent> for EventRecorderActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: PublishEvent, _ctx: &mut Context<Self>) -> Self::Result {
        let spec = msg.0;
        let now = Instant::now();
        self.sent
            .retain(|_, s| now.duration_since(s.last) < SERIES_WINDOW);
        let key = Key {
            regarding: ref_key(&spec.regarding),
            related: spec
                .related
                .as_ref()
                .map(|r| (r.kind.clone(), r.namespace.clone(), r.name.clone())),
            kind: kind_str(spec.kind),
            reason: spec.reason.clone(),
            message: spec.message.clone(),
        };
        let repeat = self.sent.get(&key).cloned();
        let client = self.client.clone();
        let controller = self.controller.clone();
        let instance = self.instance.clone();
        let permits = self.permits.clone();
        let fut = async move {
            let _permit = permits.acquire_owned().await.ok()?;
            let ts = Timestamp::now();
            if let Some(mut s) = repeat {
                s.count += 1;
                let api: Api<Event> = Api::namespaced(client.clone(), &s.namespace);
                let patch =
                    json!({"series": {"count": s.count, "lastObservedTime": MicroTime(ts)}});
                match api
                    .patch(&s.name, &PatchParams::default(), &Patch::Merge(patch))
                    .await
                {
                    Ok(_) => {
                        s.last = Instant::now();
                        return Some(s);
                    }
                    Err(e) => {
                        tracing::debug!(event = %s.name, error = %e, "cannot update event series; creating a new event")
                    }
                }
            }
            let namespace = spec
                .regarding
                .namespace
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "default".into());
            let base = spec
                .regarding
                .name
                .clone()
                .unwrap_or_else(|| controller.clone());
            let name = format!("{base}.{:x}", ts.as_nanosecond());
            let event = Event {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(namespace.clone()),
                    annotations: if spec.annotations.is_empty() {
                        None
                    } else {
                        Some(spec.annotations.clone())
                    },
                    ..Default::default()
                },
                event_time: Some(MicroTime(ts)),
                action: Some(spec.action.clone()),
                reason: Some(spec.reason.clone()),
                note: Some(spec.message.clone()),
                type_: Some(kind_str(spec.kind).into()),
                regarding: Some(spec.regarding.clone()),
                related: spec.related.clone(),
                reporting_controller: Some(controller),
                reporting_instance: Some(instance),
                series: None::<EventSeries>,
                ..Default::default()
            };
            let api: Api<Event> = Api::namespaced(client, &namespace);
            match api.create(&PostParams::default(), &event).await {
                Ok(_) => Some(Sent {
                    namespace,
                    name,
                    count: 1,
                    last: Instant::now(),
                }),
                Err(e) => {
                    tracing::warn!(regarding = ?spec.regarding.name, reason = %spec.reason, error = %e, "cannot publish event");
                    None
                }
            }
        };
        Box::pin(fut.into_actor(self).map(move |sent, act, _| {
            if let Some(s) = sent {
                act.sent.insert(key, s);
            }
        }))
    }
}
