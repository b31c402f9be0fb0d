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

#[cfg(test)]
mod fuzz_support;
