//! actors
pub mod policy;
