//! A fake Kubernetes API server speaking real HTTP, for tests that drive the unchanged `kube`
//! client (list with resourceVersion, chunked watch streams, create/replace/patch/delete,
//! `/status` subresources, events, leases). See shared/testing.md §6.
//!
//! It runs on its own thread (its own actix system) on `127.0.0.1:0`. The test side talks to
//! it through plain synchronous methods: `apply`, `delete`, `get`, `events`, `expire_watches`...
//! Any group/version/plural is accepted; no discovery.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use regex::Regex;
use serde_json::{json, Map, Value};

/// Kinds the fake knows how to name (plural ↔ kind ↔ API prefix).
const KINDS: &[(&str, &str, &str)] = &[
    // (api prefix, plural, kind)
    ("api/v1", "services", "Service"),
    ("api/v1", "endpoints", "Endpoints"),
    ("api/v1", "secrets", "Secret"),
    ("api/v1", "events", "Event"),
    ("api/v1", "namespaces", "Namespace"),
    ("apis/networking.k8s.io/v1", "ingresses", "Ingress"),
    (
        "apis/networking.k8s.io/v1",
        "ingressclasses",
        "IngressClass",
    ),
    (
        "apis/discovery.k8s.io/v1",
        "endpointslices",
        "EndpointSlice",
    ),
    ("apis/events.k8s.io/v1", "events", "Event"),
    ("apis/coordination.k8s.io/v1", "leases", "Lease"),
    ("apis/ingress.pomerium.io/v1", "pomerium", "Pomerium"),
    (
        "apis/gateway.networking.k8s.io/v1",
        "gatewayclasses",
        "GatewayClass",
    ),
    ("apis/gateway.networking.k8s.io/v1", "gateways", "Gateway"),
    (
        "apis/gateway.networking.k8s.io/v1",
        "httproutes",
        "HTTPRoute",
    ),
    (
        "apis/gateway.networking.k8s.io/v1beta1",
        "referencegrants",
        "ReferenceGrant",
    ),
    (
        "apis/gateway.pomerium.io/v1alpha1",
        "policyfilters",
        "PolicyFilter",
    ),
];

/// Collections whose main-resource writes leave `.status` alone (they have a status subresource).
const HAS_STATUS: &[&str] = &[
    "ingresses",
    "services",
    "pomerium",
    "gatewayclasses",
    "gateways",
    "httproutes",
    "policyfilters",
];

fn kind_of(prefix: &str, plural: &str) -> String {
    KINDS
        .iter()
        .find(|(p, pl, _)| *p == prefix && *pl == plural)
        .map(|(_, _, k)| k.to_string())
        .unwrap_or_else(|| plural.to_string())
}

/// `apiVersion` + `kind` → (api prefix, plural).
fn coll_of(api_version: &str, kind: &str) -> (String, String) {
    let prefix = if api_version == "v1" {
        "api/v1".to_string()
    } else {
        format!("apis/{api_version}")
    };
    let plural = KINDS
        .iter()
        .find(|(p, _, k)| *p == prefix && *k == kind)
        .map(|(_, pl, _)| pl.to_string())
        .unwrap_or_else(|| format!("{}s", kind.to_lowercase()));
    (prefix, plural)
}

fn group_version(prefix: &str) -> &str {
    prefix.split_once('/').map(|(_, gv)| gv).unwrap_or(prefix)
}

/// `services` / `ingresses.networking.k8s.io`, as the real server names a resource in messages.
fn resource_label(prefix: &str, plural: &str) -> String {
    let gv = group_version(prefix);
    match gv.rsplit_once('/') {
        Some((group, _)) => format!("{plural}.{group}"),
        None => plural.to_string(),
    }
}

fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

fn reply(code: u16, body: &Value) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(code).unwrap())
        .content_type("application/json")
        .body(body.to_string())
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(dst: &Value, patch: &Value) -> Value {
    let Value::Object(p) = patch else {
        return patch.clone();
    };
    let mut out = match dst {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    for (k, v) in p {
        if v.is_null() {
            out.remove(k);
        } else {
            let merged = merge_patch(out.get(k).unwrap_or(&Value::Null), v);
            out.insert(k.clone(), merged);
        }
    }
    Value::Object(out)
}

fn unescape_pointer(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// RFC 6902 JSON patch: add, replace, remove, test. Errors are messages for a 422.
pub fn json_patch(doc: &Value, ops: &Value) -> Result<Value, String> {
    let mut doc = doc.clone();
    let ops = ops.as_array().ok_or("json patch must be an array")?;
    for op in ops {
        let kind = op["op"].as_str().unwrap_or_default();
        let path = op["path"].as_str().ok_or("json patch op without path")?;
        let tokens: Vec<String> = path.split('/').skip(1).map(unescape_pointer).collect();
        let (last, parents) = tokens.split_last().ok_or("empty json patch path")?;
        let mut cur = &mut doc;
        for t in parents {
            cur = match cur {
                Value::Object(m) => m.get_mut(t),
                Value::Array(a) => t.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
                _ => None,
            }
            .ok_or_else(|| format!("doc is missing path: {path}"))?;
        }
        match (kind, cur) {
            ("remove", Value::Object(m)) => {
                m.remove(last).ok_or_else(|| {
                    format!("unable to remove nonexistent key: {last}: missing value")
                })?;
            }
            ("remove", Value::Array(a)) => {
                let i: usize = last.parse().map_err(|_| format!("bad index {last}"))?;
                if i >= a.len() {
                    return Err(format!("remove index {i} out of bounds"));
                }
                a.remove(i);
            }
            ("add" | "replace", Value::Object(m)) => {
                if kind == "replace" && !m.contains_key(last) {
                    return Err(format!(
                        "replace operation does not apply: doc is missing key: {path}"
                    ));
                }
                m.insert(last.clone(), op["value"].clone());
            }
            ("add", Value::Array(a)) => {
                if last == "-" {
                    a.push(op["value"].clone());
                } else {
                    let i: usize = last.parse().map_err(|_| format!("bad index {last}"))?;
                    if i > a.len() {
                        return Err(format!("add index {i} out of bounds"));
                    }
                    a.insert(i, op["value"].clone());
                }
            }
            ("test", Value::Object(m)) => {
                if m.get(last) != Some(&op["value"]) {
                    return Err(format!("testing value {path} failed"));
                }
            }
            (other, _) => return Err(format!("unsupported json patch op {other:?} at {path}")),
        }
    }
    Ok(doc)
}

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub body: String,
}

/// An event as recorded (both `events.k8s.io/v1` and core `v1`), normalized for assertions.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    /// `events.k8s.io/v1` or `v1`.
    pub api_version: String,
    /// Namespace the Event object lives in.
    pub namespace: String,
    pub name: String,
    /// `Normal` / `Warning`.
    pub type_: String,
    pub reason: String,
    /// `note` (events.k8s.io) or `message` (core).
    pub message: String,
    pub regarding_kind: String,
    pub regarding_namespace: Option<String>,
    pub regarding_name: String,
    pub related_kind: Option<String>,
    pub related_name: Option<String>,
    pub reporting_controller: String,
    pub reporting_instance: String,
    /// `series.count` (events.k8s.io) or `count` (core); 1 for a first occurrence.
    pub count: i64,
}

impl RecordedEvent {
    fn from_value(v: &Value) -> RecordedEvent {
        let s = |p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_string);
        let core = v["apiVersion"] == "v1";
        let (reg, msg, ctl) = if core {
            ("/involvedObject", "/message", "/reportingComponent")
        } else {
            ("/regarding", "/note", "/reportingController")
        };
        let count = if core {
            v["count"].as_i64().unwrap_or(1)
        } else {
            v.pointer("/series/count")
                .and_then(Value::as_i64)
                .unwrap_or(1)
        };
        RecordedEvent {
            api_version: s("/apiVersion").unwrap_or_default(),
            namespace: s("/metadata/namespace").unwrap_or_default(),
            name: s("/metadata/name").unwrap_or_default(),
            type_: s("/type").unwrap_or_default(),
            reason: s("/reason").unwrap_or_default(),
            message: s(msg).unwrap_or_default(),
            regarding_kind: s(&format!("{reg}/kind")).unwrap_or_default(),
            regarding_namespace: s(&format!("{reg}/namespace")),
            regarding_name: s(&format!("{reg}/name")).unwrap_or_default(),
            related_kind: s("/related/kind"),
            related_name: s("/related/name"),
            reporting_controller: s(ctl)
                .or_else(|| s("/source/component"))
                .unwrap_or_default(),
            reporting_instance: s("/reportingInstance").unwrap_or_default(),
            count,
        }
    }
}

type CollKey = (String, String); // (api prefix, plural)
type ObjKey = (String, String); // (namespace or "", name)

/// Something the test injects into open watch streams.
#[derive(Debug, Clone)]
enum Control {
    /// `ERROR` with a 410 Gone Status, then end the stream: forces a re-list.
    Gone,
    /// End the stream cleanly: the client re-watches from its last resourceVersion.
    End,
    /// Abort the connection without a final chunk.
    Abort,
    /// A BOOKMARK at the current resourceVersion.
    Bookmark,
}

struct HistoryEntry {
    rv: u64,
    coll: CollKey,
    ns: String,
    event: Value,
}

#[derive(Default)]
struct State {
    rv: u64,
    store: BTreeMap<CollKey, BTreeMap<ObjKey, Value>>,
    history: Vec<HistoryEntry>,
    /// Watches starting from a resourceVersion below this get 410 Gone (like a compacted etcd).
    compacted_below: u64,
    controls: Vec<Control>,
    requests: Vec<Request>,
    open_watches: BTreeMap<CollKey, usize>,
    watch_starts: BTreeMap<CollKey, usize>,
    lists: BTreeMap<CollKey, usize>,
    /// resourceVersion at which each event was created: (api prefix, namespace, name).
    created: BTreeMap<(String, String, String), u64>,
    /// Collections answered with 404 (API not served).
    unserved: std::collections::BTreeSet<CollKey>,
}

struct Shared {
    state: Mutex<State>,
    /// Bumped on every change or control; watch streams wait on it.
    tick: tokio::sync::watch::Sender<u64>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn notify(&self) {
        self.tick.send_modify(|t| *t += 1);
    }
}

/// Handle to a running fake API server. Dropping it stops the server.
pub struct FakeKube {
    url: String,
    shared: Arc<Shared>,
    server: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        // Do not wait: open watch streams would hold a graceful stop for their whole timeout.
        let stop = self.server.stop(false);
        drop(stop);
        if let Some(t) = self.thread.take() {
            let _ = t; // detached: the system exits once the server has stopped
        }
    }
}

fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
        .split('.')
        .next()
        .map(|s| format!("{}Z", s.trim_end_matches('Z')))
        .unwrap_or_default()
}

impl FakeKube {
    /// Starts the server on `127.0.0.1:0` in its own thread.
    pub fn start() -> FakeKube {
        let (tick, _) = tokio::sync::watch::channel(0u64);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            tick,
        });
        let (addr, server, thread) =
            Self::serve(shared.clone(), "127.0.0.1:0".parse().unwrap()).expect("bind fake kube");
        FakeKube {
            url: format!("http://{addr}"),
            shared,
            server,
            thread: Some(thread),
        }
    }

    fn serve(
        shared: Arc<Shared>,
        addr: std::net::SocketAddr,
    ) -> std::io::Result<(
        std::net::SocketAddr,
        actix_web::dev::ServerHandle,
        std::thread::JoinHandle<()>,
    )> {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("fake-kube".into())
            .spawn(move || {
                let sys = actix_rt::System::new();
                sys.block_on(async move {
                    let data = web::Data::from(shared);
                    let server = HttpServer::new(move || {
                        App::new()
                            .app_data(data.clone())
                            .app_data(web::PayloadConfig::new(16 << 20))
                            .default_service(web::to(handle))
                    })
                    .workers(1)
                    .disable_signals()
                    .shutdown_timeout(0)
                    .bind(addr);
                    let server = match server {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    };
                    let addr = server.addrs()[0];
                    let server = server.run();
                    tx.send(Ok((addr, server.handle()))).unwrap();
                    let _ = server.await;
                });
            })
            .expect("spawn fake kube");
        let (addr, server) = rx.recv().expect("fake kube thread answered")?;
        Ok((addr, server, thread))
    }

    /// Stops the server as an API server restart would: the port refuses connections and open
    /// watch streams are cut. The stored objects stay; `restart` serves them again.
    pub fn stop(&mut self) {
        drop(self.server.stop(false));
        if let Some(t) = self.thread.take() {
            t.join().expect("fake kube thread");
        }
    }

    /// Serves again on the same address after `stop`.
    pub fn restart(&mut self) {
        let addr: std::net::SocketAddr = self.url.trim_start_matches("http://").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match Self::serve(self.shared.clone(), addr) {
                Ok((_, server, thread)) => {
                    self.server = server;
                    self.thread = Some(thread);
                    return;
                }
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("rebind fake kube on {addr}: {e}"),
            }
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// A `kube::Client` for this server (call inside a tokio runtime).
    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url.parse().expect("url"));
        kube::Client::try_from(config).expect("kube client")
    }

    /// Creates or updates (full replace, keeping status unless given) an object from its
    /// `apiVersion`/`kind`/`metadata`. Returns the stored object.
    pub fn apply(&self, obj: Value) -> Value {
        self.write_direct(obj, true)
    }

    /// Like `apply` but the change is not visible to watch streams (as if it happened while a
    /// watch was down and its history got compacted). Only a re-list sees it.
    pub fn apply_silently(&self, obj: Value) -> Value {
        self.write_direct(obj, false)
    }

    fn write_direct(&self, mut obj: Value, visible: bool) -> Value {
        let (coll, ns, name) = Self::key_of(&obj);
        let mut st = self.shared.lock();
        let cur = st
            .store
            .get(&coll)
            .and_then(|c| c.get(&(ns.clone(), name.clone())))
            .cloned();
        let typ = match &cur {
            Some(cur) => {
                let mut meta = cur["metadata"].as_object().cloned().unwrap_or_default();
                for (k, v) in obj["metadata"].as_object().cloned().unwrap_or_default() {
                    if !matches!(k.as_str(), "uid" | "creationTimestamp" | "resourceVersion") {
                        meta.insert(k, v);
                    }
                }
                if cur.get("spec") != obj.get("spec") {
                    let g = cur["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
                    meta.insert("generation".into(), json!(g));
                }
                obj["metadata"] = Value::Object(meta);
                if obj.get("status").is_none() {
                    if let Some(s) = cur.get("status") {
                        obj["status"] = s.clone();
                    }
                }
                "MODIFIED"
            }
            None => {
                Self::fill_new_meta(&mut obj, &ns, &name);
                "ADDED"
            }
        };
        Self::commit(&mut st, &coll, &ns, &name, obj, typ, visible);
        let out = st.store[&coll][&(ns, name)].clone();
        drop(st);
        self.shared.notify();
        out
    }

    /// Deletes an object; returns whether it existed.
    pub fn delete(&self, api_version: &str, kind: &str, ns: Option<&str>, name: &str) -> bool {
        self.delete_inner(api_version, kind, ns, name, true)
    }

    /// Deletes without telling watch streams (only a re-list notices).
    pub fn delete_silently(
        &self,
        api_version: &str,
        kind: &str,
        ns: Option<&str>,
        name: &str,
    ) -> bool {
        self.delete_inner(api_version, kind, ns, name, false)
    }

    fn delete_inner(
        &self,
        api_version: &str,
        kind: &str,
        ns: Option<&str>,
        name: &str,
        visible: bool,
    ) -> bool {
        let coll = coll_of(api_version, kind);
        let ns = ns.unwrap_or_default().to_string();
        let mut st = self.shared.lock();
        let Some(obj) = st
            .store
            .get(&coll)
            .and_then(|c| c.get(&(ns.clone(), name.to_string())))
            .cloned()
        else {
            return false;
        };
        Self::commit(&mut st, &coll, &ns, name, obj, "DELETED", visible);
        drop(st);
        self.shared.notify();
        true
    }

    pub fn get(
        &self,
        api_version: &str,
        kind: &str,
        ns: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let coll = coll_of(api_version, kind);
        let st = self.shared.lock();
        st.store
            .get(&coll)
            .and_then(|c| c.get(&(ns.unwrap_or_default().to_string(), name.to_string())))
            .cloned()
    }

    /// Every recorded event (`events.k8s.io/v1` and core `v1`), oldest first.
    pub fn events(&self) -> Vec<RecordedEvent> {
        let st = self.shared.lock();
        let mut all: Vec<(u64, RecordedEvent)> = Vec::new();
        for prefix in ["apis/events.k8s.io/v1", "api/v1"] {
            if let Some(c) = st.store.get(&(prefix.to_string(), "events".to_string())) {
                for ((ns, name), v) in c {
                    let created = st
                        .created
                        .get(&(prefix.to_string(), ns.clone(), name.clone()))
                        .copied()
                        .unwrap_or(0);
                    all.push((created, RecordedEvent::from_value(v)));
                }
            }
        }
        all.sort_by_key(|(rv, _)| *rv);
        all.into_iter().map(|(_, e)| e).collect()
    }

    /// Number of stored objects of a kind (cheap, for polling).
    pub fn count(&self, api_version: &str, kind: &str) -> usize {
        let coll = coll_of(api_version, kind);
        self.shared.lock().store.get(&coll).map_or(0, |c| c.len())
    }

    /// Number of requests seen so far (cheap, for polling).
    pub fn request_count(&self) -> usize {
        self.shared.lock().requests.len()
    }

    /// Every request seen so far.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.lock().requests.clone()
    }

    /// Sends `ERROR 410 Gone` to every open watch and ends it; later watches from an old
    /// resourceVersion get 410 too. Clients must re-list.
    pub fn expire_watches(&self) {
        let mut st = self.shared.lock();
        st.compacted_below = st.rv;
        st.controls.push(Control::Gone);
        drop(st);
        self.shared.notify();
    }

    /// Ends every open watch stream cleanly (final chunk). Clients re-watch from their last rv.
    pub fn end_watches(&self) {
        self.push_control(Control::End);
    }

    /// Aborts every open watch connection mid-stream.
    pub fn abort_watches(&self) {
        self.push_control(Control::Abort);
    }

    /// Sends a BOOKMARK at the current resourceVersion to every open watch.
    pub fn bookmark_watches(&self) {
        self.push_control(Control::Bookmark);
    }

    fn push_control(&self, c: Control) {
        self.shared.lock().controls.push(c);
        self.shared.notify();
    }

    /// Number of open watch streams on a collection (`apiVersion`, `kind`).
    pub fn open_watches(&self, api_version: &str, kind: &str) -> usize {
        let coll = coll_of(api_version, kind);
        self.shared
            .lock()
            .open_watches
            .get(&coll)
            .copied()
            .unwrap_or(0)
    }

    /// Watch requests started so far on a collection.
    pub fn watch_starts(&self, api_version: &str, kind: &str) -> usize {
        let coll = coll_of(api_version, kind);
        self.shared
            .lock()
            .watch_starts
            .get(&coll)
            .copied()
            .unwrap_or(0)
    }

    /// List requests served so far on a collection.
    pub fn lists(&self, api_version: &str, kind: &str) -> usize {
        let coll = coll_of(api_version, kind);
        self.shared.lock().lists.get(&coll).copied().unwrap_or(0)
    }

    /// Makes a collection answer 404 (as a cluster that does not serve that API).
    pub fn unserve(&self, api_version: &str, kind: &str) {
        let coll = coll_of(api_version, kind);
        self.shared.lock().unserved.insert(coll);
    }

    /// Current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().rv
    }

    fn key_of(obj: &Value) -> (CollKey, String, String) {
        let api_version = obj["apiVersion"].as_str().expect("object has apiVersion");
        let kind = obj["kind"].as_str().expect("object has kind");
        let coll = coll_of(api_version, kind);
        let cluster_scoped = matches!(
            coll.1.as_str(),
            "ingressclasses" | "pomerium" | "namespaces" | "gatewayclasses"
        );
        let ns = if cluster_scoped {
            String::new()
        } else {
            obj["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_string()
        };
        let name = obj["metadata"]["name"]
            .as_str()
            .expect("object has a name")
            .to_string();
        (coll, ns, name)
    }

    fn fill_new_meta(obj: &mut Value, ns: &str, name: &str) {
        let meta = obj["metadata"].as_object_mut().expect("metadata");
        meta.insert("name".into(), json!(name));
        meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
        meta.entry("generation").or_insert(json!(1));
        if !ns.is_empty() {
            meta.insert("namespace".into(), json!(ns));
        } else {
            meta.remove("namespace");
        }
    }

    /// Stores (or removes, for DELETED) an object at a new resourceVersion and records the event.
    fn commit(
        st: &mut State,
        coll: &CollKey,
        ns: &str,
        name: &str,
        mut obj: Value,
        typ: &str,
        visible: bool,
    ) {
        st.rv += 1;
        let rv = st.rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        if obj.get("apiVersion").is_none() {
            obj["apiVersion"] = json!(group_version(&coll.0));
        }
        if obj.get("kind").is_none() {
            obj["kind"] = json!(kind_of(&coll.0, &coll.1));
        }
        if coll.1 == "events" && typ == "ADDED" {
            // Creation order for `events()`.
            st.created
                .insert((coll.0.clone(), ns.to_string(), name.to_string()), rv);
        }
        let c = st.store.entry(coll.clone()).or_default();
        let key = (ns.to_string(), name.to_string());
        if typ == "DELETED" {
            c.remove(&key);
        } else {
            c.insert(key, obj.clone());
        }
        if visible {
            st.history.push(HistoryEntry {
                rv,
                coll: coll.clone(),
                ns: ns.to_string(),
                event: json!({"type": typ, "object": obj}),
            });
        } else {
            // A silent change: watches that could have missed it must re-list.
            st.compacted_below = st.compacted_below.max(rv);
        }
    }
}

struct Route {
    coll: CollKey,
    ns: Option<String>,
    name: Option<String>,
    status: bool,
}

fn parse_route(path: &str) -> Option<Route> {
    static RE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(r"^/(api/v1|apis/[^/]+/[^/]+)(?:/namespaces/([^/]+))?/([^/]+)(?:/([^/]+))?(?:/(status))?$")
            .unwrap()
    });
    let c = re.captures(path)?;
    Some(Route {
        coll: (c[1].to_string(), c[3].to_string()),
        ns: c.get(2).map(|m| m.as_str().to_string()),
        name: c.get(4).map(|m| m.as_str().to_string()),
        status: c.get(5).is_some(),
    })
}

fn query_map(q: &str) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(q.as_bytes())
        .into_owned()
        .collect()
}

/// `metadata.name=x,metadata.namespace=y` and `a=b,c!=d` selectors (enough for our watchers).
fn selector_matches(obj: &Value, field: Option<&String>, label: Option<&String>) -> bool {
    let get_field = |k: &str| -> Option<String> {
        let p = format!("/{}", k.replace('.', "/"));
        obj.pointer(&p).and_then(Value::as_str).map(str::to_string)
    };
    for (sel, is_label) in [(field, false), (label, true)] {
        let Some(sel) = sel else { continue };
        for term in sel.split(',').filter(|t| !t.is_empty()) {
            let (k, v, neg) = if let Some((k, v)) = term.split_once("!=") {
                (k, v, true)
            } else if let Some((k, v)) = term.split_once("==") {
                (k, v, false)
            } else if let Some((k, v)) = term.split_once('=') {
                (k, v, false)
            } else {
                // bare label key: exists
                let has = obj["metadata"]["labels"].get(term).is_some();
                if !has {
                    return false;
                }
                continue;
            };
            let actual = if is_label {
                obj["metadata"]["labels"][k].as_str().map(str::to_string)
            } else {
                get_field(k)
            };
            let eq = actual.as_deref() == Some(v);
            if eq == neg {
                return false;
            }
        }
    }
    true
}

async fn handle(req: HttpRequest, body: Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let method = req.method().as_str().to_string();
    let path = req.path().to_string();
    let query = req.query_string().to_string();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    shared.lock().requests.push(Request {
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
        content_type: content_type.clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let Some(route) = parse_route(&path) else {
        return reply(
            404,
            &status_body(404, "NotFound", &format!("no route {path}")),
        );
    };
    if shared.lock().unserved.contains(&route.coll) {
        return reply(
            404,
            &status_body(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
        );
    }
    let q = query_map(&query);
    let parsed: Value = if body.is_empty() {
        json!({})
    } else if content_type.contains("yaml") {
        // apply-patch+yaml: kube sends JSON, which is YAML.
        match serde_yaml::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return reply(400, &status_body(400, "BadRequest", &e.to_string())),
        }
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return reply(400, &status_body(400, "BadRequest", &e.to_string())),
        }
    };
    match method.as_str() {
        "GET"
            if route.name.is_none()
                && matches!(q.get("watch").map(String::as_str), Some("true" | "1")) =>
        {
            watch(shared.into_inner(), route, q)
        }
        "GET" => get(&shared, route, q),
        "POST" | "PUT" | "PATCH" | "DELETE" => {
            let r = write(&shared, &method, route, &content_type, parsed);
            shared.notify();
            r
        }
        _ => reply(
            405,
            &status_body(405, "MethodNotAllowed", "method not allowed"),
        ),
    }
}

fn not_found(route: &Route, name: &str) -> HttpResponse {
    let label = resource_label(&route.coll.0, &route.coll.1);
    reply(
        404,
        &status_body(404, "NotFound", &format!("{label} \"{name}\" not found")),
    )
}

fn get(shared: &Shared, route: Route, q: BTreeMap<String, String>) -> HttpResponse {
    let mut st = shared.lock();
    let coll = st.store.get(&route.coll).cloned().unwrap_or_default();
    if let Some(name) = &route.name {
        let key = (route.ns.clone().unwrap_or_default(), name.clone());
        return match coll.get(&key) {
            Some(o) => reply(200, o),
            None => {
                drop(st);
                not_found(&route, name)
            }
        };
    }
    *st.lists.entry(route.coll.clone()).or_default() += 1;
    let items: Vec<Value> = coll
        .iter()
        .filter(|((ns, _), _)| route.ns.as_ref().is_none_or(|want| want == ns))
        .map(|(_, o)| o)
        .filter(|o| selector_matches(o, q.get("fieldSelector"), q.get("labelSelector")))
        .cloned()
        .collect();
    let kind = kind_of(&route.coll.0, &route.coll.1);
    let body = json!({
        "apiVersion": group_version(&route.coll.0),
        "kind": format!("{kind}List"),
        "metadata": {"resourceVersion": st.rv.to_string()},
        "items": items,
    });
    reply(200, &body)
}

struct WatchStream {
    shared: Arc<Shared>,
    route: Route,
    field: Option<String>,
    label: Option<String>,
    since: u64,
    history_pos: usize,
    control_pos: usize,
    deadline: Instant,
    tick: tokio::sync::watch::Receiver<u64>,
    pending: std::collections::VecDeque<Bytes>,
    done: bool,
    abort: bool,
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        if let Some(n) = st.open_watches.get_mut(&self.route.coll) {
            *n = n.saturating_sub(1);
        }
    }
}

fn line(v: &Value) -> Bytes {
    let mut s = v.to_string();
    s.push('\n');
    Bytes::from(s)
}

impl WatchStream {
    /// Moves new history entries and controls into `pending`.
    fn poll_state(&mut self) {
        let st = self.shared.lock();
        for c in &st.controls[self.control_pos..] {
            match c {
                Control::Gone => {
                    self.pending.push_back(line(
                        &json!({"type": "ERROR", "object": status_body(410, "Expired",
                        &format!("too old resource version: {} ({})", self.since, st.rv))}),
                    ));
                    self.done = true;
                }
                Control::End => self.done = true,
                Control::Abort => {
                    self.done = true;
                    self.abort = true;
                }
                Control::Bookmark => {
                    let kind = kind_of(&self.route.coll.0, &self.route.coll.1);
                    self.pending
                        .push_back(line(&json!({"type": "BOOKMARK", "object": {
                        "apiVersion": group_version(&self.route.coll.0), "kind": kind,
                        "metadata": {"resourceVersion": st.rv.to_string()}}})));
                }
            }
        }
        self.control_pos = st.controls.len();
        if self.done {
            return;
        }
        for h in &st.history[self.history_pos..] {
            if h.rv > self.since
                && h.coll == self.route.coll
                && self.route.ns.as_ref().is_none_or(|ns| *ns == h.ns)
                && selector_matches(&h.event["object"], self.field.as_ref(), self.label.as_ref())
            {
                self.pending.push_back(line(&h.event));
            }
        }
        self.history_pos = st.history.len();
    }
}

fn watch(shared: Arc<Shared>, route: Route, q: BTreeMap<String, String>) -> HttpResponse {
    let since: u64 = q
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let timeout: u64 = q
        .get("timeoutSeconds")
        .and_then(|v| v.parse().ok())
        .unwrap_or(290);
    let mut st = shared.lock();
    *st.watch_starts.entry(route.coll.clone()).or_default() += 1;
    if since != 0 && since < st.compacted_below {
        // The history this watch needs is gone.
        let body = line(
            &json!({"type": "ERROR", "object": status_body(410, "Expired",
            &format!("too old resource version: {since} ({})", st.rv))}),
        );
        drop(st);
        return HttpResponse::Ok()
            .content_type("application/json")
            .streaming(futures::stream::iter([Ok::<_, actix_web::Error>(body)]));
    }
    *st.open_watches.entry(route.coll.clone()).or_default() += 1;
    let history_pos = st.history.partition_point(|h| h.rv <= since);
    let control_pos = st.controls.len();
    drop(st);
    let ws = WatchStream {
        tick: shared.tick.subscribe(),
        shared,
        field: q.get("fieldSelector").cloned(),
        label: q.get("labelSelector").cloned(),
        route,
        since,
        history_pos,
        control_pos,
        deadline: Instant::now() + Duration::from_secs(timeout),
        pending: Default::default(),
        done: false,
        abort: false,
    };
    let stream = futures::stream::unfold(ws, |mut ws| async move {
        loop {
            if let Some(b) = ws.pending.pop_front() {
                return Some((Ok(b), ws));
            }
            if ws.abort {
                ws.abort = false;
                return Some((
                    Err(actix_web::error::ErrorInternalServerError(
                        "aborted by test",
                    )),
                    ws,
                ));
            }
            if ws.done {
                return None;
            }
            ws.tick.mark_unchanged();
            ws.poll_state();
            if !ws.pending.is_empty() || ws.done {
                continue;
            }
            let left = ws.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let _ = tokio::time::timeout(left.min(Duration::from_secs(1)), ws.tick.changed()).await;
        }
    });
    HttpResponse::Ok()
        .content_type("application/json")
        .streaming(stream)
}

fn write(
    shared: &Shared,
    method: &str,
    route: Route,
    content_type: &str,
    body: Value,
) -> HttpResponse {
    let mut st = shared.lock();
    let ns = route.ns.clone().unwrap_or_default();
    if method == "POST" {
        let mut obj = body;
        if !obj["metadata"].is_object() {
            obj["metadata"] = json!({});
        }
        let name = match obj["metadata"]["name"].as_str().filter(|n| !n.is_empty()) {
            Some(n) => n.to_string(),
            None => {
                let g = obj["metadata"]["generateName"]
                    .as_str()
                    .unwrap_or("x-")
                    .to_string();
                format!("{g}{}", &uuid::Uuid::new_v4().simple().to_string()[..5])
            }
        };
        let exists = st
            .store
            .get(&route.coll)
            .is_some_and(|c| c.contains_key(&(ns.clone(), name.clone())));
        if exists {
            let label = resource_label(&route.coll.0, &route.coll.1);
            return reply(
                409,
                &status_body(
                    409,
                    "AlreadyExists",
                    &format!("{label} \"{name}\" already exists"),
                ),
            );
        }
        FakeKube::fill_new_meta(&mut obj, &ns, &name);
        FakeKube::commit(&mut st, &route.coll, &ns, &name, obj, "ADDED", true);
        return reply(201, &st.store[&route.coll][&(ns, name)]);
    }
    let Some(name) = route.name.clone() else {
        return reply(
            405,
            &status_body(405, "MethodNotAllowed", "collection writes other than POST"),
        );
    };
    let key = (ns.clone(), name.clone());
    let Some(cur) = st.store.get(&route.coll).and_then(|c| c.get(&key)).cloned() else {
        drop(st);
        return not_found(&route, &name);
    };
    let has_status = HAS_STATUS.contains(&route.coll.1.as_str());
    let new = match method {
        "DELETE" => {
            FakeKube::commit(
                &mut st,
                &route.coll,
                &ns,
                &name,
                cur.clone(),
                "DELETED",
                true,
            );
            let mut gone = cur;
            gone["metadata"]["resourceVersion"] = json!(st.rv.to_string());
            return reply(200, &gone);
        }
        "PUT" => {
            let want = body["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_default();
            if !want.is_empty() && Some(want) != cur["metadata"]["resourceVersion"].as_str() {
                let label = resource_label(&route.coll.0, &route.coll.1);
                return reply(409, &status_body(409, "Conflict", &format!(
                    "Operation cannot be fulfilled on {label} \"{name}\": the object has been modified; please apply your changes to the latest version and try again")));
            }
            let mut obj = if route.status {
                let mut o = cur.clone();
                o["status"] = body["status"].clone();
                o
            } else {
                let mut o = body.clone();
                if has_status {
                    match cur.get("status") {
                        Some(s) => o["status"] = s.clone(),
                        None => {
                            if let Some(m) = o.as_object_mut() {
                                m.remove("status");
                            }
                        }
                    }
                }
                o
            };
            let mut meta = cur["metadata"].as_object().cloned().unwrap_or_default();
            if !route.status {
                for (k, v) in body["metadata"].as_object().cloned().unwrap_or_default() {
                    if !matches!(k.as_str(), "uid" | "creationTimestamp" | "generation") {
                        meta.insert(k, v);
                    }
                }
            }
            obj["metadata"] = Value::Object(meta);
            obj
        }
        _ => {
            // PATCH
            let patched = if content_type.starts_with("application/json-patch+json") {
                match json_patch(&cur, &body) {
                    Ok(v) => v,
                    Err(e) => return reply(422, &status_body(422, "Invalid", &e)),
                }
            } else {
                let mut b = body;
                if let Some(m) = b["metadata"].as_object_mut() {
                    m.remove("resourceVersion");
                }
                merge_patch(&cur, &b)
            };
            let mut obj = cur.clone();
            if route.status {
                match patched.get("status") {
                    Some(s) => obj["status"] = s.clone(),
                    None => {
                        obj.as_object_mut().unwrap().remove("status");
                    }
                }
            } else {
                obj = patched;
                if has_status {
                    match cur.get("status") {
                        Some(s) => obj["status"] = s.clone(),
                        None => {
                            obj.as_object_mut().unwrap().remove("status");
                        }
                    }
                }
                for k in ["uid", "creationTimestamp", "name", "namespace"] {
                    if let Some(v) = cur["metadata"].get(k) {
                        obj["metadata"][k] = v.clone();
                    }
                }
            }
            obj
        }
    };
    let mut new = new;
    if !route.status && cur.get("spec") != new.get("spec") {
        let g = cur["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
        new["metadata"]["generation"] = json!(g);
    }
    FakeKube::commit(&mut st, &route.coll, &ns, &name, new, "MODIFIED", true);
    reply(200, &st.store[&route.coll][&key])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_and_json_patch() {
        let doc = json!({"status": {"ingress": {"a/b": {"reconciled": true}, "c/d": {}}}});
        let p = json_patch(
            &doc,
            &json!([{"op": "remove", "path": "/status/ingress/a~1b"}]),
        )
        .unwrap();
        assert_eq!(p, json!({"status": {"ingress": {"c/d": {}}}}));
        assert!(json_patch(
            &doc,
            &json!([{"op": "remove", "path": "/status/ingress/x"}])
        )
        .is_err());
        let m = merge_patch(
            &doc,
            &json!({"status": {"ingress": {"c/d": null, "e/f": {"x": 1}}}}),
        );
        assert_eq!(
            m,
            json!({"status": {"ingress": {"a/b": {"reconciled": true}, "e/f": {"x": 1}}}})
        );
    }
}
