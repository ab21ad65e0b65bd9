//! AWS Certificate Manager as an issuer.

use async_trait::async_trait;

use super::*;

/// What ACM says about a certificate it issues.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcmDescription {
    /// `PENDING_VALIDATION`, `ISSUED`, `FAILED`, `VALIDATION_TIMED_OUT`, `EXPIRED`, `REVOKED`…
    pub status: String,
    /// Why it failed, when it did.
    pub failure_reason: Option<String>,
    /// The validation records it asks for (empty until ACM has made them).
    pub validation: Vec<CnameRecord>,
    /// Its managed renewal's status (`PENDING_AUTO_RENEWAL`, `PENDING_VALIDATION`, `SUCCESS`,
    /// `FAILED`), once one has started.
    pub renewal_status: Option<String>,
    /// Why the managed renewal is stuck, when ACM says.
    pub renewal_reason: Option<String>,
    /// The certificate, once issued.
    pub issued: Option<DownloadedCertificate>,
}

/// AWS Certificate Manager as an issuer: requests are asynchronous, so each call only starts
/// or reads; nothing waits.
#[async_trait]
pub trait AcmCertificates: Send + Sync {
    /// Requests a public certificate with DNS validation; `token` makes a retried request
    /// return the same ARN.
    async fn request(
        &self,
        region: &str,
        names: &[String],
        key_type: crate::model::certificate::KeyType,
        token: &str,
    ) -> Result<String, IssueError>;

    /// Reads a requested certificate.
    async fn describe(&self, region: &str, arn: &str) -> Result<AcmDescription, IssueError>;
}
