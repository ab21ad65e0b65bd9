//! Who is calling, from API Gateway's request context: translated into the one
//! [`certpilot_api::Caller`] the handlers read.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use certpilot_api::{Caller, RequestSource};
use certpilot_aws::lambda::{ConfigError, var};
use certpilot_core::policy::requests::RequestPolicy;
use lambda_http::RequestExt;
use lambda_http::request::RequestContext;

/// The caller of an HTTP API request: its IAM principal, else its JWT issuer and subject.
pub fn caller(context: &RequestContext) -> Option<Caller> {
    let RequestContext::ApiGatewayV2(ctx) = context else {
        return None;
    };
    let authorizer = ctx.authorizer.as_ref()?;
    if let Some(iam) = &authorizer.iam
        && let Some(arn) = iam.user_arn.as_deref().filter(|a| !a.is_empty())
    {
        return Some(Caller::new(format!("iam:{arn}")));
    }
    let jwt = authorizer.jwt.as_ref()?;
    let sub = jwt.claims.get("sub").filter(|s| !s.is_empty())?;
    let iss = jwt
        .claims
        .get("iss")
        .map(String::as_str)
        .unwrap_or_default();
    Some(Caller::new(format!("jwt:{iss}|{sub}")))
}

/// Where the request came from: API Gateway's request id and the client's source IP.
pub fn source(context: &RequestContext) -> RequestSource {
    match context {
        RequestContext::ApiGatewayV2(ctx) => RequestSource {
            request_id: ctx.request_id.clone(),
            address: ctx.http.source_ip.clone(),
        },
        _ => RequestSource::default(),
    }
}

/// Puts the request context's caller (and source) in the request; without a caller the
/// router refuses it.
pub async fn from_context(mut req: Request, next: Next) -> Response {
    if let Some(ctx) = req.request_context_ref() {
        let (caller, source) = (caller(ctx), source(ctx));
        req.extensions_mut().insert(source);
        if let Some(c) = caller {
            req.extensions_mut().insert(c);
        }
    }
    next.run(req).await
}

/// `CERTPILOT_REQUEST_POLICY_DOCUMENT`: the request policy, checked now so that a mistake
/// stops the function at start with the field named.
pub fn request_policy() -> Result<Option<RequestPolicy>, ConfigError> {
    const NAME: &str = "CERTPILOT_REQUEST_POLICY_DOCUMENT";
    var(NAME)
        .map(|text| {
            certpilot_api::request_policy_from_yaml(&text, NAME)
                .map_err(|reason| ConfigError { name: NAME, reason })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(authorizer: serde_json::Value) -> RequestContext {
        let event = serde_json::json!({
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": "/endpoints",
            "rawQueryString": "",
            "headers": {},
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "api",
                "domainName": "api.example.com",
                "domainPrefix": "api",
                "http": {"method": "GET", "path": "/endpoints", "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1", "userAgent": "curl"},
                "requestId": "r1",
                "routeKey": "$default",
                "stage": "$default",
                "time": "05/Dec/2026:10:00:00 +0000",
                "timeEpoch": 1796464800000_u64,
                "authorizer": authorizer,
            },
            "isBase64Encoded": false,
        });
        let req: lambda_http::request::LambdaRequest = serde_json::from_value(event).unwrap();
        let http: lambda_http::Request = req.into();
        http.request_context()
    }

    #[test]
    fn callers_are_their_iam_principal_or_their_jwt_subject() {
        let iam = context(serde_json::json!({"iam": {
            "accessKey": "AKIA", "accountId": "123456789012", "callerId": "AIDA",
            "userArn": "arn:aws:iam::123456789012:user/ops", "userId": "AIDA",
            "cognitoIdentity": null, "principalOrgId": null
        }}));
        assert_eq!(
            caller(&iam),
            Some(Caller::new("iam:arn:aws:iam::123456789012:user/ops"))
        );
        let jwt = context(serde_json::json!({"jwt": {
            "claims": {"iss": "https://login.example.com", "sub": "alice", "cognito:groups": "[admin ops]"},
            "scopes": null
        }}));
        assert_eq!(
            caller(&jwt),
            Some(Caller::new("jwt:https://login.example.com|alice"))
        );
        let nobody = context(serde_json::json!({"jwt": {"claims": {"iss": "x"}, "scopes": null}}));
        assert_eq!(caller(&nobody), None, "no subject, no caller");
    }
}
