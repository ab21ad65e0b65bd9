//! The router as either front serves it, over a real SQLite store: endpoints registered,
//! listed by page, removed by their opaque id; the address policy after resolution (and a
//! name whose resolution changes); errors as JSON naming the input; the caller required;
//! certificates read without keys; the OpenAPI document matching the routes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::http::StatusCode;
use serde_json::json;

mod common;
use common::api;

#[tokio::test]
async fn endpoints_are_registered_listed_by_page_and_removed_by_opaque_id() {
    let api = api(&[]);
    api.names.set("shop.example.com", &["93.184.215.14"]);
    api.names.set("mx.example.com", &["2606:4700::1111"]);
    let (status, shop) = api
        .call(
            "POST",
            "/endpoints",
            Some(json!({"target": "shop.example.com", "tags": {"owner": "payments"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{shop}");
    assert_eq!(shop["target"], "shop.example.com:443");
    assert_eq!(shop["tags"]["owner"], "payments");
    let id = shop["id"].as_str().unwrap().to_owned();
    assert!(
        id.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "URL-safe: {id}"
    );
    // The same again: merged, 200.
    let (status, again) = api
        .call(
            "POST",
            "/endpoints",
            Some(json!({"target": "shop.example.com:443", "tags": {"environment": "prod"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["id"], id.as_str());
    assert_eq!(again["tags"]["owner"], "payments");
    assert_eq!(again["tags"]["environment"], "prod");
    for t in ["smtp://mx.example.com:587", "[2606:4700::1111]:8443"] {
        let (status, v) = api
            .call("POST", "/endpoints", Some(json!({"target": t})))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{t}: {v}");
    }

    // Pages of two, then one, in a stable order, each item once.
    let (status, first) = api.call("GET", "/endpoints?limit=2", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, second) = api
        .call("GET", &format!("/endpoints?limit=2&cursor={cursor}"), None)
        .await;
    assert_eq!(second["items"].as_array().unwrap().len(), 1);
    assert!(second.get("next_cursor").is_none(), "{second}");
    let mut seen: Vec<&str> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["items"].as_array().unwrap())
        .map(|e| e["target"].as_str().unwrap())
        .collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        [
            "[2606:4700::1111]:8443",
            "shop.example.com:443",
            "smtp://mx.example.com:587"
        ]
    );
    // Filtered by target, in any spelling the CLI accepts.
    let (_, only) = api
        .call("GET", "/endpoints?target=https://shop.example.com", None)
        .await;
    assert_eq!(only["items"].as_array().unwrap().len(), 1);

    let (status, _) = api.call("DELETE", &format!("/endpoints/{id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, err) = api.call("DELETE", &format!("/endpoints/{id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(err["code"], "not_found");
    let (_, rest) = api.call("GET", "/endpoints", None).await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn scans_may_not_be_pointed_at_internal_addresses_in_any_spelling() {
    let api = api(&["10.20.0.0/16"]);
    api.names
        .set("metadata.internal.example", &["169.254.169.254"]);
    api.names
        .set("mixed.example.com", &["93.184.215.14", "10.1.2.3"]);
    api.names.set("lab.example.com", &["10.20.3.4"]);
    for target in [
        "169.254.169.254",
        "[fd00:ec2::254]:443",
        "127.0.0.1:8443",
        "[::ffff:127.0.0.1]:443",
        "[::1]:443",
        "192.168.0.1",
        "[fe80::1]:443",
        "metadata.internal.example",
        // One private address among public ones is enough to refuse.
        "mixed.example.com",
    ] {
        let (status, err) = api
            .call("POST", "/endpoints", Some(json!({"target": target})))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{target}: {err}");
        assert_eq!(err["code"], "address_not_allowed", "{target}");
    }
    let (_, err) = api
        .call(
            "POST",
            "/endpoints",
            Some(json!({"target": "metadata.internal.example"})),
        )
        .await;
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("169.254.169.254 is the cloud metadata service"),
        "{err}"
    );
    // Decimal and octal spellings of an address are not host names at all.
    for target in ["2130706433", "0177.0.0.1", "0x7f.1"] {
        let (status, err) = api
            .call("POST", "/endpoints", Some(json!({"target": target})))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{target}: {err}");
        assert_eq!(err["code"], "invalid_target");
    }
    // The operator's network passes.
    let (status, v) = api
        .call(
            "POST",
            "/endpoints",
            Some(json!({"target": "lab.example.com"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    // Nothing refused was stored.
    let (_, all) = api.call("GET", "/endpoints", None).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 1, "{all}");
    // A name that resolves elsewhere later is refused from then on.
    api.names.set("lab.example.com", &["127.0.0.1"]);
    let (status, _) = api
        .call(
            "POST",
            "/endpoints",
            Some(json!({"target": "lab.example.com", "tags": {"a": "b"}})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn bad_requests_are_json_errors_that_name_the_input() {
    let api = api(&[]);
    api.names.set("shop.example.com", &["93.184.215.14"]);
    let cases: Vec<(Option<String>, StatusCode, &str, &str)> = vec![
        (
            Some(json!({"target": "shop.example.com", "tagz": {}}).to_string()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "unknown field `tagz`",
        ),
        (
            Some(json!({"tags": {}}).to_string()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "missing field `target`",
        ),
        (
            Some("{\"target\": ".into()),
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "",
        ),
        (
            Some(json!({"target": "ftp2://x"}).to_string()),
            StatusCode::BAD_REQUEST,
            "invalid_target",
            "unsupported scheme",
        ),
        (
            Some(json!({"target": "shop.example.com", "tags": {"Owner": "x"}}).to_string()),
            StatusCode::BAD_REQUEST,
            "invalid_field",
            "tags:",
        ),
        (
            Some(format!(
                "{{\"target\": \"shop.example.com\", \"tags\": {{\"a\": \"{}\"}}}}",
                "x".repeat(certpilot_api::MAX_BODY)
            )),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "larger than",
        ),
    ];
    for (body, status, code, words) in cases {
        let (got, err) = api.raw("POST", "/endpoints", body.clone(), true).await;
        assert_eq!(got, status, "{err}");
        assert_eq!(err["code"], code, "{err}");
        assert!(err["message"].as_str().unwrap().contains(words), "{err}");
    }
    let (status, err) = api.call("GET", "/endpoints?limit=0", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        err["message"].as_str().unwrap().starts_with("limit:"),
        "{err}"
    );
    let (status, err) = api.call("GET", "/endpoints?cursor=%%%", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    let (status, err) = api.call("GET", "/nothing-here", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(err["code"], "not_found");
    // No caller, no answer: a front that forgot to authenticate fails closed.
    let (status, err) = api.raw("GET", "/endpoints", None, false).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(err["code"], "unauthenticated");
}

#[tokio::test]
async fn certificates_are_read_with_their_state_and_never_a_key() {
    let api = api(&[]);
    let mut cert =
        certpilot_testkit::renewal_contract::managed("shop.example.com", time::Duration::hours(1));
    cert.id = "shop".into();
    cert.spec.tags.insert("owner".into(), "payments".into());
    api.app.certificates().add_certificate(&cert).await.unwrap();
    let (status, page) = api
        .call("GET", "/certificates?tag=owner=payments", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["items"][0]["id"], "shop");
    assert_eq!(page["items"][0]["names"], json!(["shop.example.com"]));
    let (_, none) = api
        .call("GET", "/certificates?tag=owner=search", None)
        .await;
    assert_eq!(none["items"], json!([]));
    let (status, detail) = api.call("GET", "/certificates/shop", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(detail["certificate"]["id"], "shop");
    assert!(!detail.to_string().contains("PRIVATE KEY"));
    let (status, err) = api.call("GET", "/certificates/nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(err["code"], "not_found");
}

#[tokio::test]
async fn the_openapi_document_describes_every_route_and_only_those() {
    let api = api(&[]);
    let (status, doc) = api.call("GET", "/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.push((method.to_uppercase(), path.clone()));
        }
    }
    documented.sort();
    // Every documented operation is routed (not the fallback's `no such route`).
    for (method, path) in &documented {
        let uri = path.replace("{id}", "x").replace("{key}", "x");
        let (status, body) = api
            .raw(method, &uri, (method == "POST").then(|| "{}".into()), true)
            .await;
        assert!(
            !(status == StatusCode::NOT_FOUND
                && body["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("no such route"))),
            "{method} {path} is documented but not routed"
        );
    }
    assert_eq!(
        documented,
        [
            ("DELETE", "/certificates/{id}"),
            ("DELETE", "/endpoints/{id}"),
            ("GET", "/audit"),
            ("GET", "/certificates"),
            ("GET", "/certificates/{id}"),
            ("GET", "/endpoints"),
            ("GET", "/findings"),
            ("GET", "/healthz"),
            ("GET", "/inventory"),
            ("GET", "/metrics"),
            ("POST", "/certificates"),
            ("POST", "/certificates/{id}/approve"),
            ("POST", "/certificates/{id}/reject"),
            ("POST", "/certificates/{id}/renew"),
            ("POST", "/certificates/{id}/rollback"),
            ("POST", "/endpoints"),
            ("POST", "/findings/{key}/ack"),
        ]
        .map(|(m, p)| (m.to_owned(), p.to_owned())),
        "the routes the router serves (add a route: document it here and there)"
    );
    // A deployment in a request is one of the registered kinds, each with its settings.
    let deployment = &doc["components"]["schemas"]["Deployment"];
    let kinds: Vec<&str> = deployment["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["properties"]["kind"]["const"].as_str().unwrap())
        .collect();
    let registered: Vec<&str> = certpilot_app::deploy_kinds()
        .iter()
        .map(|k| k.kind)
        .collect();
    assert_eq!(kinds, registered);
    assert!(
        deployment["oneOf"][0]["properties"]["settings"]["properties"]
            .as_object()
            .is_some_and(|p| !p.is_empty()),
        "{deployment}"
    );
    assert_eq!(
        doc["components"]["schemas"]["NewCertificate"]["properties"]["deployments"]["items"]["$ref"],
        "#/components/schemas/Deployment"
    );
}
