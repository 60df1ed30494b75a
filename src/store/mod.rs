//! Persistence of resources in SQLite (the embedded default) or PostgreSQL.
//!
//! The store owns the `objects` table and the store-wide revision counter: it assigns
//! uids, generations and resourceVersions, enforces optimistic concurrency and applies
//! batches of [`Change`]s atomically. It knows nothing of kinds' specs, sources or HTTP;
//! spec and status are opaque JSON here.
//!
//! Every write takes the next number of one counter, like etcd's revision, so
//! resourceVersions are unique and strictly increasing across all kinds.

mod backend;
mod error;
pub mod events;
pub mod fence;
mod insert;
pub mod lease;
pub mod output;
mod row;
mod statement;
pub mod tokens;
mod write;

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;
use sqlx::sqlite::SqliteConnectOptions;
use tokio::sync::broadcast;

use self::backend::{Backend, Param};
use self::row::{ObjectRow, key_params, object_columns};
use self::write::{Write, apply_with};
use crate::resource::kind::Kind;
use crate::resource::object::{Change, DesiredObject, ObjectKey, RawObject, StoredObject};

pub use self::error::StoreError;

const CURRENT_REVISION: &str = "SELECT value FROM revision WHERE id = 1";

const GET: &str = concat!(
    "SELECT ",
    object_columns!(),
    " FROM objects WHERE kind = $1 AND namespace = $2 AND name = $3"
);

/// A page of objects as one row: the store revision and the page's rows as one JSON
/// array of arrays (columns in [`object_columns!`] order, JSON columns as strings).
/// Fetching a row costs a round trip between the driver's thread and the caller's, so
/// a page of 500 rows one by one spends most of its time switching threads. The order
/// of an aggregate's input is unspecified (and asking for one makes SQLite sort again):
/// the caller sorts the decoded page.
macro_rules! aggregated_page {
    (sqlite, $filter:literal, $order:literal) => {
        concat!(
            "SELECT (SELECT value FROM revision WHERE id = 1), ",
            "json_group_array(json_array(",
            object_columns!(),
            ")) FROM (SELECT ",
            object_columns!(),
            " FROM objects WHERE ",
            $filter,
            " ORDER BY ",
            $order,
            " LIMIT $4)"
        )
    };
    (postgres, $filter:literal, $order:literal) => {
        concat!(
            "SELECT (SELECT value FROM revision WHERE id = 1), ",
            "coalesce(json_agg(json_build_array(",
            object_columns!(),
            ")), '[]'::json)::text FROM (SELECT ",
            object_columns!(),
            " FROM objects WHERE ",
            $filter,
            " ORDER BY ",
            $order,
            " LIMIT $4) AS page"
        )
    };
}

/// [`aggregated_page`] queries: (SQLite, PostgreSQL) for all namespaces and for one.
const PAGE_KIND: (&str, &str) = (
    aggregated_page!(
        sqlite,
        "kind = $1 AND (namespace, name) > ($2, $3)",
        "namespace, name"
    ),
    aggregated_page!(
        postgres,
        "kind = $1 AND (namespace, name) > ($2, $3)",
        "namespace, name"
    ),
);
const PAGE_KIND_IN_NAMESPACE: (&str, &str) = (
    aggregated_page!(sqlite, "kind = $1 AND namespace = $2 AND name > $3", "name"),
    aggregated_page!(
        postgres,
        "kind = $1 AND namespace = $2 AND name > $3",
        "name"
    ),
);

/// Objects per aggregated query when a whole list is read.
const LIST_CHUNK: i64 = 1_000;

const LIST_MANAGED_BY: &str = concat!(
    "SELECT ",
    object_columns!(),
    " FROM objects WHERE managed_by = $1 ORDER BY kind, namespace, name"
);

/// A page of the objects managed by `$1`, after the key (`$2`, `$3`, `$4`).
const PAGE_MANAGED_BY: &str = concat!(
    "SELECT ",
    object_columns!(),
    " FROM objects WHERE managed_by = $1 AND (kind, namespace, name) > ($2, $3, $4) ",
    "ORDER BY kind, namespace, name LIMIT $5"
);

/// Objects written or deleted after revision `$1`, oldest write first, `$2` at most.
const CHANGED_SINCE: &str = concat!(
    "SELECT ",
    object_columns!(),
    ", CAST(0 AS BIGINT) AS deleted FROM objects WHERE resource_version > $1 ",
    "UNION ALL SELECT ",
    object_columns!(),
    ", CAST(1 AS BIGINT) AS deleted FROM deletions WHERE resource_version > $1 ",
    "ORDER BY resource_version LIMIT $2"
);

/// A row of [`CHANGED_SINCE`].
#[derive(sqlx::FromRow)]
struct ChangedRow {
    #[sqlx(flatten)]
    object: ObjectRow,
    /// 1 for a deleted object (its revision is the delete's).
    deleted: i64,
}

/// Objects read per query by [`Store::follow_other_writers`].
const CHANGED_PAGE: i64 = 1_000;

/// Keys looked up per query by [`Store::get_raw_many`] (three parameters each).
const KEYS_PER_QUERY: usize = 300;

/// One page of a list and the store revision it was read at.
#[derive(Debug)]
pub struct RawPage {
    /// The store-wide revision when the page was read.
    pub revision: i64,
    /// The objects, in key order.
    pub objects: Vec<RawObject>,
}

/// A handle on the database; clones share one connection pool and one change feed.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
    changes: broadcast::Sender<StoreEvent>,
    identity: Arc<str>,
    /// Revisions this process wrote, while [`Store::follow_other_writers`] runs: its
    /// poll leaves them out (they were announced when written).
    own_writes: Arc<std::sync::Mutex<Option<std::collections::BTreeSet<i64>>>>,
    /// Held shared by a write from before its commit until its revisions are in
    /// `own_writes`, and exclusively by the poll while it reads: otherwise the poll,
    /// woken by the write's own notification, could read the row in between and
    /// announce this process's write a second time.
    registering: Arc<tokio::sync::RwLock<()>>,
    /// Set on the leader's controllers' handle: every write checks the lease epoch in
    /// its transaction ([`fence`]).
    fence: Option<Arc<fence::Fence>>,
}

/// What a write did, announced to [`Store::subscribe`]rs in this process.
#[derive(Clone, Debug, PartialEq)]
pub struct StoreEvent {
    /// The object written.
    pub key: ObjectKey,
    /// Its resourceVersion after the write (before, for deletes).
    pub resource_version: i64,
    /// Created, spec/metadata changed, status changed or deleted.
    pub change: ChangeKind,
    /// The object after the write (before, for deletes), as stored text: subscribers
    /// parse what they need ([`RawObject::to_object`]).
    pub object: Arc<RawObject>,
}

/// Kind of a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// A new object.
    Added,
    /// Spec, labels, annotations or manager changed.
    Modified,
    /// Only the status changed.
    StatusModified,
    /// The object was deleted.
    Deleted,
}

/// How many unread events a slow subscriber may fall behind before it is told it lagged.
const CHANGE_FEED_CAPACITY: usize = 16_384;

impl Store {
    /// Connects to `sqlite://PATH` (created if missing) or `postgres://…` and brings the
    /// schema up to date.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::with_backend(Backend::open_url(url).await?).await
    }

    /// Opens (creating if missing) the SQLite database at `path`.
    pub async fn open_sqlite(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new().filename(path);
        Self::with_backend(Backend::open_sqlite(options).await?).await
    }

    async fn with_backend(backend: Backend) -> Result<Self, StoreError> {
        let identity = Self::ensure_identity(&backend).await?;
        let (changes, _) = broadcast::channel(CHANGE_FEED_CAPACITY);
        Ok(Self {
            backend,
            changes,
            identity,
            own_writes: Arc::default(),
            registering: Arc::default(),
            fence: None,
        })
    }

    /// Reads the store's identity, writing a new UUID first when the store has none.
    /// Operators opening the same store at once agree: the first insert wins and every
    /// one reads the row back.
    async fn ensure_identity(backend: &Backend) -> Result<Arc<str>, StoreError> {
        let fresh = uuid::Uuid::new_v4().to_string();
        let mut rows: Vec<(String,)> = backend
            .fetch(
                "INSERT INTO store_identity (id, uid) VALUES (1, $1) \
                 ON CONFLICT (id) DO NOTHING RETURNING uid",
                vec![Param::Text(fresh)],
            )
            .await?;
        if rows.is_empty() {
            rows = backend
                .fetch("SELECT uid FROM store_identity WHERE id = 1", Vec::new())
                .await?;
        }
        match rows.into_iter().next() {
            Some((uid,)) if !uid.trim().is_empty() => Ok(uid.into()),
            _ => Err(StoreError::Corrupt {
                key: "store_identity".into(),
                reason: "the store has no identity row; restore it from a backup".into(),
            }),
        }
    }

    /// The store's identity: a UUID created once, when the store was first opened, and
    /// shared by every operator using this store. Containers carry it as the
    /// `flotilla.dev/store` label, so operators with different stores never touch each
    /// other's containers, whatever their `--instance` says.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// A handle whose writes are fenced by `fence`: each is refused unless this replica
    /// still holds the fence's lease under its epoch (checked in the write's
    /// transaction). Shares the pool and the change feed with `self`.
    pub fn fenced(&self, fence: Arc<fence::Fence>) -> Store {
        Store {
            fence: Some(fence),
            ..self.clone()
        }
    }

    /// The fence of this handle's writes, if any (see [`Store::fenced`]).
    pub fn fence(&self) -> Option<&fence::Fence> {
        self.fence.as_deref()
    }

    /// A feed of every write made through this process's stores (clones share it).
    /// Writes by other processes sharing the database are not seen: pair it with a
    /// periodic re-list.
    pub fn subscribe(&self) -> broadcast::Receiver<StoreEvent> {
        self.changes.subscribe()
    }

    /// Creates every object whose key is free, in one transaction, and returns those
    /// created (as stored text, shared with the change feed); taken keys are skipped. This is how "exactly once per slot" is enforced:
    /// the second create of a slot's run finds its key taken, whoever made the first.
    pub async fn create_absent(
        &self,
        objects: Vec<(DesiredObject, Option<Value>)>,
    ) -> Result<Vec<Arc<RawObject>>, StoreError> {
        let writes = objects
            .into_iter()
            .map(|(object, status)| Write::Create {
                object,
                managed_by: None,
                status,
            })
            .collect();
        self.write_with(writes, true).await
    }

    /// Writes a run's final status and creates the runs its end starts, in one
    /// transaction: both or neither, so an operator killed in between neither loses nor
    /// repeats a downstream run. Creates of taken names are skipped (another replica or
    /// an earlier attempt made them). Returns the run's new resourceVersion.
    pub async fn finish_run(
        &self,
        key: &ObjectKey,
        expected_rv: i64,
        status: Value,
        starts: Vec<(DesiredObject, Option<Value>)>,
    ) -> Result<i64, StoreError> {
        let mut writes = vec![Write::Status {
            key: key.clone(),
            expected: Some(expected_rv),
            status,
        }];
        writes.extend(starts.into_iter().map(|(object, status)| Write::Create {
            object,
            managed_by: None,
            status,
        }));
        let written = self.write_with(writes, true).await?;
        written
            .first()
            .filter(|object| object.key == *key)
            .map(|object| object.resource_version)
            .ok_or_else(|| StoreError::NotFound(key.clone()))
    }

    /// Writes several statuses in one transaction (all or none), each with the
    /// resourceVersion check of [`Store::update_status`].
    pub async fn update_statuses(
        &self,
        statuses: Vec<(ObjectKey, Option<i64>, Value)>,
    ) -> Result<(), StoreError> {
        let writes = statuses
            .into_iter()
            .map(|(key, expected, status)| Write::Status {
                key,
                expected,
                status,
            })
            .collect();
        self.write(writes).await.map(drop)
    }

    /// Applies writes and announces them.
    async fn write(&self, writes: Vec<Write>) -> Result<Vec<Arc<RawObject>>, StoreError> {
        self.write_with(writes, false).await
    }

    async fn write_with(
        &self,
        writes: Vec<Write>,
        skip_taken: bool,
    ) -> Result<Vec<Arc<RawObject>>, StoreError> {
        let kinds: Vec<ChangeKind> = writes
            .iter()
            .map(|w| match w {
                Write::Create { .. } => ChangeKind::Added,
                Write::Update { .. } => ChangeKind::Modified,
                Write::Status { .. } => ChangeKind::StatusModified,
                Write::Delete { .. } => ChangeKind::Deleted,
            })
            .collect();
        let keys: Vec<ObjectKey> = match skip_taken {
            true => writes.iter().map(|w| w.key().clone()).collect(),
            false => Vec::new(),
        };
        let following = self.own_writes().is_some();
        let _registering = match following {
            true => Some(self.registering.read().await),
            false => None,
        };
        let (written, first_revision) =
            apply_with(&self.backend, writes, skip_taken, self.fence.as_deref()).await?;
        // The feed carries the written objects as their stored text, shared rather than
        // copied: an apply of 10,000 objects announces 10,000 events before any
        // subscriber runs.
        let written: Vec<Arc<RawObject>> = written.into_iter().map(Arc::new).collect();
        if let Some(own) = self.own_writes().as_mut() {
            // The revisions the rows carry now (a create_absent that skips taken keys
            // writes fewer rows than it reserved revisions for); a delete's is the one
            // the delete took, under which its deletion row is read back.
            own.extend(
                written
                    .iter()
                    .zip(&kinds)
                    .enumerate()
                    .map(|(i, (object, change))| match change {
                        ChangeKind::Deleted if !skip_taken => first_revision + i as i64,
                        _ => object.resource_version,
                    }),
            );
        }
        if self.changes.receiver_count() > 0 {
            let kinds = if skip_taken {
                // Only creates are skipped: the written objects are the writes in order,
                // less the creates whose key was taken.
                let mut written_keys = written.iter().map(|o| &o.key).peekable();
                keys.iter()
                    .zip(kinds)
                    .filter_map(|(key, kind)| {
                        written_keys
                            .next_if(|written| *written == key)
                            .map(|_| kind)
                    })
                    .collect()
            } else {
                kinds
            };
            for (i, (object, change)) in written.iter().zip(kinds).enumerate() {
                // A delete returns the object as it was; its event carries the revision
                // the delete itself took, so watchers resume past it.
                let resource_version = match change {
                    ChangeKind::Deleted => first_revision + i as i64,
                    _ => object.resource_version,
                };
                let _ = self.changes.send(StoreEvent {
                    key: object.key.clone(),
                    resource_version,
                    change,
                    object: Arc::clone(object),
                });
            }
        }
        Ok(written)
    }

    fn own_writes(&self) -> std::sync::MutexGuard<'_, Option<std::collections::BTreeSet<i64>>> {
        self.own_writes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Announces, on this process's change feed, the writes other operators sharing the
    /// database make: the objects written after the last revision seen (in revision
    /// order, a page at a time) become `Added` (never written since their creation) or
    /// `Modified` events. Every write transaction on PostgreSQL notifies channel
    /// `flotilla_writes` at commit, so they are read within milliseconds; a poll every
    /// `every` catches up on notifications lost while the listening connection was
    /// re-established. Deletes come from the `deletions` table, which a delete fills in
    /// its transaction. Runs until `shutdown`.
    pub fn follow_other_writers(
        &self,
        every: std::time::Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        *self.own_writes() = Some(std::collections::BTreeSet::new());
        let store = self.clone();
        tokio::spawn(async move {
            let mut seen = store.revision().await.unwrap_or(0);
            let mut listener = match store.backend.listen(WRITES_CHANNEL).await {
                Ok(listener) => listener,
                Err(e) => {
                    tracing::warn!(
                        "cannot listen for other operators' writes, polling every {every:?}: {e}"
                    );
                    None
                }
            };
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = ticks.tick() => {}
                    notified = next_notification(&mut listener) => {
                        if let Err(e) = notified {
                            tracing::warn!("the write notifications stopped, retrying: {e}");
                            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                        }
                    }
                }
                // One read for every notification that arrived meanwhile.
                if let Some(listener) = listener.as_mut() {
                    while listener.next_buffered().is_some() {}
                }
                store.announce_writes_after(&mut seen).await;
            }
        })
    }

    /// Reads the writes after revision `seen` and announces those this process did not
    /// make; advances `seen`.
    async fn announce_writes_after(&self, seen: &mut i64) {
        let _quiet = self.registering.write().await;
        loop {
            let rows: Vec<ChangedRow> = match self
                .backend
                .fetch(
                    CHANGED_SINCE,
                    vec![Param::Int(*seen), Param::Int(CHANGED_PAGE)],
                )
                .await
            {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!("cannot read other operators' writes: {e}");
                    return;
                }
            };
            let full = rows.len() as i64 == CHANGED_PAGE;
            for ChangedRow { object, deleted } in rows {
                let raw = match object.into_raw() {
                    Ok(raw) => raw,
                    Err(e) => {
                        tracing::warn!(code = e.code(), "{e}");
                        continue;
                    }
                };
                *seen = (*seen).max(raw.resource_version);
                let own = self
                    .own_writes()
                    .as_mut()
                    .is_some_and(|own| own.remove(&raw.resource_version));
                if own || self.changes.receiver_count() == 0 {
                    continue;
                }
                let change = if deleted == 1 {
                    ChangeKind::Deleted
                } else if raw.created_at == raw.updated_at {
                    ChangeKind::Added
                } else {
                    ChangeKind::Modified
                };
                let _ = self.changes.send(StoreEvent {
                    key: raw.key.clone(),
                    resource_version: raw.resource_version,
                    change,
                    object: Arc::new(raw),
                });
            }
            if let Some(own) = self.own_writes().as_mut() {
                own.retain(|revision| *revision > *seen);
            }
            if !full {
                return;
            }
        }
    }

    /// Runs not finished (no status yet, `Pending` or `Running`): in all, and of
    /// `pipeline` in `namespace`. Read through a partial index of such runs
    /// (migrations 0008), so it costs the same however long the history; the phase and
    /// the pipeline are found in the stored canonical JSON text (see the migration), so
    /// a damaged row is counted or not but never makes the count fail. SQLite is told to
    /// use the index: its planner prefers the primary key's `kind`, which spans every
    /// run.
    pub async fn unfinished_runs(
        &self,
        namespace: &str,
        pipeline: &str,
    ) -> Result<(i64, i64), StoreError> {
        const SQLITE: &str = "\
            SELECT COUNT(*), COALESCE(SUM(namespace = $1 AND instr(spec, $2) > 0), 0) \
            FROM objects INDEXED BY objects_unfinished_runs WHERE kind = 'Run' \
              AND (status IS NULL \
                   OR instr(status, '\"phase\":\"Pending\"') > 0 \
                   OR instr(status, '\"phase\":\"Running\"') > 0)";
        const POSTGRES: &str = "\
            SELECT COUNT(*), COUNT(*) FILTER (WHERE namespace = $1 AND strpos(spec, $2) > 0) \
            FROM objects WHERE kind = 'Run' \
              AND (status IS NULL \
                   OR strpos(status, '\"phase\":\"Pending\"') > 0 \
                   OR strpos(status, '\"phase\":\"Running\"') > 0)";
        let sql = match self.backend_name() {
            "sqlite" => SQLITE,
            _ => POSTGRES,
        };
        // The spec's canonical text names its pipeline exactly so (pipelineRef has no
        // other key; names are DNS labels, with nothing to escape).
        let reference = serde_json::json!({ "pipelineRef": { "name": pipeline } }).to_string();
        let reference = reference[1..reference.len() - 1].to_owned();
        let params = vec![Param::Text(namespace.to_owned()), Param::Text(reference)];
        let rows: Vec<(i64, i64)> = self.backend.fetch(sql, params).await?;
        Ok(rows.first().copied().unwrap_or((0, 0)))
    }

    /// `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// Closes the pool shared by every clone; later calls fail with
    /// [`StoreError::Database`].
    pub async fn close(&self) {
        self.backend.close().await;
    }

    /// Checks that the database answers and holds the schema (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        let _: Vec<(i64,)> = self.backend.fetch(CURRENT_REVISION, Vec::new()).await?;
        Ok(())
    }

    /// The store-wide revision: the resourceVersion of the latest write.
    pub async fn revision(&self) -> Result<i64, StoreError> {
        let rows: Vec<(i64,)> = self.backend.fetch(CURRENT_REVISION, Vec::new()).await?;
        Ok(rows.first().map_or(0, |(value,)| *value))
    }

    /// The object at `key`, if any.
    pub async fn get(&self, key: &ObjectKey) -> Result<Option<StoredObject>, StoreError> {
        let rows = self.fetch(GET, key_params(key).to_vec()).await?;
        Ok(rows.into_iter().next())
    }

    /// Every object of `kind`, in one namespace or all, ordered by namespace then name.
    pub async fn list(
        &self,
        kind: Kind,
        namespace: Option<&str>,
    ) -> Result<Vec<StoredObject>, StoreError> {
        self.list_raw(kind, namespace)
            .await?
            .iter()
            .map(row::parse)
            .collect()
    }

    /// Like [`Store::list`], with spec, status, labels and annotations left as the stored
    /// JSON text: lists for the API are written without building JSON trees. Read in
    /// chunks of [`LIST_CHUNK`] objects.
    pub async fn list_raw(
        &self,
        kind: Kind,
        namespace: Option<&str>,
    ) -> Result<Vec<RawObject>, StoreError> {
        let mut objects: Vec<RawObject> = Vec::new();
        loop {
            let after = objects
                .last()
                .map(|o| (o.key.namespace.clone(), o.key.name.clone()));
            let page = self
                .list_raw_page(
                    kind,
                    namespace,
                    after.as_ref().map(|(n, m)| (n.as_str(), m.as_str())),
                    LIST_CHUNK,
                )
                .await?;
            let full = page.objects.len() as i64 == LIST_CHUNK;
            objects.extend(page.objects);
            if !full {
                return Ok(objects);
            }
        }
    }

    /// One page of [`Store::list_raw`]: at most `limit` objects after `after`
    /// (`(namespace, name)` of the previous page's last object; `None` for the first),
    /// with the store revision read in the same statement.
    pub async fn list_raw_page(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        after: Option<(&str, &str)>,
        limit: i64,
    ) -> Result<RawPage, StoreError> {
        let (after_namespace, after_name) = after.unwrap_or(("", ""));
        let kind = Param::Text(kind.as_str().to_owned());
        let (sql, params) = match namespace {
            Some(namespace) => (
                PAGE_KIND_IN_NAMESPACE,
                vec![
                    kind,
                    Param::Text(namespace.to_owned()),
                    Param::Text(after_name.to_owned()),
                    Param::Int(limit),
                ],
            ),
            None => (
                PAGE_KIND,
                vec![
                    kind,
                    Param::Text(after_namespace.to_owned()),
                    Param::Text(after_name.to_owned()),
                    Param::Int(limit),
                ],
            ),
        };
        let sql = match self.backend.name() {
            "sqlite" => sql.0,
            _ => sql.1,
        };
        let rows: Vec<(Option<i64>, String)> = self.backend.fetch(sql, params).await?;
        let (revision, json) = rows.into_iter().next().unwrap_or((None, "[]".to_owned()));
        let rows: Vec<ObjectRow> =
            serde_json::from_str(&json).map_err(|e| StoreError::Corrupt {
                key: "objects page".to_owned(),
                reason: format!("the aggregated page does not decode: {e}"),
            })?;
        let mut objects: Vec<RawObject> = rows
            .into_iter()
            .map(ObjectRow::into_raw)
            .collect::<Result<_, _>>()?;
        objects.sort_unstable_by(|a, b| {
            (&a.key.namespace, &a.key.name).cmp(&(&b.key.namespace, &b.key.name))
        });
        Ok(RawPage {
            revision: revision.unwrap_or(0),
            objects,
        })
    }

    /// Every object, of any kind, whose field manager is `manager`, ordered by kind,
    /// namespace and name.
    pub async fn list_managed_by(&self, manager: &str) -> Result<Vec<RawObject>, StoreError> {
        let rows: Vec<ObjectRow> = self
            .backend
            .fetch(LIST_MANAGED_BY, vec![Param::Text(manager.to_owned())])
            .await?;
        rows.into_iter().map(ObjectRow::into_raw).collect()
    }

    /// The stored objects among `keys` (absent keys are left out), as stored text.
    pub async fn get_raw_many(&self, keys: &[ObjectKey]) -> Result<Vec<RawObject>, StoreError> {
        let mut found = Vec::new();
        for chunk in keys.chunks(KEYS_PER_QUERY) {
            let mut sql = String::from(concat!(
                "SELECT ",
                object_columns!(),
                " FROM objects WHERE (kind, namespace, name) IN (VALUES "
            ));
            let mut params = Vec::with_capacity(chunk.len() * 3);
            for (i, key) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                if self.backend.wants_anonymous_placeholders() {
                    sql.push_str("(?, ?, ?)");
                } else {
                    sql.push_str(&format!("(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3));
                }
                params.extend(key_params(key));
            }
            sql.push(')');
            let rows: Vec<ObjectRow> = self.backend.fetch(sqlx::AssertSqlSafe(sql), params).await?;
            for row in rows {
                found.push(row.into_raw()?);
            }
        }
        Ok(found)
    }

    /// One page of the objects `manager` owns, as stored text: at most `limit` after
    /// `after` in (kind, namespace, name) order.
    pub async fn list_managed_by_page(
        &self,
        manager: &str,
        after: Option<&ObjectKey>,
        limit: i64,
    ) -> Result<Vec<RawObject>, StoreError> {
        let mut params = vec![Param::Text(manager.to_owned())];
        match after {
            Some(key) => params.extend(key_params(key)),
            None => params.extend([
                Param::Text(String::new()),
                Param::Text(String::new()),
                Param::Text(String::new()),
            ]),
        }
        params.push(Param::Int(limit));
        let rows: Vec<ObjectRow> = self.backend.fetch(PAGE_MANAGED_BY, params).await?;
        rows.into_iter().map(ObjectRow::into_raw).collect()
    }

    /// Applies `changes` in order in one transaction: all of them or, on the first error,
    /// none. Returns the objects after each change (for a delete, the object as it was).
    ///
    /// Creates get a new uid and generation 1; updates bump the generation only when the
    /// spec changes and leave the status alone; every change takes the next
    /// resourceVersion.
    pub async fn commit(&self, changes: Vec<Change>) -> Result<Vec<StoredObject>, StoreError> {
        parse_all(
            &self
                .write(changes.into_iter().map(Write::from).collect())
                .await?,
        )
    }

    /// [`Store::commit`] for large batches (an apply of thousands of objects): returns
    /// only the number of writes, so no parsed copy of the written objects is made.
    pub async fn commit_many(&self, changes: Vec<Change>) -> Result<usize, StoreError> {
        let written = self
            .write(changes.into_iter().map(Write::from).collect())
            .await?;
        Ok(written.len())
    }

    /// Creates one object; [`StoreError::AlreadyExists`] if the key is taken.
    pub async fn create(
        &self,
        object: DesiredObject,
        managed_by: Option<String>,
        status: Option<Value>,
    ) -> Result<StoredObject, StoreError> {
        let key = object.key.clone();
        let write = Write::Create {
            object,
            managed_by,
            status,
        };
        only(self.write(vec![write]).await?, key)
    }

    /// Deletes one object and returns it as it was. With `expected_rv`, a different stored
    /// resourceVersion is a [`StoreError::Conflict`]; without, the delete is unconditional.
    pub async fn delete(
        &self,
        key: &ObjectKey,
        expected_rv: Option<i64>,
    ) -> Result<StoredObject, StoreError> {
        let write = Write::Delete {
            key: key.clone(),
            expected: expected_rv,
        };
        only(self.write(vec![write]).await?, key.clone())
    }

    /// Deletes `keys` unconditionally in one transaction: all of them or, when one is
    /// missing (or any other error), none.
    pub async fn delete_all(&self, keys: &[ObjectKey]) -> Result<usize, StoreError> {
        let writes = keys
            .iter()
            .map(|key| Write::Delete {
                key: key.clone(),
                expected: None,
            })
            .collect();
        Ok(self.write(writes).await?.len())
    }

    /// Replaces the status of one object, leaving spec and generation alone, and bumps its
    /// resourceVersion. With `expected_rv`, a different stored resourceVersion is a
    /// [`StoreError::Conflict`].
    pub async fn update_status(
        &self,
        key: &ObjectKey,
        expected_rv: Option<i64>,
        status: Value,
    ) -> Result<StoredObject, StoreError> {
        let write = Write::Status {
            key: key.clone(),
            expected: expected_rv,
            status,
        };
        only(self.write(vec![write]).await?, key.clone())
    }

    async fn fetch(
        &self,
        sql: &'static str,
        params: Vec<Param>,
    ) -> Result<Vec<StoredObject>, StoreError> {
        let rows: Vec<ObjectRow> = self.backend.fetch(sql, params).await?;
        rows.into_iter().map(ObjectRow::into_object).collect()
    }
}

/// The PostgreSQL notification channel of committed writes.
pub(super) const WRITES_CHANNEL: &str = "flotilla_writes";

/// The next notification of `listener`; never, without one (SQLite).
async fn next_notification(
    listener: &mut Option<sqlx::postgres::PgListener>,
) -> Result<(), sqlx::Error> {
    match listener {
        Some(listener) => listener.recv().await.map(drop),
        None => std::future::pending().await,
    }
}

/// The single result of a one-write batch.
fn only(objects: Vec<Arc<RawObject>>, key: ObjectKey) -> Result<StoredObject, StoreError> {
    // A successful one-write batch always returns exactly one object.
    objects
        .first()
        .map(|raw| row::parse(raw))
        .ok_or(StoreError::NotFound(key))?
}

fn parse_all(objects: &[Arc<RawObject>]) -> Result<Vec<StoredObject>, StoreError> {
    objects.iter().map(|raw| row::parse(raw)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Handlers and controllers run store calls on tokio tasks, so the futures must be Send.
    #[allow(dead_code)]
    fn futures_are_send(store: &Store, key: &ObjectKey) {
        fn is_send<T: Send>(_: T) {}
        is_send(store.commit(Vec::new()));
        is_send(store.get(key));
        is_send(store.list(Kind::Run, None));
        is_send(store.update_status(key, None, Value::Null));
    }
}
