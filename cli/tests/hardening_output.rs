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
