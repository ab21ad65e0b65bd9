//! certpilot's AWS deploy targets.
//!
//! Every target here but [`ssm`] (files on EC2 instances through SSM Run Command) serves a
//! certificate from ACM, so each has the same two halves: an
//! [`acm::Acm`] import (re-imported over the same ARN on renewal, which keeps every
//! association; a new ARN when the key type changes) and a [`Binder`] that points the target
//! at that ARN. Each deployment imports into its own ACM certificate: rolling one deployment
//! back then never changes what another one serves.
//!
//! Each kind is one module with the same shape: its descriptor (settings, key types,
//! permissions, deadline), its region, and its binder — an [`AwsKind`]. The composition root
//! registers each with [`AwsDeployTargets::kind`]. Every kind also takes `certificate-arn`
//! (adopt an imported certificate: re-import over it instead of importing a new one) and
//! `role-arn` (make the calls with that role's credentials through `sts:AssumeRole`, for
//! targets in other accounts).

pub mod acm;
pub mod apigateway;
pub mod cloudfront;
pub mod elbv2;
pub mod ssm;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_config::SdkConfig;
use certpilot_core::model::certificate::KeyType;
use certpilot_core::model::certificate::SpecError;
use certpilot_core::model::deploy::{Settings, Unit};
use certpilot_core::model::deploy_kind::{KeyDelivery, KindDescriptor, RunsIn, Setting};
use certpilot_core::ports::{
    Bound, DeployError, DeployRequest, DeployTarget, Deployed, TargetFactory,
};
use tokio::sync::Mutex;

use crate::acm::Acm;

/// Points a target at an ACM certificate.
#[async_trait]
pub trait Binder: Send + Sync {
    /// The ACM certificates bound now, the default one first.
    async fn bound(&self) -> Result<Vec<String>, DeployError>;

    /// Binds `arn`. `managed` is the ARN certpilot bound here last time (an SNI list may hold
    /// others).
    async fn bind(&self, arn: &str, managed: Option<&str>) -> Result<Bind, DeployError>;

    /// Drops `replaced` once `arn` is served (SNI lists; nothing where a bind replaces).
    async fn release(&self, _arn: &str, _replaced: &str) -> Result<(), DeployError> {
        Ok(())
    }

    /// Undoes [`Binder::bind`]: `arn` is removed where it was `added`, `replaced` is bound
    /// again where it was replaced (by default, binding it the way `arn` was).
    async fn restore(&self, _arn: &str, bind: &Bind) -> Result<(), DeployError> {
        match &bind.replaced {
            Some(replaced) => self.bind(replaced, None).await.map(|_| ()),
            None => Ok(()),
        }
    }
}

/// What [`Binder::bind`] changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bind {
    /// The certificate bound before, when a different one was.
    pub replaced: Option<String>,
    /// Whether `arn` was added beside the others (an SNI list).
    pub added: bool,
}

/// One kind of AWS deploy target: what it is, where its ACM certificate lives, and how it
/// binds one.
pub trait AwsKind: Send + Sync + 'static {
    /// The kind's descriptor (build it with [`descriptor`]).
    fn descriptor(&self) -> KindDescriptor;

    /// The region the unit's ACM certificate must be in.
    fn region(&self, unit: &Unit) -> Result<String, DeployError>;

    /// The binder of the unit, with clients made from `config`.
    fn binder(&self, config: &SdkConfig, unit: &Unit) -> Result<Box<dyn Binder>, DeployError>;
}

/// The ACM actions every AWS kind needs.
pub const ACM_PERMISSIONS: [&str; 3] = [
    "acm:ImportCertificate",
    "acm:GetCertificate",
    "acm:AddTagsToCertificate",
];

/// An AWS kind's descriptor: the kind's own settings, then `certificate-arn` and `role-arn`;
/// the ACM actions, then the kind's own.
pub fn descriptor(
    kind: &'static str,
    summary: &'static str,
    mut settings: Vec<Setting>,
    verify_deadline: std::time::Duration,
    permissions: &[&'static str],
    key_types: &[KeyType],
    check: certpilot_core::model::deploy_kind::Check,
) -> KindDescriptor {
    settings.push(Setting::optional(
        "certificate-arn",
        "an imported ACM certificate to re-import over instead of importing a new one (adopts it)",
    ));
    settings.push(Setting::optional(
        "role-arn",
        "an IAM role to assume for this target (another account)",
    ));
    KindDescriptor {
        kind,
        family: "aws",
        summary,
        settings,
        default_verify_deadline: verify_deadline,
        permissions: ACM_PERMISSIONS.iter().chain(permissions).copied().collect(),
        key_types: key_types.to_vec(),
        key_delivery: KeyDelivery::InRequest,
        runs_in: RunsIn::Anywhere,
        binds: kind != "acm-import",
        can_roll_back: true,
        serves_only_with: None,
        check: Some(check),
    }
}

/// The checks every AWS kind makes, given the region its certificate lives in: the region's
/// name, an adopted certificate in that region, a role's ARN.
pub fn check_common(settings: &Settings, region: &str) -> Result<(), (String, String)> {
    if region.is_empty()
        || !region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err((region.to_owned(), "not an AWS region name".into()));
    }
    let text = |k: &str| settings.get(k).and_then(|v| v.as_str());
    if let Some(arn) = text("certificate-arn")
        && (arn_region(arn).ok().as_deref() != Some(region) || !arn.contains(":certificate/"))
    {
        return Err((
            arn.to_owned(),
            format!("not an ACM certificate ARN in {region}"),
        ));
    }
    if let Some(role) = text("role-arn")
        && (!role.starts_with("arn:") || !role.contains(":role/"))
    {
        return Err((
            role.to_owned(),
            "a role is an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)".into(),
        ));
    }
    Ok(())
}

/// The region of an ARN (`arn:partition:service:region:account:resource`).
pub fn arn_region(arn: &str) -> Result<String, SpecError> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", _, _, region, _, resource] if !region.is_empty() && !resource.is_empty() => {
            Ok((*region).to_owned())
        }
        _ => Err(SpecError {
            input: arn.to_owned(),
            reason: "not an ARN with a region (arn:aws:service:region:account:resource)".into(),
        }),
    }
}

/// A required text setting of `unit`, or a configuration error naming it.
pub(crate) fn need<'a>(unit: &'a Unit, key: &str) -> Result<&'a str, DeployError> {
    unit.text(key)
        .ok_or_else(|| DeployError::Config(format!("{}: {} needs {key}", unit.name, unit.kind)))
}

/// An ACM import plus a binder: the shape of every AWS target.
pub struct AcmBacked {
    acm: Acm,
    binder: Box<dyn Binder>,
    /// An imported certificate to re-import over (adopted by the deployment).
    adopt: Option<String>,
    /// The target's region.
    region: String,
}

impl AcmBacked {
    /// The ARN to import into: the one recorded (or adopted) unless the key type changed,
    /// which ACM cannot re-import over.
    fn reuse(&self, request: &DeployRequest<'_>) -> Option<String> {
        let recorded = request.record.and_then(|r| {
            let same_key = r
                .state
                .key_type
                .is_none_or(|k| k == request.certificate.key_type);
            r.state.handle.clone().filter(|_| same_key)
        });
        recorded.or_else(|| self.adopt.clone())
    }
}

#[async_trait]
impl DeployTarget for AcmBacked {
    async fn bound(&self, recorded: Option<&str>) -> Result<Bound, DeployError> {
        let mut certificates = self.binder.bound().await?;
        if certificates.is_empty() {
            certificates.extend(recorded.map(str::to_owned).or_else(|| self.adopt.clone()));
        }
        let mut fingerprints = Vec::new();
        for arn in &certificates {
            fingerprints.extend(self.acm.fingerprint(arn).await?);
        }
        Ok(Bound {
            certificates,
            fingerprints,
        })
    }

    async fn deploy(&self, request: DeployRequest<'_>) -> Result<Deployed, DeployError> {
        let managed = request.record.and_then(|r| r.state.handle.clone());
        let arn = match &request.certificate.acm_arn {
            // Issued by ACM: bound as it is, which only works in its own region.
            Some(arn) => {
                if !arn.contains(&format!(":{}:", self.region)) {
                    return Err(DeployError::Config(format!(
                        "{}: ACM issued {arn}, but this target needs a certificate in {}; request it there (--acm-region {})",
                        request.id, self.region, self.region
                    )));
                }
                arn.clone()
            }
            None => {
                self.acm
                    .import(
                        request.id,
                        request.certificate,
                        self.reuse(&request).as_deref(),
                    )
                    .await?
            }
        };
        let bind = self.binder.bind(&arn, managed.as_deref()).await?;
        Ok(Deployed {
            handle: Some(arn),
            replaced: bind.replaced,
            added: bind.added,
            check_after: None,
            prove_first: None,
        })
    }

    async fn finish(&self, deployed: &Deployed) -> Result<(), DeployError> {
        match (&deployed.handle, &deployed.replaced) {
            (Some(arn), Some(replaced)) => self.binder.release(arn, replaced).await,
            _ => Ok(()),
        }
    }

    async fn roll_back(
        &self,
        request: DeployRequest<'_>,
        deployed: Option<&Deployed>,
    ) -> Result<Option<String>, DeployError> {
        let reused = self.reuse(&request);
        if let Some(d) = deployed {
            if let Some(arn) = &d.handle {
                let bind = Bind {
                    replaced: d.replaced.clone(),
                    added: d.added,
                };
                self.binder.restore(arn, &bind).await?;
            }
            if d.handle.is_some() && d.handle != reused {
                // A fresh ARN: nothing else uses it, and the old one was never touched.
                return Ok(None);
            }
        }
        // The ARN in use was re-imported (or may have been): ACM keeps no history, so the
        // previous certificate and key are imported over it again. (An ACM-issued
        // certificate was never imported: only its binding is undone.)
        match (reused, request.previous) {
            (Some(arn), Some(previous)) if previous.acm_arn.is_none() => {
                self.acm.import(request.id, previous, Some(&arn)).await?;
                Ok(None)
            }
            _ => Ok(None),
        }
    }
}

/// Builds targets from deployments, with one SDK configuration per (role, region).
pub struct AwsDeployTargets {
    base: tokio::sync::OnceCell<SdkConfig>,
    configs: Mutex<HashMap<(Option<String>, String), SdkConfig>>,
}

impl AwsDeployTargets {
    /// Targets reached with `base`'s credentials, endpoint and timeouts (roles are assumed
    /// from them).
    pub fn new(base: SdkConfig) -> Arc<Self> {
        Arc::new(AwsDeployTargets {
            base: tokio::sync::OnceCell::new_with(Some(base)),
            configs: Mutex::new(HashMap::new()),
        })
    }

    /// Targets reached with the standard AWS configuration, loaded when the first target
    /// is built: a certificate without AWS deployments never touches it (no instance
    /// metadata lookup on a laptop).
    pub fn from_environment() -> Arc<Self> {
        Arc::new(AwsDeployTargets {
            base: tokio::sync::OnceCell::new(),
            configs: Mutex::new(HashMap::new()),
        })
    }

    async fn base(&self) -> &SdkConfig {
        self.base.get_or_init(certpilot_aws::config::load).await
    }

    /// The configuration for `region`, with `role`'s credentials when given. Assumed-role
    /// credentials are cached and refreshed by the provider.
    pub async fn config(&self, role: Option<&str>, region: &str) -> SdkConfig {
        let key = (role.map(str::to_owned), region.to_owned());
        let mut configs = self.configs.lock().await;
        if let Some(c) = configs.get(&key) {
            return c.clone();
        }
        let base = self.base().await;
        let mut builder = base
            .to_builder()
            .region(aws_config::Region::new(region.to_owned()));
        if let Some(role) = role {
            let provider = aws_config::sts::AssumeRoleProvider::builder(role)
                .session_name("certpilot-deploy")
                .configure(base)
                .build()
                .await;
            builder = builder.credentials_provider(
                aws_sdk_acm::config::SharedCredentialsProvider::new(provider),
            );
        }
        let config = builder.build();
        configs.insert(key, config.clone());
        config
    }
}

impl AwsDeployTargets {
    /// The configuration for `region`, or the standard region when `None`, with `role`'s
    /// credentials when given (for kinds of other families that reach AWS, as
    /// `kubernetes-secret` reaches EKS).
    pub async fn config_in(&self, role: Option<&str>, region: Option<&str>) -> SdkConfig {
        let region = match region {
            Some(r) => r.to_owned(),
            None => match self.base().await.region() {
                Some(r) => r.as_ref().to_owned(),
                // No region anywhere: the first call says so in the SDK's words.
                None => return self.base().await.clone(),
            },
        };
        self.config(role, &region).await
    }

    /// `kind` as a registry entry: its descriptor, and a factory sharing these targets'
    /// configurations.
    pub fn kind(self: &Arc<Self>, kind: impl AwsKind) -> (KindDescriptor, Arc<dyn TargetFactory>) {
        (
            kind.descriptor(),
            Arc::new(AwsFactory {
                targets: self.clone(),
                kind,
            }),
        )
    }
}

/// Builds the targets of one AWS kind.
struct AwsFactory<K> {
    targets: Arc<AwsDeployTargets>,
    kind: K,
}

#[async_trait]
impl<K: AwsKind> TargetFactory for AwsFactory<K> {
    async fn target(&self, unit: &Unit) -> Result<Box<dyn DeployTarget>, DeployError> {
        let region = self.kind.region(unit)?;
        let config = self.targets.config(unit.text("role-arn"), &region).await;
        let acm = Acm::new(aws_sdk_acm::Client::new(&config));
        let binder = self.kind.binder(&config, unit)?;
        Ok(Box::new(AcmBacked {
            acm,
            binder,
            adopt: unit.text("certificate-arn").map(str::to_owned),
            region,
        }))
    }
}

/// A target API error, named by service, operation and resource, and classed: throttling
/// and outages are retryable, refusals are not.
pub(crate) fn refused<E, R>(what: &str, e: &aws_sdk_acm::error::SdkError<E, R>) -> DeployError
where
    E: aws_sdk_acm::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let (code, detail) = certpilot_aws::describe_sdk_error(e);
    let text = format!("{what}: {detail}");
    if certpilot_aws::is_transient(&code) {
        DeployError::Unavailable(text)
    } else {
        DeployError::Target(text)
    }
}
