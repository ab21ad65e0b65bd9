//! One module per command. Each opens nothing itself: [`run`] opens the store the command
//! needs (and the secret store), then hands them over.

use std::process::ExitCode;

use crate::args::{Cli, Command};
use crate::context::{Access, open_secrets, open_store, scrub_directory_credentials};
use crate::error::CliError;

mod certificates;
mod channels;
mod deploy;
mod endpoints;
mod findings;
mod inventory;
mod metrics;
mod renew;
mod scan;
mod secrets;
mod serve;
mod verify;

/// Runs the command `cli` names. `open_files` is the descriptor limit the process raised.
pub(crate) async fn run(cli: Cli, open_files: Option<u64>) -> Result<ExitCode, CliError> {
    if let Command::DeployKinds(args) = &cli.command {
        // Descriptors only: no store is opened.
        let kinds = certpilot_app::deploy_kinds();
        let text = if args.schema {
            serde_json::to_string_pretty(&kinds.json_schema()).unwrap_or_default() + "\n"
        } else if args.markdown {
            kinds.markdown_table()
        } else {
            kinds.help()
        };
        use std::io::Write as _;
        std::io::stdout()
            .write_all(text.as_bytes())
            .map_err(CliError::Output)?;
        return Ok(ExitCode::SUCCESS);
    }
    // Read before anything is opened: a mistake in it changes nothing.
    let policy =
        crate::context::findings_policy(cli.findings_policy.as_deref(), cli.scan_interval)?;
    let access = Access::of(&cli.command);
    let store = open_store(cli.store.as_deref(), access).await?;
    if matches!(
        cli.command,
        Command::Certificates(_)
            | Command::Renew(_)
            | Command::Verify(_)
            | Command::Deploy(_)
            | Command::Rollback(_)
    ) {
        scrub_directory_credentials(store.certificates()?.as_ref(), || store.writable()).await?;
    }
    let secrets = open_secrets(cli.secrets.as_deref(), &store).await?;
    let app = store
        .app(secrets)
        .with_findings_policy(policy)
        .with_address_policy(crate::context::allowed_networks()?);
    match cli.command {
        Command::Certificates(cmd) => {
            certificates::certificates(app.certificates(), app.secrets(), cmd).await
        }
        Command::Verify(args) => verify::verify(&app, args).await,
        Command::Deploy(args) => deploy::deploy(&app, args).await,
        Command::Rollback(args) => deploy::rollback(&app, args).await,
        Command::Renew(args) => renew::renew(&app, *args).await,
        Command::Init => {
            store.init().await?;
            eprintln!("store ready: {}", store.describe());
            Ok(ExitCode::SUCCESS)
        }
        Command::Scan(args) => scan::scan(&app, args, open_files).await,
        Command::Endpoints(cmd) => endpoints::endpoints(app.store(), cmd).await,
        Command::Inventory(args) => inventory::inventory(app.store(), args).await,
        Command::DeployKinds(_) => Ok(ExitCode::SUCCESS),
        Command::Findings(args) => findings::findings(&app, args).await,
        Command::Digest(args) => findings::digest(&app, args).await,
        Command::Channels(cmd) => channels::channels(&app, cmd).await,
        Command::Metrics(args) => metrics::metrics(&app, args).await,
        Command::Serve(args) => serve::serve(&app, args).await,
        Command::Secrets(cmd) => secrets::secrets(&app, cmd).await,
    }
}
