//! `rampart controller`: the Kubernetes Ingress controller. Watchers (Ingress, IngressClass,
//! Service, EndpointSlice or Endpoints, Secret, the `Pomerium` object) feed the reconciler
//! actor, which publishes routes/certificates/settings through a `Publisher` and hands events
//! and status writes to their actors. Health probes on `--health-probe-bind-address`.

pub mod gateway_watch;
pub mod gen_secrets;
pub mod health;
pub mod proxy;
pub mod watch_scopes;

use std::net::SocketAddr;
use std::sync::Arc;

use actix::prelude::*;
use clap::Args;
use k8s_openapi::api::core::v1::{Endpoints, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::runtime::watcher;
use kube::Api;
use thiserror::Error;

use crate::actors::certs::CertActor;
use crate::actors::k8s_events::EventRecorderActor;
use crate::actors::k8s_leader::{LeaderActor, Release};
use crate::actors::k8s_reconciler::{Publisher, ReconcilerActor, ReconcilerOptions};
use crate::actors::k8s_status::StatusWriterActor;
use crate::actors::k8s_watch::{Watched, WatcherActor};
use crate::http::metrics::{metrics_server, Metrics};
use crate::http::server::{proxy_server, redirect_server, ListenOptions, ProxyState};
use crate::http::tls::{server_config, CertResolver};
use crate::k8s::convert::ConvertOptions;
use crate::k8s::leader::Timing;
use crate::k8s::reconcile::Reconciler;
use crate::k8s::{Kind, KubeObject, Pomerium};
use health::Health;
use proxy::ProxyFeed;
use watch_scopes::WatchScopes;

/// Flags of `rampart controller` (alias `all-in-one`). Every flag can also come from the env
/// var of the same name in SCREAMING_SNAKE case; an explicit flag wins.
#[derive(Debug, Clone, Args)]
pub struct ControllerArgs {
    /// The `IngressClass.spec.controller` value this controller owns.
    #[arg(long, env = "NAME", default_value = "pomerium.io/ingress-controller")]
    pub name: String,
    /// Annotation prefix, without the `/`.
    #[arg(long, env = "PREFIX", default_value = "ingress.pomerium.io")]
    pub prefix: String,
    /// Translate `nginx.ingress.kubernetes.io/*` annotations (auth-url to oauth2-proxy,
    /// source ranges, rewrite-target, ...); an untranslatable one rejects the Ingress.
    #[arg(long, env = "INGRESS_NGINX_COMPAT", default_value_t = false)]
    pub ingress_nginx_compat: bool,
    /// Comma list of namespaces whose Ingresses are managed; empty = all.
    #[arg(long, env = "NAMESPACES", value_delimiter = ',', default_value = "")]
    pub namespaces: Vec<String>,
    /// `namespace/name` of the proxy Service whose load balancer status is copied to Ingresses.
    #[arg(long, env = "UPDATE_STATUS_FROM_SERVICE", default_value = "")]
    pub update_status_from_service: String,
    /// Name of the cluster-scoped `Pomerium` object holding global settings.
    #[arg(long, env = "POMERIUM_CONFIG", default_value = "global")]
    pub pomerium_config: String,
    /// Listen address of `/healthz`, `/readyz`, `/startupz`.
    #[arg(
        long,
        env = "HEALTH_PROBE_BIND_ADDRESS",
        default_value = "127.0.0.1:28080"
    )]
    pub health_probe_bind_address: String,
    /// Listen address of `/metrics` (none when empty).
    #[arg(long, env = "METRICS_BIND_ADDRESS", default_value = "")]
    pub metrics_bind_address: String,
    /// HTTPS listener of the proxy.
    #[arg(long, env = "SERVER_ADDR", default_value = ":8443")]
    pub server_addr: String,
    /// Plain HTTP listener (redirects to https).
    #[arg(long, env = "HTTP_REDIRECT_ADDR", default_value = ":8080")]
    pub http_redirect_addr: String,
    /// Reporting controller of the events (`From` in `kubectl describe`).
    #[arg(long, env = "EVENTS_CONTROLLER_NAME", default_value = crate::k8s::events::DEFAULT_REPORTER)]
    pub events_controller_name: String,
    /// Pod name, the events' reporting instance.
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
    /// The controller's namespace: with `--namespaces`, Secrets are also watched there (the
    /// `Pomerium` object's bootstrap/IdP/storage Secrets).
    #[arg(long, env = "POD_NAMESPACE", hide = true)]
    pub pod_namespace: Option<String>,
    /// Watch Endpoints instead of EndpointSlices (automatic when EndpointSlices are not served).
    #[arg(long, env = "USE_ENDPOINTS", default_value_t = false)]
    pub use_endpoints: bool,
    /// Kubernetes API URL (plain http allowed), instead of in-cluster/kubeconfig discovery.
    /// For tests.
    #[arg(long, env = "KUBE_API_URL", hide = true)]
    pub kube_api_url: Option<String>,
    /// Accepted for compatibility (v0.17); no effect.
    #[arg(long, hide = true, default_value_t = false)]
    pub disable_cert_check: bool,
    /// Serve Gateway API HTTPRoutes (Gateways of GatewayClasses with our controllerName),
    /// beside Ingresses. Pomerium's `--experimental-gateway-api` is accepted too.
    #[arg(
        long,
        alias = "experimental-gateway-api",
        env = "GATEWAY_API",
        default_value_t = false
    )]
    pub gateway_api: bool,
    /// The GatewayClass `spec.controllerName` this controller owns.
    #[arg(long, env = "GATEWAY_CLASS_CONTROLLER_NAME", default_value = crate::k8s::gateway::DEFAULT_GATEWAY_CONTROLLER)]
    pub gateway_class_controller_name: String,
    /// Elect a leader among replicas through a Lease; only the leader writes status and
    /// events (every replica serves traffic). Off: every replica writes.
    #[arg(long, env = "LEADER_ELECT", default_value_t = false)]
    pub leader_elect: bool,
    /// Name of the Lease.
    #[arg(long, env = "LEADER_ELECTION_ID", default_value = "rampart-controller")]
    pub leader_election_id: String,
    /// Namespace of the Lease (default: the pod's namespace from $POD_NAMESPACE, else `default`).
    #[arg(long, env = "LEADER_ELECTION_NAMESPACE")]
    pub leader_election_namespace: Option<String>,
    /// Lease duration, seconds.
    #[arg(
        long,
        env = "LEADER_ELECTION_LEASE_DURATION",
        default_value_t = 15.0,
        hide = true
    )]
    pub leader_election_lease_duration: f64,
    /// Leader renew period, seconds.
    #[arg(
        long,
        env = "LEADER_ELECTION_RENEW_PERIOD",
        default_value_t = 5.0,
        hide = true
    )]
    pub leader_election_renew_period: f64,
    /// Follower retry period, seconds.
    #[arg(
        long,
        env = "LEADER_ELECTION_RETRY_PERIOD",
        default_value_t = 2.0,
        hide = true
    )]
    pub leader_election_retry_period: f64,
    /// Directory of a file session store configured without a path.
    #[arg(long, env = "RAMPART_DATA_DIR", default_value = "./data")]
    pub data_dir: std::path::PathBuf,
    /// Proxy worker threads (default: one per CPU).
    #[arg(long, env = "PROXY_WORKERS", hide = true)]
    pub proxy_workers: Option<usize>,
    /// Seconds to let in-flight requests finish on shutdown.
    #[arg(long, env = "SHUTDOWN_GRACE_SECONDS", default_value_t = 10)]
    pub shutdown_grace_seconds: u64,
    /// Debug logging.
    #[arg(long, env = "DEBUG", default_value_t = false)]
    pub debug: bool,
}

#[derive(Debug, Error)]
pub enum ControllerError {
    #[error("--pomerium-config: expected cluster-scoped name")]
    PomeriumConfigNamespaced,
    #[error("--pomerium-config: required")]
    PomeriumConfigMissing,
    #[error("--update-status-from-service: expected namespace/name, got {0:?}")]
    StatusService(String),
    #[error("--{flag}: {message}")]
    Address { flag: &'static str, message: String },
    #[error("kubernetes client: {0}")]
    Kube(String),
    #[error("cannot listen on {what} {addr}: {source}")]
    Listen {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("certificates: {0}")]
    Certificates(String),
}

/// Checked controller options.
#[derive(Debug, Clone)]
pub struct ControllerOptions {
    pub convert: ConvertOptions,
    pub pomerium_name: String,
    pub status_service: Option<(String, String)>,
    pub events_controller_name: String,
    pub pod_name: Option<String>,
    pub use_endpoints: bool,
    pub leader_election: Option<LeaderElection>,
    /// Where each kind is watched (`--namespaces`).
    pub watch_scopes: WatchScopes,
}

/// Where and how to elect a leader.
#[derive(Debug, Clone)]
pub struct LeaderElection {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub timing: Timing,
}

impl ControllerArgs {
    pub fn options(&self) -> Result<ControllerOptions, ControllerError> {
        let pomerium_name = self.pomerium_config.trim().to_string();
        if pomerium_name.is_empty() {
            return Err(ControllerError::PomeriumConfigMissing);
        }
        if pomerium_name.contains('/') {
            return Err(ControllerError::PomeriumConfigNamespaced);
        }
        let status_service = match self.update_status_from_service.trim() {
            "" => None,
            v => match v.split_once('/') {
                Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                    Some((ns.to_string(), name.to_string()))
                }
                _ => return Err(ControllerError::StatusService(v.to_string())),
            },
        };
        let namespaces: Vec<String> = self
            .namespaces
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        let watch_scopes = WatchScopes::new(
            &namespaces,
            status_service.as_ref().map(|(ns, _)| ns.as_str()),
            self.pod_namespace.as_deref(),
        );
        Ok(ControllerOptions {
            convert: ConvertOptions {
                prefix: self.prefix.clone(),
                controller_name: self.name.clone(),
                namespaces,
                gateway: self
                    .gateway_api
                    .then(|| crate::k8s::gateway::GatewayOptions {
                        controller_name: self.gateway_class_controller_name.clone(),
                    }),
                ingress_nginx_compat: self.ingress_nginx_compat,
            },
            watch_scopes,
            pomerium_name,
            status_service,
            events_controller_name: self.events_controller_name.clone(),
            pod_name: self.pod_name.clone(),
            use_endpoints: self.use_endpoints,
            leader_election: self.leader_election()?,
        })
    }

    fn leader_election(&self) -> Result<Option<LeaderElection>, ControllerError> {
        if !self.leader_elect {
            return Ok(None);
        }
        let secs = |flag: &'static str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(std::time::Duration::from_secs_f64(v))
            } else {
                Err(ControllerError::Address {
                    flag,
                    message: format!("expected a positive number of seconds, got {v}"),
                })
            }
        };
        let namespace = self
            .leader_election_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".into());
        let base = self
            .pod_name
            .clone()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "rampart".into());
        let identity = format!("{base}_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        Ok(Some(LeaderElection {
            namespace,
            name: self.leader_election_id.clone(),
            identity,
            timing: Timing {
                lease_duration: secs(
                    "leader-election-lease-duration",
                    self.leader_election_lease_duration,
                )?,
                renew_period: secs(
                    "leader-election-renew-period",
                    self.leader_election_renew_period,
                )?,
                retry_period: secs(
                    "leader-election-retry-period",
                    self.leader_election_retry_period,
                )?,
            },
        }))
    }

    pub fn health_addr(&self) -> Result<SocketAddr, ControllerError> {
        listen_addr("health-probe-bind-address", &self.health_probe_bind_address)
    }

    /// The Kubernetes client: `--kube-api-url` if set, else in-cluster config or kubeconfig.
    pub async fn client(&self) -> Result<kube::Client, ControllerError> {
        match &self.kube_api_url {
            Some(url) => {
                let uri = url
                    .parse()
                    .map_err(|e| ControllerError::Kube(format!("--kube-api-url {url:?}: {e}")))?;
                kube::Client::try_from(kube::Config::new(uri))
                    .map_err(|e| ControllerError::Kube(e.to_string()))
            }
            None => kube::Client::try_default()
                .await
                .map_err(|e| ControllerError::Kube(e.to_string())),
        }
    }
}

fn listen_addr(flag: &'static str, value: &str) -> Result<SocketAddr, ControllerError> {
    crate::config::parse_listen_addr(flag, value).map_err(|e| ControllerError::Address {
        flag,
        message: e.to_string(),
    })
}

fn optional_addr(flag: &'static str, value: &str) -> Result<Option<SocketAddr>, ControllerError> {
    match value.trim() {
        "" => Ok(None),
        v => listen_addr(flag, v).map(Some),
    }
}

/// A running controller (inside an actix system).
pub struct Controller {
    pub reconciler: Addr<ReconcilerActor>,
    /// The leader election actor, when enabled (send `Release` to step down).
    pub leader: Option<Addr<LeaderActor>>,
    pub health: Health,
}

fn wrap_ingress(o: Ingress) -> KubeObject {
    KubeObject::Ingress(Box::new(o))
}
fn wrap_class(o: IngressClass) -> KubeObject {
    KubeObject::IngressClass(Box::new(o))
}
fn wrap_service(o: Service) -> KubeObject {
    KubeObject::Service(Box::new(o))
}
fn wrap_endpoints(o: Endpoints) -> KubeObject {
    KubeObject::Endpoints(Box::new(o))
}
fn wrap_slice(o: EndpointSlice) -> KubeObject {
    KubeObject::EndpointSlice(Box::new(o))
}
fn wrap_secret(o: Secret) -> KubeObject {
    KubeObject::Secret(Box::new(o))
}
fn wrap_pomerium(o: Pomerium) -> KubeObject {
    KubeObject::Pomerium(Box::new(o))
}

impl Controller {
    /// Starts the watchers, the reconciler, the event recorder and the status writer. Must be
    /// called inside an actix system. Output goes to `publisher`; probe state to `health`.
    pub fn start(
        client: kube::Client,
        options: ControllerOptions,
        publisher: Publisher,
        health: Health,
    ) -> Controller {
        let endpoints_kind = if options.use_endpoints {
            Kind::Endpoints
        } else {
            Kind::EndpointSlice
        };
        let scopes = &options.watch_scopes;
        let mut kinds = vec![
            Kind::Ingress,
            Kind::IngressClass,
            Kind::Service,
            Kind::Secret,
            Kind::Pomerium,
            endpoints_kind,
        ];
        let gateway_api = options.convert.gateway.is_some();
        if gateway_api {
            kinds.extend(crate::controller::gateway_watch::KINDS);
        }
        let expected = scopes.sources(&kinds);
        let events = EventRecorderActor::new(
            client.clone(),
            &options.events_controller_name,
            options.pod_name.clone(),
        )
        .start();
        let status = StatusWriterActor::new(client.clone(), &options.pomerium_name).start();
        let reconciler = ReconcilerActor::new(
            Reconciler::new(options.convert.clone()),
            expected,
            ReconcilerOptions {
                secret_namespaces: options.watch_scopes.secret_namespaces(),
                pomerium_name: options.pomerium_name.clone(),
                status_service: options.status_service.clone(),
            },
            publisher,
            health.clone(),
        )
        .with_events(events.recipient())
        .with_status(status.recipient());
        let reconciler = match options.leader_election {
            Some(_) => reconciler.follower(),
            None => reconciler,
        }
        .start();
        let leader = options.leader_election.as_ref().map(|le| {
            LeaderActor::new(
                client.clone(),
                &le.namespace,
                &le.name,
                &le.identity,
                le.timing,
                reconciler.clone().recipient(),
            )
            .start()
        });
        let target: Recipient<Watched> = reconciler.clone().recipient();
        WatcherActor::new(
            Kind::IngressClass,
            None,
            Api::<IngressClass>::all(client.clone()),
            watcher::Config::default(),
            wrap_class,
            target.clone(),
        )
        .start();
        WatcherActor::new(
            Kind::Pomerium,
            None,
            Api::<Pomerium>::all(client.clone()),
            watcher::Config::default().fields(&format!("metadata.name={}", options.pomerium_name)),
            wrap_pomerium,
            target.clone(),
        )
        .start();
        for ns in scopes.namespaces(Kind::Ingress) {
            watch_in(&client, Kind::Ingress, ns, wrap_ingress, &target).start();
        }
        if gateway_api {
            crate::controller::gateway_watch::start(&client, scopes, &target);
        }
        for ns in scopes.namespaces(Kind::Service) {
            watch_in(&client, Kind::Service, ns, wrap_service, &target).start();
        }
        for ns in scopes.namespaces(Kind::Secret) {
            watch_in(&client, Kind::Secret, ns, wrap_secret, &target).start();
        }
        for ns in scopes.namespaces(endpoints_kind) {
            let endpoints = {
                let (client, target, ns) = (client.clone(), target.clone(), ns.clone());
                move || {
                    watch_in(&client, Kind::Endpoints, ns, wrap_endpoints, &target).start();
                }
            };
            if options.use_endpoints {
                endpoints();
            } else {
                let arbiter = actix::Arbiter::current();
                watch_in(&client, Kind::EndpointSlice, ns, wrap_slice, &target)
                    .on_unavailable(move || {
                        arbiter.spawn_fn(endpoints);
                    })
                    .start();
            }
        }
        Controller {
            reconciler,
            leader,
            health,
        }
    }
}

/// A watcher of a namespaced kind, in one namespace or (`None`) cluster-wide.
pub(crate) fn watch_in<K>(
    client: &kube::Client,
    kind: Kind,
    namespace: Option<String>,
    wrap: fn(K) -> KubeObject,
    target: &Recipient<Watched>,
) -> WatcherActor<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Unpin
        + 'static,
{
    let api = match &namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    WatcherActor::new(
        kind,
        namespace,
        api,
        watcher::Config::default(),
        wrap,
        target.clone(),
    )
}

/// Serves the health probes; returns the bound address.
pub fn serve_health(addr: SocketAddr, health: Health) -> Result<SocketAddr, ControllerError> {
    let (bound, server) =
        health::serve(addr, health).map_err(|source| ControllerError::Listen {
            what: "health-probe-bind-address",
            addr,
            source,
        })?;
    actix_rt::spawn(server);
    Ok(bound)
}

/// Everything `rampart controller` runs: probes, proxy listeners, watchers and reconciler.
pub struct Running {
    pub controller: Controller,
    pub health_addr: SocketAddr,
    pub proxy: Arc<ProxyState>,
    servers: Vec<actix_web::dev::ServerHandle>,
    shutdown_grace: u64,
}

impl Running {
    /// Stops the listeners, letting in-flight requests finish.
    pub async fn stop(self) {
        if let Some(l) = &self.controller.leader {
            let _ = l.send(Release).await;
        }
        self.proxy.metrics.set_ready(false);
        let stops = self.servers.iter().map(|h| h.stop(true));
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(self.shutdown_grace + 2),
            futures::future::join_all(stops),
        )
        .await;
    }
}

/// Starts the probes, the proxy (HTTPS on `--server-addr`, redirect on `--http-redirect-addr`,
/// metrics on `--metrics-bind-address`) and the controller feeding it. Inside an actix system.
pub async fn start(args: &ControllerArgs) -> Result<Running, ControllerError> {
    let options = args.options()?;
    let server_addr = listen_addr("server-addr", &args.server_addr)?;
    let redirect_addr = optional_addr("http-redirect-addr", &args.http_redirect_addr)?;
    let metrics_addr = optional_addr("metrics-bind-address", &args.metrics_bind_address)?;

    let health = Health::default();
    let health_addr = serve_health(args.health_addr()?, health.clone())?;
    tracing::info!(address = %health_addr, "health probes listening");

    let metrics = Metrics::new();
    let state = ProxyState::new(metrics.clone(), true);
    // cert-manager HTTP-01 solver routes, answered on the plain HTTP listener.
    let acme = ProxyState::new(metrics.clone(), false);
    let resolver = CertResolver::new();
    let certs = CertActor::start(resolver.clone(), Vec::new())
        .map_err(|e| ControllerError::Certificates(e.join("; ")))?;
    let opts = ListenOptions {
        workers: args.proxy_workers,
        shutdown_grace: args.shutdown_grace_seconds,
        // The listeners start before the `Pomerium` object is read: Pomerium's defaults
        // (`timeout_idle` 5m, `timeout_read` 30s).
        keep_alive: std::time::Duration::from_secs(300),
        request_timeout: std::time::Duration::from_secs(30),
    };
    let listen_err = |what: &'static str, addr: SocketAddr| {
        move |source| ControllerError::Listen { what, addr, source }
    };
    let mut servers = vec![proxy_server(
        state.clone(),
        server_addr,
        Some(server_config(resolver)),
        &opts,
    )
    .map_err(listen_err("server-addr", server_addr))?];
    tracing::info!(address = %server_addr, "proxy listening");
    if let Some(addr) = redirect_addr {
        servers.push(
            redirect_server(addr, None, Some(acme.clone()), &opts)
                .map_err(listen_err("http-redirect-addr", addr))?,
        );
        tracing::info!(address = %addr, "redirect listener");
    }
    if let Some(addr) = metrics_addr {
        servers
            .push(metrics_server(metrics, addr).map_err(listen_err("metrics-bind-address", addr))?);
        tracing::info!(address = %addr, "metrics listening");
    }
    let handles = servers.iter().map(|s| s.handle()).collect();
    for s in servers {
        actix_rt::spawn(s);
    }

    let client = args.client().await?;
    let feed = ProxyFeed::new(state.clone(), certs, args.data_dir.clone()).with_acme(acme);
    let controller = Controller::start(client, options, feed.publisher(), health);
    Ok(Running {
        controller,
        health_addr,
        proxy: state,
        servers: handles,
        shutdown_grace: args.shutdown_grace_seconds,
    })
}

/// `rampart controller`: runs until SIGINT/SIGTERM.
pub async fn run(args: ControllerArgs) -> Result<(), ControllerError> {
    let running = start(&args).await?;
    shutdown_signal().await;
    tracing::info!("shutting down");
    running.stop().await;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
