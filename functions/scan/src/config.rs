//! The function's settings, read once at cold start.

use std::time::Duration;

use certpilot_core::services::scheduled::ScheduleSettings;

/// A setting that is missing or malformed; the function refuses to start.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {reason}")]
pub struct ConfigError {
    name: &'static str,
    reason: String,
}

/// Everything the function reads from its environment.
#[derive(Debug)]
pub struct Config {
    pub table: String,
    pub queue_url: Option<String>,
    pub concurrency: usize,
    pub target_timeout: Duration,
    pub schedule: ScheduleSettings,
}

fn var(name: &'static str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn duration(name: &'static str, default: Duration) -> Result<Duration, ConfigError> {
    var(name).map_or(Ok(default), |v| {
        humantime::parse_duration(&v).map_err(|e| ConfigError {
            name,
            reason: format!("{v:?} is not a duration such as 1h or 90s: {e}"),
        })
    })
}

fn count(name: &'static str, default: usize) -> Result<usize, ConfigError> {
    var(name).map_or(Ok(default), |v| match v.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(ConfigError {
            name,
            reason: format!("{v:?} is not a positive whole number"),
        }),
    })
}

impl Config {
    /// Reads the settings, naming the first one that is wrong.
    pub fn from_env() -> Result<Config, ConfigError> {
        let table = var("CERTPILOT_TABLE").ok_or(ConfigError {
            name: "CERTPILOT_TABLE",
            reason: "required: the DynamoDB table name".into(),
        })?;
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
