//! CloudFront distributions: the viewer certificate is switched to the new ACM ARN (always in
//! `us-east-1`) with `UpdateDistribution`, sending back the whole configuration as read with
//! its `If-Match` ETag so that every other setting is kept and a concurrent edit is refused
//! instead of overwritten.
//!
//! Settings: `distribution-id`. IAM: `cloudfront:GetDistributionConfig`,
//! `cloudfront:UpdateDistribution`, plus the ACM import's (in `us-east-1`).

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_cloudfront::Client;
use aws_sdk_cloudfront::types::{DistributionConfig, SslSupportMethod};
use certpilot_core::model::certificate::KeyType;
use certpilot_core::model::deploy::Unit;
use certpilot_core::model::deploy_kind::{KindDescriptor, Setting};
use certpilot_core::ports::DeployError;
use tracing::info;

use crate::{Bind, Binder, refused};

/// The `cloudfront` kind.
pub struct Kind;

impl crate::AwsKind for Kind {
    fn descriptor(&self) -> KindDescriptor {
        crate::descriptor(
            "cloudfront",
            "a CloudFront distribution's viewer certificate (imported into us-east-1)",
            vec![Setting::required(
                "distribution-id",
                "the distribution's id",
            )],
            // Edge locations pick a new certificate up within minutes, not seconds.
            std::time::Duration::from_secs(25 * 60),
            &[
                "cloudfront:GetDistributionConfig",
                "cloudfront:UpdateDistribution",
            ],
            // CloudFront takes RSA and ECDSA P-256 only.
            &[
                KeyType::EcdsaP256,
                KeyType::Rsa2048,
                KeyType::Rsa3072,
                KeyType::Rsa4096,
            ],
            |s| crate::check_common(s, REGION),
        )
    }

    fn region(&self, _unit: &Unit) -> Result<String, DeployError> {
        Ok(REGION.to_owned())
    }

    fn binder(&self, config: &SdkConfig, unit: &Unit) -> Result<Box<dyn Binder>, DeployError> {
        Ok(Box::new(Distribution::new(
            Client::new(config),
            crate::need(unit, "distribution-id")?.to_owned(),
        )))
    }
}

/// CloudFront only takes certificates from ACM in us-east-1.
const REGION: &str = "us-east-1";

/// One distribution.
pub struct Distribution {
    client: Client,
    id: String,
}

impl Distribution {
    /// The distribution `id`.
    pub fn new(client: Client, id: String) -> Self {
        Distribution { client, id }
    }

    async fn read(&self) -> Result<(DistributionConfig, String), DeployError> {
        let out = self
            .client
            .get_distribution_config()
            .id(&self.id)
            .send()
            .await
            .map_err(|e| refused(&format!("cloudfront GetDistributionConfig {}", self.id), &e))?;
        let etag = out.e_tag.clone().ok_or_else(|| {
            DeployError::Target(format!("cloudfront {}: no ETag returned", self.id))
        })?;
        let config = out.distribution_config.ok_or_else(|| {
            DeployError::Target(format!("cloudfront {}: no configuration returned", self.id))
        })?;
        Ok((config, etag))
    }

    async fn switch(&self, arn: &str) -> Result<Option<String>, DeployError> {
        let (mut config, etag) = self.read().await?;
        let mut viewer = config
            .viewer_certificate
            .clone()
            .unwrap_or_else(|| aws_sdk_cloudfront::types::ViewerCertificate::builder().build());
        let current = viewer.acm_certificate_arn.clone().filter(|a| !a.is_empty());
        if current.as_deref() == Some(arn) {
            return Ok(None);
        }
        viewer.acm_certificate_arn = Some(arn.to_owned());
        // The deprecated mirrors of the ARN would otherwise go back with the old value.
        #[allow(deprecated)]
        {
            viewer.certificate = None;
            viewer.certificate_source = None;
        }
        viewer.cloud_front_default_certificate = Some(false);
        viewer.iam_certificate_id = None;
        // SNI unless the distribution pays for dedicated IPs; the protocol floor is kept.
        if viewer.ssl_support_method.is_none() {
            viewer.ssl_support_method = Some(SslSupportMethod::SniOnly);
        }
        config.viewer_certificate = Some(viewer);
        self.client
            .update_distribution()
            .id(&self.id)
            .if_match(etag)
            .distribution_config(config)
            .send()
            .await
            .map_err(|e| refused(&format!("cloudfront UpdateDistribution {}", self.id), &e))?;
        info!(distribution = %self.id, certificate = %arn, "cloudfront: viewer certificate switched");
        Ok(current)
    }
}

#[async_trait]
impl Binder for Distribution {
    async fn bound(&self) -> Result<Vec<String>, DeployError> {
        let (config, _) = self.read().await?;
        Ok(config
            .viewer_certificate
            .and_then(|v| v.acm_certificate_arn)
            .filter(|a| !a.is_empty())
            .into_iter()
            .collect())
    }

    async fn bind(&self, arn: &str, _managed: Option<&str>) -> Result<Bind, DeployError> {
        Ok(Bind {
            replaced: self.switch(arn).await?,
            added: false,
        })
    }
}
