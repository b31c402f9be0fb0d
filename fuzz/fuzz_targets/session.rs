//! What sign-in decodes from requests: session cookie, encrypted handle, OAuth state, CSRF and
//! PKCE cookies, signed URLs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart::http::auth::crypto::Secret32;
use rampart::http::auth::handle::SessionHandle;
use rampart::http::auth::signed_url::verify_signed_url;
use rampart::http::auth::state::{check_csrf, decode_state, pkce_verifier};

const KEY: Secret32 = Secret32([7; 32]);

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = SessionHandle::verify(&text, &KEY);
    let _ = SessionHandle::decrypt(&text, &KEY);
    let _ = decode_state(&KEY, &text, 1_700_000_000);
    let _ = check_csrf(&KEY, "_pomerium_csrf", Some(&text), "csrf", 1_700_000_000);
    let _ = pkce_verifier(&KEY, "_pomerium_pkce_x", &text);
    let _ = verify_signed_url(&KEY.0, &text, 1_700_000_000);
});
