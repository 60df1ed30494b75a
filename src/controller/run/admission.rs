//! Concurrency slots: `--max-concurrent-runs` globally and `maxInstances` per pipeline.
//! Runs that want a slot queue in FIFO order (creation time, then name) and are never
//! rejected; a run holds its slot from admission until its attempt ends, and gives it up
//! while it waits for a retry.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};

use crate::resource::ObjectKey;

/// A run waiting for a slot.
#[derive(Clone, Debug, PartialEq)]
struct Waiting {
    key: ObjectKey,
    pipeline: String,
    max_instances: Option<u32>,
}

/// The slot book-keeping of one operator.
#[derive(Debug, Default)]
pub struct Slots {
    global_limit: Option<usize>,
    holders: HashMap<ObjectKey, String>,
    waiting: BTreeMap<(DateTime<Utc>, ObjectKey), Waiting>,
    waiting_index: HashMap<ObjectKey, (DateTime<Utc>, ObjectKey)>,
}

impl Slots {
    /// Slots with an optional global limit.
    pub fn new(global_limit: Option<usize>) -> Self {
        Self {
            global_limit,
            ..Self::default()
        }
    }

    /// True when `key` holds a slot.
    pub fn holds(&self, key: &ObjectKey) -> bool {
        self.holders.contains_key(key)
    }

    /// Number of slots in use.
    pub fn in_use(&self) -> usize {
        self.holders.len()
    }

    /// Number of runs waiting for a slot.
    pub fn queued(&self) -> usize {
        self.waiting.len()
    }

    /// Records that `key` (already running, e.g. found at start-up) holds a slot.
    pub fn hold(&mut self, key: &ObjectKey, pipeline: &str) {
        self.unqueue(key);
        self.holders.insert(key.clone(), pipeline.to_owned());
    }

    /// Puts `key` in the queue (idempotent) and tries to admit it. Returns true when it
    /// holds a slot afterwards.
    pub fn request(
        &mut self,
        key: &ObjectKey,
        pipeline: &str,
        created: DateTime<Utc>,
        max_instances: Option<u32>,
    ) -> bool {
        if self.holders.contains_key(key) {
            return true;
        }
        let order = (created, key.clone());
        if let Some(previous) = self.waiting_index.insert(key.clone(), order.clone()) {
            self.waiting.remove(&previous);
        }
        self.waiting.insert(
            order,
            Waiting {
                key: key.clone(),
                pipeline: pipeline.to_owned(),
                max_instances,
            },
        );
        let admitted = self.admit();
        admitted.contains(key)
    }

    /// Gives up the slot or queue place of `key`; returns runs admitted in its stead.
    pub fn release(&mut self, key: &ObjectKey) -> Vec<ObjectKey> {
        let held = self.holders.remove(key).is_some();
        self.unqueue(key);
        if held { self.admit() } else { Vec::new() }
    }

    fn unqueue(&mut self, key: &ObjectKey) {
        if let Some(order) = self.waiting_index.remove(key) {
            self.waiting.remove(&order);
        }
    }

    /// Admits waiting runs in FIFO order while slots are free. A run blocked only by
    /// its pipeline's `maxInstances` does not block runs of other pipelines.
    fn admit(&mut self) -> Vec<ObjectKey> {
        let mut per_pipeline: HashMap<&str, u32> = HashMap::new();
        for pipeline in self.holders.values() {
            *per_pipeline.entry(pipeline.as_str()).or_default() += 1;
        }
        let mut total = self.holders.len();
        let mut admitted = Vec::new();
        for waiting in self.waiting.values() {
            if self.global_limit.is_some_and(|limit| total >= limit) {
                break;
            }
            let running = per_pipeline
                .get(waiting.pipeline.as_str())
                .copied()
                .unwrap_or(0);
            if waiting.max_instances.is_some_and(|max| running >= max) {
                continue;
            }
            *per_pipeline.entry(waiting.pipeline.as_str()).or_default() += 1;
            total += 1;
            admitted.push(waiting.key.clone());
        }
        let admitted_set: HashSet<ObjectKey> = admitted.iter().cloned().collect();
        for key in &admitted {
            if let Some(order) = self.waiting_index.remove(key)
                && let Some(waiting) = self.waiting.remove(&order)
            {
                self.holders.insert(key.clone(), waiting.pipeline);
            }
        }
        debug_assert_eq!(admitted_set.len(), admitted.len());
        admitted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Kind;

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new(Kind::Run, "default", name)
    }

    fn at(second: u32) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + i64::from(second), 0).expect("valid")
    }

    #[test]
    fn global_limit_queues_in_fifo_order() {
        let mut slots = Slots::new(Some(2));
        assert!(slots.request(&key("a"), "p", at(1), None));
        assert!(slots.request(&key("b"), "q", at(2), None));
        assert!(!slots.request(&key("d"), "p", at(4), None));
        assert!(!slots.request(&key("c"), "q", at(3), None));
        assert_eq!(slots.queued(), 2);
        // The older run (c) gets the freed slot, not the one that asked first (d).
        assert_eq!(slots.release(&key("a")), vec![key("c")]);
        assert_eq!(slots.release(&key("b")), vec![key("d")]);
    }

    #[test]
    fn max_instances_blocks_only_its_pipeline() {
        let mut slots = Slots::new(None);
        assert!(slots.request(&key("p1"), "p", at(1), Some(1)));
        assert!(!slots.request(&key("p2"), "p", at(2), Some(1)));
        assert!(slots.request(&key("q1"), "q", at(3), Some(1)));
        assert_eq!(slots.release(&key("p1")), vec![key("p2")]);
        assert!(slots.holds(&key("p2")));
    }

    #[test]
    fn releasing_a_queued_run_frees_its_place() {
        let mut slots = Slots::new(Some(1));
        assert!(slots.request(&key("a"), "p", at(1), None));
        assert!(!slots.request(&key("b"), "p", at(2), None));
        assert!(slots.release(&key("b")).is_empty());
        assert!(slots.release(&key("a")).is_empty());
        assert_eq!(slots.in_use(), 0);
    }

    #[test]
    fn requests_are_idempotent() {
        let mut slots = Slots::new(Some(1));
        assert!(slots.request(&key("a"), "p", at(1), None));
        assert!(slots.request(&key("a"), "p", at(1), None));
        assert!(!slots.request(&key("b"), "p", at(2), None));
        assert!(!slots.request(&key("b"), "p", at(2), None));
        assert_eq!(slots.queued(), 1);
    }
}
