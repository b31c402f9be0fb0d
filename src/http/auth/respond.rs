//! Responses the auth layer produces: Login as 302 (browsers) or 401 (everyone else), error
//! pages by client type (spec 5), cookies (spec 2.5).

use std::time::{Duration, SystemTime};

use actix_web::http::header::{self, HeaderMap, HeaderValue, HttpDate};
use actix_web::http::StatusCode;
use actix_web::HttpResponse;

use super::settings::CookieOptions;

pub const CSP: &str = "default-src 'none'; style-src 'self' 'unsafe-inline' data:; img-src * data:; script-src 'self' 'unsafe-inline'; font-src data:; connect-src 'self'";

use crate::http::errors::accept_quality as accept_q;

/// Browser-like: no Accept, or text/html is at least as acceptable as application/json.
pub fn prefers_html(headers: &HeaderMap) -> bool {
    let accept = match headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) {
        None => return true,
        Some(a) if a.trim().is_empty() => return true,
        Some(a) => a,
    };
    let html = accept_q(accept, "text", "html");
    html > 0.0 && html >= accept_q(accept, "application", "json")
}

/// JSON client: application/json preferred over text/html.
pub fn prefers_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(|a| {
            let json = accept_q(a, "application", "json");
            json > 0.0 && json > accept_q(a, "text", "html")
        })
        .unwrap_or(false)
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/grpc"))
}

fn is_kubectl(headers: &HeaderMap) -> bool {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|u| u.contains("kubernetes/"))
}

/// The request id to show: the one the proxy put on the request, else a new one.
pub fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// Login outcome: 302 to `sign_in_url` for browsers without header/query session carriers,
/// else 401 `Unauthenticated`.
pub fn login_response(
    headers: &HeaderMap,
    has_other_carrier: bool,
    sign_in_url: &str,
) -> HttpResponse {
    if prefers_html(headers) && !has_other_carrier && !is_grpc(headers) && !is_kubectl(headers) {
        return HttpResponse::Found()
            .insert_header((header::LOCATION, sign_in_url))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .finish();
    }
    error_response(headers, StatusCode::UNAUTHORIZED, "Unauthenticated", None)
}

fn grpc_status(code: u16) -> &'static str {
    match code {
        400 => "13",
        401 => "16",
        403 => "7",
        404 => "12",
        429 | 502 | 503 | 504 => "14",
        _ => "2",
    }
}

pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A Pomerium-style page: title, body HTML, footer.
pub fn page(title: &str, body_html: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
<style>body{{font-family:system-ui,sans-serif;max-width:44rem;margin:3rem auto;padding:0 1rem;color:#222}}\
h1{{font-size:1.6rem}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3rem .6rem;text-align:left;vertical-align:top}}\
.muted{{color:#666;font-size:.9rem}}</style></head><body>\n<h1>{t}</h1>\n{body_html}\n</body></html>\n",
        t = html_escape(title)
    )
}

/// An error for the client type: JSON, kubectl Status, gRPC headers or an HTML page.
pub fn error_response(
    headers: &HeaderMap,
    status: StatusCode,
    reason: &str,
    detail: Option<&str>,
) -> HttpResponse {
    let id = request_id(headers);
    let mut b = HttpResponse::build(status);
    b.insert_header(("x-pomerium-intercepted-response", "true"));
    b.insert_header(("x-request-id", id.as_str()));
    b.insert_header((header::CACHE_CONTROL, "no-store"));
    if is_grpc(headers) {
        let ct = if headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("application/grpc-web"))
        {
            "application/grpc-web+json"
        } else {
            "application/grpc+json"
        };
        return b
            .insert_header((header::CONTENT_TYPE, ct))
            .insert_header(("grpc-status", grpc_status(status.as_u16())))
            .insert_header(("grpc-message", reason))
            .finish();
    }
    if is_kubectl(headers) {
        let k8s_reason = match status.as_u16() {
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "NotFound",
            _ => "",
        };
        return b.json(serde_json::json!({
            "apiVersion": "v1", "kind": "Status", "status": "Failure",
            "message": detail.unwrap_or(reason), "reason": k8s_reason, "code": status.as_u16(),
        }));
    }
    if prefers_json(headers) {
        let mut body = serde_json::json!({"error": reason, "request_id": id});
        if let Some(d) = detail {
            body["details"] = d.into();
        }
        return b.json(body);
    }
    let title = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    let mut body = format!("<p><strong>{}</strong></p>", html_escape(reason));
    if let Some(d) = detail {
        body.push_str(&format!("<p>{}</p>", html_escape(d)));
    }
    body.push_str(&format!(
        "<p class=\"muted\">If you should have access, contact your administrator with your request id {}.</p>",
        html_escape(&id)
    ));
    html_headers(&mut b);
    b.body(page(&title, &body))
}

/// Headers of rampart's own HTML pages.
pub fn html_headers(b: &mut actix_web::HttpResponseBuilder) {
    b.insert_header((header::CONTENT_TYPE, "text/html; charset=UTF-8"));
    b.insert_header(("content-security-policy", CSP));
    b.insert_header(("referrer-policy", "Same-origin"));
}

/// How long a cookie lives.
#[derive(Debug, Clone, Copy)]
pub enum CookieLife {
    /// `Expires=now+d`.
    Expires(Duration),
    /// `Max-Age=n`.
    MaxAge(u64),
    /// Clear: empty value, `Max-Age=-1`.
    Clear,
}

/// A `Set-Cookie` value with rampart's attributes (Path=/, Secure always).
pub fn set_cookie(
    name: &str,
    value: &str,
    opts: &CookieOptions,
    life: CookieLife,
    domain: bool,
) -> HeaderValue {
    let mut s = match life {
        CookieLife::Clear => format!("{name}=; Path=/; Max-Age=-1"),
        CookieLife::Expires(d) => format!(
            "{name}={value}; Path=/; Expires={}",
            HttpDate::from(SystemTime::now() + d)
        ),
        CookieLife::MaxAge(n) => format!("{name}={value}; Path=/; Max-Age={n}"),
    };
    if domain {
        if let Some(d) = &opts.domain {
            s.push_str(&format!("; Domain={d}"));
        }
    }
    s.push_str("; Secure");
    if opts.http_only {
        s.push_str("; HttpOnly");
    }
    if let Some(ss) = opts.same_site {
        s.push_str(&format!("; SameSite={}", ss.as_str()));
    }
    HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=-1"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderName;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    #[test]
    fn accept_negotiation() {
        assert!(prefers_html(&h(&[])));
        assert!(prefers_html(&h(&[("accept", "*/*")])));
        assert!(prefers_html(&h(&[(
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        )])));
        assert!(!prefers_html(&h(&[("accept", "application/json")])));
        assert!(!prefers_html(&h(&[(
            "accept",
            "application/json, text/html;q=0.5"
        )])));
        assert!(!prefers_html(&h(&[("accept", "text/plain")])));
        assert!(prefers_json(&h(&[("accept", "application/json")])));
        assert!(!prefers_json(&h(&[("accept", "*/*")])));
    }

    #[test]
    fn login_is_302_for_browsers_and_401_otherwise() {
        let r = login_response(&h(&[("accept", "text/html")]), false, "https://authn/x");
        assert_eq!(r.status(), StatusCode::FOUND);
        assert_eq!(r.headers().get("location").unwrap(), "https://authn/x");
        let r = login_response(
            &h(&[("accept", "application/json")]),
            false,
            "https://authn/x",
        );
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers().get("content-type").unwrap(), "application/json");
        let r = login_response(&h(&[]), true, "https://authn/x");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let r = login_response(&h(&[("content-type", "application/grpc")]), false, "u");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers().get("grpc-status").unwrap(), "16");
    }

    #[test]
    fn error_pages_by_client() {
        let r = error_response(
            &h(&[("user-agent", "kubectl/v1.32 kubernetes/abc")]),
            StatusCode::FORBIDDEN,
            "Forbidden",
            None,
        );
        assert_eq!(r.status(), 403);
        let r = error_response(
            &h(&[("x-request-id", "rid-1")]),
            StatusCode::FORBIDDEN,
            "Forbidden",
            Some("email-unauthorized"),
        );
        assert_eq!(
            r.headers().get("content-type").unwrap(),
            "text/html; charset=UTF-8"
        );
        assert_eq!(r.headers().get("x-request-id").unwrap(), "rid-1");
    }

    #[test]
    fn cookie_attributes() {
        let opts = CookieOptions {
            name: "_pomerium".into(),
            domain: Some("example.com".into()),
            expire: Duration::from_secs(3600),
            http_only: true,
            same_site: Some(super::super::settings::SameSite::Lax),
        };
        let c = set_cookie(
            "_pomerium",
            "v",
            &opts,
            CookieLife::Expires(opts.expire),
            true,
        );
        let c = c.to_str().unwrap();
        assert!(c.starts_with("_pomerium=v; Path=/; Expires="), "{c}");
        assert!(
            c.ends_with("; Domain=example.com; Secure; HttpOnly; SameSite=Lax"),
            "{c}"
        );
        let c = set_cookie("_pomerium", "v", &opts, CookieLife::Clear, false);
        assert_eq!(
            c.to_str().unwrap(),
            "_pomerium=; Path=/; Max-Age=-1; Secure; HttpOnly; SameSite=Lax"
        );
    }
}
