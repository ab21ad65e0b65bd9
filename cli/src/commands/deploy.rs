//! `certpilot deploy` and `certpilot rollback`, and the deploy that follows `certpilot renew`.

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
use certpilot_core::Classify;
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
use crate::error::CliError;
use crate::error::usage;
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
use certpilot_app::App;


/// The deploy use case wired for the CLI: AWS targets through the default credential chain
/// (loaded only when a certificate has deployments).
pub fn service(app: &App, options: &DeployVerifyArgs) -> Result<DeployService, CliError> {
    let verifier = VerifyService::new(scanner(app, &options.ca_files)?);
    let leases = app
        .leases(crate::unix::lease_owner(), certpilot_app::DEPLOY_LEASE)
        .with_liveness(Arc::new(crate::unix::LocalProcesses::new()));
    Ok(app.deploy_service(
        app.deploy_targets(),
        verifier,
        leases,
        DeploySettings {
            interval: options.interval,
            max_deadline: options.max_deadline,
        },
    ))
}

/// Runs `certpilot deploy ID`: exit 2 unless every deployment serves the certificate.
pub async fn deploy(app: &App, args: DeployArgs) -> Result<ExitCode, CliError> {
    let cert = find(app.certificates().as_ref(), &args.id).await?;
    if cert.spec.deployments.is_empty() {
        return Err(usage(format!(
            "{} has no deployments; add it again with --deploy KIND:name=…",
            cert.id
        )));
    }
    let service = service(app, &args.verify)?;
    let report = service
        .deploy(&cert.id, None, args.force)
        .await
        .map_err(CliError::Deploy)?;
    report_deploys(std::slice::from_ref(&report), args.format).map(ExitCode::from)
}

/// Writes one row per deployment; exit 2 when any is not verified.
pub fn report_deploys(
    reports: &[DeployReport],
    format: Option<crate::args::Format>,
) -> Result<Exit, CliError> {
    let mut bad = 0;
    let rows: Vec<(Vec<String>, serde_json::Value)> = reports
        .iter()
        .flat_map(|r| {
            r.targets.iter().map(move |t| {
                let mut json = serde_json::to_value(t).unwrap_or_default();
                if let Some(o) = json.as_object_mut() {
                    o.insert("id".into(), json!(r.id));
                    o.insert("fingerprint".into(), json!(r.fingerprint));
                }
                (row(&r.id, t), json)
            })
        })
        .collect();
    for r in reports {
        bad += r.targets.iter().filter(|t| !t.is_verified()).count();
    }
    write_records(
        format_or_default(format),
        &["id", "deployment", "kind", "status", "detail"],
        rows.into_iter(),
    )?;
    if bad > 0 {
        eprintln!("certpilot: {bad} deployment(s) do not serve the new certificate");
        return Ok(Exit::Attention);
    }
    Ok(Exit::Done)
}

fn row(id: &str, t: &TargetReport) -> Vec<String> {
    let detail = match (&t.detail, t.unchanged) {
        (Some(d), _) => d.clone(),
        (None, true) => "already serving it".to_owned(),
        (None, false) => format!("{} endpoint address(es) serve it", t.checks.len()),
    };
    vec![
        id.to_owned(),
        t.name.clone(),
        t.kind.clone(),
        t.status.as_str().to_owned(),
        detail,
    ]
}

/// Runs `certpilot rollback ID`.
pub async fn rollback(app: &App, args: RollbackArgs) -> Result<ExitCode, CliError> {
    let cert = find(app.certificates().as_ref(), &args.id).await?;
    if cert.spec.deployments.is_empty() {
        return Err(usage(format!(
            "{} has no deployments: nothing to roll back (`certpilot certificates show {}` \
             lists them; add them with `certificates add … --deploy`)",
            cert.id, cert.id
        )));
    }
    let options = DeployVerifyArgs {
        interval: Duration::from_secs(2),
        max_deadline: None,
        ca_files: Vec::new(),
    };
    let service = service(app, &options)?;
    let targets = service
        .roll_back(&cert.id, args.deployment.as_deref())
        .await
        .map_err(CliError::Deploy)?;
    let failed = targets
        .iter()
        .filter(|t| t.rolled_back != Some(true))
        .count();
    write_records(
        format_or_default(args.format),
        &["id", "deployment", "kind", "status", "detail"],
        targets.iter().map(|t| {
            let mut json = serde_json::to_value(t).unwrap_or_default();
            if let Some(o) = json.as_object_mut() {
                o.insert("id".into(), json!(cert.id));
            }
            let mut r = row(&cert.id, t);
            if t.detail.is_none() {
                r[4] = "the previous certificate is back".into();
            }
            (r, json)
        }),
    )?;
    if failed > 0 {
        return Ok(Exit::Attention.into());
    }
    Ok(ExitCode::SUCCESS)
}
