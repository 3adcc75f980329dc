//! Header lines met before, and what the one pass over a head wrote for
//! them.
//!
//! Most of a head's lines come again and again: a server answers every
//! request with the same `Server`, `Content-Type` and `Connection` lines, a
//! client sends the same `Host`, `Accept` and `User-Agent`. Judging a line
//! (its name lowered, matched against the secret patterns, its value checked
//! for bytes to escape and for a query to mask) and writing its JSON cost
//! several hundred instructions; finding that it is a line met before costs
//! a hash and a comparison. So the one pass keeps, for the lines it wrote
//! as they came (no secret, nothing masked in the value; escaped or not), the
//! line's bytes and its JSON, in a small table indexed by the line's hash,
//! one table per masker, and takes a line found there from it.
//!
//! Bounded: [`SLOTS`] lines of at most [`LINE`] bytes per table. The table
//! is four-way: a line's hash picks a set of [`WAYS`] slots, and a line
//! kept in a full set takes the place of the one kept there longest ago.
//! (With one slot per hash, two of the dozen lines a server repeats shared
//! a slot in most processes, the bench's included, and missed on every
//! head, taking turns; four ways make that a rare event.) A line whose value masking
//! hides (a secret name, a secret query parameter) is never kept. A value
//! hidden only because the request carried it elsewhere (a token of its
//! query echoed in a plain header) can be, as it came: such values are
//! scrubbed from the whole attribute after the pass, memo or not. A line is
//! taken from the table only when its bytes equal the kept ones, so a hash
//! collision (chosen by a hostile peer or not) costs a miss, never a wrong
//! attribute.

/// Longest line kept (its bytes, without the line end).
pub(super) const LINE: usize = 200;

/// Lines kept per table: a power of two.
const SLOTS: usize = 64;

/// Slots a line may be kept in (those of the set its hash picks).
const WAYS: usize = 4;
const SETS: usize = SLOTS / WAYS;

/// What a kept line's field is, for the pass's content type and encoding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum Kind {
    #[default]
    Other,
    ContentType,
    ContentEncoding,
}

/// One kept line.
#[derive(Debug, Default)]
pub(super) struct Slot {
    hash: u64,
    line: Vec<u8>,
    /// What the pass wrote for the line: `"name":"value"`.
    pub fragment: String,
    /// The name's key as the pass compares names (its first eight bytes,
    /// lowered), where the name starts in the line and its length.
    pub key: u64,
    pub name_at: u16,
    pub name_len: u16,
    pub kind: Kind,
    /// Where the value (trimmed) starts in the line and its length.
    pub value_at: u16,
    pub value_len: u16,
}

/// What a line the pass wrote as it was is, to be kept.
pub(super) struct Written<'a> {
    pub fragment: &'a str,
    pub key: u64,
    pub name_at: usize,
    pub name_len: usize,
    pub kind: Kind,
    pub value_at: usize,
    pub value_len: usize,
}

/// A table of kept lines (empty until the first is kept).
#[derive(Debug, Default)]
pub(crate) struct LineMemo {
    slots: Vec<[Slot; WAYS]>,
    /// Per set: the way the next line kept there takes when it is full.
    next: [u8; SETS],
    /// The buffer the pass writes a head's JSON into, kept from head to
    /// head while it is at most [`BUFFER`] bytes.
    pub(super) json: String,
    /// The last head passed with no secret field, whole, and what the pass
    /// made of it.
    whole: KeptHead,
}

/// A head met before, whole: a server that answers every request alike
/// (within a second: its `Date`), a client that repeats its request. Taken
/// only when the bytes are equal, so what it gives is what the pass would.
#[derive(Debug, Default)]
pub(super) struct KeptHead {
    bytes: Vec<u8>,
    /// The JSON the pass wrote.
    pub json: String,
    /// Where the content type and encoding values are in the head, and
    /// their lengths.
    pub content_type: Option<(u32, u32)>,
    pub content_encoding: Option<(u32, u32)>,
}

/// Longest head kept whole.
pub(super) const HEAD: usize = 2 << 10;

/// Largest JSON buffer kept.
pub(super) const BUFFER: usize = 8 << 10;

const _: () =
    assert!(SLOTS.is_power_of_two() && SETS.is_power_of_two() && LINE <= u16::MAX as usize);

impl LineMemo {
    /// The kept line equal to `line`, whose hash is `hash`.
    pub(super) fn find(&self, hash: u64, line: &[u8]) -> Option<&Slot> {
        self.slots
            .get(set(hash))?
            .iter()
            .find(|slot| slot.hash == hash && slot.line == line)
    }

    /// Keeps `line` (at most [`LINE`] bytes, hash `hash`) and what was
    /// written for it, in place of whatever its slot held.
    pub(super) fn keep(&mut self, hash: u64, line: &[u8], w: Written<'_>) {
        if line.len() > LINE {
            return;
        }
        if self.slots.is_empty() {
            self.slots.resize_with(SETS, Default::default);
        }
        let s = set(hash);
        let (Some(ways), Some(next)) = (self.slots.get_mut(s), self.next.get_mut(s)) else {
            return;
        };
        // A free way, else the one kept longest ago (the ways are taken in
        // turn).
        let way = match ways.iter().position(|w| w.line.is_empty()) {
            Some(free) => free,
            None => {
                let way = usize::from(*next) % WAYS;
                *next = ((way + 1) % WAYS) as u8;
                way
            }
        };
        let slot = &mut ways[way];
        slot.hash = hash;
        slot.line.clear();
        slot.line.extend_from_slice(line);
        slot.fragment.clear();
        slot.fragment.push_str(w.fragment);
        slot.key = w.key;
        // Each is within the line, so under `LINE`.
        slot.name_at = w.name_at as u16;
        slot.name_len = w.name_len as u16;
        slot.kind = w.kind;
        slot.value_at = w.value_at as u16;
        slot.value_len = w.value_len as u16;
    }

    /// The head kept whole, if its bytes are `head`'s.
    pub(super) fn head(&self, head: &[u8]) -> Option<&KeptHead> {
        (!self.whole.bytes.is_empty() && self.whole.bytes.as_slice() == head).then_some(&self.whole)
    }

    /// Keeps `head` (at most [`HEAD`] bytes, with no secret field) whole,
    /// with the JSON the pass wrote for it and where its content type and
    /// encoding are; in place of the one kept before.
    pub(super) fn keep_head(
        &mut self,
        head: &[u8],
        json: &str,
        content_type: Option<(u32, u32)>,
        content_encoding: Option<(u32, u32)>,
    ) {
        let w = &mut self.whole;
        w.bytes.clear();
        w.json.clear();
        if head.len() > HEAD || json.len() > BUFFER {
            return;
        }
        w.bytes.extend_from_slice(head);
        w.json.push_str(json);
        w.content_type = content_type;
        w.content_encoding = content_encoding;
    }

    /// Forgets the head kept whole (its lines stay kept).
    pub(super) fn forget_head(&mut self) {
        self.whole.bytes.clear();
    }

    /// How many lines are kept (for the tests).
    #[cfg(test)]
    pub(super) fn kept(&self) -> impl Iterator<Item = &[u8]> {
        self.slots
            .iter()
            .flatten()
            .filter(|s| !s.line.is_empty())
            .map(|s| s.line.as_slice())
    }
}

/// The set a line of hash `hash` is kept in.
fn set(hash: u64) -> usize {
    (hash >> (64 - SETS.trailing_zeros())) as usize
}

/// A line's hash: its length and its bytes, eight at a time, mixed by
/// multiplication (the high bits, which index the table, depend on every
/// byte).
pub(super) fn hash(b: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mix = |h: u64, w: u64| (h.rotate_left(23) ^ w).wrapping_mul(K);
    let mut h = mix(0, b.len() as u64);
    let mut words = b.chunks_exact(8);
    for word in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        h = mix(h, u64::from_le_bytes(w));
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = mix(h, u64::from_le_bytes(w));
    }
    h ^ (h >> 29)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_differing_anywhere_hash_apart() {
        let base = b"Content-Type: text/html; charset=utf-8".to_vec();
        let h = hash(&base);
        for i in 0..base.len() {
            let mut other = base.clone();
            other[i] ^= 1;
            assert_ne!(hash(&other), h, "byte {i}");
        }
        assert_ne!(hash(b"ab"), hash(b"ab\0"));
        assert_ne!(hash(b""), hash(b"\0"));
    }

    #[test]
    fn a_line_is_found_only_by_its_own_bytes() {
        let mut memo = LineMemo::default();
        let line = b"Server: nginx";
        let w = || Written {
            fragment: "\"server\":\"nginx\"",
            key: 1,
            name_at: 0,
            name_len: 6,
            kind: Kind::Other,
            value_at: 8,
            value_len: 5,
        };
        assert!(memo.find(hash(line), line).is_none());
        memo.keep(hash(line), line, w());
        let s = memo.find(hash(line), line).expect("kept");
        assert_eq!(s.fragment, "\"server\":\"nginx\"");
        // The same hash with other bytes (a collision) is a miss.
        assert!(memo.find(hash(line), b"Server: nginy").is_none());
        // A line over the cap is not kept.
        let long = vec![b'a'; LINE + 1];
        memo.keep(hash(&long), &long, w());
        assert!(memo.find(hash(&long), &long).is_none());
        assert_eq!(memo.kept().count(), 1);
    }

    /// Lines whose hashes pick the same set are all kept, up to the set's
    /// ways; one more takes the place of the one kept longest ago.
    #[test]
    fn lines_of_one_set_are_kept_side_by_side() {
        let mut same = Vec::new();
        let mut i = 0u32;
        while same.len() < WAYS + 1 {
            let line = format!("X-Line-{i}: v").into_bytes();
            if set(hash(&line)) == 3 {
                same.push(line);
            }
            i += 1;
        }
        let mut memo = LineMemo::default();
        let keep = |memo: &mut LineMemo, line: &[u8]| {
            let w = Written {
                fragment: "f",
                key: 0,
                name_at: 0,
                name_len: 1,
                kind: Kind::Other,
                value_at: 0,
                value_len: 1,
            };
            memo.keep(hash(line), line, w);
        };
        for line in &same[..WAYS] {
            keep(&mut memo, line);
        }
        for line in &same[..WAYS] {
            assert!(memo.find(hash(line), line).is_some(), "{line:?}");
        }
        keep(&mut memo, &same[WAYS]);
        assert!(memo.find(hash(&same[0]), &same[0]).is_none());
        for line in &same[1..] {
            assert!(memo.find(hash(line), line).is_some(), "{line:?}");
        }
        assert_eq!(memo.kept().count(), WAYS);
    }
}
