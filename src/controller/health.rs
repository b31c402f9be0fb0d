//! Health probes of `rampart controller` (`/healthz`, `/readyz`, `/startupz`), Pomerium style:
//! named checks, each `UNKNOWN` until it reports, then `RUNNING` or carrying an error.
//! Handlers read an `ArcSwap` snapshot; writers swap a new one.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::{http::Method, web, App, HttpRequest, HttpResponse, HttpServer};
use arc_swap::ArcSwap;
use serde_json::{json, Value};

/// The `Pomerium` object and its bootstrap Secret were read and are valid.
pub const CHECK_BOOTSTRAP: &str = "controller.settings.reconciler.bootstrap";
/// The first full list of every watched kind was applied.
pub const CHECK_INGRESS_SYNC: &str = "controller.ingress.reconciler.sync";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckState {
    Unknown,
    Running,
    Error(String),
}

/// The probe state: every expected check and where it stands.
#[derive(Debug, Clone)]
pub struct Health {
    checks: Arc<ArcSwap<BTreeMap<String, CheckState>>>,
}

impl Default for Health {
    fn default() -> Self {
        Health::new(&[CHECK_BOOTSTRAP, CHECK_INGRESS_SYNC])
    }
}

impl Health {
    pub fn new(expected: &[&str]) -> Health {
        let map = expected
            .iter()
            .map(|c| (c.to_string(), CheckState::Unknown))
            .collect();
        Health {
            checks: Arc::new(ArcSwap::from_pointee(map)),
        }
    }

    pub fn set(&self, check: &str, state: CheckState) {
        self.checks.rcu(|cur| {
            let mut next = (**cur).clone();
            next.insert(check.to_string(), state.clone());
            next
        });
    }

    pub fn get(&self, check: &str) -> CheckState {
        self.checks
            .load()
            .get(check)
            .cloned()
            .unwrap_or(CheckState::Unknown)
    }

    /// Every check has left `UNKNOWN`.
    pub fn started(&self) -> bool {
        self.checks
            .load()
            .values()
            .all(|s| *s != CheckState::Unknown)
    }

    /// Every check is running without an error.
    pub fn ready(&self) -> bool {
        self.checks
            .load()
            .values()
            .all(|s| *s == CheckState::Running)
    }

    /// Every check has reported and none carries an error.
    pub fn healthy(&self) -> bool {
        self.ready()
    }

    /// `{"<check>":{"status":..,"error":..}}`
    pub fn body(&self) -> Value {
        let mut out = serde_json::Map::new();
        for (name, state) in self.checks.load().iter() {
            let v = match state {
                CheckState::Unknown => json!({"status": "UNKNOWN"}),
                CheckState::Running => json!({"status": "RUNNING"}),
                CheckState::Error(e) => json!({"status": "RUNNING", "error": e}),
            };
            out.insert(name.clone(), v);
        }
        Value::Object(out)
    }
}

async fn probe(req: HttpRequest, health: web::Data<Health>) -> HttpResponse {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return HttpResponse::MethodNotAllowed().finish();
    }
    let ok = match req.path() {
        "/startupz" => health.started(),
        "/readyz" => health.ready(),
        "/healthz" => health.healthy(),
        "/status" => true,
        _ => return HttpResponse::NotFound().finish(),
    };
    let mut resp = if ok {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    resp.content_type("application/json")
        .body(health.body().to_string())
}

/// Binds the probe listener; returns the bound address and the server future (spawn it).
pub fn serve(
    addr: SocketAddr,
    health: Health,
) -> std::io::Result<(SocketAddr, actix_web::dev::Server)> {
    let data = web::Data::new(health);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::to(probe))
    })
    .workers(1)
    .disable_signals()
    .bind(addr)?;
    let bound = server.addrs()[0];
    Ok((bound, server.run()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states() {
        let h = Health::default();
        assert!(!h.started() && !h.ready());
        h.set(
            CHECK_BOOTSTRAP,
            CheckState::Error("secrets: bootstrap secret: get a/b: Secret \"b\" not found".into()),
        );
        assert!(!h.started());
        h.set(CHECK_INGRESS_SYNC, CheckState::Running);
        assert!(h.started() && !h.ready() && !h.healthy());
        assert_eq!(
            h.body()[CHECK_BOOTSTRAP]["error"],
            "secrets: bootstrap secret: get a/b: Secret \"b\" not found"
        );
        h.set(CHECK_BOOTSTRAP, CheckState::Running);
        assert!(h.ready() && h.healthy());
    }
}
