//! Pure decisions about observations. Every function takes `now` as an argument and never
//! reads the system clock, so each is tested with a table of cases.

pub mod address;
pub mod findings;
pub mod renewal;
pub mod requests;
pub mod state;

pub use state::CertificateState;

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
/// certificate does not validate (self-signed, not yet valid, untrusted, another name…), it
/// has expired, or it expires before `now + window`.
pub fn fails_window(observation: &Observation, window: Duration, now: OffsetDateTime) -> bool {
    match (&observation.status, &observation.certificate) {
        (Status::Ok, Some(cert)) => {
            cert.not_after <= now + window
                || observation.validation.as_ref().is_none_or(|v| !v.trusted)
        }
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

/// The most failed scans in a row a store counts: enough for any `unreachable` threshold,
/// and a bound on the writes an endpoint that stays down costs (one per scan until then,
/// then one refresh a day like any unchanged row).
pub const FAILURE_STREAK_CAP: u32 = 10;

/// How many scans in a row of one (endpoint, address) have failed once `current` is
/// recorded, given the latest recorded observation and its streak: 0 when it served, one
/// more than before when it failed again (whatever the error), at most
/// [`FAILURE_STREAK_CAP`]. A row stored before streaks were kept counts as one failure.
pub fn failure_streak(previous: Option<(&Observation, u32)>, current: &Observation) -> u32 {
    if current.status != Status::Error {
        return 0;
    }
    match previous {
        Some((p, n)) if p.status == Status::Error => {
            n.max(1).saturating_add(1).min(FAILURE_STREAK_CAP)
        }
        _ => 1,
    }
}

/// What a store writes for a new observation, given what it holds for that (endpoint, address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordDecision {
    /// Something changed (or nothing is known): append to history and replace the latest.
    Change,
    /// It failed again as before: no history, but the latest row's failure streak (and
    /// "last seen") go up, until [`FAILURE_STREAK_CAP`].
    CountFailure,
    /// Nothing changed, but "last seen" is older than [`LAST_SEEN_REFRESH`]: refresh it.
    RefreshLastSeen,
    /// Nothing to write: unchanged and seen recently, or older than what is stored.
    Skip,
}

/// Decides what to write for `current`, given the latest recorded observation of the same
/// (endpoint, address), when it was last seen, and its failure streak.
pub fn record_decision(
    latest: Option<(&Observation, OffsetDateTime, u32)>,
    current: &Observation,
) -> RecordDecision {
    match latest {
        None => RecordDecision::Change,
        Some((previous, last_seen, streak)) => {
            if current.scanned_at <= last_seen.max(previous.scanned_at) {
                RecordDecision::Skip
            } else if is_material_change(previous, current) {
                RecordDecision::Change
            } else if failure_streak(Some((previous, streak)), current) > streak {
                RecordDecision::CountFailure
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

/// An endpoint's fixed place in every scan interval, from a stable hash of its key.
///
/// Scheduled scans sweep the slots: a run at time `t` scans the endpoints whose slot lies
/// between the previous run's position and `t`'s (see [`due_slots`]). Because the slot is
/// computed, not stored, an unchanged scan writes nothing to schedule the next one, and the
/// hash spreads the endpoints evenly over the interval so every run gets a similar share.
pub fn scan_slot(key: &str) -> u32 {
    // FNV-1a, then a murmur3 finaliser so that similar keys (a-1, a-2…) spread over all bits.
    let mut h: u32 = 0x811c_9dc5;
    for b in key.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// Where `t` falls in its scan interval, scaled to the slot range (0 at the start of an
/// interval, `u32::MAX` just before its end). Intervals are aligned on the Unix epoch.
pub fn slot_position(t: OffsetDateTime, interval: Duration) -> u32 {
    let length = interval.as_nanos().max(1);
    let into = u128::try_from(t.unix_timestamp_nanos().rem_euclid(length as i128)).unwrap_or(0);
    u32::try_from((into << 32) / length).unwrap_or(u32::MAX)
}

/// An inclusive range of slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotRange {
    /// First slot in the range.
    pub first: u32,
    /// Last slot in the range (inclusive).
    pub last: u32,
}

impl SlotRange {
    /// Every slot.
    pub const ALL: SlotRange = SlotRange {
        first: 0,
        last: u32::MAX,
    };

    /// Whether `slot` is in the range.
    pub fn contains(&self, slot: u32) -> bool {
        (self.first..=self.last).contains(&slot)
    }
}

/// The slots a run at `now` scans when the previous run was at `previous`: those from
/// `previous`'s position up to, not including, `now`'s — at most two ranges when the window
/// wraps past the end of an interval. With no previous run, or a full interval or more since
/// it, every slot is due; when `now` is not after `previous`, none is.
///
/// Consecutive windows tile the interval exactly, so each endpoint is scanned once per
/// interval however irregular the runs are.
pub fn due_slots(
    previous: Option<OffsetDateTime>,
    now: OffsetDateTime,
    interval: Duration,
) -> Vec<SlotRange> {
    let Some(previous) = previous else {
        return vec![SlotRange::ALL];
    };
    if now <= previous {
        return Vec::new();
    }
    if (now - previous).unsigned_abs() >= interval {
        return vec![SlotRange::ALL];
    }
    let (from, to) = (
        slot_position(previous, interval),
        slot_position(now, interval),
    );
    match from.cmp(&to) {
        std::cmp::Ordering::Less => vec![SlotRange {
            first: from,
            last: to - 1,
        }],
        // Less than a slot's width apart.
        std::cmp::Ordering::Equal => Vec::new(),
        std::cmp::Ordering::Greater => {
            let mut ranges = vec![SlotRange {
                first: from,
                last: u32::MAX,
            }];
            if to > 0 {
                ranges.push(SlotRange {
                    first: 0,
                    last: to - 1,
                });
            }
            ranges
        }
    }
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
        ok.validation = Some(crate::model::observation::Validation {
            trusted: true,
            problems: Vec::new(),
        });
        assert!(!fails_window(&ok, 14 * day, NOW));
        assert!(fails_window(&ok, 21 * day, NOW));
        assert!(fails_window(&ok, 14 * day, NOW + time::Duration::days(7)));
        assert!(fails_window(
            &ok,
            Duration::ZERO,
            NOW + time::Duration::days(21)
        ));
        // Far from expiry but not valid: not healthy.
        ok.validation = Some(crate::model::observation::Validation {
            trusted: false,
            problems: vec![crate::model::observation::Problem::SelfSigned],
        });
        assert!(fails_window(&ok, 14 * day, NOW));
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
            // At the cap, a failing row is counted no further: only changes and refreshes.
            let latest = latest.map(|(o, seen)| (o, seen, FAILURE_STREAK_CAP));
            assert_eq!(record_decision(latest, &current), want, "case {i}");
        }
        // Below the cap, each failure in a row is counted (any error kind), and counting
        // stops at the cap; a success ends the streak.
        assert_eq!(
            record_decision(Some((&first, at(0), 1)), &obs(1, ErrorKind::Refused)),
            RecordDecision::CountFailure
        );
        assert_eq!(
            failure_streak(Some((&first, 1)), &obs(1, ErrorKind::Refused)),
            2
        );
        assert_eq!(
            failure_streak(Some((&first, 0)), &obs(1, ErrorKind::Timeout)),
            2
        );
        assert_eq!(
            failure_streak(
                Some((&first, FAILURE_STREAK_CAP)),
                &obs(1, ErrorKind::Refused)
            ),
            FAILURE_STREAK_CAP
        );
        assert_eq!(failure_streak(None, &obs(1, ErrorKind::Refused)), 1);
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

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn slot_positions_scale_the_interval() {
        let start = datetime!(2026-11-22 12:00 UTC);
        let cases = [
            (start, 0),
            (start + time::Duration::minutes(15), 1 << 30),
            (start + time::Duration::minutes(30), 1 << 31),
            (start + time::Duration::minutes(45), 3 << 30),
            (start + time::Duration::HOUR, 0),
            (start - time::Duration::NANOSECOND, u32::MAX),
        ];
        for (t, want) in cases {
            assert_eq!(slot_position(t, HOUR), want, "{t}");
        }
    }

    #[test]
    fn due_slots_cover_the_window_since_the_previous_run() {
        let start = datetime!(2026-11-22 12:00 UTC);
        let at = |m: i64| start + time::Duration::minutes(m);
        let range = |first: u32, last: u32| SlotRange { first, last };
        let cases: [(Option<OffsetDateTime>, OffsetDateTime, Vec<SlotRange>); 7] = [
            // Never ran: everything.
            (None, at(10), vec![SlotRange::ALL]),
            (Some(at(0)), at(15), vec![range(0, (1 << 30) - 1)]),
            (Some(at(15)), at(30), vec![range(1 << 30, (1 << 31) - 1)]),
            // Wraps past the end of the interval.
            (
                Some(at(45)),
                at(75),
                vec![range(3 << 30, u32::MAX), range(0, (1 << 30) - 1)],
            ),
            (Some(at(45)), at(60), vec![range(3 << 30, u32::MAX)]),
            // Missed runs: a full interval or more means everything once.
            (Some(at(0)), at(60), vec![SlotRange::ALL]),
            // Clock went back, or the same run twice: nothing.
            (Some(at(30)), at(30), vec![]),
        ];
        for (i, (previous, now, want)) in cases.into_iter().enumerate() {
            assert_eq!(due_slots(previous, now, HOUR), want, "case {i}");
        }
    }

    #[test]
    fn irregular_runs_scan_every_slot_exactly_once_per_interval() {
        let start = datetime!(2026-11-22 12:07:13 UTC);
        let slots: Vec<u32> = (0..2000)
            .map(|i| scan_slot(&format!("host-{i}.test:443")))
            .collect();
        // Runs 7, 1, 13, 0.5, 20 … minutes apart: late, early, duplicated.
        let gaps = [7.0, 1.0, 13.0, 0.5, 20.0, 3.0, 9.5, 6.0];
        let mut count = vec![0u32; slots.len()];
        let mut previous = start;
        let mut elapsed = 0.0;
        for gap in gaps.iter().cycle() {
            let step = if elapsed + gap > 60.0 {
                60.0 - elapsed
            } else {
                *gap
            };
            elapsed += step;
            let now = previous + time::Duration::seconds_f64(step * 60.0);
            for r in due_slots(Some(previous), now, HOUR) {
                for (c, s) in count.iter_mut().zip(&slots) {
                    *c += u32::from(r.contains(*s));
                }
            }
            previous = now;
            if elapsed >= 60.0 {
                break;
            }
        }
        assert!(count.iter().all(|c| *c == 1), "{count:?}");
    }

    #[test]
    fn slots_spread_similar_keys_evenly() {
        // 10,000 keys that differ only in a counter, over 12 five-minute runs.
        let mut buckets = [0usize; 12];
        for i in 0..10_000 {
            let slot = scan_slot(&format!("shop-{i}.example.com:443"));
            buckets[((u64::from(slot) * 12) >> 32) as usize] += 1;
        }
        let (min, max) = (buckets.iter().min().unwrap(), buckets.iter().max().unwrap());
        assert!(*min > 750 && *max < 920, "{buckets:?}");
        assert_eq!(scan_slot("shop.test:443"), scan_slot("shop.test:443"));
    }
}
