//! Events: what happened to an object (`RunCreated`, `MissedSchedule`, `OOMKilled`, …),
//! aggregated like Kubernetes' — a repeat of the same reason and message bumps `count`
//! and `lastSeen` instead of adding a row.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Store;
use super::backend::Param;
use super::error::StoreError;
use crate::resource::{Kind, ObjectKey};

/// `Normal` or `Warning`, as in Kubernetes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum EventType {
    /// Expected lifecycle steps.
    Normal,
    /// Something a user should look at.
    Warning,
}

/// A stored event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// The object it is about.
    pub involved: ObjectKey,
    /// Normal or Warning.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// CamelCase reason.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
    /// How often it happened.
    pub count: i64,
    /// First occurrence.
    pub first_seen: DateTime<Utc>,
    /// Last occurrence.
    pub last_seen: DateTime<Utc>,
}

const RECORD: &str = "INSERT INTO events (kind, namespace, name, type, reason, message, count, first_seen, last_seen) \
     VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $7) \
     ON CONFLICT (kind, namespace, name, reason, message) \
     DO UPDATE SET count = events.count + 1, last_seen = excluded.last_seen, type = excluded.type \
     RETURNING id";

/// Deletes the events of one object (`involved_params`); `RETURNING` makes it a query on
/// both backends alike.
pub(super) const DELETE_OF: &str =
    "DELETE FROM events WHERE kind = $1 AND namespace = $2 AND name = $3 RETURNING id";

/// The parameters of [`DELETE_OF`].
pub(super) fn involved_params(involved: &ObjectKey) -> Vec<Param> {
    vec![
        Param::Text(involved.kind.as_str().to_owned()),
        Param::Text(involved.namespace.clone()),
        Param::Text(involved.name.clone()),
    ]
}

const COLUMNS: &str = "kind, namespace, name, type, reason, message, count, first_seen, last_seen";

type Row = (
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    i64,
);

fn from_row(
    (kind, namespace, name, event_type, reason, message, count, first, last): Row,
) -> Option<Event> {
    Some(Event {
        involved: ObjectKey::new(Kind::from_kind_field(&kind)?, namespace, name),
        event_type: if event_type == "Warning" {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason,
        message,
        count,
        first_seen: DateTime::from_timestamp_millis(first)?,
        last_seen: DateTime::from_timestamp_millis(last)?,
    })
}

impl Store {
    /// Records (or counts again) an event about `involved`.
    pub async fn record_event(
        &self,
        involved: &ObjectKey,
        event_type: EventType,
        reason: &str,
        message: &str,
    ) -> Result<(), StoreError> {
        let params = vec![
            Param::Text(involved.kind.as_str().to_owned()),
            Param::Text(involved.namespace.clone()),
            Param::Text(involved.name.clone()),
            Param::Text(format!("{event_type:?}")),
            Param::Text(reason.to_owned()),
            Param::Text(message.to_owned()),
            Param::Int(Utc::now().timestamp_millis()),
        ];
        self.backend.fetch::<(i64,)>(RECORD, params).await?;
        Ok(())
    }

    /// Records several events in one transaction.
    pub async fn record_events(
        &self,
        events: Vec<(ObjectKey, EventType, String, String)>,
    ) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let now = Utc::now().timestamp_millis();
        let mut tx = self.backend.begin().await?;
        for (involved, event_type, reason, message) in events {
            let params = vec![
                Param::Text(involved.kind.as_str().to_owned()),
                Param::Text(involved.namespace),
                Param::Text(involved.name),
                Param::Text(format!("{event_type:?}")),
                Param::Text(reason),
                Param::Text(message),
                Param::Int(now),
            ];
            tx.fetch::<(i64,)>(RECORD, params).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Events, newest first: of one object, of a namespace, or all; at most `limit`.
    pub async fn list_events(
        &self,
        namespace: Option<&str>,
        involved: Option<(Kind, &str)>,
        limit: i64,
    ) -> Result<Vec<Event>, StoreError> {
        let (sql, params) = match (namespace, involved) {
            (Some(ns), Some((kind, name))) => (
                format!(
                    "SELECT {COLUMNS} FROM events WHERE namespace = $1 AND kind = $2 AND name = $3 ORDER BY last_seen DESC, id DESC LIMIT $4"
                ),
                vec![
                    Param::Text(ns.to_owned()),
                    Param::Text(kind.as_str().to_owned()),
                    Param::Text(name.to_owned()),
                    Param::Int(limit),
                ],
            ),
            (Some(ns), None) => (
                format!(
                    "SELECT {COLUMNS} FROM events WHERE namespace = $1 ORDER BY last_seen DESC, id DESC LIMIT $2"
                ),
                vec![Param::Text(ns.to_owned()), Param::Int(limit)],
            ),
            (None, _) => (
                format!("SELECT {COLUMNS} FROM events ORDER BY last_seen DESC, id DESC LIMIT $1"),
                vec![Param::Int(limit)],
            ),
        };
        let rows: Vec<Row> = self.backend.fetch(sqlx::AssertSqlSafe(sql), params).await?;
        Ok(rows.into_iter().filter_map(from_row).collect())
    }

    /// Deletes the events of an object (when the object itself is deleted).
    pub async fn delete_events(&self, involved: &ObjectKey) -> Result<(), StoreError> {
        self.backend
            .fetch::<(i64,)>(DELETE_OF, involved_params(involved))
            .await?;
        Ok(())
    }
}
