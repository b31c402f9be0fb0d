//! Choosing among a route's `to` URLs: weighted round-robin (default), least-request, random,
//! and hash-based (ring hash / maglev approximated by a weighted hash pick). Upstreams that
//! failed to connect are skipped for a few seconds (passive health).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::config::route::{LoadBalancing, Upstream};

/// How long a connect failure takes an upstream out of the first choices.
pub const FAILURE_PENALTY: Duration = Duration::from_secs(5);

fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

#[derive(Debug)]
pub struct Balancer {
    policy: LoadBalancing,
    /// Upstream indices repeated by weight.
    schedule: Vec<usize>,
    next: AtomicUsize,
    failed_until: Vec<AtomicU64>,
    active: Arc<Vec<AtomicUsize>>,
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
        }
    }

    fn healthy(&self, i: usize, now: u64) -> bool {
        self.failed_until[i].load(Ordering::Relaxed) <= now
    }

    /// The upstream indices to try, best first. `hash` is the routing key hash for
    /// RING_HASH/MAGLEV (client IP or `x-pomerium-routing-key`).
    pub fn order(&self, hash: Option<u64>) -> Vec<usize> {
        let n = self.failed_until.len();
        if n == 1 {
            return vec![0];
        }
        let now = now_ms();
        let first = match self.policy {
            LoadBalancing::RoundRobin => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                (0..self.schedule.len())
                    .map(|k| self.schedule[(start + k) % self.schedule.len()])
                    .find(|&i| self.healthy(i, now))
            }
            LoadBalancing::Random => {
                let start = rand::random::<usize>() % self.schedule.len();
                (0..self.schedule.len())
                    .map(|k| self.schedule[(start + k) % self.schedule.len()])
                    .find(|&i| self.healthy(i, now))
            }
            LoadBalancing::LeastRequest => (0..n)
                .filter(|&i| self.healthy(i, now))
                .min_by_key(|&i| self.active[i].load(Ordering::Relaxed)),
            LoadBalancing::RingHash | LoadBalancing::Maglev => {
                let start = hash.unwrap_or_else(rand::random) as usize % self.schedule.len();
                (0..self.schedule.len())
                    .map(|k| self.schedule[(start + k) % self.schedule.len()])
                    .find(|&i| self.healthy(i, now))
            }
        };
        let first = first.unwrap_or(0);
        let mut order = vec![first];
        let rest = (1..n).map(|k| (first + k) % n);
        order.extend(rest.clone().filter(|&i| self.healthy(i, now)));
        order.extend(rest.filter(|&i| !self.healthy(i, now)));
        order
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
}
