//! The contract suites of [`RequestStore`], [`AuditLog`] and [`IdempotencyStore`] (with
//! [`request_store_contract!`](crate::request_store_contract)), and the in-memory store that
//! passes them ([`MemoryRequests`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use certpilot_core::model::request::{
    AuditRecord, CertificateRequest, IDEMPOTENCY_TTL, IdempotencyEntry, RequestState, SavedResponse,
};
use certpilot_core::ports::{AuditLog, Claim, IdempotencyStore, RequestStore, StoreError};
use time::OffsetDateTime;
use time::macros::datetime;

/// Generates one `#[tokio::test]` per case of the three contracts.
#[macro_export]
macro_rules! request_store_contract {
    ($fresh:path) => {
        $crate::request_store_contract!(@cases $fresh;
            requests_are_created_once_and_decided_once,
            pending_requests_are_listed_by_id_and_removed,
            the_audit_trail_is_append_only_and_read_newest_first_by_page,
            idempotency_keys_are_claimed_once_completed_and_forgotten_after_a_day,
            concurrent_idempotency_claims_let_exactly_one_run,
        );
    };
    (@cases $fresh:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _guard) = $fresh().await;
                $crate::requests_contract::$case(std::sync::Arc::new(store)).await;
            }
        )*
    };
}

const T0: OffsetDateTime = datetime!(2026-12-01 10:00 UTC);

/// A request for `id` by `requester`, pending.
pub fn request(id: &str, requester: &str) -> CertificateRequest {
    let mut certificate =
        crate::renewal_contract::managed(&format!("{id}.example.com"), time::Duration::ZERO);
    certificate.id = id.to_owned();
    CertificateRequest {
        id: id.to_owned(),
        requester: requester.to_owned(),
        requested_at: T0,
        rule: "payments".into(),
        approvers: vec!["token:security".into()],
        certificate,
        state: RequestState::PendingApproval,
        decided_by: None,
        decided_at: None,
        reason: None,
        version: 0,
    }
}

/// Creation is once per id; a decision needs the stored version, so one of two approvers
/// acting on the same read wins.
pub async fn requests_are_created_once_and_decided_once<S: RequestStore>(s: Arc<S>) {
    assert_eq!(s.request("shop").await.unwrap(), None);
    let stored = s
        .put_request(&request("shop", "token:alice"))
        .await
        .unwrap();
    assert_eq!(stored.version, 1);
    assert!(matches!(
        s.put_request(&request("shop", "token:bob")).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    let read = s.request("shop").await.unwrap().unwrap();
    assert_eq!(read, stored);
    assert_eq!(read.certificate.id, "shop");

    let mut approve = read.clone();
    approve.state = RequestState::Approved;
    approve.decided_by = Some("token:security".into());
    approve.decided_at = Some(T0 + time::Duration::minutes(5));
    let mut reject = read.clone();
    reject.state = RequestState::Rejected;
    let approved = s.put_request(&approve).await.unwrap();
    assert_eq!(approved.version, 2);
    assert!(matches!(
        s.put_request(&reject).await,
        Err(StoreError::Conflict { expected: 1, .. })
    ));
    let now = s.request("shop").await.unwrap().unwrap();
    assert_eq!(now.state, RequestState::Approved);
    assert_eq!(now.decided_by.as_deref(), Some("token:security"));
}

/// Only pending requests are listed, by id; removing one frees its id.
pub async fn pending_requests_are_listed_by_id_and_removed<S: RequestStore>(s: Arc<S>) {
    for id in ["web", "api", "mail"] {
        s.put_request(&request(id, "token:alice")).await.unwrap();
    }
    let mut decided = s.request("mail").await.unwrap().unwrap();
    decided.state = RequestState::Rejected;
    s.put_request(&decided).await.unwrap();
    let ids: Vec<String> = s
        .pending_requests()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, ["api", "web"]);
    assert!(s.remove_request("mail").await.unwrap());
    assert!(!s.remove_request("mail").await.unwrap());
    s.put_request(&request("mail", "token:bob")).await.unwrap();
    assert_eq!(s.pending_requests().await.unwrap().len(), 3);
}

fn audit(i: i64, who: &str) -> AuditRecord {
    AuditRecord {
        at: T0 + time::Duration::seconds(i),
        request_id: format!("req-{i}"),
        principal: who.to_owned(),
        source: Some("192.0.2.7".into()),
        action: "POST /certificates".into(),
        subject: Some(format!("cert-{i}")),
        status: 202,
        outcome: format!("requested cert-{i}"),
    }
}

/// Records come back whole, newest first, a page at a time; a key is never written twice.
pub async fn the_audit_trail_is_append_only_and_read_newest_first_by_page<S: AuditLog>(s: Arc<S>) {
    assert!(s.audit(None, 10).await.unwrap().is_empty());
    for i in 0..7 {
        s.append(&audit(i, "token:alice")).await.unwrap();
    }
    let mut forged = audit(3, "token:mallory");
    forged.outcome = "nothing happened".into();
    assert!(matches!(
        s.append(&forged).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    let first = s.audit(None, 3).await.unwrap();
    assert_eq!(
        first
            .iter()
            .map(|r| r.request_id.as_str())
            .collect::<Vec<_>>(),
        ["req-6", "req-5", "req-4"]
    );
    assert_eq!(first[0], audit(6, "token:alice"));
    let next = s.audit(Some(&first[2].key()), 3).await.unwrap();
    assert_eq!(
        next.iter()
            .map(|r| r.request_id.as_str())
            .collect::<Vec<_>>(),
        ["req-3", "req-2", "req-1"]
    );
    assert_eq!(
        next[0].principal, "token:alice",
        "the forged record replaced nothing"
    );
    let last = s.audit(Some(&next[2].key()), 3).await.unwrap();
    assert_eq!(last.len(), 1);
}

fn entry(key: &str, fingerprint: &str, at: OffsetDateTime) -> IdempotencyEntry {
    IdempotencyEntry {
        key: key.to_owned(),
        fingerprint: fingerprint.to_owned(),
        created_at: at,
        response: None,
    }
}

/// A key is claimed once; the response is kept for retries; after a day, or once released,
/// the key is free again.
pub async fn idempotency_keys_are_claimed_once_completed_and_forgotten_after_a_day<
    S: IdempotencyStore,
>(
    s: Arc<S>,
) {
    let key = "token:alice\nk-1";
    assert_eq!(
        s.claim(&entry(key, "f1", T0), T0).await.unwrap(),
        Claim::Claimed
    );
    let again = s.claim(&entry(key, "f2", T0), T0).await.unwrap();
    assert_eq!(again, Claim::Existing(entry(key, "f1", T0)));
    let response = SavedResponse {
        status: 202,
        body: r#"{"id":"shop"}"#.into(),
    };
    s.complete(key, &response).await.unwrap();
    let later = T0 + time::Duration::hours(23);
    match s.claim(&entry(key, "f1", later), later).await.unwrap() {
        Claim::Existing(e) => assert_eq!(e.response, Some(response.clone())),
        Claim::Claimed => panic!("a key used within a day was claimed again"),
    }
    let other_caller = "token:bob\nk-1";
    assert_eq!(
        s.claim(&entry(other_caller, "f1", later), later)
            .await
            .unwrap(),
        Claim::Claimed,
        "keys are per caller"
    );
    let next_day = T0 + IDEMPOTENCY_TTL;
    assert_eq!(
        s.claim(&entry(key, "f3", next_day), next_day)
            .await
            .unwrap(),
        Claim::Claimed
    );
    s.release(key).await.unwrap();
    assert_eq!(
        s.claim(&entry(key, "f4", next_day), next_day)
            .await
            .unwrap(),
        Claim::Claimed
    );
}

/// Eight retries racing with one key: one runs.
pub async fn concurrent_idempotency_claims_let_exactly_one_run<S: IdempotencyStore + 'static>(
    s: Arc<S>,
) {
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.claim(&entry("token:a\nrace", "f", T0), T0).await })
        })
        .collect();
    let mut claimed = 0;
    for t in tasks {
        if t.await.unwrap().unwrap() == Claim::Claimed {
            claimed += 1;
        }
    }
    assert_eq!(claimed, 1);
}

/// The three stores in memory.
#[derive(Default)]
pub struct MemoryRequests {
    requests: Mutex<BTreeMap<String, CertificateRequest>>,
    audit: Mutex<BTreeMap<String, AuditRecord>>,
    keys: Mutex<BTreeMap<String, IdempotencyEntry>>,
}

#[async_trait::async_trait]
impl RequestStore for MemoryRequests {
    async fn request(&self, id: &str) -> Result<Option<CertificateRequest>, StoreError> {
        Ok(self.requests.lock().expect("lock").get(id).cloned())
    }

    async fn put_request(&self, r: &CertificateRequest) -> Result<CertificateRequest, StoreError> {
        let mut map = self.requests.lock().expect("lock");
        let what = format!("request {:?}", r.id);
        match (map.get(&r.id), r.version) {
            (Some(_), 0) => return Err(StoreError::AlreadyExists { what }),
            (None, 0) => {}
            (None, _) => return Err(StoreError::NotFound { what }),
            (Some(old), v) if old.version != v => {
                return Err(StoreError::Conflict { what, expected: v });
            }
            (Some(_), _) => {}
        }
        let mut stored = r.clone();
        stored.version += 1;
        map.insert(r.id.clone(), stored.clone());
        Ok(stored)
    }

    async fn pending_requests(&self) -> Result<Vec<CertificateRequest>, StoreError> {
        Ok(self
            .requests
            .lock()
            .expect("lock")
            .values()
            .filter(|r| r.state == RequestState::PendingApproval)
            .cloned()
            .collect())
    }

    async fn remove_request(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.requests.lock().expect("lock").remove(id).is_some())
    }
}

#[async_trait::async_trait]
impl AuditLog for MemoryRequests {
    async fn append(&self, r: &AuditRecord) -> Result<(), StoreError> {
        let mut map = self.audit.lock().expect("lock");
        let key = r.key();
        if map.contains_key(&key) {
            return Err(StoreError::AlreadyExists {
                what: format!("audit record {key:?}"),
            });
        }
        map.insert(key, r.clone());
        Ok(())
    }

    async fn audit(
        &self,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        Ok(self
            .audit
            .lock()
            .expect("lock")
            .iter()
            .rev()
            .filter(|(k, _)| before.is_none_or(|b| k.as_str() < b))
            .take(limit)
            .map(|(_, r)| r.clone())
            .collect())
    }
}

#[async_trait::async_trait]
impl IdempotencyStore for MemoryRequests {
    async fn claim(&self, e: &IdempotencyEntry, now: OffsetDateTime) -> Result<Claim, StoreError> {
        let mut map = self.keys.lock().expect("lock");
        match map.get(&e.key) {
            Some(old) if !old.is_expired(now) => Ok(Claim::Existing(old.clone())),
            _ => {
                map.insert(e.key.clone(), e.clone());
                Ok(Claim::Claimed)
            }
        }
    }

    async fn complete(&self, key: &str, response: &SavedResponse) -> Result<(), StoreError> {
        if let Some(e) = self.keys.lock().expect("lock").get_mut(key) {
            e.response = Some(response.clone());
        }
        Ok(())
    }

    async fn release(&self, key: &str) -> Result<(), StoreError> {
        self.keys.lock().expect("lock").remove(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::MemoryRequests;

    async fn fresh() -> (MemoryRequests, ()) {
        (MemoryRequests::default(), ())
    }

    crate::request_store_contract!(fresh);
}
