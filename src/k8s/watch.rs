//! Turning watcher output into reconciler changes (plain logic, no runtime).
//!
//! Watchers report a full list (`Listed`, at start and after every re-list, e.g. after a 410
//! Gone), and single `Applied`/`Deleted` objects in between. A watcher covers one kind,
//! cluster-wide or in one namespace (`--namespaces`: one watcher per namespace), and its list
//! replaces only what it covers. `SyncTracker`:
//! - holds back everything until every expected watcher has listed once, then hands out the
//!   whole initial state at once (non-Ingress objects first, so Ingresses convert against a
//!   complete cluster view);
//! - on a re-list, turns objects that vanished meanwhile into deletes;
//! - remembers which objects exist, so deletes are only sent for known objects.

use std::collections::{BTreeMap, BTreeSet};

use super::reconcile::Change;
use super::{Kind, KubeObject};

/// One watcher: a kind, cluster-wide (`None`) or in one namespace.
pub type Source = (Kind, Option<String>);

/// What a watcher reports.
#[derive(Debug, Clone)]
pub enum WatchEvent {
    /// A complete list of one kind in the watcher's scope (initial list or re-list).
    Listed {
        kind: Kind,
        /// The watcher's namespace; `None`: cluster-wide.
        namespace: Option<String>,
        objects: Vec<KubeObject>,
    },
    Applied(KubeObject),
    Deleted(KubeObject),
    /// The API for this kind is not served (404) or not allowed (403); stop waiting for it.
    /// For EndpointSlice, Endpoints are expected instead (the fallback watcher reports them).
    Unavailable(Kind, Option<String>),
}

/// What to do after a watch event.
#[derive(Debug)]
pub enum Step {
    /// Still waiting for the first list of some kinds; nothing to apply yet.
    Waiting,
    /// The first complete state: apply all, publish once, report every Ingress.
    Initial(Vec<KubeObject>),
    /// Ordinary incremental changes.
    Changes(Vec<Change>),
}

type Key = (String, String);

#[derive(Debug, Default)]
pub struct SyncTracker {
    expected: BTreeSet<Source>,
    listed: BTreeSet<Source>,
    /// Objects applied so far, with their resourceVersion.
    known: BTreeMap<Kind, BTreeMap<Key, Option<String>>>,
    /// Before the initial sync: the latest full state per kind.
    pending: BTreeMap<Kind, BTreeMap<Key, KubeObject>>,
    synced: bool,
}

/// Whether an object key is covered by a watcher of `namespace`.
fn in_scope(key: &Key, namespace: &Option<String>) -> bool {
    namespace.as_ref().is_none_or(|ns| key.0 == *ns)
}

fn key(obj: &KubeObject) -> Key {
    (obj.namespace().to_string(), obj.name().to_string())
}

fn rv(obj: &KubeObject) -> Option<String> {
    obj.meta().resource_version.clone()
}

/// Initial apply order: everything an Ingress reads first, the `Pomerium` object and
/// IngressClasses before Services/Secrets, Ingresses last.
fn order(kind: Kind) -> u8 {
    match kind {
        Kind::Pomerium => 0,
        Kind::IngressClass => 1,
        Kind::Ingress => 3,
        _ => 2,
    }
}

impl SyncTracker {
    pub fn new(expected: impl IntoIterator<Item = Source>) -> Self {
        SyncTracker {
            expected: expected.into_iter().collect(),
            ..Default::default()
        }
    }

    /// Whether the initial state has been handed out.
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// Watchers whose first list has not arrived yet.
    pub fn waiting_for(&self) -> Vec<Source> {
        self.expected.difference(&self.listed).cloned().collect()
    }

    /// Replace an expected watcher's kind (EndpointSlice → Endpoints when slices are not
    /// served).
    pub fn replace_expected(&mut self, from: Kind, to: Kind, namespace: Option<String>) {
        if self.expected.remove(&(from, namespace.clone())) {
            self.expected.insert((to, namespace));
        }
    }

    pub fn handle(&mut self, ev: WatchEvent) -> Step {
        if !self.synced {
            self.buffer(ev);
            if self.expected.is_subset(&self.listed) {
                self.synced = true;
                let mut all: Vec<(Kind, KubeObject)> = std::mem::take(&mut self.pending)
                    .into_iter()
                    .flat_map(|(k, objs)| objs.into_values().map(move |o| (k, o)))
                    .collect();
                all.sort_by_key(|(k, _)| order(*k));
                for (k, o) in &all {
                    self.known.entry(*k).or_default().insert(key(o), rv(o));
                }
                return Step::Initial(all.into_iter().map(|(_, o)| o).collect());
            }
            return Step::Waiting;
        }
        let changes = match ev {
            WatchEvent::Listed {
                kind,
                namespace,
                objects,
            } => self.relisted(kind, namespace, objects),
            WatchEvent::Applied(o) => {
                let seen = self
                    .known
                    .entry(o.kind())
                    .or_default()
                    .insert(key(&o), rv(&o));
                if seen.is_some_and(|old| old.is_some() && old == rv(&o)) {
                    Vec::new()
                } else {
                    vec![Change::Upsert(o)]
                }
            }
            WatchEvent::Deleted(o) => {
                let kind = o.kind();
                let k = key(&o);
                let existed = self.known.entry(kind).or_default().remove(&k);
                if existed.is_some() {
                    vec![Change::Delete(kind, k.0, k.1)]
                } else {
                    Vec::new()
                }
            }
            WatchEvent::Unavailable(kind, namespace) => {
                self.unavailable(kind, namespace);
                Vec::new()
            }
        };
        Step::Changes(changes)
    }

    fn unavailable(&mut self, kind: Kind, namespace: Option<String>) {
        if kind == Kind::EndpointSlice {
            self.replace_expected(kind, Kind::Endpoints, namespace);
        } else {
            self.expected.remove(&(kind, namespace));
        }
    }

    fn buffer(&mut self, ev: WatchEvent) {
        match ev {
            WatchEvent::Listed {
                kind,
                namespace,
                objects,
            } => {
                let pending = self.pending.entry(kind).or_default();
                pending.retain(|k, _| !in_scope(k, &namespace));
                pending.extend(objects.into_iter().map(|o| (key(&o), o)));
                self.listed.insert((kind, namespace));
            }
            WatchEvent::Applied(o) => {
                self.pending.entry(o.kind()).or_default().insert(key(&o), o);
            }
            WatchEvent::Deleted(o) => {
                if let Some(m) = self.pending.get_mut(&o.kind()) {
                    m.remove(&key(&o));
                }
            }
            WatchEvent::Unavailable(kind, namespace) => self.unavailable(kind, namespace),
        }
    }

    /// A re-list: deletes for objects that are gone, upserts for new or changed ones
    /// (an unchanged resourceVersion is skipped, so a re-list does not re-report everything).
    fn relisted(
        &mut self,
        kind: Kind,
        namespace: Option<String>,
        objects: Vec<KubeObject>,
    ) -> Vec<Change> {
        let now: BTreeMap<Key, Option<String>> = objects.iter().map(|o| (key(o), rv(o))).collect();
        let known = self.known.entry(kind).or_default();
        let before: BTreeMap<Key, Option<String>> = known
            .iter()
            .filter(|(k, _)| in_scope(k, &namespace))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        known.retain(|k, _| !in_scope(k, &namespace));
        known.extend(now.clone());
        self.listed.insert((kind, namespace));
        let mut changes: Vec<Change> = before
            .keys()
            .filter(|k| !now.contains_key(*k))
            .map(|(ns, name)| Change::Delete(kind, ns.clone(), name.clone()))
            .collect();
        changes.extend(
            objects
                .into_iter()
                .filter(|o| match before.get(&key(o)) {
                    Some(old) => old.is_none() || *old != rv(o),
                    None => true,
                })
                .map(Change::Upsert),
        );
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::api::networking::v1::Ingress;

    fn ing(name: &str, rv: &str) -> KubeObject {
        let mut i = Ingress::default();
        i.metadata.name = Some(name.into());
        i.metadata.namespace = Some("default".into());
        i.metadata.resource_version = Some(rv.into());
        KubeObject::Ingress(Box::new(i))
    }

    fn svc(name: &str, rv: &str) -> KubeObject {
        let mut s = Service::default();
        s.metadata.name = Some(name.into());
        s.metadata.namespace = Some("default".into());
        s.metadata.resource_version = Some(rv.into());
        KubeObject::Service(Box::new(s))
    }

    fn names(changes: &[Change]) -> Vec<String> {
        changes
            .iter()
            .map(|c| match c {
                Change::Upsert(o) => format!("+{}", o.name()),
                Change::Delete(_, _, n) => format!("-{n}"),
            })
            .collect()
    }

    #[test]
    fn initial_sync_waits_for_every_kind_and_orders_ingresses_last() {
        let mut t = SyncTracker::new([(Kind::Ingress, None), (Kind::Service, None)]);
        let step = t.handle(WatchEvent::Listed {
            kind: Kind::Ingress,
            namespace: None,
            objects: vec![ing("a", "1")],
        });
        assert!(matches!(step, Step::Waiting));
        // A change before the sync lands in the initial state.
        assert!(matches!(
            t.handle(WatchEvent::Applied(ing("b", "2"))),
            Step::Waiting
        ));
        assert_eq!(t.waiting_for(), vec![(Kind::Service, None)]);
        let Step::Initial(objs) = t.handle(WatchEvent::Listed {
            kind: Kind::Service,
            namespace: None,
            objects: vec![svc("s", "3")],
        }) else {
            panic!("expected the initial sync")
        };
        let order: Vec<_> = objs.iter().map(|o| o.name().to_string()).collect();
        assert_eq!(order, vec!["s", "a", "b"]);
        assert!(t.synced());
    }

    #[test]
    fn relist_deletes_vanished_and_skips_unchanged() {
        let mut t = SyncTracker::new([(Kind::Ingress, None)]);
        t.handle(WatchEvent::Listed {
            kind: Kind::Ingress,
            namespace: None,
            objects: vec![ing("a", "1"), ing("b", "2")],
        });
        let Step::Changes(c) = t.handle(WatchEvent::Applied(ing("c", "3"))) else {
            panic!()
        };
        assert_eq!(names(&c), vec!["+c"]);
        // A replayed event with the same resourceVersion is dropped.
        let Step::Changes(c) = t.handle(WatchEvent::Applied(ing("c", "3"))) else {
            panic!()
        };
        assert!(c.is_empty());
        let Step::Changes(c) = t.handle(WatchEvent::Listed {
            kind: Kind::Ingress,
            namespace: None,
            objects: vec![ing("b", "2"), ing("c", "4"), ing("d", "5")],
        }) else {
            panic!()
        };
        assert_eq!(names(&c), vec!["-a", "+c", "+d"]);
        let Step::Changes(c) = t.handle(WatchEvent::Deleted(ing("b", "6"))) else {
            panic!()
        };
        assert_eq!(names(&c), vec!["-b"]);
        // Deleting an unknown object is a no-op.
        let Step::Changes(c) = t.handle(WatchEvent::Deleted(ing("zz", "7"))) else {
            panic!()
        };
        assert!(c.is_empty());
    }

    fn ing_in(ns: &str, name: &str, rv: &str) -> KubeObject {
        let KubeObject::Ingress(mut i) = ing(name, rv) else {
            unreachable!()
        };
        i.metadata.namespace = Some(ns.into());
        KubeObject::Ingress(i)
    }

    #[test]
    fn namespaced_watchers_list_and_relist_only_their_namespace() {
        let a = Some("a".to_string());
        let b = Some("b".to_string());
        let mut t = SyncTracker::new([(Kind::Ingress, a.clone()), (Kind::Ingress, b.clone())]);
        let listed = |ns: &Option<String>, objects| WatchEvent::Listed {
            kind: Kind::Ingress,
            namespace: ns.clone(),
            objects,
        };
        assert!(matches!(
            t.handle(listed(&a, vec![ing_in("a", "x", "1")])),
            Step::Waiting
        ));
        assert_eq!(t.waiting_for(), vec![(Kind::Ingress, b.clone())]);
        let Step::Initial(objs) = t.handle(listed(&b, vec![ing_in("b", "y", "2")])) else {
            panic!("expected the initial sync")
        };
        assert_eq!(
            objs.len(),
            2,
            "one namespace's list keeps the other's objects"
        );
        // A re-list of `b` without `y` deletes `y` only, not `a/x`.
        let Step::Changes(c) = t.handle(listed(&b, vec![ing_in("b", "z", "3")])) else {
            panic!()
        };
        assert_eq!(names(&c), vec!["-y", "+z"]);
        let Step::Changes(c) = t.handle(listed(&a, vec![ing_in("a", "x", "1")])) else {
            panic!()
        };
        assert!(c.is_empty(), "{:?}", names(&c));
    }

    #[test]
    fn endpoint_slices_unavailable_expects_endpoints() {
        let mut t = SyncTracker::new([(Kind::EndpointSlice, None)]);
        assert!(matches!(
            t.handle(WatchEvent::Unavailable(Kind::EndpointSlice, None)),
            Step::Waiting
        ));
        assert_eq!(t.waiting_for(), vec![(Kind::Endpoints, None)]);
        assert!(matches!(
            t.handle(WatchEvent::Listed {
                kind: Kind::Endpoints,
                namespace: None,
                objects: vec![]
            }),
            Step::Initial(_)
        ));
    }
}
