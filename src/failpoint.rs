//! Pause points for tests of crash and partition windows.
//!
//! The integration tests of several replicas must kill, stop or cut off a leader at an
//! exact step (after it claimed an attempt, before it creates the container, after it
//! created it, after it created a slot's runs). A wall-clock guess would make them
//! flaky; instead the operator pauses there when told to:
//!
//! - `FLOTILLA_TEST_PAUSE_AT` names the points (comma-separated), and
//! - `FLOTILLA_TEST_PAUSE_DIR` a directory where, at a point, the operator creates
//!   `<point>.reached` and then waits until `<point>.go` exists.
//!
//! The test then does the real thing to the process (kill -9, SIGSTOP, cutting its
//! database connection) and, if it lets it go on, creates `<point>.go`. Unset (always,
//! outside tests), a point costs one lookup in an empty list.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

/// After a run's attempt is claimed in the store, before anything else.
pub const AFTER_CLAIM: &str = "after-claim";
/// Right before the container of a claimed attempt is created.
pub const BEFORE_CREATE: &str = "before-create";
/// After the container was created, before it is started.
pub const AFTER_CREATE: &str = "after-create";
/// Before the write that ends a run whose end starts downstream runs.
pub const BEFORE_FINISH: &str = "before-finish";
/// After that write (the run ended and its downstream runs exist), before its events.
pub const AFTER_FINISH: &str = "after-finish";
/// After a slot's runs were created, before the schedules' statuses are written.
pub const AFTER_SLOT_RUNS: &str = "after-slot-runs";

struct Points {
    names: Vec<String>,
    dir: PathBuf,
}

fn points() -> &'static Option<Points> {
    static POINTS: OnceLock<Option<Points>> = OnceLock::new();
    POINTS.get_or_init(|| {
        let names = std::env::var("FLOTILLA_TEST_PAUSE_AT").ok()?;
        let dir = std::env::var_os("FLOTILLA_TEST_PAUSE_DIR")?;
        Some(Points {
            names: names.split(',').map(|n| n.trim().to_owned()).collect(),
            dir: PathBuf::from(dir),
        })
    })
}

/// Pauses at `point` when a test asked for it (see the module documentation).
pub async fn pause(point: &str) {
    let Some(points) = points() else {
        return;
    };
    if !points.names.iter().any(|n| n == point) {
        return;
    }
    let reached = points.dir.join(format!("{point}.reached"));
    let go = points.dir.join(format!("{point}.go"));
    if let Err(e) = std::fs::write(&reached, std::process::id().to_string()) {
        tracing::error!("cannot mark pause point {point}: {e}");
        return;
    }
    tracing::warn!(point, "paused for a test until {} exists", go.display());
    while !go.exists() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::warn!(point, "released");
}
