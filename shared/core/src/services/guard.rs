//! The address policy at every scan and verification: what the request API checked when an
//! endpoint or a certificate was registered is checked again before each connection, since a
//! name may start resolving somewhere else (DNS rebinding, a CNAME changed later).
//!
//! Only targets that came through the API are held to it — they carry the
//! [`REQUESTED_BY`] tag the API sets and callers cannot — so an operator's own scans of
//! internal hosts are untouched.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::model::observation::{ErrorKind, ProbeError, Served};
use crate::model::target::ScanRequest;
use crate::policy::address::AddressPolicy;
use crate::ports::Prober;

/// The tag the request API puts on what it registers: who asked for it.
pub const REQUESTED_BY: &str = "requested-by";

/// A [`Prober`] that never connects to an address the policy refuses, for targets registered
/// through the API.
pub struct GuardedProber {
    inner: Arc<dyn Prober>,
    policy: Arc<AddressPolicy>,
}

impl GuardedProber {
    /// `inner`, held to `policy`.
    pub fn new(inner: Arc<dyn Prober>, policy: AddressPolicy) -> Self {
        GuardedProber {
            inner,
            policy: Arc::new(policy),
        }
    }
}

#[async_trait]
impl Prober for GuardedProber {
    async fn resolve(&self, request: &ScanRequest) -> Result<Vec<SocketAddr>, ProbeError> {
        self.inner.resolve(request).await
    }

    async fn probe(
        &self,
        request: &ScanRequest,
        address: SocketAddr,
        now: OffsetDateTime,
    ) -> Result<Served, ProbeError> {
        if request.tags.contains_key(REQUESTED_BY)
            && let Err(why) = self.policy.check(address.ip())
        {
            return Err(ProbeError::new(
                ErrorKind::Other,
                format!(
                    "not scanned: {} is {} and this endpoint was registered through the API; \
                     the operator can allow its network (--allow-network, CERTPILOT_ALLOW_NETWORKS)",
                    address.ip(),
                    why.words()
                ),
            ));
        }
        self.inner.probe(request, address, now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default)]
    struct Counting(AtomicUsize);

    #[async_trait]
    impl Prober for Counting {
        async fn resolve(&self, _: &ScanRequest) -> Result<Vec<SocketAddr>, ProbeError> {
            Ok(vec![])
        }
        async fn probe(
            &self,
            _: &ScanRequest,
            _: SocketAddr,
            _: OffsetDateTime,
        ) -> Result<Served, ProbeError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Err(ProbeError::new(ErrorKind::Refused, "connected"))
        }
    }

    #[tokio::test]
    async fn only_api_targets_are_held_to_the_policy_at_each_probe() {
        let inner = Arc::new(Counting::default());
        let guard = GuardedProber::new(inner.clone(), AddressPolicy::default());
        let mut api = ScanRequest::new("shop.example.com".parse().unwrap());
        api.tags.insert(REQUESTED_BY.into(), "token:web".into());
        let operator = ScanRequest::new("shop.example.com".parse().unwrap());
        let now = OffsetDateTime::UNIX_EPOCH;
        // The name now resolves to the metadata service: the API's endpoint is not probed.
        let metadata: SocketAddr = "169.254.169.254:443".parse().unwrap();
        let refused = guard.probe(&api, metadata, now).await.unwrap_err();
        assert!(refused.message.contains("cloud metadata"), "{refused:?}");
        let mapped: SocketAddr = "[::ffff:10.0.0.7]:443".parse().unwrap();
        assert!(
            guard
                .probe(&api, mapped, now)
                .await
                .unwrap_err()
                .message
                .contains("not scanned")
        );
        assert_eq!(inner.0.load(Ordering::SeqCst), 0, "never connected");
        // The operator's own endpoint, and a public address, are probed.
        let _ = guard.probe(&operator, metadata, now).await;
        let public: SocketAddr = "93.184.215.14:443".parse().unwrap();
        let _ = guard.probe(&api, public, now).await;
        assert_eq!(inner.0.load(Ordering::SeqCst), 2);
    }
}
