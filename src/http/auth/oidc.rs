//! The identity provider: OpenID Connect discovery, authorization-code flow with PKCE (S256,
//! when advertised) and a nonce, ID token verification (issuer, audience, signature, expiry,
//! nonce), UserInfo, refresh, end-session URL. Built on `openidconnect` 4.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthenticationFlow, CoreClaimName, CoreClaimType, CoreClient,
    CoreClientAuthMethod, CoreGrantType, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm, CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
    CoreTokenResponse,
};
use openidconnect::{
    reqwest, AdditionalProviderMetadata, AuthorizationCode, ClaimsVerificationError, ClientId,
    ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, ProviderMetadata, RedirectUrl,
    RefreshToken, RequestTokenError, Scope, TokenResponse,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

use super::crypto::b64_decode_any;
use super::settings::IdpSettings;

/// How long discovery results (endpoints, JWKS) are reused.
const DISCOVERY_TTL: Duration = Duration::from_secs(600);
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum IdpError {
    /// The IdP could not be reached or answered garbage: a 5xx for the user.
    #[error("identity provider {issuer} is unavailable: {message}")]
    Unavailable { issuer: String, message: String },
    /// The IdP refused (bad code, revoked refresh token…).
    #[error("identity provider rejected the request: {0}")]
    Rejected(String),
    /// The tokens did not verify.
    #[error("identity provider returned an invalid ID token: {0}")]
    InvalidIdToken(String),
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ExtraMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_session_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_challenge_methods_supported: Option<Vec<String>>,
}
impl AdditionalProviderMetadata for ExtraMetadata {}

type Metadata = ProviderMetadata<
    ExtraMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

struct Discovered {
    client: Client,
    pkce_s256: bool,
    userinfo: Option<String>,
    end_session: Option<String>,
    fetched: Instant,
}

/// Tokens and claims after a verified code exchange or refresh.
#[derive(Debug, Clone)]
pub struct IdpTokens {
    pub id_token: String,
    /// Raw ID token payload (all claims).
    pub claims: Map<String, Value>,
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub access_token_expires_at: Option<u64>,
}

/// An authorize redirect ready to send.
pub struct AuthorizeRequest {
    pub url: String,
    /// PKCE verifier to keep until the callback (when the IdP supports S256).
    pub pkce_verifier: Option<String>,
}

pub struct Idp {
    pub settings: IdpSettings,
    redirect_uri: RedirectUrl,
    http: reqwest::Client,
    discovered: ArcSwapOption<Discovered>,
}

fn now() -> u64 {
    crate::store::unix_now()
}

impl Idp {
    /// `redirect_uri` = `<authenticate_service_url>/oauth2/callback`.
    pub fn new(settings: IdpSettings, redirect_uri: &str) -> Result<Idp, IdpError> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(HTTP_TIMEOUT);
        for der in &settings.ca_certificates {
            let cert = reqwest::Certificate::from_der(der)
                .map_err(|e| IdpError::Rejected(format!("certificate_authority: {e}")))?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder
            .build()
            .map_err(|e| IdpError::Rejected(format!("http client: {e}")))?;
        let redirect_uri = RedirectUrl::new(redirect_uri.to_string())
            .map_err(|e| IdpError::Rejected(format!("redirect uri {redirect_uri:?}: {e}")))?;
        Ok(Idp {
            settings,
            redirect_uri,
            http,
            discovered: ArcSwapOption::empty(),
        })
    }

    /// The callback URL this client sends to the IdP.
    pub fn redirect_uri(&self) -> &str {
        self.redirect_uri.as_str()
    }

    fn unavailable(&self, message: impl std::fmt::Display) -> IdpError {
        IdpError::Unavailable {
            issuer: self.settings.issuer.clone(),
            message: message.to_string(),
        }
    }

    async fn discovered(&self, force: bool) -> Result<Arc<Discovered>, IdpError> {
        if !force {
            if let Some(d) = self.discovered.load_full() {
                if d.fetched.elapsed() < DISCOVERY_TTL {
                    return Ok(d);
                }
            }
        }
        let issuer = IssuerUrl::new(self.settings.issuer.clone())
            .map_err(|e| self.unavailable(format!("bad issuer URL: {e}")))?;
        let meta = Metadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| self.unavailable(error_chain(&e)))?;
        let extra = meta.additional_metadata().clone();
        let pkce_s256 = extra
            .code_challenge_methods_supported
            .as_ref()
            .is_some_and(|m| m.iter().any(|x| x == "S256"));
        let userinfo = meta.userinfo_endpoint().map(|u| u.url().to_string());
        // Apple (and any provider that lists only `client_secret_post`) wants the client
        // credentials in the token request body.
        let post_only = meta
            .token_endpoint_auth_methods_supported()
            .is_some_and(|m| {
                !m.contains(&CoreClientAuthMethod::ClientSecretBasic)
                    && m.contains(&CoreClientAuthMethod::ClientSecretPost)
            });
        // Apple's client secret is a short-lived JWT signed with the team key, made afresh
        // with every metadata fetch (every DISCOVERY_TTL).
        let secret = match &self.settings.apple {
            Some(key) => key.client_secret(&self.settings.client_id, now()),
            None => self.settings.client_secret.clone(),
        };
        let mut client = CoreClient::from_provider_metadata(
            meta,
            ClientId::new(self.settings.client_id.clone()),
            Some(ClientSecret::new(secret)),
        )
        .set_redirect_uri(self.redirect_uri.clone());
        if post_only || self.settings.provider == "apple" {
            client = client.set_auth_type(openidconnect::AuthType::RequestBody);
        }
        let d = Arc::new(Discovered {
            client,
            pkce_s256,
            userinfo,
            end_session: extra.end_session_endpoint,
            fetched: Instant::now(),
        });
        self.discovered.store(Some(d.clone()));
        Ok(d)
    }

    /// Builds the authorize redirect for `state` and `nonce`.
    pub async fn authorize(
        &self,
        state: String,
        nonce: String,
    ) -> Result<AuthorizeRequest, IdpError> {
        let d = self.discovered(false).await?;
        let mut req = d.client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            move || CsrfToken::new(state),
            move || Nonce::new(nonce),
        );
        for s in &self.settings.scopes {
            if s != "openid" {
                req = req.add_scope(Scope::new(s.clone()));
            }
        }
        for (k, v) in &self.settings.request_params {
            req = req.add_extra_param(k.clone(), v.clone());
        }
        let mut pkce_verifier = None;
        if d.pkce_s256 {
            let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
            req = req.set_pkce_challenge(challenge);
            pkce_verifier = Some(verifier.secret().clone());
        }
        let (url, _, _) = req.url();
        let mut url = url.to_string();
        if self.settings.provider == "apple" {
            // Apple wants spaces as %20, not `+` (Pomerium does the same); a literal `+` in a
            // value is already %2B.
            url = url.replace('+', "%20");
        }
        Ok(AuthorizeRequest { url, pkce_verifier })
    }

    /// Exchanges the code and verifies the ID token (with `nonce`).
    pub async fn exchange_code(
        &self,
        code: &str,
        pkce_verifier: Option<String>,
        nonce: &str,
    ) -> Result<IdpTokens, IdpError> {
        let d = self.discovered(false).await?;
        let mut req = d
            .client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| self.unavailable(format!("no token endpoint: {e}")))?;
        if let Some(v) = pkce_verifier {
            req = req.set_pkce_verifier(PkceCodeVerifier::new(v));
        }
        let resp = req
            .request_async(&self.http)
            .await
            .map_err(|e| self.token_error(e))?;
        let nonce = Nonce::new(nonce.to_string());
        self.verified(d, &resp, Some(nonce)).await
    }

    /// Uses a refresh token; the new ID token (if any) is verified, else the old claims stay.
    pub async fn refresh(&self, refresh_token: &str) -> Result<IdpTokens, IdpError> {
        let d = self.discovered(false).await?;
        let rt = RefreshToken::new(refresh_token.to_string());
        let resp = d
            .client
            .exchange_refresh_token(&rt)
            .map_err(|e| self.unavailable(format!("no token endpoint: {e}")))?
            .request_async(&self.http)
            .await
            .map_err(|e| self.token_error(e))?;
        let mut tokens = self.verified(d, &resp, None).await?;
        if tokens.refresh_token.is_none() {
            tokens.refresh_token = Some(refresh_token.to_string());
        }
        Ok(tokens)
    }

    fn token_error<RE: std::error::Error + 'static>(
        &self,
        e: RequestTokenError<
            RE,
            openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
        >,
    ) -> IdpError {
        match e {
            RequestTokenError::ServerResponse(r) => IdpError::Rejected(r.to_string()),
            other => self.unavailable(error_chain(&other)),
        }
    }

    async fn verified(
        &self,
        mut d: Arc<Discovered>,
        resp: &CoreTokenResponse,
        nonce: Option<Nonce>,
    ) -> Result<IdpTokens, IdpError> {
        let access_token = resp.access_token().secret().clone();
        let refresh_token = resp.refresh_token().map(|t| t.secret().clone());
        let access_token_expires_at = resp.expires_in().map(|e| now() + e.as_secs());
        let id_token = match resp.id_token() {
            Some(t) => t,
            None if nonce.is_none() => {
                return Ok(IdpTokens {
                    id_token: String::new(),
                    claims: Map::new(),
                    access_token,
                    refresh_token,
                    access_token_expires_at,
                })
            }
            None => {
                return Err(IdpError::InvalidIdToken(
                    "token response has no id_token".into(),
                ))
            }
        };
        let check = |d: &Discovered| {
            let verifier = d.client.id_token_verifier();
            let res = match &nonce {
                Some(n) => id_token.claims(&verifier, n).map(|_| ()),
                None => id_token
                    .claims(&verifier, |_: Option<&Nonce>| Ok(()))
                    .map(|_| ()),
            };
            res
        };
        let mut result = check(&d);
        if let Err(ClaimsVerificationError::SignatureVerification(_)) = &result {
            // The IdP may have rotated its keys: fetch JWKS again once.
            d = self.discovered(true).await?;
            result = check(&d);
        }
        result.map_err(|e| IdpError::InvalidIdToken(error_chain(&e)))?;
        let raw = id_token.to_string();
        let claims = raw
            .split('.')
            .nth(1)
            .and_then(b64_decode_any)
            .and_then(|b| serde_json::from_slice::<Map<String, Value>>(&b).ok())
            .ok_or_else(|| IdpError::InvalidIdToken("payload is not a JSON object".into()))?;
        Ok(IdpTokens {
            id_token: raw,
            claims,
            access_token,
            refresh_token,
            access_token_expires_at,
        })
    }

    /// Verifies an ID token presented as a bearer token (`bearer_token_format:
    /// idp_identity_token`): signature by the IdP's keys, issuer, audience (our client id) and
    /// expiry; no nonce. Returns its claims.
    pub async fn verify_id_token(&self, raw: &str) -> Result<Map<String, Value>, IdpError> {
        let token: openidconnect::core::CoreIdToken = std::str::FromStr::from_str(raw)
            .map_err(|e: serde_json::Error| IdpError::InvalidIdToken(format!("not a JWT: {e}")))?;
        let check = |d: &Discovered| {
            token
                .claims(&d.client.id_token_verifier(), |_: Option<&Nonce>| Ok(()))
                .map(|_| ())
        };
        let mut d = self.discovered(false).await?;
        let mut result = check(&d);
        if let Err(ClaimsVerificationError::SignatureVerification(_)) = &result {
            d = self.discovered(true).await?;
            result = check(&d);
        }
        result.map_err(|e| IdpError::InvalidIdToken(error_chain(&e)))?;
        raw.split('.')
            .nth(1)
            .and_then(b64_decode_any)
            .and_then(|b| serde_json::from_slice::<Map<String, Value>>(&b).ok())
            .ok_or_else(|| IdpError::InvalidIdToken("payload is not a JSON object".into()))
    }

    /// UserInfo claims (`None` when the IdP has no endpoint). `sub` must match the ID token's.
    pub async fn userinfo(
        &self,
        access_token: &str,
        sub: &str,
    ) -> Result<Option<Map<String, Value>>, IdpError> {
        let claims = self.userinfo_claims(access_token).await?;
        if let Some(claims) = &claims {
            if claims.get("sub").and_then(Value::as_str) != Some(sub) {
                return Err(IdpError::Rejected(
                    "userinfo sub does not match the ID token".into(),
                ));
            }
        }
        Ok(claims)
    }

    /// The UserInfo claims for `access_token` (`None` when the IdP has no endpoint); an access
    /// token the IdP does not accept is an error.
    pub async fn userinfo_claims(
        &self,
        access_token: &str,
    ) -> Result<Option<Map<String, Value>>, IdpError> {
        let d = self.discovered(false).await?;
        let Some(url) = &d.userinfo else {
            return Ok(None);
        };
        let resp = self
            .http
            .get(url)
            .bearer_auth(access_token)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| self.unavailable(error_chain(&e)))?;
        if !resp.status().is_success() {
            return Err(IdpError::Rejected(format!(
                "userinfo returned {}",
                resp.status()
            )));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| self.unavailable(error_chain(&e)))?;
        let claims: Map<String, Value> = serde_json::from_slice(&body)
            .map_err(|e| IdpError::Rejected(format!("userinfo is not a JSON object: {e}")))?;
        Ok(Some(claims))
    }

    /// The IdP's end-session URL for RP-initiated logout, if it has one.
    pub async fn end_session_url(
        &self,
        id_token_hint: Option<&str>,
        post_logout_redirect_uri: &str,
    ) -> Option<String> {
        let d = self.discovered(false).await.ok()?;
        let mut url = url::Url::parse(d.end_session.as_deref()?).ok()?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(h) = id_token_hint.filter(|h| !h.is_empty()) {
                q.append_pair("id_token_hint", h);
            }
            q.append_pair("client_id", &self.settings.client_id);
            q.append_pair("post_logout_redirect_uri", post_logout_redirect_uri);
        }
        Some(url.to_string())
    }

    /// The user id for a claims set: `sub`, or Azure's `oid`.
    pub fn user_id(&self, claims: &Map<String, Value>) -> String {
        let key = if self.settings.provider == "azure" && claims.contains_key("oid") {
            "oid"
        } else {
            "sub"
        };
        claims
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }
}

/// `error: cause: cause` for logs and pages.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let cs = c.to_string();
        if !s.contains(&cs) {
            s.push_str(": ");
            s.push_str(&cs);
        }
        cur = c.source();
    }
    s
}
