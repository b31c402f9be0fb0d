//! STAND-IN (proxy branch) for the lead's certificate actor: loads the configured certificates
//! once into the resolver. The lead's version on `main` (with file watching) replaces this file.

use std::sync::Arc;

use crate::config::CertificateSource;
use crate::http::tls::{load_pem, CertResolver, TlsError};

pub struct CertActor;

impl CertActor {
    /// Loads `sources` into `resolver`. Returns the first load error.
    pub fn start(
        resolver: Arc<CertResolver>,
        sources: Vec<CertificateSource>,
    ) -> Result<(), TlsError> {
        let mut loaded = Vec::new();
        for s in &sources {
            let what = s.cert.describe();
            let cert = s
                .cert
                .read()
                .map_err(|_| TlsError::NoCertificate { what: what.clone() })?;
            let key = s
                .key
                .read()
                .map_err(|_| TlsError::NoPrivateKey { what: what.clone() })?;
            loaded.push(load_pem(&cert, &key, &what)?);
        }
        resolver.set_certificates(&loaded);
        Ok(())
    }
}
