//! Colours, spacing and text styles: one place to tune how the client looks.

use egui::{Color32, CornerRadius, FontFamily, FontId, Margin, Stroke, TextStyle, Theme};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};

/// The window behind everything.
pub const BG: Color32 = Color32::from_rgb(0x1b, 0x1e, 0x24);
/// Side panels, a step darker than the conversation.
pub const SIDE: Color32 = Color32::from_rgb(0x15, 0x17, 0x1c);
/// Cards (connect and name screens) and the message box.
pub const CARD: Color32 = Color32::from_rgb(0x24, 0x28, 0x30);
/// Hairlines between areas.
pub const LINE: Color32 = Color32::from_rgb(0x2e, 0x33, 0x3d);
/// The main text colour.
pub const TEXT: Color32 = Color32::from_rgb(0xdc, 0xdf, 0xe4);
/// Secondary text: times, hints, events.
pub const MUTED: Color32 = Color32::from_rgb(0x8b, 0x93, 0xa1);
/// The accent: our own name, selection, the primary button.
pub const ACCENT: Color32 = Color32::from_rgb(0x5b, 0x9c, 0xf6);
/// Errors and failures.
pub const ERROR: Color32 = Color32::from_rgb(0xf0, 0x6a, 0x6a);
/// The connection-lost banner.
pub const WARN_BG: Color32 = Color32::from_rgb(0x5c, 0x3b, 0x12);
/// Text on the banner.
pub const WARN_TEXT: Color32 = Color32::from_rgb(0xff, 0xd8, 0x9b);
/// Online dots and good news.
pub const OK: Color32 = Color32::from_rgb(0x5f, 0xcf, 0x80);
/// Unread badges without a mention.
pub const UNREAD: Color32 = Color32::from_rgb(0x4a, 0x53, 0x63);
/// Badges of unread mentions, and the new-messages marker.
pub const BADGE: Color32 = Color32::from_rgb(0xe0, 0x5d, 0x5d);

/// Sender colours, readable on [`BG`]; a name always gets the same one.
const NAME_COLOURS: [Color32; 8] = [
    Color32::from_rgb(0xe8, 0x9f, 0x5a),
    Color32::from_rgb(0x7f, 0xc8, 0x7a),
    Color32::from_rgb(0xc3, 0x8c, 0xe8),
    Color32::from_rgb(0x5f, 0xc4, 0xc9),
    Color32::from_rgb(0xe3, 0xc5, 0x5b),
    Color32::from_rgb(0xee, 0x84, 0xa8),
    Color32::from_rgb(0x8d, 0xa8, 0xf0),
    Color32::from_rgb(0xb5, 0xc9, 0x6a),
];

/// The colour of a sender's name: the same for a name in any case, in every run.
pub fn name_colour(name: &str) -> Color32 {
    // FNV-1a: stable across runs and platforms, unlike the std hasher.
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes().map(|b| b.to_ascii_lowercase()) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    NAME_COLOURS[(h % NAME_COLOURS.len() as u32) as usize]
}

/// Scripts egui's bundled fonts lack, each with a character only a font for it has.
///
/// What egui does with the fonts found: CJK, Hangul, Devanagari and Thai glyphs are drawn
/// (no boxes). Arabic and Hebrew are drawn and shaped (egui shapes each run of one font with
/// harfrust), but egui has no bidirectional layout: a line mixing right-to-left and
/// left-to-right words places the runs left to right. Colour emoji come from the system's
/// colour emoji font (see [`colour_emoji_font`]); those it lacks from egui's monochrome emoji
/// fonts, then from a system font with outlines.
const SCRIPTS: &[char] = &['中', '한', 'ا', 'א', 'क', 'ก', '😀'];

/// The character a colour emoji font must have.
const EMOJI: char = '😀';

/// A font file that fontconfig chose on this system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemFont {
    /// The file.
    pub path: PathBuf,
    /// The face in it (a `.ttc` collection holds several).
    pub index: u32,
}

/// The system's fonts for the scripts in [`SCRIPTS`], each once, in that order; none if
/// fontconfig is missing or finds nothing.
///
/// They are found when the client starts, never bundled: the binary stays small and the
/// person's own font choices apply.
pub fn system_fonts() -> Vec<SystemFont> {
    fonts_from("fc-match")
}

/// The system's colour emoji font (CBDT, sbix or COLR, e.g. Noto Color Emoji), if fontconfig
/// finds one; epaint's `color_fonts` feature draws its glyphs in colour.
pub fn colour_emoji_font() -> Option<SystemFont> {
    colour_emoji_from("fc-match")
}

/// [`colour_emoji_font`], asking the fontconfig program `fc_match`.
fn colour_emoji_from(fc_match: &str) -> Option<SystemFont> {
    let pattern = format!("emoji:color=true:charset={:x}", u32::from(EMOJI));
    let out = Command::new(fc_match)
        .args([
            "--format",
            "%{file}\t%{index}\t%{charset}\t%{color}",
            &pattern,
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let text = String::from_utf8_lossy(&out.stdout);
    // fc-match answers with its best font even when it has no colour: that one is no use.
    let (line, colour) = text.trim_end().rsplit_once('\t')?;
    if colour != "True" {
        return None;
    }
    parse_match(line, EMOJI)
}

/// [`system_fonts`], asking the fontconfig program `fc_match`.
fn fonts_from(fc_match: &str) -> Vec<SystemFont> {
    // One fc-match per script, all at once: each takes tens of milliseconds, mostly waiting.
    let asks: Vec<_> = SCRIPTS
        .iter()
        .filter_map(|&c| {
            let pattern = format!("sans-serif:charset={:x}:color=false", u32::from(c));
            Command::new(fc_match)
                .args(["--format", "%{file}\t%{index}\t%{charset}", &pattern])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .ok()
                .map(|child| (c, child))
        })
        .collect();
    let mut found: Vec<SystemFont> = Vec::new();
    for (c, child) in asks {
        let Ok(out) = child.wait_with_output() else {
            continue;
        };
        if !out.status.success() {
            continue;
        }
        if let Some(font) = parse_match(&String::from_utf8_lossy(&out.stdout), c)
            && !found.contains(&font)
        {
            found.push(font);
        }
    }
    found
}

/// The font in one line of fc-match's answer (`file`, `index`, `charset` by tabs), if it has
/// `c`: fc-match answers with its best font even when none has the character.
fn parse_match(line: &str, c: char) -> Option<SystemFont> {
    let mut fields = line.trim_end().split('\t');
    let path = PathBuf::from(fields.next().filter(|p| !p.is_empty())?);
    let index = fields.next()?.parse().ok()?;
    covers(fields.next()?, c).then_some(SystemFont { path, index })
}

/// Whether fontconfig's charset text ("20-7e a0-17f 5d0-5ea ...", hexadecimal ranges) holds
/// `c`.
fn covers(charset: &str, c: char) -> bool {
    let c = u32::from(c);
    charset.split_whitespace().any(|range| {
        let (lo, hi) = range.split_once('-').unwrap_or((range, range));
        match (u32::from_str_radix(lo, 16), u32::from_str_radix(hi, 16)) {
            (Ok(lo), Ok(hi)) => (lo..=hi).contains(&c),
            _ => false,
        }
    })
}

/// A font file's data, if it can be read.
fn font_data(f: &SystemFont) -> Option<Arc<egui::FontData>> {
    let bytes = std::fs::read(&f.path).ok()?;
    let mut data = egui::FontData::from_owned(bytes);
    data.index = f.index;
    Some(Arc::new(data))
}

/// The system fonts' data, read once per process (the CJK ones are tens of megabytes);
/// files that cannot be read are left out.
fn system_font_data() -> &'static [Arc<egui::FontData>] {
    static DATA: OnceLock<Vec<Arc<egui::FontData>>> = OnceLock::new();
    DATA.get_or_init(|| system_fonts().iter().filter_map(font_data).collect())
}

/// The colour emoji font's data, read once per process.
fn colour_emoji_data() -> Option<&'static Arc<egui::FontData>> {
    static DATA: OnceLock<Option<Arc<egui::FontData>>> = OnceLock::new();
    DATA.get_or_init(|| colour_emoji_font().as_ref().and_then(font_data))
        .as_ref()
}

/// egui's fonts, then Hack, then the system's fonts for other scripts, as fallbacks.
pub fn fonts() -> egui::FontDefinitions {
    let mut fonts = egui::FontDefinitions::default();
    // Hack (the monospace font) has arrows, box drawing and other symbols the proportional
    // font lacks: use it as a fallback rather than show boxes for them.
    if let Some(family) = fonts.families.get_mut(&FontFamily::Proportional) {
        family.push("Hack".to_owned());
    }
    // Colour emoji before egui's monochrome ones, right after each family's first font (the
    // text font, whose few emoji-like symbols stay as they are).
    if let Some(data) = colour_emoji_data() {
        fonts
            .font_data
            .insert("colour-emoji".to_owned(), data.clone());
        for family in [FontFamily::Proportional, FontFamily::Monospace] {
            if let Some(list) = fonts.families.get_mut(&family) {
                list.insert(list.len().min(1), "colour-emoji".to_owned());
            }
        }
    }
    for (i, data) in system_font_data().iter().enumerate() {
        let name = format!("system-{i}");
        fonts.font_data.insert(name.clone(), data.clone());
        for family in [FontFamily::Proportional, FontFamily::Monospace] {
            if let Some(list) = fonts.families.get_mut(&family) {
                list.push(name.clone());
            }
        }
    }
    fonts
}

/// Applies the fonts, the dark theme, sizes and spacing.
pub fn apply(ctx: &egui::Context) {
    ctx.set_fonts(fonts());
    ctx.set_theme(Theme::Dark);
    ctx.style_mut_of(Theme::Dark, |style| {
        style.text_styles = [
            (
                TextStyle::Heading,
                FontId::new(20.0, FontFamily::Proportional),
            ),
            (TextStyle::Body, FontId::new(14.5, FontFamily::Proportional)),
            (
                TextStyle::Button,
                FontId::new(14.5, FontFamily::Proportional),
            ),
            (
                TextStyle::Small,
                FontId::new(11.5, FontFamily::Proportional),
            ),
            (
                TextStyle::Monospace,
                FontId::new(13.0, FontFamily::Monospace),
            ),
        ]
        .into();
        let s = &mut style.spacing;
        s.item_spacing = egui::vec2(8.0, 6.0);
        s.button_padding = egui::vec2(10.0, 5.0);
        s.interact_size.y = 26.0;
        s.text_edit_width = 260.0;
        let v = &mut style.visuals;
        v.panel_fill = BG;
        v.window_fill = CARD;
        v.extreme_bg_color = Color32::from_rgb(0x12, 0x14, 0x18);
        v.text_edit_bg_color = Some(Color32::from_rgb(0x12, 0x14, 0x18));
        v.faint_bg_color = CARD;
        v.override_text_color = Some(TEXT);
        v.error_fg_color = ERROR;
        v.warn_fg_color = WARN_TEXT;
        v.hyperlink_color = ACCENT;
        v.selection.bg_fill = Color32::from_rgb(0x2b, 0x4f, 0x82);
        v.selection.stroke = Stroke::new(1.0, ACCENT);
        v.widgets.noninteractive.bg_stroke = Stroke::new(1.0, LINE);
        v.widgets.noninteractive.fg_stroke = Stroke::new(1.0, TEXT);
        for w in [
            &mut v.widgets.inactive,
            &mut v.widgets.hovered,
            &mut v.widgets.active,
            &mut v.widgets.open,
        ] {
            w.corner_radius = CornerRadius::same(6);
        }
        v.widgets.inactive.weak_bg_fill = Color32::from_rgb(0x2c, 0x31, 0x3b);
        v.widgets.inactive.bg_fill = Color32::from_rgb(0x2c, 0x31, 0x3b);
        v.widgets.hovered.weak_bg_fill = Color32::from_rgb(0x34, 0x3a, 0x46);
        v.widgets.hovered.bg_fill = Color32::from_rgb(0x34, 0x3a, 0x46);
        // A focused button is drawn as active: an accent outline, so the keyboard's place
        // is plain to see.
        v.widgets.active.bg_stroke = Stroke::new(1.5, ACCENT);
        v.window_corner_radius = CornerRadius::same(10);
    });
}

/// The frame of a side panel.
pub fn side_frame() -> egui::Frame {
    egui::Frame::new()
        .fill(SIDE)
        .inner_margin(Margin::symmetric(10, 10))
}

/// The frame of a centred card.
pub fn card_frame() -> egui::Frame {
    egui::Frame::new()
        .fill(CARD)
        .stroke(Stroke::new(1.0, LINE))
        .corner_radius(CornerRadius::same(12))
        .inner_margin(Margin::same(24))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_keeps_its_colour_in_any_case() {
        assert_eq!(name_colour("Alice"), name_colour("alice"));
        let distinct: std::collections::HashSet<_> = ["alice", "bob", "carol", "dave", "erin"]
            .iter()
            .map(|n| name_colour(n))
            .collect();
        assert!(distinct.len() >= 3);
    }

    #[test]
    fn charsets_are_read_as_ranges() {
        let dejavu = "20-7e a0-2e9 5b0-5c3 5d0-5ea 621-63a 1f600";
        assert!(covers(dejavu, 'A'));
        assert!(covers(dejavu, 'א'));
        assert!(covers(dejavu, '😀'));
        assert!(!covers(dejavu, '中'));
        assert!(!covers("", 'A'));
        assert!(!covers("zz-20 garbage", 'A'));
    }

    #[test]
    fn a_match_without_the_character_is_no_font() {
        let line = "/usr/share/fonts/a.ttc\t3\t20-7e 4e00-9fff\n";
        assert_eq!(
            parse_match(line, '中'),
            Some(SystemFont {
                path: "/usr/share/fonts/a.ttc".into(),
                index: 3
            })
        );
        assert_eq!(parse_match(line, 'א'), None);
        assert_eq!(parse_match("", '中'), None);
        assert_eq!(parse_match("\t\t", '中'), None);
        assert_eq!(parse_match("/a.ttf\tx\t20-7e", 'A'), None);
    }

    #[test]
    fn no_fontconfig_means_no_system_fonts_and_still_fonts() {
        assert!(fonts_from("/nonexistent/fc-match").is_empty());
        assert_eq!(colour_emoji_from("/nonexistent/fc-match"), None);
        // Whatever this machine has, the defaults and Hack are there.
        let f = fonts();
        let proportional = &f.families[&FontFamily::Proportional];
        assert!(proportional.contains(&"Hack".to_owned()));
        assert!(proportional.iter().all(|n| f.font_data.contains_key(n)));
    }
}
