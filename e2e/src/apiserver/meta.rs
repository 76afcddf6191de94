//! Object metadata helpers: field access, timestamps, uids, generated names, name validation.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::resources::NameRule;

/// `metadata.<field>` as a string, `""` when missing.
pub(crate) fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// `metadata`, created when missing. `obj` must be a JSON object (the store only holds objects).
pub(crate) fn meta_mut(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    let map = obj.as_object_mut()?;
    let meta = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut()
}

/// Sets (`Some`) or removes (`None`) `metadata.<field>`.
pub(crate) fn set_meta(obj: &mut Value, field: &str, value: Option<Value>) {
    if let Some(meta) = meta_mut(obj) {
        match value {
            Some(v) => {
                meta.insert(field.to_string(), v);
            }
            None => {
                meta.remove(field);
            }
        }
    }
}

/// `metadata.ownerReferences[*].uid`.
pub(crate) fn owner_uids(obj: &Value) -> impl Iterator<Item = &str> {
    obj.get("metadata")
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("uid").and_then(Value::as_str))
}

/// Whether `metadata.finalizers` is non-empty.
pub(crate) fn has_finalizers(obj: &Value) -> bool {
    obj.get("metadata")
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty())
}

/// The current time as RFC 3339 with second precision, like `metav1.Time`.
pub(crate) fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(i64::try_from(days).unwrap_or_default());
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A small deterministic generator for uids and `generateName` suffixes (splitmix64).
#[derive(Debug)]
pub(crate) struct Ids(u64);

impl Ids {
    pub fn new() -> Self {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Self(seed ^ u64::from(std::process::id()).rotate_left(32))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A version-4-shaped UUID.
    pub fn uid(&mut self) -> String {
        let (a, b) = (self.next(), self.next());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            ((b >> 48) & 0x3fff) | 0x8000,
            b & 0xffff_ffff_ffff
        )
    }

    /// Five characters from the alphabet Kubernetes uses for `generateName`.
    pub fn suffix(&mut self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut n = self.next();
        (0..5)
            .map(|_| {
                let c = ALPHABET[(n % ALPHABET.len() as u64) as usize];
                n /= ALPHABET.len() as u64;
                char::from(c)
            })
            .collect()
    }
}

/// Checks a name against a resource's naming rule; the error is the reason text.
pub(crate) fn validate_name(rule: NameRule, name: &str) -> Result<(), String> {
    // Kubernetes limits a DNS-1123 label to 63 characters, but a subdomain only to 253 in all:
    // its parts are not limited one by one.
    let part_ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    };
    let label_ok = |s: &str| s.len() <= 63 && part_ok(s);
    let ok = match rule {
        NameRule::Subdomain => name.len() <= 253 && name.split('.').all(part_ok),
        NameRule::Label => label_ok(name),
        NameRule::Label1035 => {
            label_ok(name) && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        }
        NameRule::PathSegment => {
            !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '%'])
        }
    };
    if ok {
        return Ok(());
    }
    Err(match rule {
        NameRule::Subdomain => format!(
            "Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
        ),
        NameRule::Label => format!(
            "Invalid value: {name:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"
        ),
        NameRule::Label1035 => format!(
            "Invalid value: {name:?}: a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character"
        ),
        NameRule::PathSegment => format!(
            "Invalid value: {name:?}: may not be '.' or '..' and may not contain '/' or '%'"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_089), (2025, 1, 1));
    }

    #[test]
    fn names() {
        assert!(validate_name(NameRule::Subdomain, "a.b-c").is_ok());
        assert!(validate_name(NameRule::Subdomain, "A").is_err());
        assert!(validate_name(NameRule::Subdomain, "a..b").is_err());
        assert!(validate_name(NameRule::Label, "a.b").is_err());
        assert!(validate_name(NameRule::Subdomain, &"a".repeat(70)).is_ok());
        assert!(validate_name(NameRule::Subdomain, &"a".repeat(254)).is_err());
        assert!(validate_name(NameRule::Label, &"a".repeat(64)).is_err());
        assert!(validate_name(NameRule::Label1035, "1a").is_err());
        assert!(validate_name(NameRule::Label1035, "a1").is_ok());
        assert!(validate_name(NameRule::PathSegment, "system:auth-delegator").is_ok());
        assert!(validate_name(NameRule::PathSegment, "a/b").is_err());
    }

    #[test]
    fn ids_look_right() {
        let mut ids = Ids::new();
        let (a, b) = (ids.uid(), ids.uid());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        let s = ids.suffix();
        assert_eq!(s.len(), 5);
        assert!(validate_name(NameRule::Label1035, &format!("x-{s}")).is_ok());
    }
}
