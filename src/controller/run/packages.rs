//! The package set an attempt is installed from, read on the operator's side from the
//! dependency file the run uses ([`Dependencies`]), so `describe` and the API show which
//! versions ran. A lock (`uv.lock`, `pylock.toml`, `requirements.txt.lock`) names one
//! version per package; a `requirements.txt` may name ranges, which are shown as
//! written and marked unpinned.
//!
//! Only the few keys needed are read, line by line: `[[package]]` (uv.lock) and
//! `[[packages]]` (pylock.toml) tables with their `name` and `version`, and
//! requirement lines without options, comments, hashes or markers.

use super::container::Dependencies;
use crate::resource::types::Packages;

/// The package set of `text`, the content of `dependencies`' file.
pub fn read_packages(dependencies: Dependencies, text: &str) -> Packages {
    let requirements = match dependencies {
        Dependencies::UvLock => toml_tables(text, "[[package]]", true),
        Dependencies::PyLock => toml_tables(text, "[[packages]]", false),
        Dependencies::File(_) => requirement_lines(text),
    };
    let pinned = requirements.iter().all(|r| is_pin(r));
    Packages {
        file: dependencies.file().to_owned(),
        requirements,
        pinned,
    }
}

fn is_pin(requirement: &str) -> bool {
    requirement
        .split_once("==")
        .is_some_and(|(_, version)| !version.contains(['*', ',', '<', '>', '=', '!']))
}

/// `name==version` of every table `header` opens. With `skip_projects`, a table whose
/// `source` is the project itself (`virtual`, `editable` or a `directory` of ".") is
/// left out: it is the pipeline, not a package.
fn toml_tables(text: &str, header: &str, skip_projects: bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<(Option<String>, Option<String>, bool)> = None;
    let mut flush = |table: Option<(Option<String>, Option<String>, bool)>| {
        if let Some((Some(name), version, project)) = table
            && !(skip_projects && project)
        {
            out.push(match version {
                Some(version) => format!("{name}=={version}"),
                None => name,
            });
        }
    };
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            flush(current.take());
            if line == header {
                current = Some((None, None, false));
            }
            continue;
        }
        let Some((name, version, project)) = current.as_mut() else {
            continue;
        };
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "name" => *name = quoted(value),
            "version" => *version = quoted(value),
            "source" => {
                *project = value.contains("virtual")
                    || value.contains("editable")
                    || value.contains("directory = \".\"");
            }
            _ => {}
        }
    }
    flush(current);
    out.sort();
    out
}

fn quoted(value: &str) -> Option<String> {
    let inner = value.strip_prefix('"')?;
    Some(inner[..inner.find('"')?].to_owned())
}

/// Requirement lines as written, without comments, options (`-r`, `--hash`, …),
/// continuation backslashes, markers and spaces.
fn requirement_lines(text: &str) -> Vec<String> {
    let mut out: Vec<String> = text
        .lines()
        .map(|line| line.split(" #").next().unwrap_or(line).trim())
        .filter(|line| !line.is_empty() && !line.starts_with('#') && !line.starts_with('-'))
        .map(|line| {
            let line = line.trim_end_matches('\\').trim();
            let line = line.split(';').next().unwrap_or(line);
            let line = line.split(" --").next().unwrap_or(line);
            line.split_whitespace().collect::<String>()
        })
        .filter(|line| !line.is_empty())
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uv_lock_names_its_packages_but_not_the_project() {
        let text = r#"version = 1
requires-python = ">=3.9"

[[package]]
name = "six"
version = "1.16.0"
source = { registry = "https://pypi.org/simple" }
wheels = [{ url = "https://files/six.whl", hash = "sha256:8a" }]

[[package]]
name = "uses-six"
version = "0.1.0"
source = { virtual = "." }
dependencies = [{ name = "six" }]

[package.metadata]
requires-dist = [{ name = "six", specifier = "==1.16.0" }]

[[package]]
name = "certifi"
version = "2024.8.30"
source = { registry = "https://pypi.org/simple" }
"#;
        let packages = read_packages(Dependencies::UvLock, text);
        assert_eq!(packages.file, "uv.lock");
        assert_eq!(packages.requirements, ["certifi==2024.8.30", "six==1.16.0"]);
        assert!(packages.pinned);
    }

    #[test]
    fn a_pylock_names_its_packages() {
        let text = r#"lock-version = "1.0"
created-by = "uv"

[[packages]]
name = "six"
version = "1.16.0"
index = "file:///wheels"
wheels = [{ url = "file:///wheels/six-1.16.0-py2.py3-none-any.whl" }]
"#;
        let packages = read_packages(Dependencies::PyLock, text);
        assert_eq!(packages.requirements, ["six==1.16.0"]);
        assert!(packages.pinned);
    }

    #[test]
    fn requirement_files_keep_what_they_say_and_ranges_are_unpinned() {
        let lock = "# uv pip compile requirements.txt -o requirements.txt.lock\nsix==1.16.0 \\\n    --hash=sha256:8a\n    # via -r requirements.txt\nrequests==2.32.3 ; python_version >= \"3.8\"\n";
        let packages = read_packages(Dependencies::File("requirements.txt.lock"), lock);
        assert_eq!(packages.requirements, ["requests==2.32.3", "six==1.16.0"]);
        assert!(packages.pinned);
        let ranges = "-r base.txt\npandas >= 2.0  # data\nsix==1.16.0\n";
        let packages = read_packages(Dependencies::File("requirements.txt"), ranges);
        assert_eq!(packages.requirements, ["pandas>=2.0", "six==1.16.0"]);
        assert!(!packages.pinned);
    }
}
