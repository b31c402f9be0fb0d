//! `Pomerium` CRD → global `Settings` (ingress-controller spec §7, §8).

use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;

use super::context::{secret_bytes, secret_keys, secret_type, SecretLookup};
use crate::config::duration::parse_go_duration;
use crate::config::request_rules::{EscapedSlashesAction, UnderscoreHeadersAction};
use crate::config::{CertificatePair, Settings};
use crate::k8s::crd::Pomerium;

pub const HOSTED_AUTHENTICATE_URL: &str = "https://authenticate.pomerium.app";
pub const STORAGE_WARNING: &str = "storage: please specify a persistent storage backend, please see https://www.pomerium.com/docs/internals/data-storage";
pub const IDP_PROVIDERS: &[&str] = &[
    "auth0", "azure", "github", "gitlab", "google", "oidc", "okta", "onelogin", "ping", "apple",
    "cognito", "hosted",
];

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Splits a `namespace/name` Secret reference.
pub fn split_ref(r: &str) -> Result<(&str, &str), String> {
    match r.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() => Ok((ns, name)),
        _ => Err("missing namespace for resource".into()),
    }
}

fn fetch<'a>(
    secrets: &'a dyn SecretLookup,
    step: &str,
    r: &str,
) -> Result<(&'a Secret, String), String> {
    let (ns, name) = split_ref(r).map_err(|e| format!("secrets: {step}: parse {r}: {e}"))?;
    let s = secrets.get_secret(ns, name).ok_or_else(|| {
        let hint = if secrets.not_watched(ns) {
            format!(" (namespace {ns} is not watched: with --namespaces, Secrets are read from the managed namespaces and the controller's own namespace)")
        } else {
            String::new()
        };
        format!("secrets: {step}: get {ns}/{name}: Secret {name:?} not found{hint}")
    })?;
    Ok((s, format!("{ns}/{name}")))
}

fn utf8(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Builds global settings from the CRD. Returns the settings and warnings (deprecated or
/// unsupported fields, no persistent storage). Secrets are read through `secrets`.
pub fn pomerium_to_settings(
    p: &Pomerium,
    secrets: &dyn SecretLookup,
) -> Result<(Settings, Vec<String>), String> {
    let spec = &p.spec;
    let mut s = Settings::default();
    let mut warnings = Vec::new();

    // Bootstrap secret (§8).
    let (boot, boot_name) = fetch(secrets, "bootstrap secret", &spec.secrets)?;
    for key in ["shared_secret", "cookie_secret"] {
        let v = secret_bytes(boot, key).ok_or_else(|| {
            format!("transform config: secrets: secret {boot_name} is missing a key {key}")
        })?;
        if v.len() != 32 {
            return Err(format!(
                "transform config: secrets: secret {boot_name}, key {key} should be 32 bytes, got {}",
                v.len()
            ));
        }
        if key == "shared_secret" {
            s.shared_secret = Some(b64(v));
        } else {
            s.cookie_secret = Some(b64(v));
        }
    }
    if let Some(k) = secret_bytes(boot, "signing_key").filter(|k| !k.is_empty()) {
        let text = utf8(k);
        if !text.trim_start().starts_with("-----BEGIN") {
            return Err(format!(
                "transform config: secrets: secret {boot_name}, key signing_key: expected a PEM EC PRIVATE KEY"
            ));
        }
        s.signing_key = Some(b64(k));
    }

    // Authenticate.
    let url = spec
        .authenticate
        .as_ref()
        .map(|a| a.url.clone())
        .unwrap_or_else(|| HOSTED_AUTHENTICATE_URL.into());
    if !url.starts_with("https://") {
        return Err(format!(
            "settings: authenticate: url {url:?} must start with https://"
        ));
    }
    s.authenticate_service_url = Some(url);

    // Identity provider.
    if let Some(idp) = &spec.identity_provider {
        if !IDP_PROVIDERS.contains(&idp.provider.as_str()) {
            return Err(format!(
                "settings: idp: unsupported provider {:?} (use one of {})",
                idp.provider,
                IDP_PROVIDERS.join(", ")
            ));
        }
        s.idp_provider = Some(idp.provider.clone());
        let (sec, _) = fetch(secrets, "idp secret", &idp.secret)?;
        for key in ["client_id", "client_secret"] {
            let v = secret_bytes(sec, key)
                .ok_or_else(|| format!("settings: idp secret: {key} key is required"))?;
            if key == "client_id" {
                s.idp_client_id = Some(utf8(v));
            } else {
                s.idp_client_secret = Some(utf8(v));
            }
        }
        // Rampart extension for `apple`: the team's `.p8` key as client_secret, with its ids.
        if let Some(v) = secret_bytes(sec, "apple_team_id") {
            s.idp_apple_team_id = Some(utf8(v));
        }
        if let Some(v) = secret_bytes(sec, "apple_key_id") {
            s.idp_apple_key_id = Some(utf8(v));
        }
        if secret_bytes(sec, "service_account").is_some() {
            warnings.push("identityProvider.secret.service_account: config option was removed, please see https://docs.pomerium.com/docs/overview/upgrading#idp-directory-sync".into());
        }
        if let Some(u) = &idp.url {
            if !u.starts_with("https://") {
                return Err(format!("settings: idp: url {u:?} must start with https://"));
            }
            s.idp_provider_url = Some(u.clone());
        }
        s.idp_scopes = idp.scopes.clone().filter(|v| !v.is_empty());
        let mut params: BTreeMap<String, String> = idp.request_params.clone().unwrap_or_default();
        if let Some(r) = &idp.request_params_secret {
            let (sec, _) = fetch(secrets, "request params secret", r)?;
            for k in secret_keys(sec) {
                if params.contains_key(k) {
                    return Err(format!(
                        "settings: idp: request params: key {k} is set both in requestParams and requestParamsSecret"
                    ));
                }
                params.insert(
                    k.to_string(),
                    utf8(secret_bytes(sec, k).unwrap_or_default()),
                );
            }
        }
        if !params.is_empty() {
            s.idp_request_params = Some(params);
        }
        if idp.service_account_from_secret.is_some() {
            warnings.push("identityProvider.serviceAccountFromSecret: config option was removed, please see https://docs.pomerium.com/docs/overview/upgrading#idp-directory-sync".into());
        }
        if idp.refresh_directory.is_some() {
            warnings.push("identityProvider.refreshDirectory: config option was removed, please see https://docs.pomerium.com/docs/overview/upgrading#idp-directory-sync".into());
        }
    }

    // Certificates and CAs.
    for r in &spec.certificates {
        let (ns, name) = split_ref(r).map_err(|e| format!("settings: certs: {e}"))?;
        let Some(sec) = secrets.get_secret(ns, name) else {
            tracing::warn!(secret = %r, "certificate secret not found, skipped");
            continue;
        };
        let t = secret_type(sec);
        if t != "kubernetes.io/tls" {
            return Err(format!(
                "settings: certs: {ns}/{name} expected secret type kubernetes.io/tls, got {t}"
            ));
        }
        s.certificates.push(CertificatePair {
            cert: b64(secret_bytes(sec, "tls.crt").unwrap_or_default()),
            key: b64(secret_bytes(sec, "tls.key").unwrap_or_default()),
        });
    }
    let mut cas = Vec::new();
    for r in &spec.ca_secrets {
        let (sec, name) = fetch(secrets, "ca secrets", r)?;
        let ca = secret_bytes(sec, "ca.crt")
            .filter(|b| !b.is_empty())
            .ok_or_else(|| format!("settings: ca secrets: {name}: key ca.crt has no data"))?;
        cas.push(utf8(ca).trim_end().to_string());
    }
    if !cas.is_empty() {
        s.certificate_authority = Some(b64(cas.join("\n").as_bytes()));
    }

    // Cookie.
    if let Some(c) = &spec.cookie {
        s.cookie_name = c.name.clone();
        s.cookie_domain = c.domain.clone();
        s.cookie_http_only = c.http_only;
        if let Some(e) = &c.expire {
            parse_go_duration(e).map_err(|err| format!("settings: cookie: expire: {err}"))?;
            s.cookie_expire = Some(e.clone());
        }
        if let Some(ss) = &c.same_site {
            let l = ss.to_ascii_lowercase();
            if !["strict", "lax", "none"].contains(&l.as_str()) {
                return Err(format!(
                    "settings: cookie: sameSite must be strict, lax or none, got {ss:?}"
                ));
            }
            s.cookie_same_site = Some(l);
        }
    }

    // Headers.
    if let Some(h) = &spec.jwt_claim_headers {
        s.jwt_claims_headers = Some(serde_json::json!(h));
    }
    s.pass_identity_headers = spec.pass_identity_headers;
    s.set_response_headers = spec.set_response_headers.clone();

    // Request normalisation.
    s.normalize_path = spec.normalize_path;
    s.merge_slashes = spec.merge_slashes;
    if let Some(v) = &spec.path_with_escaped_slashes_action {
        EscapedSlashesAction::parse(v)
            .map_err(|e| format!("settings: pathWithEscapedSlashesAction: {e}"))?;
        s.path_with_escaped_slashes_action = Some(v.clone());
    }
    if let Some(v) = &spec.headers_with_underscores_action {
        UnderscoreHeadersAction::parse(v)
            .map_err(|e| format!("settings: headersWithUnderscoresAction: {e}"))?;
        s.headers_with_underscores_action = Some(v.clone());
    }

    // Timeouts.
    if let Some(t) = &spec.timeouts {
        let parse =
            |name: &str, v: &Option<String>| -> Result<Option<std::time::Duration>, String> {
                v.as_deref()
                    .map(|d| {
                        parse_go_duration(d).map_err(|e| format!("settings: timeouts: {name}: {e}"))
                    })
                    .transpose()
            };
        let read = parse("read", &t.read)?;
        let write = parse("write", &t.write)?;
        parse("idle", &t.idle)?;
        if let (Some(r), Some(w)) = (read, write) {
            if r >= w {
                return Err(format!(
                    "settings: timeouts: read timeout ({}) must be less than write timeout ({})",
                    t.read.as_deref().unwrap_or(""),
                    t.write.as_deref().unwrap_or("")
                ));
            }
        }
        s.timeout_read = t.read.clone();
        s.timeout_write = t.write.clone();
        s.timeout_idle = t.idle.clone();
    }

    // Storage.
    match &spec.storage {
        None => warnings.push(STORAGE_WARNING.into()),
        Some(st) => match (&st.file, &st.postgres) {
            (Some(f), _) => {
                s.databroker_storage_type = Some("file".into());
                s.databroker_storage_connection_string = Some(format!("file://{}", f.path));
            }
            (None, Some(pg)) => {
                let (sec, name) = fetch(secrets, "postgres secret", &pg.secret)?;
                let dsn = secret_bytes(sec, "connection")
                    .map(utf8)
                    .ok_or_else(|| format!("settings: storage: {name}: secret must have connection key"))?;
                if pg.tls_secret.is_some() || pg.ca_secret.is_some() {
                    if !dsn.contains("sslmode") {
                        return Err("settings: storage: postgres tlsSecret/caSecret need sslmode in the connection string".into());
                    }
                    for k in ["sslrootcert", "sslcert", "sslkey"] {
                        if dsn.contains(k) {
                            return Err(format!(
                                "settings: storage: {k} must not be set in the connection string when tlsSecret/caSecret is used"
                            ));
                        }
                    }
                    warnings.push("storage.postgres: tlsSecret/caSecret are not supported by rampart yet, ignored".into());
                }
                s.databroker_storage_type = Some("postgres".into());
                s.databroker_storage_connection_string = Some(dsn);
            }
            (None, None) => {
                return Err(
                    "settings: storage: if storage is specified, file or postgres storage should be provided"
                        .into(),
                )
            }
        },
    }

    // Accepted but not acted on.
    let unsupported: [(&str, bool); 14] = [
        (
            "programmaticRedirectDomains",
            spec.programmatic_redirect_domains.is_some(),
        ),
        ("useProxyProtocol", spec.use_proxy_protocol.is_some()),
        ("codecType", spec.codec_type.is_some()),
        ("bearerTokenFormat", spec.bearer_token_format.is_some()),
        (
            "idpAccessTokenAllowedAudiences",
            spec.idp_access_token_allowed_audiences.is_some(),
        ),
        ("accessLogFields", spec.access_log_fields.is_some()),
        ("authorizeLogFields", spec.authorize_log_fields.is_some()),
        ("runtimeFlags", spec.runtime_flags.is_some()),
        ("otel", spec.otel.is_some()),
        ("downstreamMtls", spec.downstream_mtls.is_some()),
        (
            "circuitBreakerThresholds",
            spec.circuit_breaker_thresholds.is_some(),
        ),
        ("dns", spec.dns.is_some()),
        ("dataBroker", spec.data_broker.is_some()),
        ("ssh", spec.ssh.is_some()),
    ];
    for (field, set) in unsupported {
        if set {
            warnings.push(format!("{field}: not supported by rampart yet, ignored"));
        }
    }
    Ok((s, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::convert::testutil::{b64, cert, objects, state};
    use crate::k8s::KubeObject;

    fn crd(yaml: &str) -> Pomerium {
        match objects(yaml).pop() {
            Some(KubeObject::Pomerium(p)) => *p,
            other => panic!("not a Pomerium: {other:?}"),
        }
    }

    const BOOT: &str = "apiVersion: v1\nkind: Secret\nmetadata: {name: bootstrap, namespace: pomerium}\nstringData: {shared_secret: 0123456789abcdef0123456789abcdef, cookie_secret: abcdefghijklmnopqrstuvwxyz012345}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: idp, namespace: pomerium}\nstringData: {client_id: cid, client_secret: csec}\n";

    fn settings(spec: &str, extra: &str) -> Result<(Settings, Vec<String>), String> {
        let st = state(&format!("{BOOT}---\n{extra}"));
        let p = crd(&format!(
            "apiVersion: ingress.pomerium.io/v1\nkind: Pomerium\nmetadata: {{name: global}}\nspec:\n{spec}"
        ));
        pomerium_to_settings(&p, &st)
    }

    #[test]
    fn full_spec_maps_to_settings() {
        let (ca, _) = cert(&["ca"]);
        let (c, k) = cert(&["proxy.example.com"]);
        let extra = format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: ca, namespace: pomerium}}\ndata: {{ca.crt: {}}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: cert, namespace: pomerium}}\ntype: kubernetes.io/tls\ndata: {{tls.crt: {}, tls.key: {}}}\n",
            b64(&ca),
            b64(&c),
            b64(&k)
        );
        let (s, warnings) = settings(
            "  secrets: pomerium/bootstrap\n  authenticate: {url: https://auth.example.com}\n  identityProvider: {provider: oidc, url: https://idp.example.com, secret: pomerium/idp, scopes: [openid, email], requestParams: {prompt: login}}\n  certificates: [pomerium/cert, pomerium/missing]\n  caSecrets: [pomerium/ca]\n  cookie: {name: _rampart, domain: example.com, httpOnly: true, expire: 8h, sameSite: Lax}\n  jwtClaimHeaders: {X-Email: email}\n  passIdentityHeaders: true\n  setResponseHeaders: {X-Frame-Options: DENY}\n  timeouts: {read: 30s, write: 1m, idle: 5m}\n  storage: {file: {path: /data}}\n  codecType: http2\n",
            &extra,
        )
        .unwrap();
        let raw = |v: &Option<String>| {
            base64::engine::general_purpose::STANDARD
                .decode(v.as_deref().unwrap())
                .unwrap()
        };
        assert_eq!(raw(&s.shared_secret), b"0123456789abcdef0123456789abcdef");
        assert_eq!(raw(&s.cookie_secret), b"abcdefghijklmnopqrstuvwxyz012345");
        assert_eq!(
            s.authenticate_service_url.as_deref(),
            Some("https://auth.example.com")
        );
        assert_eq!(s.idp_provider.as_deref(), Some("oidc"));
        assert_eq!(
            s.idp_provider_url.as_deref(),
            Some("https://idp.example.com")
        );
        assert_eq!(s.idp_client_id.as_deref(), Some("cid"));
        assert_eq!(s.idp_client_secret.as_deref(), Some("csec"));
        assert_eq!(s.idp_scopes, Some(vec!["openid".into(), "email".into()]));
        assert_eq!(s.idp_request_params.as_ref().unwrap()["prompt"], "login");
        assert_eq!(s.certificates.len(), 1);
        assert_eq!(s.certificates[0].cert, b64(&c));
        assert_eq!(raw(&s.certificate_authority), ca.trim_end().as_bytes());
        assert_eq!(s.cookie_name.as_deref(), Some("_rampart"));
        assert_eq!(s.cookie_same_site.as_deref(), Some("lax"));
        assert_eq!(s.cookie_expire.as_deref(), Some("8h"));
        assert_eq!(
            s.jwt_claims_headers,
            Some(serde_json::json!({"X-Email": "email"}))
        );
        assert_eq!(s.pass_identity_headers, Some(true));
        assert_eq!(s.timeout_write.as_deref(), Some("1m"));
        assert_eq!(
            s.databroker_storage_connection_string.as_deref(),
            Some("file:///data")
        );
        assert_eq!(
            warnings,
            ["codecType: not supported by rampart yet, ignored"]
        );
        // The settings load.
        crate::config::build(s).unwrap();
    }

    #[test]
    fn request_normalisation_fields() {
        let (s, _) = settings(
            "  secrets: pomerium/bootstrap\n  normalizePath: false\n  mergeSlashes: false\n  pathWithEscapedSlashesAction: UNESCAPE_AND_REDIRECT\n  headersWithUnderscoresAction: drop_header\n",
            "",
        )
        .unwrap();
        assert_eq!(s.normalize_path, Some(false));
        assert_eq!(s.merge_slashes, Some(false));
        assert_eq!(
            s.path_with_escaped_slashes_action.as_deref(),
            Some("UNESCAPE_AND_REDIRECT")
        );
        assert_eq!(
            s.headers_with_underscores_action.as_deref(),
            Some("drop_header")
        );
        let rules = crate::config::build(s).unwrap().proxy.request_rules;
        assert!(!rules.path.normalize && !rules.path.merge_slashes);
        assert_eq!(
            rules.path.escaped_slashes,
            EscapedSlashesAction::UnescapeAndRedirect
        );
        assert_eq!(
            rules.underscore_headers,
            UnderscoreHeadersAction::DropHeader
        );
        assert_eq!(
            settings(
                "  secrets: pomerium/bootstrap\n  pathWithEscapedSlashesAction: decode\n",
                ""
            )
            .unwrap_err(),
            "settings: pathWithEscapedSlashesAction: unknown value \"decode\", expected one of keep_unchanged, reject_request, unescape_and_redirect, unescape_and_forward"
        );
        assert_eq!(
            settings(
                "  secrets: pomerium/bootstrap\n  headersWithUnderscoresAction: keep\n",
                ""
            )
            .unwrap_err(),
            "settings: headersWithUnderscoresAction: unknown value \"keep\", expected one of allow, reject_request, drop_header"
        );
    }

    #[test]
    fn defaults_and_warnings() {
        let (s, warnings) = settings("  secrets: pomerium/bootstrap\n", "").unwrap();
        assert_eq!(
            s.authenticate_service_url.as_deref(),
            Some(HOSTED_AUTHENTICATE_URL)
        );
        assert_eq!(warnings, [STORAGE_WARNING]);
    }

    #[test]
    fn v033_identity_providers_accepted() {
        for provider in ["apple", "cognito", "hosted"] {
            let (s, _) = settings(
                &format!("  secrets: pomerium/bootstrap\n  authenticate: {{url: https://auth.example.com}}\n  identityProvider: {{provider: {provider}, url: https://idp.example.com, secret: pomerium/idp}}\n"),
                "",
            )
            .unwrap();
            assert_eq!(s.idp_provider.as_deref(), Some(provider));
        }
        let e = settings(
            "  secrets: pomerium/bootstrap\n  identityProvider: {provider: myspace, secret: pomerium/idp}\n",
            "",
        )
        .unwrap_err();
        assert!(e.contains("unsupported provider \"myspace\""), "{e}");
    }

    #[test]
    fn apple_key_ids_come_from_the_idp_secret() {
        let extra = format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: apple, namespace: pomerium}}\ndata: {{client_id: {}, client_secret: {}, apple_team_id: {}, apple_key_id: {}}}\n",
            b64("com.example.web"),
            b64("-----BEGIN PRIVATE KEY-----"),
            b64("TEAM123456"),
            b64("KEY1234567"),
        );
        let (s, _) = settings(
            "  secrets: pomerium/bootstrap\n  authenticate: {url: https://auth.example.com}\n  identityProvider: {provider: apple, secret: pomerium/apple}\n",
            &extra,
        )
        .unwrap();
        assert_eq!(s.idp_provider.as_deref(), Some("apple"));
        assert_eq!(s.idp_apple_team_id.as_deref(), Some("TEAM123456"));
        assert_eq!(s.idp_apple_key_id.as_deref(), Some("KEY1234567"));
        assert_eq!(s.idp_provider_url, None, "Apple's URL is the default");
    }

    #[test]
    fn error_texts() {
        let e = |spec: &str, extra: &str| settings(spec, extra).unwrap_err();
        assert_eq!(
            e("  secrets: pomerium/nope\n", ""),
            "secrets: bootstrap secret: get pomerium/nope: Secret \"nope\" not found"
        );
        assert_eq!(
            e("  secrets: bootstrap\n", ""),
            "secrets: bootstrap secret: parse bootstrap: missing namespace for resource"
        );
        let short = "apiVersion: v1\nkind: Secret\nmetadata: {name: short, namespace: pomerium}\nstringData: {shared_secret: 0123456789abcdef0123456789abcdef, cookie_secret: tooshort}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: noshared, namespace: pomerium}\nstringData: {cookie_secret: x}\n";
        assert_eq!(
            e("  secrets: pomerium/short\n", short),
            "transform config: secrets: secret pomerium/short, key cookie_secret should be 32 bytes, got 8"
        );
        assert_eq!(
            e("  secrets: pomerium/noshared\n", short),
            "transform config: secrets: secret pomerium/noshared is missing a key shared_secret"
        );
        let idp = "apiVersion: v1\nkind: Secret\nmetadata: {name: idp2, namespace: pomerium}\nstringData: {client_secret: s}\n";
        assert_eq!(
            e("  secrets: pomerium/bootstrap\n  identityProvider: {provider: oidc, secret: pomerium/idp2}\n", idp),
            "settings: idp secret: client_id key is required"
        );
        let opaque = "apiVersion: v1\nkind: Secret\nmetadata: {name: op, namespace: pomerium}\nstringData: {a: b}\n";
        assert_eq!(
            e(
                "  secrets: pomerium/bootstrap\n  certificates: [pomerium/op]\n",
                opaque
            ),
            "settings: certs: pomerium/op expected secret type kubernetes.io/tls, got Opaque"
        );
        assert_eq!(
            e(
                "  secrets: pomerium/bootstrap\n  timeouts: {read: 1m, write: 30s}\n",
                ""
            ),
            "settings: timeouts: read timeout (1m) must be less than write timeout (30s)"
        );
        assert_eq!(
            e("  secrets: pomerium/bootstrap\n  storage: {}\n", ""),
            "settings: storage: if storage is specified, file or postgres storage should be provided"
        );
        assert!(e(
            "  secrets: pomerium/bootstrap\n  authenticate: {url: http://auth}\n",
            ""
        )
        .contains("https://"));
    }
}
