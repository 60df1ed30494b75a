//! A real headless Chromium (`chromium-headless-shell`, Debian's package; `make deps`
//! installs it) driven over the Chrome DevTools Protocol: the tests load the dashboard,
//! read what a user sees and click what a user clicks. Each browser has its own
//! profile directory and its own process group (Debian's launcher is a shell script
//! that does not `exec`, and Chromium forks zygotes and renderers): dropping it kills
//! that group, by the id of the process the test started, and removes the profile.

#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The browser binary: `FLOTILLA_TEST_CHROMIUM`, else Debian's headless shell.
fn binary() -> PathBuf {
    std::env::var_os("FLOTILLA_TEST_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium-headless-shell"))
}

/// One headless browser with one page.
pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    socket: Socket,
    next_id: u64,
}

impl Browser {
    /// Starts a browser on `about:blank` and attaches to its page.
    pub async fn start() -> Self {
        let profile = tempfile::tempdir().expect("profile dir");
        let child = Command::new(binary())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}); `make deps` installs chromium-headless-shell",
                    binary().display()
                )
            });
        // The browser writes its port (and the browser target's path) once it listens.
        let port_file = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(60);
        let port: u16 = loop {
            if let Some(port) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|text| text.lines().next()?.trim().parse().ok())
            {
                break port;
            }
            assert!(
                Instant::now() < deadline,
                "the browser wrote no DevToolsActivePort"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let client = reqwest::Client::new();
        let page_url = loop {
            let targets: Value = match client
                .get(format!("http://127.0.0.1:{port}/json/list"))
                .send()
                .await
            {
                Ok(response) => response.json().await.unwrap_or_default(),
                Err(_) => Value::Null,
            };
            if let Some(url) = targets
                .as_array()
                .into_iter()
                .flatten()
                .find(|t| t["type"] == "page")
                .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            {
                break url.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "the browser shows no page: {targets}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let (socket, _) = tokio_tungstenite::connect_async(page_url.as_str())
            .await
            .expect("DevTools websocket");
        let mut browser = Browser {
            child,
            _profile: profile,
            socket,
            next_id: 0,
        };
        browser.call("Page.enable", json!({})).await;
        browser.call("Runtime.enable", json!({})).await;
        browser
    }

    /// Sends one DevTools command and returns its result (events before it are skipped).
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({ "id": id, "method": method, "params": params });
        self.socket
            .send(Message::Text(request.to_string().into()))
            .await
            .unwrap_or_else(|e| panic!("{method}: {e}"));
        loop {
            let message = tokio::time::timeout(Duration::from_secs(60), self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("{method}: no answer in 60 s"))
                .unwrap_or_else(|| panic!("{method}: the browser closed the connection"))
                .unwrap_or_else(|e| panic!("{method}: {e}"));
            let Message::Text(text) = message else {
                continue;
            };
            let answer: Value = serde_json::from_str(&text).unwrap_or_default();
            if answer["id"] == id {
                assert!(answer["error"].is_null(), "{method}: {answer}");
                return answer["result"].clone();
            }
        }
    }

    /// Loads `url` (the page's own scripts run as they do for a user).
    pub async fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url })).await;
    }

    /// The value of `expression` in the page (promises awaited), or the exception it
    /// threw.
    async fn try_eval(&mut self, expression: &str) -> Result<Value, Value> {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            )
            .await;
        match result["exceptionDetails"].is_null() {
            true => Ok(result["result"]["value"].clone()),
            false => Err(result["exceptionDetails"].clone()),
        }
    }

    /// The value of `expression` in the page (promises awaited).
    pub async fn eval(&mut self, expression: &str) -> Value {
        self.try_eval(expression)
            .await
            .unwrap_or_else(|e| panic!("{expression}: {e}"))
    }

    /// Waits (60 s at most) until `expression` is truthy in the page (an exception, as
    /// while a page is still loading, counts as not yet); returns its value.
    pub async fn wait_for(&mut self, what: &str, expression: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let value = self.try_eval(expression).await.unwrap_or(Value::Null);
            if !(value.is_null() || value == false || value == "" || value == 0) {
                return value;
            }
            let page = self
                .eval("document.body ? document.body.innerText : ''")
                .await;
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the page shows:\n{}",
                page.as_str().unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The group the launcher leads: the launcher, the browser and its helpers.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
