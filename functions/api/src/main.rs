//! The API function: certpilot's HTTP API (`certpilot_api::router`, the same router as
//! `certpilot serve`) behind API Gateway's HTTP API (payload v2, `$default` stage). The
//! caller is the request context's IAM principal (`iam:<user ARN>`, the default) or JWT
//! subject (`jwt:<issuer>|<subject>`); a request with neither is refused.
//!
//! Settings (environment): `CERTPILOT_TABLE` (required), `CERTPILOT_ALLOW_NETWORKS`
//! (comma-separated CIDRs endpoints may resolve into besides public addresses),
//! `CERTPILOT_REQUEST_POLICY_DOCUMENT` (the request policy's YAML or JSON; the template
//! fills it from an SSM parameter; without it nobody may request certificates),
//! `CERTPILOT_RENEW_QUEUE_URL` (where accepted requests go to be issued at once; without it
//! the renew function's next tick takes them), `CERTPILOT_DEPLOY_QUEUE_URL` (rollbacks) and
//! `CERTPILOT_SECRETS_PREFIX` (where the dashboard's session key is kept).
//! AWS access follows the standard configuration.

mod caller;

use std::sync::Arc;

use certpilot_app::App;
use certpilot_aws::lambda::required;
use lambda_http::Error;

/// The secret holding the key dashboard sessions are signed with.
const DASHBOARD_KEY: &str = "dashboard/session-key";

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let table = required("CERTPILOT_TABLE", "the DynamoDB table name")?;
    let addresses = certpilot_aws::lambda::address_policy()?;
    let app = App::aws(&table).await;
    let mut state = certpilot_api::ApiState::new(
        app.clone(),
        addresses,
        Arc::new(certpilot_api::resolve::SystemResolver),
    );
    if let Some(policy) = caller::request_policy()? {
        // No renew queue: accepted requests are due at once, and the next tick takes them.
        if let Some(renew) = certpilot_aws::lambda::var("CERTPILOT_RENEW_QUEUE_URL") {
            let deploy = certpilot_aws::lambda::var("CERTPILOT_DEPLOY_QUEUE_URL");
            state = state.with_requests(policy, app.work_sink(&renew, deploy).await);
        } else {
            state = state.with_requests(policy, Arc::new(certpilot_api::ScheduleOnly));
        }
    }
    // Dashboard sessions are good at every instance: the key is in Secrets Manager.
    let key = match certpilot_api::dashboard::session::SessionKey::shared(
        app.secrets().as_ref(),
        DASHBOARD_KEY,
    )
    .await
    {
        Ok(key) => key,
        Err(e) => {
            // The pages still work, each instance with sessions of its own.
            tracing::warn!("{e}; dashboard sessions last one instance");
            certpilot_api::dashboard::session::SessionKey::random()
        }
    };
    state = state.with_dashboard(certpilot_api::dashboard::Dashboard::new(key, None));
    let router =
        certpilot_api::router(state).layer(axum::middleware::from_fn(caller::from_context));
    // `run` takes a tower service of lambda_http requests: the router is one.
    lambda_http::run(router).await
}
