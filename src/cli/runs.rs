//! `flotilla run`, `rerun`, `cancel` and `logs`.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

use super::client::{API_PREFIX, ApiClient};
use crate::controller::run::logs::LogLine;

/// Creates a run; with `wait`, follows its logs and exits with its exit code.
pub async fn run(
    client: &ApiClient,
    namespace: &str,
    pipeline: &str,
    env: Vec<(String, String)>,
    wait: bool,
) -> anyhow::Result<()> {
    let env: serde_json::Map<String, Value> = env
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let body =
        json!({ "spec": { "pipelineRef": { "name": pipeline }, "trigger": "manual", "env": env } });
    let created: Value = client
        .request(
            Method::POST,
            &format!("{API_PREFIX}/namespaces/{namespace}/runs"),
            Some(&body),
        )
        .await?;
    created_then(client, namespace, &created, wait).await
}

/// Runs a run's pipeline again with the same run env; with `wait`, follows it.
pub async fn rerun(
    client: &ApiClient,
    namespace: &str,
    run: &str,
    wait: bool,
) -> anyhow::Result<()> {
    let created: Value = client
        .request::<(), Value>(
            Method::POST,
            &format!("{API_PREFIX}/namespaces/{namespace}/runs/{run}/rerun"),
            None,
        )
        .await?;
    created_then(client, namespace, &created, wait).await
}

/// Reports a created run; with `wait`, follows its logs and exits with its exit code.
async fn created_then(
    client: &ApiClient,
    namespace: &str,
    created: &Value,
    wait: bool,
) -> anyhow::Result<()> {
    let name = created["metadata"]["name"]
        .as_str()
        .context("the server returned a run without a name")?
        .to_owned();
    if !wait {
        println!("run/{name} created");
        return Ok(());
    }
    eprintln!("run/{name} created; following its output");
    let run = logs(client, namespace, &name, true, None, false).await?;
    let status = &run["status"];
    let phase = status["phase"].as_str().unwrap_or("Unknown");
    let exit_code = status["attempts"]
        .as_array()
        .and_then(|a| a.last())
        .and_then(|a| a["exitCode"].as_i64());
    eprintln!(
        "run/{name} {phase}{}",
        status["reason"]
            .as_str()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    );
    let code = match (phase, exit_code) {
        ("Succeeded", _) => 0,
        (_, Some(code)) if code != 0 => code,
        _ => 1,
    };
    if code != 0 {
        std::process::exit(i32::try_from(code.clamp(1, 255)).unwrap_or(1));
    }
    let _ = ExitCode::SUCCESS;
    Ok(())
}

/// Cancels a run.
pub async fn cancel(client: &ApiClient, namespace: &str, run: &str) -> anyhow::Result<()> {
    let _: Value = client
        .request::<(), Value>(
            Method::POST,
            &format!("{API_PREFIX}/namespaces/{namespace}/runs/{run}/cancel"),
            None,
        )
        .await?;
    println!("run/{run} cancel requested");
    Ok(())
}

/// Prints the trigger graph of a namespace: the tree, or the API's answer as JSON or
/// YAML.
pub async fn graph(
    client: &ApiClient,
    namespace: &str,
    output: Option<super::OutputFormat>,
) -> anyhow::Result<()> {
    let graph = client
        .get(&format!("{API_PREFIX}/namespaces/{namespace}/graph"))
        .await?;
    match output {
        Some(super::OutputFormat::Json) => println!("{}", serde_json::to_string_pretty(&graph)?),
        Some(super::OutputFormat::Yaml) => print!("{}", serde_saphyr::to_string(&graph)?),
        _ => print!("{}", graph["text"].as_str().unwrap_or_default()),
    }
    Ok(())
}

/// Prints a run's output (following attempts until it finishes when `follow`); returns
/// the run as it is at the end.
pub async fn logs(
    client: &ApiClient,
    namespace: &str,
    run: &str,
    follow: bool,
    attempt: Option<u32>,
    timestamps: bool,
) -> anyhow::Result<Value> {
    let run_path = format!("{API_PREFIX}/namespaces/{namespace}/runs/{run}");
    let mut current = attempt;
    loop {
        let state = client.get(&run_path).await?;
        let attempts = state["status"]["attempts"].as_array().map_or(0, Vec::len) as u32;
        let number = current.unwrap_or(attempts.max(1));
        if follow {
            // Wait for the attempt to exist (the run may still be queued).
            if attempts < number && number > 1 && !is_finished(&state) {
                tokio::time::sleep(Duration::from_millis(300)).await;
                continue;
            }
        }
        if attempts == 0 && is_finished(&state) {
            return Ok(state);
        }
        stream_attempt(
            client,
            &format!("{run_path}/log?attempt={number}&follow={follow}"),
            timestamps,
        )
        .await?;
        let state = client.get(&run_path).await?;
        let attempts = state["status"]["attempts"].as_array().map_or(0, Vec::len) as u32;
        if !follow || attempt.is_some() || (is_finished(&state) && attempts <= number) {
            return Ok(state);
        }
        if attempts > number {
            eprintln!("--- attempt {} ---", number + 1);
        }
        current = Some(number + 1);
    }
}

fn is_finished(run: &Value) -> bool {
    matches!(
        run["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed" | "Cancelled")
    )
}

async fn stream_attempt(client: &ApiClient, path: &str, timestamps: bool) -> anyhow::Result<()> {
    let print = |text: &str| -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        match (timestamps, LogLine::parse(text)) {
            (false, Some(parsed)) => writeln!(out, "{}", parsed.text),
            _ => writeln!(out, "{text}"),
        }
    };
    if !path.contains("follow=true") {
        let response = client.raw_get(path, None).await?;
        let text = response.text().await.context("the log could not be read")?;
        for line in text.lines() {
            print(line)?;
        }
        return Ok(());
    }
    // Server-sent events; a cut connection resumes after the last received line.
    let mut last_id: Option<String> = None;
    let mut failures = 0u32;
    loop {
        let response = match client.raw_get(path, last_id.as_deref()).await {
            Ok(response) => response,
            Err(e) if failures < 10 => {
                failures += 1;
                eprintln!("warning: {e}; reconnecting");
                tokio::time::sleep(Duration::from_millis(500 * u64::from(failures))).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let mut body = response.bytes_stream();
        let mut pending = Vec::new();
        let mut event = String::new();
        while let Some(chunk) = body.next().await {
            let Ok(chunk) = chunk else { break };
            pending.extend_from_slice(&chunk);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let raw: Vec<u8> = pending.drain(..=end).collect();
                let line = String::from_utf8_lossy(&raw);
                let line = line.trim_end_matches('\n');
                if let Some(id) = line.strip_prefix("id: ") {
                    last_id = Some(id.to_owned());
                } else if let Some(name) = line.strip_prefix("event: ") {
                    event = name.to_owned();
                } else if let Some(data) = line.strip_prefix("data: ") {
                    if event == "end" {
                        return Ok(());
                    }
                    print(data)?;
                } else if line.is_empty() {
                    event.clear();
                }
            }
        }
        failures += 1;
        if failures > 10 {
            bail!("the log stream kept breaking; giving up");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
