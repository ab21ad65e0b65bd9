//! [`FindingStore`] on SQLite: one row per finding, the record as JSON beside the columns the
//! queries select and sort on (partial indexes keep "active" and "pending" cheap).

use async_trait::async_trait;
use certpilot_core::model::channel::Channel;
use certpilot_core::model::finding::{Finding, Severity};
use certpilot_core::ports::{ChannelStore, FindingStore, StoreError};
use rusqlite::{Connection, OptionalExtension, params};

use super::{SqliteStore, backend};

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS findings (
    key      TEXT PRIMARY KEY,
    record   TEXT NOT NULL,
    version  INTEGER NOT NULL,
    severity INTEGER NOT NULL,
    active   INTEGER NOT NULL,
    pending  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS findings_active ON findings (severity DESC, key) WHERE active = 1;
CREATE INDEX IF NOT EXISTS findings_pending ON findings (severity DESC, key) WHERE pending = 1;
CREATE TABLE IF NOT EXISTS channels (
    name   TEXT PRIMARY KEY,
    record TEXT NOT NULL
) WITHOUT ROWID;
";

fn rank(s: Severity) -> i64 {
    match s {
        Severity::Info => 0,
        Severity::Warning => 1,
        Severity::Critical => 2,
    }
}

fn to_json(f: &Finding) -> Result<String, StoreError> {
    serde_json::to_string(f).map_err(|e| StoreError::Backend(format!("finding {:?}: {e}", f.key)))
}

fn from_json(record: &str) -> Result<Finding, StoreError> {
    serde_json::from_str(record)
        .map_err(|e| StoreError::Backend(format!("a stored finding cannot be read: {e}")))
}

fn select(
    conn: &Connection,
    path: &std::path::Path,
    filter: &str,
) -> Result<Vec<Finding>, StoreError> {
    let sql = format!("SELECT record FROM findings {filter} ORDER BY severity DESC, key");
    let records: Vec<String> = conn
        .prepare(&sql)
        .and_then(|mut s| {
            s.query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<_>>()
        })
        .map_err(backend("read findings", path))?;
    records.iter().map(|r| from_json(r)).collect()
}

/// Deletes the resolved findings past their retention at `now`. Run when a finding is
/// resolved, so the table holds at most the problems of the last retention period.
fn purge_forgotten(
    conn: &Connection,
    path: &std::path::Path,
    now: time::OffsetDateTime,
) -> Result<(), StoreError> {
    let forgotten: Vec<String> = select(conn, path, "WHERE active = 0 AND pending = 0")?
        .into_iter()
        .filter(|f| !f.is_retained(now))
        .map(|f| f.key)
        .collect();
    for key in forgotten {
        conn.execute("DELETE FROM findings WHERE key = ?1", [&key])
            .map_err(backend("purge resolved findings", path))?;
    }
    Ok(())
}

#[async_trait]
impl FindingStore for SqliteStore {
    async fn finding(&self, key: &str) -> Result<Option<Finding>, StoreError> {
        let key = key.to_owned();
        self.read(move |conn, path| {
            conn.query_row("SELECT record FROM findings WHERE key = ?1", [&key], |r| {
                r.get::<_, String>(0)
            })
            .optional()
            .map_err(backend("read finding", path))?
            .map(|r| from_json(&r))
            .transpose()
        })
        .await
    }

    async fn put_finding(&self, finding: &Finding) -> Result<Finding, StoreError> {
        let mut stored = finding.clone();
        stored.version = finding.version + 1;
        let expected = finding.version;
        self.with(move |conn, path| {
            let what = format!("finding {:?}", stored.key);
            let values = (
                to_json(&stored)?,
                i64::try_from(stored.version).unwrap_or(i64::MAX),
                rank(stored.severity),
                i64::from(stored.is_active()),
                i64::from(stored.pending.is_some()),
            );
            let written = if expected == 0 {
                conn.execute(
                    "INSERT OR IGNORE INTO findings (key, record, version, severity, active, pending)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![stored.key, values.0, values.1, values.2, values.3, values.4],
                )
            } else {
                conn.execute(
                    "UPDATE findings SET record = ?2, version = ?3, severity = ?4, active = ?5,
                     pending = ?6 WHERE key = ?1 AND version = ?7",
                    params![
                        stored.key,
                        values.0,
                        values.1,
                        values.2,
                        values.3,
                        values.4,
                        i64::try_from(expected).unwrap_or(i64::MAX)
                    ],
                )
            }
            .map_err(backend("write finding", path))?;
            if written == 1 {
                if !stored.is_active() {
                    purge_forgotten(conn, path, stored.updated_at)?;
                }
                return Ok(stored);
            }
            let exists = conn
                .query_row("SELECT 1 FROM findings WHERE key = ?1", [&stored.key], |_| Ok(()))
                .optional()
                .map_err(backend("read finding", path))?
                .is_some();
            Err(match (expected, exists) {
                (0, _) => StoreError::AlreadyExists { what },
                (_, false) => StoreError::NotFound { what },
                (_, true) => StoreError::Conflict { what, expected },
            })
        })
        .await
    }

    async fn active_findings(&self) -> Result<Vec<Finding>, StoreError> {
        self.read(|conn, path| select(conn, path, "WHERE active = 1"))
            .await
    }

    async fn pending_findings(&self) -> Result<Vec<Finding>, StoreError> {
        self.read(|conn, path| select(conn, path, "WHERE pending = 1"))
            .await
    }

    async fn all_findings(&self) -> Result<Vec<Finding>, StoreError> {
        // A store opened read-only never purges: what is past retention is not listed.
        let now = time::OffsetDateTime::now_utc();
        let all = self.read(|conn, path| select(conn, path, "")).await?;
        Ok(all.into_iter().filter(|f| f.is_retained(now)).collect())
    }
}

#[async_trait]
impl ChannelStore for SqliteStore {
    async fn channels(&self) -> Result<Vec<Channel>, StoreError> {
        self.read(|conn, path| {
            let records: Vec<String> = conn
                .prepare("SELECT record FROM channels ORDER BY name")
                .and_then(|mut s| {
                    s.query_map([], |r| r.get::<_, String>(0))?
                        .collect::<rusqlite::Result<_>>()
                })
                .map_err(backend("read channels", path))?;
            records
                .iter()
                .map(|r| {
                    serde_json::from_str(r).map_err(|e| {
                        StoreError::Backend(format!("a stored channel cannot be read: {e}"))
                    })
                })
                .collect()
        })
        .await
    }

    async fn add_channel(&self, channel: &Channel) -> Result<(), StoreError> {
        let record = serde_json::to_string(channel)
            .map_err(|e| StoreError::Backend(format!("channel {:?}: {e}", channel.name)))?;
        let name = channel.name.clone();
        self.with(move |conn, path| {
            let written = conn
                .execute(
                    "INSERT OR IGNORE INTO channels (name, record) VALUES (?1, ?2)",
                    params![name, record],
                )
                .map_err(backend("write channel", path))?;
            if written == 0 {
                return Err(StoreError::AlreadyExists {
                    what: format!("channel {name:?}"),
                });
            }
            Ok(())
        })
        .await
    }

    async fn remove_channel(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_owned();
        self.with(move |conn, path| {
            conn.execute("DELETE FROM channels WHERE name = ?1", [&name])
                .map(|n| n > 0)
                .map_err(backend("remove channel", path))
        })
        .await
    }
}
