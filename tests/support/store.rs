//! The store behind the operators of [`super::docker`] fixtures, chosen for the whole
//! test process by `FLOTILLA_TEST_STORE`:
//!
//! - `sqlite` (or unset): `flotilla serve`'s default, `flotilla.db` in the fixture's data
//!   dir;
//! - `postgres`: a database of the fixture's own on this process's PostgreSQL server
//!   ([`PgServer::shared`](super::postgres::PgServer::shared)), made when the fixture
//!   first needs it and dropped with the fixture; operators get `--database <url>`.
//!
//! Tests that look into the store go through [`TestStore::url`] (for
//! `flotilla::store::Store::connect`) or [`TestStore::query_text`], never through the
//! SQLite file, so the same test body runs on both.

// Each test crate that includes `support` uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::postgres::PgDatabase;

/// The environment variable that picks the store of fixture operators.
pub const STORE_VARIABLE: &str = "FLOTILLA_TEST_STORE";

/// `--lease-ttl` of operators on a fixture's PostgreSQL store: `flotilla serve`'s
/// default, given explicitly because the tests depend on it (see
/// [`TestStore::finished_container_kept_for`]).
const LEASE_TTL: Duration = Duration::from_secs(15);

/// Which database fixture operators use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// SQLite in the data dir.
    Sqlite,
    /// A fresh database on a private PostgreSQL server.
    Postgres,
}

impl StoreKind {
    /// Reads [`STORE_VARIABLE`]; panics on a value it does not know, so a typo never runs
    /// the tests on SQLite while claiming PostgreSQL.
    pub fn from_env() -> Self {
        match std::env::var(STORE_VARIABLE) {
            Err(std::env::VarError::NotPresent) => Self::Sqlite,
            Ok(value) => match value.as_str() {
                "" | "sqlite" => Self::Sqlite,
                "postgres" => Self::Postgres,
                other => panic!("{STORE_VARIABLE}={other:?}: expected `sqlite` or `postgres`"),
            },
            Err(e) => panic!("{STORE_VARIABLE} is not readable: {e}"),
        }
    }
}

/// The store of one fixture.
pub enum TestStore {
    /// `flotilla.db` in the data dir, where `flotilla serve` puts it by default.
    Sqlite(PathBuf),
    /// The fixture's own PostgreSQL database.
    Postgres(PgDatabase),
}

impl TestStore {
    /// Makes the store of `kind` for a fixture with data dir `data_dir` (creating the
    /// PostgreSQL database; SQLite is created by whoever opens it first).
    pub fn new(kind: StoreKind, data_dir: &Path) -> Self {
        match kind {
            StoreKind::Sqlite => Self::Sqlite(data_dir.join("flotilla.db")),
            StoreKind::Postgres => Self::Postgres(PgDatabase::create()),
        }
    }

    /// The URL `flotilla::store::Store::connect` opens.
    pub fn url(&self) -> String {
        match self {
            Self::Sqlite(file) => format!("sqlite://{}", file.display()),
            Self::Postgres(database) => database.url(),
        }
    }

    /// Arguments of `flotilla serve` that point it at this store (none for SQLite: the
    /// data dir's file is the default, and the default is what runs in production).
    pub fn serve_args(&self) -> Vec<String> {
        match self {
            Self::Sqlite(_) => Vec::new(),
            Self::Postgres(database) => vec![
                "--database".to_owned(),
                database.url(),
                "--lease-ttl".to_owned(),
                format!("{}s", LEASE_TTL.as_secs()),
            ],
        }
    }

    /// How long the operator keeps a finished attempt's container before it removes it:
    /// nothing on SQLite; on PostgreSQL the container stays as a tombstone of its name
    /// for twice the lease ttl, so that a deposed leader cannot create it again (the
    /// README's replicas section). Waits for containers to go add this.
    pub fn finished_container_kept_for(&self) -> Duration {
        match self {
            Self::Sqlite(_) => Duration::ZERO,
            Self::Postgres(_) => LEASE_TTL * 2,
        }
    }

    /// Runs `sql` against the store; returns the first column of its rows as text.
    pub async fn query_text(&self, sql: &str) -> Vec<String> {
        match self {
            Self::Sqlite(_) => {
                let pool = sqlx::SqlitePool::connect(&self.url())
                    .await
                    .unwrap_or_else(|e| panic!("open {}: {e}", self.url()));
                let rows = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
                    .fetch_all(&pool)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                pool.close().await;
                rows
            }
            Self::Postgres(database) => database.query_text(sql),
        }
    }

    /// Called after the test killed (-9) the operator on this store: on PostgreSQL, ends
    /// the sessions it left and lets its controller lease lapse at once, so that the
    /// operator the test starts next leads immediately, as the next one on SQLite does.
    /// Otherwise the restart would wait out the lease ttl (15 s), which is what
    /// `tests/postgres_leader.rs` tests; the restart tests are about runs and slots.
    ///
    /// Only one operator at a time runs on a fixture's own store (SQLite allows no
    /// other), so every other session and every lease holder is the killed process.
    /// Ending its sessions first makes sure no renewal it sent is still in flight.
    pub fn release_killed_operator(&self) {
        let Self::Postgres(database) = self else {
            return;
        };
        // A backend may exit on its own between the listing and the signal, so what
        // counts is that none is left afterwards.
        let others = "FROM pg_stat_activity WHERE datname = current_database() \
                      AND pid <> pg_backend_pid() AND backend_type = 'client backend'";
        database.query_text(&format!("SELECT pg_terminate_backend(pid)::text {others}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = database.query_text(&format!("SELECT pid::text {others}"));
            if left.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the killed operator's sessions {left:?} did not end within 10 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        database.query_text("UPDATE leases SET renewed_at = 0 RETURNING holder");
    }
}
