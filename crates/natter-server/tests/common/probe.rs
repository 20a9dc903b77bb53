//! Looking at a server from outside, and behaving badly towards it: HTTP requests and
//! metrics, this process's memory, connections read to their end, trickled and random bytes.

use super::wire::{LOCAL, tcp_from};
use super::{LIMIT, within};
use natter_conn::LineReader;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// One HTTP/1.1 GET from `from`; returns the status, the head and the body.
pub async fn http_get(addr: SocketAddr, from: IpAddr, path: &str) -> (u16, String, String) {
    http_get_with(addr, from, path, "").await
}

/// [`http_get`] with more header lines (each ending in CRLF).
pub async fn http_get_with(
    addr: SocketAddr,
    from: IpAddr,
    path: &str,
    headers: &str,
) -> (u16, String, String) {
    let mut s = tcp_from(from, addr, None).await;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n");
    within(s.write_all(req.as_bytes())).await.unwrap();
    let mut raw = Vec::new();
    within(s.read_to_end(&mut raw)).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

/// One metric (without labels) from `/metrics`, asked from `from`.
pub async fn metric_from(addr: SocketAddr, from: IpAddr, name: &str) -> u64 {
    let (status, _, body) = http_get(addr, from, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} missing from {body}"))
        .parse()
        .unwrap()
}

/// One metric, asked from [`super::wire::OTHER`], outside the attackers' address.
pub async fn metric(addr: SocketAddr, name: &str) -> u64 {
    metric_from(addr, super::wire::OTHER, name).await
}

/// Polls `/metrics` until `name` equals `want` (the server counts a connection closed only
/// once its task has finished, a moment after the client sees the close).
pub async fn metric_becomes(addr: SocketAddr, name: &str, want: u64) {
    let mut last = u64::MAX;
    for _ in 0..500 {
        last = metric(addr, name).await;
        if last == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{name} stayed at {last}, expected {want}");
}

/// Resident memory of this process (the server runs in it), in KiB.
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// How a connection ended, as its client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The server closed it (FIN, TLS close_notify, WebSocket close).
    Closed,
    /// The server reset it (RST): it closed with input of ours still unread.
    Reset,
    /// Still open when the wait ended.
    Open,
}

/// Reads lines until the server closes the connection or `limit` passes (paused time in
/// paused tests); returns the lines (lossily decoded) and how it ended.
pub async fn read_to_close<R: AsyncRead + Unpin>(
    r: &mut LineReader<R>,
    limit: Duration,
) -> (Vec<String>, Ending) {
    let deadline = Instant::now() + limit;
    let mut lines = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, r.next_raw()).await {
            Err(_) => return (lines, Ending::Open),
            Ok(Ok(Some(l))) => lines.push(String::from_utf8_lossy(&l).into_owned()),
            Ok(Ok(None)) => return (lines, Ending::Closed),
            // A partial last line: the connection was cut in the middle of a line.
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return (lines, Ending::Closed);
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset => {
                return (lines, Ending::Reset);
            }
            // TLS without close_notify, a WebSocket cut off: closed all the same.
            Ok(Err(e)) if e.kind() == io::ErrorKind::InvalidData => {
                return (lines, Ending::Closed);
            }
            Ok(Err(e)) => panic!("read failed: {e}"),
        }
    }
}

/// What a connection refused at accept receives: connects from `from` without sending
/// anything (so the refusal closes with a FIN, never a reset) and reads to the end.
pub async fn refused_with(addr: SocketAddr, from: IpAddr) -> Vec<String> {
    let (r, _w) = tcp_from(from, addr, None).await.into_split();
    let (lines, ending) = read_to_close(&mut LineReader::new(r), LIMIT).await;
    assert_eq!(
        ending,
        Ending::Closed,
        "refused connection not closed: {lines:?}"
    );
    lines
}

/// Writes `data` one byte per `every`, until it is all sent or the server has closed the
/// connection; returns how many bytes went out.
pub async fn trickle<W: AsyncWrite + Unpin>(mut w: W, data: Vec<u8>, every: Duration) -> usize {
    for (i, b) in data.iter().enumerate() {
        tokio::time::sleep(every).await;
        if w.write_all(&[*b]).await.is_err() {
            return i;
        }
    }
    data.len()
}

/// Seeded pseudo-random bytes (xorshift64*), so a failure can be replayed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(n);
        out
    }
}

/// A plain TCP connection from [`LOCAL`], for cases about bytes on the wire itself.
pub async fn tcp(addr: SocketAddr) -> tokio::net::TcpStream {
    tcp_from(LOCAL, addr, None).await
}
