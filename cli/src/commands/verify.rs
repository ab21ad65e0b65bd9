//! `certpilot verify`: proves by handshake that every endpoint serves the current certificate.

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


/// Runs `certpilot verify`: handshakes with every endpoint of the certificate until each
/// serves its current version, records what was seen, and exits 2 on `not_serving`.
pub async fn verify(app: &certpilot_app::App, args: VerifyArgs) -> Result<ExitCode, CliError> {
    let certificates = app.certificates();
    let store = app.store();
    let cert = find(certificates.as_ref(), &args.id).await?;
    let Some(current) = &cert.current else {
        return Err(usage(format!(
            "{} has not been issued yet; run `certpilot renew {}`",
            cert.id, cert.id
        )));
    };
    if cert.spec.endpoints.is_empty() {
        return Err(usage(format!(
            "{} lists no endpoints to verify; add it again with --endpoint HOST:PORT",
            cert.id
        )));
    }
    let scanner = scanner(app, &args.ca_file)?;
    let requests = cert
        .spec
        .endpoints
        .iter()
        .map(|t| ScanRequest::new(t.clone()).with_overrides(&args.resolve))
        .collect();
    let checks = VerifyService::new(scanner)
        .verify(
            &current.fingerprint,
            requests,
            VerifySettings {
                deadline: args.deadline,
                interval: args.interval,
            },
        )
        .await;
    // What the handshakes saw is inventory like any scan.
    let mut recorder = Recorder::new(store);
    for check in &checks {
        recorder.push(check.observation.clone()).await;
    }
    recorder.finish().await?;
    let failing = checks.iter().filter(|c| !c.is_verified()).count();
    write_records(
        format_or_default(args.format),
        &["target", "address", "verdict", "detail"],
        checks.iter().map(|c| {
            let detail = match &c.verdict {
                Verdict::Verified => format!("serves {}", current.fingerprint),
                Verdict::NotServing {
                    serving: Some(other),
                    since,
                    ..
                } => format!("serves {other} instead (seen since {})", rfc3339(*since)),
                Verdict::NotServing {
                    error: Some(error),
                    since,
                    ..
                } => format!("{error} (since {})", rfc3339(*since)),
                Verdict::NotServing { since, .. } => {
                    format!("no certificate (since {})", rfc3339(*since))
                }
            };
            let mut json = serde_json::to_value(c).unwrap_or_default();
            if let Some(o) = json.as_object_mut() {
                o.insert("id".into(), json!(cert.id));
                o.insert("expected".into(), json!(current.fingerprint));
            }
            let verdict = if c.is_verified() {
                "verified"
            } else {
                "not_serving"
            };
            (
                vec![
                    c.target.clone(),
                    c.address.clone().unwrap_or_default(),
                    verdict.to_owned(),
                    detail,
                ],
                json,
            )
        }),
    )?;
    if failing > 0 {
        eprintln!(
            "certpilot: {failing} of {} endpoint addresses do not serve {} ({})",
            checks.len(),
            cert.id,
            current.fingerprint
        );
        return Ok(Exit::Attention.into());
    }
    Ok(ExitCode::SUCCESS)
}
