//! A fake Kubernetes API server for Secrets, written from the Kubernetes API documentation
//! (no kube-apiserver, envtest or k3s can be installed here): bearer-token authentication
//! (401 otherwise), `GET`, `PUT` with `metadata.resourceVersion` (a stale one is 409
//! Conflict), server-side apply as `PATCH` with `application/apply-patch+yaml` and a
//! `fieldManager` (managed fields recorded), 404 `NotFound`, and 422 `Invalid` when a
//! secret's immutable `type` would change — each answered as a `Status` object.
//!
//! Each namespace it serves has an ingress stand-in: a TLS server presenting what the
//! secret `secret_name` holds there, as an ingress controller would, unless the test makes
//! one keep what it serves.
//!
//! [`MockKubeApi::start_eks`] plays an EKS cluster instead: HTTPS with a CA of its own,
//! and authentication as EKS's authenticator does it — a `k8s-aws-v1.` token is a
//! presigned STS `GetCallerIdentity` URL; its SigV4 signature is checked (the signed
//! `x-k8s-aws-id` header must name this cluster, the date be under 15 minutes old), the URL
//! is called (moto answers with the caller's ARN), and the ARN must be one of the cluster's
//! access entries ([`MockKubeApi::grant`]), else 401. [`EksFront`] stands in front of
//! moto's EKS, whose clusters have made-up endpoints, and gives `DescribeCluster` the fake
//! server's endpoint and CA.

mod eks;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::certs::Leaf;
use crate::http_mock::{MockServer, Reply, Request};
use crate::servers::Swappable;

pub use eks::EksFront;

struct State {
    /// EKS: the IAM principals the access entries map (others get 401).
    access_entries: Vec<String>,
    /// EKS: the ARNs STS vouched for, in order.
    callers: Vec<String>,
    secrets: BTreeMap<(String, String), Value>,
    /// Every namespace served, with its labels.
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
    version: u64,
    stuck: BTreeMap<String, bool>,
    calls: Vec<String>,
}

/// A running fake cluster.
pub struct MockKubeApi {
    server: MockServer,
    state: Arc<Mutex<State>>,
    ingresses: BTreeMap<String, Arc<Swappable>>,
    /// The bearer token it accepts (EKS: none; tokens are checked with STS).
    pub token: String,
    /// The cluster's name (its kubeconfig context, or its EKS name).
    pub context: String,
    /// EKS: the CA of its API server, PEM.
    ca_pem: Option<String>,
}

/// How callers are authenticated.
#[derive(Clone)]
enum Auth {
    /// A fixed bearer token.
    Token(String),
    /// EKS tokens for `cluster`, signed with `secret_key`.
    Eks { cluster: String, secret_key: String },
}

fn status(code: u16, reason: &str, message: &str) -> Reply {
    Reply {
        status: code,
        headers: vec![("content-type".into(), "application/json".into())],
        body: json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code})
        .to_string(),
    }
}

fn object(code: u16, v: &Value) -> Reply {
    Reply {
        status: code,
        headers: vec![("content-type".into(), "application/json".into())],
        body: v.to_string(),
    }
}

/// The leaf a stored TLS secret holds, when it parses.
fn leaf_of(secret: &Value) -> Option<Leaf> {
    let b64 = |k: &str| {
        secret["data"][k]
            .as_str()
            .and_then(|v| STANDARD.decode(v).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    };
    let (crt, key) = (b64("tls.crt")?, b64("tls.key")?);
    std::panic::catch_unwind(move || Leaf::from_pem(&crt, &key)).ok()
}

impl MockKubeApi {
    /// A cluster `context` with `namespaces`, each with an ingress presenting the secret
    /// `secret_name` (before it exists, `before`).
    pub async fn start(
        context: &str,
        namespaces: &[&str],
        secret_name: &str,
        before: &Leaf,
    ) -> MockKubeApi {
        let token = format!("token-of-{context}");
        Self::start_with(
            context,
            namespaces,
            secret_name,
            before,
            Auth::Token(token),
            None,
        )
        .await
    }

    /// An EKS cluster `name` (register it with [`EksFront`]) authenticating with STS tokens
    /// signed with `secret_key` (the tests' AWS secret key), no principal mapped yet.
    pub async fn start_eks(
        name: &str,
        namespaces: &[&str],
        secret_name: &str,
        before: &Leaf,
        secret_key: &str,
    ) -> MockKubeApi {
        let auth = Auth::Eks {
            cluster: name.to_owned(),
            secret_key: secret_key.to_owned(),
        };
        let ca = crate::certs::Ca::new(&format!("{name} cluster CA"));
        Self::start_with(name, namespaces, secret_name, before, auth, Some(ca)).await
    }

    async fn start_with(
        context: &str,
        namespaces: &[&str],
        secret_name: &str,
        before: &Leaf,
        auth: Auth,
        ca: Option<crate::certs::Ca>,
    ) -> MockKubeApi {
        let token = match &auth {
            Auth::Token(t) => t.clone(),
            Auth::Eks { .. } => String::new(),
        };
        let mut ingresses = BTreeMap::new();
        for ns in namespaces {
            let ingress = Arc::new(Swappable::start().await);
            ingress.serve(before);
            ingresses.insert((*ns).to_owned(), ingress);
        }
        let state = Arc::new(Mutex::new(State {
            access_entries: vec![],
            callers: vec![],
            secrets: BTreeMap::new(),
            namespaces: namespaces
                .iter()
                .map(|ns| ((*ns).to_owned(), BTreeMap::new()))
                .collect(),
            version: 1000,
            stuck: BTreeMap::new(),
            calls: vec![],
        }));
        let handler = {
            let (state, ing, name) = (state.clone(), ingresses.clone(), secret_name.to_owned());
            Arc::new(move |req: Request| {
                // STS is called outside the lock, as the authenticator would.
                let caller = authenticate(&auth, &req);
                let mut s = state.lock().expect("lock");
                s.calls.push(format!("{} {}", req.method, req.path));
                let reply = match caller {
                    Err(reply) => reply,
                    Ok(Some(arn)) => {
                        s.callers.push(arn.clone());
                        if s.access_entries.contains(&arn) {
                            handle(&mut s, req)
                        } else {
                            status(401, "Unauthorized", "Unauthorized")
                        }
                    }
                    Ok(None) => handle(&mut s, req),
                };
                for (ns, ingress) in &ing {
                    if s.stuck.get(ns).copied().unwrap_or(false) {
                        continue;
                    }
                    if let Some(leaf) = s.secrets.get(&(ns.clone(), name.clone())).and_then(leaf_of)
                    {
                        ingress.serve(&leaf);
                    }
                }
                reply
            })
        };
        let (server, ca_pem) = match ca {
            Some(ca) => {
                let config = crate::servers::server_config(
                    &ca.leaf(&["127.0.0.1"]).build(),
                    &crate::servers::Options::default(),
                );
                (
                    MockServer::start_tls(handler, config).await,
                    Some(ca.root_pem()),
                )
            }
            None => (MockServer::start(handler).await, None),
        };
        MockKubeApi {
            server,
            state,
            ingresses,
            token,
            context: context.to_owned(),
            ca_pem,
        }
    }

    /// EKS: maps the IAM principal `arn` through an access entry (to a user the RBAC binds).
    pub fn grant(&self, arn: &str) {
        self.state
            .lock()
            .expect("lock")
            .access_entries
            .push(arn.to_owned());
    }

    /// EKS: the ARNs STS vouched for, whether mapped or not.
    pub fn callers(&self) -> Vec<String> {
        self.state.lock().expect("lock").callers.clone()
    }

    /// A kubeconfig naming this cluster as context `self.context`, with its token.
    pub fn kubeconfig(&self) -> String {
        Self::kubeconfig_of(&[self])
    }

    /// One kubeconfig holding every cluster of `clusters`, a context each.
    pub fn kubeconfig_of(clusters: &[&MockKubeApi]) -> String {
        let mut c = String::from("apiVersion: v1\nkind: Config\nclusters:\n");
        for k in clusters {
            c.push_str(&format!(
                "- name: {n}\n  cluster:\n    server: {url}\n",
                n = k.context,
                url = k.server.base_url()
            ));
        }
        c.push_str("users:\n");
        for k in clusters {
            c.push_str(&format!(
                "- name: {n}\n  user:\n    token: {t}\n",
                n = k.context,
                t = k.token
            ));
        }
        c.push_str("contexts:\n");
        for k in clusters {
            c.push_str(&format!(
                "- name: {n}\n  context:\n    cluster: {n}\n    user: {n}\n",
                n = k.context
            ));
        }
        c.push_str(&format!("current-context: {}\n", clusters[0].context));
        c
    }

    /// The ingress of `namespace` (`127.0.0.1:PORT`).
    pub fn ingress(&self, namespace: &str) -> String {
        self.ingresses[namespace].server().target()
    }

    /// The ingress of `namespace` keeps presenting what it presents.
    pub fn stick(&self, namespace: &str, stuck: bool) {
        self.state
            .lock()
            .expect("lock")
            .stuck
            .insert(namespace.to_owned(), stuck);
    }

    /// Labels `namespace` with `key=value`.
    pub fn label(&self, namespace: &str, key: &str, value: &str) {
        self.state
            .lock()
            .expect("lock")
            .namespaces
            .entry(namespace.to_owned())
            .or_default()
            .insert(key.to_owned(), value.to_owned());
    }

    /// Puts a secret there as someone else would (not through certpilot).
    pub fn put(&self, namespace: &str, secret: Value) {
        let mut s = self.state.lock().expect("lock");
        let name = secret["metadata"]["name"].as_str().unwrap_or("").to_owned();
        s.secrets.insert((namespace.to_owned(), name), secret);
    }

    /// The secret `name` in `namespace`, as stored.
    pub fn secret(&self, namespace: &str, name: &str) -> Option<Value> {
        let s = self.state.lock().expect("lock");
        s.secrets
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Every call, `METHOD path`.
    pub fn calls(&self) -> Vec<String> {
        self.state.lock().expect("lock").calls.clone()
    }
}

/// The caller: `Ok(None)` for a good fixed token, `Ok(Some(arn))` for an EKS token STS
/// vouched for, else the 401.
fn authenticate(auth: &Auth, req: &Request) -> Result<Option<String>, Reply> {
    let unauthorized = || status(401, "Unauthorized", "Unauthorized");
    let bearer = req
        .headers
        .get("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .ok_or_else(unauthorized)?;
    match auth {
        Auth::Token(token) if bearer == token => Ok(None),
        Auth::Token(_) => Err(unauthorized()),
        Auth::Eks {
            cluster,
            secret_key,
        } => eks::caller(bearer, cluster, secret_key)
            .map(Some)
            .map_err(|why| status(401, "Unauthorized", &format!("Unauthorized: {why}"))),
    }
}

fn handle(s: &mut State, req: Request) -> Reply {
    let (path, query) = req.path.split_once('?').unwrap_or((req.path.as_str(), ""));
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    if parts.as_slice() == ["api", "v1", "namespaces"] && req.method == "GET" {
        return namespace_list(s, query);
    }
    let ["api", "v1", "namespaces", ns, "secrets", name] = parts.as_slice() else {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        );
    };
    let key = ((*ns).to_owned(), (*name).to_owned());
    let not_found = || status(404, "NotFound", &format!("secrets \"{name}\" not found"));
    match req.method.as_str() {
        "GET" => match s.secrets.get(&key) {
            Some(v) => object(200, v),
            None => not_found(),
        },
        "PUT" | "PATCH" => {
            let body: Value = match serde_json::from_slice(&req.body) {
                Ok(v) => v,
                Err(_) => return status(400, "BadRequest", "the body is not JSON"),
            };
            let apply = req.method == "PATCH";
            if apply {
                let ct = req
                    .headers
                    .get("content-type")
                    .map(String::as_str)
                    .unwrap_or("");
                if ct != "application/apply-patch+yaml" {
                    return status(
                        415,
                        "UnsupportedMediaType",
                        &format!(
                            "the body of the request was in an unknown format - accepted media types include: application/apply-patch+yaml (got {ct})"
                        ),
                    );
                }
                if !query.split('&').any(|kv| kv.starts_with("fieldManager=")) {
                    return status(
                        422,
                        "Invalid",
                        "fieldManager is required for apply requests",
                    );
                }
            }
            let existing = s.secrets.get(&key).cloned();
            if let Some(old) = &existing {
                let old_type = old["type"].as_str().unwrap_or("Opaque");
                if let Some(new_type) = body["type"].as_str()
                    && new_type != old_type
                {
                    return status(
                        422,
                        "Invalid",
                        &format!(
                            "Secret \"{name}\" is invalid: type: Invalid value: \"{new_type}\": field is immutable"
                        ),
                    );
                }
                if !apply
                    && let Some(rv) = body["metadata"]["resourceVersion"].as_str()
                    && Some(rv) != old["metadata"]["resourceVersion"].as_str()
                {
                    return status(
                        409,
                        "Conflict",
                        &format!(
                            "Operation cannot be fulfilled on secrets \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
                        ),
                    );
                }
            } else if !apply {
                return not_found();
            }
            s.version += 1;
            let mut stored = match (apply, existing) {
                // Apply merges the fields the manager sends over what is there.
                (true, Some(mut old)) => {
                    for field in ["type", "data"] {
                        if !body[field].is_null() {
                            old[field] = body[field].clone();
                        }
                    }
                    for meta in ["labels", "annotations"] {
                        if let Some(m) = body["metadata"][meta].as_object() {
                            for (k, v) in m {
                                old["metadata"][meta][k] = v.clone();
                            }
                        }
                    }
                    old
                }
                _ => body.clone(),
            };
            stored["apiVersion"] = json!("v1");
            stored["kind"] = json!("Secret");
            stored["metadata"]["name"] = json!(name);
            stored["metadata"]["namespace"] = json!(ns);
            stored["metadata"]["resourceVersion"] = json!(s.version.to_string());
            if apply {
                let manager = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("fieldManager="))
                    .unwrap_or("");
                stored["metadata"]["managedFields"] =
                    json!([{"manager": manager, "operation": "Apply", "apiVersion": "v1"}]);
            }
            let created = !s.secrets.contains_key(&key);
            s.secrets.insert(key, stored.clone());
            object(if created { 201 } else { 200 }, &stored)
        }
        _ => status(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        ),
    }
}

/// `GET /api/v1/namespaces?labelSelector=…`: equality (`k=v`, `k==v`), inequality (`k!=v`)
/// and existence (`k`, `!k`) requirements, comma-separated, all to hold.
fn namespace_list(s: &State, query: &str) -> Reply {
    let selector = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("labelSelector="))
        .map(percent_decode)
        .unwrap_or_default();
    let holds = |labels: &BTreeMap<String, String>| {
        selector.split(',').filter(|r| !r.is_empty()).all(|r| {
            if let Some((k, v)) = r.split_once("!=") {
                labels.get(k.trim()).map(String::as_str) != Some(v.trim())
            } else if let Some((k, v)) = r.split_once('=') {
                labels.get(k.trim()).map(String::as_str) == Some(v.trim_start_matches('=').trim())
            } else if let Some(k) = r.strip_prefix('!') {
                !labels.contains_key(k.trim())
            } else {
                labels.contains_key(r.trim())
            }
        })
    };
    let items: Vec<Value> = s
        .namespaces
        .iter()
        .filter(|(_, labels)| holds(labels))
        .map(|(name, labels)| {
            json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": name, "labels": labels}, "status": {"phase": "Active"}})
        })
        .collect();
    object(
        200,
        &json!({"apiVersion": "v1", "kind": "NamespaceList",
            "metadata": {"resourceVersion": s.version.to_string()}, "items": items}),
    )
}

pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&text[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                Err(_) => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
