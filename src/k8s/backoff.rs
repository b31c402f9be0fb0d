//! Retry delays of the watchers while the API server is unreachable.
//!
//! kube-runtime's default (client-go's: 0.8 s doubling up to 30 s) makes a watcher sleep up to
//! half a minute after the API server is back, because the sleep started during the outage
//! runs to its end. Here the delay doubles from 100 ms but stops at 1 s (with jitter, so the
//! watchers of all kinds and replicas do not retry in lockstep), so a change made after the
//! API server returns is seen within about a second. `StreamBackoff` resets it on every
//! successful event (a list or a watch event).

use std::time::Duration;

use kube::runtime::utils::Backoff;
use rand::Rng;

/// Exponential delays from `min` doubling up to `max`, each multiplied by a random factor in
/// `[0.5, 1.0]`.
#[derive(Debug, Clone)]
pub struct WatchBackoff {
    min: Duration,
    max: Duration,
    current: Duration,
    jitter: bool,
}

impl WatchBackoff {
    pub const MIN: Duration = Duration::from_millis(100);
    pub const MAX: Duration = Duration::from_secs(1);

    pub fn new(min: Duration, max: Duration, jitter: bool) -> Self {
        WatchBackoff {
            min,
            max,
            current: min,
            jitter,
        }
    }
}

impl Default for WatchBackoff {
    fn default() -> Self {
        WatchBackoff::new(Self::MIN, Self::MAX, true)
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = self.current;
        self.current = (self.current * 2).min(self.max);
        if self.jitter {
            Some(delay.mul_f64(rand::thread_rng().gen_range(0.5..=1.0)))
        } else {
            Some(delay)
        }
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.current = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = WatchBackoff::new(Duration::from_millis(100), Duration::from_secs(1), false);
        let ms: Vec<u128> = b.by_ref().take(7).map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![100, 200, 400, 800, 1000, 1000, 1000]);
        b.reset();
        assert_eq!(b.next(), Some(Duration::from_millis(100)));
    }

    #[test]
    fn jitter_stays_within_half_and_full_delay() {
        let mut b = WatchBackoff::default();
        for _ in 0..50 {
            let d = b.next().unwrap();
            assert!(d <= WatchBackoff::MAX, "{d:?}");
            assert!(d >= WatchBackoff::MIN / 2, "{d:?}");
        }
    }
}
