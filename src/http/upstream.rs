//! Upstream TLS: one rustls `ClientConfig` per distinct set of route TLS options
//! (`tls_skip_verify`, `tls_server_name`, `tls_custom_ca`, client certificate). Its `tls_key`
//! is also part of the keep-alive pool key in `h1client`.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use thiserror::Error;

use crate::config::route::UpstreamTls;

#[derive(Debug, Error)]
pub enum UpstreamTlsError {
    #[error("`tls_custom_ca`: certificate rejected: {0}")]
    BadCa(String),
    #[error("`tls_client_key`: no usable private key")]
    NoKey,
    #[error("`tls_client_cert`: {0}")]
    ClientCert(String),
    #[error("`tls_downstream_client_ca`: certificate rejected: {0}")]
    DownstreamCa(String),
}

/// Identifies a set of TLS options (equal options share a config and a client pool).
pub fn tls_key(tls: &UpstreamTls, extra_roots: &[Vec<u8>]) -> u64 {
    let mut h = DefaultHasher::new();
    tls.skip_verify.hash(&mut h);
    tls.server_name.hash(&mut h);
    tls.custom_ca.hash(&mut h);
    extra_roots.hash(&mut h);
    if let Some(c) = &tls.client_cert {
        c.chain.hash(&mut h);
        c.key_pem.hash(&mut h);
    }
    h.finish()
}

/// Builds the rustls client config for one set of route TLS options. `extra_roots` (global
/// `certificate_authority`) are added to the web PKI roots unless the route has `tls_custom_ca`.
pub fn client_tls_config(
    tls: &UpstreamTls,
    extra_roots: &[Vec<u8>],
) -> Result<Arc<ClientConfig>, UpstreamTlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions");
    let builder = if tls.skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
    } else {
        let mut roots = RootCertStore::empty();
        match &tls.custom_ca {
            Some(cas) => {
                for der in cas {
                    roots
                        .add(CertificateDer::from(der.clone()))
                        .map_err(|e| UpstreamTlsError::BadCa(e.to_string()))?;
                }
            }
            None => {
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                for der in extra_roots {
                    roots
                        .add(CertificateDer::from(der.clone()))
                        .map_err(|e| UpstreamTlsError::BadCa(e.to_string()))?;
                }
            }
        }
        builder.with_root_certificates(roots)
    };
    let mut cfg = match &tls.client_cert {
        Some(cc) => {
            let chain = cc
                .chain
                .iter()
                .map(|d| CertificateDer::from(d.clone()))
                .collect();
            let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &cc.key_pem[..])
                .ok()
                .flatten()
                .ok_or(UpstreamTlsError::NoKey)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| UpstreamTlsError::ClientCert(e.to_string()))?
        }
        None => builder.with_no_client_auth(),
    };
    // HTTP/1.1 to upstreams (upgrades need it; Envoy's default for upstreams as well).
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// `tls_skip_verify`: accept any upstream certificate.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
