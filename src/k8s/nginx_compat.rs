//! ingress-nginx annotation compatibility (`--ingress-nginx-compat`).
//!
//! [`translate`] turns the `nginx.ingress.kubernetes.io/*` annotations of an Ingress into the
//! `ingress.pomerium.io/*` annotations that mean the same thing, so the regular annotation
//! parser and route builder do the rest. What a per-route value needs (regex paths and the
//! `rewrite-target` pattern, which depend on each path) is applied afterwards by
//! [`Translation::apply_to_route`]. Every nginx annotation is either translated or reported as
//! an [`NginxError`]; none is silently dropped. Pure functions, no I/O.
//!
//! The same translation backs `rampart convert` (see `crate::k8s::nginx_convert`).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde_json::{json, Value};
use thiserror::Error;
use url::Url;

use crate::config::RouteConfig;

/// Annotation prefix of ingress-nginx, without the `/`.
pub const NGINX_PREFIX: &str = "nginx.ingress.kubernetes.io";
/// IngressClass annotation turning compatibility on for the Ingresses of that class.
pub const COMPAT_CLASS_ANNOTATION: &str = "rampart.io/ingress-nginx-compat";
/// Comma list of e-mail addresses allowed through an oauth2-proxy-style `auth-url`.
pub const ALLOWED_EMAILS: &str = "rampart.io/allowed-emails";
/// Comma list of groups (`groups` claim) allowed through an oauth2-proxy-style `auth-url`.
pub const ALLOWED_GROUPS: &str = "rampart.io/allowed-groups";
/// Comma list of e-mail domains allowed through an oauth2-proxy-style `auth-url`
/// (oauth2-proxy's `--email-domain`).
pub const ALLOWED_EMAIL_DOMAINS: &str = "rampart.io/allowed-email-domains";

/// Why an nginx annotation could not be translated. `Display` names the annotation.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NginxError {
    /// Snippets inject raw nginx configuration: there is nothing to translate them to.
    #[error("{NGINX_PREFIX}/{0} is not supported: snippets are raw nginx configuration, which rampart cannot run; express it with ingress.pomerium.io/* annotations")]
    Snippet(String),
    /// A known annotation with no rampart equivalent.
    #[error("{NGINX_PREFIX}/{key} is not supported by rampart: {why}")]
    Unsupported { key: String, why: String },
    /// An annotation ingress-nginx does not define (or rampart does not know).
    #[error("{NGINX_PREFIX}/{0} is not a supported ingress-nginx annotation")]
    Unknown(String),
    /// A supported annotation with a value rampart cannot use.
    #[error("{NGINX_PREFIX}/{key}: invalid value {value:?}: {why}")]
    BadValue {
        key: String,
        value: String,
        why: String,
    },
}

impl NginxError {
    /// The nginx annotation (without prefix) the error is about.
    pub fn key(&self) -> &str {
        match self {
            NginxError::Snippet(k) | NginxError::Unknown(k) => k,
            NginxError::Unsupported { key, .. } | NginxError::BadValue { key, .. } => key,
        }
    }
}

/// Several errors, shown `; `-separated (the text of the `UpdateError` event).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub struct NginxErrors(pub Vec<NginxError>);

impl fmt::Display for NginxErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        write!(f, "ingress-nginx annotations: {}", parts.join("; "))
    }
}

/// The result of [`translate`]: what could be translated, what could not, and notes about
/// approximations.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Translation {
    /// `‹prefix›/key` (prefix stripped) → value, to put over the Ingress's annotations.
    pub annotations: BTreeMap<String, String>,
    /// Prefix/ImplementationSpecific paths are nginx regexes (`use-regex`, or implied by
    /// `rewrite-target`): case-insensitive and anchored at the start only.
    pub regex_paths: bool,
    /// `rewrite-target` with `$n` turned into `\n` (the `regex_rewrite_substitution` syntax).
    pub rewrite_target: Option<String>,
    /// The nginx annotations that were used (without prefix).
    pub used: Vec<String>,
    /// Not errors, but worth telling the user (behaviour that differs slightly).
    pub notes: Vec<String>,
    pub errors: Vec<NginxError>,
}

impl Translation {
    /// True when the Ingress carried at least one nginx annotation.
    pub fn is_empty(&self) -> bool {
        self.used.is_empty() && self.errors.is_empty()
    }

    /// `Err` when anything could not be translated.
    pub fn check(&self) -> Result<(), NginxErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(NginxErrors(self.errors.clone()))
        }
    }

    /// Applies the per-path parts to a built route: regex paths and the rewrite pattern.
    pub fn apply_to_route(&self, r: &mut RouteConfig) {
        let raw = r
            .prefix
            .clone()
            .or_else(|| r.regex.clone())
            .or_else(|| r.path.clone())
            .unwrap_or_else(|| "/".into());
        if self.regex_paths && r.path.is_none() {
            r.prefix = None;
            r.regex = Some(nginx_location_regex(&raw));
        }
        if let Some(sub) = &self.rewrite_target {
            r.regex_rewrite_pattern = Some(nginx_rewrite_regex(&raw));
            r.regex_rewrite_substitution = Some(sub.clone());
            r.prefix_rewrite = None;
        }
    }
}

/// An ingress-nginx regex location (`location ~* "^/path"`) as a route `regex` (which must match
/// the whole path).
pub fn nginx_location_regex(path: &str) -> String {
    format!("(?i){path}.*")
}

/// nginx `rewrite "(?i)/path" target break;` replaces the whole URI when the regex matches:
/// as a `regex_rewrite_pattern`, the pattern must cover the whole path.
pub fn nginx_rewrite_regex(path: &str) -> String {
    format!("(?i)^{path}.*")
}

/// Keys (without prefix) that are raw nginx configuration.
const SNIPPETS: &[&str] = &[
    "configuration-snippet",
    "server-snippet",
    "auth-snippet",
    "stream-snippet",
    "modsecurity-snippet",
];

/// Known ingress-nginx annotations rampart cannot honour, with the reason.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("auth-type", "basic/digest auth is not available; use sign-in (auth-url to oauth2-proxy) or ingress.pomerium.io/policy"),
    ("auth-secret", "basic/digest auth is not available"),
    ("auth-secret-type", "basic/digest auth is not available"),
    ("auth-realm", "basic/digest auth is not available"),
    ("auth-tls-secret", "use ingress.pomerium.io/tls_downstream_client_ca_secret"),
    ("auth-tls-verify-client", "use ingress.pomerium.io/tls_downstream_client_ca_secret"),
    ("auth-tls-verify-depth", "use ingress.pomerium.io/tls_downstream_client_ca_secret"),
    ("auth-tls-pass-certificate-to-upstream", "use ingress.pomerium.io/set_request_headers with ${pomerium.client_cert_fingerprint}"),
    ("auth-method", "external auth services other than oauth2-proxy are not available"),
    ("auth-request-redirect", "external auth services other than oauth2-proxy are not available"),
    ("auth-proxy-set-headers", "external auth services other than oauth2-proxy are not available"),
    ("auth-cache-key", "external auth services other than oauth2-proxy are not available"),
    ("auth-cache-duration", "external auth services other than oauth2-proxy are not available"),
    ("auth-keepalive", "external auth services other than oauth2-proxy are not available"),
    ("enable-global-auth", "there is no global external auth"),
    ("canary", "canary Ingresses are not available; use weighted backends (Gateway API HTTPRoute)"),
    ("canary-by-header", "canary Ingresses are not available"),
    ("canary-by-header-value", "canary Ingresses are not available"),
    ("canary-by-cookie", "canary Ingresses are not available"),
    ("canary-weight", "canary Ingresses are not available"),
    ("limit-rps", "rate limiting is not available"),
    ("limit-rpm", "rate limiting is not available"),
    ("limit-connections", "rate limiting is not available"),
    ("limit-burst-multiplier", "rate limiting is not available"),
    ("limit-rate", "rate limiting is not available"),
    ("limit-rate-after", "rate limiting is not available"),
    ("limit-whitelist", "rate limiting is not available"),
    ("enable-modsecurity", "ModSecurity is not available"),
    ("enable-owasp-core-rules", "ModSecurity is not available"),
    ("modsecurity-transaction-id", "ModSecurity is not available"),
    ("mirror-target", "request mirroring is not available"),
    ("mirror-uri", "request mirroring is not available"),
    ("mirror-request-body", "request mirroring is not available"),
    ("mirror-host", "request mirroring is not available"),
    ("custom-http-errors", "custom error pages are not available"),
    ("default-backend", "custom error backends are not available"),
    ("server-alias", "add the host as another rule of the Ingress"),
    ("proxy-ssl-secret", "use ingress.pomerium.io/tls_client_secret and tls_custom_ca_secret"),
    ("proxy-ssl-verify", "use ingress.pomerium.io/tls_skip_verify / tls_custom_ca_secret"),
    ("proxy-ssl-name", "use ingress.pomerium.io/tls_server_name"),
    ("proxy-ssl-server-name", "use ingress.pomerium.io/tls_server_name"),
    ("x-forwarded-prefix", "use ingress.pomerium.io/set_request_headers"),
    ("satisfy", "rampart evaluates one policy per route"),
    ("from-to-www-redirect", "add a route for the other host with ingress.pomerium.io/return_redirect"),
];

/// Accepted, with the same meaning in rampart: nothing to do.
const NO_OPS: &[(&str, &str)] = &[
    // rampart proxies the request as nginx would with these at their defaults; a
    // non-default value is rejected in `translate`.
    ("proxy-buffering", "off"),
    ("proxy-request-buffering", "off"),
    ("proxy-http-version", "1.1"),
];

/// Accepted oauth2-proxy response headers and what rampart sends instead.
const AUTH_HEADERS: &[(&str, &str)] = &[
    ("authorization", "Bearer ${pomerium.id_token}"),
    ("x-auth-request-access-token", "${pomerium.access_token}"),
];
/// oauth2-proxy identity headers covered by the identity headers of `pass_identity_headers`.
const IDENTITY_HEADERS: &[&str] = &[
    "x-auth-request-user",
    "x-auth-request-email",
    "x-auth-request-groups",
    "x-auth-request-preferred-username",
];

/// Route policy annotations of ours: when one is present the user owns the allow rules.
const POLICY_KEYS: &[&str] = &[
    "policy",
    "allowed_users",
    "allowed_domains",
    "allowed_idp_claims",
    "allow_any_authenticated_user",
    "allow_public_unauthenticated_access",
];

/// Who may pass an oauth2-proxy `auth-url`, from our annotations, the `auth-url` query
/// (`allowed_emails`, `allowed_groups`) and `rampart convert --oauth2-proxy-flags`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    pub emails: Vec<String>,
    pub groups: Vec<String>,
    pub domains: Vec<String>,
}

impl AllowList {
    pub fn is_empty(&self) -> bool {
        self.emails.is_empty() && self.groups.is_empty() && self.domains.is_empty()
    }

    fn extend(&mut self, other: &AllowList) {
        for (dst, src) in [
            (&mut self.emails, &other.emails),
            (&mut self.groups, &other.groups),
            (&mut self.domains, &other.domains),
        ] {
            for v in src {
                if !dst.contains(v) {
                    dst.push(v.clone());
                }
            }
        }
    }

    /// The PPL `allow` rule: any of the criteria. `*` as a domain means any signed-in user.
    fn rule(&self) -> Option<Value> {
        if self.domains.iter().any(|d| d == "*") {
            return Some(json!({"allow": {"or": [{"authenticated_user": true}]}}));
        }
        let mut or = Vec::new();
        for e in &self.emails {
            or.push(json!({"email": {"is": e}}));
        }
        for d in &self.domains {
            or.push(json!({"domain": {"is": d}}));
        }
        for g in &self.groups {
            or.push(json!({"groups": {"has": g}}));
        }
        (!or.is_empty()).then(|| json!({"allow": {"or": or}}))
    }
}

fn comma_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// nginx time (`proxy-*-timeout`): seconds, optionally with an nginx unit (`ms`, `s`, `m`, `h`).
pub fn parse_nginx_seconds(v: &str) -> Result<Duration, String> {
    let v = v.trim();
    let (num, mult_ms) = if let Some(n) = v.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60_000)
    } else if let Some(n) = v.strip_suffix('h') {
        (n, 3_600_000)
    } else {
        (v, 1000)
    };
    let n: u64 = num
        .parse()
        .map_err(|_| "expected a number of seconds, e.g. 60".to_string())?;
    Ok(Duration::from_millis(n.saturating_mul(mult_ms)))
}

/// nginx size (`proxy-body-size`): bytes, or with `k`/`m`/`g` (case-insensitive, 1024-based);
/// `0` means no limit.
pub fn parse_nginx_size(v: &str) -> Result<u64, String> {
    let v = v.trim();
    let lower = v.to_ascii_lowercase();
    let (num, mult) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 1u64 << 10),
        Some('m') => (&lower[..lower.len() - 1], 1 << 20),
        Some('g') => (&lower[..lower.len() - 1], 1 << 30),
        _ => (lower.as_str(), 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| "expected a size such as 8m, 512k, 1g or 0 (no limit)".to_string())?;
    n.checked_mul(mult)
        .ok_or_else(|| "size too large".to_string())
}

/// Go duration text for a whole number of milliseconds.
fn go_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// nginx `$1` captures → `\1` (regex_rewrite_substitution syntax). Other nginx variables are
/// rejected: rampart has no equivalent.
fn rewrite_substitution(v: &str) -> Result<String, String> {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' {
            match chars.peek() {
                Some(d) if d.is_ascii_digit() => {
                    out.push('\\');
                    out.push(*d);
                    chars.next();
                }
                _ => {
                    let rest: String = chars
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    return Err(format!("nginx variable ${rest} has no rampart equivalent; only $1..$9 captures are supported"));
                }
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// Does this `auth-url` point at oauth2-proxy (`…/oauth2/auth`)? Returns the allow list from
/// its query (`allowed_emails`, `allowed_groups`).
fn oauth2_proxy_url(v: &str) -> Result<AllowList, String> {
    // `$host` and friends are allowed in the URL by ingress-nginx; make it parseable.
    let cleaned = v
        .replace("$host", "host.invalid")
        .replace("$scheme", "https");
    let url = Url::parse(&cleaned).map_err(|e| format!("not a URL: {e}"))?;
    if !url.path().trim_end_matches('/').ends_with("/oauth2/auth") {
        return Err(
            "only oauth2-proxy (an auth-url ending in /oauth2/auth) can be replaced by rampart's sign-in"
                .into(),
        );
    }
    let mut allow = AllowList::default();
    for (k, val) in url.query_pairs() {
        match k.as_ref() {
            "allowed_emails" => allow.emails.extend(comma_list(&val)),
            "allowed_groups" => allow.groups.extend(comma_list(&val)),
            _ => {}
        }
    }
    Ok(allow)
}

fn bool_value(key: &str, v: &str) -> Result<bool, NginxError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(bad(key, v, "expected true or false")),
    }
}

fn bad(key: &str, value: &str, why: impl Into<String>) -> NginxError {
    NginxError::BadValue {
        key: key.into(),
        value: value.into(),
        why: why.into(),
    }
}

/// Parses a PPL annotation value (YAML or JSON; one rule or a list) into a list of rules.
fn policy_rules(raw: &str) -> Vec<Value> {
    match serde_yaml::from_str::<Value>(raw) {
        Ok(Value::Array(list)) => list,
        Ok(Value::Null) => Vec::new(),
        Ok(v) => vec![v],
        // Left as is: the regular parser reports the error.
        Err(_) => Vec::new(),
    }
}

/// Translates the nginx annotations of an Ingress. `annotations` is the whole map (our own
/// `‹prefix›/…` annotations included: an explicit one wins over a translated one);
/// `extra_allow` adds allowed users (from `rampart convert` flags).
pub fn translate(
    annotations: &BTreeMap<String, String>,
    prefix: &str,
    extra_allow: &AllowList,
) -> Translation {
    let mut t = Translation::default();
    let nginx: Vec<(&str, &str)> = annotations
        .iter()
        .filter_map(|(k, v)| {
            let rest = k.strip_prefix(NGINX_PREFIX)?.strip_prefix('/')?;
            Some((rest, v.as_str()))
        })
        .collect();
    if nginx.is_empty() {
        return t;
    }
    let ours = |k: &str| annotations.get(&format!("{prefix}/{k}"));
    let get = |k: &str| nginx.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
    let mut set: BTreeMap<String, String> = BTreeMap::new();
    let mut deny_rules: Vec<Value> = Vec::new();
    let mut signin: Option<AllowList> = None;
    let mut idle: Option<Duration> = None;
    let mut use_regex = false;
    let mut identity_headers = false;
    let mut request_headers: BTreeMap<String, String> = BTreeMap::new();
    let mut cors: Option<Value> = None;
    let mut redirect_from: Option<&str> = None;

    for &(key, value) in &nginx {
        let v = value.trim();
        let result: Result<(), NginxError> = (|| {
            if SNIPPETS.contains(&key) {
                return Err(NginxError::Snippet(key.into()));
            }
            if let Some((_, why)) = UNSUPPORTED.iter().find(|(k, _)| *k == key) {
                return Err(NginxError::Unsupported {
                    key: key.into(),
                    why: (*why).into(),
                });
            }
            if let Some((_, default)) = NO_OPS.iter().find(|(k, _)| *k == key) {
                let accepted =
                    v.eq_ignore_ascii_case(default) || (key.ends_with("buffering") && v == "on");
                if !accepted {
                    return Err(bad(key, value, format!("rampart streams requests and responses; only {default:?} (or on) is accepted")));
                }
                return Ok(());
            }
            match key {
                "proxy-body-size" => {
                    let n = parse_nginx_size(v).map_err(|why| bad(key, value, why))?;
                    // 0 = no limit, rampart's default.
                    if n > 0 {
                        set.insert("max_request_body_bytes".into(), n.to_string());
                    }
                }
                "permanent-redirect" | "temporal-redirect" | "app-root" => {
                    if let Some(other) = redirect_from {
                        return Err(bad(key, value, format!("only one of permanent-redirect, temporal-redirect and app-root may be set (also {other})")));
                    }
                    redirect_from = Some(key);
                    let code_key = format!("{key}-code");
                    let code = match get(&code_key) {
                        Some(c) => c
                            .trim()
                            .parse::<u16>()
                            .map_err(|_| bad(&code_key, c, "expected a redirect status code"))?,
                        None if key == "permanent-redirect" => 301,
                        None => 302,
                    };
                    let mut rd = json!({"location": v, "code": code});
                    if key == "app-root" {
                        rd["path"] = json!("/");
                    }
                    let parsed: crate::http::redirect::ReturnRedirectConfig =
                        serde_json::from_value(rd.clone())
                            .map_err(|e| bad(key, value, e.to_string()))?;
                    crate::http::redirect::ReturnRedirect::compile(&parsed)
                        .map_err(|e| bad(key, value, e))?;
                    set.insert("return_redirect".into(), rd.to_string());
                }
                "permanent-redirect-code" | "temporal-redirect-code" => {
                    let base = key.trim_end_matches("-code");
                    if get(base).is_none() {
                        return Err(bad(
                            key,
                            value,
                            format!("needs nginx.ingress.kubernetes.io/{base}"),
                        ));
                    }
                }
                "enable-cors" => {
                    if bool_value(key, v)? {
                        cors = Some(cors_option(&nginx)?);
                    }
                }
                "cors-allow-origin"
                | "cors-allow-methods"
                | "cors-allow-headers"
                | "cors-allow-credentials"
                | "cors-max-age"
                | "cors-expose-headers" => {
                    if get("enable-cors").map(|v| v.trim().eq_ignore_ascii_case("true"))
                        != Some(true)
                    {
                        return Err(bad(
                            key,
                            value,
                            "needs nginx.ingress.kubernetes.io/enable-cors: \"true\"",
                        ));
                    }
                }
                "client-body-buffer-size"
                | "proxy-buffer-size"
                | "proxy-buffers-number"
                | "proxy-max-temp-file-size" => {
                    t.notes.push(format!("{NGINX_PREFIX}/{key}: no effect, rampart streams bodies without buffering them"));
                }
                "auth-url" => {
                    let allow = oauth2_proxy_url(v).map_err(|why| bad(key, value, why))?;
                    signin = Some(allow);
                }
                "auth-signin" | "auth-signin-redirect-param" => {
                    // rampart redirects to its own sign-in; the URL is not needed.
                    if get("auth-url").is_none() {
                        return Err(bad(
                            key,
                            value,
                            "needs nginx.ingress.kubernetes.io/auth-url (oauth2-proxy)",
                        ));
                    }
                }
                "auth-response-headers" => {
                    for h in comma_list(v) {
                        let lower = h.to_ascii_lowercase();
                        if let Some((_, tmpl)) = AUTH_HEADERS.iter().find(|(n, _)| *n == lower) {
                            request_headers.insert(h.clone(), (*tmpl).into());
                        } else if IDENTITY_HEADERS.contains(&lower.as_str()) {
                            identity_headers = true;
                        } else {
                            return Err(bad(key, value, format!("header {h} is not an oauth2-proxy header rampart can provide (Authorization, X-Auth-Request-Access-Token, X-Auth-Request-User, -Email, -Groups, -Preferred-Username)")));
                        }
                    }
                }
                "whitelist-source-range" | "allowlist-source-range" => {
                    let ranges = source_ranges(key, value)?;
                    deny_rules.push(json!({"deny": {"not": [{"source_ip": ranges}]}}));
                }
                "denylist-source-range" => {
                    let ranges = source_ranges(key, value)?;
                    deny_rules.push(json!({"deny": {"or": [{"source_ip": ranges}]}}));
                }
                "rewrite-target" => {
                    let sub = rewrite_substitution(v).map_err(|why| bad(key, value, why))?;
                    t.rewrite_target = Some(sub);
                }
                "use-regex" => use_regex = bool_value(key, v)?,
                "ssl-redirect" | "force-ssl-redirect" => {
                    if !bool_value(key, v)? && key == "ssl-redirect" {
                        return Err(bad(key, value, "rampart serves Ingress routes over HTTPS only (plain HTTP requests are redirected)"));
                    }
                }
                "backend-protocol" => match v.to_ascii_uppercase().as_str() {
                    "HTTP" => {}
                    "HTTPS" | "GRPCS" => {
                        set.insert("secure_upstream".into(), "true".into());
                    }
                    "GRPC" | "H2C" => {
                        set.insert("h2c_upstream".into(), "true".into());
                    }
                    _ => {
                        return Err(bad(
                            key,
                            value,
                            "rampart proxies HTTP, HTTPS, GRPC, GRPCS and H2C backends only",
                        ))
                    }
                },
                "proxy-connect-timeout" => {
                    let d = parse_nginx_seconds(v).map_err(|why| bad(key, value, why))?;
                    if d < Duration::from_secs(10) {
                        t.notes.push(format!("{NGINX_PREFIX}/{key}: rampart's upstream connect timeout is fixed at 10s (asked {})", go_duration(d)));
                    }
                }
                "proxy-read-timeout" | "proxy-send-timeout" => {
                    let d = parse_nginx_seconds(v).map_err(|why| bad(key, value, why))?;
                    idle = Some(idle.map_or(d, |i| i.max(d)));
                }
                "upstream-vhost" => {
                    if v.contains('$') {
                        return Err(bad(
                            key,
                            value,
                            "nginx variables are not supported, give a host name",
                        ));
                    }
                    set.insert("host_rewrite".into(), v.into());
                }
                "affinity" => {
                    if !v.eq_ignore_ascii_case("cookie") {
                        return Err(bad(key, value, "only cookie affinity is supported"));
                    }
                    set.insert("load_balancing_policy".into(), "ring_hash".into());
                    let name = get("session-cookie-name").unwrap_or("INGRESSCOOKIE").trim();
                    set.insert("sticky_cookie".into(), name.into());
                }
                "affinity-mode"
                | "session-cookie-name"
                | "session-cookie-max-age"
                | "session-cookie-expires"
                | "session-cookie-path"
                | "session-cookie-samesite"
                | "session-cookie-secure"
                | "session-cookie-change-on-failure"
                | "session-cookie-conditional-samesite-none" => {
                    if get("affinity").is_none() {
                        return Err(bad(
                            key,
                            value,
                            "needs nginx.ingress.kubernetes.io/affinity: cookie",
                        ));
                    }
                    if key != "session-cookie-name" {
                        t.notes.push(format!("{NGINX_PREFIX}/{key}: not used; rampart's sticky cookie is a session cookie on path / (HttpOnly, SameSite=Lax)"));
                    }
                }
                "proxy-next-upstream"
                | "proxy-next-upstream-tries"
                | "proxy-next-upstream-timeout"
                | "upstream-hash-by"
                | "load-balance"
                | "service-upstream"
                | "proxy-redirect-from"
                | "proxy-redirect-to"
                | "proxy-cookie-domain"
                | "proxy-cookie-path"
                | "enable-access-log"
                | "enable-rewrite-log"
                | "connection-proxy-header"
                | "ssl-passthrough"
                | "preserve-trailing-slash"
                | "http2-push-preload" => {
                    return Err(NginxError::Unsupported {
                        key: key.into(),
                        why: "no rampart equivalent yet".into(),
                    })
                }
                _ => return Err(NginxError::Unknown(key.into())),
            }
            Ok(())
        })();
        match result {
            Ok(()) => t.used.push(key.to_string()),
            Err(e) => t.errors.push(e),
        }
    }

    // ingress-nginx passes WebSocket upgrades on every location.
    set.insert("allow_websockets".into(), "true".into());
    if let Some(d) = idle {
        set.insert("idle_timeout".into(), go_duration(d));
        // nginx has no deadline for a whole request, only between reads/writes.
        set.insert("timeout".into(), "0s".into());
    }
    if let Some(c) = cors {
        set.insert("cors".into(), c.to_string());
    }
    if t.rewrite_target.is_some() || use_regex {
        t.regex_paths = true;
    }
    if identity_headers {
        set.insert("pass_identity_headers".into(), "true".into());
        t.notes.push(format!(
            "{NGINX_PREFIX}/auth-response-headers: the identity reaches the upstream in X-Pomerium-Jwt-Assertion; for X-Auth-Request-* headers set the Pomerium object's jwtClaimHeaders (e.g. X-Auth-Request-Email: email)"
        ));
    }
    if !request_headers.is_empty() {
        set.insert(
            "set_request_headers".into(),
            serde_json::to_string(&request_headers).unwrap_or_default(),
        );
    }

    // --- policy ---
    let explicit = POLICY_KEYS.iter().any(|k| ours(k).is_some());
    let mut rules: Vec<Value> = ours("policy").map(|p| policy_rules(p)).unwrap_or_default();
    match signin {
        Some(mut allow) => {
            for (key, list) in [
                (ALLOWED_EMAILS, &mut allow.emails),
                (ALLOWED_GROUPS, &mut allow.groups),
                (ALLOWED_EMAIL_DOMAINS, &mut allow.domains),
            ] {
                if let Some(v) = annotations.get(key) {
                    list.extend(comma_list(v));
                }
            }
            allow.extend(extra_allow);
            match allow.rule() {
                Some(rule) => rules.push(rule),
                None if !explicit => {
                    set.insert("allow_any_authenticated_user".into(), "true".into());
                }
                None => {}
            }
        }
        None => {
            for key in [ALLOWED_EMAILS, ALLOWED_GROUPS, ALLOWED_EMAIL_DOMAINS] {
                if annotations.contains_key(key) {
                    t.errors.push(NginxError::BadValue {
                        key: "auth-url".into(),
                        value: String::new(),
                        why: format!(
                            "{key} needs an oauth2-proxy auth-url (sign-in) on the Ingress"
                        ),
                    });
                }
            }
            if !explicit {
                // ingress-nginx serves everyone unless told otherwise.
                set.insert("allow_public_unauthenticated_access".into(), "true".into());
            }
        }
    }
    rules.extend(deny_rules);
    if !rules.is_empty() {
        set.insert(
            "policy".into(),
            serde_json::to_string(&Value::Array(rules)).unwrap_or_default(),
        );
    }
    // An explicit annotation of ours wins over a translated one (policy was merged above).
    for (k, v) in set {
        if k == "policy" || ours(&k).is_none() {
            t.annotations.insert(k, v);
        }
    }
    t
}

/// `enable-cors` with the `cors-*` annotations as the `cors` route option (nginx defaults for
/// what is not given).
fn cors_option(nginx: &[(&str, &str)]) -> Result<Value, NginxError> {
    let get = |k: &str| nginx.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
    let mut c = serde_json::Map::new();
    if let Some(v) = get("cors-allow-origin") {
        c.insert("allow_origin".into(), json!(comma_list(v)));
    }
    for (k, field) in [
        ("cors-allow-methods", "allow_methods"),
        ("cors-allow-headers", "allow_headers"),
        ("cors-expose-headers", "expose_headers"),
    ] {
        if let Some(v) = get(k) {
            c.insert(field.into(), json!(v.trim()));
        }
    }
    if let Some(v) = get("cors-allow-credentials") {
        c.insert(
            "allow_credentials".into(),
            json!(bool_value("cors-allow-credentials", v)?),
        );
    }
    if let Some(v) = get("cors-max-age") {
        let n: u64 = v
            .trim()
            .parse()
            .map_err(|_| bad("cors-max-age", v, "expected a number of seconds"))?;
        c.insert("max_age".into(), json!(n));
    }
    let value = Value::Object(c);
    let parsed: crate::http::cors::CorsConfig = serde_json::from_value(value.clone())
        .map_err(|e| bad("enable-cors", "true", e.to_string()))?;
    crate::http::cors::Cors::compile(&parsed).map_err(|e| {
        bad(
            "cors-allow-origin",
            get("cors-allow-origin").unwrap_or(""),
            e,
        )
    })?;
    Ok(value)
}

fn source_ranges(key: &str, value: &str) -> Result<Vec<String>, NginxError> {
    let ranges = comma_list(value);
    if ranges.is_empty() {
        return Err(bad(key, value, "expected a comma list of CIDR ranges"));
    }
    for r in &ranges {
        let ok = match r.split_once('/') {
            Some((ip, bits)) => {
                ip.parse::<std::net::IpAddr>().is_ok() && bits.parse::<u8>().is_ok()
            }
            None => r.parse::<std::net::IpAddr>().is_ok(),
        };
        if !ok {
            return Err(bad(
                key,
                value,
                format!("{r} is not an IP address or CIDR range"),
            ));
        }
    }
    Ok(ranges)
}

#[cfg(test)]
mod tests;
