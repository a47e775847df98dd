//! One timer queue for every machine in the engine. Machines compute their own next deadline;
//! the queue only remembers who wants waking when, so the shell keeps exactly one sleep.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::Hash;
use std::time::Instant;

/// A min-heap with lazy deletion: rescheduling pushes a new entry and the stale one is
/// skipped when it surfaces.
#[derive(Debug)]
pub struct TimerQueue<K: Eq + Hash + Clone + Ord> {
    heap: BinaryHeap<Reverse<(Instant, K)>>,
    current: HashMap<K, Instant>,
}

impl<K: Eq + Hash + Clone + Ord> Default for TimerQueue<K> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
            current: HashMap::new(),
        }
    }
}

impl<K: Eq + Hash + Clone + Ord> TimerQueue<K> {
    /// Sets (or clears, with `None`) the deadline of `key`.
    pub fn set(&mut self, key: K, at: Option<Instant>) {
        match at {
            Some(at) => {
                if self.current.get(&key) != Some(&at) {
                    self.current.insert(key.clone(), at);
                    self.heap.push(Reverse((at, key)));
                }
            }
            None => {
                self.current.remove(&key);
            }
        }
        // Bound the garbage: rebuild when stale entries dominate.
        if self.heap.len() > 64 && self.heap.len() > 4 * self.current.len() {
            self.heap = self
                .current
                .iter()
                .map(|(k, at)| Reverse((*at, k.clone())))
                .collect();
        }
    }

    /// The earliest live deadline.
    pub fn earliest(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, key))) = self.heap.peek() {
            if self.current.get(key) == Some(at) {
                return Some(*at);
            }
            self.heap.pop();
        }
        None
    }

    /// Removes and returns one key whose deadline is due.
    pub fn pop_due(&mut self, now: Instant) -> Option<K> {
        loop {
            let Reverse((at, key)) = self.heap.peek()?.clone();
            if self.current.get(&key) != Some(&at) {
                self.heap.pop();
                continue;
            }
            if at > now {
                return None;
            }
            self.heap.pop();
            self.current.remove(&key);
            return Some(key);
        }
    }

    pub fn len(&self) -> usize {
        self.current.len()
    }

    pub fn is_empty(&self) -> bool {
        self.current.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)]
    use super::*;
    use std::time::Duration;

    #[test]
    fn rescheduled_and_cleared_keys_do_not_fire_stale() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut q = TimerQueue::default();
        q.set(1u32, Some(ms(10)));
        q.set(2, Some(ms(20)));
        q.set(1, Some(ms(30)));
        q.set(2, None);
        assert_eq!(q.earliest(), Some(ms(30)));
        assert_eq!(q.pop_due(ms(25)), None);
        assert_eq!(q.pop_due(ms(30)), Some(1));
        assert_eq!(q.earliest(), None);
    }
}
