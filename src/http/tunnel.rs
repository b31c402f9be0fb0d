//! Upgrade tunnels (websocket, SPDY): a raw TCP/TLS connection to the upstream, the client's
//! upgrade request written as HTTP/1.1, and after the upstream's `101` the bytes copied both
//! ways until either side closes (or `idle_timeout` passes without traffic).

use std::io;
use std::time::Duration;

use actix_web::body::{BodyStream, SizedStream};
use actix_web::dev::Payload;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use bytes::{Bytes, BytesMut};
use futures::stream::LocalBoxStream;
use futures::StreamExt;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::io::ReaderStream;

use super::body::{Exchange, ResponseBody};
use super::client_io::claim_spdy_client;
use super::h1client::{self, MAX_HEAD};
use super::headers::end_to_end;
use super::routes::RouteEntry;
use crate::config::route::Upstream;

#[derive(Debug, Error)]
pub enum TunnelError {
    #[error("cannot connect to the upstream: {0}")]
    Connect(io::Error),
    #[error("upstream I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("malformed upstream response: {0}")]
    Malformed(&'static str),
}

pub trait Io: AsyncRead + AsyncWrite + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + 'static> Io for T {}

/// Opens a TCP (and for https a TLS, with the route's TLS config) connection to `up`.
pub async fn connect(entry: &RouteEntry, up: &Upstream) -> Result<Box<dyn Io>, TunnelError> {
    let conn = h1client::connect(&h1client::Target::new(entry, up))
        .await
        .map_err(TunnelError::Connect)?;
    Ok(Box::new(conn))
}

/// Where the client's bytes after the upgrade come from.
pub enum ClientBytes {
    /// The request payload (websockets).
    Payload(Payload),
    /// SPDY: the connection from `peer` as kept by `client_io` (the HTTPS listener), else
    /// the payload.
    Spdy {
        payload: Payload,
        peer: Option<std::net::SocketAddr>,
    },
}

impl ClientBytes {
    fn into_stream(self) -> LocalBoxStream<'static, Result<Bytes, io::Error>> {
        let payload = match self {
            ClientBytes::Spdy { payload, peer } => match claim_spdy_client(peer) {
                Some(client) => return ReaderStream::new(client).boxed_local(),
                None => payload,
            },
            ClientBytes::Payload(payload) => payload,
        };
        payload
            .map(|r| r.map_err(|e| io::Error::other(e.to_string())))
            .boxed_local()
    }
}

/// Parsed upstream response head.
struct Head {
    status: StatusCode,
    headers: HeaderMap,
}

fn parse_head(raw: &[u8]) -> Result<Head, TunnelError> {
    let text = std::str::from_utf8(raw).map_err(|_| TunnelError::Malformed("not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().ok_or(TunnelError::Malformed("empty"))?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(TunnelError::Malformed("not an HTTP/1 response"));
    }
    let status = parts
        .next()
        .and_then(|c| c.parse::<u16>().ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or(TunnelError::Malformed("bad status code"))?;
    let mut headers = HeaderMap::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or(TunnelError::Malformed("bad header line"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| TunnelError::Malformed("bad header name"))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|_| TunnelError::Malformed("bad header value"))?;
        headers.append(name, value);
    }
    Ok(Head { status, headers })
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

/// Sends the upgrade request on `io` and builds the client response: on `101` a streaming
/// tunnel (client bytes are copied to the upstream by a spawned task), otherwise the
/// upstream's answer as is.
pub async fn open(
    mut io: Box<dyn Io>,
    method: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    client: ClientBytes,
    idle: Option<Duration>,
) -> Result<HttpResponse, TunnelError> {
    let mut head = format!("{method} {path_and_query} HTTP/1.1\r\n").into_bytes();
    for (name, value) in headers.iter() {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    io.write_all(&head).await?;
    io.flush().await?;

    let mut buf = BytesMut::with_capacity(4096);
    let end = loop {
        if let Some(end) = find_head_end(&buf) {
            break end;
        }
        if buf.len() > MAX_HEAD {
            return Err(TunnelError::Malformed("response head too large"));
        }
        if io.read_buf(&mut buf).await? == 0 {
            return Err(TunnelError::Malformed(
                "connection closed before the response head",
            ));
        }
    };
    let parsed = parse_head(&buf[..end])?;
    let rest: Bytes = buf.split_off(end + 4).freeze();

    let exchange = Exchange::new(None, None);
    let (read, mut write) = tokio::io::split(io);
    let upstream_bytes = futures::stream::once(async move { Ok::<_, io::Error>(rest) })
        .filter(|r| futures::future::ready(!matches!(r, Ok(b) if b.is_empty())))
        .chain(ReaderStream::new(read))
        .boxed_local();

    let mut builder = HttpResponse::build(parsed.status);
    for (name, value) in end_to_end(&parsed.headers).iter() {
        if name != header::CONTENT_LENGTH {
            builder.append_header((name.clone(), value.clone()));
        }
    }

    if parsed.status != StatusCode::SWITCHING_PROTOCOLS {
        let body = ResponseBody::new(upstream_bytes, exchange, None, idle, None, None);
        let length = parsed
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        return Ok(match length {
            Some(n) => builder.body(SizedStream::new(n, body)),
            None => builder.body(BodyStream::new(body)),
        });
    }

    if let Some(v) = parsed.headers.get(header::UPGRADE) {
        builder.upgrade(v.clone());
    }
    let copier = exchange.clone();
    let mut client = client.into_stream();
    actix_web::rt::spawn(async move {
        while let Some(chunk) = client.next().await {
            let Ok(chunk) = chunk else { break };
            copier.touch();
            if write.write_all(&chunk).await.is_err() || write.flush().await.is_err() {
                break;
            }
        }
        let _ = write.shutdown().await;
    });
    let body = ResponseBody::new(upstream_bytes, exchange, None, idle, None, None);
    let mut response = builder.body(BodyStream::new(body));
    // Raw bytes after the 101: actix-web would chunk-encode them for upgrades other than
    // websocket.
    response.head_mut().no_chunking(true);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_switching_protocols_head() {
        let raw = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: abc";
        let head = parse_head(raw).unwrap();
        assert_eq!(head.status, StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(head.headers.get("sec-websocket-accept").unwrap(), "abc");
        assert!(parse_head(b"SSH-2.0 hello").is_err());
        assert_eq!(find_head_end(b"HTTP/1.1 200 OK\r\n\r\nbody"), Some(15));
    }
}
