//! Plain TCP on `ingress_https` (Traefik `HostSNI(`*`)` without `tls`, see
//! `dag::traefik::tcp_plain`): the catch-all's chain for the connections that are not TLS.
//!
//! - The chain has no server names and `transport_protocol: raw_buffer`, which the TLS
//!   inspector gives a connection whose first bytes are not a ClientHello: TLS connections never
//!   reach it, whatever their server name (a name another tenant holds without a chain of its
//!   own is closed, not handed to plain TCP).
//! - The listener always has the TLS inspector, so it reads the client's first bytes before
//!   choosing a chain: protocols where the server speaks first (SMTP, MySQL, …) are not served
//!   (the client waits, and Envoy closes it after its listener filter timeout, 15 s), as on a
//!   Traefik entry point that also has TLS routers. Traefik skips the wait when only non-TLS
//!   routers use the entry point; Sluice does not, because the port is shared: whether it reads
//!   first would then depend on whether another tenant serves a TLS name, every such change
//!   would replace the listener (Envoy cannot change listener filters in place) and drain every
//!   tenant's connections, and without the inspector every TLS connection, for any name, would
//!   be handed to the plain TCP route.

use crate::dag::model::VirtualHost;

/// Whether `vh` is the plain TCP catch-all.
fn is_plain(vh: &VirtualHost) -> bool {
    vh.tcp_proxy.as_ref().is_some_and(|t| t.plain)
}

/// The `transport_protocol` of `vh`'s filter chains.
pub(super) fn transport_protocol(vh: &VirtualHost) -> String {
    if is_plain(vh) {
        "raw_buffer".to_owned()
    } else {
        super::listeners_hold::transport_protocol(&vh.fqdn)
    }
}
