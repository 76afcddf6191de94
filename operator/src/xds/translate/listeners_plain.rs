//! Plain TCP on `ingress_https` (Traefik `HostSNI(`*`)` without `tls`, see
//! `dag::traefik::tcp_plain`): the catch-all's chain for the connections that are not TLS, and
//! whether the listener inspects connections at all.
//!
//! - The chain has no server names and `transport_protocol: raw_buffer`, which Envoy gives a
//!   connection when no listener filter found another protocol: with the TLS inspector, a
//!   connection whose first bytes are not a ClientHello; without it, every connection.
//! - The listener has the TLS inspector unless plain TCP is all it serves. Then nothing is
//!   read before the chain is chosen, so protocols where the server speaks first work, as on a
//!   Traefik entry point with only non-TLS TCP routers. Beside TLS chains, the inspector waits
//!   for the client's first bytes (Envoy's listener filter timeout, 15 s, then the connection
//!   is closed), as Traefik waits for them (its read timeout) on such an entry point.
//! - Adding or removing the inspector changes the listener's filters, so Envoy replaces the
//!   listener and drains its connections: only when the first TLS chain arrives beside plain
//!   TCP, or the last one leaves.

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

/// Whether `ingress_https` with the chains of `hosts` needs the TLS inspector: unless every
/// one of them is plain TCP.
pub(super) fn inspects(hosts: &[&VirtualHost]) -> bool {
    hosts.is_empty() || hosts.iter().any(|vh| !is_plain(vh))
}
