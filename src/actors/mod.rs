//! Actix actors. Each owns one concern and is a thin shell over a plain struct that holds the
//! logic: `config` (config file), `certs` (certificates), `policy` (policy compilation),
//! `file_watch` (shared file watching), `session` (session store writes and sweeping).

pub mod certs;
pub mod config;
pub mod file_watch;
pub mod policy;
pub mod session;

pub mod k8s_events;
pub mod k8s_leader;
pub mod k8s_reconciler;
pub mod k8s_status;
pub mod k8s_watch;
