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
