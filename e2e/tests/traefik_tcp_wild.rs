//! IngressRouteTCP `HostSNI(`*`)` and `HostSNI(`*.name`)` end to end, through
//! `sluice standalone` and a real Envoy, with certificates made by the test and real sockets:
//! the wildcard terminates TLS for the names under it, the catch-all passes TLS sessions through
//! to a TLS backend (with SNI and without), and names other tenants hold (with a chain of their
//! own, over plain HTTP only, or through an invalid route) never reach either.
//!
//! Every refusal is checked after a success on the same listener, so it cannot pass merely
//! because Envoy has not got its configuration yet.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/sni_client.rs"]
mod sni_client;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde_json::json;
use sluice_e2e::backend::{Backend, TcpEchoBackend};
use sluice_e2e::manifests::{Manifests, service, tls_secret};
use sluice_e2e::sluice::Standalone;
use sluice_e2e::tls::TestCa;
use sluice_e2e::tls_session::certificates_der;
use sluice_e2e::try_wait_for;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use sni_client::{IO_TIMEOUT, connect, echoes, object, passes_through, tcp_route};

const WAIT: Duration = Duration::from_secs(30);

fn leaf_of(pem: &str) -> Vec<u8> {
    certificates_der(pem).unwrap().swap_remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_catch_all_and_wildcard_take_only_the_names_nobody_holds() {
    let ca = TestCa::new("edge ca").unwrap();
    let backend_ca = TestCa::new("backend ca").unwrap();
    let wild_cert = ca.issue(&["*.wild.example.com"]).unwrap();
    // Every name a held-name test sends, so that only Envoy's routing can refuse it.
    let all = ca
        .issue(&["c.wild.example.com", "held.wild.example.com", "broken.test"])
        .unwrap();
    let any = Backend::start_tls(
        "any",
        &backend_ca
            .issue(&[
                "other.test",
                "held.wild.example.com",
                "broken.test",
                "ip.test",
            ])
            .unwrap(),
    )
    .await
    .unwrap();
    let web = Backend::start("web").await.unwrap();
    let [wild, own, thief] = [(); 3].map(|()| TcpEchoBackend::start());
    let (wild, own, thief) = (
        wild.await.unwrap(),
        own.await.unwrap(),
        thief.await.unwrap(),
    );

    let dir = Manifests::new().unwrap();
    let mut objects = String::new();
    for (ns, name, cert) in [
        ("team-a", "wild", &wild_cert),
        ("team-c", "own", &all),
        ("evil", "all", &all),
    ] {
        objects += &format!("---\n{}", tls_secret(ns, name, cert));
    }
    for (ns, name, port) in [
        ("team-a", "any", any.port()),
        ("team-a", "wild", wild.port()),
        ("team-b", "web", web.port()),
        ("team-c", "own", own.port()),
        ("evil", "thief", thief.port()),
    ] {
        objects += &service(ns, name, 9000, &[port]);
    }
    let old = "2020-01-01T00:00:00Z";
    let mid = "2024-01-01T00:00:00Z";
    let young = "2025-01-01T00:00:00Z";
    let passthrough = json!({"passthrough": true});
    objects += &tcp_route(
        "team-a",
        "any",
        mid,
        "HostSNI(`*`)",
        "any",
        passthrough.clone(),
    );
    objects += &tcp_route(
        "team-a",
        "wild",
        mid,
        "HostSNI(`*.wild.example.com`)",
        "wild",
        json!({"secretName": "wild"}),
    );
    // Held by older claimants: a chain of its own, plain HTTP only, an invalid route.
    objects += &tcp_route(
        "team-c",
        "own",
        old,
        "HostSNI(`c.wild.example.com`)",
        "own",
        json!({"secretName": "own"}),
    );
    // Held with chains for some clients only (10.0.0.0/8): Envoy never goes back from a name's
    // chains to the catch-all.
    objects += &object(
        "IngressRouteTCP",
        "team-c",
        "some-clients",
        old,
        json!({"entryPoints": ["websecure"], "tls": {"passthrough": true},
               "routes": [{"match": "HostSNI(`ip.test`) && ClientIP(`10.0.0.0/8`)",
                           "services": [{"name": "own", "port": 9000}]}]}),
    );
    let web_route = object(
        "IngressRoute",
        "team-b",
        "web",
        old,
        json!({"entryPoints": ["web"],
               "routes": [{"match": "Host(`held.wild.example.com`)",
                           "services": [{"name": "web", "port": 9000}]}]}),
    );
    objects += &tcp_route(
        "team-b",
        "broken",
        old,
        "HostSNI(`broken.test`)",
        "missing",
        passthrough.clone(),
    );
    // A younger tenant's catch-all and wildcard: refused, the names are taken.
    objects += &tcp_route("evil", "any", young, "HostSNI(`*`)", "thief", passthrough);
    objects += &tcp_route(
        "evil",
        "wild",
        young,
        "HostSNI(`*.wild.example.com`)",
        "thief",
        json!({"secretName": "all"}),
    );
    dir.write("objects.yaml", &format!("{objects}{web_route}"))
        .unwrap();

    let mut sluice = Standalone::start(dir.path()).unwrap();
    let ports = sluice.default_instance(WAIT).await.unwrap();
    let port = ports.https;
    // The wildcard terminates with its certificate for a name under it.
    let s = try_wait_for("a TLS session for x.wild.example.com", WAIT, async || {
        sluice.check_running()?;
        Ok(connect(&ca, port, "x.wild.example.com", true).await.ok())
    })
    .await
    .unwrap();
    let served = s.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    assert_eq!(served, leaf_of(&wild_cert.cert_pem));
    drop(s);
    assert!(echoes(&ca, port, "y.wild.example.com").await);
    // Envoy connects upstream once the handshake is done: both sessions reached it.
    let wild_seen = wild.connection_count();
    assert_eq!(wild_seen, 2);
    // The catch-all passes other names through, and sessions without SNI.
    assert!(passes_through(&backend_ca, port, "other.test", true).await);
    assert!(passes_through(&backend_ca, port, "other.test", false).await);
    let snis: Vec<Option<String>> = any
        .control()
        .received()
        .into_iter()
        .map(|e| e.tls_sni)
        .collect();
    assert_eq!(snis, [Some("other.test".to_owned()), None]);

    // A held name with a chain of its own keeps it; held names without one are closed, and so
    // is a name whose chains do not take this client.
    assert!(echoes(&ca, port, "c.wild.example.com").await);
    assert_eq!(own.connection_count(), 1);
    for name in ["held.wild.example.com", "broken.test", "ip.test"] {
        assert!(!echoes(&ca, port, name).await, "{name}");
        assert!(
            !passes_through(&backend_ca, port, name, true).await,
            "{name}"
        );
    }
    // A connection that is not TLS reaches no chain.
    let mut raw = TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
        .unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\nHost: other.test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(IO_TIMEOUT, raw.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0) | Err(_))), "{read:?}");
    assert_eq!(wild.connection_count(), wild_seen);
    assert_eq!(any.control().connection_count(), 2);
    assert_eq!(thief.connection_count(), 0);

    // team-b lets held.wild.example.com go: the wildcard takes it, live.
    dir.write("objects.yaml", &objects).unwrap();
    try_wait_for(
        "the wildcard serving held.wild.example.com",
        WAIT,
        async || {
            sluice.check_running()?;
            Ok(connect(&ca, port, "held.wild.example.com", true)
                .await
                .ok()
                .map(|s| s.get_ref().1.peer_certificates().unwrap()[0].to_vec()))
            .map(|leaf| leaf.filter(|l| *l == leaf_of(&wild_cert.cert_pem)))
        },
    )
    .await
    .unwrap();
    assert!(echoes(&ca, port, "held.wild.example.com").await);
    assert!(!echoes(&ca, port, "broken.test").await);
    assert_eq!(thief.connection_count(), 0);
    sluice.check_running().unwrap();
}

/// Runs `openssl s_client` to `port` sending `sni` exactly as written (rustls drops a trailing
/// dot), sending nothing after the handshake.
fn openssl_connect(port: u16, sni: &str) {
    let out = std::process::Command::new("timeout")
        .args(["5", "openssl", "s_client", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-servername", sni])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl");
    drop(out);
}

/// A held name sent with a trailing dot (`victim.test.`, as OpenSSL-style clients may) is the
/// holder's name: Envoy compares the dot as sent, so every chain lists the name both ways, and
/// such a connection never falls through to a younger tenant's `HostSNI(`*`)` (review 7 R7.3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_name_with_a_trailing_dot_never_reaches_a_younger_catch_all() {
    let ca = TestCa::new("edge ca").unwrap();
    let cert = ca.issue(&["victim.test"]).unwrap();
    let [victim, thief] = [(); 2].map(|()| TcpEchoBackend::start());
    let (victim, thief) = (victim.await.unwrap(), thief.await.unwrap());
    let dir = Manifests::new().unwrap();
    let mut objects = format!("---\n{}", tls_secret("victim", "cert", &cert));
    objects += &service("victim", "site", 9000, &[victim.port()]);
    objects += &service("evil", "thief", 9000, &[thief.port()]);
    objects += &tcp_route(
        "victim",
        "site",
        "2020-01-01T00:00:00Z",
        "HostSNI(`victim.test`)",
        "site",
        json!({"secretName": "cert"}),
    );
    objects += &tcp_route(
        "evil",
        "all",
        "2025-01-01T00:00:00Z",
        "HostSNI(`*`)",
        "thief",
        json!({"passthrough": true}),
    );
    dir.write("objects.yaml", &objects).unwrap();
    let mut sluice = Standalone::start(dir.path()).unwrap();
    let port = sluice.default_instance(WAIT).await.unwrap().https;
    try_wait_for("victim.test echoing", WAIT, async || {
        sluice.check_running()?;
        Ok(echoes(&ca, port, "victim.test").await.then_some(()))
    })
    .await
    .unwrap();
    // The thief's chain works: an unheld name reaches it.
    openssl_connect(port, "other.test");
    assert_eq!(thief.connection_count(), 1);
    for sni in ["victim.test", "VICTIM.Test", "victim.test."] {
        openssl_connect(port, sni);
        assert_eq!(
            thief.connection_count(),
            1,
            "a TLS connection for {sni:?} was passed through to the younger tenant's catch-all"
        );
    }
}
