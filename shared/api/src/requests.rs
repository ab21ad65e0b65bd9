//! Requesting certificates: `POST /certificates`, approvals, renewals, rollbacks and removal.
//!
//! A request is judged by the request policy (names, issuer, challenge, key type, profile,
//! deployment kinds, tags) before anything is stored; a refusal stores nothing. An accepted
//! request is managed at once and handed to the workers (`202`), or waits in
//! `pending_approval` for an approver who is not the requester.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use certpilot_core::model::certificate::{
    CertificateSpec, Identifier, KeyType, ManagedCertificate, RenewalPolicy, default_id,
    validate_certificate_id,
};
use certpilot_core::model::request::{CertificateRequest, RequestState};
use certpilot_core::model::target::Target;
use certpilot_core::policy::requests::{Ask, RequestPolicy, principal_matches};
use certpilot_core::ports::{CertificateWork, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::audit::noted;
use crate::body::{Body, OptionalBody};
use crate::error::{ApiError, ErrorBody};
use crate::{ApiState, Caller};

/// `POST /certificates`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCertificate {
    /// Its id; made from the first name when absent (`shop.example.com` →
    /// `shop.example.com`, `*.example.com` → `wildcard.example.com`).
    #[serde(default)]
    pub id: Option<String>,
    /// DNS names (internationalised ones become their xn-- form) or IP addresses; the first
    /// is the common name.
    pub names: Vec<String>,
    /// One of the issuers the policy names.
    pub issuer: String,
    /// One of the challenges the policy names.
    pub challenge: String,
    /// `ecdsa-p256` (default), `ecdsa-p384`, `rsa2048`, `rsa3072`, `rsa4096`.
    #[serde(default)]
    pub key_type: Option<String>,
    /// The ACME profile (`tlsserver`, `shortlived`, `classic`).
    #[serde(default)]
    pub profile: Option<String>,
    /// Where to install it after each issuance, as in `--deploy-file`.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub deployments: Vec<serde_json::Value>,
    /// The endpoints that will serve it, in the CLI's target syntax; they are watched from
    /// now on.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// Tags; `owner` always, and whatever the policy requires.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Renew this many days before expiry instead of when the CA says (ARI).
    #[serde(default)]
    pub renew_days_before: Option<u32>,
}

/// A request accepted.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Accepted {
    /// The certificate's id.
    pub id: String,
    /// `pending` (being issued), `pending_approval`, or the state after a decision.
    pub state: String,
    /// Who may approve it, while it waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvers: Option<Vec<String>>,
}

/// `POST /certificates/{id}/approve` or `/reject`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// Why, for the audit trail and the requester.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /certificates/{id}/rollback`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    /// Only this deployment.
    #[serde(default)]
    pub deployment: Option<String>,
}

fn policy(state: &ApiState) -> Result<&RequestPolicy, ApiError> {
    state.policy.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "no_policy",
            "this server has no request policy, so nobody may request or change certificates \
             through it (certpilot serve --policy FILE; CERTPILOT_REQUEST_POLICY on AWS)",
        )
    })
}

fn refused(r: certpilot_core::policy::requests::Refused) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "policy", r.message)
}

fn accepted(id: &str, state: &str, approvers: Option<Vec<String>>) -> Response {
    let mut res = (
        StatusCode::ACCEPTED,
        Json(Accepted {
            id: id.to_owned(),
            state: state.to_owned(),
            approvers,
        }),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/certificates/{id}")) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}

/// The spec a request asks for, each part checked and named when wrong.
fn spec_of(
    policy: &RequestPolicy,
    body: &NewCertificate,
    caller: &Caller,
) -> Result<(CertificateSpec, Vec<Identifier>, KeyType), ApiError> {
    if body.names.is_empty() {
        return Err(ApiError::field("names", "give at least one name"));
    }
    let names = body
        .names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            n.parse::<Identifier>()
                .map_err(|e| ApiError::field(&format!("names[{i}]"), e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let key_type = match &body.key_type {
        None => KeyType::default(),
        Some(k) => KeyType::ALL
            .into_iter()
            .find(|t| t.as_str() == k)
            .ok_or_else(|| {
                let all: Vec<&str> = KeyType::ALL.iter().map(|t| t.as_str()).collect();
                ApiError::field(
                    "key_type",
                    format!("{k:?} is not one of {}", all.join(", ")),
                )
            })?,
    };
    let tags = crate::caller_tags(&body.tags, caller)?;
    let endpoints = body
        .endpoints
        .iter()
        .enumerate()
        .map(|(i, t)| {
            t.parse::<Target>()
                .map_err(|e| ApiError::field(&format!("endpoints[{i}]"), e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let kinds = certpilot_app::deploy_kinds();
    let deployments = kinds
        .parse_deployments(body.deployments.clone())
        .map_err(|e| ApiError::field("deployments", e))?;
    let (issuer, acm) = policy
        .issuer(&body.issuer, body.profile.clone())
        .ok_or_else(|| {
            ApiError::field(
                "issuer",
                format!(
                    "{:?} is not one of this API's issuers ({})",
                    body.issuer,
                    policy
                        .issuers
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
    let challenge = policy
        .challenges
        .get(&body.challenge)
        .cloned()
        .ok_or_else(|| {
            ApiError::field(
                "challenge",
                format!(
                    "{:?} is not one of this API's challenges ({})",
                    body.challenge,
                    policy
                        .challenges
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
    let spec = CertificateSpec {
        names: names.clone(),
        key_type,
        issuer,
        challenge,
        renewal: match body.renew_days_before {
            Some(0) => return Err(ApiError::field("renew_days_before", "at least 1")),
            Some(days) => RenewalPolicy::DaysBefore { days },
            None => RenewalPolicy::Auto,
        },
        tags,
        endpoints,
        deployments,
        acm,
    };
    Ok((spec, names, key_type))
}

/// Request a certificate.
///
/// Judged by the request policy; accepted requests are issued in the background (`pending`),
/// or wait for an approver (`pending_approval`). `GET /certificates/{id}` follows it.
#[utoipa::path(
    post,
    path = "/certificates",
    tag = "certificates",
    request_body = NewCertificate,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key and body get the first answer for 24 hours")),
    responses(
        (status = 202, description = "Accepted", body = Accepted),
        (status = 400, description = "A wrong name, tag, target, deployment or setting", body = ErrorBody),
        (status = 403, description = "The request policy refuses it (the rule and field named), or an endpoint's address", body = ErrorBody),
        (status = 409, description = "The id is managed or requested already", body = ErrorBody),
        (status = 422, description = "A body that is not a NewCertificate, or an Idempotency-Key reused with another body", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    Body(body): Body<NewCertificate>,
) -> Result<Response, ApiError> {
    let policy = policy(&state)?;
    let (spec, names, key_type) = spec_of(policy, &body, &caller)?;
    let kinds: Vec<&str> = spec.deployments.iter().map(|d| d.kind.as_str()).collect();
    let allowed = policy
        .authorize(
            &caller.principal,
            &Ask {
                names: &names,
                issuer: &body.issuer,
                challenge: &body.challenge,
                key_type,
                profile: body.profile.as_deref(),
                deploy_kinds: kinds,
                tags: &spec.tags,
            },
        )
        .map_err(refused)?;
    spec.validate().map_err(|e| ApiError::field("names", e))?;
    certpilot_app::deploy_kinds()
        .check_spec(&spec)
        .map_err(|e| ApiError::field("deployments", e))?;
    for target in &spec.endpoints {
        state.check_addresses(target).await?;
    }
    let id = body.id.clone().unwrap_or_else(|| default_id(&names));
    validate_certificate_id(&id).map_err(|e| ApiError::field("id", e))?;
    let taken = || {
        ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("certificate {id:?} is managed or requested already; choose another id"),
        )
    };
    if state.app.certificates().certificate(&id).await?.is_some() {
        return Err(taken());
    }
    let now = state.app.clock().now();
    let cert = ManagedCertificate::new(id.clone(), spec, now);
    let existing = state.app.requests().request(&id).await?;
    if existing
        .as_ref()
        .is_some_and(|r| r.state != RequestState::Rejected)
    {
        return Err(taken());
    }
    if let Some(approvers) = allowed.approvers {
        let request = CertificateRequest {
            id: id.clone(),
            requester: caller.principal.clone(),
            requested_at: now,
            rule: allowed.rule.clone(),
            approvers: approvers.clone(),
            certificate: cert,
            state: RequestState::PendingApproval,
            decided_by: None,
            decided_at: None,
            reason: None,
            // A rejected request for this id is replaced by the new one.
            version: existing.map_or(0, |r| r.version),
        };
        state
            .app
            .requests()
            .put_request(&request)
            .await
            .map_err(|e| match e {
                StoreError::AlreadyExists { .. } | StoreError::Conflict { .. } => taken(),
                e => e.into(),
            })?;
        return Ok(noted(
            accepted(&id, RequestState::PendingApproval.as_str(), Some(approvers)),
            &id,
            format!(
                "requested {} (rule {}); waits for approval",
                names_text(&names),
                allowed.rule
            ),
        ));
    }
    if existing.is_some() {
        state.app.requests().remove_request(&id).await?;
    }
    manage(&state, &cert).await.map_err(|e| match e {
        StoreError::AlreadyExists { .. } => taken(),
        e => e.into(),
    })?;
    Ok(noted(
        accepted(&id, "pending", None),
        &id,
        format!(
            "requested {} (rule {}); issuing",
            names_text(&names),
            allowed.rule
        ),
    ))
}

fn names_text(names: &[Identifier]) -> String {
    names
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Manages `cert` from now on: stores it, watches its endpoints, and hands its issuance to
/// the workers (a worker that cannot be reached leaves it due, for the next scheduled run).
async fn manage(state: &ApiState, cert: &ManagedCertificate) -> Result<(), StoreError> {
    state.app.certificates().add_certificate(cert).await?;
    let now = state.app.clock().now();
    for target in &cert.spec.endpoints {
        certpilot_core::services::endpoints::register(
            state.app.store().as_ref(),
            target,
            &cert.spec.tags,
            now,
        )
        .await?;
    }
    submit(
        state,
        &CertificateWork::Renew {
            id: cert.id.clone(),
            force: false,
        },
    )
    .await;
    Ok(())
}

async fn submit(state: &ApiState, work: &CertificateWork) {
    if let Err(e) = state.work.submit(work).await {
        // The certificate is due already: the scheduled run picks it up.
        tracing::warn!(id = work.id(), error = %e, "work not queued; left to the schedule");
    }
}

/// The request waiting for `caller`'s decision.
async fn decidable(
    state: &ApiState,
    caller: &Caller,
    id: &str,
) -> Result<CertificateRequest, ApiError> {
    let request = state
        .app
        .requests()
        .request(id)
        .await?
        .filter(|r| r.state == RequestState::PendingApproval)
        .ok_or_else(|| ApiError::not_found(format!("request waiting for approval {id:?}")))?;
    if request.requester == caller.principal {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "policy",
            "a requester cannot decide their own request; ask one of its approvers",
        ));
    }
    if !request
        .approvers
        .iter()
        .any(|a| principal_matches(a, &caller.principal))
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "policy",
            format!(
                "{} is not an approver of {id:?} (approvers: {})",
                caller.principal,
                request.approvers.join(", ")
            ),
        ));
    }
    Ok(request)
}

async fn decide(
    state: &ApiState,
    caller: &Caller,
    id: &str,
    approve: bool,
    reason: Option<String>,
) -> Result<Response, ApiError> {
    let mut request = decidable(state, caller, id).await?;
    request.state = if approve {
        RequestState::Approved
    } else {
        RequestState::Rejected
    };
    request.decided_by = Some(caller.principal.clone());
    request.decided_at = Some(state.app.clock().now());
    request.reason = reason
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty());
    // Conditional on the version read: of two approvers at once, one decides.
    let request = state
        .app
        .requests()
        .put_request(&request)
        .await
        .map_err(|e| match e {
            StoreError::Conflict { .. } => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("{id:?} was decided by someone else meanwhile"),
            ),
            e => e.into(),
        })?;
    if !approve {
        return Ok(noted(
            (
                StatusCode::OK,
                Json(Accepted {
                    id: id.to_owned(),
                    state: RequestState::Rejected.as_str().into(),
                    approvers: None,
                }),
            )
                .into_response(),
            id,
            format!(
                "rejected the request of {}{}",
                request.requester,
                request
                    .reason
                    .as_ref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ),
        ));
    }
    let mut cert = request.certificate.clone();
    // Due from the approval, not from the request.
    cert.renewal.next_check_at = state.app.clock().now();
    manage(state, &cert).await?;
    Ok(noted(
        accepted(id, "pending", None),
        id,
        format!("approved the request of {}; issuing", request.requester),
    ))
}

/// Approve a request waiting for approval (never one's own).
#[utoipa::path(
    post,
    path = "/certificates/{id}/approve",
    tag = "certificates",
    params(("id" = String, Path, description = "The certificate's id")),
    request_body(content = Decision, description = "Optional reason"),
    responses(
        (status = 202, description = "Approved; issuing", body = Accepted),
        (status = 403, description = "Not an approver, or the requester", body = ErrorBody),
        (status = 404, description = "No request waits under this id", body = ErrorBody),
        (status = 409, description = "Decided by someone else meanwhile", body = ErrorBody),
    )
)]
pub async fn approve(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalBody(body): OptionalBody<Decision>,
) -> Result<Response, ApiError> {
    let reason = body.and_then(|d| d.reason);
    decide(&state, &caller, &id, true, reason).await
}

/// Reject a request waiting for approval (never one's own).
#[utoipa::path(
    post,
    path = "/certificates/{id}/reject",
    tag = "certificates",
    params(("id" = String, Path, description = "The certificate's id")),
    request_body(content = Decision, description = "Optional reason"),
    responses(
        (status = 200, description = "Rejected; nothing is issued", body = Accepted),
        (status = 403, description = "Not an approver, or the requester", body = ErrorBody),
        (status = 404, description = "No request waits under this id", body = ErrorBody),
        (status = 409, description = "Decided by someone else meanwhile", body = ErrorBody),
    )
)]
pub async fn reject(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalBody(body): OptionalBody<Decision>,
) -> Result<Response, ApiError> {
    let reason = body.and_then(|d| d.reason);
    decide(&state, &caller, &id, false, reason).await
}

/// The managed certificate `id`, if `caller` may change it.
pub(crate) async fn manageable(
    state: &ApiState,
    caller: &Caller,
    id: &str,
) -> Result<ManagedCertificate, ApiError> {
    let policy = policy(state)?;
    let cert = state
        .app
        .certificates()
        .certificate(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("certificate {id:?}")))?;
    policy
        .may_manage(&caller.principal, &cert.spec.names)
        .map_err(refused)?;
    Ok(cert)
}

/// Renew now, even if not due; deployed and verified after.
#[utoipa::path(
    post,
    path = "/certificates/{id}/renew",
    tag = "certificates",
    params(("id" = String, Path, description = "The certificate's id")),
    responses(
        (status = 202, description = "Queued", body = Accepted),
        (status = 403, description = "The policy does not cover its names for this caller", body = ErrorBody),
        (status = 404, description = "No such certificate", body = ErrorBody),
    )
)]
pub async fn renew(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    manageable(&state, &caller, &id).await?;
    submit(
        &state,
        &CertificateWork::Renew {
            id: id.clone(),
            force: true,
        },
    )
    .await;
    Ok(noted(
        accepted(&id, "renewing", None),
        &id,
        "renewal asked for".into(),
    ))
}

/// Put the previous certificate back at its deployments (or the one named).
#[utoipa::path(
    post,
    path = "/certificates/{id}/rollback",
    tag = "certificates",
    params(("id" = String, Path, description = "The certificate's id")),
    request_body(content = Rollback, description = "Optional: only one deployment"),
    responses(
        (status = 202, description = "Queued", body = Accepted),
        (status = 400, description = "No previous certificate, or no such deployment", body = ErrorBody),
        (status = 403, description = "The policy does not cover its names for this caller", body = ErrorBody),
        (status = 404, description = "No such certificate", body = ErrorBody),
    )
)]
pub async fn rollback(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalBody(body): OptionalBody<Rollback>,
) -> Result<Response, ApiError> {
    let cert = manageable(&state, &caller, &id).await?;
    let deployment = body.and_then(|r| r.deployment);
    if cert.spec.deployments.is_empty() {
        return Err(ApiError::field(
            "id",
            format!("{id} has no deployments to roll back"),
        ));
    }
    if let Some(d) = &deployment
        && !cert.spec.deployments.iter().any(|x| &x.name == d)
    {
        return Err(ApiError::field(
            "deployment",
            format!("{id} has no deployment {d:?}"),
        ));
    }
    if cert.previous.is_none() {
        return Err(ApiError::field(
            "id",
            format!("{id} has no previous certificate to put back"),
        ));
    }
    submit(
        &state,
        &CertificateWork::RollBack {
            id: id.clone(),
            deployment: deployment.clone(),
        },
    )
    .await;
    Ok(noted(
        accepted(&id, "rolling_back", None),
        &id,
        match deployment {
            Some(d) => format!("rollback of {d} asked for"),
            None => "rollback asked for".into(),
        },
    ))
}

/// Stop managing a certificate (its keys stay in the secret store; what is deployed stays
/// deployed), or withdraw a request waiting for approval.
#[utoipa::path(
    delete,
    path = "/certificates/{id}",
    tag = "certificates",
    params(("id" = String, Path, description = "The certificate's id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "The policy does not cover its names for this caller", body = ErrorBody),
        (status = 404, description = "No such certificate", body = ErrorBody),
    )
)]
pub async fn remove(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let policy = policy(&state)?;
    if let Some(request) = state.app.requests().request(&id).await?
        && request.state == RequestState::PendingApproval
    {
        if request.requester != caller.principal {
            policy
                .may_manage(&caller.principal, &request.certificate.spec.names)
                .map_err(refused)?;
        }
        state.app.requests().remove_request(&id).await?;
        return Ok(noted(
            StatusCode::NO_CONTENT.into_response(),
            &id,
            "withdrew the request".into(),
        ));
    }
    manageable(&state, &caller, &id).await?;
    state.app.certificates().remove_certificate(&id).await?;
    Ok(noted(
        StatusCode::NO_CONTENT.into_response(),
        &id,
        "stopped managing it (keys stay in the secret store)".into(),
    ))
}
