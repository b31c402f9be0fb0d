//! Wiring the controller's output into the proxy: the latest global settings (from the
//! `Pomerium` object) and the Ingress routes are combined into one checked `Config`, turned
//! into a proxy `Snapshot` (with the sign-in authorizer) and swapped into the `ProxyState`;
//! Ingress TLS certificates go to the certificate actor (which feeds the TLS resolver),
//! together with the CRD's certificates.
//!
//! Like upstream, nothing is served before the `Pomerium` object has given valid settings
//! (every request is a 404 until then).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use actix::Addr;

use crate::actors::certs::{CertActor, PemPair, SetProvided, SetSources};
use crate::actors::k8s_reconciler::{Publisher, SharedRoutes};
use crate::config::{self, Config, ConfigError, RouteConfig, Settings};
use crate::http::auth::authorizer::AuthRuntime;
use crate::http::server::{ProxyState, Snapshot};

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

    /// The settings with the Ingress routes appended to any routes they carry; `None` until
    /// settings have arrived.
    pub fn build(&self) -> Option<Result<Config, ConfigError>> {
        let mut s = self.settings.clone()?;
        s.routes
            .extend(self.routes.iter().map(|r| RouteConfig::clone(r)));
        // Policies were checked per Ingress by the conversion, and the authorizer compiles
        // them incrementally: don't compile every route again on each publish.
        Some(config::build_with(s, false))
    }
}

/// Feeds a running proxy. Cheap to clone into the publisher callbacks.
#[derive(Clone)]
pub struct ProxyFeed {
    assembler: Arc<Mutex<ConfigAssembler>>,
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

    fn authorizer(
        &self,
        cfg: &Config,
    ) -> Result<Arc<dyn crate::http::authorize::Authorizer>, String> {
        let mut auth = self.auth.lock().unwrap_or_else(|e| e.into_inner());
        if auth.is_none() {
            let rt = AuthRuntime::start(cfg, &self.data_dir).map_err(|e| e.to_string())?;
            *auth = Some(Arc::new(rt));
        }
        let rt = auth.as_ref().expect("started");
        rt.authorizer_for(cfg).map_err(|e| e.to_string())
    }

    /// Builds and publishes the proxy snapshot; returns the applied config (its routes moved
    /// into the snapshot, so `routes` is empty) or `None` when it was rejected.
    fn rebuild(&self, assembler: &ConfigAssembler) -> Option<Config> {
        let mut cfg = match assembler.build()? {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "proxy configuration rejected; keeping the previous one");
                return None;
            }
        };
        let authorizer = match self.authorizer(&cfg) {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "proxy configuration rejected; keeping the previous one");
                return None;
            }
        };
        let routes = cfg.routes.len();
        match Snapshot::build_taking_routes(&mut cfg, authorizer) {
            Ok(snapshot) => {
                self.state.publish(snapshot);
                self.state.metrics.set_ready(true);
                tracing::info!(routes, "proxy configuration applied");
                Some(cfg)
            }
            Err(e) => {
                tracing::error!(error = %e, "proxy configuration rejected; keeping the previous one");
                None
            }
        }
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
    fn settings_and_routes_make_one_config() {
        let mut a = ConfigAssembler::default();
        let route: RouteConfig =
            serde_yaml::from_str("from: https://a.example.com\nto: http://10.0.0.1:80\n").unwrap();
        a.set_routes(Arc::new(vec![Arc::new(route)]));
        assert!(a.build().is_none(), "nothing before the settings");
        let settings: Settings = serde_yaml::from_str("cookie_name: _rampart\n").unwrap();
        a.set_settings(settings);
        let cfg = a.build().unwrap().unwrap();
        assert_eq!(cfg.settings.cookie_name.as_deref(), Some("_rampart"));
        assert_eq!(
            cfg.settings.databroker_storage_type.as_deref(),
            Some("memory")
        );
        assert_eq!(cfg.routes.len(), 1);
    }
}
