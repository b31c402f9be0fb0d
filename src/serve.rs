//! `rampart serve`: load the config (and keep watching it), load certificates, publish route
//! snapshots, run the proxy, redirect and metrics listeners, and stop gracefully on
//! SIGTERM/SIGINT.

use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use crate::actors::certs::{CertActor, SetSources};
use crate::actors::config::ConfigActor;
use crate::cli::ServeArgs;
use crate::config::{Config, ConfigError};
use crate::http::auth::authorizer::AuthRuntime;
use crate::http::metrics::{metrics_server, Metrics};
use crate::http::server::{
    proxy_server, redirect_server, ListenOptions, ProxyState, Snapshot, SnapshotError,
};
use crate::http::tls::{server_config, CertResolver};

#[derive(Debug, Error)]
pub enum ServeError {
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("invalid configuration: {0}")]
    Snapshot(#[from] SnapshotError),
    #[error("certificates: {0}")]
    Certificates(String),
    #[error("cannot listen on {what} {addr}: {source}")]
    Listen {
        what: &'static str,
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("server error: {0}")]
    Server(std::io::Error),
    #[error("invalid configuration: {0}")]
    Auth(#[from] crate::http::auth::authorizer::AuthStartError),
}

/// Runs the proxy until SIGTERM/SIGINT. Blocks the calling thread.
pub fn run(args: &ServeArgs) -> Result<(), ServeError> {
    actix_web::rt::System::new().block_on(serve(args))
}

async fn serve(args: &ServeArgs) -> Result<(), ServeError> {
    let metrics = Metrics::new();
    let state = ProxyState::new(metrics.clone(), true);

    // Sign-in: the session store and policy history live as long as the server.
    let auth = Arc::new(AuthRuntime::start(
        &crate::config::load(&args.config)?,
        &args.data_dir,
    )?);
    let auth_for_updates = auth.clone();
    let authorizer_for = move |cfg: &Config| auth_for_updates.authorizer_for(cfg);

    let publish_state = state.clone();
    let cert_actor: Arc<std::sync::OnceLock<actix::Addr<CertActor>>> = Arc::default();
    let cert_actor_for_update = cert_actor.clone();
    let listen_settings = std::sync::OnceLock::new();
    let first = std::sync::atomic::AtomicBool::new(true);
    let on_update = Box::new(move |cfg: Arc<Config>| {
        let initial = first.swap(false, std::sync::atomic::Ordering::SeqCst);
        let listeners = (
            cfg.proxy.address,
            cfg.proxy.insecure_server,
            cfg.proxy.http_redirect_addr,
            cfg.proxy.metrics_address,
        );
        let started_with = *listen_settings.get_or_init(|| listeners);
        if started_with != listeners {
            tracing::warn!("listener settings (address, insecure_server, http_redirect_addr, metrics_address) changed; they apply after a restart");
        }
        let authorizer = match authorizer_for(&cfg) {
            Ok(a) => a,
            Err(e) => {
                publish_state.metrics.config_reload(false);
                tracing::error!(error = %e, "configuration rejected; keeping the previous one");
                return;
            }
        };
        match Snapshot::build(&cfg, authorizer) {
            Ok(snapshot) => {
                publish_state.publish(snapshot);
                publish_state.metrics.set_ready(true);
                if !initial {
                    publish_state.metrics.config_reload(true);
                }
                if let Some(addr) = cert_actor_for_update.get() {
                    addr.do_send(SetSources(cfg.proxy.certificates.clone()));
                }
                tracing::info!(routes = cfg.routes.len(), "configuration applied");
            }
            Err(e) => {
                publish_state.metrics.config_reload(false);
                tracing::error!(error = %e, "configuration rejected; keeping the previous one");
            }
        }
    });
    let reject_metrics = state.metrics.clone();
    let on_reject = Box::new(move |_: &ConfigError| reject_metrics.config_reload(false));
    let handle = ConfigActor::start_with_reject(&args.config, on_update, on_reject)?;
    let cfg = handle.current.load_full();
    // The first snapshot must have built: the callback cannot return its error, so check here.
    Snapshot::build(&cfg, auth.authorizer_for(&cfg)?)?;
    let proxy = cfg.proxy.clone();
    state.set_secure(!proxy.insecure_server);

    let mut opts = ListenOptions::from_config(&cfg, args.shutdown_grace_seconds);
    opts.workers = args.workers;
    let mut servers = Vec::new();
    let tls = if proxy.insecure_server {
        None
    } else {
        let resolver = CertResolver::new();
        let addr = CertActor::start(resolver.clone(), proxy.certificates.clone())
            .map_err(|e| ServeError::Certificates(e.join("; ")))?;
        let _ = cert_actor.set(addr);
        Some(server_config(resolver))
    };
    servers.push(
        proxy_server(state.clone(), proxy.address, tls, &opts).map_err(|source| {
            ServeError::Listen {
                what: "address",
                addr: proxy.address,
                source,
            }
        })?,
    );
    tracing::info!(address = %proxy.address, tls = !proxy.insecure_server, "proxy listening");
    if let Some(addr) = proxy.http_redirect_addr {
        servers.push(
            redirect_server(addr, proxy.http_redirect_port, None, &opts).map_err(|source| {
                ServeError::Listen {
                    what: "http_redirect_addr",
                    addr,
                    source,
                }
            })?,
        );
        tracing::info!(address = %addr, "redirect listener");
    }
    if let Some(addr) = proxy.metrics_address {
        servers.push(metrics_server(metrics.clone(), addr).map_err(|source| {
            ServeError::Listen {
                what: "metrics_address",
                addr,
                source,
            }
        })?);
        tracing::info!(address = %addr, "metrics listening");
    }

    let handles: Vec<_> = servers.iter().map(|s| s.handle()).collect();
    // Servers run as tasks so that `stop` below is served while we wait on it.
    let tasks: Vec<_> = servers.into_iter().map(actix_web::rt::spawn).collect();
    let mut running = futures::future::join_all(tasks);
    tokio::select! {
        results = &mut running => {
            for r in results.into_iter().flatten() {
                r.map_err(ServeError::Server)?;
            }
            return Ok(());
        }
        _ = shutdown_signal() => {}
    }
    tracing::info!(
        grace_seconds = args.shutdown_grace_seconds,
        "shutting down: draining requests"
    );
    metrics.set_ready(false);
    let stopping = futures::future::join_all(handles.iter().map(|h| h.stop(true)));
    let _ = tokio::time::timeout(
        Duration::from_secs(args.shutdown_grace_seconds + 2),
        stopping,
    )
    .await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
