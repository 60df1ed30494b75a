//! Rendered list pages, reused while the store has not changed.
//!
//! A dashboard or a script polling the same page (`?limit=500`) asks for bytes that only
//! change when something is written. Every write moves the store-wide revision (also
//! writes by other operators sharing a PostgreSQL database: the counter lives in the
//! database), so a page rendered at revision R is exactly what a new read at R would
//! render. A hit costs one read of the revision instead of reading and rendering the
//! page. Only paged lists are kept, within a byte budget.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Bytes;

use crate::resource::Kind;

/// Bytes of rendered pages kept in all.
const BUDGET: usize = 8 * 1024 * 1024;

/// Pages larger than this are not kept (a quarter of the budget).
const LARGEST_PAGE: usize = BUDGET / 4;

/// Identifies a page: what was listed, from where, how many.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PageKey {
    /// Kind listed.
    pub kind: Kind,
    /// Namespace, or all.
    pub namespace: Option<String>,
    /// The `continue` token the page starts after.
    pub after: Option<String>,
    /// Page size.
    pub limit: i64,
}

/// Shared by every clone.
#[derive(Clone, Default)]
pub struct PageCache {
    inner: Arc<Mutex<Pages>>,
}

#[derive(Default)]
struct Pages {
    pages: HashMap<PageKey, (i64, Bytes)>,
    bytes: usize,
}

impl PageCache {
    /// The page rendered at `revision`, if kept.
    pub fn get(&self, key: &PageKey, revision: i64) -> Option<Bytes> {
        let pages = self.lock();
        match pages.pages.get(key) {
            Some((at, body)) if *at == revision => Some(body.clone()),
            _ => None,
        }
    }

    /// Whether a page for `key` is kept (at any revision): only then is the revision
    /// worth reading before the page itself.
    pub fn has(&self, key: &PageKey) -> bool {
        self.lock().pages.contains_key(key)
    }

    /// Keeps `body`, rendered at `revision`. Pages of older revisions can never be
    /// served again (revisions only grow) and are dropped.
    pub fn put(&self, key: PageKey, revision: i64, body: Bytes) {
        if body.len() > LARGEST_PAGE {
            return;
        }
        let mut pages = self.lock();
        if pages.pages.values().any(|(at, _)| *at != revision) {
            pages.pages.retain(|_, (at, _)| *at == revision);
            pages.bytes = pages.pages.values().map(|(_, b)| b.len()).sum();
        }
        if pages.bytes + body.len() > BUDGET {
            pages.pages.clear();
            pages.bytes = 0;
        }
        pages.bytes += body.len();
        if let Some((_, old)) = pages.pages.insert(key, (revision, body)) {
            pages.bytes -= old.len();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pages> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(after: Option<&str>) -> PageKey {
        PageKey {
            kind: Kind::Run,
            namespace: Some("default".into()),
            after: after.map(str::to_owned),
            limit: 500,
        }
    }

    #[test]
    fn a_page_is_served_only_at_its_revision() {
        let cache = PageCache::default();
        cache.put(key(None), 7, Bytes::from_static(b"page at 7"));
        assert_eq!(cache.get(&key(None), 7).as_deref(), Some(&b"page at 7"[..]));
        assert_eq!(cache.get(&key(None), 8), None);
        assert_eq!(cache.get(&key(Some("x")), 7), None);
    }

    #[test]
    fn a_newer_revision_drops_older_pages_and_the_budget_holds() {
        let cache = PageCache::default();
        cache.put(key(Some("a")), 1, Bytes::from(vec![b'a'; 1000]));
        cache.put(key(Some("b")), 2, Bytes::from(vec![b'b'; 1000]));
        assert_eq!(
            cache.get(&key(Some("a")), 1),
            None,
            "older revision dropped"
        );
        assert_eq!(cache.lock().bytes, 1000);
        for i in 0..20 {
            cache.put(
                key(Some(&i.to_string())),
                2,
                Bytes::from(vec![0; LARGEST_PAGE]),
            );
            assert!(cache.lock().bytes <= BUDGET);
        }
        cache.put(key(None), 2, Bytes::from(vec![0; LARGEST_PAGE + 1]));
        assert_eq!(cache.get(&key(None), 2), None, "too large to keep");
    }
}
