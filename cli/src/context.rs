//! What every command opens first: the store (as the command needs it), the secret store,
//! and the certificate a command names.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use certpilot_aws::SecretsManagerStore;
use certpilot_core::Target;
use certpilot_core::model::certificate::ManagedCertificate;
use certpilot_core::ports::{CertificateStore, ScanLimits, SecretStore, StoreError};
use certpilot_core::services::scan::ScanService;
use certpilot_dynamodb::DynamoStore;
use certpilot_files::FileSecretStore;
use certpilot_scanner::{Deadlines, TrustStore};
use certpilot_sqlite::SqliteStore;

use crate::args::{CertificatesCommand, ChannelsCommand, Command, EndpointsCommand, FindingsArgs};
use crate::error::{CliError, usage};

/// The store chosen on the command line.
pub(crate) enum OpenedStore {
    Sqlite(Arc<SqliteStore>),
    Dynamo(Arc<DynamoStore>),
}

impl OpenedStore {
    /// The store as a [`CertificateStore`].
    pub(crate) fn certificates(&self) -> Result<Arc<dyn CertificateStore>, CliError> {
        match self {
            OpenedStore::Sqlite(s) => Ok(s.clone()),
            OpenedStore::Dynamo(d) => Ok(d.clone()),
        }
    }

    /// The app over this store and `secrets`.
    pub(crate) fn app(&self, secrets: Arc<dyn SecretStore>) -> certpilot_app::App {
        match self {
            OpenedStore::Sqlite(s) => certpilot_app::App::new(s.clone(), secrets),
            OpenedStore::Dynamo(d) => certpilot_app::App::new(d.clone(), secrets),
        }
    }

    /// The same store, open for writing (a reader that must convert an old record).
    pub(crate) fn writable(&self) -> Result<Arc<dyn CertificateStore>, CliError> {
        match self {
            OpenedStore::Sqlite(s) => Ok(Arc::new(SqliteStore::open(s.path())?)),
            OpenedStore::Dynamo(d) => Ok(d.clone()),
        }
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            OpenedStore::Sqlite(s) => format!("sqlite:{}", s.path().display()),
            OpenedStore::Dynamo(d) => format!("dynamodb:{}", d.table()),
        }
    }

    /// Creates what the store needs: the SQLite file exists once opened; a DynamoDB table is
    /// created (for local or development use: production tables come from the SAM stack).
    pub(crate) async fn init(&self) -> Result<(), StoreError> {
        match self {
            OpenedStore::Sqlite(_) => Ok(()),
            OpenedStore::Dynamo(d) => d.create_table().await,
        }
    }
}

/// What a command does with the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
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
    pub(crate) fn of(command: &Command) -> Access {
        match command {
            Command::Scan(args) if args.no_record => {
                if args.targets.is_empty() && args.targets_file.is_empty() {
                    Access::Read
                } else {
                    Access::None
                }
            }
            Command::Scan(_) | Command::Init | Command::Serve(_) => Access::Create,
            Command::Endpoints(EndpointsCommand::Add { .. })
            | Command::Certificates(CertificatesCommand::Add(_)) => Access::Create,
            Command::Findings(FindingsArgs { action: None, .. })
            | Command::Digest(_)
            | Command::Metrics(_)
            | Command::Channels(ChannelsCommand::List { .. } | ChannelsCommand::Test { .. }) => {
                Access::Read
            }
            Command::Channels(ChannelsCommand::Add(_)) | Command::Secrets(_) => Access::Create,
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
pub(crate) async fn open_store(
    spec: Option<&str>,
    access: Access,
) -> Result<OpenedStore, CliError> {
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
                return Ok(OpenedStore::Dynamo(
                    certpilot_app::App::dynamodb(table).await,
                ));
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
pub(crate) async fn open_secrets(
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

pub(crate) fn valid_table_name(name: &str) -> bool {
    (3..=255).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

pub(crate) fn default_store_path() -> Result<PathBuf, CliError> {
    let base = dirs::data_dir().ok_or_else(|| {
        CliError::Usage("no user data directory (is HOME set?); pass --store sqlite:PATH".into())
    })?;
    Ok(base.join("certpilot").join("certpilot.db"))
}

/// Reads a secret from a file named by `flag` (never from argv, where `ps` shows it),
/// trimmed; an empty file is refused by name.
pub(crate) fn read_secret_file(flag: &str, path: &Path) -> Result<String, CliError> {
    let text = std::fs::read_to_string(path).map_err(|source| CliError::File {
        path: format!("{flag} {}", path.display()),
        source,
    })?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(CliError::Usage(format!(
            "{flag} {}: the file is empty",
            path.display()
        )));
    }
    Ok(trimmed.to_owned())
}

/// Reads a YAML or JSON document for `flag`: a `.yaml`/`.yml` file, or one that does not
/// start with `{` or `[`, is read as YAML. Errors name the flag and the file.
pub(crate) fn read_document(flag: &str, path: &Path) -> Result<serde_json::Value, CliError> {
    let bad = |reason: String| CliError::Usage(format!("{flag} {}: {reason}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml")
        || !text.trim_start().starts_with(['{', '[']);
    if yaml {
        yaml_serde::from_str(&text).map_err(|e| bad(format!("not YAML: {e}")))
    } else {
        serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))
    }
}

/// Reads `--findings-policy` over the defaults, with the schedule's scan interval.
pub(crate) fn findings_policy(
    path: Option<&Path>,
    scan_interval: std::time::Duration,
) -> Result<certpilot_core::policy::findings::FindingsPolicy, CliError> {
    let policy = certpilot_core::policy::findings::FindingsPolicy {
        scan_interval,
        ..Default::default()
    };
    match path {
        None => Ok(policy),
        Some(path) => policy
            .with_settings(read_document("--findings-policy", path)?)
            .map_err(|e| CliError::Usage(format!("--findings-policy {}: {e}", path.display()))),
    }
}

/// Reads a targets file; `-` is standard input (`dig … | certpilot scan --targets -`).
pub(crate) fn read_file(path: &Path) -> Result<String, CliError> {
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
pub(crate) fn source_name(path: &Path) -> String {
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

pub(crate) async fn find(
    store: &dyn CertificateStore,
    id: &str,
) -> Result<ManagedCertificate, CliError> {
    if let Some(cert) = store.certificate(id).await? {
        return Ok(cert);
    }
    // Ids are lowercase; records from before that rule keep their spelling.
    let lower = id.to_ascii_lowercase();
    if lower != id
        && let Some(cert) = store.certificate(&lower).await?
    {
        return Ok(cert);
    }
    Err(usage(format!(
        "no managed certificate {id:?}; `certpilot certificates list` shows them"
    )))
}

/// Converts records written by earlier versions whose ACME directory URL holds credentials:
/// the credentials are removed (they were never sent, and `show` and logs printed them), the
/// account stays the same. Says so once per record.
/// `writable` gives a store to write with when `store` was opened read-only; it is called
/// only when a record needs converting.
pub(crate) async fn scrub_directory_credentials(
    store: &dyn CertificateStore,
    writable: impl Fn() -> Result<Arc<dyn CertificateStore>, CliError>,
) -> Result<(), CliError> {
    let mut writer = None;
    for mut cert in store.certificates().await? {
        let shown = certpilot_core::model::certificate::redact_url(&cert.spec.issuer.directory);
        if !cert.spec.issuer.strip_directory_credentials() {
            continue;
        }
        if writer.is_none() {
            writer = Some(writable()?);
        }
        let Some(writer) = writer.as_ref() else {
            continue;
        };
        match writer.update_certificate(&cert).await {
            Ok(_) => eprintln!(
                "certpilot: {}: removed the credentials from its ACME directory URL ({shown}); they were never sent to the CA, and the account is unchanged",
                cert.id
            ),
            // A renewal wrote meanwhile: the next command converts it.
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// `CERTPILOT_ALLOW_NETWORKS` (comma-separated CIDRs): where what was registered through
/// the API may be scanned besides public addresses; `serve --allow-network` sets the same.
pub(crate) fn allowed_networks() -> Result<certpilot_core::policy::address::AddressPolicy, CliError>
{
    let allowed = std::env::var("CERTPILOT_ALLOW_NETWORKS")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| {
            n.parse::<certpilot_core::policy::address::Network>()
                .map_err(|e| usage(format!("CERTPILOT_ALLOW_NETWORKS: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(certpilot_core::policy::address::AddressPolicy { allowed })
}

/// The scanner that proves endpoints serve a certificate (`verify`, `deploy`, `renew`):
/// Mozilla's roots plus `ca_files`.
pub(crate) fn scanner(
    app: &certpilot_app::App,
    ca_files: &[std::path::PathBuf],
) -> Result<ScanService, CliError> {
    let mut trust = TrustStore::mozilla();
    for path in ca_files {
        trust.add_pem_file(path)?;
    }
    Ok(app.scanner(
        trust,
        Deadlines::default(),
        ScanLimits {
            concurrency: 64,
            target_timeout: std::time::Duration::from_secs(15),
        },
    ))
}
