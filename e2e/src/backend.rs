//! Upstreams for e2e tests, listening on 127.0.0.1 with an ephemeral port.
//!
//! [`Backend`] is an HTTP/1.1 server (keep-alive, WebSocket echo) that answers every request
//! with a JSON [`Echo`] naming itself and describing what it received; its behaviour is switched
//! at runtime through a [`BackendControl`]. [`TcpEchoBackend`] echoes raw bytes (TCP proxying).
//! [`Backend::start_tls`] serves the same over TLS, [`Backend::start_h2c`] over cleartext
//! HTTP/2. All stop when dropped.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use crate::http1::{self, has_token, header};
use crate::tls::{self, CertKey};
use crate::ws;
use crate::{Error, Result};

/// Path answered by the health endpoint unless changed with
/// [`BackendControl::set_health_path`].
pub const DEFAULT_HEALTH_PATH: &str = "/healthz";

/// Response header carrying the backend's name on every answer, including WebSocket upgrades.
pub const BACKEND_HEADER: &str = "x-sluice-backend";

/// What a [`Backend`] answers: who it is and what request reached it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Echo {
    /// The backend's name.
    pub backend: String,
    pub method: String,
    /// Request target as received (path and query).
    pub path: String,
    /// Request headers, names lowercased; repeated headers joined with `", "`.
    pub headers: BTreeMap<String, String>,
    /// Request body, lossily decoded as UTF-8.
    #[serde(default)]
    pub body: String,
    /// SNI name the client sent, on a TLS backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_sni: Option<String>,
}

impl Echo {
    /// Header `name` (any case) as received by the backend.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

#[derive(Debug)]
struct State {
    fail_status: u16,
    fail_remaining: u64,
    delay: Duration,
    health_path: String,
    healthy: bool,
    requests: u64,
    health_checks: u64,
    received: Vec<Echo>,
}

/// Shared handle to a [`Backend`]'s behaviour and counters; cheap to clone, usable while the
/// backend serves.
#[derive(Debug, Clone)]
pub struct BackendControl {
    name: Arc<str>,
    state: Arc<Mutex<State>>,
    connections: Arc<AtomicU64>,
}

/// What to do with one request, decided under the lock.
struct Plan {
    status: u16,
    delay: Duration,
    is_health_check: bool,
}

impl BackendControl {
    fn new(name: &str) -> Self {
        BackendControl {
            name: name.into(),
            state: Arc::new(Mutex::new(State {
                fail_status: 200,
                fail_remaining: 0,
                delay: Duration::ZERO,
                health_path: DEFAULT_HEALTH_PATH.to_owned(),
                healthy: true,
                requests: 0,
                health_checks: 0,
                received: Vec::new(),
            })),
            connections: Arc::new(AtomicU64::new(0)),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not wedge the backend for the others.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The backend's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Answer the next `count` requests with `status` (same JSON body), then go back to 200.
    /// `fail_next(1, 503)` is "fail once, then succeed". Health checks are not affected.
    pub fn fail_next(&self, count: u64, status: u16) {
        let mut state = self.state();
        state.fail_status = status;
        state.fail_remaining = count;
    }

    /// Delay every later response (not health checks) by `delay`; `Duration::ZERO` turns it off.
    pub fn set_delay(&self, delay: Duration) {
        self.state().delay = delay;
    }

    /// Serve the health endpoint at `path` (matched without the query string).
    pub fn set_health_path(&self, path: &str) {
        self.state().health_path = path.to_owned();
    }

    /// Health endpoint answers 200 when healthy, 503 when not.
    pub fn set_healthy(&self, healthy: bool) {
        self.state().healthy = healthy;
    }

    /// Requests answered so far, not counting health checks.
    pub fn request_count(&self) -> u64 {
        self.state().requests
    }

    /// Requests to the health endpoint so far.
    pub fn health_check_count(&self) -> u64 {
        self.state().health_checks
    }

    /// TCP connections accepted so far (shows keep-alive reuse).
    pub fn connection_count(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }

    /// Every non-health request received so far, oldest first.
    pub fn received(&self) -> Vec<Echo> {
        self.state().received.clone()
    }

    /// Zero the counters and forget received requests; behaviour settings stay.
    pub fn reset_counts(&self) {
        let mut state = self.state();
        state.requests = 0;
        state.health_checks = 0;
        state.received.clear();
        self.connections.store(0, Ordering::SeqCst);
    }

    fn plan(&self, echo: &Echo) -> Plan {
        let mut state = self.state();
        let path_only = echo.path.split('?').next().unwrap_or_default();
        if path_only == state.health_path {
            state.health_checks += 1;
            return Plan {
                status: if state.healthy { 200 } else { 503 },
                delay: Duration::ZERO,
                is_health_check: true,
            };
        }
        state.requests += 1;
        state.received.push(echo.clone());
        let status = if state.fail_remaining > 0 {
            state.fail_remaining -= 1;
            state.fail_status
        } else {
            200
        };
        Plan {
            status,
            delay: state.delay,
            is_health_check: false,
        }
    }
}

/// An HTTP/1.1 test backend on 127.0.0.1. Stops accepting and drops its connections on drop.
#[derive(Debug)]
pub struct Backend {
    addr: SocketAddr,
    control: BackendControl,
    task: JoinHandle<()>,
}

/// A listener for backend `name` on 127.0.0.1, on a port the OS chooses.
async fn bind(name: &str) -> Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(Error::io(format!("binding backend {name}")))?;
    let addr = listener
        .local_addr()
        .map_err(Error::io("reading a backend's address"))?;
    Ok((listener, addr))
}

impl Backend {
    /// Binds a backend called `name` on an ephemeral port and serves each connection, counted
    /// first, with `serve`.
    async fn serving<F, Fut>(name: &str, serve: F) -> Result<Backend>
    where
        F: Fn(TcpStream, BackendControl) -> Fut + Send + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        let (listener, addr) = bind(name).await?;
        let control = BackendControl::new(name);
        let served = control.clone();
        let task = tokio::spawn(accept_loop(listener, move |stream| {
            served.connections.fetch_add(1, Ordering::SeqCst);
            serve(stream, served.clone())
        }));
        Ok(Backend {
            addr,
            control,
            task,
        })
    }

    /// Starts a backend called `name` on an ephemeral port.
    pub async fn start(name: &str) -> Result<Backend> {
        Backend::serving(name, |stream, control| serve_http(stream, control, None)).await
    }

    /// Starts a backend called `name` serving HTTPS with `cert` (HTTP/1.1 over TLS, ALPN
    /// `http/1.1`); the SNI name each connection sent is reported in [`Echo::tls_sni`].
    pub async fn start_tls(name: &str, cert: &CertKey) -> Result<Backend> {
        Backend::start_tls_with(name, tls::server_config(cert)?).await
    }

    /// Starts a backend called `name` serving HTTPS with `config` (as [`Backend::start_tls`]);
    /// e.g. [`tls::server_config_requiring_clients`] for a backend that requires a client
    /// certificate. Connections whose handshake fails serve nothing.
    pub async fn start_tls_with(name: &str, config: Arc<rustls::ServerConfig>) -> Result<Backend> {
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        Backend::serving(name, move |stream, control| {
            let acceptor = acceptor.clone();
            async move {
                let stream = acceptor
                    .accept(stream)
                    .await
                    .map_err(Error::io("TLS handshake with a client"))?;
                let sni = stream.get_ref().1.server_name().map(str::to_owned);
                serve_http(stream, control, sni).await
            }
        })
        .await
    }

    /// Starts a backend called `name` speaking cleartext HTTP/2 only (prior knowledge, as
    /// Envoy's `h2c` clusters do): every request is answered 200 with the same JSON [`Echo`]
    /// and [`BACKEND_HEADER`], the Host being the request's `:authority`. An HTTP/1.1 client
    /// gets nothing (its request is not an HTTP/2 preface), so an answer proves HTTP/2 reached
    /// it. Requests are counted and recorded as by [`Backend::start`]; the other controls
    /// (failures, delays, health, WebSockets) are not served.
    pub async fn start_h2c(name: &str) -> Result<Backend> {
        Backend::serving(name, serve_h2c).await
    }

    pub fn name(&self) -> &str {
        self.control.name()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The runtime controls and counters of this backend.
    pub fn control(&self) -> &BackendControl {
        &self.control
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts connections until aborted; aborting drops the `JoinSet`, which aborts every
/// connection task too.
async fn accept_loop<F, Fut>(listener: TcpListener, handle: F)
where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like; don't spin.
                eprintln!("test backend: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let fut = handle(stream);
        connections.spawn(async move {
            if let Err(e) = fut.await
                && !is_disconnect(&e)
            {
                eprintln!("test backend: connection failed: {e}");
            }
        });
    }
}

fn is_disconnect(e: &Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e, Error::Io { source, .. }
        if matches!(source.kind(), ConnectionReset | BrokenPipe | UnexpectedEof | ConnectionAborted))
}

/// Serves HTTP/1.1 requests on one connection until the peer closes it, asks to close it, or
/// upgrades it to a WebSocket.
async fn serve_http<S>(stream: S, control: BackendControl, tls_sni: Option<String>) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut conn = BufReader::new(stream);
    loop {
        let Some(head) = http1::read_head(&mut conn).await? else {
            return Ok(());
        };
        let request = http1::parse_request(&head)?;
        let body = http1::read_body(&mut conn, http1::request_body_kind(&request.headers)?).await?;
        let mut headers = BTreeMap::<String, String>::new();
        for (name, value) in &request.headers {
            headers
                .entry(name.clone())
                .and_modify(|v| {
                    v.push_str(", ");
                    v.push_str(value);
                })
                .or_insert_with(|| value.clone());
        }
        let echo = Echo {
            backend: control.name().to_owned(),
            method: request.method.clone(),
            path: request.path.clone(),
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
            tls_sni: tls_sni.clone(),
        };
        let plan = control.plan(&echo);
        if !plan.delay.is_zero() {
            tokio::time::sleep(plan.delay).await;
        }

        if plan.status == 200
            && !plan.is_health_check
            && has_token(&request.headers, "upgrade", "websocket")
        {
            let Some(key) = header(&request.headers, "sec-websocket-key") else {
                write_response(
                    conn.get_mut(),
                    &control,
                    400,
                    b"missing sec-websocket-key",
                    false,
                )
                .await?;
                return Ok(());
            };
            let handshake = format!(
                "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
                 sec-websocket-accept: {}\r\n{BACKEND_HEADER}: {}\r\n\r\n",
                ws::accept_key(key),
                control.name()
            );
            let stream = conn.get_mut();
            stream
                .write_all(handshake.as_bytes())
                .await
                .map_err(Error::io("writing a websocket handshake"))?;
            stream
                .flush()
                .await
                .map_err(Error::io("flushing a websocket handshake"))?;
            return websocket_echo(&mut conn).await;
        }

        let keep_alive = if request.version == 0 {
            has_token(&request.headers, "connection", "keep-alive")
        } else {
            !has_token(&request.headers, "connection", "close")
        };
        let json = serde_json::to_vec(&echo)
            .map_err(|e| Error::Protocol(format!("encoding an echo: {e}")))?;
        let json = if request.method.eq_ignore_ascii_case("HEAD") {
            Vec::new()
        } else {
            json
        };
        write_response(conn.get_mut(), &control, plan.status, &json, keep_alive).await?;
        if !keep_alive {
            let _ = conn.get_mut().shutdown().await;
            return Ok(());
        }
    }
}

/// Serves HTTP/2 with prior knowledge on one connection until the peer closes it.
async fn serve_h2c(stream: TcpStream, control: BackendControl) -> Result<()> {
    use http_body_util::{BodyExt, Full};
    use hyper::body::{Bytes, Incoming};

    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let control = control.clone();
        async move {
            let (parts, body) = request.into_parts();
            let body = body.collect().await?.to_bytes();
            let mut headers = BTreeMap::<String, String>::new();
            if let Some(authority) = parts.uri.authority() {
                headers.insert("host".to_owned(), authority.to_string());
            }
            for (name, value) in &parts.headers {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                headers
                    .entry(name.as_str().to_owned())
                    .and_modify(|v| {
                        v.push_str(", ");
                        v.push_str(&value);
                    })
                    .or_insert(value);
            }
            let echo = Echo {
                backend: control.name().to_owned(),
                method: parts.method.to_string(),
                path: parts
                    .uri
                    .path_and_query()
                    .map_or_else(|| "/".to_owned(), ToString::to_string),
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
                tls_sni: None,
            };
            control.plan(&echo);
            let json = serde_json::to_vec(&echo).unwrap_or_default();
            let response = hyper::Response::builder()
                .header("content-type", "application/json")
                .header(BACKEND_HEADER, control.name())
                .body(Full::new(Bytes::from(json)));
            Ok::<_, hyper::Error>(response.unwrap_or_default())
        }
    });
    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
        .await
        .map_err(|e| Error::Protocol(format!("serving h2c: {e}")))
}

async fn write_response<W: AsyncWrite + Unpin>(
    w: &mut W,
    control: &BackendControl,
    status: u16,
    body: &[u8],
    keep_alive: bool,
) -> Result<()> {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let head = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: {connection}\r\n{BACKEND_HEADER}: {}\r\n\r\n",
        reason(status),
        body.len(),
        control.name()
    );
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    w.write_all(&out)
        .await
        .map_err(Error::io("writing a response"))?;
    w.flush().await.map_err(Error::io("flushing a response"))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// Echoes data messages back (same opcode), answers pings, and mirrors a close.
async fn websocket_echo<S>(conn: &mut BufReader<S>) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut message: Option<(u8, Vec<u8>)> = None;
    while let Some(frame) = ws::read_frame(conn).await? {
        match frame.opcode {
            ws::OP_TEXT | ws::OP_BINARY => message = Some((frame.opcode, frame.payload)),
            ws::OP_CONTINUATION => match message.as_mut() {
                Some((_, data)) => data.extend_from_slice(&frame.payload),
                None => return Err(Error::Protocol("continuation without a message".into())),
            },
            ws::OP_PING => {
                ws::write_frame(conn.get_mut(), ws::OP_PONG, &frame.payload, None).await?;
                continue;
            }
            ws::OP_CLOSE => {
                ws::write_frame(conn.get_mut(), ws::OP_CLOSE, &frame.payload, None).await?;
                let _ = conn.get_mut().shutdown().await;
                return Ok(());
            }
            _ => continue,
        }
        if frame.fin
            && let Some((opcode, data)) = message.take()
        {
            ws::write_frame(conn.get_mut(), opcode, &data, None).await?;
        }
    }
    Ok(())
}

/// A raw TCP echo server on 127.0.0.1: writes back every byte it reads.
#[derive(Debug)]
pub struct TcpEchoBackend {
    addr: SocketAddr,
    connections: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl TcpEchoBackend {
    pub async fn start() -> Result<TcpEchoBackend> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(Error::io("binding a TCP echo backend"))?;
        let addr = listener
            .local_addr()
            .map_err(Error::io("reading a TCP echo backend's address"))?;
        let connections = Arc::new(AtomicU64::new(0));
        let counter = connections.clone();
        let task = tokio::spawn(accept_loop(listener, move |mut stream| {
            counter.fetch_add(1, Ordering::SeqCst);
            async move {
                let (mut read, mut write) = stream.split();
                tokio::io::copy(&mut read, &mut write)
                    .await
                    .map_err(Error::io("echoing TCP bytes"))?;
                let _ = write.shutdown().await;
                Ok(())
            }
        }));
        Ok(TcpEchoBackend {
            addr,
            connections,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Connections accepted so far.
    pub fn connection_count(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for TcpEchoBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}
