//! `rampart render`: the real binary on the manifests in tests/fixtures/k8s.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/k8s")
        .join(name)
}

fn render(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rampart"))
        .arg("render")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run rampart");
    {
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).unwrap();
        }
    }
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn good_manifests_render_expected_config() {
    let good = fixture("good.yaml");
    let out = render(&["-f", good.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
    let expected = std::fs::read_to_string(fixture("good.expected.yaml")).unwrap();
    assert_eq!(text(&out.stdout), expected);

    // The output is a valid config file with the routes in evaluation order.
    let settings = rampart::config::parse(&text(&out.stdout), Path::new("rendered.yaml")).unwrap();
    let cfg = rampart::config::build(settings).expect("rendered config loads");
    let froms: Vec<(String, String)> = cfg
        .routes
        .iter()
        .map(|r| {
            let c = &r.config;
            let p = c
                .path
                .clone()
                .or(c.regex.clone())
                .or(c.prefix.clone())
                .unwrap_or_default();
            (c.from.clone(), p)
        })
        .collect();
    assert_eq!(
        froms,
        [
            ("https://*.apps.example.com".into(), "/api".into()),
            ("https://app.example.com".into(), "/healthz".into()),
            ("https://app.example.com".into(), "/api/v[0-9]+/.*".into()),
            ("https://app.example.com".into(), "/".into()),
            ("https://www.example.com".into(), "/".into()),
        ]
    );
    // The nginx Ingress is not ours; the TLS Secret matches app.example.com and is kept.
    assert!(!text(&out.stdout).contains("nginx.example.com"));
    assert_eq!(cfg.proxy.certificates.len(), 1);
}

#[test]
fn rejected_ingresses_go_to_stderr_and_exit_1() {
    let bad = fixture("bad.yaml");
    let out = render(&["-f", bad.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "apps/missing: services: rule host=missing.example.com path=/x refers to service apps/nope port=&ServiceBackendPort{Name:http,Number:0,}, failed to get service information: Service \"nope\" not found\n\
         apps/typo: parsing ingress: annotations: unknown ingress.pomerium.io/allowed_user\n"
    );
    // The good Ingress is still rendered.
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("from: https://good.example.com"),
        "{stdout}"
    );
    assert!(!stdout.contains("typo.example.com"));
}

#[test]
fn pomerium_crd_settings_and_several_files() {
    let out = render(
        &[
            "-f",
            fixture("pomerium.yaml").to_str().unwrap(),
            "-f",
            fixture("good.yaml").to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let settings = rampart::config::parse(&text(&out.stdout), Path::new("r.yaml")).unwrap();
    assert_eq!(
        settings.authenticate_service_url.as_deref(),
        Some("https://authenticate.example.com")
    );
    assert_eq!(settings.idp_client_id.as_deref(), Some("rampart"));
    assert_eq!(
        settings.shared_secret.as_deref(),
        Some("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
    );
    assert_eq!(settings.routes.len(), 5);
    rampart::config::build(settings).unwrap();
}

#[test]
fn stdin_options_and_unreadable_input() {
    // A lone Ingress from stdin, with a custom prefix and controller name.
    let manifest = "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: default}\nspec: {type: ExternalName, externalName: up.example.net}\n---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: i\n  annotations: {corp.example.com/allow_websockets: 'true'}\nspec:\n  ingressClassName: pomerium\n  rules:\n  - host: i.example.com\n    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: s, port: {number: 8080}}}}]}\n";
    let out = render(
        &[
            "-f",
            "-",
            "--prefix",
            "corp.example.com",
            "--name",
            "corp.example.com/ctl",
        ],
        Some(manifest),
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let settings = rampart::config::parse(&text(&out.stdout), Path::new("r.yaml")).unwrap();
    assert_eq!(settings.routes.len(), 1);
    assert_eq!(settings.routes[0].allow_websockets, Some(true));
    assert_eq!(
        settings.routes[0].to,
        Some(rampart::config::OneOrMany::Many(vec![
            "http://up.example.net:8080".into()
        ]))
    );

    let out = render(&["-f", "/nonexistent/rampart.yaml"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).starts_with("/nonexistent/rampart.yaml: "));

    let out = render(&["-f", "-"], Some("kind: [unclosed\n"));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).starts_with("-: document 1: "),
        "{}",
        text(&out.stderr)
    );

    let out = render(
        &["-f", "-"],
        Some("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: x}\nspec: {rules: 5}\n"),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("networking.k8s.io/v1 Ingress"),
        "{}",
        text(&out.stderr)
    );
}

const GATEWAY_MANIFESTS: &str = "
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: pomerium-gateway
  listeners: [{name: http, protocol: HTTP, port: 80, hostname: '*.example.com'}]
---
apiVersion: gateway.pomerium.io/v1alpha1
kind: PolicyFilter
metadata: {name: alice, namespace: default}
spec: {ppl: 'allow: {and: [{email: {is: alice@example.com}}]}'}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {type: ExternalName, externalName: web.internal, ports: [{port: 8080}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [web.example.com]
  rules:
  - matches: [{path: {type: Exact, value: /api}, method: POST}]
    filters: [{type: ExtensionRef, extensionRef: {group: gateway.pomerium.io, kind: PolicyFilter, name: alice}}]
    backendRefs: [{name: web, port: 8080}]
";

#[test]
fn gateway_api_manifests_render() {
    let out = render(&["-f", "-"], Some(GATEWAY_MANIFESTS));
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let settings = rampart::config::parse(&text(&out.stdout), Path::new("rendered.yaml")).unwrap();
    assert_eq!(settings.routes.len(), 1, "{}", text(&out.stdout));
    let r = &settings.routes[0];
    assert_eq!(r.from, "https://web.example.com");
    assert_eq!(r.path.as_deref(), Some("/api"));
    assert_eq!(r.match_method.as_deref(), Some("POST"));
    assert_eq!(
        serde_json::to_value(&r.to).unwrap(),
        serde_json::json!(["http://web.internal:8080"])
    );
    assert_eq!(
        r.policy.as_ref().unwrap()[0]["allow"]["and"][0]["email"]["is"],
        "alice@example.com"
    );
    rampart::config::build(settings).expect("rendered config loads");

    // A broken HTTPRoute is reported and fails the render.
    let bad = GATEWAY_MANIFESTS.replace("name: alice}", "name: nobody}");
    let out = render(&["-f", "-"], Some(&bad));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("httproute default/web: HTTPRoute default/web: rules[0].filters[0]: PolicyFilter default/nobody not found"),
        "{}",
        text(&out.stderr)
    );
}
