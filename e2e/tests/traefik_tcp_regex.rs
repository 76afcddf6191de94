//! IngressRouteTCP `HostSNIRegexp()` end to end, through `sluice standalone` and a real Envoy,
//! with certificates made by the test and real sockets: a pattern proved to stay one label under
//! `db.example.com` claims `*.db.example.com` and terminates TLS for the names it matches; a
//! pattern that could match anything claims the catch-all and passes TLS sessions through; a
//! name neither pattern matches is closed before any backend sees a connection; names another
//! tenant holds under the same parent never reach the pattern's route; and hostile patterns
//! never make Envoy refuse the configuration (each one is proved served by a probe name).
//!
//! Every refusal is checked after a success on the same listener, so it cannot pass merely
//! because Envoy has not got its configuration yet.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/sni_client.rs"]
mod sni_client;

use std::time::Duration;

use serde_json::json;
use sluice_e2e::backend::{Backend, TcpEchoBackend};
use sluice_e2e::manifests::{Manifests, service, tls_secret};
use sluice_e2e::sluice::Standalone;
use sluice_e2e::tls::TestCa;
use sluice_e2e::try_wait_for;

use sni_client::{echoes, object, passes_through, tcp_route};

const WAIT: Duration = Duration::from_secs(30);
const OLD: &str = "2020-01-01T00:00:00Z";
const MID: &str = "2024-01-01T00:00:00Z";
const YOUNG: &str = "2025-01-01T00:00:00Z";

/// Patterns a tenant may write that stress Envoy's RE2 (size, case folding, Unicode classes,
/// patterns that are exponential for a backtracking engine, anchors, the empty name).
const HOSTILE: &[&str] = &[
    ".*",
    "(a*)*b",
    "(?i)[a-z]+\\.EXAMPLE\\.com",
    "\\pL+\\p{Greek}*\\pN",
    "[\\x{80}-\\x{FF}]+",
    "a{1000}",
    "(?i)(?:x[0-9]{0,9}){20}",
    "^$",
    "(?m)^x$|\\bq\\B",
    "[[:^alpha:]]{2,5}(?s:.)",
    "(?U)a+?b*",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_sni_regexp_serves_the_names_it_matches_and_never_anothers() {
    let ca = TestCa::new("edge ca").unwrap();
    let backend_ca = TestCa::new("backend ca").unwrap();
    let db_cert = ca.issue(&["*.db.example.com"]).unwrap();
    let held_cert = ca.issue(&["held.db.example.com"]).unwrap();
    // Every name a refusal test sends, so that only Envoy's routing can refuse it.
    let all = ca
        .issue(&[
            "x1.db.example.com",
            "a.b.db.example.com",
            "web.db.example.com",
            "other.test",
        ])
        .unwrap();
    let mut pass_names: Vec<String> = vec!["pass-1.test".into(), "other.test".into()];
    pass_names.extend((0..HOSTILE.len()).map(|i| format!("probe-{i}.test")));
    let pass_refs: Vec<&str> = pass_names.iter().map(String::as_str).collect();
    let pass = Backend::start_tls("pass", &backend_ca.issue(&pass_refs).unwrap())
        .await
        .unwrap();
    let web = Backend::start("web").await.unwrap();
    let [db, held, thief] = [(); 3].map(|()| TcpEchoBackend::start());
    let (db, held, thief) = (db.await.unwrap(), held.await.unwrap(), thief.await.unwrap());

    let dir = Manifests::new().unwrap();
    let mut objects = String::new();
    for (ns, name, cert) in [
        ("team-a", "db", &db_cert),
        ("team-b", "held", &held_cert),
        ("evil", "all", &all),
    ] {
        objects += &format!("---\n{}", tls_secret(ns, name, cert));
    }
    for (ns, name, port) in [
        ("team-a", "db", db.port()),
        ("team-a", "pass", pass.port()),
        ("team-b", "held", held.port()),
        ("team-b", "web", web.port()),
        ("evil", "thief", thief.port()),
    ] {
        objects += &service(ns, name, 9000, &[port]);
    }
    // Older names of team-b under the parent: one with a chain of its own, one over plain
    // HTTP only.
    objects += &tcp_route(
        "team-b",
        "held",
        OLD,
        "HostSNI(`held.db.example.com`)",
        "held",
        json!({"secretName": "held"}),
    );
    objects += &object(
        "IngressRoute",
        "team-b",
        "web",
        OLD,
        json!({"entryPoints": ["web"],
               "routes": [{"match": "Host(`web.db.example.com`)",
                           "services": [{"name": "web", "port": 9000}]}]}),
    );
    objects += &tcp_route(
        "team-a",
        "db",
        MID,
        "HostSNIRegexp(`^[a-z]+\\.db\\.example\\.com$`)",
        "db",
        json!({"secretName": "db"}),
    );
    // Younger tenants' patterns: refused, the wildcard and the catch-all are taken.
    objects += &tcp_route(
        "evil",
        "db",
        YOUNG,
        "HostSNIRegexp(`^[a-z0-9]+\\.db\\.example\\.com$`)",
        "thief",
        json!({"secretName": "all"}),
    );
    objects += &tcp_route(
        "evil",
        "any",
        YOUNG,
        "HostSNIRegexp(`held`)",
        "thief",
        json!({"passthrough": true}),
    );
    let with_catch_all = |pattern: &str| {
        objects.clone()
            + &tcp_route(
                "team-a",
                "pass",
                MID,
                &format!("HostSNIRegexp(`{pattern}`)"),
                "pass",
                json!({"passthrough": true}),
            )
    };
    dir.write("objects.yaml", &with_catch_all("^pass-"))
        .unwrap();

    let mut sluice = Standalone::start(dir.path()).unwrap();
    let port = sluice.default_instance(WAIT).await.unwrap().https;
    // Termination for a name the pattern matches, with the wildcard's certificate.
    try_wait_for("x.db.example.com echoing", WAIT, async || {
        sluice.check_running()?;
        Ok(echoes(&ca, port, "x.db.example.com").await.then_some(()))
    })
    .await
    .unwrap();
    assert_eq!(db.connection_count(), 1);
    // Traefik matches the lower-cased server name.
    assert!(echoes(&ca, port, "Y.DB.Example.COM").await);
    let db_seen = db.connection_count();
    assert_eq!(db_seen, 2);
    // Names the pattern does not match are closed, and the backend never sees a connection:
    // a digit, two labels under the parent.
    for name in ["x1.db.example.com", "a.b.db.example.com"] {
        assert!(!echoes(&ca, port, name).await, "{name}");
    }
    assert_eq!(db.connection_count(), db_seen);
    // team-b's names: its own chain, and a name it serves over plain HTTP only (closed).
    assert!(echoes(&ca, port, "held.db.example.com").await);
    assert_eq!(held.connection_count(), 1);
    assert!(!echoes(&ca, port, "web.db.example.com").await);
    assert_eq!(db.connection_count(), db_seen);

    // The catch-all pattern passes matching names through, and closes the rest (and sessions
    // without SNI: the pattern does not match the empty name) before the backend.
    assert!(passes_through(&backend_ca, port, "pass-1.test", true).await);
    assert_eq!(pass.control().connection_count(), 1);
    assert!(!passes_through(&backend_ca, port, "other.test", true).await);
    assert!(!passes_through(&backend_ca, port, "pass-1.test", false).await);
    assert_eq!(pass.control().connection_count(), 1);
    assert_eq!(thief.connection_count(), 0);

    // Hostile patterns, one after another: each is served (its probe name passes through), so
    // Envoy accepted the listener with it.
    for (i, hostile) in HOSTILE.iter().enumerate() {
        let probe = format!("probe-{i}.test");
        let pattern = format!("^probe-{i}\\.|{hostile}");
        dir.write("objects.yaml", &with_catch_all(&pattern))
            .unwrap();
        try_wait_for(&format!("{hostile} served"), WAIT, async || {
            sluice.check_running()?;
            Ok(passes_through(&backend_ca, port, &probe, true)
                .await
                .then_some(()))
        })
        .await
        .unwrap();
        // The terminated wildcard still serves beside it.
        assert!(echoes(&ca, port, "x.db.example.com").await, "{hostile}");
    }
    dir.write("objects.yaml", &with_catch_all("^pass-"))
        .unwrap();
    try_wait_for("back to ^pass-", WAIT, async || {
        sluice.check_running()?;
        Ok((!passes_through(&backend_ca, port, "probe-0.test", true).await).then_some(()))
    })
    .await
    .unwrap();
    assert!(passes_through(&backend_ca, port, "pass-1.test", true).await);
    assert_eq!(thief.connection_count(), 0);
    sluice.check_running().unwrap();
}
