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
    /// The connections of each member who has more than one (an account logged in from
    /// several places), kept beside the seats so that every other seat stays small.
    links: HashMap<ClientId, Arc<Vec<Link>>>,
}

/// A seat and, for a member with several connections, all of them.
pub(super) type Seating = (Seat, Option<Arc<Vec<Link>>>);

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
    /// Whether the member has voice (rooms only): may speak in a moderated room.
    pub(super) voice: bool,
    /// When the member joined, in join order.
    pub(super) since: u64,
    /// Whether the member has several connections, listed in the audience's `links`
    /// (`outbox` and `flavor` then being the first's).
    pub(super) linked: bool,
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

impl Audience {
    /// The connections of `seat`'s member, if it has several.
    fn links_of(&self, seat: &Seat) -> Option<&Arc<Vec<Link>>> {
        if seat.linked {
            self.links.get(&seat.id)
        } else {
            None
        }
    }

    /// Each connection of `seat`'s member as (connection, outbox, flavor).
    pub(super) fn each<'a>(
        &'a self,
        seat: &'a Seat,
    ) -> impl Iterator<Item = (ClientId, &'a Arc<Outbox>, Flavor)> {
        let links = self.links_of(seat);
        let one = links
            .is_none()
            .then_some((seat.id, &seat.outbox, seat.flavor));
        let many = links
            .into_iter()
            .flat_map(|l| l.iter().map(|l| (l.id, &l.outbox, l.flavor)));
        one.into_iter().chain(many)
    }

    /// Makes member `id`'s seat use `outbox` and `flavor` and lists its connections.
    pub(super) fn relink(
        &mut self,
        id: ClientId,
        outbox: &Arc<Outbox>,
        flavor: Flavor,
        links: Option<&Arc<Vec<Link>>>,
    ) {
        let Some(&i) = self.index.get(&id) else {
            return;
        };
        let s = &mut self.seats[i];
        s.outbox = outbox.clone();
        s.flavor = flavor;
        s.linked = links.is_some();
        match links {
            Some(l) => {
                self.links.insert(id, l.clone());
            }
            None => {
                self.links.remove(&id);
            }
        }
    }

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

    pub(super) fn insert(&mut self, (mut seat, links): Seating) {
        self.ghosts += usize::from(!is_local(seat.id));
        seat.linked = links.is_some();
        if let Some(l) = links {
            self.links.insert(seat.id, l);
        }
        self.index.insert(seat.id, self.seats.len());
        self.seats.push(seat);
    }

    pub(super) fn remove(&mut self, id: ClientId) -> Option<Seat> {
        let i = self.index.remove(&id)?;
        self.ghosts -= usize::from(!is_local(id));
        let seat = self.seats.swap_remove(i);
        if seat.linked {
            self.links.remove(&id);
        }
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
            match self.links_of(s) {
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
