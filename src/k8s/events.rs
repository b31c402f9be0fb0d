//! Kubernetes events the controller emits (ingress-controller spec §6.2), as plain values.
//! The event recorder actor (`actors::k8s_events`) writes them as `events.k8s.io/v1` Events.

use std::collections::BTreeMap;

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
    /// Event annotations (`ingress: <ns>/<name>` on the `Pomerium` object's Ingress events).
    pub annotations: BTreeMap<String, String>,
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

/// Reference to any namespaced object (HTTPRoute events).
pub fn object_ref(
    api_version: &str,
    kind: &str,
    namespace: &str,
    name: &str,
    uid: Option<&str>,
) -> ObjectReference {
    ObjectReference {
        api_version: Some(api_version.into()),
        kind: Some(kind.into()),
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
        annotations: BTreeMap::new(),
    }
}

fn about_ingress(mut e: EventSpec, ingress: ObjectReference) -> EventSpec {
    e.annotations.insert("ingress".into(), key_of(&ingress));
    e.related = Some(ingress);
    e
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
    about_ingress(
        event(pomerium, EventKind::Normal, "Updated", message),
        ingress,
    )
}

/// `Warning UpdateError "<ns>/<name>: <error>"` on the `Pomerium` object.
pub fn pomerium_ingress_error(
    pomerium: ObjectReference,
    ingress: ObjectReference,
    error: &str,
) -> EventSpec {
    let message = format!("{}: {error}", key_of(&ingress));
    about_ingress(
        event(pomerium, EventKind::Warning, "UpdateError", message),
        ingress,
    )
}

/// `Normal Updated "<ns>/<name>: deleted: <reason>"` on the `Pomerium` object.
pub fn pomerium_ingress_deleted(
    pomerium: ObjectReference,
    ingress: ObjectReference,
    reason: &str,
) -> EventSpec {
    let message = format!("{}: deleted: {reason}", key_of(&ingress));
    about_ingress(
        event(pomerium, EventKind::Normal, "Updated", message),
        ingress,
    )
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
