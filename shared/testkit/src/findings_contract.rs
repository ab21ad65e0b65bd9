//! The contract suite of [`FindingStore`] (with
//! [`finding_store_contract!`](crate::finding_store_contract)), and the in-memory store that
//! passes it ([`MemoryFindings`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use certpilot_core::model::channel::{Channel, ChannelKind};
use certpilot_core::model::finding::{
    Finding, FindingKind, FindingState, Severity, Subject, Transition,
};
use certpilot_core::policy::findings::{Condition, FindingsPolicy, reconcile};
use certpilot_core::ports::{ChannelStore, FindingStore, StoreError, sort_findings};
use time::macros::datetime;

/// Generates one `#[tokio::test]` per [`FindingStore`] contract case.
#[macro_export]
macro_rules! finding_store_contract {
    ($fresh:path) => {
        $crate::finding_store_contract!(@cases $fresh;
            findings_are_created_once_and_read_back,
            finding_updates_need_the_stored_version,
            concurrent_finding_writes_let_exactly_one_win,
            queries_sort_most_severe_first_and_select_by_state_and_pending,
            resolved_findings_are_forgotten_after_the_retention_once_told,
        );
    };
    (@cases $fresh:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _guard) = $fresh().await;
                $crate::findings_contract::$case(std::sync::Arc::new(store)).await;
            }
        )*
    };
}

/// Generates the [`ChannelStore`] contract test.
#[macro_export]
macro_rules! channel_store_contract {
    ($fresh:path) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn channels_are_added_once_listed_by_name_and_removed() {
            let (store, _guard) = $fresh().await;
            $crate::findings_contract::channels_are_added_once_listed_by_name_and_removed(
                std::sync::Arc::new(store),
            )
            .await;
        }
    };
}

/// A channel named `name` for owner `owner`.
pub fn channel(name: &str, owner: &str) -> Channel {
    Channel {
        name: name.to_owned(),
        kind: ChannelKind::Webhook {
            url: format!("https://hooks.example/{name}"),
        },
        min_severity: Severity::Warning,
        kinds: vec![FindingKind::Expiring, FindingKind::NotServing],
        matches: BTreeMap::from([("owner".to_owned(), owner.to_owned())]),
    }
}

pub async fn channels_are_added_once_listed_by_name_and_removed<S: ChannelStore>(s: Arc<S>) {
    assert!(s.channels().await.unwrap().is_empty());
    let b = channel("search", "search");
    let a = channel("payments", "payments");
    s.add_channel(&b).await.unwrap();
    s.add_channel(&a).await.unwrap();
    let mut other = a.clone();
    other.min_severity = Severity::Critical;
    assert!(matches!(
        s.add_channel(&other).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    assert_eq!(s.channels().await.unwrap(), vec![a.clone(), b.clone()]);
    assert!(s.remove_channel("payments").await.unwrap());
    assert!(!s.remove_channel("payments").await.unwrap());
    assert_eq!(s.channels().await.unwrap(), vec![b]);
}

/// A finding of `kind` about endpoint `target`, open, opened and not yet notified: what
/// the policy opens for such a condition.
pub fn finding(kind: FindingKind, target: &str, severity: Severity) -> Finding {
    let tags = BTreeMap::from([
        ("owner".to_owned(), "payments".to_owned()),
        ("environment".to_owned(), "prod".to_owned()),
    ]);
    let condition = Condition {
        kind,
        subject: Subject::endpoint(target, Some("192.0.2.1:443")),
        severity,
        summary: format!("{target}: {kind}"),
        detail: "serial 01".into(),
        next_step: "renew it".into(),
        tags,
        fact: "01@30".into(),
        expires_at: Some(time::macros::datetime!(2026-12-20 00:00 UTC)),
    };
    let at = datetime!(2026-12-01 09:00 UTC);
    reconcile(&[], &[condition], &|_| true, at, &FindingsPolicy::default())
        .pop()
        .expect("a condition opens a finding")
}

pub async fn resolved_findings_are_forgotten_after_the_retention_once_told<S: FindingStore>(
    s: Arc<S>,
) {
    use certpilot_core::model::finding::RESOLVED_RETENTION;
    let now = time::OffsetDateTime::now_utc();
    let resolve = |target: &str, ago: time::Duration, pending: Option<Transition>| {
        let mut f = finding(FindingKind::Expiring, target, Severity::Warning);
        f.state = FindingState::Resolved;
        f.resolved_at = Some(now - ago);
        f.updated_at = now - ago;
        f.pending = pending;
        f
    };
    let old = resolve(
        "old.example:443",
        RESOLVED_RETENTION + time::Duration::days(1),
        None,
    );
    let untold = resolve(
        "untold.example:443",
        RESOLVED_RETENTION + time::Duration::days(1),
        Some(Transition::Resolved),
    );
    let recent = resolve("recent.example:443", time::Duration::days(10), None);
    let open = finding(FindingKind::Expiring, "open.example:443", Severity::Warning);
    for f in [&old, &untold, &recent, &open] {
        s.put_finding(f).await.unwrap();
    }
    let mut listed: Vec<String> = s
        .all_findings()
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.key)
        .collect();
    listed.sort();
    let mut want = vec![untold.key, recent.key, open.key];
    want.sort();
    assert_eq!(
        listed, want,
        "a resolved finding everyone heard of is gone after the retention; one not yet told stays"
    );
}

pub async fn findings_are_created_once_and_read_back<S: FindingStore>(s: Arc<S>) {
    let f = finding(FindingKind::Expiring, "shop.example:443", Severity::Warning);
    assert!(s.finding(&f.key).await.unwrap().is_none());
    let stored = s.put_finding(&f).await.unwrap();
    assert_eq!(stored.version, 1);
    assert_eq!(s.finding(&f.key).await.unwrap().as_ref(), Some(&stored));
    assert!(matches!(
        s.put_finding(&f).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    assert_eq!(s.finding(&f.key).await.unwrap(), Some(stored));
}

pub async fn finding_updates_need_the_stored_version<S: FindingStore>(s: Arc<S>) {
    let f = finding(FindingKind::Expiring, "shop.example:443", Severity::Warning);
    let v1 = s.put_finding(&f).await.unwrap();
    let mut change = v1.clone();
    change.severity = Severity::Critical;
    change.pending = Some(Transition::Escalated);
    let v2 = s.put_finding(&change).await.unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(
        s.finding(&f.key).await.unwrap().unwrap().severity,
        Severity::Critical
    );
    // A writer that read version 1 loses, and writes nothing.
    let mut stale = v1.clone();
    stale.summary = "stale".into();
    assert!(matches!(
        s.put_finding(&stale).await,
        Err(StoreError::Conflict { expected: 1, .. })
    ));
    assert_eq!(s.finding(&f.key).await.unwrap(), Some(v2));
    let mut missing = finding(FindingKind::Expired, "gone.example:443", Severity::Critical);
    missing.version = 3;
    assert!(matches!(
        s.put_finding(&missing).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(s.finding(&missing.key).await.unwrap().is_none());
}

pub async fn concurrent_finding_writes_let_exactly_one_win<S: FindingStore + 'static>(s: Arc<S>) {
    // Two evaluations (or two senders claiming a notification) from the same version.
    let f = finding(
        FindingKind::NotServing,
        "shop.example:443",
        Severity::Critical,
    );
    let v1 = s.put_finding(&f).await.unwrap();
    let mut writers = Vec::new();
    for i in 0..8 {
        let s = s.clone();
        let mut mine = v1.clone();
        mine.detail = format!("writer {i}");
        writers.push(tokio::spawn(async move { s.put_finding(&mine).await }));
    }
    let mut won = 0;
    for w in writers {
        match w.await.unwrap() {
            Ok(_) => won += 1,
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(s.finding(&f.key).await.unwrap().unwrap().version, 2);
    // Two evaluations opening the same finding: one creates it.
    let g = finding(
        FindingKind::Unreachable,
        "api.example:443",
        Severity::Warning,
    );
    let (a, b) = tokio::join!(s.put_finding(&g), s.put_finding(&g));
    assert_eq!(
        [a.is_ok(), b.is_ok()].iter().filter(|ok| **ok).count(),
        1,
        "{a:?} {b:?}"
    );
}

pub async fn queries_sort_most_severe_first_and_select_by_state_and_pending<S: FindingStore>(
    s: Arc<S>,
) {
    let warning = finding(FindingKind::Validation, "b.example:443", Severity::Warning);
    let critical = finding(FindingKind::Expired, "c.example:443", Severity::Critical);
    let mut acked = finding(FindingKind::Expiring, "a.example:443", Severity::Critical);
    acked.state = FindingState::Acknowledged;
    acked.acknowledged_until = Some(datetime!(2026-12-10 00:00 UTC));
    acked.pending = None;
    let mut resolved = finding(FindingKind::Unreachable, "d.example:443", Severity::Warning);
    resolved.state = FindingState::Resolved;
    resolved.pending = Some(Transition::Resolved);
    let mut quiet = finding(FindingKind::ScanStale, "e.example:443", Severity::Critical);
    quiet.state = FindingState::Resolved;
    quiet.pending = None;
    for f in [&warning, &critical, &acked, &resolved, &quiet] {
        s.put_finding(f).await.unwrap();
    }
    let keys = |v: Vec<Finding>| v.into_iter().map(|f| f.key).collect::<Vec<_>>();
    let mut active = vec![critical.clone(), acked.clone(), warning.clone()];
    sort_findings(&mut active);
    assert_eq!(keys(s.active_findings().await.unwrap()), keys(active));
    let mut pending = vec![critical.clone(), warning.clone(), resolved.clone()];
    sort_findings(&mut pending);
    assert_eq!(keys(s.pending_findings().await.unwrap()), keys(pending));
    let all = s.all_findings().await.unwrap();
    assert_eq!(all.len(), 5);
    assert!(all.windows(2).all(|w| w[0].severity >= w[1].severity));
    // Marking one notified takes it off the pending list.
    let stored = s.finding(&critical.key).await.unwrap().unwrap();
    let mut sent = stored.clone();
    sent.pending = None;
    sent.notified_at = Some(datetime!(2026-12-01 09:01 UTC));
    s.put_finding(&sent).await.unwrap();
    assert!(!keys(s.pending_findings().await.unwrap()).contains(&critical.key));
}

/// Findings and channels in memory, keeping the [`FindingStore`] and [`ChannelStore`]
/// contracts: for tests of the services.
#[derive(Default)]
pub struct MemoryFindings(
    Mutex<BTreeMap<String, Finding>>,
    Mutex<BTreeMap<String, Channel>>,
);

impl MemoryFindings {
    fn select(&self, keep: impl Fn(&Finding) -> bool) -> Vec<Finding> {
        let mut v: Vec<Finding> = self
            .0
            .lock()
            .expect("lock")
            .values()
            .filter(|f| keep(f))
            .cloned()
            .collect();
        sort_findings(&mut v);
        v
    }
}

#[async_trait::async_trait]
impl FindingStore for MemoryFindings {
    async fn finding(&self, key: &str) -> Result<Option<Finding>, StoreError> {
        Ok(self.0.lock().expect("lock").get(key).cloned())
    }

    async fn put_finding(&self, f: &Finding) -> Result<Finding, StoreError> {
        let mut map = self.0.lock().expect("lock");
        let what = format!("finding {:?}", f.key);
        match (map.get(&f.key), f.version) {
            (Some(_), 0) => return Err(StoreError::AlreadyExists { what }),
            (None, 0) => {}
            (None, _) => return Err(StoreError::NotFound { what }),
            (Some(old), v) if old.version != v => {
                return Err(StoreError::Conflict { what, expected: v });
            }
            (Some(_), _) => {}
        }
        let mut stored = f.clone();
        stored.version += 1;
        map.insert(f.key.clone(), stored.clone());
        Ok(stored)
    }

    async fn active_findings(&self) -> Result<Vec<Finding>, StoreError> {
        Ok(self.select(Finding::is_active))
    }

    async fn pending_findings(&self) -> Result<Vec<Finding>, StoreError> {
        Ok(self.select(|f| f.pending.is_some()))
    }

    async fn all_findings(&self) -> Result<Vec<Finding>, StoreError> {
        let now = time::OffsetDateTime::now_utc();
        Ok(self.select(|f| f.is_retained(now)))
    }
}

#[async_trait::async_trait]
impl ChannelStore for MemoryFindings {
    async fn channels(&self) -> Result<Vec<Channel>, StoreError> {
        Ok(self.1.lock().expect("lock").values().cloned().collect())
    }

    async fn add_channel(&self, c: &Channel) -> Result<(), StoreError> {
        let mut map = self.1.lock().expect("lock");
        if map.contains_key(&c.name) {
            return Err(StoreError::AlreadyExists {
                what: format!("channel {:?}", c.name),
            });
        }
        map.insert(c.name.clone(), c.clone());
        Ok(())
    }

    async fn remove_channel(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.1.lock().expect("lock").remove(name).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::MemoryFindings;

    async fn fresh() -> (MemoryFindings, ()) {
        (MemoryFindings::default(), ())
    }

    crate::finding_store_contract!(fresh);
    crate::channel_store_contract!(fresh);
}
