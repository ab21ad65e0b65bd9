//! The dashboard: HTML pages under `/ui`, served by the same router as the API (so
//! `certpilot serve` and the API function both serve them), every asset embedded. The
//! read-only pages need no JavaScript: filters are forms, sorting is links, the expiry chart
//! is SVG drawn on the server.
//!
//! Browsers hold a session cookie ([`session`]) instead of a bearer token: `/ui/login`
//! exchanges an API token for one (through the front's [`SignIn`]); a front that has
//! authenticated the request itself (`certpilot serve --no-auth` on loopback) gets one
//! without signing in. Every POST must carry the session's CSRF token, and a cross-site
//! request (by `Sec-Fetch-Site` or `Origin`) is refused before it is read.

mod pages;
pub mod session;
mod view;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::{ApiState, Caller};
use session::{Session, SessionKey};

pub use view::query_escape;

/// How a front turns what a person types at `/ui/login` into a caller: `certpilot serve`
/// checks API tokens against its token file.
pub trait SignIn: Send + Sync {
    /// The caller presenting `token`, if it is a known one.
    fn caller(&self, token: &str) -> Option<Caller>;
}

/// The dashboard's configuration: the key sessions are signed with, and how people sign in.
#[derive(Clone)]
pub struct Dashboard {
    pub(crate) key: SessionKey,
    pub(crate) sign_in: Option<Arc<dyn SignIn>>,
}

impl Dashboard {
    /// Sessions signed with `key`; sign-in through `sign_in` (none: only a front that
    /// authenticates requests itself opens sessions).
    pub fn new(key: SessionKey, sign_in: Option<Arc<dyn SignIn>>) -> Self {
        Dashboard { key, sign_in }
    }
}

impl Default for Dashboard {
    fn default() -> Self {
        Dashboard::new(SessionKey::random(), None)
    }
}

/// The pages and their forms.
pub(crate) fn router(state: ApiState) -> Router<ApiState> {
    Router::new()
        .route("/ui", get(pages::overview))
        .route("/ui/inventory", get(pages::inventory))
        .route("/ui/inventory.csv", get(pages::inventory_csv))
        .route("/ui/certificates", get(pages::certificates))
        .route("/ui/certificates/{id}", get(pages::certificate))
        .route("/ui/certificates/{id}/renew", post(pages::renew))
        .route("/ui/certificates/{id}/rollback", post(pages::rollback))
        .route("/ui/findings", get(pages::findings))
        .route("/ui/findings/{key}/ack", post(pages::ack))
        .route("/ui/request", get(pages::request_form).post(pages::request))
        .route("/ui/logout", post(pages::logout))
        // Inside the guard: the audit log sees the session's caller.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::audit::record,
        ))
        .route_layer(axum::middleware::from_fn_with_state(state, guard))
        .route("/ui/login", get(pages::login_form).post(pages::login))
        .route("/ui/assets/dashboard.css", get(stylesheet))
        .route("/ui/", get(|| async { Redirect::permanent("/ui") }))
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("assets/dashboard.css"),
    )
        .into_response()
}

/// Whether a request comes from another site: `Sec-Fetch-Site` says so (every current
/// browser sends it), or its `Origin` is not this host.
pub(crate) fn cross_site(req: &axum::http::request::Parts) -> bool {
    let h = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = h("sec-fetch-site") {
        return !matches!(site, "same-origin" | "none");
    }
    match (h("origin"), h("host")) {
        (Some(origin), Some(host)) => {
            origin.split_once("://").map(|(_, authority)| authority) != Some(host)
        }
        _ => false,
    }
}

/// The most a form may send.
const MAX_FORM: usize = 64 * 1024;

/// Puts the session's caller (and the session) on every page request; sends people without
/// one to sign in; refuses a POST from another site or without the session's CSRF token.
async fn guard(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let now = state.app.clock().now();
    let dashboard = &state.dashboard;
    let (mut parts, body) = req.into_parts();
    let found = session::cookie_value(
        parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    )
    .and_then(|v| dashboard.key.unseal(v, now));
    let post = parts.method == Method::POST;
    let session = match found {
        Some(s) => s,
        None => match parts.extensions.get::<Caller>() {
            // The front knows the caller (no sign-in needed): a session for it, the page
            // asked for again so the cookie comes with it.
            Some(caller) if !post => {
                let s = dashboard.key.open(caller, now);
                let mut res =
                    Redirect::to(parts.uri.path_and_query().map_or("/ui", |p| p.as_str()))
                        .into_response();
                set(&mut res, &dashboard.key.set_cookie(&s));
                return res;
            }
            _ if post => {
                return view::refusal(
                    StatusCode::FORBIDDEN,
                    "Your session has ended, or this form did not come from certpilot. Sign in and try again.",
                );
            }
            _ => {
                let next = parts.uri.path_and_query().map_or("/ui", |p| p.as_str());
                return Redirect::to(&format!("/ui/login?next={}", view::query_escape(next)))
                    .into_response();
            }
        },
    };
    parts.extensions.insert(session.caller());
    parts.extensions.insert(session.clone());
    let body = if post {
        if cross_site(&parts) {
            return view::refusal(
                StatusCode::FORBIDDEN,
                "This form was sent from another site; certpilot only takes forms from its own pages.",
            );
        }
        let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM).await else {
            return view::refusal(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large.");
        };
        if !csrf_ok(&bytes, &session) {
            return view::refusal(
                StatusCode::FORBIDDEN,
                "This form's security token does not match your session (it was not made by certpilot, or your session changed). Reload the page and try again.",
            );
        }
        axum::body::Body::from(bytes)
    } else {
        body
    };
    next.run(Request::from_parts(parts, body)).await
}

fn csrf_ok(form: &Bytes, session: &Session) -> bool {
    form_urlencoded_pairs(form)
        .into_iter()
        .find(|(k, _)| k == "csrf")
        .is_some_and(|(_, v)| session::same(&v, &session.csrf))
}

/// The fields of an `application/x-www-form-urlencoded` body.
fn form_urlencoded_pairs(body: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(body).unwrap_or_default()
}

fn set(res: &mut Response, cookie: &str) {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
}
