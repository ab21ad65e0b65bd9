//! `certpilot inventory`: the latest observation of every endpoint and address.

use std::process::ExitCode;
use std::sync::Arc;

use certpilot_core::ports::{Clock, InventoryQuery, Store, SystemClock};

use crate::args::InventoryArgs;
use crate::error::CliError;
use crate::output::{RowWriter, colour, format_or_default};

pub(super) async fn inventory(
    store: Arc<dyn Store>,
    args: InventoryArgs,
) -> Result<ExitCode, CliError> {
    let now = SystemClock.now();
    let query = InventoryQuery {
        expiring_before: args.expiring_within.map(|w| now + w),

        ..InventoryQuery::default()
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
