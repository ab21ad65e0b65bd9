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
