//! The client verbs: each reads its input, calls the API and prints the answer.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use chrono::Utc;
use reqwest::Method;
use serde_json::{Value, json};

use super::client::{API_PREFIX, ApiClient, ClientError};
use super::output::{self, OutputFormat};
use super::{ClientArgs, Command, SecretCommand, TokenCommand};
use crate::resource::manifest::{MAX_MANIFEST_BYTES, parse_documents};
use crate::resource::validate::validate_document;
use crate::resource::{Kind, ObjectKey};
use crate::secrets::Keyring;

/// Runs one verb.
pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => super::serve::run(*args).await,
        Command::Apply {
            files,
            prune,
            dry_run,
            force,
            field_manager,
            client,
        } => apply(&client, &files.files, &field_manager, prune, dry_run, force).await,
        Command::Diff {
            files,
            prune,
            field_manager,
            client,
        } => diff(&client, &files.files, &field_manager, prune).await,
        Command::Get {
            kind,
            name,
            output,
            namespace,
            all_namespaces,
            client,
            involved,
        } => {
            if matches!(kind.as_str(), "sources" | "source") {
                return sources(&client.client(), output).await;
            }
            if kind == "leader" {
                return leader(&client.client(), output).await;
            }
            if matches!(kind.as_str(), "events" | "event" | "ev") {
                let namespace = (!all_namespaces).then_some(namespace.as_str());
                return events(&client.client(), namespace, involved.as_deref(), output).await;
            }
            let kind = parse_kind(&kind)?;
            let namespace = (!all_namespaces).then_some(namespace);
            get(
                &client.client(),
                kind,
                name.as_deref(),
                namespace.as_deref(),
                output,
            )
            .await
        }
        Command::Sync { no_wait, client } => sync(&client.client(), !no_wait).await,
        Command::Describe {
            kind,
            name,
            namespace,
            client,
        } => {
            let key = ObjectKey::new(parse_kind(&kind)?, namespace, name);
            describe(&client.client(), &key).await
        }
        Command::Delete {
            kind,
            name,
            files,
            namespace,
            ignore_not_found,
            client,
        } => {
            let keys = match (kind, name, files.is_empty()) {
                (Some(kind), Some(name), true) => {
                    vec![ObjectKey::new(parse_kind(&kind)?, namespace, name)]
                }
                (None, None, false) => keys_in_files(&files)?,
                _ => {
                    bail!("give either KIND NAME or -f FILE, e.g. `flotilla delete pipeline hello`")
                }
            };
            delete(&client.client(), &keys, ignore_not_found).await
        }
        Command::Run {
            pipeline,
            env,
            wait,
            namespace,
            client,
        } => super::runs::run(&client.client(), &namespace, &pipeline, env, wait).await,
        Command::Rerun {
            run,
            wait,
            namespace,
            client,
        } => super::runs::rerun(&client.client(), &namespace, &run, wait).await,
        Command::Graph {
            output,
            namespace,
            client,
        } => super::runs::graph(&client.client(), &namespace, output).await,
        Command::Cancel {
            run,
            namespace,
            client,
        } => super::runs::cancel(&client.client(), &namespace, &run).await,
        Command::Logs {
            run,
            follow,
            attempt,
            timestamps,
            namespace,
            client,
        } => super::runs::logs(
            &client.client(),
            &namespace,
            &run,
            follow,
            attempt,
            timestamps,
        )
        .await
        .map(|_| ()),
        Command::Import(super::ImportCommand::Fastflow(args)) => {
            super::import::fastflow(*args).await
        }
        Command::Crds => {
            print!("{}", crate::resource::types::crds_yaml()?);
            Ok(())
        }
        Command::Version { client } => version(&client.client()).await,
        Command::Secret(SecretCommand::Set {
            name,
            pairs,
            namespace,
            client,
        }) => secret_set(&client.client(), &namespace, &name, pairs).await,
        Command::Secret(SecretCommand::Rotate { client }) => {
            let report: Value = client
                .client()
                .request::<(), Value>(Method::POST, &format!("{API_PREFIX}/secrets/rotate"), None)
                .await?;
            println!(
                "re-encrypted {} value(s) in {} of {} secret(s) with the newest key",
                report["values"], report["updated"], report["secrets"]
            );
            for problem in report["unreadable"].as_array().into_iter().flatten() {
                eprintln!("warning: {}", problem.as_str().unwrap_or_default());
            }
            Ok(())
        }
        Command::Token(command) => tokens(command).await,
        Command::Notify(super::NotifyCommand::Test {
            name,
            namespace,
            client,
        }) => notify_test(&client.client(), &namespace, &name).await,
        Command::Login { server, token } => {
            let client = ApiClient::new(&server, Some(token.clone()));
            let version = client.get("/version").await?;
            let path = super::config::save(&super::config::ClientConfig {
                server: server.clone(),
                token: Some(token),
            })?;
            println!(
                "logged in to {server} (server {}); saved to {}",
                version["version"].as_str().unwrap_or("?"),
                path.display()
            );
            Ok(())
        }
        Command::Secret(SecretCommand::GenKey) => {
            println!("{}", Keyring::generate_key());
            Ok(())
        }
        Command::Secret(SecretCommand::Encrypt {
            from_file,
            encryption_key,
        }) => {
            let keyring = Keyring::from_env_value(encryption_key.as_deref().unwrap_or_default())?;
            let value = match from_file {
                Some(path) => std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
                None => {
                    let mut value = String::new();
                    std::io::stdin()
                        .read_to_string(&mut value)
                        .context("cannot read stdin")?;
                    value.trim_end_matches(['\n', '\r']).to_owned()
                }
            };
            println!("{}", keyring.encrypt(&value));
            Ok(())
        }
    }
}

/// `flotilla notify test`: one line per channel; an error unless all took the message.
async fn notify_test(client: &ApiClient, namespace: &str, name: &str) -> anyhow::Result<()> {
    let path = format!("{API_PREFIX}/namespaces/{namespace}/notifiers/{name}/test");
    let report: Value = client
        .request::<(), Value>(Method::POST, &path, None)
        .await?;
    for channel in report["channels"].as_array().into_iter().flatten() {
        let label = channel["channel"].as_str().unwrap_or("?");
        if channel["delivered"].as_bool() == Some(true) {
            println!("{label}: delivered");
        } else {
            println!(
                "{label}: FAILED ({}): {}",
                channel["code"].as_str().unwrap_or("?"),
                channel["error"].as_str().unwrap_or("?")
            );
        }
    }
    if report["delivered"].as_bool() == Some(true) {
        Ok(())
    } else {
        anyhow::bail!("notifier {namespace}/{name}: not every channel took the test message")
    }
}

fn parse_kind(text: &str) -> anyhow::Result<Kind> {
    Kind::from_user(text).with_context(|| {
        format!("unknown resource type {text:?}; use pipelines (pl), schedules (sched), secrets (sec) or runs (rn)")
    })
}

/// A manifest file read for sending.
struct InputFile {
    name: String,
    content: String,
}

fn read_inputs(paths: &[PathBuf]) -> anyhow::Result<Vec<InputFile>> {
    let mut files = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut content = String::new();
            std::io::stdin()
                .take(MAX_MANIFEST_BYTES as u64 + 1)
                .read_to_string(&mut content)
                .context("<stdin>: is not UTF-8 text")?;
            if content.len() > MAX_MANIFEST_BYTES {
                bail!(
                    "<stdin>: is larger than the limit of {} MiB per file",
                    MAX_MANIFEST_BYTES >> 20
                );
            }
            files.push(InputFile {
                name: "<stdin>".to_owned(),
                content,
            });
        } else if path.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("{}: cannot be read", path.display()))?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
                .collect();
            entries.sort();
            if entries.is_empty() {
                bail!("{}: holds no *.yaml or *.yml files", path.display());
            }
            for entry in entries {
                files.push(read_file(&entry)?);
            }
        } else {
            files.push(read_file(path)?);
        }
    }
    Ok(files)
}

fn read_file(path: &Path) -> anyhow::Result<InputFile> {
    let name = path.display().to_string();
    let size = std::fs::metadata(path)
        .with_context(|| format!("{name}: cannot be read"))?
        .len();
    if size > MAX_MANIFEST_BYTES as u64 {
        bail!(
            "{name}: is {:.1} MiB; the limit is {} MiB per file: split it into several files",
            size as f64 / (1024.0 * 1024.0),
            MAX_MANIFEST_BYTES >> 20
        );
    }
    let bytes = std::fs::read(path).with_context(|| format!("{name}: cannot be read"))?;
    let content = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("{name}: is not UTF-8 text (binary file?)"))?;
    Ok(InputFile { name, content })
}

async fn send_apply(
    client: &ClientArgs,
    paths: &[PathBuf],
    manager: &str,
    prune: bool,
    dry_run: bool,
    force: bool,
    with_diff: bool,
) -> anyhow::Result<Value> {
    let files = read_inputs(paths)?;
    let body = json!({
        "files": files.iter().map(|f| json!({"name": f.name, "content": f.content})).collect::<Vec<_>>()
    });
    let query = format!(
        "{API_PREFIX}/apply?fieldManager={}&prune={prune}&dryRun={dry_run}&force={force}&diff={with_diff}",
        urlencode(manager)
    );
    Ok(client
        .client()
        .request(Method::POST, &query, Some(&body))
        .await?)
}

async fn apply(
    client: &ClientArgs,
    paths: &[PathBuf],
    manager: &str,
    prune: bool,
    dry_run: bool,
    force: bool,
) -> anyhow::Result<()> {
    // The diff is not shown; the server need not render it.
    let outcome = send_apply(client, paths, manager, prune, dry_run, force, false).await?;
    let suffix = if dry_run { " (dry run)" } else { "" };
    for item in outcome["items"].as_array().into_iter().flatten() {
        let kind = item["kind"].as_str().and_then(Kind::from_kind_field);
        println!(
            "{}/{} {}{suffix}",
            kind.map_or("unknown", Kind::singular),
            item["name"].as_str().unwrap_or("?"),
            item["action"].as_str().unwrap_or("?"),
        );
    }
    Ok(())
}

async fn diff(
    client: &ClientArgs,
    paths: &[PathBuf],
    manager: &str,
    prune: bool,
) -> anyhow::Result<()> {
    let outcome = send_apply(client, paths, manager, prune, true, false, true).await?;
    print!("{}", outcome["diff"].as_str().unwrap_or_default());
    Ok(())
}

async fn get(
    client: &ApiClient,
    kind: Kind,
    name: Option<&str>,
    namespace: Option<&str>,
    format: Option<OutputFormat>,
) -> anyhow::Result<()> {
    if let (Kind::Secret, Some(name), None) = (kind, name, format) {
        let path = format!(
            "{API_PREFIX}/namespaces/{}/secrets/{name}/keys",
            namespace.unwrap_or("default")
        );
        print_secret_keys(&client.get(&path).await?);
        return Ok(());
    }
    let path = match name {
        Some(name) => {
            ApiClient::object_path(&ObjectKey::new(kind, namespace.unwrap_or("default"), name))
        }
        None => ApiClient::list_path(kind, namespace),
    };
    if format == Some(OutputFormat::Json) {
        // Re-indent the server's JSON on the way out, without building a tree of it:
        // a list of 10,000 objects prints in a fraction of the time.
        let body = client
            .raw_get(&path, None)
            .await?
            .bytes()
            .await
            .context("the answer was cut")?;
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let mut deserializer = serde_json::Deserializer::from_slice(&body);
        let mut serializer = serde_json::Serializer::pretty(&mut out);
        serde_transcode::transcode(&mut deserializer, &mut serializer)
            .context("the server's answer is not JSON")?;
        std::io::Write::write_all(&mut out, b"\n")?;
        return Ok(());
    }
    let answer = client.get(&path).await?;
    match format {
        Some(OutputFormat::Yaml) => print!("{}", output::yaml(&answer)),
        table_format => {
            let wide = table_format == Some(OutputFormat::Wide);
            let items = match name {
                Some(_) => vec![answer],
                None => answer["items"].as_array().cloned().unwrap_or_default(),
            };
            if items.is_empty() {
                match namespace {
                    Some(ns) => eprintln!("No {} found in namespace {ns}.", kind.plural()),
                    None => eprintln!("No {} found.", kind.plural()),
                }
                return Ok(());
            }
            let now = Utc::now();
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|o| output::row(kind, o, wide, now))
                .collect();
            print!("{}", output::table(&output::columns(kind, wide), &rows));
        }
    }
    Ok(())
}

async fn describe(client: &ApiClient, key: &ObjectKey) -> anyhow::Result<()> {
    let object = client.get(&ApiClient::object_path(key)).await?;
    let metadata = &object["metadata"];
    let field = |v: &Value| {
        v.as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| v.to_string())
    };
    println!("Name:              {}", field(&metadata["name"]));
    println!("Namespace:         {}", field(&metadata["namespace"]));
    println!("Kind:              {}", key.kind);
    println!("UID:               {}", field(&metadata["uid"]));
    println!("Generation:        {}", field(&metadata["generation"]));
    println!("Resource Version:  {}", field(&metadata["resourceVersion"]));
    println!(
        "Managed By:        {}",
        metadata["managedBy"].as_str().unwrap_or("<none>")
    );
    println!(
        "Created:           {}",
        field(&metadata["creationTimestamp"])
    );
    for (title, map) in [
        ("Labels", &metadata["labels"]),
        ("Annotations", &metadata["annotations"]),
    ] {
        let entries: Vec<String> = map
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        println!(
            "{:<19}{}",
            format!("{title}:"),
            if entries.is_empty() {
                "<none>".to_owned()
            } else {
                entries.join(", ")
            }
        );
    }
    println!("Spec:");
    print!("{}", indent(&output::yaml(&object["spec"])));
    if !object["status"].is_null() {
        println!("Status:");
        print!("{}", indent(&output::yaml(&object["status"])));
    }
    super::describe::extra(client, key, &object).await?;
    let path = format!(
        "{API_PREFIX}/namespaces/{}/events?for={}/{}",
        key.namespace,
        key.kind.singular(),
        urlencode(&key.name)
    );
    let events = client.get(&path).await?;
    let items = events["items"].as_array().cloned().unwrap_or_default();
    println!("Events:");
    if items.is_empty() {
        println!("  <none>");
    } else {
        print!("{}", indent(&output::events_table(&items, Utc::now())));
    }
    Ok(())
}

async fn events(
    client: &ApiClient,
    namespace: Option<&str>,
    involved: Option<&str>,
    format: Option<OutputFormat>,
) -> anyhow::Result<()> {
    let mut path = match namespace {
        Some(ns) => format!("{API_PREFIX}/namespaces/{ns}/events"),
        None => format!("{API_PREFIX}/events"),
    };
    if let Some(involved) = involved {
        path.push_str(&format!("?for={}", urlencode(involved)));
    }
    let answer = client.get(&path).await?;
    match format {
        Some(OutputFormat::Json) => println!("{}", serde_json::to_string_pretty(&answer)?),
        Some(OutputFormat::Yaml) => print!("{}", output::yaml(&answer)),
        _ => {
            let items = answer["items"].as_array().cloned().unwrap_or_default();
            if items.is_empty() {
                eprintln!("No events found.");
                return Ok(());
            }
            print!("{}", output::events_table(&items, Utc::now()));
        }
    }
    Ok(())
}

async fn tokens(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            name,
            scopes,
            expires,
            client,
        } => {
            let body = json!({ "name": name, "scopes": scopes, "expires": expires });
            let created: Value = client
                .client()
                .request(Method::POST, &format!("{API_PREFIX}/tokens"), Some(&body))
                .await?;
            eprintln!("token {name} created; it is shown only now:");
            println!("{}", created["token"].as_str().unwrap_or_default());
        }
        TokenCommand::List { client } => {
            let answer = client.client().get(&format!("{API_PREFIX}/tokens")).await?;
            let rows: Vec<Vec<String>> = answer["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| {
                    let scopes: Vec<&str> = t["scopes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    vec![
                        t["name"].as_str().unwrap_or("?").to_owned(),
                        scopes.join(","),
                        t["createdAt"].as_str().unwrap_or("?").to_owned(),
                        t["expiresAt"].as_str().unwrap_or("never").to_owned(),
                    ]
                })
                .collect();
            print!(
                "{}",
                output::table(&["NAME", "SCOPES", "CREATED", "EXPIRES"], &rows)
            );
        }
        TokenCommand::Revoke { name, client } => {
            let _: Value = client
                .client()
                .request::<(), Value>(
                    Method::DELETE,
                    &format!("{API_PREFIX}/tokens/{}", urlencode(&name)),
                    None,
                )
                .await?;
            println!("token {name} revoked");
        }
    }
    Ok(())
}

async fn secret_set(
    client: &ApiClient,
    namespace: &str,
    name: &str,
    pairs: Vec<(String, String)>,
) -> anyhow::Result<()> {
    let mut data = serde_json::Map::new();
    for (key, value) in pairs {
        let value = match value.strip_prefix('@') {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("{key}=@{path}: cannot read {path}"))?,
            None => value,
        };
        data.insert(key, Value::String(value));
    }
    let path = format!("{API_PREFIX}/namespaces/{namespace}/secrets/{name}/data");
    let answer: Value = client
        .request(Method::PUT, &path, Some(&json!({ "data": data })))
        .await?;
    print_secret_keys(&answer);
    Ok(())
}

fn print_secret_keys(answer: &Value) {
    println!(
        "secret/{} ({} keys, updated {})",
        answer["name"].as_str().unwrap_or("?"),
        answer["keys"].as_array().map_or(0, Vec::len),
        answer["updatedAt"].as_str().unwrap_or("?")
    );
    let rows: Vec<Vec<String>> = answer["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|k| {
            vec![
                k["key"].as_str().unwrap_or("?").to_owned(),
                k["size"]
                    .as_u64()
                    .map_or("-".to_owned(), |s| format!("{s} bytes")),
                if k["readable"].as_bool() == Some(true) {
                    "yes".to_owned()
                } else {
                    format!("no: {}", k["error"].as_str().unwrap_or("?"))
                },
            ]
        })
        .collect();
    print!("{}", output::table(&["KEY", "SIZE", "READABLE"], &rows));
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

fn keys_in_files(paths: &[PathBuf]) -> anyhow::Result<Vec<ObjectKey>> {
    let mut keys = Vec::new();
    let mut problems = Vec::new();
    for file in read_inputs(paths)? {
        let documents = parse_documents(&file.name, &file.content)?;
        for doc in &documents {
            match validate_document(doc) {
                Ok(object) => keys.push(object.key),
                Err(errors) => problems.extend(errors.into_iter().map(|e| e.to_string())),
            }
        }
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("\n"));
    }
    Ok(keys)
}

async fn delete(
    client: &ApiClient,
    keys: &[ObjectKey],
    ignore_not_found: bool,
) -> anyhow::Result<()> {
    let mut failed = false;
    for key in keys {
        match client
            .request::<(), Value>(Method::DELETE, &ApiClient::object_path(key), None)
            .await
        {
            Ok(_) => println!("{}/{} deleted", key.kind.singular(), key.name),
            Err(ClientError::Api { status, .. })
                if status == reqwest::StatusCode::NOT_FOUND && ignore_not_found => {}
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    if failed {
        bail!("some resources were not deleted");
    }
    Ok(())
}

async fn version(client: &ApiClient) -> anyhow::Result<()> {
    println!("Client Version: {}", env!("CARGO_PKG_VERSION"));
    match client.get("/version").await {
        Ok(server) => println!(
            "Server Version: {}",
            server["version"].as_str().unwrap_or("unknown")
        ),
        Err(e) => {
            println!("Server Version: unavailable");
            return Err(e.into());
        }
    }
    Ok(())
}

fn urlencode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// `flotilla get sources`: sync status of the git source.
async fn sources(client: &ApiClient, format: Option<OutputFormat>) -> anyhow::Result<()> {
    let answer = client.get(&format!("{API_PREFIX}/sources")).await?;
    match format {
        Some(OutputFormat::Json) => println!("{}", serde_json::to_string_pretty(&answer)?),
        Some(OutputFormat::Yaml) => print!("{}", output::yaml(&answer)),
        _ => {
            let items = answer["items"].as_array().cloned().unwrap_or_default();
            if items.is_empty() {
                eprintln!("No git source (flotilla serve --git-url URL).");
                return Ok(());
            }
            let now = Utc::now();
            let short = |v: &Value| {
                v.as_str()
                    .map_or("-".to_owned(), |c| c.chars().take(7).collect())
            };
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|s| {
                    let last = &s["lastSync"];
                    vec![
                        format!(
                            "{}#{}",
                            s["url"].as_str().unwrap_or_default(),
                            s["branch"].as_str().unwrap_or_default()
                        ),
                        short(&s["liveCommit"]),
                        if s["syncing"] == true {
                            "syncing".to_owned()
                        } else {
                            last["result"].as_str().unwrap_or("-").to_owned()
                        },
                        output::age(last["finishedAt"].as_str(), now),
                        s["nextAutoSync"].as_str().map_or("-".to_owned(), |t| {
                            format!("in {}", output::age(Some(t), now).trim_start_matches('-'))
                        }),
                    ]
                })
                .collect();
            print!(
                "{}",
                output::table(
                    &["REPOSITORY", "LIVE", "LAST SYNC", "AGE", "NEXT AUTO-SYNC"],
                    &rows
                )
            );
            for s in &items {
                print_sync_details(&s["lastSync"]);
            }
        }
    }
    Ok(())
}

/// `flotilla get leader`: which replica runs the controllers.
async fn leader(client: &ApiClient, format: Option<OutputFormat>) -> anyhow::Result<()> {
    let answer = client.get(&format!("{API_PREFIX}/leader")).await?;
    match format {
        Some(OutputFormat::Json) => println!("{}", serde_json::to_string_pretty(&answer)?),
        Some(OutputFormat::Yaml) => print!("{}", output::yaml(&answer)),
        _ => {
            if let Some(note) = answer["note"].as_str() {
                println!("This operator leads: {note}.");
                return Ok(());
            }
            let seconds = |v: &Value| v.as_f64().map_or("-".to_owned(), |s| format!("{s:.1}s"));
            let text = |v: &Value| v.as_str().unwrap_or("-").to_owned();
            let row = vec![
                text(&answer["holder"]),
                answer["epoch"]
                    .as_i64()
                    .map_or("-".to_owned(), |e| e.to_string()),
                seconds(&answer["leaseAgeSeconds"]),
                seconds(&answer["leaseTtlSeconds"]),
                text(&answer["answeredBy"]),
            ];
            print!(
                "{}",
                output::table(
                    &["HOLDER", "EPOCH", "RENEWED", "TTL", "ANSWERED BY"],
                    &[row]
                )
            );
        }
    }
    Ok(())
}

fn print_sync_details(last: &Value) {
    if let Some(message) = last["message"].as_str() {
        println!("\n{message}");
    }
    for error in last["errors"].as_array().into_iter().flatten() {
        println!("  {}", error["text"].as_str().unwrap_or_default());
    }
}

/// `flotilla sync`: POST …/sources/sync, waiting for the result unless told not to.
async fn sync(client: &ApiClient, wait: bool) -> anyhow::Result<()> {
    let path = format!(
        "{API_PREFIX}/sources/sync{}",
        if wait { "?wait=true" } else { "" }
    );
    let status: Value = client.request(Method::POST, &path, None::<&Value>).await?;
    if !wait {
        println!("sync requested");
        return Ok(());
    }
    let last = &status["lastSync"];
    print_sync_details(last);
    match last["result"].as_str() {
        Some("applied" | "unchanged") => Ok(()),
        Some(result) => bail!("sync {result}"),
        None => bail!("the sync did not finish in time; see `flotilla get sources`"),
    }
}
