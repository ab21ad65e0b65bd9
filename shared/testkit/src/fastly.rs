//! A mock of Fastly's TLS API for custom certificates, written from its documentation and
//! go-fastly's recorded fixtures: `Fastly-Key` auth, JSON:API documents (`data`,
//! `relationships`, `links`/`meta` pagination with `page[number]`/`page[size]`), filters
//! honoured only with `Accept: application/vnd.api+json`, the three error shapes (JSON:API
//! `errors[]`, legacy `{msg, detail}` for auth), and:
//!
//! - private keys uploaded before their certificate, paired by public key; ECDSA P-256 and
//!   P-384 and RSA 2048 only; a key in use cannot be deleted;
//! - certificates whose `PATCH` keeps the id and every activation but only when the new one
//!   covers the same SAN entries or more; a certificate with activations cannot be deleted;
//! - activations (domain → certificate under a configuration), moved by `PATCH`;
//! - the rate limit on writes only: `Fastly-RateLimit-Remaining` and `Fastly-RateLimit-Reset`
//!   (epoch seconds) on every write's answer, 429 once none remain until the reset, no
//!   `Retry-After`; the window and the limit are parameters.
//!
//! Its edge is a TLS stand-in serving, per SNI, the certificate activated for the name (the
//! primary domain's to handshakes without SNI) — unless the test makes it keep what it
//! serves (the outage where the API accepts and the edge does not follow).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::certs::Leaf;
use crate::http_mock::{MockServer, Reply, Request};
use crate::servers::Swappable;

const JSON_API: &str = "application/vnd.api+json";

/// A stored private key.
#[derive(Clone, Debug)]
pub struct StoredKey {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its PEM.
    pub pem: String,
    spki: Vec<u8>,
    key_type: &'static str,
    key_length: usize,
}

/// A stored certificate.
#[derive(Clone)]
pub struct StoredCertificate {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The chain uploaded.
    pub chain: String,
    /// The leaf's serial, decimal.
    pub serial: String,
    /// Its TLS domains.
    pub domains: Vec<String>,
    leaf: Arc<Leaf>,
}

impl std::fmt::Debug for StoredCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredCertificate")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("serial", &self.serial)
            .field("domains", &self.domains)
            .finish_non_exhaustive()
    }
}

/// A stored activation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredActivation {
    /// Its id.
    pub id: String,
    /// The domain it serves.
    pub domain: String,
    /// The certificate serving it.
    pub certificate: String,
    /// The TLS configuration.
    pub configuration: String,
}

struct State {
    keys: BTreeMap<String, StoredKey>,
    certs: BTreeMap<String, StoredCertificate>,
    activations: BTreeMap<String, StoredActivation>,
    seq: u64,
    limit: u32,
    remaining: u32,
    window: Duration,
    reset_at: SystemTime,
    stuck: bool,
    fail_next: Option<(String, u16, String, String)>,
    calls: Vec<String>,
    primary: String,
}

/// The configuration every account has.
pub const DEFAULT_CONFIGURATION: &str = "t7CguUGZzb2W9Euo5FoKa";

/// A running mock, with its edge.
pub struct MockFastly {
    server: MockServer,
    state: Arc<Mutex<State>>,
    edge: Arc<Swappable>,
    /// The token it accepts.
    pub token: String,
}

fn doc(status: u16, body: Value) -> Reply {
    Reply {
        status,
        headers: vec![("content-type".into(), JSON_API.into())],
        body: body.to_string(),
    }
}

fn error(status: u16, title: &str, detail: &str) -> Reply {
    doc(
        status,
        json!({"errors": [{"title": title, "detail": detail, "status": status.to_string()}]}),
    )
}

fn no_content() -> Reply {
    Reply {
        status: 204,
        headers: vec![],
        body: String::new(),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_params(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// The key's SPKI, type and size, when it is a PKCS#8 key at all.
fn inspect_key(pem: &str) -> Option<(Vec<u8>, &'static str, usize)> {
    let pair = rcgen::KeyPair::from_pem(pem).ok()?;
    let spki = rcgen::PublicKeyData::subject_public_key_info(&pair);
    let (_, info) =
        <x509_parser::x509::SubjectPublicKeyInfo as x509_parser::prelude::FromDer<_>>::from_der(
            &spki,
        )
        .ok()?;
    let (kind, size) = match info.parsed().ok()? {
        x509_parser::public_key::PublicKey::RSA(r) => ("RSA", r.key_size()),
        x509_parser::public_key::PublicKey::EC(e) => ("ECDSA", e.key_size()),
        _ => ("OTHER", 0),
    };
    Some((spki, kind, size))
}

/// The leaf's SANs, serial (decimal) and SPKI.
fn inspect_chain(chain: &str) -> Option<(Vec<String>, String, Vec<u8>)> {
    crate::certs::leaf_facts(chain).map(|f| (f.sans, f.serial, f.spki))
}

fn epoch(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl State {
    fn next_id(&mut self, prefix: &str) -> String {
        self.seq += 1;
        format!("{prefix}{:018}", self.seq * 7_919)
    }

    fn key_view(k: &StoredKey, in_use: bool) -> Value {
        json!({"id": k.id, "type": "tls_private_key", "attributes": {
            "name": k.name, "key_type": k.key_type, "key_length": k.key_length,
            "created_at": "2026-12-01T00:00:00.000Z", "replace": false, "public_key_sha1": "…",
            "in_use": in_use,
        }})
    }

    fn cert_view(&self, c: &StoredCertificate) -> Value {
        json!({"id": c.id, "type": "tls_certificate",
        "attributes": {"name": c.name, "serial_number": c.serial, "issued_to": c.domains.first(),
            "issuer": "test", "signature_algorithm": "SHA256-ECDSA", "replace": false,
            "created_at": "2026-12-01T00:00:00.000Z", "updated_at": "2026-12-01T00:00:00.000Z"},
        "relationships": {
            "tls_domains": {"data": c.domains.iter().map(|d| json!({"id": d, "type": "tls_domain"})).collect::<Vec<_>>()},
            "tls_activations": {"data": self.activations.values().filter(|a| a.certificate == c.id)
                .map(|a| json!({"id": a.id, "type": "tls_activation"})).collect::<Vec<_>>()},
        }})
    }

    fn activation_view(a: &StoredActivation) -> Value {
        json!({"id": a.id, "type": "tls_activation",
        "attributes": {"created_at": "2026-12-01T00:00:00.000Z"},
        "relationships": {
            "tls_certificate": {"data": {"id": a.certificate, "type": "tls_certificate"}},
            "tls_configuration": {"data": {"id": a.configuration, "type": "tls_configuration"}},
            "tls_domain": {"data": {"id": a.domain, "type": "tls_domain"}},
        }})
    }

    fn key_in_use(&self, k: &StoredKey) -> bool {
        self.certs
            .values()
            .any(|c| inspect_chain(&c.chain).is_some_and(|(_, _, spki)| spki == k.spki))
    }

    /// What the edge serves now: each activated domain's certificate.
    fn refresh_edge(&self, edge: &Swappable) {
        if self.stuck {
            return;
        }
        let by_name: Vec<(String, &Leaf)> = self
            .activations
            .values()
            .filter_map(|a| Some((a.domain.clone(), &*self.certs.get(&a.certificate)?.leaf)))
            .collect();
        let default = by_name
            .iter()
            .find(|(d, _)| *d == self.primary)
            .map(|(_, l)| *l);
        edge.serve_by_name(&by_name, default);
    }
}

/// A page of `items` as a JSON:API list.
fn page(items: Vec<Value>, params: &[(String, String)], path: &str) -> Reply {
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n == k)
            .and_then(|(_, v)| v.parse::<usize>().ok())
    };
    let number = get("page[number]").unwrap_or(1).max(1);
    let size = get("page[size]").unwrap_or(20).clamp(1, 100);
    let total = items.len();
    let pages = total.div_ceil(size).max(1);
    let data: Vec<Value> = items
        .into_iter()
        .skip((number - 1) * size)
        .take(size)
        .collect();
    let link = |n: usize| json!(format!("{path}?page[number]={n}&page[size]={size}"));
    doc(
        200,
        json!({
            "data": data,
            "links": {"self": link(number), "first": link(1), "last": link(pages),
                "prev": if number > 1 { link(number - 1) } else { Value::Null },
                "next": if number < pages { link(number + 1) } else { Value::Null }},
            "meta": {"per_page": size, "current_page": number, "record_count": total, "total_pages": pages},
        }),
    )
}

impl MockFastly {
    /// An account whose edge answers handshakes without SNI with `primary_domain`'s
    /// certificate; 1,000 writes an hour.
    pub async fn start(primary_domain: &str) -> MockFastly {
        let token = "fastly-test-token".to_owned();
        let state = Arc::new(Mutex::new(State {
            keys: BTreeMap::new(),
            certs: BTreeMap::new(),
            activations: BTreeMap::new(),
            seq: 0,
            limit: 1000,
            remaining: 1000,
            window: Duration::from_secs(3600),
            reset_at: SystemTime::now() + Duration::from_secs(3600),
            stuck: false,
            fail_next: None,
            calls: vec![],
            primary: primary_domain.to_ascii_lowercase(),
        }));
        let edge = Arc::new(Swappable::start().await);
        let handler = {
            let (state, edge, token) = (state.clone(), edge.clone(), token.clone());
            Arc::new(move |req: Request| {
                let mut s = state.lock().expect("lock");
                let reply = handle(&mut s, &token, req);
                s.refresh_edge(&edge);
                reply
            })
        };
        MockFastly {
            server: MockServer::start(handler).await,
            state,
            edge,
            token,
        }
    }

    /// The API's base URL (as `api-url`).
    pub fn api_url(&self) -> String {
        self.server.base_url()
    }

    /// The edge's target (`127.0.0.1:PORT`).
    pub fn edge_target(&self) -> String {
        self.edge.server().target()
    }

    /// `limit` writes per `window`, starting now (Fastly's is 1,000 an hour, and varies by
    /// account).
    pub fn rate_limit(&self, limit: u32, window: Duration) {
        let mut s = self.state.lock().expect("lock");
        s.limit = limit;
        s.remaining = limit;
        s.window = window;
        s.reset_at = SystemTime::now() + window;
    }

    /// The window ends now (the hour passed): the limit is whole again.
    pub fn reset_window(&self) {
        let mut s = self.state.lock().expect("lock");
        s.remaining = s.limit;
        s.reset_at = SystemTime::now() + s.window;
    }

    /// The edge keeps serving what it serves, whatever the API accepts.
    pub fn stick(&self, stuck: bool) {
        self.state.lock().expect("lock").stuck = stuck;
    }

    /// The next call to `route` (`POST /tls/certificates`) is refused with `status` and a
    /// JSON:API error.
    pub fn fail_next(&self, route: &str, status: u16, title: &str, detail: &str) {
        self.state.lock().expect("lock").fail_next = Some((
            route.to_owned(),
            status,
            title.to_owned(),
            detail.to_owned(),
        ));
    }

    /// The certificates stored now, by id.
    pub fn certificates(&self) -> Vec<StoredCertificate> {
        self.state
            .lock()
            .expect("lock")
            .certs
            .values()
            .cloned()
            .collect()
    }

    /// The private keys stored now.
    pub fn keys(&self) -> Vec<StoredKey> {
        self.state
            .lock()
            .expect("lock")
            .keys
            .values()
            .cloned()
            .collect()
    }

    /// The activations now.
    pub fn activations(&self) -> Vec<StoredActivation> {
        self.state
            .lock()
            .expect("lock")
            .activations
            .values()
            .cloned()
            .collect()
    }

    /// Every call, `METHOD path`.
    pub fn calls(&self) -> Vec<String> {
        self.state.lock().expect("lock").calls.clone()
    }
}

fn handle(s: &mut State, token: &str, req: Request) -> Reply {
    s.calls.push(format!("{} {}", req.method, req.path));
    if req.headers.get("fastly-key").map(String::as_str) != Some(token) {
        return doc(
            401,
            json!({"msg": "Provided credentials are missing or invalid"}),
        );
    }
    let write = req.method != "GET" && req.method != "HEAD";
    let mut limit_headers = vec![];
    if write {
        let now = SystemTime::now();
        if now >= s.reset_at {
            s.remaining = s.limit;
            s.reset_at = now + s.window;
        }
        let reset = epoch(s.reset_at + Duration::from_millis(999)).to_string();
        if s.remaining == 0 {
            let mut r = error(429, "Too many requests", "Rate limit exceeded");
            r.headers
                .push(("fastly-ratelimit-remaining".into(), "0".into()));
            r.headers.push(("fastly-ratelimit-reset".into(), reset));
            return r;
        }
        s.remaining -= 1;
        limit_headers.push((
            "fastly-ratelimit-remaining".to_owned(),
            s.remaining.to_string(),
        ));
        limit_headers.push(("fastly-ratelimit-reset".to_owned(), reset));
    }
    let mut reply = route(s, req);
    reply.headers.extend(limit_headers);
    reply
}

fn route(s: &mut State, req: Request) -> Reply {
    let (path, query) = req.path.split_once('?').unwrap_or((req.path.as_str(), ""));
    let json_api = req
        .headers
        .get("accept")
        .is_some_and(|a| a.contains(JSON_API));
    // Fastly ignores filters unless the client asks for JSON:API.
    let params: Vec<(String, String)> = query_params(query)
        .into_iter()
        .filter(|(k, _)| json_api || !k.starts_with("filter["))
        .collect();
    let filter = |name: &str| {
        params
            .iter()
            .find(|(k, _)| *k == format!("filter[{name}]"))
            .map(|(_, v)| v.to_ascii_lowercase())
    };
    let body: Option<Value> = if req.body.is_empty() {
        None
    } else {
        if !req
            .headers
            .get("content-type")
            .is_some_and(|c| c.contains(JSON_API))
        {
            return error(
                415,
                "Unsupported Media Type",
                "send application/vnd.api+json",
            );
        }
        match serde_json::from_slice(&req.body) {
            Ok(v) => Some(v),
            Err(_) => return error(400, "Bad Request", "the body is not JSON"),
        }
    };
    if s.fail_next
        .as_ref()
        .is_some_and(|(route, ..)| format!("{} {path}", req.method).starts_with(route.as_str()))
        && let Some((_, status, title, detail)) = s.fail_next.take()
    {
        return error(status, &title, &detail);
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let data = body
        .as_ref()
        .map(|b| b["data"].clone())
        .unwrap_or(Value::Null);
    match (req.method.as_str(), segments.as_slice()) {
        ("GET", ["tls", "configurations"]) => page(
            vec![
                json!({"id": DEFAULT_CONFIGURATION, "type": "tls_configuration",
                "attributes": {"name": "Default TLS configuration", "default": true, "bulk": false,
                    "http_protocols": ["http/1.1", "http/2"], "tls_protocols": ["1.2", "1.3"]}}),
            ],
            &params,
            path,
        ),
        ("GET", ["tls", "private_keys"]) => {
            let in_use = filter("in_use");
            let items = s
                .keys
                .values()
                .map(|k| (k, s.key_in_use(k)))
                .filter(|(_, used)| in_use.as_deref().is_none_or(|f| (f == "true") == *used))
                .map(|(k, used)| State::key_view(k, used))
                .collect();
            page(items, &params, path)
        }
        ("POST", ["tls", "private_keys"]) => {
            if !matches!(data["type"].as_str(), Some("tls_private_key" | "")) {
                return error(409, "Conflict", "type must be tls_private_key");
            }
            let Some(pem) = data["attributes"]["key"].as_str() else {
                return error(
                    400,
                    "Missing required attribute",
                    "param is missing or the value is empty: key",
                );
            };
            let Some((spki, key_type, key_length)) = inspect_key(pem) else {
                return error(
                    400,
                    "Invalid private key",
                    "the key is not a PEM private key",
                );
            };
            let accepted = matches!((key_type, key_length), ("RSA", 2048) | ("ECDSA", 256 | 384));
            if !accepted {
                return error(
                    422,
                    "Invalid private key",
                    &format!(
                        "unsupported key: {key_type} {key_length}; use ECDSA 256 or 384, or RSA 2048"
                    ),
                );
            }
            if s.keys.values().any(|k| k.spki == spki) {
                return error(409, "Duplicate record", "Key already exists");
            }
            let id = s.next_id("K");
            let key = StoredKey {
                id: id.clone(),
                name: data["attributes"]["name"].as_str().unwrap_or("").to_owned(),
                pem: pem.to_owned(),
                spki,
                key_type,
                key_length,
            };
            let v = State::key_view(&key, false);
            s.keys.insert(id, key);
            doc(201, json!({"data": v}))
        }
        ("GET", ["tls", "private_keys", id]) => match s.keys.get(*id) {
            Some(k) => doc(200, json!({"data": State::key_view(k, s.key_in_use(k))})),
            None => error(404, "Record not found", "Record not found"),
        },
        ("DELETE", ["tls", "private_keys", id]) => {
            let Some(k) = s.keys.get(*id) else {
                return error(404, "Record not found", "Record not found");
            };
            if s.key_in_use(k) {
                return error(
                    422,
                    "Unprocessable Entity",
                    "Key is in use by a certificate and cannot be deleted",
                );
            }
            s.keys.remove(*id);
            no_content()
        }
        ("GET", ["tls", "certificates"]) => {
            let domain = filter("tls_domains.id");
            let in_use = filter("in_use");
            let items = s
                .certs
                .values()
                .filter(|c| domain.as_ref().is_none_or(|d| c.domains.contains(d)))
                .filter(|c| {
                    let used = s.activations.values().any(|a| a.certificate == c.id);
                    in_use.as_deref().is_none_or(|f| (f == "true") == used)
                })
                .map(|c| s.cert_view(c))
                .collect();
            page(items, &params, path)
        }
        ("GET", ["tls", "certificates", id]) => match s.certs.get(*id) {
            Some(c) => doc(200, json!({"data": s.cert_view(c)})),
            None => error(404, "Record not found", "Record not found"),
        },
        ("POST", ["tls", "certificates"]) | ("PATCH", ["tls", "certificates", _]) => {
            let replacing = segments.get(2).map(|id| (*id).to_owned());
            if data["type"].as_str() != Some("tls_certificate") {
                return error(409, "Conflict", "type must be tls_certificate");
            }
            if let Some(id) = &replacing
                && !s.certs.contains_key(id)
            {
                return error(404, "Record not found", "Record not found");
            }
            let Some(chain) = data["attributes"]["cert_blob"].as_str() else {
                return error(
                    400,
                    "Missing required attribute",
                    "param is missing or the value is empty: cert_blob",
                );
            };
            let Some((domains, serial, spki)) = inspect_chain(chain) else {
                return error(
                    400,
                    "Invalid certificate",
                    "cert_blob is not a PEM certificate",
                );
            };
            let Some(key) = s.keys.values().find(|k| k.spki == spki).cloned() else {
                return error(
                    400,
                    "Invalid certificate",
                    "No matching private key found; upload the private key before its certificate",
                );
            };
            if let Some(id) = &replacing {
                let old = &s.certs[id];
                if !old.domains.iter().all(|d| domains.contains(d)) {
                    return error(
                        422,
                        "Unprocessable Entity",
                        "The new TLS certificate must contain all SAN entries as the current TLS certificate",
                    );
                }
            }
            if s.certs
                .values()
                .any(|c| c.serial == serial && Some(&c.id) != replacing.as_ref())
            {
                return error(409, "Duplicate record", "Certificate already exists");
            }
            let leaf = Arc::new(Leaf::from_pem(chain, &key.pem));
            let id = replacing.clone().unwrap_or_else(|| s.next_id("C"));
            let name = data["attributes"]["name"]
                .as_str()
                .map(str::to_owned)
                .or_else(|| domains.first().cloned())
                .unwrap_or_default();
            let stored = StoredCertificate {
                id: id.clone(),
                name,
                chain: chain.to_owned(),
                serial,
                domains,
                leaf,
            };
            s.certs.insert(id.clone(), stored);
            let v = s.cert_view(&s.certs[&id]);
            doc(
                if replacing.is_some() { 200 } else { 201 },
                json!({"data": v}),
            )
        }
        ("DELETE", ["tls", "certificates", id]) => {
            if !s.certs.contains_key(*id) {
                return error(404, "Record not found", "Record not found");
            }
            if s.activations.values().any(|a| a.certificate == *id) {
                return error(
                    422,
                    "Unprocessable Entity",
                    "Certificate has active domains; disable TLS on them first",
                );
            }
            s.certs.remove(*id);
            no_content()
        }
        ("GET", ["tls", "activations"]) => {
            let domain = filter("tls_domain.id");
            let certificate = params
                .iter()
                .find(|(k, _)| k == "filter[tls_certificate.id]")
                .map(|(_, v)| v.clone());
            let items = s
                .activations
                .values()
                .filter(|a| domain.as_ref().is_none_or(|d| a.domain == *d))
                .filter(|a| certificate.as_ref().is_none_or(|c| a.certificate == *c))
                .map(State::activation_view)
                .collect();
            page(items, &params, path)
        }
        ("GET", ["tls", "activations", id]) => match s.activations.get(*id) {
            Some(a) => doc(200, json!({"data": State::activation_view(a)})),
            None => error(404, "Record not found", "Record not found"),
        },
        ("POST", ["tls", "activations"]) => {
            if !matches!(data["type"].as_str(), Some("tls_activation" | "")) {
                return error(409, "Conflict", "type must be tls_activation");
            }
            let rel = &data["relationships"];
            let (Some(cert), Some(config), Some(domain)) = (
                rel["tls_certificate"]["data"]["id"].as_str(),
                rel["tls_configuration"]["data"]["id"].as_str(),
                rel["tls_domain"]["data"]["id"].as_str(),
            ) else {
                return error(
                    400,
                    "Missing required attribute",
                    "tls_certificate, tls_configuration and tls_domain are required",
                );
            };
            let domain = domain.to_ascii_lowercase();
            let Some(c) = s.certs.get(cert) else {
                return error(404, "Record not found", "tls_certificate not found");
            };
            if config != DEFAULT_CONFIGURATION {
                return error(404, "Record not found", "tls_configuration not found");
            }
            if !c.domains.contains(&domain) {
                return error(
                    422,
                    "Unprocessable Entity",
                    "Domain is not a SAN entry of the certificate",
                );
            }
            if s.activations.values().any(|a| a.domain == domain) {
                return error(409, "Duplicate record", "Domain is already activated");
            }
            let id = s.next_id("A");
            let a = StoredActivation {
                id: id.clone(),
                domain,
                certificate: cert.to_owned(),
                configuration: config.to_owned(),
            };
            let v = State::activation_view(&a);
            s.activations.insert(id, a);
            doc(201, json!({"data": v}))
        }
        ("PATCH", ["tls", "activations", id]) => {
            let Some(cert) = data["relationships"]["tls_certificate"]["data"]["id"].as_str() else {
                return error(
                    400,
                    "Missing required attribute",
                    "tls_certificate is required",
                );
            };
            let Some(a) = s.activations.get(*id).cloned() else {
                return error(404, "Record not found", "Record not found");
            };
            let Some(c) = s.certs.get(cert) else {
                return error(404, "Record not found", "tls_certificate not found");
            };
            if !c.domains.contains(&a.domain) {
                return error(
                    422,
                    "Unprocessable Entity",
                    "Domain is not a SAN entry of the certificate",
                );
            }
            let moved = StoredActivation {
                certificate: cert.to_owned(),
                ..a
            };
            let v = State::activation_view(&moved);
            s.activations.insert((*id).to_owned(), moved);
            doc(200, json!({"data": v}))
        }
        ("DELETE", ["tls", "activations", id]) => match s.activations.remove(*id) {
            Some(_) => no_content(),
            None => error(404, "Record not found", "Record not found"),
        },
        _ => error(404, "Not Found", "no such route"),
    }
}
