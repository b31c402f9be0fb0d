//! http

pub mod auth;
