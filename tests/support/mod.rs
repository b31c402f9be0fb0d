//! Test helpers: certificates (rcgen), HTTP/HTTPS/websocket upstreams started in-process,
//! the real `rampart` binary spawned with a config file, and HTTPS clients trusting the test CA.
#![allow(dead_code)]

pub mod browser;
pub mod fake_kube;
pub mod k8s;
pub mod oidc;
pub mod process;
pub mod redis;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

/// A free localhost port (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A test CA and leaf certificates signed by it.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    pub pem: String,
}

pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let pem = cert.pem();
        Ca { cert, key, pem }
    }

    /// A rustls root store holding only this CA.
    pub fn root_store(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut self.pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        roots
    }

    /// A rustls client config trusting only this CA, without a client certificate.
    pub fn client_config(&self) -> rustls::ClientConfig {
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(self.root_store())
        .with_no_client_auth()
    }

    pub fn leaf(&self, names: &[&str]) -> Leaf {
        let params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

impl Leaf {
    /// A rustls server config presenting this certificate, without client authentication.
    pub fn server_config(&self) -> rustls::ServerConfig {
        let (certs, key) = self.cert_and_key();
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap()
    }

    /// The parsed certificate chain and private key.
    pub fn cert_and_key(
        &self,
    ) -> (
        Vec<rustls::pki_types::CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ) {
        let certs = rustls_pemfile::certs(&mut self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls_pemfile::private_key(&mut self.key_pem.as_bytes())
            .unwrap()
            .unwrap();
        (certs, key)
    }

    /// Writes `name.crt` / `name.key` into `dir`; returns the paths.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let c = dir.join(format!("{name}.crt"));
        let k = dir.join(format!("{name}.key"));
        std::fs::write(&c, &self.cert_pem).unwrap();
        std::fs::write(&k, &self.key_pem).unwrap();
        (c, k)
    }
}

// ---------------------------------------------------------------------------------------
// Upstreams

/// An actix-web upstream on its own thread. Handlers:
/// - anything else: JSON echo `{upstream, method, uri, headers{name:[values]}, body_len}`
/// - `/upload`: counts the streamed body without keeping it: `received <n>`
/// - `/download`: streams 100 MiB of zeros
/// - `/sse`: 5 server-sent events 400 ms apart
/// - `/slow`: answers after 3 s
/// - `/stall`: sends one chunk then nothing (never ends)
pub struct Upstream {
    pub addr: SocketAddr,
    pub name: String,
}

fn echo_json(name: &str, req: &HttpRequest, body_len: usize) -> serde_json::Value {
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in req.headers().iter() {
        headers
            .entry(k.as_str().to_string())
            .or_default()
            .push(v.to_str().unwrap_or("").to_string());
    }
    serde_json::json!({
        "upstream": name,
        "method": req.method().as_str(),
        // The request target (HTTP/2 servers see an absolute URI built from the pseudo-headers).
        "uri": req.uri().path_and_query().map_or("/", |p| p.as_str()),
        "version": format!("{:?}", req.version()),
        "headers": headers,
        "body_len": body_len,
    })
}

async fn echo_handler(req: HttpRequest, body: Bytes, name: web::Data<String>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("x-upstream", name.as_str()))
        .insert_header(("x-frame-options", "DENY-FROM-UPSTREAM"))
        .json(echo_json(&name, &req, body.len()))
}

async fn upload(mut payload: web::Payload) -> HttpResponse {
    let mut n: u64 = 0;
    while let Some(chunk) = payload.next().await {
        n += chunk.unwrap().len() as u64;
    }
    HttpResponse::Ok().body(format!("received {n}"))
}

async fn sse() -> HttpResponse {
    let stream = futures::stream::unfold(0u32, |i| async move {
        if i >= 5 {
            return None;
        }
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        Some((
            Ok::<_, actix_web::Error>(Bytes::from(format!("data: event {i}\n\n"))),
            i + 1,
        ))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .streaming(stream)
}

async fn download() -> HttpResponse {
    let chunk = Bytes::from(vec![0u8; 1024 * 1024]);
    let stream =
        futures::stream::iter((0..100).map(move |_| Ok::<_, actix_web::Error>(chunk.clone())));
    HttpResponse::Ok().streaming(stream)
}

async fn slow() -> HttpResponse {
    tokio::time::sleep(Duration::from_secs(3)).await;
    HttpResponse::Ok().body("slow")
}

async fn stall() -> HttpResponse {
    let first = futures::stream::once(async { Ok::<_, actix_web::Error>(Bytes::from("first")) });
    HttpResponse::Ok().streaming(first.chain(futures::stream::pending()))
}

fn upstream_app(cfg: &mut web::ServiceConfig) {
    cfg.route("/upload", web::post().to(upload))
        .route("/sse", web::get().to(sse))
        .route("/download", web::get().to(download))
        .route("/slow", web::get().to(slow))
        .route("/stall", web::get().to(stall))
        .default_service(web::to(echo_handler));
}

impl Upstream {
    pub fn start(name: &str) -> Upstream {
        Self::start_inner(name, None)
    }

    /// HTTPS upstream serving `leaf`.
    pub fn start_tls(name: &str, leaf: &Leaf) -> Upstream {
        Self::start_inner(name, Some(leaf.server_config()))
    }

    /// HTTPS upstream serving `leaf` that requires a client certificate signed by `client_ca`.
    pub fn start_mtls(name: &str, leaf: &Leaf, client_ca_pem: &str) -> Upstream {
        let (certs, key) = leaf.cert_and_key();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut client_ca_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .unwrap();
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .unwrap();
        Self::start_inner(name, Some(cfg))
    }

    fn start_inner(name: &str, tls: Option<rustls::ServerConfig>) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let n = name.to_string();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let data = web::Data::new(n);
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(data.clone())
                        .app_data(web::PayloadConfig::new(16 * 1024 * 1024))
                        .configure(upstream_app)
                })
                .workers(2)
                .disable_signals();
                let server = match tls {
                    Some(cfg) => server.listen_rustls_0_23(listener, cfg).unwrap(),
                    None => server.listen(listener).unwrap(),
                };
                let server = server.run();
                tx.send(()).unwrap();
                let _ = server.await;
            })
        });
        rx.recv().unwrap();
        Upstream {
            addr,
            name: name.to_string(),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// A websocket echo upstream (tokio-tungstenite) on its own thread.
pub fn websocket_echo() -> SocketAddr {
    websocket_echo_inner(None)
}

/// A websocket echo upstream over TLS serving `leaf`.
pub fn websocket_echo_tls(leaf: &Leaf) -> SocketAddr {
    websocket_echo_inner(Some(tokio_rustls::TlsAcceptor::from(Arc::new(
        leaf.server_config(),
    ))))
}

async fn echo_messages<S>(io: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let Ok(mut ws) = tokio_tungstenite::accept_async(io).await else {
        return;
    };
    while let Some(Ok(msg)) = ws.next().await {
        if msg.is_text() || msg.is_binary() {
            if ws.send(msg).await.is_err() {
                break;
            }
        } else if msg.is_close() {
            break;
        }
    }
}

fn websocket_echo_inner(tls: Option<tokio_rustls::TlsAcceptor>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                echo_messages(stream).await;
                            }
                        }
                        None => echo_messages(tcp).await,
                    }
                });
            }
        })
    });
    addr
}

// ---------------------------------------------------------------------------------------
// The proxy binary

pub struct Proxy {
    child: Child,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    pub port: u16,
}

impl Proxy {
    /// Writes `config` to a temp dir and starts `rampart serve` on it; waits until `port`
    /// accepts connections.
    pub fn start(config: &str, port: u16) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, config, port)
    }

    /// Starts `rampart serve` on a free port over plain HTTP (`insecure_server`): the config is
    /// `address`, `insecure_server: true`, `extra` (global settings), then `routes:` and
    /// `routes`.
    pub fn start_insecure(extra: &str, routes: &str) -> Proxy {
        let port = free_port();
        Proxy::start(
            &format!("address: 127.0.0.1:{port}\ninsecure_server: true\n{extra}routes:\n{routes}"),
            port,
        )
    }

    /// Starts `rampart serve` on a free port with TLS: a certificate for `names` signed by
    /// `ca` is written to the temp dir as `server.crt` / `server.key`, and the config is
    /// `address`, `certificate_file`, `certificate_key_file`, then `rest`.
    pub fn start_tls(ca: &Ca, names: &[&str], rest: &str) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = ca.leaf(names).write(dir.path(), "server");
        let port = free_port();
        let config = format!(
            "address: 127.0.0.1:{port}\ncertificate_file: {}\ncertificate_key_file: {}\n{rest}",
            cert.display(),
            key.display()
        );
        Self::start_in(dir, &config, port)
    }

    /// The certificate and key files `start_tls` wrote.
    pub fn cert_paths(&self) -> (PathBuf, PathBuf) {
        (
            self.dir.path().join("server.crt"),
            self.dir.path().join("server.key"),
        )
    }

    /// Like `start`, in a temp dir the caller prepared (certificates written into it).
    pub fn start_in(dir: tempfile::TempDir, config: &str, port: u16) -> Proxy {
        let config_path = dir.path().join("config.yaml");
        std::fs::write(&config_path, config).unwrap();
        let log_path = dir.path().join("proxy.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_rampart"))
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .arg("--shutdown-grace-seconds")
            .arg("2")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut proxy = Proxy {
            child,
            dir,
            config_path,
            log_path,
            port,
        };
        proxy.wait_listening();
        proxy
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("proxy exited early ({status}):\n{}", self.log());
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("proxy did not listen on {}:\n{}", self.port, self.log());
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Resident set size of the proxy process in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// Replaces the config file (write to a temp file and rename, as editors and k8s do).
    pub fn rewrite_config(&self, config: &str) {
        let tmp = self.dir.path().join("config.yaml.tmp");
        let mut f = std::fs::File::create(&tmp).unwrap();
        f.write_all(config.as_bytes()).unwrap();
        f.sync_all().unwrap();
        std::fs::rename(&tmp, &self.config_path).unwrap();
    }

    /// Sends SIGTERM and waits for exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "proxy did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// Clients

/// An HTTPS client trusting only `ca_pem`, resolving every `host` to the proxy.
pub fn https_client(ca_pem: &str, proxy: SocketAddr, hosts: &[&str]) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60));
    for h in hosts {
        b = b.resolve(h, proxy);
    }
    b.build().unwrap()
}

/// A plain-HTTP client resolving every `host` to the proxy (for `insecure_server`).
pub fn http_client(proxy: SocketAddr, hosts: &[&str]) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60));
    for h in hosts {
        b = b.resolve(h, proxy);
    }
    b.build().unwrap()
}

/// The DNS names in the certificate a TLS server presents for `sni`.
pub async fn presented_names(addr: SocketAddr, sni: &str) -> Vec<String> {
    #[derive(Debug)]
    struct AcceptAll;
    impl rustls::client::danger::ServerCertVerifier for AcceptAll {
        fn verify_server_cert(
            &self,
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            rustls::crypto::ring::default_provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(AcceptAll))
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(
            rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let (_, conn) = tls.get_ref();
    let leaf = conn.peer_certificates().unwrap()[0].clone();
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).unwrap();
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push(d.to_string());
            }
        }
    }
    names
}

/// The Prometheus text the metrics listener at `metrics` serves on `/metrics`.
pub async fn metrics_text(metrics: SocketAddr) -> String {
    reqwest::get(format!("http://{metrics}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// GETs `http://{host}:{redirect_port}{path}` from the plain-HTTP redirect listener and asserts
/// a 301 to `https://{host}:{https_port}{path}` (path and query kept).
pub async fn assert_https_redirect(host: &str, redirect_port: u16, path: &str, https_port: u16) {
    let resp = http_client(SocketAddr::from(([127, 0, 0, 1], redirect_port)), &[host])
        .get(format!("http://{host}:{redirect_port}{path}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 301);
    assert_eq!(
        resp.headers()["location"],
        format!("https://{host}:{https_port}{path}").as_str()
    );
}

/// Reads a JSON echo from the upstream.
pub async fn echo(resp: reqwest::Response) -> serde_json::Value {
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// One header value from an echo (first value), or None.
pub fn header<'a>(echo: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    echo["headers"][name][0].as_str()
}
