//! Route option `cors` (rampart only; ingress-nginx `enable-cors` + `cors-*`): the proxy answers
//! CORS preflights itself (204, before sign-in) and adds the CORS headers to the other answers
//! of a request with an allowed `Origin`. Defaults are ingress-nginx's.

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

pub const DEFAULT_METHODS: &str = "GET, PUT, POST, DELETE, PATCH, OPTIONS";
pub const DEFAULT_HEADERS: &str = "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization";
pub const DEFAULT_MAX_AGE: u64 = 1_728_000;

/// The `cors` route option as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// Allowed origins (`*` = any). Default `*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_origin: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_methods: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_headers: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expose_headers: Option<String>,
    /// Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_credentials: Option<bool>,
    /// Seconds. Default 1728000 (20 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u64>,
}

/// A checked `cors` option.
#[derive(Debug, Clone)]
pub struct Cors {
    any_origin: bool,
    origins: Vec<String>,
    methods: HeaderValue,
    headers: HeaderValue,
    expose: Option<HeaderValue>,
    credentials: bool,
    max_age: HeaderValue,
}

fn value(key: &str, v: &str) -> Result<HeaderValue, String> {
    HeaderValue::from_str(v).map_err(|_| format!("cors.{key}: not a valid header value: {v:?}"))
}

impl Cors {
    pub fn compile(c: &CorsConfig) -> Result<Cors, String> {
        let origins = c.allow_origin.clone().unwrap_or_else(|| vec!["*".into()]);
        for o in &origins {
            if o != "*" && !(o.starts_with("http://") || o.starts_with("https://")) {
                return Err(format!(
                    "cors.allow_origin: {o:?} must be * or start with http:// or https://"
                ));
            }
        }
        Ok(Cors {
            any_origin: origins.iter().any(|o| o == "*"),
            origins: origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            methods: value(
                "allow_methods",
                c.allow_methods.as_deref().unwrap_or(DEFAULT_METHODS),
            )?,
            headers: value(
                "allow_headers",
                c.allow_headers.as_deref().unwrap_or(DEFAULT_HEADERS),
            )?,
            expose: c
                .expose_headers
                .as_deref()
                .map(|v| value("expose_headers", v))
                .transpose()?,
            credentials: c.allow_credentials.unwrap_or(true),
            max_age: HeaderValue::from(c.max_age.unwrap_or(DEFAULT_MAX_AGE)),
        })
    }

    /// The `Access-Control-Allow-Origin` value for this request's `Origin`, if allowed.
    fn allowed_origin(&self, headers: &HeaderMap) -> Option<HeaderValue> {
        let origin = headers.get("origin")?;
        if self.any_origin {
            // With credentials, `*` is not accepted by browsers: echo the origin (as nginx's
            // `$http_origin`).
            return Some(if self.credentials {
                origin.clone()
            } else {
                HeaderValue::from_static("*")
            });
        }
        let o = origin
            .to_str()
            .ok()?
            .trim_end_matches('/')
            .to_ascii_lowercase();
        self.origins.contains(&o).then(|| origin.clone())
    }

    fn common(&self, origin: HeaderValue, out: &mut HeaderMap) {
        out.insert(
            HeaderName::from_static("access-control-allow-origin"),
            origin,
        );
        if self.credentials {
            out.insert(
                HeaderName::from_static("access-control-allow-credentials"),
                HeaderValue::from_static("true"),
            );
        }
        if !self.any_origin || self.credentials {
            out.append(
                actix_web::http::header::VARY,
                HeaderValue::from_static("Origin"),
            );
        }
    }

    /// A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is answered
    /// here: 204 with the CORS headers (none when the origin is not allowed).
    pub fn preflight(&self, req: &HttpRequest) -> Option<HttpResponse> {
        let h = req.headers();
        if req.method() != Method::OPTIONS
            || !h.contains_key("origin")
            || !h.contains_key("access-control-request-method")
        {
            return None;
        }
        let mut resp = HttpResponse::NoContent().finish();
        if let Some(origin) = self.allowed_origin(h) {
            let out = resp.headers_mut();
            self.common(origin, out);
            out.insert(
                HeaderName::from_static("access-control-allow-methods"),
                self.methods.clone(),
            );
            out.insert(
                HeaderName::from_static("access-control-allow-headers"),
                self.headers.clone(),
            );
            out.insert(
                HeaderName::from_static("access-control-max-age"),
                self.max_age.clone(),
            );
        }
        Some(resp)
    }

    /// Adds the CORS headers to an answer to a request with an allowed `Origin`.
    pub fn decorate(&self, request: &HeaderMap, response: &mut HeaderMap) {
        let Some(origin) = self.allowed_origin(request) else {
            return;
        };
        self.common(origin, response);
        if let Some(e) = &self.expose {
            response.insert(
                HeaderName::from_static("access-control-expose-headers"),
                e.clone(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn cors(yaml: &str) -> Cors {
        Cors::compile(&serde_yaml::from_str(yaml).unwrap()).unwrap()
    }

    fn get<'a>(r: &'a HttpResponse, name: &str) -> Option<&'a str> {
        r.headers().get(name).and_then(|v| v.to_str().ok())
    }

    #[test]
    fn preflight_with_nginx_defaults() {
        let c = cors("{}");
        let req = TestRequest::default()
            .method(Method::OPTIONS)
            .insert_header(("origin", "https://app.example.com"))
            .insert_header(("access-control-request-method", "PUT"))
            .to_http_request();
        let r = c.preflight(&req).unwrap();
        assert_eq!(r.status(), 204);
        assert_eq!(
            get(&r, "access-control-allow-origin"),
            Some("https://app.example.com")
        );
        assert_eq!(get(&r, "access-control-allow-credentials"), Some("true"));
        assert_eq!(
            get(&r, "access-control-allow-methods"),
            Some(DEFAULT_METHODS)
        );
        assert_eq!(
            get(&r, "access-control-allow-headers"),
            Some(DEFAULT_HEADERS)
        );
        assert_eq!(get(&r, "access-control-max-age"), Some("1728000"));
        // Not a preflight.
        let plain = TestRequest::default()
            .method(Method::OPTIONS)
            .to_http_request();
        assert!(c.preflight(&plain).is_none());
    }

    #[test]
    fn origin_list_and_no_credentials() {
        let c = cors("{allow_origin: ['https://a.example.com'], allow_credentials: false, expose_headers: X-Total}");
        let mut out = HeaderMap::new();
        let mut req = HeaderMap::new();
        req.insert(
            HeaderName::from_static("origin"),
            HeaderValue::from_static("https://evil.example.com"),
        );
        c.decorate(&req, &mut out);
        assert!(out.is_empty());
        req.insert(
            HeaderName::from_static("origin"),
            HeaderValue::from_static("https://A.example.com"),
        );
        c.decorate(&req, &mut out);
        assert_eq!(
            out.get("access-control-allow-origin").unwrap(),
            "https://A.example.com"
        );
        assert!(out.get("access-control-allow-credentials").is_none());
        assert_eq!(out.get("access-control-expose-headers").unwrap(), "X-Total");
        let star = cors("{allow_credentials: false}");
        let mut out = HeaderMap::new();
        star.decorate(&req, &mut out);
        assert_eq!(out.get("access-control-allow-origin").unwrap(), "*");
    }

    #[test]
    fn bad_values_are_rejected() {
        let e = Cors::compile(&serde_yaml::from_str("{allow_origin: [example.com]}").unwrap())
            .unwrap_err();
        assert!(e.contains("cors.allow_origin"), "{e}");
        assert!(serde_yaml::from_str::<CorsConfig>("{allow_origins: ['*']}").is_err());
    }
}
