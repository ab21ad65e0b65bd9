//! Cloudflare's custom certificates API (`/zones/{zone}/custom_certificates`), with its
//! envelope (`success` is checked as well as the status), its error codes in clear words,
//! and its rate limit: a 429 blocks every call for five minutes, so it is reported with the
//! time to come back rather than retried.

use certpilot_core::ports::DeployError;
use reqwest::Method;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::http::{Answer, CallError, Http};

/// Cloudflare's API.
pub const DEFAULT_API: &str = "https://api.cloudflare.com/client/v4";
/// How long Cloudflare locks a token out after its limit when it does not say.
const LOCKOUT: time::Duration = time::Duration::minutes(5);
/// Most pages of certificates read.
const MAX_PAGES: u32 = 20;

/// A custom certificate as the API lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CustomCertificate {
    pub id: String,
    pub hosts: Vec<String>,
    pub status: String,
}

/// The API for one zone, with one token.
pub(crate) struct Cloudflare {
    http: Http,
    base: String,
    zone: String,
    token: String,
}

/// Clear words for Cloudflare's documented error codes.
fn explain(code: i64, zone: &str) -> Option<String> {
    Some(match code {
        1002 => "Cloudflare refused the certificate (or its id) as invalid".into(),
        1212 => "the zone holds as many custom certificates as its plan allows; remove one or raise the quota".into(),
        1220 | 1228 => "this certificate is already uploaded to the zone".into(),
        1305 => "the certificate cannot be deleted now".into(),
        2005 => "the zone's quota for this type of certificate is used up".into(),
        2100 => "Cloudflare cannot build a chain from the certificate (a root was uploaded with the leaf?)".into(),
        2101 => "the upload holds no leaf certificate".into(),
        2103 => format!("none of the certificate's names is a hostname of zone {zone}: check zone-id"),
        2106 => "Cloudflare cannot read the private key".into(),
        2200 => "the certificate and the private key do not match".into(),
        _ => return None,
    })
}

impl Cloudflare {
    pub(crate) fn new(base: &str, zone: &str, token: String) -> Result<Self, DeployError> {
        Ok(Cloudflare {
            http: Http::new()?,
            base: base.trim_end_matches('/').to_owned(),
            zone: zone.to_owned(),
            token,
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, CallError> {
        let url = format!(
            "{}/zones/{}/custom_certificates{path}",
            self.base, self.zone
        );
        let answer = self
            .http
            .send(
                "Cloudflare",
                method.clone(),
                &url,
                &[
                    ("authorization", format!("Bearer {}", self.token)),
                    ("content-type", "application/json".into()),
                ],
                body.as_ref(),
            )
            .await?;
        self.judge(&method, path, answer)
    }

    fn judge(&self, method: &Method, path: &str, answer: Answer) -> Result<Value, CallError> {
        let what = format!("Cloudflare: {method} custom_certificates{path}");
        if answer.status == 429 {
            let wait = answer
                .header("retry-after")
                .and_then(|v| v.trim().parse::<i64>().ok())
                .map_or(LOCKOUT, time::Duration::seconds);
            return Err(CallError::RateLimited {
                vendor: "Cloudflare",
                until: OffsetDateTime::now_utc() + wait,
            });
        }
        let envelope: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        let success = envelope["success"].as_bool() == Some(true);
        if (200..300).contains(&answer.status) && success {
            return Ok(envelope["result"].clone());
        }
        let errors: Vec<(i64, String)> = envelope["errors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        (
                            e["code"].as_i64().unwrap_or(0),
                            e["message"].as_str().unwrap_or("").to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let said = if errors.is_empty() {
            format!("HTTP {} without an error", answer.status)
        } else {
            errors
                .iter()
                .map(|(c, m)| format!("{c} {m}"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let words = errors.iter().find_map(|(c, _)| explain(*c, &self.zone));
        let message = match (answer.status, words) {
            (401 | 403, _) => format!(
                "{what}: the token is refused; it needs Zone › SSL and Certificates › Edit on zone {} (Cloudflare said: {said})",
                self.zone
            ),
            (_, Some(w)) => format!("{what}: {w} (Cloudflare said: {said})"),
            _ => format!("{what}: Cloudflare said: {said}"),
        };
        Err(CallError::Failed(if answer.status >= 500 {
            DeployError::Unavailable(message)
        } else {
            DeployError::Target(message)
        }))
    }

    fn parse(v: &Value) -> Option<CustomCertificate> {
        Some(CustomCertificate {
            id: v["id"].as_str()?.to_owned(),
            hosts: v["hosts"]
                .as_array()
                .map(|h| {
                    h.iter()
                        .filter_map(|x| x.as_str().map(str::to_ascii_lowercase))
                        .collect()
                })
                .unwrap_or_default(),
            status: v["status"].as_str().unwrap_or("").to_owned(),
        })
    }

    /// The certificate `id`, or `None` when the zone has no such certificate.
    pub(crate) async fn get(&self, id: &str) -> Result<Option<CustomCertificate>, CallError> {
        match self.call(Method::GET, &format!("/{id}"), None).await {
            Ok(v) => Ok(Self::parse(&v)),
            Err(CallError::Failed(DeployError::Target(m)))
                if m.contains(" 1002 ") || m.contains("HTTP 404") || m.contains("1003") =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The zone's custom certificates still in use (active, pending or initializing).
    pub(crate) async fn list(&self) -> Result<Vec<CustomCertificate>, CallError> {
        let mut out = Vec::new();
        for page in 1..=MAX_PAGES {
            let url = format!(
                "{}/zones/{}/custom_certificates?page={page}&per_page=50",
                self.base, self.zone
            );
            let answer = self
                .http
                .send(
                    "Cloudflare",
                    Method::GET,
                    &url,
                    &[("authorization", format!("Bearer {}", self.token))],
                    None,
                )
                .await?;
            let total_pages = serde_json::from_slice::<Value>(&answer.body)
                .ok()
                .and_then(|v| v["result_info"]["total_pages"].as_u64())
                .unwrap_or(1);
            let result = self.judge(&Method::GET, "", answer)?;
            out.extend(
                result
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Self::parse)
                    .filter(|c| matches!(c.status.as_str(), "active" | "pending" | "initializing")),
            );
            if u64::from(page) >= total_pages {
                break;
            }
        }
        Ok(out)
    }

    /// Uploads a new `sni_custom` certificate (the API's default type is legacy).
    pub(crate) async fn create(
        &self,
        chain: &str,
        key: &str,
        bundle_method: &str,
    ) -> Result<CustomCertificate, CallError> {
        let body = json!({
            "certificate": chain,
            "private_key": key,
            "bundle_method": bundle_method,
            "type": "sni_custom",
        });
        let v = self.call(Method::POST, "", Some(body)).await?;
        Self::parse(&v).ok_or_else(|| {
            CallError::Failed(DeployError::Target(
                "Cloudflare: the created certificate came back without an id".into(),
            ))
        })
    }

    /// Replaces certificate `id`'s certificate and key. Cloudflare answers with a **new** id
    /// and deletes the old one once the new one is active.
    pub(crate) async fn replace(
        &self,
        id: &str,
        chain: &str,
        key: &str,
        bundle_method: &str,
    ) -> Result<CustomCertificate, CallError> {
        let body = json!({
            "certificate": chain,
            "private_key": key,
            "bundle_method": bundle_method,
        });
        let v = self
            .call(Method::PATCH, &format!("/{id}"), Some(body))
            .await?;
        Self::parse(&v).ok_or_else(|| {
            CallError::Failed(DeployError::Target(
                "Cloudflare: the replaced certificate came back without an id".into(),
            ))
        })
    }

    /// Deletes certificate `id` (a missing one is no error).
    pub(crate) async fn delete(&self, id: &str) -> Result<(), CallError> {
        match self.call(Method::DELETE, &format!("/{id}"), None).await {
            Ok(_) => Ok(()),
            Err(CallError::Failed(DeployError::Target(m)))
                if m.contains(" 1002 ") || m.contains("HTTP 404") =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}
