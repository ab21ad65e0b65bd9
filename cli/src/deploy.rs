//! `certpilot deploy`, `certpilot rollback`, the deploy that follows `certpilot renew`, and
//! `--deploy` specs for `certificates add`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use certpilot_core::model::deploy::{ApiGatewayApi, Deployment, TargetConfig};
use certpilot_core::ports::{
    CertificateStore, Clock, DeployTargets, ScanLimits, SecretStore, SystemClock,
};
use certpilot_core::services::deploy::{DeployReport, DeployService, DeploySettings, TargetReport};
use certpilot_core::services::scan::ScanService;
use certpilot_core::services::verify::VerifyService;
use certpilot_deploy_aws::AwsDeployTargets;
use certpilot_scanner::{Deadlines, TlsProber, TrustStore};
use serde_json::json;

use crate::CliError;
use crate::args::{DeployArgs, DeployVerifyArgs, RollbackArgs};
use crate::certificates::{find, usage};
use crate::exit::Exit;
use crate::output::write_records;
use certpilot_core::services::lease::Leases;

/// The deploy use case wired for the CLI: AWS targets through the default credential chain
/// (loaded only when a certificate has deployments).
pub async fn service(
    certificates: Arc<dyn CertificateStore>,
    secrets: Arc<dyn SecretStore>,
    options: &DeployVerifyArgs,
) -> Result<DeployService, CliError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let scanner = scanner(&options.ca_files, clock.clone())?;
    let targets: Arc<dyn DeployTargets> = AwsDeployTargets::from_environment();
    let leases = Leases::new(
        certificates.clone(),
        clock.clone(),
        crate::unix::lease_owner(),
        DEPLOY_LEASE,
    )
    .with_liveness(Arc::new(crate::unix::LocalProcesses::new()));
    Ok(DeployService::new(
        certificates,
        secrets,
        targets,
        VerifyService::new(scanner),
        clock,
        DeploySettings {
            interval: options.interval,
            max_deadline: options.max_deadline,
        },
    )
    .with_leases(leases))
}

/// How long a deploy's lease lasts unless extended (it is, every third, while it runs).
const DEPLOY_LEASE: Duration = Duration::from_secs(600);

/// The scanner that proves endpoints serve a certificate (`verify`, `deploy`, `renew`):
/// the platform's roots plus `ca_files`.
pub fn scanner(
    ca_files: &[std::path::PathBuf],
    clock: Arc<dyn Clock>,
) -> Result<ScanService, CliError> {
    let mut trust = TrustStore::mozilla();
    for path in ca_files {
        trust.add_pem_file(path)?;
    }
    Ok(ScanService::new(
        Arc::new(TlsProber::new(trust, Deadlines::default())),
        clock,
        ScanLimits {
            concurrency: 64,
            target_timeout: Duration::from_secs(15),
        },
    ))
}

/// Runs `certpilot deploy ID`: exit 2 unless every deployment serves the certificate.
pub async fn deploy(
    certificates: Arc<dyn CertificateStore>,
    secrets: Arc<dyn SecretStore>,
    args: DeployArgs,
) -> Result<ExitCode, CliError> {
    let cert = find(certificates.as_ref(), &args.id).await?;
    if cert.spec.deployments.is_empty() {
        return Err(usage(format!(
            "{} has no deployments; add it again with --deploy KIND:name=…",
            cert.id
        )));
    }
    let service = service(certificates, secrets, &args.verify).await?;
    let report = service
        .deploy(&cert.id, None, args.force)
        .await
        .map_err(CliError::Deploy)?;
    report_deploys(std::slice::from_ref(&report), args.format).map(ExitCode::from)
}

/// Writes one row per deployment; exit 2 when any is not verified.
pub fn report_deploys(
    reports: &[DeployReport],
    format: Option<crate::args::Format>,
) -> Result<Exit, CliError> {
    let mut bad = 0;
    let rows: Vec<(Vec<String>, serde_json::Value)> = reports
        .iter()
        .flat_map(|r| {
            r.targets.iter().map(move |t| {
                let mut json = serde_json::to_value(t).unwrap_or_default();
                if let Some(o) = json.as_object_mut() {
                    o.insert("id".into(), json!(r.id));
                    o.insert("fingerprint".into(), json!(r.fingerprint));
                }
                (row(&r.id, t), json)
            })
        })
        .collect();
    for r in reports {
        bad += r.targets.iter().filter(|t| !t.is_verified()).count();
    }
    write_records(
        crate::format_or_default(format),
        &["id", "deployment", "kind", "status", "detail"],
        rows.into_iter(),
    )?;
    if bad > 0 {
        eprintln!("certpilot: {bad} deployment(s) do not serve the new certificate");
        return Ok(Exit::Attention);
    }
    Ok(Exit::Done)
}

fn row(id: &str, t: &TargetReport) -> Vec<String> {
    let detail = match (&t.detail, t.unchanged) {
        (Some(d), _) => d.clone(),
        (None, true) => "already serving it".to_owned(),
        (None, false) => format!("{} endpoint address(es) serve it", t.checks.len()),
    };
    vec![
        id.to_owned(),
        t.name.clone(),
        t.kind.clone(),
        t.status.as_str().to_owned(),
        detail,
    ]
}

/// Runs `certpilot rollback ID`.
pub async fn rollback(
    certificates: Arc<dyn CertificateStore>,
    secrets: Arc<dyn SecretStore>,
    args: RollbackArgs,
) -> Result<ExitCode, CliError> {
    let cert = find(certificates.as_ref(), &args.id).await?;
    if cert.spec.deployments.is_empty() {
        return Err(usage(format!(
            "{} has no deployments: nothing to roll back (`certpilot certificates show {}` \
             lists them; add them with `certificates add … --deploy`)",
            cert.id, cert.id
        )));
    }
    let options = DeployVerifyArgs {
        interval: Duration::from_secs(2),
        max_deadline: None,
        ca_files: Vec::new(),
    };
    let service = service(certificates, secrets, &options).await?;
    let targets = service
        .roll_back(&cert.id, args.deployment.as_deref())
        .await
        .map_err(CliError::Deploy)?;
    let failed = targets
        .iter()
        .filter(|t| t.rolled_back != Some(true))
        .count();
    write_records(
        crate::format_or_default(args.format),
        &["id", "deployment", "kind", "status", "detail"],
        targets.iter().map(|t| {
            let mut json = serde_json::to_value(t).unwrap_or_default();
            if let Some(o) = json.as_object_mut() {
                o.insert("id".into(), json!(cert.id));
            }
            let mut r = row(&cert.id, t);
            if t.detail.is_none() {
                r[4] = "the previous certificate is back".into();
            }
            (r, json)
        }),
    )?;
    if failed > 0 {
        return Ok(Exit::Attention.into());
    }
    Ok(ExitCode::SUCCESS)
}

/// Parses a `--deploy` spec: `KIND:key=value,…` where KIND is `acm-import`,
/// `elbv2-listener`, `cloudfront` or `api-gateway`. Keys: `name` (default: the kind),
/// `region`, `listener-arn`, `sni`, `distribution-id`, `domain-name`, `api` (`rest`|`http`),
/// `certificate-arn`, `role-arn`, `endpoint` (repeatable), `verify-deadline` (e.g. `20m`).
pub fn parse_deploy_spec(spec: &str) -> Result<Deployment, CliError> {
    let bad = |reason: String| usage(format!("--deploy {spec:?}: {reason}"));
    let (kind, rest) = spec.split_once(':').ok_or_else(|| {
        bad("expected KIND:key=value,… (e.g. elbv2-listener:listener-arn=arn:…)".into())
    })?;
    let mut values: Vec<(String, String)> = Vec::new();
    for pair in rest.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| bad(format!("{pair:?} is not key=value")))?;
        let k = k.trim();
        // Only endpoints repeat; a second value for anything else is a mistake, not an
        // override.
        if k != "endpoint" && values.iter().any(|(seen, _)| seen == k) {
            return Err(bad(format!(
                "{k} is given twice; give each setting once (only endpoint repeats)"
            )));
        }
        values.push((k.to_owned(), v.trim().to_owned()));
    }
    let take = |key: &str| {
        values
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let need = |key: &str| take(key).ok_or_else(|| bad(format!("{kind} needs {key}=…")));
    let known: &[&str] = match kind {
        "acm-import" => &["region"],
        "elbv2-listener" => &["listener-arn", "sni"],
        "cloudfront" => &["distribution-id"],
        "api-gateway" => &["domain-name", "region", "api"],
        other => {
            return Err(bad(format!(
                "unknown kind {other:?} (expected acm-import, elbv2-listener, cloudfront or api-gateway)"
            )));
        }
    };
    let common = [
        "name",
        "certificate-arn",
        "role-arn",
        "endpoint",
        "verify-deadline",
    ];
    if let Some((k, _)) = values
        .iter()
        .find(|(k, _)| !known.contains(&k.as_str()) && !common.contains(&k.as_str()))
    {
        return Err(bad(format!("{kind} has no setting {k:?}")));
    }
    let target = match kind {
        "acm-import" => TargetConfig::AcmImport {
            region: need("region")?,
        },
        "elbv2-listener" => TargetConfig::Elbv2Listener {
            listener_arn: need("listener-arn")?,
            sni: match take("sni").as_deref() {
                None | Some("false") => false,
                Some("true") => true,
                Some(other) => return Err(bad(format!("sni={other}: expected true or false"))),
            },
        },
        "cloudfront" => TargetConfig::Cloudfront {
            distribution_id: need("distribution-id")?,
        },
        _ => TargetConfig::ApiGateway {
            domain_name: need("domain-name")?,
            region: need("region")?,
            api: match take("api").as_deref() {
                None | Some("rest") => ApiGatewayApi::Rest,
                Some("http") => ApiGatewayApi::Http,
                Some(other) => return Err(bad(format!("api={other}: expected rest or http"))),
            },
        },
    };
    let endpoints = values
        .iter()
        .filter(|(k, _)| k == "endpoint")
        .map(|(_, v)| crate::parse_target(v))
        .collect::<Result<Vec<_>, _>>()?;
    let verify_deadline_secs = match take("verify-deadline") {
        Some(text) => Some(
            crate::args::parse_duration(&text)
                .map_err(|e| bad(format!("verify-deadline={text}: {e}")))?
                .as_secs(),
        ),
        None => None,
    };
    Ok(Deployment {
        name: take("name").unwrap_or_else(|| kind.to_owned()),
        target,
        certificate_arn: take("certificate-arn"),
        role_arn: take("role-arn"),
        endpoints,
        verify_deadline_secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deploy_specs_read_like_the_settings_they_set() {
        let d = parse_deploy_spec(
            "elbv2-listener:name=alb,listener-arn=arn:aws:elasticloadbalancing:eu-west-1:1:listener/app/shop/1/2,sni=true,endpoint=shop.example.com:443,endpoint=www.example.com,verify-deadline=3m",
        )
        .unwrap();
        assert_eq!(d.name, "alb");
        assert_eq!(
            d.target,
            TargetConfig::Elbv2Listener {
                listener_arn: "arn:aws:elasticloadbalancing:eu-west-1:1:listener/app/shop/1/2"
                    .into(),
                sni: true
            }
        );
        assert_eq!(d.endpoints.len(), 2);
        assert_eq!(d.verify_deadline_secs, Some(180));

        let err = parse_deploy_spec("cloudfront:distribution=E1")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cloudfront has no setting \"distribution\""),
            "{err}"
        );
        let err = parse_deploy_spec("fastly:service=1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown kind \"fastly\""), "{err}");
        let err = parse_deploy_spec("api-gateway:domain-name=api.example.com")
            .unwrap_err()
            .to_string();
        assert!(err.contains("api-gateway needs region="), "{err}");
    }

    mod properties {
        use proptest::prelude::*;

        use super::parse_deploy_spec;

        /// Specs a user could type: real kinds and keys in any order and number, and noise.
        fn spec() -> impl Strategy<Value = String> {
            let kind = prop_oneof![
                Just("acm-import".to_owned()),
                Just("elbv2-listener".to_owned()),
                Just("cloudfront".to_owned()),
                Just("api-gateway".to_owned()),
                "[a-z-]{0,12}",
            ];
            let key = prop_oneof![
                Just("name".to_owned()),
                Just("region".to_owned()),
                Just("listener-arn".to_owned()),
                Just("sni".to_owned()),
                Just("distribution-id".to_owned()),
                Just("domain-name".to_owned()),
                Just("api".to_owned()),
                Just("certificate-arn".to_owned()),
                Just("role-arn".to_owned()),
                Just("endpoint".to_owned()),
                Just("verify-deadline".to_owned()),
                "[a-z-]{0,8}",
            ];
            let value = prop_oneof![
                "[ -~]{0,24}",
                Just("true".to_owned()),
                Just("3m".to_owned()),
                Just("http".to_owned())
            ];
            let pair = (key, value).prop_map(|(k, v)| format!("{k}={v}"));
            prop_oneof![
                (kind, prop::collection::vec(pair, 0..6))
                    .prop_map(|(k, pairs)| format!("{k}:{}", pairs.join(","))),
                any::<String>(),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: 1024,
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            #[test]
            fn deploy_specs_parse_or_name_the_spec(text in spec()) {
                match parse_deploy_spec(&text) {
                    Ok(d) => prop_assert!(!d.name.is_empty()),
                    Err(e) => {
                        let message = e.to_string();
                        prop_assert!(
                            message.contains(&format!("--deploy {text:?}"))
                                || message.starts_with("target "),
                            "{message}"
                        );
                    }
                }
            }
        }
    }
}
