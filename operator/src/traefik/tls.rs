//! TLSOption as a checked model with Envoy's names: versions, cipher suites (Go names mapped to
//! BoringSSL's), curves, ALPN, client authentication. Which hosts an option applies to (the
//! `default` option per namespace, conflicts) is the wiring's job.

use crate::api::traefik::TLSOptionSpec;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    V1_0,
    V1_1,
    V1_2,
    V1_3,
}

impl TlsVersion {
    fn parse(field: &str, v: &str) -> Result<TlsVersion, String> {
        match v {
            "VersionTLS10" => Ok(TlsVersion::V1_0),
            "VersionTLS11" => Ok(TlsVersion::V1_1),
            "VersionTLS12" => Ok(TlsVersion::V1_2),
            "VersionTLS13" => Ok(TlsVersion::V1_3),
            other => Err(format!(
                "{field}: {other:?} must be VersionTLS10, VersionTLS11, VersionTLS12 or VersionTLS13"
            )),
        }
    }

    /// Envoy's `TlsParameters.TlsProtocol` name.
    pub fn envoy(self) -> &'static str {
        match self {
            TlsVersion::V1_0 => "TLSv1_0",
            TlsVersion::V1_1 => "TLSv1_1",
            TlsVersion::V1_2 => "TLSv1_2",
            TlsVersion::V1_3 => "TLSv1_3",
        }
    }
}

/// How client certificates are asked for and checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuthType {
    NoClientCert,
    RequestClientCert,
    RequireAnyClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsOptionModel {
    pub min_version: TlsVersion,
    pub max_version: Option<TlsVersion>,
    /// BoringSSL names, in the given order; empty means Envoy's defaults.
    pub cipher_suites: Vec<&'static str>,
    /// Envoy `ecdh_curves` names; empty means Envoy's defaults.
    pub ecdh_curves: Vec<&'static str>,
    pub alpn_protocols: Vec<String>,
    pub client_auth: ClientAuthType,
    /// Secrets (in the TLSOption's namespace) holding the client CAs.
    pub client_ca_secrets: Vec<String>,
    pub sni_strict: bool,
    pub disable_session_tickets: bool,
}

/// Go's TLS 1.2-and-below suite names and BoringSSL's. TLS 1.3 suites are configurable in
/// neither Go nor Envoy; naming them has no effect in Traefik and none here.
const CIPHERS: &[(&str, &str)] = &[
    ("TLS_RSA_WITH_AES_128_CBC_SHA", "AES128-SHA"),
    ("TLS_RSA_WITH_AES_256_CBC_SHA", "AES256-SHA"),
    ("TLS_RSA_WITH_AES_128_GCM_SHA256", "AES128-GCM-SHA256"),
    ("TLS_RSA_WITH_AES_256_GCM_SHA384", "AES256-GCM-SHA384"),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
        "ECDHE-ECDSA-AES128-SHA",
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
        "ECDHE-ECDSA-AES256-SHA",
    ),
    ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "ECDHE-RSA-AES128-SHA"),
    ("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", "ECDHE-RSA-AES256-SHA"),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        "ECDHE-RSA-CHACHA20-POLY1305",
    ),
];
const TLS13_CIPHERS: &[&str] = &[
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];
const CURVES: &[(&str, &str)] = &[
    ("CurveP256", "P-256"),
    ("secp256r1", "P-256"),
    ("CurveP384", "P-384"),
    ("secp384r1", "P-384"),
    ("CurveP521", "P-521"),
    ("secp521r1", "P-521"),
    ("X25519", "X25519"),
    ("x25519", "X25519"),
    ("X25519MLKEM768", "X25519MLKEM768"),
];

pub fn build(spec: &TLSOptionSpec) -> Result<TlsOptionModel, String> {
    let min_version = match spec.min_version.as_deref().filter(|v| !v.is_empty()) {
        None => TlsVersion::V1_2,
        Some(v) => TlsVersion::parse("spec.minVersion", v)?,
    };
    let max_version = spec
        .max_version
        .as_deref()
        .filter(|v| !v.is_empty())
        .map(|v| TlsVersion::parse("spec.maxVersion", v))
        .transpose()?;
    if max_version.is_some_and(|max| max < min_version) {
        return Err("spec.maxVersion: below minVersion".into());
    }
    let mut cipher_suites = Vec::new();
    for (i, c) in spec.cipher_suites.iter().enumerate() {
        if TLS13_CIPHERS.contains(&c.as_str()) {
            continue;
        }
        let Some((_, boring)) = CIPHERS.iter().find(|(go, _)| go == c) else {
            return Err(format!(
                "spec.cipherSuites[{i}]: {c:?} is not a cipher suite Envoy offers (RC4, 3DES \
                 and CBC-SHA256 suites are not)"
            ));
        };
        if !cipher_suites.contains(boring) {
            cipher_suites.push(*boring);
        }
    }
    let mut ecdh_curves = Vec::new();
    for (i, c) in spec.curve_preferences.iter().enumerate() {
        let Some((_, envoy)) = CURVES.iter().find(|(go, _)| go == c) else {
            return Err(format!(
                "spec.curvePreferences[{i}]: {c:?} is not a curve Envoy offers"
            ));
        };
        if !ecdh_curves.contains(envoy) {
            ecdh_curves.push(*envoy);
        }
    }
    let mut alpn_protocols = Vec::new();
    let given: Vec<String> = if spec.alpn_protocols.is_empty() {
        vec!["h2".into(), "http/1.1".into()]
    } else {
        spec.alpn_protocols.clone()
    };
    for (i, p) in given.into_iter().enumerate() {
        // Sluice has no ACME: Traefik's TLS-ALPN-01 protocol has nothing to answer.
        if p == "acme-tls/1" {
            continue;
        }
        if p.is_empty() || p.len() > 255 || !p.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "spec.alpnProtocols[{i}]: {p:?} is not a protocol name"
            ));
        }
        alpn_protocols.push(p);
    }
    let auth = spec.client_auth.clone().unwrap_or_default();
    let client_ca_secrets: Vec<String> = auth.secret_names.clone();
    if let Some((i, _)) = client_ca_secrets
        .iter()
        .enumerate()
        .find(|(_, s)| s.is_empty())
    {
        return Err(format!(
            "spec.clientAuth.secretNames[{i}]: must not be empty"
        ));
    }
    let client_auth = match auth.client_auth_type.as_deref().filter(|t| !t.is_empty()) {
        None if client_ca_secrets.is_empty() => ClientAuthType::NoClientCert,
        None => ClientAuthType::RequireAndVerifyClientCert,
        Some("NoClientCert") => ClientAuthType::NoClientCert,
        Some("RequestClientCert") => ClientAuthType::RequestClientCert,
        Some("RequireAnyClientCert") => ClientAuthType::RequireAnyClientCert,
        Some("VerifyClientCertIfGiven") => ClientAuthType::VerifyClientCertIfGiven,
        Some("RequireAndVerifyClientCert") => ClientAuthType::RequireAndVerifyClientCert,
        Some(other) => {
            return Err(format!(
                "spec.clientAuth.clientAuthType: {other:?} is not a client auth type"
            ));
        }
    };
    if matches!(
        client_auth,
        ClientAuthType::VerifyClientCertIfGiven | ClientAuthType::RequireAndVerifyClientCert
    ) && client_ca_secrets.is_empty()
    {
        return Err("spec.clientAuth.secretNames: verifying client certificates needs a CA".into());
    }
    Ok(TlsOptionModel {
        min_version,
        max_version,
        cipher_suites,
        ecdh_curves,
        alpn_protocols,
        client_auth,
        client_ca_secrets,
        sni_strict: spec.sni_strict.unwrap_or(false),
        disable_session_tickets: spec.disable_session_tickets.unwrap_or(false),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn model(v: serde_json::Value) -> Result<TlsOptionModel, String> {
        build(&serde_json::from_value(v).unwrap())
    }

    #[test]
    fn names_map_to_envoys() {
        let m = model(json!({
            "minVersion": "VersionTLS12", "maxVersion": "VersionTLS13",
            "cipherSuites": ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256",
                             "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"],
            "curvePreferences": ["CurveP521", "x25519", "X25519"],
            "alpnProtocols": ["h2", "acme-tls/1"],
            "clientAuth": {"secretNames": ["ca"]}, "sniStrict": true
        }))
        .unwrap();
        assert_eq!(
            m.cipher_suites,
            ["ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-CHACHA20-POLY1305"]
        );
        assert_eq!(m.ecdh_curves, ["P-521", "X25519"]);
        assert_eq!(m.alpn_protocols, ["h2"]);
        assert_eq!(m.client_auth, ClientAuthType::RequireAndVerifyClientCert);
        assert_eq!(
            (m.min_version.envoy(), m.max_version.unwrap().envoy()),
            ("TLSv1_2", "TLSv1_3")
        );
        let d = model(json!({})).unwrap();
        assert_eq!(
            (d.min_version, d.client_auth),
            (TlsVersion::V1_2, ClientAuthType::NoClientCert)
        );
        assert_eq!(d.alpn_protocols, ["h2", "http/1.1"]);
    }

    #[test]
    fn bad_values_name_the_field() {
        for (v, want) in [
            (json!({"minVersion": "TLS1.2"}), "spec.minVersion"),
            (
                json!({"minVersion": "VersionTLS13", "maxVersion": "VersionTLS12"}),
                "below",
            ),
            (
                json!({"cipherSuites": ["TLS_RSA_WITH_RC4_128_SHA"]}),
                "spec.cipherSuites[0]",
            ),
            (
                json!({"curvePreferences": ["P-256"]}),
                "spec.curvePreferences[0]",
            ),
            (
                json!({"clientAuth": {"clientAuthType": "VerifyClientCertIfGiven"}}),
                "needs a CA",
            ),
            (
                json!({"clientAuth": {"clientAuthType": "Maybe", "secretNames": ["a"]}}),
                "clientAuthType",
            ),
        ] {
            let e = model(v.clone()).unwrap_err();
            assert!(e.contains(want), "{v}: {e}");
        }
    }
}
