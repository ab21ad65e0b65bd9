//! The audit trail: every mutating request (`POST`, `PUT`, `PATCH`, `DELETE`) is recorded
//! after it is answered — who, what it did or why it was refused, on what, when, from which
//! address and request id — and `GET /audit` reads it, newest first. Nothing in the API
//! edits or deletes a record.

use axum::Json;
use axum::extract::{Query, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use certpilot_core::model::request::AuditRecord;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ErrorBody};
use crate::{ApiState, Caller};

/// Where a request came from, as the front knows it: API Gateway's request id and source
/// IP, or the peer address under `certpilot serve`.
#[derive(Clone, Debug, Default)]
pub struct RequestSource {
    /// The request id; made here when the front has none.
    pub request_id: Option<String>,
    /// The client's address.
    pub address: Option<String>,
}

/// What a handler did, for the audit trail (a response extension).
#[derive(Clone, Debug)]
pub(crate) struct AuditNote {
    pub(crate) subject: Option<String>,
    pub(crate) outcome: String,
}

/// `response` with what it did on `subject`, for the audit trail.
pub(crate) fn noted(mut response: Response, subject: &str, outcome: String) -> Response {
    response.extensions_mut().insert(AuditNote {
        subject: Some(subject.to_owned()),
        outcome,
    });
    response
}

fn new_request_id() -> String {
    let mut bytes = [0u8; 12];
    // Unique enough to tell two records of the same nanosecond apart.
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    format!("srv-{}", data_encoding::HEXLOWER.encode(&bytes))
}

/// Records each mutating request once answered. A record that cannot be written is logged
/// as an error; the answer stands, since what it did is done.
pub(crate) async fn record(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let action = format!(
        "{} {}",
        req.method(),
        req.extensions()
            .get::<axum::extract::MatchedPath>()
            .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned())
    );
    let principal = req
        .extensions()
        .get::<Caller>()
        .map(|c| c.principal.clone());
    let source = req
        .extensions()
        .get::<RequestSource>()
        .cloned()
        .unwrap_or_default();
    let response = next.run(req).await;
    let Some(principal) = principal else {
        // Unauthenticated: refused before the router, nothing to attribute.
        return response;
    };
    let note = response.extensions().get::<AuditNote>().cloned();
    let record = AuditRecord {
        at: state.app.clock().now(),
        request_id: source.request_id.unwrap_or_else(new_request_id),
        principal,
        source: source.address,
        action,
        subject: note.as_ref().and_then(|n| n.subject.clone()),
        status: response.status().as_u16(),
        outcome: note.map_or_else(
            || {
                response
                    .status()
                    .canonical_reason()
                    .unwrap_or("")
                    .to_owned()
            },
            |n| n.outcome,
        ),
    };
    if let Err(e) = state.app.audit().append(&record).await {
        tracing::error!(error = %e, request_id = %record.request_id, action = %record.action,
            principal = %record.principal, "the audit record could not be written");
    }
    response
}

/// One audit record.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditView {
    /// When it was answered (RFC 3339).
    pub at: String,
    /// The request id.
    pub request_id: String,
    /// Who asked.
    pub principal: String,
    /// From which address.
    pub source: Option<String>,
    /// Method and route.
    pub action: String,
    /// What it acted on.
    pub subject: Option<String>,
    /// The status answered.
    pub status: u16,
    /// What it did, or why it was refused.
    pub outcome: String,
}

/// One page of the audit trail.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    /// Newest first.
    pub items: Vec<AuditView>,
    /// Pass as `cursor` for the next (older) page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The page of `GET /audit`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// At most this many (1 to 1000, default 100).
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The audit trail, newest first.
#[utoipa::path(
    get,
    path = "/audit",
    tag = "audit",
    params(AuditQuery),
    responses(
        (status = 200, description = "A page of the audit trail", body = AuditPage),
        (status = 400, description = "A wrong limit or cursor", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<ApiState>,
    _caller: Caller,
    Query(q): Query<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let paging = crate::Paging::new(q.limit, q.cursor)?;
    let mut records = state
        .app
        .audit()
        .audit(paging.after.as_deref(), paging.limit + 1)
        .await?;
    let more = records.len() > paging.limit;
    records.truncate(paging.limit);
    let next_cursor = more
        .then(|| records.last().map(|r| crate::Paging::cursor(&r.key())))
        .flatten();
    Ok(Json(AuditPage {
        items: records
            .into_iter()
            .map(|r| AuditView {
                at: certpilot_core::rfc3339(r.at),
                request_id: r.request_id,
                principal: r.principal,
                source: r.source,
                action: r.action,
                subject: r.subject,
                status: r.status,
                outcome: r.outcome,
            })
            .collect(),
        next_cursor,
    }))
}
