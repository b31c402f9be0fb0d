//! Per-route identity provider clients (Pomerium's `GetIdentityProviderForPolicy`): a route with
//! its own `idp_client_id` / `idp_client_secret` (config keys, or the
//! `identity_provider_secret` annotation) signs in with that OAuth client at the global
//! provider URL. Each distinct client has its own IdP id, which keys sessions: a session from
//! one client never authorizes a route of another.
//!
//! Built once per configuration load ([`IdpSet::build`]); the request path only reads maps.
//! [`IdpCache`] keeps `Idp` objects (and so their discovery results) across loads, keyed by
//! IdP id (provider, URL, client id).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::oidc::{Idp, IdpError};
use super::settings::{AuthConfigError, IdpSettings};

/// The OAuth client a route asks for (from its config or its Ingress annotation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteClient {
    pub route_id: String,
    /// Lower-case exact host, if the route matches one host (for `/.pomerium/*` endpoints).
    pub host: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

impl RouteClient {
    pub fn of_route(route: &crate::config::Route) -> RouteClient {
        let nonempty =
            |v: &Option<String>| v.as_deref().filter(|v| !v.is_empty()).map(str::to_string);
        RouteClient {
            route_id: route.id.clone(),
            host: match &route.host {
                crate::config::route::HostMatch::Exact(h) => Some(h.to_ascii_lowercase()),
                _ => None,
            },
            client_id: nonempty(&route.config.idp_client_id),
            client_secret: nonempty(&route.config.idp_client_secret),
        }
    }

    fn overrides(&self) -> bool {
        self.client_id.is_some() || self.client_secret.is_some()
    }
}

/// The settings of a route's IdP: the global ones with client id and secret overridden.
/// `None` when the route keeps the global client.
pub fn route_idp_settings(
    global: Option<&IdpSettings>,
    route: &RouteClient,
) -> Result<Option<IdpSettings>, AuthConfigError> {
    if !route.overrides() {
        return Ok(None);
    }
    let Some(global) = global else {
        return Err(AuthConfigError {
            key: "idp_client_id",
            message: format!(
                "route {}: a per-route identity provider client needs the global identity provider (idp_provider / idp_provider_url)",
                route.route_id
            ),
        });
    };
    Ok(Some(global.with_client(
        route.client_id.as_deref(),
        route.client_secret.as_deref(),
    )))
}

/// `Idp` objects of earlier loads, reused while their settings and redirect URI are unchanged.
#[derive(Default)]
pub struct IdpCache {
    idps: Mutex<HashMap<String, Arc<Idp>>>,
}

impl IdpCache {
    fn get_or_build(
        &self,
        settings: &IdpSettings,
        redirect_uri: &str,
    ) -> Result<Arc<Idp>, IdpError> {
        let mut map = self.idps.lock().expect("poisoned");
        if let Some(idp) = map.get(&settings.id) {
            if idp.settings == *settings && idp.redirect_uri() == redirect_uri {
                return Ok(idp.clone());
            }
        }
        let idp = Arc::new(Idp::new(settings.clone(), redirect_uri)?);
        map.insert(settings.id.clone(), idp.clone());
        Ok(idp)
    }

    /// Forgets the clients no longer used.
    fn retain(&self, ids: &HashMap<String, Arc<Idp>>) {
        self.idps
            .lock()
            .expect("poisoned")
            .retain(|id, _| ids.contains_key(id));
    }
}

/// Every IdP client of one configuration.
#[derive(Default)]
pub struct IdpSet {
    /// The global client.
    pub default: Option<Arc<Idp>>,
    by_id: HashMap<String, Arc<Idp>>,
    /// Route id → IdP id, for routes with their own client.
    by_route: crate::FastMap<String, String>,
    /// Exact route host → IdP id (the first route of the host decides, as in Pomerium).
    by_host: HashMap<String, String>,
}

impl IdpSet {
    pub fn build(
        global: Option<&IdpSettings>,
        redirect_uri: Option<&str>,
        routes: &[RouteClient],
        cache: &IdpCache,
    ) -> Result<IdpSet, AuthStartIdpError> {
        let mut set = IdpSet::default();
        let Some(redirect_uri) = redirect_uri else {
            return Ok(set);
        };
        if let Some(g) = global {
            let idp = cache.get_or_build(g, redirect_uri)?;
            set.by_id.insert(g.id.clone(), idp.clone());
            set.default = Some(idp);
        }
        let mut seen_hosts = std::collections::HashSet::new();
        for r in routes {
            let first_of_host = r
                .host
                .as_ref()
                .is_some_and(|h| seen_hosts.insert(h.clone()));
            let Some(settings) = route_idp_settings(global, r)? else {
                continue;
            };
            if !set.by_id.contains_key(&settings.id) {
                let idp = cache.get_or_build(&settings, redirect_uri)?;
                set.by_id.insert(settings.id.clone(), idp);
            }
            set.by_route.insert(r.route_id.clone(), settings.id.clone());
            if first_of_host {
                if let Some(h) = &r.host {
                    set.by_host.insert(h.clone(), settings.id.clone());
                }
            }
        }
        cache.retain(&set.by_id);
        Ok(set)
    }

    pub fn default_id(&self) -> &str {
        self.default
            .as_ref()
            .map(|i| i.settings.id.as_str())
            .unwrap_or("")
    }

    /// The IdP with this id (`None` for an unknown id).
    pub fn by_id(&self, id: &str) -> Option<&Arc<Idp>> {
        self.by_id.get(id)
    }

    /// The IdP id a route signs in with.
    pub fn route_id(&self, route_id: &str) -> &str {
        self.by_route
            .get(route_id)
            .map(String::as_str)
            .unwrap_or_else(|| self.default_id())
    }

    /// The IdP id of a route host's `/.pomerium/*` endpoints.
    pub fn host_id(&self, host: &str) -> &str {
        self.by_host
            .get(host)
            .map(String::as_str)
            .unwrap_or_else(|| self.default_id())
    }

    /// The IdP of an id carried in a sign-in URL or state; unknown ids get the global one
    /// (Pomerium's `GetIdentityProviderForID`).
    pub fn for_id_or_default(&self, id: Option<&str>) -> Option<&Arc<Idp>> {
        id.and_then(|id| self.by_id.get(id))
            .or(self.default.as_ref())
    }

    pub fn is_known(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// A per-route client that could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AuthStartIdpError {
    #[error(transparent)]
    Config(#[from] AuthConfigError),
    #[error("identity provider: {0}")]
    Idp(#[from] IdpError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn global() -> IdpSettings {
        IdpSettings {
            provider: "oidc".into(),
            issuer: "https://idp.example.com".into(),
            client_id: "one".into(),
            client_secret: "s1".into(),
            scopes: vec!["openid".into()],
            request_params: vec![],
            id: IdpSettings::compute_id("oidc", "https://idp.example.com", "one", "s1"),
            apple: None,
            extra_roots_pem: None,
        }
    }

    fn route(id: &str, host: &str, client: Option<(&str, &str)>) -> RouteClient {
        RouteClient {
            route_id: id.into(),
            host: Some(host.into()),
            client_id: client.map(|c| c.0.into()),
            client_secret: client.map(|c| c.1.into()),
        }
    }

    #[test]
    fn routes_with_their_own_client_get_their_own_id_and_idp() {
        let g = global();
        let cache = IdpCache::default();
        let routes = [
            route("a", "a.example.com", None),
            route("b", "b.example.com", Some(("two", "s2"))),
            route("c", "c.example.com", Some(("two", "s2"))),
        ];
        let set = IdpSet::build(
            Some(&g),
            Some("https://authn.example.com/oauth2/callback"),
            &routes,
            &cache,
        )
        .unwrap();
        assert_eq!(set.len(), 2, "one global + one shared per-route client");
        assert_eq!(set.route_id("a"), g.id);
        let two = set.route_id("b").to_string();
        assert_ne!(two, g.id);
        assert_eq!(set.route_id("c"), two);
        assert_eq!(set.host_id("b.example.com"), two);
        assert_eq!(set.host_id("a.example.com"), g.id);
        let idp = set.by_id(&two).unwrap();
        assert_eq!(idp.settings.client_id, "two");
        assert_eq!(idp.settings.client_secret, "s2");
        assert_eq!(idp.settings.issuer, g.issuer, "same provider URL");
        assert_eq!(
            set.for_id_or_default(Some("unknown")).unwrap().settings.id,
            g.id
        );
        // A second load reuses the same objects (their discovery cache).
        let again = IdpSet::build(
            Some(&g),
            Some("https://authn.example.com/oauth2/callback"),
            &routes,
            &cache,
        )
        .unwrap();
        assert!(Arc::ptr_eq(again.by_id(&two).unwrap(), idp));
        // A changed secret is another client (as in Pomerium, the secret is part of the id).
        let routes2 = [route("b", "b.example.com", Some(("two", "s3")))];
        let third = IdpSet::build(
            Some(&g),
            Some("https://authn.example.com/oauth2/callback"),
            &routes2,
            &cache,
        )
        .unwrap();
        let three = third.route_id("b");
        assert_ne!(three, two);
        assert_eq!(third.by_id(three).unwrap().settings.client_secret, "s3");
        assert!(!third.is_known(&two), "the old client is gone");
    }

    #[test]
    fn secret_only_override_keeps_the_global_client_id() {
        let g = global();
        let r = RouteClient {
            route_id: "x".into(),
            client_secret: Some("other".into()),
            ..Default::default()
        };
        let s = route_idp_settings(Some(&g), &r).unwrap().unwrap();
        assert_eq!(s.client_id, "one");
        assert_eq!(s.client_secret, "other");
        assert_ne!(s.id, g.id, "another secret is another client");
    }

    #[test]
    fn route_clients_come_from_the_route_keys() {
        let yaml = "routes:\n  - from: https://a.example.com\n    to: http://127.0.0.1:1\n  - from: https://B.example.com\n    to: http://127.0.0.1:1\n    id: b\n    idp_client_id: two\n    idp_client_secret: s2\n";
        let settings = crate::config::parse(yaml, std::path::Path::new("t.yaml")).unwrap();
        let cfg = crate::config::build(settings).unwrap();
        let clients: Vec<RouteClient> = cfg.routes.iter().map(RouteClient::of_route).collect();
        let a = clients.iter().find(|c| c.route_id != "b").unwrap();
        assert_eq!(a.client_id, None);
        assert!(!a.overrides());
        assert_eq!(
            *clients.iter().find(|c| c.route_id == "b").unwrap(),
            RouteClient {
                route_id: "b".into(),
                host: Some("b.example.com".into()),
                client_id: Some("two".into()),
                client_secret: Some("s2".into()),
            }
        );
    }

    #[test]
    fn per_route_client_without_global_idp_is_an_error_naming_the_route() {
        let r = route("r7", "x.example.com", Some(("two", "s2")));
        let e = route_idp_settings(None, &r).unwrap_err();
        assert_eq!(e.key, "idp_client_id");
        assert!(e.message.contains("route r7"), "{e}");
    }
}
