//! Deploy targets: where a certificate is installed, and how it is proven and rolled back.

use async_trait::async_trait;

use super::*;

/// A certificate as a deploy target takes it: the chain and its key.
#[derive(Clone, Debug)]
pub struct DeployMaterial {
    /// SHA-256 of the leaf, hex.
    pub fingerprint: String,
    /// The names the certificate covers (for hooks and reload commands).
    pub names: Vec<String>,
    /// When the leaf expires.
    pub not_after: time::OffsetDateTime,
    /// The key type.
    pub key_type: crate::model::certificate::KeyType,
    /// Leaf first, then the intermediates, PEM.
    pub chain_pem: String,
    /// The private key, PKCS#8 PEM: only for kinds whose descriptor says they take it, and
    /// never when ACM issued the certificate and keeps the key.
    pub key: Option<SecretValue>,
    /// The ACM certificate, when ACM issued it: targets bind it as it is.
    pub acm_arn: Option<String>,
    /// The certificates issued with it under other key algorithms (a dual-stack
    /// enrollment's), installed together with it by the kinds that take several.
    pub stacked: Vec<crate::model::certificate::StackedCertificate>,
}

/// One deploy at one unit: the certificate to install, the one to put back on rollback, and
/// what was recorded at this unit last time (its handle).
#[derive(Clone, Copy, Debug)]
pub struct DeployRequest<'a> {
    /// The managed certificate's id (tags the ACM import).
    pub id: &'a str,
    /// The unit, with its settings.
    pub unit: &'a crate::model::deploy::Unit,
    /// The certificate to install.
    pub certificate: &'a DeployMaterial,
    /// The certificate before it, when there was one.
    pub previous: Option<&'a DeployMaterial>,
    /// The unit's last record.
    pub record: Option<&'a crate::model::deploy::UnitRecord>,
}

/// What a target holds now, read from its API.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Bound {
    /// The handles of what is bound (ACM ARNs, version directories), the default one first.
    pub certificates: Vec<String>,
    /// The leaf fingerprints of those that could be read.
    pub fingerprints: Vec<String>,
}

/// The result of [`DeployTarget::deploy`]: enough to finish or undo it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Deployed {
    /// The adapter's handle of what it installed (stored in the unit's record).
    pub handle: Option<String>,
    /// What was bound before, when the deploy bound a different certificate (to remove after
    /// verification, or to bind again on rollback).
    pub replaced: Option<String>,
    /// Whether the certificate was bound beside others (added to an SNI list) rather than in
    /// place of one: a rollback removes it.
    pub added: bool,
    /// Set when the target accepted the change but needs time (a CDN rollout, a rate limit):
    /// the unit is recorded `in_progress` and the next run after this instant calls
    /// `deploy` again, which resumes (deploy is idempotent) instead of sleeping.
    pub check_after: Option<time::OffsetDateTime>,
    /// Set when the target put the certificate on a pre-production stage (Akamai's staging
    /// network) and goes no further without proof there: the service proves these endpoints
    /// by handshake, then calls [`DeployTarget::promote`]; if they do not serve it, it rolls
    /// back (which, before production, withdraws the change).
    pub prove_first: Option<Stage>,
}

/// A pre-production stage's endpoints, proven before the target goes on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stage {
    /// What the vendor calls it (`staging`).
    pub name: String,
    /// Its endpoints, each with the addresses to connect to (empty: resolve the name).
    pub endpoints: Vec<crate::model::target::ScanRequest>,
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
    /// What is bound now. `recorded` is the handle recorded at this unit (what `deploy`
    /// returned last): a kind whose API lists nothing as bound (a plain ACM import) reads
    /// what it installed back by it.
    async fn bound(&self, recorded: Option<&str>) -> Result<Bound, DeployError>;

    /// Installs `request.certificate`.
    async fn deploy(&self, request: DeployRequest<'_>) -> Result<Deployed, DeployError>;

    /// Called once the endpoints serve the new certificate: drops what it replaced where
    /// both were bound side by side (SNI lists).
    async fn finish(&self, deployed: &Deployed) -> Result<(), DeployError>;

    /// Goes on past the stage `deployed.prove_first` named, now proven to serve the
    /// certificate (Akamai: the change-management acknowledgement that sends it to
    /// production). Only kinds that stage their deploys are asked.
    async fn promote(
        &self,
        request: DeployRequest<'_>,
        deployed: &Deployed,
    ) -> Result<Deployed, DeployError> {
        let _ = (request, deployed);
        Err(DeployError::Config(
            "this kind has no pre-production stage to promote from".into(),
        ))
    }

    /// Puts back `request.previous` (or what `deployed.replaced` names). Returns the handle
    /// of what is bound afterwards when putting it back gave it a new one (a vendor whose
    /// re-upload creates a new certificate id), so the record follows it; `None` when the
    /// handle is unchanged.
    async fn roll_back(
        &self,
        request: DeployRequest<'_>,
        deployed: Option<&Deployed>,
    ) -> Result<Option<String>, DeployError>;
}

/// What a target that keeps the key has for the CA to sign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetCsrs {
    /// Its CSRs, one per key algorithm.
    Ready(Vec<crate::model::certificate::TargetCsr>),
    /// Not yet (the vendor is preparing them): ask again after `check_after`.
    NotYet {
        /// When to ask again.
        check_after: time::OffsetDateTime,
        /// What the vendor is doing, for people.
        detail: String,
    },
}

/// Builds the [`DeployTarget`] of one unit of one kind (clients, regions, assumed roles).
#[async_trait]
pub trait TargetFactory: Send + Sync {
    /// The target `unit` names (its settings were checked against the kind's descriptor).
    async fn target(
        &self,
        unit: &crate::model::deploy::Unit,
    ) -> Result<Box<dyn DeployTarget>, DeployError>;

    /// For a kind whose descriptor says it keeps the key ([`KeyDelivery::HeldByTarget`]):
    /// the CSRs of certificate `id` at `unit`, which the renewal has its CA sign.
    ///
    /// [`KeyDelivery::HeldByTarget`]: crate::model::deploy_kind::KeyDelivery::HeldByTarget
    async fn csrs(
        &self,
        id: &str,
        unit: &crate::model::deploy::Unit,
    ) -> Result<TargetCsrs, DeployError> {
        let _ = id;
        Err(DeployError::Config(format!(
            "{}: kind {} does not keep keys; certpilot generates them",
            unit.name, unit.kind
        )))
    }

    /// The units `unit` stands for when the kind finds them at run time (a fleet's
    /// instances chosen by tags, each then a unit of its own); by default the unit itself.
    async fn units(
        &self,
        unit: &crate::model::deploy::Unit,
    ) -> Result<Vec<crate::model::deploy::Unit>, DeployError> {
        Ok(vec![unit.clone()])
    }
}

/// The registry of deploy target kinds: each kind's descriptor and the factory that builds
/// its targets. The composition root fills it, one line per kind.
#[derive(Clone, Default)]
pub struct DeployTargets {
    kinds: crate::model::deploy_kind::DeployKinds,
    factories: Vec<(&'static str, std::sync::Arc<dyn TargetFactory>)>,
}

impl DeployTargets {
    /// An empty registry.
    pub fn new() -> Self {
        DeployTargets::default()
    }

    /// Registers a kind.
    pub fn register(
        &mut self,
        descriptor: crate::model::deploy_kind::KindDescriptor,
        factory: std::sync::Arc<dyn TargetFactory>,
    ) -> &mut Self {
        self.factories.push((descriptor.kind, factory));
        self.kinds.add(descriptor);
        self
    }

    /// The descriptors of every registered kind.
    pub fn kinds(&self) -> &crate::model::deploy_kind::DeployKinds {
        &self.kinds
    }

    fn factory(
        &self,
        unit: &crate::model::deploy::Unit,
    ) -> Result<&dyn TargetFactory, DeployError> {
        match self.factories.iter().find(|(k, _)| *k == unit.kind) {
            Some((_, factory)) => Ok(factory.as_ref()),
            None => Err(DeployError::Config(format!(
                "{}: this build has no deploy target of kind {:?}",
                unit.name, unit.kind
            ))),
        }
    }

    /// The target of `unit`.
    pub async fn target(
        &self,
        unit: &crate::model::deploy::Unit,
    ) -> Result<Box<dyn DeployTarget>, DeployError> {
        self.factory(unit)?.target(unit).await
    }

    /// The CSRs the target of `unit` made for certificate `id` (see [`TargetFactory::csrs`]).
    pub async fn csrs(
        &self,
        id: &str,
        unit: &crate::model::deploy::Unit,
    ) -> Result<TargetCsrs, DeployError> {
        self.factory(unit)?.csrs(id, unit).await
    }

    /// Every unit of `deployment`: those it lists (or itself), each expanded into the units
    /// its kind finds at run time (see [`TargetFactory::units`]).
    pub async fn units(
        &self,
        deployment: &crate::model::deploy::Deployment,
        certificate_endpoints: &[crate::model::target::Target],
    ) -> Result<Vec<crate::model::deploy::Unit>, DeployError> {
        let mut units = Vec::new();
        for unit in deployment.resolved_units(certificate_endpoints) {
            units.extend(self.factory(&unit)?.units(&unit).await?);
        }
        Ok(units)
    }
}

impl std::fmt::Debug for DeployTargets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeployTargets")
            .field(
                "kinds",
                &self.factories.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            )
            .finish()
    }
}
