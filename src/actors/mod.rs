//! actors

pub mod k8s_events;
pub mod k8s_reconciler;
pub mod k8s_status;
pub mod k8s_watch;
