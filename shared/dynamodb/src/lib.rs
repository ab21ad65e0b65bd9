//! certpilot's AWS [`Store`]: one DynamoDB table.
//!
//! # Keys
//!
//! | item | `pk` | `sk` | index keys |
//! |---|---|---|---|
//! | endpoint | `EP#<target>` | `#ENDPOINT` | `due`: `gsi1pk` = `DUE#S<slot's top 3 bits>`, `gsi1sk` = `<slot, 10 digits>#<target>`; with an explicit due time `gsi1pk` = `DUE#A`, `gsi1sk` = `<due_at, ns, 20 digits>#<target>` |
//! | latest observation | `EP#<target>` | `LATEST#<address>` | `inventory`: `gsi2pk` = `INV#<shard>`, `gsi2sk` = `<notAfter, s, 12 digits, or 9…9>#<target>#<address>` |
//! | history | `EP#<target>` | `OBS#<scanned_at, ns, 20 digits>#<address>` | — (expires through the `expires_at` TTL) |
//! | tick marker | `SCHEDULE` | `#TICK` | — |
//! | managed certificate | `CERT#<id>` | `#CERT` | `due`: `gsi1pk` = `RENEW` (module `certificates`) |
//! | request, audit record, idempotency key | `REQUEST#<id>`, `AUDIT`, `IDEMPOTENCY#<key>` | see module `requests` | |
//! | finding | `FINDING#<key>` | `#FINDING` | `due`: `gsi1pk` = `FINDING#ACTIVE`/`FINDING#RESOLVED`; `inventory` while pending: `gsi2pk` = `FINDING#PENDING` (module `findings`) |
//!
//! Every access is a `GetItem`, `BatchGetItem` or a `Query` on a key or an index — never a
//! `Scan`. The indexes are sharded so that 100,000 endpoints do not all write one index
//! partition. The `due` index is sharded by the slot itself, so a scheduled run, which sweeps
//! a narrow range of slots, reads only the one or two shards that range covers, plus the small
//! `DUE#A` partition of explicit due times (new endpoints, unfinished work). The `inventory`
//! index is sharded by a hash of the target and an expiry query reads every shard.
//!
//! # Writes
//!
//! Endpoint edits are conditional on `version`; due-time changes are conditional on the
//! endpoint existing, in `TransactWriteItems` of up to 100 endpoints, and the tick marker is
//! advanced conditionally on the value read. A scan that finds nothing new writes nothing
//! to schedule the next one. Observations follow the core's
//! [`policy::record_decision`]: one `BatchGetItem` reads the latest items of a batch, and only
//! changes (history + latest) and daily "last seen" refreshes are written, in transactions
//! conditional on the stored latest being older, so a late or concurrent writer never
//! overwrites newer facts.
//!
//! # Permissions
//!
//! `dynamodb:GetItem`, `BatchGetItem`, `Query`, `PutItem`, `UpdateItem`, `DeleteItem`,
//! `TransactWriteItems` on the table and its indexes; `CreateTable`/`DescribeTable` only for
//! [`DynamoStore::create_table`].

mod certificates;
mod findings;
mod requests;

pub use requests::AUDIT_PK;

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
pub use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, Delete, GlobalSecondaryIndex,
    KeySchemaElement, KeyType, KeysAndAttributes, Projection, ProjectionType, Put,
    ScalarAttributeType, TransactWriteItem, Update,
};
use certpilot_core::policy::{self, RecordDecision};
use certpilot_core::ports::{
    DueQuery, DueUpdate, EndpointStore, InventoryEntry, InventoryQuery, ObservationStore,
    ScheduleStore, StoreError,
};
use certpilot_core::{Endpoint, Observation, Tags, Target};
use time::OffsetDateTime;

/// Partitions of the inventory index.
pub const SHARDS: u32 = 8;
/// The due index has `1 << DUE_SHARD_BITS` slot partitions.
const DUE_SHARD_BITS: u32 = 3;
/// Partition key and sort key of the tick marker.
const TICK_KEY: (&str, &str) = ("SCHEDULE", "#TICK");
/// How long history items live (the TTL attribute `expires_at`).
pub const HISTORY_RETENTION: time::Duration = time::Duration::days(400);
/// The due-scan index.
pub const DUE_INDEX: &str = "due";
/// The inventory/expiry index.
pub const INVENTORY_INDEX: &str = "inventory";
/// Most actions in one `TransactWriteItems`.
const MAX_TRANSACTION: usize = 100;
/// Most keys in one `BatchGetItem`.
const MAX_BATCH_GET: usize = 100;

/// A [`Store`] on one DynamoDB table.
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn nanos(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

fn from_nanos(v: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(v)).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Zero-padded so that string order is time order (nanoseconds since 1970 fit 19 digits).
fn padded_nanos(t: Option<OffsetDateTime>) -> String {
    format!("{:020}", t.map_or(0, |t| nanos(t).max(0)))
}

/// FNV-1a: stable across processes and versions, unlike std's hasher.
fn shard(target: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in target.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % SHARDS
}

fn endpoint_pk(target: &str) -> String {
    format!("EP#{target}")
}

const ENDPOINT_SK: &str = "#ENDPOINT";

fn latest_sk(address: &str) -> String {
    format!("LATEST#{address}")
}

fn slot_shard(slot: u32) -> u32 {
    slot >> (32 - DUE_SHARD_BITS)
}

/// The `due` index keys (`gsi1pk`, `gsi1sk`) of an endpoint.
fn due_keys(target: &str, due_at: Option<OffsetDateTime>) -> (String, String) {
    match due_at {
        Some(at) => (
            "DUE#A".into(),
            format!("{}#{target}", padded_nanos(Some(at))),
        ),
        None => {
            let slot = policy::scan_slot(target);
            (
                format!("DUE#S{}", slot_shard(slot)),
                format!("{slot:010}#{target}"),
            )
        }
    }
}

/// A condition on an index's sort key.
enum SortKey {
    Any,
    Below(String),
    Between(String, String),
}

fn inventory_sk(obs: &Observation) -> String {
    let expiry = obs.certificate.as_ref().map_or_else(
        // Failed probes sort after every certificate, so an expiry query never sees them.
        || "999999999999".to_owned(),
        |c| format!("{:012}", c.not_after.unix_timestamp().max(0)),
    );
    format!("{expiry}#{}#{}", obs.target, obs.address_key())
}

fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("stored {what} cannot be read: {detail}"))
}

type Item = HashMap<String, AttributeValue>;

fn get_s<'a>(item: &'a Item, key: &str) -> Result<&'a str, StoreError> {
    item.get(key)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .ok_or_else(|| corrupt("item", format!("attribute {key} missing or not a string")))
}

fn get_n(item: &Item, key: &str) -> Result<Option<i64>, StoreError> {
    match item.get(key) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(v) => v
            .as_n()
            .ok()
            .and_then(|n| n.parse().ok())
            .map(Some)
            .ok_or_else(|| corrupt("item", format!("attribute {key} is not a number"))),
    }
}

fn endpoint_item(e: &Endpoint) -> Item {
    let key = e.key();
    let mut item = Item::new();
    item.insert("pk".into(), s(endpoint_pk(&key)));
    item.insert("sk".into(), s(ENDPOINT_SK));
    item.insert("target".into(), s(&key));
    item.insert("tags".into(), s(tags_json(&e.tags)));
    item.insert("added_at".into(), n(nanos(e.added_at)));
    item.insert("version".into(), n(e.version));
    if let Some(due) = e.due_at {
        item.insert("due_at".into(), n(nanos(due)));
    }
    let (gsi1pk, gsi1sk) = due_keys(&key, e.due_at);
    item.insert("gsi1pk".into(), s(gsi1pk));
    item.insert("gsi1sk".into(), s(gsi1sk));
    item
}

fn tags_json(tags: &Tags) -> String {
    serde_json::to_string(tags).unwrap_or_else(|_| "{}".into())
}

fn endpoint_from(item: &Item) -> Result<Endpoint, StoreError> {
    let target: Target = get_s(item, "target")?
        .parse()
        .map_err(|e| corrupt("endpoint", e))?;
    let tags: Tags =
        serde_json::from_str(get_s(item, "tags")?).map_err(|e| corrupt("endpoint tags", e))?;
    Ok(Endpoint {
        target,
        tags,
        added_at: from_nanos(get_n(item, "added_at")?.unwrap_or(0)),
        version: u64::try_from(get_n(item, "version")?.unwrap_or(0)).unwrap_or(0),
        due_at: get_n(item, "due_at")?.map(from_nanos),
    })
}

/// Maps an SDK error: throttling, timeouts and server faults can succeed later.
fn sdk_error<E, R>(operation: &str, table: &str, e: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let code = e.code().unwrap_or_default().to_owned();
    let retryable = matches!(
        code.as_str(),
        "ProvisionedThroughputExceededException"
            | "RequestLimitExceeded"
            | "ThrottlingException"
            | "InternalServerError"
            | "ServiceUnavailable"
    ) || matches!(
        e,
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
    );
    // Service errors carry a code and a message; transport errors only their source chain.
    let detail = if code.is_empty() {
        certpilot_core::error_chain(&e)
    } else {
        format!("{code} {}", e.message().unwrap_or_default())
    };
    let text = format!("dynamodb {table}: {operation}: {detail}");
    if retryable {
        StoreError::Unavailable(text)
    } else {
        StoreError::Backend(text)
    }
}

fn is_conditional_failure<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.code() == Some("ConditionalCheckFailedException")
}

/// The cancellation reasons of a failed transaction, one per action ("None" when fine).
fn cancellation_reasons<R>(
    e: &SdkError<aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError, R>,
) -> Option<Vec<String>> {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError as T;
    match e.as_service_error() {
        Some(T::TransactionCanceledException(c)) => Some(
            c.cancellation_reasons()
                .iter()
                .map(|r| r.code().unwrap_or("None").to_owned())
                .collect(),
        ),
        _ => None,
    }
}

impl DynamoStore {
    /// A store on `table` through an existing client.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table.into(),
        }
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table with its indexes and TTL, as `infra/template.yaml` does (keep the
    /// two in step). For local use and tests; production tables come from the template.
    pub async fn create_table(&self) -> Result<(), StoreError> {
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| StoreError::Backend(e.to_string()))
        };
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(|e| StoreError::Backend(e.to_string()))
        };
        let index = |name: &str, pk: &str, sk: &str| -> Result<GlobalSecondaryIndex, StoreError> {
            GlobalSecondaryIndex::builder()
                .index_name(name)
                .key_schema(key(pk, KeyType::Hash)?)
                .key_schema(key(sk, KeyType::Range)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .map_err(|e| StoreError::Backend(e.to_string()))
        };
        self.client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("pk")?)
            .attribute_definitions(attr("sk")?)
            .attribute_definitions(attr("gsi1pk")?)
            .attribute_definitions(attr("gsi1sk")?)
            .attribute_definitions(attr("gsi2pk")?)
            .attribute_definitions(attr("gsi2sk")?)
            .key_schema(key("pk", KeyType::Hash)?)
            .key_schema(key("sk", KeyType::Range)?)
            .global_secondary_indexes(index(DUE_INDEX, "gsi1pk", "gsi1sk")?)
            .global_secondary_indexes(index(INVENTORY_INDEX, "gsi2pk", "gsi2sk")?)
            .send()
            .await
            .map_err(|e| sdk_error("CreateTable", &self.table, e))?;
        Ok(())
    }

    async fn get(&self, pk: String, sk: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", &self.table, e))?;
        Ok(out.item)
    }

    /// Every item of one partition of `index` whose sort key meets `sort`, following
    /// pagination.
    async fn query_partition(
        &self,
        index: &str,
        partition: String,
        sort: &SortKey,
    ) -> Result<Vec<Item>, StoreError> {
        let (pk_attr, sk_attr) = if index == DUE_INDEX {
            ("gsi1pk", "gsi1sk")
        } else {
            ("gsi2pk", "gsi2sk")
        };
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut q = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(index)
                .expression_attribute_names("#pk", pk_attr)
                .expression_attribute_values(":pk", s(partition.clone()))
                .set_exclusive_start_key(start.take());
            q = match sort {
                SortKey::Any => q.key_condition_expression("#pk = :pk"),
                SortKey::Below(below) => q
                    .key_condition_expression("#pk = :pk AND #sk < :below")
                    .expression_attribute_names("#sk", sk_attr)
                    .expression_attribute_values(":below", s(below.clone())),
                SortKey::Between(lo, hi) => q
                    .key_condition_expression("#pk = :pk AND #sk BETWEEN :lo AND :hi")
                    .expression_attribute_names("#sk", sk_attr)
                    .expression_attribute_values(":lo", s(lo.clone()))
                    .expression_attribute_values(":hi", s(hi.clone())),
            };
            let out = q
                .send()
                .await
                .map_err(|e| sdk_error("Query", &self.table, e))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(key) => start = Some(key),
                None => break,
            }
        }
        Ok(items)
    }

    /// Every endpoint item in the `due` index that one of `parts` selects, each once.
    async fn due_items(&self, parts: Vec<(String, SortKey)>) -> Result<Vec<Endpoint>, StoreError> {
        let mut found: std::collections::BTreeMap<String, Endpoint> = Default::default();
        for (partition, sort) in parts {
            for item in self.query_partition(DUE_INDEX, partition, &sort).await? {
                let endpoint = endpoint_from(&item)?;
                found.insert(endpoint.key(), endpoint);
            }
        }
        Ok(found.into_values().collect())
    }

    async fn latest_items(
        &self,
        keys: &[(String, String)],
    ) -> Result<HashMap<(String, String), Item>, StoreError> {
        let mut found = HashMap::new();
        for chunk in keys.chunks(MAX_BATCH_GET) {
            let mut request = KeysAndAttributes::builder().consistent_read(true);
            for (target, address) in chunk {
                let mut key = Item::new();
                key.insert("pk".into(), s(endpoint_pk(target)));
                key.insert("sk".into(), s(latest_sk(address)));
                request = request.keys(key);
            }
            let mut pending = Some(
                request
                    .build()
                    .map_err(|e| StoreError::Backend(e.to_string()))?,
            );
            let mut attempts = 0;
            while let Some(req) = pending.take() {
                attempts += 1;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, req)
                    .send()
                    .await
                    .map_err(|e| sdk_error("BatchGetItem", &self.table, e))?;
                for item in out
                    .responses
                    .unwrap_or_default()
                    .remove(&self.table)
                    .unwrap_or_default()
                {
                    let target = get_s(&item, "target")?.to_owned();
                    let address = get_s(&item, "address")?.to_owned();
                    found.insert((target, address), item);
                }
                // DynamoDB may hand back part of a batch under load: ask again for the rest.
                if let Some(rest) = out
                    .unprocessed_keys
                    .and_then(|mut m| m.remove(&self.table))
                    .filter(|k| !k.keys().is_empty())
                {
                    if attempts >= 8 {
                        return Err(StoreError::Unavailable(format!(
                            "dynamodb {}: BatchGetItem kept returning unprocessed keys",
                            self.table
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(50 << attempts.min(5))).await;
                    pending = Some(rest);
                }
            }
        }
        Ok(found)
    }

    async fn transact(&self, actions: Vec<TransactWriteItem>) -> Result<(), TransactFailure> {
        self.client
            .transact_write_items()
            .set_transact_items(Some(actions))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| match cancellation_reasons(&e) {
                Some(reasons) => TransactFailure::Cancelled(reasons),
                None => TransactFailure::Other(sdk_error("TransactWriteItems", &self.table, e)),
            })
    }
}

enum TransactFailure {
    Cancelled(Vec<String>),
    Other(StoreError),
}

/// The writes for one (target, address) in a batch.
struct KeyWrites {
    target: String,
    address: String,
    history: Vec<Observation>,
    /// The item to put as the new latest, with the condition's reference time.
    latest: Option<(Item, Option<i64>)>,
    /// A last-seen refresh: (new last_seen, previous last_seen).
    refresh: Option<(i64, i64)>,
}

fn latest_state(item: &Item) -> Result<(Observation, LatestMeta), StoreError> {
    let obs: Observation =
        serde_json::from_str(get_s(item, "record")?).map_err(|e| corrupt("observation", e))?;
    let meta = LatestMeta {
        last_cert: item.get("last_cert").and_then(|v| v.as_s().ok()).cloned(),
        cert_first_seen: get_n(item, "cert_first_seen")?,
        last_changed: get_n(item, "last_changed")?.unwrap_or(0),
        last_seen: get_n(item, "last_seen")?.unwrap_or(0),
        failures: get_n(item, "failures")?
            .and_then(|f| u32::try_from(f).ok())
            .unwrap_or(0),
    };
    Ok((obs, meta))
}

/// The failure streak of each (target, address) a batch planned for.
type Streaks = HashMap<(String, String), u32>;

/// While planning a batch: what is stored (as updated by earlier observations of the batch),
/// the `last_seen` read from the table (the write condition), and the writes so far.
type KeyState = (Option<(Observation, LatestMeta)>, Option<i64>, KeyWrites);

#[derive(Clone)]
struct LatestMeta {
    last_cert: Option<String>,
    cert_first_seen: Option<i64>,
    last_changed: i64,
    last_seen: i64,
    /// Failed scans in a row ([`policy::failure_streak`]).
    failures: u32,
}

fn latest_item(obs: &Observation, meta: &LatestMeta) -> Result<Item, StoreError> {
    let record = serde_json::to_string(obs).map_err(|e| StoreError::Backend(e.to_string()))?;
    let mut item = Item::new();
    item.insert("pk".into(), s(endpoint_pk(&obs.target)));
    item.insert("sk".into(), s(latest_sk(obs.address_key())));
    item.insert("target".into(), s(&obs.target));
    item.insert("address".into(), s(obs.address_key()));
    item.insert("record".into(), s(record));
    item.insert("scanned_at".into(), n(nanos(obs.scanned_at)));
    item.insert("last_changed".into(), n(meta.last_changed));
    item.insert("last_seen".into(), n(meta.last_seen));
    if meta.failures > 0 {
        item.insert("failures".into(), n(meta.failures));
    }
    if let Some(c) = &meta.last_cert {
        item.insert("last_cert".into(), s(c));
    }
    if let Some(t) = meta.cert_first_seen {
        item.insert("cert_first_seen".into(), n(t));
    }
    if let Some(c) = &obs.certificate {
        item.insert("not_after".into(), n(c.not_after.unix_timestamp()));
    }
    item.insert("gsi2pk".into(), s(format!("INV#{}", shard(&obs.target))));
    item.insert("gsi2sk".into(), s(inventory_sk(obs)));
    Ok(item)
}

fn history_item(obs: &Observation) -> Result<Item, StoreError> {
    let record = serde_json::to_string(obs).map_err(|e| StoreError::Backend(e.to_string()))?;
    let mut item = Item::new();
    item.insert("pk".into(), s(endpoint_pk(&obs.target)));
    item.insert(
        "sk".into(),
        s(format!(
            "OBS#{}#{}",
            padded_nanos(Some(obs.scanned_at)),
            obs.address_key()
        )),
    );
    item.insert("target".into(), s(&obs.target));
    item.insert("address".into(), s(obs.address_key()));
    item.insert("record".into(), s(record));
    item.insert(
        "expires_at".into(),
        n((obs.scanned_at + HISTORY_RETENTION).unix_timestamp()),
    );
    Ok(item)
}

impl DynamoStore {
    /// Decides, per (target, address), what the batch writes, given the stored latest items.
    fn plan_writes(
        observations: &[Observation],
        stored: &HashMap<(String, String), Item>,
    ) -> Result<(Vec<KeyWrites>, Streaks), StoreError> {
        let mut order: Vec<(String, String)> = Vec::new();
        let mut state: HashMap<(String, String), KeyState> = HashMap::new();
        let mut sorted: Vec<&Observation> = observations.iter().collect();
        sorted.sort_by_key(|o| o.scanned_at);
        for obs in sorted {
            let key = (obs.target.clone(), obs.address_key().to_owned());
            if !state.contains_key(&key) {
                let current = stored.get(&key).map(latest_state).transpose()?;
                let reference = current.as_ref().map(|(_, m)| m.last_seen);
                order.push(key.clone());
                state.insert(
                    key.clone(),
                    (
                        current,
                        reference,
                        KeyWrites {
                            target: key.0.clone(),
                            address: key.1.clone(),
                            history: Vec::new(),
                            latest: None,
                            refresh: None,
                        },
                    ),
                );
            }
            let Some((current, reference, writes)) = state.get_mut(&key) else {
                continue;
            };
            let at = nanos(obs.scanned_at);
            let latest = current
                .as_ref()
                .map(|(o, m)| (o, from_nanos(m.last_seen), m.failures));
            let streak =
                policy::failure_streak(current.as_ref().map(|(o, m)| (o, m.failures)), obs);
            match policy::record_decision(latest, obs) {
                RecordDecision::Skip => {}
                RecordDecision::RefreshLastSeen => {
                    if let Some((_, meta)) = current.as_mut() {
                        meta.last_seen = at;
                        if let Some((item, _)) = writes.latest.as_mut() {
                            item.insert("last_seen".into(), n(at));
                        } else {
                            writes.refresh = Some((at, reference.unwrap_or(0)));
                        }
                    }
                }
                RecordDecision::CountFailure => {
                    if let Some((_, meta)) = current.as_ref() {
                        let meta = LatestMeta {
                            failures: streak,
                            last_seen: at,
                            ..meta.clone()
                        };
                        writes.latest = Some((latest_item(obs, &meta)?, *reference));
                        writes.refresh = None;
                        *current = Some((obs.clone(), meta));
                    }
                }
                RecordDecision::Change => {
                    let previous = current.as_ref().map(|(_, m)| policy::CertLineage {
                        last_cert: m.last_cert.clone(),
                        first_seen: m.cert_first_seen,
                    });
                    let lineage = policy::cert_lineage(previous.as_ref(), obs.fingerprint(), at);
                    let meta = LatestMeta {
                        last_cert: lineage.last_cert,
                        cert_first_seen: lineage.first_seen,
                        last_changed: at,
                        last_seen: at,
                        failures: streak,
                    };
                    writes.history.push(obs.clone());
                    writes.latest = Some((latest_item(obs, &meta)?, *reference));
                    writes.refresh = None;
                    *current = Some((obs.clone(), meta));
                }
            }
        }
        let streaks = state
            .iter()
            .map(|(k, (current, _, _))| {
                (k.clone(), current.as_ref().map_or(0, |(_, m)| m.failures))
            })
            .collect();
        let writes = order
            .into_iter()
            .filter_map(|k| state.remove(&k).map(|(_, _, w)| w))
            .collect();
        Ok((writes, streaks))
    }

    fn actions_for(&self, w: KeyWrites) -> Result<Vec<TransactWriteItem>, StoreError> {
        let build = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Backend(e.to_string());
        let mut actions = Vec::new();
        for obs in &w.history {
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(history_item(obs)?))
                .build()
                .map_err(build)?;
            actions.push(TransactWriteItem::builder().put(put).build());
        }
        if let Some((item, reference)) = w.latest {
            // Written only over what this batch read: a concurrent newer write cancels it.
            let mut put = Put::builder().table_name(&self.table).set_item(Some(item));
            put = match reference {
                None => put.condition_expression("attribute_not_exists(sk)"),
                Some(seen) => put
                    .condition_expression("last_seen = :seen")
                    .expression_attribute_values(":seen", n(seen)),
            };
            actions.push(
                TransactWriteItem::builder()
                    .put(put.build().map_err(build)?)
                    .build(),
            );
        } else if let Some((at, seen)) = w.refresh {
            let update = Update::builder()
                .table_name(&self.table)
                .key("pk", s(endpoint_pk(&w.target)))
                .key("sk", s(latest_sk(&w.address)))
                .update_expression("SET last_seen = :at")
                .condition_expression("last_seen = :seen")
                .expression_attribute_values(":at", n(at))
                .expression_attribute_values(":seen", n(seen))
                .build()
                .map_err(build)?;
            actions.push(TransactWriteItem::builder().update(update).build());
        }
        Ok(actions)
    }
}

#[async_trait]
impl EndpointStore for DynamoStore {
    async fn add_endpoint(&self, endpoint: &Endpoint) -> Result<Endpoint, StoreError> {
        let mut stored = endpoint.clone();
        stored.version = 1;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(endpoint_item(&stored)))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(stored),
            Err(e) if is_conditional_failure(&e) => Err(StoreError::AlreadyExists {
                what: format!("endpoint {:?}", stored.key()),
            }),
            Err(e) => Err(sdk_error("PutItem", &self.table, e)),
        }
    }

    async fn update_endpoint(&self, endpoint: &Endpoint) -> Result<Endpoint, StoreError> {
        let key = endpoint.key();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(endpoint_pk(&key)))
            .key("sk", s(ENDPOINT_SK))
            .update_expression("SET tags = :tags, version = version + :one")
            .condition_expression("version = :expected")
            .expression_attribute_values(":tags", s(tags_json(&endpoint.tags)))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":expected", n(endpoint.version))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => endpoint_from(&out.attributes.unwrap_or_default()),
            Err(e) if is_conditional_failure(&e) => match self.endpoint(&key).await? {
                None => Err(StoreError::NotFound {
                    what: format!("endpoint {key:?}"),
                }),
                Some(_) => Err(StoreError::Conflict {
                    what: format!("endpoint {key:?}"),
                    expected: endpoint.version,
                }),
            },
            Err(e) => Err(sdk_error("UpdateItem", &self.table, e)),
        }
    }

    async fn endpoint(&self, target: &str) -> Result<Option<Endpoint>, StoreError> {
        self.get(endpoint_pk(target), ENDPOINT_SK)
            .await?
            .map(|item| endpoint_from(&item))
            .transpose()
    }

    async fn endpoints(&self) -> Result<Vec<Endpoint>, StoreError> {
        let parts = std::iter::once("DUE#A".to_owned())
            .chain((0..1u32 << DUE_SHARD_BITS).map(|shard| format!("DUE#S{shard}")))
            .map(|p| (p, SortKey::Any))
            .collect();
        self.due_items(parts).await
    }

    async fn remove_endpoint(&self, target: &str) -> Result<(), StoreError> {
        let pk = endpoint_pk(target);
        let latest = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :latest)")
            .expression_attribute_values(":pk", s(&pk))
            .expression_attribute_values(":latest", s("LATEST#"))
            .projection_expression("pk, sk")
            .send()
            .await
            .map_err(|e| sdk_error("Query", &self.table, e))?
            .items
            .unwrap_or_default();
        let build = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Backend(e.to_string());
        let mut actions = vec![
            TransactWriteItem::builder()
                .delete(
                    Delete::builder()
                        .table_name(&self.table)
                        .key("pk", s(&pk))
                        .key("sk", s(ENDPOINT_SK))
                        .condition_expression("attribute_exists(pk)")
                        .build()
                        .map_err(build)?,
                )
                .build(),
        ];
        for key in latest.into_iter().take(MAX_TRANSACTION - 1) {
            actions.push(
                TransactWriteItem::builder()
                    .delete(
                        Delete::builder()
                            .table_name(&self.table)
                            .set_key(Some(key))
                            .build()
                            .map_err(build)?,
                    )
                    .build(),
            );
        }
        match self.transact(actions).await {
            Ok(()) => Ok(()),
            Err(TransactFailure::Cancelled(reasons))
                if reasons.first().map(String::as_str) == Some("ConditionalCheckFailed") =>
            {
                Err(StoreError::NotFound {
                    what: format!("endpoint {target:?}"),
                })
            }
            Err(TransactFailure::Cancelled(reasons)) => Err(StoreError::Unavailable(format!(
                "dynamodb {}: removing {target:?} was cancelled: {reasons:?}",
                self.table
            ))),
            Err(TransactFailure::Other(e)) => Err(e),
        }
    }
}

#[async_trait]
impl ScheduleStore for DynamoStore {
    async fn endpoints_due(&self, query: &DueQuery) -> Result<Vec<Endpoint>, StoreError> {
        // '#' sorts before '$': keys "<now>#<target>" are below "<now>$".
        let mut parts = vec![(
            "DUE#A".to_owned(),
            SortKey::Below(format!("{}$", padded_nanos(Some(query.now)))),
        )];
        let width = 32 - DUE_SHARD_BITS;
        for range in &query.slots {
            if range.first > range.last {
                continue;
            }
            for shard in slot_shard(range.first)..=slot_shard(range.last) {
                let (lo, hi) = (shard << width, (shard << width) | ((1 << width) - 1));
                parts.push((
                    format!("DUE#S{shard}"),
                    SortKey::Between(
                        format!("{:010}", range.first.max(lo)),
                        format!("{:010}$", range.last.min(hi)),
                    ),
                ));
            }
        }
        self.due_items(parts).await
    }

    async fn set_due(&self, updates: &[DueUpdate]) -> Result<usize, StoreError> {
        let build = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Backend(e.to_string());
        let mut updated = 0;
        for chunk in updates.chunks(MAX_TRANSACTION) {
            let mut pending: Vec<&DueUpdate> = chunk.iter().collect();
            for _attempt in 0..4 {
                if pending.is_empty() {
                    break;
                }
                let mut actions = Vec::with_capacity(pending.len());
                for u in &pending {
                    let (gsi1pk, gsi1sk) = due_keys(&u.target, u.due_at);
                    let mut update = Update::builder()
                        .table_name(&self.table)
                        .key("pk", s(endpoint_pk(&u.target)))
                        .key("sk", s(ENDPOINT_SK))
                        .condition_expression("attribute_exists(pk)")
                        .expression_attribute_values(":gpk", s(gsi1pk))
                        .expression_attribute_values(":gsk", s(gsi1sk));
                    update = match u.due_at {
                        Some(at) => update
                            .update_expression("SET due_at = :due, gsi1pk = :gpk, gsi1sk = :gsk")
                            .expression_attribute_values(":due", n(nanos(at))),
                        None => update
                            .update_expression("REMOVE due_at SET gsi1pk = :gpk, gsi1sk = :gsk"),
                    };
                    actions.push(
                        TransactWriteItem::builder()
                            .update(update.build().map_err(build)?)
                            .build(),
                    );
                }
                match self.transact(actions).await {
                    Ok(()) => {
                        updated += pending.len();
                        pending.clear();
                    }
                    Err(TransactFailure::Cancelled(reasons)) => {
                        // Drop the endpoints removed meanwhile; retry the rest.
                        pending = pending
                            .into_iter()
                            .zip(reasons.iter())
                            .filter(|(_, r)| r.as_str() != "ConditionalCheckFailed")
                            .map(|(u, _)| u)
                            .collect();
                    }
                    Err(TransactFailure::Other(e)) => return Err(e),
                }
            }
            if !pending.is_empty() {
                return Err(StoreError::Unavailable(format!(
                    "dynamodb {}: setting due times kept conflicting",
                    self.table
                )));
            }
        }
        Ok(updated)
    }

    async fn last_tick(&self) -> Result<Option<OffsetDateTime>, StoreError> {
        let item = self.get(TICK_KEY.0.to_owned(), TICK_KEY.1).await?;
        Ok(item
            .map(|item| get_n(&item, "last_tick"))
            .transpose()?
            .flatten()
            .map(from_nanos))
    }

    async fn advance_tick(
        &self,
        from: Option<OffsetDateTime>,
        to: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(TICK_KEY.0))
            .key("sk", s(TICK_KEY.1))
            .update_expression("SET last_tick = :to")
            .expression_attribute_values(":to", n(nanos(to)));
        let update = match from {
            None => update.condition_expression("attribute_not_exists(last_tick)"),
            Some(from) => update
                .condition_expression("last_tick = :from")
                .expression_attribute_values(":from", n(nanos(from))),
        };
        match update.send().await {
            Ok(_) => Ok(()),
            Err(e) if is_conditional_failure(&e) => Err(StoreError::Conflict {
                what: "the scan schedule (another run advanced it)".into(),
                expected: 0,
            }),
            Err(e) => Err(sdk_error("UpdateItem", &self.table, e)),
        }
    }
}

#[async_trait]
impl ObservationStore for DynamoStore {
    async fn record_observations(
        &self,
        observations: &[Observation],
    ) -> Result<Vec<u32>, StoreError> {
        for _attempt in 0..4 {
            let mut keys: Vec<(String, String)> = observations
                .iter()
                .map(|o| (o.target.clone(), o.address_key().to_owned()))
                .collect();
            keys.sort();
            keys.dedup();
            let stored = self.latest_items(&keys).await?;
            let (plan, streaks) = Self::plan_writes(observations, &stored)?;
            let mut conflicted = false;
            let mut batch: Vec<TransactWriteItem> = Vec::new();
            let mut flushes: Vec<Vec<TransactWriteItem>> = Vec::new();
            for writes in plan {
                let actions = self.actions_for(writes)?;
                if actions.is_empty() {
                    continue;
                }
                if batch.len() + actions.len() > MAX_TRANSACTION {
                    flushes.push(std::mem::take(&mut batch));
                }
                batch.extend(actions);
            }
            if !batch.is_empty() {
                flushes.push(batch);
            }
            for actions in flushes {
                match self.transact(actions).await {
                    Ok(()) => {}
                    Err(TransactFailure::Cancelled(_)) => conflicted = true,
                    Err(TransactFailure::Other(e)) => return Err(e),
                }
            }
            if !conflicted {
                return Ok(observations
                    .iter()
                    .map(|o| {
                        streaks
                            .get(&(o.target.clone(), o.address_key().to_owned()))
                            .copied()
                            .unwrap_or(0)
                    })
                    .collect());
            }
        }
        Err(StoreError::Unavailable(format!(
            "dynamodb {}: observations kept conflicting with concurrent writers",
            self.table
        )))
    }

    async fn inventory(&self, query: &InventoryQuery) -> Result<Vec<InventoryEntry>, StoreError> {
        let below = query
            .expiring_before
            .map(|t| format!("{:012}#", t.unix_timestamp().max(0)));
        let sort = below.map_or(SortKey::Any, SortKey::Below);
        let mut items = Vec::new();
        for shard in 0..SHARDS {
            items.extend(
                self.query_partition(INVENTORY_INDEX, format!("INV#{shard}"), &sort)
                    .await?,
            );
        }
        let mut entries = Vec::with_capacity(items.len());
        let mut tags_cache: HashMap<String, Option<Tags>> = HashMap::new();
        for item in &items {
            let (observation, meta) = latest_state(item)?;
            if !tags_cache.contains_key(&observation.target) {
                let tags = self.endpoint(&observation.target).await?.map(|e| e.tags);
                tags_cache.insert(observation.target.clone(), tags);
            }
            let registered_tags = tags_cache.get(&observation.target).cloned().flatten();
            entries.push(InventoryEntry {
                registered: registered_tags.is_some(),
                tags: registered_tags.unwrap_or_else(|| observation.tags.clone()),
                cert_first_seen: observation
                    .certificate
                    .as_ref()
                    .and(meta.cert_first_seen.map(from_nanos)),
                last_changed: from_nanos(meta.last_changed),
                last_seen: from_nanos(meta.last_seen),
                failures: meta.failures,
                observation,
            });
        }
        entries.sort_by(|a, b| {
            (&a.observation.target, a.observation.address_key())
                .cmp(&(&b.observation.target, b.observation.address_key()))
        });
        // The index is sharded and sorted by expiry: pages in target order are cut here.
        if let Some((target, address)) = &query.after {
            entries.retain(|e| {
                (e.observation.target.as_str(), e.observation.address_key())
                    > (target.as_str(), address.as_str())
            });
        }
        if let Some(limit) = query.limit {
            entries.truncate(limit);
        }
        Ok(entries)
    }

    async fn history(&self, target: &str, limit: usize) -> Result<Vec<Observation>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :obs)")
            .expression_attribute_values(":pk", s(endpoint_pk(target)))
            .expression_attribute_values(":obs", s("OBS#"))
            .scan_index_forward(false)
            .limit(i32::try_from(limit.clamp(1, 1000)).unwrap_or(1000))
            .send()
            .await
            .map_err(|e| sdk_error("Query", &self.table, e))?;
        out.items
            .unwrap_or_default()
            .iter()
            .take(limit)
            .map(|item| {
                serde_json::from_str(get_s(item, "record")?).map_err(|e| corrupt("observation", e))
            })
            .collect()
    }
}
