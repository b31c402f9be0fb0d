//! `rampart gen-secrets --secrets=<ns>/<name>` (ingress-controller spec §8): creates the
//! bootstrap Secret the `Pomerium` object points at, unless it exists (then nothing changes).
//! Keys: `shared_secret` and `cookie_secret` (32 random bytes each) and `signing_key` (a new
//! P-256 key, PEM `EC PRIVATE KEY`).

use std::collections::BTreeMap;

use clap::Args;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{Api, PostParams};
use rand::RngCore;
use thiserror::Error;

#[derive(Debug, Clone, Args)]
pub struct GenSecretsArgs {
    /// The bootstrap Secret to create, `namespace/name`.
    #[arg(long, env = "SECRETS")]
    pub secrets: String,
    /// Kubernetes API URL instead of in-cluster/kubeconfig discovery (tests).
    #[arg(long, env = "KUBE_API_URL", hide = true)]
    pub kube_api_url: Option<String>,
}

#[derive(Debug, Error)]
pub enum GenSecretsError {
    /// Upstream's text (sic: it names the flag `pomerium-config`).
    #[error("pomerium-config={value}: {reason}")]
    BadFlag { value: String, reason: String },
    #[error("kubernetes client: {0}")]
    Kube(String),
    #[error("secret {0}: {1}")]
    Api(String, kube::Error),
    #[error("signing key: {0}")]
    Key(String),
}

/// What `gen-secrets` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generated {
    Created,
    AlreadyExists,
}

/// `namespace/name` → (namespace, name).
pub fn parse_ref(value: &str) -> Result<(String, String), GenSecretsError> {
    let bad = |reason: &str| GenSecretsError::BadFlag {
        value: value.to_string(),
        reason: reason.to_string(),
    };
    let (ns, name) = value
        .split_once('/')
        .ok_or_else(|| bad("missing namespace for resource"))?;
    if ns.is_empty() || name.is_empty() || name.contains('/') {
        return Err(bad("expected namespace/name"));
    }
    Ok((ns.to_string(), name.to_string()))
}

/// The Secret's data: fresh random secrets and a new signing key.
pub fn generate_data() -> Result<BTreeMap<String, ByteString>, GenSecretsError> {
    let mut rng = rand::rngs::OsRng;
    let mut random = || {
        let mut b = vec![0u8; 32];
        rng.fill_bytes(&mut b);
        ByteString(b)
    };
    let key = p256::SecretKey::random(&mut rand::rngs::OsRng);
    let pem = key
        .to_sec1_pem(p256::pkcs8::LineEnding::LF)
        .map_err(|e| GenSecretsError::Key(e.to_string()))?;
    Ok(BTreeMap::from([
        ("shared_secret".to_string(), random()),
        ("cookie_secret".to_string(), random()),
        (
            "signing_key".to_string(),
            ByteString(pem.as_bytes().to_vec()),
        ),
    ]))
}

/// Creates the Secret unless it exists.
pub async fn gen_secrets(
    client: kube::Client,
    secrets: &str,
) -> Result<Generated, GenSecretsError> {
    let (ns, name) = parse_ref(secrets)?;
    let api: Api<Secret> = Api::namespaced(client, &ns);
    let full = format!("{ns}/{name}");
    if api
        .get_opt(&name)
        .await
        .map_err(|e| GenSecretsError::Api(full.clone(), e))?
        .is_some()
    {
        return Ok(Generated::AlreadyExists);
    }
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(generate_data()?),
        ..Default::default()
    };
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(Generated::Created),
        // Created meanwhile by another run: keep it.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Generated::AlreadyExists),
        Err(e) => Err(GenSecretsError::Api(full, e)),
    }
}

/// The `gen-secrets` command.
pub async fn run(args: GenSecretsArgs) -> Result<(), GenSecretsError> {
    parse_ref(&args.secrets)?;
    let client = match &args.kube_api_url {
        Some(url) => {
            let uri = url
                .parse()
                .map_err(|e| GenSecretsError::Kube(format!("--kube-api-url {url:?}: {e}")))?;
            kube::Client::try_from(kube::Config::new(uri))
                .map_err(|e| GenSecretsError::Kube(e.to_string()))?
        }
        None => kube::Client::try_default()
            .await
            .map_err(|e| GenSecretsError::Kube(e.to_string()))?,
    };
    match gen_secrets(client, &args.secrets).await? {
        Generated::Created => tracing::info!(secret = %args.secrets, "bootstrap secret created"),
        Generated::AlreadyExists => {
            tracing::info!(secret = %args.secrets, "bootstrap secret already exists; not changed")
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_and_data() {
        assert_eq!(
            parse_ref("pomerium/bootstrap").unwrap(),
            ("pomerium".into(), "bootstrap".into())
        );
        assert_eq!(
            parse_ref("bootstrap").unwrap_err().to_string(),
            "pomerium-config=bootstrap: missing namespace for resource"
        );
        assert!(
            parse_ref("/x").is_err() && parse_ref("a/").is_err() && parse_ref("a/b/c").is_err()
        );
        let d = generate_data().unwrap();
        assert_eq!(d["shared_secret"].0.len(), 32);
        assert_eq!(d["cookie_secret"].0.len(), 32);
        assert_ne!(d["shared_secret"], d["cookie_secret"]);
        let pem = String::from_utf8(d["signing_key"].0.clone()).unwrap();
        assert!(pem.starts_with("-----BEGIN EC PRIVATE KEY-----"), "{pem}");
        assert!(p256::SecretKey::from_sec1_pem(&pem).is_ok());
    }
}
