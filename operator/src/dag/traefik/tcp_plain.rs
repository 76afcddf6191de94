//! Plain TCP: an IngressRouteTCP without `tls`, Traefik's `HostSNI(`*`)` for the connections
//! that are not TLS.
//!
//! Traefik gives a connection on an entry point to its non-TLS TCP routers only when it is not
//! TLS; and when the entry point has no TLS or HTTPS router at all, it hands every connection
//! to them at once, without waiting for the client's first bytes, so that protocols where the
//! server speaks first (MySQL, SMTP) work. Otherwise it waits for those bytes (until its read
//! timeout) to tell TLS from the rest.
//!
//! Sluice serves it on the Gateway's HTTPS listener: the object claims the catch-all host `*`
//! (owned like every catch-all: one owner across dialects and listeners, the oldest keeping
//! it), served by a filter chain without server names for `transport_protocol: raw_buffer`, so
//! Envoy gives it exactly the connections its TLS inspector finds not to be TLS; `ClientIP()`
//! adds source ranges as for TLS routes (`tcp_match`). The listener always inspects, so Envoy
//! waits for the client's first bytes up to its listener filter timeout (15 s) and then closes
//! the connection, as Traefik does on an entry point with TLS routers: server-first protocols
//! are not served, even when plain TCP is all the port serves (the port is shared between
//! tenants; see `xds::translate::listeners_plain` for why).
//!
//! Refused: `HostSNI()` with a name and `ALPN()` (a connection without TLS has neither; Traefik
//! refuses such a router too).

use super::tls::TlsRequest;
use crate::traefik::tcp::{SniMatch, TcpMatch};

/// The TLS of a plain TCP route: none (a passthrough without certificate or option).
pub(super) fn request() -> TlsRequest {
    TlsRequest {
        secret: None,
        options: None,
    }
}

/// Refuses the conditions a connection without TLS cannot satisfy.
pub(super) fn check(m: &TcpMatch) -> Result<(), String> {
    match &m.sni {
        SniMatch::Any => {}
        SniMatch::Exact(name) => return Err(no_tls(&format!("HostSNI(`{name}`)"))),
        SniMatch::OneLabelUnder(parent) => {
            return Err(no_tls(&format!("HostSNI(`*.{parent}`)")));
        }
        SniMatch::Regex(_) => return Err(no_tls("HostSNIRegexp()")),
    }
    match m.alpn.first() {
        Some(alpn) => Err(no_tls(&format!("ALPN(`{alpn}`)"))),
        None => Ok(()),
    }
}

fn no_tls(part: &str) -> String {
    format!(
        "{part} needs spec.tls: a connection without TLS has no server name or ALPN; without \
         tls an IngressRouteTCP serves HostSNI(`*`) (optionally with ClientIP()), the \
         connections that are not TLS"
    )
}
