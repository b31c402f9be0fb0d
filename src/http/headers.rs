//! Header handling between client and upstream: hop-by-hop removal, spoofing protection
//! (spec 3.4), `X-Forwarded-*`, route header options, `set_request_headers` templates (spec 3.3)
//! and response headers (spec 3.5).

use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::authorize::UpstreamIdentity;
use crate::config::Route;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Hop-by-hop headers never forwarded (RFC 9110 7.6.1 plus the usual legacy ones).
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
    ) || name.as_str().starts_with("proxy-")
}

/// The tokens of a message's `Connection` header(s), read in place (no allocation: this runs
/// for every request and response).
#[derive(Clone, Copy)]
pub struct ConnectionTokens<'a> {
    headers: &'a HeaderMap,
    any: bool,
}

impl<'a> ConnectionTokens<'a> {
    pub fn of(headers: &'a HeaderMap) -> ConnectionTokens<'a> {
        ConnectionTokens {
            headers,
            any: headers.contains_key(header::CONNECTION),
        }
    }

    /// Each non-empty token, trimmed, as sent (compare case-insensitively).
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + 'a {
        let headers = self.any.then_some(self.headers);
        headers
            .into_iter()
            .flat_map(|h| h.get_all(header::CONNECTION))
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty())
    }

    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// Whether `token` is listed (ASCII case-insensitive).
    pub fn contains(&self, token: &str) -> bool {
        self.any && self.iter().any(|t| t.eq_ignore_ascii_case(token))
    }
}

/// An IP address as text for `X-Forwarded-For`: IPv4 written digit by digit (the
/// `Display` machinery costs more than the rest of the header work per request).
pub fn ip_text(ip: std::net::IpAddr) -> String {
    let std::net::IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut out = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if octet >= 100 {
            out.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            out.push(char::from(b'0' + octet / 10 % 10));
        }
        out.push(char::from(b'0' + octet % 10));
    }
    out
}

/// Copies end-to-end headers (drops hop-by-hop and `Connection`-listed ones).
pub fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(headers.len());
    copy_end_to_end(headers, &mut out, &[]);
    out
}

/// Appends the end-to-end headers of `from` to `to`, leaving out `skip` as well.
pub fn copy_end_to_end(from: &HeaderMap, to: &mut HeaderMap, skip: &[HeaderName]) {
    let listed = ConnectionTokens::of(from);
    for (name, value) in from.iter() {
        if is_hop_by_hop(name) || skip.contains(name) || listed.contains(name.as_str()) {
            continue;
        }
        to.append(name.clone(), value.clone());
    }
}

/// Everything the upstream request headers depend on.
pub struct ForwardContext<'a> {
    pub route: &'a Route,
    pub identity: &'a UpstreamIdentity,
    pub client_ip: Option<String>,
    /// `https` or `http` (downstream scheme).
    pub proto: &'static str,
    /// The client's Host header value as sent (with port).
    pub original_host: &'a str,
    pub upstream_host: &'a str,
    pub host_rewritten: bool,
    pub request_id: &'a HeaderValue,
    /// The session cookie name to strip (`_pomerium` by default).
    pub cookie_name: &'a str,
}

/// Client headers never forwarded as sent (spec 3.4); the proxy sets its own values of some.
const REPLACED_OR_DROPPED: [&str; 7] = [
    "host",
    "x-pomerium-authorization",
    "x-pomerium-reproxy-policy",
    "x-pomerium-reproxy-policy-hmac",
    "x-request-id",
    "x-forwarded-proto",
    "via",
];

/// Every client header with this prefix is dropped: only rampart sets `X-Pomerium-*` headers
/// upstream (identity, claims, `-For`), so none can be spoofed, configured or not.
const CLIENT_POMERIUM_PREFIX: &str = "x-pomerium-";

/// Builds the upstream request headers from the client's, in one pass over them.
pub fn upstream_request_headers(client: &HeaderMap, ctx: &ForwardContext<'_>) -> HeaderMap {
    let listed = ConnectionTokens::of(client);
    let pomerium_auth = client
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.len() >= 9 && v[..9].eq_ignore_ascii_case("pomerium "));
    let xfh_removed = ctx
        .route
        .remove_request_headers
        .iter()
        .any(|n| n.as_str() == "x-forwarded-host");
    let rewrite_xfh = ctx.host_rewritten && !xfh_removed;
    let strip_cookies = !ctx.cookie_name.is_empty() || ctx.identity.strip_cookie.is_some();
    let mut h = HeaderMap::with_capacity(client.len() + 4 + ctx.identity.set_headers.len());
    for (name, value) in client.iter() {
        let n = name.as_str();
        let dropped = is_hop_by_hop(name)
            || REPLACED_OR_DROPPED.contains(&n)
            || n.starts_with(CLIENT_POMERIUM_PREFIX)
            || (pomerium_auth && name == header::AUTHORIZATION)
            || (rewrite_xfh && n == "x-forwarded-host")
            || (ctx.client_ip.is_some() && n == "x-forwarded-for")
            || (strip_cookies && name == header::COOKIE)
            || ctx.identity.remove_headers.contains(name)
            || ctx.route.remove_request_headers.contains(name)
            // With a service account token the upstream trusts `Impersonate-*`: only the
            // proxy may set them.
            || (ctx.route.service_account_token.is_some() && n.starts_with("impersonate-"))
            || listed.contains(n);
        if !dropped {
            h.append(name.clone(), value.clone());
        }
    }
    if strip_cookies && !ctx.route.remove_request_headers.contains(&header::COOKIE) {
        let names = [
            ctx.cookie_name,
            ctx.identity.strip_cookie.as_deref().unwrap_or(""),
        ];
        if let Some(v) = cookies_without(client, &names) {
            h.insert(header::COOKIE, v);
        }
    }

    // X-Forwarded-*.
    if let Some(ip) = &ctx.client_ip {
        let prev = client
            .get(X_FORWARDED_FOR)
            .and_then(|v| v.to_str().ok())
            .filter(|p| !p.trim().is_empty());
        let xff = match prev {
            Some(prev) => HeaderValue::from_str(&format!("{prev}, {ip}")).ok(),
            None => HeaderValue::from_str(ip).ok(),
        };
        if let Some(v) = xff {
            h.insert(X_FORWARDED_FOR, v);
        }
    }
    h.insert(X_FORWARDED_PROTO, HeaderValue::from_static(ctx.proto));
    if rewrite_xfh {
        let xfh = match client.get(X_FORWARDED_HOST).and_then(|v| v.to_str().ok()) {
            Some(prev) if !prev.trim().is_empty() => format!("{prev}, {}", ctx.original_host),
            _ => ctx.original_host.to_string(),
        };
        if let Ok(v) = HeaderValue::from_str(&xfh) {
            h.insert(X_FORWARDED_HOST, v);
        }
    }
    h.insert(X_REQUEST_ID, ctx.request_id.clone());

    // Identity from the authorizer (its removals were applied above). A name listed twice
    // (`Impersonate-Group`) is sent twice.
    for (name, _) in &ctx.identity.set_headers {
        h.remove(name);
    }
    for (name, value) in &ctx.identity.set_headers {
        h.append(name.clone(), value.clone());
    }

    // `kubernetes_service_account_token`: the upstream sees the service account, not the
    // client's credentials.
    if let Some(v) = &ctx.route.service_account_token {
        h.insert(header::AUTHORIZATION, v.clone());
    }

    // Route options: remove (client copies were left out above; this catches the headers
    // added here), then set (a header in both is set).
    for name in &ctx.route.remove_request_headers {
        h.remove(name);
    }
    for (name, template) in &ctx.route.set_request_headers {
        if name == header::HOST {
            continue;
        }
        let value = render_template(template, &|reference| resolve_reference(reference, client));
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name.clone(), v);
        }
    }
    for (name, value) in &ctx.route.add_request_headers {
        h.append(name.clone(), value.clone());
    }
    if let Ok(v) = HeaderValue::from_str(ctx.upstream_host) {
        h.insert(header::HOST, v);
    }
    h
}

/// The client's `Cookie` headers as one value without the pairs named in `names` (empty names
/// are ignored); `None` when no pair is left.
pub fn cookies_without(client: &HeaderMap, names: &[&str]) -> Option<HeaderValue> {
    let stripped = |name: &str| names.iter().any(|n| !n.is_empty() && *n == name);
    let mentions = |v: &str| names.iter().any(|n| !n.is_empty() && v.contains(n));
    let mut pairs: Vec<&str> = Vec::new();
    for v in client
        .get_all(header::COOKIE)
        .filter_map(|v| std::str::from_utf8(v.as_bytes()).ok())
    {
        if !mentions(v) {
            // Nothing to take out of this header: keep its pairs as they are.
            if !v.trim().is_empty() {
                pairs.push(v.trim());
            }
            continue;
        }
        pairs.extend(
            v.split(';')
                .map(str::trim)
                .filter(|pair| !pair.is_empty())
                .filter(|pair| {
                    !stripped(pair.split_once('=').map(|(k, _)| k.trim()).unwrap_or(pair))
                }),
        );
    }
    if pairs.is_empty() {
        return None;
    }
    HeaderValue::from_bytes(pairs.join("; ").as_bytes()).ok()
}

/// Resolves a template reference without a session: only `pomerium.request.headers["X"]`
/// has a value here; identity values (`pomerium.jwt`, tokens, client cert) come with sign-in.
pub fn resolve_reference(reference: &str, client: &HeaderMap) -> Option<String> {
    let r: String = reference.chars().filter(|c| !c.is_whitespace()).collect();
    let name = r
        .strip_prefix("pomerium.request.headers[")
        .and_then(|s| s.strip_suffix(']'))
        .map(|s| s.trim_matches(|c| c == '"' || c == '\''))?;
    client
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Renders a `set_request_headers` value (spec 3.3): `$$` → `$`; `${ref}` and `$a.b`
/// references are looked up with `resolve` (unknown → empty string).
pub fn render_template(template: &str, resolve: &dyn Fn(&str) -> Option<String>) -> String {
    if !template.contains('$') {
        return template.to_string();
    }
    let mut out = String::with_capacity(template.len());
    let bytes = template.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            let next = template[i..].find('$').map_or(bytes.len(), |n| i + n);
            out.push_str(&template[i..next]);
            i = next;
            continue;
        }
        match bytes.get(i + 1) {
            Some(b'$') => {
                out.push('$');
                i += 2;
            }
            Some(b'{') => match template[i + 2..].find('}') {
                Some(end) => {
                    let reference = &template[i + 2..i + 2 + end];
                    out.push_str(&resolve(reference.trim()).unwrap_or_default());
                    i += 3 + end;
                }
                None => {
                    out.push_str(&template[i..]);
                    i = bytes.len();
                }
            },
            Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {
                let len = template[i + 1..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
                    .unwrap_or(template.len() - i - 1);
                let reference = template[i + 1..i + 1 + len].trim_end_matches('.');
                out.push_str(&resolve(reference).unwrap_or_default());
                i += 1 + reference.len();
            }
            _ => {
                out.push('$');
                i += 1;
            }
        }
    }
    out
}

/// `rewrite_response_headers`: where a response header starts with `prefix`, that prefix is
/// replaced by the rule's value (every value of a repeated header).
pub fn rewrite_response_headers(h: &mut HeaderMap, rules: &[(HeaderName, String, String)]) {
    for (name, prefix, replacement) in rules {
        let values: Vec<HeaderValue> = h.get_all(name).cloned().collect();
        if values.is_empty() {
            continue;
        }
        let rewritten: Vec<HeaderValue> = values
            .into_iter()
            .map(|v| match v.to_str() {
                Ok(text) if text.starts_with(prefix.as_str()) => {
                    let new = format!("{replacement}{}", &text[prefix.len()..]);
                    HeaderValue::from_str(&new).unwrap_or(v)
                }
                _ => v,
            })
            .collect();
        h.remove(name);
        for v in rewritten {
            h.append(name.clone(), v);
        }
    }
}

/// Applies response headers (replacing any the upstream sent).
pub fn apply_response_headers(h: &mut HeaderMap, set: &[(HeaderName, HeaderValue)]) {
    for (name, value) in set {
        h.insert(name.clone(), value.clone());
    }
}

/// Adds the response headers: global ones merged with the route's (route wins; a `disable` key
/// on the route clears all), replacing any the upstream sent.
pub fn apply_response_header_set(
    h: &mut HeaderMap,
    global: &[(HeaderName, HeaderValue)],
    route: Option<&Route>,
) {
    let route_headers = route
        .map(|r| r.set_response_headers.as_slice())
        .unwrap_or(&[]);
    if route_headers.iter().any(|(n, _)| n.as_str() == "disable") {
        return;
    }
    for (name, value) in global {
        if !route_headers.iter().any(|(rn, _)| rn == name) {
            h.insert(name.clone(), value.clone());
        }
    }
    apply_response_headers(h, route_headers);
    if let Some(r) = route {
        for name in &r.remove_response_headers {
            h.remove(name);
        }
        for (name, value) in &r.add_response_headers {
            h.append(name.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_header_rewrites_replace_the_prefix_only() {
        let mut h = HeaderMap::new();
        let loc = HeaderName::from_static("location");
        h.insert(
            loc.clone(),
            HeaderValue::from_static("http://internal:8080/app/x"),
        );
        h.append(
            HeaderName::from_static("link"),
            HeaderValue::from_static("<http://other/>"),
        );
        let rules = vec![
            (
                loc.clone(),
                "http://internal:8080/".to_string(),
                "https://app.example.com/".to_string(),
            ),
            (
                HeaderName::from_static("link"),
                "http://internal".to_string(),
                "x".to_string(),
            ),
        ];
        rewrite_response_headers(&mut h, &rules);
        assert_eq!(h.get(&loc).unwrap(), "https://app.example.com/app/x");
        assert_eq!(
            h.get("link").unwrap(),
            "<http://other/>",
            "no prefix match: kept"
        );
    }

    #[test]
    fn templates() {
        let resolve = |r: &str| (r == "pomerium.x").then(|| "X".to_string());
        assert_eq!(render_template("plain", &resolve), "plain");
        assert_eq!(render_template("a$$b", &resolve), "a$b");
        assert_eq!(render_template("v=${pomerium.x}!", &resolve), "v=X!");
        assert_eq!(render_template("v=${ pomerium.x }", &resolve), "v=X");
        assert_eq!(render_template("$pomerium.x/", &resolve), "X/");
        assert_eq!(render_template("${pomerium.other}", &resolve), "");
    }

    #[test]
    fn request_header_reference() {
        let mut h = HeaderMap::new();
        h.insert(
            HeaderName::from_static("x-in"),
            HeaderValue::from_static("v1"),
        );
        assert_eq!(
            render_template("got ${pomerium.request.headers[\"X-In\"]}", &|r| {
                resolve_reference(r, &h)
            }),
            "got v1"
        );
    }

    #[test]
    fn strips_only_the_session_cookie() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; _pomerium=secret; b=2"),
        );
        assert_eq!(cookies_without(&h, &["_pomerium", ""]).unwrap(), "a=1; b=2");
        // A pair only mentioning the name (in its value, or as a longer name) is kept.
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("_pomerium_x=1; c=_pomerium"),
        );
        assert_eq!(
            cookies_without(&h, &["_pomerium"]).unwrap(),
            "_pomerium_x=1; c=_pomerium"
        );
        // Several Cookie headers become one; a second name is stripped too.
        h.insert(header::COOKIE, HeaderValue::from_static("_pomerium=x"));
        h.append(header::COOKIE, HeaderValue::from_static("sid=2; d=4"));
        assert_eq!(cookies_without(&h, &["_pomerium", "sid"]).unwrap(), "d=4");
        h.remove(header::COOKIE);
        h.insert(header::COOKIE, HeaderValue::from_static("_pomerium=x"));
        assert!(cookies_without(&h, &["_pomerium"]).is_none());
        // A UTF-8 cookie (bytes a header allows, though not visible ASCII) is kept as is.
        h.insert(
            header::COOKIE,
            HeaderValue::from_bytes("name=Zoë; _pomerium=x; b=2".as_bytes()).unwrap(),
        );
        assert_eq!(
            cookies_without(&h, &["_pomerium"]).unwrap().as_bytes(),
            "name=Zoë; b=2".as_bytes()
        );
    }

    #[test]
    fn ip_text_matches_display() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "255.255.255.255",
            "1.100.9.99",
            "::1",
            "fe80::1",
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    #[test]
    fn drops_hop_by_hop_and_connection_listed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret"),
        );
        h.insert(
            HeaderName::from_static("x-secret"),
            HeaderValue::from_static("1"),
        );
        h.insert(
            HeaderName::from_static("keep-alive"),
            HeaderValue::from_static("5"),
        );
        h.insert(
            HeaderName::from_static("proxy-foo"),
            HeaderValue::from_static("1"),
        );
        h.insert(
            HeaderName::from_static("x-keep"),
            HeaderValue::from_static("1"),
        );
        let out = end_to_end(&h);
        assert_eq!(out.len(), 1);
        assert!(out.contains_key("x-keep"));
    }
}
