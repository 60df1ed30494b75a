//! `flotilla import fastflow`: moves a Fast-Flow installation into Flotilla's store
//! (see `crate::migrate::fastflow`). It writes the store directly, like `serve`, so it
//! runs where the operator's data dir (or PostgreSQL) is, with the operator stopped when
//! the store is SQLite.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::controller::run::logs::RunFiles;
use crate::migrate::fastflow::{self, ImportOptions, Keys};
use crate::secrets::Keyring;

/// Options of `flotilla import fastflow`.
#[derive(Debug, Args)]
pub struct FastFlowImportArgs {
    /// Fast-Flow's directory (holding data/fastflow.db), its data dir, the database file,
    /// or its DATABASE_URL (`sqlite:///path/to/fastflow.db` or `postgresql://…`).
    #[arg(long)]
    pub from: String,
    /// Fast-Flow's LOGS_DIR, when it is not `logs/` beside or inside the data dir (with a
    /// PostgreSQL --from, always).
    #[arg(long)]
    pub logs_dir: Option<PathBuf>,
    /// Fast-Flow's pipelines folder: every folder is checked and its differences
    /// reported (serve reads it with --pipelines-dir or --git-url).
    #[arg(long)]
    pub pipelines: Option<PathBuf>,
    /// Fast-Flow's ENCRYPTION_KEY, when Flotilla's (ENCRYPTION_KEY) is another: secrets
    /// are decrypted with it in memory and sealed again with Flotilla's.
    #[arg(long, env = "FASTFLOW_ENCRYPTION_KEY", hide_env_values = true)]
    pub encryption_key: Option<String>,
    /// Flotilla's data dir (as for `flotilla serve`).
    #[arg(long, env = "FLOTILLA_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Flotilla's database when not SQLite in the data dir (`postgres://…`). Not read
    /// from DATABASE_URL, which may still name Fast-Flow's.
    #[arg(long)]
    pub database: Option<String>,
    /// Namespace of everything imported.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// Take over the Secret fastflow-secrets (or a Schedule) applied by someone else.
    #[arg(long)]
    pub force: bool,
    /// Print the report and what would be written; write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs the import and prints its report.
pub async fn fastflow(args: FastFlowImportArgs) -> anyhow::Result<()> {
    let location = fastflow::database::locate(&args.from, args.logs_dir.as_deref())?;
    let flotilla_key = std::env::var("ENCRYPTION_KEY")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(|v| Keyring::from_env_value(&v).context("ENCRYPTION_KEY (Flotilla's key)"))
        .transpose()?;
    let fastflow_key = args
        .encryption_key
        .as_deref()
        .map(|v| Keyring::from_env_value(v).context("--encryption-key (Fast-Flow's key)"))
        .transpose()?;
    crate::private_fs::create_dir(&args.data_dir)
        .with_context(|| format!("cannot create the data dir {}", args.data_dir.display()))?;
    let (store, _lock) = super::serve::open_store(&args.data_dir, args.database.as_deref())
        .await
        .context("the import writes Flotilla's store directly")?;
    let data_dir = std::fs::canonicalize(&args.data_dir).context("the data dir vanished")?;
    let files = RunFiles::new(&data_dir);
    let options = ImportOptions {
        location,
        pipelines: args.pipelines,
        namespace: args.namespace,
        keys: Keys {
            flotilla: flotilla_key.as_ref(),
            fastflow: fastflow_key.as_ref(),
        },
        force: args.force,
        dry_run: args.dry_run,
    };
    let result = fastflow::import(&store, &files, &options).await;
    store.close().await;
    let report = result?;
    print!("{}", report.render());
    Ok(())
}
