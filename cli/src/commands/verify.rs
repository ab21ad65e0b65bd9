//! `certpilot verify`: proves by handshake that every endpoint serves the current certificate.

use std::process::ExitCode;

use std::path::PathBuf;

use certpilot_core::model::certificate::ManagedCertificate;
use certpilot_core::policy::findings::NotServed;
use certpilot_core::services::scan::Recorder;
use certpilot_core::services::verify::{EndpointCheck, Verdict, VerifyService, VerifySettings};
use certpilot_core::{ResolveOverride, ScanRequest};
use serde_json::json;

use crate::args::VerifyArgs;
use crate::context::{find, scanner};
use crate::error::{CliError, usage};
use crate::exit::Exit;
use crate::output::{format_or_default, rfc3339, write_records};

/// Runs `certpilot verify`: handshakes with every endpoint of the certificate until each
/// serves its current version, records what was seen, and exits 2 on `not_serving`.
pub async fn verify(app: &certpilot_app::App, args: VerifyArgs) -> Result<ExitCode, CliError> {
    let certificates = app.certificates();
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
    let checks = prove(
        app,
        &cert,
        &args.ca_file,
        &args.resolve,
        VerifySettings {
            deadline: args.deadline,
            interval: args.interval,
        },
    )
    .await?;
    let failing = checks.iter().filter(|c| !c.is_verified()).count();
    let not_served: Vec<NotServed<'_>> = checks
        .iter()
        .filter_map(|c| match &c.verdict {
            Verdict::Verified => None,
            Verdict::NotServing {
                serving,
                error,
                since,
            } => Some(NotServed {
                target: &c.target,
                address: c.address.as_deref(),
                serving: serving.as_deref(),
                error: error.as_deref(),
                since: *since,
            }),
        })
        .collect();
    let findings =
        super::findings::after_verification(app, &cert, &not_served, !args.no_notify).await;
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
        return Ok(Exit::Attention.worst(findings).into());
    }
    Ok(findings.into())
}

/// Handshakes with `cert`'s endpoints until each serves its current certificate or
/// `settings.deadline` passes, and records what was seen as inventory like any scan.
pub(crate) async fn prove(
    app: &certpilot_app::App,
    cert: &ManagedCertificate,
    ca_files: &[PathBuf],
    resolve: &[ResolveOverride],
    settings: VerifySettings,
) -> Result<Vec<EndpointCheck>, CliError> {
    let Some(current) = &cert.current else {
        return Ok(Vec::new());
    };
    let requests = cert
        .spec
        .endpoints
        .iter()
        .map(|t| ScanRequest::new(t.clone()).with_overrides(resolve))
        .collect();
    let checks = VerifyService::new(scanner(app, ca_files)?)
        .verify(&current.fingerprint, requests, settings)
        .await;
    let mut recorder = Recorder::new(app.store());
    for check in &checks {
        recorder.push(check.observation.clone()).await;
    }
    recorder.finish().await?;
    Ok(checks)
}
