//! EKS's side of the fake API server: tokens checked as EKS's authenticator checks them,
//! and [`EksFront`], which gives moto's clusters the fake server's endpoint and CA.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::Value;

use super::MockKubeApi;
use crate::http_mock::{MockServer, Reply, Request, forward};

/// How old a token may be (the authenticator's limit, whatever `X-Amz-Expires` says).
const TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);

fn percent_decode(v: &str) -> String {
    super::percent_decode(v)
}

fn percent_encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `YYYYMMDDTHHMMSSZ` as a time.
fn amz_date(v: &str) -> Option<SystemTime> {
    let n = |r: std::ops::Range<usize>| v.get(r).and_then(|d| d.parse::<u32>().ok());
    if v.len() != 16 || !v.ends_with('Z') {
        return None;
    }
    let month = time::Month::try_from(u8::try_from(n(4..6)?).ok()?).ok()?;
    let date = time::Date::from_calendar_date(
        i32::try_from(n(0..4)?).ok()?,
        month,
        u8::try_from(n(6..8)?).ok()?,
    )
    .ok()?;
    let at = date
        .with_hms(
            u8::try_from(n(9..11)?).ok()?,
            u8::try_from(n(11..13)?).ok()?,
            u8::try_from(n(13..15)?).ok()?,
        )
        .ok()?
        .assume_utc();
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(at.unix_timestamp()).ok()?))
}

/// The ARN STS vouches for behind `bearer`, if it is a good token for `cluster`: else why not.
pub(super) fn caller(bearer: &str, cluster: &str, secret_key: &str) -> Result<String, String> {
    let encoded = bearer
        .strip_prefix("k8s-aws-v1.")
        .ok_or("not an EKS token (k8s-aws-v1.)")?;
    let url = URL_SAFE_NO_PAD
        .decode(encoded)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or("the token is not base64url text")?;
    let (base, query) = url.split_once('?').ok_or("the token's URL has no query")?;
    if !base.starts_with("http://") && !base.starts_with("https://") {
        return Err("the token's URL is not http(s)://HOST/…".into());
    }
    let authority_at = base.find("://").map_or(0, |i| i + 3);
    let path_at = base[authority_at..]
        .find('/')
        .map_or(base.len(), |i| i + authority_at);
    let origin = base[..path_at].to_owned();
    let path = if path_at == base.len() {
        "/"
    } else {
        &base[path_at..]
    }
    .to_owned();
    let params: Vec<(String, String)> = query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect();
    let get = |k: &str| {
        params
            .iter()
            .find(|(pk, _)| pk == k)
            .map(|(_, v)| v.as_str())
    };
    if get("Action") != Some("GetCallerIdentity") || get("Version") != Some("2011-06-15") {
        return Err("the token is not an STS GetCallerIdentity call".into());
    }
    if get("X-Amz-Algorithm") != Some("AWS4-HMAC-SHA256") {
        return Err("the token is not signed with SigV4".into());
    }
    let signed_headers = get("X-Amz-SignedHeaders").unwrap_or("");
    if !signed_headers.split(';').any(|h| h == "x-k8s-aws-id") {
        return Err("x-k8s-aws-id is not among the token's signed headers".into());
    }
    let credential: Vec<&str> = get("X-Amz-Credential").unwrap_or("").split('/').collect();
    let [key_id, _, region, "sts", "aws4_request"] = credential.as_slice() else {
        return Err("the token's credential scope is not STS's".into());
    };
    let at = get("X-Amz-Date")
        .and_then(amz_date)
        .ok_or("the token has no X-Amz-Date")?;
    let age = SystemTime::now().duration_since(at).unwrap_or_default();
    if age > TOKEN_LIFETIME {
        return Err("the token has expired".into());
    }
    let expires: u64 = get("X-Amz-Expires")
        .and_then(|v| v.parse().ok())
        .ok_or("the token has no X-Amz-Expires")?;
    // Sign the same request again, as STS does, and compare.
    let unsigned = format!(
        "{origin}{path}?{}",
        params
            .iter()
            .filter(|(k, _)| !k.starts_with("X-Amz-"))
            .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    );
    let identity = aws_credential_types::Credentials::new(
        *key_id,
        secret_key,
        get("X-Amz-Security-Token").map(str::to_owned),
        None,
        "eks-authenticator",
    )
    .into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(Duration::from_secs(expires));
    let signing = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(at)
        .settings(settings)
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let request = SignableRequest::new(
        "GET",
        &unsigned,
        [("x-k8s-aws-id", cluster)].into_iter(),
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| e.to_string())?;
    let (instructions, _) = sign(request, &signing)
        .map_err(|e| e.to_string())?
        .into_parts();
    let expected = instructions
        .params()
        .iter()
        .find(|(k, _)| *k == "X-Amz-Signature")
        .map(|(_, v)| v.to_string());
    if expected.as_deref() != get("X-Amz-Signature") {
        return Err(format!(
            "the signature does not match a GetCallerIdentity for cluster {cluster}"
        ));
    }
    // STS names the caller. moto routes a query-signed GET to S3, so the same credential
    // goes in the header form it routes to STS (the signature is checked above).
    let mut headers: std::collections::HashMap<String, String> = [
        ("x-k8s-aws-id".to_owned(), cluster.to_owned()),
        (
            "content-type".to_owned(),
            "application/x-www-form-urlencoded".to_owned(),
        ),
        (
            "authorization".to_owned(),
            format!(
                "AWS4-HMAC-SHA256 Credential={}, SignedHeaders={signed_headers}, Signature={}",
                get("X-Amz-Credential").unwrap_or(""),
                get("X-Amz-Signature").unwrap_or("")
            ),
        ),
    ]
    .into();
    if let Some(token) = get("X-Amz-Security-Token") {
        headers.insert("x-amz-security-token".into(), token.to_owned());
    }
    let reply = tokio::task::block_in_place(|| {
        forward(
            &origin,
            &Request {
                method: "POST".into(),
                path: path.clone(),
                headers,
                body: b"Action=GetCallerIdentity&Version=2011-06-15".to_vec(),
            },
        )
    });
    if reply.status != 200 {
        return Err(format!("STS answered {}", reply.status));
    }
    reply
        .body
        .split_once("<Arn>")
        .and_then(|(_, rest)| rest.split_once("</Arn>"))
        .map(|(arn, _)| arn.trim().to_owned())
        .ok_or_else(|| "STS named no caller".into())
}

/// A stand-in in front of moto's EKS API: `DescribeCluster` of a fake cluster answers
/// with the fake server's endpoint and CA (moto makes up both); everything else, and
/// clusters it does not know, go to moto as they are.
pub struct EksFront {
    server: MockServer,
}

impl EksFront {
    /// In front of `upstream` (`http://host:port`, moto's), for `clusters` (started with
    /// [`MockKubeApi::start_eks`] and created in moto under the same names).
    pub async fn start(upstream: &str, clusters: &[&MockKubeApi]) -> EksFront {
        let known: Arc<BTreeMap<String, (String, String)>> = Arc::new(
            clusters
                .iter()
                .map(|c| {
                    (
                        c.context.clone(),
                        (
                            c.server.base_url(),
                            c.ca_pem.clone().expect("a cluster started with start_eks"),
                        ),
                    )
                })
                .collect(),
        );
        let upstream = upstream.to_owned();
        let handler = Arc::new(move |req: Request| {
            let reply = tokio::task::block_in_place(|| forward(&upstream, &req));
            let name = req
                .path
                .split('?')
                .next()
                .and_then(|p| p.strip_prefix("/clusters/"))
                .filter(|n| !n.contains('/'))
                .map(super::percent_decode);
            let (Some((endpoint, ca)), true) = (
                name.as_ref().and_then(|n| known.get(n)),
                req.method == "GET" && reply.status == 200,
            ) else {
                return reply;
            };
            let Ok(mut body) = serde_json::from_str::<Value>(&reply.body) else {
                return reply;
            };
            body["cluster"]["endpoint"] = endpoint.clone().into();
            body["cluster"]["certificateAuthority"]["data"] = STANDARD.encode(ca).into();
            Reply {
                body: body.to_string(),
                ..reply
            }
        });
        EksFront {
            server: MockServer::start(handler).await,
        }
    }

    /// The URL to give as `AWS_ENDPOINT_URL_EKS`.
    pub fn endpoint_url(&self) -> String {
        self.server.base_url()
    }
}
