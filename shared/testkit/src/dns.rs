//! A minimal authoritative DNS server for tests: answers TXT questions (UDP and TCP) from a lookup
//! function, everything else with an empty NOERROR answer. With the lookup reading Route 53
//! on moto, it stands in for Route 53's nameservers, so Pebble validates DNS-01 against
//! exactly what the provider wrote, at the moment it asks.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

/// Looks up the TXT values of a name (lower case, no trailing dot).
pub type TxtLookup =
    Arc<dyn Fn(String) -> Pin<Box<dyn Future<Output = Vec<String>> + Send>> + Send + Sync>;

/// The running server; stopped on drop.
pub struct TxtServer {
    /// Its UDP address.
    pub addr: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for TxtServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn respond(lookup: &TxtLookup, query: &[u8]) -> Option<Vec<u8>> {
    let (name, qtype, end) = question(query)?;
    let values = if qtype == 16 {
        lookup(name).await
    } else {
        Vec::new()
    };
    Some(answer(query, end, &values))
}

/// The question's name (lower case), type, and the offset just past the question.
fn question(packet: &[u8]) -> Option<(String, u16, usize)> {
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*packet.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(packet.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    let qtype = u16::from_be_bytes([*packet.get(at)?, *packet.get(at + 1)?]);
    Some((labels.join("."), qtype, at + 4))
}

fn answer(query: &[u8], end: usize, values: &[String]) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(&query[0..2]); // id
    out.extend_from_slice(&[0x84, 0x00]); // response, authoritative, NOERROR
    out.extend_from_slice(&[0, 1]); // one question
    out.extend_from_slice(&u16::try_from(values.len()).unwrap_or(0).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]); // no authority or additional records
    out.extend_from_slice(&query[12..end]);
    for v in values {
        out.extend_from_slice(&[0xc0, 0x0c]); // the question's name
        out.extend_from_slice(&[0, 16, 0, 1]); // TXT, IN
        out.extend_from_slice(&60u32.to_be_bytes());
        let chunks: Vec<&[u8]> = v.as_bytes().chunks(255).collect();
        let rdlen: usize = chunks.iter().map(|c| c.len() + 1).sum();
        out.extend_from_slice(&u16::try_from(rdlen).unwrap_or(0).to_be_bytes());
        for c in chunks {
            out.push(u8::try_from(c.len()).unwrap_or(255));
            out.extend_from_slice(c);
        }
    }
    out
}

impl TxtServer {
    /// Starts on a free loopback port, UDP and TCP.
    pub async fn start(lookup: TxtLookup) -> TxtServer {
        let (socket, listener) = loop {
            let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
            let port = socket.local_addr().expect("local addr").port();
            if let Ok(l) = TcpListener::bind(("127.0.0.1", port)).await {
                break (Arc::new(socket), l);
            }
        };
        let addr = socket.local_addr().expect("local addr");
        let udp_lookup = lookup.clone();
        let udp = tokio::spawn(async move {
            let mut buf = vec![0u8; 1500];
            loop {
                let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let query = buf[..n].to_vec();
                let socket = socket.clone();
                let lookup = udp_lookup.clone();
                tokio::spawn(async move {
                    if let Some(reply) = respond(&lookup, &query).await {
                        let _ = socket.send_to(&reply, peer).await;
                    }
                });
            }
        });
        let tcp = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let lookup = lookup.clone();
                tokio::spawn(async move {
                    let mut len = [0u8; 2];
                    while stream.read_exact(&mut len).await.is_ok() {
                        let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
                        if stream.read_exact(&mut query).await.is_err() {
                            return;
                        }
                        let Some(reply) = respond(&lookup, &query).await else {
                            return;
                        };
                        let n = u16::try_from(reply.len()).unwrap_or(0).to_be_bytes();
                        if stream.write_all(&n).await.is_err()
                            || stream.write_all(&reply).await.is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        TxtServer {
            addr,
            tasks: vec![udp, tcp],
        }
    }
}
