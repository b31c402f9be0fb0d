//! Sign-in, sessions and identity headers (spec §2, §3, §5).
//!
//! Pure building blocks: [`settings`] (checked config), [`signed_url`], [`handle`] (session
//! cookie JWT), [`state`] (OAuth state, CSRF and PKCE cookies, nonce), [`identity`] (identity JWT,
//! JWKS, claim headers), [`headers`] (what reaches the upstream), [`respond`] (302 vs 401 and
//! pages), [`route_hosts`] (the hosts that get sessions). I/O: [`oidc`] (the IdP; [`apple`] for Sign in with Apple, [`idps`] for per-route clients), [`endpoints`] (`/.pomerium/*`, `/oauth2/callback`, JWKS) and
//! [`authorizer`] (the data plane's `Authorizer`).

pub mod crypto;
pub mod handle;
pub mod identity;
pub mod settings;
pub mod signed_url;
pub mod state;

pub use settings::{AuthConfigError, AuthSettings};
pub mod apple;
pub mod authorizer;
pub mod endpoints;
pub mod headers;
pub mod idps;
pub mod oidc;
pub mod respond;
pub mod route_hosts;
pub mod service;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod fuzz_tests;
