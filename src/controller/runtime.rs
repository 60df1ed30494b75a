//! What the run controller needs from a container runtime, in its own terms. The
//! bollard adapter in [`crate::docker`] implements [`ContainerRuntime`]; nothing here
//! knows about Docker's wire types.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::stream::BoxStream;

/// Labels Flotilla puts on every container it creates.
pub mod labels {
    /// uid of the Run the container belongs to.
    pub const RUN: &str = "flotilla.dev/run";
    /// `namespace/name` of the Run, for humans.
    pub const RUN_NAME: &str = "flotilla.dev/run-name";
    /// Pipeline name.
    pub const PIPELINE: &str = "flotilla.dev/pipeline";
    /// 1-based attempt number.
    pub const ATTEMPT: &str = "flotilla.dev/attempt";
    /// Operator instance that created the container (`--instance`): for humans and
    /// `docker ps --filter`, never for deciding what an operator may touch.
    pub const MANAGED_BY: &str = "flotilla.dev/managed-by";
    /// Identity of the store whose run the container belongs to
    /// ([`crate::store::Store::identity`]): garbage collection, adoption and event
    /// watches only ever consider containers carrying their own store's identity.
    pub const STORE: &str = "flotilla.dev/store";
    /// Revision (git commit) of the code the container runs.
    pub const SOURCE_REVISION: &str = "flotilla.dev/source-revision";
    /// Lease epoch of the leader that created the container (several replicas on one
    /// PostgreSQL store; absent with SQLite).
    pub const EPOCH: &str = "flotilla.dev/epoch";
}

/// Everything needed to create one attempt's container.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerSpec {
    /// Container name, `flotilla-<run uid>-<attempt>`.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Command and arguments.
    pub command: Vec<String>,
    /// Environment.
    pub env: BTreeMap<String, String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Working directory inside the container.
    pub working_dir: String,
    /// Bind mounts.
    pub mounts: Vec<Mount>,
    /// tmpfs mounts: path → options (e.g. `rw,size=64m`).
    pub tmpfs: BTreeMap<String, String>,
    /// Memory limit in bytes (swap is set to the same value: no swap).
    pub memory_bytes: Option<i64>,
    /// CPU limit in nano-CPUs.
    pub nano_cpus: Option<i64>,
    /// Process limit.
    pub pids_limit: Option<i64>,
    /// `uid:gid` the process runs as.
    pub user: String,
    /// Largest container log Docker keeps (json-file, one file), e.g. `1g`: Docker's
    /// rotation would otherwise drop output before Flotilla has stored it.
    pub log_max_size: String,
}

/// A bind mount from the Docker host into the container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// Path on the Docker host.
    pub source: String,
    /// Path in the container.
    pub target: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// Observed state of one container.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerState {
    /// Container name (without Docker's leading `/`).
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Lifecycle.
    pub status: ContainerStatus,
    /// When the process started.
    pub started_at: Option<DateTime<Utc>>,
    /// When the process ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// Exit code, once exited.
    pub exit_code: Option<i64>,
    /// Killed by the kernel for exceeding its memory limit.
    pub oom_killed: bool,
    /// Runtime error message (e.g. the command was not found).
    pub error: Option<String>,
}

/// Coarse container lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerStatus {
    /// Created, never started.
    Created,
    /// Running (or paused/restarting).
    Running,
    /// The process has ended.
    Exited,
}

/// One chunk of container output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogChunk {
    /// `stdout` or `stderr`.
    pub stream: LogStream,
    /// Raw bytes, with the log's timestamp prefix when read from the log.
    pub bytes: bytes::Bytes,
}

/// Output of a container as it comes ([`ContainerRuntime::attach`]).
pub type OutputStream = BoxStream<'static, Result<LogChunk, RuntimeError>>;

/// Output stream of a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LogStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl LogStream {
    /// `stdout` or `stderr`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

/// One CPU/memory sample.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ResourceSample {
    /// When it was taken.
    pub at: DateTime<Utc>,
    /// CPU use in percent of one core.
    pub cpu_percent: f64,
    /// Memory in use, in bytes.
    pub memory_bytes: u64,
}

/// Result of a create.
#[derive(Clone, Debug, PartialEq)]
pub enum Created {
    /// A new container was created.
    New,
    /// A container of that name already exists (ours, or somebody else's: check labels).
    Existing(ContainerState),
}

/// Container runtime errors, each with a stable code.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The runtime (or its proxy) cannot be reached.
    #[error("container runtime unavailable: {0}")]
    Unavailable(String),
    /// The image does not exist locally and could not be pulled.
    #[error("image {image} not found: {message}")]
    ImageNotFound {
        /// The image reference.
        image: String,
        /// Runtime message.
        message: String,
    },
    /// The runtime refused the request (e.g. the socket proxy forbids it).
    #[error("container runtime refused {operation} on {target}: {message}")]
    Refused {
        /// Operation, e.g. `create`.
        operation: &'static str,
        /// Container name.
        target: String,
        /// Runtime message.
        message: String,
    },
}

impl RuntimeError {
    /// Stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            RuntimeError::Unavailable(_) => "container.runtime.unavailable",
            RuntimeError::ImageNotFound { .. } => "container.image.not_found",
            RuntimeError::Refused { .. } => "container.runtime.refused",
        }
    }
}

/// The operations the run controller performs on containers.
pub trait ContainerRuntime: Send + Sync + 'static {
    /// Name of the host, recorded on attempts.
    fn host(&self) -> &str;
    /// Answers when the runtime is reachable.
    fn ping(&self) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// All containers (running or not) carrying `label=value`.
    fn list(
        &self,
        label: &str,
        value: &str,
    ) -> impl Future<Output = Result<Vec<ContainerState>, RuntimeError>> + Send;
    /// One container by name, if it exists.
    fn inspect(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<ContainerState>, RuntimeError>> + Send;
    /// Waits up to `within` for the runtime to report the end of a container (a log
    /// stream can end a moment before the event arrives); returns at once when it
    /// cannot tell (no event stream).
    fn await_exit(&self, name: &str, within: Duration) -> impl Future<Output = ()> + Send;
    /// Creates a container (not started).
    fn create(
        &self,
        spec: &ContainerSpec,
    ) -> impl Future<Output = Result<Created, RuntimeError>> + Send;
    /// Starts a created container: true when this call started it, false when it was
    /// already running (not an error).
    fn start(&self, name: &str) -> impl Future<Output = Result<bool, RuntimeError>> + Send;
    /// SIGTERM, then SIGKILL after `grace`. Stopping a stopped container is not an error.
    fn stop(
        &self,
        name: &str,
        grace: Duration,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// Removes a container; removing a missing one is not an error.
    fn remove(&self, name: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// The container's whole stored output from its start, one chunk per entry of the
    /// runtime's log, each with an RFC 3339 timestamp and a space before the text
    /// (an entry is a line, or a piece of a long one), following while the container
    /// runs. The stream ends when the container exits or the connection is cut.
    fn logs(&self, name: &str) -> BoxStream<'static, Result<LogChunk, RuntimeError>>;
    /// Attaches to a container's stdout and stderr: resolves once the runtime has
    /// attached them, to the bytes the process writes, as it writes them (no
    /// timestamps, pieces of any size). Attached before the start, it carries all of the
    /// output, without the runtime's log in between. The stream ends when the
    /// container's output closes (it exited) or the connection is cut.
    fn attach(&self, name: &str)
    -> impl Future<Output = Result<OutputStream, RuntimeError>> + Send;
    /// One CPU/memory sample of a running container.
    fn sample(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<ResourceSample>, RuntimeError>> + Send;
    /// Containers carrying `label=value` as they start, die, get OOM-killed or are
    /// removed. The stream ends when the connection is cut; callers re-list then.
    fn events(
        &self,
        label: &str,
        value: &str,
    ) -> BoxStream<'static, Result<ContainerEvent, RuntimeError>>;
}

/// A change of one container, as its runtime announced it.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerEvent {
    /// Container name.
    pub name: String,
    /// The container's labels, as the event carries them.
    pub labels: BTreeMap<String, String>,
}
