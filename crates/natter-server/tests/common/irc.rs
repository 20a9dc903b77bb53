//! A raw IRC connection for tests: lines out with CRLF, lines in without.

use super::wire::{self, Rd, Transport, Wr};
use super::within;
use natter_conn::{LineReader, LineWriter};
use std::net::SocketAddr;

/// `AUTHENTICATE` data for SASL PLAIN.
pub fn sasl_plain(account: &str, password: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("\0{account}\0{password}"))
}

/// A raw IRC connection.
pub struct Irc {
    pub r: LineReader<Rd>,
    pub w: LineWriter<Wr>,
}

impl Irc {
    /// Connects over plain TCP.
    pub async fn connect(addr: SocketAddr) -> Self {
        Self::connect_over(Transport::Tcp, addr).await
    }

    /// Connects over `t` (IRC is served over TCP and TLS).
    pub async fn connect_over(t: Transport, addr: SocketAddr) -> Self {
        let (r, w) = wire::halves(wire::open(t, wire::LOCAL, addr).await);
        Self { r, w }
    }

    /// Connects with the capabilities `caps` (and `sasl`), logs into `account` with SASL
    /// PLAIN and registers, skipping the welcome burst up to 001.
    pub async fn logged_in(addr: SocketAddr, caps: &str, account: &str) -> Self {
        let mut irc = Self::connect(addr).await;
        irc.send("CAP LS 302").await;
        irc.send(&format!("CAP REQ :sasl {caps}")).await;
        irc.skip_to(" ACK ").await;
        irc.send(&format!("NICK {account}")).await;
        irc.send(&format!("USER {account} 0 * :{account}")).await;
        irc.send("AUTHENTICATE PLAIN").await;
        irc.skip_to("AUTHENTICATE +").await;
        irc.send(&format!("AUTHENTICATE {}", sasl_plain(account, super::PW)))
            .await;
        irc.skip_to(" 903 ").await;
        irc.send("CAP END").await;
        irc.skip_to(" 001 ").await;
        irc
    }

    /// Connects and registers as `nick`, skipping the welcome burst up to the everyone
    /// channel's NAMES.
    pub async fn user(addr: SocketAddr, nick: &str) -> Self {
        Self::user_over(Transport::Tcp, addr, nick).await
    }

    /// [`Irc::user`] with the capabilities `caps` negotiated first.
    pub async fn with_caps(addr: SocketAddr, nick: &str, caps: &str) -> Self {
        let mut c = Self::connect(addr).await;
        c.send("CAP LS 302").await;
        c.send(&format!("CAP REQ :{caps}")).await;
        c.skip_to(" ACK ").await;
        c.send(&format!("NICK {nick}")).await;
        c.send(&format!("USER {nick} 0 * :{nick} real")).await;
        c.send("CAP END").await;
        c.skip_to(" 366 ").await;
        c
    }

    /// [`Irc::user`] over `t`.
    pub async fn user_over(t: Transport, addr: SocketAddr, nick: &str) -> Self {
        let mut c = Self::connect_over(t, addr).await;
        c.send(&format!("NICK {nick}")).await;
        c.send(&format!("USER {nick} 0 * :{nick} real")).await;
        c.skip_to(" 366 ").await;
        c
    }

    /// Leaves the everyone channel, so that only its rooms' events reach it.
    pub async fn part_everyone(&mut self) {
        self.send("PART #everyone").await;
        self.skip_to(" PART #everyone").await;
    }

    /// Joins `chan`, skipping its answer up to the end of its NAMES.
    pub async fn join(&mut self, chan: &str) {
        self.send(&format!("JOIN {chan}")).await;
        self.skip_to(" 366 ").await;
    }

    pub async fn send(&mut self, line: &str) {
        within(self.w.send_raw(format!("{line}\r\n").as_bytes()))
            .await
            .unwrap();
    }

    pub async fn line(&mut self) -> String {
        within(self.r.next_text())
            .await
            .unwrap()
            .expect("connection closed")
    }

    /// Reads until a line containing `needle`; returns it.
    pub async fn skip_to(&mut self, needle: &str) -> String {
        loop {
            let l = self.line().await;
            if l.contains(needle) {
                return l;
            }
        }
    }

    /// Sends `line` and expects the next line to be numeric `code`.
    pub async fn expect(&mut self, line: &str, code: &str) -> String {
        self.send(line).await;
        let got = self.line().await;
        assert_eq!(
            got.split(' ').nth(1),
            Some(code),
            "{line:?} should answer {code}, got {got:?}"
        );
        got
    }

    /// Proves nothing else is queued: a PING's PONG must come next.
    pub async fn quiet(&mut self) {
        self.send("PING :quiet").await;
        let l = self.line().await;
        assert!(l.ends_with("PONG natter quiet"), "unexpected {l:?}");
    }
}
