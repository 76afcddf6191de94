//! A Traefik ServersTransport's options on a cluster (see `dag::traefik::transport`): the
//! connect timeout, the upstream connections' idle timeout and reuse, and the client
//! certificate sent to a TLS backend (over SDS, as every certificate).

use std::collections::HashMap;

use envoy_types::pb::envoy::config::cluster::v3::Cluster as EnvoyCluster;
use envoy_types::pb::envoy::config::core::v3::{
    Http1ProtocolOptions, HttpProtocolOptions as CommonHttpProtocolOptions,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions as UpstreamHttpProtocolOptions, http_protocol_options,
};

use super::envoy::{any, millis, sds_secret, u32_value};
use crate::dag::model::{Cluster, UpstreamProtocol};

const HTTP_PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/// Sets the connect timeout and the upstream connections' idle timeout and reuse.
pub(super) fn cluster(c: &Cluster, envoy: &mut EnvoyCluster) {
    let Some(t) = c.transport.as_deref() else {
        return;
    };
    if let Some(ms) = t.connect_timeout_ms {
        envoy.connect_timeout = Some(millis(ms));
    }
    if t.idle_timeout_ms.is_none() && !t.one_request_per_connection {
        return;
    }
    let mut options = match c.protocol {
        UpstreamProtocol::H2 | UpstreamProtocol::H2c => super::clusters::http2_protocol_options(),
        UpstreamProtocol::Http1 | UpstreamProtocol::Tls => http1_protocol_options(),
    };
    options.common_http_protocol_options = Some(CommonHttpProtocolOptions {
        // Zero: no idle timeout, as Traefik's 0.
        idle_timeout: t.idle_timeout_ms.map(millis),
        max_requests_per_connection: t.one_request_per_connection.then(|| u32_value(1)),
        ..Default::default()
    });
    envoy.typed_extension_protocol_options =
        HashMap::from([(HTTP_PROTOCOL_OPTIONS.to_owned(), any(&options))]);
}

/// Adds the client certificate to the upstream TLS context.
pub(super) fn tls(c: &Cluster, context: &mut UpstreamTlsContext) {
    let Some(t) = c.transport.as_deref() else {
        return;
    };
    // `insecureSkipVerify`: no validation context (any certificate), `serverName` as SNI.
    if let (None, Some(sni)) = (&c.validation, &t.unverified_sni) {
        context.sni.clone_from(sni);
    }
    let Some(name) = t.client_certificate.as_deref() else {
        return;
    };
    if let Some(common) = context.common_tls_context.as_mut() {
        common.tls_certificate_sds_secret_configs = vec![sds_secret(name)];
    }
}

fn http1_protocol_options() -> UpstreamHttpProtocolOptions {
    use http_protocol_options::explicit_http_config::ProtocolConfig;
    UpstreamHttpProtocolOptions {
        upstream_protocol_options: Some(
            http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(
                http_protocol_options::ExplicitHttpConfig {
                    protocol_config: Some(ProtocolConfig::HttpProtocolOptions(
                        Http1ProtocolOptions::default(),
                    )),
                },
            ),
        ),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType;
    use envoy_types::pb::google::protobuf::Any;
    use prost::{Message, Name};

    use super::super::clusters::cluster;
    use super::super::fixture::{eds_cluster, with_protocol, with_validation};
    use super::*;
    use crate::dag::model::transport::TransportOptions;

    fn unpack<T: Message + Name + Default>(any: &Any) -> T {
        assert_eq!(any.type_url, T::type_url());
        T::decode(any.value.as_slice()).unwrap()
    }

    fn protocol_options(c: &EnvoyCluster) -> UpstreamHttpProtocolOptions {
        unpack(&c.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS])
    }

    fn tls_context(c: &EnvoyCluster) -> UpstreamTlsContext {
        match c
            .transport_socket
            .as_ref()
            .and_then(|t| t.config_type.as_ref())
        {
            Some(ConfigType::TypedConfig(any)) => unpack(any),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn options_set_timeouts_reuse_and_the_client_certificate() {
        let mut c = with_validation(
            with_protocol(eds_cluster("s", 443), UpstreamProtocol::Tls),
            "backend.internal",
        );
        let plain = cluster(&c);
        assert!(plain.typed_extension_protocol_options.is_empty());
        assert!(
            tls_context(&plain)
                .common_tls_context
                .unwrap()
                .tls_certificate_sds_secret_configs
                .is_empty()
        );
        c.transport = Some(Box::new(TransportOptions {
            connect_timeout_ms: Some(2500),
            idle_timeout_ms: Some(0),
            one_request_per_connection: true,
            client_certificate: Some("apps/client".to_owned()),
            unverified_sni: None,
        }));
        let envoy = cluster(&c);
        assert_eq!(envoy.connect_timeout, Some(millis(2500)));
        let common = protocol_options(&envoy)
            .common_http_protocol_options
            .unwrap();
        assert_eq!(common.idle_timeout, Some(millis(0)));
        assert_eq!(common.max_requests_per_connection, Some(u32_value(1)));
        assert_eq!(protocol_options(&envoy), {
            let mut expected = http1_protocol_options();
            expected.common_http_protocol_options = Some(common);
            expected
        });
        let tls = tls_context(&envoy).common_tls_context.unwrap();
        assert_eq!(
            tls.tls_certificate_sds_secret_configs,
            [sds_secret("apps/client")]
        );
        // The backend's certificate is still checked.
        assert!(tls.validation_context_type.is_some());

        // insecureSkipVerify: no validation context, the transport's serverName as SNI.
        let mut skip = with_protocol(eds_cluster("s", 443), UpstreamProtocol::Tls);
        skip.transport = Some(Box::new(TransportOptions {
            unverified_sni: Some("backend.internal".to_owned()),
            ..TransportOptions::default()
        }));
        let context = tls_context(&cluster(&skip));
        assert_eq!(context.sni, "backend.internal");
        assert!(
            context
                .common_tls_context
                .unwrap()
                .validation_context_type
                .is_none()
        );

        // h2c keeps HTTP/2 and adds the idle timeout; unset fields stay Envoy's.
        let mut h2c = with_protocol(eds_cluster("s", 80), UpstreamProtocol::H2c);
        h2c.transport = Some(Box::new(TransportOptions {
            idle_timeout_ms: Some(90_000),
            ..TransportOptions::default()
        }));
        let envoy = cluster(&h2c);
        let options = protocol_options(&envoy);
        let mut expected = super::super::clusters::http2_protocol_options();
        expected.common_http_protocol_options = Some(CommonHttpProtocolOptions {
            idle_timeout: Some(millis(90_000)),
            ..Default::default()
        });
        assert_eq!(options, expected);
        assert_eq!(
            envoy.connect_timeout,
            cluster(&eds_cluster("s", 80)).connect_timeout
        );
        assert!(envoy.transport_socket.is_none());
    }
}
