//! Wiring the controller's output into the proxy: the latest global settings (from the
//! `Pomerium` object) and the Ingress routes are combined into one checked `Config`, turned
//! into a proxy `Snapshot` (with the sign-in authorizer) and swapped into the `ProxyState`;
//! Ingress TLS certificates go to the certificate actor (which feeds the TLS resolver),
//! together with the CRD's certificates.
//!
//! Like upstream, nothing is served before the `Pomerium` object has given valid settings
//! (every request is a 404 until then).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use actix::Addr;

use crate::actors::certs::{CertActor, PemPair, SetProvided, SetSources};
use crate::actors::k8s_reconciler::{Publisher, SharedRoutes};
use crate::config::route::{route_label, validate_route, RouteDefaults};
use crate::config::{self, Config, RouteConfig, Settings};
use crate::http::auth::authorizer::AuthRuntime;
use crate::http::routes::{RouteEntry, RouteTable, TlsConfigs};
use crate::http::server::{extra_roots, ProxyState, Snapshot};

/// Settings from the `Pomerium` object as the proxy runs them: without a `storage` section
/// sessions live in memory (upstream: in-memory databroker plus a warning).
pub fn with_controller_defaults(mut settings: Settings) -> Settings {
    if settings.databroker_storage_type.is_none() {
        settings.databroker_storage_type = Some("memory".into());
    }
    settings
}

/// Checks settings the way the proxy will use them (config and sign-in settings).
pub fn check_settings(settings: &Settings) -> Result<(), String> {
    let cfg = config::build(with_controller_defaults(settings.clone()))
        .map_err(|e| format!("settings: {e}"))?;
    crate::http::auth::settings::AuthSettings::from_settings(&cfg.settings)
        .map(|_| ())
        .map_err(|e| format!("settings: {e}"))
}

/// Plain logic: the latest settings and routes, and the config they make.
#[derive(Debug, Default)]
pub struct ConfigAssembler {
    settings: Option<Settings>,
    routes: SharedRoutes,
}

impl ConfigAssembler {
    /// Global settings from the `Pomerium` object. Without a `storage` section upstream keeps
    /// sessions in memory; so do we.
    pub fn set_settings(&mut self, settings: Settings) {
        self.settings = Some(with_controller_defaults(settings));
    }

    pub fn set_routes(&mut self, routes: SharedRoutes) {
        self.routes = routes;
    }

    /// The global settings (routes not included), once they have arrived.
    pub fn settings(&self) -> Option<&Settings> {
        self.settings.as_ref()
    }

    /// The Ingress routes, shared with the reconciler.
    pub fn routes(&self) -> &SharedRoutes {
        &self.routes
    }
}

/// Routes already prepared for the proxy (checked, load balancer, upstream TLS), by the
/// address of the shared `RouteConfig` they came from: the reconciler hands unchanged routes
/// over as the same `Arc`, so one Ingress update prepares only its own routes.
#[derive(Default)]
struct EntryCache {
    /// The global settings the entries were prepared with; other settings drop the cache.
    settings: Option<Settings>,
    entries: HashMap<usize, (Arc<RouteConfig>, Arc<RouteEntry>)>,
}

/// Feeds a running proxy. Cheap to clone into the publisher callbacks.
#[derive(Clone)]
pub struct ProxyFeed {
    assembler: Arc<Mutex<ConfigAssembler>>,
    entries: Arc<Mutex<EntryCache>>,
    state: Arc<ProxyState>,
    certs: Addr<CertActor>,
    /// Sessions and policy compilation; started with the first settings.
    auth: Arc<Mutex<Option<Arc<AuthRuntime>>>>,
    data_dir: PathBuf,
    /// HTTP-01 solver routes, served on the plain HTTP listener.
    acme: Option<Arc<ProxyState>>,
}

impl ProxyFeed {
    /// `data_dir` holds a file session store configured without a path.
    pub fn new(state: Arc<ProxyState>, certs: Addr<CertActor>, data_dir: PathBuf) -> Self {
        ProxyFeed {
            assembler: Arc::default(),
            entries: Arc::default(),
            state,
            certs,
            auth: Arc::default(),
            data_dir,
            acme: None,
        }
    }

    /// Also publish cert-manager HTTP-01 solver routes into `acme` (the plain HTTP listener's
    /// table), so challenges are answered on port 80 instead of being redirected.
    pub fn with_acme(mut self, acme: Arc<ProxyState>) -> Self {
        self.acme = Some(acme);
        self
    }

    fn publish_http01(&self, routes: &[RouteConfig]) {
        let Some(acme) = &self.acme else { return };
        let settings = Settings {
            routes: routes.to_vec(),
            ..Settings::default()
        };
        let built = config::build(settings)
            .map_err(|e| e.to_string())
            .and_then(|cfg| {
                Snapshot::build(&cfg, Arc::new(crate::http::authorize::PublicOnlyAuthorizer))
                    .map_err(|e| e.to_string())
            });
        match built {
            Ok(snapshot) => {
                acme.publish(snapshot);
                tracing::info!(routes = routes.len(), "HTTP-01 solver routes applied");
            }
            Err(e) => tracing::error!(error = %e, "HTTP-01 solver routes rejected"),
        }
    }

    fn authorizer<'r>(
        &self,
        cfg: &Config,
        routes: impl Iterator<Item = &'r crate::config::Route>,
    ) -> Result<Arc<dyn crate::http::authorize::Authorizer>, String> {
        let mut auth = self.auth.lock().unwrap_or_else(|e| e.into_inner());
        if auth.is_none() {
            let rt = AuthRuntime::start(cfg, &self.data_dir).map_err(|e| e.to_string())?;
            *auth = Some(Arc::new(rt));
        }
        let rt = auth.as_ref().expect("started");
        rt.authorizer_for_routes(cfg, routes)
            .map_err(|e| e.to_string())
    }

    /// Prepares the routes that changed, builds and publishes the proxy snapshot; returns the
    /// global settings' config (without routes), or `None` when the update was rejected (the
    /// previous snapshot keeps serving).
    fn rebuild(&self, assembler: &ConfigAssembler) -> Option<Config> {
        let reject = |e: &dyn std::fmt::Display| -> Option<Config> {
            tracing::error!(error = %e, "proxy configuration rejected; keeping the previous one");
            None
        };
        let settings = assembler.settings()?.clone();
        // Global settings checked alone; the Ingress routes are prepared below.
        let base = match config::build_with(settings.clone(), false) {
            Ok(c) => c,
            Err(e) => return reject(&e),
        };
        let roots = match extra_roots(&base) {
            Ok(r) => r,
            Err(e) => return reject(&e),
        };
        let defaults = RouteDefaults {
            timeout: base.proxy.default_upstream_timeout,
        };
        let mut cache = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if cache.settings.as_ref() != Some(&settings) {
            cache.entries.clear();
            cache.settings = Some(settings);
        }
        let routes = assembler.routes();
        let mut next = HashMap::with_capacity(routes.len());
        let mut entries = Vec::with_capacity(base.routes.len() + routes.len());
        let mut tls_configs = TlsConfigs::default();
        let mut errors = Vec::new();
        // Routes from the settings themselves (none from a `Pomerium` object today) first.
        let mut prepare = |route: crate::config::Route| {
            RouteEntry::new(route, &roots, &mut tls_configs).map(Arc::new)
        };
        for route in base.routes.iter().cloned() {
            match prepare(route) {
                Ok(e) => entries.push(e),
                Err(e) => errors.push(e.to_string()),
            }
        }
        for (i, rc) in routes.iter().enumerate() {
            let key = Arc::as_ptr(rc) as usize;
            let entry = match cache.entries.remove(&key) {
                Some((_, entry)) => entry,
                None => {
                    let label = route_label(i, rc);
                    let prepared = validate_route(&label, format!("route-{i}"), rc, &defaults)
                        .map_err(|e| e.to_string())
                        .and_then(|route| prepare(route).map_err(|e| e.to_string()));
                    match prepared {
                        Ok(e) => e,
                        Err(e) => {
                            errors.push(e);
                            continue;
                        }
                    }
                }
            };
            next.insert(key, (rc.clone(), entry.clone()));
            entries.push(entry);
        }
        if !errors.is_empty() {
            cache.entries.extend(next);
            return reject(&errors.join("; "));
        }
        cache.entries = next;
        drop(cache);
        let authorizer = match self.authorizer(&base, entries.iter().map(|e| &e.route)) {
            Ok(a) => a,
            Err(e) => return reject(&e),
        };
        let count = entries.len();
        let snapshot = Snapshot::from_table(&base, RouteTable::from_entries(entries), authorizer);
        self.state.publish(snapshot);
        self.state.metrics.set_ready(true);
        tracing::info!(routes = count, "proxy configuration applied");
        Some(base)
    }

    /// A `Publisher` that drives this proxy.
    pub fn publisher(&self) -> Publisher {
        let (r, s, c, h) = (self.clone(), self.clone(), self.clone(), self.clone());
        Publisher::default()
            .on_http01_routes(move |routes| h.publish_http01(&routes))
            .on_routes(move |routes| {
                let mut a = r.assembler.lock().unwrap_or_else(|e| e.into_inner());
                a.set_routes(routes);
                r.rebuild(&a);
            })
            .on_settings(move |settings| {
                let mut a = s.assembler.lock().unwrap_or_else(|e| e.into_inner());
                a.set_settings((*settings).clone());
                if let Some(cfg) = s.rebuild(&a) {
                    s.certs.do_send(SetSources(cfg.proxy.certificates.clone()));
                }
            })
            .on_certificates(move |certs| {
                let pairs = certs
                    .iter()
                    .map(|t| PemPair {
                        name: format!("{}/{}", t.namespace, t.name),
                        cert_pem: t.cert_pem.clone(),
                        key_pem: t.key_pem.clone(),
                    })
                    .collect();
                c.certs.do_send(SetProvided(pairs));
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assembler_keeps_settings_with_controller_defaults_and_shared_routes() {
        let mut a = ConfigAssembler::default();
        let route: RouteConfig =
            serde_yaml::from_str("from: https://a.example.com\nto: http://10.0.0.1:80\n").unwrap();
        let routes = Arc::new(vec![Arc::new(route)]);
        a.set_routes(routes.clone());
        assert!(a.settings().is_none(), "nothing before the settings");
        let settings: Settings = serde_yaml::from_str("cookie_name: _rampart\n").unwrap();
        a.set_settings(settings);
        let s = a.settings().unwrap();
        assert_eq!(s.cookie_name.as_deref(), Some("_rampart"));
        assert_eq!(s.databroker_storage_type.as_deref(), Some("memory"));
        assert!(
            Arc::ptr_eq(a.routes(), &routes),
            "routes are shared, not copied"
        );
    }
}
