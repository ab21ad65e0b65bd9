//! Builders shared by the services' unit tests.

use crate::model::observation::{CertificateInfo, KeyInfo, Served, TlsInfo, Validation};

/// What a prober returns for a trusted leaf with `fingerprint`, valid around `now`.
pub fn served(now: time::OffsetDateTime, fingerprint: &str) -> Served {
    Served {
        tls: TlsInfo {
            version: "TLSv1.3".into(),
            cipher: "TLS13_AES_128_GCM_SHA256".into(),
        },
        certificate: CertificateInfo {
            subject: "CN=a".into(),
            issuer: "CN=ca".into(),
            sans: vec!["a".into()],
            serial: "01".into(),
            not_before: now - time::Duration::days(1),
            not_after: now + time::Duration::days(10),
            fingerprint_sha256: fingerprint.into(),
            key: KeyInfo {
                kind: "EC".into(),
                bits: 256,
                curve: Some("P-256".into()),
            },
            signature_algorithm: "ecdsa-with-SHA256".into(),
        },
        chain: vec![],
        validation: Validation {
            trusted: true,
            problems: vec![],
        },
    }
}

/// Certificates in memory, with the store's optimistic versioning.
#[derive(Default)]
pub struct MemoryCertificates(
    pub  std::sync::Mutex<
        std::collections::BTreeMap<String, crate::model::certificate::ManagedCertificate>,
    >,
    /// The issuance log: (name set key, id, time).
    pub std::sync::Mutex<std::collections::BTreeSet<(String, time::OffsetDateTime, String)>>,
);

#[async_trait::async_trait]
impl crate::ports::CertificateStore for MemoryCertificates {
    async fn add_certificate(
        &self,
        c: &crate::model::certificate::ManagedCertificate,
    ) -> Result<crate::model::certificate::ManagedCertificate, crate::ports::StoreError> {
        let mut map = self.0.lock().expect("lock");
        if map.contains_key(&c.id) {
            return Err(crate::ports::StoreError::AlreadyExists { what: c.id.clone() });
        }
        let mut stored = c.clone();
        stored.version = 1;
        map.insert(c.id.clone(), stored.clone());
        Ok(stored)
    }

    async fn update_certificate(
        &self,
        c: &crate::model::certificate::ManagedCertificate,
    ) -> Result<crate::model::certificate::ManagedCertificate, crate::ports::StoreError> {
        let mut map = self.0.lock().expect("lock");
        let old = map
            .get(&c.id)
            .ok_or_else(|| crate::ports::StoreError::NotFound { what: c.id.clone() })?;
        if old.version != c.version {
            return Err(crate::ports::StoreError::Conflict {
                what: c.id.clone(),
                expected: c.version,
            });
        }
        let mut stored = c.clone();
        stored.version += 1;
        map.insert(c.id.clone(), stored.clone());
        Ok(stored)
    }

    async fn certificate(
        &self,
        id: &str,
    ) -> Result<Option<crate::model::certificate::ManagedCertificate>, crate::ports::StoreError>
    {
        Ok(self.0.lock().expect("lock").get(id).cloned())
    }

    async fn certificates(
        &self,
    ) -> Result<Vec<crate::model::certificate::ManagedCertificate>, crate::ports::StoreError> {
        Ok(self.0.lock().expect("lock").values().cloned().collect())
    }

    async fn remove_certificate(&self, id: &str) -> Result<(), crate::ports::StoreError> {
        match self.0.lock().expect("lock").remove(id) {
            Some(_) => Ok(()),
            None => Err(crate::ports::StoreError::NotFound {
                what: id.to_owned(),
            }),
        }
    }

    async fn certificates_due(
        &self,
        before: time::OffsetDateTime,
    ) -> Result<Vec<crate::model::certificate::ManagedCertificate>, crate::ports::StoreError> {
        // Earliest first, as the contract says.
        let mut due: Vec<_> = self
            .0
            .lock()
            .expect("lock")
            .values()
            .filter(|c| c.renewal.next_check_at <= before)
            .cloned()
            .collect();
        due.sort_by(|a, b| (a.renewal.next_check_at, &a.id).cmp(&(b.renewal.next_check_at, &b.id)));
        Ok(due)
    }

    async fn record_issuance(
        &self,
        names: &[String],
        id: &str,
        at: time::OffsetDateTime,
    ) -> Result<(), crate::ports::StoreError> {
        let key = crate::model::certificate::name_set_key(names);
        self.1
            .lock()
            .expect("lock")
            .insert((key, at, id.to_owned()));
        Ok(())
    }

    async fn issuances(
        &self,
        names: &[String],
        since: time::OffsetDateTime,
    ) -> Result<Vec<time::OffsetDateTime>, crate::ports::StoreError> {
        let key = crate::model::certificate::name_set_key(names);
        Ok(self
            .1
            .lock()
            .expect("lock")
            .iter()
            .filter(|(k, at, _)| *k == key && *at > since)
            .map(|(_, at, _)| *at)
            .collect())
    }
}

/// Secrets in memory: every version readable by id; `promote` moves the current and
/// previous stages as the contract says.
#[derive(Default)]
pub struct MemorySecrets(
    pub std::sync::Mutex<Vec<(String, String, crate::ports::SecretValue)>>,
    /// Per name: (current version, previous version).
    pub std::sync::Mutex<std::collections::BTreeMap<String, (String, Option<String>)>>,
);

#[async_trait::async_trait]
impl crate::ports::SecretStore for MemorySecrets {
    async fn delete(&self, name: &str) -> Result<bool, crate::ports::SecretError> {
        let mut all = self.0.lock().expect("lock");
        let before = all.len();
        all.retain(|(n, _, _)| n != name);
        self.1.lock().expect("lock").remove(name);
        Ok(all.len() != before)
    }

    async fn put_pending(
        &self,
        name: &str,
        value: &crate::ports::SecretValue,
    ) -> Result<String, crate::ports::SecretError> {
        let mut all = self.0.lock().expect("lock");
        let version = format!("v{}", all.len() + 1);
        all.push((name.to_owned(), version.clone(), value.clone()));
        Ok(version)
    }

    async fn promote(&self, name: &str, version: &str) -> Result<(), crate::ports::SecretError> {
        let known = self
            .0
            .lock()
            .expect("lock")
            .iter()
            .any(|(n, v, _)| n == name && v == version);
        if !known {
            return Err(crate::ports::SecretError::NotFound(format!(
                "{name} version {version}"
            )));
        }
        let mut stages = self.1.lock().expect("lock");
        match stages.get(name) {
            // Promoting the current version again changes nothing.
            Some((current, _)) if current == version => {}
            Some((current, _)) => {
                let previous = Some(current.clone());
                stages.insert(name.to_owned(), (version.to_owned(), previous));
            }
            None => {
                stages.insert(name.to_owned(), (version.to_owned(), None));
            }
        }
        Ok(())
    }

    async fn get(
        &self,
        name: &str,
        version: &crate::ports::SecretVersion,
    ) -> Result<Option<(String, crate::ports::SecretValue)>, crate::ports::SecretError> {
        let id = {
            let stages = self.1.lock().expect("lock");
            match version {
                crate::ports::SecretVersion::Id(id) => Some(id.clone()),
                crate::ports::SecretVersion::Current => stages.get(name).map(|(c, _)| c.clone()),
                crate::ports::SecretVersion::Previous => {
                    stages.get(name).and_then(|(_, p)| p.clone())
                }
            }
        };
        let Some(id) = id else {
            return Ok(None);
        };
        let all = self.0.lock().expect("lock");
        Ok(all
            .iter()
            .find(|(n, v, _)| n == name && *v == id)
            .map(|(_, v, s)| (v.clone(), s.clone())))
    }
}

/// A certificate spec for `names` over HTTP-01 from a test CA, with `deployments`: what
/// core's tests vary, the rest fixed.
pub fn spec(
    names: &[&str],
    deployments: Vec<crate::model::deploy::Deployment>,
) -> crate::model::certificate::CertificateSpec {
    use crate::model::certificate::{AcmeIssuer, CertificateSpec, ChallengeConfig, RenewalPolicy};
    CertificateSpec {
        names: names.iter().map(|n| n.parse().expect("name")).collect(),
        key_type: Default::default(),
        issuer: AcmeIssuer {
            directory: "https://acme.test/dir".into(),
            contact: Vec::new(),
            eab: None,
            profile: None,
            account_secret: None,
        },
        challenge: ChallengeConfig::Http01Listen {
            listen: "0.0.0.0:80".into(),
        },
        renewal: RenewalPolicy::Auto,
        tags: Default::default(),
        endpoints: Vec::new(),
        deployments,
        acm: None,
    }
}

/// A clock that always answers the same time (the testkit has the same for other crates;
/// core's own tests cannot use it without a second copy of core's types).
#[derive(Clone, Copy, Debug)]
pub struct FixedClock(pub time::OffsetDateTime);

impl crate::ports::Clock for FixedClock {
    fn now(&self) -> time::OffsetDateTime {
        self.0
    }
}

/// The fakes keep the ports' contracts, so a service test cannot pass on behaviour no real
/// store has.
mod contract {
    use time::macros::datetime;

    use super::{MemoryCertificates, MemorySecrets};
    use crate::model::certificate::ManagedCertificate;
    use crate::ports::{CertificateStore, SecretStore, SecretValue, SecretVersion, StoreError};

    fn cert(id: &str, next: time::OffsetDateTime) -> ManagedCertificate {
        let spec = super::spec(&[&format!("{id}.example.com")], Vec::new());
        let mut c = ManagedCertificate::new(id.into(), spec, next);
        c.renewal.next_check_at = next;
        c
    }

    #[tokio::test]
    async fn memory_certificates_refuse_what_real_stores_refuse_and_list_due_earliest_first() {
        let store = MemoryCertificates::default();
        let late = datetime!(2026-12-02 12:00 UTC);
        let early = datetime!(2026-12-01 12:00 UTC);
        // Ids in the opposite order of their due times.
        store.add_certificate(&cert("a", late)).await.unwrap();
        store.add_certificate(&cert("b", early)).await.unwrap();
        assert!(matches!(
            store.add_certificate(&cert("a", early)).await,
            Err(StoreError::AlreadyExists { .. })
        ));
        let due = store.certificates_due(late).await.unwrap();
        let ids: Vec<&str> = due.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["b", "a"]);
        store.remove_certificate("a").await.unwrap();
        assert!(matches!(
            store.remove_certificate("a").await,
            Err(StoreError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn memory_secrets_promote_moves_current_to_previous() {
        let secrets = MemorySecrets::default();
        let first = secrets
            .put_pending("key", &SecretValue::new(b"one".to_vec()))
            .await
            .unwrap();
        assert!(
            secrets
                .get("key", &SecretVersion::Current)
                .await
                .unwrap()
                .is_none()
        );
        secrets.promote("key", &first).await.unwrap();
        let second = secrets
            .put_pending("key", &SecretValue::new(b"two".to_vec()))
            .await
            .unwrap();
        secrets.promote("key", &second).await.unwrap();
        secrets.promote("key", &second).await.unwrap();
        let current = secrets.get("key", &SecretVersion::Current).await.unwrap();
        let previous = secrets.get("key", &SecretVersion::Previous).await.unwrap();
        assert_eq!(current.map(|(v, _)| v), Some(second));
        assert_eq!(previous.map(|(v, _)| v), Some(first));
        assert!(secrets.promote("key", "v99").await.is_err());
    }
}
