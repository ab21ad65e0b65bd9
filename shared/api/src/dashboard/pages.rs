//! The pages. Each reads what it shows through the same services the API uses, and each
//! form's action calls the API's own handler, so the dashboard can do nothing the API would
//! refuse (the request policy, the address policy, the audit log all apply).

use std::collections::BTreeMap;

use axum::Form;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use certpilot_core::model::certificate::ManagedCertificate;
use certpilot_core::model::finding::{Finding, FindingState, Severity};
use certpilot_core::model::overview::{CertificateState, EndpointState, Overview, not_served};
use certpilot_core::policy::days_remaining;
use certpilot_core::ports::{InventoryEntry, InventoryQuery};
use maud::{Markup, html};
use serde::Deserialize;

use super::session::Session;
use super::view::{self, csrf, date, page, when};
use crate::body::Body;
use crate::error::ApiError;
use crate::{ApiState, Caller};

/// Rows per inventory page.
const PER_PAGE: usize = 50;

fn failed(e: &ApiError) -> Response {
    view::refusal(e.status, &e.message)
}

/// The API's answer as a page: on success, on to `then` (the audit note kept); on
/// refusal, the API's words.
fn after(result: Result<Response, ApiError>, then: &str) -> Response {
    match result {
        Ok(res) if res.status().is_success() => {
            let (mut parts, _) = res.into_parts();
            parts.status = StatusCode::SEE_OTHER;
            parts.headers.clear();
            if let Ok(v) = HeaderValue::from_str(then) {
                parts.headers.insert(header::LOCATION, v);
            }
            Response::from_parts(parts, axum::body::Body::empty())
        }
        Ok(res) => res,
        Err(e) => failed(&e),
    }
}

/// Everything the overview and inventory read. On DynamoDB this is where counters kept
/// on each write replace the reads (see the notes); on SQLite it is one pass.
async fn estate(
    state: &ApiState,
) -> Result<(Vec<InventoryEntry>, Vec<ManagedCertificate>, Vec<Finding>), ApiError> {
    let app = &state.app;
    let inventory = app.store().inventory(&InventoryQuery::default()).await?;
    let certificates = app.certificates().certificates().await?;
    let findings = app.findings().active_findings().await?;
    Ok((inventory, certificates, findings))
}

/// `GET /ui`: counts by state, open findings by severity, the expiry timeline.
pub(crate) async fn overview(
    State(state): State<ApiState>,
    Extension(session): Extension<Session>,
) -> Response {
    let (inventory, certificates, findings) = match estate(&state).await {
        Ok(e) => e,
        Err(e) => return failed(&e),
    };
    let o = Overview::of(
        &inventory,
        &certificates,
        &findings,
        state.app.clock().now(),
    );
    let tone = |s: EndpointState| match s {
        EndpointState::Healthy => "ok",
        EndpointState::Expiring => "warn",
        _ => "bad",
    };
    let body = html! {
        h2 #endpoints { "Endpoints" }
        ul.cards aria-labelledby="endpoints" {
            @for s in EndpointState::ALL {
                li.card.(tone(s)) {
                    a href=(format!("/ui/inventory?state={}", s.as_str())) {
                        span.n data-count=(s.as_str()) { (o.count(s)) }
                        span.l { (s.as_str()) }
                    }
                }
            }
            li.card.(if o.not_served > 0 { "bad" } else { "ok" }) {
                a href="/ui/certificates?state=not_served" {
                    span.n data-count="not_served" { (o.not_served) }
                    span.l { "not served (managed)" }
                }
            }
        }
        h2 #findings-heading { "Open findings" }
        ul.cards aria-labelledby="findings-heading" {
            @for (sev, tone) in [(Severity::Critical, "bad"), (Severity::Warning, "warn"), (Severity::Info, "ok")] {
                li.card.(tone) {
                    a href=(format!("/ui/findings?severity={}", sev.as_str())) {
                        span.n data-count=(format!("findings-{}", sev.as_str())) { (o.findings.get(&sev).copied().unwrap_or(0)) }
                        span.l { (sev.as_str()) }
                    }
                }
            }
        }
        h2 { "Expiry timeline" }
        p.hint { (o.certificates) " managed certificate(s); each certificate counted once, however many endpoints serve it." }
        (view::chart(&o))
    };
    page("Overview", "/ui", Some(&session), None, body)
}

/// The inventory's filters and order, as the query string carries them.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct InventoryParams {
    /// Text in the target, subject, issuer or names.
    #[serde(default)]
    q: String,
    /// `healthy`, `expiring`, `failing`, `unreachable`.
    #[serde(default)]
    state: String,
    /// `key=value`.
    #[serde(default)]
    tag: String,
    /// `target`, `state`, `days`, `issuer`.
    #[serde(default)]
    sort: String,
    /// `asc` or `desc`.
    #[serde(default)]
    dir: String,
    /// From 1.
    #[serde(default)]
    page: Option<usize>,
}

struct Row {
    entry: InventoryEntry,
    state: EndpointState,
    days: Option<i64>,
}

/// The rows `p` selects, in its order; or the filter it cannot read.
async fn rows(state: &ApiState, p: &InventoryParams) -> Result<Vec<Row>, ApiError> {
    let now = state.app.clock().now();
    let wanted = match p.state.as_str() {
        "" => None,
        s => Some(EndpointState::parse(s).ok_or_else(|| {
            ApiError::field("state", "one of healthy, expiring, failing, unreachable")
        })?),
    };
    let tag = match p.tag.trim() {
        "" => None,
        t => Some(certpilot_core::parse_tag(t).map_err(|e| ApiError::field("tag", e))?),
    };
    let needle = p.q.trim().to_lowercase();
    let inventory = state
        .app
        .store()
        .inventory(&InventoryQuery::default())
        .await?;
    let mut rows: Vec<Row> = inventory
        .into_iter()
        .map(|entry| Row {
            state: EndpointState::of(&entry, now),
            days: entry
                .observation
                .certificate
                .as_ref()
                .map(|c| days_remaining(c.not_after, now)),
            entry,
        })
        .filter(|r| wanted.is_none_or(|w| r.state == w))
        .filter(|r| {
            tag.as_ref()
                .is_none_or(|(k, v)| r.entry.tags.get(k) == Some(v))
        })
        .filter(|r| {
            if needle.is_empty() {
                return true;
            }
            let o = &r.entry.observation;
            let cert = o.certificate.as_ref();
            o.target.to_lowercase().contains(&needle)
                || cert.is_some_and(|c| {
                    c.subject.to_lowercase().contains(&needle)
                        || c.issuer.to_lowercase().contains(&needle)
                        || c.sans.iter().any(|s| s.to_lowercase().contains(&needle))
                })
        })
        .collect();
    let issuer = |r: &Row| {
        r.entry
            .observation
            .certificate
            .as_ref()
            .map(|c| c.issuer.clone())
            .unwrap_or_default()
    };
    match p.sort.as_str() {
        "" | "target" => {}
        "state" => rows.sort_by_key(|r| r.state),
        "days" => rows.sort_by_key(|r| r.days.unwrap_or(i64::MIN)),
        "issuer" => rows.sort_by_key(issuer),
        other => {
            return Err(ApiError::field(
                "sort",
                format!("{other:?}: one of target, state, days, issuer"),
            ));
        }
    }
    match p.dir.as_str() {
        "" | "asc" => {}
        "desc" => rows.reverse(),
        other => return Err(ApiError::field("dir", format!("{other:?}: asc or desc"))),
    }
    Ok(rows)
}

/// The query string of `p` with `changes` applied (a sort link, a page link).
fn link(p: &InventoryParams, changes: &[(&str, String)]) -> String {
    let mut pairs: BTreeMap<&str, String> = BTreeMap::new();
    for (k, v) in [
        ("q", p.q.clone()),
        ("state", p.state.clone()),
        ("tag", p.tag.clone()),
        ("sort", p.sort.clone()),
        ("dir", p.dir.clone()),
    ] {
        if !v.is_empty() {
            pairs.insert(k, v);
        }
    }
    for (k, v) in changes {
        if v.is_empty() {
            pairs.remove(k);
        } else {
            pairs.insert(k, v.clone());
        }
    }
    serde_urlencoded::to_string(&pairs).unwrap_or_default()
}

/// `GET /ui/inventory`: every endpoint and address, filtered, sorted, a page at a time.
pub(crate) async fn inventory(
    State(state): State<ApiState>,
    Extension(session): Extension<Session>,
    Query(p): Query<InventoryParams>,
) -> Response {
    let rows = match rows(&state, &p).await {
        Ok(r) => r,
        Err(e) => return failed(&e),
    };
    let pages = rows.len().div_ceil(PER_PAGE).max(1);
    let current = p.page.unwrap_or(1).clamp(1, pages);
    let shown = rows.iter().skip((current - 1) * PER_PAGE).take(PER_PAGE);
    let sort_link = |key: &str, label: &str| {
        let active = p.sort == key || (p.sort.is_empty() && key == "target");
        let desc = p.dir == "desc";
        let next_dir = if active && !desc { "desc" } else { "asc" };
        let aria = match (active, desc) {
            (true, false) => "ascending",
            (true, true) => "descending",
            _ => "none",
        };
        html! {
            th scope="col" aria-sort=(aria) {
                a href=(format!("/ui/inventory?{}", link(&p, &[("sort", key.to_owned()), ("dir", next_dir.to_owned()), ("page", String::new())]))) {
                    (label)
                    @if active { span aria-hidden="true" { @if desc { " ▼" } @else { " ▲" } } }
                }
            }
        }
    };
    let body = html! {
        form.filters method="get" action="/ui/inventory" role="search" {
            div {
                label for="q" { "Text" }
                input #q type="search" name="q" value=(p.q) placeholder="name, subject, issuer";
            }
            div {
                label for="state" { "State" }
                select #state name="state" {
                    option value="" selected[p.state.is_empty()] { "any" }
                    @for s in EndpointState::ALL {
                        option value=(s.as_str()) selected[p.state == s.as_str()] { (s.as_str()) }
                    }
                }
            }
            div {
                label for="tag" { "Tag" }
                input #tag type="text" name="tag" value=(p.tag) placeholder="owner=payments";
            }
            @if !p.sort.is_empty() { input type="hidden" name="sort" value=(p.sort); }
            @if !p.dir.is_empty() { input type="hidden" name="dir" value=(p.dir); }
            button type="submit" { "Filter" }
            a href=(format!("/ui/inventory.csv?{}", link(&p, &[]))) download="inventory.csv" { "Download CSV" }
        }
        p #count role="status" { (rows.len()) " row(s)" @if pages > 1 { ", page " (current) " of " (pages) } }
        div.table-wrap tabindex="0" role="region" aria-label="Inventory table" {
            table #inventory {
                caption.visually-hidden { "Endpoints and addresses, what each serves" }
                thead {
                    tr {
                        (sort_link("target", "Endpoint"))
                        th scope="col" class="hide-narrow" { "Address" }
                        (sort_link("state", "State"))
                        (sort_link("days", "Days left"))
                        (sort_link("issuer", "Issuer"))
                        th scope="col" class="hide-narrow" { "Subject" }
                        th scope="col" class="hide-narrow" { "Tags" }
                    }
                }
                tbody {
                    @for r in shown {
                        @let o = &r.entry.observation;
                        @let cert = o.certificate.as_ref();
                        tr {
                            td { (o.target) }
                            td.hide-narrow.mono { (o.address.clone().unwrap_or_default()) }
                            td { span.state.(r.state.as_str()) { (r.state.as_str()) } }
                            td.num { @if let Some(d) = r.days { (d) } @else { "—" } }
                            td { @if let Some(c) = cert { (c.issuer) } @else if let Some(e) = &o.error { (e.kind.as_str()) ": " (e.message) } }
                            td.hide-narrow { @if let Some(c) = cert { (c.subject) } }
                            td.hide-narrow {
                                @for (k, v) in &r.entry.tags { span.mono { (k) "=" (v) } " " }
                            }
                        }
                    }
                }
            }
        }
        @if pages > 1 {
            nav.pager aria-label="Pages" {
                @if current > 1 {
                    a href=(format!("/ui/inventory?{}", link(&p, &[("page", (current - 1).to_string())]))) rel="prev" { "← Previous" }
                }
                span { "Page " (current) " of " (pages) }
                @if current < pages {
                    a href=(format!("/ui/inventory?{}", link(&p, &[("page", (current + 1).to_string())]))) rel="next" { "Next →" }
                }
            }
        }
    };
    page("Inventory", "/ui/inventory", Some(&session), None, body)
}

/// `GET /ui/inventory.csv`: what the page shows, every page, as the API's CSV.
pub(crate) async fn inventory_csv(
    State(state): State<ApiState>,
    Query(p): Query<InventoryParams>,
) -> Response {
    let rows = match rows(&state, &p).await {
        Ok(r) => r,
        Err(e) => return failed(&e),
    };
    let now = state.app.clock().now();
    let items: Vec<_> = rows
        .iter()
        .map(|r| crate::estate::item(&r.entry, now))
        .collect();
    match crate::estate::csv(&items) {
        Ok(text) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"inventory.csv\"",
                ),
            ],
            text,
        )
            .into_response(),
        Err(e) => failed(&e),
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct CertificateParams {
    #[serde(default)]
    state: String,
}

/// `GET /ui/certificates`: every managed certificate and where it stands.
pub(crate) async fn certificates(
    State(state): State<ApiState>,
    Extension(session): Extension<Session>,
    Query(p): Query<CertificateParams>,
) -> Response {
    let now = state.app.clock().now();
    let mut certs = match state.app.certificates().certificates().await {
        Ok(c) => c,
        Err(e) => return failed(&e.into()),
    };
    let pending = state
        .app
        .requests()
        .pending_requests()
        .await
        .unwrap_or_default();
    if p.state == "not_served" {
        // Exactly what the overview counted.
        certs.retain(not_served);
    }
    let body = html! {
        @if !pending.is_empty() {
            h2 { "Waiting for approval" }
            ul {
                @for r in &pending {
                    li { a href=(format!("/ui/certificates/{}", view::query_escape(&r.id))) { (r.id) } " — asked by " (r.requester) " on " (when(r.requested_at)) }
                }
            }
        }
        div.table-wrap tabindex="0" role="region" aria-label="Certificates table" {
            table #certificates {
                caption.visually-hidden { "Managed certificates" }
                thead { tr { th scope="col" { "Certificate" } th scope="col" { "State" } th scope="col" { "Names" } th.num scope="col" { "Days left" } th scope="col" class="hide-narrow" { "Deployments" } } }
                tbody {
                    @for c in &certs {
                        @let s = CertificateState::of(c, now).as_str();
                        tr {
                            td { a href=(format!("/ui/certificates/{}", view::query_escape(&c.id))) { (c.id) } }
                            td { span.state.(s) { (s) } }
                            td { (c.spec.names.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")) }
                            td.num { @if let Some(cur) = &c.current { (days_remaining(cur.not_after, now)) } @else { "—" } }
                            td.hide-narrow { (c.spec.deployments.len()) }
                        }
                    }
                }
            }
        }
    };
    page(
        "Certificates",
        "/ui/certificates",
        Some(&session),
        None,
        body,
    )
}

/// `GET /ui/certificates/{id}`: state, names, issuer, what was issued, each deployment and
/// what its endpoints serve, open findings, and the actions the policy allows the caller.
pub(crate) async fn certificate(
    State(state): State<ApiState>,
    Extension(session): Extension<Session>,
    caller: Caller,
    Path(id): Path<String>,
) -> Response {
    let now = state.app.clock().now();
    let request = state.app.requests().request(&id).await.ok().flatten();
    let cert = match state.app.certificates().certificate(&id).await {
        Ok(Some(c)) => c,
        Ok(None) => match &request {
            Some(r) => r.certificate.clone(),
            None => return failed(&ApiError::not_found(format!("certificate {id:?}"))),
        },
        Err(e) => return failed(&e.into()),
    };
    let stored = request
        .as_ref()
        .is_none_or(|r| r.state == certpilot_core::model::request::RequestState::Approved);
    let may_manage = stored
        && crate::requests::manageable(&state, &caller, &id)
            .await
            .is_ok();
    let inventory = state
        .app
        .store()
        .inventory(&InventoryQuery::default())
        .await
        .unwrap_or_default();
    let findings: Vec<Finding> = state
        .app
        .findings()
        .active_findings()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f.subject.to_string().contains(&id) || f.fact.contains(&id))
        .collect();
    let s = if stored {
        CertificateState::of(&cert, now).as_str()
    } else {
        request.as_ref().map_or("pending", |r| r.state.as_str())
    };
    let steps: [(&str, bool); 4] = [
        ("requested", true),
        ("issued", cert.current.is_some()),
        (
            "deployed",
            cert.current.is_some()
                && (cert.spec.deployments.is_empty() || !cert.deployments.is_empty()),
        ),
        ("verified", s == "verified"),
    ];
    let first_open = steps.iter().position(|(_, done)| !done);
    let settled = matches!(s, "verified" | "not_serving" | "expired" | "rejected");
    let current_fp = cert
        .current
        .as_ref()
        .map(|c| c.fingerprint.to_ascii_lowercase());
    let body = html! {
        p { "State: " span.state.(s) #state { (s) } }
        ol.steps aria-label="Progress" {
            @for (i, (label, done)) in steps.iter().enumerate() {
                @if *done {
                    li.done { (label) span.visually-hidden { " (done)" } }
                } @else if Some(i) == first_open && !settled {
                    li.now aria-current="step" { (label) span.visually-hidden { " (in progress)" } }
                } @else {
                    li { (label) }
                }
            }
        }
        @if let Some(r) = &request {
            @if !stored {
                p.notice { "Requested by " (r.requester) " on " (when(r.requested_at)) "; " (r.state.as_str()) @if !r.approvers.is_empty() { " (approvers: " (r.approvers.join(", ")) ")" } }
            }
        }
        dl.facts {
            dt { "Names" } dd { (cert.spec.names.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")) }
            dt { "Issuer" } dd.mono { @if let Some(acm) = &cert.spec.acm { "ACM (" (acm.region) ")" } @else { (cert.spec.issuer.directory) } }
            dt { "Profile" } dd { (cert.spec.issuer.profile.clone().unwrap_or_else(|| "default".into())) }
            dt { "Key" } dd { (cert.spec.key_type.as_str()) }
            dt { "Tags" } dd { @for (k, v) in &cert.spec.tags { span.mono { (k) "=" (v) } " " } }
        }
        h2 { "Issued" }
        @if cert.current.is_none() && cert.previous.is_none() {
            p { "Nothing issued yet." }
        } @else {
            div.table-wrap tabindex="0" role="region" aria-label="Issued certificates table" {
                table #issued {
                    thead { tr { th scope="col" { "" } th scope="col" { "Issued" } th scope="col" { "Expires" } th.num scope="col" { "Days left" } th scope="col" class="hide-narrow" { "Fingerprint (SHA-256)" } } }
                    tbody {
                        @for (label, i) in [("current", &cert.current), ("previous", &cert.previous)] {
                            @if let Some(i) = i {
                                tr {
                                    th scope="row" { (label) }
                                    td { (when(i.issued_at)) }
                                    td { (date(i.not_after)) }
                                    td.num { (days_remaining(i.not_after, now)) }
                                    td.hide-narrow.mono { (i.fingerprint) }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Deployments" }
        @if cert.spec.deployments.is_empty() { p { "None: the certificate is issued and stored only." } }
        @for d in &cert.spec.deployments {
            @let record = cert.deployment_record(&d.name);
            section aria-label=(format!("deployment {}", d.name)) {
                h3 { (d.name) " " span.hint { "(" (d.kind) ")" } }
                @match record {
                    Some(r) => {
                        p { span.state.(r.state.status.as_str()) { (r.state.status.as_str()) } " since " (when(r.at)) @if let Some(detail) = &r.state.detail { " — " (detail) } }
                        @if !r.units.is_empty() {
                            ul { @for u in &r.units { li { (u.name) ": " span.state.(u.state.status.as_str()) { (u.state.status.as_str()) } @if let Some(detail) = &u.state.detail { " — " (detail) } } } }
                        }
                    }
                    None => { p { "Not deployed yet." } }
                }
                // A deployment without endpoints of its own is proven at the certificate's.
                @let endpoints = if d.endpoints.is_empty() { &cert.spec.endpoints } else { &d.endpoints }.iter().map(|e| e.to_string()).collect::<Vec<_>>();
                @if !endpoints.is_empty() {
                    div.table-wrap tabindex="0" role="region" aria-label="What each endpoint serves" {
                        table {
                            caption { "What each endpoint serves (latest scan)" }
                            thead { tr { th scope="col" { "Endpoint" } th scope="col" { "Address" } th scope="col" { "Serves" } th scope="col" { "Since" } } }
                            tbody {
                                @for e in &endpoints {
                                    @let rows: Vec<&InventoryEntry> = inventory.iter().filter(|i| &i.observation.target == e).collect();
                                    @if rows.is_empty() {
                                        tr { td { (e) } td {} td { "not scanned yet" } td {} }
                                    }
                                    @for i in rows {
                                        @let served = i.observation.certificate.as_ref().map(|c| c.fingerprint_sha256.to_ascii_lowercase());
                                        tr {
                                            td { (e) }
                                            td.mono { (i.observation.address.clone().unwrap_or_default()) }
                                            td {
                                                @match (&served, &current_fp) {
                                                    (Some(s), Some(c)) if s == c => { span.state.verified { "the current certificate" } }
                                                    (Some(s), _) => { span.state.not_serving { "another certificate" } " " span.mono { (s[..16.min(s.len())]) "…" } }
                                                    (None, _) => {
                                                        span.state.unreachable { "nothing" }
                                                        @if let Some(e) = &i.observation.error { " — " (e.kind.as_str()) ": " (e.message) }
                                                    }
                                                }
                                            }
                                            td { @if let Some(t) = i.cert_first_seen { (when(t)) } }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Open findings" }
        @if findings.is_empty() { p { "None." } }
        ul { @for f in &findings { li { span.state.(f.severity.as_str()) { (f.severity.as_str()) } " " (f.summary) " — " (f.next_step) } } }
        @if may_manage {
            h2 { "Actions" }
            div.actions {
                form method="post" action=(format!("/ui/certificates/{}/renew", view::query_escape(&id))) {
                    (csrf(&session))
                    button type="submit" { "Renew now" }
                }
                @if cert.previous.is_some() {
                    form method="post" action=(format!("/ui/certificates/{}/rollback", view::query_escape(&id))) {
                        (csrf(&session))
                        button.secondary type="submit" { "Roll back to the previous certificate" }
                    }
                }
            }
        }
    };
    page(
        &format!("Certificate {id}"),
        "/ui/certificates",
        Some(&session),
        (!settled).then_some(5),
        body,
    )
}

/// A form with nothing but its CSRF token.
#[derive(Debug, Deserialize)]
pub(crate) struct Bare {
    #[allow(dead_code)]
    csrf: String,
}

/// `POST /ui/certificates/{id}/renew`.
pub(crate) async fn renew(
    state: State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Form(_): Form<Bare>,
) -> Response {
    let then = format!("/ui/certificates/{}", view::query_escape(&id));
    after(crate::requests::renew(state, caller, Path(id)).await, &then)
}

/// `POST /ui/certificates/{id}/rollback`.
pub(crate) async fn rollback(
    state: State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Form(_): Form<Bare>,
) -> Response {
    let then = format!("/ui/certificates/{}", view::query_escape(&id));
    after(
        crate::requests::rollback(state, caller, Path(id), crate::body::OptionalBody(None)).await,
        &then,
    )
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct FindingParams {
    #[serde(default)]
    severity: String,
}

/// `GET /ui/findings`: open and acknowledged findings, worst first, each with a form to
/// acknowledge it.
pub(crate) async fn findings(
    State(state): State<ApiState>,
    Extension(session): Extension<Session>,
    Query(p): Query<FindingParams>,
) -> Response {
    let mut findings = match state.app.findings().active_findings().await {
        Ok(f) => f,
        Err(e) => return failed(&e.into()),
    };
    if !p.severity.is_empty() {
        findings.retain(|f| f.severity.as_str() == p.severity);
    }
    findings.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.key.cmp(&b.key)));
    let tomorrow = date(state.app.clock().now() + time::Duration::days(7));
    let body = html! {
        @if findings.is_empty() { p { "No open findings." } }
        @for (n, f) in findings.iter().enumerate() {
            section.card aria-labelledby=(format!("f{n}")) {
                h2 #(format!("f{n}")) { span.state.(f.severity.as_str()) { (f.severity.as_str()) } " " (f.summary) }
                p { (f.detail) }
                p { strong { "What to do: " } (f.next_step) }
                dl.facts {
                    dt { "Subject" } dd { (f.subject.to_string()) }
                    dt { "Opened" } dd { (when(f.opened_at)) }
                    @if let Some(o) = &f.owner { dt { "Owner" } dd { (o) } }
                    dt { "State" } dd { span.state.(f.state.as_str()) { (f.state.as_str()) } }
                }
                @if f.state == FindingState::Acknowledged {
                    p.notice {
                        "Acknowledged"
                        @if let Some(reason) = &f.acknowledged_reason { ": " (reason) }
                        @if let Some(until) = f.acknowledged_until { " until " (when(until)) }
                    }
                } @else {
                    details {
                        summary { "Acknowledge" }
                        form method="post" action=(format!("/ui/findings/{}/ack", view::query_escape(&f.key))) {
                            (csrf(&session))
                            div.field {
                                label for=(format!("reason{n}")) { "Reason" }
                                input #(format!("reason{n}")) type="text" name="reason" required maxlength="500";
                                p.hint { "Say why, for whoever reads it later." }
                            }
                            div.field {
                                label for=(format!("until{n}")) { "Until" }
                                input #(format!("until{n}")) type="date" name="until" required value=(tomorrow);
                            }
                            button type="submit" { "Acknowledge" }
                        }
                    }
                }
            }
        }
    };
    page("Findings", "/ui/findings", Some(&session), None, body)
}

/// The acknowledgement form.
#[derive(Debug, Deserialize)]
pub(crate) struct AckForm {
    reason: String,
    /// `YYYY-MM-DD` (the end of that day, UTC) or RFC 3339.
    until: String,
    #[allow(dead_code)]
    csrf: String,
}

/// `POST /ui/findings/{key}/ack`.
pub(crate) async fn ack(
    state: State<ApiState>,
    caller: Caller,
    Path(key): Path<String>,
    Form(form): Form<AckForm>,
) -> Response {
    let until = if form.until.len() == 10 {
        format!("{}T23:59:59Z", form.until)
    } else {
        form.until
    };
    after(
        crate::estate::ack(
            state,
            caller,
            Path(key),
            Body(crate::estate::Acknowledgement {
                reason: form.reason,
                until,
            }),
        )
        .await,
        "/ui/findings",
    )
}

/// `GET /ui/request`: the request form, with the policy's choices.
pub(crate) async fn request_form(
    State(state): State<ApiState>,
    Extension(session): Extension<Session>,
) -> Response {
    request_page(&state, &session, None, &RequestForm::default())
}

/// The request form's fields.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RequestForm {
    #[serde(default)]
    names: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    issuer: String,
    #[serde(default)]
    challenge: String,
    #[serde(default)]
    key_type: String,
    #[serde(default)]
    owner: String,
    /// Endpoints to watch, one per line.
    #[serde(default)]
    endpoints: String,
    /// Deployments as in `--deploy-file` (YAML or JSON list).
    #[serde(default)]
    deployments: String,
    #[serde(default)]
    #[allow(dead_code)]
    csrf: String,
}

fn request_page(
    state: &ApiState,
    session: &Session,
    error: Option<&str>,
    f: &RequestForm,
) -> Response {
    let Some(policy) = &state.policy else {
        return page(
            "Request a certificate",
            "/ui/request",
            Some(session),
            None,
            html! { p { "This server takes no requests: it was started without a request policy (certpilot serve --policy FILE)." } },
        );
    };
    let select = |name: &str, label: &str, choices: Vec<String>, chosen: &str| -> Markup {
        html! {
            div.field {
                label for=(name) { (label) }
                select #(name) name=(name) required {
                    @for c in &choices {
                        option value=(c) selected[c == chosen] { (c) }
                    }
                }
            }
        }
    };
    let body = html! {
        @if let Some(e) = error { p.error role="alert" #error { (e) } }
        form method="post" action="/ui/request" {
            (csrf(session))
            div.field {
                label for="names" { "Names" }
                textarea #names name="names" rows="3" required aria-describedby="names-hint" { (f.names) }
                p.hint #names-hint { "One DNS name or IP address per line (or separated by commas); the first is the common name." }
            }
            div.field {
                label for="id" { "Id (optional)" }
                input #id type="text" name="id" value=(f.id) aria-describedby="id-hint";
                p.hint #id-hint { "Made from the first name when empty." }
            }
            (select("issuer", "Issuer", policy.issuers.keys().cloned().collect(), &f.issuer))
            (select("challenge", "Validation", policy.challenges.keys().cloned().collect(), &f.challenge))
            (select("key_type", "Key", ["ecdsa-p256", "ecdsa-p384", "rsa2048", "rsa3072", "rsa4096"].map(String::from).to_vec(), &f.key_type))
            div.field {
                label for="owner" { "Owner (optional)" }
                input #owner type="text" name="owner" value=(f.owner) aria-describedby="owner-hint";
                p.hint #owner-hint { "The team told about this certificate (the owner tag)." }
            }
            div.field {
                label for="endpoints" { "Endpoints to watch (optional)" }
                textarea #endpoints name="endpoints" rows="2" aria-describedby="endpoints-hint" { (f.endpoints) }
                p.hint #endpoints-hint { "host:port, one per line: scanned, and proven to serve each new certificate." }
            }
            div.field {
                label for="deployments" { "Deployments (optional)" }
                textarea #deployments name="deployments" rows="6" aria-describedby="deployments-hint" { (f.deployments) }
                p.hint #deployments-hint { "Where to install it, as a YAML or JSON list like a --deploy-file: - {name: web, kind: files, settings: {dir: /etc/ssl/web}}" }
            }
            button type="submit" { "Request" }
        }
    };
    page(
        "Request a certificate",
        "/ui/request",
        Some(session),
        None,
        body,
    )
}

/// The items of a field people fill one per line (or separated by commas).
fn items(text: &str) -> Vec<String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `POST /ui/request`: `POST /certificates`, then the certificate's page (its progress).
pub(crate) async fn request(
    State(state): State<ApiState>,
    Extension(session): Extension<Session>,
    caller: Caller,
    Form(form): Form<RequestForm>,
) -> Response {
    let names = items(&form.names);
    let deployments: Vec<serde_json::Value> = match form.deployments.trim() {
        "" => vec![],
        text => match yaml_serde::from_str(text) {
            Ok(d) => d,
            Err(e) => {
                let mut res = request_page(
                    &state,
                    &session,
                    Some(&format!(
                        "deployments: not a YAML or JSON list of deployments: {e}"
                    )),
                    &form,
                );
                *res.status_mut() = StatusCode::BAD_REQUEST;
                return res;
            }
        },
    };
    let endpoints = items(&form.endpoints);
    let mut tags = BTreeMap::new();
    if !form.owner.trim().is_empty() {
        tags.insert("owner".to_owned(), form.owner.trim().to_owned());
    }
    let body = crate::requests::NewCertificate {
        id: Some(form.id.trim().to_owned()).filter(|i| !i.is_empty()),
        names,
        issuer: form.issuer.clone(),
        challenge: form.challenge.clone(),
        key_type: Some(form.key_type.clone()).filter(|k| !k.is_empty()),
        profile: None,
        deployments,
        endpoints,
        tags,
        renew_days_before: None,
    };
    match crate::requests::create(State(state.clone()), caller, Body(body)).await {
        Ok(res) if res.status().is_success() => {
            let (parts, body) = res.into_parts();
            let bytes = axum::body::to_bytes(body, 64 * 1024)
                .await
                .unwrap_or_default();
            let id = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["id"].as_str().map(str::to_owned))
                .unwrap_or_default();
            after(
                Ok(Response::from_parts(parts, axum::body::Body::empty())),
                &format!("/ui/certificates/{}", view::query_escape(&id)),
            )
        }
        Ok(res) => res,
        Err(e) => {
            let mut res = request_page(&state, &session, Some(&e.message), &form);
            *res.status_mut() = e.status;
            res
        }
    }
}

/// `GET /ui/login`: sign in with an API token.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct LoginParams {
    #[serde(default)]
    next: String,
}

fn login_page(state: &ApiState, next: &str, error: Option<&str>) -> Response {
    let body = html! {
        @if let Some(e) = error { p.error role="alert" #error { (e) } }
        @if state.dashboard.sign_in.is_some() {
            form method="post" action="/ui/login" {
                input type="hidden" name="next" value=(next);
                div.field {
                    label for="token" { "API token" }
                    input #token type="password" name="token" required autocomplete="current-password" aria-describedby="token-hint";
                    p.hint #token-hint { "A token of this server's token file. It is exchanged for a session that ends after 8 hours; the token itself is not kept in the browser." }
                }
                button type="submit" { "Sign in" }
            }
        } @else {
            p { "This server signs people in through its own front (an identity provider); there is no token sign-in here." }
        }
    };
    page("Sign in", "", None, None, body)
}

pub(crate) async fn login_form(
    State(state): State<ApiState>,
    Query(p): Query<LoginParams>,
) -> Response {
    login_page(&state, &p.next, None)
}

/// The sign-in form.
#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    token: String,
    #[serde(default)]
    next: String,
}

/// `POST /ui/login`: a known token opens a session; on to `next` (a dashboard path only).
pub(crate) async fn login(
    State(state): State<ApiState>,
    req: axum::http::request::Parts,
    Form(form): Form<LoginForm>,
) -> Response {
    // Signing someone in from another site (login CSRF) is refused like any forged form.
    if super::cross_site(&req) {
        return view::refusal(
            StatusCode::FORBIDDEN,
            "This sign-in was sent from another site.",
        );
    }
    let Some(caller) = state
        .dashboard
        .sign_in
        .as_ref()
        .and_then(|s| s.caller(form.token.trim()))
    else {
        let mut res = login_page(&state, &form.next, Some("That token is not known here."));
        *res.status_mut() = StatusCode::UNAUTHORIZED;
        return res;
    };
    let session = state.dashboard.key.open(&caller, state.app.clock().now());
    // Only a path of the dashboard: never an open redirect elsewhere.
    let next = if form.next.starts_with("/ui") && !form.next.starts_with("//") {
        form.next.as_str()
    } else {
        "/ui"
    };
    let mut res = Redirect::to(next).into_response();
    if let Ok(v) = HeaderValue::from_str(&state.dashboard.key.set_cookie(&session)) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

/// `POST /ui/logout`.
pub(crate) async fn logout(Form(_): Form<Bare>) -> Response {
    let mut res = Redirect::to("/ui/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&super::session::SessionKey::clear_cookie()) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}
