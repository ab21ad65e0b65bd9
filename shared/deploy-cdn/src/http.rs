//! The one HTTP client the CDN targets call their vendors through: bounded in time and in
//! what it reads, following no redirects, and naming the vendor (never the token) in errors.

use std::time::Duration;

use certpilot_core::ports::DeployError;

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

impl Http {
    pub(crate) fn new() -> Result<Self, DeployError> {
        reqwest::Client::builder()
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
