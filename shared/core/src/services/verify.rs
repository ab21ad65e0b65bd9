//! Proving that endpoints serve a certificate: real handshakes with every address of every
//! endpoint (SNI set to the endpoint's name), repeated until each serves the expected
//! fingerprint or the deadline passes.
//!
//! This is the check that makes a renewal "done": a certificate renewed on time but never
//! installed shows up here as [`Verdict::NotServing`], naming the endpoint and address, what it
//! serves instead (or why no handshake completed), and since when this check has seen it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use crate::model::observation::Observation;
use crate::model::target::ScanRequest;
use crate::services::scan::ScanService;

/// How long to keep checking, and how often.
#[derive(Clone, Copy, Debug)]
pub struct VerifySettings {
    /// Give up on endpoints still not serving the certificate after this long (a load
    /// balancer takes seconds, a CDN minutes).
    pub deadline: Duration,
    /// Time between two rounds of handshakes with the endpoints not yet verified.
    pub interval: Duration,
}

/// What one address of one endpoint serves, judged against the expected certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// It serves the expected certificate.
    Verified,
    /// It does not (yet): the outage certpilot exists to catch.
    NotServing {
        /// The fingerprint it serves instead, when a handshake completed.
        serving: Option<String>,
        /// Why no certificate was obtained, when none was.
        error: Option<String>,
        /// When this check first saw it not serving the expected certificate.
        #[serde(with = "time::serde::rfc3339")]
        since: OffsetDateTime,
    },
}

/// The verdict for one (endpoint, address), with the last observation behind it.
#[derive(Clone, Debug, Serialize)]
pub struct EndpointCheck {
    /// The endpoint.
    pub target: String,
    /// The address handshaken with (absent when the name did not resolve).
    pub address: Option<String>,
    /// The verdict.
    #[serde(flatten)]
    pub verdict: Verdict,
    /// The last handshake's full observation (record it like any scan).
    #[serde(skip)]
    pub observation: Observation,
}

impl EndpointCheck {
    /// Whether the endpoint serves the expected certificate.
    pub fn is_verified(&self) -> bool {
        self.verdict == Verdict::Verified
    }
}

/// The verify use case.
#[derive(Clone)]
pub struct VerifyService {
    scanner: ScanService,
}

impl VerifyService {
    /// Verifies through `scanner` (its prober, clock and limits).
    pub fn new(scanner: ScanService) -> Self {
        VerifyService { scanner }
    }

    /// Handshakes with every address of `endpoints` until each serves `fingerprint` (SHA-256,
    /// hex) or `settings.deadline` passes; one check per (endpoint, address), sorted.
    pub async fn verify(
        &self,
        fingerprint: &str,
        endpoints: Vec<ScanRequest>,
        settings: VerifySettings,
    ) -> Vec<EndpointCheck> {
        let give_up = tokio::time::Instant::now() + settings.deadline;
        let mut checks: BTreeMap<(String, String), EndpointCheck> = BTreeMap::new();
        let mut first_bad: BTreeMap<(String, String), OffsetDateTime> = BTreeMap::new();
        let mut pending = endpoints.clone();
        loop {
            let mut run = self.scanner.start_before(pending, give_up);
            while let Some(obs) = run.next().await {
                let key = (obs.target.clone(), obs.address_key().to_owned());
                let verdict = if obs.fingerprint() == Some(fingerprint) {
                    first_bad.remove(&key);
                    Verdict::Verified
                } else {
                    Verdict::NotServing {
                        serving: obs.fingerprint().map(str::to_owned),
                        error: obs.error.as_ref().map(ToString::to_string),
                        since: *first_bad.entry(key.clone()).or_insert(obs.scanned_at),
                    }
                };
                checks.insert(
                    key,
                    EndpointCheck {
                        target: obs.target.clone(),
                        address: obs.address.clone(),
                        verdict,
                        observation: obs,
                    },
                );
            }
            // A target is checked again whole: every address must serve the certificate, and
            // one that served it a round ago may be a node that has since been replaced.
            let failing: Vec<&str> = checks
                .values()
                .filter(|c| !c.is_verified())
                .map(|c| c.target.as_str())
                .collect();
            pending = endpoints
                .iter()
                .filter(|r| failing.contains(&r.target.to_string().as_str()))
                .cloned()
                .collect();
            if pending.is_empty() || tokio::time::Instant::now() + settings.interval > give_up {
                break;
            }
            tokio::time::sleep(settings.interval).await;
        }
        checks.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use time::macros::datetime;

    use super::*;
    use crate::model::observation::{ErrorKind, ProbeError, Served};
    use crate::ports::{Prober, ScanLimits};
    use crate::services::test_support::FixedClock;

    /// Two load-balancer nodes per name. `slow.test`'s second node takes three rounds to
    /// pick the new certificate up; `stuck.test`'s never does; `gone.test` does not resolve.
    #[derive(Default)]
    struct Fleet {
        slow_probes: AtomicUsize,
    }

    #[async_trait]
    impl Prober for Fleet {
        async fn resolve(&self, request: &ScanRequest) -> Result<Vec<SocketAddr>, ProbeError> {
            match request.target.host.to_string().as_str() {
                "gone.test" => Err(ProbeError::new(ErrorKind::Dns, "NXDOMAIN")),
                _ => Ok(vec![
                    SocketAddr::from(([10, 0, 0, 1], 443)),
                    SocketAddr::from(([10, 0, 0, 2], 443)),
                ]),
            }
        }

        async fn probe(
            &self,
            request: &ScanRequest,
            address: SocketAddr,
            now: OffsetDateTime,
        ) -> Result<Served, ProbeError> {
            let second_node = address.ip().to_string() == "10.0.0.2";
            let fingerprint = match request.target.host.to_string().as_str() {
                "slow.test" if second_node => {
                    let n = self.slow_probes.fetch_add(1, Ordering::SeqCst);
                    if n < 2 { "old" } else { "new" }
                }
                "stuck.test" if second_node => "old",
                _ => "new",
            };
            Ok(crate::services::test_support::served(now, fingerprint))
        }
    }

    fn service() -> VerifyService {
        VerifyService::new(ScanService::new(
            Arc::new(Fleet::default()),
            Arc::new(FixedClock(datetime!(2026-11-22 12:00 UTC))),
            ScanLimits {
                concurrency: 8,
                target_timeout: Duration::from_secs(5),
            },
        ))
    }

    fn requests(names: &[&str]) -> Vec<ScanRequest> {
        names
            .iter()
            .map(|n| ScanRequest::new(n.parse().expect("valid target")))
            .collect()
    }

    fn verdicts(checks: &[EndpointCheck]) -> Vec<(String, String, bool)> {
        checks
            .iter()
            .map(|c| {
                (
                    c.target.clone(),
                    c.address.clone().unwrap_or_default(),
                    c.is_verified(),
                )
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn every_node_is_checked_until_it_serves_the_new_certificate() {
        let settings = VerifySettings {
            deadline: Duration::from_secs(60),
            interval: Duration::from_secs(5),
        };
        let checks = service()
            .verify("new", requests(&["fast.test", "slow.test"]), settings)
            .await;
        assert_eq!(
            verdicts(&checks),
            [
                ("fast.test:443".into(), "10.0.0.1:443".into(), true),
                ("fast.test:443".into(), "10.0.0.2:443".into(), true),
                ("slow.test:443".into(), "10.0.0.1:443".into(), true),
                ("slow.test:443".into(), "10.0.0.2:443".into(), true),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_still_serving_the_old_certificate_is_named_with_what_it_serves() {
        let settings = VerifySettings {
            deadline: Duration::from_secs(20),
            interval: Duration::from_secs(5),
        };
        let started = tokio::time::Instant::now();
        let checks = service()
            .verify("new", requests(&["stuck.test", "gone.test"]), settings)
            .await;
        assert!(
            started.elapsed() <= Duration::from_secs(20),
            "gave up at the deadline"
        );
        let stuck = checks
            .iter()
            .find(|c| c.address.as_deref() == Some("10.0.0.2:443"))
            .expect("the stuck node");
        assert_eq!(
            stuck.verdict,
            Verdict::NotServing {
                serving: Some("old".into()),
                error: None,
                since: datetime!(2026-11-22 12:00 UTC),
            }
        );
        assert!(
            checks
                .iter()
                .any(|c| c.address.as_deref() == Some("10.0.0.1:443") && c.is_verified())
        );
        let gone = checks
            .iter()
            .find(|c| c.target == "gone.test:443")
            .expect("the unresolvable endpoint");
        assert!(
            matches!(&gone.verdict, Verdict::NotServing { serving: None, error: Some(e), .. } if e.contains("NXDOMAIN")),
            "{:?}",
            gone.verdict
        );
    }
}
