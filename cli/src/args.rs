//! Command-line arguments.

use std::path::PathBuf;
use std::time::Duration;

use certpilot_core::ResolveOverride;
use clap::{Args, Parser, Subcommand, ValueEnum};

const EXIT_CODES: &str = "\
Exit status:
  0  success (and, with --fail-within, every result is healthy)
  1  usage or runtime error (bad arguments, unreadable file, store failure)
  2  --fail-within: a result failed, is expired, or expires within the window";

/// Keeps an inventory of TLS endpoints and the certificates they serve.
#[derive(Debug, Parser)]
#[command(name = "certpilot", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// Where the inventory lives: `sqlite:PATH` (default: a file in the user's data
    /// directory) or `dynamodb:TABLE` (region, credentials and endpoint from the standard AWS
    /// configuration, `AWS_ENDPOINT_URL` included).
    #[arg(long, global = true, env = "CERTPILOT_STORE", value_name = "STORE")]
    pub store: Option<String>,

    /// More log output on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Scan targets (or every registered endpoint) and record what they serve.
    #[command(after_help = EXIT_CODES)]
    Scan(ScanArgs),
    /// Register, list and remove the endpoints scanned by default.
    #[command(subcommand)]
    Endpoints(EndpointsCommand),
    /// Show the latest observation of every endpoint and address.
    Inventory(InventoryArgs),
    /// Create the store if needed (a DynamoDB table for local or development use).
    Init,
}

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for people (default when stdout is a terminal).
    Table,
    /// JSON Lines: one object per result (default otherwise).
    Json,
    /// Comma-separated values with a header row, for spreadsheets.
    Csv,
}

/// `certpilot scan`.
#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Targets: host, host:port, [v6]:port, or URL (https, smtp, smtps, imap, imaps, pop3,
    /// pop3s, ftp, ftps, postgres, ldap, ldaps). None: scan the registered endpoints.
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,

    /// Read targets from FILE: one per line, `#` comments, optional key=value tags.
    #[arg(long = "targets", value_name = "FILE")]
    pub targets_file: Vec<PathBuf>,

    /// Output format.
    #[arg(long, value_enum)]
    pub format: Option<Format>,

    /// Also trust the CA certificates in this PEM file (repeatable).
    #[arg(long, value_name = "PEM")]
    pub ca_file: Vec<PathBuf>,

    /// Connect to ADDR for HOST:PORT while sending SNI HOST (repeatable), like curl.
    #[arg(long, value_name = "HOST:PORT:ADDR")]
    pub resolve: Vec<ResolveOverride>,

    /// Probes in flight at once.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub concurrency: u16,

    /// Deadline for each (target, address) as a whole.
    #[arg(long, default_value = "15s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,

    /// Deadline for the TCP connection (and for the DNS lookup).
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub connect_timeout: Duration,

    /// Deadline for STARTTLS and the TLS handshake, once connected.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub handshake_timeout: Duration,

    /// Exit with status 2 when any result failed, is expired, or expires within DURATION.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub fail_within: Option<Duration>,

    /// Do not record the results in the inventory.
    #[arg(long)]
    pub no_record: bool,
}

/// `certpilot endpoints …`.
#[derive(Debug, Subcommand)]
pub enum EndpointsCommand {
    /// Register a target with optional key=value tags (merged into an existing registration).
    Add {
        /// The target, then its tags: `shop.example.com:443 owner=payments env=prod`.
        #[arg(value_name = "TARGET [KEY=VALUE]…", num_args = 0..)]
        target_and_tags: Vec<String>,
        /// Register every target of a targets file too.
        #[arg(long = "targets", value_name = "FILE")]
        targets_file: Option<PathBuf>,
    },
    /// List registered endpoints.
    List {
        /// Output format.
        #[arg(long, value_enum)]
        format: Option<Format>,
    },
    /// Unregister endpoints (their history stays).
    Remove {
        /// Targets to remove.
        #[arg(required = true, value_name = "TARGET")]
        targets: Vec<String>,
    },
}

/// `certpilot inventory`.
#[derive(Debug, Args)]
pub struct InventoryArgs {
    /// Only certificates expiring within DURATION from now (expired ones included).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub expiring_within: Option<Duration>,

    /// Output format.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
}

/// Parses `14d`, `12h`, `90s`, `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{e}; expected a duration such as 14d, 12h, 30s or 1h30m"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(
            parse_duration("14d").unwrap(),
            Duration::from_secs(14 * 86_400)
        );
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert!(
            parse_duration("soon")
                .unwrap_err()
                .contains("expected a duration")
        );
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
