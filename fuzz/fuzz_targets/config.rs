//! A config file: parse, check (routes and policies) and the sign-in settings.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(settings) = rampart::config::parse(&text, Path::new("fuzz.yaml")) else {
        return;
    };
    let _ = rampart::http::auth::AuthSettings::from_settings(&settings);
    let _ = rampart::config::build(settings);
});
