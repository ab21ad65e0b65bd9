//! `/endpoints`: teams register what should be watched. A target (`shop.example.com`,
//! `smtp://mx.example.com:587`, `[2001:db8::7]:8443`) is never a path segment: each endpoint
//! has an opaque, URL-safe id.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use certpilot_core::model::endpoint::Endpoint;
use certpilot_core::model::target::{Host, Target};
use certpilot_core::services::endpoints::{Registration, register};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::body::Body;
use crate::error::{ApiError, ErrorBody};
use crate::{ApiState, Caller, Paging};

/// A registered endpoint.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EndpointView {
    /// Its opaque id (for `DELETE /endpoints/{id}`).
    pub id: String,
    /// The target, in canonical form.
    pub target: String,
    /// Its tags (`owner`, `environment`…).
    pub tags: BTreeMap<String, String>,
    /// When it was registered (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub added_at: time::OffsetDateTime,
}

/// One page of endpoints.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EndpointPage {
    /// The endpoints, by target.
    pub items: Vec<EndpointView>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `POST /endpoints`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEndpoint {
    /// What to watch, in the CLI's target syntax.
    pub target: String,
    /// Tags; `owner` routes its findings to the owning team.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// The filters of `GET /endpoints`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EndpointQuery {
    /// Only this target (any spelling the CLI accepts).
    pub target: Option<String>,
    /// At most this many (1 to 1000, default 100).
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The opaque id of a target: its canonical form in unpadded base64url.
pub fn endpoint_id(target: &str) -> String {
    data_encoding::BASE64URL_NOPAD.encode(target.as_bytes())
}

fn target_of_id(id: &str) -> Result<String, ApiError> {
    data_encoding::BASE64URL_NOPAD
        .decode(id.as_bytes())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| ApiError::not_found(format!("endpoint {id:?}")))
}

fn view(e: &Endpoint) -> EndpointView {
    let target = e.target.to_string();
    EndpointView {
        id: endpoint_id(&target),
        target,
        tags: e.tags.clone(),
        added_at: e.added_at,
    }
}

/// Register an endpoint (or add tags to one already registered).
///
/// Its host is resolved and every address checked against the address policy first: the
/// cloud metadata service, loopback, link-local, private and reserved addresses are refused
/// unless the operator allowed their network.
#[utoipa::path(
    post,
    path = "/endpoints",
    tag = "endpoints",
    request_body = NewEndpoint,
    responses(
        (status = 201, description = "Registered", body = EndpointView),
        (status = 200, description = "Already registered; tags merged", body = EndpointView),
        (status = 400, description = "A wrong target or tag", body = ErrorBody),
        (status = 403, description = "An address the policy refuses", body = ErrorBody),
        (status = 422, description = "A body that is not a NewEndpoint", body = ErrorBody),
    )
)]
pub async fn add(
    State(state): State<ApiState>,
    caller: Caller,
    Body(body): Body<NewEndpoint>,
) -> Result<(StatusCode, Json<EndpointView>), ApiError> {
    let target: Target = body.target.parse().map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_target",
            format!("target: {e}"),
        )
    })?;
    let tags = crate::caller_tags(&body.tags, &caller)?;
    state.check_addresses(&target).await?;
    let now = state.app.clock().now();
    let (endpoint, registration) =
        register(state.app.store().as_ref(), &target, &tags, now).await?;
    tracing::info!(caller = %caller.principal, target = %target, ?registration, "endpoint registered");
    let status = match registration {
        Registration::Added => StatusCode::CREATED,
        Registration::Updated | Registration::Unchanged => StatusCode::OK,
    };
    Ok((status, Json(view(&endpoint))))
}

/// List the registered endpoints, by target.
#[utoipa::path(
    get,
    path = "/endpoints",
    tag = "endpoints",
    params(EndpointQuery),
    responses(
        (status = 200, description = "A page of endpoints", body = EndpointPage),
        (status = 400, description = "A wrong filter", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<ApiState>,
    _caller: Caller,
    Query(q): Query<EndpointQuery>,
) -> Result<Json<EndpointPage>, ApiError> {
    let paging = Paging::new(q.limit, q.cursor)?;
    let only = match &q.target {
        Some(t) => Some(
            t.parse::<Target>()
                .map_err(|e| ApiError::field("target", e))?
                .to_string(),
        ),
        None => None,
    };
    let mut all: Vec<EndpointView> = state
        .app
        .store()
        .endpoints()
        .await?
        .iter()
        .map(view)
        .filter(|v| only.as_ref().is_none_or(|t| &v.target == t))
        .collect();
    all.sort_by(|a, b| a.id.cmp(&b.id));
    let (items, next_cursor) = paging.page(all, |v| v.id.clone());
    Ok(Json(EndpointPage { items, next_cursor }))
}

/// Stop watching an endpoint (its observations stay in the history).
#[utoipa::path(
    delete,
    path = "/endpoints/{id}",
    tag = "endpoints",
    params(("id" = String, Path, description = "The endpoint's id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such endpoint", body = ErrorBody),
    )
)]
pub async fn remove(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let target = target_of_id(&id)?;
    let store = state.app.store();
    if store.endpoint(&target).await?.is_none() {
        return Err(ApiError::not_found(format!("endpoint {id:?}")));
    }
    store.remove_endpoint(&target).await?;
    tracing::info!(caller = %caller.principal, %target, "endpoint removed");
    Ok(StatusCode::NO_CONTENT)
}

impl ApiState {
    /// Resolves the target's host (a literal address is itself) and checks every address.
    pub(crate) async fn check_addresses(&self, target: &Target) -> Result<(), ApiError> {
        let ips = match &target.host {
            Host::Ip(ip) => vec![*ip],
            Host::Name(name) => self
                .resolver
                .resolve(name, target.port)
                .await
                .map_err(|e| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_target",
                        format!("target: {e}"),
                    )
                })?,
        };
        for ip in ips {
            if let Err(why) = self.addresses.check(ip) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "address_not_allowed",
                    format!(
                        "target {target}: {ip} is {}; scans may not go there unless the operator allows its network",
                        why.words()
                    ),
                ));
            }
        }
        Ok(())
    }
}
