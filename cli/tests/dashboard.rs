//! The dashboard in a real browser: headless Chromium from Debian, driven through WebDriver,
//! against `certpilot serve` over a store filled by scanning real TLS servers and issuing
//! from Pebble. Each page's numbers, the inventory's filter and order, a certificate
//! requested through the form issued and shown verified, an acknowledgement that sticks,
//! a forged cross-site form refused, axe-core finding nothing serious or critical, the
//! read-only pages with JavaScript off, the request form walked by keyboard alone, and a
//! screenshot of each page at 1280×800 and 390×844 (under `target/dashboard-screenshots/`;
//! the README shows the ones committed under `docs/img/`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use certpilot_testkit::certs::Ca;
use certpilot_testkit::webdriver::{Chromium, ENTER, Options, TAB, axe_script};

mod support;

fn shots() -> std::path::PathBuf {
    certpilot_testkit::procs::workspace_root().join("target/dashboard-screenshots")
}

/// Signs in at `url` with `token`, by keyboard: the token typed, Enter pressed.
fn sign_in(b: &Chromium, url: &str, token: &str) {
    b.goto(&format!("{url}/ui"));
    assert!(b.url().contains("/ui/login?next="), "{}", b.url());
    let field = b.find("#token");
    b.click(&field);
    b.press(token);
    b.navigating(|b| b.press(ENTER));
    assert!(b.url().ends_with("/ui"), "signed in: {}", b.url());
}

fn count(b: &Chromium, name: &str) -> u64 {
    b.text(&b.find(&format!("[data-count='{name}']")))
        .parse()
        .unwrap()
}

fn no_serious_violations(b: &Chromium, axe: &str, page: &str) {
    let violations = b.axe(axe);
    assert!(
        violations.is_empty(),
        "axe-core on {page}: {}",
        serde_json::to_string_pretty(&violations).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_a_real_browser_shows_the_estate_issues_a_request_and_keeps_an_acknowledgement()
 {
    let env = support::Env::start();
    // The estate: two healthy endpoints (one certificate twice), one expiring, one expired,
    // one that refuses connections.
    let ca = Ca::new("Dashboard CA");
    std::fs::write(env.path("ca.pem"), ca.root_pem()).unwrap();
    let mut servers = Vec::new();
    let healthy = ca.leaf(&["127.0.0.1"]).expiring_in_days(75).build();
    for leaf in [
        &healthy,
        &healthy,
        &ca.leaf(&["127.0.0.1"]).expiring_in_days(12).build(),
        &ca.leaf(&["127.0.0.1"]).expired().build(),
    ] {
        let s = certpilot_testkit::servers::Swappable::start().await;
        s.serve(leaf);
        servers.push(s);
    }
    let closed = format!("127.0.0.1:{}", certpilot_testkit::procs::free_port());
    let targets: Vec<String> = servers.iter().map(|s| s.server().target()).collect();
    for (i, t) in targets.iter().chain([&closed]).enumerate() {
        let owner = if i < 2 { "owner=payments" } else { "owner=web" };
        let out = env.run(&["endpoints", "add", t, owner]).await;
        assert!(out.status.success(), "{}", support::stderr(&out));
    }
    let out = env
        .run(&["scan", "--ca-file", env.path("ca.pem").to_str().unwrap()])
        .await;
    assert!(
        !support::stderr(&out).contains("panicked"),
        "{}",
        support::stderr(&out)
    );

    // Where the requested certificate goes: a web server reading a directory.
    let live = env.path("web");
    let web = certpilot_testkit::servers::FilesServer::start(&live, &env.path("reload")).await;
    let policy = env.path("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            r#"
issuers:
  pebble: {{directory: "{directory}", contact: ["mailto:pki@certpilot.test"]}}
challenges:
  http: {{type: http01-listen, listen: "127.0.0.1:{http_port}"}}
rules:
  - name: web
    callers: [token:web]
    suffixes: [certpilot.test]
    issuers: [pebble]
    deploy_kinds: [files]
"#,
            directory = env.pebble.directory_url,
            http_port = env.http_port
        ),
    )
    .unwrap();
    std::fs::write(
        env.path("tokens"),
        format!("web {}\n", support::sha256_hex("web-token")),
    )
    .unwrap();
    let (api, _log) = support::spawn(env.command(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--token-file",
        env.path("tokens").to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
        "--allow-network",
        "127.0.0.0/8",
        "--verify-interval",
        "200ms",
        "--verify-max-deadline",
        "20s",
    ]))
    .await;
    let url = api.url.clone();
    let axe = axe_script();

    let b = Chromium::start(&Options::default());
    sign_in(&b, &url, "web-token");
    // The overview: counts by state, the expiry timeline drawn on the server.
    for (state, n) in [
        ("healthy", 2),
        ("expiring", 1),
        ("failing", 1),
        ("unreachable", 1),
    ] {
        assert_eq!(count(&b, state), n, "{state}");
    }
    assert_eq!(count(&b, "findings-critical"), 1, "the expired one");
    assert!(!b.find_all("svg.chart rect").is_empty());
    no_serious_violations(&b, &axe, "the overview");
    b.screenshot(&shots().join("overview-1280x800.png"));

    // The inventory: filter by state with the form, then order by days left.
    b.navigating(|b| b.click(&b.find("nav a[href='/ui/inventory']")));
    assert_eq!(b.find_all("#inventory tbody tr").len(), 5);
    no_serious_violations(&b, &axe, "the inventory");
    b.screenshot(&shots().join("inventory-1280x800.png"));
    let tag = b.find("#tag");
    b.type_into(&tag, "owner=web");
    b.navigating(|b| b.click(&b.find("form.filters button")));
    assert_eq!(b.find_all("#inventory tbody tr").len(), 3, "{}", b.url());
    b.navigating(|b| b.click(&b.find("th a[href*='sort=days']")));
    let first = b.text(&b.find("#inventory tbody tr"));
    assert!(
        first.contains("unreachable"),
        "no days left sorts first: {first}"
    );
    let rows = b.find_all("#inventory tbody tr");
    assert!(b.text(&rows[1]).contains("failing"), "then the expired one");
    let csv = b.attribute(&b.find("a[download]"), "href").unwrap();
    assert!(
        csv.contains("/ui/inventory.csv?") && csv.contains("tag=owner%3Dweb"),
        "{csv}"
    );

    // The request form, by keyboard alone: Tab from the top reaches every field in order.
    b.goto(&format!("{url}/ui/request"));
    no_serious_violations(&b, &axe, "the request form");
    b.screenshot(&shots().join("request-1280x800.png"));
    let mut order = Vec::new();
    for _ in 0..40 {
        b.press(TAB);
        let id = b.attribute(&b.active(), "id").unwrap_or_default();
        if id == "names" || !order.is_empty() {
            if order.last() != Some(&id) {
                order.push(id.clone());
            }
            if b.attribute(&b.active(), "type").as_deref() == Some("submit")
                && b.text(&b.active()) == "Request"
            {
                break;
            }
        }
    }
    assert_eq!(
        order,
        [
            "names",
            "id",
            "issuer",
            "challenge",
            "key_type",
            "owner",
            "endpoints",
            "deployments",
            ""
        ],
        "the fields in reading order, then the button"
    );
    // Back to the names, typing as a person would.
    b.click(&b.find("#names"));
    b.press("web.certpilot.test");
    b.click(&b.find("#owner"));
    b.press("web");
    b.click(&b.find("#endpoints"));
    b.press(&web.server().target());
    b.click(&b.find("#deployments"));
    b.press(
        &serde_json::json!([{"name": "disk", "kind": "files",
            "settings": {"dir": live.to_str().unwrap(), "reload": web.reload_command()}}])
        .to_string(),
    );
    b.press(TAB);
    b.navigating(|b| b.press(ENTER));
    assert!(
        b.url().ends_with("/ui/certificates/web.certpilot.test"),
        "{}",
        b.url()
    );
    // The page follows the request to verified (it reloads itself while it is not).
    let verified = b.wait_for(Duration::from_secs(120), |b| {
        b.find_all("#state")
            .first()
            .is_some_and(|s| b.text(s) == "verified")
    });
    assert!(
        verified,
        "verified within 120 s: {}",
        b.text(&b.find("main"))
    );
    // The next scan (the timer's, told the operator allows loopback as serve was) sees what
    // the endpoint serves: the page says it is the current certificate.
    let out = env
        .command(&[
            "scan",
            "--no-notify",
            "--ca-file",
            env.path("ca.pem").to_str().unwrap(),
        ])
        .env("CERTPILOT_ALLOW_NETWORKS", "127.0.0.0/8")
        .output()
        .await
        .unwrap();
    assert!(!support::stderr(&out).contains("panicked"));
    b.goto(&format!("{url}/ui/certificates/web.certpilot.test"));
    let page = b.text(&b.find("main"));
    assert!(
        page.contains(&web.server().target()) && page.contains("the current certificate"),
        "{page}"
    );
    assert!(
        !b.find_all("form[action$='/renew'] button").is_empty(),
        "the policy lets token:web renew it"
    );
    no_serious_violations(&b, &axe, "the certificate page");
    b.screenshot(&shots().join("certificate-1280x800.png"));

    // A finding acknowledged with a reason and an end date sticks.
    b.goto(&format!("{url}/ui/findings"));
    no_serious_violations(&b, &axe, "the findings");
    b.screenshot(&shots().join("findings-1280x800.png"));
    let first_card = b.text(&b.find("section.card"));
    assert!(
        first_card.contains(&targets[3]) && first_card.contains("critical"),
        "worst first: {first_card}"
    );
    b.click(&b.find("section.card details summary"));
    let reason = b.find("section.card input[name='reason']");
    b.type_into(&reason, "replaced on Tuesday with the new load balancer");
    b.navigating(|b| b.click(&b.find("section.card form button")));
    assert!(b.url().ends_with("/ui/findings"), "{}", b.url());
    b.goto(&format!("{url}/ui/findings"));
    let text = b.text(&b.find("main"));
    assert!(
        text.contains("Acknowledged: replaced on Tuesday with the new load balancer until"),
        "{text}"
    );

    // A forged form on another site: the browser does not send the strict cookie, and the
    // server refuses it in any case.
    let forged = certpilot_testkit::http_mock::MockServer::start(Arc::new({
        let action = format!("{url}/ui/request");
        move |_| certpilot_testkit::http_mock::Reply {
            status: 200,
            headers: vec![("content-type".into(), "text/html".into())],
            body: format!(
                "<html><body><form id=f method=post action='{action}'><input name=names value=evil.certpilot.test><input name=issuer value=pebble><input name=challenge value=http></form><script>document.getElementById('f').submit()</script></body></html>"
            ),
        }
    }))
    .await;
    b.goto(&forged.base_url().replace("127.0.0.1", "localhost"));
    b.wait_for(Duration::from_secs(10), |b| b.url().starts_with(&url));
    assert!(
        b.text(&b.find("main")).contains("Refused"),
        "{}",
        b.text(&b.find("body"))
    );
    b.goto(&format!("{url}/ui/certificates"));
    assert!(!b.text(&b.find("main")).contains("evil.certpilot.test"));
    // The overview again, the managed certificate in its timeline now.
    b.goto(&format!("{url}/ui"));
    b.screenshot(&shots().join("overview-1280x800.png"));
    drop(b);

    // JavaScript off: sign in, read the overview and filter the inventory all the same.
    let nojs = Chromium::start(&Options {
        javascript: false,
        ..Options::default()
    });
    sign_in(&nojs, &url, "web-token");
    assert_eq!(count(&nojs, "healthy"), 2);
    assert_eq!(
        count(&nojs, "failing"),
        2,
        "the expired one, and Pebble's (its root is not trusted here)"
    );
    assert!(!nojs.find_all("svg.chart rect").is_empty());
    nojs.goto(&format!("{url}/ui/inventory"));
    let state = nojs.find("#state");
    nojs.click(&state);
    nojs.click(&nojs.find("#state option[value='failing']"));
    nojs.navigating(|b| b.click(&b.find("form.filters button")));
    assert_eq!(
        nojs.find_all("#inventory tbody tr").len(),
        2,
        "{}",
        nojs.url()
    );
    drop(nojs);

    // A phone: every page readable at 390×844, screenshots of each.
    let phone = Chromium::start(&Options {
        size: (390, 844),
        mobile: true,
        javascript: true,
    });
    sign_in(&phone, &url, "web-token");
    for (page, path) in [
        ("overview", "/ui"),
        ("inventory", "/ui/inventory"),
        ("certificate", "/ui/certificates/web.certpilot.test"),
        ("findings", "/ui/findings"),
        ("request", "/ui/request"),
    ] {
        phone.goto(&format!("{url}{path}"));
        let width: u64 = phone
            .execute(
                "return document.documentElement.scrollWidth",
                serde_json::json!([]),
            )
            .as_u64()
            .unwrap();
        assert!(width <= 390, "{page} fits a phone's width: {width}");
        no_serious_violations(&phone, &axe, page);
        phone.screenshot(&shots().join(format!("{page}-390x844.png")));
    }
}
