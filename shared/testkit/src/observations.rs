//! Builders for observations, so store tests read as the situation they set up.

use certpilot_core::{
    CertificateInfo, ErrorKind, KeyInfo, Observation, ProbeError, Problem, Served, Tags, TlsInfo,
    Validation, model::observation::ObservationHead,
};
use time::{Duration, OffsetDateTime};

/// Starts an observation of `target` at `address` (canonical spellings).
pub fn observed(target: &str, address: &str) -> ObservationBuilder {
    ObservationBuilder {
        target: target.to_owned(),
        address: address.to_owned(),
        at: OffsetDateTime::UNIX_EPOCH + Duration::days(20_000),
        outcome: Err(ProbeError::new(ErrorKind::Refused, "connection refused")),
        tags: Tags::new(),
        problems: Vec::new(),
    }
}

/// An observation under construction; an error (`refused`) until given a certificate.
#[derive(Clone)]
pub struct ObservationBuilder {
    target: String,
    address: String,
    at: OffsetDateTime,
    outcome: Result<(String, OffsetDateTime), ProbeError>,
    tags: Tags,
    problems: Vec<Problem>,
}

impl ObservationBuilder {
    /// Made at `at`.
    pub fn at(mut self, at: OffsetDateTime) -> Self {
        self.at = at;
        self
    }

    /// Served the certificate with fingerprint `fingerprint`, expiring at `not_after`.
    pub fn cert(mut self, fingerprint: &str, not_after: OffsetDateTime) -> Self {
        self.outcome = Ok((fingerprint.to_owned(), not_after));
        self
    }

    /// Failed with `kind`.
    pub fn error(mut self, kind: ErrorKind) -> Self {
        self.outcome = Err(ProbeError::new(kind, format!("{kind} for the test")));
        self
    }

    /// Carries tag `key=value`.
    pub fn tag(mut self, key: &str, value: &str) -> Self {
        self.tags.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Validation found `problem`.
    pub fn problem(mut self, problem: Problem) -> Self {
        self.problems.push(problem);
        self
    }

    /// The observation.
    pub fn build(self) -> Observation {
        let (host, port) = self
            .target
            .rsplit_once(':')
            .map(|(h, p)| (h.to_owned(), p.parse().unwrap_or(443)))
            .unwrap_or((self.target.clone(), 443));
        let head = ObservationHead {
            target: self.target,
            host,
            port,
            scanned_at: self.at,
            tags: self.tags,
        };
        match self.outcome {
            Err(e) => Observation::failed(head, Some(self.address), 12, e),
            Ok((fingerprint, not_after)) => Observation::served(
                head,
                self.address,
                12,
                Served {
                    tls: TlsInfo {
                        version: "TLSv1.3".into(),
                        cipher: "TLS13_AES_128_GCM_SHA256".into(),
                    },
                    certificate: CertificateInfo {
                        subject: "CN=test".into(),
                        issuer: "CN=Test CA".into(),
                        sans: vec!["test".into()],
                        serial: "01".into(),
                        not_before: not_after - Duration::days(90),
                        not_after,
                        fingerprint_sha256: fingerprint,
                        key: KeyInfo {
                            kind: "EC".into(),
                            bits: 256,
                            curve: Some("P-256".into()),
                        },
                        signature_algorithm: "ecdsa-with-SHA256".into(),
                    },
                    chain: vec![],
                    validation: Validation {
                        trusted: self.problems.is_empty(),
                        problems: self.problems,
                    },
                },
            ),
        }
    }
}
