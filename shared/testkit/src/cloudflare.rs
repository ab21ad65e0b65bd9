//! A mock of Cloudflare's custom certificates API, written from its documentation
//! (`/zones/{zone}/custom_certificates`): bearer-token auth, the `{success, errors, messages,
//! result}` envelope, `sni_custom` certificates whose `PATCH` answers with a **new** id and
//! deletes the old one, the documented error codes (1002 unknown id, 1220 duplicate, 2103 no
//! hostname of the zone, 2200 certificate and key that do not match), pagination with
//! `result_info`, and the rate limit that refuses **every** call with 429 and `Retry-After`
//! for a lockout the test chooses.
//!
//! Its edge is a TLS stand-in serving the newest active certificate — unless the test makes
//! it keep the old one (the outage where the API accepts and the edge does not follow).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::certs::Leaf;
use crate::http_mock::{MockServer, Reply, Request};
use crate::servers::Swappable;

/// One stored certificate.
#[derive(Clone, Debug)]
pub struct StoredCertificate {
    /// Its id.
    pub id: String,
    /// Its names.
    pub hosts: Vec<String>,
    /// The chain uploaded.
    pub chain: String,
    /// The key uploaded.
    pub key: String,
    /// `sni_custom` or `legacy_custom`.
    pub kind: String,
    /// The order it was uploaded in.
    pub seq: u64,
}

#[derive(Default)]
struct State {
    certs: BTreeMap<String, StoredCertificate>,
    seq: u64,
    locked_until: Option<Instant>,
    lockout: Duration,
    advertised: Duration,
    limit: Option<u32>,
    stuck: bool,
    fail_next: Option<(u16, i64, String)>,
    calls: Vec<String>,
}

/// A running mock, with its edge.
pub struct MockCloudflare {
    server: MockServer,
    state: Arc<Mutex<State>>,
    edge: Arc<Swappable>,
    /// The zone's id.
    pub zone_id: String,
    /// The token it accepts.
    pub token: String,
}

fn envelope(status: u16, result: Value) -> Reply {
    Reply {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: json!({"success": true, "errors": [], "messages": [], "result": result}).to_string(),
    }
}

fn error(status: u16, code: i64, message: &str) -> Reply {
    Reply {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: json!({"success": false, "errors": [{"code": code, "message": message}], "messages": [], "result": null})
            .to_string(),
    }
}

fn view(c: &StoredCertificate, zone: &str) -> Value {
    json!({
        "id": c.id, "zone_id": zone, "hosts": c.hosts, "status": "active",
        "bundle_method": "ubiquitous", "type": c.kind, "priority": 0,
        "issuer": "test", "signature": "ECDSAWithSHA256",
        "uploaded_on": "2026-12-01T00:00:00Z", "modified_on": "2026-12-01T00:00:00Z",
        "expires_on": "2027-03-01T00:00:00Z",
    })
}

/// The SANs of the leaf in `chain`, and whether `key` is its key; `None` when either does
/// not parse.
fn inspect(chain: &str, key: &str) -> Option<(Vec<String>, bool, Leaf)> {
    let (chain, key) = (chain.to_owned(), key.to_owned());
    let leaf = std::panic::catch_unwind(move || Leaf::from_pem(&chain, &key)).ok()?;
    let der = leaf.der();
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let hosts = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let matches = provider
        .key_provider
        .load_private_key(leaf.private_key())
        .ok()
        .is_some_and(|k| {
            k.public_key()
                .is_some_and(|spki| spki.as_ref() == cert.public_key().raw)
        });
    Some((hosts, matches, leaf))
}

impl MockCloudflare {
    /// A zone whose hostnames end in `zone_name`, answering `token`.
    pub async fn start(zone_name: &str) -> MockCloudflare {
        let zone_id = "0123456789abcdef0123456789abcdef".to_owned();
        let token = "cf-test-token".to_owned();
        let state = Arc::new(Mutex::new(State {
            lockout: Duration::from_secs(300),
            advertised: Duration::from_secs(300),
            ..State::default()
        }));
        let edge = Arc::new(Swappable::start().await);
        let handler = {
            let (state, edge) = (state.clone(), edge.clone());
            let (zone_id, token, zone_name) =
                (zone_id.clone(), token.clone(), zone_name.to_owned());
            Arc::new(move |req: Request| {
                let mut s = state.lock().expect("lock");
                handle(&mut s, &edge, &zone_id, &zone_name, &token, req)
            })
        };
        MockCloudflare {
            server: MockServer::start(handler).await,
            state,
            edge,
            zone_id,
            token,
        }
    }

    /// The API's base URL (as `api-url`).
    pub fn api_url(&self) -> String {
        format!("{}/client/v4", self.server.base_url())
    }

    /// The edge's target (`127.0.0.1:PORT`).
    pub fn edge_target(&self) -> String {
        self.edge.server().target()
    }

    /// After `calls` more calls, every call is refused with 429 for `lockout`, each 429
    /// saying `Retry-After: advertised` (Cloudflare's five minutes, which a test need not
    /// sit out: the lockout itself can be short).
    pub fn rate_limit_after(&self, calls: u32, lockout: Duration, advertised: Duration) {
        let mut s = self.state.lock().expect("lock");
        s.limit = Some(calls);
        s.lockout = lockout;
        s.advertised = advertised;
    }

    /// The edge keeps serving what it serves, whatever the API accepts.
    pub fn stick(&self, stuck: bool) {
        self.state.lock().expect("lock").stuck = stuck;
    }

    /// The next write is refused with `status`, Cloudflare's `code` and `message`.
    pub fn fail_next(&self, status: u16, code: i64, message: &str) {
        self.state.lock().expect("lock").fail_next = Some((status, code, message.to_owned()));
    }

    /// The certificates stored now, by upload order.
    pub fn certificates(&self) -> Vec<StoredCertificate> {
        let mut v: Vec<_> = self
            .state
            .lock()
            .expect("lock")
            .certs
            .values()
            .cloned()
            .collect();
        v.sort_by_key(|c| c.seq);
        v
    }

    /// Every call, `METHOD path`.
    pub fn calls(&self) -> Vec<String> {
        self.state.lock().expect("lock").calls.clone()
    }
}

fn handle(
    s: &mut State,
    edge: &Swappable,
    zone_id: &str,
    zone_name: &str,
    token: &str,
    req: Request,
) -> Reply {
    s.calls.push(format!("{} {}", req.method, req.path));
    let now = Instant::now();
    if let Some(until) = s.locked_until {
        if until > now {
            let mut r = error(
                429,
                971,
                "Please wait and consider throttling your request speed",
            );
            r.headers.push((
                "retry-after".into(),
                s.advertised.as_secs().max(1).to_string(),
            ));
            return r;
        }
        s.locked_until = None;
    }
    if let Some(n) = s.limit {
        if n == 0 {
            s.limit = None;
            s.locked_until = Some(now + s.lockout);
            let mut r = error(
                429,
                971,
                "Please wait and consider throttling your request speed",
            );
            r.headers.push((
                "retry-after".into(),
                s.advertised.as_secs().max(1).to_string(),
            ));
            return r;
        }
        s.limit = Some(n - 1);
    }
    if req.headers.get("authorization").map(String::as_str) != Some(&format!("Bearer {token}")) {
        return error(403, 10000, "Authentication error");
    }
    let (path, query) = req.path.split_once('?').unwrap_or((req.path.as_str(), ""));
    let prefix = format!("/client/v4/zones/{zone_id}/custom_certificates");
    let Some(rest) = path.strip_prefix(&prefix) else {
        return error(
            404,
            7003,
            "Could not route to the requested zone: no such zone",
        );
    };
    let id = rest.strip_prefix('/').filter(|i| !i.is_empty());
    if req.method != "GET"
        && let Some((status, code, message)) = s.fail_next.take()
    {
        return error(status, code, &message);
    }
    match (req.method.as_str(), id) {
        ("GET", None) => {
            let param = |k: &str| {
                query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
                    .and_then(|v| v.parse::<usize>().ok())
            };
            let (page, per_page) = (
                param("page").unwrap_or(1).max(1),
                param("per_page").unwrap_or(20).clamp(5, 50),
            );
            let mut all: Vec<&StoredCertificate> = s.certs.values().collect();
            all.sort_by_key(|c| c.seq);
            let total = all.len();
            let items: Vec<Value> = all
                .iter()
                .skip((page - 1) * per_page)
                .take(per_page)
                .map(|c| view(c, zone_id))
                .collect();
            let mut r = envelope(200, Value::Array(items.clone()));
            let mut body: Value = serde_json::from_str(&r.body).expect("json");
            body["result_info"] = json!({"page": page, "per_page": per_page, "count": items.len(),
                "total_count": total, "total_pages": total.div_ceil(per_page).max(1)});
            r.body = body.to_string();
            r
        }
        ("GET", Some(id)) => match s.certs.get(id) {
            Some(c) => envelope(200, view(c, zone_id)),
            None => error(404, 1002, "Invalid certificate id"),
        },
        ("DELETE", Some(id)) => match s.certs.remove(id) {
            Some(_) => envelope(200, json!({"id": id})),
            None => error(404, 1002, "Invalid certificate id"),
        },
        ("POST", None) | ("PATCH", Some(_)) => {
            let body: Value = match serde_json::from_slice(&req.body) {
                Ok(v) => v,
                Err(_) => return error(400, 1001, "Invalid request: the body is not JSON"),
            };
            if let Some(id) = id
                && !s.certs.contains_key(id)
            {
                return error(400, 1002, "Invalid certificate id");
            }
            let (Some(chain), Some(key)) =
                (body["certificate"].as_str(), body["private_key"].as_str())
            else {
                return error(400, 1001, "certificate and private_key are required");
            };
            if id.is_some() && body.get("type").is_some() {
                return error(400, 1434, "type cannot be changed");
            }
            let Some((hosts, matches, leaf)) = inspect(chain, key) else {
                return error(
                    400,
                    2106,
                    "The private key or certificate could not be read",
                );
            };
            if !matches {
                return error(400, 2200, "The certificate and private key do not match");
            }
            if !hosts
                .iter()
                .any(|h| h == zone_name || h.ends_with(&format!(".{zone_name}")))
            {
                return error(
                    400,
                    2103,
                    "The SSL attribute is invalid: no hostname of the zone in the certificate",
                );
            }
            if s.certs
                .values()
                .any(|c| c.chain == chain && Some(c.id.as_str()) != id)
            {
                return error(400, 1220, "This certificate has already been submitted.");
            }
            s.seq += 1;
            let new_id = format!("{:032x}", 0xc0ffee_u64 * 1_000 + s.seq);
            if let Some(old) = id {
                s.certs.remove(old);
            }
            let kind = if id.is_some() {
                "sni_custom".to_owned()
            } else {
                body["type"].as_str().unwrap_or("legacy_custom").to_owned()
            };
            let stored = StoredCertificate {
                id: new_id.clone(),
                hosts,
                chain: chain.to_owned(),
                key: key.to_owned(),
                kind,
                seq: s.seq,
            };
            let v = view(&stored, zone_id);
            s.certs.insert(new_id, stored);
            if !s.stuck {
                edge.serve(&leaf);
            }
            envelope(200, v)
        }
        _ => error(405, 10000, "method not allowed"),
    }
}
