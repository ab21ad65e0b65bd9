//! A certificate stored in DynamoDB or SQLite by the first versions (flat deployment settings,
//! `certificate_arn` in the record) loads, deploys its renewal over the ACM certificate the
//! first version imported (the handle carried over), is proven by handshake, and is written
//! back in today's shape.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use certpilot_core::model::deploy::DeploymentStatus;
use certpilot_core::ports::{CertificateStore, Clock, SecretStore, SecretValue, SystemClock};
use certpilot_core::services::deploy::{DeployService, DeploySettings};
use certpilot_dynamodb::DynamoStore;
use certpilot_e2e::estate::Estate;
use certpilot_files::FileSecretStore;
use certpilot_sqlite::SqliteStore;
use certpilot_testkit::certs::{Ca, KeyKind};
use certpilot_testkit::procs::shared_moto;
use certpilot_testkit::renewal_contract::{as_first_version, managed};

const NAME: &str = "legacy.example.test";

/// How a test writes and reads a certificate's raw record in one store.
#[async_trait::async_trait]
trait Raw: Send + Sync {
    async fn write(&self, record: &str);
    async fn read(&self) -> String;
}

struct Dynamo {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

#[async_trait::async_trait]
impl Raw for Dynamo {
    async fn write(&self, record: &str) {
        let s = |v: &str| AttributeValue::S(v.into());
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s("CERT#shop"))
            .item("sk", s("#CERT"))
            .item("record", s(record))
            .item("version", AttributeValue::N("1".into()))
            .item("gsi1pk", s("RENEW"))
            .item("gsi1sk", s(&format!("{:020}#shop", 0)))
            .send()
            .await
            .unwrap();
    }

    async fn read(&self) -> String {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S("CERT#shop".into()))
            .key("sk", AttributeValue::S("#CERT".into()))
            .send()
            .await
            .unwrap()
            .item
            .unwrap();
        item["record"].as_s().unwrap().clone()
    }
}

struct Sqlite(std::path::PathBuf);

#[async_trait::async_trait]
impl Raw for Sqlite {
    async fn write(&self, record: &str) {
        rusqlite::Connection::open(&self.0)
            .unwrap()
            .execute(
                "INSERT INTO certificates (id, record, version, next_check_at) VALUES ('shop', ?1, 1, 0)",
                rusqlite::params![record],
            )
            .unwrap();
    }

    async fn read(&self) -> String {
        rusqlite::Connection::open(&self.0)
            .unwrap()
            .query_row(
                "SELECT record FROM certificates WHERE id = 'shop'",
                [],
                |r| r.get(0),
            )
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_version_dynamodb_record_loads_deploys_over_its_old_handle_and_is_rewritten() {
    let estate = Estate::new(&shared_moto().endpoint_url);
    let table = format!("migration-{}", std::process::id());
    let client = aws_sdk_dynamodb::Client::new(&estate.aws);
    let store = Arc::new(DynamoStore::new(client.clone(), &table));
    store.create_table().await.unwrap();
    migrated_and_deployed(&estate, store, &Dynamo { client, table }, "dynamo").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_version_sqlite_record_loads_deploys_over_its_old_handle_and_is_rewritten() {
    let estate = Estate::new(&shared_moto().endpoint_url);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("certpilot.db");
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    migrated_and_deployed(&estate, store, &Sqlite(path), "sqlite").await;
}

async fn migrated_and_deployed(
    estate: &Estate,
    store: Arc<dyn CertificateStore>,
    raw_store: &dyn Raw,
    run: &str,
) {
    let run = format!("{run}-{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let secrets = Arc::new(FileSecretStore::new(dir.path().join("secrets")));

    // What the first version left: its import on the listener, served by the data plane.
    let ca = Ca::new("Migration CA");
    let leaf = || {
        let l = ca.leaf(&[NAME]).key(KeyKind::EcdsaP256).build();
        estate.keyring.remember(&l);
        l
    };
    let (first, second) = (leaf(), leaf());
    let first_arn = estate.import(&first).await;
    let listener = estate.listener(&format!("legacy-{run}"), &first_arn).await;
    let plane = estate.follow_listener(&listener, false).await;

    // Renewed since (the second certificate is current), written raw in the old shape.
    let mut key_versions = Vec::new();
    for l in [&first, &second] {
        key_versions.push(
            secrets
                .put_current(
                    "certificate-key/shop",
                    &SecretValue::new(l.key_pem().into_bytes()),
                )
                .await
                .unwrap(),
        );
    }
    let mut cert = managed(NAME, time::Duration::ZERO);
    cert.id = "shop".into();
    cert.version = 1;
    cert.spec.endpoints = vec![plane.endpoint().parse().unwrap()];
    cert.previous = Some(certpilot_e2e::issued(&first, &key_versions[0]));
    cert.current = Some(certpilot_e2e::issued(&second, &key_versions[1]));
    let raw = as_first_version(&cert, &listener, None, &first_arn, &first.fingerprint());
    raw_store.write(&raw).await;

    let loaded = store.certificate("shop").await.unwrap().expect("loads");
    let d = &loaded.spec.deployments[0];
    assert_eq!(d.kind, "elbv2-listener");
    assert_eq!(d.text("listener-arn"), Some(listener.as_str()));
    assert_eq!(d.verify_deadline, Some(180));
    assert_eq!(
        loaded
            .deployment_record("alb")
            .unwrap()
            .state
            .handle
            .as_deref(),
        Some(first_arn.as_str())
    );

    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let service = DeployService::new(
        store.clone(),
        secrets.clone(),
        certpilot_app::App::registry_with(estate.aws.clone()),
        certpilot_e2e::verifier_trusting(&ca, dir.path()),
        clock,
        DeploySettings {
            interval: Duration::from_millis(200),
            max_deadline: Some(Duration::from_secs(10)),
            on_host: false,
        },
    );
    let report = service.deploy("shop", None, false).await.unwrap();
    assert!(report.is_verified(), "{report:#?}");

    // The renewal went over the first version's import: same ARN, so nothing was rebound.
    let after = store.certificate("shop").await.unwrap().unwrap();
    let record = after.deployment_record("alb").unwrap();
    assert_eq!(record.state.status, DeploymentStatus::Verified);
    assert_eq!(record.state.handle.as_deref(), Some(first_arn.as_str()));
    assert_eq!(
        estate.acm_fingerprint(&first_arn).await,
        second.fingerprint()
    );
    let stored = raw_store.read().await;
    assert!(stored.contains("\"listener-arn\""), "{stored}");
    assert!(
        !stored.contains("\"certificate_arn\"") && !stored.contains("verify_deadline_secs"),
        "{stored}"
    );
}
