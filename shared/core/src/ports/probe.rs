//! Obtaining the certificate an address serves, and the limits a scan runs under.

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::model::observation::{ProbeError, Served};
use crate::model::target::ScanRequest;

/// Obtains the certificate an address serves.
///
/// Contract:
/// - `resolve` returns every address a target's name resolves to (A and AAAA), or the
///   request's known addresses without a lookup; a failure is a [`ProbeError`] of kind `dns`.
/// - `probe` obtains the chain even when it does not validate and when the server then asks
///   for a client certificate; validation is reported in [`Served::validation`], never as an
///   error. It returns within the prober's own connect and handshake deadlines: a caller may
///   still wrap it in a shorter whole-target deadline and drop the future.
/// - Both are safe to call concurrently; neither retries.
#[async_trait]
pub trait Prober: Send + Sync {
    /// The addresses to probe for `request`.
    async fn resolve(&self, request: &ScanRequest) -> Result<Vec<SocketAddr>, ProbeError>;

    /// Connects to `address`, runs the protocol's upgrade and the TLS handshake, and judges
    /// the presented chain as of `now`.
    async fn probe(
        &self,
        request: &ScanRequest,
        address: SocketAddr,
        now: OffsetDateTime,
    ) -> Result<Served, ProbeError>;
}

/// Limits applied by the scan service.
#[derive(Clone, Copy, Debug)]
pub struct ScanLimits {
    /// Probes in flight at once.
    pub concurrency: usize,
    /// Deadline for one (target, address), and for resolving one target.
    pub target_timeout: Duration,
}

impl Default for ScanLimits {
    fn default() -> Self {
        ScanLimits {
            concurrency: 64,
            target_timeout: Duration::from_secs(15),
        }
    }
}
