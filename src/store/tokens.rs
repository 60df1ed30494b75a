//! API tokens: name, scopes, expiry and a SHA-256 hash of the secret. The token itself
//! is shown once at creation and never stored.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Store;
use super::backend::Param;
use super::error::StoreError;

/// A stored token (without its secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRecord {
    /// Unique name.
    pub name: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
}

type Row = (String, String, i64, Option<i64>);

/// A token row; scopes that do not decode are an error (never "no scopes", which would
/// hide the damage behind 403s).
fn record((name, scopes, created, expires): Row) -> Result<TokenRecord, StoreError> {
    let scopes = serde_json::from_str(&scopes).map_err(|e| StoreError::Corrupt {
        key: format!("Token/{name}"),
        reason: format!("its scopes are not a list of strings: {e}"),
    })?;
    Ok(TokenRecord {
        name,
        scopes,
        created_at: DateTime::from_timestamp_millis(created).unwrap_or_default(),
        expires_at: expires.and_then(DateTime::from_timestamp_millis),
    })
}

impl Store {
    /// Stores a token by the hash of its secret; `AlreadyExists`-like conflict when the
    /// name is taken (reported as `Ok(false)`).
    pub async fn create_token(
        &self,
        name: &str,
        hash: &str,
        scopes: &[String],
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        let params = vec![
            Param::Text(name.to_owned()),
            Param::Text(hash.to_owned()),
            Param::Text(serde_json::to_string(scopes).unwrap_or_else(|_| "[]".into())),
            Param::Int(Utc::now().timestamp_millis()),
            Param::OptInt(expires_at.map(|t| t.timestamp_millis())),
        ];
        let rows: Vec<(String,)> = self
            .backend
            .fetch(
                "INSERT INTO tokens (name, hash, scopes, created_at, expires_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (name) DO NOTHING RETURNING name",
                params,
            )
            .await?;
        Ok(!rows.is_empty())
    }

    /// Replaces the hash and scopes of a token (creating it), e.g. the admin token set by
    /// `FLOTILLA_ADMIN_TOKEN`.
    pub async fn put_token(
        &self,
        name: &str,
        hash: &str,
        scopes: &[String],
    ) -> Result<(), StoreError> {
        let params = vec![
            Param::Text(name.to_owned()),
            Param::Text(hash.to_owned()),
            Param::Text(serde_json::to_string(scopes).unwrap_or_else(|_| "[]".into())),
            Param::Int(Utc::now().timestamp_millis()),
        ];
        self.backend
            .fetch::<(String,)>(
                "INSERT INTO tokens (name, hash, scopes, created_at, expires_at) VALUES ($1, $2, $3, $4, NULL) \
                 ON CONFLICT (name) DO UPDATE SET hash = excluded.hash, scopes = excluded.scopes, expires_at = NULL \
                 RETURNING name",
                params,
            )
            .await?;
        Ok(())
    }

    /// The token whose secret hashes to `hash`, if any (expired ones included; the
    /// caller checks expiry).
    pub async fn find_token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        let rows: Vec<Row> = self
            .backend
            .fetch(
                "SELECT name, scopes, created_at, expires_at FROM tokens WHERE hash = $1",
                vec![Param::Text(hash.to_owned())],
            )
            .await?;
        rows.into_iter().next().map(record).transpose()
    }

    /// Every token, by name.
    pub async fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let rows: Vec<Row> = self
            .backend
            .fetch(
                "SELECT name, scopes, created_at, expires_at FROM tokens ORDER BY name",
                Vec::new(),
            )
            .await?;
        rows.into_iter().map(record).collect()
    }

    /// Deletes a token; false when there was none of that name.
    pub async fn revoke_token(&self, name: &str) -> Result<bool, StoreError> {
        let rows: Vec<(String,)> = self
            .backend
            .fetch(
                "DELETE FROM tokens WHERE name = $1 RETURNING name",
                vec![Param::Text(name.to_owned())],
            )
            .await?;
        Ok(!rows.is_empty())
    }
}
