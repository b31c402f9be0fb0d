//! HTTP/2 to upstreams, on hyper's client: `h2c://` URLs with prior knowledge over TCP, and
//! `https://` upstreams that pick `h2` when offered `h2, http/1.1` by ALPN (an upstream that
//! picks HTTP/1.1 is remembered and served by `h1client` from then on). One multiplexed
//! connection per worker thread, upstream and TLS config, replaced when it goes away. Bodies
//! stream both ways and trailers are carried both ways (gRPC).

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use actix_web::http::header::{self, HeaderMap};
use actix_web::http::{Method, StatusCode};
use bytes::Bytes;
use futures::stream::LocalBoxStream;
use futures::{Stream, StreamExt};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;

use super::h1client::{self, Conn, SendError, Target};
use super::http_compat::{to_actix_headers, to_http1_headers};
use super::trailers::TrailerSlot;

/// Runs hyper's connection and stream tasks on the worker's single-threaded runtime.
#[derive(Clone, Copy)]
pub struct LocalExec;

impl<F> hyper::rt::Executor<F> for LocalExec
where
    F: Future + 'static,
{
    fn execute(&self, fut: F) {
        actix_web::rt::spawn(fut);
    }
}

/// What is known about an upstream on this worker.
enum Known {
    /// It answered ALPN with HTTP/1.1: `h1client` serves it.
    Http1,
    Http2(SendRequest<OutgoingBody>),
}

thread_local! {
    /// TLS config key → upstream base → what it speaks.
    static UPSTREAMS: RefCell<HashMap<u64, HashMap<String, Known>>> = RefCell::new(HashMap::new());
    /// TLS config key → the same config offering `h2, http/1.1`.
    static ALPN_H2: RefCell<HashMap<u64, Arc<ClientConfig>>> = RefCell::new(HashMap::new());
}

/// Whether a request to upstream `scheme` / `target` goes over HTTP/2: always for `h2c`,
/// for `https` unless the upstream chose HTTP/1.1 before, never for `http`.
pub fn wanted(scheme: &str, target: &Target<'_>) -> bool {
    match scheme {
        "h2c" => true,
        "https" => UPSTREAMS.with(|u| {
            !matches!(
                u.borrow()
                    .get(&target.tls_key)
                    .and_then(|m| m.get(target.base)),
                Some(Known::Http1)
            )
        }),
        _ => false,
    }
}

fn alpn_h2_config(target: &Target<'_>) -> Arc<ClientConfig> {
    ALPN_H2.with(|c| {
        c.borrow_mut()
            .entry(target.tls_key)
            .or_insert_with(|| {
                let mut cfg = (**target.tls).clone();
                cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
                Arc::new(cfg)
            })
            .clone()
    })
}

fn remember(target: &Target<'_>, known: Known) {
    UPSTREAMS.with(|u| {
        u.borrow_mut()
            .entry(target.tls_key)
            .or_default()
            .insert(target.base.to_string(), known);
    });
}

fn pooled(target: &Target<'_>) -> Option<SendRequest<OutgoingBody>> {
    UPSTREAMS.with(|u| {
        match u
            .borrow()
            .get(&target.tls_key)
            .and_then(|m| m.get(target.base))
        {
            Some(Known::Http2(s)) if !s.is_closed() => Some(s.clone()),
            _ => None,
        }
    })
}

/// A connection, or `None` when the upstream picked HTTP/1.1 by ALPN.
async fn connect(target: &Target<'_>) -> Result<Option<SendRequest<OutgoingBody>>, SendError> {
    let alpn;
    let target = if target.https {
        alpn = alpn_h2_config(target);
        Target {
            tls_key: target.tls_key,
            tls: &alpn,
            https: true,
            base: target.base,
            host: target.host,
            port: target.port,
            server_name: target.server_name,
        }
    } else {
        Target { ..*target }
    };
    let conn = h1client::connect(&target)
        .await
        .map_err(SendError::Connect)?;
    if let Conn::Tls(tls) = &conn {
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            remember(&target, Known::Http1);
            return Ok(None);
        }
    }
    let (sender, connection) = hyper::client::conn::http2::Builder::new(LocalExec)
        .handshake(TokioIo::new(conn))
        .await
        .map_err(|e| SendError::Connect(io::Error::other(e)))?;
    let base = target.base.to_string();
    actix_web::rt::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(upstream = %base, error = %e, "HTTP/2 upstream connection ended");
        }
    });
    remember(&target, Known::Http2(sender.clone()));
    Ok(Some(sender))
}

/// One request for `send`.
pub struct Request<'a> {
    pub method: &'a Method,
    pub path_and_query: &'a str,
    /// Upstream request headers (the `Host` becomes the `:authority`).
    pub headers: &'a HeaderMap,
    pub body: Option<OutgoingBody>,
    /// The client sent `te: trailers` (gRPC): passed on, the one `te` HTTP/2 allows.
    pub te_trailers: bool,
}

/// The upstream's response head; the body streams, its trailers land in `trailers`.
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub length: Option<u64>,
    pub body: LocalBoxStream<'static, Result<Bytes, io::Error>>,
    pub trailers: TrailerSlot,
}

/// What became of a request.
pub enum Sent {
    Response(Response),
    /// The upstream picked HTTP/1.1 by ALPN: send the request with `h1client`.
    UseHttp1,
}

/// Sends `req` to `target` (scheme `h2c` or `https`) over HTTP/2.
pub async fn send(target: &Target<'_>, req: Request<'_>) -> Result<Sent, SendError> {
    let (mut sender, reused) = match pooled(target) {
        Some(s) => (s, true),
        None => match connect(target).await? {
            Some(s) => (s, false),
            None => return Ok(Sent::UseHttp1),
        },
    };
    let failed = |e: hyper::Error| {
        if reused && e.is_canceled() {
            SendError::Stale(io::Error::other(e))
        } else {
            SendError::Reset(io::Error::other(e))
        }
    };
    let authority = req
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| {
            target
                .base
                .split_once("://")
                .map_or(target.base, |(_, a)| a)
                .to_string()
        });
    let scheme = if target.https { "https" } else { "http" };
    let uri = format!("{scheme}://{authority}{}", req.path_and_query);
    let method = http::Method::from_bytes(req.method.as_str().as_bytes())
        .map_err(|_| SendError::Protocol("bad method"))?;
    let mut builder = http::Request::builder()
        .method(method)
        .uri(uri)
        .version(http::Version::HTTP_2);
    if let Some(h) = builder.headers_mut() {
        *h = to_http1_headers(req.headers, &[header::HOST]);
        if req.te_trailers {
            h.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
        }
    }
    let request = builder
        .body(req.body.unwrap_or_else(OutgoingBody::empty))
        .map_err(|_| SendError::Protocol("bad request head"))?;
    if let Err(e) = sender.ready().await {
        return Err(failed(e));
    }
    let response = sender.send_request(request).await.map_err(failed)?;
    let (parts, body) = response.into_parts();
    let status = StatusCode::from_u16(parts.status.as_u16())
        .map_err(|_| SendError::Protocol("bad status code"))?;
    let length = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let trailers = TrailerSlot::default();
    Ok(Sent::Response(Response {
        status,
        headers: to_actix_headers(&parts.headers),
        length,
        body: IncomingBytes {
            body,
            trailers: trailers.clone(),
        }
        .boxed_local(),
        trailers,
    }))
}

/// A hyper body as a byte stream; its trailers go to the slot.
pub struct IncomingBytes {
    pub body: Incoming,
    pub trailers: TrailerSlot,
}

impl Stream for IncomingBytes {
    type Item = Result<Bytes, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if data.is_empty() => continue,
                    Ok(data) => return Poll::Ready(Some(Ok(data))),
                    Err(frame) => {
                        if let Ok(t) = frame.into_trailers() {
                            self.trailers.put(t);
                        }
                    }
                },
                Some(Err(e)) => return Poll::Ready(Some(Err(io::Error::other(e)))),
                None => return Poll::Ready(None),
            }
        }
    }
}

/// A request body for hyper: the client's bytes, then its trailers if any arrived.
pub struct OutgoingBody {
    stream: Option<LocalBoxStream<'static, Result<Bytes, io::Error>>>,
    trailers: Option<TrailerSlot>,
    length: Option<u64>,
}

impl OutgoingBody {
    pub fn new(
        stream: LocalBoxStream<'static, Result<Bytes, io::Error>>,
        length: Option<u64>,
        trailers: Option<TrailerSlot>,
    ) -> OutgoingBody {
        OutgoingBody {
            stream: Some(stream),
            trailers,
            length,
        }
    }

    pub fn empty() -> OutgoingBody {
        OutgoingBody {
            stream: None,
            trailers: None,
            length: Some(0),
        }
    }
}

impl Body for OutgoingBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if let Some(stream) = self.stream.as_mut() {
            loop {
                match ready!(stream.poll_next_unpin(cx)) {
                    Some(Ok(data)) if data.is_empty() => continue,
                    Some(Ok(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                    None => break,
                }
            }
            self.stream = None;
        }
        Poll::Ready(
            self.trailers
                .take()
                .and_then(|slot| slot.take())
                .map(|t| Ok(Frame::trailers(t))),
        )
    }

    fn is_end_stream(&self) -> bool {
        self.stream.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.length {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target<'a>(tls: &'a Arc<ClientConfig>, base: &'a str, https: bool) -> Target<'a> {
        Target {
            tls_key: 7,
            tls,
            https,
            base,
            host: "127.0.0.1",
            port: 1,
            server_name: None,
        }
    }

    #[test]
    fn protocol_by_scheme_and_alpn_memory() {
        let tls = Arc::new(
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        );
        assert!(wanted("h2c", &target(&tls, "h2c://a:1", false)));
        assert!(!wanted("http", &target(&tls, "http://a:1", false)));
        let https = target(&tls, "https://a:1", true);
        assert!(wanted("https", &https));
        remember(&https, Known::Http1);
        assert!(!wanted("https", &https));
        // Another upstream with the same TLS options is unaffected.
        assert!(wanted("https", &target(&tls, "https://b:1", true)));
        // The ALPN config offers h2 first and keeps the route's other options.
        let alpn = alpn_h2_config(&https);
        assert_eq!(alpn.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
        assert!(Arc::ptr_eq(&alpn, &alpn_h2_config(&https)));
    }
}
