//! An audience: a set of recipients that an event is sent to in one pass. Everyone and every
//! room are one.

use crate::client_id::{ClientId, is_local};
use crate::event::{Flavor, Render};
use crate::outbox::{Outbox, Pushed};
use std::collections::HashMap;
use std::sync::Arc;

/// A set of recipients that an event can be sent to in one pass.
#[derive(Debug, Default)]
pub(super) struct Audience {
    /// The members, in no particular order; iterated for every delivery.
    pub(super) seats: Vec<Seat>,
    /// Where each member sits in `seats`, for removal in constant time.
    pub(super) index: HashMap<ClientId, usize>,
    /// How many members are ghosts: their own nodes deliver to them.
    pub(super) ghosts: usize,
}

/// What a send reached.
#[derive(Debug, Default)]
pub(super) struct Sent {
    /// How many members got the event.
    pub(super) n: usize,
    /// The first recipient found congested, whom a sender should wait for.
    pub(super) congested: Option<Arc<Outbox>>,
}

impl Sent {
    fn push(&mut self, outbox: &Arc<Outbox>, bytes: &bytes::Bytes) {
        // An overflow is handled by the recipient's own connection task, which the push
        // woke; the sender just moves on.
        if outbox.push(bytes.clone()) == Pushed::Congested && self.congested.is_none() {
            self.congested = Some(outbox.clone());
        }
    }
}

/// One member of an audience.
#[derive(Debug, Clone)]
pub(super) struct Seat {
    /// The member.
    pub(super) id: ClientId,
    /// The member's outbox, here so that fan-out needs no lookup.
    pub(super) outbox: Arc<Outbox>,
    /// How the member wants lines written, here for the same reason.
    pub(super) flavor: Flavor,
    /// Whether the member is an operator (rooms only).
    pub(super) op: bool,
    /// When the member joined, in join order.
    pub(super) since: u64,
    /// Every connection of a member who has more than one (an account logged in from
    /// several places), `outbox` and `flavor` being the first's; `None` for the usual one.
    /// A thin pointer: every seat pays for it, so it is kept to one word.
    pub(super) links: Option<Arc<Vec<Link>>>,
}

/// One connection of a member who has several.
#[derive(Debug, Clone)]
pub(super) struct Link {
    /// The connection.
    pub(super) id: ClientId,
    /// Its outbox.
    pub(super) outbox: Arc<Outbox>,
    /// How it wants lines written.
    pub(super) flavor: Flavor,
}

impl Seat {
    /// Each connection of the member as (connection, outbox, flavor).
    pub(super) fn each(&self) -> impl Iterator<Item = (ClientId, &Arc<Outbox>, Flavor)> {
        let one = self
            .links
            .is_none()
            .then_some((self.id, &self.outbox, self.flavor));
        let many = self
            .links
            .iter()
            .flat_map(|l| l.iter().map(|l| (l.id, &l.outbox, l.flavor)));
        one.into_iter().chain(many)
    }
}

impl Audience {
    pub(super) fn len(&self) -> usize {
        self.seats.len()
    }

    pub(super) fn contains(&self, id: ClientId) -> bool {
        self.index.contains_key(&id)
    }

    pub(super) fn get(&self, id: ClientId) -> Option<&Seat> {
        self.index.get(&id).map(|&i| &self.seats[i])
    }

    pub(super) fn get_mut(&mut self, id: ClientId) -> Option<&mut Seat> {
        self.index.get(&id).map(|&i| &mut self.seats[i])
    }

    pub(super) fn insert(&mut self, seat: Seat) {
        self.ghosts += usize::from(!is_local(seat.id));
        self.index.insert(seat.id, self.seats.len());
        self.seats.push(seat);
    }

    pub(super) fn remove(&mut self, id: ClientId) -> Option<Seat> {
        let i = self.index.remove(&id)?;
        self.ghosts -= usize::from(!is_local(id));
        let seat = self.seats.swap_remove(i);
        if let Some(moved) = self.seats.get(i) {
            self.index.insert(moved.id, i);
        }
        Some(seat)
    }

    /// Sends the event to every member's connections but the connection `except`; a member
    /// whose other connection sent it gets it on the rest but is not counted.
    pub(super) fn send(&self, lines: &impl Render, except: Option<ClientId>) -> Sent {
        let mut sent = Sent::default();
        for s in &self.seats {
            match &s.links {
                None => {
                    if Some(s.id) != except
                        && let Some(bytes) = lines.get(s.flavor)
                    {
                        sent.push(&s.outbox, bytes);
                        sent.n += 1;
                    }
                }
                Some(links) => {
                    let mut own = false;
                    let mut got = false;
                    for l in links.iter() {
                        if Some(l.id) == except {
                            own = true;
                        } else if let Some(bytes) = lines.get(l.flavor) {
                            sent.push(&l.outbox, bytes);
                            got = true;
                        }
                    }
                    sent.n += usize::from(got && !own);
                }
            }
        }
        sent
    }

    /// If nobody is an operator, makes the longest-standing member one and returns its id.
    pub(super) fn ensure_operator(&mut self) -> Option<ClientId> {
        if self.seats.is_empty() || self.seats.iter().any(|s| s.op) {
            return None;
        }
        let eldest = self.seats.iter_mut().min_by_key(|s| s.since)?;
        eldest.op = true;
        Some(eldest.id)
    }
}
