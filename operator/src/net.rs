//! Binding the operator's TCP servers (xDS, `/metrics` and the health endpoints).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Binds a listener on `addr`. The IPv6 wildcard `[::]` (the default of `sluice run`) binds
/// dual-stack: IPv6, and IPv4 as IPv4-mapped addresses, whatever `net.ipv6.bindv6only` says. Where
/// the kernel has no IPv6 (booted with `ipv6.disable=1`: the socket or the bind fails with
/// `EAFNOSUPPORT` or `EADDRNOTAVAIL`), `[::]` falls back to `0.0.0.0` on the same port, with a
/// warning. Any other address binds as given.
pub fn bind(addr: SocketAddr) -> io::Result<tokio::net::TcpListener> {
    bind_with_fallback(addr, bind_exact)
}

/// `bind(addr)`; when `addr` is `[::]` and IPv6 is unavailable, `bind(0.0.0.0:port)` instead.
fn bind_with_fallback<T>(
    addr: SocketAddr,
    mut bind: impl FnMut(SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    match bind(addr) {
        Err(e) if addr.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED) && ipv6_unavailable(&e) => {
            let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), addr.port());
            tracing::warn!(%addr, error = %e, fallback = %v4, "IPv6 is unavailable on this host; listening on IPv4 only");
            bind(v4)
        }
        other => other,
    }
}

/// Whether `e` says this host has no IPv6 at all (rather than, say, the port being taken).
fn ipv6_unavailable(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(nix::libc::EAFNOSUPPORT | nix::libc::EADDRNOTAVAIL)
    )
}

fn bind_exact(addr: SocketAddr) -> io::Result<tokio::net::TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    if addr.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED) {
        nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::Ipv6V6Only, &false)
            .map_err(io::Error::from)?;
    }
    // As `TcpListener::bind` does: a restarted operator rebinds despite connections in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::cell::RefCell;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    fn errno(code: i32) -> io::Error {
        io::Error::from_raw_os_error(code)
    }

    #[test]
    fn the_ipv6_wildcard_falls_back_to_ipv4_where_ipv6_is_disabled() {
        for code in [nix::libc::EAFNOSUPPORT, nix::libc::EADDRNOTAVAIL] {
            let tried = RefCell::new(Vec::new());
            let got = bind_with_fallback("[::]:8000".parse().unwrap(), |a| {
                tried.borrow_mut().push(a);
                if a.is_ipv6() { Err(errno(code)) } else { Ok(a) }
            });
            assert_eq!(got.unwrap(), "0.0.0.0:8000".parse().unwrap());
            assert_eq!(
                tried.into_inner(),
                [
                    "[::]:8000".parse().unwrap(),
                    "0.0.0.0:8000".parse().unwrap()
                ]
            );
        }
    }

    #[test]
    fn other_errors_and_other_addresses_do_not_fall_back() {
        // A taken port is reported, not papered over with an IPv4-only listener.
        let mut calls = 0;
        let got = bind_with_fallback::<()>("[::]:8000".parse().unwrap(), |_| {
            calls += 1;
            Err(errno(nix::libc::EADDRINUSE))
        });
        assert_eq!(got.unwrap_err().raw_os_error(), Some(nix::libc::EADDRINUSE));
        assert_eq!(calls, 1);
        // An explicit IPv6 address is what the user asked for: no silent IPv4 instead.
        let mut calls = 0;
        let got = bind_with_fallback::<()>("[::1]:8000".parse().unwrap(), |_| {
            calls += 1;
            Err(errno(nix::libc::EADDRNOTAVAIL))
        });
        assert!(got.is_err());
        assert_eq!(calls, 1);
    }

    async fn echo_once(listener: &tokio::net::TcpListener, client: SocketAddr) {
        let connect = tokio::net::TcpStream::connect(client);
        let (accepted, connected) = tokio::join!(listener.accept(), connect);
        let (mut server, _) = accepted.unwrap();
        let mut client = connected.unwrap();
        client.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
    }

    #[tokio::test]
    async fn the_ipv6_wildcard_accepts_ipv6_and_ipv4() {
        let listener = bind("[::]:0".parse().unwrap()).unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(listener.local_addr().unwrap().is_ipv6());
        echo_once(&listener, SocketAddr::from((Ipv6Addr::LOCALHOST, port))).await;
        echo_once(&listener, SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await;
    }

    #[tokio::test]
    async fn specific_addresses_bind_as_given() {
        let v4 = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        assert_eq!(v4.local_addr().unwrap().ip(), Ipv4Addr::LOCALHOST);
        let v6 = bind("[::1]:0".parse().unwrap()).unwrap();
        assert_eq!(v6.local_addr().unwrap().ip(), Ipv6Addr::LOCALHOST);
        let port = v6.local_addr().unwrap().port();
        echo_once(&v6, SocketAddr::from((Ipv6Addr::LOCALHOST, port))).await;
    }
}
