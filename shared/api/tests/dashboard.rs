//! The dashboard through the router, over a real SQLite store: signing in with a token for a
//! strict session cookie, the overview's numbers, the inventory's filters, order, pages and
//! CSV, forged forms refused and real ones acting, a scanned server's words kept as text.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use certpilot_api::Caller;
use certpilot_api::dashboard::session::SessionKey;
use certpilot_api::dashboard::{Dashboard, SignIn};
use certpilot_core::model::finding::FindingState;
use certpilot_core::{Observation, Problem};
use certpilot_testkit::observations::observed;
use time::{Duration, OffsetDateTime};

mod common;
use common::{Api, api_dashboard};

/// Knows one token.
struct OneToken;

impl SignIn for OneToken {
    fn caller(&self, token: &str) -> Option<Caller> {
        (token == "s3cret-ops").then(|| Caller::new("token:ops"))
    }
}

const POLICY: &str = r#"
issuers:
  pebble: {directory: "https://localhost:14000/dir"}
challenges:
  http: {type: http01-listen, listen: "127.0.0.1:5002"}
rules:
  - name: shop
    callers: ["token:ops"]
    suffixes: [shop.example.com]
    issuers: [pebble]
"#;

fn api() -> Api {
    let policy = certpilot_api::request_policy_from_yaml(POLICY, "policy.yaml").unwrap();
    let api = api_dashboard(
        &[],
        Some(policy),
        Dashboard::new(SessionKey::random(), Some(Arc::new(OneToken))),
    );
    api.names.set("www.shop.example.com", &["93.184.215.14"]);
    api
}

/// What a browser keeps between requests.
struct Browser<'a> {
    api: &'a Api,
    cookie: Option<String>,
}

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    html: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers
            .get("location")
            .map_or("", |v| v.to_str().unwrap())
    }

    /// The number a `data-count` element shows.
    fn count(&self, name: &str) -> u64 {
        let marker = format!("data-count=\"{name}\">");
        let at = self
            .html
            .find(&marker)
            .unwrap_or_else(|| panic!("no {name} count in {}", self.html));
        let rest = &self.html[at + marker.len()..];
        rest[..rest.find('<').unwrap()].parse().unwrap()
    }

    /// The CSRF token its forms carry.
    fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let at = self.html.find(marker).expect("a form");
        let rest = &self.html[at + marker.len()..];
        rest[..rest.find('"').unwrap()].to_owned()
    }

    /// Rows of the table `id`'s body.
    fn rows(&self, id: &str) -> Vec<String> {
        let at = self
            .html
            .find(&format!("<table id=\"{id}\""))
            .unwrap_or_else(|| panic!("no table {id}"));
        let body = &self.html[at..];
        let body = &body[body.find("<tbody>").unwrap()..body.find("</tbody>").unwrap()];
        body.split("<tr>").skip(1).map(str::to_owned).collect()
    }
}

impl Browser<'_> {
    async fn go(
        &mut self,
        method: &str,
        uri: &str,
        form: &[(&str, &str)],
        extra: &[(&str, &str)],
    ) -> Page {
        let mut headers: Vec<(&str, String)> =
            extra.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        if let Some(c) = &self.cookie {
            headers.push(("cookie", format!("certpilot_session={c}")));
        }
        let body = (method == "POST").then(|| serde_urlencoded::to_string(form).unwrap());
        if body.is_some() {
            headers.push(("content-type", "application/x-www-form-urlencoded".into()));
        }
        let borrowed: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, headers, value) = self.api.full_form(method, uri, body, &borrowed).await;
        for c in headers.get_all("set-cookie") {
            let c = c.to_str().unwrap();
            let value = c
                .trim_start_matches("certpilot_session=")
                .split(';')
                .next()
                .unwrap();
            self.cookie = (!value.is_empty()).then(|| value.to_owned());
        }
        Page {
            status,
            headers,
            html: value,
        }
    }

    async fn get(&mut self, uri: &str) -> Page {
        self.go("GET", uri, &[], &[]).await
    }

    async fn post(&mut self, uri: &str, form: &[(&str, &str)]) -> Page {
        self.go("POST", uri, form, &[("sec-fetch-site", "same-origin")])
            .await
    }

    async fn signed_in(api: &Api) -> Browser<'_> {
        let mut b = Browser { api, cookie: None };
        let p = b
            .post("/ui/login", &[("token", "s3cret-ops"), ("next", "/ui")])
            .await;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.html);
        b
    }
}

async fn record(api: &Api, observations: &[Observation]) {
    api.app
        .store()
        .record_observations(observations)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_browser_signs_in_with_a_token_for_a_strict_session_and_the_api_ignores_the_cookie() {
    let api = api();
    let mut b = Browser {
        api: &api,
        cookie: None,
    };
    let p = b.get("/ui/inventory?state=expiring").await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(
        p.location(),
        "/ui/login?next=%2Fui%2Finventory%3Fstate%3Dexpiring"
    );
    let p = b.get("/ui/login?next=%2Fui%2Finventory").await;
    assert!(
        p.html.contains("type=\"password\" name=\"token\""),
        "{}",
        p.html
    );

    let p = b
        .post("/ui/login", &[("token", "guess"), ("next", "/ui")])
        .await;
    assert_eq!(p.status, StatusCode::UNAUTHORIZED);
    assert!(p.html.contains("That token is not known here."));
    assert!(b.cookie.is_none());
    // Signing in from another site's page is refused.
    let p = b
        .go(
            "POST",
            "/ui/login",
            &[("token", "s3cret-ops")],
            &[("sec-fetch-site", "cross-site")],
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert!(b.cookie.is_none());

    let p = b
        .post(
            "/ui/login",
            &[("token", "s3cret-ops"), ("next", "/ui/inventory")],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(p.location(), "/ui/inventory");
    let set = p.headers["set-cookie"].to_str().unwrap();
    for attribute in [
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/ui",
        "Max-Age=28800",
    ] {
        assert!(set.contains(attribute), "{attribute} in {set}");
    }
    let p = b.get("/ui").await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(p.html.contains("Signed in as <strong>token:ops</strong>"));
    assert_eq!(
        p.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .split(';')
            .next(),
        Some("default-src 'none'")
    );
    assert_eq!(p.headers["x-frame-options"], "DENY");

    // Never an open redirect.
    let mut other = Browser {
        api: &api,
        cookie: None,
    };
    let p = other
        .post(
            "/ui/login",
            &[("token", "s3cret-ops"), ("next", "https://evil.example/")],
        )
        .await;
    assert_eq!(p.location(), "/ui");
    let p = other
        .post(
            "/ui/login",
            &[("token", "s3cret-ops"), ("next", "//evil.example/")],
        )
        .await;
    assert_eq!(p.location(), "/ui");

    // The API takes bearer tokens only: the session cookie is no credential there.
    let cookie = format!("certpilot_session={}", b.cookie.clone().unwrap());
    let (status, _, _) = api
        .full(None, "GET", "/inventory", None, &[("cookie", &cookie)])
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A changed cookie is no session.
    let mut tampered = Browser {
        api: &api,
        cookie: Some(b.cookie.clone().unwrap().replacen('e', "f", 1)),
    };
    assert_eq!(tampered.get("/ui").await.status, StatusCode::SEE_OTHER);

    // Signing out ends it.
    let csrf = b.get("/ui").await.csrf();
    let p = b.post("/ui/logout", &[("csrf", &csrf)]).await;
    assert_eq!(p.location(), "/ui/login");
    assert!(b.cookie.is_none());
}

#[tokio::test]
async fn the_overview_counts_each_state_and_draws_certificates_by_week_of_expiry() {
    let api = api();
    let now = OffsetDateTime::now_utc();
    let at = |t: &str| observed(t, "93.184.215.14:443").at(now - Duration::minutes(5));
    record(
        &api,
        &[
            // The same certificate on two endpoints: two healthy rows, one certificate.
            at("a.example.com:443")
                .cert("aa", now + Duration::days(60))
                .build(),
            at("b.example.com:443")
                .cert("aa", now + Duration::days(60))
                .build(),
            at("c.example.com:443")
                .cert("cc", now + Duration::days(80))
                .build(),
            at("d.example.com:443")
                .cert("dd", now + Duration::days(10))
                .build(),
            at("e.example.com:443")
                .cert("ee", now + Duration::days(3))
                .build(),
            at("f.example.com:443")
                .cert("ff", now - Duration::days(2))
                .problem(Problem::Expired)
                .build(),
            at("g.example.com:443").build(),
        ],
    )
    .await;
    // certpilot manages the certificate c serves: it is counted as managed.
    let mut managed =
        certpilot_testkit::renewal_contract::managed("c.example.com", Duration::hours(1));
    managed.current = Some(
        serde_json::from_value(serde_json::json!({
            "fingerprint": "cc", "serial": "0c", "ari_id": null, "chain_pem": "",
            "key_version": "v1", "order_url": "",
            "not_before": certpilot_core::rfc3339(now - Duration::days(10)),
            "not_after": certpilot_core::rfc3339(now + Duration::days(80)),
            "issued_at": certpilot_core::rfc3339(now - Duration::days(10)),
        }))
        .unwrap(),
    );
    api.app
        .certificates()
        .add_certificate(&managed)
        .await
        .unwrap();
    let mut b = Browser::signed_in(&api).await;
    let p = b.get("/ui").await;
    assert_eq!(p.status, StatusCode::OK);
    for (state, n) in [
        ("healthy", 3),
        ("expiring", 2),
        ("failing", 1),
        ("unreachable", 1),
        ("not_served", 0),
    ] {
        assert_eq!(p.count(state), n, "{state}");
    }
    assert!(p.html.contains("<svg class=\"chart\""));
    assert!(p.html.contains("role=\"img\""));
    assert!(
        p.html.contains(
            "1 managed and 3 unmanaged in all; 0 managed and 1 unmanaged already expired"
        ),
        "{}",
        p.html
    );
    // The weeks, as the table under the chart says them.
    let weeks = p.rows("weeks");
    assert_eq!(weeks.len(), 13);
    let unmanaged: Vec<u64> = weeks
        .iter()
        .map(|r| {
            let cells: Vec<&str> = r.split("<td class=\"num\">").skip(1).collect();
            cells[1][..cells[1].find('<').unwrap()].parse().unwrap()
        })
        .collect();
    let managed_weeks: Vec<u64> = weeks
        .iter()
        .map(|r| {
            let cells: Vec<&str> = r.split("<td class=\"num\">").skip(1).collect();
            cells[0][..cells[0].find('<').unwrap()].parse().unwrap()
        })
        .collect();
    assert_eq!(
        managed_weeks[11], 1,
        "cc in 80 days: week 12 ({managed_weeks:?})"
    );
    assert_eq!(unmanaged.iter().sum::<u64>(), 3);
    assert_eq!(unmanaged[0], 1, "e expires in 3 days: this week");
    assert_eq!(unmanaged[8], 1, "aa in 60 days: week 9 ({unmanaged:?})");
    assert!(p.html.contains("Expired: </strong>0 managed, 1 unmanaged"));
}

#[tokio::test]
async fn the_inventory_filters_sorts_pages_and_downloads_what_it_shows() {
    let api = api();
    let now = OffsetDateTime::now_utc();
    let mut obs = Vec::new();
    for i in 0..120 {
        let days = if i % 4 == 0 { 10 + i / 10 } else { 40 + i };
        let mut o = observed(&format!("host{i:03}.example.com:443"), "93.184.215.14:443")
            .at(now - Duration::minutes(5))
            .cert(&format!("{i:064x}"), now + Duration::days(days));
        if i % 3 == 0 {
            o = o.tag("owner", "payments");
        }
        obs.push(o.build());
    }
    record(&api, &obs).await;
    let mut b = Browser::signed_in(&api).await;

    let p = b.get("/ui/inventory").await;
    assert!(p.html.contains("120 row(s), page 1 of 3"), "{}", p.html);
    let rows = p.rows("inventory");
    assert_eq!(rows.len(), 50);
    assert!(rows[0].contains("host000.example.com"));
    let p = b.get("/ui/inventory?page=3").await;
    assert_eq!(p.rows("inventory").len(), 20);
    assert!(p.rows("inventory")[19].contains("host119.example.com"));

    let p = b.get("/ui/inventory?state=expiring").await;
    assert!(p.html.contains("30 row(s)"), "{}", p.html);
    let p = b
        .get("/ui/inventory?state=expiring&tag=owner%3Dpayments")
        .await;
    assert!(p.html.contains("10 row(s)"), "{}", p.html);
    let p = b.get("/ui/inventory?q=HOST10").await;
    assert!(
        p.html.contains("10 row(s)"),
        "host100 to host109: {}",
        p.html
    );

    // Days left, most urgent first; then the other way.
    let p = b.get("/ui/inventory?sort=days").await;
    assert!(
        p.rows("inventory")[0].contains("host000.example.com"),
        "{}",
        p.rows("inventory")[0]
    );
    assert!(p.html.contains("aria-sort=\"ascending\""));
    let p = b.get("/ui/inventory?sort=days&dir=desc").await;
    assert!(p.rows("inventory")[0].contains("host119.example.com"));
    let p = b.get("/ui/inventory?sort=size").await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    assert!(
        p.html
            .contains("sort: &quot;size&quot;: one of target, state, days, issuer"),
        "{}",
        p.html
    );

    let p = b
        .get("/ui/inventory.csv?state=expiring&tag=owner%3Dpayments")
        .await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(
        p.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert_eq!(
        p.html.lines().count(),
        11,
        "a header and the 10 rows the page shows"
    );
}

async fn a_finding(api: &Api) -> String {
    let now = OffsetDateTime::now_utc();
    let o = observed("old.example.com:443", "93.184.215.14:443")
        .at(now - Duration::minutes(5))
        .cert("0b", now - Duration::days(1))
        .problem(Problem::Expired)
        .build();
    record(api, std::slice::from_ref(&o)).await;
    let svc = api.app.findings_service();
    let mut ev = svc.scan_evaluation(&*api.app.certificates()).await.unwrap();
    ev.push(&o, svc.policy());
    let found = ev.record(&svc, &Default::default()).await.unwrap();
    assert!(!found.is_empty());
    found[0].key.clone()
}

#[tokio::test]
async fn a_forged_form_is_refused_and_an_acknowledgement_sticks() {
    let api = api();
    let key = a_finding(&api).await;
    let mut b = Browser::signed_in(&api).await;
    let p = b.get("/ui/findings").await;
    assert!(p.html.contains("old.example.com"), "{}", p.html);
    let csrf = p.csrf();
    let action = format!(
        "/ui/findings/{}/ack",
        certpilot_api::dashboard::query_escape(&key)
    );
    let form = |token: &'static str| {
        vec![
            ("reason", "replaced next week"),
            ("until", "2099-01-01"),
            ("csrf", token),
        ]
    };
    let still_open = |api: &Api| {
        let key = key.clone();
        let store = api.app.findings();
        async move { store.finding(&key).await.unwrap().unwrap().state == FindingState::Open }
    };

    // No token, a wrong one, the right one from another site, or no session: refused.
    let p = b
        .post(&action, &[("reason", "x"), ("until", "2099-01-01")])
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert!(
        p.html.contains("security token does not match"),
        "{}",
        p.html
    );
    let p = b.post(&action, &form("forged")).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    let p = b
        .go(
            "POST",
            &action,
            &[("reason", "x"), ("until", "2099-01-01"), ("csrf", &csrf)],
            &[("sec-fetch-site", "cross-site")],
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert!(p.html.contains("sent from another site"));
    let p = b
        .go(
            "POST",
            &action,
            &[("reason", "x"), ("until", "2099-01-01"), ("csrf", &csrf)],
            &[
                ("origin", "https://evil.example"),
                ("host", "certpilot.example"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    let mut stranger = Browser {
        api: &api,
        cookie: None,
    };
    let p = stranger
        .post(
            &action,
            &[("reason", "x"), ("until", "2099-01-01"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert!(still_open(&api).await);

    // A date in the past is the API's refusal, in its words.
    let p = b
        .post(
            &action,
            &[("reason", "x"), ("until", "2001-01-01"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    assert!(p.html.contains("until: that is in the past"), "{}", p.html);

    let p = b
        .post(
            &action,
            &[
                ("reason", "replaced next week"),
                ("until", "2099-01-01"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.html);
    assert_eq!(p.location(), "/ui/findings");
    assert!(!still_open(&api).await);
    let p = b.get("/ui/findings").await;
    assert!(
        p.html
            .contains("Acknowledged: replaced next week until 2099-01-01 23:59 UTC"),
        "{}",
        p.html
    );
    // The audit log names the session's caller.
    let (_, audit) = api.call("GET", "/audit", None).await;
    assert!(audit.to_string().contains("token:ops"), "{audit}");
    assert!(
        audit.to_string().contains("/ui/findings/{key}/ack"),
        "{audit}"
    );
}

#[tokio::test]
async fn a_scanned_servers_words_are_shown_as_text_never_as_markup() {
    let api = api();
    let now = OffsetDateTime::now_utc();
    let mut o = observed("evil.example.com:443", "93.184.215.14:443")
        .at(now)
        .cert("ab", now + Duration::days(50))
        .build();
    if let Some(c) = o.certificate.as_mut() {
        c.subject = "CN=<script>alert(1)</script>".into();
        c.issuer = "\"><img src=x onerror=alert(2)>".into();
    }
    record(&api, &[o]).await;
    let mut b = Browser::signed_in(&api).await;
    let p = b.get("/ui/inventory").await;
    assert!(
        p.html.contains("CN=&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        p.html
    );
    assert!(!p.html.contains("<script>"));
    assert!(!p.html.contains("<img"));
    let p = b.get("/ui/inventory?q=%3Cscript%3E").await;
    assert!(p.html.contains("value=\"&lt;script&gt;\""), "{}", p.html);
}

#[tokio::test]
async fn the_request_form_offers_the_policys_choices_and_shows_the_request() {
    let api = api();
    let mut b = Browser::signed_in(&api).await;
    let p = b.get("/ui/request").await;
    assert!(p.html.contains("<option value=\"pebble\""), "{}", p.html);
    assert!(p.html.contains("<label for=\"names\">"));
    let csrf = p.csrf();
    // Outside the policy: its words, and what was typed kept.
    let p = b
        .post(
            "/ui/request",
            &[
                ("names", "www.other.example.org"),
                ("issuer", "pebble"),
                ("challenge", "http"),
                ("key_type", "ecdsa-p256"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN, "{}", p.html);
    assert!(p.html.contains("role=\"alert\""));
    assert!(p.html.contains("www.other.example.org</textarea>"));
    let p = b
        .post(
            "/ui/request",
            &[
                ("names", "www.shop.example.com"),
                ("issuer", "pebble"),
                ("challenge", "http"),
                ("key_type", "ecdsa-p256"),
                ("owner", "shop"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.html);
    assert_eq!(p.location(), "/ui/certificates/www.shop.example.com");
    let p = b.get(p.location()).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.html);
    assert!(
        p.html.contains("<li class=\"done\">requested"),
        "{}",
        p.html
    );
    assert!(
        p.html.contains("aria-current=\"step\">issued"),
        "{}",
        p.html
    );
    assert!(
        p.html.contains("http-equiv=\"refresh\""),
        "it follows the progress"
    );
    assert!(p.html.contains("Renew now"), "token:ops may manage it");
    assert_eq!(api.work.0.lock().unwrap().len(), 1, "handed to the workers");
}

#[tokio::test]
async fn the_not_served_count_lists_the_same_certificates_it_counts() {
    let api = api();
    let now = OffsetDateTime::now_utc();
    // An expired certificate that a deployment does not serve either: one of the "not
    // served", whatever else is wrong with it.
    let mut c = certpilot_testkit::renewal_contract::managed("lb.example.com", Duration::hours(1));
    c.current = Some(
        serde_json::from_value(serde_json::json!({
            "fingerprint": "ee", "serial": "0e", "ari_id": null, "chain_pem": "",
            "key_version": "v1", "order_url": "",
            "not_before": certpilot_core::rfc3339(now - Duration::days(100)),
            "not_after": certpilot_core::rfc3339(now - Duration::days(1)),
            "issued_at": certpilot_core::rfc3339(now - Duration::days(100)),
        }))
        .unwrap(),
    );
    c.deployments = vec![
        serde_json::from_value(serde_json::json!({
            "name": "lb", "fingerprint": "ee", "at": certpilot_core::rfc3339(now),
            "status": "not_serving",
        }))
        .unwrap(),
    ];
    api.app.certificates().add_certificate(&c).await.unwrap();
    let mut b = Browser::signed_in(&api).await;
    let overview = b.get("/ui").await;
    assert_eq!(overview.count("not_served"), 1);
    let listed = b.get("/ui/certificates?state=not_served").await;
    let rows = listed.rows("certificates");
    assert_eq!(rows.len(), 1, "{}", listed.html);
    assert!(rows[0].contains("lb.example.com") && rows[0].contains("expired"));
}
