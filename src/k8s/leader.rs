//! Leader election over a `coordination.k8s.io/v1` Lease, client-go style (plain logic).
//!
//! Expiry is judged on the local clock: a lease is expired when its record (holder + renew
//! time) has not changed for `lease_duration` since we first saw it, so clock skew between
//! replicas does not matter.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;

/// What to do with the Lease now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No Lease yet: create it with us as holder.
    Create,
    /// Write us as holder (free or expired lease): a new term.
    Acquire,
    /// We hold it: write a new renew time.
    Renew,
    /// Someone else holds a live lease.
    Follow { holder: String },
}

/// Timing of the election.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long a lease lives without renewal.
    pub lease_duration: Duration,
    /// How often the leader renews.
    pub renew_period: Duration,
    /// How often a follower checks.
    pub retry_period: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            lease_duration: Duration::from_secs(15),
            renew_period: Duration::from_secs(5),
            retry_period: Duration::from_secs(2),
        }
    }
}

type Record = (Option<String>, Option<String>);

fn record(lease: &Lease) -> Record {
    let spec = lease.spec.as_ref();
    (
        spec.and_then(|s| s.holder_identity.clone()),
        spec.and_then(|s| s.renew_time.as_ref())
            .map(|t| t.0.to_string()),
    )
}

/// Our view of the Lease.
#[derive(Debug)]
pub struct Elector {
    pub identity: String,
    pub timing: Timing,
    observed: Option<(Record, Instant)>,
}

impl Elector {
    pub fn new(identity: impl Into<String>, timing: Timing) -> Self {
        Elector {
            identity: identity.into(),
            timing,
            observed: None,
        }
    }

    /// Decides from the current Lease (None = not found).
    pub fn decide(&mut self, lease: Option<&Lease>, now: Instant) -> Decision {
        let Some(lease) = lease else {
            self.observed = None;
            return Decision::Create;
        };
        let rec = record(lease);
        match &self.observed {
            Some((r, _)) if *r == rec => {}
            _ => self.observed = Some((rec.clone(), now)),
        }
        let holder = rec.0.clone().unwrap_or_default();
        if holder == self.identity {
            return Decision::Renew;
        }
        if holder.is_empty() {
            return Decision::Acquire;
        }
        let duration = lease
            .spec
            .as_ref()
            .and_then(|s| s.lease_duration_seconds)
            .map(|s| Duration::from_secs(s.max(1) as u64))
            .unwrap_or(self.timing.lease_duration);
        let since = self.observed.as_ref().map(|(_, t)| *t).unwrap_or(now);
        if now.duration_since(since) >= duration {
            Decision::Acquire
        } else {
            Decision::Follow { holder }
        }
    }

    /// The Lease to write for `decision` (Create/Acquire/Renew), based on `current`.
    pub fn lease_for(
        &self,
        decision: &Decision,
        current: Option<&Lease>,
        name: &str,
        namespace: &str,
    ) -> Lease {
        let now = MicroTime(Timestamp::now());
        let mut lease = current.cloned().unwrap_or_else(|| Lease {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                ..Default::default()
            },
            spec: None,
        });
        let mut spec = lease.spec.take().unwrap_or_default();
        let new_term = matches!(decision, Decision::Create | Decision::Acquire);
        spec.holder_identity = Some(self.identity.clone());
        spec.lease_duration_seconds = Some(self.timing.lease_duration.as_secs().max(1) as i32);
        spec.renew_time = Some(now.clone());
        if new_term {
            spec.acquire_time = Some(now);
            spec.lease_transitions = Some(match decision {
                Decision::Create => 0,
                _ => spec.lease_transitions.unwrap_or(0) + 1,
            });
        }
        lease.spec = Some(spec);
        lease
    }
}

/// The Lease to write when giving it up (holder cleared, 1 s duration), like client-go's
/// release on cancel.
pub fn released_lease(current: &Lease) -> Lease {
    let mut lease = current.clone();
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    spec.holder_identity = Some(String::new());
    spec.lease_duration_seconds = Some(1);
    lease
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renew: &str) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some("l".into()),
                namespace: Some("ns".into()),
                resource_version: Some("1".into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                lease_duration_seconds: Some(10),
                renew_time: Some(MicroTime(renew.parse().unwrap())),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn create_follow_take_over_and_renew() {
        let t0 = Instant::now();
        let mut e = Elector::new("me", Timing::default());
        assert_eq!(e.decide(None, t0), Decision::Create);
        let other = lease("other", "2024-01-01T00:00:00Z");
        assert_eq!(
            e.decide(Some(&other), t0),
            Decision::Follow {
                holder: "other".into()
            }
        );
        // Unchanged for less than the lease duration: still theirs.
        assert!(matches!(
            e.decide(Some(&other), t0 + Duration::from_secs(9)),
            Decision::Follow { .. }
        ));
        // Renewed by them: the clock restarts.
        let renewed = lease("other", "2024-01-01T00:00:05Z");
        assert!(matches!(
            e.decide(Some(&renewed), t0 + Duration::from_secs(9)),
            Decision::Follow { .. }
        ));
        assert!(matches!(
            e.decide(Some(&renewed), t0 + Duration::from_secs(18)),
            Decision::Follow { .. }
        ));
        // Not renewed for the lease duration: expired.
        assert_eq!(
            e.decide(Some(&renewed), t0 + Duration::from_secs(19)),
            Decision::Acquire
        );
        let mine = e.lease_for(&Decision::Acquire, Some(&renewed), "l", "ns");
        let spec = mine.spec.as_ref().unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("me"));
        assert_eq!(spec.lease_transitions, Some(1));
        assert_eq!(
            mine.metadata.resource_version.as_deref(),
            Some("1"),
            "replace is conditional"
        );
        assert_eq!(
            e.decide(Some(&mine), t0 + Duration::from_secs(20)),
            Decision::Renew
        );
        // A released lease is free at once.
        let released = released_lease(&mine);
        let mut other = Elector::new("other", Timing::default());
        assert_eq!(other.decide(Some(&released), t0), Decision::Acquire);
    }
}
