//! Hardening II, item 6, through the CLI: fields a hostile server chose never forge table rows
//! or run as spreadsheet formulas.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use certpilot_testkit::certs::Ca;
use certpilot_testkit::servers;

/// An issuer name that clears the screen and starts a forged row.
const HOSTILE: &str = "\u{1b}[2J\nforged.test  1  2099-01-01  ok";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_hostile_names_are_escaped_in_tables_and_neutralised_in_csv() {
    let ca = Ca::new(HOSTILE);
    // A SAN a spreadsheet would run as a formula.
    let leaf = ca
        .leaf(&["=HYPERLINK(\"http://evil.test\")", "localhost"])
        .expiring_in_days(60)
        .build();
    let server = servers::tls_default(&leaf).await;
    let dir = tempfile::tempdir().unwrap();
    let run = |format: &'static str| {
        let target = server.target();
        let store = format!("sqlite:{}", dir.path().join("db").display());
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_certpilot"))
                .args(["scan", &target, "--format", format])
                .env("CERTPILOT_STORE", store)
                .env("NO_COLOR", "1")
                .output()
                .await
                .unwrap()
        }
    };
    let table = run("table").await;
    assert!(table.status.success());
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(!text.contains('\u{1b}'), "{text:?}");
    assert_eq!(text.lines().count(), 2, "a header and one row: {text}");
    assert!(text.contains("\\u{1b}"), "{text}");

    let csv = run("csv").await;
    assert!(csv.status.success());
    let mut reader = csv::Reader::from_reader(csv.stdout.as_slice());
    let headers = reader.headers().unwrap().clone();
    let sans = headers.iter().position(|h| h == "sans").unwrap();
    let row = reader.records().next().unwrap().unwrap();
    assert!(row[sans].starts_with("'=HYPERLINK"), "{:?}", &row[sans]);
    for cell in row.iter() {
        assert!(!cell.starts_with(['=', '+', '@']), "formula cell {cell:?}");
    }
}

/// `certpilot` with `args` on a scratch store, colour not forbidden by the environment.
async fn certpilot(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_certpilot"))
        .args(args)
        .env(
            "CERTPILOT_STORE",
            format!("sqlite:{}", dir.join("db").display()),
        )
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .output()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_tables_are_sorted_by_urgency_and_aligned_and_logs_are_plain_off_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Urgency Root");
    let fine = servers::tls_default(&ca.leaf(&["127.0.0.1"]).expiring_in_days(80).build()).await;
    let soon = servers::tls_default(&ca.leaf(&["127.0.0.1"]).expiring_in_days(5).build()).await;
    let expired = servers::tls_default(&ca.leaf(&["127.0.0.1"]).expired().build()).await;
    let refused = servers::closed_port().await.to_string();
    let targets = [
        fine.target(),
        refused.clone(),
        soon.target(),
        expired.target(),
    ];
    let mut args = vec!["-v", "scan", "--format", "table"];
    args.extend(targets.iter().map(String::as_str));
    let out = certpilot(dir.path(), &args).await;
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(log.contains("INFO"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log that is not a terminal: {log:?}"
    );

    let table = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<&str> = table.lines().skip(1).collect();
    let order: Vec<&str> = rows
        .iter()
        .map(|r| r.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(
        order,
        [
            refused.as_str(),
            &expired.target(),
            &soon.target(),
            &fine.target()
        ],
        "failed, expired, then fewest days left:\n{table}"
    );

    // The inventory's columns line up, the status column included.
    let out = certpilot(dir.path(), &["inventory", "--format", "table"]).await;
    let table = String::from_utf8(out.stdout).unwrap();
    let bars: Vec<Option<usize>> = table.lines().map(|l| l.find(" |  ")).collect();
    assert!(bars[0].is_some(), "{table}");
    assert!(
        bars.iter().all(|b| *b == bars[0]),
        "ragged columns:\n{table}"
    );
    let first = table.lines().nth(1).unwrap();
    assert!(first.starts_with(&refused), "{table}");
}
