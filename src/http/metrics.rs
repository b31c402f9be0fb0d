//! Prometheus metrics (prometheus-client) and the small metrics/health server:
//! `/healthz` (alive), `/readyz` (a configuration is loaded), `/metrics`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A route id as a label value, shared (labels are built for every request).
#[derive(Clone, Debug, Hash, PartialEq, Eq, Default)]
pub struct RouteLabel(pub Arc<str>);

impl RouteLabel {
    pub fn new(id: &str) -> RouteLabel {
        RouteLabel(id.into())
    }
}

impl EncodeLabelValue for RouteLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        use std::fmt::Write as _;
        encoder.write_str(&self.0)
    }
}

/// A route's metric series: its label, and (once it has answered) handles to its latency
/// histogram and its `200` counter, so the common case skips the family lookups.
#[derive(Debug, Default)]
pub struct RouteMetrics {
    label: RouteLabel,
    latency: std::sync::OnceLock<Histogram>,
    ok: std::sync::OnceLock<Counter>,
}

impl RouteMetrics {
    pub fn new(id: &str) -> RouteMetrics {
        RouteMetrics {
            label: RouteLabel::new(id),
            ..RouteMetrics::default()
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: RouteLabel,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: RouteLabel,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamErrorLabels {
    pub route: String,
    /// `connect`, `timeout`, `idle_timeout`, `protocol`.
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `ok` or `error`.
    pub result: &'static str,
}

type HistogramFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// All data-plane metrics plus readiness. Shared by every worker.
pub struct Metrics {
    registry: Mutex<Registry>,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: HistogramFamily,
    pub upstream_errors: Family<UpstreamErrorLabels, Counter>,
    pub config_reloads: Family<ReloadLabels, Counter>,
    ready: AtomicBool,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("rampart");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let upstream_errors = Family::<UpstreamErrorLabels, Counter>::default();
        let config_reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "http_requests",
            "Requests answered, by route id and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to the response head, by route id",
            latency.clone(),
        );
        registry.register(
            "upstream_errors",
            "Upstream failures by route id and kind",
            upstream_errors.clone(),
        );
        registry.register(
            "config_reloads",
            "Configuration reloads by result",
            config_reloads.clone(),
        );
        Arc::new(Metrics {
            registry: Mutex::new(registry),
            requests,
            latency,
            upstream_errors,
            config_reloads,
            ready: AtomicBool::new(false),
        })
    }

    /// Counts a request answered for `route` (`None`: no route matched).
    pub fn observe_request(&self, route: Option<&RouteMetrics>, status: u16, elapsed: Duration) {
        static NO_ROUTE: std::sync::OnceLock<RouteMetrics> = std::sync::OnceLock::new();
        let route = route.unwrap_or_else(|| NO_ROUTE.get_or_init(RouteMetrics::default));
        let labels = |status| RequestLabels {
            route: route.label.clone(),
            status,
        };
        if status == 200 {
            route
                .ok
                .get_or_init(|| self.requests.get_or_create(&labels(200)).clone())
                .inc();
        } else {
            self.requests.get_or_create(&labels(status)).inc();
        }
        route
            .latency
            .get_or_init(|| {
                let labels = RouteLabels {
                    route: route.label.clone(),
                };
                self.latency.get_or_create(&labels).clone()
            })
            .observe(elapsed.as_secs_f64());
    }

    pub fn upstream_error(&self, route: &str, kind: &'static str) {
        self.upstream_errors
            .get_or_create(&UpstreamErrorLabels {
                route: route.to_string(),
                kind,
            })
            .inc();
    }

    /// For the config actor: count a reload attempt.
    pub fn config_reload(&self, ok: bool) {
        self.config_reloads
            .get_or_create(&ReloadLabels {
                result: if ok { "ok" } else { "error" },
            })
            .inc();
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

async fn readyz(m: web::Data<Arc<Metrics>>) -> HttpResponse {
    if m.is_ready() {
        HttpResponse::Ok()
            .content_type("text/plain")
            .body("ready\n")
    } else {
        HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body("no configuration loaded\n")
    }
}

async fn metrics(m: web::Data<Arc<Metrics>>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(m.encode())
}

/// The metrics/health server (one worker, plain HTTP).
pub fn metrics_server(
    metrics_state: Arc<Metrics>,
    addr: std::net::SocketAddr,
) -> std::io::Result<actix_web::dev::Server> {
    metrics_server_on(metrics_state, super::server::bind_listener(addr)?)
}

/// The metrics listener on an already bound socket.
pub fn metrics_server_on(
    metrics_state: Arc<Metrics>,
    socket: std::net::TcpListener,
) -> std::io::Result<actix_web::dev::Server> {
    let data = web::Data::new(metrics_state);
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/metrics", web::get().to(metrics))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(socket)?
    .run())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_counters() {
        let m = Metrics::new();
        let r1 = RouteMetrics::new("r1");
        m.observe_request(Some(&r1), 200, Duration::from_millis(3));
        m.observe_request(Some(&r1), 200, Duration::from_millis(3));
        m.observe_request(Some(&r1), 503, Duration::from_millis(3));
        m.observe_request(None, 404, Duration::from_millis(1));
        m.upstream_error("r1", "connect");
        m.config_reload(true);
        let text = m.encode();
        assert!(
            text.contains("rampart_http_requests_total{route=\"r1\",status=\"200\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("rampart_http_requests_total{route=\"r1\",status=\"503\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("rampart_http_request_duration_seconds_count{route=\"r1\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("rampart_http_requests_total{route=\"\",status=\"404\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("rampart_upstream_errors_total{route=\"r1\",kind=\"connect\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("rampart_config_reloads_total{result=\"ok\"} 1"),
            "{text}"
        );
        assert!(!m.is_ready());
    }
}
