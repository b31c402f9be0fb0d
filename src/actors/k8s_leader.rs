//! Leader election actor: a thin shell over `k8s::leader::Elector`. It reads the Lease,
//! creates/acquires/renews it with optimistic concurrency (a stale write gets 409 Conflict and
//! loses), and tells the reconciler actor when leadership changes. Only the leader writes
//! status and events; every replica watches and serves traffic.

use std::time::Instant;

use actix::prelude::*;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};

use crate::k8s::leader::{released_lease, Decision, Elector, Timing};

/// Leadership changed (sent to the reconciler actor).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct LeaderChanged(pub bool);

/// Give up the lease (if held) and stop electing.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Release;

pub struct LeaderActor {
    api: Api<Lease>,
    name: String,
    namespace: String,
    elector: Elector,
    leader: bool,
    last_renewed: Option<Instant>,
    target: Recipient<LeaderChanged>,
    released: bool,
}

impl LeaderActor {
    pub fn new(
        client: kube::Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timing: Timing,
        target: Recipient<LeaderChanged>,
    ) -> Self {
        LeaderActor {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            namespace: namespace.to_string(),
            elector: Elector::new(identity, timing),
            leader: false,
            last_renewed: None,
            target,
            released: false,
        }
    }

    fn set_leader(&mut self, leader: bool) {
        if leader != self.leader {
            self.leader = leader;
            if leader {
                tracing::info!(lease = %format!("{}/{}", self.namespace, self.name), identity = %self.elector.identity, "became leader");
            } else {
                tracing::warn!(lease = %format!("{}/{}", self.namespace, self.name), identity = %self.elector.identity, "lost leadership");
            }
            self.target.do_send(LeaderChanged(leader));
        }
    }

    fn schedule(&mut self, ctx: &mut Context<Self>) {
        if self.released {
            return;
        }
        let t = self.elector.timing;
        let wait = if self.leader {
            t.renew_period
        } else {
            t.retry_period
        };
        ctx.run_later(wait, |act, ctx| act.tick(ctx));
    }

    /// A failed write: a leader keeps leading until its lease could have expired.
    fn write_failed(&mut self) {
        if self.leader {
            let deadline = self.elector.timing.lease_duration.mul_f32(2.0 / 3.0);
            if self.last_renewed.is_none_or(|t| t.elapsed() >= deadline) {
                self.set_leader(false);
            }
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.released {
            return;
        }
        let api = self.api.clone();
        let name = self.name.clone();
        let get = async move { api.get_opt(&name).await };
        ctx.spawn(get.into_actor(self).map(|res, act, ctx| {
            if act.released {
                return;
            }
            let current = match res {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the leader election lease");
                    act.write_failed();
                    act.schedule(ctx);
                    return;
                }
            };
            let decision = act.elector.decide(current.as_ref(), Instant::now());
            if let Decision::Follow { holder } = &decision {
                tracing::debug!(%holder, "following");
                act.set_leader(false);
                act.schedule(ctx);
                return;
            }
            let lease =
                act.elector
                    .lease_for(&decision, current.as_ref(), &act.name, &act.namespace);
            let api = act.api.clone();
            let name = act.name.clone();
            let write = async move {
                match decision {
                    Decision::Create => api.create(&PostParams::default(), &lease).await,
                    _ => api.replace(&name, &PostParams::default(), &lease).await,
                }
            };
            ctx.spawn(write.into_actor(act).map(|res, act, ctx| {
                if act.released {
                    // Released while this write was in flight: whatever it did, we do not lead.
                    return;
                }
                match res {
                    Ok(_) => {
                        act.last_renewed = Some(Instant::now());
                        act.set_leader(true);
                    }
                    Err(kube::Error::Api(s)) if s.code == 409 => {
                        tracing::debug!("lease taken by another replica");
                        act.set_leader(false);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot write the leader election lease");
                        act.write_failed();
                    }
                }
                act.schedule(ctx);
            }));
        }));
    }
}

impl Actor for LeaderActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.tick(ctx);
    }
}

impl Handler<Release> for LeaderActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Release, _ctx: &mut Context<Self>) -> Self::Result {
        self.released = true;
        let was_leader = self.leader;
        self.set_leader(false);
        let api = self.api.clone();
        let name = self.name.clone();
        let identity = self.elector.identity.clone();
        let release = async move {
            if !was_leader {
                return;
            }
            // A renew may still be in flight: retry on conflict while the lease is ours.
            for _ in 0..3 {
                let current = match api.get_opt(&name).await {
                    Ok(Some(l)) => l,
                    _ => return,
                };
                let holder = current
                    .spec
                    .as_ref()
                    .and_then(|s| s.holder_identity.as_deref());
                if holder != Some(identity.as_str()) {
                    return;
                }
                match api
                    .replace(&name, &PostParams::default(), &released_lease(&current))
                    .await
                {
                    Ok(_) => return,
                    Err(kube::Error::Api(s)) if s.code == 409 => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot release the leader election lease");
                        return;
                    }
                }
            }
        };
        Box::pin(release.into_actor(self))
    }
}
