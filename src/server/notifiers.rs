//! `POST …/namespaces/{ns}/notifiers/{name}/test`: a test message through every channel
//! of a notifier, answered with what each channel said (`flotilla notify test`).

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use crate::controller::notify::send_test;
use crate::resource::types::NotifierSpec;
use crate::resource::{Kind, ObjectKey};

/// Limit of each channel's delivery; the request ends within it.
const TEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Sends the test; `delivered` is true when every channel took it. Errors are redacted
/// of the notifier's secret values.
pub(super) async fn test(
    State(state): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let key = ObjectKey::new(Kind::Notifier, namespace.clone(), name.clone());
    let notifier = state
        .store
        .get(&key)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("{key} not found")))?;
    let spec: NotifierSpec = notifier.spec_as()?;
    let outcomes = send_test(
        &state.store,
        state.keyring.as_deref(),
        &namespace,
        &name,
        &spec,
        TEST_TIMEOUT,
    )
    .await;
    let delivered = outcomes.iter().all(|(_, outcome)| outcome.is_ok());
    let channels: Vec<Value> = outcomes
        .into_iter()
        .map(|(channel, outcome)| match outcome {
            Ok(()) => json!({ "channel": channel.as_str(), "delivered": true }),
            Err(e) => json!({
                "channel": channel.as_str(),
                "delivered": false,
                "code": e.code(),
                "error": e.to_string(),
            }),
        })
        .collect();
    Ok(Json(json!({
        "notifier": format!("{namespace}/{name}"),
        "delivered": delivered,
        "channels": channels,
    })))
}
