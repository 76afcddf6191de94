//! A Traefik TLSOption on a filter chain's `DownstreamTlsContext`: the maximum version, cipher
//! suites, curves, ALPN, client certificates (CAs over SDS) and session tickets.

use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, DownstreamTlsContext,
    certificate_validation_context::TrustChainVerification,
    common_tls_context::{CombinedCertificateValidationContext, ValidationContextType},
    downstream_tls_context::SessionTicketKeysType,
};

use super::envoy::{bool_value, sds_secret};
use super::listeners::tls_protocol;
use crate::dag::model::TlsOptions;

/// Applies `o` to a context built with Sluice's defaults.
pub(super) fn apply(ctx: &mut DownstreamTlsContext, o: &TlsOptions) {
    let common = ctx.common_tls_context.get_or_insert_with(Default::default);
    let params = common.tls_params.get_or_insert_with(Default::default);
    if let Some(max) = o.maximum_protocol_version {
        params.tls_maximum_protocol_version = tls_protocol(max) as i32;
    }
    params.cipher_suites = o.cipher_suites.clone();
    params.ecdh_curves = o.ecdh_curves.clone();
    if let Some(alpn) = &o.alpn_protocols {
        common.alpn_protocols = alpn.clone();
    }
    if let Some(v) = &o.client_validation {
        let trust_chain_verification = if v.accept_untrusted {
            TrustChainVerification::AcceptUntrusted
        } else {
            TrustChainVerification::VerifyTrustChain
        };
        common.validation_context_type = Some(ValidationContextType::CombinedValidationContext(
            CombinedCertificateValidationContext {
                default_validation_context: Some(CertificateValidationContext {
                    trust_chain_verification: trust_chain_verification as i32,
                    ..Default::default()
                }),
                validation_context_sds_secret_config: Some(sds_secret(&v.ca_secret)),
                ..Default::default()
            },
        ));
        ctx.require_client_certificate = Some(bool_value(v.require));
    }
    if o.disable_session_tickets {
        ctx.session_ticket_keys_type = Some(
            SessionTicketKeysType::DisableStatelessSessionResumption(true),
        );
    }
}
