//! Active health checks (`health_checks`): one task per upstream and check probes the upstream
//! every `interval` and publishes the result into the route's `UpstreamHealth` atomics, which
//! `Balancer::order` reads. The tasks hold only a weak reference: when the route's entry is
//! dropped (config change), they stop at their next tick.
//!
//! State per upstream and check, as in Envoy: an upstream starts healthy until its first probe;
//! the first result counts at once; after that `unhealthy_threshold` failures in a row mark it
//! unhealthy and `healthy_threshold` successes in a row healthy again.

use std::sync::{Arc, Weak};
use std::time::Duration;

use rustls::ClientConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::balancer::UpstreamHealth;
use super::h1client::{self, Target};
use crate::config::health::{CheckKind, HealthCheck};
use crate::config::route::Upstream;

/// What a probe needs to reach one upstream (owned, so the task outlives the config borrow).
#[derive(Debug, Clone)]
pub struct ProbeTarget {
    pub tls_key: u64,
    pub tls: Arc<ClientConfig>,
    pub https: bool,
    pub base: String,
    pub host: String,
    pub port: u16,
    pub server_name: Option<String>,
    /// Default `Host` header: the upstream's `host[:port]`.
    pub authority: String,
    /// For logs.
    pub url: String,
}

impl ProbeTarget {
    pub fn new(
        up: &Upstream,
        tls_key: u64,
        tls: &Arc<ClientConfig>,
        server_name: Option<&str>,
    ) -> ProbeTarget {
        ProbeTarget {
            tls_key,
            tls: tls.clone(),
            https: up.scheme == "https",
            base: up.base.clone(),
            host: up
                .url
                .host_str()
                .unwrap_or_default()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port: up.url.port_or_known_default().unwrap_or(80),
            server_name: server_name.map(str::to_string),
            authority: up.authority.clone(),
            url: up.url.to_string(),
        }
    }

    fn target(&self) -> Target<'_> {
        Target {
            tls_key: self.tls_key,
            tls: &self.tls,
            https: self.https,
            base: &self.base,
            host: &self.host,
            port: self.port,
            server_name: self.server_name.as_deref(),
        }
    }
}

/// Consecutive-result bookkeeping for one upstream and check (pure).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckState {
    checked: bool,
    unhealthy: bool,
    successes: u32,
    failures: u32,
}

impl CheckState {
    /// Records one probe result; returns `Some(unhealthy)` when the state changed.
    pub fn observe(&mut self, ok: bool, check: &HealthCheck) -> Option<bool> {
        let before = self.unhealthy;
        if ok {
            self.successes += 1;
            self.failures = 0;
        } else {
            self.failures += 1;
            self.successes = 0;
        }
        if !self.checked {
            self.checked = true;
            self.unhealthy = !ok;
        } else if self.unhealthy && self.successes >= check.healthy_threshold {
            self.unhealthy = false;
        } else if !self.unhealthy && self.failures >= check.unhealthy_threshold {
            self.unhealthy = true;
        }
        (before != self.unhealthy).then_some(self.unhealthy)
    }

    pub fn unhealthy(&self) -> bool {
        self.unhealthy
    }
}

/// Whether `status` is in one of the `[start, end)` ranges.
pub fn status_expected(status: u16, ranges: &[(u16, u16)]) -> bool {
    ranges.iter().any(|&(s, e)| status >= s && status < e)
}

/// Parses the status code of an HTTP/1.x status line at the start of `buf`.
pub fn parse_status_line(buf: &[u8]) -> Option<u16> {
    let line_end = buf.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&buf[..line_end]).ok()?;
    let mut parts = line.splitn(3, ' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

/// One probe: `Ok(())` when healthy, else why not.
pub async fn probe(target: &ProbeTarget, check: &HealthCheck) -> Result<(), String> {
    let run = async {
        let mut conn = h1client::connect(&target.target())
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let CheckKind::Http {
            path,
            host,
            expected_statuses,
        } = &check.kind
        else {
            return Ok(());
        };
        let host = host.as_deref().unwrap_or(&target.authority);
        let head = format!(
            "GET {path} HTTP/1.1\r\nhost: {host}\r\nuser-agent: Envoy/HC\r\nconnection: close\r\n\r\n"
        );
        conn.write_all(head.as_bytes())
            .await
            .map_err(|e| format!("send: {e}"))?;
        let mut buf = Vec::with_capacity(256);
        let mut chunk = [0u8; 1024];
        let status = loop {
            if let Some(s) = parse_status_line(&buf) {
                break s;
            }
            if buf.len() > 8192 {
                return Err("no HTTP status line".to_string());
            }
            let n = conn
                .read(&mut chunk)
                .await
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("connection closed before a status line".to_string());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        if status_expected(status, expected_statuses) {
            Ok(())
        } else {
            Err(format!("status {status}"))
        }
    };
    match tokio::time::timeout(check.timeout, run).await {
        Ok(r) => r,
        Err(_) => Err(format!("timed out after {:?}", check.timeout)),
    }
}

/// Starts the checks of one route: a task per (upstream, check) on the current Tokio runtime.
/// Without a runtime (offline tools, unit tests) nothing is started and upstreams stay healthy.
pub fn start(
    route_id: &str,
    targets: Vec<ProbeTarget>,
    checks: &[HealthCheck],
    health: &Arc<UpstreamHealth>,
) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!(
            route = route_id,
            "no async runtime here: active health checks not started"
        );
        return;
    };
    for (index, target) in targets.into_iter().enumerate() {
        for (k, check) in checks.iter().enumerate() {
            let weak = Arc::downgrade(health);
            runtime.spawn(run(
                route_id.to_string(),
                target.clone(),
                index,
                k,
                check.clone(),
                weak,
            ));
        }
    }
}

async fn run(
    route_id: String,
    target: ProbeTarget,
    index: usize,
    k: usize,
    check: HealthCheck,
    health: Weak<UpstreamHealth>,
) {
    let mut state = CheckState::default();
    loop {
        if health.strong_count() == 0 {
            return;
        }
        let result = probe(&target, &check).await;
        let Some(h) = health.upgrade() else {
            return;
        };
        if let Some(unhealthy) = state.observe(result.is_ok(), &check) {
            h.hosts[index].set_check_failing(k, unhealthy);
            match (&result, unhealthy) {
                (Err(why), true) => tracing::warn!(
                    route = %route_id, upstream = %target.url, check = k, reason = %why,
                    "health check: upstream unhealthy"
                ),
                _ => tracing::info!(
                    route = %route_id, upstream = %target.url, check = k,
                    "health check: upstream healthy"
                ),
            }
        }
        drop(h);
        tokio::time::sleep(check.interval.max(Duration::from_millis(10))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(healthy: u32, unhealthy: u32) -> HealthCheck {
        HealthCheck {
            timeout: Duration::from_secs(1),
            interval: Duration::from_secs(1),
            unhealthy_threshold: unhealthy,
            healthy_threshold: healthy,
            kind: CheckKind::Tcp,
        }
    }

    #[test]
    fn first_result_counts_then_thresholds() {
        let c = check(2, 3);
        let mut s = CheckState::default();
        assert_eq!(s.observe(true, &c), None, "starts healthy");
        assert_eq!(s.observe(false, &c), None);
        assert_eq!(s.observe(false, &c), None);
        assert_eq!(s.observe(false, &c), Some(true));
        assert_eq!(s.observe(true, &c), None);
        assert_eq!(
            s.observe(false, &c),
            None,
            "a failure resets the success run"
        );
        assert_eq!(s.observe(true, &c), None);
        assert_eq!(s.observe(true, &c), Some(false));

        let mut s = CheckState::default();
        assert_eq!(
            s.observe(false, &c),
            Some(true),
            "the first probe decides at once"
        );
        assert!(s.unhealthy());
    }

    #[test]
    fn status_lines_and_ranges() {
        assert_eq!(
            parse_status_line(b"HTTP/1.1 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(parse_status_line(b"HTTP/1.0 200\r\n"), Some(200));
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK"), None);
        assert_eq!(parse_status_line(b"SSH-2.0-OpenSSH\r\n"), None);
        assert!(status_expected(200, &[(200, 201)]));
        assert!(!status_expected(204, &[(200, 201)]));
        assert!(status_expected(302, &[(200, 201), (300, 400)]));
    }
}
