//! The function's settings, read once at cold start.

use std::path::PathBuf;
use std::time::Duration;

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
    pub deploy_queue_url: Option<String>,
    pub concurrency: usize,
    pub acme_timeout: Duration,
    pub acme_ca_file: Option<PathBuf>,
    pub dns_sync_timeout: Duration,
    pub renewal_budget: Duration,
}

fn var(name: &'static str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn duration(name: &'static str, default: Duration) -> Result<Duration, ConfigError> {
    var(name).map_or(Ok(default), |v| {
        humantime::parse_duration(&v).map_err(|e| ConfigError {
            name,
            reason: format!("{v:?} is not a duration such as 2m or 90s: {e}"),
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
        let acme_ca_file = var("CERTPILOT_ACME_CA_FILE").map(PathBuf::from);
        if let Some(path) = &acme_ca_file
            && !path.is_file()
        {
            return Err(ConfigError {
                name: "CERTPILOT_ACME_CA_FILE",
                reason: format!("{} is not a file", path.display()),
            });
        }
        Ok(Config {
            table,
            deploy_queue_url: var("CERTPILOT_DEPLOY_QUEUE_URL"),
            concurrency: count("CERTPILOT_CONCURRENCY", 8)?,
            acme_timeout: duration("CERTPILOT_ACME_TIMEOUT", Duration::from_secs(60))?,
            acme_ca_file,
            dns_sync_timeout: duration("CERTPILOT_DNS_SYNC_TIMEOUT", Duration::from_secs(120))?,
            renewal_budget: duration("CERTPILOT_RENEWAL_BUDGET", Duration::from_secs(180))?,
        })
    }
}
