//! Tests of the e2e harness itself, against real sockets and a real Envoy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use anyhow::Result;
use sluice_e2e::backend::{BACKEND_HEADER, Backend, DEFAULT_HEALTH_PATH, TcpEchoBackend};
use sluice_e2e::client::{Connection, Request, WebSocket, get};
use sluice_e2e::envoy::{self, Envoy};
use sluice_e2e::sluice::Standalone;
use sluice_e2e::tls::{TestCa, TlsClient};
use sluice_e2e::{Error, envoy_port, try_wait_for, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn backend_answers_naming_itself_and_echoing_the_request() -> Result<()> {
    let backend = Backend::start("alpha").await?;
    let resp = Request::get("example.com", "/foo?x=1")
        .header("X-Test", "yes")
        .cookie("session=abc")
        .send(backend.port())
        .await?;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header(BACKEND_HEADER), Some("alpha"));
    let echo = resp.echo()?;
    assert_eq!(echo.backend, "alpha");
    assert_eq!(echo.method, "GET");
    assert_eq!(echo.path, "/foo?x=1");
    assert_eq!(echo.header("host"), Some("example.com"));
    assert_eq!(echo.header("x-test"), Some("yes"), "names are lowercased");
    assert_eq!(echo.header("cookie"), Some("session=abc"));
    assert_eq!(backend.control().request_count(), 1);
    assert_eq!(backend.control().received(), vec![echo]);
    Ok(())
}

#[tokio::test]
async fn backend_echoes_request_bodies() -> Result<()> {
    let backend = Backend::start("poster").await?;
    let resp = Request::new("POST", "h", "/submit")
        .body("payload")
        .send(backend.port())
        .await?;
    let echo = resp.echo()?;
    assert_eq!(
        (echo.method.as_str(), echo.body.as_str()),
        ("POST", "payload")
    );

    // A chunked request body, as proxies send when they don't know the length.
    let mut stream = tokio::net::TcpStream::connect(backend.addr()).await?;
    stream
        .write_all(
            b"PUT /c HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n\
              3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .await?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await?;
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(raw.contains(r#""body":"abcde""#), "{raw}");
    Ok(())
}

#[tokio::test]
async fn fail_next_fails_then_recovers() -> Result<()> {
    let backend = Backend::start("flaky").await?;
    backend.control().fail_next(1, 503);
    let first = get(backend.port(), "h", "/").await?;
    let second = get(backend.port(), "h", "/").await?;
    assert_eq!(first.status, 503);
    assert_eq!(first.backend().as_deref(), Some("flaky"));
    assert_eq!(second.status, 200);

    backend.control().fail_next(2, 500);
    let statuses = [
        get(backend.port(), "h", "/").await?.status,
        get(backend.port(), "h", "/").await?.status,
        get(backend.port(), "h", "/").await?.status,
    ];
    assert_eq!(statuses, [500, 500, 200]);
    assert_eq!(backend.control().request_count(), 5);
    Ok(())
}

#[tokio::test]
async fn delay_holds_responses_until_turned_off() -> Result<()> {
    let backend = Backend::start("slow").await?;
    backend.control().set_delay(Duration::from_secs(30));
    let err = Request::get("h", "/")
        .timeout(Duration::from_millis(200))
        .send(backend.port())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");

    backend.control().set_delay(Duration::ZERO);
    assert_eq!(get(backend.port(), "h", "/").await?.status, 200);
    Ok(())
}

#[tokio::test]
async fn health_endpoint_flips_and_is_counted_apart() -> Result<()> {
    let backend = Backend::start("hc").await?;
    let control = backend.control();
    assert_eq!(
        get(backend.port(), "h", DEFAULT_HEALTH_PATH).await?.status,
        200
    );
    control.set_healthy(false);
    assert_eq!(
        get(backend.port(), "h", DEFAULT_HEALTH_PATH).await?.status,
        503
    );
    control.fail_next(1, 500);
    control.set_health_path("/status");
    control.set_healthy(true);
    assert_eq!(
        get(backend.port(), "h", "/status?probe=1").await?.status,
        200
    );
    assert_eq!(control.health_check_count(), 3);
    assert_eq!(control.request_count(), 0);
    // The failure budget was not spent on health checks.
    assert_eq!(get(backend.port(), "h", "/").await?.status, 500);
    Ok(())
}

#[tokio::test]
async fn requests_use_fresh_connections_unless_kept_alive() -> Result<()> {
    let backend = Backend::start("conns").await?;
    get(backend.port(), "h", "/").await?;
    get(backend.port(), "h", "/").await?;
    assert_eq!(backend.control().connection_count(), 2);

    backend.control().reset_counts();
    let mut conn = Connection::open(backend.port()).await?;
    for path in ["/a", "/b", "/c"] {
        let resp = conn.send(&Request::get("h", path)).await?;
        assert_eq!(resp.echo()?.path, path);
    }
    assert_eq!(backend.control().connection_count(), 1);
    assert_eq!(backend.control().request_count(), 3);
    Ok(())
}

#[tokio::test]
async fn websocket_echoes_text() -> Result<()> {
    let backend = Backend::start("ws").await?;
    let mut socket = WebSocket::connect(backend.port(), "chat.example.com", "/socket").await?;
    assert_eq!(socket.handshake().header(BACKEND_HEADER), Some("ws"));
    assert_eq!(socket.round_trip("hello").await?, "hello");
    let long = "x".repeat(70_000);
    assert_eq!(socket.round_trip(&long).await?, long);
    socket.close().await?;
    let received = backend.control().received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].header("upgrade"), Some("websocket"));
    assert_eq!(received[0].header("host"), Some("chat.example.com"));
    Ok(())
}

#[tokio::test]
async fn websocket_refusal_is_reported_with_the_status() -> Result<()> {
    let backend = Backend::start("ws-refuse").await?;
    backend.control().fail_next(1, 503);
    let err = WebSocket::connect(backend.port(), "h", "/")
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::WebSocketRefused { status: 503, .. }),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
async fn tcp_echo_backend_echoes_bytes() -> Result<()> {
    let echo = TcpEchoBackend::start().await?;
    let mut stream = tokio::net::TcpStream::connect(echo.addr()).await?;
    stream.write_all(b"ping over tcp").await?;
    stream.shutdown().await?;
    let mut back = Vec::new();
    stream.read_to_end(&mut back).await?;
    assert_eq!(back, b"ping over tcp");
    assert_eq!(echo.connection_count(), 1);
    Ok(())
}

#[tokio::test]
async fn dropped_backend_stops_answering() -> Result<()> {
    let backend = Backend::start("gone").await?;
    let port = backend.port();
    assert_eq!(get(port, "h", "/").await?.status, 200);
    drop(backend);
    // Aborting the accept task closes the listener; that happens on the runtime, so poll.
    wait_for(
        "the listener to close",
        Duration::from_secs(10),
        async || get(port, "h", "/").await.is_err().then_some(()),
    )
    .await?;
    Ok(())
}

/// A static bootstrap: one HTTP listener on `listener_port` routing every host to one cluster
/// with `backend_port`, websockets allowed, and an admin listener on an ephemeral port.
fn static_bootstrap(listener_port: u16, backend_port: u16) -> String {
    serde_json::json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [{
                "name": "ingress_http",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": listener_port}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "ingress_http",
                        "upgrade_configs": [{"upgrade_type": "websocket"}],
                        "route_config": {
                            "name": "local",
                            "virtual_hosts": [{
                                "name": "all",
                                "domains": ["*"],
                                "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "backend"}}]
                            }]
                        },
                        "http_filters": [{
                            "name": "envoy.filters.http.router",
                            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
                        }]
                    }
                }]}]
            }],
            "clusters": [{
                "name": "backend",
                "type": "STATIC",
                "connect_timeout": "1s",
                "load_assignment": {
                    "cluster_name": "backend",
                    "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                        "socket_address": {"address": "127.0.0.1", "port_value": backend_port}
                    }}}]}]
                }
            }]
        }
    })
    .to_string()
}

#[tokio::test]
async fn envoy_forwards_http_and_websocket_to_a_static_backend() -> Result<()> {
    let backend = Backend::start("beta").await?;
    let listener = envoy_port()?;
    let envoy = Envoy::start(static_bootstrap(listener, backend.port())).await?;

    let resp = get(listener, "shop.example.com", "/cart").await?;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let echo = resp.echo()?;
    assert_eq!(echo.backend, "beta");
    assert_eq!(echo.path, "/cart");
    assert_eq!(echo.header("host"), Some("shop.example.com"));
    assert!(
        echo.header("x-request-id").is_some(),
        "Envoy adds a request id"
    );
    assert_eq!(resp.header("server"), Some("envoy"));

    let mut socket = WebSocket::connect(listener, "shop.example.com", "/live").await?;
    assert_eq!(socket.handshake().header(BACKEND_HEADER), Some("beta"));
    assert_eq!(socket.round_trip("through envoy").await?, "through envoy");
    socket.close().await?;

    assert_eq!(
        envoy
            .stat("cluster.backend.upstream_rq_completed")
            .await?
            .unwrap_or_default(),
        2,
        "both requests went through the cluster"
    );
    assert!(envoy.log_tail(200).contains("starting main dispatch loop"));
    Ok(())
}

#[tokio::test]
async fn tls_backend_serves_https_and_reports_sni() -> Result<()> {
    let ca = TestCa::new("harness ca")?;
    let cert = ca.issue(&["backend.test", "127.0.0.1"])?;
    let backend = Backend::start_tls("secure", &cert).await?;
    let client = TlsClient::trusting(&ca.cert_pem())?;

    let resp = Request::get("backend.test", "/s")
        .send_tls(backend.port(), &client)
        .await?;
    let echo = resp.echo()?;
    assert_eq!(echo.backend, "secure");
    assert_eq!(echo.tls_sni.as_deref(), Some("backend.test"));

    // Names are verified: a certificate for backend.test does not serve other.test.
    let err = Request::get("other.test", "/")
        .send_tls(backend.port(), &client)
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("NotValidForName"), "{err:?}");

    // And only the trusted CA is accepted.
    let stranger = TlsClient::trusting(&TestCa::new("other ca")?.cert_pem())?;
    let err = Request::get("backend.test", "/")
        .send_tls(backend.port(), &stranger)
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("UnknownIssuer"), "{err:?}");
    Ok(())
}

#[tokio::test]
async fn envoy_terminates_tls_and_originates_tls_with_harness_certificates() -> Result<()> {
    let ca = TestCa::new("harness ca")?;
    let front = ca.issue(&["shop.example.com"])?;
    let upstream = ca.issue(&["backend.test"])?;
    let backend = Backend::start_tls("secure-upstream", &upstream).await?;
    let listener = envoy_port()?;

    let mut bootstrap: serde_json::Value =
        serde_json::from_str(&static_bootstrap(listener, backend.port()))?;
    let resources = &mut bootstrap["static_resources"];
    resources["listeners"][0]["filter_chains"][0]["transport_socket"] = serde_json::json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "common_tls_context": {"tls_certificates": [{
                "certificate_chain": {"inline_string": front.cert_pem},
                "private_key": {"inline_string": front.key_pem}
            }]}
        }
    });
    resources["clusters"][0]["transport_socket"] = serde_json::json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": "backend.test",
            "common_tls_context": {"validation_context": {
                "trusted_ca": {"inline_string": ca.cert_pem()},
                "match_typed_subject_alt_names": [{
                    "san_type": "DNS", "matcher": {"exact": "backend.test"}
                }]
            }}
        }
    });
    let _envoy = Envoy::start(bootstrap.to_string()).await?;

    let client = TlsClient::trusting(&ca.cert_pem())?;
    let resp = Request::get("shop.example.com", "/pay")
        .send_tls(listener, &client)
        .await?;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let echo = resp.echo()?;
    assert_eq!(echo.backend, "secure-upstream");
    assert_eq!(echo.tls_sni.as_deref(), Some("backend.test"));
    Ok(())
}

#[tokio::test]
async fn envoy_that_cannot_start_reports_its_log() -> Result<()> {
    // Parses as YAML but is not a bootstrap: Envoy exits at once.
    let err = Envoy::builder(
        "admin: {address: {socket_address: {address: 127.0.0.1, port_value: 0}}}\nnot_a_field: 1\n",
    )
    .ready_timeout(Duration::from_secs(120))
    .start()
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::EnvoyNotReady { .. }), "{text}");
    assert!(text.contains("envoy exited"), "{text}");
    assert!(
        text.contains("not_a_field"),
        "the log tail explains why: {text}"
    );
    Ok(())
}

#[tokio::test]
async fn validate_accepts_a_good_config_and_rejects_a_broken_one() -> Result<()> {
    let output = envoy::validate(&static_bootstrap(envoy_port()?, 1)).await?;
    assert!(output.contains("OK"), "{output}");

    let broken = r#"{"static_resources": {"clusters": [{"name": "c", "type": "NO_SUCH_TYPE"}]}}"#;
    let err = envoy::validate(broken).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::EnvoyInvalid { .. }), "{text}");
    assert!(text.contains("NO_SUCH_TYPE"), "{text}");
    Ok(())
}

#[tokio::test]
async fn sluice_binary_runs_one_shot_commands() -> Result<()> {
    let crds = sluice_e2e::sluice::run(&["crds"]).await?;
    assert!(crds.contains("IngressRoute"), "{crds}");

    let err = sluice_e2e::sluice::run(&["no-such-subcommand"])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::CommandFailed { .. }), "{err}");
    assert!(err.to_string().contains("no-such-subcommand"), "{err}");
    Ok(())
}

#[tokio::test]
async fn standalone_that_exits_ends_the_wait_with_its_log() -> Result<()> {
    // A manifest directory that does not exist is a startup error for `sluice standalone`
    // (and, until the subcommand exists, so is the subcommand itself).
    let missing = sluice_e2e::temp_dir()?.path().join("missing");
    let mut sluice = Standalone::start(&missing)?;
    let err = try_wait_for("sluice to exit", Duration::from_secs(60), async || {
        sluice.check_running()?;
        Ok(None::<()>)
    })
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Exited { .. }), "{text}");
    assert!(text.contains("sluice standalone exited"), "{text}");
    assert!(
        !sluice.process().log_tail(40).trim().is_empty(),
        "the log says why"
    );
    Ok(())
}
