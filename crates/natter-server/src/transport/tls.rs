//! TLS as a wire: rustls driven sans-IO between the socket's non-blocking calls, so a TLS
//! connection runs in the same one-task, readiness-driven [driver](super::driver) as a plain
//! one, with no reader and writer task pair and no stream adapter holding buffers.
//!
//! rustls keeps what it decrypted and what it encrypted in its own bounded buffers: a read
//! takes decrypted bytes out (reading records from the socket when it has none), a write
//! hands plaintext in (as far as its buffer limit allows) and pushes records to the socket
//! until it would block.

use super::wire::{Wire, retry};
use rustls::ServerConnection;
use std::io::{self, IoSlice, Read as _, Write as _};
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::net::TcpStream;

/// The socket as `std::io` for rustls, never waiting: `WouldBlock` means wait for readiness.
struct NoWait<'a>(&'a TcpStream);

impl io::Read for NoWait<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl io::Write for NoWait<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}"))
}

/// A TLS connection over a TCP socket.
pub struct TlsWire {
    /// The socket.
    tcp: TcpStream,
    /// rustls's state and buffers (boxed: large, and moved about while the connection is set
    /// up).
    conn: Box<ServerConnection>,
    /// Whether rustls holds decrypted bytes not read yet: the socket will not signal them.
    buffered: bool,
}

impl std::fmt::Debug for TlsWire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsWire")
            .field("peer", &self.tcp.peer_addr().ok())
            .finish_non_exhaustive()
    }
}

impl TlsWire {
    /// Completes a TLS handshake on `tcp`, whose first bytes (`prefix`, the start of the
    /// ClientHello) were read already. Bound it in time: it waits for the peer.
    pub async fn accept(
        tcp: TcpStream,
        prefix: &[u8],
        config: Arc<rustls::ServerConfig>,
    ) -> io::Result<Self> {
        let mut conn = Box::new(ServerConnection::new(config).map_err(tls_error)?);
        let mut early = prefix;
        while !early.is_empty() {
            conn.read_tls(&mut early)?;
            conn.process_new_packets().map_err(tls_error)?;
        }
        let mut tls = Self {
            tcp,
            conn,
            buffered: false,
        };
        loop {
            if tls.conn.wants_write() {
                match retry(|| tls.conn.write_tls(&mut NoWait(&tls.tcp))) {
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        tls.tcp.writable().await?;
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            if !tls.conn.is_handshaking() {
                break;
            }
            match retry(|| tls.conn.read_tls(&mut NoWait(&tls.tcp))) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => {
                    if let Err(e) = tls.conn.process_new_packets() {
                        // Tell the client why, then give up.
                        let _ = tls.conn.write_tls(&mut NoWait(&tls.tcp));
                        return Err(tls_error(e));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => tls.tcp.readable().await?,
                Err(e) => return Err(e),
            }
        }
        // The client's first records may have come with its last handshake flight.
        tls.buffered = true;
        Ok(tls)
    }

    /// Writes the records rustls holds as far as the socket takes them; `true` once none
    /// are left.
    fn push_records(&mut self) -> io::Result<bool> {
        while self.conn.wants_write() {
            match retry(|| self.conn.write_tls(&mut NoWait(&self.tcp))) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

impl Wire for TlsWire {
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.buffered {
            return Poll::Ready(Ok(()));
        }
        self.tcp.poll_read_ready(cx)
    }

    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => {
                    let state = self.conn.process_new_packets().map_err(tls_error)?;
                    self.buffered = state.plaintext_bytes_to_read() > 0;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The client closed the socket without close_notify: an end all the same.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    self.buffered = false;
                    return Ok(0);
                }
                Err(e) => return Err(e),
            }
            self.buffered = false;
            // After the end of the socket's input the reader answers above, so this ends.
            retry(|| self.conn.read_tls(&mut NoWait(&self.tcp)))?;
            let processed = self.conn.process_new_packets();
            // Alerts and answers to the client's post-handshake messages go out now if they
            // can; the rest with the next write.
            let _ = self.push_records();
            processed.map_err(tls_error)?;
        }
    }

    fn poll_write_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tcp.poll_write_ready(cx)
    }

    fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.push_records()?;
        let n = self.conn.writer().write_vectored(bufs)?;
        self.push_records()?;
        if n == 0 && bufs.iter().any(|b| !b.is_empty()) {
            // rustls's buffer is full of records the socket will not take yet.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    fn wants_flush(&self) -> bool {
        self.conn.wants_write()
    }

    fn try_flush(&mut self) -> io::Result<bool> {
        self.push_records()
    }

    fn close(&mut self, _going_away: bool) {
        self.conn.send_close_notify();
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.peer_addr()
    }

    fn tcp(&self) -> &TcpStream {
        &self.tcp
    }
}

/// For hyper, which serves HTTP inside TLS through `AsyncRead` and `AsyncWrite`.
impl tokio::io::AsyncRead for TlsWire {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match this.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::task::ready!(Wire::poll_read_ready(this, cx))?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl tokio::io::AsyncWrite for TlsWire {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            match this.try_write_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::task::ready!(Wire::poll_write_ready(this, cx))?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => return Poll::Ready(r),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match this.try_flush() {
                Ok(true) => return Poll::Ready(Ok(())),
                Ok(false) => std::task::ready!(Wire::poll_write_ready(this, cx))?,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::task::ready!(Wire::poll_write_ready(this, cx))?;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        self.conn.send_close_notify();
        std::task::ready!(self.as_mut().poll_flush(cx))?;
        Poll::Ready(socket2::SockRef::from(&self.tcp).shutdown(std::net::Shutdown::Write))
    }
}
