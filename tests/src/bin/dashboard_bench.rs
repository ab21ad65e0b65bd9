//! The dashboard over a large estate, measured in the browser: COUNT endpoints (default
//! 10,000; 70% healthy, 15% expiring, 10% failing, 5% unreachable) and 200 managed
//! certificates, in SQLite or in DynamoDB (moto), served by the API's router on loopback;
//! headless Chromium loads each page 5 times and the Navigation Timing API says when its
//! first byte arrived (after the request was sent) and when it was fully loaded. Prints the
//! medians per page.
//!
//! `cargo run --release -p certpilot-e2e --bin dashboard-bench -- [--count 10000] [--store sqlite|dynamodb]`
//! (Chromium and chromium-driver as `scripts/test.sh` installs them; moto for DynamoDB.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use certpilot_core::ports::{CertificateStore, ObservationStore};
use certpilot_testkit::observations::observed;
use certpilot_testkit::webdriver::{Chromium, Options};

fn arg(name: &str) -> Option<String> {
    std::env::args().skip_while(|a| a != name).nth(1)
}

async fn fill<S: ObservationStore + CertificateStore>(store: &S, count: usize, batch_size: usize) {
    let now = time::OffsetDateTime::now_utc();
    let mut batch = Vec::new();
    for i in 0..count {
        let mut o = observed(&format!("host{i:05}.example.com:443"), "192.0.2.1:443")
            .at(now - time::Duration::minutes(10))
            .tag("owner", &format!("team{}", i % 20));
        o = match i % 20 {
            0..14 => o.cert(
                &format!("{i:064x}"),
                now + time::Duration::days(31 + (i % 60) as i64),
            ),
            14..17 => o.cert(
                &format!("{i:064x}"),
                now + time::Duration::days(1 + (i % 29) as i64),
            ),
            17..19 => o
                .cert(&format!("{i:064x}"), now - time::Duration::days(1))
                .problem(certpilot_core::Problem::Expired),
            _ => o,
        };
        batch.push(o.build());
        if batch.len() == batch_size {
            store.record_observations(&batch).await.unwrap();
            batch.clear();
        }
    }
    store.record_observations(&batch).await.unwrap();
    for i in 0..200 {
        let mut c = certpilot_testkit::renewal_contract::managed(
            &format!("cert{i}.example.com"),
            time::Duration::hours(1),
        );
        c.id = format!("cert{i}");
        store.add_certificate(&c).await.unwrap();
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let count: usize = arg("--count")
        .and_then(|c| c.parse().ok())
        .unwrap_or(10_000);
    let kind = arg("--store").unwrap_or_else(|| "sqlite".into());
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let app = match kind.as_str() {
        "sqlite" => {
            let store =
                Arc::new(certpilot_sqlite::SqliteStore::open(dir.path().join("db")).unwrap());
            fill(store.as_ref(), count, 100).await;
            certpilot_app::App::local(store, dir.path().join("secrets"))
        }
        "dynamodb" => {
            let moto = certpilot_testkit::procs::shared_moto();
            let aws = certpilot_e2e::moto_sdk_config(&moto.endpoint_url);
            let store = Arc::new(certpilot_dynamodb::DynamoStore::new(
                certpilot_dynamodb::Client::new(&aws),
                format!("dashboard-bench-{}", std::process::id()),
            ));
            store.create_table().await.unwrap();
            // moto takes a small transaction at a time within the SDK's 30 s.
            fill(store.as_ref(), count, 10).await;
            certpilot_app::App::new(
                store,
                Arc::new(certpilot_files::FileSecretStore::new(
                    dir.path().join("secrets"),
                )),
            )
        }
        other => panic!("--store {other}: sqlite or dynamodb"),
    };
    println!(
        "{count} endpoints and 200 certificates in {kind}, filled in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // As `certpilot serve --no-auth`: the front knows the caller, the dashboard opens a
    // session for it.
    let url = format!(
        "http://{}",
        certpilot_e2e::serve_router_as(app, "local:bench").await
    );

    let b = Chromium::start(&Options::default());
    b.goto(&format!("{url}/ui"));
    println!(
        "{:<40} {:>14} {:>14} {:>10}",
        "page", "first byte ms", "loaded ms", "HTML KiB"
    );
    for path in [
        "/ui",
        "/ui/inventory",
        "/ui/inventory?state=expiring&sort=days",
        "/ui/inventory?q=host09&tag=owner%3Dteam3",
        "/ui/inventory?page=150",
        "/ui/certificates",
        "/ui/certificates/cert7",
        "/ui/findings",
        "/ui/request",
    ] {
        let (mut first, mut loaded, mut size) = (Vec::new(), Vec::new(), 0.0);
        for _ in 0..5 {
            b.goto(&format!("{url}{path}"));
            let t = b.execute(
                "const n = performance.getEntriesByType('navigation')[0]; return [n.responseStart - n.requestStart, n.loadEventEnd - n.startTime, n.decodedBodySize];",
                serde_json::json!([]),
            );
            first.push(t[0].as_f64().unwrap_or(f64::NAN));
            loaded.push(t[1].as_f64().unwrap_or(f64::NAN));
            size = t[2].as_f64().unwrap_or(0.0) / 1024.0;
        }
        println!(
            "{path:<40} {:>14.1} {:>14.1} {size:>10.1}",
            median(first),
            median(loaded)
        );
    }
}
