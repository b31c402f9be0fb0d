//! Endpoints the auth layer answers itself, before route matching (spec 2.3, 2.7, 2.8):
//! the authenticate host (`/.pomerium/sign_in`, `/oauth2/callback`, `/.pomerium/sign_out`,
//! `/.pomerium/signed_out`, `/.pomerium/`), every route host (`/.pomerium/callback/`,
//! `/.pomerium/`, `/.pomerium/sign_out`, `/.pomerium/user`, `/.pomerium/jwt`) and the JWKS /
//! discovery documents on any host. A host that matches no route gets no route-host endpoint
//! (the proxy's 404) and no session.

use std::sync::Arc;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use futures::future::LocalBoxFuture;
use serde_json::{json, Value};

use super::handle::SessionHandle;
use super::oidc::{error_chain, IdpError};
use super::respond::{error_response, html_escape, html_headers, page, set_cookie, CookieLife};
use super::service::{merge_claims, AuthService, RequestInfo};
use super::signed_url::{build_url, sign_url, verify_signed_url, SignedUrlError};
use super::state::{
    check_csrf, csrf_cookie_value, decode_state, encode_state, new_csrf_token, nonce_for,
    pkce_cookie_name, pkce_cookie_value, pkce_verifier, StateError, CSRF_MAX_AGE_SECS,
    PKCE_MAX_AGE_SECS,
};
use crate::store::{unix_now, Session};

type Reply = LocalBoxFuture<'static, HttpResponse>;

/// `programmatic_redirect_domain_whitelist` default: where programmatic logins may return to.
pub const PROGRAMMATIC_REDIRECT_DOMAINS: [&str; 1] = ["localhost"];

fn ready(r: HttpResponse) -> Option<Reply> {
    Some(Box::pin(async move { r }))
}

impl AuthService {
    /// Whether `intercept` may answer this request (a cheap check on path and host).
    pub fn wants(&self, req: &HttpRequest) -> bool {
        let path = req.path();
        path.starts_with("/.pomerium")
            || path.starts_with("/.well-known/pomerium")
            || self
                .settings
                .is_authenticate_host(crate::http::request::host_part(
                    crate::http::proxy::request_host_str(req),
                ))
    }

    /// Whether the request is a form POST to the OAuth callback (`response_mode=form_post`,
    /// as Apple answers), which needs its body.
    pub fn wants_form(&self, req: &HttpRequest) -> bool {
        req.method() == actix_web::http::Method::POST
            && req.path() == "/oauth2/callback"
            && self
                .settings
                .is_authenticate_host(crate::http::request::host_part(
                    crate::http::proxy::request_host_str(req),
                ))
    }

    /// The OAuth callback posted as a form (`body` = the urlencoded parameters).
    pub fn intercept_form(self: &Arc<Self>, info: RequestInfo, body: String) -> Option<Reply> {
        let this = self.clone();
        Some(Box::pin(async move {
            this.oauth_callback(info, Some(body)).await
        }))
    }

    /// First look at every request. `Some` = answered here.
    pub fn intercept(self: &Arc<Self>, req: &HttpRequest) -> Option<Reply> {
        if !self.wants(req) {
            return None;
        }
        self.intercept_info(RequestInfo::from_request(req))
    }

    pub fn intercept_info(self: &Arc<Self>, info: RequestInfo) -> Option<Reply> {
        let this = self.clone();
        let path = info.path.clone();
        match path.as_str() {
            "/.well-known/pomerium" | "/.well-known/pomerium/" => {
                return ready(this.well_known(&info))
            }
            "/.well-known/pomerium/jwks.json" => return ready(this.jwks(&info)),
            _ => {}
        }
        if self.is_authenticate_host(&info.host) {
            return Some(Box::pin(async move { this.authenticate_host(info).await }));
        }
        if !path.starts_with("/.pomerium/") && path != "/.pomerium" {
            return None;
        }
        if !self.route_hosts.contains(&info.host) {
            // Not a route host: the proxy answers 404 (no route), like for any other path.
            return None;
        }
        Some(Box::pin(async move { this.route_host(info).await }))
    }

    async fn authenticate_host(self: Arc<Self>, info: RequestInfo) -> HttpResponse {
        match info.path.as_str() {
            "/oauth2/callback" => self.oauth_callback(info, None).await,
            "/.pomerium/sign_in" => self.sign_in(info).await,
            "/.pomerium/sign_out" => self.authenticate_sign_out(info).await,
            "/.pomerium/signed_out" => html(
                StatusCode::OK,
                "Signed out",
                "<p>You have been signed out.</p>",
            ),
            "/" => HttpResponse::Found()
                .insert_header((header::LOCATION, "/.pomerium/"))
                .finish(),
            "/.pomerium" | "/.pomerium/" => {
                let cookie = self.settings.cookie.authenticate_name();
                let session = self
                    .session_for(&info.host, &info.headers, "", &cookie)
                    .await;
                self.user_page(&info, session.as_deref())
            }
            "/robots.txt" => HttpResponse::Ok()
                .content_type("text/plain")
                .body("User-agent: *\nDisallow: /"),
            _ => error_response(&info.headers, StatusCode::NOT_FOUND, "Not Found", None),
        }
    }

    async fn route_host(self: Arc<Self>, info: RequestInfo) -> HttpResponse {
        let cookie = self.settings.cookie.name.clone();
        match info.path.as_str() {
            "/.pomerium/callback/" | "/.pomerium/callback" => self.route_callback(&info),
            "/.pomerium/sign_out" => self.route_sign_out(),
            "/.pomerium/" | "/.pomerium" => {
                let session = self
                    .session_for(&info.host, &info.headers, &info.query, &cookie)
                    .await;
                self.user_page(&info, session.as_deref())
            }
            "/.pomerium/user" => {
                match self
                    .session_for(&info.host, &info.headers, &info.query, &cookie)
                    .await
                {
                    Some(s) if !s.user_id.is_empty() => {
                        let (_, mut claims) = self.identity_jwt(&info, &s);
                        for k in ["iss", "aud", "exp", "iat", "jti"] {
                            claims.remove(k);
                        }
                        HttpResponse::Ok().json(Value::Object(claims))
                    }
                    Some(_) => HttpResponse::NotFound()
                        .content_type("text/plain")
                        .body("not found"),
                    None => self.login(&info),
                }
            }
            "/.pomerium/api/v1/login" => self.programmatic_login(&info),
            "/.pomerium/jwt" => {
                if !self.settings.jwt_endpoint {
                    return HttpResponse::NotFound()
                        .content_type("text/plain")
                        .body("jwt not found");
                }
                match self
                    .session_for(&info.host, &info.headers, &info.query, &cookie)
                    .await
                {
                    Some(s) => HttpResponse::Ok()
                        .content_type("application/jwt")
                        .body(self.identity_jwt(&info, &s).0),
                    None => self.login(&info),
                }
            }
            _ => error_response(&info.headers, StatusCode::NOT_FOUND, "Not Found", None),
        }
    }

    fn well_known(&self, info: &RequestInfo) -> HttpResponse {
        let origin = info.origin();
        let authn = self.authenticate_origin().unwrap_or_else(|| origin.clone());
        HttpResponse::Ok()
            .insert_header(("access-control-allow-origin", "*"))
            .json(json!({
                "issuer": format!("{origin}/"),
                "authentication_callback_endpoint": format!("{authn}/oauth2/callback"),
                "jwks_uri": format!("{origin}/.well-known/pomerium/jwks.json"),
                "frontchannel_logout_uri": format!("{origin}/.pomerium/sign_out"),
            }))
    }

    fn jwks(&self, info: &RequestInfo) -> HttpResponse {
        let body = self.signer.jwks().to_string();
        let etag = format!("\"{}\"", &self.signer.kid()[..16]);
        if info
            .headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == etag)
        {
            return HttpResponse::NotModified()
                .insert_header((header::ETAG, etag))
                .finish();
        }
        HttpResponse::Ok()
            .insert_header(("access-control-allow-origin", "*"))
            .insert_header((header::CACHE_CONTROL, "max-age=60"))
            .insert_header((header::ETAG, etag))
            .content_type("application/json")
            .body(body)
    }

    /// Checks the signature of a request URL; `origin` overrides the request's own.
    fn check_signed(&self, info: &RequestInfo, origin: Option<&str>) -> Result<(), SignedUrlError> {
        let url = match origin {
            Some(o) if info.query.is_empty() => format!("{o}{}", info.path),
            Some(o) => format!("{o}{}?{}", info.path, info.query),
            None => info.url(),
        };
        verify_signed_url(&self.settings.shared_secret.0, &url, unix_now())
    }

    /// Authenticate host `/.pomerium/sign_in` (spec 2.3 steps 2 and 4).
    async fn sign_in(self: Arc<Self>, info: RequestInfo) -> HttpResponse {
        let authn = self.authenticate_origin().unwrap_or_default();
        if let Err(e) = self.check_signed(&info, Some(&authn)) {
            return error_response(
                &info.headers,
                StatusCode::BAD_REQUEST,
                "Bad Request",
                Some(&format!("invalid sign-in URL: {e}")),
            );
        }
        let Some(redirect) = info.query_param("pomerium_redirect_uri") else {
            return error_response(
                &info.headers,
                StatusCode::BAD_REQUEST,
                "Bad Request",
                Some("missing pomerium_redirect_uri"),
            );
        };
        let target = match url::Url::parse(&redirect) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => u,
            _ => {
                return error_response(
                    &info.headers,
                    StatusCode::BAD_REQUEST,
                    "Bad Request",
                    Some("invalid pomerium_redirect_uri"),
                )
            }
        };
        // Programmatic login: the session goes to the route host's callback, which hands the
        // JWT to `pomerium_redirect_uri` (a local CLI listener) instead of setting a cookie.
        let programmatic = info.query_param("pomerium_is_programmatic").as_deref() == Some("true");
        let (target, target_key) = match info
            .query_param("pomerium_callback_uri")
            .filter(|_| programmatic)
        {
            None => (target, "pomerium_redirect_uri"),
            Some(cb) => match url::Url::parse(&cb) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
                    (u, "pomerium_callback_uri")
                }
                _ => {
                    return error_response(
                        &info.headers,
                        StatusCode::BAD_REQUEST,
                        "Bad Request",
                        Some("invalid pomerium_callback_uri"),
                    )
                }
            },
        };
        // Sessions go only to hosts that routes serve (else one click on a sign-in URL for
        // `Host: evil.example` would hand the victim's session to that host).
        let target_host = target.host_str().unwrap_or_default().to_ascii_lowercase();
        if !self.route_hosts.contains(&target_host) {
            tracing::warn!(host = %target_host, "sign-in refused: the redirect host matches no route");
            return error_response(
                &info.headers,
                StatusCode::BAD_REQUEST,
                "Bad Request",
                Some(&format!(
                    "{target_key}: host {target_host} matches no route; sessions are only handed to route hosts"
                )),
            );
        }
        // The IdP client the route signs in with (Pomerium's `GetIdentityProviderForID`: an
        // unknown id means the global client).
        let idp = self
            .idps
            .for_id_or_default(info.query_param("pomerium_idp_id").as_deref())
            .cloned();
        let idp_id = idp
            .as_ref()
            .map(|i| i.settings.id.clone())
            .unwrap_or_default();
        let authn_cookie = self.settings.cookie.authenticate_name();
        let existing = match self
            .session_lookup_for(&info.host, &info.headers, "", &authn_cookie, Some(&idp_id))
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "session lookup failed");
                None
            }
        };
        if let Some(session) = existing {
            // Step 4: hand the session to the route host.
            let authn_host = self.settings.authenticate_host().unwrap_or_default();
            let handle = SessionHandle {
                iss: authn_host.clone(),
                aud: vec![authn_host, target_host],
                iat: unix_now(),
                jti: session.id.clone(),
                sub: session.user_id.clone(),
                idp_id: session.idp_id.clone(),
                databroker_server_version: 1,
                databroker_record_version: session.version,
            };
            let encrypted = handle.encrypt(&self.settings.shared_secret);
            let mut params = vec![
                ("pomerium_redirect_uri", redirect.as_str()),
                ("pomerium_session_encrypted", encrypted.as_str()),
            ];
            if programmatic {
                params.push(("pomerium_is_programmatic", "true"));
            }
            let callback = build_url(
                &format!(
                    "{}/.pomerium/callback/",
                    target.origin().ascii_serialization()
                ),
                &params,
            );
            let signed = sign_url(&self.settings.shared_secret.0, &callback, unix_now());
            return HttpResponse::Found()
                .insert_header((header::LOCATION, signed))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .finish();
        }
        if info
            .headers
            .get("x-requested-with")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("xmlhttprequest"))
        {
            return error_response(
                &info.headers,
                StatusCode::UNAUTHORIZED,
                "Unauthenticated",
                None,
            );
        }
        let Some(idp) = &idp else {
            return error_response(&info.headers, StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error", Some("no identity provider is configured (idp_provider_url, idp_client_id, idp_client_secret)"));
        };
        // Step 2: start the OIDC flow; come back to this very (signed) URL.
        let now = unix_now();
        let csrf = new_csrf_token();
        let trace_id = uuid::Uuid::new_v4().simple().to_string();
        let return_url = format!("{authn}{}?{}", info.path, info.query);
        let state = encode_state(
            &self.settings.cookie_secret,
            &csrf,
            now,
            &trace_id,
            &return_url,
        );
        let nonce = nonce_for(&self.settings.cookie_secret, &csrf, now);
        let request = match idp.authorize(state, nonce).await {
            Ok(r) => r,
            Err(e) => return idp_error_page(&info, &e),
        };
        // With `response_mode=form_post` (Apple) the IdP's page POSTs the callback from its
        // own site: only `SameSite=None` cookies come along, so the CSRF and PKCE cookies
        // (short-lived, `Secure`, checked against the signed state) get that attribute.
        let form_post = idp
            .settings
            .request_params
            .iter()
            .any(|(k, v)| k == "response_mode" && v == "form_post");
        let flow_opts = super::settings::CookieOptions {
            same_site: if form_post {
                Some(super::settings::SameSite::None)
            } else {
                self.settings.cookie.same_site
            },
            ..self.settings.cookie.clone()
        };
        let opts = &flow_opts;
        let csrf_name = opts.csrf_name();
        let mut resp = HttpResponse::Found();
        resp.insert_header((header::LOCATION, request.url))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .append_header((
                header::SET_COOKIE,
                set_cookie(
                    &csrf_name,
                    &csrf_cookie_value(&self.settings.cookie_secret, &csrf_name, &csrf, now),
                    opts,
                    CookieLife::MaxAge(CSRF_MAX_AGE_SECS),
                    false,
                ),
            ));
        if let Some(v) = request.pkce_verifier {
            let name = pkce_cookie_name(&opts.pkce_prefix(), &csrf);
            resp.append_header((
                header::SET_COOKIE,
                set_cookie(
                    &name,
                    &pkce_cookie_value(&self.settings.cookie_secret, &name, &v),
                    opts,
                    CookieLife::MaxAge(PKCE_MAX_AGE_SECS),
                    false,
                ),
            ));
        }
        resp.finish()
    }

    /// `/oauth2/callback` (spec 2.3 step 3, checks of 2.4 in order).
    async fn oauth_callback(
        self: Arc<Self>,
        info: RequestInfo,
        form: Option<String>,
    ) -> HttpResponse {
        // `response_mode=form_post` (Apple) sends the parameters as a form body, else they
        // come in the query.
        let params = form.unwrap_or_else(|| info.query.clone());
        let param = |name: &str| {
            url::form_urlencoded::parse(params.as_bytes())
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        let bad = |msg: &str| {
            error_response(
                &info.headers,
                StatusCode::BAD_REQUEST,
                "Bad Request",
                Some(msg),
            )
        };
        if let Some(err) = param("error") {
            let status = if err == "access_denied" || err == "unauthorized_client" {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::BAD_REQUEST
            };
            let desc = info
                .query_param("error_description")
                .map(|d| format!(": {d}"))
                .unwrap_or_default();
            return error_response(
                &info.headers,
                status,
                status.canonical_reason().unwrap_or("Error"),
                Some(&format!("identity provider: {err}{desc}")),
            );
        }
        let Some(code) = param("code").filter(|c| !c.is_empty()) else {
            return bad("identity provider returned empty code");
        };
        let now = unix_now();
        let key = &self.settings.cookie_secret;
        let state = match decode_state(key, &param("state").unwrap_or_default(), now) {
            Ok(s) => s,
            Err(e @ StateError::Expired) => {
                return bad(&format!(
                    "{e} Please go back to the application and sign in again."
                ))
            }
            Err(e) => return bad(&e.to_string()),
        };
        let opts = &self.settings.cookie;
        let csrf_name = opts.csrf_name();
        let csrf_cookie = super::headers::cookie_values(&info.headers, &csrf_name)
            .next()
            .map(str::to_string);
        if let Err(e) = check_csrf(key, &csrf_name, csrf_cookie.as_deref(), &state.csrf, now) {
            return bad(&e.to_string());
        }
        // The client the sign-in started with: the `pomerium_idp_id` of the sign-in URL the
        // (authenticated) state returns to.
        let idp_id = url::Url::parse(&state.return_url).ok().and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == "pomerium_idp_id")
                .map(|(_, v)| v.into_owned())
        });
        let Some(idp) = self.idps.for_id_or_default(idp_id.as_deref()).cloned() else {
            return error_response(
                &info.headers,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal Server Error",
                Some("no identity provider is configured"),
            );
        };
        let pkce_name = pkce_cookie_name(&opts.pkce_prefix(), &state.csrf);
        let verifier = super::headers::cookie_values(&info.headers, &pkce_name)
            .next()
            .and_then(|v| pkce_verifier(key, &pkce_name, v));
        let nonce = nonce_for(key, &state.csrf, state.issued);
        let tokens = match idp.exchange_code(&code, verifier, &nonce).await {
            Ok(t) => t,
            Err(e) => return idp_error_page(&info, &e),
        };
        let user_id = idp.user_id(&tokens.claims);
        if user_id.is_empty() {
            return bad("identity provider: ID token has no subject");
        }
        let mut claims = tokens.claims.clone();
        match idp
            .userinfo(
                &tokens.access_token,
                tokens
                    .claims
                    .get("sub")
                    .and_then(Value::as_str)
                    .unwrap_or(""),
            )
            .await
        {
            Ok(Some(more)) => merge_claims(&mut claims, more),
            Ok(None) => {}
            Err(e) => return idp_error_page(&info, &e),
        }
        let session = Session {
            id: uuid::Uuid::new_v4().to_string(),
            email: claims
                .get("email")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            user_id,
            idp_id: idp.settings.id.clone(),
            issued_at: now,
            expires_at: now + opts.expire.as_secs(),
            id_token: tokens.id_token,
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token,
            access_token_expires_at: tokens.access_token_expires_at,
            claims,
            version: 1,
            refreshed_at: None,
        };
        if let Err(e) = self.sessions.put(session.clone()).await {
            tracing::error!(error = %e, "storing session failed");
            return error_response(
                &info.headers,
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable",
                Some("the session store is unavailable"),
            );
        }
        tracing::info!(session = %session.id, user = %session.user_id, email = %session.email, "signed in");
        let authn_host = self.settings.authenticate_host().unwrap_or_default();
        let handle = SessionHandle {
            iss: authn_host.clone(),
            aud: vec![authn_host],
            iat: now,
            jti: session.id.clone(),
            sub: session.user_id.clone(),
            idp_id: idp.settings.id.clone(),
            databroker_server_version: 1,
            databroker_record_version: session.version,
        };
        HttpResponse::Found()
            .insert_header((header::LOCATION, state.return_url))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .append_header((
                header::SET_COOKIE,
                set_cookie(
                    &opts.authenticate_name(),
                    &handle.sign(&self.settings.shared_secret),
                    opts,
                    CookieLife::Expires(opts.expire),
                    false,
                ),
            ))
            .append_header((
                header::SET_COOKIE,
                set_cookie(&csrf_name, "", opts, CookieLife::Clear, false),
            ))
            .append_header((
                header::SET_COOKIE,
                set_cookie(&pkce_name, "", opts, CookieLife::Clear, false),
            ))
            .finish()
    }

    /// Route host `/.pomerium/callback/` (spec 2.3 step 5).
    fn route_callback(&self, info: &RequestInfo) -> HttpResponse {
        let bad = |msg: String| {
            error_response(
                &info.headers,
                StatusCode::BAD_REQUEST,
                "Bad Request",
                Some(&msg),
            )
        };
        if let Err(e) = self.check_signed(info, None) {
            return bad(format!("invalid callback URL: {e}"));
        }
        let handle = match info
            .query_param("pomerium_session_encrypted")
            .ok_or_else(|| "missing pomerium_session_encrypted".to_string())
            .and_then(|v| {
                SessionHandle::decrypt(&v, &self.settings.shared_secret).map_err(|e| e.to_string())
            }) {
            Ok(h) => h,
            Err(e) => return bad(e),
        };
        if !handle.valid_for_host(&info.host, None) {
            return bad(format!(
                "pomerium_session_encrypted: the session was issued for {}, not {}",
                handle.aud.last().map(String::as_str).unwrap_or(""),
                info.host
            ));
        }
        let redirect = info
            .query_param("pomerium_redirect_uri")
            .unwrap_or_else(|| "/".into());
        if info.query_param("pomerium_is_programmatic").as_deref() == Some("true") {
            let mut url = match url::Url::parse(&redirect) {
                Ok(u) => u,
                Err(_) => return bad("invalid pomerium_redirect_uri".into()),
            };
            url.query_pairs_mut()
                .append_pair("pomerium_jwt", &handle.sign(&self.settings.shared_secret));
            return HttpResponse::Found()
                .insert_header((header::LOCATION, url.to_string()))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .finish();
        }
        let opts = &self.settings.cookie;
        HttpResponse::Found()
            .insert_header((header::LOCATION, redirect))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .append_header((
                header::SET_COOKIE,
                set_cookie(
                    &opts.name,
                    &handle.sign(&self.settings.shared_secret),
                    opts,
                    CookieLife::Expires(opts.expire),
                    true,
                ),
            ))
            .finish()
    }

    /// Route host `/.pomerium/api/v1/login?pomerium_redirect_uri=<uri>` (spec 2.3, programmatic
    /// login for CLIs): 200 text/plain with the sign-in URL to open; after sign-in the browser
    /// lands on `<uri>?pomerium_jwt=<session JWT>`, usable as `Authorization: Pomerium <jwt>`.
    fn programmatic_login(&self, info: &RequestInfo) -> HttpResponse {
        if info.method != "GET" {
            return HttpResponse::MethodNotAllowed()
                .insert_header((header::ALLOW, "GET"))
                .finish();
        }
        let Some(redirect) = info.query_param("pomerium_redirect_uri") else {
            return error_response(&info.headers, StatusCode::NOT_FOUND, "Not Found", None);
        };
        let allowed = url::Url::parse(&redirect)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .and_then(|u| u.host_str().map(|h| h.to_ascii_lowercase()))
            .is_some_and(|h| {
                PROGRAMMATIC_REDIRECT_DOMAINS
                    .iter()
                    .any(|d| h == *d || h.ends_with(&format!(".{d}")))
            });
        if !allowed {
            return error_response(
                &info.headers,
                StatusCode::BAD_REQUEST,
                "Bad Request",
                Some("pomerium_redirect_uri must point at localhost"),
            );
        }
        let Some(authn) = self.authenticate_origin() else {
            return error_response(
                &info.headers,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal Server Error",
                Some("sign-in is not configured"),
            );
        };
        let callback = format!("{}/.pomerium/callback/", info.origin());
        let url = build_url(
            &format!("{authn}/.pomerium/sign_in"),
            &[
                ("pomerium_redirect_uri", redirect.as_str()),
                ("pomerium_callback_uri", callback.as_str()),
                ("pomerium_is_programmatic", "true"),
                ("pomerium_idp_id", self.host_idp_id(&info.host)),
            ],
        );
        HttpResponse::Ok()
            .content_type("text/plain")
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(sign_url(&self.settings.shared_secret.0, &url, unix_now()))
    }

    /// Route host `/.pomerium/sign_out` (spec 2.7).
    fn route_sign_out(&self) -> HttpResponse {
        let opts = &self.settings.cookie;
        let clear = set_cookie(&opts.name, "", opts, CookieLife::Clear, true);
        let Some(authn) = self.authenticate_origin() else {
            return HttpResponse::Found()
                .insert_header((header::LOCATION, "/"))
                .append_header((header::SET_COOKIE, clear))
                .finish();
        };
        let params: Vec<(&str, &str)> = match &self.settings.signout_redirect_url {
            Some(u) => vec![("pomerium_redirect_uri", u.as_str())],
            None => vec![],
        };
        let url = sign_url(
            &self.settings.shared_secret.0,
            &build_url(&format!("{authn}/.pomerium/sign_out"), &params),
            unix_now(),
        );
        HttpResponse::Found()
            .insert_header((header::LOCATION, url))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .append_header((header::SET_COOKIE, clear))
            .finish()
    }

    /// Authenticate host `/.pomerium/sign_out`: unsigned → confirmation page; signed → delete the
    /// session, clear the cookie, go to the IdP's end-session endpoint (or the redirect).
    async fn authenticate_sign_out(self: Arc<Self>, info: RequestInfo) -> HttpResponse {
        let authn = self.authenticate_origin().unwrap_or_default();
        if self.check_signed(&info, Some(&authn)).is_err() {
            let signed = sign_url(
                &self.settings.shared_secret.0,
                &format!("{authn}/.pomerium/sign_out"),
                unix_now(),
            );
            return html(
                StatusCode::OK,
                "Sign out",
                &format!(
                    "<p>Are you sure you want to sign out?</p><p><a href=\"{}\">Sign out</a></p>",
                    html_escape(&signed)
                ),
            );
        }
        let opts = &self.settings.cookie;
        let cookie = opts.authenticate_name();
        let session = self
            .session_for(&info.host, &info.headers, "", &cookie)
            .await;
        if let Some(s) = &session {
            if let Err(e) = self.sessions.delete(&s.id).await {
                tracing::warn!(error = %e, "deleting session failed");
            }
            tracing::info!(session = %s.id, user = %s.user_id, "signed out");
        }
        let after = info
            .query_param("pomerium_redirect_uri")
            .or_else(|| {
                self.settings
                    .signout_redirect_url
                    .as_ref()
                    .map(|u| u.to_string())
            })
            .unwrap_or_else(|| format!("{authn}/.pomerium/signed_out"));
        let mut location = after.clone();
        let idp = session
            .as_ref()
            .and_then(|s| self.idps.by_id(&s.idp_id))
            .or(self.idp.as_ref());
        if let Some(idp) = idp {
            if let Some(u) = idp
                .end_session_url(session.as_ref().map(|s| s.id_token.as_str()), &after)
                .await
            {
                location = u;
            }
        }
        HttpResponse::Found()
            .insert_header((header::LOCATION, location))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .append_header((
                header::SET_COOKIE,
                set_cookie(&cookie, "", opts, CookieLife::Clear, false),
            ))
            .finish()
    }

    /// `/.pomerium/`: who am I.
    fn user_page(&self, info: &RequestInfo, session: Option<&Session>) -> HttpResponse {
        let Some(s) = session else {
            return html(
                StatusCode::OK,
                "User details",
                "<p>You are not signed in.</p>",
            );
        };
        let mut rows = String::new();
        let fmt_time = |t: u64| {
            let ts = time::OffsetDateTime::from_unix_timestamp(t as i64).ok();
            ts.map(|t| t.to_string()).unwrap_or_else(|| t.to_string())
        };
        let mut add = |k: &str, v: String| {
            rows.push_str(&format!(
                "<tr><th>{}</th><td>{}</td></tr>",
                html_escape(k),
                html_escape(&v)
            ))
        };
        add("User ID", s.user_id.clone());
        add("Email", s.email.clone());
        add("Session ID", s.id.clone());
        add("Signed in", fmt_time(s.issued_at));
        add("Session expires", fmt_time(s.expires_at));
        if let Some(t) = s.access_token_expires_at {
            add("Access token expires", fmt_time(t));
        }
        add("Session version", s.version.to_string());
        if let Some(t) = s.refreshed_at {
            add("Refreshed", fmt_time(t));
        }
        let mut claims = String::new();
        for (k, v) in &s.claims {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            claims.push_str(&format!(
                "<tr><th>{}</th><td>{}</td></tr>",
                html_escape(k),
                html_escape(&v)
            ));
        }
        let sign_out = format!("{}/.pomerium/sign_out", info.origin());
        let body = format!(
            "<table id=\"session\">{rows}</table><h2>Claims</h2><table id=\"claims\">{claims}</table>\
<form method=\"post\" action=\"{}\"><p><button type=\"submit\">Sign out</button></p></form>",
            html_escape(&sign_out)
        );
        html(StatusCode::OK, "User details", &body)
    }
}

fn html(status: StatusCode, title: &str, body: &str) -> HttpResponse {
    let mut b = HttpResponse::build(status);
    html_headers(&mut b);
    b.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
    b.body(page(title, body))
}

/// IdP failures: unreachable → 503, otherwise 400 with the reason.
fn idp_error_page(info: &RequestInfo, e: &IdpError) -> HttpResponse {
    tracing::warn!(error = %error_chain(e), "identity provider error");
    match e {
        IdpError::Unavailable { issuer, .. } => error_response(
            &info.headers,
            StatusCode::SERVICE_UNAVAILABLE,
            "Identity provider unavailable",
            Some(&format!("The identity provider ({issuer}) could not be reached, so sign-in is not possible right now. Please try again later. Details: {e}")),
        ),
        _ => error_response(&info.headers, StatusCode::BAD_REQUEST, "Bad Request", Some(&e.to_string())),
    }
}
