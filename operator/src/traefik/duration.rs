//! Durations as Traefik's CRDs write them: an integer is seconds, a string is a Go duration
//! (`1m30s`, `250ms`). (`dag::durations` has a Go-duration parser too, private to the DAG.)

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Longest duration accepted: 100 years, the bound `dag::checks` uses for Envoy.
pub const MAX_MS: u64 = crate::dag::checks::MAX_DURATION_MS;

/// A non-negative duration in milliseconds (sub-millisecond remainders round up).
pub fn millis(v: &IntOrString) -> Result<u64, String> {
    let ms = match v {
        IntOrString::Int(s) if *s >= 0 => u64::from(s.unsigned_abs()) * 1000,
        IntOrString::Int(s) => return Err(format!("{s} is negative")),
        IntOrString::String(s) => go_duration_ms(s.trim())
            .ok_or_else(|| format!("{s:?} is not a duration (write e.g. 10s, 1m30s or 250ms)"))?,
    };
    if ms > MAX_MS {
        return Err("is longer than 100 years".into());
    }
    Ok(ms)
}

/// A Go duration (`300ms`, `2h45m`, `0`), non-negative, in whole milliseconds.
pub fn go_duration_ms(s: &str) -> Option<u64> {
    let s = s.strip_prefix('+').unwrap_or(s);
    if s == "0" {
        return Some(0);
    }
    if s.is_empty() || s.len() > 64 {
        return None;
    }
    let mut rest = s;
    let mut ns: f64 = 0.0;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest.get(..n).filter(|v| !v.is_empty())?.parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[u..];
        ns += value * unit;
    }
    let ms = (ns / 1e6).ceil();
    (ms.is_finite() && (0.0..1e18).contains(&ms)).then_some(ms as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_or_go_durations() {
        assert_eq!(millis(&IntOrString::Int(3)), Ok(3000));
        assert_eq!(millis(&IntOrString::String("1m30s".into())), Ok(90_000));
        assert_eq!(millis(&IntOrString::String("250ms".into())), Ok(250));
        assert_eq!(millis(&IntOrString::String("1us".into())), Ok(1));
        assert!(millis(&IntOrString::Int(-1)).is_err());
        for bad in ["", "10", "-1s", "1x", "s", "1e9h"] {
            assert!(
                millis(&IntOrString::String(bad.into())).is_err(),
                "{bad:?} accepted"
            );
        }
        assert!(millis(&IntOrString::String("1000000h".into())).is_err());
    }
}
