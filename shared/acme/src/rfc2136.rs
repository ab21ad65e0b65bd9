//! DNS-01 through RFC 2136 dynamic updates, signed with TSIG (RFC 8945): the
//! [`DnsProvider`] for self-hosted DNS (BIND, Knot, PowerDNS…).
//!
//! - Publishing adds our TXT values at `_acme-challenge.<name>` (other values stay), then
//!   waits until every authoritative server answers them: the primary that took the update,
//!   and each server of the zone's NS set whose name resolves. Only then is the CA told.
//! - Withdrawing deletes exactly our values.
//! - The TSIG key (base64, HMAC-SHA256, as `tsig-keygen`/`keymgr` print it) is read from the
//!   SecretStore under the certificate's `key_secret`; it never appears in a log or error.
//!
//! Every exchange is over TCP (updates can exceed a UDP datagram) with a timeout.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use certpilot_core::model::certificate::DnsProviderConfig;
use certpilot_core::ports::{DnsProvider, IssueError, SecretStore, SecretVersion, TxtRecord};
use hickory_proto::dnssec::rdata::tsig::TsigAlgorithm;
use hickory_proto::dnssec::tsig::TSigner;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode, update_message};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{Name, RData, RecordSet, RecordType};
use hickory_proto::serialize::binary::BinDecodable;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, info};

/// TTL of challenge records.
const TTL: u32 = 60;
/// Allowed clock difference with the server for TSIG.
const FUDGE: u16 = 300;

/// RFC 2136 as a DNS-01 provider.
pub struct Rfc2136Dns {
    secrets: Arc<dyn SecretStore>,
    /// Bound on each exchange with a server.
    timeout: Duration,
    /// How long to wait for every authoritative server to answer the new records.
    propagation_timeout: Duration,
}

impl std::fmt::Debug for Rfc2136Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rfc2136Dns")
            .field("timeout", &self.timeout)
            .field("propagation_timeout", &self.propagation_timeout)
            .finish_non_exhaustive()
    }
}

/// The parts of an `rfc2136` provider configuration.
struct Target<'a> {
    server: &'a str,
    zone: Name,
    key_name: &'a str,
    key_secret: &'a str,
}

fn config_error(text: impl Into<String>) -> IssueError {
    IssueError::Config(text.into())
}

fn name(text: &str) -> Result<Name, IssueError> {
    let mut n = Name::from_ascii(text)
        .map_err(|e| config_error(format!("{text:?} is not a DNS name: {e}")))?;
    n.set_fqdn(true);
    Ok(n)
}

fn target(config: &DnsProviderConfig) -> Result<Target<'_>, IssueError> {
    match config {
        DnsProviderConfig::Rfc2136 {
            server,
            zone,
            key_name,
            key_secret,
        } => Ok(Target {
            server,
            zone: name(zone)?,
            key_name,
            key_secret,
        }),
        other => Err(config_error(format!(
            "the RFC 2136 provider was given a {} configuration",
            other.kind()
        ))),
    }
}

/// Records grouped by name (lower case, fully qualified), values unique.
fn by_name(records: &[TxtRecord]) -> BTreeMap<String, Vec<String>> {
    let mut grouped: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in records {
        let values = grouped
            .entry(format!(
                "{}.",
                r.name.trim_end_matches('.').to_ascii_lowercase()
            ))
            .or_default();
        if !values.contains(&r.value) {
            values.push(r.value.clone());
        }
    }
    grouped
}

fn txt_set(owner: &Name, values: &[String]) -> RecordSet {
    let mut set = RecordSet::with_ttl(owner.clone(), RecordType::TXT, TTL);
    for v in values {
        set.add_rdata(RData::TXT(TXT::new(vec![v.clone()])));
    }
    set
}

fn now_secs() -> u32 {
    u32::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(u32::MAX)
}

/// Decodes a TSIG secret as `tsig-keygen` and `keymgr` print it: standard base64. The error
/// says what is wrong.
pub fn decode_tsig_secret(text: &str) -> Result<Vec<u8>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| format!("not base64: {e}"))?;
    if bytes.is_empty() {
        return Err("empty".into());
    }
    Ok(bytes)
}

impl Rfc2136Dns {
    /// A provider reading TSIG keys from `secrets`.
    pub fn new(
        secrets: Arc<dyn SecretStore>,
        timeout: Duration,
        propagation_timeout: Duration,
    ) -> Self {
        Rfc2136Dns {
            secrets,
            timeout,
            propagation_timeout,
        }
    }

    async fn signer(&self, t: &Target<'_>) -> Result<TSigner, IssueError> {
        let (_, secret) = self
            .secrets
            .get(t.key_secret, &SecretVersion::Current)
            .await
            .map_err(|e| config_error(format!("TSIG key {}: {e}", t.key_name)))?
            .ok_or_else(|| {
                config_error(format!(
                    "TSIG key {}: secret {:?} is not in the secret store",
                    t.key_name, t.key_secret
                ))
            })?;
        let text = secret
            .expose_str()
            .map_err(|e| config_error(format!("TSIG key {}: {e}", t.key_name)))?;
        let key = decode_tsig_secret(text).map_err(|e| {
            config_error(format!(
                "TSIG key {}: secret {:?}: {e}",
                t.key_name, t.key_secret
            ))
        })?;
        TSigner::new(key, TsigAlgorithm::HmacSha256, name(t.key_name)?, FUDGE)
            .map_err(|e| config_error(format!("TSIG key {}: {e}", t.key_name)))
    }

    /// Sends `message` to `server` over TCP and reads the answer.
    async fn exchange(&self, server: &str, message: &Message) -> Result<Message, IssueError> {
        let bytes = message
            .to_vec()
            .map_err(|e| config_error(format!("encoding a DNS message: {e}")))?;
        let unavailable = |what: &str, e: &dyn std::fmt::Display| {
            IssueError::DnsUnavailable(format!("DNS server {server}: {what}: {e}"))
        };
        let work = async {
            let mut stream = TcpStream::connect(server)
                .await
                .map_err(|e| unavailable("connect", &e))?;
            let len =
                u16::try_from(bytes.len()).map_err(|_| config_error("DNS message too large"))?;
            stream
                .write_all(&len.to_be_bytes())
                .await
                .map_err(|e| unavailable("send", &e))?;
            stream
                .write_all(&bytes)
                .await
                .map_err(|e| unavailable("send", &e))?;
            let mut len = [0u8; 2];
            stream
                .read_exact(&mut len)
                .await
                .map_err(|e| unavailable("read", &e))?;
            let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
            stream
                .read_exact(&mut answer)
                .await
                .map_err(|e| unavailable("read", &e))?;
            Message::from_bytes(&answer).map_err(|e| unavailable("unreadable answer", &e))
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| {
                IssueError::DnsUnavailable(format!(
                    "DNS server {server}: no answer within {:?}",
                    self.timeout
                ))
            })?
    }

    /// Sends a signed update and checks the server took it.
    async fn update(
        &self,
        t: &Target<'_>,
        signer: &TSigner,
        mut message: Message,
    ) -> Result<(), IssueError> {
        message.set_id(rand_id());
        message
            .finalize(signer, now_secs())
            .map_err(|e| config_error(format!("signing the update: {e}")))?;
        let answer = self.exchange(t.server, &message).await?;
        match answer.response_code() {
            ResponseCode::NoError => Ok(()),
            ResponseCode::NotAuth => Err(config_error(format!(
                "DNS server {} refused TSIG key {} for zone {} (NOTAUTH): check the key name and secret",
                t.server, t.key_name, t.zone
            ))),
            ResponseCode::Refused => Err(config_error(format!(
                "DNS server {} refused the update to zone {} (REFUSED): does its ACL allow key {}?",
                t.server, t.zone, t.key_name
            ))),
            ResponseCode::NotZone => Err(config_error(format!(
                "the record is not in zone {} on {} (NOTZONE)",
                t.zone, t.server
            ))),
            ResponseCode::ServFail => Err(IssueError::DnsUnavailable(format!(
                "DNS server {} failed the update (SERVFAIL)",
                t.server
            ))),
            other => Err(config_error(format!(
                "DNS server {} answered the update with {other}",
                t.server
            ))),
        }
    }

    async fn query(
        &self,
        server: &str,
        owner: &Name,
        kind: RecordType,
    ) -> Result<Message, IssueError> {
        let mut q = Message::new();
        q.set_id(rand_id())
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(false)
            .add_query(Query::query(owner.clone(), kind));
        self.exchange(server, &q).await
    }

    /// The TXT values `server` answers at `owner` (what the propagation check compares).
    pub async fn txt_values(&self, server: &str, owner: &str) -> Result<Vec<String>, IssueError> {
        let answer = self.query(server, &name(owner)?, RecordType::TXT).await?;
        Ok(answer
            .answers()
            .iter()
            .filter_map(|r| match r.data() {
                RData::TXT(txt) => Some(
                    txt.iter()
                        .map(|part| String::from_utf8_lossy(part).into_owned())
                        .collect::<String>(),
                ),
                _ => None,
            })
            .collect())
    }

    /// The servers to check: the primary, then the zone's nameservers that resolve.
    async fn authoritative(&self, t: &Target<'_>) -> Vec<String> {
        let mut servers = vec![t.server.to_owned()];
        let Ok(answer) = self.query(t.server, &t.zone, RecordType::NS).await else {
            return servers;
        };
        for record in answer.answers() {
            let RData::NS(ns) = record.data() else {
                continue;
            };
            let host = ns.0.to_ascii();
            match tokio::net::lookup_host((host.trim_end_matches('.'), 53)).await {
                Ok(addrs) => {
                    for addr in addrs {
                        let text = SocketAddr::to_string(&addr);
                        if !servers.contains(&text) {
                            servers.push(text);
                        }
                    }
                }
                Err(e) => {
                    debug!(nameserver = %host, error = %e, "nameserver does not resolve; not checked")
                }
            }
        }
        servers
    }

    /// Waits until every server answers every value at every name.
    async fn await_propagation(
        &self,
        t: &Target<'_>,
        wanted: &BTreeMap<String, Vec<String>>,
    ) -> Result<(), IssueError> {
        let servers = self.authoritative(t).await;
        let deadline = tokio::time::Instant::now() + self.propagation_timeout;
        let mut delay = Duration::from_millis(100);
        loop {
            let mut missing = None;
            'check: for server in &servers {
                for (owner, values) in wanted {
                    let seen = self.txt_values(server, owner).await.unwrap_or_default();
                    if !values.iter().all(|v| seen.contains(v)) {
                        missing = Some(format!("{server} does not answer {owner} yet"));
                        break 'check;
                    }
                }
            }
            let Some(why) = missing else {
                info!(
                    servers = servers.len(),
                    "rfc2136: challenge records answered by every server"
                );
                return Ok(());
            };
            if tokio::time::Instant::now() + delay > deadline {
                return Err(IssueError::DnsUnavailable(format!(
                    "{why} after {:?}",
                    self.propagation_timeout
                )));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }
}

fn rand_id() -> u16 {
    let mut b = [0u8; 2];
    // An id only pairs an answer with its question on one TCP connection.
    let _ = aws_lc_rs::rand::fill(&mut b);
    u16::from_be_bytes(b)
}

#[async_trait]
impl DnsProvider for Rfc2136Dns {
    async fn publish(
        &self,
        config: &DnsProviderConfig,
        records: &[TxtRecord],
    ) -> Result<(), IssueError> {
        let t = target(config)?;
        let signer = self.signer(&t).await?;
        let wanted = by_name(records);
        for (owner, values) in &wanted {
            let message = update_message::append(
                txt_set(&name(owner)?, values),
                t.zone.clone(),
                false,
                false,
            );
            self.update(&t, &signer, message).await?;
        }
        self.await_propagation(&t, &wanted).await
    }

    async fn withdraw(
        &self,
        config: &DnsProviderConfig,
        records: &[TxtRecord],
    ) -> Result<(), IssueError> {
        let t = target(config)?;
        let signer = self.signer(&t).await?;
        for (owner, values) in by_name(records) {
            let message = update_message::delete_by_rdata(
                txt_set(&name(&owner)?, &values),
                t.zone.clone(),
                false,
            );
            self.update(&t, &signer, message).await?;
        }
        Ok(())
    }
}
