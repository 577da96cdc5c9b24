//! The in-memory tier: a byte-bounded LRU of decoded entries, the first place a lookup
//! goes and the only tier the request path ever waits for.
//!
//! It owns recency and the byte bound; it knows nothing of expiry (the [`tiered`] cache
//! checks ages) or of persistence. Every operation takes one short `std` mutex lock and
//! is O(1): a `HashMap` from key to a slot in a slab `Vec`, whose slots form a doubly
//! linked list by index (most recent at the head). Indices instead of pointers keep it
//! free of `unsafe`, and the slab reuses freed slots so a full cache stops allocating.
//!
//! [`tiered`]: super::tiered

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::entry::Entry;
use super::key::CacheKey;

/// The "no slot" link.
const NIL: usize = usize::MAX;

/// A bounded, thread-safe LRU of entries, charged by [`Entry::size_bytes`].
#[derive(Debug)]
pub struct MemoryTier {
    max_bytes: u64,
    inner: Mutex<Lru>,
}

#[derive(Debug)]
struct Node {
    key: CacheKey,
    /// `None` only while the slot is on the free list.
    entry: Option<Arc<Entry>>,
    size: u64,
    prev: usize,
    next: usize,
}

#[derive(Debug)]
struct Lru {
    map: HashMap<CacheKey, usize>,
    slab: Vec<Node>,
    /// Freed slots, reused before the slab grows.
    free: Vec<usize>,
    /// Most recently used.
    head: usize,
    /// Least recently used: the next eviction.
    tail: usize,
    bytes: u64,
}

impl MemoryTier {
    /// An empty tier holding at most `max_bytes` (by [`Entry::size_bytes`]).
    pub fn new(max_bytes: u64) -> MemoryTier {
        MemoryTier {
            max_bytes,
            inner: Mutex::new(Lru {
                map: HashMap::new(),
                slab: Vec::new(),
                free: Vec::new(),
                head: NIL,
                tail: NIL,
                bytes: 0,
            }),
        }
    }

    /// The entry under `key`, marking it most recently used.
    pub fn get(&self, key: &CacheKey) -> Option<Arc<Entry>> {
        let mut lru = self.lock();
        let idx = *lru.map.get(key)?;
        lru.unlink(idx);
        lru.push_front(idx);
        lru.slab[idx].entry.clone()
    }

    /// Stores `entry` under `key` as most recently used, evicting least recently used
    /// entries until it fits; returns how many were evicted. An entry larger than the
    /// whole tier is not stored (and any older entry under `key` is dropped, since the
    /// caller meant to replace it).
    pub fn put(&self, key: CacheKey, entry: Arc<Entry>) -> u64 {
        let size = entry.size_bytes() as u64;
        let mut lru = self.lock();
        lru.remove(&key);
        if size > self.max_bytes {
            return 0;
        }
        let mut evicted = 0;
        while lru.bytes + size > self.max_bytes && lru.tail != NIL {
            let victim = lru.slab[lru.tail].key;
            lru.remove(&victim);
            evicted += 1;
        }
        lru.insert(key, entry, size);
        evicted
    }

    /// Removes the entry under `key`, returning it.
    pub fn remove(&self, key: &CacheKey) -> Option<Arc<Entry>> {
        self.lock().remove(key)
    }

    /// The bytes held, by [`Entry::size_bytes`].
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    /// How many entries are held.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The byte bound.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    fn lock(&self) -> MutexGuard<'_, Lru> {
        // Nothing inside the lock can panic short of an indexing bug; if one did, the
        // list is still the best cache we have, and a cache must not take requests down.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Lru {
    fn insert(&mut self, key: CacheKey, entry: Arc<Entry>, size: u64) {
        let node = Node {
            key,
            entry: Some(entry),
            size,
            prev: NIL,
            next: NIL,
        };
        let idx = match self.free.pop() {
            Some(idx) => {
                self.slab[idx] = node;
                idx
            }
            None => {
                self.slab.push(node);
                self.slab.len() - 1
            }
        };
        self.push_front(idx);
        self.map.insert(key, idx);
        self.bytes += size;
    }

    fn remove(&mut self, key: &CacheKey) -> Option<Arc<Entry>> {
        let idx = self.map.remove(key)?;
        self.unlink(idx);
        self.bytes -= self.slab[idx].size;
        self.slab[idx].size = 0;
        self.free.push(idx);
        self.slab[idx].entry.take()
    }

    fn unlink(&mut self, idx: usize) {
        let (prev, next) = (self.slab[idx].prev, self.slab[idx].next);
        if prev == NIL {
            self.head = next;
        } else {
            self.slab[prev].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.slab[next].prev = prev;
        }
        self.slab[idx].prev = NIL;
        self.slab[idx].next = NIL;
    }

    fn push_front(&mut self, idx: usize) {
        self.slab[idx].prev = NIL;
        self.slab[idx].next = self.head;
        if self.head != NIL {
            self.slab[self.head].prev = idx;
        }
        self.head = idx;
        if self.tail == NIL {
            self.tail = idx;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::cache::entry::Body;
    use crate::kind::Kind;

    fn key(n: u8) -> CacheKey {
        CacheKey([n; 32])
    }

    fn entry(body_len: usize) -> Arc<Entry> {
        Arc::new(Entry {
            kind: Kind::Chat,
            created_unix_ms: 0,
            upstream: "u".into(),
            model: "m".into(),
            input_tokens: 0,
            output_tokens: 0,
            ttft: None,
            e2e: Duration::ZERO,
            body: Body::Json(Bytes::from(vec![b'x'; body_len])),
        })
    }

    /// The size of `entry(body_len)`.
    fn size(body_len: usize) -> u64 {
        entry(body_len).size_bytes() as u64
    }

    #[test]
    fn get_returns_what_put_stored() {
        let tier = MemoryTier::new(10_000);
        assert!(tier.is_empty());
        assert_eq!(tier.put(key(1), entry(10)), 0);
        assert_eq!(
            tier.get(&key(1)).map(|e| e.size_bytes()),
            Some(size(10) as usize)
        );
        assert!(tier.get(&key(2)).is_none());
        assert_eq!(tier.len(), 1);
    }

    #[test]
    fn evicts_least_recently_used_first() {
        // Room for exactly three entries.
        let tier = MemoryTier::new(3 * size(100));
        for n in 1..=3 {
            assert_eq!(tier.put(key(n), entry(100)), 0);
        }
        // Touch 1 so 2 becomes the least recently used.
        assert!(tier.get(&key(1)).is_some());
        assert_eq!(tier.put(key(4), entry(100)), 1);
        assert!(tier.get(&key(2)).is_none(), "2 was least recently used");
        assert!(tier.get(&key(1)).is_some());
        assert!(tier.get(&key(3)).is_some());
        assert!(tier.get(&key(4)).is_some());
        // Order is now (old -> new) 1, 3, 4: a double-size entry evicts two.
        assert_eq!(tier.put(key(5), entry(100 + size(100) as usize)), 2);
        assert!(tier.get(&key(1)).is_none());
        assert!(tier.get(&key(3)).is_none());
        assert!(tier.get(&key(4)).is_some());
        assert!(tier.get(&key(5)).is_some());
        assert_eq!(tier.len(), 2);
    }

    #[test]
    fn bytes_track_puts_replacements_and_removals() {
        let tier = MemoryTier::new(1_000_000);
        tier.put(key(1), entry(100));
        tier.put(key(2), entry(200));
        assert_eq!(tier.bytes(), size(100) + size(200));
        // Replacing charges the new size only.
        tier.put(key(1), entry(1_000));
        assert_eq!(tier.bytes(), size(1_000) + size(200));
        assert_eq!(tier.len(), 2);
        assert!(tier.remove(&key(2)).is_some());
        assert!(tier.remove(&key(2)).is_none());
        assert_eq!(tier.bytes(), size(1_000));
        assert!(tier.remove(&key(1)).is_some());
        assert_eq!(tier.bytes(), 0);
        assert!(tier.is_empty());
    }

    #[test]
    fn an_entry_larger_than_the_tier_is_not_stored() {
        let tier = MemoryTier::new(size(100));
        assert_eq!(tier.put(key(1), entry(100)), 0);
        assert_eq!(tier.put(key(2), entry(101)), 0);
        assert!(tier.get(&key(2)).is_none());
        assert!(tier.get(&key(1)).is_some(), "nothing evicted for it");
        // Replacing a key with an oversized entry drops the old one.
        assert_eq!(tier.put(key(1), entry(101)), 0);
        assert!(tier.get(&key(1)).is_none());
        assert_eq!(tier.bytes(), 0);
    }

    #[test]
    fn freed_slots_are_reused() {
        let tier = MemoryTier::new(2 * size(10));
        for n in 0..100 {
            tier.put(key(n), entry(10));
        }
        assert_eq!(tier.len(), 2);
        assert!(
            tier.lock().slab.len() <= 3,
            "the slab stops growing once full"
        );
        assert!(tier.get(&key(98)).is_some());
        assert!(tier.get(&key(99)).is_some());
    }

    #[test]
    fn concurrent_use_keeps_the_bound() {
        let tier = Arc::new(MemoryTier::new(20 * size(50)));
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                let tier = Arc::clone(&tier);
                std::thread::spawn(move || {
                    for n in 0..200u8 {
                        let mut k = [0; 32];
                        (k[0], k[1]) = (t, n);
                        tier.put(CacheKey(k), entry(50));
                        let _ = tier.get(&key(n));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(tier.bytes() <= tier.max_bytes());
        assert_eq!(tier.len(), 20);
        assert_eq!(tier.bytes(), 20 * size(50));
    }
}
