//! Every error the API answers: a status and JSON `{"code", "message"}`, the code stable for
//! scripts, the message naming the offending input.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use certpilot_core::ports::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, stable (`invalid_target`, `not_found`…).
    pub code: &'static str,
    /// In words, naming the input.
    pub message: String,
}

/// The body of every error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable: `invalid_json`, `invalid_field`, `invalid_target`, `address_not_allowed`,
    /// `not_found`, `conflict`, `unauthenticated`, `payload_too_large`, `unavailable`,
    /// `internal`, `policy`, `no_policy`, `idempotency_key_reused`, `idempotency_in_progress`.
    pub code: String,
    /// What is wrong, naming the field or input.
    pub message: String,
}

impl ApiError {
    /// An error of `status` with `code` and `message`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// `400 invalid_field`: `field` is wrong, for `why`.
    pub fn field(field: &str, why: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            format!("{field}: {why}"),
        )
    }

    /// `404 not_found`.
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("no {what}"))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::NotFound { what } => ApiError::not_found(what),
            StoreError::Conflict { .. } | StoreError::AlreadyExists { .. } => {
                ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            _ => match certpilot_core::Classify::class(&e) {
                certpilot_core::ErrorClass::Retryable => ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    e.to_string(),
                ),
                _ => {
                    tracing::error!(error = %e, "store");
                    ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        "the store failed; see the server's log",
                    )
                }
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let note = crate::audit::AuditNote {
            subject: None,
            outcome: format!("refused, {}: {}", self.code, self.message),
        };
        let body = ErrorBody {
            code: self.code.to_owned(),
            message: self.message,
        };
        let mut res = (self.status, axum::Json(body)).into_response();
        res.extensions_mut().insert(note);
        res
    }
}
