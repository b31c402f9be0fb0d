//! Go-style duration strings (`30s`, `1h30m`, `1.5s`, `300ms`, `0s`), as Pomerium config uses.

use std::time::Duration;

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid duration {input:?}: {reason}")]
pub struct DurationError {
    pub input: String,
    pub reason: &'static str,
}

/// Parses a Go `time.ParseDuration` string. Negative durations are rejected; a bare number other
/// than `0` is rejected as Go does ("missing unit").
pub fn parse_go_duration(input: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError {
        input: input.to_string(),
        reason,
    };
    let s = input.trim();
    if s.is_empty() {
        return Err(err("empty string"));
    }
    if s.starts_with('-') {
        return Err(err("negative durations are not allowed"));
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(err("expected a number"));
        }
        let value: f64 = rest[..num_len]
            .parse()
            .map_err(|_| err("malformed number"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(err("missing unit (use e.g. 30s, 5m, 1h)")),
            _ => return Err(err("unknown unit (use ns, us, ms, s, m or h)")),
        };
        total += value * scale;
    }
    Ok(Duration::from_secs_f64(total))
}

/// Formats a duration the way Go prints it for simple values (`30s`, `1m30s`, `1.5s`, `0s`).
pub fn format_go_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    let total_ms = d.as_millis();
    if total_ms % 1000 != 0 || d.as_secs() == 0 {
        if d.as_secs() == 0 && d.subsec_nanos() % 1_000_000 == 0 {
            return format!("{}ms", d.subsec_millis());
        }
        return format!("{}s", d.as_secs_f64());
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 || (h > 0 && s > 0) {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_forms() {
        let cases = [
            ("30s", 30_000),
            ("0s", 0),
            ("0", 0),
            ("1h30m", 5_400_000),
            ("1.5s", 1_500),
            ("300ms", 300),
            ("2m", 120_000),
            ("1m30s", 90_000),
        ];
        for (input, ms) in cases {
            assert_eq!(
                parse_go_duration(input).unwrap(),
                Duration::from_millis(ms),
                "{input}"
            );
        }
    }

    #[test]
    fn rejects_bad_forms() {
        for input in ["", "30", "5x", "-1s", "s", "1..5s"] {
            assert!(parse_go_duration(input).is_err(), "{input} should fail");
        }
        assert_eq!(
            parse_go_duration("30").unwrap_err().to_string(),
            "invalid duration \"30\": missing unit (use e.g. 30s, 5m, 1h)"
        );
    }

    #[test]
    fn formats_round_trip() {
        for input in ["30s", "1m30s", "1h", "1h0m5s", "1.5s", "300ms", "0s"] {
            let d = parse_go_duration(input).unwrap();
            assert_eq!(parse_go_duration(&format_go_duration(d)).unwrap(), d);
        }
        assert_eq!(format_go_duration(Duration::from_secs(90)), "1m30s");
    }
}
