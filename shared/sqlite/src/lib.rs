//! The embedded [`Store`]: one SQLite file, for the CLI and for estates that need no AWS.
//!
//! Tables:
//! - `endpoints`: registered endpoints, keyed by canonical target, with a version column for
//!   optimistic locking.
//! - `observations`: every observation, keyed by (target, address, scanned_at).
//! - `latest`: one row per (target, address) with the newest observation and its brief
//!   history (certificate first seen, last material change), indexed by expiry.
//! - `certificates`: managed certificates as JSON records with a version column, indexed by
//!   when renewal next looks at them. No private key is ever stored here.
//! - `issuances`: when a certificate was issued for a name set, for the CA's duplicate limit;
//!   it outlives the records.
//!
//! Calls run on tokio's blocking pool behind one connection; SQLite serialises writers anyway,
//! and WAL mode lets a concurrent `certpilot inventory` read while a scan writes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

mod findings;
mod requests;

use async_trait::async_trait;
use certpilot_core::model::certificate::ManagedCertificate;
use certpilot_core::policy::{self, RecordDecision};
use certpilot_core::ports::{
    CertificateStore, DueQuery, DueUpdate, EndpointStore, InventoryEntry, InventoryQuery,
    ObservationStore, ScheduleStore, StoreError,
};
use certpilot_core::{Endpoint, Observation, Tags, Target};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use time::OffsetDateTime;

/// The schema version this code writes; older files are migrated on open.
const SCHEMA_VERSION: i64 = 4;

/// Version 1 had no scheduling and no "last seen"; bring such a file up to date.
const MIGRATE_FROM_1: &str = "
ALTER TABLE endpoints ADD COLUMN next_scan_at INTEGER;
ALTER TABLE latest ADD COLUMN last_seen INTEGER NOT NULL DEFAULT 0;
UPDATE latest SET last_seen = scanned_at;
";

/// Version 2 stored a next scan time per endpoint; version 3 sweeps computed slots and keeps
/// only explicit due times (a stored next scan time becomes one, cleared after that scan).
/// The slots themselves are filled in by [`fill_slots`].
const MIGRATE_FROM_2: &str = "
DROP INDEX IF EXISTS endpoints_by_due;
ALTER TABLE endpoints RENAME COLUMN next_scan_at TO due_at;
ALTER TABLE endpoints ADD COLUMN slot INTEGER NOT NULL DEFAULT 0;
";

/// Version 3 did not count failed scans in a row.
const MIGRATE_FROM_3: &str = "
ALTER TABLE latest ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;
";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS endpoints (
    target       TEXT PRIMARY KEY,
    tags         TEXT NOT NULL,
    added_at     INTEGER NOT NULL,
    version      INTEGER NOT NULL,
    due_at       INTEGER,
    slot         INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS endpoints_by_due_at ON endpoints (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS endpoints_by_slot ON endpoints (slot);
CREATE TABLE IF NOT EXISTS certificates (
    id            TEXT PRIMARY KEY,
    record        TEXT NOT NULL,
    version       INTEGER NOT NULL,
    next_check_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS certificates_by_check ON certificates (next_check_at);
CREATE TABLE IF NOT EXISTS scheduler (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    last_tick INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS observations (
    target      TEXT NOT NULL,
    address     TEXT NOT NULL,
    scanned_at  INTEGER NOT NULL,
    fingerprint TEXT,
    record      TEXT NOT NULL,
    PRIMARY KEY (target, address, scanned_at)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS observations_by_time ON observations (target, scanned_at DESC);
CREATE TABLE IF NOT EXISTS latest (
    target          TEXT NOT NULL,
    address         TEXT NOT NULL,
    scanned_at      INTEGER NOT NULL,
    not_after       INTEGER,
    record          TEXT NOT NULL,
    last_cert       TEXT,
    cert_first_seen INTEGER,
    last_changed    INTEGER NOT NULL,
    last_seen       INTEGER NOT NULL,
    failures        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (target, address)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS latest_by_expiry ON latest (not_after);
CREATE TABLE IF NOT EXISTS issuances (
    names     TEXT NOT NULL,
    id        TEXT NOT NULL,
    issued_at INTEGER NOT NULL,
    PRIMARY KEY (names, issued_at, id)
) WITHOUT ROWID;
";

/// How many read-only connections a file store keeps beside its writer: WAL lets them read
/// while the writer writes, so `certpilot serve` answers while a scan records.
const READERS: usize = 4;

/// A [`Store`] in one SQLite file: one writer connection, and a few readers.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    readers: Arc<Vec<Mutex<Connection>>>,
    next_reader: Arc<std::sync::atomic::AtomicUsize>,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

fn backend(context: &str, path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + use<> {
    let context = format!("sqlite {}: {context}", path.display());
    move |e| match e {
        rusqlite::Error::SqliteFailure(code, _)
            if matches!(
                code.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            StoreError::Unavailable(format!("{context}: {e}"))
        }
        other => StoreError::Backend(format!("{context}: {other}")),
    }
}

fn nanos(t: OffsetDateTime) -> i64 {
    // i64 nanoseconds reach the year 2262, beyond any certificate we will see.
    i64::try_from(t.unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

fn from_nanos(n: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(n)).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("stored {what} cannot be read: {e}"))
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`, creating its directory too.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Backend(format!("cannot create directory {}: {e}", dir.display()))
            })?;
        }
        let conn = Connection::open(&path).map_err(backend("open", &path))?;
        Self::init(conn, path)
    }

    /// Opens the existing store at `path` for reading only: nothing is created, migrated
    /// in place or written, so a read-only file or mount is fine. A store written by an
    /// older certpilot is migrated first when it can be written.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let flags =
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&path, flags).map_err(backend("open", &path))?;
        let err = backend("read", &path);
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(&err)?;
        let version = schema_version(&conn, &path)?;
        if version == 0 {
            return Err(StoreError::Backend(format!(
                "sqlite {}: not a certpilot store (no schema in it)",
                path.display()
            )));
        }
        if version < SCHEMA_VERSION {
            drop(conn);
            Self::open(&path).map_err(|e| {
                StoreError::Backend(format!(
                    "sqlite {}: written by an older certpilot and cannot be migrated here ({e}); \
                     run any command that writes, with write access, once",
                    path.display()
                ))
            })?;
            return Self::open_read_only(path);
        }
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            readers: Arc::default(),
            next_reader: Arc::default(),
            path,
        })
    }

    /// A private in-memory store (nothing persists).
    pub fn in_memory() -> Result<Self, StoreError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(backend("open", &path))?;
        Self::init(conn, path)
    }

    fn init(conn: Connection, path: PathBuf) -> Result<Self, StoreError> {
        let err = backend("initialise", &path);
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(&err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(&err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(&err)?;
        let version = schema_version(&conn, &path)?;
        if (1..SCHEMA_VERSION).contains(&version) {
            // Immediate: another process opening the same old file waits, then finds it
            // migrated, instead of failing half-way.
            let tx = rusqlite::Transaction::new_unchecked(&conn, TransactionBehavior::Immediate)
                .map_err(&err)?;
            if version == 1 {
                tx.execute_batch(MIGRATE_FROM_1).map_err(&err)?;
            }
            if version <= 2 {
                tx.execute_batch(MIGRATE_FROM_2).map_err(&err)?;
                fill_slots(&tx).map_err(&err)?;
            }
            // A file without `latest` yet gets it whole from SCHEMA below.
            let has_latest: bool = tx
                .query_row(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'latest'",
                    [],
                    |r| r.get::<_, i64>(0),
                )
                .map_err(&err)?
                > 0;
            if has_latest {
                tx.execute_batch(MIGRATE_FROM_3).map_err(&err)?;
            }
            tx.commit().map_err(&err)?;
        }
        conn.execute_batch(SCHEMA).map_err(&err)?;
        conn.execute_batch(findings::SCHEMA).map_err(&err)?;
        conn.execute_batch(requests::SCHEMA).map_err(&err)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(&err)?;
        // A private in-memory database has no file for other connections to share.
        let readers = if path.as_os_str() == ":memory:" {
            Vec::new()
        } else {
            (0..READERS)
                .map(|_| {
                    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
                    let reader = Connection::open_with_flags(&path, flags).map_err(&err)?;
                    reader
                        .busy_timeout(std::time::Duration::from_secs(10))
                        .map_err(&err)?;
                    Ok(Mutex::new(reader))
                })
                .collect::<Result<Vec<_>, StoreError>>()?
        };
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            readers: Arc::new(readers),
            next_reader: Arc::default(),
            path,
        })
    }

    /// Where the store lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f`, which only reads, on one of the read-only connections (the writer when there
    /// are none), on the blocking pool.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Path) -> Result<T, StoreError> + Send + 'static,
    {
        if self.readers.is_empty() {
            return self.with(f).await;
        }
        let readers = self.readers.clone();
        let i = self
            .next_reader
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            % readers.len();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = readers[i]
                .lock()
                .map_err(|_| StoreError::Backend("sqlite connection poisoned by a panic".into()))?;
            f(&mut guard, &path)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("sqlite task failed: {e}")))?
    }

    /// Runs `f` with the writer connection on the blocking pool.
    async fn with<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Path) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| StoreError::Backend("sqlite connection poisoned by a panic".into()))?;
            f(&mut guard, &path)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("sqlite task failed: {e}")))?
    }
}

/// The schema version of the store at `path`, refused when a newer certpilot wrote it.
fn schema_version(conn: &Connection, path: &Path) -> Result<i64, StoreError> {
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(backend("read the schema version", path))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Backend(format!(
            "sqlite {}: written by a newer certpilot (schema {version}, this one knows {SCHEMA_VERSION}); upgrade certpilot",
            path.display()
        )));
    }
    Ok(version)
}

/// Computes every endpoint's slot (the hash lives in the core, not in SQL).
fn fill_slots(conn: &Connection) -> rusqlite::Result<()> {
    let targets: Vec<String> = conn
        .prepare("SELECT target FROM endpoints")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut update = conn.prepare("UPDATE endpoints SET slot = ?2 WHERE target = ?1")?;
    for target in targets {
        update.execute(params![target, policy::scan_slot(&target)])?;
    }
    Ok(())
}

type EndpointRow = (String, String, i64, i64, Option<i64>);

const ENDPOINT_COLUMNS: &str = "target, tags, added_at, version, due_at";

fn read_endpoint(row: &rusqlite::Row<'_>) -> rusqlite::Result<EndpointRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

fn to_endpoint(
    (target, tags, added_at, version, due_at): EndpointRow,
) -> Result<Endpoint, StoreError> {
    let target: Target = target.parse().map_err(|e| corrupt("endpoint", e))?;
    let tags: Tags = serde_json::from_str(&tags).map_err(|e| corrupt("endpoint tags", e))?;
    Ok(Endpoint {
        target,
        tags,
        added_at: from_nanos(added_at),
        version: u64::try_from(version).unwrap_or(0),
        due_at: due_at.map(from_nanos),
    })
}

fn endpoint_row(conn: &Connection, path: &Path, key: &str) -> Result<Option<Endpoint>, StoreError> {
    conn.query_row(
        &format!("SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE target = ?1"),
        [key],
        read_endpoint,
    )
    .optional()
    .map_err(backend("read endpoint", path))?
    .map(to_endpoint)
    .transpose()
}

fn tags_json(tags: &Tags) -> String {
    // A map of strings always serialises.
    serde_json::to_string(tags).unwrap_or_else(|_| "{}".into())
}

/// What `latest` holds for one (target, address).
struct LatestRow {
    record: String,
    last_cert: Option<String>,
    cert_first_seen: Option<i64>,
    last_seen: i64,
    failures: u32,
}

fn record_one(
    tx: &rusqlite::Transaction<'_>,
    path: &Path,
    obs: &Observation,
) -> Result<u32, StoreError> {
    let err = backend("record observation", path);
    let address = obs.address_key();
    let at = nanos(obs.scanned_at);
    let previous = tx
        .query_row(
            "SELECT record, last_cert, cert_first_seen, last_seen, failures
             FROM latest WHERE target = ?1 AND address = ?2",
            params![obs.target, address],
            |r| {
                Ok(LatestRow {
                    record: r.get(0)?,
                    last_cert: r.get(1)?,
                    cert_first_seen: r.get(2)?,
                    last_seen: r.get(3)?,
                    failures: r.get(4)?,
                })
            },
        )
        .optional()
        .map_err(&err)?;
    let previous_obs: Option<Observation> = previous
        .as_ref()
        .map(|p| serde_json::from_str(&p.record))
        .transpose()
        .map_err(|e| corrupt("observation", e))?;
    let latest = previous_obs
        .as_ref()
        .zip(previous.as_ref())
        .map(|(o, p)| (o, from_nanos(p.last_seen), p.failures));
    let stored = previous.as_ref().map_or(0, |p| p.failures);
    let streak = policy::failure_streak(previous_obs.as_ref().map(|o| (o, stored)), obs);
    match policy::record_decision(latest, obs) {
        RecordDecision::Skip => Ok(stored),
        RecordDecision::RefreshLastSeen => {
            tx.execute(
                "UPDATE latest SET last_seen = ?3 WHERE target = ?1 AND address = ?2",
                params![obs.target, address, at],
            )
            .map_err(&err)?;
            Ok(stored)
        }
        RecordDecision::CountFailure => {
            tx.execute(
                "UPDATE latest SET last_seen = ?3, failures = ?4 WHERE target = ?1 AND address = ?2",
                params![obs.target, address, at, streak],
            )
            .map_err(&err)?;
            Ok(streak)
        }
        RecordDecision::Change => {
            let record =
                serde_json::to_string(obs).map_err(|e| StoreError::Backend(e.to_string()))?;
            tx.execute(
                "INSERT OR IGNORE INTO observations (target, address, scanned_at, fingerprint, record)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![obs.target, address, at, obs.fingerprint(), record],
            )
            .map_err(&err)?;
            let lineage = policy::cert_lineage(
                previous
                    .as_ref()
                    .map(|p| policy::CertLineage {
                        last_cert: p.last_cert.clone(),
                        first_seen: p.cert_first_seen,
                    })
                    .as_ref(),
                obs.fingerprint(),
                at,
            );
            let (last_cert, cert_first_seen) = (lineage.last_cert, lineage.first_seen);
            let not_after = obs
                .certificate
                .as_ref()
                .map(|c| c.not_after.unix_timestamp());
            tx.execute(
                "INSERT INTO latest (target, address, scanned_at, not_after, record, last_cert, cert_first_seen, last_changed, last_seen, failures)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?3, ?3, ?8)
                 ON CONFLICT (target, address) DO UPDATE SET
                    scanned_at = excluded.scanned_at, not_after = excluded.not_after,
                    record = excluded.record, last_cert = excluded.last_cert,
                    cert_first_seen = excluded.cert_first_seen,
                    last_changed = excluded.last_changed, last_seen = excluded.last_seen,
                    failures = excluded.failures",
                params![obs.target, address, at, not_after, record, last_cert, cert_first_seen, streak],
            )
            .map_err(&err)?;
            Ok(streak)
        }
    }
}

#[async_trait]
impl EndpointStore for SqliteStore {
    async fn add_endpoint(&self, endpoint: &Endpoint) -> Result<Endpoint, StoreError> {
        let mut stored = endpoint.clone();
        stored.version = 1;
        self.with(move |conn, path| {
            let key = stored.key();
            let inserted = conn
                .execute(
                    "INSERT OR IGNORE INTO endpoints (target, tags, added_at, version, due_at, slot)
                     VALUES (?1, ?2, ?3, 1, ?4, ?5)",
                    params![
                        key,
                        tags_json(&stored.tags),
                        nanos(stored.added_at),
                        stored.due_at.map(nanos),
                        stored.slot()
                    ],
                )
                .map_err(backend("add endpoint", path))?;
            if inserted == 0 {
                return Err(StoreError::AlreadyExists {
                    what: format!("endpoint {key:?}"),
                });
            }
            Ok(stored)
        })
        .await
    }

    async fn update_endpoint(&self, endpoint: &Endpoint) -> Result<Endpoint, StoreError> {
        let endpoint = endpoint.clone();
        self.with(move |conn, path| {
            let key = endpoint.key();
            let expected = i64::try_from(endpoint.version).unwrap_or(i64::MAX);
            let updated = conn
                .execute(
                    "UPDATE endpoints SET tags = ?2, version = version + 1 WHERE target = ?1 AND version = ?3",
                    params![key, tags_json(&endpoint.tags), expected],
                )
                .map_err(backend("update endpoint", path))?;
            if updated == 1 {
                return endpoint_row(conn, path, &key)?.ok_or_else(|| StoreError::NotFound {
                    what: format!("endpoint {key:?}"),
                });
            }
            match endpoint_row(conn, path, &key)? {
                None => Err(StoreError::NotFound {
                    what: format!("endpoint {key:?}"),
                }),
                Some(_) => Err(StoreError::Conflict {
                    what: format!("endpoint {key:?}"),
                    expected: endpoint.version,
                }),
            }
        })
        .await
    }

    async fn endpoint(&self, target: &str) -> Result<Option<Endpoint>, StoreError> {
        let key = target.to_owned();
        self.read(move |conn, path| endpoint_row(conn, path, &key))
            .await
    }

    async fn endpoints(&self) -> Result<Vec<Endpoint>, StoreError> {
        self.read(|conn, path| {
            let err = backend("list endpoints", path);
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {ENDPOINT_COLUMNS} FROM endpoints ORDER BY target"
                ))
                .map_err(&err)?;
            let rows = stmt.query_map([], read_endpoint).map_err(&err)?;
            rows.map(|r| r.map_err(&err).and_then(to_endpoint))
                .collect()
        })
        .await
    }

    async fn remove_endpoint(&self, target: &str) -> Result<(), StoreError> {
        let key = target.to_owned();
        self.with(move |conn, path| {
            let err = backend("remove endpoint", path);
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(&err)?;
            let removed = tx
                .execute("DELETE FROM endpoints WHERE target = ?1", [&key])
                .map_err(&err)?;
            if removed == 0 {
                return Err(StoreError::NotFound {
                    what: format!("endpoint {key:?}"),
                });
            }
            tx.execute("DELETE FROM latest WHERE target = ?1", [&key])
                .map_err(&err)?;
            tx.commit().map_err(&err)
        })
        .await
    }
}

#[async_trait]
impl ScheduleStore for SqliteStore {
    async fn endpoints_due(&self, query: &DueQuery) -> Result<Vec<Endpoint>, StoreError> {
        let query = query.clone();
        self.with(move |conn, path| {
            let err = backend("list due endpoints", path);
            // An explicit due time replaces the slot until it is cleared.
            let mut sql = format!("SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE due_at <= ?1");
            let mut values: Vec<i64> = vec![nanos(query.now)];
            let mut slots = Vec::new();
            for range in &query.slots {
                values.extend([i64::from(range.first), i64::from(range.last)]);
                slots.push(format!(
                    "slot BETWEEN ?{} AND ?{}",
                    values.len() - 1,
                    values.len()
                ));
            }
            if !slots.is_empty() {
                sql.push_str(&format!(
                    " OR (due_at IS NULL AND ({}))",
                    slots.join(" OR ")
                ));
            }
            sql.push_str(" ORDER BY target");
            let mut stmt = conn.prepare(&sql).map_err(&err)?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(values), read_endpoint)
                .map_err(&err)?;
            rows.map(|r| r.map_err(&err).and_then(to_endpoint))
                .collect()
        })
        .await
    }

    async fn set_due(&self, updates: &[DueUpdate]) -> Result<usize, StoreError> {
        let updates = updates.to_vec();
        self.with(move |conn, path| {
            let err = backend("set due times", path);
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(&err)?;
            let mut updated = 0;
            for u in &updates {
                updated += tx
                    .execute(
                        "UPDATE endpoints SET due_at = ?2 WHERE target = ?1",
                        params![u.target, u.due_at.map(nanos)],
                    )
                    .map_err(&err)?;
            }
            tx.commit().map_err(&err)?;
            Ok(updated)
        })
        .await
    }

    async fn last_tick(&self) -> Result<Option<OffsetDateTime>, StoreError> {
        self.with(|conn, path| {
            conn.query_row("SELECT last_tick FROM scheduler WHERE id = 1", [], |r| {
                r.get::<_, i64>(0)
            })
            .optional()
            .map(|t| t.map(from_nanos))
            .map_err(backend("read the scan schedule", path))
        })
        .await
    }

    async fn advance_tick(
        &self,
        from: Option<OffsetDateTime>,
        to: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.with(move |conn, path| {
            let err = backend("advance the scan schedule", path);
            let changed = match from {
                None => conn.execute(
                    "INSERT INTO scheduler (id, last_tick) VALUES (1, ?1) ON CONFLICT DO NOTHING",
                    [nanos(to)],
                ),
                Some(from) => conn.execute(
                    "UPDATE scheduler SET last_tick = ?2 WHERE id = 1 AND last_tick = ?1",
                    [nanos(from), nanos(to)],
                ),
            }
            .map_err(&err)?;
            if changed == 1 {
                Ok(())
            } else {
                Err(StoreError::Conflict {
                    what: "the scan schedule (another run advanced it)".into(),
                    expected: 0,
                })
            }
        })
        .await
    }
}

#[async_trait]
impl ObservationStore for SqliteStore {
    async fn record_observations(
        &self,
        observations: &[Observation],
    ) -> Result<Vec<u32>, StoreError> {
        let batch = observations.to_vec();
        self.with(move |conn, path| {
            let err = backend("record observations", path);
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(&err)?;
            let streaks = batch
                .iter()
                .map(|obs| record_one(&tx, path, obs))
                .collect::<Result<Vec<_>, _>>()?;
            tx.commit().map_err(&err)?;
            Ok(streaks)
        })
        .await
    }

    async fn inventory(&self, query: &InventoryQuery) -> Result<Vec<InventoryEntry>, StoreError> {
        let before = query.expiring_before.map(|t| t.unix_timestamp());
        let (after_target, after_address) = query.after.clone().unzip();
        let limit = query
            .limit
            .map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        self.read(move |conn, path| {
            let err = backend("read inventory", path);
            let mut stmt = conn
                .prepare(
                    "SELECT l.record, l.cert_first_seen, l.last_changed, e.tags, l.last_seen, l.failures
                     FROM latest l LEFT JOIN endpoints e ON e.target = l.target
                     WHERE (?1 IS NULL OR l.not_after < ?1)
                       AND (?2 IS NULL OR (l.target, l.address) > (?2, ?3))
                     ORDER BY l.target, l.address
                     LIMIT ?4",
                )
                .map_err(&err)?;
            let rows = stmt
                .query_map(params![before, after_target, after_address, limit], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<i64>>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, u32>(5)?,
                    ))
                })
                .map_err(&err)?;
            let mut out = Vec::new();
            for row in rows {
                let (record, first_seen, last_changed, endpoint_tags, last_seen, failures) =
                    row.map_err(&err)?;
                let observation: Observation =
                    serde_json::from_str(&record).map_err(|e| corrupt("observation", e))?;
                let registered = endpoint_tags.is_some();
                let tags = match endpoint_tags {
                    Some(t) => serde_json::from_str(&t).map_err(|e| corrupt("endpoint tags", e))?,
                    None => observation.tags.clone(),
                };
                out.push(InventoryEntry {
                    cert_first_seen: observation
                        .certificate
                        .as_ref()
                        .and(first_seen.map(from_nanos)),
                    last_changed: from_nanos(last_changed),
                    last_seen: from_nanos(last_seen),
                    failures,
                    observation,
                    tags,
                    registered,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn history(&self, target: &str, limit: usize) -> Result<Vec<Observation>, StoreError> {
        let key = target.to_owned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn, path| {
            let err = backend("read history", path);
            let mut stmt = conn
                .prepare(
                    "SELECT record FROM observations WHERE target = ?1
                     ORDER BY scanned_at DESC, address LIMIT ?2",
                )
                .map_err(&err)?;
            let rows = stmt
                .query_map(params![key, limit], |r| r.get::<_, String>(0))
                .map_err(&err)?;
            rows.map(|r| {
                let record = r.map_err(&err)?;
                serde_json::from_str(&record).map_err(|e| corrupt("observation", e))
            })
            .collect()
        })
        .await
    }
}

fn certificate_from(record: &str) -> Result<ManagedCertificate, StoreError> {
    serde_json::from_str(record).map_err(|e| corrupt("certificate", e))
}

fn certificate_json(c: &ManagedCertificate) -> Result<String, StoreError> {
    serde_json::to_string(c)
        .map_err(|e| StoreError::Backend(format!("certificate {:?}: {e}", c.id)))
}

fn certificate_row(
    conn: &Connection,
    path: &Path,
    id: &str,
) -> Result<Option<ManagedCertificate>, StoreError> {
    conn.query_row("SELECT record FROM certificates WHERE id = ?1", [id], |r| {
        r.get::<_, String>(0)
    })
    .optional()
    .map_err(backend("read certificate", path))?
    .map(|r| certificate_from(&r))
    .transpose()
}

fn certificate_list(
    conn: &Connection,
    path: &Path,
    sql: &str,
    args: &[i64],
) -> Result<Vec<ManagedCertificate>, StoreError> {
    let err = backend("list certificates", path);
    let mut stmt = conn.prepare(sql).map_err(&err)?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(0))
        .map_err(&err)?;
    rows.map(|r| r.map_err(&err).and_then(|s| certificate_from(&s)))
        .collect()
}

#[async_trait]
impl CertificateStore for SqliteStore {
    async fn add_certificate(
        &self,
        certificate: &ManagedCertificate,
    ) -> Result<ManagedCertificate, StoreError> {
        let mut stored = certificate.clone();
        stored.version = 1;
        self.with(move |conn, path| {
            let inserted = conn
                .execute(
                    "INSERT OR IGNORE INTO certificates (id, record, version, next_check_at)
                     VALUES (?1, ?2, 1, ?3)",
                    params![
                        stored.id,
                        certificate_json(&stored)?,
                        nanos(stored.renewal.next_check_at)
                    ],
                )
                .map_err(backend("add certificate", path))?;
            if inserted == 0 {
                return Err(StoreError::AlreadyExists {
                    what: format!("certificate {:?}", stored.id),
                });
            }
            Ok(stored)
        })
        .await
    }

    async fn update_certificate(
        &self,
        certificate: &ManagedCertificate,
    ) -> Result<ManagedCertificate, StoreError> {
        let mut stored = certificate.clone();
        stored.version = certificate.version + 1;
        let expected = certificate.version;
        self.with(move |conn, path| {
            let updated = conn
                .execute(
                    "UPDATE certificates SET record = ?2, version = ?3, next_check_at = ?4
                     WHERE id = ?1 AND version = ?5",
                    params![
                        stored.id,
                        certificate_json(&stored)?,
                        i64::try_from(stored.version).unwrap_or(i64::MAX),
                        nanos(stored.renewal.next_check_at),
                        i64::try_from(expected).unwrap_or(i64::MAX)
                    ],
                )
                .map_err(backend("update certificate", path))?;
            if updated == 1 {
                return Ok(stored);
            }
            match certificate_row(conn, path, &stored.id)? {
                None => Err(StoreError::NotFound {
                    what: format!("certificate {:?}", stored.id),
                }),
                Some(_) => Err(StoreError::Conflict {
                    what: format!("certificate {:?}", stored.id),
                    expected,
                }),
            }
        })
        .await
    }

    async fn certificate(&self, id: &str) -> Result<Option<ManagedCertificate>, StoreError> {
        let id = id.to_owned();
        self.read(move |conn, path| certificate_row(conn, path, &id))
            .await
    }

    async fn certificates(&self) -> Result<Vec<ManagedCertificate>, StoreError> {
        self.read(|conn, path| {
            certificate_list(
                conn,
                path,
                "SELECT record FROM certificates ORDER BY id",
                &[],
            )
        })
        .await
    }

    async fn remove_certificate(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.with(move |conn, path| {
            let removed = conn
                .execute("DELETE FROM certificates WHERE id = ?1", [&id])
                .map_err(backend("remove certificate", path))?;
            if removed == 0 {
                return Err(StoreError::NotFound {
                    what: format!("certificate {id:?}"),
                });
            }
            Ok(())
        })
        .await
    }

    async fn certificates_due(
        &self,
        before: OffsetDateTime,
    ) -> Result<Vec<ManagedCertificate>, StoreError> {
        let before = nanos(before);
        self.with(move |conn, path| {
            certificate_list(
                conn,
                path,
                "SELECT record FROM certificates WHERE next_check_at <= ?1
                 ORDER BY next_check_at, id",
                &[before],
            )
        })
        .await
    }

    async fn record_issuance(
        &self,
        names: &[String],
        id: &str,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let key = certpilot_core::model::certificate::name_set_key(names);
        let id = id.to_owned();
        self.with(move |conn, path| {
            conn.execute(
                "INSERT OR IGNORE INTO issuances (names, id, issued_at) VALUES (?1, ?2, ?3)",
                params![key, id, nanos(at)],
            )
            .map_err(backend("record issuance", path))?;
            Ok(())
        })
        .await
    }

    async fn issuances(
        &self,
        names: &[String],
        since: OffsetDateTime,
    ) -> Result<Vec<OffsetDateTime>, StoreError> {
        let key = certpilot_core::model::certificate::name_set_key(names);
        self.read(move |conn, path| {
            let err = backend("read issuances", path);
            let mut stmt = conn
                .prepare(
                    "SELECT issued_at FROM issuances WHERE names = ?1 AND issued_at > ?2
                     ORDER BY issued_at",
                )
                .map_err(&err)?;
            let rows = stmt
                .query_map(params![key, nanos(since)], |r| r.get::<_, i64>(0))
                .map_err(&err)?;
            rows.map(|r| r.map(from_nanos).map_err(&err)).collect()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn fresh() -> (SqliteStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path().join("nested/certpilot.db")).expect("open");
        (store, dir)
    }

    certpilot_testkit::store_contract!(fresh);
    certpilot_testkit::certificate_store_contract!(fresh);
    certpilot_testkit::finding_store_contract!(fresh);
    certpilot_testkit::request_store_contract!(fresh);
    certpilot_testkit::channel_store_contract!(fresh);

    #[tokio::test]
    async fn data_survives_reopening_the_file() {
        let (store, dir) = fresh().await;
        let target: Target = "shop.test".parse().unwrap();
        store
            .add_endpoint(&Endpoint::new(
                target,
                Tags::new(),
                OffsetDateTime::UNIX_EPOCH,
            ))
            .await
            .unwrap();
        drop(store);
        let again = SqliteStore::open(dir.path().join("nested/certpilot.db")).unwrap();
        assert_eq!(again.endpoints().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_version_2_file_keeps_its_next_scan_times_as_due_times() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v2.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE endpoints (target TEXT PRIMARY KEY, tags TEXT NOT NULL,
                 added_at INTEGER NOT NULL, version INTEGER NOT NULL, next_scan_at INTEGER);
             CREATE INDEX endpoints_by_due ON endpoints (next_scan_at);
             INSERT INTO endpoints VALUES ('a.test:443', '{}', 0, 1, 5000000000);
             INSERT INTO endpoints VALUES ('b.test:443', '{}', 0, 2, NULL);
             PRAGMA user_version = 2;",
        )
        .unwrap();
        drop(conn);
        let store = SqliteStore::open(&path).unwrap();
        let listed = store.endpoints().await.unwrap();
        assert_eq!(
            listed.iter().map(|e| e.due_at).collect::<Vec<_>>(),
            vec![
                Some(OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(5)),
                None
            ]
        );
        let due = store
            .endpoints_due(&certpilot_core::ports::DueQuery {
                slots: vec![],
                now: OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(5),
            })
            .await
            .unwrap();
        assert_eq!(due.len(), 1);
        drop(store);
        // Opening again does not migrate twice.
        assert_eq!(
            SqliteStore::open(&path)
                .unwrap()
                .endpoints()
                .await
                .unwrap()
                .len(),
            2
        );
    }

    #[tokio::test]
    async fn a_version_3_file_gains_failure_streaks_and_keeps_its_rows() {
        use certpilot_core::ErrorKind;
        use certpilot_testkit::observations::observed;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v3.db");
        let failed = |s: i64| {
            observed("down.test:443", "10.0.0.9:443")
                .at(OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(s))
                .error(ErrorKind::Refused)
                .build()
        };
        let record = serde_json::to_string(&failed(1)).unwrap();
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE latest (target TEXT NOT NULL, address TEXT NOT NULL,
                 scanned_at INTEGER NOT NULL, not_after INTEGER, record TEXT NOT NULL,
                 last_cert TEXT, cert_first_seen INTEGER, last_changed INTEGER NOT NULL,
                 last_seen INTEGER NOT NULL, PRIMARY KEY (target, address)) WITHOUT ROWID;
             PRAGMA user_version = 3;",
        )
        .unwrap();
        conn.execute(
            "INSERT INTO latest VALUES ('down.test:443', '10.0.0.9:443', 1000000000, NULL, ?1, NULL, NULL, 1000000000, 1000000000)",
            [&record],
        )
        .unwrap();
        drop(conn);
        let store = SqliteStore::open(&path).unwrap();
        let inv = store.inventory(&InventoryQuery::default()).await.unwrap();
        assert_eq!(inv.len(), 1);
        assert_eq!(inv[0].failures, 0, "not counted before the migration");
        // The stored failure counts as one: the next is the second in a row.
        assert_eq!(
            store.record_observations(&[failed(2)]).await.unwrap(),
            vec![2]
        );
    }

    #[tokio::test]
    async fn a_version_1_file_is_migrated_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE endpoints (target TEXT PRIMARY KEY, tags TEXT NOT NULL,
                 added_at INTEGER NOT NULL, version INTEGER NOT NULL);
             CREATE TABLE latest (target TEXT NOT NULL, address TEXT NOT NULL,
                 scanned_at INTEGER NOT NULL, not_after INTEGER, record TEXT NOT NULL,
                 last_cert TEXT, cert_first_seen INTEGER, last_changed INTEGER NOT NULL,
                 PRIMARY KEY (target, address)) WITHOUT ROWID;
             INSERT INTO endpoints VALUES ('shop.test:443', '{\"owner\":\"payments\"}', 0, 3);
             PRAGMA user_version = 1;",
        )
        .unwrap();
        drop(conn);
        let store = SqliteStore::open(&path).unwrap();
        let e = store.endpoint("shop.test:443").await.unwrap().unwrap();
        assert_eq!((e.version, e.due_at), (3, None));
        assert_eq!(e.tags.get("owner").map(String::as_str), Some("payments"));
        // Its slot was computed during the migration: a window around it finds it.
        let slot = e.slot();
        let due = |first: u32, last: u32| {
            let store = store.clone();
            async move {
                store
                    .endpoints_due(&certpilot_core::ports::DueQuery {
                        slots: vec![certpilot_core::policy::SlotRange { first, last }],
                        now: OffsetDateTime::UNIX_EPOCH,
                    })
                    .await
                    .unwrap()
                    .len()
            }
        };
        assert_eq!(due(slot, slot).await, 1);
        if slot > 0 {
            assert_eq!(due(0, slot - 1).await, 0);
        }
    }

    #[tokio::test]
    async fn a_file_from_a_newer_version_is_refused_with_advice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("future.db");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = SqliteStore::open(&path).unwrap_err().to_string();
        assert!(
            err.contains("newer certpilot") && err.contains("future.db"),
            "{err}"
        );
    }
}
