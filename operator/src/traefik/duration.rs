//! Durations as Traefik's CRDs write them: an integer is seconds, a string is a Go duration
//! (`1m30s`, `250ms`), read with `dag::durations`' Go-duration parser.

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

/// A Go duration (`300ms`, `2h45m`, `0`), non-negative, in whole milliseconds: the DAG's
/// parser, bounded in length here (Traefik's values are short; a longer one is refused before
/// it is read).
fn go_duration_ms(s: &str) -> Option<u64> {
    if s.len() > 64 {
        return None;
    }
    crate::dag::durations::parse_go_duration_ms(s)
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
