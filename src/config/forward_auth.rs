//! `forward_auth`: the auth server other proxies ask (nginx `auth_request`, Traefik
//! `forwardAuth`, Caddy `forward_auth`, Envoy `ext_authz`). Written form and checked form.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::ConfigError;

/// `forward_auth:` as written in the config file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardAuthConfig {
    /// Listen address of the forward-auth endpoints (plain HTTP), e.g. `127.0.0.1:8081`.
    pub address: String,
    /// Addresses (CIDRs or single IPs) of the proxies allowed to ask. Only they may describe
    /// the original request with `X-Forwarded-*` / `X-Original-*` headers; anyone else gets 403.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
}

/// Checked `forward_auth` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardAuthSettings {
    pub address: SocketAddr,
    pub trusted_proxies: Vec<IpNet>,
}

impl ForwardAuthSettings {
    pub fn from_config(c: &ForwardAuthConfig) -> Result<ForwardAuthSettings, ConfigError> {
        let address = super::parse_listen_addr("forward_auth.address", &c.address)?;
        let bad = |message: String| ConfigError::Setting {
            key: "forward_auth.trusted_proxies",
            message,
        };
        if c.trusted_proxies.is_empty() {
            return Err(bad(
                "list the addresses of the proxies that ask rampart (e.g. [127.0.0.1/32]); \
                 forwarded headers from any other address are never trusted"
                    .into(),
            ));
        }
        let trusted_proxies = c
            .trusted_proxies
            .iter()
            .map(|v| parse_net(v).ok_or_else(|| bad(format!("{v:?} is not an IP address or CIDR"))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ForwardAuthSettings {
            address,
            trusted_proxies,
        })
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        trusted(&self.trusted_proxies, ip)
    }
}

/// Whether `ip` (IPv4-mapped IPv6 addresses count as IPv4) is in one of `nets`.
pub fn trusted(nets: &[IpNet], ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    nets.iter().any(|n| n.contains(&ip))
}

fn parse_net(v: &str) -> Option<IpNet> {
    let v = v.trim();
    v.parse::<IpNet>()
        .ok()
        .or_else(|| v.parse::<IpAddr>().ok().map(IpNet::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(addr: &str, nets: &[&str]) -> ForwardAuthConfig {
        ForwardAuthConfig {
            address: addr.into(),
            trusted_proxies: nets.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn trusted_proxies_take_cidrs_and_single_addresses() {
        let s = ForwardAuthSettings::from_config(&cfg(
            "127.0.0.1:8081",
            &["10.0.0.0/8", "192.168.1.5", "::1"],
        ))
        .unwrap();
        assert_eq!(s.address, "127.0.0.1:8081".parse().unwrap());
        assert!(s.trusts("10.1.2.3".parse().unwrap()));
        assert!(s.trusts("192.168.1.5".parse().unwrap()));
        assert!(s.trusts("::ffff:10.0.0.1".parse().unwrap()));
        assert!(s.trusts("::1".parse().unwrap()));
        assert!(!s.trusts("192.168.1.6".parse().unwrap()));
        assert!(!s.trusts("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn bad_settings_name_the_key() {
        let e = ForwardAuthSettings::from_config(&cfg("127.0.0.1:8081", &[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("forward_auth.trusted_proxies"), "{e}");
        let e = ForwardAuthSettings::from_config(&cfg("127.0.0.1:8081", &["10.0.0.0/33"]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("forward_auth.trusted_proxies") && e.contains("10.0.0.0/33"),
            "{e}"
        );
        let e = ForwardAuthSettings::from_config(&cfg("nope", &["10.0.0.0/8"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("forward_auth.address"), "{e}");
    }
}
