//! Request headers: where the session handle comes from (cookie or Pomerium's header/query
//! carriers, spec 2.5) and what reaches the upstream (spec 3.2, 3.4).

use std::borrow::Cow;
use std::sync::Arc;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, COOKIE};

pub const X_POMERIUM_AUTHORIZATION: &str = "x-pomerium-authorization";
pub const X_POMERIUM_JWT_ASSERTION: &str = "x-pomerium-jwt-assertion";
pub const X_POMERIUM_JWT_ASSERTION_FOR: &str = "x-pomerium-jwt-assertion-for";
pub const ALWAYS_REMOVED: [&str; 3] = [
    X_POMERIUM_AUTHORIZATION,
    "x-pomerium-reproxy-policy",
    "x-pomerium-reproxy-policy-hmac",
];

/// Where a session handle was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    Cookie,
    /// `X-Pomerium-Authorization`, `Authorization: Pomerium …`, `Authorization: Bearer Pomerium-…`.
    Header,
    /// `?pomerium_session=`.
    Query,
}

/// Values of cookie `name` in the request's Cookie headers, in order.
pub fn cookie_values<'a>(
    headers: &'a HeaderMap,
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(COOKIE)
        // UTF-8 checks long values word by word; `to_str` goes byte by byte, and a session
        // cookie is long.
        .filter_map(|v| std::str::from_utf8(v.as_bytes()).ok())
        .flat_map(|v| v.split(';'))
        .filter_map(move |pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k.trim() == name).then(|| v.trim().trim_matches('"'))
        })
}

fn pomerium_authorization(v: &str) -> Option<&str> {
    v.strip_prefix("Pomerium ")
        .or_else(|| v.strip_prefix("Bearer Pomerium-"))
}

/// The session handle candidates of a request, in Pomerium's order: header carriers, query,
/// then cookies.
pub fn session_tokens<'a>(
    headers: &'a HeaderMap,
    query: &'a str,
    cookie_name: &'a str,
) -> Vec<(Cow<'a, str>, Carrier)> {
    let mut out = Vec::new();
    if let Some(v) = headers
        .get(X_POMERIUM_AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        out.push((Cow::Borrowed(v.trim()), Carrier::Header));
    }
    for v in headers
        .get_all(AUTHORIZATION)
        .filter_map(|v| v.to_str().ok())
    {
        if let Some(t) = pomerium_authorization(v.trim()) {
            out.push((Cow::Borrowed(t.trim()), Carrier::Header));
        }
    }
    if query.contains("pomerium_session") {
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            if k == "pomerium_session" {
                out.push((v, Carrier::Query));
            }
        }
    }
    for v in cookie_values(headers, cookie_name) {
        if !v.is_empty() {
            out.push((Cow::Borrowed(v), Carrier::Cookie));
        }
    }
    out
}

/// The query without its `pomerium_session` parameters (a session carrier must not reach the
/// upstream); the other parameters are kept byte for byte, in order.
pub fn query_without_session(query: &str) -> Cow<'_, str> {
    if !query.contains("pomerium_session") && !query.contains('%') {
        return Cow::Borrowed(query);
    }
    let is_session = |pair: &str| {
        url::form_urlencoded::parse(pair.as_bytes())
            .next()
            .is_some_and(|(k, _)| k == "pomerium_session")
    };
    if !query.split('&').any(is_session) {
        return Cow::Borrowed(query);
    }
    Cow::Owned(
        query
            .split('&')
            .filter(|pair| !is_session(pair))
            .collect::<Vec<_>>()
            .join("&"),
    )
}

/// Whether the request carries a session handle some way other than the cookie (such clients get
/// 401, never a redirect).
pub fn has_non_cookie_carrier(headers: &HeaderMap, query: &str) -> bool {
    headers.contains_key(X_POMERIUM_AUTHORIZATION)
        || headers
            .get_all(AUTHORIZATION)
            .filter_map(|v| v.to_str().ok())
            .any(|v| pomerium_authorization(v.trim()).is_some())
        || url::form_urlencoded::parse(query.as_bytes()).any(|(k, _)| k == "pomerium_session")
}

/// Header changes for the upstream request. The removal lists are shared (built once per
/// configuration); only `set` is per request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeaderPlan {
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub remove: Arc<[HeaderName]>,
    /// Cookie pair to remove from `Cookie` (other cookies kept).
    pub strip_cookie: Option<Arc<str>>,
}

/// The identity headers for a signed JWT and its claim header values (in `claim_headers`
/// order). Claim values are arbitrary strings: characters a header cannot carry are dropped.
pub fn identity_headers(
    jwt: &str,
    claim_headers: &[(HeaderName, String)],
    values: &[String],
) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::with_capacity(1 + claim_headers.len());
    if let Ok(v) = HeaderValue::from_str(jwt) {
        out.push((HeaderName::from_static(X_POMERIUM_JWT_ASSERTION), v));
    }
    for ((h, _), value) in claim_headers.iter().zip(values) {
        let clean: String = value.chars().filter(|c| *c != '\r' && *c != '\n').collect();
        let v = HeaderValue::from_str(&clean).unwrap_or_else(|_| HeaderValue::from_static(""));
        out.push((h.clone(), v));
    }
    out
}

/// The parts of every upstream header plan that depend only on the configuration: the session
/// cookie name and the removal lists with and without an identity (and with `Authorization`
/// when it carries a Pomerium session).
#[derive(Debug, Clone)]
pub struct PlanTemplate {
    cookie: Arc<str>,
    /// Anonymous: `ALWAYS_REMOVED`, the assertion headers and the claim headers.
    anonymous: [Arc<[HeaderName]>; 2],
    /// With an identity: `ALWAYS_REMOVED` (the identity headers are overwritten).
    identified: [Arc<[HeaderName]>; 2],
}

impl PlanTemplate {
    pub fn new(cookie_name: &str, claim_headers: &[(HeaderName, String)]) -> PlanTemplate {
        let always: Vec<HeaderName> = ALWAYS_REMOVED
            .iter()
            .map(|h| HeaderName::from_static(h))
            .collect();
        let mut anonymous = always.clone();
        anonymous.push(HeaderName::from_static(X_POMERIUM_JWT_ASSERTION));
        anonymous.push(HeaderName::from_static(X_POMERIUM_JWT_ASSERTION_FOR));
        anonymous.extend(claim_headers.iter().map(|(h, _)| h.clone()));
        let with_auth = |list: &[HeaderName]| -> Arc<[HeaderName]> {
            list.iter().cloned().chain([AUTHORIZATION]).collect()
        };
        PlanTemplate {
            cookie: cookie_name.into(),
            anonymous: [anonymous.as_slice().into(), with_auth(&anonymous)],
            identified: [always.as_slice().into(), with_auth(&always)],
        }
    }

    /// The plan for one request. `identity` = the identity headers (`identity_headers`), present
    /// when identity headers are passed.
    pub fn plan(
        &self,
        incoming: &HeaderMap,
        identity: Option<&[(HeaderName, HeaderValue)]>,
    ) -> HeaderPlan {
        let pomerium_auth = incoming
            .get_all(AUTHORIZATION)
            .filter_map(|v| v.to_str().ok())
            .any(|v| pomerium_authorization(v.trim()).is_some());
        let lists = if identity.is_some() {
            &self.identified
        } else {
            &self.anonymous
        };
        let mut plan = HeaderPlan {
            set: Vec::new(),
            remove: lists[usize::from(pomerium_auth)].clone(),
            strip_cookie: Some(self.cookie.clone()),
        };
        if let Some(headers) = identity {
            plan.set.reserve(headers.len() + 1);
            // Chained proxies: the previous hop's assertion moves to `-For`. A client-sent
            // `-For` never reaches the upstream (the proxy drops every client `X-Pomerium-*`).
            if let Some(prev) = incoming.get(X_POMERIUM_JWT_ASSERTION) {
                plan.set.push((
                    HeaderName::from_static(X_POMERIUM_JWT_ASSERTION_FOR),
                    prev.clone(),
                ));
            }
            plan.set.extend(headers.iter().cloned());
        }
        plan
    }
}

/// Removes the `name` pair from a Cookie header value; `None` when nothing is left.
pub fn strip_cookie_pair(cookie_header: &str, name: &str) -> Option<String> {
    let kept: Vec<&str> = cookie_header
        .split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .filter(|p| p.split_once('=').map(|(k, _)| k.trim()) != Some(name))
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

/// Applies a plan to a header map (removals first, then sets, then the cookie strip).
pub fn apply_plan(headers: &mut HeaderMap, plan: &HeaderPlan) {
    for h in plan.remove.iter() {
        headers.remove(h);
    }
    for (h, v) in &plan.set {
        headers.insert(h.clone(), v.clone());
    }
    if let Some(name) = plan.strip_cookie.as_deref() {
        let cookies: Vec<String> = headers
            .get_all(COOKIE)
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| strip_cookie_pair(v, name))
            .collect();
        headers.remove(COOKIE);
        for c in cookies {
            if let Ok(v) = HeaderValue::from_str(&c) {
                headers.append(COOKIE, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds the upstream header changes (spec 3.2/3.4). `identity` = the signed JWT and the
    /// claim header values, present when identity headers are passed.
    fn upstream_plan(
        incoming: &HeaderMap,
        cookie_name: &str,
        claim_headers: &[(HeaderName, String)],
        identity: Option<(&str, Vec<String>)>,
    ) -> HeaderPlan {
        let headers = identity.map(|(jwt, values)| identity_headers(jwt, claim_headers, &values));
        PlanTemplate::new(cookie_name, claim_headers).plan(incoming, headers.as_deref())
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    #[test]
    fn finds_session_carriers() {
        let h = map(&[
            ("cookie", "a=1; _pomerium=tok1; b=2"),
            ("authorization", "Pomerium tok2"),
        ]);
        let t = session_tokens(&h, "pomerium_session=tok3", "_pomerium");
        assert_eq!(
            t,
            vec![
                ("tok2".into(), Carrier::Header),
                ("tok3".into(), Carrier::Query),
                ("tok1".into(), Carrier::Cookie)
            ]
        );
        // A UTF-8 cookie beside the session cookie does not hide it.
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_bytes("name=Zoë; _pomerium=tok5".as_bytes()).unwrap(),
        );
        assert_eq!(
            session_tokens(&h, "", "_pomerium"),
            vec![("tok5".into(), Carrier::Cookie)]
        );
        let h = map(&[("authorization", "Bearer Pomerium-tok4")]);
        assert_eq!(session_tokens(&h, "", "_pomerium")[0].0, "tok4");
        assert!(has_non_cookie_carrier(&h, ""));
        let h = map(&[("authorization", "Bearer abc"), ("cookie", "_pomerium=x")]);
        assert!(!has_non_cookie_carrier(&h, "a=b"));
        assert_eq!(session_tokens(&h, "", "_pomerium").len(), 1);
    }

    #[test]
    fn spoofed_identity_headers_are_removed_without_pass_identity() {
        let claim = vec![(
            HeaderName::from_static("x-pomerium-claim-email"),
            "email".to_string(),
        )];
        let mut h = map(&[
            ("x-pomerium-jwt-assertion", "forged"),
            ("x-pomerium-jwt-assertion-for", "forged2"),
            ("x-pomerium-claim-email", "ceo@example.com"),
            ("x-pomerium-authorization", "x"),
            ("authorization", "Pomerium tok"),
            ("cookie", "_pomerium=tok; theme=dark"),
            ("x-other", "kept"),
        ]);
        let plan = upstream_plan(&h, "_pomerium", &claim, None);
        apply_plan(&mut h, &plan);
        assert!(h.get("x-pomerium-jwt-assertion").is_none());
        assert!(h.get("x-pomerium-jwt-assertion-for").is_none());
        assert!(h.get("x-pomerium-claim-email").is_none());
        assert!(h.get("x-pomerium-authorization").is_none());
        assert!(h.get("authorization").is_none());
        assert_eq!(h.get("cookie").unwrap(), "theme=dark");
        assert_eq!(h.get("x-other").unwrap(), "kept");
    }

    #[test]
    fn identity_headers_overwrite_client_copies() {
        let claim = vec![(
            HeaderName::from_static("x-pomerium-claim-email"),
            "email".to_string(),
        )];
        let mut h = map(&[
            ("x-pomerium-jwt-assertion", "upstream-proxy-jwt"),
            ("x-pomerium-claim-email", "ceo@example.com"),
            ("authorization", "Bearer real-api-token"),
            ("cookie", "_pomerium=tok"),
        ]);
        let plan = upstream_plan(
            &h,
            "_pomerium",
            &claim,
            Some(("new.jwt.sig", vec!["alice@example.com".into()])),
        );
        apply_plan(&mut h, &plan);
        assert_eq!(h.get("x-pomerium-jwt-assertion").unwrap(), "new.jwt.sig");
        assert_eq!(
            h.get("x-pomerium-jwt-assertion-for").unwrap(),
            "upstream-proxy-jwt"
        );
        assert_eq!(
            h.get("x-pomerium-claim-email").unwrap(),
            "alice@example.com"
        );
        assert_eq!(h.get("authorization").unwrap(), "Bearer real-api-token");
        assert!(h.get("cookie").is_none());
    }

    #[test]
    fn client_sent_for_header_is_replaced_by_the_previous_assertion() {
        let h = map(&[
            ("x-pomerium-jwt-assertion", "a"),
            ("x-pomerium-jwt-assertion-for", "b"),
        ]);
        let plan = upstream_plan(&h, "_pomerium", &[], Some(("jwt", vec![])));
        let set_for: Vec<_> = plan
            .set
            .iter()
            .filter(|(k, _)| k == X_POMERIUM_JWT_ASSERTION_FOR)
            .map(|(_, v)| v.clone())
            .collect();
        assert_eq!(set_for, vec![HeaderValue::from_static("a")]);
    }

    #[test]
    fn session_query_parameter_is_removed() {
        assert_eq!(query_without_session("a=1&b=%20x"), "a=1&b=%20x");
        assert_eq!(query_without_session("pomerium_session=tok"), "");
        assert_eq!(
            query_without_session("a=1&pomerium_session=tok&b=2&pomerium_session=t2"),
            "a=1&b=2"
        );
        assert_eq!(
            query_without_session("pomerium%5Fsession=tok&x=%2F"),
            "x=%2F"
        );
        assert_eq!(
            query_without_session("pomerium_sessions=1&my_pomerium_session=2"),
            "pomerium_sessions=1&my_pomerium_session=2"
        );
    }

    #[test]
    fn strips_cookie_pairs() {
        assert_eq!(
            strip_cookie_pair("a=1; _pomerium=x; b=2", "_pomerium").as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(strip_cookie_pair("_pomerium=x", "_pomerium"), None);
        assert_eq!(
            strip_cookie_pair("_pomerium_csrf=x", "_pomerium").as_deref(),
            Some("_pomerium_csrf=x")
        );
    }
}
