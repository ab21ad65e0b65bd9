//! Private keys and other secrets, versioned.

use async_trait::async_trait;

/// Secret bytes (a private key, ACME account credentials, an HMAC key). Its `Debug` does not
/// show the bytes, it has no `Display`, and the bytes are overwritten when it is dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Vec<u8>);

impl SecretValue {
    /// Wraps bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretValue(bytes)
    }

    /// The bytes; the caller must not log them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The bytes as UTF-8 (PEM, JSON).
    pub fn expose_str(&self) -> Result<&str, SecretError> {
        std::str::from_utf8(&self.0).map_err(|_| SecretError::Backend("secret is not UTF-8".into()))
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretValue({} bytes, redacted)", self.0.len())
    }
}

impl Drop for SecretValue {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// Which version of a secret to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretVersion {
    /// The version in use (`AWSCURRENT`).
    Current,
    /// The one before it, kept for rollback (`AWSPREVIOUS`).
    Previous,
    /// A specific version id (for example a pending key).
    Id(String),
}

/// Why a secret operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// No such secret or version.
    #[error("secret not found: {0}")]
    NotFound(String),
    /// The backend is unavailable or throttling; try again later.
    #[error("secret store unavailable: {0}")]
    Unavailable(String),
    /// The backend refused (permissions, KMS, bad name).
    #[error("secret store error: {0}")]
    Backend(String),
}

/// Where private keys, ACME account credentials and API tokens live (Secrets Manager in
/// AWS, files with mode 0600 locally).
///
/// Contract: `put_pending` stores a new version without making it current and returns its
/// id (except that a secret's very first version may be current at once: Secrets Manager does
/// that, which is why keys are always read by version id); `promote` makes that version current and the former current one previous, and is
/// idempotent (promoting the current version again changes nothing); `put_current` is both in
/// one call; `get` returns `Ok(None)` for a missing secret or stage. Values never appear in
/// errors or logs.
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// Stores a new pending version of `name`; returns its version id.
    async fn put_pending(&self, name: &str, value: &SecretValue) -> Result<String, SecretError>;

    /// Makes version `version` of `name` current, keeping the former current as previous.
    async fn promote(&self, name: &str, version: &str) -> Result<(), SecretError>;

    /// Stores a new version of `name` and makes it current; returns its version id.
    async fn put_current(&self, name: &str, value: &SecretValue) -> Result<String, SecretError> {
        let version = self.put_pending(name, value).await?;
        self.promote(name, &version).await?;
        Ok(version)
    }

    /// Reads a version of `name`, with its version id.
    async fn get(
        &self,
        name: &str,
        version: &SecretVersion,
    ) -> Result<Option<(String, SecretValue)>, SecretError>;

    /// Deletes `name` and every version of it, at once and for good (a removed channel's
    /// webhook URL must not linger); whether there was one, as far as the backend says
    /// (deleting a missing secret is no error).
    async fn delete(&self, name: &str) -> Result<bool, SecretError>;
}
