//! `certpilot`: scan TLS endpoints, keep their inventory, and report what expires.
//!
//! The binary is wiring: it parses arguments, opens the store, builds the scanner, and hands
//! both to the core services. See `certpilot --help` for the exit codes.

mod args;
mod certificates;
mod deploy;
mod exit;
mod output;
mod unix;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use certpilot_aws::SecretsManagerStore;
use certpilot_core::ports::{
    CertificateStore, Clock, InventoryQuery, ScanLimits, SecretError, SecretStore, Store,
    StoreError, SystemClock,
};
use certpilot_core::services::endpoints::{Registration, register, registered_requests};
use certpilot_core::services::renew::RenewError;
use certpilot_core::services::scan::{Recorder, ScanService};
use certpilot_core::{ScanRequest, Target, TargetsFileError, add_tag, parse_targets_file, policy};
use certpilot_dynamodb::DynamoStore;
use certpilot_files::FileSecretStore;
use certpilot_scanner::{Deadlines, TlsProber, TrustError, TrustStore};
use certpilot_sqlite::SqliteStore;
use clap::Parser;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use args::{CertificatesCommand, Cli, Command, EndpointsCommand, Format, InventoryArgs, ScanArgs};
use exit::Exit;
use output::RowWriter;

/// Everything that ends a command early; [`Exit::of_error`] gives its exit status.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Trust(#[from] TrustError),
    #[error(transparent)]
    TargetsFile(#[from] TargetsFileError),
    #[error("{path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Renew(#[from] RenewError),
    #[error(transparent)]
    Deploy(#[from] certpilot_core::services::deploy::DeployServiceError),
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
}

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
    match runtime.block_on(run(cli, open_files)) {
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
    let colour = colour_for(std::io::stderr().is_terminal());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .init();
}

async fn run(cli: Cli, open_files: Option<u64>) -> Result<ExitCode, CliError> {
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
        certificates::scrub_directory_credentials(store.certificates()?.as_ref(), || {
            store.writable()
        })
        .await?;
    }
    match cli.command {
        Command::Certificates(cmd) => {
            let secrets = open_secrets(cli.secrets.as_deref(), &store).await?;
            certificates::certificates(store.certificates()?, secrets, cmd).await
        }
        Command::Verify(args) => {
            certificates::verify(store.certificates()?, store.port(), args).await
        }
        Command::Deploy(args) => {
            let secrets = open_secrets(cli.secrets.as_deref(), &store).await?;
            deploy::deploy(store.certificates()?, secrets, args).await
        }
        Command::Rollback(args) => {
            let secrets = open_secrets(cli.secrets.as_deref(), &store).await?;
            deploy::rollback(store.certificates()?, secrets, args).await
        }
        Command::Renew(args) => {
            let secrets = open_secrets(cli.secrets.as_deref(), &store).await?;
            certificates::renew(store.certificates()?, secrets, *args).await
        }
        Command::Init => {
            store.init().await?;
            eprintln!("store ready: {}", store.describe());
            Ok(ExitCode::SUCCESS)
        }
        Command::Scan(args) => scan(store.port(), args, open_files).await,
        Command::Endpoints(cmd) => endpoints(store.port(), cmd).await,
        Command::Inventory(args) => inventory(store.port(), args).await,
    }
}

/// The store chosen on the command line.
enum OpenedStore {
    Sqlite(Arc<SqliteStore>),
    Dynamo(Arc<DynamoStore>),
}

impl OpenedStore {
    fn port(&self) -> Arc<dyn Store> {
        match self {
            OpenedStore::Sqlite(s) => s.clone(),
            OpenedStore::Dynamo(d) => d.clone(),
        }
    }

    /// The store as a [`CertificateStore`].
    fn certificates(&self) -> Result<Arc<dyn CertificateStore>, CliError> {
        match self {
            OpenedStore::Sqlite(s) => Ok(s.clone()),
            OpenedStore::Dynamo(d) => Ok(d.clone()),
        }
    }

    /// The same store, open for writing (a reader that must convert an old record).
    fn writable(&self) -> Result<Arc<dyn CertificateStore>, CliError> {
        match self {
            OpenedStore::Sqlite(s) => Ok(Arc::new(SqliteStore::open(s.path())?)),
            OpenedStore::Dynamo(d) => Ok(d.clone()),
        }
    }

    fn describe(&self) -> String {
        match self {
            OpenedStore::Sqlite(s) => format!("sqlite:{}", s.path().display()),
            OpenedStore::Dynamo(d) => format!("dynamodb:{}", d.table()),
        }
    }

    /// Creates what the store needs: the SQLite file exists once opened; a DynamoDB table is
    /// created (for local or development use: production tables come from the SAM stack).
    async fn init(&self) -> Result<(), StoreError> {
        match self {
            OpenedStore::Sqlite(_) => Ok(()),
            OpenedStore::Dynamo(d) => d.create_table().await,
        }
    }
}

/// What a command does with the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    /// Nothing (a scan of given targets with `--no-record`): a throwaway in-memory store.
    None,
    /// Reads only: the store must exist, and is opened read-only.
    Read,
    /// Changes what is there (renew, deploy, remove…): the store must exist.
    Update,
    /// Adds to it (scan, add, init): created the first time, which is said.
    Create,
}

impl Access {
    fn of(command: &Command) -> Access {
        match command {
            Command::Scan(args) if args.no_record => {
                if args.targets.is_empty() && args.targets_file.is_empty() {
                    Access::Read
                } else {
                    Access::None
                }
            }
            Command::Scan(_) | Command::Init => Access::Create,
            Command::Endpoints(EndpointsCommand::Add { .. })
            | Command::Certificates(CertificatesCommand::Add(_)) => Access::Create,
            Command::Inventory(_)
            | Command::Endpoints(EndpointsCommand::List { .. })
            | Command::Certificates(
                CertificatesCommand::List { .. }
                | CertificatesCommand::Show { .. }
                | CertificatesCommand::Export { .. },
            ) => Access::Read,
            _ => Access::Update,
        }
    }
}

/// Opens the store named by `--store` / `CERTPILOT_STORE`, or the default SQLite file, as
/// `access` needs it: a mistyped path is refused rather than silently created empty.
async fn open_store(spec: Option<&str>, access: Access) -> Result<OpenedStore, CliError> {
    if access == Access::None {
        return Ok(OpenedStore::Sqlite(Arc::new(SqliteStore::in_memory()?)));
    }
    let path = match spec {
        None => default_store_path()?,
        Some("") => {
            return Err(CliError::Usage(
                "--store is empty (CERTPILOT_STORE set to \"\"?): give sqlite:PATH or dynamodb:TABLE, or unset it for the default"
                    .into(),
            ));
        }
        Some(spec) => match spec.split_once(':') {
            Some(("sqlite", path)) if !path.is_empty() => PathBuf::from(path),
            Some(("dynamodb", table)) if valid_table_name(table) => {
                return Ok(OpenedStore::Dynamo(Arc::new(
                    DynamoStore::from_env(table).await,
                )));
            }
            Some(("sqlite", _)) => {
                return Err(CliError::Usage(
                    "--store sqlite: needs a path, e.g. sqlite:./certpilot.db".into(),
                ));
            }
            Some(("dynamodb", table)) => {
                return Err(CliError::Usage(format!(
                    "--store dynamodb:{table}: a table name is 3 to 255 letters, digits, '_', '-' or '.'"
                )));
            }
            Some((scheme, _)) => {
                return Err(CliError::Usage(format!(
                    "--store {spec:?}: unknown store {scheme:?}; expected sqlite:PATH or dynamodb:TABLE"
                )));
            }
            None => {
                return Err(CliError::Usage(format!(
                    "--store {spec:?}: expected sqlite:PATH or dynamodb:TABLE"
                )));
            }
        },
    };
    let exists = path.exists();
    if !exists && access != Access::Create {
        return Err(CliError::Usage(format!(
            "no store at {} (--store, CERTPILOT_STORE): check the path, or create it with \
             `certpilot scan`, `endpoints add` or `certificates add`",
            path.display()
        )));
    }
    let store = if access == Access::Read {
        SqliteStore::open_read_only(&path)?
    } else {
        SqliteStore::open(&path)?
    };
    if !exists {
        eprintln!("certpilot: created a new store at {}", path.display());
    }
    Ok(OpenedStore::Sqlite(Arc::new(store)))
}

/// Opens the secret store named by `--secrets` / `CERTPILOT_SECRETS`, or the default that goes
/// with the store: files beside the SQLite database, Secrets Manager beside DynamoDB.
async fn open_secrets(
    spec: Option<&str>,
    store: &OpenedStore,
) -> Result<Arc<dyn SecretStore>, CliError> {
    match spec {
        None | Some("") => match store {
            OpenedStore::Sqlite(s) => {
                let dir = s.path().parent().unwrap_or(Path::new(".")).join("secrets");
                Ok(Arc::new(FileSecretStore::new(dir)))
            }
            OpenedStore::Dynamo(_) => Ok(Arc::new(SecretsManagerStore::from_env().await)),
        },
        Some("secretsmanager") => Ok(Arc::new(SecretsManagerStore::from_env().await)),
        Some(spec) => match spec.split_once(':') {
            Some(("files", dir)) if !dir.is_empty() => Ok(Arc::new(FileSecretStore::new(dir))),
            _ => Err(CliError::Usage(format!(
                "--secrets {spec:?}: expected files:DIR or secretsmanager"
            ))),
        },
    }
}

fn valid_table_name(name: &str) -> bool {
    (3..=255).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn default_store_path() -> Result<PathBuf, CliError> {
    let base = dirs::data_dir().ok_or_else(|| {
        CliError::Usage("no user data directory (is HOME set?); pass --store sqlite:PATH".into())
    })?;
    Ok(base.join("certpilot").join("certpilot.db"))
}

pub(crate) fn format_or_default(format: Option<Format>) -> Format {
    format.unwrap_or(if std::io::stdout().is_terminal() {
        Format::Table
    } else {
        Format::Json
    })
}

fn colour() -> bool {
    colour_for(std::io::stdout().is_terminal())
}

/// Colour for a stream that `is_terminal`, unless `NO_COLOR` is set to anything but empty
/// (<https://no-color.org>).
fn colour_for(is_terminal: bool) -> bool {
    is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Reads a targets file; `-` is standard input (`dig … | certpilot scan --targets -`).
fn read_file(path: &Path) -> Result<String, CliError> {
    if path == Path::new("-") {
        let mut text = String::new();
        return std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map(|_| text)
            .map_err(|source| CliError::File {
                path: "standard input".into(),
                source,
            });
    }
    std::fs::read_to_string(path).map_err(|source| CliError::File {
        path: path.display().to_string(),
        source,
    })
}

/// How errors name a targets file.
fn source_name(path: &Path) -> String {
    if path == Path::new("-") {
        "standard input".into()
    } else {
        path.display().to_string()
    }
}

pub(crate) fn parse_target(text: &str) -> Result<Target, CliError> {
    text.parse()
        .map_err(|e: certpilot_core::TargetError| CliError::Usage(e.to_string()))
}

async fn scan(
    store: Arc<dyn Store>,
    args: ScanArgs,
    open_files: Option<u64>,
) -> Result<ExitCode, CliError> {
    let mut requests = Vec::new();
    for t in &args.targets {
        requests.push(ScanRequest::new(parse_target(t)?));
    }
    for path in &args.targets_file {
        requests.extend(parse_targets_file(&source_name(path), &read_file(path)?)?);
    }
    if args.targets.is_empty() && args.targets_file.is_empty() {
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
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let wanted = usize::from(args.concurrency);
    let concurrency = unix::probes_within(open_files, wanted);
    if concurrency < wanted {
        eprintln!(
            "certpilot: --concurrency {wanted} lowered to {concurrency}: the open-file limit is {} (raise `ulimit -Hn` for more)",
            open_files.unwrap_or_default()
        );
    }
    let service = ScanService::new(
        Arc::new(TlsProber::new(trust, deadlines)),
        clock.clone(),
        ScanLimits {
            concurrency,
            target_timeout: args.timeout,
        },
    );

    let format = format_or_default(args.format);
    let stdout = output::stdout();
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

    let mut shutdown = unix::Shutdown::install().map_err(CliError::Output)?;
    let mut recorder = (!args.no_record).then(|| Recorder::new(store.clone()));
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
        if let Some(r) = recorder.as_mut() {
            r.push(obs).await;
        }
    };
    progress.finish_and_clear();
    writer.finish()?;
    let mut exit = Exit::Done;
    if let Some(r) = recorder {
        // Whatever was observed before an interrupt is still recorded.
        match r.finish().await {
            Ok(recorded) => tracing::info!(recorded, "observations recorded"),
            Err(e) => {
                eprintln!("certpilot: recording the scan: {e}");
                exit = exit.worst(Exit::of_store(&e));
            }
        }
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

async fn endpoints(store: Arc<dyn Store>, cmd: EndpointsCommand) -> Result<ExitCode, CliError> {
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
            let stdout = output::stdout();
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

async fn inventory(store: Arc<dyn Store>, args: InventoryArgs) -> Result<ExitCode, CliError> {
    let now = SystemClock.now();
    let query = InventoryQuery {
        expiring_before: args.expiring_within.map(|w| now + w),
    };
    let rows = store.inventory(&query).await?;
    let stdout = output::stdout();
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
