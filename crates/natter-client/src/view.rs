//! Drawing: the connect screen, the name screen and the chat screen.
//!
//! Rendering reads the model and calls its user methods; it never changes protocol state
//! itself. Every input has a name for screen readers and tests: a visible label tied with
//! `labelled_by`, or an accessible name where a label would be clutter.

use crate::app::ChatApp;
use crate::markup::{self, Piece};
use crate::model::{
    Clock, ConvId, Conversation, Delivery, Found, HistoryStatus, Line, LineKind, Link, Member,
    Model, Screen, day_label, starts_day,
};
use crate::theme;
use egui::{
    Align, Button, CentralPanel, Color32, Frame, Key, Label, Layout, Margin, Modifiers, Panel,
    RichText, ScrollArea, Sense, TextEdit, Ui, Widget, vec2,
};

/// Draws the whole window.
pub fn show(ui: &mut Ui, app: &mut ChatApp) {
    match app.model.screen {
        Screen::Connect => centred(ui, |ui| connect_screen(ui, app)),
        Screen::Name => {
            banner(ui, app);
            centred(ui, |ui| name_screen(ui, app));
        }
        Screen::Chat => chat_screen(ui, app),
    }
}

fn now() -> crate::model::Stamp {
    chrono::Local::now()
}

/// A card in the middle of the window.
fn centred(ui: &mut Ui, add: impl FnOnce(&mut Ui)) {
    CentralPanel::default()
        .frame(Frame::new().fill(theme::BG))
        .show(ui, |ui| {
            let width = 380.0_f32.min(ui.available_width() - 32.0);
            let top = ((ui.available_height() - 340.0) / 2.0).max(16.0);
            ui.add_space(top);
            ui.vertical_centered(|ui| {
                ui.set_max_width(width);
                theme::card_frame().show(ui, |ui| {
                    ui.set_width(width - 48.0);
                    ui.with_layout(Layout::top_down(Align::Min), add);
                });
            });
        });
}

/// A text field with a visible label above it, tied to it for screen readers and tests.
fn labelled_field(ui: &mut Ui, label: &str, text: &mut String, hint: &str) -> egui::Response {
    let l = ui.label(RichText::new(label).color(theme::MUTED).small());
    ui.add(
        TextEdit::singleline(text)
            .hint_text(hint)
            .desired_width(f32::INFINITY)
            .margin(Margin::symmetric(8, 6)),
    )
    .labelled_by(l.id)
}

/// A labelled password field: what is typed is shown as dots.
fn labelled_secret(ui: &mut Ui, label: &str, text: &mut String) -> egui::Response {
    let l = ui.label(RichText::new(label).color(theme::MUTED).small());
    ui.add(
        TextEdit::singleline(text)
            .password(true)
            .desired_width(f32::INFINITY)
            .margin(Margin::symmetric(8, 6)),
    )
    .labelled_by(l.id)
}

/// Adds `widget` in a cell `size` big, its content aligned left (`Min`) or centred.
///
/// A button's text follows the layout it is in: centred in a horizontal row, left in a
/// left-aligned column. Rows of names want it left, primary buttons centred.
fn aligned(ui: &mut Ui, size: egui::Vec2, align: Align, widget: impl Widget) -> egui::Response {
    ui.allocate_ui_with_layout(size, Layout::top_down(align), |ui| ui.add(widget))
        .inner
}

/// A primary button, as wide as the space it is in.
fn primary(ui: &mut Ui, enabled: bool, text: &str) -> egui::Response {
    let size = vec2(ui.available_width(), 34.0);
    let button = Button::new(RichText::new(text).color(Color32::WHITE).strong())
        .fill(theme::ACCENT)
        .min_size(size);
    ui.add_enabled_ui(enabled, |ui| aligned(ui, size, Align::Center, button))
        .inner
}

fn error_text(ui: &mut Ui, text: &str) {
    ui.add(Label::new(RichText::new(format!("⚠ {text}")).color(theme::ERROR)).wrap());
}

fn connect_screen(ui: &mut Ui, app: &mut ChatApp) {
    ui.heading(RichText::new("natter").strong().size(26.0));
    ui.label(RichText::new("Connect to a chat server").color(theme::MUTED));
    ui.add_space(14.0);
    let connecting = app.model.link == Link::Connecting;
    let host = labelled_field(ui, "Host", &mut app.host_draft, "localhost");
    ui.add_space(4.0);
    let port = labelled_field(ui, "Port", &mut app.port_draft, "8090");
    ui.add_space(10.0);
    let enter = (host.lost_focus() || port.lost_focus()) && ui.input(|i| i.key_pressed(Key::Enter));
    let clicked = primary(ui, !connecting, "Connect").clicked();
    if (clicked || enter) && !connecting {
        let (h, p) = (app.host_draft.clone(), app.port_draft.clone());
        app.model.connect(&h, &p);
    }
    if connecting {
        ui.add_space(6.0);
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label(
                RichText::new(format!(
                    "Connecting to {}:{}…",
                    app.model.host, app.model.port
                ))
                .color(theme::MUTED),
            );
        });
    }
    if let Some(e) = &app.model.connect_error {
        ui.add_space(6.0);
        error_text(ui, e);
    }
}

fn name_screen(ui: &mut Ui, app: &mut ChatApp) {
    if app.name_draft.is_empty()
        && let Some(me) = &app.model.me
        && app.model.name_error.is_none()
    {
        app.name_draft = me.clone();
    }
    ui.heading(RichText::new("Choose a name").strong());
    let connected = format!("Connected to {}:{}", app.model.host, app.model.port);
    ui.label(RichText::new(connected).color(theme::MUTED));
    ui.add_space(14.0);
    if app.name_draft.is_empty()
        && let Some(saved) = app.model.saved_sign_in()
    {
        app.name_draft = saved.name.clone();
    }
    let field = labelled_field(ui, "Name", &mut app.name_draft, "e.g. alice");
    if std::mem::take(&mut app.focus_name) {
        field.request_focus();
    }
    let password = labelled_secret(
        ui,
        "Password (only if the name is your account)",
        &mut app.password_draft,
    );
    match &app.model.name_error {
        Some(e) => error_text(ui, e),
        None => {
            ui.label(
                RichText::new(
                    "1–32 letters, digits or [ ] \\ ` _ ^ { | } -, starting with a letter; \
                     others must not already use it.",
                )
                .color(theme::MUTED)
                .small(),
            );
        }
    }
    ui.add_space(10.0);
    let busy = app.model.registering();
    let enter =
        (field.lost_focus() || password.lost_focus()) && ui.input(|i| i.key_pressed(Key::Enter));
    if (primary(ui, app.model.is_up() && !busy, "Join the chat").clicked() || enter) && !busy {
        let name = app.name_draft.clone();
        let secret = std::mem::take(&mut app.password_draft);
        app.model.sign_in(&name, &secret);
        if app.model.name_error.is_none() {
            app.focus_compose = true;
        }
    }
    if let Some(g) = &app.model.greeting {
        ui.add_space(8.0);
        ui.label(
            RichText::new(format!("Server: {g}"))
                .color(theme::MUTED)
                .small(),
        );
    }
}

/// The connection banner: lost and reconnecting, or signing in again.
fn banner(ui: &mut Ui, app: &mut ChatApp) {
    let (text, retry) = match &app.model.link {
        Link::Lost {
            error,
            last_attempt,
            attempt,
            retry_in,
            since,
        } => {
            let elapsed = (now() - *since).to_std().unwrap_or_default();
            let left = retry_in.saturating_sub(elapsed).as_secs_f32().ceil();
            let when = if left >= 1.0 {
                format!("Reconnecting in {left:.0} s")
            } else {
                "Reconnecting…".to_owned()
            };
            let tries = match last_attempt {
                Some(why) => format!(" (attempt {attempt} failed: {why})"),
                None => String::new(),
            };
            (format!("Connection lost: {error}. {when}{tries}"), true)
        }
        Link::Up if !app.model.registered && app.model.me.is_some() => {
            ("Reconnected; signing in again…".to_owned(), false)
        }
        _ => return,
    };
    Panel::top("banner")
        .frame(
            Frame::new()
                .fill(theme::WARN_BG)
                .inner_margin(Margin::symmetric(12, 6)),
        )
        .show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.label(RichText::new(format!("⚠ {text}")).color(theme::WARN_TEXT));
                if retry {
                    ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
                        if ui.button("Reconnect now").clicked() {
                            app.model.retry_now();
                        }
                    });
                }
            });
        });
}

fn chat_screen(ui: &mut Ui, app: &mut ChatApp) {
    shortcuts(ui, app);
    banner(ui, app);
    Panel::left("conversations")
        .frame(theme::side_frame())
        .resizable(true)
        .default_size(210.0)
        .size_range(160.0..=360.0)
        .show(ui, |ui| conversations_panel(ui, app));
    // Search results take the people's place, so the conversation a result opens is beside
    // them and the next result is one click away.
    if app.model.search.is_some() {
        Panel::right("search")
            .frame(theme::side_frame())
            .resizable(true)
            .default_size(300.0)
            .size_range(220.0..=520.0)
            .show(ui, |ui| search_panel(ui, app));
    } else {
        Panel::right("people")
            .frame(theme::side_frame())
            .resizable(true)
            .default_size(190.0)
            .size_range(140.0..=320.0)
            .show(ui, |ui| people_panel(ui, app));
    }
    CentralPanel::default()
        .frame(Frame::new().fill(theme::BG))
        .show(ui, |ui| conversation_view(ui, app));
    if app.switcher.is_some() {
        switcher(ui, app);
    }
    bans_window(ui, app);
}

/// Opens `id` with the keyboard in its message box, at its newest lines.
fn go_to(app: &mut ChatApp, id: &ConvId) {
    app.model.open(id);
    app.focus_compose = true;
    app.jump_to_end = true;
}

/// The chat screen's keys, taken before any field sees them: Alt+Up and Alt+Down for the
/// conversation above or below, Ctrl+K (Cmd+K) for the quick switcher, Esc to close the
/// search when nothing nearer is open.
fn shortcuts(ui: &mut Ui, app: &mut ChatApp) {
    let (up, down, switch) = ui.input_mut(|i| {
        (
            i.consume_key(Modifiers::ALT, Key::ArrowUp),
            i.consume_key(Modifiers::ALT, Key::ArrowDown),
            i.consume_key(Modifiers::COMMAND, Key::K),
        )
    });
    let step = match (up, down) {
        (true, false) => -1,
        (false, true) => 1,
        _ => 0,
    };
    if step != 0
        && let Some(id) = app.model.neighbour(step)
    {
        go_to(app, &id);
    }
    if switch {
        app.switcher = Some(String::new());
        app.focus_switcher = true;
    }
    // Menus and the switcher close on Esc themselves; only then does it close the search.
    let nearer = app.switcher.is_some() || egui::Popup::is_any_open(ui.ctx());
    if !nearer
        && app.model.search.is_some()
        && ui.input_mut(|i| i.consume_key(Modifiers::NONE, Key::Escape))
    {
        app.model.close_search();
        app.focus_compose = true;
    }
}

/// The quick switcher: a filter field over the conversations; Enter opens the first that
/// matches, a click any of them, Esc closes it.
fn switcher(ui: &mut Ui, app: &mut ChatApp) {
    let mut chosen: Option<ConvId> = None;
    let modal = egui::Modal::new(egui::Id::unique("switcher")).show(ui.ctx(), |ui| {
        ui.set_width(320.0);
        let l = ui.label(RichText::new("Go to a conversation").strong());
        let filter = app.switcher.get_or_insert_default();
        let field = ui
            .add(
                TextEdit::singleline(filter)
                    .hint_text("Name of a room or person")
                    .desired_width(f32::INFINITY)
                    .margin(Margin::symmetric(8, 6)),
            )
            .labelled_by(l.id);
        if std::mem::take(&mut app.focus_switcher) {
            field.request_focus();
        }
        let words = filter.to_lowercase();
        let matches: Vec<&Conversation> = app
            .model
            .conversations
            .iter()
            .filter(|c| c.title.to_lowercase().contains(words.trim()))
            .collect();
        if field.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter)) {
            chosen = matches.first().map(|c| c.id.clone());
        }
        ui.add_space(4.0);
        for c in &matches {
            let text = match c.id {
                ConvId::Dm(_) => format!("@ {}", c.title),
                _ => c.title.clone(),
            };
            let size = vec2(ui.available_width(), 26.0);
            let button = Button::selectable(c.id == app.model.active, text).min_size(size);
            if aligned(ui, size, Align::Min, button).clicked() {
                chosen = Some(c.id.clone());
            }
        }
        if matches.is_empty() {
            ui.label(RichText::new("No conversation by that name").color(theme::MUTED));
        }
    });
    if let Some(id) = chosen {
        app.switcher = None;
        go_to(app, &id);
    } else if modal.should_close() {
        app.switcher = None;
        app.focus_compose = true;
    }
}

/// A small filled circle, vertically centred on the text line.
fn status_dot(ui: &mut Ui, colour: Color32) {
    let (rect, _) = ui.allocate_exact_size(vec2(8.0, 14.0), egui::Sense::hover());
    ui.painter().circle_filled(rect.center(), 4.0, colour);
}

fn section(ui: &mut Ui, text: &str) {
    ui.add_space(4.0);
    ui.label(RichText::new(text).color(theme::MUTED).small().strong());
}

/// A rounded unread count at the right end of a conversation row: red with an `@` when
/// some of it mentions us, quieter when it is only chatter.
fn unread_pill(ui: &Ui, row: egui::Rect, unread: usize, mentioned: usize) {
    let count = |n: usize| {
        if n > 99 {
            "99+".to_owned()
        } else {
            n.to_string()
        }
    };
    let (text, fill) = if mentioned > 0 {
        (format!("@{}", count(mentioned)), theme::BADGE)
    } else {
        (count(unread), theme::UNREAD)
    };
    let font = egui::FontId::proportional(11.5);
    let galley = ui.painter().layout_no_wrap(text, font, Color32::WHITE);
    let w = (galley.size().x + 12.0).max(20.0);
    let rect = egui::Rect::from_center_size(
        egui::pos2(row.right() - 8.0 - w / 2.0, row.center().y),
        vec2(w, 18.0),
    );
    ui.painter().rect_filled(rect, 9.0, fill);
    ui.painter()
        .galley(rect.center() - galley.size() / 2.0, galley, Color32::WHITE);
}

fn conversations_panel(ui: &mut Ui, app: &mut ChatApp) {
    ui.horizontal(|ui| {
        ui.label(RichText::new("natter").strong().size(18.0));
        if let Some(me) = &app.model.me {
            let dot = if app.model.registered {
                theme::OK
            } else {
                theme::MUTED
            };
            status_dot(ui, dot);
            ui.add(Label::new(RichText::new(me).color(theme::ACCENT)).truncate());
        }
    });
    ui.add_space(6.0);
    let field = ui
        .add(
            TextEdit::singleline(&mut app.search_draft)
                .hint_text("🔍 Search messages")
                .desired_width(f32::INFINITY)
                .margin(Margin::symmetric(8, 5)),
        )
        .on_hover_text("Messages holding every word, in everything you may read")
        .accessible_name("Search messages");
    if field.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter)) {
        let words = app.search_draft.clone();
        app.model.search(&words);
    }
    ui.add_space(6.0);
    section(ui, "CONVERSATIONS");
    let mut open: Option<ConvId> = None;
    let mut close: Option<ConvId> = None;
    let mut mute: Option<(ConvId, bool)> = None;
    ScrollArea::vertical()
        .id_salt("conversation-list")
        .auto_shrink([false, true])
        .max_height(ui.available_height() * 0.6)
        .show(ui, |ui| {
            for c in &app.model.conversations {
                let selected = c.id == app.model.active;
                let (icon, faint) = match &c.id {
                    ConvId::Everyone => ("🌐", false),
                    ConvId::Room(_) => ("#", !c.joined),
                    ConvId::Dm(_) => ("@", !c.joined),
                };
                let title = c.title.trim_start_matches('#');
                let bell = if c.muted { " 🔕" } else { "" };
                let mut text = RichText::new(format!("{icon} {title}{bell}"));
                if faint || c.muted {
                    text = text.color(theme::MUTED);
                }
                if c.unread > 0 {
                    text = text.strong();
                }
                let closable = c.id != ConvId::Everyone;
                ui.horizontal(|ui| {
                    // The close button is fixed in size, so the row never outgrows the panel.
                    let close_w = 22.0;
                    let gap = ui.spacing().item_spacing.x;
                    let w = ui.available_width() - if closable { close_w + gap } else { 0.0 };
                    let size = vec2(w, 28.0);
                    let button = Button::selectable(selected, text).min_size(size);
                    let r = aligned(ui, size, Align::Min, button);
                    if c.unread > 0 {
                        unread_pill(ui, r.rect, c.unread, c.mentioned);
                    }
                    let what = match c.id {
                        ConvId::Dm(_) => format!("Direct messages with {}", c.title),
                        _ => c.title.clone(),
                    };
                    let mut name = match c.unread {
                        0 => what,
                        n => format!("{what}, {n} unread"),
                    };
                    match c.mentioned {
                        0 => {}
                        1 => name.push_str(", 1 mention"),
                        n => name.push_str(&format!(", {n} mentions")),
                    }
                    if c.muted {
                        name.push_str(", muted");
                    }
                    let r = r.accessible_name(name);
                    if r.clicked() {
                        open = Some(c.id.clone());
                    }
                    r.context_menu(|ui| {
                        let label = if c.muted { "Unmute" } else { "Mute" };
                        if ui
                            .button(label)
                            .on_hover_text(
                                "Muted: nothing counted as unread, no calls for attention",
                            )
                            .clicked()
                        {
                            mute = Some((c.id.clone(), !c.muted));
                            ui.close();
                        }
                    });
                    if closable {
                        let what = if c.is_room() && c.joined {
                            format!("Leave {}", c.title)
                        } else {
                            format!("Close {}", c.title)
                        };
                        ui.spacing_mut().button_padding = vec2(2.0, 2.0);
                        let x = ui
                            .add(
                                Button::new(RichText::new("×").color(theme::MUTED))
                                    .frame(false)
                                    .min_size(vec2(close_w, 28.0)),
                            )
                            .on_hover_text(&what)
                            .accessible_name(what);
                        if x.clicked() {
                            close = Some(c.id.clone());
                        }
                    }
                });
            }
        });
    if let Some(id) = open {
        go_to(app, &id);
    }
    if let Some(id) = close {
        app.model.close_conversation(&id, now());
    }
    if let Some((id, muted)) = mute {
        app.model.set_muted(&id, muted);
    }
    ui.add_space(8.0);
    section(ui, "ROOMS");
    ui.horizontal(|ui| {
        let l = ui.label(RichText::new("Room").color(theme::MUTED).small());
        ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
            let join = ui.add_enabled(app.model.registered, Button::new("Join"));
            let field = ui
                .add(
                    TextEdit::singleline(&mut app.join_draft)
                        .hint_text("#name")
                        .desired_width(ui.available_width()),
                )
                .labelled_by(l.id);
            let enter = field.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter));
            if (join.clicked() || enter) && !app.join_draft.trim().is_empty() {
                let room = std::mem::take(&mut app.join_draft);
                app.model.join(&room, now());
            }
        });
    });
    ui.add_space(2.0);
    ui.horizontal(|ui| {
        let n = app.model.directory.len();
        let rooms = format!("{n} room{} on the server", if n == 1 { "" } else { "s" });
        ui.label(RichText::new(rooms).color(theme::MUTED).small());
        ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
            ui.spacing_mut().button_padding = vec2(4.0, 0.0);
            if ui
                .add_enabled(
                    app.model.registered,
                    Button::new(RichText::new("↻").color(theme::MUTED)).frame(false),
                )
                .on_hover_text("Refresh the room list")
                .accessible_name("Refresh rooms")
                .clicked()
            {
                app.model.refresh_rooms();
            }
        });
    });
    let mut join: Option<String> = None;
    ScrollArea::vertical()
        .id_salt("directory")
        .auto_shrink([false, true])
        .show(ui, |ui| {
            for r in &app.model.directory {
                let joined = app
                    .model
                    .conversation(&ConvId::room(&r.name))
                    .is_some_and(|c| c.joined);
                let people = match r.members {
                    1 => "1 person".to_owned(),
                    n => format!("{n} people"),
                };
                let state = if joined { " · joined" } else { "" };
                let mut job = egui::text::LayoutJob::default();
                let body = egui::TextStyle::Body.resolve(ui.style());
                let small = egui::TextStyle::Small.resolve(ui.style());
                job.append(&r.name, 0.0, egui::TextFormat::simple(body, theme::TEXT));
                job.append(
                    &format!("{people}{state}"),
                    8.0,
                    egui::TextFormat::simple(small, theme::MUTED),
                );
                let hover = if r.topic.is_empty() {
                    format!("{}: no topic. Click to join.", r.name)
                } else {
                    format!("{}: {}. Click to join.", r.name, r.topic)
                };
                let resp = ui
                    .add(
                        Button::new(job)
                            .frame_when_inactive(false)
                            .min_size(vec2(ui.available_width(), 24.0)),
                    )
                    .on_hover_text(hover)
                    .accessible_name(format!("{}, {people}{state}", r.name));
                if resp.clicked() {
                    join = Some(r.name.clone());
                }
            }
        });
    if let Some(room) = join {
        app.model.join(&room, now());
        app.focus_compose = true;
    }
    Panel::bottom("account")
        .frame(Frame::new().inner_margin(Margin::symmetric(0, 6)))
        .show_separator_line(false)
        .show(ui, |ui| {
            let server = format!("{}:{}", app.model.host, app.model.port);
            ui.horizontal(|ui| {
                if app.model.tls {
                    ui.label(RichText::new("🔒 TLS").color(theme::OK).small())
                        .on_hover_text("Encrypted: TLS, and the server's certificate is trusted");
                }
                ui.add(Label::new(RichText::new(server).color(theme::MUTED).small()).truncate());
                ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
                    if ui
                        .add(Button::new(RichText::new("Disconnect").small()).frame(false))
                        .on_hover_text("Say goodbye and go back to the connect screen")
                        .clicked()
                    {
                        app.model.disconnect();
                    }
                });
            });
        });
}

/// One person in the side panel: a dot, the name, and a click to open a DM; the name's
/// response (not for ourselves), for a menu.
fn person(
    ui: &mut Ui,
    model: &Model,
    name: &str,
    op: bool,
) -> (Option<String>, Option<egui::Response>) {
    let me = model.is_me(name);
    let prefix = if op { "@" } else { "" };
    ui.horizontal(|ui| {
        ui.spacing_mut().item_spacing.x = 4.0;
        status_dot(ui, theme::OK);
        if me {
            let mark = if model.is_account(name) { " ✔" } else { "" };
            let text = RichText::new(format!("{prefix}{name}{mark} (you)")).color(theme::ACCENT);
            // Padded like the buttons beside it, so the names line up.
            ui.add_space(ui.spacing().button_padding.x);
            let size = vec2(ui.available_width(), 24.0);
            let layout = Layout::left_to_right(Align::Center).with_main_align(Align::Min);
            ui.allocate_ui_with_layout(size, layout, |ui| {
                ui.set_min_size(size);
                ui.add(Label::new(text).truncate());
            });
            return (None, None);
        }
        // A check mark: the name is its owner's account, not a guest's.
        let mark = if model.is_account(name) { " ✔" } else { "" };
        let text = RichText::new(format!("{prefix}{name}{mark}")).color(theme::name_colour(name));
        let size = vec2(ui.available_width(), 24.0);
        let button = Button::new(text).frame_when_inactive(false).min_size(size);
        let r = aligned(ui, size, Align::Min, button)
            .on_hover_text(format!("Send {name} a direct message"));
        (r.clicked().then(|| name.to_owned()), Some(r))
    })
    .inner
}

fn people_panel(ui: &mut Ui, app: &mut ChatApp) {
    let mut dm: Option<String> = None;
    let mut action: Option<(String, String, MemberAction)> = None;
    ScrollArea::vertical()
        .id_salt("people")
        .auto_shrink([false, false])
        .show(ui, |ui| {
            let conv = app.model.active_conversation();
            if conv.is_room() && conv.joined {
                section(
                    ui,
                    &format!("IN {} — {}", conv.title.to_uppercase(), conv.members.len()),
                );
                // Only an operator gets a menu on the members.
                let op_here = app.model.is_op(&conv.id);
                for m in &conv.members {
                    let (click, r) = person(ui, &app.model, &m.name, m.op);
                    if let Some(n) = click {
                        dm = Some(n);
                    }
                    if op_here && let Some(r) = r {
                        r.context_menu(|ui| {
                            if let Some(a) = member_menu(ui, m, &conv.title) {
                                action = Some((conv.title.clone(), m.name.clone(), a));
                            }
                        });
                    }
                }
                ui.add_space(10.0);
            }
            let n = app.model.users.len();
            if !app.model.registered {
                section(ui, "ONLINE");
                ui.label(RichText::new("not connected").color(theme::MUTED).italics());
            } else {
                section(ui, &format!("ONLINE — {n}"));
            }
            for u in &app.model.users {
                if let (Some(name), _) = person(ui, &app.model, u, false) {
                    dm = Some(name);
                }
            }
        });
    match action {
        Some((room, _, MemberAction::Mode(change, what))) => {
            app.model.set_mode(&room, &change, &what, now())
        }
        Some((room, name, MemberAction::Ban)) => app.model.ban(&room, &name, now()),
        Some((room, name, MemberAction::Kick)) => app.model.kick(&room, &name, now()),
        None => {}
    }
    if let Some(name) = dm {
        app.model.open_dm(&name);
        app.focus_compose = true;
        app.jump_to_end = true;
    }
}

fn conversation_view(ui: &mut Ui, app: &mut ChatApp) {
    let conv = header(app.model.active_conversation());
    // Header: what this conversation is.
    Panel::top("conversation-header")
        .frame(
            Frame::new()
                .fill(theme::BG)
                .inner_margin(Margin::symmetric(16, 10)),
        )
        .show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.label(RichText::new(&conv.title).strong().size(17.0));
                let sub = match &conv.id {
                    ConvId::Everyone if !app.model.registered => "not connected".into(),
                    ConvId::Everyone => format!(
                        "everybody online · {} {}",
                        app.model.users.len(),
                        if app.model.users.len() == 1 {
                            "person"
                        } else {
                            "people"
                        }
                    ),
                    ConvId::Room(_) if !conv.joined => "you are not in this room".into(),
                    ConvId::Room(_) => conv.topic.clone().unwrap_or_else(|| {
                        if app.model.can_set_topic(&conv.id) {
                            "no topic: /topic text sets one".into()
                        } else {
                            "no topic".into()
                        }
                    }),
                    ConvId::Dm(_) if conv.joined => "direct messages · online".into(),
                    ConvId::Dm(_) => "direct messages · offline".into(),
                };
                ui.add(Label::new(RichText::new(sub).color(theme::MUTED)).truncate());
                ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
                    if let ConvId::Room(_) = conv.id {
                        if conv.joined {
                            if ui.button("Leave").clicked() {
                                app.model.part(&conv.title, None, now());
                            }
                            // What a member may not do is not offered.
                            if app.model.is_op(&conv.id) {
                                form_menu(ui, "Manage ▾", |ui| room_menu(ui, app, &conv));
                            } else if app.model.can_set_topic(&conv.id) {
                                form_menu(ui, "Topic…", |ui| topic_field(ui, app, &conv.title));
                            }
                        } else if ui.button("Join").clicked() {
                            app.model.join(&conv.title, now());
                        }
                    }
                });
            });
        });
    // The message box.
    Panel::bottom("compose")
        .frame(
            Frame::new()
                .fill(theme::BG)
                .inner_margin(Margin::symmetric(16, 10)),
        )
        .show(ui, |ui| compose(ui, app, &conv));
    // The history.
    CentralPanel::default()
        .frame(Frame::new().fill(theme::BG).inner_margin(Margin {
            left: 16,
            right: 8,
            top: 6,
            bottom: 0,
        }))
        .show(ui, |ui| history(ui, app));
}

/// A menu holding fields and check boxes: it stays open while they are used, and closes on
/// a click outside it (or when an item closes it).
fn form_menu(ui: &mut Ui, title: &str, add: impl FnOnce(&mut Ui)) {
    let config = egui::containers::menu::MenuConfig::new()
        .close_behavior(egui::PopupCloseBehavior::CloseOnClickOutside);
    egui::containers::menu::MenuButton::new(title)
        .config(config)
        .ui(ui, add);
}

/// A field and its button on one row of a menu; true when the button was pressed (or Enter
/// in the field).
fn field_row(ui: &mut Ui, text: &mut String, label: &str, hint: &str, button: &str) -> bool {
    ui.horizontal(|ui| {
        let field = ui
            .add(
                TextEdit::singleline(text)
                    .hint_text(hint)
                    .desired_width(150.0),
            )
            .accessible_name(label);
        let enter = field.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter));
        let pressed = ui
            .add_enabled(!text.trim().is_empty(), Button::new(button))
            .clicked();
        pressed || (enter && !text.trim().is_empty())
    })
    .inner
}

fn topic_field(ui: &mut Ui, app: &mut ChatApp, room: &str) {
    let drafts = &mut app.room_drafts;
    if field_row(
        ui,
        &mut drafts.topic,
        "Topic",
        "what the room is for",
        "Set topic",
    ) {
        let text = std::mem::take(&mut drafts.topic);
        app.model.set_topic(room, &text, now());
        ui.close();
    }
}

/// An operator's menu of a room: its modes, key, limit, invitations, bans and topic.
fn room_menu(ui: &mut Ui, app: &mut ChatApp, conv: &Header) {
    ui.set_min_width(260.0);
    let room = conv.title.as_str();
    let modes = app
        .model
        .conversation(&conv.id)
        .and_then(|c| c.modes.clone());
    let Some(m) = modes else {
        ui.label(RichText::new("Asking the server for the room's modes…").color(theme::MUTED));
        return;
    };
    let flags = [
        (
            'i',
            m.invite_only,
            "Invite only",
            format!("make {room} invite-only"),
            format!("open {room}"),
        ),
        (
            'm',
            m.moderated,
            "Moderated",
            format!("make {room} moderated"),
            format!("make {room} unmoderated"),
        ),
        (
            's',
            m.secret,
            "Secret",
            format!("make {room} secret"),
            format!("make {room} no longer secret"),
        ),
        (
            't',
            m.topic_ops,
            "Only operators set the topic",
            "keep the topic to operators".to_owned(),
            "let every member set the topic".to_owned(),
        ),
    ];
    for (letter, on, label, set, unset) in flags {
        let mut v = on;
        if ui.checkbox(&mut v, label).changed() {
            let (sign, what) = if v { ('+', set) } else { ('-', unset) };
            app.model
                .set_mode(room, &format!("{sign}{letter}"), &what, now());
        }
    }
    ui.separator();
    let hint = if m.key.is_some() {
        "a new key"
    } else {
        "a key"
    };
    if field_row(ui, &mut app.room_drafts.key, "Key", hint, "Set key") {
        let key = std::mem::take(&mut app.room_drafts.key);
        app.model.set_key(room, &key, now());
    }
    if m.key.is_some() && ui.button("Remove the key").clicked() {
        app.model
            .set_mode(room, "-k", &format!("remove the key of {room}"), now());
    }
    let hint = match m.limit {
        Some(n) => format!("now {n}"),
        None => "no limit".to_owned(),
    };
    if field_row(
        ui,
        &mut app.room_drafts.limit,
        "Member limit",
        &hint,
        "Set limit",
    ) {
        let limit = std::mem::take(&mut app.room_drafts.limit);
        app.model.set_limit(room, &limit, now());
    }
    if m.limit.is_some() && ui.button("Remove the member limit").clicked() {
        app.model.set_mode(
            room,
            "-l",
            &format!("remove the member limit of {room}"),
            now(),
        );
    }
    ui.separator();
    if field_row(
        ui,
        &mut app.room_drafts.invite,
        "Name to invite",
        "a name",
        "Invite",
    ) {
        let name = std::mem::take(&mut app.room_drafts.invite);
        app.model.invite(room, &name, now());
    }
    topic_field(ui, app, room);
    ui.separator();
    if ui.button("Bans…").clicked() {
        app.model.ask_bans(room, now());
        app.bans_open = Some(conv.id.clone());
        ui.close();
    }
}

/// The bans of a room, each with a button that lifts it (for its operators).
fn bans_window(ui: &mut Ui, app: &mut ChatApp) {
    let Some(id) = app.bans_open.clone() else {
        return;
    };
    let Some(c) = app.model.conversation(&id).filter(|_| app.model.is_op(&id)) else {
        app.bans_open = None;
        return;
    };
    let room = c.title.clone();
    let bans = c.bans.clone();
    let mut open = true;
    let mut lift: Option<String> = None;
    egui::Window::new(format!("Bans of {room}"))
        .open(&mut open)
        .collapsible(false)
        .resizable(false)
        .default_width(320.0)
        .show(ui.ctx(), |ui| match &bans {
            None => {
                ui.label(RichText::new("Asking the server…").color(theme::MUTED));
            }
            Some(b) if b.is_empty() => {
                ui.label("Nobody is banned.");
            }
            Some(b) => {
                for ban in b {
                    ui.horizontal(|ui| {
                        ui.label(&ban.mask);
                        ui.label(RichText::new(format!("by {}", ban.by)).color(theme::MUTED));
                        ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
                            let r = ui
                                .button("Lift")
                                .accessible_name(format!("Lift the ban on {}", ban.mask));
                            if r.clicked() {
                                lift = Some(ban.mask.clone());
                            }
                        });
                    });
                }
            }
        });
    if let Some(mask) = lift {
        let what = format!("lift the ban on {mask}");
        app.model
            .set_mode(&room, &format!("-b {mask}"), &what, now());
    }
    if !open {
        app.bans_open = None;
    }
}

/// What an operator chose in a member's menu.
enum MemberAction {
    Mode(String, String),
    Ban,
    Kick,
}

/// An operator's menu of one member: voice, operator, ban, remove.
fn member_menu(ui: &mut Ui, m: &Member, room: &str) -> Option<MemberAction> {
    let name = &m.name;
    let mut chose = None;
    let mut item = |ui: &mut Ui, label: &str, action: MemberAction| {
        if ui.button(label).clicked() {
            chose = Some(action);
            ui.close();
        }
    };
    if m.voice {
        item(
            ui,
            "Remove voice",
            MemberAction::Mode(format!("-v {name}"), format!("take voice from {name}")),
        );
    } else {
        item(
            ui,
            "Give voice",
            MemberAction::Mode(format!("+v {name}"), format!("give {name} voice")),
        );
    }
    if m.op {
        item(
            ui,
            "Remove operator",
            MemberAction::Mode(
                format!("-o {name}"),
                format!("take operator status from {name}"),
            ),
        );
    } else {
        item(
            ui,
            "Make operator",
            MemberAction::Mode(
                format!("+o {name}"),
                format!("make {name} an operator of {room}"),
            ),
        );
    }
    ui.separator();
    item(ui, "Ban", MemberAction::Ban);
    item(ui, "Remove from room", MemberAction::Kick);
    chose
}

/// The parts of a conversation the header needs, without its history.
struct Header {
    id: ConvId,
    title: String,
    joined: bool,
    topic: Option<String>,
}

fn header(c: &Conversation) -> Header {
    Header {
        id: c.id.clone(),
        title: c.title.clone(),
        joined: c.joined,
        topic: c.topic.clone(),
    }
}

/// The most the message box grows to before it scrolls: about eight lines.
const COMPOSE_MAX_HEIGHT: f32 = 160.0;

fn compose(ui: &mut Ui, app: &mut ChatApp, conv: &Header) {
    let hint = match &conv.id {
        ConvId::Everyone => "Message everyone — or type /help".to_owned(),
        ConvId::Room(_) => format!("Message {}", conv.title),
        ConvId::Dm(_) => format!("Message {}", conv.title),
    };
    let can_send = app.model.is_up() && app.model.registered;
    // Who is typing here: a row of its own, kept when empty so the box does not jump.
    let typing = app.model.active_conversation().typing_line(now());
    if typing.is_some() {
        // Someone shown stops showing when their time runs out, even if nothing else happens.
        ui.ctx()
            .request_repaint_after(std::time::Duration::from_secs(1));
    }
    let row = vec2(ui.available_width(), 16.0);
    ui.allocate_ui_with_layout(row, Layout::left_to_right(Align::Center), |ui| {
        ui.set_min_size(row);
        if let Some(t) = typing {
            ui.add(
                Label::new(RichText::new(t).color(theme::MUTED).italics().size(12.0)).truncate(),
            );
        }
    });
    ui.horizontal(|ui| {
        let send_w = 72.0;
        let id = ui.make_persistent_id("compose");
        // Up in an empty box brings back what was sent last, to fix or send again.
        if ui.memory(|m| m.has_focus(id))
            && app.compose.is_empty()
            && let Some(last) = app.last_sent.clone()
            && ui.input_mut(|i| i.consume_key(Modifiers::NONE, Key::ArrowUp))
        {
            app.compose = last;
            let mut state = egui::text_edit::TextEditState::load(ui.ctx(), id).unwrap_or_default();
            let end = egui::text::CCursor::new(app.compose.chars().count());
            state
                .cursor
                .set_char_range(Some(egui::text::CCursorRange::one(end)));
            state.store(ui.ctx(), id);
        }
        // Enter sends; Shift+Enter is the box's own new line (a paste keeps its lines, CR LF
        // as one). Taken before the box sees it, so the box never gets a plain Enter.
        let enter = ui.memory(|m| m.has_focus(id))
            && ui.input_mut(|i| {
                for e in &mut i.events {
                    if let egui::Event::Paste(text) = e
                        && text.contains('\r')
                    {
                        *text = text.replace("\r\n", "\n").replace('\r', "\n");
                    }
                }
                let before = i.events.len();
                i.events.retain(|e| {
                    !matches!(
                        e,
                        egui::Event::Key {
                            key: Key::Enter,
                            pressed: true,
                            modifiers,
                            ..
                        } if !modifiers.shift && !modifiers.alt
                    )
                });
                i.events.len() < before
            });
        let width = ui.available_width() - send_w - 8.0;
        // Up to about eight lines tall, then it scrolls.
        let field = ScrollArea::vertical()
            .id_salt("compose-scroll")
            .max_height(COMPOSE_MAX_HEIGHT)
            .stick_to_bottom(true)
            .show(ui, |ui| {
                ui.add(
                    TextEdit::multiline(&mut app.compose)
                        .id(id)
                        .hint_text(hint)
                        .desired_rows(1)
                        .desired_width(width)
                        .return_key(egui::KeyboardShortcut::new(Modifiers::SHIFT, Key::Enter))
                        .margin(Margin::symmetric(10, 8)),
                )
                .accessible_name("Message")
            })
            .inner;
        if std::mem::take(&mut app.focus_compose) {
            field.request_focus();
        }
        if field.changed() {
            app.model.typed(&app.compose, now());
        }
        let send = ui.add_enabled(
            can_send && !app.compose.trim().is_empty(),
            Button::new(RichText::new("Send").color(Color32::WHITE).strong())
                .fill(theme::ACCENT)
                .min_size(vec2(send_w, 34.0)),
        );
        if send.clicked() || enter {
            let text = app.compose.clone();
            if app.model.submit(&text, now()) {
                app.last_sent = Some(text);
                app.compose.clear();
                app.jump_to_end = true;
            }
            field.request_focus();
        }
    });
}

/// Where the first line of a conversation was drawn, from the top of its content.
#[derive(Debug, Clone, PartialEq)]
pub struct Anchor {
    /// The conversation.
    conv: ConvId,
    /// The first line's id.
    line: u64,
    /// How far below the content's top it was.
    y: f32,
    /// Whether the view was at the newest lines (then it stays there instead).
    at_end: bool,
}

fn history(ui: &mut Ui, app: &mut ChatApp) {
    let id = app.model.active.clone();
    let mut area = ScrollArea::vertical()
        .id_salt(("history", format!("{id:?}")))
        .auto_shrink([false, false])
        .stick_to_bottom(true);
    if let Some(y) = app.scroll_fix.take() {
        area = area.vertical_scroll_offset(y);
    }
    let jump = std::mem::take(&mut app.jump_to_end);
    let anchor = app.anchor.take().filter(|a| a.conv == id);
    let focus = app
        .model
        .focus
        .as_ref()
        .filter(|(c, _)| *c == id)
        .map(|(_, m)| *m);
    let today = now().date_naive();
    let clock = app.clock;
    let conv = app.model.active_conversation();
    let history = conv.history.clone();
    let mut first: Option<(u64, f32)> = None;
    let mut anchor_now: Option<f32> = None;
    let mut focused = false;
    let mut load = false;
    let out = area.show(ui, |ui| {
        let top = ui.max_rect().top();
        ui.add_space(6.0);
        load = history_start(ui, conv);
        if conv.lines.is_empty() && history.status != HistoryStatus::Loading {
            ui.label(
                RichText::new("No messages yet.")
                    .color(theme::MUTED)
                    .italics(),
            );
        }
        let mut prev: Option<&Line> = None;
        for line in &conv.lines {
            if starts_day(prev, line) {
                day_separator(ui, &day_label(line.at.date_naive(), today));
            }
            if conv.new_since == Some(line.id) {
                new_marker(ui);
            }
            let y = ui.cursor().top() - top;
            first.get_or_insert((line.id, y));
            if anchor.as_ref().is_some_and(|a| a.line == line.id) {
                anchor_now = Some(y);
            }
            let is_focus = focus.is_some() && line.msg == focus;
            let rect = line_row(ui, line, prev, is_focus, clock);
            if is_focus {
                ui.scroll_to_rect(rect, Some(Align::Center));
                focused = true;
            }
            prev = Some(line);
        }
        ui.add_space(6.0);
        if jump {
            ui.scroll_to_cursor(Some(Align::BOTTOM));
        }
    });
    let offset = out.state.clamped_offset().y;
    let at_end = offset + out.inner_rect.height() >= out.content_size.y - 4.0;
    // Lines came in above those on screen (an older page): keep those where they were,
    // drawing this pass again with the offset moved by what was added.
    if let (Some(a), Some(y)) = (&anchor, anchor_now)
        && !a.at_end
        && (y - a.y).abs() > 0.5
    {
        app.scroll_fix = Some(offset + y - a.y);
        ui.ctx().request_discard("older messages above the view");
    }
    app.anchor = first.map(|(line, y)| Anchor {
        conv: id.clone(),
        line,
        y,
        at_end,
    });
    if focused {
        app.model.focus = None;
    }
    // Scrolled to the top (or never scrollable): the page before.
    if (load || offset <= 1.0) && history.can_load_older() && app.scroll_fix.is_none() {
        app.model.load_older(&id);
    }
    // Scrolled up: offer a way back to the newest lines.
    if !at_end {
        let rect = out.inner_rect;
        let pos = egui::pos2(rect.right() - 150.0, rect.bottom() - 40.0);
        egui::Area::new(egui::Id::unique("jump-to-end"))
            .fixed_pos(pos)
            .show(ui.ctx(), |ui| {
                if ui
                    .add(Button::new("↓ Latest messages").fill(theme::CARD))
                    .clicked()
                {
                    app.jump_to_end = true;
                }
            });
    }
}

/// The top of a conversation: where its history stands. True if the user asked for more.
fn history_start(ui: &mut Ui, conv: &Conversation) -> bool {
    let h = &conv.history;
    let muted = |t: &str| RichText::new(t).color(theme::MUTED).small().italics();
    let mut clicked = false;
    ui.vertical_centered(|ui| {
        if h.status == HistoryStatus::Loading || h.loading_older {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label(muted("Loading messages…"));
            });
        } else if h.can_load_older() {
            clicked = ui
                .add(Button::new(RichText::new("Load older messages").small()).frame(false))
                .clicked();
        } else if h.status == HistoryStatus::Loaded && !conv.lines.is_empty() {
            ui.label(muted("The start of the conversation"));
        }
    });
    clicked
}

/// A rule across the history with a label in its middle.
fn rule(ui: &mut Ui, text: RichText, colour: Color32) {
    ui.add_space(6.0);
    let (rect, _) = ui.allocate_exact_size(vec2(ui.available_width(), 18.0), Sense::hover());
    let label = Label::new(text).selectable(false);
    let galley_w = ui
        .painter()
        .layout_no_wrap(
            label.text().to_owned(),
            egui::TextStyle::Small.resolve(ui.style()),
            colour,
        )
        .size()
        .x;
    let mid = rect.center();
    let gap = galley_w / 2.0 + 10.0;
    let stroke = egui::Stroke::new(1.0, colour.gamma_multiply(0.45));
    ui.painter()
        .hline(rect.left()..=(mid.x - gap).max(rect.left()), mid.y, stroke);
    ui.painter().hline(
        (mid.x + gap).min(rect.right())..=rect.right(),
        mid.y,
        stroke,
    );
    let text_rect = egui::Rect::from_center_size(mid, vec2(gap * 2.0, rect.height()));
    ui.put(text_rect, label);
    ui.add_space(2.0);
}

/// Between the lines of two days.
fn day_separator(ui: &mut Ui, text: &str) {
    rule(
        ui,
        RichText::new(text).small().strong().color(theme::MUTED),
        theme::MUTED,
    );
}

/// Above the first line that came while the conversation was not on screen.
fn new_marker(ui: &mut Ui) {
    rule(
        ui,
        RichText::new("New messages")
            .small()
            .strong()
            .color(theme::BADGE),
        theme::BADGE,
    );
}

/// The search results, in the side panel.
fn search_panel(ui: &mut Ui, app: &mut ChatApp) {
    let Some(search) = app.model.search.clone() else {
        return;
    };
    let mut close = false;
    ui.horizontal(|ui| {
        section(ui, "SEARCH");
        ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
            close = ui
                .add(Button::new(RichText::new("×").color(theme::MUTED)).frame(false))
                .on_hover_text("Close the search")
                .accessible_name("Close search")
                .clicked();
        });
    });
    let n = search.found.len();
    let sub = if search.waiting {
        format!("Looking for “{}”…", search.words)
    } else {
        let s = if n == 1 { "" } else { "s" };
        format!("{n} message{s} with “{}”", search.words)
    };
    ui.add(Label::new(RichText::new(sub).color(theme::MUTED).small()).wrap());
    ui.add_space(4.0);
    let today = now().date_naive();
    let mut chosen: Option<usize> = None;
    ScrollArea::vertical()
        .id_salt("search-results")
        .auto_shrink([false, false])
        .show(ui, |ui| {
            if search.waiting {
                ui.spinner();
            } else if let Some(e) = &search.error {
                ui.add(Label::new(RichText::new(e).color(theme::MUTED).italics()).wrap());
            } else if search.found.is_empty() {
                let t = RichText::new("No messages hold all of those words.")
                    .color(theme::MUTED)
                    .italics();
                ui.add(Label::new(t).wrap());
            }
            for (i, f) in search.found.iter().enumerate() {
                if found_row(ui, f, today, app.clock).clicked() {
                    chosen = Some(i);
                }
            }
        });
    if close {
        app.model.close_search();
    }
    if let Some(i) = chosen {
        app.model.open_found(i);
        app.focus_compose = true;
    }
}

/// One search result: where, who and when, then the text; a click opens it.
fn found_row(ui: &mut Ui, f: &Found, today: chrono::NaiveDate, clock: Clock) -> egui::Response {
    let when = format!(
        "{} {}",
        day_label(f.at.date_naive(), today),
        clock.time(&f.at)
    );
    let place = match f.conv {
        ConvId::Dm(_) => format!("@{}", f.place),
        _ => f.place.clone(),
    };
    let body = egui::TextStyle::Body.resolve(ui.style());
    let small = egui::TextStyle::Small.resolve(ui.style());
    let mut job = egui::text::LayoutJob::default();
    let format = |font: &egui::FontId, colour| egui::TextFormat::simple(font.clone(), colour);
    job.append(&place, 0.0, format(&body, theme::ACCENT));
    job.append(&f.from, 8.0, format(&body, theme::name_colour(&f.from)));
    job.append(&when, 8.0, format(&small, theme::MUTED));
    job.append("\n", 0.0, format(&small, theme::MUTED));
    message_text(ui, &mut job, &f.text, theme::TEXT);
    let button = Button::new(job)
        .wrap()
        .frame_when_inactive(false)
        .min_size(vec2(ui.available_width(), 0.0));
    let r = ui
        .with_layout(Layout::top_down(Align::Min), |ui| ui.add(button))
        .inner;
    ui.add_space(2.0);
    r.on_hover_text("Open this conversation")
        .accessible_name(format!("{place}, {} at {when}: {}", f.from, f.text))
}

/// Draws one line; returns where it went.
fn line_row(
    ui: &mut Ui,
    line: &Line,
    prev: Option<&Line>,
    focused: bool,
    clock: Clock,
) -> egui::Rect {
    // A new sender (or a pause) gets a little air above it.
    let continues = prev.is_some_and(|p| {
        p.from.is_some()
            && p.from == line.from
            && (line.at - p.at).num_seconds() < 300
            && p.action().is_none()
    });
    if !continues {
        ui.add_space(4.0);
    }
    // A time only when it changes, or a new sender starts: fewer digits to read past.
    let same_minute = prev
        .is_some_and(|p| p.at.format("%H:%M").to_string() == line.at.format("%H:%M").to_string());
    let time = if same_minute
        && (continues || (line.from.is_none() && prev.is_some_and(|p| p.kind == line.kind)))
    {
        String::new()
    } else {
        clock.time(&line.at)
    };
    let highlight = line.mention;
    let frame = if focused {
        // The search result that was chosen.
        Frame::new().fill(theme::CARD).corner_radius(4)
    } else if highlight {
        Frame::new()
            .fill(Color32::from_rgb(0x2a, 0x2f, 0x1f))
            .corner_radius(4)
    } else {
        Frame::new()
    };
    let shown = frame.show(ui, |ui| {
        // Top-aligned, and as tall as its content: inside a scroll area the height is unbounded.
        let layout = Layout::left_to_right(Align::Min);
        ui.allocate_ui_with_layout(vec2(ui.available_width(), 0.0), layout, |ui| {
            ui.spacing_mut().item_spacing.x = 10.0;
            // Times are smaller than the text: a little lower, so the baselines meet.
            let width = match clock {
                Clock::H24 => 36.0,
                Clock::H12 => 54.0,
            };
            cell(ui, width, Align::Min, 3.0, |ui| {
                let t = RichText::new(time)
                    .monospace()
                    .color(theme::MUTED)
                    .size(11.0);
                ui.add(Label::new(t).selectable(false).sense(Sense::hover()))
                    .on_hover_text(clock.full(&line.at));
            });
            // Everything that is not chat has a mark in the sender column and its text in
            // the text column, so the eye can run down one edge.
            let mark = |ui: &mut Ui, mark: &str, colour: Color32| {
                cell(ui, NAME_WIDTH, Align::Max, 0.0, |ui| {
                    ui.add(Label::new(RichText::new(mark).color(colour)).selectable(false));
                });
            };
            match line.kind {
                LineKind::Chat | LineKind::Own(_) => chat_text(ui, line, continues),
                LineKind::Event => {
                    mark(ui, "•", theme::MUTED);
                    let t = RichText::new(&line.text).color(theme::MUTED).italics();
                    ui.add(Label::new(t).wrap());
                }
                LineKind::Error => {
                    mark(ui, "⚠", theme::ERROR);
                    let t = RichText::new(&line.text).color(theme::ERROR);
                    ui.add(Label::new(t).wrap());
                }
                LineKind::Info => {
                    mark(ui, "›", theme::MUTED);
                    match line.text.split_once('\t') {
                        // The client's own help: the command, then what it does.
                        Some((usage, what)) => {
                            cell(ui, 190.0, Align::Min, 1.0, |ui| {
                                let t = RichText::new(usage).monospace().color(theme::ACCENT);
                                ui.add(Label::new(t).wrap());
                            });
                            ui.add(Label::new(what).wrap());
                        }
                        None => {
                            ui.add(Label::new(RichText::new(&line.text).monospace()).wrap());
                        }
                    }
                }
            }
        });
    });
    shown.response.rect
}

/// A column of fixed width in a row, top-aligned, its content left (`Min`) or right (`Max`)
/// aligned, `drop` points lower than the row's top.
fn cell(ui: &mut Ui, width: f32, align: Align, drop: f32, add: impl FnOnce(&mut Ui)) {
    let layout = Layout::top_down(align);
    ui.allocate_ui_with_layout(vec2(width, 0.0), layout, |ui| {
        ui.set_width(width);
        if drop > 0.0 {
            ui.add_space(drop);
        }
        add(ui);
    });
}

/// The width of the sender column.
const NAME_WIDTH: f32 = 76.0;

fn chat_text(ui: &mut Ui, line: &Line, continues: bool) {
    let from = line.from.as_deref().unwrap_or("?");
    let own = matches!(line.kind, LineKind::Own(_));
    let colour = if own {
        theme::ACCENT
    } else {
        theme::name_colour(from)
    };
    if let Some(action) = line.action() {
        cell(ui, NAME_WIDTH, Align::Max, 0.0, |ui| {
            ui.label(RichText::new("*").color(colour).strong());
        });
        let t = RichText::new(format!("{from} {action}"))
            .color(colour)
            .italics();
        ui.add(Label::new(t).wrap());
    } else {
        cell(ui, NAME_WIDTH, Align::Max, 0.0, |ui| {
            if !continues {
                ui.add(Label::new(RichText::new(from).color(colour).strong()).truncate());
            }
        });
        let text_colour = match line.kind {
            LineKind::Own(Delivery::Failed) => theme::ERROR,
            LineKind::Own(Delivery::Sending) => theme::MUTED,
            _ => theme::TEXT,
        };
        let mut job = egui::text::LayoutJob::default();
        message_text(ui, &mut job, &line.text, text_colour);
        ui.add(Label::new(job).wrap());
    }
    match line.kind {
        LineKind::Own(Delivery::Unconfirmed) => {
            ui.label(RichText::new("?").color(theme::WARN_TEXT))
                .on_hover_text("The connection was lost before the server confirmed this message");
        }
        LineKind::Own(Delivery::Failed) => {
            ui.label(RichText::new("⚠").color(theme::ERROR))
                .on_hover_text("The server refused this message; the reason follows");
        }
        _ => {}
    }
}

/// Appends a message's text to `job`: its lines as they are, `code` and ``` blocks in the
/// monospace font on a darker ground (the backticks around them left out).
fn message_text(ui: &Ui, job: &mut egui::text::LayoutJob, text: &str, colour: Color32) {
    let body = egui::TextStyle::Body.resolve(ui.style());
    let mono = egui::TextStyle::Monospace.resolve(ui.style());
    let prose = egui::TextFormat::simple(body, colour);
    let code = egui::TextFormat {
        background: theme::CARD,
        ..egui::TextFormat::simple(mono, colour)
    };
    let mut after_block = false;
    for piece in markup::pieces(text) {
        // A block stands on lines of its own.
        let start_line = !job.text.is_empty() && !job.text.ends_with('\n');
        match piece {
            Piece::Prose(t) => {
                if after_block {
                    job.append("\n", 0.0, prose.clone());
                }
                job.append(&t, 0.0, prose.clone());
                after_block = false;
            }
            Piece::Code(t) => {
                if after_block {
                    job.append("\n", 0.0, prose.clone());
                }
                job.append(&t, 0.0, code.clone());
                after_block = false;
            }
            Piece::Block(t) => {
                if start_line || after_block {
                    job.append("\n", 0.0, prose.clone());
                }
                job.append(&t, 0.0, code.clone());
                after_block = true;
            }
        }
    }
}
