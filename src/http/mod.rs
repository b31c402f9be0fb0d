//! http
pub mod tls;
