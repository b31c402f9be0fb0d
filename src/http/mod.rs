//! http

pub mod auth;
pub mod tls;
