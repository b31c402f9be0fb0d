//! Event recorder actor: writes `events.k8s.io/v1` Events. The actor only queues; `IN_FLIGHT`
//! worker tasks take events off the queue and write them (an initial sync emits two events
//! per Ingress, so thousands at once). Publishing failures are logged, never fatal.
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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::mpsc;

use crate::k8s::events::{EventKind, EventSpec};

/// Concurrent event writes.
const IN_FLIGHT: usize = 4;

/// Repeats within this window update the existing event's `series`.
const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

/// Publish one event.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct PublishEvent(pub EventSpec);

type RefKey = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    regarding: RefKey,
    related: Option<RefKey>,
    kind: &'static str,
    reason: String,
    message: String,
}

fn ref_key(r: &ObjectReference) -> RefKey {
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

/// Events written recently, for `series` updates.
#[derive(Debug)]
struct SentCache {
    sent: HashMap<Key, Sent>,
    /// Last sweep (at most one per minute keeps publishing O(1)).
    swept: Instant,
}

impl SentCache {
    fn repeat_of(&mut self, key: &Key, now: Instant) -> Option<Sent> {
        if now.duration_since(self.swept) >= Duration::from_secs(60) {
            self.swept = now;
            self.sent
                .retain(|_, s| now.duration_since(s.last) < SERIES_WINDOW);
        }
        self.sent
            .get(key)
            .filter(|s| now.duration_since(s.last) < SERIES_WINDOW)
            .cloned()
    }
}

fn kind_str(k: EventKind) -> &'static str {
    match k {
        EventKind::Normal => "Normal",
        EventKind::Warning => "Warning",
    }
}

/// Writes events; shared by the worker tasks.
#[derive(Clone)]
struct Writer {
    client: kube::Client,
    controller: String,
    instance: String,
    cache: Arc<Mutex<SentCache>>,
}

impl Writer {
    async fn publish(&self, spec: EventSpec) {
        let key = Key {
            regarding: ref_key(&spec.regarding),
            related: spec.related.as_ref().map(ref_key),
            kind: kind_str(spec.kind),
            reason: spec.reason.clone(),
            message: spec.message.clone(),
        };
        let repeat = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .repeat_of(&key, Instant::now());
        let sent = match repeat {
            Some(s) => match self.update_series(s).await {
                Some(s) => Some(s),
                None => self.create(&spec).await,
            },
            None => self.create(&spec).await,
        };
        if let Some(s) = sent {
            self.cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .sent
                .insert(key, s);
        }
    }

    async fn update_series(&self, mut s: Sent) -> Option<Sent> {
        s.count += 1;
        let api: Api<Event> = Api::namespaced(self.client.clone(), &s.namespace);
        let patch =
            json!({"series": {"count": s.count, "lastObservedTime": MicroTime(Timestamp::now())}});
        match api
            .patch(&s.name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => {
                s.last = Instant::now();
                Some(s)
            }
            Err(e) => {
                tracing::debug!(event = %s.name, error = %e, "cannot update event series; creating a new event");
                None
            }
        }
    }

    async fn create(&self, spec: &EventSpec) -> Option<Sent> {
        let ts = Timestamp::now();
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
            .unwrap_or_else(|| self.controller.clone());
        let name = format!("{base}.{:x}", ts.as_nanosecond());
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                annotations: (!spec.annotations.is_empty()).then(|| spec.annotations.clone()),
                ..Default::default()
            },
            event_time: Some(MicroTime(ts)),
            action: Some(spec.action.clone()),
            reason: Some(spec.reason.clone()),
            note: Some(spec.message.clone()),
            type_: Some(kind_str(spec.kind).into()),
            regarding: Some(spec.regarding.clone()),
            related: spec.related.clone(),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
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
    }
}

pub struct EventRecorderActor {
    writer: Writer,
    tx: mpsc::UnboundedSender<EventSpec>,
    rx: Option<mpsc::UnboundedReceiver<EventSpec>>,
}

impl EventRecorderActor {
    /// `controller` is the reporting controller (`pomerium-ingress`); `instance` the pod name
    /// (defaults to the host name, then to `controller`).
    pub fn new(client: kube::Client, controller: &str, instance: Option<String>) -> Self {
        let instance = instance
            .or_else(|| std::env::var("HOSTNAME").ok())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| controller.to_string());
        let (tx, rx) = mpsc::unbounded_channel();
        EventRecorderActor {
            writer: Writer {
                client,
                controller: controller.to_string(),
                instance,
                cache: Arc::new(Mutex::new(SentCache {
                    sent: HashMap::new(),
                    swept: Instant::now(),
                })),
            },
            tx,
            rx: Some(rx),
        }
    }
}

impl Actor for EventRecorderActor {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Context<Self>) {
        // Workers end when the actor (and with it the sender) is dropped.
        let rx = Arc::new(tokio::sync::Mutex::new(
            self.rx.take().expect("started once"),
        ));
        for _ in 0..IN_FLIGHT {
            let rx = rx.clone();
            let writer = self.writer.clone();
            actix_rt::spawn(async move {
                loop {
                    let next = rx.lock().await.recv().await;
                    match next {
                        Some(spec) => writer.publish(spec).await,
                        None => return,
                    }
                }
            });
        }
    }
}

impl Handler<PublishEvent> for EventRecorderActor {
    type Result = ();

    fn handle(&mut self, msg: PublishEvent, _ctx: &mut Context<Self>) {
        let _ = self.tx.send(msg.0);
    }
}
