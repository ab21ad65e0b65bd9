//! `/certificates`: what is managed, its state, its deployments and their proof, its open
//! findings — never a key (the records hold only the secret store's version ids).

use axum::Json;
use axum::extract::{Path, Query, State};
use certpilot_core::model::certificate::ManagedCertificate;
use certpilot_core::model::finding::SubjectType;
use certpilot_core::model::request::{CertificateRequest, RequestState};
use certpilot_core::policy::state::CertificateState;
use certpilot_core::ports::Liveness;
use certpilot_core::rfc3339;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ErrorBody};
use crate::{ApiState, Caller, Paging};

/// Whether a lease holder is gone is never known here: a lease simply runs out.
struct NobodyKnownGone;

impl Liveness for NobodyKnownGone {
    fn is_gone(&self, _: &str) -> bool {
        false
    }
}

/// A managed certificate in a list.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CertificateSummary {
    /// Its id.
    pub id: String,
    /// Its names.
    pub names: Vec<String>,
    /// `pending`, `valid`, `renewing`, `failing`, `not_deployed`, `expired`…
    pub state: String,
    /// When the current certificate expires (RFC 3339).
    pub not_after: Option<String>,
    /// When renewal looks at it next (RFC 3339).
    pub next_check: String,
    /// The last renewal or deploy error.
    pub last_error: Option<String>,
    /// Its tags.
    pub tags: std::collections::BTreeMap<String, String>,
}

/// One page of certificates.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CertificatePage {
    /// The certificates, by id.
    pub items: Vec<CertificateSummary>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The filters of `GET /certificates`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CertificateQuery {
    /// Only in this state.
    pub state: Option<String>,
    /// Only with this tag (`owner=payments`).
    pub tag: Option<String>,
    /// Only those with a name containing this text.
    pub name: Option<String>,
    /// At most this many (1 to 1000, default 100).
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A certificate whole: its record (issuances, deployments and each one's verification),
/// its state and its open findings.
#[derive(Debug, Serialize, ToSchema)]
pub struct CertificateDetail {
    /// Its state now.
    pub state: String,
    /// The record as stored (no key: only secret-store version ids).
    #[schema(value_type = Object)]
    pub certificate: serde_json::Value,
    /// Its open findings and its deployments', as `certpilot findings --format json`.
    #[schema(value_type = Vec<Object>)]
    pub findings: Vec<serde_json::Value>,
    /// Its issuances: the current and previous certificate (serial, validity, fingerprint),
    /// and when each recent one was issued.
    #[schema(value_type = Object)]
    pub issuances: serde_json::Value,
    /// What each address of its endpoints served at its latest scan, and whether that is
    /// the current certificate.
    #[schema(value_type = Vec<Object>)]
    pub served: Vec<serde_json::Value>,
    /// The request it came from through the API: requester, rule, approvers, decision.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub request: Option<serde_json::Value>,
}

fn issued_json(i: &certpilot_core::model::certificate::IssuedCertificate) -> serde_json::Value {
    serde_json::json!({
        "serial": i.serial,
        "fingerprint": i.fingerprint,
        "not_before": rfc3339(i.not_before),
        "not_after": rfc3339(i.not_after),
        "issued_at": rfc3339(i.issued_at),
        "profile": i.profile,
    })
}

fn issuances_json(c: &ManagedCertificate) -> serde_json::Value {
    serde_json::json!({
        "current": c.current.as_ref().map(issued_json),
        "previous": c.previous.as_ref().map(issued_json),
        "recent": c.renewal.recent_issuances.iter().map(|t| rfc3339(*t)).collect::<Vec<_>>(),
    })
}

/// What every address of `c`'s endpoints (its own and its deployments') served at its latest
/// scan, read a target at a time from the inventory.
async fn served(
    state: &ApiState,
    c: &ManagedCertificate,
) -> Result<Vec<serde_json::Value>, ApiError> {
    let mut targets: Vec<String> = c
        .spec
        .endpoints
        .iter()
        .chain(c.spec.deployments.iter().flat_map(|d| d.endpoints.iter()))
        .map(ToString::to_string)
        .collect();
    targets.sort();
    targets.dedup();
    let current = c.current.as_ref().map(|i| i.fingerprint.as_str());
    let mut out = Vec::new();
    for target in targets.iter().take(100) {
        let rows = state
            .app
            .store()
            .inventory(&certpilot_core::ports::InventoryQuery {
                // Just before the target's first address.
                after: Some((target.clone(), String::new())),
                limit: Some(64),
                ..Default::default()
            })
            .await?;
        for e in rows.iter().take_while(|e| &e.observation.target == target) {
            let o = &e.observation;
            let fingerprint = o
                .certificate
                .as_ref()
                .map(|x| x.fingerprint_sha256.as_str());
            out.push(serde_json::json!({
                "target": target,
                "address": o.address,
                "scanned_at": rfc3339(o.scanned_at),
                "fingerprint": fingerprint,
                "serves_current": current.is_some() && fingerprint == current,
                "error": o.error.as_ref().map(|e| format!("{}: {}", e.kind, e.message)),
            }));
        }
    }
    Ok(out)
}

fn request_json(r: &CertificateRequest) -> serde_json::Value {
    serde_json::json!({
        "requester": r.requester,
        "requested_at": rfc3339(r.requested_at),
        "rule": r.rule,
        "approvers": r.approvers,
        "state": r.state.as_str(),
        "decided_by": r.decided_by,
        "decided_at": r.decided_at.map(rfc3339),
        "reason": r.reason,
    })
}

/// A request not (yet) managed, as a list entry.
fn request_summary(r: &CertificateRequest) -> CertificateSummary {
    CertificateSummary {
        id: r.id.clone(),
        names: r.certificate.spec.name_set(),
        state: r.state.as_str().to_owned(),
        not_after: None,
        next_check: rfc3339(r.requested_at),
        last_error: r.reason.clone(),
        tags: r.certificate.spec.tags.clone(),
    }
}

fn summary(c: &ManagedCertificate, now: time::OffsetDateTime) -> CertificateSummary {
    CertificateSummary {
        id: c.id.clone(),
        names: c.spec.name_set(),
        state: CertificateState::of(c, now, &NobodyKnownGone)
            .as_str()
            .to_owned(),
        not_after: c.current.as_ref().map(|i| rfc3339(i.not_after)),
        next_check: rfc3339(c.renewal.next_check_at),
        last_error: c.renewal.last_error.as_ref().map(|e| e.message.clone()),
        tags: c.spec.tags.clone(),
    }
}

/// List the managed certificates, by id.
#[utoipa::path(
    get,
    path = "/certificates",
    tag = "certificates",
    params(CertificateQuery),
    responses(
        (status = 200, description = "A page of certificates", body = CertificatePage),
        (status = 400, description = "A wrong filter", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<ApiState>,
    _caller: Caller,
    Query(q): Query<CertificateQuery>,
) -> Result<Json<CertificatePage>, ApiError> {
    let paging = Paging::new(q.limit, q.cursor)?;
    let tag = match &q.tag {
        Some(t) => Some(certpilot_core::parse_tag(t).map_err(|e| ApiError::field("tag", e))?),
        None => None,
    };
    let now = state.app.clock().now();
    let mut all: Vec<CertificateSummary> = state
        .app
        .certificates()
        .certificates()
        .await?
        .iter()
        .filter(|c| {
            tag.as_ref()
                .is_none_or(|(k, v)| c.spec.tags.get(k) == Some(v))
        })
        .map(|c| summary(c, now))
        .collect();
    // Requests waiting for approval are listed with the certificates they would be.
    let requests = state.app.requests().pending_requests().await?;
    all.extend(
        requests
            .iter()
            .filter(|r| {
                tag.as_ref()
                    .is_none_or(|(k, v)| r.certificate.spec.tags.get(k) == Some(v))
            })
            .map(request_summary),
    );
    let mut all: Vec<CertificateSummary> = all
        .into_iter()
        .filter(|s| q.state.as_ref().is_none_or(|st| &s.state == st))
        .filter(|s| {
            q.name
                .as_ref()
                .is_none_or(|n| s.names.iter().any(|x| x.contains(n.as_str())))
        })
        .collect();
    all.sort_by(|a, b| a.id.cmp(&b.id));
    let (items, next_cursor) = paging.page(all, |s| s.id.clone());
    Ok(Json(CertificatePage { items, next_cursor }))
}

/// A certificate whole: state, history, deployments with their verification, open findings.
#[utoipa::path(
    get,
    path = "/certificates/{id}",
    tag = "certificates",
    params(("id" = String, Path, description = "The certificate's id")),
    responses(
        (status = 200, description = "The certificate", body = CertificateDetail),
        (status = 404, description = "No such certificate", body = ErrorBody),
    )
)]
pub async fn show(
    State(state): State<ApiState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<CertificateDetail>, ApiError> {
    let request = state.app.requests().request(&id).await?;
    let Some(cert) = state.app.certificates().certificate(&id).await? else {
        return match request.filter(|r| r.state != RequestState::Approved) {
            Some(r) => Ok(Json(CertificateDetail {
                state: r.state.as_str().to_owned(),
                certificate: serde_json::to_value(&r.certificate).unwrap_or_default(),
                findings: Vec::new(),
                issuances: serde_json::json!({"current": null, "previous": null, "recent": []}),
                served: Vec::new(),
                request: Some(request_json(&r)),
            })),
            None => Err(ApiError::not_found(format!("certificate {id:?}"))),
        };
    };
    let now = state.app.clock().now();
    let deployment_prefix = format!("{id}/");
    let findings = state
        .app
        .findings()
        .active_findings()
        .await?
        .into_iter()
        .filter(|f| match f.subject.kind {
            SubjectType::Certificate => f.subject.id == id,
            SubjectType::Deployment => f.subject.id.starts_with(&deployment_prefix),
            _ => false,
        })
        .map(|f| f.public_json())
        .collect();
    Ok(Json(CertificateDetail {
        state: CertificateState::of(&cert, now, &NobodyKnownGone)
            .as_str()
            .to_owned(),
        certificate: serde_json::to_value(&cert).unwrap_or_default(),
        findings,
        issuances: issuances_json(&cert),
        served: served(&state, &cert).await?,
        request: request.as_ref().map(request_json),
    }))
}
