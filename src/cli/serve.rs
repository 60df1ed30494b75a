//! `flotilla serve`: wires the store, the sources and the API server into one tokio
//! runtime and shuts them down together on SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::controller::leader;
use crate::controller::notify::{NotifyConfig, NotifyController};
use crate::controller::retention::{RetentionConfig, RetentionController};
use crate::controller::run::container::RunnerConfig;
use crate::controller::run::{RunController, RunControllerConfig};
use crate::controller::runtime::ContainerRuntime;
use crate::controller::runtime::Mount;
use crate::controller::schedule::ScheduleController;
use crate::docker::DockerRuntime;
use crate::metrics::Metrics;
use crate::resource::types::WhenBusy;
use crate::secrets::Keyring;
use crate::server::auth::{generate_token, hash_token};
use crate::server::hooks::HooksState;
use crate::server::{self, AppState, HttpOptions};
use crate::source::dir::DirSource;
use crate::source::git::{DeployKey, GitAuth, GitConfig, GitSource};
use crate::store::Store;
use crate::store::fence::Fence;

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Options of `flotilla serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Directory for the embedded database, logs and run data.
    #[arg(long, env = "FLOTILLA_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Address the API listens on.
    #[arg(long, env = "FLOTILLA_LISTEN", default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,
    /// Port, overriding the port of --listen (for platforms that set PORT).
    #[arg(long, env = "PORT")]
    pub port: Option<u16>,
    /// Database URL: `sqlite://PATH` or `postgres://…`; default SQLite in the data dir.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database: Option<String>,
    /// With PostgreSQL: how long the controller lease lasts after a renewal. The leader
    /// stops acting after two thirds of it without a renewal; another replica takes
    /// over once it has run out.
    #[arg(long, env = "FLOTILLA_LEASE_TTL", default_value = "15s", value_parser = parse_duration_arg)]
    pub lease_ttl: Duration,
    /// With PostgreSQL: how often the leader renews the lease and followers try to take
    /// it (at most a third of --lease-ttl).
    #[arg(long, env = "FLOTILLA_LEASE_RENEW_INTERVAL", default_value = "5s", value_parser = parse_duration_arg)]
    pub lease_renew_interval: Duration,
    /// With PostgreSQL: how often a replica reads the other replicas' writes without
    /// being notified of them (notifications arrive at every commit; this poll only
    /// catches up on those lost while the listening connection was re-established).
    #[arg(long, env = "FLOTILLA_FOLLOW_POLL_INTERVAL", default_value = "2s", value_parser = parse_duration_arg)]
    pub follow_poll_interval: Duration,
    /// How long before its slot a scheduled run is created, so its container exists and
    /// starts at the slot (schedules with concurrencyPolicy Allow; `0s` creates runs at
    /// their slot).
    #[arg(long, env = "FLOTILLA_SCHEDULE_LEAD", default_value = "2s", value_parser = parse_duration_arg)]
    pub schedule_lead: Duration,
    /// Finished runs kept per pipeline, with their logs (pipelines' `retention.runs`
    /// overrides it); older ones are deleted. Unset: any number.
    #[arg(long, env = "FLOTILLA_RETAIN_RUNS")]
    pub retain_runs: Option<u32>,
    /// Finished runs created longer ago than this (`30d`) are deleted with their logs
    /// (pipelines' `retention.age` overrides it). Unset: kept.
    #[arg(long, env = "FLOTILLA_RETAIN_FOR", value_parser = parse_duration_arg)]
    pub retain_for: Option<Duration>,
    /// Time between retention passes (deleting runs past their limits, measuring disk
    /// use per pipeline).
    #[arg(long, env = "FLOTILLA_RETENTION_INTERVAL", default_value = "5m", value_parser = parse_duration_arg)]
    pub retention_interval: Duration,
    /// Directory of YAML manifests and Fast-Flow pipeline folders, applied at start and
    /// on every change.
    #[arg(long, env = "PIPELINES_DIR")]
    pub pipelines_dir: Option<PathBuf>,
    /// Fernet key(s) for secrets, comma-separated, newest first.
    #[arg(long, env = "ENCRYPTION_KEY", hide_env_values = true)]
    pub encryption_key: Option<String>,
    /// Log format.
    #[arg(long, env = "FLOTILLA_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Development mode: reads without a token (only on a loopback address).
    #[arg(long, env = "FLOTILLA_DEV")]
    pub dev: bool,
    /// Origin allowed to call the API from a browser (repeatable); none: no CORS.
    #[arg(
        long = "cors-origin",
        env = "FLOTILLA_CORS_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,
    /// Runs a pipeline's webhook may create per minute, unless its `webhookRateLimit`
    /// says otherwise; 0: no limit (Fast-Flow's `RATELIMIT_ENABLED=false`).
    #[arg(long, env = "FLOTILLA_WEBHOOK_RATE_LIMIT", default_value_t = crate::server::hooks::TRIGGERS_PER_MINUTE)]
    pub webhook_rate_limit: u32,
    /// What a run asked for through the API or a webhook gets while its pipeline has
    /// `maxInstances` unfinished runs, or the operator --max-concurrent-runs, for
    /// pipelines that set no `whenBusy`: `queue` (it waits) or `reject` (429, no run;
    /// Fast-Flow's way).
    #[arg(long, env = "FLOTILLA_WHEN_BUSY", default_value = "queue", value_parser = parse_when_busy)]
    pub when_busy: WhenBusy,
    /// Admin token to install instead of generating one into `<data-dir>/admin-token`.
    #[arg(long, env = "FLOTILLA_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Run execution on Docker.
    #[command(flatten)]
    pub docker: DockerArgs,
    /// What the Fast-Flow variables of the environment did, to report once logging is
    /// up (see `fastflow_env`).
    #[arg(skip)]
    pub fastflow_notes: Vec<String>,
    /// The git source and webhooks.
    #[command(flatten)]
    pub git: GitArgs,
    /// Notifications.
    #[command(flatten)]
    pub notify: NotifyArgs,
    /// The Secret and Notifier Fast-Flow's mail and Teams variables ask for (see
    /// `fastflow_notify`), applied at start.
    #[arg(skip)]
    pub fastflow_notifier: Vec<serde_json::Value>,
}

/// How notifications are delivered.
#[derive(Debug, Args)]
pub struct NotifyArgs {
    /// The address users reach this operator at (`https://flotilla.example.com`):
    /// notifications link to the run's page under it. Fast-Flow's FRONTEND_URL sets it.
    #[arg(long, env = "FLOTILLA_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Limit of one try to deliver one notification.
    #[arg(long, env = "FLOTILLA_NOTIFY_TIMEOUT", default_value = "10s", value_parser = parse_duration_arg)]
    pub notify_timeout: Duration,
    /// Tries of one notification before it is recorded as failed (`NotificationFailed`).
    #[arg(long, env = "FLOTILLA_NOTIFY_ATTEMPTS", default_value_t = 5)]
    pub notify_attempts: u32,
    /// Wait before the second try, doubled for each further one (at most a minute).
    #[arg(long, env = "FLOTILLA_NOTIFY_BACKOFF", default_value = "2s", value_parser = parse_duration_arg)]
    pub notify_backoff: Duration,
    /// Nothing that happened longer ago is notified (after an outage of the operator).
    #[arg(long, env = "FLOTILLA_NOTIFY_CATCH_UP", default_value = "1h", value_parser = parse_duration_arg)]
    pub notify_catch_up: Duration,
}

impl NotifyArgs {
    fn config(&self) -> NotifyConfig {
        NotifyConfig {
            public_url: self
                .public_url
                .as_deref()
                .map(|u| u.trim_end_matches('/').to_owned()),
            timeout: self.notify_timeout,
            attempts: self.notify_attempts.max(1),
            first_backoff: self.notify_backoff,
            catch_up: self.notify_catch_up,
            ..NotifyConfig::default()
        }
    }
}

/// The git repository followed, and push webhooks.
#[derive(Debug, Args)]
pub struct GitArgs {
    /// Repository to follow (https://…, ssh://…, user@host:path, git://… or a path);
    /// its manifests and pipeline folders replace --pipelines-dir.
    #[arg(long, env = "GIT_REPO_URL", conflicts_with = "pipelines_dir")]
    pub git_url: Option<String>,
    /// Branch to follow.
    #[arg(long, env = "GIT_BRANCH", default_value = "main")]
    pub git_branch: String,
    /// Folder of the repository holding the manifests and pipeline folders.
    #[arg(long, env = "PIPELINES_SUBDIR")]
    pub git_path: Option<String>,
    /// HTTPS token, sent as the basic-auth password; never written to disk or logs.
    #[arg(long, env = "GIT_SYNC_TOKEN", hide_env_values = true)]
    pub git_token: Option<String>,
    /// SSH deploy key: a path, or the private key itself.
    #[arg(long, env = "GIT_SYNC_DEPLOY_KEY", hide_env_values = true)]
    pub git_deploy_key: Option<String>,
    /// OpenSSH known_hosts file that must list the SSH server's key.
    #[arg(long, env = "GIT_SSH_KNOWN_HOSTS")]
    pub git_known_hosts: Option<PathBuf>,
    /// Trust an SSH host key never seen before and pin it (trust on first use).
    #[arg(long, env = "GIT_SSH_ACCEPT_NEW_HOST_KEYS")]
    pub git_accept_new_host_keys: bool,
    /// Sync the repository every --auto-sync-interval (webhooks and `flotilla sync` work
    /// either way).
    #[arg(long, env = "AUTO_SYNC_ENABLED")]
    pub auto_sync: bool,
    /// Time between automatic syncs (`60s`, `5m`; a bare number is seconds).
    #[arg(long, env = "AUTO_SYNC_INTERVAL", default_value = "60s", value_parser = parse_interval_arg)]
    pub auto_sync_interval: Duration,
    /// Shared secret of push webhooks (`POST /hooks/git`); without it they are refused.
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
}

impl GitArgs {
    /// The git source's settings, when a repository is configured.
    fn config(&self) -> Option<GitConfig> {
        let url = self.git_url.clone()?;
        let mut config = GitConfig::new(url);
        config.branch = self.git_branch.clone();
        config.path = self.git_path.clone();
        config.auth = GitAuth {
            token: self.git_token.clone().filter(|t| !t.is_empty()),
            username: None,
            deploy_key: self.git_deploy_key.as_deref().map(DeployKey::from_setting),
            known_hosts: self.git_known_hosts.clone(),
            accept_new_host_keys: self.git_accept_new_host_keys,
        };
        config.auto_sync = self.auto_sync.then_some(self.auto_sync_interval);
        Some(config)
    }
}

/// `GIT_SSH_KNOWN_HOSTS` holds the known_hosts lines themselves in Fast-Flow: a value
/// that names no file and reads as such lines is written to `<data-dir>/known_hosts`
/// (owner-only) and used from there.
pub(super) fn known_hosts_content_to_file(args: &mut ServeArgs) -> anyhow::Result<()> {
    let Some(value) = &args.git.git_known_hosts else {
        return Ok(());
    };
    let text = value.to_string_lossy();
    if value.exists() || !text.trim().contains(char::is_whitespace) {
        return Ok(());
    }
    let file = args.data_dir.join("known_hosts");
    let mut content = text.trim().replace("\\n", "\n");
    content.push('\n');
    crate::private_fs::write(&file, content.as_bytes())
        .with_context(|| format!("cannot write {}", file.display()))?;
    args.git.git_known_hosts = Some(file);
    Ok(())
}

fn parse_interval_arg(text: &str) -> Result<Duration, String> {
    match text.trim().parse::<u64>() {
        Ok(seconds) => Ok(Duration::from_secs(seconds)),
        Err(_) => parse_duration_arg(text),
    }
}

/// How runs execute on Docker.
#[derive(Debug, Args)]
pub struct DockerArgs {
    /// Docker endpoint: a socket proxy (`tcp://127.0.0.1:2375`) or a socket.
    #[arg(
        long,
        env = "DOCKER_HOST",
        default_value = "unix:///var/run/docker.sock"
    )]
    pub docker_host: String,
    /// Image runs use unless a pipeline sets `spec.image`.
    #[arg(long, env = "FLOTILLA_RUNNER_IMAGE", default_value = concat!("flotilla/runner:", env!("CARGO_PKG_VERSION")))]
    pub runner_image: String,
    /// Host directory of the shared uv cache; default `<data-dir>/uv-cache`.
    #[arg(long, env = "FLOTILLA_UV_CACHE_DIR")]
    pub uv_cache_dir: Option<PathBuf>,
    /// The pipelines directory as the Docker host sees it, when Flotilla itself runs in a
    /// container; default the pipelines directory.
    #[arg(long, env = "FLOTILLA_HOST_PIPELINES_DIR")]
    pub host_pipelines_dir: Option<String>,
    /// Most runs executing at once; further runs wait in Pending (FIFO).
    #[arg(long, env = "FLOTILLA_MAX_CONCURRENT_RUNS")]
    pub max_concurrent_runs: Option<usize>,
    /// Value of the `flotilla.dev/managed-by` label; operators sharing a Docker host need
    /// different values.
    #[arg(long, env = "FLOTILLA_INSTANCE", default_value = "flotilla")]
    pub instance: String,
    /// Time between SIGTERM and SIGKILL when a run is cancelled or times out.
    #[arg(long, env = "FLOTILLA_STOP_GRACE_PERIOD", default_value = "10s", value_parser = parse_duration_arg)]
    pub stop_grace_period: Duration,
    /// `uid:gid` run containers use.
    #[arg(long, env = "FLOTILLA_RUN_USER", default_value = "10001:10001")]
    pub run_user: String,
    /// CA bundle (PEM) mounted into runs as `SSL_CERT_FILE`, for package indexes behind
    /// a TLS-intercepting proxy or a private CA. Default: the bundle this host trusts
    /// (`SSL_CERT_FILE`, else the distribution's bundle), unless --no-host-ca-bundle.
    #[arg(long, env = "FLOTILLA_CA_BUNDLE")]
    pub ca_bundle: Option<PathBuf>,
    /// Do not mount the host's CA bundle into runs: they trust only what their image
    /// trusts (set it when the operator runs in a container whose bundle path does not
    /// exist on the Docker host).
    #[arg(long, env = "FLOTILLA_NO_HOST_CA_BUNDLE")]
    pub no_host_ca_bundle: bool,
    /// Directory of wheels mounted into runs at `/wheels` and offered to uv as
    /// `UV_FIND_LINKS` (with `UV_OFFLINE=1` runs need no index at all).
    #[arg(long, env = "FLOTILLA_WHEELHOUSE")]
    pub wheelhouse: Option<PathBuf>,
    /// RAM-backed host directory where `mountAs: files` secrets are written for the
    /// lifetime of a container (mounted read-only at /run/secrets/<secret>).
    #[arg(
        long,
        env = "FLOTILLA_SECRETS_DIR",
        default_value = "/dev/shm/flotilla-secrets"
    )]
    pub secrets_dir: PathBuf,
    /// Largest container log Docker keeps per run (json-file, no rotation), so output is
    /// stored completely even when Docker rotates logs by default.
    #[arg(long, env = "FLOTILLA_CONTAINER_LOG_MAX_SIZE", default_value = "1g")]
    pub container_log_max_size: String,
    /// Largest stored log of one attempt (`100Mi`): output past it is dropped, and a
    /// line saying so ends the log. Unset: every line is stored.
    #[arg(long, env = "FLOTILLA_LOG_MAX_SIZE", value_parser = parse_size_arg)]
    pub log_max_size: Option<u64>,
    /// Parallel reconciles of runs.
    #[arg(long, env = "FLOTILLA_WORKERS", default_value_t = 8)]
    pub workers: usize,
    /// Python of pipelines imported from Fast-Flow that set no `python_version` (as
    /// Fast-Flow's DEFAULT_PYTHON_VERSION); other pipelines use their `python` or the
    /// image's.
    #[arg(long, env = "FLOTILLA_DEFAULT_PYTHON", default_value = "3.11")]
    pub default_python: String,
    /// Timeout of runs of pipelines imported from Fast-Flow that set none (Fast-Flow's
    /// CONTAINER_TIMEOUT, which its `timeout: 0` fell back to as well); other pipelines
    /// have their `timeout` or none.
    #[arg(long, env = "FLOTILLA_DEFAULT_TIMEOUT", value_parser = parse_duration_arg)]
    pub default_timeout: Option<Duration>,
    /// Longest chain of runs started by pipeline `triggers`: the run that many steps
    /// after a run started otherwise starts none, with a TriggerDepthExceeded event.
    #[arg(long, env = "FLOTILLA_MAX_TRIGGER_DEPTH", default_value_t = crate::controller::run::downstream::DEFAULT_MAX_DEPTH)]
    pub max_trigger_depth: u32,
}

fn parse_duration_arg(text: &str) -> Result<Duration, String> {
    crate::resource::quantity::parse_duration(text).map_err(|e| e.to_string())
}

fn parse_size_arg(text: &str) -> Result<u64, String> {
    crate::resource::quantity::parse_bytes(text).map_err(|e| e.to_string())
}

fn parse_when_busy(text: &str) -> Result<WhenBusy, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "queue" => Ok(WhenBusy::Queue),
        "reject" => Ok(WhenBusy::Reject),
        _ => Err(format!("{text:?}: expected queue or reject")),
    }
}

/// Runs the operator until SIGINT or SIGTERM.
pub async fn run(mut args: ServeArgs) -> anyhow::Result<()> {
    init_tracing(args.log_format);
    for note in &args.fastflow_notes {
        tracing::warn!("{note}");
    }
    let keyring = Keyring::from_env_value(args.encryption_key.as_deref().unwrap_or_default())
        .context("refusing to start")?;
    // Owner-only: it holds the database, the admin token and run logs.
    crate::private_fs::create_dir(&args.data_dir)
        .with_context(|| format!("cannot create the data dir {}", args.data_dir.display()))?;
    known_hosts_content_to_file(&mut args)?;
    let (store, _single_operator) = open_store(&args.data_dir, args.database.as_deref()).await?;
    let mut listen = args.listen;
    if let Some(port) = args.port {
        listen.set_port(port);
    }
    if args.dev && !listen.ip().is_loopback() {
        anyhow::bail!(
            "--dev allows reads without a token and is refused on {listen}: listen on 127.0.0.1 or drop --dev"
        );
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| {
            format!("cannot listen on {listen} (port in use? set --listen or PORT)")
        })?;
    let address = listener.local_addr().context("listener has no address")?;
    let admin_token_note = install_admin_token(&store, &args).await?;

    let shutdown = CancellationToken::new();
    let keyring = Arc::new(keyring);
    apply_fastflow_notifier(&store, &keyring, &args.fastflow_notifier).await;
    let mut tasks = tokio::task::JoinSet::new();
    let data_dir = std::fs::canonicalize(&args.data_dir).context("the data dir vanished")?;
    let git = match args.git.config() {
        Some(config) => {
            Some(GitSource::new(config, &data_dir).context("cannot set up the git source")?)
        }
        None => None,
    };
    if git.is_some() && args.git.webhook_secret.is_none() {
        tracing::warn!("no WEBHOOK_SECRET: push webhooks (POST /hooks/git) are refused");
    }
    let source_root = match (&git, &args.pipelines_dir) {
        (Some(git), _) => git.source_root(),
        (None, Some(dir)) => std::fs::canonicalize(dir)
            .with_context(|| format!("the pipelines dir {} does not exist", dir.display()))?,
        (None, None) => {
            let dir = data_dir.join("pipelines");
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            dir
        }
    };
    let mut controller_config =
        run_controller_config(&args.docker, &data_dir, &source_root, store.identity())?;
    if store.is_shared() {
        // A deposed leader may still try to create or start an attempt for up to a ttl.
        controller_config.tombstone_for = args.lease_ttl * 2;
    }
    let runtime = Arc::new(DockerRuntime::connect(&args.docker.docker_host)?);
    let metrics = Arc::new(Metrics::new());
    let runtime = match runtime.as_ref().clone().negotiate().await {
        Ok(negotiated) => Arc::new(negotiated),
        Err(e) => {
            tracing::warn!(docker = %args.docker.docker_host, "Docker is not reachable yet ({e}); runs wait until it is");
            runtime
        }
    };
    let probe_runtime = runtime.clone();
    let runtime_probe: server::RuntimeProbe = Arc::new(move || {
        let runtime = probe_runtime.clone();
        Box::pin(async move { runtime.ping().await.map_err(|e| e.to_string()) })
    });
    // With PostgreSQL the controllers and sources act through a fence the election keeps
    // up to date: their writes check the lease epoch in the same transaction, their
    // container side effects stop at the local deadline.
    let fence = Arc::new(Fence::new(leader::LEASE));
    let acting = if store.is_shared() {
        store.fenced(fence.clone())
    } else {
        store.clone()
    };
    let controller = RunController::new(
        acting.clone(),
        runtime,
        controller_config,
        Some(keyring.clone()),
        metrics.clone(),
    );
    // One RunFiles for the controller and the API: its output signal wakes live log
    // readers the moment a follower stores a line.
    let files = controller.files().clone();
    let schedules = ScheduleController::new(
        acting.clone(),
        files.clone(),
        metrics.clone(),
        args.schedule_lead,
    );
    let retention = RetentionController::new(
        acting.clone(),
        files.clone(),
        RetentionConfig {
            runs: args.retain_runs,
            age: args.retain_for,
            every: args.retention_interval,
        },
        metrics.clone(),
    );
    let notifications = NotifyController::new(
        acting.clone(),
        Some(keyring.clone()),
        files.clone(),
        git.clone(),
        args.notify.config(),
        metrics.clone(),
    );
    // Sources and controllers run on the leader only: with SQLite this operator (the
    // only one, see the lock above); with PostgreSQL the holder of the lease.
    let (elected, mut is_elected) = tokio::sync::watch::channel(None::<i64>);
    let (leader_holder, election) = if store.is_shared() {
        // Writes through other replicas reach this one's controllers and watches.
        store.follow_other_writers(args.follow_poll_interval, shutdown.clone());
        let config = leader::LeaderConfig {
            holder: leader::holder_name(),
            ttl: args.lease_ttl,
            renew_every: args.lease_renew_interval,
        };
        config.validate().map_err(anyhow::Error::msg)?;
        let holder = config.holder.clone();
        let (store, metrics, shutdown) = (store.clone(), metrics.clone(), shutdown.clone());
        let election = tokio::spawn(async move {
            let outcome =
                leader::take_part(store, config, elected, fence, metrics, shutdown.clone()).await;
            if let Err(e) = &outcome {
                tracing::error!("{e}");
                shutdown.cancel();
            }
            outcome
        });
        (Some(holder), Some(election))
    } else {
        metrics.leader.set(1);
        let _ = elected.send(Some(0));
        (None, None)
    };
    {
        let (store, keyring, shutdown) = (acting, keyring.clone(), shutdown.clone());
        let (git, source_root, pipelines_dir) =
            (git.clone(), source_root.clone(), args.pipelines_dir.clone());
        tasks.spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                chosen = is_elected.wait_for(Option::is_some) => if chosen.is_err() { return },
            }
            let mut running = tokio::task::JoinSet::new();
            if let Some(git) = git {
                running.spawn(git.run(store.clone(), Some(keyring.clone()), shutdown.clone()));
            } else if pipelines_dir.is_some() {
                let source = DirSource::new(source_root);
                running.spawn(source.run(store.clone(), Some(keyring.clone()), shutdown.clone()));
            }
            running.spawn(controller.run(shutdown.clone()));
            running.spawn(schedules.run(shutdown.clone()));
            running.spawn(retention.run(shutdown.clone()));
            running.spawn(notifications.run(shutdown.clone()));
            while running.join_next().await.is_some() {}
        });
    }
    let state = AppState {
        store: store.clone(),
        keyring: Some(keyring),
        files,
        metrics,
        dev_mode: args.dev,
        runtime_probe: Some(runtime_probe),
        changes: server::ChangeLog::start(&store, shutdown.clone()),
        hooks: HooksState::new(
            store.clone(),
            git.clone(),
            args.git.webhook_secret.as_deref(),
        )
        .with_trigger_limit(args.webhook_rate_limit)
        .with_busy_policy(crate::server::busy::BusyPolicy {
            default: args.when_busy,
            max_concurrent_runs: args.docker.max_concurrent_runs,
        }),
        pages: Default::default(),
        tokens: Default::default(),
        leader_holder: leader_holder.clone(),
    };
    tracing::info!(store = store.backend_name(), %address, dev = args.dev, "flotilla {} serving", env!("CARGO_PKG_VERSION"));
    println!("Flotilla API:       http://{address}/apis/flotilla.dev/v1alpha1/pipelines");
    println!("Flotilla dashboard: http://{address}/");
    println!("{admin_token_note}");

    let signal_shutdown = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: finishing in-flight requests");
        signal_shutdown.cancel();
    });
    let http = HttpOptions {
        cors_origins: args.cors_origins.clone(),
    };
    server::serve(listener, state, http, shutdown.clone())
        .await
        .context("API server failed")?;
    shutdown.cancel();
    // Bounded: a controller stuck on a database or Docker call that no longer answers (a
    // partition) must not keep the process alive. Dropped, it takes no further step, and
    // running containers are left running either way.
    let stopped = tokio::time::timeout(Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if stopped.is_err() {
        tracing::warn!(
            "the controllers did not stop within 10 s (a call that does not answer?); exiting anyway"
        );
        tasks.abort_all();
    }
    // The election has ended too (no renewal after this point): a lost lease is why the
    // server stopped, reported with the exit code below.
    let outcome = match election {
        Some(election) => election
            .await
            .context("the leader election task failed")?
            .map_err(anyhow::Error::from),
        None => Ok(()),
    };
    // The controllers have stopped: a leader shutting down gives the lease up, so another
    // replica takes over at its next try instead of after the ttl (a rolling restart).
    if let (Some(holder), Ok(())) = (&leader_holder, &outcome) {
        let release = store.release_lease(leader::LEASE, holder);
        match tokio::time::timeout(Duration::from_secs(5), release).await {
            Ok(Ok(true)) => tracing::info!("gave the controller lease up"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => {
                tracing::warn!(code = e.code(), "cannot give the controller lease up: {e}")
            }
            Err(_) => tracing::warn!("giving the controller lease up did not answer within 5 s"),
        }
    }
    // Bounded: a database that stopped answering (a partition) must not keep the
    // process from exiting.
    if tokio::time::timeout(Duration::from_secs(5), store.close())
        .await
        .is_err()
    {
        tracing::warn!("the store's connections did not close within 5 s; exiting anyway");
    }
    outcome
}

/// Applies the default notifier of Fast-Flow's mail and Teams variables under its own
/// field manager, pruning it when they are gone. A failure is logged: the operator
/// starts without it.
async fn apply_fastflow_notifier(
    store: &Store,
    keyring: &Keyring,
    documents: &[serde_json::Value],
) {
    use crate::resource::manifest::Document;
    use crate::source::apply::{ApplyOptions, ApplyRequest};
    let documents: Vec<Document> = documents
        .iter()
        .enumerate()
        .map(|(i, value)| Document::synthetic("<Fast-Flow environment>", i, value.clone()))
        .collect();
    let request = ApplyRequest {
        documents: &documents,
        options: ApplyOptions {
            manager: super::fastflow_notify::MANAGER.to_owned(),
            prune: true,
            force: false,
            dry_run: false,
            diff: false,
        },
    };
    match request.execute(store, Some(keyring)).await {
        Ok(outcome) if !documents.is_empty() => tracing::info!(
            "Fast-Flow's mail/Teams settings: notifier {} ({} object(s) applied)",
            super::fastflow_notify::NOTIFIER,
            outcome.items.len()
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(
            code = e.code(),
            "the notifier of Fast-Flow's mail/Teams settings was not applied: {e}"
        ),
    }
}

/// Installs `--admin-token`, or on first start generates one into
/// `<data-dir>/admin-token` (mode 0600). Returns a line telling the user where it is.
async fn install_admin_token(store: &Store, args: &ServeArgs) -> anyhow::Result<String> {
    let admin = vec!["admin".to_owned()];
    if let Some(token) = &args.admin_token {
        store.put_token("admin", &hash_token(token), &admin).await?;
        return Ok("Admin token:        from FLOTILLA_ADMIN_TOKEN".to_owned());
    }
    let path = args.data_dir.join("admin-token");
    if store.list_tokens().await?.iter().any(|t| t.name == "admin") {
        return Ok(format!(
            "Admin token:        {} (export FLOTILLA_TOKEN=$(cat {}))",
            path.display(),
            path.display()
        ));
    }
    let token = generate_token();
    super::config::write_private(&path, format!("{token}\n").as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    store
        .put_token("admin", &hash_token(&token), &admin)
        .await?;
    Ok(format!(
        "Admin token:        written to {} (export FLOTILLA_TOKEN=$(cat {}))",
        path.display(),
        path.display()
    ))
}

/// The database file of a `sqlite:` URL (`sqlite://PATH`, `sqlite:PATH`, with or without
/// `?options`); `None` for other databases and in-memory SQLite.
/// Opens the store at `database`, by default SQLite in `data_dir` (made owner-only). A
/// SQLite file is locked for one process at a time: the lock is held until the returned
/// file is dropped (the kernel releases it even after kill -9).
pub(super) async fn open_store(
    data_dir: &Path,
    database: Option<&str>,
) -> anyhow::Result<(Store, Option<std::fs::File>)> {
    let database = match database {
        Some(url) => url.to_owned(),
        None => {
            let file = data_dir.join("flotilla.db");
            crate::private_fs::touch(&file)
                .with_context(|| format!("cannot create the database {}", file.display()))?;
            format!("sqlite://{}", file.display())
        }
    };
    let lock = match sqlite_path(&database) {
        Some(path) => Some(crate::private_fs::lock_exclusively(&path).map_err(|e| {
            anyhow::anyhow!(
                "the SQLite store {} is in use: {e}. One operator per SQLite file: stop the other one, give this one its own --data-dir, or share PostgreSQL (--database postgres://…) between several",
                path.display()
            )
        })?),
        None => None,
    };
    let store = Store::connect(&database)
        .await
        .with_context(|| format!("cannot open the {} store", redact_url(&database)))?;
    Ok((store, lock))
}

fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

/// Where runs find the CA bundle they trust.
const RUN_CA_BUNDLE: &str = "/etc/flotilla/ca.pem";

/// The CA bundle this host trusts: `SSL_CERT_FILE` when it names a file, else the first
/// distribution bundle that exists (Debian/Ubuntu, Fedora/RHEL, openSUSE, Alpine).
fn host_ca_bundle() -> Option<PathBuf> {
    let from_env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    from_env
        .into_iter()
        .chain(
            [
                "/etc/ssl/certs/ca-certificates.crt",
                "/etc/pki/tls/certs/ca-bundle.crt",
                "/etc/ssl/ca-bundle.pem",
                "/etc/ssl/cert.pem",
            ]
            .map(PathBuf::from),
        )
        .find(|path| path.is_file())
        .and_then(|path| std::fs::canonicalize(path).ok())
}

fn run_controller_config(
    args: &DockerArgs,
    data_dir: &std::path::Path,
    source_root: &std::path::Path,
    store_identity: &str,
) -> anyhow::Result<RunControllerConfig> {
    let uv_cache = args
        .uv_cache_dir
        .clone()
        .unwrap_or_else(|| data_dir.join("uv-cache"));
    let uv_python = uv_cache.with_file_name("uv-python");
    for dir in [&uv_cache, &uv_python] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        // Run containers use an unprivileged uid that must write the shared cache.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777));
        }
    }
    // Not the operator's own cache and Python paths (Fast-Flow's UV_CACHE_DIR among
    // them): runs use the mounts at the image's paths.
    let mut uv_env: std::collections::BTreeMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("UV_"))
        .filter(|(k, _)| k != "UV_CACHE_DIR" && k != "UV_PYTHON_INSTALL_DIR")
        .collect();
    let mut extra_mounts = Vec::new();
    let bundle = match &args.ca_bundle {
        Some(bundle) => Some(
            std::fs::canonicalize(bundle)
                .with_context(|| format!("the CA bundle {} does not exist", bundle.display()))?,
        ),
        None if args.no_host_ca_bundle => None,
        None => host_ca_bundle(),
    };
    if let Some(bundle) = bundle {
        tracing::info!(bundle = %bundle.display(), "runs trust this CA bundle (SSL_CERT_FILE)");
        extra_mounts.push(Mount {
            source: bundle.display().to_string(),
            target: RUN_CA_BUNDLE.into(),
            read_only: true,
        });
        // uv, OpenSSL (Python's ssl) and requests (which ignores SSL_CERT_FILE).
        for variable in ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"] {
            uv_env.insert(variable.into(), RUN_CA_BUNDLE.into());
        }
    }
    if let Some(wheels) = &args.wheelhouse {
        let wheels = std::fs::canonicalize(wheels)
            .with_context(|| format!("the wheelhouse {} does not exist", wheels.display()))?;
        extra_mounts.push(Mount {
            source: wheels.display().to_string(),
            target: "/wheels".into(),
            read_only: true,
        });
        uv_env
            .entry("UV_FIND_LINKS".into())
            .or_insert_with(|| "/wheels".into());
    }
    Ok(RunControllerConfig {
        runner: RunnerConfig {
            image: args.runner_image.clone(),
            source_root: args
                .host_pipelines_dir
                .clone()
                .unwrap_or_else(|| source_root.display().to_string()),
            uv_cache_dir: uv_cache.display().to_string(),
            uv_python_dir: uv_python.display().to_string(),
            user: args.run_user.clone(),
            uv_env,
            extra_mounts,
            instance: args.instance.clone(),
            store: store_identity.to_owned(),
            tmp_size: "256m".to_owned(),
            log_max_size: args.container_log_max_size.clone(),
        },
        source_root: source_root.to_path_buf(),
        data_dir: data_dir.to_path_buf(),
        max_concurrent_runs: args.max_concurrent_runs,
        workers: args.workers,
        resync_every: Duration::from_secs(30),
        stop_grace: args.stop_grace_period,
        sample_every: Duration::from_secs(2),
        secrets_dir: args.secrets_dir.clone(),
        tombstone_for: Duration::ZERO,
        fastflow_python: Some(args.default_python.clone()).filter(|p| !p.trim().is_empty()),
        fastflow_timeout: args.default_timeout.filter(|t| !t.is_zero()),
        max_trigger_depth: args.max_trigger_depth,
        log_max_bytes: args.log_max_size,
    })
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Hides the password of a database URL for messages.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sqlite_file_is_found_in_every_url_form() {
        for (url, path) in [
            (
                "sqlite:///var/lib/flotilla/flotilla.db",
                Some("/var/lib/flotilla/flotilla.db"),
            ),
            (
                "sqlite://data/flotilla.db?mode=rwc",
                Some("data/flotilla.db"),
            ),
            ("sqlite:flotilla.db", Some("flotilla.db")),
            ("sqlite::memory:", None),
            ("sqlite://", None),
            ("postgres://flotilla@db/flotilla", None),
        ] {
            assert_eq!(sqlite_path(url), path.map(PathBuf::from), "{url}");
        }
    }
}
