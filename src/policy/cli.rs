//! `rampart policy check|eval|explain`: the logic, as functions returning output and exit code.
//! `eval`/`explain` take a policy file, or a route of a config file or of Kubernetes manifests
//! (its effective policy: legacy fields plus `policy`, compiled as the proxy does).

use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use super::identity::{flatten_claims, groups_from_claim};
use super::route_choice::{
    choose, config_candidates, describe, ChoiceError, RouteCandidate, RouteSelector,
};
use super::{
    compile, compile_route_config, parse_document, ClientCertificate, Decision, Identity,
    OwnedRequest,
};
use crate::cli::{PolicyCommand, PolicyEvalArgs};
use crate::k8s::convert::ConvertOptions;
use crate::k8s::render::{parse_documents, render};

/// Exit code for any policy or input error.
pub const EXIT_ERROR: i32 = 2;

/// What a CLI command prints and its exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    fn ok(stdout: String, stderr: String) -> CliOutput {
        CliOutput {
            code: 0,
            stdout,
            stderr,
        }
    }
    fn error(message: impl std::fmt::Display) -> CliOutput {
        CliOutput {
            code: EXIT_ERROR,
            stdout: String::new(),
            stderr: format!("error: {message}\n"),
        }
    }
}

/// A bad evaluation input; names the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("input is not valid JSON: {0}")]
    Json(String),
    #[error("input field `{field}`: {message}")]
    Field { field: String, message: String },
}

fn field_err(field: &str, message: impl Into<String>) -> InputError {
    InputError::Field {
        field: field.to_string(),
        message: message.into(),
    }
}

/// A parsed `eval`/`explain` input.
#[derive(Debug, Clone)]
pub struct EvalInput {
    pub request: OwnedRequest,
    pub identity: Option<Identity>,
}

/// Runs a `policy` subcommand, reading files (or stdin for `-`).
pub fn run(cmd: &PolicyCommand) -> CliOutput {
    match cmd {
        PolicyCommand::Check { file } => match read_source(file) {
            Ok(text) => check(&text),
            Err(e) => CliOutput::error(e),
        },
        PolicyCommand::Eval(args) => run_eval(args, Mode::Eval),
        PolicyCommand::Explain(args) => run_eval(args, Mode::Explain),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Eval,
    Explain,
}

fn run_eval(args: &PolicyEvalArgs, mode: Mode) -> CliOutput {
    match eval_with_sources(args, mode) {
        Ok(out) | Err(out) => out,
    }
}

fn eval_with_sources(args: &PolicyEvalArgs, mode: Mode) -> Result<CliOutput, CliOutput> {
    let stdin = Path::new("-");
    let readers = [args.policy.as_deref(), args.config.as_deref()]
        .into_iter()
        .flatten()
        .chain(args.manifests.iter().map(PathBuf::as_path))
        .chain([args.input.as_path()])
        .filter(|p| *p == stdin)
        .count();
    if readers > 1 {
        let what = if args.policy.is_some() {
            "--policy"
        } else if args.config.is_some() {
            "--config"
        } else {
            "-f"
        };
        return Err(CliOutput::error(format!(
            "only one of {what} and --input may be `-` (stdin)"
        )));
    }
    if let Some(policy) = &args.policy {
        let policy = read_source(policy).map_err(CliOutput::error)?;
        let input = read_source(&args.input).map_err(CliOutput::error)?;
        return Ok(match mode {
            Mode::Eval => eval(&policy, &input),
            Mode::Explain => explain(&policy, &input),
        });
    }
    let (routes, rejected) = match &args.config {
        Some(path) => (config_routes(path)?, Vec::new()),
        None => manifest_routes(&args.manifests, &args.prefix)?,
    };
    let selector = RouteSelector {
        from: args.route.clone(),
        path: args.path.clone(),
        id: args.id.clone(),
        ingress: args.ingress.clone(),
    };
    if let Some(ing) = &args.ingress {
        let prefix = format!("{ing}: ");
        if let Some(reason) = rejected.iter().find_map(|r| r.strip_prefix(&prefix)) {
            return Err(CliOutput::error(format!(
                "Ingress {ing} is rejected, so it has no routes: {reason}"
            )));
        }
    }
    let route = choose(&routes, &selector).map_err(|e| {
        let mut message = e.to_string();
        if matches!(e, ChoiceError::NotFound { .. } | ChoiceError::NoRoutes) && !rejected.is_empty()
        {
            message.push_str("\nrejected Ingresses (no routes):\n  ");
            message.push_str(&rejected.join("\n  "));
        }
        CliOutput::error(message)
    })?;
    let input = read_source(&args.input).map_err(CliOutput::error)?;
    Ok(match mode {
        Mode::Eval => eval_route(route, &input),
        Mode::Explain => explain_route(route, &input),
    })
}

/// The routes of a config file (key names and types checked as `rampart serve` does; only the
/// chosen route's policy is compiled).
fn config_routes(path: &Path) -> Result<Vec<RouteCandidate>, CliOutput> {
    let text = read_source(path).map_err(CliOutput::error)?;
    let name = if path == Path::new("-") {
        Path::new("(stdin)")
    } else {
        path
    };
    let settings = crate::config::parse(&text, name).map_err(CliOutput::error)?;
    Ok(config_candidates(&settings.routes))
}

/// The routes Kubernetes manifests render to (as `rampart render`), and the rejected Ingresses.
fn manifest_routes(
    files: &[PathBuf],
    prefix: &str,
) -> Result<(Vec<RouteCandidate>, Vec<String>), CliOutput> {
    let mut objects = Vec::new();
    for path in files {
        let text = read_source(path).map_err(CliOutput::error)?;
        let (objs, _skipped) = parse_documents(&text, path).map_err(CliOutput::error)?;
        objects.extend(objs);
    }
    let options = ConvertOptions {
        prefix: prefix.to_string(),
        ..ConvertOptions::default()
    };
    let rendered = render(objects, options, None);
    let routes = rendered
        .settings
        .routes
        .into_iter()
        .map(|config| RouteCandidate {
            id: config.id.clone().unwrap_or_default(),
            config,
        })
        .collect();
    Ok((routes, rendered.errors))
}

/// `policy eval` for a route: `{"decision", "reasons", "route"}` (the route's id).
pub fn eval_route(route: &RouteCandidate, input_text: &str) -> CliOutput {
    let (policy, input) = match prepare_route(route, input_text) {
        Ok(x) => x,
        Err(out) => return out,
    };
    let ev = policy.evaluate(&input.request, input.identity.as_ref());
    let line = json!({
        "route": route.id,
        "decision": decision_text(ev.decision),
        "reasons": ev.decisive_reasons().to_strings(),
    });
    CliOutput::ok(format!("{line}\n"), warnings_text(policy.warnings()))
}

/// `policy explain` for a route: the route, then the trace of its effective policy (the legacy
/// fields are the `allow` rule labelled `legacy fields`).
pub fn explain_route(route: &RouteCandidate, input_text: &str) -> CliOutput {
    let (policy, input) = match prepare_route(route, input_text) {
        Ok(x) => x,
        Err(out) => return out,
    };
    CliOutput::ok(
        format!(
            "route: {}\n{}",
            describe(route),
            policy.explain(&input.request, input.identity.as_ref())
        ),
        String::new(),
    )
}

/// Compiles a route's effective policy exactly as the proxy does (legacy fields, then
/// `policy`).
fn prepare_route(
    route: &RouteCandidate,
    input_text: &str,
) -> Result<(super::CompiledPolicy, EvalInput), CliOutput> {
    let policy = compile_route_config(&route.config)
        .map_err(|e| CliOutput::error(format!("route {}: policy: {e}", route.id)))?;
    let input = parse_input(input_text).map_err(CliOutput::error)?;
    Ok((policy, input))
}

fn decision_text(d: Decision) -> &'static str {
    match d {
        Decision::Allow => "allow",
        Decision::Login => "login",
        Decision::Deny | Decision::ClientCertificateRequired => "deny",
    }
}

fn read_source(path: &Path) -> Result<String, String> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("reading stdin: {e}"))?;
        Ok(text)
    } else {
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))
    }
}

fn warnings_text(warnings: &[String]) -> String {
    warnings.iter().map(|w| format!("warning: {w}\n")).collect()
}

/// `policy check`: `ok` (exit 0, warnings on stderr) or the error (exit 2).
pub fn check(policy_text: &str) -> CliOutput {
    match parse_document(policy_text).and_then(|v| compile(&v)) {
        Ok(p) => CliOutput::ok("ok\n".to_string(), warnings_text(p.warnings())),
        Err(e) => CliOutput::error(e),
    }
}

/// `policy eval`: one JSON line `{"decision": ..., "reasons": [...]}`. A 495 outcome prints
/// `deny` (its reasons name the certificate problem).
pub fn eval(policy_text: &str, input_text: &str) -> CliOutput {
    let (policy, input) = match prepare(policy_text, input_text) {
        Ok(x) => x,
        Err(out) => return out,
    };
    let ev = policy.evaluate(&input.request, input.identity.as_ref());
    let line = json!({
        "decision": decision_text(ev.decision),
        "reasons": ev.decisive_reasons().to_strings(),
    });
    CliOutput::ok(format!("{line}\n"), warnings_text(policy.warnings()))
}

/// `policy explain`: the evaluation trace.
pub fn explain(policy_text: &str, input_text: &str) -> CliOutput {
    let (policy, input) = match prepare(policy_text, input_text) {
        Ok(x) => x,
        Err(out) => return out,
    };
    CliOutput::ok(
        policy.explain(&input.request, input.identity.as_ref()),
        String::new(),
    )
}

fn prepare(
    policy_text: &str,
    input_text: &str,
) -> Result<(super::CompiledPolicy, EvalInput), CliOutput> {
    let policy = parse_document(policy_text)
        .and_then(|v| compile(&v))
        .map_err(|e| CliOutput::error(format!("policy: {e}")))?;
    let input = parse_input(input_text).map_err(CliOutput::error)?;
    Ok((policy, input))
}

/// Parses the `eval` input JSON:
/// `{"request": {"method", "host", "path", "headers", "source_ip", "client_certificate": {"pem", "valid"}},
///   "identity": null | {"email", "user_id", "groups", "claims"}}`.
/// Identity fields left out are taken from `claims` (`email`, `sub`, `groups`).
pub fn parse_input(text: &str) -> Result<EvalInput, InputError> {
    let root: Value = serde_json::from_str(text).map_err(|e| InputError::Json(e.to_string()))?;
    let obj = expect_object(&root, "(input)")?;
    reject_unknown(obj, "", &["request", "identity"])?;
    let request = match obj.get("request") {
        Some(v) => parse_request(v)?,
        None => return Err(field_err("request", "missing")),
    };
    let identity = match obj.get("identity") {
        None | Some(Value::Null) => None,
        Some(v) => Some(parse_identity(v)?),
    };
    Ok(EvalInput { request, identity })
}

fn expect_object<'a>(v: &'a Value, field: &str) -> Result<&'a Map<String, Value>, InputError> {
    v.as_object()
        .ok_or_else(|| field_err(field, format!("expected an object, got {}", json_type(v))))
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn reject_unknown(
    obj: &Map<String, Value>,
    prefix: &str,
    known: &[&str],
) -> Result<(), InputError> {
    for k in obj.keys() {
        if !known.contains(&k.as_str()) {
            return Err(field_err(
                &format!("{prefix}{k}"),
                format!("unknown field (expected one of: {})", known.join(", ")),
            ));
        }
    }
    Ok(())
}

fn opt_string(
    obj: &Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<Option<String>, InputError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(field_err(
            field,
            format!("expected a string, got {}", json_type(other)),
        )),
    }
}

fn parse_request(v: &Value) -> Result<OwnedRequest, InputError> {
    let obj = expect_object(v, "request")?;
    reject_unknown(
        obj,
        "request.",
        &[
            "method",
            "host",
            "path",
            "headers",
            "source_ip",
            "client_certificate",
        ],
    )?;
    let mut req = OwnedRequest {
        method: opt_string(obj, "method", "request.method")?.unwrap_or_else(|| "GET".into()),
        host: opt_string(obj, "host", "request.host")?.unwrap_or_default(),
        path: opt_string(obj, "path", "request.path")?.unwrap_or_else(|| "/".into()),
        ..OwnedRequest::default()
    };
    if let Some(q) = req.path.find('?') {
        req.path.truncate(q);
    }
    match obj.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(headers)) => {
            for (name, value) in headers {
                let field = format!("request.headers.{name}");
                match value {
                    Value::String(s) => req.headers.push((name.clone(), s.clone())),
                    Value::Array(items) => {
                        for item in items {
                            let s = item.as_str().ok_or_else(|| {
                                field_err(
                                    &field,
                                    format!("expected strings, got {}", json_type(item)),
                                )
                            })?;
                            req.headers.push((name.clone(), s.to_string()));
                        }
                    }
                    other => {
                        return Err(field_err(
                            &field,
                            format!(
                                "expected a string or an array of strings, got {}",
                                json_type(other)
                            ),
                        ))
                    }
                }
            }
        }
        Some(other) => {
            return Err(field_err(
                "request.headers",
                format!("expected an object, got {}", json_type(other)),
            ))
        }
    }
    if let Some(ip) = opt_string(obj, "source_ip", "request.source_ip")? {
        let parsed: IpAddr = ip
            .parse()
            .map_err(|_| field_err("request.source_ip", format!("not an IP address: {ip:?}")))?;
        req.source_ip = Some(parsed);
    }
    match obj.get("client_certificate") {
        None | Some(Value::Null) => {}
        Some(v) => req.client_certificate = Some(parse_certificate(v)?),
    }
    Ok(req)
}

fn parse_certificate(v: &Value) -> Result<ClientCertificate, InputError> {
    let obj = expect_object(v, "request.client_certificate")?;
    reject_unknown(obj, "request.client_certificate.", &["pem", "valid"])?;
    let pem = opt_string(obj, "pem", "request.client_certificate.pem")?
        .ok_or_else(|| field_err("request.client_certificate.pem", "missing"))?;
    let valid = match obj.get("valid") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(field_err(
                "request.client_certificate.valid",
                format!("expected a boolean, got {}", json_type(other)),
            ))
        }
    };
    let der = rustls_pemfile::certs(&mut pem.as_bytes())
        .next()
        .and_then(Result::ok)
        .ok_or_else(|| {
            field_err(
                "request.client_certificate.pem",
                "no PEM CERTIFICATE block found",
            )
        })?;
    Ok(ClientCertificate::from_der(der.to_vec(), valid))
}

fn parse_identity(v: &Value) -> Result<Identity, InputError> {
    let obj = expect_object(v, "identity")?;
    reject_unknown(obj, "identity.", &["email", "user_id", "groups", "claims"])?;
    let claims = match obj.get("claims") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(c)) => c.clone(),
        Some(other) => {
            return Err(field_err(
                "identity.claims",
                format!("expected an object, got {}", json_type(other)),
            ))
        }
    };
    let claim_str = |k: &str| claims.get(k).and_then(Value::as_str).map(str::to_string);
    let groups = match obj.get("groups") {
        None | Some(Value::Null) => groups_from_claim(claims.get("groups")),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, g)| {
                g.as_str().map(str::to_string).ok_or_else(|| {
                    field_err(
                        &format!("identity.groups[{i}]"),
                        format!("expected a string, got {}", json_type(g)),
                    )
                })
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(field_err(
                "identity.groups",
                format!("expected an array of strings, got {}", json_type(other)),
            ))
        }
    };
    Ok(Identity {
        user_id: opt_string(obj, "user_id", "identity.user_id")?
            .or_else(|| claim_str("sub"))
            .unwrap_or_default(),
        email: opt_string(obj, "email", "identity.email")?
            .or_else(|| claim_str("email"))
            .unwrap_or_default(),
        groups,
        claims: flatten_claims(&claims),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "allow:\n  or:\n    - email: {is: alice@example.com}\n    - http_path: {starts_with: /public}\n";

    #[test]
    fn check_ok_and_error() {
        assert_eq!(check(POLICY), CliOutput::ok("ok\n".into(), String::new()));
        let out = check("allow: {maybe: []}");
        assert_eq!(out.code, 2);
        assert!(out.stderr.contains(
            "invalid rules in policy: unsupported conditional \"maybe\", only and, or, not, nor and action are allowed (at allow.maybe)"
        ), "{}", out.stderr);
        let out = check("allow:\n  or:\n    - pomerium_routes: true\n");
        assert_eq!(out.code, 0);
        assert!(
            out.stderr.starts_with("warning: pomerium_routes"),
            "{}",
            out.stderr
        );
    }

    #[test]
    fn eval_outputs() {
        let cases = [
            (
                r#"{"request": {"method": "GET", "path": "/x"}, "identity": null}"#,
                r#"{"decision":"login","reasons":["http-path-unauthorized","user-unauthenticated"]}"#,
            ),
            (
                r#"{"request": {"path": "/public/a?q=1"}}"#,
                r#"{"decision":"allow","reasons":["http-path-ok"]}"#,
            ),
            (
                r#"{"request": {"path": "/x"}, "identity": {"email": "alice@example.com"}}"#,
                r#"{"decision":"allow","reasons":["email-ok"]}"#,
            ),
            (
                r#"{"request": {"path": "/x"}, "identity": {"claims": {"email": "alice@example.com"}}}"#,
                r#"{"decision":"allow","reasons":["email-ok"]}"#,
            ),
            (
                r#"{"request": {"path": "/x"}, "identity": {"email": "bob@example.com"}}"#,
                r#"{"decision":"deny","reasons":["email-unauthorized","http-path-unauthorized"]}"#,
            ),
        ];
        for (input, want) in cases {
            let out = eval(POLICY, input);
            assert_eq!(out.code, 0, "{}", out.stderr);
            assert_eq!(out.stdout, format!("{want}\n"), "{input}");
        }
    }

    #[test]
    fn eval_input_errors_name_the_field() {
        let cases = [
            (r#"{"request": {"method": 5}}"#, "input field `request.method`: expected a string, got a number"),
            (r#"{"request": {}, "identity": {"groups": ["a", 1]}}"#, "input field `identity.groups[1]`: expected a string, got a number"),
            (r#"{"request": {"source_ip": "nope"}}"#, "input field `request.source_ip`: not an IP address: \"nope\""),
            (r#"{"request": {"metod": "GET"}}"#, "input field `request.metod`: unknown field"),
            (r#"{"identity": null}"#, "input field `request`: missing"),
            (r#"{"request": {"headers": {"x": 1}}}"#, "input field `request.headers.x`: expected a string or an array of strings, got a number"),
            (r#"{"request": {}, "identity": {"claims": []}}"#, "input field `identity.claims`: expected an object, got an array"),
            (r#"[1]"#, "input field `(input)`: expected an object"),
            (r#"{"request": "#, "input is not valid JSON"),
        ];
        for (input, want) in cases {
            let out = eval(POLICY, input);
            assert_eq!(out.code, 2);
            assert!(out.stderr.contains(want), "{input}: {}", out.stderr);
            assert!(out.stdout.is_empty());
        }
        let out = eval("allow: [", "{}");
        assert_eq!(out.code, 2);
        assert!(
            out.stderr
                .starts_with("error: policy: invalid policy YAML: "),
            "{}",
            out.stderr
        );
    }

    #[test]
    fn explain_trace() {
        let out = explain(POLICY, r#"{"request": {"path": "/x"}}"#);
        assert_eq!(out.code, 0);
        let want = "decision: login\n\
reasons: [http-path-unauthorized, user-unauthenticated]\n\
allow: false [http-path-unauthorized, user-unauthenticated]\n  \
or allow.or: false [http-path-unauthorized, user-unauthenticated]\n    \
email: {\"is\":\"alice@example.com\"}: false [user-unauthenticated]\n    \
http_path: {\"starts_with\":\"/public\"}: false [http-path-unauthorized]\n\
deny: false []\n  (no rules)\n\
because: user-unauthenticated appears in the reasons (no session)\n";
        assert_eq!(out.stdout, want);
    }
}
