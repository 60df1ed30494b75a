//! Fast-Flow's environment variables, honoured under their own names by `flotilla serve`.
//!
//! A Fast-Flow variable with a meaning here sets the matching option when neither its
//! flag nor Flotilla's own variable does; set beside Flotilla's own variable with another
//! value, it is a start-up error naming both (which one was meant cannot be guessed). A
//! command-line flag wins over both, as flags win over variables everywhere. Fast-Flow
//! variables with no meaning here are reported once at start-up, by name.

use clap::ArgMatches;
use clap::parser::ValueSource;

use super::serve::{LogFormat, ServeArgs};

/// A Fast-Flow variable and the option it sets.
struct Alias {
    fastflow: &'static str,
    /// Flotilla's own variable for the same option.
    flotilla: &'static str,
    /// The option's clap id (its field name).
    arg: &'static str,
}

const ALIASES: &[Alias] = &[
    Alias {
        fastflow: "MAX_CONCURRENT_RUNS",
        flotilla: "FLOTILLA_MAX_CONCURRENT_RUNS",
        arg: "max_concurrent_runs",
    },
    Alias {
        fastflow: "WORKER_BASE_IMAGE",
        flotilla: "FLOTILLA_RUNNER_IMAGE",
        arg: "runner_image",
    },
    Alias {
        fastflow: "DOCKER_PROXY_URL",
        flotilla: "DOCKER_HOST",
        arg: "docker_host",
    },
    Alias {
        fastflow: "DATA_DIR",
        flotilla: "FLOTILLA_DATA_DIR",
        arg: "data_dir",
    },
    Alias {
        fastflow: "UV_CACHE_DIR",
        flotilla: "FLOTILLA_UV_CACHE_DIR",
        arg: "uv_cache_dir",
    },
    Alias {
        fastflow: "PIPELINES_HOST_DIR",
        flotilla: "FLOTILLA_HOST_PIPELINES_DIR",
        arg: "host_pipelines_dir",
    },
    Alias {
        fastflow: "CORS_ORIGINS",
        flotilla: "FLOTILLA_CORS_ORIGINS",
        arg: "cors_origins",
    },
    Alias {
        fastflow: "LOG_JSON",
        flotilla: "FLOTILLA_LOG_FORMAT",
        arg: "log_format",
    },
    Alias {
        fastflow: "DEFAULT_PYTHON_VERSION",
        flotilla: "FLOTILLA_DEFAULT_PYTHON",
        arg: "default_python",
    },
    // Seconds; 0 is no timeout.
    Alias {
        fastflow: "CONTAINER_TIMEOUT",
        flotilla: "FLOTILLA_DEFAULT_TIMEOUT",
        arg: "default_timeout",
    },
    Alias {
        fastflow: "LOG_RETENTION_RUNS",
        flotilla: "FLOTILLA_RETAIN_RUNS",
        arg: "retain_runs",
    },
    // Days.
    Alias {
        fastflow: "LOG_RETENTION_DAYS",
        flotilla: "FLOTILLA_RETAIN_FOR",
        arg: "retain_for",
    },
    // MB (binary, as Fast-Flow computed it).
    Alias {
        fastflow: "LOG_MAX_SIZE_MB",
        flotilla: "FLOTILLA_LOG_MAX_SIZE",
        arg: "log_max_size",
    },
    // The address notifications link to (Fast-Flow's links to its frontend).
    Alias {
        fastflow: "FRONTEND_URL",
        flotilla: "FLOTILLA_PUBLIC_URL",
        arg: "public_url",
    },
    // Only `false` means something: no limit on webhook triggers.
    Alias {
        fastflow: "RATELIMIT_ENABLED",
        flotilla: "FLOTILLA_WEBHOOK_RATE_LIMIT",
        arg: "webhook_rate_limit",
    },
];

/// Fast-Flow variables that change nothing in Flotilla (yet); the README's "Coming from
/// Fast-Flow" says what takes their place. The mail and Teams settings make a default
/// notifier instead (`fastflow_notify`).
pub const WITHOUT_MEANING: &[&str] = &[
    "LOGS_DIR",
    "LOGS_HOST_DIR",
    "RUNNERS_HOST_DIR",
    "UV_CACHE_HOST_DIR",
    "UV_PYTHON_INSTALL_HOST_DIR",
    "UV_PRE_HEAT",
    "UV_STORAGE_STATS",
    "PIPELINE_EXECUTOR",
    "RETRY_ATTEMPTS",
    "PIPELINE_CACHE_TTL_SECONDS",
    "KUBERNETES_NAMESPACE",
    "KUBERNETES_CACHE_PVC_NAME",
    "KUBERNETES_SHARED_CACHE_MOUNT_PATH",
    "KUBERNETES_JOB_TTL_SECONDS_AFTER_FINISHED",
    "LOG_STREAM_RATE_LIMIT",
    "LOG_STREAM_PENDING_MAX_LINES",
    "LOG_READ_MAX_MB",
    "S3_BACKUP_ENABLED",
    "S3_ENDPOINT_URL",
    "S3_BUCKET",
    "S3_ACCESS_KEY",
    "S3_SECRET_ACCESS_KEY",
    "S3_REGION",
    "S3_PREFIX",
    "S3_USE_PATH_STYLE",
    "GITHUB_CLIENT_ID",
    "GITHUB_CLIENT_SECRET",
    "GOOGLE_CLIENT_ID",
    "GOOGLE_CLIENT_SECRET",
    "MICROSOFT_CLIENT_ID",
    "MICROSOFT_CLIENT_SECRET",
    "MICROSOFT_TENANT_ID",
    "CUSTOM_OAUTH_CLIENT_ID",
    "CUSTOM_OAUTH_CLIENT_SECRET",
    "INITIAL_ADMIN_EMAIL",
    "SKIP_OAUTH_VERIFICATION",
    "LOGIN_BRANDING_LOGO_URL",
    "JWT_SECRET_KEY",
    "JWT_ALGORITHM",
    "JWT_EXPIRATION_HOURS",
    "JWT_ACCESS_TOKEN_MINUTES",
    "BASE_URL",
    "ENVIRONMENT",
    "LOG_LEVEL",
    "SLOW_REQUEST_THRESHOLD_SECONDS",
    "MAX_REQUEST_BODY_MB",
    "PROXY_HEADERS_TRUSTED",
];

/// Applies the Fast-Flow variables `env` holds to `args` (parsed from `matches`, the
/// `serve` subcommand's). Returns what to report at start-up: the variables taken and
/// those without meaning; an error names both variables of a conflict or the value that
/// cannot be read.
pub fn apply(
    args: &mut ServeArgs,
    matches: &ArgMatches,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Vec<String>, String> {
    let mut notes = Vec::new();
    let set = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    for alias in ALIASES {
        let Some(value) = set(alias.fastflow) else {
            continue;
        };
        let Some(converted) = convert(alias, &value)? else {
            continue;
        };
        if matches.value_source(alias.arg) == Some(ValueSource::CommandLine) {
            notes.push(format!(
                "{}={value:?} is overridden by the command line",
                alias.fastflow
            ));
            continue;
        }
        match set(alias.flotilla) {
            Some(own) if !same(alias, &own, &converted) => {
                return Err(format!(
                    "{}={value:?} (Fast-Flow's name) and {}={own:?} disagree; unset one of them",
                    alias.fastflow, alias.flotilla
                ));
            }
            Some(_) => {}
            None => {
                assign(args, alias.arg, &converted)
                    .map_err(|e| format!("{}={value:?} cannot be used: {e}", alias.fastflow))?;
                notes.push(format!(
                    "{}={value:?} (Fast-Flow's name) sets {}",
                    alias.fastflow, alias.flotilla
                ));
            }
        }
    }
    let idle: Vec<&str> = WITHOUT_MEANING
        .iter()
        .copied()
        .filter(|name| set(name).is_some())
        .collect();
    if !idle.is_empty() {
        notes.push(format!(
            "Fast-Flow settings with no effect in Flotilla: {}; see \"Coming from Fast-Flow\" in the README for what replaces them",
            idle.join(", ")
        ));
    }
    Ok(notes)
}

/// The Fast-Flow value in the form of Flotilla's variable; `None` when it asks for
/// nothing but the default.
fn convert(alias: &Alias, value: &str) -> Result<Option<String>, String> {
    let value = value.trim();
    let boolean = || {
        match value.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Some(true),
            "false" | "0" | "no" => Some(false),
            _ => None,
        }
        .ok_or_else(|| format!("{}={value:?} is neither true nor false", alias.fastflow))
    };
    Ok(Some(match alias.arg {
        "webhook_rate_limit" if boolean()? => return Ok(None),
        "webhook_rate_limit" => "0".to_owned(),
        // Fast-Flow spoke HTTP to its proxy (`http://docker-proxy:2375`); Docker's own
        // clients call that `tcp://`.
        "docker_host" => match value.strip_prefix("http://") {
            Some(rest) => format!("tcp://{}", rest.trim_end_matches('/')),
            None if value.starts_with("https://") => {
                return Err(format!(
                    "{}={value:?}: a TLS Docker endpoint needs DOCKER_HOST=tcp://… with DOCKER_TLS_VERIFY and DOCKER_CERT_PATH",
                    alias.fastflow
                ));
            }
            None => value.to_owned(),
        },
        // Fast-Flow's settings read a JSON list as well as a comma-separated one.
        "cors_origins" if value.starts_with('[') => serde_json::from_str::<Vec<String>>(value)
            .map_err(|e| {
                format!(
                    "{}={value:?} is not a JSON list of origins: {e}",
                    alias.fastflow
                )
            })?
            .join(","),
        "default_timeout" => match value.parse::<u64>() {
            Ok(0) => return Ok(None),
            Ok(seconds) => format!("{seconds}s"),
            Err(_) => {
                return Err(format!(
                    "{}={value:?} is not a whole number of seconds",
                    alias.fastflow
                ));
            }
        },
        "retain_runs" | "retain_for" | "log_max_size" => match value.parse::<u64>() {
            Ok(0) => return Ok(None),
            Ok(n) if alias.arg == "retain_for" => format!("{n}d"),
            Ok(n) if alias.arg == "log_max_size" => format!("{n}Mi"),
            Ok(n) => n.to_string(),
            Err(_) => {
                return Err(format!(
                    "{}={value:?} is not a whole number",
                    alias.fastflow
                ));
            }
        },
        "log_format" if boolean()? => "json".to_owned(),
        "log_format" => "text".to_owned(),
        _ => value.to_owned(),
    }))
}

/// Whether Flotilla's own value says the same as the converted Fast-Flow one.
fn same(alias: &Alias, own: &str, converted: &str) -> bool {
    match alias.arg {
        "cors_origins" => {
            let list = |s: &str| {
                let mut v: Vec<String> = s.split(',').map(|o| o.trim().to_owned()).collect();
                v.sort();
                v
            };
            list(own) == list(converted)
        }
        "log_format" => own.eq_ignore_ascii_case(converted),
        "log_max_size" => {
            let size = |s: &str| crate::resource::quantity::parse_bytes(s.trim()).ok();
            size(own).is_some() && size(own) == size(converted)
        }
        "default_timeout" | "retain_for" => {
            let duration = |s: &str| crate::resource::quantity::parse_duration(s.trim()).ok();
            duration(own).is_some() && duration(own) == duration(converted)
        }
        _ => own.trim() == converted,
    }
}

fn assign(args: &mut ServeArgs, arg: &str, value: &str) -> Result<(), String> {
    match arg {
        "max_concurrent_runs" => {
            args.docker.max_concurrent_runs = Some(
                value
                    .parse()
                    .map_err(|_| "expected a whole number of runs".to_owned())?,
            );
        }
        "runner_image" => args.docker.runner_image = value.to_owned(),
        "docker_host" => args.docker.docker_host = value.to_owned(),
        "data_dir" => args.data_dir = value.into(),
        "uv_cache_dir" => args.docker.uv_cache_dir = Some(value.into()),
        "host_pipelines_dir" => args.docker.host_pipelines_dir = Some(value.to_owned()),
        "cors_origins" => {
            args.cors_origins = value
                .split(',')
                .map(|o| o.trim().to_owned())
                .filter(|o| !o.is_empty())
                .collect();
        }
        "default_python" => args.docker.default_python = value.to_owned(),
        "public_url" => args.notify.public_url = Some(value.trim_end_matches('/').to_owned()),
        "default_timeout" => {
            args.docker.default_timeout =
                Some(crate::resource::quantity::parse_duration(value).map_err(|e| e.to_string())?);
        }
        "retain_runs" => {
            args.retain_runs = Some(
                value
                    .parse()
                    .map_err(|_| "expected a whole number of runs".to_owned())?,
            );
        }
        "retain_for" => {
            args.retain_for =
                Some(crate::resource::quantity::parse_duration(value).map_err(|e| e.to_string())?);
        }
        "log_max_size" => {
            args.docker.log_max_size =
                Some(crate::resource::quantity::parse_bytes(value).map_err(|e| e.to_string())?);
        }
        "webhook_rate_limit" => {
            args.webhook_rate_limit = value
                .parse()
                .map_err(|_| "expected a whole number of runs per minute".to_owned())?;
        }
        "log_format" => {
            args.log_format = if value == "json" {
                LogFormat::Json
            } else {
                LogFormat::Text
            };
        }
        other => return Err(format!("no option {other}")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use clap::{CommandFactory, FromArgMatches};

    use super::apply;
    use crate::cli::serve::{LogFormat, known_hosts_content_to_file};
    use crate::cli::{Cli, Command};

    /// `flotilla serve ARGS` parsed without the process environment, then the Fast-Flow
    /// variables `env` applied.
    fn serve(
        argv: &[&str],
        env: &[(&str, &str)],
    ) -> Result<(Box<crate::cli::serve::ServeArgs>, Vec<String>), String> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut command = Cli::command();
        // Flotilla's own variables come from `env` too, not from the test's process.
        command = command.mut_subcommand("serve", |serve| {
            let ids: Vec<String> = serve
                .get_arguments()
                .map(|a| a.get_id().to_string())
                .collect();
            ids.iter().fold(serve, |serve, id| {
                serve.mut_arg(id, |a| a.env(None::<&str>))
            })
        });
        let matches = command
            .try_get_matches_from(["flotilla", "serve"].iter().chain(argv))
            .expect("parses");
        let cli = Cli::from_arg_matches(&matches).expect("parses");
        let Command::Serve(mut args) = cli.command else {
            panic!("serve")
        };
        let serve = matches.subcommand_matches("serve").expect("serve");
        let notes = apply(&mut args, serve, |name| env.get(name).cloned())?;
        Ok((args, notes))
    }

    /// CONTAINER_TIMEOUT is seconds, 0 none; the same time under Flotilla's name in
    /// another spelling agrees, another time does not.
    #[test]
    fn container_timeout_is_seconds_and_zero_is_none() {
        let (args, _) = serve(&[], &[("CONTAINER_TIMEOUT", "0")]).expect("applies");
        assert_eq!(args.docker.default_timeout, None);
        let (args, _) = serve(
            &[],
            &[
                ("CONTAINER_TIMEOUT", "3600"),
                ("FLOTILLA_DEFAULT_TIMEOUT", "1h"),
            ],
        )
        .expect("the same time");
        assert_eq!(
            args.docker.default_timeout, None,
            "both set and agreeing: Flotilla's own (read by clap) stands"
        );
        let error = serve(
            &[],
            &[
                ("CONTAINER_TIMEOUT", "3600"),
                ("FLOTILLA_DEFAULT_TIMEOUT", "30m"),
            ],
        )
        .expect_err("disagree");
        assert!(error.contains("CONTAINER_TIMEOUT"), "{error}");
        let error = serve(&[], &[("CONTAINER_TIMEOUT", "an hour")]).expect_err("not seconds");
        assert!(error.contains("whole number of seconds"), "{error}");
    }

    #[test]
    fn fastflow_names_set_their_options_converted() {
        let (args, notes) = serve(
            &[],
            &[
                ("MAX_CONCURRENT_RUNS", "4"),
                ("WORKER_BASE_IMAGE", "registry.example/worker:2"),
                ("DOCKER_PROXY_URL", "http://docker-proxy:2375/"),
                ("DATA_DIR", "/srv/data"),
                ("UV_CACHE_DIR", "/srv/uv"),
                ("PIPELINES_HOST_DIR", "/host/pipelines"),
                (
                    "CORS_ORIGINS",
                    "[\"https://a.example\", \"https://b.example\"]",
                ),
                ("LOG_JSON", "true"),
                ("RATELIMIT_ENABLED", "false"),
                ("DEFAULT_PYTHON_VERSION", "3.12"),
                ("CONTAINER_TIMEOUT", "3600"),
            ],
        )
        .expect("applies");
        assert_eq!(
            args.docker.default_timeout,
            Some(std::time::Duration::from_secs(3600))
        );
        assert_eq!(
            args.webhook_rate_limit, 0,
            "RATELIMIT_ENABLED=false: no limit"
        );
        assert_eq!(args.docker.max_concurrent_runs, Some(4));
        assert_eq!(args.docker.runner_image, "registry.example/worker:2");
        assert_eq!(args.docker.docker_host, "tcp://docker-proxy:2375");
        assert_eq!(args.data_dir, std::path::PathBuf::from("/srv/data"));
        assert_eq!(args.docker.uv_cache_dir, Some("/srv/uv".into()));
        assert_eq!(
            args.docker.host_pipelines_dir.as_deref(),
            Some("/host/pipelines")
        );
        assert_eq!(
            args.cors_origins,
            ["https://a.example", "https://b.example"]
        );
        assert!(matches!(args.log_format, LogFormat::Json));
        assert_eq!(args.docker.default_python, "3.12");
        assert_eq!(notes.len(), 11, "{notes:?}");
        let (args, notes) = serve(&[], &[("RATELIMIT_ENABLED", "true")]).expect("applies");
        assert_eq!(
            args.webhook_rate_limit,
            crate::server::hooks::TRIGGERS_PER_MINUTE,
            "true keeps the default"
        );
        assert!(notes.is_empty(), "{notes:?}");
    }

    #[test]
    fn a_conflict_with_flotillas_own_variable_names_both_and_agreement_is_fine() {
        let error = serve(
            &[],
            &[
                ("MAX_CONCURRENT_RUNS", "4"),
                ("FLOTILLA_MAX_CONCURRENT_RUNS", "6"),
            ],
        )
        .expect_err("a conflict");
        assert!(
            error.contains("MAX_CONCURRENT_RUNS=\"4\"")
                && error.contains("FLOTILLA_MAX_CONCURRENT_RUNS=\"6\""),
            "{error}"
        );
        let error = serve(
            &[],
            &[
                ("DOCKER_PROXY_URL", "http://proxy:2375"),
                ("DOCKER_HOST", "tcp://other:2375"),
            ],
        )
        .expect_err("a conflict");
        assert!(
            error.contains("DOCKER_PROXY_URL") && error.contains("DOCKER_HOST"),
            "{error}"
        );
        // The same setting under both names is no conflict.
        serve(
            &[],
            &[
                ("DOCKER_PROXY_URL", "http://proxy:2375"),
                ("DOCKER_HOST", "tcp://proxy:2375"),
            ],
        )
        .expect("agreeing names");
    }

    #[test]
    fn a_flag_wins_and_bad_values_and_idle_settings_are_named() {
        let (args, notes) = serve(
            &["--max-concurrent-runs", "2"],
            &[("MAX_CONCURRENT_RUNS", "4")],
        )
        .expect("applies");
        assert_eq!(args.docker.max_concurrent_runs, Some(2));
        assert!(
            notes[0].contains("overridden by the command line"),
            "{notes:?}"
        );
        let error = serve(&[], &[("MAX_CONCURRENT_RUNS", "ten")]).expect_err("not a number");
        assert!(error.contains("MAX_CONCURRENT_RUNS=\"ten\""), "{error}");
        let error = serve(&[], &[("LOG_JSON", "maybe")]).expect_err("not a boolean");
        assert!(error.contains("LOG_JSON"), "{error}");
        let (_, notes) = serve(
            &[],
            &[
                ("LOG_STREAM_RATE_LIMIT", "7"),
                ("S3_BUCKET", "logs"),
                ("HOME", "/root"),
            ],
        )
        .expect("applies");
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].contains("LOG_STREAM_RATE_LIMIT, S3_BUCKET") && !notes[0].contains("HOME"),
            "{notes:?}"
        );
    }

    #[test]
    fn log_retention_settings_become_retention_options() {
        let (args, _) = serve(
            &[],
            &[
                ("LOG_RETENTION_RUNS", "50"),
                ("LOG_RETENTION_DAYS", "7"),
                ("LOG_MAX_SIZE_MB", "100"),
            ],
        )
        .expect("applies");
        assert_eq!(args.retain_runs, Some(50));
        assert_eq!(
            args.retain_for,
            Some(std::time::Duration::from_secs(7 * 86_400))
        );
        assert_eq!(args.docker.log_max_size, Some(100 * 1024 * 1024));
        let (args, _) = serve(&[], &[("LOG_RETENTION_RUNS", "0")]).expect("applies");
        assert_eq!(args.retain_runs, None, "0 is Fast-Flow's unlimited");
        let error = serve(&[], &[("LOG_RETENTION_DAYS", "a week")]).expect_err("not a number");
        assert!(error.contains("LOG_RETENTION_DAYS"), "{error}");
    }

    #[test]
    fn known_hosts_lines_in_the_variable_are_written_to_a_file_and_a_path_is_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let data_dir = dir.path().to_str().expect("utf-8");
        let line = "git.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample";
        let known = format!("{line}\\nother.example ssh-rsa AAAAB3");
        let (mut args, _) =
            serve(&["--data-dir", data_dir, "--git-known-hosts", &known], &[]).expect("parses");
        known_hosts_content_to_file(&mut args).expect("written");
        let file = args.git.git_known_hosts.clone().expect("a file");
        assert_eq!(file, dir.path().join("known_hosts"));
        assert_eq!(
            std::fs::read_to_string(&file).expect("readable"),
            format!("{line}\nother.example ssh-rsa AAAAB3\n")
        );
        // A path (existing or not, without spaces) is left as the user wrote it.
        let (mut args, _) = serve(
            &[
                "--data-dir",
                data_dir,
                "--git-known-hosts",
                "/etc/ssh/ssh_known_hosts",
            ],
            &[],
        )
        .expect("parses");
        known_hosts_content_to_file(&mut args).expect("kept");
        assert_eq!(
            args.git.git_known_hosts.as_deref(),
            Some(std::path::Path::new("/etc/ssh/ssh_known_hosts"))
        );
    }
}
