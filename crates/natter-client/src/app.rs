//! The eframe application: the one struct that holds the UI's state, and the glue between
//! the model, the network thread and the drawing code in [`crate::view`].

use crate::model::{Clock, Link, Model, Mutes, Screen, SignIn};
use crate::net::{Net, NetConfig};
use crate::theme;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The file of saved sign-ins in the config directory.
const SIGN_INS: &str = "sign-ins.json";

/// The file of muted conversations in the config directory.
const MUTED: &str = "muted.json";

/// What the file `name` in `dir` holds; the default if there is no file or it cannot be read.
fn load<T: serde::de::DeserializeOwned + Default>(dir: &Path, name: &str) -> T {
    std::fs::read_to_string(dir.join(name))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Writes `value` to the file `name` in `dir`, readable by this user only (sign-ins hold
/// tokens; the rest is nobody else's business either).
fn save<T: serde::Serialize>(dir: &Path, name: &str, value: &T) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.new"));
    let text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    std::io::Write::write_all(&mut open.open(&tmp)?, text.as_bytes())?;
    std::fs::rename(tmp, path)
}

/// How the app starts.
#[derive(Debug, Clone)]
pub struct Options {
    /// The server's host, shown on the connect screen.
    pub host: String,
    /// The server's port.
    pub port: u16,
    /// Connect at once (a server was named on the command line) instead of waiting for the
    /// connect screen's button.
    pub connect_now: bool,
    /// Timeouts and backoff of the network thread.
    pub net: NetConfig,
    /// Where saved sign-ins (`sign-ins.json`) and muted conversations (`muted.json`) are
    /// kept; `None` keeps none. By default the platform's config directory
    /// (`~/.config/natter` on Linux).
    pub config_dir: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            host: "localhost".into(),
            port: 8090,
            connect_now: false,
            net: NetConfig::default(),
            config_dir: dirs::config_dir().map(|d| d.join("natter")),
        }
    }
}

/// What is being typed in a room menu's fields.
#[derive(Debug, Clone, Default)]
pub struct RoomDrafts {
    /// A key to set.
    pub key: String,
    /// A member limit to set.
    pub limit: String,
    /// A name to invite.
    pub invite: String,
    /// A topic to set.
    pub topic: String,
}

/// The application: the model plus what is being typed, and the network handle.
#[derive(Debug)]
pub struct ChatApp {
    /// Everything the protocol told us and the conversations.
    pub model: Model,
    /// The network thread.
    net: Net,
    /// The connect screen's host field.
    pub host_draft: String,
    /// The connect screen's port field.
    pub port_draft: String,
    /// The name screen's field.
    pub name_draft: String,
    /// The name screen's password field (for an account), cleared once sent.
    pub password_draft: String,
    /// Where saved sign-ins and muted conversations are kept.
    config_dir: Option<PathBuf>,
    /// The message box.
    pub compose: String,
    /// What was last sent from the message box, for Up to bring back.
    pub last_sent: Option<String>,
    /// The quick switcher's filter, while it is open (Ctrl+K).
    pub switcher: Option<String>,
    /// Give the quick switcher's field the keyboard on the next frame.
    pub focus_switcher: bool,
    /// The "join a room" field.
    pub join_draft: String,
    /// Give the message box the keyboard on the next frame.
    pub focus_compose: bool,
    /// Give the name field the keyboard on the next frame.
    pub focus_name: bool,
    /// Scroll the open conversation to its end on the next frame.
    pub jump_to_end: bool,
    /// The search field.
    pub search_draft: String,
    /// The room menu's fields: a key, a member limit, a name to invite, a topic.
    pub room_drafts: RoomDrafts,
    /// The room whose bans window is open.
    pub bans_open: Option<crate::model::ConvId>,
    /// Where the first line of the open conversation was drawn last frame, so that an older
    /// page arriving above it leaves the lines on screen where they were.
    pub anchor: Option<crate::view::Anchor>,
    /// The scroll offset the history takes on the next pass (set to keep the view still).
    pub scroll_fix: Option<f32>,
    /// How times are written, from the locale.
    pub clock: Clock,
    /// The window title last set, so it is only sent when it changes.
    title: String,
    /// Set when the window closed and the server confirmed our `CLOSE` with `BYE CLOSED`.
    pub said_goodbye: bool,
}

impl ChatApp {
    /// Starts the network thread and, if asked, the first connection.
    pub fn new(ctx: &egui::Context, options: Options) -> std::io::Result<Self> {
        theme::apply(ctx);
        let net = Net::start(ctx.clone(), options.net)?;
        let mut app = Self {
            model: Model::new(&options.host, options.port),
            net,
            host_draft: options.host.clone(),
            port_draft: options.port.to_string(),
            name_draft: String::new(),
            password_draft: String::new(),
            config_dir: options.config_dir.clone(),
            compose: String::new(),
            last_sent: None,
            switcher: None,
            focus_switcher: false,
            join_draft: String::new(),
            focus_compose: true,
            focus_name: true,
            jump_to_end: false,
            search_draft: String::new(),
            room_drafts: RoomDrafts::default(),
            bans_open: None,
            anchor: None,
            scroll_fix: None,
            clock: Clock::from_env(),
            title: String::new(),
            said_goodbye: false,
        };
        if let Some(dir) = &app.config_dir {
            app.model.set_sign_ins(load(dir, SIGN_INS));
            app.model.set_mutes(load(dir, MUTED));
        }
        if options.connect_now {
            app.model.connect(&options.host, &options.port.to_string());
            app.flush();
        }
        Ok(app)
    }

    /// Hands the model's commands to the network thread.
    pub fn flush(&mut self) {
        for cmd in self.model.take_commands() {
            self.net.send(cmd);
        }
        if let Some(sign_ins) = self.model.take_sign_ins_change()
            && let Some(dir) = &self.config_dir
            && let Err(e) = save::<BTreeMap<String, SignIn>>(dir, SIGN_INS, sign_ins)
        {
            eprintln!(
                "natter-client: the sign-in could not be saved in {}: {e}",
                dir.display()
            );
        }
        if let Some(mutes) = self.model.take_mutes_change()
            && let Some(dir) = &self.config_dir
            && let Err(e) = save::<Mutes>(dir, MUTED, mutes)
        {
            eprintln!(
                "natter-client: the muted conversations could not be saved in {}: {e}",
                dir.display()
            );
        }
    }

    /// Applies every network event that has arrived.
    pub fn pump(&mut self) {
        let now = chrono::Local::now();
        let before = (self.model.screen, self.model.name_error.clone());
        while let Some(ev) = self.net.try_recv() {
            self.model.on_net(ev, now);
        }
        self.flush();
        // A new screen, or the server's answer about a name: put the keyboard where the user
        // types next.
        if (self.model.screen, self.model.name_error.clone()) != before {
            match self.model.screen {
                Screen::Name => self.focus_name = true,
                Screen::Chat => self.focus_compose = true,
                Screen::Connect => {}
            }
        }
    }

    /// Blocks until a network event is waiting, or `timeout` passes; true if one is.
    ///
    /// For tests and tools: they wait for the network this way instead of sleeping. The window
    /// itself never blocks; the network thread wakes it.
    pub fn wait_for_network(&mut self, timeout: Duration) -> bool {
        self.net.wait(timeout)
    }

    /// The window title: who we are, whether the connection is encrypted, and how much is
    /// unread.
    fn window_title(&self) -> String {
        let mut t = match &self.model.me {
            Some(me) => format!("natter — {me}"),
            None => "natter".to_owned(),
        };
        if self.model.tls && self.model.link == Link::Up {
            t.push_str(" 🔒");
        }
        let unread = self.model.total_unread();
        let mentions = self.model.total_mentions();
        if mentions > 0 {
            t = format!("({unread}, @{mentions}) {t}");
        } else if unread > 0 {
            t = format!("({unread}) {t}");
        }
        t
    }
}

impl eframe::App for ChatApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.pump();
        if self.model.quit {
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
        // The banner counts down to the next attempt.
        if matches!(self.model.link, Link::Lost { .. }) {
            ctx.request_repaint_after(Duration::from_millis(500));
        }
        // A mention while the window is in the background: ask the window system to show
        // it (a flashing task-bar entry, an urgency hint), as chat programs do.
        if self.model.take_attention() && !ctx.input(|i| i.viewport().focused.unwrap_or(true)) {
            ctx.send_viewport_cmd(egui::ViewportCommand::RequestUserAttention(
                egui::UserAttentionType::Informational,
            ));
        }
        let title = self.window_title();
        if title != self.title {
            ctx.send_viewport_cmd(egui::ViewportCommand::Title(title.clone()));
            self.title = title;
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        crate::view::show(ui, self);
        self.flush();
    }

    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        // Closing the window says CLOSE, so the others see us leave at once.
        self.said_goodbye = self.net.close_and_wait(Duration::from_secs(1));
    }
}
