//! A deploy service over a SQLite store and a file secret store, with every kind of the
//! registry (AWS on moto, vendor credentials from the secret store), a test CA, and what a
//! renewal leaves behind: the deploy tests' world.

use std::sync::Arc;
use std::time::Duration;

use certpilot_core::Tags;
use certpilot_core::model::certificate::{
    AcmeIssuer as IssuerConfig, CertificateSpec, ChallengeConfig, KeyType, ManagedCertificate,
    RenewalPolicy,
};
use certpilot_core::model::deploy::Deployment;
use certpilot_core::ports::{CertificateStore, Clock, SecretStore, SecretValue, SystemClock};
use certpilot_core::services::deploy::{DeployService, DeploySettings};
use certpilot_files::FileSecretStore;
use certpilot_sqlite::SqliteStore;
use certpilot_testkit::certs::{Ca, KeyKind, Leaf};
use certpilot_testkit::procs::shared_moto;

use crate::estate::Estate;

/// The name every test certificate is for.
pub const NAME: &str = "checkout.example.test";

/// The world of one test.
pub struct World {
    /// The AWS side (moto).
    pub estate: Estate,
    /// The store.
    pub store: Arc<SqliteStore>,
    /// The secret store.
    pub secrets: Arc<FileSecretStore>,
    /// The deploy service over them.
    pub service: DeployService,
    /// The CA that issues the test certificates.
    pub ca: Ca,
    _dir: tempfile::TempDir,
}

impl World {
    /// A world for the test `run`.
    pub fn new(run: &str) -> World {
        Self::with_endpoint(run, &shared_moto().endpoint_url)
    }

    /// The same with AWS reached at `endpoint_url` (a stand-in in front of moto).
    pub fn with_endpoint(run: &str, endpoint_url: &str) -> World {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path().join(format!("{run}.db"))).unwrap());
        let secrets = Arc::new(FileSecretStore::new(dir.path().join("secrets")));
        let estate = Estate::new(endpoint_url);
        let ca = Ca::new("Deploy Test CA");
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let targets =
            certpilot_app::App::registry_with_secrets(estate.aws.clone(), secrets.clone());
        let service = DeployService::new(
            store.clone(),
            secrets.clone(),
            targets,
            crate::verifier_trusting(&ca, dir.path()),
            clock,
            DeploySettings {
                interval: Duration::from_millis(200),
                max_deadline: None,
                on_host: true,
            },
        );
        World {
            estate,
            store,
            secrets,
            service,
            ca,
            _dir: dir,
        }
    }

    /// A certificate for [`NAME`], remembered by the AWS data planes' stand-ins.
    pub fn leaf(&self, kind: KeyKind) -> Leaf {
        let leaf = self.ca.leaf(&[NAME]).key(kind).build();
        self.estate.keyring.remember(&leaf);
        leaf
    }

    /// What a renewal leaves behind: `leaf` current, the former current previous, the key in
    /// the secret store under the version the record names.
    pub async fn issue(&self, id: &str, leaf: &Leaf, key_type: KeyType) {
        let version = self
            .secrets
            .put_current(
                &format!("certificate-key/{id}"),
                &SecretValue::new(leaf.key_pem().into_bytes()),
            )
            .await
            .unwrap();
        let mut cert = self.store.certificate(id).await.unwrap().unwrap();
        cert.previous = cert.current.take();
        cert.spec.key_type = key_type;
        cert.current = Some(crate::issued(leaf, &version));
        self.store.update_certificate(&cert).await.unwrap();
    }

    /// Manages certificate `id` for [`NAME`] with `deployments`.
    pub async fn add(&self, id: &str, deployments: Vec<Deployment>) {
        let spec = spec_for(NAME, deployments);
        spec.validate().unwrap();
        let cert = ManagedCertificate::new(id.into(), spec, time::OffsetDateTime::now_utc());
        self.store.add_certificate(&cert).await.unwrap();
    }
}

/// What `certpilot certificates add NAME` stores with `deployments` (an ECDSA key, an
/// ACME issuer that is never asked here).
pub fn spec_for(name: &str, deployments: Vec<Deployment>) -> CertificateSpec {
    CertificateSpec {
        names: vec![name.parse().unwrap()],
        key_type: KeyType::EcdsaP256,
        issuer: IssuerConfig {
            directory: "https://acme.example/dir".into(),
            contact: vec![],
            eab: None,
            profile: None,
            account_secret: None,
        },
        challenge: ChallengeConfig::Http01Listen {
            listen: "0.0.0.0:80".into(),
        },
        renewal: RenewalPolicy::Auto,
        tags: Tags::new(),
        endpoints: vec![],
        deployments,
        acm: None,
    }
}

/// A deployment `name` of `target` (kind, settings) proven at `endpoint` within 10 s.
pub fn deployment(name: &str, target: (&str, serde_json::Value), endpoint: &str) -> Deployment {
    let mut d = Deployment::new(name, target.0).with_endpoint(endpoint.parse().unwrap());
    d.settings = target.1.as_object().cloned().unwrap_or_default();
    d.verify_deadline = Some(10);
    d
}
