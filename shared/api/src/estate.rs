//! The estate as the CLI shows it: `GET /inventory` (JSON, or CSV for spreadsheets),
//! `GET /findings`, `POST /findings/{key}/ack`, `GET /metrics` (Prometheus), `GET /healthz`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use certpilot_core::model::finding::Severity;
use certpilot_core::ports::{InventoryEntry, InventoryQuery, StoreError};
use certpilot_core::services::metrics::{Estate, prometheus};
use certpilot_core::{policy, rfc3339, spreadsheet_safe};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::audit::noted;
use crate::body::Body;
use crate::error::{ApiError, ErrorBody};
use crate::{ApiState, Caller, Paging};

/// One (endpoint, address) of the inventory: what it served at its latest scan.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InventoryItem {
    /// The target.
    pub target: String,
    /// The address scanned (empty when the name did not resolve).
    pub address: String,
    /// `ok`, `warning`, `error`.
    pub status: String,
    /// Why the scan failed, when it did.
    pub error: Option<String>,
    /// The served certificate's subject.
    pub subject: Option<String>,
    /// Its issuer.
    pub issuer: Option<String>,
    /// Its names.
    pub sans: Vec<String>,
    /// Its serial.
    pub serial: Option<String>,
    /// When it expires (RFC 3339).
    pub not_after: Option<String>,
    /// Whole days left from now (negative once expired).
    pub days_remaining: Option<i64>,
    /// Its SHA-256 fingerprint.
    pub fingerprint_sha256: Option<String>,
    /// Whether the chain validated.
    pub trusted: Option<bool>,
    /// What is wrong with it (`expired`, `name_mismatch`…).
    pub problems: Vec<String>,
    /// The endpoint's tags.
    pub tags: BTreeMap<String, String>,
    /// Whether the target is registered (rather than seen in passing).
    pub registered: bool,
    /// When it was scanned (RFC 3339).
    pub scanned_at: String,
    /// When what it serves last changed (RFC 3339).
    pub last_changed: String,
}

/// One page of the inventory.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InventoryPage {
    /// By target, then address.
    pub items: Vec<InventoryItem>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The filters of `GET /inventory`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct InventoryFilter {
    /// Only certificates expiring within this many days (failed scans left out).
    pub expiring_within_days: Option<u32>,
    /// Only with this tag (`owner=payments`).
    pub tag: Option<String>,
    /// At most this many (1 to 1000, default 100).
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

pub(crate) fn item(e: &InventoryEntry, now: time::OffsetDateTime) -> InventoryItem {
    let o = &e.observation;
    let cert = o.certificate.as_ref();
    InventoryItem {
        target: o.target.clone(),
        address: o.address.clone().unwrap_or_default(),
        status: serde_json::to_value(o.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        error: o
            .error
            .as_ref()
            .map(|e| format!("{}: {}", e.kind, e.message)),
        subject: cert.map(|c| c.subject.clone()),
        issuer: cert.map(|c| c.issuer.clone()),
        sans: cert.map(|c| c.sans.clone()).unwrap_or_default(),
        serial: cert.map(|c| c.serial.clone()),
        not_after: cert.map(|c| rfc3339(c.not_after)),
        days_remaining: cert.map(|c| policy::days_remaining(c.not_after, now)),
        fingerprint_sha256: cert.map(|c| c.fingerprint_sha256.clone()),
        trusted: o.validation.as_ref().map(|v| v.trusted),
        problems: o
            .validation
            .as_ref()
            .map(|v| v.problems.iter().map(|p| p.as_str().to_owned()).collect())
            .unwrap_or_default(),
        tags: e.tags.clone(),
        registered: e.registered,
        scanned_at: rfc3339(o.scanned_at),
        last_changed: rfc3339(e.last_changed),
    }
}

/// The cursor key of a row: its target and address key.
fn entry_key(e: &InventoryEntry) -> String {
    format!("{}\n{}", e.observation.target, e.observation.address_key())
}

const CSV_HEADER: [&str; 17] = [
    "target",
    "address",
    "status",
    "error",
    "subject",
    "issuer",
    "sans",
    "serial",
    "not_after",
    "days_remaining",
    "fingerprint_sha256",
    "trusted",
    "problems",
    "tags",
    "registered",
    "scanned_at",
    "last_changed",
];

pub(crate) fn csv(items: &[InventoryItem]) -> Result<String, ApiError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let fail = |e: csv::Error| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("CSV: {e}"),
        )
    };
    w.write_record(CSV_HEADER).map_err(fail)?;
    for i in items {
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        let row = [
            i.target.clone(),
            i.address.clone(),
            i.status.clone(),
            opt(&i.error),
            opt(&i.subject),
            opt(&i.issuer),
            i.sans.join(" "),
            opt(&i.serial),
            opt(&i.not_after),
            i.days_remaining.map(|d| d.to_string()).unwrap_or_default(),
            opt(&i.fingerprint_sha256),
            i.trusted.map(|t| t.to_string()).unwrap_or_default(),
            i.problems.join(" "),
            i.tags
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
            i.registered.to_string(),
            i.scanned_at.clone(),
            i.last_changed.clone(),
        ];
        // Subjects, issuers and errors are a scanned server's words: never formulas.
        w.write_record(row.iter().map(|c| spreadsheet_safe(c).into_owned()))
            .map_err(fail)?;
    }
    let bytes = w.into_inner().map_err(|e| fail(e.into_error().into()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The latest observation of every endpoint and address, by target; CSV with
/// `Accept: text/csv`.
#[utoipa::path(
    get,
    path = "/inventory",
    tag = "estate",
    params(InventoryFilter),
    responses(
        (status = 200, description = "A page of the inventory (CSV with Accept: text/csv; the next cursor then in X-Next-Cursor)",
         content((InventoryPage = "application/json"), (String = "text/csv"))),
        (status = 400, description = "A wrong filter", body = ErrorBody),
    )
)]
pub async fn inventory(
    State(state): State<ApiState>,
    _caller: Caller,
    headers: HeaderMap,
    Query(q): Query<InventoryFilter>,
) -> Result<Response, ApiError> {
    let paging = Paging::new(q.limit, q.cursor)?;
    let tag = match &q.tag {
        Some(t) => Some(certpilot_core::parse_tag(t).map_err(|e| ApiError::field("tag", e))?),
        None => None,
    };
    let now = state.app.clock().now();
    let expiring_before = q
        .expiring_within_days
        .map(|d| now + time::Duration::days(i64::from(d)));
    // Pages are read from the store in (target, address) order; a tag filter reads on until
    // the page is full.
    let mut after = paging
        .after
        .as_deref()
        .map(|c| {
            c.split_once('\n')
                .map(|(t, a)| (t.to_owned(), a.to_owned()))
                .ok_or_else(|| ApiError::field("cursor", "not a cursor this API gave"))
        })
        .transpose()?;
    let mut kept: Vec<(String, InventoryEntry)> = Vec::new();
    loop {
        let want = paging.limit + 1;
        let page = state
            .app
            .store()
            .inventory(&InventoryQuery {
                expiring_before,
                after: after.clone(),
                limit: Some(want),
            })
            .await?;
        let full = page.len() == want;
        after = page.last().map(|e| {
            (
                e.observation.target.clone(),
                e.observation.address_key().to_owned(),
            )
        });
        kept.extend(
            page.into_iter()
                .filter(|e| tag.as_ref().is_none_or(|(k, v)| e.tags.get(k) == Some(v)))
                .map(|e| (entry_key(&e), e)),
        );
        if kept.len() > paging.limit || !full {
            break;
        }
    }
    let more = kept.len() > paging.limit;
    kept.truncate(paging.limit);
    let next_cursor = more
        .then(|| kept.last().map(|(k, _)| Paging::cursor(k)))
        .flatten();
    let items: Vec<InventoryItem> = kept.iter().map(|(_, e)| item(e, now)).collect();
    let wants_csv = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/csv"));
    if wants_csv {
        let mut res = csv(&items)?.into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/csv; charset=utf-8"),
        );
        if let Some(c) = next_cursor.and_then(|c| HeaderValue::from_str(&c).ok()) {
            res.headers_mut().insert("x-next-cursor", c);
        }
        return Ok(res);
    }
    Ok(Json(InventoryPage { items, next_cursor }).into_response())
}

/// The filters of `GET /findings`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FindingsFilter {
    /// Only this severe or worse: `info`, `warning`, `critical`.
    pub severity: Option<String>,
    /// Only with this owner tag.
    pub owner: Option<String>,
    /// At most this many (1 to 1000, default 100).
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// One page of findings.
#[derive(Debug, Serialize, ToSchema)]
pub struct FindingsPage {
    /// Open and acknowledged findings, by key, as `certpilot findings --format json`.
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<serde_json::Value>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The open (and acknowledged) findings.
#[utoipa::path(
    get,
    path = "/findings",
    tag = "estate",
    params(FindingsFilter),
    responses(
        (status = 200, description = "A page of findings", body = FindingsPage),
        (status = 400, description = "A wrong filter", body = ErrorBody),
    )
)]
pub async fn findings(
    State(state): State<ApiState>,
    _caller: Caller,
    Query(q): Query<FindingsFilter>,
) -> Result<Json<FindingsPage>, ApiError> {
    let paging = Paging::new(q.limit, q.cursor)?;
    let min = match q.severity.as_deref() {
        None | Some("info") => Severity::Info,
        Some("warning") => Severity::Warning,
        Some("critical") => Severity::Critical,
        Some(other) => {
            return Err(ApiError::field(
                "severity",
                format!("{other:?}: info, warning or critical"),
            ));
        }
    };
    let mut all = state.app.findings().active_findings().await?;
    all.retain(|f| {
        f.severity >= min
            && q.owner
                .as_ref()
                .is_none_or(|o| f.tags.get("owner") == Some(o))
    });
    all.sort_by(|a, b| a.key.cmp(&b.key));
    let (page, next_cursor) = paging.page(all, |f| f.key.clone());
    Ok(Json(FindingsPage {
        items: page.iter().map(|f| f.public_json()).collect(),
        next_cursor,
    }))
}

/// `POST /findings/{key}/ack`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Acknowledgement {
    /// Why, for whoever reads it later.
    pub reason: String,
    /// Until when (RFC 3339, in the future); it reopens then if still true.
    pub until: String,
}

/// Acknowledge a finding: no reminders until `until`; it escalates and reopens as usual.
#[utoipa::path(
    post,
    path = "/findings/{key}/ack",
    tag = "estate",
    params(("key" = String, Path, description = "The finding's key")),
    request_body = Acknowledgement,
    responses(
        (status = 200, description = "Acknowledged", body = Object),
        (status = 400, description = "No reason, or a date not in the future", body = ErrorBody),
        (status = 404, description = "No such finding", body = ErrorBody),
    )
)]
pub async fn ack(
    State(state): State<ApiState>,
    _caller: Caller,
    Path(key): Path<String>,
    Body(body): Body<Acknowledgement>,
) -> Result<Response, ApiError> {
    if body.reason.trim().is_empty() {
        return Err(ApiError::field(
            "reason",
            "say why, for whoever reads it later",
        ));
    }
    let until =
        time::OffsetDateTime::parse(&body.until, &time::format_description::well_known::Rfc3339)
            .map_err(|_| {
                ApiError::field("until", "an RFC 3339 time such as 2026-12-31T18:00:00Z")
            })?;
    if until <= state.app.clock().now() {
        return Err(ApiError::field("until", "that is in the past"));
    }
    let f = state
        .app
        .findings_service()
        .acknowledge(&key, until, body.reason.trim())
        .await
        .map_err(|e| match e {
            StoreError::NotFound { .. } => ApiError::not_found(format!("finding {key:?}")),
            e => e.into(),
        })?;
    Ok(noted(
        Json(f.public_json()).into_response(),
        &key,
        format!(
            "acknowledged until {}: {}",
            rfc3339(until),
            body.reason.trim()
        ),
    ))
}

/// The estate in the Prometheus text exposition (ssl_exporter's metric names).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "estate",
    responses((status = 200, description = "Prometheus text exposition 0.0.4", body = String, content_type = "text/plain"))
)]
pub async fn metrics(State(state): State<ApiState>, _caller: Caller) -> Result<Response, ApiError> {
    let inventory = state
        .app
        .store()
        .inventory(&InventoryQuery::default())
        .await?;
    let certificates = state.app.certificates().certificates().await?;
    let findings = state.app.findings().active_findings().await?;
    let text = prometheus(&Estate {
        inventory: &inventory,
        certificates: &certificates,
        findings: &findings,
        now: state.app.clock().now(),
    });
    let mut res = text.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(res)
}

/// Whether the API and its store answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
}

/// Liveness and the store's reachability (no authentication needed, nothing of the estate).
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "estate",
    responses(
        (status = 200, description = "Serving", body = Health),
        (status = 503, description = "The store does not answer", body = ErrorBody),
    )
)]
pub async fn healthz(State(state): State<ApiState>) -> Result<Json<Health>, ApiError> {
    // Any store failure is "not serving": a load balancer should send traffic elsewhere.
    state
        .app
        .certificates()
        .certificate("healthz")
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("the store does not answer: {e}"),
            )
        })?;
    Ok(Json(Health {
        status: "ok".into(),
    }))
}
