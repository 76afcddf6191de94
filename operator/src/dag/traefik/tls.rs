//! The TLS of a Traefik IngressRoute or IngressRouteTCP: its certificate (`tls.secretName`, or
//! a certificate of its namespace's `default` TLSStore, see `tls_store`) and its TLSOption
//! (`tls.options`, or its namespace's `default` TLSOption), checked and put in Envoy's terms.
//!
//! Where Traefik is global, Sluice is per namespace: a TLSOption or TLSStore named `default`
//! applies only to the Traefik routes of its own namespace, never to another tenant's hosts, and
//! a store's certificate is served only for the hosts of the routes that ask for it.

use std::collections::BTreeMap;

use super::super::build::Builder;
use super::super::checks;
use super::super::deps::Dep;
use super::super::model::{ClientValidation, Secret, SecretKind, TlsOptions, VirtualHostTls};
use super::tls_store::StoreCandidates;
use crate::api::ingressroute::{self as ir, TlsVersion};
use crate::api::traefik::routes::ObjectRef;
use crate::snapshot::{ObjKey, TraefikKind};
use crate::traefik::tls::{self as ttls, ClientAuthType, TlsOptionModel};

/// The name Traefik gives the default TLSOption and TLSStore.
pub(super) const DEFAULT: &str = "default";
/// Keys of a client CA Secret, in the order Traefik reads them.
const CA_KEYS: [&str; 2] = ["tls.ca", "ca.crt"];

/// What a route's `tls` block asks for, checked without reading other objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(in crate::dag) struct TlsRequest {
    /// A Secret of the route's namespace; `None`: the namespace's TLSStore default certificate.
    pub secret: Option<String>,
    /// A TLSOption of the route's namespace; `None`: its `default` TLSOption, when there is one.
    pub options: Option<String>,
}

/// The `tls` fields both route kinds share.
pub(in crate::dag) struct TlsFields<'a> {
    pub secret_name: Option<&'a str>,
    pub options: Option<&'a ObjectRef>,
    pub store: Option<&'a ObjectRef>,
    pub cert_resolver: Option<&'a str>,
}

/// Checks a `tls` block of a route in `namespace`; errors name the field.
pub(in crate::dag) fn request(namespace: &str, f: &TlsFields<'_>) -> Result<TlsRequest, String> {
    if f.cert_resolver.is_some() {
        return Err(
            "spec.tls.certResolver: ACME certificate resolvers are not supported by Sluice; use \
             spec.tls.secretName (a Secret cert-manager can issue)"
                .into(),
        );
    }
    // `domains` is not read: it names what a certificate resolver should request, and Traefik
    // reads it nowhere else (its ACME provider skips routers of other resolvers), so without
    // `certResolver`, refused above, it has no effect in Traefik and none here.
    if let Some(store) = f.store {
        same_namespace("spec.tls.store", namespace, store)?;
        if store.name != DEFAULT {
            return Err(format!(
                "spec.tls.store.name: {:?}: only the TLSStore named \"default\" is used, as in \
                 Traefik",
                store.name
            ));
        }
    }
    let options = match f.options {
        None => None,
        Some(r) => {
            same_namespace("spec.tls.options", namespace, r)?;
            Some(r.name.clone())
        }
    };
    let secret = match f.secret_name.map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(name) if name.contains('/') => {
            return Err(format!(
                "spec.tls.secretName: {name:?} must name a Secret of the route's namespace"
            ));
        }
        Some(name) => Some(name.to_owned()),
    };
    Ok(TlsRequest { secret, options })
}

/// A reference must stay in the route's namespace and name no provider: a namespace's TLS
/// settings are its own, even on a Gateway that sets `allowCrossNamespace`.
fn same_namespace(field: &str, namespace: &str, r: &ObjectRef) -> Result<(), String> {
    if r.name.is_empty() || r.name.contains('@') {
        return Err(format!(
            "{field}.name: {:?} must name an object of the route's namespace (name@provider \
             references do not exist in Sluice)",
            r.name
        ));
    }
    match r.namespace.as_deref().filter(|n| !n.is_empty()) {
        Some(ns) if ns != namespace => Err(format!(
            "{field}.namespace: {ns}/{} is in another namespace: TLSOptions and TLSStores are \
             per namespace in Sluice (spec.allowCrossNamespace does not extend to them)",
            r.name
        )),
        _ => Ok(()),
    }
}

impl Builder<'_> {
    /// [`Self::traefik_tls`] for each of `hosts`, with the Secrets they need. Worked out once
    /// when it cannot depend on the host (a named Secret, or passthrough): checking a Secret per
    /// host would cost a route with hundreds of hosts that many checks of one certificate.
    /// Where the namespace's TLSStore picks the certificate by name, the store is read and its
    /// certificates checked once for the route, each host picks from them, and the TLS of each
    /// certificate picked is worked out once.
    pub(in crate::dag) fn traefik_tls_per_host<'h>(
        &self,
        key: &ObjKey,
        req: &TlsRequest,
        passthrough: bool,
        http: bool,
        hosts: impl IntoIterator<Item = &'h String>,
    ) -> Result<(BTreeMap<&'h str, VirtualHostTls>, Vec<Secret>), String> {
        let mut by_host = BTreeMap::new();
        let mut secrets = Vec::new();
        let mut store: Option<StoreCandidates> = None;
        // The TLS of each certificate (Secret name) worked out so far; `None`: passthrough.
        let mut by_certificate: BTreeMap<Option<String>, VirtualHostTls> = BTreeMap::new();
        for host in hosts {
            let certificate = match (&req.secret, passthrough) {
                (_, true) => None,
                (Some(name), false) => Some((name.clone(), "spec.tls.secretName".to_owned())),
                (None, false) => {
                    let candidates = match store.take() {
                        Some(s) => s,
                        None => self.store_candidates(key)?,
                    };
                    let picked = candidates.pick(host);
                    store = Some(candidates);
                    Some(picked?)
                }
            };
            let name = certificate.as_ref().map(|(name, _)| name.clone());
            let tls = match by_certificate.get(&name) {
                Some(tls) => tls.clone(),
                None => {
                    let (tls, s) = self.traefik_tls(key, req, passthrough, http, certificate)?;
                    secrets.extend(s);
                    by_certificate.insert(name, tls.clone());
                    tls
                }
            };
            by_host.insert(host.as_str(), tls);
        }
        Ok((by_host, secrets))
    }

    /// The TLS of the Traefik route `key` (its certificate, unless `passthrough`, and its
    /// TLSOption), with the Secrets it needs; `http` says whether the filter chain serves HTTP
    /// (ALPN `h2` and `http/1.1` by default) or a TCP proxy (no ALPN unless the option names
    /// some); `certificate`: the Secret to serve and the field its errors name (`None` when
    /// passing through).
    fn traefik_tls(
        &self,
        key: &ObjKey,
        req: &TlsRequest,
        passthrough: bool,
        http: bool,
        certificate: Option<(String, String)>,
    ) -> Result<(VirtualHostTls, Vec<Secret>), String> {
        let mut secrets = Vec::new();
        if passthrough {
            if req.secret.is_some() || req.options.is_some() {
                return Err(
                    "spec.tls: passthrough forwards the TLS session as it is, so \
                            secretName and options cannot apply"
                        .into(),
                );
            }
            let tls = VirtualHostTls {
                secret: None,
                minimum_protocol_version: self.sel.minimum_tls_version.unwrap_or(TlsVersion::V1_2),
                passthrough: true,
                options: None,
            };
            return Ok((tls, secrets));
        }
        let (secret_name, field) =
            certificate.ok_or("spec.tls: no certificate (secretName or TLSStore) to serve")?;
        let spec = ir::Tls {
            secret_name: Some(secret_name),
            minimum_protocol_version: Some(TlsVersion::V1_2),
            passthrough: false,
        };
        let (mut tls, secret) = self
            .build_vhost_tls(key, &spec)
            .map_err(|e| format!("{field}: {e}"))?;
        secrets.extend(secret);
        let Some((option_key, model, explicit_alpn)) = self.tls_option(key, req)? else {
            return Ok((tls, secrets));
        };
        let at = describe_option(&option_key, req.options.is_some());
        let (min, max) = served_versions(self.sel.minimum_tls_version, &model)
            .map_err(|e| format!("{at}: {e}"))?;
        tls.minimum_protocol_version = min;
        let client_validation = self.client_validation(&option_key, &model, &at, &mut secrets)?;
        let alpn_protocols = (http || explicit_alpn).then(|| model.alpn_protocols.clone());
        tls.options = Some(Box::new(TlsOptions {
            source: option_key.to_string(),
            maximum_protocol_version: max,
            cipher_suites: model
                .cipher_suites
                .iter()
                .map(|c| (*c).to_owned())
                .collect(),
            ecdh_curves: model.ecdh_curves.iter().map(|c| (*c).to_owned()).collect(),
            alpn_protocols,
            client_validation,
            disable_session_tickets: model.disable_session_tickets,
        }));
        Ok((tls, secrets))
    }

    /// The TLSOption that applies: the one named, else the namespace's `default` one (if any),
    /// with whether it names ALPN protocols itself.
    fn tls_option(
        &self,
        key: &ObjKey,
        req: &TlsRequest,
    ) -> Result<Option<(ObjKey, TlsOptionModel, bool)>, String> {
        let name = req.options.as_deref().unwrap_or(DEFAULT);
        let option_key = ObjKey::new(key.namespace.clone(), name);
        let at = describe_option(&option_key, req.options.is_some());
        // Read even when absent: a namespace's `default` TLSOption may appear.
        self.read(Dep::Traefik(TraefikKind::TlsOption, option_key.clone()));
        let Some(obj) = self.snap.traefik_tls_options.get(&option_key) else {
            return match req.options {
                Some(_) => Err(format!("{at} not found")),
                None => Ok(None),
            };
        };
        let option = obj
            .decoded
            .as_ref()
            .map_err(|e| format!("{at} could not be read: {e}"))?;
        if let Some(field) = obj.ignored.iter().find(|f| f.starts_with("spec.")) {
            return Err(format!("{at}: {field}: field not supported by Sluice"));
        }
        let model = ttls::build(&option.spec).map_err(|e| format!("{at}: {e}"))?;
        let explicit_alpn = !option.spec.alpn_protocols.is_empty();
        Ok(Some((option_key, model, explicit_alpn)))
    }

    /// The client CAs of a TLSOption as one CA bundle, in the option's namespace.
    fn client_validation(
        &self,
        option_key: &ObjKey,
        model: &TlsOptionModel,
        at: &str,
        secrets: &mut Vec<Secret>,
    ) -> Result<Option<ClientValidation>, String> {
        let Some((require, accept_untrusted)) =
            client_auth(model).map_err(|e| format!("{at}: {e}"))?
        else {
            return Ok(None);
        };
        let mut bundle = String::new();
        for (i, name) in model.client_ca_secrets.iter().enumerate() {
            let secret_key = ObjKey::new(option_key.namespace.clone(), name.clone());
            self.read(Dep::Secret(secret_key.clone()));
            let field = format!("{at}: spec.clientAuth.secretNames[{i}]");
            let pem = CA_KEYS
                .iter()
                .find_map(|k| self.snap.secret_data(&secret_key, k))
                .ok_or_else(|| {
                    format!("{field}: Secret {secret_key} not found or has no tls.ca or ca.crt")
                })?;
            checks::ca_bundle(pem).map_err(|e| format!("{field}: Secret {secret_key}: {e}"))?;
            let pem = std::str::from_utf8(pem)
                .map_err(|_| format!("{field}: Secret {secret_key}: not UTF-8 PEM"))?;
            bundle.push_str(pem);
            if !bundle.ends_with('\n') {
                bundle.push('\n');
            }
        }
        let name = format!("{option_key}/client-ca");
        secrets.push(Secret {
            name: name.clone(),
            kind: SecretKind::Ca { ca: bundle },
        });
        Ok(Some(ClientValidation {
            ca_secret: name,
            require,
            accept_untrusted,
        }))
    }
}

/// Whether a TLSOption asks for client certificates: `(require, accept_untrusted)`, or `None`.
/// One that asks needs CA Secrets listed. Pure: part of the option's own verdict too.
pub(super) fn client_auth(model: &TlsOptionModel) -> Result<Option<(bool, bool)>, String> {
    let (require, accept_untrusted) = match model.client_auth {
        ClientAuthType::NoClientCert => return Ok(None),
        ClientAuthType::RequestClientCert => (false, true),
        ClientAuthType::RequireAnyClientCert => (true, true),
        ClientAuthType::VerifyClientCertIfGiven => (false, false),
        ClientAuthType::RequireAndVerifyClientCert => (true, false),
    };
    if model.client_ca_secrets.is_empty() {
        return Err(
            "spec.clientAuth.secretNames: Envoy asks for a client certificate only with CAs to \
             name, so this clientAuthType needs at least one CA Secret"
                .into(),
        );
    }
    Ok(Some((require, accept_untrusted)))
}

/// The minimum and maximum TLS versions a TLSOption is served with: TLS 1.0 refused, the
/// minimum raised to the Gateway's `floor`, a maximum below it refused. Pure: part of the
/// option's own verdict (`verdicts`) too.
pub(super) fn served_versions(
    floor: Option<TlsVersion>,
    model: &TlsOptionModel,
) -> Result<(TlsVersion, Option<TlsVersion>), String> {
    if model.min_version == ttls::TlsVersion::V1_0
        || model.max_version == Some(ttls::TlsVersion::V1_0)
    {
        return Err("TLS 1.0 is not served by Sluice (its lowest version is TLS 1.1)".into());
    }
    let min = ir_version(model.min_version);
    let min = match floor {
        Some(floor) if floor > min => floor,
        _ => min,
    };
    let max = model.max_version.map(ir_version);
    if let Some(max) = max
        && max < min
    {
        return Err("spec.maxVersion is below the Gateway's minimum TLS version".into());
    }
    Ok((min, max))
}

fn describe_option(key: &ObjKey, named: bool) -> String {
    if named {
        format!("spec.tls.options: TLSOption {key}")
    } else {
        format!("TLSOption {key} (the namespace's default)")
    }
}

fn ir_version(v: ttls::TlsVersion) -> TlsVersion {
    match v {
        ttls::TlsVersion::V1_0 | ttls::TlsVersion::V1_1 => TlsVersion::V1_1,
        ttls::TlsVersion::V1_2 => TlsVersion::V1_2,
        ttls::TlsVersion::V1_3 => TlsVersion::V1_3,
    }
}
