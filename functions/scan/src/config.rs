//! The function's settings, read once at cold start.

use std::time::Duration;

use certpilot_aws::lambda::{ConfigError, count, duration, required, var};
use certpilot_core::services::scheduled::ScheduleSettings;

/// Everything the function reads from its environment.
#[derive(Debug)]
pub struct Config {
    pub table: String,
    pub queue_url: Option<String>,
    pub concurrency: usize,
    pub target_timeout: Duration,
    pub schedule: ScheduleSettings,
}

impl Config {
    /// Reads the settings, naming the first one that is wrong.
    pub fn from_env() -> Result<Config, ConfigError> {
        let table = required("CERTPILOT_TABLE", "the DynamoDB table name")?;
        let defaults = ScheduleSettings::default();
        Ok(Config {
            table,
            queue_url: var("CERTPILOT_SCAN_QUEUE_URL"),
            concurrency: count("CERTPILOT_CONCURRENCY", 64)?,
            target_timeout: duration("CERTPILOT_TARGET_TIMEOUT", Duration::from_secs(15))?,
            schedule: ScheduleSettings {
                interval: duration("CERTPILOT_SCAN_INTERVAL", defaults.interval)?,
                max_inline: count("CERTPILOT_MAX_INLINE", defaults.max_inline)?,
                batch_size: count("CERTPILOT_BATCH_SIZE", defaults.batch_size)?,
                ..defaults
            },
        })
    }
}
