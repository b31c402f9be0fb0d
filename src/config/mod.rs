//! Configuration: the Pomerium-style config file (`file`), checked routes (`route`), and the
//! checked global settings the proxy needs (`ProxySettings`). `load` reads and checks a whole
//! file; any error rejects the file so the previous configuration keeps serving.

pub mod duration;
pub mod file;
pub mod forward_auth;
pub mod health;
pub mod request_rules;
pub mod route;
pub mod source;

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use actix_web::http::header::{HeaderName, HeaderValue};
use thiserror::Error;

pub use file::{
    CertificatePair, OneOrMany, RedirectConfig, RequestValueMatch, RouteConfig, Settings,
};
pub use route::{Route, RouteDefaults, RouteError};

use duration::parse_go_duration;
use request_rules::{EscapedSlashesAction, PathRules, RequestRules, UnderscoreHeadersAction};
use source::PemSource;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file {path} is empty")]
    Empty { path: PathBuf },
    #[error(
        "config file {path}: {message}; if this is intended, restart rampart with the new file"
    )]
    Suspicious { path: PathBuf, message: String },
    #[error("config: `{key}`: {message}")]
    Setting { key: &'static str, message: String },
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Routes(Vec<RouteError>),
}

/// A certificate/key pair to serve, from files or inline PEM.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CertificateSource {
    pub cert: PemSource,
    pub key: PemSource,
}

/// Checked global settings the data plane needs.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// HTTPS listener (plain HTTP when `insecure_server`).
    pub address: SocketAddr,
    pub insecure_server: bool,
    /// Plain HTTP listener that redirects to https.
    pub http_redirect_addr: Option<SocketAddr>,
    /// Port named in those redirects (`https://host:port/…`); none: `https://host/…`.
    pub http_redirect_port: Option<u16>,
    pub metrics_address: Option<SocketAddr>,
    pub certificates: Vec<CertificateSource>,
    pub default_upstream_timeout: Duration,
    /// Global response headers (Pomerium's defaults unless `set_response_headers` is set;
    /// a `disable` key clears them).
    pub set_response_headers: Vec<(HeaderName, HeaderValue)>,
    pub log_level: String,
    /// Request normalisation and request-side limits.
    pub request_rules: RequestRules,
    /// The forward-auth endpoints for other proxies, when configured.
    pub forward_auth: Option<forward_auth::ForwardAuthSettings>,
}

/// A complete checked configuration: what the config actor publishes.
#[derive(Debug, Clone)]
pub struct Config {
    pub settings: Settings,
    pub proxy: ProxySettings,
    /// Routes in evaluation order.
    pub routes: Vec<Route>,
}

/// Parses config text (YAML or JSON). `path` is only used in messages.
pub fn parse(text: &str, path: &Path) -> Result<Settings, ConfigError> {
    // An empty file is a half-written or truncated one, never a configuration.
    if text.trim().is_empty() {
        return Err(ConfigError::Empty {
            path: path.to_path_buf(),
        });
    }
    serde_yaml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// What a reload must not silently lose: returns why `next` looks like a truncated or
/// half-written edit of `prev` (all routes gone, or a secret removed), `None` when it is fine.
pub fn lost_in_reload(prev: &Settings, next: &Settings) -> Option<String> {
    if !prev.routes.is_empty() && next.routes.is_empty() {
        return Some(format!(
            "the edit removes all {} routes (a truncated file?); keeping the previous configuration",
            prev.routes.len()
        ));
    }
    let secrets = [
        (
            "shared_secret",
            prev.shared_secret.is_some() || prev.shared_secret_file.is_some(),
            next.shared_secret.is_some() || next.shared_secret_file.is_some(),
        ),
        (
            "cookie_secret",
            prev.cookie_secret.is_some() || prev.cookie_secret_file.is_some(),
            next.cookie_secret.is_some() || next.cookie_secret_file.is_some(),
        ),
    ];
    secrets
        .iter()
        .find(|(_, before, after)| *before && !*after)
        .map(|(key, _, _)| {
            format!(
                "the edit removes `{key}` (a truncated file?); keeping the previous configuration"
            )
        })
}

/// Reads, parses and checks a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let settings = parse(&text, path)?;
    build(settings)
}

/// Checks parsed settings and routes, policies included. All route errors are reported
/// together.
pub fn build(settings: Settings) -> Result<Config, ConfigError> {
    build_with(settings, true)
}

/// Like `build`; `check_policies: false` skips compiling each route's policy, for callers that
/// compile (and report) policies themselves per route, such as the Ingress controller, where
/// a bad policy rejects only its Ingress.
pub fn build_with(settings: Settings, check_policies: bool) -> Result<Config, ConfigError> {
    let proxy = proxy_settings(&settings)?;
    let defaults = RouteDefaults {
        timeout: proxy.default_upstream_timeout,
    };
    let mut routes = Vec::with_capacity(settings.routes.len());
    let mut errors = Vec::new();
    for (i, rc) in settings.routes.iter().enumerate() {
        let label = route::route_label(i, rc);
        let checked =
            route::validate_route(&label, format!("route-{i}"), rc, &defaults).and_then(|r| {
                if !check_policies {
                    return Ok(r);
                }
                match crate::policy::compile_route_config(rc) {
                    Ok(_) => Ok(r),
                    Err(e) => Err(RouteError {
                        route: label.clone(),
                        kind: route::RouteErrorKind::Policy(e.to_string()),
                    }),
                }
            });
        match checked {
            Ok(r) => routes.push(r),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(ConfigError::Routes(errors));
    }
    route::sort_routes(&mut routes);
    Ok(Config {
        settings,
        proxy,
        routes,
    })
}

/// Parses a listen address: `:443`, `0.0.0.0:443`, `127.0.0.1:8443`, `localhost:8080`, `[::]:443`.
pub fn parse_listen_addr(key: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
    let bad = |message: String| ConfigError::Setting { key, message };
    let v = value.trim();
    let full = if v.starts_with(':') {
        format!("0.0.0.0{v}")
    } else {
        v.to_string()
    };
    if let Ok(addr) = full.parse::<SocketAddr>() {
        return Ok(addr);
    }
    full.to_socket_addrs()
        .map_err(|e| bad(format!("invalid listen address {value:?}: {e}")))?
        .next()
        .ok_or_else(|| bad(format!("invalid listen address {value:?}")))
}

/// Pomerium's default global response headers.
pub fn default_response_headers() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("X-Frame-Options".into(), "SAMEORIGIN".into()),
        ("X-XSS-Protection".into(), "1; mode=block".into()),
        (
            "Strict-Transport-Security".into(),
            "max-age=31536000; includeSubDomains; preload".into(),
        ),
    ])
}

fn proxy_settings(s: &Settings) -> Result<ProxySettings, ConfigError> {
    let insecure_server = s.insecure_server.unwrap_or(false);
    let address = parse_listen_addr("address", s.address.as_deref().unwrap_or(":443"))?;
    let http_redirect_addr = s
        .http_redirect_addr
        .as_deref()
        .filter(|v| !v.is_empty())
        .map(|v| parse_listen_addr("http_redirect_addr", v))
        .transpose()?;
    let metrics_address = s
        .metrics_address
        .as_deref()
        .filter(|v| !v.is_empty())
        .map(|v| parse_listen_addr("metrics_address", v))
        .transpose()?;

    let mut certificates = Vec::new();
    match (
        s.certificate.as_deref().or(s.certificate_file.as_deref()),
        s.certificate_key
            .as_deref()
            .or(s.certificate_key_file.as_deref()),
    ) {
        (Some(c), Some(k)) => certificates.push(CertificateSource {
            cert: PemSource::from_value(c),
            key: PemSource::from_value(k),
        }),
        (None, None) => {}
        (Some(_), None) => {
            return Err(ConfigError::Setting {
                key: "certificate_key_file",
                message: "a certificate is set but its key is missing".into(),
            })
        }
        (None, Some(_)) => {
            return Err(ConfigError::Setting {
                key: "certificate_file",
                message: "a certificate key is set but the certificate is missing".into(),
            })
        }
    }
    for pair in &s.certificates {
        certificates.push(CertificateSource {
            cert: PemSource::from_value(&pair.cert),
            key: PemSource::from_value(&pair.key),
        });
    }

    let default_upstream_timeout = match &s.default_upstream_timeout {
        Some(v) => parse_go_duration(v).map_err(|e| ConfigError::Setting {
            key: "default_upstream_timeout",
            message: e.to_string(),
        })?,
        None => Duration::from_secs(30),
    };
    for (key, value) in [
        ("timeout_read", &s.timeout_read),
        ("timeout_write", &s.timeout_write),
        ("timeout_idle", &s.timeout_idle),
        ("cookie_expire", &s.cookie_expire),
    ] {
        if let Some(v) = value {
            parse_go_duration(v).map_err(|e| ConfigError::Setting {
                key,
                message: e.to_string(),
            })?;
        }
    }

    let headers = s
        .set_response_headers
        .clone()
        .unwrap_or_else(default_response_headers);
    let mut set_response_headers = Vec::new();
    if !headers.contains_key("disable") {
        for (k, v) in &headers {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| ConfigError::Setting {
                key: "set_response_headers",
                message: format!("invalid header name {k:?}"),
            })?;
            let value = HeaderValue::from_str(v).map_err(|_| ConfigError::Setting {
                key: "set_response_headers",
                message: format!("invalid value for header {k:?}"),
            })?;
            set_response_headers.push((name, value));
        }
    }

    let request_rules = request_rules(s)?;
    let forward_auth = s
        .forward_auth
        .as_ref()
        .map(forward_auth::ForwardAuthSettings::from_config)
        .transpose()?;

    Ok(ProxySettings {
        address,
        insecure_server,
        http_redirect_addr,
        http_redirect_port: s.http_redirect_port,
        metrics_address,
        certificates,
        default_upstream_timeout,
        set_response_headers,
        log_level: s.log_level.clone().unwrap_or_else(|| "info".into()),
        request_rules,
        forward_auth,
    })
}

fn request_rules(s: &Settings) -> Result<RequestRules, ConfigError> {
    let defaults = RequestRules::default();
    let escaped_slashes = match &s.path_with_escaped_slashes_action {
        Some(v) => EscapedSlashesAction::parse(v).map_err(|e| ConfigError::Setting {
            key: "path_with_escaped_slashes_action",
            message: e.to_string(),
        })?,
        None => defaults.path.escaped_slashes,
    };
    let underscore_headers = match &s.headers_with_underscores_action {
        Some(v) => UnderscoreHeadersAction::parse(v).map_err(|e| ConfigError::Setting {
            key: "headers_with_underscores_action",
            message: e.to_string(),
        })?,
        None => defaults.underscore_headers,
    };
    let body_idle_timeout = match &s.request_body_idle_timeout {
        Some(v) => {
            let d = parse_go_duration(v).map_err(|e| ConfigError::Setting {
                key: "request_body_idle_timeout",
                message: e.to_string(),
            })?;
            (!d.is_zero()).then_some(d)
        }
        None => defaults.body_idle_timeout,
    };
    Ok(RequestRules {
        path: PathRules {
            normalize: s.normalize_path.unwrap_or(defaults.path.normalize),
            merge_slashes: s.merge_slashes.unwrap_or(defaults.path.merge_slashes),
            escaped_slashes,
        },
        underscore_headers,
        body_idle_timeout,
    })
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod fuzz_tests;
