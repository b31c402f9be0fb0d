//! `rampart serve`: load the config (and keep watching it), load certificates, publish route
//! snapshots, run the proxy, redirect and metrics listeners (moved without a restart when
//! their settings change), and stop gracefully on SIGTERM/SIGINT.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use thiserror::Error;

use crate::actors::config::ConfigActor;
use crate::cli::ServeArgs;
use crate::config::{Config, ConfigError};
use crate::http::auth::authorizer::AuthRuntime;
use crate::http::forward_auth::{forward_auth_server, ForwardAuthState};
use crate::http::listeners::{ListenError, Listeners};
use crate::http::metrics::Metrics;
use crate::http::server::{ListenOptions, ProxyState, Snapshot, SnapshotError};

#[derive(Debug, Error)]
pub enum ServeError {
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("invalid configuration: {0}")]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Listen(#[from] ListenError),
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

    let listeners = Arc::new(Mutex::new(Listeners::new(
        state.clone(),
        metrics.clone(),
        args.workers,
        args.shutdown_grace_seconds,
    )));
    // Forward auth: its trusted proxies follow reloads; its address is read at startup.
    let forward_auth = Arc::new(ForwardAuthState {
        proxy: state.clone(),
        trusted_proxies: arc_swap::ArcSwap::from_pointee(Vec::new()),
    });
    let forward_auth_for_update = forward_auth.clone();
    let publish_state = state.clone();
    let listeners_for_update = listeners.clone();
    let first = std::sync::atomic::AtomicBool::new(true);
    let on_update = Box::new(move |cfg: Arc<Config>| {
        let initial = first.swap(false, std::sync::atomic::Ordering::SeqCst);
        let rejected = |e: &dyn std::fmt::Display| {
            publish_state.metrics.config_reload(false);
            tracing::error!(error = %e, "configuration rejected; keeping the previous one");
        };
        let authorizer = match authorizer_for(&cfg) {
            Ok(a) => a,
            Err(e) => return rejected(&e),
        };
        let snapshot = match Snapshot::build(&cfg, authorizer) {
            Ok(s) => s,
            Err(e) => return rejected(&e),
        };
        // The first listeners start below, where their error can stop startup.
        if !initial {
            let mut listeners = listeners_for_update.lock().expect("listeners lock");
            if let Err(e) = listeners.apply(&cfg) {
                return rejected(&e);
            }
        }
        publish_state.publish(snapshot);
        if let Some(fa) = &cfg.proxy.forward_auth {
            forward_auth_for_update
                .trusted_proxies
                .store(Arc::new(fa.trusted_proxies.clone()));
        }
        publish_state.metrics.set_ready(true);
        if !initial {
            publish_state.metrics.config_reload(true);
        }
        tracing::info!(routes = cfg.routes.len(), "configuration applied");
    });
    let reject_metrics = state.metrics.clone();
    let on_reject = Box::new(move |_: &ConfigError| reject_metrics.config_reload(false));
    let handle = ConfigActor::start_with_reject(&args.config, on_update, on_reject)?;
    let cfg = handle.current.load_full();
    // The first snapshot must have built: the callback cannot return its error, so check here.
    Snapshot::build(&cfg, auth.authorizer_for(&cfg)?)?;
    listeners.lock().expect("listeners lock").apply(&cfg)?;
    let forward_auth_server = match &cfg.proxy.forward_auth {
        Some(fa) => {
            forward_auth
                .trusted_proxies
                .store(Arc::new(fa.trusted_proxies.clone()));
            let opts = ListenOptions {
                workers: args.workers,
                ..ListenOptions::from_config(&cfg, args.shutdown_grace_seconds)
            };
            let server =
                forward_auth_server(forward_auth.clone(), fa.address, &opts).map_err(|source| {
                    ListenError::Bind {
                        key: "forward_auth.address",
                        addr: fa.address,
                        source,
                    }
                })?;
            tracing::info!(address = %fa.address, "forward auth listening");
            let handle = server.handle();
            actix_web::rt::spawn(server);
            Some(handle)
        }
        None => None,
    };

    shutdown_signal().await;
    tracing::info!(
        grace_seconds = args.shutdown_grace_seconds,
        "shutting down: draining requests"
    );
    metrics.set_ready(false);
    if let Some(h) = &forward_auth_server {
        actix_web::rt::spawn(h.stop(true));
    }
    let stopping = listeners.lock().expect("listeners lock").stop_all();
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
