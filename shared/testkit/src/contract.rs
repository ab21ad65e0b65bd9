//! The contract every [`Store`] implementation passes (see the `Store` trait's documentation).
//!
//! Run it with [`store_contract!`](crate::store_contract), giving an async function that
//! returns a fresh, empty store and a guard that keeps its backing resources alive:
//!
//! ```text
//! async fn fresh() -> (SqliteStore, tempfile::TempDir) { … }
//! certpilot_testkit::store_contract!(fresh);
//! ```

use certpilot_core::Classify;
use std::sync::Arc;

use certpilot_core::ports::{InventoryQuery, Store, StoreError};
use certpilot_core::{Endpoint, ErrorKind, Problem, Tags, Target};
use time::{Duration, OffsetDateTime};

use crate::observations::observed;

/// Generates one `#[tokio::test]` per contract case, each on a store from `$fresh().await`.
#[macro_export]
macro_rules! store_contract {
    ($fresh:path) => {
        $crate::store_contract!(@cases $fresh;
            missing_endpoint_reads_as_none_and_removes_as_not_found,
            add_stores_version_one_and_refuses_duplicates,
            update_requires_the_stored_version,
            concurrent_updates_let_exactly_one_win,
            endpoints_are_listed_sorted_by_key,
            removing_an_endpoint_drops_it_from_inventory_but_keeps_history,
            inventory_keeps_the_latest_observation_per_address,
            inventory_pages_in_target_order,
            an_older_observation_does_not_replace_the_latest,
            recording_the_same_observation_twice_is_idempotent,
            inventory_tracks_when_the_certificate_was_first_seen_and_last_changed,
            expiring_filter_keeps_only_certificates_expiring_before_the_deadline,
            registered_tags_win_over_observation_tags,
            history_is_newest_first_and_limited,
            a_large_batch_is_recorded_whole,
            unchanged_observations_only_refresh_last_seen_once_a_day,
            failed_scans_in_a_row_are_counted_up_to_the_cap_and_reset_by_a_success,
            due_endpoints_are_those_in_the_slots_or_explicitly_due,
            setting_due_keeps_the_version_and_skips_removed_endpoints,
            the_tick_advances_only_from_what_was_read
        );
    };
    (@cases $fresh:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _guard) = $fresh().await;
                $crate::contract::$case(std::sync::Arc::new(store)).await;
            }
        )*
    };
}

fn t0() -> OffsetDateTime {
    OffsetDateTime::UNIX_EPOCH + Duration::days(20_000)
}

fn endpoint(target: &str, tags: &[(&str, &str)]) -> Endpoint {
    let target: Target = target.parse().expect("valid target");
    let tags: Tags = tags
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Endpoint::new(target, tags, t0())
}

pub async fn missing_endpoint_reads_as_none_and_removes_as_not_found<S: Store>(s: Arc<S>) {
    assert_eq!(s.endpoint("nope.test:443").await.unwrap(), None);
    assert!(matches!(
        s.remove_endpoint("nope.test:443").await,
        Err(StoreError::NotFound { .. })
    ));
    let mut ghost = endpoint("nope.test", &[]);
    ghost.version = 1;
    assert!(matches!(
        s.update_endpoint(&ghost).await,
        Err(StoreError::NotFound { .. })
    ));
}

pub async fn add_stores_version_one_and_refuses_duplicates<S: Store>(s: Arc<S>) {
    let added = s
        .add_endpoint(&endpoint("shop.test", &[("owner", "payments")]))
        .await
        .unwrap();
    assert_eq!(added.version, 1);
    assert_eq!(added.key(), "shop.test:443");
    let read = s.endpoint("shop.test:443").await.unwrap().unwrap();
    assert_eq!(read, added);
    assert!(matches!(
        s.add_endpoint(&endpoint("shop.test:443", &[])).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    // The failed add changed nothing.
    assert_eq!(s.endpoint("shop.test:443").await.unwrap().unwrap(), added);
}

pub async fn update_requires_the_stored_version<S: Store>(s: Arc<S>) {
    let added = s.add_endpoint(&endpoint("shop.test", &[])).await.unwrap();
    let mut change = added.clone();
    change.tags.insert("env".into(), "prod".into());
    let updated = s.update_endpoint(&change).await.unwrap();
    assert_eq!(updated.version, 2);
    assert_eq!(updated.tags.get("env").map(String::as_str), Some("prod"));

    // A writer still holding version 1 loses, and writes nothing.
    let mut stale = added.clone();
    stale.tags.insert("env".into(), "dev".into());
    let err = s.update_endpoint(&stale).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { expected: 1, .. }),
        "{err}"
    );
    assert!(err.is_retryable());
    assert_eq!(s.endpoint("shop.test:443").await.unwrap().unwrap(), updated);
}

pub async fn concurrent_updates_let_exactly_one_win<S: Store + 'static>(s: Arc<S>) {
    let added = s.add_endpoint(&endpoint("race.test", &[])).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = s.clone();
        let mut change = added.clone();
        change.tags.insert("writer".into(), i.to_string());
        tasks.push(tokio::spawn(
            async move { s.update_endpoint(&change).await },
        ));
    }
    let mut wins = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(e) => {
                wins += 1;
                assert_eq!(e.version, 2);
            }
            Err(StoreError::Conflict { .. }) => {}
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(
        s.endpoint("race.test:443").await.unwrap().unwrap().version,
        2
    );
}

pub async fn endpoints_are_listed_sorted_by_key<S: Store>(s: Arc<S>) {
    for t in ["c.test", "a.test:8443", "smtp://b.test", "a.test"] {
        s.add_endpoint(&endpoint(t, &[])).await.unwrap();
    }
    let keys: Vec<_> = s
        .endpoints()
        .await
        .unwrap()
        .iter()
        .map(Endpoint::key)
        .collect();
    assert_eq!(
        keys,
        vec![
            "a.test:443",
            "a.test:8443",
            "c.test:443",
            "smtp://b.test:25"
        ]
    );
}

pub async fn removing_an_endpoint_drops_it_from_inventory_but_keeps_history<S: Store>(s: Arc<S>) {
    s.add_endpoint(&endpoint("gone.test", &[])).await.unwrap();
    let obs = observed("gone.test:443", "127.0.0.1:443")
        .cert("aa", t0() + Duration::days(30))
        .build();
    s.record_observations(std::slice::from_ref(&obs))
        .await
        .unwrap();
    s.remove_endpoint("gone.test:443").await.unwrap();
    assert_eq!(s.endpoint("gone.test:443").await.unwrap(), None);
    assert!(
        s.inventory(&InventoryQuery::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.history("gone.test:443", 10).await.unwrap(), vec![obs]);
}

pub async fn inventory_keeps_the_latest_observation_per_address<S: Store>(s: Arc<S>) {
    let a = "shop.test:443";
    let batch = vec![
        observed(a, "10.0.0.1:443")
            .at(t0())
            .cert("old", t0() + Duration::days(3))
            .build(),
        observed(a, "10.0.0.2:443")
            .at(t0())
            .cert("old", t0() + Duration::days(3))
            .build(),
    ];
    s.record_observations(&batch).await.unwrap();
    let later = vec![
        observed(a, "10.0.0.1:443")
            .at(t0() + Duration::hours(1))
            .cert("new", t0() + Duration::days(90))
            .build(),
        observed(a, "10.0.0.2:443")
            .at(t0() + Duration::hours(1))
            .error(ErrorKind::Timeout)
            .build(),
    ];
    s.record_observations(&later).await.unwrap();
    let inv = s.inventory(&InventoryQuery::default()).await.unwrap();
    let rows: Vec<_> = inv
        .iter()
        .map(|e| (e.observation.address_key(), e.observation.fingerprint()))
        .collect();
    assert_eq!(
        rows,
        vec![("10.0.0.1:443", Some("new")), ("10.0.0.2:443", None)]
    );
    assert_eq!(
        inv[1].observation.error.as_ref().map(|e| e.kind),
        Some(ErrorKind::Timeout)
    );
}

pub async fn an_older_observation_does_not_replace_the_latest<S: Store>(s: Arc<S>) {
    let newer = observed("shop.test:443", "10.0.0.1:443")
        .at(t0() + Duration::hours(2))
        .cert("new", t0() + Duration::days(90))
        .build();
    let older = observed("shop.test:443", "10.0.0.1:443")
        .at(t0())
        .cert("old", t0() + Duration::days(3))
        .build();
    s.record_observations(std::slice::from_ref(&newer))
        .await
        .unwrap();
    s.record_observations(std::slice::from_ref(&older))
        .await
        .unwrap();
    let inv = s.inventory(&InventoryQuery::default()).await.unwrap();
    assert_eq!(inv.len(), 1);
    assert_eq!(inv[0].observation, newer);
    // A late, older observation is not history either: it would rewrite the past.
    assert_eq!(s.history("shop.test:443", 10).await.unwrap(), vec![newer]);
}

pub async fn recording_the_same_observation_twice_is_idempotent<S: Store>(s: Arc<S>) {
    let obs = observed("shop.test:443", "10.0.0.1:443")
        .cert("aa", t0() + Duration::days(30))
        .build();
    s.record_observations(std::slice::from_ref(&obs))
        .await
        .unwrap();
    let before = s.inventory(&InventoryQuery::default()).await.unwrap();
    s.record_observations(std::slice::from_ref(&obs))
        .await
        .unwrap();
    assert_eq!(
        s.inventory(&InventoryQuery::default()).await.unwrap(),
        before
    );
    assert_eq!(s.history("shop.test:443", 10).await.unwrap(), vec![obs]);
}

pub async fn inventory_tracks_when_the_certificate_was_first_seen_and_last_changed<S: Store>(
    s: Arc<S>,
) {
    let at = |h: i64| t0() + Duration::hours(h);
    let exp = t0() + Duration::days(60);
    let steps = [
        observed("shop.test:443", "10.0.0.1:443")
            .at(at(0))
            .cert("A", exp),
        observed("shop.test:443", "10.0.0.1:443")
            .at(at(1))
            .cert("A", exp),
        observed("shop.test:443", "10.0.0.1:443")
            .at(at(2))
            .error(ErrorKind::Timeout),
        observed("shop.test:443", "10.0.0.1:443")
            .at(at(3))
            .cert("A", exp),
        observed("shop.test:443", "10.0.0.1:443")
            .at(at(4))
            .cert("A", exp)
            .problem(Problem::IncompleteChain),
        observed("shop.test:443", "10.0.0.1:443")
            .at(at(5))
            .cert("B", exp),
        observed("shop.test:443", "10.0.0.1:443")
            .at(at(6))
            .cert("B", exp),
    ];
    let want = [
        (Some(at(0)), at(0)),
        (Some(at(0)), at(0)), // same certificate, nothing changed
        (None, at(2)),        // an error: no certificate served, a change
        (Some(at(0)), at(3)), // A again: first seen long ago, but the state changed
        (Some(at(0)), at(4)), // new validation problem
        (Some(at(5)), at(5)), // renewed
        (Some(at(5)), at(5)),
    ];
    for (step, (first_seen, last_changed)) in steps.into_iter().zip(want) {
        s.record_observations(&[step.build()]).await.unwrap();
        let inv = s.inventory(&InventoryQuery::default()).await.unwrap();
        assert_eq!(inv.len(), 1);
        assert_eq!(
            (inv[0].cert_first_seen, inv[0].last_changed),
            (first_seen, last_changed),
            "after the observation at {}",
            inv[0].observation.scanned_at
        );
    }
}

pub async fn expiring_filter_keeps_only_certificates_expiring_before_the_deadline<S: Store>(
    s: Arc<S>,
) {
    let batch = vec![
        observed("soon.test:443", "10.0.0.1:443")
            .cert("s", t0() + Duration::days(5))
            .build(),
        observed("later.test:443", "10.0.0.2:443")
            .cert("l", t0() + Duration::days(50))
            .build(),
        observed("gone.test:443", "10.0.0.3:443")
            .cert("g", t0() - Duration::days(1))
            .build(),
        observed("down.test:443", "10.0.0.4:443")
            .error(ErrorKind::Refused)
            .build(),
    ];
    s.record_observations(&batch).await.unwrap();
    let q = InventoryQuery {
        expiring_before: Some(t0() + Duration::days(30)),
        ..InventoryQuery::default()
    };
    let targets: Vec<_> = s
        .inventory(&q)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.observation.target)
        .collect();
    assert_eq!(targets, vec!["gone.test:443", "soon.test:443"]);
    assert_eq!(
        s.inventory(&InventoryQuery::default()).await.unwrap().len(),
        4
    );
}

/// Pages follow one another in (target, address) order, with nothing left out or repeated.
pub async fn inventory_pages_in_target_order<S: Store>(s: Arc<S>) {
    let batch: Vec<_> = ["c.test:443", "a.test:443", "b.test:443"]
        .iter()
        .flat_map(|t| {
            ["10.0.0.2:443", "10.0.0.1:443"]
                .map(|a| observed(t, a).cert("x", t0() + Duration::days(9)).build())
        })
        .collect();
    s.record_observations(&batch).await.unwrap();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = s
            .inventory(&InventoryQuery {
                after: after.clone(),
                limit: Some(4),
                ..InventoryQuery::default()
            })
            .await
            .unwrap();
        assert!(page.len() <= 4);
        let Some(last) = page.last() else { break };
        after = Some((
            last.observation.target.clone(),
            last.observation.address_key().to_owned(),
        ));
        seen.extend(
            page.iter()
                .map(|e| format!("{} {}", e.observation.target, e.observation.address_key())),
        );
    }
    assert_eq!(
        seen,
        [
            "a.test:443 10.0.0.1:443",
            "a.test:443 10.0.0.2:443",
            "b.test:443 10.0.0.1:443",
            "b.test:443 10.0.0.2:443",
            "c.test:443 10.0.0.1:443",
            "c.test:443 10.0.0.2:443",
        ]
    );
}

pub async fn registered_tags_win_over_observation_tags<S: Store>(s: Arc<S>) {
    s.add_endpoint(&endpoint("shop.test", &[("owner", "payments")]))
        .await
        .unwrap();
    let batch = vec![
        observed("shop.test:443", "10.0.0.1:443")
            .tag("owner", "stale")
            .cert("a", t0() + Duration::days(5))
            .build(),
        observed("adhoc.test:443", "10.0.0.2:443")
            .tag("owner", "search")
            .cert("b", t0() + Duration::days(5))
            .build(),
    ];
    s.record_observations(&batch).await.unwrap();
    let inv = s.inventory(&InventoryQuery::default()).await.unwrap();
    let rows: Vec<_> = inv
        .iter()
        .map(|e| {
            (
                e.observation.target.as_str(),
                e.registered,
                e.tags.get("owner").cloned(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("adhoc.test:443", false, Some("search".to_owned())),
            ("shop.test:443", true, Some("payments".to_owned())),
        ]
    );
}

pub async fn history_is_newest_first_and_limited<S: Store>(s: Arc<S>) {
    let batch: Vec<_> = (0..5)
        .map(|h| {
            observed("shop.test:443", "10.0.0.1:443")
                .at(t0() + Duration::hours(h))
                .cert(&format!("renewed-{h}"), t0() + Duration::days(30))
                .build()
        })
        .collect();
    s.record_observations(&batch).await.unwrap();
    let history = s.history("shop.test:443", 3).await.unwrap();
    let times: Vec<_> = history.iter().map(|o| o.scanned_at).collect();
    assert_eq!(
        times,
        vec![
            t0() + Duration::hours(4),
            t0() + Duration::hours(3),
            t0() + Duration::hours(2)
        ]
    );
    assert!(s.history("other.test:443", 3).await.unwrap().is_empty());
}

pub async fn a_large_batch_is_recorded_whole<S: Store>(s: Arc<S>) {
    let batch: Vec<_> = (0..500)
        .map(|i| {
            observed(&format!("host{i:03}.test:443"), "10.0.0.1:443")
                .cert(&format!("fp{i}"), t0() + Duration::days(i))
                .build()
        })
        .collect();
    s.record_observations(&batch).await.unwrap();
    let inv = s.inventory(&InventoryQuery::default()).await.unwrap();
    assert_eq!(inv.len(), 500);
    assert_eq!(inv[0].observation.target, "host000.test:443");
    assert_eq!(inv[499].observation, batch[499]);
}

pub async fn unchanged_observations_only_refresh_last_seen_once_a_day<S: Store>(s: Arc<S>) {
    let at = |h: i64| t0() + Duration::hours(h);
    let scan = |h: i64| {
        observed("shop.test:443", "10.0.0.1:443")
            .at(at(h))
            .cert("same", t0() + Duration::days(60))
            .build()
    };
    let mut last_seen = Vec::new();
    for h in [0, 1, 2, 23, 24, 25, 47, 48] {
        s.record_observations(&[scan(h)]).await.unwrap();
        let inv = s.inventory(&InventoryQuery::default()).await.unwrap();
        assert_eq!(inv.len(), 1);
        assert_eq!(
            inv[0].observation.scanned_at,
            at(0),
            "the latest change stays"
        );
        assert_eq!(inv[0].last_changed, at(0));
        last_seen.push(inv[0].last_seen);
    }
    assert_eq!(
        last_seen,
        vec![at(0), at(0), at(0), at(0), at(24), at(24), at(24), at(48)]
    );
    // History holds the one change, not eight scans.
    assert_eq!(
        s.history("shop.test:443", 100).await.unwrap(),
        vec![scan(0)]
    );
}

pub async fn failed_scans_in_a_row_are_counted_up_to_the_cap_and_reset_by_a_success<S: Store>(
    s: Arc<S>,
) {
    use certpilot_core::policy::FAILURE_STREAK_CAP;
    let at = |h: i64| t0() + Duration::hours(h);
    let failed = |h: i64, kind| {
        observed("down.test:443", "10.0.0.9:443")
            .at(at(h))
            .error(kind)
            .build()
    };
    let mut streaks = Vec::new();
    // Any error counts: a refused connection, then timeouts.
    for h in 0..12 {
        let kind = if h == 0 {
            ErrorKind::Refused
        } else {
            ErrorKind::Timeout
        };
        streaks.extend(s.record_observations(&[failed(h, kind)]).await.unwrap());
    }
    let cap = FAILURE_STREAK_CAP;
    assert_eq!(streaks, vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, cap, cap]);
    let inv = s.inventory(&InventoryQuery::default()).await.unwrap();
    assert_eq!(inv[0].failures, cap);
    assert_eq!(
        s.history("down.test:443", 100).await.unwrap().len(),
        2,
        "counting writes no history: the first failure and the change of error kind"
    );
    // A late, older observation neither counts nor resets.
    assert_eq!(
        s.record_observations(&[failed(5, ErrorKind::Timeout)])
            .await
            .unwrap(),
        vec![cap]
    );
    let served = observed("down.test:443", "10.0.0.9:443")
        .at(at(20))
        .cert("back", t0() + Duration::days(60))
        .build();
    assert_eq!(s.record_observations(&[served]).await.unwrap(), vec![0]);
    assert_eq!(
        s.inventory(&InventoryQuery::default()).await.unwrap()[0].failures,
        0
    );
    assert_eq!(
        s.record_observations(&[failed(21, ErrorKind::Refused)])
            .await
            .unwrap(),
        vec![1],
        "a success ends the streak"
    );
}

pub async fn due_endpoints_are_those_in_the_slots_or_explicitly_due<S: Store>(s: Arc<S>) {
    use certpilot_core::policy::SlotRange;
    use certpilot_core::ports::{DueQuery, DueUpdate};
    let names: Vec<String> = (0..40).map(|i| format!("host-{i}.test:443")).collect();
    for name in &names {
        s.add_endpoint(&endpoint(name, &[("owner", "x")]))
            .await
            .unwrap();
    }
    let due = |slots: Vec<SlotRange>, now: OffsetDateTime| {
        let s = s.clone();
        async move {
            s.endpoints_due(&DueQuery { slots, now })
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.key())
                .collect::<Vec<_>>()
        }
    };
    // New endpoints are due from when they were added, whatever their slot.
    assert_eq!(
        due(vec![], t0() - Duration::SECOND).await,
        Vec::<String>::new()
    );
    let mut all = names.clone();
    all.sort();
    assert_eq!(
        due(vec![], t0()).await,
        all,
        "due_at is inclusive, listed by key"
    );
    // Once scanned they fall back to their slot.
    let cleared: Vec<DueUpdate> = names
        .iter()
        .map(|t| DueUpdate {
            target: t.clone(),
            due_at: None,
        })
        .collect();
    assert_eq!(s.set_due(&cleared).await.unwrap(), names.len());
    assert_eq!(
        due(vec![], t0() + Duration::days(1)).await,
        Vec::<String>::new()
    );
    assert_eq!(due(vec![SlotRange::ALL], t0()).await, all);
    // The lower half of the slots, and the upper half wrapped in two ranges.
    let half = u32::MAX / 2;
    let slot = |t: &str| certpilot_core::policy::scan_slot(t);
    let lower: Vec<String> = all.iter().filter(|t| slot(t) <= half).cloned().collect();
    let upper: Vec<String> = all.iter().filter(|t| slot(t) > half).cloned().collect();
    assert!(!lower.is_empty() && !upper.is_empty());
    assert_eq!(
        due(
            vec![SlotRange {
                first: 0,
                last: half
            }],
            t0()
        )
        .await,
        lower
    );
    let (first, last) = (slot(&upper[0]), slot(&upper[1]));
    let (first, last) = (first.min(last), first.max(last));
    assert_eq!(
        due(
            vec![
                SlotRange {
                    first,
                    last: u32::MAX
                },
                SlotRange { first: 0, last }
            ],
            t0()
        )
        .await,
        all,
        "ranges are inclusive and an endpoint is listed once"
    );
    // An explicit due time adds an endpoint outside the slots.
    s.set_due(&[DueUpdate {
        target: upper[0].clone(),
        due_at: Some(t0() + Duration::hours(1)),
    }])
    .await
    .unwrap();
    let mut want = lower.clone();
    want.push(upper[0].clone());
    want.sort();
    assert_eq!(
        due(
            vec![SlotRange {
                first: 0,
                last: half
            }],
            t0() + Duration::hours(1)
        )
        .await,
        want
    );
    // Until its due time it is not due, even in its slot.
    assert!(!due(vec![SlotRange::ALL], t0()).await.contains(&upper[0]));
    let listed = s
        .endpoints_due(&DueQuery {
            slots: vec![],
            now: t0() + Duration::hours(2),
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].due_at, Some(t0() + Duration::hours(1)));
    assert_eq!(listed[0].tags.get("owner").map(String::as_str), Some("x"));
}

pub async fn setting_due_keeps_the_version_and_skips_removed_endpoints<S: Store>(s: Arc<S>) {
    use certpilot_core::ports::DueUpdate;
    let added = s.add_endpoint(&endpoint("kept.test", &[])).await.unwrap();
    assert_eq!(added.due_at, Some(t0()), "a new endpoint is due at once");
    s.add_endpoint(&endpoint("gone.test", &[])).await.unwrap();
    s.remove_endpoint("gone.test:443").await.unwrap();
    let next = t0() + Duration::hours(1);
    let n = s
        .set_due(&[
            DueUpdate {
                target: "kept.test:443".into(),
                due_at: Some(next),
            },
            DueUpdate {
                target: "gone.test:443".into(),
                due_at: Some(next),
            },
        ])
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        s.endpoint("gone.test:443").await.unwrap(),
        None,
        "not re-created"
    );
    let kept = s.endpoint("kept.test:443").await.unwrap().unwrap();
    assert_eq!(kept.version, added.version, "scheduling is not an edit");
    assert_eq!(kept.due_at, Some(next));
    // An edit after scheduling still works with the version read, and keeps the due time.
    let mut edit = kept.clone();
    edit.tags.insert("env".into(), "prod".into());
    let edited = s.update_endpoint(&edit).await.unwrap();
    assert_eq!(edited.due_at, Some(next), "editing tags keeps the schedule");
}

pub async fn the_tick_advances_only_from_what_was_read<S: Store>(s: Arc<S>) {
    assert_eq!(s.last_tick().await.unwrap(), None);
    let (a, b) = (t0(), t0() + Duration::minutes(5));
    s.advance_tick(None, a).await.unwrap();
    assert_eq!(s.last_tick().await.unwrap(), Some(a));
    // A second run that read "no tick" lost the race.
    assert!(matches!(
        s.advance_tick(None, b).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(s.last_tick().await.unwrap(), Some(a));
    s.advance_tick(Some(a), b).await.unwrap();
    assert!(matches!(
        s.advance_tick(Some(a), b + Duration::minutes(5)).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(s.last_tick().await.unwrap(), Some(b));
    // Two runs that read the same tick race; exactly one advances it.
    let (x, y) = (s.clone(), s.clone());
    let c = b + Duration::minutes(5);
    let (rx, ry) = tokio::join!(
        async move { x.advance_tick(Some(b), c).await },
        async move { y.advance_tick(Some(b), c + Duration::SECOND).await }
    );
    assert_eq!(rx.is_ok() as u8 + ry.is_ok() as u8, 1, "{rx:?} {ry:?}");
}
