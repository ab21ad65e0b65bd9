//! The Slack and webhook channels against mocks written from the vendors' documented
//! behaviour: Block Kit within limits (golden fixtures per finding kind), Slack's answers
//! (`ok`, plain-text errors, 429 with `Retry-After`, 5xx), and Standard Webhooks signatures
//! checked by an independent receiver.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use certpilot_core::model::channel::{Channel, ChannelKind};
use certpilot_core::model::finding::{Finding, FindingKind, Severity, Subject, Transition};
use certpilot_core::policy::findings::{Condition, FindingsPolicy, reconcile};
use certpilot_core::ports::{Notification, NotifyError, SecretValue};
use certpilot_testkit::slack::{MockSlack, check_block_kit};
use certpilot_testkit::webhook_receiver::WebhookReceiver;
use time::OffsetDateTime;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2026-12-08 09:00 UTC);

/// A finding of each kind, worded as the policy words it.
fn findings() -> Vec<Finding> {
    let tags = BTreeMap::from([
        ("owner".to_owned(), "payments".to_owned()),
        ("environment".to_owned(), "prod".to_owned()),
    ]);
    let ep = |a: &str| Subject::endpoint("shop.example.com:443", Some(a));
    let cert = Subject::certificate("shop");
    let dep = Subject::deployment("shop", "alb-prod");
    let expiry = Some(datetime!(2026-12-20 00:00 UTC));
    let c =
        |kind, subject: Subject, severity, summary: &str, detail: &str, next: &str, expires_at| {
            Condition {
                kind,
                subject,
                severity,
                summary: summary.into(),
                detail: detail.into(),
                next_step: next.into(),
                tags: tags.clone(),
                fact: String::new(),
                expires_at,
            }
        };
    let conditions = vec![
        c(
            FindingKind::Expired,
            ep("192.0.2.1:443"),
            Severity::Critical,
            "shop.example.com:443 serves a certificate that expired on 2026-12-01",
            "serial 04a1, issued by R11, expired 2026-12-01",
            "replace the certificate on the endpoint now; clients refuse it",
            Some(datetime!(2026-12-01 00:00 UTC)),
        ),
        c(
            FindingKind::Expiring,
            ep("192.0.2.2:443"),
            Severity::Warning,
            "shop.example.com:443 serves a certificate that expires on 2026-12-20",
            "serial 04a2, issued by R11, for shop.example.com, www.shop.example.com",
            "renew or replace it before then (or let certpilot manage it: `certpilot certificates add`)",
            expiry,
        ),
        c(
            FindingKind::RenewalOverdue,
            cert.clone(),
            Severity::Warning,
            "shop should have been renewed by 2026-12-04 and was not",
            "serial 04a3 expires 2026-12-20; 3 failed attempts",
            "see why with `certpilot certificates show shop`, then `certpilot renew shop`",
            expiry,
        ),
        c(
            FindingKind::RenewalFailed,
            Subject::certificate("api"),
            Severity::Critical,
            "order: the renewal of api failed",
            "the CA refused the order (the CA said: Error creating new order :: too many certificates already issued for \"example.com\")",
            "read the CA's answer in `certpilot certificates show api`; certpilot retries with backoff",
            expiry,
        ),
        c(
            FindingKind::DeployFailed,
            dep.clone(),
            Severity::Critical,
            "deploying shop to alb-prod failed",
            "elbv2 ModifyListener: AccessDenied: not authorized to perform elasticloadbalancing:ModifyListener",
            "fix what the target says, then `certpilot deploy shop`",
            expiry,
        ),
        c(
            FindingKind::HookFailed,
            Subject::certificate("mail"),
            Severity::Critical,
            "announce: the deploy hook of mail failed",
            "`systemctl reload postfix` exited with status 1: Job for postfix.service failed",
            "fix the deploy hook or live directory; the next `certpilot renew` runs it again without a new order",
            expiry,
        ),
        c(
            FindingKind::NotServing,
            Subject::deployment("shop", "nginx-edge"),
            Severity::Critical,
            "nginx-edge does not serve the renewed shop",
            "192.0.2.7:443 still serves serial 04a0 (expires 2026-12-10) instead of 04a3",
            "the previous certificate was put back; find why the endpoints keep the old one, then `certpilot deploy shop`",
            expiry,
        ),
        c(
            FindingKind::Validation,
            ep("192.0.2.3:443"),
            Severity::Warning,
            "shop.example.com:443 serves a certificate clients may refuse: incomplete_chain",
            "serial 04a4, issued by R11",
            "serve the full chain (fullchain.pem, not cert.pem)",
            expiry,
        ),
        c(
            FindingKind::Unreachable,
            ep("192.0.2.4:443"),
            Severity::Warning,
            "shop.example.com:443 is unreachable (timeout)",
            "3 scans in a row failed; the last: timeout: no answer within 10s",
            "check that the service runs and that certpilot may reach it (DNS, firewall, port)",
            None,
        ),
        c(
            FindingKind::AcmRenewalBlocked,
            Subject::certificate("cdn"),
            Severity::Critical,
            "ACM cannot renew cdn on its own",
            "the CNAME _x1.cdn.example.com is missing",
            "restore the validation records ACM asked for (`certpilot certificates show cdn`)",
            expiry,
        ),
        c(
            FindingKind::ScanStale,
            Subject::schedule("scan"),
            Severity::Critical,
            "registered endpoints have not been scanned since 2026-12-08 05:00 UTC",
            "a full scan is due every 1h; the last finished 3h ago, so no endpoint is watched",
            "check that the scheduled scan runs (the scan function's schedule, errors and logs; locally the timer or cron job running `certpilot scan`)",
            None,
        ),
    ];
    let opened = datetime!(2026-12-08 08:00 UTC);
    reconcile(
        &[],
        &conditions,
        &|_| true,
        opened,
        &FindingsPolicy::default(),
    )
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/slack")
        .join(format!("{name}.json"))
}

/// Compares `value` with the fixture `name`; `CERTPILOT_BLESS=1` writes it instead.
fn golden(name: &str, value: &serde_json::Value) {
    let path = fixture(name);
    let text = serde_json::to_string_pretty(value).unwrap() + "\n";
    if std::env::var_os("CERTPILOT_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (CERTPILOT_BLESS=1 writes it)", path.display()));
    assert_eq!(
        text, want,
        "{name}: the Block Kit changed; review, then CERTPILOT_BLESS=1"
    );
}

#[test]
fn every_kind_renders_within_block_kits_limits_as_its_golden_fixture() {
    let all = findings();
    assert_eq!(all.len(), FindingKind::ALL.len(), "one finding per kind");
    for f in &all {
        let opened = Notification {
            transition: Transition::Opened,
            finding: f,
            now: NOW,
        };
        let message = certpilot_notify::slack::blocks::message(&opened);
        check_block_kit(&message).unwrap_or_else(|e| panic!("{}: {e}", f.kind));
        let text = message["text"].as_str().unwrap();
        assert!(
            text.contains(&f.summary) && text.contains("Next: "),
            "{text}"
        );
        assert!(
            !text.contains("http"),
            "the fallback text has no links: {text}"
        );
        golden(f.kind.as_str(), &message);
    }
    // Resolved: says so, no next step, no days left.
    let mut resolved = all
        .iter()
        .find(|f| f.kind == FindingKind::Expiring)
        .unwrap()
        .clone();
    resolved.state = certpilot_core::model::finding::FindingState::Resolved;
    let n = Notification {
        transition: Transition::Resolved,
        finding: &resolved,
        now: NOW,
    };
    let message = certpilot_notify::slack::blocks::message(&n);
    check_block_kit(&message).unwrap();
    let rendered = message.to_string();
    assert!(message["text"].as_str().unwrap().starts_with("Resolved: "));
    assert!(!rendered.contains("Next step"), "{rendered}");
    golden("expiring-resolved", &message);
}

#[test]
fn days_left_are_counted_from_the_time_of_sending() {
    let all = findings();
    let expiring = all
        .iter()
        .find(|f| f.kind == FindingKind::Expiring)
        .unwrap();
    let n = Notification {
        transition: Transition::Reminded,
        finding: expiring,
        now: NOW,
    };
    let s = certpilot_notify::slack::blocks::message(&n).to_string();
    assert!(s.contains("11 days left (expires 2026-12-20)"), "{s}");
    let expired = all.iter().find(|f| f.kind == FindingKind::Expired).unwrap();
    let n = Notification {
        transition: Transition::Opened,
        finding: expired,
        now: NOW,
    };
    let s = certpilot_notify::slack::blocks::message(&n).to_string();
    assert!(s.contains("expired 7 days ago (2026-12-01)"), "{s}");
}

#[test]
fn huge_and_hostile_texts_are_cut_and_escaped_not_refused() {
    let mut f = findings().remove(0);
    f.detail = "<!channel> ".repeat(2000);
    f.summary = "s".repeat(5000);
    let n = Notification {
        transition: Transition::Opened,
        finding: &f,
        now: NOW,
    };
    let message = certpilot_notify::slack::blocks::message(&n);
    check_block_kit(&message).unwrap();
    let s = message.to_string();
    assert!(!s.contains("<!channel>"), "mentions are escaped");
    assert!(message["text"].as_str().unwrap().chars().count() <= 4000);
}

fn slack_channel() -> Channel {
    Channel {
        name: "payments".into(),
        kind: ChannelKind::Slack,
        min_severity: Severity::Warning,
        kinds: vec![],
        matches: BTreeMap::new(),
    }
}

fn slack(url: &str) -> std::sync::Arc<dyn certpilot_core::ports::Notifier> {
    certpilot_notify::notifier(
        &slack_channel(),
        Some(&SecretValue::new(url.as_bytes().to_vec())),
        None,
    )
    .unwrap()
}

#[tokio::test]
async fn slack_takes_the_message_and_a_429_is_waited_out_not_hammered() {
    let mock = MockSlack::start().await;
    let ch = slack(&mock.url());
    let f = findings().remove(1);
    let n = || Notification {
        transition: Transition::Opened,
        finding: &f,
        now: NOW,
    };
    ch.notify(n()).await.unwrap();
    assert_eq!(mock.messages().len(), 1);

    mock.rate_limit(1, 1);
    ch.notify(n()).await.unwrap();
    assert_eq!(mock.messages().len(), 2);
    assert_eq!(mock.early_retries(), 0, "came back before Retry-After");

    mock.fail(1);
    ch.notify(n()).await.unwrap();
    assert_eq!(mock.messages().len(), 3, "a 500 is retried");
}

#[tokio::test]
async fn slacks_refusals_are_named_with_what_to_do_and_long_waits_left_to_the_next_run() {
    let mock = MockSlack::start().await;
    let f = findings().remove(1);
    let n = Notification {
        transition: Transition::Opened,
        finding: &f,
        now: NOW,
    };

    mock.rate_limit(1, 600);
    let started = std::time::Instant::now();
    let e = slack(&mock.url()).notify(n).await.unwrap_err();
    assert!(matches!(e, NotifyError::Unavailable(_)), "{e}");
    assert!(e.to_string().contains("asked to wait 600 s"), "{e}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "no hang"
    );

    let wrong = format!("{}x", mock.url());
    let e = slack(&wrong).notify(n).await.unwrap_err();
    assert!(matches!(e, NotifyError::Refused(_)), "{e}");
    assert!(
        e.to_string().contains("404 no_service") && e.to_string().contains("revoked"),
        "{e}"
    );
    assert!(
        !e.to_string().contains(&wrong),
        "the URL is the secret: {e}"
    );

    mock.archive();
    let e = slack(&mock.url()).notify(n).await.unwrap_err();
    assert!(e.to_string().contains("410 channel_is_archived"), "{e}");
}

#[tokio::test]
async fn webhooks_are_signed_as_standard_webhooks_and_retried_with_the_same_id() {
    let receiver = WebhookReceiver::start().await;
    let channel = Channel {
        name: "router".into(),
        kind: ChannelKind::Webhook {
            url: receiver.url(),
        },
        min_severity: Severity::Info,
        kinds: vec![],
        matches: BTreeMap::new(),
    };
    let ch = certpilot_notify::notifier(
        &channel,
        Some(&SecretValue::new(receiver.secret.clone().into_bytes())),
        None,
    )
    .unwrap();
    let f = findings().remove(6);
    let n = Notification {
        transition: Transition::Opened,
        finding: &f,
        now: NOW,
    };
    receiver.fail(1);
    ch.notify(n).await.unwrap();
    let got = receiver.deliveries();
    assert_eq!(got.len(), 1, "refused: {:?}", receiver.refusals());
    let body = &got[0].body;
    assert_eq!(body["type"], "finding.opened");
    assert_eq!(body["data"]["schema"], 1);
    assert_eq!(body["data"]["finding"]["kind"], "not_serving");
    assert_eq!(body["data"]["finding"]["owner"], "payments");
    assert!(body["data"]["finding"].get("pending").is_none());
    assert_eq!(got[0].id, certpilot_notify::webhook::message_id(&n));

    // Another secret: the receiver refuses, and certpilot says so plainly.
    let other = Channel {
        name: "router-old".into(),
        ..channel
    };
    let wrong = certpilot_notify::notifier(
        &other,
        Some(&SecretValue::new(
            b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_vec(),
        )),
        None,
    )
    .unwrap();
    let e = wrong.notify(n).await.unwrap_err();
    assert!(matches!(e, NotifyError::Refused(_)), "{e}");
    assert!(e.to_string().contains("401"), "{e}");
    assert_eq!(receiver.refusals(), vec!["bad signature".to_owned()]);
}
