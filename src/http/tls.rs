//! Downstream TLS: a certificate store chosen by SNI (exact name, then wildcard, then a generated
//! self-signed fallback), swapped atomically so new certificates apply to new handshakes without
//! dropping existing connections.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use thiserror::Error;
use x509_parser::prelude::*;

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("{what}: no PEM certificate found")]
    NoCertificate { what: String },
    #[error("{what}: no PEM private key found")]
    NoPrivateKey { what: String },
    #[error("{what}: unsupported private key: {reason}")]
    BadKey { what: String, reason: String },
    #[error("{what}: cannot parse certificate: {reason}")]
    BadCertificate { what: String, reason: String },
    #[error("{what}: the private key does not match the certificate")]
    KeyMismatch { what: String },
    #[error("cannot generate the fallback certificate: {0}")]
    Fallback(String),
}

/// One loaded certificate with the DNS names it serves.
#[derive(Debug, Clone)]
pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    /// SAN DNS names, lower-cased (`*.example.com` kept as written).
    pub names: Vec<String>,
    /// Expiry (unix seconds); when several certificates match a name the latest wins.
    pub not_after: i64,
    /// Where it came from, for logs.
    pub source: String,
}

/// Parses a PEM chain and key into a servable certificate. `what` names the source in errors.
pub fn load_pem(cert_pem: &[u8], key_pem: &[u8], what: &str) -> Result<LoadedCert, TlsError> {
    let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &cert_pem[..])
        .filter_map(Result::ok)
        .collect();
    let leaf = chain.first().ok_or_else(|| TlsError::NoCertificate {
        what: what.to_string(),
    })?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &key_pem[..])
        .ok()
        .flatten()
        .ok_or_else(|| TlsError::NoPrivateKey {
            what: what.to_string(),
        })?;
    let signing_key = any_supported_type(&key).map_err(|e| TlsError::BadKey {
        what: what.to_string(),
        reason: e.to_string(),
    })?;
    let (names, not_after) =
        leaf_names(leaf.as_ref()).map_err(|reason| TlsError::BadCertificate {
            what: what.to_string(),
            reason,
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    // A rotation that replaced one file before the other must not be served: every handshake
    // would fail.
    if let Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) =
        certified.keys_match()
    {
        return Err(TlsError::KeyMismatch {
            what: what.to_string(),
        });
    }
    Ok(LoadedCert {
        key: Arc::new(certified),
        names,
        not_after,
        source: what.to_string(),
    })
}

/// SAN DNS names (falling back to the CN when there are none) and the expiry of a DER cert.
pub fn leaf_names(der: &[u8]) -> Result<(Vec<String>, i64), String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        if let Some(cn) = cert.subject().iter_common_name().next() {
            if let Ok(cn) = cn.as_str() {
                names.push(cn.to_ascii_lowercase());
            }
        }
    }
    Ok((names, cert.validity().not_after.timestamp()))
}

/// An immutable set of certificates indexed for SNI lookup.
#[derive(Debug, Clone)]
pub struct CertStore {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by the suffix after `*.` (`example.com` for `*.example.com`).
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    /// Used when the client sends no SNI.
    default: Option<Arc<CertifiedKey>>,
    fallback: Arc<CertifiedKey>,
}

impl CertStore {
    /// Builds the index. For a name served by several certificates the latest `not_after` wins.
    pub fn new(certs: &[LoadedCert], fallback: Arc<CertifiedKey>) -> CertStore {
        let mut exact: HashMap<String, (i64, Arc<CertifiedKey>)> = HashMap::new();
        let mut wildcard: HashMap<String, (i64, Arc<CertifiedKey>)> = HashMap::new();
        for c in certs {
            for name in &c.names {
                let (map, key) = match name.strip_prefix("*.") {
                    Some(suffix) => (&mut wildcard, suffix.to_string()),
                    None => (&mut exact, name.clone()),
                };
                let newer = map.get(&key).is_none_or(|(na, _)| c.not_after > *na);
                if newer {
                    map.insert(key, (c.not_after, c.key.clone()));
                }
            }
        }
        CertStore {
            exact: exact.into_iter().map(|(k, (_, v))| (k, v)).collect(),
            wildcard: wildcard.into_iter().map(|(k, (_, v))| (k, v)).collect(),
            default: certs.first().map(|c| c.key.clone()),
            fallback,
        }
    }

    /// Picks the certificate for an SNI name: exact, then `*.parent`, then the fallback.
    pub fn select(&self, server_name: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = server_name else {
            return self
                .default
                .clone()
                .unwrap_or_else(|| self.fallback.clone());
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(k) = self.exact.get(&name) {
            return k.clone();
        }
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(k) = self.wildcard.get(parent) {
                return k.clone();
            }
        }
        self.fallback.clone()
    }

    pub fn fallback(&self) -> &Arc<CertifiedKey> {
        &self.fallback
    }
}

/// Generates the self-signed certificate served when nothing else matches.
pub fn self_signed_fallback() -> Result<Arc<CertifiedKey>, TlsError> {
    let cert = rcgen::generate_simple_self_signed(vec![
        "localhost".to_string(),
        "rampart-fallback.invalid".to_string(),
    ])
    .map_err(|e| TlsError::Fallback(e.to_string()))?;
    let loaded = load_pem(
        cert.cert.pem().as_bytes(),
        cert.key_pair.serialize_pem().as_bytes(),
        "fallback",
    )?;
    Ok(loaded.key)
}

/// The rustls resolver the HTTPS listener uses; reads the current store on every handshake.
#[derive(Debug)]
pub struct CertResolver {
    store: ArcSwap<CertStore>,
}

impl CertResolver {
    /// A resolver serving only a freshly generated self-signed fallback until certificates arrive.
    pub fn new() -> Arc<CertResolver> {
        let fallback = self_signed_fallback().expect("rcgen generates a P-256 certificate");
        Arc::new(CertResolver {
            store: ArcSwap::from_pointee(CertStore::new(&[], fallback)),
        })
    }

    /// Replaces the served certificates (new handshakes only; open connections are untouched).
    pub fn set_certificates(&self, certs: &[LoadedCert]) {
        let fallback = self.store.load().fallback().clone();
        self.store.store(Arc::new(CertStore::new(certs, fallback)));
    }

    pub fn store(&self) -> Arc<CertStore> {
        self.store.load_full()
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        HANDSHAKE_SNI.with(|sni| {
            *sni.borrow_mut() = hello.server_name().map(|n| n.to_ascii_lowercase());
        });
        Some(self.store.load().select(hello.server_name()))
    }
}

thread_local! {
    /// The SNI of the handshake this thread is processing. rustls resolves the certificate
    /// and then, in the same call on the same thread, asks the client-certificate verifier
    /// whether to request one; this carries the name from the first to the second.
    static HANDSHAKE_SNI: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// The hosts whose routes have a `tls_downstream_client_ca`: handshakes for them ask for a
/// client certificate (set with each published route table; one proxy per process).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ClientCertHosts {
    pub exact: std::collections::HashSet<String>,
    /// Wildcard suffixes (`.example.com` for `*.example.com`).
    pub suffixes: Vec<String>,
    /// A `https://*` route has a client CA: every handshake asks.
    pub any: bool,
}

impl ClientCertHosts {
    /// Whether a handshake for `sni` asks for a client certificate. Without SNI, it asks when
    /// any route has a client CA (the request's Host then picks the route).
    pub fn wants(&self, sni: Option<&str>) -> bool {
        match sni {
            _ if self.any => true,
            None => !self.exact.is_empty() || !self.suffixes.is_empty(),
            Some(name) => {
                self.exact.contains(name)
                    || self
                        .suffixes
                        .iter()
                        .any(|s| name.len() > s.len() && name.ends_with(s.as_str()))
            }
        }
    }
}

static CLIENT_CERT_HOSTS: std::sync::LazyLock<ArcSwap<ClientCertHosts>> =
    std::sync::LazyLock::new(|| ArcSwap::from_pointee(ClientCertHosts::default()));

/// Sets which hosts ask for client certificates in new handshakes.
pub fn request_client_certificates(hosts: ClientCertHosts) {
    if **CLIENT_CERT_HOSTS.load() != hosts {
        CLIENT_CERT_HOSTS.store(Arc::new(hosts));
    }
}

/// Asks for a client certificate (never requires one) in handshakes for the hosts of routes
/// with a client CA (`ClientCertHosts`), and accepts any chain whose handshake
/// signature checks out. The chain is verified per request against the CA of the route the
/// request matched (`RouteEntry::client_certificate`), so the PPL `client_certificate` and
/// `invalid_client_certificate` criteria decide, as with Pomerium's default
/// `policy_with_default_deny` enforcement.
#[derive(Debug)]
pub struct OptionalClientCertificate {
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl OptionalClientCertificate {
    pub fn new(provider: &rustls::crypto::CryptoProvider) -> OptionalClientCertificate {
        OptionalClientCertificate {
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ClientCertVerifier for OptionalClientCertificate {
    fn offer_client_auth(&self) -> bool {
        let hosts = CLIENT_CERT_HOSTS.load();
        if !hosts.any && hosts.exact.is_empty() && hosts.suffixes.is_empty() {
            return false;
        }
        HANDSHAKE_SNI.with(|sni| hosts.wants(sni.borrow().as_deref()))
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The client certificate chain a TLS connection presented (connection data for requests).
#[derive(Debug, Clone)]
pub struct PeerCertificates(pub Arc<Vec<CertificateDer<'static>>>);

impl PeerCertificates {
    /// The chain a client presented in this TLS handshake, if any.
    pub fn of(conn: &rustls::ServerConnection) -> Option<PeerCertificates> {
        let certs = conn.peer_certificates()?;
        Some(PeerCertificates(Arc::new(
            certs.iter().map(|c| c.clone().into_owned()).collect(),
        )))
    }

    /// The chain of the request's connection: connection data on HTTP/1.1, a request
    /// extension on HTTP/2 (served by hyper, which has no actix connection data).
    pub fn of_request(req: &actix_web::HttpRequest) -> Option<PeerCertificates> {
        use actix_web::HttpMessage;
        req.conn_data::<PeerCertificates>()
            .cloned()
            .or_else(|| req.extensions().get::<PeerCertificates>().cloned())
    }
}

/// Verifies client certificates against one route's `tls_downstream_client_ca`.
pub fn client_ca_verifier(ca_der: &[Vec<u8>]) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for der in ca_der {
        roots
            .add(CertificateDer::from(der.clone()))
            .map_err(|e| e.to_string())?;
    }
    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .allow_unauthenticated()
        .build()
        .map_err(|e| e.to_string())
}

/// Whether `chain` (leaf first) chains to the CA behind `verifier`.
pub fn client_chain_valid(verifier: &dyn ClientCertVerifier, chain: &[CertificateDer<'_>]) -> bool {
    let Some((leaf, intermediates)) = chain.split_first() else {
        return false;
    };
    verifier
        .verify_client_cert(leaf, intermediates, UnixTime::now())
        .is_ok()
}

/// The downstream rustls config: HTTP/2 and HTTP/1.1 by ALPN, certificates from `resolver`,
/// client certificates asked for while a route wants them.
pub fn server_config(resolver: Arc<CertResolver>) -> rustls::ServerConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(OptionalClientCertificate::new(&provider));
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    cfg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_for(names: &[&str]) -> LoadedCert {
        let c = rcgen::generate_simple_self_signed(
            names.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        load_pem(
            c.cert.pem().as_bytes(),
            c.key_pair.serialize_pem().as_bytes(),
            "test",
        )
        .unwrap()
    }

    #[test]
    fn sni_exact_then_wildcard_then_fallback() {
        let a = cert_for(&["a.example.com"]);
        let w = cert_for(&["*.example.com"]);
        let fallback = self_signed_fallback().unwrap();
        let store = CertStore::new(&[a.clone(), w.clone()], fallback.clone());
        assert!(Arc::ptr_eq(&store.select(Some("a.example.com")), &a.key));
        assert!(Arc::ptr_eq(&store.select(Some("A.Example.COM")), &a.key));
        assert!(Arc::ptr_eq(&store.select(Some("b.example.com")), &w.key));
        // A wildcard covers one label only.
        assert!(Arc::ptr_eq(
            &store.select(Some("x.b.example.com")),
            &fallback
        ));
        assert!(Arc::ptr_eq(&store.select(Some("other.test")), &fallback));
        assert!(Arc::ptr_eq(&store.select(None), &a.key));
    }

    #[test]
    fn client_certificates_are_asked_for_the_hosts_of_client_ca_routes() {
        let hosts = ClientCertHosts {
            exact: ["mtls.example.com".to_string()].into_iter().collect(),
            suffixes: vec![".pki.test".into()],
            any: false,
        };
        assert!(hosts.wants(Some("mtls.example.com")));
        assert!(hosts.wants(Some("a.pki.test")));
        assert!(!hosts.wants(Some("pki.test")));
        assert!(!hosts.wants(Some("open.example.com")));
        assert!(hosts.wants(None));
        assert!(!ClientCertHosts::default().wants(None));
        let any = ClientCertHosts {
            any: true,
            ..ClientCertHosts::default()
        };
        assert!(any.wants(Some("whatever.test")));
    }

    #[test]
    fn names_come_from_san() {
        let c = cert_for(&["one.test", "*.two.test"]);
        assert_eq!(c.names, vec!["one.test", "*.two.test"]);
    }

    #[test]
    fn errors_name_the_source() {
        let err = load_pem(b"nope", b"nope", "/etc/x.pem").unwrap_err();
        assert_eq!(err.to_string(), "/etc/x.pem: no PEM certificate found");
        let c = rcgen::generate_simple_self_signed(vec!["a".to_string()]).unwrap();
        let err = load_pem(c.cert.pem().as_bytes(), b"", "k.pem").unwrap_err();
        assert_eq!(err.to_string(), "k.pem: no PEM private key found");
        let other = rcgen::generate_simple_self_signed(vec!["b".to_string()]).unwrap();
        let err = load_pem(
            c.cert.pem().as_bytes(),
            other.key_pair.serialize_pem().as_bytes(),
            "c.pem",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "c.pem: the private key does not match the certificate"
        );
    }
}
