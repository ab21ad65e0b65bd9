//! When to renew a managed certificate, how long to wait after a failure, and how many
//! certificates the CA's duplicate limit still allows. Pure functions of their inputs.

use std::time::Duration;

use time::OffsetDateTime;

use crate::model::certificate::{IssuedCertificate, RenewalPolicy, RenewalWindow};

/// Certificates shorter-lived than this renew at half their lifetime instead of a third, so
/// that 6-day certificates keep three days of margin.
pub const SHORT_LIFETIME: time::Duration = time::Duration::days(10);
/// How often ARI is asked again when the CA gives no `Retry-After`.
pub const ARI_DEFAULT_RECHECK: Duration = Duration::from_secs(6 * 3600);
/// Bounds on the CA's `Retry-After` for ARI, so a silly value neither hammers the CA nor
/// misses a revocation-driven early renewal for days.
pub const ARI_RECHECK_BOUNDS: (Duration, Duration) =
    (Duration::from_secs(60), Duration::from_secs(24 * 3600));
/// First retry delay after a failed attempt; doubled each further failure.
pub const BACKOFF_START: Duration = Duration::from_secs(5 * 60);
/// Longest retry delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(24 * 3600);
/// Let's Encrypt's duplicate-certificate limit: 5 certificates for the same name set within
/// a week, with no overrides.
pub const DUPLICATE_LIMIT: usize = 5;
/// The window the duplicate limit counts over.
pub const DUPLICATE_WINDOW: time::Duration = time::Duration::days(7);
/// How many of the limit automatic renewals may use; the last is kept for a human's
/// `renew --force` (a key compromise, say).
pub const AUTOMATIC_DUPLICATE_BUDGET: usize = DUPLICATE_LIMIT - 1;

/// When `cert` should be renewed.
///
/// - With an ARI window from the CA: a point inside it, chosen from `id` so that it is the
///   same on every run (RFC 9773 asks for a point chosen at random across clients) — or
///   earlier if `policy` asks for a fixed number of days that comes first.
/// - Otherwise, with [`RenewalPolicy::DaysBefore`]: that many days before expiry, if that
///   is shorter than the lifetime (else as `Auto`).
/// - Otherwise: when a third of the lifetime is left, or half for lifetimes under
///   [`SHORT_LIFETIME`].
pub fn renew_at(
    cert: &IssuedCertificate,
    policy: RenewalPolicy,
    ari: Option<&RenewalWindow>,
    id: &str,
) -> OffsetDateTime {
    let lifetime = cert.not_after - cert.not_before;
    let by_policy = match policy {
        // A margin as long as the lifetime would renew on every run, until the CA's duplicate
        // limit stopped it: such a certificate renews by its lifetime instead.
        RenewalPolicy::DaysBefore { days } if time::Duration::days(i64::from(days)) < lifetime => {
            Some(cert.not_after - time::Duration::days(i64::from(days)))
        }
        RenewalPolicy::DaysBefore { .. } | RenewalPolicy::Auto => None,
    };
    if let Some(window) = ari.filter(|w| w.end >= w.start) {
        let span = window.end - window.start;
        let fraction = f64::from(crate::policy::scan_slot(id)) / f64::from(u32::MAX);
        let point = window.start + span * fraction;
        return by_policy.map_or(point, |p| p.min(point));
    }
    if let Some(p) = by_policy {
        return p;
    }
    if lifetime < SHORT_LIFETIME {
        cert.not_before + lifetime / 2
    } else {
        cert.not_after - lifetime / 3
    }
}

/// When to look at a certificate again after deciding its renewal time: at the renewal time,
/// or sooner to ask ARI again (the CA may move the window earlier, for a mass revocation).
pub fn next_check_at(
    now: OffsetDateTime,
    renew_at: OffsetDateTime,
    ari_offered: bool,
    ari_retry_after: Option<Duration>,
) -> OffsetDateTime {
    if !ari_offered {
        return renew_at;
    }
    let (lo, hi) = ARI_RECHECK_BOUNDS;
    let recheck = ari_retry_after.unwrap_or(ARI_DEFAULT_RECHECK).clamp(lo, hi);
    renew_at.min(now + recheck)
}

/// How long to wait before attempt `failures + 1`, after `failures` failed ones (≥ 1): five
/// minutes doubling to a day, never shorter than the CA's `Retry-After`.
pub fn backoff(failures: u32, retry_after: Option<Duration>) -> Duration {
    let exponent = failures.saturating_sub(1).min(20);
    let delay = BACKOFF_START
        .saturating_mul(1u32 << exponent)
        .min(BACKOFF_MAX);
    retry_after.map_or(delay, |r| delay.max(r))
}

/// Issuance times still inside the duplicate window at `now`, oldest first.
pub fn recent_issuances(history: &[OffsetDateTime], now: OffsetDateTime) -> Vec<OffsetDateTime> {
    let mut recent: Vec<OffsetDateTime> = history
        .iter()
        .copied()
        .filter(|t| *t > now - DUPLICATE_WINDOW)
        .collect();
    recent.sort();
    recent
}

/// Whether another certificate for the same name set may be ordered now. `Err` carries when
/// the oldest counted issuance leaves the window. Automatic renewals stop at
/// [`AUTOMATIC_DUPLICATE_BUDGET`]; a forced one may use the last of [`DUPLICATE_LIMIT`].
pub fn may_order(
    history: &[OffsetDateTime],
    now: OffsetDateTime,
    forced: bool,
) -> Result<(), OffsetDateTime> {
    let recent = recent_issuances(history, now);
    let budget = if forced {
        DUPLICATE_LIMIT
    } else {
        AUTOMATIC_DUPLICATE_BUDGET
    };
    if recent.len() < budget {
        return Ok(());
    }
    // The window frees a slot when the oldest of the newest `budget` issuances leaves it.
    let oldest_counted = recent[recent.len() - budget];
    Err(oldest_counted + DUPLICATE_WINDOW)
}

/// Why a renewal waits for the duplicate limit, with `counted` issuances in the window:
/// the numbers in it are the ones the decision used.
pub fn deferral_reason(counted: usize, forced: bool) -> String {
    if forced {
        format!(
            "{counted} certificates for these names in the last 7 days: the CA allows {DUPLICATE_LIMIT}"
        )
    } else {
        format!(
            "{counted} certificates for these names in the last 7 days: automatic renewals stop at \
             {AUTOMATIC_DUPLICATE_BUDGET}, keeping the last of the CA's {DUPLICATE_LIMIT} for `renew --force`"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-11-01 00:00 UTC);

    fn cert(days: i64) -> IssuedCertificate {
        IssuedCertificate {
            fingerprint: "ab".into(),
            serial: "01".into(),
            not_before: T0,
            not_after: T0 + time::Duration::days(days),
            issued_at: T0,
            ari_id: None,
            profile: None,
            chain_pem: String::new(),
            key_version: "v1".into(),
            order_url: "https://ca.test/order/1".into(),
            key_holder: None,
            stacked: vec![],
        }
    }

    #[test]
    fn renewal_time_follows_ari_then_policy_then_lifetime() {
        let window = RenewalWindow {
            start: T0 + time::Duration::days(60),
            end: T0 + time::Duration::days(62),
        };
        let days = |d: i64| T0 + time::Duration::days(d);
        let cases = [
            // 90 days: a third left at day 60.
            (cert(90), RenewalPolicy::Auto, None, days(60)),
            // 6-day certificates renew at half: day 3.
            (cert(6), RenewalPolicy::Auto, None, days(3)),
            // 10 days is not short: a third left.
            (
                cert(10),
                RenewalPolicy::Auto,
                None,
                T0 + time::Duration::days(10) * 2 / 3,
            ),
            (
                cert(90),
                RenewalPolicy::DaysBefore { days: 14 },
                None,
                days(76),
            ),
            // Days-before asking for earlier than ARI wins.
            (
                cert(90),
                RenewalPolicy::DaysBefore { days: 45 },
                Some(window),
                days(45),
            ),
            // A margin as long as the lifetime (6-day certificates, 7 days before) would
            // renew on every run: the lifetime decides instead.
            (
                cert(6),
                RenewalPolicy::DaysBefore { days: 7 },
                None,
                days(3),
            ),
            (
                cert(6),
                RenewalPolicy::DaysBefore { days: 6 },
                None,
                days(3),
            ),
            (
                cert(6),
                RenewalPolicy::DaysBefore { days: 5 },
                None,
                days(1),
            ),
        ];
        for (i, (c, policy, ari, want)) in cases.into_iter().enumerate() {
            assert_eq!(renew_at(&c, policy, ari.as_ref(), "shop"), want, "case {i}");
        }
        // Inside the ARI window, stable per id, spread across ids.
        let points: Vec<OffsetDateTime> = (0..50)
            .map(|i| {
                renew_at(
                    &cert(90),
                    RenewalPolicy::Auto,
                    Some(&window),
                    &format!("c{i}"),
                )
            })
            .collect();
        assert!(
            points
                .iter()
                .all(|p| *p >= window.start && *p <= window.end)
        );
        assert!(
            points
                .iter()
                .any(|p| *p < window.start + time::Duration::days(1))
        );
        assert!(
            points
                .iter()
                .any(|p| *p > window.start + time::Duration::days(1))
        );
        assert_eq!(
            renew_at(&cert(90), RenewalPolicy::Auto, Some(&window), "c1"),
            points[1]
        );
    }

    #[test]
    fn ari_is_asked_again_within_its_retry_after_bounds() {
        let renew = T0 + time::Duration::days(60);
        let h = |n: u64| Duration::from_secs(n * 3600);
        assert_eq!(next_check_at(T0, renew, false, Some(h(1))), renew);
        assert_eq!(
            next_check_at(T0, renew, true, None),
            T0 + time::Duration::hours(6)
        );
        assert_eq!(
            next_check_at(T0, renew, true, Some(h(2))),
            T0 + time::Duration::hours(2)
        );
        assert_eq!(
            next_check_at(T0, renew, true, Some(Duration::from_secs(1))),
            T0 + time::Duration::minutes(1)
        );
        assert_eq!(
            next_check_at(T0, renew, true, Some(h(100))),
            T0 + time::Duration::days(1)
        );
        let soon = T0 + time::Duration::minutes(30);
        assert_eq!(next_check_at(T0, soon, true, None), soon);
    }

    #[test]
    fn backoff_doubles_to_a_day_and_honours_retry_after() {
        let m = |n: u64| Duration::from_secs(n * 60);
        let cases = [
            (1, None, m(5)),
            (2, None, m(10)),
            (3, None, m(20)),
            (10, None, Duration::from_secs(24 * 3600)),
            (u32::MAX, None, Duration::from_secs(24 * 3600)),
            (1, Some(m(30)), m(30)),
            (3, Some(m(1)), m(20)),
        ];
        for (failures, retry_after, want) in cases {
            assert_eq!(backoff(failures, retry_after), want, "{failures}");
        }
    }

    #[test]
    fn the_duplicate_limit_is_never_spent_by_automatic_retries() {
        let at = |d: i64| T0 + time::Duration::days(d);
        let now = at(10);
        assert_eq!(may_order(&[], now, false), Ok(()));
        let three = [at(4), at(5), at(6)];
        assert_eq!(may_order(&three, now, false), Ok(()));
        let four = [at(4), at(5), at(6), at(7)];
        // Automatic: wait until the one from day 4 leaves the week.
        assert_eq!(may_order(&four, now, false), Err(at(11)));
        assert_eq!(
            may_order(&four, now, true),
            Ok(()),
            "a human may use the last one"
        );
        let five = [at(4), at(5), at(6), at(7), at(8)];
        assert_eq!(may_order(&five, now, true), Err(at(11)));
        // Older than a week no longer counts.
        let old = [at(1), at(2), at(3), at(5)];
        assert_eq!(may_order(&old, now, false), Ok(()));
        assert_eq!(recent_issuances(&old, now), vec![at(5)]);
    }
}
