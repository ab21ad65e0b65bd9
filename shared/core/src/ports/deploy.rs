//! Deploy targets: where a certificate is installed, and how it is proven and rolled back.

use async_trait::async_trait;

use super::*;

/// A certificate as a deploy target takes it: the chain and its key.
#[derive(Clone, Debug)]
pub struct DeployMaterial {
    /// SHA-256 of the leaf, hex.
    pub fingerprint: String,
    /// The key type.
    pub key_type: crate::model::certificate::KeyType,
    /// Leaf first, then the intermediates, PEM.
    pub chain_pem: String,
    /// The private key, PKCS#8 PEM (empty when ACM issued it and keeps the key).
    pub key: SecretValue,
    /// The ACM certificate, when ACM issued it: targets bind it as it is.
    pub acm_arn: Option<String>,
}

/// One deploy: the certificate to install, the one to put back on rollback, and what was
/// recorded at this deployment last time (the ACM ARN certpilot imports into).
#[derive(Clone, Copy, Debug)]
pub struct DeployRequest<'a> {
    /// The managed certificate's id (tags the ACM import).
    pub id: &'a str,
    /// The certificate to install.
    pub certificate: &'a DeployMaterial,
    /// The certificate before it, when there was one.
    pub previous: Option<&'a DeployMaterial>,
    /// The deployment's last record.
    pub record: Option<&'a crate::model::deploy::DeploymentRecord>,
}

/// What a target holds now, read from its API.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Bound {
    /// The certificates bound (ACM ARNs), the default one first.
    pub certificates: Vec<String>,
    /// The leaf fingerprints of those that could be read.
    pub fingerprints: Vec<String>,
}

/// The result of [`DeployTarget::deploy`]: enough to finish or undo it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Deployed {
    /// The ACM certificate the new certificate was imported into.
    pub certificate_arn: Option<String>,
    /// What was bound before, when the deploy bound a different certificate (to remove after
    /// verification, or to bind again on rollback).
    pub replaced: Option<String>,
    /// Whether the certificate was bound beside others (added to an SNI list) rather than in
    /// place of one: a rollback removes it.
    pub added: bool,
}

/// Why a deploy, read or rollback failed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The configuration cannot work (names the setting).
    #[error("{0}")]
    Config(String),
    /// The target's API refused the request (permissions, a missing resource, a rule of
    /// the target's): a person must act.
    #[error("{0}")]
    Target(String),
    /// The target's API could not be reached, timed out or throttled: retry later.
    #[error("{0}")]
    Unavailable(String),
    /// The certificate's key could not be read.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The certificate store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Somewhere a certificate is installed: a load-balancer listener, a CDN, an API domain.
///
/// Contract: `deploy` is idempotent (a redelivered deploy changes nothing more) and leaves the
/// previous certificate usable until `finish`; `roll_back` puts back what was served before
/// `deploy` (with `deployed` absent when `deploy` failed part-way) and is idempotent too.
#[async_trait]
pub trait DeployTarget: Send + Sync {
    /// What is bound now.
    async fn bound(&self) -> Result<Bound, DeployError>;

    /// Installs `request.certificate`.
    async fn deploy(&self, request: DeployRequest<'_>) -> Result<Deployed, DeployError>;

    /// Called once the endpoints serve the new certificate: drops what it replaced where
    /// both were bound side by side (SNI lists).
    async fn finish(&self, deployed: &Deployed) -> Result<(), DeployError>;

    /// Puts back `request.previous` (or what `deployed.replaced` names).
    async fn roll_back(
        &self,
        request: DeployRequest<'_>,
        deployed: Option<&Deployed>,
    ) -> Result<(), DeployError>;
}

/// Builds the [`DeployTarget`] for a deployment (clients, regions, assumed roles).
#[async_trait]
pub trait DeployTargets: Send + Sync {
    /// The target `deployment` names.
    async fn target(
        &self,
        deployment: &crate::model::deploy::Deployment,
    ) -> Result<Box<dyn DeployTarget>, DeployError>;
}
