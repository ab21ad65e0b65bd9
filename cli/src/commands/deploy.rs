//! `certpilot deploy` and `certpilot rollback`, and the deploy that follows `certpilot renew`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use certpilot_app::App;
use certpilot_core::services::deploy::{DeployReport, DeployService, DeploySettings, TargetReport};
use certpilot_core::services::verify::VerifyService;
use serde_json::json;

use crate::args::{DeployArgs, DeployVerifyArgs, RollbackArgs};
use crate::context::{find, scanner};
use crate::error::{CliError, usage};
use crate::exit::Exit;
use crate::output::{format_or_default, write_records};

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
            on_host: true,
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
    let exit = report_deploys(std::slice::from_ref(&report), args.format)?;
    let told =
        super::findings::after_certificates(app, std::slice::from_ref(&cert.id), !args.no_notify)
            .await;
    Ok(exit.worst(told).into())
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
    let detail = match (&t.state.detail, t.unchanged) {
        (Some(d), _) => d.clone(),
        (None, true) => "already serving it".to_owned(),
        (None, false) => format!("{} endpoint address(es) serve it", t.checks.len()),
    };
    vec![
        id.to_owned(),
        t.name.clone(),
        t.kind.clone(),
        t.state.status.as_str().to_owned(),
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
            if t.state.detail.is_none() {
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
