//! Event recorder actor: a thin shell over one long-lived `kube` `Recorder`. Messages are
//! published one at a time, in order. Publishing failures are logged, never fatal.

use actix::prelude::*;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use crate::k8s::events::{EventKind, EventSpec};

/// Publish one event.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct PublishEvent(pub EventSpec);

pub struct EventRecorderActor {
    recorder: Recorder,
}

impl EventRecorderActor {
    /// `controller` is the reporting controller (`pomerium-ingress`); `instance` the pod name.
    pub fn new(client: kube::Client, controller: &str, instance: Option<String>) -> Self {
        let reporter = Reporter {
            controller: controller.to_string(),
            instance,
        };
        EventRecorderActor {
            recorder: Recorder::new(client, reporter),
        }
    }
}

impl Actor for EventRecorderActor {
    type Context = Context<Self>;
}

impl Handler<PublishEvent> for EventRecorderActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: PublishEvent, _ctx: &mut Context<Self>) -> Self::Result {
        let recorder = self.recorder.clone();
        let spec = msg.0;
        AtomicResponse::new(Box::pin(
            async move {
                let ev = Event {
                    type_: match spec.kind {
                        EventKind::Normal => EventType::Normal,
                        EventKind::Warning => EventType::Warning,
                    },
                    reason: spec.reason.clone(),
                    note: Some(spec.message.clone()),
                    action: spec.action.clone(),
                    secondary: spec.related.clone(),
                };
                if let Err(e) = recorder.publish(&ev, &spec.regarding).await {
                    tracing::warn!(
                        regarding = ?spec.regarding.name,
                        reason = %spec.reason,
                        error = %e,
                        "cannot publish event"
                    );
                }
            }
            .into_actor(self),
        ))
    }
}
