//! Choosing the route whose effective policy `rampart policy eval|explain --config|-f`
//! evaluates: by `from` URL, then by `path`/`prefix`/`regex` or `id`, or (rendered manifests)
//! by Ingress. Pure functions over the routes as written.

use serde_json::Value;
use thiserror::Error;

use crate::config::RouteConfig;

/// A route as the proxy names it: its `id` (in a config file, `route-N` when unset, N counted
/// from 0 in file order, as the proxy assigns it) and its config.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteCandidate {
    pub id: String,
    pub config: RouteConfig,
}

/// Which route to evaluate; every given field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteSelector {
    /// `from` URL; the scheme may be left out, case and a trailing `/` do not matter.
    pub from: Option<String>,
    /// The route's `path`, `prefix` or `regex` text (`/` matches a route with none of them).
    pub path: Option<String>,
    pub id: Option<String>,
    /// `namespace/name` of the Ingress a rendered route came from.
    pub ingress: Option<String>,
}

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ChoiceError {
    #[error("there are no routes")]
    NoRoutes,
    #[error("no route matches {selector}; the routes are:\n{choices}")]
    NotFound { selector: String, choices: String },
    #[error(
        "{} {count} routes; choose one with {hint}:\n{choices}",
        ambiguous_subject(selector)
    )]
    Ambiguous {
        selector: String,
        count: usize,
        hint: &'static str,
        choices: String,
    },
    #[error("--ingress {0:?}: expected namespace/name")]
    BadIngress(String),
}

/// The routes of a config file with the ids the proxy gives them.
pub fn config_candidates(routes: &[RouteConfig]) -> Vec<RouteCandidate> {
    routes
        .iter()
        .enumerate()
        .map(|(i, r)| RouteCandidate {
            id: r.id.clone().unwrap_or_else(|| format!("route-{i}")),
            config: r.clone(),
        })
        .collect()
}

fn normalize_from(from: &str) -> String {
    let f = from.trim().trim_end_matches('/').to_ascii_lowercase();
    if f.contains("://") {
        f
    } else {
        format!("https://{f}")
    }
}

/// The route's path matcher as written: `("regex"|"path"|"prefix", text)`, in the proxy's
/// precedence; `prefix /` when none is set.
pub fn path_matcher(c: &RouteConfig) -> (&'static str, &str) {
    fn set(v: &Option<String>) -> Option<&str> {
        v.as_deref().filter(|s| !s.is_empty())
    }
    if let Some(re) = set(&c.regex) {
        ("regex", re)
    } else if let Some(p) = set(&c.path) {
        ("path", p)
    } else if let Some(p) = set(&c.prefix) {
        ("prefix", p)
    } else {
        ("prefix", "/")
    }
}

/// `namespace/name` of the Ingress a rendered route came from (its id is
/// `{"n": name, "ns": namespace, …}`).
fn ingress_of(id: &str) -> Option<String> {
    let v: Value = serde_json::from_str(id).ok()?;
    Some(format!(
        "{}/{}",
        v.get("ns")?.as_str()?,
        v.get("n")?.as_str()?
    ))
}

/// One line naming a route: `id: from kind text`.
pub fn describe(c: &RouteCandidate) -> String {
    let (kind, text) = path_matcher(&c.config);
    format!("{}: {} {kind} {text}", c.id, c.config.from)
}

fn ambiguous_subject(selector: &str) -> String {
    if selector.is_empty() {
        "there are".to_string()
    } else {
        format!("{selector} matches")
    }
}

/// The selector as its flags (empty when none is given).
fn selector_text(sel: &RouteSelector) -> String {
    let parts: Vec<String> = [
        ("--ingress", &sel.ingress),
        ("--route", &sel.from),
        ("--path", &sel.path),
        ("--id", &sel.id),
    ]
    .into_iter()
    .filter_map(|(flag, v)| v.as_ref().map(|v| format!("{flag} {v}")))
    .collect();
    parts.join(" ")
}

fn list(routes: &[&RouteCandidate]) -> String {
    routes
        .iter()
        .map(|c| format!("  {}", describe(c)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The one route `sel` picks; an error names the choices when none or several match.
pub fn choose<'a>(
    routes: &'a [RouteCandidate],
    sel: &RouteSelector,
) -> Result<&'a RouteCandidate, ChoiceError> {
    if let Some(ing) = &sel.ingress {
        if ing.split('/').count() != 2 || ing.split('/').any(str::is_empty) {
            return Err(ChoiceError::BadIngress(ing.clone()));
        }
    }
    if routes.is_empty() {
        return Err(ChoiceError::NoRoutes);
    }
    let from = sel.from.as_deref().map(normalize_from);
    let matching: Vec<&RouteCandidate> = routes
        .iter()
        .filter(|c| {
            from.as_ref()
                .is_none_or(|f| *f == normalize_from(&c.config.from))
                && sel.id.as_ref().is_none_or(|id| *id == c.id)
                && sel
                    .ingress
                    .as_ref()
                    .is_none_or(|ing| ingress_of(&c.id).as_ref() == Some(ing))
                && sel
                    .path
                    .as_ref()
                    .is_none_or(|p| path_matcher(&c.config).1 == p)
        })
        .collect();
    match matching.as_slice() {
        [one] => Ok(one),
        [] => Err(ChoiceError::NotFound {
            selector: selector_text(sel),
            choices: list(&routes.iter().collect::<Vec<_>>()),
        }),
        several => {
            // Suggest what tells these routes apart.
            let paths: std::collections::BTreeSet<_> =
                several.iter().map(|c| path_matcher(&c.config)).collect();
            let hint = if sel.from.is_none() {
                "--route, --path or --id"
            } else if sel.path.is_none() && paths.len() == several.len() {
                "--path or --id"
            } else {
                "--id"
            };
            Err(ChoiceError::Ambiguous {
                selector: selector_text(sel),
                count: several.len(),
                hint,
                choices: list(several),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(
        from: &str,
        id: Option<&str>,
        path: Option<&str>,
        prefix: Option<&str>,
    ) -> RouteConfig {
        RouteConfig {
            from: from.into(),
            id: id.map(Into::into),
            path: path.map(Into::into),
            prefix: prefix.map(Into::into),
            ..Default::default()
        }
    }

    fn routes() -> Vec<RouteCandidate> {
        config_candidates(&[
            route("https://a.example.com", None, None, None),
            route("https://b.example.com", None, None, Some("/api")),
            route("https://b.example.com", None, Some("/admin"), None),
            route("https://b.example.com", Some("b-root"), None, Some("/")),
        ])
    }

    fn sel(from: Option<&str>, path: Option<&str>, id: Option<&str>) -> RouteSelector {
        RouteSelector {
            from: from.map(Into::into),
            path: path.map(Into::into),
            id: id.map(Into::into),
            ingress: None,
        }
    }

    #[test]
    fn ids_are_explicit_or_route_n() {
        let ids: Vec<_> = routes().into_iter().map(|c| c.id).collect();
        assert_eq!(ids, ["route-0", "route-1", "route-2", "b-root"]);
    }

    #[test]
    fn chooses_by_from_path_and_id() {
        let r = routes();
        let pick = |s: RouteSelector| choose(&r, &s).map(|c| c.id.clone());
        assert_eq!(
            pick(sel(Some("https://a.example.com"), None, None)).unwrap(),
            "route-0"
        );
        // Scheme, case and a trailing slash do not matter.
        assert_eq!(
            pick(sel(Some("A.example.com/"), None, None)).unwrap(),
            "route-0"
        );
        // No path set matches `/`, as does an explicit prefix `/`.
        assert_eq!(
            pick(sel(Some("https://a.example.com"), Some("/"), None)).unwrap(),
            "route-0"
        );
        assert_eq!(
            pick(sel(Some("https://b.example.com"), Some("/admin"), None)).unwrap(),
            "route-2"
        );
        assert_eq!(
            pick(sel(Some("https://b.example.com"), Some("/"), None)).unwrap(),
            "b-root"
        );
        assert_eq!(pick(sel(None, None, Some("route-1"))).unwrap(), "route-1");
    }

    #[test]
    fn errors_name_the_choices() {
        let r = routes();
        let e = choose(&r, &sel(Some("https://b.example.com"), None, None)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--route https://b.example.com matches 3 routes; choose one with --path or --id:\n  \
             route-1: https://b.example.com prefix /api\n  \
             route-2: https://b.example.com path /admin\n  \
             b-root: https://b.example.com prefix /"
        );
        let e = choose(&r, &sel(Some("https://c.example.com"), None, None)).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "no route matches --route https://c.example.com; the routes are:\n  \
                 route-0: https://a.example.com prefix /\n"
            ),
            "{e}"
        );
        let e = choose(&r, &sel(None, None, None)).unwrap_err();
        assert!(e
            .to_string()
            .starts_with("there are 4 routes; choose one with --route, --path or --id:"));
        assert_eq!(
            choose(
                &r,
                &RouteSelector {
                    ingress: Some("web".into()),
                    ..Default::default()
                }
            ),
            Err(ChoiceError::BadIngress("web".into()))
        );
        assert_eq!(
            choose(&[], &sel(None, None, None)),
            Err(ChoiceError::NoRoutes)
        );
        // A lone route needs no selector.
        assert_eq!(
            choose(&r[..1], &sel(None, None, None)).unwrap().id,
            "route-0"
        );
    }

    #[test]
    fn chooses_rendered_routes_by_ingress() {
        let r = vec![
            RouteCandidate {
                id: r#"{"n":"web","ns":"apps","h":"app.example.com","p":"/"}"#.into(),
                config: route("https://app.example.com", None, None, Some("/")),
            },
            RouteCandidate {
                id: r#"{"n":"api","ns":"apps","h":"app.example.com","p":"/api"}"#.into(),
                config: route("https://app.example.com", None, None, Some("/api")),
            },
        ];
        let s = RouteSelector {
            ingress: Some("apps/api".into()),
            ..Default::default()
        };
        assert_eq!(
            choose(&r, &s).unwrap().config.prefix.as_deref(),
            Some("/api")
        );
        let s = RouteSelector {
            ingress: Some("apps/nope".into()),
            from: Some("app.example.com".into()),
            ..Default::default()
        };
        let e = choose(&r, &s).unwrap_err().to_string();
        assert!(
            e.starts_with("no route matches --ingress apps/nope --route app.example.com;"),
            "{e}"
        );
    }
}
