//! Conversions between actix-web's `http` 0.2 types and the `http` 1 types that hyper uses
//! (the HTTP/2 listener and the HTTP/2 upstream client). Names and values are copied as bytes;
//! HTTP/1-only connection headers are left out, since HTTP/2 forbids them.

use actix_web::http::header as ah;

/// Headers HTTP/2 does not allow (RFC 9113 §8.2.2); `te` is handled by the callers.
fn connection_specific(name: &str) -> bool {
    matches!(
        name,
        "connection" | "keep-alive" | "proxy-connection" | "transfer-encoding" | "upgrade" | "te"
    )
}

/// actix → hyper, without connection-specific headers (and `skip`).
pub fn to_http1_headers(from: &ah::HeaderMap, skip: &[ah::HeaderName]) -> http::HeaderMap {
    let mut out = http::HeaderMap::with_capacity(from.len());
    for (name, value) in from.iter() {
        if connection_specific(name.as_str()) || skip.contains(name) {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_str().as_bytes()),
            http::HeaderValue::from_bytes(value.as_bytes()),
        ) {
            out.append(n, v);
        }
    }
    out
}

/// hyper → actix, without connection-specific headers (`te` is kept: HTTP/2 allows
/// `te: trailers`, which gRPC servers may require).
pub fn to_actix_headers(from: &http::HeaderMap) -> ah::HeaderMap {
    let mut out = ah::HeaderMap::with_capacity(from.len());
    for (name, value) in from.iter() {
        if name != http::header::TE && connection_specific(name.as_str()) {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            ah::HeaderName::from_bytes(name.as_str().as_bytes()),
            ah::HeaderValue::from_bytes(value.as_bytes()),
        ) {
            out.append(n, v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_cross_over_without_connection_headers() {
        let mut a = ah::HeaderMap::new();
        a.append(
            ah::CONTENT_TYPE,
            ah::HeaderValue::from_static("application/grpc"),
        );
        a.append(ah::CONNECTION, ah::HeaderValue::from_static("keep-alive"));
        a.append(ah::HOST, ah::HeaderValue::from_static("a.test"));
        a.append(
            ah::HeaderName::from_static("x-multi"),
            ah::HeaderValue::from_static("1"),
        );
        a.append(
            ah::HeaderName::from_static("x-multi"),
            ah::HeaderValue::from_static("2"),
        );
        let h = to_http1_headers(&a, &[ah::HOST]);
        assert_eq!(h["content-type"], "application/grpc");
        assert!(h.get("connection").is_none() && h.get("host").is_none());
        assert_eq!(h.get_all("x-multi").iter().count(), 2);
        let mut h2 = h.clone();
        h2.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
        let back = to_actix_headers(&h2);
        assert_eq!(back.get(ah::TE).unwrap(), "trailers");
        assert_eq!(back.get_all("x-multi").count(), 2);
        assert_eq!(back.get(ah::CONTENT_TYPE).unwrap(), "application/grpc");
    }
}
