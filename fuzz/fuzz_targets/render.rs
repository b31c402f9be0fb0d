//! Kubernetes manifests through `rampart render`'s whole path.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use rampart::k8s::convert::ConvertOptions;
use rampart::k8s::render::{parse_documents, render};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok((objects, _)) = parse_documents(&text, Path::new("fuzz.yaml")) {
        let rendered = render(objects, ConvertOptions::default(), None);
        let _ = serde_yaml::to_string(&rendered.settings);
    }
});
