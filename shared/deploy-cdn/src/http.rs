//! The one HTTP client the CDN targets call their vendors through: bounded in time and in
//! what it reads, following no redirects, and naming the vendor (never the token) in errors.

use std::time::Duration;

use certpilot_core::ports::{DeployError, Deployed};
use time::OffsetDateTime;

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request may take, answer included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The most of an answer that is read.
const MAX_ANSWER: usize = 4 * 1024 * 1024;

/// What came back.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: u16,
    /// Response headers, names lowercase.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    /// The header `name` (lowercase).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone)]
pub(crate) struct Http(reqwest::Client);

/// The certificates of a PEM bundle of CAs to trust (its error says what is wrong).
pub(crate) fn roots(pem: &str) -> Result<Vec<reqwest::Certificate>, String> {
    match reqwest::Certificate::from_pem_bundle(pem.as_bytes()) {
        Ok(certs) if !certs.is_empty() => Ok(certs),
        Ok(_) => Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into()),
        Err(_) => Err("is not a PEM bundle of certificates".into()),
    }
}

impl Http {
    pub(crate) fn new() -> Result<Self, DeployError> {
        Self::trusting(None)
    }

    /// A client trusting the CAs of `ca_pem` besides the public roots.
    pub(crate) fn trusting(ca_pem: Option<&str>) -> Result<Self, DeployError> {
        let extra = match ca_pem {
            Some(pem) => roots(pem).map_err(|why| DeployError::Config(format!("ca-pem {why}")))?,
            None => vec![],
        };
        reqwest::Client::builder()
            .tls_certs_merge(extra)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("certpilot/", env!("CARGO_PKG_VERSION")))
            .build()
            .map(Http)
            .map_err(|e| DeployError::Config(format!("cannot build the HTTPS client: {e}")))
    }

    /// Sends `method path` to `base` with `headers` and an optional JSON `body`.
    pub(crate) async fn send(
        &self,
        vendor: &str,
        method: reqwest::Method,
        url: &str,
        headers: &[(&str, String)],
        body: Option<&serde_json::Value>,
    ) -> Result<Answer, DeployError> {
        let mut request = self.0.request(method.clone(), url);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        if let Some(b) = body {
            request = request.body(b.to_string());
        }
        let mut response = request.send().await.map_err(|e| {
            // reqwest's text may carry the URL's query; say what failed without it.
            let why = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "cannot connect"
            } else {
                "request failed"
            };
            DeployError::Unavailable(format!("{vendor}: {method} {}: {why}", path_of(url)))
        })?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter_map(|(k, v)| {
                v.to_str()
                    .ok()
                    .map(|v| (k.as_str().to_ascii_lowercase(), v.to_owned()))
            })
            .collect();
        let mut body = Vec::new();
        while body.len() < MAX_ANSWER {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(_) => {
                    return Err(DeployError::Unavailable(format!(
                        "{vendor}: {method} {}: the answer was cut off",
                        path_of(url)
                    )));
                }
            }
        }
        Ok(Answer {
            status,
            headers,
            body,
        })
    }
}

/// The path of `url`, for messages.
fn path_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest.find('/').map_or("/", |i| &rest[i..]);
    path.split('?').next().unwrap_or(path)
}

/// What a vendor call can end in besides an answer.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The vendor's rate limit: no write succeeds before `until`.
    RateLimited {
        /// Who said so.
        vendor: &'static str,
        /// When calls are accepted again.
        until: OffsetDateTime,
    },
    /// Anything else.
    Failed(DeployError),
}

impl From<DeployError> for CallError {
    fn from(e: DeployError) -> Self {
        CallError::Failed(e)
    }
}

impl CallError {
    /// As a deploy error (a rate limit is worth retrying later).
    pub(crate) fn into_deploy(self) -> DeployError {
        match self {
            CallError::RateLimited { vendor, until } => DeployError::Unavailable(format!(
                "{vendor}: rate limited until {}",
                certpilot_core::rfc3339(until)
            )),
            CallError::Failed(e) => e,
        }
    }
}

/// The most time a run sits out rate-limit waits; a longer wait ends the deploy
/// `in_progress` until the vendor's reset, resumed by the next run rather than slept through.
const LONGEST_WAIT: time::Duration = time::Duration::seconds(30);

/// Runs a deploy step, sitting out short rate-limit waits while they add up to no more than
/// [`LONGEST_WAIT`]; beyond that the deploy ends `in_progress` until the vendor's reset,
/// holding `recorded` (the unit's handle so far). Safe because every deploy step is
/// idempotent: the next run resumes.
pub(crate) async fn patiently<F, Fut>(
    recorded: Option<String>,
    mut step: F,
) -> Result<Deployed, DeployError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Deployed, CallError>>,
{
    let mut waited = time::Duration::ZERO;
    loop {
        match step().await {
            Ok(d) => return Ok(d),
            Err(CallError::RateLimited { vendor, until }) => {
                let wait = (until - OffsetDateTime::now_utc()).max(time::Duration::ZERO);
                if waited + wait <= LONGEST_WAIT {
                    waited += wait;
                    tokio::time::sleep(wait.unsigned_abs()).await;
                    continue;
                }
                tracing::info!(vendor, until = %certpilot_core::rfc3339(until), "rate limited; resuming at the next run");
                return Ok(Deployed {
                    handle: recorded,
                    check_after: Some(until),
                    ..Deployed::default()
                });
            }
            Err(CallError::Failed(e)) => return Err(e),
        }
    }
}
