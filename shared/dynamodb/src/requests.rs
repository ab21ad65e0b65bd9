//! [`RequestStore`], [`AuditLog`] and [`IdempotencyStore`] on the table.
//!
//! | item | `pk` | `sk` | index keys |
//! |---|---|---|---|
//! | request | `REQUEST#<id>` | `#REQUEST` | `due` while pending: `gsi1pk` = `REQUESTS#PENDING`, `gsi1sk` = `<id>` |
//! | audit record | `AUDIT` | `<time, ns, 20 digits>#<request id>` | — |
//! | idempotency key | `IDEMPOTENCY#<principal>\n<key>` | `#KEY` | — (`expires_at` TTL a day after) |
//!
//! The audit trail is one partition read newest first by a `Query` on the table itself: its
//! writes come at the pace of people, far below a partition's limits. It is written with
//! `PutItem` conditional on the key being new, and the API function's role is denied
//! `UpdateItem`, `DeleteItem` and `BatchWriteItem` on items whose partition key is `AUDIT`
//! (the `dynamodb:LeadingKeys` condition, in the template).

use async_trait::async_trait;
use certpilot_core::model::request::{
    AuditRecord, CertificateRequest, IDEMPOTENCY_TTL, IdempotencyEntry, RequestState, SavedResponse,
};
use certpilot_core::ports::{AuditLog, Claim, IdempotencyStore, RequestStore, StoreError};
use time::OffsetDateTime;

use crate::{
    DUE_INDEX, DynamoStore, Item, SortKey, corrupt, get_s, is_conditional_failure, n, nanos, s,
    sdk_error,
};

const REQUEST_SK: &str = "#REQUEST";
const PENDING: &str = "REQUESTS#PENDING";
/// The audit trail's partition.
pub const AUDIT_PK: &str = "AUDIT";
const KEY_SK: &str = "#KEY";

fn request_pk(id: &str) -> String {
    format!("REQUEST#{id}")
}

fn key_pk(key: &str) -> String {
    format!("IDEMPOTENCY#{key}")
}

fn record<T: serde::Serialize>(what: &str, v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Backend(format!("{what}: {e}")))
}

fn parse<T: serde::de::DeserializeOwned>(what: &str, item: &Item) -> Result<T, StoreError> {
    serde_json::from_str(get_s(item, "record")?).map_err(|e| corrupt(what, e))
}

#[async_trait]
impl RequestStore for DynamoStore {
    async fn request(&self, id: &str) -> Result<Option<CertificateRequest>, StoreError> {
        self.get(request_pk(id), REQUEST_SK)
            .await?
            .map(|i| parse("request", &i))
            .transpose()
    }

    async fn put_request(&self, r: &CertificateRequest) -> Result<CertificateRequest, StoreError> {
        let mut stored = r.clone();
        stored.version = r.version + 1;
        let what = format!("request {:?}", r.id);
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(request_pk(&r.id)))
            .item("sk", s(REQUEST_SK))
            .item("record", s(record(&what, &stored)?))
            .item("version", n(stored.version));
        if stored.state == RequestState::PendingApproval {
            put = put
                .item("gsi1pk", s(PENDING))
                .item("gsi1sk", s(r.id.clone()));
        }
        put = if r.version == 0 {
            put.condition_expression("attribute_not_exists(pk)")
        } else {
            put.condition_expression("version = :expected")
                .expression_attribute_values(":expected", n(r.version))
        };
        match put.send().await {
            Ok(_) => Ok(stored),
            Err(e) if is_conditional_failure(&e) => Err(if r.version == 0 {
                StoreError::AlreadyExists { what }
            } else if self.request(&r.id).await?.is_none() {
                StoreError::NotFound { what }
            } else {
                StoreError::Conflict {
                    what,
                    expected: r.version,
                }
            }),
            Err(e) => Err(sdk_error("PutItem", &self.table, e)),
        }
    }

    async fn pending_requests(&self) -> Result<Vec<CertificateRequest>, StoreError> {
        self.query_partition(DUE_INDEX, PENDING.to_owned(), &SortKey::Any)
            .await?
            .iter()
            .map(|i| parse("request", i))
            .collect()
    }

    async fn remove_request(&self, id: &str) -> Result<bool, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(request_pk(id)))
            .key("sk", s(REQUEST_SK))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| sdk_error("DeleteItem", &self.table, e))?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }
}

#[async_trait]
impl AuditLog for DynamoStore {
    async fn append(&self, r: &AuditRecord) -> Result<(), StoreError> {
        let key = r.key();
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(AUDIT_PK))
            .item("sk", s(key.clone()))
            .item("record", s(record("audit record", r)?))
            .condition_expression("attribute_not_exists(pk)");
        match put.send().await {
            Ok(_) => Ok(()),
            Err(e) if is_conditional_failure(&e) => Err(StoreError::AlreadyExists {
                what: format!("audit record {key:?}"),
            }),
            Err(e) => Err(sdk_error("PutItem", &self.table, e)),
        }
    }

    async fn audit(
        &self,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let mut records = Vec::new();
        let mut start: Option<Item> = None;
        // Past every key: keys start with digits.
        let below = before.unwrap_or("~").to_owned();
        while records.len() < limit {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk < :below")
                .expression_attribute_values(":pk", s(AUDIT_PK))
                .expression_attribute_values(":below", s(below.clone()))
                .scan_index_forward(false)
                .limit(i32::try_from(limit - records.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("Query", &self.table, e))?;
            for item in out.items.unwrap_or_default() {
                records.push(parse("audit record", &item)?);
            }
            match out.last_evaluated_key {
                Some(key) => start = Some(key),
                None => break,
            }
        }
        records.truncate(limit);
        Ok(records)
    }
}

#[async_trait]
impl IdempotencyStore for DynamoStore {
    async fn claim(&self, e: &IdempotencyEntry, now: OffsetDateTime) -> Result<Claim, StoreError> {
        let cutoff = now - IDEMPOTENCY_TTL;
        // A key released between a refused claim and the read is claimed on the next turn.
        for _ in 0..3 {
            let put = self
                .client
                .put_item()
                .table_name(&self.table)
                .item("pk", s(key_pk(&e.key)))
                .item("sk", s(KEY_SK))
                .item("record", s(record("idempotency key", e)?))
                .item("created_at", n(nanos(e.created_at)))
                // The table's TTL: DynamoDB deletes it, free of charge, within days.
                .item(
                    "expires_at",
                    n((e.created_at + IDEMPOTENCY_TTL).unix_timestamp()),
                )
                .condition_expression("attribute_not_exists(pk) OR created_at <= :cutoff")
                .expression_attribute_values(":cutoff", n(nanos(cutoff)));
            match put.send().await {
                Ok(_) => return Ok(Claim::Claimed),
                Err(err) if is_conditional_failure(&err) => {
                    if let Some(item) = self.get(key_pk(&e.key), KEY_SK).await? {
                        return Ok(Claim::Existing(parse("idempotency key", &item)?));
                    }
                }
                Err(err) => return Err(sdk_error("PutItem", &self.table, err)),
            }
        }
        Err(StoreError::Unavailable(format!(
            "idempotency key {:?} is being claimed and released by others; retry",
            e.key
        )))
    }

    async fn complete(&self, key: &str, response: &SavedResponse) -> Result<(), StoreError> {
        let Some(item) = self.get(key_pk(key), KEY_SK).await? else {
            return Ok(());
        };
        let mut entry: IdempotencyEntry = parse("idempotency key", &item)?;
        entry.response = Some(response.clone());
        let put = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(key_pk(key)))
            .key("sk", s(KEY_SK))
            .update_expression("SET #r = :r")
            .condition_expression("created_at = :created")
            .expression_attribute_names("#r", "record")
            .expression_attribute_values(":r", s(record("idempotency key", &entry)?))
            .expression_attribute_values(":created", n(nanos(entry.created_at)));
        match put.send().await {
            // Replaced meanwhile (expired and claimed again): that claim's response is not ours.
            Ok(_) => Ok(()),
            Err(e) if is_conditional_failure(&e) => Ok(()),
            Err(e) => Err(sdk_error("UpdateItem", &self.table, e)),
        }
    }

    async fn release(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(key_pk(key)))
            .key("sk", s(KEY_SK))
            .send()
            .await
            .map_err(|e| sdk_error("DeleteItem", &self.table, e))?;
        Ok(())
    }
}
