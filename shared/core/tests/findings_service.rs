//! The findings service over the in-memory store that passes the `FindingStore` contract:
//! each transition recorded once however many evaluations run at once, sent once to each
//! channel that wants it, retried until accepted, and never sent twice by two senders.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use certpilot_core::Tags;
use certpilot_core::model::finding::{Finding, FindingKind, Severity, Subject, Transition};
use certpilot_core::policy::findings::{Condition, FindingsPolicy};
use certpilot_core::ports::{Clock, FindingStore, Notification, Notifier, NotifyError};
use certpilot_core::services::findings::FindingsService;
use certpilot_testkit::clock::ManualClock;
use certpilot_testkit::findings_contract::MemoryFindings;
use time::macros::datetime;

fn expiring(target: &str, severity: Severity) -> Condition {
    Condition {
        kind: FindingKind::Expiring,
        subject: Subject::endpoint(target, Some("192.0.2.1:443")),
        severity,
        summary: format!("{target} serves a certificate that expires on 2026-12-20"),
        detail: "serial 01".into(),
        next_step: "renew it".into(),
        tags: Tags::from([("owner".to_owned(), "payments".to_owned())]),
        fact: "01@30".into(),
        expires_at: Some(time::macros::datetime!(2026-12-20 00:00 UTC)),
    }
}

/// A channel that records what it accepted, and can be told to refuse.
struct Channel {
    name: String,
    min: Severity,
    refuse: Mutex<bool>,
    got: Mutex<Vec<(String, Transition)>>,
}

impl Channel {
    fn new(name: &str, min: Severity) -> Arc<Channel> {
        Arc::new(Channel {
            name: name.into(),
            min,
            refuse: Mutex::new(false),
            got: Mutex::new(Vec::new()),
        })
    }

    fn got(&self) -> Vec<(String, Transition)> {
        self.got.lock().unwrap().clone()
    }
}

#[async_trait]
impl Notifier for Channel {
    fn name(&self) -> &str {
        &self.name
    }

    fn wants(&self, f: &Finding) -> bool {
        f.severity >= self.min
    }

    async fn notify(&self, n: Notification<'_>) -> Result<(), NotifyError> {
        if *self.refuse.lock().unwrap() {
            return Err(NotifyError::Unavailable("HTTP 503".into()));
        }
        self.got
            .lock()
            .unwrap()
            .push((n.finding.subject.id.clone(), n.transition));
        Ok(())
    }
}

/// The in-memory store, yielding after each read so that two evaluations both read before
/// either writes: the race two scan invocations run on one table.
#[derive(Default)]
struct Racing(MemoryFindings);

#[async_trait]
impl FindingStore for Racing {
    async fn finding(
        &self,
        key: &str,
    ) -> Result<Option<Finding>, certpilot_core::ports::StoreError> {
        self.0.finding(key).await
    }
    async fn put_finding(&self, f: &Finding) -> Result<Finding, certpilot_core::ports::StoreError> {
        self.0.put_finding(f).await
    }
    async fn active_findings(&self) -> Result<Vec<Finding>, certpilot_core::ports::StoreError> {
        let read = self.0.active_findings().await;
        tokio::task::yield_now().await;
        read
    }
    async fn pending_findings(&self) -> Result<Vec<Finding>, certpilot_core::ports::StoreError> {
        let read = self.0.pending_findings().await;
        tokio::task::yield_now().await;
        read
    }
    async fn all_findings(&self) -> Result<Vec<Finding>, certpilot_core::ports::StoreError> {
        self.0.all_findings().await
    }
}

fn service<S: FindingStore + 'static>(store: &Arc<S>, clock: &Arc<ManualClock>) -> FindingsService {
    FindingsService::new(store.clone(), clock.clone(), FindingsPolicy::default())
}

#[tokio::test]
async fn evaluations_at_once_record_one_finding_and_one_message() {
    let store = Arc::new(Racing::default());
    let clock = Arc::new(ManualClock::new(datetime!(2026-12-01 09:00 UTC)));
    let (a, b) = (service(&store, &clock), service(&store, &clock));
    let found = [expiring("shop.example:443", Severity::Warning)];
    let all = |_: &Finding| true;
    let (ra, rb) = tokio::join!(a.record(&found, &all), b.record(&found, &all));
    assert_eq!(
        ra.unwrap().len() + rb.unwrap().len(),
        1,
        "one evaluation wrote it"
    );
    let stored = store.all_findings().await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].pending, Some(Transition::Opened));

    let slack = Channel::new("slack", Severity::Info);
    let channels: Vec<Arc<dyn Notifier>> = vec![slack.clone()];
    let (na, nb) = tokio::join!(a.notify(&channels), b.notify(&channels));
    let (na, nb) = (na.unwrap(), nb.unwrap());
    assert_eq!(na.sent.len() + nb.sent.len(), 1, "{na:?} {nb:?}");
    assert_eq!(
        slack.got(),
        [("shop.example:443".to_owned(), Transition::Opened)]
    );
    // Nothing changes, nothing more is written or sent.
    assert!(a.record(&found, &all).await.unwrap().is_empty());
    assert!(a.notify(&channels).await.unwrap().sent.is_empty());
}

#[tokio::test]
async fn a_channel_that_fails_is_retried_alone_until_it_accepts() {
    let store = Arc::new(MemoryFindings::default());
    let clock = Arc::new(ManualClock::new(datetime!(2026-12-01 09:00 UTC)));
    let s = service(&store, &clock);
    let slack = Channel::new("slack", Severity::Warning);
    let hook = Channel::new("webhook", Severity::Warning);
    let pager = Channel::new("pager", Severity::Critical);
    let channels: Vec<Arc<dyn Notifier>> = vec![slack.clone(), hook.clone(), pager.clone()];
    s.record(&[expiring("shop.example:443", Severity::Warning)], &|_| {
        true
    })
    .await
    .unwrap();
    *hook.refuse.lock().unwrap() = true;
    let first = s.notify(&channels).await.unwrap();
    assert_eq!(first.sent.len(), 1);
    assert_eq!(first.failed.len(), 1);
    assert!(pager.got().is_empty(), "a warning does not page");
    let f = &store.pending_findings().await.unwrap()[0];
    assert_eq!(f.delivered_to, ["slack"]);
    assert!(
        f.sending_until.is_none(),
        "the claim is released for the next run"
    );

    *hook.refuse.lock().unwrap() = false;
    clock.advance(time::Duration::seconds(60));
    let second = s.notify(&channels).await.unwrap();
    assert_eq!(
        second.sent,
        [(f.key.clone(), Transition::Opened, "webhook".to_owned())]
    );
    assert_eq!(slack.got().len(), 1, "slack is not told twice");
    assert!(store.pending_findings().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_transition_claimed_by_a_sender_that_died_is_sent_once_the_claim_lapses() {
    let store = Arc::new(MemoryFindings::default());
    let clock = Arc::new(ManualClock::new(datetime!(2026-12-01 09:00 UTC)));
    let s = service(&store, &clock);
    s.record(&[expiring("shop.example:443", Severity::Critical)], &|_| {
        true
    })
    .await
    .unwrap();
    // Another sender claimed it and vanished.
    let mut claimed = store.pending_findings().await.unwrap().remove(0);
    claimed.sending_until = Some(clock.now() + time::Duration::minutes(5));
    store.put_finding(&claimed).await.unwrap();
    let slack = Channel::new("slack", Severity::Info);
    let channels: Vec<Arc<dyn Notifier>> = vec![slack.clone()];
    assert_eq!(s.notify(&channels).await.unwrap().busy, 1);
    assert!(slack.got().is_empty());
    clock.advance(time::Duration::seconds(6 * 60));
    assert_eq!(s.notify(&channels).await.unwrap().sent.len(), 1);
}

#[tokio::test]
async fn acknowledging_mutes_and_is_told_once() {
    let store = Arc::new(MemoryFindings::default());
    let clock = Arc::new(ManualClock::new(datetime!(2026-12-01 09:00 UTC)));
    let s = service(&store, &clock);
    let found = [expiring("shop.example:443", Severity::Critical)];
    s.record(&found, &|_| true).await.unwrap();
    let slack = Channel::new("slack", Severity::Info);
    let channels: Vec<Arc<dyn Notifier>> = vec![slack.clone()];
    s.notify(&channels).await.unwrap();
    let key = store.all_findings().await.unwrap()[0].key.clone();
    s.acknowledge(&key, datetime!(2026-12-05 00:00 UTC), "migrating the host")
        .await
        .unwrap();
    s.notify(&channels).await.unwrap();
    // A day later the critical finding would be reminded; acknowledged, it is not.
    clock.advance(time::Duration::seconds(86_400 + 60));
    s.record(&found, &|_| true).await.unwrap();
    s.notify(&channels).await.unwrap();
    let got: Vec<Transition> = slack.got().into_iter().map(|(_, t)| t).collect();
    assert_eq!(got, [Transition::Opened, Transition::Acknowledged]);
    assert!(
        s.acknowledge("expiring.nope", datetime!(2026-12-05 00:00 UTC), "x")
            .await
            .is_err()
    );
}
