//! Kubernetes events the controller emits (ingress-controller spec §6.2), as plain values.
//! The event recorder actor publishes them with one long-lived `kube` `Recorder`.
//!
//! kube 5's `Recorder::publish` writes `events.k8s.io/v1` Events (a repeat within 6 minutes
//! becomes a merge patch with `series.count`). A real API server stores `events.k8s.io/v1` and
//! core `v1` Events as one resource, so `kubectl describe` (which reads core `v1`) shows them;
//! writing a second core Event would show every event twice. We write only through the Recorder.

use k8s_openapi::api::core::v1::ObjectReference;

/// Default reporting controller (`From` column), as upstream's Ingress controller.
pub const DEFAULT_REPORTER: &str = "pomerium-ingress";

/// Message of the Normal `Updated` event on a reconciled Ingress.
pub const INGRESS_UPDATED: &str = "config updated";

/// The Ingress was deleted (the reason in the `Pomerium` object's "deleted" event).
pub const REASON_INGRESS_DELETED: &str = "Ingress resource was deleted";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Normal,
    Warning,
}

/// One event to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct EventSpec {
    /// The object the event is about.
    pub regarding: ObjectReference,
    /// A second object involved (the Ingress, for events on the `Pomerium` object).
    pub related: Option<ObjectReference>,
    pub kind: EventKind,
    /// `Updated`, `UpdateError`.
    pub reason: String,
    pub message: String,
    /// Short PascalCase action (`Reconcile`).
    pub action: String,
}

/// Reference to an Ingress.
pub fn ingress_ref(namespace: &str, name: &str, uid: Option<&str>) -> ObjectReference {
    ObjectReference {
        api_version: Some("networking.k8s.io/v1".into()),
        kind: Some("Ingress".into()),
        namespace: Some(namespace.into()),
        name: Some(name.into()),
        uid: uid.map(str::to_string),
        ..Default::default()
    }
}

/// Reference to the cluster-scoped `Pomerium` object (its events land in namespace `default`).
pub fn pomerium_ref(name: &str, uid: Option<&str>) -> ObjectReference {
    ObjectReference {
        api_version: Some("ingress.pomerium.io/v1".into()),
        kind: Some("Pomerium".into()),
        name: Some(name.into()),
        uid: uid.map(str::to_string),
        ..Default::default()
    }
}

fn event(regarding: ObjectReference, kind: EventKind, reason: &str, message: String) -> EventSpec {
    EventSpec {
        regarding,
        related: None,
        kind,
        reason: reason.into(),
        message,
        action: "Reconcile".into(),
    }
}

/// `Normal Updated "config updated"` on the Ingress.
pub fn ingress_updated(ingress: ObjectReference) -> EventSpec {
    event(
        ingress,
        EventKind::Normal,
        "Updated",
        INGRESS_UPDATED.into(),
    )
}

/// `Warning UpdateError "<error>"` on the Ingress.
pub fn ingress_error(ingress: ObjectReference, error: &str) -> EventSpec {
    event(ingress, EventKind::Warning, "UpdateError", error.into())
}

fn key_of(ingress: &ObjectReference) -> String {
    format!(
        "{}/{}",
        ingress.namespace.as_deref().unwrap_or_default(),
        ingress.name.as_deref().unwrap_or_default()
    )
}

/// `Normal Updated "<ns>/<name>: config updated"` on the `Pomerium` object.
pub fn pomerium_ingress_updated(pomerium: ObjectReference, ingress: ObjectReference) -> EventSpec {
    let message = format!("{}: {INGRESS_UPDATED}", key_of(&ingress));
    EventSpec {
        related: Some(ingress),
        ..event(pomerium, EventKind::Normal, "Updated", message)
    }
}

/// `Warning UpdateError "<ns>/<name>: <error>"` on the `Pomerium` object.
pub fn pomerium_ingress_error(
    pomerium: ObjectReference,
    ingress: ObjectReference,
    error: &str,
) -> EventSpec {
    let message = format!("{}: {error}", key_of(&ingress));
    EventSpec {
        related: Some(ingress),
        ..event(pomerium, EventKind::Warning, "UpdateError", message)
    }
}

/// `Normal Updated "<ns>/<name>: deleted: <reason>"` on the `Pomerium` object.
pub fn pomerium_ingress_deleted(
    pomerium: ObjectReference,
    ingress: ObjectReference,
    reason: &str,
) -> EventSpec {
    let message = format!("{}: deleted: {reason}", key_of(&ingress));
    EventSpec {
        related: Some(ingress),
        ..event(pomerium, EventKind::Normal, "Updated", message)
    }
}

/// `Normal Updated "config updated"` on the `Pomerium` object: global settings applied.
pub fn settings_updated(pomerium: ObjectReference) -> EventSpec {
    event(
        pomerium,
        EventKind::Normal,
        "Updated",
        INGRESS_UPDATED.into(),
    )
}

/// Settings rejected. Upstream uses type **Normal** with reason `UpdateError` (sic); we keep it.
pub fn settings_error(pomerium: ObjectReference, error: &str) -> EventSpec {
    event(pomerium, EventKind::Normal, "UpdateError", error.into())
}

/// `Warning Validation "<warning>"` on the `Pomerium` object.
pub fn settings_warning(pomerium: ObjectReference, warning: &str) -> EventSpec {
    event(pomerium, EventKind::Warning, "Validation", warning.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_match_upstream() {
        let ing = ingress_ref("default", "web", Some("u1"));
        let pom = pomerium_ref("global", None);
        let e = ingress_updated(ing.clone());
        assert_eq!(
            (e.kind, e.reason.as_str(), e.message.as_str()),
            (EventKind::Normal, "Updated", "config updated")
        );
        let e = ingress_error(
            ing.clone(),
            "parsing ingress: annotations: unknown ingress.pomerium.io/foo",
        );
        assert_eq!(e.kind, EventKind::Warning);
        assert_eq!(e.reason, "UpdateError");
        assert_eq!(
            e.message,
            "parsing ingress: annotations: unknown ingress.pomerium.io/foo"
        );
        let e = pomerium_ingress_updated(pom.clone(), ing.clone());
        assert_eq!(e.message, "default/web: config updated");
        assert_eq!(
            e.related.as_ref().and_then(|r| r.name.as_deref()),
            Some("web")
        );
        let e = pomerium_ingress_error(pom.clone(), ing.clone(), "boom");
        assert_eq!(
            (e.kind, e.message.as_str()),
            (EventKind::Warning, "default/web: boom")
        );
        let e = pomerium_ingress_deleted(pom.clone(), ing, REASON_INGRESS_DELETED);
        assert_eq!(
            e.message,
            "default/web: deleted: Ingress resource was deleted"
        );
        let e = settings_error(pom, "settings: x");
        assert_eq!(
            (e.kind, e.reason.as_str()),
            (EventKind::Normal, "UpdateError")
        );
    }
}
