//! The TLS listener's HTTP/1.1 client connections. actix-web gives an upgrade request a body
//! only for websockets, so the bytes a client sends after an `Upgrade: SPDY/3.1` request
//! (`kubectl exec`/`port-forward`) would be read as the next request. `ClientIo` looks at the
//! connection's first read: when it holds a complete SPDY upgrade request head, actix-web gets
//! just the head, and the bytes after it are kept for the tunnel, which claims them
//! (`claim_spdy_client`) before it answers `101`; from then on actix-web reads nothing more
//! and the tunnel reads the client directly. Other connections pass straight through.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

type Tls = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;

/// Shared by actix-web's side (`ClientIo`) and the tunnel's side (`SpdyClient`).
struct Shared {
    io: RefCell<Tls>,
    /// Bytes read after the upgrade request head, not yet consumed.
    rest: RefCell<Bytes>,
    /// The tunnel has taken the client's bytes.
    claimed: Cell<bool>,
}

impl Shared {
    /// Reads `rest` first, then the connection.
    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        {
            let mut rest = self.rest.borrow_mut();
            if !rest.is_empty() {
                let n = rest.len().min(buf.remaining());
                buf.put_slice(&rest[..n]);
                rest.advance(n);
                return Poll::Ready(Ok(()));
            }
        }
        Pin::new(&mut *self.io.borrow_mut()).poll_read(cx, buf)
    }
}

thread_local! {
    /// Client address → connection whose SPDY upgrade is waiting for its tunnel.
    static WAITING: RefCell<HashMap<SocketAddr, Rc<Shared>>> = RefCell::new(HashMap::new());
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing read yet.
    First,
    Passthrough,
    /// The first request was an SPDY upgrade.
    Spdy,
}

/// A client connection as actix-web's HTTP/1.1 dispatcher sees it.
pub struct ClientIo {
    shared: Rc<Shared>,
    peer: Option<SocketAddr>,
    state: State,
    certs: Option<super::tls::PeerCertificates>,
}

impl ClientIo {
    pub fn new(io: Tls, peer: Option<SocketAddr>) -> ClientIo {
        ClientIo {
            shared: Rc::new(Shared {
                io: RefCell::new(io),
                rest: RefCell::new(Bytes::new()),
                claimed: Cell::new(false),
            }),
            peer,
            state: State::First,
            certs: None,
        }
    }

    /// Keeps the client certificate chain presented in the handshake (connection data).
    pub fn with_peer_certificates(mut self, certs: Option<super::tls::PeerCertificates>) -> Self {
        self.certs = certs;
        self
    }

    pub fn peer_certificates(&self) -> Option<&super::tls::PeerCertificates> {
        self.certs.as_ref()
    }
}

impl Drop for ClientIo {
    fn drop(&mut self) {
        if let (State::Spdy, Some(peer)) = (self.state, self.peer) {
            WAITING.with(|w| {
                let mut w = w.borrow_mut();
                if w.get(&peer).is_some_and(|s| Rc::ptr_eq(s, &self.shared)) {
                    w.remove(&peer);
                }
            });
        }
    }
}

/// Length of the request head in `buf` if it is a complete SPDY/3.1 upgrade request.
fn spdy_upgrade_head(buf: &[u8]) -> Option<usize> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(len) = req.parse(buf).ok()? else {
        return None;
    };
    let has = |name: &str, token: &str| {
        req.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .filter_map(|h| std::str::from_utf8(h.value).ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    (has("connection", "upgrade") && has("upgrade", "spdy/3.1")).then_some(len)
}

impl AsyncRead for ClientIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.state {
            State::Passthrough => this.shared.poll_read(cx, buf),
            State::Spdy if this.shared.claimed.get() => Poll::Pending,
            State::Spdy => this.shared.poll_read(cx, buf),
            State::First => {
                let before = buf.filled().len();
                let res = this.shared.poll_read(cx, buf);
                if !matches!(res, Poll::Ready(Ok(()))) {
                    return res;
                }
                this.state = State::Passthrough;
                let Some(peer) = this.peer else {
                    return res;
                };
                let read = &buf.filled()[before..];
                if let Some(head) = spdy_upgrade_head(read) {
                    *this.shared.rest.borrow_mut() = Bytes::copy_from_slice(&read[head..]);
                    buf.set_filled(before + head);
                    this.state = State::Spdy;
                    WAITING.with(|w| w.borrow_mut().insert(peer, this.shared.clone()));
                }
                res
            }
        }
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.shared.io.borrow_mut()).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.shared.io.borrow_mut()).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.shared.io.borrow().is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.shared.io.borrow_mut()).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.shared.io.borrow_mut()).poll_shutdown(cx)
    }
}

/// The client side of an SPDY tunnel: what the client sends after its upgrade request.
pub struct SpdyClient(Rc<Shared>);

impl AsyncRead for SpdyClient {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.0.poll_read(cx, buf)
    }
}

/// Takes the bytes after the SPDY upgrade request of the connection from `peer` (on this
/// worker), if its first request was one; actix-web reads nothing more from it.
pub fn claim_spdy_client(peer: Option<SocketAddr>) -> Option<SpdyClient> {
    let shared = WAITING.with(|w| w.borrow_mut().remove(&peer?))?;
    shared.claimed.set(true);
    Some(SpdyClient(shared))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_complete_spdy_upgrade_heads() {
        let req = b"POST /api/v1/exec HTTP/1.1\r\nHost: k\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\nbytes";
        assert_eq!(spdy_upgrade_head(req), Some(req.len() - 5));
        let ws = b"GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
        assert_eq!(spdy_upgrade_head(ws), None);
        let partial = b"GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n";
        assert_eq!(spdy_upgrade_head(partial), None);
        let no_conn = b"GET / HTTP/1.1\r\nUpgrade: SPDY/3.1\r\n\r\n";
        assert_eq!(spdy_upgrade_head(no_conn), None);
    }
}
