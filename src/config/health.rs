//! Upstream health options of a route, with Envoy's field names and defaults: active checks
//! (`health_checks`, Envoy `HealthCheck`), passive ejection (`outlier_detection`, Envoy
//! `OutlierDetection`) and `healthy_panic_threshold`. Values arrive as JSON (from YAML config or
//! an annotation); field names may be snake_case or lowerCamelCase, durations Go-style strings.

use std::time::Duration;

use serde_json::{Map, Value};
use thiserror::Error;

use super::duration::parse_go_duration;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum HealthConfigError {
    #[error("`{key}`: expected {expected}, got {got}")]
    Type {
        key: String,
        expected: &'static str,
        got: String,
    },
    #[error("`{key}`: unknown field {field:?}")]
    UnknownField { key: String, field: String },
    #[error("`{key}`: {field} is required")]
    Missing { key: String, field: &'static str },
    #[error("`{key}`: {message}")]
    Invalid { key: String, message: String },
}

/// One active health check.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    pub timeout: Duration,
    pub interval: Duration,
    /// Consecutive failures that mark a healthy upstream unhealthy.
    pub unhealthy_threshold: u32,
    /// Consecutive successes that mark an unhealthy upstream healthy.
    pub healthy_threshold: u32,
    pub kind: CheckKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CheckKind {
    /// `GET path` with `Host: host` (default: the upstream's host); healthy when the status is
    /// in one of the `[start, end)` ranges (default: 200 only).
    Http {
        path: String,
        host: Option<String>,
        expected_statuses: Vec<(u16, u16)>,
    },
    /// Healthy when a TCP (and for https upstreams TLS) connection opens.
    Tcp,
}

/// Envoy `OutlierDetection`: consecutive errors eject an upstream for a while.
#[derive(Debug, Clone, PartialEq)]
pub struct OutlierDetection {
    /// 5xx responses (and connect failures) in a row that eject. Default 5.
    pub consecutive_5xx: u32,
    /// Percent chance an ejection by `consecutive_5xx` is enforced. Default 100.
    pub enforcing_consecutive_5xx: u32,
    /// 502/503/504 responses (and connect failures) in a row that eject. Default 5.
    pub consecutive_gateway_failure: u32,
    /// Default 0: gateway-failure ejection is off unless set.
    pub enforcing_consecutive_gateway_failure: u32,
    /// How often the ejection multiplier decays. Default 10s.
    pub interval: Duration,
    /// Ejection time is `base_ejection_time` × times ejected. Default 30s.
    pub base_ejection_time: Duration,
    /// Ejection time cap. Default 300s.
    pub max_ejection_time: Duration,
    /// At most this percent of the upstreams are ejected at once (at least one). Default 10.
    pub max_ejection_percent: u32,
}

impl Default for OutlierDetection {
    fn default() -> Self {
        OutlierDetection {
            consecutive_5xx: 5,
            enforcing_consecutive_5xx: 100,
            consecutive_gateway_failure: 5,
            enforcing_consecutive_gateway_failure: 0,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 10,
        }
    }
}

/// Envoy's default `healthy_panic_threshold` (percent).
pub const DEFAULT_PANIC_THRESHOLD: f64 = 50.0;

/// A route's health options, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthOptions {
    pub checks: Vec<HealthCheck>,
    pub outlier: Option<OutlierDetection>,
    /// Below this percentage of healthy upstreams, health is ignored (all are used).
    pub panic_threshold: f64,
    pub circuit_breakers: CircuitBreakers,
}

impl Default for HealthOptions {
    fn default() -> Self {
        HealthOptions {
            checks: Vec::new(),
            outlier: None,
            panic_threshold: DEFAULT_PANIC_THRESHOLD,
            circuit_breakers: CircuitBreakers::default(),
        }
    }
}

impl HealthOptions {
    /// Whether the balancer needs health state beyond the built-in connect-failure skip.
    pub fn is_active(&self) -> bool {
        !self.checks.is_empty() || self.outlier.is_some()
    }
}

fn type_name(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
    }
}

fn snake(k: &str) -> String {
    let mut out = String::with_capacity(k.len() + 4);
    for c in k.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// An object with snake_case keys; fields outside `known` are rejected.
fn object(key: &str, v: &Value, known: &[&str]) -> Result<Map<String, Value>, HealthConfigError> {
    let Value::Object(m) = v else {
        return Err(HealthConfigError::Type {
            key: key.into(),
            expected: "an object",
            got: type_name(v),
        });
    };
    let mut out = Map::new();
    for (k, item) in m {
        let s = snake(k);
        if !known.contains(&s.as_str()) {
            return Err(HealthConfigError::UnknownField {
                key: key.into(),
                field: k.clone(),
            });
        }
        out.insert(s, item.clone());
    }
    Ok(out)
}

fn duration(key: &str, v: &Value) -> Result<Duration, HealthConfigError> {
    match v {
        Value::String(s) => parse_go_duration(s).map_err(|e| HealthConfigError::Invalid {
            key: key.into(),
            message: e.to_string(),
        }),
        _ => Err(HealthConfigError::Type {
            key: key.into(),
            expected: "a duration string like \"5s\"",
            got: type_name(v),
        }),
    }
}

/// A uint32, also as a string or protobuf wrapper `{value: n}`.
fn uint(key: &str, v: &Value) -> Result<u32, HealthConfigError> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        Value::Object(m) => return uint(key, m.get("value").unwrap_or(&Value::Null)),
        _ => None,
    };
    n.filter(|n| *n <= u32::MAX as u64)
        .map(|n| n as u32)
        .ok_or_else(|| HealthConfigError::Type {
            key: key.into(),
            expected: "a whole number",
            got: type_name(v),
        })
}

pub const HEALTH_CHECK_FIELDS: &[&str] = &[
    "timeout",
    "interval",
    "initial_jitter",
    "interval_jitter",
    "interval_jitter_percent",
    "unhealthy_threshold",
    "healthy_threshold",
    "alt_port",
    "reuse_connection",
    "http_health_check",
    "tcp_health_check",
    "grpc_health_check",
    "custom_health_check",
    "no_traffic_interval",
    "no_traffic_healthy_interval",
    "unhealthy_interval",
    "unhealthy_edge_interval",
    "healthy_edge_interval",
    "event_log_path",
    "always_log_health_check_failures",
    "always_log_health_check_success",
    "tls_options",
    "transport_socket_match_criteria",
];

const HTTP_CHECK_FIELDS: &[&str] = &[
    "host",
    "path",
    "send",
    "receive",
    "response_buffer_size",
    "request_headers_to_add",
    "request_headers_to_remove",
    "expected_statuses",
    "retriable_statuses",
    "codec_client_type",
    "service_name_matcher",
    "method",
];

/// Parses `health_checks`: a list of Envoy `HealthCheck` objects. `timeout`, `interval`,
/// `unhealthy_threshold`, `healthy_threshold` and one of `http_health_check` /
/// `tcp_health_check` are required, as in Envoy.
pub fn parse_health_checks(v: &Value) -> Result<Vec<HealthCheck>, HealthConfigError> {
    let key = "health_checks";
    let Value::Array(items) = v else {
        return Err(HealthConfigError::Type {
            key: key.into(),
            expected: "a list of health checks",
            got: type_name(v),
        });
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| parse_health_check(&format!("{key}[{i}]"), item))
        .collect()
}

fn parse_health_check(key: &str, v: &Value) -> Result<HealthCheck, HealthConfigError> {
    let m = object(key, v, HEALTH_CHECK_FIELDS)?;
    let required = |field: &'static str| {
        m.get(field).ok_or(HealthConfigError::Missing {
            key: key.into(),
            field,
        })
    };
    let timeout = duration(&format!("{key}.timeout"), required("timeout")?)?;
    let interval = duration(&format!("{key}.interval"), required("interval")?)?;
    if timeout.is_zero() || interval.is_zero() {
        return Err(HealthConfigError::Invalid {
            key: key.into(),
            message: "timeout and interval must be greater than 0".into(),
        });
    }
    let unhealthy_threshold = uint(
        &format!("{key}.unhealthy_threshold"),
        required("unhealthy_threshold")?,
    )?
    .max(1);
    let healthy_threshold = uint(
        &format!("{key}.healthy_threshold"),
        required("healthy_threshold")?,
    )?
    .max(1);
    let kind = if let Some(h) = m.get("http_health_check") {
        let hk = format!("{key}.http_health_check");
        let hm = object(&hk, h, HTTP_CHECK_FIELDS)?;
        let path = match hm.get("path") {
            Some(Value::String(p)) if p.starts_with('/') => p.clone(),
            Some(other) => {
                return Err(HealthConfigError::Type {
                    key: format!("{hk}.path"),
                    expected: "a path starting with /",
                    got: type_name(other),
                })
            }
            None => {
                return Err(HealthConfigError::Missing {
                    key: hk,
                    field: "path",
                })
            }
        };
        let host = match hm.get("host") {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        };
        let expected_statuses = match hm.get("expected_statuses") {
            None | Some(Value::Null) => vec![(200, 201)],
            Some(Value::Array(ranges)) => ranges
                .iter()
                .map(|r| {
                    let rk = format!("{hk}.expected_statuses");
                    let rm = object(&rk, r, &["start", "end"])?;
                    let get = |f: &str| {
                        rm.get(f)
                            .map(|v| uint(&format!("{rk}.{f}"), v))
                            .transpose()
                            .map(|v| v.unwrap_or(0))
                    };
                    let (start, end) = (get("start")?, get("end")?);
                    if !(100..=600).contains(&start) || end <= start || end > 600 {
                        return Err(HealthConfigError::Invalid {
                            key: rk,
                            message: format!(
                                "range [{start}, {end}) must satisfy 100 <= start < end <= 600"
                            ),
                        });
                    }
                    Ok((start as u16, end as u16))
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(other) => {
                return Err(HealthConfigError::Type {
                    key: format!("{hk}.expected_statuses"),
                    expected: "a list of {start, end} ranges",
                    got: type_name(other),
                })
            }
        };
        CheckKind::Http {
            path,
            host,
            expected_statuses,
        }
    } else if m.contains_key("tcp_health_check") {
        CheckKind::Tcp
    } else if m.contains_key("grpc_health_check") || m.contains_key("custom_health_check") {
        return Err(HealthConfigError::Invalid {
            key: key.into(),
            message: "only http_health_check and tcp_health_check are supported".into(),
        });
    } else {
        return Err(HealthConfigError::Missing {
            key: key.into(),
            field: "http_health_check or tcp_health_check",
        });
    };
    Ok(HealthCheck {
        timeout,
        interval,
        unhealthy_threshold,
        healthy_threshold,
        kind,
    })
}

const OUTLIER_FIELDS: &[&str] = &[
    "consecutive_5xx",
    "consecutive5xx",
    "enforcing_consecutive5xx",
    "interval",
    "base_ejection_time",
    "max_ejection_percent",
    "enforcing_consecutive_5xx",
    "enforcing_success_rate",
    "success_rate_minimum_hosts",
    "success_rate_request_volume",
    "success_rate_stdev_factor",
    "consecutive_gateway_failure",
    "enforcing_consecutive_gateway_failure",
    "split_external_local_origin_errors",
    "consecutive_local_origin_failure",
    "enforcing_consecutive_local_origin_failure",
    "enforcing_local_origin_success_rate",
    "failure_percentage_threshold",
    "enforcing_failure_percentage",
    "enforcing_failure_percentage_local_origin",
    "failure_percentage_minimum_hosts",
    "failure_percentage_request_volume",
    "max_ejection_time",
    "max_ejection_time_jitter",
    "successful_active_health_check_uneject_host",
    "monitors",
    "always_eject_one_host",
];

/// Parses `outlier_detection` (Envoy `OutlierDetection`; omitted fields take Envoy's defaults).
/// The success-rate and failure-percentage algorithms are accepted but not applied.
pub fn parse_outlier_detection(v: &Value) -> Result<OutlierDetection, HealthConfigError> {
    let key = "outlier_detection";
    let m = object(key, v, OUTLIER_FIELDS)?;
    let mut o = OutlierDetection::default();
    let k = |f: &str| format!("{key}.{f}");
    // Envoy's JSON name for consecutive_5xx is consecutive5xx.
    if let Some(v) = m.get("consecutive_5xx").or_else(|| m.get("consecutive5xx")) {
        o.consecutive_5xx = uint(&k("consecutive_5xx"), v)?;
    }
    if let Some(v) = m
        .get("enforcing_consecutive_5xx")
        .or_else(|| m.get("enforcing_consecutive5xx"))
    {
        o.enforcing_consecutive_5xx = percent(&k("enforcing_consecutive_5xx"), v)?;
    }
    if let Some(v) = m.get("consecutive_gateway_failure") {
        o.consecutive_gateway_failure = uint(&k("consecutive_gateway_failure"), v)?;
    }
    if let Some(v) = m.get("enforcing_consecutive_gateway_failure") {
        o.enforcing_consecutive_gateway_failure =
            percent(&k("enforcing_consecutive_gateway_failure"), v)?;
    }
    if let Some(v) = m.get("interval") {
        o.interval = duration(&k("interval"), v)?;
    }
    if let Some(v) = m.get("base_ejection_time") {
        o.base_ejection_time = duration(&k("base_ejection_time"), v)?;
    }
    if let Some(v) = m.get("max_ejection_time") {
        o.max_ejection_time = duration(&k("max_ejection_time"), v)?;
    }
    if let Some(v) = m.get("max_ejection_percent") {
        o.max_ejection_percent = percent(&k("max_ejection_percent"), v)?;
    }
    if o.interval.is_zero() || o.base_ejection_time.is_zero() {
        return Err(HealthConfigError::Invalid {
            key: key.into(),
            message: "interval and base_ejection_time must be greater than 0".into(),
        });
    }
    Ok(o)
}

fn percent(key: &str, v: &Value) -> Result<u32, HealthConfigError> {
    let n = uint(key, v)?;
    if n > 100 {
        return Err(HealthConfigError::Invalid {
            key: key.into(),
            message: format!("{n} is not a percentage (0-100)"),
        });
    }
    Ok(n)
}

/// `circuit_breaker_thresholds`: the limits rampart enforces. Upstream requests are HTTP/1.1,
/// one connection each, so `max_connections` and `max_requests` both cap the concurrent
/// requests of the route; `max_pending_requests`, `max_retries` and `max_connection_pools`
/// are accepted and not applied.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CircuitBreakers {
    /// Concurrent requests beyond this are answered 503 at once.
    pub max_requests: Option<u32>,
}

pub const CIRCUIT_BREAKER_FIELDS: &[&str] = &[
    "max_connections",
    "max_pending_requests",
    "max_requests",
    "max_retries",
    "max_connection_pools",
];

pub fn parse_circuit_breakers(v: &Value) -> Result<CircuitBreakers, HealthConfigError> {
    let key = "circuit_breaker_thresholds";
    let m = object(key, v, CIRCUIT_BREAKER_FIELDS)?;
    let mut limit: Option<u32> = None;
    for (field, value) in &m {
        let n = uint(&format!("{key}.{field}"), value)?;
        if field == "max_requests" || field == "max_connections" {
            limit = Some(limit.map_or(n, |l| l.min(n)));
        }
    }
    Ok(CircuitBreakers {
        max_requests: limit,
    })
}

/// Checks `healthy_panic_threshold` (0–100).
pub fn check_panic_threshold(v: f64) -> Result<f64, HealthConfigError> {
    if !(0.0..=100.0).contains(&v) {
        return Err(HealthConfigError::Invalid {
            key: "healthy_panic_threshold".into(),
            message: format!("{v} is not a percentage (0-100)"),
        });
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn http_check_with_defaults_and_camel_case() {
        let checks = parse_health_checks(&json!([{
            "timeout": "1s", "interval": "2s", "healthyThreshold": 1, "unhealthy_threshold": 2,
            "http_health_check": {"path": "/healthz"}
        }]))
        .unwrap();
        assert_eq!(
            checks,
            vec![HealthCheck {
                timeout: Duration::from_secs(1),
                interval: Duration::from_secs(2),
                unhealthy_threshold: 2,
                healthy_threshold: 1,
                kind: CheckKind::Http {
                    path: "/healthz".into(),
                    host: None,
                    expected_statuses: vec![(200, 201)],
                },
            }]
        );
    }

    #[test]
    fn expected_statuses_and_tcp() {
        let checks = parse_health_checks(&json!([
            {"timeout": "1s", "interval": "1s", "healthy_threshold": 1, "unhealthy_threshold": 1,
             "http_health_check": {"path": "/", "expectedStatuses": [{"start": 200, "end": 400}]}},
            {"timeout": "1s", "interval": "1s", "healthy_threshold": 1, "unhealthy_threshold": 1,
             "tcp_health_check": {}}
        ]))
        .unwrap();
        assert!(
            matches!(&checks[0].kind, CheckKind::Http { expected_statuses, .. } if expected_statuses == &[(200, 400)])
        );
        assert_eq!(checks[1].kind, CheckKind::Tcp);
    }

    #[test]
    fn bad_health_checks_name_the_field() {
        let e = |v: Value| parse_health_checks(&v).unwrap_err().to_string();
        assert_eq!(
            e(
                json!([{"interval": "1s", "healthy_threshold": 1, "unhealthy_threshold": 1, "tcp_health_check": {}}])
            ),
            "`health_checks[0]`: timeout is required"
        );
        assert_eq!(
            e(json!([{"timeout": "1x", "interval": "1s", "healthy_threshold": 1, "unhealthy_threshold": 1, "tcp_health_check": {}}])),
            "`health_checks[0].timeout`: invalid duration \"1x\": unknown unit (use ns, us, ms, s, m or h)"
        );
        assert_eq!(
            e(
                json!([{"timeout": "1s", "interval": "1s", "healthy_threshold": 1, "unhealthy_threshold": 1}])
            ),
            "`health_checks[0]`: http_health_check or tcp_health_check is required"
        );
        assert_eq!(
            e(
                json!([{"timeout": "1s", "interval": "1s", "healthy_threshold": 1, "unhealthy_threshold": 1, "http_health_check": {"pth": "/"}}])
            ),
            "`health_checks[0].http_health_check`: unknown field \"pth\""
        );
        assert_eq!(
            e(json!({"timeout": "1s"})),
            "`health_checks`: expected a list of health checks, got an object"
        );
    }

    #[test]
    fn circuit_breakers_take_the_lower_request_limit() {
        let c = parse_circuit_breakers(
            &json!({"max_requests": 10, "maxConnections": 4, "max_retries": 1}),
        )
        .unwrap();
        assert_eq!(c.max_requests, Some(4));
        assert_eq!(
            parse_circuit_breakers(&json!({"max_retries": 1}))
                .unwrap()
                .max_requests,
            None
        );
        assert_eq!(
            parse_circuit_breakers(&json!({"max_conns": 1}))
                .unwrap_err()
                .to_string(),
            "`circuit_breaker_thresholds`: unknown field \"max_conns\""
        );
    }

    #[test]
    fn outlier_detection_defaults_and_overrides() {
        let o = parse_outlier_detection(
            &json!({"consecutive5xx": 2, "baseEjectionTime": "5s", "max_ejection_percent": 50}),
        )
        .unwrap();
        assert_eq!(o.consecutive_5xx, 2);
        assert_eq!(o.base_ejection_time, Duration::from_secs(5));
        assert_eq!(o.max_ejection_percent, 50);
        assert_eq!(o.interval, Duration::from_secs(10));
        assert_eq!(o.enforcing_consecutive_gateway_failure, 0);
        assert_eq!(
            parse_outlier_detection(&json!({"max_ejection_percent": 150}))
                .unwrap_err()
                .to_string(),
            "`outlier_detection.max_ejection_percent`: 150 is not a percentage (0-100)"
        );
        assert_eq!(
            parse_outlier_detection(&json!({"consecutive_500": 1}))
                .unwrap_err()
                .to_string(),
            "`outlier_detection`: unknown field \"consecutive_500\""
        );
    }
}
