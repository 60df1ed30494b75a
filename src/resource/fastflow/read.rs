//! Finding and reading a Fast-Flow folder's metadata: the folder must be a plain path
//! inside the pipelines directory and hold `main.py`; its `pipeline.json` (or
//! `<folder>.json`) is read with a size limit, without following links out of the root,
//! and parsed as a JSON object together with the position of each top-level key.
//!
//! It reports problems with the file itself (unreadable, too large, not UTF-8, invalid
//! JSON); what the keys mean is the translator's business.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use serde_json::{Map, Value};

use super::MAX_METADATA_BYTES;
use super::values::describe;
use crate::resource::error::ManifestError;
use crate::resource::manifest::Position;
use crate::resource::validate::check_relative_path;

/// Checks that `folder` is a relative path made of plain folder names (no `..`, `.` or root).
pub(super) fn check_folder_path(folder: &str) -> Result<(), String> {
    check_relative_path(folder)?;
    if Path::new(folder)
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(format!(
            "{folder:?} is not a plain folder path; give the folder's path relative to the pipelines directory (e.g. team/etl)"
        ));
    }
    Ok(())
}

/// The folder's real path, refusing one that a symbolic link leads out of the root.
pub(super) fn resolve_inside(root: &Path, folder: &str) -> Result<PathBuf, ManifestError> {
    let dir = crate::resource::path::resolve_inside(root, folder)
        .map_err(|e| path_problem(folder, e))?
        .path;
    if !dir.is_dir() {
        return Err(ManifestError::file(
            folder,
            "is not a folder inside the pipelines directory",
        ));
    }
    Ok(dir)
}

/// A containment problem of `file`, worded for a manifest error that already names it.
fn path_problem(file: &str, error: crate::resource::path::PathError) -> ManifestError {
    use crate::resource::path::PathError;
    match error {
        PathError::Unreadable { message, .. } => {
            ManifestError::file(file, format!("cannot be read: {message}"))
        }
        other => ManifestError::file(file, other.to_string()),
    }
}

/// Where each top-level key of a metadata file stands.
pub(super) type KeyPositions = HashMap<String, Position>;

/// A parsed metadata file.
pub(super) struct MetadataFile {
    /// Path relative to the source root, as errors name it.
    pub(super) file: String,
    pub(super) fields: Map<String, Value>,
    pub(super) positions: KeyPositions,
}

/// Reads `pipeline.json`, else `<folder>.json`; `None` when the folder has neither.
pub(super) fn read_metadata(
    root: &Path,
    dir: &Path,
    folder: &str,
    warnings: &mut Vec<String>,
) -> Result<Option<MetadataFile>, ManifestError> {
    let last = Path::new(folder)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let own_name = format!("{last}.json");
    let preferred = dir.join("pipeline.json").is_file();
    let fallback = own_name != "pipeline.json" && dir.join(&own_name).is_file();
    let chosen = match (preferred, fallback) {
        (true, true) => {
            warnings.push(format!(
                "{folder}/{own_name}: ignored: {folder}/pipeline.json is present and takes precedence (as in Fast-Flow); merge the two and delete this one"
            ));
            "pipeline.json"
        }
        (true, false) => "pipeline.json",
        (false, true) => own_name.as_str(),
        (false, false) => return Ok(None),
    };
    let file = format!("{folder}/{chosen}");
    let text = read_bounded(root, &file)?;
    let (fields, positions) = parse_metadata(&file, &text, warnings)?;
    Ok(Some(MetadataFile {
        file,
        fields,
        positions,
    }))
}

/// The bytes of `file` (relative to `root`), refusing a link out of `root` and anything
/// over [`MAX_METADATA_BYTES`].
fn read_bounded(root: &Path, file: &str) -> Result<Vec<u8>, ManifestError> {
    use crate::resource::path::{self, PathError};
    let unreadable = |e: std::io::Error| ManifestError::file(file, format!("cannot be read: {e}"));
    let real = match path::resolve_inside(root, file) {
        Ok(resolved) => resolved.path,
        Err(PathError::OutsideRoot { resolved, .. }) => {
            return Err(ManifestError::file(
                file,
                format!(
                    "is a symbolic link leading out of the pipelines directory (to {resolved}); replace it with the file itself"
                ),
            ));
        }
        Err(e) => return Err(path_problem(file, e)),
    };
    let too_large = |size: u64| {
        ManifestError::file(
            file,
            format!(
                "is {size} bytes; pipeline metadata is limited to {} MiB",
                MAX_METADATA_BYTES / (1024 * 1024)
            ),
        )
    };
    let opened = std::fs::File::open(&real).map_err(unreadable)?;
    let size = opened.metadata().map_err(unreadable)?.len();
    if size > MAX_METADATA_BYTES {
        return Err(too_large(size));
    }
    let mut bytes = Vec::new();
    opened
        .take(MAX_METADATA_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > MAX_METADATA_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Parses the metadata text into its top-level fields and where each key stands.
fn parse_metadata(
    file: &str,
    bytes: &[u8],
    warnings: &mut Vec<String>,
) -> Result<(Map<String, Value>, KeyPositions), ManifestError> {
    let bytes = match bytes.strip_prefix(b"\xEF\xBB\xBF") {
        Some(rest) => {
            warnings.push(format!(
                "{file}: starts with a UTF-8 byte order mark, which Python's json module (and so Fast-Flow) rejects; it was skipped, save the file without it"
            ));
            rest
        }
        None => bytes,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| {
        ManifestError::file(
            file,
            format!(
                "is not UTF-8 text (invalid byte at offset {}); save it as UTF-8",
                e.valid_up_to()
            ),
        )
    })?;
    if text.trim().is_empty() {
        return Err(ManifestError::file(
            file,
            "is empty; write {} (every key is optional) or delete the file",
        ));
    }
    let value: Value = serde_json::from_str(text).map_err(|e| json_error(file, &e))?;
    match value {
        Value::Object(fields) => Ok((fields, top_level_key_positions(text))),
        other => Err(ManifestError {
            line: Some(1),
            ..ManifestError::file(
                file,
                format!(
                    "must be a JSON object such as {{\"description\": \"...\"}}, found {}",
                    describe(&other)
                ),
            )
        }),
    }
}

/// A serde_json syntax error as a located [`ManifestError`] with a hint on how to fix it.
fn json_error(file: &str, error: &serde_json::Error) -> ManifestError {
    let full = error.to_string();
    let what = match full.rfind(" at line ") {
        Some(cut) => &full[..cut],
        None => full.as_str(),
    };
    let hint = if what.contains("trailing comma") {
        "remove the comma before the closing bracket or brace"
    } else if what.contains("key must be a string") {
        "put every key in double quotes, e.g. \"tags\": [\"a\"]"
    } else if error.is_eof() {
        "the file ends too early: a closing } or ] (or a closing quote) is missing"
    } else if what.starts_with("expected `,`") {
        "a comma is missing between two entries, or a bracket is not closed"
    } else {
        "fix the JSON syntax here"
    };
    ManifestError {
        line: Some(error.line() as u64).filter(|l| *l > 0),
        column: Some(error.column() as u64).filter(|c| *c > 0),
        ..ManifestError::file(
            file,
            format!(
                "is not valid JSON: {what}; {hint}. Check it with `python3 -m json.tool {file}`"
            ),
        )
    }
}

/// Line and column of each key of the root object (first occurrence), found by a small
/// scanner over text that already parsed as JSON.
fn top_level_key_positions(text: &str) -> KeyPositions {
    let mut positions = HashMap::new();
    let mut depth = 0usize;
    let (mut line, mut column) = (1u64, 0u64);
    let mut pending: Option<(String, Position)> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\n' {
            line += 1;
            column = 0;
            continue;
        }
        column += 1;
        match c {
            '{' | '[' => depth += 1,
            '}' | ']' => depth = depth.saturating_sub(1),
            '"' => {
                let start = Position { line, column };
                let mut string = String::new();
                while let Some(c) = chars.next() {
                    column += 1;
                    match c {
                        '\\' => {
                            if let Some(escaped) = chars.next() {
                                column += 1;
                                string.push(escaped);
                            }
                        }
                        '"' => break,
                        _ => string.push(c),
                    }
                }
                pending = (depth == 1).then_some((string, start));
            }
            ':' => {
                if let Some((key, at)) = pending.take() {
                    positions.entry(key).or_insert(at);
                }
            }
            c if c.is_whitespace() => {}
            _ => pending = None,
        }
    }
    positions
}
