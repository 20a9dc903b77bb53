//! Names that look alike: `aIice` (a capital i) beside `alice`, `rn` beside `m`, `0` beside
//! `O`. Two names are confusable when their UTS #39 skeletons agree while the names are not
//! the same name (ignoring case). The index keeps only hashes of skeletons, so it costs a few
//! bytes per name.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use unicode_security::confusable_detection::skeleton;

/// The skeletons of registered names (or accounts' names), hashed, each with the name (as a
/// hash of its folded form) that has it.
#[derive(Debug, Default)]
pub struct Shapes {
    map: HashMap<u64, Holder>,
}

/// Who has a skeleton: one name (however many times), or several different names.
#[derive(Debug, Clone, Copy)]
struct Holder {
    key: u64,
    count: u32,
}

/// The holder's key when names of different keys share a skeleton (which only names that
/// came from elsewhere, such as other cluster nodes, can do).
const SEVERAL: u64 = u64::MAX;

impl Shapes {
    /// Notes a name now in use.
    pub fn add(&mut self, name: &str) {
        let key = key_of(name);
        for s in shapes(name) {
            let h = self.map.entry(s).or_insert(Holder { key, count: 0 });
            if h.key != key {
                h.key = SEVERAL;
            }
            h.count += 1;
        }
    }

    /// Notes a name no longer in use.
    pub fn remove(&mut self, name: &str) {
        for s in shapes(name) {
            if let Some(h) = self.map.get_mut(&s) {
                h.count -= 1;
                if h.count == 0 {
                    self.map.remove(&s);
                }
            }
        }
    }

    /// Whether `name` looks like a name in the index that is not the same name.
    pub fn resembles(&self, name: &str) -> bool {
        let key = key_of(name);
        looks(name)
            .into_iter()
            .any(|s| self.map.get(&s).is_some_and(|h| h.key != key))
    }
}

/// The skeletons a name is indexed under: as written, and in lower case (the same one, for
/// most names).
fn shapes(name: &str) -> impl Iterator<Item = u64> {
    let [written, lower, _] = looks(name);
    std::iter::once(written).chain((lower != written).then_some(lower))
}

/// The skeletons a new name is compared by: as written, in lower case and in upper case, since
/// names are the same name whatever their case and may be shown in any.
fn looks(name: &str) -> [u64; 3] {
    [
        hash(skeleton(name)),
        hash(skeleton(&name.to_lowercase())),
        hash(skeleton(&name.to_uppercase())),
    ]
}

fn hash(chars: impl Iterator<Item = char>) -> u64 {
    let mut h = DefaultHasher::new();
    for c in chars {
        c.hash(&mut h);
    }
    h.finish()
}

fn key_of(name: &str) -> u64 {
    let mut h = DefaultHasher::new();
    natter_proto::name::fold(name).hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookalikes_are_caught_and_the_same_name_is_not() {
        let mut s = Shapes::default();
        s.add("alice");
        s.add("Bob");
        s.add("modern");
        s.add("ROOT");
        for confusable in ["aIice", "A1ICE", "R00T", "rnodern", "modem"] {
            assert!(s.resembles(confusable), "{confusable}");
        }
        for fine in [
            "alice", "ALICE", "Alice", "bob", "BOB", "carol", "alic", "a1",
        ] {
            assert!(!s.resembles(fine), "{fine}");
        }
        s.remove("alice");
        assert!(!s.resembles("aIice"));
        assert!(s.resembles("R0OT"));
    }

    #[test]
    fn two_holders_of_one_shape_are_both_counted() {
        let mut s = Shapes::default();
        s.add("alice");
        s.add("aIice");
        assert!(s.resembles("alice"), "the other holder still looks like it");
        s.remove("aIice");
        s.remove("alice");
        assert!(!s.resembles("alice"));
        assert!(s.map.is_empty());
    }
}
