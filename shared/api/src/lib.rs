//! certpilot's HTTP API: one axum router that both fronts serve — the API function behind
//! API Gateway and `certpilot serve` over the embedded store — so they behave the same.
//!
//! The front authenticates and puts a [`Caller`] in each request's extensions; the router
//! validates every input (unknown fields refused, bodies at most [`body::MAX_BODY`] bytes,
//! errors as JSON `{"code", "message"}` naming the input), and its OpenAPI 3.1 document is
//! generated from the handlers themselves and served at `/openapi.json`.

pub mod audit;
mod body;
mod caller;
pub mod certificates;
pub mod dashboard;
pub mod endpoints;
mod error;
pub mod estate;
pub mod idempotency;
pub mod requests;
pub mod resolve;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use certpilot_app::App;
use certpilot_core::policy::address::AddressPolicy;
use certpilot_core::policy::requests::RequestPolicy;
use certpilot_core::ports::{CertificateWork, QueueError, WorkSink};
use utoipa::OpenApi;

pub use audit::RequestSource;
pub use body::MAX_BODY;
pub use caller::Caller;
pub use error::{ApiError, ErrorBody};

/// What every handler reads.
#[derive(Clone)]
pub struct ApiState {
    app: App,
    addresses: Arc<AddressPolicy>,
    resolver: Arc<dyn resolve::Resolve>,
    policy: Option<Arc<RequestPolicy>>,
    work: Arc<dyn WorkSink>,
    dashboard: dashboard::Dashboard,
}

/// Work left to the schedule: what an API without workers does (the certificate is due
/// already, and the next scheduled renewal takes it).
pub struct ScheduleOnly;

#[async_trait::async_trait]
impl WorkSink for ScheduleOnly {
    async fn submit(&self, work: &CertificateWork) -> Result<(), QueueError> {
        Err(QueueError::Rejected(format!(
            "no worker for {}: left to the next scheduled run",
            work.id()
        )))
    }
}

impl ApiState {
    /// The API over `app`, registering endpoints only at addresses `addresses` allows, as
    /// `resolver` resolves them.
    pub fn new(app: App, addresses: AddressPolicy, resolver: Arc<dyn resolve::Resolve>) -> Self {
        ApiState {
            // Its scans and verifications hold what the API registers to the same policy.
            app: app.with_address_policy(addresses.clone()),
            addresses: Arc::new(addresses),
            resolver,
            policy: None,
            work: Arc::new(ScheduleOnly),
            dashboard: dashboard::Dashboard::default(),
        }
    }

    /// The same API with the dashboard's sessions signed and opened as `dashboard` says
    /// (by default: a random key, and no sign-in but the front's own authentication).
    pub fn with_dashboard(mut self, dashboard: dashboard::Dashboard) -> Self {
        self.dashboard = dashboard;
        self
    }

    /// The same API taking certificate requests under `policy`, handing their work to
    /// `work`. Without a policy every request for a certificate is refused.
    pub fn with_requests(mut self, policy: RequestPolicy, work: Arc<dyn WorkSink>) -> Self {
        self.policy = Some(Arc::new(policy));
        self.work = work;
        self
    }
}

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "certpilot",
        description = "Request certificates, register endpoints, read the inventory. Every error is JSON {\"code\", \"message\"}."
    ),
    paths(
        endpoints::add,
        endpoints::list,
        endpoints::remove,
        certificates::list,
        certificates::show,
        requests::create,
        requests::approve,
        requests::reject,
        requests::renew,
        requests::rollback,
        requests::remove,
        estate::inventory,
        estate::findings,
        estate::ack,
        estate::metrics,
        estate::healthz,
        audit::list,
    ),
    tags(
        (name = "endpoints", description = "What certpilot watches"),
        (name = "certificates", description = "What certpilot manages, and requests for more"),
        (name = "estate", description = "The inventory, findings and metrics"),
        (name = "audit", description = "Who changed what"),
    )
)]
pub struct ApiDoc;

/// The OpenAPI 3.1 document as JSON, with each deployment kind's settings schema (from
/// its descriptor) as a `oneOf` on `kind` under `components.schemas.Deployment`.
pub fn openapi() -> serde_json::Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    doc["components"]["schemas"]["Deployment"] = certpilot_app::deploy_kinds().one_of_schema();
    // What any route may answer besides its own responses, documented once here.
    let error = |description: &str| {
        serde_json::json!({
            "description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
        })
    };
    if let Some(paths) = doc["paths"].as_object_mut() {
        for (path, item) in paths.iter_mut() {
            let public = matches!(path.as_str(), "/healthz" | "/openapi.json");
            for (method, op) in item.as_object_mut().into_iter().flatten() {
                let Some(responses) = op["responses"].as_object_mut() else {
                    continue;
                };
                let mut common = vec![
                    ("400", "A wrong parameter, named"),
                    ("404", "No such thing"),
                    ("500", "The server failed; its log says why"),
                    ("503", "The store is unavailable; retry"),
                ];
                if !public {
                    common.push(("401", "No caller: authenticate"));
                }
                if method == "post" {
                    common.extend([
                        ("409", "A conflicting request, or the first with this Idempotency-Key still runs"),
                        ("413", "The body is larger than 64 KiB"),
                        ("415", "The body is not Content-Type: application/json"),
                        ("422", "The body does not fit the schema (the field named), or an Idempotency-Key reused with another body"),
                    ]);
                }
                if method != "get" {
                    common.push(("403", "Refused by the request policy or the address policy"));
                }
                for (status, description) in common {
                    responses
                        .entry(status)
                        .or_insert_with(|| error(description));
                }
            }
        }
    }
    if let Some(deployments) =
        doc.pointer_mut("/components/schemas/NewCertificate/properties/deployments")
    {
        *deployments = serde_json::json!({
            "type": "array",
            "description": "Where to install it after each issuance, as in --deploy-file",
            "items": {"$ref": "#/components/schemas/Deployment"},
        });
    }
    doc
}

/// The router, every route of the OpenAPI document and `/openapi.json`.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/endpoints", get(endpoints::list).post(endpoints::add))
        .route("/endpoints/{id}", delete(endpoints::remove))
        .route(
            "/certificates",
            get(certificates::list).post(requests::create),
        )
        .route(
            "/certificates/{id}",
            get(certificates::show).delete(requests::remove),
        )
        .route("/certificates/{id}/approve", post(requests::approve))
        .route("/certificates/{id}/reject", post(requests::reject))
        .route("/certificates/{id}/renew", post(requests::renew))
        .route("/certificates/{id}/rollback", post(requests::rollback))
        .route("/inventory", get(estate::inventory))
        .route("/findings", get(estate::findings))
        .route("/findings/{key}/ack", post(estate::ack))
        .route("/metrics", get(estate::metrics))
        .route("/audit", get(audit::list))
        // Inside the key: a replayed answer is not recorded twice.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            audit::record,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            idempotency::keyed,
        ))
        .merge(dashboard::router(state.clone()))
        .route("/healthz", get(estate::healthz))
        .route("/openapi.json", get(|| async { axum::Json(openapi()) }))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such route; see /openapi.json",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// A page request: `limit` (1 to 1000, default 100) items after `cursor` (the last key of
/// the previous page).
pub(crate) struct Paging {
    limit: usize,
    after: Option<String>,
}

impl Paging {
    pub(crate) fn new(limit: Option<usize>, cursor: Option<String>) -> Result<Self, ApiError> {
        let limit = limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(ApiError::field("limit", format!("{limit}: from 1 to 1000")));
        }
        let after = match cursor {
            Some(c) => Some(
                data_encoding::BASE64URL_NOPAD
                    .decode(c.as_bytes())
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| ApiError::field("cursor", "not a cursor this API gave"))?,
            ),
            None => None,
        };
        Ok(Paging { limit, after })
    }

    /// The cursor that continues after `key`.
    pub(crate) fn cursor(key: &str) -> String {
        data_encoding::BASE64URL_NOPAD.encode(key.as_bytes())
    }

    /// The page of `sorted` (sorted by `key`) and the cursor of the next one.
    pub(crate) fn page<T>(
        &self,
        sorted: Vec<T>,
        key: impl Fn(&T) -> String,
    ) -> (Vec<T>, Option<String>) {
        let mut rest: Vec<T> = sorted
            .into_iter()
            .filter(|t| self.after.as_ref().is_none_or(|a| key(t) > *a))
            .collect();
        let more = rest.len() > self.limit;
        rest.truncate(self.limit);
        let next = more
            .then(|| {
                rest.last()
                    .map(|t| data_encoding::BASE64URL_NOPAD.encode(key(t).as_bytes()))
            })
            .flatten();
        (rest, next)
    }
}

/// Tags as a caller gave them, with `requested-by` (the caller) set by the API: what came
/// through the API is held to the address policy at every scan and verification.
pub(crate) fn caller_tags(
    given: &std::collections::BTreeMap<String, String>,
    caller: &Caller,
) -> Result<certpilot_core::Tags, ApiError> {
    use certpilot_core::services::guard::REQUESTED_BY;
    let mut tags = certpilot_core::Tags::new();
    for (k, v) in given {
        if k == REQUESTED_BY {
            return Err(ApiError::field(
                "tags",
                format!("{REQUESTED_BY:?} is set by the API (to the caller)"),
            ));
        }
        certpilot_core::add_tag(&mut tags, &format!("{k}={v}"))
            .map_err(|e| ApiError::field("tags", e))?;
    }
    tags.insert(REQUESTED_BY.to_owned(), caller.principal.clone());
    Ok(tags)
}

/// The request policy from its YAML (or JSON) text, checked: a mistake names `source` and
/// the field.
pub fn request_policy_from_yaml(text: &str, source: &str) -> Result<RequestPolicy, String> {
    let policy: RequestPolicy = yaml_serde::from_str(text).map_err(|e| format!("{source}: {e}"))?;
    policy.check().map_err(|e| format!("{source}: {e}"))?;
    Ok(policy)
}
