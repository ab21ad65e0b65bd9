//! Command-line arguments.

use std::path::PathBuf;
use std::time::Duration;

use certpilot_core::ResolveOverride;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::exit::EXIT_CODES;

/// Keeps an inventory of TLS endpoints and the certificates they serve.
#[derive(Debug, Parser)]
#[command(name = "certpilot", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// Where the inventory lives: `sqlite:PATH` (default: a file in the user's data
    /// directory) or `dynamodb:TABLE` (region, credentials and endpoint from the standard AWS
    /// configuration, `AWS_ENDPOINT_URL` included).
    #[arg(long, global = true, env = "CERTPILOT_STORE", value_name = "STORE")]
    pub store: Option<String>,

    /// Where private keys and ACME accounts live: `files:DIR` (default: `secrets/` beside the
    /// SQLite file, mode 0700) or `secretsmanager` (AWS Secrets Manager, the default with a
    /// DynamoDB store).
    #[arg(long, global = true, env = "CERTPILOT_SECRETS", value_name = "SECRETS")]
    pub secrets: Option<String>,

    /// How often a timer scans every registered endpoint (`certpilot scan` without targets):
    /// renew, deploy and verify raise `scan_stale` when no such scan finished for twice that.
    #[arg(
        long,
        global = true,
        env = "CERTPILOT_SCAN_INTERVAL",
        value_name = "DURATION",
        default_value = "1d",
        value_parser = parse_duration
    )]
    pub scan_interval: Duration,

    /// The findings policy (YAML or JSON): expiry thresholds, severities, reminder intervals,
    /// and rules overriding them by tag (`environment: staging`); the settled defaults without
    /// it. See the README's Findings section.
    #[arg(
        long,
        global = true,
        env = "CERTPILOT_FINDINGS_POLICY",
        value_name = "FILE"
    )]
    pub findings_policy: Option<PathBuf>,

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
    #[command(subcommand, after_help = EXIT_CODES)]
    Endpoints(EndpointsCommand),
    /// Show the latest observation of every endpoint and address.
    #[command(after_help = EXIT_CODES)]
    Inventory(InventoryArgs),
    /// Manage certificates issued through ACME: add, list, show, remove, export.
    #[command(subcommand, after_help = EXIT_CODES)]
    Certificates(CertificatesCommand),
    /// Issue or renew managed certificates (those due, or the ones named).
    #[command(after_help = EXIT_CODES)]
    Renew(Box<RenewArgs>),
    /// Prove by handshake that every endpoint of a certificate serves its current version.
    #[command(after_help = EXIT_CODES)]
    Verify(VerifyArgs),
    /// Install a certificate's current version at each of its deployments (ACM, load
    /// balancers, CloudFront, API Gateway, Cloudflare, Fastly, webhooks, files: `certpilot
    /// deploy-kinds` lists every kind and its settings) and prove each serves it; rolls back
    /// those that do not.
    #[command(after_help = EXIT_CODES)]
    Deploy(DeployArgs),
    /// Put the previous certificate back at a certificate's deployments.
    #[command(after_help = EXIT_CODES)]
    Rollback(RollbackArgs),
    /// Create the store if needed (a DynamoDB table for local or development use).
    #[command(after_help = EXIT_CODES)]
    Init,
    /// List the deploy target kinds and their settings (what `--deploy` takes).
    DeployKinds(DeployKindsArgs),
    /// Open problems, most severe first (expired, expiring, not served, failed renewals and
    /// deploys…); `ack` mutes one until a date, `unack` withdraws that.
    #[command(after_help = EXIT_CODES)]
    Findings(FindingsArgs),
    /// Per owner: open findings, and what expires soon (served certificates and managed ones).
    #[command(after_help = EXIT_CODES)]
    Digest(DigestArgs),
    /// The estate as metrics: Prometheus text (ssl_exporter's names, so its rules work) or
    /// CloudWatch EMF; to stdout or atomically to a file for node_exporter's textfile
    /// collector.
    #[command(after_help = EXIT_CODES)]
    Metrics(MetricsArgs),
    /// Where findings are sent (Slack, signed webhooks) and which each takes: add, list,
    /// remove, test.
    #[command(subcommand, after_help = EXIT_CODES)]
    Channels(ChannelsCommand),
    /// Serve the HTTP API (the same routes as the API function on AWS) over this store
    /// until interrupted; OpenAPI at /openapi.json.
    #[command(after_help = EXIT_CODES)]
    Serve(ServeArgs),
    /// Vendor credentials that deploy targets read (API tokens, signing keys), named
    /// `deploy/NAME`: set from a file (never the command line, never printed), or remove.
    #[command(subcommand, after_help = EXIT_CODES)]
    Secrets(SecretsCommand),
}

/// `certpilot secrets`.
#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Store the secret NAME (`deploy/…`) from FILE; a new version replaces the current one.
    Set {
        /// `deploy/NAME`, as a deployment's settings name it.
        name: String,
        /// The file holding it (surrounding whitespace is trimmed).
        #[arg(long, value_name = "FILE")]
        from_file: PathBuf,
    },
    /// Delete the secret NAME (`deploy/…`) and every version of it.
    Remove {
        /// `deploy/NAME`.
        name: String,
    },
}

/// `certpilot serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where to listen. Plain HTTP only on loopback; any other address needs --tls-cert and
    /// --tls-key.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: String,

    /// Callers' tokens: one `NAME SHA256-HEX-OF-TOKEN` per line (`printf %s TOKEN |
    /// sha256sum`); a caller is known as `token:NAME`.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// No authentication (loopback listeners only).
    #[arg(long)]
    pub no_auth: bool,

    /// The certificate chain to serve HTTPS with (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// Its private key (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// Let endpoints registered through the API resolve into this network (repeatable):
    /// private, loopback and link-local addresses and the cloud metadata service are refused
    /// otherwise.
    #[arg(
        long,
        value_name = "CIDR",
        env = "CERTPILOT_ALLOW_NETWORKS",
        value_delimiter = ','
    )]
    pub allow_network: Vec<String>,

    /// The request policy (YAML): which caller may request which names, from which issuer,
    /// with which challenge, key type, profile and deployment kinds, and who approves.
    /// Without it nobody may request certificates through the API.
    #[arg(long, env = "CERTPILOT_REQUEST_POLICY", value_name = "FILE")]
    pub policy: Option<PathBuf>,

    /// Also trust the CA certificates in this PEM file when talking to the ACME server
    /// (a private CA, or Pebble in tests).
    #[arg(long, env = "CERTPILOT_ACME_CA_FILE", value_name = "PEM")]
    pub acme_ca_file: Option<PathBuf>,

    /// How long each ACME request may take.
    #[arg(long, default_value = "90s", value_parser = parse_duration, value_name = "DURATION")]
    pub acme_timeout: Duration,

    /// How requested certificates' deploys are verified.
    #[command(flatten)]
    pub verify: DeployVerifyArgs,
}

/// `certpilot metrics`.
#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// `prometheus` (text exposition 0.0.4) or `emf` (CloudWatch Embedded Metric Format,
    /// one JSON object per line).
    #[arg(long, value_enum, default_value = "prometheus")]
    pub format: MetricsFormat,

    /// Write to this file atomically (a temporary file renamed over it), for node_exporter's
    /// textfile collector (which reads `*.prom`), instead of stdout.
    #[arg(long, value_name = "PATH")]
    pub textfile: Option<PathBuf>,
}

/// Metrics formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MetricsFormat {
    /// Prometheus text exposition.
    Prometheus,
    /// CloudWatch Embedded Metric Format.
    Emf,
}

/// `certpilot channels`.
#[derive(Debug, Subcommand)]
pub enum ChannelsCommand {
    /// Add a channel. Its URL or signing secret is read from a file (never from the command
    /// line, where `ps` shows it), checked, and kept in the secret store; it is never printed.
    Add(Box<ChannelAddArgs>),
    /// List the channels and what each takes (never their secrets).
    List {
        /// Output format.
        #[arg(long, value_enum)]
        format: Option<Format>,
    },
    /// Remove a channel and delete its secret.
    Remove {
        /// The channel's name.
        name: String,
    },
    /// Send a sample message through a channel now (it says it is a test).
    Test {
        /// The channel's name.
        name: String,
    },
}

/// `certpilot channels add`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("destination").required(true).args(["slack_webhook_file", "webhook", "sns_topic", "eventbridge_bus"])))]
pub struct ChannelAddArgs {
    /// Its name (`slack-payments`): lowercase letters, digits and `-`.
    pub name: String,

    /// A Slack incoming webhook: a file holding its URL (https://hooks.slack.com/services/…).
    #[arg(long, value_name = "FILE")]
    pub slack_webhook_file: Option<PathBuf>,

    /// A generic webhook: the HTTPS URL messages are POSTed to, signed with the Standard
    /// Webhooks scheme (needs --secret-file).
    #[arg(long, value_name = "URL", requires = "secret_file")]
    pub webhook: Option<String>,

    /// The webhook's signing secret: a file holding `whsec_` and the base64 of 24 to 64
    /// random bytes (what the receiver verifies with).
    #[arg(long, value_name = "FILE", requires = "webhook")]
    pub secret_file: Option<PathBuf>,

    /// An SNS topic (arn:aws:sns:REGION:ACCOUNT:NAME): each transition is published with the
    /// attributes `severity`, `kind`, `environment` and `owner` for subscription filter
    /// policies. Reached with the standard AWS configuration; no secret.
    #[arg(long, value_name = "ARN")]
    pub sns_topic: Option<String>,

    /// An EventBridge bus (`default`, a name or an ARN): each transition is put as a
    /// `certpilot` event (`Finding opened`…). Reached with the standard AWS configuration.
    #[arg(long, value_name = "BUS")]
    pub eventbridge_bus: Option<String>,

    /// The least severe findings it takes: info, warning (default) or critical.
    #[arg(long, value_name = "SEVERITY", default_value = "warning")]
    pub min_severity: String,

    /// Only findings of this kind (repeatable; default every kind).
    #[arg(long, value_name = "KIND")]
    pub kind: Vec<String>,

    /// Only findings whose subject has this tag (repeatable; all must match):
    /// `--match owner=payments` routes a team's findings to its channel.
    #[arg(long = "match", value_name = "KEY=VALUE")]
    pub matches: Vec<String>,
}

/// `certpilot digest`.
#[derive(Debug, Args)]
pub struct DigestArgs {
    /// Only this owner (tag `owner`); without it, one digest per owner.
    #[arg(long, value_name = "OWNER")]
    pub owner: Option<String>,

    /// What expires within this many days.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u16).range(1..=400))]
    pub days: u16,

    /// Output format: `table` is text for people; `json` one object per owner.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
}

/// `certpilot findings`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct FindingsArgs {
    /// Mute or unmute one finding.
    #[command(subcommand)]
    pub action: Option<FindingsAction>,

    /// Resolved findings too.
    #[arg(long)]
    pub all: bool,

    /// Only findings of this kind (repeatable): expired, expiring, renewal_overdue,
    /// renewal_failed, deploy_failed, hook_failed, not_serving, validation, unreachable,
    /// acm_renewal_blocked, scan_stale.
    #[arg(long, value_name = "KIND")]
    pub kind: Vec<String>,

    /// Only findings at least this severe: info, warning, critical.
    #[arg(long, value_name = "SEVERITY")]
    pub severity: Option<String>,

    /// Only findings whose subject has this tag (repeatable; all must match).
    #[arg(long, value_name = "KEY=VALUE")]
    pub tag: Vec<String>,

    /// Output format.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
}

/// `certpilot findings ack|unack`.
#[derive(Debug, Subcommand)]
pub enum FindingsAction {
    /// Mute a finding until a date: no reminders; it reopens if still there afterwards.
    Ack {
        /// The finding's key (`certpilot findings` lists them).
        key: String,
        /// Until when: a date (2026-12-31, midnight UTC) or an RFC 3339 time.
        #[arg(long, value_name = "DATE")]
        until: String,
        /// Why, for whoever reads it later.
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
    /// Withdraw an acknowledgement: the finding is open again.
    Unack {
        /// The finding's key.
        key: String,
    },
}

/// `certpilot deploy-kinds`.
#[derive(Debug, Args)]
pub struct DeployKindsArgs {
    /// Print the JSON schema of a deployment object (`--deploy-file`, the API).
    #[arg(long, conflicts_with = "markdown")]
    pub schema: bool,
    /// Print the kinds as the README's Markdown table.
    #[arg(long)]
    pub markdown: bool,
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

    /// Read targets from FILE (`-`: standard input): one per line, `#` comments, optional
    /// key=value tags.
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

    /// Exit with status 2 unless every result is healthy: each failed probe, certificate
    /// that does not validate (self-signed, untrusted, wrong name, not yet valid…), expired
    /// one, or one expiring within DURATION counts.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub fail_within: Option<Duration>,

    /// Do not record the results in the inventory (nor evaluate findings).
    #[arg(long)]
    pub no_record: bool,

    /// Record findings, but tell no one (the transitions wait for the next run that does).
    #[arg(long)]
    pub no_notify: bool,
}

/// `certpilot endpoints …`.
#[derive(Debug, Subcommand)]
pub enum EndpointsCommand {
    /// Register a target with optional key=value tags (merged into an existing registration).
    Add {
        /// The target, then its tags: `shop.example.com:443 owner=payments env=prod`.
        #[arg(value_name = "TARGET [KEY=VALUE]…", num_args = 0..)]
        target_and_tags: Vec<String>,
        /// Register every target of a targets file too (`-`: standard input).
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

/// `certpilot certificates …`.
#[derive(Debug, Subcommand)]
pub enum CertificatesCommand {
    /// Start managing a certificate; `certpilot renew` issues it.
    Add(Box<CertificateAddArgs>),
    /// List managed certificates.
    List {
        /// Output format.
        #[arg(long, value_enum)]
        format: Option<Format>,
    },
    /// Show one certificate's record as JSON (never its key).
    Show {
        /// The certificate id.
        id: String,
    },
    /// Stop managing a certificate (its keys stay in the secret store).
    Remove {
        /// The certificate id.
        id: String,
    },
    /// Write cert.pem, chain.pem, fullchain.pem and privkey.pem (mode 0600) into DIR.
    Export {
        /// The certificate id.
        id: String,
        /// The directory to write into (created when missing).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
}

/// Key types on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KeyTypeArg {
    /// ECDSA on P-256 (default).
    EcdsaP256,
    /// ECDSA on P-384.
    EcdsaP384,
    /// RSA 2048.
    Rsa2048,
    /// RSA 3072.
    Rsa3072,
    /// RSA 4096.
    Rsa4096,
}

/// DNS-01 providers on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DnsArg {
    /// AWS Route 53 (credentials from the standard AWS configuration).
    Route53,
    /// RFC 2136 dynamic update, signed with TSIG.
    Rfc2136,
}

/// `certpilot certificates add`.
#[derive(Debug, Args)]
pub struct CertificateAddArgs {
    /// The names: DNS names, `*.wildcards` (DNS-01 only) or IP addresses (HTTP-01 only).
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,

    /// The certificate's id (default: its first name).
    #[arg(long)]
    pub id: Option<String>,

    /// The key type.
    #[arg(long, value_enum, default_value = "ecdsa-p256")]
    pub key_type: KeyTypeArg,

    /// The ACME directory URL.
    #[arg(
        long,
        env = "CERTPILOT_ACME_DIRECTORY",
        default_value = "https://acme-v02.api.letsencrypt.org/directory"
    )]
    pub directory: String,

    /// Account contact, `mailto:you@example.com` (repeatable).
    #[arg(long, value_name = "MAILTO")]
    pub contact: Vec<String>,

    /// External Account Binding key id, for CAs that require one (ZeroSSL, Google Trust
    /// Services, SSL.com, DigiCert, Sectigo).
    #[arg(long, requires = "eab_hmac_file", value_name = "KID")]
    pub eab_kid: Option<String>,

    /// File holding the EAB HMAC key (base64url); it is copied into the secret store
    /// (per certificate), after which the file can be deleted.
    #[arg(long, requires = "eab_kid", value_name = "FILE")]
    pub eab_hmac_file: Option<PathBuf>,

    /// Certificate profile to ask for (`tlsserver`, `shortlived`) when the CA offers it.
    #[arg(long)]
    pub profile: Option<String>,

    /// HTTP-01 through certpilot's own responder on this address (the default, on
    /// 0.0.0.0:80; or behind a proxy forwarding `/.well-known/acme-challenge/`).
    #[arg(long, value_name = "HOST:PORT", conflicts_with_all = ["webroot", "dns"])]
    pub http_listen: Option<String>,

    /// HTTP-01 by writing tokens under DIR/.well-known/acme-challenge/ for a web server.
    #[arg(long, value_name = "DIR", conflicts_with = "dns")]
    pub webroot: Option<PathBuf>,

    /// DNS-01 through a DNS provider.
    #[arg(long, value_enum)]
    pub dns: Option<DnsArg>,

    /// Route 53 hosted zone id (default: found from the names).
    #[arg(long, value_name = "ZONE_ID")]
    pub route53_zone: Option<String>,

    /// RFC 2136: the primary server, `host:port`.
    #[arg(long, value_name = "HOST:PORT")]
    pub rfc2136_server: Option<String>,

    /// RFC 2136: the zone to update.
    #[arg(long, value_name = "ZONE")]
    pub rfc2136_zone: Option<String>,

    /// RFC 2136: the TSIG key name.
    #[arg(long, value_name = "NAME")]
    pub tsig_key_name: Option<String>,

    /// RFC 2136: file holding the TSIG secret (base64, HMAC-SHA256); it is copied into the
    /// secret store.
    #[arg(long, value_name = "FILE")]
    pub tsig_secret_file: Option<PathBuf>,

    /// Renew this many days before expiry instead of the CA's advice or a third of the
    /// lifetime.
    #[arg(long, value_name = "DAYS")]
    pub renew_days_before: Option<u32>,

    /// An endpoint that should serve this certificate (repeatable).
    #[arg(long, value_name = "TARGET")]
    pub endpoint: Vec<String>,

    /// A key=value tag (repeatable): owner, environment…
    #[arg(long, value_name = "KEY=VALUE")]
    pub tag: Vec<String>,

    /// Have AWS Certificate Manager issue it in this region instead of the ACME CA (needs
    /// `--dns route53`: ACM validates through CNAME records certpilot writes there). ACM keeps
    /// the key and renews the certificate; certpilot follows the request and watches it.
    #[arg(long, value_name = "REGION", conflicts_with_all = ["eab_kid", "profile", "http_listen", "webroot"])]
    pub acm_region: Option<String>,

    /// Where to install it after each issuance (repeatable): `KIND:key=value,…`. The kinds
    /// and their settings are listed by `certpilot deploy-kinds`.
    #[arg(long, value_name = "SPEC")]
    pub deploy: Vec<String>,

    /// Deployments as JSON or YAML (one object or a list), the object the API takes:
    /// `{name, kind, settings, units?, endpoints, verify_deadline}`; its schema is printed by
    /// `certpilot deploy-kinds --schema`.
    #[arg(long, value_name = "FILE")]
    pub deploy_file: Option<std::path::PathBuf>,
}

/// `certpilot renew`.
#[derive(Debug, Args)]
pub struct RenewArgs {
    /// Certificates to renew (they are renewed only if due, unless --force).
    #[arg(value_name = "ID", conflicts_with = "due")]
    pub ids: Vec<String>,

    /// Renew every certificate that is due (the default with no ids).
    #[arg(long)]
    pub due: bool,

    /// Renew the named certificates now whatever the schedule or backoff (still within the
    /// CA's duplicate limit); needs ids.
    #[arg(long)]
    pub force: bool,

    /// How long a renewal's lease lasts unless extended. A running renewal extends it every
    /// third of this; a renewal left by a dead process of this host is taken over at once,
    /// one of another host or a hung one once the lease lapses.
    #[arg(long, default_value = "10m", value_parser = parse_duration, value_name = "DURATION")]
    pub lease: Duration,

    /// Run this shell command after each issuance, with CERTPILOT_ID, CERTPILOT_NAMES,
    /// CERTPILOT_FINGERPRINT, CERTPILOT_NOT_AFTER and CERTPILOT_LIVE_DIR in its environment
    /// (e.g. `systemctl reload nginx`). A failing hook is retried on the next run.
    #[arg(long, value_name = "CMD")]
    pub deploy_hook: Option<String>,

    /// After each issuance, export the certificate into DIR/ID/ (fullchain.pem, privkey.pem…)
    /// before the deploy hook runs.
    #[arg(long, value_name = "DIR")]
    pub live_dir: Option<PathBuf>,

    /// How long the deploy hook may run.
    #[arg(long, default_value = "5m", value_parser = parse_duration, value_name = "DURATION")]
    pub hook_timeout: Duration,

    /// Also trust this PEM CA for the ACME server's HTTPS (a private or test CA).
    #[arg(long, env = "CERTPILOT_ACME_CA_FILE", value_name = "PEM")]
    pub acme_ca_file: Option<PathBuf>,

    /// Bound on each call to the CA and on each wait for validation or issuance.
    #[arg(long, default_value = "90s", value_parser = parse_duration, value_name = "DURATION")]
    pub acme_timeout: Duration,

    /// Bound on one renewal's whole exchange with the CA (order, validation, issuance). A CA
    /// that stalls fails the renewal when it runs out; the next run resumes where it stopped.
    #[arg(long, default_value = "10m", value_parser = parse_duration, value_name = "DURATION")]
    pub renewal_timeout: Duration,

    /// Renewals in flight at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,

    /// Do not deploy after issuing (by default each certificate's deployments get it and must
    /// prove they serve it; certificates not yet served everywhere are deployed again).
    #[arg(long)]
    pub no_deploy: bool,

    /// Record findings, but tell no one (the transitions wait for the next run that does).
    #[arg(long)]
    pub no_notify: bool,

    /// How deploys are verified.
    #[command(flatten)]
    pub verify: DeployVerifyArgs,

    /// Output format.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
}

/// `certpilot verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The certificate id.
    pub id: String,

    /// Keep checking endpoints not yet serving it for this long.
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    pub deadline: Duration,

    /// Time between two rounds of handshakes.
    #[arg(long, default_value = "2s", value_parser = parse_duration, value_name = "DURATION")]
    pub interval: Duration,

    /// Connect to ADDR for HOST:PORT while sending SNI HOST (repeatable): check one node.
    #[arg(long, value_name = "HOST:PORT:ADDR")]
    pub resolve: Vec<ResolveOverride>,

    /// Also trust the CA certificates in this PEM file (for the recorded validation).
    #[arg(long, value_name = "PEM")]
    pub ca_file: Vec<PathBuf>,

    /// Output format.
    #[arg(long, value_enum)]
    pub format: Option<Format>,

    /// Record findings, but tell no one (the transitions wait for the next run that does).
    #[arg(long)]
    pub no_notify: bool,
}

/// How a deploy proves the certificate is served.
#[derive(Clone, Debug, Args)]
pub struct DeployVerifyArgs {
    /// Time between two rounds of handshakes with a deployment's endpoints.
    #[arg(long = "verify-interval", default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub interval: Duration,

    /// Wait at most this long for any deployment (each kind has its own deadline: load
    /// balancers 2m, API Gateway 10m, CloudFront 25m).
    #[arg(long = "verify-max-deadline", value_parser = parse_duration, value_name = "DURATION")]
    pub max_deadline: Option<Duration>,

    /// Also trust the CA certificates in this PEM file (for the recorded validation).
    #[arg(long = "verify-ca-file", value_name = "PEM")]
    pub ca_files: Vec<PathBuf>,
}

/// `certpilot deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The certificate id.
    pub id: String,

    /// Record findings, but tell no one (the transitions wait for the next run that does).
    #[arg(long)]
    pub no_notify: bool,

    /// Deploy again where it is already verified.
    #[arg(long)]
    pub force: bool,

    /// How deploys are verified.
    #[command(flatten)]
    pub verify: DeployVerifyArgs,

    /// Output format.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
}

/// `certpilot rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The certificate id.
    pub id: String,

    /// Only this deployment.
    #[arg(long, value_name = "NAME")]
    pub deployment: Option<String>,

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
