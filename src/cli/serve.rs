//! `flotilla serve`: wires the store, the sources and the API server into one tokio
//! runtime and shuts them down together on SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::secrets::Keyring;
use crate::server::{self, AppState};
use crate::source::dir::DirSource;
use crate::store::Store;

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
}

/// Runs the operator until SIGINT or SIGTERM.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_tracing(args.log_format);
    let keyring = Keyring::from_env_value(args.encryption_key.as_deref().unwrap_or_default())
        .context("refusing to start")?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create the data dir {}", args.data_dir.display()))?;
    let database = match &args.database {
        Some(url) => url.clone(),
        None => format!("sqlite://{}", args.data_dir.join("flotilla.db").display()),
    };
    let store = Store::connect(&database)
        .await
        .with_context(|| format!("cannot open the {} store", redact_url(&database)))?;
    let mut listen = args.listen;
    if let Some(port) = args.port {
        listen.set_port(port);
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| {
            format!("cannot listen on {listen} (port in use? set --listen or PORT)")
        })?;
    let address = listener.local_addr().context("listener has no address")?;

    let shutdown = CancellationToken::new();
    let keyring = Arc::new(keyring);
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(dir) = &args.pipelines_dir {
        let dir = std::fs::canonicalize(dir)
            .with_context(|| format!("the pipelines dir {} does not exist", dir.display()))?;
        let source = DirSource::new(dir);
        tasks.spawn(source.run(store.clone(), Some(keyring.clone()), shutdown.clone()));
    }
    let state = AppState {
        store: store.clone(),
        keyring: Some(keyring),
    };
    tracing::info!(store = store.backend_name(), %address, "flotilla {} serving", env!("CARGO_PKG_VERSION"));
    println!("Flotilla API:       http://{address}/apis/flotilla.dev/v1alpha1/pipelines");
    println!("Flotilla dashboard: http://{address}/");

    let signal_shutdown = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: finishing in-flight requests");
        signal_shutdown.cancel();
    });
    server::serve(listener, state, shutdown.clone())
        .await
        .context("API server failed")?;
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
    store.close().await;
    Ok(())
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
