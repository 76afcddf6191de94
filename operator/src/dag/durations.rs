//! Go-style durations (`1s`, `150ms`, `1m30s`) as the IngressRoute API writes them.

/// What a route's `timeoutPolicy.request` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestTimeout {
    /// `infinity`, `0s`, or a value that does not parse (as Contour did).
    Disabled,
    Millis(u64),
}

pub fn parse_request_timeout(s: &str) -> RequestTimeout {
    match parse_go_duration_ms(s.trim()) {
        Some(ms) if ms > 0 => RequestTimeout::Millis(ms),
        _ => RequestTimeout::Disabled,
    }
}

/// A positive duration in milliseconds; `None` for zero, `infinity` or unparseable values.
pub fn parse_timeout(s: &str) -> Option<u64> {
    parse_go_duration_ms(s.trim()).filter(|ms| *ms > 0)
}

/// Parses a Go duration (`300ms`, `-1.5h` is rejected, `2h45m`) into whole milliseconds, rounding
/// sub-millisecond remainders up so a tiny positive duration never becomes zero.
pub fn parse_go_duration_ms(s: &str) -> Option<u64> {
    if s.is_empty() || s.starts_with('-') {
        return None;
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    if s == "0" {
        return Some(0);
    }
    let mut rest = s;
    let mut total_ns: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit_ns = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total_ns += value * unit_ns;
    }
    let ms = (total_ns / 1e6).ceil();
    (ms.is_finite() && ms < u64::MAX as f64).then_some(ms as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration_ms("1s"), Some(1000));
        assert_eq!(parse_go_duration_ms("150ms"), Some(150));
        assert_eq!(parse_go_duration_ms("1m30s"), Some(90_000));
        assert_eq!(parse_go_duration_ms("1.5h"), Some(5_400_000));
        assert_eq!(parse_go_duration_ms("500us"), Some(1));
        assert_eq!(parse_go_duration_ms("0s"), Some(0));
        assert_eq!(parse_go_duration_ms("0"), Some(0));
        for bad in ["", "infinity", "10", "1x", "-1s", "s", "1s2"] {
            assert_eq!(parse_go_duration_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn request_timeouts() {
        assert_eq!(parse_request_timeout("1s"), RequestTimeout::Millis(1000));
        assert_eq!(parse_request_timeout("infinity"), RequestTimeout::Disabled);
        assert_eq!(parse_request_timeout("0s"), RequestTimeout::Disabled);
        assert_eq!(parse_request_timeout("nonsense"), RequestTimeout::Disabled);
        assert_eq!(parse_timeout("150ms"), Some(150));
        assert_eq!(parse_timeout("0s"), None);
    }
}
