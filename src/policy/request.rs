//! The request data criteria read. The proxy implements [`RequestView`] over its own request
//! type (no allocation); [`OwnedRequest`] is a simple owned implementation for the CLI and tests.

use std::net::IpAddr;

use sha2::{Digest, Sha256};

/// Read access to the parts of a request the policy engine looks at.
pub trait RequestView {
    /// Method as sent (`GET`, `OPTIONS`, ...), compared case-sensitively.
    fn method(&self) -> &str;
    /// Host the request was addressed to (informational: no criterion reads it today).
    fn host(&self) -> &str;
    /// Percent-decoded path without query, already normalised by the proxy (spec 3.4).
    fn path(&self) -> &str;
    /// Value of a request header; `name` is matched case-insensitively.
    fn header(&self, name: &str) -> Option<&[u8]>;
    /// The client address (socket peer or XFF-derived per `xff_num_trusted_hops`).
    fn source_ip(&self) -> Option<IpAddr>;
    /// The presented client certificate, if any. Build it once per TLS connection.
    fn client_certificate(&self) -> Option<&ClientCertificate>;
}

/// A presented leaf client certificate with everything the criteria need precomputed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// DER of the leaf certificate.
    pub der: Vec<u8>,
    /// True if it chains to the configured client CA (and passes CRL checks).
    pub valid: bool,
    /// SHA-256 of the DER.
    pub fingerprint: [u8; 32],
    /// SHA-256 of the SubjectPublicKeyInfo DER (`None` if the DER did not parse).
    pub spki_hash: Option<[u8; 32]>,
    /// rfc822Name SANs.
    pub san_email: Vec<String>,
    /// dNSName SANs.
    pub san_dns: Vec<String>,
    /// uniformResourceIdentifier SANs.
    pub san_uri: Vec<String>,
}

impl ClientCertificate {
    /// Parses the leaf DER once. A DER that does not parse still has a fingerprint, but no
    /// SPKI hash or SANs (so those conditions never match).
    pub fn from_der(der: Vec<u8>, valid: bool) -> ClientCertificate {
        let fingerprint: [u8; 32] = Sha256::digest(&der).into();
        let mut cert = ClientCertificate {
            der: Vec::new(),
            valid,
            fingerprint,
            spki_hash: None,
            san_email: Vec::new(),
            san_dns: Vec::new(),
            san_uri: Vec::new(),
        };
        if let Ok((_, parsed)) = x509_parser::parse_x509_certificate(&der) {
            cert.spki_hash = Some(Sha256::digest(parsed.public_key().raw).into());
            if let Ok(Some(san)) = parsed.subject_alternative_name() {
                use x509_parser::extensions::GeneralName;
                for name in &san.value.general_names {
                    match name {
                        GeneralName::RFC822Name(s) => cert.san_email.push(s.to_string()),
                        GeneralName::DNSName(s) => cert.san_dns.push(s.to_string()),
                        GeneralName::URI(s) => cert.san_uri.push(s.to_string()),
                        _ => {}
                    }
                }
            }
        }
        cert.der = der;
        cert
    }
}

/// An owned request for the CLI and tests.
#[derive(Debug, Clone, Default)]
pub struct OwnedRequest {
    pub method: String,
    pub host: String,
    pub path: String,
    /// (name, value) pairs; lookups are case-insensitive.
    pub headers: Vec<(String, String)>,
    pub source_ip: Option<IpAddr>,
    pub client_certificate: Option<ClientCertificate>,
}

impl OwnedRequest {
    /// A request with method and path (host `example.com`, no headers).
    pub fn new(method: &str, path: &str) -> OwnedRequest {
        OwnedRequest {
            method: method.to_string(),
            host: "example.com".to_string(),
            path: path.to_string(),
            ..OwnedRequest::default()
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: &str) -> OwnedRequest {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sets the client address.
    pub fn with_source_ip(mut self, ip: IpAddr) -> OwnedRequest {
        self.source_ip = Some(ip);
        self
    }

    /// Sets the client certificate.
    pub fn with_client_certificate(mut self, cert: ClientCertificate) -> OwnedRequest {
        self.client_certificate = Some(cert);
        self
    }
}

impl RequestView for OwnedRequest {
    fn method(&self) -> &str {
        &self.method
    }
    fn host(&self) -> &str {
        &self.host
    }
    fn path(&self) -> &str {
        &self.path
    }
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_bytes())
    }
    fn source_ip(&self) -> Option<IpAddr> {
        self.source_ip
    }
    fn client_certificate(&self) -> Option<&ClientCertificate> {
        self.client_certificate.as_ref()
    }
}

/// A borrowed view over an actix-web request, for the proxy's hot path (no allocation).
/// The proxy supplies what it computed itself: the normalised, percent-decoded path, the
/// client address (XFF-aware) and the connection's client certificate.
#[derive(Debug, Clone, Copy)]
pub struct ActixRequestView<'a> {
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub headers: &'a actix_web::http::header::HeaderMap,
    pub source_ip: Option<IpAddr>,
    pub client_certificate: Option<&'a ClientCertificate>,
}

impl<'a> ActixRequestView<'a> {
    /// Borrows method, host (URI authority, else the `Host` header, as the proxy routes) and
    /// headers from `req`.
    pub fn new(
        req: &'a actix_web::HttpRequest,
        normalised_path: &'a str,
        source_ip: Option<IpAddr>,
        client_certificate: Option<&'a ClientCertificate>,
    ) -> ActixRequestView<'a> {
        let host = crate::http::request::host_part(crate::http::request::request_authority(
            req.uri(),
            req.headers(),
        ));
        ActixRequestView {
            method: req.method().as_str(),
            host,
            path: normalised_path,
            headers: req.headers(),
            source_ip,
            client_certificate,
        }
    }
}

impl RequestView for ActixRequestView<'_> {
    fn method(&self) -> &str {
        self.method
    }
    fn host(&self) -> &str {
        self.host
    }
    fn path(&self) -> &str {
        self.path
    }
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.get(name).map(|v| v.as_bytes())
    }
    fn source_ip(&self) -> Option<IpAddr> {
        self.source_ip
    }
    fn client_certificate(&self) -> Option<&ClientCertificate> {
        self.client_certificate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actix_view_reads_the_request() {
        let req = actix_web::test::TestRequest::default()
            .method(actix_web::http::Method::OPTIONS)
            .uri("/a%20b?x=1")
            .insert_header(("Host", "app.example.com"))
            .insert_header(("Origin", "https://x"))
            .insert_header(("Access-Control-Request-Method", "GET"))
            .to_http_request();
        let view = ActixRequestView::new(&req, "/a b", "10.0.0.1".parse().ok(), None);
        assert_eq!(view.method(), "OPTIONS");
        assert_eq!(view.host(), "app.example.com");
        assert_eq!(view.path(), "/a b");
        assert_eq!(view.header("origin"), Some(&b"https://x"[..]));
        assert_eq!(
            view.header("Access-Control-Request-Method"),
            Some(&b"GET"[..])
        );
        assert_eq!(view.header("x-missing"), None);
        let p = crate::policy::compile_text(
            "allow: {and: [{cors_preflight: true}, {http_path: /a b}, {source_ip: 10.0.0.0/8}]}",
        )
        .unwrap();
        assert_eq!(
            p.evaluate(&view, None).decision,
            crate::policy::Decision::Allow
        );
    }

    #[test]
    fn owned_request_headers_are_case_insensitive() {
        let r = OwnedRequest::new("GET", "/").with_header("X-Thing", "v");
        assert_eq!(r.header("x-thing"), Some(&b"v"[..]));
        let bad = ClientCertificate::from_der(vec![1, 2, 3], true);
        assert!(bad.spki_hash.is_none() && bad.san_dns.is_empty());
        assert_eq!(bad.der, vec![1, 2, 3]);
    }
}
