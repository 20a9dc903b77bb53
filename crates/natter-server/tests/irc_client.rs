//! A real IRC client, WeeChat (Debian's weechat-headless), chats with a native client.
//!
//! WeeChat is driven through its FIFO plugin, and a trigger makes it answer every message it
//! receives from the native user with an `ack` DM, so the test observes what WeeChat got over
//! natter itself instead of reading WeeChat's screen or logs. scripts/test.sh installs
//! weechat-headless and weechat-plugins.

mod common;

use common::{ClientExt, TestServer, within};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A running WeeChat that is stopped when dropped.
struct WeeChat {
    child: Child,
    dir: PathBuf,
}

impl WeeChat {
    fn start(port: u16, nick: &str, dir: PathBuf) -> Self {
        // Anti-flood is off so that WeeChat's answers are not spaced two seconds apart; the
        // trigger answers only the native user, so answers cannot loop.
        let commands = [
            format!("/set irc.server_default.nicks {nick}"),
            format!("/set irc.server_default.username {nick}"),
            "/set irc.server_default.anti_flood_prio_high 0".into(),
            "/set irc.server_default.anti_flood_prio_low 0".into(),
            format!("/server add natter 127.0.0.1/{port} -notls"),
            "/set irc.server.natter.autojoin #lobby".into(),
            // WeeChat evaluates ${...} in startup commands; ${raw:...} keeps them for the
            // trigger to evaluate per message.
            "/trigger add ack signal *,irc_in2_privmsg \"${raw:${nick} == nat}\" \"\" \
             \"/msg -server natter nat ack ${raw:${channel} ${text}}\""
                .into(),
            "/connect natter".into(),
        ];
        let child = Command::new("weechat-headless")
            .arg("--dir")
            .arg(&dir)
            .arg("--run-command")
            .arg(commands.join(";"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("weechat-headless is missing: run scripts/test.sh, which installs it");
        Self { child, dir }
    }

    /// Runs a WeeChat command in the natter server buffer, through the FIFO.
    async fn command(&self, cmd: &str) {
        let fifo = self.dir.join(format!("weechat_fifo_{}", self.child.id()));
        let line = format!("irc.server.natter *{cmd}\n");
        within(tokio::task::spawn_blocking(move || {
            use std::io::Write;
            // Opening a FIFO for writing waits until WeeChat holds it open for reading.
            let mut f = std::fs::OpenOptions::new().write(true).open(fifo)?;
            f.write_all(line.as_bytes())
        }))
        .await
        .unwrap()
        .unwrap();
    }
}

impl Drop for WeeChat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weechat_chats_with_a_native_client() {
    let s = TestServer::start().await;
    let mut nat = s.user("nat").await;
    assert_eq!(nat.ask("JOIN #lobby").await, "MEMBER #lobby @nat");
    assert_eq!(nat.text().await, "OK JOIN #lobby 1");

    let dir = std::env::temp_dir().join(format!("natter-weechat-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let wee = WeeChat::start(s.addr.port(), "weetest", dir);
    assert_eq!(nat.text().await, "ONLINE weetest");
    assert_eq!(nat.text().await, "JOINED #lobby weetest");

    // Native to WeeChat: a room message and a private one, each acknowledged by the trigger.
    // The OK comes once the message is kept, so the trigger's ack may come before it.
    for (line, ok, ack) in [
        (
            "SAY #lobby hello weechat",
            "OK SAY #lobby 1",
            "DM weetest ack #lobby hello weechat",
        ),
        (
            "DM weetest private  hello",
            "OK DM weetest",
            "DM weetest ack weetest private  hello",
        ),
        (
            "MESSAGE to everyone",
            "OK MESSAGE 1",
            "DM weetest ack #everyone to everyone",
        ),
    ] {
        nat.say(line).await;
        let mut got = [nat.text().await, nat.text().await];
        got.sort();
        assert_eq!(got, [ack, ok]);
    }

    // WeeChat to native: typed as a WeeChat user would.
    wee.command("/msg #lobby hi from weechat").await;
    assert_eq!(nat.text().await, "SAY #lobby weetest hi from weechat");
    wee.command("/msg nat psst from weechat").await;
    assert_eq!(nat.text().await, "DM weetest psst from weechat");
    wee.command("/quit").await;
    let mut rest = Vec::new();
    loop {
        let l = nat.text().await;
        if l.starts_with("OFFLINE weetest Quit") {
            break;
        }
        rest.push(l);
    }
    assert!(
        rest.iter().all(|l| l.starts_with("PARTED #lobby weetest")),
        "{rest:?}"
    );
}
