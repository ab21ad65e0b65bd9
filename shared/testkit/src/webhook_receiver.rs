//! A receiver of Standard Webhooks (standardwebhooks.com), as a system at the other end
//! would be: it checks `webhook-id`, `webhook-timestamp` (refused when more than five
//! minutes off) and `webhook-signature` (`v1,<base64 HMAC-SHA256>`, any of several
//! space-separated), answers `401` to a bad signature and `204` on acceptance, and can be
//! told to fail. Written apart from certpilot's signer, from the specification.
//!
//! Started with [`WebhookReceiver::start_serving`], it listens over HTTPS (a certificate for
//! 127.0.0.1 from a test CA) and installs what it is sent with a key on a TLS stand-in, as an
//! in-house system would serve it, unless told to keep what it serves.

use std::sync::{Arc, Mutex};

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use crate::http_mock::{MockServer, Reply, Request};

/// A delivery the receiver accepted.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// Its `webhook-id`.
    pub id: String,
    /// Its body.
    pub body: Value,
}

#[derive(Default)]
struct State {
    accepted: Vec<Delivery>,
    refused: Vec<String>,
    fail_next: u32,
    stuck: bool,
}

/// A running receiver.
pub struct WebhookReceiver {
    server: MockServer,
    state: Arc<Mutex<State>>,
    edge: Option<Arc<crate::servers::Swappable>>,
    /// The secret it knows (`whsec_…`).
    pub secret: String,
}

impl WebhookReceiver {
    /// Starts one knowing a fresh secret.
    pub async fn start() -> WebhookReceiver {
        let key: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(11));
        let secret = format!("whsec_{}", STANDARD.encode(key));
        let state = Arc::new(Mutex::new(State::default()));
        let s = state.clone();
        let server = MockServer::start(Arc::new(move |r| answer(&s, &key, r, None))).await;
        WebhookReceiver {
            server,
            state,
            edge: None,
            secret,
        }
    }

    /// Starts one over HTTPS (its certificate for 127.0.0.1 issued by `ca`) that serves what
    /// it is sent with a key on its edge ([`WebhookReceiver::edge_target`]).
    pub async fn start_serving(ca: &crate::certs::Ca) -> WebhookReceiver {
        let key: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(53).wrapping_add(7));
        let secret = format!("whsec_{}", STANDARD.encode(key));
        let state = Arc::new(Mutex::new(State::default()));
        let edge = Arc::new(crate::servers::Swappable::start().await);
        let (s, e) = (state.clone(), edge.clone());
        let config = crate::servers::server_config(
            &ca.leaf(&["127.0.0.1"]).build(),
            &crate::servers::Options::default(),
        );
        let server =
            MockServer::start_tls(Arc::new(move |r| answer(&s, &key, r, Some(&e))), config).await;
        WebhookReceiver {
            server,
            state,
            edge: Some(edge),
            secret,
        }
    }

    /// Where its edge listens (`127.0.0.1:PORT`), for a receiver started serving.
    pub fn edge_target(&self) -> String {
        self.edge
            .as_ref()
            .expect("a receiver started with start_serving")
            .server()
            .target()
    }

    /// The receiver accepts deliveries but its edge keeps serving what it serves.
    pub fn stick(&self, stuck: bool) {
        self.state.lock().expect("lock").stuck = stuck;
    }

    /// Where to post.
    pub fn url(&self) -> String {
        format!("{}/hooks/certpilot", self.server.base_url())
    }

    /// Accepted deliveries, in order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.state.lock().expect("lock").accepted.clone()
    }

    /// Why requests were refused.
    pub fn refusals(&self) -> Vec<String> {
        self.state.lock().expect("lock").refused.clone()
    }

    /// The next `times` requests get `503`.
    pub fn fail(&self, times: u32) {
        self.state.lock().expect("lock").fail_next = times;
    }
}

fn answer(
    state: &Mutex<State>,
    key: &[u8],
    r: Request,
    edge: Option<&crate::servers::Swappable>,
) -> Reply {
    let mut s = state.lock().expect("lock");
    if s.fail_next > 0 {
        s.fail_next -= 1;
        return Reply::text(503, "busy");
    }
    let header = |n: &str| r.headers.get(n).cloned().unwrap_or_default();
    let (id, ts, sigs) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let refuse = |s: &mut State, why: String| {
        s.refused.push(why.clone());
        Reply::text(401, &why)
    };
    if id.is_empty() {
        return refuse(&mut s, "no webhook-id".into());
    }
    let Ok(at) = ts.parse::<i64>() else {
        return refuse(&mut s, format!("webhook-timestamp {ts:?}"));
    };
    if (now - at).abs() > 300 {
        return refuse(
            &mut s,
            format!("webhook-timestamp {at} is {} s off", now - at),
        );
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut signed = format!("{id}.{ts}.").into_bytes();
    signed.extend_from_slice(&r.body);
    let good = sigs.split(' ').any(|sig| {
        sig.strip_prefix("v1,")
            .and_then(|b| STANDARD.decode(b).ok())
            .is_some_and(|mac| hmac::verify(&key, &signed, &mac).is_ok())
    });
    if !good {
        return refuse(&mut s, "bad signature".into());
    }
    let Ok(body) = serde_json::from_slice::<Value>(&r.body) else {
        return Reply::text(400, "not JSON");
    };
    if let Some(edge) = edge {
        let (Some(chain), Some(key)) = (body["chain_pem"].as_str(), body["key_pem"].as_str())
        else {
            return Reply::text(422, "this receiver serves what it gets: send the key");
        };
        let (chain, key) = (chain.to_owned(), key.to_owned());
        let Ok(leaf) = std::panic::catch_unwind(move || crate::certs::Leaf::from_pem(&chain, &key))
        else {
            return Reply::text(422, "the chain or the key does not parse");
        };
        if !s.stuck {
            edge.serve(&leaf);
        }
    }
    s.accepted.push(Delivery { id, body });
    Reply::text(204, "")
}
