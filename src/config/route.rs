//! Validated routes: `RouteConfig` (as written) → `Route` (checked, ready for the proxy), and the
//! route order Pomerium uses.

use std::cmp::Ordering;
use std::time::Duration;

use actix_web::http::header::{HeaderName, HeaderValue};
use regex::Regex;
use thiserror::Error;
use url::Url;

use super::duration::{parse_go_duration, DurationError};
use super::file::RouteConfig;
use super::health::{
    check_panic_threshold, parse_circuit_breakers, parse_health_checks, parse_outlier_detection,
    HealthConfigError, HealthOptions,
};
use super::source::PemSource;

/// Why a route was rejected. The `Display` names the route (`routes[2] (from https://a.test)`).
#[derive(Debug, Error)]
#[error("{route}: {kind}")]
pub struct RouteError {
    /// Where the route is: `routes[2] (from https://a.example.com)` or an Ingress name.
    pub route: String,
    pub kind: RouteErrorKind,
}

#[derive(Debug, Error)]
pub enum RouteErrorKind {
    #[error("invalid `from` URL {value:?}: {reason}")]
    BadFrom { value: String, reason: String },
    #[error("config: policy source url ({0}) contains a path, but it should be set using the path field instead")]
    FromHasPath(String),
    #[error("policy should have either `to` or `redirect` or `response` defined")]
    MissingTo,
    #[error("invalid `to` URL {value:?}: {reason}")]
    BadTo { value: String, reason: String },
    #[error("zero load balancing weight not permitted")]
    ZeroWeight,
    #[error("`{key}`: {source}")]
    BadDuration {
        key: &'static str,
        source: DurationError,
    },
    #[error("`{key}`: regex {pattern:?} does not compile: {reason}")]
    BadRegex {
        key: &'static str,
        pattern: String,
        reason: String,
    },
    #[error("config: only prefix_rewrite or regex_rewrite_pattern can be specified, but not both")]
    BothRewrites,
    /// `cors` or `return_redirect` values.
    #[error("{0}")]
    Cors(String),
    #[error("`regex_rewrite_pattern` needs `regex_rewrite_substitution`")]
    MissingSubstitution,
    #[error("`{key}`: invalid header name {name:?}")]
    BadHeaderName { key: &'static str, name: String },
    #[error("`{key}`: invalid value for header {name:?}")]
    BadHeaderValue { key: &'static str, name: String },
    #[error("`redirect`: {0}")]
    BadRedirect(String),
    #[error("`{key}`: {name:?}: {reason}")]
    BadMatch {
        key: &'static str,
        name: String,
        reason: String,
    },
    #[error("`{key}` must start with `/`, got {value:?}")]
    BadPath { key: &'static str, value: String },
    #[error("config: client certificate key and cert both must be non-empty")]
    ClientCertPair,
    #[error("`{key}` and `{key}_file` are both set; use one")]
    BothInlineAndFile { key: &'static str },
    #[error("`{key}`: cannot read {path}: {reason}")]
    ReadFile {
        key: &'static str,
        path: String,
        reason: String,
    },
    #[error("`{key}`: no PEM certificate found in {what}")]
    NoCertificate { key: &'static str, what: String },
    #[error("`{key}`: no PEM private key found in {what}")]
    NoPrivateKey { key: &'static str, what: String },
    #[error("`load_balancing_policy`: unknown policy {0:?} (use ROUND_ROBIN, LEAST_REQUEST, RING_HASH, RANDOM or MAGLEV)")]
    BadLoadBalancing(String),
    #[error("{0}")]
    Policy(String),
    #[error("{0}")]
    Health(#[from] HealthConfigError),
    #[error("`bearer_token_format`: invalid bearer token format: {0} (use default, idp_access_token or idp_identity_token)")]
    BadBearerTokenFormat(String),
    #[error("`kubernetes_service_account_token` and `kubernetes_service_account_token_file` are both set; use one")]
    BothServiceAccountTokens,
}

/// Which hosts a route serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// `https://app.example.com` (lower-cased, no port).
    Exact(String),
    /// `https://*.example.com` → suffix `.example.com` (one or more labels in front).
    Wildcard(String),
    /// `https://*` (every host).
    Any,
}

impl HostMatch {
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Exact(h) => h.eq_ignore_ascii_case(host),
            // Compared as bytes: the cut may fall inside a multi-byte character.
            HostMatch::Wildcard(suffix) => {
                host.len() > suffix.len()
                    && host.as_bytes()[host.len() - suffix.len()..]
                        .eq_ignore_ascii_case(suffix.as_bytes())
            }
            HostMatch::Any => true,
        }
    }
}

/// Which paths a route serves. Pomerium semantics: `prefix` is a raw string prefix,
/// `path` exact, `regex` a full match.
#[derive(Debug, Clone)]
pub enum PathMatch {
    Prefix(String),
    Exact(String),
    Regex(Regex),
}

impl PathMatch {
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
            PathMatch::Exact(p) => path == p,
            PathMatch::Regex(r) => r.is_match(path),
        }
    }
}

/// A value test of a request match: exact text, a full-match regex, or presence.
#[derive(Debug, Clone)]
pub enum ValueTest {
    Present,
    Exact(String),
    Regex(Regex),
}

impl ValueTest {
    pub fn matches(&self, v: &str) -> bool {
        match self {
            ValueTest::Present => true,
            ValueTest::Exact(e) => e == v,
            ValueTest::Regex(r) => r.is_match(v),
        }
    }
}

/// Request conditions beyond host and path (`match_method`, `match_headers`, `match_query`);
/// all must hold. Empty: every request matches.
#[derive(Debug, Clone, Default)]
pub struct RequestMatch {
    pub method: Option<actix_web::http::Method>,
    pub headers: Vec<(HeaderName, ValueTest)>,
    pub query: Vec<(String, ValueTest)>,
}

impl RequestMatch {
    pub fn is_empty(&self) -> bool {
        self.method.is_none() && self.headers.is_empty() && self.query.is_empty()
    }

    /// Whether a request matches. `query` is the raw query string (without `?`); a parameter's
    /// first value is tested (percent-decoded, `+` as space).
    pub fn matches(
        &self,
        method: &actix_web::http::Method,
        headers: &actix_web::http::header::HeaderMap,
        query: &str,
    ) -> bool {
        if self.method.as_ref().is_some_and(|m| m != method) {
            return false;
        }
        for (name, test) in &self.headers {
            // Repeated headers are tested as one comma-joined value (RFC 9110 §5.3).
            let values: Vec<&str> = headers
                .get_all(name)
                .filter_map(|v| v.to_str().ok())
                .collect();
            if values.is_empty() || !test.matches(&values.join(",")) {
                return false;
            }
        }
        for (name, test) in &self.query {
            let found = url::form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == name)
                .map(|(_, v)| v);
            match found {
                Some(v) if test.matches(&v) => {}
                _ => return false,
            }
        }
        true
    }
}

/// A checked `redirect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub scheme: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub path: RedirectPath,
    pub code: u16,
    pub strip_query: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedirectPath {
    Keep,
    Full(String),
    /// Replace the leading `from` (path elements) with `to`.
    Prefix {
        from: String,
        to: String,
    },
}

/// `host[:port]` → (host, port); IPv6 literals keep their brackets.
fn split_host_port(h: &str) -> (&str, Option<&str>) {
    let cut = if h.starts_with('[') {
        h.find("]:").map(|i| i + 1)
    } else {
        h.rfind(':')
    };
    match cut {
        Some(i) if h[i + 1..].chars().all(|c| c.is_ascii_digit()) && i + 1 < h.len() => {
            (&h[..i], Some(&h[i + 1..]))
        }
        _ => (h, None),
    }
}

impl Redirect {
    /// The `Location` for a request: its scheme, `Host` header, path and raw query.
    pub fn location(&self, scheme: &str, host_header: &str, path: &str, query: &str) -> String {
        let (req_host, req_port) = split_host_port(host_header);
        let new_scheme = self.scheme.as_deref().unwrap_or(scheme);
        let host = self.host.as_deref().unwrap_or(req_host);
        // A new scheme without a port goes to that scheme's default port.
        let port = match (self.port, &self.scheme) {
            (Some(p), _) => Some(p.to_string()),
            (None, Some(_)) => None,
            (None, None) => req_port.map(str::to_string),
        };
        let port = port.filter(|p| {
            !((new_scheme == "https" && p == "443") || (new_scheme == "http" && p == "80"))
        });
        let path = match &self.path {
            RedirectPath::Keep => path.to_string(),
            RedirectPath::Full(p) => p.clone(),
            RedirectPath::Prefix { from, to } => {
                let rest = path
                    .strip_prefix(from.trim_end_matches('/'))
                    .unwrap_or(path);
                let joined = format!("{}{rest}", to.trim_end_matches('/'));
                if joined.is_empty() {
                    "/".into()
                } else {
                    joined
                }
            }
        };
        let mut out = format!("{new_scheme}://{host}");
        if let Some(p) = port {
            out.push(':');
            out.push_str(&p);
        }
        out.push_str(&path);
        if !self.strip_query && !query.is_empty() {
            out.push('?');
            out.push_str(query);
        }
        out
    }
}

/// One upstream endpoint of a route.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub url: Url,
    /// `http`, `https` or `h2c` (HTTP/2 with prior knowledge over TCP).
    pub scheme: &'static str,
    /// `host[:port]` as written (port omitted when default), used for the default Host header.
    pub authority: String,
    /// `scheme://authority`, the prefix of every request URI sent to this upstream.
    pub base: String,
    pub weight: u32,
}

/// How the upstream Host header is chosen.
#[derive(Debug, Clone)]
pub enum HostRewrite {
    /// Default: host[:port] of the chosen upstream URL.
    UpstreamHost,
    /// `preserve_host_header: true`.
    Preserve,
    /// `host_rewrite: literal`.
    Literal(String),
    /// `host_rewrite_header: X-Name`.
    FromHeader(HeaderName),
    /// `host_path_regex_rewrite_pattern` + substitution.
    FromPath(Regex, String),
}

/// How the upstream path is rewritten.
#[derive(Debug, Clone)]
pub enum PathRewrite {
    None,
    /// Replace the matched `prefix` (or `/` when the route has no prefix) with this.
    Prefix(String),
    Regex(Regex, String),
}

/// TLS settings for HTTPS upstreams (PEM material already read and parsed).
#[derive(Debug, Clone, Default)]
pub struct UpstreamTls {
    pub skip_verify: bool,
    pub server_name: Option<String>,
    /// Extra trust roots (DER), replacing the system roots when set.
    pub custom_ca: Option<Vec<Vec<u8>>>,
    /// Client certificate chain (DER) and key (PKCS#8/SEC1/PKCS#1 DER with its kind).
    pub client_cert: Option<ClientCert>,
}

#[derive(Debug, Clone)]
pub struct ClientCert {
    pub chain: Vec<Vec<u8>>,
    pub key_pem: Vec<u8>,
}

/// Load-balancing choice among `to` URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoadBalancing {
    #[default]
    RoundRobin,
    LeastRequest,
    RingHash,
    Random,
    Maglev,
}

/// A checked route.
#[derive(Debug, Clone)]
pub struct Route {
    /// Stable id: the `id` key, else `route-<n>` from the position in the file.
    pub id: String,
    pub from: String,
    pub host: HostMatch,
    pub path: PathMatch,
    pub upstreams: Vec<Upstream>,
    pub load_balancing: LoadBalancing,
    pub path_rewrite: PathRewrite,
    pub host_rewrite: HostRewrite,
    pub set_request_headers: Vec<(HeaderName, String)>,
    pub remove_request_headers: Vec<HeaderName>,
    pub set_response_headers: Vec<(HeaderName, HeaderValue)>,
    /// rampart only: `add_request_headers` (appended).
    pub add_request_headers: Vec<(HeaderName, HeaderValue)>,
    /// rampart only: `add_response_headers` (appended).
    pub add_response_headers: Vec<(HeaderName, HeaderValue)>,
    /// rampart only: `remove_response_headers`.
    pub remove_response_headers: Vec<HeaderName>,
    /// rampart only: method, header and query conditions.
    pub request_match: RequestMatch,
    /// `redirect`: answer with this redirect instead of proxying.
    pub redirect: Option<Redirect>,
    /// `rewrite_response_headers`: (header, prefix, replacement).
    pub rewrite_response_headers: Vec<(HeaderName, String, String)>,
    /// Whole-request deadline; `None` = no limit.
    pub timeout: Option<Duration>,
    /// Stream inactivity limit; `None` = no limit.
    pub idle_timeout: Option<Duration>,
    /// `max_request_body_bytes` (0 = none): longer request bodies get 413.
    pub max_request_body_bytes: Option<u64>,
    /// `cors`: preflights answered here, CORS headers added to answers.
    pub cors: Option<std::sync::Arc<crate::http::cors::Cors>>,
    /// `sticky_cookie`: the ring-hash key is this cookie's value (set when missing).
    pub sticky_cookie: Option<String>,
    /// `return_redirect`: answered instead of proxying.
    pub return_redirect: Option<std::sync::Arc<crate::http::redirect::ReturnRedirect>>,
    pub allow_websockets: bool,
    pub allow_spdy: bool,
    pub tls: UpstreamTls,
    pub pass_identity_headers: Option<bool>,
    pub public: bool,
    /// Active health checks, outlier ejection and the panic threshold.
    pub health: HealthOptions,
    /// Upgrade protocols allowed (lower-case `Upgrade` tokens: `websocket`, `spdy/3.1`, …),
    /// from `allow_upgrades`, `allow_websockets` and `allow_spdy`.
    pub allow_upgrades: Vec<String>,
    /// `tls_downstream_client_ca(_file)`: CA certificates (DER) that client certificates for
    /// this route's host are verified against.
    pub downstream_client_ca: Option<Vec<Vec<u8>>>,
    /// `kubernetes_service_account_token(_file)`: the upstream `Authorization: Bearer …` value.
    pub service_account_token: Option<HeaderValue>,
    /// `bearer_token_format` (`default`, `idp_access_token`, `idp_identity_token`).
    pub bearer_token_format: Option<String>,
    /// The route as written, for policy compilation and `render`.
    pub config: RouteConfig,
}

/// Defaults that come from global settings.
#[derive(Debug, Clone)]
pub struct RouteDefaults {
    pub timeout: Duration,
}

impl Default for RouteDefaults {
    fn default() -> Self {
        RouteDefaults {
            timeout: Duration::from_secs(30),
        }
    }
}

/// A short label for error messages: `routes[2] (from https://a.example.com)`.
pub fn route_label(index: usize, cfg: &RouteConfig) -> String {
    match &cfg.id {
        Some(id) => format!("routes[{index}] (id {id}, from {})", cfg.from),
        None => format!("routes[{index}] (from {})", cfg.from),
    }
}

/// Checks one route. `label` names it in errors.
pub fn validate_route(
    label: &str,
    default_id: String,
    cfg: &RouteConfig,
    defaults: &RouteDefaults,
) -> Result<Route, RouteError> {
    let fail = |kind| RouteError {
        route: label.to_string(),
        kind,
    };
    let (from, host) = parse_from(&cfg.from).map_err(fail)?;
    let path = path_match(cfg).map_err(fail)?;
    let upstreams = parse_to(cfg).map_err(fail)?;
    let path_rewrite = path_rewrite(cfg, &upstreams).map_err(fail)?;
    let host_rewrite = host_rewrite(cfg).map_err(fail)?;
    let timeout = match &cfg.timeout {
        Some(t) => nonzero(parse_go_duration(t).map_err(|source| {
            fail(RouteErrorKind::BadDuration {
                key: "timeout",
                source,
            })
        })?),
        // Websocket/SPDY routes get no request deadline unless one is set (spec 4).
        None if cfg.allow_websockets == Some(true)
            || cfg.allow_spdy == Some(true)
            || cfg.allow_upgrades.as_ref().is_some_and(|u| !u.is_empty()) =>
        {
            None
        }
        None => nonzero(defaults.timeout),
    };
    let idle_timeout = match &cfg.idle_timeout {
        Some(t) => nonzero(parse_go_duration(t).map_err(|source| {
            fail(RouteErrorKind::BadDuration {
                key: "idle_timeout",
                source,
            })
        })?),
        None => None,
    };
    let set_request_headers = cfg
        .set_request_headers
        .iter()
        .flatten()
        .map(|(k, v)| Ok((header_name("set_request_headers", k)?, v.clone())))
        .collect::<Result<Vec<_>, _>>()
        .map_err(fail)?;
    let remove_request_headers = cfg
        .remove_request_headers
        .iter()
        .flatten()
        .map(|k| header_name("remove_request_headers", k))
        .collect::<Result<Vec<_>, _>>()
        .map_err(fail)?;
    let set_response_headers = cfg
        .set_response_headers
        .iter()
        .flatten()
        .map(|(k, v)| {
            let name = header_name("set_response_headers", k)?;
            let value = HeaderValue::from_str(v).map_err(|_| RouteErrorKind::BadHeaderValue {
                key: "set_response_headers",
                name: k.clone(),
            })?;
            Ok((name, value))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(fail)?;
    let add_request_headers =
        header_pairs("add_request_headers", cfg.add_request_headers.as_ref()).map_err(fail)?;
    let add_response_headers =
        header_pairs("add_response_headers", cfg.add_response_headers.as_ref()).map_err(fail)?;
    let remove_response_headers = cfg
        .remove_response_headers
        .iter()
        .flatten()
        .map(|k| header_name("remove_response_headers", k))
        .collect::<Result<Vec<_>, _>>()
        .map_err(fail)?;
    let request_match = request_match(cfg).map_err(fail)?;
    let redirect = redirect(cfg).map_err(fail)?;
    let rewrite_response_headers = cfg
        .rewrite_response_headers
        .iter()
        .flatten()
        .map(|r| {
            Ok((
                header_name("rewrite_response_headers", &r.header)?,
                r.prefix.clone(),
                r.value.clone(),
            ))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(fail)?;
    let tls = upstream_tls(cfg).map_err(fail)?;
    let health = health_options(cfg).map_err(fail)?;
    let allow_upgrades = allow_upgrades(cfg);
    let downstream_client_ca = downstream_client_ca(cfg).map_err(fail)?;
    let service_account_token = service_account_token(cfg).map_err(fail)?;
    let bearer_token_format = bearer_token_format(cfg).map_err(fail)?;
    let sticky_cookie = cfg.sticky_cookie.clone().filter(|c| !c.is_empty());
    if let Some(name) = &sticky_cookie {
        let token = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            return Err(fail(RouteErrorKind::Cors(format!(
                "sticky_cookie: {name:?} is not a valid cookie name"
            ))));
        }
    }
    let load_balancing = match cfg.load_balancing_policy.as_deref() {
        None if sticky_cookie.is_some() => LoadBalancing::RingHash,
        None => LoadBalancing::RoundRobin,
        Some(p) => match p.to_ascii_uppercase().as_str() {
            "ROUND_ROBIN" => LoadBalancing::RoundRobin,
            "LEAST_REQUEST" => LoadBalancing::LeastRequest,
            "RING_HASH" => LoadBalancing::RingHash,
            "RANDOM" => LoadBalancing::Random,
            "MAGLEV" => LoadBalancing::Maglev,
            _ => return Err(fail(RouteErrorKind::BadLoadBalancing(p.to_string()))),
        },
    };
    if sticky_cookie.is_some()
        && !matches!(
            load_balancing,
            LoadBalancing::RingHash | LoadBalancing::Maglev
        )
    {
        return Err(fail(RouteErrorKind::Cors(
            "sticky_cookie needs load_balancing_policy ring_hash or maglev".into(),
        )));
    }
    Ok(Route {
        id: cfg.id.clone().unwrap_or(default_id),
        sticky_cookie,
        from,
        host,
        path,
        upstreams,
        load_balancing,
        path_rewrite,
        host_rewrite,
        set_request_headers,
        remove_request_headers,
        set_response_headers,
        add_request_headers,
        add_response_headers,
        remove_response_headers,
        request_match,
        redirect,
        rewrite_response_headers,
        timeout,
        idle_timeout,
        max_request_body_bytes: cfg.max_request_body_bytes.filter(|n| *n > 0),
        cors: match &cfg.cors {
            Some(c) => Some(std::sync::Arc::new(
                crate::http::cors::Cors::compile(c).map_err(|e| fail(RouteErrorKind::Cors(e)))?,
            )),
            None => None,
        },
        return_redirect: match &cfg.return_redirect {
            Some(c) => Some(std::sync::Arc::new(
                crate::http::redirect::ReturnRedirect::compile(c)
                    .map_err(|e| fail(RouteErrorKind::Cors(e)))?,
            )),
            None => None,
        },
        allow_websockets: cfg.allow_websockets.unwrap_or(false),
        allow_spdy: cfg.allow_spdy.unwrap_or(false),
        tls,
        pass_identity_headers: cfg.pass_identity_headers,
        public: cfg.allow_public_unauthenticated_access.unwrap_or(false),
        health,
        allow_upgrades,
        downstream_client_ca,
        service_account_token,
        bearer_token_format,
        config: cfg.clone(),
    })
}

fn health_options(cfg: &RouteConfig) -> Result<HealthOptions, RouteErrorKind> {
    let mut h = HealthOptions::default();
    if let Some(v) = cfg.health_checks.as_ref().filter(|v| !v.is_null()) {
        h.checks = parse_health_checks(v)?;
    }
    if let Some(v) = cfg.outlier_detection.as_ref().filter(|v| !v.is_null()) {
        h.outlier = Some(parse_outlier_detection(v)?);
    }
    if let Some(p) = cfg.healthy_panic_threshold {
        h.panic_threshold = check_panic_threshold(p)?;
    }
    if let Some(v) = cfg
        .circuit_breaker_thresholds
        .as_ref()
        .filter(|v| !v.is_null())
    {
        h.circuit_breakers = parse_circuit_breakers(v)?;
    }
    Ok(h)
}

/// The allowed `Upgrade` tokens, lower-cased: `allow_upgrades` plus `websocket` for
/// `allow_websockets` and `spdy/3.1` for `allow_spdy`.
fn allow_upgrades(cfg: &RouteConfig) -> Vec<String> {
    let mut out: Vec<String> = cfg
        .allow_upgrades
        .iter()
        .flatten()
        .map(|u| u.trim().to_ascii_lowercase())
        .filter(|u| !u.is_empty())
        .collect();
    if cfg.allow_websockets == Some(true) {
        out.push("websocket".into());
    }
    if cfg.allow_spdy == Some(true) {
        out.push("spdy/3.1".into());
    }
    out.sort();
    out.dedup();
    out
}

fn downstream_client_ca(cfg: &RouteConfig) -> Result<Option<Vec<Vec<u8>>>, RouteErrorKind> {
    match pem_value(
        "tls_downstream_client_ca",
        &cfg.tls_downstream_client_ca,
        &cfg.tls_downstream_client_ca_file,
    )? {
        Some((pem, what)) => {
            let certs = pem_certificates(&pem);
            if certs.is_empty() {
                return Err(RouteErrorKind::NoCertificate {
                    key: "tls_downstream_client_ca",
                    what,
                });
            }
            Ok(Some(certs))
        }
        None => Ok(None),
    }
}

fn service_account_token(cfg: &RouteConfig) -> Result<Option<HeaderValue>, RouteErrorKind> {
    let token = service_account_token_text(cfg)?;
    token
        .map(|t| {
            HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| {
                RouteErrorKind::BadHeaderValue {
                    key: "kubernetes_service_account_token",
                    name: "Authorization".into(),
                }
            })
        })
        .transpose()
}

fn service_account_token_text(cfg: &RouteConfig) -> Result<Option<String>, RouteErrorKind> {
    let inline = cfg
        .kubernetes_service_account_token
        .as_deref()
        .filter(|s| !s.is_empty());
    let file = cfg
        .kubernetes_service_account_token_file
        .as_deref()
        .filter(|s| !s.is_empty());
    match (inline, file) {
        (Some(_), Some(_)) => Err(RouteErrorKind::BothServiceAccountTokens),
        (Some(t), None) => Ok(Some(t.trim().to_string())),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(|t| Some(t.trim().to_string()))
            .map_err(|e| RouteErrorKind::ReadFile {
                key: "kubernetes_service_account_token_file",
                path: path.to_string(),
                reason: e.to_string(),
            }),
        (None, None) => Ok(None),
    }
}

fn bearer_token_format(cfg: &RouteConfig) -> Result<Option<String>, RouteErrorKind> {
    let Some(raw) = cfg.bearer_token_format.as_deref() else {
        return Ok(None);
    };
    let norm = raw.trim().to_ascii_lowercase();
    let norm = norm
        .strip_prefix("bearer_token_format_")
        .unwrap_or(&norm)
        .to_string();
    match norm.as_str() {
        "" => Ok(None),
        "default" | "idp_access_token" | "idp_identity_token" => Ok(Some(norm)),
        _ => Err(RouteErrorKind::BadBearerTokenFormat(raw.to_string())),
    }
}

fn header_pairs(
    key: &'static str,
    map: Option<&std::collections::BTreeMap<String, String>>,
) -> Result<Vec<(HeaderName, HeaderValue)>, RouteErrorKind> {
    map.into_iter()
        .flatten()
        .map(|(k, v)| {
            let name = header_name(key, k)?;
            let value = HeaderValue::from_str(v).map_err(|_| RouteErrorKind::BadHeaderValue {
                key,
                name: k.clone(),
            })?;
            Ok((name, value))
        })
        .collect()
}

fn value_test(
    key: &'static str,
    m: &crate::config::RequestValueMatch,
) -> Result<ValueTest, RouteErrorKind> {
    match (&m.value, &m.regex) {
        (Some(_), Some(_)) => Err(RouteErrorKind::BadMatch {
            key,
            name: m.name.clone(),
            reason: "set `value` or `regex`, not both".into(),
        }),
        (Some(v), None) => Ok(ValueTest::Exact(v.clone())),
        (None, Some(r)) => Ok(ValueTest::Regex(full_regex(key, r)?)),
        (None, None) => Ok(ValueTest::Present),
    }
}

fn redirect(cfg: &RouteConfig) -> Result<Option<Redirect>, RouteErrorKind> {
    let Some(r) = &cfg.redirect else {
        return Ok(None);
    };
    let bad = |reason: String| RouteErrorKind::BadRedirect(reason);
    let code = r.response_code.unwrap_or(301);
    if ![301, 302, 303, 307, 308].contains(&code) {
        return Err(bad(format!(
            "response_code {code} (use 301, 302, 303, 307 or 308)"
        )));
    }
    let scheme = match (r.https_redirect, r.scheme_redirect.as_deref()) {
        (Some(true), _) => Some("https".to_string()),
        (_, Some(s @ ("http" | "https"))) => Some(s.to_string()),
        (_, Some(s)) => return Err(bad(format!("scheme_redirect {s:?} (use http or https)"))),
        _ => None,
    };
    let path = match (&r.path_redirect, &r.prefix_rewrite) {
        (Some(_), Some(_)) => {
            return Err(bad("set path_redirect or prefix_rewrite, not both".into()))
        }
        (Some(p), None) => RedirectPath::Full(p.clone()),
        (None, Some(to)) => RedirectPath::Prefix {
            from: r
                .prefix_match
                .clone()
                .or_else(|| cfg.prefix.clone())
                .unwrap_or_else(|| "/".into()),
            to: to.clone(),
        },
        (None, None) => RedirectPath::Keep,
    };
    Ok(Some(Redirect {
        scheme,
        host: r.host_redirect.clone().filter(|h| !h.is_empty()),
        port: r.port_redirect,
        path,
        code,
        strip_query: r.strip_query.unwrap_or(false),
    }))
}

fn request_match(cfg: &RouteConfig) -> Result<RequestMatch, RouteErrorKind> {
    let method = match cfg.match_method.as_deref().filter(|m| !m.is_empty()) {
        Some(m) => Some(
            actix_web::http::Method::from_bytes(m.as_bytes()).map_err(|_| {
                RouteErrorKind::BadMatch {
                    key: "match_method",
                    name: m.to_string(),
                    reason: "not an HTTP method".into(),
                }
            })?,
        ),
        None => None,
    };
    let headers = cfg
        .match_headers
        .iter()
        .flatten()
        .map(|m| -> Result<_, RouteErrorKind> {
            Ok((
                header_name("match_headers", &m.name)?,
                value_test("match_headers", m)?,
            ))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let query = cfg
        .match_query
        .iter()
        .flatten()
        .map(|m| {
            if m.name.is_empty() {
                return Err(RouteErrorKind::BadMatch {
                    key: "match_query",
                    name: String::new(),
                    reason: "empty parameter name".into(),
                });
            }
            Ok((m.name.clone(), value_test("match_query", m)?))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RequestMatch {
        method,
        headers,
        query,
    })
}

fn nonzero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

fn header_name(key: &'static str, name: &str) -> Result<HeaderName, RouteErrorKind> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| RouteErrorKind::BadHeaderName {
        key,
        name: name.to_string(),
    })
}

/// Why a `tcp+https://` / `udp+https://` route (Pomerium's TCP and UDP tunnelling over HTTP
/// CONNECT) is rejected.
pub const TCP_UDP_UNSUPPORTED: &str = "TCP and UDP routes (tcp+https://, udp+https://; the tcp_upstream and udp_upstream annotations) are not supported by rampart yet";

fn parse_from(from: &str) -> Result<(String, HostMatch), RouteErrorKind> {
    let bad = |reason: &str| RouteErrorKind::BadFrom {
        value: from.to_string(),
        reason: reason.to_string(),
    };
    if from.starts_with("tcp+") || from.starts_with("udp+") {
        return Err(bad(TCP_UDP_UNSUPPORTED));
    }
    // `*` and `*.` hosts are not valid URL hosts for every parser; handle them by hand.
    let rest = from
        .strip_prefix("https://")
        .or_else(|| from.strip_prefix("http://"))
        .ok_or_else(|| bad("must start with https:// (or http://)"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if !path.is_empty() && path != "/" {
        return Err(RouteErrorKind::FromHasPath(from.to_string()));
    }
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) && !h.contains(']') => h,
        _ => authority,
    };
    if host.is_empty() {
        return Err(bad("has no host"));
    }
    let host = host.to_ascii_lowercase();
    let matcher = if host == "*" {
        HostMatch::Any
    } else if let Some(suffix) = host.strip_prefix('*') {
        if !suffix.starts_with('.') || suffix.len() < 2 {
            return Err(bad("a wildcard host must look like *.example.com"));
        }
        HostMatch::Wildcard(suffix.to_string())
    } else {
        Url::parse(&format!("https://{host}/")).map_err(|e| bad(&e.to_string()))?;
        HostMatch::Exact(host)
    };
    Ok((from.trim_end_matches('/').to_string(), matcher))
}

fn path_match(cfg: &RouteConfig) -> Result<PathMatch, RouteErrorKind> {
    if let Some(re) = cfg.regex.as_deref().filter(|s| !s.is_empty()) {
        return Ok(PathMatch::Regex(full_regex("regex", re)?));
    }
    if let Some(p) = cfg.path.as_deref().filter(|s| !s.is_empty()) {
        if !p.starts_with('/') {
            return Err(RouteErrorKind::BadPath {
                key: "path",
                value: p.into(),
            });
        }
        return Ok(PathMatch::Exact(p.to_string()));
    }
    if let Some(p) = cfg.prefix.as_deref().filter(|s| !s.is_empty()) {
        if !p.starts_with('/') {
            return Err(RouteErrorKind::BadPath {
                key: "prefix",
                value: p.into(),
            });
        }
        return Ok(PathMatch::Prefix(p.to_string()));
    }
    Ok(PathMatch::Prefix("/".into()))
}

/// Compiles `pattern` anchored at both ends (RE2 full match, as Envoy does).
fn full_regex(key: &'static str, pattern: &str) -> Result<Regex, RouteErrorKind> {
    Regex::new(&format!("^(?:{pattern})$")).map_err(|e| RouteErrorKind::BadRegex {
        key,
        pattern: pattern.to_string(),
        reason: e.to_string(),
    })
}

fn plain_regex(key: &'static str, pattern: &str) -> Result<Regex, RouteErrorKind> {
    Regex::new(pattern).map_err(|e| RouteErrorKind::BadRegex {
        key,
        pattern: pattern.to_string(),
        reason: e.to_string(),
    })
}

fn parse_to(cfg: &RouteConfig) -> Result<Vec<Upstream>, RouteErrorKind> {
    let targets = cfg.to.as_ref().map(|t| t.to_vec()).unwrap_or_default();
    if targets.is_empty() {
        if cfg.redirect.is_some() {
            return Ok(Vec::new());
        }
        return Err(RouteErrorKind::MissingTo);
    }
    targets.iter().map(|t| parse_upstream(t)).collect()
}

fn parse_upstream(target: &str) -> Result<Upstream, RouteErrorKind> {
    let bad = |reason: &str| RouteErrorKind::BadTo {
        value: target.to_string(),
        reason: reason.to_string(),
    };
    let (url_text, weight) = match target.rsplit_once(',') {
        Some((u, w)) => {
            let w: u32 = w
                .trim()
                .parse()
                .map_err(|_| bad("the weight after `,` must be a whole number"))?;
            if w == 0 {
                return Err(RouteErrorKind::ZeroWeight);
            }
            (u.trim(), w)
        }
        None => (target.trim(), 1),
    };
    let url = Url::parse(url_text).map_err(|e| bad(&e.to_string()))?;
    let scheme = match url.scheme() {
        "http" => "http",
        "h2c" => "h2c",
        "https" => "https",
        other => {
            return Err(bad(&format!(
                "unsupported scheme {other:?} (use http, https or h2c)"
            )))
        }
    };
    let host = url.host_str().ok_or_else(|| bad("has no host"))?;
    let authority = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    Ok(Upstream {
        url,
        scheme,
        base: format!("{scheme}://{authority}"),
        authority,
        weight,
    })
}

fn path_rewrite(cfg: &RouteConfig, upstreams: &[Upstream]) -> Result<PathRewrite, RouteErrorKind> {
    let prefix = cfg.prefix_rewrite.as_deref().filter(|s| !s.is_empty());
    let pattern = cfg
        .regex_rewrite_pattern
        .as_deref()
        .filter(|s| !s.is_empty());
    match (prefix, pattern) {
        (Some(_), Some(_)) => Err(RouteErrorKind::BothRewrites),
        (Some(p), None) => Ok(PathRewrite::Prefix(p.to_string())),
        (None, Some(pat)) => {
            let sub = cfg
                .regex_rewrite_substitution
                .clone()
                .ok_or(RouteErrorKind::MissingSubstitution)?;
            Ok(PathRewrite::Regex(
                plain_regex("regex_rewrite_pattern", pat)?,
                go_substitution(&sub),
            ))
        }
        (None, None) => {
            // A path on the first `to` URL acts as prefix_rewrite.
            let path = upstreams.first().map_or("", |u| u.url.path());
            if path.is_empty() || path == "/" {
                Ok(PathRewrite::None)
            } else {
                Ok(PathRewrite::Prefix(path.to_string()))
            }
        }
    }
}

/// Converts RE2/Envoy `\1` back-references to the `regex` crate's `${1}`.
fn go_substitution(sub: &str) -> String {
    let mut out = String::with_capacity(sub.len());
    let mut chars = sub.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek().is_some_and(|d| d.is_ascii_digit()) => {
                let d = chars.next().unwrap_or('0');
                out.push_str(&format!("${{{d}}}"));
            }
            '$' => out.push_str("$$"),
            _ => out.push(c),
        }
    }
    out
}

fn host_rewrite(cfg: &RouteConfig) -> Result<HostRewrite, RouteErrorKind> {
    if cfg.preserve_host_header == Some(true) {
        return Ok(HostRewrite::Preserve);
    }
    if let Some(h) = cfg.host_rewrite.as_deref().filter(|s| !s.is_empty()) {
        return Ok(HostRewrite::Literal(h.to_string()));
    }
    if let Some(h) = cfg.host_rewrite_header.as_deref().filter(|s| !s.is_empty()) {
        return Ok(HostRewrite::FromHeader(header_name(
            "host_rewrite_header",
            h,
        )?));
    }
    if let Some(p) = cfg
        .host_path_regex_rewrite_pattern
        .as_deref()
        .filter(|s| !s.is_empty())
    {
        let sub = cfg
            .host_path_regex_rewrite_substitution
            .clone()
            .unwrap_or_default();
        return Ok(HostRewrite::FromPath(
            plain_regex("host_path_regex_rewrite_pattern", p)?,
            go_substitution(&sub),
        ));
    }
    Ok(HostRewrite::UpstreamHost)
}

fn pem_value(
    key: &'static str,
    inline: &Option<String>,
    file: &Option<String>,
) -> Result<Option<(Vec<u8>, String)>, RouteErrorKind> {
    let source = match (inline.as_deref(), file.as_deref()) {
        (Some(_), Some(_)) => return Err(RouteErrorKind::BothInlineAndFile { key }),
        (Some(v), None) if !v.is_empty() => PemSource::from_value(v),
        (None, Some(f)) if !f.is_empty() => PemSource::File(f.into()),
        _ => return Ok(None),
    };
    let bytes = source.read().map_err(|e| RouteErrorKind::ReadFile {
        key,
        path: source.describe(),
        reason: e.to_string(),
    })?;
    Ok(Some((bytes, source.describe())))
}

/// Reads all certificates (DER) from PEM bytes.
pub fn pem_certificates(pem: &[u8]) -> Vec<Vec<u8>> {
    rustls_pemfile::certs(&mut &pem[..])
        .filter_map(Result::ok)
        .map(|c| c.to_vec())
        .collect()
}

fn upstream_tls(cfg: &RouteConfig) -> Result<UpstreamTls, RouteErrorKind> {
    let custom_ca = match pem_value("tls_custom_ca", &cfg.tls_custom_ca, &cfg.tls_custom_ca_file)? {
        Some((pem, what)) => {
            let certs = pem_certificates(&pem);
            if certs.is_empty() {
                return Err(RouteErrorKind::NoCertificate {
                    key: "tls_custom_ca",
                    what,
                });
            }
            Some(certs)
        }
        None => None,
    };
    let has = |a: &Option<String>, b: &Option<String>| {
        a.as_deref().is_some_and(|v| !v.is_empty()) || b.as_deref().is_some_and(|v| !v.is_empty())
    };
    if has(&cfg.tls_client_cert, &cfg.tls_client_cert_file)
        != has(&cfg.tls_client_key, &cfg.tls_client_key_file)
    {
        return Err(RouteErrorKind::ClientCertPair);
    }
    let cert = pem_value(
        "tls_client_cert",
        &cfg.tls_client_cert,
        &cfg.tls_client_cert_file,
    )?;
    let key = pem_value(
        "tls_client_key",
        &cfg.tls_client_key,
        &cfg.tls_client_key_file,
    )?;
    let client_cert = match (cert, key) {
        (None, None) => None,
        (Some((cert, cert_what)), Some((key, key_what))) => {
            let chain = pem_certificates(&cert);
            if chain.is_empty() {
                return Err(RouteErrorKind::NoCertificate {
                    key: "tls_client_cert",
                    what: cert_what,
                });
            }
            match rustls_pemfile::private_key(&mut &key[..]) {
                Ok(Some(_)) => {}
                _ => {
                    return Err(RouteErrorKind::NoPrivateKey {
                        key: "tls_client_key",
                        what: key_what,
                    })
                }
            }
            Some(ClientCert {
                chain,
                key_pem: key,
            })
        }
        _ => return Err(RouteErrorKind::ClientCertPair),
    };
    let server_name = cfg
        .tls_upstream_server_name
        .clone()
        .or_else(|| cfg.tls_server_name.clone())
        .filter(|s| !s.is_empty());
    Ok(UpstreamTls {
        skip_verify: cfg.tls_skip_verify.unwrap_or(false),
        server_name,
        custom_ca,
        client_cert,
    })
}

/// Pomerium's route order: `from` asc, `path` desc, `regex` desc, `prefix` desc, `id` asc
/// (empty strings sort last in the descending keys by plain byte comparison).
pub fn route_order(a: &RouteConfig, b: &RouteConfig, a_id: &str, b_id: &str) -> Ordering {
    fn s(v: &Option<String>) -> &str {
        v.as_deref().unwrap_or_default()
    }
    a.from
        .cmp(&b.from)
        .then_with(|| s(&b.path).cmp(s(&a.path)))
        .then_with(|| s(&b.regex).cmp(s(&a.regex)))
        .then_with(|| s(&b.prefix).cmp(s(&a.prefix)))
        .then_with(|| match (a_id.is_empty(), b_id.is_empty()) {
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            _ => a_id.cmp(b_id),
        })
}

/// Sorts checked routes in Pomerium's evaluation order.
pub fn sort_routes(routes: &mut [Route]) {
    routes.sort_by(|a, b| route_order(&a.config, &b.config, &a.id, &b.id));
}
