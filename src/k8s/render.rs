//! `rampart render`: converts Kubernetes manifests (files) into a Pomerium-style config file,
//! with the same conversion the controller uses. No cluster is needed.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use k8s_openapi::api::networking::v1::{IngressClass, IngressClassSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use thiserror::Error;

use crate::config::{CertificatePair, Settings};
use crate::k8s::convert::{pomerium_to_settings, ConvertOptions};
use crate::k8s::reconcile::{IngressResult, Reconciler};
use crate::k8s::KubeObject;

/// Name of the IngressClass assumed when the input has none.
pub const ASSUMED_CLASS: &str = "pomerium";

#[derive(Debug, Error)]
pub enum RenderError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: document {index}: {message}")]
    Parse {
        path: PathBuf,
        index: usize,
        message: String,
    },
}

/// Parses multi-document YAML (or JSON) holding Kubernetes objects. `List` objects are
/// flattened. Objects of other kinds are returned in `skipped` as `apiVersion kind name`.
pub fn parse_documents(
    text: &str,
    path: &Path,
) -> Result<(Vec<KubeObject>, Vec<String>), RenderError> {
    let mut objects = Vec::new();
    let mut skipped = Vec::new();
    for (index, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = serde_json::Value::deserialize(doc).map_err(|e| RenderError::Parse {
            path: path.to_path_buf(),
            index: index + 1,
            message: e.to_string(),
        })?;
        collect(value, path, index + 1, &mut objects, &mut skipped)?;
    }
    Ok((objects, skipped))
}

fn collect(
    value: serde_json::Value,
    path: &Path,
    index: usize,
    objects: &mut Vec<KubeObject>,
    skipped: &mut Vec<String>,
) -> Result<(), RenderError> {
    if value.is_null() {
        return Ok(());
    }
    let bad = |message: String| RenderError::Parse {
        path: path.to_path_buf(),
        index,
        message,
    };
    let api_version = value
        .get("apiVersion")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    let kind = value
        .get("kind")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    if kind.is_empty() {
        return Err(bad("object has no kind".into()));
    }
    if kind == "List" || kind.ends_with("List") && value.get("items").is_some() {
        let items = match value.get("items") {
            Some(serde_json::Value::Array(items)) => items.clone(),
            _ => Vec::new(),
        };
        for item in items {
            collect(item, path, index, objects, skipped)?;
        }
        return Ok(());
    }
    let what = format!("{api_version} {kind}");
    let de = |e: serde_json::Error| bad(format!("{what}: {e}"));
    let obj = match (api_version.as_str(), kind.as_str()) {
        ("networking.k8s.io/v1", "Ingress") => {
            KubeObject::Ingress(Box::new(serde_json::from_value(value).map_err(de)?))
        }
        ("networking.k8s.io/v1", "IngressClass") => {
            KubeObject::IngressClass(Box::new(serde_json::from_value(value).map_err(de)?))
        }
        ("v1", "Service") => {
            KubeObject::Service(Box::new(serde_json::from_value(value).map_err(de)?))
        }
        ("v1", "Endpoints") => {
            KubeObject::Endpoints(Box::new(serde_json::from_value(value).map_err(de)?))
        }
        ("discovery.k8s.io/v1", "EndpointSlice") => {
            KubeObject::EndpointSlice(Box::new(serde_json::from_value(value).map_err(de)?))
        }
        ("v1", "Secret") => {
            KubeObject::Secret(Box::new(serde_json::from_value(value).map_err(de)?))
        }
        ("ingress.pomerium.io/v1", "Pomerium") => {
            KubeObject::Pomerium(Box::new(serde_json::from_value(value).map_err(de)?))
        }
        ("gateway.networking.k8s.io/v1" | "gateway.networking.k8s.io/v1beta1", "GatewayClass") => {
            KubeObject::GatewayClass(Box::new(serde_json::from_value(value).map_err(de)?))
        }
        ("gateway.networking.k8s.io/v1" | "gateway.networking.k8s.io/v1beta1", "Gateway") => {
            KubeObject::Gateway(Box::new(serde_json::from_value(value).map_err(de)?))
        }
        ("gateway.networking.k8s.io/v1" | "gateway.networking.k8s.io/v1beta1", "HTTPRoute") => {
            KubeObject::HttpRoute(Box::new(serde_json::from_value(value).map_err(de)?))
        }
        (
            "gateway.networking.k8s.io/v1beta1" | "gateway.networking.k8s.io/v1",
            "ReferenceGrant",
        ) => KubeObject::ReferenceGrant(Box::new(serde_json::from_value(value).map_err(de)?)),
        ("v1", "Namespace") => {
            KubeObject::Namespace(Box::new(serde_json::from_value(value).map_err(de)?))
        }
        ("gateway.pomerium.io/v1alpha1", "PolicyFilter") => {
            KubeObject::PolicyFilter(Box::new(serde_json::from_value(value).map_err(de)?))
        }
        _ => {
            let name = value
                .pointer("/metadata/name")
                .and_then(|v| v.as_str())
                .unwrap_or("");
            skipped.push(format!("{what} {name}"));
            return Ok(());
        }
    };
    objects.push(obj);
    Ok(())
}

/// Result of rendering.
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    /// The config file (routes in evaluation order; certificates; CRD settings if given).
    pub settings: Settings,
    /// `namespace/name: error` per rejected Ingress, sorted.
    pub errors: Vec<String>,
    /// Non-fatal notes (skipped objects, CRD warnings, Ingresses that are not ours).
    pub warnings: Vec<String>,
}

/// Converts objects into a config. When no IngressClass is given, class `pomerium` owned by
/// `options.controller_name` is assumed.
pub fn render(
    objects: Vec<KubeObject>,
    options: ConvertOptions,
    pomerium_name: Option<&str>,
) -> Rendered {
    let mut objects = objects;
    if !objects
        .iter()
        .any(|o| matches!(o, KubeObject::IngressClass(_)))
    {
        objects.push(KubeObject::IngressClass(Box::new(IngressClass {
            metadata: ObjectMeta {
                name: Some(ASSUMED_CLASS.into()),
                ..Default::default()
            },
            spec: Some(IngressClassSpec {
                controller: Some(options.controller_name.clone()),
                parameters: None,
            }),
        })));
    }
    // Gateways whose GatewayClass is not in the input: assume the class is ours.
    if let Some(g) = &options.gateway {
        let classes: std::collections::BTreeSet<String> = objects
            .iter()
            .filter(|o| matches!(o, KubeObject::GatewayClass(_)))
            .map(|o| o.name().to_string())
            .collect();
        let mut missing: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
        for o in &objects {
            if let KubeObject::Gateway(gw) = o {
                if !classes.contains(&gw.spec.gateway_class_name) {
                    missing.insert(gw.spec.gateway_class_name.clone());
                }
            }
        }
        for name in missing {
            let mut c = crate::k8s::gateway::GatewayClass::default();
            c.metadata.name = Some(name);
            c.spec.controller_name = g.controller_name.clone();
            objects.push(KubeObject::GatewayClass(Box::new(c)));
        }
    }
    let mut rec = Reconciler::new(options);
    let outcome = rec.apply_all(objects);
    let mut out = Rendered::default();
    for (key, result) in outcome.results {
        if let IngressResult::Error(e) = result {
            out.errors.push(format!("{key}: {e}"));
        }
    }
    for (key, result) in outcome.gateway_results {
        if let IngressResult::Error(e) = result {
            out.errors.push(format!("httproute {key}: {e}"));
        }
    }
    out.errors.sort();

    let mut settings = Settings::default();
    let crd = match pomerium_name {
        Some(n) => rec.pomerium(n),
        None => rec.pomerium_objects().next(),
    };
    if let Some(p) = crd {
        let name = p.metadata.name.as_deref().unwrap_or("");
        match pomerium_to_settings(p, rec.state()) {
            Ok((s, warnings)) => {
                settings = s;
                out.warnings.extend(
                    warnings
                        .into_iter()
                        .map(|w| format!("pomerium/{name}: {w}")),
                );
            }
            Err(e) => out.errors.push(format!("pomerium/{name}: {e}")),
        }
    } else if let Some(n) = pomerium_name {
        out.errors
            .push(format!("pomerium/{n}: not found in the input"));
    }
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    for c in rec.certificates().iter() {
        settings.certificates.push(CertificatePair {
            cert: b64(&c.cert_pem),
            key: b64(&c.key_pem),
        });
    }
    settings.routes = rec.routes().as_ref().clone();
    out.settings = settings;
    out
}

/// Arguments of `rampart render` (see `cli::RenderArgs`).
#[derive(Debug, Clone)]
pub struct RenderOptions {
    pub files: Vec<PathBuf>,
    pub convert: ConvertOptions,
    pub pomerium_config: Option<String>,
}

/// Runs `rampart render`: YAML on stdout, one line per rejected Ingress on stderr.
/// Exit code: 0 ok, 1 some Ingress (or the CRD) was rejected, 2 unreadable input.
pub fn run(opts: &RenderOptions) -> i32 {
    let mut objects = Vec::new();
    let stderr = std::io::stderr();
    for path in &opts.files {
        let text = if path.as_os_str() == "-" {
            let mut s = String::new();
            match std::io::Read::read_to_string(&mut std::io::stdin(), &mut s) {
                Ok(_) => s,
                Err(e) => {
                    let _ = writeln!(stderr.lock(), "-: {e}");
                    return 2;
                }
            }
        } else {
            match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(source) => {
                    let _ = writeln!(
                        stderr.lock(),
                        "{}",
                        RenderError::Read {
                            path: path.clone(),
                            source
                        }
                    );
                    return 2;
                }
            }
        };
        match parse_documents(&text, path) {
            Ok((objs, skipped)) => {
                objects.extend(objs);
                for s in skipped {
                    tracing::debug!("{}: skipping {s}", path.display());
                }
            }
            Err(e) => {
                let _ = writeln!(stderr.lock(), "{e}");
                return 2;
            }
        }
    }
    let rendered = render(
        objects,
        opts.convert.clone(),
        opts.pomerium_config.as_deref(),
    );
    let yaml = match serde_yaml::to_string(&rendered.settings) {
        Ok(y) => y,
        Err(e) => {
            let _ = writeln!(stderr.lock(), "cannot serialize the config: {e}");
            return 2;
        }
    };
    let mut err = stderr.lock();
    for w in &rendered.warnings {
        let _ = writeln!(err, "warning: {w}");
    }
    for e in &rendered.errors {
        let _ = writeln!(err, "{e}");
    }
    let mut stdout = std::io::stdout().lock();
    if yaml.trim() == "{}" {
        let _ = writeln!(stdout, "routes: []");
    } else {
        let _ = stdout.write_all(yaml.as_bytes());
    }
    if rendered.errors.is_empty() {
        0
    } else {
        1
    }
}

impl From<crate::cli::RenderArgs> for RenderOptions {
    fn from(a: crate::cli::RenderArgs) -> Self {
        RenderOptions {
            files: a.files,
            convert: ConvertOptions {
                prefix: a.prefix,
                controller_name: a.name,
                namespaces: a.namespaces.into_iter().filter(|n| !n.is_empty()).collect(),
                gateway: Some(crate::k8s::gateway::GatewayOptions {
                    controller_name: a.gateway_class_controller_name,
                }),
                ingress_nginx_compat: a.ingress_nginx_compat,
            },
            pomerium_config: a.pomerium_config,
        }
    }
}
