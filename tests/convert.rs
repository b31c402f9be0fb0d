//! `rampart convert` on a realistic ingress-nginx manifest (tests/fixtures/nginx/app.yaml):
//! the pomerium output renders with `rampart render`, the gateway output carries the policy in
//! a PolicyFilter that `rampart policy check` accepts, and what cannot be converted is named.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde::Deserialize;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_rampart");

fn fixture() -> String {
    format!(
        "{}/tests/fixtures/nginx/app.yaml",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = stdin.unwrap_or("").to_string();
    let mut pipe = child.stdin.take().unwrap();
    std::thread::spawn(move || {
        let _ = pipe.write_all(input.as_bytes());
    });
    child.wait_with_output().unwrap()
}

fn docs(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {docs:#?}"))
}

#[test]
fn convert_to_pomerium_annotations_renders_and_names_what_was_dropped() {
    let out = run(
        &[
            "convert",
            "-f",
            &fixture(),
            "--allowed-email",
            "alice@example.com",
        ],
        None,
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "dropped parts fail without --allow-partial\n{stderr}"
    );
    assert!(
        stderr.contains("not converted: Ingress tools/grafana: nginx.ingress.kubernetes.io/configuration-snippet is not supported"),
        "{stderr}"
    );
    let d = docs(&stdout);
    let dash = find(&d, "Ingress", "dashboard");
    let ann = &dash["metadata"]["annotations"];
    assert!(ann
        .as_object()
        .unwrap()
        .keys()
        .all(|k| !k.starts_with("nginx.ingress.kubernetes.io/")));
    assert!(ann.get("kubernetes.io/ingress.class").is_none());
    assert_eq!(dash["spec"]["ingressClassName"], "pomerium");
    assert_eq!(ann["ingress.pomerium.io/idle_timeout"], "3600s");
    assert_eq!(ann["ingress.pomerium.io/path_regex"], "true");
    assert_eq!(
        ann["ingress.pomerium.io/regex_rewrite_substitution"],
        "/\\2"
    );
    let policy: Value =
        serde_json::from_str(ann["ingress.pomerium.io/policy"].as_str().unwrap()).unwrap();
    assert_eq!(
        policy[0]["allow"]["or"][0]["email"]["is"],
        "alice@example.com"
    );
    assert_eq!(policy[1]["deny"]["not"][0]["source_ip"][0], "10.0.0.0/8");
    let graf = find(&d, "Ingress", "grafana");
    assert_eq!(
        graf["metadata"]["annotations"]["ingress.pomerium.io/secure_upstream"],
        "true"
    );
    assert_eq!(
        graf["metadata"]["annotations"]["ingress.pomerium.io/host_rewrite"],
        "grafana.internal"
    );

    // The result is what rampart serves: `rampart render` accepts both Ingresses (with the
    // cluster objects the fixture does not hold: grafana's Service, Endpoints, the TLS Secret).
    let ck = rcgen::generate_simple_self_signed(vec!["dashboard.example.com".to_string()]).unwrap();
    let b64 = |s: String| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    let cluster = format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: grafana, namespace: tools}}\nspec:\n  ports: [{{port: 3000}}]\n\
         ---\napiVersion: v1\nkind: Endpoints\nmetadata: {{name: grafana, namespace: tools}}\nsubsets: [{{addresses: [{{ip: 10.0.0.2}}], ports: [{{port: 3000}}]}}]\n\
         ---\napiVersion: v1\nkind: Endpoints\nmetadata: {{name: dashboard, namespace: tools}}\nsubsets: [{{addresses: [{{ip: 10.0.0.1}}], ports: [{{name: http, port: 8080}}]}}]\n\
         ---\napiVersion: v1\nkind: Secret\nmetadata: {{name: dashboard-tls, namespace: tools}}\ntype: kubernetes.io/tls\ndata: {{tls.crt: {}, tls.key: {}}}\n",
        b64(ck.cert.pem()),
        b64(ck.key_pair.serialize_pem())
    );
    let rendered = run(&["render", "-f", "-"], Some(&format!("{stdout}{cluster}")));
    let rstdout = String::from_utf8(rendered.stdout).unwrap();
    assert_eq!(
        rendered.status.code(),
        Some(0),
        "{}\n{rstdout}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let cfg: Value = serde_yaml::from_str(&rstdout).unwrap();
    let routes = cfg["routes"].as_array().unwrap();
    let r = routes
        .iter()
        .find(|r| r["from"] == "https://dashboard.example.com")
        .expect("dashboard route");
    assert_eq!(r["regex"], "(?i)/dashboard(/|$)(.*).*");
    assert_eq!(r["regex_rewrite_pattern"], "(?i)^/dashboard(/|$)(.*).*");

    // --allow-partial: same output, exit 0.
    let out = run(
        &[
            "convert",
            "-f",
            &fixture(),
            "--allowed-email",
            "alice@example.com",
            "--allow-partial",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), stdout);
}

#[test]
fn convert_to_gateway_with_oauth2_proxy_flags() {
    let dir = tempfile::tempdir().unwrap();
    let emails = dir.path().join("emails.txt");
    std::fs::write(&emails, "# allowed\nalice@example.com\ncarol@example.com\n").unwrap();
    let flags = format!(
        "--provider=oidc --email-domain=corp.example.com --authenticated-emails-file {} --allowed-group=admins",
        emails.display()
    );
    let out = run(
        &[
            "convert",
            "-f",
            &fixture(),
            "--to",
            "gateway",
            "--oauth2-proxy-flags",
            &flags,
        ],
        None,
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("note: oauth2-proxy flag --provider=oidc is not used"),
        "{stderr}"
    );
    assert!(stderr.contains("configuration-snippet"), "{stderr}");
    assert!(
        stderr.contains("idle_timeout: 3600s has no HTTPRoute equivalent"),
        "{stderr}"
    );
    let d = docs(&stdout);
    let route = find(&d, "HTTPRoute", "dashboard");
    assert_eq!(route["apiVersion"], "gateway.networking.k8s.io/v1");
    assert_eq!(route["spec"]["hostnames"][0], "dashboard.example.com");
    let rule = &route["spec"]["rules"][0];
    assert_eq!(rule["matches"][0]["path"]["type"], "PathPrefix");
    assert_eq!(rule["matches"][0]["path"]["value"], "/dashboard");
    assert_eq!(
        rule["backendRefs"][0]["port"], 8080,
        "named port resolved from the Service"
    );
    assert_eq!(rule["filters"][0]["extensionRef"]["kind"], "PolicyFilter");
    assert_eq!(
        rule["filters"][1]["urlRewrite"]["path"]["replacePrefixMatch"],
        "/"
    );
    let filter = find(&d, "PolicyFilter", "dashboard-policy");
    assert_eq!(filter["apiVersion"], "gateway.pomerium.io/v1alpha1");
    let ppl = filter["spec"]["ppl"].as_str().unwrap();
    for want in [
        "alice@example.com",
        "carol@example.com",
        "corp.example.com",
        "admins",
        "10.0.0.0/8",
    ] {
        assert!(ppl.contains(want), "{want} missing from {ppl}");
    }
    // The PPL is valid.
    let ppl_file = dir.path().join("ppl.yaml");
    std::fs::write(&ppl_file, ppl).unwrap();
    let check = run(&["policy", "check", ppl_file.to_str().unwrap()], None);
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn unreadable_input_exits_2() {
    let out = run(&["convert", "-f", "/nonexistent/x.yaml"], None);
    assert_eq!(out.status.code(), Some(2));
}
