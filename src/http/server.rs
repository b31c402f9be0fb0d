//! The servers: the proxy listener (HTTPS with SNI certificates, or plain HTTP when
//! `insecure_server`), the HTTP→HTTPS redirect listener, and the state they share: the
//! current `Snapshot` (routes, authorizer, global response headers) behind `ArcSwap`.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use arc_swap::ArcSwap;
use thiserror::Error;

use super::authorize::{Authorizer, PublicOnlyAuthorizer};
use super::metrics::Metrics;
use super::proxy;
use super::routes::{RouteTable, RouteTableError};
use crate::config::route::pem_certificates;
use crate::config::source::PemSource;
use crate::config::Config;

#[derive(Debug, Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Routes(#[from] RouteTableError),
    #[error("`certificate_authority`: {0}")]
    CertificateAuthority(String),
}

/// Everything a request needs from the configuration, swapped as a whole on reload.
pub struct Snapshot {
    pub routes: RouteTable,
    pub authorizer: Arc<dyn Authorizer>,
    /// Global `set_response_headers` (defaults unless configured).
    pub response_headers: Vec<(HeaderName, HeaderValue)>,
    /// Session cookie stripped from upstream requests.
    pub cookie_name: String,
}

impl Snapshot {
    /// No routes: every request is a 404.
    pub fn empty() -> Snapshot {
        Snapshot {
            routes: RouteTable::default(),
            authorizer: Arc::new(PublicOnlyAuthorizer),
            response_headers: Vec::new(),
            cookie_name: "_pomerium".into(),
        }
    }

    pub fn build(cfg: &Config, authorizer: Arc<dyn Authorizer>) -> Result<Snapshot, SnapshotError> {
        let routes = RouteTable::new(cfg.routes.clone(), &extra_roots(cfg)?)?;
        Ok(Snapshot::from_table(cfg, routes, authorizer))
    }

    /// A snapshot around an already built route table (global settings from `cfg`).
    pub fn from_table(
        cfg: &Config,
        routes: RouteTable,
        authorizer: Arc<dyn Authorizer>,
    ) -> Snapshot {
        Snapshot {
            routes,
            authorizer,
            response_headers: global_response_headers(cfg),
            cookie_name: cfg
                .settings
                .cookie_name
                .clone()
                .unwrap_or_else(|| "_pomerium".into()),
        }
    }
}

/// The global `certificate_authority` certificates (DER), added to upstream trust roots.
pub fn extra_roots(cfg: &Config) -> Result<Vec<Vec<u8>>, SnapshotError> {
    let s = &cfg.settings;
    let ca = s
        .certificate_authority
        .as_deref()
        .map(PemSource::from_value)
        .or_else(|| {
            s.certificate_authority_file
                .as_deref()
                .map(|f| PemSource::File(f.into()))
        });
    let extra_roots = match ca {
        Some(src) => {
            let pem = src.read().map_err(|e| {
                SnapshotError::CertificateAuthority(format!("{}: {e}", src.describe()))
            })?;
            let certs = pem_certificates(&pem);
            if certs.is_empty() {
                return Err(SnapshotError::CertificateAuthority(format!(
                    "no PEM certificate in {}",
                    src.describe()
                )));
            }
            certs
        }
        None => Vec::new(),
    };
    Ok(extra_roots)
}

/// The global response headers; Pomerium drops the default HSTS header when no certificate is
/// configured (an explicit `set_response_headers` is used as written).
fn global_response_headers(cfg: &Config) -> Vec<(HeaderName, HeaderValue)> {
    let mut headers = cfg.proxy.set_response_headers.clone();
    if cfg.settings.set_response_headers.is_none() && cfg.proxy.certificates.is_empty() {
        headers.retain(|(name, _)| name != header::STRICT_TRANSPORT_SECURITY);
    }
    headers
}

/// Shared by all proxy workers.
pub struct ProxyState {
    pub snapshot: ArcSwap<Snapshot>,
    pub metrics: Arc<Metrics>,
    secure: AtomicBool,
}

impl ProxyState {
    pub fn new(metrics: Arc<Metrics>, secure: bool) -> Arc<ProxyState> {
        Arc::new(ProxyState {
            snapshot: ArcSwap::from_pointee(Snapshot::empty()),
            metrics,
            secure: AtomicBool::new(secure),
        })
    }

    /// Makes `snapshot` the one new requests see.
    pub fn publish(&self, snapshot: Snapshot) {
        self.snapshot.store(Arc::new(snapshot));
    }

    /// Whether the downstream listener is HTTPS (`X-Forwarded-Proto`).
    pub fn is_secure(&self) -> bool {
        self.secure.load(Ordering::Relaxed)
    }

    pub fn set_secure(&self, secure: bool) {
        self.secure.store(secure, Ordering::Relaxed);
    }
}

/// Listener options.
#[derive(Debug, Clone)]
pub struct ListenOptions {
    pub workers: Option<usize>,
    /// Seconds to drain in-flight requests on stop.
    pub shutdown_grace: u64,
    /// Idle keep-alive connections are closed after this (`timeout_idle`, default 5m).
    pub keep_alive: Duration,
    /// Time allowed to receive request headers (`timeout_read`, default 30s).
    pub request_timeout: Duration,
}

impl ListenOptions {
    /// Options from the config's global timeouts (already validated by `config::build`).
    pub fn from_config(cfg: &Config, shutdown_grace: u64) -> ListenOptions {
        let parse = |v: &Option<String>, default: u64| {
            v.as_deref()
                .and_then(|v| crate::config::duration::parse_go_duration(v).ok())
                .filter(|d| !d.is_zero())
                .unwrap_or(Duration::from_secs(default))
        };
        ListenOptions {
            workers: None,
            shutdown_grace,
            keep_alive: parse(&cfg.settings.timeout_idle, 300),
            request_timeout: parse(&cfg.settings.timeout_read, 30),
        }
    }
}

/// The proxy listener. `tls` is `None` for `insecure_server`. Signals are handled by the caller
/// (stop the returned server's handle).
pub fn proxy_server(
    state: Arc<ProxyState>,
    addr: SocketAddr,
    tls: Option<rustls::ServerConfig>,
    opts: &ListenOptions,
) -> std::io::Result<Server> {
    proxy_server_on(state, bind_listener(addr)?, tls, opts)
}

/// The proxy listener on an already bound socket.
pub fn proxy_server_on(
    state: Arc<ProxyState>,
    socket: TcpListener,
    tls: Option<rustls::ServerConfig>,
    opts: &ListenOptions,
) -> std::io::Result<Server> {
    let data = web::Data::new(state);
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::to(proxy::handle))
    })
    .on_connect(no_delay)
    .disable_signals()
    .shutdown_timeout(opts.shutdown_grace)
    .keep_alive(opts.keep_alive)
    .client_request_timeout(opts.request_timeout);
    if let Some(w) = opts.workers {
        server = server.workers(w);
    }
    let server = match tls {
        Some(cfg) => server.listen_rustls_0_23(socket, cfg)?,
        None => server.listen(socket)?,
    };
    Ok(server.run())
}

/// A listening TCP socket on `addr`, bound as actix binds (`SO_REUSEADDR`, backlog 2048).
pub fn bind_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(2048)?;
    Ok(socket.into())
}

/// Client connections send each response at once (no Nagle delay), as nginx does with
/// `tcp_nodelay on`.
fn no_delay(conn: &dyn std::any::Any, _ext: &mut actix_web::dev::Extensions) {
    let tcp = conn.downcast_ref::<actix_web::rt::net::TcpStream>().or_else(|| {
        conn.downcast_ref::<actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>>()
            .map(|tls| tls.get_ref().0)
    });
    if let Some(tcp) = tcp {
        let _ = tcp.set_nodelay(true);
    }
}

/// Where the HTTP listener sends a request: `https://host[:port]path?query`, the port omitted
/// when the HTTPS listener is on 443.
pub fn redirect_location(host_header: &str, path_and_query: &str, https_port: u16) -> String {
    let host = super::request::host_without_port(host_header);
    let pq = if path_and_query.is_empty() {
        "/"
    } else {
        path_and_query
    };
    if https_port == 443 {
        format!("https://{host}{pq}")
    } else {
        format!("https://{host}:{https_port}{pq}")
    }
}

/// Path prefix of ACME HTTP-01 challenges.
pub const ACME_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// Whether the plain HTTP listener proxies this request to an HTTP-01 solver (cert-manager)
/// instead of redirecting it: the path is a challenge path and a solver route matches.
pub fn is_acme_challenge(req: &HttpRequest, solvers: &ProxyState) -> bool {
    if !req.path().starts_with(ACME_CHALLENGE_PREFIX) {
        return false;
    }
    let host = proxy::request_host(req);
    let host = super::request::host_without_port(&host);
    solvers
        .snapshot
        .load()
        .routes
        .find(&host, req.path())
        .is_some()
}

/// What the plain HTTP listener serves besides redirects.
struct RedirectState {
    https_port: u16,
    /// HTTP-01 solver routes (public, served over plain HTTP), if any are published.
    acme: Option<Arc<ProxyState>>,
}

async fn redirect(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<RedirectState>,
) -> HttpResponse {
    if let Some(acme) = &state.acme {
        if is_acme_challenge(&req, acme) {
            return proxy::handle(req, payload, web::Data::new(acme.clone())).await;
        }
    }
    let port = state.https_port;
    let host = proxy::request_host(&req);
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    HttpResponse::MovedPermanently()
        .insert_header((header::LOCATION, redirect_location(&host, pq, port)))
        .finish()
}

/// The plain-HTTP listener that redirects everything to HTTPS on `https_port`.
pub fn redirect_server(
    addr: SocketAddr,
    https_port: u16,
    acme: Option<Arc<ProxyState>>,
    opts: &ListenOptions,
) -> std::io::Result<Server> {
    redirect_server_on(bind_listener(addr)?, https_port, acme, opts)
}

/// The redirect listener on an already bound socket.
pub fn redirect_server_on(
    socket: TcpListener,
    https_port: u16,
    acme: Option<Arc<ProxyState>>,
    opts: &ListenOptions,
) -> std::io::Result<Server> {
    let state = web::Data::new(RedirectState { https_port, acme });
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .default_service(web::to(redirect))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(opts.shutdown_grace.min(5))
    .listen(socket)?
    .run())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_locations() {
        assert_eq!(
            redirect_location("a.test", "/x?y=1", 443),
            "https://a.test/x?y=1"
        );
        assert_eq!(
            redirect_location("a.test:80", "/", 8443),
            "https://a.test:8443/"
        );
        assert_eq!(redirect_location("A.test:8080", "", 443), "https://a.test/");
    }
}
