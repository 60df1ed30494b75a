//! Server-sent events of a run's output: one event per stored line with `id:
//! <attempt>-<line>`, resumable with `Last-Event-ID` (no line lost, none repeated),
//! keep-alive comments while idle, and a final `end` event when the attempt is over.
//!
//! Each client reads the log (the local file or, on a replica without it, the chunks
//! shipped to the shared store: see [`super::output`]) through its own bounded channel: a
//! client that stops reading is dropped once its buffer is full, and never slows the
//! operator or others.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde_json::json;
use tokio::sync::mpsc;

use super::AppState;
use super::output::RunOutput;
use crate::resource::ObjectKey;
use crate::resource::types::RunStatus;

/// Lines buffered per client before a stalled client is dropped.
const CLIENT_BUFFER: usize = 2_048;
/// How long a full buffer may stay full before the client is dropped.
const STALL_LIMIT: Duration = Duration::from_secs(10);

/// Parses `Last-Event-ID` (`<attempt>-<line>`) for `attempt`: the lines to skip.
pub fn resume_after(last_event_id: Option<&str>, attempt: u32) -> u64 {
    last_event_id
        .and_then(|id| id.split_once('-'))
        .filter(|(a, _)| a.parse::<u32>().ok() == Some(attempt))
        .and_then(|(_, line)| line.parse::<u64>().ok())
        .unwrap_or(0)
}

/// The SSE response following one attempt's log from line `skip + 1`.
pub(super) fn follow(
    state: AppState,
    key: ObjectKey,
    mut output: RunOutput,
    attempt: u32,
    skip: u64,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let (sender, mut receiver) = mpsc::channel::<Event>(CLIENT_BUFFER);
    tokio::spawn(async move {
        if let Err(reason) = produce(&state, &key, &mut output, attempt, skip, &sender).await {
            tracing::debug!(run = %key, "log stream closed: {reason}");
        }
    });
    let stream = futures::stream::poll_fn(move |cx| receiver.poll_recv(cx).map(|e| e.map(Ok)));
    Sse::new(stream).keep_alive(
        KeepAlive::new()
            .interval(Duration::from_secs(15))
            .text("keep-alive"),
    )
}

async fn produce(
    state: &AppState,
    key: &ObjectKey,
    output: &mut RunOutput,
    attempt: u32,
    skip: u64,
    sender: &mpsc::Sender<Event>,
) -> Result<(), &'static str> {
    const STORE_FAILED: &str = "the store did not answer; resume with Last-Event-ID";
    let mut line_number = 0u64;
    let mut offset = 0u64;
    let mut grew = state.files.output_signal();
    loop {
        let (lines, next_offset) = output.lines(offset).await.map_err(|_| STORE_FAILED)?;
        offset = next_offset;
        for line in lines {
            line_number += 1;
            if line_number <= skip {
                continue;
            }
            let event = Event::default()
                .id(format!("{attempt}-{line_number}"))
                .data(line);
            match tokio::time::timeout(STALL_LIMIT, sender.send(event)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err("client went away"),
                Err(_) => return Err("client stalled; dropped"),
            }
        }
        let status = match state.store.get(key).await {
            Ok(Some(run)) => match run.status_as::<RunStatus>() {
                Ok(status) => status,
                Err(_) => return Err("the run's stored status cannot be read"),
            },
            _ => return Err("run deleted"),
        };
        let over = status.phase.is_finished() || status.attempts.len() as u32 > attempt;
        if over {
            let (rest, _) = output.lines(offset).await.map_err(|_| STORE_FAILED)?;
            if rest.is_empty() {
                // A local file that stopped growing while the store got more (this
                // replica lost the lead mid-run): the rest is read from the store.
                if output
                    .prefer_store_at_end(offset)
                    .await
                    .map_err(|_| STORE_FAILED)?
                {
                    continue;
                }
                let end = json!({ "phase": status.phase, "reason": status.reason, "attempts": status.attempts.len() });
                let _ = sender
                    .send(Event::default().event("end").data(end.to_string()))
                    .await;
                return Ok(());
            }
            continue;
        }
        if sender.is_closed() {
            return Err("client went away");
        }
        // Woken by new output anywhere in this process (then re-read), or by the poll: the
        // only wake-up for output another replica ships.
        let _ = tokio::time::timeout(output.poll_interval(), grew.changed()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::resume_after;

    #[test]
    fn last_event_id_resumes_only_the_same_attempt() {
        assert_eq!(resume_after(Some("2-41"), 2), 41);
        assert_eq!(resume_after(Some("1-41"), 2), 0);
        assert_eq!(resume_after(Some("garbage"), 1), 0);
        assert_eq!(resume_after(None, 1), 0);
    }
}
