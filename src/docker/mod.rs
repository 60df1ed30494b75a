//! The Docker adapter: implements the controller's [`ContainerRuntime`] with bollard,
//! through a socket proxy (`DOCKER_HOST=tcp://proxy:2375`) or a local socket. It
//! translates Docker's wire types and errors and holds no policy.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod logstream;

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, HostConfig, Mount as DockerMount, MountType,
};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, EventsOptionsBuilder,
    ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    StatsOptionsBuilder, StopContainerOptionsBuilder,
};
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

use crate::controller::runtime::{
    ContainerEvent, ContainerRuntime, ContainerSpec, ContainerState, ContainerStatus, Created,
    LogChunk, LogStream, OutputStream, ResourceSample, RuntimeError,
};

/// A Docker engine reached over HTTP or a unix socket.
#[derive(Clone, Debug)]
pub struct DockerRuntime {
    docker: Docker,
    /// Where log streams are read from directly ([`logstream`]); bollard reads them for
    /// other hosts (TLS).
    logs_endpoint: Option<logstream::Endpoint>,
    host: String,
    seen: Arc<Mutex<Seen>>,
    /// Woken whenever `seen` learns something.
    seen_changed: Arc<tokio::sync::Notify>,
    /// The API forbade attach (a socket proxy's rule): not asked again.
    attach_refused: Arc<AtomicBool>,
}

/// Containers' starts and ends as the event stream announced them, by name.
///
/// Docker answers `inspect` of a container that has just died only once it has finished
/// its clean-up under the container's lock (50–65 ms here, measured; `docker run` waits
/// as long), while its `die` event carries the exit code at once. An exit seen here is
/// answered without asking Docker, so a run is recorded finished as soon as its output
/// is stored; Docker is asked when the event stream did not see the start and the end,
/// and for exit code 137, where only Docker knows for sure whether the kernel's OOM
/// killer did it (its `oom` event may come after `die`).
#[derive(Debug, Default)]
struct Seen {
    by_name: HashMap<String, Lifecycle>,
    /// Whether an event stream is open (events arrive): without one, nobody waits for
    /// an event.
    live: bool,
}

#[derive(Debug, Default)]
struct Lifecycle {
    started_at: Option<DateTime<Utc>>,
    oom: bool,
    exit: Option<(i64, DateTime<Utc>)>,
    labels: BTreeMap<String, String>,
}

/// Containers remembered at most; ended ones are forgotten first (then Docker is asked).
const SEEN_LIMIT: usize = 10_000;

/// The record, whatever a panic elsewhere left it as (it holds no invariant to break).
fn lock_seen(seen: &Mutex<Seen>) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Seen {
    /// Records one event; returns the container's labels (from the event's attributes).
    fn record(
        &mut self,
        action: &str,
        name: &str,
        at: DateTime<Utc>,
        attributes: &HashMap<String, String>,
    ) -> BTreeMap<String, String> {
        let labels = labels_of(attributes);
        if action == "destroy" {
            self.by_name.remove(name);
            return labels;
        }
        if self.by_name.len() >= SEEN_LIMIT && !self.by_name.contains_key(name) {
            self.by_name.retain(|_, l| l.exit.is_none());
            if self.by_name.len() >= SEEN_LIMIT {
                self.by_name.clear();
            }
        }
        let lifecycle = self.by_name.entry(name.to_owned()).or_default();
        lifecycle.labels = labels.clone();
        match action {
            // Started (again): running, whatever an earlier run of it did.
            "start" => {
                lifecycle.started_at = Some(at);
                lifecycle.oom = false;
                lifecycle.exit = None;
            }
            "oom" => lifecycle.oom = true,
            "die" => {
                let code = attributes.get("exitCode").and_then(|c| c.parse().ok());
                lifecycle.exit = code.map(|code| (code, at));
            }
            _ => {}
        }
        labels
    }

    /// Whether the container's `die` event was seen.
    fn died(&self, name: &str) -> bool {
        self.by_name.get(name).is_some_and(|l| l.exit.is_some())
    }

    /// The state of an exited container, when the events told all of it.
    fn exited(&self, name: &str) -> Option<ContainerState> {
        let lifecycle = self.by_name.get(name)?;
        let (code, finished_at) = lifecycle.exit?;
        let started_at = lifecycle.started_at?;
        if code == 137 && !lifecycle.oom {
            return None;
        }
        Some(ContainerState {
            name: name.to_owned(),
            labels: lifecycle.labels.clone(),
            status: ContainerStatus::Exited,
            started_at: Some(started_at),
            finished_at: Some(finished_at),
            exit_code: Some(code),
            oom_killed: lifecycle.oom,
            error: None,
        })
    }
}

/// The labels among an event's attributes (which also hold its name, image and exit code).
fn labels_of(attributes: &HashMap<String, String>) -> BTreeMap<String, String> {
    attributes
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "name" | "image" | "exitCode" | "signal"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

impl DockerRuntime {
    /// Connects to `host` (`tcp://127.0.0.1:2375`, `unix:///var/run/docker.sock`) and
    /// negotiates the API version with the daemon. Connection problems surface on the
    /// first call, not here, so the operator can start while Docker is down.
    pub fn connect(host: &str) -> Result<Self, RuntimeError> {
        let url = host.replacen("tcp://", "http://", 1);
        let docker = if url.starts_with("http://") {
            Docker::connect_with_http(&url, 120, bollard::API_DEFAULT_VERSION)
        } else {
            Docker::connect_with_host(host)
        }
        .map_err(|e| RuntimeError::Unavailable(format!("cannot use DOCKER_HOST {host}: {e}")))?;
        Ok(Self {
            docker,
            logs_endpoint: logstream::Endpoint::of(host),
            host: host.to_owned(),
            seen: Arc::default(),
            seen_changed: Arc::default(),
            attach_refused: Arc::default(),
        })
    }

    /// Lowers the client API version to what the daemon speaks.
    pub async fn negotiate(self) -> Result<Self, RuntimeError> {
        let docker = self
            .docker
            .negotiate_version()
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(Self { docker, ..self })
    }

    /// `/v1.41`: the API version requests made here speak.
    fn version_prefix(&self) -> String {
        let version = self.docker.client_version();
        format!("/v{}.{}", version.major_version, version.minor_version)
    }

    /// An exited container's state as the event stream told it, if it did.
    fn seen_exited(&self, name: &str) -> Option<ContainerState> {
        lock_seen(&self.seen).exited(name)
    }
}

fn unavailable(error: &DockerError) -> RuntimeError {
    RuntimeError::Unavailable(error.to_string())
}

/// HTTP status of a Docker error response, if it is one.
fn status_of(error: &DockerError) -> Option<u16> {
    match error {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

fn message_of(error: &DockerError) -> String {
    match error {
        DockerError::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

fn refused(operation: &'static str, target: &str, error: &DockerError) -> RuntimeError {
    match status_of(error) {
        Some(_) => RuntimeError::Refused {
            operation,
            target: target.to_owned(),
            message: message_of(error),
        },
        None => unavailable(error),
    }
}

fn parse_time(text: Option<&str>) -> Option<DateTime<Utc>> {
    text.and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .filter(|t| t.timestamp() > 0) // Docker reports "0001-01-01T00:00:00Z" for never
}

fn state_from_inspect(response: ContainerInspectResponse) -> ContainerState {
    let state = response.state.unwrap_or_default();
    let status = match state.status.map(|s| s.to_string()).as_deref() {
        Some("created") => ContainerStatus::Created,
        Some("running" | "paused" | "restarting") => ContainerStatus::Running,
        _ if state.running == Some(true) => ContainerStatus::Running,
        _ => ContainerStatus::Exited,
    };
    let labels: BTreeMap<String, String> = response
        .config
        .and_then(|c| c.labels)
        .map(|l| l.into_iter().collect())
        .unwrap_or_default();
    ContainerState {
        name: response
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_owned(),
        labels,
        status,
        started_at: parse_time(state.started_at.as_deref()),
        finished_at: parse_time(state.finished_at.as_deref()),
        exit_code: (status == ContainerStatus::Exited)
            .then_some(state.exit_code)
            .flatten(),
        oom_killed: state.oom_killed.unwrap_or(false),
        error: state.error.filter(|e| !e.is_empty()),
    }
}

fn create_body(spec: &ContainerSpec) -> ContainerCreateBody {
    let mounts = spec
        .mounts
        .iter()
        .map(|m| DockerMount {
            source: Some(m.source.clone()),
            target: Some(m.target.clone()),
            read_only: Some(m.read_only),
            typ: Some(MountType::BIND),
            ..Default::default()
        })
        .collect();
    let tmpfs: HashMap<String, String> = spec.tmpfs.clone().into_iter().collect();
    let host_config = HostConfig {
        mounts: Some(mounts),
        tmpfs: Some(tmpfs),
        memory: spec.memory_bytes,
        memory_swap: spec.memory_bytes,
        nano_cpus: spec.nano_cpus,
        pids_limit: spec.pids_limit,
        cap_drop: Some(vec!["ALL".to_owned()]),
        security_opt: Some(vec!["no-new-privileges".to_owned()]),
        readonly_rootfs: Some(true),
        log_config: Some(bollard::models::HostConfigLogConfig {
            typ: Some("json-file".to_owned()),
            config: Some(HashMap::from([
                ("max-size".to_owned(), spec.log_max_size.clone()),
                ("max-file".to_owned(), "1".to_owned()),
            ])),
        }),
        network_mode: Some("bridge".to_owned()),
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: Some(spec.command.clone()),
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        labels: Some(spec.labels.clone().into_iter().collect()),
        working_dir: Some(spec.working_dir.clone()),
        user: Some(spec.user.clone()),
        attach_stdout: Some(false),
        attach_stderr: Some(false),
        tty: Some(false),
        host_config: Some(host_config),
        ..Default::default()
    }
}

/// Docker's output frames, from bollard, as chunks.
fn output_chunks<S>(frames: S, operation: &'static str, name: &str) -> OutputStream
where
    S: futures::Stream<Item = Result<bollard::container::LogOutput, DockerError>> + Send + 'static,
{
    let target = name.to_owned();
    frames
        .filter_map(|item| async move {
            match item {
                Ok(bollard::container::LogOutput::StdOut { message }) => Some(Ok(LogChunk {
                    stream: LogStream::Stdout,
                    bytes: message,
                })),
                Ok(bollard::container::LogOutput::StdErr { message }) => Some(Ok(LogChunk {
                    stream: LogStream::Stderr,
                    bytes: message,
                })),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            }
        })
        .map_err(move |e| refused(operation, &target, &e))
        .boxed()
}

impl ContainerRuntime for DockerRuntime {
    fn host(&self) -> &str {
        &self.host
    }

    async fn ping(&self) -> Result<(), RuntimeError> {
        self.docker
            .ping()
            .await
            .map(|_| ())
            .map_err(|e| unavailable(&e))
    }

    async fn list(&self, label: &str, value: &str) -> Result<Vec<ContainerState>, RuntimeError> {
        let filters = HashMap::from([("label".to_owned(), vec![format!("{label}={value}")])]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let summaries = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| refused("list", label, &e))?;
        let mut states = Vec::with_capacity(summaries.len());
        for summary in summaries {
            let Some(id) = summary.id else { continue };
            let name = summary
                .names
                .as_ref()
                .and_then(|names| names.first())
                .map(|n| n.trim_start_matches('/'));
            if let Some(state) = name.and_then(|name| self.seen_exited(name)) {
                states.push(state);
            // A container can vanish between list and inspect; that is not an error.
            } else if let Some(state) = self.inspect(&id).await? {
                states.push(state);
            }
        }
        Ok(states)
    }

    async fn await_exit(&self, name: &str, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let changed = self.seen_changed.notified();
            {
                // Also for a container started before this stream (an adopted one):
                // Docker says `exited` on inspect before its clean-up ends and `die` is
                // told, and what Flotilla starts next must not overlap that `die`.
                let seen = lock_seen(&self.seen);
                if !seen.live || seen.died(name) {
                    return;
                }
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return;
            }
        }
    }

    async fn inspect(&self, name: &str) -> Result<Option<ContainerState>, RuntimeError> {
        if let Some(state) = self.seen_exited(name) {
            return Ok(Some(state));
        }
        match self.docker.inspect_container(name, None).await {
            Ok(response) => Ok(Some(state_from_inspect(response))),
            Err(e) if status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(refused("inspect", name, &e)),
        }
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<Created, RuntimeError> {
        let options = CreateContainerOptionsBuilder::default()
            .name(&spec.name)
            .build();
        match self
            .docker
            .create_container(Some(options), create_body(spec))
            .await
        {
            Ok(_) => Ok(Created::New),
            Err(e) if status_of(&e) == Some(409) => match self.inspect(&spec.name).await? {
                Some(existing) => Ok(Created::Existing(existing)),
                // The name is taken by a create still in flight (e.g. of a killed
                // operator): transient; the next reconcile finds and adopts it.
                None => Err(RuntimeError::Unavailable(format!(
                    "container {} is being created by another request; retrying",
                    spec.name
                ))),
            },
            Err(e) if status_of(&e) == Some(404) => Err(RuntimeError::ImageNotFound {
                image: spec.image.clone(),
                message: message_of(&e),
            }),
            Err(e) => Err(refused("create", &spec.name, &e)),
        }
    }

    async fn start(&self, name: &str) -> Result<bool, RuntimeError> {
        match self.docker.start_container(name, None).await {
            Ok(()) => Ok(true),
            Err(e) if status_of(&e) == Some(304) => Ok(false),
            Err(e) => Err(refused("start", name, &e)),
        }
    }

    async fn stop(&self, name: &str, grace: Duration) -> Result<(), RuntimeError> {
        let seconds = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
        let options = StopContainerOptionsBuilder::default().t(seconds).build();
        match self.docker.stop_container(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if matches!(status_of(&e), Some(304 | 404)) => Ok(()),
            Err(e) => Err(refused("stop", name, &e)),
        }
    }

    async fn remove(&self, name: &str) -> Result<(), RuntimeError> {
        let options = RemoveContainerOptionsBuilder::default().force(true).build();
        match self.docker.remove_container(name, Some(options)).await {
            Ok(()) => Ok(()),
            // 409: removal already in progress.
            Err(e) if matches!(status_of(&e), Some(404 | 409)) => Ok(()),
            Err(e) => Err(refused("remove", name, &e)),
        }
    }

    fn logs(&self, name: &str) -> BoxStream<'static, Result<LogChunk, RuntimeError>> {
        if let Some(endpoint) = &self.logs_endpoint {
            let path = format!(
                "{}/containers/{name}/logs?follow=1&stdout=1&stderr=1&timestamps=1",
                self.version_prefix()
            );
            return logstream::follow(endpoint.clone(), path, name.to_owned());
        }
        let options = LogsOptionsBuilder::default()
            .follow(true)
            .stdout(true)
            .stderr(true)
            .timestamps(true)
            .build();
        output_chunks(self.docker.logs(name, Some(options)), "logs", name)
    }

    async fn attach(&self, name: &str) -> Result<OutputStream, RuntimeError> {
        if self.attach_refused.load(Ordering::Relaxed) {
            return Err(RuntimeError::Refused {
                operation: "attach",
                target: name.to_owned(),
                message: "refused before; output is read from Docker's log".into(),
            });
        }
        let attached = match &self.logs_endpoint {
            Some(endpoint) => {
                let path = format!(
                    "{}/containers/{name}/attach?stream=1&stdout=1&stderr=1",
                    self.version_prefix()
                );
                logstream::attach(endpoint.clone(), path, name.to_owned()).await
            }
            None => {
                let options = AttachContainerOptionsBuilder::default()
                    .stream(true)
                    .stdout(true)
                    .stderr(true)
                    .build();
                match self.docker.attach_container(name, Some(options)).await {
                    Ok(attached) => Ok(output_chunks(attached.output, "attach", name)),
                    Err(e) => Err(match status_of(&e) {
                        // Worded as the direct reader words it.
                        Some(code) => RuntimeError::Refused {
                            operation: "attach",
                            target: name.to_owned(),
                            message: format!("HTTP {code}: {}", message_of(&e)),
                        },
                        None => unavailable(&e),
                    }),
                }
            }
        };
        // A proxy that forbids attach (403) is not asked again: every run reads Docker's
        // log instead, which is slower for a loud run but loses nothing.
        if let Err(RuntimeError::Refused { message, .. }) = &attached
            && message.starts_with("HTTP 403")
            && !self.attach_refused.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                host = %self.host,
                "the Docker API refuses attach ({message}); run output is read from Docker's log, which falls behind runs printing more than ~25 MB/s; allow POST /containers/{{id}}/attach without stdin in the socket proxy"
            );
        }
        attached
    }

    async fn sample(&self, name: &str) -> Result<Option<ResourceSample>, RuntimeError> {
        let options = StatsOptionsBuilder::default()
            .stream(false)
            .one_shot(false)
            .build();
        let mut stream = self.docker.stats(name, Some(options));
        let stats = match stream.next().await {
            Some(Ok(stats)) => stats,
            Some(Err(e)) if status_of(&e) == Some(404) => return Ok(None),
            Some(Err(e)) => return Err(refused("stats", name, &e)),
            None => return Ok(None),
        };
        let cpu = stats.cpu_stats.unwrap_or_default();
        let pre = stats.precpu_stats.unwrap_or_default();
        let total = |c: &bollard::models::ContainerCpuStats| {
            c.cpu_usage
                .as_ref()
                .and_then(|u| u.total_usage)
                .unwrap_or(0)
        };
        let cpu_delta = total(&cpu).saturating_sub(total(&pre)) as f64;
        let system_delta = cpu
            .system_cpu_usage
            .unwrap_or(0)
            .saturating_sub(pre.system_cpu_usage.unwrap_or(0)) as f64;
        let cpus = f64::from(cpu.online_cpus.unwrap_or(1).max(1));
        let cpu_percent = if system_delta > 0.0 {
            cpu_delta / system_delta * cpus * 100.0
        } else {
            0.0
        };
        let memory = stats.memory_stats.unwrap_or_default();
        // Like `docker stats`: usage minus page cache.
        let cache = memory
            .stats
            .as_ref()
            .and_then(|s| {
                s.get("total_inactive_file")
                    .or_else(|| s.get("inactive_file"))
                    .copied()
            })
            .unwrap_or(0);
        Ok(Some(ResourceSample {
            at: Utc::now(),
            cpu_percent: (cpu_percent * 100.0).round() / 100.0,
            memory_bytes: memory.usage.unwrap_or(0).saturating_sub(cache),
        }))
    }

    fn events(
        &self,
        label: &str,
        value: &str,
    ) -> BoxStream<'static, Result<ContainerEvent, RuntimeError>> {
        let filters = HashMap::from([
            ("type".to_owned(), vec!["container".to_owned()]),
            ("label".to_owned(), vec![format!("{label}={value}")]),
            (
                "event".to_owned(),
                vec![
                    "start".to_owned(),
                    "die".to_owned(),
                    "oom".to_owned(),
                    "destroy".to_owned(),
                ],
            ),
        ]);
        let options = EventsOptionsBuilder::default().filters(&filters).build();
        // Events may have been missed since the last stream (a removal, then a container
        // of the same name): what was seen before is forgotten, and again if this one fails.
        {
            let mut seen = lock_seen(&self.seen);
            seen.by_name.clear();
            seen.live = true;
        }
        let seen = self.seen.clone();
        let changed = self.seen_changed.clone();
        self.docker
            .events(Some(options))
            .filter_map(move |item| {
                let seen = seen.clone();
                let changed = changed.clone();
                async move {
                    let event = match item {
                        Ok(event) => event,
                        Err(e) => {
                            let mut record = lock_seen(&seen);
                            record.by_name.clear();
                            record.live = false;
                            drop(record);
                            changed.notify_waiters();
                            return Some(Err(unavailable(&e)));
                        }
                    };
                    let attributes = event.actor.and_then(|a| a.attributes)?;
                    let name = attributes.get("name")?.clone();
                    let at = event
                        .time_nano
                        .map(DateTime::from_timestamp_nanos)
                        .unwrap_or_else(Utc::now);
                    let action = event.action.unwrap_or_default();
                    let labels = lock_seen(&seen).record(&action, &name, at, &attributes);
                    changed.notify_waiters();
                    Some(Ok(ContainerEvent { labels, name }))
                }
            })
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attributes(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn at(second: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(second, 0).expect("instant")
    }

    #[test]
    fn an_exit_seen_from_start_to_die_is_known_without_docker() {
        let mut seen = Seen::default();
        let labels = [("name", "c"), ("flotilla.dev/run", "u1"), ("image", "i")];
        seen.record("start", "c", at(10), &attributes(&labels));
        assert_eq!(seen.exited("c"), None, "running");
        let mut died = labels.to_vec();
        died.push(("exitCode", "3"));
        seen.record("die", "c", at(12), &attributes(&died));
        let state = seen.exited("c").expect("known");
        assert_eq!(state.status, ContainerStatus::Exited);
        assert_eq!(state.exit_code, Some(3));
        assert_eq!(
            (state.started_at, state.finished_at),
            (Some(at(10)), Some(at(12)))
        );
        assert_eq!(
            state.labels,
            BTreeMap::from([("flotilla.dev/run".to_owned(), "u1".to_owned())]),
            "the event's name, image and exit code are not labels"
        );
        seen.record("destroy", "c", at(13), &attributes(&labels));
        assert_eq!(seen.exited("c"), None, "removed: Docker is asked");
    }

    #[test]
    fn docker_is_asked_when_the_events_cannot_tell_all() {
        let mut seen = Seen::default();
        // The start came before the stream (an operator restart): no start time.
        seen.record("die", "a", at(5), &attributes(&[("exitCode", "0")]));
        assert_eq!(seen.exited("a"), None);
        // 137 without an oom event: only Docker knows whether the OOM killer did it.
        seen.record("start", "b", at(1), &attributes(&[]));
        seen.record("die", "b", at(2), &attributes(&[("exitCode", "137")]));
        assert_eq!(seen.exited("b"), None);
        seen.record("start", "c", at(1), &attributes(&[]));
        seen.record("oom", "c", at(2), &attributes(&[]));
        seen.record("die", "c", at(2), &attributes(&[("exitCode", "137")]));
        assert!(seen.exited("c").is_some_and(|s| s.oom_killed));
        // Started again after an exit: running, the old exit is forgotten.
        seen.record("start", "c", at(3), &attributes(&[]));
        assert_eq!(seen.exited("c"), None);
    }
}
