//! Real servers on loopback for the scanner to probe: TLS servers with chosen certificates and
//! versions, STARTTLS servers for each protocol, and hostile peers (tarpits, drips, garbage,
//! resets). Each runs as a tokio task that stops when its handle is dropped, panics included.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert, ServerConfig, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::certs::{Ca, Leaf};

/// A server running on loopback until dropped.
pub struct Server {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Server {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `127.0.0.1:port` (or `[::1]:port`), as a target.
    pub fn target(&self) -> String {
        match self.addr {
            SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
            SocketAddr::V4(v4) => v4.to_string(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Which TLS versions a server accepts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Versions {
    /// TLS 1.2 and 1.3.
    #[default]
    Both,
    /// TLS 1.2 only.
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

/// The plaintext protocol spoken before TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartTls {
    /// SMTP `STARTTLS`.
    Smtp,
    /// IMAP `STARTTLS`.
    Imap,
    /// POP3 `STLS`.
    Pop3,
    /// FTP `AUTH TLS`.
    Ftp,
    /// PostgreSQL `SSLRequest`.
    Postgres,
    /// LDAP StartTLS extended operation.
    Ldap,
}

/// How a TLS server behaves.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Accepted versions.
    pub versions: Versions,
    /// Demand a client certificate (and fail clients without one).
    pub require_client_cert: bool,
    /// Speak this protocol first.
    pub starttls: Option<StartTls>,
    /// Refuse the upgrade (no STARTTLS capability, `N` to an SSLRequest…).
    pub refuse_starttls: bool,
    /// Listen on `[::1]` rather than `127.0.0.1`.
    pub ipv6: bool,
}

/// Always answers with one certificate, whatever the SNI. Building a `CertifiedKey` by hand
/// (rather than `with_single_cert`) lets a test serve a certificate whose public key is not
/// the signing key, for certificates no library would generate keys for.
#[derive(Debug)]
struct OneCert(Arc<CertifiedKey>);

impl ResolvesServerCert for OneCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// A rustls server configuration serving `leaf`.
pub fn server_config(leaf: &Leaf, options: &Options) -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let key = provider
        .key_provider
        .load_private_key(leaf.private_key())
        .expect("test key loads");
    let certified = Arc::new(CertifiedKey::new(leaf.chain.clone(), key));
    let versions: &[&rustls::SupportedProtocolVersion] = match options.versions {
        Versions::Both => &[&rustls::version::TLS13, &rustls::version::TLS12],
        Versions::Tls12 => &[&rustls::version::TLS12],
        Versions::Tls13 => &[&rustls::version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .expect("versions supported");
    let config = if options.require_client_cert {
        let client_ca = Ca::new("Client CA");
        let mut roots = RootCertStore::empty();
        roots.add(client_ca.der()).expect("client CA");
        let verifier: Arc<dyn ClientCertVerifier> =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("client verifier");
        builder
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(OneCert(certified)))
    } else {
        builder
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(OneCert(certified)))
    };
    Arc::new(config)
}

async fn listen(ipv6: bool) -> TcpListener {
    let addr = if ipv6 { "[::1]:0" } else { "127.0.0.1:0" };
    TcpListener::bind(addr).await.expect("bind loopback")
}

fn spawn_accept_loop<F, Fut>(listener: TcpListener, handle: F) -> Server
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let addr = listener.local_addr().expect("local addr");
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    if let Ok((stream, _)) = accepted {
                        connections.spawn(handle(stream));
                    }
                }
                // Reap finished connections so a long benchmark does not accumulate them.
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    });
    Server { addr, task }
}

/// Starts a TLS server for `leaf`.
pub async fn tls(leaf: &Leaf, options: Options) -> Server {
    let acceptor = TlsAcceptor::from(server_config(leaf, &options));
    let listener = listen(options.ipv6).await;
    spawn_accept_loop(listener, move |mut stream| {
        let acceptor = acceptor.clone();
        async move {
            if let Some(protocol) = options.starttls
                && !plaintext_upgrade(&mut stream, protocol, options.refuse_starttls).await
            {
                return;
            }
            tls_session(&acceptor, stream).await;
        }
    })
}

/// Runs one TLS session: handshake, wait briefly for the client to speak or leave, close.
async fn tls_session(acceptor: &TlsAcceptor, stream: TcpStream) {
    if let Ok(Ok(mut tls)) =
        tokio::time::timeout(Duration::from_secs(30), acceptor.accept(stream)).await
    {
        let mut buf = [0u8; 64];
        let _ = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf)).await;
        let _ = tls.shutdown().await;
    }
}

/// Starts a TLS server with default options.
pub async fn tls_default(leaf: &Leaf) -> Server {
    tls(leaf, Options::default()).await
}

async fn read_line(stream: &mut TcpStream) -> Option<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte).await {
            Ok(1) if byte[0] == b'\n' => break,
            Ok(1) => line.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&line).trim_end().to_owned())
}

/// Speaks just enough of `protocol` to reach (or refuse) the TLS upgrade. Returns whether the
/// TLS handshake should follow.
async fn plaintext_upgrade(stream: &mut TcpStream, protocol: StartTls, refuse: bool) -> bool {
    let w = |s: &'static str| s.as_bytes();
    match protocol {
        StartTls::Smtp => {
            let _ = stream
                .write_all(w("220 mx.test ESMTP certpilot-test\r\n"))
                .await;
            loop {
                let Some(cmd) = read_line(stream).await else {
                    return false;
                };
                let upper = cmd.to_ascii_uppercase();
                if upper.starts_with("EHLO") {
                    let reply = if refuse {
                        "250-mx.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
                    } else {
                        "250-mx.test\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 8BITMIME\r\n"
                    };
                    let _ = stream.write_all(reply.as_bytes()).await;
                } else if upper == "STARTTLS" {
                    if refuse {
                        let _ = stream.write_all(w("454 4.7.0 TLS not available\r\n")).await;
                        return false;
                    }
                    let _ = stream
                        .write_all(w("220 2.0.0 Ready to start TLS\r\n"))
                        .await;
                    return true;
                } else {
                    let _ = stream.write_all(w("500 5.5.1 unrecognized\r\n")).await;
                }
            }
        }
        StartTls::Imap => {
            let _ = stream
                .write_all(w("* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n"))
                .await;
            let Some(cmd) = read_line(stream).await else {
                return false;
            };
            let tag = cmd.split_whitespace().next().unwrap_or("*").to_owned();
            let reply = if refuse {
                format!("{tag} BAD STARTTLS not available\r\n")
            } else {
                format!("{tag} OK Begin TLS negotiation now\r\n")
            };
            let _ = stream.write_all(reply.as_bytes()).await;
            !refuse
        }
        StartTls::Pop3 => {
            let _ = stream.write_all(w("+OK POP3 ready\r\n")).await;
            let _ = read_line(stream).await;
            let reply = if refuse {
                "-ERR STLS not available\r\n"
            } else {
                "+OK Begin TLS\r\n"
            };
            let _ = stream.write_all(reply.as_bytes()).await;
            !refuse
        }
        StartTls::Ftp => {
            let _ = stream
                .write_all(w("220-certpilot test FTP\r\n220 ready\r\n"))
                .await;
            let _ = read_line(stream).await;
            let reply = if refuse {
                "502 AUTH not supported\r\n"
            } else {
                "234 AUTH TLS OK\r\n"
            };
            let _ = stream.write_all(reply.as_bytes()).await;
            !refuse
        }
        StartTls::Postgres => {
            let mut request = [0u8; 8];
            if stream.read_exact(&mut request).await.is_err()
                || request != [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]
            {
                return false;
            }
            let _ = stream.write_all(if refuse { b"N" } else { b"S" }).await;
            !refuse
        }
        StartTls::Ldap => {
            let mut request = [0u8; 31];
            if stream.read_exact(&mut request).await.is_err() || request[5] != 0x77 {
                return false;
            }
            let code = if refuse { 0x34 } else { 0x00 }; // unavailable(52) or success
            let response = [
                0x30, 0x0c, 0x02, 0x01, 0x01, 0x78, 0x07, 0x0a, 0x01, code, 0x04, 0x00, 0x04, 0x00,
            ];
            let _ = stream.write_all(&response).await;
            !refuse
        }
    }
}

/// Accepts connections and never answers.
pub async fn tarpit() -> Server {
    let listener = listen(false).await;
    spawn_accept_loop(listener, |stream| async move {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        drop(stream);
    })
}

/// Answers with the start of a TLS record, one byte a second, forever.
pub async fn drip() -> Server {
    let listener = listen(false).await;
    spawn_accept_loop(listener, |mut stream| async move {
        let record = [0x16u8, 0x03, 0x03, 0x40, 0x00];
        for byte in record.iter().cycle().take(3600) {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if stream.write_all(&[*byte]).await.is_err() {
                return;
            }
        }
    })
}

/// Answers the ClientHello with a banner of another protocol.
pub async fn garbage() -> Server {
    let listener = listen(false).await;
    spawn_accept_loop(listener, |mut stream| async move {
        let _ = stream
            .write_all(b"SSH-2.0-OpenSSH_9.6 certpilot-test\r\n")
            .await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    })
}

/// Resets every connection as soon as it is accepted.
pub async fn reset() -> Server {
    let listener = listen(false).await;
    spawn_accept_loop(listener, |stream| async move {
        let _ = stream.set_zero_linger();
        let mut stream = stream;
        let mut buf = [0u8; 512];
        let _ = stream.read(&mut buf).await;
        drop(stream);
    })
}

/// Answers every ClientHello with a fatal TLS alert of the given code (40 = handshake_failure).
pub async fn alert(code: u8) -> Server {
    let listener = listen(false).await;
    spawn_accept_loop(listener, move |mut stream| async move {
        let mut buf = [0u8; 2048];
        let _ = stream.read(&mut buf).await;
        let _ = stream
            .write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, code])
            .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    })
}

/// Answers the ClientHello with a handshake record that does not decode.
pub async fn broken_tls() -> Server {
    let listener = listen(false).await;
    spawn_accept_loop(listener, |mut stream| async move {
        let mut buf = [0u8; 2048];
        let _ = stream.read(&mut buf).await;
        let _ = stream
            .write_all(&[
                0x16, 0x03, 0x03, 0x00, 0x06, 0x02, 0x00, 0x00, 0x02, 0xff, 0xff,
            ])
            .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    })
}

/// A loopback port with nothing listening (connections are refused).
pub async fn closed_port() -> SocketAddr {
    let listener = listen(false).await;
    let addr = listener.local_addr().expect("local addr");
    drop(listener);
    addr
}

/// Starts `count` TLS servers for `leaf` sharing one configuration, on loopback ports from
/// `first_port` up (below Linux's ephemeral range, so the scanner's own connections never
/// compete with them for ports). Ports already taken are skipped.
pub async fn tls_many(leaf: &Leaf, count: usize, first_port: u16) -> Vec<Server> {
    tls_on_ports(leaf, count, first_port..=u16::MAX).await
}

/// `count` TLS servers serving `leaf` on 127.0.0.1, on the first free ports among
/// `candidates`, in order.
pub async fn tls_on_ports(
    leaf: &Leaf,
    count: usize,
    candidates: impl IntoIterator<Item = u16>,
) -> Vec<Server> {
    let acceptor = TlsAcceptor::from(server_config(leaf, &Options::default()));
    let mut servers = Vec::with_capacity(count);
    let mut candidates = candidates.into_iter();
    while servers.len() < count {
        let Some(port) = candidates.next() else {
            panic!(
                "only {} of {count} candidate ports were free",
                servers.len()
            );
        };
        let Ok(listener) = TcpListener::bind(("127.0.0.1", port)).await else {
            continue;
        };
        let acceptor = acceptor.clone();
        servers.push(spawn_accept_loop(listener, move |stream| {
            let acceptor = acceptor.clone();
            async move { tls_session(&acceptor, stream).await }
        }));
    }
    servers
}

/// A TLS server whose certificate is replaced while it runs: the data plane of a load
/// balancer or CDN in tests, following (or, frozen, not following) what its API was told.
/// It can also serve by SNI, as a CDN edge does: a certificate per name (wildcards matching
/// one label), and a default for handshakes without SNI or for a name it does not know.
pub struct Swappable {
    server: Server,
    current: Arc<std::sync::RwLock<Served>>,
}

#[derive(Debug, Default)]
struct Served {
    default: Option<Arc<CertifiedKey>>,
    by_name: Vec<(String, Arc<CertifiedKey>)>,
}

#[derive(Debug)]
struct SwappableCert(Arc<std::sync::RwLock<Served>>);

impl ResolvesServerCert for SwappableCert {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let served = self.0.read().ok()?;
        if let Some(sni) = hello.server_name().map(str::to_ascii_lowercase) {
            let wildcard = sni.split_once('.').map(|(_, rest)| format!("*.{rest}"));
            let found = served.by_name.iter().find(|(n, _)| *n == sni).or_else(|| {
                served
                    .by_name
                    .iter()
                    .find(|(n, _)| Some(n) == wildcard.as_ref())
            });
            if let Some((_, key)) = found {
                return Some(key.clone());
            }
        }
        served.default.clone()
    }
}

fn certified(leaf: &Leaf) -> Arc<CertifiedKey> {
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let key = provider
        .key_provider
        .load_private_key(leaf.private_key())
        .expect("test key loads");
    Arc::new(CertifiedKey::new(leaf.chain.clone(), key))
}

impl Swappable {
    /// Starts it with no certificate (handshakes fail until [`Swappable::serve`]).
    pub async fn start() -> Swappable {
        Self::start_on(listen(false).await)
    }

    /// The same on `addr` (another loopback address: a host of its own).
    pub async fn start_at(addr: SocketAddr) -> Swappable {
        Self::start_on(TcpListener::bind(addr).await.expect("bind"))
    }

    fn start_on(listener: TcpListener) -> Swappable {
        let current = Arc::new(std::sync::RwLock::new(Served::default()));
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions supported")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(SwappableCert(current.clone())));
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let server = spawn_accept_loop(listener, move |stream| {
            let acceptor = acceptor.clone();
            async move { tls_session(&acceptor, stream).await }
        });
        Swappable { server, current }
    }

    /// Serves `leaf` to every handshake from the next on.
    pub fn serve(&self, leaf: &Leaf) {
        *self.current.write().expect("lock") = Served {
            default: Some(certified(leaf)),
            by_name: vec![],
        };
    }

    /// Serves each name's certificate to handshakes naming it (`*.zone` matching one
    /// label), and `default` to the others; with no default they fail.
    pub fn serve_by_name(&self, by_name: &[(String, &Leaf)], default: Option<&Leaf>) {
        *self.current.write().expect("lock") = Served {
            default: default.map(certified),
            by_name: by_name
                .iter()
                .map(|(n, l)| (n.to_ascii_lowercase(), certified(l)))
                .collect(),
        };
    }

    /// The server (address, target).
    pub fn server(&self) -> &Server {
        &self.server
    }
}

/// A TLS server that serves `DIR/fullchain.pem` with `DIR/privkey.pem`, loaded at start and
/// again each time the file `reload` appears (which it then removes) — a web server on a VM
/// and its `systemctl reload`. Files it cannot load leave it serving what it had, as nginx
/// keeps its old configuration when a reload fails.
pub struct FilesServer {
    swappable: Swappable,
    reload: std::path::PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl FilesServer {
    /// Starts it on `dir`, reloading on `reload`.
    pub async fn start(dir: &std::path::Path, reload: &std::path::Path) -> FilesServer {
        Self::start_with(Swappable::start().await, dir, reload)
    }

    /// The same, listening on `addr`.
    pub async fn start_at(
        addr: SocketAddr,
        dir: &std::path::Path,
        reload: &std::path::Path,
    ) -> FilesServer {
        Self::start_with(Swappable::start_at(addr).await, dir, reload)
    }

    fn start_with(
        swappable: Swappable,
        dir: &std::path::Path,
        reload: &std::path::Path,
    ) -> FilesServer {
        let load = {
            let dir = dir.to_owned();
            move || -> Option<Leaf> {
                let chain = std::fs::read_to_string(dir.join("fullchain.pem")).ok()?;
                let key = std::fs::read_to_string(dir.join("privkey.pem")).ok()?;
                std::panic::catch_unwind(|| Leaf::from_pem(&chain, &key)).ok()
            }
        };
        if let Some(leaf) = load() {
            swappable.serve(&leaf);
        }
        let current = swappable.current.clone();
        let flag = reload.to_owned();
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                if std::fs::remove_file(&flag).is_ok()
                    && let Some(leaf) = load()
                {
                    let provider = rustls::crypto::aws_lc_rs::default_provider();
                    if let Ok(key) = provider.key_provider.load_private_key(leaf.private_key()) {
                        *current.write().expect("lock") = Served {
                            default: Some(Arc::new(CertifiedKey::new(leaf.chain.clone(), key))),
                            by_name: vec![],
                        };
                    }
                }
            }
        });
        FilesServer {
            swappable,
            reload: reload.to_owned(),
            task,
        }
    }

    /// The command that reloads it.
    pub fn reload_command(&self) -> String {
        format!("touch '{}'", self.reload.display())
    }

    /// The server (address, target).
    pub fn server(&self) -> &Server {
        self.swappable.server()
    }
}

impl Drop for FilesServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
