//! Watches: `?watch=true` on list routes streams `ADDED`/`MODIFIED`/`DELETED` events as
//! newline-delimited JSON, like Kubernetes. A watch with `resourceVersion=N` resumes
//! after N from a bounded log of recent changes; when N is older than the log, the
//! answer is 410 Gone and the client re-lists, as with Kubernetes.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::error::ApiError;
use crate::resource::{Kind, RawObject};
use crate::store::{ChangeKind, Store, StoreEvent};

/// Changes kept for resuming watches: at most this many, rendered lines of at most
/// [`RETAINED_BYTES`] in all (a window of recent changes, like the API server's watch
/// cache; older resourceVersions answer 410 Gone and the client re-lists).
const RETAINED: usize = 20_000;
const RETAINED_BYTES: usize = 2 * 1024 * 1024;
/// Events a slow watcher may fall behind before it is dropped.
const CLIENT_BUFFER: usize = 1_024;

/// One change as watchers receive it: the event line is rendered once and shared, so
/// the log holds compact text rather than parsed objects.
#[derive(Clone, Debug)]
struct Recorded {
    key: crate::resource::ObjectKey,
    resource_version: i64,
    line: Arc<str>,
}

impl Recorded {
    fn of(event: &StoreEvent) -> Self {
        Self {
            key: event.key.clone(),
            resource_version: event.resource_version,
            line: Arc::from(event_line(
                event.change,
                &event.object,
                event.resource_version,
            )),
        }
    }
}

/// The retained window of changes and the size of their lines.
#[derive(Default)]
struct Retained {
    events: VecDeque<Recorded>,
    bytes: usize,
}

impl Retained {
    fn clear(&mut self) {
        self.events.clear();
        self.bytes = 0;
    }
}

/// Recent store changes, fed by the store's change feed.
#[derive(Clone)]
pub struct ChangeLog {
    recent: Arc<Mutex<Retained>>,
    live: broadcast::Sender<Recorded>,
}

impl ChangeLog {
    /// Starts recording `store`'s changes until `shutdown`.
    pub fn start(store: &Store, shutdown: CancellationToken) -> Self {
        let (live, _) = broadcast::channel(CLIENT_BUFFER * 4);
        let log = Self {
            recent: Arc::new(Mutex::new(Retained::default())),
            live,
        };
        let mut feed = store.subscribe();
        let recorder = log.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    event = feed.recv() => match event {
                        Ok(event) => recorder.push(event),
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            // Resuming across the gap would lose events: forget the past.
                            tracing::warn!(missed, "watch change log lagged; older resourceVersions expire");
                            recorder.lock().clear();
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            }
        });
        log
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Retained> {
        self.recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn push(&self, event: StoreEvent) {
        let event = Recorded::of(&event);
        {
            let mut recent = self.lock();
            recent.bytes += event.line.len();
            recent.events.push_back(event.clone());
            while recent.events.len() > RETAINED || recent.bytes > RETAINED_BYTES {
                match recent.events.pop_front() {
                    Some(dropped) => recent.bytes -= dropped.line.len(),
                    None => break,
                }
            }
        }
        let _ = self.live.send(event);
    }

    /// Events after `after` (of `kind`, in `namespace`), or `None` when they are no
    /// longer all retained.
    fn since(&self, after: i64, kind: Kind, namespace: Option<&str>) -> Option<Vec<Recorded>> {
        let recent = self.lock();
        let recent = &recent.events;
        let oldest = recent.front().map_or(i64::MAX, |e| e.resource_version);
        if after + 1 < oldest && !recent.is_empty() {
            return None;
        }
        Some(
            recent
                .iter()
                .filter(|e| e.resource_version > after && matches(e, kind, namespace))
                .cloned()
                .collect(),
        )
    }
}

fn matches(event: &Recorded, kind: Kind, namespace: Option<&str>) -> bool {
    event.key.kind == kind && namespace.is_none_or(|ns| event.key.namespace == ns)
}

/// The watch event of a change; `resource_version` is the change's own revision (for a
/// delete, later than the object's last write), as in Kubernetes.
/// One line of a watch stream: `{"object":{…},"type":"ADDED"}`, the object carrying
/// `resource_version` (a delete's own revision rather than the object's last one).
fn event_line(change: ChangeKind, object: &RawObject, resource_version: i64) -> String {
    let kind = match change {
        ChangeKind::Added => "ADDED",
        ChangeKind::Modified | ChangeKind::StatusModified => "MODIFIED",
        ChangeKind::Deleted => "DELETED",
    };
    let mut line = String::with_capacity(
        256 + object.spec.len() + object.status.as_ref().map_or(0, String::len),
    );
    line.push_str(r#"{"object":"#);
    if object.resource_version == resource_version {
        object.write_manifest(&mut line);
    } else {
        let object = RawObject {
            resource_version,
            ..object.clone()
        };
        object.write_manifest(&mut line);
    }
    line.push_str(r#","type":""#);
    line.push_str(kind);
    line.push_str("\"}\n");
    line
}

/// Answers a watch request.
pub async fn watch(
    store: &Store,
    changes: &ChangeLog,
    kind: Kind,
    namespace: Option<String>,
    resource_version: Option<i64>,
) -> Result<Response, ApiError> {
    let mut live = changes.live.subscribe();
    // (resourceVersion, line) of what the watcher sees first.
    let initial: Vec<(i64, Arc<str>)> = match resource_version {
        Some(after) => changes
            .since(after, kind, namespace.as_deref())
            .ok_or_else(|| ApiError::Gone(format!("resourceVersion {after} is too old to resume from; list again and watch from the list's resourceVersion")))?
            .into_iter()
            .map(|e| (e.resource_version, e.line))
            .collect(),
        None => store
            .list_raw(kind, namespace.as_deref())
            .await?
            .iter()
            .map(|o| {
                let line = event_line(ChangeKind::Added, o, o.resource_version);
                (o.resource_version, Arc::from(line))
            })
            .collect(),
    };
    let high_water = initial
        .iter()
        .map(|(rv, _)| *rv)
        .fold(resource_version.unwrap_or(0), i64::max);
    let (sender, receiver) =
        tokio::sync::mpsc::channel::<Result<Arc<str>, std::io::Error>>(CLIENT_BUFFER);
    tokio::spawn(async move {
        for (_, line) in initial {
            if sender.send(Ok(line)).await.is_err() {
                return;
            }
        }
        loop {
            match live.recv().await {
                Ok(event)
                    if event.resource_version > high_water
                        && matches(&event, kind, namespace.as_deref()) =>
                {
                    // A watcher that stops reading is dropped instead of buffering forever.
                    if sender.try_send(Ok(event.line)).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_))
                | Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    let stream = tokio_stream_from(receiver);
    Ok((
        [(header::CONTENT_TYPE, "application/json; stream=watch")],
        Body::from_stream(stream),
    )
        .into_response())
}

fn tokio_stream_from(
    mut receiver: tokio::sync::mpsc::Receiver<Result<Arc<str>, std::io::Error>>,
) -> impl futures::Stream<Item = Result<String, std::io::Error>> {
    futures::stream::poll_fn(move |cx| {
        receiver
            .poll_recv(cx)
            .map(|item| item.map(|line| line.map(|l| l.to_string())))
    })
    .boxed()
}
