//! Policy actor: compiles every route's policy when routes change and publishes an immutable
//! snapshot through `ArcSwap`. Request handlers read the snapshot and never touch the mailbox.
//! The logic lives in [`PolicyCompiler`], a plain struct.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use actix::{Actor, Context, Handler, Message};
use arc_swap::ArcSwap;
use serde_json::Value;

use crate::policy::{
    compile_route_with, CompileOptions, CompiledPolicy, LegacyPolicy, PolicyError,
};

/// One route's policy inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutePolicyInput {
    /// Stable route identifier (the same id the route table uses).
    pub route_id: String,
    pub legacy: LegacyPolicy,
    /// The route's `policy` documents (one document or several).
    pub policies: Vec<Value>,
    /// Add the downstream-mTLS deny rule (spec 1.8).
    pub enforce_client_certificate: bool,
}

/// Compiled policies for every route, plus the routes whose latest input failed.
#[derive(Debug, Default)]
pub struct PolicySnapshot {
    /// route id → policy. A route whose latest input is bad keeps its last good policy, or
    /// denies everyone if it never had one.
    pub policies: crate::FastMap<String, Arc<CompiledPolicy>>,
    /// route id → error for the latest input.
    pub errors: BTreeMap<String, PolicyError>,
}

impl PolicySnapshot {
    /// The policy for a route, if the route is known.
    pub fn get(&self, route_id: &str) -> Option<&Arc<CompiledPolicy>> {
        self.policies.get(route_id)
    }
}

/// Compiles route policies, reusing unchanged ones and keeping the last good policy of a route
/// whose new input is bad.
#[derive(Debug, Default)]
pub struct PolicyCompiler {
    /// route id → (input that compiled, result).
    last_good: HashMap<String, (RoutePolicyInput, Arc<CompiledPolicy>)>,
}

impl PolicyCompiler {
    /// A compiler with no history.
    pub fn new() -> PolicyCompiler {
        PolicyCompiler::default()
    }

    /// Compiles the full set of routes. Routes not in `inputs` are forgotten.
    pub fn compile_all(&mut self, inputs: &[RoutePolicyInput]) -> PolicySnapshot {
        let mut snapshot = PolicySnapshot::default();
        let mut next = HashMap::with_capacity(inputs.len());
        for input in inputs {
            let previous = self.last_good.remove(&input.route_id);
            if let Some((old_input, compiled)) = &previous {
                if old_input == input {
                    snapshot
                        .policies
                        .insert(input.route_id.clone(), compiled.clone());
                    next.insert(
                        input.route_id.clone(),
                        (old_input.clone(), compiled.clone()),
                    );
                    continue;
                }
            }
            let options = CompileOptions {
                enforce_client_certificate: input.enforce_client_certificate,
            };
            match compile_route_with(&input.legacy, &input.policies, options) {
                Ok(compiled) => {
                    let compiled = Arc::new(compiled);
                    snapshot
                        .policies
                        .insert(input.route_id.clone(), compiled.clone());
                    next.insert(input.route_id.clone(), (input.clone(), compiled));
                }
                Err(err) => {
                    snapshot.errors.insert(input.route_id.clone(), err);
                    match previous {
                        Some((old_input, compiled)) => {
                            snapshot
                                .policies
                                .insert(input.route_id.clone(), compiled.clone());
                            next.insert(input.route_id.clone(), (old_input, compiled));
                        }
                        None => {
                            snapshot.policies.insert(
                                input.route_id.clone(),
                                Arc::new(CompiledPolicy::deny_all()),
                            );
                        }
                    }
                }
            }
        }
        self.last_good = next;
        snapshot
    }
}

/// Replace the route set; replies with the published snapshot.
#[derive(Debug, Message)]
#[rtype(result = "Arc<PolicySnapshot>")]
pub struct UpdateRoutePolicies(pub Vec<RoutePolicyInput>);

/// Thin actor shell over [`PolicyCompiler`].
pub struct PolicyActor {
    compiler: PolicyCompiler,
    published: Arc<ArcSwap<PolicySnapshot>>,
}

impl PolicyActor {
    /// An actor publishing into `published` (share the same `Arc` with the request handlers).
    pub fn new(published: Arc<ArcSwap<PolicySnapshot>>) -> PolicyActor {
        PolicyActor {
            compiler: PolicyCompiler::new(),
            published,
        }
    }
}

impl Actor for PolicyActor {
    type Context = Context<Self>;
}

impl Handler<UpdateRoutePolicies> for PolicyActor {
    type Result = Arc<PolicySnapshot>;

    fn handle(
        &mut self,
        msg: UpdateRoutePolicies,
        _ctx: &mut Context<Self>,
    ) -> Arc<PolicySnapshot> {
        let snapshot = Arc::new(self.compiler.compile_all(&msg.0));
        for (route, err) in &snapshot.errors {
            tracing::warn!(route = %route, error = %err, "route policy rejected; keeping the last good policy");
        }
        for (route, policy) in &snapshot.policies {
            for w in policy.warnings() {
                tracing::info!(route = %route, warning = %w, "route policy warning");
            }
        }
        self.published.store(snapshot.clone());
        snapshot
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{parse_document, Decision, OwnedRequest};

    fn route(id: &str, policy: &str) -> RoutePolicyInput {
        RoutePolicyInput {
            route_id: id.to_string(),
            legacy: LegacyPolicy::default(),
            policies: vec![parse_document(policy).unwrap()],
            enforce_client_certificate: false,
        }
    }

    fn decide(s: &PolicySnapshot, id: &str, path: &str) -> Decision {
        s.get(id)
            .unwrap()
            .evaluate(&OwnedRequest::new("GET", path), None)
            .decision
    }

    #[test]
    fn bad_update_keeps_last_good_and_isolates_routes() {
        let mut c = PolicyCompiler::new();
        let s1 = c.compile_all(&[
            route("a", "allow: {or: [{http_path: /a}]}"),
            route("b", "allow: {or: [{accept: 1}]}"),
        ]);
        assert!(s1.errors.is_empty());
        assert_eq!(decide(&s1, "a", "/a"), Decision::Allow);

        // Route a gets a bad policy, route c is new and bad, route b unchanged (reused).
        let s2 = c.compile_all(&[
            route("a", "allow: {or: [{emial: x}]}"),
            route("b", "allow: {or: [{accept: 1}]}"),
            route("c", "allow: {maybe: []}"),
        ]);
        assert_eq!(s2.errors.len(), 2);
        assert_eq!(
            s2.errors["a"].to_string(),
            "unknown policy criterion: emial (at allow.or[0].emial)"
        );
        assert!(s2.errors["c"]
            .to_string()
            .starts_with("invalid rules in policy: unsupported conditional"));
        assert_eq!(decide(&s2, "a", "/a"), Decision::Allow, "last good kept");
        assert!(
            Arc::ptr_eq(s1.get("b").unwrap(), s2.get("b").unwrap()),
            "unchanged route reused"
        );
        assert_eq!(
            decide(&s2, "c", "/"),
            Decision::Deny,
            "never-good route denies everyone"
        );

        // Fixing route a replaces it; dropped routes disappear.
        let s3 = c.compile_all(&[route("a", "allow: {or: [{http_path: /z}]}")]);
        assert!(s3.errors.is_empty());
        assert_eq!(decide(&s3, "a", "/a"), Decision::Deny);
        assert_eq!(decide(&s3, "a", "/z"), Decision::Allow);
        assert!(s3.get("b").is_none());
    }

    #[test]
    fn legacy_validation_errors_are_per_route() {
        let mut c = PolicyCompiler::new();
        let bad = RoutePolicyInput {
            route_id: "x".into(),
            legacy: LegacyPolicy {
                allow_public_unauthenticated_access: true,
                allowed_users: vec!["u".into()],
                ..Default::default()
            },
            policies: vec![],
            enforce_client_certificate: false,
        };
        let s = c.compile_all(&[bad, route("y", "allow: {or: [{accept: 1}]}")]);
        assert_eq!(
            s.errors["x"].to_string(),
            "config: policy route marked as public but contains whitelists"
        );
        assert_eq!(decide(&s, "y", "/"), Decision::Allow);
    }

    #[actix_rt::test]
    async fn actor_publishes_snapshot() {
        let published = Arc::new(ArcSwap::from_pointee(PolicySnapshot::default()));
        let addr = PolicyActor::new(published.clone()).start();
        let reply = addr
            .send(UpdateRoutePolicies(vec![route(
                "a",
                "allow: {or: [{accept: 1}]}",
            )]))
            .await
            .unwrap();
        let current = published.load();
        assert!(Arc::ptr_eq(&reply, &current));
        assert_eq!(decide(&current, "a", "/"), Decision::Allow);
    }
}
