//! [`RequestStore`], [`AuditLog`] and [`IdempotencyStore`] on SQLite. The audit table refuses
//! updates and deletes by trigger, so even a bug in certpilot cannot rewrite history.

use async_trait::async_trait;
use certpilot_core::model::request::{
    AuditRecord, CertificateRequest, IdempotencyEntry, RequestState, SavedResponse,
};
use certpilot_core::ports::{AuditLog, Claim, IdempotencyStore, RequestStore, StoreError};
use rusqlite::{OptionalExtension, TransactionBehavior, params};
use time::OffsetDateTime;

use super::{SqliteStore, backend, corrupt};

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS requests (
    id      TEXT PRIMARY KEY,
    record  TEXT NOT NULL,
    version INTEGER NOT NULL,
    pending INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS requests_pending ON requests (id) WHERE pending = 1;
CREATE TABLE IF NOT EXISTS audit (
    key    TEXT PRIMARY KEY,
    record TEXT NOT NULL
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TABLE IF NOT EXISTS idempotency (
    key    TEXT PRIMARY KEY,
    record TEXT NOT NULL
) WITHOUT ROWID;
";

fn json<T: serde::Serialize>(what: &str, v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Backend(format!("{what}: {e}")))
}

fn parse<T: serde::de::DeserializeOwned>(what: &str, record: &str) -> Result<T, StoreError> {
    serde_json::from_str(record).map_err(|e| corrupt(what, e))
}

#[async_trait]
impl RequestStore for SqliteStore {
    async fn request(&self, id: &str) -> Result<Option<CertificateRequest>, StoreError> {
        let id = id.to_owned();
        self.read(move |conn, path| {
            conn.query_row("SELECT record FROM requests WHERE id = ?1", [&id], |r| {
                r.get::<_, String>(0)
            })
            .optional()
            .map_err(backend("read request", path))?
            .map(|r| parse("request", &r))
            .transpose()
        })
        .await
    }

    async fn put_request(&self, r: &CertificateRequest) -> Result<CertificateRequest, StoreError> {
        let mut stored = r.clone();
        stored.version = r.version + 1;
        let expected = r.version;
        self.with(move |conn, path| {
            let what = format!("request {:?}", stored.id);
            let record = json(&what, &stored)?;
            let pending = i64::from(stored.state == RequestState::PendingApproval);
            let version = i64::try_from(stored.version).unwrap_or(i64::MAX);
            let written = if expected == 0 {
                conn.execute(
                    "INSERT OR IGNORE INTO requests (id, record, version, pending)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![stored.id, record, version, pending],
                )
            } else {
                conn.execute(
                    "UPDATE requests SET record = ?2, version = ?3, pending = ?4
                     WHERE id = ?1 AND version = ?5",
                    params![
                        stored.id,
                        record,
                        version,
                        pending,
                        i64::try_from(expected).unwrap_or(i64::MAX)
                    ],
                )
            }
            .map_err(backend("write request", path))?;
            if written == 1 {
                return Ok(stored);
            }
            let exists: bool = conn
                .query_row("SELECT 1 FROM requests WHERE id = ?1", [&stored.id], |_| {
                    Ok(())
                })
                .optional()
                .map_err(backend("read request", path))?
                .is_some();
            Err(match (expected, exists) {
                (0, _) => StoreError::AlreadyExists { what },
                (_, false) => StoreError::NotFound { what },
                (_, true) => StoreError::Conflict { what, expected },
            })
        })
        .await
    }

    async fn pending_requests(&self) -> Result<Vec<CertificateRequest>, StoreError> {
        self.read(|conn, path| {
            let records: Vec<String> = conn
                .prepare("SELECT record FROM requests WHERE pending = 1 ORDER BY id")
                .and_then(|mut s| {
                    s.query_map([], |r| r.get::<_, String>(0))?
                        .collect::<rusqlite::Result<_>>()
                })
                .map_err(backend("read requests", path))?;
            records.iter().map(|r| parse("request", r)).collect()
        })
        .await
    }

    async fn remove_request(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.with(move |conn, path| {
            Ok(conn
                .execute("DELETE FROM requests WHERE id = ?1", [&id])
                .map_err(backend("remove request", path))?
                > 0)
        })
        .await
    }
}

#[async_trait]
impl AuditLog for SqliteStore {
    async fn append(&self, r: &AuditRecord) -> Result<(), StoreError> {
        let key = r.key();
        let record = json("audit record", r)?;
        self.with(move |conn, path| {
            let written = conn
                .execute(
                    "INSERT OR IGNORE INTO audit (key, record) VALUES (?1, ?2)",
                    params![key, record],
                )
                .map_err(backend("append to the audit trail", path))?;
            if written == 0 {
                return Err(StoreError::AlreadyExists {
                    what: format!("audit record {key:?}"),
                });
            }
            Ok(())
        })
        .await
    }

    async fn audit(
        &self,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        // Past every key: keys start with digits.
        let before = before.unwrap_or("~").to_owned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn, path| {
            let records: Vec<String> = conn
                .prepare("SELECT record FROM audit WHERE key < ?1 ORDER BY key DESC LIMIT ?2")
                .and_then(|mut s| {
                    s.query_map(params![before, limit], |r| r.get::<_, String>(0))?
                        .collect::<rusqlite::Result<_>>()
                })
                .map_err(backend("read the audit trail", path))?;
            records.iter().map(|r| parse("audit record", r)).collect()
        })
        .await
    }
}

#[async_trait]
impl IdempotencyStore for SqliteStore {
    async fn claim(&self, e: &IdempotencyEntry, now: OffsetDateTime) -> Result<Claim, StoreError> {
        let entry = e.clone();
        self.with(move |conn, path| {
            let err = backend("claim an idempotency key", path);
            // Immediate: the read and the write are one step for every other connection.
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(&err)?;
            let old: Option<IdempotencyEntry> = tx
                .query_row(
                    "SELECT record FROM idempotency WHERE key = ?1",
                    [&entry.key],
                    |r| r.get::<_, String>(0),
                )
                .optional()
                .map_err(&err)?
                .map(|r| parse("idempotency key", &r))
                .transpose()?;
            if let Some(old) = old.filter(|o| !o.is_expired(now)) {
                return Ok(Claim::Existing(old));
            }
            tx.execute(
                "INSERT OR REPLACE INTO idempotency (key, record) VALUES (?1, ?2)",
                params![entry.key, json("idempotency key", &entry)?],
            )
            .map_err(&err)?;
            // Keys are small, but nothing else ever deletes the expired ones.
            let cutoff = now - certpilot_core::model::request::IDEMPOTENCY_TTL;
            let expired: Vec<String> = {
                let mut stmt = tx
                    .prepare("SELECT key, record FROM idempotency")
                    .map_err(&err)?;
                let rows = stmt
                    .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                    .map_err(&err)?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(&err)?;
                rows.into_iter()
                    .filter(|(_, rec)| {
                        parse::<IdempotencyEntry>("idempotency key", rec)
                            .is_ok_and(|e| e.created_at <= cutoff)
                    })
                    .map(|(k, _)| k)
                    .collect()
            };
            for key in expired {
                tx.execute("DELETE FROM idempotency WHERE key = ?1", [&key])
                    .map_err(&err)?;
            }
            tx.commit().map_err(&err)?;
            Ok(Claim::Claimed)
        })
        .await
    }

    async fn complete(&self, key: &str, response: &SavedResponse) -> Result<(), StoreError> {
        let key = key.to_owned();
        let response = response.clone();
        self.with(move |conn, path| {
            let err = backend("save an idempotent response", path);
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(&err)?;
            let old: Option<String> = tx
                .query_row(
                    "SELECT record FROM idempotency WHERE key = ?1",
                    [&key],
                    |r| r.get(0),
                )
                .optional()
                .map_err(&err)?;
            if let Some(old) = old {
                let mut entry: IdempotencyEntry = parse("idempotency key", &old)?;
                entry.response = Some(response);
                tx.execute(
                    "UPDATE idempotency SET record = ?2 WHERE key = ?1",
                    params![key, json("idempotency key", &entry)?],
                )
                .map_err(&err)?;
            }
            tx.commit().map_err(&err)
        })
        .await
    }

    async fn release(&self, key: &str) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.with(move |conn, path| {
            conn.execute("DELETE FROM idempotency WHERE key = ?1", [&key])
                .map_err(backend("release an idempotency key", path))?;
            Ok(())
        })
        .await
    }
}
