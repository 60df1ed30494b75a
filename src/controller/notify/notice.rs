//! What a notification says, and how each channel writes it: a mail's subject and text,
//! a Teams Adaptive Card, a Slack message, the generic webhook's JSON document. Pure: no
//! I/O, so every rendering is tested as a value.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::resource::types::NotifyEvent;

/// One thing to tell people about.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Notice {
    /// What happened.
    pub event: Option<NotifyEvent>,
    /// Namespace of the objects involved.
    pub namespace: String,
    /// The pipeline, for run and schedule events.
    pub pipeline: Option<String>,
    /// The run, for run events.
    pub run: Option<String>,
    /// The schedule, for missed slots.
    pub schedule: Option<String>,
    /// The run's phase (`Failed`, `Succeeded`).
    pub phase: Option<String>,
    /// Machine reason (`OOMKilled`, `DeadlineExceeded`, `Error`, `MissedSchedule`).
    pub reason: Option<String>,
    /// Exit code of the last attempt.
    pub exit_code: Option<i64>,
    /// From the first attempt's start to the last one's end.
    pub duration: Option<Duration>,
    /// Attempts made.
    pub attempts: Option<usize>,
    /// One line for humans (the run's message, the missed slot, the sync error).
    pub detail: Option<String>,
    /// The last lines of the run's output, as stored (secret values already redacted).
    pub log_tail: Vec<String>,
    /// The run's dashboard page, when the operator knows its public URL.
    pub link: Option<String>,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Stable identity of what is notified (same across retries and restarts), for
    /// receivers that deduplicate.
    pub id: String,
}

impl Notice {
    /// The event's name, or `Test` for `flotilla notify test`.
    pub fn event_name(&self) -> &'static str {
        self.event.map_or("Test", NotifyEvent::as_str)
    }

    /// A short title: what happened to what.
    pub fn title(&self) -> String {
        let pipeline = self.pipeline.as_deref().unwrap_or("?");
        match self.event {
            None => "Test notification from Flotilla".to_owned(),
            Some(NotifyEvent::RunFailed) => format!("Pipeline {pipeline} failed"),
            Some(NotifyEvent::RunRecovered) => format!("Pipeline {pipeline} recovered"),
            Some(NotifyEvent::SoftLimitExceeded) => {
                format!("Pipeline {pipeline} exceeded a soft limit")
            }
            Some(NotifyEvent::ScheduleMissed) => format!(
                "Schedule {} missed a slot",
                self.schedule.as_deref().unwrap_or("?")
            ),
            Some(NotifyEvent::SyncFailed) => "Git sync failed".to_owned(),
        }
    }

    /// A mail subject: `[Flotilla] <title>: run <run> (<reason>, exit <code>)`.
    pub fn subject(&self) -> String {
        let mut subject = format!("[Flotilla] {}", self.title());
        if let Some(run) = &self.run {
            subject.push_str(&format!(": run {run}"));
        }
        let mut why = Vec::new();
        if let Some(reason) = &self.reason {
            why.push(reason.clone());
        }
        if let Some(code) = self.exit_code
            && self.event == Some(NotifyEvent::RunFailed)
        {
            why.push(format!("exit {code}"));
        }
        if !why.is_empty() {
            subject.push_str(&format!(" ({})", why.join(", ")));
        }
        one_line(&subject)
    }

    /// `(label, value)` facts in display order.
    pub fn facts(&self) -> Vec<(&'static str, String)> {
        let mut facts = vec![("Event", self.event_name().to_owned())];
        let mut push = |label, value: Option<String>| {
            if let Some(value) = value {
                facts.push((label, value));
            }
        };
        push("Namespace", Some(self.namespace.clone()));
        push("Pipeline", self.pipeline.clone());
        push("Run", self.run.clone());
        push("Schedule", self.schedule.clone());
        push("Phase", self.phase.clone());
        push("Reason", self.reason.clone());
        push("Exit code", self.exit_code.map(|c| c.to_string()));
        push("Duration", self.duration.map(format_duration));
        push("Attempts", self.attempts.map(|a| a.to_string()));
        push("Detail", self.detail.clone());
        push(
            "At",
            Some(self.at.to_rfc3339_opts(SecondsFormat::Secs, true)),
        );
        push("Link", self.link.clone());
        facts
    }

    /// The plain-text body of a mail.
    pub fn text(&self) -> String {
        let mut out = format!("{}\n\n", self.title());
        for (label, value) in self.facts() {
            out.push_str(&format!("{label}: {value}\n"));
        }
        if !self.log_tail.is_empty() {
            out.push_str(&format!(
                "\nLast {} line(s) of output:\n",
                self.log_tail.len()
            ));
            for line in &self.log_tail {
                out.push_str("    ");
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// The generic webhook's document.
    pub fn webhook_json(&self) -> Value {
        json!({
            "id": self.id,
            "event": self.event_name(),
            "title": self.title(),
            "namespace": self.namespace,
            "pipeline": self.pipeline,
            "run": self.run,
            "schedule": self.schedule,
            "phase": self.phase,
            "reason": self.reason,
            "exitCode": self.exit_code,
            "durationSeconds": self.duration.map(|d| d.as_secs_f64()),
            "attempts": self.attempts,
            "detail": self.detail,
            "logTail": self.log_tail,
            "url": self.link,
            "at": self.at.to_rfc3339_opts(SecondsFormat::Millis, true),
        })
    }

    /// A Teams message holding an Adaptive Card (what both the old Office 365 connectors
    /// and the Workflows incoming webhooks accept).
    pub fn teams_json(&self) -> Value {
        let facts: Vec<Value> = self
            .facts()
            .into_iter()
            .filter(|(label, _)| *label != "Link")
            .map(|(title, value)| json!({ "title": title, "value": value }))
            .collect();
        let mut body = vec![
            json!({ "type": "TextBlock", "size": "Medium", "weight": "Bolder", "wrap": true,
                    "text": self.title(),
                    "color": if self.event == Some(NotifyEvent::RunRecovered) { "Good" } else { "Attention" } }),
            json!({ "type": "FactSet", "facts": facts }),
        ];
        if !self.log_tail.is_empty() {
            body.push(
                json!({ "type": "TextBlock", "text": "Last lines of output", "weight": "Bolder" }),
            );
            body.push(
                json!({ "type": "TextBlock", "wrap": true, "fontType": "Monospace",
                              "text": self.log_tail.join("\n\n") }),
            );
        }
        let mut card = json!({
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard",
            "version": "1.4",
            "body": body,
        });
        if let Some(link) = &self.link {
            card["actions"] =
                json!([{ "type": "Action.OpenUrl", "title": "Open run", "url": link }]);
        }
        json!({
            "type": "message",
            "summary": self.subject(),
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": null,
                "content": card,
            }],
        })
    }

    /// A Slack incoming-webhook message: `text` for notifications, blocks for the body.
    pub fn slack_json(&self) -> Value {
        let facts: Vec<String> = self
            .facts()
            .into_iter()
            .filter(|(label, _)| *label != "Link")
            .map(|(label, value)| format!("*{label}:* {}", slack_escape(&value)))
            .collect();
        let mut blocks = vec![
            json!({ "type": "header", "text": { "type": "plain_text", "text": self.title() } }),
            json!({ "type": "section", "text": { "type": "mrkdwn", "text": facts.join("\n") } }),
        ];
        if !self.log_tail.is_empty() {
            let log = slack_escape(&self.log_tail.join("\n")).replace("```", "'''");
            blocks.push(
                json!({ "type": "section", "text": { "type": "mrkdwn", "text": format!("```{log}```") } }),
            );
        }
        if let Some(link) = &self.link {
            blocks.push(json!({ "type": "section", "text": { "type": "mrkdwn",
                                "text": format!("<{link}|Open run>") } }));
        }
        json!({ "text": self.subject(), "blocks": blocks })
    }
}

/// `1h 2m 3s`, `4.5s`.
pub fn format_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    if seconds < 60 {
        return format!("{:.1}s", duration.as_secs_f64());
    }
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if h > 0 {
        format!("{h}h {m}m {s}s")
    } else {
        format!("{m}m {s}s")
    }
}

/// Slack's three escapes.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A header value stays one line.
fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed() -> Notice {
        Notice {
            event: Some(NotifyEvent::RunFailed),
            namespace: "default".into(),
            pipeline: Some("nightly-etl".into()),
            run: Some("nightly-etl-x1".into()),
            phase: Some("Failed".into()),
            reason: Some("Error".into()),
            exit_code: Some(3),
            duration: Some(Duration::from_millis(83_500)),
            attempts: Some(2),
            detail: Some("attempt 2 exited 3".into()),
            log_tail: vec!["loading <rows>".into(), "token=*** rejected".into()],
            link: Some("https://flotilla.example.com/#/runs/default/nightly-etl-x1".into()),
            at: DateTime::from_timestamp(1_800_000_000, 0).expect("a time"),
            id: "uid-1/RunFailed".into(),
            ..Notice::default()
        }
    }

    #[test]
    fn the_subject_names_pipeline_run_reason_and_exit_code() {
        assert_eq!(
            failed().subject(),
            "[Flotilla] Pipeline nightly-etl failed: run nightly-etl-x1 (Error, exit 3)"
        );
        let recovered = Notice {
            event: Some(NotifyEvent::RunRecovered),
            reason: None,
            exit_code: Some(0),
            ..failed()
        };
        assert_eq!(
            recovered.subject(),
            "[Flotilla] Pipeline nightly-etl recovered: run nightly-etl-x1"
        );
        let injected = Notice {
            reason: Some("Error\r\nBcc: victim@example.com".into()),
            ..failed()
        };
        assert!(!injected.subject().contains('\n'));
    }

    #[test]
    fn the_text_holds_every_fact_and_the_log_tail() {
        let text = failed().text();
        for needle in [
            "Pipeline nightly-etl failed",
            "Pipeline: nightly-etl",
            "Run: nightly-etl-x1",
            "Reason: Error",
            "Exit code: 3",
            "Duration: 1m 23s",
            "Attempts: 2",
            "Link: https://flotilla.example.com/#/runs/default/nightly-etl-x1",
            "Last 2 line(s) of output:\n    loading <rows>\n    token=*** rejected\n",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from\n{text}");
        }
    }

    #[test]
    fn channel_documents() {
        let notice = failed();
        let hook = notice.webhook_json();
        assert_eq!(hook["event"], "RunFailed");
        assert_eq!(hook["exitCode"], 3);
        assert_eq!(hook["durationSeconds"], 83.5);
        assert_eq!(hook["logTail"][1], "token=*** rejected");
        assert_eq!(hook["id"], "uid-1/RunFailed");
        let teams = notice.teams_json();
        let card = &teams["attachments"][0]["content"];
        assert_eq!(card["type"], "AdaptiveCard");
        assert_eq!(
            card["actions"][0]["url"],
            notice.link.clone().expect("link")
        );
        assert!(card["body"][1]["facts"].as_array().is_some_and(|f| {
            f.iter()
                .any(|f| f["title"] == "Exit code" && f["value"] == "3")
        }));
        let slack = notice.slack_json();
        assert_eq!(slack["text"], notice.subject());
        let blocks = slack["blocks"].to_string();
        assert!(blocks.contains("loading &lt;rows&gt;"), "{blocks}");
        assert!(blocks.contains("|Open run>"), "{blocks}");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_duration(Duration::from_millis(4_500)), "4.5s");
        assert_eq!(format_duration(Duration::from_secs(125)), "2m 5s");
        assert_eq!(format_duration(Duration::from_secs(3_725)), "1h 2m 5s");
    }
}
