//! The HTTPS client every request to a CA goes through: instant-acme's own client, plus a
//! cap on what a response may hold and words for what went wrong.
//!
//! instant-acme buffers each response whole; an endless body from a hostile or broken server
//! would take all the memory there is. A CA's answers are a few KiB (a directory, an order,
//! a chain of three certificates), so anything past [`MAX_BODY`] is refused. An error status
//! without an RFC 7807 problem document (a 404 page from a wrong directory URL, a proxy's
//! 502) becomes an [`HttpStatus`] error that names the status and the URL, so that callers
//! see "404 Not Found from https://…" rather than a JSON parse error.

use std::error::Error as StdError;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, BytesBody, BytesResponse, HttpClient};

/// The largest response body read from a CA.
pub const MAX_BODY: usize = 1 << 20;

type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// An HTTPS-only client that trusts either the platform's roots or one PEM root.
pub(crate) struct CappedClient {
    inner: Client<HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>,
    limit: usize,
}

impl CappedClient {
    /// A client trusting the root in `ca_file`, or the platform's trust store.
    pub(crate) fn new(ca_file: Option<&Path>, limit: usize) -> Result<Self, String> {
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match ca_file {
            Some(path) => {
                let mut roots = rustls::RootCertStore::empty();
                let pem = std::fs::read(path)
                    .map_err(|e| format!("ACME CA file {}: {e}", path.display()))?;
                let mut found = 0;
                for der in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
                    let der = der.map_err(|e| {
                        format!("ACME CA file {}: not PEM certificates: {e}", path.display())
                    })?;
                    roots.add(der).map_err(|e| {
                        format!("ACME CA file {}: not a CA certificate: {e}", path.display())
                    })?;
                    found += 1;
                }
                if found == 0 {
                    return Err(format!(
                        "ACME CA file {}: no PEM certificate in it",
                        path.display()
                    ));
                }
                builder.with_tls_config(
                    rustls::ClientConfig::builder()
                        .with_root_certificates(roots)
                        .with_no_client_auth(),
                )
            }
            None => builder
                .try_with_platform_verifier()
                .map_err(|e| format!("cannot load the platform trust store: {e}"))?,
        };
        let connector = builder.https_only().enable_http1().enable_http2().build();
        Ok(CappedClient {
            inner: Client::builder(TokioExecutor::new()).build(connector),
            limit,
        })
    }
}

use rustls_pki_types::pem::PemObject;

impl HttpClient for CappedClient {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let url = req.uri().to_string();
        let limit = self.limit;
        let sent = self.inner.request(req);
        Box::pin(async move {
            let response = sent
                .await
                .map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
            Ok(capped(response, url, limit))
        })
    }
}

fn capped(response: Response<Incoming>, url: String, limit: usize) -> BytesResponse {
    let (parts, body) = response.into_parts();
    let status = parts.status;
    let problem = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/problem+json"));
    let failed = !(status.is_success() || status.is_redirection() || status.is_informational());
    BytesResponse {
        body: Box::new(CappedBody {
            inner: Some(body),
            limit,
            url,
            // A failure without a problem document gets one that names the status.
            status: (failed && !problem).then_some(status),
        }),
        parts,
    }
}

struct CappedBody {
    inner: Option<Incoming>,
    limit: usize,
    url: String,
    status: Option<http::StatusCode>,
}

#[async_trait]
impl BytesBody for CappedBody {
    async fn into_bytes(&mut self) -> Result<Bytes, BoxError> {
        let Some(body) = self.inner.take() else {
            return Ok(Bytes::new());
        };
        let read = http_body_util::Limited::new(body, self.limit)
            .collect()
            .await;
        let bytes = match read {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(format!(
                    "the response from {} is larger than {} KiB, far more than any ACME answer; \
                     certpilot stopped reading it",
                    certpilot_core::model::certificate::redact_url(&self.url),
                    self.limit / 1024
                )
                .into());
            }
            Err(e) => return Err(e),
        };
        let Some(status) = self.status else {
            return Ok(bytes);
        };
        // Let a JSON problem through even when mislabelled; anything else is described.
        if serde_json::from_slice::<serde_json::Value>(&bytes)
            .is_ok_and(|v| v.get("type").is_some() || v.get("detail").is_some())
        {
            return Ok(bytes);
        }
        Err(Box::new(HttpStatus {
            status,
            url: certpilot_core::model::certificate::redact_url(&self.url),
        }))
    }
}

/// An error status from a server that sent no problem document with it.
#[derive(Debug)]
pub(crate) struct HttpStatus {
    pub(crate) status: http::StatusCode,
    pub(crate) url: String,
}

impl std::fmt::Display for HttpStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {} from {}", self.status, self.url)
    }
}

impl StdError for HttpStatus {}
