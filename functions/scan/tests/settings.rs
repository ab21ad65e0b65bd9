//! The scan function's binary as Lambda starts it. Building this test also builds the binary
//! with the workspace's features, once, for the end-to-end tests that run it under the Lambda
//! runtime emulator (`certpilot_e2e::LambdaWatch`).

#![allow(clippy::unwrap_used)]

#[test]
fn a_function_deployed_without_its_table_names_the_missing_setting_and_stops() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scan"))
        .env_remove("CERTPILOT_TABLE")
        // Were it to start, it would wait for invocations from this runtime API.
        .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("CERTPILOT_TABLE"), "{stderr}");
}
