//! A mock of a Citrix NetScaler (ADC) NITRO REST API, written from its documentation: the
//! `X-NITRO-USER`/`X-NITRO-PASS` headers (a bad pair is 401 with errorcode 354), the
//! `{"errorcode", "message", "severity"}` envelope on every answer, `systemfile` uploads
//! (base64 content, `filelocation` `/nsconfig/ssl`; an existing name is 409, errorcode 273),
//! `sslcertkey` add / `?action=update` (with `nodomaincheck`) / get / delete, a certificate
//! and key that do not match refused, `sslvserver_sslcertkey_binding`, and `nsconfig
//! ?action=save`. The exact errorcodes of the certificate checks were not found in the
//! documentation; the mock's are marked where it answers them.
//!
//! Its virtual server is a TLS stand-in serving the certkey bound to it — unless the test
//! makes it keep what it serves.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::certs::Leaf;
use crate::http_mock::{MockServer, Reply, Request};
use crate::servers::Swappable;

/// The virtual server the mock has.
pub const VSERVER: &str = "vs-shop";

struct CertKey {
    cert: String,
    key: String,
}

#[derive(Default)]
struct State {
    files: BTreeMap<String, String>,
    certkeys: BTreeMap<String, CertKey>,
    bound: Option<String>,
    saves: u32,
    stuck: bool,
    calls: Vec<String>,
}

/// A running mock with its virtual server.
pub struct MockNetScaler {
    server: MockServer,
    state: Arc<Mutex<State>>,
    vserver: Arc<Swappable>,
    /// The NITRO user it accepts.
    pub user: String,
    /// Its password.
    pub password: String,
}

fn answer(status: u16, mut body: Value) -> Reply {
    if body.get("errorcode").is_none() {
        body["errorcode"] = json!(0);
        body["message"] = json!("Done");
        body["severity"] = json!("NONE");
    }
    Reply {
        status,
        headers: vec![(
            "content-type".into(),
            "application/json; charset=utf-8".into(),
        )],
        body: body.to_string(),
    }
}

fn error(status: u16, code: i64, message: &str) -> Reply {
    answer(
        status,
        json!({"errorcode": code, "message": message, "severity": "ERROR"}),
    )
}

impl State {
    /// The leaf a certkey's files make, when they parse and match.
    fn leaf(&self, name: &str) -> Option<Leaf> {
        let ck = self.certkeys.get(name)?;
        let (cert, key) = (
            self.files.get(&ck.cert)?.clone(),
            self.files.get(&ck.key)?.clone(),
        );
        std::panic::catch_unwind(move || Leaf::from_pem(&cert, &key)).ok()
    }

    fn refresh(&self, vserver: &Swappable) {
        if self.stuck {
            return;
        }
        if let Some(leaf) = self.bound.as_deref().and_then(|b| self.leaf(b)) {
            vserver.serve(&leaf);
        }
    }

    /// Whether `cert` and `key` (file names) hold a matching pair.
    fn pair_matches(&self, cert: &str, key: &str) -> Option<bool> {
        let (c, k) = (self.files.get(cert)?, self.files.get(key)?);
        let facts = crate::certs::leaf_facts(c)?;
        let pair = rcgen::KeyPair::from_pem(k).ok()?;
        Some(rcgen::PublicKeyData::subject_public_key_info(&pair) == facts.spki)
    }
}

impl MockNetScaler {
    /// An appliance whose virtual server serves `before` through the certkey `certkey`.
    pub async fn start(certkey: &str, before: &Leaf) -> MockNetScaler {
        let mut state = State::default();
        state.files.insert("before.pem".into(), before.chain_pem());
        state.files.insert("before.key".into(), before.key_pem());
        state.certkeys.insert(
            certkey.to_owned(),
            CertKey {
                cert: "before.pem".into(),
                key: "before.key".into(),
            },
        );
        state.bound = Some(certkey.to_owned());
        let vserver = Arc::new(Swappable::start().await);
        state.refresh(&vserver);
        let state = Arc::new(Mutex::new(state));
        let (user, password) = ("certpilot".to_owned(), "nitro-test-password".to_owned());
        let handler = {
            let (state, vs, user, password) = (
                state.clone(),
                vserver.clone(),
                user.clone(),
                password.clone(),
            );
            Arc::new(move |req: Request| {
                let mut s = state.lock().expect("lock");
                let reply = handle(&mut s, &user, &password, req);
                s.refresh(&vs);
                reply
            })
        };
        MockNetScaler {
            server: MockServer::start(handler).await,
            state,
            vserver,
            user,
            password,
        }
    }

    /// The NITRO base URL (as `nitro-url`).
    pub fn url(&self) -> String {
        self.server.base_url()
    }

    /// The virtual server's TLS stand-in (`127.0.0.1:PORT`).
    pub fn vserver_target(&self) -> String {
        self.vserver.server().target()
    }

    /// The virtual server keeps serving what it serves.
    pub fn stick(&self, stuck: bool) {
        self.state.lock().expect("lock").stuck = stuck;
    }

    /// The file names in `/nsconfig/ssl`.
    pub fn files(&self) -> Vec<String> {
        self.state
            .lock()
            .expect("lock")
            .files
            .keys()
            .cloned()
            .collect()
    }

    /// The certificate file of certkey `name`.
    pub fn certkey_cert(&self, name: &str) -> Option<String> {
        let s = self.state.lock().expect("lock");
        s.certkeys.get(name).map(|c| c.cert.clone())
    }

    /// How many times the configuration was saved.
    pub fn saves(&self) -> u32 {
        self.state.lock().expect("lock").saves
    }

    /// Every call, `METHOD path`.
    pub fn calls(&self) -> Vec<String> {
        self.state.lock().expect("lock").calls.clone()
    }
}

fn handle(s: &mut State, user: &str, password: &str, req: Request) -> Reply {
    s.calls.push(format!("{} {}", req.method, req.path));
    if req.headers.get("x-nitro-user").map(String::as_str) != Some(user)
        || req.headers.get("x-nitro-pass").map(String::as_str) != Some(password)
    {
        return error(401, 354, "Invalid username or password");
    }
    let (path, query) = req.path.split_once('?').unwrap_or((req.path.as_str(), ""));
    let Some(rest) = path.strip_prefix("/nitro/v1/config/") else {
        return error(404, 258, "No such resource");
    };
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let action = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("action="))
        .unwrap_or("");
    let segments: Vec<&str> = rest.split('/').collect();
    match (req.method.as_str(), segments.as_slice(), action) {
        ("POST", ["systemfile"], "") => {
            let f = &body["systemfile"];
            let (Some(name), Some(content)) = (f["filename"].as_str(), f["filecontent"].as_str())
            else {
                return error(
                    400,
                    1092,
                    "Required argument missing [filename, filecontent]",
                );
            };
            if f["filelocation"].as_str() != Some("/nsconfig/ssl") {
                return error(400, 1091, "filelocation must be /nsconfig/ssl here");
            }
            if s.files.contains_key(name) {
                return error(409, 273, "Resource already exists");
            }
            let Ok(bytes) = STANDARD.decode(content) else {
                return error(400, 1093, "filecontent is not base64");
            };
            s.files.insert(
                name.to_owned(),
                String::from_utf8_lossy(&bytes).into_owned(),
            );
            answer(201, json!({}))
        }
        ("DELETE", ["systemfile", name], "") => {
            if s.certkeys
                .values()
                .any(|c| c.cert == *name || c.key == *name)
            {
                return error(409, 1540, "File is in use by a certkey");
            }
            match s.files.remove(*name) {
                Some(_) => answer(200, json!({})),
                None => error(404, 258, "No such resource"),
            }
        }
        ("GET", ["sslcertkey", name], "") => match s.certkeys.get(*name) {
            Some(c) => {
                let facts = s
                    .files
                    .get(&c.cert)
                    .and_then(|p| crate::certs::leaf_facts(p));
                answer(
                    200,
                    json!({"sslcertkey": [{"certkey": name, "cert": c.cert, "key": c.key,
                        "status": "Valid", "serial": facts.map(|f| f.serial).unwrap_or_default()}]}),
                )
            }
            None => error(404, 258, "No such resource [certkey]"),
        },
        ("POST", ["sslcertkey"], "" | "update") => {
            let ck = &body["sslcertkey"];
            let (Some(name), Some(cert), Some(key)) = (
                ck["certkey"].as_str(),
                ck["cert"].as_str(),
                ck["key"].as_str(),
            ) else {
                return error(400, 1092, "Required argument missing [certkey, cert, key]");
            };
            let exists = s.certkeys.contains_key(name);
            if action.is_empty() && exists {
                return error(409, 273, "Resource already exists");
            }
            if action == "update" && !exists {
                return error(404, 258, "No such resource [certkey]");
            }
            // Errorcode of the mock's own choosing (the documentation names none).
            match s.pair_matches(cert, key) {
                None => {
                    return error(
                        404,
                        1541,
                        "Certificate or key file does not exist or does not parse",
                    );
                }
                Some(false) => return error(400, 1542, "Certificate and private key do not match"),
                Some(true) => {}
            }
            if action == "update" {
                let old = s.certkeys[name].cert.clone();
                let names = |f: &str| {
                    s.files
                        .get(f)
                        .and_then(|p| crate::certs::leaf_facts(p))
                        .map(|f| f.sans)
                };
                if names(&old) != names(cert) && ck["nodomaincheck"].as_bool() != Some(true) {
                    return error(
                        400,
                        1543,
                        "Domain name mismatch: use nodomaincheck to update with another certificate",
                    );
                }
            }
            s.certkeys.insert(
                name.to_owned(),
                CertKey {
                    cert: cert.to_owned(),
                    key: key.to_owned(),
                },
            );
            answer(if exists { 200 } else { 201 }, json!({}))
        }
        ("POST", ["sslvserver_sslcertkey_binding"], "") => {
            let b = &body["sslvserver_sslcertkey_binding"];
            if b["vservername"].as_str() != Some(VSERVER) {
                return error(404, 258, "No such resource [vservername]");
            }
            let Some(name) = b["certkeyname"]
                .as_str()
                .filter(|n| s.certkeys.contains_key(*n))
            else {
                return error(404, 258, "No such resource [certkeyname]");
            };
            s.bound = Some(name.to_owned());
            answer(200, json!({}))
        }
        ("POST", ["nsconfig"], "save") => {
            s.saves += 1;
            answer(200, json!({}))
        }
        _ => error(405, 258, "No such resource"),
    }
}
