//! How client requests are normalised and checked before routing: Envoy's (and so Pomerium's)
//! `normalize_path`, `merge_slashes`, `path_with_escaped_slashes_action` and
//! `headers_with_underscores_action`, plus rampart's `request_body_idle_timeout`.

use std::time::Duration;

use thiserror::Error;

/// What to do with `%2F`, `%2f`, `%5C` and `%5c` in a request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EscapedSlashesAction {
    /// Leave them escaped: they are part of a segment, not separators.
    KeepUnchanged,
    /// Answer 400 (Pomerium's default).
    #[default]
    RejectRequest,
    /// Unescape them, normalise, and redirect the client (307) to the result.
    UnescapeAndRedirect,
    /// Unescape them, normalise, and forward the result.
    UnescapeAndForward,
}

/// What to do with request header names that contain `_`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnderscoreHeadersAction {
    Allow,
    /// Answer 400 (Pomerium's default).
    #[default]
    RejectRequest,
    /// Remove such headers before authorization and forwarding.
    DropHeader,
}

/// A value that is not one of a setting's allowed spellings.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("unknown value {value:?}, expected one of {allowed}")]
pub struct UnknownValue {
    pub value: String,
    pub allowed: &'static str,
}

fn unknown(value: &str, allowed: &'static str) -> UnknownValue {
    UnknownValue {
        value: value.to_string(),
        allowed,
    }
}

impl EscapedSlashesAction {
    /// Envoy's enum names, in any case (`REJECT_REQUEST`, `reject_request`);
    /// `IMPLEMENTATION_SPECIFIC_DEFAULT` is Envoy's default, `KEEP_UNCHANGED`.
    pub fn parse(value: &str) -> Result<EscapedSlashesAction, UnknownValue> {
        match value.trim().to_ascii_lowercase().as_str() {
            "keep_unchanged" | "implementation_specific_default" => Ok(Self::KeepUnchanged),
            "reject_request" => Ok(Self::RejectRequest),
            "unescape_and_redirect" => Ok(Self::UnescapeAndRedirect),
            "unescape_and_forward" => Ok(Self::UnescapeAndForward),
            _ => Err(unknown(
                value,
                "keep_unchanged, reject_request, unescape_and_redirect, unescape_and_forward",
            )),
        }
    }
}

impl UnderscoreHeadersAction {
    /// Envoy's enum names, in any case (`REJECT_REQUEST`, `drop_header`).
    pub fn parse(value: &str) -> Result<UnderscoreHeadersAction, UnknownValue> {
        match value.trim().to_ascii_lowercase().as_str() {
            "allow" => Ok(Self::Allow),
            "reject_request" => Ok(Self::RejectRequest),
            "drop_header" => Ok(Self::DropHeader),
            _ => Err(unknown(value, "allow, reject_request, drop_header")),
        }
    }
}

/// How request paths are normalised (all on by default, as in Pomerium).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathRules {
    /// Decode percent-encoded unreserved characters and resolve `.`/`..` segments (RFC 3986).
    pub normalize: bool,
    /// Collapse runs of `/`.
    pub merge_slashes: bool,
    pub escaped_slashes: EscapedSlashesAction,
}

impl Default for PathRules {
    fn default() -> Self {
        PathRules {
            normalize: true,
            merge_slashes: true,
            escaped_slashes: EscapedSlashesAction::RejectRequest,
        }
    }
}

/// Everything about checking and normalising client requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestRules {
    pub path: PathRules,
    pub underscore_headers: UnderscoreHeadersAction,
    /// A request body that sends nothing for this long is answered with 408 (`None`: no limit).
    pub body_idle_timeout: Option<Duration>,
}

/// Default `request_body_idle_timeout`.
pub const DEFAULT_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for RequestRules {
    fn default() -> Self {
        RequestRules {
            path: PathRules::default(),
            underscore_headers: UnderscoreHeadersAction::RejectRequest,
            body_idle_timeout: Some(DEFAULT_BODY_IDLE_TIMEOUT),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_envoy_spellings_in_any_case() {
        assert_eq!(
            EscapedSlashesAction::parse("UNESCAPE_AND_FORWARD"),
            Ok(EscapedSlashesAction::UnescapeAndForward)
        );
        assert_eq!(
            EscapedSlashesAction::parse("keep_unchanged"),
            Ok(EscapedSlashesAction::KeepUnchanged)
        );
        assert_eq!(
            EscapedSlashesAction::parse("IMPLEMENTATION_SPECIFIC_DEFAULT"),
            Ok(EscapedSlashesAction::KeepUnchanged)
        );
        assert_eq!(
            UnderscoreHeadersAction::parse("Drop_Header"),
            Ok(UnderscoreHeadersAction::DropHeader)
        );
        let e = UnderscoreHeadersAction::parse("drop").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown value \"drop\", expected one of allow, reject_request, drop_header"
        );
        assert!(EscapedSlashesAction::parse("redirect").is_err());
    }
}
