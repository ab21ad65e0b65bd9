//! The real API function under `cargo lambda watch`, on moto: API Gateway HTTP API events
//! (payload v2, `infra/events/api-*.json`) with IAM and JWT request contexts, answered by the
//! same router as `certpilot serve`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use certpilot_core::ports::EndpointStore as _;
use certpilot_dynamodb::DynamoStore;
use certpilot_testkit::procs::{shared_moto, workspace_root};
use serde_json::{Value, json};

fn event(name: &str) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join("infra/events").join(name)).unwrap(),
    )
    .unwrap()
}

/// The status and the JSON body of a function's answer to an HTTP API event.
fn answer(response: &Value) -> (u64, Value) {
    let body = response["body"].as_str().unwrap_or_default();
    (
        response["statusCode"].as_u64().unwrap(),
        if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(body).unwrap()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_function_answers_http_api_events_as_the_caller_in_the_context() {
    let moto = shared_moto();
    let config = certpilot_e2e::moto_sdk_config(&moto.endpoint_url);
    let table = format!("api-{}", std::process::id());
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), &table);
    store.create_table().await.unwrap();
    let watch = certpilot_e2e::LambdaWatch::start(
        &moto.endpoint_url,
        &[("CERTPILOT_TABLE", table.clone())],
    );

    // An IAM caller registers an endpoint.
    let (status, created) = answer(
        &watch
            .invoke("api", &event("api-iam-register-endpoint.json"))
            .await,
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["target"], "93.184.215.14:443");
    let stored = store.endpoint("93.184.215.14:443").await.unwrap().unwrap();
    assert_eq!(
        stored.tags.get("owner").map(String::as_str),
        Some("payments")
    );

    // A JWT caller lists it.
    let (status, page) = answer(
        &watch
            .invoke("api", &event("api-jwt-list-endpoints.json"))
            .await,
    );
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"][0]["id"], created["id"]);

    // Loopback (the function's own environment) is refused; nothing is stored.
    let mut internal = event("api-iam-register-endpoint.json");
    internal["body"] = Value::String(json!({"target": "127.0.0.1:9001"}).to_string());
    let (status, err) = answer(&watch.invoke("api", &internal).await);
    assert_eq!(status, 403, "{err}");
    assert_eq!(err["code"], "address_not_allowed");
    assert!(store.endpoint("127.0.0.1:9001").await.unwrap().is_none());

    // No authorizer in the context (a route deployed without one): refused.
    let mut anonymous = event("api-jwt-list-endpoints.json");
    anonymous["requestContext"]
        .as_object_mut()
        .unwrap()
        .remove("authorizer");
    let (status, err) = answer(&watch.invoke("api", &anonymous).await);
    assert_eq!(status, 401, "{err}");
    assert_eq!(err["code"], "unauthenticated");

    // The document is the router's.
    let mut doc = event("api-jwt-list-endpoints.json");
    doc["rawPath"] = "/openapi.json".into();
    doc["rawQueryString"] = "".into();
    doc["requestContext"]["http"]["path"] = "/openapi.json".into();
    let (status, openapi) = answer(&watch.invoke("api", &doc).await);
    assert_eq!(status, 200);
    assert_eq!(openapi, certpilot_api::openapi());
}
