//! Typing notifications: "bob is typing" in Everyone, a room or a DM. They are not messages:
//! nothing is kept, nothing waits, and only clients that can show them get them (natives that
//! said `TAGS ON`, as `TYPING`; IRC clients with `message-tags`, as `TAGMSG +typing`).

use super::{Hub, pid};
use crate::client_id::ClientId;
use crate::event::{Event, Place};
use natter_proto::{ErrorCode, name, room as room_name};

impl Hub {
    /// Tells the others in `place` that `conn`'s user is typing (`state` is `active`,
    /// `paused` or `done`); `tags` are the IRC client-only tags to relay with it
    /// (`+typing=active`, as IRC clients send them). The IRC `msgid` it went with, if any.
    pub fn typing(
        &self,
        conn: ClientId,
        place: Place<'_>,
        state: &str,
        tags: &str,
    ) -> Result<Option<i64>, ErrorCode> {
        let st = self.read();
        let id = pid(&st, conn);
        let from = st.users.get(&id).ok_or(ErrorCode::NotRegistered)?;
        // An id IRC clients may refer to (a reaction's target, a redaction), from the log's
        // sequence so that it is unique in a cluster too; nothing is kept under it.
        let msgid = self.new_ids(id, 1, true)[0];
        match place {
            Place::Everyone => {
                if !from.in_everyone {
                    return Err(ErrorCode::NotInRoom);
                }
                let lines = self.lines(Event::Typing {
                    from: from.who(),
                    place,
                    state,
                    tags,
                    msgid,
                });
                st.everyone.send(&lines, Some(conn));
            }
            Place::Room(room) => {
                let r = st
                    .rooms
                    .get(&room_name::fold(room))
                    .ok_or(ErrorCode::NoSuchRoom)?;
                if !r.members.contains(id) {
                    return Err(ErrorCode::NotInRoom);
                }
                let lines = self.lines(Event::Typing {
                    from: from.who(),
                    place: Place::Room(&r.name),
                    state,
                    tags,
                    msgid,
                });
                r.members.send(&lines, Some(conn));
            }
            Place::User(to) => {
                let &target = st
                    .names
                    .get(name::fold(to).as_str())
                    .ok_or(ErrorCode::NoSuchUser)?;
                if target == id {
                    return Err(ErrorCode::CannotDmSelf);
                }
                let to = st.users.get(&target).ok_or(ErrorCode::NoSuchUser)?;
                let lines = self.lines(Event::Typing {
                    from: from.who(),
                    place: Place::User(&to.name),
                    state,
                    tags,
                    msgid,
                });
                Self::send_to(&st, target, &lines, None);
            }
        }
        Ok(msgid)
    }
}
