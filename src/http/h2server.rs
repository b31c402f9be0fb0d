//! The HTTP/2 side of the TLS listener: connections that pick `h2` by ALPN are served by
//! hyper, and each request is handed to the same actix-web app as HTTP/1.1 requests. hyper
//! carries what actix-web's own HTTP/2 cannot: request trailers (into `RequestTrailers`) and
//! response trailers (from `ResponseTrailers`), which gRPC needs.

use std::cell::Cell;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use actix_http::body::{BodySize, BoxBody, MessageBody};
use actix_http::error::PayloadError;
use actix_http::{HttpMessage, Payload, Request, Response};
use actix_service::Service;
use actix_web::dev::ServiceResponse;
use bytes::Bytes;
use futures::Stream;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{sleep_until, Instant};

use super::h2client::LocalExec;
use super::http_compat::{to_actix_headers, to_http1_headers};
use super::trailers::{RequestTrailers, ResponseTrailers, TrailerSlot};

/// Open streams of one connection, and when the last one ended.
struct Activity {
    open: Cell<usize>,
    last: Cell<Instant>,
}

/// Counts one stream as open until dropped (with its response body, or its handler when the
/// client resets the stream first).
struct StreamGuard(Rc<Activity>);

impl StreamGuard {
    fn new(activity: &Rc<Activity>) -> StreamGuard {
        activity.open.set(activity.open.get() + 1);
        StreamGuard(activity.clone())
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.open.set(self.0.open.get() - 1);
        self.0.last.set(Instant::now());
    }
}

/// Serves one HTTP/2 connection until it ends, until it has had no open stream for
/// `keep_alive`, or until `shutdown` resolves; then in-flight streams finish and the
/// connection closes.
pub async fn serve<IO, S>(
    io: IO,
    peer: Option<SocketAddr>,
    certs: Option<super::tls::PeerCertificates>,
    app: Rc<S>,
    keep_alive: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + 'static,
    S: Service<Request, Response = ServiceResponse<BoxBody>, Error = actix_web::Error> + 'static,
{
    let activity = Rc::new(Activity {
        open: Cell::new(0),
        last: Cell::new(Instant::now()),
    });
    let streams = activity.clone();
    let service = hyper::service::service_fn(move |req| {
        let app = app.clone();
        let guard = StreamGuard::new(&streams);
        let certs = certs.clone();
        async move { Ok::<_, Infallible>(handle(&*app, peer, certs, req, guard).await) }
    });
    let conn = hyper::server::conn::http2::Builder::new(LocalExec)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::pin!(shutdown);
    loop {
        let idle_until = activity.last.get() + keep_alive;
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "HTTP/2 client connection ended");
                }
                return;
            }
            _ = &mut shutdown => break,
            _ = sleep_until(idle_until) => {
                if activity.open.get() == 0 && activity.last.get() + keep_alive <= Instant::now() {
                    break;
                }
            }
        }
    }
    conn.as_mut().graceful_shutdown();
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "HTTP/2 client connection ended");
    }
}

async fn handle<S>(
    app: &S,
    peer: Option<SocketAddr>,
    certs: Option<super::tls::PeerCertificates>,
    req: hyper::Request<Incoming>,
    guard: StreamGuard,
) -> hyper::Response<ResponseBody>
where
    S: Service<Request, Response = ServiceResponse<BoxBody>, Error = actix_web::Error>,
{
    let (parts, body) = req.into_parts();
    let is_head = parts.method == http::Method::HEAD;
    let trailers = TrailerSlot::default();
    let payload = RequestPayload {
        body,
        trailers: trailers.clone(),
    };
    let mut request = Request::with_payload(Payload::Stream {
        payload: Box::pin(payload) as actix_http::BoxedPayloadStream,
    });
    let head = request.head_mut();
    let (Ok(method), Ok(uri)) = (
        actix_http::Method::from_bytes(parts.method.as_str().as_bytes()),
        actix_http::Uri::try_from(parts.uri.to_string()),
    ) else {
        return plain(http::StatusCode::BAD_REQUEST, guard);
    };
    head.method = method;
    head.uri = uri;
    head.version = actix_http::Version::HTTP_2;
    head.headers = to_actix_headers(&parts.headers);
    head.peer_addr = peer;
    request.extensions_mut().insert(RequestTrailers(trailers));
    if let Some(certs) = certs {
        request.extensions_mut().insert(certs);
    }
    let response: Response<BoxBody> = match app.call(request).await {
        Ok(res) => res.into(),
        Err(e) => e.as_response_error().error_response().into(),
    };
    into_hyper(response, is_head, guard)
}

fn plain(status: http::StatusCode, guard: StreamGuard) -> hyper::Response<ResponseBody> {
    let mut res = hyper::Response::new(ResponseBody {
        body: BoxBody::new(()),
        trailers: None,
        done: false,
        _guard: guard,
    });
    *res.status_mut() = status;
    res
}

/// The actix response for hyper; a response to `HEAD` keeps its headers (and the length its
/// body would have had) but sends no body.
fn into_hyper(
    response: Response<BoxBody>,
    is_head: bool,
    guard: StreamGuard,
) -> hyper::Response<ResponseBody> {
    let trailers = response
        .extensions()
        .get::<ResponseTrailers>()
        .map(|t| t.0.clone());
    let (head, body) = response.into_parts();
    let mut headers = to_http1_headers(head.headers(), &[]);
    let body = if is_head {
        if let BodySize::Sized(n) = body.size() {
            headers
                .entry(http::header::CONTENT_LENGTH)
                .or_insert_with(|| http::HeaderValue::from(n));
        }
        ResponseBody {
            body: BoxBody::new(()),
            trailers: None,
            done: true,
            _guard: guard,
        }
    } else {
        ResponseBody {
            body,
            trailers,
            done: false,
            _guard: guard,
        }
    };
    let mut res = hyper::Response::new(body);
    *res.status_mut() = http::StatusCode::from_u16(head.status().as_u16())
        .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    *res.headers_mut() = headers;
    res
}

/// The client's request body as an actix payload; trailers go to the slot.
struct RequestPayload {
    body: Incoming,
    trailers: TrailerSlot,
}

impl Stream for RequestPayload {
    type Item = Result<Bytes, PayloadError>;

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
                Some(Err(e)) => {
                    return Poll::Ready(Some(Err(PayloadError::Io(io::Error::other(e)))))
                }
                None => return Poll::Ready(None),
            }
        }
    }
}

/// An actix response body for hyper, followed by the upstream's trailers if any arrived.
pub struct ResponseBody {
    body: BoxBody,
    trailers: Option<TrailerSlot>,
    /// The actix body has ended (it must not be polled again).
    done: bool,
    _guard: StreamGuard,
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        while !self.done {
            match ready!(Pin::new(&mut self.body).poll_next(cx)) {
                Some(Ok(data)) if data.is_empty() => continue,
                Some(Ok(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Some(Err(e)) => {
                    self.done = true;
                    return Poll::Ready(Some(Err(io::Error::other(e.to_string()).into())));
                }
                None => self.done = true,
            }
        }
        Poll::Ready(
            self.trailers
                .take()
                .and_then(|slot| slot.take())
                .map(|t| Ok(Frame::trailers(t))),
        )
    }

    fn is_end_stream(&self) -> bool {
        self.trailers.is_none()
            && (self.done || matches!(self.body.size(), BodySize::None | BodySize::Sized(0)))
    }

    fn size_hint(&self) -> SizeHint {
        match self.body.size() {
            BodySize::None => SizeHint::with_exact(0),
            BodySize::Sized(n) => SizeHint::with_exact(n),
            BodySize::Stream => SizeHint::default(),
        }
    }
}
