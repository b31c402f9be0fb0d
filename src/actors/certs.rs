//! The certificate actor: loads the configured certificates (files or inline PEM), watches the
//! files, and publishes the set to the TLS resolver. A certificate that fails to load keeps its
//! last good version.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use actix::prelude::*;

use super::file_watch::{debounce, watch, FileWatch, FilesChanged};
use crate::config::CertificateSource;
use crate::http::tls::{load_pem, CertResolver, LoadedCert, TlsError};

/// A certificate handed over in memory (e.g. from a Kubernetes TLS Secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemPair {
    /// Where it came from (`namespace/name`), for logs and errors.
    pub name: String,
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

/// Plain logic: the current sources and the last good certificate of each.
#[derive(Default)]
pub struct CertLoader {
    sources: Vec<CertificateSource>,
    last_good: HashMap<CertificateSource, LoadedCert>,
    provided: Vec<LoadedCert>,
}

impl CertLoader {
    pub fn set_sources(&mut self, sources: Vec<CertificateSource>) {
        self.last_good.retain(|k, _| sources.contains(k));
        self.sources = sources;
    }

    /// Replaces the in-memory certificates; bad ones are reported and skipped.
    pub fn set_provided(&mut self, pairs: &[PemPair]) -> Vec<TlsError> {
        let mut errors = Vec::new();
        self.provided = pairs
            .iter()
            .filter_map(|p| match load_pem(&p.cert_pem, &p.key_pem, &p.name) {
                Ok(c) => Some(c),
                Err(e) => {
                    errors.push(e);
                    None
                }
            })
            .collect();
        errors
    }

    /// Files to watch.
    pub fn files(&self) -> Vec<PathBuf> {
        self.sources
            .iter()
            .flat_map(|s| [s.cert.file().cloned(), s.key.file().cloned()])
            .flatten()
            .collect()
    }

    /// Re-reads every source. Returns the certificates to serve and the errors of this pass
    /// (a failing source keeps its last good certificate).
    pub fn reload(&mut self) -> (Vec<LoadedCert>, Vec<String>) {
        let mut errors = Vec::new();
        for src in &self.sources {
            let what = src.cert.describe();
            let loaded = src
                .cert
                .read()
                .map_err(|e| format!("{what}: {e}"))
                .and_then(|cert| {
                    let key = src
                        .key
                        .read()
                        .map_err(|e| format!("{}: {e}", src.key.describe()))?;
                    load_pem(&cert, &key, &what).map_err(|e| match e {
                        TlsError::KeyMismatch { .. } => format!(
                            "{e} (key {}); keeping the previous pair until both files match",
                            src.key.describe()
                        ),
                        e => e.to_string(),
                    })
                });
            match loaded {
                Ok(c) => {
                    self.last_good.insert(src.clone(), c);
                }
                Err(e) => errors.push(e),
            }
        }
        let mut certs: Vec<LoadedCert> = self
            .sources
            .iter()
            .filter_map(|s| self.last_good.get(s).cloned())
            .collect();
        certs.extend(self.provided.iter().cloned());
        (certs, errors)
    }
}

pub struct CertActor {
    loader: CertLoader,
    resolver: Arc<CertResolver>,
    watch: Option<FileWatch>,
    pending: Option<SpawnHandle>,
}

impl CertActor {
    /// Loads `sources` now (errors are returned so startup can fail loudly), publishes them to
    /// `resolver` and keeps watching the files.
    pub fn start(
        resolver: Arc<CertResolver>,
        sources: Vec<CertificateSource>,
    ) -> Result<Addr<CertActor>, Vec<String>> {
        let mut loader = CertLoader::default();
        loader.set_sources(sources);
        let (certs, errors) = loader.reload();
        if !errors.is_empty() {
            return Err(errors);
        }
        resolver.set_certificates(&certs);
        Ok(CertActor {
            loader,
            resolver,
            watch: None,
            pending: None,
        }
        .start())
    }

    fn publish(&mut self) {
        let (certs, errors) = self.loader.reload();
        for e in &errors {
            tracing::error!(error = %e, "certificate reload failed; keeping the previous certificate");
        }
        tracing::info!(certificates = certs.len(), "certificates published");
        self.resolver.set_certificates(&certs);
    }

    fn rewatch(&mut self, ctx: &mut Context<Self>) {
        let files = self.loader.files();
        self.watch = None;
        if files.is_empty() {
            return;
        }
        match watch(&files, ctx.address().recipient()) {
            Ok(w) => self.watch = Some(w),
            Err(e) => tracing::error!(error = %e, "cannot watch certificate files"),
        }
    }
}

impl Actor for CertActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.rewatch(ctx);
    }
}

impl Handler<FilesChanged> for CertActor {
    type Result = ();

    fn handle(&mut self, _: FilesChanged, ctx: &mut Self::Context) {
        debounce(&mut self.pending, ctx, |act: &mut CertActor| {
            act.pending = None;
            act.publish();
        });
    }
}

/// New certificate sources from a config reload.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SetSources(pub Vec<CertificateSource>);

impl Handler<SetSources> for CertActor {
    type Result = ();

    fn handle(&mut self, msg: SetSources, ctx: &mut Self::Context) {
        self.loader.set_sources(msg.0);
        self.publish();
        self.rewatch(ctx);
    }
}

/// In-memory certificates (Kubernetes TLS Secrets), replacing the previous set.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SetProvided(pub Vec<PemPair>);

impl Handler<SetProvided> for CertActor {
    type Result = ();

    fn handle(&mut self, msg: SetProvided, _: &mut Self::Context) {
        for e in self.loader.set_provided(&msg.0) {
            tracing::error!(error = %e, "certificate rejected");
        }
        self.publish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::source::PemSource;

    fn write_cert(dir: &std::path::Path, name: &str, host: &str) -> CertificateSource {
        let c = rcgen::generate_simple_self_signed(vec![host.to_string()]).unwrap();
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, c.cert.pem()).unwrap();
        std::fs::write(&key, c.key_pair.serialize_pem()).unwrap();
        CertificateSource {
            cert: PemSource::File(cert),
            key: PemSource::File(key),
        }
    }

    #[test]
    fn bad_rotation_keeps_last_good() {
        let dir = tempfile::tempdir().unwrap();
        let src = write_cert(dir.path(), "a", "a.test");
        let mut loader = CertLoader::default();
        loader.set_sources(vec![src.clone()]);
        let (certs, errors) = loader.reload();
        assert!(errors.is_empty());
        assert_eq!(certs[0].names, vec!["a.test"]);
        std::fs::write(src.cert.file().unwrap(), "garbage").unwrap();
        let (certs, errors) = loader.reload();
        assert_eq!(certs.len(), 1, "last good kept");
        assert!(errors[0].contains("no PEM certificate found"), "{errors:?}");
        assert!(errors[0].contains("a.crt"), "{errors:?}");
        let src2 = write_cert(dir.path(), "a", "b.test");
        assert_eq!(src, src2);
        let (certs, errors) = loader.reload();
        assert!(errors.is_empty());
        assert_eq!(certs[0].names, vec!["b.test"]);
    }

    #[test]
    fn mismatched_rotation_keeps_the_previous_pair() {
        let dir = tempfile::tempdir().unwrap();
        let src = write_cert(dir.path(), "a", "old.test");
        let mut loader = CertLoader::default();
        loader.set_sources(vec![src.clone()]);
        assert!(loader.reload().1.is_empty());
        // The new certificate is written before its key.
        let next = rcgen::generate_simple_self_signed(vec!["new.test".to_string()]).unwrap();
        std::fs::write(src.cert.file().unwrap(), next.cert.pem()).unwrap();
        let (certs, errors) = loader.reload();
        assert_eq!(certs[0].names, vec!["old.test"], "previous pair kept");
        assert!(errors[0].contains("does not match"), "{errors:?}");
        assert!(
            errors[0].contains("a.crt") && errors[0].contains("a.key"),
            "{errors:?}"
        );
        std::fs::write(src.key.file().unwrap(), next.key_pair.serialize_pem()).unwrap();
        let (certs, errors) = loader.reload();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(certs[0].names, vec!["new.test"]);
    }

    #[test]
    fn provided_pairs_are_checked() {
        let mut loader = CertLoader::default();
        let c = rcgen::generate_simple_self_signed(vec!["k.test".to_string()]).unwrap();
        let errors = loader.set_provided(&[
            PemPair {
                name: "ns/good".into(),
                cert_pem: c.cert.pem().into_bytes(),
                key_pem: c.key_pair.serialize_pem().into_bytes(),
            },
            PemPair {
                name: "ns/bad".into(),
                cert_pem: b"x".to_vec(),
                key_pem: b"y".to_vec(),
            },
        ]);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].to_string().starts_with("ns/bad:"));
        assert_eq!(loader.reload().0.len(), 1);
    }
}
