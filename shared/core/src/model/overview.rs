//! The estate at a glance, as the dashboard's overview shows it: how many endpoints are in
//! each state, how many managed certificates are not served everywhere, open findings by
//! severity, and how many certificates expire in each of the next weeks (managed and
//! unmanaged apart).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::model::certificate::ManagedCertificate;
use crate::model::deploy::DeploymentStatus;
use crate::model::finding::{Finding, FindingState, Severity};
use crate::model::observation::Status;
use crate::policy::{WARNING_DAYS, days_remaining};
use crate::ports::InventoryEntry;

/// How many weeks the expiry timeline covers (90 days and a bit).
pub const WEEKS: usize = 13;

/// Where one (endpoint, address) stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointState {
    /// Served a certificate that validates and has more than [`WARNING_DAYS`] left.
    Healthy,
    /// Valid, but expires within [`WARNING_DAYS`].
    Expiring,
    /// Served a certificate that does not validate: expired, untrusted, another name…
    Failing,
    /// No certificate: the probe failed (no name, refused, timed out…).
    Unreachable,
}

impl EndpointState {
    /// Every state, in the order people read them.
    pub const ALL: [EndpointState; 4] = [
        EndpointState::Healthy,
        EndpointState::Expiring,
        EndpointState::Failing,
        EndpointState::Unreachable,
    ];

    /// The snake_case name every output uses.
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointState::Healthy => "healthy",
            EndpointState::Expiring => "expiring",
            EndpointState::Failing => "failing",
            EndpointState::Unreachable => "unreachable",
        }
    }

    /// The state named `name`.
    pub fn parse(name: &str) -> Option<EndpointState> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Where `entry` stands at `now`.
    pub fn of(entry: &InventoryEntry, now: OffsetDateTime) -> EndpointState {
        let o = &entry.observation;
        match (o.status, &o.certificate) {
            (Status::Ok, Some(cert)) => {
                let days = days_remaining(cert.not_after, now);
                let invalid = o
                    .validation
                    .as_ref()
                    .is_some_and(|v| !v.trusted || !v.problems.is_empty());
                if days < 0 || invalid {
                    EndpointState::Failing
                } else if days < WARNING_DAYS {
                    EndpointState::Expiring
                } else {
                    EndpointState::Healthy
                }
            }
            _ => EndpointState::Unreachable,
        }
    }
}

/// Whether some deployment of `c` does not serve its latest certificate (`not_serving` or
/// `failed`): the overview's "not served", and the certificates it links to.
pub fn not_served(c: &ManagedCertificate) -> bool {
    c.deployments.iter().any(|d| {
        matches!(
            d.state.status,
            DeploymentStatus::NotServing | DeploymentStatus::Failed
        )
    })
}

/// Where a managed certificate stands, in one word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertificateState {
    /// Nothing issued yet.
    Pending,
    /// The current certificate has expired.
    Expired,
    /// Some deployment does not serve it ([`not_served`]).
    NotServing,
    /// A deployment is still being installed, or not yet tried.
    InProgress,
    /// Issued and served everywhere it is deployed.
    Verified,
}

impl CertificateState {
    /// The snake_case name every output uses.
    pub fn as_str(self) -> &'static str {
        match self {
            CertificateState::Pending => "pending",
            CertificateState::Expired => "expired",
            CertificateState::NotServing => "not_serving",
            CertificateState::InProgress => "in_progress",
            CertificateState::Verified => "verified",
        }
    }

    /// Where `c` stands at `now`.
    pub fn of(c: &ManagedCertificate, now: OffsetDateTime) -> CertificateState {
        let Some(current) = &c.current else {
            return CertificateState::Pending;
        };
        if current.not_after < now {
            CertificateState::Expired
        } else if not_served(c) {
            CertificateState::NotServing
        } else if c
            .deployments
            .iter()
            .any(|d| d.state.status == DeploymentStatus::InProgress)
            || c.deployments.len() < c.spec.deployments.len()
        {
            CertificateState::InProgress
        } else {
            CertificateState::Verified
        }
    }
}

/// Certificates expiring in one week.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Week {
    /// The week's first day.
    #[serde(with = "time::serde::rfc3339")]
    pub starts: OffsetDateTime,
    /// Managed certificates (certpilot renews them).
    pub managed: u64,
    /// Certificates served in the estate that certpilot does not manage.
    pub unmanaged: u64,
}

/// The estate at a glance.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overview {
    /// (endpoint, address) rows in each state.
    pub endpoints: BTreeMap<EndpointState, u64>,
    /// Managed certificates.
    pub certificates: u64,
    /// Managed certificates whose latest certificate some deployment does not serve
    /// (`not_serving` or `failed`).
    pub not_served: u64,
    /// Open findings (acknowledged ones left out) by severity.
    pub findings: BTreeMap<Severity, u64>,
    /// The next [`WEEKS`] weeks from today, by week of expiry.
    pub weeks: Vec<Week>,
    /// Certificates already expired: (managed, unmanaged).
    pub expired: (u64, u64),
}

impl Overview {
    /// The overview of an estate at `now`. Certificates are counted once each, by
    /// fingerprint, however many endpoints serve them; a served certificate is managed when
    /// it is the current certificate of a managed one.
    pub fn of(
        inventory: &[InventoryEntry],
        certificates: &[ManagedCertificate],
        findings: &[Finding],
        now: OffsetDateTime,
    ) -> Overview {
        let mut o = Overview {
            certificates: certificates.len() as u64,
            weeks: (0..WEEKS)
                .map(|w| Week {
                    starts: now.replace_time(time::Time::MIDNIGHT)
                        + Duration::weeks(i64::try_from(w).unwrap_or(0)),
                    managed: 0,
                    unmanaged: 0,
                })
                .collect(),
            ..Overview::default()
        };
        for state in EndpointState::ALL {
            o.endpoints.insert(state, 0);
        }
        for s in [Severity::Critical, Severity::Warning, Severity::Info] {
            o.findings.insert(s, 0);
        }
        let managed: BTreeSet<String> = certificates
            .iter()
            .filter_map(|c| {
                c.current
                    .as_ref()
                    .map(|i| i.fingerprint.to_ascii_lowercase())
            })
            .collect();
        let mut expiring: BTreeMap<String, (OffsetDateTime, bool)> = BTreeMap::new();
        for c in certificates {
            if let Some(i) = &c.current {
                expiring.insert(i.fingerprint.to_ascii_lowercase(), (i.not_after, true));
            }
            if not_served(c) {
                o.not_served += 1;
            }
        }
        for e in inventory {
            *o.endpoints.entry(EndpointState::of(e, now)).or_default() += 1;
            if let Some(cert) = &e.observation.certificate {
                let fp = cert.fingerprint_sha256.to_ascii_lowercase();
                let is_managed = managed.contains(&fp);
                expiring.entry(fp).or_insert((cert.not_after, is_managed));
            }
        }
        let first = o.weeks.first().map_or(now, |w| w.starts);
        for (not_after, is_managed) in expiring.values() {
            if *not_after < now {
                if *is_managed {
                    o.expired.0 += 1;
                } else {
                    o.expired.1 += 1;
                }
                continue;
            }
            let week = usize::try_from((*not_after - first).whole_weeks()).unwrap_or(usize::MAX);
            if let Some(w) = o.weeks.get_mut(week) {
                if *is_managed {
                    w.managed += 1;
                } else {
                    w.unmanaged += 1;
                }
            }
        }
        for f in findings.iter().filter(|f| f.state == FindingState::Open) {
            *o.findings.entry(f.severity).or_default() += 1;
        }
        o
    }

    /// Rows in `state`.
    pub fn count(&self, state: EndpointState) -> u64 {
        self.endpoints.get(&state).copied().unwrap_or(0)
    }
}
