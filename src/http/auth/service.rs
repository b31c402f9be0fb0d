//! The auth service: everything the data plane needs from sign-in at request time. Holds the
//! checked settings, the identity signer, the IdP client and the session handle; shared by all
//! workers behind an `Arc`.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use actix_web::http::header::HeaderMap;
use actix_web::HttpRequest;
use serde_json::{Map, Value};

use super::handle::SessionHandle;
use super::headers::{
    has_non_cookie_carrier, identity_headers, session_tokens, HeaderPlan, PlanTemplate,
};
use super::identity::{claim_header_value, identity_claims, IdentityCache, IdentitySigner};
use super::idps::{AuthStartIdpError, IdpCache, IdpSet, RouteClient};
use super::oidc::{Idp, IdpError, IdpTokens};
use super::respond::login_response;
use super::route_hosts::RouteHosts;
use super::settings::AuthSettings;
use super::signed_url::{build_url, sign_url};
use crate::actors::session::Sessions;
use crate::http::request::host_without_port;
use crate::policy::Identity;
use crate::store::{unix_now, Session, StoreError};

/// How long an accepted (or rejected) bearer access token is remembered, in seconds.
pub const BEARER_CACHE_TTL: u64 = 60;

/// Hex of the first 16 bytes of the token's SHA-256 (cache key and session id).
fn token_digest(raw: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, raw.as_bytes());
    digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Refresh this long before the access token expires.
pub const REFRESH_MARGIN_SECS: u64 = 60;
const REFRESH_LOCKS: usize = 16;
/// Bound of the per-configuration caches of checked session handles and policy identities.
const SESSION_CACHE_MAX: usize = 50_000;

/// The policy engine's view of a session.
pub fn policy_identity(s: &Session) -> Identity {
    let mut id = Identity::from_claims(&Value::Object(s.claims.clone()));
    id.user_id = s.user_id.clone();
    id.email = s.email.clone();
    id
}

/// What the auth layer needs from a request; owned so futures can be `'static`.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// `http` or `https` as seen by the client.
    pub scheme: String,
    /// `host[:port]` from the Host header (or URI authority).
    pub authority: String,
    /// Lower-cased host without port.
    pub host: String,
    pub method: String,
    /// Raw path as received.
    pub path: String,
    /// Raw query (no `?`).
    pub query: String,
    pub headers: HeaderMap,
}

impl RequestInfo {
    pub fn from_request(req: &HttpRequest) -> RequestInfo {
        // The same authority the proxy routes by (the target's, else `Host`).
        let authority =
            crate::http::request::request_authority(req.uri(), req.headers()).to_string();
        let forwarded_https = req
            .headers()
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.eq_ignore_ascii_case("https"));
        let scheme = if req.app_config().secure() || forwarded_https {
            "https"
        } else {
            "http"
        };
        RequestInfo {
            scheme: scheme.into(),
            host: host_without_port(&authority).into_owned(),
            authority,
            method: req.method().as_str().to_string(),
            path: req.path().to_string(),
            query: req.query_string().to_string(),
            headers: req.headers().clone(),
        }
    }

    pub fn origin(&self) -> String {
        format!("{}://{}", self.scheme, self.authority)
    }

    /// The full URL as the client sent it.
    pub fn url(&self) -> String {
        if self.query.is_empty() {
            format!("{}{}", self.origin(), self.path)
        } else {
            format!("{}{}?{}", self.origin(), self.path, self.query)
        }
    }

    pub fn query_param(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

pub struct AuthService {
    pub settings: AuthSettings,
    pub signer: IdentitySigner,
    /// The global IdP client.
    pub idp: Option<Arc<Idp>>,
    /// Every IdP client of this configuration (global and per-route), by IdP id.
    pub idps: IdpSet,
    pub sessions: Sessions,
    /// The hosts routes serve: the only hosts that get route-host endpoints and sessions.
    pub route_hosts: RouteHosts,
    identity_cache: IdentityCache,
    plan_template: PlanTemplate,
    /// Session handles (cookie or header values) whose signature was checked, by raw value: a
    /// handle carries no expiry of its own, so its check depends only on `shared_secret`,
    /// which is fixed for this service's life.
    verified_handles: quick_cache::sync::Cache<String, Arc<SessionHandle>>,
    /// Policy identities by session id, with the session version they were built from.
    policy_identities: quick_cache::sync::Cache<String, (u64, Arc<Identity>)>,
    refresh_locks: Vec<futures::lock::Mutex<()>>,
    /// Bearer access tokens checked with the IdP: (session or rejection, valid until).
    bearer_cache: quick_cache::sync::Cache<String, (Option<Arc<Session>>, u64)>,
}

impl AuthService {
    pub fn new(
        settings: AuthSettings,
        sessions: Sessions,
        route_hosts: RouteHosts,
    ) -> Result<Arc<AuthService>, IdpError> {
        match AuthService::with_routes(settings, sessions, route_hosts, &[], &IdpCache::default()) {
            Ok(s) => Ok(s),
            Err(AuthStartIdpError::Idp(e)) => Err(e),
            Err(AuthStartIdpError::Config(e)) => Err(IdpError::Rejected(e.to_string())),
        }
    }

    /// The service for a configuration whose routes may have their own IdP clients.
    pub fn with_routes(
        settings: AuthSettings,
        sessions: Sessions,
        route_hosts: RouteHosts,
        routes: &[RouteClient],
        cache: &IdpCache,
    ) -> Result<Arc<AuthService>, AuthStartIdpError> {
        let redirect_uri = settings
            .authenticate_url
            .as_ref()
            .map(|authn| format!("{}/oauth2/callback", authn.origin().ascii_serialization()));
        let idps = IdpSet::build(
            settings.idp.as_ref(),
            redirect_uri.as_deref(),
            routes,
            cache,
        )?;
        let idp = idps.default.clone();
        let plan_template = PlanTemplate::new(&settings.cookie.name, &settings.jwt_claims_headers);
        Ok(Arc::new(AuthService {
            signer: IdentitySigner::new(&settings.signing_key),
            settings,
            idp,
            idps,
            sessions,
            route_hosts,
            identity_cache: IdentityCache::default(),
            plan_template,
            verified_handles: quick_cache::sync::Cache::new(SESSION_CACHE_MAX),
            policy_identities: quick_cache::sync::Cache::new(SESSION_CACHE_MAX),
            refresh_locks: (0..REFRESH_LOCKS)
                .map(|_| futures::lock::Mutex::new(()))
                .collect(),
            bearer_cache: quick_cache::sync::Cache::new(SESSION_CACHE_MAX),
        }))
    }

    /// A request-scoped session from an IdP access token sent as `Authorization: Bearer`
    /// (`bearer_token_format: idp_access_token`): the IdP's UserInfo endpoint must accept it.
    /// Results are cached for `BEARER_CACHE_TTL` so the IdP is not asked on every request.
    pub async fn session_from_access_token(&self, raw: &str, idp_id: &str) -> Option<Arc<Session>> {
        let idp = self.idps.by_id(idp_id)?;
        let key = format!("{idp_id}:{}", token_digest(raw));
        let now = crate::store::unix_now();
        if let Some((s, until)) = self.bearer_cache.get(&key) {
            if until > now {
                return s;
            }
        }
        let session = match idp.userinfo_claims(raw).await {
            Ok(Some(claims)) if claims.get("sub").and_then(Value::as_str).is_some() => {
                Some(Arc::new(Session {
                    id: format!("bearer-{}", token_digest(raw)),
                    user_id: idp.user_id(&claims),
                    email: claims
                        .get("email")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    idp_id: idp_id.to_string(),
                    issued_at: now,
                    expires_at: now + BEARER_CACHE_TTL,
                    id_token: String::new(),
                    access_token: raw.to_string(),
                    refresh_token: None,
                    access_token_expires_at: None,
                    claims,
                    version: 0,
                    refreshed_at: None,
                }))
            }
            Ok(_) => {
                tracing::info!(
                    "bearer access token rejected: the IdP has no usable UserInfo endpoint"
                );
                None
            }
            Err(e) => {
                tracing::info!(error = %e, "bearer access token rejected");
                None
            }
        };
        self.bearer_cache
            .insert(key, (session.clone(), now + BEARER_CACHE_TTL));
        session
    }

    /// A request-scoped session from an IdP ID token sent as `Authorization: Bearer`
    /// (`bearer_token_format: idp_identity_token`); `None` when it does not verify.
    pub async fn session_from_id_token(&self, raw: &str, idp_id: &str) -> Option<Arc<Session>> {
        let idp = self.idps.by_id(idp_id)?;
        let claims = match idp.verify_id_token(raw).await {
            Ok(c) => c,
            Err(e) => {
                tracing::info!(error = %e, "bearer ID token rejected");
                return None;
            }
        };
        let now = crate::store::unix_now();
        let expires_at = claims.get("exp").and_then(Value::as_u64).unwrap_or(now);
        let session = Session {
            id: format!("bearer-{}", token_digest(raw)),
            user_id: idp.user_id(&claims),
            email: claims
                .get("email")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            idp_id: idp_id.to_string(),
            issued_at: claims.get("iat").and_then(Value::as_u64).unwrap_or(now),
            expires_at,
            id_token: raw.to_string(),
            access_token: String::new(),
            refresh_token: None,
            access_token_expires_at: None,
            claims,
            version: 0,
            refreshed_at: None,
        };
        Some(Arc::new(session))
    }

    /// The id of the global IdP client.
    pub fn idp_id(&self) -> &str {
        self.idps.default_id()
    }

    /// The IdP id that keys sessions on a host's `/.pomerium/*` endpoints.
    pub fn host_idp_id(&self, host: &str) -> &str {
        self.idps.host_id(host)
    }

    /// `scheme://host[:port]` of the authenticate service.
    pub fn authenticate_origin(&self) -> Option<String> {
        self.settings
            .authenticate_url
            .as_ref()
            .map(|u| u.origin().ascii_serialization())
    }

    pub fn is_authenticate_host(&self, host: &str) -> bool {
        self.settings.is_authenticate_host(host)
    }

    /// Signed `<authn>/.pomerium/sign_in?pomerium_redirect_uri=<url>` for a request.
    pub fn sign_in_url(&self, redirect_to: &str) -> Option<String> {
        self.sign_in_url_for(redirect_to, self.idp_id())
    }

    /// Like `sign_in_url`, for the IdP client `idp_id` (a route's own client).
    pub fn sign_in_url_for(&self, redirect_to: &str, idp_id: &str) -> Option<String> {
        let authn = self.authenticate_origin()?;
        let url = build_url(
            &format!("{authn}/.pomerium/sign_in"),
            &[
                ("pomerium_redirect_uri", redirect_to),
                ("pomerium_idp_id", idp_id),
            ],
        );
        Some(sign_url(&self.settings.shared_secret.0, &url, unix_now()))
    }

    /// The Login outcome for a request: 302 to sign-in (browsers) or 401.
    pub fn login(&self, info: &RequestInfo) -> actix_web::HttpResponse {
        self.login_for(info, self.host_idp_id(&info.host))
    }

    /// The Login outcome for a request to a route signing in with the IdP client `idp_id`.
    pub fn login_for(&self, info: &RequestInfo, idp_id: &str) -> actix_web::HttpResponse {
        match self.sign_in_url_for(&info.url(), idp_id) {
            Some(url) => login_response(&info.headers, has_non_cookie_carrier(&info.headers, &info.query), &url),
            None => super::respond::error_response(
                &info.headers,
                actix_web::http::StatusCode::UNAUTHORIZED,
                "Unauthenticated",
                Some("sign-in is not configured (set authenticate_service_url and the idp_* settings)"),
            ),
        }
    }

    /// The valid session of a request to `host` (lower-case, no port), if any (refreshing its
    /// tokens when they expired). A handle issued for another host is ignored unless the
    /// cookie domain covers both hosts.
    pub async fn session_for(
        &self,
        host: &str,
        headers: &HeaderMap,
        query: &str,
        cookie_name: &str,
    ) -> Option<Arc<Session>> {
        let filter = self.idp_filter_for_host(host);
        match self
            .session_lookup_for(host, headers, query, cookie_name, filter)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "session lookup failed");
                None
            }
        }
    }

    /// Like `session_for`, but a session store failure is an error rather than "not signed
    /// in", so the caller can answer 503 instead of sending a signed-in user to sign in.
    pub async fn session_lookup(
        &self,
        host: &str,
        headers: &HeaderMap,
        query: &str,
        cookie_name: &str,
    ) -> Result<Option<Arc<Session>>, StoreError> {
        let filter = self.idp_filter_for_host(host);
        self.session_lookup_for(host, headers, query, cookie_name, filter)
            .await
    }

    /// Which sessions count on `host`: any known client's on the authenticate host, else
    /// the host's client's.
    fn idp_filter_for_host<'a>(&'a self, host: &str) -> Option<&'a str> {
        if self.is_authenticate_host(host) {
            None
        } else {
            Some(self.host_idp_id(host))
        }
    }

    /// `session_lookup` for sessions of the IdP client `idp_id` (`None`: any client of this
    /// configuration).
    pub async fn session_lookup_for(
        &self,
        host: &str,
        headers: &HeaderMap,
        query: &str,
        cookie_name: &str,
        idp_id: Option<&str>,
    ) -> Result<Option<Arc<Session>>, StoreError> {
        for (token, carrier) in session_tokens(headers, query, cookie_name) {
            let handle = match self.verified_handles.get(token.as_ref()) {
                Some(h) => h,
                None => match SessionHandle::verify(&token, &self.settings.shared_secret) {
                    Ok(h) => {
                        let h = Arc::new(h);
                        self.verified_handles.insert(token.into_owned(), h.clone());
                        h
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, ?carrier, "ignoring session handle");
                        continue;
                    }
                },
            };
            let idp_ok = match idp_id {
                Some(id) => handle.idp_id == id,
                None => self.idps.is_known(&handle.idp_id),
            };
            if !idp_ok {
                tracing::debug!(
                    ?carrier,
                    "ignoring session handle of another identity provider client"
                );
                continue;
            }
            if !handle.valid_for_host(host, self.settings.cookie.domain.as_deref()) {
                tracing::debug!(?carrier, host, aud = ?handle.aud, "ignoring session handle issued for another host");
                continue;
            }
            if let Some(s) = self.load_valid(&handle).await? {
                return Ok(Some(s));
            }
        }
        Ok(None)
    }

    async fn load_valid(&self, handle: &SessionHandle) -> Result<Option<Arc<Session>>, StoreError> {
        let Some(session) = self.sessions.get(&handle.jti).await? else {
            return Ok(None);
        };
        if session.user_id != handle.sub {
            return Ok(None);
        }
        let now = unix_now();
        if session.is_expired(now) {
            self.sessions.delete_nowait(&session.id);
            return Ok(None);
        }
        if !session.access_token_expired(now, REFRESH_MARGIN_SECS) {
            return Ok(Some(session));
        }
        Ok(match self.refresh(&session).await {
            Ok(s) => Some(s),
            Err(RefreshFailure::Temporary) if !session.access_token_expired(now, 0) => {
                Some(session)
            }
            Err(_) => None,
        })
    }

    fn refresh_lock(&self, id: &str) -> &futures::lock::Mutex<()> {
        let mut h = DefaultHasher::new();
        id.hash(&mut h);
        &self.refresh_locks[(h.finish() as usize) % REFRESH_LOCKS]
    }

    async fn refresh(&self, session: &Arc<Session>) -> Result<Arc<Session>, RefreshFailure> {
        let _guard = self.refresh_lock(&session.id).lock().await;
        let now = unix_now();
        // Another request may have refreshed it meanwhile.
        if let Ok(Some(current)) = self.sessions.get(&session.id).await {
            if current.version != session.version
                && !current.access_token_expired(now, REFRESH_MARGIN_SECS)
            {
                return Ok(current);
            }
        }
        let (Some(idp), Some(rt)) = (self.idps.by_id(&session.idp_id), &session.refresh_token)
        else {
            return Err(RefreshFailure::Permanent);
        };
        match idp.refresh(rt).await {
            Ok(tokens) => {
                let mut s = (**session).clone();
                apply_tokens(&mut s, tokens);
                if let Ok(Some(info)) = idp.userinfo(&s.access_token, &s.user_id).await {
                    merge_claims(&mut s.claims, info);
                }
                s.version += 1;
                s.refreshed_at = Some(now);
                tracing::info!(session = %s.id, user = %s.user_id, "session refreshed");
                self.sessions.put_nowait(s.clone());
                Ok(Arc::new(s))
            }
            Err(IdpError::Unavailable { message, .. }) => {
                tracing::warn!(session = %session.id, error = %message, "session refresh failed (temporary)");
                Err(RefreshFailure::Temporary)
            }
            Err(e) => {
                tracing::info!(session = %session.id, error = %e, "session refresh failed; session removed");
                self.sessions.delete_nowait(&session.id);
                Err(RefreshFailure::Permanent)
            }
        }
    }

    /// Header changes for the upstream of a request to `host` with `headers`. `pass_identity` =
    /// route value else global.
    pub fn upstream_headers(
        &self,
        host: &str,
        headers: &HeaderMap,
        session: Option<&Session>,
        pass_identity: bool,
        issuer_uri_format: bool,
    ) -> HeaderPlan {
        let claim_headers = &self.settings.jwt_claims_headers;
        let identity = pass_identity.then(|| {
            let now = unix_now();
            let key = IdentityCache::key(session, host, issuer_uri_format);
            if let Some(minted) = self.identity_cache.get(&key, now) {
                return minted;
            }
            let extra: Vec<String> = claim_headers.iter().map(|(_, c)| c.clone()).collect();
            let claims = identity_claims(
                host,
                issuer_uri_format,
                session,
                &extra,
                now,
                &uuid::Uuid::new_v4().to_string(),
            );
            let values = claim_headers
                .iter()
                .map(|(_, c)| claim_header_value(&claims, c))
                .collect::<Vec<_>>();
            let jwt = self.signer.sign(&claims);
            let headers = identity_headers(&jwt, claim_headers, &values);
            self.identity_cache.insert(&key, jwt, headers, now)
        });
        self.plan_template
            .plan(headers, identity.as_ref().map(|m| m.headers.as_slice()))
    }

    /// The policy engine's view of a session, built once per session version.
    pub fn policy_identity(&self, session: &Session) -> Arc<Identity> {
        if let Some((version, id)) = self.policy_identities.get(session.id.as_str()) {
            if version == session.version {
                return id;
            }
        }
        let id = Arc::new(policy_identity(session));
        self.policy_identities
            .insert(session.id.clone(), (session.version, id.clone()));
        id
    }

    /// The identity JWT for a request (for `/.pomerium/jwt` and `/.pomerium/user`).
    pub fn identity_jwt(
        &self,
        info: &RequestInfo,
        session: &Session,
    ) -> (String, Map<String, Value>) {
        let extra: Vec<String> = self
            .settings
            .jwt_claims_headers
            .iter()
            .map(|(_, c)| c.clone())
            .collect();
        let claims = identity_claims(
            &info.host,
            false,
            Some(session),
            &extra,
            unix_now(),
            &uuid::Uuid::new_v4().to_string(),
        );
        (self.signer.sign(&claims), claims)
    }
}

enum RefreshFailure {
    Temporary,
    Permanent,
}

/// Copies fresh tokens (and ID token claims, when a new ID token came) into a session.
pub fn apply_tokens(s: &mut Session, tokens: IdpTokens) {
    s.access_token = tokens.access_token;
    s.access_token_expires_at = tokens.access_token_expires_at;
    if tokens.refresh_token.is_some() {
        s.refresh_token = tokens.refresh_token;
    }
    if !tokens.id_token.is_empty() {
        s.id_token = tokens.id_token;
        merge_claims(&mut s.claims, tokens.claims);
    }
}

/// Merges `other` into `claims` (other wins).
pub fn merge_claims(claims: &mut Map<String, Value>, other: Map<String, Value>) {
    for (k, v) in other {
        claims.insert(k, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_application_keeps_refresh_token_and_merges_claims() {
        let mut s = Session::new_for_test("s", "alice");
        s.refresh_token = Some("rt1".into());
        s.claims.insert("name".into(), "Old".into());
        let mut claims = Map::new();
        claims.insert("name".into(), "New".into());
        apply_tokens(
            &mut s,
            IdpTokens {
                id_token: "a.b.c".into(),
                claims,
                access_token: "at2".into(),
                refresh_token: None,
                access_token_expires_at: Some(99),
            },
        );
        assert_eq!(s.refresh_token.as_deref(), Some("rt1"));
        assert_eq!(s.access_token, "at2");
        assert_eq!(s.claims["name"], "New");
        assert_eq!(s.access_token_expires_at, Some(99));
    }
}
