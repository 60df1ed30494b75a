//! Building the container of one attempt from the pipeline, the run and the operator's
//! configuration. Pure: the caller resolves files, secrets and schedules first.

use std::collections::BTreeMap;

use crate::controller::runtime::{ContainerSpec, Mount, labels};
use crate::resource::quantity::{parse_cpus, parse_duration, parse_memory};
use crate::resource::types::{NotebookSpec, PipelineSpec};

/// Where code and caches live, as paths on the Docker host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunnerConfig {
    /// Default runner image (`--runner-image`).
    pub image: String,
    /// Host directory of the source root (the pipelines directory).
    pub source_root: String,
    /// Host directory of the shared uv cache, mounted at `/cache/uv`.
    pub uv_cache_dir: String,
    /// Host directory of uv's Python installs, mounted at `/cache/python`.
    pub uv_python_dir: String,
    /// `uid:gid` runs use.
    pub user: String,
    /// `UV_*` settings passed from the operator's environment into every run.
    pub uv_env: BTreeMap<String, String>,
    /// Further read-only mounts of every run (CA bundle, wheelhouse).
    pub extra_mounts: Vec<Mount>,
    /// Value of the `flotilla.dev/managed-by` label (operator instance).
    pub instance: String,
    /// Value of the `flotilla.dev/store` label: the store's identity.
    pub store: String,
    /// Size of the writable `/tmp`.
    pub tmp_size: String,
    /// Largest container log Docker keeps before Flotilla has read it.
    pub log_max_size: String,
}

/// Identity of the attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptIdentity<'a> {
    /// Run uid.
    pub run_uid: &'a str,
    /// `namespace/name` of the run.
    pub run_name: &'a str,
    /// Pipeline name.
    pub pipeline: &'a str,
    /// 1-based attempt.
    pub attempt: u32,
}

/// Where a pipeline's packages come from, found in its folder by
/// [`DEPENDENCY_FILES`] order: locks first, so versions do not drift between runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dependencies {
    /// A file uv installs from directly (`--with-requirements`):
    /// `requirements.txt.lock` (Fast-Flow's lock file, from `uv pip compile`) or
    /// `requirements.txt`.
    File(&'static str),
    /// A PEP 751 `pylock.toml`: `uv run --with-requirements` cannot read it (it takes it
    /// for an empty requirements file), so the run installs it into a virtual
    /// environment of its own in /tmp (`uv pip install -r`, every artifact and hash as
    /// locked) and runs the entrypoint with that environment's Python.
    PyLock,
    /// A uv project (`pyproject.toml` with `uv.lock`): the lock's packages are exported
    /// in the container (`uv export --frozen`) and installed like a requirements file,
    /// so runs share uv's cached environments and no `.venv` is written to the folder.
    UvLock,
}

impl Dependencies {
    /// The file that pins or declares the packages.
    pub fn file(self) -> &'static str {
        match self {
            Dependencies::File(file) => file,
            Dependencies::PyLock => "pylock.toml",
            Dependencies::UvLock => "uv.lock",
        }
    }
}

/// Dependency files in order of preference; `uv.lock` counts only beside a
/// `pyproject.toml`.
pub const DEPENDENCY_FILES: [Dependencies; 4] = [
    Dependencies::PyLock,
    Dependencies::UvLock,
    Dependencies::File("requirements.txt.lock"),
    Dependencies::File("requirements.txt"),
];

/// Where a uv project's exported lock is written in the container.
const EXPORTED_LOCK: &str = "/tmp/.flotilla-uv-lock.txt";

/// The virtual environment a `pylock.toml` is installed into.
const PYLOCK_VENV: &str = "/tmp/.flotilla-venv";

/// The program that runs a notebook's code cells (`python -c`).
pub const NOTEBOOK_RUNNER: &str = include_str!("notebook_runner.py");

/// What the runner prints before the failing cell's account, on stderr.
pub const NOTEBOOK_FAILURE_MARK: &str = "flotilla-notebook: ";

/// True when the entrypoint is a notebook.
pub fn is_notebook(entrypoint: &str) -> bool {
    entrypoint.ends_with(".ipynb")
}

/// The cells' retry policy as the runner reads it: a JSON list of
/// `{"retries", "delay"}` (seconds), by code-cell index.
fn notebook_cells(notebook: Option<&NotebookSpec>) -> String {
    let cells: Vec<serde_json::Value> = notebook
        .map(|n| n.cells.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|cell| {
            let delay = cell
                .delay
                .as_deref()
                .and_then(|d| parse_duration(d).ok())
                .map_or(1.0, |d| d.as_secs_f64());
            serde_json::json!({ "retries": cell.retries, "delay": delay })
        })
        .collect();
    serde_json::Value::Array(cells).to_string()
}

/// Where a writable pipeline's folder is mounted (read-only) to be copied from.
pub const WRITABLE_SOURCE: &str = "/pipeline-source";

/// Container name of an attempt: unique per run and attempt, so a repeated create after
/// a crash finds the existing container instead of starting a second one.
pub fn container_name(run_uid: &str, attempt: u32) -> String {
    format!("flotilla-{run_uid}-{attempt}")
}

/// Environment layers, lowest precedence first.
#[derive(Clone, Debug, Default)]
pub struct EnvLayers<'a> {
    /// From the schedule that created the run.
    pub schedule: Option<&'a BTreeMap<String, String>>,
    /// Decrypted secret values.
    pub secrets: Option<&'a BTreeMap<String, String>>,
    /// From the run itself (trigger parameters).
    pub run: Option<&'a BTreeMap<String, String>>,
}

/// Builds the container spec. `dependencies` says where uv gets the packages from (see
/// [`DEPENDENCY_FILES`]), if anywhere.
pub fn build_container_spec(
    config: &RunnerConfig,
    id: &AttemptIdentity<'_>,
    pipeline: &PipelineSpec,
    source_path: &str,
    dependencies: Option<Dependencies>,
    env_layers: &EnvLayers<'_>,
) -> ContainerSpec {
    let entrypoint = pipeline
        .entrypoint
        .clone()
        .unwrap_or_else(|| "main.py".to_owned());
    let mut command = vec!["uv".to_owned(), "run".to_owned(), "--no-project".to_owned()];
    if let Some(python) = &pipeline.python {
        command.extend(["--python".to_owned(), python.clone()]);
    }
    match dependencies {
        Some(Dependencies::File(file)) => {
            command.extend(["--with-requirements".to_owned(), file.to_owned()]);
        }
        Some(Dependencies::UvLock) => {
            command.extend(["--with-requirements".to_owned(), EXPORTED_LOCK.to_owned()]);
        }
        Some(Dependencies::PyLock) => {
            command = vec![format!("{PYLOCK_VENV}/bin/python")];
        }
        None => {}
    }
    let notebook = is_notebook(&entrypoint);
    if notebook {
        // The environment's Python runs the cells (see notebook_runner.py).
        if dependencies != Some(Dependencies::PyLock) {
            command.push("python".to_owned());
        }
        command.extend(["-c".to_owned(), NOTEBOOK_RUNNER.to_owned()]);
    }
    command.push(entrypoint);
    let writable = pipeline.source.as_ref().is_some_and(|s| s.writable);
    // Steps before uv, run by a shell that then `exec`s uv, which stays the container's
    // main process (signals, exit code).
    let mut steps = Vec::new();
    if writable {
        // The folder is copied into the run's own /pipeline. Docker makes a working
        // directory root's 0755 even over a tmpfs, so the shell changes into /pipeline
        // itself and the container starts in /tmp.
        steps.push(format!("cp -R {WRITABLE_SOURCE}/. /pipeline/"));
        steps.push("cd /pipeline".to_owned());
    }
    if dependencies == Some(Dependencies::PyLock) {
        // The pipeline's `python` reaches `uv venv` as UV_PYTHON (set below).
        steps.push(format!("uv venv --quiet {PYLOCK_VENV}"));
        steps.push(format!(
            "uv pip install --quiet --python {PYLOCK_VENV} -r pylock.toml"
        ));
    }
    if dependencies == Some(Dependencies::UvLock) {
        steps.push(format!(
            "uv export --frozen --no-emit-project --no-hashes --quiet --format requirements-txt -o {EXPORTED_LOCK}"
        ));
    }
    if !steps.is_empty() {
        steps.push("exec \"$@\"".to_owned());
        command.splice(
            0..0,
            [
                "/bin/sh".to_owned(),
                "-c".to_owned(),
                steps.join(" && "),
                "flotilla-setup".to_owned(),
            ],
        );
    }

    let mut env = BTreeMap::new();
    env.insert("HOME".to_owned(), "/tmp".to_owned());
    env.insert("PYTHONUNBUFFERED".to_owned(), "1".to_owned());
    env.insert("UV_CACHE_DIR".to_owned(), "/cache/uv".to_owned());
    env.insert(
        "UV_PYTHON_INSTALL_DIR".to_owned(),
        "/cache/python".to_owned(),
    );
    env.insert("UV_LINK_MODE".to_owned(), "copy".to_owned());
    env.insert("UV_NO_PROGRESS".to_owned(), "1".to_owned());
    if let (Some(Dependencies::PyLock), Some(python)) = (dependencies, &pipeline.python) {
        env.insert("UV_PYTHON".to_owned(), python.clone());
    }
    env.extend(config.uv_env.clone());
    env.extend(pipeline.env.clone());
    for layer in [env_layers.schedule, env_layers.secrets, env_layers.run]
        .into_iter()
        .flatten()
    {
        env.extend(layer.clone());
    }
    if notebook {
        env.insert(
            "FLOTILLA_NOTEBOOK_CELLS".to_owned(),
            notebook_cells(pipeline.notebook.as_ref()),
        );
    }
    // Fast-Flow's name too, so its scripts route unchanged.
    let route_file = if super::downstream::reads_route(&pipeline.triggers) {
        super::downstream::ROUTE_FILE
    } else {
        super::downstream::UNREAD_ROUTE_FILE
    };
    for name in ["FLOTILLA_ROUTE_FILE", "FASTFLOW_ROUTE_FILE"] {
        env.insert(name.to_owned(), route_file.to_owned());
    }
    env.insert("FLOTILLA_RUN".to_owned(), id.run_name.to_owned());
    env.insert("FLOTILLA_PIPELINE".to_owned(), id.pipeline.to_owned());
    env.insert("FLOTILLA_ATTEMPT".to_owned(), id.attempt.to_string());

    let labels = BTreeMap::from([
        (labels::RUN.to_owned(), id.run_uid.to_owned()),
        (labels::RUN_NAME.to_owned(), id.run_name.to_owned()),
        (labels::PIPELINE.to_owned(), id.pipeline.to_owned()),
        (labels::ATTEMPT.to_owned(), id.attempt.to_string()),
        (labels::MANAGED_BY.to_owned(), config.instance.clone()),
        (labels::STORE.to_owned(), config.store.clone()),
    ]);
    let source = format!(
        "{}/{}",
        config.source_root.trim_end_matches('/'),
        source_path.trim_start_matches("./")
    );
    let resources = pipeline.resources.clone().unwrap_or_default();
    ContainerSpec {
        name: container_name(id.run_uid, id.attempt),
        image: pipeline
            .image
            .clone()
            .unwrap_or_else(|| config.image.clone()),
        command,
        env,
        labels,
        working_dir: if writable { "/tmp" } else { "/pipeline" }.to_owned(),
        mounts: vec![
            Mount {
                source,
                target: if writable {
                    WRITABLE_SOURCE.to_owned()
                } else {
                    "/pipeline".to_owned()
                },
                read_only: true,
            },
            Mount {
                source: config.uv_cache_dir.clone(),
                target: "/cache/uv".to_owned(),
                read_only: false,
            },
            Mount {
                source: config.uv_python_dir.clone(),
                target: "/cache/python".to_owned(),
                read_only: false,
            },
        ]
        .into_iter()
        .chain(config.extra_mounts.iter().cloned())
        .collect(),
        tmpfs: std::iter::once("/tmp")
            .chain(writable.then_some("/pipeline"))
            .map(|target| {
                (
                    target.to_owned(),
                    format!("rw,exec,nosuid,nodev,size={}", config.tmp_size),
                )
            })
            .collect(),
        memory_bytes: resources
            .memory
            .as_deref()
            .and_then(|m| parse_memory(m).ok())
            .and_then(|b| i64::try_from(b).ok()),
        nano_cpus: resources.cpus.as_deref().and_then(|c| parse_cpus(c).ok()),
        pids_limit: resources.pids.or(Some(512)),
        user: config.user.clone(),
        log_max_size: config.log_max_size.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::types::ResourceLimits;

    fn config() -> RunnerConfig {
        RunnerConfig {
            image: "flotilla/runner:test".into(),
            source_root: "/srv/pipelines".into(),
            uv_cache_dir: "/var/cache/uv".into(),
            uv_python_dir: "/var/cache/python".into(),
            user: "10001:10001".into(),
            uv_env: BTreeMap::from([("UV_OFFLINE".into(), "1".into())]),
            extra_mounts: vec![Mount {
                source: "/srv/wheels".into(),
                target: "/wheels".into(),
                read_only: true,
            }],
            instance: "test".into(),
            store: "0b5e6c3a-store".into(),
            tmp_size: "64m".into(),
            log_max_size: "1g".into(),
        }
    }

    /// The spec of attempt 1 of run `u` of pipeline `p` (folder `p`), without env layers.
    fn spec_of(pipeline: &PipelineSpec, dependencies: Option<Dependencies>) -> ContainerSpec {
        let id = AttemptIdentity {
            run_uid: "u",
            run_name: "default/r",
            pipeline: "p",
            attempt: 1,
        };
        build_container_spec(
            &config(),
            &id,
            pipeline,
            "p",
            dependencies,
            &EnvLayers::default(),
        )
    }

    #[test]
    fn command_limits_mounts_and_env_layers() {
        let pipeline = PipelineSpec {
            python: Some("3.12".into()),
            env: BTreeMap::from([
                ("A".into(), "pipeline".into()),
                ("B".into(), "pipeline".into()),
                ("C".into(), "pipeline".into()),
                ("D".into(), "pipeline".into()),
            ]),
            resources: Some(ResourceLimits {
                memory: Some("512Mi".into()),
                cpus: Some("1.5".into()),
                ..ResourceLimits::default()
            }),
            ..PipelineSpec::default()
        };
        let schedule = BTreeMap::from([
            ("B".into(), "schedule".into()),
            ("C".into(), "schedule".into()),
            ("D".into(), "schedule".into()),
        ]);
        let secrets =
            BTreeMap::from([("C".into(), "secret".into()), ("D".into(), "secret".into())]);
        let run = BTreeMap::from([("D".into(), "run".into())]);
        let id = AttemptIdentity {
            run_uid: "u1",
            run_name: "default/r1",
            pipeline: "etl",
            attempt: 2,
        };
        let layers = EnvLayers {
            schedule: Some(&schedule),
            secrets: Some(&secrets),
            run: Some(&run),
        };
        let spec = build_container_spec(
            &config(),
            &id,
            &pipeline,
            "etl",
            Some(Dependencies::File("requirements.txt")),
            &layers,
        );
        assert_eq!(spec.name, "flotilla-u1-2");
        assert_eq!(
            spec.command,
            [
                "uv",
                "run",
                "--no-project",
                "--python",
                "3.12",
                "--with-requirements",
                "requirements.txt",
                "main.py"
            ]
        );
        assert_eq!(spec.env["A"], "pipeline");
        assert_eq!(spec.env["B"], "schedule");
        assert_eq!(spec.env["C"], "secret");
        assert_eq!(spec.env["D"], "run");
        assert_eq!(spec.env["UV_OFFLINE"], "1");
        assert_eq!(spec.memory_bytes, Some(512 * 1024 * 1024));
        assert_eq!(spec.nano_cpus, Some(1_500_000_000));
        assert_eq!(
            spec.mounts[0],
            Mount {
                source: "/srv/pipelines/etl".into(),
                target: "/pipeline".into(),
                read_only: true
            }
        );
        assert_eq!(spec.labels[labels::ATTEMPT], "2");
        assert!(
            spec.mounts
                .iter()
                .any(|m| m.target == "/wheels" && m.read_only)
        );
    }

    #[test]
    fn no_requirements_file_means_no_with_requirements() {
        let spec = spec_of(&PipelineSpec::default(), None);
        assert_eq!(spec.command, ["uv", "run", "--no-project", "main.py"]);
        assert_eq!(spec.image, "flotilla/runner:test");
    }

    #[test]
    fn a_uv_project_installs_its_exported_lock() {
        let spec = spec_of(&PipelineSpec::default(), Some(Dependencies::UvLock));
        assert_eq!(&spec.command[..2], ["/bin/sh", "-c"]);
        assert!(
            spec.command[2].starts_with("uv export --frozen --no-emit-project"),
            "{:?}",
            spec.command
        );
        assert!(spec.command[2].contains(&format!("-o {EXPORTED_LOCK} && exec")));
        assert_eq!(
            &spec.command[4..],
            [
                "uv",
                "run",
                "--no-project",
                "--with-requirements",
                EXPORTED_LOCK,
                "main.py"
            ]
        );
        assert_eq!(spec.working_dir, "/pipeline");
    }

    #[test]
    fn a_pylock_is_installed_into_an_environment_of_the_runs_own() {
        let pipeline = PipelineSpec {
            python: Some("3.12".into()),
            ..PipelineSpec::default()
        };
        let spec = spec_of(&pipeline, Some(Dependencies::PyLock));
        assert_eq!(
            spec.command[2],
            format!(
                "uv venv --quiet {PYLOCK_VENV} && uv pip install --quiet --python {PYLOCK_VENV} -r pylock.toml && exec \"$@\""
            )
        );
        assert_eq!(
            &spec.command[4..],
            [format!("{PYLOCK_VENV}/bin/python"), "main.py".to_owned()]
        );
        assert_eq!(spec.env["UV_PYTHON"], "3.12");
    }

    #[test]
    fn a_writable_source_is_copied_into_the_runs_own_pipeline_dir() {
        let pipeline = PipelineSpec {
            source: Some(crate::resource::types::SourceRef {
                path: "p".into(),
                writable: true,
            }),
            ..PipelineSpec::default()
        };
        let spec = spec_of(&pipeline, None);
        assert_eq!(&spec.command[..2], ["/bin/sh", "-c"]);
        assert_eq!(
            spec.command[2],
            "cp -R /pipeline-source/. /pipeline/ && cd /pipeline && exec \"$@\""
        );
        assert_eq!(&spec.command[4..], ["uv", "run", "--no-project", "main.py"]);
        assert_eq!(
            spec.mounts[0],
            Mount {
                source: "/srv/pipelines/p".into(),
                target: "/pipeline-source".into(),
                read_only: true
            }
        );
        assert!(!spec.mounts.iter().any(|m| m.target == "/pipeline"));
        assert_eq!(spec.tmpfs["/pipeline"], spec.tmpfs["/tmp"]);
        assert_eq!(
            spec.working_dir, "/tmp",
            "Docker would make /pipeline root's"
        );
    }
}
