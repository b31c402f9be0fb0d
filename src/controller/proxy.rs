//! Wiring the controller's output into the proxy: the latest global settings (from the
//! `Pomerium` object) and the Ingress routes are combined into one checked `Config`, turned
//! into a proxy `Snapshot` and swapped into the `ProxyState`; Ingress TLS certificates go to
//! the certificate actor (which feeds the TLS resolver), together with the CRD's certificates.

use std::sync::{Arc, Mutex};

use actix::Addr;

use crate::actors::certs::{CertActor, PemPair, SetProvided, SetSources};
use crate::actors::k8s_reconciler::Publisher;
use crate::config::{self, Config, ConfigError, RouteConfig, Settings};
use crate::http::server::{ProxyState, Snapshot};

/// Plain logic: the latest settings and routes, and the config they make.
#[derive(Debug, Default)]
pub struct ConfigAssembler {
    settings: Settings,
    routes: Arc<Vec<RouteConfig>>,
}

impl ConfigAssembler {
    pub fn set_settings(&mut self, settings: Settings) {
        self.settings = settings;
    }

    pub fn set_routes(&mut self, routes: Arc<Vec<RouteConfig>>) {
        self.routes = routes;
    }

    /// The settings with the Ingress routes appended to any routes they carry.
    pub fn build(&self) -> Result<Config, ConfigError> {
        let mut s = self.settings.clone();
        s.routes.extend(self.routes.iter().cloned());
        config::build(s)
    }
}

/// Feeds a running proxy. Cheap to clone into the publisher callbacks.
#[derive(Clone)]
pub struct ProxyFeed {
    assembler: Arc<Mutex<ConfigAssembler>>,
    state: Arc<ProxyState>,
    certs: Addr<CertActor>,
}

impl ProxyFeed {
    pub fn new(state: Arc<ProxyState>, certs: Addr<CertActor>) -> Self {
        ProxyFeed {
            assembler: Arc::default(),
            state,
            certs,
        }
    }

    fn rebuild(&self, assembler: &ConfigAssembler) -> Option<Config> {
        let cfg = match assembler.build() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "proxy configuration rejected; keeping the previous one");
                return None;
            }
        };
        match Snapshot::build(&cfg, crate::serve::authorizer_for(&cfg)) {
            Ok(snapshot) => {
                self.state.publish(snapshot);
                self.state.metrics.set_ready(true);
                tracing::info!(routes = cfg.routes.len(), "proxy configuration applied");
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
        let (r, s, c) = (self.clone(), self.clone(), self.clone());
        Publisher::default()
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
        a.set_routes(Arc::new(vec![route]));
        let cfg = a.build().unwrap();
        assert_eq!(cfg.routes.len(), 1);
        let settings: Settings = serde_yaml::from_str("cookie_name: _rampart\n").unwrap();
        a.set_settings(settings);
        let cfg = a.build().unwrap();
        assert_eq!(cfg.settings.cookie_name.as_deref(), Some("_rampart"));
        assert_eq!(cfg.routes.len(), 1);
    }
}
