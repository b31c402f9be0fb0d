//! The hosts the configured routes serve. Route-host endpoints (`/.pomerium/*`) answer only on
//! these, and the authenticate service hands sessions only to them (spec 2.3, 2.8): a host that
//! matches no route must never receive a session.

use std::collections::HashSet;

use crate::config::route::HostMatch;

/// Route host patterns, for membership checks of a request or redirect host.
#[derive(Debug, Clone, Default)]
pub struct RouteHosts {
    exact: HashSet<String>,
    /// Wildcard suffixes (`.example.com`), checked in turn.
    wildcards: Vec<HostMatch>,
    any: bool,
}

impl RouteHosts {
    pub fn new<'a>(hosts: impl IntoIterator<Item = &'a HostMatch>) -> RouteHosts {
        let mut out = RouteHosts::default();
        for h in hosts {
            match h {
                HostMatch::Exact(e) => {
                    out.exact.insert(e.to_ascii_lowercase());
                }
                HostMatch::Wildcard(_) => out.wildcards.push(h.clone()),
                HostMatch::Any => out.any = true,
            }
        }
        out
    }

    /// Whether some route serves `host` (lower-case, no port).
    pub fn contains(&self, host: &str) -> bool {
        if host.is_empty() {
            return false;
        }
        self.any || self.exact.contains(host) || self.wildcards.iter().any(|w| w.matches(host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_wildcard_and_any() {
        let hosts = RouteHosts::new(&[
            HostMatch::Exact("app.example.com".into()),
            HostMatch::Wildcard(".apps.example.com".into()),
        ]);
        assert!(hosts.contains("app.example.com"));
        assert!(hosts.contains("x.apps.example.com"));
        assert!(!hosts.contains("apps.example.com"));
        assert!(!hosts.contains("evil.example"));
        assert!(!hosts.contains("app.example.com.evil.example"));
        assert!(!hosts.contains(""));
        let any = RouteHosts::new(&[HostMatch::Any]);
        assert!(any.contains("evil.example"));
        assert!(!RouteHosts::default().contains("app.example.com"));
    }
}
