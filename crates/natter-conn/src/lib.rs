//! natter-conn: a small async client for natter servers, shared by the tests, the benchmark
//! and the GUI.
//!
//! # Layout
//! - [`Client`]: one connection; send commands, receive parsed [`ServerLine`]s.
//!   [`TlsClient`] is the same over TLS, with [`tls::client_config`] choosing what to trust.
//! - [`LineReader`] and [`LineWriter`]: the two halves, for programs that read and write
//!   from different tasks (the benchmark's receivers, the GUI's network thread).
//!
//! Reading is buffered and splits lines with `memchr`, so one client can take hundreds of
//! thousands of lines a second; lines longer than the server's longest are an error, not
//! unbounded memory.

use bytes::{Bytes, BytesMut};
use natter_proto::ServerLine;
use natter_proto::limits::MAX_SERVER_LINE_BYTES;
use std::io;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub use rustls;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpStream, ToSocketAddrs};

pub use natter_proto;

/// Reads whole lines from a natter server.
#[derive(Debug)]
pub struct LineReader<R = OwnedReadHalf> {
    /// The socket's read side.
    inner: R,
    /// Bytes read but not yet returned as lines.
    buf: BytesMut,
}

/// Writes commands to a natter server.
#[derive(Debug)]
pub struct LineWriter<W = OwnedWriteHalf> {
    /// The socket's write side.
    inner: W,
    /// Lines queued by [`LineWriter::queue`] and not yet flushed.
    buf: Vec<u8>,
}

/// One connection to a natter server: TCP by default, or any byte stream's two halves.
#[derive(Debug)]
pub struct Client<R = OwnedReadHalf, W = OwnedWriteHalf> {
    /// Incoming lines.
    pub reader: LineReader<R>,
    /// Outgoing commands.
    pub writer: LineWriter<W>,
}

/// A connection over TLS.
pub type TlsClient = Client<
    tokio::io::ReadHalf<tokio_rustls::client::TlsStream<TcpStream>>,
    tokio::io::WriteHalf<tokio_rustls::client::TlsStream<TcpStream>>,
>;

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    /// Wraps a byte stream.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            buf: BytesMut::with_capacity(8 * 1024),
        }
    }

    /// The next raw line without its line ending; `None` when the server closed the stream.
    pub async fn next_raw(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.buf) {
                let mut line = self.buf.split_to(i + 1);
                line.truncate(i);
                if line.last() == Some(&b'\r') {
                    line.truncate(i - 1);
                }
                return Ok(Some(line.freeze()));
            }
            if self.buf.len() > MAX_SERVER_LINE_BYTES + 2 {
                return Err(invalid("server line too long"));
            }
            self.buf.reserve(16 * 1024);
            if self.inner.read_buf(&mut self.buf).await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(io::ErrorKind::UnexpectedEof.into())
                };
            }
        }
    }

    /// The next line as text.
    pub async fn next_text(&mut self) -> io::Result<Option<String>> {
        match self.next_raw().await? {
            None => Ok(None),
            Some(b) => String::from_utf8(b.to_vec())
                .map(Some)
                .map_err(|_| invalid("server line is not UTF-8")),
        }
    }

    /// The next line, parsed.
    pub async fn next_line(&mut self) -> io::Result<Option<ServerLine<'static>>> {
        match self.next_text().await? {
            None => Ok(None),
            Some(s) => ServerLine::parse(&s)
                .map(|l| Some(l.into_owned()))
                .map_err(|e| invalid(e.to_string())),
        }
    }

    /// Reads lines until one satisfies `want`, returning it and the lines skipped on the way.
    pub async fn until(
        &mut self,
        mut want: impl FnMut(&ServerLine<'_>) -> bool,
    ) -> io::Result<(ServerLine<'static>, Vec<ServerLine<'static>>)> {
        let mut skipped = Vec::new();
        loop {
            match self.next_line().await? {
                None => return Err(io::ErrorKind::UnexpectedEof.into()),
                Some(l) if want(&l) => return Ok((l, skipped)),
                Some(l) => skipped.push(l),
            }
        }
    }
}

impl<W: AsyncWrite + Unpin> LineWriter<W> {
    /// Wraps a byte sink.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            buf: Vec::new(),
        }
    }

    /// Sends one line (a LF is added).
    pub async fn send(&mut self, line: &str) -> io::Result<()> {
        self.queue(line);
        self.flush().await
    }

    /// Adds a line to the batch sent by the next [`flush`](Self::flush).
    pub fn queue(&mut self, line: &str) {
        self.buf.extend_from_slice(line.as_bytes());
        self.buf.push(b'\n');
    }

    /// Sends raw bytes as they are (for tests of framing and bad input).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.flush().await?;
        self.inner.write_all(bytes).await
    }

    /// Sends every queued line in one write.
    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.inner.write_all(&self.buf).await?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Closes the write side.
    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.flush().await?;
        self.inner.shutdown().await
    }
}

/// Why [`Client::register`] failed.
#[derive(Debug)]
pub enum RegisterError {
    /// The server refused the name.
    Refused(natter_proto::ErrorCode, String),
    /// The connection failed.
    Io(io::Error),
}

impl std::fmt::Display for RegisterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused(code, text) => write!(f, "{code}: {text}"),
            Self::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for RegisterError {}

impl From<io::Error> for RegisterError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl Client {
    /// Connects and waits for the server's greeting.
    ///
    /// It first sends a blank line, which the protocol ignores: the server greets a client
    /// as soon as it has seen its first bytes, instead of waiting to see whether it speaks
    /// another protocol.
    pub async fn connect(addr: impl ToSocketAddrs) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (r, w) = stream.into_split();
        Self {
            reader: LineReader::new(r),
            writer: LineWriter::new(w),
        }
        .greeted()
        .await
    }

    /// Connects, retrying refused connections until `within` has passed (a server starting).
    pub async fn connect_retry(addr: &str, within: Duration) -> io::Result<Self> {
        let deadline = tokio::time::Instant::now() + within;
        let mut wait = Duration::from_millis(10);
        loop {
            match Self::connect(addr).await {
                Ok(c) => return Ok(c),
                Err(e) if tokio::time::Instant::now() + wait > deadline => return Err(e),
                Err(_) => tokio::time::sleep(wait).await,
            }
            wait = (wait * 2).min(Duration::from_millis(500));
        }
    }
}

impl TlsClient {
    /// Connects over TLS, checking the server's certificate for `server_name` against
    /// `config`'s roots (see [`tls::client_config`]), and waits for the greeting.
    pub async fn connect_tls(
        addr: impl ToSocketAddrs,
        server_name: &str,
        config: std::sync::Arc<rustls::ClientConfig>,
    ) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let name = rustls::pki_types::ServerName::try_from(server_name.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, stream)
            .await?;
        let (r, w) = tokio::io::split(tls);
        Self {
            reader: LineReader::new(r),
            writer: LineWriter::new(w),
        }
        .greeted()
        .await
    }
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Client<R, W> {
    /// Nudges the server with a blank line (which the protocol ignores, and which makes the
    /// server greet at once instead of waiting to see what protocol the client speaks), then
    /// waits for HELLO.
    async fn greeted(mut self) -> io::Result<Self> {
        self.writer.send("").await?;
        match self.reader.next_line().await? {
            Some(ServerLine::Hello { .. }) => Ok(self),
            Some(ServerLine::Bye { text, .. }) => {
                Err(io::Error::new(io::ErrorKind::ConnectionRefused, text))
            }
            other => Err(invalid(format!("expected HELLO, got {other:?}"))),
        }
    }

    /// Sends one command line.
    pub async fn send(&mut self, line: &str) -> io::Result<()> {
        self.writer.send(line).await
    }

    /// The next line from the server, parsed; `None` once it closed the connection.
    pub async fn recv(&mut self) -> io::Result<Option<ServerLine<'static>>> {
        self.reader.next_line().await
    }

    /// REGISTERs `name` and waits for the answer; events arriving meanwhile are returned too.
    pub async fn register(
        &mut self,
        name: &str,
    ) -> Result<(String, Vec<ServerLine<'static>>), RegisterError> {
        self.send(&format!("REGISTER {name}")).await?;
        let (answer, skipped) = self
            .reader
            .until(|l| match l {
                ServerLine::Ok { verb, .. } => verb == "REGISTER",
                ServerLine::Error { .. } => true,
                _ => false,
            })
            .await?;
        match answer {
            ServerLine::Ok { detail, .. } => Ok((detail.into_owned(), skipped)),
            ServerLine::Error { code, text } => {
                Err(RegisterError::Refused(code, text.into_owned()))
            }
            _ => unreachable!("until() only stops at OK REGISTER or ERROR"),
        }
    }

    /// Splits into halves that can move to different tasks.
    pub fn split(self) -> (LineReader<R>, LineWriter<W>) {
        (self.reader, self.writer)
    }
}

/// TLS settings for clients.
pub mod tls {
    use rustls::RootCertStore;
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    use std::io;
    use std::path::Path;
    use std::sync::Arc;

    /// A client configuration that trusts the certificates in the PEM file `ca` (a private CA
    /// or a self-signed server certificate), or the Mozilla roots when `ca` is `None`.
    pub fn client_config(ca: Option<&Path>) -> io::Result<Arc<rustls::ClientConfig>> {
        let mut roots = RootCertStore::empty();
        match ca {
            Some(path) => {
                for cert in CertificateDer::pem_file_iter(path)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
                {
                    let cert = cert.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    roots
                        .add(cert)
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| io::Error::other(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Arc::new(config))
    }
}
