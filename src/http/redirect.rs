//! Route option `return_redirect` (rampart only; ingress-nginx `permanent-redirect`,
//! `temporal-redirect`, `app-root`): answer with a redirect instead of proxying, for every
//! path or for one exact path. Answered before sign-in, as nginx's `return` is.

use actix_web::http::header::{HeaderValue, LOCATION};
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReturnRedirectConfig {
    /// The `Location` (absolute URL or a path).
    pub location: String,
    /// 301, 302, 303, 307 or 308 (default 302).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    /// Only requests for exactly this path are redirected (default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ReturnRedirect {
    location: HeaderValue,
    status: StatusCode,
    path: Option<String>,
}

impl ReturnRedirect {
    pub fn compile(c: &ReturnRedirectConfig) -> Result<ReturnRedirect, String> {
        let code = c.code.unwrap_or(302);
        if ![301, 302, 303, 307, 308].contains(&code) {
            return Err(format!(
                "return_redirect.code: {code} is not a redirect status (301, 302, 303, 307, 308)"
            ));
        }
        let loc = c.location.trim();
        let ok = loc.starts_with('/') || loc.starts_with("http://") || loc.starts_with("https://");
        if !ok {
            return Err(format!(
                "return_redirect.location: {loc:?} must be a path or an http(s) URL"
            ));
        }
        Ok(ReturnRedirect {
            location: HeaderValue::from_str(loc).map_err(|_| {
                format!("return_redirect.location: {loc:?} is not a valid header value")
            })?,
            status: StatusCode::from_u16(code).map_err(|e| e.to_string())?,
            path: c.path.clone(),
        })
    }

    /// The redirect for a request to `path`, if this option applies.
    pub fn answer(&self, path: &str) -> Option<HttpResponse> {
        if self.path.as_deref().is_some_and(|p| p != path) {
            return None;
        }
        Some(
            HttpResponse::build(self.status)
                .insert_header((LOCATION, self.location.clone()))
                .finish(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_all_or_one_path() {
        let all = ReturnRedirect::compile(&ReturnRedirectConfig {
            location: "https://new.example.com/".into(),
            code: Some(301),
            path: None,
        })
        .unwrap();
        let r = all.answer("/x").unwrap();
        assert_eq!(r.status(), 301);
        assert_eq!(
            r.headers().get("location").unwrap(),
            "https://new.example.com/"
        );
        let root = ReturnRedirect::compile(&ReturnRedirectConfig {
            location: "/app".into(),
            code: None,
            path: Some("/".into()),
        })
        .unwrap();
        assert_eq!(root.answer("/").unwrap().status(), 302);
        assert!(root.answer("/other").is_none());
    }

    #[test]
    fn bad_values() {
        let c = |location: &str, code| ReturnRedirectConfig {
            location: location.into(),
            code,
            path: None,
        };
        assert!(ReturnRedirect::compile(&c("/x", Some(200)))
            .unwrap_err()
            .contains("not a redirect status"));
        assert!(ReturnRedirect::compile(&c("x.example.com", None))
            .unwrap_err()
            .contains("must be a path or an http(s) URL"));
    }
}
