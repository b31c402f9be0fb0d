//! Value matchers (spec 1.4): string, string list, source IP ranges, client certificate.
//! Compiled once; matching never allocates.

use std::net::IpAddr;

use base64::Engine;
use ipnet::{IpNet, Ipv4Net};
use serde_json::Value;

use super::error::{go_type, ValueError};
use super::request::ClientCertificate;

/// JSON equality as Rego sees it: typed (a string never equals a number) but numbers compare
/// by value (`1 == 1.0`).
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x == y || matches!((x.as_f64(), y.as_f64()), (Some(p), Some(q)) if p == q)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// One condition of a string matcher. `None` operands are non-string JSON values, which are
/// never equal to a string (`email: true`, and the `email: [a, b]` quirk).
#[derive(Debug, Clone, PartialEq)]
enum StrCond {
    Is(Option<Box<str>>),
    Not(Option<Box<str>>),
    StartsWith(Box<str>),
    EndsWith(Box<str>),
    Contains(Box<str>),
    In(Box<[Box<str>]>),
    NotIn(Box<[Box<str>]>),
}

/// String matcher: all conditions must hold. A non-object value `v` means `{is: v}`.
#[derive(Debug, Clone, PartialEq)]
pub struct StringMatcher {
    conds: Box<[StrCond]>,
}

impl StringMatcher {
    /// Compiles a string matcher value.
    pub fn compile(value: &Value) -> Result<StringMatcher, ValueError> {
        let Value::Object(obj) = value else {
            return Ok(StringMatcher {
                conds: Box::new([StrCond::Is(as_box_str(value))]),
            });
        };
        let mut conds = Vec::with_capacity(obj.len());
        for (op, v) in obj {
            let cond = match op.as_str() {
                "is" => StrCond::Is(as_box_str(v)),
                "not" => StrCond::Not(as_box_str(v)),
                "starts_with" => StrCond::StartsWith(require_str("starts_with", v)?),
                "ends_with" => StrCond::EndsWith(require_str("ends_with", v)?),
                "contains" => StrCond::Contains(require_str("contains", v)?),
                "in" => StrCond::In(string_members(v).ok_or(ValueError::InRequiresArray)?),
                "not_in" => {
                    StrCond::NotIn(string_members(v).ok_or(ValueError::NotInRequiresArray)?)
                }
                other => return Err(ValueError::StringMatcherOperator(other.to_string())),
            };
            conds.push(cond);
        }
        Ok(StringMatcher {
            conds: conds.into_boxed_slice(),
        })
    }

    /// True if `s` satisfies every condition.
    #[inline]
    pub fn matches(&self, s: &str) -> bool {
        self.conds.iter().all(|c| Self::cond_matches(c, s))
    }

    /// Matching over a list (certificate SANs), as Pomerium's Rego `list[_]` does: each
    /// condition is satisfied by *some* element on its own (different elements may satisfy
    /// different conditions), except `not_in`, which holds when *no* element is in the array.
    pub fn matches_some(&self, values: &[String]) -> bool {
        self.conds.iter().all(|c| match c {
            StrCond::NotIn(items) => !values.iter().any(|v| items.iter().any(|i| **i == **v)),
            other => values.iter().any(|v| Self::cond_matches(other, v)),
        })
    }

    #[inline(always)]
    fn cond_matches(c: &StrCond, s: &str) -> bool {
        match c {
            StrCond::Is(v) => v.as_deref() == Some(s),
            StrCond::Not(v) => v.as_deref() != Some(s),
            StrCond::StartsWith(p) => s.starts_with(&**p),
            StrCond::EndsWith(p) => s.ends_with(&**p),
            StrCond::Contains(p) => s.contains(&**p),
            StrCond::In(items) => items.iter().any(|i| &**i == s),
            StrCond::NotIn(items) => !items.iter().any(|i| &**i == s),
        }
    }
}

fn as_box_str(v: &Value) -> Option<Box<str>> {
    v.as_str().map(Box::from)
}

fn require_str(op: &'static str, v: &Value) -> Result<Box<str>, ValueError> {
    as_box_str(v).ok_or(ValueError::OperatorRequiresString(op, go_type(v)))
}

/// The string members of an array (non-strings can never equal a string); `None` if not an array.
fn string_members(v: &Value) -> Option<Box<[Box<str>]>> {
    let items = v.as_array()?;
    Some(items.iter().filter_map(as_box_str).collect())
}

#[derive(Debug, Clone, PartialEq)]
enum ListCond {
    Has(Value),
    Is(Value),
    Exclude(Value),
}

/// String list matcher (`groups`, `claim/*`). A non-object value `v` means `{has: v}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ListMatcher {
    conds: Box<[ListCond]>,
}

impl ListMatcher {
    /// Compiles a string list matcher value.
    pub fn compile(value: &Value) -> Result<ListMatcher, ValueError> {
        let Value::Object(obj) = value else {
            return Ok(ListMatcher {
                conds: Box::new([ListCond::Has(value.clone())]),
            });
        };
        let mut conds = Vec::with_capacity(obj.len());
        for (op, v) in obj {
            conds.push(match op.as_str() {
                "has" => ListCond::Has(v.clone()),
                "is" => ListCond::Is(v.clone()),
                "exclude" => ListCond::Exclude(v.clone()),
                other => return Err(ValueError::ListMatcherOperator(other.to_string())),
            });
        }
        Ok(ListMatcher {
            conds: conds.into_boxed_slice(),
        })
    }

    /// True if the JSON value list satisfies every condition.
    #[inline]
    pub fn matches_values(&self, list: &[Value]) -> bool {
        self.conds.iter().all(|c| match c {
            ListCond::Has(v) => list.iter().any(|x| json_eq(x, v)),
            ListCond::Is(v) => list.len() == 1 && json_eq(&list[0], v),
            ListCond::Exclude(v) => !list.iter().any(|x| json_eq(x, v)),
        })
    }

    /// True if the string list satisfies every condition.
    #[inline]
    pub fn matches_strings(&self, list: &[String]) -> bool {
        let eq = |x: &String, v: &Value| v.as_str() == Some(x.as_str());
        self.conds.iter().all(|c| match c {
            ListCond::Has(v) => list.iter().any(|x| eq(x, v)),
            ListCond::Is(v) => list.len() == 1 && eq(&list[0], v),
            ListCond::Exclude(v) => !list.iter().any(|x| eq(x, v)),
        })
    }
}

/// `source_ip` ranges. Bare IPs are /32 or /128; IPv4-mapped IPv6 ranges are stored as IPv4.
#[derive(Debug, Clone, PartialEq)]
pub struct IpRanges {
    nets: Box<[IpNet]>,
}

impl IpRanges {
    /// Compiles a string or array of strings.
    pub fn compile(value: &Value) -> Result<IpRanges, ValueError> {
        let items: Vec<&str> = match value {
            Value::String(s) => vec![s.as_str()],
            Value::Array(items) => items
                .iter()
                .map(|v| v.as_str().ok_or(ValueError::StringOrArray(go_type(v))))
                .collect::<Result<_, _>>()?,
            other => return Err(ValueError::StringOrArray(go_type(other))),
        };
        let nets = items
            .into_iter()
            .map(|s| parse_range(s).ok_or_else(|| ValueError::IpOrCidr(s.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(IpRanges {
            nets: nets.into_boxed_slice(),
        })
    }

    /// True if `ip` is in any range.
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|n| n.contains(&ip))
    }
}

fn parse_range(s: &str) -> Option<IpNet> {
    let net = match s.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => IpNet::from(s.parse::<IpAddr>().ok()?),
    };
    Some(match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => IpNet::V4(Ipv4Net::new(v4, v6.prefix_len() - 96).ok()?.trunc()),
            None => IpNet::V6(v6.trunc()),
        },
        other => other.trunc(),
    })
}

/// `client_certificate` matcher: every listed condition must hold.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CertMatcher {
    fingerprints: Option<Box<[[u8; 32]]>>,
    spki_hashes: Option<Box<[[u8; 32]]>>,
    san_email: Option<StringMatcher>,
    san_dns: Option<StringMatcher>,
    san_uri: Option<StringMatcher>,
}

impl CertMatcher {
    /// Compiles a certificate matcher object.
    pub fn compile(value: &Value) -> Result<CertMatcher, ValueError> {
        let Value::Object(obj) = value else {
            return Err(ValueError::CertificateMatcherType(go_type(value)));
        };
        let mut m = CertMatcher::default();
        for (k, v) in obj {
            match k.as_str() {
                "fingerprint" => {
                    m.fingerprints = Some(string_or_list(
                        v,
                        parse_fingerprint,
                        ValueError::FingerprintCondition,
                    )?)
                }
                "spki_hash" => {
                    m.spki_hashes = Some(string_or_list(
                        v,
                        parse_spki_hash,
                        ValueError::SpkiHashCondition,
                    )?)
                }
                "san_email" => m.san_email = Some(StringMatcher::compile(v)?),
                "san_dns" => m.san_dns = Some(StringMatcher::compile(v)?),
                "san_uri" => m.san_uri = Some(StringMatcher::compile(v)?),
                other => return Err(ValueError::CertificateMatcherCondition(other.to_string())),
            }
        }
        Ok(m)
    }

    /// True if `cert` satisfies every condition.
    pub fn matches(&self, cert: &ClientCertificate) -> bool {
        let san = |m: &Option<StringMatcher>, sans: &[String]| {
            m.as_ref().is_none_or(|m| m.matches_some(sans))
        };
        self.fingerprints
            .as_ref()
            .is_none_or(|f| f.contains(&cert.fingerprint))
            && self
                .spki_hashes
                .as_ref()
                .is_none_or(|h| cert.spki_hash.is_some_and(|c| h.contains(&c)))
            && san(&self.san_email, &cert.san_email)
            && san(&self.san_dns, &cert.san_dns)
            && san(&self.san_uri, &cert.san_uri)
    }
}

fn string_or_list(
    v: &Value,
    parse: fn(&Value) -> Result<[u8; 32], ValueError>,
    not_string_or_array: ValueError,
) -> Result<Box<[[u8; 32]]>, ValueError> {
    match v {
        Value::Array(items) => items.iter().map(parse).collect(),
        Value::String(_) => Ok(Box::new([parse(v)?])),
        _ => Err(not_string_or_array),
    }
}

fn parse_fingerprint(v: &Value) -> Result<[u8; 32], ValueError> {
    let Value::String(s) = v else {
        return Err(ValueError::FingerprintType(v.to_string()));
    };
    if s.is_empty() {
        return Err(ValueError::FingerprintEmpty);
    }
    let hex = if s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        s.clone()
    } else if s.len() == 95
        && s.split(':').count() == 32
        && s.split(':').all(|p| {
            p.len() == 2
                && p.bytes()
                    .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
        })
    {
        s.replace(':', "").to_ascii_lowercase()
    } else {
        return Err(ValueError::FingerprintFormat(s.clone()));
    };
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
            .map_err(|_| ValueError::FingerprintFormat(s.clone()))?;
    }
    Ok(out)
}

fn parse_spki_hash(v: &Value) -> Result<[u8; 32], ValueError> {
    let text = match v {
        Value::String(s) if s.is_empty() => return Err(ValueError::SpkiHashEmpty),
        Value::String(s) => s.clone(),
        other => return Err(ValueError::SpkiHashType(other.to_string())),
    };
    base64::engine::general_purpose::STANDARD
        .decode(&text)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .ok_or(ValueError::SpkiHash(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sm(v: Value) -> StringMatcher {
        StringMatcher::compile(&v).unwrap()
    }

    #[test]
    fn string_matcher_table() {
        let cases: &[(Value, &str, bool)] = &[
            (json!("a@x.com"), "a@x.com", true),
            (json!("a@x.com"), "A@x.com", false),
            (json!({"is": "a"}), "a", true),
            (json!({"is": true}), "true", false),
            (json!({"is": 5}), "5", false),
            (json!(["a", "b"]), "a", false),
            (json!({"not": "a"}), "a", false),
            (json!({"not": "a"}), "b", true),
            (json!({"not": 1}), "1", true),
            (json!({"starts_with": "/api"}), "/api/v1", true),
            (json!({"starts_with": "/api"}), "/ap", false),
            (json!({"ends_with": ".com"}), "x.com", true),
            (json!({"ends_with": ".com"}), "x.org", false),
            (json!({"contains": "mid"}), "amidst", true),
            (json!({"contains": "Mid"}), "amidst", false),
            (json!({"in": ["a", "b"]}), "b", true),
            (json!({"in": ["a", 1]}), "1", false),
            (json!({"in": []}), "a", false),
            (json!({"not_in": ["a", "b"]}), "c", true),
            (json!({"not_in": ["a", "b"]}), "a", false),
            (json!({"starts_with": "a", "ends_with": "z"}), "abcz", true),
            (json!({"starts_with": "a", "ends_with": "z"}), "abc", false),
            (json!({}), "anything", true),
        ];
        for (v, s, want) in cases {
            assert_eq!(sm(v.clone()).matches(s), *want, "{v} vs {s:?}");
        }
    }

    #[test]
    fn string_matcher_errors() {
        let err = |v: Value| StringMatcher::compile(&v).unwrap_err().to_string();
        assert_eq!(
            err(json!({"bogus": 1})),
            "unknown string matcher operator: bogus"
        );
        assert_eq!(
            err(json!({"in": "a"})),
            "in matcher requires an array of strings"
        );
        assert_eq!(
            err(json!({"not_in": {}})),
            "not_in matcher requires an array of strings"
        );
        assert_eq!(
            err(json!({"contains": 3})),
            "contains matcher requires a string, got: parser.Number"
        );
    }

    #[test]
    fn matches_some_is_per_condition() {
        let sans = vec!["a.example.com".to_string(), "b.other.org".to_string()];
        let m = sm(json!({"starts_with": "a.", "ends_with": ".org"}));
        assert!(
            m.matches_some(&sans),
            "different SANs may satisfy different conditions"
        );
        assert!(!m.matches("a.example.com") && !m.matches("b.other.org"));
        assert!(sm(json!({"not": "a.example.com"})).matches_some(&sans));
        assert!(!sm(json!({"not_in": ["x", "b.other.org"]})).matches_some(&sans));
        assert!(sm(json!({"not_in": ["x"]})).matches_some(&sans));
        assert!(sm(json!({"not_in": ["x"]})).matches_some(&[]));
        assert!(!sm(json!("x")).matches_some(&[]));
    }

    #[test]
    fn list_matcher_table() {
        let list = vec![json!("a"), json!(1), json!({"k": [1, 2]})];
        let one = vec![json!("a")];
        let cases: &[(Value, &[Value], bool)] = &[
            (json!("a"), &list, true),
            (json!("b"), &list, false),
            (json!({"has": 1.0}), &list, true),
            (json!({"has": "1"}), &list, false),
            (json!({"has": {"k": [1, 2]}}), &list, true),
            (json!({"is": "a"}), &list, false),
            (json!({"is": "a"}), &one, true),
            (json!({"exclude": "a"}), &list, false),
            (json!({"exclude": "z"}), &list, true),
            (json!({"exclude": "z"}), &[], true),
            (json!({"has": "a"}), &[], false),
            (json!({"has": "a", "exclude": 1}), &list, false),
        ];
        for (v, l, want) in cases {
            assert_eq!(
                ListMatcher::compile(v).unwrap().matches_values(l),
                *want,
                "{v} vs {l:?}"
            );
        }
        let groups = vec!["g1".to_string(), "g2".to_string()];
        assert!(ListMatcher::compile(&json!("g2"))
            .unwrap()
            .matches_strings(&groups));
        assert!(!ListMatcher::compile(&json!({"is": "g2"}))
            .unwrap()
            .matches_strings(&groups));
        assert!(ListMatcher::compile(&json!({"exclude": "g3"}))
            .unwrap()
            .matches_strings(&groups));
        assert!(!ListMatcher::compile(&json!(1))
            .unwrap()
            .matches_strings(&groups));
        assert_eq!(
            ListMatcher::compile(&json!({"contains": "g"}))
                .unwrap_err()
                .to_string(),
            "unknown string list matcher operator: contains"
        );
    }

    #[test]
    fn ip_ranges() {
        let r = IpRanges::compile(&json!([
            "10.0.0.0/8",
            "192.168.1.1",
            "2001:db8::/32",
            "::ffff:172.16.0.0/108"
        ]))
        .unwrap();
        let yes = [
            "10.1.2.3",
            "192.168.1.1",
            "2001:db8::1",
            "172.16.5.5",
            "::ffff:10.9.9.9",
        ];
        let no = [
            "11.0.0.1",
            "192.168.1.2",
            "2001:db9::1",
            "172.32.0.1",
            "::1",
        ];
        for ip in yes {
            assert!(r.contains(ip.parse().unwrap()), "{ip}");
        }
        for ip in no {
            assert!(!r.contains(ip.parse().unwrap()), "{ip}");
        }
        assert!(IpRanges::compile(&json!("10.0.0.1/8"))
            .unwrap()
            .contains("10.200.0.1".parse().unwrap()));
        assert_eq!(
            IpRanges::compile(&json!("10.0.0.300"))
                .unwrap_err()
                .to_string(),
            "expected IP or CIDR range, got: \"10.0.0.300\""
        );
        assert_eq!(
            IpRanges::compile(&json!(5)).unwrap_err().to_string(),
            "expected string or array of strings, got: parser.Number"
        );
        assert_eq!(
            IpRanges::compile(&json!(["1.2.3.4", true]))
                .unwrap_err()
                .to_string(),
            "expected string or array of strings, got: parser.Boolean"
        );
    }

    #[test]
    fn fingerprint_formats() {
        let hex = "a".repeat(64);
        assert_eq!(parse_fingerprint(&json!(hex)).unwrap(), [0xaa; 32]);
        let colon = vec!["AB"; 32].join(":");
        assert_eq!(parse_fingerprint(&json!(colon)).unwrap(), [0xab; 32]);
        let upper = "A".repeat(64);
        assert_eq!(
            parse_fingerprint(&json!(upper)).unwrap_err().to_string(),
            format!("unsupported certificate fingerprint format ({upper})")
        );
        let lower_colon = vec!["ab"; 32].join(":");
        assert!(parse_fingerprint(&json!(lower_colon)).is_err());
        let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert_eq!(parse_spki_hash(&json!(b64)).unwrap(), [7u8; 32]);
        let short = base64::engine::general_purpose::STANDARD.encode([7u8; 20]);
        assert_eq!(
            parse_spki_hash(&json!(short)).unwrap_err().to_string(),
            format!("certificate SPKI hash must be a base64-encoded SHA-256 hash (was {short})")
        );
    }
}
