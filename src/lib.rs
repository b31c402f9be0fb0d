//! rampart: an identity-aware reverse proxy and Kubernetes Ingress controller that reads
//! Pomerium's configuration formats.
//!
//! Layout: `config` (file format and validation), `policy` (PPL engine), `http` (server,
//! proxy, auth endpoints), `actors` (actix actors that own watching and publishing),
//! `k8s` (Ingress conversion and watchers), `store` (session stores).

pub mod actors;
pub mod cli;
pub mod config;
pub mod controller;
pub mod http;
pub mod k8s;
pub mod policy;
pub mod serve;
pub mod store;
pub mod telemetry;
pub mod verify;

/// A hash map for lookups on the request path: foldhash instead of SipHash. Its keys come
/// from configuration (route ids, hosts), so request input can look keys up but not fill
/// the table.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

#[cfg(test)]
mod fuzz_support;
