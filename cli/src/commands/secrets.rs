//! `certpilot secrets set|remove`: the credentials deploy targets read (`deploy/NAME`), kept
//! in the secret store. Values come from files, never from the command line (where `ps`
//! shows them), and are never printed.

use std::process::ExitCode;

use certpilot_app::App;
use certpilot_core::ports::SecretValue;

use crate::args::SecretsCommand;
use crate::error::{CliError, usage};

fn check_name(name: &str) -> Result<(), CliError> {
    certpilot_deploy_cdn::check_secret_name(name)
        .map_err(|(input, reason)| usage(format!("{input:?}: {reason}")))
}

/// Runs `certpilot secrets …`.
pub async fn secrets(app: &App, cmd: SecretsCommand) -> Result<ExitCode, CliError> {
    match cmd {
        SecretsCommand::Set { name, from_file } => {
            check_name(&name)?;
            let text = crate::context::read_secret_file("--from-file", &from_file)?;
            let version = app
                .secrets()
                .put_current(&name, &SecretValue::new(text.into_bytes()))
                .await?;
            eprintln!(
                "stored {name} (version {version}); delete {} once you no longer need it",
                from_file.display()
            );
        }
        SecretsCommand::Remove { name } => {
            check_name(&name)?;
            if app.secrets().delete(&name).await? {
                eprintln!("removed {name}");
            } else {
                eprintln!("{name} was not in the secret store");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
