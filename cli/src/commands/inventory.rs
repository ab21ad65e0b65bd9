//! `certpilot inventory`: the latest observation of every endpoint and address.

use crate::args::*;
use crate::error::CliError;
use crate::output::RowWriter;
use crate::output::colour;
use crate::output::format_or_default;
use certpilot_core::ports::Clock;
use certpilot_core::ports::InventoryQuery;
use certpilot_core::ports::Store;
use certpilot_core::ports::SystemClock;
use std::process::ExitCode;
use std::sync::Arc;

pub(super) async fn inventory(
    store: Arc<dyn Store>,
    args: InventoryArgs,
) -> Result<ExitCode, CliError> {
    let now = SystemClock.now();
    let query = InventoryQuery {
        expiring_before: args.expiring_within.map(|w| now + w),
    };
    let rows = store.inventory(&query).await?;
    let stdout = crate::output::stdout();
    let mut writer = RowWriter::new(
        std::io::BufWriter::new(stdout),
        format_or_default(args.format),
        colour(),
        now,
    );
    writer.fit_targets(
        rows.iter()
            .map(|r| r.observation.target.len())
            .max()
            .unwrap_or(0),
    );
    for row in &rows {
        writer.inventory(row)?;
    }
    writer.finish()?;
    Ok(ExitCode::SUCCESS)
}
