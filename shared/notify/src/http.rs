//! The one HTTP client every channel posts through: bounded in time and in what it reads.

use std::time::Duration;

use certpilot_core::ports::NotifyError;

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request may take, answer included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// The most of an answer that is read: Slack answers `ok` or an error word, a webhook
/// receiver a short acknowledgement; anything longer is cut, never buffered whole.
const MAX_ANSWER: usize = 16 * 1024;

/// What came back.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: u16,
    /// `Retry-After` in seconds, when given as seconds.
    pub retry_after: Option<u64>,
    /// The body's start, as text.
    pub body: String,
}

/// A client that follows no redirects (a webhook that redirects elsewhere is refused, not
/// followed with the message) and times out.
#[derive(Clone)]
pub(crate) struct Http(reqwest::Client);

impl Http {
    pub(crate) fn new() -> Result<Self, String> {
        reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("certpilot/", env!("CARGO_PKG_VERSION")))
            .build()
            .map(Http)
            .map_err(|e| format!("cannot build the HTTPS client: {e}"))
    }

    /// POSTs `body` as JSON to `url` with `headers`. `what` names the channel in errors,
    /// never the URL (a Slack webhook URL is its secret).
    pub(crate) async fn post_json(
        &self,
        what: &str,
        url: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<Answer, NotifyError> {
        let mut request = self
            .0
            .post(url)
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let mut response = request.send().await.map_err(|e| {
            // reqwest's error text includes the URL: say what failed without it.
            let why = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "cannot connect"
            } else {
                "request failed"
            };
            NotifyError::Unavailable(format!("{what}: {why}"))
        })?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let mut body = Vec::new();
        while body.len() < MAX_ANSWER {
            match tokio::time::timeout(REQUEST_TIMEOUT, response.chunk()).await {
                Ok(Ok(Some(chunk))) => body.extend_from_slice(&chunk),
                Ok(Ok(None)) | Ok(Err(_)) | Err(_) => break,
            }
        }
        body.truncate(MAX_ANSWER);
        Ok(Answer {
            status,
            retry_after,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// Checks a URL a channel posts to: HTTPS, or plain HTTP to this machine only (a relay or
/// a test receiver on loopback), with a host and no credentials in it.
pub fn check_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
    let host = parsed.host_str().unwrap_or_default();
    if host.is_empty() {
        return Err("has no host".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("carries credentials; put the secret in the secret file instead".into());
    }
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(host) => Ok(()),
        "http" => Err("is plain HTTP; use https:// (plain HTTP only to localhost)".into()),
        other => Err(format!("scheme {other:?}: use https://")),
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// What may be shown of a URL: scheme, host and port (a path or query may hold a token).
pub fn shown_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!(
                "{}://{}{port}/…",
                u.scheme(),
                u.host_str().unwrap_or_default()
            )
        }
        Err(_) => "(not a URL)".into(),
    }
}

/// What a channel makes of an answer.
pub(crate) enum Verdict {
    /// Accepted.
    Accepted,
    /// Worth another try (a rate limit, an outage): after `Retry-After` when given.
    Retry(String),
    /// Refused for good: a person must act.
    Refused(String),
}

/// Tries to send at most this many times in one run; the next run tries again.
const ATTEMPTS: u32 = 3;
/// The longest wait for a `Retry-After` within a run: beyond it, the run moves on and the
/// next run sends the message.
const MAX_WAIT: u64 = 30;

/// Sends with `send` until `judge` accepts or refuses, retrying what it says is worth it
/// (after `Retry-After`, else 1 s, then 2 s), at most [`ATTEMPTS`] times.
pub(crate) async fn retrying<F, Fut>(
    send: F,
    judge: impl Fn(&Answer) -> Verdict,
) -> Result<(), NotifyError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Answer, NotifyError>>,
{
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        let wait = match send().await {
            Ok(answer) => match judge(&answer) {
                Verdict::Accepted => return Ok(()),
                Verdict::Refused(why) => return Err(NotifyError::Refused(why)),
                Verdict::Retry(why) => {
                    last = why;
                    match answer.retry_after {
                        Some(s) if s > MAX_WAIT => {
                            return Err(NotifyError::Unavailable(format!(
                                "{last}; asked to wait {s} s, the next run sends it"
                            )));
                        }
                        Some(s) => s,
                        None => u64::from(attempt),
                    }
                }
            },
            Err(e) => {
                last = e.to_string();
                u64::from(attempt)
            }
        };
        if attempt < ATTEMPTS {
            tokio::time::sleep(Duration::from_secs(wait)).await;
        }
    }
    Err(NotifyError::Unavailable(format!(
        "{last} ({ATTEMPTS} attempts; the next run sends it again)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_https_or_loopback_and_carry_no_credentials() {
        assert!(check_url("https://hooks.slack.com/services/T0/B0/x").is_ok());
        assert!(check_url("http://127.0.0.1:8080/hook").is_ok());
        assert!(check_url("http://[::1]:8080/hook").is_ok());
        assert!(check_url("http://localhost/hook").is_ok());
        for (bad, why) in [
            ("http://hooks.example/x", "plain HTTP"),
            ("ftp://hooks.example/x", "scheme"),
            ("https://user:pw@hooks.example/x", "credentials"),
            ("hooks.example/x", "not a URL"),
        ] {
            let e = check_url(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert_eq!(
            shown_url("https://hooks.slack.com/services/T0/B0/secret"),
            "https://hooks.slack.com/…"
        );
    }
}
