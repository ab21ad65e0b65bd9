//! `certpilot serve`'s router under load: 10,000 endpoints and 1,000 certificates in SQLite,
//! 50 concurrent clients on loopback, each on its persistent connection, reading `GET /inventory?limit=100` and
//! `GET /certificates/{id}` while a writer records observations at a scan's pace. Prints
//! latency percentiles per route and the writer's progress.
//!
//! `cargo run --release -p certpilot-e2e --bin api-bench [-- --seconds 20 --clients 50]`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use certpilot_core::model::endpoint::{Endpoint, Tags};
use certpilot_core::ports::{CertificateStore as _, EndpointStore as _, ObservationStore as _};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ENDPOINTS: usize = 10_000;
const CERTIFICATES: usize = 1_000;
/// Concurrent clients unless `--clients N` says otherwise.
const CLIENTS: usize = 50;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// One client's persistent HTTP/1.1 connection, as an HTTP client's pool keeps one.
struct Connection {
    stream: tokio::io::BufReader<tokio::net::TcpStream>,
}

impl Connection {
    async fn open(addr: std::net::SocketAddr) -> Connection {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Connection {
            stream: tokio::io::BufReader::new(stream),
        }
    }

    /// `GET path`: the status and the body's length.
    async fn get(&mut self, path: &str) -> (u16, usize) {
        use tokio::io::AsyncBufReadExt;
        let req = format!("GET {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer x\r\n\r\n");
        self.stream
            .get_mut()
            .write_all(req.as_bytes())
            .await
            .unwrap();
        let mut status = 0;
        let mut length = 0;
        let mut line = String::new();
        loop {
            line.clear();
            self.stream.read_line(&mut line).await.unwrap();
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if status == 0 {
                status = l
                    .split_whitespace()
                    .nth(1)
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
            } else if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await.unwrap();
        (status, length)
    }
}

#[tokio::main]
async fn main() {
    let seconds: u64 = std::env::args()
        .skip_while(|a| a != "--seconds")
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let clients_n: usize = std::env::args()
        .skip_while(|a| a != "--clients")
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(CLIENTS);
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(certpilot_sqlite::SqliteStore::open(dir.path().join("db")).unwrap());
    let now = time::OffsetDateTime::now_utc();
    println!("filling the store: {ENDPOINTS} endpoints, {CERTIFICATES} certificates…");
    for i in 0..ENDPOINTS {
        let target = format!("host{i}.example.com:443").parse().unwrap();
        store
            .add_endpoint(&Endpoint::new(
                target,
                Tags::from([("owner".into(), format!("team{}", i % 20))]),
                now,
            ))
            .await
            .unwrap();
    }
    for i in 0..CERTIFICATES {
        let mut c = certpilot_testkit::renewal_contract::managed(
            &format!("cert{i}.example.com"),
            time::Duration::hours(1),
        );
        c.id = format!("cert{i}");
        store.add_certificate(&c).await.unwrap();
    }
    let app = certpilot_app::App::local(store.clone(), dir.path().join("secrets"));
    let addr = certpilot_e2e::serve_router_as(app, "token:bench").await;

    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(0));
    // The writer: batches of 100 observations, as a scan records them.
    let writer = {
        let (store, stop, written) = (store.clone(), stop.clone(), written.clone());
        tokio::spawn(async move {
            let mut round = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let batch: Vec<_> = (0..100)
                    .map(|j| {
                        let i = (round * 100 + j) % ENDPOINTS;
                        certpilot_testkit::observations::observed(
                            &format!("host{i}.example.com:443"),
                            "192.0.2.1:443",
                        )
                        .cert(
                            &format!("{:064x}", round * 100 + j),
                            time::OffsetDateTime::now_utc() + time::Duration::days(60),
                        )
                        .build()
                    })
                    .collect();
                store.record_observations(&batch).await.unwrap();
                written.fetch_add(batch.len(), Ordering::Relaxed);
                round += 1;
                // A scan's pace: 100 observations every 100 ms is 10,000 endpoints in under
                // two minutes, faster than any real scan records them.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    println!(
        "{clients_n} clients for {seconds} s while a writer records 1,000 observations a second…"
    );
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..clients_n {
        clients.spawn(async move {
            let mut connection = Connection::open(addr).await;
            let mut lists = Vec::new();
            let mut shows = Vec::new();
            let mut n = c;
            while Instant::now() < deadline {
                let started = Instant::now();
                if n % 2 == 0 {
                    let (status, _) = connection.get("/inventory?limit=100").await;
                    assert_eq!(status, 200);
                    lists.push(started.elapsed());
                } else {
                    let (status, _) = connection
                        .get(&format!("/certificates/cert{}", n % CERTIFICATES))
                        .await;
                    assert_eq!(status, 200);
                    shows.push(started.elapsed());
                }
                n += 1;
            }
            (lists, shows)
        });
    }
    let (mut lists, mut shows) = (Vec::new(), Vec::new());
    while let Some(r) = clients.join_next().await {
        let (l, s) = r.unwrap();
        lists.extend(l);
        shows.extend(s);
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    for (name, v) in [
        ("GET /inventory?limit=100", &mut lists),
        ("GET /certificates/{id}", &mut shows),
    ] {
        v.sort_unstable();
        println!(
            "  {name}: {} requests, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            v.len(),
            percentile(v, 0.5).as_secs_f64() * 1000.0,
            percentile(v, 0.99).as_secs_f64() * 1000.0,
            v.last().copied().unwrap_or_default().as_secs_f64() * 1000.0
        );
    }
    println!(
        "  observations written meanwhile: {} ({:.0}/s)",
        written.load(Ordering::Relaxed),
        written.load(Ordering::Relaxed) as f64 / seconds as f64
    );
}
