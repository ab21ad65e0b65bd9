//! Akamai CPS (`/cps/v2/enrollments/{id}`…), signed with EdgeGrid, in CPS's versioned media
//! types, with its RFC 7807 errors in Akamai's words and its account-wide rate limit (35
//! requests a minute, shared by every client of the account): this process keeps under it
//! by itself, and a 429's `Retry-After` is honoured rather than retried at once.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use certpilot_core::ports::DeployError;
use reqwest::Method;
use serde_json::Value;
use time::OffsetDateTime;

use super::edgegrid::{self, Credentials, Signed};
use crate::http::{CallError, Http};

/// Requests per minute per account (Akamai's limit for CPS).
pub(crate) const PER_MINUTE: usize = 35;

/// Requests sent in the last minute, per API client, in this process.
static SENT: Mutex<Option<HashMap<String, VecDeque<Instant>>>> = Mutex::new(None);

/// An `.edgerc` section: `client_secret`, `host`, `access_token`, `client_token`.
pub(crate) fn parse_edgerc(text: &str) -> Result<(Credentials, String), String> {
    let mut fields: HashMap<&str, &str> = HashMap::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') && !fields.is_empty() {
            break; // the first section only
        }
        if let Some((k, v)) = line.split_once('=') {
            fields.insert(k.trim(), v.trim());
        }
    }
    let get = |k: &str| {
        fields
            .get(k)
            .map(|v| (*v).to_owned())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("the credentials have no {k} (an .edgerc section: client_secret, host, access_token, client_token)"))
    };
    Ok((
        Credentials {
            client_token: get("client_token")?,
            client_secret: get("client_secret")?,
            access_token: get("access_token")?,
        },
        get("host")?,
    ))
}

/// A change's status as CPS reports it.
#[derive(Clone, Debug)]
pub(crate) struct ChangeStatus {
    pub status: String,
    /// `awaiting-input`, `running`, `error`.
    pub state: String,
    /// The error's description when `state` is `error`.
    pub error: Option<String>,
}

/// One enrollment, through one API client.
pub(crate) struct Cps {
    http: Http,
    base: String,
    host: String,
    credentials: Credentials,
    pub enrollment: u64,
    per_minute: usize,
}

fn media(resource: &str, version: u32) -> String {
    format!("application/vnd.akamai.cps.{resource}.v{version}+json")
}

/// Takes a place in this client's per-minute budget, or says when one frees up.
fn pace(client: &str, per_minute: usize) -> Result<(), OffsetDateTime> {
    let mut guard = SENT.lock().unwrap_or_else(|p| p.into_inner());
    let sent = guard
        .get_or_insert_with(HashMap::new)
        .entry(client.to_owned())
        .or_default();
    let now = Instant::now();
    while sent
        .front()
        .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
    {
        sent.pop_front();
    }
    if sent.len() >= per_minute {
        let free = sent.front().map_or(Duration::ZERO, |t| {
            Duration::from_secs(60).saturating_sub(now.duration_since(*t))
        });
        return Err(OffsetDateTime::now_utc() + free);
    }
    sent.push_back(now);
    Ok(())
}

impl Cps {
    /// `api_url` overrides `https://HOST` (a proxy or a stand-in on this machine).
    pub(crate) fn new(
        credentials: Credentials,
        host: &str,
        api_url: Option<&str>,
        enrollment: u64,
        per_minute: usize,
    ) -> Result<Self, DeployError> {
        let base = api_url.map_or_else(
            || format!("https://{host}"),
            |u| u.trim_end_matches('/').to_owned(),
        );
        let authority = base
            .split_once("://")
            .map_or(base.as_str(), |(_, r)| r)
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        Ok(Cps {
            http: Http::new()?,
            base,
            host: authority,
            credentials,
            enrollment,
            per_minute,
        })
    }

    /// The enrollment's path.
    pub(crate) fn path(&self) -> String {
        format!("/cps/v2/enrollments/{}", self.enrollment)
    }

    /// Sends a signed request; the JSON answer of a 2xx.
    pub(crate) async fn call(
        &self,
        method: Method,
        path_and_query: &str,
        accept: &str,
        body: Option<(&str, &Value)>,
    ) -> Result<Value, CallError> {
        if let Err(until) = pace(&self.credentials.client_token, self.per_minute) {
            return Err(CallError::RateLimited {
                vendor: "Akamai",
                until,
            });
        }
        let raw = body.map(|(_, v)| v.to_string()).unwrap_or_default();
        let scheme = self.base.split("://").next().unwrap_or("https");
        let authorization = edgegrid::authorization(
            &self.credentials,
            &Signed {
                method: method.as_str(),
                scheme,
                host: &self.host,
                path_and_query,
                headers: &[],
                body: raw.as_bytes(),
            },
            &edgegrid::timestamp_now(),
            &edgegrid::nonce(),
            edgegrid::MAX_BODY,
        );
        let mut headers = vec![
            ("authorization", authorization),
            ("accept", accept.to_owned()),
        ];
        if let Some((content_type, _)) = body {
            headers.push(("content-type", format!("{content_type}; charset=utf-8")));
        }
        let url = format!("{}{path_and_query}", self.base);
        let answer = self
            .http
            .send(
                "Akamai",
                method.clone(),
                &url,
                &headers,
                body.map(|(_, v)| v),
            )
            .await?;
        let route = path_and_query.split('?').next().unwrap_or(path_and_query);
        let what = format!("Akamai: {method} {route}");
        if answer.status == 429 {
            let wait = answer
                .header("retry-after")
                .and_then(|v| v.trim().trim_end_matches('-').parse::<i64>().ok())
                .unwrap_or(60);
            return Err(CallError::RateLimited {
                vendor: "Akamai",
                until: OffsetDateTime::now_utc() + time::Duration::seconds(wait),
            });
        }
        if (200..300).contains(&answer.status) {
            return Ok(serde_json::from_slice(&answer.body).unwrap_or(Value::Null));
        }
        let v: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        let words = match (v["title"].as_str(), v["detail"].as_str()) {
            (Some(t), Some(d)) => format!("{t}: {d}"),
            (Some(t), None) => t.to_owned(),
            (None, Some(d)) => d.to_owned(),
            (None, None) => format!("HTTP {} without an explanation", answer.status),
        };
        let message = match answer.status {
            401 | 403 => format!(
                "{what}: the API client is refused; it needs the CPS API with READ-WRITE access \
                 to the enrollment's contract (Akamai said: {words})"
            ),
            _ => format!("{what}: Akamai said: {words} (HTTP {})", answer.status),
        };
        Err(CallError::Failed(if answer.status >= 500 {
            DeployError::Unavailable(message)
        } else {
            DeployError::Target(message)
        }))
    }

    /// The enrollment.
    pub(crate) async fn enrollment(&self) -> Result<Value, CallError> {
        self.call(Method::GET, &self.path(), &media("enrollment", 11), None)
            .await
    }

    /// The id of the pending change, if any: the last segment of `pendingChanges[0]`, an
    /// object (v11) or a string (older versions), whatever prefix its path has.
    pub(crate) fn pending_change(enrollment: &Value) -> Option<u64> {
        let first = enrollment["pendingChanges"].as_array()?.first()?;
        let location = first["location"].as_str().or_else(|| first.as_str())?;
        location
            .trim_end_matches('/')
            .rsplit('/')
            .next()?
            .parse()
            .ok()
    }

    /// Starts a renewal: a new change, whose CSR Akamai makes with a new key.
    pub(crate) async fn force_renewal(&self, enrollment: &Value) -> Result<(), CallError> {
        let path = format!("{}?force-renewal=true", self.path());
        self.call(
            Method::PUT,
            &path,
            &media("enrollment-status", 1),
            Some((&media("enrollment", 11), enrollment)),
        )
        .await
        .map(|_| ())
    }

    fn change_path(&self, change: u64) -> String {
        format!("{}/changes/{change}", self.path())
    }

    /// The change's status.
    pub(crate) async fn change(&self, change: u64) -> Result<ChangeStatus, CallError> {
        let v = self
            .call(
                Method::GET,
                &self.change_path(change),
                &media("change", 2),
                None,
            )
            .await?;
        let info = &v["statusInfo"];
        Ok(ChangeStatus {
            status: info["status"].as_str().unwrap_or("").to_owned(),
            state: info["state"].as_str().unwrap_or("").to_owned(),
            error: info["error"]["description"].as_str().map(str::to_owned),
        })
    }

    /// The change's CSRs: `(keyAlgorithm, PEM)`.
    pub(crate) async fn csrs(&self, change: u64) -> Result<Vec<(String, String)>, CallError> {
        let path = format!("{}/input/info/third-party-csr", self.change_path(change));
        let v = self
            .call(Method::GET, &path, &media("csr", 2), None)
            .await?;
        Ok(v["csrs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| {
                Some((
                    c["keyAlgorithm"].as_str()?.to_owned(),
                    c["csr"].as_str()?.to_owned(),
                ))
            })
            .collect())
    }

    /// Uploads `(keyAlgorithm, leaf PEM, intermediates PEM)` for each CSR.
    pub(crate) async fn upload(
        &self,
        change: u64,
        certificates: &[(String, String, String)],
    ) -> Result<(), CallError> {
        let path = format!(
            "{}/input/update/third-party-cert-and-trust-chain",
            self.change_path(change)
        );
        let body = serde_json::json!({"certificatesAndTrustChains": certificates
            .iter()
            .map(|(alg, leaf, chain)| serde_json::json!({"certificate": leaf, "trustChain": chain, "keyAlgorithm": alg}))
            .collect::<Vec<_>>()});
        self.call(
            Method::POST,
            &path,
            &media("change-id", 1),
            Some((&media("certificate-and-trust-chain", 2), &body)),
        )
        .await
        .map(|_| ())
    }

    /// The warnings of a review step (`post-verification-warnings`, `pre-verification-warnings`),
    /// one per line.
    pub(crate) async fn warnings(
        &self,
        change: u64,
        which: &str,
    ) -> Result<Vec<String>, CallError> {
        let path = format!("{}/input/info/{which}", self.change_path(change));
        let v = self
            .call(Method::GET, &path, &media("warnings", 1), None)
            .await?;
        Ok(v["warnings"]
            .as_str()
            .unwrap_or("")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// Acknowledges a review step's warnings.
    pub(crate) async fn acknowledge(&self, change: u64, which: &str) -> Result<(), CallError> {
        let path = format!("{}/input/update/{which}-ack", self.change_path(change));
        let body = serde_json::json!({"acknowledgement": "acknowledge"});
        self.call(
            Method::POST,
            &path,
            &media("change-id", 1),
            Some((&media("acknowledgement", 1), &body)),
        )
        .await
        .map(|_| ())
    }

    /// Acknowledges change management (staging proven): the change goes to production.
    pub(crate) async fn acknowledge_change_management(&self, change: u64) -> Result<(), CallError> {
        let info_path = format!(
            "{}/input/info/change-management-info",
            self.change_path(change)
        );
        let info = self
            .call(
                Method::GET,
                &info_path,
                &media("change-management-info", 5),
                None,
            )
            .await?;
        let path = format!(
            "{}/input/update/change-management-ack",
            self.change_path(change)
        );
        let (media_type, body) = match info["validationResultHash"].as_str() {
            Some(hash) => (
                media("acknowledgement-with-hash", 1),
                serde_json::json!({"acknowledgement": "acknowledge", "hash": hash}),
            ),
            None => (
                media("acknowledgement", 1),
                serde_json::json!({"acknowledgement": "acknowledge"}),
            ),
        };
        self.call(
            Method::POST,
            &path,
            &media("change-id", 1),
            Some((&media_type, &body)),
        )
        .await
        .map(|_| ())
    }

    /// Cancels the pending change.
    pub(crate) async fn cancel(&self, change: u64) -> Result<(), CallError> {
        self.call(
            Method::DELETE,
            &self.change_path(change),
            &media("change-id", 1),
            None,
        )
        .await
        .map(|_| ())
    }

    /// The certificates production serves: leaf PEMs, the primary first.
    pub(crate) async fn production(&self) -> Result<Vec<String>, CallError> {
        let path = format!("{}/deployments/production", self.path());
        let v = self
            .call(Method::GET, &path, &media("deployment", 8), None)
            .await?;
        let mut out: Vec<String> = v["primaryCertificate"]["certificate"]
            .as_str()
            .map(str::to_owned)
            .into_iter()
            .collect();
        out.extend(
            v["multiStackedCertificates"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["certificate"].as_str().map(str::to_owned)),
        );
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pending_change_is_the_last_segment_in_any_version_and_prefix() {
        let v11 = serde_json::json!({"pendingChanges": [
            {"location": "/cps/v2/enrollments/10002/changes/20001", "changeType": "renewal"}]});
        let older = serde_json::json!({"pendingChanges": ["/cps-api/enrollments/1/changes/2"]});
        let none = serde_json::json!({"pendingChanges": []});
        assert_eq!(Cps::pending_change(&v11), Some(20001));
        assert_eq!(Cps::pending_change(&older), Some(2));
        assert_eq!(Cps::pending_change(&none), None);
        assert_eq!(Cps::pending_change(&serde_json::json!({})), None);
    }

    #[test]
    fn an_edgerc_section_reads_and_a_missing_field_is_named() {
        let (c, host) = parse_edgerc(
            "[default]\nclient_secret = s3cr3t=\nhost = akab-x.luna.akamaiapis.net\naccess_token = akab-a\nclient_token = akab-c\n[other]\nhost = no\n",
        )
        .unwrap();
        assert_eq!(
            (
                c.client_secret.as_str(),
                host.as_str(),
                c.access_token.as_str(),
                c.client_token.as_str()
            ),
            ("s3cr3t=", "akab-x.luna.akamaiapis.net", "akab-a", "akab-c")
        );
        let e = parse_edgerc("[default]\nhost = h\n").unwrap_err();
        assert!(e.contains("client_token"), "{e}");
        assert!(
            !format!("{c:?}").contains("s3cr3t"),
            "Debug hides the secret"
        );
    }
}
