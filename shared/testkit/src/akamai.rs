//! A mock of Akamai's Certificate Provisioning System (CPS) for one third-party enrollment,
//! written from the documented API (edgegrid-golang `pkg/cps`, the Terraform provider,
//! akamai/cli-cps):
//!
//! - EdgeGrid authentication, verified here independently of certpilot's signer (a bad
//!   signature or a reused nonce is 401), and the account's rate limit (35 requests a
//!   minute by default; 429 with `Retry-After`);
//! - versioned media types (`application/vnd.akamai.cps.<resource>.vN+json`, any version
//!   accepted, the resource checked); `pendingChanges` as v11 objects, or as strings to a
//!   client asking for an older enrollment version;
//! - the change's life: started by `PUT …?force-renewal=true`, Akamai generates the key
//!   (RSA, and ECDSA for a dual-stack enrollment) and offers CSRs at
//!   `wait-upload-third-party`; the uploaded certificates are checked against those keys;
//!   post-verification warnings wait for an acknowledgement; staging is deployed and, with
//!   change management, waits for its acknowledgement (with the validation hash); then
//!   production, and `complete`. `DELETE` cancels a pending change. RFC 7807 errors.
//!
//! Akamai works on its own time: each working state ends once `work_time` has passed
//! (zero by default, so the next request sees the next state). The staging and production
//! networks are TLS stand-ins serving what each network holds, with the keys Akamai keeps.
//! The states between an acknowledgement and `complete` are not documented; the mock calls
//! them `deploying-staging` and `deploying-production`.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::{digest, hmac};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::certs::Leaf;
use crate::http_mock::{MockServer, Reply, Request};
use crate::servers::Swappable;

/// The enrollment's id.
pub const ENROLLMENT: u64 = 10002;

/// A key Akamai generated and keeps, with its CSR.
struct VendorKey {
    algorithm: &'static str,
    key_pem: String,
    csr_pem: String,
    spki: Vec<u8>,
}

/// One uploaded certificate.
#[derive(Clone, Debug)]
pub struct Upload {
    /// `RSA` or `ECDSA`.
    pub key_algorithm: String,
    /// The leaf, PEM.
    pub certificate: String,
    /// The intermediates, PEM.
    pub trust_chain: String,
}

struct Change {
    id: u64,
    status: &'static str,
    since: Instant,
    keys: Vec<VendorKey>,
    uploaded: Vec<Upload>,
    hash: String,
}

struct State {
    names: Vec<String>,
    dual_stack: bool,
    change_management: bool,
    change: Option<Change>,
    next_change: u64,
    work_time: Duration,
    warnings: Vec<String>,
    staging_stuck: bool,
    production_stuck: bool,
    production: Vec<Upload>,
    production_leaves: Vec<Arc<Leaf>>,
    calls: Vec<String>,
    nonces: HashSet<String>,
    requests: VecDeque<Instant>,
    limit: usize,
    per: Duration,
    cancelled: u32,
    acknowledged: Vec<String>,
}

/// EdgeGrid credentials the mock accepts.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// `client_token`.
    pub client_token: String,
    /// `client_secret`.
    pub client_secret: String,
    /// `access_token`.
    pub access_token: String,
}

/// A running mock with its two networks.
pub struct MockAkamai {
    server: MockServer,
    state: Arc<Mutex<State>>,
    staging: Arc<Swappable>,
    production: Arc<Swappable>,
    /// The credentials it accepts.
    pub credentials: Credentials,
}

fn problem(status: u16, kind: &str, title: &str, detail: &str) -> Reply {
    Reply {
        status,
        headers: vec![("content-type".into(), "application/problem+json".into())],
        body: json!({"type": kind, "title": title, "detail": detail, "status": status}).to_string(),
    }
}

fn doc(status: u16, media: &str, body: Value) -> Reply {
    Reply {
        status,
        headers: vec![("content-type".into(), media.into())],
        body: body.to_string(),
    }
}

/// The version of `resource` in a `vnd.akamai.cps.<resource>.vN+json` header, if it names it.
fn media_version(header: Option<&String>, resource: &str) -> Option<u32> {
    let h = header?;
    let prefix = format!("application/vnd.akamai.cps.{resource}.v");
    let rest = h.split(',').find_map(|p| p.trim().strip_prefix(&prefix))?;
    rest.split('+').next()?.parse().ok()
}

fn vendor_key(algorithm: &'static str, names: &[String]) -> VendorKey {
    let pair = match algorithm {
        "RSA" => {
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        }
        _ => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
    }
    .expect("key generation");
    let mut params = rcgen::CertificateParams::new(names.to_vec()).expect("names");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, names[0].as_str());
    let csr = params.serialize_request(&pair).expect("csr");
    VendorKey {
        algorithm,
        key_pem: pair.serialize_pem(),
        csr_pem: csr.pem().expect("csr pem"),
        spki: rcgen::PublicKeyData::subject_public_key_info(&pair),
    }
}

/// The SPKI of the first certificate of `pem`, and the leaf's SANs.
fn leaf_of(pem: &str) -> Option<(Vec<u8>, Vec<String>)> {
    crate::certs::leaf_facts(pem).map(|f| (f.spki, f.sans))
}

fn b64_hmac(key: &[u8], msg: &[u8]) -> String {
    STANDARD.encode(hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), msg).as_ref())
}

/// Checks EdgeGrid's `Authorization` header: `Err` says why it is refused.
fn check_signature(s: &mut State, creds: &Credentials, req: &Request) -> Result<(), String> {
    let auth = req
        .headers
        .get("authorization")
        .ok_or("no Authorization header")?;
    let rest = auth
        .strip_prefix("EG1-HMAC-SHA256 ")
        .ok_or("not EG1-HMAC-SHA256")?;
    let field = |name: &str| {
        rest.split(';')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .map(str::to_owned)
    };
    let (Some(client), Some(access), Some(ts), Some(nonce), Some(sig)) = (
        field("client_token"),
        field("access_token"),
        field("timestamp"),
        field("nonce"),
        field("signature"),
    ) else {
        return Err("a field of the Authorization header is missing".into());
    };
    if client != creds.client_token || access != creds.access_token {
        return Err("unknown client or access token".into());
    }
    if !s.nonces.insert(nonce.clone()) {
        return Err("nonce already used".into());
    }
    let unsigned = &auth[..auth.find("signature=").unwrap_or(auth.len())];
    let host = req.headers.get("host").cloned().unwrap_or_default();
    let content_hash = if req.method == "POST" && !req.body.is_empty() {
        let body = &req.body[..req.body.len().min(131_072)];
        STANDARD.encode(digest::digest(&digest::SHA256, body).as_ref())
    } else {
        String::new()
    };
    let data = [
        req.method.as_str(),
        "http",
        host.as_str(),
        req.path.as_str(),
        "",
        content_hash.as_str(),
        unsigned,
    ]
    .join("\t");
    let key = b64_hmac(creds.client_secret.as_bytes(), ts.as_bytes());
    if b64_hmac(key.as_bytes(), data.as_bytes()) != sig {
        return Err("The signature does not match".into());
    }
    Ok(())
}

impl State {
    /// Moves the change on where Akamai's own work is done.
    fn advance(&mut self, staging: &Swappable, production: &Swappable) {
        let (work, names) = (self.work_time, self.names.clone());
        let Some(change) = self.change.as_mut() else {
            return;
        };
        if change.since.elapsed() < work {
            return;
        }
        let next = match change.status {
            "preparing" => {
                let mut algorithms = vec!["RSA"];
                if self.dual_stack {
                    algorithms.push("ECDSA");
                }
                change.keys = algorithms
                    .into_iter()
                    .map(|a| vendor_key(a, &names))
                    .collect();
                "wait-upload-third-party"
            }
            "verify-third-party-cert" if self.warnings.is_empty() => "deploying-staging",
            "verify-third-party-cert" => "wait-review-third-party-cert",
            "deploying-staging" => {
                if !self.staging_stuck {
                    staging.serve(&leaf_for(&change.uploaded[0], &change.keys));
                }
                if self.change_management {
                    "wait-ack-change-management"
                } else {
                    "deploying-production"
                }
            }
            "deploying-production" => {
                let leaves: Vec<Arc<Leaf>> = change
                    .uploaded
                    .iter()
                    .map(|u| Arc::new(leaf_for(u, &change.keys)))
                    .collect();
                if !self.production_stuck {
                    production.serve(&leaves[0]);
                }
                self.production = change.uploaded.clone();
                self.production_leaves = leaves;
                self.change = None;
                return;
            }
            _ => return,
        };
        change.status = next;
        change.since = Instant::now();
    }
}

fn leaf_for(upload: &Upload, keys: &[VendorKey]) -> Leaf {
    let key = keys
        .iter()
        .find(|k| k.algorithm == upload.key_algorithm)
        .unwrap_or(&keys[0]);
    let chain = format!(
        "{}\n{}",
        upload.certificate.trim(),
        upload.trust_chain.trim()
    );
    Leaf::from_pem(&chain, &key.key_pem)
}

impl MockAkamai {
    /// An enrollment for `names` (the first is the CN), `dual_stack` (RSA and ECDSA) or RSA
    /// only, with "test on staging first" when `change_management`. Both networks first
    /// serve a certificate Akamai had before (self-signed).
    pub async fn start(names: &[&str], dual_stack: bool, change_management: bool) -> MockAkamai {
        let credentials = Credentials {
            client_token: "akab-client-token-test".into(),
            client_secret: "c2VjcmV0LW9mLXRoZS10ZXN0LWNsaWVudA==".into(),
            access_token: "akab-access-token-test".into(),
        };
        let before = crate::certs::LeafBuilder::self_signed(names).build();
        let staging = Arc::new(Swappable::start().await);
        let production = Arc::new(Swappable::start().await);
        staging.serve(&before);
        production.serve(&before);
        let state = Arc::new(Mutex::new(State {
            names: names.iter().map(|n| n.to_ascii_lowercase()).collect(),
            dual_stack,
            change_management,
            change: None,
            next_change: 20001,
            work_time: Duration::ZERO,
            warnings: vec![],
            staging_stuck: false,
            production_stuck: false,
            production: vec![Upload {
                key_algorithm: "RSA".into(),
                certificate: before.pem(),
                trust_chain: String::new(),
            }],
            production_leaves: vec![Arc::new(before)],
            calls: vec![],
            nonces: HashSet::new(),
            requests: VecDeque::new(),
            limit: 35,
            per: Duration::from_secs(60),
            cancelled: 0,
            acknowledged: vec![],
        }));
        let handler = {
            let (state, creds) = (state.clone(), credentials.clone());
            let (stg, prd) = (staging.clone(), production.clone());
            Arc::new(move |req: Request| {
                let mut s = state.lock().expect("lock");
                s.advance(&stg, &prd);
                let reply = handle(&mut s, &creds, &stg, req);
                s.advance(&stg, &prd);
                reply
            })
        };
        MockAkamai {
            server: MockServer::start(handler).await,
            state,
            staging,
            production,
            credentials,
        }
    }

    /// The API's base URL (as `api-url`).
    pub fn api_url(&self) -> String {
        self.server.base_url()
    }

    /// The credentials as an `.edgerc` section (what `credentials-secret` holds).
    pub fn edgerc(&self) -> String {
        format!(
            "[default]\nclient_secret = {}\nhost = {}\naccess_token = {}\nclient_token = {}\n",
            self.credentials.client_secret,
            self.api_url().trim_start_matches("http://"),
            self.credentials.access_token,
            self.credentials.client_token
        )
    }

    /// The staging network's stand-in (`127.0.0.1:PORT`).
    pub fn staging_target(&self) -> String {
        self.staging.server().target()
    }

    /// The production network's stand-in.
    pub fn production_target(&self) -> String {
        self.production.server().target()
    }

    /// How long each of Akamai's working states lasts.
    pub fn work_time(&self, d: Duration) {
        self.state.lock().expect("lock").work_time = d;
    }

    /// Post-verification warnings raised on the next uploads.
    pub fn warnings(&self, warnings: &[&str]) {
        self.state.lock().expect("lock").warnings =
            warnings.iter().map(|w| (*w).to_owned()).collect();
    }

    /// Staging keeps serving what it serves.
    pub fn stick_staging(&self, stuck: bool) {
        self.state.lock().expect("lock").staging_stuck = stuck;
    }

    /// Production keeps serving what it serves.
    pub fn stick_production(&self, stuck: bool) {
        self.state.lock().expect("lock").production_stuck = stuck;
    }

    /// `limit` requests per `per` for the account.
    pub fn rate_limit(&self, limit: usize, per: Duration) {
        let mut s = self.state.lock().expect("lock");
        s.limit = limit;
        s.per = per;
        s.requests.clear();
    }

    /// The pending change's status, if there is one.
    pub fn status(&self) -> Option<String> {
        let s = self.state.lock().expect("lock");
        s.change.as_ref().map(|c| c.status.to_owned())
    }

    /// What production holds.
    pub fn production_uploads(&self) -> Vec<Upload> {
        self.state.lock().expect("lock").production.clone()
    }

    /// The CSRs of the pending change (PEM), once Akamai made them.
    pub fn csrs(&self) -> Vec<String> {
        let s = self.state.lock().expect("lock");
        s.change
            .as_ref()
            .map(|c| c.keys.iter().map(|k| k.csr_pem.clone()).collect())
            .unwrap_or_default()
    }

    /// The private keys Akamai keeps for the pending change (never sent anywhere): a test
    /// looks for them where they must not be.
    pub fn vendor_keys(&self) -> Vec<String> {
        let s = self.state.lock().expect("lock");
        s.change
            .as_ref()
            .map(|c| c.keys.iter().map(|k| k.key_pem.clone()).collect())
            .unwrap_or_default()
    }

    /// Changes cancelled so far.
    pub fn cancelled(&self) -> u32 {
        self.state.lock().expect("lock").cancelled
    }

    /// Acknowledgements received (`post-verification-warnings`, `change-management`…).
    pub fn acknowledged(&self) -> Vec<String> {
        self.state.lock().expect("lock").acknowledged.clone()
    }

    /// Every call, `METHOD path`.
    pub fn calls(&self) -> Vec<String> {
        self.state.lock().expect("lock").calls.clone()
    }
}

fn handle(s: &mut State, creds: &Credentials, staging: &Swappable, req: Request) -> Reply {
    s.calls.push(format!("{} {}", req.method, req.path));
    let now = Instant::now();
    while s
        .requests
        .front()
        .is_some_and(|t| now.duration_since(*t) > s.per)
    {
        s.requests.pop_front();
    }
    if s.requests.len() >= s.limit {
        let wait = s
            .requests
            .front()
            .map_or(s.per, |t| s.per.saturating_sub(now.duration_since(*t)));
        let mut r = problem(
            429,
            "too-many-requests",
            "Too Many Requests",
            "The rate limit of the account was exceeded",
        );
        r.headers
            .push(("retry-after".into(), (wait.as_secs() + 1).to_string()));
        return r;
    }
    s.requests.push_back(now);
    if let Err(why) = check_signature(s, creds, &req) {
        return problem(401, "unauthorized", "Unauthorized", &why);
    }
    let (path, query) = req.path.split_once('?').unwrap_or((req.path.as_str(), ""));
    let accept = req.headers.get("accept");
    let content_type = req.headers.get("content-type");
    let base = format!("/cps/v2/enrollments/{ENROLLMENT}");
    let Some(rest) = path.strip_prefix(&base) else {
        return problem(404, "not-found", "Not Found", "no such enrollment");
    };
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let change_path = |id: u64| format!("{base}/changes/{id}");
    let segments: Vec<&str> = rest
        .trim_matches('/')
        .split('/')
        .filter(|x| !x.is_empty())
        .collect();
    let wrong_media = |what: &str| {
        problem(
            406,
            "not-acceptable",
            "Not Acceptable",
            &format!("send the media type application/vnd.akamai.cps.{what}.vN+json"),
        )
    };
    match (req.method.as_str(), segments.as_slice()) {
        ("GET", []) => {
            let Some(version) = media_version(accept, "enrollment") else {
                return wrong_media("enrollment");
            };
            let pending: Vec<Value> = s
                .change
                .iter()
                .map(|c| {
                    if version >= 11 {
                        json!({"location": change_path(c.id), "changeType": "renewal"})
                    } else {
                        json!(change_path(c.id))
                    }
                })
                .collect();
            doc(
                200,
                &format!("application/vnd.akamai.cps.enrollment.v{version}+json"),
                json!({
                    "id": ENROLLMENT,
                    "location": base,
                    "validationType": "third-party",
                    "certificateType": "third-party",
                    "changeManagement": s.change_management,
                    "csr": {"cn": s.names[0], "sans": s.names},
                    "networkConfiguration": {"geography": "core", "secureNetwork": "enhanced-tls",
                        "sniOnly": true, "dnsNameSettings": {"cloneDnsNames": true}},
                    "thirdParty": {"excludeSans": false},
                    "pendingChanges": pending,
                }),
            )
        }
        ("PUT", []) => {
            if media_version(content_type, "enrollment").is_none() {
                return problem(
                    415,
                    "unsupported-media-type",
                    "Unsupported Media Type",
                    "send an enrollment",
                );
            }
            if !query.split('&').any(|kv| kv == "force-renewal=true") {
                return problem(
                    400,
                    "bad-request",
                    "Bad Request",
                    "only a forced renewal is supported here",
                );
            }
            if body["validationType"] != "third-party" {
                return problem(
                    400,
                    "bad-request",
                    "Bad Request",
                    "the enrollment must be sent back whole",
                );
            }
            if s.change.is_some() {
                if !query
                    .split('&')
                    .any(|kv| kv == "allow-cancel-pending-changes=true")
                {
                    return problem(409, "conflict", "Conflict", "a change is already pending");
                }
                s.cancelled += 1;
            }
            let id = s.next_change;
            s.next_change += 1;
            s.change = Some(Change {
                id,
                status: "preparing",
                since: Instant::now(),
                keys: vec![],
                uploaded: vec![],
                hash: format!("hash-{id}"),
            });
            doc(
                202,
                "application/vnd.akamai.cps.enrollment-status.v1+json",
                json!({"enrollment": base, "changes": [change_path(id)]}),
            )
        }
        (method, ["changes", id, tail @ ..]) => {
            let Some(change) = s.change.as_mut().filter(|c| c.id.to_string() == *id) else {
                return problem(404, "not-found", "Not Found", "no such pending change");
            };
            let status = change.status;
            let at = change_path(change.id);
            match (method, tail) {
                ("GET", []) => {
                    if media_version(accept, "change").is_none() {
                        return wrong_media("change");
                    }
                    let input = match status {
                        "wait-upload-third-party" => Some((
                            "third-party-certificate",
                            "third-party-csr",
                            "third-party-cert-and-trust-chain",
                        )),
                        "wait-review-third-party-cert" => Some((
                            "post-verification-warnings-acknowledgement",
                            "post-verification-warnings",
                            "post-verification-warnings-ack",
                        )),
                        "wait-ack-change-management" => Some((
                            "change-management",
                            "change-management-info",
                            "change-management-ack",
                        )),
                        _ => None,
                    };
                    let allowed: Vec<Value> = input
                        .map(|(kind, info, update)| {
                            json!({"type": kind, "requiredToProceed": true,
                                "info": format!("{at}/input/info/{info}"),
                                "update": format!("{at}/input/update/{update}")})
                        })
                        .into_iter()
                        .collect();
                    let state = if input.is_some() {
                        "awaiting-input"
                    } else {
                        "running"
                    };
                    doc(
                        200,
                        "application/vnd.akamai.cps.change.v2+json",
                        json!({
                            "allowedInput": allowed,
                            "statusInfo": {"status": status, "state": state, "description": status, "error": null},
                        }),
                    )
                }
                ("DELETE", []) => {
                    s.change = None;
                    s.cancelled += 1;
                    // The staging network goes back to what production serves.
                    if let Some(leaf) = s.production_leaves.first() {
                        staging.serve(leaf);
                    }
                    doc(
                        200,
                        "application/vnd.akamai.cps.change-id.v1+json",
                        json!({"change": at}),
                    )
                }
                ("GET", ["input", "info", "third-party-csr"])
                    if status == "wait-upload-third-party" =>
                {
                    if media_version(accept, "csr").is_none() {
                        return wrong_media("csr");
                    }
                    let csrs: Vec<Value> = change
                        .keys
                        .iter()
                        .map(|k| json!({"csr": k.csr_pem, "keyAlgorithm": k.algorithm}))
                        .collect();
                    doc(
                        200,
                        "application/vnd.akamai.cps.csr.v2+json",
                        json!({"csrs": csrs}),
                    )
                }
                ("POST", ["input", "update", "third-party-cert-and-trust-chain"])
                    if status == "wait-upload-third-party" =>
                {
                    if media_version(content_type, "certificate-and-trust-chain").is_none() {
                        return problem(
                            415,
                            "unsupported-media-type",
                            "Unsupported Media Type",
                            "send certificate-and-trust-chain",
                        );
                    }
                    let Some(items) = body["certificatesAndTrustChains"].as_array() else {
                        return problem(
                            400,
                            "bad-request",
                            "Bad Request",
                            "certificatesAndTrustChains is required",
                        );
                    };
                    let mut uploads = vec![];
                    for item in items {
                        let algorithm = item["keyAlgorithm"].as_str().unwrap_or("");
                        let Some(key) = change.keys.iter().find(|k| k.algorithm == algorithm)
                        else {
                            return problem(
                                400,
                                "bad-request",
                                "Bad Request",
                                &format!("no CSR for keyAlgorithm {algorithm:?}"),
                            );
                        };
                        let pem = item["certificate"].as_str().unwrap_or("");
                        let Some((spki, sans)) = leaf_of(pem) else {
                            return problem(
                                400,
                                "bad-request",
                                "Bad Request",
                                "the certificate does not parse",
                            );
                        };
                        if spki != key.spki {
                            return problem(
                                400,
                                "bad-request",
                                "Bad Request",
                                &format!(
                                    "the {algorithm} certificate does not match the CSR's key"
                                ),
                            );
                        }
                        if s.names.iter().any(|n| !sans.contains(n)) {
                            return problem(
                                400,
                                "bad-request",
                                "Bad Request",
                                "the certificate does not cover the enrollment's names",
                            );
                        }
                        uploads.push(Upload {
                            key_algorithm: algorithm.to_owned(),
                            certificate: pem.to_owned(),
                            trust_chain: item["trustChain"].as_str().unwrap_or("").to_owned(),
                        });
                    }
                    if uploads.len() != change.keys.len() {
                        return problem(
                            400,
                            "bad-request",
                            "Bad Request",
                            "upload one certificate per CSR",
                        );
                    }
                    change.uploaded = uploads;
                    change.status = "verify-third-party-cert";
                    change.since = Instant::now();
                    doc(
                        200,
                        "application/vnd.akamai.cps.change-id.v1+json",
                        json!({"change": at}),
                    )
                }
                ("GET", ["input", "info", "post-verification-warnings"])
                    if status == "wait-review-third-party-cert" =>
                {
                    if media_version(accept, "warnings").is_none() {
                        return wrong_media("warnings");
                    }
                    let warnings = s.warnings.join("\n");
                    doc(
                        200,
                        "application/vnd.akamai.cps.warnings.v1+json",
                        json!({"warnings": warnings}),
                    )
                }
                ("POST", ["input", "update", "post-verification-warnings-ack"])
                    if status == "wait-review-third-party-cert" =>
                {
                    if media_version(content_type, "acknowledgement").is_none() {
                        return problem(
                            415,
                            "unsupported-media-type",
                            "Unsupported Media Type",
                            "send an acknowledgement",
                        );
                    }
                    match body["acknowledgement"].as_str() {
                        Some("acknowledge") => {
                            change.status = "deploying-staging";
                            change.since = Instant::now();
                            s.acknowledged.push("post-verification-warnings".into());
                        }
                        Some("deny") => {
                            s.change = None;
                            s.cancelled += 1;
                        }
                        _ => {
                            return problem(
                                400,
                                "bad-request",
                                "Bad Request",
                                "acknowledgement is acknowledge or deny",
                            );
                        }
                    }
                    doc(
                        200,
                        "application/vnd.akamai.cps.change-id.v1+json",
                        json!({"change": at}),
                    )
                }
                ("GET", ["input", "info", "change-management-info"])
                    if status == "wait-ack-change-management" =>
                {
                    if media_version(accept, "change-management-info").is_none() {
                        return wrong_media("change-management-info");
                    }
                    doc(
                        200,
                        "application/vnd.akamai.cps.change-management-info.v5+json",
                        json!({
                            "acknowledgementDeadline": null,
                            "validationResultHash": change.hash,
                            "validationResult": {"errors": [], "warnings": []},
                            "pendingState": {"pendingCertificates": change.uploaded.iter().map(|u| json!({"certificateType": "third-party", "keyAlgorithm": u.key_algorithm, "fullCertificate": u.certificate})).collect::<Vec<_>>()},
                        }),
                    )
                }
                ("POST", ["input", "update", "change-management-ack"])
                    if status == "wait-ack-change-management" =>
                {
                    let with_hash =
                        media_version(content_type, "acknowledgement-with-hash").is_some();
                    if !with_hash && media_version(content_type, "acknowledgement").is_none() {
                        return problem(
                            415,
                            "unsupported-media-type",
                            "Unsupported Media Type",
                            "send an acknowledgement",
                        );
                    }
                    if with_hash && body["hash"].as_str() != Some(change.hash.as_str()) {
                        return problem(
                            400,
                            "bad-request",
                            "Bad Request",
                            "the hash does not match the validation result",
                        );
                    }
                    if body["acknowledgement"].as_str() != Some("acknowledge") {
                        return problem(
                            400,
                            "bad-request",
                            "Bad Request",
                            "acknowledgement must be acknowledge",
                        );
                    }
                    change.status = "deploying-production";
                    change.since = Instant::now();
                    s.acknowledged.push("change-management".into());
                    doc(
                        200,
                        "application/vnd.akamai.cps.change-id.v1+json",
                        json!({"change": at}),
                    )
                }
                (_, ["input", ..]) => problem(
                    409,
                    "conflict",
                    "Conflict",
                    &format!("the change is at {status}, which takes no such input"),
                ),
                _ => problem(
                    405,
                    "method-not-allowed",
                    "Method Not Allowed",
                    "no such operation",
                ),
            }
        }
        ("GET", ["deployments", "production"]) => {
            if media_version(accept, "deployment").is_none() {
                return wrong_media("deployment");
            }
            let certs = &s.production;
            let primary = certs.first().map(|u| json!({"certificate": u.certificate, "trustChain": u.trust_chain, "keyAlgorithm": u.key_algorithm}));
            let stacked: Vec<Value> = certs.iter().skip(1).map(|u| json!({"certificate": u.certificate, "trustChain": u.trust_chain, "keyAlgorithm": u.key_algorithm})).collect();
            doc(
                200,
                "application/vnd.akamai.cps.deployment.v8+json",
                json!({
                    "primaryCertificate": primary, "multiStackedCertificates": stacked,
                    "networkConfiguration": {"geography": "core", "secureNetwork": "enhanced-tls"},
                }),
            )
        }
        _ => problem(404, "not-found", "Not Found", "no such resource"),
    }
}
