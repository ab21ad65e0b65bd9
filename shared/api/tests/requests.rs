//! Requesting certificates through the router: the policy judges every part and a refusal
//! stores nothing; accepted requests are managed and handed to the workers; approvals by an
//! approver who is not the requester; Idempotency-Key; the audit trail says who asked.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::http::StatusCode;
use certpilot_core::ports::CertificateWork;
use serde_json::{Value, json};

mod common;
use common::{Api, api_with};

const POLICY: &str = r#"
issuers:
  pebble:
    directory: https://localhost:14000/dir
  acm-eu:
    acm_region: eu-west-1
challenges:
  route53: {type: dns01, provider: {kind: route53}}
rules:
  - name: payments
    callers: ["token:payments", "token:payments-*"]
    suffixes: [pay.example.com]
    issuers: [pebble]
    key_types: [ecdsa-p256, ecdsa-p384]
    deploy_kinds: [acm]
  - name: restricted
    callers: ["token:*"]
    suffixes: [secure.example.com]
    issuers: [pebble, acm-eu]
    required_tags: [environment]
    approval: {approvers: ["token:security", "token:ciso"]}
"#;

fn api() -> Api {
    let policy = certpilot_api::request_policy_from_yaml(POLICY, "policy.yaml").unwrap();
    let api = api_with(&[], Some(policy));
    api.names.set("shop.pay.example.com", &["93.184.215.14"]);
    api.names.set("internal.pay.example.com", &["10.0.0.7"]);
    api
}

fn request(names: &[&str]) -> Value {
    json!({
        "names": names,
        "issuer": "pebble",
        "challenge": "route53",
        "tags": {"owner": "payments"},
    })
}

async fn stored_ids(api: &Api) -> Vec<String> {
    let mut ids: Vec<String> = api
        .app
        .certificates()
        .certificates()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    ids.extend(
        api.app
            .requests()
            .pending_requests()
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id),
    );
    ids
}

#[tokio::test]
async fn an_allowed_request_is_managed_watched_and_handed_to_the_workers() {
    let api = api();
    let mut body = request(&["shop.pay.example.com", "Bücher.pay.example.com"]);
    body["endpoints"] = json!(["shop.pay.example.com"]);
    body["profile"] = json!("tlsserver");
    let (status, headers, accepted) = api
        .full(
            Some("token:payments"),
            "POST",
            "/certificates",
            Some(body.to_string()),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    assert_eq!(accepted["id"], "shop.pay.example.com");
    assert_eq!(accepted["state"], "pending");
    assert_eq!(headers["location"], "/certificates/shop.pay.example.com");
    let cert = api
        .app
        .certificates()
        .certificate("shop.pay.example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        cert.spec.name_set(),
        ["shop.pay.example.com", "xn--bcher-kva.pay.example.com"],
        "an internationalised name is requested in its A-label form"
    );
    assert_eq!(cert.spec.issuer.directory, "https://localhost:14000/dir");
    assert_eq!(cert.spec.tags["owner"], "payments");
    assert_eq!(
        *api.work.0.lock().unwrap(),
        [CertificateWork::Renew {
            id: "shop.pay.example.com".into(),
            force: false
        }]
    );
    // Its endpoint is watched from now on.
    let (_, endpoints) = api.call("GET", "/endpoints", None).await;
    assert_eq!(endpoints["items"][0]["target"], "shop.pay.example.com:443");
    // GET follows it.
    let (status, shown) = api
        .call("GET", "/certificates/shop.pay.example.com", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["state"], "pending");
    // Once is enough.
    let (status, again) = api
        .call_as(
            "token:payments",
            "POST",
            "/certificates",
            Some(request(&["shop.pay.example.com"])),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
}

#[tokio::test]
async fn a_request_outside_the_policy_is_refused_naming_the_rule_and_nothing_is_stored() {
    let api = api();
    let cases: Vec<(&str, Value, StatusCode, &str)> = vec![
        (
            "token:payments",
            request(&["shop.example.org"]),
            StatusCode::FORBIDDEN,
            "rule payments: names: shop.example.org is not under pay.example.com",
        ),
        (
            "token:payments",
            json!({"names": ["a.pay.example.com"], "issuer": "acm-eu", "challenge": "route53", "tags": {"owner": "p"}}),
            StatusCode::FORBIDDEN,
            "rule payments: issuer: \"acm-eu\" is not allowed",
        ),
        (
            "token:payments",
            json!({"names": ["a.pay.example.com"], "issuer": "pebble", "challenge": "route53", "key_type": "rsa2048", "tags": {"owner": "p"}}),
            StatusCode::FORBIDDEN,
            "key_type: rsa2048 is not allowed",
        ),
        (
            "token:payments",
            json!({"names": ["a.pay.example.com"], "issuer": "pebble", "challenge": "route53"}),
            StatusCode::FORBIDDEN,
            "tags: \"owner\" is required",
        ),
        (
            "token:payments",
            json!({"names": ["a.pay.example.com"], "issuer": "pebble", "challenge": "route53", "tags": {"owner": "p"},
                   "deployments": [{"name": "disk", "kind": "files", "settings": {"dir": "/etc/ssl/x"}}]}),
            StatusCode::FORBIDDEN,
            "deployments: kind \"files\" is not allowed",
        ),
        (
            "token:mallory",
            request(&["a.pay.example.com"]),
            StatusCode::FORBIDDEN,
            "rule restricted: names: a.pay.example.com is not under secure.example.com",
        ),
        (
            "jwt:https://idp|eve",
            request(&["a.pay.example.com"]),
            StatusCode::FORBIDDEN,
            "no rule of the request policy lets jwt:https://idp|eve request certificates",
        ),
        (
            "token:payments",
            json!({"names": ["a.pay.example.com"], "issuer": "letsencrypt", "challenge": "route53", "tags": {"owner": "p"}}),
            StatusCode::BAD_REQUEST,
            "issuer: \"letsencrypt\" is not one of this API's issuers (acm-eu, pebble)",
        ),
        (
            "token:payments",
            request(&["a..pay.example.com"]),
            StatusCode::BAD_REQUEST,
            "names[0]",
        ),
        (
            "token:payments",
            {
                let names: Vec<String> = (0..26).map(|i| format!("n{i}.pay.example.com")).collect();
                json!({"names": names, "issuer": "pebble", "challenge": "route53", "profile": "tlsserver", "tags": {"owner": "p"}})
            },
            StatusCode::BAD_REQUEST,
            "the tlsserver profile takes at most 25 names",
        ),
        (
            "token:payments",
            {
                let mut r = request(&["a.pay.example.com"]);
                r["endpoints"] = json!(["internal.pay.example.com"]);
                r
            },
            StatusCode::FORBIDDEN,
            "10.0.0.7 is a private address",
        ),
        (
            "token:payments",
            json!({"names": ["a.pay.example.com"], "issuer": "pebble", "challenge": "route53", "tags": {"owner": "p"}, "directory": "https://evil.example/dir"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown field `directory`",
        ),
    ];
    for (caller, body, want_status, want) in cases {
        let (status, err) = api
            .call_as(caller, "POST", "/certificates", Some(body.clone()))
            .await;
        assert_eq!(status, want_status, "{body}: {err}");
        assert!(
            err["message"].as_str().unwrap().contains(want),
            "{body}: {err} should say {want}"
        );
    }
    assert!(
        stored_ids(&api).await.is_empty(),
        "a refusal stores nothing"
    );
    assert!(api.work.0.lock().unwrap().is_empty());
    assert!(api.app.store().endpoints().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_request_needing_approval_waits_for_an_approver_who_is_not_the_requester() {
    let api = api();
    let body = json!({
        "names": ["www.secure.example.com"], "issuer": "pebble", "challenge": "route53",
        "tags": {"owner": "web", "environment": "prod"},
    });
    let (status, accepted) = api
        .call_as("token:security", "POST", "/certificates", Some(body))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    assert_eq!(accepted["state"], "pending_approval");
    assert_eq!(
        accepted["approvers"],
        json!(["token:security", "token:ciso"])
    );
    assert!(api.work.0.lock().unwrap().is_empty(), "nothing issued yet");
    let (_, listed) = api
        .call("GET", "/certificates?state=pending_approval", None)
        .await;
    assert_eq!(listed["items"][0]["id"], "www.secure.example.com");
    let (_, shown) = api
        .call("GET", "/certificates/www.secure.example.com", None)
        .await;
    assert_eq!(shown["state"], "pending_approval");
    assert_eq!(shown["request"]["requester"], "token:security");

    let uri = "/certificates/www.secure.example.com/approve";
    let (status, err) = api.call_as("token:security", "POST", uri, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{err}");
    assert!(err["message"].as_str().unwrap().contains("own request"));
    let (status, err) = api.call_as("token:payments", "POST", uri, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{err}");
    assert!(err["message"].as_str().unwrap().contains("not an approver"));
    let (status, approved) = api
        .call_as(
            "token:ciso",
            "POST",
            uri,
            Some(json!({"reason": "change 4711"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{approved}");
    assert_eq!(approved["state"], "pending");
    assert_eq!(api.work.0.lock().unwrap().len(), 1);
    let (_, shown) = api
        .call("GET", "/certificates/www.secure.example.com", None)
        .await;
    assert_eq!(shown["request"]["decided_by"], "token:ciso");
    assert_eq!(shown["request"]["reason"], "change 4711");
    let (status, _) = api.call_as("token:security", "POST", uri, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "decided once");

    // A rejection issues nothing, and the id may be asked for again.
    let body = json!({
        "names": ["db.secure.example.com"], "issuer": "pebble", "challenge": "route53",
        "tags": {"owner": "db", "environment": "prod"},
    });
    api.call_as("token:dba", "POST", "/certificates", Some(body.clone()))
        .await;
    let (status, rejected) = api
        .call_as(
            "token:security",
            "POST",
            "/certificates/db.secure.example.com/reject",
            Some(json!({"reason": "use the shared wildcard"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rejected}");
    assert_eq!(rejected["state"], "rejected");
    assert!(
        api.app
            .certificates()
            .certificate("db.secure.example.com")
            .await
            .unwrap()
            .is_none()
    );
    let (status, _) = api
        .call_as("token:dba", "POST", "/certificates", Some(body))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_answer_and_refuses_another_body() {
    let api = api();
    let body = request(&["shop.pay.example.com"]).to_string();
    let key = [("idempotency-key", "7f1c0e4e-retry")];
    let (first, _, a) = api
        .full(
            Some("token:payments"),
            "POST",
            "/certificates",
            Some(body.clone()),
            &key,
        )
        .await;
    assert_eq!(first, StatusCode::ACCEPTED, "{a}");
    let (second, headers, b) = api
        .full(
            Some("token:payments"),
            "POST",
            "/certificates",
            Some(body),
            &key,
        )
        .await;
    assert_eq!(
        second,
        StatusCode::ACCEPTED,
        "a retry is not a conflict: {b}"
    );
    assert_eq!(a, b);
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(api.work.0.lock().unwrap().len(), 1, "issued once");
    let other = request(&["api.pay.example.com"]).to_string();
    let (status, _, err) = api
        .full(
            Some("token:payments"),
            "POST",
            "/certificates",
            Some(other.clone()),
            &key,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(err["code"], "idempotency_key_reused");
    // Keys are per caller.
    let (status, _, _) = api
        .full(
            Some("token:payments-ci"),
            "POST",
            "/certificates",
            Some(other),
            &key,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn the_audit_trail_says_who_did_what_including_refusals() {
    let api = api();
    api.call_as(
        "token:payments",
        "POST",
        "/certificates",
        Some(request(&["shop.pay.example.com"])),
    )
    .await;
    api.call_as(
        "token:mallory",
        "POST",
        "/certificates",
        Some(request(&["shop.pay.example.com"])),
    )
    .await;
    let (status, _) = api
        .call_as(
            "token:payments",
            "POST",
            "/certificates/shop.pay.example.com/renew",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = api
        .call_as(
            "token:mallory",
            "DELETE",
            "/certificates/shop.pay.example.com",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, page) = api.call("GET", "/audit?limit=3", None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let items = page["items"].as_array().unwrap();
    let row = |i: usize| {
        (
            items[i]["principal"].as_str().unwrap().to_owned(),
            items[i]["action"].as_str().unwrap().to_owned(),
            items[i]["status"].as_u64().unwrap(),
        )
    };
    assert_eq!(
        row(0),
        (
            "token:mallory".into(),
            "DELETE /certificates/{id}".into(),
            403
        )
    );
    assert_eq!(
        row(1),
        (
            "token:payments".into(),
            "POST /certificates/{id}/renew".into(),
            202
        )
    );
    assert_eq!(items[1]["subject"], "shop.pay.example.com");
    assert_eq!(
        row(2),
        ("token:mallory".into(), "POST /certificates".into(), 403)
    );
    assert!(items[2]["outcome"].as_str().unwrap().contains("policy"));
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, older) = api
        .call("GET", &format!("/audit?cursor={cursor}"), None)
        .await;
    let older = older["items"].as_array().unwrap();
    assert_eq!(older.len(), 1);
    assert_eq!(older[0]["principal"], "token:payments");
    assert!(
        older[0]["outcome"]
            .as_str()
            .unwrap()
            .contains("requested shop.pay.example.com")
    );
    // Reads are not recorded; the trail cannot be written through the API.
    let (status, _) = api.call("POST", "/audit", Some(json!({}))).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn renew_rollback_and_removal_need_a_rule_covering_the_names() {
    let api = api();
    api.call_as(
        "token:payments",
        "POST",
        "/certificates",
        Some(request(&["shop.pay.example.com"])),
    )
    .await;
    let id = "shop.pay.example.com";
    let (status, err) = api
        .call_as(
            "token:mallory",
            "POST",
            &format!("/certificates/{id}/renew"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{err}");
    let (status, err) = api
        .call_as(
            "token:payments",
            "POST",
            &format!("/certificates/{id}/rollback"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert!(err["message"].as_str().unwrap().contains("no deployments"));
    let (status, _) = api
        .call_as(
            "token:payments",
            "DELETE",
            &format!("/certificates/{id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(stored_ids(&api).await.is_empty());
}

#[tokio::test]
async fn without_a_policy_nobody_may_request_certificates() {
    let api = common::api(&[]);
    let (status, err) = api
        .call("POST", "/certificates", Some(request(&["a.example.com"])))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(err["code"], "no_policy");
}

#[tokio::test]
async fn the_estate_reads_as_inventory_csv_findings_metrics_and_health() {
    let api = api();
    let (status, health) = api.raw("GET", "/healthz", None, false).await;
    assert_eq!(status, StatusCode::OK, "no caller needed: {health}");
    let (status, page) = api.call("GET", "/inventory?limit=10", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["items"], json!([]));
    let (status, headers, csv) = api
        .full(
            Some("token:ops"),
            "GET",
            "/inventory",
            None,
            &[("accept", "text/csv")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(csv.as_str().unwrap().starts_with("target,address,status"));
    let (status, findings) = api.call("GET", "/findings?severity=warning", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(findings["items"], json!([]));
    let (status, err) = api.call("GET", "/findings?severity=loud", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(err["message"].as_str().unwrap().starts_with("severity:"));
    let (status, metrics) = api.call("GET", "/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("# TYPE ssl_cert_not_after gauge")
    );
    let (status, err) = api
        .call(
            "POST",
            "/findings/nope/ack",
            Some(json!({"reason": "known", "until": "2099-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{err}");
}
