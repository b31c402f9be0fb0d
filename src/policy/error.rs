//! Policy errors. Display texts reproduce Pomerium's messages (spec 1.9) verbatim and append
//! ` (at <path>)` naming the culprit inside the document, e.g. `allow.or[2].email`.

use std::fmt;

use serde_json::Value;

/// Where in a policy document an error was found (`[1].allow.or[2].email`). Empty = the root.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DocPath(pub String);

impl DocPath {
    /// The root of a document.
    pub fn root() -> DocPath {
        DocPath(String::new())
    }

    /// This path followed by `.key`.
    pub fn key(&self, key: &str) -> DocPath {
        if self.0.is_empty() {
            DocPath(key.to_string())
        } else {
            DocPath(format!("{}.{key}", self.0))
        }
    }

    /// This path followed by `[index]`.
    pub fn index(&self, index: usize) -> DocPath {
        DocPath(format!("{}[{index}]", self.0))
    }

    /// The path text (empty for the root).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DocPath {
    /// ` (at path)`, or nothing at the root.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            Ok(())
        } else {
            write!(f, " (at {})", self.0)
        }
    }
}

/// Every way compiling a policy can fail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The text is not valid YAML/JSON; carries serde_yaml's message (with line and column).
    #[error("invalid policy YAML: {0}")]
    Yaml(String),
    /// The document structure is wrong (Pomerium's parser errors, wrapped as Pomerium wraps them).
    #[error("invalid rules in policy: {kind}{path}")]
    Rules { kind: RulesError, path: DocPath },
    /// A criterion is unknown or its value is wrong (Pomerium's generator errors).
    #[error("{kind}{path}")]
    Criterion { kind: CriterionError, path: DocPath },
    /// Legacy fields: public route with allow lists.
    #[error("config: policy route marked as public but contains whitelists")]
    PublicWithWhitelists,
    /// Legacy fields: any-authenticated-user route with allow lists.
    #[error(
        "config: policy route marked accessible for any authenticated user but contains whitelists"
    )]
    AnyAuthenticatedWithWhitelists,
}

impl PolicyError {
    /// The location of the culprit inside the document, if the error has one.
    pub fn path(&self) -> Option<&str> {
        match self {
            PolicyError::Rules { path, .. } | PolicyError::Criterion { path, .. } => {
                Some(path.as_str())
            }
            _ => None,
        }
    }

    /// The same error with `prefix` put in front of its path (used when a route carries
    /// several documents: `policy[1].allow...`).
    pub fn prefixed(self, prefix: &str) -> PolicyError {
        let join = |p: DocPath| {
            if p.0.is_empty() {
                DocPath(prefix.to_string())
            } else if p.0.starts_with('[') {
                DocPath(format!("{prefix}{}", p.0))
            } else {
                DocPath(format!("{prefix}.{}", p.0))
            }
        };
        match self {
            PolicyError::Rules { kind, path } => PolicyError::Rules {
                kind,
                path: join(path),
            },
            PolicyError::Criterion { kind, path } => PolicyError::Criterion {
                kind,
                path: join(path),
            },
            other => other,
        }
    }
}

/// Pomerium parser errors (document structure).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    #[error("unsupported type for rule: {0}")]
    RuleType(&'static str),
    #[error("unsupported type for rules array: {0}")]
    RulesArrayType(&'static str),
    #[error("invalid action in rule: unsupported action: {0}")]
    UnsupportedAction(String),
    #[error("invalid value for action in rule, expected Object, got {0}")]
    ActionValue(&'static str),
    #[error("unsupported conditional \"{0}\", only and, or, not, nor and action are allowed")]
    UnsupportedConditional(String),
    #[error("invalid criteria in \"{op}\"): unsupported type for criteria: {ty}")]
    CriteriaType { op: String, ty: &'static str },
    #[error("invalid criteria in \"{op}\"): unsupported type for criteria array: {ty}")]
    CriteriaArrayType { op: String, ty: &'static str },
    #[error(
        "invalid criteria in \"{op}\"): each criteria may only contain a single key and value"
    )]
    CriterionKeys { op: String },
}

/// Pomerium generator errors (criteria and their values).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CriterionError {
    #[error("unknown policy criterion: {0}")]
    Unknown(String),
    #[error("error generating criterion rules: {0}")]
    Value(ValueError),
}

/// A criterion's value is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("unknown string matcher operator: {0}")]
    StringMatcherOperator(String),
    #[error("unknown string list matcher operator: {0}")]
    ListMatcherOperator(String),
    #[error("in matcher requires an array of strings")]
    InRequiresArray,
    #[error("not_in matcher requires an array of strings")]
    NotInRequiresArray,
    /// rampart's own check: Pomerium's Rego compiler rejects these too, with a type error.
    #[error("{0} matcher requires a string, got: {1}")]
    OperatorRequiresString(&'static str, &'static str),
    #[error("expected IP or CIDR range, got: {0:?}")]
    IpOrCidr(String),
    #[error("expected string or array of strings, got: {0}")]
    StringOrArray(&'static str),
    #[error("expected object for certificate matcher, got: {0}")]
    CertificateMatcherType(&'static str),
    #[error("unsupported certificate matcher condition: {0}")]
    CertificateMatcherCondition(String),
    #[error("unsupported certificate fingerprint format ({0})")]
    FingerprintFormat(String),
    #[error("certificate fingerprint condition expects a string or array of strings")]
    FingerprintCondition,
    #[error("certificate fingerprint must be a string (was {0})")]
    FingerprintType(String),
    #[error("certificate fingerprint must not be empty")]
    FingerprintEmpty,
    #[error("certificate SPKI hash condition expects a string or array of strings")]
    SpkiHashCondition,
    #[error("certificate SPKI hash must be a string (was {0})")]
    SpkiHashType(String),
    #[error("certificate SPKI hash must not be empty")]
    SpkiHashEmpty,
    #[error("certificate SPKI hash must be a base64-encoded SHA-256 hash (was {0})")]
    SpkiHash(String),
    #[error("expected object for device criterion, got: {0}")]
    DeviceType(&'static str),
    #[error("unexpected field in device criterion: {0}")]
    DeviceField(String),
    #[error("expected string for device criterion {0} operator, got {1}")]
    DeviceOperatorType(&'static str, &'static str),
}

/// The Go type name Pomerium prints (`%T`) for a parsed value.
pub fn go_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "parser.Null",
        Value::Bool(_) => "parser.Boolean",
        Value::Number(_) => "parser.Number",
        Value::String(_) => "parser.String",
        Value::Array(_) => "parser.Array",
        Value::Object(_) => "parser.Object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_keeps_pomerium_substring_and_names_path() {
        let err = PolicyError::Rules {
            kind: RulesError::UnsupportedConditional("maybe".into()),
            path: DocPath::root().key("allow").key("maybe"),
        };
        assert_eq!(
            err.to_string(),
            "invalid rules in policy: unsupported conditional \"maybe\", only and, or, not, nor and action are allowed (at allow.maybe)"
        );
        let err = err.prefixed("policy[1]");
        assert_eq!(err.path(), Some("policy[1].allow.maybe"));
        let err = PolicyError::Rules {
            kind: RulesError::RuleType("parser.Number"),
            path: DocPath::root(),
        };
        assert_eq!(
            err.to_string(),
            "invalid rules in policy: unsupported type for rule: parser.Number"
        );
        assert_eq!(
            err.prefixed("policy[0]").to_string(),
            "invalid rules in policy: unsupported type for rule: parser.Number (at policy[0])"
        );
    }
}
