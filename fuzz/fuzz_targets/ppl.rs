//! PPL text (YAML or JSON): parse, compile, evaluate and explain.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart::policy::{compile_text, OwnedRequest};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(policy) = compile_text(text) {
        let req = OwnedRequest::new("GET", "/admin");
        let _ = policy.evaluate(&req, None);
        let _ = policy.explain(&req, None);
    }
    let _ = rampart::k8s::annotations::parse_policy(text);
});
