//! A map from ids to values that stays compact at a million entries: values live in one
//! `Vec` (no per-entry allocation, no hash-table slack around them) and an index maps an id
//! to its slot. A `HashMap<u64, V>` sized for 1,000,000 entries holds 2,097,152 buckets of
//! `8 + size_of::<V>()` bytes. Database ids are small and dense, so the index is a plain
//! `Vec<u32>` indexed by id (4 bytes per id) for ids below [`DIRECT_LIMIT`], and a hash map
//! only for ids above it.

use std::collections::HashMap;

/// Ids below this are indexed directly (at most 4 bytes × this many, 256 MiB, for a
/// pathological id; 4 MB for a million dense ids).
pub const DIRECT_LIMIT: u64 = 1 << 26;
const ABSENT: u32 = u32::MAX;

#[derive(Debug, Clone)]
pub struct DenseMap<V> {
    direct: Vec<u32>,
    sparse: HashMap<u64, u32>,
    slots: Vec<(u64, V)>,
}

impl<V> Default for DenseMap<V> {
    fn default() -> Self {
        DenseMap {
            direct: Vec::new(),
            sparse: HashMap::new(),
            slots: Vec::new(),
        }
    }
}

impl<V> DenseMap<V> {
    fn slot_of(&self, id: u64) -> Option<u32> {
        if id < DIRECT_LIMIT {
            self.direct
                .get(id as usize)
                .copied()
                .filter(|i| *i != ABSENT)
        } else {
            self.sparse.get(&id).copied()
        }
    }

    fn set_slot(&mut self, id: u64, slot: u32) {
        if id < DIRECT_LIMIT {
            let i = id as usize;
            if self.direct.len() <= i {
                self.direct.resize(i + 1, ABSENT);
            }
            self.direct[i] = slot;
        } else {
            self.sparse.insert(id, slot);
        }
    }

    fn clear_slot(&mut self, id: u64) -> Option<u32> {
        if id < DIRECT_LIMIT {
            let cell = self.direct.get_mut(id as usize)?;
            let old = std::mem::replace(cell, ABSENT);
            (old != ABSENT).then_some(old)
        } else {
            self.sparse.remove(&id)
        }
    }
}

#[allow(dead_code)] // len/is_empty: for tests and callers to come
impl<V> DenseMap<V> {
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn get(&self, id: &u64) -> Option<&V> {
        self.slot_of(*id).map(|i| &self.slots[i as usize].1)
    }

    pub fn get_mut(&mut self, id: &u64) -> Option<&mut V> {
        match self.slot_of(*id) {
            Some(i) => Some(&mut self.slots[i as usize].1),
            None => None,
        }
    }

    /// Inserts or replaces; returns the old value.
    pub fn insert(&mut self, id: u64, value: V) -> Option<V> {
        match self.slot_of(id) {
            Some(i) => Some(std::mem::replace(&mut self.slots[i as usize].1, value)),
            None => {
                self.set_slot(id, self.slots.len() as u32);
                self.slots.push((id, value));
                None
            }
        }
    }

    /// The value of `id`, inserted by `make` when missing.
    pub fn get_or_insert_with(&mut self, id: u64, make: impl FnOnce() -> V) -> &mut V {
        let i = match self.slot_of(id) {
            Some(i) => i,
            None => {
                let i = self.slots.len() as u32;
                self.set_slot(id, i);
                self.slots.push((id, make()));
                i
            }
        };
        &mut self.slots[i as usize].1
    }

    /// Removes `id` (the last slot moves into its place).
    pub fn remove(&mut self, id: &u64) -> Option<V> {
        let i = self.clear_slot(*id)? as usize;
        let (_, value) = self.slots.swap_remove(i);
        if let Some(&(moved, _)) = self.slots.get(i) {
            self.set_slot(moved, i as u32);
        }
        Some(value)
    }

    /// Entries from position `from` of the (unordered) table on; positions shift when entries
    /// are removed, so a walk in steps may skip or repeat an entry then.
    pub fn slots_from(&self, from: usize) -> &[(u64, V)] {
        &self.slots[from.min(self.slots.len())..]
    }

    pub fn iter(&self) -> impl Iterator<Item = (&u64, &V)> {
        self.slots.iter().map(|(k, v)| (k, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn behaves_like_a_hash_map(ops in prop::collection::vec((0u8..4, 0u64..40, any::<u32>()), 0..200)) {
            let mut dense = DenseMap::default();
            let mut model = HashMap::new();
            for (op, k, v) in ops {
                // Half the ids above the direct range, to exercise both indexes.
                let k = if k >= 20 { DIRECT_LIMIT + k } else { k };
                match op {
                    0 => prop_assert_eq!(dense.insert(k, v), model.insert(k, v)),
                    1 => prop_assert_eq!(dense.remove(&k), model.remove(&k)),
                    2 => { *dense.get_or_insert_with(k, || v) += 0; model.entry(k).or_insert(v); }
                    _ => prop_assert_eq!(dense.get(&k), model.get(&k)),
                }
                prop_assert_eq!(dense.len(), model.len());
            }
            let mut a: Vec<_> = dense.iter().map(|(k, v)| (*k, *v)).collect();
            let mut b: Vec<_> = model.into_iter().collect();
            a.sort_unstable();
            b.sort_unstable();
            prop_assert_eq!(a, b);
        }
    }
}
