//! The everyone channel's names as IRC's NAMES lists them, kept ready between arrivals.
//!
//! Every IRC user put into the everyone channel on registration is sent its NAMES, every
//! name on the server. Building that list afresh for each arrival (a view of every member,
//! sorted, then formatted) under the hub's write lock made a crowd of IRC arrivals cost the
//! square of its size in allocations while everyone else waited for the lock. The list is
//! instead kept as ready-joined lines: an arrival appends its name to the last line, and only
//! a departure or a rename (rare beside arrivals in a crowd) has it rebuilt, once, when it is
//! next needed.

/// The everyone channel's names, joined into lines.
#[derive(Debug, Default)]
pub(super) struct NamesCache {
    /// Names separated by spaces, each line at most `width` bytes.
    lines: Vec<String>,
    /// How many names the lines hold.
    count: usize,
    /// Whether a name left or changed since the lines were made: they are made again when
    /// next asked for.
    stale: bool,
    /// The most bytes of names in one line (what fits an IRC line after the 353 prefix).
    width: usize,
}

impl NamesCache {
    /// An empty list whose lines hold at most `width` bytes of names.
    pub(super) fn new(width: usize) -> Self {
        Self {
            width,
            ..Self::default()
        }
    }

    /// A user came into the everyone channel.
    pub(super) fn add(&mut self, name: &str) {
        if self.stale {
            return;
        }
        match self.lines.last_mut() {
            Some(line) if line.len() + 1 + name.len() <= self.width => {
                line.push(' ');
                line.push_str(name);
            }
            _ => self.lines.push(name.to_owned()),
        }
        self.count += 1;
    }

    /// A user left the everyone channel or changed name.
    pub(super) fn changed(&mut self) {
        self.stale = true;
        self.lines.clear();
        self.count = 0;
    }

    /// The lines, made again from `names` (the `count` members' names, read only if
    /// needed) if a name left or changed, or if the count disagrees (a change not reported).
    pub(super) fn lines<'n>(
        &mut self,
        count: usize,
        names: impl Iterator<Item = &'n str>,
    ) -> &[String] {
        if self.stale || self.count != count {
            self.lines.clear();
            self.count = 0;
            self.stale = false;
            for name in names {
                self.add(name);
            }
            // A member without a name (never the case) must not make every call rebuild.
            self.count = count;
        }
        &self.lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fill_lines_up_to_the_width_and_a_change_empties_them() {
        let mut n = NamesCache::new(11);
        for name in ["ann", "bob", "cy", "dee", "eve"] {
            n.add(name);
        }
        assert_eq!(n.lines, ["ann bob cy", "dee eve"]);
        assert_eq!(n.count, 5);
        n.changed();
        n.add("fay");
        assert!(n.lines.is_empty() && n.stale);
    }
}
