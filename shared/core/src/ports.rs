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

/// Managed certificates and their renewal state.
///
/// Contract, for every implementation:
/// - **Keys.** A certificate is keyed by its id.
/// - **Not found.** Reading a missing one is `Ok(None)`; updating or removing one is
///   [`StoreError::NotFound`].
/// - **Versions.** `add_certificate` stores version 1 ([`StoreError::AlreadyExists`] when the
///   id exists); `update_certificate` writes the whole record only if the stored version is
///   still `certificate.version`, stores `version + 1` and returns the stored record, else
///   [`StoreError::Conflict`] and nothing is written. A renewal's lease and every step are
///   written this way, so two workers can never both think they hold the lease.
/// - **Due.** `certificates_due(before)` lists the certificates whose
///   `renewal.next_check_at` is at or before `before`, earliest first.
/// - **Secrets.** Records hold no private key, only SecretStore versions.
/// - **Issuance log.** `record_issuance` appends (name set, id, time) to a log kept apart
///   from the records, so it outlives `remove_certificate` and is shared by every id with the
///   same names; recording the same (name set, id, time) twice keeps one entry.
///   `issuances(names, since)` returns the times logged for exactly that name set (sorted,
///   as [`ManagedCertificate::name_set`] spells it) after `since`, oldest first. The CA's
///   duplicate-certificate limit counts the same way.
///
/// [`ManagedCertificate::name_set`]: crate::model::certificate::CertificateSpec::name_set
#[async_trait]
pub trait CertificateStore: Send + Sync {
    /// Adds a managed certificate.
    async fn add_certificate(
        &self,
        certificate: &crate::model::certificate::ManagedCertificate,
    ) -> Result<crate::model::certificate::ManagedCertificate, StoreError>;

    /// Replaces a certificate record if its stored version is still `certificate.version`.
    async fn update_certificate(
        &self,
        certificate: &crate::model::certificate::ManagedCertificate,
    ) -> Result<crate::model::certificate::ManagedCertificate, StoreError>;

    /// The certificate with this id.
    async fn certificate(
        &self,
        id: &str,
    ) -> Result<Option<crate::model::certificate::ManagedCertificate>, StoreError>;

    /// Every managed certificate, sorted by id.
    async fn certificates(
        &self,
    ) -> Result<Vec<crate::model::certificate::ManagedCertificate>, StoreError>;

    /// Stops managing a certificate (its keys stay in the SecretStore).
    async fn remove_certificate(&self, id: &str) -> Result<(), StoreError>;

    /// Certificates to look at before `before`, earliest first.
    async fn certificates_due(
        &self,
        before: OffsetDateTime,
    ) -> Result<Vec<crate::model::certificate::ManagedCertificate>, StoreError>;

    /// Logs that a certificate for `names` was issued at `at` (under record `id`).
    async fn record_issuance(
        &self,
        names: &[String],
        id: &str,
        at: OffsetDateTime,
    ) -> Result<(), StoreError>;

    /// When certificates for exactly `names` were issued after `since`, oldest first.
    async fn issuances(
        &self,
        names: &[String],
        since: OffsetDateTime,
    ) -> Result<Vec<OffsetDateTime>, StoreError>;
}

/// Whether the worker named in a lease still exists, where that can be known: a process of
/// this host can be looked up, a Lambda invocation elsewhere cannot.
pub trait Liveness: Send + Sync {
    /// `true` only when `owner` is certainly gone; `false` when alive or unknown.
    fn is_gone(&self, owner: &str) -> bool;
}

/// Secret bytes (a private key, ACME account credentials, an HMAC key). Its `Debug` does not
/// show the bytes, it has no `Display`, and the bytes are overwritten when it is dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Vec<u8>);

impl SecretValue {
    /// Wraps bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretValue(bytes)
    }

    /// The bytes; the caller must not log them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The bytes as UTF-8 (PEM, JSON).
    pub fn expose_str(&self) -> Result<&str, SecretError> {
        std::str::from_utf8(&self.0).map_err(|_| SecretError::Backend("secret is not UTF-8".into()))
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretValue({} bytes, redacted)", self.0.len())
    }
}

impl Drop for SecretValue {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// Which version of a secret to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretVersion {
    /// The version in use (`AWSCURRENT`).
    Current,
    /// The one before it, kept for rollback (`AWSPREVIOUS`).
    Previous,
    /// A specific version id (for example a pending key).
    Id(String),
}

/// Why a secret operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// No such secret or version.
    #[error("secret not found: {0}")]
    NotFound(String),
    /// The backend is unavailable or throttling; try again later.
    #[error("secret store unavailable: {0}")]
    Unavailable(String),
    /// The backend refused (permissions, KMS, bad name).
    #[error("secret store error: {0}")]
    Backend(String),
}

impl SecretError {
    /// Whether repeating the same call later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, SecretError::Unavailable(_))
    }
}

/// Where private keys, ACME account credentials and API tokens live (Secrets Manager in
/// AWS, files with mode 0600 locally).
///
/// Contract: `put_pending` stores a new version without making it current and returns its
/// id (except that a secret's very first version may be current at once: Secrets Manager does
/// that, which is why keys are always read by version id); `promote` makes that version current and the former current one previous, and is
/// idempotent (promoting the current version again changes nothing); `put_current` is both in
/// one call; `get` returns `Ok(None)` for a missing secret or stage. Values never appear in
/// errors or logs.
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// Stores a new pending version of `name`; returns its version id.
    async fn put_pending(&self, name: &str, value: &SecretValue) -> Result<String, SecretError>;

    /// Makes version `version` of `name` current, keeping the former current as previous.
    async fn promote(&self, name: &str, version: &str) -> Result<(), SecretError>;

    /// Stores a new version of `name` and makes it current; returns its version id.
    async fn put_current(&self, name: &str, value: &SecretValue) -> Result<String, SecretError> {
        let version = self.put_pending(name, value).await?;
        self.promote(name, &version).await?;
        Ok(version)
    }

    /// Reads a version of `name`, with its version id.
    async fn get(
        &self,
        name: &str,
        version: &SecretVersion,
    ) -> Result<Option<(String, SecretValue)>, SecretError>;
}

/// A certificate as downloaded from the CA and checked against the key and the names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownloadedCertificate {
    /// The full chain, PEM, leaf first.
    pub chain_pem: String,
    /// SHA-256 of the leaf, hex.
    pub fingerprint: String,
    /// Serial, hex.
    pub serial: String,
    /// Validity start.
    pub not_before: OffsetDateTime,
    /// Validity end.
    pub not_after: OffsetDateTime,
    /// ARI certificate identifier, when the leaf has an authority key identifier.
    pub ari_id: Option<String>,
    /// The profile the order was issued under, as the CA reported it.
    pub profile: Option<String>,
}

/// A new order at the CA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewOrderInfo {
    /// The order URL.
    pub url: String,
    /// The profile asked for (only when the CA offers it).
    pub profile: Option<String>,
    /// The certificate the order replaces (ARI), if the CA accepted `replaces`.
    pub replaces: Option<String>,
}

/// Why the CA (or the way to it) failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// The CA's rate limit; retry after the given time.
    #[error("rate limited by the CA: {detail}")]
    RateLimited {
        /// The CA's words.
        detail: String,
        /// When the CA said to come back, if it did.
        retry_after: Option<Duration>,
    },
    /// Network failure, timeout, server error or nonces rejected too often: retry later.
    #[error("CA unavailable: {0}")]
    Unavailable(String),
    /// The DNS provider that publishes DNS-01 records failed or timed out: retry later.
    #[error("DNS provider unavailable: {0}")]
    DnsUnavailable(String),
    /// The CA could not validate control of a name.
    #[error("validation failed: {detail}")]
    Validation {
        /// The CA's words, per name when it said.
        detail: String,
        /// The CA's problem document (RFC 7807).
        problem: serde_json::Value,
    },
    /// The order is gone or invalid (expired, deactivated): start a new one with the same key.
    #[error("order no longer usable: {0}")]
    OrderGone(String),
    /// The CA refused `replaces` (already replaced, or another account): order without it.
    #[error("the CA refused to mark the old certificate as replaced: {0}")]
    ReplacesRefused(String),
    /// The CA refused the request (bad names, CAA, unauthorized, malformed).
    #[error("refused by the CA: {detail}")]
    Rejected {
        /// The CA's words.
        detail: String,
        /// The CA's problem document, when it sent one.
        problem: Option<serde_json::Value>,
    },
    /// The issued certificate does not match the key or the names, or does not parse.
    #[error("the issued certificate failed its checks: {0}")]
    Check(String),
    /// Configuration problem on our side (unreachable directory URL, missing EAB secret…).
    #[error("{0}")]
    Config(String),
}

impl IssueError {
    /// A short kind name for records and JSON output.
    pub fn kind(&self) -> &'static str {
        match self {
            IssueError::RateLimited { .. } => "rate_limited",
            IssueError::Unavailable(_) => "ca_unavailable",
            IssueError::DnsUnavailable(_) => "dns_unavailable",
            IssueError::Validation { .. } => "validation",
            IssueError::OrderGone(_) => "order_gone",
            IssueError::ReplacesRefused(_) => "replaces_refused",
            IssueError::Rejected { .. } => "rejected",
            IssueError::Check(_) => "check",
            IssueError::Config(_) => "config",
        }
    }

    /// Whether the same request later can succeed without anyone changing anything: the CA
    /// (or the way to it) was down, or its rate limit will lapse.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            IssueError::RateLimited { .. }
                | IssueError::Unavailable(_)
                | IssueError::DnsUnavailable(_)
        )
    }

    /// The CA's problem document, when there is one.
    pub fn problem(&self) -> Option<&serde_json::Value> {
        match self {
            IssueError::Validation { problem, .. } => Some(problem),
            IssueError::Rejected { problem, .. } => problem.as_ref(),
            _ => None,
        }
    }

    /// How long the CA asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            IssueError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// An ACME CA as the renewal state machine sees it. Each method is one resumable step; all
/// are idempotent for the same order, so a step interrupted by a crash can simply run again.
#[async_trait]
pub trait Issuer: Send + Sync {
    /// Generates a private key (PKCS#8 PEM).
    async fn generate_key(
        &self,
        key_type: crate::model::certificate::KeyType,
    ) -> Result<SecretValue, IssueError>;

    /// The CA's suggested renewal window for `cert` and when to ask again, or `None` when the
    /// CA does not offer ARI.
    async fn renewal_info(
        &self,
        spec: &crate::model::certificate::CertificateSpec,
        cert: &crate::model::certificate::IssuedCertificate,
    ) -> Result<Option<(crate::model::certificate::RenewalWindow, Duration)>, IssueError>;

    /// Creates an order for `spec`'s names, asking for its profile when the CA offers it and
    /// naming `replaces` when given.
    async fn create_order(
        &self,
        spec: &crate::model::certificate::CertificateSpec,
        replaces: Option<&str>,
    ) -> Result<NewOrderInfo, IssueError>;

    /// Publishes the challenge responses of every pending authorization and tells the CA
    /// they are ready. Responses stay published until [`Issuer::await_ready`] returns; running
    /// this again (after a crash) publishes them again without re-notifying the CA.
    async fn publish_challenges(
        &self,
        spec: &crate::model::certificate::CertificateSpec,
        order_url: &str,
    ) -> Result<(), IssueError>;

    /// Waits until the order is ready to finalize (every authorization valid), then removes
    /// the published responses.
    async fn await_ready(
        &self,
        spec: &crate::model::certificate::CertificateSpec,
        order_url: &str,
    ) -> Result<(), IssueError>;

    /// Sends the CSR for `key` (skipped when the order is already finalized).
    async fn finalize(
        &self,
        spec: &crate::model::certificate::CertificateSpec,
        order_url: &str,
        key: &SecretValue,
    ) -> Result<(), IssueError>;

    /// Waits for and downloads the certificate, and checks it against `key` and the names.
    async fn download(
        &self,
        spec: &crate::model::certificate::CertificateSpec,
        order_url: &str,
        key: &SecretValue,
    ) -> Result<DownloadedCertificate, IssueError>;
}

/// A DNS-01 TXT record: `_acme-challenge.<name>` and the key authorization digest.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxtRecord {
    /// The fully qualified record name, without the trailing dot.
    pub name: String,
    /// The record's value (unquoted).
    pub value: String,
}

/// A DNS service that DNS-01 challenges are answered through (Route 53, an RFC 2136 primary).
///
/// Contract: `publish` returns only once every authoritative server answers the records (Route
/// 53: the change is `INSYNC`; RFC 2136: the servers are queried), so the CA can be told to
/// validate; several records with one name (a name and its wildcard) are all published.
/// `withdraw` removes exactly those records and treats already-missing ones as removed.
#[async_trait]
pub trait DnsProvider: Send + Sync {
    /// Publishes `records` for a certificate configured with `config`.
    async fn publish(
        &self,
        config: &crate::model::certificate::DnsProviderConfig,
        records: &[TxtRecord],
    ) -> Result<(), IssueError>;

    /// Removes `records`.
    async fn withdraw(
        &self,
        config: &crate::model::certificate::DnsProviderConfig,
        records: &[TxtRecord],
    ) -> Result<(), IssueError>;
}

/// A DNS record ACM validation asks for (`_x.name.` CNAME `_y.acm-validations.aws.`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CnameRecord {
    /// The record name, without the trailing dot.
    pub name: String,
    /// Its target, without the trailing dot.
    pub value: String,
}

/// A DNS service that can hold ACM's validation CNAME records (Route 53).
///
/// Contract: `publish_cnames` creates or updates the records and returns once they are in
/// sync; `missing_cnames` lists those not (or no longer) in the zone with their value.
#[async_trait]
pub trait CnameProvider: Send + Sync {
    /// Writes `records`.
    async fn publish_cnames(
        &self,
        config: &crate::model::certificate::DnsProviderConfig,
        records: &[CnameRecord],
    ) -> Result<(), IssueError>;

    /// Those of `records` the zone does not hold.
    async fn missing_cnames(
        &self,
        config: &crate::model::certificate::DnsProviderConfig,
        records: &[CnameRecord],
    ) -> Result<Vec<CnameRecord>, IssueError>;
}

/// What ACM says about a certificate it issues.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcmDescription {
    /// `PENDING_VALIDATION`, `ISSUED`, `FAILED`, `VALIDATION_TIMED_OUT`, `EXPIRED`, `REVOKED`…
    pub status: String,
    /// Why it failed, when it did.
    pub failure_reason: Option<String>,
    /// The validation records it asks for (empty until ACM has made them).
    pub validation: Vec<CnameRecord>,
    /// Its managed renewal's status (`PENDING_AUTO_RENEWAL`, `PENDING_VALIDATION`, `SUCCESS`,
    /// `FAILED`), once one has started.
    pub renewal_status: Option<String>,
    /// Why the managed renewal is stuck, when ACM says.
    pub renewal_reason: Option<String>,
    /// The certificate, once issued.
    pub issued: Option<DownloadedCertificate>,
}

/// AWS Certificate Manager as an issuer: requests are asynchronous, so each call only starts
/// or reads; nothing waits.
#[async_trait]
pub trait AcmCertificates: Send + Sync {
    /// Requests a public certificate with DNS validation; `token` makes a retried request
    /// return the same ARN.
    async fn request(
        &self,
        region: &str,
        names: &[String],
        key_type: crate::model::certificate::KeyType,
        token: &str,
    ) -> Result<String, IssueError>;

    /// Reads a requested certificate.
    async fn describe(&self, region: &str, arn: &str) -> Result<AcmDescription, IssueError>;
}

/// Told about every certificate issued (the deploy queue in AWS, a deploy hook locally).
#[async_trait]
pub trait IssuedSink: Send + Sync {
    /// `certificate` now has a new current certificate. Must be idempotent: a crash after
    /// this and before the renewal is marked done calls it again.
    async fn issued(
        &self,
        certificate: &crate::model::certificate::ManagedCertificate,
    ) -> Result<(), String>;
}

/// A certificate as a deploy target takes it: the chain and its key.
#[derive(Clone, Debug)]
pub struct DeployMaterial {
    /// SHA-256 of the leaf, hex.
    pub fingerprint: String,
    /// The key type.
    pub key_type: crate::model::certificate::KeyType,
    /// Leaf first, then the intermediates, PEM.
    pub chain_pem: String,
    /// The private key, PKCS#8 PEM (empty when ACM issued it and keeps the key).
    pub key: SecretValue,
    /// The ACM certificate, when ACM issued it: targets bind it as it is.
    pub acm_arn: Option<String>,
}

/// One deploy: the certificate to install, the one to put back on rollback, and what was
/// recorded at this deployment last time (the ACM ARN certpilot imports into).
#[derive(Clone, Copy, Debug)]
pub struct DeployRequest<'a> {
    /// The managed certificate's id (tags the ACM import).
    pub id: &'a str,
    /// The certificate to install.
    pub certificate: &'a DeployMaterial,
    /// The certificate before it, when there was one.
    pub previous: Option<&'a DeployMaterial>,
    /// The deployment's last record.
    pub record: Option<&'a crate::model::deploy::DeploymentRecord>,
}

/// What a target holds now, read from its API.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Bound {
    /// The certificates bound (ACM ARNs), the default one first.
    pub certificates: Vec<String>,
    /// The leaf fingerprints of those that could be read.
    pub fingerprints: Vec<String>,
}

/// The result of [`DeployTarget::deploy`]: enough to finish or undo it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Deployed {
    /// The ACM certificate the new certificate was imported into.
    pub certificate_arn: Option<String>,
    /// What was bound before, when the deploy bound a different certificate (to remove after
    /// verification, or to bind again on rollback).
    pub replaced: Option<String>,
    /// Whether the certificate was bound beside others (added to an SNI list) rather than in
    /// place of one: a rollback removes it.
    pub added: bool,
}

/// Why a deploy, read or rollback failed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The configuration cannot work (names the setting).
    #[error("{0}")]
    Config(String),
    /// The target's API refused or could not be reached.
    #[error("{0}")]
    Target(String),
    /// The certificate's key could not be read.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The certificate store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Somewhere a certificate is installed: a load-balancer listener, a CDN, an API domain.
///
/// Contract: `deploy` is idempotent (a redelivered deploy changes nothing more) and leaves the
/// previous certificate usable until `finish`; `roll_back` puts back what was served before
/// `deploy` (with `deployed` absent when `deploy` failed part-way) and is idempotent too.
#[async_trait]
pub trait DeployTarget: Send + Sync {
    /// What is bound now.
    async fn bound(&self) -> Result<Bound, DeployError>;

    /// Installs `request.certificate`.
    async fn deploy(&self, request: DeployRequest<'_>) -> Result<Deployed, DeployError>;

    /// Called once the endpoints serve the new certificate: drops what it replaced where
    /// both were bound side by side (SNI lists).
    async fn finish(&self, deployed: &Deployed) -> Result<(), DeployError>;

    /// Puts back `request.previous` (or what `deployed.replaced` names).
    async fn roll_back(
        &self,
        request: DeployRequest<'_>,
        deployed: Option<&Deployed>,
    ) -> Result<(), DeployError>;
}

/// Builds the [`DeployTarget`] for a deployment (clients, regions, assumed roles).
#[async_trait]
pub trait DeployTargets: Send + Sync {
    /// The target `deployment` names.
    async fn target(
        &self,
        deployment: &crate::model::deploy::Deployment,
    ) -> Result<Box<dyn DeployTarget>, DeployError>;
}
