//! `rampart verify`: a tiny upstream app (like Pomerium's verify service). Every request gets a
//! report of its headers and of the identity JWT in `X-Pomerium-Jwt-Assertion`, verified against
//! the proxy's JWKS (signature, `exp`/`iat`, `aud`): JSON by default, HTML for browsers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::header::{self, HeaderMap};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Map, Value};
use thiserror::Error;

use crate::cli::VerifyArgs;
use crate::http::auth::respond::{html_escape, page, prefers_html};
use crate::http::request::host_without_port;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("no X-Pomerium-Jwt-Assertion header")]
    Missing,
    #[error("malformed JWT: {0}")]
    Malformed(String),
    #[error("cannot fetch JWKS from {url}: {message}")]
    Jwks { url: String, message: String },
    #[error("no key with kid {0:?} in the JWKS")]
    UnknownKid(String),
    #[error("invalid JWT: {0}")]
    Invalid(String),
    #[error("audience {got:?} is not one of {expected:?}")]
    Audience { got: String, expected: Vec<String> },
}

/// Verifies `token` with `jwks`; `audiences` are the accepted `aud` values.
pub fn verify_jwt(
    token: &str,
    jwks: &JwkSet,
    audiences: &[String],
) -> Result<Map<String, Value>, VerifyError> {
    let header =
        jsonwebtoken::decode_header(token).map_err(|e| VerifyError::Malformed(e.to_string()))?;
    let kid = header.kid.clone().unwrap_or_default();
    let jwk = jwks
        .find(&kid)
        .ok_or_else(|| VerifyError::UnknownKid(kid.clone()))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| VerifyError::Invalid(e.to_string()))?;
    if !matches!(header.alg, Algorithm::ES256 | Algorithm::RS256) {
        return Err(VerifyError::Invalid(format!(
            "unexpected algorithm {:?}",
            header.alg
        )));
    }
    let mut v = Validation::new(header.alg);
    v.validate_aud = false;
    v.leeway = 5;
    v.set_required_spec_claims(&["exp", "iat", "aud"]);
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &v)
        .map_err(|e| VerifyError::Invalid(e.to_string()))?;
    let aud = data
        .claims
        .get("aud")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if !audiences.iter().any(|a| a == &aud) {
        return Err(VerifyError::Audience {
            got: aud,
            expected: audiences.to_vec(),
        });
    }
    Ok(data.claims)
}

struct JwksCache {
    url: String,
    http: openidconnect::reqwest::Client,
    cached: tokio::sync::Mutex<Option<(JwkSet, Instant)>>,
}

impl JwksCache {
    async fn fetch(&self) -> Result<JwkSet, VerifyError> {
        let err = |m: String| VerifyError::Jwks {
            url: self.url.clone(),
            message: m,
        };
        let resp = self
            .http
            .get(&self.url)
            .send()
            .await
            .map_err(|e| err(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(err(format!("status {}", resp.status())));
        }
        let body = resp.bytes().await.map_err(|e| err(e.to_string()))?;
        serde_json::from_slice(&body).map_err(|e| err(e.to_string()))
    }

    /// Cached JWKS (60 s), refetched when `kid` is unknown.
    async fn get(&self, kid: &str) -> Result<JwkSet, VerifyError> {
        let mut guard = self.cached.lock().await;
        if let Some((set, at)) = guard.as_ref() {
            if at.elapsed() < Duration::from_secs(60) && set.find(kid).is_some() {
                return Ok(set.clone());
            }
        }
        let set = self.fetch().await?;
        *guard = Some((set.clone(), Instant::now()));
        Ok(set)
    }
}

fn expected_audiences(headers: &HeaderMap, configured: &Option<String>) -> Vec<String> {
    if let Some(a) = configured {
        return vec![a.clone()];
    }
    let mut out = Vec::new();
    if let Some(xfh) = headers
        .get("x-forwarded-host")
        .and_then(|v| v.to_str().ok())
    {
        for h in xfh.split(',') {
            out.push(host_without_port(h).into_owned());
        }
    }
    if let Some(h) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) {
        out.push(host_without_port(h).into_owned());
    }
    out
}

async fn report(
    req: HttpRequest,
    state: web::Data<(Arc<JwksCache>, Option<String>)>,
) -> HttpResponse {
    let (jwks, audience) = state.get_ref();
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in req.headers() {
        headers
            .entry(k.as_str().to_string())
            .or_default()
            .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
    let token = req
        .headers()
        .get("x-pomerium-jwt-assertion")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let audiences = expected_audiences(req.headers(), audience);
    let result = match &token {
        None => Err(VerifyError::Missing),
        Some(t) => match jsonwebtoken::decode_header(t) {
            Err(e) => Err(VerifyError::Malformed(e.to_string())),
            Ok(h) => match jwks.get(h.kid.as_deref().unwrap_or("")).await {
                Ok(set) => verify_jwt(t, &set, &audiences),
                Err(e) => Err(e),
            },
        },
    };
    let body = json!({
        "verified": result.is_ok(),
        "error": result.as_ref().err().map(|e| e.to_string()),
        "claims": result.as_ref().ok(),
        "method": req.method().as_str(),
        "path": req.path(),
        "query": req.query_string(),
        "headers": headers,
    });
    if prefers_html(req.headers()) && req.headers().contains_key(header::ACCEPT) {
        let mut rows = String::new();
        for (k, vs) in &headers {
            for v in vs {
                rows.push_str(&format!(
                    "<tr><th>{}</th><td>{}</td></tr>",
                    html_escape(k),
                    html_escape(v)
                ));
            }
        }
        let status = match &result {
            Ok(c) => format!(
                "<p id=\"status\">verified identity: <strong id=\"email\">{}</strong> (sub <span id=\"sub\">{}</span>)</p><pre id=\"claims\">{}</pre>",
                html_escape(c.get("email").and_then(Value::as_str).unwrap_or("")),
                html_escape(c.get("sub").and_then(Value::as_str).unwrap_or("")),
                html_escape(&serde_json::to_string_pretty(c).unwrap_or_default())
            ),
            Err(e) => format!("<p id=\"status\">not verified: <span id=\"error\">{}</span></p>", html_escape(&e.to_string())),
        };
        return HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body(page(
                "rampart verify",
                &format!("{status}<h2>Request headers</h2><table>{rows}</table>"),
            ));
    }
    HttpResponse::Ok().json(body)
}

/// Runs the verify app until interrupted.
pub fn run(args: VerifyArgs) -> std::io::Result<()> {
    let http = openidconnect::reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(std::io::Error::other)?;
    let cache = Arc::new(JwksCache {
        url: args.jwks_url.clone(),
        http,
        cached: tokio::sync::Mutex::new(None),
    });
    let data = web::Data::new((cache, args.audience.clone()));
    actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(report))
        })
        .workers(1)
        .bind(&args.address)?;
        for addr in server.addrs() {
            // Tests wait for this line.
            println!("LISTENING http://{addr}");
        }
        tracing::info!(address = %args.address, jwks = %args.jwks_url, "verify app listening");
        server.run().await
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::auth::identity::{identity_claims, IdentitySigner};
    use crate::store::{unix_now, Session};

    fn setup() -> (IdentitySigner, JwkSet) {
        let signer = IdentitySigner::new(&p256::SecretKey::from_slice(&[3; 32]).unwrap());
        let set = serde_json::from_value(signer.jwks()).unwrap();
        (signer, set)
    }

    #[test]
    fn verifies_and_checks_audience() {
        let (signer, set) = setup();
        let mut s = Session::new_for_test("sid", "alice");
        s.email = "alice@example.com".into();
        let claims = identity_claims("app.localhost", false, Some(&s), &[], unix_now(), "j");
        let t = signer.sign(&claims);
        let c = verify_jwt(&t, &set, &["app.localhost".into()]).unwrap();
        assert_eq!(c["email"], "alice@example.com");
        assert!(matches!(
            verify_jwt(&t, &set, &["other".into()]),
            Err(VerifyError::Audience { .. })
        ));
    }

    #[test]
    fn rejects_expired_forged_and_unknown_keys() {
        let (signer, set) = setup();
        let old = identity_claims("a", false, None, &[], unix_now() - 1000, "j");
        assert!(matches!(
            verify_jwt(&signer.sign(&old), &set, &["a".into()]),
            Err(VerifyError::Invalid(_))
        ));
        let other = IdentitySigner::new(&p256::SecretKey::from_slice(&[4; 32]).unwrap());
        let t = other.sign(&identity_claims("a", false, None, &[], unix_now(), "j"));
        assert!(matches!(
            verify_jwt(&t, &set, &["a".into()]),
            Err(VerifyError::UnknownKid(_))
        ));
        // Same kid, payload swapped: signature check fails.
        let good = signer.sign(&identity_claims("a", false, None, &[], unix_now(), "j"));
        let evil = other.sign(&identity_claims(
            "a",
            false,
            None,
            &["x".into()],
            unix_now(),
            "k",
        ));
        let parts: Vec<&str> = good.split('.').collect();
        let eparts: Vec<&str> = evil.split('.').collect();
        let forged = format!("{}.{}.{}", parts[0], eparts[1], parts[2]);
        assert!(matches!(
            verify_jwt(&forged, &set, &["a".into()]),
            Err(VerifyError::Invalid(_))
        ));
        assert!(matches!(
            verify_jwt("nope", &set, &["a".into()]),
            Err(VerifyError::Malformed(_))
        ));
    }

    #[test]
    fn audiences_from_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "127.0.0.1:9000".parse().unwrap());
        h.insert(
            header::HeaderName::from_static("x-forwarded-host"),
            "app.localhost:8443".parse().unwrap(),
        );
        assert_eq!(
            expected_audiences(&h, &None),
            vec!["app.localhost".to_string(), "127.0.0.1".to_string()]
        );
        assert_eq!(
            expected_audiences(&h, &Some("x".into())),
            vec!["x".to_string()]
        );
    }
}
