//! The routing snapshot: routes indexed by host, with their load balancer and upstream TLS
//! config. Built once per configuration and published through `ArcSwap`; lookups are pure.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::server::danger::ClientCertVerifier;
use rustls::ClientConfig;

use super::balancer::Balancer;
use super::health::{self, ProbeTarget};
use super::metrics::RouteMetrics;
use super::tls::{client_ca_verifier, client_chain_valid, PeerCertificates};
use super::upstream::{client_tls_config, tls_key, UpstreamTlsError};
use crate::config::route::HostMatch;
use crate::config::Route;

/// One route ready to serve. Extend with per-route compiled data (e.g. the policy).
#[derive(Debug)]
pub struct RouteEntry {
    pub route: Route,
    pub balancer: Balancer,
    /// Identifies `tls` (routes with equal TLS options share it and the connection pools).
    pub tls_key: u64,
    pub tls: Arc<ClientConfig>,
    /// The route id as a metrics label.
    pub metrics: RouteMetrics,
    /// `tls_downstream_client_ca`: verifies the client certificates presented for this route.
    pub client_ca: Option<Arc<dyn ClientCertVerifier>>,
}

/// Routes by host: exact hosts first (no fallthrough to wildcards when the host has routes),
/// then wildcard routes (most specific suffix first, `*` last), each group in route order.
#[derive(Debug, Default)]
pub struct RouteTable {
    entries: Vec<Arc<RouteEntry>>,
    exact: crate::FastMap<String, Vec<usize>>,
    wildcard: Vec<usize>,
}

/// Upstream TLS client configs by option set, shared by the routes that use the same options.
#[derive(Default)]
pub struct TlsConfigs(HashMap<u64, Arc<ClientConfig>>);

impl RouteEntry {
    /// Prepares one route: its load balancer and upstream TLS config (shared through
    /// `tls_configs` with routes that have the same TLS options).
    pub fn new(
        route: Route,
        extra_roots: &[Vec<u8>],
        tls_configs: &mut TlsConfigs,
    ) -> Result<RouteEntry, RouteTableError> {
        let key = tls_key(&route.tls, extra_roots);
        let tls = match tls_configs.0.get(&key) {
            Some(c) => c.clone(),
            None => {
                let c = client_tls_config(&route.tls, extra_roots).map_err(|source| {
                    RouteTableError {
                        route: format!("{} ({})", route.id, route.from),
                        source,
                    }
                })?;
                tls_configs.0.insert(key, c.clone());
                c
            }
        };
        let client_ca = match &route.downstream_client_ca {
            Some(ca) => Some(client_ca_verifier(ca).map_err(|e| RouteTableError {
                route: format!("{} ({})", route.id, route.from),
                source: UpstreamTlsError::DownstreamCa(e),
            })?),
            None => None,
        };
        let balancer = Balancer::with_health(&route.upstreams, route.load_balancing, &route.health);
        if let (Some(health), false) = (balancer.health(), route.health.checks.is_empty()) {
            let targets = route
                .upstreams
                .iter()
                .map(|up| ProbeTarget::new(up, key, &tls, route.tls.server_name.as_deref()))
                .collect();
            health::start(&route.id, targets, &route.health.checks, health);
        }
        Ok(RouteEntry {
            balancer,
            metrics: RouteMetrics::new(&route.id),
            route,
            tls_key: key,
            tls,
            client_ca,
        })
    }
}

impl RouteEntry {
    /// The client certificate of the request's connection, checked against this route's
    /// `tls_downstream_client_ca` (without one, a presented certificate is invalid for it).
    pub fn client_certificate(
        &self,
        peer: Option<&PeerCertificates>,
    ) -> Option<crate::policy::ClientCertificate> {
        let chain = &peer?.0;
        let leaf = chain.first()?;
        let valid = self
            .client_ca
            .as_deref()
            .is_some_and(|v| client_chain_valid(v, chain));
        Some(crate::policy::ClientCertificate::from_der(
            leaf.to_vec(),
            valid,
        ))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("route {route}: {source}")]
pub struct RouteTableError {
    pub route: String,
    pub source: UpstreamTlsError,
}

impl RouteTable {
    /// Builds the table from routes in evaluation order. `extra_roots` are the global
    /// `certificate_authority` certificates (DER).
    pub fn new(routes: Vec<Route>, extra_roots: &[Vec<u8>]) -> Result<RouteTable, RouteTableError> {
        let mut tls_configs = TlsConfigs::default();
        let entries = routes
            .into_iter()
            .map(|route| RouteEntry::new(route, extra_roots, &mut tls_configs).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RouteTable::from_entries(entries))
    }

    /// Builds the host index over ready entries (in evaluation order). Entries can be shared
    /// with the previous table, so unchanged routes keep their balancer state.
    pub fn from_entries(entries: Vec<Arc<RouteEntry>>) -> RouteTable {
        let mut table = RouteTable {
            entries,
            ..RouteTable::default()
        };
        for (index, entry) in table.entries.iter().enumerate() {
            match &entry.route.host {
                HostMatch::Exact(h) => table.exact.entry(h.clone()).or_default().push(index),
                HostMatch::Wildcard(_) | HostMatch::Any => table.wildcard.push(index),
            }
        }
        // Like Envoy's virtual hosts: the longest wildcard suffix first, `*` last; the route
        // order is kept among routes of the same host pattern.
        let entries = &table.entries;
        table
            .wildcard
            .sort_by_key(|&i| match &entries[i].route.host {
                HostMatch::Wildcard(suffix) => std::cmp::Reverse(suffix.len() + 1),
                _ => std::cmp::Reverse(0),
            });
        table
    }

    /// The route for `host` (lower-case, no port) and normalised `path`.
    pub fn find(&self, host: &str, path: &str) -> Option<&Arc<RouteEntry>> {
        let candidates = match self.exact.get(host) {
            Some(list) => list.as_slice(),
            None => self.wildcard.as_slice(),
        };
        candidates
            .iter()
            .map(|&i| &self.entries[i])
            .find(|e| e.route.host.matches(host) && e.route.path.matches(path))
    }

    /// `find` with the route's method, header and query conditions checked too (routes
    /// without conditions match any request).
    pub fn find_request(
        &self,
        host: &str,
        path: &str,
        method: &actix_web::http::Method,
        headers: &actix_web::http::header::HeaderMap,
        query: &str,
    ) -> Option<&Arc<RouteEntry>> {
        let candidates = match self.exact.get(host) {
            Some(list) => list.as_slice(),
            None => self.wildcard.as_slice(),
        };
        candidates.iter().map(|&i| &self.entries[i]).find(|e| {
            e.route.host.matches(host)
                && e.route.path.matches(path)
                && (e.route.request_match.is_empty()
                    || e.route.request_match.matches(method, headers, query))
        })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> &[Arc<RouteEntry>] {
        &self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{build, parse};
    use std::path::Path;

    fn table(yaml: &str) -> RouteTable {
        let cfg = build(parse(yaml, Path::new("t.yaml")).unwrap()).unwrap();
        RouteTable::new(cfg.routes, &[]).unwrap()
    }

    #[test]
    fn exact_host_first_without_wildcard_fallthrough() {
        let t = table(
            "routes:
  - {id: exact-api, from: https://a.test, prefix: /api, to: http://x}
  - {id: wild, from: 'https://*.test', to: http://y}
  - {id: any, from: 'https://*', to: http://z}
",
        );
        assert_eq!(t.find("a.test", "/api/1").unwrap().route.id, "exact-api");
        assert!(t.find("a.test", "/other").is_none());
        assert_eq!(t.find("b.test", "/").unwrap().route.id, "wild");
        assert_eq!(t.find("b.other", "/").unwrap().route.id, "any");
    }

    #[test]
    fn longer_wildcards_win_and_keep_route_order() {
        let t = table(
            "routes:
  - {id: any, from: 'https://*', to: http://z}
  - {id: short, from: 'https://*.test', to: http://y}
  - {id: long-api, from: 'https://*.a.test', prefix: /api, to: http://x}
  - {id: long, from: 'https://*.a.test', to: http://x}
",
        );
        assert_eq!(t.find("x.a.test", "/api").unwrap().route.id, "long-api");
        assert_eq!(t.find("x.a.test", "/").unwrap().route.id, "long");
        assert_eq!(t.find("x.b.test", "/").unwrap().route.id, "short");
        assert_eq!(t.find("x.c.org", "/").unwrap().route.id, "any");
    }

    #[test]
    fn path_kinds_in_order() {
        let t = table(
            "routes:
  - {id: p, from: https://a.test, prefix: /api, to: http://x}
  - {id: e, from: https://a.test, path: /api/exact, to: http://x}
  - {id: r, from: https://a.test, regex: '/r/[0-9]+', to: http://x}
",
        );
        assert_eq!(t.find("a.test", "/api/exact").unwrap().route.id, "e");
        assert_eq!(t.find("a.test", "/apix").unwrap().route.id, "p");
        assert_eq!(t.find("a.test", "/r/12").unwrap().route.id, "r");
        assert!(t.find("a.test", "/r/12/x").is_none());
    }

    #[test]
    fn method_header_and_query_conditions_pick_the_route() {
        use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
        use actix_web::http::Method;
        let t = table(
            "routes:
  - {id: a-post, from: https://a.test, to: http://x, match_method: POST}
  - {id: b-hdr, from: https://a.test, to: http://x, match_headers: [{name: X-Env, value: canary}]}
  - {id: c-re, from: https://a.test, to: http://x, match_headers: [{name: x-ver, regex: 'v[0-9]+'}]}
  - {id: d-query, from: https://a.test, to: http://x, match_query: [{name: q, value: 'a b'}]}
  - {id: e-any, from: https://a.test, to: http://y}
",
        );
        let mut h = HeaderMap::new();
        let get = |h: &HeaderMap, m: &Method, q: &str| {
            t.find_request("a.test", "/", m, h, q)
                .unwrap()
                .route
                .id
                .clone()
        };
        assert_eq!(get(&h, &Method::POST, ""), "a-post");
        assert_eq!(get(&h, &Method::GET, ""), "e-any");
        h.insert(
            HeaderName::from_static("x-env"),
            HeaderValue::from_static("canary"),
        );
        assert_eq!(get(&h, &Method::GET, ""), "b-hdr");
        h.clear();
        h.insert(
            HeaderName::from_static("x-ver"),
            HeaderValue::from_static("v12"),
        );
        assert_eq!(get(&h, &Method::GET, ""), "c-re");
        h.insert(
            HeaderName::from_static("x-ver"),
            HeaderValue::from_static("v12x"),
        );
        assert_eq!(get(&h, &Method::GET, "x=1&q=a+b"), "d-query");
        assert_eq!(get(&h, &Method::GET, "q=other"), "e-any");
        // Without the request, conditions are ignored (first route by order).
        assert_eq!(t.find("a.test", "/").unwrap().route.id, "a-post");
    }

    #[test]
    fn equal_tls_options_share_config() {
        let t = table(
            "routes:
  - {from: https://a.test, to: https://x, tls_skip_verify: true}
  - {from: https://b.test, to: https://y, tls_skip_verify: true}
  - {from: https://c.test, to: https://z}
",
        );
        let e = t.entries();
        assert!(Arc::ptr_eq(&e[0].tls, &e[1].tls));
        assert!(!Arc::ptr_eq(&e[0].tls, &e[2].tls));
    }
}
