//! Resolving a registered endpoint's host, so that its addresses can be checked against the
//! address policy before anything is stored.

use std::net::IpAddr;
use std::time::Duration;

/// How long a resolution may take.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Resolves host names.
#[async_trait::async_trait]
pub trait Resolve: Send + Sync {
    /// Every address of `host`; the error says why there is none.
    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<IpAddr>, String>;
}

/// The system resolver, bounded by [`RESOLVE_TIMEOUT`].
pub struct SystemResolver;

#[async_trait::async_trait]
impl Resolve for SystemResolver {
    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<IpAddr>, String> {
        match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port))).await {
            Err(_) => Err(format!(
                "{host} did not resolve within {} s",
                RESOLVE_TIMEOUT.as_secs()
            )),
            Ok(Err(e)) => Err(format!("{host} does not resolve: {e}")),
            Ok(Ok(addrs)) => {
                let mut ips: Vec<IpAddr> = addrs.map(|a| a.ip()).collect();
                ips.sort_unstable();
                ips.dedup();
                if ips.is_empty() {
                    Err(format!("{host} has no address"))
                } else {
                    Ok(ips)
                }
            }
        }
    }
}
