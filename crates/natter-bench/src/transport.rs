//! How bytes reach the server, and where: the target address (loopback only) and transport.
//!
//! # WebSocket
//! natter serves its line protocol over WebSocket at `/ws` on the same port, one line per
//! text message. [`Transport::Ws`] connects over TCP like [`Transport::Tcp`]; the connection
//! then upgrades and frames its lines ([`crate::ws`]). Nothing above the connection
//! (dialects, accounting, workloads) changes: they see lines in, lines out.
//!
//! # TLS
//! TLS is not a transport of its own but a layer over one ([`Tls`]): the same port speaks TLS
//! when a ClientHello comes first, and wss is WebSocket over the same layer.

use clap::ValueEnum;
use rustls::pki_types::ServerName;
use serde::Serialize;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpStream;

/// How a client reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Plain TCP, one protocol line per LF (or CRLF).
    Tcp,
    /// WebSocket at `/ws` (wss with `--tls`), one protocol line per text message; natter's
    /// line protocol only.
    Ws,
}

impl Transport {
    /// Opens a connection to `addr`, with Nagle's algorithm off.
    pub async fn connect(self, addr: SocketAddr) -> io::Result<TcpStream> {
        match self {
            Self::Tcp | Self::Ws => {
                let s = TcpStream::connect(addr).await?;
                s.set_nodelay(true)?;
                Ok(s)
            }
        }
    }
}

/// What TLS clients trust, and the name they check the server's certificate for.
#[derive(Debug, Clone)]
pub struct Tls {
    /// Roots and protocol versions.
    pub config: Arc<rustls::ClientConfig>,
    /// Sent as SNI and checked against the certificate.
    pub name: ServerName<'static>,
}

impl Tls {
    /// Trusts the CA certificates in the PEM file `ca` (the Mozilla roots without one) and
    /// checks certificates for `name`: a DNS name or an IP address.
    pub fn new(ca: Option<&Path>, name: &str) -> io::Result<Self> {
        let config = natter_conn::tls::client_config(ca).map_err(|e| match ca {
            Some(p) => io::Error::new(e.kind(), format!("{}: {e}", p.display())),
            None => e,
        })?;
        let name = ServerName::try_from(name.to_owned()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("TLS name {name:?}: {e}"),
            )
        })?;
        Ok(Self { config, name })
    }
}

/// The host part of `host:port` (without the brackets of an IPv6 address).
pub fn host_of(target: &str) -> &str {
    let host = target.rsplit_once(':').map_or(target, |(h, _)| h);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
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

    #[test]
    fn tls_names_come_from_the_target_host() {
        assert_eq!(host_of("localhost:8443"), "localhost");
        assert_eq!(host_of("127.0.0.1:8443"), "127.0.0.1");
        assert_eq!(host_of("[::1]:8443"), "::1");
        assert!(Tls::new(None, "localhost").is_ok());
        assert!(Tls::new(None, "::1").is_ok());
        assert!(Tls::new(None, "not a name").is_err());
    }
}
