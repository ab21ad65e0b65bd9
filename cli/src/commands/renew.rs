//! `certpilot renew`: issues and renews through [`RenewService`]; after each issuance the
//! local [`IssuedSink`] exports the live files and runs the deploy hook, then the
//! certificate is deployed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use certpilot_acme::AcmeSettings;
use certpilot_app::App;
use certpilot_core::Classify;
use certpilot_core::model::certificate::ManagedCertificate;
use certpilot_core::ports::{AnnounceError, IssuedSink, SecretStore};
use certpilot_core::services::renew::{RenewError, RenewOutcome, RenewService, RenewSettings};
use certpilot_core::services::verify::VerifySettings;

use crate::args::RenewArgs;
use crate::context::find;
use crate::error::{CliError, usage};
use crate::exit::Exit;
use crate::output::{format_or_default, write_records};
use crate::unix::{LocalProcesses, Shutdown};
use certpilot_deploy_local::command::{HostCommand, Output, hook_env};

/// How long DNS-01 records may take to reach every authoritative server.
const DNS_PROPAGATION: Duration = Duration::from_secs(120);

/// The local [`IssuedSink`]: exports the live files, then runs the deploy hook.
struct LocalSink {
    secrets: Arc<dyn SecretStore>,
    live_dir: Option<PathBuf>,
    hook: Option<String>,
    hook_timeout: Duration,
}

#[async_trait]
impl IssuedSink for LocalSink {
    async fn issued(&self, cert: &ManagedCertificate) -> Result<(), AnnounceError> {
        let keyless = cert.current.as_ref().and_then(|c| c.key_holder.clone());
        let live = match &self.live_dir {
            Some(_) if keyless.is_some() => {
                // Nothing to serve from files without the key: said, not failed, so the
                // renewal (and the deploy to the key's holder) goes on.
                eprintln!(
                    "certpilot: {}: no live files: its private key is kept by {}",
                    cert.id,
                    keyless.as_deref().unwrap_or_default()
                );
                None
            }
            Some(dir) => Some(
                super::certificates::export(self.secrets.as_ref(), cert, &dir.join(&cert.id))
                    .await
                    .map_err(|e| match e {
                        CliError::Secret(e) => AnnounceError::Secret(e),
                        e => AnnounceError::Failed(format!("exporting to the live directory: {e}")),
                    })?,
            ),
            None => None,
        };
        let Some(hook) = &self.hook else {
            return Ok(());
        };
        let current = cert
            .current
            .as_ref()
            .ok_or_else(|| AnnounceError::Failed("no current certificate".into()))?;
        let command = HostCommand {
            what: "deploy hook",
            line: hook.clone(),
            env: hook_env(
                &cert.id,
                &cert.spec.name_set(),
                &current.fingerprint,
                current.not_after,
                live.as_deref(),
            ),
            timeout: self.hook_timeout,
        };
        // stdout is ours (JSON rows): the hook's output goes to stderr.
        command
            .run(Output::ToStderr)
            .await
            .map(|_| ())
            .map_err(|e| AnnounceError::Failed(e.to_string()))
    }
}

/// Runs `certpilot renew`.
pub async fn renew(app: &App, args: RenewArgs) -> Result<ExitCode, CliError> {
    let store = app.certificates();
    let secrets = app.secrets();
    if args.force && args.ids.is_empty() {
        return Err(usage(
            "--force renews the certificates named: give their ids (`certpilot certificates list` shows them)",
        ));
    }
    if let Some(path) = &args.acme_ca_file
        && !path.is_file()
    {
        return Err(usage(format!(
            "--acme-ca-file {}: no such file",
            path.display()
        )));
    }
    for id in &args.ids {
        find(store.as_ref(), id).await?;
    }
    let issuer = Arc::new(app.acme_issuer(
        AcmeSettings {
            timeout: args.acme_timeout,
            ca_file: args.acme_ca_file.clone(),
        },
        DNS_PROPAGATION,
    ));
    let sink: Option<Arc<dyn IssuedSink>> = (args.deploy_hook.is_some() || args.live_dir.is_some())
        .then(|| {
            Arc::new(LocalSink {
                secrets: secrets.clone(),
                live_dir: args.live_dir.clone(),
                hook: args.deploy_hook.clone(),
                hook_timeout: args.hook_timeout,
            }) as Arc<dyn IssuedSink>
        });
    // ACM keeps its keys: nothing to export, so the local sink is not told.
    let service = app
        .renew_service(
            issuer,
            sink,
            crate::unix::lease_owner(),
            RenewSettings {
                concurrency: usize::from(args.concurrency),
                lease: args.lease,
                deadline: args.renewal_timeout,
                ..RenewSettings::default()
            },
        )
        .with_acm(app.acm_service(None, DNS_PROPAGATION))
        .with_liveness(Arc::new(LocalProcesses::new()));

    let mut shutdown = Shutdown::install().map_err(CliError::Output)?;
    let work = async {
        if args.ids.is_empty() {
            service.renew_due().await
        } else {
            Ok(service.renew_all(args.ids.clone(), args.force).await)
        }
    };
    // Dropping the work on a signal drops each renewal where it stands (its hook's process
    // group is ended); every step done so far is persisted, so releasing the leases is all
    // it takes for the next run to resume at once.
    let results = tokio::select! {
        results = work => Some(results),
        _ = shutdown.recv() => None,
    };
    let Some(results) = results else {
        return interrupted(&service).await;
    };
    let results = results?;
    let mut exit = Exit::Done;
    let rows: Vec<(Vec<String>, serde_json::Value)> = results
        .iter()
        .map(|(id, result)| {
            exit = exit.worst(renew_exit(result));
            renew_row(id, result)
        })
        .collect();
    if rows.is_empty() {
        eprintln!("nothing due");
    }
    write_records(
        format_or_default(args.format),
        &["id", "outcome", "detail"],
        rows.into_iter(),
    )?;
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    if failed > 0 {
        eprintln!("certpilot: {failed} of {} renewals failed", results.len());
    }
    // Files alone prove nothing is served yet (a server reads them at its next reload);
    // after the hook, the server should have taken them.
    if args.deploy_hook.is_some() {
        let proving = verify_after_hook(app, &results, &args);
        let proven = tokio::select! {
            proven = proving => Some(proven),
            _ = shutdown.recv() => None,
        };
        let Some(proven) = proven else {
            return interrupted(&service).await;
        };
        exit = exit.worst(proven?);
    }
    if !args.no_deploy {
        let deploying = deploy_after_renew(app, &results, &args);
        let deployed = tokio::select! {
            deployed = deploying => Some(deployed),
            _ = shutdown.recv() => None,
        };
        let Some(deployed) = deployed else {
            return interrupted(&service).await;
        };
        exit = exit.worst(deployed?);
    }
    exit = exit.worst(super::findings::after_certificates(app, &[], !args.no_notify).await);
    Ok(exit.into())
}

/// Ends `renew` after SIGINT or SIGTERM: gives up this process's leases so the next run
/// resumes at once rather than after the lease lapses.
async fn interrupted(service: &RenewService) -> Result<ExitCode, CliError> {
    match service.release_leases().await {
        Ok(ids) if ids.is_empty() => eprintln!("certpilot: interrupted"),
        Ok(ids) => eprintln!(
            "certpilot: interrupted; {} stays due and `certpilot renew` resumes it where it stopped",
            ids.join(", ")
        ),
        Err(e) => eprintln!(
            "certpilot: interrupted; could not release the renewal leases ({e}): they lapse on their own"
        ),
    }
    Ok(Exit::Interrupted.into())
}

/// The exit status one renewal's result calls for.
fn renew_exit(result: &Result<RenewOutcome, RenewError>) -> Exit {
    match result {
        Ok(RenewOutcome::Issued { .. } | RenewOutcome::NotDue { .. }) => Exit::Done,
        Ok(
            RenewOutcome::Deferred { .. }
            | RenewOutcome::BackingOff { .. }
            | RenewOutcome::Busy { .. }
            | RenewOutcome::Postponed,
        ) => Exit::TempFail,
        Err(e) if e.is_retryable() => Exit::TempFail,
        Err(_) => Exit::Attention,
    }
}

/// How long endpoints may take to serve a certificate after the deploy hook, unless
/// `--verify-max-deadline` says otherwise.
const HOOK_VERIFY_DEADLINE: Duration = Duration::from_secs(60);

/// Proves by handshake that the endpoints of each certificate just issued and handed to the
/// deploy hook now serve it (certificates with deployments are proven by
/// their deploy). A hook that exits 0 without the server taking the files is the outage
/// certpilot exists for: it is reported here, not at the next `verify`.
async fn verify_after_hook(
    app: &App,
    results: &[(String, Result<RenewOutcome, RenewError>)],
    args: &RenewArgs,
) -> Result<Exit, CliError> {
    let mut exit = Exit::Done;
    for (id, result) in results {
        if !matches!(result, Ok(RenewOutcome::Issued { .. })) {
            continue;
        }
        let cert = find(app.certificates().as_ref(), id).await?;
        if cert.spec.endpoints.is_empty() || !cert.spec.deployments.is_empty() {
            continue;
        }
        let checks = super::verify::prove(
            app,
            &cert,
            &args.verify.ca_files,
            &[],
            VerifySettings {
                deadline: args.verify.max_deadline.unwrap_or(HOOK_VERIFY_DEADLINE),
                interval: args.verify.interval,
            },
        )
        .await?;
        let failing: Vec<String> = checks
            .iter()
            .filter(|c| !c.is_verified())
            .map(|c| match &c.address {
                Some(a) => format!("{} ({a})", c.target),
                None => c.target.clone(),
            })
            .collect();
        if failing.is_empty() {
            eprintln!("certpilot: {id}: every endpoint serves the new certificate");
        } else {
            eprintln!(
                "certpilot: {id}: after the deploy hook, {} of {} endpoint addresses still do not serve the new certificate: {}; check that the hook reloads the server (`certpilot verify {id}` shows what they serve)",
                failing.len(),
                checks.len(),
                failing.join(", ")
            );
            exit = exit.worst(Exit::Attention);
        }
    }
    Ok(exit)
}

/// Deploys what was just issued, and whatever is not yet served everywhere (a deploy that
/// failed last run), to each certificate's deployments.
async fn deploy_after_renew(
    app: &App,
    results: &[(String, Result<RenewOutcome, RenewError>)],
    args: &RenewArgs,
) -> Result<Exit, CliError> {
    let issued: Vec<&String> = results
        .iter()
        .filter(|(_, r)| matches!(r, Ok(RenewOutcome::Issued { .. })))
        .map(|(id, _)| id)
        .collect();
    let with_targets: Vec<String> = app
        .certificates()
        .certificates()
        .await?
        .into_iter()
        .filter(|c| !c.spec.deployments.is_empty() && c.current.is_some())
        .filter(|c| {
            let named = args.ids.is_empty() || args.ids.contains(&c.id);
            issued.contains(&&c.id) || (named && !c.is_deployed())
        })
        .map(|c| c.id)
        .collect();
    if with_targets.is_empty() {
        return Ok(Exit::Done);
    }
    let service = super::deploy::service(app, &args.verify)?;
    let mut reports = Vec::new();
    for id in &with_targets {
        match service.deploy(id, None, false).await {
            Ok(r) => reports.push(r),
            Err(e) => {
                eprintln!("certpilot: deploying {id}: {e}");
                return Ok(Exit::of(&e));
            }
        }
    }
    super::deploy::report_deploys(&reports, args.format)
}

fn renew_row(
    id: &str,
    result: &Result<RenewOutcome, RenewError>,
) -> (Vec<String>, serde_json::Value) {
    let (outcome, detail) = match result {
        Ok(o) => (o.name(), o.describe(id)),
        Err(e) => ("failed", e.to_string()),
    };
    (
        vec![id.to_owned(), outcome.to_owned(), detail],
        certpilot_core::services::renew::report(id, result),
    )
}
