//! The router over a real SQLite store, with a resolver the test sets, callers it names, and
//! a work sink that records what the API handed to the workers.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use certpilot_api::resolve::Resolve;
use certpilot_api::{ApiState, Caller, router};
use certpilot_core::policy::address::AddressPolicy;
use certpilot_core::policy::requests::RequestPolicy;
use certpilot_core::ports::{CertificateWork, QueueError, WorkSink};
use serde_json::Value;
use tower::ServiceExt;

/// A resolver whose answers the test sets (and changes).
#[derive(Default)]
pub struct Names(Mutex<HashMap<String, Vec<IpAddr>>>);

impl Names {
    pub fn set(&self, name: &str, ips: &[&str]) {
        self.0.lock().unwrap().insert(
            name.to_owned(),
            ips.iter().map(|i| i.parse().unwrap()).collect(),
        );
    }
}

#[async_trait::async_trait]
impl Resolve for Names {
    async fn resolve(&self, host: &str, _: u16) -> Result<Vec<IpAddr>, String> {
        self.0
            .lock()
            .unwrap()
            .get(host)
            .cloned()
            .ok_or_else(|| format!("{host} does not resolve"))
    }
}

/// The work the API handed over.
#[derive(Default)]
pub struct Recorded(pub Mutex<Vec<CertificateWork>>);

#[async_trait::async_trait]
impl WorkSink for Recorded {
    async fn submit(&self, work: &CertificateWork) -> Result<(), QueueError> {
        self.0.lock().unwrap().push(work.clone());
        Ok(())
    }
}

pub struct Api {
    _dir: tempfile::TempDir,
    pub router: axum::Router,
    pub names: Arc<Names>,
    pub app: certpilot_app::App,
    pub work: Arc<Recorded>,
}

/// The API refusing scans into networks other than `allowed`, without a request policy.
pub fn api(allowed: &[&str]) -> Api {
    api_with(allowed, None)
}

/// The API with a request policy.
pub fn api_with(allowed: &[&str], policy: Option<RequestPolicy>) -> Api {
    api_dashboard(
        allowed,
        policy,
        certpilot_api::dashboard::Dashboard::default(),
    )
}

/// The API with a request policy and the dashboard's sessions as `dashboard` says.
pub fn api_dashboard(
    allowed: &[&str],
    policy: Option<RequestPolicy>,
    dashboard: certpilot_api::dashboard::Dashboard,
) -> Api {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(certpilot_sqlite::SqliteStore::open(dir.path().join("db")).unwrap());
    let app = certpilot_app::App::local(store, dir.path().join("secrets"));
    let names = Arc::new(Names::default());
    let addresses = AddressPolicy {
        allowed: allowed.iter().map(|n| n.parse().unwrap()).collect(),
    };
    let work = Arc::new(Recorded::default());
    let mut state = ApiState::new(app.clone(), addresses, names.clone()).with_dashboard(dashboard);
    if let Some(policy) = policy {
        state = state.with_requests(policy, work.clone());
    }
    Api {
        _dir: dir,
        router: router(state),
        names,
        app,
        work,
    }
}

impl Api {
    /// As `token:ops`.
    pub async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.raw(method, uri, body.map(|b| b.to_string()), true)
            .await
    }

    /// As `token:ops`, or as nobody.
    pub async fn raw(
        &self,
        method: &str,
        uri: &str,
        body: Option<String>,
        authenticated: bool,
    ) -> (StatusCode, Value) {
        let caller = authenticated.then_some("token:ops");
        let (status, _, value) = self.full(caller, method, uri, body, &[]).await;
        (status, value)
    }

    /// As `principal`.
    pub async fn call_as(
        &self,
        principal: &str,
        method: &str,
        uri: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (status, _, value) = self
            .full(
                Some(principal),
                method,
                uri,
                body.map(|b| b.to_string()),
                &[],
            )
            .await;
        (status, value)
    }

    /// Everything: caller, headers in and out.
    pub async fn full(
        &self,
        principal: Option<&str>,
        method: &str,
        uri: &str,
        body: Option<String>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, Value) {
        let mut req = Request::builder().method(method).uri(uri);
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut req = req.body(body.map_or_else(Body::empty, Body::from)).unwrap();
        if let Some(p) = principal {
            req.extensions_mut().insert(Caller::new(p));
        }
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 22)
            .await
            .unwrap();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            // Metrics and CSV are text.
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        (status, headers, value)
    }
}

impl Api {
    /// A browser's request: no caller but what its headers carry, the body as given, the
    /// answer as text.
    pub async fn full_form(
        &self,
        method: &str,
        uri: &str,
        body: Option<String>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, String) {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(body.map_or_else(Body::empty, Body::from)).unwrap();
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 22)
            .await
            .unwrap();
        (
            status,
            headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }
}
