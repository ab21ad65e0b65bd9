//! The TLS scanner: certpilot's [`Prober`].
//!
//! For one (target, address) it connects (bounded by the connect deadline), runs the
//! protocol's STARTTLS exchange if any, drives a rustls handshake that records whatever chain
//! the server presents (both bounded by the handshake deadline), then parses and validates the
//! chain against Mozilla's roots plus any operator-supplied CA. Failures come back as one
//! [`ErrorKind`] each.
//!
//! rustls speaks TLS 1.2 and 1.3 with modern cipher suites only: a server that offers nothing
//! newer than TLS 1.1, or only CBC/RSA-key-exchange suites, is reported as `tls_alert`
//! (`protocol_version` or `handshake_failure`) rather than scanned. Those servers are already
//! refused by every current browser.

mod starttls;
mod tls;
mod validate;
mod x509;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use certpilot_core::model::target::{Host, ScanRequest, Upgrade};
use certpilot_core::ports::Prober;
use certpilot_core::{ErrorKind, ProbeError, Served, TlsInfo};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{DnsName, ServerName};
use time::OffsetDateTime;
use tokio::net::TcpStream;

pub use validate::{TrustError, TrustStore};

/// Deadlines of one probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadlines {
    /// From SYN to an established TCP connection.
    pub connect: Duration,
    /// From the established connection to the end of the handshake, STARTTLS included.
    pub handshake: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            connect: Duration::from_secs(5),
            handshake: Duration::from_secs(10),
        }
    }
}

/// Scans endpoints over TCP and TLS.
#[derive(Clone)]
pub struct TlsProber {
    provider: Arc<CryptoProvider>,
    trust: Arc<TrustStore>,
    deadlines: Deadlines,
}

impl TlsProber {
    /// A prober validating against `trust` within `deadlines`.
    pub fn new(trust: TrustStore, deadlines: Deadlines) -> Self {
        TlsProber {
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
            trust: Arc::new(trust),
            deadlines,
        }
    }

    async fn connect(&self, address: SocketAddr) -> Result<TcpStream, ProbeError> {
        match tokio::time::timeout(self.deadlines.connect, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => {
                // Handshake messages are small and latency-bound: do not wait to coalesce.
                let _ = stream.set_nodelay(true);
                Ok(stream)
            }
            Ok(Err(e)) => Err(tls::io_error(e)),
            Err(_) => Err(ProbeError::new(
                ErrorKind::Timeout,
                format!(
                    "TCP connect did not complete within {:?}",
                    self.deadlines.connect
                ),
            )),
        }
    }
}

#[async_trait]
impl Prober for TlsProber {
    async fn resolve(&self, request: &ScanRequest) -> Result<Vec<SocketAddr>, ProbeError> {
        if let Some(known) = request.known_addresses() {
            return Ok(known);
        }
        let host = request.target.host.to_string();
        let lookup = tokio::net::lookup_host((host.as_str(), request.target.port));
        let addresses = match tokio::time::timeout(self.deadlines.connect, lookup).await {
            Ok(Ok(addresses)) => addresses,
            Ok(Err(e)) if ProbeError::is_local_resource(&e) => {
                return Err(ProbeError::new(
                    ErrorKind::Local,
                    format!("resolving {host} on this machine: {e}"),
                ));
            }
            Ok(Err(e)) => {
                return Err(ProbeError::new(
                    ErrorKind::Dns,
                    format!("cannot resolve {host}: {e}"),
                ));
            }
            Err(_) => {
                return Err(ProbeError::new(
                    ErrorKind::Dns,
                    format!(
                        "resolving {host} did not finish within {:?}",
                        self.deadlines.connect
                    ),
                ));
            }
        };
        // getaddrinfo lists an address once per socket type; report each address once.
        let mut unique: Vec<SocketAddr> = Vec::new();
        for a in addresses {
            if !unique.contains(&a) {
                unique.push(a);
            }
        }
        Ok(unique)
    }

    async fn probe(
        &self,
        request: &ScanRequest,
        address: SocketAddr,
        now: OffsetDateTime,
    ) -> Result<Served, ProbeError> {
        let mut stream = self.connect(address).await?;
        let server_name = server_name(&request.target.host)?;
        let protocol = request.target.protocol;
        let exchange = async {
            if let Upgrade::StartTls(p) = protocol.upgrade() {
                starttls::upgrade(&mut stream, p).await?;
            }
            Ok(tls::handshake(&mut stream, &self.provider, server_name).await)
        };
        let handshake = match tokio::time::timeout(self.deadlines.handshake, exchange).await {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(ProbeError::new(
                    ErrorKind::Timeout,
                    format!(
                        "{} did not complete within {:?}",
                        match protocol.upgrade() {
                            Upgrade::Direct => "TLS handshake".to_owned(),
                            Upgrade::StartTls(p) =>
                                format!("{} STARTTLS and TLS handshake", p.scheme()),
                        },
                        self.deadlines.handshake
                    ),
                ));
            }
        };
        let Some(chain) = handshake.chain else {
            return Err(handshake.error.unwrap_or_else(|| {
                ProbeError::new(
                    ErrorKind::TlsProtocol,
                    "handshake ended without a certificate",
                )
            }));
        };
        // From here the certificate is ours even if the handshake failed afterwards (a server
        // demanding a client certificate fails it right after sending its own).
        let inspected = inspect_chain(&chain, &request.target.host, &self.trust, now)
            .map_err(|e| ProbeError::new(ErrorKind::TlsProtocol, e))?;
        Ok(Served {
            tls: TlsInfo {
                version: handshake.version.unwrap_or_else(|| "unknown".into()),
                cipher: handshake.cipher.unwrap_or_else(|| "unknown".into()),
            },
            certificate: inspected.certificate,
            chain: inspected.chain,
            validation: inspected.validation,
        })
    }
}

/// What a chain of certificates says, judged for a host: the leaf's facts, each
/// certificate's summary, and the validation verdict.
#[derive(Clone, Debug)]
pub struct InspectedChain {
    /// The leaf.
    pub certificate: certpilot_core::CertificateInfo,
    /// The chain as given, leaf first.
    pub chain: Vec<certpilot_core::ChainEntry>,
    /// Trusted or not, and every problem, each named.
    pub validation: certpilot_core::Validation,
}

/// Parses `chain` (DER, leaf first, as a server presents it) and validates it for `host` at
/// `now`. Any bytes are accepted as input: what does not parse is an error that says which
/// certificate and why, never a panic.
pub fn inspect_chain(
    chain: &[rustls::pki_types::CertificateDer<'static>],
    host: &Host,
    trust: &TrustStore,
    now: OffsetDateTime,
) -> Result<InspectedChain, String> {
    let parsed = chain
        .iter()
        .enumerate()
        .map(|(i, c)| {
            x509::Parsed::new(c.as_ref())
                .map_err(|e| format!("certificate {} of the chain: {e}", i + 1))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let Some(leaf) = parsed.first() else {
        return Err("server sent an empty certificate chain".into());
    };
    Ok(InspectedChain {
        certificate: leaf.info(),
        chain: parsed.iter().map(x509::Parsed::chain_entry).collect(),
        validation: validate::validate(chain, &parsed, host, trust, now),
    })
}

fn server_name(host: &Host) -> Result<ServerName<'static>, ProbeError> {
    match host {
        Host::Ip(ip) => Ok(ServerName::IpAddress((*ip).into())),
        Host::Name(name) => DnsName::try_from(name.clone())
            .map(ServerName::DnsName)
            .map_err(|_| {
                ProbeError::new(ErrorKind::Other, format!("{name:?} cannot be sent as SNI"))
            }),
    }
}
