//! Checks of tenant-written values against what Envoy accepts, so that an IngressRoute the DAG
//! calls `valid` can never make Envoy reject an instance's configuration.
//!
//! Each check mirrors a rule Envoy enforces: the protoc-gen-validate rules of its API (header
//! values without NUL/CR/LF, `sni` at most 255 bytes, non-empty health-check paths), its runtime
//! checks (the sum of route weights fits in 32 bits, durations fit its clocks, certificates parse
//! and match their key, EDS addresses are IP literals), and the hostnames Sluice decides
//! ownership on. Pure functions: they return the reason a value is refused, for the caller to put
//! into a status naming the field.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Longest DNS name (RFC 1123), in bytes, without a trailing dot.
pub const MAX_DNS_NAME: usize = 253;
/// Longest DNS label.
pub const MAX_DNS_LABEL: usize = 63;
/// Envoy's limit on an upstream TLS context's `sni` (which carries `subjectName`).
pub const MAX_SNI: usize = 255;
/// Longest path Sluice puts into a route match, a prefix rewrite or a health check.
pub const MAX_PATH: usize = 4096;
/// Longest duration accepted anywhere (timeouts): 100 years. Envoy refuses durations whose
/// nanoseconds overflow 64 bits (about 292 years); anything longer than this limit is, for an
/// HTTP request, no different from `infinity`, which is what users should write.
pub const MAX_DURATION_MS: u64 = 100 * 365 * 24 * 3600 * 1000;
/// Delegation depth: a root is level 1; an IngressRoute first reached at a deeper level is
/// invalid. Bounds both the work per change and the builder's recursion.
pub const MAX_DELEGATION_DEPTH: usize = 32;

/// A virtual host's name, lower-cased, or why it is not a DNS name.
///
/// Refused: ports (`a.example.com:8080`), a trailing dot, IP addresses, empty labels, labels
/// over 63 bytes or not made of `a-z`, `0-9` and inner `-`, and names over 253 bytes. Wildcards
/// are refused by the caller first, with Contour's message.
pub fn dns_name(fqdn: &str) -> Result<String, String> {
    if fqdn.parse::<IpAddr>().is_ok() {
        return Err("must be a DNS name, not an IP address".into());
    }
    if fqdn.ends_with('.') {
        return Err("must not end with a dot; write the name without it".into());
    }
    if fqdn.contains(':') {
        return Err("must be a host name without a port".into());
    }
    if fqdn.len() > MAX_DNS_NAME {
        return Err(format!("must be at most {MAX_DNS_NAME} bytes long"));
    }
    let lower = fqdn.to_ascii_lowercase();
    for label in lower.split('.') {
        check_dns_label(label)?;
    }
    // An all-numeric last label would make a dotted quad-like name (e.g. `1.2.3.4.5`).
    if lower
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("must not end with an all-numeric label".into());
    }
    Ok(lower)
}

fn check_dns_label(label: &str) -> Result<(), String> {
    if label.is_empty() {
        return Err("must not have empty labels".into());
    }
    if label.len() > MAX_DNS_LABEL {
        return Err(format!("labels must be at most {MAX_DNS_LABEL} bytes long"));
    }
    if !label
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(
            "labels may only contain letters a-z, digits and '-' (RFC 1123; use punycode for \
             international names)"
                .into(),
        );
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err("labels must not start or end with '-'".into());
    }
    Ok(())
}

/// A host name Envoy resolves (ExternalName targets, upstream SNI): a DNS name, trailing dot
/// already removed by the caller, or an IP literal.
pub fn resolvable_host(host: &str) -> Result<(), String> {
    if host.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    if host.len() > MAX_DNS_NAME {
        return Err(format!("must be at most {MAX_DNS_NAME} bytes long"));
    }
    host.split('.').try_for_each(check_dns_label)
}

/// A path Envoy matches or sends: starts with `/`, at most [`MAX_PATH`] bytes, and only visible
/// ASCII (no NUL, CR, LF, spaces or other control characters; non-ASCII paths travel
/// percent-encoded, so a raw one could never match).
pub fn path(value: &str) -> Result<(), String> {
    if !value.starts_with('/') {
        return Err("must start with \"/\"".into());
    }
    if value.len() > MAX_PATH {
        return Err(format!("must be at most {MAX_PATH} bytes long"));
    }
    match value.bytes().find(|b| !b.is_ascii_graphic()) {
        Some(b) => Err(format!(
            "must contain only visible ASCII characters (found byte 0x{b:02x}; percent-encode it)"
        )),
        None => Ok(()),
    }
}

/// A value Envoy puts into an HTTP header (health-check `Host`): Envoy's HTTP_HEADER_VALUE rule
/// refuses NUL, CR and LF; Sluice also refuses other control characters and non-ASCII.
pub fn header_value(value: &str) -> Result<(), String> {
    if value.len() > MAX_PATH {
        return Err(format!("must be at most {MAX_PATH} bytes long"));
    }
    match value
        .bytes()
        .find(|b| !(b.is_ascii_graphic() || *b == b' '))
    {
        Some(b) => Err(format!(
            "must contain only visible ASCII characters (found byte 0x{b:02x})"
        )),
        None => Ok(()),
    }
}

/// A name checked against a certificate's subject alternative names and sent as SNI.
pub fn subject_name(value: &str) -> Result<(), String> {
    if value.len() > MAX_SNI {
        return Err(format!(
            "must be at most {MAX_SNI} bytes long (Envoy's limit on SNI)"
        ));
    }
    match value.bytes().find(|b| !b.is_ascii_graphic()) {
        Some(b) => Err(format!(
            "must contain only visible ASCII characters (found byte 0x{b:02x})"
        )),
        None => Ok(()),
    }
}

/// A duration in milliseconds within [`MAX_DURATION_MS`].
pub fn duration_ms(ms: u64) -> Result<u64, String> {
    if ms > MAX_DURATION_MS {
        return Err("must be at most 876000h (100 years); use \"infinity\" for no timeout".into());
    }
    Ok(ms)
}

/// True when an endpoint address may be routed to. Never: unspecified, multicast, broadcast,
/// link-local (cloud metadata at 169.254.169.254) and their IPv4-mapped forms. Loopback only when
/// `allow_loopback` (a local `sluice standalone`, whose Envoy admin is not on TCP anyway).
pub fn routable_ip(ip: IpAddr, allow_loopback: bool) -> bool {
    match ip {
        IpAddr::V4(v4) => routable_v4(v4, allow_loopback),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => routable_v4(v4, allow_loopback),
            None => routable_v6(v6, allow_loopback),
        },
    }
}

/// Cloud metadata and host services reachable from every node at a fixed address: Alibaba's
/// metadata server, Azure's WireServer (AWS, GCP and Azure IMDS use 169.254.169.254, which the
/// link-local rule covers).
const METADATA_V4: [Ipv4Addr; 2] = [
    Ipv4Addr::new(100, 100, 100, 200),
    Ipv4Addr::new(168, 63, 129, 16),
];
/// AWS's IPv6 metadata server.
const METADATA_V6: [Ipv6Addr; 1] = [Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)];

/// Host names that mean the proxy's own machine or a cloud metadata server, whatever a DNS
/// server says (`/etc/hosts` of every pod names the `ip6-*` ones).
const LOCAL_OR_METADATA_NAMES: [&str; 8] = [
    "localhost",
    "localhost.localdomain",
    "ip6-localhost",
    "ip6-loopback",
    "metadata",
    "metadata.google.internal",
    "instance-data",
    "instance-data.ec2.internal",
];

/// An ExternalName target Envoy may resolve and connect to: a DNS name (checked by
/// [`resolvable_host`]) that is not a local or metadata name, or an IP literal that
/// [`routable_ip`] allows without loopback. Names are not resolved here: a DNS name that
/// resolves to a forbidden address cannot be caught, which is why ExternalName Services are off
/// unless a Gateway enables them.
pub fn external_name(host: &str) -> Result<(), String> {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return if routable_ip(ip, false) {
            Ok(())
        } else {
            Err("points at the proxy itself, a link-local or a metadata address".into())
        };
    }
    if LOCAL_OR_METADATA_NAMES.contains(&host) || host.ends_with(".localhost") {
        return Err("points at the proxy itself or a cloud metadata server".into());
    }
    resolvable_host(host)
}

fn routable_v4(ip: Ipv4Addr, allow_loopback: bool) -> bool {
    !(ip.is_unspecified()
        || METADATA_V4.contains(&ip)
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_link_local()
        || ip.octets()[0] == 0
        || (ip.is_loopback() && !allow_loopback))
}

fn routable_v6(ip: Ipv6Addr, allow_loopback: bool) -> bool {
    let seg = ip.segments();
    let first = seg[0];
    let link_local = first & 0xffc0 == 0xfe80;
    let embedded = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    // Forms that carry an IPv4 address a translator or relay may reach: NAT64 (64:ff9b::/96),
    // SIIT (::ffff:0:0/96) and 6to4 (2002::/16) are judged by that address.
    if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || seg[..6] == [0, 0, 0, 0, 0xffff, 0] {
        return routable_v4(embedded(seg[6], seg[7]), allow_loopback);
    }
    if first == 0x2002 && !routable_v4(embedded(seg[1], seg[2]), allow_loopback) {
        return false;
    }
    if METADATA_V6.contains(&ip) {
        return false;
    }
    // IPv4-compatible (deprecated, `::a.b.c.d`) forms are judged by their IPv4 address.
    if first == 0 && ip.segments()[1..6].iter().all(|s| *s == 0) && !ip.is_loopback() {
        let [a, b, c, d] = ip.octets()[12..16] else {
            return false;
        };
        return routable_v4(Ipv4Addr::new(a, b, c, d), allow_loopback);
    }
    !(ip.is_unspecified()
        || ip.is_multicast()
        || link_local
        || (ip.is_loopback() && !allow_loopback))
}

/// Checks a TLS certificate chain and private key the way Envoy loads them: every PEM block of
/// the chain is an X.509 certificate, the first one's key is RSA (2048 to 8192 bits) or ECDSA
/// (P-256, P-384), and the private key (PKCS#8, PKCS#1 or SEC1 PEM) is that key's pair.
pub fn tls_key_pair(cert_chain: &[u8], private_key: &[u8]) -> Result<(), String> {
    use sha2::{Digest, Sha256};
    // Loading a key costs tens of microseconds (ring checks it by computing its public half);
    // a thousand TLS hosts would pay that on every rebuild. The verdict depends on the bytes
    // alone, so it is remembered by their digest: the result stays a pure function of the input.
    let digest: [u8; 32] = Sha256::new()
        .chain_update((cert_chain.len() as u64).to_be_bytes())
        .chain_update(cert_chain)
        .chain_update(private_key)
        .finalize()
        .into();
    // A panic while the map was held cannot leave a wrong verdict in it (insertions are whole),
    // so a poisoned lock is used as it is.
    let verdicts = || {
        KEY_PAIR_VERDICTS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    if let Some(verdict) = verdicts().get(&digest).cloned() {
        return verdict;
    }
    let verdict = check_tls_key_pair(cert_chain, private_key);
    let mut m = verdicts();
    if m.len() >= MAX_REMEMBERED_VERDICTS {
        m.clear();
    }
    m.insert(digest, verdict.clone());
    verdict
}

/// Verdicts of [`tls_key_pair`] by the digest of its input.
type Verdicts = std::collections::HashMap<[u8; 32], Result<(), String>>;
static KEY_PAIR_VERDICTS: std::sync::LazyLock<std::sync::Mutex<Verdicts>> =
    std::sync::LazyLock::new(Default::default);
/// Bound on [`KEY_PAIR_VERDICTS`]: past it the memory starts afresh.
const MAX_REMEMBERED_VERDICTS: usize = 20_000;

fn check_tls_key_pair(cert_chain: &[u8], private_key: &[u8]) -> Result<(), String> {
    let certs = certificates(cert_chain, "tls.crt")?;
    let Some(leaf) = certs.first() else {
        return Err("tls.crt holds no certificate".into());
    };
    let (_, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| format!("tls.crt: the first certificate does not parse: {e}"))?;
    let spki_key: &[u8] = &cert.public_key().subject_public_key.data;
    let key_public = private_key_public(private_key)?;
    if key_public != spki_key {
        return Err("tls.key does not match the certificate in tls.crt".into());
    }
    Ok(())
}

/// Checks a CA bundle: at least one PEM certificate, every one of which parses.
pub fn ca_bundle(pem: &[u8]) -> Result<(), String> {
    let certs = certificates(pem, "ca.crt")?;
    if certs.is_empty() {
        return Err("ca.crt holds no certificate".into());
    }
    Ok(())
}

/// The DER of every PEM block in `pem`; each must be a CERTIFICATE that BoringSSL would load:
/// it parses as X.509 with nothing after it, its version is v1 to v3, and only v3 has
/// extensions (and v1 no unique identifiers).
fn certificates(pem: &[u8], field: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    for (i, block) in pem_blocks(pem, field)?.into_iter().enumerate() {
        let n = i + 1;
        if block.label != "CERTIFICATE" {
            return Err(format!(
                "{field}: PEM block {n} is a {:?}, not a CERTIFICATE",
                block.label
            ));
        }
        let invalid = |why: String| {
            format!("{field}: certificate {n} is not a valid X.509 certificate: {why}")
        };
        let (rest, cert) =
            x509_parser::parse_x509_certificate(&block.der).map_err(|e| invalid(e.to_string()))?;
        if !rest.is_empty() {
            return Err(invalid(format!("{} bytes after it", rest.len())));
        }
        let version = cert.version().0;
        if version > 2 {
            return Err(invalid(format!("unknown version {}", version + 1)));
        }
        if version < 2 && !cert.extensions().is_empty() {
            return Err(invalid("extensions in a certificate older than v3".into()));
        }
        if version == 0
            && (cert.tbs_certificate.issuer_uid.is_some()
                || cert.tbs_certificate.subject_uid.is_some())
        {
            return Err(invalid("unique identifiers in a v1 certificate".into()));
        }
        out.push(block.der);
    }
    Ok(out)
}

/// One PEM block: its label and decoded body.
struct PemBlock {
    label: String,
    der: Vec<u8>,
}

/// The PEM blocks of `text`, read as strictly as BoringSSL (which Envoy uses) reads them: text
/// outside blocks is ignored; a block is `-----BEGIN LABEL-----` alone on its line (trailing
/// spaces allowed), lines of base64 with no blank line and no headers, and `-----END LABEL-----`
/// with the same label.
fn pem_blocks(text: &[u8], field: &str) -> Result<Vec<PemBlock>, String> {
    use base64::Engine as _;
    let text = std::str::from_utf8(text).map_err(|_| format!("{field}: is not text"))?;
    let mut blocks = Vec::new();
    let mut lines = text
        .split('\n')
        .map(|l| l.trim_end_matches(['\r', ' ', '\t']));
    while let Some(line) = lines.next() {
        let Some(rest) = line.strip_prefix("-----BEGIN ") else {
            if line.contains("-----BEGIN") || line.contains("-----END") {
                return Err(format!("{field}: malformed PEM line {line:?}"));
            }
            continue;
        };
        let n = blocks.len() + 1;
        let label = rest
            .strip_suffix("-----")
            .filter(|l| {
                !l.is_empty()
                    && l.bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b' ')
            })
            .ok_or_else(|| format!("{field}: PEM block {n}: malformed BEGIN line {line:?}"))?;
        let end = format!("-----END {label}-----");
        let mut body = String::new();
        loop {
            let Some(l) = lines.next() else {
                return Err(format!(
                    "{field}: PEM block {n} ({label}) has no {end:?} line"
                ));
            };
            if l == end {
                break;
            }
            if l.is_empty()
                || !l
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
            {
                return Err(format!(
                    "{field}: PEM block {n} ({label}): line {l:?} is not base64 (headers, blank \
                     lines and other END lines are not accepted)"
                ));
            }
            body.push_str(l);
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(&body)
            .map_err(|e| format!("{field}: PEM block {n} ({label}): {e}"))?;
        blocks.push(PemBlock {
            label: label.to_owned(),
            der,
        });
    }
    Ok(blocks)
}

/// The public key of a PEM private key, in the form a certificate's SubjectPublicKeyInfo holds
/// it (the RSAPublicKey DER, or the uncompressed EC point), after ring has checked the key's
/// consistency as BoringSSL would.
fn private_key_public(pem: &[u8]) -> Result<Vec<u8>, String> {
    use ring::signature::{self, KeyPair};
    // openssl's `ecparam -genkey` writes the curve's parameters before the key.
    let blocks: Vec<PemBlock> = pem_blocks(pem, "tls.key")?
        .into_iter()
        .filter(|b| b.label != "EC PARAMETERS")
        .collect();
    let [block] = blocks.as_slice() else {
        return Err(format!(
            "tls.key must hold exactly one private key PEM block, not {}",
            blocks.len()
        ));
    };
    let rng = ring::rand::SystemRandom::new();
    let unsupported =
        || "tls.key: not a supported private key (RSA 2048-8192 bits, ECDSA P-256 or P-384)";
    match block.label.as_str() {
        "RSA PRIVATE KEY" => signature::RsaKeyPair::from_der(&block.der)
            .map(|k| k.public_key().as_ref().to_vec())
            .map_err(|_| unsupported().to_owned()),
        "EC PRIVATE KEY" => sec1_to_pkcs8(&block.der)
            .iter()
            .find_map(|pkcs8| ecdsa_public(pkcs8, &rng))
            .ok_or_else(|| unsupported().to_owned()),
        "PRIVATE KEY" => ecdsa_public(&block.der, &rng)
            .or_else(|| {
                signature::RsaKeyPair::from_pkcs8(&block.der)
                    .ok()
                    .map(|k| k.public_key().as_ref().to_vec())
            })
            .ok_or_else(|| unsupported().to_owned()),
        other => Err(format!(
            "tls.key: a {other:?} PEM block is not a private key (encrypted keys are not supported)"
        )),
    }
}

fn ecdsa_public(pkcs8: &[u8], rng: &ring::rand::SystemRandom) -> Option<Vec<u8>> {
    use ring::signature::{self, EcdsaKeyPair, KeyPair};
    [
        &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
    ]
    .into_iter()
    .find_map(|alg| EcdsaKeyPair::from_pkcs8(alg, pkcs8, rng).ok())
    .map(|k| k.public_key().as_ref().to_vec())
}

/// Wraps a SEC1 `ECPrivateKey` (RFC 5915) into PKCS#8 for ring, once per supported curve (ring
/// refuses the wrapping whose curve differs from the key's own parameters).
fn sec1_to_pkcs8(sec1: &[u8]) -> Vec<Vec<u8>> {
    // OIDs, DER-encoded with tag and length.
    const EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    const P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
    [P256, P384]
        .into_iter()
        .map(|curve| {
            let algorithm = der(0x30, &[EC_PUBLIC_KEY, curve].concat());
            let body = [&[0x02, 0x01, 0x00][..], &algorithm, &der(0x04, sec1)].concat();
            der(0x30, &body)
        })
        .collect()
}

/// One DER TLV with a definite length.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        assert_eq!(dns_name("A.Example.COM").as_deref(), Ok("a.example.com"));
        assert!(dns_name("xn--bcher-kva.example").is_ok());
        assert!(dns_name(&format!("{}.com", "a".repeat(63))).is_ok());
        for bad in [
            "a.example.com.",
            "a.example.com:8080",
            "127.0.0.1",
            "::1",
            "a..b",
            ".a",
            "a b.com",
            "bücher.example",
            "-a.com",
            "a-.com",
            "a_b.com",
            "a\0.com",
            "a\r\n.com",
            "1.2.3.4.5",
        ] {
            assert!(dns_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(dns_name(&format!("{}.com", "a".repeat(64))).is_err());
        let long = vec!["abcdefghi"; 26].join(".");
        assert!(long.len() > MAX_DNS_NAME);
        assert!(dns_name(&long).is_err());
    }

    #[test]
    fn paths_and_header_values() {
        assert!(path("/api/v1%20x").is_ok());
        for bad in ["api", "/a b", "/a\0", "/a\r\nX: y", "/é", ""] {
            assert!(path(bad).is_err(), "{bad:?} accepted");
        }
        assert!(path(&format!("/{}", "a".repeat(MAX_PATH))).is_err());
        assert!(header_value("example.com").is_ok());
        assert!(header_value("a\nb").is_err());
        assert!(header_value("a\0").is_err());
        assert!(subject_name(&"a".repeat(255)).is_ok());
        assert!(subject_name(&"a".repeat(256)).is_err());
        assert!(subject_name("a\0b").is_err());
    }

    #[test]
    fn durations_stay_in_envoys_range() {
        assert_eq!(duration_ms(MAX_DURATION_MS), Ok(MAX_DURATION_MS));
        assert!(duration_ms(MAX_DURATION_MS + 1).is_err());
    }

    #[test]
    fn endpoint_addresses() {
        let ok = |s: &str, lo| routable_ip(s.parse().unwrap(), lo);
        for good in ["10.0.0.1", "192.0.2.1", "2001:db8::1", "::ffff:10.0.0.1"] {
            assert!(ok(good, false), "{good}");
        }
        for bad in [
            "127.0.0.1",
            "127.9.9.9",
            "::1",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "169.254.169.254",
            "::ffff:169.254.169.254",
            "fe80::1",
            "0.0.0.0",
            "0.1.2.3",
            "::",
            "224.0.0.1",
            "ff02::1",
            "255.255.255.255",
            "100.100.100.200",
            "168.63.129.16",
            "fd00:ec2::254",
            "64:ff9b::7f00:1",
            "2002:7f00:1::1",
            "::ffff:0:7f00:1",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(!ok(bad, false), "{bad}");
        }
        assert!(ok("64:ff9b::a00:1", false));
        assert!(ok("2002:a00:1::1", false));
        for bad in [
            "localhost",
            "a.localhost",
            "ip6-localhost",
            "ip6-loopback",
            "localhost.localdomain",
            "metadata.google.internal",
            "instance-data.ec2.internal",
            "127.0.0.1",
            "::127.0.0.1",
            "::ffff:0:127.0.0.1",
            "0.0.0.1",
            "[::1]",
            "fd00:ec2::254",
            "169.254.169.254",
        ] {
            assert!(external_name(bad).is_err(), "{bad}");
        }
        for good in [
            "example.com",
            "10.0.0.1",
            "2001:db8::1",
            "localhost.example.com",
        ] {
            assert_eq!(external_name(good), Ok(()), "{good}");
        }
        assert!(ok("127.0.0.1", true));
        assert!(ok("::1", true));
        assert!(!ok("169.254.169.254", true));
    }

    fn pair(alg: &'static rcgen::SignatureAlgorithm) -> (String, String) {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["a.example.com".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn tls_pairs_must_parse_and_match() {
        let (cert, key) = pair(&rcgen::PKCS_ECDSA_P256_SHA256);
        assert_eq!(tls_key_pair(cert.as_bytes(), key.as_bytes()), Ok(()));
        let (cert384, key384) = pair(&rcgen::PKCS_ECDSA_P384_SHA384);
        assert_eq!(tls_key_pair(cert384.as_bytes(), key384.as_bytes()), Ok(()));
        let (other_cert, other_key) = pair(&rcgen::PKCS_ECDSA_P256_SHA256);
        assert!(
            tls_key_pair(cert.as_bytes(), other_key.as_bytes())
                .unwrap_err()
                .contains("does not match")
        );
        assert!(tls_key_pair(other_cert.as_bytes(), key384.as_bytes()).is_err());
        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(tls_key_pair(garbage.as_bytes(), key.as_bytes()).is_err());
        assert!(tls_key_pair(b"", key.as_bytes()).is_err());
        assert!(tls_key_pair(cert.as_bytes(), b"").is_err());
        let ed = pair(&rcgen::PKCS_ED25519);
        assert!(tls_key_pair(ed.0.as_bytes(), ed.1.as_bytes()).is_err());
        // A chain: leaf first, then more certificates that all parse.
        let chain = format!("{cert}{other_cert}");
        assert_eq!(tls_key_pair(chain.as_bytes(), key.as_bytes()), Ok(()));
        let bad_chain = format!("{cert}{garbage}");
        assert!(tls_key_pair(bad_chain.as_bytes(), key.as_bytes()).is_err());
        assert_eq!(ca_bundle(cert.as_bytes()), Ok(()));
        assert!(ca_bundle(garbage.as_bytes()).is_err());
        assert!(ca_bundle(b"no pem here").is_err());
    }

    #[test]
    fn sec1_keys_cut_from_pkcs8_load() {
        // A SEC1 key (`EC PRIVATE KEY`, as openssl and cert-manager write them), cut out of the
        // PKCS#8 that rcgen makes.
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let pkcs8 = key.serialize_der();
        // PKCS#8 for EC is SEQ { 0, algId, OCTET STRING { ECPrivateKey } }: take the inner one.
        let (_, info) = x509_parser::der_parser::parse_der(&pkcs8).unwrap();
        let seq = info.as_sequence().unwrap();
        let sec1 = seq[2].as_slice().unwrap();
        let sec1_pem = format!(
            "-----BEGIN EC PRIVATE KEY-----\n{}\n-----END EC PRIVATE KEY-----\n",
            base64_lines(sec1)
        );
        assert_eq!(
            private_key_public(sec1_pem.as_bytes()).as_deref(),
            Ok(key.public_key_raw())
        );
    }

    /// The header and content lengths of the DER element at the start of `der`.
    fn der_header(der: &[u8]) -> (usize, usize) {
        match der[1] {
            n if n < 0x80 => (2, usize::from(n)),
            0x81 => (3, usize::from(der[2])),
            0x82 => (4, (usize::from(der[2]) << 8) | usize::from(der[3])),
            n => panic!("unexpected DER length byte {n:#x}"),
        }
    }

    /// Splits the first DER element off `der`: (the element, what follows it).
    fn der_element(der: &[u8]) -> (&[u8], &[u8]) {
        let (header, len) = der_header(der);
        der.split_at(header + len)
    }

    /// A P-256 key as `openssl ecparam -name prime256v1 -genkey -noout` writes it: SEC1
    /// (`EC PRIVATE KEY`) naming its curve in `[0] parameters`, a field the SEC1 key inside
    /// PKCS#8 leaves out. Made from rcgen's PKCS#8 by adding that field.
    fn openssl_style_sec1(key: &rcgen::KeyPair) -> String {
        // [0] { OID 1.2.840.10045.3.1.7 (prime256v1) }
        const PARAMETERS: [u8; 12] = [
            0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
        ];
        let pkcs8 = key.serialize_der();
        let (_, info) = x509_parser::der_parser::parse_der(&pkcs8).unwrap();
        let sec1 = info.as_sequence().unwrap()[2].as_slice().unwrap();
        let (header, _) = der_header(sec1);
        // SEQ { version, privateKey, [1] publicKey }
        let (version, rest) = der_element(&sec1[header..]);
        let (private, public) = der_element(rest);
        assert_eq!(public.first(), Some(&0xa1), "expected [1] publicKey next");
        let body = [version, private, &PARAMETERS, public].concat();
        let mut der = vec![0x30];
        match u8::try_from(body.len()).unwrap() {
            n if n < 0x80 => der.push(n),
            n => der.extend([0x81, n]),
        }
        der.extend_from_slice(&body);
        format!(
            "-----BEGIN EC PRIVATE KEY-----\n{}\n-----END EC PRIVATE KEY-----\n",
            base64_lines(&der)
        )
    }

    /// EC keys as openssl writes them by default for `ecparam -genkey` (SEC1 naming its curve,
    /// after an `EC PARAMETERS` block unless `-noout`), which cert-manager and older tooling
    /// also produce. Made with rcgen.
    #[test]
    fn openssl_style_sec1_keys() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["a.example.com".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap()
            .pem();
        let sec1 = openssl_style_sec1(&key);
        assert_eq!(tls_key_pair(cert.as_bytes(), sec1.as_bytes()), Ok(()));
        let with_parameters = format!(
            "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n{sec1}"
        );
        assert_eq!(
            tls_key_pair(cert.as_bytes(), with_parameters.as_bytes()),
            Ok(())
        );
        let (other_cert, _) = pair(&rcgen::PKCS_ECDSA_P256_SHA256);
        assert!(tls_key_pair(other_cert.as_bytes(), sec1.as_bytes()).is_err());
    }

    /// RSA keys as openssl writes them for `genrsa -traditional` (PKCS#1). Made with openssl:
    /// rcgen's ring backend cannot generate RSA keys (ring has no RSA key generation).
    #[test]
    fn openssl_pkcs1_rsa_keys() {
        let dir = tempfile::tempdir().unwrap();
        let openssl = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("openssl (Debian's openssl package) is needed by this test");
            assert!(out.status.success(), "openssl {args:?}: {out:?}");
        };
        let self_signed = |key: &str, cert: &str| {
            openssl(&[
                "req", "-new", "-x509", "-days", "1", "-subj", "/CN=a", "-key", key, "-out", cert,
            ]);
        };
        openssl(&["genrsa", "-traditional", "-out", "rsa.key", "2048"]);
        self_signed("rsa.key", "rsa.crt");
        let read = |f: &str| std::fs::read(dir.path().join(f)).unwrap();
        assert!(
            String::from_utf8(read("rsa.key"))
                .unwrap()
                .contains("BEGIN RSA PRIVATE KEY")
        );
        assert_eq!(tls_key_pair(&read("rsa.crt"), &read("rsa.key")), Ok(()));
        let (ec_cert, ec_key) = pair(&rcgen::PKCS_ECDSA_P256_SHA256);
        assert!(tls_key_pair(&read("rsa.crt"), ec_key.as_bytes()).is_err());
        assert!(tls_key_pair(ec_cert.as_bytes(), &read("rsa.key")).is_err());
        // RSA below 2048 bits: Envoy refuses it, so does the check.
        openssl(&["genrsa", "-traditional", "-out", "small.key", "1024"]);
        self_signed("small.key", "small.crt");
        assert!(tls_key_pair(&read("small.crt"), &read("small.key")).is_err());
    }

    fn base64_lines(der: &[u8]) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in der.chunks(3) {
            let n =
                chunk.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}
