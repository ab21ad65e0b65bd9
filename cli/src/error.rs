//! What ends a command early, and how it says so.

#![allow(unused_imports)]

use std::io::IsTerminal;
use std::path::Path;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use certpilot_aws::SecretsManagerStore;
use certpilot_core::ports::CertificateStore;
use certpilot_core::ports::Clock;
use certpilot_core::ports::InventoryQuery;
use certpilot_core::ports::ScanLimits;
use certpilot_core::ports::SecretError;
use certpilot_core::ports::SecretStore;
use certpilot_core::ports::Store;
use certpilot_core::ports::StoreError;
use certpilot_core::ports::SystemClock;
use certpilot_core::services::endpoints::Registration;
use certpilot_core::services::endpoints::register;
use certpilot_core::services::endpoints::registered_requests;
use certpilot_core::services::renew::RenewError;
use certpilot_core::services::scan::Recorder;
use certpilot_core::services::scan::ScanService;
use certpilot_core::ScanRequest;
use certpilot_core::Target;
use certpilot_core::TargetsFileError;
use certpilot_core::add_tag;
use certpilot_core::parse_targets_file;
use certpilot_core::policy;
use certpilot_dynamodb::DynamoStore;
use certpilot_files::FileSecretStore;
use certpilot_scanner::Deadlines;
use certpilot_scanner::TlsProber;
use certpilot_scanner::TrustError;
use certpilot_scanner::TrustStore;
use certpilot_sqlite::SqliteStore;
use clap::Parser;
use indicatif::ProgressBar;
use indicatif::ProgressDrawTarget;
use indicatif::ProgressStyle;
use crate::args::*;
use crate::exit::Exit;
use crate::output::RowWriter;
use crate::output::colour;
use crate::output::format_or_default;
use crate::output::rfc3339;
use std::io::Write;
use std::time::Duration;
use async_trait::async_trait;
use certpilot_acme::rfc2136::Rfc2136Dns;
use certpilot_acme::AcmeIssuer;
use certpilot_acme::AcmeSettings;
use certpilot_aws::LazyRoute53Dns;
use certpilot_core::model::certificate::AcmeIssuer as IssuerConfig;
use certpilot_core::model::certificate::CertificateSpec;
use certpilot_core::model::certificate::ChallengeConfig;
use certpilot_core::model::certificate::DnsProviderConfig;
use certpilot_core::model::certificate::ExternalAccountBinding;
use certpilot_core::model::certificate::Identifier;
use certpilot_core::model::certificate::KeyType;
use certpilot_core::model::certificate::ManagedCertificate;
use certpilot_core::model::certificate::RenewalPolicy;
use certpilot_core::model::certificate::validate_certificate_id;
use certpilot_core::ports::AnnounceError;
use certpilot_core::ports::IssuedSink;
use certpilot_core::ports::Liveness;
use certpilot_core::ports::SecretValue;
use certpilot_core::ports::SecretVersion;
use certpilot_core::policy::CertificateState;
use certpilot_core::services::acm::AcmService;
use certpilot_core::services::renew::RenewOutcome;
use certpilot_core::services::renew::RenewService;
use certpilot_core::services::renew::RenewSettings;
use certpilot_core::services::verify::Verdict;
use certpilot_core::services::verify::VerifyService;
use certpilot_core::services::verify::VerifySettings;
use certpilot_core::Tags;
use certpilot_files::live::export_live;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use crate::output::write_records;
use crate::unix::LocalProcesses;
use crate::unix::ProcessGroup;
use crate::unix::Shutdown;
use certpilot_core::model::deploy::ApiGatewayApi;
use certpilot_core::model::deploy::Deployment;
use certpilot_core::model::deploy::TargetConfig;
use certpilot_core::ports::DeployTargets;
use certpilot_core::services::deploy::DeployReport;
use certpilot_core::services::deploy::DeployService;
use certpilot_core::services::deploy::DeploySettings;
use certpilot_core::services::deploy::TargetReport;
use certpilot_deploy_aws::AwsDeployTargets;
use certpilot_core::services::lease::Leases;
use crate::context::*;


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
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
}

pub(crate) fn usage(text: impl Into<String>) -> CliError {
    CliError::Usage(text.into())
}
