//! The real window, driven through its accessibility tree (egui_kittest, no GPU), against a
//! real natter-server running in this process on an ephemeral loopback port.
//!
//! Nothing sleeps to synchronise. A test waits for the window by stepping it until a condition
//! holds, blocking between steps on the app's network channel (`wait_for_network`), and for
//! natter-conn clients by awaiting their lines; every wait is bounded by [`LIMIT`] and fails
//! the test when it passes.

use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use natter_client::model::{ConvId, HistoryStatus, Link, Screen, day_label};
use natter_client::net::{NetConfig, TlsOptions};
use natter_client::{ChatApp, Options};
use natter_conn::Client;
use natter_proto::ServerLine;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The longest any one wait may take before the test fails.
const LIMIT: Duration = Duration::from_secs(20);

/// A runtime for the server and the natter-conn clients; the window runs on the test thread.
fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A natter-server in this process.
struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Server {
    /// Starts a server on an ephemeral port.
    fn start(rt: &Runtime) -> Self {
        Self::on(rt, "127.0.0.1:0".parse().unwrap())
    }

    /// Starts a server on an ephemeral port that also speaks TLS, with the test certificate
    /// for `localhost` signed by test CA A.
    fn start_tls(rt: &Runtime) -> Self {
        let tls =
            natter_server::tls::Tls::new(fixture("cert-a.pem"), fixture("key-a.pem")).unwrap();
        Self::with(
            rt,
            "127.0.0.1:0".parse().unwrap(),
            natter_server::Config {
                tls: Some(Arc::new(tls)),
                ..Self::config()
            },
        )
    }

    /// Starts a server on `addr` (binding it again after a stop).
    fn on(rt: &Runtime, addr: SocketAddr) -> Self {
        Self::with(rt, addr, Self::config())
    }

    /// The tests' server configuration.
    fn config() -> natter_server::Config {
        natter_server::Config {
            shutdown_grace: Duration::from_millis(500),
            ..Default::default()
        }
    }

    /// The tests' configuration with the history kept in SQLite in `dir`, as a real server
    /// keeps it (and keeps it across a restart).
    fn stored(dir: &std::path::Path) -> natter_server::Config {
        natter_server::Config {
            store: natter_store::Location::Sqlite(dir.join("natter.db")),
            ..Self::config()
        }
    }

    /// Starts a server configured by `config` on `addr`.
    fn with(rt: &Runtime, addr: SocketAddr, config: natter_server::Config) -> Self {
        let listener = rt.block_on(TcpListener::bind(addr)).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = rt.spawn(natter_server::run(listener, config, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Shuts the server down (every client gets `BYE SHUTDOWN`) and waits until it has.
    fn stop(&mut self, rt: &Runtime) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            rt.block_on(within(t)).unwrap().unwrap();
        }
    }

    /// A natter-conn client registered as `name`.
    fn user(&self, rt: &Runtime, name: &str) -> Client {
        rt.block_on(async {
            let mut c = within(Client::connect(self.addr)).await.unwrap();
            let (got, _) = within(c.register(name)).await.unwrap();
            assert_eq!(got, name);
            c
        })
    }
}

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("timed out waiting for the server")
}

/// Reads `c`'s lines until one satisfies `want`.
fn expect_line(
    rt: &Runtime,
    c: &mut Client,
    want: impl FnMut(&ServerLine<'_>) -> bool,
) -> ServerLine<'static> {
    rt.block_on(within(c.reader.until(want))).unwrap().0
}

/// Sends a line from a natter-conn client.
fn say(rt: &Runtime, c: &mut Client, line: &str) {
    rt.block_on(within(c.send(line))).unwrap();
}

/// Sends `line` from `c` and waits for its `OK`: a kept message's comes once it is stored.
fn kept(rt: &Runtime, c: &mut Client, line: &str) {
    say(rt, c, line);
    let answer = expect_line(rt, c, |l| {
        matches!(l, ServerLine::Ok { .. } | ServerLine::Error { .. })
    });
    assert!(matches!(answer, ServerLine::Ok { .. }), "{line}: {answer}");
}

/// How many lines of the conversation `id` have exactly this text.
fn count(h: &Harness<'_, ChatApp>, id: &ConvId, text: &str) -> usize {
    h.state()
        .model
        .conversation(id)
        .map_or(0, |c| c.lines.iter().filter(|l| l.text == text).count())
}

/// A file of the server's TLS test material (see its README).
fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../natter-server/tests/tls")
        .join(name)
}

/// Fast reconnects, so a restart test takes a fraction of a second.
fn quick_net() -> NetConfig {
    NetConfig {
        connect_timeout: Duration::from_secs(5),
        backoff_start: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
        tls: None,
    }
}

/// The window, about to connect to `addr` (or showing the connect screen).
fn window(addr: SocketAddr, connect_now: bool) -> Harness<'static, ChatApp> {
    window_with(addr.ip().to_string(), addr.port(), connect_now, quick_net())
}

/// The window, about to connect to `host:port` with `net`'s settings.
fn window_with(
    host: String,
    port: u16,
    connect_now: bool,
    net: NetConfig,
) -> Harness<'static, ChatApp> {
    let options = Options {
        host,
        port,
        connect_now,
        net,
        // The tests never touch the real config directory.
        config_dir: None,
    };
    Harness::builder()
        .with_size(egui::vec2(1000.0, 700.0))
        .build_eframe(move |cc| ChatApp::new(&cc.egui_ctx, options).unwrap())
}

/// The window, about to connect to `addr`, keeping its sign-ins in `dir`.
fn window_keeping(addr: SocketAddr, dir: &std::path::Path) -> Harness<'static, ChatApp> {
    let options = Options {
        host: addr.ip().to_string(),
        port: addr.port(),
        connect_now: true,
        net: quick_net(),
        config_dir: Some(dir.to_owned()),
    };
    Harness::builder()
        .with_size(egui::vec2(1000.0, 700.0))
        .build_eframe(move |cc| ChatApp::new(&cc.egui_ctx, options).unwrap())
}

/// Steps the window until `cond` holds, waiting on the network between steps; fails the
/// test after [`LIMIT`].
fn until(h: &mut Harness<'_, ChatApp>, what: &str, cond: impl Fn(&Harness<'_, ChatApp>) -> bool) {
    let deadline = Instant::now() + LIMIT;
    loop {
        h.run_ok();
        if cond(h) {
            return;
        }
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            let m = &h.state().model;
            panic!(
                "timed out waiting for {what}; screen {:?}, link {:?}, name error {:?}, \
                 last lines {:?}",
                m.screen,
                m.link,
                m.name_error,
                m.active_conversation()
                    .lines
                    .iter()
                    .rev()
                    .take(5)
                    .collect::<Vec<_>>()
            );
        };
        // Wakes as soon as the next network event arrives; the next loop applies it. While
        // egui still wants frames (a wheel's scroll is spread over several), it gets them
        // rather than waiting on a network that may have nothing to say.
        let wait = if h.ctx.has_requested_repaint() {
            left.min(Duration::from_millis(10))
        } else {
            left
        };
        h.state_mut().wait_for_network(wait);
    }
}

/// Whether some text on screen contains `text`.
fn shows(h: &Harness<'_, ChatApp>, text: &str) -> bool {
    h.query_all_by_label_contains(text).next().is_some()
}

/// Clicks a text field and types into it.
fn type_into(h: &mut Harness<'_, ChatApp>, label: &str, text: &str) {
    h.get_by_label(label).click();
    h.run_ok();
    h.get_by_label(label).type_text(text);
    h.run_ok();
}

/// Clicks a text field and replaces what it holds.
fn replace_in(h: &mut Harness<'_, ChatApp>, label: &str, text: &str) {
    h.get_by_label(label).click();
    h.run_ok();
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    h.get_by_label(label).type_text(text);
    h.run_ok();
}

/// Types into the message box and presses Enter.
fn send(h: &mut Harness<'_, ChatApp>, text: &str) {
    type_into(h, "Message", text);
    h.key_press(egui::Key::Enter);
    h.run_ok();
}

/// Connects, takes `name`, and waits for the chat screen.
fn sign_in(h: &mut Harness<'_, ChatApp>, name: &str) {
    until(h, "the name screen", |h| h.query_by_label("Name").is_some());
    replace_in(h, "Name", name);
    h.get_by_role_and_label(Role::Button, "Join the chat")
        .click();
    until(h, "the chat screen", |h| {
        h.query_by_label("Message").is_some()
    });
    until(h, "the user list", |h| !h.state().model.users.is_empty());
}

#[test]
fn a_taken_name_is_explained_and_another_can_be_tried() {
    let rt = runtime();
    let server = Server::start(&rt);
    let mut bob = server.user(&rt, "bob");
    let mut h = window(server.addr, true);
    until(&mut h, "the name screen", |h| {
        h.query_by_label("Name").is_some()
    });
    type_into(&mut h, "Name", "Bob");
    h.key_press(egui::Key::Enter);
    until(&mut h, "the server's reason", |h| {
        shows(h, "The name Bob is taken; choose another")
    });
    assert_eq!(h.state().model.screen, Screen::Name);
    // A name against the rules gets the server's reason too, on the same connection.
    replace_in(&mut h, "Name", "9lives");
    h.get_by_role_and_label(Role::Button, "Join the chat")
        .click();
    until(&mut h, "the rule", |h| {
        shows(h, "name must start with a letter")
    });
    replace_in(&mut h, "Name", "alice");
    h.get_by_role_and_label(Role::Button, "Join the chat")
        .click();
    until(&mut h, "the chat screen", |h| {
        h.query_by_label("Message").is_some()
    });
    expect_line(
        &rt,
        &mut bob,
        |l| matches!(l, ServerLine::Online { name } if name == "alice"),
    );
    assert!(shows(&h, "Welcome, alice!"));
}

#[test]
fn everyone_hears_what_is_said_in_everyone() {
    let rt = runtime();
    let server = Server::start(&rt);
    let mut bob = server.user(&rt, "bob");
    let mut h = window(server.addr, true);
    sign_in(&mut h, "alice");

    // With Enter.
    send(&mut h, "hello   everyone");
    let got = expect_line(&rt, &mut bob, |l| matches!(l, ServerLine::Message { .. }));
    assert_eq!(
        got,
        ServerLine::parse("MESSAGE alice hello   everyone").unwrap()
    );
    // With the Send button.
    type_into(&mut h, "Message", "second");
    h.get_by_role_and_label(Role::Button, "Send").click();
    h.run_ok();
    expect_line(
        &rt,
        &mut bob,
        |l| matches!(l, ServerLine::Message { text, .. } if text == "second"),
    );
    // Our own lines are shown, and the box is empty again.
    until(&mut h, "our own line", |h| shows(h, "hello   everyone"));
    assert_eq!(h.get_by_label("Message").value().as_deref(), Some(""));

    say(&rt, &mut bob, "MESSAGE hi alice, welcome");
    until(&mut h, "bob's message", |h| shows(h, "hi alice, welcome"));
    // The everyone conversation is open, so nothing is unread.
    assert_eq!(h.state().model.total_unread(), 0);
}

#[test]
fn a_room_can_be_joined_and_talked_in() {
    let rt = runtime();
    let server = Server::start(&rt);
    let mut bob = server.user(&rt, "bob");
    let mut h = window(server.addr, true);
    sign_in(&mut h, "alice");

    type_into(&mut h, "Room", "rust");
    h.get_by_role_and_label(Role::Button, "Join").click();
    until(&mut h, "the room", |h| shows(h, "You joined #rust"));
    assert_eq!(h.state().model.active, ConvId::room("#rust"));

    say(&rt, &mut bob, "JOIN #rust");
    expect_line(
        &rt,
        &mut bob,
        |l| matches!(l, ServerLine::Ok { verb, .. } if verb == "JOIN"),
    );
    until(&mut h, "bob joining", |h| shows(h, "bob joined #rust"));
    // bob is listed among the members, alice (the creator) as operator.
    assert!(h.query_by_label("@alice (you)").is_some());
    assert!(shows(&h, "IN #RUST — 2"));

    say(&rt, &mut bob, "SAY #rust crabs are great");
    until(&mut h, "bob's line", |h| shows(h, "crabs are great"));
    send(&mut h, "indeed they are");
    let got = expect_line(&rt, &mut bob, |l| matches!(l, ServerLine::Say { .. }));
    assert_eq!(
        got,
        ServerLine::parse("SAY #rust alice indeed they are").unwrap()
    );

    send(&mut h, "/topic all about crabs");
    until(&mut h, "the topic", |h| {
        shows(h, "alice set the topic: all about crabs")
    });
    send(&mut h, "/part");
    until(&mut h, "leaving", |h| shows(h, "You left #rust"));
    expect_line(
        &rt,
        &mut bob,
        |l| matches!(l, ServerLine::Parted { name, .. } if name == "alice"),
    );
}

#[test]
fn a_dm_gets_its_own_conversation_with_an_unread_count() {
    let rt = runtime();
    let server = Server::start(&rt);
    let mut bob = server.user(&rt, "bob");
    let mut h = window(server.addr, true);
    sign_in(&mut h, "alice");

    say(&rt, &mut bob, "DM alice psst, a secret");
    say(&rt, &mut bob, "DM alice and another");
    until(&mut h, "the DM conversation", |h| {
        h.query_by_label("Direct messages with bob, 2 unread")
            .is_some()
    });
    // Not in Everyone.
    assert!(!shows(&h, "psst, a secret"));
    h.get_by_label("Direct messages with bob, 2 unread").click();
    until(&mut h, "the DM open", |h| shows(h, "psst, a secret"));
    assert!(h.query_by_label("Direct messages with bob").is_some());
    assert_eq!(h.state().model.total_unread(), 0);
    // What came while it was not open is marked, above the first of it.
    let marker = h.get_by_label("New messages").rect();
    let first = h.get_by_label("psst, a secret").rect();
    assert!(marker.bottom() <= first.top(), "{marker:?} {first:?}");

    send(&mut h, "my reply");
    let got = expect_line(&rt, &mut bob, |l| matches!(l, ServerLine::Dm { .. }));
    assert_eq!(got, ServerLine::parse("DM alice my reply").unwrap());

    // /dm from anywhere opens the conversation too.
    h.get_by_role_and_label(Role::Button, "Everyone").click();
    h.run_ok();
    send(&mut h, "/dm bob via a command");
    let got = expect_line(&rt, &mut bob, |l| matches!(l, ServerLine::Dm { .. }));
    assert_eq!(got, ServerLine::parse("DM alice via a command").unwrap());
    assert_eq!(h.state().model.active, ConvId::dm("bob"));
}

#[test]
fn the_online_list_follows_people_coming_and_going() {
    let rt = runtime();
    let server = Server::start(&rt);
    let _bob = server.user(&rt, "bob");
    let mut h = window(server.addr, true);
    sign_in(&mut h, "alice");
    until(&mut h, "two online", |h| shows(h, "ONLINE — 2"));
    assert!(h.query_by_role_and_label(Role::Button, "bob").is_some());

    let mut carol = server.user(&rt, "carol");
    until(&mut h, "carol online", |h| {
        h.query_by_role_and_label(Role::Button, "carol").is_some()
    });
    assert!(shows(&h, "ONLINE — 3"));
    say(&rt, &mut carol, "REGISTER Caroline");
    until(&mut h, "the rename", |h| {
        h.query_by_role_and_label(Role::Button, "Caroline")
            .is_some()
    });
    assert!(shows(&h, "carol is now known as Caroline"));
    // Clicking someone opens a DM with them.
    h.get_by_role_and_label(Role::Button, "Caroline").click();
    until(&mut h, "the DM", |h| {
        h.state().model.active == ConvId::dm("caroline")
    });
    send(&mut h, "hi Caroline");
    expect_line(
        &rt,
        &mut carol,
        |l| matches!(l, ServerLine::Dm { text, .. } if text == "hi Caroline"),
    );

    say(&rt, &mut carol, "CLOSE");
    until(&mut h, "Caroline gone", |h| {
        h.query_by_role_and_label(Role::Button, "Caroline")
            .is_none()
    });
    assert!(shows(&h, "ONLINE — 2"));
    assert!(shows(&h, "Caroline went offline"));
}

#[test]
fn a_server_restart_is_survived() {
    let rt = runtime();
    let mut server = Server::start(&rt);
    let addr = server.addr;
    let mut h = window(addr, true);
    sign_in(&mut h, "alice");
    type_into(&mut h, "Room", "#ops");
    h.key_press(egui::Key::Enter);
    until(&mut h, "the room", |h| shows(h, "You joined #ops"));
    send(&mut h, "before the restart");
    until(&mut h, "delivery", |h| {
        h.state()
            .model
            .active_conversation()
            .lines
            .iter()
            .any(|l| l.text == "before the restart")
    });

    server.stop(&rt);
    until(&mut h, "the banner", |h| {
        shows(h, "Connection lost") && h.query_by_label("Reconnect now").is_some()
    });
    assert!(matches!(h.state().model.link, Link::Lost { .. }));

    // The same address again.
    let server = Server::on(&rt, addr);
    until(&mut h, "signed in again", |h| {
        h.state().model.registered && h.query_by_label("Reconnect now").is_none()
    });
    until(&mut h, "the room rejoined", |h| shows(h, "Rejoined #ops"));
    assert!(shows(&h, "Disconnected: the server is shutting down"));
    // The history survived, and the server knows alice again, in her room.
    assert!(shows(&h, "before the restart"));
    let mut bob = server.user(&rt, "bob");
    say(&rt, &mut bob, "WHO #ops");
    let got = expect_line(&rt, &mut bob, |l| matches!(l, ServerLine::Member { .. }));
    assert_eq!(got, ServerLine::parse("MEMBER #ops @alice").unwrap());
    until(&mut h, "bob in the list", |h| {
        h.query_by_role_and_label(Role::Button, "bob").is_some()
    });
}

#[test]
fn a_server_restart_is_resumed_unseen() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let config = || natter_server::Config {
        store: natter_store::Location::Sqlite(dir.path().join("natter.db")),
        ..Server::config()
    };
    let mut server = Server::with(&rt, "127.0.0.1:0".parse().unwrap(), config());
    let addr = server.addr;
    let mut h = window(addr, true);
    sign_in(&mut h, "alice");
    until(&mut h, "a resume token", |h| h.state().model.resumable());
    type_into(&mut h, "Room", "#ops");
    h.key_press(egui::Key::Enter);
    until(&mut h, "the room", |h| shows(h, "You joined #ops"));

    server.stop(&rt);
    until(&mut h, "the banner", |h| shows(h, "Connection lost"));
    // The new server has kept alice's session: carol, arriving first, finds her there.
    let server = Server::with(&rt, addr, config());
    let mut carol = server.user(&rt, "carol");
    say(&rt, &mut carol, "JOIN #ops");
    let got = expect_line(&rt, &mut carol, |l| matches!(l, ServerLine::Member { .. }));
    assert_eq!(got, ServerLine::parse("MEMBER #ops @alice").unwrap());
    until(&mut h, "resumed", |h| {
        let m = &h.state().model;
        m.registered
            && m.conversation(&ConvId::Everyone).is_some_and(|c| {
                c.lines
                    .iter()
                    .any(|l| l.text.contains("nobody saw you leave"))
            })
    });
    // In the room, with what was said meanwhile, and talking.
    until(&mut h, "carol joined, seen", |h| {
        h.state()
            .model
            .conversations
            .iter()
            .any(|c| c.title == "#ops" && c.joined)
    });
    say(&rt, &mut carol, "SAY #ops welcome back");
    until(&mut h, "carol's line", |h| shows(h, "welcome back"));
    let mut seen = Vec::new();
    say(&rt, &mut carol, "LIST");
    expect_line(&rt, &mut carol, |l| {
        seen.push(l.to_string());
        matches!(l, ServerLine::Ok { verb, .. } if verb == "LIST")
    });
    assert!(
        !seen
            .iter()
            .any(|l| l.contains("ONLINE alice") || l.contains("OFFLINE alice")),
        "{seen:?}"
    );
    assert!(seen.contains(&"USER alice".to_owned()), "{seen:?}");
}

#[test]
fn an_account_signs_in_with_its_password_and_then_by_itself() {
    let rt = runtime();
    let server = Server::start(&rt);
    let mut carol = server.user(&rt, "carol");
    let mut owner = server.user(&rt, "alice");
    say(&rt, &mut owner, "ACCOUNT CREATE correct-horse");
    expect_line(&rt, &mut owner, |l| matches!(l, ServerLine::Ok { .. }));
    say(&rt, &mut owner, "CLOSE");
    expect_line(&rt, &mut carol, |l| l.to_string() == "OFFLINE alice");
    let dir = tempfile::tempdir().unwrap();

    let mut h = window_keeping(server.addr, dir.path());
    until(&mut h, "the name screen", |h| {
        h.query_by_label("Name").is_some()
    });
    // Without the password the name is refused, saying whose it is.
    replace_in(&mut h, "Name", "alice");
    h.get_by_role_and_label(Role::Button, "Join the chat")
        .click();
    until(&mut h, "the refusal", |h| shows(h, "belongs to an account"));
    type_into(
        &mut h,
        "Password (only if the name is your account)",
        "wrong-horse",
    );
    h.key_press(egui::Key::Enter);
    until(&mut h, "a wrong password", |h| {
        shows(h, "Wrong name or password")
    });
    type_into(
        &mut h,
        "Password (only if the name is your account)",
        "correct-horse",
    );
    h.key_press(egui::Key::Enter);
    until(&mut h, "signed in", |h| {
        h.state().model.account.as_deref() == Some("alice") && h.state().model.registered
    });
    // The online list marks names that are accounts.
    until(&mut h, "the account mark", |h| shows(h, "alice ✔ (you)"));
    let file = dir.path().join("sign-ins.json");
    until(&mut h, "the sign-in kept", |_| file.exists());
    let kept = std::fs::read_to_string(&file).unwrap();
    assert!(
        kept.contains("nt_") && !kept.contains("correct-horse"),
        "{kept}"
    );
    expect_line(&rt, &mut carol, |l| l.to_string() == "ONLINE alice");
    drop(h);
    expect_line(&rt, &mut carol, |l| l.to_string() == "OFFLINE alice");

    // The next start signs in by itself, with the token.
    let mut h = window_keeping(server.addr, dir.path());
    until(&mut h, "signed in again", |h| {
        h.state().model.registered && h.state().model.me.as_deref() == Some("alice")
    });
    expect_line(&rt, &mut carol, |l| l.to_string() == "ONLINE alice");
    // Signing out forgets it.
    send(&mut h, "/logout");
    until(&mut h, "signed out", |h| h.query_by_label("Name").is_some());
    until(&mut h, "the sign-in forgotten", |_| {
        std::fs::read_to_string(&file).is_ok_and(|t| !t.contains("nt_"))
    });
}

#[test]
fn the_connect_screen_says_what_went_wrong() {
    let rt = runtime();
    // A port nobody listens on: bind one, then let it go.
    let free = rt
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .unwrap()
        .local_addr()
        .unwrap();
    let mut h = window(free, false);
    assert!(h.query_by_label("Host").is_some());
    h.get_by_role_and_label(Role::Button, "Connect").click();
    until(&mut h, "refused", |h| shows(h, "Connection refused"));

    let mut port = h.get_by_label("Port").value().unwrap();
    assert_eq!(port, free.port().to_string());
    // A bad port is explained without trying.
    replace_in(&mut h, "Port", "99999");
    h.get_by_role_and_label(Role::Button, "Connect").click();
    until(&mut h, "the port rule", |h| {
        shows(h, "Invalid port \"99999\"")
    });

    // Now a server is there: the same screen connects.
    let server = Server::on(&rt, free);
    port = server.addr.port().to_string();
    replace_in(&mut h, "Port", &port);
    h.key_press(egui::Key::Enter);
    until(&mut h, "the name screen", |h| {
        h.query_by_label("Name").is_some()
    });
}

#[test]
fn a_silent_server_times_out() {
    let rt = runtime();
    // Accepts connections (the kernel does) but never greets.
    let silent = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = silent.local_addr().unwrap();
    let options = Options {
        host: addr.ip().to_string(),
        port: addr.port(),
        connect_now: true,
        net: NetConfig {
            connect_timeout: Duration::from_millis(300),
            ..quick_net()
        },
        config_dir: None,
    };
    let mut h = Harness::builder()
        .with_size(egui::vec2(1000.0, 700.0))
        .build_eframe(move |cc| ChatApp::new(&cc.egui_ctx, options).unwrap());
    until(&mut h, "the time-out", |h| shows(h, "said nothing within"));
    assert_eq!(h.state().model.screen, Screen::Connect);
    drop(silent);
}

/// A listener on an ephemeral port that is not natter: it reads what a connection sends
/// first, answers `answer` and hangs up.
fn stranger(rt: &Runtime, answer: &'static [u8]) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut first = [0; 64];
            let _ = s.read(&mut first).await;
            let _ = s.write_all(answer).await;
            let _ = s.shutdown().await;
        }
    });
    addr
}

#[test]
fn a_web_server_is_named_as_one() {
    let rt = runtime();
    let addr = stranger(
        &rt,
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    let mut h = window(addr, true);
    until(&mut h, "the explanation", |h| {
        shows(h, "is a web server, not a natter server")
    });
    assert!(shows(&h, "HTTP/1.1 400 Bad Request"));
    assert!(!shows(&h, "expected HELLO"));
    assert_eq!(h.state().model.screen, Screen::Connect);
}

#[test]
fn a_server_that_hangs_up_without_a_word_is_explained() {
    let rt = runtime();
    let addr = stranger(&rt, b"");
    let mut h = window(addr, true);
    until(&mut h, "the explanation", |h| {
        shows(h, "closed the connection at once, without a greeting")
    });
    assert_eq!(h.state().model.screen, Screen::Connect);
}

#[test]
fn quitting_says_goodbye() {
    let rt = runtime();
    let server = Server::start(&rt);
    let mut bob = server.user(&rt, "bob");
    let mut h = window(server.addr, true);
    sign_in(&mut h, "alice");
    expect_line(&rt, &mut bob, |l| matches!(l, ServerLine::Online { .. }));
    send(&mut h, "/quit");
    until(&mut h, "the goodbye", |h| h.state().model.quit);
    expect_line(
        &rt,
        &mut bob,
        |l| matches!(l, ServerLine::Offline { name, .. } if name == "alice"),
    );
}

#[test]
fn closing_the_window_says_close() {
    let rt = runtime();
    let server = Server::start(&rt);
    let mut bob = server.user(&rt, "bob");
    let mut h = window(server.addr, true);
    sign_in(&mut h, "alice");
    expect_line(&rt, &mut bob, |l| matches!(l, ServerLine::Online { .. }));
    // What eframe does when the window closes.
    eframe::App::on_exit(h.state_mut(), None);
    assert!(
        h.state().said_goodbye,
        "the server did not answer CLOSE with BYE CLOSED"
    );
    expect_line(
        &rt,
        &mut bob,
        |l| matches!(l, ServerLine::Offline { name, .. } if name == "alice"),
    );
}

#[test]
fn disconnecting_returns_to_the_connect_screen() {
    let rt = runtime();
    let server = Server::start(&rt);
    let mut bob = server.user(&rt, "bob");
    let mut h = window(server.addr, true);
    sign_in(&mut h, "alice");
    expect_line(&rt, &mut bob, |l| matches!(l, ServerLine::Online { .. }));
    h.get_by_role_and_label(Role::Button, "Disconnect").click();
    until(&mut h, "the connect screen", |h| {
        h.query_by_label("Host").is_some()
    });
    expect_line(
        &rt,
        &mut bob,
        |l| matches!(l, ServerLine::Offline { name, .. } if name == "alice"),
    );
    // The last name is offered again; here we come back as someone else.
    assert_eq!(h.state().name_draft, "alice");
    h.get_by_role_and_label(Role::Button, "Connect").click();
    sign_in(&mut h, "alice2");
    expect_line(
        &rt,
        &mut bob,
        |l| matches!(l, ServerLine::Online { name } if name == "alice2"),
    );
}

/// The network settings of `natter-client --tls --tls-ca <ca> [--tls-name <name>]`.
fn tls_net(ca: &str, name: Option<&str>) -> NetConfig {
    NetConfig {
        tls: Some(TlsOptions {
            ca: Some(fixture(ca)),
            name: name.map(str::to_owned),
        }),
        ..quick_net()
    }
}

#[test]
fn tls_connects_registers_and_shows_that_it_is_encrypted() {
    let rt = runtime();
    let server = Server::start_tls(&rt);
    let mut bob = server.user(&rt, "bob");
    let mut h = window_with(
        "localhost".into(),
        server.addr.port(),
        true,
        tls_net("ca-a.pem", None),
    );
    sign_in(&mut h, "alice");
    assert!(h.state().model.tls);
    assert!(
        shows(&h, "TLS"),
        "the status bar says the connection is TLS"
    );

    say(&rt, &mut bob, "MESSAGE hello over tls");
    until(&mut h, "bob's message", |h| shows(h, "hello over tls"));
    send(&mut h, "and back");
    expect_line(
        &rt,
        &mut bob,
        |l| matches!(l, ServerLine::Message { text, .. } if text == "and back"),
    );
}

#[test]
fn plain_connections_do_not_claim_tls() {
    let rt = runtime();
    let server = Server::start(&rt);
    let mut h = window(server.addr, true);
    sign_in(&mut h, "alice");
    assert!(!h.state().model.tls);
    assert!(!shows(&h, "TLS"));
}

#[test]
fn an_untrusted_certificate_is_shown_on_the_connect_screen() {
    let rt = runtime();
    let server = Server::start_tls(&rt);
    // The certificate is signed by CA A; trusting only CA B must fail visibly.
    let mut h = window_with(
        "127.0.0.1".into(),
        server.addr.port(),
        true,
        tls_net("ca-b.pem", Some("localhost")),
    );
    until(&mut h, "the certificate error", |h| {
        shows(h, "Certificate error")
    });
    assert_eq!(h.state().model.screen, Screen::Connect);
    assert_eq!(h.state().model.link, Link::Idle);
    let error = h.state().model.connect_error.clone().unwrap();
    assert!(error.contains("--tls-ca"), "{error}");
    assert!(!h.state().model.tls);
}

#[test]
fn a_certificate_for_another_name_is_a_certificate_error() {
    let rt = runtime();
    let server = Server::start_tls(&rt);
    // The certificate names localhost and 127.0.0.1, not this.
    let mut h = window_with(
        "127.0.0.1".into(),
        server.addr.port(),
        true,
        tls_net("ca-a.pem", Some("chat.example.org")),
    );
    until(&mut h, "the certificate error", |h| {
        shows(h, "Certificate error")
    });
    let error = h.state().model.connect_error.clone().unwrap();
    assert!(error.contains("--tls-name"), "{error}");
}

#[test]
fn tls_to_a_server_without_tls_fails_visibly() {
    let rt = runtime();
    let server = Server::start(&rt);
    let mut h = window_with(
        "localhost".into(),
        server.addr.port(),
        true,
        tls_net("ca-a.pem", None),
    );
    until(&mut h, "an error", |h| {
        h.state().model.connect_error.is_some()
    });
    assert_eq!(h.state().model.screen, Screen::Connect);
    let error = h.state().model.connect_error.clone().unwrap();
    assert!(shows(&h, &error), "{error}");
    assert!(error.contains("speak TLS"), "{error}");
}

#[test]
fn history_is_shown_on_opening_everyone_and_a_room() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::with(
        &rt,
        "127.0.0.1:0".parse().unwrap(),
        Server::stored(dir.path()),
    );
    let mut bob = server.user(&rt, "bob");
    let _carol = server.user(&rt, "carol");
    kept(&rt, &mut bob, "MESSAGE said before alice came");
    kept(&rt, &mut bob, "JOIN #den");
    kept(&rt, &mut bob, "SAY #den the room remembers");

    let mut h = window(server.addr, true);
    sign_in(&mut h, "alice");
    until(&mut h, "Everyone's history", |h| {
        shows(h, "said before alice came")
    });
    // Before what happened since, under a separator naming its day.
    let old = h.get_by_label("said before alice came").rect();
    let welcome = h.get_by_label_contains("Welcome, alice!").rect();
    assert!(old.top() < welcome.top(), "{old:?} {welcome:?}");
    let at = h.state().model.conversations[0]
        .lines
        .iter()
        .find(|l| l.text == "said before alice came")
        .unwrap()
        .at;
    let day = day_label(at.date_naive(), chrono::Local::now().date_naive());
    assert!(h.query_by_label(&day).is_some(), "no separator for {day}");

    type_into(&mut h, "Room", "den");
    h.get_by_role_and_label(Role::Button, "Join").click();
    until(&mut h, "the room's history", |h| {
        shows(h, "the room remembers")
    });
    assert_eq!(h.query_all_by_label("the room remembers").count(), 1);
    assert_eq!(count(&h, &ConvId::room("#den"), "the room remembers"), 1);
}

#[test]
fn older_messages_load_when_scrolled_to_the_top() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::with(
        &rt,
        "127.0.0.1:0".parse().unwrap(),
        Server::stored(dir.path()),
    );
    let mut bob = server.user(&rt, "bob");
    let _carol = server.user(&rt, "carol");
    for i in 1..=80 {
        say(&rt, &mut bob, &format!("MESSAGE old message {i}"));
    }
    for _ in 1..=80 {
        expect_line(
            &rt,
            &mut bob,
            |l| matches!(l, ServerLine::Ok { verb, .. } if verb == "MESSAGE"),
        );
    }

    let mut h = window(server.addr, true);
    sign_in(&mut h, "alice");
    until(&mut h, "the newest page", |h| {
        h.state().model.conversations[0].history.status == HistoryStatus::Loaded
            && shows(h, "old message 80")
    });
    // One page: the 50 newest.
    assert!(h.query_by_label("old message 31").is_some());
    assert!(h.query_by_label("old message 30").is_none());
    assert!(h.state().model.conversations[0].history.more);

    // Scrolled up with the wheel over the history, as a person does: again while nothing is
    // asked, as a person would if a scroll still under way to the newest line swallowed it.
    let over = h.get_by_label("old message 75").rect().center();
    h.hover_at(over);
    let deadline = Instant::now() + LIMIT;
    while h.query_by_label("old message 1").is_none() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the older page"
        );
        if !h.state().model.conversations[0].history.loading_older {
            h.event(egui::Event::MouseWheel {
                unit: egui::MouseWheelUnit::Point,
                delta: egui::vec2(0.0, 5000.0),
                phase: egui::TouchPhase::Move,
                source: egui::MouseWheelSource::Unknown,
                modifiers: egui::Modifiers::NONE,
            });
        }
        h.run_ok();
        h.state_mut().wait_for_network(Duration::from_millis(50));
    }
    until(&mut h, "the view settled", |h| {
        !h.state().model.conversations[0].history.loading_older
    });
    h.run_ok();
    // Fewer than a page came back: the start, and nothing more to ask for.
    let history = h.state().model.conversations[0].history.clone();
    assert!(!history.more && !history.can_load_older(), "{history:?}");
    assert!(shows(&h, "The start of the conversation"));
    // The view stayed where it was: the page came in above the lines on screen.
    let first_seen = h.get_by_label("old message 31").rect();
    let oldest = h.get_by_label("old message 1").rect();
    let compose = h.get_by_label("Message").rect();
    assert!(
        first_seen.top() > 0.0 && first_seen.bottom() < compose.top(),
        "old message 31 left the view: {first_seen:?}"
    );
    assert!(
        oldest.bottom() < first_seen.top() - 300.0,
        "the view jumped to the older page: {oldest:?} {first_seen:?}"
    );
    for i in 1..=80 {
        let text = format!("old message {i}");
        assert_eq!(count(&h, &ConvId::Everyone, &text), 1, "{text}");
    }
}

#[test]
fn a_server_restart_shows_each_message_once() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::with(
        &rt,
        "127.0.0.1:0".parse().unwrap(),
        Server::stored(dir.path()),
    );
    let addr = server.addr;
    let mut bob = server.user(&rt, "bob");
    let _carol = server.user(&rt, "carol");
    let mut h = window(addr, true);
    sign_in(&mut h, "alice");
    until(&mut h, "a resume token", |h| h.state().model.resumable());
    kept(&rt, &mut bob, "MESSAGE one before the restart");
    until(&mut h, "bob's first", |h| {
        shows(h, "one before the restart")
    });
    send(&mut h, "mine before the restart");
    until(&mut h, "ours kept", |h| {
        h.state().model.conversations[0]
            .lines
            .iter()
            .any(|l| l.text == "mine before the restart" && l.msg.is_some())
    });

    server.stop(&rt);
    until(&mut h, "the banner", |h| shows(h, "Connection lost"));
    let server = Server::with(&rt, addr, Server::stored(dir.path()));
    let mut bob = server.user(&rt, "bob");
    let _carol = server.user(&rt, "carol");
    // The window is not stepped meanwhile, so alice is not back yet: her session, restored
    // by the new server, keeps this for her, and the history has it too.
    kept(&rt, &mut bob, "MESSAGE two while alice was away");
    until(&mut h, "resumed", |h| {
        h.state().model.registered && shows(h, "nobody saw you leave")
    });
    until(&mut h, "what was missed", |h| {
        shows(h, "two while alice was away")
    });
    kept(&rt, &mut bob, "MESSAGE three after she came back");
    until(&mut h, "bob's third", |h| {
        shows(h, "three after she came back")
    });
    // An answer after the catch-up's: every history page asked for has come by then.
    send(&mut h, "four");
    until(&mut h, "ours delivered", |h| {
        h.state().model.conversations[0]
            .lines
            .iter()
            .any(|l| l.text == "four" && l.msg.is_some())
    });
    for text in [
        "one before the restart",
        "mine before the restart",
        "two while alice was away",
        "three after she came back",
        "four",
    ] {
        assert_eq!(count(&h, &ConvId::Everyone, text), 1, "{text}");
        assert_eq!(h.query_all_by_label(text).count(), 1, "{text} on screen");
    }
}

#[test]
fn search_finds_a_message_and_opens_its_conversation() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::with(
        &rt,
        "127.0.0.1:0".parse().unwrap(),
        Server::stored(dir.path()),
    );
    let mut bob = server.user(&rt, "bob");
    let _carol = server.user(&rt, "carol");
    kept(&rt, &mut bob, "JOIN #den");
    kept(&rt, &mut bob, "SAY #den the needle is in the haystack");
    kept(&rt, &mut bob, "SAY #den only hay here");
    kept(&rt, &mut bob, "MESSAGE nothing to see in Everyone");

    let mut h = window(server.addr, true);
    sign_in(&mut h, "alice");
    type_into(&mut h, "Room", "den");
    h.get_by_role_and_label(Role::Button, "Join").click();
    until(&mut h, "the room", |h| shows(h, "You joined #den"));
    h.get_by_role_and_label(Role::Button, "Everyone").click();
    until(&mut h, "Everyone", |h| {
        h.state().model.active == ConvId::Everyone
    });

    type_into(&mut h, "Search messages", "NEEDLE");
    h.key_press(egui::Key::Enter);
    until(&mut h, "the results", |h| {
        h.state().model.search.as_ref().is_some_and(|s| !s.waiting)
    });
    assert!(shows(&h, "1 message with “NEEDLE”"));
    // Where, who, when and what, in one row.
    let result = h.get_by_label_contains("#den, bob at ");
    let name = result.accesskit_node().label().unwrap_or_default();
    assert!(name.ends_with(": the needle is in the haystack"), "{name}");
    result.click();
    until(&mut h, "the room opened at the result", |h| {
        h.state().model.active == ConvId::room("#den")
    });
    until(&mut h, "the message", |h| {
        shows(h, "the needle is in the haystack")
    });
    assert_eq!(
        count(&h, &ConvId::room("#den"), "the needle is in the haystack"),
        1
    );
    h.get_by_label("Close search").click();
    until(&mut h, "the search closed", |h| {
        h.state().model.search.is_none()
    });
    assert!(shows(&h, "IN #DEN"));
}

#[test]
fn the_keyboard_is_where_the_next_words_go() {
    let rt = runtime();
    let server = Server::start(&rt);
    let mut bob = server.user(&rt, "bob");
    let mut h = window(server.addr, true);
    sign_in(&mut h, "alice");
    say(&rt, &mut bob, "DM alice hello there");
    until(&mut h, "the DM", |h| {
        h.query_by_label("Direct messages with bob, 1 unread")
            .is_some()
    });

    // Opening a conversation puts the cursor in its message box.
    h.get_by_label("Direct messages with bob, 1 unread").click();
    h.run_ok();
    assert!(h.get_by_label("Message").is_focused());
    h.get_by_label("Message").type_text("first try");
    h.key_press(egui::Key::Enter);
    h.run_ok();
    let got = expect_line(&rt, &mut bob, |l| matches!(l, ServerLine::Dm { .. }));
    assert_eq!(got, ServerLine::parse("DM alice first try").unwrap());

    // Up in the empty box brings back what was sent, to send again.
    assert_eq!(h.get_by_label("Message").value().as_deref(), Some(""));
    h.key_press(egui::Key::ArrowUp);
    h.run_ok();
    assert_eq!(
        h.get_by_label("Message").value().as_deref(),
        Some("first try")
    );
    h.get_by_label("Message").type_text(", again");
    h.key_press(egui::Key::Enter);
    h.run_ok();
    let got = expect_line(&rt, &mut bob, |l| matches!(l, ServerLine::Dm { .. }));
    assert_eq!(got, ServerLine::parse("DM alice first try, again").unwrap());
    // Up with words in the box leaves them alone.
    h.get_by_label("Message").type_text("draft");
    h.key_press(egui::Key::ArrowUp);
    h.run_ok();
    assert_eq!(h.get_by_label("Message").value().as_deref(), Some("draft"));

    // Alt+Up and Alt+Down walk the list, wrapping, and the cursor follows.
    h.key_press_modifiers(egui::Modifiers::ALT, egui::Key::ArrowDown);
    h.run_ok();
    assert_eq!(h.state().model.active, ConvId::Everyone);
    assert!(h.get_by_label("Message").is_focused());
    h.key_press_modifiers(egui::Modifiers::ALT, egui::Key::ArrowUp);
    h.run_ok();
    assert_eq!(h.state().model.active, ConvId::dm("bob"));

    // Ctrl+K: the quick switcher; Esc closes it, Enter opens the first match.
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::K);
    h.run_ok();
    assert!(h.get_by_label("Go to a conversation").is_focused());
    h.key_press(egui::Key::Escape);
    h.run_ok();
    assert!(h.query_by_label("Go to a conversation").is_none());
    assert_eq!(h.state().model.active, ConvId::dm("bob"));
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::K);
    h.run_ok();
    h.get_by_label("Go to a conversation").type_text("every");
    h.key_press(egui::Key::Enter);
    h.run_ok();
    assert!(h.query_by_label("Go to a conversation").is_none());
    assert_eq!(h.state().model.active, ConvId::Everyone);
    assert!(h.get_by_label("Message").is_focused());
}

#[test]
fn a_mention_is_highlighted_and_counted_apart() {
    let rt = runtime();
    let server = Server::start(&rt);
    let mut bob = server.user(&rt, "bob");
    let mut h = window(server.addr, true);
    sign_in(&mut h, "alice");
    // Away from Everyone, so what is said there is unread.
    say(&rt, &mut bob, "DM alice over here");
    until(&mut h, "the DM", |h| {
        h.query_by_label("Direct messages with bob, 1 unread")
            .is_some()
    });
    h.get_by_label("Direct messages with bob, 1 unread").click();
    h.run_ok();
    say(&rt, &mut bob, "MESSAGE just chatter");
    say(&rt, &mut bob, "MESSAGE Alice, a question for you");
    until(&mut h, "the badge", |h| {
        h.query_by_label("Everyone, 2 unread, 1 mention").is_some()
    });
    assert_eq!(h.state().model.total_mentions(), 1);

    h.get_by_label("Everyone, 2 unread, 1 mention").click();
    until(&mut h, "the lines", |h| {
        shows(h, "Alice, a question for you")
    });
    let lines = &h.state().model.active_conversation().lines;
    let marked: Vec<(&str, bool)> = lines
        .iter()
        .filter(|l| l.from.as_deref() == Some("bob"))
        .map(|l| (l.text.as_str(), l.mention))
        .collect();
    assert_eq!(
        marked,
        [("just chatter", false), ("Alice, a question for you", true)]
    );
    assert_eq!(h.state().model.total_mentions(), 0);

    // Muted from its menu: nothing more is counted there.
    h.get_by_label("Direct messages with bob").click_secondary();
    h.run_ok();
    h.get_by_role_and_label(Role::Button, "Mute").click();
    h.run_ok();
    say(&rt, &mut bob, "DM alice alice? still there?");
    say(&rt, &mut bob, "MESSAGE and one more");
    until(&mut h, "the DM while muted", |h| {
        count(h, &ConvId::dm("bob"), "alice? still there?") == 1
    });
    assert!(
        h.query_by_label("Direct messages with bob, muted")
            .is_some()
    );
    assert_eq!(h.state().model.total_unread(), 0);
}

/// The next `MESSAGE` a client gets: who and what.
fn next_message(rt: &Runtime, c: &mut Client) -> (String, String) {
    match expect_line(rt, c, |l| matches!(l, ServerLine::Message { .. })) {
        ServerLine::Message { from, text } => (from.into_owned(), text.into_owned()),
        _ => unreachable!(),
    }
}

#[test]
fn shift_enter_makes_a_new_line_and_enter_sends_them_as_one_message() {
    let rt = runtime();
    let server = Server::start(&rt);
    // One client as nc is (one event a line), one that reads texts of several lines.
    let mut bob = server.user(&rt, "bob");
    let mut carol = server.user(&rt, "carol");
    kept(&rt, &mut carol, "MULTILINE ON");
    let mut h = window(server.addr, true);
    sign_in(&mut h, "alice");

    type_into(&mut h, "Message", "fn main() {");
    h.key_press_modifiers(egui::Modifiers::SHIFT, egui::Key::Enter);
    h.run_ok();
    h.get_by_label("Message").type_text("    run();");
    h.key_press_modifiers(egui::Modifiers::SHIFT, egui::Key::Enter);
    h.run_ok();
    h.get_by_label("Message").type_text("}");
    h.run_ok();
    let code = "fn main() {\n    run();\n}";
    assert_eq!(h.get_by_label("Message").value().as_deref(), Some(code));
    assert_eq!(count(&h, &ConvId::Everyone, code), 0, "nothing sent yet");

    // Enter sends the three lines as one message.
    h.key_press(egui::Key::Enter);
    h.run_ok();
    assert_eq!(h.get_by_label("Message").value().as_deref(), Some(""));
    assert_eq!(
        next_message(&rt, &mut carol),
        ("alice".into(), r"fn main() {\n    run();\n}".into())
    );
    for line in code.lines() {
        assert_eq!(next_message(&rt, &mut bob), ("alice".into(), line.into()));
    }
    until(&mut h, "our own three lines", |h| {
        count(h, &ConvId::Everyone, code) == 1 && shows(h, "{\n    run();\n}")
    });

    // A paste keeps its lines.
    h.event(egui::Event::Paste("one\r\ntwo".into()));
    h.run_ok();
    assert_eq!(
        h.get_by_label("Message").value().as_deref(),
        Some("one\ntwo")
    );
    h.key_press(egui::Key::Enter);
    h.run_ok();
    assert_eq!(
        next_message(&rt, &mut carol),
        ("alice".into(), r"one\ntwo".into())
    );

    // What others send shows with its lines, code without its backticks.
    say(
        &rt,
        &mut carol,
        r"MESSAGE run `cargo test`\n```rust\nlet x = 1;\n```\nthen push",
    );
    until(&mut h, "carol's message", |h| {
        shows(h, "run cargo test\nlet x = 1;\nthen push")
    });
}

/// Reads `c`'s lines, tags and all, until one ends with `end`.
fn expect_text(rt: &Runtime, c: &mut Client, end: &str) -> String {
    rt.block_on(within(async {
        loop {
            let text = c
                .reader
                .next_text()
                .await
                .unwrap()
                .expect("connection open");
            if text.ends_with(end) {
                return text;
            }
        }
    }))
}

#[test]
fn who_is_typing_shows_above_the_box_and_our_typing_is_told() {
    let rt = runtime();
    let server = Server::start(&rt);
    let mut bob = server.user(&rt, "bob");
    kept(&rt, &mut bob, "TAGS ON");
    let mut h = window(server.addr, true);
    sign_in(&mut h, "alice");

    say(&rt, &mut bob, "TYPING * active");
    until(&mut h, "bob typing", |h| shows(h, "bob is typing…"));
    // Their message ends it.
    say(&rt, &mut bob, "MESSAGE there you go");
    until(&mut h, "bob's message", |h| shows(h, "there you go"));
    assert!(!shows(&h, "is typing"));
    say(&rt, &mut bob, "TYPING * active");
    until(&mut h, "bob typing again", |h| shows(h, "bob is typing…"));
    say(&rt, &mut bob, "TYPING * done");
    until(&mut h, "bob done", |h| !shows(h, "is typing"));

    // Ours: active while the box holds text, done when it is emptied.
    type_into(&mut h, "Message", "hel");
    expect_text(&rt, &mut bob, " TYPING * alice active");
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    h.key_press(egui::Key::Backspace);
    h.run_ok();
    assert_eq!(h.get_by_label("Message").value().as_deref(), Some(""));
    expect_text(&rt, &mut bob, " TYPING * alice done");
}

/// Sends `line` from `c` and returns its final answer's text (`OK ...` or `ERROR ...`).
fn answer_of(rt: &Runtime, c: &mut Client, line: &str) -> String {
    say(rt, c, line);
    expect_line(rt, c, |l| {
        matches!(l, ServerLine::Ok { .. } | ServerLine::Error { .. })
    })
    .to_string()
}

/// Joins `room` from the window's room field and waits until its modes are known.
fn join_in_window(h: &mut Harness<'_, ChatApp>, room: &str) {
    type_into(h, "Room", room);
    h.get_by_role_and_label(Role::Button, "Join").click();
    let id = ConvId::room(room);
    until(h, "the room and its modes", |h| {
        h.state()
            .model
            .conversation(&id)
            .is_some_and(|c| c.joined && c.modes.is_some())
    });
}

#[test]
fn an_operator_makes_a_room_invite_only_and_bans_a_member() {
    let rt = runtime();
    let server = Server::start(&rt);
    let mut bob = server.user(&rt, "bob");
    let mut carol = server.user(&rt, "carol");
    let mut h = window(server.addr, true);
    sign_in(&mut h, "alice");
    join_in_window(&mut h, "#den");
    assert!(answer_of(&rt, &mut bob, "JOIN #den").starts_with("OK JOIN"));
    until(&mut h, "bob joining", |h| shows(h, "bob joined #den"));

    // Invite-only, from the room's menu: carol cannot come in.
    h.get_by_label("Manage ▾").click();
    h.run_ok();
    h.get_by_label("Invite only").click();
    until(&mut h, "the change", |h| {
        shows(h, "You made #den invite-only.")
    });
    let refused = answer_of(&rt, &mut carol, "JOIN #den");
    assert!(refused.starts_with("ERROR INVITE_ONLY"), "{refused}");
    h.key_press(egui::Key::Escape);
    h.run_ok();
    assert!(h.query_by_label("Invite only").is_none());

    // Bob banned from the menu on his name, then removed: he cannot come back.
    h.query_all_by_label("bob")
        .next()
        .unwrap()
        .click_secondary();
    h.run_ok();
    h.get_by_label("Ban").click();
    until(&mut h, "the ban", |h| {
        shows(h, "You banned bob!*@* from #den.")
    });
    let refused = answer_of(&rt, &mut bob, "SAY #den let me speak");
    assert!(refused.starts_with("ERROR BANNED"), "{refused}");
    h.query_all_by_label("bob")
        .next()
        .unwrap()
        .click_secondary();
    h.run_ok();
    h.get_by_label("Remove from room").click();
    h.run_ok();
    expect_line(
        &rt,
        &mut bob,
        |l| matches!(l, ServerLine::Kicked { name, .. } if name == "bob"),
    );
    let refused = answer_of(&rt, &mut bob, "JOIN #den");
    assert!(refused.starts_with("ERROR BANNED"), "{refused}");

    // The bans, listed with a way to lift each.
    h.get_by_label("Manage ▾").click();
    h.run_ok();
    h.get_by_label("Bans…").click();
    until(&mut h, "the ban list", |h| {
        h.query_by_label("Lift the ban on bob!*@*").is_some()
    });
    h.get_by_label("Lift the ban on bob!*@*").click();
    until(&mut h, "the ban lifted", |h| {
        shows(h, "You lifted the ban on bob!*@*.")
    });
    until(&mut h, "an empty list", |h| shows(h, "Nobody is banned."));

    // A refusal reads as a sentence.
    h.get_by_label("Manage ▾").click();
    h.run_ok();
    type_into(&mut h, "Name to invite", "nobody");
    h.get_by_role_and_label(Role::Button, "Invite").click();
    until(&mut h, "the refusal", |h| {
        shows(h, "Could not invite nobody: ")
    });
}

#[test]
fn a_member_who_is_no_operator_has_no_moderation_menu() {
    let rt = runtime();
    let server = Server::start(&rt);
    let mut bob = server.user(&rt, "bob");
    assert!(answer_of(&rt, &mut bob, "JOIN #den").starts_with("OK JOIN"));
    let mut h = window(server.addr, true);
    sign_in(&mut h, "alice");
    join_in_window(&mut h, "#den");
    h.run_ok();
    assert!(h.query_by_label("Manage ▾").is_none());
    assert!(h.query_by_label("Topic…").is_none());
    assert!(shows(&h, "no topic"));
    assert!(!shows(&h, "/topic text sets one"));
    // No menu on the members either.
    h.query_all_by_label("@bob")
        .next()
        .unwrap()
        .click_secondary();
    h.run_ok();
    assert!(h.query_by_label("Ban").is_none());
    h.key_press(egui::Key::Escape);
    h.run_ok();

    // A -t room lets every member set the topic, and the window offers it.
    assert!(answer_of(&rt, &mut bob, "MODE #den -t").starts_with("OK MODE"));
    until(&mut h, "the topic offered", |h| {
        h.query_by_label("Topic…").is_some()
    });
    h.get_by_label("Topic…").click();
    h.run_ok();
    type_into(&mut h, "Topic", "crabs");
    h.get_by_role_and_label(Role::Button, "Set topic").click();
    until(&mut h, "the topic", |h| {
        shows(h, "alice set the topic: crabs")
    });
    // Made an operator, alice gets the room's menu.
    assert!(answer_of(&rt, &mut bob, "MODE #den +o alice").starts_with("OK MODE"));
    until(&mut h, "the menu", |h| {
        h.query_by_label("Manage ▾").is_some()
    });
}
