//! A small HTTP/1.1 server on loopback for the mocks of third-party services that cannot run
//! here (Slack, webhook receivers): each request is handed whole to a handler that answers
//! as the vendor documents. It stops when its handle is dropped.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::net::TcpStream;
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

/// `req` passed on to `base` (`http://host:port`, e.g. moto), blocking: its reply (for
/// stand-ins in front of moto; call it inside `tokio::task::block_in_place`).
pub fn forward(base: &str, req: &Request) -> Reply {
    let authority = base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = match TcpStream::connect(authority) {
        Ok(s) => s,
        Err(e) => return Reply::text(502, &format!("moto: {e}")),
    };
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(30)));
    let mut head = format!(
        "{} {} HTTP/1.1\r\nhost: {authority}\r\n",
        req.method, req.path
    );
    for (k, v) in &req.headers {
        if !matches!(
            k.as_str(),
            "host" | "connection" | "content-length" | "transfer-encoding"
        ) {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    head.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        req.body.len()
    ));
    if stream.write_all(head.as_bytes()).is_err() || stream.write_all(&req.body).is_err() {
        return Reply::text(502, "moto: write failed");
    }
    // Read to the end of the answer, not of the connection: a server may keep it open.
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let length = head.lines().find_map(|l| {
                l.strip_prefix("content-length:")
                    .and_then(|v| v.trim().parse::<usize>().ok())
            });
            let complete = match length {
                Some(n) => raw.len() >= end + 4 + n,
                None if head.contains("transfer-encoding: chunked") => {
                    raw.ends_with(b"\r\n0\r\n\r\n") || raw[end + 4..].starts_with(b"0\r\n\r\n")
                }
                None => false,
            };
            if complete {
                break;
            }
        }
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw.get(split + 4..).unwrap_or_default().to_vec();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(502);
    let mut headers = Vec::new();
    let mut chunked = false;
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            let k = k.trim().to_ascii_lowercase();
            if k == "transfer-encoding" && v.contains("chunked") {
                chunked = true;
            }
            if !matches!(
                k.as_str(),
                "content-length" | "transfer-encoding" | "connection"
            ) {
                headers.push((k, v.trim().to_owned()));
            }
        }
    }
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..eol]).trim(), 16)
                .unwrap_or(0);
            if size == 0 {
                break;
            }
            let start = eol + 2;
            out.extend_from_slice(&rest[start..(start + size).min(rest.len())]);
            rest = &rest[(start + size + 2).min(rest.len())..];
        }
        body = out;
    }
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}
