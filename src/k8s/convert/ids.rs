//! Route identity (spec §4.4): the compact JSON id, the slug used as default name, and the Go
//! `String()` dumps that appear inside upstream's error texts.

use k8s_openapi::api::networking::v1::{HTTPIngressPath, ServiceBackendPort};

/// `{"n":"‹ingress›","ns":"‹namespace›","h":"‹host›","p":"‹path›"}` with Go's JSON escaping.
pub fn route_id(name: &str, namespace: &str, host: &str, path: &str) -> String {
    let mut s = String::with_capacity(32 + name.len() + namespace.len() + host.len() + path.len());
    s.push_str("{\"n\":");
    go_json_string(&mut s, name);
    s.push_str(",\"ns\":");
    go_json_string(&mut s, namespace);
    s.push_str(",\"h\":");
    go_json_string(&mut s, host);
    s.push_str(",\"p\":");
    go_json_string(&mut s, path);
    s.push('}');
    s
}

/// Go `encoding/json` string escaping (HTML-safe: `<`, `>`, `&` as `\u00XX`).
fn go_json_string(out: &mut String, v: &str) {
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Slug: lower-case, `&`→`and`, `@`→`at`, quotes dropped, everything outside `[a-z0-9_-]`
/// becomes `-`, runs of `-` collapse, `-`/`_` trimmed from both ends.
pub fn slug(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let push = |out: &mut String, c: char| {
        if c == '-' && out.ends_with('-') {
            return;
        }
        out.push(c);
    };
    for c in text.chars().flat_map(char::to_lowercase) {
        match c {
            '&' => "and".chars().for_each(|c| push(&mut out, c)),
            '@' => "at".chars().for_each(|c| push(&mut out, c)),
            '"' | '\'' | '\u{2019}' => {}
            'a'..='z' | '0'..='9' | '_' | '-' => push(&mut out, c),
            _ => push(&mut out, '-'),
        }
    }
    out.trim_matches(|c| c == '-' || c == '_').to_string()
}

/// Route name / stat name: slug of `"‹ns› ‹name› ‹host›"`, plus `-‹slug(path)›` when non-empty.
pub fn route_slug(namespace: &str, name: &str, host: &str, path: &str) -> String {
    let mut s = slug(&format!("{namespace} {name} {host}"));
    let p = slug(path);
    if !p.is_empty() {
        s.push('-');
        s.push_str(&p);
    }
    s
}

/// Go dump of a `ServiceBackendPort` pointer: `&ServiceBackendPort{Name:http,Number:0,}`.
pub fn go_port(port: Option<&ServiceBackendPort>) -> String {
    let (name, number) = match port {
        Some(p) => (p.name.as_deref().unwrap_or(""), p.number.unwrap_or(0)),
        None => ("", 0),
    };
    format!("&ServiceBackendPort{{Name:{name},Number:{number},}}")
}

/// Go dump of an `HTTPIngressPath`, as upstream prints it in `pathToRoute: ‹dump›: …`.
pub fn go_path(p: &HTTPIngressPath) -> String {
    let path_type = if p.path_type.is_empty() {
        "nil".to_string()
    } else {
        format!("*{}", p.path_type)
    };
    let service = match &p.backend.service {
        Some(s) => format!(
            "&IngressServiceBackend{{Name:{},Port:{},}}",
            s.name,
            go_port(s.port.as_ref()).trim_start_matches('&')
        ),
        None => "nil".into(),
    };
    let resource = match &p.backend.resource {
        Some(r) => format!(
            "&TypedLocalObjectReference{{APIGroup:{},Kind:{},Name:{},}}",
            r.api_group
                .as_deref()
                .map(|g| format!("*{g}"))
                .unwrap_or_else(|| "nil".into()),
            r.kind,
            r.name
        ),
        None => "nil".into(),
    };
    format!(
        "&HTTPIngressPath{{Path:{},PathType:{},Backend:IngressBackend{{Service:{},Resource:{},}},}}",
        p.path.as_deref().unwrap_or(""),
        path_type,
        service,
        resource
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_is_compact_go_json() {
        assert_eq!(
            route_id("ingress", "default", "a.example.com", "/a"),
            r#"{"n":"ingress","ns":"default","h":"a.example.com","p":"/a"}"#
        );
        assert_eq!(
            route_id("i", "d", "h", "/a&b<c>\"\\"),
            r#"{"n":"i","ns":"d","h":"h","p":"/a\u0026b\u003cc\u003e\"\\"}"#
        );
    }

    #[test]
    fn slugs() {
        assert_eq!(
            route_slug("default", "ingress", "service.localhost.pomerium.io", "/a"),
            "default-ingress-service-localhost-pomerium-io-a"
        );
        assert_eq!(
            route_slug("default", "ingress", "service.localhost.pomerium.io", "/"),
            "default-ingress-service-localhost-pomerium-io"
        );
        assert_eq!(
            route_slug("ns", "n", "*.example.com", ""),
            "ns-n-example-com"
        );
        assert_eq!(slug("A&B @C 'q'"), "aandb-atc-q");
        assert_eq!(slug("--_x__--"), "x");
        assert_eq!(slug("/api/v1/"), "api-v1");
    }
}
