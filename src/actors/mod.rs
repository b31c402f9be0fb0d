//! actors

pub mod session;
