//! What ends a command early, and how it says so.

use certpilot_core::TargetsFileError;
use certpilot_core::ports::{SecretError, StoreError};
use certpilot_core::services::renew::RenewError;
use certpilot_scanner::TrustError;

/// Everything that ends a command early; [`Exit::of_error`] gives its exit status.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Trust(#[from] TrustError),
    #[error(transparent)]
    TargetsFile(#[from] TargetsFileError),
    #[error("{path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Renew(#[from] RenewError),
    #[error(transparent)]
    Deploy(#[from] certpilot_core::services::deploy::DeployServiceError),
    #[error(transparent)]
    Notify(#[from] certpilot_core::ports::NotifyError),
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
}

pub(crate) fn usage(text: impl Into<String>) -> CliError {
    CliError::Usage(text.into())
}
