//! The authorization seam between the data plane and sign-in/policy. The proxy asks the current
//! `Authorizer` twice per request: `intercept` first (its own endpoints such as `/.pomerium/*`),
//! then `authorize` once a route matched. `PublicOnlyAuthorizer` is the default until sign-in
//! lands: public routes pass, everything else gets 401.

use std::net::IpAddr;
use std::sync::Arc;

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use futures::future::{ready, LocalBoxFuture};
use futures::FutureExt;

use super::auth::service::RequestInfo;
use super::routes::RouteEntry;

/// What the upstream request should carry for the signed-in user (or nothing for anonymous).
#[derive(Debug, Clone, Default)]
pub struct UpstreamIdentity {
    /// Headers set on the upstream request (overwriting client copies), e.g. the JWT assertion.
    pub set_headers: Vec<(HeaderName, HeaderValue)>,
    /// Headers removed from the upstream request (client copies of identity headers); shared,
    /// as the list depends only on the configuration.
    pub remove_headers: Arc<[HeaderName]>,
    /// A cookie to strip from the upstream `Cookie` header (the session cookie).
    pub strip_cookie: Option<Arc<str>>,
}

/// Result of authorizing one request.
pub enum AuthOutcome {
    /// Proxy the request with this identity.
    Allow(UpstreamIdentity),
    /// Answer with this response instead (redirect to sign-in, 401, 403...). The proxy adds
    /// `x-request-id` and the configured response headers.
    Respond(HttpResponse),
}

/// Largest form body `intercept_form` receives.
pub const FORM_BODY_LIMIT: usize = 64 * 1024;

/// How a forward-auth answer asks the user to sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginStyle {
    /// Always 401 (nginx `auth_request` accepts only 2xx, 401 and 403); the sign-in URL is
    /// in the `X-Sign-In-Url` header.
    Unauthorized,
    /// As the proxy itself answers: 302 to sign-in for browsers, 401 for other clients
    /// (Traefik, Caddy, Envoy return the answer to the client as is).
    Redirect,
}

/// Response header carrying the sign-in URL on forward-auth login answers.
pub const SIGN_IN_URL_HEADER: &str = "x-sign-in-url";

/// Decides who may reach which route. Held as `Arc<dyn Authorizer>` in the proxy snapshot and
/// replaced with each configuration.
pub trait Authorizer: Send + Sync + 'static {
    /// First look at every request (after request-id, header and path checks, before routing).
    /// `Some` answers the request directly. `request_id` is the proxy's id for the request
    /// (also in `x-request-id`).
    fn intercept(
        &self,
        req: &HttpRequest,
        request_id: &str,
    ) -> Option<LocalBoxFuture<'static, HttpResponse>>;

    /// Whether this request is a form POST the auth layer answers itself with its body (the
    /// OAuth callback with `response_mode=form_post`); the proxy then reads the body (up to
    /// [`FORM_BODY_LIMIT`]) and calls `intercept_form`.
    fn wants_form(&self, _req: &HttpRequest) -> bool {
        false
    }

    /// Answers a request `wants_form` claimed, given its body.
    fn intercept_form(
        &self,
        _req: &HttpRequest,
        _request_id: &str,
        _body: String,
    ) -> Option<LocalBoxFuture<'static, HttpResponse>> {
        None
    }

    /// Decides for a request that matched `route`. `path` is the normalised request path the
    /// route was matched with and the upstream receives (policies must see the same one).
    fn authorize<'a>(
        &'a self,
        req: &'a HttpRequest,
        path: &'a str,
        route: &'a RouteEntry,
        request_id: &'a str,
    ) -> LocalBoxFuture<'a, AuthOutcome>;

    /// `intercept` for a request described by a trusted proxy (forward auth): the sign-in
    /// endpoints (`/.pomerium/*`, the authenticate host) of the original request.
    fn intercept_forwarded(
        &self,
        _info: RequestInfo,
    ) -> Option<LocalBoxFuture<'static, HttpResponse>> {
        None
    }

    /// `authorize` for a request described by a trusted proxy (forward auth). `info` is the
    /// original request (its headers are the ones the proxy passed on), `path` its normalised
    /// path, `source_ip` the client's address.
    fn authorize_forwarded<'a>(
        &'a self,
        info: &'a RequestInfo,
        _source_ip: Option<IpAddr>,
        _path: &'a str,
        route: &'a RouteEntry,
        request_id: &'a str,
        _login: LoginStyle,
    ) -> LocalBoxFuture<'a, AuthOutcome> {
        let outcome = if route.route.public {
            AuthOutcome::Allow(UpstreamIdentity::default())
        } else {
            AuthOutcome::Respond(
                super::errors::ErrorPage {
                    status: StatusCode::UNAUTHORIZED,
                    request_id,
                    detail: None,
                }
                .render(super::errors::ClientKind::detect(&info.headers)),
            )
        };
        ready(outcome).boxed_local()
    }
}

/// Allows routes with `allow_public_unauthenticated_access`; everything else is 401 (there is
/// no sign-in yet).
#[derive(Debug, Default, Clone, Copy)]
pub struct PublicOnlyAuthorizer;

impl Authorizer for PublicOnlyAuthorizer {
    fn intercept(
        &self,
        _req: &HttpRequest,
        _request_id: &str,
    ) -> Option<LocalBoxFuture<'static, HttpResponse>> {
        None
    }

    fn authorize<'a>(
        &'a self,
        req: &'a HttpRequest,
        _path: &'a str,
        route: &'a RouteEntry,
        request_id: &'a str,
    ) -> LocalBoxFuture<'a, AuthOutcome> {
        let outcome = if route.route.public {
            // No identity to pass: client-supplied assertions must not reach the upstream.
            AuthOutcome::Allow(UpstreamIdentity {
                remove_headers: Arc::from([
                    HeaderName::from_static("x-pomerium-jwt-assertion"),
                    HeaderName::from_static("x-pomerium-jwt-assertion-for"),
                ]),
                ..UpstreamIdentity::default()
            })
        } else {
            let kind = super::errors::ClientKind::detect(req.headers());
            AuthOutcome::Respond(
                super::errors::ErrorPage {
                    status: StatusCode::UNAUTHORIZED,
                    request_id,
                    detail: None,
                }
                .render(kind),
            )
        };
        ready(outcome).boxed_local()
    }
}
