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
        let mut stored = c.clone();
        stored.version = 1;
        self.0
            .lock()
            .expect("lock")
            .insert(c.id.clone(), stored.clone());
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
        self.0.lock().expect("lock").remove(id);
        Ok(())
    }

    async fn certificates_due(
        &self,
        before: time::OffsetDateTime,
    ) -> Result<Vec<crate::model::certificate::ManagedCertificate>, crate::ports::StoreError> {
        Ok(self
            .0
            .lock()
            .expect("lock")
            .values()
            .filter(|c| c.renewal.next_check_at <= before)
            .cloned()
            .collect())
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

/// Secrets in memory: every version readable by id.
#[derive(Default)]
pub struct MemorySecrets(pub std::sync::Mutex<Vec<(String, String, crate::ports::SecretValue)>>);

#[async_trait::async_trait]
impl crate::ports::SecretStore for MemorySecrets {
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

    async fn promote(&self, _name: &str, _version: &str) -> Result<(), crate::ports::SecretError> {
        Ok(())
    }

    async fn get(
        &self,
        name: &str,
        version: &crate::ports::SecretVersion,
    ) -> Result<Option<(String, crate::ports::SecretValue)>, crate::ports::SecretError> {
        let all = self.0.lock().expect("lock");
        Ok(match version {
            crate::ports::SecretVersion::Id(id) => all
                .iter()
                .find(|(n, v, _)| n == name && v == id)
                .map(|(_, v, s)| (v.clone(), s.clone())),
            _ => None,
        })
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
