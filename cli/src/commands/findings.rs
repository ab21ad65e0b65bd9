//! `certpilot findings`: the open problems, most severe first; `ack` and `unack`.

use std::process::ExitCode;

use certpilot_app::App;
use std::sync::Arc;

use certpilot_core::model::finding::{Finding, FindingKind, Severity};
use certpilot_core::parse_tag;
use certpilot_core::ports::Notifier;
use certpilot_core::services::findings::{FindingsService, ScanEvaluation};
use time::OffsetDateTime;

use crate::args::{DigestArgs, FindingsAction, FindingsArgs};
use crate::error::{CliError, usage};
use crate::exit::Exit;
use crate::output::{format_or_default, rfc3339, write_records};

/// Runs `certpilot findings`.
pub async fn findings(app: &App, args: FindingsArgs) -> Result<ExitCode, CliError> {
    match args.action {
        Some(FindingsAction::Ack { key, until, reason }) => {
            let now = app.clock().now();
            let until = parse_until(&until, now)?;
            if reason.trim().is_empty() {
                return Err(usage(
                    "--reason: say why, for whoever reads it later (\"replaced by hand\", \"host retired on 2027-01-15\")",
                ));
            }
            let f = app
                .findings_service()
                .acknowledge(&key, until, reason.trim())
                .await
                .map_err(|e| not_found(&key, e))?;
            eprintln!("acknowledged {} until {}", f.key, rfc3339(until));
            Ok(ExitCode::SUCCESS)
        }
        Some(FindingsAction::Unack { key }) => {
            let f = app
                .findings_service()
                .unacknowledge(&key)
                .await
                .map_err(|e| not_found(&key, e))?;
            eprintln!("{} is {}", f.key, f.state.as_str());
            Ok(ExitCode::SUCCESS)
        }
        None => list(app, args).await,
    }
}

fn not_found(key: &str, e: certpilot_core::ports::StoreError) -> CliError {
    match e {
        certpilot_core::ports::StoreError::NotFound { .. } => usage(format!(
            "no finding {key:?}; `certpilot findings --all` lists their keys"
        )),
        e => CliError::Store(e),
    }
}

/// `2026-12-31` (midnight UTC) or an RFC 3339 time, in the future.
fn parse_until(text: &str, now: OffsetDateTime) -> Result<OffsetDateTime, CliError> {
    use time::format_description::well_known::Rfc3339;
    let day = time::macros::format_description!("[year]-[month]-[day]");
    let at = OffsetDateTime::parse(text, &Rfc3339)
        .ok()
        .or_else(|| {
            time::Date::parse(text, day)
                .ok()
                .map(|d| d.midnight().assume_utc())
        })
        .ok_or_else(|| {
            usage(format!(
                "--until {text:?}: not a date (2026-12-31) or an RFC 3339 time (2026-12-31T18:00:00Z)"
            ))
        })?;
    if at <= now {
        return Err(usage(format!(
            "--until {text:?}: that is in the past; an acknowledgement runs until a later date"
        )));
    }
    Ok(at)
}

/// The finding kinds of `--kind` flags, or an error naming the bad one and the kinds there are.
pub(crate) fn parse_kinds(values: &[String]) -> Result<Vec<FindingKind>, CliError> {
    values
        .iter()
        .map(|k| {
            FindingKind::parse(k).ok_or_else(|| {
                let all: Vec<&str> = FindingKind::ALL.iter().map(|k| k.as_str()).collect();
                usage(format!("--kind {k:?}: not a kind ({})", all.join(", ")))
            })
        })
        .collect()
}

async fn list(app: &App, args: FindingsArgs) -> Result<ExitCode, CliError> {
    let kinds = parse_kinds(&args.kind)?;
    let min = args
        .severity
        .as_deref()
        .map(|s| {
            Severity::parse(s)
                .ok_or_else(|| usage(format!("--severity {s:?}: info, warning or critical")))
        })
        .transpose()?;
    let tags = args
        .tag
        .iter()
        .map(|t| parse_tag(t).map_err(|e| usage(format!("--tag {t:?}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let store = app.findings();
    let all = if args.all {
        store.all_findings().await?
    } else {
        store.active_findings().await?
    };
    let shown: Vec<Finding> = all
        .into_iter()
        .filter(|f| kinds.is_empty() || kinds.contains(&f.kind))
        .filter(|f| min.is_none_or(|m| f.severity >= m))
        .filter(|f| tags.iter().all(|(k, v)| f.tags.get(k) == Some(v)))
        .collect();
    if shown.is_empty() {
        eprintln!("no findings");
    }
    write_records(
        format_or_default(args.format),
        &[
            "severity", "kind", "state", "subject", "summary", "owner", "key",
        ],
        shown.iter().map(|f| {
            (
                vec![
                    f.severity.as_str().to_owned(),
                    f.kind.as_str().to_owned(),
                    f.state.as_str().to_owned(),
                    f.subject.to_string(),
                    f.summary.clone(),
                    f.owner.clone().unwrap_or_default(),
                    f.key.clone(),
                ],
                finding_json(f),
            )
        }),
    )?;
    Ok(ExitCode::SUCCESS)
}

/// A finding as `--format json` prints it: the settled fields, nothing internal.
pub(crate) fn finding_json(f: &Finding) -> serde_json::Value {
    f.public_json()
}

/// Records what a scan found and, unless `notify` is off, tells the channels. A failure to
/// record findings does not undo the scan: it is reported, and the exit status says so.
pub(crate) async fn evaluate(
    app: &App,
    service: &FindingsService,
    evaluation: ScanEvaluation,
    streaks: &std::collections::HashMap<(String, Option<String>), u32>,
    notify: bool,
) -> Exit {
    if let Err(e) = evaluation.record(service, streaks).await {
        eprintln!("certpilot: recording findings: {e}");
        return Exit::of(&e);
    }
    tell(app, service, notify).await
}

/// Records the findings of the certificates named (every one when `ids` is empty) after a
/// renewal or deploy run, and tells the channels unless `notify` is off.
pub(crate) async fn after_certificates(app: &App, ids: &[String], notify: bool) -> Exit {
    let service = app.findings_service();
    let recorded = async {
        let certificates: Vec<_> = app
            .certificates()
            .certificates()
            .await?
            .into_iter()
            .filter(|c| ids.is_empty() || ids.contains(&c.id))
            .collect();
        service.record_certificates(&certificates).await?;
        app.record_schedule_findings().await
    };
    if let Err(e) = recorded.await {
        eprintln!("certpilot: recording findings: {e}");
        return Exit::of(&e);
    }
    tell(app, &service, notify).await
}

/// Records what `certpilot verify` found at a certificate's endpoints and tells the
/// channels unless `notify` is off.
pub(crate) async fn after_verification(
    app: &App,
    cert: &certpilot_core::model::certificate::ManagedCertificate,
    not_served: &[certpilot_core::policy::findings::NotServed<'_>],
    notify: bool,
) -> Exit {
    let service = app.findings_service();
    let recorded = async {
        service.record_verification(cert, not_served).await?;
        app.record_schedule_findings().await
    };
    if let Err(e) = recorded.await {
        eprintln!("certpilot: recording findings: {e}");
        return Exit::of(&e);
    }
    tell(app, &service, notify).await
}

/// Sends what is pending to the configured channels and the terminal, unless `notify` is
/// off. A channel that did not take a message keeps it pending for the next run, and the
/// exit status says so.
async fn tell(app: &App, service: &FindingsService, notify: bool) -> Exit {
    if !notify {
        return Exit::Done;
    }
    let mut channels: Vec<Arc<dyn Notifier>> = match app.notifiers().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("certpilot: reading channels: {e}");
            return Exit::of(&e);
        }
    };
    channels.push(Arc::new(crate::terminal::Terminal));
    match service.notify(&channels).await {
        Ok(report) => {
            let mut exit = Exit::Done;
            for (key, channel, error) in &report.failed {
                eprintln!(
                    "certpilot: {channel} did not take {key}: {error}; the next run sends it again"
                );
                exit = exit.worst(match error {
                    certpilot_core::ports::NotifyError::Unavailable(_) => Exit::TempFail,
                    certpilot_core::ports::NotifyError::Refused(_) => Exit::Attention,
                });
            }
            exit
        }
        Err(e) => {
            eprintln!("certpilot: sending findings: {e}");
            Exit::of(&e)
        }
    }
}

/// Runs `certpilot digest`: per owner, the open findings and what expires within the window,
/// soonest first (`certpilot_core::services::digest`).
pub async fn digest(app: &App, args: DigestArgs) -> Result<ExitCode, CliError> {
    let digests = certpilot_core::services::digest::digests(
        app.store().as_ref(),
        app.certificates().as_ref(),
        app.findings().as_ref(),
        app.clock().now(),
        u32::from(args.days),
    )
    .await?;
    let shown: Vec<_> = digests
        .iter()
        .filter(|d| args.owner.as_ref().is_none_or(|o| &d.owner == o))
        .collect();
    use std::io::Write as _;
    let mut out = std::io::BufWriter::new(std::io::stdout());
    match format_or_default(args.format) {
        crate::args::Format::Json => {
            for d in &shown {
                writeln!(out, "{}", serde_json::to_string(d).unwrap_or_default())
                    .map_err(CliError::Output)?;
            }
        }
        crate::args::Format::Table | crate::args::Format::Csv => {
            if shown.is_empty() {
                writeln!(
                    out,
                    "nothing open, nothing expires within {} days",
                    args.days
                )
                .map_err(CliError::Output)?;
            }
            for d in &shown {
                write!(out, "{}", d.text()).map_err(CliError::Output)?;
            }
        }
    }
    out.flush().map_err(CliError::Output)?;
    Ok(ExitCode::SUCCESS)
}
