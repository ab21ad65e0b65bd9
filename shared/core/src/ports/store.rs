//! The inventory: registered endpoints, their scan schedule, and observations.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::model::endpoint::Endpoint;
use crate::model::observation::Observation;

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

/// Which inventory rows to return.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InventoryQuery {
    /// Only rows whose served certificate expires before this time (failed probes excluded).
    pub expiring_before: Option<OffsetDateTime>,
    /// Only rows after this (target, address key), for the next page.
    pub after: Option<(String, String)>,
    /// At most this many rows.
    pub limit: Option<usize>,
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
    /// How many scans in a row have failed (0 when the latest served), counted up to
    /// [`policy::FAILURE_STREAK_CAP`](crate::policy::FAILURE_STREAK_CAP).
    pub failures: u32,
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
///
/// A service takes only the family it uses ([`EndpointStore`], [`ScheduleStore`],
/// [`ObservationStore`]); an adapter implements all three and is a `Store`.
pub trait Store: EndpointStore + ScheduleStore + ObservationStore {}

impl<T: EndpointStore + ScheduleStore + ObservationStore + ?Sized> Store for T {}

/// Registered endpoints: what is scanned by default, with its tags.
#[async_trait]
pub trait EndpointStore: Send + Sync {
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
}

/// The scan schedule: which endpoints are due, and how far scheduled runs have come.
#[async_trait]
pub trait ScheduleStore: Send + Sync {
    /// Registered endpoints due for a scheduled scan.
    async fn endpoints_due(&self, query: &DueQuery) -> Result<Vec<Endpoint>, StoreError>;

    /// Sets or clears explicit due times; returns how many endpoints were updated.
    async fn set_due(&self, updates: &[DueUpdate]) -> Result<usize, StoreError>;

    /// When the last scheduled run that advanced the schedule started.
    async fn last_tick(&self) -> Result<Option<OffsetDateTime>, StoreError>;

    /// Moves the schedule from `from` (what [`ScheduleStore::last_tick`] returned) to `to`.
    async fn advance_tick(
        &self,
        from: Option<OffsetDateTime>,
        to: OffsetDateTime,
    ) -> Result<(), StoreError>;
}

/// What scans saw: the latest observation of each (target, address), and history.
#[async_trait]
pub trait ObservationStore: Send + Sync {
    /// Records a batch of observations; returns, for each in order, how many scans in a row
    /// of its (endpoint, address) have failed as now recorded (0 when it served; see
    /// [`policy::failure_streak`](crate::policy::failure_streak)).
    async fn record_observations(
        &self,
        observations: &[Observation],
    ) -> Result<Vec<u32>, StoreError>;

    /// The latest observation of every (target, address), sorted by target then address
    /// key, those after `query.after`, at most `query.limit`.
    async fn inventory(&self, query: &InventoryQuery) -> Result<Vec<InventoryEntry>, StoreError>;

    /// Observations of `target`, newest first, at most `limit`.
    async fn history(&self, target: &str, limit: usize) -> Result<Vec<Observation>, StoreError>;
}
