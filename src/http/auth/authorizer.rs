//! The data plane's `Authorizer` backed by sign-in and the policy engine, and the runtime that
//! builds one per configuration while keeping the session store and policy history alive.

use std::path::Path;
use std::sync::{Arc, Mutex};

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use futures::future::LocalBoxFuture;
use thiserror::Error;

use super::idps::{AuthStartIdpError, IdpCache, RouteClient};
use super::oidc::IdpError;
use super::route_hosts::RouteHosts;
use super::service::{AuthService, RequestInfo};
use super::settings::{AuthConfigError, AuthSettings, StorageSettings};
use crate::actors::policy::{PolicyCompiler, PolicySnapshot, RoutePolicyInput};
use crate::actors::session::Sessions;
use crate::config::{Config, Route};
use crate::http::authorize::{
    AuthOutcome, Authorizer, LoginStyle, UpstreamIdentity, SIGN_IN_URL_HEADER,
};
use crate::http::errors::{ClientKind, ErrorPage};
use crate::http::routes::RouteEntry;
use crate::policy::{ActixRequestView, Decision};
use crate::store::{open_store, StoreError};
use actix_web::http::header::HeaderMap;

#[derive(Debug, Error)]
pub enum AuthStartError {
    #[error(transparent)]
    Config(#[from] AuthConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("identity provider: {0}")]
    Idp(#[from] IdpError),
}

impl From<AuthStartIdpError> for AuthStartError {
    fn from(e: AuthStartIdpError) -> Self {
        match e {
            AuthStartIdpError::Config(e) => AuthStartError::Config(e),
            AuthStartIdpError::Idp(e) => AuthStartError::Idp(e),
        }
    }
}

/// Policy inputs of a route (legacy allow-list fields + `policy`).
pub fn route_policy_input(route: &Route) -> RoutePolicyInput {
    let (legacy, policies) = crate::policy::route_documents(&route.config);
    RoutePolicyInput {
        route_id: route.id.clone(),
        legacy,
        policies,
        // Pomerium's default `policy_with_default_deny`: a route with a client CA denies a
        // missing or invalid client certificate.
        enforce_client_certificate: route.downstream_client_ca.is_some(),
    }
}

/// Sign-in + policy authorizer for one configuration.
pub struct SignInAuthorizer {
    pub service: Arc<AuthService>,
    pub policies: Arc<PolicySnapshot>,
}

fn with_request_id(req: &HttpRequest, request_id: &str) -> RequestInfo {
    let mut info = RequestInfo::from_request(req);
    if let Ok(v) = request_id.parse() {
        info.headers.insert(
            actix_web::http::header::HeaderName::from_static("x-request-id"),
            v,
        );
    }
    info
}

impl Authorizer for SignInAuthorizer {
    fn intercept(
        &self,
        req: &HttpRequest,
        request_id: &str,
    ) -> Option<LocalBoxFuture<'static, HttpResponse>> {
        if !self.service.wants(req) {
            return None;
        }
        self.service
            .intercept_info(with_request_id(req, request_id))
    }

    fn wants_form(&self, req: &HttpRequest) -> bool {
        self.service.wants_form(req)
    }

    fn intercept_form(
        &self,
        req: &HttpRequest,
        request_id: &str,
        body: String,
    ) -> Option<LocalBoxFuture<'static, HttpResponse>> {
        self.service
            .intercept_form(with_request_id(req, request_id), body)
    }

    fn authorize<'a>(
        &'a self,
        req: &'a HttpRequest,
        path: &'a str,
        entry: &'a RouteEntry,
        request_id: &'a str,
    ) -> LocalBoxFuture<'a, AuthOutcome> {
        Box::pin(async move {
            let peer = crate::http::tls::PeerCertificates::of_request(req);
            let subject = Subject {
                method: req.method().as_str(),
                authority: crate::http::proxy::request_host_str(req),
                headers: req.headers(),
                query: req.query_string(),
                source_ip: req.peer_addr().map(|a| a.ip()),
                client_certificate: entry.client_certificate(peer.as_ref()),
            };
            match self.decide(&subject, path, entry, request_id).await {
                Verdict::Allow(identity) => AuthOutcome::Allow(identity),
                Verdict::Respond(r) => AuthOutcome::Respond(r),
                Verdict::Login => AuthOutcome::Respond(self.service.login_for(
                    &with_request_id(req, request_id),
                    self.service.idps.route_id(&entry.route.id),
                )),
            }
        })
    }

    fn intercept_forwarded(
        &self,
        info: RequestInfo,
    ) -> Option<LocalBoxFuture<'static, HttpResponse>> {
        let wants = info.path.starts_with("/.pomerium")
            || info.path.starts_with("/.well-known/pomerium")
            || self.service.is_authenticate_host(&info.host);
        if !wants {
            return None;
        }
        self.service.intercept_info(info)
    }

    fn authorize_forwarded<'a>(
        &'a self,
        info: &'a RequestInfo,
        source_ip: Option<std::net::IpAddr>,
        path: &'a str,
        entry: &'a RouteEntry,
        request_id: &'a str,
        login: LoginStyle,
    ) -> LocalBoxFuture<'a, AuthOutcome> {
        Box::pin(async move {
            let subject = Subject {
                method: &info.method,
                authority: &info.authority,
                headers: &info.headers,
                query: &info.query,
                source_ip,
                // A proxy in front does not pass the client's certificate on.
                client_certificate: None,
            };
            match self.decide(&subject, path, entry, request_id).await {
                Verdict::Allow(identity) => AuthOutcome::Allow(identity),
                Verdict::Respond(r) => AuthOutcome::Respond(r),
                Verdict::Login => {
                    let idp_id = self.service.idps.route_id(&entry.route.id);
                    AuthOutcome::Respond(self.forwarded_login(info, idp_id, login))
                }
            }
        })
    }
}

/// The request being authorized: the proxied request itself, or the original request a
/// forward-auth caller describes.
struct Subject<'a> {
    method: &'a str,
    /// `host[:port]` the client asked for.
    authority: &'a str,
    headers: &'a HeaderMap,
    query: &'a str,
    source_ip: Option<std::net::IpAddr>,
    client_certificate: Option<crate::policy::ClientCertificate>,
}

/// What `decide` concluded.
enum Verdict {
    Allow(UpstreamIdentity),
    /// No (usable) session: the caller answers with its kind of sign-in response.
    Login,
    Respond(HttpResponse),
}

impl SignInAuthorizer {
    /// Session lookup, policy evaluation and the upstream identity for one request (the proxy
    /// and forward auth share it).
    async fn decide(
        &self,
        subject: &Subject<'_>,
        path: &str,
        entry: &RouteEntry,
        request_id: &str,
    ) -> Verdict {
        let deny = |status: u16, detail: String| {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
            Verdict::Respond(
                ErrorPage {
                    status,
                    request_id,
                    detail: Some(&detail),
                }
                .render(ClientKind::detect(subject.headers)),
            )
        };
        let Some(policy) = self.policies.get(&entry.route.id) else {
            return deny(404, "route-not-found".into());
        };
        let cookie = &self.service.settings.cookie.name;
        let host = crate::http::request::host_without_port(subject.authority);
        // The route's IdP client keys its sessions (a per-route `idp_client_id`).
        let idp_id = self.service.idps.route_id(&entry.route.id);
        let lookup = self
            .service
            .session_lookup_for(&host, subject.headers, subject.query, cookie, Some(idp_id))
            .await;
        let store_error = lookup.as_ref().err().map(|e| e.to_string());
        let mut session = lookup.unwrap_or(None);
        if session.is_none() {
            if let Some(token) = bearer_token(subject.headers) {
                session = match entry.route.bearer_token_format.as_deref() {
                    Some("idp_identity_token") => {
                        self.service.session_from_id_token(token, idp_id).await
                    }
                    Some("idp_access_token") => {
                        self.service.session_from_access_token(token, idp_id).await
                    }
                    _ => None,
                };
            }
        }
        let identity = session.as_deref().map(|s| self.service.policy_identity(s));
        let view = ActixRequestView {
            method: subject.method,
            host: crate::http::request::host_part(subject.authority),
            path,
            headers: subject.headers,
            source_ip: subject.source_ip,
            client_certificate: subject.client_certificate.as_ref(),
        };
        let eval = policy.evaluate(&view, identity.as_deref());
        // A store failure is not "signed out": unless the route lets the request in
        // without a session, answer 503 rather than send the user to sign in or deny
        // (the callback could not store a new session either).
        if let Some(e) = store_error {
            if eval.decision != Decision::Allow {
                tracing::error!(route = %entry.route.id, error = %e, "session store unavailable");
                return deny(
                    503,
                    "the session store is unavailable; please try again shortly".into(),
                );
            }
        }
        match eval.decision {
            Decision::Allow => {
                let pass = entry
                    .route
                    .pass_identity_headers
                    .unwrap_or(self.service.settings.pass_identity_headers);
                let jwt_host = if pass { &*host } else { "" };
                let plan = self.service.upstream_headers(
                    jwt_host,
                    subject.headers,
                    session.as_deref(),
                    pass,
                    false,
                );
                let mut set_headers = plan.set;
                if entry.route.service_account_token.is_some() {
                    if let Some(s) = session.as_deref() {
                        set_headers.extend(impersonation_headers(s));
                    }
                }
                Verdict::Allow(UpstreamIdentity {
                    set_headers,
                    remove_headers: plan.remove,
                    strip_cookie: plan.strip_cookie,
                })
            }
            Decision::Login => Verdict::Login,
            Decision::Deny | Decision::ClientCertificateRequired => {
                let reasons = eval.decisive_reasons().to_string();
                tracing::info!(route = %entry.route.id, user = session.as_deref().map(|s| s.user_id.as_str()).unwrap_or(""), reasons = %reasons, "access denied");
                deny(eval.deny_status().unwrap_or(403), reasons)
            }
        }
    }

    /// The sign-in answer of a forward-auth request: 401 (nginx) or 302/401 as the proxy
    /// answers, with the signed sign-in URL (returning to the original URL) in
    /// `X-Sign-In-Url`.
    fn forwarded_login(&self, info: &RequestInfo, idp_id: &str, style: LoginStyle) -> HttpResponse {
        let Some(url) = self.service.sign_in_url_for(&info.url(), idp_id) else {
            return self.service.login_for(info, idp_id);
        };
        let mut response = match style {
            LoginStyle::Redirect => self.service.login_for(info, idp_id),
            LoginStyle::Unauthorized => super::respond::error_response(
                &info.headers,
                StatusCode::UNAUTHORIZED,
                "Unauthenticated",
                None,
            ),
        };
        if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&url) {
            response.headers_mut().insert(
                actix_web::http::header::HeaderName::from_static(SIGN_IN_URL_HEADER),
                v,
            );
        }
        response
    }
}

/// The token of an `Authorization: Bearer …` header.
fn bearer_token(headers: &actix_web::http::header::HeaderMap) -> Option<&str> {
    let v = headers
        .get(actix_web::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let (scheme, token) = v.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

/// `kubernetes_service_account_token` routes: the Kubernetes API acts as the signed-in user
/// (`Impersonate-User`: the email, else the user id; one `Impersonate-Group` per group), as
/// Pomerium does.
pub fn impersonation_headers(
    session: &crate::store::Session,
) -> Vec<(
    actix_web::http::header::HeaderName,
    actix_web::http::header::HeaderValue,
)> {
    use actix_web::http::header::{HeaderName, HeaderValue};
    let mut out = Vec::new();
    let user = if session.email.is_empty() {
        &session.user_id
    } else {
        &session.email
    };
    if let Ok(v) = HeaderValue::from_str(user) {
        out.push((HeaderName::from_static("impersonate-user"), v));
    }
    let groups = session
        .claims
        .get("groups")
        .and_then(|g| g.as_array())
        .into_iter()
        .flatten()
        .filter_map(|g| g.as_str());
    for g in groups {
        if let Ok(v) = HeaderValue::from_str(g) {
            out.push((HeaderName::from_static("impersonate-group"), v));
        }
    }
    out
}

/// Without an identity provider nobody signs in: keep no session files (and take no lock on
/// the data directory).
fn effective_storage(settings: &AuthSettings) -> StorageSettings {
    if settings.idp.is_none() {
        StorageSettings::Memory
    } else {
        settings.storage.clone()
    }
}

/// Lives for the whole `serve`: the session store/actor and the policy compiler's history.
pub struct AuthRuntime {
    sessions: Sessions,
    storage: StorageSettings,
    compiler: Mutex<PolicyCompiler>,
    /// IdP clients (and their discovery caches) carried across configuration loads.
    idp_cache: IdpCache,
}

impl AuthRuntime {
    /// Opens the session store named by the first configuration and starts the session actor.
    /// Call inside the actix `System`.
    pub fn start(cfg: &Config, data_dir: &Path) -> Result<AuthRuntime, AuthStartError> {
        let settings = AuthSettings::from_settings(&cfg.settings)?;
        let storage = effective_storage(&settings);
        let store = open_store(&storage, data_dir, &settings.cookie_secret)?;
        tracing::info!(store = store.kind(), "session store opened");
        Ok(AuthRuntime {
            sessions: Sessions::start(store),
            storage,
            compiler: Mutex::new(PolicyCompiler::new()),
            idp_cache: IdpCache::default(),
        })
    }

    /// A new authorizer for `cfg` (sessions carry over; a bad auth setting rejects the config).
    pub fn authorizer_for(&self, cfg: &Config) -> Result<Arc<dyn Authorizer>, AuthStartError> {
        self.authorizer_for_routes(cfg, cfg.routes.iter())
    }

    /// Like `authorizer_for`, with the routes given separately (the Ingress controller keeps
    /// prepared routes outside `Config`). Unchanged route policies are reused.
    pub fn authorizer_for_routes<'r>(
        &self,
        cfg: &Config,
        routes: impl Iterator<Item = &'r Route>,
    ) -> Result<Arc<dyn Authorizer>, AuthStartError> {
        let settings = AuthSettings::from_settings(&cfg.settings)?;
        if effective_storage(&settings) != self.storage {
            tracing::warn!(
                "databroker_storage_* changed; the new session store takes effect after a restart"
            );
        }
        let routes: Vec<&Route> = routes.collect();
        let route_hosts = RouteHosts::new(routes.iter().map(|r| &r.host));
        let clients: Vec<RouteClient> = routes.iter().map(|r| RouteClient::of_route(r)).collect();
        let service = AuthService::with_routes(
            settings,
            self.sessions.clone(),
            route_hosts,
            &clients,
            &self.idp_cache,
        )?;
        let inputs: Vec<RoutePolicyInput> = routes.into_iter().map(route_policy_input).collect();
        let snapshot = self.compiler.lock().expect("poisoned").compile_all(&inputs);
        for (route, err) in &snapshot.errors {
            tracing::warn!(route = %route, error = %err, "route policy rejected; keeping the last good policy (or deny-all)");
        }
        Ok(Arc::new(SignInAuthorizer {
            service,
            policies: Arc::new(snapshot),
        }))
    }
}

#[cfg(test)]
mod impersonation_tests {
    use super::*;

    #[test]
    fn impersonation_names_the_user_and_each_group() {
        let mut s = crate::store::Session::new_for_test("s1", "sub-1");
        let names = |s: &crate::store::Session| {
            impersonation_headers(s)
                .into_iter()
                .map(|(k, v)| format!("{}={}", k, v.to_str().unwrap()))
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&s), vec!["impersonate-user=sub-1"]);
        s.email = "alice@example.com".into();
        s.claims
            .insert("groups".into(), serde_json::json!(["admins", "devs"]));
        assert_eq!(
            names(&s),
            vec![
                "impersonate-user=alice@example.com",
                "impersonate-group=admins",
                "impersonate-group=devs"
            ]
        );
    }
}
