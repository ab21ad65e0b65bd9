//! ACM import: `ImportCertificate` with the leaf, its key and the rest of the chain;
//! re-imported over the same ARN on renewal so every association stays.
//!
//! Settings: `region`, and optionally `certificate_arn` to adopt an imported certificate that
//! already exists. IAM: `acm:ImportCertificate`, `acm:GetCertificate`,
//! `acm:AddTagsToCertificate` (tags go on with the first import).

use aws_sdk_acm::Client;
use aws_sdk_acm::primitives::Blob;
use aws_sdk_acm::types::Tag;
use certpilot_core::ports::{DeployError, DeployMaterial};
use tracing::info;

use crate::refused;

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
        let mut call = self
            .client
            .import_certificate()
            .certificate(Blob::new(leaf.into_bytes()))
            .private_key(Blob::new(material.key.expose().to_vec()));
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

/// The first certificate of a PEM chain and the rest.
pub fn split_chain(chain_pem: &str) -> Option<(String, String)> {
    const END: &str = "-----END CERTIFICATE-----";
    let at = chain_pem.find(END)? + END.len();
    let leaf = format!("{}\n", chain_pem[..at].trim());
    let rest = chain_pem[at..].trim();
    Some((
        leaf,
        if rest.is_empty() {
            String::new()
        } else {
            format!("{rest}\n")
        },
    ))
}

/// SHA-256 of the first certificate in `pem`, hex.
pub fn pem_fingerprint(pem: &str) -> Option<String> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.trim_start().as_bytes()).ok()?;
    Some(hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        &block.contents,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_splits_into_leaf_and_intermediates() {
        let chain = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n";
        let (leaf, rest) = split_chain(chain).expect("split");
        assert_eq!(
            leaf,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        );
        assert_eq!(
            rest,
            "-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n"
        );
        let (_, none) = split_chain(&leaf).expect("split");
        assert!(none.is_empty());
        assert!(split_chain("no pem").is_none());
    }
}
