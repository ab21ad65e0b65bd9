//! The Store, CertificateStore and FindingStore contract suites against a real DynamoDB API: moto server, one table per test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use certpilot_dynamodb::DynamoStore;
use certpilot_testkit::procs::shared_moto;

static TABLES: AtomicUsize = AtomicUsize::new(0);

/// A client for the shared moto server (credentials are moto's dummies).
fn client() -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(&shared_moto().endpoint_url)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .timeout_config(certpilot_aws::config::default_timeouts())
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

async fn fresh() -> (DynamoStore, ()) {
    let name = format!(
        "contract-{}-{}",
        std::process::id(),
        TABLES.fetch_add(1, Ordering::SeqCst)
    );
    let store = DynamoStore::new(client(), name);
    store.create_table().await.expect("create table");
    (store, ())
}

certpilot_testkit::store_contract!(fresh);
certpilot_testkit::certificate_store_contract!(fresh);
certpilot_testkit::finding_store_contract!(fresh);
certpilot_testkit::channel_store_contract!(fresh);
certpilot_testkit::request_store_contract!(fresh);
