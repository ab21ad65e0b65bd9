//! `certpilot serve`: the API's router (`certpilot_api`) over the embedded store — the same
//! routes, answers and OpenAPI document as the API function behind API Gateway.
//!
//! Plain HTTP only on loopback; any other address needs `--tls-cert` and `--tls-key` (a
//! certificate certpilot manages, exported, will do). Callers present a bearer token; the
//! token file holds `NAME SHA256-HEX-OF-TOKEN` per line, so tokens never sit on disk in clear
//! and callers are told apart (`token:NAME`). `--no-auth` is accepted on loopback only.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use certpilot_api::{ApiError, ApiState, Caller, RequestSource};
use certpilot_app::App;
use certpilot_core::policy::address::{AddressPolicy, Network};
use certpilot_core::ports::{CertificateWork, QueueError, WorkSink};

use crate::args::{Format, RenewArgs, RollbackArgs, ServeArgs};
use crate::error::{CliError, usage};

/// Most pieces of work waiting for the worker; more are refused (and left to `certpilot
/// renew` on its schedule) rather than held without bound.
const WORK_BACKLOG: usize = 1024;

/// The background worker of `certpilot serve`: issues, deploys and rolls back what the API
/// accepted, one piece at a time, exactly as `certpilot renew ID` and `certpilot rollback ID`
/// would (the same leases, so a `renew` run by cron at the same time never doubles it).
struct LocalWorker(tokio::sync::mpsc::Sender<CertificateWork>);

#[async_trait::async_trait]
impl WorkSink for LocalWorker {
    async fn submit(&self, work: &CertificateWork) -> Result<(), QueueError> {
        self.0.try_send(work.clone()).map_err(|e| {
            QueueError::Unavailable(format!("the worker is busy ({e}); left to the schedule"))
        })
    }
}

impl LocalWorker {
    fn start(app: App, args: &ServeArgs) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<CertificateWork>(WORK_BACKLOG);
        let (ca, timeout, verify) = (
            args.acme_ca_file.clone(),
            args.acme_timeout,
            args.verify.clone(),
        );
        // `certpilot renew ID` exactly: its defaults come from its own flags' definitions.
        let make = move |id: String, force: bool| -> Option<RenewArgs> {
            let mut argv = vec![
                "certpilot",
                "renew",
                "--format",
                "json",
                "--concurrency",
                "1",
            ];
            if force {
                argv.push("--force");
            }
            // An id may start with '-': never a flag.
            argv.extend(["--", &id]);
            let Ok(crate::args::Cli {
                command: crate::args::Command::Renew(mut a),
                ..
            }) = <crate::args::Cli as clap::Parser>::try_parse_from(argv)
            else {
                return None;
            };
            a.acme_ca_file = ca.clone();
            a.acme_timeout = timeout;
            a.verify = verify.clone();
            Some(*a)
        };
        tokio::spawn(async move {
            while let Some(work) = rx.recv().await {
                let id = work.id().to_owned();
                let outcome = match work {
                    CertificateWork::Renew { id, force } => match make(id.clone(), force) {
                        Some(args) => super::renew::renew(&app, args).await,
                        None => Err(usage(format!("{id:?} is not a certificate id"))),
                    },
                    CertificateWork::RollBack { id, deployment } => {
                        super::deploy::rollback(
                            &app,
                            RollbackArgs {
                                id,
                                deployment,
                                format: Some(Format::Json),
                            },
                        )
                        .await
                    }
                };
                match outcome {
                    Ok(code) if code == std::process::ExitCode::SUCCESS => {
                        eprintln!("certpilot: {id}: done");
                    }
                    Ok(_) => eprintln!(
                        "certpilot: {id}: needs attention; `certpilot certificates show {id}` and `certpilot findings` say why"
                    ),
                    Err(e) => eprintln!("certpilot: {id}: {e}"),
                }
            }
        });
        LocalWorker(tx)
    }
}

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Token hashes (hex SHA-256) to caller names.
#[derive(Clone, Debug, Default)]
pub(crate) struct Tokens(HashMap<String, String>);

impl Tokens {
    /// Reads a token file: `NAME SHA256-HEX` per line; blank lines and `#` comments skipped.
    /// A mistake is named with its line.
    pub(crate) fn parse(text: &str, file: &str) -> Result<Tokens, String> {
        let mut tokens = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: &str| format!("{file} line {}: {why}", n + 1);
            let mut parts = line.split_whitespace();
            let (Some(name), Some(hash), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(bad(
                    "expected NAME SHA256-HEX (the hash of the token, e.g. `printf %s TOKEN | sha256sum`)",
                ));
            };
            if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
            {
                return Err(bad(
                    "the name may hold letters, digits, '-', '_', '.' and '@'",
                ));
            }
            let hash = hash.to_ascii_lowercase();
            if hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(bad("the hash must be 64 hex digits (SHA-256 of the token)"));
            }
            if tokens.insert(hash, name.to_owned()).is_some() {
                return Err(bad("this hash is already given to another name"));
            }
        }
        if tokens.is_empty() {
            return Err(format!("{file}: no tokens"));
        }
        Ok(Tokens(tokens))
    }

    /// The caller presenting `token`.
    fn caller(&self, token: &str) -> Option<Caller> {
        let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        self.0
            .get(&hex::encode(hash.as_ref()))
            .map(|name| Caller::new(format!("token:{name}")))
    }
}

/// The client's address, for the audit trail, over plain TCP or TLS.
#[derive(Clone, Copy, Debug)]
struct Peer(SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

impl
    axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, tokio::net::TcpListener>>
    for Peer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

impl certpilot_api::dashboard::SignIn for Tokens {
    fn caller(&self, token: &str) -> Option<Caller> {
        Tokens::caller(self, token)
    }
}

/// How callers are known.
#[derive(Clone)]
enum Auth {
    Tokens(Arc<Tokens>),
    /// `--no-auth` on loopback.
    Nobody,
}

async fn authenticate(State(auth): State<Auth>, mut req: Request, next: Next) -> Response {
    // The document describes the API and the health check answers load balancers; neither
    // holds anything of the estate.
    if matches!(req.uri().path(), "/openapi.json" | "/healthz") {
        return next.run(req).await;
    }
    let address = req
        .extensions()
        .get::<ConnectInfo<Peer>>()
        .map(|ConnectInfo(Peer(a))| a.ip().to_string());
    req.extensions_mut().insert(RequestSource {
        request_id: None,
        address,
    });
    // The dashboard keeps its own sessions (a token signs in once at /ui/login); without
    // authentication, the local caller opens one.
    let path = req.uri().path();
    if path == "/ui" || path.starts_with("/ui/") {
        if matches!(auth, Auth::Nobody) {
            req.extensions_mut()
                .insert(Caller::new("local:unauthenticated"));
        }
        return next.run(req).await;
    }
    let caller = match &auth {
        Auth::Nobody => Some(Caller::new("local:unauthenticated")),
        Auth::Tokens(tokens) => req
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .and_then(|t| tokens.caller(t.trim())),
    };
    match caller {
        Some(c) => {
            req.extensions_mut().insert(c);
            next.run(req).await
        }
        None => {
            let mut res = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "send Authorization: Bearer TOKEN with a token of the server's --token-file",
            )
            .into_response();
            res.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
            res
        }
    }
}

/// Runs `certpilot serve` until interrupted.
pub async fn serve(app: &App, args: ServeArgs) -> Result<ExitCode, CliError> {
    let listen: SocketAddr = args.listen.parse().map_err(|_| {
        usage(format!(
            "--listen {:?}: an address and port such as 127.0.0.1:8080 or [::1]:8080",
            args.listen
        ))
    })?;
    let loopback = listen.ip().is_loopback();
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls_config(cert, key)?),
        (None, None) if loopback => None,
        (None, None) => {
            return Err(usage(format!(
                "--listen {listen} is not loopback: give --tls-cert and --tls-key (plain HTTP only on 127.0.0.1 or ::1)"
            )));
        }
        _ => return Err(usage("--tls-cert and --tls-key go together")),
    };
    let auth = match (&args.token_file, args.no_auth) {
        (Some(_), true) => return Err(usage("--token-file or --no-auth, not both")),
        (Some(file), false) => {
            let text = std::fs::read_to_string(file).map_err(|source| CliError::File {
                path: format!("--token-file {}", file.display()),
                source,
            })?;
            Auth::Tokens(Arc::new(
                Tokens::parse(&text, &format!("--token-file {}", file.display())).map_err(usage)?,
            ))
        }
        (None, true) if loopback => Auth::Nobody,
        (None, true) => {
            return Err(usage(format!(
                "--no-auth is only for a loopback listener, not {listen}"
            )));
        }
        (None, false) => {
            return Err(usage(
                "give --token-file FILE (lines of NAME SHA256-OF-TOKEN), or --no-auth on loopback",
            ));
        }
    };
    let allowed = args
        .allow_network
        .iter()
        .map(|n| {
            n.parse::<Network>()
                .map_err(|e| usage(format!("--allow-network {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let addresses = AddressPolicy { allowed };
    // The worker's scans and verifications are held to the same policy as the routes.
    let app = app.clone().with_address_policy(addresses.clone());
    let mut state = ApiState::new(
        app.clone(),
        addresses,
        Arc::new(certpilot_api::resolve::SystemResolver),
    );
    if let Some(file) = &args.policy {
        let text = std::fs::read_to_string(file).map_err(|source| CliError::File {
            path: format!("--policy {}", file.display()),
            source,
        })?;
        let policy =
            certpilot_api::request_policy_from_yaml(&text, &format!("--policy {}", file.display()))
                .map_err(usage)?;
        state = state.with_requests(policy, Arc::new(LocalWorker::start(app.clone(), &args)));
    }
    let sign_in: Option<Arc<dyn certpilot_api::dashboard::SignIn>> = match &auth {
        Auth::Tokens(tokens) => Some(tokens.clone()),
        Auth::Nobody => None,
    };
    // Sessions end when the server stops: the key lives only in this process.
    state = state.with_dashboard(certpilot_api::dashboard::Dashboard::new(
        certpilot_api::dashboard::session::SessionKey::random(),
        sign_in,
    ));
    let router = certpilot_api::router(state)
        .layer(axum::middleware::from_fn_with_state(auth, authenticate));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| usage(format!("--listen {listen}: {e}")))?;
    let bound = listener.local_addr().map_err(CliError::Output)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    // The one line a script waits for: where to send requests.
    eprintln!(
        "certpilot: serving the API on {scheme}://{bound} (OpenAPI at /openapi.json, the dashboard at /ui)"
    );
    // SIGTERM too (systemd's stop): the worker's renewals take both signals over.
    let mut signals = crate::unix::Shutdown::install().map_err(CliError::Output)?;
    let shutdown = async move { signals.recv().await };
    let service = router.into_make_service_with_connect_info::<Peer>();
    let served = match tls {
        None => {
            axum::serve(listener, service)
                .with_graceful_shutdown(shutdown)
                .await
        }
        Some(config) => {
            axum::serve(TlsListener::new(listener, config), service)
                .with_graceful_shutdown(shutdown)
                .await
        }
    };
    served.map_err(CliError::Output)?;
    Ok(ExitCode::SUCCESS)
}

fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, CliError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| usage(format!("--tls-cert {}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(usage(format!(
            "--tls-cert {}: no certificate in it",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| usage(format!("--tls-key {}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| usage(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| usage(format!("--tls-cert/--tls-key: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// TLS connections for `axum::serve`: handshakes run in their own tasks (bounded in time),
/// so a slow client never holds up the others' accepts.
struct TlsListener {
    ready: tokio::sync::mpsc::Receiver<(
        tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
        SocketAddr,
    )>,
    local: SocketAddr,
}

impl TlsListener {
    fn new(listener: tokio::net::TcpListener, config: Arc<rustls::ServerConfig>) -> Self {
        let local = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let (tx, ready) = tokio::sync::mpsc::channel(64);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of descriptors and the like: wait rather than spin.
                        tracing::warn!(error = %e, "accept");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    if let Ok(Ok(tls)) =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                    {
                        let _ = tx.send((tls, peer)).await;
                    }
                });
            }
        });
        TlsListener { ready, local }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accepting task never ends while the listener lives.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_files_name_their_mistakes_and_tell_callers_apart() {
        let hash = |t: &str| {
            hex::encode(
                aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, t.as_bytes()).as_ref(),
            )
        };
        let text = format!(
            "# who may call\nops {}\n\nci-bot {}\n",
            hash("s3cret-ops"),
            hash("s3cret-ci")
        );
        let tokens = Tokens::parse(&text, "tokens").unwrap();
        assert_eq!(tokens.caller("s3cret-ops"), Some(Caller::new("token:ops")));
        assert_eq!(
            tokens.caller("s3cret-ci"),
            Some(Caller::new("token:ci-bot"))
        );
        assert_eq!(tokens.caller("guess"), None);
        for (bad, words) in [
            ("ops", "line 1: expected NAME SHA256-HEX"),
            ("ops abc", "line 1: the hash must be 64 hex digits"),
            ("o ps x y", "line 1: expected"),
            ("", "no tokens"),
        ] {
            let e = Tokens::parse(bad, "tokens").unwrap_err();
            assert!(e.contains(words), "{bad:?}: {e}");
        }
        let dup = format!("a {}\nb {}\n", hash("x"), hash("x"));
        assert!(
            Tokens::parse(&dup, "tokens")
                .unwrap_err()
                .contains("line 2")
        );
    }
}
