//! k8s

pub mod events;
pub mod status;
