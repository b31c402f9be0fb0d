//! The upstream HTTP/1.1 client: per-worker keep-alive pools of TCP and TLS connections, the
//! request head written straight from the prepared header map, the response head parsed with
//! `httparse`, and the response body streamed by its framing (length, chunked, or up to the
//! close). Bodies are never buffered whole in either direction.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::headers::is_hop_by_hop;
use super::routes::RouteEntry;
use crate::config::route::Upstream;

/// Connect timeout for upstream connections.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// An idle pooled connection older than this is closed instead of reused.
const IDLE_KEEP_ALIVE: Duration = Duration::from_secs(60);
/// Idle connections kept per upstream and worker.
const MAX_IDLE_PER_UPSTREAM: usize = 256;
/// Largest upstream response head accepted.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most response headers accepted.
const MAX_HEADERS: usize = 256;
/// Read buffer growth step.
const READ_CHUNK: usize = 16 * 1024;

#[derive(Debug, Error)]
pub enum SendError {
    /// No connection could be made: the next upstream may be tried.
    #[error("cannot connect: {0}")]
    Connect(io::Error),
    /// A reused keep-alive connection failed before any response byte (the upstream had closed
    /// it): safe to retry on a fresh connection when the request body was not consumed.
    #[error("pooled connection closed: {0}")]
    Stale(io::Error),
    /// The connection failed while sending the request or before the response head ended.
    #[error("upstream connection reset: {0}")]
    Reset(io::Error),
    /// The upstream's answer is not HTTP/1.x.
    #[error("malformed upstream response: {0}")]
    Protocol(&'static str),
}

/// Where to send a request.
pub struct Target<'a> {
    /// Identifies `tls` (connections are pooled per TLS config and base).
    pub tls_key: u64,
    pub tls: &'a Arc<ClientConfig>,
    pub https: bool,
    /// `scheme://authority`, the pool key within the TLS config.
    pub base: &'a str,
    /// Host to connect to (and the default TLS server name).
    pub host: &'a str,
    pub port: u16,
    /// `tls_server_name`: the name for SNI and verification instead of `host`.
    pub server_name: Option<&'a str>,
}

impl<'a> Target<'a> {
    /// Upstream `up` of route `entry`, dialled by name.
    pub fn new(entry: &'a RouteEntry, up: &'a Upstream) -> Target<'a> {
        Target {
            tls_key: entry.tls_key,
            tls: &entry.tls,
            https: up.scheme == "https",
            base: &up.base,
            host: up
                .url
                .host_str()
                .unwrap_or_default()
                .trim_start_matches('[')
                .trim_end_matches(']'),
            port: up.url.port_or_known_default().unwrap_or(80),
            server_name: entry.route.tls.server_name.as_deref(),
        }
    }
}

/// A TCP or TLS connection to an upstream.
pub enum Conn {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Opens a TCP (and for https a TLS) connection, with `CONNECT_TIMEOUT`.
pub async fn connect(t: &Target<'_>) -> io::Result<Conn> {
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((t.host, t.port)))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timeout"))??;
    let _ = tcp.set_nodelay(true);
    if !t.https {
        return Ok(Conn::Tcp(tcp));
    }
    let name = t.server_name.unwrap_or(t.host).to_string();
    let server_name =
        ServerName::try_from(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(t.tls));
    let tls = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(server_name, tcp))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timeout"))??;
    Ok(Conn::Tls(Box::new(tls)))
}

/// Pool key: the TLS config (which includes `tls_server_name`); the base URL is compared within.
type PoolKey = u64;

struct Idle {
    base: Box<str>,
    conn: Conn,
    since: Instant,
}

thread_local! {
    static POOL: RefCell<crate::FastMap<PoolKey, Vec<Idle>>> = RefCell::default();
}

/// What an idle pooled connection has pending.
#[derive(Debug, PartialEq, Eq)]
enum IdleState {
    /// Nothing: safe to reuse.
    Quiet,
    /// Response bytes nobody asked for: the upstream breaks HTTP framing.
    Unread,
    /// EOF, an error, or (TLS) a record such as a close alert.
    Closed,
}

/// Checks an idle connection before reuse. Asks the kernel directly (a non-blocking
/// `MSG_PEEK` on the socket), since the runtime's cached readiness can lag behind bytes the
/// upstream sent after the last response while the worker was busy; a TLS stream is also
/// polled once for plaintext rustls already buffered.
fn idle_state(conn: &mut Conn) -> IdleState {
    match conn {
        Conn::Tcp(s) => socket_state(s),
        Conn::Tls(s) => {
            // Raw bytes on an idle TLS connection are usually a close alert.
            if socket_state(s.get_ref().0) != IdleState::Quiet {
                return IdleState::Closed;
            }
            let mut scratch = [0u8; 1];
            let mut buf = ReadBuf::new(&mut scratch);
            let waker = futures::task::noop_waker();
            let mut cx = Context::from_waker(&waker);
            match Pin::new(conn).poll_read(&mut cx, &mut buf) {
                Poll::Pending => IdleState::Quiet,
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => IdleState::Unread,
                Poll::Ready(_) => IdleState::Closed,
            }
        }
    }
}

fn socket_state(tcp: &TcpStream) -> IdleState {
    use std::os::fd::AsRawFd;
    let mut byte = 0u8;
    // SAFETY: `recv` writes at most 1 byte into `byte`, which outlives the call; the fd is
    // owned by `tcp` and open for the duration of the borrow.
    let n = unsafe {
        libc::recv(
            tcp.as_raw_fd(),
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match n {
        1.. => IdleState::Unread,
        0 => IdleState::Closed,
        _ if io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock => IdleState::Quiet,
        _ => IdleState::Closed,
    }
}

/// How long an upstream that sent unrequested response bytes gets no connection reuse: a
/// stray response that arrives while the next request is in flight cannot be told apart
/// from its answer, so connections to it are not shared between requests at all.
const UNTRUSTED_FOR: Duration = Duration::from_secs(60);

thread_local! {
    static UNTRUSTED: RefCell<HashMap<(PoolKey, Box<str>), Instant>> = RefCell::new(HashMap::new());
}

/// Stops keep-alive to `base` (on this worker) for `UNTRUSTED_FOR`.
fn distrust(key: PoolKey, base: &str) {
    let fresh = UNTRUSTED.with(|u| {
        u.borrow_mut()
            .insert((key, base.into()), Instant::now())
            .is_none_or(|since| since.elapsed() >= UNTRUSTED_FOR)
    });
    if fresh {
        tracing::warn!(upstream = %base, "upstream sent bytes after a complete response; its connections are not reused for 60 s");
    }
    POOL.with(|pool| {
        if let Some(list) = pool.borrow_mut().get_mut(&key) {
            list.retain(|i| &*i.base != base);
        }
    });
}

fn is_untrusted(key: PoolKey, base: &str) -> bool {
    UNTRUSTED.with(|u| {
        let mut u = u.borrow_mut();
        if u.is_empty() {
            return false;
        }
        match u.get(&(key, Box::from(base))) {
            Some(since) if since.elapsed() < UNTRUSTED_FOR => true,
            Some(_) => {
                u.remove(&(key, Box::from(base)));
                false
            }
            None => false,
        }
    })
}

fn take_idle(key: PoolKey, base: &str) -> Option<Conn> {
    let mut stray = false;
    let found = POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let list = pool.get_mut(&key)?;
        while let Some(pos) = list.iter().rposition(|i| &*i.base == base) {
            let mut idle = list.swap_remove(pos);
            if idle.since.elapsed() >= IDLE_KEEP_ALIVE {
                continue;
            }
            match idle_state(&mut idle.conn) {
                IdleState::Quiet => return Some(idle.conn),
                IdleState::Unread => {
                    stray = true;
                    return None;
                }
                IdleState::Closed => {}
            }
        }
        None
    });
    if stray {
        distrust(key, base);
    }
    found
}

fn put_idle(key: PoolKey, base: &str, conn: Conn) {
    if is_untrusted(key, base) {
        return;
    }
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let list = pool.entry(key).or_default();
        if list.len() >= MAX_IDLE_PER_UPSTREAM {
            list.remove(0);
        }
        list.push(Idle {
            base: base.into(),
            conn,
            since: Instant::now(),
        });
    })
}

/// Returns a connection to its pool when its response body is complete.
struct Lease {
    key: PoolKey,
    base: Box<str>,
}

/// The request body to send: its length when known (else it is sent chunked).
pub struct OutgoingBody<S> {
    pub stream: S,
    pub length: Option<u64>,
}

/// A response head and its streaming body.
pub struct Response {
    pub status: StatusCode,
    /// End-to-end headers (hop-by-hop, `Connection`-listed and `Content-Length` removed).
    pub headers: HeaderMap,
    /// The body length the upstream announced (`Content-Length`).
    pub length: Option<u64>,
    pub body: UpstreamBody,
}

fn write_head(
    out: &mut Vec<u8>,
    method: &Method,
    path_and_query: &str,
    headers: &HeaderMap,
    framing: &str,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path_and_query.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers.iter() {
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(framing.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn carries_body(method: &Method) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::PATCH)
}

/// Sends one request and reads the response head. `body` is `None` for requests without one.
pub async fn send<S>(
    target: &Target<'_>,
    method: &Method,
    path_and_query: &str,
    headers: &HeaderMap,
    body: Option<OutgoingBody<S>>,
) -> Result<Response, SendError>
where
    S: Stream<Item = Result<Bytes, actix_web::error::PayloadError>> + Unpin,
{
    let key = target.tls_key;
    let (mut conn, reused) = match take_idle(key, target.base) {
        Some(c) => (c, true),
        None => (connect(target).await.map_err(SendError::Connect)?, false),
    };
    // A failure before the first response byte on a reused connection means it was stale.
    let early = |e: io::Error| {
        if reused {
            SendError::Stale(e)
        } else {
            SendError::Reset(e)
        }
    };

    let framing = match &body {
        Some(OutgoingBody {
            length: Some(n), ..
        }) => format!("content-length: {n}\r\n"),
        Some(_) => "transfer-encoding: chunked\r\n".to_string(),
        None if carries_body(method) || headers.contains_key(header::CONTENT_LENGTH) => {
            "content-length: 0\r\n".to_string()
        }
        None => String::new(),
    };
    let mut head = Vec::with_capacity(512);
    write_head(&mut head, method, path_and_query, headers, &framing);
    conn.write_all(&head).await.map_err(early)?;
    if let Some(OutgoingBody { mut stream, length }) = body {
        let chunked = length.is_none();
        let mut sent_any = false;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| SendError::Reset(io::Error::other(e.to_string())))?;
            if chunk.is_empty() {
                continue;
            }
            let wrote = if chunked {
                let mut framed = Vec::with_capacity(chunk.len() + 12);
                framed.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                framed.extend_from_slice(&chunk);
                framed.extend_from_slice(b"\r\n");
                conn.write_all(&framed).await
            } else {
                conn.write_all(&chunk).await
            };
            wrote.map_err(|e| {
                if sent_any {
                    SendError::Reset(e)
                } else {
                    early(e)
                }
            })?;
            sent_any = true;
        }
        if chunked {
            conn.write_all(b"0\r\n\r\n")
                .await
                .map_err(SendError::Reset)?;
        }
    }
    conn.flush().await.map_err(early)?;

    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        let n = read_more(&mut conn, &mut buf).await.map_err(early)?;
        if n == 0 {
            return Err(early(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the response head",
            )));
        }
        // Interim (1xx) responses are skipped; the final head follows on the same connection.
        while let Some(parsed) = parse_head(&mut buf)? {
            if parsed.status.is_informational() {
                continue;
            }
            return Ok(finish(parsed, method, conn, buf, key, target.base));
        }
        if buf.len() > MAX_HEAD {
            return Err(SendError::Protocol("response head too large"));
        }
    }
}

async fn read_more(conn: &mut Conn, buf: &mut BytesMut) -> io::Result<usize> {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(READ_CHUNK);
    }
    conn.read_buf(buf).await
}

struct ParsedHead {
    status: StatusCode,
    http11: bool,
    headers: HeaderMap,
    length: Option<u64>,
    chunked: bool,
    close: bool,
}

/// Parses (and removes from `buf`) one response head, if complete.
fn parse_head(buf: &mut BytesMut) -> Result<Option<ParsedHead>, SendError> {
    let mut slots =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let end = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, &mut slots)
    {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(SendError::Protocol("too many response headers"))
        }
        Err(_) => return Err(SendError::Protocol("not an HTTP/1 response")),
    };
    // The limit holds however the head arrived (one read or many).
    if end > MAX_HEAD {
        return Err(SendError::Protocol("response head too large"));
    }
    let status = resp
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or(SendError::Protocol("bad status code"))?;
    let http11 = resp.version == Some(1);
    // Framing and `Connection` come from the raw fields first; the map then gets only the
    // end-to-end fields (hop-by-hop, `Connection`-listed and `Content-Length` are ours to
    // decide), each value sliced out of the head's own bytes (no copy per value).
    let mut length = None;
    let mut chunked = false;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            length = merge_content_length(length, h.value)?;
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked |= contains_ignore_case(h.value, b"chunked");
        }
    }
    let connection = || {
        resp.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("connection"))
            .flat_map(|h| h.value.split(|b| *b == b','))
            .map(|t| t.trim_ascii())
            .filter(|t| !t.is_empty())
    };
    let close = if http11 {
        connection().any(|t| t.eq_ignore_ascii_case(b"close"))
    } else {
        !connection().any(|t| t.eq_ignore_ascii_case(b"keep-alive"))
    };
    // Names `Connection` lists beyond the usual `keep-alive` (a hop-by-hop name anyway):
    // usually none, so no allocation and no scan per field below.
    let extra: Vec<&[u8]> = connection()
        .filter(|t| !t.eq_ignore_ascii_case(b"keep-alive"))
        .collect();
    let listed = |name: &str| {
        extra
            .iter()
            .any(|t| t.eq_ignore_ascii_case(name.as_bytes()))
    };
    let base = buf.as_ptr() as usize;
    let mut kept = Vec::with_capacity(resp.headers.len());
    for h in resp.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| SendError::Protocol("bad header name"))?;
        if is_hop_by_hop(&name) || name == header::CONTENT_LENGTH || listed(name.as_str()) {
            continue;
        }
        kept.push((name, h.value.as_ptr() as usize - base, h.value.len()));
    }
    let head = buf.split_to(end).freeze();
    // Room for the headers the proxy adds (request id, configured response headers).
    let mut headers = HeaderMap::with_capacity(kept.len() + 4);
    for (name, off, len) in kept {
        let value = HeaderValue::from_maybe_shared(head.slice(off..off + len))
            .map_err(|_| SendError::Protocol("bad header value"))?;
        headers.append(name, value);
    }
    Ok(Some(ParsedHead {
        status,
        http11,
        headers,
        length,
        chunked,
        close,
    }))
}

/// Folds one `Content-Length` field into the length read so far (RFC 9112 §6.3): digits only
/// (no sign, no spaces inside); several fields or a list are accepted only when every value is
/// the same, since differing lengths would let the upstream smuggle a second response.
fn merge_content_length(mut length: Option<u64>, value: &[u8]) -> Result<Option<u64>, SendError> {
    let bad = || SendError::Protocol("bad content-length");
    for part in value.split(|b| *b == b',') {
        let part = trim_space_tab(part);
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        // ASCII digits are UTF-8; `parse` fails only on overflow.
        let n: u64 = std::str::from_utf8(part)
            .map_err(|_| bad())?
            .parse()
            .map_err(|_| bad())?;
        if length.is_some_and(|l| l != n) {
            return Err(SendError::Protocol("conflicting content-length values"));
        }
        length = Some(n);
    }
    Ok(length)
}

/// `bytes` without leading and trailing spaces and tabs (optional whitespace, RFC 9110 §5.6.3).
fn trim_space_tab(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| !matches!(b, b' ' | b'\t'));
    let end = bytes.iter().rposition(|b| !matches!(b, b' ' | b'\t'));
    match (start, end) {
        (Some(s), Some(e)) => &bytes[s..=e],
        _ => &[],
    }
}

/// Whether `needle` (lower-case) occurs in `hay`, ASCII case-insensitively.
fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

fn finish(
    head: ParsedHead,
    method: &Method,
    conn: Conn,
    buf: BytesMut,
    key: PoolKey,
    base: &str,
) -> Response {
    let bodiless = *method == Method::HEAD
        || head.status == StatusCode::NO_CONTENT
        || head.status == StatusCode::NOT_MODIFIED;
    let framing = if bodiless {
        Framing::Length(0)
    } else if head.chunked {
        Framing::Chunked(ChunkState::Size)
    } else if let Some(n) = head.length {
        Framing::Length(n)
    } else {
        Framing::Close
    };
    let reusable = head.http11 && !head.close && !matches!(framing, Framing::Close);
    let mut body = UpstreamBody {
        conn: Some(conn),
        buf,
        framing,
        lease: reusable.then(|| Lease {
            key,
            base: base.into(),
        }),
        sized: !bodiless,
    };
    body.release_if_done();
    Response {
        status: head.status,
        headers: head.headers,
        length: if bodiless {
            head.length
        } else {
            head.length.filter(|_| !head.chunked)
        },
        body,
    }
}

enum ChunkState {
    /// Expecting a chunk-size line.
    Size,
    /// Inside chunk data with this many bytes left.
    Data(u64),
    /// Expecting the CRLF after chunk data.
    DataEnd,
    /// After the last chunk: trailers up to the empty line.
    Trailers,
}

enum Framing {
    /// This many body bytes left.
    Length(u64),
    Chunked(ChunkState),
    /// Up to the end of the connection.
    Close,
    /// The body ended.
    Done,
}

/// The upstream response body. The connection goes back to the pool once the body ended
/// (and is closed if the body is dropped before).
pub struct UpstreamBody {
    conn: Option<Conn>,
    buf: BytesMut,
    framing: Framing,
    lease: Option<Lease>,
    /// The body is as long as `Content-Length` says (false for HEAD, 204 and 304 answers,
    /// whose `Content-Length` describes a body that is not sent).
    sized: bool,
}

impl UpstreamBody {
    /// The whole body, when a `Content-Length` body already arrived with the head: the
    /// connection goes back to the pool at once and the proxy answers with plain bytes
    /// instead of streaming (most small responses). `None`: stream it.
    pub fn take_complete(&mut self) -> Option<Bytes> {
        if !self.sized {
            return None;
        }
        match self.framing {
            Framing::Done if self.conn.is_none() => Some(Bytes::new()),
            Framing::Length(n) if n <= self.buf.len() as u64 => {
                let body = self.buf.split_to(n as usize).freeze();
                self.framing = Framing::Done;
                self.release_if_done();
                Some(body)
            }
            _ => None,
        }
    }

    fn release_if_done(&mut self) {
        if matches!(self.framing, Framing::Length(0)) {
            self.framing = Framing::Done;
        }
        if matches!(self.framing, Framing::Done) {
            let conn = self.conn.take();
            match (conn, self.lease.take()) {
                // Bytes past the body mean the upstream broke framing: do not reuse.
                (Some(_), Some(lease)) if !self.buf.is_empty() => distrust(lease.key, &lease.base),
                (Some(conn), Some(lease)) => put_idle(lease.key, &lease.base, conn),
                _ => {}
            }
        }
    }

    /// The next body bytes available in `buf` (advancing the chunked decoder), `Ok(None)` when
    /// more input is needed.
    fn next_from_buffer(&mut self) -> Result<Option<Bytes>, io::Error> {
        loop {
            match &mut self.framing {
                Framing::Done => return Ok(None),
                Framing::Length(left) => {
                    if self.buf.is_empty() {
                        return Ok(None);
                    }
                    let n = (*left).min(self.buf.len() as u64) as usize;
                    *left -= n as u64;
                    return Ok(Some(self.buf.split_to(n).freeze()));
                }
                Framing::Close => {
                    if self.buf.is_empty() {
                        return Ok(None);
                    }
                    return Ok(Some(self.buf.split().freeze()));
                }
                Framing::Chunked(state) => match state {
                    ChunkState::Size => match httparse::parse_chunk_size(&self.buf) {
                        Ok(httparse::Status::Complete((used, size))) => {
                            self.buf.advance(used);
                            *state = if size == 0 {
                                ChunkState::Trailers
                            } else {
                                ChunkState::Data(size)
                            };
                        }
                        Ok(httparse::Status::Partial) => return Ok(None),
                        Err(_) => return Err(bad_chunk()),
                    },
                    ChunkState::Data(left) => {
                        if self.buf.is_empty() {
                            return Ok(None);
                        }
                        let n = (*left).min(self.buf.len() as u64) as usize;
                        *left -= n as u64;
                        if *left == 0 {
                            *state = ChunkState::DataEnd;
                        }
                        return Ok(Some(self.buf.split_to(n).freeze()));
                    }
                    ChunkState::DataEnd => {
                        if self.buf.len() < 2 {
                            return Ok(None);
                        }
                        if &self.buf[..2] != b"\r\n" {
                            return Err(bad_chunk());
                        }
                        self.buf.advance(2);
                        *state = ChunkState::Size;
                    }
                    ChunkState::Trailers => {
                        if self.buf.starts_with(b"\r\n") {
                            self.buf.advance(2);
                        } else if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n")
                        {
                            self.buf.advance(end + 4);
                        } else if self.buf.len() > MAX_HEAD {
                            return Err(bad_chunk());
                        } else {
                            return Ok(None);
                        }
                        self.framing = Framing::Done;
                    }
                },
            }
        }
    }
}

fn bad_chunk() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "malformed chunked body")
}

impl Stream for UpstreamBody {
    type Item = Result<Bytes, io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            match this.next_from_buffer() {
                Ok(Some(chunk)) => {
                    this.release_if_done();
                    return Poll::Ready(Some(Ok(chunk)));
                }
                Ok(None) => {}
                Err(e) => {
                    this.fail();
                    return Poll::Ready(Some(Err(e)));
                }
            }
            this.release_if_done();
            if matches!(this.framing, Framing::Done) {
                return Poll::Ready(None);
            }
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            if this.buf.capacity() - this.buf.len() < 1024 {
                this.buf.reserve(READ_CHUNK);
            }
            match tokio_util::io::poll_read_buf(Pin::new(conn), cx, &mut this.buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => {
                    if matches!(this.framing, Framing::Close) {
                        this.framing = Framing::Done;
                        this.lease = None;
                        this.conn = None;
                        return Poll::Ready(None);
                    }
                    this.fail();
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "upstream closed the connection mid-body",
                    ))));
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    this.fail();
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }
}

impl UpstreamBody {
    fn fail(&mut self) {
        self.framing = Framing::Done;
        self.lease = None;
        self.conn = None;
        self.buf.clear();
    }
}

#[cfg(test)]
mod fuzz_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn body(framing: Framing, input: &[u8]) -> UpstreamBody {
        UpstreamBody {
            conn: None,
            buf: BytesMut::from(input),
            framing,
            lease: None,
            sized: true,
        }
    }

    fn drain(b: &mut UpstreamBody) -> Result<Vec<u8>, io::Error> {
        let mut out = Vec::new();
        while let Some(chunk) = b.next_from_buffer()? {
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    #[test]
    fn decodes_chunked_bodies_with_extensions_and_trailers() {
        let mut b = body(
            Framing::Chunked(ChunkState::Size),
            b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: t\r\n\r\n",
        );
        assert_eq!(drain(&mut b).unwrap(), b"hello world");
        assert!(matches!(b.framing, Framing::Done));
        assert!(b.buf.is_empty());
    }

    #[test]
    fn chunked_decoding_waits_for_more_input_at_any_split() {
        let input: &[u8] = b"3\r\nabc\r\n0\r\n\r\n";
        for split in 0..input.len() {
            let mut b = body(Framing::Chunked(ChunkState::Size), &input[..split]);
            let mut out = drain(&mut b).unwrap();
            b.buf.extend_from_slice(&input[split..]);
            out.extend(drain(&mut b).unwrap());
            assert_eq!(out, b"abc", "split at {split}");
            assert!(matches!(b.framing, Framing::Done), "split at {split}");
        }
    }

    #[test]
    fn malformed_chunks_are_errors() {
        let mut b = body(Framing::Chunked(ChunkState::Size), b"zz\r\n");
        assert!(drain(&mut b).is_err());
        let mut b = body(Framing::Chunked(ChunkState::Size), b"2\r\nabXX");
        assert!(drain(&mut b).is_err());
    }

    #[test]
    fn length_framing_stops_at_the_length() {
        let mut b = body(Framing::Length(3), b"abcdef");
        assert_eq!(b.next_from_buffer().unwrap().unwrap(), &b"abc"[..]);
        assert!(matches!(b.framing, Framing::Length(0)));
    }

    #[test]
    fn parses_heads_and_keeps_end_to_end_headers() {
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close, x-hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nok"[..],
        );
        let head = parse_head(&mut buf).unwrap().unwrap();
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(head.length, Some(2));
        assert!(head.close && head.http11 && !head.chunked);
        assert!(head.headers.get("x-hop").is_none());
        assert!(head.headers.get("keep-alive").is_none());
        assert!(head.headers.get("connection").is_none());
        assert!(head.headers.get("content-length").is_none());
        assert_eq!(head.headers.get_all("set-cookie").count(), 2);
        assert_eq!(&buf[..], b"ok");

        let mut partial = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Le"[..]);
        assert!(parse_head(&mut partial).unwrap().is_none());
        let mut junk = BytesMut::from(&b"SSH-2.0-OpenSSH\r\n\r\n"[..]);
        assert!(matches!(parse_head(&mut junk), Err(SendError::Protocol(_))));
        let mut http10 = BytesMut::from(&b"HTTP/1.0 200 OK\r\n\r\n"[..]);
        let head = parse_head(&mut http10).unwrap().unwrap();
        assert!(head.close && !head.http11);
    }

    /// Bytes (or EOF) that reached the socket while the worker was busy, so the runtime has not
    /// processed their readiness event yet, still make a pooled connection unusable.
    #[tokio::test]
    async fn pending_bytes_or_eof_are_seen_before_reuse() {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut peer, _) = listener.accept().unwrap();
        let mut conn = Conn::Tcp(client);
        peer.write_all(b"ok").unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(conn.read(&mut buf).await.unwrap(), 2);
        assert_eq!(
            idle_state(&mut conn),
            IdleState::Quiet,
            "a quiet connection"
        );
        // No await from here on: this thread never lets the runtime poll its driver.
        peer.write_all(b"HTTP/1.1 200 OK\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            idle_state(&mut conn),
            IdleState::Unread,
            "stray bytes pending"
        );
        // Through the pool: not handed out, and the upstream's connections are no longer kept.
        put_idle(7, "http://stray", conn);
        assert!(take_idle(7, "http://stray").is_none());
        assert!(is_untrusted(7, "http://stray"));
        assert!(!is_untrusted(7, "http://other"));

        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut peer, _) = listener.accept().unwrap();
        let mut conn = Conn::Tcp(client);
        peer.write_all(b"ok").unwrap();
        assert_eq!(conn.read(&mut buf).await.unwrap(), 2);
        drop(peer);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(idle_state(&mut conn), IdleState::Closed, "EOF pending");
    }

    /// A `Content-Length` body that came with the head is handed over whole and its
    /// connection pooled at once; bodies still on the wire, chunked bodies and the bodiless
    /// answers (HEAD, 204, 304, whose `Content-Length` is not a body) are streamed.
    #[tokio::test]
    async fn complete_bodies_are_taken_whole_and_release_the_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut peers = Vec::new();
        let mut respond = async |key: PoolKey, method: Method, raw: &str| {
            let conn = Conn::Tcp(
                TcpStream::connect(listener.local_addr().unwrap())
                    .await
                    .unwrap(),
            );
            peers.push(listener.accept().unwrap().0);
            let mut buf = BytesMut::from(raw.as_bytes());
            let head = parse_head(&mut buf).unwrap().unwrap();
            finish(head, &method, conn, buf, key, "http://complete")
        };

        let mut r = respond(
            21,
            Method::GET,
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        )
        .await;
        assert_eq!(r.body.take_complete().as_deref(), Some(&b"ok"[..]));
        assert!(
            take_idle(21, "http://complete").is_some(),
            "connection pooled at once"
        );

        let mut r = respond(
            22,
            Method::GET,
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        )
        .await;
        assert_eq!(r.body.take_complete().as_deref(), Some(&b""[..]));
        assert!(take_idle(22, "http://complete").is_some());

        let mut r = respond(
            23,
            Method::GET,
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nok",
        )
        .await;
        assert!(r.body.take_complete().is_none(), "3 bytes still to come");
        assert!(take_idle(23, "http://complete").is_none());

        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
        let mut r = respond(24, Method::GET, chunked).await;
        assert!(r.body.take_complete().is_none());

        let mut r = respond(
            25,
            Method::HEAD,
            "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",
        )
        .await;
        assert!(r.body.take_complete().is_none(), "HEAD keeps its length");
        assert_eq!(r.length, Some(9));
        let mut r = respond(
            26,
            Method::GET,
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
        )
        .await;
        assert!(r.body.take_complete().is_none());

        // Bytes past the body: the body is still exact, the connection is not reused.
        let mut r = respond(
            27,
            Method::GET,
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1",
        )
        .await;
        assert_eq!(r.body.take_complete().as_deref(), Some(&b"ok"[..]));
        assert!(take_idle(27, "http://complete").is_none());
    }

    #[test]
    fn content_length_must_be_digits_and_agree() {
        let parse = |head: &str| {
            parse_head(&mut BytesMut::from(head.as_bytes())).map(|h| h.unwrap().length)
        };
        assert_eq!(
            parse("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n").unwrap(),
            Some(2)
        );
        assert_eq!(
            parse("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n").unwrap(),
            Some(2)
        );
        assert_eq!(
            parse("HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\n").unwrap(),
            Some(3)
        );
        for bad in [
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 20\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 0x2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
        ] {
            assert!(matches!(parse(bad), Err(SendError::Protocol(_))), "{bad:?}");
        }
    }

    #[test]
    fn head_limit_applies_to_a_head_read_at_once() {
        let mut head = String::from("HTTP/1.1 200 OK\r\n");
        while head.len() <= MAX_HEAD {
            head.push_str(&format!("x-pad-{}: {}\r\n", head.len(), "a".repeat(1000)));
        }
        head.push_str("content-length: 0\r\n\r\n");
        let mut buf = BytesMut::from(head.as_bytes());
        assert!(matches!(
            parse_head(&mut buf),
            Err(SendError::Protocol("response head too large"))
        ));
    }

    #[test]
    fn request_heads_carry_the_framing_once() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("up"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("99"));
        let mut out = Vec::new();
        write_head(&mut out, &Method::POST, "/a?b", &h, "content-length: 3\r\n");
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("POST /a?b HTTP/1.1\r\n"), "{text}");
        assert!(text.contains("host: up\r\n"));
        assert_eq!(text.matches("content-length").count(), 1, "{text}");
        assert!(text.ends_with("content-length: 3\r\n\r\n"), "{text}");
    }
}
