//! `certpilot endpoints add|list|remove`: the endpoints scanned by default.

use std::process::ExitCode;
use std::sync::Arc;

use certpilot_core::ports::{Clock, Store, SystemClock};
use certpilot_core::services::endpoints::{Registration, register};
use certpilot_core::{ScanRequest, add_tag, parse_targets_file};

use crate::args::EndpointsCommand;
use crate::context::{parse_target, read_file, source_name};
use crate::error::CliError;
use crate::output::{RowWriter, colour, format_or_default};

pub(super) async fn endpoints(
    store: Arc<dyn Store>,
    cmd: EndpointsCommand,
) -> Result<ExitCode, CliError> {
    let now = SystemClock.now();
    match cmd {
        EndpointsCommand::Add {
            target_and_tags,
            targets_file,
        } => {
            let mut requests = Vec::new();
            if let Some((first, tags)) = target_and_tags.split_first() {
                let mut request = ScanRequest::new(parse_target(first)?);
                for tag in tags {
                    add_tag(&mut request.tags, tag).map_err(|e| CliError::Usage(e.to_string()))?;
                }
                requests.push(request);
            }
            if let Some(path) = &targets_file {
                requests.extend(parse_targets_file(&source_name(path), &read_file(path)?)?);
            }
            if requests.is_empty() {
                return Err(CliError::Usage(
                    "endpoints add: give a TARGET or --targets FILE".into(),
                ));
            }
            for request in requests {
                let (endpoint, what) =
                    register(store.as_ref(), &request.target, &request.tags, now).await?;
                let verb = match what {
                    Registration::Added => "added",
                    Registration::Updated => "updated",
                    Registration::Unchanged => "unchanged",
                };
                eprintln!("{verb} {}", endpoint.key());
            }
        }
        EndpointsCommand::List { format } => {
            let list = store.endpoints().await?;
            let stdout = crate::output::stdout();
            let mut writer = RowWriter::new(stdout, format_or_default(format), colour(), now);
            writer.fit_targets(list.iter().map(|e| e.key().len()).max().unwrap_or(0));
            for e in &list {
                writer.endpoint(e)?;
            }
            writer.finish()?;
        }
        EndpointsCommand::Remove { targets } => {
            for t in targets {
                let key = parse_target(&t)?.to_string();
                store.remove_endpoint(&key).await?;
                eprintln!("removed {key}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
