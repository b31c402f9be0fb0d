//! k8s

pub mod events;
pub mod status;
pub mod contract;
pub mod watch;
