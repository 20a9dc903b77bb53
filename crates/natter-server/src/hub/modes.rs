//! A room's modes: its flags, key and limit, its bans and its invitations, and the rules
//! they make (who may come in, who may speak). The hub's commands that change them are in
//! [`super::moderation`].

use crate::event::Who;
use natter_proto::mode::{self, Settings};
use natter_proto::{ErrorCode, name};
use std::collections::VecDeque;
use std::sync::Arc;

/// Most bans a room may hold (IRC's `MAXLIST`).
pub const MAX_BANS: usize = 100;

/// Most invitations a room remembers; the oldest is forgotten first.
const MAX_INVITES: usize = 100;

/// A room's moderation state.
#[derive(Debug, Default)]
pub(super) struct RoomModes {
    /// Flags, key and limit.
    pub(super) settings: Settings,
    /// The ban list, in the order bans were set.
    pub(super) bans: Vec<Ban>,
    /// Folded names invited in and not yet come; an invitation is used up by the join it
    /// lets through.
    invited: VecDeque<String>,
    /// When the room was made, in seconds since the Unix epoch (IRC's 329).
    pub(super) created: u64,
}

/// One ban.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    /// The mask, normalized ([`mode::normalize_mask`]).
    pub mask: Arc<str>,
    /// Who set it.
    pub by: Arc<str>,
    /// When, in seconds since the Unix epoch.
    pub at: u64,
}

/// A room's modes as `MODE <room>` shows them.
#[derive(Debug, Clone)]
pub struct ModesView {
    /// The room's name.
    pub room: Arc<str>,
    /// The mode string and its parameters (`+ntk key`); the key only for members.
    pub modes: String,
    /// When the room was made, in seconds since the Unix epoch.
    pub created: u64,
}

impl RoomModes {
    /// The modes of a room made at `created` (seconds since the Unix epoch).
    pub(super) fn new(created: u64) -> Self {
        Self {
            created,
            ..Self::default()
        }
    }

    /// Remembers that `folded` (a folded name) is invited; the oldest invitation goes when
    /// there are too many.
    pub(super) fn invite(&mut self, folded: String) {
        if !self.invited.contains(&folded) {
            if self.invited.len() >= MAX_INVITES {
                self.invited.pop_front();
            }
            self.invited.push_back(folded);
        }
    }

    /// Whether a ban matches `who`.
    pub(super) fn banned(&self, who: Who<'_>) -> bool {
        if self.bans.is_empty() {
            return false;
        }
        let source = who.mask();
        let account = who.account.then_some(who.name);
        self.bans
            .iter()
            .any(|b| mode::mask_matches(&b.mask, &source, account))
    }

    /// Whether `who` may come in with `key`, `members` being in already; uses up the
    /// invitation that lets it in. An invitation opens `+i`, `+k` and `+l`, not a ban.
    pub(super) fn admit(
        &mut self,
        who: Who<'_>,
        key: Option<&str>,
        members: usize,
    ) -> Result<(), ErrorCode> {
        if self.banned(who) {
            return Err(ErrorCode::Banned);
        }
        let folded = name::fold(who.name);
        if let Some(i) = self.invited.iter().position(|n| *n == folded) {
            self.invited.remove(i);
            return Ok(());
        }
        let s = &self.settings;
        if s.invite_only {
            return Err(ErrorCode::InviteOnly);
        }
        if let Some(k) = &s.key
            && key != Some(&**k)
        {
            return Err(ErrorCode::BadKey);
        }
        if s.limit.is_some_and(|l| members >= l as usize) {
            return Err(ErrorCode::RoomFull);
        }
        Ok(())
    }

    /// Whether a member who is neither operator nor voiced may speak; the refusal if not.
    pub(super) fn may_speak(&self, who: Who<'_>) -> Result<(), ErrorCode> {
        if self.settings.moderated {
            return Err(ErrorCode::Moderated);
        }
        if self.banned(who) {
            return Err(ErrorCode::Banned);
        }
        Ok(())
    }

    /// The settings and bans a room that stays keeps.
    pub(super) fn kept(&self) -> (Option<String>, Vec<crate::kept::KeptBan>) {
        let modes = (self.settings != Settings::default()).then(|| self.settings.describe(true));
        let bans = self
            .bans
            .iter()
            .map(|b| crate::kept::KeptBan {
                mask: b.mask.to_string(),
                by: b.by.to_string(),
                at: b.at,
            })
            .collect();
        (modes, bans)
    }

    /// The modes of a room that stays, as the store kept them, back at `now`.
    pub(super) fn restored(modes: Option<&str>, bans: &[crate::kept::KeptBan], now: u64) -> Self {
        Self {
            settings: modes.and_then(Settings::parse).unwrap_or_default(),
            bans: bans
                .iter()
                .filter_map(|b| {
                    Some(Ban {
                        mask: Arc::from(mode::normalize_mask(&b.mask)?),
                        by: Arc::from(b.by.as_str()),
                        at: b.at,
                    })
                })
                .take(MAX_BANS)
                .collect(),
            invited: VecDeque::new(),
            created: now,
        }
    }
}
