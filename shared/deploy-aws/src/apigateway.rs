//! API Gateway custom domain names, for REST APIs (`apigateway`: the edge certificate, or the
//! regional one for regional domains) and HTTP APIs (`apigatewayv2`: every configuration of
//! the domain). A re-import over the bound ARN needs no call at all: API Gateway serves the
//! re-imported certificate.
//!
//! Settings: `domain-name`, `region`, `api` (`rest` or `http`). IAM: `apigateway:GET` and
//! `apigateway:PATCH` on `arn:aws:apigateway:REGION::/domainnames/*`, plus the ACM import's.

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_apigateway::types::{EndpointType, Op, PatchOperation};
use certpilot_core::model::certificate::KeyType;
use certpilot_core::model::deploy::Unit;
use certpilot_core::model::deploy_kind::{KindDescriptor, Setting, ValueKind};
use certpilot_core::ports::DeployError;
use tracing::info;

use crate::{Bind, Binder, refused};

/// The `api-gateway` kind.
pub struct Kind;

impl crate::AwsKind for Kind {
    fn descriptor(&self) -> KindDescriptor {
        crate::descriptor(
            "api-gateway",
            "an API Gateway custom domain name (REST, or HTTP and WebSocket APIs)",
            vec![
                Setting::required("domain-name", "the custom domain name"),
                Setting::required(
                    "region",
                    "its region (edge-optimized REST domains use us-east-1 certificates)",
                ),
                Setting::optional("api", "which API the domain belongs to")
                    .of(ValueKind::OneOf(&["rest", "http"])),
            ],
            std::time::Duration::from_secs(10 * 60),
            &["apigateway:GET", "apigateway:PATCH"],
            &[KeyType::EcdsaP256, KeyType::EcdsaP384, KeyType::Rsa2048],
            |s| crate::check_common(s, s.get("region").and_then(|v| v.as_str()).unwrap_or("")),
        )
    }

    fn region(&self, unit: &Unit) -> Result<String, DeployError> {
        crate::need(unit, "region").map(str::to_owned)
    }

    fn binder(&self, config: &SdkConfig, unit: &Unit) -> Result<Box<dyn Binder>, DeployError> {
        let name = crate::need(unit, "domain-name")?.to_owned();
        Ok(match unit.text("api").unwrap_or("rest") {
            "http" => Box::new(HttpDomain {
                client: aws_sdk_apigatewayv2::Client::new(config),
                name,
            }),
            _ => Box::new(RestDomain {
                client: aws_sdk_apigateway::Client::new(config),
                name,
            }),
        })
    }
}

/// A REST API custom domain.
pub struct RestDomain {
    client: aws_sdk_apigateway::Client,
    name: String,
}

impl RestDomain {
    /// The patch path and ARN in use: regional domains use `regionalCertificateArn`.
    async fn current(&self) -> Result<(&'static str, Option<String>), DeployError> {
        let out = self
            .client
            .get_domain_name()
            .domain_name(&self.name)
            .send()
            .await
            .map_err(|e| refused(&format!("apigateway GetDomainName {}", self.name), &e))?;
        let regional = out
            .endpoint_configuration
            .as_ref()
            .is_some_and(|c| c.types().contains(&EndpointType::Regional))
            || out.regional_certificate_arn.is_some();
        Ok(if regional {
            ("/regionalCertificateArn", out.regional_certificate_arn)
        } else {
            ("/certificateArn", out.certificate_arn)
        })
    }
}

#[async_trait]
impl Binder for RestDomain {
    async fn bound(&self) -> Result<Vec<String>, DeployError> {
        Ok(self.current().await?.1.into_iter().collect())
    }

    async fn bind(&self, arn: &str, _managed: Option<&str>) -> Result<Bind, DeployError> {
        let (path, current) = self.current().await?;
        if current.as_deref() == Some(arn) {
            return Ok(Bind::default());
        }
        self.client
            .update_domain_name()
            .domain_name(&self.name)
            .patch_operations(
                PatchOperation::builder()
                    .op(Op::Replace)
                    .path(path)
                    .value(arn)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| refused(&format!("apigateway UpdateDomainName {}", self.name), &e))?;
        info!(domain = %self.name, certificate = %arn, "apigateway: certificate switched");
        Ok(Bind {
            replaced: current,
            added: false,
        })
    }
}

/// An HTTP API custom domain.
pub struct HttpDomain {
    client: aws_sdk_apigatewayv2::Client,
    name: String,
}

impl HttpDomain {
    async fn configurations(
        &self,
    ) -> Result<Vec<aws_sdk_apigatewayv2::types::DomainNameConfiguration>, DeployError> {
        let out = self
            .client
            .get_domain_name()
            .domain_name(&self.name)
            .send()
            .await
            .map_err(|e| refused(&format!("apigatewayv2 GetDomainName {}", self.name), &e))?;
        Ok(out.domain_name_configurations.unwrap_or_default())
    }
}

#[async_trait]
impl Binder for HttpDomain {
    async fn bound(&self) -> Result<Vec<String>, DeployError> {
        Ok(self
            .configurations()
            .await?
            .into_iter()
            .filter_map(|c| c.certificate_arn)
            .collect())
    }

    async fn bind(&self, arn: &str, _managed: Option<&str>) -> Result<Bind, DeployError> {
        let mut configs = self.configurations().await?;
        let current = configs.first().and_then(|c| c.certificate_arn.clone());
        if configs
            .iter()
            .all(|c| c.certificate_arn.as_deref() == Some(arn))
            && !configs.is_empty()
        {
            return Ok(Bind::default());
        }
        for c in &mut configs {
            c.certificate_arn = Some(arn.to_owned());
            // Read-only fields the update refuses.
            c.api_gateway_domain_name = None;
            c.hosted_zone_id = None;
            c.domain_name_status = None;
            c.domain_name_status_message = None;
            c.certificate_upload_date = None;
        }
        self.client
            .update_domain_name()
            .domain_name(&self.name)
            .set_domain_name_configurations(Some(configs))
            .send()
            .await
            .map_err(|e| refused(&format!("apigatewayv2 UpdateDomainName {}", self.name), &e))?;
        info!(domain = %self.name, certificate = %arn, "apigatewayv2: certificate switched");
        Ok(Bind {
            replaced: current,
            added: false,
        })
    }
}
