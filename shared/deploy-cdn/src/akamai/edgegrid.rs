//! Akamai's EdgeGrid request signing (`EG1-HMAC-SHA256`), written from the documented
//! algorithm and checked against Akamai's published test vectors
//! (`tests/fixtures/edgegrid-testcases.json`).
//!
//! No maintained crate does this (the ones on crates.io are years stale or pull in another
//! TLS or crypto stack), and it is a few lines over aws-lc-rs's HMAC and SHA-256.

use aws_lc_rs::{digest, hmac};
use data_encoding::BASE64;

/// An API client's credentials (the `.edgerc` section).
#[derive(Clone)]
pub struct Credentials {
    /// `client_token`.
    pub client_token: String,
    /// `client_secret`: the HMAC key, used as its base64 text.
    pub client_secret: String,
    /// `access_token`.
    pub access_token: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("client_token", &self.client_token)
            .finish_non_exhaustive()
    }
}

/// The part of a request that is signed.
pub struct Signed<'a> {
    /// `GET`, `POST`…
    pub method: &'a str,
    /// `https`.
    pub scheme: &'a str,
    /// The API host (`akab-….luna.akamaiapis.net`).
    pub host: &'a str,
    /// Path, `;params` and `?query`, as sent.
    pub path_and_query: &'a str,
    /// The headers to sign, in the order configured (`name`, `value`).
    pub headers: &'a [(&'a str, &'a str)],
    /// The body.
    pub body: &'a [u8],
}

/// How much of a POST body is hashed (the clients' default).
pub const MAX_BODY: usize = 131_072;

fn hmac_b64(key: &[u8], message: &[u8]) -> String {
    BASE64.encode(hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), message).as_ref())
}

/// `base64(HMAC-SHA256(client_secret, timestamp))`, the per-request signing key.
pub fn signing_key(client_secret: &str, timestamp: &str) -> String {
    hmac_b64(client_secret.as_bytes(), timestamp.as_bytes())
}

/// `name:value` with the name lowercase and the value trimmed, runs of whitespace made one
/// space; tab-joined.
fn canonical_headers(headers: &[(&str, &str)]) -> String {
    headers
        .iter()
        .map(|(name, value)| {
            let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
            format!("{}:{value}", name.to_ascii_lowercase())
        })
        .collect::<Vec<_>>()
        .join("\t")
}

/// `base64(SHA-256(body[..max_body]))` for a non-empty POST; empty otherwise.
fn content_hash(method: &str, body: &[u8], max_body: usize) -> String {
    if method != "POST" || body.is_empty() {
        return String::new();
    }
    let signed = &body[..body.len().min(max_body)];
    BASE64.encode(digest::digest(&digest::SHA256, signed).as_ref())
}

/// What is signed: the request's parts, tab-separated, then the authorization header so far.
pub fn data_to_sign(request: &Signed<'_>, auth_so_far: &str, max_body: usize) -> String {
    [
        request.method.to_ascii_uppercase(),
        request.scheme.to_owned(),
        request.host.to_ascii_lowercase(),
        request.path_and_query.to_owned(),
        canonical_headers(request.headers),
        content_hash(request.method, request.body, max_body),
        auth_so_far.to_owned(),
    ]
    .join("\t")
}

/// The `Authorization` header for `request` at `timestamp` (`%Y%m%dT%H:%M:%S+0000`) with
/// `nonce`.
pub fn authorization(
    credentials: &Credentials,
    request: &Signed<'_>,
    timestamp: &str,
    nonce: &str,
    max_body: usize,
) -> String {
    let so_far = format!(
        "EG1-HMAC-SHA256 client_token={};access_token={};timestamp={timestamp};nonce={nonce};",
        credentials.client_token, credentials.access_token
    );
    let key = signing_key(&credentials.client_secret, timestamp);
    let signature = hmac_b64(
        key.as_bytes(),
        data_to_sign(request, &so_far, max_body).as_bytes(),
    );
    format!("{so_far}signature={signature}")
}

/// Now, as EdgeGrid writes it.
pub fn timestamp_now() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}{:02}{:02}T{:02}:{:02}:{:02}+0000",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

/// A fresh random nonce, shaped like a UUID.
pub fn nonce() -> String {
    let mut b = [0u8; 16];
    // A failing system RNG leaves zeros: the nonce is then only less unique, never a secret.
    let _ = aws_lc_rs::rand::fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = data_encoding::HEXLOWER.encode(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}
