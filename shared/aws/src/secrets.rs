//! The [`SecretStore`] on AWS Secrets Manager.
//!
//! Each certpilot secret name (`certificate-key/shop`) is one Secrets Manager secret named
//! `<prefix><name>` (prefix `certpilot/` by default). Versions map to staging labels:
//!
//! - `put_pending` adds a version labelled `AWSPENDING`, with a `ClientRequestToken` that is
//!   certpilot's version id, so a retried call does not make a second version;
//! - `promote` moves `AWSCURRENT` to that version (Secrets Manager moves `AWSPREVIOUS` to the
//!   former current one, which is the rollback) and drops `AWSPENDING`;
//! - `get` reads `AWSCURRENT`, `AWSPREVIOUS` or a version id.
//!
//! Secrets Manager makes the **first** version of a secret `AWSCURRENT` whatever label was
//! asked for. certpilot reads a certificate's key by the version id its record holds, never
//! by stage, so a first key that is current before its certificate exists is never served.
//!
//! Text values (PEM keys, account JSON) are stored as `SecretString`, others as
//! `SecretBinary`. Values never appear in errors or logs.
//!
//! Permissions: `secretsmanager:CreateSecret`, `PutSecretValue`, `DescribeSecret`,
//! `UpdateSecretVersionStage`, `GetSecretValue` and `TagResource` (tags on create) on
//! `arn:…:secret:<prefix>*`; with a customer managed key, `kms:GenerateDataKey` and
//! `kms:Decrypt` on it.

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::primitives::Blob;
use aws_sdk_secretsmanager::types::Tag;
use certpilot_core::ports::{SecretError, SecretStore, SecretValue, SecretVersion};

const CURRENT: &str = "AWSCURRENT";
const PREVIOUS: &str = "AWSPREVIOUS";
const PENDING: &str = "AWSPENDING";

/// The default prefix of secret names.
pub const DEFAULT_PREFIX: &str = "certpilot/";

/// Secrets in AWS Secrets Manager.
#[derive(Clone, Debug)]
pub struct SecretsManagerStore {
    client: Client,
    prefix: String,
    kms_key_id: Option<String>,
}

/// Maps an SDK error; the message names the operation and the secret, never the value.
fn sdk_error<E, R>(operation: &str, name: &str, e: SdkError<E, R>) -> SecretError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let (code, detail) = crate::describe_sdk_error(&e);
    let text = format!("secretsmanager {name}: {operation}: {detail}");
    match code.as_str() {
        "ResourceNotFoundException" => SecretError::NotFound(text),
        // No code: the request never got an answer (timeout, connection); try again later.
        "" | "ThrottlingException" | "InternalServiceError" | "ServiceUnavailable" => {
            SecretError::Unavailable(text)
        }
        _ => SecretError::Backend(text),
    }
}

/// A fresh version id: 32 hex digits, the shortest `ClientRequestToken` Secrets Manager takes.
fn new_version_id() -> Result<String, SecretError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| SecretError::Backend("no randomness for a version id".into()))?;
    Ok(hex::encode(bytes))
}

impl SecretsManagerStore {
    /// Secrets named `<prefix><name>` through `client`, encrypted with `kms_key_id` (or the
    /// account's `aws/secretsmanager` key).
    pub fn new(client: Client, prefix: impl Into<String>, kms_key_id: Option<String>) -> Self {
        SecretsManagerStore {
            client,
            prefix: prefix.into(),
            kms_key_id,
        }
    }

    /// A store configured the standard AWS way (`AWS_ENDPOINT_URL` included), with timeouts
    /// on every call; `CERTPILOT_SECRETS_PREFIX` and `CERTPILOT_SECRETS_KMS_KEY` override the
    /// prefix and the key.
    pub async fn from_env() -> Self {
        Self::from_config(&crate::config::load().await)
    }

    /// A store through an already loaded AWS configuration; the prefix and key as in
    /// [`SecretsManagerStore::from_env`].
    pub fn from_config(config: &aws_config::SdkConfig) -> Self {
        let prefix =
            std::env::var("CERTPILOT_SECRETS_PREFIX").unwrap_or_else(|_| DEFAULT_PREFIX.into());
        let kms = std::env::var("CERTPILOT_SECRETS_KMS_KEY")
            .ok()
            .filter(|k| !k.is_empty());
        Self::new(Client::new(config), prefix, kms)
    }

    fn id(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Creates the secret with its first version; `Ok(false)` when it already exists.
    async fn create(
        &self,
        id: &str,
        version: &str,
        value: &SecretValue,
    ) -> Result<bool, SecretError> {
        let mut create = self
            .client
            .create_secret()
            .name(id)
            .client_request_token(version)
            .description("managed by certpilot")
            .tags(Tag::builder().key("managed-by").value("certpilot").build())
            .set_kms_key_id(self.kms_key_id.clone());
        create = match value.expose_str() {
            Ok(text) => create.secret_string(text),
            Err(_) => create.secret_binary(Blob::new(value.expose())),
        };
        match create.send().await {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("ResourceExistsException") => Ok(false),
            Err(e) => Err(sdk_error("CreateSecret", id, e)),
        }
    }

    /// Which version holds `stage`, and every version's stages.
    async fn stages(&self, id: &str) -> Result<Vec<(String, Vec<String>)>, SecretError> {
        let out = self
            .client
            .describe_secret()
            .secret_id(id)
            .send()
            .await
            .map_err(|e| sdk_error("DescribeSecret", id, e))?;
        Ok(out
            .version_ids_to_stages
            .unwrap_or_default()
            .into_iter()
            .collect())
    }
}

#[async_trait]
impl SecretStore for SecretsManagerStore {
    async fn delete(&self, name: &str) -> Result<bool, SecretError> {
        let id = self.id(name);
        // No recovery window: a removed channel's webhook URL is gone at once, and its name
        // can be used again (a secret scheduled for deletion blocks a new one of that name).
        match self
            .client
            .delete_secret()
            .secret_id(&id)
            .force_delete_without_recovery(true)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("ResourceNotFoundException") => Ok(false),
            Err(e) => Err(sdk_error("DeleteSecret", &id, e)),
        }
    }

    async fn put_pending(&self, name: &str, value: &SecretValue) -> Result<String, SecretError> {
        let id = self.id(name);
        let version = new_version_id()?;
        for _ in 0..2 {
            let mut put = self
                .client
                .put_secret_value()
                .secret_id(&id)
                .client_request_token(&version)
                .version_stages(PENDING);
            put = match value.expose_str() {
                Ok(text) => put.secret_string(text),
                Err(_) => put.secret_binary(Blob::new(value.expose())),
            };
            match put.send().await {
                Ok(_) => return Ok(version),
                Err(e) if e.code() == Some("ResourceNotFoundException") => {
                    if self.create(&id, &version, value).await? {
                        return Ok(version);
                    }
                    // Created by someone else meanwhile: add our version to it.
                }
                Err(e) => return Err(sdk_error("PutSecretValue", &id, e)),
            }
        }
        Err(SecretError::Unavailable(format!(
            "secretsmanager {id}: the secret kept changing while a version was added"
        )))
    }

    async fn promote(&self, name: &str, version: &str) -> Result<(), SecretError> {
        let id = self.id(name);
        let stages = self.stages(&id).await?;
        let Some((_, ours)) = stages.iter().find(|(v, _)| v == version) else {
            return Err(SecretError::NotFound(format!(
                "secretsmanager {id}: version {version}"
            )));
        };
        if !ours.iter().any(|s| s == CURRENT) {
            let current = stages
                .iter()
                .find(|(_, s)| s.iter().any(|s| s == CURRENT))
                .map(|(v, _)| v.clone());
            self.client
                .update_secret_version_stage()
                .secret_id(&id)
                .version_stage(CURRENT)
                .move_to_version_id(version)
                .set_remove_from_version_id(current)
                .send()
                .await
                .map_err(|e| sdk_error("UpdateSecretVersionStage", &id, e))?;
        }
        if ours.iter().any(|s| s == PENDING) {
            self.client
                .update_secret_version_stage()
                .secret_id(&id)
                .version_stage(PENDING)
                .remove_from_version_id(version)
                .send()
                .await
                .map_err(|e| sdk_error("UpdateSecretVersionStage", &id, e))?;
        }
        Ok(())
    }

    async fn put_current(&self, name: &str, value: &SecretValue) -> Result<String, SecretError> {
        let id = self.id(name);
        let version = new_version_id()?;
        if self.create(&id, &version, value).await? {
            return Ok(version);
        }
        let mut put = self
            .client
            .put_secret_value()
            .secret_id(&id)
            .client_request_token(&version);
        put = match value.expose_str() {
            Ok(text) => put.secret_string(text),
            Err(_) => put.secret_binary(Blob::new(value.expose())),
        };
        put.send()
            .await
            .map_err(|e| sdk_error("PutSecretValue", &id, e))?;
        Ok(version)
    }

    async fn get(
        &self,
        name: &str,
        version: &SecretVersion,
    ) -> Result<Option<(String, SecretValue)>, SecretError> {
        let id = self.id(name);
        let get = self.client.get_secret_value().secret_id(&id);
        let get = match version {
            SecretVersion::Current => get.version_stage(CURRENT),
            SecretVersion::Previous => get.version_stage(PREVIOUS),
            SecretVersion::Id(v) => get.version_id(v),
        };
        match get.send().await {
            Ok(out) => {
                let bytes = match (out.secret_string(), out.secret_binary()) {
                    (Some(text), _) => text.as_bytes().to_vec(),
                    (None, Some(blob)) => blob.as_ref().to_vec(),
                    (None, None) => return Ok(None),
                };
                let version = out.version_id().unwrap_or_default().to_owned();
                Ok(Some((version, SecretValue::new(bytes))))
            }
            Err(e) => match sdk_error("GetSecretValue", &id, e) {
                SecretError::NotFound(_) => Ok(None),
                other => Err(other),
            },
        }
    }
}
