//! The ports: traits that adapters implement and services depend on.
//!
//! Each trait documents its contract. The same contract test suite
//! (`certpilot_testkit::store_contract!`) runs against every [`Store`] implementation.

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::model::endpoint::Endpoint;
use crate::model::observation::{Observation, ProbeError, Served};
use crate::model::target::ScanRequest;

/// The source of the current time. Services read time only through this, so tests fix it.
pub trait Clock: Send + Sync {
    /// The current time, UTC.
    fn now(&self) -> OffsetDateTime;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that always answers the same time.
#[derive(Clone, Copy, Debug)]
pub struct FixedClock(pub OffsetDateTime);

impl Clock for FixedClock {
    fn now(&self) -> OffsetDateTime {
        self.0
    }
}

/// Obtains the certificate an address serves.
///
/// Contract:
/// - `resolve` returns every address a target's name resolves to (A and AAAA), or the
///   request's known addresses without a lookup; a failure is a [`ProbeError`] of kind `dns`.
/// - `probe` obtains the chain even when it does not validate and when the server then asks
///   for a client certificate; validation is reported in [`Served::validation`], never as an
///   error. It returns within the prober's own connect and handshake deadlines: a caller may
///   still wrap it in a shorter whole-target deadline and drop the future.
/// - Both are safe to call concurrently; neither retries.
#[async_trait]
pub trait Prober: Send + Sync {
    /// The addresses to probe for `request`.
    async fn resolve(&self, request: &ScanRequest) -> Result<Vec<SocketAddr>, ProbeError>;

    /// Connects to `address`, runs the protocol's upgrade and the TLS handshake, and judges
    /// the presented chain as of `now`.
    async fn probe(
        &self,
        request: &ScanRequest,
        address: SocketAddr,
        now: OffsetDateTime,
    ) -> Result<Served, ProbeError>;
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The item does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for, e.g. `endpoint "shop.example.com:443"`.
        what: String,
    },
    /// The item exists already.
    #[error("{what} already exists")]
    AlreadyExists {
        /// What was being created.
        what: String,
    },
    /// The item changed since it was read: re-read it and try again.
    #[error(
        "{what} was changed by someone else (expected version {expected}); read it again and retry"
    )]
    Conflict {
        /// What was being written.
        what: String,
        /// The version the writer expected.
        expected: u64,
    },
    /// The backend is unavailable or overloaded; the same call may succeed later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The backend refused the operation or holds data this version cannot read.
    #[error("store error: {0}")]
    Backend(String),
}

impl StoreError {
    /// Whether repeating the same call later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Conflict { .. } | StoreError::Unavailable(_)
        )
    }
}

/// Which inventory rows to return.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InventoryQuery {
    /// Only rows whose served certificate expires before this time (failed probes excluded).
    pub expiring_before: Option<OffsetDateTime>,
}

/// The latest observation of one (endpoint, address), with its history in brief.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InventoryEntry {
    /// The latest observation.
    pub observation: Observation,
    /// The registered endpoint's tags when it is registered, else the observation's.
    pub tags: crate::model::endpoint::Tags,
    /// Whether the target is a registered endpoint.
    pub registered: bool,
    /// When the certificate served now was first seen on this (endpoint, address).
    pub cert_first_seen: Option<OffsetDateTime>,
    /// When the observation last changed materially (certificate, error kind, problems).
    pub last_changed: OffsetDateTime,
    /// When this (endpoint, address) was last seen in this state, to within
    /// [`policy::LAST_SEEN_REFRESH`](crate::policy::LAST_SEEN_REFRESH).
    pub last_seen: OffsetDateTime,
}

/// Sets or clears a registered endpoint's explicit due time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueUpdate {
    /// The endpoint's key (canonical target).
    pub target: String,
    /// The new [`Endpoint::due_at`]; `None` returns the endpoint to its slot.
    pub due_at: Option<OffsetDateTime>,
}

/// Which endpoints a scheduled run scans.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueQuery {
    /// Endpoints without a `due_at` whose [slot](crate::policy::scan_slot) is in one of
    /// these ranges.
    pub slots: Vec<crate::policy::SlotRange>,
    /// And endpoints whose `due_at` is at or before this time.
    pub now: OffsetDateTime,
}

/// Durable state: registered endpoints and the observations of every scan.
///
/// Contract, for every implementation:
/// - **Keys.** An endpoint is keyed by its target's canonical spelling; an observation by
///   (target, address, scanned_at). Inventory rows are keyed by (target, address).
/// - **Not found.** Reading a missing endpoint is `Ok(None)`; removing or updating one is
///   [`StoreError::NotFound`].
/// - **Versions.** `add_endpoint` stores version 1 and fails with
///   [`StoreError::AlreadyExists`] when the key exists. `update_endpoint` writes only when the
///   stored version equals `endpoint.version`, stores `version + 1` and returns it; otherwise
///   [`StoreError::Conflict`], and nothing is written.
/// - **What is written.** `record_observations` follows [`policy::record_decision`]: an
///   observation that changed something (certificate, error kind, validation problems) goes
///   into history and becomes the latest; an unchanged one only refreshes "last seen", at most
///   once per [`policy::LAST_SEEN_REFRESH`]; an older or repeated one writes nothing.
/// - **Atomicity.** Each observation is recorded whole (history and latest together) or not at
///   all, so a failed batch can be retried whole: recording is idempotent.
/// - **Scheduling.** `endpoints_due` lists, sorted by key and each once, the endpoints with no
///   `due_at` whose slot is in the query's ranges, and those whose `due_at` is at or before
///   the query's `now` (a `due_at` replaces the slot until it is cleared). `set_due`
///   changes `due_at` without changing `version`, and skips endpoints removed meanwhile (never
///   re-creates them). `last_tick` is the time `advance_tick` last stored (`None` before the
///   first); `advance_tick(from, to)` stores `to` only if the stored tick is still `from`, else
///   [`StoreError::Conflict`] — two runs of the same tick cannot both advance it.
///
/// [`policy::record_decision`]: crate::policy::record_decision
/// [`policy::LAST_SEEN_REFRESH`]: crate::policy::LAST_SEEN_REFRESH
/// - **Concurrency.** Every method may be called from many tasks at once.
#[async_trait]
pub trait Store: Send + Sync {
    /// Registers a new endpoint.
    async fn add_endpoint(&self, endpoint: &Endpoint) -> Result<Endpoint, StoreError>;

    /// Replaces an endpoint's tags if its stored version is still `endpoint.version`.
    async fn update_endpoint(&self, endpoint: &Endpoint) -> Result<Endpoint, StoreError>;

    /// The endpoint registered under `target` (canonical spelling).
    async fn endpoint(&self, target: &str) -> Result<Option<Endpoint>, StoreError>;

    /// Every registered endpoint, sorted by key.
    async fn endpoints(&self) -> Result<Vec<Endpoint>, StoreError>;

    /// Unregisters an endpoint. Its observations stay in history.
    async fn remove_endpoint(&self, target: &str) -> Result<(), StoreError>;

    /// Registered endpoints due for a scheduled scan.
    async fn endpoints_due(&self, query: &DueQuery) -> Result<Vec<Endpoint>, StoreError>;

    /// Sets or clears explicit due times; returns how many endpoints were updated.
    async fn set_due(&self, updates: &[DueUpdate]) -> Result<usize, StoreError>;

    /// When the last scheduled run that advanced the schedule started.
    async fn last_tick(&self) -> Result<Option<OffsetDateTime>, StoreError>;

    /// Moves the schedule from `from` (what [`Store::last_tick`] returned) to `to`.
    async fn advance_tick(
        &self,
        from: Option<OffsetDateTime>,
        to: OffsetDateTime,
    ) -> Result<(), StoreError>;

    /// Records a batch of observations.
    async fn record_observations(&self, observations: &[Observation]) -> Result<(), StoreError>;

    /// The latest observation of every (target, address), sorted by target then address.
    async fn inventory(&self, query: &InventoryQuery) -> Result<Vec<InventoryEntry>, StoreError>;

    /// Observations of `target`, newest first, at most `limit`.
    async fn history(&self, target: &str, limit: usize) -> Result<Vec<Observation>, StoreError>;
}

/// Limits applied by the scan service.
#[derive(Clone, Copy, Debug)]
pub struct ScanLimits {
    /// Probes in flight at once.
    pub concurrency: usize,
    /// Deadline for one (target, address), and for resolving one target.
    pub target_timeout: Duration,
}

impl Default for ScanLimits {
    fn default() -> Self {
        ScanLimits {
            concurrency: 64,
            target_timeout: Duration::from_secs(15),
        }
    }
}

/// A batch of endpoints handed to another invocation to scan.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScanBatch {
    /// The endpoints, with the tags their observations carry.
    pub endpoints: Vec<BatchEndpoint>,
}

/// One endpoint of a [`ScanBatch`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BatchEndpoint {
    /// Canonical target.
    pub target: crate::model::target::Target,
    /// Its tags.
    #[serde(default)]
    pub tags: crate::model::endpoint::Tags,
    /// Whether the endpoint has an explicit due time to clear once it is scanned.
    #[serde(default)]
    pub clear_due: bool,
}

/// Why work could not be queued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// The queue service is unavailable or throttling; try again later.
    #[error("queue unavailable: {0}")]
    Unavailable(String),
    /// The queue refused the messages (missing queue, no permission, message too large).
    #[error("queue error: {0}")]
    Rejected(String),
}

/// Hands scan work to other invocations (SQS in AWS).
///
/// Contract: `send` delivers every batch at least once or returns an error; a batch may be
/// delivered more than once, so consumers must be idempotent (recording is).
#[async_trait]
pub trait WorkQueue: Send + Sync {
    /// Queues the batches.
    async fn send(&self, batches: &[ScanBatch]) -> Result<(), QueueError>;
}
