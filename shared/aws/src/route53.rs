//! DNS-01 through Route 53: the [`DnsProvider`] for certificates whose challenge is
//! `dns-01` with provider `route53`.
//!
//! - The hosted zone is the configured `zone_id`, or else the public zone whose name is the
//!   longest suffix of the record's name (`ListHostedZonesByName`), cached per process.
//! - Publishing merges our values into any TXT values already at the name (a name and its
//!   wildcard share `_acme-challenge.<name>`; another renewal may be in flight), `UPSERT`s,
//!   and waits until `GetChange` reports `INSYNC`: Route 53's promise that every one of its
//!   authoritative servers answers the new records.
//! - Withdrawing removes only our values (`DELETE` when none remain).
//!
//! Permissions: `route53:ListHostedZonesByName`, `route53:GetChange`, and
//! `route53:ListResourceRecordSets` + `route53:ChangeResourceRecordSets` on the hosted zones
//! (restrict them to TXT records named `_acme-challenge.*` with the
//! `route53:ChangeResourceRecordSetsNormalizedRecordNames` and `…RecordTypes` conditions).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_route53::Client;
use aws_sdk_route53::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ChangeStatus, ResourceRecord, ResourceRecordSet, RrType,
};
use certpilot_core::model::certificate::DnsProviderConfig;
use certpilot_core::ports::{CnameProvider, CnameRecord, DnsProvider, IssueError, TxtRecord};
use tokio::sync::Mutex;
use tracing::info;

/// TTL of challenge records: short, so a retry with a new value is seen quickly.
const TTL: i64 = 60;

/// Route 53 as a DNS-01 provider.
#[derive(Debug)]
pub struct Route53Dns {
    client: Client,
    /// How long to wait for a change to be `INSYNC`.
    sync_timeout: Duration,
    zones: Mutex<HashMap<String, String>>,
}

fn sdk_error<E, R>(operation: &str, e: SdkError<E, R>) -> IssueError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let (code, detail) = crate::describe_sdk_error(&e);
    let text = format!("route53: {operation}: {detail}");
    match code.as_str() {
        "Throttling"
        | "ThrottlingException"
        | "PriorRequestNotComplete"
        | "ServiceUnavailable"
        | "" => IssueError::DnsUnavailable(text),
        _ => IssueError::Config(text),
    }
}

fn quoted(value: &str) -> String {
    format!("\"{value}\"")
}

fn unquoted(value: &str) -> String {
    value.trim_matches('"').to_owned()
}

/// Records grouped by name, values sorted and unique.
fn by_name(records: &[TxtRecord]) -> BTreeMap<String, Vec<String>> {
    let mut grouped: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in records {
        let values = grouped
            .entry(r.name.trim_end_matches('.').to_ascii_lowercase())
            .or_default();
        if !values.contains(&r.value) {
            values.push(r.value.clone());
        }
    }
    grouped
}

impl Route53Dns {
    /// A provider through `client`, waiting up to `sync_timeout` for changes to propagate.
    pub fn new(client: Client, sync_timeout: Duration) -> Self {
        Route53Dns {
            client,
            sync_timeout,
            zones: Mutex::default(),
        }
    }

    /// The hosted zone holding `name`.
    async fn zone(&self, config: &DnsProviderConfig, name: &str) -> Result<String, IssueError> {
        if let DnsProviderConfig::Route53 {
            zone_id: Some(zone),
        } = config
        {
            return Ok(zone.trim_start_matches("/hostedzone/").to_owned());
        }
        let mut zones = self.zones.lock().await;
        let labels: Vec<&str> = name.split('.').collect();
        // Longest suffix first, never the bare top-level domain.
        for start in 0..labels.len().saturating_sub(1) {
            let candidate = labels[start..].join(".");
            if let Some(id) = zones.get(&candidate) {
                return Ok(id.clone());
            }
            let out = self
                .client
                .list_hosted_zones_by_name()
                .dns_name(&candidate)
                .max_items(1)
                .send()
                .await
                .map_err(|e| sdk_error("ListHostedZonesByName", e))?;
            let found = out.hosted_zones().iter().find(|z| {
                z.name()
                    .trim_end_matches('.')
                    .eq_ignore_ascii_case(&candidate)
                    && !z.config().is_some_and(|c| c.private_zone())
            });
            if let Some(z) = found {
                let id = z.id().trim_start_matches("/hostedzone/").to_owned();
                zones.insert(candidate, id.clone());
                return Ok(id);
            }
        }
        Err(IssueError::Config(format!(
            "route53: no public hosted zone holds {name}; give --route53-zone"
        )))
    }

    /// The values of the `kind` record set at `name` in `zone` (empty when there is none).
    async fn values(
        &self,
        zone: &str,
        name: &str,
        kind: RrType,
    ) -> Result<Vec<String>, IssueError> {
        let out = self
            .client
            .list_resource_record_sets()
            .hosted_zone_id(zone)
            .start_record_name(name)
            .start_record_type(kind.clone())
            .max_items(1)
            .send()
            .await
            .map_err(|e| sdk_error("ListResourceRecordSets", e))?;
        Ok(out
            .resource_record_sets()
            .iter()
            .find(|set| {
                set.name().trim_end_matches('.').eq_ignore_ascii_case(name) && *set.r#type() == kind
            })
            .map(|set| {
                set.resource_records()
                    .iter()
                    .map(|r| r.value().to_owned())
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The TXT values now at `name` in `zone`.
    async fn current(&self, zone: &str, name: &str) -> Result<Vec<String>, IssueError> {
        let values = self.values(zone, name, RrType::Txt).await?;
        Ok(values.iter().map(|v| unquoted(v)).collect())
    }

    fn change(action: ChangeAction, name: &str, values: &[String]) -> Result<Change, IssueError> {
        let build = |e: aws_sdk_route53::error::BuildError| IssueError::Config(e.to_string());
        let mut set = ResourceRecordSet::builder()
            .name(name)
            .r#type(RrType::Txt)
            .ttl(TTL);
        for v in values {
            set = set.resource_records(
                ResourceRecord::builder()
                    .value(quoted(v))
                    .build()
                    .map_err(build)?,
            );
        }
        Change::builder()
            .action(action)
            .resource_record_set(set.build().map_err(build)?)
            .build()
            .map_err(build)
    }

    async fn apply(&self, zone: &str, changes: Vec<Change>) -> Result<(), IssueError> {
        if changes.is_empty() {
            return Ok(());
        }
        let build = |e: aws_sdk_route53::error::BuildError| IssueError::Config(e.to_string());
        let out = self
            .client
            .change_resource_record_sets()
            .hosted_zone_id(zone)
            .change_batch(
                ChangeBatch::builder()
                    .comment("certpilot DNS-01")
                    .set_changes(Some(changes))
                    .build()
                    .map_err(build)?,
            )
            .send()
            .await
            .map_err(|e| sdk_error("ChangeResourceRecordSets", e))?;
        let Some(info) = out.change_info() else {
            return Ok(());
        };
        let id = info.id().to_owned();
        let deadline = tokio::time::Instant::now() + self.sync_timeout;
        let mut status = info.status().clone();
        let mut delay = Duration::from_millis(500);
        while status != ChangeStatus::Insync {
            if tokio::time::Instant::now() + delay > deadline {
                return Err(IssueError::DnsUnavailable(format!(
                    "route53: change {id} not INSYNC after {:?}",
                    self.sync_timeout
                )));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(10));
            status = self
                .client
                .get_change()
                .id(&id)
                .send()
                .await
                .map_err(|e| sdk_error("GetChange", e))?
                .change_info()
                .map(|c| c.status().clone())
                .unwrap_or(ChangeStatus::Pending);
        }
        Ok(())
    }
}

impl Route53Dns {
    /// The CNAME target at `name` in `zone`, if any.
    async fn cname(&self, zone: &str, name: &str) -> Result<Option<String>, IssueError> {
        let values = self.values(zone, name, RrType::Cname).await?;
        Ok(values.first().map(|v| v.trim_end_matches('.').to_owned()))
    }
}

#[async_trait]
impl CnameProvider for Route53Dns {
    async fn publish_cnames(
        &self,
        config: &DnsProviderConfig,
        records: &[CnameRecord],
    ) -> Result<(), IssueError> {
        let build = |e: aws_sdk_route53::error::BuildError| IssueError::Config(e.to_string());
        let mut per_zone: BTreeMap<String, Vec<Change>> = BTreeMap::new();
        for r in records {
            let zone = self.zone(config, &r.name).await?;
            let set = ResourceRecordSet::builder()
                .name(&r.name)
                .r#type(RrType::Cname)
                .ttl(300)
                .resource_records(
                    ResourceRecord::builder()
                        .value(&r.value)
                        .build()
                        .map_err(build)?,
                )
                .build()
                .map_err(build)?;
            per_zone.entry(zone).or_default().push(
                Change::builder()
                    .action(ChangeAction::Upsert)
                    .resource_record_set(set)
                    .build()
                    .map_err(build)?,
            );
        }
        for (zone, changes) in per_zone {
            let count = changes.len();
            self.apply(&zone, changes).await?;
            info!(zone = %zone, names = count, "route53: ACM validation records in sync");
        }
        Ok(())
    }

    async fn missing_cnames(
        &self,
        config: &DnsProviderConfig,
        records: &[CnameRecord],
    ) -> Result<Vec<CnameRecord>, IssueError> {
        let mut missing = Vec::new();
        for r in records {
            let zone = self.zone(config, &r.name).await?;
            let value = self.cname(&zone, &r.name).await?;
            if !value.is_some_and(|v| v.eq_ignore_ascii_case(r.value.trim_end_matches('.'))) {
                missing.push(r.clone());
            }
        }
        Ok(missing)
    }
}

#[async_trait]
impl DnsProvider for Route53Dns {
    async fn publish(
        &self,
        config: &DnsProviderConfig,
        records: &[TxtRecord],
    ) -> Result<(), IssueError> {
        let mut per_zone: BTreeMap<String, Vec<Change>> = BTreeMap::new();
        for (name, ours) in by_name(records) {
            let zone = self.zone(config, &name).await?;
            let mut values = self.current(&zone, &name).await?;
            for v in ours {
                if !values.contains(&v) {
                    values.push(v);
                }
            }
            per_zone.entry(zone).or_default().push(Self::change(
                ChangeAction::Upsert,
                &name,
                &values,
            )?);
        }
        for (zone, changes) in per_zone {
            let count = changes.len();
            self.apply(&zone, changes).await?;
            info!(zone = %zone, names = count, "route53: challenge records in sync");
        }
        Ok(())
    }

    async fn withdraw(
        &self,
        config: &DnsProviderConfig,
        records: &[TxtRecord],
    ) -> Result<(), IssueError> {
        for (name, ours) in by_name(records) {
            let zone = self.zone(config, &name).await?;
            let current = self.current(&zone, &name).await?;
            if current.is_empty() {
                continue;
            }
            let remaining: Vec<String> = current
                .iter()
                .filter(|v| !ours.contains(v))
                .cloned()
                .collect();
            let change = if remaining.is_empty() {
                Self::change(ChangeAction::Delete, &name, &current)?
            } else if remaining.len() == current.len() {
                continue;
            } else {
                Self::change(ChangeAction::Upsert, &name, &remaining)?
            };
            self.apply(&zone, vec![change]).await?;
        }
        Ok(())
    }
}

/// A [`Route53Dns`] configured from the environment on first use, so that a process whose
/// certificates never use Route 53 never loads AWS settings (which can probe the instance
/// metadata service off AWS).
#[derive(Debug)]
pub struct LazyRoute53Dns {
    sync_timeout: Duration,
    inner: tokio::sync::OnceCell<Route53Dns>,
}

impl LazyRoute53Dns {
    /// A provider waiting up to `sync_timeout` for changes to propagate.
    pub fn new(sync_timeout: Duration) -> Self {
        LazyRoute53Dns {
            sync_timeout,
            inner: tokio::sync::OnceCell::new(),
        }
    }

    async fn get(&self) -> &Route53Dns {
        self.inner
            .get_or_init(|| async {
                let config = crate::config::load().await;
                Route53Dns::new(Client::new(&config), self.sync_timeout)
            })
            .await
    }
}

#[async_trait]
impl DnsProvider for LazyRoute53Dns {
    async fn publish(
        &self,
        config: &DnsProviderConfig,
        records: &[TxtRecord],
    ) -> Result<(), IssueError> {
        self.get().await.publish(config, records).await
    }

    async fn withdraw(
        &self,
        config: &DnsProviderConfig,
        records: &[TxtRecord],
    ) -> Result<(), IssueError> {
        self.get().await.withdraw(config, records).await
    }
}

#[async_trait]
impl CnameProvider for LazyRoute53Dns {
    async fn publish_cnames(
        &self,
        config: &DnsProviderConfig,
        records: &[CnameRecord],
    ) -> Result<(), IssueError> {
        self.get().await.publish_cnames(config, records).await
    }

    async fn missing_cnames(
        &self,
        config: &DnsProviderConfig,
        records: &[CnameRecord],
    ) -> Result<Vec<CnameRecord>, IssueError> {
        self.get().await.missing_cnames(config, records).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_and_its_wildcard_share_one_record_set() {
        let records = [
            TxtRecord {
                name: "_acme-challenge.Example.com.".into(),
                value: "a".into(),
            },
            TxtRecord {
                name: "_acme-challenge.example.com".into(),
                value: "b".into(),
            },
            TxtRecord {
                name: "_acme-challenge.example.com".into(),
                value: "a".into(),
            },
        ];
        let grouped = by_name(&records);
        assert_eq!(grouped.len(), 1);
        assert_eq!(grouped["_acme-challenge.example.com"], ["a", "b"]);
    }
}
