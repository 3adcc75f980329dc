//! Strings given back by the export thread, for the next spans' texts.
//!
//! A span's longer texts (its payload attributes above all) are made on the
//! thread that builds the span (the capture thread, mostly) and freed on
//! the export thread once the span is sent. glibc's allocator caches freed
//! blocks per thread: a block freed on the export thread goes to that
//! thread's cache (or, once that is full, back to the builder's arena
//! under its lock), so the builder's own cache never holds a block to
//! reuse, and each of its allocations took the slow path (about 200
//! instructions) and each free on the export thread about 150. Instead,
//! the export thread gives the strings of the spans it sent back here,
//! emptied, and [`copy`] writes a text into one of them.
//!
//! Bounded: strings of [`MIN_CAPACITY`] to [`MAX_CAPACITY`] bytes, at most
//! [`MAX_BYTES`] of them in all. Never waits: a lock held by the other
//! thread (or, in a forked child, by a thread that no longer exists) means
//! an allocation as before, or a string freed as before.

use std::sync::Mutex;

/// Smallest and largest capacity kept: texts of up to 30 bytes are stored
/// in the span itself (`crate::span::InlineText`), longer ones are rare.
/// A text of at least half the smallest is given a string of the smallest,
/// so that it comes back.
pub const MIN_CAPACITY: usize = 64;
pub const MAX_CAPACITY: usize = 4 << 10;
/// Most bytes kept in all (the sum of the kept strings' capacities).
pub const MAX_BYTES: usize = 1 << 20;
/// Strings of a text's own class looked at for one that holds it.
const PROBES: usize = 4;

/// The kept strings by size class: class `k` holds capacities from
/// `MIN_CAPACITY << k` to twice that. A text takes a string of its own
/// class that holds it (among the last few kept there), else any string
/// of a larger class.
const CLASSES: usize = (MAX_CAPACITY / MIN_CAPACITY).trailing_zeros() as usize + 1;

struct Pool {
    classes: [Vec<String>; CLASSES],
    bytes: usize,
}

/// The class of a string of capacity `cap` (within the bounds).
fn class_of(cap: usize) -> usize {
    ((cap / MIN_CAPACITY).ilog2() as usize).min(CLASSES - 1)
}

static POOL: Mutex<Pool> = Mutex::new(Pool::new());

/// A string holding `text`: a spare one when one fits, else a new one of
/// `text`'s size (or of [`MIN_CAPACITY`], see there).
pub fn copy(text: &str) -> String {
    let len = text.len();
    let spare = POOL.try_lock().ok().and_then(|mut p| p.take(len));
    let mut s = spare.unwrap_or_else(|| {
        String::with_capacity(if len >= MIN_CAPACITY / 2 {
            len.max(MIN_CAPACITY)
        } else {
            len
        })
    });
    s.push_str(text);
    s
}

/// Keeps `strings` (emptied) as spares where they fit the bounds; the
/// others are freed, after the lock is let go.
pub fn give_back(strings: &mut Vec<String>) {
    if let Ok(mut pool) = POOL.try_lock() {
        pool.keep(strings);
    }
    strings.clear();
}

impl Pool {
    const fn new() -> Pool {
        Pool {
            classes: [const { Vec::new() }; CLASSES],
            bytes: 0,
        }
    }

    /// A kept string of at least `len` bytes' capacity, emptied.
    fn take(&mut self, len: usize) -> Option<String> {
        if !(MIN_CAPACITY / 2..=MAX_CAPACITY).contains(&len) {
            return None;
        }
        let k = class_of(len.max(MIN_CAPACITY));
        let own = &mut self.classes[k];
        let fits = own
            .iter()
            .rev()
            .take(PROBES)
            .position(|s| s.capacity() >= len);
        let s = match fits {
            Some(back) => own.swap_remove(own.len() - 1 - back),
            None => self
                .classes
                .get_mut(k + 1..)?
                .iter_mut()
                .find_map(Vec::pop)?,
        };
        self.bytes -= s.capacity();
        Some(s)
    }

    /// Moves the strings of `strings` that fit the bounds into the pool.
    fn keep(&mut self, strings: &mut [String]) {
        for s in strings {
            let cap = s.capacity();
            if (MIN_CAPACITY..=MAX_CAPACITY).contains(&cap) && self.bytes + cap <= MAX_BYTES {
                let mut s = std::mem::take(s);
                s.clear();
                self.bytes += cap;
                self.classes[class_of(cap)].push(s);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.classes.iter().map(Vec::len).sum()
    }

    #[cfg(test)]
    fn capacity_sum(&self) -> usize {
        self.classes.iter().flatten().map(String::capacity).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_come_back_emptied_within_the_bounds() {
        let mut pool = Pool::new();
        let mut given = vec![
            String::with_capacity(100),
            String::with_capacity(10),
            String::with_capacity(MAX_CAPACITY + 1),
            "x".repeat(500),
        ];
        let ptr_500 = given[3].as_ptr();
        pool.keep(&mut given);
        assert_eq!(pool.len(), 2, "only 100 and 500 fit");
        assert_eq!(pool.bytes, pool.capacity_sum());
        // 300 bytes take the 500-byte string (of their class), emptied.
        let s = pool.take(300).expect("a spare");
        assert!(s.is_empty());
        assert_eq!(s.as_ptr(), ptr_500);
        // Nothing left that holds 200 bytes (the 100-byte string is of a
        // smaller class); short texts never take one.
        assert!(pool.take(200).is_none());
        assert!(pool.take(10).is_none());
        assert_eq!(pool.len(), 1);
        // The bytes kept never pass the bound.
        let mut many: Vec<String> = (0..MAX_BYTES / MAX_CAPACITY + 10)
            .map(|_| String::with_capacity(MAX_CAPACITY))
            .collect();
        pool.keep(&mut many);
        assert!(pool.bytes <= MAX_BYTES);
        let mut taken = 0;
        while pool.take(MAX_CAPACITY).is_some() {
            taken += 1;
        }
        assert_eq!(taken, (MAX_BYTES - 100) / MAX_CAPACITY);
        assert_eq!(pool.bytes, pool.capacity_sum());
        // A string of a larger class always holds the text.
        for cap in MIN_CAPACITY..=MAX_CAPACITY {
            let k = class_of(cap);
            assert!(cap >= MIN_CAPACITY << k, "{cap}");
            assert!(k == CLASSES - 1 || cap < MIN_CAPACITY << (k + 1), "{cap}");
        }
        // A string of its own class too small for the text is left there.
        let mut pool = Pool::new();
        pool.keep(&mut [String::with_capacity(260), String::with_capacity(600)]);
        assert_eq!(pool.take(300).map(|s| s.capacity()), Some(600));
        assert_eq!(pool.take(250).map(|s| s.capacity()), Some(260));
    }

    /// The process-wide pool: a copy holds its text whether or not a spare
    /// was taken.
    #[test]
    fn a_copy_holds_its_text() {
        let mut back = vec!["q".repeat(200)];
        give_back(&mut back);
        assert!(back.is_empty());
        for text in ["", "short", &"w".repeat(150), &"v".repeat(5000)] {
            assert_eq!(copy(text), text);
        }
        // A text of half the smallest capacity or more gets at least the
        // smallest, so that it is kept when it comes back.
        assert!(copy(&"u".repeat(MIN_CAPACITY / 2)).capacity() >= MIN_CAPACITY);
    }
}
