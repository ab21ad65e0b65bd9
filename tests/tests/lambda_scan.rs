//! The real scan function under `cargo lambda watch`, invoked with the sample scheduled event,
//! against moto server (DynamoDB) and TLS servers on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use certpilot_core::ports::InventoryQuery;
use certpilot_core::ports::{EndpointStore as _, ObservationStore as _, ScheduleStore as _};
use certpilot_core::services::endpoints::register;
use certpilot_core::{Tags, Target};
use certpilot_dynamodb::DynamoStore;
use certpilot_testkit::certs::Ca;
use certpilot_testkit::procs::{shared_moto, workspace_root};
use certpilot_testkit::servers;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scan_function_records_observations_in_dynamodb() {
    let moto = shared_moto();
    let config = certpilot_e2e::moto_dynamodb_config(&moto.endpoint_url).build();
    let table = format!("lambda-{}", std::process::id());
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(config), &table);
    store.create_table().await.unwrap();

    let ca = Ca::new("Lambda Root");
    let leaf = ca.leaf(&["127.0.0.1"]).expiring_in_days(12).build();
    let server = servers::tls_default(&leaf).await;
    let closed = servers::closed_port().await;
    for t in [server.target(), closed.to_string()] {
        let target: Target = t.parse().unwrap();
        register(
            &store,
            &target,
            &Tags::from([("owner".into(), "payments".into())]),
            time::OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
    }

    let watch = certpilot_e2e::LambdaWatch::start(
        &moto.endpoint_url,
        &[
            ("CERTPILOT_TABLE", table.clone()),
            ("CERTPILOT_TARGET_TIMEOUT", "5s".into()),
        ],
    );
    let tick: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join("infra/events/scheduled.json")).unwrap(),
    )
    .unwrap();
    let summary = watch.invoke("scan", &tick).await;
    assert_eq!(summary["due"], 2, "{summary}");
    assert_eq!(summary["scanned"], 2, "{summary}");
    assert_eq!(summary["failed"], 1, "{summary}");

    let inventory = store.inventory(&InventoryQuery::default()).await.unwrap();
    assert_eq!(inventory.len(), 2);
    let served = inventory
        .iter()
        .find(|e| e.observation.target == server.target())
        .unwrap();
    assert_eq!(
        served.observation.fingerprint(),
        Some(leaf.fingerprint().as_str())
    );
    assert_eq!(
        served.tags.get("owner").map(String::as_str),
        Some("payments")
    );
    let refused = inventory
        .iter()
        .find(|e| e.observation.target == closed.to_string())
        .unwrap();
    assert_eq!(
        refused.observation.error.as_ref().unwrap().kind,
        certpilot_core::ErrorKind::Refused
    );
    // Both endpoints went back to their slots (nothing explicit left due), and the run moved
    // the tick marker, so the next run sweeps on from here.
    let tick = store.last_tick().await.unwrap();
    assert!(tick.is_some(), "the run advanced the schedule");
    for e in store.endpoints().await.unwrap() {
        assert_eq!(e.due_at, None, "{}", e.key());
    }
}
