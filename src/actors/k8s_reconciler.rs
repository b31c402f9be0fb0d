//! Reconciler actor: a thin shell over the plain `Reconciler`. It takes watcher output, applies
//! it, publishes the route list / certificates / global settings through the `Publisher`
//! callbacks, and hands events and status writes to their actors.
//!
//! Initial sync (spec §6.1): nothing is applied until every watcher has listed once; then the
//! whole state is applied at once, published once, and every managed Ingress gets its event.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use actix::prelude::*;
use k8s_openapi::api::core::v1::Service;

use crate::actors::k8s_events::PublishEvent;
use crate::actors::k8s_leader::LeaderChanged;
use crate::actors::k8s_status::WriteStatus;
use crate::actors::k8s_watch::Watched;
use crate::config::{RouteConfig, Settings};
use crate::controller::health::{CheckState, Health, CHECK_BOOTSTRAP, CHECK_INGRESS_SYNC};
use crate::k8s::convert::{pomerium_to_settings, TlsCert, WatchedSecrets};
use crate::k8s::events as ev;
use crate::k8s::reconcile::{Change, IngressResult, Outcome, Reconciler};
use crate::k8s::status;
use crate::k8s::watch::{Step, SyncTracker};
use crate::k8s::{IngressKey, Kind, KubeObject};

/// Changes arriving within this window are published together (one proxy rebuild per burst).
const PUBLISH_COALESCE: std::time::Duration = std::time::Duration::from_millis(10);

type RoutesHook = Box<dyn Fn(Arc<Vec<RouteConfig>>) + Send + Sync>;
/// The route list as shared pointers: unchanged routes are the same `Arc`s from one publish to
/// the next, so nothing is deep-copied on the way to the proxy.
pub type SharedRoutes = Arc<Vec<Arc<RouteConfig>>>;
type SharedRoutesHook = Box<dyn Fn(SharedRoutes) + Send + Sync>;
type CertsHook = Box<dyn Fn(Arc<Vec<TlsCert>>) + Send + Sync>;
type SettingsHook = Box<dyn Fn(Arc<Settings>) + Send + Sync>;

/// Where the controller's output goes (the lead wires these to the proxy's route table, TLS
/// resolver and global settings). Each is called with a complete new snapshot, only when it
/// changed (and once at the initial sync).
#[derive(Default)]
pub struct Publisher {
    /// All routes, in evaluation order.
    pub routes: Option<SharedRoutesHook>,
    /// Routes of cert-manager HTTP-01 solver Ingresses (also in `routes`), for the plain HTTP
    /// listener.
    pub http01_routes: Option<RoutesHook>,
    /// Ingress TLS certificates matching a route host.
    pub certificates: Option<CertsHook>,
    pub settings: Option<SettingsHook>,
}

impl Publisher {
    pub fn on_routes(mut self, f: impl Fn(SharedRoutes) + Send + Sync + 'static) -> Self {
        self.routes = Some(Box::new(f));
        self
    }
    pub fn on_http01_routes(
        mut self,
        f: impl Fn(Arc<Vec<RouteConfig>>) + Send + Sync + 'static,
    ) -> Self {
        self.http01_routes = Some(Box::new(f));
        self
    }
    pub fn on_certificates(
        mut self,
        f: impl Fn(Arc<Vec<TlsCert>>) + Send + Sync + 'static,
    ) -> Self {
        self.certificates = Some(Box::new(f));
        self
    }
    pub fn on_settings(mut self, f: impl Fn(Arc<Settings>) + Send + Sync + 'static) -> Self {
        self.settings = Some(Box::new(f));
        self
    }
}

/// Options of the reconciler actor.
#[derive(Debug, Clone)]
pub struct ReconcilerOptions {
    /// Name of the cluster-scoped `Pomerium` object (`--pomerium-config`).
    pub pomerium_name: String,
    /// `--update-status-from-service` as (namespace, name).
    pub status_service: Option<(String, String)>,
    /// Namespaces whose Secrets are watched (`--namespaces`); `None`: all.
    pub secret_namespaces: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default)]
struct Meta {
    uid: Option<String>,
    generation: Option<i64>,
}

fn meta(obj: &KubeObject) -> Meta {
    let m = obj.meta();
    Meta {
        uid: m.uid.clone(),
        generation: m.generation,
    }
}

pub struct ReconcilerActor {
    core: Reconciler,
    tracker: SyncTracker,
    options: ReconcilerOptions,
    publisher: Publisher,
    events: Option<Recipient<PublishEvent>>,
    status: Option<Recipient<WriteStatus>>,
    health: Health,
    ingresses: BTreeMap<IngressKey, Meta>,
    pomerium: Option<Meta>,
    /// The `--update-status-from-service` Service, when it exists.
    status_service: Option<Service>,
    /// Ingresses whose last reconcile succeeded (they get `status.loadBalancer`).
    healthy: BTreeSet<IngressKey>,
    last_routes: Option<SharedRoutes>,
    last_http01: Option<Arc<Vec<RouteConfig>>>,
    publish_scheduled: bool,
    /// Only the leader writes events and status (always true without leader election).
    leader: bool,
    /// Good settings were published at least once.
    settings_applied: bool,
    last_certs: Option<Arc<Vec<TlsCert>>>,
    /// Last settings outcome reported: (generation, error text or None).
    last_settings: Option<(Option<i64>, Result<Settings, String>)>,
    /// HTTPRoute uids (for event references).
    gateway_uids: BTreeMap<crate::k8s::NamespacedName, Option<String>>,
}

impl ReconcilerActor {
    pub fn new(
        core: Reconciler,
        expected: Vec<crate::k8s::watch::Source>,
        options: ReconcilerOptions,
        publisher: Publisher,
        health: Health,
    ) -> Self {
        ReconcilerActor {
            core,
            tracker: SyncTracker::new(expected),
            options,
            publisher,
            events: None,
            status: None,
            health,
            ingresses: BTreeMap::new(),
            pomerium: None,
            status_service: None,
            healthy: BTreeSet::new(),
            last_routes: None,
            last_http01: None,
            publish_scheduled: false,
            leader: true,
            settings_applied: false,
            last_certs: None,
            last_settings: None,
            gateway_uids: BTreeMap::new(),
        }
    }

    /// With leader election: write nothing until `LeaderChanged(true)`.
    pub fn follower(mut self) -> Self {
        self.leader = false;
        self
    }

    /// Publish events through this recipient (only the leader should).
    pub fn with_events(mut self, r: Recipient<PublishEvent>) -> Self {
        self.events = Some(r);
        self
    }

    /// Write status through this recipient.
    pub fn with_status(mut self, r: Recipient<WriteStatus>) -> Self {
        self.status = Some(r);
        self
    }

    fn is_status_service(&self, ns: &str, name: &str) -> bool {
        self.options
            .status_service
            .as_ref()
            .is_some_and(|(n, s)| n == ns && s == name)
    }

    /// Bookkeeping before an object goes to the core. Returns whether the status Service changed.
    fn observe_upsert(&mut self, obj: &KubeObject) -> bool {
        match obj {
            KubeObject::Ingress(_) => {
                self.ingresses.insert(
                    IngressKey {
                        namespace: obj.namespace().to_string(),
                        name: obj.name().to_string(),
                    },
                    meta(obj),
                );
            }
            KubeObject::HttpRoute(_) => {
                self.gateway_uids.insert(
                    crate::k8s::NamespacedName::new(obj.namespace(), obj.name()),
                    obj.meta().uid.clone(),
                );
            }
            KubeObject::Pomerium(_) if obj.name() == self.options.pomerium_name => {
                self.pomerium = Some(meta(obj));
            }
            KubeObject::Service(s) if self.is_status_service(obj.namespace(), obj.name()) => {
                self.status_service = Some((**s).clone());
                return true;
            }
            _ => {}
        }
        false
    }

    fn observe_delete(&mut self, kind: Kind, ns: &str, name: &str) -> bool {
        match kind {
            Kind::Pomerium if name == self.options.pomerium_name => self.pomerium = None,
            Kind::Service if self.is_status_service(ns, name) => {
                self.status_service = None;
                return true;
            }
            _ => {}
        }
        false
    }

    fn initial(&mut self, objects: Vec<KubeObject>) {
        for o in &objects {
            self.observe_upsert(o);
        }
        let outcome = self.core.apply_all(objects);
        tracing::info!(
            ingresses = outcome.results.len(),
            httproutes = outcome.gateway_results.len(),
            "initial sync applied"
        );
        self.report_gateway(
            outcome.gateway_results.clone(),
            outcome.gateway_status.clone(),
        );
        self.publish(true);
        self.report(outcome.results, true);
        self.settings(true);
        self.health.set(CHECK_INGRESS_SYNC, CheckState::Running);
    }

    fn changes(&mut self, changes: Vec<Change>, ctx: &mut Context<Self>) {
        let mut results: Vec<(IngressKey, IngressResult)> = Vec::new();
        let mut settings_touched = false;
        let mut lb_changed = false;
        for c in changes {
            if let Change::Upsert(o @ KubeObject::Pomerium(_)) = &c {
                // Our own status writes come back as watch events; only a new generation
                // (a spec change) matters.
                let seen = self.pomerium.as_ref().and_then(|m| m.generation);
                if seen.is_some()
                    && seen == meta(o).generation
                    && o.name() == self.options.pomerium_name
                {
                    continue;
                }
            }
            match &c {
                Change::Upsert(o) => {
                    lb_changed |= self.observe_upsert(o);
                    settings_touched |= matches!(o.kind(), Kind::Pomerium | Kind::Secret);
                }
                Change::Delete(kind, ns, name) => {
                    lb_changed |= self.observe_delete(*kind, ns, name);
                    settings_touched |= matches!(kind, Kind::Pomerium | Kind::Secret);
                }
            }
            let Outcome {
                results: r,
                gateway_results,
                gateway_status,
                ..
            } = self.core.apply(c);
            results.extend(r);
            self.report_gateway(gateway_results, gateway_status);
        }
        // Compared with what was last published when the window closes: certificates can
        // change without a route change (a rotated Secret).
        if !self.publish_scheduled {
            self.publish_scheduled = true;
            ctx.run_later(PUBLISH_COALESCE, |act, _| {
                act.publish_scheduled = false;
                act.publish(false);
            });
        }
        self.report(results, false);
        if settings_touched {
            self.settings(false);
        }
        if lb_changed {
            let all: Vec<IngressKey> = self.healthy.iter().cloned().collect();
            for k in all {
                self.write_load_balancer(&k);
            }
        }
    }

    fn publish(&mut self, force: bool) {
        fn changed<T: PartialEq>(last: &Option<Arc<T>>, now: &Arc<T>) -> bool {
            !last
                .as_ref()
                .is_some_and(|l| Arc::ptr_eq(l, now) || **l == **now)
        }
        let routes = self.core.route_snapshot();
        if force || changed(&self.last_routes, &routes) {
            tracing::info!(routes = routes.len(), "publishing routes");
            if let Some(f) = &self.publisher.routes {
                f(routes.clone());
            }
            self.last_routes = Some(routes);
        }
        let http01 = self.core.http01_routes();
        if force || changed(&self.last_http01, &http01) {
            if let Some(f) = &self.publisher.http01_routes {
                f(http01.clone());
            }
            self.last_http01 = Some(http01);
        }
        let certs = self.core.certificates();
        if force || changed(&self.last_certs, &certs) {
            tracing::info!(certificates = certs.len(), "publishing certificates");
            if let Some(f) = &self.publisher.certificates {
                f(certs.clone());
            }
            self.last_certs = Some(certs);
        }
    }

    fn event(&self, e: ev::EventSpec) {
        if !self.leader {
            return;
        }
        if let Some(r) = &self.events {
            r.do_send(PublishEvent(e));
        }
    }

    fn write(&self, w: WriteStatus) {
        if !self.leader {
            return;
        }
        if let Some(r) = &self.status {
            r.do_send(w);
        }
    }

    fn pomerium_ref(&self) -> Option<k8s_openapi::api::core::v1::ObjectReference> {
        self.pomerium
            .as_ref()
            .map(|m| ev::pomerium_ref(&self.options.pomerium_name, m.uid.as_deref()))
    }

    fn report(&mut self, results: Vec<(IngressKey, IngressResult)>, initial: bool) {
        // Keep the last result per Ingress, in first-seen order.
        let mut order: Vec<IngressKey> = Vec::new();
        let mut last: BTreeMap<IngressKey, IngressResult> = BTreeMap::new();
        for (k, r) in results {
            if !last.contains_key(&k) {
                order.push(k.clone());
            }
            last.insert(k, r);
        }
        let pom = self.pomerium_ref();
        for key in order {
            let result = last.remove(&key).expect("present");
            let m = self.ingresses.get(&key).cloned().unwrap_or_default();
            let iref = ev::ingress_ref(&key.namespace, &key.name, m.uid.as_deref());
            let skey = format!("{}/{}", key.namespace, key.name);
            match result {
                IngressResult::Updated => {
                    self.event(ev::ingress_updated(iref.clone()));
                    if let Some(p) = &pom {
                        self.event(ev::pomerium_ingress_updated(p.clone(), iref));
                        self.write(WriteStatus::IngressEntry {
                            key: skey,
                            generation: m.generation,
                            error: None,
                        });
                    }
                    self.healthy.insert(key.clone());
                    self.write_load_balancer(&key);
                }
                IngressResult::Error(text) => {
                    tracing::warn!(ingress = %skey, error = %text, "ingress rejected");
                    self.event(ev::ingress_error(iref.clone(), &text));
                    if let Some(p) = &pom {
                        self.event(ev::pomerium_ingress_error(p.clone(), iref, &text));
                        self.write(WriteStatus::IngressEntry {
                            key: skey,
                            generation: m.generation,
                            error: Some(text),
                        });
                    }
                    self.healthy.remove(&key);
                }
                IngressResult::Removed(reason) => {
                    self.healthy.remove(&key);
                    if initial {
                        continue;
                    }
                    tracing::info!(ingress = %skey, reason = %reason, "ingress routes removed");
                    if let Some(p) = &pom {
                        self.event(ev::pomerium_ingress_deleted(p.clone(), iref, &reason));
                        self.write(WriteStatus::RemoveIngressEntry { key: skey });
                    }
                    if !self.core_has_ingress(&key) {
                        self.ingresses.remove(&key);
                    }
                }
            }
        }
    }

    /// Events on HTTPRoutes and Gateway API status writes.
    fn report_gateway(
        &mut self,
        results: Vec<(crate::k8s::NamespacedName, IngressResult)>,
        statuses: Vec<crate::k8s::gateway::StatusWrite>,
    ) {
        for (key, result) in results {
            let uid = self.gateway_uids.get(&key).cloned().flatten();
            let r = ev::object_ref(
                crate::k8s::gateway::HttpRoute::API_VERSION,
                "HTTPRoute",
                &key.namespace,
                &key.name,
                uid.as_deref(),
            );
            match result {
                IngressResult::Updated => self.event(ev::ingress_updated(r)),
                IngressResult::Error(text) => {
                    tracing::warn!(httproute = %key, error = %text, "HTTPRoute rejected");
                    self.event(ev::ingress_error(r, &text));
                }
                IngressResult::Removed(reason) => {
                    tracing::info!(httproute = %key, reason = %reason, "HTTPRoute routes removed");
                }
            }
        }
        for s in statuses {
            self.write(WriteStatus::Gateway(s));
        }
    }

    fn core_has_ingress(&self, key: &IngressKey) -> bool {
        self.core.ingress(key).is_some()
    }

    /// `status.loadBalancer` of one Ingress from the `--update-status-from-service` Service.
    fn write_load_balancer(&self, key: &IngressKey) {
        let Some((sns, sname)) = &self.options.status_service else {
            return;
        };
        match &self.status_service {
            Some(svc) => self.write(WriteStatus::IngressLoadBalancer {
                namespace: key.namespace.clone(),
                name: key.name.clone(),
                status: status::load_balancer_from_service(svc),
            }),
            None => {
                let m = self.ingresses.get(key).cloned().unwrap_or_default();
                let iref = ev::ingress_ref(&key.namespace, &key.name, m.uid.as_deref());
                self.event(ev::ingress_error(
                    iref,
                    &status::missing_status_service(sns, sname),
                ));
            }
        }
    }

    /// Re-derives global settings from the `Pomerium` object and its Secrets; reports changes.
    fn settings(&mut self, initial: bool) {
        let name = self.options.pomerium_name.clone();
        let Some(p) = self.core.pomerium(&name) else {
            if self.settings_applied {
                // Deleted after a good start: the proxy keeps the last good settings.
                if self.last_settings.take().is_some() {
                    tracing::warn!(pomerium = %name, "Pomerium object deleted; keeping the last good settings");
                }
            } else {
                self.last_settings = None;
                if initial {
                    tracing::warn!(pomerium = %name, "Pomerium object not found; waiting for it");
                }
            }
            return;
        };
        let generation = p.metadata.generation;
        // Settings the proxy cannot use (e.g. a bad header name) are rejected here, with the
        // same reporting as a conversion error, instead of failing later in the proxy.
        let secrets = WatchedSecrets {
            secrets: self.core.state(),
            namespaces: self.options.secret_namespaces.as_deref(),
        };
        let result = pomerium_to_settings(p, &secrets)
            .and_then(|(s, w)| crate::controller::proxy::check_settings(&s).map(|_| (s, w)));
        let (settings, warnings) = match &result {
            Ok((s, w)) => (Ok(s.clone()), w.clone()),
            Err(e) => (Err(e.clone()), Vec::new()),
        };
        if self
            .last_settings
            .as_ref()
            .is_some_and(|(g, last)| *g == generation && *last == settings)
        {
            return;
        }
        self.last_settings = Some((generation, settings.clone()));
        let pref = self.pomerium_ref();
        match settings {
            Ok(s) => {
                tracing::info!(pomerium = %name, "global settings applied");
                self.health.set(CHECK_BOOTSTRAP, CheckState::Running);
                self.settings_applied = true;
                if let Some(f) = &self.publisher.settings {
                    f(Arc::new(s));
                }
                if let Some(p) = pref {
                    self.event(ev::settings_updated(p.clone()));
                    for w in &warnings {
                        self.event(ev::settings_warning(p.clone(), w));
                    }
                }
                self.write(WriteStatus::Settings {
                    generation,
                    error: None,
                    warnings,
                });
            }
            Err(e) => {
                tracing::warn!(pomerium = %name, error = %e, "global settings rejected");
                // Before the first good settings this fails startup/readiness; afterwards the
                // proxy keeps serving the last good settings, so it stays ready and the error
                // goes to the status and events only.
                if !self.settings_applied {
                    self.health
                        .set(CHECK_BOOTSTRAP, CheckState::Error(e.clone()));
                }
                if let Some(p) = pref {
                    self.event(ev::settings_error(p, &e));
                }
                self.write(WriteStatus::Settings {
                    generation,
                    error: Some(e),
                    warnings,
                });
            }
        }
    }
}

impl Actor for ReconcilerActor {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Context<Self>) {
        tracing::info!(waiting_for = ?self.tracker.waiting_for(), "reconciler waiting for the first lists");
    }
}

impl Handler<Watched> for ReconcilerActor {
    type Result = ();

    fn handle(&mut self, msg: Watched, ctx: &mut Context<Self>) {
        match self.tracker.handle(msg.0) {
            Step::Waiting => {}
            Step::Initial(objects) => self.initial(objects),
            Step::Changes(changes) if changes.is_empty() => {}
            Step::Changes(changes) => self.changes(changes, ctx),
        }
    }
}

impl Handler<LeaderChanged> for ReconcilerActor {
    type Result = ();

    fn handle(&mut self, msg: LeaderChanged, _ctx: &mut Context<Self>) {
        let was = self.leader;
        self.leader = msg.0;
        if self.leader && !was && self.tracker.synced() {
            // A new leader reports the current state, as after an initial sync.
            let results: Vec<(IngressKey, IngressResult)> = self
                .core
                .managed()
                .into_iter()
                .map(|k| {
                    let r = match self.core.error(&k) {
                        Some(e) => IngressResult::Error(e.to_string()),
                        None => IngressResult::Updated,
                    };
                    (k, r)
                })
                .collect();
            self.report(results, true);
            let gw: Vec<_> = self
                .core
                .gateway_routes()
                .into_iter()
                .map(|k| {
                    let r = match self.core.gateway_error(&k) {
                        Some(e) => IngressResult::Error(e.to_string()),
                        None => IngressResult::Updated,
                    };
                    (k, r)
                })
                .collect();
            let statuses = self.core.gateway_statuses();
            self.report_gateway(gw, statuses);
            self.last_settings = None;
            self.settings(false);
        }
    }
}
