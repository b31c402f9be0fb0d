//! The cluster-scoped `Pomerium` custom resource (`ingress.pomerium.io/v1`, plural `pomerium`),
//! written by hand (serde + `kube::Resource`) so no derive macro crate is needed.
//!
//! Unknown fields are ignored (the API server prunes them), so manifests written for any
//! upstream version load.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "ingress.pomerium.io";
pub const VERSION: &str = "v1";
pub const API_VERSION: &str = "ingress.pomerium.io/v1";
pub const KIND: &str = "Pomerium";
pub const PLURAL: &str = "pomerium";

/// `Pomerium` object (cluster scoped; a `metadata.namespace` is ignored).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pomerium {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: PomeriumSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<PomeriumStatus>,
}

impl Pomerium {
    pub fn new(name: &str, spec: PomeriumSpec) -> Self {
        Pomerium {
            api_version: Some(API_VERSION.into()),
            kind: Some(KIND.into()),
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec,
            status: None,
        }
    }
}

impl kube::Resource for Pomerium {
    type DynamicType = ();
    type Scope = kube::core::ClusterResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        KIND.into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        GROUP.into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        VERSION.into()
    }
    fn api_version(_: &()) -> Cow<'_, str> {
        API_VERSION.into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        PLURAL.into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// `spec` (ingress-controller spec §7). Secret references are `namespace/name`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PomeriumSpec {
    /// Bootstrap Secret (`shared_secret`, `cookie_secret`, optional `signing_key`). Required.
    #[serde(default)]
    pub secrets: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authenticate: Option<Authenticate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_provider: Option<IdentityProvider>,
    /// TLS Secrets served globally.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<String>,
    /// Secrets with `ca.crt`, joined into `certificate_authority`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ca_secrets: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<Cookie>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_claim_headers: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass_identity_headers: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_response_headers: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub programmatic_redirect_domains: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_proxy_protocol: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_access_token_allowed_audiences: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_log_fields: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorize_log_fields: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_flags: Option<BTreeMap<String, bool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalize_path: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge_slashes: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_with_escaped_slashes_action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers_with_underscores_action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<Timeouts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<Storage>,
    // Kept as raw JSON: rampart does not act on these yet, but they round-trip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otel: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downstream_mtls: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker_thresholds: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_broker: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Authenticate {
    #[serde(default)]
    pub url: String,
    /// Existed until upstream v0.30; accepted and ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_path: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityProvider {
    #[serde(default)]
    pub provider: String,
    /// Secret with `client_id` and `client_secret`.
    #[serde(default)]
    pub secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_params: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_params_secret: Option<String>,
    /// Deprecated: warning only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_from_secret: Option<String>,
    /// Deprecated: warning only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_directory: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cookie {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_only: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_site: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Timeouts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Storage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileStorage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresStorage>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileStorage {
    #[serde(default)]
    pub path: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostgresStorage {
    /// Secret with key `connection` (the DSN).
    #[serde(default)]
    pub secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret: Option<String>,
}

/// `status` (spec §6.3), written with merge patches on the status subresource.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PomeriumStatus {
    /// Keyed by `namespace/name` of the Ingress.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ingress: BTreeMap<String, ResourceStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings_status: Option<SettingsStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// RFC 3339 time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_at: Option<String>,
    #[serde(default)]
    pub reconciled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SettingsStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_at: Option<String>,
    #[serde(default)]
    pub reconciled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::Resource;

    #[test]
    fn resource_identity_and_camel_case_fields() {
        assert_eq!(Pomerium::plural(&()), "pomerium");
        assert_eq!(Pomerium::api_version(&()), "ingress.pomerium.io/v1");
        assert_eq!(
            Pomerium::url_path(&(), None),
            "/apis/ingress.pomerium.io/v1/pomerium"
        );
        let p: Pomerium = serde_yaml::from_str(
            "apiVersion: ingress.pomerium.io/v1\nkind: Pomerium\nmetadata: {name: global}\nspec:\n  secrets: pomerium/bootstrap\n  authenticate: {url: https://auth.example.com}\n  identityProvider: {provider: oidc, secret: pomerium/idp, requestParams: {a: b}}\n  unknownField: 1\n  timeouts: {read: 30s, write: 60s}\n",
        )
        .unwrap();
        assert_eq!(p.spec.secrets, "pomerium/bootstrap");
        let idp = p.spec.identity_provider.unwrap();
        assert_eq!(idp.provider, "oidc");
        assert_eq!(idp.request_params.unwrap()["a"], "b");
        assert_eq!(p.spec.timeouts.unwrap().write.as_deref(), Some("60s"));
    }
}
