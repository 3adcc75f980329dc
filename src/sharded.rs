//! A sharded map of separately locked values, so threads working on
//! different keys (TLS connections, by their `SSL*` address) rarely meet on
//! a lock.
//!
//! Each shard is a `Mutex<HashMap>` holding `Arc<Mutex<V>>`: a lookup holds
//! the shard's lock only to clone the `Arc`, and the caller then locks the
//! value alone. Locks survive a panic of a previous holder (in the preload
//! library a panic has already switched tracing off; the data is only read
//! to shut down).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

/// How many shards a [`Table`] has.
pub const SHARDS: usize = 32;

/// One shard: key → shared, separately locked state.
type Shard<K, V> = Mutex<HashMap<K, Arc<Mutex<V>>, BuildHasherDefault<KeyHasher>>>;

/// A lock that survives a panic of a previous holder.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A sharded map, so threads working on different keys rarely meet on a
/// lock.
pub struct Table<K, V> {
    shards: [Shard<K, V>; SHARDS],
}

impl<K, V> Default for Table<K, V> {
    fn default() -> Self {
        Table {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::default())),
        }
    }
}

/// Keys spread over the shards: pointers without their always-zero low
/// bits.
pub trait ShardKey: Copy + Eq + std::hash::Hash {
    fn shard(self) -> usize;
}

impl ShardKey for usize {
    #[inline]
    fn shard(self) -> usize {
        self >> 4
    }
}

impl<K: ShardKey, V> Table<K, V> {
    fn shard(&self, key: K) -> &Shard<K, V> {
        &self.shards[key.shard() % SHARDS]
    }

    pub fn get(&self, key: K) -> Option<Arc<Mutex<V>>> {
        lock(self.shard(key)).get(&key).cloned()
    }

    /// The value of `key`, made by `make` (under the shard's lock) if
    /// there is none yet.
    pub fn get_or_insert_with(&self, key: K, make: impl FnOnce() -> V) -> Arc<Mutex<V>> {
        lock(self.shard(key))
            .entry(key)
            .or_insert_with(|| Arc::new(Mutex::new(make())))
            .clone()
    }

    pub fn remove(&self, key: K) -> Option<Arc<Mutex<V>>> {
        lock(self.shard(key)).remove(&key)
    }

    /// Every entry whose shard is not busy right now (used at exit, where
    /// waiting on a lock is not an option).
    pub fn all(&self) -> Vec<Arc<Mutex<V>>> {
        let mut out = Vec::new();
        for shard in &self.shards {
            if let Ok(map) = shard.try_lock() {
                out.extend(map.values().cloned());
            }
        }
        out
    }
}

/// For keys that are small integers, ids or pointers of our own (never
/// chosen by a peer): one widening multiply, folded, with no per-map random
/// state (std's SipHash needs a thread-local and costs about 20 times as
/// much). The fold matters: the low bits of a plain product depend only on
/// the key's low bits, which are the same for every pointer of a shard
/// (aligned, and picked by bits 4 to 8), and a hash table picks buckets
/// by the low bits.
#[derive(Default)]
pub struct KeyHasher(u64);

/// A map from our own ids, hashed by [`KeyHasher`].
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<KeyHasher>>;

impl Hasher for KeyHasher {
    #[inline]
    fn finish(&self) -> u64 {
        let full = u128::from(self.0) * 0x9e37_79b9_7f4a_7c15;
        (full as u64) ^ ((full >> 64) as u64)
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.0 = i;
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    #[inline]
    fn write_i32(&mut self, i: i32) {
        self.0 = i as u32 as u64;
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.0 = i as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::Hash;

    fn hash(k: impl Hash) -> u64 {
        let mut h = KeyHasher::default();
        k.hash(&mut h);
        h.finish()
    }

    #[test]
    fn keys_of_one_shard_spread_over_the_low_bits() {
        // Pointers that land in one shard share their low nine bits; the
        // hashes' low bits (a table's bucket) must still differ.
        let mut buckets = std::collections::HashSet::new();
        for i in 0..256usize {
            let key = 0x7f00_0000_0000 + i * 16 * SHARDS;
            assert_eq!(key.shard() % SHARDS, 0);
            buckets.insert(hash(key) & 0xff);
        }
        assert!(buckets.len() > 128, "{} buckets of 256", buckets.len());
        // Sequential ids too.
        let ids: std::collections::HashSet<u64> = (0..256u64).map(|i| hash(i) & 0xff).collect();
        assert!(ids.len() > 128, "{} buckets of 256", ids.len());
    }

    #[test]
    fn values_are_made_once_and_shared() {
        let t: Table<usize, u32> = Table::default();
        assert!(t.get(0x1000).is_none());
        let a = t.get_or_insert_with(0x1000, || 7);
        let b = t.get_or_insert_with(0x1000, || panic!("made twice"));
        assert!(Arc::ptr_eq(&a, &b));
        *lock(&a) += 1;
        assert_eq!(*lock(&t.get(0x1000).unwrap()), 8);
        // A neighbour in the same shard is another entry.
        let c = t.get_or_insert_with(0x1000 + 16 * SHARDS, || 1);
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(*lock(&a), 8);
    }

    #[test]
    fn removed_entries_are_gone_but_live_on_for_their_holders() {
        let t: Table<usize, String> = Table::default();
        let held = t.get_or_insert_with(0x40, || "conn".to_owned());
        let removed = t.remove(0x40).expect("present");
        assert!(Arc::ptr_eq(&held, &removed));
        assert!(t.get(0x40).is_none());
        assert!(t.remove(0x40).is_none());
        assert_eq!(*lock(&held), "conn");
        // A new entry under the same key is a fresh value.
        let again = t.get_or_insert_with(0x40, String::new);
        assert!(!Arc::ptr_eq(&held, &again));
    }

    #[test]
    fn all_skips_shards_that_are_busy() {
        let t: Table<usize, usize> = Table::default();
        // Heap pointers are 16-byte aligned: consecutive objects land in
        // consecutive shards.
        let keys: Vec<usize> = (0..SHARDS).map(|i| 0x10_0000 + i * 16).collect();
        for &k in &keys {
            t.get_or_insert_with(k, || k);
        }
        let shards: std::collections::HashSet<usize> =
            keys.iter().map(|k| k.shard() % SHARDS).collect();
        assert_eq!(shards.len(), SHARDS, "one key per shard");
        let mut all: Vec<usize> = t.all().iter().map(|v| *lock(v)).collect();
        all.sort_unstable();
        assert_eq!(all, keys);
        // A shard held elsewhere (a thread interrupted at exit) is left out,
        // not waited for.
        let busy = lock(t.shard(keys[3]));
        let all: Vec<usize> = t.all().iter().map(|v| *lock(v)).collect();
        assert_eq!(all.len(), SHARDS - 1);
        assert!(!all.contains(&keys[3]));
        drop(busy);
        assert_eq!(t.all().len(), SHARDS);
    }

    #[test]
    fn a_poisoned_shard_still_serves() {
        let t: Table<usize, u8> = Table::default();
        t.get_or_insert_with(0x80, || 1);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _g = t.shard(0x80).lock().unwrap();
            panic!("a holder panics");
        }));
        assert!(r.is_err());
        assert!(t.shard(0x80).is_poisoned());
        assert_eq!(*lock(&t.get(0x80).unwrap()), 1);
        assert!(t.remove(0x80).is_some());
    }

    #[test]
    fn the_hasher_keeps_integer_keys_and_spreads_them() {
        // usize, u64 and i32 keys are kept as they are, then multiplied
        // by the constant and folded.
        assert_eq!(hash(1usize), 0x9e37_79b9_7f4a_7c15);
        assert_eq!(hash(1u64), 0x9e37_79b9_7f4a_7c15);
        assert_eq!(hash(0usize), 0);
        let mut h = KeyHasher::default();
        h.write_i32(-1);
        assert_eq!(h.0, u64::from(u32::MAX));
        // 2^64 * c folds to c: the high half counts.
        h.write_u64(1 << 63);
        assert_eq!(
            h.finish(),
            (0x9e37_79b9_7f4a_7c15u64 << 63) ^ (0x9e37_79b9_7f4a_7c15 >> 1)
        );
        // Bytes are taken big-end first, the last eight kept.
        let mut h = KeyHasher::default();
        h.write(&[1, 2]);
        assert_eq!(h.0, 0x0102);
        h.write(&[3, 4, 5, 6, 7, 8, 9, 10]);
        assert_eq!(h.0, 0x0304_0506_0708_090a);
    }

    #[test]
    fn shards_ignore_the_always_zero_low_bits() {
        assert_eq!(0x1234_5670usize.shard(), 0x0123_4567);
        assert_eq!(0x1234_567fusize.shard(), 0x0123_4567);
    }
}
