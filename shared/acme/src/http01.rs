//! The built-in HTTP-01 responder: answers `GET /.well-known/acme-challenge/<token>` with the
//! key authorization, for every order in flight in this process.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;
use tracing::{debug, warn};

const PREFIX: &str = "/.well-known/acme-challenge/";

type Tokens = Arc<Mutex<HashMap<String, String>>>;

/// A running responder. Dropping it stops the listener.
#[derive(Debug)]
pub struct Http01Responder {
    tokens: Tokens,
    local_addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Http01Responder {
    /// Listens on `listen` (`0.0.0.0:80` in production).
    pub async fn bind(listen: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("HTTP-01 responder cannot listen on {listen}: {e}"),
            )
        })?;
        let local_addr = listener.local_addr()?;
        let tokens: Tokens = Arc::default();
        let served = tokens.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    continue;
                };
                let tokens = served.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let tokens = tokens.clone();
                        async move { Ok::<_, Infallible>(answer(&tokens, &req)) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                    // A validator that stalls must not hold a task forever.
                    match tokio::time::timeout(Duration::from_secs(30), conn).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => debug!(%peer, error = %e, "HTTP-01 connection failed"),
                        Err(_) => warn!(%peer, "HTTP-01 connection timed out"),
                    }
                });
            }
        });
        Ok(Http01Responder {
            tokens,
            local_addr,
            task,
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves `key_authorization` for `token` until [`Http01Responder::remove`].
    pub fn insert(&self, token: &str, key_authorization: &str) {
        lock(&self.tokens).insert(token.to_owned(), key_authorization.to_owned());
    }

    /// Stops serving `token`.
    pub fn remove(&self, token: &str) {
        lock(&self.tokens).remove(token);
    }

    /// Whether it serves no token any more.
    pub fn is_idle(&self) -> bool {
        lock(&self.tokens).is_empty()
    }
}

impl Drop for Http01Responder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(tokens: &Tokens) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
    tokens
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn answer<B>(tokens: &Tokens, req: &Request<B>) -> Response<Full<Bytes>> {
    let found = req
        .uri()
        .path()
        .strip_prefix(PREFIX)
        .and_then(|token| lock(tokens).get(token).cloned());
    let mut response = match found {
        Some(body) if req.method() == hyper::Method::GET => Response::new(Full::from(body)),
        _ => {
            let mut r = Response::new(Full::from("not found\n"));
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
    };
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/octet-stream"),
    );
    response
}

/// Writes challenge files into a web root that an existing server publishes.
#[derive(Clone, Debug)]
pub struct Webroot {
    dir: std::path::PathBuf,
}

impl Webroot {
    /// The solver for web root `root` (files go to `root/.well-known/acme-challenge/`).
    pub fn new(root: &std::path::Path) -> Self {
        Webroot {
            dir: root.join(".well-known/acme-challenge"),
        }
    }

    /// Writes the file for `token`.
    pub async fn insert(&self, token: &str, key_authorization: &str) -> std::io::Result<()> {
        if token.contains(['/', '\\']) || token.starts_with('.') {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("refusing challenge token {token:?}"),
            ));
        }
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", self.dir.display())))?;
        let path = self.dir.join(token);
        tokio::fs::write(&path, key_authorization)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
    }

    /// Removes the file for `token` (missing is fine).
    pub async fn remove(&self, token: &str) {
        let _ = tokio::fs::remove_file(self.dir.join(token)).await;
    }
}
