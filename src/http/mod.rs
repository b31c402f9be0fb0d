//! The HTTP data plane: the actix-web server (`server`), request checks and header handling
//! (`request`, `headers`), route lookup (`routes`), the authorization seam (`authorize`),
//! proxying to upstreams (`proxy`, `upstream`, `balancer`, `tunnel`), error pages (`errors`),
//! metrics (`metrics`) and downstream TLS (`tls`).

pub mod auth;
pub mod authorize;
pub mod balancer;
pub mod body;
pub mod client_io;
pub mod cors;
pub mod errors;
pub mod forward_auth;
pub mod h1client;
pub mod h2client;
pub mod h2server;
pub mod headers;
pub mod health;
pub mod http_compat;
pub mod listeners;
pub mod metrics;
pub mod proxy;
pub mod redirect;
pub mod request;
pub mod routes;
pub mod server;
pub mod tls;
pub mod trailers;
pub mod tunnel;
pub mod upstream;

#[cfg(test)]
mod fuzz_tests;
