//! `certpilot certificates add|list|show|remove|export`: managed certificates.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use certpilot_core::model::certificate::AcmeIssuer as IssuerConfig;
use certpilot_core::model::certificate::{
    CertificateSpec, ChallengeConfig, DnsProviderConfig, ExternalAccountBinding, Identifier,
    KeyType, ManagedCertificate, RenewalPolicy, validate_certificate_id,
};
use certpilot_core::policy::CertificateState;
use certpilot_core::ports::{
    CertificateStore, Clock, Liveness, SecretStore, SecretValue, SecretVersion, StoreError,
    SystemClock,
};
use certpilot_core::{Tags, add_tag};
use certpilot_files::live::export_live;
use serde_json::json;
use time::OffsetDateTime;

use crate::args::{CertificateAddArgs, CertificatesCommand, DnsArg, KeyTypeArg};
use crate::context::find;
use crate::error::{CliError, usage};
use crate::output::{format_or_default, rfc3339, write_records};
use crate::unix::LocalProcesses;

/// Reads a secret from a file given on the command line (never from argv, where `ps` shows
/// it), trimmed of surrounding whitespace, and checks it with `decode` before anything is
/// stored.
fn read_secret_file(
    flag: &str,
    path: &Path,
    decode: fn(&str) -> Result<Vec<u8>, String>,
) -> Result<PendingSecret, CliError> {
    let text = crate::context::read_secret_file(flag, path)?;
    let trimmed = text.as_str();
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
        .map(|t| crate::context::parse_target(t))
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
        deployments: {
            let kinds = certpilot_app::deploy_kinds();
            let mut deployments = args
                .deploy
                .iter()
                .map(|d| crate::deploy_spec::parse_deploy_spec(&kinds, d))
                .collect::<Result<Vec<_>, _>>()?;
            if let Some(file) = &args.deploy_file {
                deployments.extend(crate::deploy_spec::read_deploy_file(&kinds, file)?);
            }
            deployments
        },
    };
    spec.validate().map_err(|e| usage(e.to_string()))?;
    certpilot_app::deploy_kinds()
        .check_spec(&spec)
        .map_err(|e| usage(e.to_string()))?;
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
                format_or_default(format),
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

/// Writes the current certificate and its key into `dir`.
pub(crate) async fn export(
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
    if let Some(holder) = &current.key_holder {
        return Err(usage(format!(
            "{}: its private key is kept by {holder}, which made the CSR; certpilot never had \
             it, so there is no key to export (the certificate is served where the key is)",
            cert.id
        )));
    }
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
    state: CertificateState,
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
        let state = CertificateState::of(c, now, live);
        let deploy_problem = c
            .deployments
            .iter()
            .find(|r| {
                r.state.detail.is_some() && c.spec.deployments.iter().any(|d| d.name == r.name)
            })
            .and_then(|r| r.state.detail.as_ref().map(|d| format!("{}: {d}", r.name)));
        CertificateRow {
            id: c.id.clone(),
            names: c.spec.name_set().join(","),
            state,
            not_after: c.current.as_ref().map(|i| i.not_after),
            next_check: c.renewal.next_check_at,
            last_error: c.renewal.last_error.as_ref().map(|e| e.message.clone()).or(
                if state == CertificateState::NotDeployed {
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
            self.state.as_str().into(),
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
