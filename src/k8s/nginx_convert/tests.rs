use super::*;

fn args(to: Target) -> ConvertArgs {
    ConvertArgs {
        files: vec![],
        to,
        allowed_emails: vec![],
        allowed_groups: vec![],
        oauth2_proxy_flags: None,
        ingress_class: "pomerium".into(),
        gateway: "infra/rampart".into(),
        allow_partial: false,
    }
}

const TWO_PATHS: &str = "
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: api
  annotations:
    nginx.ingress.kubernetes.io/rewrite-target: /$2
spec:
  rules:
  - host: a.example.com
    http:
      paths:
      - {path: '/v1(/|$)(.*)', pathType: ImplementationSpecific, backend: {service: {name: v1, port: {number: 80}}}}
      - {path: '/v2(/|$)(.*)', pathType: ImplementationSpecific, backend: {service: {name: v2, port: {number: 80}}}}
";

#[test]
fn oauth2_proxy_flags() {
    let read = |p: &Path| {
        assert_eq!(p, Path::new("/etc/emails"));
        Ok("a@x.com\n\n# c\nb@x.com\n".to_string())
    };
    let (allow, ignored) = oauth2_proxy_allow_list(
        "--email-domain=x.com --email-domain 'y.com' --authenticated-emails-file /etc/emails --allowed-group=g1,g2 --upstream http://u --skip-provider-button",
        &read,
    )
    .unwrap();
    assert_eq!(allow.domains, vec!["x.com", "y.com"]);
    assert_eq!(allow.emails, vec!["a@x.com", "b@x.com"]);
    assert_eq!(allow.groups, vec!["g1", "g2"]);
    assert_eq!(ignored, vec!["--upstream", "--skip-provider-button"]);
    assert!(oauth2_proxy_allow_list("--email-domain", &read)
        .unwrap_err()
        .contains("--email-domain needs a value"));
    assert!(oauth2_proxy_allow_list("--email-domain 'x", &read)
        .unwrap_err()
        .contains("unbalanced quotes"));
}

#[test]
fn manifests_expand_lists() {
    let d = parse_manifests(
        "kind: List\nitems: [{kind: Service}, {kind: Secret}]\n---\n---\nkind: Ingress\n",
    )
    .unwrap();
    assert_eq!(d.len(), 3);
    assert!(parse_manifests("- a\n").is_err());
}

#[test]
fn rewrite_target_with_several_paths_splits_the_ingress() {
    let c = convert_documents(
        parse_manifests(TWO_PATHS).unwrap(),
        &args(Target::Pomerium),
        &AllowList::default(),
    );
    assert!(c.dropped.is_empty(), "{:?}", c.dropped);
    assert_eq!(c.documents.len(), 2);
    assert_eq!(c.documents[0]["metadata"]["name"], "api-0");
    assert_eq!(c.documents[1]["metadata"]["name"], "api-1");
    let a = &c.documents[1]["metadata"]["annotations"];
    assert_eq!(
        a["ingress.pomerium.io/regex_rewrite_pattern"],
        "(?i)^/v2(/|$)(.*).*"
    );
    assert_eq!(
        c.documents[1]["spec"]["rules"][0]["http"]["paths"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        c.documents[1]["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"],
        "v2"
    );
    assert!(c
        .notes
        .iter()
        .any(|n| n.contains("split into one Ingress per path")));
}

#[test]
fn gateway_routes_use_the_prefix_idiom_and_the_gateway_namespace() {
    let c = convert_documents(
        parse_manifests(TWO_PATHS).unwrap(),
        &args(Target::Gateway),
        &AllowList::default(),
    );
    assert!(c.dropped.is_empty(), "{:?}", c.dropped);
    let route = &c.documents[0];
    assert_eq!(
        route["spec"]["parentRefs"][0],
        json!({"name": "rampart", "namespace": "infra"})
    );
    assert_eq!(
        route["spec"]["rules"][1]["matches"][0]["path"],
        json!({"type": "PathPrefix", "value": "/v2"})
    );
    // Public: a PolicyFilter that accepts everyone.
    let f = &c.documents[1];
    assert_eq!(f["kind"], "PolicyFilter");
    assert!(f["spec"]["ppl"].as_str().unwrap().contains("accept: true"));
}

#[test]
fn gateway_cannot_express_regex_captures() {
    let text = TWO_PATHS.replace("/$2", "/x/$2/y");
    let c = convert_documents(
        parse_manifests(&text).unwrap(),
        &args(Target::Gateway),
        &AllowList::default(),
    );
    assert_eq!(c.dropped.len(), 2, "{:?}", c.dropped);
    assert!(c.dropped[0].contains("uses regex captures"));
}

#[test]
fn strip_prefix_idiom_only_for_plain_prefixes() {
    assert_eq!(
        strip_prefix_idiom("/api(/|$)(.*)", "/\\2").as_deref(),
        Some("/api")
    );
    assert_eq!(strip_prefix_idiom("/a.+(/|$)(.*)", "/\\2"), None);
    assert_eq!(strip_prefix_idiom("/api(/|$)(.*)", "/x/\\2"), None);
}

#[test]
fn other_objects_pass_through() {
    let c = convert_documents(
        parse_manifests("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n").unwrap(),
        &args(Target::Pomerium),
        &AllowList::default(),
    );
    assert_eq!(c.documents[0]["kind"], "ConfigMap");
}
