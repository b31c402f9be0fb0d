//! gRPC and gRPC-web through the real `rampart` binary: tonic servers on loopback as `h2c://`
//! and HTTPS (ALPN h2) upstreams, a tonic client over TLS HTTP/2 through the proxy (unary,
//! server, client and bidi streaming, error statuses in trailers), request and response
//! trailers both ways, gRPC-web to a tonic-web upstream, an HTTPS upstream that picks
//! HTTP/1.1, and SPDY upgrades carrying data both ways.

mod support;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;
use tonic::codegen::Service;
use tonic::{Code, Status};
use tonic_prost::ProstCodec;

#[derive(Clone, PartialEq, prost::Message)]
struct Msg {
    #[prost(string, tag = "1")]
    text: String,
}

fn msg(text: impl Into<String>) -> Msg {
    Msg { text: text.into() }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type MsgStream = Pin<Box<dyn Stream<Item = Result<Msg, Status>> + Send>>;

/// A tower service from a closure (tonic's per-method service traits are blanket-implemented
/// for tower services).
struct Handler<F>(F);

impl<F, R, Fut, T> Service<R> for Handler<F>
where
    F: FnMut(R) -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    type Response = T;
    type Error = Status;
    type Future = Fut;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: R) -> Fut {
        (self.0)(req)
    }
}

/// The test service `test.Echo`, written as tonic-build would generate it, plus a raw route
/// that echoes request trailers back as response trailers.
#[derive(Clone)]
struct Echo;

fn codec() -> ProstCodec<Msg, Msg> {
    ProstCodec::default()
}

impl<B> Service<http::Request<B>> for Echo
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(codec());
            let resp = match req.uri().path() {
                "/test.Echo/Unary" => {
                    let unary = Handler(|r: tonic::Request<Msg>| async move {
                        let from = r
                            .metadata()
                            .get("x-from-client")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        let mut resp = tonic::Response::new(msg(format!(
                            "{}|{from}",
                            r.into_inner().text.to_uppercase()
                        )));
                        resp.metadata_mut()
                            .insert("x-from-server", "yes".parse().unwrap());
                        Ok(resp)
                    });
                    grpc.unary(unary, req).await
                }
                "/test.Echo/Fail" => {
                    let fail = Handler(|_: tonic::Request<Msg>| async {
                        Err::<tonic::Response<Msg>, _>(Status::permission_denied("nope"))
                    });
                    grpc.unary(fail, req).await
                }
                "/test.Echo/Count" => {
                    let count = Handler(|r: tonic::Request<Msg>| async move {
                        let n: usize = r.into_inner().text.parse().unwrap_or(0);
                        let items = (0..n).map(|i| Ok(msg(format!("item-{i}"))));
                        let fail = (n == 2).then(|| Err(Status::aborted("midway")));
                        let s: MsgStream = Box::pin(futures::stream::iter(items.chain(fail)));
                        Ok(tonic::Response::new(s))
                    });
                    grpc.server_streaming(count, req).await
                }
                "/test.Echo/Join" => {
                    let join = Handler(|r: tonic::Request<tonic::Streaming<Msg>>| async move {
                        let mut parts = Vec::new();
                        let mut s = r.into_inner();
                        while let Some(m) = s.next().await {
                            parts.push(m?.text);
                        }
                        Ok(tonic::Response::new(msg(parts.join(","))))
                    });
                    grpc.client_streaming(join, req).await
                }
                "/test.Echo/Chat" => {
                    let chat = Handler(|r: tonic::Request<tonic::Streaming<Msg>>| async move {
                        let s: MsgStream = Box::pin(
                            r.into_inner()
                                .map(|m| m.map(|m| msg(format!("echo:{}", m.text)))),
                        );
                        Ok(tonic::Response::new(s))
                    });
                    grpc.streaming(chat, req).await
                }
                "/raw/trailers" => raw_trailers(req).await,
                _ => Status::unimplemented("no such method").into_http(),
            };
            Ok(resp)
        })
    }
}

/// Reads the whole body and answers it with the request trailers' `x-client-trailer` as the
/// response trailer `x-echoed-trailer`.
async fn raw_trailers<B>(req: http::Request<B>) -> http::Response<tonic::body::Body>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError> + Send + 'static,
{
    let saw_te = req
        .headers()
        .get("te")
        .cloned()
        .unwrap_or_else(|| http::HeaderValue::from_static("none"));
    let collected = match req.into_body().collect().await {
        Ok(c) => c,
        Err(_) => return Status::internal("body").into_http(),
    };
    let got = collected
        .trailers()
        .and_then(|t| t.get("x-client-trailer"))
        .cloned()
        .unwrap_or_else(|| http::HeaderValue::from_static("none"));
    let body_len = collected.to_bytes().len();
    let mut trailers = http::HeaderMap::new();
    trailers.insert("x-echoed-trailer", got);
    let frames: Vec<Result<http_body::Frame<Bytes>, Infallible>> = vec![
        Ok(http_body::Frame::data(Bytes::from(format!(
            "got {body_len} bytes"
        )))),
        Ok(http_body::Frame::trailers(trailers)),
    ];
    let body = http_body_util::StreamBody::new(futures::stream::iter(frames));
    let mut resp = http::Response::new(tonic::body::Body::new(body));
    resp.headers_mut().insert("x-saw-te", saw_te);
    resp
}

fn server_tls(leaf: &Leaf, alpn: &[&[u8]]) -> tokio_rustls::TlsAcceptor {
    let mut cfg = leaf.server_config();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
}

/// Serves `svc` over HTTP/2 (TLS with ALPN h2 when `tls` is given, else h2c) on loopback.
async fn serve_h2<S>(svc: S, tls: Option<tokio_rustls::TlsAcceptor>) -> SocketAddr
where
    S: Service<http::Request<hyper::body::Incoming>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    serve_h2_for(svc, tls, None).await
}

/// `serve_h2`, dropping each connection after `lifetime` when given.
async fn serve_h2_for<S>(
    svc: S,
    tls: Option<tokio_rustls::TlsAcceptor>,
    lifetime: Option<std::time::Duration>,
) -> SocketAddr
where
    S: Service<http::Request<hyper::body::Incoming>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let svc = svc.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| svc.clone().call(req));
                let builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                let lifetime = lifetime.unwrap_or(std::time::Duration::from_secs(3600));
                let _ = match tls {
                    Some(acceptor) => {
                        let Ok(io) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let conn = builder.serve_connection(TokioIo::new(io), service);
                        tokio::time::timeout(lifetime, conn).await.ok()
                    }
                    None => {
                        let conn = builder.serve_connection(TokioIo::new(tcp), service);
                        tokio::time::timeout(lifetime, conn).await.ok()
                    }
                };
            });
        }
    });
    addr
}

/// Serves `svc` over HTTP/1.1 on loopback (gRPC-web), with TLS offering only `http/1.1` when
/// `tls` is given.
async fn serve_h1<S>(svc: S, tls: Option<tokio_rustls::TlsAcceptor>) -> SocketAddr
where
    S: Service<http::Request<hyper::body::Incoming>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let svc = svc.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| svc.clone().call(req));
                let builder = hyper::server::conn::http1::Builder::new();
                let _ = match tls {
                    Some(acceptor) => {
                        let Ok(io) = acceptor.accept(tcp).await else {
                            return;
                        };
                        builder.serve_connection(TokioIo::new(io), service).await
                    }
                    None => builder.serve_connection(TokioIo::new(tcp), service).await,
                };
            });
        }
    });
    addr
}

/// A tonic transport: one HTTP/2 connection over TLS to the proxy.
#[derive(Clone)]
struct H2Channel(hyper::client::conn::http2::SendRequest<tonic::body::Body>);

impl Service<http::Request<tonic::body::Body>> for H2Channel {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future = BoxFuture<Result<Self::Response, hyper::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.0.send_request(req))
    }
}

/// TLS to the proxy for `host`, offering only h2.
async fn tls_to_proxy(
    ca_pem: &str,
    proxy: SocketAddr,
    host: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    tls_to_proxy_alpn(ca_pem, proxy, host, b"h2").await
}

async fn tls_to_proxy_alpn(
    ca_pem: &str,
    proxy: SocketAddr,
    host: &str,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    let tcp = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(host.to_string().try_into().unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn));
    tls
}

async fn h2_to_proxy<B>(
    ca_pem: &str,
    proxy: SocketAddr,
    host: &str,
) -> hyper::client::conn::http2::SendRequest<B>
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let tls = tls_to_proxy(ca_pem, proxy, host).await;
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

async fn grpc_client(
    ca_pem: &str,
    proxy: SocketAddr,
    host: &str,
) -> tonic::client::Grpc<H2Channel> {
    let sender = h2_to_proxy(ca_pem, proxy, host).await;
    let origin: http::Uri = format!("https://{host}:{}", proxy.port()).parse().unwrap();
    tonic::client::Grpc::with_origin(H2Channel(sender), origin)
}

fn path(p: &'static str) -> http::uri::PathAndQuery {
    http::uri::PathAndQuery::from_static(p)
}

/// Every kind of gRPC call through the proxy to `host`'s upstream.
async fn exercise_grpc(ca_pem: &str, proxy: SocketAddr, host: &str) {
    let mut client = grpc_client(ca_pem, proxy, host).await;

    // Unary, with metadata both ways.
    client.ready().await.unwrap();
    let mut req = tonic::Request::new(msg("hello"));
    req.metadata_mut()
        .insert("x-from-client", "c1".parse().unwrap());
    let resp = client
        .unary(req, path("/test.Echo/Unary"), codec())
        .await
        .unwrap();
    assert_eq!(resp.metadata().get("x-from-server").unwrap(), "yes");
    assert_eq!(resp.into_inner().text, "HELLO|c1", "{host}");

    // An error status (a trailers-only response).
    client.ready().await.unwrap();
    let err = client
        .unary(
            tonic::Request::new(msg("x")),
            path("/test.Echo/Fail"),
            codec(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert_eq!(err.message(), "nope");

    // Server streaming; the status arrives in the trailers after the messages.
    client.ready().await.unwrap();
    let resp = client
        .server_streaming(
            tonic::Request::new(msg("3")),
            path("/test.Echo/Count"),
            codec(),
        )
        .await
        .unwrap();
    let mut stream = resp.into_inner();
    let mut got = Vec::new();
    while let Some(m) = stream.message().await.unwrap() {
        got.push(m.text);
    }
    assert_eq!(got, ["item-0", "item-1", "item-2"]);
    let trailers = stream.trailers().await.unwrap().unwrap();
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");

    // An error after data: the status comes in the trailers.
    client.ready().await.unwrap();
    let resp = client
        .server_streaming(
            tonic::Request::new(msg("2")),
            path("/test.Echo/Count"),
            codec(),
        )
        .await
        .unwrap();
    let mut stream = resp.into_inner();
    assert_eq!(stream.message().await.unwrap().unwrap().text, "item-0");
    assert_eq!(stream.message().await.unwrap().unwrap().text, "item-1");
    let err = stream.message().await.unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "{err:?}");
    assert_eq!(err.message(), "midway");

    // Client streaming.
    client.ready().await.unwrap();
    let parts = futures::stream::iter(["a", "b", "c"].map(msg));
    let resp = client
        .client_streaming(tonic::Request::new(parts), path("/test.Echo/Join"), codec())
        .await
        .unwrap();
    assert_eq!(resp.into_inner().text, "a,b,c");

    // Bidi streaming, interleaved: each reply arrives before the next message is sent.
    client.ready().await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel::<Msg>(1);
    let outgoing =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    tx.send(msg("one")).await.unwrap();
    let resp = client
        .streaming(
            tonic::Request::new(outgoing),
            path("/test.Echo/Chat"),
            codec(),
        )
        .await
        .unwrap();
    let mut incoming = resp.into_inner();
    assert_eq!(incoming.message().await.unwrap().unwrap().text, "echo:one");
    tx.send(msg("two")).await.unwrap();
    assert_eq!(incoming.message().await.unwrap().unwrap().text, "echo:two");
    drop(tx);
    assert!(incoming.message().await.unwrap().is_none());
}

/// Request trailers reach the upstream and response trailers reach the client.
async fn exercise_raw_trailers(ca_pem: &str, proxy: SocketAddr, host: &str) {
    type Frames = http_body_util::StreamBody<
        futures::stream::Iter<std::vec::IntoIter<Result<http_body::Frame<Bytes>, Infallible>>>,
    >;
    let mut sender = h2_to_proxy::<Frames>(ca_pem, proxy, host).await;
    let mut trailers = http::HeaderMap::new();
    trailers.insert("x-client-trailer", http::HeaderValue::from_static("t-1"));
    let frames = vec![
        Ok(http_body::Frame::data(Bytes::from_static(b"0123456789"))),
        Ok(http_body::Frame::trailers(trailers)),
    ];
    let req = http::Request::post(format!("https://{host}:{}/raw/trailers", proxy.port()))
        .header("te", "trailers")
        .body(http_body_util::StreamBody::new(futures::stream::iter(
            frames,
        )))
        .unwrap();
    sender.ready().await.unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    // `te: trailers` reaches HTTP/2 upstreams (the one `te` HTTP/2 allows).
    assert_eq!(resp.headers()["x-saw-te"], "trailers");
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("response trailers");
    assert_eq!(collected.to_bytes(), "got 10 bytes");
    assert_eq!(trailers.get("x-echoed-trailer").unwrap(), "t-1");
}

/// A gRPC-web frame: flag byte, big-endian length, payload.
fn grpc_web_frame(flag: u8, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + payload.len());
    b.put_u8(flag);
    b.put_u32(payload.len() as u32);
    b.put_slice(payload);
    b.freeze()
}

/// The messages and the trailer block of a gRPC-web response body.
fn parse_grpc_web(mut body: Bytes) -> (Vec<Msg>, String) {
    let mut msgs = Vec::new();
    let mut trailers = String::new();
    while body.remaining() >= 5 {
        let flag = body.get_u8();
        let len = body.get_u32() as usize;
        let payload = body.split_to(len);
        if flag & 0x80 != 0 {
            trailers.push_str(std::str::from_utf8(&payload).unwrap());
        } else {
            msgs.push(<Msg as prost::Message>::decode(payload).unwrap());
        }
    }
    (msgs, trailers)
}

/// Prints the proxy's log when the test fails.
struct LogOnPanic<'a>(&'a Proxy);

impl Drop for LogOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("proxy log:\n{}", self.0.log());
        }
    }
}

fn proxy_config(routes: &str) -> (Ca, Proxy) {
    proxy_config_with(routes, "")
}

fn proxy_config_with(routes: &str, extra: &str) -> (Ca, Proxy) {
    let ca = Ca::new("test CA");
    let proxy = Proxy::start_tls(
        &ca,
        &["*.example.com"],
        &format!("{extra}routes:\n{routes}"),
    );
    (ca, proxy)
}

#[tokio::test]
async fn grpc_over_h2c_and_tls_h2_upstreams_with_trailers_both_ways() {
    let h2c = serve_h2(Echo, None).await;
    let upstream_ca = Ca::new("upstream CA");
    let upstream_leaf = upstream_ca.leaf(&["grpc.internal"]);
    let tls = serve_h2(Echo, Some(server_tls(&upstream_leaf, &[b"h2"]))).await;
    let ca_dir = tempfile::tempdir().unwrap();
    let ca_path = ca_dir.path().join("upstream-ca.pem");
    std::fs::write(&ca_path, &upstream_ca.pem).unwrap();
    let routes = format!(
        "  - {{from: https://grpc.example.com, to: h2c://{h2c}, allow_public_unauthenticated_access: true}}
  - {{from: https://grpcs.example.com, to: 'https://{tls}', tls_custom_ca_file: {ca}, tls_server_name: grpc.internal, allow_public_unauthenticated_access: true}}
",
        ca = ca_path.display()
    );
    let (ca, proxy) = proxy_config(&routes);
    let _log = LogOnPanic(&proxy);

    exercise_grpc(&ca.pem, proxy.addr(), "grpc.example.com").await;
    exercise_raw_trailers(&ca.pem, proxy.addr(), "grpc.example.com").await;
    exercise_grpc(&ca.pem, proxy.addr(), "grpcs.example.com").await;
    exercise_raw_trailers(&ca.pem, proxy.addr(), "grpcs.example.com").await;

    // Many calls share one connection per upstream: concurrent unary calls all succeed.
    let client = grpc_client(&ca.pem, proxy.addr(), "grpc.example.com").await;
    let calls = (0..20).map(|i| {
        let mut client = client.clone();
        async move {
            client.ready().await.unwrap();
            client
                .unary(
                    tonic::Request::new(msg(format!("c{i}"))),
                    path("/test.Echo/Unary"),
                    codec(),
                )
                .await
                .unwrap()
                .into_inner()
                .text
        }
    });
    let got = futures::future::join_all(calls).await;
    for (i, text) in got.iter().enumerate() {
        assert_eq!(text, &format!("C{i}|"));
    }
    let log = proxy.log();
    assert!(log.contains("upstream=\"h2c://"), "{log}");
}

#[tokio::test]
async fn grpc_web_through_a_route() {
    let web = serve_h1(
        tower_layer::Layer::layer(&tonic_web::GrpcWebLayer::new(), Echo),
        None,
    )
    .await;
    let web_h2c = serve_h2(
        tower_layer::Layer::layer(&tonic_web::GrpcWebLayer::new(), Echo),
        None,
    )
    .await;
    let routes = format!(
        "  - {{from: https://web.example.com, to: http://{web}, allow_public_unauthenticated_access: true}}
  - {{from: https://webh2.example.com, to: h2c://{web_h2c}, allow_public_unauthenticated_access: true}}
"
    );
    let (ca, proxy) = proxy_config(&routes);
    let _log = LogOnPanic(&proxy);
    let client = https_client(
        &ca.pem,
        proxy.addr(),
        &["web.example.com", "webh2.example.com"],
    );
    for host in ["web.example.com", "webh2.example.com"] {
        let payload = prost::Message::encode_to_vec(&msg("web"));
        let resp = client
            .post(format!("https://{host}:{}/test.Echo/Unary", proxy.port))
            .header("content-type", "application/grpc-web+proto")
            .header("x-grpc-web", "1")
            .header("x-from-client", "w")
            .body(grpc_web_frame(0, &payload))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{host}");
        assert_eq!(
            resp.headers()["content-type"],
            "application/grpc-web+proto",
            "{host}"
        );
        let (msgs, trailers) = parse_grpc_web(resp.bytes().await.unwrap());
        assert_eq!(msgs, [msg("WEB|w")], "{host}");
        assert!(trailers.contains("grpc-status:0"), "{host}: {trailers:?}");

        // An error status travels in the gRPC-web trailer block (or the headers).
        let resp = client
            .post(format!("https://{host}:{}/test.Echo/Fail", proxy.port))
            .header("content-type", "application/grpc-web+proto")
            .header("x-grpc-web", "1")
            .body(grpc_web_frame(0, &payload))
            .send()
            .await
            .unwrap();
        let status_header = resp
            .headers()
            .get("grpc-status")
            .map(|v| v.to_str().unwrap().to_string());
        let (_, trailers) = parse_grpc_web(resp.bytes().await.unwrap());
        assert!(
            status_header.as_deref() == Some("7") || trailers.contains("grpc-status:7"),
            "{host}: {status_header:?} {trailers:?}"
        );
    }
}

/// An HTTPS upstream that answers ALPN with HTTP/1.1 keeps being served over HTTP/1.1.
#[tokio::test]
async fn https_upstream_choosing_http1_by_alpn() {
    let upstream_ca = Ca::new("upstream CA");
    let leaf = upstream_ca.leaf(&["h1.internal"]);
    let up = serve_h1(Echo, Some(server_tls(&leaf, &[b"http/1.1"]))).await;
    let ca_dir = tempfile::tempdir().unwrap();
    let ca_path = ca_dir.path().join("upstream-ca.pem");
    std::fs::write(&ca_path, &upstream_ca.pem).unwrap();
    let routes = format!(
        "  - {{from: https://h1.example.com, to: 'https://{up}', tls_custom_ca_file: {ca}, tls_server_name: h1.internal, allow_public_unauthenticated_access: true}}
",
        ca = ca_path.display()
    );
    let (ca, proxy) = proxy_config(&routes);
    let _log = LogOnPanic(&proxy);
    let client = https_client(
        &ca.pem,
        proxy.addr(),
        &["h1.example.com", "nowhere.example.com"],
    );
    // The first request finds out (ALPN), the next ones go straight to HTTP/1.1.
    for _ in 0..6 {
        let resp = client
            .post(format!(
                "https://h1.example.com:{}/raw/trailers",
                proxy.port
            ))
            .body("abc")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), "got 3 bytes");
    }
    // HEAD over HTTP/2 from the client: headers, no body (proxied and local answers).
    let resp = client
        .head(format!(
            "https://h1.example.com:{}/raw/trailers",
            proxy.port
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.unwrap().is_empty());
    let resp = client
        .head(format!("https://nowhere.example.com:{}/", proxy.port))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert!(resp.bytes().await.unwrap().is_empty());
}

/// Reads from `io` until `buf` holds a complete head (`\r\n\r\n`); returns its length.
async fn read_head<R: tokio::io::AsyncRead + Unpin>(io: &mut R, buf: &mut Vec<u8>) -> usize {
    use tokio::io::AsyncReadExt;
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = io.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "closed before the head: {:?}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// An upstream that switches to SPDY/3.1, greets, then echoes every byte.
async fn spdy_upstream() -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let end = read_head(&mut tcp, &mut buf).await;
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                assert!(head.contains("upgrade: spdy/3.1"), "{head}");
                tcp.write_all(
                    b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\nhello from upstream\n",
                )
                .await
                .unwrap();
                tcp.write_all(&buf[end..]).await.unwrap();
                let mut chunk = [0u8; 4096];
                loop {
                    match tcp.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if tcp.write_all(&chunk[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

/// `allow_spdy`: after the upstream's 101, bytes flow both ways.
#[tokio::test]
async fn spdy_upgrade_carries_data_both_ways() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = spdy_upstream().await;
    let routes = format!(
        "  - {{from: https://spdy.example.com, to: http://{up}, allow_spdy: true, allow_public_unauthenticated_access: true}}
"
    );
    let (ca, proxy) = proxy_config(&routes);
    let _log = LogOnPanic(&proxy);
    let mut tls = tls_to_proxy_alpn(&ca.pem, proxy.addr(), "spdy.example.com", b"http/1.1").await;
    tls.write_all(
        b"POST /api/v1/namespaces/default/pods/p/exec HTTP/1.1\r\nHost: spdy.example.com\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\nContent-Length: 0\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let end = read_head(&mut tls, &mut buf).await;
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: spdy/3.1"),
        "{head}"
    );
    let mut got = buf[end..].to_vec();
    let greeting = b"hello from upstream\n";
    while got.len() < greeting.len() {
        let mut chunk = [0u8; 1024];
        let n = tls.read(&mut chunk).await.unwrap();
        assert!(n > 0);
        got.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(&got[..], greeting);
    for i in 0..3 {
        let line = format!("client says {i}\n");
        tls.write_all(line.as_bytes()).await.unwrap();
        let mut echoed = vec![0u8; line.len()];
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            tls.read_exact(&mut echoed),
        )
        .await
        .expect("the client's bytes reach the upstream and come back")
        .unwrap();
        assert_eq!(echoed, line.as_bytes());
    }
}

/// HTTP/2 client connections close after `timeout_idle` without an open stream, never during
/// one; an upstream that cannot be reached is a gRPC `UNAVAILABLE`; an HTTP/2 upstream
/// connection that went away is replaced.
#[tokio::test]
async fn http2_client_idle_close_and_unreachable_upstream() {
    let h2c = serve_h2(Echo, None).await;
    let down = free_port();
    let flaky = serve_h2_for(Echo, None, Some(std::time::Duration::from_millis(300))).await;
    let routes = format!(
        "  - {{from: https://grpc.example.com, to: h2c://{h2c}, timeout: 0s, allow_public_unauthenticated_access: true}}
  - {{from: https://down.example.com, to: h2c://127.0.0.1:{down}, allow_public_unauthenticated_access: true}}
  - {{from: https://flaky.example.com, to: h2c://{flaky}, allow_public_unauthenticated_access: true}}
"
    );
    let (ca, proxy) = proxy_config_with(&routes, "timeout_idle: 1s\n");
    let _log = LogOnPanic(&proxy);

    let sender = h2_to_proxy::<tonic::body::Body>(&ca.pem, proxy.addr(), "grpc.example.com").await;
    let origin: http::Uri = format!("https://grpc.example.com:{}", proxy.port)
        .parse()
        .unwrap();
    let mut client = tonic::client::Grpc::with_origin(H2Channel(sender.clone()), origin);
    client.ready().await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel::<Msg>(1);
    let outgoing =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    tx.send(msg("first")).await.unwrap();
    let resp = client
        .streaming(
            tonic::Request::new(outgoing),
            path("/test.Echo/Chat"),
            codec(),
        )
        .await
        .unwrap();
    let mut incoming = resp.into_inner();
    assert_eq!(
        incoming.message().await.unwrap().unwrap().text,
        "echo:first"
    );
    // A quiet open stream outlives timeout_idle.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert!(!sender.is_closed());
    tx.send(msg("later")).await.unwrap();
    assert_eq!(
        incoming.message().await.unwrap().unwrap().text,
        "echo:later"
    );
    drop(tx);
    assert!(incoming.message().await.unwrap().is_none());
    drop(incoming);
    // Without streams the connection closes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !sender.is_closed() {
        assert!(
            std::time::Instant::now() < deadline,
            "idle HTTP/2 connection still open"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let mut client = grpc_client(&ca.pem, proxy.addr(), "down.example.com").await;
    client.ready().await.unwrap();
    let err = client
        .unary(
            tonic::Request::new(msg("x")),
            path("/test.Echo/Unary"),
            codec(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");

    // An upstream that drops its connection: the next call gets a fresh one.
    let mut client = grpc_client(&ca.pem, proxy.addr(), "flaky.example.com").await;
    for i in 0..3 {
        client.ready().await.unwrap();
        let resp = client
            .unary(
                tonic::Request::new(msg(format!("f{i}"))),
                path("/test.Echo/Unary"),
                codec(),
            )
            .await
            .unwrap();
        assert_eq!(resp.into_inner().text, format!("F{i}|"));
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}
