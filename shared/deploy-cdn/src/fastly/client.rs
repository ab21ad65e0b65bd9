//! Fastly's TLS API for custom certificates (`/tls/private_keys`, `/tls/certificates`,
//! `/tls/activations`, `/tls/configurations`), spoken in JSON:API with `Fastly-Key`.
//!
//! Its rate limit counts writes only (GETs are free): every write's answer carries
//! `Fastly-RateLimit-Remaining` and `Fastly-RateLimit-Reset` (epoch seconds), there is no
//! `Retry-After`, and a 429 lasts until the reset. The client remembers what the last write
//! said and, once nothing remains, sends no further write before the reset.
//!
//! Errors come in three shapes (JSON:API `errors[]`, the legacy `{msg, detail}`, and
//! `application/problem+json`); each is reported in Fastly's own words.

use std::sync::Mutex;

use certpilot_core::ports::DeployError;
use reqwest::Method;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::http::{Answer, CallError, Http};

/// Fastly's API.
pub const DEFAULT_API: &str = "https://api.fastly.com";
/// JSON:API's media type: filters are ignored unless it is the `Accept`.
const JSON_API: &str = "application/vnd.api+json";
/// How long a 429 without a reset header is taken to last (Fastly's window is an hour).
const UNSAID_RESET: time::Duration = time::Duration::hours(1);
/// Items per page, and most pages read.
const PAGE_SIZE: u32 = 100;
const MAX_PAGES: u32 = 20;

/// A certificate as Fastly describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FastlyCertificate {
    pub id: String,
    /// The leaf's serial number, decimal (as Fastly gives it).
    pub serial: String,
    /// Its TLS domains (its SAN entries), lowercase.
    pub domains: Vec<String>,
}

/// A domain's activation: which certificate serves it, under which configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Activation {
    pub id: String,
    pub domain: String,
    pub certificate: String,
}

/// A private key as Fastly lists it (never the key itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PrivateKey {
    pub id: String,
    pub name: String,
}

/// The API, with one token.
pub(crate) struct Fastly {
    http: Http,
    base: String,
    token: String,
    /// What the last write's answer said: writes remaining, and when the window resets.
    budget: Mutex<Option<(i64, OffsetDateTime)>>,
}

/// The words of an error answer in any of Fastly's three shapes.
fn said(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let join = |a: &Value, b: &Value| match (a.as_str(), b.as_str()) {
        (Some(a), Some(b)) if !b.is_empty() => Some(format!("{a}: {b}")),
        (Some(a), _) => Some(a.to_owned()),
        (None, Some(b)) => Some(b.to_owned()),
        (None, None) => None,
    };
    if let Some(errors) = v["errors"].as_array() {
        let words: Vec<String> = errors
            .iter()
            .filter_map(|e| join(&e["title"], &e["detail"]))
            .collect();
        return (!words.is_empty()).then(|| words.join("; "));
    }
    join(&v["msg"], &v["detail"]).or_else(|| join(&v["title"], &v["detail"]))
}

fn parse_certificate(data: &Value) -> Option<FastlyCertificate> {
    Some(FastlyCertificate {
        id: data["id"].as_str()?.to_owned(),
        serial: data["attributes"]["serial_number"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
        domains: data["relationships"]["tls_domains"]["data"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|d| d["id"].as_str().map(str::to_ascii_lowercase))
                    .collect()
            })
            .unwrap_or_default(),
    })
}

fn parse_activation(data: &Value) -> Option<Activation> {
    let rel = &data["relationships"];
    Some(Activation {
        id: data["id"].as_str()?.to_owned(),
        domain: rel["tls_domain"]["data"]["id"]
            .as_str()?
            .to_ascii_lowercase(),
        certificate: rel["tls_certificate"]["data"]["id"].as_str()?.to_owned(),
    })
}

/// `filter[NAME]=VALUE`, encoded for a query.
fn filter(name: &str, value: &str) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    format!("{}={}", enc(&format!("filter[{name}]")), enc(value))
}

impl Fastly {
    pub(crate) fn new(base: &str, token: String) -> Result<Self, DeployError> {
        Ok(Fastly {
            http: Http::new()?,
            base: base.trim_end_matches('/').to_owned(),
            token,
            budget: Mutex::new(None),
        })
    }

    fn remember_budget(&self, answer: &Answer) {
        let remaining = answer
            .header("fastly-ratelimit-remaining")
            .and_then(|v| v.trim().parse::<i64>().ok());
        let reset = answer
            .header("fastly-ratelimit-reset")
            .and_then(|v| v.trim().parse::<i64>().ok())
            .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok());
        if let (Some(remaining), Some(reset)) = (remaining, reset)
            && let Ok(mut b) = self.budget.lock()
        {
            *b = Some((remaining, reset));
        }
    }

    /// Refuses to send a write the budget says Fastly would refuse.
    fn check_budget(&self) -> Result<(), CallError> {
        let budget = self.budget.lock().ok().and_then(|b| *b);
        if let Some((remaining, reset)) = budget
            && remaining <= 0
            && reset > OffsetDateTime::now_utc()
        {
            return Err(CallError::RateLimited {
                vendor: "Fastly",
                until: reset,
            });
        }
        Ok(())
    }

    /// Sends `method path` with an optional JSON:API `body`; the `data` of a 2xx answer
    /// (`Null` for 204), the whole document for lists.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, CallError> {
        let write = method != Method::GET;
        if write {
            self.check_budget()?;
        }
        let url = format!("{}{path}", self.base);
        let mut headers = vec![
            ("fastly-key", self.token.clone()),
            ("accept", JSON_API.to_owned()),
        ];
        if body.is_some() {
            headers.push(("content-type", JSON_API.to_owned()));
        }
        let answer = self
            .http
            .send("Fastly", method.clone(), &url, &headers, body.as_ref())
            .await?;
        if write {
            self.remember_budget(&answer);
        }
        let route = path.split('?').next().unwrap_or(path);
        let what = format!("Fastly: {method} {route}");
        if answer.status == 429 {
            let until = answer
                .header("fastly-ratelimit-reset")
                .and_then(|v| v.trim().parse::<i64>().ok())
                .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
                .unwrap_or_else(|| OffsetDateTime::now_utc() + UNSAID_RESET);
            return Err(CallError::RateLimited {
                vendor: "Fastly",
                until,
            });
        }
        if (200..300).contains(&answer.status) {
            if answer.body.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&answer.body).map_err(|_| {
                CallError::Failed(DeployError::Unavailable(format!(
                    "{what}: the answer (HTTP {}) is not JSON",
                    answer.status
                )))
            });
        }
        let words = said(&answer.body)
            .unwrap_or_else(|| format!("HTTP {} without an explanation", answer.status));
        let message = match answer.status {
            401 | 403 => format!(
                "{what}: the token is refused; it needs the global scope, of a user with TLS \
                 management permission (Fastly said: {words})"
            ),
            404 => format!("{what}: not found (Fastly said: {words})"),
            _ => format!("{what}: Fastly said: {words} (HTTP {})", answer.status),
        };
        Err(CallError::Failed(if answer.status >= 500 {
            DeployError::Unavailable(message)
        } else {
            DeployError::Target(message)
        }))
    }

    /// Every item of a JSON:API list at `path` (with `query`), page by page.
    async fn list(&self, path: &str, query: &[String]) -> Result<Vec<Value>, CallError> {
        let mut out = Vec::new();
        for page in 1..=MAX_PAGES {
            let mut q = query.to_vec();
            q.push(format!("page%5Bnumber%5D={page}"));
            q.push(format!("page%5Bsize%5D={PAGE_SIZE}"));
            let doc = self
                .call(Method::GET, &format!("{path}?{}", q.join("&")), None)
                .await?;
            out.extend(doc["data"].as_array().into_iter().flatten().cloned());
            let total_pages = doc["meta"]["total_pages"].as_u64().unwrap_or(1);
            if doc["links"]["next"].is_null() || u64::from(page) >= total_pages {
                break;
            }
        }
        Ok(out)
    }

    fn not_found(e: &CallError) -> bool {
        matches!(e, CallError::Failed(DeployError::Target(m)) if m.contains(": not found"))
    }

    /// The certificate `id`, or `None` when the account has no such certificate.
    pub(crate) async fn certificate(
        &self,
        id: &str,
    ) -> Result<Option<FastlyCertificate>, CallError> {
        match self
            .call(Method::GET, &format!("/tls/certificates/{id}"), None)
            .await
        {
            Ok(doc) => Ok(parse_certificate(&doc["data"])),
            Err(e) if Self::not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The certificates covering `domain`.
    pub(crate) async fn certificates_for(
        &self,
        domain: &str,
    ) -> Result<Vec<FastlyCertificate>, CallError> {
        Ok(self
            .list("/tls/certificates", &[filter("tls_domains.id", domain)])
            .await?
            .iter()
            .filter_map(parse_certificate)
            .collect())
    }

    /// Uploads a private key (PKCS#8 PEM) under `name`; a key Fastly already holds (409)
    /// is no error, since Fastly pairs certificates with keys by their public key.
    pub(crate) async fn upload_key(&self, pem: &str, name: &str) -> Result<(), CallError> {
        let body =
            json!({"data": {"type": "tls_private_key", "attributes": {"key": pem, "name": name}}});
        match self
            .call(Method::POST, "/tls/private_keys", Some(body))
            .await
        {
            Ok(_) => Ok(()),
            Err(CallError::Failed(DeployError::Target(m))) if m.contains("(HTTP 409)") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The keys no certificate uses.
    pub(crate) async fn unused_keys(&self) -> Result<Vec<PrivateKey>, CallError> {
        Ok(self
            .list("/tls/private_keys", &[filter("in_use", "false")])
            .await?
            .iter()
            .filter_map(|d| {
                Some(PrivateKey {
                    id: d["id"].as_str()?.to_owned(),
                    name: d["attributes"]["name"].as_str().unwrap_or("").to_owned(),
                })
            })
            .collect())
    }

    /// Deletes key `id`. Fastly refuses while a certificate uses it: then it stays.
    pub(crate) async fn delete_key(&self, id: &str) -> Result<bool, CallError> {
        match self
            .call(Method::DELETE, &format!("/tls/private_keys/{id}"), None)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if Self::not_found(&e) => Ok(true),
            Err(CallError::Failed(DeployError::Target(_))) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Uploads a certificate (its key must be uploaded first).
    pub(crate) async fn create_certificate(
        &self,
        chain: &str,
        name: &str,
    ) -> Result<FastlyCertificate, CallError> {
        let body = json!({"data": {"type": "tls_certificate", "attributes": {"cert_blob": chain, "name": name}}});
        let doc = self
            .call(Method::POST, "/tls/certificates", Some(body))
            .await?;
        parse_certificate(&doc["data"]).ok_or_else(|| {
            CallError::Failed(DeployError::Target(
                "Fastly: the uploaded certificate came back without an id".into(),
            ))
        })
    }

    /// Replaces certificate `id` in place: the id and every activation stay. Fastly takes
    /// it only when the new certificate covers the same names or more.
    pub(crate) async fn replace_certificate(
        &self,
        id: &str,
        chain: &str,
        name: &str,
    ) -> Result<FastlyCertificate, CallError> {
        let body = json!({"data": {"type": "tls_certificate", "id": id, "attributes": {"cert_blob": chain, "name": name}}});
        let doc = self
            .call(
                Method::PATCH,
                &format!("/tls/certificates/{id}"),
                Some(body),
            )
            .await?;
        parse_certificate(&doc["data"]).ok_or_else(|| {
            CallError::Failed(DeployError::Target(
                "Fastly: the replaced certificate came back without an id".into(),
            ))
        })
    }

    /// Deletes certificate `id` (Fastly refuses while a domain is activated on it).
    pub(crate) async fn delete_certificate(&self, id: &str) -> Result<(), CallError> {
        match self
            .call(Method::DELETE, &format!("/tls/certificates/{id}"), None)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if Self::not_found(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The activations of `domain`.
    pub(crate) async fn activations_of_domain(
        &self,
        domain: &str,
    ) -> Result<Vec<Activation>, CallError> {
        Ok(self
            .list("/tls/activations", &[filter("tls_domain.id", domain)])
            .await?
            .iter()
            .filter_map(parse_activation)
            .collect())
    }

    /// The activations on certificate `id`.
    pub(crate) async fn activations_of_certificate(
        &self,
        id: &str,
    ) -> Result<Vec<Activation>, CallError> {
        Ok(self
            .list("/tls/activations", &[filter("tls_certificate.id", id)])
            .await?
            .iter()
            .filter_map(parse_activation)
            .collect())
    }

    /// Serves `domain` with certificate `certificate` under `configuration`.
    pub(crate) async fn activate(
        &self,
        domain: &str,
        certificate: &str,
        configuration: &str,
    ) -> Result<(), CallError> {
        let body = json!({"data": {"type": "tls_activation", "relationships": {
            "tls_certificate": {"data": {"type": "tls_certificate", "id": certificate}},
            "tls_configuration": {"data": {"type": "tls_configuration", "id": configuration}},
            "tls_domain": {"data": {"type": "tls_domain", "id": domain}},
        }}});
        self.call(Method::POST, "/tls/activations", Some(body))
            .await?;
        Ok(())
    }

    /// Moves activation `id` to certificate `certificate`.
    pub(crate) async fn move_activation(
        &self,
        id: &str,
        certificate: &str,
    ) -> Result<(), CallError> {
        let body = json!({"data": {"type": "tls_activation", "id": id, "relationships": {
            "tls_certificate": {"data": {"type": "tls_certificate", "id": certificate}},
        }}});
        self.call(Method::PATCH, &format!("/tls/activations/{id}"), Some(body))
            .await?;
        Ok(())
    }

    /// Stops serving a domain through activation `id`.
    pub(crate) async fn deactivate(&self, id: &str) -> Result<(), CallError> {
        match self
            .call(Method::DELETE, &format!("/tls/activations/{id}"), None)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if Self::not_found(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The account's default TLS configuration.
    pub(crate) async fn default_configuration(&self) -> Result<String, CallError> {
        let all = self.list("/tls/configurations", &[]).await?;
        all.iter()
            .find(|c| c["attributes"]["default"].as_bool() == Some(true))
            .or_else(|| (all.len() == 1).then(|| &all[0]))
            .and_then(|c| c["id"].as_str().map(str::to_owned))
            .ok_or_else(|| {
                CallError::Failed(DeployError::Config(
                    "Fastly: the account has no default TLS configuration; set configuration-id \
                     (GET /tls/configurations lists them)"
                        .into(),
                ))
            })
    }
}
