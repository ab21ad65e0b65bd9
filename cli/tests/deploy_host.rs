//! The host kinds through the CLI: a certificate issued by Pebble and installed in a real
//! HAProxy (Debian's) through its Runtime API — proven by handshake with no reload, renewed,
//! rolled back — and still served after HAProxy restarts from its files.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use certpilot_testkit::procs::HaProxy;
use support::{Env, json_lines, stderr};

const NAME: &str = "lb.certpilot.test";

fn served(out: &std::process::Output) -> String {
    json_lines(out)[0]["certificate"]["fingerprint_sha256"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_installs_in_haproxy_without_a_reload_and_rollback_puts_the_previous_back() {
    let env = Env::start();
    let before = certpilot_testkit::certs::LeafBuilder::self_signed(&[NAME]).build();
    let mut haproxy = HaProxy::start(&before);
    let pid = haproxy.pid();
    let spec = format!(
        "haproxy:cert-file={},socket={}",
        haproxy.cert_file().display(),
        haproxy.socket().display()
    );
    let added = env
        .add(
            &[NAME],
            &["--deploy", &spec, "--endpoint", &haproxy.target()],
        )
        .await;
    assert!(added.status.success(), "{}", stderr(&added));
    let renew = |force: bool| {
        let env = &env;
        async move {
            let mut args = vec![
                "renew",
                "--format",
                "json",
                "--verify-interval",
                "200ms",
                "--verify-max-deadline",
                "10s",
            ];
            if force {
                args.extend(["--force", NAME]);
            }
            env.run(&args).await
        }
    };
    let first = renew(false).await;
    assert!(first.status.success(), "{}", stderr(&first));
    let rows = json_lines(&first);
    let row = rows.iter().find(|r| r["kind"] == "haproxy").unwrap();
    assert_eq!(row["status"], "verified", "{rows:?}");
    let first_fp = rows[0]["fingerprint"].as_str().unwrap().to_owned();
    let scan = |target: String| {
        let env = &env;
        async move {
            env.run(&["scan", &target, "--format", "json", "--no-record"])
                .await
        }
    };
    assert_eq!(served(&scan(haproxy.target()).await), first_fp);

    let second = renew(true).await;
    assert!(second.status.success(), "{}", stderr(&second));
    let second_fp = json_lines(&second)[0]["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(served(&scan(haproxy.target()).await), second_fp);
    assert_eq!(haproxy.pid(), pid, "no reload, no restart");

    // Rolled back by hand: the first goes back through the Runtime API and into the file.
    let rolled = env.run(&["rollback", NAME, "--format", "json"]).await;
    assert!(rolled.status.success(), "{}", stderr(&rolled));
    assert_eq!(served(&scan(haproxy.target()).await), first_fp);
    haproxy.restart();
    assert_eq!(
        served(&scan(haproxy.target()).await),
        first_fp,
        "the file holds it too"
    );

    // Without a socket or a reload, HAProxy would never load it: refused when added.
    let refused = env
        .add(
            &["other.certpilot.test"],
            &[
                "--deploy",
                &format!("haproxy:cert-file={}", haproxy.cert_file().display()),
            ],
        )
        .await;
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("give socket="),
        "{}",
        stderr(&refused)
    );
}
