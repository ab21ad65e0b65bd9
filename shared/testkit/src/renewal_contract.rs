//! The contracts of the renewal ports: [`CertificateStore`] (run it with
//! [`certificate_store_contract!`](crate::certificate_store_contract)) and [`SecretStore`]
//! (with [`secret_store_contract!`](crate::secret_store_contract)). Each macro takes an async
//! function returning a fresh, empty store and a guard that keeps its resources alive.

use std::sync::Arc;

use certpilot_core::Tags;
use certpilot_core::model::certificate::{
    AcmeIssuer, CertificateSpec, ChallengeConfig, KeyType, ManagedCertificate, RenewalPolicy,
};
use certpilot_core::ports::{
    CertificateStore, SecretError, SecretStore, SecretValue, SecretVersion, StoreError,
};
use time::{Duration, OffsetDateTime};

/// Generates one `#[tokio::test]` per [`CertificateStore`] contract case.
#[macro_export]
macro_rules! certificate_store_contract {
    ($fresh:path) => {
        $crate::certificate_store_contract!(@cases $fresh;
            certificates_are_added_once_read_back_and_removed,
            certificate_updates_need_the_stored_version,
            concurrent_certificate_updates_let_exactly_one_win,
            due_certificates_are_those_checked_before_the_time_earliest_first,
            issuances_are_counted_per_name_set_and_outlive_the_record,
        );
    };
    (@cases $fresh:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _guard) = $fresh().await;
                $crate::renewal_contract::$case(std::sync::Arc::new(store)).await;
            }
        )*
    };
}

/// Generates one `#[tokio::test]` per [`SecretStore`] contract case.
#[macro_export]
macro_rules! secret_store_contract {
    ($fresh:path) => {
        $crate::secret_store_contract!(@cases $fresh;
            a_pending_version_becomes_current_only_when_promoted,
            missing_secrets_and_stages_read_as_none,
            promoting_an_unknown_version_is_not_found,
            text_and_binary_values_round_trip,
            deleting_removes_every_version_and_the_name_can_be_used_again,
        );
    };
    (@cases $fresh:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _guard) = $fresh().await;
                $crate::renewal_contract::$case(std::sync::Arc::new(store)).await;
            }
        )*
    };
}

fn t0() -> OffsetDateTime {
    OffsetDateTime::UNIX_EPOCH + Duration::days(20_000)
}

/// A managed certificate for `name`, first checked at `t0() + check_in`.
pub fn managed(name: &str, check_in: Duration) -> ManagedCertificate {
    let spec = CertificateSpec {
        names: vec![name.parse().expect("valid name")],
        key_type: KeyType::EcdsaP256,
        issuer: AcmeIssuer {
            directory: "https://acme.test/directory".into(),
            contact: vec![],
            eab: None,
            profile: None,
            account_secret: None,
        },
        challenge: ChallengeConfig::Http01Listen {
            listen: "127.0.0.1:80".into(),
        },
        renewal: RenewalPolicy::Auto,
        tags: Tags::new(),
        endpoints: vec![],
        deployments: Vec::new(),
        acm: None,
    };
    let mut c = ManagedCertificate::new(spec.default_id(), spec, t0());
    c.renewal.next_check_at = t0() + check_in;
    c
}

pub async fn certificates_are_added_once_read_back_and_removed<S: CertificateStore>(s: Arc<S>) {
    assert!(s.certificate("shop.example").await.unwrap().is_none());
    let stored = s
        .add_certificate(&managed("shop.example", Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(stored.version, 1);
    assert_eq!(s.certificate("shop.example").await.unwrap(), Some(stored));
    let again = s
        .add_certificate(&managed("shop.example", Duration::ZERO))
        .await;
    assert!(matches!(again, Err(StoreError::AlreadyExists { .. })));
    s.add_certificate(&managed("api.example", Duration::ZERO))
        .await
        .unwrap();
    let ids: Vec<String> = s
        .certificates()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, ["api.example", "shop.example"], "sorted by id");
    s.remove_certificate("shop.example").await.unwrap();
    assert!(s.certificate("shop.example").await.unwrap().is_none());
    assert!(matches!(
        s.remove_certificate("shop.example").await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(s.certificates_due(t0()).await.unwrap().len(), 1);
}

pub async fn certificate_updates_need_the_stored_version<S: CertificateStore>(s: Arc<S>) {
    let v1 = s
        .add_certificate(&managed("shop.example", Duration::ZERO))
        .await
        .unwrap();
    let mut edit = v1.clone();
    edit.renewal.failures = 3;
    let v2 = s.update_certificate(&edit).await.unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(
        s.certificate("shop.example")
            .await
            .unwrap()
            .unwrap()
            .renewal
            .failures,
        3
    );
    // A writer still holding version 1 loses, and writes nothing.
    let mut stale = v1;
    stale.renewal.failures = 9;
    assert!(matches!(
        s.update_certificate(&stale).await,
        Err(StoreError::Conflict { expected: 1, .. })
    ));
    assert_eq!(s.certificate("shop.example").await.unwrap(), Some(v2));
    let ghost = managed("ghost.example", Duration::ZERO);
    assert!(matches!(
        s.update_certificate(&ManagedCertificate {
            version: 1,
            ..ghost
        })
        .await,
        Err(StoreError::NotFound { .. })
    ));
}

pub async fn concurrent_certificate_updates_let_exactly_one_win<S: CertificateStore + 'static>(
    s: Arc<S>,
) {
    let v1 = s
        .add_certificate(&managed("shop.example", Duration::ZERO))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let s = s.clone();
            let mut edit = v1.clone();
            edit.renewal.failures = i;
            tokio::spawn(async move { s.update_certificate(&edit).await })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => won += 1,
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(won, 1, "exactly one lease-taker wins");
    assert_eq!(
        s.certificate("shop.example")
            .await
            .unwrap()
            .unwrap()
            .version,
        2
    );
}

pub async fn issuances_are_counted_per_name_set_and_outlive_the_record<S: CertificateStore>(
    s: Arc<S>,
) {
    let shop = vec!["shop.example".to_owned(), "www.shop.example".to_owned()];
    let other = vec!["shop.example".to_owned()];
    let long: Vec<String> = (0..40)
        .map(|i| format!("name-{i:02}.a-rather-long-zone.example"))
        .collect();
    let at = |h: i64| t0() + Duration::hours(h);
    assert!(s.issuances(&shop, at(-1000)).await.unwrap().is_empty());
    s.record_issuance(&shop, "shop", at(1)).await.unwrap();
    // The same name set under another id counts too: the CA counts names, not records.
    s.record_issuance(&shop, "shop-again", at(2)).await.unwrap();
    // Recording the same issuance twice (a retried step) keeps one.
    s.record_issuance(&shop, "shop-again", at(2)).await.unwrap();
    s.record_issuance(&other, "shop-only", at(3)).await.unwrap();
    s.record_issuance(&long, "long", at(4)).await.unwrap();
    s.add_certificate(&managed("shop.example", Duration::ZERO))
        .await
        .unwrap();
    s.remove_certificate("shop.example").await.unwrap();
    assert_eq!(s.issuances(&shop, at(0)).await.unwrap(), vec![at(1), at(2)]);
    assert_eq!(
        s.issuances(&shop, at(1)).await.unwrap(),
        vec![at(2)],
        "after `since` only"
    );
    assert_eq!(s.issuances(&other, at(0)).await.unwrap(), vec![at(3)]);
    assert_eq!(s.issuances(&long, at(0)).await.unwrap(), vec![at(4)]);
}

pub async fn due_certificates_are_those_checked_before_the_time_earliest_first<
    S: CertificateStore,
>(
    s: Arc<S>,
) {
    s.add_certificate(&managed("later.example", Duration::hours(2)))
        .await
        .unwrap();
    s.add_certificate(&managed("now.example", Duration::ZERO))
        .await
        .unwrap();
    s.add_certificate(&managed("soon.example", Duration::hours(1)))
        .await
        .unwrap();
    let due = |at| {
        let s = s.clone();
        async move {
            s.certificates_due(at)
                .await
                .unwrap()
                .into_iter()
                .map(|c| c.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(due(t0() - Duration::SECOND).await, Vec::<String>::new());
    assert_eq!(due(t0()).await, ["now.example"], "due exactly at the time");
    assert_eq!(
        due(t0() + Duration::hours(1)).await,
        ["now.example", "soon.example"]
    );
    // Moving the next check moves the certificate out of the due set.
    let mut now = s.certificate("now.example").await.unwrap().unwrap();
    now.renewal.next_check_at = t0() + Duration::hours(3);
    s.update_certificate(&now).await.unwrap();
    assert_eq!(
        due(t0() + Duration::hours(2)).await,
        ["soon.example", "later.example"]
    );
}

fn value(text: &str) -> SecretValue {
    SecretValue::new(text.as_bytes().to_vec())
}

async fn read(s: &dyn SecretStore, name: &str, version: SecretVersion) -> Option<(String, String)> {
    s.get(name, &version)
        .await
        .unwrap()
        .map(|(v, value)| (v, String::from_utf8(value.expose().to_vec()).expect("text")))
}

pub async fn a_pending_version_becomes_current_only_when_promoted<S: SecretStore>(s: Arc<S>) {
    let name = "certificate-key/shop";
    let first = s.put_current(name, &value("key one")).await.unwrap();
    let pending = s.put_pending(name, &value("key two")).await.unwrap();
    assert_ne!(first, pending);
    assert_eq!(
        read(s.as_ref(), name, SecretVersion::Current).await,
        Some((first.clone(), "key one".into())),
        "a pending version is not current"
    );
    assert_eq!(
        read(s.as_ref(), name, SecretVersion::Id(pending.clone())).await,
        Some((pending.clone(), "key two".into())),
        "but it is readable by its id"
    );
    s.promote(name, &pending).await.unwrap();
    assert_eq!(
        read(s.as_ref(), name, SecretVersion::Current).await,
        Some((pending.clone(), "key two".into()))
    );
    assert_eq!(
        read(s.as_ref(), name, SecretVersion::Previous).await,
        Some((first.clone(), "key one".into())),
        "the former current version is kept for rollback"
    );
    // Promoting again (a renewal resumed after a crash) changes nothing.
    s.promote(name, &pending).await.unwrap();
    assert_eq!(
        read(s.as_ref(), name, SecretVersion::Previous).await,
        Some((first, "key one".into()))
    );
}

pub async fn missing_secrets_and_stages_read_as_none<S: SecretStore>(s: Arc<S>) {
    assert!(
        read(s.as_ref(), "nothing/here", SecretVersion::Current)
            .await
            .is_none()
    );
    s.put_current("acme-account/abc", &value("{}"))
        .await
        .unwrap();
    assert!(
        read(s.as_ref(), "acme-account/abc", SecretVersion::Previous)
            .await
            .is_none(),
        "a secret with one version has no previous"
    );
}

pub async fn promoting_an_unknown_version_is_not_found<S: SecretStore>(s: Arc<S>) {
    s.put_current("certificate-key/shop", &value("key"))
        .await
        .unwrap();
    let unknown = "0123456789abcdef0123456789abcdef";
    assert!(matches!(
        s.promote("certificate-key/shop", unknown).await,
        Err(SecretError::NotFound(_))
    ));
}

pub async fn text_and_binary_values_round_trip<S: SecretStore>(s: Arc<S>) {
    let binary = SecretValue::new(vec![0, 159, 146, 150, 255]);
    let v = s.put_current("tsig/binary", &binary).await.unwrap();
    let (got_v, got) = s
        .get("tsig/binary", &SecretVersion::Current)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((got_v, got), (v, binary));
    let pem = "-----BEGIN PRIVATE KEY-----\nMIG…\n-----END PRIVATE KEY-----\n";
    s.put_current("certificate-key/pem", &value(pem))
        .await
        .unwrap();
    assert_eq!(
        read(s.as_ref(), "certificate-key/pem", SecretVersion::Current)
            .await
            .map(|(_, t)| t),
        Some(pem.to_owned())
    );
}

pub async fn deleting_removes_every_version_and_the_name_can_be_used_again<S: SecretStore>(
    s: Arc<S>,
) {
    let name = "certpilot/channels/payments";
    let v1 = s.put_current(name, &value("one")).await.unwrap();
    s.put_current(name, &value("two")).await.unwrap();
    assert!(s.delete(name).await.unwrap());
    assert!(
        s.get(name, &SecretVersion::Current)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.get(name, &SecretVersion::Previous)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.get(name, &SecretVersion::Id(v1)).await.unwrap().is_none(),
        "no old version lingers"
    );
    // Deleting again is no error (Secrets Manager deletes asynchronously and may not say
    // whether it was still there).
    s.delete(name).await.unwrap();
    s.put_current(name, &value("three")).await.unwrap();
    assert_eq!(
        read(s.as_ref(), name, SecretVersion::Current)
            .await
            .map(|(_, t)| t),
        Some("three".to_owned())
    );
}

/// A managed certificate as the first versions stored it (before deploy kinds were
/// descriptors): an `elbv2-listener` deployment with its settings flat beside its name, the
/// deadline in `verify_deadline_secs`, and its record's ACM ARN in `certificate_arn`. For the
/// stores' migration tests, which write it raw.
pub fn first_version_record(id: &str) -> String {
    let mut cert = managed("shop.example", Duration::ZERO);
    cert.id = id.to_owned();
    cert.version = 1;
    cert.spec.endpoints = vec!["shop.example:443".parse().expect("target")];
    as_first_version(
        &cert,
        "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/shop/50dc6c495c0c9188/f2f7dc8efc522ab2",
        Some("arn:aws:iam::123456789012:role/deployer"),
        "arn:aws:acm:eu-west-1:123456789012:certificate/0b6d3b2c",
        "ab",
    )
}

/// `cert` as the first versions stored it, with one ELBv2 deployment `alb` on `listener`
/// (assuming `role`, 180 s to verify) whose record says ACM certificate `handle` was
/// verified holding `holding`: flat settings in snake case, `verify_deadline_secs`, and
/// `certificate_arn` in the record.
pub fn as_first_version(
    cert: &ManagedCertificate,
    listener: &str,
    role: Option<&str>,
    handle: &str,
    holding: &str,
) -> String {
    let mut json = serde_json::to_value(cert).expect("json");
    let mut deployment = serde_json::json!({
        "name": "alb",
        "kind": "elbv2-listener",
        "listener_arn": listener,
        "sni": false,
        "verify_deadline_secs": 180
    });
    if let Some(role) = role {
        deployment["role_arn"] = role.into();
    }
    json["spec"]["deployments"] = serde_json::json!([deployment]);
    json["deployments"] = serde_json::json!([{
        "name": "alb",
        "fingerprint": holding,
        "status": "verified",
        "at": "2026-11-30T10:00:00Z",
        "holding": holding,
        "certificate_arn": handle,
        "key_type": "ecdsa-p256"
    }]);
    json.to_string()
}
