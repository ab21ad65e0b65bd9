//! Who is asking. Each front puts a [`Caller`] in the request's extensions after
//! authenticating it — the IAM principal or the JWT subject of API Gateway's request
//! context, the token's name under `certpilot serve` — and every handler reads this one type.

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;

use crate::error::ApiError;

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// `iam:<ARN>`, `jwt:<issuer>|<subject>`, `token:<name>`, or `local:unauthenticated`
    /// (`certpilot serve --no-auth` on loopback).
    pub principal: String,
}

impl Caller {
    /// A caller known by `principal`.
    pub fn new(principal: impl Into<String>) -> Self {
        Caller {
            principal: principal.into(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        // A front that forgot to authenticate fails closed.
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "no caller: send Authorization: Bearer TOKEN",
            )
        })
    }
}
