//! Connections over every transport natter serves on its shared port (plain TCP, TLS, and
//! WebSocket), all as one kind of byte stream, so a test written once runs over each.
//!
//! Over WebSocket the stream is mapped onto messages the way natter maps them: each line
//! written becomes one text message, and bytes written without their newline yet begin a
//! fragmented message that goes on (one fragment per write) until the newline ends it. So
//! trickling a line byte by byte, or streaming a line of ten mebibytes, means the same thing
//! on every transport. Reading gives each message the server sends as a line.

use super::within;
use bytes::{Buf, BytesMut};
use natter_conn::{Client, LineReader, LineWriter};
use natter_server::Config;
use natter_server::tls::Tls;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};

/// How a client reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Plain TCP.
    Tcp,
    /// TLS on the shared port.
    Tls,
    /// WebSocket at `/ws` on the shared port.
    Ws,
}

impl Transport {
    /// Every transport, for tests that run over each.
    pub const ALL: [Transport; 3] = [Transport::Tcp, Transport::Tls, Transport::Ws];
}

/// The address attackers (and most test clients) connect from.
pub const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Another loopback address, for a bystander the per-address limits must not touch.
pub const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// A test certificate file (`tests/tls/`).
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/tls")
        .join(name)
}

/// `config` with the test certificate for `localhost`, so its shared port takes TLS too.
pub fn with_tls(mut config: Config) -> Config {
    config.tls = Some(Arc::new(
        Tls::new(fixture("cert-a.pem"), fixture("key-a.pem")).unwrap(),
    ));
    config
}

/// A byte stream to the server over any transport.
pub trait Duplex: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Duplex for T {}

/// The read half of a [`Duplex`].
pub type Rd = tokio::io::ReadHalf<Box<dyn Duplex>>;
/// The write half of a [`Duplex`].
pub type Wr = tokio::io::WriteHalf<Box<dyn Duplex>>;
/// A client over any transport.
pub type AnyClient = Client<Rd, Wr>;

/// A TCP connection from `from` (a loopback address) to `addr`, with a receive buffer of
/// `rcvbuf` bytes if given (set before connecting, so the window is small from the start).
pub async fn tcp_from(from: IpAddr, addr: SocketAddr, rcvbuf: Option<u32>) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(from, 0)).unwrap();
    if let Some(n) = rcvbuf {
        sock.set_recv_buffer_size(n).unwrap();
    }
    let stream = within(sock.connect(addr)).await.unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Opens a connection over `t` from `from`: past the TLS handshake or the WebSocket upgrade,
/// before the server has said anything.
pub async fn open(t: Transport, from: IpAddr, addr: SocketAddr) -> Box<dyn Duplex> {
    open_with(t, from, addr, None).await
}

/// [`open`], with a receive buffer of `rcvbuf` bytes.
pub async fn open_with(
    t: Transport,
    from: IpAddr,
    addr: SocketAddr,
    rcvbuf: Option<u32>,
) -> Box<dyn Duplex> {
    let tcp = tcp_from(from, addr, rcvbuf).await;
    match t {
        Transport::Tcp => Box::new(tcp),
        Transport::Tls => Box::new(tls_over(tcp).await.unwrap()),
        Transport::Ws => {
            let host = addr.to_string();
            Box::new(within(WsStream::upgrade(tcp, &host, None)).await.unwrap())
        }
    }
}

/// The TLS handshake on `tcp`, trusting the test certificate.
pub async fn tls_over(tcp: TcpStream) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let trust = natter_conn::tls::client_config(Some(&fixture("ca-a.pem")))?;
    let name = natter_conn::rustls::pki_types::ServerName::try_from("localhost").unwrap();
    within(tokio_rustls::TlsConnector::from(trust).connect(name, tcp)).await
}

/// A connection's two halves as line reader and writer.
pub fn halves(d: Box<dyn Duplex>) -> (LineReader<Rd>, LineWriter<Wr>) {
    let (r, w) = tokio::io::split(d);
    (LineReader::new(r), LineWriter::new(w))
}

/// A native client over `t` from `from`, past the greeting.
pub async fn client(t: Transport, from: IpAddr, addr: SocketAddr) -> AnyClient {
    let (reader, writer) = halves(open(t, from, addr).await);
    let mut c = Client { reader, writer };
    // A blank line, which the protocol ignores, makes a TCP client greeted at once.
    within(c.writer.send("")).await.unwrap();
    let hello = within(c.reader.next_text()).await.unwrap().unwrap();
    assert!(hello.starts_with("HELLO "), "expected HELLO, got {hello:?}");
    c
}

/// A native client over `t`, registered as `name`.
pub async fn user(t: Transport, addr: SocketAddr, name: &str) -> AnyClient {
    let mut c = client(t, LOCAL, addr).await;
    let (got, _) = within(c.register(name)).await.unwrap();
    assert_eq!(got, name);
    c
}

/// The answer to a WebSocket upgrade at `/ws` with these `Host` and `Origin` headers: its
/// status code.
pub async fn upgrade_status(addr: SocketAddr, host: &str, origins: &[&str]) -> u16 {
    let mut tcp = tcp_from(LOCAL, addr, None).await;
    let mut req = format!(
        "GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    for o in origins {
        req.push_str(&format!("Origin: {o}\r\n"));
    }
    req.push_str("\r\n");
    within(tcp.write_all(req.as_bytes())).await.unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if within(tcp.read(&mut b)).await.unwrap() == 0 {
            break;
        }
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head);
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

const TEXT: u8 = 0x1;
const CONTINUATION: u8 = 0x0;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// A WebSocket client as a byte stream (see the module docs).
pub struct WsStream<S> {
    inner: S,
    /// Bytes read and not yet decoded (an incomplete frame).
    raw: BytesMut,
    /// Decoded message bytes, each message ended with LF, not yet read.
    decoded: BytesMut,
    /// The server closed the WebSocket (or the socket).
    eof: bool,
    /// Frames not yet written.
    out: Vec<u8>,
    /// Bytes of `out` written.
    written: usize,
    /// How many bytes of the caller's buffer `out` holds, once encoded.
    accepted: Option<usize>,
    /// A message has begun whose newline has not been written yet.
    open: bool,
    /// Our close frame is queued.
    closing: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsStream<S> {
    /// Upgrades `inner` to a WebSocket at `/ws` on `host`, with an `Origin` if given.
    pub async fn upgrade(mut inner: S, host: &str, origin: Option<&str>) -> io::Result<Self> {
        let key = tokio_tungstenite::tungstenite::handshake::client::generate_key();
        let mut req = format!(
            "GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        );
        if let Some(o) = origin {
            req.push_str(&format!("Origin: {o}\r\n"));
        }
        req.push_str("\r\n");
        inner.write_all(req.as_bytes()).await?;
        let mut raw = BytesMut::new();
        let end = loop {
            if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if inner.read_buf(&mut raw).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        };
        let head = String::from_utf8_lossy(&raw[..end]).into_owned();
        if head.split(' ').nth(1) != Some("101") {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("upgrade refused: {head}"),
            ));
        }
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        if !head
            .to_ascii_lowercase()
            .contains(&accept.to_ascii_lowercase())
        {
            return Err(io::Error::other(format!("wrong accept key: {head}")));
        }
        raw.advance(end);
        Ok(Self {
            inner,
            raw,
            decoded: BytesMut::new(),
            eof: false,
            out: Vec::new(),
            written: 0,
            accepted: None,
            open: false,
            closing: false,
        })
    }

    /// Decodes the complete frames in `raw`; whether any was.
    fn decode(&mut self) -> io::Result<bool> {
        let mut any = false;
        loop {
            if self.raw.len() < 2 || self.eof {
                return Ok(any);
            }
            let (b0, b1) = (self.raw[0], self.raw[1]);
            if b1 & 0x80 != 0 {
                return Err(io::Error::other("a masked frame from the server"));
            }
            let (head, len) = match b1 & 0x7F {
                126 if self.raw.len() >= 4 => {
                    (4, u16::from_be_bytes([self.raw[2], self.raw[3]]) as usize)
                }
                127 if self.raw.len() >= 10 => {
                    let mut n = [0; 8];
                    n.copy_from_slice(&self.raw[2..10]);
                    (10, u64::from_be_bytes(n) as usize)
                }
                126 | 127 => return Ok(any),
                n => (2, n as usize),
            };
            if self.raw.len() < head + len {
                return Ok(any);
            }
            any = true;
            let payload = self.raw[head..head + len].to_vec();
            self.raw.advance(head + len);
            match b0 & 0x0F {
                CLOSE => self.eof = true,
                PING | PONG => {}
                _ => {
                    self.decoded.extend_from_slice(&payload);
                    if b0 & 0x80 != 0 {
                        self.decoded.extend_from_slice(b"\n");
                    }
                }
            }
        }
    }

    /// Appends one masked frame.
    fn frame(&mut self, opcode: u8, fin: bool, payload: &[u8]) {
        let mask = [0x5a, 0x1f, 0xc3, 0x77];
        self.out.push(if fin { 0x80 } else { 0 } | opcode);
        match payload.len() {
            n @ 0..=125 => self.out.push(0x80 | n as u8),
            n @ 126..=0xFFFF => {
                self.out.push(0x80 | 126);
                self.out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                self.out.push(0x80 | 127);
                self.out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        self.out.extend_from_slice(&mask);
        self.out
            .extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    }

    /// Frames `buf`: each newline ends a message, a tail without one begins or continues one.
    fn encode(&mut self, buf: &[u8]) {
        let mut rest = buf;
        while let Some(i) = rest.iter().position(|&b| b == b'\n') {
            let line = &rest[..i];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let op = if self.open { CONTINUATION } else { TEXT };
            self.frame(op, true, line);
            self.open = false;
            rest = &rest[i + 1..];
        }
        // Fragments of at most 64 KiB, so a long stream is many frames, as a browser's is.
        for part in rest.chunks(64 * 1024) {
            let op = if self.open { CONTINUATION } else { TEXT };
            self.frame(op, false, part);
            self.open = true;
        }
    }

    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.out.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.out.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.decoded.is_empty() {
                let n = this.decoded.len().min(buf.remaining());
                buf.put_slice(&this.decoded[..n]);
                this.decoded.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            if this.decode()? {
                continue;
            }
            let mut chunk = [0u8; 16 * 1024];
            let mut rb = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
            if rb.filled().is_empty() {
                this.eof = true;
            } else {
                this.raw.extend_from_slice(rb.filled());
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.accepted.is_none() {
            ready!(this.poll_write_out(cx))?;
            this.encode(buf);
            this.accepted = Some(buf.len());
        }
        ready!(this.poll_write_out(cx))?;
        Poll::Ready(Ok(this.accepted.take().unwrap_or(0)))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_out(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    /// Sends a close frame: the WebSocket's half-close.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.closing {
            ready!(this.poll_write_out(cx))?;
            this.frame(CLOSE, true, &1000u16.to_be_bytes());
            this.closing = true;
        }
        ready!(this.poll_write_out(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }
}
