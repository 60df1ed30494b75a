//! Leases on the database's clock: one holder per name at a time, with an epoch that
//! grows with every change of holder (the leader's fencing token). Only PostgreSQL
//! stores are shared by several operators; on SQLite the one operator always leads.

use super::Store;
use super::backend::{Backend, Param};
use super::error::StoreError;

/// Takes or renews the lease when it is free, expired or already ours; the database's
/// `clock_timestamp()` decides, so replicas' clocks do not matter.
const TAKE_OR_RENEW: &str = "\
    INSERT INTO leases (name, holder, epoch, renewed_at, ttl_ms) \
    VALUES ($1, $2, 1, (extract(epoch FROM clock_timestamp()) * 1000)::bigint, $3) \
    ON CONFLICT (name) DO UPDATE SET \
        epoch = CASE WHEN leases.holder = EXCLUDED.holder THEN leases.epoch \
                     ELSE leases.epoch + 1 END, \
        holder = EXCLUDED.holder, \
        renewed_at = EXCLUDED.renewed_at, \
        ttl_ms = EXCLUDED.ttl_ms \
    WHERE leases.holder = EXCLUDED.holder \
       OR leases.renewed_at + leases.ttl_ms < EXCLUDED.renewed_at \
    RETURNING epoch";

/// Gives the lease up if `$2` holds it: the next taker need not wait for the ttl.
const RELEASE: &str = "\
    UPDATE leases SET renewed_at = 0 WHERE name = $1 AND holder = $2 RETURNING epoch";

const READ: &str = "\
    SELECT holder, epoch, \
           (extract(epoch FROM clock_timestamp()) * 1000)::bigint - renewed_at, ttl_ms \
    FROM leases WHERE name = $1";

/// A lease as stored.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    /// Who holds (or last held) it.
    pub holder: String,
    /// Grows with every change of holder.
    pub epoch: i64,
    /// Milliseconds since its last renewal, on the database's clock.
    pub age_ms: i64,
    /// How long it lasts after a renewal, in milliseconds.
    pub ttl_ms: i64,
}

impl Store {
    /// Whether operators sharing this store must elect a leader (PostgreSQL).
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Takes or renews lease `name` for `holder` for `ttl_ms`; returns its epoch when
    /// `holder` holds it afterwards, `None` while another holder's lease runs.
    pub async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let rows: Vec<(i64,)> = self
            .backend
            .fetch(
                TAKE_OR_RENEW,
                vec![
                    Param::Text(name.to_owned()),
                    Param::Text(holder.to_owned()),
                    Param::Int(ttl_ms),
                ],
            )
            .await?;
        Ok(rows.first().map(|(epoch,)| *epoch))
    }

    /// Gives lease `name` up when `holder` holds it (a leader shutting down after its
    /// controllers stopped); returns whether it did.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<bool, StoreError> {
        let rows: Vec<(i64,)> = self
            .backend
            .fetch(
                RELEASE,
                vec![Param::Text(name.to_owned()), Param::Text(holder.to_owned())],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    /// Lease `name` as stored, if it was ever taken.
    pub async fn lease(&self, name: &str) -> Result<Option<Lease>, StoreError> {
        let rows: Vec<(String, i64, i64, i64)> = self
            .backend
            .fetch(READ, vec![Param::Text(name.to_owned())])
            .await?;
        Ok(rows
            .into_iter()
            .next()
            .map(|(holder, epoch, age_ms, ttl_ms)| Lease {
                holder,
                epoch,
                age_ms,
                ttl_ms,
            }))
    }
}
