//! One worker per certificate at a time: the lease on a certificate record.
//!
//! A renewal and a deploy each take the record's lease with a conditional write, extend it
//! every third of its length while they work (a slow CA, a deploy hook, CloudFront's
//! 25-minute verification), and give it up when done or interrupted. Another worker that
//! finds a live lease answers "busy" instead of running the same work a second time. A lease
//! lapses on its own when its owner stops extending it (killed, hung, cut off), and one whose
//! owner is known to be gone ([`Liveness`]: a killed process of this host) is taken over at
//! once.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tracing::warn;

use crate::model::certificate::{Lease, ManagedCertificate};
use crate::ports::{CertificateStore, Clock, Liveness, StoreError};

/// Why a lease could not be taken or kept.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseError {
    /// Another worker holds it.
    #[error("{id}: being worked on by {owner} (lease until {until})")]
    Busy {
        /// The certificate.
        id: String,
        /// The other worker.
        owner: String,
        /// Until when its lease runs unless extended.
        until: OffsetDateTime,
    },
    /// The certificate is not there.
    #[error("no managed certificate {0:?}")]
    NotFound(String),
    /// Another worker took it over (this one was too slow to extend it).
    #[error("{0}: lost the lease to another worker")]
    Lost(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Takes, extends and releases leases on certificate records for one worker.
#[derive(Clone)]
pub struct Leases {
    certificates: Arc<dyn CertificateStore>,
    clock: Arc<dyn Clock>,
    owner: String,
    length: Duration,
    liveness: Option<Arc<dyn Liveness>>,
}

impl Leases {
    /// Leases of `length` for the worker `owner` (unique per process or invocation).
    pub fn new(
        certificates: Arc<dyn CertificateStore>,
        clock: Arc<dyn Clock>,
        owner: impl Into<String>,
        length: Duration,
    ) -> Self {
        Leases {
            certificates,
            clock,
            owner: owner.into(),
            length,
            liveness: None,
        }
    }

    /// Takes over at once a lease whose owner `liveness` knows to be gone.
    pub fn with_liveness(mut self, liveness: Arc<dyn Liveness>) -> Self {
        self.liveness = Some(liveness);
        self
    }

    /// This worker.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// A lease for this worker from `now`.
    pub fn from(&self, now: OffsetDateTime) -> Lease {
        Lease {
            owner: self.owner.clone(),
            until: now + self.length,
        }
    }

    /// Whether this worker holds `cert`'s lease.
    pub fn holds(&self, cert: &ManagedCertificate) -> bool {
        cert.renewal
            .lease
            .as_ref()
            .is_some_and(|l| l.owner == self.owner)
    }

    /// The live lease of another worker on `cert`, if any: not lapsed, and its owner not
    /// known to be gone.
    pub fn held_elsewhere<'a>(&self, cert: &'a ManagedCertificate) -> Option<&'a Lease> {
        let lease = cert.renewal.lease.as_ref()?;
        if lease.owner == self.owner || lease.until <= self.clock.now() {
            return None;
        }
        if self
            .liveness
            .as_ref()
            .is_some_and(|l| l.is_gone(&lease.owner))
        {
            return None;
        }
        Some(lease)
    }

    /// Takes the lease on `cert` (as read) with a conditional write, applying `prepare` to
    /// the record written with it; re-reads and tries again when someone wrote meanwhile.
    pub async fn take(
        &self,
        mut cert: ManagedCertificate,
        prepare: impl Fn(&mut ManagedCertificate, OffsetDateTime),
    ) -> Result<ManagedCertificate, LeaseError> {
        for _ in 0..3 {
            if let Some(lease) = self.held_elsewhere(&cert) {
                return Err(LeaseError::Busy {
                    id: cert.id.clone(),
                    owner: lease.owner.clone(),
                    until: lease.until,
                });
            }
            if let Some(stale) = &cert.renewal.lease
                && stale.owner != self.owner
            {
                warn!(id = %cert.id, owner = %stale.owner, "taking over a lease its owner left behind");
            }
            let now = self.clock.now();
            cert.renewal.lease = Some(self.from(now));
            prepare(&mut cert, now);
            match self.certificates.update_certificate(&cert).await {
                Ok(stored) => return Ok(stored),
                Err(StoreError::Conflict { .. }) => cert = self.load(&cert.id).await?,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict {
            what: format!("certificate {:?}", cert.id),
            expected: cert.version,
        }
        .into())
    }

    async fn load(&self, id: &str) -> Result<ManagedCertificate, LeaseError> {
        self.certificates
            .certificate(id)
            .await?
            .ok_or_else(|| LeaseError::NotFound(id.to_owned()))
    }

    /// Extends this worker's lease on `id` from now; touches nothing else of the record.
    pub async fn extend(&self, id: &str) -> Result<(), LeaseError> {
        for _ in 0..3 {
            let mut cert = self.load(id).await?;
            if !self.holds(&cert) {
                return Err(LeaseError::Lost(id.to_owned()));
            }
            cert.renewal.lease = Some(self.from(self.clock.now()));
            match self.certificates.update_certificate(&cert).await {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Runs `work` while extending the lease on `id` every third of its length. Writers of
    /// the same record meanwhile see a version conflict, re-read, and re-apply their change.
    pub async fn heartbeat<T>(&self, id: &str, work: impl std::future::Future<Output = T>) -> T {
        let period = (self.length / 3).max(Duration::from_millis(100));
        let beat = async {
            loop {
                tokio::time::sleep(period).await;
                if let Err(e) = self.extend(id).await {
                    warn!(id, error = %e, "could not extend the lease");
                }
            }
        };
        tokio::select! {
            out = work => out,
            never = beat => never,
        }
    }

    /// Gives up this worker's lease on `id`, if it holds it; `true` when it did.
    pub async fn release(&self, id: &str) -> Result<bool, LeaseError> {
        for _ in 0..3 {
            let Some(mut cert) = self.certificates.certificate(id).await? else {
                return Ok(false);
            };
            if !self.holds(&cert) {
                return Ok(false);
            }
            cert.renewal.lease = None;
            match self.certificates.update_certificate(&cert).await {
                Ok(_) => return Ok(true),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(false)
    }

    /// Gives up every lease this worker holds (on SIGINT or SIGTERM); the ids released.
    pub async fn release_all(&self) -> Result<Vec<String>, LeaseError> {
        let mut released = Vec::new();
        for cert in self.certificates.certificates().await? {
            if self.holds(&cert) && self.release(&cert.id).await? {
                released.push(cert.id);
            }
        }
        Ok(released)
    }
}
