//! `rampart controller`: the Kubernetes Ingress controller (watchers, reconciler, events,
//! status, health probes).

pub mod health;
