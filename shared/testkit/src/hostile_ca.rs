//! A CA that misbehaves on cue: an HTTPS proxy in front of a real Pebble that forwards every
//! request unless a rule says to stall it, answer with an endless body, or answer with a bare
//! error status. What an ACME client must survive from a broken or hostile CA, mid-order.
//!
//! The proxy relays raw HTTP/1.1 and keeps the client's `Host` header, so Pebble writes the
//! proxy's own address into every URL it hands out (the directory, orders, challenges), and
//! the client never talks to Pebble directly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::certs::Ca;
use crate::servers::{Options, server_config};

/// What the proxy does with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// Pass it to Pebble and the answer back.
    Forward,
    /// Read it and never answer.
    Stall,
    /// Answer 200 with a JSON body that never ends.
    EndlessBody,
    /// Answer with this status and a small HTML page (no problem document).
    Status(u16),
}

type Rule = dyn Fn(&str, &str) -> Act + Send + Sync;

/// The misbehaving CA.
pub struct HostileCa {
    /// Its ACME directory URL.
    pub directory_url: String,
    /// PEM of the root its HTTPS certificate chains to.
    pub ca_pem: String,
    task: JoinHandle<()>,
}

impl Drop for HostileCa {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HostileCa {
    /// A proxy for the Pebble at `pebble` (whose HTTPS root is `pebble_ca_pem`) that asks
    /// `rule(method, path)` what to do with each request.
    pub async fn start(
        pebble: SocketAddr,
        pebble_ca_pem: &str,
        rule: impl Fn(&str, &str) -> Act + Send + Sync + 'static,
    ) -> HostileCa {
        let ca = Ca::new("certpilot hostile CA root");
        let leaf = ca.leaf(&["127.0.0.1", "localhost"]).build();
        let acceptor = TlsAcceptor::from(server_config(&leaf, &Options::default()));
        let mut roots = rustls::RootCertStore::empty();
        for der in rustls_pki_types::pem::PemObject::pem_slice_iter(pebble_ca_pem.as_bytes()) {
            roots.add(der.expect("Pebble CA PEM")).expect("Pebble CA");
        }
        let connector = TlsConnector::from(Arc::new(
            rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        ));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let rule: Arc<Rule> = Arc::new(rule);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, connector, rule) =
                    (acceptor.clone(), connector.clone(), rule.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(stream).await {
                        let _ = serve(tls, pebble, &connector, rule.as_ref()).await;
                    }
                });
            }
        });
        HostileCa {
            directory_url: format!("https://{addr}/dir"),
            ca_pem: ca.root_pem(),
            task,
        }
    }
}

/// Reads one request (head and `Content-Length` body).
async fn read_request<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(Some(buf))
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut client: S,
    pebble: SocketAddr,
    connector: &TlsConnector,
    rule: &Rule,
) -> std::io::Result<()> {
    // One request per connection: the answer says `Connection: close`.
    let Some(request) = read_request(&mut client).await? else {
        return Ok(());
    };
    let line =
        String::from_utf8_lossy(&request[..request.iter().position(|b| *b == b'\r').unwrap_or(0)])
            .into_owned();
    let mut words = line.split(' ');
    let method = words.next().unwrap_or_default().to_owned();
    let path = words.next().unwrap_or_default().to_owned();
    match rule(&method, &path) {
        Act::Forward => {
            let tcp = TcpStream::connect(pebble).await?;
            let name = ServerName::IpAddress(pebble.ip().into());
            let mut upstream = connector.connect(name, tcp).await?;
            let head_end = request
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .unwrap_or(0);
            upstream.write_all(&request[..head_end]).await?;
            upstream.write_all(b"\r\nConnection: close").await?;
            upstream.write_all(&request[head_end..]).await?;
            let mut answer = Vec::new();
            // Pebble closes after answering; some TLS stacks skip close_notify.
            let _ = upstream.read_to_end(&mut answer).await;
            client.write_all(&answer).await?;
        }
        Act::Stall => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Act::EndlessBody => {
            client
                .write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
                )
                .await?;
            let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, " ".repeat(64 * 1024));
            loop {
                client.write_all(chunk.as_bytes()).await?;
            }
        }
        Act::Status(code) => {
            let body = format!("<html><body><h1>{code}</h1></body></html>");
            client
                .write_all(
                    format!(
                        "HTTP/1.1 {code} Whatever\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )
                .await?;
        }
    }
    client.shutdown().await
}
