//! certpilot's CDN deploy targets, one folder per kind of the same shape as the AWS ones:
//! `mod.rs` (the kind: descriptor and factory), `client.rs` (the vendor's API, its errors and
//! rate limits), `target.rs` (the [`DeployTarget`](certpilot_core::ports::DeployTarget)).
//!
//! Vendor credentials are read from the secret store, by the name a deployment's settings
//! give (`deploy/…`, so that on AWS the deploy role may read those secrets and no others).

pub mod akamai;
pub mod cloudflare;
pub mod fastly;
mod http;
pub mod netscaler;
pub mod webhook;

use std::sync::Arc;

use certpilot_core::ports::{DeployError, SecretStore, SecretVersion};

/// The prefix every vendor credential's secret name carries.
pub const SECRET_PREFIX: &str = "deploy/";

/// Checks a name of a vendor credential: `deploy/NAME` (its error: the input and why).
pub fn check_secret_name(name: &str) -> Result<(), (String, String)> {
    let rest = name.strip_prefix(SECRET_PREFIX).unwrap_or("");
    if rest.is_empty()
        || !rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
    {
        return Err((
            name.to_owned(),
            format!(
                "name a secret under {SECRET_PREFIX} (letters, digits, '-', '_', '.', '/'), \
                 stored with `certpilot secrets set {SECRET_PREFIX}NAME --from-file FILE`"
            ),
        ));
    }
    Ok(())
}

/// Checks a vendor API's base URL: `https://`, or `http://` to this machine only (a local
/// proxy or a stand-in).
pub(crate) fn check_api_url(url: &str) -> Result<(), (String, String)> {
    let local = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
        .iter()
        .any(|p| url.starts_with(p));
    if url.starts_with("https://") || local {
        Ok(())
    } else {
        Err((
            url.to_owned(),
            "the API URL must be https:// (plain http only to this machine)".into(),
        ))
    }
}

/// Checks the settings every vendor API kind has: `token-secret` (a name under
/// [`SECRET_PREFIX`]) and an optional `api-url`.
pub(crate) fn check_vendor_settings(
    s: &certpilot_core::model::deploy::Settings,
) -> Result<(), (String, String)> {
    let token = s.get("token-secret").and_then(|v| v.as_str()).unwrap_or("");
    check_secret_name(token)?;
    if let Some(url) = s.get("api-url").and_then(|v| v.as_str()) {
        check_api_url(url)?;
    }
    Ok(())
}

/// Reads the credential `name` from `secrets`, trimmed; a missing one is named with how to
/// store it.
pub(crate) async fn credential(
    secrets: &Arc<dyn SecretStore>,
    name: &str,
) -> Result<String, DeployError> {
    let (_, value) = secrets
        .get(name, &SecretVersion::Current)
        .await?
        .ok_or_else(|| {
            DeployError::Config(format!(
                "the secret {name:?} is not in the secret store; store it with \
                 `certpilot secrets set {name} --from-file FILE`"
            ))
        })?;
    let text = value
        .expose_str()
        .map_err(|_| DeployError::Config(format!("the secret {name:?} is not text")))?;
    Ok(text.trim().to_owned())
}
