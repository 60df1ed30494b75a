//! The `flotilla` command line: `serve` runs the operator; every other verb is a client
//! of its HTTP API, like kubectl.

mod client;
mod commands;
mod config;
mod describe;
mod fastflow_env;
mod fastflow_notify;
mod import;
mod output;
mod runs;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

pub use client::{ApiClient, ClientError};
pub use output::OutputFormat;
pub use serve::ServeArgs;

/// Flotilla: Python pipelines on Docker hosts, declared as YAML and converged by a
/// reconciler.
#[derive(Debug, Parser)]
#[command(name = "flotilla", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// How clients reach the server.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// URL of the Flotilla server (default: from `flotilla login`, else
    /// http://127.0.0.1:8000).
    #[arg(long, env = "FLOTILLA_SERVER", global = true)]
    pub server: Option<String>,
    /// Bearer token for the API (default: from `flotilla login`).
    #[arg(long, env = "FLOTILLA_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
}

impl ClientArgs {
    fn client(&self) -> ApiClient {
        let saved = config::load();
        let server = self
            .server
            .clone()
            .or_else(|| saved.as_ref().map(|c| c.server.clone()))
            .unwrap_or_else(|| "http://127.0.0.1:8000".to_owned());
        let token = self.token.clone().or_else(|| saved.and_then(|c| c.token));
        ApiClient::new(&server, token)
    }
}

/// Files given with `-f`.
#[derive(Debug, Clone, Args)]
pub struct FileArgs {
    /// Manifest file, directory of manifests (*.yaml, *.yml), or `-` for stdin. Repeatable.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the operator: API server, sources and controllers.
    Serve(Box<ServeArgs>),
    /// Create or update resources from manifests.
    Apply {
        /// Manifests.
        #[command(flatten)]
        files: FileArgs,
        /// Delete resources applied earlier by this field manager and absent now.
        #[arg(long)]
        prune: bool,
        /// Show what would change without changing anything.
        #[arg(long)]
        dry_run: bool,
        /// Take over resources owned by another field manager.
        #[arg(long)]
        force: bool,
        /// Field manager recorded on the resources.
        #[arg(long, default_value = "cli")]
        field_manager: String,
        /// Server connection.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show what `apply` would change, as a unified diff.
    Diff {
        /// Manifests.
        #[command(flatten)]
        files: FileArgs,
        /// Include deletions a `--prune` apply would make.
        #[arg(long)]
        prune: bool,
        /// Field manager the diff is computed for.
        #[arg(long, default_value = "cli")]
        field_manager: String,
        /// Server connection.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List resources, or show one.
    Get {
        /// Kind: pipeline(s)/pl, schedule(s)/sched, secret(s)/sec, run(s)/rn, events/ev, sources,
        /// leader.
        kind: String,
        /// Name of one resource.
        name: Option<String>,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum)]
        output: Option<OutputFormat>,
        /// Namespace.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// List across all namespaces.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// With `get events`: only events of this object, e.g. `schedule/nightly`.
        #[arg(long = "for", value_name = "KIND/NAME")]
        involved: Option<String>,
        /// Server connection.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Sync the git source now and print what it did (exit 1 if the commit was refused).
    Sync {
        /// Only request the sync; do not wait for its result.
        #[arg(long)]
        no_wait: bool,
        /// Server connection.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show one resource in detail.
    Describe {
        /// Kind.
        kind: String,
        /// Name.
        name: String,
        /// Namespace.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// Server connection.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete resources by kind and name, or those declared in manifests.
    Delete {
        /// Kind (omit with -f).
        kind: Option<String>,
        /// Name (omit with -f).
        name: Option<String>,
        /// Manifests whose resources are deleted.
        #[arg(short = 'f', long = "filename")]
        files: Vec<PathBuf>,
        /// Namespace.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// Succeed when the resource does not exist.
        #[arg(long)]
        ignore_not_found: bool,
        /// Server connection.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Start a run of a pipeline.
    Run {
        /// Pipeline name.
        pipeline: String,
        /// Environment variable for this run (repeatable): `--env KEY=VALUE`.
        #[arg(short = 'e', long = "env", value_parser = parse_key_value)]
        env: Vec<(String, String)>,
        /// Follow the logs and exit with the run's exit code.
        #[arg(long)]
        wait: bool,
        /// Namespace.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// Server connection.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Run a run's pipeline again, with the same run env (trigger parameters).
    Rerun {
        /// Run name.
        run: String,
        /// Follow the logs and exit with the new run's exit code.
        #[arg(long)]
        wait: bool,
        /// Namespace.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// Server connection.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Cancel a run: its container is stopped (SIGTERM, grace period, SIGKILL).
    Cancel {
        /// Run name.
        run: String,
        /// Namespace.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// Server connection.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print the output of a run.
    Logs {
        /// Run name.
        run: String,
        /// Keep streaming until the run ends.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Attempt number (default: the latest).
        #[arg(long)]
        attempt: Option<u32>,
        /// Prefix lines with their timestamp and stream.
        #[arg(long)]
        timestamps: bool,
        /// Namespace.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// Server connection.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print which pipelines' runs start which (their `triggers`), as a tree.
    Graph {
        /// Print the graph's nodes and edges as JSON instead.
        #[arg(short = 'o', long = "output", value_enum)]
        output: Option<OutputFormat>,
        /// Namespace.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// Server connection.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Move another system's installation into Flotilla's store.
    #[command(subcommand)]
    Import(ImportCommand),
    /// Print the CustomResourceDefinitions of every Flotilla kind as YAML.
    Crds,
    /// Print the client version and, when reachable, the server's.
    Version {
        /// Server connection.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Secret helpers.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Notifier helpers.
    #[command(subcommand)]
    Notify(NotifyCommand),
    /// API tokens (needs an admin token).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Save a server URL and token for later commands (in ~/.config/flotilla/config.json,
    /// mode 0600).
    Login {
        /// Server URL.
        #[arg(long)]
        server: String,
        /// Bearer token.
        #[arg(long, env = "FLOTILLA_TOKEN", hide_env_values = true)]
        token: String,
    },
}

/// `flotilla import …`.
#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// A Fast-Flow installation: its secret store, the schedules made in its UI and its
    /// run history with logs, after a report of every difference (pipeline folders are
    /// read by `serve` as they are). Safe to run twice.
    Fastflow(Box<import::FastFlowImportArgs>),
}

/// `flotilla token …`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; it is printed once and stored only as a hash.
    Create {
        /// Unique name.
        #[arg(long)]
        name: String,
        /// Comma-separated scopes: resources:read, resources:write, runs:read, runs:write,
        /// secrets:write, sources:write, admin.
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// Lifetime, e.g. 30d (default: no expiry).
        #[arg(long)]
        expires: Option<String>,
        /// Server connection.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List tokens (names, scopes, expiry; never the tokens).
    List {
        /// Server connection.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke a token.
    Revoke {
        /// Token name.
        name: String,
        /// Server connection.
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// `flotilla notify …`.
#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Send a test message through every channel of a notifier; fails unless every
    /// channel took it, and says what each one answered.
    Test {
        /// Notifier name.
        name: String,
        /// Namespace.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// Server connection.
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// `flotilla secret …`.
#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Print a new random Fernet key for ENCRYPTION_KEY.
    GenKey,
    /// Create a secret or set some of its keys through the API: `KEY=VALUE` or
    /// `KEY=@FILE`. Values are encrypted by the server and never shown again.
    Set {
        /// Secret name.
        name: String,
        /// `KEY=VALUE` or `KEY=@FILE` (repeatable).
        #[arg(required = true, value_parser = parse_key_value)]
        pairs: Vec<(String, String)>,
        /// Namespace.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// Server connection.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Re-encrypt every stored secret value with the newest ENCRYPTION_KEY of the server.
    Rotate {
        /// Server connection.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Encrypt a value (stdin or --from-file) with ENCRYPTION_KEY and print the token.
    Encrypt {
        /// Read the value from this file instead of stdin.
        #[arg(long)]
        from_file: Option<PathBuf>,
        /// Encryption keys (comma-separated, newest first).
        #[arg(long, env = "ENCRYPTION_KEY", hide_env_values = true)]
        encryption_key: Option<String>,
    },
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))
}

/// Runs the CLI and returns the process exit code: 0 success, 1 error (2, usage, is
/// clap's).
pub fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let mut cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if let (Command::Serve(args), Some(serve)) =
        (&mut cli.command, matches.subcommand_matches("serve"))
    {
        match fastflow_env::apply(args, serve, |name| std::env::var(name).ok()) {
            Ok(notes) => args.fastflow_notes = notes,
            Err(e) => {
                eprintln!("error: refusing to start: {e}");
                return ExitCode::FAILURE;
            }
        }
        match fastflow_notify::documents(|name| std::env::var(name).ok()) {
            Ok(documents) => args.fastflow_notifier = documents,
            Err(e) => {
                eprintln!("error: refusing to start: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
