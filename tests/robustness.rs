//! Robustness against hostile upstreams and damaged inputs, through the real `rampart` binary:
//! an upstream that breaks HTTP framing (stray responses, conflicting or signed
//! `Content-Length`, oversized heads), certificate rotation with a key that does not match,
//! empty or truncated config files, Redis restarts and outages, and a damaged redb file.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use support::redis::Redis;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_rampart");

// ---------------------------------------------------------------------------------------
// A raw upstream that answers by path with exact bytes.

const STRAY: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nSTRAY";

fn ok_response() -> Vec<u8> {
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec()
}

fn raw_response(path: &str) -> Vec<u8> {
    match path {
        "/dup-length" => {
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 12\r\n\r\nokSMUGGLED!!"
                .to_vec()
        }
        "/plus-length" => b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok".to_vec(),
        "/big-head" => {
            let mut head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n".to_vec();
            for i in 0..70 {
                head.extend_from_slice(format!("x-pad-{i}: {}\r\n", "a".repeat(1024)).as_bytes());
            }
            head.extend_from_slice(b"\r\nok");
            head
        }
        _ => ok_response(),
    }
}

/// Serves keep-alive connections; `/stray` is answered, then 300 ms later a second,
/// unrequested response follows on the same connection.
fn raw_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            std::thread::spawn(move || serve_raw(conn));
        }
    });
    addr
}

fn serve_raw(mut conn: TcpStream) {
    let mut buf = Vec::new();
    loop {
        let end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            let mut chunk = [0u8; 4096];
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        buf.drain(..end);
        let path = head.split(' ').nth(1).unwrap_or("/").to_string();
        if conn.write_all(&raw_response(&path)).is_err() {
            return;
        }
        if path == "/stray" {
            let mut late = conn.try_clone().unwrap();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                let _ = late.write_all(STRAY);
            });
        }
    }
}

fn public_route(host: &str, to: &str) -> String {
    format!("  - {{from: https://{host}, to: {to}, allow_public_unauthenticated_access: true}}\n")
}

/// Sends `n` concurrent GETs of `path`; returns the bodies that were not the expected "ok".
async fn wrong_answers(client: &reqwest::Client, port: u16, path: &str, n: usize) -> Vec<String> {
    let requests = (0..n).map(|_| {
        let client = client.clone();
        let url = format!("http://a.example.com:{port}{path}");
        async move {
            let r = client.get(url).send().await.unwrap();
            format!("{} {}", r.status().as_u16(), r.text().await.unwrap())
        }
    });
    futures::future::join_all(requests)
        .await
        .into_iter()
        .filter(|b| b != "200 ok")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stray_upstream_response_never_reaches_another_client() {
    let up = raw_upstream();
    let proxy = Proxy::start_insecure("", &public_route("a.example.com", &format!("http://{up}")));
    let client = http_client(proxy.addr(), &["a.example.com"]);
    let port = proxy.port;
    // Complete responses on many connections (spread over the workers), then a stray response
    // lands on each idle pooled connection.
    assert_eq!(
        wrong_answers(&client, port, "/stray", 40).await,
        Vec::<String>::new()
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let wrong = wrong_answers(&client, port, "/", 40).await;
    assert!(wrong.is_empty(), "{wrong:?}\n{}", proxy.log());
    assert!(proxy.log().contains("not reused"), "{}", proxy.log());
    // Under load, with a stray after every response: a stray arriving while the next request
    // is in flight would pass for its answer, so this upstream's connections are no longer
    // reused at all.
    let deadline = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < deadline {
        let wrong = wrong_answers(&client, port, "/stray", 40).await;
        assert!(wrong.is_empty(), "{wrong:?}\n{}", proxy.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn malformed_upstream_framing_is_a_502() {
    let up = raw_upstream();
    let proxy = Proxy::start_insecure("", &public_route("a.example.com", &format!("http://{up}")));
    let client = http_client(proxy.addr(), &["a.example.com"]);
    let mut statuses = Vec::new();
    for path in ["/dup-length", "/plus-length", "/big-head"] {
        let r = client
            .get(format!("http://a.example.com:{}{path}", proxy.port))
            .send()
            .await
            .unwrap();
        statuses.push((path, r.status().as_u16()));
    }
    assert_eq!(
        statuses,
        [
            ("/dup-length", 502),
            ("/plus-length", 502),
            ("/big-head", 502)
        ]
    );
    // The same upstream still serves well-formed responses.
    let r = client
        .get(format!("http://a.example.com:{}/", proxy.port))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "ok");
}

// ---------------------------------------------------------------------------------------
// Certificate rotation

#[tokio::test]
async fn a_rotation_with_a_mismatched_key_keeps_the_previous_pair() {
    let up = Upstream::start("a");
    let ca = Ca::new("test CA");
    let proxy = Proxy::start_tls(
        &ca,
        &["a.example.com"],
        &format!("routes:\n{}", public_route("a.example.com", &up.url())),
    );
    let (cert, key) = proxy.cert_paths();
    let port = proxy.port;
    let client = https_client(&ca.pem, proxy.addr(), &["a.example.com"]);
    let get = || async {
        client
            .get(format!("https://a.example.com:{port}/"))
            .send()
            .await
    };
    assert_eq!(get().await.unwrap().status(), 200);
    assert_eq!(
        presented_names(proxy.addr(), "a.example.com").await,
        ["a.example.com"]
    );

    // The new certificate is written first; its key follows later.
    let next = ca.leaf(&["a.example.com", "next.example.com"]);
    let published = || proxy.log().matches("certificates published").count();
    let before = published();
    std::fs::write(&cert, &next.cert_pem).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while published() == before {
        assert!(
            Instant::now() < deadline,
            "certificate change not noticed:\n{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        presented_names(proxy.addr(), "a.example.com").await,
        ["a.example.com"],
        "the previous pair is still served"
    );
    let r = get().await;
    assert!(
        r.as_ref().is_ok_and(|r| r.status() == 200),
        "{r:?}\n{}",
        proxy.log()
    );
    let log = proxy.log();
    let reported = log
        .lines()
        .find(|l| l.contains("does not match"))
        .unwrap_or_else(|| panic!("mismatch not reported:\n{log}"));
    assert!(
        reported.contains(&cert.display().to_string())
            && reported.contains(&key.display().to_string()),
        "{reported}"
    );

    // Once the key matches, the new pair applies.
    std::fs::write(&key, &next.key_pem).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while presented_names(proxy.addr(), "a.example.com").await.len() != 2 {
        assert!(
            Instant::now() < deadline,
            "new pair not applied:\n{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(get().await.unwrap().status(), 200);
}

// ---------------------------------------------------------------------------------------
// Config files

async fn reload_errors(metrics_port: u16) -> u64 {
    let text = metrics_text(SocketAddr::from(([127, 0, 0, 1], metrics_port))).await;
    text.lines()
        .find_map(|l| l.strip_prefix("rampart_config_reloads_total{result=\"error\"} "))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0)
}

#[tokio::test]
async fn an_empty_or_truncated_config_file_keeps_the_previous_config() {
    let up = Upstream::start("a");
    let metrics_port = free_port();
    let proxy = Proxy::start_insecure(
        &format!("metrics_address: 127.0.0.1:{metrics_port}\n"),
        &public_route("a.example.com", &up.url()),
    );
    let client = http_client(proxy.addr(), &["a.example.com"]);
    let get = || async {
        client
            .get(format!("http://a.example.com:{}/", proxy.port))
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(get().await, 200);
    let good = std::fs::read_to_string(&proxy.config_path).unwrap();
    let truncated = &good[..good.find("routes:").unwrap() + "routes:".len()];
    let applied = || proxy.log().matches("config reloaded").count();
    for (i, text) in ["", truncated].into_iter().enumerate() {
        // Truncate in place, as `: > config.yaml` or an interrupted write does.
        let before = applied();
        std::fs::write(&proxy.config_path, text).unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        while reload_errors(metrics_port).await <= i as u64 && applied() == before {
            assert!(
                Instant::now() < deadline,
                "{text:?} not noticed:\n{}",
                proxy.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(get().await, 200, "{text:?}:\n{}", proxy.log());
        assert_eq!(applied(), before, "{text:?} was applied:\n{}", proxy.log());
        assert_eq!(reload_errors(metrics_port).await, i as u64 + 1);
    }
    let log = proxy.log();
    assert!(log.contains("is empty"), "{log}");
    assert!(log.contains("removes all 1 routes"), "{log}");
    // A good edit still applies afterwards.
    std::fs::write(&proxy.config_path, &good).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(get().await, 200);
}

/// Waits for a child to exit (killing it after 20 s); returns its status and stderr.
fn wait_exit(mut child: Child) -> (std::process::ExitStatus, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("rampart did not exit");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status, stderr)
}

#[test]
fn serve_refuses_an_empty_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, "").unwrap();
    let child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (status, stderr) = wait_exit(child);
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("config file {} is empty", path.display())),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------------
// Session stores

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A sign-in config whose IdP is never contacted (sessions are written by the test).
fn sign_in_config(port: u16, storage: &str, upstream: &str) -> String {
    format!(
        "address: 127.0.0.1:{port}\ninsecure_server: true\n\
         authenticate_service_url: http://authenticate.localhost:{port}\n\
         idp_provider: oidc\nidp_provider_url: http://127.0.0.1:9/op\n\
         idp_client_id: rampart\nidp_client_secret: secret\n\
         shared_secret: {}\ncookie_secret: {}\n{storage}\
         routes:\n  - {{from: https://app.localhost, to: {upstream}, allow_any_authenticated_user: true}}\n\
         \x20 - {{from: https://public.localhost, to: {upstream}, allow_public_unauthenticated_access: true}}\n",
        b64(&[7; 32]),
        b64(&[8; 32]),
    )
}

/// Writes a signed-in session for alice into the store the config names; returns the
/// `_pomerium` cookie value.
async fn sign_in_alice(config: &str, store: &dyn rampart::store::SessionStore, id: &str) -> String {
    let settings = rampart::config::parse(config, Path::new("config.yaml")).unwrap();
    let auth = rampart::http::auth::AuthSettings::from_settings(&settings).unwrap();
    let mut s = rampart::store::Session::new_for_test(id, "alice");
    s.email = "alice@example.com".into();
    s.claims
        .insert("email".into(), serde_json::json!("alice@example.com"));
    s.expires_at = rampart::store::unix_now() + 3600;
    store.put(&s).await.unwrap();
    rampart::http::auth::handle::SessionHandle {
        iss: "authenticate.localhost".into(),
        aud: vec!["app.localhost".into()],
        iat: rampart::store::unix_now(),
        jti: id.into(),
        sub: "alice".into(),
        idp_id: auth.idp.unwrap().id,
        databroker_server_version: 0,
        databroker_record_version: 0,
    }
    .sign(&auth.shared_secret)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarts_and_outages_never_sign_users_out() {
    let up = Upstream::start("app");
    let mut redis = Redis::start();
    let port = free_port();
    let storage = format!(
        "databroker_storage_type: redis\ndatabroker_storage_connection_string: {}\n",
        redis.url()
    );
    let config = sign_in_config(port, &storage, &up.url());
    let proxy = Proxy::start(&config, port);
    let store = |url: String| {
        let settings = rampart::config::parse(&config, Path::new("c")).unwrap();
        let auth = rampart::http::auth::AuthSettings::from_settings(&settings).unwrap();
        rampart::store::redis::RedisStore::open(&url)
            .unwrap()
            .sealed_with(&auth.cookie_secret)
    };
    let client = http_client(proxy.addr(), &["app.localhost", "public.localhost"]);
    let get_from = |host: &'static str, cookie: String, accept: &'static str| {
        let client = client.clone();
        async move {
            client
                .get(format!("http://{host}:{port}/"))
                .header("cookie", format!("_pomerium={cookie}"))
                .header("accept", accept)
                .send()
                .await
                .unwrap()
        }
    };
    let get = |cookie: String, accept: &'static str| get_from("app.localhost", cookie, accept);
    let first = sign_in_alice(&config, &store(redis.url()), "s1").await;
    let r = get(first, "application/json").await;
    assert_eq!(r.status(), 200, "{}", proxy.log());

    // Redis restarts (empty, on the same socket); a session not cached by rampart yet is
    // looked up on the connection that was open before the restart.
    redis.restart();
    let second = sign_in_alice(&config, &store(redis.url()), "s2").await;
    let r = get(second, "application/json").await;
    assert_eq!(r.status(), 200, "after a restart:\n{}", proxy.log());

    // During an outage a signed-in user gets a 503 page, not a sign-in redirect or 401.
    let third = sign_in_alice(&config, &store(redis.url()), "s3").await;
    redis.stop();
    for accept in ["application/json", "text/html"] {
        let r = get(third.clone(), accept).await;
        let status = r.status();
        let body = r.text().await.unwrap();
        assert_eq!(status, 503, "{accept}: {body}\n{}", proxy.log());
        if accept == "text/html" {
            assert!(body.contains("session store is unavailable"), "{body}");
        }
    }
    // A public route needs no session: it keeps working, cookie or not.
    let r = get_from("public.localhost", third, "application/json").await;
    assert_eq!(r.status(), 200, "{}", proxy.log());
}

#[test]
fn a_damaged_session_file_stops_serve_with_a_clear_error() {
    let valid = tempfile::tempdir().unwrap();
    drop(rampart::store::redb::RedbStore::open_dir(valid.path()).unwrap());
    let bytes = std::fs::read(valid.path().join("sessions.redb")).unwrap();
    for (what, content) in [
        (
            "garbage",
            (0..100_000u32)
                .map(|i| (i * 7 % 253) as u8)
                .collect::<Vec<u8>>(),
        ),
        ("truncated", bytes[..bytes.len() / 2].to_vec()),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let file = data.join("sessions.redb");
        std::fs::write(&file, &content).unwrap();
        let config = dir.path().join("config.yaml");
        std::fs::write(
            &config,
            sign_in_config(free_port(), "", "http://127.0.0.1:9"),
        )
        .unwrap();
        let child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (status, stderr) = wait_exit(child);
        assert!(!status.success(), "{what}: {stderr}");
        assert!(
            stderr.contains(&file.display().to_string()) && stderr.contains("move it aside"),
            "{what}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    }
}
