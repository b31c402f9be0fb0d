//! HTTP/2 trailers carried past actix-web, which has no trailers in its request payloads or
//! response bodies: a shared slot filled by the body stream that reads the trailers frame
//! just before it ends, and read by the body stream that writes them on. Request slots travel
//! in the request's extensions (`RequestTrailers`, set by the HTTP/2 listener), response slots
//! in the response's extensions (`ResponseTrailers`, set by the HTTP/2 upstream client).

use std::cell::RefCell;
use std::rc::Rc;

/// Trailers of one body, once they have arrived.
#[derive(Clone, Default)]
pub struct TrailerSlot(Rc<RefCell<Option<http::HeaderMap>>>);

impl TrailerSlot {
    pub fn put(&self, trailers: http::HeaderMap) {
        *self.0.borrow_mut() = Some(trailers);
    }

    pub fn take(&self) -> Option<http::HeaderMap> {
        self.0.borrow_mut().take()
    }
}

/// The client's request trailers (requests from the HTTP/2 listener).
#[derive(Clone)]
pub struct RequestTrailers(pub TrailerSlot);

/// The upstream's response trailers (responses from HTTP/2 upstreams).
#[derive(Clone)]
pub struct ResponseTrailers(pub TrailerSlot);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_hands_its_trailers_over_once() {
        let slot = TrailerSlot::default();
        let reader = slot.clone();
        assert!(reader.take().is_none());
        let mut t = http::HeaderMap::new();
        t.insert("grpc-status", http::HeaderValue::from_static("0"));
        slot.put(t);
        assert_eq!(reader.take().unwrap()["grpc-status"], "0");
        assert!(reader.take().is_none());
    }
}
