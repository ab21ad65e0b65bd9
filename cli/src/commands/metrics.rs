//! `certpilot metrics`: the estate as Prometheus text or CloudWatch EMF.

use std::io::Write as _;
use std::process::ExitCode;

use certpilot_app::App;
use certpilot_core::ports::InventoryQuery;
use certpilot_core::services::metrics::{Estate, emf, prometheus};

use crate::args::{MetricsArgs, MetricsFormat};
use crate::error::CliError;

/// Runs `certpilot metrics`.
pub async fn metrics(app: &App, args: MetricsArgs) -> Result<ExitCode, CliError> {
    let inventory = app.store().inventory(&InventoryQuery::default()).await?;
    let certificates = app.certificates().certificates().await?;
    let findings = app.findings().active_findings().await?;
    let estate = Estate {
        inventory: &inventory,
        certificates: &certificates,
        findings: &findings,
        now: app.clock().now(),
    };
    let text = match args.format {
        MetricsFormat::Prometheus => prometheus(&estate),
        MetricsFormat::Emf => emf(&estate),
    };
    match &args.textfile {
        Some(path) => {
            if path.extension().is_none_or(|e| e != "prom") {
                eprintln!(
                    "certpilot: note: node_exporter's textfile collector reads only *.prom files; {} is not one",
                    path.display()
                );
            }
            // World-readable like any exporter's output; written whole, then renamed, so
            // the collector never reads half a file.
            certpilot_files::atomic::write_file(path, text.as_bytes(), 0o644).map_err(
                |source| CliError::File {
                    path: format!("--textfile {}", path.display()),
                    source,
                },
            )?;
        }
        None => std::io::stdout()
            .write_all(text.as_bytes())
            .map_err(CliError::Output)?,
    }
    Ok(ExitCode::SUCCESS)
}
