//! Table-driven tests for the PPL engine: criteria, matchers, operators, decisions, legacy
//! fields, document forms and error texts.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::*;

fn pol(text: &str) -> CompiledPolicy {
    compile_text(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn alice() -> Identity {
    Identity::from_claims(&json!({
        "sub": "u-alice", "email": "alice@example.com", "groups": ["admins", "dev"],
        "org": {"team": "core", "site": {"city": "Oslo"}}, "level": 3, "roles": ["a", "b"],
        "single": ["only"], "a/b": "slash-literal",
        "deep": {"a": {"b": {"c": {"d": {"e": "v"}}}}}
    }))
}

fn bob() -> Identity {
    Identity {
        user_id: "u-bob".into(),
        email: "bob@example.org".into(),
        groups: vec![],
        claims: Default::default(),
    }
}

fn get(path: &str) -> OwnedRequest {
    OwnedRequest::new("GET", path)
}

/// (decision, decisive reasons)
fn run(
    p: &CompiledPolicy,
    req: &OwnedRequest,
    id: Option<&Identity>,
) -> (Decision, Vec<&'static str>) {
    let ev = p.evaluate(req, id);
    (ev.decision, ev.decisive_reasons().to_strings())
}

use Decision::{Allow, ClientCertificateRequired as Cert495, Deny, Login};

#[test]
fn every_criterion_and_matcher() {
    let a = alice();
    let b = bob();
    let no_user = Identity {
        user_id: String::new(),
        ..alice()
    };
    let no_at = Identity {
        email: "alice".into(),
        ..alice()
    };
    let two_at = Identity {
        email: "a@b@c".into(),
        ..alice()
    };
    let cors = OwnedRequest::new("OPTIONS", "/")
        .with_header("Origin", "https://x")
        .with_header("access-control-request-method", "POST");
    let ip = |s: &str| get("/").with_source_ip(s.parse().unwrap());
    // (criterion yaml under `allow: or:`, request, identity, decision, reasons)
    #[allow(clippy::type_complexity)]
    let cases: Vec<(&str, OwnedRequest, Option<&Identity>, Decision, &[&str])> = vec![
        ("accept: true", get("/"), None, Allow, &["accept"]),
        ("accept: false", get("/"), None, Allow, &["accept"]),
        ("reject: true", get("/"), Some(&a), Deny, &["reject"]),
        (
            "authenticated_user: true",
            get("/"),
            Some(&a),
            Allow,
            &["user-ok"],
        ),
        (
            "authenticated_user: true",
            get("/"),
            Some(&no_user),
            Deny,
            &["user-unauthorized"],
        ),
        (
            "authenticated_user: true",
            get("/"),
            None,
            Login,
            &["user-unauthenticated"],
        ),
        (
            "email: alice@example.com",
            get("/"),
            Some(&a),
            Allow,
            &["email-ok"],
        ),
        (
            "email: {is: alice@example.com}",
            get("/"),
            Some(&b),
            Deny,
            &["email-unauthorized"],
        ),
        (
            "email: {is: ALICE@example.com}",
            get("/"),
            Some(&a),
            Deny,
            &["email-unauthorized"],
        ),
        (
            "email: {is: alice@example.com}",
            get("/"),
            None,
            Login,
            &["user-unauthenticated"],
        ),
        (
            "email: [alice@example.com, bob@example.org]",
            get("/"),
            Some(&a),
            Deny,
            &["email-unauthorized"],
        ),
        (
            "email: {in: [alice@example.com, bob@example.org]}",
            get("/"),
            Some(&b),
            Allow,
            &["email-ok"],
        ),
        (
            "email: {not_in: [alice@example.com]}",
            get("/"),
            Some(&a),
            Deny,
            &["email-unauthorized"],
        ),
        (
            "email: {not: alice@example.com}",
            get("/"),
            Some(&b),
            Allow,
            &["email-ok"],
        ),
        (
            "email: true",
            get("/"),
            Some(&a),
            Deny,
            &["email-unauthorized"],
        ),
        (
            "email: {ends_with: '@example.com'}",
            get("/"),
            Some(&a),
            Allow,
            &["email-ok"],
        ),
        (
            "email: {starts_with: alice, contains: '@ex'}",
            get("/"),
            Some(&a),
            Allow,
            &["email-ok"],
        ),
        (
            "email: {starts_with: alice, contains: '@org'}",
            get("/"),
            Some(&a),
            Deny,
            &["email-unauthorized"],
        ),
        (
            "domain: {is: example.com}",
            get("/"),
            Some(&a),
            Allow,
            &["domain-ok"],
        ),
        (
            "domain: example.com",
            get("/"),
            Some(&b),
            Deny,
            &["domain-unauthorized"],
        ),
        (
            "domain: {is: alice}",
            get("/"),
            Some(&no_at),
            Deny,
            &["domain-unauthorized"],
        ),
        (
            "domain: {is: b}",
            get("/"),
            Some(&two_at),
            Allow,
            &["domain-ok"],
        ),
        (
            "domain: {is: example.com}",
            get("/"),
            None,
            Login,
            &["user-unauthenticated"],
        ),
        ("user: u-alice", get("/"), Some(&a), Allow, &["user-ok"]),
        (
            "user: {is: u-alice}",
            get("/"),
            Some(&b),
            Deny,
            &["user-unauthorized"],
        ),
        (
            "user: {is: u-alice}",
            get("/"),
            None,
            Login,
            &["user-unauthenticated"],
        ),
        ("groups: admins", get("/"), Some(&a), Allow, &["groups-ok"]),
        (
            "groups: {has: admins}",
            get("/"),
            Some(&b),
            Deny,
            &["groups-unauthorized"],
        ),
        (
            "groups: {is: admins}",
            get("/"),
            Some(&a),
            Deny,
            &["groups-unauthorized"],
        ),
        (
            "groups: {exclude: ops}",
            get("/"),
            Some(&a),
            Allow,
            &["groups-ok"],
        ),
        (
            "groups: {exclude: dev}",
            get("/"),
            Some(&a),
            Deny,
            &["groups-unauthorized"],
        ),
        (
            "groups: {has: admins}",
            get("/"),
            None,
            Login,
            &["user-unauthenticated"],
        ),
        (
            "claim/groups: dev",
            get("/"),
            Some(&a),
            Allow,
            &["claim-ok"],
        ),
        (
            "claim/org.team: core",
            get("/"),
            Some(&a),
            Allow,
            &["claim-ok"],
        ),
        (
            "claim/org/team: core",
            get("/"),
            Some(&a),
            Allow,
            &["claim-ok"],
        ),
        (
            "claim/org/site/city: {is: Oslo}",
            get("/"),
            Some(&a),
            Allow,
            &["claim-ok"],
        ),
        (
            "claim/a/b: slash-literal",
            get("/"),
            Some(&a),
            Allow,
            &["claim-ok"],
        ),
        ("claim/level: 3", get("/"), Some(&a), Allow, &["claim-ok"]),
        (
            "claim/level: '3'",
            get("/"),
            Some(&a),
            Deny,
            &["claim-unauthorized"],
        ),
        (
            "claim/roles: {is: a}",
            get("/"),
            Some(&a),
            Deny,
            &["claim-unauthorized"],
        ),
        (
            "claim/single: {is: only}",
            get("/"),
            Some(&a),
            Allow,
            &["claim-ok"],
        ),
        (
            "claim/org.site/city: Oslo",
            get("/"),
            Some(&a),
            Allow,
            &["claim-ok"],
        ),
        (
            "claim/org/site/city/x/y/z: Oslo",
            get("/"),
            Some(&a),
            Deny,
            &["claim-unauthorized"],
        ),
        (
            "claim/missing: {exclude: x}",
            get("/"),
            Some(&a),
            Allow,
            &["claim-ok"],
        ),
        (
            "claim/missing: {has: x}",
            get("/"),
            Some(&a),
            Deny,
            &["claim-unauthorized"],
        ),
        (
            "claim/roles: {has: a}",
            get("/"),
            None,
            Login,
            &["user-unauthenticated"],
        ),
        (
            "http_method: GET",
            get("/"),
            None,
            Allow,
            &["http-method-ok"],
        ),
        (
            "http_method: {is: get}",
            get("/"),
            None,
            Deny,
            &["http-method-unauthorized"],
        ),
        (
            "http_method: {in: [PUT, GET]}",
            get("/"),
            None,
            Allow,
            &["http-method-ok"],
        ),
        (
            "http_path: {starts_with: /api}",
            get("/api/v1"),
            None,
            Allow,
            &["http-path-ok"],
        ),
        (
            "http_path: {starts_with: /api}",
            get("/ap"),
            None,
            Deny,
            &["http-path-unauthorized"],
        ),
        (
            "http_path: /exact",
            get("/exact"),
            None,
            Allow,
            &["http-path-ok"],
        ),
        (
            "http_path: {ends_with: .css}",
            get("/a/b.css"),
            None,
            Allow,
            &["http-path-ok"],
        ),
        (
            "http_path: {contains: secret}",
            get("/a/secret/b"),
            None,
            Allow,
            &["http-path-ok"],
        ),
        (
            "cors_preflight: true",
            cors.clone(),
            None,
            Allow,
            &["cors-request"],
        ),
        (
            "cors_preflight: true",
            OwnedRequest::new("OPTIONS", "/").with_header("Origin", "x"),
            None,
            Deny,
            &["non-cors-request"],
        ),
        (
            "cors_preflight: true",
            get("/")
                .with_header("Origin", "x")
                .with_header("Access-Control-Request-Method", "GET"),
            None,
            Deny,
            &["non-cors-request"],
        ),
        (
            "source_ip: 10.0.0.0/8",
            ip("10.2.3.4"),
            None,
            Allow,
            &["source-ip-ok"],
        ),
        (
            "source_ip: [192.168.0.1, 10.0.0.0/8]",
            ip("192.168.0.1"),
            None,
            Allow,
            &["source-ip-ok"],
        ),
        (
            "source_ip: 10.0.0.0/8",
            ip("11.2.3.4"),
            None,
            Deny,
            &["source-ip-unauthorized"],
        ),
        (
            "source_ip: 10.0.0.0/8",
            get("/"),
            None,
            Deny,
            &["source-ip-unauthorized"],
        ),
        (
            "source_ip: '::ffff:10.0.0.0/104'",
            ip("10.2.3.4"),
            None,
            Allow,
            &["source-ip-ok"],
        ),
        (
            "source_ip: 10.0.0.0/8",
            ip("::ffff:10.2.3.4"),
            None,
            Allow,
            &["source-ip-ok"],
        ),
        (
            "source_ip: '2001:db8::/32'",
            ip("2001:db8::5"),
            None,
            Allow,
            &["source-ip-ok"],
        ),
        (
            "invalid_client_certificate: true",
            get("/"),
            None,
            Allow,
            &["client-certificate-required"],
        ),
        (
            "device: {type: any}",
            get("/"),
            Some(&a),
            Deny,
            &["device-unauthenticated"],
        ),
        (
            "device: {approved: true}",
            get("/"),
            None,
            Login,
            &["user-unauthenticated"],
        ),
        (
            "pomerium_routes: true",
            get("/.pomerium/jwt"),
            None,
            Allow,
            &["pomerium-route"],
        ),
        (
            "pomerium_routes: true",
            get("/app"),
            None,
            Deny,
            &["non-pomerium-route"],
        ),
        ("mcp_tool: search", get("/"), Some(&a), Deny, &[]),
    ];
    for (criterion, req, id, decision, reasons) in cases {
        let text = format!("allow:\n  or:\n    - {criterion}\n");
        let p = pol(&text);
        assert_eq!(
            run(&p, &req, id),
            (decision, reasons.to_vec()),
            "{criterion} with {req:?} {id:?}"
        );
    }
}

fn test_cert() -> (Vec<u8>, Vec<u8>) {
    use rcgen::{CertificateParams, KeyPair, SanType};
    let mut params = CertificateParams::new(vec!["client.example.com".to_string()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::Rfc822Name("carol@example.com".try_into().unwrap()));
    params.subject_alt_names.push(SanType::URI(
        "spiffe://example.com/carol".try_into().unwrap(),
    ));
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.der().to_vec(), key.public_key_der())
}

#[test]
fn client_certificate_criteria() {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    let (der, spki) = test_cert();
    let fp: [u8; 32] = Sha256::digest(&der).into();
    let fp_hex: String = fp.iter().map(|b| format!("{b:02x}")).collect();
    let fp_colon: String = fp
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    let spki_b64 = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&spki));
    let other_b64 = base64::engine::general_purpose::STANDARD.encode([1u8; 32]);
    let valid = ClientCertificate::from_der(der.clone(), true);
    assert_eq!(valid.san_dns, vec!["client.example.com"]);
    assert_eq!(valid.san_email, vec!["carol@example.com"]);
    assert_eq!(valid.san_uri, vec!["spiffe://example.com/carol"]);
    let invalid = ClientCertificate::from_der(der, false);
    let with = |c: &ClientCertificate| get("/").with_client_certificate(c.clone());
    let cases: Vec<(String, OwnedRequest, Decision, &[&str])> = vec![
        (
            format!("client_certificate: {{fingerprint: {fp_hex}}}"),
            with(&valid),
            Allow,
            &["client-certificate-ok"],
        ),
        (
            format!("client_certificate: {{fingerprint: '{fp_colon}'}}"),
            with(&valid),
            Allow,
            &["client-certificate-ok"],
        ),
        (
            format!(
                "client_certificate: {{fingerprint: ['{}', {fp_hex}]}}",
                "0".repeat(64)
            ),
            with(&valid),
            Allow,
            &["client-certificate-ok"],
        ),
        (
            format!("client_certificate: {{fingerprint: '{}'}}", "0".repeat(64)),
            with(&valid),
            Deny,
            &["client-certificate-unauthorized"],
        ),
        (
            format!("client_certificate: {{fingerprint: {fp_hex}}}"),
            get("/"),
            Deny,
            &["client-certificate-unauthorized"],
        ),
        (
            format!("client_certificate: {{spki_hash: '{spki_b64}'}}"),
            with(&valid),
            Allow,
            &["client-certificate-ok"],
        ),
        (
            format!("client_certificate: {{spki_hash: '{other_b64}'}}"),
            with(&valid),
            Deny,
            &["client-certificate-unauthorized"],
        ),
        (
            "client_certificate: {san_email: carol@example.com}".into(),
            with(&valid),
            Allow,
            &["client-certificate-ok"],
        ),
        (
            "client_certificate: {san_dns: {ends_with: .example.com}}".into(),
            with(&valid),
            Allow,
            &["client-certificate-ok"],
        ),
        (
            "client_certificate: {san_uri: {starts_with: 'spiffe://example.com/'}}".into(),
            with(&valid),
            Allow,
            &["client-certificate-ok"],
        ),
        (
            "client_certificate: {san_uri: {starts_with: 'spiffe://other/'}}".into(),
            with(&valid),
            Deny,
            &["client-certificate-unauthorized"],
        ),
        (
            format!(
                "client_certificate: {{san_dns: client.example.com, spki_hash: '{other_b64}'}}"
            ),
            with(&valid),
            Deny,
            &["client-certificate-unauthorized"],
        ),
        (
            "client_certificate: {}".into(),
            with(&valid),
            Allow,
            &["client-certificate-ok"],
        ),
        // SAN conditions are each satisfied by some SAN (Rego `list[_]`); not_in: no SAN listed.
        (
            "client_certificate: {san_dns: {is: client.example.com, not: client.example.com}}"
                .into(),
            with(&valid),
            Deny,
            &["client-certificate-unauthorized"],
        ),
        (
            "client_certificate: {san_email: {not_in: [carol@example.com]}}".into(),
            with(&valid),
            Deny,
            &["client-certificate-unauthorized"],
        ),
        (
            "client_certificate: {san_email: {not_in: [dave@example.com]}}".into(),
            with(&valid),
            Allow,
            &["client-certificate-ok"],
        ),
        (
            "client_certificate: {san_email: {in: [dave@example.com, carol@example.com]}}".into(),
            with(&valid),
            Allow,
            &["client-certificate-ok"],
        ),
    ];
    for (criterion, req, decision, reasons) in cases {
        let p = pol(&format!("allow:\n  or:\n    - {criterion}\n"));
        assert_eq!(
            run(&p, &req, None),
            (decision, reasons.to_vec()),
            "{criterion}"
        );
    }
    // invalid_client_certificate in a deny block: the mTLS enforcement rule.
    let p = pol("allow: {or: [{accept: true}]}\ndeny: {or: [{invalid_client_certificate: true}]}");
    assert_eq!(
        run(&p, &get("/"), None),
        (Cert495, vec!["client-certificate-required"])
    );
    assert_eq!(
        run(&p, &with(&invalid), None),
        (Cert495, vec!["invalid-client-certificate"])
    );
    assert_eq!(run(&p, &with(&valid), None), (Allow, vec!["accept"]));
    let ev = p.evaluate(&with(&valid), None);
    assert_eq!(
        ev.deny_reasons.to_strings(),
        vec!["valid-client-certificate"]
    );
    assert_eq!(p.evaluate(&get("/"), None).deny_status(), Some(495));
    // 495 wins over login.
    let p = pol("allow: {or: [{email: x}]}\ndeny: {or: [{invalid_client_certificate: true}]}");
    assert_eq!(p.evaluate(&get("/"), None).decision, Cert495);
    // A default deny judged by allow reasons naming the certificate is a 495 too.
    let p = pol("allow: {not: [{invalid_client_certificate: true}]}");
    assert_eq!(
        run(&p, &get("/"), None),
        (Cert495, vec!["client-certificate-required"])
    );
    assert_eq!(
        run(&p, &with(&valid), None),
        (Allow, vec!["valid-client-certificate"])
    );
    // The implicit rule from compile options.
    let opts = CompileOptions {
        enforce_client_certificate: true,
    };
    let p = compile_route_with(
        &LegacyPolicy {
            allow_public_unauthenticated_access: true,
            ..Default::default()
        },
        &[],
        opts,
    )
    .unwrap();
    assert_eq!(
        run(&p, &get("/"), None),
        (Cert495, vec!["client-certificate-required"])
    );
    assert_eq!(run(&p, &with(&valid), None), (Allow, vec!["accept"]));
}

#[test]
fn operators_merge_reasons() {
    let a = alice();
    let b = bob();
    // (policy, request, identity, decision, allow value, allow reasons)
    #[allow(clippy::type_complexity)]
    let cases: Vec<(&str, OwnedRequest, Option<&Identity>, Decision, bool, &[&str])> = vec![
        ("allow: {and: [{accept: 1}, {http_method: GET}]}", get("/"), None, Allow, true, &["accept", "http-method-ok"]),
        ("allow: {and: [{accept: 1}, {http_method: PUT}, {reject: 1}]}", get("/"), None, Deny, false, &["http-method-unauthorized", "reject"]),
        ("allow: {or: [{reject: 1}, {http_method: GET}]}", get("/"), None, Allow, true, &["http-method-ok"]),
        ("allow: {or: [{reject: 1}, {http_method: PUT}]}", get("/"), None, Deny, false, &["http-method-unauthorized", "reject"]),
        // not = none of
        ("allow: {not: [{reject: 1}, {http_method: PUT}]}", get("/"), None, Allow, true, &["http-method-unauthorized", "reject"]),
        ("allow: {not: [{reject: 1}, {http_method: GET}]}", get("/"), None, Deny, false, &["http-method-ok"]),
        // nor = not all of
        ("allow: {nor: [{accept: 1}, {http_method: PUT}]}", get("/"), None, Allow, true, &["http-method-unauthorized"]),
        ("allow: {nor: [{accept: 1}, {http_method: GET}]}", get("/"), None, Deny, false, &["accept", "http-method-ok"]),
        // several operators in one action are OR'ed
        ("allow: {and: [{reject: 1}], or: [{http_method: GET}]}", get("/"), None, Allow, true, &["http-method-ok"]),
        ("allow: {and: [{reject: 1}], not: [{http_method: GET}]}", get("/"), None, Deny, false, &["http-method-ok", "reject"]),
        // `action` key tolerated; empty operator lists contribute nothing
        ("allow: {action: allow, or: [{accept: 1}]}", get("/"), None, Allow, true, &["accept"]),
        ("allow: {and: []}", get("/"), None, Deny, false, &[]),
        ("allow: {and: [], or: [{http_method: GET}]}", get("/"), None, Allow, true, &["http-method-ok"]),
        ("[]", get("/"), None, Deny, false, &[]),
        ("{}", get("/"), None, Deny, false, &[]),
        // several rule sets OR'ed
        ("[{allow: {or: [{reject: 1}]}}, {allow: {or: [{accept: 1}]}}]", get("/"), None, Allow, true, &["accept"]),
        ("[{allow: {and: [{email: x}]}}, {allow: {and: [{http_path: {starts_with: /api}}]}}]", get("/api/x"), None, Allow, true, &["http-path-ok"]),
        // session + non-session nesting
        ("allow: {and: [{domain: example.com}, {http_method: {in: [GET, HEAD]}}], not: [{groups: banned}]}", get("/"), Some(&a), Allow, true, &["domain-ok", "groups-unauthorized", "http-method-ok"]),
        ("allow: {and: [{domain: example.com}, {http_method: {in: [GET, HEAD]}}]}", get("/"), Some(&b), Deny, false, &["domain-unauthorized"]),
    ];
    for (text, req, id, decision, allow, reasons) in cases {
        let p = pol(text);
        let ev = p.evaluate(&req, id);
        assert_eq!(ev.decision, decision, "{text}");
        assert_eq!(ev.allow, allow, "{text}");
        assert_eq!(ev.allow_reasons.to_strings(), reasons.to_vec(), "{text}");
    }
}

/// Every "Consequences" bullet of spec 1.2.
#[test]
fn spec_consequences() {
    let a = alice();
    let bob = Identity {
        email: "bob".into(),
        ..alice()
    };
    // 1. and with http_path + email: anonymous `/` → Login.
    let p = pol("allow: {and: [{http_path: {starts_with: /api}}, {email: {is: x}}]}");
    assert_eq!(p.evaluate(&get("/"), None).decision, Login);
    // 2. or with http_path + email: anonymous /api/v1 → allow; also as two allow blocks.
    let p = pol("allow: {or: [{http_path: {starts_with: /api}}, {email: {is: x}}]}");
    assert_eq!(
        run(&p, &get("/api/v1"), None),
        (Allow, vec!["http-path-ok"])
    );
    assert_eq!(p.evaluate(&get("/"), None).decision, Login);
    let p = pol(
        "- allow: {or: [{http_path: {starts_with: /api}}]}\n- allow: {or: [{email: {is: x}}]}\n",
    );
    assert_eq!(
        run(&p, &get("/api/v1"), None),
        (Allow, vec!["http-path-ok"])
    );
    // 3. accept + deny email bob: anonymous → Login; bob → 403; others pass.
    let p = pol("allow: {or: [{accept: true}]}\ndeny: {or: [{email: {is: bob}}]}");
    assert_eq!(p.evaluate(&get("/"), None).decision, Login);
    assert_eq!(run(&p, &get("/"), Some(&bob)), (Deny, vec!["email-ok"]));
    assert_eq!(p.evaluate(&get("/"), Some(&bob)).deny_status(), Some(403));
    assert_eq!(run(&p, &get("/"), Some(&a)), (Allow, vec!["accept"]));
    // 4. allow email alice + deny DELETE: anonymous DELETE → Login, not 403.
    let p = pol("allow: {or: [{email: {is: alice@example.com}}]}\ndeny: {or: [{http_method: {is: DELETE}}]}");
    assert_eq!(
        p.evaluate(&OwnedRequest::new("DELETE", "/"), None).decision,
        Login
    );
    assert_eq!(
        p.evaluate(&OwnedRequest::new("DELETE", "/"), Some(&a))
            .decision,
        Deny
    );
    assert_eq!(p.evaluate(&get("/"), Some(&a)).decision, Allow);
    // 5. accept + deny /admin: anonymous /admin → 403.
    let p = pol("allow: {or: [{accept: true}]}\ndeny: {or: [{http_path: {starts_with: /admin}}]}");
    assert_eq!(run(&p, &get("/admin"), None), (Deny, vec!["http-path-ok"]));
    assert_eq!(p.evaluate(&get("/x"), None).decision, Allow);
    // 6. reject → 403 for everyone, anonymous included.
    let p = pol("allow: {or: [{reject: true}]}");
    assert_eq!(run(&p, &get("/"), None), (Deny, vec!["reject"]));
    assert_eq!(p.evaluate(&get("/"), Some(&a)).decision, Deny);
    // 7. not email bob: anonymous → Login.
    let p = pol("allow: {not: [{email: {is: bob}}]}");
    assert_eq!(p.evaluate(&get("/"), None).decision, Login);
    assert_eq!(p.evaluate(&get("/"), Some(&a)).decision, Allow);
    assert_eq!(p.evaluate(&get("/"), Some(&bob)).decision, Deny);
    // Default deny: no rules → 403 for anonymous, no login.
    let p = CompiledPolicy::deny_all();
    assert_eq!(run(&p, &get("/"), None), (Deny, vec![]));
    assert!(p.denies_everyone());
}

#[test]
fn yaml_and_json_forms_are_equivalent() {
    let yaml = "allow:\n  or:\n    - email:\n        is: alice@example.com\n    - domain: {is: example.com}\ndeny:\n  or:\n    - http_path:\n        starts_with: /admin\n";
    let json_text = r#"[{"allow":{"or":[{"email":{"is":"alice@example.com"}},{"domain":{"is":"example.com"}}]}},
 {"deny":{"or":[{"http_path":{"starts_with":"/admin"}}]}}]"#;
    let shorthand = "allow: {or: [{email: alice@example.com}, {domain: example.com}]}\ndeny: {or: [{http_path: {starts_with: /admin}}]}";
    let policies = [pol(yaml), pol(json_text), pol(shorthand)];
    let a = alice();
    let b = bob();
    for (req, id) in [
        (get("/"), None),
        (get("/"), Some(&a)),
        (get("/admin/x"), Some(&a)),
        (get("/"), Some(&b)),
    ] {
        let first = policies[0].evaluate(&req, id);
        for p in &policies[1..] {
            assert_eq!(p.evaluate(&req, id), first, "{req:?} {id:?}");
        }
    }
    assert_eq!(
        policies[0].evaluate(&get("/admin/x"), Some(&a)).decision,
        Deny
    );
    assert_eq!(policies[0].evaluate(&get("/"), Some(&a)).decision, Allow);
    assert_eq!(policies[0].criteria_count(), 3);
}

#[test]
fn legacy_fields() {
    let a = alice();
    let b = bob();
    let other = Identity {
        email: "zed@else.net".into(),
        user_id: "u-zed".into(),
        ..Identity::default()
    };
    let mut claims = BTreeMap::new();
    claims.insert("groups".to_string(), vec![json!("ops")]);
    let legacy = LegacyPolicy {
        allowed_domains: vec!["example.com".into()],
        allowed_users: vec!["bob@example.org".into(), "u-zed".into()],
        allowed_idp_claims: claims,
        ..Default::default()
    };
    assert_eq!(
        legacy.to_ppl().unwrap(),
        json!({"allow": {"or": [
            {"domain": {"is": "example.com"}},
            {"claim/groups": "ops"},
            {"user": {"is": "bob@example.org"}}, {"email": {"is": "bob@example.org"}},
            {"user": {"is": "u-zed"}}, {"email": {"is": "u-zed"}},
        ]}})
    );
    let p = compile_route(&legacy, &[]).unwrap();
    assert_eq!(run(&p, &get("/"), Some(&a)), (Allow, vec!["domain-ok"]));
    assert_eq!(run(&p, &get("/"), Some(&b)), (Allow, vec!["email-ok"]));
    assert_eq!(run(&p, &get("/"), Some(&other)), (Allow, vec!["user-ok"]));
    let ops = Identity {
        claims: flatten_claims(json!({"groups": ["ops"]}).as_object().unwrap()),
        ..Identity::default()
    };
    assert_eq!(run(&p, &get("/"), Some(&ops)), (Allow, vec!["claim-ok"]));
    assert_eq!(p.evaluate(&get("/"), None).decision, Login);

    // Public + CORS.
    let public = LegacyPolicy {
        allow_public_unauthenticated_access: true,
        cors_allow_preflight: true,
        ..Default::default()
    };
    let p = compile_route(&public, &[]).unwrap();
    assert_eq!(run(&p, &get("/"), None), (Allow, vec!["accept"]));
    // Any authenticated user, combined with a policy document: legacy rule first, then policy.
    let any = LegacyPolicy {
        allow_any_authenticated_user: true,
        ..Default::default()
    };
    let doc = parse_document("deny: {or: [{http_path: {starts_with: /admin}}]}").unwrap();
    let p = compile_route(&any, std::slice::from_ref(&doc)).unwrap();
    assert_eq!(run(&p, &get("/"), Some(&a)), (Allow, vec!["user-ok"]));
    assert_eq!(p.evaluate(&get("/admin"), Some(&a)).decision, Deny);
    assert_eq!(p.evaluate(&get("/"), None).decision, Login);
    // CORS preflight alone.
    let cors = LegacyPolicy {
        cors_allow_preflight: true,
        allow_any_authenticated_user: true,
        ..Default::default()
    };
    let p = compile_route(&cors, &[]).unwrap();
    let pre = OwnedRequest::new("OPTIONS", "/")
        .with_header("origin", "x")
        .with_header("access-control-request-method", "GET");
    assert_eq!(run(&p, &pre, None), (Allow, vec!["cors-request"]));
    // Neither legacy fields nor policy ⇒ deny-all.
    let p = compile_route(&LegacyPolicy::default(), &[]).unwrap();
    assert_eq!(run(&p, &get("/"), Some(&a)), (Deny, vec![]));
    assert_eq!(run(&p, &get("/"), None), (Deny, vec![]));
    // Empty legacy + policy: only the policy counts.
    let doc = parse_document("allow: {or: [{http_method: GET}]}").unwrap();
    let p = compile_route(&LegacyPolicy::default(), std::slice::from_ref(&doc)).unwrap();
    assert_eq!(run(&p, &get("/"), None), (Allow, vec!["http-method-ok"]));
    // Several policy documents are OR'ed like rule sets.
    let doc2 = parse_document("allow: {or: [{email: alice@example.com}]}").unwrap();
    let p = compile_route(&LegacyPolicy::default(), &[doc, doc2.clone()]).unwrap();
    assert_eq!(
        run(&p, &OwnedRequest::new("PUT", "/"), Some(&a)),
        (Allow, vec!["email-ok"])
    );
    // Errors inside the second document name it.
    let bad = parse_document("allow: {or: [{emial: x}]}").unwrap();
    let err = compile_route(&LegacyPolicy::default(), &[doc2, bad]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown policy criterion: emial (at policy[1].allow.or[0].emial)"
    );
    // Bad legacy claim matcher names the field.
    let mut claims = BTreeMap::new();
    claims.insert("groups".to_string(), vec![json!("a"), json!({"bogus": 1})]);
    let err = compile_route(
        &LegacyPolicy {
            allowed_idp_claims: claims,
            ..Default::default()
        },
        &[],
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "error generating criterion rules: unknown string list matcher operator: bogus (at allowed_idp_claims.groups[1])"
    );
}

#[test]
fn legacy_validation_errors() {
    let public = |f: fn(&mut LegacyPolicy)| {
        let mut l = LegacyPolicy {
            allow_public_unauthenticated_access: true,
            ..Default::default()
        };
        f(&mut l);
        compile_route(&l, &[])
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let msg = "config: policy route marked as public but contains whitelists";
    assert_eq!(
        public(|l| l.allow_any_authenticated_user = true),
        Err(msg.into())
    );
    assert_eq!(
        public(|l| l.allowed_domains = vec!["x".into()]),
        Err(msg.into())
    );
    assert_eq!(
        public(|l| l.allowed_users = vec!["x".into()]),
        Err(msg.into())
    );
    assert_eq!(public(|l| l.cors_allow_preflight = true), Ok(()));
    let any = |f: fn(&mut LegacyPolicy)| {
        let mut l = LegacyPolicy {
            allow_any_authenticated_user: true,
            ..Default::default()
        };
        f(&mut l);
        compile_route(&l, &[])
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let msg =
        "config: policy route marked accessible for any authenticated user but contains whitelists";
    assert_eq!(
        any(|l| l.allowed_domains = vec!["x".into()]),
        Err(msg.into())
    );
    assert_eq!(any(|l| l.allowed_users = vec!["x".into()]), Err(msg.into()));
    assert_eq!(
        any(|l| {
            l.allowed_idp_claims.insert("k".into(), vec![json!(1)]);
        }),
        Ok(())
    );
    // Deserialises from Pomerium's route keys.
    let l: LegacyPolicy =
        serde_yaml::from_str("allowed_users: [a]\nallowed_idp_claims: {groups: [x, 1]}\n").unwrap();
    assert_eq!(l.allowed_users, vec!["a"]);
    assert_eq!(l.allowed_idp_claims["groups"], vec![json!("x"), json!(1)]);
}

/// Malformed documents and their exact error texts.
#[test]
fn malformed_documents() {
    let cases: &[(&str, &str)] = &[
        ("5", "invalid rules in policy: unsupported type for rule: parser.Number"),
        ("hello", "invalid rules in policy: unsupported type for rule: parser.String"),
        ("true", "invalid rules in policy: unsupported type for rule: parser.Boolean"),
        ("null", "invalid rules in policy: unsupported type for rule: parser.Null"),
        ("[1]", "invalid rules in policy: unsupported type for rules array: parser.Number (at [0])"),
        ("[{allow: {or: []}}, [x]]", "invalid rules in policy: unsupported type for rules array: parser.Array (at [1])"),
        ("permit: {or: []}", "invalid rules in policy: invalid action in rule: unsupported action: permit (at permit)"),
        ("[{deny: {or: []}}, {allowed: {}}]", "invalid rules in policy: invalid action in rule: unsupported action: allowed (at [1].allowed)"),
        ("allow: [x]", "invalid rules in policy: invalid value for action in rule, expected Object, got parser.Array (at allow)"),
        ("deny: true", "invalid rules in policy: invalid value for action in rule, expected Object, got parser.Boolean (at deny)"),
        ("allow: {email: x}", "invalid rules in policy: unsupported conditional \"email\", only and, or, not, nor and action are allowed (at allow.email)"),
        ("allow: {maybe: []}", "invalid rules in policy: unsupported conditional \"maybe\", only and, or, not, nor and action are allowed (at allow.maybe)"),
        ("allow: {or: {email: x}}", "invalid rules in policy: invalid criteria in \"or\"): unsupported type for criteria: parser.Object (at allow.or)"),
        ("allow: {and: x}", "invalid rules in policy: invalid criteria in \"and\"): unsupported type for criteria: parser.String (at allow.and)"),
        ("allow: {or: [accept]}", "invalid rules in policy: invalid criteria in \"or\"): unsupported type for criteria array: parser.String (at allow.or[0])"),
        ("allow: {nor: [{accept: 1}, 7]}", "invalid rules in policy: invalid criteria in \"nor\"): unsupported type for criteria array: parser.Number (at allow.nor[1])"),
        ("allow: {or: [{}]}", "invalid rules in policy: invalid criteria in \"or\"): each criteria may only contain a single key and value (at allow.or[0])"),
        ("allow: {not: [{email: x, domain: y}]}", "invalid rules in policy: invalid criteria in \"not\"): each criteria may only contain a single key and value (at allow.not[0])"),
        ("allow: {or: [{emial: x}]}", "unknown policy criterion: emial (at allow.or[0].emial)"),
        ("allow: {or: [{date: {after: '2020-01-01'}}]}", "unknown policy criterion: date (at allow.or[0].date)"),
        ("allow: {or: [{day_of_week: mon-fri}]}", "unknown policy criterion: day_of_week (at allow.or[0].day_of_week)"),
        ("allow: {or: [{time_of_day: {timezone: UTC}}]}", "unknown policy criterion: time_of_day (at allow.or[0].time_of_day)"),
        ("allow: {or: [{record: {type: x}}]}", "unknown policy criterion: record (at allow.or[0].record)"),
        ("allow: {or: [{accept: 1}, {accept: 1}, {email: {matches: x}}]}", "error generating criterion rules: unknown string matcher operator: matches (at allow.or[2].email)"),
        ("allow: {or: [{groups: {contains: x}}]}", "error generating criterion rules: unknown string list matcher operator: contains (at allow.or[0].groups)"),
        ("allow: {or: [{claim/x: {in: [a]}}]}", "error generating criterion rules: unknown string list matcher operator: in (at allow.or[0].claim/x)"),
        ("allow: {or: [{email: {in: a}}]}", "error generating criterion rules: in matcher requires an array of strings (at allow.or[0].email)"),
        ("allow: {or: [{http_path: {not_in: /a}}]}", "error generating criterion rules: not_in matcher requires an array of strings (at allow.or[0].http_path)"),
        ("allow: {or: [{http_path: {starts_with: 1}}]}", "error generating criterion rules: starts_with matcher requires a string, got: parser.Number (at allow.or[0].http_path)"),
        ("allow: {or: [{source_ip: 10.0.0.0/33}]}", "error generating criterion rules: expected IP or CIDR range, got: \"10.0.0.0/33\" (at allow.or[0].source_ip)"),
        ("allow: {or: [{source_ip: {a: 1}}]}", "error generating criterion rules: expected string or array of strings, got: parser.Object (at allow.or[0].source_ip)"),
        ("allow: {or: [{client_certificate: abc}]}", "error generating criterion rules: expected object for certificate matcher, got: parser.String (at allow.or[0].client_certificate)"),
        ("allow: {or: [{client_certificate: {issuer: x}}]}", "error generating criterion rules: unsupported certificate matcher condition: issuer (at allow.or[0].client_certificate)"),
        ("allow: {or: [{client_certificate: {fingerprint: abc}}]}", "error generating criterion rules: unsupported certificate fingerprint format (abc) (at allow.or[0].client_certificate)"),
        ("allow: {or: [{client_certificate: {spki_hash: abc}}]}", "error generating criterion rules: certificate SPKI hash must be a base64-encoded SHA-256 hash (was abc) (at allow.or[0].client_certificate)"),
        ("allow: {or: [{device: true}]}", "error generating criterion rules: expected object for device criterion, got: parser.Boolean (at allow.or[0].device)"),
        ("allow: {or: [{device: {color: red}}]}", "error generating criterion rules: unexpected field in device criterion: color (at allow.or[0].device)"),
        ("allow: {or: [{device: {is: 1}}]}", "error generating criterion rules: expected string for device criterion is operator, got parser.Number (at allow.or[0].device)"),
        ("allow: {or: [{device: {type: [any]}}]}", "error generating criterion rules: expected string for device criterion type operator, got parser.Array (at allow.or[0].device)"),
        ("allow: {or: [{client_certificate: {fingerprint: 5}}]}", "error generating criterion rules: certificate fingerprint condition expects a string or array of strings (at allow.or[0].client_certificate)"),
        ("allow: {or: [{client_certificate: {fingerprint: [5]}}]}", "error generating criterion rules: certificate fingerprint must be a string (was 5) (at allow.or[0].client_certificate)"),
        ("allow: {or: [{client_certificate: {fingerprint: ''}}]}", "error generating criterion rules: certificate fingerprint must not be empty (at allow.or[0].client_certificate)"),
        ("allow: {or: [{client_certificate: {spki_hash: {}}}]}", "error generating criterion rules: certificate SPKI hash condition expects a string or array of strings (at allow.or[0].client_certificate)"),
        ("allow: {or: [{client_certificate: {spki_hash: [true]}}]}", "error generating criterion rules: certificate SPKI hash must be a string (was true) (at allow.or[0].client_certificate)"),
        ("allow: {or: [{client_certificate: {san_dns: {bogus: x}}}]}", "error generating criterion rules: unknown string matcher operator: bogus (at allow.or[0].client_certificate)"),
        // Operators are parsed before unknown keys are reported; allow is generated before deny.
        ("allow: {or: 5, maybe: []}", "invalid rules in policy: invalid criteria in \"or\"): unsupported type for criteria: parser.Number (at allow.or)"),
        ("deny: {or: [{bogus_d: 1}]}\nallow: {or: [{bogus_a: 1}]}", "unknown policy criterion: bogus_a (at allow.or[0].bogus_a)"),
        ("- deny: {or: [{bogus_d: 1}]}\n- allow: {or: [{bogus_a: 1}]}", "unknown policy criterion: bogus_a (at [1].allow.or[0].bogus_a)"),
        // Structure errors win over criterion errors anywhere in the document (parser before generator).
        ("- allow: {or: [{emial: x}]}\n- deny: {maybe: []}\n", "invalid rules in policy: unsupported conditional \"maybe\", only and, or, not, nor and action are allowed (at [1].deny.maybe)"),
    ];
    assert!(cases.len() >= 30);
    for (text, want) in cases {
        let got = compile_text(text).map(|_| ()).map_err(|e| e.to_string());
        assert_eq!(got, Err(want.to_string()), "{text}");
    }
}

#[test]
fn yaml_syntax_errors_pass_through() {
    let err = compile_text("allow:\n  or:\n    - email: is: \"x\"\n").unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, PolicyError::Yaml(_)));
    assert!(
        text.starts_with(
            "invalid policy YAML: mapping values are not allowed in this context at line 3 column"
        ),
        "{text}"
    );
    let err = compile_text("{\"allow\": {\"or\": [}")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("invalid policy YAML: ") && err.contains("line 1 column"),
        "{err}"
    );
    let err = compile_text("allow: {}\nallow: {}\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("duplicate entry"), "{err}");
}

#[test]
fn warnings_for_accepted_oddities() {
    let p = pol(
        "allow: {or: [{pomerium_routes: true}, {device: {type: any}}, {pomerium_routes: true}]}",
    );
    assert_eq!(p.warnings().len(), 2, "{:?}", p.warnings());
    assert!(p.warnings()[0].starts_with("pomerium_routes:"));
    assert!(p.warnings()[1].starts_with("device:"));
    assert!(pol("allow: {or: [{accept: true}]}").warnings().is_empty());
}

#[test]
fn explain_shows_inversion_and_warnings() {
    let p = pol("allow: {not: [{email: bob}]}\ndeny: {or: [{pomerium_routes: true}]}");
    let text = p.explain(&get("/"), Some(&alice()));
    assert!(
        text.starts_with("decision: allow\nreasons: [email-unauthorized]\n"),
        "{text}"
    );
    assert!(text.contains("  not allow.not: true [email-unauthorized]\n    email: \"bob\": false [email-unauthorized] (inverted: true)\n"), "{text}");
    assert!(
        text.contains("deny: false [non-pomerium-route]\n"),
        "{text}"
    );
    assert!(text.contains("warning: pomerium_routes:"), "{text}");
}

#[test]
fn dyn_request_view_works() {
    let p = pol("allow: {or: [{http_path: /x}]}");
    let req: &dyn RequestView = &get("/x");
    assert_eq!(p.evaluate(req, None).decision, Allow);
    let shared = std::sync::Arc::new(p);
    let h = {
        let shared = shared.clone();
        std::thread::spawn(move || shared.evaluate(&get("/x"), None).decision)
    };
    assert_eq!(h.join().unwrap(), Allow);
}

#[test]
fn value_helpers() {
    assert_eq!(parse_document("{\"a\": 1}").unwrap(), json!({"a": 1}));
    assert_eq!(parse_document("a: [1, x]").unwrap(), json!({"a": [1, "x"]}));
    assert!(json_eq(&json!(1), &json!(1.0)));
    assert!(!json_eq(&json!(1), &json!("1")));
    assert_eq!(go_type(&Value::Null), "parser.Null");
}
