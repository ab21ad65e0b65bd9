//! Registering and listing endpoints.

use time::OffsetDateTime;

use crate::model::endpoint::{Endpoint, Tags};
use crate::model::target::{ScanRequest, Target};
use crate::ports::{EndpointStore, StoreError};

/// What [`register`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Registration {
    /// The endpoint is new.
    Added,
    /// The endpoint existed; its tags were merged with the given ones.
    Updated,
    /// The endpoint existed with these tags already.
    Unchanged,
}

/// Registers `target`, or merges `tags` into an existing registration (a given key replaces
/// the stored value). Retries a few times when another writer changed the endpoint meanwhile.
pub async fn register(
    store: &dyn EndpointStore,
    target: &Target,
    tags: &Tags,
    now: OffsetDateTime,
) -> Result<(Endpoint, Registration), StoreError> {
    let key = target.to_string();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let outcome = match store.endpoint(&key).await? {
            None => store
                .add_endpoint(&Endpoint::new(target.clone(), tags.clone(), now))
                .await
                .map(|e| (e, Registration::Added)),
            Some(existing) => {
                let mut merged = existing.clone();
                merged
                    .tags
                    .extend(tags.iter().map(|(k, v)| (k.clone(), v.clone())));
                if merged.tags == existing.tags {
                    return Ok((existing, Registration::Unchanged));
                }
                store
                    .update_endpoint(&merged)
                    .await
                    .map(|e| (e, Registration::Updated))
            }
        };
        match outcome {
            Err(StoreError::Conflict { .. } | StoreError::AlreadyExists { .. }) if attempts < 5 => {
                continue;
            }
            other => return other,
        }
    }
}

/// The scan requests for every registered endpoint, carrying its tags.
pub async fn registered_requests(
    store: &dyn EndpointStore,
) -> Result<Vec<ScanRequest>, StoreError> {
    Ok(store
        .endpoints()
        .await?
        .into_iter()
        .map(|e| ScanRequest {
            target: e.target,
            tags: e.tags,
            connect_to: Vec::new(),
        })
        .collect())
}
