//! No-panic property tests (issue 10) for what sign-in decodes from requests: the session
//! cookie (signed handle JWT), the encrypted handle of the cross-host hop, the OAuth `state`,
//! the CSRF and PKCE cookies, signed URLs, and the Cookie/Authorization header scanners.
//! Inputs are mostly valid values with random edits; besides never panicking, an edited value
//! that still verifies must mean exactly what the original meant (no forgery by mutation).

use std::sync::OnceLock;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;

use super::crypto::{b64url, Secret32};
use super::handle::SessionHandle;
use super::headers::{cookie_values, has_non_cookie_carrier, session_tokens, strip_cookie_pair};
use super::signed_url::{build_url, query_param, sign_url, verify_signed_url};
use super::state::{
    check_csrf, csrf_cookie_value, decode_state, encode_state, pkce_cookie_value, pkce_verifier,
};
use crate::fuzz_support::{config, leak_seeds, mutated_text};
use crate::http::headers::cookies_without;

const KEY: Secret32 = Secret32([7; 32]);
const NOW: u64 = 1_700_000_000;

/// Base64, JWT and cookie syntax.
const TOKENS: &[&str] = &[
    ".",
    "=",
    "==",
    "-",
    "_",
    "+",
    "/",
    "%3D",
    "%2F",
    ";",
    "; ",
    ",",
    " ",
    "\"",
    "eyJ",
    "e30",
    "eyJhbGciOiJub25lIn0",
    "eyJhbGciOiJIUzI1NiJ9",
    "AAAA",
    "|",
    "&",
    "?",
    "#",
    "%",
    "%zz",
    "_pomerium=",
    "pomerium_session=",
    "pomerium_signature=",
    "pomerium_issued=",
    "pomerium_expiry=",
    "0",
    "18446744073709551615",
    "99999999999999999999",
    "Pomerium ",
    "Bearer Pomerium-",
];

fn handles() -> Vec<SessionHandle> {
    ["sess-1", "sess-2"]
        .into_iter()
        .map(|jti| SessionHandle {
            iss: "authenticate.example.com".into(),
            aud: vec!["app.example.com".into()],
            iat: NOW,
            jti: jti.into(),
            sub: "alice".into(),
            idp_id: "idp".into(),
            databroker_server_version: 1,
            databroker_record_version: 2,
        })
        .collect()
}

fn signed_handles() -> &'static [&'static str] {
    static S: OnceLock<&'static [&'static str]> = OnceLock::new();
    S.get_or_init(|| leak_seeds(handles().iter().map(|h| h.sign(&KEY)).collect()))
}

fn encrypted_handles() -> &'static [&'static str] {
    static S: OnceLock<&'static [&'static str]> = OnceLock::new();
    S.get_or_init(|| leak_seeds(handles().iter().map(|h| h.encrypt(&KEY)).collect()))
}

const RETURN_URL: &str = "https://app.example.com/x?y=1";

fn states() -> &'static [&'static str] {
    static S: OnceLock<&'static [&'static str]> = OnceLock::new();
    S.get_or_init(|| {
        leak_seeds(vec![
            encode_state(&KEY, "csrf-token", NOW, "trace", RETURN_URL),
            b64url(b"a|b|c|d"),
        ])
    })
}

fn csrf_cookies() -> &'static [&'static str] {
    static S: OnceLock<&'static [&'static str]> = OnceLock::new();
    S.get_or_init(|| {
        leak_seeds(vec![csrf_cookie_value(
            &KEY,
            "_pomerium_csrf",
            "csrf-token",
            NOW,
        )])
    })
}

fn pkce_cookies() -> &'static [&'static str] {
    static S: OnceLock<&'static [&'static str]> = OnceLock::new();
    S.get_or_init(|| {
        leak_seeds(vec![pkce_cookie_value(
            &KEY,
            "_pomerium_pkce_x",
            "verifier",
        )])
    })
}

fn signed_urls() -> &'static [&'static str] {
    static S: OnceLock<&'static [&'static str]> = OnceLock::new();
    S.get_or_init(|| {
        let url = build_url(
            "https://authenticate.example.com/.pomerium/sign_in",
            &[("pomerium_redirect_uri", "https://app.example.com/a b?c=d&e")],
        );
        leak_seeds(vec![sign_url(&KEY.0, &url, NOW)])
    })
}

const COOKIE_HEADERS: &[&str] = &[
    "_pomerium=abc.def.ghi; other=1",
    "a=1;b=2; _pomerium=\"q\" ;_pomerium=",
    "_pomerium_csrf=x; _pomerium",
    ";;  ; =; _pomerium=x=y",
];

fn tokens() -> &'static [&'static str] {
    TOKENS
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn session_cookie_never_panics_or_verifies_as_another(token in mutated_text(signed_handles(), tokens())) {
        if let Ok(h) = SessionHandle::verify(&token, &KEY) {
            prop_assert!(handles().contains(&h), "{token} verified as {h:?}");
        }
    }

    #[test]
    fn encrypted_handle_never_panics_or_opens_as_another(value in mutated_text(encrypted_handles(), tokens())) {
        if let Ok(h) = SessionHandle::decrypt(&value, &KEY) {
            prop_assert!(handles().contains(&h), "{value} opened as {h:?}");
        }
    }

    #[test]
    fn oauth_state_never_panics_or_changes_meaning(state in mutated_text(states(), tokens())) {
        for now in [0, NOW, u64::MAX] {
            if let Ok(s) = decode_state(&KEY, &state, now) {
                prop_assert_eq!(&s.return_url, RETURN_URL);
                prop_assert_eq!(&s.csrf, "csrf-token");
                prop_assert_eq!(s.issued, NOW);
            }
        }
    }

    #[test]
    fn csrf_and_pkce_cookies_never_panic(
        csrf in mutated_text(csrf_cookies(), tokens()),
        pkce in mutated_text(pkce_cookies(), tokens()),
    ) {
        for now in [0, NOW, u64::MAX] {
            let _ = check_csrf(&KEY, "_pomerium_csrf", Some(&csrf), "csrf-token", now);
            let _ = check_csrf(&KEY, "_pomerium_csrf", Some(&csrf), &csrf, now);
        }
        if let Some(v) = pkce_verifier(&KEY, "_pomerium_pkce_x", &pkce) {
            prop_assert_eq!(v, "verifier");
        }
    }

    #[test]
    fn signed_urls_never_panic_or_verify_changed(url in mutated_text(signed_urls(), tokens())) {
        for now in [0, NOW, NOW + 100] {
            if verify_signed_url(&KEY.0, &url, now).is_ok() {
                let redirect = query_param(&url, "pomerium_redirect_uri");
                prop_assert_eq!(
                    redirect.as_deref(),
                    Some("https://app.example.com/a b?c=d&e"),
                    "{}", url
                );
            }
        }
        let _ = sign_url(&KEY.0, &url, NOW);
    }

    #[test]
    fn cookie_and_authorization_scanners_never_panic(
        cookies in prop::collection::vec(mutated_text(COOKIE_HEADERS, tokens()), 0..3),
        authorization in mutated_text(&["Pomerium abc", "Bearer Pomerium-abc", "Basic x"], tokens()),
        query in mutated_text(&["pomerium_session=abc&x=1", "a=%zz&pomerium_session"], tokens()),
    ) {
        let mut headers = HeaderMap::new();
        for c in &cookies {
            if let Ok(v) = HeaderValue::from_str(c) {
                headers.append(HeaderName::from_static("cookie"), v);
            }
        }
        if let Ok(v) = HeaderValue::from_str(&authorization) {
            headers.append(HeaderName::from_static("authorization"), v.clone());
            headers.append(HeaderName::from_static("x-pomerium-authorization"), v);
        }
        let _ = session_tokens(&headers, &query, "_pomerium");
        let _ = session_tokens(&headers, &query, "");
        let _ = has_non_cookie_carrier(&headers, &query);
        let _ = cookie_values(&headers, "_pomerium").count();
        // Stripping a cookie leaves no pair of that name.
        let named = |s: &str, name: &str| {
            s.split(';').any(|p| p.trim().split_once('=').map(|(k, _)| k.trim()) == Some(name))
        };
        for c in &cookies {
            if let Some(left) = strip_cookie_pair(c, "_pomerium") {
                prop_assert!(!named(&left, "_pomerium"), "{c:?} -> {left:?}");
            }
        }
        if let Some(left) = cookies_without(&headers, &["_pomerium", "_pomerium_csrf"]) {
            let left = left.to_str().unwrap_or_default().to_string();
            prop_assert!(!named(&left, "_pomerium") && !named(&left, "_pomerium_csrf"), "{cookies:?} -> {left:?}");
        }
    }
}
