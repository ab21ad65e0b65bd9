//! The function's settings, read once at cold start.

use std::path::PathBuf;
use std::time::Duration;

use certpilot_aws::lambda::{ConfigError, count, duration, required, var};

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

impl Config {
    /// Reads the settings, naming the first one that is wrong.
    pub fn from_env() -> Result<Config, ConfigError> {
        let table = required("CERTPILOT_TABLE", "the DynamoDB table name")?;
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

impl Config {
    /// How the ACME client talks to the CA.
    pub fn acme(&self) -> certpilot_app::AcmeSettings {
        certpilot_app::AcmeSettings {
            timeout: self.acme_timeout,
            ca_file: self.acme_ca_file.clone(),
        }
    }

    /// How renewals run: a renewal started with its budget left must end within it,
    /// stalled CA or not.
    pub fn renew_settings(&self) -> certpilot_core::services::renew::RenewSettings {
        certpilot_core::services::renew::RenewSettings {
            concurrency: self.concurrency,
            renewal_budget: self.renewal_budget,
            deadline: self.renewal_budget,
            ..Default::default()
        }
    }
}
