//! A small HTTP/1.1 server on loopback for the mocks of third-party services that cannot run
//! here (Slack, webhook receivers): each request is handed whole to a handler that answers
//! as the vendor documents. It stops when its handle is dropped.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A request as the handler sees it.
#[derive(Clone, Debug)]
pub struct Request {
    /// `POST`, `GET`…
    pub method: String,
    /// The path and query.
    pub path: String,
    /// Headers, names lowercase.
    pub headers: HashMap<String, String>,
    /// The body.
    pub body: Vec<u8>,
}

/// An answer.
#[derive(Clone, Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

impl Reply {
    /// A reply with `status` and a plain-text `body`.
    pub fn text(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: body.to_owned(),
        }
    }
}

/// The handler a mock answers with.
pub type Handler = Arc<dyn Fn(Request) -> Reply + Send + Sync>;

/// A running mock server.
pub struct MockServer {
    addr: SocketAddr,
    tls: bool,
    task: JoinHandle<()>,
}

/// Answers one connection's requests with `handler`.
async fn serve<IO>(io: IO, handler: Handler)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let handler = handler.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes().to_vec())
                .unwrap_or_default();
            let request = Request {
                method: parts.method.to_string(),
                path: parts
                    .uri
                    .path_and_query()
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
                headers: parts
                    .headers
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.as_str().to_owned(),
                            v.to_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect(),
                body,
            };
            let reply = handler(request);
            let mut response = hyper::Response::builder().status(reply.status);
            for (k, v) in &reply.headers {
                response = response.header(k, v);
            }
            Ok::<_, Infallible>(
                response
                    .body(Full::new(Bytes::from(reply.body)))
                    .expect("response"),
            )
        }
    });
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .await;
}

impl MockServer {
    /// Starts one answering with `handler` over plain HTTP.
    pub async fn start(handler: Handler) -> MockServer {
        Self::start_with(handler, None).await
    }

    /// Starts one answering with `handler` over HTTPS, with the server certificate `config`
    /// gives (see [`crate::servers::server_config`]).
    pub async fn start_tls(handler: Handler, config: Arc<rustls::ServerConfig>) -> MockServer {
        Self::start_with(handler, Some(tokio_rustls::TlsAcceptor::from(config))).await
    }

    async fn start_with(handler: Handler, tls: Option<tokio_rustls::TlsAcceptor>) -> MockServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let is_tls = tls.is_some();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (handler, tls) = (handler.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                serve(stream, handler).await;
                            }
                        }
                        None => serve(stream, handler).await,
                    }
                });
            }
        });
        MockServer {
            addr,
            tls: is_tls,
            task,
        }
    }

    /// `http://127.0.0.1:PORT` (or `https://…`).
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
