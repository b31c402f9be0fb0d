//! Runs the real `rampart policy` binary: check, eval, explain, stdin and exit codes.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use tempfile::TempDir;

const POLICY_YAML: &str = "\
allow:
  or:
    - email: {is: alice@example.com}
    - http_path: {starts_with: /public}
deny:
  or:
    - http_method: DELETE
";

fn rampart(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rampart");
    {
        let mut pipe = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            // The binary may exit before reading stdin (argument errors): a broken pipe is fine.
            let _ = pipe.write_all(text.as_bytes());
        }
    }
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn write(dir: &TempDir, name: &str, content: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, content).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn check_ok_error_and_stdin() {
    let dir = TempDir::new().unwrap();
    let good = write(&dir, "good.yaml", POLICY_YAML);
    let out = rampart(&["policy", "check", &good], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "ok\n");
    assert_eq!(text(&out.stderr), "");

    let json = write(
        &dir,
        "good.json",
        r#"[{"allow":{"or":[{"domain":{"is":"example.com"}}]}}]"#,
    );
    let out = rampart(&["policy", "check", &json], None);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "ok\n");

    let bad = write(&dir, "bad.yaml", "allow:\n  or:\n    - emial: x\n");
    let out = rampart(&["policy", "check", &bad], None);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stdout), "");
    assert_eq!(
        text(&out.stderr),
        "error: unknown policy criterion: emial (at allow.or[0].emial)\n"
    );

    let out = rampart(&["policy", "check", "-"], Some("allow: {maybe: []}"));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains(
        "invalid rules in policy: unsupported conditional \"maybe\", only and, or, not, nor and action are allowed"
    ));

    let out = rampart(
        &["policy", "check", "-"],
        Some("allow:\n  or:\n    - email: is: \"x\"\n"),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("mapping values are not allowed in this context at line 3"),
        "{}",
        text(&out.stderr)
    );

    let out = rampart(
        &["policy", "check", "-"],
        Some("allow: {or: [{pomerium_routes: true}]}"),
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "ok\n");
    assert!(text(&out.stderr).starts_with("warning: pomerium_routes:"));

    let missing = dir.path().join("nope.yaml");
    let out = rampart(&["policy", "check", missing.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("nope.yaml"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn eval_decisions_and_stdin() {
    let dir = TempDir::new().unwrap();
    let policy = write(&dir, "p.yaml", POLICY_YAML);
    let cases = [
        (
            r#"{"request": {"method": "GET", "host": "a.example.com", "path": "/x", "headers": {}, "source_ip": "1.2.3.4"}, "identity": null}"#,
            r#"{"decision":"login","reasons":["http-method-unauthorized","http-path-unauthorized","user-unauthenticated"]}"#,
        ),
        (
            r#"{"request": {"method": "GET", "path": "/public/a"}, "identity": null}"#,
            r#"{"decision":"allow","reasons":["http-path-ok"]}"#,
        ),
        (
            r#"{"request": {"method": "DELETE", "path": "/public/a"}, "identity": null}"#,
            r#"{"decision":"deny","reasons":["http-method-ok"]}"#,
        ),
        (
            r#"{"request": {"method": "GET", "path": "/x"}, "identity": {"email": "alice@example.com", "user_id": "u1", "groups": ["g"], "claims": {"sub": "u1"}}}"#,
            r#"{"decision":"allow","reasons":["email-ok"]}"#,
        ),
        (
            r#"{"request": {"method": "GET", "path": "/x"}, "identity": {"email": "eve@example.com"}}"#,
            r#"{"decision":"deny","reasons":["email-unauthorized","http-path-unauthorized"]}"#,
        ),
    ];
    for (i, (input, want)) in cases.iter().enumerate() {
        let input_file = write(&dir, &format!("in{i}.json"), input);
        let out = rampart(
            &[
                "policy",
                "eval",
                "--policy",
                &policy,
                "--input",
                &input_file,
            ],
            None,
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), format!("{want}\n"), "{input}");
        // Same through stdin, both ways.
        let out = rampart(
            &["policy", "eval", "--policy", &policy, "--input", "-"],
            Some(input),
        );
        assert_eq!(text(&out.stdout), format!("{want}\n"));
        let out = rampart(
            &["policy", "eval", "--policy", "-", "--input", &input_file],
            Some(POLICY_YAML),
        );
        assert_eq!(text(&out.stdout), format!("{want}\n"));
    }
    let out = rampart(
        &["policy", "eval", "--policy", "-", "--input", "-"],
        Some(POLICY_YAML),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("only one of --policy and --input may be `-`"));
}

#[test]
fn eval_errors_exit_2() {
    let dir = TempDir::new().unwrap();
    let policy = write(&dir, "p.yaml", POLICY_YAML);
    let out = rampart(
        &["policy", "eval", "--policy", &policy, "--input", "-"],
        Some(r#"{"request": {"path": 7}}"#),
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stdout), "");
    assert_eq!(
        text(&out.stderr),
        "error: input field `request.path`: expected a string, got a number\n"
    );
    let out = rampart(
        &["policy", "eval", "--policy", &policy, "--input", "-"],
        Some("not json"),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).starts_with("error: input is not valid JSON"));
    let bad = write(&dir, "bad.yaml", "deny: 3");
    let out = rampart(
        &["policy", "eval", "--policy", &bad, "--input", "-"],
        Some(r#"{"request": {}}"#),
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "error: policy: invalid rules in policy: invalid value for action in rule, expected Object, got parser.Number (at deny)\n"
    );
}

#[test]
fn explain_prints_a_trace() {
    let input = r#"{"request": {"method": "DELETE", "path": "/x"}, "identity": {"email": "alice@example.com"}}"#;
    let dir = TempDir::new().unwrap();
    let input_file = write(&dir, "in.json", input);
    let out = rampart(
        &["policy", "explain", "--policy", "-", "--input", &input_file],
        Some(POLICY_YAML),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let want = "\
decision: deny
reasons: [http-method-ok]
allow: true [email-ok]
  or allow.or: true [email-ok]
    email: {\"is\":\"alice@example.com\"}: true [email-ok]
    http_path: {\"starts_with\":\"/public\"}: false [http-path-unauthorized]
deny: true [http-method-ok]
  or deny.or: true [http-method-ok]
    http_method: \"DELETE\": true [http-method-ok]
because: a deny block is true
";
    assert_eq!(text(&out.stdout), want);
}

/// A config whose routes use the legacy fields, `policy` as YAML and as text, a shared `from`,
/// an explicit `id` and a policy that does not compile.
const CONFIG_YAML: &str = "\
insecure_server: true
address: 127.0.0.1:0
routes:
  - from: https://app.example.com
    to: http://127.0.0.1:9000
    allowed_users: [alice@example.com]
    allowed_domains: [example.org]
    cors_allow_preflight: true
    policy:
      deny:
        or:
          - http_method: DELETE
  - from: https://app.example.com
    to: http://127.0.0.1:9000
    path: /admin
    id: admin
    allow_any_authenticated_user: true
    policy: |
      deny:
        and:
          - groups: {exclude: admins}
  - from: https://public.example.com
    to: http://127.0.0.1:9000
    allow_public_unauthenticated_access: true
  - from: https://broken.example.com
    to: http://127.0.0.1:9000
    policy: {allow: {or: [{emial: x}]}}
";

/// Runs `rampart policy <args> --input -` with `input` on stdin: (exit code, stdout, stderr).
fn policy_with_input(args: &[&str], input: &str) -> (Option<i32>, String, String) {
    let mut all = vec!["policy"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--input", "-"]);
    let out = rampart(&all, Some(input));
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn eval_a_config_route_uses_its_effective_policy() {
    let dir = TempDir::new().unwrap();
    let config = write(&dir, "config.yaml", CONFIG_YAML);
    let root = [
        "eval",
        "--config",
        &config,
        "--route",
        "app.example.com",
        "--path",
        "/",
    ];
    let get = |identity: &str| {
        format!(r#"{{"request": {{"method": "GET", "path": "/x"}}, "identity": {identity}}}"#)
    };
    let cases = [
        // allowed_users
        (
            get(r#"{"email": "alice@example.com"}"#),
            r#"{"decision":"allow","reasons":["email-ok"],"route":"route-0"}"#,
        ),
        // allowed_domains
        (
            get(r#"{"email": "carol@example.org"}"#),
            r#"{"decision":"allow","reasons":["domain-ok"],"route":"route-0"}"#,
        ),
        // denied: no legacy field allows bob
        (
            get(r#"{"email": "bob@example.com", "user_id": "bob"}"#),
            r#"{"decision":"deny","reasons":["domain-unauthorized","email-unauthorized","non-cors-request","user-unauthorized"],"route":"route-0"}"#,
        ),
        // no session: sign in
        (
            get("null"),
            r#"{"decision":"login","reasons":["http-method-unauthorized","non-cors-request","user-unauthenticated"],"route":"route-0"}"#,
        ),
        // the `policy` deny applies on top of the legacy allow
        (
            r#"{"request": {"method": "DELETE", "path": "/x"}, "identity": {"email": "alice@example.com"}}"#.to_string(),
            r#"{"decision":"deny","reasons":["http-method-ok"],"route":"route-0"}"#,
        ),
        // cors_allow_preflight
        (
            r#"{"request": {"method": "OPTIONS", "path": "/x", "headers": {"Origin": "https://o", "Access-Control-Request-Method": "GET"}}}"#.to_string(),
            r#"{"decision":"allow","reasons":["cors-request"],"route":"route-0"}"#,
        ),
    ];
    for (input, want) in &cases {
        let (code, stdout, stderr) = policy_with_input(&root, input);
        assert_eq!(code, Some(0), "{stderr}");
        assert_eq!(stdout, format!("{want}\n"), "{input}");
    }

    // By id: allow_any_authenticated_user plus a `policy` given as text.
    let admin = ["eval", "--config", &config, "--id", "admin"];
    let (code, stdout, _) = policy_with_input(
        &admin,
        r#"{"request": {"path": "/admin"}, "identity": {"email": "bob@example.com", "user_id": "bob", "groups": ["devs"]}}"#,
    );
    assert_eq!(code, Some(0));
    assert_eq!(
        stdout,
        "{\"decision\":\"deny\",\"reasons\":[\"groups-ok\"],\"route\":\"admin\"}\n"
    );
    let (_, stdout, _) = policy_with_input(
        &admin,
        r#"{"request": {"path": "/admin"}, "identity": {"email": "bob@example.com", "user_id": "bob", "groups": ["admins"]}}"#,
    );
    assert_eq!(
        stdout,
        "{\"decision\":\"allow\",\"reasons\":[\"user-ok\"],\"route\":\"admin\"}\n"
    );
    // allow_public_unauthenticated_access; the `from` may carry its scheme.
    let (_, stdout, _) = policy_with_input(
        &[
            "eval",
            "--config",
            &config,
            "--route",
            "https://public.example.com/",
        ],
        r#"{"request": {"path": "/"}}"#,
    );
    assert_eq!(
        stdout,
        "{\"decision\":\"allow\",\"reasons\":[\"accept\"],\"route\":\"route-2\"}\n"
    );
}

#[test]
fn explain_a_config_route_shows_the_route_and_the_legacy_rule() {
    let dir = TempDir::new().unwrap();
    let config = write(&dir, "config.yaml", CONFIG_YAML);
    let (code, stdout, stderr) = policy_with_input(
        &[
            "explain",
            "--config",
            &config,
            "--route",
            "app.example.com",
            "--path",
            "/",
        ],
        r#"{"request": {"method": "GET", "path": "/x"}, "identity": {"email": "bob@example.com", "user_id": "bob"}}"#,
    );
    assert_eq!(code, Some(0), "{stderr}");
    let want = "\
route: route-0: https://app.example.com prefix /
decision: deny
reasons: [domain-unauthorized, email-unauthorized, non-cors-request, user-unauthorized]
allow: false [domain-unauthorized, email-unauthorized, non-cors-request, user-unauthorized]
  or legacy fields: false [domain-unauthorized, email-unauthorized, non-cors-request, user-unauthorized]
    cors_preflight: true: false [non-cors-request]
    domain: {\"is\":\"example.org\"}: false [domain-unauthorized]
    user: {\"is\":\"alice@example.com\"}: false [user-unauthorized]
    email: {\"is\":\"alice@example.com\"}: false [email-unauthorized]
deny: false [http-method-unauthorized]
  or deny.or: false [http-method-unauthorized]
    http_method: \"DELETE\": false [http-method-unauthorized]
because: no allow block is true (default deny)
";
    assert_eq!(stdout, want);
}

#[test]
fn config_route_choice_errors_name_the_routes() {
    let dir = TempDir::new().unwrap();
    let config = write(&dir, "config.yaml", CONFIG_YAML);
    let input = r#"{"request": {"path": "/"}}"#;
    let (code, stdout, stderr) = policy_with_input(
        &["eval", "--config", &config, "--route", "app.example.com"],
        input,
    );
    assert_eq!((code, stdout.as_str()), (Some(2), ""));
    assert_eq!(
        stderr,
        "error: --route app.example.com matches 2 routes; choose one with --path or --id:\n  \
         route-0: https://app.example.com prefix /\n  \
         admin: https://app.example.com path /admin\n"
    );
    let (code, _, stderr) = policy_with_input(
        &["eval", "--config", &config, "--route", "nope.example.com"],
        input,
    );
    assert_eq!(code, Some(2));
    assert_eq!(
        stderr,
        "error: no route matches --route nope.example.com; the routes are:\n  \
         route-0: https://app.example.com prefix /\n  \
         admin: https://app.example.com path /admin\n  \
         route-2: https://public.example.com prefix /\n  \
         route-3: https://broken.example.com prefix /\n"
    );
    let (code, _, stderr) = policy_with_input(&["eval", "--config", &config], input);
    assert_eq!(code, Some(2));
    assert!(
        stderr.starts_with("error: there are 4 routes; choose one with --route, --path or --id:\n"),
        "{stderr}"
    );
    // The chosen route's policy does not compile: the error names the route.
    let (code, _, stderr) = policy_with_input(
        &[
            "explain",
            "--config",
            &config,
            "--route",
            "broken.example.com",
        ],
        input,
    );
    assert_eq!(code, Some(2));
    assert_eq!(
        stderr,
        "error: route route-3: policy: unknown policy criterion: emial (at allow.or[0].emial)\n"
    );
    // A config that does not parse names the key.
    let bad = write(
        &dir,
        "bad.yaml",
        "routes:\n  - from: https://a\n    to: http://b\n    alowed_users: [x]\n",
    );
    let (code, _, stderr) =
        policy_with_input(&["eval", "--config", &bad, "--id", "route-0"], input);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("unknown field `alowed_users`"), "{stderr}");
    // Flags that do not go together.
    let (code, _, stderr) = policy_with_input(
        &["eval", "--config", &config, "--ingress", "apps/web"],
        input,
    );
    assert_eq!(code, Some(2));
    assert!(stderr.contains("cannot be used with"), "{stderr}");
    let out = rampart(
        &[
            "policy", "eval", "--config", "-", "--id", "admin", "--input", "-",
        ],
        Some(CONFIG_YAML),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("only one of --config and --input may be `-`"));
}

#[test]
fn eval_an_ingress_route_from_manifests() {
    let good = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/k8s/good.yaml");
    let bad = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/k8s/bad.yaml");
    // apps/web carries `allowed_domains: ["example.com"]` on its two paths.
    let web = [
        "eval",
        "-f",
        good,
        "--ingress",
        "apps/web",
        "--path",
        "/healthz",
    ];
    let id = r#"{\"n\":\"web\",\"ns\":\"apps\",\"h\":\"app.example.com\",\"p\":\"/healthz\"}"#;
    let (code, stdout, stderr) = policy_with_input(
        &web,
        r#"{"request": {"path": "/healthz"}, "identity": {"email": "alice@example.com"}}"#,
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stdout,
        format!("{{\"decision\":\"allow\",\"reasons\":[\"domain-ok\"],\"route\":\"{id}\"}}\n")
    );
    let (_, stdout, _) = policy_with_input(
        &web,
        r#"{"request": {"path": "/healthz"}, "identity": {"email": "eve@other.org"}}"#,
    );
    assert_eq!(
        stdout,
        format!(
            "{{\"decision\":\"deny\",\"reasons\":[\"domain-unauthorized\"],\"route\":\"{id}\"}}\n"
        )
    );
    // The policy annotation of apps/api, by `from` and regex path.
    let (_, stdout, _) = policy_with_input(
        &[
            "eval",
            "-f",
            good,
            "--route",
            "app.example.com",
            "--path",
            "/api/v[0-9]+/.*",
        ],
        r#"{"request": {"path": "/api/v1/x"}, "identity": null}"#,
    );
    assert!(
        stdout.starts_with("{\"decision\":\"login\",\"reasons\":[\"user-unauthenticated\"]"),
        "{stdout}"
    );
    // Two routes of apps/web: ambiguous.
    let (code, _, stderr) = policy_with_input(
        &["eval", "-f", good, "--ingress", "apps/web"],
        r#"{"request": {}}"#,
    );
    assert_eq!(code, Some(2));
    assert!(
        stderr.starts_with("error: --ingress apps/web matches 2 routes; choose one with --route, --path or --id:\n"),
        "{stderr}"
    );
    // A rejected Ingress has no routes: the error says why.
    let (code, _, stderr) = policy_with_input(
        &["eval", "-f", bad, "-f", good, "--ingress", "apps/typo"],
        r#"{"request": {}}"#,
    );
    assert_eq!(code, Some(2));
    assert_eq!(
        stderr,
        "error: Ingress apps/typo is rejected, so it has no routes: parsing ingress: annotations: unknown ingress.pomerium.io/allowed_user\n"
    );
    let (code, _, stderr) = policy_with_input(
        &["eval", "-f", good, "--ingress", "apps/nope"],
        r#"{"request": {}}"#,
    );
    assert_eq!(code, Some(2));
    assert!(
        stderr.starts_with("error: no route matches --ingress apps/nope; the routes are:\n"),
        "{stderr}"
    );
}
