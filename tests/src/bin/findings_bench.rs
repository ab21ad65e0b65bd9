//! The findings benchmark: evaluates N observations (a tenth expiring within 30 days, a
//! twentieth failing validation, the rest healthy) on one thread, then reconciles the
//! conditions with the findings already stored (the steady state: nothing changed). Prints
//! the time of each step.
//!
//! ```text
//! cargo run --release -p certpilot-e2e --bin findings-bench -- --count 100000
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use certpilot_core::model::observation::Problem;
use certpilot_core::policy::findings::{FindingsPolicy, endpoint_conditions, reconcile};
use certpilot_testkit::observations::observed;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let count: usize = args
        .iter()
        .position(|a| a == "--count")
        .and_then(|i| args.get(i + 1))
        .map_or(100_000, |v| v.parse().expect("a number"));
    let now = time::OffsetDateTime::now_utc();
    let policy = FindingsPolicy::default();
    let observations: Vec<_> = (0..count)
        .map(|i| {
            let days = if i % 10 == 0 { 12 } else { 80 };
            let mut b = observed(&format!("host-{i}.example.com:443"), "192.0.2.1:443")
                .at(now)
                .cert(&format!("{i:064x}"), now + time::Duration::days(days))
                .tag("owner", if i % 2 == 0 { "payments" } else { "search" });
            if i % 20 == 7 {
                b = b.problem(Problem::IncompleteChain);
            }
            b.build()
        })
        .collect();

    let started = Instant::now();
    let conditions: Vec<_> = observations
        .iter()
        .flat_map(|o| endpoint_conditions(o, 0, false, now, &policy))
        .collect();
    let evaluated = started.elapsed();

    let stored = reconcile(&[], &conditions, &|_| true, now, &policy);
    let started = Instant::now();
    let changed = reconcile(&stored, &conditions, &|_| true, now, &policy);
    let reconciled = started.elapsed();
    assert!(changed.is_empty(), "the steady state changes nothing");
    println!(
        "{count} observations: {} conditions evaluated in {:.1} ms ({:.0} observations/s); reconciled with {} stored findings in {:.1} ms, {} changed",
        conditions.len(),
        evaluated.as_secs_f64() * 1000.0,
        count as f64 / evaluated.as_secs_f64(),
        stored.len(),
        reconciled.as_secs_f64() * 1000.0,
        changed.len()
    );
}
