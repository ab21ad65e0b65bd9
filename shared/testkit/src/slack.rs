//! A mock Slack incoming webhook, written from Slack's documented behaviour (see
//! `research/vendor-apis.md` §4): `POST /services/T…/B…/…` with a JSON body; `200 ok` as
//! plain text on success; plain-text error words with 4xx statuses (`400 invalid_payload`,
//! `400 no_text`, `400 invalid_blocks`, `404 no_service`, `410 channel_is_archived`); `429`
//! with `Retry-After` in seconds when rate limited; `500 rollup_error` in an outage.
//! Payloads are checked against Block Kit's limits, and a client that comes back before its
//! `Retry-After` is counted.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::http_mock::{MockServer, Reply, Request};

const PATH: &str = "/services/T0CERTPILOT/B0CERTPILOT/Xq3vT9mZ2kLr8wYp4Hc6Jd1N";

#[derive(Default)]
struct State {
    accepted: Vec<Value>,
    requests: usize,
    limit_next: u32,
    retry_after: u64,
    blocked_until: Option<Instant>,
    early: usize,
    fail_next: u32,
    archived: bool,
}

/// A running mock webhook.
pub struct MockSlack {
    server: MockServer,
    state: Arc<Mutex<State>>,
}

impl MockSlack {
    /// Starts one.
    pub async fn start() -> MockSlack {
        let state = Arc::new(Mutex::new(State::default()));
        let s = state.clone();
        let server = MockServer::start(Arc::new(move |r| answer(&s, r))).await;
        MockSlack { server, state }
    }

    /// The webhook's URL (the secret a channel stores).
    pub fn url(&self) -> String {
        format!("{}{PATH}", self.server.base_url())
    }

    /// The messages accepted, in order.
    pub fn messages(&self) -> Vec<Value> {
        self.state.lock().expect("lock").accepted.clone()
    }

    /// Every request received, accepted or not.
    pub fn requests(&self) -> usize {
        self.state.lock().expect("lock").requests
    }

    /// Requests that came back before the `Retry-After` of a 429 had passed.
    pub fn early_retries(&self) -> usize {
        self.state.lock().expect("lock").early
    }

    /// The next `times` requests get `429` with `Retry-After: retry_after`.
    pub fn rate_limit(&self, times: u32, retry_after: u64) {
        let mut s = self.state.lock().expect("lock");
        s.limit_next = times;
        s.retry_after = retry_after;
    }

    /// The next `times` requests get `500 rollup_error`.
    pub fn fail(&self, times: u32) {
        self.state.lock().expect("lock").fail_next = times;
    }

    /// The channel is archived: `410 channel_is_archived` from now on.
    pub fn archive(&self) {
        self.state.lock().expect("lock").archived = true;
    }
}

fn answer(state: &Mutex<State>, r: Request) -> Reply {
    let mut s = state.lock().expect("lock");
    s.requests += 1;
    let now = Instant::now();
    if s.blocked_until.is_some_and(|until| now < until) {
        s.early += 1;
    }
    if r.method != "POST" {
        return Reply::text(405, "invalid_method");
    }
    if r.path != PATH {
        return Reply::text(404, "no_service");
    }
    if s.archived {
        return Reply::text(410, "channel_is_archived");
    }
    if s.limit_next > 0 {
        s.limit_next -= 1;
        s.blocked_until = Some(now + Duration::from_secs(s.retry_after));
        let mut reply = Reply::text(429, "rate_limited");
        reply
            .headers
            .push(("retry-after".into(), s.retry_after.to_string()));
        return reply;
    }
    if s.fail_next > 0 {
        s.fail_next -= 1;
        return Reply::text(500, "rollup_error");
    }
    let Ok(payload) = serde_json::from_slice::<Value>(&r.body) else {
        return Reply::text(400, "invalid_payload");
    };
    let has_text = payload
        .get("text")
        .and_then(Value::as_str)
        .is_some_and(|t| !t.is_empty());
    if !has_text && payload.get("blocks").is_none() {
        return Reply::text(400, "no_text");
    }
    if let Err(why) = check_block_kit(&payload) {
        return Reply::text(400, &format!("invalid_blocks: {why}"));
    }
    s.accepted.push(payload);
    Reply {
        status: 200,
        headers: vec![("content-type".into(), "text/html".into())],
        body: "ok".into(),
    }
}

fn text_len(v: &Value) -> usize {
    v.get("text")
        .and_then(Value::as_str)
        .map_or(0, |t| t.chars().count())
}

/// Checks a payload against Block Kit's documented limits: at most 50 blocks; a header's
/// plain text at most 150 characters; a section's text at most 3000, its fields at most 10
/// of at most 2000 each; a context at most 10 elements; known block types; text objects of
/// type `plain_text` or `mrkdwn`.
pub fn check_block_kit(payload: &Value) -> Result<(), String> {
    let Some(blocks) = payload.get("blocks") else {
        return Ok(());
    };
    let blocks = blocks.as_array().ok_or("blocks is not an array")?;
    if blocks.len() > 50 {
        return Err(format!("{} blocks (at most 50)", blocks.len()));
    }
    let text_object = |t: &Value, max: usize, at: &str| -> Result<(), String> {
        let kind = t.get("type").and_then(Value::as_str).unwrap_or_default();
        if !matches!(kind, "plain_text" | "mrkdwn") {
            return Err(format!("{at}: text type {kind:?}"));
        }
        let n = text_len(t);
        if n == 0 || n > max {
            return Err(format!("{at}: {n} characters (1 to {max})"));
        }
        Ok(())
    };
    for (i, b) in blocks.iter().enumerate() {
        let at = format!("block {i}");
        match b.get("type").and_then(Value::as_str) {
            Some("header") => {
                let t = b.get("text").ok_or(format!("{at}: header without text"))?;
                if t.get("type").and_then(Value::as_str) != Some("plain_text") {
                    return Err(format!("{at}: a header's text must be plain_text"));
                }
                text_object(t, 150, &at)?;
            }
            Some("section") => {
                let text = b.get("text");
                let fields = b.get("fields").and_then(Value::as_array);
                if text.is_none() && fields.is_none() {
                    return Err(format!("{at}: a section needs text or fields"));
                }
                if let Some(t) = text {
                    text_object(t, 3000, &at)?;
                }
                if let Some(f) = fields {
                    if f.len() > 10 {
                        return Err(format!("{at}: {} fields (at most 10)", f.len()));
                    }
                    for field in f {
                        text_object(field, 2000, &at)?;
                    }
                }
            }
            Some("context") => {
                let e = b
                    .get("elements")
                    .and_then(Value::as_array)
                    .ok_or(format!("{at}: context without elements"))?;
                if e.is_empty() || e.len() > 10 {
                    return Err(format!("{at}: {} context elements (1 to 10)", e.len()));
                }
                for element in e {
                    text_object(element, 3000, &at)?;
                }
            }
            Some("divider") => {}
            other => return Err(format!("{at}: unknown block type {other:?}")),
        }
    }
    Ok(())
}
