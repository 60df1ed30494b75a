//! A work queue of object keys, like client-go's: a key is queued at most once, is
//! processed by one worker at a time, and a key added while it is being processed is
//! processed again afterwards. Delayed adds (requeue-after) use timers.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::resource::ObjectKey;

#[derive(Default)]
struct State {
    order: VecDeque<ObjectKey>,
    queued: HashSet<ObjectKey>,
    processing: HashSet<ObjectKey>,
    dirty: HashSet<ObjectKey>,
}

/// A deduplicating work queue.
#[derive(Clone, Default)]
pub struct WorkQueue {
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
}

impl WorkQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues `key` unless it is already queued; marks it dirty if it is in progress.
    pub fn add(&self, key: ObjectKey) {
        let mut state = self.lock();
        if state.processing.contains(&key) {
            state.dirty.insert(key);
            return;
        }
        if state.queued.insert(key.clone()) {
            state.order.push_back(key);
            drop(state);
            self.notify.notify_one();
        }
    }

    /// Queues `key` after `delay`.
    pub fn add_after(&self, key: ObjectKey, delay: Duration) {
        if delay.is_zero() {
            self.add(key);
            return;
        }
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(key);
        });
    }

    /// Waits for the next key; `None` once `shutdown` is cancelled.
    pub async fn next(&self, shutdown: &CancellationToken) -> Option<ObjectKey> {
        loop {
            let notified = self.notify.notified();
            {
                let mut state = self.lock();
                if let Some(key) = state.order.pop_front() {
                    state.queued.remove(&key);
                    state.processing.insert(key.clone());
                    if !state.order.is_empty() {
                        self.notify.notify_one();
                    }
                    return Some(key);
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = notified => {}
            }
        }
    }

    /// Marks `key` processed; queues it again if it was added meanwhile.
    pub fn done(&self, key: &ObjectKey) {
        let mut state = self.lock();
        state.processing.remove(key);
        if state.dirty.remove(key) && state.queued.insert(key.clone()) {
            state.order.push_back(key.clone());
            drop(state);
            self.notify.notify_one();
        }
    }

    /// Keys waiting (for the work-queue depth metric).
    pub fn len(&self) -> usize {
        self.lock().order.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Kind;

    #[tokio::test]
    async fn deduplicates_and_requeues_dirty_keys() {
        let queue = WorkQueue::new();
        let shutdown = CancellationToken::new();
        let a = ObjectKey::new(Kind::Run, "default", "a");
        let b = ObjectKey::new(Kind::Run, "default", "b");
        queue.add(a.clone());
        queue.add(a.clone());
        queue.add(b.clone());
        assert_eq!(queue.len(), 2);
        let first = queue.next(&shutdown).await.expect("key");
        assert_eq!(first, a);
        queue.add(a.clone()); // while processing: marked dirty, not queued twice
        assert_eq!(queue.len(), 1);
        queue.done(&a);
        assert_eq!(queue.next(&shutdown).await, Some(b.clone()));
        queue.done(&b);
        assert_eq!(queue.next(&shutdown).await, Some(a.clone()));
        queue.done(&a);
        shutdown.cancel();
        assert_eq!(queue.next(&shutdown).await, None);
    }
}
