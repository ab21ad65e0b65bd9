//! `certpilot certificates …` and `certpilot renew`: managed certificates on the CLI.
//!
//! Wiring only: the renewal itself is [`RenewService`]; this module builds the spec from the
//! flags, opens the secret store, and after each issuance exports the live files and runs the
//! deploy hook (the local [`IssuedSink`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use certpilot_acme::rfc2136::Rfc2136Dns;
use certpilot_acme::{AcmeIssuer, AcmeSettings};
use certpilot_aws::LazyRoute53Dns;
use certpilot_core::ScanRequest;
use certpilot_core::model::certificate::{
    AcmeIssuer as IssuerConfig, CertificateSpec, ChallengeConfig, DnsProviderConfig,
    ExternalAccountBinding, Identifier, KeyType, ManagedCertificate, RenewalPolicy,
    validate_certificate_id,
};
use certpilot_core::ports::{
    CertificateStore, Clock, IssuedSink, Liveness, SecretStore, SecretValue, SecretVersion, Store,
    StoreError, SystemClock,
};
use certpilot_core::services::acm::AcmService;
use certpilot_core::services::renew::{RenewError, RenewOutcome, RenewService, RenewSettings};
use certpilot_core::services::scan::Recorder;
use certpilot_core::services::verify::{Verdict, VerifyService, VerifySettings};
use certpilot_core::{Tags, add_tag};
use certpilot_files::live::export_live;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::CliError;
use crate::args::{
    CertificateAddArgs, CertificatesCommand, DnsArg, KeyTypeArg, RenewArgs, VerifyArgs,
};
use crate::exit::Exit;
use crate::output::write_records;
use crate::unix::{LocalProcesses, ProcessGroup, Shutdown};

/// How long DNS-01 records may take to reach every authoritative server.
const DNS_PROPAGATION: Duration = Duration::from_secs(120);

/// How long a deploy hook's process group has between SIGTERM and SIGKILL.
const HOOK_GRACE: Duration = Duration::from_secs(5);

pub(crate) fn usage(text: impl Into<String>) -> CliError {
    CliError::Usage(text.into())
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// Reads a secret from a file given on the command line (never from argv, where `ps` shows
/// it), trimmed of surrounding whitespace, and checks it with `decode` before anything is
/// stored.
fn read_secret_file(
    flag: &str,
    path: &Path,
    decode: fn(&str) -> Result<Vec<u8>, String>,
) -> Result<PendingSecret, CliError> {
    let text = std::fs::read_to_string(path).map_err(|source| CliError::File {
        path: format!("{flag} {}", path.display()),
        source,
    })?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(usage(format!(
            "{flag} {}: the file is empty",
            path.display()
        )));
    }
    decode(trimmed).map_err(|e| usage(format!("{flag} {}: {e}", path.display())))?;
    Ok(PendingSecret {
        value: SecretValue::new(trimmed.as_bytes().to_vec()),
        file: path.to_owned(),
    })
}

fn key_type(arg: KeyTypeArg) -> KeyType {
    match arg {
        KeyTypeArg::EcdsaP256 => KeyType::EcdsaP256,
        KeyTypeArg::EcdsaP384 => KeyType::EcdsaP384,
        KeyTypeArg::Rsa2048 => KeyType::Rsa2048,
        KeyTypeArg::Rsa3072 => KeyType::Rsa3072,
        KeyTypeArg::Rsa4096 => KeyType::Rsa4096,
    }
}

/// A secret read from a file named on the command line.
struct PendingSecret {
    value: SecretValue,
    file: PathBuf,
}

/// Secrets named on the command line, to store once the spec is known to be valid; each is
/// kept per certificate, so another certificate reusing a key id or TSIG key name never
/// replaces the secret this one renews with.
struct PendingSecrets(Vec<(String, PendingSecret)>);

fn challenge(
    id: &str,
    args: &CertificateAddArgs,
    secrets: &mut PendingSecrets,
) -> Result<ChallengeConfig, CliError> {
    let rfc2136_flags = [
        ("--rfc2136-server", args.rfc2136_server.is_some()),
        ("--rfc2136-zone", args.rfc2136_zone.is_some()),
        ("--tsig-key-name", args.tsig_key_name.is_some()),
        ("--tsig-secret-file", args.tsig_secret_file.is_some()),
    ];
    if args.dns != Some(DnsArg::Rfc2136)
        && let Some((flag, _)) = rfc2136_flags.iter().find(|(_, set)| *set)
    {
        return Err(usage(format!("{flag} needs --dns rfc2136")));
    }
    if args.dns != Some(DnsArg::Route53) && args.route53_zone.is_some() {
        return Err(usage("--route53-zone needs --dns route53"));
    }
    Ok(match args.dns {
        Some(DnsArg::Route53) => ChallengeConfig::Dns01 {
            provider: DnsProviderConfig::Route53 {
                zone_id: args.route53_zone.clone(),
            },
        },
        Some(DnsArg::Rfc2136) => {
            let missing: Vec<&str> = rfc2136_flags
                .iter()
                .filter(|(_, set)| !set)
                .map(|(flag, _)| *flag)
                .collect();
            if !missing.is_empty() {
                return Err(usage(format!(
                    "--dns rfc2136 also needs {}",
                    missing.join(", ")
                )));
            }
            let (Some(server), Some(zone), Some(key_name), Some(file)) = (
                &args.rfc2136_server,
                &args.rfc2136_zone,
                &args.tsig_key_name,
                &args.tsig_secret_file,
            ) else {
                unreachable!("checked above");
            };
            let key_secret = format!("certificate-tsig/{id}");
            secrets.0.push((
                key_secret.clone(),
                read_secret_file(
                    "--tsig-secret-file",
                    file,
                    certpilot_acme::rfc2136::decode_tsig_secret,
                )?,
            ));
            ChallengeConfig::Dns01 {
                provider: DnsProviderConfig::Rfc2136 {
                    server: server.clone(),
                    zone: zone.clone(),
                    key_name: key_name.clone(),
                    key_secret,
                },
            }
        }
        None => match &args.webroot {
            Some(webroot) => ChallengeConfig::Http01Webroot {
                webroot: webroot.clone(),
            },
            None => ChallengeConfig::Http01Listen {
                listen: args
                    .http_listen
                    .clone()
                    .unwrap_or_else(|| "0.0.0.0:80".into()),
            },
        },
    })
}

/// Builds the spec from `certificates add` flags; the secrets it names are returned to be
/// stored only once everything else is valid.
fn spec_from_args(
    args: &CertificateAddArgs,
) -> Result<(String, CertificateSpec, PendingSecrets), CliError> {
    let mut secrets = PendingSecrets(Vec::new());
    let names = args
        .names
        .iter()
        .map(|n| n.parse::<Identifier>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| usage(e.to_string()))?;
    let id = match &args.id {
        Some(id) => id.clone(),
        None => certpilot_core::model::certificate::default_id(&names),
    };
    validate_certificate_id(&id).map_err(|e| usage(format!("--id: {e}")))?;
    let eab = match (&args.eab_kid, &args.eab_hmac_file) {
        (Some(kid), Some(file)) => {
            if kid.is_empty() || kid.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(usage(format!(
                    "--eab-kid {kid:?}: expected the key id the CA gave, without spaces"
                )));
            }
            let hmac_secret = format!("certificate-eab-hmac/{id}");
            secrets.0.push((
                hmac_secret.clone(),
                read_secret_file("--eab-hmac-file", file, certpilot_acme::decode_eab_hmac)?,
            ));
            Some(ExternalAccountBinding {
                key_id: kid.clone(),
                hmac_secret,
            })
        }
        _ => None,
    };
    let mut tags = Tags::new();
    for tag in &args.tag {
        add_tag(&mut tags, tag).map_err(|e| usage(e.to_string()))?;
    }
    let endpoints = args
        .endpoint
        .iter()
        .map(|t| crate::parse_target(t))
        .collect::<Result<Vec<_>, _>>()?;
    let spec = CertificateSpec {
        names,
        key_type: key_type(args.key_type),
        issuer: IssuerConfig {
            directory: args.directory.clone(),
            contact: args.contact.clone(),
            eab,
            profile: args.profile.clone(),
            account_secret: None,
        },
        challenge: challenge(&id, args, &mut secrets)?,
        renewal: match args.renew_days_before {
            Some(0) => return Err(usage("--renew-days-before must be at least 1")),
            Some(days) => RenewalPolicy::DaysBefore { days },
            None => RenewalPolicy::Auto,
        },
        tags,
        endpoints,
        acm: args
            .acm_region
            .clone()
            .map(|region| certpilot_core::model::certificate::AcmIssuance { region }),
        deployments: args
            .deploy
            .iter()
            .map(|d| crate::deploy::parse_deploy_spec(d))
            .collect::<Result<_, _>>()?,
    };
    spec.validate().map_err(|e| usage(e.to_string()))?;
    Ok((id, spec, secrets))
}

/// Runs `certpilot certificates …`.
pub async fn certificates(
    store: Arc<dyn CertificateStore>,
    secrets: Arc<dyn SecretStore>,
    cmd: CertificatesCommand,
) -> Result<ExitCode, CliError> {
    match cmd {
        CertificatesCommand::Add(args) => {
            let (id, spec, pending) = spec_from_args(&args)?;
            if store.certificate(&id).await?.is_some() {
                return Err(usage(format!(
                    "certificate {id:?} is already managed; remove it first or choose another --id"
                )));
            }
            let cert = ManagedCertificate::new(id.clone(), spec, SystemClock.now());
            // The record first: a refused insert (the id taken meanwhile) leaves no secret
            // behind. A record whose secret is not stored yet only fails its renewal, with a
            // message naming the secret.
            match store.add_certificate(&cert).await {
                Ok(_) => {}
                Err(StoreError::AlreadyExists { .. }) => {
                    return Err(usage(format!(
                        "certificate {id:?} is already managed; remove it first or choose another --id"
                    )));
                }
                Err(e) => return Err(e.into()),
            }
            for (name, pending) in &pending.0 {
                if let Err(e) = secrets.put_current(name, &pending.value).await {
                    // Without its secret the record cannot renew: take it back.
                    let _ = store.remove_certificate(&id).await;
                    return Err(e.into());
                }
                eprintln!(
                    "copied {} into the secret store as {name}; delete {} once you no longer need it",
                    pending.file.display(),
                    pending.file.display()
                );
            }
            eprintln!("added {id}; `certpilot renew` issues it");
        }
        CertificatesCommand::List { format } => {
            let list = store.certificates().await?;
            let live = LocalProcesses::new();
            let now = SystemClock.now();
            let rows: Vec<CertificateRow> = list
                .iter()
                .map(|c| CertificateRow::of(c, now, &live))
                .collect();
            write_records(
                crate::format_or_default(format),
                &CertificateRow::HEADER,
                rows.iter().map(|r| (r.cells(), r.json())),
            )?;
        }
        CertificatesCommand::Show { id } => {
            let cert = find(store.as_ref(), &id).await?;
            // The record holds no key, only SecretStore versions: safe to print whole.
            let text = serde_json::to_string_pretty(&cert)
                .map_err(|e| CliError::Output(std::io::Error::other(e)))?;
            let mut out = crate::output::stdout();
            writeln!(out, "{text}")?;
            out.flush()?;
        }
        CertificatesCommand::Remove { id } => {
            find(store.as_ref(), &id).await?;
            store.remove_certificate(&id).await?;
            eprintln!("removed {id} (its keys stay in the secret store)");
        }
        CertificatesCommand::Export { id, dir } => {
            let cert = find(store.as_ref(), &id).await?;
            let files = export(secrets.as_ref(), &cert, &dir).await?;
            eprintln!(
                "exported {id} to {} (privkey.pem is mode 0600)",
                files.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
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

/// Writes the current certificate and its key into `dir`.
async fn export(
    secrets: &dyn SecretStore,
    cert: &ManagedCertificate,
    dir: &Path,
) -> Result<PathBuf, CliError> {
    let Some(current) = &cert.current else {
        return Err(usage(format!(
            "{} has not been issued yet; run `certpilot renew {}`",
            cert.id, cert.id
        )));
    };
    let name = cert.key_secret_name();
    let (_, key) = secrets
        .get(&name, &SecretVersion::Id(current.key_version.clone()))
        .await?
        .ok_or_else(|| {
            usage(format!(
                "{}: its key (version {}) is missing from the secret store",
                cert.id, current.key_version
            ))
        })?;
    // A key that does not belong to the certificate would take a server down at its next
    // reload: check the pair before a single file is written.
    certpilot_acme::check_pair(&current.chain_pem, &key).map_err(|e| {
        CliError::Secret(certpilot_core::ports::SecretError::Backend(format!(
            "{}: key version {} in the secret store: {e}; nothing was written",
            cert.id, current.key_version
        )))
    })?;
    let dir = dir.to_owned();
    let chain = current.chain_pem.clone();
    let written = tokio::task::spawn_blocking(move || export_live(&dir, &chain, &key).map(|_| dir))
        .await
        .map_err(|e| CliError::Output(std::io::Error::other(e)))?;
    written.map_err(|e| CliError::Output(std::io::Error::other(e)))
}

/// One line of `certificates list`.
struct CertificateRow {
    id: String,
    names: String,
    state: &'static str,
    not_after: Option<OffsetDateTime>,
    next_check: OffsetDateTime,
    last_error: Option<String>,
}

impl CertificateRow {
    const HEADER: [&'static str; 6] = [
        "id",
        "names",
        "state",
        "not_after",
        "next_check",
        "last_error",
    ];

    fn of(c: &ManagedCertificate, now: OffsetDateTime, live: &dyn Liveness) -> Self {
        // A renewal whose worker is gone (killed, lease lapsed) is not "renewing": the next
        // `renew` resumes it where it stopped.
        let worked_on = c
            .renewal
            .lease
            .as_ref()
            .is_some_and(|l| l.until > now && !live.is_gone(&l.owner));
        let state = match (&c.current, &c.renewal.job, &c.renewal.last_error) {
            (_, _, Some(_)) => "failing",
            (_, Some(_), None) if worked_on => "renewing",
            (_, Some(_), None) => "interrupted",
            (None, None, None) => "pending",
            // Issued but not served everywhere: the outage certpilot exists to catch.
            (Some(_), None, None) if !c.is_deployed() => "not_deployed",
            (Some(_), None, None) => "issued",
        };
        let deploy_problem = c
            .deployments
            .iter()
            .find(|r| r.detail.is_some() && c.spec.deployments.iter().any(|d| d.name == r.name))
            .and_then(|r| r.detail.as_ref().map(|d| format!("{}: {d}", r.name)));
        CertificateRow {
            id: c.id.clone(),
            names: c.spec.name_set().join(","),
            state,
            not_after: c.current.as_ref().map(|i| i.not_after),
            next_check: c.renewal.next_check_at,
            last_error: c.renewal.last_error.as_ref().map(|e| e.message.clone()).or(
                if state == "not_deployed" {
                    deploy_problem
                } else {
                    None
                },
            ),
        }
    }

    fn cells(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.names.clone(),
            self.state.into(),
            self.not_after.map(rfc3339).unwrap_or_default(),
            rfc3339(self.next_check),
            self.last_error.clone().unwrap_or_default(),
        ]
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "id": self.id,
            "names": self.names.split(',').collect::<Vec<_>>(),
            "state": self.state,
            "not_after": self.not_after.map(rfc3339),
            "next_check": rfc3339(self.next_check),
            "last_error": self.last_error,
        })
    }
}

/// The local [`IssuedSink`]: exports the live files, then runs the deploy hook.
struct LocalSink {
    secrets: Arc<dyn SecretStore>,
    live_dir: Option<PathBuf>,
    hook: Option<String>,
    hook_timeout: Duration,
}

#[async_trait]
impl IssuedSink for LocalSink {
    async fn issued(&self, cert: &ManagedCertificate) -> Result<(), String> {
        let live = match &self.live_dir {
            Some(dir) => Some(
                export(self.secrets.as_ref(), cert, &dir.join(&cert.id))
                    .await
                    .map_err(|e| format!("exporting to the live directory: {e}"))?,
            ),
            None => None,
        };
        let Some(hook) = &self.hook else {
            return Ok(());
        };
        let current = cert.current.as_ref().ok_or("no current certificate")?;
        let mut command = tokio::process::Command::new("sh");
        command
            .arg("-c")
            .arg(hook)
            .env("CERTPILOT_ID", &cert.id)
            .env("CERTPILOT_NAMES", cert.spec.name_set().join(" "))
            .env("CERTPILOT_FINGERPRINT", &current.fingerprint)
            .env("CERTPILOT_NOT_AFTER", rfc3339(current.not_after))
            .env(
                "CERTPILOT_LIVE_DIR",
                live.as_deref().map(Path::as_os_str).unwrap_or_default(),
            )
            .stdin(std::process::Stdio::null())
            // stdout is ours (JSON rows): the hook's output goes to stderr.
            .stdout(std::io::stderr())
            .kill_on_drop(true);
        // Its own process group, so that a timeout or an interrupt ends the hook's children
        // (a `sh -c` hook's `sleep`, a reload's helpers) and not only the shell.
        command.process_group(0);
        let mut child = command
            .spawn()
            .map_err(|e| format!("deploy hook {hook:?}: cannot start: {e}"))?;
        let group = ProcessGroup::of(child.id());
        match tokio::time::timeout(self.hook_timeout, child.wait()).await {
            Ok(result) => {
                group.disarm();
                match result {
                    Ok(status) if status.success() => Ok(()),
                    Ok(status) => Err(format!("deploy hook {hook:?} failed: {status}")),
                    Err(e) => Err(format!("deploy hook {hook:?}: {e}")),
                }
            }
            Err(_) => {
                group.end(HOOK_GRACE).await;
                let _ = child.wait().await;
                Err(format!(
                    "deploy hook {hook:?} still running after {:?}; it and its children were ended",
                    self.hook_timeout
                ))
            }
        }
    }
}

/// Runs `certpilot verify`: handshakes with every endpoint of the certificate until each
/// serves its current version, records what was seen, and exits 2 on `not_serving`.
pub async fn verify(
    certificates: Arc<dyn CertificateStore>,
    store: Arc<dyn Store>,
    args: VerifyArgs,
) -> Result<ExitCode, CliError> {
    let cert = find(certificates.as_ref(), &args.id).await?;
    let Some(current) = &cert.current else {
        return Err(usage(format!(
            "{} has not been issued yet; run `certpilot renew {}`",
            cert.id, cert.id
        )));
    };
    if cert.spec.endpoints.is_empty() {
        return Err(usage(format!(
            "{} lists no endpoints to verify; add it again with --endpoint HOST:PORT",
            cert.id
        )));
    }
    let scanner = crate::deploy::scanner(&args.ca_file, Arc::new(SystemClock))?;
    let requests = cert
        .spec
        .endpoints
        .iter()
        .map(|t| ScanRequest::new(t.clone()).with_overrides(&args.resolve))
        .collect();
    let checks = VerifyService::new(scanner)
        .verify(
            &current.fingerprint,
            requests,
            VerifySettings {
                deadline: args.deadline,
                interval: args.interval,
            },
        )
        .await;
    // What the handshakes saw is inventory like any scan.
    let mut recorder = Recorder::new(store);
    for check in &checks {
        recorder.push(check.observation.clone()).await;
    }
    recorder.finish().await?;
    let failing = checks.iter().filter(|c| !c.is_verified()).count();
    write_records(
        crate::format_or_default(args.format),
        &["target", "address", "verdict", "detail"],
        checks.iter().map(|c| {
            let detail = match &c.verdict {
                Verdict::Verified => format!("serves {}", current.fingerprint),
                Verdict::NotServing {
                    serving: Some(other),
                    since,
                    ..
                } => format!("serves {other} instead (seen since {})", rfc3339(*since)),
                Verdict::NotServing {
                    error: Some(error),
                    since,
                    ..
                } => format!("{error} (since {})", rfc3339(*since)),
                Verdict::NotServing { since, .. } => {
                    format!("no certificate (since {})", rfc3339(*since))
                }
            };
            let mut json = serde_json::to_value(c).unwrap_or_default();
            if let Some(o) = json.as_object_mut() {
                o.insert("id".into(), json!(cert.id));
                o.insert("expected".into(), json!(current.fingerprint));
            }
            let verdict = if c.is_verified() {
                "verified"
            } else {
                "not_serving"
            };
            (
                vec![
                    c.target.clone(),
                    c.address.clone().unwrap_or_default(),
                    verdict.to_owned(),
                    detail,
                ],
                json,
            )
        }),
    )?;
    if failing > 0 {
        eprintln!(
            "certpilot: {failing} of {} endpoint addresses do not serve {} ({})",
            checks.len(),
            cert.id,
            current.fingerprint
        );
        return Ok(Exit::Attention.into());
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `certpilot renew`.
pub async fn renew(
    store: Arc<dyn CertificateStore>,
    secrets: Arc<dyn SecretStore>,
    args: RenewArgs,
) -> Result<ExitCode, CliError> {
    if args.force && args.ids.is_empty() {
        return Err(usage(
            "--force renews the certificates named: give their ids (`certpilot certificates list` shows them)",
        ));
    }
    if let Some(path) = &args.acme_ca_file
        && !path.is_file()
    {
        return Err(usage(format!(
            "--acme-ca-file {}: no such file",
            path.display()
        )));
    }
    for id in &args.ids {
        find(store.as_ref(), id).await?;
    }
    let issuer = Arc::new(
        AcmeIssuer::new(
            secrets.clone(),
            AcmeSettings {
                timeout: args.acme_timeout,
                ca_file: args.acme_ca_file.clone(),
            },
        )
        .with_dns("route53", Arc::new(LazyRoute53Dns::new(DNS_PROPAGATION)))
        .with_dns(
            "rfc2136",
            Arc::new(Rfc2136Dns::new(
                secrets.clone(),
                Duration::from_secs(10),
                DNS_PROPAGATION,
            )),
        ),
    );
    let sink: Option<Arc<dyn IssuedSink>> = (args.deploy_hook.is_some() || args.live_dir.is_some())
        .then(|| {
            Arc::new(LocalSink {
                secrets: secrets.clone(),
                live_dir: args.live_dir.clone(),
                hook: args.deploy_hook.clone(),
                hook_timeout: args.hook_timeout,
            }) as Arc<dyn IssuedSink>
        });
    let secrets_for_deploy = secrets.clone();
    // ACM keeps its keys: nothing to export, so the local sink is not told.
    let acm = AcmService::new(
        store.clone(),
        Arc::new(certpilot_deploy_aws::acm::AcmIssuer::from_environment()),
        Arc::new(LazyRoute53Dns::new(DNS_PROPAGATION)),
        None,
        Arc::new(SystemClock),
    );
    let service = RenewService::new(
        store.clone(),
        secrets,
        issuer,
        sink,
        Arc::new(SystemClock),
        crate::unix::lease_owner(),
        RenewSettings {
            concurrency: usize::from(args.concurrency),
            lease: args.lease,
            deadline: args.renewal_timeout,
            ..RenewSettings::default()
        },
    )
    .with_acm(acm)
    .with_liveness(Arc::new(LocalProcesses::new()));

    let mut shutdown = Shutdown::install().map_err(CliError::Output)?;
    let work = async {
        if args.ids.is_empty() {
            service.renew_due().await
        } else {
            Ok(service.renew_all(args.ids.clone(), args.force).await)
        }
    };
    // Dropping the work on a signal drops each renewal where it stands (its hook's process
    // group is ended); every step done so far is persisted, so releasing the leases is all
    // it takes for the next run to resume at once.
    let results = tokio::select! {
        results = work => Some(results),
        _ = shutdown.recv() => None,
    };
    let Some(results) = results else {
        return interrupted(&service).await;
    };
    let results = results?;
    let mut exit = Exit::Done;
    let rows: Vec<(Vec<String>, serde_json::Value)> = results
        .iter()
        .map(|(id, result)| {
            exit = exit.worst(renew_exit(result));
            renew_row(id, result)
        })
        .collect();
    if rows.is_empty() {
        eprintln!("nothing due");
    }
    write_records(
        crate::format_or_default(args.format),
        &["id", "outcome", "detail"],
        rows.into_iter(),
    )?;
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    if failed > 0 {
        eprintln!("certpilot: {failed} of {} renewals failed", results.len());
    }
    if !args.no_deploy {
        let deploying = deploy_after_renew(store, secrets_for_deploy, &results, &args);
        let deployed = tokio::select! {
            deployed = deploying => Some(deployed),
            _ = shutdown.recv() => None,
        };
        let Some(deployed) = deployed else {
            return interrupted(&service).await;
        };
        exit = exit.worst(deployed?);
    }
    Ok(exit.into())
}

/// Ends `renew` after SIGINT or SIGTERM: gives up this process's leases so the next run
/// resumes at once rather than after the lease lapses.
async fn interrupted(service: &RenewService) -> Result<ExitCode, CliError> {
    match service.release_leases().await {
        Ok(ids) if ids.is_empty() => eprintln!("certpilot: interrupted"),
        Ok(ids) => eprintln!(
            "certpilot: interrupted; {} stays due and `certpilot renew` resumes it where it stopped",
            ids.join(", ")
        ),
        Err(e) => eprintln!(
            "certpilot: interrupted; could not release the renewal leases ({e}): they lapse on their own"
        ),
    }
    Ok(Exit::Interrupted.into())
}

/// The exit status one renewal's result calls for.
fn renew_exit(result: &Result<RenewOutcome, RenewError>) -> Exit {
    match result {
        Ok(RenewOutcome::Issued { .. } | RenewOutcome::NotDue { .. }) => Exit::Done,
        Ok(
            RenewOutcome::Deferred { .. }
            | RenewOutcome::BackingOff { .. }
            | RenewOutcome::Busy { .. }
            | RenewOutcome::Postponed,
        ) => Exit::TempFail,
        Err(e) if e.is_retryable() => Exit::TempFail,
        Err(_) => Exit::Attention,
    }
}

/// Deploys what was just issued, and whatever is not yet served everywhere (a deploy that
/// failed last run), to each certificate's deployments.
async fn deploy_after_renew(
    store: Arc<dyn CertificateStore>,
    secrets: Arc<dyn SecretStore>,
    results: &[(String, Result<RenewOutcome, RenewError>)],
    args: &RenewArgs,
) -> Result<Exit, CliError> {
    let issued: Vec<&String> = results
        .iter()
        .filter(|(_, r)| matches!(r, Ok(RenewOutcome::Issued { .. })))
        .map(|(id, _)| id)
        .collect();
    let with_targets: Vec<String> = store
        .certificates()
        .await?
        .into_iter()
        .filter(|c| !c.spec.deployments.is_empty() && c.current.is_some())
        .filter(|c| {
            let named = args.ids.is_empty() || args.ids.contains(&c.id);
            issued.contains(&&c.id) || (named && !c.is_deployed())
        })
        .map(|c| c.id)
        .collect();
    if with_targets.is_empty() {
        return Ok(Exit::Done);
    }
    let service = crate::deploy::service(store, secrets, &args.verify).await?;
    let mut reports = Vec::new();
    for id in &with_targets {
        match service.deploy(id, None, false).await {
            Ok(r) => reports.push(r),
            Err(e) => {
                eprintln!("certpilot: deploying {id}: {e}");
                return Ok(Exit::of_deploy(&e));
            }
        }
    }
    crate::deploy::report_deploys(&reports, args.format)
}

fn renew_row(
    id: &str,
    result: &Result<RenewOutcome, RenewError>,
) -> (Vec<String>, serde_json::Value) {
    let (outcome, detail, extra) = match result {
        Ok(RenewOutcome::Issued {
            fingerprint,
            not_after,
        }) => (
            "issued",
            format!("expires {}, sha256 {fingerprint}", rfc3339(*not_after)),
            json!({"fingerprint": fingerprint, "not_after": rfc3339(*not_after)}),
        ),
        Ok(RenewOutcome::NotDue { next_check_at }) => (
            "not_due",
            format!("next check {}", rfc3339(*next_check_at)),
            json!({"next_check": rfc3339(*next_check_at)}),
        ),
        Ok(RenewOutcome::Deferred { until, reason }) => (
            "deferred",
            format!("until {}: {reason}", rfc3339(*until)),
            json!({"until": rfc3339(*until), "reason": reason}),
        ),
        Ok(RenewOutcome::Postponed) => (
            "postponed",
            "not started: too little time left".to_owned(),
            json!({}),
        ),
        Ok(RenewOutcome::BackingOff {
            until,
            failures,
            last_error,
        }) => (
            "backing_off",
            format!(
                "{failures} failed attempt(s); next try {}; last: {last_error}; `certpilot renew {id} --force` tries now",
                rfc3339(*until)
            ),
            json!({"until": rfc3339(*until), "failures": failures, "last_error": last_error}),
        ),
        Ok(RenewOutcome::Busy { owner, until }) => (
            "busy",
            format!(
                "being renewed by {owner} (lease until {}); run again once it ends",
                rfc3339(*until)
            ),
            json!({"owner": owner, "until": rfc3339(*until)}),
        ),
        Err(e) => {
            let problem = match e {
                RenewError::Issue { error, .. } => error.problem().cloned(),
                _ => None,
            };
            (
                "failed",
                e.to_string(),
                json!({"error": e.to_string(), "error_kind": e.kind(), "problem": problem}),
            )
        }
    };
    let mut object = json!({"id": id, "outcome": outcome});
    if let (Some(o), Some(extra)) = (object.as_object_mut(), extra.as_object()) {
        o.extend(extra.clone());
    }
    (vec![id.to_owned(), outcome.to_owned(), detail], object)
}
