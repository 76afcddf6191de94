//! Names and label values derived from a Gateway's name.
//!
//! A Gateway's name is a DNS subdomain (up to 253 characters, may contain `.`), but the objects
//! provisioned for it need DNS-1035 labels (a Service name: at most 63 characters, `[a-z0-9-]`,
//! starting with a letter) and label values (at most 63 characters). When `<gateway>-<suffix>`
//! does not fit, the name is shortened and a hash of the full Gateway name keeps it unique.

use sha2::{Digest, Sha256};

/// Kubernetes' limit for a DNS-1035 label and for a label value.
pub const MAX_LABEL_LEN: usize = 63;

/// Length of the hash inserted into shortened names.
const HASH_LEN: usize = 8;

/// First [`HASH_LEN`] hex digits of the SHA-256 of `s`.
fn short_hash(s: &str) -> String {
    let mut hex = sha256_hex(s.as_bytes());
    hex.truncate(HASH_LEN);
    hex
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn is_dns1035_label(s: &str) -> bool {
    s.len() <= MAX_LABEL_LEN
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Name of an object provisioned for Gateway `gateway`: `<gateway>-<suffix>` when that is a valid
/// DNS-1035 label, else `<shortened gateway>-<hash>-<suffix>`. `suffix` must itself be a short
/// lowercase label (our own constants).
pub fn object_name(gateway: &str, suffix: &str) -> String {
    let plain = format!("{gateway}-{suffix}");
    if is_dns1035_label(&plain) {
        return plain;
    }
    let hash = short_hash(gateway);
    let mut base: String = gateway
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    if !base.starts_with(|c: char| c.is_ascii_lowercase()) {
        base.insert(0, 'g');
    }
    let budget = MAX_LABEL_LEN.saturating_sub(suffix.len() + HASH_LEN + 2);
    base.truncate(budget);
    let base = base.trim_end_matches('-');
    format!("{base}-{hash}-{suffix}")
}

/// A label value naming the Gateway: its name when it fits, else a shortened name and a hash.
/// Gateway names are DNS subdomains, whose characters are all valid in label values.
pub fn label_value(gateway: &str) -> String {
    if gateway.len() <= MAX_LABEL_LEN {
        return gateway.to_owned();
    }
    let keep = MAX_LABEL_LEN - HASH_LEN - 1;
    let base: String = gateway.chars().take(keep).collect();
    format!("{base}-{}", short_hash(gateway))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_kept() {
        assert_eq!(object_name("gw", "envoy"), "gw-envoy");
        assert_eq!(label_value("gw"), "gw");
    }

    #[test]
    fn long_names_are_truncated_with_a_hash_and_stay_unique() {
        let a = "a".repeat(60);
        let b = format!("{}b", "a".repeat(59));
        let na = object_name(&a, "envoy-bootstrap");
        let nb = object_name(&b, "envoy-bootstrap");
        assert_eq!(na.len(), MAX_LABEL_LEN);
        assert!(is_dns1035_label(&na), "{na}");
        assert!(na.ends_with("-envoy-bootstrap"), "{na}");
        assert_ne!(na, nb);
        // Exactly at the limit: unchanged.
        let fits = "c".repeat(MAX_LABEL_LEN - "-envoy".len());
        assert_eq!(object_name(&fits, "envoy"), format!("{fits}-envoy"));
        let over = "c".repeat(MAX_LABEL_LEN - "-envoy".len() + 1);
        assert_ne!(object_name(&over, "envoy"), format!("{over}-envoy"));
        assert!(object_name(&over, "envoy").len() <= MAX_LABEL_LEN);
    }

    #[test]
    fn names_invalid_as_dns1035_labels_are_rewritten() {
        let dotted = object_name("edge.team-a", "envoy");
        assert!(is_dns1035_label(&dotted), "{dotted}");
        assert!(dotted.starts_with("edge-team-a-"), "{dotted}");
        // `edge-team-a` itself is valid and must not collide with the dotted name.
        assert_ne!(dotted, object_name("edge-team-a", "envoy"));
        let digit = object_name("1gw", "envoy");
        assert!(is_dns1035_label(&digit), "{digit}");
    }

    #[test]
    fn long_label_values_are_truncated_with_a_hash() {
        let long = format!("{}.example", "x".repeat(100));
        let v = label_value(&long);
        assert_eq!(v.len(), MAX_LABEL_LEN);
        assert_ne!(v, label_value(&format!("{}.example2", "x".repeat(100))));
        assert!(v.ends_with(|c: char| c.is_ascii_alphanumeric()));
    }
}
