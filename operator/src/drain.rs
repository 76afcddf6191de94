//! `sluice shutdown-manager`: drains an Envoy before its pod terminates.
//!
//! `sluice shutdown-manager drain` (the sidecar's preStop `exec` hook) fails Envoy's health
//! checks (admin `POST /healthcheck/fail`: the stats listener's `/ready` answers 503, so the pod
//! leaves its Service's endpoints, and Envoy asks HTTP clients to close idle connections), waits
//! `check_delay` for load balancers to notice, then waits until the ingress listeners have no
//! active connection or the drain time is over, and exits. It talks to Envoy's admin over its
//! Unix domain socket; nothing here listens on the network, so no other pod can drain an Envoy.

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Clone, Debug)]
pub struct DrainOptions {
    /// Envoy's admin socket (on the volume the pod's two containers share).
    pub admin_socket: PathBuf,
    /// The stats/health listener's port, whose connections (probes) do not count.
    pub stats_port: u16,
    /// Upper bound for the whole drain.
    pub drain: Duration,
    /// Time for endpoint removal to propagate before connections are counted.
    pub check_delay: Duration,
    pub poll: Duration,
}

/// How a drain ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DrainOutcome {
    /// No active connection was left.
    Drained,
    /// The drain time passed with this many connections still open.
    TimedOut { active: u64 },
    /// Envoy's admin could not be reached (Envoy already gone, or misconfigured).
    AdminUnreachable(String),
}

impl std::fmt::Display for DrainOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Drained => f.write_str("drained"),
            Self::TimedOut { active } => {
                write!(f, "drain time over with {active} connections open")
            }
            Self::AdminUnreachable(e) => write!(f, "Envoy admin unreachable: {e}"),
        }
    }
}

/// Fails health checks, waits for endpoint propagation, then for connections to end.
pub async fn drain(opts: DrainOptions) -> DrainOutcome {
    tracing::info!(admin = %opts.admin_socket.display(), "draining Envoy");
    if let Err(e) = admin_request(&opts.admin_socket, "POST", "/healthcheck/fail").await {
        return DrainOutcome::AdminUnreachable(e.to_string());
    }
    let deadline = tokio::time::Instant::now() + opts.drain;
    tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + opts.check_delay)).await;
    loop {
        let active = match admin_request(
            &opts.admin_socket,
            "GET",
            "/stats?filter=downstream_cx_active$",
        )
        .await
        {
            Ok(body) => active_connections(&body, opts.stats_port),
            // Envoy exited: nothing left to drain.
            Err(_) => return DrainOutcome::Drained,
        };
        if active == 0 {
            tracing::info!("drained");
            return DrainOutcome::Drained;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(active, "drain time over");
            return DrainOutcome::TimedOut { active };
        }
        tokio::time::sleep(opts.poll).await;
    }
}

/// Sums `listener.<address>.downstream_cx_active` over every listener but the stats one.
pub fn active_connections(stats: &str, stats_port: u16) -> u64 {
    let stats_suffix = format!("_{stats_port}.downstream_cx_active");
    stats
        .lines()
        .filter_map(|l| l.split_once(": "))
        .filter(|(name, _)| {
            name.starts_with("listener.")
                && name.ends_with(".downstream_cx_active")
                && !name.starts_with("listener.admin.")
                && !name.ends_with(&stats_suffix)
        })
        .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
        .sum()
}

/// A one-shot HTTP/1.1 request (Connection: close) to Envoy's admin over its Unix socket;
/// returns the body of a 2xx answer.
pub async fn admin_request(
    admin: &std::path::Path,
    method: &str,
    path: &str,
) -> std::io::Result<String> {
    let io = async {
        let mut stream = tokio::net::UnixStream::connect(admin).await?;
        stream
            .write_all(
                format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(5), io)
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "admin request timed out")
        })??;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or((response.as_str(), ""));
    let ok = head
        .split_whitespace()
        .nth(1)
        .is_some_and(|code| code.starts_with('2'));
    let chunked = head.lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.trim().eq_ignore_ascii_case("chunked")
        })
    });
    if ok {
        Ok(if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        })
    } else {
        Err(std::io::Error::other(format!(
            "{method} {path}: {}",
            head.lines().next().unwrap_or("")
        )))
    }
}

/// The payload of a chunked HTTP/1.1 body.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size_line, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(rest.get(..size).unwrap_or(""));
        body = rest.get(size..).unwrap_or("").trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn counts_ingress_listeners_only() {
        let stats = "\
listener.0.0.0.0_8080.downstream_cx_active: 3
listener.0.0.0.0_8443.downstream_cx_active: 2
listener.0.0.0.0_8002.downstream_cx_active: 1
listener.admin.downstream_cx_active: 1
listener.0.0.0.0_8080.downstream_cx_total: 40
http.ingress_http.downstream_cx_active: 3
";
        assert_eq!(active_connections(stats, 8002), 5);
        assert_eq!(active_connections("", 8002), 0);
    }

    /// A fake Envoy admin on a Unix socket: answers each request with the next canned response
    /// and records the request lines.
    async fn fake_admin(
        path: &std::path::Path,
        responses: Vec<&'static str>,
    ) -> tokio::task::JoinHandle<Vec<String>> {
        let listener = tokio::net::UnixListener::bind(path).unwrap();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            for response in responses {
                let (mut conn, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 4096];
                let n = conn.read(&mut buf).await.unwrap();
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                seen.push(text.lines().next().unwrap_or("").to_owned());
                conn.write_all(response.as_bytes()).await.unwrap();
            }
            seen
        })
    }

    #[tokio::test]
    async fn drains_over_the_admin_unix_socket() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("admin.sock");
        let admin = fake_admin(
            &socket,
            vec![
                "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nOK\n",
                "HTTP/1.1 200 OK\r\nContent-Length: 46\r\n\r\nlistener.0.0.0.0_8080.downstream_cx_active: 1\n",
                "HTTP/1.1 200 OK\r\nContent-Length: 46\r\n\r\nlistener.0.0.0.0_8080.downstream_cx_active: 0\n",
            ],
        )
        .await;
        let opts = DrainOptions {
            admin_socket: socket.clone(),
            stats_port: 8002,
            drain: Duration::from_secs(10),
            check_delay: Duration::ZERO,
            poll: Duration::from_millis(10),
        };
        assert_eq!(drain(opts.clone()).await, DrainOutcome::Drained);
        assert_eq!(
            admin.await.unwrap(),
            [
                "POST /healthcheck/fail HTTP/1.1",
                "GET /stats?filter=downstream_cx_active$ HTTP/1.1",
                "GET /stats?filter=downstream_cx_active$ HTTP/1.1",
            ]
        );

        // No socket: reported, not hung.
        std::fs::remove_file(&socket).unwrap();
        assert!(matches!(
            drain(opts).await,
            DrainOutcome::AdminUnreachable(_)
        ));
    }

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(
            dechunk("5\r\nliste\r\n6\r\nner.a:\r\n0\r\n\r\n"),
            "listener.a:"
        );
        assert_eq!(dechunk(""), "");
    }
}
