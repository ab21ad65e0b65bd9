//! DNS providers: TXT records for DNS-01, CNAME records for ACM validation.

use async_trait::async_trait;

use super::*;

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
