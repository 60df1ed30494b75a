//! The client configuration written by `flotilla login`: server URL and token in
//! `$XDG_CONFIG_HOME/flotilla/config.json` (or `~/.config/…`), readable only by the user.

use std::path::PathBuf;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Saved connection settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClientConfig {
    /// Server URL.
    pub server: String,
    /// Bearer token.
    pub token: Option<String>,
}

fn path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("flotilla").join("config.json"))
}

/// The saved configuration, if any.
pub fn load() -> Option<ClientConfig> {
    let text = std::fs::read_to_string(path()?).ok()?;
    serde_json::from_str(&text).ok()
}

/// Saves the configuration with mode 0600; returns where.
pub fn save(config: &ClientConfig) -> anyhow::Result<PathBuf> {
    let path = path().context("neither XDG_CONFIG_HOME nor HOME is set")?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    write_private(&path, serde_json::to_string_pretty(config)?.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Writes a file readable and writable only by its owner (mode 0600).
pub fn write_private(path: &std::path::Path, contents: &[u8]) -> std::io::Result<()> {
    crate::private_fs::write(path, contents)
}
