//! The API function: certpilot's HTTP API (`certpilot_api::router`, the same router as
//! `certpilot serve`) behind API Gateway's HTTP API (payload v2, `$default` stage). The
//! caller is the request context's IAM principal (`iam:<user ARN>`, the default) or JWT
//! subject (`jwt:<issuer>|<subject>`); a request with neither is refused.
//!
//! Settings (environment): `CERTPILOT_TABLE` (required), `CERTPILOT_ALLOW_NETWORKS`
//! (comma-separated CIDRs endpoints may resolve into besides public addresses). AWS access
//! follows the standard configuration.

mod caller;

use std::sync::Arc;

use certpilot_app::App;
use certpilot_aws::lambda::required;
use lambda_http::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let table = required("CERTPILOT_TABLE", "the DynamoDB table name")?;
    let addresses = caller::address_policy()?;
    let app = App::aws(&table).await;
    let state = certpilot_api::ApiState::new(
        app,
        addresses,
        Arc::new(certpilot_api::resolve::SystemResolver),
    );
    let router =
        certpilot_api::router(state).layer(axum::middleware::from_fn(caller::from_context));
    lambda_http::run(router).await
}
