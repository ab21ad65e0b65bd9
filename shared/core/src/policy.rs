//! Pure decisions about observations. Every function takes `now` as an argument and never
//! reads the system clock, so each is tested with a table of cases.

use std::net::IpAddr;
use std::time::Duration;

use time::OffsetDateTime;

use crate::model::observation::{Observation, Problem, Status};
use crate::model::target::Host;

/// Smallest RSA modulus that is not weak (NIST SP 800-131A, CA/Browser Forum BR 6.1.5).
pub const MIN_RSA_BITS: u32 = 2048;

/// Whole days from `now` until `not_after`, rounded down: 0 on the last day, -1 once expired.
pub fn days_remaining(not_after: OffsetDateTime, now: OffsetDateTime) -> i64 {
    let secs = (not_after - now).whole_seconds();
    secs.div_euclid(86_400)
}

/// `expired` or `not_yet_valid` for a certificate's validity window at `now`.
pub fn validity_problems(
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    now: OffsetDateTime,
) -> Option<Problem> {
    // RFC 5280 4.1.2.5: the validity period includes both notBefore and notAfter.
    if now > not_after {
        Some(Problem::Expired)
    } else if now < not_before {
        Some(Problem::NotYetValid)
    } else {
        None
    }
}

/// Whether an RSA key of `bits` is too short to trust.
pub fn is_weak_rsa(bits: u32) -> bool {
    bits < MIN_RSA_BITS
}

/// Whether a signature algorithm (as named by OpenSSL, e.g. `sha1WithRSAEncryption`) uses a
/// broken hash: SHA-1 or MD5 (or older).
pub fn is_weak_signature(algorithm: &str) -> bool {
    let a = algorithm.to_ascii_lowercase();
    a.contains("sha1") || a.contains("md5") || a.contains("md2")
}

/// Whether a certificate with these subjectAltNames is valid for `host`, as browsers judge it
/// (RFC 6125): an IP address must be an IP SAN; a name must equal a DNS SAN, or match a
/// wildcard SAN `*.rest` whose `*` stands for exactly one whole label. The subject CN is not
/// consulted, as no current browser consults it.
pub fn hostname_matches(host: &Host, dns_sans: &[String], ip_sans: &[IpAddr]) -> bool {
    match host {
        Host::Ip(ip) => ip_sans.contains(ip),
        Host::Name(name) => dns_sans.iter().any(|san| dns_name_matches(name, san)),
    }
}

fn dns_name_matches(name: &str, san: &str) -> bool {
    let san = san.trim_end_matches('.');
    let name = name.trim_end_matches('.');
    match san.strip_prefix("*.") {
        // "*.com"-style wildcards must cover at least two labels to mean anything.
        Some(base) if base.contains('.') => name
            .split_once('.')
            .is_some_and(|(first, rest)| !first.is_empty() && rest.eq_ignore_ascii_case(base)),
        Some(_) => false,
        None => name.eq_ignore_ascii_case(san),
    }
}

/// How urgent an observation is, for colouring and sorting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Urgency {
    /// Failed probe, expired, or not trusted.
    Broken,
    /// Expires within [`CRITICAL_DAYS`].
    Critical,
    /// Expires within [`WARNING_DAYS`].
    Warning,
    /// Nothing to do.
    Fine,
}

/// Days left under which a certificate is critical.
pub const CRITICAL_DAYS: i64 = 7;
/// Days left under which a certificate deserves attention.
pub const WARNING_DAYS: i64 = 30;

impl Urgency {
    /// Classifies an observation at the time it was made.
    pub fn of(observation: &Observation) -> Urgency {
        match (observation.status, observation.days_remaining) {
            (Status::Error, _) | (_, None) => Urgency::Broken,
            (Status::Ok, Some(days)) => {
                let untrusted = observation.validation.as_ref().is_some_and(|v| !v.trusted);
                if days < 0 || untrusted {
                    Urgency::Broken
                } else if days < CRITICAL_DAYS {
                    Urgency::Critical
                } else if days < WARNING_DAYS {
                    Urgency::Warning
                } else {
                    Urgency::Fine
                }
            }
        }
    }
}

/// Whether `observation` fails a `--fail-within WINDOW` check at `now`: the probe failed, the
/// certificate has expired, or it expires before `now + window`.
pub fn fails_window(observation: &Observation, window: Duration, now: OffsetDateTime) -> bool {
    match (&observation.status, &observation.certificate) {
        (Status::Ok, Some(cert)) => cert.not_after <= now + window,
        _ => true,
    }
}

/// Whether `observation`'s certificate expires before `deadline` (failed probes never do).
pub fn expires_before(observation: &Observation, deadline: OffsetDateTime) -> bool {
    observation
        .certificate
        .as_ref()
        .is_some_and(|c| c.not_after < deadline)
}

/// Whether two observations of the same (endpoint, address) differ in a way a person would
/// care about: another certificate, another error kind, or other validation problems.
pub fn is_material_change(previous: &Observation, current: &Observation) -> bool {
    previous.fingerprint() != current.fingerprint()
        || previous.error.as_ref().map(|e| e.kind) != current.error.as_ref().map(|e| e.kind)
        || previous.validation.as_ref().map(|v| &v.problems)
            != current.validation.as_ref().map(|v| &v.problems)
}

/// How often an unchanged (endpoint, address) refreshes its "last seen" time in the store.
/// At 100,000 endpoints scanned hourly, writing every scan would be 72 million writes a
/// month; writing changes plus one refresh a day is at most 100,000 a day.
pub const LAST_SEEN_REFRESH: time::Duration = time::Duration::DAY;

/// What a store writes for a new observation, given what it holds for that (endpoint, address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordDecision {
    /// Something changed (or nothing is known): append to history and replace the latest.
    Change,
    /// Nothing changed, but "last seen" is older than [`LAST_SEEN_REFRESH`]: refresh it.
    RefreshLastSeen,
    /// Nothing to write: unchanged and seen recently, or older than what is stored.
    Skip,
}

/// Decides what to write for `current`, given the latest recorded observation of the same
/// (endpoint, address) and when it was last seen.
pub fn record_decision(
    latest: Option<(&Observation, OffsetDateTime)>,
    current: &Observation,
) -> RecordDecision {
    match latest {
        None => RecordDecision::Change,
        Some((previous, last_seen)) => {
            if current.scanned_at <= last_seen.max(previous.scanned_at) {
                RecordDecision::Skip
            } else if is_material_change(previous, current) {
                RecordDecision::Change
            } else if current.scanned_at - last_seen >= LAST_SEEN_REFRESH {
                RecordDecision::RefreshLastSeen
            } else {
                RecordDecision::Skip
            }
        }
    }
}

/// The certificate an (endpoint, address) last served and since when, carried from one
/// recorded change to the next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertLineage<T> {
    /// Fingerprint of the last certificate served.
    pub last_cert: Option<String>,
    /// When that certificate was first seen there.
    pub first_seen: Option<T>,
}

/// The lineage after recording an observation serving `fingerprint` at `at`: the same
/// certificate keeps its first-seen time; another starts anew; no certificate (a failed
/// probe) keeps the last one, so its return is recognised rather than counted as new.
pub fn cert_lineage<T: Copy>(
    previous: Option<&CertLineage<T>>,
    fingerprint: Option<&str>,
    at: T,
) -> CertLineage<T> {
    match (fingerprint, previous) {
        (Some(fp), Some(p)) if p.last_cert.as_deref() == Some(fp) => CertLineage {
            last_cert: Some(fp.to_owned()),
            first_seen: p.first_seen,
        },
        (Some(fp), _) => CertLineage {
            last_cert: Some(fp.to_owned()),
            first_seen: Some(at),
        },
        (None, Some(p)) => p.clone(),
        (None, None) => CertLineage {
            last_cert: None,
            first_seen: None,
        },
    }
}

/// When an endpoint scanned at `scanned_at` is next due, every `interval`.
pub fn next_scan_at(scanned_at: OffsetDateTime, interval: Duration) -> OffsetDateTime {
    scanned_at + interval
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::observation::{ErrorKind, ObservationHead, ProbeError};
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-22 12:00 UTC);

    #[test]
    fn days_remaining_rounds_down() {
        let cases = [
            (datetime!(2026-12-22 12:00 UTC), 30),
            (datetime!(2026-12-22 11:59 UTC), 29),
            (datetime!(2026-11-22 12:00 UTC), 0),
            (datetime!(2026-11-23 11:59 UTC), 0),
            (datetime!(2026-11-22 11:59 UTC), -1),
            (datetime!(2026-11-20 12:00 UTC), -2),
        ];
        for (not_after, want) in cases {
            assert_eq!(days_remaining(not_after, NOW), want, "{not_after}");
        }
    }

    #[test]
    fn validity_window_is_inclusive() {
        let nb = datetime!(2026-11-01 0:00 UTC);
        let na = datetime!(2026-12-01 0:00 UTC);
        assert_eq!(validity_problems(nb, na, NOW), None);
        assert_eq!(validity_problems(nb, na, na), None);
        assert_eq!(validity_problems(nb, na, nb), None);
        assert_eq!(
            validity_problems(nb, na, na + time::Duration::SECOND),
            Some(Problem::Expired)
        );
        assert_eq!(
            validity_problems(nb, na, nb - time::Duration::SECOND),
            Some(Problem::NotYetValid)
        );
    }

    #[test]
    fn weak_crypto_is_named() {
        for (alg, weak) in [
            ("sha1WithRSAEncryption", true),
            ("md5WithRSAEncryption", true),
            ("ecdsa-with-SHA1", true),
            ("dsaWithSHA1", true),
            ("sha256WithRSAEncryption", false),
            ("ecdsa-with-SHA384", false),
            ("ED25519", false),
        ] {
            assert_eq!(is_weak_signature(alg), weak, "{alg}");
        }
        assert!(is_weak_rsa(1024));
        assert!(!is_weak_rsa(2048));
    }

    #[test]
    fn hostnames_match_like_a_browser() {
        let dns = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let name = |n: &str| Host::Name(n.into());
        let cases = [
            ("shop.example.com", &["shop.example.com"][..], true),
            ("shop.example.com", &["SHOP.example.com."][..], true),
            ("shop.example.com", &["*.example.com"][..], true),
            ("a.b.example.com", &["*.example.com"][..], false),
            ("example.com", &["*.example.com"][..], false),
            ("example.com", &["*.com"][..], false),
            (
                "shop.example.com",
                &["other.example.com", "shop.example.com"][..],
                true,
            ),
            ("shop.example.com", &[][..], false),
        ];
        for (host, sans, want) in cases {
            assert_eq!(
                hostname_matches(&name(host), &dns(sans), &[]),
                want,
                "{host} vs {sans:?}"
            );
        }
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(hostname_matches(&Host::Ip(ip), &[], &[ip]));
        assert!(!hostname_matches(&Host::Ip(ip), &dns(&["127.0.0.1"]), &[]));
    }

    fn head() -> ObservationHead {
        ObservationHead {
            target: "a:443".into(),
            host: "a".into(),
            port: 443,
            scanned_at: NOW,
            tags: Default::default(),
        }
    }

    #[test]
    fn fail_window_counts_errors_expired_and_soon_expiring() {
        let day = Duration::from_secs(86_400);
        let failed = Observation::failed(head(), None, 1, ProbeError::new(ErrorKind::Dns, "x"));
        assert!(fails_window(&failed, day, NOW));
        let mut ok = Observation::failed(head(), None, 1, ProbeError::new(ErrorKind::Dns, "x"));
        ok.status = Status::Ok;
        ok.error = None;
        ok.certificate = Some(crate::model::observation::CertificateInfo {
            subject: "CN=a".into(),
            issuer: "CN=ca".into(),
            sans: vec!["a".into()],
            serial: "01".into(),
            not_before: NOW - time::Duration::days(10),
            not_after: NOW + time::Duration::days(20),
            fingerprint_sha256: "00".into(),
            key: crate::model::observation::KeyInfo {
                kind: "EC".into(),
                bits: 256,
                curve: Some("P-256".into()),
            },
            signature_algorithm: "ecdsa-with-SHA256".into(),
        });
        assert!(!fails_window(&ok, 14 * day, NOW));
        assert!(fails_window(&ok, 21 * day, NOW));
        assert!(fails_window(&ok, 14 * day, NOW + time::Duration::days(7)));
        assert!(fails_window(
            &ok,
            Duration::ZERO,
            NOW + time::Duration::days(21)
        ));
    }

    #[test]
    fn records_changes_and_a_daily_refresh_only() {
        let at = |h: i64| NOW + time::Duration::hours(h);
        let obs = |h: i64, kind: ErrorKind| {
            let mut head = head();
            head.scanned_at = at(h);
            Observation::failed(head, None, 1, ProbeError::new(kind, "x"))
        };
        let first = obs(0, ErrorKind::Refused);
        let cases = [
            (None, obs(0, ErrorKind::Refused), RecordDecision::Change),
            (
                Some((&first, at(0))),
                obs(1, ErrorKind::Refused),
                RecordDecision::Skip,
            ),
            (
                Some((&first, at(0))),
                obs(23, ErrorKind::Refused),
                RecordDecision::Skip,
            ),
            (
                Some((&first, at(0))),
                obs(24, ErrorKind::Refused),
                RecordDecision::RefreshLastSeen,
            ),
            (
                Some((&first, at(24))),
                obs(30, ErrorKind::Refused),
                RecordDecision::Skip,
            ),
            (
                Some((&first, at(24))),
                obs(48, ErrorKind::Refused),
                RecordDecision::RefreshLastSeen,
            ),
            (
                Some((&first, at(0))),
                obs(1, ErrorKind::Timeout),
                RecordDecision::Change,
            ),
            // Older than what is stored (a late retry): never written over newer facts.
            (
                Some((&first, at(5))),
                obs(3, ErrorKind::Timeout),
                RecordDecision::Skip,
            ),
            (
                Some((&first, at(0))),
                obs(0, ErrorKind::Refused),
                RecordDecision::Skip,
            ),
        ];
        for (i, (latest, current, want)) in cases.into_iter().enumerate() {
            assert_eq!(record_decision(latest, &current), want, "case {i}");
        }
    }

    #[test]
    fn material_change_ignores_timing_but_not_certificates_or_errors() {
        let a = Observation::failed(head(), None, 1, ProbeError::new(ErrorKind::Dns, "x"));
        let mut b = a.clone();
        b.elapsed_ms = 99;
        b.scanned_at = NOW + time::Duration::HOUR;
        assert!(!is_material_change(&a, &b));
        b.error = Some(ProbeError::new(ErrorKind::Timeout, "y"));
        assert!(is_material_change(&a, &b));
    }
}
