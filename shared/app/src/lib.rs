//! certpilot's composition root: the one place that builds adapters and wires them into the
//! core services. The Lambda functions and the CLI ask it for what they need instead of
//! wiring it themselves.
//!
//! - [`App::local`] (feature `local`): SQLite and 0600 files, the laptop and small-estate
//!   setup. [`App::aws`] (feature `aws`): DynamoDB and Secrets Manager, with the standard
//!   AWS configuration loaded once.
//! - Each adapter family is a cargo feature (`local`, `aws`, `acme`, `scanner`,
//!   `deploy-aws`), so a binary links only what it uses: the scan function has no ACME
//!   client, the renew function no TLS scanner.
//! - AWS settings are loaded lazily where a local run may never need them, so a laptop
//!   without AWS never probes the instance metadata service.

use std::sync::Arc;
use std::time::Duration;

use certpilot_core::policy::findings::FindingsPolicy;
use certpilot_core::ports::{
    AuditLog, CertificateStore, ChannelStore, Clock, DeployTargets, FindingStore, IdempotencyStore,
    IssuedSink, Issuer, RequestStore, SecretStore, Store, SystemClock, WorkQueue,
};
use certpilot_core::services::deploy::{DeployService, DeploySettings};
use certpilot_core::services::lease::Leases;
use certpilot_core::services::renew::{RenewService, RenewSettings};
use certpilot_core::services::scan::ScanService;
use certpilot_core::services::scheduled::{ScheduleSettings, ScheduledScan};
use certpilot_core::services::verify::VerifyService;

#[cfg(feature = "acme")]
pub use certpilot_acme::AcmeSettings;

/// How long a deploy's lease lasts unless extended (every third, while it runs).
pub const DEPLOY_LEASE: Duration = Duration::from_secs(600);

/// Everything certpilot is built from, wired once.
#[derive(Clone)]
pub struct App {
    clock: Arc<dyn Clock>,
    store: Arc<dyn Store>,
    certificates: Arc<dyn CertificateStore>,
    findings: Arc<dyn FindingStore>,
    channels: Arc<dyn ChannelStore>,
    requests: Arc<dyn RequestStore>,
    audit: Arc<dyn AuditLog>,
    idempotency: Arc<dyn IdempotencyStore>,
    secrets: Arc<dyn SecretStore>,
    findings_policy: FindingsPolicy,
    addresses: certpilot_core::policy::address::AddressPolicy,
    extra_channels: Vec<certpilot_core::model::channel::Channel>,
    #[cfg(feature = "aws")]
    aws: Arc<tokio::sync::OnceCell<aws_config::SdkConfig>>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").finish_non_exhaustive()
    }
}

impl App {
    /// An app over `store` (the inventory, the certificates, the findings and what the
    /// request API keeps) and `secrets`.
    pub fn new<S>(store: Arc<S>, secrets: Arc<dyn SecretStore>) -> Self
    where
        S: Store
            + CertificateStore
            + FindingStore
            + ChannelStore
            + RequestStore
            + AuditLog
            + IdempotencyStore
            + 'static,
    {
        App {
            clock: Arc::new(SystemClock),
            store: store.clone(),
            certificates: store.clone(),
            findings: store.clone(),
            channels: store.clone(),
            requests: store.clone(),
            audit: store.clone(),
            idempotency: store,
            secrets,
            findings_policy: FindingsPolicy::default(),
            addresses: Default::default(),
            extra_channels: Vec::new(),
            #[cfg(feature = "aws")]
            aws: Arc::default(),
        }
    }

    /// The same app judging findings by `policy` (thresholds, severities, the scan interval).
    pub fn with_findings_policy(mut self, policy: FindingsPolicy) -> Self {
        self.findings_policy = policy;
        self
    }

    /// The same app sending findings to `channels` too, beside the stored ones: the
    /// deployment's own (the functions' alerts topic and event bus, from their settings).
    pub fn with_channels(mut self, channels: Vec<certpilot_core::model::channel::Channel>) -> Self {
        self.extra_channels = channels;
        self
    }

    /// The same app holding what was registered through the API to `addresses` at every
    /// scan and verification (networks the operator allows besides public addresses).
    pub fn with_address_policy(
        mut self,
        addresses: certpilot_core::policy::address::AddressPolicy,
    ) -> Self {
        self.addresses = addresses;
        self
    }

    /// The address policy.
    pub fn address_policy(&self) -> certpilot_core::policy::address::AddressPolicy {
        self.addresses.clone()
    }

    /// The same app reading time from `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The inventory store.
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// The certificate store.
    pub fn certificates(&self) -> Arc<dyn CertificateStore> {
        self.certificates.clone()
    }

    /// The findings store.
    pub fn findings(&self) -> Arc<dyn FindingStore> {
        self.findings.clone()
    }

    /// Where channels are configured.
    pub fn channels(&self) -> Arc<dyn ChannelStore> {
        self.channels.clone()
    }

    /// Requests waiting for approval.
    pub fn requests(&self) -> Arc<dyn RequestStore> {
        self.requests.clone()
    }

    /// The audit trail of the request API.
    pub fn audit(&self) -> Arc<dyn AuditLog> {
        self.audit.clone()
    }

    /// The request API's idempotency keys.
    pub fn idempotency(&self) -> Arc<dyn IdempotencyStore> {
        self.idempotency.clone()
    }

    /// A notifier for each configured channel, its secret read from the secret store. A
    /// channel whose secret is gone refuses its messages with the reason (they stay
    /// pending) rather than vanishing.
    #[cfg(feature = "notify")]
    pub async fn notifiers(
        &self,
    ) -> Result<Vec<Arc<dyn certpilot_core::ports::Notifier>>, certpilot_core::ports::StoreError>
    {
        let mut channels = self.channels.channels().await?;
        // The deployment's own channels (the functions' alerts topic and event bus) first;
        // a stored channel of the same name gives way to them.
        channels.retain(|c| !self.extra_channels.iter().any(|e| e.name == c.name));
        channels.splice(0..0, self.extra_channels.iter().cloned());
        let aws = match channels.iter().any(|c| !c.kind.needs_secret()) {
            true => Some(self.aws_config().await),
            false => None,
        };
        Ok(certpilot_notify::notifiers(&channels, self.secrets.as_ref(), aws).await)
    }

    /// Records the findings of every managed certificate, and whether the scheduled scan
    /// fell silent (after a renew or deploy run in a function; the CLI does the same per
    /// run): how many findings changed. Recorded, not sent: the channels' senders send what
    /// is pending.
    pub async fn record_certificate_findings(
        &self,
    ) -> Result<usize, certpilot_core::ports::StoreError> {
        let certificates = self.certificates.certificates().await?;
        let service = self.findings_service();
        let mut changed = service.record_certificates(&certificates).await?.len();
        changed += self.record_schedule_findings().await?;
        Ok(changed)
    }

    /// Records whether the scheduled scan fell silent (`scan_stale`): how many findings
    /// changed.
    pub async fn record_schedule_findings(
        &self,
    ) -> Result<usize, certpilot_core::ports::StoreError> {
        let last_sweep = self.store.last_tick().await?;
        Ok(self
            .findings_service()
            .record_schedule(last_sweep)
            .await?
            .len())
    }

    /// [`App::record_certificate_findings`] at the end of a function's invocation: a failure
    /// does not undo the run, it is logged, and the next run records them.
    pub async fn record_certificate_findings_logged(&self) {
        match self.record_certificate_findings().await {
            Ok(changed) => tracing::info!(findings_changed = changed, "findings recorded"),
            Err(e) => tracing::error!(error = %e, "recording findings"),
        }
    }

    /// The findings use case, judged by the app's policy.
    pub fn findings_service(&self) -> certpilot_core::services::findings::FindingsService {
        certpilot_core::services::findings::FindingsService::new(
            self.findings.clone(),
            self.clock.clone(),
            self.findings_policy.clone(),
        )
    }

    /// The secret store.
    pub fn secrets(&self) -> Arc<dyn SecretStore> {
        self.secrets.clone()
    }

    /// The clock every service reads.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// The renew use case with `issuer`, telling `sink` about each issuance; `owner` names
    /// this worker in leases.
    pub fn renew_service(
        &self,
        issuer: Arc<dyn Issuer>,
        sink: Option<Arc<dyn IssuedSink>>,
        owner: impl Into<String>,
        settings: RenewSettings,
    ) -> RenewService {
        let service = RenewService::new(
            self.certificates.clone(),
            self.secrets.clone(),
            issuer,
            sink,
            self.clock.clone(),
            owner,
            settings,
        );
        // Targets that keep the key (Akamai) hand the renewal their CSRs.
        #[cfg(feature = "deploy-aws")]
        let service = service.with_targets(self.deploy_targets());
        service
    }

    /// Leases on certificates owned by `owner`, lasting `lease` unless extended.
    pub fn leases(&self, owner: impl Into<String>, lease: Duration) -> Leases {
        Leases::new(self.certificates.clone(), self.clock.clone(), owner, lease)
    }

    /// The deploy use case over `targets`, proving each deploy through `verifier`, holding
    /// `leases` while it works on a certificate.
    pub fn deploy_service(
        &self,
        targets: Arc<DeployTargets>,
        verifier: VerifyService,
        leases: Leases,
        settings: DeploySettings,
    ) -> DeployService {
        DeployService::new(
            self.certificates.clone(),
            self.secrets.clone(),
            targets,
            verifier,
            self.clock.clone(),
            settings,
        )
        .with_leases(leases)
    }

    /// The scheduled-scan use case; without a queue every due endpoint is scanned inline.
    pub fn scheduled_scan(
        &self,
        scanner: ScanService,
        queue: Option<Arc<dyn WorkQueue>>,
        settings: ScheduleSettings,
        target_timeout: Duration,
    ) -> ScheduledScan {
        ScheduledScan::new(
            self.store.clone(),
            scanner,
            queue,
            self.clock.clone(),
            settings,
            target_timeout,
        )
        .with_findings(
            Arc::new(certpilot_core::services::findings::FindingsService::new(
                self.findings.clone(),
                self.clock.clone(),
                FindingsPolicy {
                    scan_interval: settings.interval,
                    ..self.findings_policy.clone()
                },
            )),
            self.certificates.clone(),
        )
    }
}

#[cfg(feature = "notify")]
impl App {
    /// Sends every pending transition to the channels (the deployment's own and the stored
    /// ones): what each channel took and what it refused (kept pending for the next run).
    pub async fn send_findings(
        &self,
    ) -> Result<certpilot_core::services::findings::NotifyReport, certpilot_core::ports::StoreError>
    {
        let channels = self.notifiers().await?;
        self.findings_service().notify(&channels).await
    }

    /// [`App::send_findings`] at the end of a function's invocation: what was sent and what
    /// was not is logged; a failure stays pending for the next run.
    pub async fn send_findings_logged(&self) {
        match self.send_findings().await {
            Ok(report) => {
                for (key, transition, channel) in &report.sent {
                    tracing::info!(finding = %key, transition = transition.as_str(), %channel, "finding sent");
                }
                for (key, channel, error) in &report.failed {
                    tracing::warn!(finding = %key, %channel, %error, "finding not sent; the next run sends it again");
                }
            }
            Err(e) => tracing::error!(error = %e, "sending findings"),
        }
    }

    /// The deployment's own channels of one kind (`sns`, `eventbridge`).
    fn own_channels(
        &self,
        kind: &str,
    ) -> impl Iterator<Item = &certpilot_core::model::channel::Channel> {
        self.extra_channels
            .iter()
            .filter(move |c| c.kind.as_str() == kind)
    }

    /// Puts outcome events (`Certificate issued`, `Deployment verified`…) on the
    /// deployment's event bus, if it has one. An outcome that cannot be put is logged: the
    /// run's work stands, and its findings tell people what matters.
    pub async fn announce(&self, events: &[certpilot_notify::eventbridge::Event]) {
        use certpilot_core::model::channel::ChannelKind;
        if events.is_empty() {
            return;
        }
        for channel in self.own_channels("eventbridge") {
            let ChannelKind::EventBridge { bus } = &channel.kind else {
                continue;
            };
            let client = aws_sdk_eventbridge::Client::new(self.aws_config().await);
            let what = format!("EventBridge bus {bus}");
            match certpilot_notify::eventbridge::put_events(&client, bus, &what, events).await {
                Ok(()) => tracing::info!(events = events.len(), %bus, "outcomes announced"),
                Err(e) => tracing::error!(error = %e, "announcing outcomes"),
            }
        }
    }

    /// Every owner's digest (open findings, what expires within `days`), published to the
    /// deployment's alerts topic: how many were published.
    pub async fn publish_digests(&self, days: u32) -> Result<usize, String> {
        use certpilot_core::model::channel::ChannelKind;
        let digests = certpilot_core::services::digest::digests(
            self.store.as_ref(),
            self.certificates.as_ref(),
            self.findings.as_ref(),
            self.clock.now(),
            days,
        )
        .await
        .map_err(|e| e.to_string())?;
        let mut published = 0;
        for channel in self.own_channels("sns") {
            let ChannelKind::Sns { topic_arn } = &channel.kind else {
                continue;
            };
            let client = aws_sdk_sns::Client::new(self.aws_config().await);
            let what = format!("SNS {topic_arn}");
            for d in &digests {
                certpilot_notify::sns::publish(
                    &client,
                    topic_arn,
                    &what,
                    certpilot_notify::sns::digest_message(d),
                )
                .await
                .map_err(|e| e.to_string())?;
                published += 1;
            }
        }
        Ok(published)
    }

    /// Estate metrics as CloudWatch EMF lines: days to expiry of every managed certificate
    /// and open findings by severity (what the renew function logs on each run).
    pub async fn estate_emf(&self) -> Result<String, certpilot_core::ports::StoreError> {
        let certificates = self.certificates.certificates().await?;
        let findings = self.findings.active_findings().await?;
        Ok(certpilot_core::services::metrics::emf(
            &certpilot_core::services::metrics::Estate {
                inventory: &[],
                certificates: &certificates,
                findings: &findings,
                now: self.clock.now(),
            },
        ))
    }
}

#[cfg(feature = "local")]
impl App {
    /// The local setup: `store` (SQLite) and a secret store of 0600 files in `secrets_dir`.
    pub fn local(
        store: Arc<certpilot_sqlite::SqliteStore>,
        secrets_dir: std::path::PathBuf,
    ) -> Self {
        App::new(
            store,
            Arc::new(certpilot_files::FileSecretStore::new(secrets_dir)),
        )
    }
}

#[cfg(feature = "scanner")]
impl App {
    /// A scanner trusting `trust`, within `deadlines` per handshake and `limits` per run.
    pub fn scanner(
        &self,
        trust: certpilot_scanner::TrustStore,
        deadlines: certpilot_scanner::Deadlines,
        limits: certpilot_core::ports::ScanLimits,
    ) -> ScanService {
        ScanService::new(
            Arc::new(certpilot_core::services::guard::GuardedProber::new(
                Arc::new(certpilot_scanner::TlsProber::new(trust, deadlines)),
                self.addresses.clone(),
            )),
            self.clock.clone(),
            limits,
        )
    }

    /// A scanner trusting Mozilla's roots, with the default handshake deadlines: what
    /// proves public endpoints.
    pub fn public_scanner(&self, limits: certpilot_core::ports::ScanLimits) -> ScanService {
        self.scanner(
            certpilot_scanner::TrustStore::mozilla(),
            certpilot_scanner::Deadlines::default(),
            limits,
        )
    }
}

#[cfg(feature = "acme")]
impl App {
    /// The ACME issuer: accounts in the secret store, DNS-01 through RFC 2136 (and Route 53
    /// with the `aws` feature), each waiting up to `dns_sync` for records to propagate.
    pub fn acme_issuer(
        &self,
        settings: certpilot_acme::AcmeSettings,
        dns_sync: Duration,
    ) -> certpilot_acme::AcmeIssuer {
        let issuer = certpilot_acme::AcmeIssuer::new(self.secrets.clone(), settings).with_dns(
            "rfc2136",
            Arc::new(certpilot_acme::rfc2136::Rfc2136Dns::new(
                self.secrets.clone(),
                Duration::from_secs(10),
                dns_sync,
            )),
        );
        #[cfg(feature = "aws")]
        let issuer = issuer.with_dns("route53", self.route53(dns_sync));
        issuer
    }
}

#[cfg(feature = "aws")]
impl App {
    /// The AWS setup: the DynamoDB table `table` and, with the `aws-secrets` feature,
    /// Secrets Manager (prefix and KMS key from `CERTPILOT_SECRETS_PREFIX` and
    /// `CERTPILOT_SECRETS_KMS_KEY`), with the standard AWS configuration loaded now. A
    /// binary built without `aws-secrets` (the scan function) links no Secrets Manager
    /// client, and its secret store refuses every call, saying so.
    pub async fn aws(table: &str) -> Self {
        let config = certpilot_aws::config::load().await;
        let store = Arc::new(certpilot_dynamodb::DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&config),
            table,
        ));
        #[cfg(feature = "aws-secrets")]
        let secrets: Arc<dyn SecretStore> =
            Arc::new(certpilot_aws::SecretsManagerStore::from_config(&config));
        #[cfg(not(feature = "aws-secrets"))]
        let secrets: Arc<dyn SecretStore> = Arc::new(NoSecretStore);
        let app = App::new(store, secrets);
        let _ = app.aws.set(config);
        app
    }

    /// A DynamoDB store on `table` (the CLI's `--store dynamodb:TABLE`).
    pub async fn dynamodb(table: &str) -> Arc<certpilot_dynamodb::DynamoStore> {
        let config = certpilot_aws::config::load().await;
        Arc::new(certpilot_dynamodb::DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&config),
            table,
        ))
    }

    /// The AWS configuration: the one loaded by [`App::aws`], else loaded now, once.
    pub async fn aws_config(&self) -> &aws_config::SdkConfig {
        self.aws.get_or_init(certpilot_aws::config::load).await
    }

    /// Route 53 for DNS-01 TXT and ACM validation CNAME records, waiting up to `sync` for
    /// changes to be in sync. Off AWS it loads the AWS configuration on first use only.
    pub fn route53(&self, sync: Duration) -> Arc<certpilot_aws::LazyRoute53Dns> {
        Arc::new(certpilot_aws::LazyRoute53Dns::new(sync))
    }

    /// The SQS work queue at `url` (scheduled scans fan out through it).
    pub async fn work_queue(&self, url: &str) -> Arc<dyn WorkQueue> {
        Arc::new(certpilot_aws::SqsQueue::new(
            aws_sdk_sqs::Client::new(self.aws_config().await),
            url,
        ))
    }

    /// Where the request API hands its work on AWS: renewals to the renew queue at
    /// `renew_url`, rollbacks to the deploy queue at `deploy_url`.
    pub async fn work_sink(
        &self,
        renew_url: &str,
        deploy_url: Option<String>,
    ) -> Arc<dyn certpilot_core::ports::WorkSink> {
        Arc::new(certpilot_aws::SqsWorkSink::new(
            aws_sdk_sqs::Client::new(self.aws_config().await),
            renew_url,
            deploy_url,
        ))
    }

    /// The SQS deploy queue at `url`, told about each issuance.
    pub async fn deploy_queue(&self, url: &str) -> Arc<dyn IssuedSink> {
        Arc::new(certpilot_aws::SqsIssuedSink::new(
            aws_sdk_sqs::Client::new(self.aws_config().await),
            url,
        ))
    }
}

#[cfg(feature = "deploy-aws")]
impl App {
    /// The registry of deploy target kinds: one line per kind. AWS targets are reached with
    /// the app's AWS configuration, loaded when the first target is built.
    pub fn deploy_targets(&self) -> Arc<DeployTargets> {
        let aws = match self.aws.get() {
            Some(config) => certpilot_deploy_aws::AwsDeployTargets::new(config.clone()),
            None => certpilot_deploy_aws::AwsDeployTargets::from_environment(),
        };
        Arc::new(registry(aws, self.secrets.clone()))
    }

    /// ACM as an issuer (certificates whose spec names ACM), announcing to `sink`.
    pub fn acm_service(
        &self,
        sink: Option<Arc<dyn IssuedSink>>,
        dns_sync: Duration,
    ) -> certpilot_core::services::acm::AcmService {
        let acm = match self.aws.get() {
            Some(config) => certpilot_deploy_aws::acm::AcmIssuer::new(config.clone()),
            None => certpilot_deploy_aws::acm::AcmIssuer::from_environment(),
        };
        certpilot_core::services::acm::AcmService::new(
            self.certificates.clone(),
            Arc::new(acm),
            self.route53(dns_sync),
            sink,
            self.clock.clone(),
        )
    }
}

/// The secret store of a binary built without one: every call fails, naming the cause.
#[cfg(feature = "aws")]
#[cfg_attr(
    not(any(feature = "deploy-aws", not(feature = "aws-secrets"))),
    allow(dead_code)
)]
struct NoSecretStore;

#[cfg(feature = "aws")]
impl NoSecretStore {
    fn refuse() -> certpilot_core::ports::SecretError {
        certpilot_core::ports::SecretError::Backend(
            "no secret store here (a binary built without certpilot-app's `aws-secrets`, or a \
             registry built without one)"
                .into(),
        )
    }
}

#[cfg(feature = "aws")]
#[async_trait::async_trait]
impl SecretStore for NoSecretStore {
    async fn delete(&self, _: &str) -> Result<bool, certpilot_core::ports::SecretError> {
        Err(Self::refuse())
    }

    async fn put_pending(
        &self,
        _: &str,
        _: &certpilot_core::ports::SecretValue,
    ) -> Result<String, certpilot_core::ports::SecretError> {
        Err(Self::refuse())
    }

    async fn promote(&self, _: &str, _: &str) -> Result<(), certpilot_core::ports::SecretError> {
        Err(Self::refuse())
    }

    async fn get(
        &self,
        _: &str,
        _: &certpilot_core::ports::SecretVersion,
    ) -> Result<
        Option<(String, certpilot_core::ports::SecretValue)>,
        certpilot_core::ports::SecretError,
    > {
        Err(Self::refuse())
    }
}

/// The AWS configurations EKS clusters are reached with: the AWS kinds' own.
#[cfg(feature = "deploy-k8s")]
struct EksConfigs(Arc<certpilot_deploy_aws::AwsDeployTargets>);

#[cfg(feature = "deploy-k8s")]
#[async_trait::async_trait]
impl certpilot_deploy_k8s::eks::AwsConfigs for EksConfigs {
    async fn config(&self, role: Option<&str>, region: Option<&str>) -> aws_config::SdkConfig {
        self.0.config_in(role, region).await
    }
}

/// The registry of deploy target kinds: one line per kind.
#[cfg(feature = "deploy-aws")]
fn registry(
    aws: Arc<certpilot_deploy_aws::AwsDeployTargets>,
    #[cfg_attr(not(feature = "deploy-cdn"), allow(unused_variables))] secrets: Arc<dyn SecretStore>,
) -> DeployTargets {
    use certpilot_deploy_aws::{acm, apigateway, cloudfront, elbv2};
    let mut targets = DeployTargets::new();
    for (descriptor, factory) in [
        aws.kind(acm::Import),
        aws.kind(elbv2::Kind),
        aws.kind(cloudfront::Kind),
        aws.kind(apigateway::Kind),
        certpilot_deploy_aws::ssm::Kind::entry(aws.clone()),
        #[cfg(feature = "deploy-local")]
        certpilot_deploy_local::files::Kind::entry(),
        #[cfg(feature = "deploy-local")]
        certpilot_deploy_local::haproxy::Kind::entry(),
        #[cfg(feature = "deploy-cdn")]
        certpilot_deploy_cdn::akamai::Kind::entry(secrets.clone()),
        #[cfg(feature = "deploy-cdn")]
        certpilot_deploy_cdn::cloudflare::Kind::entry(secrets.clone()),
        #[cfg(feature = "deploy-cdn")]
        certpilot_deploy_cdn::fastly::Kind::entry(secrets.clone()),
        #[cfg(feature = "deploy-k8s")]
        certpilot_deploy_k8s::secret::Kind::entry(
            secrets.clone(),
            Arc::new(EksConfigs(aws.clone())),
        ),
        #[cfg(feature = "deploy-cdn")]
        certpilot_deploy_cdn::netscaler::Kind::entry(secrets.clone()),
        #[cfg(feature = "deploy-cdn")]
        certpilot_deploy_cdn::webhook::Kind::entry(secrets.clone()),
    ] {
        targets.register(descriptor, factory);
    }
    targets
}

#[cfg(feature = "deploy-aws")]
impl App {
    /// The registry of deploy target kinds reaching AWS with `config` (tests and tools that
    /// hold an SDK configuration of their own).
    pub fn registry_with(config: aws_config::SdkConfig) -> Arc<DeployTargets> {
        Self::registry_with_secrets(config, Arc::new(NoSecretStore))
    }

    /// The same, reading vendor credentials from `secrets`.
    pub fn registry_with_secrets(
        config: aws_config::SdkConfig,
        secrets: Arc<dyn SecretStore>,
    ) -> Arc<DeployTargets> {
        Arc::new(registry(
            certpilot_deploy_aws::AwsDeployTargets::new(config),
            secrets,
        ))
    }
}

/// The descriptors of every deploy target kind certpilot knows (for parsing and checking
/// deployments, help and docs; nothing is connected, no client is built or linked).
#[cfg(feature = "deploy-kinds")]
pub fn deploy_kinds() -> certpilot_core::model::deploy_kind::DeployKinds {
    use certpilot_deploy_aws::{AwsKind, acm, apigateway, cloudfront, elbv2};
    certpilot_core::model::deploy_kind::DeployKinds::new(vec![
        acm::Import.descriptor(),
        elbv2::Kind.descriptor(),
        cloudfront::Kind.descriptor(),
        apigateway::Kind.descriptor(),
        certpilot_deploy_aws::ssm::Kind::descriptor(),
        certpilot_deploy_local::files::Kind::descriptor(),
        certpilot_deploy_local::haproxy::Kind::descriptor(),
        certpilot_deploy_cdn::akamai::Kind::descriptor(),
        certpilot_deploy_cdn::cloudflare::Kind::descriptor(),
        certpilot_deploy_cdn::fastly::Kind::descriptor(),
        certpilot_deploy_k8s::secret::Kind::descriptor(),
        certpilot_deploy_cdn::netscaler::Kind::descriptor(),
        certpilot_deploy_cdn::webhook::Kind::descriptor(),
    ])
}
