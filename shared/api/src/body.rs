//! The JSON body of a request, read strictly: `application/json`, within the size limit, no
//! unknown fields (each request type denies them), and a mistake named by its field.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The most a request body may hold.
pub const MAX_BODY: usize = 64 * 1024;

/// A JSON request body of type `T`.
pub struct Body<T>(pub T);

impl<S, T> FromRequest<S> for Body<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_json",
                "send the body as Content-Type: application/json",
            )),
            Err(JsonRejection::JsonDataError(e)) => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                // serde's words name the field: "unknown field `tagz`, expected …".
                e.body_text().replace(
                    "Failed to deserialize the JSON body into the target type: ",
                    "",
                ),
            )),
            Err(JsonRejection::JsonSyntaxError(e)) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                e.body_text(),
            )),
            Err(JsonRejection::BytesRejection(e))
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!("the body is larger than {MAX_BODY} bytes"),
                ))
            }
            Err(e) => Err(ApiError::new(e.status(), "invalid_json", e.body_text())),
        }
    }
}

/// A JSON body that may be left out: no body at all (`Content-Length: 0`, or neither a
/// length nor a type) is `None`; anything sent is read as strictly as [`Body`].
pub struct OptionalBody<T>(pub Option<T>);

impl<S, T> FromRequest<S> for OptionalBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let headers = req.headers();
        let length = headers
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .map(str::trim);
        // Nothing sent: no length and no type, or a length of 0 whatever the type says.
        let empty = length == Some("0")
            || (length.is_none() && headers.get(axum::http::header::CONTENT_TYPE).is_none());
        if empty {
            return Ok(OptionalBody(None));
        }
        Body::<T>::from_request(req, state)
            .await
            .map(|Body(v)| OptionalBody(Some(v)))
    }
}
