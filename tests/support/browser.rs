//! Pieces of the hand-driven browsers in the sign-in tests: a cookie jar that keeps `Secure`
//! cookies over plain http (reqwest's own jar would not send them), and a response read in
//! full.

use std::collections::HashMap;

use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::Value;

/// Cookies per host (name → value); enough for host-only cookies.
#[derive(Default, Clone)]
pub struct Jar(HashMap<String, HashMap<String, String>>);

impl Jar {
    /// Applies the `set-cookie` headers of a response from `url`; an empty value or
    /// `Max-Age=-1` / `Max-Age=0` removes the cookie.
    pub fn store(&mut self, url: &reqwest::Url, headers: &HeaderMap) {
        let host = url.host_str().unwrap_or("").to_string();
        for v in headers.get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let pair = v.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            let clear = value.is_empty() || v.contains("Max-Age=-1") || v.contains("Max-Age=0");
            let map = self.0.entry(host.clone()).or_default();
            if clear {
                map.remove(name.trim());
            } else {
                map.insert(name.trim().to_string(), value.trim().to_string());
            }
        }
    }

    /// The `cookie` header for `host`, if it has cookies.
    pub fn header(&self, host: &str) -> Option<String> {
        let map = self.0.get(host)?;
        (!map.is_empty()).then(|| {
            map.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    pub fn get(&self, host: &str, name: &str) -> Option<String> {
        self.0.get(host)?.get(name).cloned()
    }

    pub fn set(&mut self, host: &str, name: &str, value: &str) {
        self.0
            .entry(host.into())
            .or_default()
            .insert(name.into(), value.into());
    }
}

/// A response read in full.
pub struct Resp {
    pub status: StatusCode,
    pub url: reqwest::Url,
    pub headers: HeaderMap,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `location` header resolved against the request URL; panics without one.
    pub fn location(&self) -> String {
        let l = self.header("location").expect("a location header");
        self.url.join(l).unwrap().to_string()
    }

    /// The body as JSON; panics if it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The upstream's JSON echo: asserts a 200, then parses the body.
    pub fn echo(&self) -> Value {
        assert_eq!(self.status, 200, "{}", self.body);
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}
