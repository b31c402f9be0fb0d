//! The request handler: checks, interception, route lookup, upgrade refusal, authorization,
//! then proxying to an upstream (with load balancing, retries on connect failure, timeouts and
//! streaming in both directions), response headers, metrics and the access log.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::rc::Rc;
use std::sync::Arc;

use actix_web::body::{BodyStream, SizedStream};
use actix_web::dev::Payload;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode, Version};
use actix_web::{HttpMessage, HttpRequest, HttpResponse};
use futures::future::Either;
use futures::{FutureExt, StreamExt};

use super::auth::headers::query_without_session;
use super::authorize::{AuthOutcome, UpstreamIdentity};
use super::balancer::UpstreamOutcome;
use super::body::{ClientBodyError, Exchange, Expired, ResponseBody};
use super::errors::{robots_txt, ClientKind, ErrorPage, REQUEST_ID};
use super::h1client::{self, SendError};
use super::h2client;
use super::headers::{
    apply_response_header_set, ip_text, rewrite_response_headers, upstream_request_headers,
    ForwardContext,
};
use super::metrics::Metrics;
use super::request::{
    check_authority, check_header_names, host_without_port, normalize_path, request_authority,
    rewrite_path, upstream_host, without_underscore_headers,
};
use super::routes::RouteEntry;
use super::server::{ProxyState, Snapshot};
use super::trailers::{RequestTrailers, ResponseTrailers};
use super::tunnel;
use crate::config::route::Upstream;

/// An upstream's response head and body, by protocol.
enum Reply {
    Http1(h1client::Response),
    Http2(h2client::Response),
}

impl Reply {
    fn status_code(&self) -> u16 {
        match self {
            Reply::Http1(r) => r.status.as_u16(),
            Reply::Http2(r) => r.status.as_u16(),
        }
    }
}

/// What a request became, for the response headers, metrics and the access log.
struct Outcome {
    response: HttpResponse,
    route: Option<Arc<RouteEntry>>,
    /// Index of the upstream that answered (or was tried last) in the route's `to`.
    upstream: Option<usize>,
}

impl Outcome {
    fn local(response: HttpResponse) -> Outcome {
        Outcome {
            response,
            route: None,
            upstream: None,
        }
    }
}

/// The authority the client asked for: the request target's (HTTP/2 `:authority`, HTTP/1.1
/// absolute form), else the `Host` header. Routing, policy and `Host` rewriting all use it.
pub fn request_host(req: &HttpRequest) -> String {
    request_host_str(req).to_string()
}

/// `request_host`, borrowed from the request.
pub fn request_host_str(req: &HttpRequest) -> &str {
    request_authority(req.uri(), req.headers())
}

/// The protocol a request asks to switch to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeKind {
    WebSocket,
    Spdy,
    Other,
}

pub fn upgrade_kind(headers: &HeaderMap) -> Option<UpgradeKind> {
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    let upgrade = headers.get(header::UPGRADE)?.to_str().ok()?.trim();
    if !connection_upgrade {
        return None;
    }
    Some(if upgrade.eq_ignore_ascii_case("websocket") {
        UpgradeKind::WebSocket
    } else if upgrade.eq_ignore_ascii_case("spdy/3.1") {
        UpgradeKind::Spdy
    } else {
        UpgradeKind::Other
    })
}

/// Whether the request's `Upgrade` protocol is in the route's `allow_upgrades`.
pub fn upgrade_allowed(route: &crate::config::Route, headers: &HeaderMap) -> bool {
    let Some(token) = headers.get(header::UPGRADE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let token = token.trim();
    route
        .allow_upgrades
        .iter()
        .any(|a| a.eq_ignore_ascii_case(token))
}

/// The proxy as an actix service: the app's only (default) service, called with the request
/// as is (no extractors; the state is captured).
pub fn service(
    state: Arc<ProxyState>,
) -> impl actix_web::dev::ServiceFactory<
    actix_web::dev::ServiceRequest,
    Config = (),
    Response = actix_web::dev::ServiceResponse,
    Error = actix_web::Error,
    InitError = (),
> {
    actix_web::dev::fn_service(move |sr: actix_web::dev::ServiceRequest| {
        let state = state.clone();
        async move {
            let (req, payload) = sr.into_parts();
            let response = handle(&req, payload, &state).await;
            Ok(actix_web::dev::ServiceResponse::new(req, response))
        }
    })
}

/// Answers one proxied request.
pub async fn handle(req: &HttpRequest, payload: Payload, state: &ProxyState) -> HttpResponse {
    let started = std::time::Instant::now();
    // A v4 UUID from the thread-local CSPRNG: `Uuid::new_v4` makes a getrandom syscall per
    // request.
    let mut id_buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let request_id: &str = uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .hyphenated()
        .encode_lower(&mut id_buf);
    let request_id_value = HeaderValue::from_str(request_id).expect("a UUID is a header value");
    let snapshot = state.snapshot.load_full();
    let mut outcome = serve(
        req,
        payload,
        state,
        &snapshot,
        RequestIdRef {
            text: request_id,
            value: &request_id_value,
        },
    )
    .await;

    let route = outcome.route.as_ref().map(|e| &e.route);
    let headers = outcome.response.headers_mut();
    if let (Some(route), Some(_)) = (route, &outcome.upstream) {
        rewrite_response_headers(headers, &route.rewrite_response_headers);
    }
    apply_response_header_set(headers, &snapshot.response_headers, route);
    headers.insert(
        HeaderName::from_static(REQUEST_ID),
        request_id_value.clone(),
    );
    let status = outcome.response.status().as_u16();
    let route_id = route.map(|r| r.id.as_str()).unwrap_or("");
    let elapsed = started.elapsed();
    state
        .metrics
        .observe_request(outcome.route.as_ref().map(|e| &e.metrics), status, elapsed);
    let upstream = match (route, outcome.upstream) {
        (Some(r), Some(i)) => r.upstreams.get(i).map(|u| u.url.as_str()),
        _ => None,
    };
    tracing::info!(
        target: "rampart::access",
        method = %req.method(),
        host = request_host_str(req),
        path = %req.uri().path(),
        status,
        route = route_id,
        upstream = upstream.unwrap_or(""),
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        request_id,
        "request"
    );
    outcome.response
}

/// A form body for the auth layer, as UTF-8 text (`None`: over the limit, not UTF-8, or the
/// client failed).
async fn read_form_body(mut payload: Payload) -> Option<String> {
    let mut buf = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.ok()?;
        if buf.len() + chunk.len() > super::authorize::FORM_BODY_LIMIT {
            return None;
        }
        buf.extend_from_slice(&chunk);
    }
    String::from_utf8(buf).ok()
}

/// The request id as text and as the header value sent both ways.
#[derive(Clone, Copy)]
struct RequestIdRef<'a> {
    text: &'a str,
    value: &'a HeaderValue,
}

async fn serve(
    req: &HttpRequest,
    payload: Payload,
    state: &ProxyState,
    snapshot: &Snapshot,
    request_id: RequestIdRef<'_>,
) -> Outcome {
    let error = |status: StatusCode, detail: Option<&str>| {
        ErrorPage {
            status,
            request_id: request_id.text,
            detail,
        }
        .render(ClientKind::detect(req.headers()))
    };
    let rules = &snapshot.request_rules;
    if let Err(e) = check_authority(req.version(), req.uri(), req.headers()) {
        return Outcome::local(error(StatusCode::BAD_REQUEST, Some(&e.to_string())));
    }
    let client_headers = match check_header_names(req.headers(), rules.underscore_headers) {
        Ok(false) => None,
        Ok(true) => Some(without_underscore_headers(req.headers())),
        Err(e) => return Outcome::local(error(StatusCode::BAD_REQUEST, Some(&e.to_string()))),
    };
    let path = match normalize_path(req.uri().path(), &rules.path) {
        Ok(p) if p.redirect => {
            let location = match req.uri().query() {
                Some(q) => format!("{}?{q}", p.path),
                None => p.path,
            };
            return Outcome::local(
                HttpResponse::TemporaryRedirect()
                    .insert_header((header::LOCATION, location))
                    .finish(),
            );
        }
        Ok(p) => p.path,
        Err(e) => return Outcome::local(error(StatusCode::BAD_REQUEST, Some(&e.to_string()))),
    };
    if snapshot.authorizer.wants_form(req) {
        let Some(body) = Box::pin(read_form_body(payload)).await else {
            return Outcome::local(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                Some("form body too large or unreadable"),
            ));
        };
        return Outcome::local(
            match snapshot
                .authorizer
                .intercept_form(req, request_id.text, body)
            {
                Some(reply) => reply.await,
                None => error(StatusCode::NOT_FOUND, Some("route_not_found")),
            },
        );
    }
    if let Some(reply) = snapshot.authorizer.intercept(req, request_id.text) {
        return Outcome::local(reply.await);
    }
    let host_header = request_host_str(req);
    let host = host_without_port(host_header);
    let Some(entry) = snapshot
        .routes
        .find_request(
            &host,
            &path,
            req.method(),
            req.headers(),
            req.query_string(),
        )
        .cloned()
    else {
        return Outcome::local(error(StatusCode::NOT_FOUND, Some("route_not_found")));
    };
    if let Some(reply) = entry.route.cors.as_ref().and_then(|c| c.preflight(req)) {
        return Outcome {
            response: reply,
            route: Some(entry),
            upstream: None,
        };
    }
    if let Some(reply) = entry
        .route
        .return_redirect
        .as_ref()
        .and_then(|r| r.answer(&path))
    {
        return Outcome {
            response: reply,
            route: Some(entry),
            upstream: None,
        };
    }
    let upgrade = upgrade_kind(req.headers());
    // `allow_upgrades` (with allow_websockets/allow_spdy folded in) lists the tunnelled ones;
    // a websocket or SPDY upgrade not listed is refused, other unlisted ones are forwarded
    // as plain requests.
    let tunnelled = upgrade.is_some() && upgrade_allowed(&entry.route, req.headers());
    let refused = matches!(
        upgrade,
        Some(UpgradeKind::WebSocket) | Some(UpgradeKind::Spdy)
    ) && !tunnelled;
    if refused {
        return Outcome {
            response: error(
                StatusCode::FORBIDDEN,
                Some("upgrade not allowed on this route"),
            ),
            route: Some(entry),
            upstream: None,
        };
    }
    let identity = match snapshot
        .authorizer
        .authorize(req, &path, &entry, request_id.text)
        .await
    {
        AuthOutcome::Allow(identity) => identity,
        AuthOutcome::Respond(response) => {
            let denied = matches!(response.status().as_u16(), 401 | 403)
                || response.status().is_redirection();
            let mut response = if denied && req.method() == Method::GET && path == "/robots.txt" {
                robots_txt()
            } else {
                response
            };
            if let Some(c) = &entry.route.cors {
                c.decorate(req.headers(), response.headers_mut());
            }
            return Outcome {
                response,
                route: Some(entry),
                upstream: None,
            };
        }
    };
    if let Some(r) = &entry.route.redirect {
        let scheme = if state.is_secure() { "https" } else { "http" };
        let location = r.location(scheme, host_header, req.path(), req.query_string());
        let code = StatusCode::from_u16(r.code).unwrap_or(StatusCode::MOVED_PERMANENTLY);
        let response = match HeaderValue::from_str(&location) {
            Ok(v) => HttpResponse::build(code)
                .insert_header((header::LOCATION, v))
                .finish(),
            Err(_) => error(StatusCode::BAD_REQUEST, Some("bad redirect location")),
        };
        return Outcome {
            response,
            route: Some(entry),
            upstream: None,
        };
    }
    let sticky = entry
        .route
        .sticky_cookie
        .as_deref()
        .map(|name| (name, sticky_key(req, name)));
    let ctx = Forward {
        sticky_key: sticky.as_ref().map(|(_, (k, _))| k.as_str()),
        req,
        client_headers: client_headers.as_ref().unwrap_or(req.headers()),
        entry: &entry,
        identity: &identity,
        host_header,
        path: &path,
        request_id,
        snapshot,
        metrics: &state.metrics,
        proto: if state.is_secure() { "https" } else { "http" },
        body_idle_timeout: rules.body_idle_timeout,
    };
    let (response, upstream) = match upgrade {
        Some(UpgradeKind::Spdy) if tunnelled => {
            let peer = req.peer_addr();
            Box::pin(ctx.tunnel(tunnel::ClientBytes::Spdy { payload, peer })).await
        }
        // Upgrades and HTTP/2 upstreams are boxed: their futures are large, and inline they
        // would grow every request's future (allocated and moved per request).
        _ if tunnelled => Box::pin(ctx.tunnel(tunnel::ClientBytes::Payload(payload))).await,
        _ => ctx.forward(payload).await,
    };
    let mut response = response;
    if let Some((name, (key, true))) = &sticky {
        let secure = if state.is_secure() { "; Secure" } else { "" };
        if let Ok(v) = HeaderValue::from_str(&format!(
            "{name}={key}; Path=/; HttpOnly; SameSite=Lax{secure}"
        )) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    if let Some(c) = &entry.route.cors {
        c.decorate(req.headers(), response.headers_mut());
    }
    Outcome {
        response,
        route: Some(entry),
        upstream,
    }
}

/// Everything needed to send one request upstream.
struct Forward<'a> {
    req: &'a HttpRequest,
    /// The client's headers, less any dropped by `headers_with_underscores_action`.
    client_headers: &'a HeaderMap,
    entry: &'a Arc<RouteEntry>,
    identity: &'a UpstreamIdentity,
    host_header: &'a str,
    path: &'a str,
    request_id: RequestIdRef<'a>,
    snapshot: &'a Snapshot,
    metrics: &'a Arc<Metrics>,
    proto: &'static str,
    body_idle_timeout: Option<std::time::Duration>,
    /// The `sticky_cookie` value choosing the upstream.
    sticky_key: Option<&'a str>,
}

fn has_request_body(req: &HttpRequest) -> (bool, Option<u64>) {
    let headers = req.headers();
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(n) = length {
        return (n > 0, Some(n));
    }
    let chunked = headers
        .get(header::TRANSFER_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        return (true, None);
    }
    let bodiless = matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::DELETE | Method::TRACE
    );
    (req.version() == Version::HTTP_2 && !bodiless, None)
}

fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

fn routing_hash(req: &HttpRequest, sticky: Option<&str>) -> u64 {
    let mut h = DefaultHasher::new();
    if let Some(key) = sticky {
        key.hash(&mut h);
        return h.finish();
    }
    match req.headers().get("x-pomerium-routing-key") {
        Some(v) => v.as_bytes().hash(&mut h),
        None => req.peer_addr().map(|a| a.ip()).hash(&mut h),
    }
    h.finish()
}

/// The sticky-cookie key of a request: its cookie, else a new one (`true`) to set.
fn sticky_key(req: &HttpRequest, name: &str) -> (String, bool) {
    match req.cookie(name) {
        Some(c) if !c.value().is_empty() => (c.value().to_string(), false),
        _ => (uuid::Uuid::new_v4().simple().to_string(), true),
    }
}

impl Forward<'_> {
    fn error(&self, status: StatusCode, detail: &str) -> HttpResponse {
        ErrorPage {
            status,
            request_id: self.request_id.text,
            detail: Some(detail),
        }
        .render(ClientKind::detect(self.req.headers()))
    }

    fn route_id(&self) -> &str {
        &self.entry.route.id
    }

    /// Upstream request headers for upstream `up`.
    fn headers_for(&self, up: &Upstream) -> HeaderMap {
        let (host, rewritten) = upstream_host(
            &self.entry.route,
            up,
            self.host_header,
            self.client_headers,
            self.path,
        );
        let mut h = upstream_request_headers(
            self.client_headers,
            &ForwardContext {
                route: &self.entry.route,
                identity: self.identity,
                client_ip: self.req.peer_addr().map(|a| ip_text(a.ip())),
                proto: self.proto,
                original_host: self.host_header,
                upstream_host: &host,
                host_rewritten: rewritten,
                request_id: self.request_id.value,
                cookie_name: &self.snapshot.cookie_name,
            },
        );
        // The proxy answered any `Expect: 100-continue` itself.
        h.remove(header::EXPECT);
        h
    }

    /// The upstream path and query; a `pomerium_session` carrier is left out of the query.
    fn path_and_query(&self) -> String {
        let path = rewrite_path(&self.entry.route, self.path);
        match self.req.uri().query() {
            Some(q) => match query_without_session(q) {
                kept if kept.is_empty() && !q.is_empty() => path,
                kept => format!("{path}?{kept}"),
            },
            None => path,
        }
    }

    async fn forward(&self, payload: Payload) -> (HttpResponse, Option<usize>) {
        let route = &self.entry.route;
        let (has_body, length) = has_request_body(self.req);
        if let (Some(max), Some(n)) = (route.max_request_body_bytes, length) {
            if n > max {
                return (
                    self.error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
                    None,
                );
            }
        }
        let exchange = Exchange::new(has_body.then_some(payload), self.body_idle_timeout);
        exchange.set_max_body(route.max_request_body_bytes);
        let pq = self.path_and_query();
        let hash = matches!(
            route.load_balancing,
            crate::config::route::LoadBalancing::RingHash
                | crate::config::route::LoadBalancing::Maglev
        )
        .then(|| routing_hash(self.req, self.sticky_key));
        let mut last_upstream = None;
        if self.entry.balancer.overloaded() {
            return (self.overflow(), None);
        }
        let order = self.entry.balancer.order(hash);
        if order.is_empty() {
            return (self.no_healthy_upstream(), None);
        }
        let mut order = order.into_iter();
        let mut retry_same: Option<usize> = None;
        let mut retried = false;
        while let Some(index) = retry_same.take().or_else(|| order.next()) {
            let up = &route.upstreams[index];
            last_upstream = Some(index);
            let target = h1client::Target::new(self.entry, up);
            let headers = self.headers_for(up);
            let in_flight = self.entry.balancer.begin(index);
            let body = || {
                exchange.has_body().then(|| h1client::OutgoingBody {
                    stream: exchange.request_body(),
                    length,
                })
            };
            let send = if h2client::wanted(up.scheme, &target) {
                Either::Left(Box::pin(
                    self.send_h2(&target, &pq, &headers, &exchange, length),
                ))
            } else {
                let sent = h1client::send(&target, self.req.method(), &pq, &headers, body());
                Either::Right(sent.map(|r| r.map(Reply::Http1)))
            };
            let expired = exchange.expired(route.timeout, route.idle_timeout);
            let result = tokio::select! {
                biased;
                sent = send => Either::Left(sent),
                why = expired => Either::Right(why),
            };
            match result {
                Either::Left(Ok(resp)) => {
                    self.entry
                        .balancer
                        .record(index, UpstreamOutcome::Status(resp.status_code()));
                    return (
                        self.response(resp, exchange.clone(), in_flight),
                        last_upstream,
                    );
                }
                Either::Left(Err(SendError::Connect(e))) => {
                    tracing::warn!(route = %route.id, upstream = %up.url, error = %e, "upstream connect failed");
                    self.entry.balancer.mark_failed(index);
                    self.entry
                        .balancer
                        .record(index, UpstreamOutcome::ConnectFailure);
                    self.metrics.upstream_error(self.route_id(), "connect");
                    if exchange.started() {
                        break;
                    }
                }
                Either::Left(Err(SendError::Stale(e)))
                    if !retried && !exchange.started() && idempotent(self.req.method()) =>
                {
                    // A pooled connection the upstream had just closed: try once more.
                    tracing::debug!(route = %route.id, upstream = %up.url, error = %e, "retrying on a fresh connection");
                    retried = true;
                    retry_same = Some(index);
                }
                Either::Left(Err(e)) if exchange.client_error().is_some() => {
                    // The client's body failed (malformed, cut off or idle): its fault, not
                    // the upstream's.
                    let (status, detail) = match exchange.client_error() {
                        Some(ClientBodyError::Idle) => {
                            (StatusCode::REQUEST_TIMEOUT, "request_body_idle_timeout")
                        }
                        Some(ClientBodyError::TooLarge) => {
                            (StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
                        }
                        _ => (StatusCode::BAD_REQUEST, "invalid request body"),
                    };
                    tracing::info!(route = %route.id, error = %e, detail, "client request body failed");
                    return (self.error(status, detail), last_upstream);
                }
                Either::Left(Err(e)) => {
                    let (status, kind, detail) = match &e {
                        SendError::Protocol(_) => (
                            StatusCode::BAD_GATEWAY,
                            "protocol",
                            "upstream protocol error",
                        ),
                        _ => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "reset",
                            "upstream_reset_before_response_started{connection_termination}",
                        ),
                    };
                    tracing::warn!(route = %route.id, upstream = %up.url, error = %e, "upstream request failed");
                    self.entry
                        .balancer
                        .record(index, UpstreamOutcome::ConnectFailure);
                    self.metrics.upstream_error(self.route_id(), kind);
                    return (self.error(status, detail), last_upstream);
                }
                Either::Right(why) => {
                    let (kind, detail) = match why {
                        Expired::Timeout => ("timeout", "upstream_response_timeout"),
                        Expired::Idle => ("idle_timeout", "stream_idle_timeout"),
                    };
                    self.metrics.upstream_error(self.route_id(), kind);
                    return (
                        self.error(StatusCode::GATEWAY_TIMEOUT, detail),
                        last_upstream,
                    );
                }
            }
        }
        (
            self.error(
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream_reset_before_response_started{connection_failure}",
            ),
            last_upstream,
        )
    }

    /// Sends the request over HTTP/2 (`h2c`, or `https` unless the upstream picks HTTP/1.1 by
    /// ALPN, then over `h1client`).
    async fn send_h2(
        &self,
        target: &h1client::Target<'_>,
        pq: &str,
        headers: &HeaderMap,
        exchange: &Rc<Exchange>,
        length: Option<u64>,
    ) -> Result<Reply, SendError> {
        let trailers = self
            .req
            .extensions()
            .get::<RequestTrailers>()
            .map(|t| t.0.clone());
        let body = exchange.has_body().then(|| {
            let stream = exchange
                .request_body()
                .map(|r| r.map_err(|e| std::io::Error::other(e.to_string())))
                .boxed_local();
            h2client::OutgoingBody::new(stream, length, trailers)
        });
        let te_trailers = self
            .req
            .headers()
            .get_all(header::TE)
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("trailers"));
        let request = h2client::Request {
            method: self.req.method(),
            path_and_query: pq,
            headers,
            body,
            te_trailers,
        };
        match h2client::send(target, request).await? {
            h2client::Sent::Response(resp) => Ok(Reply::Http2(resp)),
            h2client::Sent::UseHttp1 => {
                let body = exchange.has_body().then(|| h1client::OutgoingBody {
                    stream: exchange.request_body(),
                    length,
                });
                h1client::send(target, self.req.method(), pq, headers, body)
                    .await
                    .map(Reply::Http1)
            }
        }
    }

    fn response(
        &self,
        mut reply: Reply,
        exchange: Rc<Exchange>,
        in_flight: super::balancer::InFlight,
    ) -> HttpResponse {
        if let Reply::Http1(r) = &mut reply {
            // The whole body came with the head: nothing left to wait for, so no timers or
            // streaming (the upstream exchange, and its in-flight count, ends here).
            if let Some(body) = r.body.take_complete() {
                let mut response = HttpResponse::with_body(r.status, body).map_into_boxed_body();
                *response.headers_mut() = std::mem::take(&mut r.headers);
                return response;
            }
        }
        let route = &self.entry.route;
        let deadline = route.timeout.map(|t| {
            exchange
                .deadline(Some(t))
                .unwrap_or_else(|| tokio::time::Instant::now() + t)
        });
        let metrics = self.metrics.clone();
        let entry = self.entry.clone();
        let on_expire = Box::new(move |why: Expired| {
            let kind = match why {
                Expired::Timeout => "timeout",
                Expired::Idle => "idle_timeout",
            };
            tracing::warn!(route = %entry.route.id, kind, "upstream response cut");
            metrics.upstream_error(&entry.route.id, kind);
        });
        let (status, headers, length, body, trailers) = match reply {
            Reply::Http1(r) => (r.status, r.headers, r.length, r.body.boxed_local(), None),
            Reply::Http2(r) => (r.status, r.headers, r.length, r.body, Some(r.trailers)),
        };
        let body = ResponseBody::new(
            body,
            exchange,
            deadline,
            route.idle_timeout,
            Some(in_flight),
            Some(on_expire),
        );
        let mut response = match length {
            Some(n) => {
                HttpResponse::with_body(status, SizedStream::new(n, body)).map_into_boxed_body()
            }
            None => HttpResponse::with_body(status, BodyStream::new(body)).map_into_boxed_body(),
        };
        *response.headers_mut() = headers;
        if let Some(trailers) = trailers {
            response.extensions_mut().insert(ResponseTrailers(trailers));
        }
        response
    }

    /// Health checks or outlier detection left no upstream (and the panic threshold is not
    /// reached): Envoy's `no healthy upstream` 503.
    fn no_healthy_upstream(&self) -> HttpResponse {
        self.metrics
            .upstream_error(self.route_id(), "no_healthy_upstream");
        self.error(StatusCode::SERVICE_UNAVAILABLE, "no_healthy_upstream")
    }

    /// The route's `circuit_breaker_thresholds` limit is reached: Envoy's overflow 503.
    fn overflow(&self) -> HttpResponse {
        self.metrics.upstream_error(self.route_id(), "overflow");
        let mut resp = self.error(
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream_reset_before_response_started{overflow}",
        );
        resp.headers_mut().insert(
            HeaderName::from_static("x-envoy-overloaded"),
            HeaderValue::from_static("true"),
        );
        resp
    }

    /// Upgrade requests (`allow_upgrades`): a raw byte tunnel after the upstream's 101.
    async fn tunnel(&self, client: tunnel::ClientBytes) -> (HttpResponse, Option<usize>) {
        let route = &self.entry.route;
        let pq = self.path_and_query();
        let mut last_upstream = None;
        if self.entry.balancer.overloaded() {
            return (self.overflow(), None);
        }
        let order = self.entry.balancer.order(None);
        if order.is_empty() {
            return (self.no_healthy_upstream(), None);
        }
        for index in order {
            let up = &route.upstreams[index];
            last_upstream = Some(index);
            let io = match tunnel::connect(self.entry, up).await {
                Ok(io) => io,
                Err(e) => {
                    tracing::warn!(route = %route.id, upstream = %up.url, error = %e, "upstream connect failed");
                    self.entry.balancer.mark_failed(index);
                    self.entry
                        .balancer
                        .record(index, UpstreamOutcome::ConnectFailure);
                    self.metrics.upstream_error(self.route_id(), "connect");
                    continue;
                }
            };
            let mut headers = self.headers_for(up);
            if let Some(v) = self.req.headers().get(header::UPGRADE) {
                headers.insert(header::UPGRADE, v.clone());
            }
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            return match tunnel::open(
                io,
                self.req.method().as_str(),
                &pq,
                &headers,
                client,
                route.idle_timeout,
            )
            .await
            {
                Ok(resp) => (resp, last_upstream),
                Err(e) => {
                    tracing::warn!(route = %route.id, upstream = %up.url, error = %e, "upgrade handshake failed");
                    self.metrics.upstream_error(self.route_id(), "protocol");
                    (
                        self.error(StatusCode::BAD_GATEWAY, "upstream protocol error"),
                        last_upstream,
                    )
                }
            };
        }
        (
            self.error(
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream_reset_before_response_started{connection_failure}",
            ),
            last_upstream,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// actix-web allocates and moves every request's handler future: rarely used paths
    /// (upgrades, HTTP/2 upstreams, form posts) are boxed so they do not grow it.
    #[test]
    fn the_request_future_stays_small() {
        let req = actix_web::test::TestRequest::default().to_http_request();
        let state = ProxyState::new(Metrics::new(), false);
        let snapshot = Snapshot::empty();
        let id = HeaderValue::from_static("x");
        let request_id = RequestIdRef {
            text: "x",
            value: &id,
        };
        let fut = serve(&req, Payload::None, &state, &snapshot, request_id);
        let size = std::mem::size_of_val(&fut);
        assert!(
            size <= 3000,
            "serve future is {size} bytes (unoptimised build)"
        );
    }
}
