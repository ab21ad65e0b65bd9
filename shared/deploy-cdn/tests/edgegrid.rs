//! EdgeGrid signing against Akamai's published test vectors (the `testcases.json` of
//! akamai/AkamaiOPEN-edgegrid-python, with its `testdata.json` credentials): every case's
//! data-to-sign and `Authorization` header, byte for byte.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use certpilot_deploy_cdn::akamai::edgegrid::{
    Credentials, Signed, authorization, data_to_sign, signing_key,
};

#[test]
fn every_published_edgegrid_vector_signs_alike() {
    let doc: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/edgegrid-testcases.json")).unwrap();
    let credentials = Credentials {
        client_token: doc["client_token"].as_str().unwrap().into(),
        client_secret: doc["client_secret"].as_str().unwrap().into(),
        access_token: doc["access_token"].as_str().unwrap().into(),
    };
    let (timestamp, nonce) = (
        doc["timestamp"].as_str().unwrap(),
        doc["nonce"].as_str().unwrap(),
    );
    let max_body = doc["max_body"].as_u64().unwrap() as usize;
    assert_eq!(
        signing_key(&credentials.client_secret, timestamp),
        doc["sign_key_test"].as_str().unwrap()
    );
    let to_sign: Vec<String> = doc["headers_to_sign"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap().to_ascii_lowercase())
        .collect();
    let host = doc["base_url"]
        .as_str()
        .unwrap()
        .trim_start_matches("https://")
        .trim_end_matches('/');
    let cases = doc["tests"].as_array().unwrap();
    assert_eq!(cases.len(), 14);
    for case in cases {
        let name = case["testName"].as_str().unwrap();
        let req = &case["request"];
        // The configured headers, in the configured order, as the request carries them.
        let carried: Vec<(String, String)> = req["headers"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|h| {
                h.as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            })
            .collect();
        let headers: Vec<(&str, &str)> = to_sign
            .iter()
            .filter_map(|want| {
                carried
                    .iter()
                    .find(|(k, _)| k.to_ascii_lowercase() == *want)
                    .map(|(k, v)| (k.as_str(), v.as_str()))
            })
            .collect();
        let body = req["data"].as_str().unwrap_or("");
        let signed = Signed {
            method: req["method"].as_str().unwrap(),
            scheme: "https",
            host,
            path_and_query: req["path"].as_str().unwrap(),
            headers: &headers,
            body: body.as_bytes(),
        };
        if let Some(expected) = case["expectedDataToSign"].as_str() {
            assert_eq!(
                data_to_sign(&signed, "", max_body),
                expected,
                "{name}: data to sign"
            );
        }
        assert_eq!(
            authorization(&credentials, &signed, timestamp, nonce, max_body),
            case["expectedAuthorization"].as_str().unwrap(),
            "{name}: authorization"
        );
    }
}
