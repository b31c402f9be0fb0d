//! Checked authentication settings: secrets, signing key, cookie options, IdP, session storage.
//! Built once per config load from [`Settings`]; every bad value is an error naming its key.

use std::path::PathBuf;
use std::time::Duration;

use actix_web::http::header::HeaderName;
use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use thiserror::Error;
use url::Url;

use super::crypto::{b64_decode_any, Secret32};
use crate::config::duration::parse_go_duration;
use crate::config::Settings;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("config: `{key}`: {message}")]
pub struct AuthConfigError {
    pub key: &'static str,
    pub message: String,
}

fn err(key: &'static str, message: impl Into<String>) -> AuthConfigError {
    AuthConfigError {
        key,
        message: message.into(),
    }
}

/// `SameSite` cookie attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Lax,
    Strict,
    None,
}

impl SameSite {
    pub fn as_str(self) -> &'static str {
        match self {
            SameSite::Lax => "Lax",
            SameSite::Strict => "Strict",
            SameSite::None => "None",
        }
    }
}

/// Cookie options shared by every cookie rampart sets (Secure is always on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieOptions {
    /// `cookie_name`, default `_pomerium`.
    pub name: String,
    pub domain: Option<String>,
    /// `cookie_expire`, default 14h; also the session lifetime.
    pub expire: Duration,
    pub http_only: bool,
    /// `None` = attribute omitted (Pomerium's default).
    pub same_site: Option<SameSite>,
}

impl CookieOptions {
    pub fn authenticate_name(&self) -> String {
        format!("{}_authenticate", self.name)
    }
    pub fn csrf_name(&self) -> String {
        format!("{}_csrf", self.name)
    }
    pub fn pkce_prefix(&self) -> String {
        format!("{}_pkce_", self.name)
    }
}

/// Where sessions are kept (`databroker_storage_type`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageSettings {
    Memory,
    /// redb file in this directory (`None` = the `--data-dir`).
    File(Option<PathBuf>),
    Redis(String),
}

/// The identity provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdpSettings {
    /// `idp_provider` (`oidc` when unset).
    pub provider: String,
    /// Issuer URL exactly as configured (discovery at `<issuer>/.well-known/openid-configuration`).
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    pub scopes: Vec<String>,
    /// Extra authorize-request parameters (`idp_request_params`, provider defaults first).
    pub request_params: Vec<(String, String)>,
    /// Stable id of this IdP configuration (carried in the session cookie).
    pub id: String,
    /// `apple` with a private key as client secret: signs the client-secret JWT.
    pub apple: Option<super::apple::AppleKey>,
    /// The global `certificate_authority` certificates (DER), trusted for IdP connections
    /// besides the web PKI roots (as Pomerium does).
    pub ca_certificates: Vec<Vec<u8>>,
}

impl IdpSettings {
    /// The id of a client at a provider (a hash of provider, URL, client id and secret, like
    /// Pomerium's IdP id): sessions are keyed by it.
    pub fn compute_id(
        provider: &str,
        issuer: &str,
        client_id: &str,
        client_secret: &str,
    ) -> String {
        let mut h = Sha256::new();
        for part in [provider, issuer, client_id, client_secret] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        super::crypto::b64url(&h.finalize()[..12])
    }

    /// These settings with another OAuth client (a route's `idp_client_id` /
    /// `idp_client_secret`; each `None` keeps the global value), with its own id.
    pub fn with_client(&self, client_id: Option<&str>, client_secret: Option<&str>) -> IdpSettings {
        let mut s = self.clone();
        if let Some(id) = client_id {
            s.client_id = id.to_string();
        }
        if let Some(secret) = client_secret {
            s.client_secret = secret.to_string();
            // An Apple key belongs to the global secret; a route's secret is used as is.
            s.apple = None;
        }
        s.id = IdpSettings::compute_id(&s.provider, &s.issuer, &s.client_id, &s.client_secret);
        s
    }
}

/// Checked auth settings.
#[derive(Clone)]
pub struct AuthSettings {
    /// `authenticate_service_url` (required when an IdP is configured).
    pub authenticate_url: Option<Url>,
    pub idp: Option<IdpSettings>,
    pub shared_secret: Secret32,
    pub cookie_secret: Secret32,
    /// ES256 key for `X-Pomerium-Jwt-Assertion`.
    pub signing_key: p256::SecretKey,
    pub cookie: CookieOptions,
    /// `jwt_claims_headers`: (header, claim).
    pub jwt_claims_headers: Vec<(HeaderName, String)>,
    pub pass_identity_headers: bool,
    pub storage: StorageSettings,
    pub signout_redirect_url: Option<Url>,
    /// Serve `/.pomerium/jwt` (Pomerium's runtime flag `pomerium_jwt_endpoint`, off by default).
    pub jwt_endpoint: bool,
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSettings")
            .field("authenticate_url", &self.authenticate_url)
            .field("idp", &self.idp.as_ref().map(|i| &i.issuer))
            .field("cookie", &self.cookie)
            .field("jwt_claims_headers", &self.jwt_claims_headers)
            .field("pass_identity_headers", &self.pass_identity_headers)
            .field("storage", &self.storage)
            .finish_non_exhaustive()
    }
}

pub const DEFAULT_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];
pub const DERIVED_KEY_INFO: &[u8] = b"derived-jwt-signing-key";

impl AuthSettings {
    pub fn from_settings(s: &Settings) -> Result<AuthSettings, AuthConfigError> {
        // Without an identity provider nobody signs in, so the secrets only sign the identity
        // JWT of public routes: a per-process random secret is enough (as Pomerium does).
        let sign_in = s.idp_provider_url.is_some()
            || s.idp_client_id.is_some()
            || s.idp_client_id_file.is_some()
            || s.authenticate_service_url.is_some();
        let shared_secret = secret32_or_random(
            sign_in,
            "shared_secret",
            "shared_secret_file",
            &s.shared_secret,
            &s.shared_secret_file,
            &RANDOM_SHARED_SECRET,
        )?;
        let cookie_secret = secret32_or_random(
            sign_in,
            "cookie_secret",
            "cookie_secret_file",
            &s.cookie_secret,
            &s.cookie_secret_file,
            &RANDOM_COOKIE_SECRET,
        )?;
        let signing_key = match value_or_file(
            "signing_key",
            "signing_key_file",
            &s.signing_key,
            &s.signing_key_file,
        )? {
            Some((key, text)) => parse_signing_key(key, &text)?,
            None => derive_signing_key(&shared_secret),
        };

        let cookie = cookie_options(s)?;
        let jwt_claims_headers = parse_claims_headers(s.jwt_claims_headers.as_ref())?;
        let storage = storage(s)?;
        let authenticate_url = s
            .authenticate_service_url
            .as_deref()
            .filter(|v| !v.trim().is_empty())
            .map(|v| parse_http_url("authenticate_service_url", v))
            .transpose()?;
        let signout_redirect_url = s
            .signout_redirect_url
            .as_deref()
            .filter(|v| !v.trim().is_empty())
            .map(|v| parse_http_url("signout_redirect_url", v))
            .transpose()?;
        let idp = idp_settings(s)?;
        if idp.is_some() && authenticate_url.is_none() {
            return Err(err(
                "authenticate_service_url",
                "required when an identity provider is configured (e.g. https://authenticate.example.com)",
            ));
        }
        Ok(AuthSettings {
            authenticate_url,
            idp,
            shared_secret,
            cookie_secret,
            signing_key,
            cookie,
            jwt_claims_headers,
            pass_identity_headers: s.pass_identity_headers.unwrap_or(false),
            storage,
            signout_redirect_url,
            jwt_endpoint: false,
        })
    }

    /// Host (no port) of the authenticate service, lower-cased.
    /// Whether `host` (without port, any case) is the authenticate service's host.
    pub fn is_authenticate_host(&self, host: &str) -> bool {
        self.authenticate_url
            .as_ref()
            .and_then(|u| u.host_str())
            .is_some_and(|h| h.eq_ignore_ascii_case(host))
    }

    pub fn authenticate_host(&self) -> Option<String> {
        self.authenticate_url
            .as_ref()
            .and_then(|u| u.host_str())
            .map(|h| h.to_ascii_lowercase())
    }
}

fn parse_http_url(key: &'static str, value: &str) -> Result<Url, AuthConfigError> {
    let url =
        Url::parse(value.trim()).map_err(|e| err(key, format!("invalid URL {value:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(err(
            key,
            format!("invalid URL {value:?}: expected http(s)://host"),
        ));
    }
    Ok(url)
}

/// Reads `key` or `key_file`. Returns which key supplied the value, and the text.
fn value_or_file(
    key: &'static str,
    file_key: &'static str,
    value: &Option<String>,
    file: &Option<String>,
) -> Result<Option<(&'static str, String)>, AuthConfigError> {
    let value = value.as_deref().filter(|v| !v.trim().is_empty());
    let file = file.as_deref().filter(|v| !v.trim().is_empty());
    match (value, file) {
        (Some(_), Some(_)) => Err(err(
            key,
            format!("`{key}` and `{file_key}` are both set; use one"),
        )),
        (Some(v), None) => Ok(Some((key, v.trim().to_string()))),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| err(file_key, format!("cannot read {path}: {e}")))?;
            Ok(Some((file_key, text.trim().to_string())))
        }
        (None, None) => Ok(None),
    }
}

static RANDOM_SHARED_SECRET: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
static RANDOM_COOKIE_SECRET: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();

/// `secret32`, except that without sign-in a missing secret becomes a random one, generated
/// once per process (so config reloads keep it).
fn secret32_or_random(
    sign_in: bool,
    key: &'static str,
    file_key: &'static str,
    value: &Option<String>,
    file: &Option<String>,
    random: &'static std::sync::OnceLock<[u8; 32]>,
) -> Result<Secret32, AuthConfigError> {
    if sign_in || value.is_some() || file.is_some() {
        return secret32(key, file_key, value, file);
    }
    Ok(Secret32(*random.get_or_init(|| {
        tracing::warn!(
            key,
            "not set and no identity provider configured: using a random secret for this process"
        );
        rand::random()
    })))
}

fn secret32(
    key: &'static str,
    file_key: &'static str,
    value: &Option<String>,
    file: &Option<String>,
) -> Result<Secret32, AuthConfigError> {
    let (which, text) = value_or_file(key, file_key, value, file)?.ok_or_else(|| {
        err(
            key,
            "missing: set a base64-encoded 32-byte secret (e.g. `head -c32 /dev/urandom | base64`)",
        )
    })?;
    let bytes = b64_decode_any(&text).ok_or_else(|| {
        err(
            which,
            "not valid base64 (expected a base64-encoded 32-byte secret)",
        )
    })?;
    let arr: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
        err(
            which,
            format!("decodes to {} bytes, expected 32", bytes.len()),
        )
    })?;
    Ok(Secret32(arr))
}

/// Parses `signing_key`: base64-encoded PEM or PEM text; EC P-256 (SEC1 or PKCS#8).
pub fn parse_signing_key(
    key: &'static str,
    text: &str,
) -> Result<p256::SecretKey, AuthConfigError> {
    let pem = if text.starts_with("-----BEGIN") {
        text.to_string()
    } else {
        let bytes = b64_decode_any(text)
            .ok_or_else(|| err(key, "expected base64-encoded PEM or PEM text"))?;
        String::from_utf8(bytes).map_err(|_| err(key, "base64 does not decode to PEM text"))?
    };
    if pem.contains("RSA PRIVATE KEY") {
        return Err(err(key, "RSA keys are not supported; use an EC P-256 key (openssl ecparam -genkey -name prime256v1)"));
    }
    use p256::pkcs8::DecodePrivateKey;
    p256::SecretKey::from_sec1_pem(&pem)
        .ok()
        .or_else(|| p256::SecretKey::from_pkcs8_pem(&pem).ok())
        .ok_or_else(|| {
            err(
                key,
                "not an EC P-256 private key in PEM form (EC PRIVATE KEY or PRIVATE KEY)",
            )
        })
}

/// The signing key derived from shared_secret (HKDF-SHA256, info `derived-jwt-signing-key`), so
/// every replica sharing the secret signs with the same key.
pub fn derive_signing_key(shared_secret: &Secret32) -> p256::SecretKey {
    let hk = Hkdf::<Sha256>::new(None, &shared_secret.0);
    let mut okm = [0u8; 32 * 8];
    hk.expand(DERIVED_KEY_INFO, &mut okm)
        .expect("256 bytes is a valid HKDF-SHA256 output length");
    for chunk in okm.chunks(32) {
        if let Ok(k) = p256::SecretKey::from_slice(chunk) {
            return k;
        }
    }
    unreachable!("eight consecutive invalid P-256 scalars")
}

fn cookie_options(s: &Settings) -> Result<CookieOptions, AuthConfigError> {
    let name = s
        .cookie_name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "_pomerium".into());
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    {
        return Err(err(
            "cookie_name",
            format!("{name:?} is not a valid cookie name"),
        ));
    }
    let expire = match &s.cookie_expire {
        Some(v) => parse_go_duration(v).map_err(|e| err("cookie_expire", e.to_string()))?,
        None => Duration::from_secs(14 * 3600),
    };
    if expire.is_zero() {
        return Err(err("cookie_expire", "must be greater than 0"));
    }
    let same_site = match s.cookie_same_site.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(v) => Some(match v.to_ascii_lowercase().as_str() {
            "lax" => SameSite::Lax,
            "strict" => SameSite::Strict,
            "none" => SameSite::None,
            _ => {
                return Err(err(
                    "cookie_same_site",
                    format!("{v:?}: expected lax, strict or none"),
                ))
            }
        }),
    };
    Ok(CookieOptions {
        name,
        domain: s.cookie_domain.clone().filter(|d| !d.is_empty()),
        expire,
        http_only: s.cookie_http_only.unwrap_or(true),
        same_site,
    })
}

/// `jwt_claims_headers`: map `{Header: claim}`, list `[claim]` or string `"a,b c"`.
pub fn parse_claims_headers(
    value: Option<&serde_json::Value>,
) -> Result<Vec<(HeaderName, String)>, AuthConfigError> {
    use serde_json::Value;
    const KEY: &str = "jwt_claims_headers";
    let header = |name: &str| {
        HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| err(KEY, format!("{name:?} is not a valid header name")))
    };
    let from_claims = |claims: Vec<String>| {
        claims
            .into_iter()
            .filter(|c| !c.is_empty())
            .map(|c| Ok((header(&format!("x-pomerium-claim-{c}"))?, c)))
            .collect::<Result<Vec<_>, AuthConfigError>>()
    };
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => from_claims(
            s.split(|c: char| c == ',' || c.is_whitespace())
                .map(str::to_string)
                .collect(),
        ),
        Some(Value::Array(items)) => from_claims(
            items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(err(
                        KEY,
                        format!("list entries must be claim names, got {other}"),
                    )),
                })
                .collect::<Result<_, _>>()?,
        ),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(h, c)| match c {
                Value::String(c) => Ok((header(h)?, c.clone())),
                other => Err(err(
                    KEY,
                    format!("value for header {h:?} must be a claim name, got {other}"),
                )),
            })
            .collect(),
        Some(other) => Err(err(
            KEY,
            format!("expected a map, a list or a string, got {other}"),
        )),
    }
}

fn storage(s: &Settings) -> Result<StorageSettings, AuthConfigError> {
    let conn = value_or_file(
        "databroker_storage_connection_string",
        "databroker_storage_connection_string_file",
        &s.databroker_storage_connection_string,
        &s.databroker_storage_connection_string_file,
    )?
    .map(|(_, v)| v);
    match s
        .databroker_storage_type
        .as_deref()
        .map(|t| t.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("") | Some("file") => {
            let dir = match conn.as_deref() {
                None => None,
                Some(c) => Some(PathBuf::from(c.strip_prefix("file://").unwrap_or(c))),
            };
            Ok(StorageSettings::File(dir))
        }
        Some("memory") | Some("inmemory") => Ok(StorageSettings::Memory),
        Some("redis") => conn.map(StorageSettings::Redis).ok_or_else(|| {
            err(
                "databroker_storage_connection_string",
                "required for databroker_storage_type redis (e.g. redis://127.0.0.1:6379/0)",
            )
        }),
        Some(other) => Err(err(
            "databroker_storage_type",
            format!("unknown storage type {other:?} (use memory, file or redis)"),
        )),
    }
}

fn idp_settings(s: &Settings) -> Result<Option<IdpSettings>, AuthConfigError> {
    let provider = s
        .idp_provider
        .as_deref()
        .map(|p| p.trim().to_ascii_lowercase())
        .filter(|p| !p.is_empty());
    let client_id = value_or_file(
        "idp_client_id",
        "idp_client_id_file",
        &s.idp_client_id,
        &s.idp_client_id_file,
    )?
    .map(|(_, v)| v);
    let url = s
        .idp_provider_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_string);
    if provider.is_none() && client_id.is_none() && url.is_none() {
        return Ok(None);
    }
    let provider = provider.unwrap_or_else(|| "oidc".into());
    let mut request_params: Vec<(String, String)> = Vec::new();
    let mut scopes: Vec<String> = DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect();
    let issuer = match provider.as_str() {
        "google" => {
            scopes = vec!["openid".into(), "profile".into(), "email".into()];
            request_params.push(("prompt".into(), "select_account consent".into()));
            request_params.push(("access_type".into(), "offline".into()));
            url.unwrap_or_else(|| "https://accounts.google.com".into())
        }
        "oidc" | "auth0" | "azure" | "cognito" | "keycloak" | "okta" | "onelogin" | "ping" => {
            url.ok_or_else(|| err("idp_provider_url", format!("required for idp_provider {provider}")))?
        }
        "apple" => {
            scopes = super::apple::APPLE_SCOPES.iter().map(|s| s.to_string()).collect();
            request_params.push(("response_mode".into(), "form_post".into()));
            url.unwrap_or_else(|| super::apple::APPLE_ISSUER.into())
        }
        "github" | "gitlab" => {
            return Err(err(
                "idp_provider",
                format!("{provider:?} is not supported; use an OpenID Connect provider (idp_provider: oidc)"),
            ))
        }
        other => {
            return Err(err(
                "idp_provider",
                format!("unknown provider {other:?} (use oidc, apple, google, auth0, azure, cognito, keycloak, okta, onelogin or ping)"),
            ))
        }
    };
    parse_http_url("idp_provider_url", &issuer)?;
    let client_id = client_id.ok_or_else(|| {
        err(
            "idp_client_id",
            "required when an identity provider is configured",
        )
    })?;
    let client_secret = value_or_file(
        "idp_client_secret",
        "idp_client_secret_file",
        &s.idp_client_secret,
        &s.idp_client_secret_file,
    )?
    .map(|(_, v)| v)
    .ok_or_else(|| {
        err(
            "idp_client_secret",
            "required when an identity provider is configured",
        )
    })?;
    if let Some(list) = &s.idp_scopes {
        if !list.is_empty() {
            scopes = list.clone();
        }
    }
    if let Some(params) = &s.idp_request_params {
        for (k, v) in params {
            request_params.retain(|(pk, _)| pk != k);
            request_params.push((k.clone(), v.clone()));
        }
    }
    let apple = if provider == "apple" {
        super::apple::apple_key(
            &client_secret,
            s.idp_apple_team_id.as_deref(),
            s.idp_apple_key_id.as_deref(),
        )?
    } else {
        None
    };
    let id = IdpSettings::compute_id(&provider, &issuer, &client_id, &client_secret);
    Ok(Some(IdpSettings {
        provider,
        issuer,
        client_id,
        client_secret,
        scopes,
        request_params,
        id,
        apple,
        ca_certificates: idp_ca_certificates(s),
    }))
}

/// The `certificate_authority` (or `_file`) certificates; unreadable ones are left out here
/// (the proxy's snapshot reports them).
fn idp_ca_certificates(s: &Settings) -> Vec<Vec<u8>> {
    use crate::config::source::PemSource;
    let src = s
        .certificate_authority
        .as_deref()
        .map(PemSource::from_value)
        .or_else(|| {
            s.certificate_authority_file
                .as_deref()
                .map(|f| PemSource::File(f.into()))
        });
    src.and_then(|src| src.read().ok())
        .map(|pem| crate::config::route::pem_certificates(&pem))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn base() -> Settings {
        Settings {
            shared_secret: Some(b64(&[1; 32])),
            cookie_secret: Some(b64(&[2; 32])),
            ..Default::default()
        }
    }

    #[test]
    fn defaults() {
        let a = AuthSettings::from_settings(&base()).unwrap();
        assert_eq!(a.cookie.name, "_pomerium");
        assert_eq!(a.cookie.expire, Duration::from_secs(14 * 3600));
        assert!(a.cookie.http_only);
        assert_eq!(a.cookie.same_site, None);
        assert_eq!(a.storage, StorageSettings::File(None));
        assert!(a.idp.is_none());
        assert!(!a.pass_identity_headers);
        assert_eq!(a.cookie.csrf_name(), "_pomerium_csrf");
    }

    #[test]
    fn secrets_are_optional_without_sign_in_only() {
        let public_only = Settings::default();
        let a = AuthSettings::from_settings(&public_only).unwrap();
        let b = AuthSettings::from_settings(&public_only).unwrap();
        assert_eq!(
            a.shared_secret.0, b.shared_secret.0,
            "stable within the process"
        );
        assert_ne!(a.shared_secret.0, a.cookie_secret.0);
        let mut with_idp = Settings {
            idp_provider_url: Some("https://idp.example.com".into()),
            ..Default::default()
        };
        let e = AuthSettings::from_settings(&with_idp).unwrap_err();
        assert_eq!(e.key, "shared_secret");
        with_idp.shared_secret = Some(b64(&[1; 32]));
        let e = AuthSettings::from_settings(&with_idp).unwrap_err();
        assert_eq!(e.key, "cookie_secret");
    }

    #[test]
    fn missing_and_malformed_secrets_name_the_key() {
        let mut s = base();
        s.shared_secret = None;
        s.authenticate_service_url = Some("https://authenticate.example.com".into());
        let e = AuthSettings::from_settings(&s).unwrap_err();
        assert_eq!(e.key, "shared_secret");
        assert!(e.to_string().contains("missing"), "{e}");

        let mut s = base();
        s.cookie_secret = Some(b64(&[1; 16]));
        let e = AuthSettings::from_settings(&s).unwrap_err();
        assert_eq!(e.key, "cookie_secret");
        assert!(e.to_string().contains("16 bytes, expected 32"), "{e}");

        let mut s = base();
        s.cookie_secret = Some("not base64!!".into());
        assert_eq!(
            AuthSettings::from_settings(&s).unwrap_err().key,
            "cookie_secret"
        );
    }

    #[test]
    fn secrets_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ss");
        std::fs::write(&p, format!("{}\n", b64(&[9; 32]))).unwrap();
        let mut s = base();
        s.shared_secret = None;
        s.shared_secret_file = Some(p.display().to_string());
        assert_eq!(
            AuthSettings::from_settings(&s).unwrap().shared_secret.0,
            [9; 32]
        );
        s.shared_secret_file = Some("/nonexistent/x".into());
        assert_eq!(
            AuthSettings::from_settings(&s).unwrap_err().key,
            "shared_secret_file"
        );
    }

    #[test]
    fn derived_signing_key_is_stable_and_secret_dependent() {
        let a = derive_signing_key(&Secret32([1; 32]));
        let b = derive_signing_key(&Secret32([1; 32]));
        let c = derive_signing_key(&Secret32([2; 32]));
        assert_eq!(a.to_bytes(), b.to_bytes());
        assert_ne!(a.to_bytes(), c.to_bytes());
    }

    #[test]
    fn signing_key_pem_and_errors() {
        let key = p256::SecretKey::from_slice(&[5; 32]).unwrap();
        let pem = key.to_sec1_pem(Default::default()).unwrap();
        let mut s = base();
        s.signing_key = Some(b64(pem.as_bytes()));
        let a = AuthSettings::from_settings(&s).unwrap();
        assert_eq!(a.signing_key.to_bytes(), key.to_bytes());
        s.signing_key = Some(b64(
            b"-----BEGIN RSA PRIVATE KEY-----\nAA\n-----END RSA PRIVATE KEY-----\n",
        ));
        let e = AuthSettings::from_settings(&s).unwrap_err();
        assert_eq!(e.key, "signing_key");
        assert!(e.message.contains("RSA"));
        s.signing_key = Some(b64(b"garbage"));
        assert_eq!(
            AuthSettings::from_settings(&s).unwrap_err().key,
            "signing_key"
        );
    }

    #[test]
    fn cookie_options_parse() {
        let mut s = base();
        s.cookie_same_site = Some("LAX".into());
        s.cookie_expire = Some("1h".into());
        s.cookie_http_only = Some(false);
        s.cookie_name = Some("_rp".into());
        let a = AuthSettings::from_settings(&s).unwrap();
        assert_eq!(a.cookie.same_site, Some(SameSite::Lax));
        assert_eq!(a.cookie.expire, Duration::from_secs(3600));
        assert!(!a.cookie.http_only);
        assert_eq!(a.cookie.authenticate_name(), "_rp_authenticate");
        s.cookie_same_site = Some("sometimes".into());
        assert_eq!(
            AuthSettings::from_settings(&s).unwrap_err().key,
            "cookie_same_site"
        );
        s.cookie_same_site = None;
        s.cookie_expire = Some("14".into());
        assert_eq!(
            AuthSettings::from_settings(&s).unwrap_err().key,
            "cookie_expire"
        );
    }

    #[test]
    fn claims_headers_forms() {
        let v = serde_json::json!({"X-Email": "email", "X-Groups": "groups"});
        let h = parse_claims_headers(Some(&v)).unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].0.as_str(), "x-email");
        let v = serde_json::json!(["email", "family_name"]);
        let h = parse_claims_headers(Some(&v)).unwrap();
        assert_eq!(h[1].0.as_str(), "x-pomerium-claim-family_name");
        assert_eq!(h[1].1, "family_name");
        let v = serde_json::json!("email, groups");
        assert_eq!(parse_claims_headers(Some(&v)).unwrap().len(), 2);
        let v = serde_json::json!({"bad header": "email"});
        assert_eq!(
            parse_claims_headers(Some(&v)).unwrap_err().key,
            "jwt_claims_headers"
        );
    }

    #[test]
    fn idp_settings_and_storage() {
        let mut s = base();
        s.idp_provider = Some("oidc".into());
        s.idp_provider_url = Some("http://127.0.0.1:9999".into());
        s.idp_client_id = Some("rampart".into());
        s.idp_client_secret = Some("secret".into());
        let e = AuthSettings::from_settings(&s).unwrap_err();
        assert_eq!(e.key, "authenticate_service_url");
        s.authenticate_service_url = Some("https://authenticate.example.com".into());
        let a = AuthSettings::from_settings(&s).unwrap();
        let idp = a.idp.clone().unwrap();
        assert_eq!(idp.scopes, DEFAULT_SCOPES.map(String::from).to_vec());
        assert_eq!(
            a.authenticate_host().as_deref(),
            Some("authenticate.example.com")
        );
        s.idp_client_secret = None;
        assert_eq!(
            AuthSettings::from_settings(&s).unwrap_err().key,
            "idp_client_secret"
        );
        s.idp_client_secret = Some("x".into());
        s.idp_provider = Some("github".into());
        assert_eq!(
            AuthSettings::from_settings(&s).unwrap_err().key,
            "idp_provider"
        );
    }

    #[test]
    fn apple_defaults_and_key_errors() {
        use p256::pkcs8::{EncodePrivateKey, LineEnding};
        let mut s = base();
        s.authenticate_service_url = Some("https://authenticate.example.com".into());
        s.idp_provider = Some("apple".into());
        s.idp_client_id = Some("com.example.web".into());
        // A ready client-secret JWT (Pomerium's form) is used as is.
        s.idp_client_secret = Some("eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJUIn0.c2ln".into());
        let idp = AuthSettings::from_settings(&s).unwrap().idp.unwrap();
        assert_eq!(idp.issuer, "https://appleid.apple.com");
        assert_eq!(idp.scopes, vec!["name".to_string(), "email".to_string()]);
        assert!(idp
            .request_params
            .contains(&("response_mode".to_string(), "form_post".to_string())));
        assert!(idp.apple.is_none());

        // The team's private key: team and key ids are required.
        let key = p256::SecretKey::from_slice(&[9; 32]).unwrap();
        s.idp_client_secret = Some(key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string());
        let e = AuthSettings::from_settings(&s).unwrap_err();
        assert_eq!(e.key, "idp_apple_team_id");
        s.idp_apple_team_id = Some("TEAM".into());
        s.idp_apple_key_id = Some("KEY".into());
        let idp = AuthSettings::from_settings(&s).unwrap().idp.unwrap();
        assert_eq!(idp.apple.as_ref().unwrap().team_id, "TEAM");
        s.idp_client_secret =
            Some("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n".into());
        let e = AuthSettings::from_settings(&s).unwrap_err();
        assert_eq!(e.key, "idp_client_secret");
        assert!(e.to_string().contains("apple"), "{e}");

        // Overrides: URL, scopes, and response_mode through idp_request_params.
        s.idp_client_secret = Some("jwt".into());
        s.idp_provider_url = Some("http://127.0.0.1:9".into());
        s.idp_scopes = Some(vec!["openid".into(), "email".into()]);
        s.idp_request_params = Some([("response_mode".to_string(), "query".to_string())].into());
        let idp = AuthSettings::from_settings(&s).unwrap().idp.unwrap();
        assert_eq!(idp.issuer, "http://127.0.0.1:9");
        assert_eq!(idp.scopes, vec!["openid".to_string(), "email".to_string()]);
        assert_eq!(
            idp.request_params,
            vec![("response_mode".to_string(), "query".to_string())]
        );
    }

    #[test]
    fn storage_types() {
        let mut s = base();
        s.databroker_storage_type = Some("memory".into());
        assert_eq!(
            AuthSettings::from_settings(&s).unwrap().storage,
            StorageSettings::Memory
        );
        s.databroker_storage_type = Some("redis".into());
        assert_eq!(
            AuthSettings::from_settings(&s).unwrap_err().key,
            "databroker_storage_connection_string"
        );
        s.databroker_storage_type = Some("postgres".into());
        assert_eq!(
            AuthSettings::from_settings(&s).unwrap_err().key,
            "databroker_storage_type"
        );
    }
}
