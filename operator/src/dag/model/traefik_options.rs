//! What Traefik routes add to Contour's model: what a service's options add to a cluster
//! (Traefik's active health check) and to a route (the upstream Host from the backend's
//! address, a sticky cookie), the names of the EDS assignments that carry per-endpoint
//! settings, and routes that answer directly (`allowedHosts`' 500).
//!
//! Envoy keeps the backend address Host (`auto_host_rewrite`) and the health-check port on each
//! endpoint of a load assignment, not on the cluster, and one assignment is shared by every
//! cluster of a Service port. A cluster that needs either gets an assignment of its own, named
//! after the shared one with a `/~` segment saying what its endpoints carry
//! (`apps/web/http/~host~hchost~hcport8080`); the translation reads the settings back from the name, so an
//! assignment stays a pure function of its name and addresses. Kubernetes names never hold `~`.

use serde::Serialize;

/// Marks the last segment of an EDS service name whose endpoints carry settings.
const VARIANT: &str = "/~";

/// Per-endpoint settings of an EDS assignment, written into its name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointVariant {
    /// Each endpoint's hostname is its `ip:port` (`[ip]:port` for IPv6): the Host a route with
    /// `auto_host_rewrite` sends, as Traefik does with `passHostHeader: false`.
    pub address_host: bool,
    /// Health checks carry the endpoint's `ip:port` (the health port when set) as Host.
    pub health_host: bool,
    /// Health checks go to this port instead of the endpoint's.
    pub health_port: Option<u16>,
}

impl EndpointVariant {
    /// The assignment name of `base` (the shared `namespace/service/port` name) with these
    /// settings; `base` itself when there are none.
    pub fn name(self, base: &str) -> String {
        if self == EndpointVariant::default() {
            return base.to_owned();
        }
        let mut flags = Vec::new();
        if self.address_host {
            flags.push("host".to_owned());
        }
        if self.health_host {
            flags.push("hchost".to_owned());
        }
        if let Some(port) = self.health_port {
            flags.push(format!("hcport{port}"));
        }
        format!("{base}{VARIANT}{}", flags.join("~"))
    }

    /// The settings an assignment name carries (none for a shared name).
    pub fn of(name: &str) -> EndpointVariant {
        let Some((_, flags)) = name.rsplit_once(VARIANT) else {
            return EndpointVariant::default();
        };
        let mut v = EndpointVariant::default();
        for flag in flags.split('~') {
            match flag {
                "host" => v.address_host = true,
                "hchost" => v.health_host = true,
                _ => {
                    if let Some(port) = flag.strip_prefix("hcport") {
                        v.health_port = port.parse().ok();
                    }
                }
            }
        }
        v
    }
}

/// The Host Traefik sends with `passHostHeader: false`: the server URL's host, `ip:port`.
pub fn address_host(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// Traefik's active health check of a service's servers, checked and bounded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActiveHealthCheck {
    pub path: String,
    /// The Host of the checks; empty: the backend's address, as Traefik sends.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// Upper-case; `GET` when unset.
    pub method: String,
    pub interval_ms: u64,
    /// While a server is unhealthy (Traefik's `unhealthyInterval`).
    pub unhealthy_interval_ms: u64,
    pub timeout_ms: u64,
    /// Healthy statuses: `[start, end)`.
    pub expected_statuses: (u16, u16),
    /// Lower-case names, sorted, values sent literally.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
}

/// A route that answers by itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectResponse {
    pub status: u16,
    pub body: String,
}

/// What a Traefik route adds to its forwarding action.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteServiceOptions {
    /// Send each backend's `ip:port` as Host (`passHostHeader: false`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub address_host: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sticky: Option<StickyCookie>,
}

/// A cookie that pins a client to one server of a Service (Envoy issues it and hashes on it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StickyCookie {
    pub name: String,
    pub path: String,
    /// `Max-Age` in seconds; 0: a session cookie.
    pub max_age_seconds: u64,
    /// `Secure`, `SameSite=…`, `Domain=…` (name and value; an empty value writes the name alone).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<(String, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_names_round_trip() {
        let base = "apps/web/http";
        for v in [
            EndpointVariant::default(),
            EndpointVariant {
                address_host: true,
                ..Default::default()
            },
            EndpointVariant {
                health_host: true,
                health_port: Some(8080),
                ..Default::default()
            },
            EndpointVariant {
                address_host: true,
                health_host: true,
                health_port: Some(1),
            },
        ] {
            let name = v.name(base);
            assert_eq!(EndpointVariant::of(&name), v, "{name}");
            assert!(name.starts_with(base));
        }
        assert_eq!(EndpointVariant::default().name(base), base);
        assert_eq!(
            EndpointVariant::of("apps/web/8080"),
            EndpointVariant::default()
        );
        assert_eq!(address_host("10.0.0.1", 80), "10.0.0.1:80");
        assert_eq!(address_host("fd00::1", 8080), "[fd00::1]:8080");
    }
}
