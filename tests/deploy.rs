//! The kustomize manifests render (with the real `kubectl kustomize`), and the namespaced
//! overlay grants no cluster-wide read of namespaced kinds.

use std::process::Command;

use serde::Deserialize;
use serde_yaml::Value;

fn kustomize(dir: &str) -> Option<Vec<Value>> {
    let out = match Command::new("kubectl")
        .args(["kustomize", dir])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            eprintln!("skipped: kubectl not runnable ({e})");
            return None;
        }
    };
    assert!(
        out.status.success(),
        "kubectl kustomize {dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    Some(
        serde_yaml::Deserializer::from_str(&text)
            .map(|d| Value::deserialize(d).unwrap())
            .collect(),
    )
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str, ns: Option<&str>) -> Option<&'a Value> {
    docs.iter().find(|d| {
        d["kind"].as_str() == Some(kind)
            && d["metadata"]["name"].as_str() == Some(name)
            && d["metadata"]["namespace"].as_str() == ns
    })
}

fn resources(role: &Value) -> Vec<String> {
    role["rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|r| r["resources"].as_sequence().unwrap().clone())
        .map(|r| r.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn base_and_namespaced_overlay_render() {
    let Some(base) = kustomize("deploy") else {
        return;
    };
    let cr = find(&base, "ClusterRole", "pomerium-controller", None).unwrap();
    assert!(resources(cr).contains(&"secrets".to_string()));

    let ns = kustomize("deploy/overlays/namespaced").unwrap();
    let cr = find(&ns, "ClusterRole", "pomerium-controller", None).unwrap();
    let cluster_wide = resources(cr);
    for namespaced in [
        "secrets",
        "services",
        "endpoints",
        "endpointslices",
        "ingresses",
    ] {
        assert!(
            !cluster_wide.contains(&namespaced.to_string()),
            "cluster-wide {namespaced}: {cluster_wide:?}"
        );
    }
    assert!(find(&ns, "ClusterRole", "pomerium-gen-secrets", None).is_none());
    let apps = find(&ns, "Role", "pomerium-controller", Some("apps")).unwrap();
    for r in [
        "secrets",
        "services",
        "endpointslices",
        "ingresses",
        "ingresses/status",
    ] {
        assert!(resources(apps).contains(&r.to_string()), "{r}");
    }
    assert!(find(&ns, "RoleBinding", "pomerium-controller", Some("apps")).is_some());
    let own = find(
        &ns,
        "Role",
        "pomerium-controller-own-namespace",
        Some("pomerium"),
    )
    .unwrap();
    assert!(resources(own).contains(&"secrets".to_string()));
    let dep = find(&ns, "Deployment", "pomerium", Some("pomerium")).unwrap();
    let args = &dep["spec"]["template"]["spec"]["containers"][0]["args"];
    assert!(
        args.as_sequence()
            .unwrap()
            .iter()
            .any(|a| a.as_str() == Some("--namespaces=apps")),
        "{args:?}"
    );
}

#[test]
fn gateway_api_overlay_installs_the_crds_and_enables_the_flag() {
    let Some(docs) = kustomize("deploy/overlays/gateway-api") else {
        return;
    };
    for plural in [
        "gatewayclasses",
        "gateways",
        "httproutes",
        "referencegrants",
    ] {
        let name = format!("{plural}.gateway.networking.k8s.io");
        let crd = find(&docs, "CustomResourceDefinition", &name, None)
            .unwrap_or_else(|| panic!("CRD {name} missing"));
        assert_eq!(
            crd["spec"]["group"].as_str(),
            Some("gateway.networking.k8s.io")
        );
    }
    let dep = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("Deployment"))
        .unwrap();
    let args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_sequence()
        .unwrap();
    assert!(args.iter().any(|a| a.as_str() == Some("--gateway-api")));
    let cr = find(&docs, "ClusterRole", "pomerium-controller", None).unwrap();
    let res = resources(cr);
    for r in [
        "httproutes",
        "httproutes/status",
        "gateways/status",
        "policyfilters",
    ] {
        assert!(res.contains(&r.to_string()), "{r} not granted");
    }
    assert!(find(&docs, "GatewayClass", "pomerium-gateway", None).is_some());
}
