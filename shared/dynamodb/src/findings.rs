//! [`FindingStore`] on the table.
//!
//! | item | `pk` | `sk` | index keys |
//! |---|---|---|---|
//! | finding | `FINDING#<key>` | `#FINDING` | `due`: `gsi1pk` = `FINDING#ACTIVE` or `FINDING#RESOLVED`; `inventory` (only while a transition is not yet notified): `gsi2pk` = `FINDING#PENDING`; both sort keys `<0 critical, 1 warning, 2 info>#<key>` |
//! | channel | `CHANNEL#<name>` | `#CHANNEL` | `due`: `gsi1pk` = `CHANNELS`, `gsi1sk` = `<name>` |
//!
//! A resolved finding that every channel has heard of carries `expires_at` (the table's TTL)
//! [`RESOLVED_RETENTION`](certpilot_core::model::finding::RESOLVED_RETENTION) after it was
//! resolved.
//!
//! So "active findings", "pending notifications" and "everything" are each a `Query` that
//! returns them already sorted most severe first; a run that changes nothing reads one
//! partition and writes nothing. Writes are `PutItem`s conditional on the version.

use async_trait::async_trait;
use certpilot_core::model::channel::Channel;
use certpilot_core::model::finding::{Finding, Severity};
use certpilot_core::ports::{ChannelStore, FindingStore, StoreError};

use crate::{
    DUE_INDEX, DynamoStore, INVENTORY_INDEX, Item, SortKey, corrupt, get_s, is_conditional_failure,
    n, s, sdk_error,
};

const FINDING_SK: &str = "#FINDING";
const ACTIVE: &str = "FINDING#ACTIVE";
const RESOLVED: &str = "FINDING#RESOLVED";
const PENDING: &str = "FINDING#PENDING";

fn pk(key: &str) -> String {
    format!("FINDING#{key}")
}

fn sort_key(f: &Finding) -> String {
    let rank = match f.severity {
        Severity::Critical => 0,
        Severity::Warning => 1,
        Severity::Info => 2,
    };
    format!("{rank}#{}", f.key)
}

fn item(f: &Finding) -> Result<Item, StoreError> {
    let record = serde_json::to_string(f)
        .map_err(|e| StoreError::Backend(format!("finding {:?}: {e}", f.key)))?;
    let mut item = Item::new();
    item.insert("pk".into(), s(pk(&f.key)));
    item.insert("sk".into(), s(FINDING_SK));
    item.insert("record".into(), s(record));
    item.insert("version".into(), n(f.version));
    item.insert(
        "gsi1pk".into(),
        s(if f.is_active() { ACTIVE } else { RESOLVED }),
    );
    item.insert("gsi1sk".into(), s(sort_key(f)));
    if let Some(forget) = f.forget_after() {
        // The table's TTL attribute: DynamoDB deletes it, free of charge, within days.
        item.insert("expires_at".into(), n(forget.unix_timestamp()));
    }
    if f.pending.is_some() {
        item.insert("gsi2pk".into(), s(PENDING));
        item.insert("gsi2sk".into(), s(sort_key(f)));
    }
    Ok(item)
}

fn from_item(item: &Item) -> Result<Finding, StoreError> {
    serde_json::from_str(get_s(item, "record")?).map_err(|e| corrupt("finding", e))
}

impl DynamoStore {
    async fn findings_in(&self, index: &str, partition: &str) -> Result<Vec<Finding>, StoreError> {
        self.query_partition(index, partition.to_owned(), &SortKey::Any)
            .await?
            .iter()
            .map(from_item)
            .collect()
    }
}

#[async_trait]
impl FindingStore for DynamoStore {
    async fn finding(&self, key: &str) -> Result<Option<Finding>, StoreError> {
        self.get(pk(key), FINDING_SK)
            .await?
            .map(|i| from_item(&i))
            .transpose()
    }

    async fn put_finding(&self, finding: &Finding) -> Result<Finding, StoreError> {
        let mut stored = finding.clone();
        stored.version = finding.version + 1;
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item(&stored)?));
        put = if finding.version == 0 {
            put.condition_expression("attribute_not_exists(pk)")
        } else {
            put.condition_expression("version = :expected")
                .expression_attribute_values(":expected", n(finding.version))
        };
        let what = format!("finding {:?}", finding.key);
        match put.send().await {
            Ok(_) => Ok(stored),
            Err(e) if is_conditional_failure(&e) => Err(if finding.version == 0 {
                StoreError::AlreadyExists { what }
            } else if self.finding(&finding.key).await?.is_none() {
                StoreError::NotFound { what }
            } else {
                StoreError::Conflict {
                    what,
                    expected: finding.version,
                }
            }),
            Err(e) => Err(sdk_error("PutItem", &self.table, e)),
        }
    }

    async fn active_findings(&self) -> Result<Vec<Finding>, StoreError> {
        self.findings_in(DUE_INDEX, ACTIVE).await
    }

    async fn pending_findings(&self) -> Result<Vec<Finding>, StoreError> {
        self.findings_in(INVENTORY_INDEX, PENDING).await
    }

    async fn all_findings(&self) -> Result<Vec<Finding>, StoreError> {
        let mut all = self.findings_in(DUE_INDEX, ACTIVE).await?;
        // TTL deletes late (within days): what it has not deleted yet is not listed either.
        let now = time::OffsetDateTime::now_utc();
        all.extend(
            self.findings_in(DUE_INDEX, RESOLVED)
                .await?
                .into_iter()
                .filter(|f| f.is_retained(now)),
        );
        certpilot_core::ports::sort_findings(&mut all);
        Ok(all)
    }
}

const CHANNEL_SK: &str = "#CHANNEL";
const CHANNELS: &str = "CHANNELS";

#[async_trait]
impl ChannelStore for DynamoStore {
    async fn channels(&self) -> Result<Vec<Channel>, StoreError> {
        self.query_partition(DUE_INDEX, CHANNELS.to_owned(), &SortKey::Any)
            .await?
            .iter()
            .map(|i| serde_json::from_str(get_s(i, "record")?).map_err(|e| corrupt("channel", e)))
            .collect()
    }

    async fn add_channel(&self, channel: &Channel) -> Result<(), StoreError> {
        let record = serde_json::to_string(channel)
            .map_err(|e| StoreError::Backend(format!("channel {:?}: {e}", channel.name)))?;
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("CHANNEL#{}", channel.name)))
            .item("sk", s(CHANNEL_SK))
            .item("record", s(record))
            .item("gsi1pk", s(CHANNELS))
            .item("gsi1sk", s(channel.name.clone()))
            .condition_expression("attribute_not_exists(pk)");
        match put.send().await {
            Ok(_) => Ok(()),
            Err(e) if is_conditional_failure(&e) => Err(StoreError::AlreadyExists {
                what: format!("channel {:?}", channel.name),
            }),
            Err(e) => Err(sdk_error("PutItem", &self.table, e)),
        }
    }

    async fn remove_channel(&self, name: &str) -> Result<bool, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(format!("CHANNEL#{name}")))
            .key("sk", s(CHANNEL_SK))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| sdk_error("DeleteItem", &self.table, e))?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }
}
