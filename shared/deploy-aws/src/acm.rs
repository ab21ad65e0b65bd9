//! ACM import: `ImportCertificate` with the leaf, its key and the rest of the chain;
//! re-imported over the same ARN on renewal so every association stays.
//!
//! The `acm-import` kind ([`Import`]) is only that: for users certpilot does not bind itself
//! (other stacks that name the ARN). IAM: `acm:ImportCertificate`, `acm:GetCertificate`,
//! `acm:AddTagsToCertificate` (tags go on with the first import).

use aws_sdk_acm::Client;
use aws_sdk_acm::primitives::Blob;
use aws_sdk_acm::types::{KeyAlgorithm, Tag, ValidationMethod};
use certpilot_core::model::certificate::{KeyType, split_chain};
use certpilot_core::ports::{
    AcmCertificates, AcmDescription, CnameRecord, DeployError, DeployMaterial,
    DownloadedCertificate, IssueError,
};
use tracing::info;

use crate::refused;

/// The `acm-import` kind: a plain import, nothing bound.
pub struct Import;

impl crate::AwsKind for Import {
    fn descriptor(&self) -> certpilot_core::model::deploy_kind::KindDescriptor {
        crate::descriptor(
            "acm-import",
            "import into ACM for users certpilot does not bind itself; re-imports keep the ARN",
            vec![certpilot_core::model::deploy_kind::Setting::required(
                "region",
                "the region to import into",
            )],
            std::time::Duration::from_secs(5 * 60),
            &[],
            &KeyType::ALL,
            |s| crate::check_common(s, s.get("region").and_then(|v| v.as_str()).unwrap_or("")),
        )
    }

    fn region(&self, unit: &certpilot_core::model::deploy::Unit) -> Result<String, DeployError> {
        crate::need(unit, "region").map(str::to_owned)
    }

    fn binder(
        &self,
        _config: &aws_config::SdkConfig,
        _unit: &certpilot_core::model::deploy::Unit,
    ) -> Result<Box<dyn crate::Binder>, DeployError> {
        Ok(Box::new(ImportOnly))
    }
}

/// A plain ACM import: nothing to bind.
struct ImportOnly;

#[async_trait::async_trait]
impl crate::Binder for ImportOnly {
    async fn bound(&self) -> Result<Vec<String>, DeployError> {
        Ok(Vec::new())
    }
    async fn bind(&self, _arn: &str, _managed: Option<&str>) -> Result<crate::Bind, DeployError> {
        Ok(crate::Bind::default())
    }
}

/// The tag naming the managed certificate an ACM import belongs to.
pub const ID_TAG: &str = "certpilot:id";

/// One region's ACM, in one account.
pub struct Acm {
    client: Client,
}

impl Acm {
    /// ACM through `client`.
    pub fn new(client: Client) -> Self {
        Acm { client }
    }

    /// Imports `material` (over `arn` when given); returns the ARN.
    pub async fn import(
        &self,
        id: &str,
        material: &DeployMaterial,
        arn: Option<&str>,
    ) -> Result<String, DeployError> {
        let (leaf, chain) = split_chain(&material.chain_pem).ok_or_else(|| {
            DeployError::Config(format!(
                "{id}: the stored chain of {} holds no certificate",
                material.fingerprint
            ))
        })?;
        let key = material.key.as_ref().ok_or_else(|| {
            DeployError::Config(format!(
                "{id}: ACM imports need the private key of {}, and none was handed over",
                material.fingerprint
            ))
        })?;
        let mut call = self
            .client
            .import_certificate()
            .certificate(Blob::new(leaf.into_bytes()))
            .private_key(Blob::new(key.expose().to_vec()));
        if !chain.is_empty() {
            call = call.certificate_chain(Blob::new(chain.into_bytes()));
        }
        match arn {
            Some(arn) => call = call.certificate_arn(arn),
            // Tags can only be given with a first import.
            None => {
                call = call.tags(
                    Tag::builder()
                        .key(ID_TAG)
                        .value(id)
                        .build()
                        .map_err(|e| DeployError::Config(e.to_string()))?,
                )
            }
        }
        let out = call.send().await.map_err(|e| {
            refused(
                &format!("acm ImportCertificate {}", arn.unwrap_or("(new)")),
                &e,
            )
        })?;
        let arn = out
            .certificate_arn
            .ok_or_else(|| DeployError::Target("acm ImportCertificate returned no ARN".into()))?;
        info!(%id, %arn, fingerprint = %material.fingerprint, "acm: imported");
        Ok(arn)
    }

    /// The SHA-256 fingerprint of the leaf `arn` holds (`None` when ACM has none yet).
    pub async fn fingerprint(&self, arn: &str) -> Result<Option<String>, DeployError> {
        let out = self
            .client
            .get_certificate()
            .certificate_arn(arn)
            .send()
            .await
            .map_err(|e| refused(&format!("acm GetCertificate {arn}"), &e))?;
        Ok(out.certificate.as_deref().and_then(pem_fingerprint))
    }
}

/// ACM as an issuer: public certificates validated by DNS, requested in any region.
///
/// IAM: `acm:RequestCertificate`, `acm:DescribeCertificate`, `acm:GetCertificate`.
pub struct AcmIssuer {
    base: tokio::sync::OnceCell<aws_config::SdkConfig>,
}

impl AcmIssuer {
    /// ACM reached with `base`'s credentials, endpoint and timeouts.
    pub fn new(base: aws_config::SdkConfig) -> Self {
        AcmIssuer {
            base: tokio::sync::OnceCell::new_with(Some(base)),
        }
    }

    /// ACM reached through the standard AWS configuration, loaded on first use: a process
    /// whose certificates never use ACM never loads it.
    pub fn from_environment() -> Self {
        AcmIssuer {
            base: tokio::sync::OnceCell::new(),
        }
    }

    async fn client(&self, region: &str) -> Client {
        let base = self.base.get_or_init(certpilot_aws::config::load).await;
        Client::new(
            &base
                .to_builder()
                .region(aws_config::Region::new(region.to_owned()))
                .build(),
        )
    }
}

fn unavailable<E, R>(what: &str, e: &aws_sdk_acm::error::SdkError<E, R>) -> IssueError
where
    E: aws_sdk_acm::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let (code, detail) = certpilot_aws::describe_sdk_error(e);
    let text = format!("acm {what}: {detail}");
    match code.as_str() {
        "" | "ThrottlingException" | "RequestInProgressException" => IssueError::Unavailable(text),
        _ => IssueError::Rejected {
            detail: text,
            problem: None,
        },
    }
}

#[async_trait::async_trait]
impl AcmCertificates for AcmIssuer {
    async fn request(
        &self,
        region: &str,
        names: &[String],
        key_type: KeyType,
        token: &str,
    ) -> Result<String, IssueError> {
        let (first, rest) = names
            .split_first()
            .ok_or_else(|| IssueError::Config("a certificate needs a name".into()))?;
        let algorithm = match key_type {
            KeyType::EcdsaP256 => KeyAlgorithm::EcPrime256v1,
            KeyType::EcdsaP384 => KeyAlgorithm::EcSecp384r1,
            KeyType::Rsa2048 => KeyAlgorithm::Rsa2048,
            other => {
                return Err(IssueError::Config(format!(
                    "ACM does not issue {} keys",
                    other.as_str()
                )));
            }
        };
        let mut call = self
            .client(region)
            .await
            .request_certificate()
            .domain_name(first)
            .validation_method(ValidationMethod::Dns)
            .key_algorithm(algorithm)
            .idempotency_token(token);
        for n in rest {
            call = call.subject_alternative_names(n);
        }
        let out = call
            .send()
            .await
            .map_err(|e| unavailable("RequestCertificate", &e))?;
        out.certificate_arn
            .ok_or_else(|| IssueError::Unavailable("acm RequestCertificate returned no ARN".into()))
    }

    async fn describe(&self, region: &str, arn: &str) -> Result<AcmDescription, IssueError> {
        let client = self.client(region).await;
        let out = client
            .describe_certificate()
            .certificate_arn(arn)
            .send()
            .await
            .map_err(|e| unavailable(&format!("DescribeCertificate {arn}"), &e))?;
        let detail = out
            .certificate
            .ok_or_else(|| IssueError::Unavailable(format!("acm {arn}: no description")))?;
        let status = detail
            .status
            .as_ref()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default();
        let mut validation: Vec<CnameRecord> = detail
            .domain_validation_options
            .iter()
            .flatten()
            .filter_map(|d| d.resource_record.as_ref())
            .map(|r| CnameRecord {
                name: r.name.trim_end_matches('.').to_owned(),
                value: r.value.trim_end_matches('.').to_owned(),
            })
            .collect();
        // A name and its wildcard share one record.
        validation.sort();
        validation.dedup();
        let issued = if status == "ISSUED" {
            let got = client
                .get_certificate()
                .certificate_arn(arn)
                .send()
                .await
                .map_err(|e| unavailable(&format!("GetCertificate {arn}"), &e))?;
            let leaf = got.certificate.unwrap_or_default();
            let chain = format!(
                "{}\n{}",
                leaf.trim(),
                got.certificate_chain.unwrap_or_default()
            );
            Some(downloaded(&chain).ok_or_else(|| {
                IssueError::Check(format!("acm {arn}: the certificate does not parse"))
            })?)
        } else {
            None
        };
        Ok(AcmDescription {
            status,
            failure_reason: detail.failure_reason.map(|r| r.as_str().to_owned()),
            validation,
            renewal_status: detail
                .renewal_summary
                .as_ref()
                .map(|r| r.renewal_status.as_str().to_owned()),
            renewal_reason: detail
                .renewal_summary
                .as_ref()
                .and_then(|r| r.renewal_status_reason.as_ref())
                .map(|r| r.as_str().to_owned()),
            issued,
        })
    }
}

/// The certificate a chain holds, as the renewal record keeps it.
fn downloaded(chain_pem: &str) -> Option<DownloadedCertificate> {
    let (_, block) = x509_parser::pem::parse_x509_pem(chain_pem.trim_start().as_bytes()).ok()?;
    let cert = block.parse_x509().ok()?;
    let validity = cert.validity();
    Some(DownloadedCertificate {
        chain_pem: chain_pem.to_owned(),
        fingerprint: pem_fingerprint(chain_pem)?,
        serial: cert.raw_serial_as_string().replace(':', ""),
        not_before: time::OffsetDateTime::from_unix_timestamp(validity.not_before.timestamp())
            .ok()?,
        not_after: time::OffsetDateTime::from_unix_timestamp(validity.not_after.timestamp())
            .ok()?,
        ari_id: None,
        profile: None,
    })
}

/// SHA-256 of the first certificate in `pem`, hex.
pub fn pem_fingerprint(pem: &str) -> Option<String> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.trim_start().as_bytes()).ok()?;
    Some(hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        &block.contents,
    )))
}
