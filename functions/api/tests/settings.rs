//! The API function's binary as Lambda starts it. Building this test also builds the binary
//! with the workspace's features, once, for the end-to-end tests that run it under the Lambda
//! runtime emulator (`certpilot_e2e::LambdaWatch`).

#[test]
fn a_function_deployed_without_its_table_names_the_missing_setting_and_stops() {
    certpilot_testkit::lambda::refuses_to_start_without(
        env!("CARGO_BIN_EXE_api"),
        "CERTPILOT_TABLE",
    );
}
