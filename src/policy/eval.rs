//! The compiled form and its evaluation (spec 1.2): merging rules, the decision procedure,
//! and a human-readable trace.

use std::fmt::Write as _;

use super::criterion::Criterion;
use super::identity::Identity;
use super::reason::{Reason, Reasons};
use super::request::RequestView;

/// PPL operators. Naming trap: `not` is "none of", `nor` is "not all of".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    And,
    Or,
    Not,
    Nor,
}

impl Operator {
    /// The PPL keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::And => "and",
            Operator::Or => "or",
            Operator::Not => "not",
            Operator::Nor => "nor",
        }
    }
}

/// One operator of one action block with its (non-empty) criteria.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorNode {
    pub(crate) op: Operator,
    /// Where it came from (`[0].allow.or`, `legacy.allow.or`).
    pub(crate) label: Box<str>,
    pub(crate) criteria: Box<[Criterion]>,
}

/// `and` merge: all true → union of all; else union of the false children.
#[derive(Default, Clone, Copy)]
struct AndMerge {
    all: Reasons,
    false_reasons: Reasons,
    any_false: bool,
}

impl AndMerge {
    #[inline(always)]
    fn push(&mut self, value: bool, reasons: Reasons) {
        self.all |= reasons;
        if !value {
            self.any_false = true;
            self.false_reasons |= reasons;
        }
    }
    #[inline(always)]
    fn result(self) -> (bool, Reasons) {
        if self.any_false {
            (false, self.false_reasons)
        } else {
            (true, self.all)
        }
    }
}

/// `or` merge: any true → union of the true children; else union of all.
#[derive(Default, Clone, Copy)]
struct OrMerge {
    all: Reasons,
    true_reasons: Reasons,
    any_true: bool,
}

impl OrMerge {
    #[inline(always)]
    fn push(&mut self, value: bool, reasons: Reasons) {
        self.all |= reasons;
        if value {
            self.any_true = true;
            self.true_reasons |= reasons;
        }
    }
    #[inline(always)]
    fn result(self) -> (bool, Reasons) {
        if self.any_true {
            (true, self.true_reasons)
        } else {
            (false, self.all)
        }
    }
}

impl OperatorNode {
    #[inline]
    fn evaluate<R: RequestView + ?Sized>(&self, req: &R, id: Option<&Identity>) -> (bool, Reasons) {
        let results = self.criteria.iter().map(|c| c.evaluate(req, id));
        match self.op {
            Operator::And => fold_and(results),
            Operator::Or => fold_or(results),
            Operator::Not => fold_and(results.map(|(v, r)| (!v, r))),
            Operator::Nor => fold_or(results.map(|(v, r)| (!v, r))),
        }
    }
}

#[inline(always)]
fn fold_and(results: impl Iterator<Item = (bool, Reasons)>) -> (bool, Reasons) {
    let mut m = AndMerge::default();
    for (v, r) in results {
        m.push(v, r);
    }
    m.result()
}

#[inline(always)]
fn fold_or(results: impl Iterator<Item = (bool, Reasons)>) -> (bool, Reasons) {
    let mut m = OrMerge::default();
    for (v, r) in results {
        m.push(v, r);
    }
    m.result()
}

/// The outcome of the decision procedure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    /// Proxy upstream.
    Allow,
    /// 403 (or see [`Evaluation::deny_status`]).
    Deny,
    /// Unauthenticated: redirect to sign-in (browsers) or 401.
    Login,
    /// 495: the client certificate is missing or invalid (never a login).
    ClientCertificateRequired,
}

impl Decision {
    /// `allow`, `deny`, `login` or `client-certificate-required`.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::Login => "login",
            Decision::ClientCertificateRequired => "client-certificate-required",
        }
    }
}

/// Result of evaluating a policy for one request (serialises for logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Evaluation {
    pub decision: Decision,
    /// Value of the OR'ed allow blocks.
    pub allow: bool,
    pub allow_reasons: Reasons,
    /// Value of the OR'ed deny blocks.
    pub deny: bool,
    pub deny_reasons: Reasons,
}

const CERT_REASONS: Reasons = Reasons::one(Reason::ClientCertificateRequired)
    .union(Reasons::one(Reason::InvalidClientCertificate));

impl Evaluation {
    /// Applies the decision procedure (spec 1.2) to the allow and deny results.
    pub fn decide(allow: (bool, Reasons), deny: (bool, Reasons)) -> Evaluation {
        let mut ev = Evaluation {
            decision: Decision::Deny,
            allow: allow.0,
            allow_reasons: allow.1,
            deny: deny.0,
            deny_reasons: deny.1,
        };
        let all = allow.1 | deny.1;
        ev.decision = if deny.1.intersects(CERT_REASONS) {
            // Pomerium: denied with the deny reasons, before any login redirect.
            denied(deny.1)
        } else if all.contains(Reason::UserUnauthenticated) {
            Decision::Login
        } else if all.contains(Reason::DeviceUnauthenticated) {
            // Pomerium redirects to WebAuthn device enrolment; rampart has none: deny.
            Decision::Deny
        } else if deny.0 {
            denied(deny.1)
        } else if allow.0 {
            Decision::Allow
        } else {
            // Default deny, judged by the allow reasons.
            denied(allow.1)
        };
        ev
    }

    /// The evaluation for a request whose route the engine does not know (404).
    pub fn route_not_found() -> Evaluation {
        Evaluation::decide(
            (false, Reasons::EMPTY),
            (true, Reason::RouteNotFound.into()),
        )
    }

    /// The reasons that produced the decision (the ones Pomerium logs and picks the status
    /// from): both sets for a login or a device problem, the deny reasons when a deny block
    /// (or a deny-side certificate problem) decided, else the allow reasons.
    pub fn decisive_reasons(&self) -> Reasons {
        let all = self.allow_reasons | self.deny_reasons;
        match self.decision {
            Decision::Allow => self.allow_reasons,
            Decision::Login => all,
            _ if self.deny_reasons.intersects(CERT_REASONS) => self.deny_reasons,
            _ if all.contains(Reason::DeviceUnauthenticated) => all,
            _ if self.deny => self.deny_reasons,
            _ => self.allow_reasons,
        }
    }

    /// HTTP status for a denial, as Pomerium picks it from the decisive reasons: 450 for
    /// `device-unauthorized`, 404 for `route-not-found`, 495 for a missing or invalid client
    /// certificate, else 403. `None` for allow and login.
    pub fn deny_status(&self) -> Option<u16> {
        let reasons = self.decisive_reasons();
        match self.decision {
            Decision::Allow | Decision::Login => None,
            Decision::ClientCertificateRequired => Some(495),
            Decision::Deny if reasons.contains(Reason::DeviceUnauthenticated) => Some(403),
            Decision::Deny if reasons.contains(Reason::DeviceUnauthorized) => Some(450),
            Decision::Deny if reasons.contains(Reason::RouteNotFound) => Some(404),
            Decision::Deny => Some(403),
        }
    }
}

/// Pomerium's `handleResultDenied` switch, reduced to the decision: device and route reasons
/// take precedence over certificate reasons.
fn denied(reasons: Reasons) -> Decision {
    if reasons.contains(Reason::DeviceUnauthenticated)
        || reasons.contains(Reason::DeviceUnauthorized)
        || reasons.contains(Reason::RouteNotFound)
    {
        Decision::Deny
    } else if reasons.intersects(CERT_REASONS) {
        Decision::ClientCertificateRequired
    } else {
        Decision::Deny
    }
}

/// A compiled route policy: immutable, `Send + Sync`, evaluated without allocating.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledPolicy {
    allow: Box<[OperatorNode]>,
    deny: Box<[OperatorNode]>,
    warnings: Vec<String>,
}

impl CompiledPolicy {
    pub(crate) fn new(
        allow: Vec<OperatorNode>,
        deny: Vec<OperatorNode>,
        warnings: Vec<String>,
    ) -> Self {
        CompiledPolicy {
            allow: allow.into_boxed_slice(),
            deny: deny.into_boxed_slice(),
            warnings,
        }
    }

    /// A policy that denies everyone (no rules): what a route without rules gets.
    pub fn deny_all() -> CompiledPolicy {
        CompiledPolicy::new(Vec::new(), Vec::new(), Vec::new())
    }

    /// Things that compiled but deserve a note (e.g. `pomerium_routes`, `device`).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Number of criteria in the policy.
    pub fn criteria_count(&self) -> usize {
        self.allow
            .iter()
            .chain(self.deny.iter())
            .map(|n| n.criteria.len())
            .sum()
    }

    /// True if there are no allow blocks (the policy denies everyone).
    pub fn denies_everyone(&self) -> bool {
        self.allow.is_empty()
    }

    /// Evaluates the policy for a request and an optional identity (`None` = no session).
    #[inline]
    pub fn evaluate<R: RequestView + ?Sized>(
        &self,
        req: &R,
        identity: Option<&Identity>,
    ) -> Evaluation {
        let allow = fold_or(self.allow.iter().map(|n| n.evaluate(req, identity)));
        let deny = fold_or(self.deny.iter().map(|n| n.evaluate(req, identity)));
        Evaluation::decide(allow, deny)
    }

    /// Evaluates like [`CompiledPolicy::evaluate`] and returns a human-readable trace: every
    /// action, operator and criterion with its value and reasons.
    pub fn explain<R: RequestView + ?Sized>(&self, req: &R, identity: Option<&Identity>) -> String {
        let eval = self.evaluate(req, identity);
        let mut out = String::new();
        let _ = writeln!(out, "decision: {}", eval.decision.as_str());
        let _ = writeln!(out, "reasons: {}", eval.decisive_reasons());
        for (name, nodes, value, reasons) in [
            ("allow", &self.allow, eval.allow, eval.allow_reasons),
            ("deny", &self.deny, eval.deny, eval.deny_reasons),
        ] {
            let _ = writeln!(out, "{name}: {value} {reasons}");
            if nodes.is_empty() {
                let _ = writeln!(out, "  (no rules)");
            }
            for node in nodes.iter() {
                let (v, r) = node.evaluate(req, identity);
                let _ = writeln!(out, "  {} {}: {v} {r}", node.op.as_str(), node.label);
                let inverted = matches!(node.op, Operator::Not | Operator::Nor);
                for c in node.criteria.iter() {
                    let (cv, cr) = c.evaluate(req, identity);
                    if inverted {
                        let _ = writeln!(out, "    {}: {cv} {cr} (inverted: {})", c.source(), !cv);
                    } else {
                        let _ = writeln!(out, "    {}: {cv} {cr}", c.source());
                    }
                }
            }
        }
        let why = match eval.decision {
            Decision::ClientCertificateRequired => {
                "the decisive reasons name a missing or invalid client certificate (495)"
            }
            Decision::Login => "user-unauthenticated appears in the reasons (no session)",
            Decision::Deny
                if (eval.allow_reasons | eval.deny_reasons)
                    .contains(Reason::DeviceUnauthenticated) =>
            {
                "device-unauthenticated: rampart has no device enrolment"
            }
            Decision::Deny if eval.deny => "a deny block is true",
            Decision::Allow => "an allow block is true and no deny block is",
            Decision::Deny => "no allow block is true (default deny)",
        };
        let _ = writeln!(out, "because: {why}");
        for w in &self.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn compiled_policy_is_send_sync() {
        assert_send_sync::<CompiledPolicy>();
        assert_send_sync::<std::sync::Arc<CompiledPolicy>>();
    }

    #[test]
    fn merges_follow_the_table() {
        let a: Reasons = Reason::Accept.into();
        let r: Reasons = Reason::Reject.into();
        let e: Reasons = Reason::EmailOk.into();
        assert_eq!(fold_and([(true, a), (true, e)].into_iter()), (true, a | e));
        assert_eq!(fold_and([(true, a), (false, r)].into_iter()), (false, r));
        assert_eq!(fold_and(std::iter::empty()), (true, Reasons::EMPTY));
        assert_eq!(fold_or([(true, a), (false, r)].into_iter()), (true, a));
        assert_eq!(
            fold_or([(false, e), (false, r)].into_iter()),
            (false, e | r)
        );
        assert_eq!(fold_or(std::iter::empty()), (false, Reasons::EMPTY));
    }

    #[test]
    fn decision_order() {
        use Reason::*;
        let r = |x: Reason| Reasons::one(x);
        let d = |a: (bool, Reasons), dn: (bool, Reasons)| Evaluation::decide(a, dn).decision;
        // 495 beats login.
        assert_eq!(
            d(
                (false, r(UserUnauthenticated)),
                (true, r(ClientCertificateRequired))
            ),
            Decision::ClientCertificateRequired
        );
        assert_eq!(
            d((true, r(Accept)), (true, r(InvalidClientCertificate))),
            Decision::ClientCertificateRequired
        );
        // Cert reasons in a true allow do not give 495 ...
        assert_eq!(
            d(
                (true, r(ClientCertificateRequired)),
                (false, Reasons::EMPTY)
            ),
            Decision::Allow
        );
        // ... but in a default deny they do (Pomerium judges it by the allow reasons).
        assert_eq!(
            d(
                (false, r(ClientCertificateRequired)),
                (false, Reasons::EMPTY)
            ),
            Decision::ClientCertificateRequired
        );
        assert_eq!(
            d(
                (false, r(InvalidClientCertificate) | r(RouteNotFound)),
                (false, Reasons::EMPTY)
            ),
            Decision::Deny
        );
        let ev = Evaluation::decide((false, Reasons::EMPTY), (true, r(DeviceUnauthorized)));
        assert_eq!((ev.decision, ev.deny_status()), (Decision::Deny, Some(450)));
        // Login even though allow is true.
        assert_eq!(
            d((true, r(Accept)), (false, r(UserUnauthenticated))),
            Decision::Login
        );
        assert_eq!(
            d(
                (true, r(Accept) | r(UserUnauthenticated)),
                (false, Reasons::EMPTY)
            ),
            Decision::Login
        );
        assert_eq!(d((true, r(Accept)), (true, r(HttpPathOk))), Decision::Deny);
        assert_eq!(
            d((true, r(Accept)), (false, r(HttpPathUnauthorized))),
            Decision::Allow
        );
        assert_eq!(
            d((false, Reasons::EMPTY), (false, Reasons::EMPTY)),
            Decision::Deny
        );
        assert_eq!(
            d((true, r(Accept)), (false, r(DeviceUnauthenticated))),
            Decision::Deny
        );
        assert_eq!(
            serde_json::to_value(Evaluation::decide(
                (true, r(Accept)),
                (false, Reasons::EMPTY)
            ))
            .unwrap(),
            serde_json::json!({"decision": "allow", "allow": true, "allow_reasons": ["accept"], "deny": false, "deny_reasons": []})
        );
        assert_eq!(
            serde_json::to_value(Decision::ClientCertificateRequired).unwrap(),
            "client-certificate-required"
        );
        let nf = Evaluation::route_not_found();
        assert_eq!(nf.decision, Decision::Deny);
        assert_eq!(nf.deny_status(), Some(404));
    }
}
