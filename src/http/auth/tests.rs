//! In-process tests of the intercept endpoints and session lookup (no IdP needed except where
//! it must be unreachable).

use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::http::StatusCode;
use actix_web::test::TestRequest;
use actix_web::HttpResponse;
use base64::Engine;

use super::handle::SessionHandle;
use super::route_hosts::RouteHosts;
use super::service::AuthService;
use super::signed_url::{build_url, query_param, sign_url, verify_signed_url};
use super::state::{csrf_cookie_value, encode_state, new_csrf_token};
use super::AuthSettings;
use crate::actors::session::Sessions;
use crate::config::route::HostMatch;
use crate::config::Settings;
use crate::store::memory::MemoryStore;
use crate::store::{unix_now, Session, SessionStore};

const AUTHN: &str = "http://authenticate.localhost:8000";

fn settings(idp_url: &str) -> AuthSettings {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    AuthSettings::from_settings(&Settings {
        shared_secret: Some(b64(&[1; 32])),
        cookie_secret: Some(b64(&[2; 32])),
        authenticate_service_url: Some(AUTHN.into()),
        idp_provider: Some("oidc".into()),
        idp_provider_url: Some(idp_url.into()),
        idp_client_id: Some("rampart".into()),
        idp_client_secret: Some("secret".into()),
        databroker_storage_type: Some("memory".into()),
        ..Default::default()
    })
    .unwrap()
}

struct Env {
    svc: Arc<AuthService>,
    store: Arc<dyn SessionStore>,
}

fn env() -> Env {
    // Port 9 (discard) on localhost: nothing listens, so the IdP is "down".
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::default());
    let sessions = Sessions::start(store.clone());
    Env {
        svc: AuthService::new(
            settings("http://127.0.0.1:9"),
            sessions,
            RouteHosts::new(&[
                HostMatch::Exact("app.localhost".into()),
                HostMatch::Exact("other.localhost".into()),
            ]),
        )
        .unwrap(),
        store,
    }
}

async fn call(svc: &Arc<AuthService>, req: TestRequest) -> HttpResponse {
    let req = req.to_http_request();
    svc.intercept(&req).expect("intercepted").await
}

fn body(resp: HttpResponse) -> String {
    let b = resp.into_body().try_into_bytes().unwrap_or_default();
    String::from_utf8_lossy(&b).into_owned()
}

fn location(resp: &HttpResponse) -> String {
    resp.headers()
        .get("location")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string()
}

fn set_cookies(resp: &HttpResponse) -> Vec<String> {
    resp.headers()
        .get_all("set-cookie")
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

async fn signed_in(env: &Env, user: &str) -> (Session, String) {
    let mut s = Session::new_for_test(&uuid::Uuid::new_v4().to_string(), user);
    s.email = user.into();
    s.idp_id = env.svc.idp_id().into();
    s.expires_at = unix_now() + 3600;
    s.claims
        .insert("groups".into(), serde_json::json!(["devs"]));
    env.svc.sessions.put(s.clone()).await.unwrap();
    let handle = SessionHandle {
        iss: "authenticate.localhost".into(),
        aud: vec!["authenticate.localhost".into(), "app.localhost".into()],
        iat: unix_now(),
        jti: s.id.clone(),
        sub: s.user_id.clone(),
        idp_id: env.svc.idp_id().into(),
        databroker_server_version: 1,
        databroker_record_version: 1,
    };
    (s, handle.sign(&env.svc.settings.shared_secret))
}

fn app(path: &str) -> TestRequest {
    TestRequest::get()
        .uri(path)
        .insert_header(("host", "app.localhost:8000"))
}

fn authn(path: &str) -> TestRequest {
    TestRequest::get()
        .uri(path)
        .insert_header(("host", "authenticate.localhost:8000"))
}

#[actix_rt::test]
async fn ordinary_paths_are_not_intercepted() {
    let e = env();
    assert!(e.svc.intercept(&app("/hello").to_http_request()).is_none());
    assert!(e
        .svc
        .intercept(&app("/.pomerium-not").to_http_request())
        .is_none());
}

#[actix_rt::test]
async fn jwks_and_well_known_on_any_host() {
    let e = env();
    let r = call(
        &e.svc,
        TestRequest::get()
            .uri("/.well-known/pomerium/jwks.json")
            .insert_header(("host", "anything:1")),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers().get("cache-control").unwrap(), "max-age=60");
    assert_eq!(r.headers().get("access-control-allow-origin").unwrap(), "*");
    assert!(r.headers().get("etag").is_some());
    let v: serde_json::Value = serde_json::from_str(&body(r)).unwrap();
    assert_eq!(v["keys"][0]["kid"], e.svc.signer.kid());
    assert_eq!(v["keys"][0]["alg"], "ES256");
    let r = call(&e.svc, app("/.well-known/pomerium")).await;
    let v: serde_json::Value = serde_json::from_str(&body(r)).unwrap();
    assert_eq!(
        v["jwks_uri"],
        "http://app.localhost:8000/.well-known/pomerium/jwks.json"
    );
    assert_eq!(
        v["authentication_callback_endpoint"],
        format!("{AUTHN}/oauth2/callback")
    );
}

#[actix_rt::test]
async fn user_endpoint_needs_a_session() {
    let e = env();
    // Browser: 302 to a signed sign-in URL that names the original URL.
    let r = call(
        &e.svc,
        app("/.pomerium/user").insert_header(("accept", "text/html")),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let loc = location(&r);
    assert!(
        loc.starts_with(&format!("{AUTHN}/.pomerium/sign_in?")),
        "{loc}"
    );
    verify_signed_url(&[1; 32], &loc, unix_now()).unwrap();
    assert_eq!(
        query_param(&loc, "pomerium_redirect_uri").unwrap(),
        "http://app.localhost:8000/.pomerium/user"
    );
    // JSON client: 401.
    let r = call(
        &e.svc,
        app("/.pomerium/user").insert_header(("accept", "application/json")),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(body(r).contains("\"error\":\"Unauthenticated\""));
}

#[actix_rt::test]
async fn user_endpoint_with_session_and_tampered_cookie() {
    let e = env();
    let (s, cookie) = signed_in(&e, "alice@example.com").await;
    let r = call(
        &e.svc,
        app("/.pomerium/user").insert_header(("cookie", format!("_pomerium={cookie}"))),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body(r)).unwrap();
    assert_eq!(v["email"], "alice@example.com");
    assert_eq!(v["sid"], s.id);
    assert_eq!(v["groups"], serde_json::json!(["devs"]));
    assert!(v.get("exp").is_none() && v.get("iss").is_none());

    // Flip one character of the signature: no session.
    let mut bad = cookie.clone();
    let last = bad.pop().unwrap();
    bad.push(if last == 'A' { 'B' } else { 'A' });
    let r = call(
        &e.svc,
        app("/.pomerium/user")
            .insert_header(("accept", "application/json"))
            .insert_header(("cookie", format!("_pomerium={bad}"))),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Header carrier works too.
    let r = call(
        &e.svc,
        app("/.pomerium/user").insert_header(("authorization", format!("Pomerium {cookie}"))),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[actix_rt::test]
async fn expired_session_is_removed() {
    let e = env();
    let (mut s, cookie) = signed_in(&e, "bob@example.com").await;
    s.expires_at = unix_now() - 1;
    e.svc.sessions.put(s.clone()).await.unwrap();
    let r = call(
        &e.svc,
        app("/.pomerium/user")
            .insert_header(("accept", "application/json"))
            .insert_header(("cookie", format!("_pomerium={cookie}"))),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // The delete was queued to the session actor; a later awaited message runs after it.
    e.svc.sessions.sweep(0).await.unwrap();
    assert!(e.store.get(&s.id).await.unwrap().is_none());
}

#[actix_rt::test]
async fn expired_access_token_without_refresh_token_is_no_session() {
    let e = env();
    let (mut s, cookie) = signed_in(&e, "bob@example.com").await;
    s.access_token_expires_at = Some(unix_now() - 1);
    e.svc.sessions.put(s.clone()).await.unwrap();
    let r = call(
        &e.svc,
        app("/.pomerium/user")
            .insert_header(("accept", "application/json"))
            .insert_header(("cookie", format!("_pomerium={cookie}"))),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[actix_rt::test]
async fn route_callback_sets_cookie_only_with_valid_signature() {
    let e = env();
    let (s, _) = signed_in(&e, "alice@example.com").await;
    let handle = SessionHandle {
        iss: "authenticate.localhost".into(),
        aud: vec!["authenticate.localhost".into(), "app.localhost".into()],
        iat: unix_now(),
        jti: s.id.clone(),
        sub: s.user_id.clone(),
        idp_id: e.svc.idp_id().into(),
        databroker_server_version: 1,
        databroker_record_version: 1,
    };
    let enc = handle.encrypt(&e.svc.settings.shared_secret);
    let url = build_url(
        "http://app.localhost:8000/.pomerium/callback/",
        &[
            ("pomerium_redirect_uri", "http://app.localhost:8000/x?y=1"),
            ("pomerium_session_encrypted", &enc),
        ],
    );
    let signed = sign_url(&[1; 32], &url, unix_now());
    let path = &signed["http://app.localhost:8000".len()..];
    let r = call(&e.svc, app(path)).await;
    assert_eq!(r.status(), StatusCode::FOUND, "{}", path);
    assert_eq!(location(&r), "http://app.localhost:8000/x?y=1");
    let cookies = set_cookies(&r);
    assert!(cookies[0].starts_with("_pomerium=ey"), "{cookies:?}");
    assert!(cookies[0].contains("; Secure; HttpOnly"));

    // Bad signature on the hop: 400, no cookie.
    let tampered = path.replace("pomerium_signature=", "pomerium_signature=A");
    let r = call(&e.svc, app(&tampered)).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(set_cookies(&r).is_empty());
    // Signed for another host: 400.
    let r = call(
        &e.svc,
        TestRequest::get()
            .uri(path)
            .insert_header(("host", "other.localhost:8000")),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // A host no route serves gets no callback endpoint at all (the proxy's 404).
    let req = TestRequest::get()
        .uri(path)
        .insert_header(("host", "evil.localhost:8000"))
        .to_http_request();
    assert!(e.svc.intercept(&req).is_none());
    // Validly signed for a route host, but the session was issued for another: 400.
    let mut other = handle.clone();
    other.aud = vec!["authenticate.localhost".into(), "other.localhost".into()];
    let url = build_url(
        "http://app.localhost:8000/.pomerium/callback/",
        &[
            ("pomerium_redirect_uri", "http://app.localhost:8000/"),
            (
                "pomerium_session_encrypted",
                &other.encrypt(&e.svc.settings.shared_secret),
            ),
        ],
    );
    let signed_other = sign_url(&[1; 32], &url, unix_now());
    let r = call(
        &e.svc,
        app(&signed_other["http://app.localhost:8000".len()..]),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(body(r).contains("issued for other.localhost"));
    // Expired signature: 400.
    let old = sign_url(&[1; 32], &url, unix_now() - 700);
    let r = call(&e.svc, app(&old["http://app.localhost:8000".len()..])).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[actix_rt::test]
async fn sign_in_checks_signature_and_reports_idp_down() {
    let e = env();
    let r = call(
        &e.svc,
        authn("/.pomerium/sign_in?pomerium_redirect_uri=http%3A%2F%2Fapp.localhost%2F"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let url = e.svc.sign_in_url("http://app.localhost:8000/").unwrap();
    let tampered = url.replace("app.localhost", "evil.localhost");
    let r = call(&e.svc, authn(&tampered[AUTHN.len()..])).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Valid signature, no session, IdP unreachable: clear 503.
    let r = call(
        &e.svc,
        authn(&url[AUTHN.len()..]).insert_header(("accept", "text/html")),
    )
    .await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let b = body(r);
    assert!(b.contains("could not be reached"), "{b}");
    assert!(b.contains("127.0.0.1:9"), "{b}");
    // XHR: 401.
    let r = call(
        &e.svc,
        authn(&url[AUTHN.len()..]).insert_header(("x-requested-with", "XMLHttpRequest")),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[actix_rt::test]
async fn sign_in_with_authenticate_session_hands_over_to_route_host() {
    let e = env();
    let (s, cookie) = signed_in(&e, "alice@example.com").await;
    let url = e.svc.sign_in_url("http://app.localhost:8000/x").unwrap();
    let r = call(
        &e.svc,
        authn(&url[AUTHN.len()..])
            .insert_header(("cookie", format!("_pomerium_authenticate={cookie}"))),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let loc = location(&r);
    assert!(
        loc.starts_with("http://app.localhost:8000/.pomerium/callback/?"),
        "{loc}"
    );
    verify_signed_url(&[1; 32], &loc, unix_now()).unwrap();
    let h = SessionHandle::decrypt(
        &query_param(&loc, "pomerium_session_encrypted").unwrap(),
        &e.svc.settings.shared_secret,
    )
    .unwrap();
    assert_eq!(h.jti, s.id);
    assert_eq!(
        h.aud,
        vec![
            "authenticate.localhost".to_string(),
            "app.localhost".to_string()
        ]
    );
}

#[actix_rt::test]
async fn sessions_go_only_to_route_hosts() {
    let e = env();
    let (s, cookie) = signed_in(&e, "alice@example.com").await;
    // Route-host endpoints do not answer on a host that matches no route.
    for path in [
        "/.pomerium/api/v1/login?pomerium_redirect_uri=http%3A%2F%2Flocalhost%3A9%2Fcb",
        "/.pomerium/user",
        "/.pomerium/",
        "/.pomerium/callback/",
    ] {
        let req = TestRequest::get()
            .uri(path)
            .insert_header(("host", "evil.localhost:8000"))
            .to_http_request();
        assert!(e.svc.intercept(&req).is_none(), "{path}");
    }
    // A validly signed sign-in URL for a non-route host: 400, no session handed over.
    let url = e.svc.sign_in_url("http://evil.localhost:8000/x").unwrap();
    let r = call(
        &e.svc,
        authn(&url[AUTHN.len()..])
            .insert_header(("cookie", format!("_pomerium_authenticate={cookie}"))),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get("location").is_none());
    assert!(body(r).contains("host evil.localhost matches no route"));
    // The same for a programmatic callback to a non-route host.
    let url = sign_url(
        &[1; 32],
        &build_url(
            &format!("{AUTHN}/.pomerium/sign_in"),
            &[
                ("pomerium_redirect_uri", "http://localhost:9/cb"),
                (
                    "pomerium_callback_uri",
                    "http://evil.localhost:8000/.pomerium/callback/",
                ),
                ("pomerium_is_programmatic", "true"),
            ],
        ),
        unix_now(),
    );
    let r = call(
        &e.svc,
        authn(&url[AUTHN.len()..])
            .insert_header(("cookie", format!("_pomerium_authenticate={cookie}"))),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(body(r).contains("pomerium_callback_uri: host evil.localhost"));
    // A handle issued for app.localhost is a session there, not on other.localhost.
    let headers = app("/")
        .insert_header(("cookie", format!("_pomerium={cookie}")))
        .to_http_request()
        .headers()
        .clone();
    let found = e
        .svc
        .session_for("app.localhost", &headers, "", "_pomerium")
        .await;
    assert_eq!(found.unwrap().id, s.id);
    assert!(e
        .svc
        .session_for("other.localhost", &headers, "", "_pomerium")
        .await
        .is_none());
}

#[actix_rt::test]
async fn oauth_callback_checks() {
    let e = env();
    let key = &e.svc.settings.cookie_secret;
    let r = call(&e.svc, authn("/oauth2/callback?error=access_denied")).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(body(r).contains("identity provider: access_denied"));
    let r = call(&e.svc, authn("/oauth2/callback?error=server_error")).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = call(&e.svc, authn("/oauth2/callback?state=x")).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(body(r).contains("identity provider returned empty code"));
    // Bad state.
    let r = call(&e.svc, authn("/oauth2/callback?code=c&state=bm9wZQ%3D%3D")).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(body(r).contains("state malformed, size: 1"));
    // Expired state.
    let csrf = new_csrf_token();
    let old = unix_now() - 600;
    let state = encode_state(key, &csrf, old, "t", "http://x/");
    let q = build_url("/oauth2/callback", &[("code", "c"), ("state", &state)]);
    let cookie = format!(
        "_pomerium_csrf={}",
        csrf_cookie_value(key, "_pomerium_csrf", &csrf, old)
    );
    let r = call(&e.svc, authn(&q).insert_header(("cookie", cookie))).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(body(r).contains("The request expired"));
    // Wrong CSRF cookie.
    let now = unix_now();
    let state = encode_state(key, &csrf, now, "t", "http://x/");
    let q = build_url("/oauth2/callback", &[("code", "c"), ("state", &state)]);
    let other = new_csrf_token();
    let cookie = format!(
        "_pomerium_csrf={}",
        csrf_cookie_value(key, "_pomerium_csrf", &other, now)
    );
    let r = call(&e.svc, authn(&q).insert_header(("cookie", cookie))).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(body(r).contains("invalid CSRF token"));
    // Right CSRF, IdP down at code exchange: 503.
    let cookie = format!(
        "_pomerium_csrf={}",
        csrf_cookie_value(key, "_pomerium_csrf", &csrf, now)
    );
    let r = call(&e.svc, authn(&q).insert_header(("cookie", cookie))).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[actix_rt::test]
async fn sign_out_clears_cookie_and_deletes_session() {
    let e = env();
    let r = call(&e.svc, app("/.pomerium/sign_out")).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert!(set_cookies(&r)[0].starts_with("_pomerium=; Path=/; Max-Age=-1"));
    let loc = location(&r);
    assert!(loc.starts_with(&format!("{AUTHN}/.pomerium/sign_out?")));
    verify_signed_url(&[1; 32], &loc, unix_now()).unwrap();

    let (s, cookie) = signed_in(&e, "alice@example.com").await;
    // Unsigned: confirmation page, nothing deleted.
    let r = call(
        &e.svc,
        authn("/.pomerium/sign_out")
            .insert_header(("cookie", format!("_pomerium_authenticate={cookie}"))),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(e.store.get(&s.id).await.unwrap().is_some());
    // Signed: session deleted; IdP down → straight to signed_out.
    let r = call(
        &e.svc,
        authn(&loc[AUTHN.len()..])
            .insert_header(("cookie", format!("_pomerium_authenticate={cookie}"))),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(location(&r), format!("{AUTHN}/.pomerium/signed_out"));
    assert!(set_cookies(&r)[0].starts_with("_pomerium_authenticate=; Path=/; Max-Age=-1"));
    assert!(e.store.get(&s.id).await.unwrap().is_none());
    // The route cookie no longer works.
    let r = call(
        &e.svc,
        app("/.pomerium/user")
            .insert_header(("accept", "application/json"))
            .insert_header(("cookie", format!("_pomerium={cookie}"))),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[actix_rt::test]
async fn jwt_endpoint_is_off_by_default() {
    let e = env();
    let (_, cookie) = signed_in(&e, "alice@example.com").await;
    let r = call(
        &e.svc,
        app("/.pomerium/jwt").insert_header(("cookie", format!("_pomerium={cookie}"))),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(body(r), "jwt not found");
}

#[actix_rt::test]
async fn upstream_identity_for_a_session() {
    let e = env();
    let (s, cookie) = signed_in(&e, "alice@example.com").await;
    let req = app("/x")
        .insert_header(("cookie", format!("_pomerium={cookie}; a=b")))
        .insert_header(("x-pomerium-jwt-assertion", "spoof"))
        .to_http_request();
    let info = super::service::RequestInfo::from_request(&req);
    let found = e
        .svc
        .session_for(&info.host, &info.headers, &info.query, "_pomerium")
        .await
        .unwrap();
    assert_eq!(found.id, s.id);
    let plan = e
        .svc
        .upstream_headers(&info.host, &info.headers, Some(&found), true, false);
    let jwt = plan
        .set
        .iter()
        .find(|(k, _)| k == "x-pomerium-jwt-assertion")
        .unwrap()
        .1
        .to_str()
        .unwrap()
        .to_string();
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(e.svc.signer.jwks()).unwrap();
    let claims = crate::verify::verify_jwt(&jwt, &set, &["app.localhost".into()]).unwrap();
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(
        plan.set
            .iter()
            .find(|(k, _)| k == "x-pomerium-jwt-assertion-for")
            .unwrap()
            .1,
        "spoof"
    );
    // Without pass_identity_headers the client's copy is removed.
    let plan = e
        .svc
        .upstream_headers(&info.host, &info.headers, Some(&found), false, false);
    assert!(plan.remove.iter().any(|k| k == "x-pomerium-jwt-assertion"));
    assert!(plan.set.is_empty());
}

#[actix_rt::test]
async fn programmatic_login_hands_a_jwt_to_localhost() {
    let e = env();
    // Checks: method, missing parameter, non-local redirect.
    let r = call(
        &e.svc,
        app("/.pomerium/api/v1/login?pomerium_redirect_uri=http%3A%2F%2Flocalhost%3A9%2Fcb")
            .method(actix_web::http::Method::POST),
    )
    .await;
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    let r = call(&e.svc, app("/.pomerium/api/v1/login")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = call(
        &e.svc,
        app("/.pomerium/api/v1/login?pomerium_redirect_uri=https%3A%2F%2Fevil.example%2Fcb"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let r = call(
        &e.svc,
        app("/.pomerium/api/v1/login?pomerium_redirect_uri=http%3A%2F%2Flocalhost%3A9%2Fcb"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let login_url = body(r);
    assert!(
        login_url.starts_with(&format!("{AUTHN}/.pomerium/sign_in?")),
        "{login_url}"
    );
    verify_signed_url(&[1; 32], &login_url, unix_now()).unwrap();

    // The user already has an authenticate session: straight to the route host's callback.
    let (s, cookie) = signed_in(&e, "alice@example.com").await;
    let r = call(
        &e.svc,
        authn(&login_url[AUTHN.len()..])
            .insert_header(("cookie", format!("_pomerium_authenticate={cookie}"))),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let cb = location(&r);
    assert!(
        cb.starts_with("http://app.localhost:8000/.pomerium/callback/?"),
        "{cb}"
    );
    let r = call(&e.svc, app(&cb["http://app.localhost:8000".len()..])).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert!(
        set_cookies(&r).is_empty(),
        "programmatic logins set no cookie"
    );
    let dest = location(&r);
    assert!(
        dest.starts_with("http://localhost:9/cb?pomerium_jwt="),
        "{dest}"
    );
    let jwt = query_param(&dest, "pomerium_jwt").unwrap();
    // The JWT works as a header credential.
    let r = call(
        &e.svc,
        app("/.pomerium/user").insert_header(("authorization", format!("Pomerium {jwt}"))),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body(r)).unwrap();
    assert_eq!(v["sid"], s.id);
}
