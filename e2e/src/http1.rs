//! Just enough HTTP/1.1 framing for the test backends and the test client: heads parsed with
//! `httparse`, bodies delimited by `Content-Length`, chunked encoding or connection close.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

use crate::{Error, Result};

/// Upper bound on a request or response head; anything larger is a bug in the test.
const MAX_HEAD: usize = 64 * 1024;
/// Upper bound on a body; test payloads are small.
const MAX_BODY: usize = 16 * 1024 * 1024;
const MAX_HEADERS: usize = 128;

/// Header list with lowercased names, in arrival order.
pub(crate) type Headers = Vec<(String, String)>;

/// First value of header `name` (lowercase).
pub(crate) fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Whether header `name` holds `token` in its comma-separated list (case-insensitive).
pub(crate) fn has_token(headers: &Headers, name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|(n, _)| n == name)
        .flat_map(|(_, v)| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Reads one head up to and including the blank line. `Ok(None)` on a clean end of stream
/// before the first byte (the peer closed an idle keep-alive connection).
pub(crate) async fn read_head<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<Option<Vec<u8>>> {
    let mut head = Vec::new();
    loop {
        let start = head.len();
        let n = reader
            .read_until(b'\n', &mut head)
            .await
            .map_err(Error::io("reading an HTTP head"))?;
        if n == 0 {
            return if head.is_empty() {
                Ok(None)
            } else {
                Err(Error::Protocol(
                    "connection closed inside an HTTP head".into(),
                ))
            };
        }
        let line = &head[start..];
        // Leading empty lines before a request are allowed (RFC 9112 §2.2); skip them.
        if (line == b"\r\n" || line == b"\n") && start == 0 {
            head.clear();
            continue;
        }
        if line == b"\r\n" || line == b"\n" {
            return Ok(Some(head));
        }
        if head.len() > MAX_HEAD {
            return Err(Error::Protocol(format!(
                "HTTP head longer than {MAX_HEAD} bytes"
            )));
        }
    }
}

fn collect_headers(raw: &[httparse::Header<'_>]) -> Headers {
    raw.iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect()
}

pub(crate) struct RequestHead {
    pub method: String,
    pub path: String,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    pub headers: Headers,
}

pub(crate) fn parse_request(buf: &[u8]) -> Result<RequestHead> {
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut raw);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(Error::Protocol("incomplete request head".into()));
        }
        Err(e) => return Err(Error::Protocol(format!("bad request head: {e}"))),
    }
    Ok(RequestHead {
        method: req.method.unwrap_or_default().to_owned(),
        path: req.path.unwrap_or_default().to_owned(),
        version: req.version.unwrap_or(1),
        headers: collect_headers(req.headers),
    })
}

pub(crate) struct ResponseHead {
    pub status: u16,
    pub version: u8,
    pub headers: Headers,
}

pub(crate) fn parse_response(buf: &[u8]) -> Result<ResponseHead> {
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut raw);
    match resp.parse(buf) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(Error::Protocol("incomplete response head".into()));
        }
        Err(e) => return Err(Error::Protocol(format!("bad response head: {e}"))),
    }
    Ok(ResponseHead {
        status: resp.code.unwrap_or_default(),
        version: resp.version.unwrap_or(1),
        headers: collect_headers(resp.headers),
    })
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyKind {
    Empty,
    Length(usize),
    Chunked,
    UntilClose,
}

/// Body framing of a request (RFC 9112 §6.3: no length and no chunking means no body).
pub(crate) fn request_body_kind(headers: &Headers) -> Result<BodyKind> {
    body_kind(headers, BodyKind::Empty)
}

/// Body framing of a response to a request with `method`.
pub(crate) fn response_body_kind(method: &str, status: u16, headers: &Headers) -> Result<BodyKind> {
    if method.eq_ignore_ascii_case("HEAD")
        || (100..200).contains(&status)
        || status == 204
        || status == 304
    {
        return Ok(BodyKind::Empty);
    }
    body_kind(headers, BodyKind::UntilClose)
}

fn body_kind(headers: &Headers, otherwise: BodyKind) -> Result<BodyKind> {
    if has_token(headers, "transfer-encoding", "chunked") {
        return Ok(BodyKind::Chunked);
    }
    match header(headers, "content-length") {
        Some(v) => v
            .trim()
            .parse()
            .map(BodyKind::Length)
            .map_err(|_| Error::Protocol(format!("bad content-length {v:?}"))),
        None => Ok(otherwise),
    }
}

pub(crate) async fn read_body<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    kind: BodyKind,
) -> Result<Vec<u8>> {
    match kind {
        BodyKind::Empty => Ok(Vec::new()),
        BodyKind::Length(n) => {
            if n > MAX_BODY {
                return Err(Error::Protocol(format!("body of {n} bytes is too large")));
            }
            let mut body = vec![0; n];
            reader
                .read_exact(&mut body)
                .await
                .map_err(Error::io("reading a body"))?;
            Ok(body)
        }
        BodyKind::UntilClose => {
            let mut body = Vec::new();
            reader
                .take(MAX_BODY as u64)
                .read_to_end(&mut body)
                .await
                .map_err(Error::io("reading a body until close"))?;
            Ok(body)
        }
        BodyKind::Chunked => read_chunked(reader).await,
    }
}

async fn read_line<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<String> {
    let mut line = Vec::new();
    let n = reader
        .read_until(b'\n', &mut line)
        .await
        .map_err(Error::io("reading a chunk header"))?;
    if n == 0 {
        return Err(Error::Protocol(
            "connection closed inside a chunked body".into(),
        ));
    }
    Ok(String::from_utf8_lossy(&line).trim_end().to_owned())
}

async fn read_chunked<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader).await?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| Error::Protocol(format!("bad chunk size {line:?}")))?;
        if size == 0 {
            // Trailers, if any, end with an empty line.
            while !read_line(reader).await?.is_empty() {}
            return Ok(body);
        }
        if body.len() + size > MAX_BODY {
            return Err(Error::Protocol("chunked body is too large".into()));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader
            .read_exact(&mut body[start..])
            .await
            .map_err(Error::io("reading a chunk"))?;
        if !read_line(reader).await?.is_empty() {
            return Err(Error::Protocol("chunk not followed by CRLF".into()));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use tokio::io::BufReader;

    #[tokio::test]
    async fn reads_a_chunked_body_with_extensions_and_trailers() {
        let wire = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
        let mut reader = BufReader::new(&wire[..]);
        let body = read_body(&mut reader, BodyKind::Chunked).await.unwrap();
        assert_eq!(body, b"hello world");
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"NEXT", "the reader stops right after the body");
    }

    #[tokio::test]
    async fn reads_consecutive_heads_and_reports_clean_eof() {
        let wire = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHOST: y\r\n\r\n";
        let mut reader = BufReader::new(&wire[..]);
        let a = parse_request(&read_head(&mut reader).await.unwrap().unwrap()).unwrap();
        let b = parse_request(&read_head(&mut reader).await.unwrap().unwrap()).unwrap();
        assert_eq!(
            (a.path.as_str(), header(&a.headers, "host")),
            ("/a", Some("x"))
        );
        assert_eq!(
            (b.path.as_str(), header(&b.headers, "host")),
            ("/b", Some("y"))
        );
        assert!(read_head(&mut reader).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn eof_inside_a_head_is_an_error() {
        let mut reader = BufReader::new(&b"GET / HTTP/1.1\r\nHost"[..]);
        assert!(read_head(&mut reader).await.is_err());
    }

    #[test]
    fn body_framing_follows_the_headers() {
        let h = |pairs: &[(&str, &str)]| -> Headers {
            pairs
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert_eq!(request_body_kind(&h(&[])).unwrap(), BodyKind::Empty);
        assert_eq!(
            request_body_kind(&h(&[("content-length", "3")])).unwrap(),
            BodyKind::Length(3)
        );
        assert_eq!(
            request_body_kind(&h(&[("transfer-encoding", "gzip, chunked")])).unwrap(),
            BodyKind::Chunked
        );
        assert_eq!(
            response_body_kind("GET", 200, &h(&[])).unwrap(),
            BodyKind::UntilClose
        );
        assert_eq!(
            response_body_kind("HEAD", 200, &h(&[("content-length", "9")])).unwrap(),
            BodyKind::Empty
        );
        assert_eq!(
            response_body_kind("GET", 101, &h(&[])).unwrap(),
            BodyKind::Empty
        );
        assert!(request_body_kind(&h(&[("content-length", "x")])).is_err());
    }
}
