//! A tiny HTTP/1.1 and WebSocket client for tests, talking to 127.0.0.1.
//!
//! [`Request::send`] opens a fresh connection per request and asks the server to close it, so
//! load-balancing decisions are made anew each time; [`Connection`] keeps one connection alive
//! across requests when a test needs that. Every operation is bounded by a timeout
//! ([`DEFAULT_TIMEOUT`] unless set) so a broken route fails the test instead of hanging it.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use rustls::pki_types::ServerName;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::backend::Echo;
use crate::http1::{self, Headers};
use crate::tls::TlsClient;
use crate::ws;
use crate::{Error, Result};

/// Bound on connecting, sending and receiving one request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

fn localhost(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

async fn with_timeout<T>(
    what: impl FnOnce() -> String,
    after: Duration,
    fut: impl Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(after, fut).await.unwrap_or_else(|_| {
        Err(Error::Timeout {
            what: what(),
            after,
        })
    })
}

async fn connect(addr: SocketAddr) -> Result<BufReader<TcpStream>> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(Error::io(format!("connecting to {addr}")))?;
    let _ = stream.set_nodelay(true);
    Ok(BufReader::new(stream))
}

/// An HTTP request to send to 127.0.0.1.
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    host: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    timeout: Duration,
}

impl Request {
    /// A request with `method`, `Host: host` and request target `path` (with any query).
    pub fn new(method: &str, host: &str, path: &str) -> Request {
        Request {
            method: method.to_owned(),
            host: host.to_owned(),
            path: path.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// A GET request.
    pub fn get(host: &str, path: &str) -> Request {
        Request::new("GET", host, path)
    }

    /// Adds a header; repeat to send several.
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Adds a `Cookie` header, e.g. `"session=abc"`.
    pub fn cookie(self, cookie: &str) -> Request {
        self.header("cookie", cookie)
    }

    /// Sets the body; `Content-Length` is sent accordingly.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// Bounds the whole exchange (connect, send, receive).
    pub fn timeout(mut self, timeout: Duration) -> Request {
        self.timeout = timeout;
        self
    }

    /// Sends the request over a fresh connection to 127.0.0.1:`port` and reads the response.
    pub async fn send(&self, port: u16) -> Result<Response> {
        self.send_to(localhost(port)).await
    }

    /// Like [`Request::send`] with a full address.
    pub async fn send_to(&self, addr: SocketAddr) -> Result<Response> {
        with_timeout(|| self.describe(addr), self.timeout, async {
            let mut conn = connect(addr).await?;
            exchange(&mut conn, self, false).await.map(|(resp, _)| resp)
        })
        .await
    }

    /// Like [`Request::send`] over a Unix domain socket (Envoy's admin interface).
    pub async fn send_unix(&self, path: &std::path::Path) -> Result<Response> {
        with_timeout(
            || {
                format!(
                    "{} http://{}{} via {}",
                    self.method,
                    self.host,
                    self.path,
                    path.display()
                )
            },
            self.timeout,
            async {
                let stream = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(Error::io(format!("connecting to {}", path.display())))?;
                let mut conn = BufReader::new(stream);
                exchange(&mut conn, self, false).await.map(|(resp, _)| resp)
            },
        )
        .await
    }

    /// Sends the request over a fresh TLS connection to 127.0.0.1:`port`. SNI is the client's
    /// fixed name if set, else the request's host (without a port); the server certificate must
    /// be valid for it and signed by a CA the client trusts.
    pub async fn send_tls(&self, port: u16, tls: &TlsClient) -> Result<Response> {
        let addr = localhost(port);
        with_timeout(
            || format!("TLS {}", self.describe(addr)),
            self.timeout,
            async {
                let tcp = TcpStream::connect(addr)
                    .await
                    .map_err(Error::io(format!("connecting to {addr}")))?;
                let _ = tcp.set_nodelay(true);
                let sni = tls.sni.clone().unwrap_or_else(|| {
                    // Host may carry a port; SNI never does.
                    let host = self.host.as_str();
                    match host.rsplit_once(':') {
                        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
                        _ => host,
                    }
                    .to_owned()
                });
                let name = ServerName::try_from(sni.clone())
                    .map_err(|e| Error::Tls(format!("bad SNI name {sni:?}: {e}")))?;
                let stream = tokio_rustls::TlsConnector::from(tls.config.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(Error::io(format!("TLS handshake with {addr} for {sni}")))?;
                let mut conn = BufReader::new(stream);
                exchange(&mut conn, self, false).await.map(|(resp, _)| resp)
            },
        )
        .await
    }

    fn describe(&self, addr: SocketAddr) -> String {
        format!(
            "{} http://{}{} via {addr}",
            self.method, self.host, self.path
        )
    }

    fn has_header(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    fn encode(&self, keep_alive: bool) -> Vec<u8> {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nhost: {}\r\n",
            self.method, self.path, self.host
        );
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if !self.has_header("connection") {
            let connection = if keep_alive { "keep-alive" } else { "close" };
            head.push_str(&format!("connection: {connection}\r\n"));
        }
        let needs_length = !self.body.is_empty()
            || matches!(
                self.method.to_ascii_uppercase().as_str(),
                "POST" | "PUT" | "PATCH"
            );
        if needs_length && !self.has_header("content-length") {
            head.push_str(&format!("content-length: {}\r\n", self.body.len()));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

/// Sends a GET with `Host: host` for `path` to 127.0.0.1:`port` over a fresh connection.
pub async fn get(port: u16, host: &str, path: &str) -> Result<Response> {
    Request::get(host, path).send(port).await
}

/// Writes `req` and reads its final response; returns whether the connection may be reused.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut BufReader<S>,
    req: &Request,
    keep_alive: bool,
) -> Result<(Response, bool)> {
    let stream = conn.get_mut();
    stream
        .write_all(&req.encode(keep_alive))
        .await
        .map_err(Error::io("sending a request"))?;
    stream
        .flush()
        .await
        .map_err(Error::io("sending a request"))?;
    loop {
        let head = http1::read_head(conn)
            .await?
            .ok_or_else(|| Error::Protocol("connection closed before a response".into()))?;
        let head = http1::parse_response(&head)?;
        // Interim responses (100 Continue) precede the real one.
        if (100..200).contains(&head.status) && head.status != 101 {
            continue;
        }
        let kind = http1::response_body_kind(&req.method, head.status, &head.headers)?;
        let body = http1::read_body(conn, kind).await?;
        let reusable = kind != http1::BodyKind::UntilClose
            && !http1::has_token(&head.headers, "connection", "close")
            && (head.version == 1 || http1::has_token(&head.headers, "connection", "keep-alive"));
        let response = Response {
            status: head.status,
            headers: head.headers,
            body,
        };
        return Ok((response, reusable));
    }
}

/// A response: status, headers (names lowercased, in order) and the whole body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Headers,
    pub body: Vec<u8>,
}

impl Response {
    /// First value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        http1::header(&self.headers, &name.to_ascii_lowercase())
    }

    /// Every value of header `name` (any case), e.g. several `set-cookie`s.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::Protocol(format!(
                "response {} is not the expected JSON ({e}): {}",
                self.status,
                self.text()
            ))
        })
    }

    /// The test backend's [`Echo`]; fails when something else (say, Envoy) answered.
    pub fn echo(&self) -> Result<Echo> {
        self.json()
    }

    /// Name of the test backend that answered, if one did.
    pub fn backend(&self) -> Option<String> {
        self.echo().ok().map(|e| e.backend)
    }
}

/// One kept-alive connection for several requests in a row.
#[derive(Debug)]
pub struct Connection {
    addr: SocketAddr,
    conn: BufReader<TcpStream>,
    reusable: bool,
}

impl Connection {
    /// Connects to 127.0.0.1:`port`.
    pub async fn open(port: u16) -> Result<Connection> {
        let addr = localhost(port);
        let conn = with_timeout(
            || format!("connecting to {addr}"),
            DEFAULT_TIMEOUT,
            connect(addr),
        )
        .await?;
        Ok(Connection {
            addr,
            conn,
            reusable: true,
        })
    }

    /// Sends `req` with keep-alive on this connection. Fails if the server closed it.
    pub async fn send(&mut self, req: &Request) -> Result<Response> {
        if !self.reusable {
            return Err(Error::Protocol(format!(
                "the connection to {} was closed by the server",
                self.addr
            )));
        }
        let (response, reusable) = with_timeout(|| req.describe(self.addr), req.timeout, async {
            exchange(&mut self.conn, req, true).await
        })
        .await?;
        self.reusable = reusable;
        Ok(response)
    }
}

/// A client WebSocket after a successful handshake.
#[derive(Debug)]
pub struct WebSocket {
    conn: BufReader<TcpStream>,
    handshake: Response,
    timeout: Duration,
}

impl WebSocket {
    /// Opens a WebSocket to 127.0.0.1:`port` with `Host: host` at `path`.
    pub async fn connect(port: u16, host: &str, path: &str) -> Result<WebSocket> {
        WebSocket::connect_with(port, Request::get(host, path)).await
    }

    /// Opens a WebSocket using `request` (method, host, path, extra headers, timeout); the
    /// upgrade headers are added here. A non-101 answer is [`Error::WebSocketRefused`].
    pub async fn connect_with(port: u16, request: Request) -> Result<WebSocket> {
        let addr = localhost(port);
        let key = ws::new_key();
        let request = request
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", &key);
        let timeout = request.timeout;
        with_timeout(|| request.describe(addr), timeout, async {
            let mut conn = connect(addr).await?;
            let (handshake, _) = exchange(&mut conn, &request, true).await?;
            if handshake.status != 101 {
                return Err(Error::WebSocketRefused {
                    status: handshake.status,
                    body: handshake.text(),
                });
            }
            let expected = ws::accept_key(&key);
            if handshake.header("sec-websocket-accept") != Some(expected.as_str()) {
                return Err(Error::Protocol(format!(
                    "bad sec-websocket-accept {:?}, expected {expected}",
                    handshake.header("sec-websocket-accept")
                )));
            }
            Ok(WebSocket {
                conn,
                handshake,
                timeout,
            })
        })
        .await
    }

    /// The 101 response (headers such as [`crate::backend::BACKEND_HEADER`]).
    pub fn handshake(&self) -> &Response {
        &self.handshake
    }

    /// Sends one text message.
    pub async fn send_text(&mut self, text: &str) -> Result<()> {
        let mask = Some(ws::random_mask());
        ws::write_frame(self.conn.get_mut(), ws::OP_TEXT, text.as_bytes(), mask).await
    }

    /// Receives the next text message, answering pings on the way.
    pub async fn recv_text(&mut self) -> Result<String> {
        let timeout = self.timeout;
        with_timeout(|| "a websocket text message".into(), timeout, async {
            let mut text: Vec<u8> = Vec::new();
            loop {
                let frame = ws::read_frame(&mut self.conn).await?.ok_or_else(|| {
                    Error::Protocol("websocket closed before a text message".into())
                })?;
                match frame.opcode {
                    ws::OP_TEXT | ws::OP_CONTINUATION => text.extend_from_slice(&frame.payload),
                    ws::OP_PING => {
                        let mask = Some(ws::random_mask());
                        ws::write_frame(self.conn.get_mut(), ws::OP_PONG, &frame.payload, mask)
                            .await?;
                        continue;
                    }
                    ws::OP_CLOSE => {
                        return Err(Error::Protocol("websocket closed by the server".into()));
                    }
                    other => {
                        return Err(Error::Protocol(format!(
                            "unexpected websocket opcode {other:#x}"
                        )));
                    }
                }
                if frame.fin {
                    return String::from_utf8(text)
                        .map_err(|_| Error::Protocol("websocket text is not UTF-8".into()));
                }
            }
        })
        .await
    }

    /// Sends `text` and returns the next text message received.
    pub async fn round_trip(&mut self, text: &str) -> Result<String> {
        self.send_text(text).await?;
        self.recv_text().await
    }

    /// Sends a normal close (1000) and waits for the server's close.
    pub async fn close(mut self) -> Result<()> {
        let mask = Some(ws::random_mask());
        ws::write_frame(
            self.conn.get_mut(),
            ws::OP_CLOSE,
            &1000u16.to_be_bytes(),
            mask,
        )
        .await?;
        let timeout = self.timeout;
        with_timeout(|| "the websocket close reply".into(), timeout, async {
            loop {
                match ws::read_frame(&mut self.conn).await? {
                    None => return Ok(()),
                    Some(frame) if frame.opcode == ws::OP_CLOSE => return Ok(()),
                    Some(_) => {}
                }
            }
        })
        .await
    }
}
