//! actors

pub mod k8s_events;
pub mod k8s_status;
