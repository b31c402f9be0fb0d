//! TLS certificates from Ingress Secrets (ingress-controller spec §4.6).

use std::collections::HashSet;

use k8s_openapi::api::core::v1::Secret;
use x509_parser::extensions::GeneralName;

use super::context::secret_bytes;

/// A TLS Secret's certificate and key, with what matching needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsCert {
    pub namespace: String,
    pub name: String,
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// SAN DNS names (lower-cased).
    pub dns_names: Vec<String>,
    /// `NotAfter`, Unix seconds (the latest wins when several certs match a host).
    pub not_after: i64,
}

/// Decodes a `kubernetes.io/tls` Secret. The error is upstream's text (the caller adds
/// `removing unused certs: `).
pub fn tls_cert(namespace: &str, name: &str, secret: &Secret) -> Result<TlsCert, String> {
    let cert_pem = secret_bytes(secret, "tls.crt").unwrap_or_default().to_vec();
    let key_pem = secret_bytes(secret, "tls.key").unwrap_or_default().to_vec();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&cert_pem)
        .map_err(|_| "failed to decode cert block".to_string())?;
    let cert = pem
        .parse_x509()
        .map_err(|e| format!("failed to parse certificate: {e}"))?;
    let mut dns_names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                dns_names.push(d.to_ascii_lowercase());
            }
        }
    }
    Ok(TlsCert {
        namespace: namespace.to_string(),
        name: name.to_string(),
        cert_pem,
        key_pem,
        dns_names,
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// Route hosts, for matching certificates: exact hosts and their parent domains.
#[derive(Debug, Default)]
pub struct HostSet {
    hosts: HashSet<String>,
    /// `rest` for every host `label.rest` (so SAN `*.rest` matches).
    parents: HashSet<String>,
}

impl HostSet {
    pub fn insert(&mut self, host: &str) {
        let host = host.to_ascii_lowercase();
        if let Some((first, rest)) = host.split_once('.') {
            if !first.is_empty() && !rest.is_empty() {
                self.parents.insert(rest.to_string());
            }
        }
        self.hosts.insert(host);
    }

    /// A SAN matches an exact host, or `*.rest` matches a one-label host under `rest`.
    pub fn matches_san(&self, san: &str) -> bool {
        if self.hosts.contains(san) {
            return true;
        }
        match san.strip_prefix("*.") {
            Some(rest) => self.parents.contains(rest),
            None => false,
        }
    }

    pub fn matches_cert(&self, cert: &TlsCert) -> bool {
        cert.dns_names.iter().any(|n| self.matches_san(n))
    }
}

/// Host part of a route `from` (`https://host[:port]`), lower-cased.
pub fn from_host(from: &str) -> &str {
    let rest = from.split_once("://").map(|(_, r)| r).unwrap_or(from);
    let rest = rest.split('/').next().unwrap_or(rest);
    match rest.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => rest,
    }
}
