//! How bytes reach the server, and where: the target address (loopback only) and transport.
//!
//! # Adding WebSocket
//! natter will serve its line protocol over WebSocket at `/ws` on the same port, one line per
//! text frame. To benchmark it, add a `WebSocket` variant to [`Transport`] and give
//! [`crate::conn::Conn`] a framing step for it:
//! - [`Transport::connect`]: after the TCP connect, send the HTTP/1.1 `GET /ws` upgrade request
//!   and read the `101 Switching Protocols` answer;
//! - `Conn::read_chunk`: unwrap server text frames (unmasked) and hand their payloads on as
//!   lines, exactly as the TCP path hands on the lines it splits at LF;
//! - `Conn::out`: wrap each queued line in a masked client text frame instead of ending it
//!   with LF.
//!
//! Nothing above the connection (dialects, accounting, workloads) needs to change: they see
//! lines in, lines out.

use clap::ValueEnum;
use serde::Serialize;
use std::io;
use std::net::SocketAddr;
use tokio::net::TcpStream;

/// How a client reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Plain TCP, one protocol line per LF (or CRLF).
    Tcp,
}

impl Transport {
    /// Opens a connection to `addr`, with Nagle's algorithm off.
    pub async fn connect(self, addr: SocketAddr) -> io::Result<TcpStream> {
        match self {
            Self::Tcp => {
                let s = TcpStream::connect(addr).await?;
                s.set_nodelay(true)?;
                Ok(s)
            }
        }
    }
}

/// Resolves `target` (`host:port`) and refuses anything that is not a loopback address: the
/// benchmark floods whatever it points at, so it only ever points at this machine.
pub async fn resolve_loopback(target: &str) -> io::Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(target).await?.collect();
    let first = *addrs
        .first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{target}: no address")))?;
    if let Some(bad) = addrs.iter().find(|a| !a.ip().is_loopback()) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{target} resolves to {bad}, which is not a loopback address; refusing"),
        ));
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_loopback_targets() {
        assert!(resolve_loopback("127.0.0.1:6667").await.is_ok());
        assert!(resolve_loopback("127.9.9.9:6667").await.is_ok());
        assert!(resolve_loopback("[::1]:6667").await.is_ok());
        for bad in [
            "10.0.0.1:6667",
            "192.168.1.1:1",
            "8.8.8.8:53",
            "0.0.0.0:6667",
        ] {
            let e = resolve_loopback(bad).await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{bad}");
        }
    }
}
