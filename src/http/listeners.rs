//! The listeners of `rampart serve` and how a new configuration moves them without a restart.
//!
//! A changed `address`, `insecure_server`, `timeout_idle` or `timeout_read` replaces the proxy
//! listener, a changed `http_redirect_addr` (or HTTPS port) the redirect listener, a changed
//! `metrics_address` the metrics listener. Every new socket is bound first; if one cannot be
//! bound nothing changes and the error names the config key. Then the new servers start and
//! the old ones stop accepting and drain their in-flight requests. A listener that stays on
//! the same address (e.g. only `insecure_server` changed) shares the old listening socket, so
//! the port never stops accepting.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use actix_web::dev::ServerHandle;
use thiserror::Error;

use super::metrics::{metrics_server_on, Metrics};
use super::server::{
    bind_listener, proxy_server_on, redirect_server_on, ListenOptions, ProxyState,
};
use super::tls::{server_config, CertResolver};
use crate::actors::certs::{CertActor, SetSources};
use crate::config::Config;

#[derive(Debug, Error)]
pub enum ListenError {
    #[error("cannot listen on `{key}` {addr}: {source}")]
    Bind {
        key: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("certificates: {0}")]
    Certificates(String),
}

/// The settings the listeners are built from.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerSettings {
    pub address: SocketAddr,
    pub insecure_server: bool,
    pub http_redirect_addr: Option<SocketAddr>,
    pub http_redirect_port: Option<u16>,
    pub metrics_address: Option<SocketAddr>,
    pub keep_alive: Duration,
    pub request_timeout: Duration,
}

impl ListenerSettings {
    pub fn from_config(cfg: &Config) -> ListenerSettings {
        let timeouts = ListenOptions::from_config(cfg, 0);
        ListenerSettings {
            address: cfg.proxy.address,
            insecure_server: cfg.proxy.insecure_server,
            http_redirect_addr: cfg.proxy.http_redirect_addr,
            http_redirect_port: cfg.proxy.http_redirect_port,
            metrics_address: cfg.proxy.metrics_address,
            keep_alive: timeouts.keep_alive,
            request_timeout: timeouts.request_timeout,
        }
    }

    /// Where `kind` listens under these settings (`None`: off).
    pub fn addr_of(&self, kind: ListenerKind) -> Option<SocketAddr> {
        match kind {
            ListenerKind::Proxy => Some(self.address),
            ListenerKind::Redirect => self.http_redirect_addr,
            ListenerKind::Metrics => self.metrics_address,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    Proxy,
    Redirect,
    Metrics,
}

impl ListenerKind {
    pub const ALL: [ListenerKind; 3] = [
        ListenerKind::Proxy,
        ListenerKind::Redirect,
        ListenerKind::Metrics,
    ];

    /// The config key that sets this listener's address.
    pub fn config_key(self) -> &'static str {
        match self {
            ListenerKind::Proxy => "address",
            ListenerKind::Redirect => "http_redirect_addr",
            ListenerKind::Metrics => "metrics_address",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The listeners that must be (re)started or stopped to go from `old` (`None`: nothing runs
/// yet) to `new`.
pub fn changed_listeners(
    old: Option<&ListenerSettings>,
    new: &ListenerSettings,
) -> Vec<ListenerKind> {
    let Some(old) = old else {
        return ListenerKind::ALL.to_vec();
    };
    ListenerKind::ALL
        .into_iter()
        .filter(|&kind| match kind {
            ListenerKind::Proxy => {
                old.address != new.address
                    || old.insecure_server != new.insecure_server
                    || old.keep_alive != new.keep_alive
                    || old.request_timeout != new.request_timeout
            }
            // Redirects name `http_redirect_port` (none: the default HTTPS port).
            ListenerKind::Redirect => {
                old.http_redirect_addr != new.http_redirect_addr
                    || (new.http_redirect_addr.is_some()
                        && old.http_redirect_port != new.http_redirect_port)
            }
            ListenerKind::Metrics => old.metrics_address != new.metrics_address,
        })
        .collect()
}

struct Running {
    addr: SocketAddr,
    /// A handle on the listening socket, so a replacement on the same address can share it.
    socket: TcpListener,
    server: ServerHandle,
}

/// The running listeners of `rampart serve`.
pub struct Listeners {
    state: Arc<ProxyState>,
    metrics: Arc<Metrics>,
    workers: Option<usize>,
    shutdown_grace: u64,
    /// Created with the first HTTPS listener.
    tls: Option<(Arc<CertResolver>, Addr<CertActor>)>,
    settings: Option<ListenerSettings>,
    running: [Option<Running>; 3],
    /// Set by `stop_all`: a late configuration starts nothing.
    stopped: bool,
}

impl Listeners {
    pub fn new(
        state: Arc<ProxyState>,
        metrics: Arc<Metrics>,
        workers: Option<usize>,
        shutdown_grace: u64,
    ) -> Listeners {
        Listeners {
            state,
            metrics,
            workers,
            shutdown_grace,
            tls: None,
            settings: None,
            running: [None, None, None],
            stopped: false,
        }
    }

    /// Brings the listeners in line with `cfg` (and hands its certificates to the certificate
    /// actor). On error nothing changed. Must run inside the actix system.
    pub fn apply(&mut self, cfg: &Config) -> Result<(), ListenError> {
        if self.stopped {
            return Ok(());
        }
        let new = ListenerSettings::from_config(cfg);
        let had_tls = self.tls.is_some();
        let tls = if new.insecure_server {
            None
        } else {
            Some(self.tls_config(cfg)?)
        };
        let kinds = changed_listeners(self.settings.as_ref(), &new);

        // Bind every new socket before touching the running listeners.
        let mut sockets = Vec::new();
        for &kind in &kinds {
            let socket = match new.addr_of(kind) {
                Some(addr) => Some((addr, self.socket_for(kind, addr)?)),
                None => None,
            };
            sockets.push((kind, socket));
        }

        let opts = ListenOptions {
            workers: self.workers,
            shutdown_grace: self.shutdown_grace,
            keep_alive: new.keep_alive,
            request_timeout: new.request_timeout,
        };
        for (kind, socket) in sockets {
            let replacement = match socket {
                Some((addr, socket)) => {
                    let bind_err = |source| ListenError::Bind {
                        key: kind.config_key(),
                        addr,
                        source,
                    };
                    let for_server = socket.try_clone().map_err(bind_err)?;
                    let server = match kind {
                        ListenerKind::Proxy => {
                            proxy_server_on(self.state.clone(), for_server, tls.clone(), &opts)
                        }
                        ListenerKind::Redirect => {
                            redirect_server_on(for_server, new.http_redirect_port, None, &opts)
                        }
                        ListenerKind::Metrics => {
                            metrics_server_on(self.metrics.clone(), for_server)
                        }
                    }
                    .map_err(bind_err)?;
                    let handle = server.handle();
                    actix_web::rt::spawn(server);
                    tracing::info!(listener = kind.config_key(), address = %addr, tls = kind == ListenerKind::Proxy && tls.is_some(), "listening");
                    Some(Running {
                        addr,
                        socket,
                        server: handle,
                    })
                }
                None => None,
            };
            let old = std::mem::replace(&mut self.running[kind.index()], replacement);
            if let Some(Running {
                addr,
                socket,
                server,
            }) = old
            {
                drop(socket);
                tracing::info!(listener = kind.config_key(), address = %addr, "draining the previous listener");
                actix_web::rt::spawn(async move { server.stop(true).await });
            }
        }
        self.state.set_secure(!new.insecure_server);
        self.settings = Some(new);
        if let (true, Some((_, certs))) = (had_tls, &self.tls) {
            certs.do_send(SetSources(cfg.proxy.certificates.clone()));
        }
        Ok(())
    }

    /// Stops every listener; the future completes when their in-flight requests are drained.
    pub fn stop_all(&mut self) -> impl std::future::Future<Output = ()> {
        let servers: Vec<_> = self
            .running
            .iter_mut()
            .filter_map(Option::take)
            .map(|r| r.server)
            .collect();
        self.stopped = true;
        async move {
            futures::future::join_all(servers.iter().map(|s| s.stop(true))).await;
        }
    }

    /// The listening socket for `kind` on `addr`: shared with a running listener already on
    /// `addr`, else newly bound.
    fn socket_for(&self, kind: ListenerKind, addr: SocketAddr) -> Result<TcpListener, ListenError> {
        let shared = self.running.iter().flatten().find(|r| r.addr == addr);
        match shared {
            Some(r) => r.socket.try_clone(),
            None => bind_listener(addr),
        }
        .map_err(|source| ListenError::Bind {
            key: kind.config_key(),
            addr,
            source,
        })
    }

    /// The TLS server configuration; the first call starts the certificate actor with the
    /// configured certificates (an error there is the certificates' error).
    fn tls_config(&mut self, cfg: &Config) -> Result<rustls::ServerConfig, ListenError> {
        if self.tls.is_none() {
            let resolver = CertResolver::new();
            let actor = CertActor::start(resolver.clone(), cfg.proxy.certificates.clone())
                .map_err(|e| ListenError::Certificates(e.join("; ")))?;
            self.tls = Some((resolver, actor));
        }
        let (resolver, _) = self.tls.as_ref().expect("set above");
        Ok(server_config(resolver.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ListenerSettings {
        ListenerSettings {
            address: "127.0.0.1:8443".parse().unwrap(),
            insecure_server: false,
            http_redirect_addr: Some("127.0.0.1:8080".parse().unwrap()),
            http_redirect_port: None,
            metrics_address: None,
            keep_alive: Duration::from_secs(300),
            request_timeout: Duration::from_secs(30),
        }
    }

    #[test]
    fn everything_starts_first() {
        assert_eq!(changed_listeners(None, &settings()), ListenerKind::ALL);
    }

    #[test]
    fn unchanged_settings_touch_nothing() {
        assert!(changed_listeners(Some(&settings()), &settings()).is_empty());
    }

    #[test]
    fn each_setting_moves_its_listener() {
        let old = settings();
        let mut new = old.clone();
        new.insecure_server = true;
        assert_eq!(changed_listeners(Some(&old), &new), [ListenerKind::Proxy]);

        let mut new = old.clone();
        new.request_timeout = Duration::from_secs(5);
        assert_eq!(changed_listeners(Some(&old), &new), [ListenerKind::Proxy]);

        let mut new = old.clone();
        new.http_redirect_addr = None;
        assert_eq!(
            changed_listeners(Some(&old), &new),
            [ListenerKind::Redirect]
        );

        let mut new = old.clone();
        new.metrics_address = Some("127.0.0.1:9090".parse().unwrap());
        assert_eq!(changed_listeners(Some(&old), &new), [ListenerKind::Metrics]);
    }

    #[test]
    fn a_new_redirect_port_moves_the_redirect_too() {
        let old = settings();
        let mut new = old.clone();
        new.http_redirect_port = Some(9443);
        assert_eq!(
            changed_listeners(Some(&old), &new),
            [ListenerKind::Redirect]
        );
        // A new HTTPS address alone: redirects name no port (or `http_redirect_port`).
        let mut new = old.clone();
        new.address = "127.0.0.1:9443".parse().unwrap();
        assert_eq!(changed_listeners(Some(&old), &new), [ListenerKind::Proxy]);
        // No redirect listener: nothing to move.
        let mut old = settings();
        old.http_redirect_addr = None;
        let mut new = old.clone();
        new.http_redirect_port = Some(9443);
        assert!(changed_listeners(Some(&old), &new).is_empty());
    }

    #[test]
    fn config_keys_name_the_listener() {
        let s = settings();
        assert_eq!(ListenerKind::Proxy.config_key(), "address");
        assert_eq!(s.addr_of(ListenerKind::Proxy), Some(s.address));
        assert_eq!(s.addr_of(ListenerKind::Redirect), s.http_redirect_addr);
        assert_eq!(s.addr_of(ListenerKind::Metrics), None);
    }
}
