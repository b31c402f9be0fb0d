//! Streaming bodies between client and upstream with the route timeouts: the request body is
//! pulled from the client only as the upstream reads it (retry-safe until the first chunk) and
//! cut when the client sends nothing for `request_body_idle_timeout`; the response body is
//! passed through chunk by chunk, cut at the `timeout` deadline or after `idle_timeout` without
//! traffic in either direction. A failure of the client's body is remembered, so the proxy
//! answers it as the client's fault (400/408), not the upstream's.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::dev::Payload;
use bytes::Bytes;
use futures::stream::LocalBoxStream;
use futures::{Stream, StreamExt};
use tokio::sync::Notify;
use tokio::time::{sleep_until, Instant, Sleep};

use super::balancer::InFlight;

/// Shared between the request body, the timers and the response body of one proxied request.
pub struct Exchange {
    payload: RefCell<Option<Payload>>,
    /// A request body chunk went to an upstream (the request can no longer be retried).
    started: Cell<bool>,
    /// When the client finished sending the request body.
    done_at: Cell<Option<Instant>>,
    done: Notify,
    last_activity: Cell<Instant>,
    /// How long the client may leave the request body without data.
    body_idle: Option<Duration>,
    /// Why the client's request body failed, if it did.
    client_error: Cell<Option<ClientBodyError>>,
    /// Route `max_request_body_bytes`: a longer body fails with `TooLarge`.
    max_body: Cell<Option<u64>>,
    /// Request body bytes read so far.
    received: Cell<u64>,
}

/// How a client's request body failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientBodyError {
    /// Malformed framing (chunked syntax, length mismatch) or the client went away: 400.
    Malformed,
    /// Nothing arrived for `request_body_idle_timeout`: 408.
    Idle,
    /// More than the route's `max_request_body_bytes`: 413.
    TooLarge,
}

/// Why a timer fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// The route `timeout` (whole request) passed.
    Timeout,
    /// No traffic for `idle_timeout`.
    Idle,
}

impl Exchange {
    /// `payload` is `None` for requests without a body. `body_idle` limits how long the client
    /// may leave its body without data while the upstream waits for it.
    pub fn new(payload: Option<Payload>, body_idle: Option<Duration>) -> Rc<Exchange> {
        let now = Instant::now();
        let has_body = payload.is_some();
        Rc::new(Exchange {
            payload: RefCell::new(payload),
            started: Cell::new(false),
            done_at: Cell::new((!has_body).then_some(now)),
            done: Notify::new(),
            last_activity: Cell::new(now),
            body_idle,
            client_error: Cell::new(None),
            max_body: Cell::new(None),
            received: Cell::new(0),
        })
    }

    /// Limits the request body to `max` bytes (streamed bodies are cut when they pass it).
    pub fn set_max_body(&self, max: Option<u64>) {
        self.max_body.set(max);
    }

    /// Why the client's request body failed, if it did.
    pub fn client_error(&self) -> Option<ClientBodyError> {
        self.client_error.get()
    }

    pub fn started(&self) -> bool {
        self.started.get()
    }

    pub fn has_body(&self) -> bool {
        self.payload.borrow().is_some() || self.started.get()
    }

    pub fn touch(&self) {
        self.last_activity.set(Instant::now());
    }

    fn finish_body(&self) {
        if self.done_at.get().is_none() {
            self.done_at.set(Some(Instant::now()));
            self.done.notify_one();
        }
    }

    /// The deadline for `timeout`, once the request body is complete.
    pub fn deadline(&self, timeout: Option<Duration>) -> Option<Instant> {
        Some(self.done_at.get()? + timeout?)
    }

    /// Resolves when `timeout` (counted from the end of the request body) or `idle_timeout`
    /// (counted from the last traffic) passes; never when both are `None`.
    pub async fn expired(&self, timeout: Option<Duration>, idle: Option<Duration>) -> Expired {
        loop {
            let now = Instant::now();
            let deadline = self.deadline(timeout);
            if deadline.is_some_and(|d| now >= d) {
                return Expired::Timeout;
            }
            let idle_at = idle.map(|i| self.last_activity.get() + i);
            if idle_at.is_some_and(|i| now >= i) {
                return Expired::Idle;
            }
            let next = deadline.into_iter().chain(idle_at).min();
            let waiting_for_body = timeout.is_some() && self.done_at.get().is_none();
            match (next, waiting_for_body) {
                (Some(at), true) => {
                    let _ = futures::future::select(
                        Box::pin(sleep_until(at)),
                        Box::pin(self.done.notified()),
                    )
                    .await;
                }
                (None, true) => self.done.notified().await,
                (Some(at), false) => sleep_until(at).await,
                (None, false) => futures::future::pending::<()>().await,
            }
        }
    }

    /// A stream of the client's request body for one upstream attempt.
    pub fn request_body(self: &Rc<Self>) -> RequestBody {
        RequestBody {
            exchange: self.clone(),
            idle_timer: None,
            waiting: false,
        }
    }
}

/// The client's request body, pulled as the upstream connection sends it.
pub struct RequestBody {
    exchange: Rc<Exchange>,
    /// Armed when the upstream waits for the client (reset on each wait, reused).
    idle_timer: Option<Pin<Box<Sleep>>>,
    /// The timer runs for the current wait.
    waiting: bool,
}

impl RequestBody {
    /// The client sent nothing for `request_body_idle_timeout`: stop reading its body.
    fn idle_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(idle) = self.exchange.body_idle else {
            return false;
        };
        let at = Instant::now() + idle;
        let timer = self
            .idle_timer
            .get_or_insert_with(|| Box::pin(sleep_until(at)));
        if !self.waiting {
            timer.as_mut().reset(at);
            self.waiting = true;
        }
        timer.as_mut().poll(cx).is_ready()
    }
}

impl Stream for RequestBody {
    type Item = Result<Bytes, actix_web::error::PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let ex = this.exchange.clone();
        let mut slot = ex.payload.borrow_mut();
        let Some(payload) = slot.as_mut() else {
            return Poll::Ready(None);
        };
        match payload.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.waiting = false;
                ex.started.set(true);
                ex.touch();
                let received = ex.received.get() + chunk.len() as u64;
                ex.received.set(received);
                if ex.max_body.get().is_some_and(|max| received > max) {
                    *slot = None;
                    ex.client_error.set(Some(ClientBodyError::TooLarge));
                    return Poll::Ready(Some(Err(actix_web::error::PayloadError::Overflow)));
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                *slot = None;
                ex.started.set(true);
                ex.client_error.set(Some(ClientBodyError::Malformed));
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                *slot = None;
                ex.started.set(true);
                ex.finish_body();
                Poll::Ready(None)
            }
            Poll::Pending => {
                if !this.idle_expired(cx) {
                    return Poll::Pending;
                }
                *slot = None;
                ex.started.set(true);
                ex.client_error.set(Some(ClientBodyError::Idle));
                Poll::Ready(Some(Err(actix_web::error::PayloadError::Io(
                    io::Error::new(io::ErrorKind::TimedOut, "request body idle timeout"),
                ))))
            }
        }
    }
}

/// The upstream's response body on its way to the client.
pub struct ResponseBody {
    inner: LocalBoxStream<'static, Result<Bytes, io::Error>>,
    exchange: Rc<Exchange>,
    deadline: Option<Instant>,
    idle: Option<Duration>,
    /// Armed only once the body has to wait (most small bodies never do).
    timer: Option<Pin<Box<Sleep>>>,
    on_expire: Option<Box<dyn FnOnce(Expired)>>,
    _in_flight: Option<InFlight>,
}

impl ResponseBody {
    pub fn new(
        inner: LocalBoxStream<'static, Result<Bytes, io::Error>>,
        exchange: Rc<Exchange>,
        deadline: Option<Instant>,
        idle: Option<Duration>,
        in_flight: Option<InFlight>,
        on_expire: Option<Box<dyn FnOnce(Expired)>>,
    ) -> ResponseBody {
        ResponseBody {
            inner,
            exchange,
            deadline,
            idle,
            timer: None,
            on_expire,
            _in_flight: in_flight,
        }
    }

    fn expire(&mut self, why: Expired) -> Poll<Option<Result<Bytes, io::Error>>> {
        if let Some(f) = self.on_expire.take() {
            f(why);
        }
        self.deadline = None;
        self.idle = None;
        let msg = match why {
            Expired::Timeout => "upstream timeout",
            Expired::Idle => "stream idle timeout",
        };
        Poll::Ready(Some(Err(io::Error::new(io::ErrorKind::TimedOut, msg))))
    }
}

impl Stream for ResponseBody {
    type Item = Result<Bytes, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                if self.idle.is_some() {
                    self.exchange.touch();
                }
                return Poll::Ready(Some(Ok(chunk)));
            }
            Poll::Ready(other) => return Poll::Ready(other),
            Poll::Pending => {}
        }
        loop {
            let now = Instant::now();
            if self.deadline.is_some_and(|d| now >= d) {
                return self.expire(Expired::Timeout);
            }
            let idle_at = self.idle.map(|i| self.exchange.last_activity.get() + i);
            if idle_at.is_some_and(|i| now >= i) {
                return self.expire(Expired::Idle);
            }
            let Some(next) = self.deadline.into_iter().chain(idle_at).min() else {
                return Poll::Pending;
            };
            // Re-arm only when the wake-up time moved (re-registering costs a timer-wheel update).
            let timer = match &mut self.timer {
                Some(t) => {
                    if t.deadline() != next {
                        t.as_mut().reset(next);
                    }
                    t
                }
                slot @ None => slot.insert(Box::pin(sleep_until(next))),
            };
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}
