//! A throwaway PostgreSQL server for one test.
//!
//! [`PgServer::start`] runs `initdb` into a fresh temp dir (trust auth, superuser
//! `postgres`) and starts the server on a free loopback port with its socket inside that
//! dir; [`PgServer::create_database`] makes a uniquely named database; dropping the server
//! stops it and removes everything. [`PgServer::shared`] is one server per test process
//! (under nextest: per test), started by its first user and stopped when the last one
//! lets go; [`PgDatabase`] is a database of one fixture on it, dropped with the fixture.
//! PostgreSQL refuses to run as root, so under root the server processes run as `nobody`
//! (via `runuser`, else `setpriv`). Missing binaries make the test fail, never pass
//! silently.

// Test crates that include all of `support` without starting PostgreSQL leave it unused.
#![allow(dead_code)]

use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, chown};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};
use tempfile::TempDir;

/// Attempts at finding a free port before giving up (another process may take the port
/// between probing and binding).
const START_ATTEMPTS: usize = 5;

/// A running PostgreSQL server, stopped and deleted on drop.
pub struct PgServer {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    run_as: Option<RunAs>,
    // Dropped last: removes the data directory after the server stopped.
    _dir: TempDir,
}

/// The unprivileged account the server runs under when the tests run as root.
#[derive(Clone)]
struct RunAs {
    user: String,
    uid: u32,
    gid: u32,
    wrapper: Wrapper,
}

#[derive(Clone, Copy)]
enum Wrapper {
    Runuser,
    Setpriv,
}

impl PgServer {
    /// Initialises and starts a server; panics with the reason (and the server log) if it
    /// cannot.
    pub fn start() -> Self {
        let bin = find_bin_dir();
        let run_as = if running_as_root() {
            Some(unprivileged_user())
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("flotilla-pg-")
            .tempdir()
            .expect("create a temp dir for PostgreSQL");
        if let Some(user) = &run_as {
            chown(dir.path(), Some(user.uid), Some(user.gid))
                .expect("hand the PostgreSQL temp dir to the unprivileged user");
        }
        let data = dir.path().join("data");
        let mut server = PgServer {
            bin,
            data,
            port: 0,
            run_as,
            _dir: dir,
        };
        server.initdb();
        for attempt in 1..=START_ATTEMPTS {
            server.port = free_port();
            match server.pg_ctl_start() {
                Ok(()) => return server,
                Err(log) if attempt < START_ATTEMPTS && log.contains("could not bind") => {}
                Err(log) => panic!("PostgreSQL did not start:\n{log}"),
            }
        }
        unreachable!("the last attempt either returns or panics")
    }

    /// The server of this test process, started now unless a live user shares it
    /// already; it stops when the last `Arc` is dropped, so nothing outlives the tests
    /// (a `static` holding it would never be dropped).
    pub fn shared() -> Arc<PgServer> {
        static SHARED: Mutex<Weak<PgServer>> = Mutex::new(Weak::new());
        let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(server) = shared.upgrade() {
            return server;
        }
        let server = Arc::new(PgServer::start());
        *shared = Arc::downgrade(&server);
        server
    }

    /// Creates a fresh, uniquely named database and returns its URL.
    pub async fn create_database(&self) -> String {
        let name = unique_database_name();
        admin_execute(self.url("postgres"), format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("create the test database {name}: {e}"));
        self.url(&name)
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    fn initdb(&self) {
        let output = self
            .command("initdb")
            .arg("--pgdata")
            .arg(&self.data)
            .args(["--username=postgres", "--auth=trust", "--encoding=UTF8"])
            .args(["--locale=C", "--no-sync", "--no-instructions"])
            .output()
            .expect("run initdb");
        if !output.status.success() {
            panic!("initdb failed:\n{}", describe(&output));
        }
    }

    /// Starts the server and waits until it accepts connections; on failure returns the
    /// server log.
    fn pg_ctl_start(&self) -> Result<(), String> {
        let socket_dir = self.data.parent().unwrap_or(&self.data);
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off",
            self.port,
            socket_dir.display()
        );
        let log = socket_dir.join("server.log");
        let output = self
            .command("pg_ctl")
            .arg("--pgdata")
            .arg(&self.data)
            .arg("--log")
            .arg(&log)
            .args(["--wait", "--timeout=30", "--options", &options, "start"])
            .output()
            .expect("run pg_ctl start");
        if output.status.success() {
            return Ok(());
        }
        let server_log = std::fs::read_to_string(&log).unwrap_or_default();
        Err(format!(
            "{}\n--- server log ---\n{server_log}",
            describe(&output)
        ))
    }

    /// A command for one of the server binaries, run as the unprivileged user if needed.
    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        match &self.run_as {
            None => Command::new(program),
            Some(RunAs {
                user,
                wrapper: Wrapper::Runuser,
                ..
            }) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(program);
                command
            }
            Some(RunAs {
                uid,
                gid,
                wrapper: Wrapper::Setpriv,
                ..
            }) => {
                let mut command = Command::new("setpriv");
                command
                    .arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg("--clear-groups")
                    .arg(program);
                command
            }
        }
    }
}

/// A database of its own on the [shared](PgServer::shared) server, for callers that
/// cannot await (fixture set-up and drop); dropped, with any session still on it, when
/// this value is.
pub struct PgDatabase {
    name: String,
    server: Arc<PgServer>,
}

impl PgDatabase {
    /// Creates a uniquely named database on the shared server.
    pub fn create() -> Self {
        let server = PgServer::shared();
        let name = unique_database_name();
        let sql = format!("CREATE DATABASE {name}");
        block_on_own_runtime(admin_execute(server.url("postgres"), sql))
            .unwrap_or_else(|e| panic!("create the test database {name}: {e}"));
        Self { name, server }
    }

    /// `postgres://…/<name>`.
    pub fn url(&self) -> String {
        self.server.url(&self.name)
    }

    /// Runs `sql` on this database (a blocking call); returns the first column of its
    /// rows as text.
    pub fn query_text(&self, sql: &str) -> Vec<String> {
        let (url, sql) = (self.url(), sql.to_owned());
        block_on_own_runtime(async move {
            let mut connection = PgConnection::connect(&url).await?;
            let rows: Vec<String> = sqlx::query_scalar(AssertSqlSafe(sql))
                .fetch_all(&mut connection)
                .await?;
            connection.close().await?;
            Ok(rows)
        })
        .unwrap_or_else(|e| panic!("query the test database {}: {e}", self.name))
    }
}

impl Drop for PgDatabase {
    /// Drops the database without panicking (the test may be failing already); the
    /// server goes when its last user does.
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(e) = block_on_own_runtime(admin_execute(self.server.url("postgres"), sql)) {
            eprintln!("could not drop the test database {}: {e}", self.name);
        }
    }
}

fn unique_database_name() -> String {
    format!("flotilla_test_{}", uuid::Uuid::new_v4().simple())
}

/// Runs one statement as the superuser on the `postgres` database.
async fn admin_execute(admin_url: String, sql: String) -> Result<(), sqlx::Error> {
    let mut admin = PgConnection::connect(&admin_url).await?;
    admin.execute(AssertSqlSafe(sql)).await?;
    admin.close().await
}

/// Runs `work` to completion on a runtime of its own in a thread of its own, so it can
/// be called from synchronous code inside a test's runtime (where `block_on` panics).
fn block_on_own_runtime<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T, sqlx::Error>> + Send + 'static,
) -> Result<T, String> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot build a runtime: {e}"))?;
        runtime.block_on(work).map_err(|e| e.to_string())
    })
    .join()
    .unwrap_or_else(|_| Err("the database thread panicked".to_owned()))
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let stopped = self
            .command("pg_ctl")
            .arg("--pgdata")
            .arg(&self.data)
            .args(["--mode=immediate", "--wait", "stop"])
            .output()
            .is_ok_and(|output| output.status.success());
        if !stopped {
            // Last resort, so no server outlives its data directory.
            let pid = std::fs::read_to_string(self.data.join("postmaster.pid"))
                .ok()
                .and_then(|text| text.lines().next().map(str::to_owned));
            if let Some(pid) = pid {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
            }
        }
    }
}

/// The directory holding `initdb`, `pg_ctl` and `postgres`: on `PATH` (symlinks resolved),
/// else the newest `/usr/lib/postgresql/*/bin`.
fn find_bin_dir() -> PathBuf {
    let has_all = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|program| dir.join(program).is_file())
    };
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|dir| std::fs::canonicalize(dir.join("initdb")).ok())
        .filter_map(|initdb| initdb.parent().map(Path::to_path_buf))
        .find(|dir| has_all(dir));
    if let Some(dir) = on_path {
        return dir;
    }
    let mut installed: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|entry| {
                    let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
                    Some((version, entry.path().join("bin")))
                })
                .filter(|(_, dir)| has_all(dir))
                .collect()
        })
        .unwrap_or_default();
    installed.sort();
    match installed.pop() {
        Some((_, dir)) => dir,
        None => panic!(
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found on PATH \
             or under /usr/lib/postgresql/*/bin; the PostgreSQL store tests need them: \
             install them with `apt-get install postgresql`"
        ),
    }
}

fn running_as_root() -> bool {
    // /proc/self belongs to the effective user of this process.
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

/// `nobody` with its ids from /etc/passwd, and a tool that can switch to it.
fn unprivileged_user() -> RunAs {
    let user = "nobody";
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let (uid, gid) = passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&user))
        .and_then(|fields| Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?)))
        .unwrap_or((65534, 65534));
    let works = |program: &str| {
        Command::new(program)
            .arg("--version")
            .output()
            .is_ok_and(|output| output.status.success())
    };
    let wrapper = if works("runuser") {
        Wrapper::Runuser
    } else if works("setpriv") {
        Wrapper::Setpriv
    } else {
        panic!(
            "running as root, and PostgreSQL refuses to: neither `runuser` nor `setpriv` \
             (util-linux) is available to run it as {user}"
        )
    };
    RunAs {
        user: user.to_owned(),
        uid,
        gid,
        wrapper,
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("find a free loopback port")
}

fn describe(output: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
