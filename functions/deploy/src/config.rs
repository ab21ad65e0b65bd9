//! The function's settings, read once at cold start.

use std::time::Duration;

use certpilot_aws::lambda::{ConfigError, duration, required};

/// Everything the function reads from its environment.
#[derive(Debug)]
pub struct Config {
    pub table: String,
    pub verify_interval: Duration,
    pub verify_max_deadline: Duration,
    pub probe_timeout: Duration,
}

impl Config {
    /// Reads the settings, naming the first one that is wrong.
    pub fn from_env() -> Result<Config, ConfigError> {
        Ok(Config {
            table: required("CERTPILOT_TABLE", "the DynamoDB table name")?,
            verify_interval: duration("CERTPILOT_VERIFY_INTERVAL", Duration::from_secs(10))?,
            verify_max_deadline: duration(
                "CERTPILOT_VERIFY_MAX_DEADLINE",
                Duration::from_secs(10 * 60),
            )?,
            probe_timeout: duration("CERTPILOT_PROBE_TIMEOUT", Duration::from_secs(10))?,
        })
    }
}

impl Config {
    /// How deploys are proven: rounds of handshakes every `verify_interval`, for at most
    /// `verify_max_deadline` (what a Lambda invocation can spare).
    pub fn deploy_settings(&self) -> certpilot_core::services::deploy::DeploySettings {
        certpilot_core::services::deploy::DeploySettings {
            interval: self.verify_interval,
            max_deadline: Some(self.verify_max_deadline),
            // A function is no host: `files` deployments are the host's to run.
            on_host: false,
        }
    }

    /// Limits of the handshakes that prove a deploy.
    pub fn probe_limits(&self) -> certpilot_core::ports::ScanLimits {
        certpilot_core::ports::ScanLimits {
            concurrency: 64,
            target_timeout: self.probe_timeout,
        }
    }
}
