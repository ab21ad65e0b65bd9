//! `Idempotency-Key` on `POST`s: a retry with the same key and body gets the first answer
//! again (with `Idempotent-Replayed: true`) for 24 hours, without doing anything twice; the
//! same key with another body is `422`; a retry while the first still runs is `409`. Keys
//! are per caller. An answer of 5xx forgets the key, so the retry runs.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use certpilot_core::model::request::{IdempotencyEntry, SavedResponse};
use certpilot_core::ports::Claim;

use crate::error::ApiError;
use crate::{ApiState, Caller, MAX_BODY};

/// The request header.
pub const HEADER: &str = "idempotency-key";

fn fingerprint(method: &Method, path: &str, body: &[u8]) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(method.as_str().as_bytes());
    ctx.update(b" ");
    ctx.update(path.as_bytes());
    ctx.update(b"\n");
    ctx.update(body);
    data_encoding::HEXLOWER.encode(ctx.finish().as_ref())
}

/// Applies idempotency keys to `POST`s that carry one.
pub(crate) async fn keyed(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let Some(key) = req.headers().get(HEADER) else {
        return next.run(req).await;
    };
    let key = match key.to_str() {
        Ok(k) if (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()) => {
            k.to_owned()
        }
        _ => {
            return ApiError::field(
                "Idempotency-Key",
                "1 to 255 visible ASCII characters (a UUID is usual)",
            )
            .into_response();
        }
    };
    let Some(caller) = req.extensions().get::<Caller>().cloned() else {
        return next.run(req).await;
    };
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the body is larger than {MAX_BODY} bytes"),
            )
            .into_response();
        }
    };
    let now = state.app.clock().now();
    let entry = IdempotencyEntry {
        key: format!("{}\n{key}", caller.principal),
        fingerprint: fingerprint(&parts.method, parts.uri.path(), &bytes),
        created_at: now,
        response: None,
    };
    let store = state.app.idempotency();
    match store.claim(&entry, now).await {
        Err(e) => return ApiError::from(e).into_response(),
        Ok(Claim::Existing(old)) if old.fingerprint != entry.fingerprint => {
            return ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                format!(
                    "Idempotency-Key {key:?} was used with another request in the last 24 hours; use a new key for a new request"
                ),
            )
            .into_response();
        }
        Ok(Claim::Existing(old)) => {
            return match old.response {
                Some(saved) => replay(&saved),
                None => ApiError::new(
                    StatusCode::CONFLICT,
                    "idempotency_in_progress",
                    format!(
                        "the first request with Idempotency-Key {key:?} is still running; retry later"
                    ),
                )
                .into_response(),
            };
        }
        Ok(Claim::Claimed) => {}
    }
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    if response.status().is_server_error() {
        if let Err(e) = store.release(&entry.key).await {
            tracing::warn!(error = %e, "idempotency key not released; it lapses in 24 hours");
        }
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let saved = SavedResponse {
        status: parts.status.as_u16(),
        body: String::from_utf8_lossy(&bytes).into_owned(),
    };
    if let Err(e) = store.complete(&entry.key, &saved).await {
        tracing::warn!(error = %e, "idempotent response not saved; a retry will be told the first still runs");
    }
    Response::from_parts(parts, Body::from(bytes))
}

fn replay(saved: &SavedResponse) -> Response {
    let status = StatusCode::from_u16(saved.status).unwrap_or(StatusCode::OK);
    let mut res = (status, saved.body.clone()).into_response();
    let headers = res.headers_mut();
    if !saved.body.is_empty() {
        headers.insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    res
}
