//! Values that are either inline (base64-encoded PEM, as Pomerium accepts) or a file path.

use std::path::PathBuf;

use base64::Engine;

/// Where a PEM blob comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PemSource {
    Inline(Vec<u8>),
    File(PathBuf),
}

impl PemSource {
    /// Interprets a config value: base64 that decodes to PEM text is inline, raw PEM text is
    /// inline, anything else is a file path.
    pub fn from_value(value: &str) -> PemSource {
        let trimmed = value.trim();
        if trimmed.starts_with("-----BEGIN") {
            return PemSource::Inline(trimmed.as_bytes().to_vec());
        }
        if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(trimmed) {
            if bytes.starts_with(b"-----BEGIN") {
                return PemSource::Inline(bytes);
            }
        }
        PemSource::File(PathBuf::from(trimmed))
    }

    pub fn file(&self) -> Option<&PathBuf> {
        match self {
            PemSource::File(p) => Some(p),
            PemSource::Inline(_) => None,
        }
    }

    /// Reads the bytes (file contents for a path).
    pub fn read(&self) -> std::io::Result<Vec<u8>> {
        match self {
            PemSource::Inline(b) => Ok(b.clone()),
            PemSource::File(p) => std::fs::read(p),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            PemSource::Inline(_) => "inline PEM".into(),
            PemSource::File(p) => p.display().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_inline_and_files() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let b64 = base64::engine::general_purpose::STANDARD.encode(pem);
        assert_eq!(
            PemSource::from_value(&b64),
            PemSource::Inline(pem.as_bytes().to_vec())
        );
        assert!(matches!(PemSource::from_value(pem), PemSource::Inline(_)));
        assert_eq!(
            PemSource::from_value("/etc/tls/cert.pem"),
            PemSource::File("/etc/tls/cert.pem".into())
        );
    }
}
