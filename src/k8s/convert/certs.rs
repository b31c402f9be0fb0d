//! TLS certificates from Ingress Secrets (ingress-controller spec §4.6).

use std::collections::HashMap;

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

/// Route hosts, for matching certificates: exact hosts and their parent domains, counted so
/// routes can be added and removed one by one.
#[derive(Debug, Default, Clone)]
pub struct HostSet {
    hosts: HashMap<String, u32>,
    /// `rest` for every host `label.rest` (so SAN `*.rest` matches).
    parents: HashMap<String, u32>,
}

fn parent(host: &str) -> Option<&str> {
    match host.split_once('.') {
        Some((first, rest)) if !first.is_empty() && !rest.is_empty() => Some(rest),
        _ => None,
    }
}

fn dec(m: &mut HashMap<String, u32>, k: &str) {
    if let Some(n) = m.get_mut(k) {
        *n -= 1;
        if *n == 0 {
            m.remove(k);
        }
    }
}

impl HostSet {
    pub fn insert(&mut self, host: &str) {
        let host = host.to_ascii_lowercase();
        if let Some(p) = parent(&host) {
            *self.parents.entry(p.to_string()).or_default() += 1;
        }
        *self.hosts.entry(host).or_default() += 1;
    }

    /// Removes one occurrence of `host` (inserted before).
    pub fn remove(&mut self, host: &str) {
        let host = host.to_ascii_lowercase();
        if let Some(p) = parent(&host) {
            dec(&mut self.parents, p);
        }
        dec(&mut self.hosts, &host);
    }

    /// A SAN matches an exact host, or `*.rest` matches a one-label host under `rest`.
    pub fn matches_san(&self, san: &str) -> bool {
        if self.hosts.contains_key(san) {
            return true;
        }
        match san.strip_prefix("*.") {
            Some(rest) => self.parents.contains_key(rest),
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
