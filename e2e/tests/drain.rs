//! Fleet upgrade without dropped requests, with real Envoy processes.
//!
//! Two Gateways select the same IngressRoutes, so `sluice standalone` runs two Envoys with the
//! same configuration: the "old" pod and the "new" one. A client loop plays the part of a
//! Service's load balancer: it sends each request, on a fresh connection, to an Envoy whose
//! `/ready` answered 200 at the last check (as endpoints follow readiness). The real
//! `sluice shutdown-manager drain` then drains the old Envoy over its admin Unix socket, as the
//! preStop hook does in a pod, while a long request is in flight on it; only after the drain
//! exited is the old Envoy removed. The sidecar itself listens on nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use sluice_e2e::backend::Backend;
use sluice_e2e::client::{Request, get};
use sluice_e2e::manifests::{Manifests, service};
use sluice_e2e::process::{ChildProcess, listening_tcp_ports};
use sluice_e2e::sluice::{Standalone, sluice_binary};
use sluice_e2e::{temp_dir, wait_for, wait_until};

const WAIT: Duration = Duration::from_secs(30);
const HOST: &str = "app.example.com";

fn manifests() -> String {
    let gateway = |name: &str| {
        format!(
            "---\napiVersion: sluice.dev/v1alpha1\nkind: Gateway\nmetadata: {{name: {name}, namespace: ingress}}\nspec: {{}}\n"
        )
    };
    gateway("old")
        + &gateway("new")
        + "---\napiVersion: contour.heptio.com/v1beta1\nkind: IngressRoute\nmetadata: {name: app, namespace: default}\n\
           spec:\n  virtualhost: {fqdn: app.example.com}\n  routes:\n  - match: /\n    services: [{name: fast, port: 80}]\n  \
           - match: /slow\n    services: [{name: slow, port: 80}]\n"
}

async fn ready(stats_port: u16) -> bool {
    get(stats_port, "localhost", "/ready")
        .await
        .is_ok_and(|r| r.status == 200)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn old_envoy_drains_while_traffic_moves_to_the_new_one() {
    let fast = Backend::start("fast").await.unwrap();
    let slow = Backend::start("slow").await.unwrap();
    slow.control().set_delay(Duration::from_secs(3));
    let dir = Manifests::new().unwrap();
    dir.write(
        "services.yaml",
        &(service("default", "fast", 80, &[fast.port()])
            + &service("default", "slow", 80, &[slow.port()])),
    )
    .unwrap();
    dir.write("app.yaml", &manifests()).unwrap();

    let mut sluice = Standalone::start(dir.path()).unwrap();
    let old = sluice.instance("ingress/old", WAIT).await.unwrap();
    let new = sluice.instance("ingress/new", WAIT).await.unwrap();
    for p in [&old, &new] {
        wait_until("both Envoys route", WAIT, async || {
            get(p.http, HOST, "/").await.is_ok_and(|r| r.status == 200) && ready(p.stats).await
        })
        .await
        .unwrap();
    }

    // Endpoint controller: which Envoys are ready, refreshed every 50 ms.
    let old_ready = Arc::new(AtomicBool::new(true));
    let stop = Arc::new(AtomicBool::new(false));
    let checker = tokio::spawn({
        let (old_ready, stop, stats) = (old_ready.clone(), stop.clone(), old.stats);
        async move {
            while !stop.load(Ordering::SeqCst) {
                old_ready.store(ready(stats).await, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    // Client loop: alternate between ready Envoys; record every outcome.
    let (sent_old, sent_new, failures) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let client = tokio::spawn({
        let (old_ready, stop) = (old_ready.clone(), stop.clone());
        let (sent_old, sent_new, failures) = (sent_old.clone(), sent_new.clone(), failures.clone());
        let (old_port, new_port) = (old.http, new.http);
        async move {
            let mut i = 0u64;
            let mut errors = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let to_old = old_ready.load(Ordering::SeqCst) && i.is_multiple_of(2);
                let port = if to_old { old_port } else { new_port };
                (if to_old { &sent_old } else { &sent_new }).fetch_add(1, Ordering::SeqCst);
                match get(port, HOST, "/").await {
                    Ok(r) if r.status == 200 => {}
                    other => {
                        failures.fetch_add(1, Ordering::SeqCst);
                        errors.push(format!(
                            "{} -> {other:?}",
                            if to_old { "old" } else { "new" }
                        ));
                    }
                }
            }
            errors
        }
    });
    wait_until("the loop reaches both Envoys", WAIT, async || {
        sent_old.load(Ordering::SeqCst) > 10 && sent_new.load(Ordering::SeqCst) > 10
    })
    .await
    .unwrap();

    // A long request on the old Envoy, started before the drain.
    let long = tokio::spawn(async move {
        let r = Request::get(HOST, "/slow")
            .timeout(Duration::from_secs(20))
            .send(old.http)
            .await;
        (
            r.map(|r| (r.status, r.backend())),
            std::time::Instant::now(),
        )
    });
    wait_until("the long request reached the backend", WAIT, async || {
        slow.control().request_count() == 1
    })
    .await
    .unwrap();

    // The preStop hook: the real `shutdown-manager drain`, on the old Envoy's admin socket.
    let drain = tokio::process::Command::new(sluice_binary().unwrap())
        .args(["shutdown-manager", "drain", "--admin-socket"])
        .arg(&old.admin_socket)
        .args(["--stats-port", &old.stats.to_string()])
        .args(["--drain-seconds", "20", "--check-delay-seconds", "1"])
        .kill_on_drop(true)
        .output();
    let drained = tokio::time::timeout(Duration::from_secs(40), drain)
        .await
        .expect("the drain ends within its drain time")
        .unwrap();
    let drained_at = std::time::Instant::now();
    let stdout = String::from_utf8_lossy(&drained.stdout);
    assert!(
        drained.status.success() && stdout.lines().any(|l| l.trim() == "drained"),
        "{}\nstdout:\n{stdout}\nstderr:\n{}",
        drained.status,
        String::from_utf8_lossy(&drained.stderr)
    );
    assert!(!ready(old.stats).await, "a drained Envoy reports not ready");

    // The long request finished, successfully, before the drain was declared complete.
    let (long_result, long_done_at) = long.await.unwrap();
    assert_eq!(long_result.unwrap(), (200, Some("slow".to_owned())));
    assert!(
        long_done_at <= drained_at,
        "the drain must wait for the long request"
    );

    // The old pod goes away; traffic keeps flowing to the new one.
    let sent_new_before = sent_new.load(Ordering::SeqCst);
    dir.write("app.yaml", &manifests().replace("---\napiVersion: sluice.dev/v1alpha1\nkind: Gateway\nmetadata: {name: old, namespace: ingress}\nspec: {}\n", ""))
        .unwrap();
    wait_for("the old Envoy is stopped", WAIT, async || {
        (!sluice
            .instances()
            .iter()
            .any(|i| i.gateway == "ingress/old"))
        .then_some(())
    })
    .await
    .unwrap();
    wait_until("more requests through the new Envoy", WAIT, async || {
        sent_new.load(Ordering::SeqCst) > sent_new_before + 20
    })
    .await
    .unwrap();
    stop.store(true, Ordering::SeqCst);
    let errors = client.await.unwrap();
    checker.await.unwrap();
    assert!(
        errors.is_empty(),
        "failed requests during the upgrade: {errors:?}"
    );
    assert_eq!(failures.load(Ordering::SeqCst), 0);
    assert!(sent_old.load(Ordering::SeqCst) > 10 && sent_new.load(Ordering::SeqCst) > 30);
    sluice.check_running().unwrap();
}

/// This host's addresses other than loopback, from `hostname -I`.
fn non_loopback_addresses() -> Vec<std::net::IpAddr> {
    let Ok(out) = Command::new("hostname").arg("-I").output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|a| a.parse::<std::net::IpAddr>().ok())
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
        .collect()
}

/// Any pod could once drain every Envoy with `GET :8090/shutdown`. The sidecar now listens on no
/// TCP port at all: the drain is only an `exec` inside the pod.
#[tokio::test]
async fn the_shutdown_manager_is_not_reachable_from_the_network() {
    let logs = temp_dir().unwrap();
    let mut cmd = Command::new(sluice_binary().unwrap());
    cmd.arg("shutdown-manager");
    let mut manager =
        ChildProcess::spawn("shutdown-manager", cmd, &logs.path().join("manager.log")).unwrap();
    wait_until("shutdown-manager up", WAIT, async || {
        manager.log_tail(5).contains("waiting for SIGTERM")
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", manager.log_tail(20)));
    manager.check_running().unwrap();

    // No listening TCP socket of any kind.
    assert_eq!(
        listening_tcp_ports(manager.pid()),
        Vec::<u16>::new(),
        "the shutdown-manager listens on TCP"
    );

    // And, from the network: the old port answers on none of this host's other addresses.
    let addresses = non_loopback_addresses();
    if addresses.is_empty() {
        println!("note: no non-loopback address on this host; skipped the network check");
    }
    for ip in addresses {
        let addr = std::net::SocketAddr::new(ip, 8090);
        let connected =
            tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
                .await;
        assert!(
            !matches!(connected, Ok(Ok(_))),
            "something answers on {addr}"
        );
    }

    // SIGTERM (the kubelet, after the preStop hook) ends it cleanly.
    manager.stop();
    assert!(
        manager.exit_status().is_some_and(|s| s.success()),
        "{}",
        manager.log_tail(20)
    );
}
