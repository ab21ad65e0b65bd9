//! Issuing and renewing through a real ACME CA: Pebble (rejecting 30% of nonces), with
//! pebble-challtestsrv resolving every name to loopback and certpilot's HTTP-01 responder
//! answering the challenges. State in SQLite, keys in 0600 files.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use certpilot_acme::{AcmeIssuer, AcmeSettings};
use certpilot_core::Tags;
use certpilot_core::model::certificate::{
    AcmeIssuer as IssuerConfig, CertificateSpec, ChallengeConfig, KeyType, ManagedCertificate,
    RenewalPolicy,
};
use certpilot_core::ports::{
    CertificateStore, Clock, IssueError, SecretStore, SecretVersion, StoreError, SystemClock,
};
use certpilot_core::services::renew::{RenewError, RenewOutcome, RenewService, RenewSettings};
use certpilot_files::FileSecretStore;
use certpilot_sqlite::SqliteStore;
use certpilot_testkit::clock::ManualClock;
use certpilot_testkit::procs::{ChallTestSrv, Pebble, PebbleOptions, free_port};

struct Ca {
    _dns: ChallTestSrv,
    pebble: Pebble,
    http_port: u16,
    dir: tempfile::TempDir,
}

impl Ca {
    fn start() -> Ca {
        Self::start_with(PebbleOptions::default())
    }

    /// Pebble with `options` (EAB keys, validity), on fresh ports, resolving through
    /// pebble-challtestsrv and rejecting 30% of nonces.
    fn start_with(options: PebbleOptions) -> Ca {
        let dns = ChallTestSrv::start();
        let http_port = free_port();
        let pebble = Pebble::start_with(&PebbleOptions {
            http_port,
            tls_port: free_port(),
            dns_server: Some(dns.dns),
            nonce_reject: 30,
            ..options
        });
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pebble-ca.pem"), &pebble.tls_ca_pem).unwrap();
        Ca {
            _dns: dns,
            pebble,
            http_port,
            dir,
        }
    }

    fn spec(&self, names: &[&str]) -> CertificateSpec {
        CertificateSpec {
            names: names.iter().map(|n| n.parse().unwrap()).collect(),
            key_type: KeyType::EcdsaP256,
            issuer: IssuerConfig {
                directory: self.pebble.directory_url.clone(),
                contact: vec!["mailto:ops@certpilot.test".into()],
                eab: None,
                profile: None,
                account_secret: None,
            },
            challenge: ChallengeConfig::Http01Listen {
                listen: format!("127.0.0.1:{}", self.http_port),
            },
            renewal: RenewalPolicy::Auto,
            tags: Tags::new(),
            endpoints: Vec::new(),
            deployments: Vec::new(),
            acm: None,
        }
    }

    fn secrets(&self) -> Arc<FileSecretStore> {
        Arc::new(FileSecretStore::new(self.dir.path().join("secrets")))
    }

    fn issuer(&self, secrets: Arc<FileSecretStore>) -> Arc<AcmeIssuer> {
        Arc::new(AcmeIssuer::new(
            secrets,
            AcmeSettings {
                timeout: Duration::from_secs(30),
                ca_file: Some(self.dir.path().join("pebble-ca.pem")),
            },
        ))
    }
}

fn service(
    store: Arc<dyn CertificateStore>,
    secrets: Arc<FileSecretStore>,
    issuer: Arc<AcmeIssuer>,
    clock: Arc<dyn Clock>,
    owner: &str,
) -> RenewService {
    RenewService::new(
        store,
        secrets,
        issuer,
        None,
        clock,
        owner,
        RenewSettings::default(),
    )
}

async fn add(store: &dyn CertificateStore, id: &str, spec: CertificateSpec) {
    store
        .add_certificate(&ManagedCertificate::new(
            id.into(),
            spec,
            time::OffsetDateTime::now_utc(),
        ))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_is_issued_stored_and_renewed_with_its_key_kept_out_of_the_table() {
    let ca = Ca::start();
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let secrets = ca.secrets();
    let renew = service(
        store.clone(),
        secrets.clone(),
        ca.issuer(secrets.clone()),
        Arc::new(SystemClock),
        "worker-1",
    );
    add(
        store.as_ref(),
        "shop",
        ca.spec(&["shop.certpilot.test", "www.certpilot.test", "127.0.0.1"]),
    )
    .await;

    let results = renew.renew_due().await.unwrap();
    assert_eq!(results.len(), 1);
    let outcome = results[0].1.as_ref().unwrap();
    let RenewOutcome::Issued { fingerprint, .. } = outcome else {
        panic!("{outcome:?}");
    };
    let cert = store.certificate("shop").await.unwrap().unwrap();
    let current = cert.current.clone().unwrap();
    assert_eq!(&current.fingerprint, fingerprint);
    assert!(cert.renewal.job.is_none() && cert.renewal.lease.is_none());
    assert!(current.ari_id.is_some(), "Pebble offers ARI");
    // The key is the current SecretStore version, and nowhere in the record.
    let (version, key) = secrets
        .get(&cert.key_secret_name(), &SecretVersion::Current)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(version, current.key_version);
    let record = serde_json::to_string(&cert).unwrap();
    assert!(!record.contains("PRIVATE KEY"));
    assert!(!record.contains(key.expose_str().unwrap().lines().nth(1).unwrap()));
    // The chain is what the key signs for and names every identifier.
    let checked = certpilot_acme::keys::check(
        &current.chain_pem,
        &cert.spec.names,
        certpilot_core::ports::KeySource::Key(&key),
        None,
    )
    .unwrap();
    assert_eq!(checked.fingerprint, current.fingerprint);

    // Nothing more is due now.
    assert!(renew.renew_due().await.unwrap().is_empty());
    assert!(matches!(
        renew.renew("shop", false).await.unwrap(),
        RenewOutcome::NotDue { .. }
    ));

    // Forced: a new certificate replacing the old (ARI `replaces`), a new key, the old one kept.
    let again = renew.renew("shop", true).await.unwrap();
    assert!(matches!(again, RenewOutcome::Issued { .. }), "{again:?}");
    let renewed = store.certificate("shop").await.unwrap().unwrap();
    let new_current = renewed.current.unwrap();
    assert_ne!(new_current.fingerprint, current.fingerprint);
    assert_ne!(new_current.key_version, current.key_version);
    assert_eq!(renewed.renewal.recent_issuances.len(), 2);
    let (previous, _) = secrets
        .get(&cert.key_secret_name(), &SecretVersion::Previous)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(previous, current.key_version, "rollback key kept");
}

/// Fails every write from the `kill_at`-th `update_certificate` on, as a killed process
/// would: the write at `kill_at` itself lands or not, per `lands`.
struct Killed {
    inner: Arc<SqliteStore>,
    kill_at: usize,
    lands: bool,
    updates: AtomicUsize,
    dead: AtomicBool,
}

#[async_trait]
impl CertificateStore for Killed {
    async fn add_certificate(
        &self,
        c: &ManagedCertificate,
    ) -> Result<ManagedCertificate, StoreError> {
        self.inner.add_certificate(c).await
    }
    async fn update_certificate(
        &self,
        c: &ManagedCertificate,
    ) -> Result<ManagedCertificate, StoreError> {
        let n = self.updates.fetch_add(1, Ordering::SeqCst) + 1;
        if self.dead.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("process is dead".into()));
        }
        if n == self.kill_at {
            self.dead.store(true, Ordering::SeqCst);
            if self.lands {
                self.inner.update_certificate(c).await?;
            }
            return Err(StoreError::Unavailable("killed".into()));
        }
        self.inner.update_certificate(c).await
    }
    async fn certificate(&self, id: &str) -> Result<Option<ManagedCertificate>, StoreError> {
        if self.dead.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("process is dead".into()));
        }
        self.inner.certificate(id).await
    }
    async fn certificates(&self) -> Result<Vec<ManagedCertificate>, StoreError> {
        self.inner.certificates().await
    }
    async fn remove_certificate(&self, id: &str) -> Result<(), StoreError> {
        self.inner.remove_certificate(id).await
    }
    async fn certificates_due(
        &self,
        before: time::OffsetDateTime,
    ) -> Result<Vec<ManagedCertificate>, StoreError> {
        self.inner.certificates_due(before).await
    }
    async fn record_issuance(
        &self,
        names: &[String],
        id: &str,
        at: time::OffsetDateTime,
    ) -> Result<(), StoreError> {
        if self.dead.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("process is dead".into()));
        }
        self.inner.record_issuance(names, id, at).await
    }
    async fn issuances(
        &self,
        names: &[String],
        since: time::OffsetDateTime,
    ) -> Result<Vec<time::OffsetDateTime>, StoreError> {
        self.inner.issuances(names, since).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_every_step_a_rerun_resumes_the_same_order_with_the_same_key() {
    let ca = Ca::start();
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let secrets = ca.secrets();
    // A full renewal writes the record 8 times: lease, 6 steps, done.
    for kill_at in 1..=8 {
        for lands in [false, true] {
            let id = format!("kill-{kill_at}-{lands}");
            add(
                store.as_ref(),
                &id,
                ca.spec(&[&format!("{id}.certpilot.test")]),
            )
            .await;
            let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
            let killed = Arc::new(Killed {
                inner: store.clone(),
                kill_at,
                lands,
                updates: AtomicUsize::new(0),
                dead: AtomicBool::new(false),
            });
            // Each run is a new process: a fresh issuer (no cached account or responder).
            let first = service(
                killed,
                secrets.clone(),
                ca.issuer(secrets.clone()),
                clock.clone(),
                "run-1",
            );
            assert!(first.renew(&id, false).await.is_err(), "{id}: killed");
            let crashed = store.certificate(&id).await.unwrap().unwrap();
            let job = crashed.renewal.job.clone();
            // The dead run's lease lapses; a new worker takes over.
            clock.advance(time::Duration::minutes(11));
            let second = service(
                store.clone(),
                secrets.clone(),
                ca.issuer(secrets.clone()),
                clock.clone(),
                "run-2",
            );
            let outcome = second.renew(&id, false).await;
            let done = store.certificate(&id).await.unwrap().unwrap();
            if crashed.current.is_some() && crashed.renewal.job.is_none() {
                // Killed after the last write landed: the first run had finished.
                continue;
            }
            assert!(
                matches!(outcome, Ok(RenewOutcome::Issued { .. })),
                "{id}: {outcome:?}"
            );
            let current = done.current.expect("issued");
            if let Some(job) = job {
                assert_eq!(current.key_version, job.key_version, "{id}: same key");
                if let Some(url) = job.order_url {
                    assert_eq!(current.order_url, url, "{id}: same order");
                }
            }
            assert_eq!(
                done.renewal.recent_issuances.len(),
                1,
                "{id}: one certificate"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_renewals_started_together_make_one_order() {
    let ca = Ca::start();
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let secrets = ca.secrets();
    add(store.as_ref(), "race", ca.spec(&["race.certpilot.test"])).await;
    let a = service(
        store.clone(),
        secrets.clone(),
        ca.issuer(secrets.clone()),
        Arc::new(SystemClock),
        "worker-a",
    );
    let b = service(
        store.clone(),
        secrets.clone(),
        ca.issuer(secrets.clone()),
        Arc::new(SystemClock),
        "worker-b",
    );
    let (ra, rb) = tokio::join!(a.renew("race", false), b.renew("race", false));
    let outcomes = [ra.unwrap(), rb.unwrap()];
    let issued = outcomes
        .iter()
        .filter(|o| matches!(o, RenewOutcome::Issued { .. }))
        .count();
    let busy = outcomes
        .iter()
        .filter(|o| matches!(o, RenewOutcome::Busy { .. }))
        .count();
    assert_eq!((issued, busy), (1, 1), "{outcomes:?}");
    let cert = store.certificate("race").await.unwrap().unwrap();
    assert_eq!(cert.renewal.recent_issuances.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_validation_is_recorded_with_the_cas_problem_and_backs_off() {
    let ca = Ca::start();
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let secrets = ca.secrets();
    let mut spec = ca.spec(&["refused.certpilot.test"]);
    // Our responder listens where the CA does not look: its connection is refused.
    spec.challenge = ChallengeConfig::Http01Listen {
        listen: format!("127.0.0.1:{}", free_port()),
    };
    add(store.as_ref(), "refused", spec).await;
    let renew = service(
        store.clone(),
        secrets.clone(),
        ca.issuer(secrets.clone()),
        Arc::new(SystemClock),
        "worker-1",
    );
    let before = time::OffsetDateTime::now_utc();
    let err = renew.renew("refused", false).await.unwrap_err();
    assert!(
        matches!(
            &err,
            RenewError::Issue {
                error: IssueError::Validation { .. },
                ..
            }
        ),
        "{err}"
    );
    let cert = store.certificate("refused").await.unwrap().unwrap();
    let failure = cert.renewal.last_error.clone().expect("recorded");
    assert_eq!(failure.kind, "validation");
    let problem = failure.problem.expect("the CA's problem document");
    assert!(
        problem["type"]
            .as_str()
            .unwrap_or_default()
            .starts_with("urn:ietf:params:acme:error:"),
        "{problem}"
    );
    assert_eq!(cert.renewal.failures, 1);
    assert!(cert.renewal.lease.is_none(), "lease released");
    let wait = cert.renewal.next_check_at - before;
    assert!(
        wait >= time::Duration::minutes(5) && wait < time::Duration::minutes(6),
        "{wait}"
    );
    // Not retried before the backoff ends, and it says so: how often, until when, why.
    let outcome = renew.renew("refused", false).await.unwrap();
    assert!(
        matches!(
            &outcome,
            RenewOutcome::BackingOff { failures: 1, until, last_error }
                if *until == cert.renewal.next_check_at && last_error.contains("validation")
        ),
        "{outcome:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_requiring_external_account_binding_issues_only_with_the_right_key() {
    use base64::Engine as _;
    let hmac = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 32]);
    let ca = Ca::start_with(PebbleOptions {
        eab: vec![("kid-1".into(), hmac.clone())],
        ..PebbleOptions::default()
    });
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let secrets = ca.secrets();
    let renew = service(
        store.clone(),
        secrets.clone(),
        ca.issuer(secrets.clone()),
        Arc::new(SystemClock),
        "eab",
    );

    // Without a binding the CA refuses the account, and says so.
    add(
        store.as_ref(),
        "unbound",
        ca.spec(&["unbound.certpilot.test"]),
    )
    .await;
    let err = renew.renew("unbound", false).await.unwrap_err();
    assert!(err.to_string().contains("externalAccountBinding"), "{err}");

    // With the binding named and its HMAC in the secret store, the account is made once and
    // the certificate issued.
    secrets
        .put_current(
            "eab-hmac/kid-1",
            &certpilot_core::ports::SecretValue::new(hmac.into_bytes()),
        )
        .await
        .unwrap();
    let mut spec = ca.spec(&["bound.certpilot.test"]);
    spec.issuer.eab = Some(certpilot_core::model::certificate::ExternalAccountBinding {
        key_id: "kid-1".into(),
        hmac_secret: "eab-hmac/kid-1".into(),
    });
    add(store.as_ref(), "bound", spec.clone()).await;
    let outcome = renew.renew("bound", false).await.unwrap();
    assert!(
        matches!(outcome, RenewOutcome::Issued { .. }),
        "{outcome:?}"
    );
    let account = secrets
        .get(&spec.issuer.account_secret_name(), &SecretVersion::Current)
        .await
        .unwrap();
    assert!(account.is_some(), "the bound account is kept for reuse");

    // A binding whose HMAC is not the CA's is refused.
    secrets
        .put_current(
            "eab-hmac/kid-2",
            &certpilot_core::ports::SecretValue::new(
                b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_vec(),
            ),
        )
        .await
        .unwrap();
    let mut wrong = ca.spec(&["wrong.certpilot.test"]);
    wrong.issuer.eab = Some(certpilot_core::model::certificate::ExternalAccountBinding {
        key_id: "kid-2".into(),
        hmac_secret: "eab-hmac/kid-2".into(),
    });
    add(store.as_ref(), "wrong", wrong).await;
    assert!(renew.renew("wrong", false).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_is_asked_for_only_when_offered_and_six_day_certificates_renew_at_half_life() {
    let ca = Ca::start();
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let secrets = ca.secrets();
    let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
    let renew = service(
        store.clone(),
        secrets.clone(),
        ca.issuer(secrets.clone()),
        clock.clone(),
        "profiles",
    );
    let mut short = ca.spec(&["short.certpilot.test"]);
    short.issuer.profile = Some("shortlived".into());
    add(store.as_ref(), "short", short).await;
    let mut unknown = ca.spec(&["plain.certpilot.test"]);
    unknown.issuer.profile = Some("no-such-profile".into());
    add(store.as_ref(), "plain", unknown).await;
    clock.set(time::OffsetDateTime::now_utc());
    let results = renew.renew_due().await.unwrap();
    assert_eq!(results.len(), 2);
    for (id, result) in results {
        assert!(
            matches!(result, Ok(RenewOutcome::Issued { .. })),
            "{id}: {result:?}"
        );
    }

    let short = store.certificate("short").await.unwrap().unwrap();
    let current = short.current.clone().unwrap();
    assert_eq!(current.profile.as_deref(), Some("shortlived"));
    let lifetime = current.not_after - current.not_before;
    assert!(lifetime <= time::Duration::days(7), "{lifetime}");
    // The profile the CA does not offer is dropped, and the order goes through without it
    // (Pebble then picks one of its own profiles).
    let plain = store
        .certificate("plain")
        .await
        .unwrap()
        .unwrap()
        .current
        .unwrap();
    assert!(
        matches!(
            plain.profile.as_deref(),
            None | Some("default" | "shortlived")
        ),
        "{:?}",
        plain.profile
    );

    // Day 1 of 6: not due. Past half of its life (and inside Pebble's ARI window): renewed.
    clock.advance(time::Duration::days(1));
    assert!(matches!(
        renew.renew("short", false).await.unwrap(),
        RenewOutcome::NotDue { .. }
    ));
    clock.set(current.not_after - time::Duration::hours(30));
    let outcome = renew.renew("short", false).await.unwrap();
    let RenewOutcome::Issued { fingerprint, .. } = outcome else {
        panic!("{outcome:?}");
    };
    assert_ne!(fingerprint, current.fingerprint);
    let renewed = store.certificate("short").await.unwrap().unwrap();
    assert_eq!(
        renewed.current.unwrap().profile.as_deref(),
        Some("shortlived")
    );
}
