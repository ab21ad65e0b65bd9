//! `certpilot`: scan TLS endpoints, keep their inventory, and report what expires.
//!
//! The binary is wiring: it parses arguments, opens the store, builds the scanner, and hands
//! both to the core services. See `certpilot --help` for the exit codes.

mod args;
mod commands;
mod context;
mod deploy_spec;
mod error;
mod exit;
mod output;
mod terminal;
mod unix;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use args::Cli;
use error::CliError;
use exit::Exit;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with status 0; usage errors get status 1, which
            // keeps 2 for "--fail-within found something".
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_logging(cli.verbose);
    let open_files = unix::raise_open_files();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("certpilot: cannot start the async runtime: {e}");
            return Exit::TempFail.into();
        }
    };
    match runtime.block_on(commands::run(cli, open_files)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("certpilot: {e}");
            Exit::of_error(&e).into()
        }
    }
}

fn init_logging(verbose: u8) {
    // rustls logs each refused certificate on its own; certpilot says it in words, once.
    let default = match verbose {
        0 => "warn,rustls=off",
        1 => "info,rustls=off",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour codes only for a person at a terminal: never in a log file, journald or a pipe.
    let colour = output::colour_for(std::io::stderr().is_terminal());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .init();
}
