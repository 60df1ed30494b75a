//! Coalescing of sync requests. Any number of requests made while a sync runs cause
//! exactly one follow-up sync: a request bumps a counter and stores (at most) one
//! [`Notify`] permit; a sync covers every request counted before it started. Waiters
//! hold the counter value of their request (a ticket) and wake when a sync covering it
//! has finished.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{Notify, watch};

/// A request's place in line: any sync that starts after the request covers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SyncTicket(pub u64);

/// The request counter and the completion feed.
#[derive(Debug)]
pub(super) struct SyncTrigger {
    notify: Notify,
    requested: AtomicU64,
    started: AtomicU64,
    completed: watch::Sender<u64>,
}

impl SyncTrigger {
    pub fn new() -> Self {
        Self {
            notify: Notify::new(),
            requested: AtomicU64::new(0),
            started: AtomicU64::new(0),
            completed: watch::Sender::new(0),
        }
    }

    /// Records a request and wakes the sync loop (or leaves it one permit).
    pub fn request(&self) -> SyncTicket {
        let ticket = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        self.notify.notify_one();
        SyncTicket(ticket)
    }

    /// Resolves when a request may be waiting.
    pub async fn requested(&self) {
        self.notify.notified().await;
    }

    /// True when a request arrived after the last sync started.
    pub fn pending(&self) -> bool {
        self.requested.load(Ordering::SeqCst) > self.started.load(Ordering::SeqCst)
    }

    /// Marks the start of a sync; returns the last request it covers.
    pub fn begin(&self) -> u64 {
        let covered = self.requested.load(Ordering::SeqCst);
        self.started.fetch_max(covered, Ordering::SeqCst);
        covered
    }

    /// Marks the end of a sync that covered requests up to `covered`.
    pub fn finish(&self, covered: u64) {
        self.completed.send_if_modified(|done| {
            let newer = covered > *done;
            if newer {
                *done = covered;
            }
            newer
        });
    }

    /// Resolves once a sync covering `ticket` has finished.
    pub async fn wait(&self, ticket: SyncTicket) {
        let mut done = self.completed.subscribe();
        // The sender lives as long as `self`, so this only ends when the ticket is covered.
        let _ = done.wait_for(|done| *done >= ticket.0).await;
    }
}
