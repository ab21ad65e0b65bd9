//! Hardening I, through the CLI against a real Pebble: no leaked key, no stranded or doubled
//! renewal, and one exit-code table.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;

use certpilot_testkit::procs::PebbleOptions;
use rustix::process::{Pid, Signal};
use serde_json::Value;
use support::{Env, json_lines, mode, stderr};

const SHOP: &str = "shop.certpilot.test";

async fn show(env: &Env, id: &str) -> Value {
    let out = env.run(&["certificates", "show", id]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn issue(env: &Env, id: &str) -> String {
    let out = env.run(&["renew", id, "--force", "--format", "json"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = json_lines(&out);
    assert_eq!(rows[0]["outcome"], "issued", "{rows:?}");
    rows[0]["fingerprint"].as_str().unwrap().to_owned()
}

async fn export(env: &Env, dir: &std::path::Path) -> std::process::Output {
    let dir = dir.display().to_string();
    env.run(&["certificates", "export", SHOP, "--dir", &dir])
        .await
}

fn signal(child: &tokio::process::Child, sig: Signal) {
    let pid = Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap()).unwrap();
    rustix::process::kill_process(pid, sig).unwrap();
}

/// Whether process `pid` has ended (or is a zombie waiting for its reaper) within 5 seconds.
async fn ends(pid_file: &std::path::Path) -> bool {
    let pid = std::fs::read_to_string(pid_file).unwrap().trim().to_owned();
    for _ in 0..50 {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(stat)
                if stat
                    .rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z')) =>
            {
                return true;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    false
}

async fn wait_for(path: &std::path::Path) {
    for _ in 0..600 {
        if path.exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{} never appeared", path.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_export_never_writes_the_key_through_planted_files_and_checks_the_pair() {
    let env = Env::start();
    assert!(env.add(&[SHOP], &[]).await.status.success());
    issue(&env, SHOP).await;

    // Another user plants a symlink at the old temporary name, pointing at a file of theirs.
    let dir = env.path("export");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let theirs = env.path("theirs");
    std::fs::write(&theirs, "").unwrap();
    std::os::unix::fs::symlink(&theirs, dir.join("privkey.pem.tmp")).unwrap();
    let out = export(&env, &dir).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(&theirs).unwrap(),
        "",
        "no key leaked"
    );
    assert!(
        std::fs::read_to_string(dir.join("privkey.pem"))
            .unwrap()
            .contains("PRIVATE KEY")
    );
    assert_eq!(mode(&dir.join("privkey.pem")), 0o600);

    // A directory every user can write into is refused, and nothing is written there.
    let open = env.path("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = export(&env, &open).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("writable by every user"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_dir(&open).unwrap().count(), 0);

    // A key in the secret store that does not belong to the certificate is never exported.
    let shown = show(&env, SHOP).await;
    let version = shown["current"]["key_version"].as_str().unwrap();
    let key_file = env.path(&format!(
        "state/secrets/certificate-key/{SHOP}/{version}.secret"
    ));
    let other = rcgen::KeyPair::generate().unwrap().serialize_pem();
    std::fs::write(&key_file, other).unwrap();
    let fresh = env.path("fresh");
    let out = export(&env, &fresh).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("does not belong to the certificate"),
        "{}",
        stderr(&out)
    );
    assert!(!fresh.exists(), "nothing written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_directory_credentials_are_refused_at_add_and_removed_from_old_records() {
    let env = Env::start();
    let with_password = env
        .pebble
        .directory_url
        .replacen("https://", "https://ops:hunter2@", 1);
    let out = env.add(&[SHOP], &["--directory", &with_password]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("credentials"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("hunter2"), "{}", stderr(&out));

    // A record written by an earlier version holds one: plant it, as that version stored it.
    assert!(env.add(&[SHOP], &[]).await.status.success());
    issue(&env, SHOP).await;
    let db = env.path("state/certpilot.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let record: String = conn
        .query_row(
            "SELECT record FROM certificates WHERE id = ?1",
            [SHOP],
            |r| r.get(0),
        )
        .unwrap();
    let planted = record.replace(&env.pebble.directory_url, &with_password);
    assert_ne!(planted, record);
    conn.execute(
        "UPDATE certificates SET record = ?2 WHERE id = ?1",
        [SHOP, &planted],
    )
    .unwrap();
    drop(conn);
    let out = env.run(&["-vv", "certificates", "show", SHOP]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(!text.contains("hunter2"), "{text}");
    assert!(
        stderr(&out).contains("removed the credentials"),
        "{}",
        stderr(&out)
    );
    let shown = show(&env, SHOP).await;
    assert_eq!(
        shown["spec"]["issuer"]["directory"],
        env.pebble.directory_url.as_str()
    );
    // The account the record used under the old URL stays its account.
    assert!(
        shown["spec"]["issuer"]["account_secret"]
            .as_str()
            .is_some_and(|a| a.starts_with("acme-account/")),
        "{shown}"
    );
    let out = env.run(&["-vv", "renew", SHOP, "--force"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("hunter2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_eab_keys_are_kept_per_certificate_and_checked_at_add() {
    let hmac = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
    let env = Env::start_with(PebbleOptions {
        eab: vec![("kid-1".into(), hmac.into())],
        ..PebbleOptions::default()
    });
    let good = env.path("good.hmac");
    std::fs::write(&good, format!("{hmac}\n")).unwrap();
    let wrong = env.path("wrong.hmac");
    std::fs::write(&wrong, "c29tZS1vdGhlci1rZXktdGhhdC1pcy1sb25nLWVub3VnaA").unwrap();
    let junk = env.path("junk.hmac");
    std::fs::write(&junk, "this is not base64!").unwrap();
    let arg = |p: &std::path::Path| p.display().to_string();

    let out = env
        .add(
            &["bad.certpilot.test"],
            &["--eab-kid", "kid-1", "--eab-hmac-file", &arg(&junk)],
        )
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("not base64url"), "{}", stderr(&out));
    assert!(!env.path("state/secrets/certificate-eab-hmac").exists());

    let out = env
        .add(
            &[SHOP],
            &["--eab-kid", "kid-1", "--eab-hmac-file", &arg(&good)],
        )
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("copied"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("moved"), "{}", stderr(&out));
    // A second certificate reusing the key id with another value does not touch the first's.
    let out = env
        .add(
            &["other.certpilot.test"],
            &["--eab-kid", "kid-1", "--eab-hmac-file", &arg(&wrong)],
        )
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    // A refused add (the id is taken) leaves the first certificate's EAB key alone: the
    // record is written before any secret.
    let out = env
        .add(
            &[SHOP],
            &["--eab-kid", "kid-1", "--eab-hmac-file", &arg(&wrong)],
        )
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("already managed"), "{}", stderr(&out));
    issue(&env, SHOP).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_a_killed_renewal_is_taken_over_at_once_and_resumed_by_a_routine_run() {
    let env = Env::start();
    assert!(env.add(&[SHOP], &[]).await.status.success());
    let first = issue(&env, SHOP).await;

    // A forced renewal killed outright while its deploy hook runs (the certificate is stored).
    let started = env.path("hook-started");
    let hook = format!("touch {}; sleep 60", started.display());
    let mut child = env
        .command(&["renew", SHOP, "--force", "--deploy-hook", &hook])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&started).await;
    signal(&child, Signal::KILL);
    let _ = child.wait().await;

    // Its worker is gone: not "renewing" any more, and the next run picks it up.
    let list = env.run(&["certificates", "list", "--format", "json"]).await;
    assert_eq!(json_lines(&list)[0]["state"], "interrupted");
    // A routine run resumes it at once: the dead process's lease is not waited out, and the
    // unfinished renewal is due although the forced one's schedule said "next month".
    let out = env.run(&["renew", "--format", "json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows = json_lines(&out);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["outcome"], "issued", "{rows:?}");
    assert_ne!(rows[0]["fingerprint"], first.as_str());
    let list = env.run(&["certificates", "list", "--format", "json"]).await;
    assert_eq!(json_lines(&list)[0]["state"], "issued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_sigterm_during_a_renewal_ends_the_hook_group_and_releases_the_lease() {
    let env = Env::start();
    assert!(env.add(&[SHOP], &[]).await.status.success());
    let started = env.path("hook-started");
    let child_pid = env.path("hook-child.pid");
    // The hook's own child must end with it, not only the shell.
    let hook = format!(
        "sleep 120 & echo $! > {}; touch {}; wait",
        child_pid.display(),
        started.display()
    );
    let mut child = env
        .command(&["renew", "--deploy-hook", &hook])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&started).await;
    signal(&child, Signal::TERM);
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("SIGTERM ends renew promptly")
        .unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(ends(&child_pid).await, "the hook's child still runs");
    let list = env.run(&["certificates", "list", "--format", "json"]).await;
    let row = &json_lines(&list)[0];
    assert_ne!(row["state"], "busy");
    let shown = show(&env, SHOP).await;
    assert!(shown["renewal"]["lease"].is_null(), "{shown}");
    // The next run picks it up without waiting.
    let out = env.run(&["renew", "--format", "json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json_lines(&out)[0]["outcome"], "issued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_the_lease_is_extended_while_a_long_hook_runs() {
    let env = Env::start();
    assert!(env.add(&[SHOP], &[]).await.status.success());
    let log = env.path("hook.log");
    let hook = format!(
        "echo start >> {log}; sleep 6; echo end >> {log}",
        log = log.display()
    );
    let first = env
        .command(&["renew", "--lease", "2s", "--deploy-hook", &hook])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&log).await;
    // Well past the lease's length: without a heartbeat it has lapsed by now.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let second = env
        .run(&[
            "renew",
            SHOP,
            "--force",
            "--lease",
            "2s",
            "--format",
            "json",
            "--deploy-hook",
            &hook,
        ])
        .await;
    assert_eq!(second.status.code(), Some(75), "{}", stderr(&second));
    let rows = json_lines(&second);
    assert_eq!(rows[0]["outcome"], "busy", "{rows:?}");
    let done = first.wait_with_output().await.unwrap();
    assert!(done.status.success(), "{}", stderr(&done));
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "start\nend\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_hooks_are_ended_with_their_children_and_the_http01_port_is_free_meanwhile() {
    let env = Env::start();
    assert!(env.add(&[SHOP], &[]).await.status.success());
    // The hook binds the HTTP-01 port, as another renewal's responder or a web server would.
    let bind = format!(
        "python3 -c 'import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((\"127.0.0.1\", {}))'",
        env.http_port
    );
    let out = env
        .run(&["renew", "--format", "json", "--deploy-hook", &bind])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));

    let child_pid = env.path("hook-child.pid");
    let hook = format!("sleep 120 & echo $! > {}; wait", child_pid.display());
    let out = env
        .run(&[
            "renew",
            SHOP,
            "--force",
            "--hook-timeout",
            "2s",
            "--format",
            "json",
            "--deploy-hook",
            &hook,
        ])
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        json_lines(&out)[0]["error"]
            .as_str()
            .unwrap()
            .contains("children were ended")
    );
    assert!(ends(&child_pid).await, "the hook's child still runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_exit_codes_follow_one_table_and_backoff_says_what_and_until_when() {
    let env = Env::start();

    // A renewal that fails validation (nothing answers where Pebble looks) backs off.
    let elsewhere = format!("127.0.0.1:{}", certpilot_testkit::procs::free_port());
    let out = env
        .run(&[
            "certificates",
            "add",
            SHOP,
            "--http-listen",
            &elsewhere,
            "--contact",
            "mailto:ops@certpilot.test",
        ])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    // --force needs ids: it never silently does nothing.
    let out = env.run(&["renew", "--force"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    let out = env.run(&["renew", "--format", "json"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(json_lines(&out)[0]["outcome"], "failed");
    let out = env.run(&["renew", SHOP, "--format", "json"]).await;
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    let row = &json_lines(&out)[0];
    assert_eq!(row["outcome"], "backing_off", "{row}");
    assert_eq!(row["failures"], 1);
    assert!(
        row["until"].is_string() && row["last_error"].is_string(),
        "{row}"
    );
    let table = env.run(&["renew", SHOP, "--format", "table"]).await;
    assert!(
        String::from_utf8_lossy(&table.stdout).contains(&format!("certpilot renew {SHOP} --force")),
        "{}",
        String::from_utf8_lossy(&table.stdout)
    );

    // A secret store that cannot be written is a problem a person must fix: 2, as documented.
    let out = env
        .run(&[
            "--secrets",
            "files:/dev/null/secrets",
            "renew",
            SHOP,
            "--force",
            "--format",
            "json",
        ])
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let help = env.run(&["renew", "--help"]).await;
    let help = String::from_utf8_lossy(&help.stdout);
    for code in ["0 ", "1 ", "2 ", "75 ", "130 "] {
        assert!(help.contains(&format!("\n  {code}")), "{code}: {help}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardening_the_duplicate_guard_counts_per_name_set_across_ids_and_re_adds() {
    let env = Env::start();
    // A margin longer than any certificate this CA issues renews on every run: refused.
    let out = env.add(&[SHOP], &["--renew-days-before", "400"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--renew-days-before"),
        "{}",
        stderr(&out)
    );

    assert!(env.add(&[SHOP], &[]).await.status.success());
    for _ in 0..4 {
        issue(&env, SHOP).await;
    }
    // Removed and added again under another id: the CA still counts the four.
    assert!(
        env.run(&["certificates", "remove", SHOP])
            .await
            .status
            .success()
    );
    assert!(
        env.add(&[SHOP], &["--id", "shop-again"])
            .await
            .status
            .success()
    );
    let out = env.run(&["renew", "--format", "json"]).await;
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    let row = &json_lines(&out)[0];
    assert_eq!(row["outcome"], "deferred", "{row}");
    let reason = row["reason"].as_str().unwrap();
    assert!(
        reason.contains("4 certificates") && reason.contains("stop at 4") && reason.contains("5"),
        "{reason}"
    );
    // A person may still spend the last one.
    issue(&env, "shop-again").await;
}
