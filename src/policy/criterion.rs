//! Criteria (spec 1.3): compiling one `name[/subpath]: value` pair and evaluating it.

use serde_json::Value;

use super::error::{go_type, CriterionError, ValueError};
use super::identity::Identity;
use super::matcher::{CertMatcher, IpRanges, ListMatcher, StringMatcher};
use super::reason::{Reason, Reasons};
use super::request::RequestView;

/// Claim lookups split a subpath into at most this many segments (spec 1.6).
const MAX_CLAIM_PATH_SEGMENTS: usize = 5;

#[derive(Debug, Clone, PartialEq)]
enum Check {
    Accept,
    Reject,
    AuthenticatedUser,
    Email(StringMatcher),
    Domain(StringMatcher),
    User(StringMatcher),
    Groups(ListMatcher),
    Claim {
        literal: Box<str>,
        alternate: Option<Box<str>>,
        matcher: ListMatcher,
    },
    HttpMethod(StringMatcher),
    HttpPath(StringMatcher),
    CorsPreflight,
    SourceIp(IpRanges),
    ClientCertificate(CertMatcher),
    InvalidClientCertificate,
    Device,
    PomeriumRoutes,
    McpTool,
}

/// One compiled criterion.
#[derive(Debug, Clone, PartialEq)]
pub struct Criterion {
    check: Check,
    /// `name: value` as written, for traces.
    source: Box<str>,
}

impl Criterion {
    /// Compiles `key: value`. Warnings (accepted-but-odd criteria) are pushed to `warnings`.
    pub fn compile(
        key: &str,
        value: &Value,
        warnings: &mut Vec<String>,
    ) -> Result<Criterion, CriterionError> {
        let (name, subpath) = match key.split_once('/') {
            Some((n, s)) => (n, s),
            None => (key, ""),
        };
        let v = |r: Result<Check, ValueError>| r.map_err(CriterionError::Value);
        let check = match name {
            "accept" | "reject" => {
                if value == &Value::Bool(false) {
                    warnings.push(format!(
                        "{name}: the value is ignored, `{name}: false` still means {name}"
                    ));
                }
                if name == "accept" {
                    Check::Accept
                } else {
                    Check::Reject
                }
            }
            "authenticated_user" => Check::AuthenticatedUser,
            "email" => v(StringMatcher::compile(value).map(Check::Email))?,
            "domain" => v(StringMatcher::compile(value).map(Check::Domain))?,
            "user" => v(StringMatcher::compile(value).map(Check::User))?,
            "groups" => v(ListMatcher::compile(value).map(Check::Groups))?,
            "claim" => {
                // Pomerium's object_get: the literal key, else the path split at `.` and `/`
                // (2 to 5 segments). Claims are flattened with `.`, so the split path is the
                // dotted key.
                let segments = subpath.split(['/', '.']).count();
                let alternate = (subpath.contains('/')
                    && (2..=MAX_CLAIM_PATH_SEGMENTS).contains(&segments))
                .then(|| subpath.replace('/', ".").into_boxed_str());
                let matcher = ListMatcher::compile(value).map_err(CriterionError::Value)?;
                Check::Claim {
                    literal: subpath.into(),
                    alternate,
                    matcher,
                }
            }
            "http_method" => v(StringMatcher::compile(value).map(Check::HttpMethod))?,
            "http_path" => v(StringMatcher::compile(value).map(Check::HttpPath))?,
            "cors_preflight" => Check::CorsPreflight,
            "source_ip" => v(IpRanges::compile(value).map(Check::SourceIp))?,
            "client_certificate" => v(CertMatcher::compile(value).map(Check::ClientCertificate))?,
            "invalid_client_certificate" => Check::InvalidClientCertificate,
            "device" => {
                v(validate_device(value).map(|_| Check::Device))?;
                warnings.push(
                    "device: rampart has no WebAuthn device support; this criterion is always \
                     false with device-unauthenticated (signed-in users are denied)"
                        .to_string(),
                );
                Check::Device
            }
            "pomerium_routes" => {
                warnings.push(
                    "pomerium_routes: removed from Pomerium in v0.23 (/.pomerium/ paths bypass \
                     policy); rampart treats it as true when the path starts with /.pomerium/"
                        .to_string(),
                );
                Check::PomeriumRoutes
            }
            "mcp_tool" => {
                v(StringMatcher::compile(value).map(|_| Check::McpTool))?;
                warnings.push(
                    "mcp_tool: rampart has no MCP support; this criterion never matches"
                        .to_string(),
                );
                Check::McpTool
            }
            other => return Err(CriterionError::Unknown(other.to_string())),
        };
        Ok(Criterion {
            check,
            source: format!("{key}: {value}").into_boxed_str(),
        })
    }

    /// `name: value` as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates the criterion: its value and the reasons it carries.
    #[inline]
    pub fn evaluate<R: RequestView + ?Sized>(
        &self,
        req: &R,
        identity: Option<&Identity>,
    ) -> (bool, Reasons) {
        use Reason::*;
        #[inline(always)]
        fn pick(ok: bool, pass: Reason, fail: Reason) -> (bool, Reasons) {
            (ok, Reasons::one(if ok { pass } else { fail }))
        }
        const UNAUTHENTICATED: (bool, Reasons) = (false, Reasons::one(UserUnauthenticated));
        match &self.check {
            Check::Accept => (true, Reasons::one(Accept)),
            Check::Reject => (false, Reasons::one(Reject)),
            Check::AuthenticatedUser => match identity {
                None => UNAUTHENTICATED,
                Some(id) => pick(!id.user_id.is_empty(), UserOk, UserUnauthorized),
            },
            Check::Email(m) => match identity {
                None => UNAUTHENTICATED,
                Some(id) => pick(m.matches(&id.email), EmailOk, EmailUnauthorized),
            },
            Check::Domain(m) => match identity {
                None => UNAUTHENTICATED,
                Some(id) => {
                    let ok = id.email.split('@').nth(1).is_some_and(|d| m.matches(d));
                    pick(ok, DomainOk, DomainUnauthorized)
                }
            },
            Check::User(m) => match identity {
                None => UNAUTHENTICATED,
                Some(id) => pick(m.matches(&id.user_id), UserOk, UserUnauthorized),
            },
            Check::Groups(m) => match identity {
                None => UNAUTHENTICATED,
                Some(id) => pick(m.matches_strings(&id.groups), GroupsOk, GroupsUnauthorized),
            },
            Check::Claim {
                literal,
                alternate,
                matcher,
            } => match identity {
                None => UNAUTHENTICATED,
                Some(id) => {
                    let values = id.claim_values(literal, alternate.as_deref());
                    pick(matcher.matches_values(values), ClaimOk, ClaimUnauthorized)
                }
            },
            Check::HttpMethod(m) => pick(
                m.matches(req.method()),
                HttpMethodOk,
                HttpMethodUnauthorized,
            ),
            Check::HttpPath(m) => pick(m.matches(req.path()), HttpPathOk, HttpPathUnauthorized),
            Check::CorsPreflight => {
                let ok = req.method() == "OPTIONS"
                    && req.header("access-control-request-method").is_some()
                    && req.header("origin").is_some();
                pick(ok, CorsRequest, NonCorsRequest)
            }
            Check::SourceIp(r) => {
                let ok = req.source_ip().is_some_and(|ip| r.contains(ip));
                pick(ok, SourceIpOk, SourceIpUnauthorized)
            }
            Check::ClientCertificate(m) => {
                let ok = req.client_certificate().is_some_and(|c| m.matches(c));
                pick(ok, ClientCertificateOk, ClientCertificateUnauthorized)
            }
            Check::InvalidClientCertificate => match req.client_certificate() {
                None => (true, Reasons::one(ClientCertificateRequired)),
                Some(c) if !c.valid => (true, Reasons::one(InvalidClientCertificate)),
                Some(_) => (false, Reasons::one(ValidClientCertificate)),
            },
            Check::Device => match identity {
                None => UNAUTHENTICATED,
                Some(_) => (false, Reasons::one(DeviceUnauthenticated)),
            },
            Check::PomeriumRoutes => pick(
                req.path().starts_with("/.pomerium/"),
                PomeriumRoute,
                NonPomeriumRoute,
            ),
            Check::McpTool => (false, Reasons::EMPTY),
        }
    }
}

fn validate_device(value: &Value) -> Result<(), ValueError> {
    let Value::Object(obj) = value else {
        return Err(ValueError::DeviceType(go_type(value)));
    };
    for k in obj.keys() {
        if !matches!(k.as_str(), "is" | "approved" | "type") {
            return Err(ValueError::DeviceField(k.clone()));
        }
    }
    for op in ["is", "type"] {
        match obj.get(op) {
            None | Some(Value::String(_)) => {}
            Some(other) => return Err(ValueError::DeviceOperatorType(op, go_type(other))),
        }
    }
    Ok(())
}
