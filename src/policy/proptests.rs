//! Property test: random policies survive YAML serialise → parse → compile → evaluate and agree
//! with a straightforward recursive reference interpreter over `serde_json::Value`.

use std::collections::BTreeSet;

use proptest::prelude::*;
use serde_json::{json, Map, Value};

use super::*;

const STRINGS: &[&str] = &[
    "alice@example.com",
    "bob@example.org",
    "example.com",
    "u1",
    "u2",
    "admins",
    "dev",
    "/api",
    "/admin",
    "/",
    "GET",
    "POST",
    "OPTIONS",
    "api",
    "1",
    "true",
    "",
    "@",
    "yes",
    "null",
];

fn any_scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        8 => prop::sample::select(STRINGS).prop_map(|s| json!(s)),
        1 => Just(json!(1)),
        1 => Just(json!(true)),
        1 => Just(Value::Null),
    ]
}

fn string_list() -> impl Strategy<Value = Value> {
    prop::collection::vec(any_scalar(), 0..3).prop_map(Value::Array)
}

fn string_matcher() -> impl Strategy<Value = Value> {
    let op = prop_oneof![
        any_scalar().prop_map(|v| ("is", v)),
        any_scalar().prop_map(|v| ("not", v)),
        prop::sample::select(STRINGS).prop_map(|s| ("starts_with", json!(s))),
        prop::sample::select(STRINGS).prop_map(|s| ("ends_with", json!(s))),
        prop::sample::select(STRINGS).prop_map(|s| ("contains", json!(s))),
        string_list().prop_map(|v| ("in", v)),
        string_list().prop_map(|v| ("not_in", v)),
    ];
    prop_oneof![
        any_scalar(),
        string_list(),
        prop::collection::vec(op, 1..3).prop_map(|ops| {
            Value::Object(ops.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
        }),
    ]
}

fn list_matcher() -> impl Strategy<Value = Value> {
    let op = prop_oneof![
        any_scalar().prop_map(|v| ("has", v)),
        any_scalar().prop_map(|v| ("is", v)),
        any_scalar().prop_map(|v| ("exclude", v)),
    ];
    prop_oneof![
        any_scalar(),
        prop::collection::vec(op, 1..3).prop_map(|ops| {
            Value::Object(ops.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
        }),
    ]
}

fn criterion() -> impl Strategy<Value = Value> {
    let named =
        |name: &'static str, s: BoxedStrategy<Value>| s.prop_map(move |v| json!({ name: v }));
    prop_oneof![
        named("accept", Just(json!(true)).boxed()),
        named("reject", Just(json!(true)).boxed()),
        named("authenticated_user", Just(json!(true)).boxed()),
        named("cors_preflight", Just(json!(true)).boxed()),
        named("email", string_matcher().boxed()),
        named("domain", string_matcher().boxed()),
        named("user", string_matcher().boxed()),
        named("http_method", string_matcher().boxed()),
        named("http_path", string_matcher().boxed()),
        named("groups", list_matcher().boxed()),
        named("claim/team", list_matcher().boxed()),
        named("claim/org/level", list_matcher().boxed()),
    ]
}

fn action_block() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(
        prop::sample::select(&["and", "or", "not", "nor"][..]),
        prop::collection::vec(criterion(), 0..4),
        1..3,
    )
    .prop_map(|ops| {
        Value::Object(
            ops.into_iter()
                .map(|(k, v)| (k.to_string(), Value::Array(v)))
                .collect(),
        )
    })
}

fn rule_set() -> impl Strategy<Value = Value> {
    (
        prop::option::of(action_block()),
        prop::option::of(action_block()),
    )
        .prop_map(|(a, d)| {
            let mut m = Map::new();
            if let Some(a) = a {
                m.insert("allow".into(), a);
            }
            if let Some(d) = d {
                m.insert("deny".into(), d);
            }
            Value::Object(m)
        })
}

fn document() -> impl Strategy<Value = Value> {
    prop_oneof![
        rule_set(),
        prop::collection::vec(rule_set(), 0..3).prop_map(Value::Array)
    ]
}

#[derive(Debug, Clone)]
struct Case {
    method: &'static str,
    path: &'static str,
    cors_headers: bool,
    identity: Option<Value>,
}

fn case() -> impl Strategy<Value = Case> {
    let identity = (
        prop::sample::select(
            &[
                "alice@example.com",
                "bob@example.org",
                "nobody",
                "a@b@c",
                "",
            ][..],
        ),
        prop::sample::select(&["u1", "u2", ""][..]),
        prop::collection::vec(prop::sample::select(&["admins", "dev", "1"][..]), 0..3),
        prop::option::of(prop::collection::vec(any_scalar(), 0..3)),
        prop::option::of(any_scalar()),
    )
        .prop_map(|(email, sub, groups, team, level)| {
            let mut claims = json!({"email": email, "sub": sub, "groups": groups});
            if let Some(team) = team {
                claims["team"] = Value::Array(team);
            }
            if let Some(level) = level {
                claims["org"] = json!({"level": level});
            }
            claims
        });
    (
        prop::sample::select(&["GET", "POST", "OPTIONS", "get"][..]),
        prop::sample::select(&["/", "/api/x", "/admin", "/apix"][..]),
        any::<bool>(),
        prop::option::of(identity),
    )
        .prop_map(|(method, path, cors_headers, identity)| Case {
            method,
            path,
            cors_headers,
            identity,
        })
}

// ---- reference interpreter ----

type Res = (bool, BTreeSet<&'static str>);

fn one(v: bool, pass: &'static str, fail: &'static str) -> Res {
    (v, BTreeSet::from([if v { pass } else { fail }]))
}

fn ref_string(matcher: &Value, s: &str) -> bool {
    let obj = match matcher {
        Value::Object(o) => o.clone(),
        other => Map::from_iter([("is".to_string(), other.clone())]),
    };
    let sv = json!(s);
    obj.iter().all(|(op, v)| match op.as_str() {
        "is" => *v == sv,
        "not" => *v != sv,
        "starts_with" => s.starts_with(v.as_str().unwrap()),
        "ends_with" => s.ends_with(v.as_str().unwrap()),
        "contains" => s.contains(v.as_str().unwrap()),
        "in" => v.as_array().unwrap().contains(&sv),
        "not_in" => !v.as_array().unwrap().contains(&sv),
        _ => unreachable!(),
    })
}

fn ref_list(matcher: &Value, list: &[Value]) -> bool {
    let obj = match matcher {
        Value::Object(o) => o.clone(),
        other => Map::from_iter([("has".to_string(), other.clone())]),
    };
    obj.iter().all(|(op, v)| match op.as_str() {
        "has" => list.contains(v),
        "is" => list.len() == 1 && list[0] == *v,
        "exclude" => !list.contains(v),
        _ => unreachable!(),
    })
}

fn ref_criterion(c: &Value, case: &Case) -> Res {
    let (name, value) = c.as_object().unwrap().iter().next().unwrap();
    let id = case.identity.as_ref();
    let session = |f: &dyn Fn(&Value) -> Res| match id {
        None => (false, BTreeSet::from(["user-unauthenticated"])),
        Some(claims) => f(claims),
    };
    let text = |claims: &Value, k: &str| claims[k].as_str().unwrap_or("").to_string();
    match name.as_str() {
        "accept" => (true, BTreeSet::from(["accept"])),
        "reject" => (false, BTreeSet::from(["reject"])),
        "authenticated_user" => {
            session(&|c| one(!text(c, "sub").is_empty(), "user-ok", "user-unauthorized"))
        }
        "cors_preflight" => one(
            case.method == "OPTIONS" && case.cors_headers,
            "cors-request",
            "non-cors-request",
        ),
        "email" => session(&|c| {
            one(
                ref_string(value, &text(c, "email")),
                "email-ok",
                "email-unauthorized",
            )
        }),
        "domain" => session(&|c| {
            let email = text(c, "email");
            let ok = email
                .split('@')
                .nth(1)
                .is_some_and(|d| ref_string(value, d));
            one(ok, "domain-ok", "domain-unauthorized")
        }),
        "user" => session(&|c| {
            one(
                ref_string(value, &text(c, "sub")),
                "user-ok",
                "user-unauthorized",
            )
        }),
        "http_method" => one(
            ref_string(value, case.method),
            "http-method-ok",
            "http-method-unauthorized",
        ),
        "http_path" => one(
            ref_string(value, case.path),
            "http-path-ok",
            "http-path-unauthorized",
        ),
        "groups" => session(&|c| {
            let groups = c["groups"].as_array().cloned().unwrap_or_default();
            one(ref_list(value, &groups), "groups-ok", "groups-unauthorized")
        }),
        "claim/team" => session(&|c| {
            let list = c
                .get("team")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            one(ref_list(value, &list), "claim-ok", "claim-unauthorized")
        }),
        "claim/org/level" => session(&|c| {
            let list = c
                .pointer("/org/level")
                .map(|v| vec![v.clone()])
                .unwrap_or_default();
            one(ref_list(value, &list), "claim-ok", "claim-unauthorized")
        }),
        other => unreachable!("{other}"),
    }
}

fn ref_and(results: Vec<Res>) -> Res {
    if results.iter().all(|r| r.0) {
        (true, results.into_iter().flat_map(|r| r.1).collect())
    } else {
        (
            false,
            results
                .into_iter()
                .filter(|r| !r.0)
                .flat_map(|r| r.1)
                .collect(),
        )
    }
}

fn ref_or(results: Vec<Res>) -> Res {
    if results.iter().any(|r| r.0) {
        (
            true,
            results
                .into_iter()
                .filter(|r| r.0)
                .flat_map(|r| r.1)
                .collect(),
        )
    } else {
        (false, results.into_iter().flat_map(|r| r.1).collect())
    }
}

fn ref_action(doc: &Value, action: &str, case: &Case) -> Res {
    let sets: Vec<&Value> = match doc {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let mut ops = Vec::new();
    for set in sets {
        let Some(block) = set.get(action) else {
            continue;
        };
        for (op, criteria) in block.as_object().unwrap() {
            let criteria = criteria.as_array().unwrap();
            if criteria.is_empty() {
                continue;
            }
            let rs: Vec<Res> = criteria.iter().map(|c| ref_criterion(c, case)).collect();
            let inv = |rs: Vec<Res>| rs.into_iter().map(|(v, r)| (!v, r)).collect::<Vec<_>>();
            ops.push(match op.as_str() {
                "and" => ref_and(rs),
                "or" => ref_or(rs),
                "not" => ref_and(inv(rs)),
                "nor" => ref_or(inv(rs)),
                _ => unreachable!(),
            });
        }
    }
    ref_or(ops)
}

fn ref_decision(allow: &Res, deny: &Res) -> Decision {
    let any = |r: &str| allow.1.contains(r) || deny.1.contains(r);
    if any("user-unauthenticated") {
        Decision::Login
    } else if deny.0 {
        Decision::Deny
    } else if allow.0 {
        Decision::Allow
    } else {
        Decision::Deny
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn yaml_round_trip_matches_reference(doc in document(), cases in prop::collection::vec(case(), 1..6)) {
        let yaml = serde_yaml::to_string(&doc).unwrap();
        let parsed = parse_document(&yaml).unwrap();
        prop_assert_eq!(&parsed, &doc, "YAML round trip changed the document:\n{}", yaml);
        let policy = compile(&parsed).unwrap();
        for case in cases {
            let mut req = OwnedRequest::new(case.method, case.path);
            if case.cors_headers {
                req = req.with_header("Origin", "https://x").with_header("Access-Control-Request-Method", "GET");
            }
            let identity = case.identity.as_ref().map(Identity::from_claims);
            let ev = policy.evaluate(&req, identity.as_ref());
            let allow = ref_action(&doc, "allow", &case);
            let deny = ref_action(&doc, "deny", &case);
            let set = |r: Reasons| r.to_strings().into_iter().collect::<BTreeSet<_>>();
            prop_assert_eq!(ev.allow, allow.0, "allow value\n{}\n{:?}", yaml, case);
            prop_assert_eq!(set(ev.allow_reasons), allow.1.clone(), "allow reasons\n{}\n{:?}", yaml, case);
            prop_assert_eq!(ev.deny, deny.0, "deny value\n{}\n{:?}", yaml, case);
            prop_assert_eq!(set(ev.deny_reasons), deny.1.clone(), "deny reasons\n{}\n{:?}", yaml, case);
            prop_assert_eq!(ev.decision, ref_decision(&allow, &deny), "decision\n{}\n{:?}", yaml, case);
        }
    }
}

// ---- no-panic: PPL parser and compiler (issue 10) ----
//
// Whatever the text, parsing and compiling return a value or an error, and a compiled policy
// evaluates and explains any request without panicking.

mod no_panic {
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::super::*;
    use crate::fuzz_support::{config, mutated_text, YAML_TOKENS};

    /// Valid documents in YAML and JSON using every criterion and matcher.
    const PPL_SEEDS: &[&str] = &[
        include_str!("../../examples/policy.yaml"),
        "allow:\n  and:\n    - email: {is: alice@example.com}\n    - groups: {has: admins}\n  or:\n    - domain: {ends_with: example.com}\n    - user: {in: [u1, u2]}\ndeny:\n  not:\n    - http_method: {not_in: [GET, HEAD]}\n  nor:\n    - http_path: {starts_with: /admin, contains: x}\n",
        "- allow:\n    or:\n      - claim/org/level: {is: 3}\n      - claim/team: {exclude: ops}\n      - source_ip: [10.0.0.0/8, \"::1\"]\n      - cors_preflight: true\n      - accept: true\n- deny:\n    or:\n      - reject: true\n      - authenticated_user: true\n      - invalid_client_certificate: true\n",
        r#"{"allow":{"or":[{"client_certificate":{"fingerprint":"0d6f7b2e0e3b1f4ba2f0e5c8c7b5e0c1d6a4e2f3b1c0d9e8f7a6b5c4d3e2f1a0","san_dns":{"ends_with":".example.com"}}},{"device":{"is":"x"}},{"pomerium_routes":true},{"mcp_tool":{"in":["a"]}}]},"deny":{"and":[{"http_method":"DELETE"},{"email":{"not":"x@y"}}]}}"#,
        r#"[{"allow":{"and":[{"groups":{"is":"devs"}},{"claim/email_verified":true},{"source_ip":"192.168.0.1"}],"action":"allow"}},{"deny":{"or":[{"client_certificate":{"spki_hash":["AAAA"],"san_email":"a@b","san_uri":{"starts_with":"spiffe://"}}}]}}]"#,
    ];

    /// Tokens that steer mutations towards PPL structure.
    const PPL_TOKENS: &[&str] = &[
        "allow",
        "deny",
        "and",
        "or",
        "not",
        "nor",
        "action",
        "email",
        "domain",
        "user",
        "groups",
        "claim/",
        "claim/a/b",
        "http_method",
        "http_path",
        "source_ip",
        "client_certificate",
        "invalid_client_certificate",
        "device",
        "cors_preflight",
        "accept",
        "reject",
        "authenticated_user",
        "pomerium_routes",
        "mcp_tool",
        "is",
        "in",
        "not_in",
        "has",
        "exclude",
        "starts_with",
        "ends_with",
        "contains",
        "fingerprint",
        "spki_hash",
        "san_email",
        "san_dns",
        "san_uri",
        "0.0.0.0/0",
        "::/0",
        "1.2.3.4/33",
        "[]",
        "{}",
        "- {}",
        "\n- ",
        ": [",
        ": {",
        "null",
        "true",
        "1.5",
        "-0",
        "\"\"",
    ];

    fn tokens() -> &'static [&'static str] {
        static ALL: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
        ALL.get_or_init(|| PPL_TOKENS.iter().chain(YAML_TOKENS).copied().collect())
    }

    /// Any JSON value, nested a little, with PPL words among the strings and keys.
    fn wild_value() -> impl Strategy<Value = Value> {
        let word = prop_oneof![
            prop::sample::select(PPL_TOKENS).prop_map(str::to_string),
            ".{0,8}",
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| json!(f)),
            word.clone().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 24, 4, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(word.clone(), inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// A well-shaped document whose criterion values are anything at all.
    fn shaped_document() -> impl Strategy<Value = Value> {
        let criterion =
            (prop::sample::select(PPL_TOKENS), wild_value()).prop_map(|(k, v)| json!({ k: v }));
        let block = prop::collection::btree_map(
            prop::sample::select(&["and", "or", "not", "nor", "action"][..]),
            prop_oneof![
                4 => prop::collection::vec(criterion, 0..4).prop_map(Value::Array),
                1 => wild_value(),
            ],
            1..3,
        )
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()));
        let rule_set =
            prop::collection::btree_map(prop::sample::select(&["allow", "deny"][..]), block, 1..3)
                .prop_map(|m| {
                    Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
                });
        prop_oneof![
            rule_set.clone(),
            prop::collection::vec(rule_set, 0..3).prop_map(Value::Array),
        ]
    }

    fn requests() -> Vec<(OwnedRequest, Option<Identity>)> {
        let alice = Identity::from_claims(&json!({
            "sub": "u1", "email": "alice@example.com", "groups": ["admins"],
            "org": {"level": 3}, "team": ["ops"], "email_verified": true,
        }));
        vec![
            (OwnedRequest::new("GET", "/"), None),
            (
                OwnedRequest::new("OPTIONS", "/admin")
                    .with_header("Origin", "https://x")
                    .with_header("Access-Control-Request-Method", "GET"),
                Some(alice),
            ),
        ]
    }

    /// Compiles and, when it compiles, evaluates and explains: nothing may panic.
    fn exercise(value: &Value) {
        if let Ok(policy) = compile(value) {
            for (req, identity) in requests() {
                let ev = policy.evaluate(&req, identity.as_ref());
                let _ = ev.decisive_reasons().to_strings();
                let _ = policy.explain(&req, identity.as_ref());
            }
        }
        let _ = compile_route(&LegacyPolicy::default(), std::slice::from_ref(value));
        let _ = crate::k8s::annotations::check_policy(value);
    }

    proptest! {
        #![proptest_config(config(3000))]

        #[test]
        fn ppl_text_never_panics(text in mutated_text(PPL_SEEDS, tokens())) {
            if let Ok(value) = parse_document(&text) {
                exercise(&value);
            }
            let _ = crate::k8s::annotations::parse_policy(&text);
            let _ = cli::check(&text);
        }

        #[test]
        fn ppl_documents_with_any_values_never_panic(doc in shaped_document()) {
            exercise(&doc);
            // As YAML text it parses; as JSON text it parses or is an error
            // (YAML refuses raw control characters that JSON strings may hold).
            let yaml_text = serde_yaml::to_string(&doc).unwrap();
            let parsed = parse_document(&yaml_text);
            prop_assert!(parsed.is_ok(), "{yaml_text}: {parsed:?}");
            if let Ok(parsed) = parsed {
                exercise(&parsed);
            }
            if let Ok(parsed) = parse_document(&serde_json::to_string(&doc).unwrap()) {
                exercise(&parsed);
            }
        }
    }
}
