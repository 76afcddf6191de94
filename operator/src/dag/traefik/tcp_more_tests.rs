//! IngressRouteTCP `ClientIP()` and `ALPN()`: conditional filter chains of a name, only where
//! Envoy chooses as Traefik does.

use super::*;

fn branches(v: &VirtualHost) -> Vec<(Vec<String>, Vec<String>, Vec<String>)> {
    let tcp = v.tcp_proxy.as_ref().unwrap();
    tcp.branches
        .iter()
        .map(|b| {
            (
                b.alpn.clone(),
                b.sources
                    .iter()
                    .map(|s| format!("{}/{}", s.address, s.prefix_len))
                    .collect(),
                b.clusters.iter().map(|c| c.cluster.clone()).collect(),
            )
        })
        .collect()
}

#[test]
fn client_ip_and_alpn_become_conditional_chains_of_the_name() {
    let spec = concat!(
        "  routes:\n",
        "  - match: HostSNI(`a.example.com`) && (ClientIP(`127.0.0.2`) || ClientIP(`::1`))\n",
        "    services: [{name: s, port: 81}]\n",
        "  - match: HostSNI(`a.example.com`) && ALPN(`h2`)\n    priority: 1\n",
        "    services: [{name: s, port: 80, weight: 2}]\n",
        "  - match: HostSNI(`a.example.com`)\n    priority: 0\n",
        "    services: [{name: s, port: 80}]\n",
        "  tls: {passthrough: true}\n",
    );
    let dag = dag_of(&(base("apps") + &tcp_route("apps", "t", "2024-01-01T00:00:00Z", spec)));
    assert_eq!(verdict(&dag, "IngressRouteTCP", "apps/t").0, "valid");
    let v = vhost(&dag, "a.example.com");
    let got = branches(v);
    let port = |p: &str| {
        dag.clusters
            .iter()
            .find(|c| c.port.to_string() == p)
            .unwrap()
            .name
            .clone()
    };
    let h2 = vec!["h2".to_owned()];
    let nets = vec!["127.0.0.2/32".to_owned(), "::1/128".to_owned()];
    assert_eq!(
        got,
        [
            (h2.clone(), nets.clone(), vec![port("81")]),
            (h2.clone(), vec![], vec![port("80")]),
            (vec![], nets.clone(), vec![port("81")]),
        ],
        "the ALPN chains also hold the ClientIP route of higher priority"
    );
    // The unconditional chain: route 2 (route 1 needs ALPN).
    let tcp = v.tcp_proxy.as_ref().unwrap();
    assert_eq!(
        tcp.clusters.iter().map(|c| c.weight).collect::<Vec<_>>(),
        [1]
    );
}

#[test]
fn a_name_with_only_conditional_routes_has_no_unconditional_chain() {
    let spec = "  routes:\n  - match: HostSNI(`a.example.com`) && ClientIP(`10.0.0.0/8`)\n    \
                services: [{name: s, port: 80}]\n  tls: {passthrough: true}\n";
    let dag = dag_of(&(base("apps") + &tcp_route("apps", "t", "2024-01-01T00:00:00Z", spec)));
    let v = vhost(&dag, "a.example.com");
    assert!(v.tcp_proxy.as_ref().unwrap().clusters.is_empty());
    assert_eq!(branches(v).len(), 1);
}

#[test]
fn orders_envoy_would_not_follow_are_refused_naming_the_routes() {
    let spec = concat!(
        "  routes:\n",
        "  - match: HostSNI(`a.example.com`) && ClientIP(`10.0.0.0/8`)\n    priority: 5\n",
        "    services: [{name: s, port: 81}]\n",
        "  - match: HostSNI(`a.example.com`) && ClientIP(`10.1.0.0/16`)\n    priority: 5\n",
        "    services: [{name: s, port: 80}]\n",
        "  tls: {passthrough: true}\n",
    );
    let dag = dag_of(&(base("apps") + &tcp_route("apps", "t", "2024-01-01T00:00:00Z", spec)));
    let (status, description) = verdict(&dag, "IngressRouteTCP", "apps/t");
    assert_eq!(status, "invalid");
    assert!(
        description.starts_with(
            "spec.routes: host \"a.example.com\": spec.routes[0] and spec.routes[1] have the \
             same priority 5"
        ),
        "{description}"
    );
    assert!(dag.virtual_hosts.is_empty());
    // With the wider network first, the narrower one never wins in Traefik: dropped, served.
    let shadowed = spec.replacen("priority: 5", "priority: 6", 1);
    let dag = dag_of(&(base("apps") + &tcp_route("apps", "t", "2024-01-01T00:00:00Z", &shadowed)));
    assert_eq!(verdict(&dag, "IngressRouteTCP", "apps/t").0, "valid");
    let got = branches(vhost(&dag, "a.example.com"));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, ["10.0.0.0/8"]);
}

#[test]
fn too_many_networks_for_one_name_are_refused_before_envoy() {
    let nets: Vec<String> = (0..70)
        .map(|i| format!("ClientIP(`10.{i}.0.0/16`)"))
        .collect();
    let mut yaml = base("apps");
    // Two routes of 35 networks each: each rule is within its own bounds.
    for (i, chunk) in nets.chunks(35).enumerate() {
        let spec = format!(
            "  routes:\n  - match: 'HostSNI(`a{i}.example.com`) && ({})'\n    \
             services: [{{name: s, port: 80}}]\n  tls: {{passthrough: true}}\n",
            chunk.join(" || ")
        );
        yaml += &tcp_route("apps", &format!("t{i}"), "2024-01-01T00:00:00Z", &spec);
    }
    let spec = format!(
        "  routes:\n  - match: 'HostSNI(`b.example.com`) && ({})'\n    \
         services: [{{name: s, port: 80}}]\n  - match: 'HostSNI(`b.example.com`) && ({})'\n    \
         services: [{{name: s, port: 81}}]\n  tls: {{passthrough: true}}\n",
        nets[..35].join(" || "),
        nets[35..].join(" || ")
    );
    yaml += &tcp_route("apps", "big", "2024-01-01T00:00:00Z", &spec);
    let dag = dag_of(&yaml);
    assert_eq!(verdict(&dag, "IngressRouteTCP", "apps/t0").0, "valid");
    let (status, description) = verdict(&dag, "IngressRouteTCP", "apps/big");
    assert_eq!(status, "invalid");
    assert!(
        description.contains("70 ClientIP() networks, more than the 64"),
        "{description}"
    );
}

#[test]
fn another_tenant_cannot_take_a_held_name_with_a_client_ip_route() {
    let owner = "  routes:\n  - match: HostSNI(`a.example.com`)\n    \
                 services: [{name: s, port: 80}]\n  tls: {passthrough: true}\n";
    let thief = "  routes:\n  - match: HostSNI(`a.example.com`) && ClientIP(`127.0.0.0/8`)\n    \
                 priority: 1000\n    services: [{name: s, port: 80}]\n  tls: {passthrough: true}\n";
    let yaml = base("team-a")
        + &base("team-b")
        + &tcp_route("team-a", "t", "2023-01-01T00:00:00Z", owner)
        + &tcp_route("team-b", "x", "2024-01-01T00:00:00Z", thief);
    let dag = dag_of(&yaml);
    assert_eq!(
        verdict(&dag, "IngressRouteTCP", "team-b/x"),
        (
            "invalid",
            "host \"a.example.com\" is already used by the older Traefik IngressRouteTCP team-a/t"
        )
    );
    let v = vhost(&dag, "a.example.com");
    assert_eq!(v.owner, "traefik-tcp:team-a/t");
    assert!(branches(v).is_empty());
}
