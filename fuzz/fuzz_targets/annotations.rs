//! Ingress annotations: each input line is `key=value` (key without the prefix; `\n` in a value
//! written as `\\n`).
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;

const PREFIX: &str = "ingress.pomerium.io";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let map: BTreeMap<String, String> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (format!("{PREFIX}/{k}"), v.replace("\\n", "\n")))
        .collect();
    let _ = rampart::k8s::annotations::parse_annotations(Some(&map), PREFIX, &|_| None);
});
