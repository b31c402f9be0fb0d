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
