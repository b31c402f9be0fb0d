//! The servers: the proxy listener (HTTPS with SNI certificates, or plain HTTP when
//! `insecure_server`), the HTTP→HTTPS redirect listener, and the state they share: the
//! current `Snapshot` (routes, authorizer, global response headers) behind `ArcSwap`.

use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;
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
use crate::config::request_rules::RequestRules;
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
    /// Request normalisation and request-side limits.
    pub request_rules: RequestRules,
}

impl Snapshot {
    /// No routes: every request is a 404.
    pub fn empty() -> Snapshot {
        Snapshot {
            routes: RouteTable::default(),
            authorizer: Arc::new(PublicOnlyAuthorizer),
            response_headers: Vec::new(),
            cookie_name: "_pomerium".into(),
            request_rules: RequestRules::default(),
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
            request_rules: cfg.proxy.request_rules,
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
        // Only the HTTPS listener's state decides (the plain HTTP listener has its own).
        if self.is_secure() {
            let mut hosts = super::tls::ClientCertHosts::default();
            for e in snapshot.routes.entries() {
                if e.client_ca.is_none() {
                    continue;
                }
                match &e.route.host {
                    crate::config::route::HostMatch::Exact(h) => {
                        hosts.exact.insert(h.clone());
                    }
                    crate::config::route::HostMatch::Wildcard(suffix) => {
                        hosts.suffixes.push(suffix.clone())
                    }
                    crate::config::route::HostMatch::Any => hosts.any = true,
                }
            }
            super::tls::request_client_certificates(hosts);
        }
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
    if let Some(cfg) = tls {
        return tls_proxy_server(state, socket, cfg, opts);
    }
    let mut server = HttpServer::new(move || proxy_app(state.clone()))
        .on_connect(no_delay)
        .disable_signals()
        .shutdown_timeout(opts.shutdown_grace)
        .keep_alive(opts.keep_alive)
        .client_request_timeout(opts.request_timeout);
    if let Some(w) = opts.workers {
        server = server.workers(w);
    }
    Ok(server.listen(socket)?.run())
}

/// The proxy app: every request goes to `proxy::handle`.
fn proxy_app(
    state: Arc<ProxyState>,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<actix_web::body::BoxBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new().default_service(proxy::service(state))
}

/// Time allowed for a client's TLS handshake (actix-web's default).
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

/// The HTTPS proxy listener: after the TLS handshake, connections that chose `h2` by ALPN are
/// served by hyper (`h2server`, which carries trailers), the others by actix-web's HTTP/1.1.
/// Both hand requests to the same app.
fn tls_proxy_server(
    state: Arc<ProxyState>,
    socket: TcpListener,
    mut cfg: rustls::ServerConfig,
    opts: &ListenOptions,
) -> std::io::Result<Server> {
    use super::client_io::ClientIo;
    use actix_http::{HttpService, Protocol};
    use actix_service::{
        fn_factory, fn_service, map_config, IntoServiceFactory, Service, ServiceFactory,
    };
    use actix_web::dev::AppConfig;

    let addr = socket.local_addr()?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let data = state;
    let mut builder = Server::build()
        .disable_signals()
        .shutdown_timeout(opts.shutdown_grace);
    if let Some(w) = opts.workers {
        builder = builder.workers(w);
    }
    let shutdown = builder.graceful_shutdown_signal();
    let (keep_alive, request_timeout) = (opts.keep_alive, opts.request_timeout);
    let server = builder.listen("rampart-proxy", socket, move || {
        let (acceptor, data, shutdown) = (acceptor.clone(), data.clone(), shutdown.clone());
        fn_factory(move || {
            let (acceptor, data, shutdown) = (acceptor.clone(), data.clone(), shutdown.clone());
            async move {
                // What actix-web's own HTTPS listener passes (`secure` is read by the auth
                // service); its constructor is crate-private, this one is public for actix-test.
                let app_config = AppConfig::__priv_test_new(true, addr.to_string(), addr);
                let h1_shutdown = shutdown.clone();
                let config = app_config.clone();
                let h1: HttpService<ClientIo, _, _, _, _> = HttpService::build()
                    .keep_alive(keep_alive)
                    .client_request_timeout(request_timeout)
                    .local_addr(addr)
                    .on_connect_ext(|io: &ClientIo, ext: &mut actix_web::dev::Extensions| {
                        if let Some(certs) = io.peer_certificates() {
                            ext.insert(certs.clone());
                        }
                    })
                    .graceful_shutdown_signal(move || {
                        let signal = h1_shutdown.clone();
                        async move { signal.notified().await }
                    })
                    .finish(map_config(proxy_app(data.clone()), move |_| config.clone()));
                let h1 = Rc::new(h1.new_service(()).await?);
                let app = proxy_app(data)
                    .into_factory()
                    .new_service(app_config)
                    .await?;
                let app = Rc::new(app);
                Ok::<_, ()>(fn_service(move |tcp: actix_web::rt::net::TcpStream| {
                    let (acceptor, h1, app, shutdown) =
                        (acceptor.clone(), h1.clone(), app.clone(), shutdown.clone());
                    async move {
                        let _ = tcp.set_nodelay(true);
                        let peer = tcp.peer_addr().ok();
                        let tls =
                            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
                                .await
                            {
                                Ok(Ok(tls)) => tls,
                                Ok(Err(e)) => {
                                    tracing::debug!(error = %e, "TLS handshake failed");
                                    return Ok(());
                                }
                                Err(_) => {
                                    tracing::debug!("TLS handshake timed out");
                                    return Ok(());
                                }
                            };
                        let certs = super::tls::PeerCertificates::of(tls.get_ref().1);
                        if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                            let signal = async move { shutdown.notified().await };
                            super::h2server::serve(tls, peer, certs, app, keep_alive, signal).await;
                        } else if let Err(e) = h1
                            .call((
                                ClientIo::new(tls, peer).with_peer_certificates(certs),
                                Protocol::Http1,
                                peer,
                            ))
                            .await
                        {
                            tracing::debug!(error = ?e, "HTTP/1.1 client connection ended");
                        }
                        Ok::<_, ()>(())
                    }
                }))
            }
        })
    })?;
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
/// (Plain listener; the HTTPS listener sets it before the TLS handshake.)
fn no_delay(conn: &dyn std::any::Any, _ext: &mut actix_web::dev::Extensions) {
    if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
        let _ = tcp.set_nodelay(true);
    }
}

/// Where the HTTP listener sends a request: `https://host/path?query` as Pomerium does (the
/// client's port dropped: in a cluster the Service maps 443 to the container port), or
/// `https://host:port/path?query` when a port other than 443 is configured.
pub fn redirect_location(
    host_header: &str,
    path_and_query: &str,
    https_port: Option<u16>,
) -> String {
    let host = super::request::host_without_port(host_header);
    let pq = if path_and_query.is_empty() {
        "/"
    } else {
        path_and_query
    };
    match https_port {
        None | Some(443) => format!("https://{host}{pq}"),
        Some(port) => format!("https://{host}:{port}{pq}"),
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
    /// Port named in redirects; none: `https://host/…`.
    https_port: Option<u16>,
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
            return proxy::handle(&req, payload.into_inner(), acme).await;
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
        .force_close()
        .finish()
}

/// The plain-HTTP listener that redirects everything to HTTPS (on `https_port` if given, else
/// the default port).
pub fn redirect_server(
    addr: SocketAddr,
    https_port: Option<u16>,
    acme: Option<Arc<ProxyState>>,
    opts: &ListenOptions,
) -> std::io::Result<Server> {
    redirect_server_on(bind_listener(addr)?, https_port, acme, opts)
}

/// The redirect listener on an already bound socket.
pub fn redirect_server_on(
    socket: TcpListener,
    https_port: Option<u16>,
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
            redirect_location("a.test", "/x?y=1", Some(443)),
            "https://a.test/x?y=1"
        );
        assert_eq!(
            redirect_location("a.test:80", "/", Some(8443)),
            "https://a.test:8443/"
        );
        assert_eq!(
            redirect_location("A.test:8080", "", None),
            "https://a.test/"
        );
        assert_eq!(
            redirect_location("a.test:8080", "/p?q", None),
            "https://a.test/p?q"
        );
    }
}
