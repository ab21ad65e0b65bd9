//! `certpilot scan`: handshakes with targets, streamed to the output and the store.

use std::io::IsTerminal;
use std::process::ExitCode;

use certpilot_core::ports::ScanLimits;
use certpilot_core::services::endpoints::registered_requests;
use certpilot_core::services::scan::Recorder;
use certpilot_core::{ScanRequest, parse_targets_file, policy};
use certpilot_scanner::{Deadlines, TrustStore};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::args::{Format, ScanArgs};
use crate::context::{parse_target, read_file, source_name};
use crate::error::CliError;
use crate::exit::Exit;
use crate::output::{RowWriter, colour, format_or_default};

pub(super) async fn scan(
    app: &certpilot_app::App,
    args: ScanArgs,
    open_files: Option<u64>,
) -> Result<ExitCode, CliError> {
    let store = app.store();
    let mut requests = Vec::new();
    for t in &args.targets {
        requests.push(ScanRequest::new(parse_target(t)?));
    }
    for path in &args.targets_file {
        requests.extend(parse_targets_file(&source_name(path), &read_file(path)?)?);
    }
    // A scan of every registered endpoint is a sweep, like the scheduled scan's tick: it
    // moves the schedule's marker, which `scan_stale` watches.
    let sweep = args.targets.is_empty() && args.targets_file.is_empty();
    let previous_sweep = match sweep && !args.no_record {
        true => Some(store.last_tick().await?),
        false => None,
    };
    if sweep {
        requests = registered_requests(store.as_ref()).await?;
        if requests.is_empty() {
            return Err(CliError::Usage(
                "nothing to scan: give targets, --targets FILE, or register endpoints with `certpilot endpoints add`".into(),
            ));
        }
    }
    let requests: Vec<_> = requests
        .into_iter()
        .map(|r| r.with_overrides(&args.resolve))
        .collect();

    let mut trust = TrustStore::mozilla();
    for path in &args.ca_file {
        trust.add_pem_file(path)?;
    }
    let deadlines = Deadlines {
        connect: args.connect_timeout.min(args.timeout),
        handshake: args.handshake_timeout.min(args.timeout),
    };
    let clock = app.clock();
    let wanted = usize::from(args.concurrency);
    let concurrency = crate::unix::probes_within(open_files, wanted);
    if concurrency < wanted {
        eprintln!(
            "certpilot: --concurrency {wanted} lowered to {concurrency}: the open-file limit is {} (raise `ulimit -Hn` for more)",
            open_files.unwrap_or_default()
        );
    }
    let service = app.scanner(
        trust,
        deadlines,
        ScanLimits {
            concurrency,
            target_timeout: args.timeout,
        },
    );

    let format = format_or_default(args.format);
    let stdout = crate::output::stdout();
    let mut writer = RowWriter::new(
        std::io::BufWriter::new(stdout),
        format,
        colour(),
        clock.now(),
    );
    writer.fit_targets(
        requests
            .iter()
            .map(|r| r.target.to_string().len())
            .max()
            .unwrap_or(0),
    );
    let interactive = format == Format::Table && std::io::stdout().is_terminal();
    let progress = progress_bar(requests.len());

    let mut shutdown = crate::unix::Shutdown::install().map_err(CliError::Output)?;
    let mut recorder = (!args.no_record).then(|| Recorder::new(store.clone()));
    let findings = app.findings_service();
    let mut evaluation = match args.no_record {
        true => None,
        false => Some(
            findings
                .scan_evaluation(app.certificates().as_ref())
                .await?,
        ),
    };
    let mut run = service.start(requests);
    let mut attention = 0usize;
    let mut failed = 0usize;
    let mut local = 0usize;
    let mut total = 0usize;
    let now = clock.now();
    // Observations wait at most a second in a batch, even while slow targets time out.
    let mut flush = tokio::time::interval(Recorder::MAX_DELAY);
    let interrupted = loop {
        let obs = tokio::select! {
            obs = run.next() => obs,
            _ = shutdown.recv() => break true,
            _ = flush.tick() => {
                // A reader of the stream (`| jq`) sees each row within a second too.
                writer.flush()?;
                if let Some(r) = recorder.as_mut() {
                    r.tick().await;
                }
                continue;
            }
        };
        let Some(obs) = obs else { break false };
        total += 1;
        if let Some(e) = &obs.error {
            failed += 1;
            if e.kind == certpilot_core::ErrorKind::Local {
                local += 1;
            }
        }
        if let Some(window) = args.fail_within
            && policy::fails_window(&obs, window, now)
        {
            attention += 1;
        }
        let written = progress.suspend(|| {
            writer.observation(&obs)?;
            if interactive {
                writer.flush()?;
            }
            Ok::<_, std::io::Error>(())
        });
        written?;
        progress.set_message(format!("{total} results, {failed} failed"));
        progress.inc(1);
        if let Some(e) = evaluation.as_mut() {
            e.push(&obs, findings.policy());
        }
        if let Some(r) = recorder.as_mut() {
            r.push(obs).await;
        }
    };
    progress.finish_and_clear();
    writer.finish()?;
    let mut exit = Exit::Done;
    let mut streaks = Default::default();
    if let Some(mut r) = recorder {
        // Whatever was observed before an interrupt is still recorded.
        r.flush().await;
        streaks = r.failure_streaks().clone();
        match r.finish().await {
            Ok(recorded) => tracing::info!(recorded, "observations recorded"),
            Err(e) => {
                eprintln!("certpilot: recording the scan: {e}");
                exit = exit.worst(Exit::of(&e));
            }
        }
    }
    if let Some(previous) = previous_sweep.filter(|_| !interrupted && exit == Exit::Done)
        && let Err(e) = finish_sweep(app, previous).await
    {
        eprintln!("certpilot: recording the sweep: {e}");
        exit = exit.worst(Exit::of(&e));
    }
    if let Some(e) = evaluation.filter(|_| !interrupted && exit == Exit::Done) {
        exit = exit
            .worst(super::findings::evaluate(app, &findings, e, &streaks, !args.no_notify).await);
    }
    if local > 0 {
        eprintln!(
            "certpilot: {local} of {total} results failed on this machine, not at the endpoint (out of file descriptors or memory); they were not recorded — run again with a lower --concurrency or a higher `ulimit -n`"
        );
        exit = exit.worst(Exit::TempFail);
    }
    if interrupted {
        eprintln!("certpilot: interrupted after {total} results (they were recorded)");
        return Ok(Exit::Interrupted.into());
    }
    if args.fail_within.is_some() && attention > 0 {
        eprintln!(
            "certpilot: {attention} of {total} results failed, do not validate, expired or expire within the window"
        );
        exit = exit.worst(Exit::Attention);
    }
    Ok(exit.into())
}

/// Moves the sweep marker from `previous` to now and resolves `scan_stale`. Another sweep
/// that moved it first (a scheduled tick on the same table) has said the same.
async fn finish_sweep(
    app: &certpilot_app::App,
    previous: Option<time::OffsetDateTime>,
) -> Result<(), certpilot_core::ports::StoreError> {
    let now = app.clock().now();
    if previous.is_none_or(|p| p < now) {
        match app.store().advance_tick(previous, now).await {
            Ok(()) | Err(certpilot_core::ports::StoreError::Conflict { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    app.record_schedule_findings().await.map(drop)
}

fn progress_bar(targets: usize) -> ProgressBar {
    // Only for long scans, and only where a person watches stderr.
    if targets < 20 || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(targets as u64), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} {elapsed} [{bar:30}] {pos}/{len} targets {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}
