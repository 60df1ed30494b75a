//! The two database backends behind one narrow interface.
//!
//! Everything backend-specific lives here: connecting, connection settings, migrations and
//! the dispatch from one SQL text to the SQLite or PostgreSQL pool. Statements are written
//! once with `$1, $2` placeholders (both backends accept them) and run through
//! [`Backend::fetch`] or [`Tx::fetch`] with [`Param`]s, so the rest of the store never
//! names a backend.

use std::str::FromStr;
use std::time::Duration;

use futures::TryStreamExt;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::query::Query;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Database, Encode, FromRow, Postgres, SqlSafeStr, Sqlite, Transaction, Type};

use super::error::StoreError;

/// How long a SQLite writer waits for the write lock before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections to a SQLite database.
const SQLITE_CONNECTIONS: u32 = 4;

/// Page cache per SQLite connection, in KiB (SQLite's default is 2000): the database file
/// stays in the OS page cache anyway.
const SQLITE_CACHE_KIB: u32 = 512;

/// A connection pool to one of the supported databases.
#[derive(Clone, Debug)]
pub(super) enum Backend {
    /// An SQLite file (the embedded default).
    Sqlite(SqlitePool),
    /// A PostgreSQL database (for replicated operators).
    Postgres(PgPool),
}

/// An open write transaction; dropping it without [`Tx::commit`] rolls it back.
pub(super) enum Tx {
    /// On SQLite, begun with `BEGIN IMMEDIATE` so the write lock is taken up front.
    Sqlite(Transaction<'static, Sqlite>),
    /// On PostgreSQL, `READ COMMITTED`; writers serialise on the revision row lock.
    Postgres(Transaction<'static, Postgres>),
}

/// A bind parameter, owned so one value list can go to either backend.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Param {
    /// BIGINT.
    Int(i64),
    /// Nullable BIGINT.
    OptInt(Option<i64>),
    /// TEXT.
    Text(String),
    /// Nullable TEXT.
    OptText(Option<String>),
    /// BYTEA (PostgreSQL) or BLOB (SQLite).
    Bytes(Vec<u8>),
}

/// A row type both backends can decode (tuples and `#[derive(sqlx::FromRow)]` structs).
pub(super) trait FromEitherRow:
    for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{
}

impl<T> FromEitherRow for T where
    T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{
}

/// Runs `$body` with `$inner` bound to the payload of whichever variant `$value` is, so a
/// body written once compiles against each backend's concrete types.
macro_rules! dispatch {
    ($enum:ident, $value:expr, $inner:ident => $body:expr) => {
        match $value {
            $enum::Sqlite($inner) => $body,
            $enum::Postgres($inner) => $body,
        }
    };
}

impl Backend {
    /// Opens (creating if missing) the SQLite database `options` names, in WAL mode, and
    /// brings its schema up to date.
    pub(super) async fn open_sqlite(options: SqliteConnectOptions) -> Result<Self, StoreError> {
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(SQLITE_BUSY_TIMEOUT)
            .foreign_keys(true)
            .pragma("cache_size", format!("-{}", SQLITE_CACHE_KIB));
        // Each connection is a thread with its own page cache; SQLite writes one at a time
        // and a few readers keep the cores busy, while ten (sqlx's default) cost memory.
        let pool = SqlitePoolOptions::new()
            .max_connections(SQLITE_CONNECTIONS)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Backend::Sqlite(pool))
    }

    /// Connects to the PostgreSQL database `options` names and brings its schema up to
    /// date.
    ///
    /// A session left idle inside a transaction is ended by the server after 5 s: a
    /// replica cut off mid-transaction must not hold the lease row's lock (or any
    /// other) until TCP notices, which would keep every other replica from taking over.
    pub(super) async fn open_postgres(options: PgConnectOptions) -> Result<Self, StoreError> {
        let options = options.options([("idle_in_transaction_session_timeout", "5s")]);
        let pool = PgPoolOptions::new().connect_with(options).await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Backend::Postgres(pool))
    }

    /// Picks the backend from the URL scheme: `sqlite:` or `postgres:`/`postgresql:`.
    pub(super) async fn open_url(url: &str) -> Result<Self, StoreError> {
        let scheme = url.split(':').next().unwrap_or_default();
        match scheme {
            "sqlite" => Self::open_sqlite(SqliteConnectOptions::from_str(url)?).await,
            "postgres" | "postgresql" => {
                Self::open_postgres(PgConnectOptions::from_str(url)?).await
            }
            _ => Err(StoreError::Database(sqlx::Error::Configuration(
                format!(
                    "unsupported database URL scheme {scheme:?}: \
                     expected sqlite://PATH or postgres://USER@HOST/DATABASE"
                )
                .into(),
            ))),
        }
    }

    /// `sqlite` or `postgres`.
    pub(super) fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Runs one statement outside any explicit transaction and decodes every row.
    pub(super) async fn fetch<T: FromEitherRow>(
        &self,
        sql: impl SqlSafeStr,
        params: Vec<Param>,
    ) -> Result<Vec<T>, sqlx::Error> {
        // Rows are decoded as they arrive: collecting the driver's rows first would hold
        // every row twice (a list of 10,000 objects is tens of megabytes of row buffers).
        dispatch!(Backend, self, pool => {
            bind(sqlx::query(sql), params)
                .fetch(pool)
                .and_then(|row| std::future::ready(T::from_row(&row)))
                .try_collect()
                .await
        })
    }

    /// See [`Tx::wants_anonymous_placeholders`].
    pub(super) fn wants_anonymous_placeholders(&self) -> bool {
        matches!(self, Backend::Sqlite(_))
    }

    /// A listener on the PostgreSQL notification `channel` (a connection of its own,
    /// re-established by sqlx when it drops); `None` on SQLite, where one process is
    /// the only writer.
    pub(super) async fn listen(
        &self,
        channel: &str,
    ) -> Result<Option<sqlx::postgres::PgListener>, sqlx::Error> {
        match self {
            Backend::Sqlite(_) => Ok(None),
            Backend::Postgres(pool) => {
                let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
                listener.listen(channel).await?;
                Ok(Some(listener))
            }
        }
    }

    /// Begins a write transaction.
    pub(super) async fn begin(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Backend::Sqlite(pool) => Tx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
            Backend::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }

    /// Closes every pooled connection (on SQLite this also checkpoints the WAL).
    pub(super) async fn close(&self) {
        dispatch!(Backend, self, pool => pool.close().await)
    }
}

impl Tx {
    /// Runs one statement inside the transaction and decodes every row.
    pub(super) async fn fetch<T: FromEitherRow>(
        &mut self,
        sql: impl SqlSafeStr,
        params: Vec<Param>,
    ) -> Result<Vec<T>, sqlx::Error> {
        dispatch!(Tx, self, tx => {
            bind(sqlx::query(sql), params)
                .fetch(&mut **tx)
                .and_then(|row| std::future::ready(T::from_row(&row)))
                .try_collect()
                .await
        })
    }

    /// Whether generated statements should use anonymous `?` placeholders instead of
    /// `$N`. SQLite resolves each numbered placeholder with a linear scan of all of them,
    /// so binding a multi-row insert with thousands of `$N` costs O(n²); PostgreSQL only
    /// accepts `$N`.
    pub(super) fn wants_anonymous_placeholders(&self) -> bool {
        matches!(self, Tx::Sqlite(_))
    }

    /// Runs one statement inside the transaction, returning no rows.
    pub(super) async fn execute(
        &mut self,
        sql: impl SqlSafeStr,
        params: Vec<Param>,
    ) -> Result<(), sqlx::Error> {
        dispatch!(Tx, self, tx => {
            bind(sqlx::query(sql), params).execute(&mut **tx).await.map(drop)
        })
    }

    /// Whether this is a PostgreSQL transaction.
    pub(super) fn is_postgres(&self) -> bool {
        matches!(self, Tx::Postgres(_))
    }

    /// Commits the transaction.
    pub(super) async fn commit(self) -> Result<(), sqlx::Error> {
        dispatch!(Tx, self, tx => tx.commit().await)
    }
}

/// Binds `params` to `query` in order.
fn bind<DB>(
    mut query: Query<'_, DB, <DB as Database>::Arguments>,
    params: Vec<Param>,
) -> Query<'_, DB, <DB as Database>::Arguments>
where
    DB: Database,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> Option<i64>: Encode<'t, DB> + Type<DB>,
    for<'t> Option<String>: Encode<'t, DB> + Type<DB>,
    for<'t> Vec<u8>: Encode<'t, DB> + Type<DB>,
{
    for param in params {
        query = match param {
            Param::Int(value) => query.bind(value),
            Param::OptInt(value) => query.bind(value),
            Param::Text(value) => query.bind(value),
            Param::OptText(value) => query.bind(value),
            Param::Bytes(value) => query.bind(value),
        };
    }
    query
}
