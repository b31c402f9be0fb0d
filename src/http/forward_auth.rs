//! Forward auth: the endpoints other proxies ask "may this request pass?" (nginx
//! `auth_request`, Traefik `forwardAuth`, Caddy `forward_auth`, Envoy `ext_authz` HTTP and Gateway
//! API `ExternalAuth`). Each endpoint reads exactly one proxy's convention for describing the
//! original request, and only from the configured `trusted_proxies`; the route is chosen by
//! the described host and path and decided by the same authorizer the proxy uses.
//!
//! | endpoint | original request from | sign-in answer |
//! | --- | --- | --- |
//! | `/nginx` | `X-Original-URL`, or `X-Original-URI` + `X-Forwarded-Host` + `X-Forwarded-Proto`; `X-Original-Method` | 401 |
//! | `/traefik`, `/caddy` | `X-Forwarded-Method`, `-Proto`, `-Host`, `-Uri` | 302 (browsers) / 401 |
//! | `/envoy/<original path>` | method, `Host`, path after `/envoy`, query; `X-Forwarded-Proto` (default https) | 302 (browsers) / 401 |
//!
//! Allowed: 200 with the identity headers (`X-Pomerium-Jwt-Assertion`, `X-Pomerium-Claim-*`)
//! and the route's `set_request_headers`. No session: the sign-in answer, the sign-in URL also
//! in `X-Sign-In-Url`. Denied: 403. Headers missing or malformed: 400. No route: 404. A peer
//! outside `trusted_proxies`: 403.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::{StatusCode, Uri};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use arc_swap::ArcSwap;
use ipnet::IpNet;
use thiserror::Error;

use super::auth::service::RequestInfo;
use super::authorize::{AuthOutcome, LoginStyle};
use super::errors::REQUEST_ID;
use super::headers::{is_hop_by_hop, render_template, resolve_reference};
use super::request::{host_without_port, normalize_path};
use super::server::{ListenOptions, ProxyState};
use crate::config::forward_auth::trusted;

/// Which proxy's headers describe the original request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Convention {
    /// nginx `auth_request` (and ingress-nginx `auth-url`): `X-Original-*`.
    Nginx,
    /// Traefik `forwardAuth` and Caddy `forward_auth`: `X-Forwarded-Method/Proto/Host/Uri`.
    Forwarded,
    /// Envoy `ext_authz` HTTP service / Gateway API `ExternalAuth`: the original path appended
    /// to the endpoint's path, the original `Host` and method.
    Envoy,
}

impl Convention {
    pub fn login_style(self) -> LoginStyle {
        match self {
            Convention::Nginx => LoginStyle::Unauthorized,
            Convention::Forwarded | Convention::Envoy => LoginStyle::Redirect,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Convention::Nginx => "nginx",
            Convention::Forwarded => "forwarded",
            Convention::Envoy => "envoy",
        }
    }
}

/// Path prefix of the Envoy endpoint.
pub const ENVOY_PREFIX: &str = "/envoy";

/// The endpoint a request path names, with the original path for Envoy.
pub fn endpoint(path: &str) -> Option<(Convention, Option<&str>)> {
    match path {
        "/nginx" | "/nginx/" => Some((Convention::Nginx, None)),
        "/traefik" | "/traefik/" | "/caddy" | "/caddy/" => Some((Convention::Forwarded, None)),
        _ => {
            let rest = path.strip_prefix(ENVOY_PREFIX)?;
            if rest.is_empty() {
                Some((Convention::Envoy, Some("/")))
            } else if rest.starts_with('/') {
                Some((Convention::Envoy, Some(rest)))
            } else {
                None
            }
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ForwardError {
    #[error("forward auth ({convention}): header {header} is missing; {hint}")]
    Missing {
        convention: &'static str,
        header: &'static str,
        hint: &'static str,
    },
    #[error("forward auth: header {header} is sent more than once")]
    Repeated { header: &'static str },
    #[error("forward auth: header {header}: {message}")]
    Invalid {
        header: &'static str,
        message: String,
    },
}

/// The original request as the calling proxy describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Original {
    pub method: String,
    pub scheme: String,
    /// `host[:port]`.
    pub authority: String,
    /// Raw path as the client sent it.
    pub path: String,
    /// Raw query, no `?`.
    pub query: String,
}

/// A header's single value (`None` when absent); a repeated header is an error, as the copy
/// the proxy set cannot be told from one the client sent.
fn single<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<Option<&'h str>, ForwardError> {
    let mut values = headers.get_all(name);
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ForwardError::Repeated { header: name });
    }
    let v = first.to_str().map_err(|_| ForwardError::Invalid {
        header: name,
        message: "not visible ASCII".into(),
    })?;
    Ok(Some(v.trim()).filter(|v| !v.is_empty()))
}

fn required<'h>(
    headers: &'h HeaderMap,
    name: &'static str,
    convention: Convention,
    hint: &'static str,
) -> Result<&'h str, ForwardError> {
    single(headers, name)?.ok_or(ForwardError::Missing {
        convention: convention.name(),
        header: name,
        hint,
    })
}

fn check_method(header: &'static str, v: &str) -> Result<String, ForwardError> {
    actix_web::http::Method::from_bytes(v.as_bytes())
        .map(|m| m.as_str().to_string())
        .map_err(|_| ForwardError::Invalid {
            header,
            message: format!("{v:?} is not an HTTP method"),
        })
}

fn check_scheme(header: &'static str, v: &str) -> Result<String, ForwardError> {
    let v = v.to_ascii_lowercase();
    if v == "http" || v == "https" {
        Ok(v)
    } else {
        Err(ForwardError::Invalid {
            header,
            message: format!("{v:?} is not http or https"),
        })
    }
}

fn check_authority(header: &'static str, v: &str) -> Result<String, ForwardError> {
    match v.parse::<actix_web::http::uri::Authority>() {
        Ok(a) if !v.contains(',') && !v.contains('@') && !a.host().is_empty() => Ok(v.to_string()),
        _ => Err(ForwardError::Invalid {
            header,
            message: format!("{v:?} is not a single host[:port]"),
        }),
    }
}

/// Splits `path?query` (must start with `/`).
fn split_uri(header: &'static str, v: &str) -> Result<(String, String), ForwardError> {
    if !v.starts_with('/') {
        return Err(ForwardError::Invalid {
            header,
            message: format!("{v:?} is not an origin-form request target (/path?query)"),
        });
    }
    let (path, query) = v.split_once('?').unwrap_or((v, ""));
    Ok((path.to_string(), query.to_string()))
}

const NGINX_HINT: &str = "set it in the auth_request location: proxy_set_header X-Original-URL $scheme://$http_host$request_uri; proxy_set_header X-Original-Method $request_method;";
const FORWARDED_HINT: &str = "Traefik forwardAuth and Caddy forward_auth set X-Forwarded-Method, X-Forwarded-Proto, X-Forwarded-Host and X-Forwarded-Uri";

/// The original request from a trusted proxy's headers. `envoy_path` is the path after the
/// Envoy endpoint's prefix; `method`, `host` and `query` are the auth request's own (used by
/// the Envoy convention only).
pub fn describe(
    convention: Convention,
    headers: &HeaderMap,
    method: &str,
    authority: &str,
    envoy_path: Option<&str>,
    query: &str,
) -> Result<Original, ForwardError> {
    match convention {
        Convention::Nginx => {
            let method = check_method(
                "x-original-method",
                required(headers, "x-original-method", convention, NGINX_HINT)?,
            )?;
            if let Some(url) = single(headers, "x-original-url")? {
                let bad = |message: String| ForwardError::Invalid {
                    header: "x-original-url",
                    message,
                };
                let uri: Uri = url
                    .parse()
                    .map_err(|e| bad(format!("{url:?} is not a URL: {e}")))?;
                let scheme = check_scheme(
                    "x-original-url",
                    uri.scheme_str()
                        .ok_or_else(|| bad(format!("{url:?} is not an absolute URL")))?,
                )?;
                let authority = check_authority(
                    "x-original-url",
                    uri.authority()
                        .map(|a| a.as_str())
                        .ok_or_else(|| bad(format!("{url:?} has no host")))?,
                )?;
                let path = if uri.path().is_empty() {
                    "/"
                } else {
                    uri.path()
                };
                return Ok(Original {
                    method,
                    scheme,
                    authority,
                    path: path.to_string(),
                    query: uri.query().unwrap_or("").to_string(),
                });
            }
            let (path, query) = split_uri(
                "x-original-uri",
                required(headers, "x-original-uri", convention, NGINX_HINT)?,
            )?;
            let authority = check_authority(
                "x-forwarded-host",
                required(headers, "x-forwarded-host", convention, NGINX_HINT)?,
            )?;
            let scheme = check_scheme(
                "x-forwarded-proto",
                required(headers, "x-forwarded-proto", convention, NGINX_HINT)?,
            )?;
            Ok(Original {
                method,
                scheme,
                authority,
                path,
                query,
            })
        }
        Convention::Forwarded => {
            let get = |name| required(headers, name, convention, FORWARDED_HINT);
            let method = check_method("x-forwarded-method", get("x-forwarded-method")?)?;
            let scheme = check_scheme("x-forwarded-proto", get("x-forwarded-proto")?)?;
            let authority = check_authority("x-forwarded-host", get("x-forwarded-host")?)?;
            let (path, query) = split_uri("x-forwarded-uri", get("x-forwarded-uri")?)?;
            Ok(Original {
                method,
                scheme,
                authority,
                path,
                query,
            })
        }
        Convention::Envoy => {
            let scheme = match single(headers, "x-forwarded-proto")? {
                Some(p) => check_scheme("x-forwarded-proto", p)?,
                None => "https".into(),
            };
            Ok(Original {
                method: method.to_string(),
                scheme,
                authority: check_authority("host", authority)?,
                path: envoy_path.unwrap_or("/").to_string(),
                query: query.to_string(),
            })
        }
    }
}

/// The client's address: the rightmost `X-Forwarded-For` entry that is not a trusted proxy
/// (entries left of it could be written by anyone), else the peer.
pub fn client_ip(headers: &HeaderMap, peer: IpAddr, trusted_proxies: &[IpNet]) -> IpAddr {
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    for e in entries.iter().rev() {
        let Ok(ip) = e.parse::<IpAddr>() else {
            // Unparseable: stop here rather than trust what lies further left.
            return peer;
        };
        if !trusted(trusted_proxies, ip) {
            return ip;
        }
    }
    peer
}

/// What the forward-auth listener shares.
pub struct ForwardAuthState {
    pub proxy: Arc<ProxyState>,
    /// Replaced on reload.
    pub trusted_proxies: ArcSwap<Vec<IpNet>>,
}

/// An answer about the forward-auth request itself (not the user's access): untrusted peer,
/// missing headers, no route. Plain text naming the problem, for whoever sets the proxy up.
fn error(_headers: &HeaderMap, status: StatusCode, request_id: &str, detail: &str) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .content_type("text/plain; charset=utf-8")
        .body(format!("{detail}\nrequest id: {request_id}\n"))
}

/// The handler of every forward-auth request.
async fn handle(req: HttpRequest, state: web::Data<Arc<ForwardAuthState>>) -> HttpResponse {
    let request_id = uuid::Uuid::new_v4().to_string();
    let (mut response, described) = answer(&req, &state, &request_id).await;
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID), v);
    }
    tracing::info!(
        target: "rampart::forward_auth",
        peer = %req.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default(),
        endpoint = %req.path(),
        original = %described,
        status = response.status().as_u16(),
        request_id,
        "forward auth"
    );
    response
}

async fn answer(
    req: &HttpRequest,
    state: &ForwardAuthState,
    request_id: &str,
) -> (HttpResponse, String) {
    let headers = req.headers();
    let Some(peer) = req.peer_addr().map(|a| a.ip()) else {
        return (
            error(
                headers,
                StatusCode::FORBIDDEN,
                request_id,
                "no peer address",
            ),
            String::new(),
        );
    };
    let trusted_proxies = state.trusted_proxies.load();
    if !trusted(&trusted_proxies, peer) {
        let detail = format!(
            "forward auth: {peer} is not in forward_auth.trusted_proxies; only those proxies may ask"
        );
        return (
            error(headers, StatusCode::FORBIDDEN, request_id, &detail),
            String::new(),
        );
    }
    let snapshot = state.proxy.snapshot.load_full();
    let Some((convention, envoy_path)) = endpoint(req.path()) else {
        // The sign-in endpoints proxied here (`/.pomerium/*` of route hosts, the authenticate
        // host), as the proxy listener answers them.
        if let Some(reply) = snapshot.authorizer.intercept(req, request_id) {
            return (reply.await, String::new());
        }
        return (
            error(
                headers,
                StatusCode::NOT_FOUND,
                request_id,
                "forward auth endpoints: /nginx, /traefik, /caddy, /envoy/<path>",
            ),
            String::new(),
        );
    };
    let original = match describe(
        convention,
        headers,
        req.method().as_str(),
        super::proxy::request_host_str(req),
        envoy_path,
        req.query_string(),
    ) {
        Ok(o) => o,
        Err(e) => {
            return (
                error(headers, StatusCode::BAD_REQUEST, request_id, &e.to_string()),
                String::new(),
            )
        }
    };
    let described = format!(
        "{} {}://{}{}",
        original.method, original.scheme, original.authority, original.path
    );
    let mut info_headers = headers.clone();
    if let Ok(v) = HeaderValue::from_str(request_id) {
        info_headers.insert(HeaderName::from_static(REQUEST_ID), v);
    }
    let info = RequestInfo {
        host: super::request::host_without_port(&original.authority).into_owned(),
        scheme: original.scheme,
        authority: original.authority,
        method: original.method,
        path: original.path,
        query: original.query,
        headers: info_headers,
    };
    if let Some(reply) = snapshot.authorizer.intercept_forwarded(info.clone()) {
        let reply = reply.await;
        // A 2xx here would tell the proxy to pass the request to its upstream: the sign-in
        // endpoints' redirects and errors go back to the client, their pages cannot.
        if reply.status().is_success() {
            let detail = format!(
                "forward auth: {} is answered by rampart itself; route /.pomerium/ to rampart's forward-auth listener",
                info.path
            );
            return (
                error(headers, StatusCode::NOT_FOUND, request_id, &detail),
                described,
            );
        }
        return (reply, described);
    }
    let path = match normalize_path(&info.path, &snapshot.request_rules.path) {
        Ok(p) => p.path,
        Err(e) => {
            return (
                error(headers, StatusCode::BAD_REQUEST, request_id, &e.to_string()),
                described,
            )
        }
    };
    let host = host_without_port(&info.authority);
    let Some(entry) = snapshot.routes.find(&host, &path).cloned() else {
        let detail = format!("forward auth: no route for host {host:?} and path {path:?}");
        return (
            error(headers, StatusCode::NOT_FOUND, request_id, &detail),
            described,
        );
    };
    let source_ip = client_ip(headers, peer, &trusted_proxies);
    let outcome = snapshot
        .authorizer
        .authorize_forwarded(
            &info,
            Some(source_ip),
            &path,
            &entry,
            request_id,
            convention.login_style(),
        )
        .await;
    let response = match outcome {
        AuthOutcome::Allow(identity) => {
            let mut b = HttpResponse::Ok();
            b.insert_header((header::CACHE_CONTROL, "no-store"));
            let mut response = b.finish();
            let out = response.headers_mut();
            for (name, value) in &identity.set_headers {
                out.append(name.clone(), value.clone());
            }
            for (name, template) in &entry.route.set_request_headers {
                if name == header::HOST || is_hop_by_hop(name) {
                    continue;
                }
                let value = render_template(template, &|r| resolve_reference(r, &info.headers));
                if let Ok(v) = HeaderValue::from_str(&value) {
                    out.insert(name.clone(), v);
                }
            }
            response
        }
        AuthOutcome::Respond(r) => r,
    };
    (response, described)
}

/// The forward-auth listener (plain HTTP) on an already bound socket.
pub fn forward_auth_server_on(
    state: Arc<ForwardAuthState>,
    socket: TcpListener,
    opts: &ListenOptions,
) -> std::io::Result<Server> {
    let data = web::Data::new(state);
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::to(handle))
    })
    .disable_signals()
    .shutdown_timeout(opts.shutdown_grace)
    .keep_alive(opts.keep_alive)
    .client_request_timeout(opts.request_timeout);
    if let Some(w) = opts.workers {
        server = server.workers(w);
    }
    Ok(server.listen(socket)?.run())
}

/// The forward-auth listener on `addr`.
pub fn forward_auth_server(
    state: Arc<ForwardAuthState>,
    addr: SocketAddr,
    opts: &ListenOptions,
) -> std::io::Result<Server> {
    forward_auth_server_on(state, super::server::bind_listener(addr)?, opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    fn orig(method: &str, scheme: &str, authority: &str, path: &str, query: &str) -> Original {
        Original {
            method: method.into(),
            scheme: scheme.into(),
            authority: authority.into(),
            path: path.into(),
            query: query.into(),
        }
    }

    #[test]
    fn endpoints_by_path() {
        assert_eq!(endpoint("/nginx"), Some((Convention::Nginx, None)));
        assert_eq!(endpoint("/traefik"), Some((Convention::Forwarded, None)));
        assert_eq!(endpoint("/caddy/"), Some((Convention::Forwarded, None)));
        assert_eq!(endpoint("/envoy"), Some((Convention::Envoy, Some("/"))));
        assert_eq!(
            endpoint("/envoy/admin/x"),
            Some((Convention::Envoy, Some("/admin/x")))
        );
        assert_eq!(endpoint("/envoyx"), None);
        assert_eq!(endpoint("/.pomerium/callback/"), None);
        assert_eq!(endpoint("/"), None);
    }

    #[test]
    fn nginx_reads_only_x_original_headers() {
        let headers = h(&[
            ("x-original-url", "https://app.example.com/admin?a=1"),
            ("x-original-method", "POST"),
            // Client copies of other conventions' headers are ignored.
            ("x-forwarded-uri", "/public"),
            ("x-forwarded-method", "GET"),
        ]);
        assert_eq!(
            describe(Convention::Nginx, &headers, "GET", "rampart:8081", None, "").unwrap(),
            orig("POST", "https", "app.example.com", "/admin", "a=1")
        );
        let headers = h(&[
            ("x-original-uri", "/admin/../x?q"),
            ("x-original-method", "GET"),
            ("x-forwarded-host", "app.example.com:8443"),
            ("x-forwarded-proto", "HTTP"),
        ]);
        assert_eq!(
            describe(Convention::Nginx, &headers, "GET", "", None, "").unwrap(),
            orig("GET", "http", "app.example.com:8443", "/admin/../x", "q")
        );
    }

    #[test]
    fn missing_or_bad_headers_are_named() {
        let e = describe(
            Convention::Nginx,
            &h(&[("x-original-method", "GET")]),
            "GET",
            "",
            None,
            "",
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                ForwardError::Missing {
                    header: "x-original-uri",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("proxy_set_header X-Original-URL"));
        let e = describe(
            Convention::Nginx,
            &h(&[("x-original-url", "https://a/b")]),
            "GET",
            "",
            None,
            "",
        )
        .unwrap_err();
        assert!(e.to_string().contains("x-original-method"), "{e}");
        let full = [
            ("x-forwarded-method", "GET"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "app.example.com"),
            ("x-forwarded-uri", "/public"),
        ];
        assert_eq!(
            describe(Convention::Forwarded, &h(&full), "GET", "", None, "").unwrap(),
            orig("GET", "https", "app.example.com", "/public", "")
        );
        for skip in 0..full.len() {
            let partial: Vec<_> = full
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, p)| *p)
                .collect();
            let e = describe(Convention::Forwarded, &h(&partial), "GET", "", None, "").unwrap_err();
            assert_eq!(
                e,
                ForwardError::Missing {
                    convention: "forwarded",
                    header: full[skip].0,
                    hint: FORWARDED_HINT
                }
            );
        }
        // A client copy next to the proxy's: which one is real cannot be told.
        let mut twice = full.to_vec();
        twice.push(("x-forwarded-uri", "/admin"));
        assert_eq!(
            describe(Convention::Forwarded, &h(&twice), "GET", "", None, "").unwrap_err(),
            ForwardError::Repeated {
                header: "x-forwarded-uri"
            }
        );
        let mut bad = full.to_vec();
        bad[2] = ("x-forwarded-host", "a.example.com, b.example.com");
        assert!(matches!(
            describe(Convention::Forwarded, &h(&bad), "GET", "", None, "").unwrap_err(),
            ForwardError::Invalid {
                header: "x-forwarded-host",
                ..
            }
        ));
        bad[2] = ("x-forwarded-host", "app.example.com");
        bad[3] = ("x-forwarded-uri", "http://evil/x");
        assert!(matches!(
            describe(Convention::Forwarded, &h(&bad), "GET", "", None, "").unwrap_err(),
            ForwardError::Invalid {
                header: "x-forwarded-uri",
                ..
            }
        ));
    }

    #[test]
    fn envoy_uses_the_request_itself() {
        assert_eq!(
            describe(
                Convention::Envoy,
                &h(&[]),
                "DELETE",
                "app.example.com",
                Some("/admin"),
                "a=1"
            )
            .unwrap(),
            orig("DELETE", "https", "app.example.com", "/admin", "a=1")
        );
        assert_eq!(
            describe(
                Convention::Envoy,
                &h(&[("x-forwarded-proto", "http")]),
                "GET",
                "app.example.com",
                Some("/"),
                ""
            )
            .unwrap()
            .scheme,
            "http"
        );
    }

    #[test]
    fn client_ip_skips_trusted_hops_only() {
        let nets: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(client_ip(&h(&[]), peer, &nets), peer);
        // The client wrote 1.1.1.1; the trusted proxy appended the real address.
        assert_eq!(
            client_ip(
                &h(&[("x-forwarded-for", "1.1.1.1, 203.0.113.7, 10.0.0.2")]),
                peer,
                &nets
            ),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip(&h(&[("x-forwarded-for", "1.1.1.1, junk")]), peer, &nets),
            peer
        );
    }
}
