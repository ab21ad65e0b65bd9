//! The SecretStore contract against a real Secrets Manager API: moto server, one prefix per
//! test so tests do not see each other's secrets.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
use certpilot_aws::SecretsManagerStore;
use certpilot_testkit::procs::shared_moto;

static PREFIXES: AtomicUsize = AtomicUsize::new(0);

async fn fresh() -> (SecretsManagerStore, ()) {
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(&shared_moto().endpoint_url)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .timeout_config(certpilot_aws::config::default_timeouts())
        .build();
    let prefix = format!(
        "contract-{}-{}/",
        std::process::id(),
        PREFIXES.fetch_add(1, Ordering::SeqCst)
    );
    (
        SecretsManagerStore::new(
            aws_sdk_secretsmanager::Client::from_conf(config),
            prefix,
            None,
        ),
        (),
    )
}

certpilot_testkit::secret_store_contract!(fresh);
