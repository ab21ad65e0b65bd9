//! The one decision of what state a managed certificate is in. The CLI's `certificates
//! list`, the functions, the API and alerts all read it from here.

use serde::Serialize;
use time::OffsetDateTime;

use crate::model::certificate::ManagedCertificate;
use crate::ports::Liveness;

/// Where a managed certificate stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CertificateState {
    /// Nothing issued yet, nothing running.
    Pending,
    /// A live worker holds its lease and renews it now.
    Renewing,
    /// A renewal was started and its worker is gone (killed, lease lapsed): the next run
    /// resumes it where it stopped.
    Interrupted,
    /// The last attempt failed; it backs off and tries again.
    Failing,
    /// Issued, but not yet served everywhere it is deployed: the outage certpilot exists to
    /// catch.
    NotDeployed,
    /// Issued and served everywhere.
    Issued,
}

impl CertificateState {
    /// The snake_case name every output uses.
    pub fn as_str(self) -> &'static str {
        match self {
            CertificateState::Pending => "pending",
            CertificateState::Renewing => "renewing",
            CertificateState::Interrupted => "interrupted",
            CertificateState::Failing => "failing",
            CertificateState::NotDeployed => "not_deployed",
            CertificateState::Issued => "issued",
        }
    }

    /// Decides the state of `cert` at `now`; `live` tells whether a lease's owner is gone.
    pub fn of(cert: &ManagedCertificate, now: OffsetDateTime, live: &dyn Liveness) -> Self {
        let worked_on = cert
            .renewal
            .lease
            .as_ref()
            .is_some_and(|l| l.until > now && !live.is_gone(&l.owner));
        match (&cert.current, &cert.renewal.job, &cert.renewal.last_error) {
            (_, _, Some(_)) => CertificateState::Failing,
            (_, Some(_), None) if worked_on => CertificateState::Renewing,
            (_, Some(_), None) => CertificateState::Interrupted,
            (None, None, None) => CertificateState::Pending,
            (Some(_), None, None) if !cert.is_deployed() => CertificateState::NotDeployed,
            (Some(_), None, None) => CertificateState::Issued,
        }
    }
}

impl std::fmt::Display for CertificateState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
