//! `rampart convert`: rewrites ingress-nginx manifests to `ingress.pomerium.io/*` annotations
//! (default) or to Gateway API HTTPRoutes with PolicyFilters. The annotation translation is
//! [`crate::k8s::nginx_compat::translate`], the one the controller uses with
//! `--ingress-nginx-compat`. Everything that could not be carried over is listed on stderr.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::k8s::nginx_compat::{
    nginx_location_regex, nginx_rewrite_regex, translate, AllowList, ALLOWED_EMAILS,
    ALLOWED_EMAIL_DOMAINS, ALLOWED_GROUPS, NGINX_PREFIX,
};

const POMERIUM_PREFIX: &str = "ingress.pomerium.io";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// Ingresses with `ingress.pomerium.io/*` annotations.
    Pomerium,
    /// Gateway API HTTPRoutes (`gateway.networking.k8s.io/v1`) and PolicyFilters
    /// (`gateway.pomerium.io/v1alpha1`).
    Gateway,
}

#[derive(Debug, Clone, Args)]
pub struct ConvertArgs {
    /// Manifest file (multi-document YAML or JSON, `List` objects allowed; `-` for stdin).
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Target::Pomerium)]
    pub to: Target,
    /// Allow this e-mail address on Ingresses that used oauth2-proxy (repeatable).
    #[arg(long = "allowed-email")]
    pub allowed_emails: Vec<String>,
    /// Allow this group (`groups` claim) on Ingresses that used oauth2-proxy (repeatable).
    #[arg(long = "allowed-group")]
    pub allowed_groups: Vec<String>,
    /// The oauth2-proxy command line flags, to carry its allow list over: `--email-domain`,
    /// `--authenticated-emails-file`, `--allowed-group`.
    #[arg(long, allow_hyphen_values = true)]
    pub oauth2_proxy_flags: Option<String>,
    /// IngressClass of the converted Ingresses.
    #[arg(long, default_value = "pomerium")]
    pub ingress_class: String,
    /// Gateway the HTTPRoutes attach to (`name` or `namespace/name`).
    #[arg(long, default_value = "rampart")]
    pub gateway: String,
    /// Exit 0 even when something could not be converted.
    #[arg(long)]
    pub allow_partial: bool,
}

/// The conversion result.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Converted {
    pub documents: Vec<Value>,
    /// What could not be converted: `Kind namespace/name: what`.
    pub dropped: Vec<String>,
    /// Approximations and manual steps.
    pub notes: Vec<String>,
}

/// Parses oauth2-proxy flags into an allow list. `read` reads `--authenticated-emails-file`.
pub fn oauth2_proxy_allow_list(
    flags: &str,
    read: &dyn Fn(&Path) -> std::io::Result<String>,
) -> Result<(AllowList, Vec<String>), String> {
    let words = shlex::split(flags).ok_or("--oauth2-proxy-flags: unbalanced quotes")?;
    let mut allow = AllowList::default();
    let mut ignored = Vec::new();
    let mut it = words.into_iter().peekable();
    while let Some(w) = it.next() {
        let Some(flag) = w.strip_prefix("--").or_else(|| w.strip_prefix('-')) else {
            ignored.push(w);
            continue;
        };
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (flag.to_string(), None),
        };
        let takes_value = matches!(
            name.as_str(),
            "email-domain" | "authenticated-emails-file" | "allowed-group"
        );
        if !takes_value {
            ignored.push(w.clone());
            // Skip a separate value of an unknown flag.
            if inline.is_none() && it.peek().is_some_and(|n| !n.starts_with('-')) {
                it.next();
            }
            continue;
        }
        let value = match inline {
            Some(v) => v,
            None => it
                .next()
                .ok_or_else(|| format!("--oauth2-proxy-flags: --{name} needs a value"))?,
        };
        match name.as_str() {
            "email-domain" => allow.domains.extend(split_list(&value)),
            "allowed-group" => allow.groups.extend(split_list(&value)),
            _ => {
                let text = read(Path::new(&value))
                    .map_err(|e| format!("--authenticated-emails-file {value}: {e}"))?;
                allow.emails.extend(
                    text.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty() && !l.starts_with('#'))
                        .map(str::to_string),
                );
            }
        }
    }
    Ok((allow, ignored))
}

fn split_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Reads multi-document YAML/JSON into objects (`List` items expanded, empty documents skipped).
pub fn parse_manifests(text: &str) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let v = Value::deserialize(doc).map_err(|e| e.to_string())?;
        match v {
            Value::Null => {}
            Value::Object(ref m) if m.get("kind").and_then(Value::as_str) == Some("List") => {
                out.extend(
                    m.get("items")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                );
            }
            Value::Object(_) => out.push(v),
            other => return Err(format!("not a Kubernetes object: {other}")),
        }
    }
    Ok(out)
}

fn id_of(obj: &Value) -> String {
    let m = &obj["metadata"];
    format!(
        "{}/{}",
        m["namespace"].as_str().unwrap_or("default"),
        m["name"].as_str().unwrap_or("")
    )
}

fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Converts every Ingress of `docs`; other objects pass through (in `gateway` mode, nginx
/// IngressClasses are dropped along with the Ingresses).
pub fn convert_documents(docs: Vec<Value>, args: &ConvertArgs, allow: &AllowList) -> Converted {
    let mut out = Converted::default();
    for doc in docs {
        let kind = doc["kind"].as_str().unwrap_or("");
        if kind != "Ingress" {
            out.documents.push(doc);
            continue;
        }
        let id = id_of(&doc);
        let annotations = string_map(&doc["metadata"]["annotations"]);
        let t = translate(&annotations, POMERIUM_PREFIX, allow);
        for e in &t.errors {
            out.dropped.push(format!("Ingress {id}: {e}"));
        }
        for n in &t.notes {
            out.notes.push(format!("Ingress {id}: {n}"));
        }
        match args.to {
            Target::Pomerium => to_pomerium(doc, &annotations, &t, args, &mut out),
            Target::Gateway => to_gateway(doc, &annotations, &t, args, &mut out),
        }
    }
    out
}

/// Every path of an Ingress, as (rule index, path index).
fn path_positions(ing: &Value) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (ri, rule) in ing["spec"]["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        for (pi, _) in rule["http"]["paths"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            out.push((ri, pi));
        }
    }
    out
}

fn to_pomerium(
    mut ing: Value,
    annotations: &BTreeMap<String, String>,
    t: &crate::k8s::nginx_compat::Translation,
    args: &ConvertArgs,
    out: &mut Converted,
) {
    let id = id_of(&ing);
    let mut ann: Map<String, Value> = Map::new();
    for (k, v) in annotations {
        let consumed = k.starts_with(&format!("{NGINX_PREFIX}/"))
            || [ALLOWED_EMAILS, ALLOWED_GROUPS, ALLOWED_EMAIL_DOMAINS].contains(&k.as_str())
            || k == crate::k8s::convert::LEGACY_CLASS_ANNOTATION;
        if !consumed {
            ann.insert(k.clone(), json!(v));
        }
    }
    for (k, v) in &t.annotations {
        ann.insert(format!("{POMERIUM_PREFIX}/{k}"), json!(v));
    }
    if t.regex_paths {
        ann.insert(format!("{POMERIUM_PREFIX}/path_regex"), json!("true"));
        for (ri, pi) in path_positions(&ing) {
            let p = &mut ing["spec"]["rules"][ri]["http"]["paths"][pi];
            if p["pathType"] != "Exact" {
                let raw = p["path"].as_str().unwrap_or("/").to_string();
                p["path"] = json!(nginx_location_regex(&raw));
                p["pathType"] = json!("ImplementationSpecific");
            }
        }
    }
    ing["metadata"]["annotations"] = Value::Object(ann);
    ing["spec"]["ingressClassName"] = json!(args.ingress_class);
    let Some(sub) = &t.rewrite_target else {
        out.documents.push(ing);
        return;
    };
    // The rewrite pattern depends on the path: one Ingress per path.
    let positions = path_positions(&ing);
    let split = positions.len() > 1;
    if split {
        out.notes.push(format!(
            "Ingress {id}: rewrite-target with {} paths: split into one Ingress per path ({}-0, {}-1, ...)",
            positions.len(),
            ing["metadata"]["name"].as_str().unwrap_or(""),
            ing["metadata"]["name"].as_str().unwrap_or("")
        ));
    }
    for (i, (ri, pi)) in positions.iter().enumerate() {
        let path = ing["spec"]["rules"][*ri]["http"]["paths"][*pi]["path"]
            .as_str()
            .unwrap_or("/")
            .to_string();
        // `path` is already the route regex `(?i)<nginx path>.*`; recover the nginx path.
        let nginx_path = path
            .strip_prefix("(?i)")
            .and_then(|p| p.strip_suffix(".*"))
            .unwrap_or(&path)
            .to_string();
        let mut one = ing.clone();
        if split {
            let name = format!("{}-{i}", ing["metadata"]["name"].as_str().unwrap_or(""));
            one["metadata"]["name"] = json!(name);
            let rule = ing["spec"]["rules"][*ri].clone();
            let mut rule = rule;
            rule["http"]["paths"] = json!([ing["spec"]["rules"][*ri]["http"]["paths"][*pi]]);
            one["spec"]["rules"] = json!([rule]);
            if i > 0 {
                if let Some(spec) = one["spec"].as_object_mut() {
                    spec.remove("defaultBackend");
                }
            }
        }
        one["metadata"]["annotations"][format!("{POMERIUM_PREFIX}/regex_rewrite_pattern")] =
            json!(nginx_rewrite_regex(&nginx_path));
        one["metadata"]["annotations"][format!("{POMERIUM_PREFIX}/regex_rewrite_substitution")] =
            json!(sub);
        out.documents.push(one);
    }
    if positions.is_empty() {
        out.documents.push(ing);
    }
}

/// `/prefix(/|$)(.*)` with `/$2`: the common "strip the prefix" idiom, expressible as a
/// PathPrefix match with `ReplacePrefixMatch: /`.
fn strip_prefix_idiom(path: &str, sub: &str) -> Option<String> {
    let prefix = path.strip_suffix("(/|$)(.*)")?;
    let plain = !prefix.is_empty()
        && prefix.starts_with('/')
        && !prefix.contains(['(', ')', '[', ']', '*', '+', '?', '|', '$', '^', '\\', '{']);
    (plain && sub == "/\\2").then(|| prefix.to_string())
}

fn backend_ref(backend: &Value, services: &[Value], ns: &str) -> Result<Value, String> {
    let svc = &backend["service"];
    let name = svc["name"]
        .as_str()
        .ok_or("backend without a service (resource backends have no HTTPRoute equivalent)")?;
    let port = if let Some(n) = svc["port"]["number"].as_u64() {
        n
    } else {
        let pname = svc["port"]["name"].as_str().unwrap_or("");
        services
            .iter()
            .find(|s| {
                s["kind"] == "Service"
                    && s["metadata"]["name"] == name
                    && s["metadata"]["namespace"].as_str().unwrap_or("default") == ns
            })
            .and_then(|s| {
                s["spec"]["ports"]
                    .as_array()?
                    .iter()
                    .find(|p| p["name"] == pname)?["port"]
                    .as_u64()
            })
            .ok_or_else(|| format!("service {name} port {pname:?}: HTTPRoute backends need a port number and the Service is not in the input"))?
    };
    Ok(json!({"name": name, "port": port}))
}

fn to_gateway(
    ing: Value,
    annotations: &BTreeMap<String, String>,
    t: &crate::k8s::nginx_compat::Translation,
    args: &ConvertArgs,
    out: &mut Converted,
) {
    let id = id_of(&ing);
    let name = ing["metadata"]["name"].as_str().unwrap_or("").to_string();
    let ns = ing["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_string();
    let services: Vec<Value> = out
        .documents
        .iter()
        .filter(|d| d["kind"] == "Service")
        .cloned()
        .collect();
    let mut drop = |what: String| out.dropped.push(format!("Ingress {id}: {what}"));

    // Policy → PolicyFilter.
    let mut rules: Vec<Value> = Vec::new();
    if let Some(p) = t.annotations.get("policy") {
        if let Ok(Value::Array(list)) = serde_json::from_str::<Value>(p) {
            rules.extend(list);
        }
    }
    if t.annotations
        .get("allow_any_authenticated_user")
        .map(String::as_str)
        == Some("true")
    {
        rules.insert(0, json!({"allow": {"and": [{"authenticated_user": true}]}}));
    }
    if t.annotations
        .get("allow_public_unauthenticated_access")
        .map(String::as_str)
        == Some("true")
    {
        rules.insert(0, json!({"allow": {"and": [{"accept": true}]}}));
    }
    for (k, v) in &t.annotations {
        let carried = matches!(
            k.as_str(),
            "policy"
                | "allow_any_authenticated_user"
                | "allow_public_unauthenticated_access"
                | "allow_websockets"
                | "host_rewrite"
                // Derived from the proxy-*-timeout that idle_timeout reports.
                | "timeout"
        );
        if !carried {
            drop(format!(
                "translated option {k}: {v} has no HTTPRoute equivalent{}",
                match k.as_str() {
                    "secure_upstream" | "h2c_upstream" =>
                        " (set appProtocol on the Service port: https or kubernetes.io/h2c)",
                    "pass_identity_headers" => " (identity headers are on by default)",
                    _ => "",
                }
            ));
        }
    }
    // Explicit ingress.pomerium.io annotations other than the policy ones.
    for k in annotations.keys() {
        if let Some(rest) = k.strip_prefix(&format!("{POMERIUM_PREFIX}/")) {
            if ![
                "policy",
                "allowed_users",
                "allowed_domains",
                "allow_any_authenticated_user",
                "allow_public_unauthenticated_access",
            ]
            .contains(&rest)
            {
                drop(format!("{k} has no HTTPRoute equivalent"));
            }
        }
    }
    let filter_name = format!("{name}-policy");
    let policy_filter = (!rules.is_empty()).then(|| {
        json!({"apiVersion": "gateway.pomerium.io/v1alpha1", "kind": "PolicyFilter",
               "metadata": {"name": filter_name, "namespace": ns},
               "spec": {"ppl": serde_yaml::to_string(&rules).unwrap_or_default()}})
    });

    let (gw_ns, gw_name) = match args.gateway.split_once('/') {
        Some((n, g)) => (Some(n.to_string()), g.to_string()),
        None => (None, args.gateway.clone()),
    };
    let mut parent = json!({"name": gw_name});
    if let Some(n) = gw_ns {
        parent["namespace"] = json!(n);
    }
    if ing["spec"]["tls"].is_array() {
        out.notes.push(format!(
            "Ingress {id}: spec.tls: put the certificate Secrets in the Gateway listener's certificateRefs"
        ));
    }
    if ing["spec"]["defaultBackend"].is_object() {
        drop("spec.defaultBackend has no HTTPRoute equivalent (add a rule for /)".into());
    }
    let rules_in = ing["spec"]["rules"].as_array().cloned().unwrap_or_default();
    let mut routes = Vec::new();
    for (ri, rule) in rules_in.iter().enumerate() {
        let host = rule["host"].as_str().unwrap_or("");
        let mut route_rules = Vec::new();
        for p in rule["http"]["paths"].as_array().into_iter().flatten() {
            let raw = p["path"].as_str().unwrap_or("/");
            let exact = p["pathType"] == "Exact";
            let backend = match backend_ref(&p["backend"], &services, &ns) {
                Ok(b) => b,
                Err(e) => {
                    drop(format!("path {raw}: {e}"));
                    continue;
                }
            };
            let mut filters = Vec::new();
            if policy_filter.is_some() {
                filters.push(json!({"type": "ExtensionRef", "extensionRef":
                    {"group": "gateway.pomerium.io", "kind": "PolicyFilter", "name": filter_name}}));
            }
            let mut rewrite = Map::new();
            if let Some(h) = t.annotations.get("host_rewrite") {
                rewrite.insert("hostname".into(), json!(h));
            }
            let path_match = match (&t.rewrite_target, t.regex_paths && !exact) {
                (Some(sub), _) => match strip_prefix_idiom(raw, sub) {
                    Some(prefix) => {
                        rewrite.insert(
                            "path".into(),
                            json!({"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}),
                        );
                        json!({"type": "PathPrefix", "value": prefix})
                    }
                    None if !sub.contains('\\') => {
                        rewrite.insert(
                            "path".into(),
                            json!({"type": "ReplaceFullPath", "replaceFullPath": sub}),
                        );
                        if exact {
                            json!({"type": "Exact", "value": raw})
                        } else {
                            json!({"type": "RegularExpression", "value": nginx_location_regex(raw)})
                        }
                    }
                    None => {
                        drop(format!("path {raw}: rewrite-target {sub:?} uses regex captures, which HTTPRoute URLRewrite cannot express"));
                        continue;
                    }
                },
                (None, true) => {
                    json!({"type": "RegularExpression", "value": nginx_location_regex(raw)})
                }
                (None, false) => {
                    json!({"type": if exact {"Exact"} else {"PathPrefix"}, "value": raw})
                }
            };
            if !rewrite.is_empty() {
                filters.push(json!({"type": "URLRewrite", "urlRewrite": rewrite}));
            }
            let mut r = json!({"matches": [{"path": path_match}], "backendRefs": [backend]});
            if !filters.is_empty() {
                r["filters"] = json!(filters);
            }
            route_rules.push(r);
        }
        if route_rules.is_empty() {
            continue;
        }
        let route_name = if rules_in.len() > 1 {
            format!("{name}-{ri}")
        } else {
            name.clone()
        };
        let mut route = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": route_name, "namespace": ns},
            "spec": {"parentRefs": [parent], "rules": route_rules}});
        if !host.is_empty() {
            route["spec"]["hostnames"] = json!([host]);
        }
        routes.push(route);
    }
    out.documents.extend(routes);
    if let Some(f) = policy_filter {
        out.documents.push(f);
    }
}

fn read_source(path: &Path) -> std::io::Result<String> {
    if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(path)
    }
}

/// `rampart convert`: 0 when everything converted (or `--allow-partial`), 1 when something
/// was dropped, 2 for unreadable input.
pub fn run(args: &ConvertArgs) -> i32 {
    let mut docs = Vec::new();
    for f in &args.files {
        let parsed = read_source(f)
            .map_err(|e| e.to_string())
            .and_then(|t| parse_manifests(&t));
        match parsed {
            Ok(d) => docs.extend(d),
            Err(e) => {
                eprintln!("{}: {e}", f.display());
                return 2;
            }
        }
    }
    let mut allow = AllowList {
        emails: args.allowed_emails.clone(),
        groups: args.allowed_groups.clone(),
        domains: Vec::new(),
    };
    if let Some(flags) = &args.oauth2_proxy_flags {
        match oauth2_proxy_allow_list(flags, &|p| std::fs::read_to_string(p)) {
            Ok((from_flags, ignored)) => {
                allow.emails.extend(from_flags.emails);
                allow.groups.extend(from_flags.groups);
                allow.domains.extend(from_flags.domains);
                for w in ignored {
                    eprintln!("note: oauth2-proxy flag {w} is not used by rampart convert");
                }
            }
            Err(e) => {
                eprintln!("{e}");
                return 2;
            }
        }
    }
    let converted = convert_documents(docs, args, &allow);
    let mut text = String::new();
    for d in &converted.documents {
        text.push_str("---\n");
        text.push_str(&serde_yaml::to_string(d).unwrap_or_default());
    }
    print!("{text}");
    for n in &converted.notes {
        eprintln!("note: {n}");
    }
    for d in &converted.dropped {
        eprintln!("not converted: {d}");
    }
    if converted.dropped.is_empty() || args.allow_partial {
        0
    } else {
        1
    }
}

#[cfg(test)]
mod tests;
