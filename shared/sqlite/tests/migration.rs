//! Records stored by the first versions load, and are written back in today's shape.

use certpilot_core::ports::CertificateStore;
use certpilot_sqlite::SqliteStore;
use certpilot_testkit::renewal_contract::first_version_record;

#[tokio::test]
async fn a_first_version_certificate_loads_deploys_settings_and_handle_and_is_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("certpilot.db");
    let store = SqliteStore::open(&path).unwrap();
    // Written raw, as the first versions wrote it.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO certificates (id, record, version, next_check_at) VALUES (?1, ?2, 1, 0)",
        rusqlite::params!["shop", first_version_record("shop")],
    )
    .unwrap();

    let cert = store.certificate("shop").await.unwrap().expect("loads");
    let d = &cert.spec.deployments[0];
    assert_eq!(d.kind, "elbv2-listener");
    assert!(
        d.text("listener-arn")
            .unwrap()
            .ends_with("f2f7dc8efc522ab2")
    );
    assert_eq!(
        d.text("role-arn"),
        Some("arn:aws:iam::123456789012:role/deployer")
    );
    assert_eq!(d.verify_deadline, Some(180));
    certpilot_app::deploy_kinds()
        .check_spec(&cert.spec)
        .expect("still a valid deployment");
    let record = cert.deployment_record("alb").unwrap();
    assert_eq!(
        record.state.handle.as_deref(),
        Some("arn:aws:acm:eu-west-1:123456789012:certificate/0b6d3b2c")
    );
    assert!(cert.is_deployed() || cert.current.is_none());

    // The next write stores today's shape.
    store.update_certificate(&cert).await.unwrap();
    let raw: String = conn
        .query_row(
            "SELECT record FROM certificates WHERE id = 'shop'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        raw.contains("\"settings\":{") && raw.contains("\"listener-arn\""),
        "{raw}"
    );
    assert!(
        !raw.contains("verify_deadline_secs") && !raw.contains("\"certificate_arn\""),
        "{raw}"
    );
    assert_eq!(
        store.certificate("shop").await.unwrap().unwrap().spec,
        cert.spec
    );
}
