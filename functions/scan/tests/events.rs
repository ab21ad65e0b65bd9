//! The sample events in infra/events/ (also used with `cargo lambda invoke`) decode into the
//! types the handler reads, and survive a round trip.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use aws_lambda_events::event::sqs::SqsEvent;
use certpilot_core::ports::ScanBatch;

fn fixture(name: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../infra/events/");
    std::fs::read_to_string(format!("{path}{name}")).unwrap()
}

#[test]
fn the_sqs_sample_carries_a_scan_batch() {
    let event: SqsEvent = serde_json::from_str(&fixture("sqs-batch.json")).unwrap();
    assert_eq!(event.records.len(), 1);
    let body = event.records[0].body.as_deref().unwrap();
    let batch: ScanBatch = serde_json::from_str(body).unwrap();
    let targets: Vec<String> = batch
        .endpoints
        .iter()
        .map(|e| e.target.to_string())
        .collect();
    assert_eq!(
        targets,
        vec!["example.com:443", "smtp://mx.example.com:587"]
    );
    assert_eq!(batch.endpoints[0].tags["owner"], "web");
    let again: SqsEvent = serde_json::from_value(serde_json::to_value(&event).unwrap()).unwrap();
    assert_eq!(again, event);
}

#[test]
fn the_scheduled_sample_is_not_mistaken_for_sqs() {
    let event: serde_json::Value = serde_json::from_str(&fixture("scheduled.json")).unwrap();
    assert!(event.get("Records").is_none());
    assert_eq!(event["detail-type"], "Scheduled Event");
}
