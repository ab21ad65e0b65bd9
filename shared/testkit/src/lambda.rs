//! Checks on the Lambda function binaries as Lambda starts them.

/// Runs the function binary `program` without `setting` and asserts that it stops at once,
/// naming the setting, rather than starting to serve invocations half-configured.
pub fn refuses_to_start_without(program: &str, setting: &str) {
    let out = std::process::Command::new(program)
        .env_remove(setting)
        // Were it to start, it would wait for invocations from this runtime API.
        .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
        .output()
        .expect("the function binary runs");
    assert!(!out.status.success(), "{program} started without {setting}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(setting), "{program}: {stderr}");
}
