//! Concurrency slots: `--max-concurrent-runs` globally and `maxInstances` per pipeline.
//! Runs that want a slot queue in FIFO order (creation time, then name) and are never
//! rejected; a run holds its slot from admission until its attempt ends, and gives it up
//! while it waits for a retry.
//!
//! Runs are reconciled by several workers in no particular order, so a run can ask for a
//! slot before an older run was looked at. New runs are therefore *expected* as soon as
//! the controller hears of them ([`Slots::expect`]): until its first reconcile says
//! whether it wants a slot ([`Slots::request`]) or not ([`Slots::evaluated`]), an
//! expected run keeps its place in the queue as if it wanted one, so no younger run
//! overtakes it.

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
    /// Runs not reconciled yet, by queue order: their pipeline.
    expected: BTreeMap<(DateTime<Utc>, ObjectKey), String>,
    expected_index: HashMap<ObjectKey, (DateTime<Utc>, ObjectKey)>,
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

    /// Records a run not reconciled yet: it keeps its place in the queue (counted against
    /// the global limit and its pipeline's instances) until [`Slots::request`] or
    /// [`Slots::evaluated`]. Ignored for a run that already holds or waits.
    pub fn expect(&mut self, key: &ObjectKey, pipeline: &str, created: DateTime<Utc>) {
        if self.holders.contains_key(key) || self.waiting_index.contains_key(key) {
            return;
        }
        let order = (created, key.clone());
        if let Some(previous) = self.expected_index.insert(key.clone(), order.clone()) {
            self.expected.remove(&previous);
        }
        self.expected.insert(order, pipeline.to_owned());
    }

    /// Ends the expectation of `key` after a reconcile that did not ask for a slot (or
    /// failed); returns runs admitted now that it no longer holds their place.
    pub fn evaluated(&mut self, key: &ObjectKey) -> Vec<ObjectKey> {
        match self.expected_index.remove(key) {
            Some(order) => {
                self.expected.remove(&order);
                self.admit()
            }
            None => Vec::new(),
        }
    }

    /// Puts `key` in the queue (idempotent) and admits what can be admitted; returns the
    /// runs admitted by this call (`key` among them, or not).
    pub fn request(
        &mut self,
        key: &ObjectKey,
        pipeline: &str,
        created: DateTime<Utc>,
        max_instances: Option<u32>,
    ) -> Vec<ObjectKey> {
        if self.holders.contains_key(key) {
            return Vec::new();
        }
        if let Some(order) = self.expected_index.remove(key) {
            self.expected.remove(&order);
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
        self.admit()
    }

    /// Gives up the slot or queue place of `key`; returns runs admitted in its stead.
    pub fn release(&mut self, key: &ObjectKey) -> Vec<ObjectKey> {
        let held = self.holders.remove(key).is_some();
        let reserved = self.expected_index.contains_key(key);
        self.unqueue(key);
        if held || reserved {
            self.admit()
        } else {
            Vec::new()
        }
    }

    fn unqueue(&mut self, key: &ObjectKey) {
        if let Some(order) = self.waiting_index.remove(key) {
            self.waiting.remove(&order);
        }
        if let Some(order) = self.expected_index.remove(key) {
            self.expected.remove(&order);
        }
    }

    /// Admits waiting runs in FIFO order while slots are free. A run blocked only by
    /// its pipeline's `maxInstances` does not block runs of other pipelines. An expected
    /// run older than a waiting one keeps its place: it counts as if admitted.
    fn admit(&mut self) -> Vec<ObjectKey> {
        let mut per_pipeline: HashMap<&str, u32> = HashMap::new();
        for pipeline in self.holders.values() {
            *per_pipeline.entry(pipeline.as_str()).or_default() += 1;
        }
        let mut total = self.holders.len();
        let mut admitted = Vec::new();
        let mut expected = self.expected.iter().peekable();
        for (order, waiting) in &self.waiting {
            while let Some((_, pipeline)) = expected.next_if(|(older, _)| *older < order) {
                *per_pipeline.entry(pipeline.as_str()).or_default() += 1;
                total += 1;
            }
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

    /// Asks for a slot; true when `name` holds one afterwards.
    fn ask(slots: &mut Slots, name: &str, pipeline: &str, second: u32, max: Option<u32>) -> bool {
        slots.request(&key(name), pipeline, at(second), max);
        slots.holds(&key(name))
    }

    fn at(second: u32) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + i64::from(second), 0).expect("valid")
    }

    #[test]
    fn global_limit_queues_in_fifo_order() {
        let mut slots = Slots::new(Some(2));
        assert!(ask(&mut slots, "a", "p", 1, None));
        assert!(ask(&mut slots, "b", "q", 2, None));
        assert!(!ask(&mut slots, "d", "p", 4, None));
        assert!(!ask(&mut slots, "c", "q", 3, None));
        assert_eq!(slots.queued(), 2);
        // The older run (c) gets the freed slot, not the one that asked first (d).
        assert_eq!(slots.release(&key("a")), vec![key("c")]);
        assert_eq!(slots.release(&key("b")), vec![key("d")]);
    }

    #[test]
    fn max_instances_blocks_only_its_pipeline() {
        let mut slots = Slots::new(None);
        assert!(ask(&mut slots, "p1", "p", 1, Some(1)));
        assert!(!ask(&mut slots, "p2", "p", 2, Some(1)));
        assert!(ask(&mut slots, "q1", "q", 3, Some(1)));
        assert_eq!(slots.release(&key("p1")), vec![key("p2")]);
        assert!(slots.holds(&key("p2")));
    }

    #[test]
    fn releasing_a_queued_run_frees_its_place() {
        let mut slots = Slots::new(Some(1));
        assert!(ask(&mut slots, "a", "p", 1, None));
        assert!(!ask(&mut slots, "b", "p", 2, None));
        assert!(slots.release(&key("b")).is_empty());
        assert!(slots.release(&key("a")).is_empty());
        assert_eq!(slots.in_use(), 0);
    }

    #[test]
    fn an_expected_run_keeps_its_place_until_it_is_reconciled() {
        // Limit 1: c, b and a are created in that order and heard of; a's reconcile
        // comes first. It must wait for c, the oldest.
        let mut slots = Slots::new(Some(1));
        slots.expect(&key("c"), "p", at(1));
        slots.expect(&key("b"), "p", at(2));
        slots.expect(&key("a"), "p", at(3));
        assert!(!ask(&mut slots, "a", "p", 3, None));
        assert!(!ask(&mut slots, "b", "p", 2, None));
        assert!(ask(&mut slots, "c", "p", 1, None));
        assert_eq!(slots.release(&key("c")), vec![key("b")]);
        assert_eq!(slots.release(&key("b")), vec![key("a")]);
    }

    #[test]
    fn an_expected_run_that_wants_no_slot_gives_its_place_up() {
        let mut slots = Slots::new(Some(1));
        slots.expect(&key("old"), "p", at(1));
        assert!(!ask(&mut slots, "new", "p", 2, None));
        // old's reconcile found it needs no slot (its pipeline is missing, say).
        assert_eq!(slots.evaluated(&key("old")), vec![key("new")]);
        assert!(slots.evaluated(&key("old")).is_empty());
    }

    #[test]
    fn expected_runs_reserve_only_what_they_could_use() {
        // Limit 3, one expected older run: a younger one is admitted at once.
        let mut slots = Slots::new(Some(3));
        slots.expect(&key("old"), "p", at(1));
        assert!(ask(&mut slots, "new", "q", 2, None));
        // maxInstances 1 without a global limit: an older expected run of the same
        // pipeline holds its place, one of another pipeline does not.
        let mut slots = Slots::new(None);
        slots.expect(&key("p-old"), "p", at(1));
        assert!(!ask(&mut slots, "p-new", "p", 2, Some(1)));
        assert!(ask(&mut slots, "q-new", "q", 3, Some(1)));
        // Deleting the expected run frees its place too.
        assert_eq!(slots.release(&key("p-old")), vec![key("p-new")]);
    }

    #[test]
    fn requests_are_idempotent() {
        let mut slots = Slots::new(Some(1));
        assert!(ask(&mut slots, "a", "p", 1, None));
        assert!(ask(&mut slots, "a", "p", 1, None));
        assert!(!ask(&mut slots, "b", "p", 2, None));
        assert!(!ask(&mut slots, "b", "p", 2, None));
        assert_eq!(slots.queued(), 1);
    }
}
