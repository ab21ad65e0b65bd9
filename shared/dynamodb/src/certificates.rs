//! The [`CertificateStore`] on the same table.
//!
//! | item | `pk` | `sk` | index keys |
//! |---|---|---|---|
//! | managed certificate | `CERT#<id>` | `#CERT` | `due`: `gsi1pk` = `RENEW`, `gsi1sk` = `<next_check_at, ns, 20 digits>#<id>` |
//! | issuance (duplicate limit) | `ISSUED#<name set>` | `<issued_at, ns, 20 digits>#<id>` | none |
//!
//! The record is JSON in `record` (public facts and SecretStore versions only, never a key),
//! with `version` beside it for conditional writes. Certificates are few (thousands at most)
//! and change a handful of times per renewal, so one index partition holds them all: the
//! renew function's "what is due" is one `Query`.

use async_trait::async_trait;
use certpilot_core::model::certificate::{ManagedCertificate, name_set_key};
use certpilot_core::ports::{CertificateStore, StoreError};
use time::OffsetDateTime;

use crate::{
    DUE_INDEX, DynamoStore, Item, SortKey, corrupt, get_n, get_s, is_conditional_failure, n,
    padded_nanos, s, sdk_error,
};

const CERT_SK: &str = "#CERT";
const RENEW_PARTITION: &str = "RENEW";

fn cert_pk(id: &str) -> String {
    format!("CERT#{id}")
}

fn issued_pk(names: &[String]) -> String {
    format!("ISSUED#{}", name_set_key(names))
}

fn cert_item(c: &ManagedCertificate) -> Result<Item, StoreError> {
    let record = serde_json::to_string(c)
        .map_err(|e| StoreError::Backend(format!("certificate {:?}: {e}", c.id)))?;
    let mut item = Item::new();
    item.insert("pk".into(), s(cert_pk(&c.id)));
    item.insert("sk".into(), s(CERT_SK));
    item.insert("record".into(), s(record));
    item.insert("version".into(), n(c.version));
    item.insert("gsi1pk".into(), s(RENEW_PARTITION));
    item.insert(
        "gsi1sk".into(),
        s(format!(
            "{}#{}",
            padded_nanos(Some(c.renewal.next_check_at)),
            c.id
        )),
    );
    Ok(item)
}

fn cert_from(item: &Item) -> Result<ManagedCertificate, StoreError> {
    let mut cert: ManagedCertificate =
        serde_json::from_str(get_s(item, "record")?).map_err(|e| corrupt("certificate", e))?;
    // The attribute is what conditions test; the record's copy follows it.
    cert.version = u64::try_from(get_n(item, "version")?.unwrap_or(0)).unwrap_or(0);
    Ok(cert)
}

#[async_trait]
impl CertificateStore for DynamoStore {
    async fn add_certificate(
        &self,
        certificate: &ManagedCertificate,
    ) -> Result<ManagedCertificate, StoreError> {
        let mut stored = certificate.clone();
        stored.version = 1;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(cert_item(&stored)?))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(stored),
            Err(e) if is_conditional_failure(&e) => Err(StoreError::AlreadyExists {
                what: format!("certificate {:?}", stored.id),
            }),
            Err(e) => Err(sdk_error("PutItem", &self.table, e)),
        }
    }

    async fn update_certificate(
        &self,
        certificate: &ManagedCertificate,
    ) -> Result<ManagedCertificate, StoreError> {
        let mut stored = certificate.clone();
        stored.version = certificate.version + 1;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(cert_item(&stored)?))
            .condition_expression("version = :expected")
            .expression_attribute_values(":expected", n(certificate.version))
            .send()
            .await;
        match result {
            Ok(_) => Ok(stored),
            Err(e) if is_conditional_failure(&e) => {
                match self.certificate(&certificate.id).await? {
                    None => Err(StoreError::NotFound {
                        what: format!("certificate {:?}", certificate.id),
                    }),
                    Some(_) => Err(StoreError::Conflict {
                        what: format!("certificate {:?}", certificate.id),
                        expected: certificate.version,
                    }),
                }
            }
            Err(e) => Err(sdk_error("PutItem", &self.table, e)),
        }
    }

    async fn certificate(&self, id: &str) -> Result<Option<ManagedCertificate>, StoreError> {
        self.get(cert_pk(id), CERT_SK)
            .await?
            .map(|item| cert_from(&item))
            .transpose()
    }

    async fn certificates(&self) -> Result<Vec<ManagedCertificate>, StoreError> {
        let mut all = self
            .query_partition(DUE_INDEX, RENEW_PARTITION.into(), &SortKey::Any)
            .await?
            .iter()
            .map(cert_from)
            .collect::<Result<Vec<_>, _>>()?;
        all.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(all)
    }

    async fn remove_certificate(&self, id: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(cert_pk(id)))
            .key("sk", s(CERT_SK))
            .condition_expression("attribute_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_conditional_failure(&e) => Err(StoreError::NotFound {
                what: format!("certificate {id:?}"),
            }),
            Err(e) => Err(sdk_error("DeleteItem", &self.table, e)),
        }
    }

    async fn certificates_due(
        &self,
        before: OffsetDateTime,
    ) -> Result<Vec<ManagedCertificate>, StoreError> {
        // '#' sorts before '$': keys "<before>#<id>" are below "<before>$".
        let below = SortKey::Below(format!("{}$", padded_nanos(Some(before))));
        // The index is eventually consistent; the renew service re-reads each record by key
        // before acting on it, so a stale entry costs one read and never a wrong renewal.
        self.query_partition(DUE_INDEX, RENEW_PARTITION.into(), &below)
            .await?
            .iter()
            .map(cert_from)
            .collect()
    }

    async fn record_issuance(
        &self,
        names: &[String],
        id: &str,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut item = Item::new();
        item.insert("pk".into(), s(issued_pk(names)));
        item.insert("sk".into(), s(format!("{}#{id}", padded_nanos(Some(at)))));
        // Past the CA's window the entry counts for nothing: let DynamoDB's TTL (when the
        // table has it on `expires_at`) drop it.
        item.insert(
            "expires_at".into(),
            n((at + time::Duration::days(8)).unix_timestamp().max(0)),
        );
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| sdk_error("PutItem", &self.table, e))?;
        Ok(())
    }

    async fn issuances(
        &self,
        names: &[String],
        since: OffsetDateTime,
    ) -> Result<Vec<OffsetDateTime>, StoreError> {
        // '$' sorts after '#': every key "<since>#<id>" is below "<since>$".
        let above = format!("{}$", padded_nanos(Some(since)));
        let mut times = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk > :since")
                .expression_attribute_values(":pk", s(issued_pk(names)))
                .expression_attribute_values(":since", s(above.clone()))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("Query", &self.table, e))?;
            for item in out.items.unwrap_or_default() {
                let sk = get_s(&item, "sk")?;
                let nanos: i128 = sk
                    .split('#')
                    .next()
                    .and_then(|t| t.parse().ok())
                    .ok_or_else(|| corrupt("issuance", format!("sort key {sk:?}")))?;
                times.push(
                    OffsetDateTime::from_unix_timestamp_nanos(nanos)
                        .map_err(|e| corrupt("issuance", e))?,
                );
            }
            match out.last_evaluated_key {
                Some(key) => start = Some(key),
                None => break,
            }
        }
        Ok(times)
    }
}
