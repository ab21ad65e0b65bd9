//! The AWS configuration every certpilot client uses: the standard sources (region,
//! credentials, `AWS_ENDPOINT_URL`…) with [`default_timeouts`] on every call.

use std::time::Duration;

/// Loads the configuration from the standard sources, with [`default_timeouts`].
pub async fn load() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(default_timeouts())
        .load()
        .await
}

/// Timeouts for every AWS call: a stalled connection never hangs a scan or a Lambda.
pub fn default_timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(Duration::from_secs(10))
        .operation_timeout(Duration::from_secs(30))
        .build()
}
