//! Findings, as stored.

use async_trait::async_trait;

use super::*;
use crate::model::finding::Finding;

/// Where findings live (the same table or file as everything else).
///
/// Contract, for every implementation:
/// - **Keys.** A finding is keyed by [`Finding::key`].
/// - **Not found.** Reading a missing one is `Ok(None)`.
/// - **Versions.** `put_finding` of a finding with version 0 creates it at version 1
///   ([`StoreError::AlreadyExists`] when the key exists: someone else opened it first, or it
///   is a resolved finding to reopen); of any other version, writes it only if the stored
///   version is still that one and stores `version + 1` (else [`StoreError::Conflict`], or
///   [`StoreError::NotFound`], and nothing is written). Each transition is written this way,
///   so two evaluations at once record it once; and each notification is claimed this way,
///   so it is sent once.
/// - **Queries** return findings sorted most severe first, then by key:
///   `active_findings` those open or acknowledged; `pending_findings` those with a
///   transition not yet notified (resolved ones included); `all_findings` every one.
#[async_trait]
pub trait FindingStore: Send + Sync {
    /// The finding with this key.
    async fn finding(&self, key: &str) -> Result<Option<Finding>, StoreError>;

    /// Creates (version 0) or updates (the stored version) a finding; returns it as stored.
    async fn put_finding(&self, finding: &Finding) -> Result<Finding, StoreError>;

    /// Open and acknowledged findings.
    async fn active_findings(&self) -> Result<Vec<Finding>, StoreError>;

    /// Findings with a transition not yet notified.
    async fn pending_findings(&self) -> Result<Vec<Finding>, StoreError>;

    /// Every finding, resolved ones included.
    async fn all_findings(&self) -> Result<Vec<Finding>, StoreError>;
}

/// Sorts findings as every query returns them: most severe first, then by key.
pub fn sort_findings(findings: &mut [Finding]) {
    findings.sort_by(|a, b| b.severity.cmp(&a.severity).then_with(|| a.key.cmp(&b.key)));
}

/// Where channels are configured (the same table or file as everything else).
///
/// Contract: `add_channel` creates a channel ([`StoreError::AlreadyExists`] when the name is
/// taken: replacing one is a remove and an add, never a silent overwrite); `channels` lists
/// them by name; `remove_channel` returns whether there was one.
#[async_trait]
pub trait ChannelStore: Send + Sync {
    /// Every channel, by name.
    async fn channels(&self) -> Result<Vec<crate::model::channel::Channel>, StoreError>;

    /// Adds a channel.
    async fn add_channel(&self, channel: &crate::model::channel::Channel)
    -> Result<(), StoreError>;

    /// Removes the channel `name`; whether there was one.
    async fn remove_channel(&self, name: &str) -> Result<bool, StoreError>;
}
