//! Fast-Flow's database, read-only: the rows the import needs, read by column name so
//! that installations a few schema revisions old read too (a column a revision added is
//! `NULL` when absent, a table is empty when absent).
//!
//! This is the one place outside `store` that speaks SQL: it reads a foreign database
//! whose schema Fast-Flow owns (`app/models.py` and its Alembic migrations there).

use std::path::{Path, PathBuf};

use sqlx::postgres::PgConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection, Row};

use super::ImportError;

/// The file name Fast-Flow gives its SQLite database (`DATABASE_URL` default
/// `sqlite:///./data/fastflow.db`).
const DATABASE_FILE: &str = "fastflow.db";

/// Fast-Flow's database.
#[derive(Clone, Debug, PartialEq)]
pub enum Database {
    /// The SQLite file (Fast-Flow's default).
    Sqlite(PathBuf),
    /// A PostgreSQL URL (`DATABASE_URL=postgresql://…`).
    Postgres(String),
}

impl std::fmt::Display for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite(path) => write!(f, "{}", path.display()),
            // Without the password.
            Database::Postgres(url) => match (url.find("://"), url.rfind('@')) {
                (Some(scheme), Some(at)) if at > scheme => {
                    write!(f, "{}://***@{}", &url[..scheme], &url[at + 1..])
                }
                _ => f.write_str(url),
            },
        }
    }
}

/// Where a Fast-Flow installation keeps its database and logs.
#[derive(Clone, Debug, PartialEq)]
pub struct Location {
    /// The database.
    pub database: Database,
    /// `LOGS_DIR`: run logs and metrics, when found.
    pub logs: Option<PathBuf>,
}

/// Finds the database from what the user names: Fast-Flow's directory (holding
/// `data/fastflow.db`), its data dir (holding `fastflow.db`), the database file, or its
/// `DATABASE_URL` (`sqlite:///relative/path` or `sqlite:////absolute/path`). The logs
/// are `logs_dir` when given, else `logs/` beside the data dir or inside it.
pub fn locate(from: &str, logs_dir: Option<&Path>) -> Result<Location, ImportError> {
    let path = match from.split_once("://") {
        Some(("sqlite", rest)) => PathBuf::from(rest.strip_prefix('/').unwrap_or(rest)),
        Some((scheme, rest)) if scheme.starts_with("postgres") => {
            // SQLAlchemy's `postgresql+psycopg2://` names its driver; sqlx needs none.
            let logs = match logs_dir {
                Some(dir) if dir.is_dir() => Some(dir.to_owned()),
                Some(dir) => {
                    return Err(ImportError::Source(format!(
                        "--logs-dir {}: no such directory",
                        dir.display()
                    )));
                }
                None => None,
            };
            return Ok(Location {
                database: Database::Postgres(format!("postgresql://{rest}")),
                logs,
            });
        }
        Some((scheme, _)) => {
            return Err(ImportError::Source(format!(
                "--from {from:?}: {scheme}:// is not a Fast-Flow DATABASE_URL; give the directory of Fast-Flow, its data dir, fastflow.db or sqlite:///path/to/fastflow.db"
            )));
        }
        None => PathBuf::from(from),
    };
    let database = if path.is_dir() {
        [path.join(DATABASE_FILE), path.join("data").join(DATABASE_FILE)]
            .into_iter()
            .find(|candidate| candidate.is_file())
            .ok_or_else(|| {
                ImportError::Source(format!(
                    "--from {}: neither {DATABASE_FILE} nor data/{DATABASE_FILE} is there; give Fast-Flow's directory, its data dir or the database file",
                    path.display()
                ))
            })?
    } else if path.is_file() {
        path
    } else {
        return Err(ImportError::Source(format!(
            "--from {}: no such file or directory",
            path.display()
        )));
    };
    let logs = match logs_dir {
        Some(dir) if dir.is_dir() => Some(dir.to_owned()),
        Some(dir) => {
            return Err(ImportError::Source(format!(
                "--logs-dir {}: no such directory",
                dir.display()
            )));
        }
        None => {
            let data_dir = database.parent().unwrap_or(Path::new("."));
            [
                data_dir.parent().map(|root| root.join("logs")),
                Some(data_dir.join("logs")),
            ]
            .into_iter()
            .flatten()
            .find(|dir| dir.is_dir())
        }
    };
    Ok(Location {
        database: Database::Sqlite(database),
        logs,
    })
}

/// A `secrets` row: a Fernet token, or a plain value when `is_parameter`.
#[derive(Clone, Debug, PartialEq)]
pub struct SecretRow {
    pub key: String,
    pub value: String,
    pub is_parameter: bool,
}

/// A `pipeline_runs` row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunRow {
    pub id: String,
    pub pipeline: String,
    pub status: String,
    pub log_file: Option<String>,
    pub metrics_file: Option<String>,
    /// JSON object text.
    pub parameters: Option<String>,
    pub uv_version: Option<String>,
    pub setup_duration: Option<f64>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub exit_code: Option<i64>,
    pub triggered_by: Option<String>,
    pub run_config_id: Option<String>,
    pub git_sha: Option<String>,
    pub git_branch: Option<String>,
    pub git_commit_message: Option<String>,
}

/// A `scheduled_jobs` row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobRow {
    pub id: String,
    pub pipeline: String,
    pub trigger_type: String,
    pub trigger_value: String,
    pub enabled: bool,
    pub start: Option<String>,
    pub end: Option<String>,
    /// `api` (made in the UI), `pipeline_json` or `daemon_restart`.
    pub source: String,
    pub run_config_id: Option<String>,
}

/// A `downstream_triggers` row (made in the UI).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TriggerRow {
    pub upstream: String,
    pub downstream: String,
    pub on_success: bool,
    pub on_failure: bool,
    pub on_route: Option<String>,
    pub enabled: bool,
}

/// What the import reads of a Fast-Flow database.
#[derive(Clone, Debug, Default)]
pub struct Installation {
    /// Alembic's revision (`alembic_version`), when stamped.
    pub schema: Option<String>,
    pub secrets: Vec<SecretRow>,
    pub runs: Vec<RunRow>,
    pub jobs: Vec<JobRow>,
    pub triggers: Vec<TriggerRow>,
    /// Settings saved in the UI (`orchestrator_settings`), only those set, as text.
    pub settings: Vec<(String, String)>,
    /// Rows of `users`.
    pub users: i64,
}

/// Settings of `orchestrator_settings` the report speaks of (the rest are credentials
/// and S3/SMTP details that only matter with those features).
const SETTINGS: &[&str] = &[
    "log_retention_runs",
    "log_retention_days",
    "log_max_size_mb",
    "max_concurrent_runs",
    "container_timeout",
    "retry_attempts",
    "auto_sync_enabled",
    "auto_sync_interval",
    "git_sync_repo_url",
    "git_sync_branch",
    "pipelines_subdir",
    "email_enabled",
    "teams_enabled",
    "s3_backup_enabled",
];

/// Reads `database` without writing to it (SQLite is opened read-only; PostgreSQL is
/// only queried).
pub async fn read(database: &Database) -> Result<Installation, ImportError> {
    let name = database.to_string();
    let cannot_open = |e: sqlx::Error| ImportError::Source(format!("{name}: cannot open: {e}"));
    let connection = match database {
        Database::Sqlite(path) => {
            let options = SqliteConnectOptions::new()
                .filename(path)
                .read_only(true)
                .create_if_missing(false);
            Conn::Sqlite(
                SqliteConnection::connect_with(&options)
                    .await
                    .map_err(cannot_open)?,
            )
        }
        Database::Postgres(url) => {
            Conn::Postgres(PgConnection::connect(url).await.map_err(cannot_open)?)
        }
    };
    let mut reader = Reader {
        db: connection,
        name: &name,
    };
    let installation = read_tables(&mut reader).await;
    reader.db.close().await;
    installation
}

async fn read_tables(reader: &mut Reader<'_>) -> Result<Installation, ImportError> {
    if reader.columns("pipeline_runs").await?.is_empty() {
        return Err(ImportError::Source(format!(
            "{}: has no pipeline_runs table; is it Fast-Flow's database?",
            reader.name
        )));
    }
    let schema = reader
        .rows("alembic_version", &["version_num"])
        .await?
        .into_iter()
        .next()
        .and_then(|row| text(&row, "version_num"));
    let secrets = reader
        .rows("secrets", &["key", "value", "is_parameter"])
        .await?
        .iter()
        .map(|row| SecretRow {
            key: text(row, "key").unwrap_or_default(),
            value: text(row, "value").unwrap_or_default(),
            is_parameter: flag(row, "is_parameter"),
        })
        .collect();
    let runs = reader
        .rows(
            "pipeline_runs",
            &[
                "id",
                "pipeline_name",
                "status",
                "log_file",
                "metrics_file",
                "parameters",
                "uv_version",
                "setup_duration",
                "started_at",
                "finished_at",
                "exit_code",
                "triggered_by",
                "run_config_id",
                "git_sha",
                "git_branch",
                "git_commit_message",
            ],
        )
        .await?
        .iter()
        .map(|row| RunRow {
            id: text(row, "id").unwrap_or_default(),
            pipeline: text(row, "pipeline_name").unwrap_or_default(),
            status: text(row, "status").unwrap_or_default(),
            log_file: text(row, "log_file"),
            metrics_file: text(row, "metrics_file"),
            parameters: text(row, "parameters"),
            uv_version: text(row, "uv_version"),
            setup_duration: text(row, "setup_duration").and_then(|t| t.parse().ok()),
            started_at: text(row, "started_at"),
            finished_at: text(row, "finished_at"),
            exit_code: text(row, "exit_code").and_then(|t| t.parse().ok()),
            triggered_by: text(row, "triggered_by"),
            run_config_id: text(row, "run_config_id"),
            git_sha: text(row, "git_sha"),
            git_branch: text(row, "git_branch"),
            git_commit_message: text(row, "git_commit_message"),
        })
        .collect();
    let jobs = reader
        .rows(
            "scheduled_jobs",
            &[
                "id",
                "pipeline_name",
                "trigger_type",
                "trigger_value",
                "enabled",
                "start_date",
                "end_date",
                "source",
                "run_config_id",
            ],
        )
        .await?
        .iter()
        .map(|row| JobRow {
            id: text(row, "id").unwrap_or_default(),
            pipeline: text(row, "pipeline_name").unwrap_or_default(),
            trigger_type: text(row, "trigger_type").unwrap_or_default(),
            trigger_value: text(row, "trigger_value").unwrap_or_default(),
            enabled: flag(row, "enabled"),
            start: text(row, "start_date"),
            end: text(row, "end_date"),
            // Rows from before the column were made through the API.
            source: text(row, "source").unwrap_or_else(|| "api".to_owned()),
            run_config_id: text(row, "run_config_id"),
        })
        .collect();
    let triggers = reader
        .rows(
            "downstream_triggers",
            &[
                "upstream_pipeline",
                "downstream_pipeline",
                "on_success",
                "on_failure",
                "on_route",
                "enabled",
            ],
        )
        .await?
        .iter()
        .map(|row| TriggerRow {
            upstream: text(row, "upstream_pipeline").unwrap_or_default(),
            downstream: text(row, "downstream_pipeline").unwrap_or_default(),
            on_success: flag(row, "on_success"),
            on_failure: flag(row, "on_failure"),
            on_route: text(row, "on_route"),
            enabled: flag(row, "enabled"),
        })
        .collect();
    let settings = match reader
        .rows("orchestrator_settings", SETTINGS)
        .await?
        .into_iter()
        .next()
    {
        Some(row) => SETTINGS
            .iter()
            .filter_map(|name| text(&row, name).map(|value| ((*name).to_owned(), value)))
            .collect(),
        None => Vec::new(),
    };
    let users = reader.rows("users", &["id"]).await?.len() as i64;
    Ok(Installation {
        schema,
        secrets,
        runs,
        jobs,
        triggers,
        settings,
        users,
    })
}

/// A row as column name → text (`None` for SQL NULL).
type TextRow = Vec<(String, Option<String>)>;

fn text(row: &TextRow, column: &str) -> Option<String> {
    row.iter()
        .find(|(name, _)| name == column)
        .and_then(|(_, value)| value.clone())
}

/// SQLite keeps booleans as 0/1.
fn flag(row: &TextRow, column: &str) -> bool {
    text(row, column).is_some_and(|v| v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// One connection to either kind of database Fast-Flow supports.
enum Conn {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

impl Conn {
    async fn close(self) {
        let _ = match self {
            Conn::Sqlite(db) => db.close().await,
            Conn::Postgres(db) => db.close().await,
        };
    }
}

/// Rows as text: one `Option<String>` per selected column.
type TextRows = Vec<Vec<Option<String>>>;

struct Reader<'a> {
    db: Conn,
    name: &'a str,
}

impl Reader<'_> {
    fn failed(&self, table: &str, e: sqlx::Error) -> ImportError {
        ImportError::Source(format!("{}: cannot read {table}: {e}", self.name))
    }

    /// Runs `sql` (one bind, `table`, when `bind`) and answers every row's columns as
    /// text.
    async fn query(
        &mut self,
        table: &str,
        sql: String,
        bind: bool,
        width: usize,
    ) -> Result<TextRows, ImportError> {
        fn texts<R: Row>(rows: &[R], width: usize) -> Result<TextRows, sqlx::Error>
        where
            for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            usize: sqlx::ColumnIndex<R>,
        {
            rows.iter()
                .map(|row| {
                    (0..width)
                        .map(|i| row.try_get::<Option<String>, _>(i))
                        .collect()
                })
                .collect()
        }
        let result = match &mut self.db {
            Conn::Sqlite(db) => {
                let query = sqlx::query(sqlx::AssertSqlSafe(sql));
                let query = if bind {
                    query.bind(table.to_owned())
                } else {
                    query
                };
                query
                    .fetch_all(&mut *db)
                    .await
                    .and_then(|rows| texts(&rows, width))
            }
            Conn::Postgres(db) => {
                let query = sqlx::query(sqlx::AssertSqlSafe(sql));
                let query = if bind {
                    query.bind(table.to_owned())
                } else {
                    query
                };
                query
                    .fetch_all(&mut *db)
                    .await
                    .and_then(|rows| texts(&rows, width))
            }
        };
        result.map_err(|e| self.failed(table, e))
    }

    /// The columns `table` has; none when it does not exist.
    async fn columns(&mut self, table: &str) -> Result<Vec<String>, ImportError> {
        let sql = match self.db {
            Conn::Sqlite(_) => "SELECT name FROM pragma_table_info($1)",
            Conn::Postgres(_) => {
                "SELECT CAST(column_name AS TEXT) FROM information_schema.columns \
                 WHERE table_name = $1 AND table_schema = current_schema()"
            }
        };
        Ok(self
            .query(table, sql.to_owned(), true, 1)
            .await?
            .into_iter()
            .filter_map(|mut row| row.pop().flatten())
            .collect())
    }

    /// Every row of `table` with the `wanted` columns as text; a column the table lacks
    /// reads as NULL, a missing table as no rows.
    async fn rows(&mut self, table: &str, wanted: &[&str]) -> Result<Vec<TextRow>, ImportError> {
        let present = self.columns(table).await?;
        if present.is_empty() {
            return Ok(Vec::new());
        }
        let select: Vec<String> = wanted
            .iter()
            .map(|column| {
                if present.iter().any(|p| p == column) {
                    format!("CAST(\"{column}\" AS TEXT)")
                } else {
                    "CAST(NULL AS TEXT)".to_owned()
                }
            })
            .collect();
        // Table and column names are this module's constants, never input.
        let sql = format!("SELECT {} FROM \"{table}\"", select.join(", "));
        let rows = self.query(table, sql, false, wanted.len()).await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                wanted
                    .iter()
                    .map(|column| (*column).to_owned())
                    .zip(row)
                    .collect()
            })
            .collect())
    }
}
