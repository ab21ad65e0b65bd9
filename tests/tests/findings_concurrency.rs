//! Exactly one notification per transition when two evaluations and two senders run at once
//! on one store: two SQLite connections to one file (two CLI processes), and two DynamoDB
//! clients on one table on moto (two scan invocations, or the CLI beside a function).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use certpilot_core::Tags;
use certpilot_core::model::finding::{Finding, FindingKind, Severity, Subject, Transition};
use certpilot_core::policy::findings::{Condition, FindingsPolicy};
use certpilot_core::ports::{FindingStore, Notification, Notifier, NotifyError, SystemClock};
use certpilot_core::services::findings::FindingsService;
use certpilot_testkit::procs::shared_moto;

/// A channel counting what it accepted, slow enough that two senders overlap.
#[derive(Default)]
struct Counting(Mutex<Vec<(String, Transition)>>);

#[async_trait]
impl Notifier for Counting {
    fn name(&self) -> &str {
        "counting"
    }
    fn wants(&self, _: &Finding) -> bool {
        true
    }
    async fn notify(&self, n: Notification<'_>) -> Result<(), NotifyError> {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        self.0
            .lock()
            .unwrap()
            .push((n.finding.key.clone(), n.transition));
        Ok(())
    }
}

fn conditions(n: usize) -> Vec<Condition> {
    (0..n)
        .map(|i| Condition {
            kind: FindingKind::Expiring,
            subject: Subject::endpoint(&format!("host-{i}.example:443"), Some("192.0.2.1:443")),
            severity: Severity::Warning,
            summary: format!(
                "host-{i}.example:443 serves a certificate that expires on 2026-12-20"
            ),
            detail: "serial 01".into(),
            next_step: "renew it".into(),
            tags: Tags::new(),
            fact: "01@30".into(),
            expires_at: Some(time::macros::datetime!(2026-12-20 00:00 UTC)),
        })
        .collect()
}

async fn once_each(a: Arc<dyn FindingStore>, b: Arc<dyn FindingStore>) {
    let service = |s: Arc<dyn FindingStore>| {
        Arc::new(FindingsService::new(
            s,
            Arc::new(SystemClock),
            FindingsPolicy::default(),
        ))
    };
    let (sa, sb) = (service(a.clone()), service(b));
    let found = Arc::new(conditions(20));
    let run = |s: Arc<FindingsService>, found: Arc<Vec<Condition>>| {
        tokio::spawn(async move { s.record(&found, &|_| true).await.unwrap().len() })
    };
    let (wa, wb) = (
        run(sa.clone(), found.clone()),
        run(sb.clone(), found.clone()),
    );
    let written = wa.await.unwrap() + wb.await.unwrap();
    assert_eq!(written, 20, "each finding written by one evaluation");
    let stored = a.all_findings().await.unwrap();
    assert_eq!(stored.len(), 20);
    assert!(stored.iter().all(|f| f.pending == Some(Transition::Opened)));

    let channel = Arc::new(Counting::default());
    let send = |s: Arc<FindingsService>, c: Arc<Counting>| {
        tokio::spawn(async move {
            let channels: Vec<Arc<dyn Notifier>> = vec![c];
            s.notify(&channels).await.unwrap()
        })
    };
    let (na, nb) = (send(sa, channel.clone()), send(sb, channel.clone()));
    let (na, nb) = (na.await.unwrap(), nb.await.unwrap());
    let sent = channel.0.lock().unwrap().clone();
    assert_eq!(sent.len(), 20, "{na:?} {nb:?}");
    let keys: std::collections::BTreeSet<&String> = sent.iter().map(|(k, _)| k).collect();
    assert_eq!(keys.len(), 20, "no transition sent twice");
    assert!(a.pending_findings().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sqlite_connections_record_and_send_each_transition_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("certpilot.db");
    let a = Arc::new(certpilot_sqlite::SqliteStore::open(&path).unwrap());
    let b = Arc::new(certpilot_sqlite::SqliteStore::open(&path).unwrap());
    once_each(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_dynamodb_clients_record_and_send_each_transition_once() {
    let moto = shared_moto();
    let table = format!("findings-race-{}", std::process::id());
    let aws = certpilot_e2e::moto_sdk_config(&moto.endpoint_url);
    let a = Arc::new(certpilot_dynamodb::DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&aws),
        &table,
    ));
    a.create_table().await.unwrap();
    let b = Arc::new(certpilot_dynamodb::DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&aws),
        &table,
    ));
    once_each(a, b).await;
}
