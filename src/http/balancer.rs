//! Choosing among a route's `to` URLs: weighted round-robin (default), least-request, random,
//! and hash-based (ring hash / maglev approximated by a weighted hash pick). Upstreams that
//! failed to connect are tried last for a few seconds. With health options, upstreams that
//! failed their active health checks (`http::health` publishes the results into
//! `UpstreamHealth`) or were ejected by outlier detection are left out, unless fewer than
//! `healthy_panic_threshold` percent are healthy (Envoy's panic mode: then all are used).
//! Everything here is atomics: the request path never waits.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::config::health::{HealthOptions, OutlierDetection};
use crate::config::route::{LoadBalancing, Upstream};

/// How long a connect failure takes an upstream out of the first choices.
pub const FAILURE_PENALTY: Duration = Duration::from_secs(5);

pub(crate) fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// Health of one upstream, written by the health checker and outlier detection, read by
/// `Balancer::order`.
#[derive(Debug, Default)]
pub struct HostHealth {
    /// Bit `k` set: active health check `k` currently marks this upstream unhealthy.
    active_failing: AtomicU32,
    /// Outlier ejection end (ms on the `now_ms` clock); 0 = not ejected.
    ejected_until: AtomicU64,
    /// How many times ejected (the ejection time multiplier), decaying per `interval`.
    ejections: AtomicU32,
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
    /// The ejection state last logged, so the return is logged once.
    logged_ejected: AtomicBool,
}

impl HostHealth {
    /// Sets the result of active health check `check`.
    pub fn set_check_failing(&self, check: usize, failing: bool) {
        let bit = 1u32 << (check.min(31));
        if failing {
            self.active_failing.fetch_or(bit, Ordering::Relaxed);
        } else {
            self.active_failing.fetch_and(!bit, Ordering::Relaxed);
        }
    }

    fn available(&self, now: u64) -> bool {
        self.active_failing.load(Ordering::Relaxed) == 0
            && self.ejected_until.load(Ordering::Relaxed) <= now
    }
}

/// The health of every upstream of a route, shared with its health-check tasks.
#[derive(Debug)]
pub struct UpstreamHealth {
    pub hosts: Vec<HostHealth>,
}

/// What came of one request to an upstream (for outlier detection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamOutcome {
    Status(u16),
    /// No connection, or the connection failed before a response (a gateway failure).
    ConnectFailure,
}

#[derive(Debug)]
pub struct Balancer {
    policy: LoadBalancing,
    /// Upstream indices repeated by weight.
    schedule: Vec<usize>,
    next: AtomicUsize,
    failed_until: Vec<AtomicU64>,
    active: Arc<Vec<AtomicUsize>>,
    /// Present when the route has health checks or outlier detection.
    health: Option<Arc<UpstreamHealth>>,
    outlier: Option<OutlierDetection>,
    panic_threshold: f64,
    /// `circuit_breaker_thresholds`: concurrent request limit of the route.
    max_requests: Option<usize>,
    /// Upstream URLs, for logs.
    names: Vec<String>,
}

/// Counts an in-flight request against an upstream (for least-request) until dropped.
pub struct InFlight {
    active: Arc<Vec<AtomicUsize>>,
    index: usize,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.active[self.index].fetch_sub(1, Ordering::Relaxed);
    }
}

impl Balancer {
    pub fn new(upstreams: &[Upstream], policy: LoadBalancing) -> Balancer {
        Self::with_health(upstreams, policy, &HealthOptions::default())
    }

    pub fn with_health(
        upstreams: &[Upstream],
        policy: LoadBalancing,
        health: &HealthOptions,
    ) -> Balancer {
        let mut schedule = Vec::new();
        // Interleave by weight so `a,3` `b,1` gives a a b a, not a a a b.
        let max = upstreams.iter().map(|u| u.weight).max().unwrap_or(1);
        for round in 0..max {
            for (i, u) in upstreams.iter().enumerate() {
                if u.weight > round {
                    schedule.push(i);
                }
            }
        }
        Balancer {
            policy,
            schedule,
            next: AtomicUsize::new(0),
            failed_until: upstreams.iter().map(|_| AtomicU64::new(0)).collect(),
            active: Arc::new(upstreams.iter().map(|_| AtomicUsize::new(0)).collect()),
            health: health.is_active().then(|| {
                Arc::new(UpstreamHealth {
                    hosts: upstreams.iter().map(|_| HostHealth::default()).collect(),
                })
            }),
            outlier: health.outlier.clone(),
            panic_threshold: health.panic_threshold,
            max_requests: health.circuit_breakers.max_requests.map(|n| n as usize),
            names: upstreams.iter().map(|u| u.url.to_string()).collect(),
        }
    }

    /// The shared health state (for the health-check tasks), when the route has health options.
    pub fn health(&self) -> Option<&Arc<UpstreamHealth>> {
        self.health.as_ref()
    }

    fn healthy(&self, i: usize, now: u64) -> bool {
        self.failed_until[i].load(Ordering::Relaxed) <= now
    }

    /// Which upstreams may be chosen: all, or (with health options, outside panic mode) the
    /// ones not failing active checks and not ejected. `None` = all.
    fn eligible(&self, now: u64) -> Option<Vec<bool>> {
        let health = self.health.as_ref()?;
        let flags: Vec<bool> = health.hosts.iter().map(|h| h.available(now)).collect();
        let healthy = flags.iter().filter(|&&f| f).count();
        let n = flags.len().max(1);
        if (healthy as f64) * 100.0 < self.panic_threshold * n as f64 {
            // Panic mode: too few healthy upstreams, so health is ignored.
            return None;
        }
        Some(flags)
    }

    /// The upstream indices to try, best first. `hash` is the routing key hash for
    /// RING_HASH/MAGLEV (client IP or `x-pomerium-routing-key`). Empty when health options
    /// leave no upstream (`no healthy upstream`).
    pub fn order(&self, hash: Option<u64>) -> Vec<usize> {
        let n = self.failed_until.len();
        if n == 1 && self.health.is_none() {
            return vec![0];
        }
        let now = now_ms();
        let eligible = self.eligible(now);
        let ok = |i: usize| eligible.as_ref().is_none_or(|e| e[i]);
        if !(0..n).any(ok) {
            return Vec::new();
        }
        let pick = |start: usize| {
            let len = self.schedule.len();
            let candidates = (0..len).map(|k| self.schedule[(start + k) % len]);
            candidates
                .clone()
                .find(|&i| ok(i) && self.healthy(i, now))
                .or_else(|| candidates.clone().find(|&i| ok(i)))
        };
        let first = match self.policy {
            LoadBalancing::RoundRobin => pick(self.next.fetch_add(1, Ordering::Relaxed)),
            LoadBalancing::Random => pick(rand::random::<usize>() % self.schedule.len()),
            LoadBalancing::LeastRequest => (0..n).filter(|&i| ok(i)).min_by_key(|&i| {
                (
                    !self.healthy(i, now),
                    self.active[i].load(Ordering::Relaxed),
                )
            }),
            LoadBalancing::RingHash | LoadBalancing::Maglev => {
                pick(hash.unwrap_or_else(rand::random) as usize % self.schedule.len())
            }
        };
        let first = first.unwrap_or(0);
        let mut order = vec![first];
        let rest = (1..n).map(|k| (first + k) % n).filter(|&i| ok(i));
        order.extend(rest.clone().filter(|&i| self.healthy(i, now)));
        order.extend(rest.filter(|&i| !self.healthy(i, now)));
        order
    }

    /// Whether the route's circuit breaker (`max_requests`) is open: that many requests are in
    /// flight already.
    pub fn overloaded(&self) -> bool {
        let Some(max) = self.max_requests else {
            return false;
        };
        self.active
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .sum::<usize>()
            >= max
    }

    /// Takes upstream `i` out of rotation for `FAILURE_PENALTY`.
    pub fn mark_failed(&self, i: usize) {
        self.failed_until[i].store(
            now_ms() + FAILURE_PENALTY.as_millis() as u64,
            Ordering::Relaxed,
        );
    }

    pub fn begin(&self, i: usize) -> InFlight {
        self.active[i].fetch_add(1, Ordering::Relaxed);
        InFlight {
            active: self.active.clone(),
            index: i,
        }
    }

    /// Feeds outlier detection with the outcome of a request to upstream `i`.
    pub fn record(&self, i: usize, outcome: UpstreamOutcome) {
        let (Some(o), Some(health)) = (&self.outlier, &self.health) else {
            return;
        };
        self.record_at(o, health, i, outcome, now_ms());
    }

    fn record_at(
        &self,
        o: &OutlierDetection,
        health: &UpstreamHealth,
        i: usize,
        outcome: UpstreamOutcome,
        now: u64,
    ) {
        let host = &health.hosts[i];
        let (is_5xx, is_gateway) = match outcome {
            UpstreamOutcome::ConnectFailure => (true, true),
            UpstreamOutcome::Status(s) => (s >= 500, matches!(s, 502..=504)),
        };
        if !is_5xx {
            host.consecutive_5xx.store(0, Ordering::Relaxed);
            host.consecutive_gateway.store(0, Ordering::Relaxed);
            if host.logged_ejected.swap(false, Ordering::Relaxed) {
                tracing::info!(upstream = %self.names[i], "upstream answered again after ejection");
            }
            return;
        }
        let c5 = host.consecutive_5xx.fetch_add(1, Ordering::Relaxed) + 1;
        let cg = if is_gateway {
            host.consecutive_gateway.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            host.consecutive_gateway.store(0, Ordering::Relaxed);
            0
        };
        let enforce = |pct: u32| pct >= 100 || (pct > 0 && rand::random::<u32>() % 100 < pct);
        let by_5xx = o.consecutive_5xx > 0 && c5 >= o.consecutive_5xx;
        let by_gateway = o.consecutive_gateway_failure > 0 && cg >= o.consecutive_gateway_failure;
        if !((by_5xx && enforce(o.enforcing_consecutive_5xx))
            || (by_gateway && enforce(o.enforcing_consecutive_gateway_failure)))
        {
            return;
        }
        if host.ejected_until.load(Ordering::Relaxed) > now {
            return;
        }
        // At most max_ejection_percent of the upstreams, but always at least one.
        let n = health.hosts.len();
        let ejected = health
            .hosts
            .iter()
            .filter(|h| h.ejected_until.load(Ordering::Relaxed) > now)
            .count();
        let allowed = ((n * o.max_ejection_percent as usize) / 100).max(1);
        if ejected >= allowed {
            return;
        }
        // The multiplier decays by one per `interval` spent un-ejected since the last ejection.
        let last_end = host.ejected_until.load(Ordering::Relaxed);
        let decay = if last_end == 0 {
            0
        } else {
            ((now - last_end) / o.interval.as_millis().max(1) as u64).min(u32::MAX as u64) as u32
        };
        let times = host
            .ejections
            .load(Ordering::Relaxed)
            .saturating_sub(decay)
            .saturating_add(1);
        host.ejections.store(times, Ordering::Relaxed);
        let cap = o.max_ejection_time.max(o.base_ejection_time);
        let span = (o.base_ejection_time * times).min(cap);
        host.ejected_until
            .store(now + span.as_millis() as u64, Ordering::Relaxed);
        host.consecutive_5xx.store(0, Ordering::Relaxed);
        host.consecutive_gateway.store(0, Ordering::Relaxed);
        host.logged_ejected.store(true, Ordering::Relaxed);
        tracing::warn!(
            upstream = %self.names[i],
            consecutive_errors = c5,
            ejected_for_ms = span.as_millis() as u64,
            "outlier detection ejected an upstream"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ups(weights: &[u32]) -> Vec<Upstream> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| Upstream {
                url: url::Url::parse(&format!("http://u{i}.test")).unwrap(),
                scheme: "http",
                authority: format!("u{i}.test"),
                base: format!("http://u{i}.test"),
                weight: *w,
            })
            .collect()
    }

    #[test]
    fn round_robin_rotates_by_weight() {
        let b = Balancer::new(&ups(&[2, 1]), LoadBalancing::RoundRobin);
        let firsts: Vec<usize> = (0..6).map(|_| b.order(None)[0]).collect();
        assert_eq!(firsts, vec![0, 1, 0, 0, 1, 0]);
        assert_eq!(b.order(None).len(), 2);
    }

    #[test]
    fn failed_upstreams_go_last() {
        let b = Balancer::new(&ups(&[1, 1, 1]), LoadBalancing::RoundRobin);
        b.mark_failed(1);
        for _ in 0..6 {
            let o = b.order(None);
            assert_ne!(o[0], 1);
            assert_eq!(*o.last().unwrap(), 1);
            assert_eq!(o.len(), 3);
        }
    }

    #[test]
    fn least_request_prefers_idle() {
        let b = Balancer::new(&ups(&[1, 1]), LoadBalancing::LeastRequest);
        let _busy = b.begin(0);
        assert_eq!(b.order(None)[0], 1);
    }

    #[test]
    fn hash_is_sticky() {
        let b = Balancer::new(&ups(&[1, 1, 1]), LoadBalancing::RingHash);
        let a = b.order(Some(12345))[0];
        for _ in 0..5 {
            assert_eq!(b.order(Some(12345))[0], a);
        }
    }
    fn outlier(consecutive: u32, pct: u32) -> HealthOptions {
        HealthOptions {
            outlier: Some(OutlierDetection {
                consecutive_5xx: consecutive,
                max_ejection_percent: pct,
                base_ejection_time: Duration::from_secs(10),
                ..OutlierDetection::default()
            }),
            ..HealthOptions::default()
        }
    }

    #[test]
    fn consecutive_5xx_ejects_for_base_ejection_time() {
        let b = Balancer::with_health(&ups(&[1, 1]), LoadBalancing::RoundRobin, &outlier(3, 50));
        let (o, h) = (b.outlier.clone().unwrap(), b.health.clone().unwrap());
        b.record_at(&o, &h, 1, UpstreamOutcome::Status(500), 1000);
        b.record_at(&o, &h, 1, UpstreamOutcome::Status(200), 1000);
        b.record_at(&o, &h, 1, UpstreamOutcome::Status(503), 1000);
        b.record_at(&o, &h, 1, UpstreamOutcome::ConnectFailure, 1000);
        assert!(h.hosts[1].available(1000), "a success resets the count");
        b.record_at(&o, &h, 1, UpstreamOutcome::Status(500), 1000);
        assert!(!h.hosts[1].available(1000));
        assert!(!h.hosts[1].available(10_999));
        assert!(h.hosts[1].available(11_000));
        // While ejected, only upstream 0 is offered.
        h.hosts[1]
            .ejected_until
            .store(now_ms() + 60_000, Ordering::Relaxed);
        for _ in 0..4 {
            assert_eq!(b.order(None), vec![0]);
        }
    }

    #[test]
    fn repeated_ejections_last_longer_and_decay() {
        let b = Balancer::with_health(&ups(&[1, 1]), LoadBalancing::RoundRobin, &outlier(1, 50));
        let (o, h) = (b.outlier.clone().unwrap(), b.health.clone().unwrap());
        b.record_at(&o, &h, 0, UpstreamOutcome::Status(502), 1000);
        assert_eq!(h.hosts[0].ejected_until.load(Ordering::Relaxed), 11_000);
        b.record_at(&o, &h, 0, UpstreamOutcome::Status(502), 11_000);
        assert_eq!(h.hosts[0].ejected_until.load(Ordering::Relaxed), 31_000);
        // 30 s (three intervals of 10 s) later the multiplier has decayed from 2 to 0.
        b.record_at(&o, &h, 0, UpstreamOutcome::Status(502), 61_000);
        assert_eq!(h.hosts[0].ejected_until.load(Ordering::Relaxed), 71_000);
    }

    #[test]
    fn max_ejection_percent_keeps_at_least_one_ejectable_and_caps_the_rest() {
        let b = Balancer::with_health(
            &ups(&[1, 1, 1, 1]),
            LoadBalancing::RoundRobin,
            &outlier(1, 10),
        );
        let (o, h) = (b.outlier.clone().unwrap(), b.health.clone().unwrap());
        b.record_at(&o, &h, 0, UpstreamOutcome::Status(500), 1000);
        b.record_at(&o, &h, 1, UpstreamOutcome::Status(500), 1000);
        assert!(!h.hosts[0].available(1000));
        assert!(
            h.hosts[1].available(1000),
            "10% of 4 still allows one, not two"
        );
    }

    #[test]
    fn gateway_failures_eject_only_when_enforced() {
        let mut opts = outlier(0, 100);
        let b = Balancer::with_health(&ups(&[1, 1]), LoadBalancing::RoundRobin, &opts);
        let (o, h) = (b.outlier.clone().unwrap(), b.health.clone().unwrap());
        for _ in 0..10 {
            b.record_at(&o, &h, 0, UpstreamOutcome::Status(502), 1000);
        }
        assert!(
            h.hosts[0].available(1000),
            "enforcing_consecutive_gateway_failure defaults to 0"
        );
        opts.outlier
            .as_mut()
            .unwrap()
            .enforcing_consecutive_gateway_failure = 100;
        let b = Balancer::with_health(&ups(&[1, 1]), LoadBalancing::RoundRobin, &opts);
        let (o, h) = (b.outlier.clone().unwrap(), b.health.clone().unwrap());
        for _ in 0..5 {
            b.record_at(&o, &h, 0, UpstreamOutcome::Status(502), 1000);
        }
        assert!(!h.hosts[0].available(1000));
    }

    #[test]
    fn active_check_failures_leave_upstreams_out_until_panic() {
        let opts = HealthOptions {
            outlier: Some(OutlierDetection::default()),
            ..HealthOptions::default()
        };
        let b = Balancer::with_health(&ups(&[1, 1, 1]), LoadBalancing::RoundRobin, &opts);
        let h = b.health().unwrap().clone();
        h.hosts[2].set_check_failing(0, true);
        for _ in 0..6 {
            let o = b.order(None);
            assert!(!o.contains(&2), "{o:?}");
            assert_eq!(o.len(), 2);
        }
        // Two of three failing: 33% healthy < 50% panic threshold, so all are used again.
        h.hosts[1].set_check_failing(1, true);
        assert_eq!(b.order(None).len(), 3);
        h.hosts[1].set_check_failing(1, false);
        assert_eq!(b.order(None).len(), 2);
    }

    #[test]
    fn circuit_breaker_opens_at_max_requests() {
        let opts = HealthOptions {
            circuit_breakers: crate::config::health::CircuitBreakers {
                max_requests: Some(2),
            },
            ..HealthOptions::default()
        };
        let b = Balancer::with_health(&ups(&[1, 1]), LoadBalancing::RoundRobin, &opts);
        let first = b.begin(0);
        assert!(!b.overloaded());
        let second = b.begin(1);
        assert!(b.overloaded());
        drop(first);
        assert!(!b.overloaded());
        drop(second);
        assert!(!Balancer::new(&ups(&[1]), LoadBalancing::RoundRobin).overloaded());
    }

    #[test]
    fn zero_panic_threshold_can_leave_no_upstream() {
        let opts = HealthOptions {
            outlier: Some(OutlierDetection::default()),
            panic_threshold: 0.0,
            ..HealthOptions::default()
        };
        let b = Balancer::with_health(&ups(&[1]), LoadBalancing::RoundRobin, &opts);
        b.health().unwrap().hosts[0].set_check_failing(0, true);
        assert!(b.order(None).is_empty());
    }
}
