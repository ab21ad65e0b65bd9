//! Hardening II, item 7, through the CLI: readers never create or write a store, a mistyped
//! store is refused, and a store is created only by commands that add to it, once, saying so.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Output;

use certpilot_testkit::certs::Ca;
use certpilot_testkit::servers;

async fn certpilot(store: &str, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_certpilot"))
        .args(args)
        .env("CERTPILOT_STORE", store)
        .env("NO_COLOR", "1")
        .output()
        .await
        .unwrap()
}

fn err(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Makes `path` immutable (even to root) while alive.
struct Immutable<'a>(&'a Path);

impl<'a> Immutable<'a> {
    fn set(path: &'a Path) -> Self {
        let ok = std::process::Command::new("chattr")
            .arg("+i")
            .arg(path)
            .status()
            .unwrap()
            .success();
        assert!(ok, "chattr +i {}", path.display());
        Immutable(path)
    }
}

impl Drop for Immutable<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(self.0)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_readers_never_create_or_write_the_store_and_writers_say_when_they_create_it() {
    // Beside the build, not in /tmp: a tmpfs cannot mark a file immutable.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let leaf = Ca::new("Store Root")
        .leaf(&["127.0.0.1"])
        .expiring_in_days(20)
        .build();
    let server = servers::tls_default(&leaf).await;
    let target = server.target();

    // A mistyped store in a cron job: refused, not silently created empty.
    let typo = dir.path().join("certpilto.db");
    let typo_store = format!("sqlite:{}", typo.display());
    for args in [
        &["inventory", "--expiring-within", "30d"][..],
        &["endpoints", "list"][..],
        &["certificates", "list"][..],
        &["renew", "--due"][..],
    ] {
        let out = certpilot(&typo_store, args).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", err(&out));
        assert!(err(&out).contains("no store at"), "{args:?}: {}", err(&out));
        assert!(err(&out).contains("certpilto.db"), "{}", err(&out));
        assert!(!typo.exists(), "{args:?} created the store");
    }

    // An empty --store is a mistake, not "the default".
    let out = certpilot("", &["inventory"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", err(&out));
    assert!(err(&out).contains("--store is empty"), "{}", err(&out));

    // A scan that records nothing needs no store.
    let out = certpilot(
        &typo_store,
        &["scan", &target, "--no-record", "--format", "json"],
    )
    .await;
    assert!(out.status.success(), "{}", err(&out));
    assert!(!typo.exists(), "--no-record created the store");

    // The first recording scan creates it and says so; the next one does not.
    let db = dir.path().join("state").join("certpilot.db");
    let store = format!("sqlite:{}", db.display());
    let out = certpilot(&store, &["scan", &target, "--format", "json"]).await;
    assert!(out.status.success(), "{}", err(&out));
    assert!(
        err(&out).contains(&format!("created a new store at {}", db.display())),
        "{}",
        err(&out)
    );
    let out = certpilot(&store, &["scan", &target, "--format", "json"]).await;
    assert!(!err(&out).contains("created"), "{}", err(&out));

    // A store that cannot be written (a read-only mount, an immutable file) can be read.
    let _frozen = Immutable::set(&db);
    let out = certpilot(
        &store,
        &["inventory", "--expiring-within", "30d", "--format", "json"],
    )
    .await;
    assert!(out.status.success(), "{}", err(&out));
    let row: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(row["target"], target.as_str());
}
