//! Where a certificate is installed (deployments), and what certpilot last did there.
//!
//! A deployment names a target (an ACM import, a load-balancer listener, a CDN distribution,
//! an API Gateway domain) and the endpoints that prove it: after installing, certpilot
//! handshakes with them until they serve the new certificate. A renewal is done only when
//! every deployment is [`DeploymentStatus::Verified`] for the current certificate.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::model::certificate::{KeyType, SpecError};
use crate::model::target::Target;

/// Which API a custom domain belongs to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiGatewayApi {
    /// API Gateway REST APIs (`apigateway`).
    #[default]
    Rest,
    /// API Gateway HTTP and WebSocket APIs (`apigatewayv2`).
    Http,
}

/// The kind of target and its settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum TargetConfig {
    /// Import into ACM for users certpilot does not bind itself. Re-imports go over the same
    /// ARN, which keeps every association.
    AcmImport {
        /// The region to import into.
        region: String,
    },
    /// An ALB or NLB HTTPS/TLS listener.
    Elbv2Listener {
        /// The listener's ARN (its region is read from it).
        listener_arn: String,
        /// As one of the listener's SNI certificates instead of its default one.
        #[serde(default)]
        sni: bool,
    },
    /// A CloudFront distribution's viewer certificate (imported into `us-east-1`).
    Cloudfront {
        /// The distribution id.
        distribution_id: String,
    },
    /// An API Gateway custom domain name.
    ApiGateway {
        /// The custom domain name.
        domain_name: String,
        /// Its region (edge-optimized REST domains use `us-east-1` certificates).
        region: String,
        /// REST or HTTP API.
        #[serde(default)]
        api: ApiGatewayApi,
    },
}

impl TargetConfig {
    /// A short name of the kind, as shown to people and in logs.
    pub fn kind(&self) -> &'static str {
        match self {
            TargetConfig::AcmImport { .. } => "acm-import",
            TargetConfig::Elbv2Listener { .. } => "elbv2-listener",
            TargetConfig::Cloudfront { .. } => "cloudfront",
            TargetConfig::ApiGateway { .. } => "api-gateway",
        }
    }

    /// The AWS region the target's ACM certificate lives in.
    pub fn region(&self) -> Result<String, SpecError> {
        match self {
            TargetConfig::AcmImport { region, .. } | TargetConfig::ApiGateway { region, .. } => {
                Ok(region.clone())
            }
            // CloudFront only takes certificates from us-east-1.
            TargetConfig::Cloudfront { .. } => Ok("us-east-1".to_owned()),
            TargetConfig::Elbv2Listener { listener_arn, .. } => arn_region(listener_arn),
        }
    }

    /// How long the data plane may take to serve a new certificate: a load balancer takes
    /// seconds, CloudFront minutes.
    pub fn default_verify_deadline(&self) -> Duration {
        match self {
            TargetConfig::AcmImport { .. } => Duration::from_secs(5 * 60),
            TargetConfig::Elbv2Listener { .. } => Duration::from_secs(2 * 60),
            TargetConfig::Cloudfront { .. } => Duration::from_secs(25 * 60),
            TargetConfig::ApiGateway { .. } => Duration::from_secs(10 * 60),
        }
    }

    /// Whether the target binds the certificate to something that serves it (everything but
    /// a plain ACM import), so that endpoints are needed to prove it.
    pub fn binds(&self) -> bool {
        !matches!(self, TargetConfig::AcmImport { .. })
    }
}

/// The region of an ARN (`arn:partition:service:region:account:resource`).
pub fn arn_region(arn: &str) -> Result<String, SpecError> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", _, _, region, _, resource] if !region.is_empty() && !resource.is_empty() => {
            Ok((*region).to_owned())
        }
        _ => Err(SpecError {
            input: arn.to_owned(),
            reason: "not an ARN with a region (arn:aws:service:region:account:resource)".into(),
        }),
    }
}

/// One place a certificate is installed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// Unique within the certificate; names the deployment in commands and findings.
    pub name: String,
    /// The target.
    #[serde(flatten)]
    pub target: TargetConfig,
    /// An imported ACM certificate to re-import over instead of importing a new one: adopts
    /// a certificate that is already bound where certpilot does not bind (other listeners,
    /// stacks that name the ARN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_arn: Option<String>,
    /// A role to assume for this target (another account).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// The endpoints that serve what the target holds; the certificate's own endpoints when
    /// empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<Target>,
    /// How long to wait for the endpoints, in seconds; the kind's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_deadline_secs: Option<u64>,
}

impl Deployment {
    /// The verification deadline.
    pub fn verify_deadline(&self) -> Duration {
        self.verify_deadline_secs
            .map(Duration::from_secs)
            .unwrap_or_else(|| self.target.default_verify_deadline())
    }

    /// Checks what the types cannot, given the certificate's own endpoints.
    pub fn validate(&self, certificate_endpoints: &[Target]) -> Result<(), SpecError> {
        let bad = |input: &str, reason: &str| SpecError {
            input: input.to_owned(),
            reason: format!("deployment {:?}: {reason}", self.name),
        };
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(bad(
                &self.name,
                "a name is letters, digits, '-', '_' or '.'",
            ));
        }
        let region = self.target.region().map_err(|e| bad(&e.input, &e.reason))?;
        if region.is_empty()
            || !region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(bad(&region, "not an AWS region name"));
        }
        if let Some(arn) = &self.certificate_arn
            && (arn_region(arn)? != region || !arn.contains(":certificate/"))
        {
            return Err(bad(arn, &format!("not an ACM certificate ARN in {region}")));
        }
        if let Some(role) = &self.role_arn
            && (!role.starts_with("arn:") || !role.contains(":role/"))
        {
            return Err(bad(
                role,
                "a role is an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)",
            ));
        }
        match &self.target {
            TargetConfig::Elbv2Listener { listener_arn, .. }
                if !listener_arn.contains(":listener/") =>
            {
                return Err(bad(listener_arn, "not a listener ARN"));
            }
            TargetConfig::Cloudfront { distribution_id } if distribution_id.is_empty() => {
                return Err(bad(distribution_id, "a distribution id is needed"));
            }
            TargetConfig::ApiGateway { domain_name, .. } if domain_name.is_empty() => {
                return Err(bad(domain_name, "a domain name is needed"));
            }
            _ => {}
        }
        if self.target.binds() && self.endpoints.is_empty() && certificate_endpoints.is_empty() {
            return Err(bad(
                self.target.kind(),
                "needs endpoints to verify (the deployment's or the certificate's): without a handshake nothing proves the new certificate is served",
            ));
        }
        Ok(())
    }
}

/// Where a deployment stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentStatus {
    /// Installed and served by every endpoint.
    Verified,
    /// Installed, but some endpoint kept serving something else: rolled back to the previous
    /// certificate when there was one.
    NotServing,
    /// The target refused or could not be reached: rolled back when anything had changed.
    Failed,
    /// Put back to the previous certificate by hand (`certpilot rollback`); left alone until
    /// the next explicit deploy.
    RolledBack,
}

impl DeploymentStatus {
    /// The name shown to people.
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentStatus::Verified => "verified",
            DeploymentStatus::NotServing => "not_serving",
            DeploymentStatus::Failed => "failed",
            DeploymentStatus::RolledBack => "rolled_back",
        }
    }
}

/// Why a deployment is not (cleanly) serving its certificate, as a kind alerts key on; the
/// words are in the record's `detail`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DeployProblem {
    /// The deployment's configuration cannot work.
    Config,
    /// The target's API refused (permissions, a missing resource, a rule of the target's).
    Refused,
    /// The target's API could not be reached or throttled.
    Unavailable,
    /// The certificate's key could not be read.
    SecretStore,
    /// The certificate store failed.
    Store,
    /// An endpoint kept serving something else past the deadline.
    NotServing,
    /// With no endpoint to handshake with, the target's API does not hold the certificate.
    NotHeld,
    /// Served, but the certificate it replaced is still bound (untidy, not an outage).
    ReplacedStillBound,
    /// A kind this version does not know (written by a newer one).
    #[serde(other)]
    Other,
}

impl DeployProblem {
    /// The kind of a deploy target's failure.
    pub fn of(e: &crate::ports::DeployError) -> Self {
        use crate::ports::DeployError as E;
        match e {
            E::Config(_) => DeployProblem::Config,
            E::Target(_) => DeployProblem::Refused,
            E::Unavailable(_) => DeployProblem::Unavailable,
            E::Secret(_) => DeployProblem::SecretStore,
            E::Store(_) => DeployProblem::Store,
        }
    }
}

/// A deployment spec's settings, in the order given: `(key, value)`.
pub type SpecSettings = Vec<(String, String)>;

/// Splits a deployment spec, `KIND:key=value,key="quoted, value",…`, into its kind and its
/// settings in order. A value may be double-quoted, with `\"` and `\\` as the only escapes,
/// so that it can hold `,` and `=` (a reload command); a bare value runs to the next `,` and
/// is trimmed. Empty pairs (`,,`) are skipped. The error says what is wrong and where.
pub fn split_spec(spec: &str) -> Result<(&str, SpecSettings), String> {
    let (kind, rest) = spec
        .split_once(':')
        .ok_or("expected KIND:key=value,… (e.g. elbv2-listener:listener-arn=arn:…)")?;
    let mut settings = Vec::new();
    let mut chars = rest.char_indices().peekable();
    loop {
        // A key, up to '='.
        let mut key = String::new();
        let mut saw_eq = false;
        for (_, c) in chars.by_ref() {
            match c {
                '=' => {
                    saw_eq = true;
                    break;
                }
                ',' if key.trim().is_empty() => key.clear(),
                ',' => return Err(format!("{:?} is not key=value", key.trim())),
                c => key.push(c),
            }
        }
        let key = key.trim().to_owned();
        if !saw_eq {
            if key.is_empty() {
                break;
            }
            return Err(format!("{key:?} is not key=value"));
        }
        if key.is_empty() {
            return Err("a setting has no key before '='".into());
        }
        // Its value: quoted, or bare up to the next ','.
        while chars.peek().is_some_and(|(_, c)| *c == ' ') {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek().is_some_and(|(_, c)| *c == '"') {
            let (start, _) = chars.next().unwrap_or_default();
            let mut closed = false;
            while let Some((_, c)) = chars.next() {
                match c {
                    '"' => {
                        closed = true;
                        break;
                    }
                    '\\' => match chars.next() {
                        Some((_, e @ ('"' | '\\'))) => value.push(e),
                        Some((_, other)) => {
                            return Err(format!(
                                "{key}: unknown escape \\{other} in a quoted value (only \\\" and \\\\)"
                            ));
                        }
                        None => break,
                    },
                    c => value.push(c),
                }
            }
            if !closed {
                return Err(format!(
                    "{key}: the quoted value starting at character {} has no closing '\"'",
                    kind.chars().count() + 1 + rest[..start].chars().count() + 1
                ));
            }
            while chars.peek().is_some_and(|(_, c)| *c == ' ') {
                chars.next();
            }
            match chars.next() {
                None | Some((_, ',')) => {}
                Some((_, c)) => {
                    return Err(format!(
                        "{key}: {c:?} after a quoted value; separate settings with ','"
                    ));
                }
            }
        } else {
            for (_, c) in chars.by_ref() {
                if c == ',' {
                    break;
                }
                value.push(c);
            }
            value = value.trim().to_owned();
        }
        settings.push((key, value));
    }
    Ok((kind, settings))
}

/// Writes `value` so that [`split_spec`] reads it back whole: bare when it can be, else
/// quoted with `"` and `\` escaped.
pub fn quote_spec_value(value: &str) -> String {
    let bare = !value.is_empty()
        && value.trim() == value
        && !value.contains([',', '"', '\\'])
        && !value.starts_with('"');
    if bare {
        value.to_owned()
    } else {
        format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// What certpilot last did at one deployment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentRecord {
    /// The deployment's name.
    pub name: String,
    /// The certificate the deployment was last asked to serve (SHA-256 of the leaf, hex).
    pub fingerprint: String,
    /// The outcome.
    pub status: DeploymentStatus,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// What went wrong, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// What went wrong, as a kind (absent in records written before kinds existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<DeployProblem>,
    /// The certificate the target holds now (after a rollback, the previous one).
    pub holding: Option<String>,
    /// The ACM certificate certpilot imports into for this deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_arn: Option<String>,
    /// The key type of what that ARN holds (ACM re-imports must keep the key algorithm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_type: Option<KeyType>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(target: TargetConfig) -> Deployment {
        Deployment {
            name: "edge".into(),
            target,
            certificate_arn: None,
            role_arn: None,
            endpoints: vec!["shop.example.com".parse().expect("target")],
            verify_deadline_secs: None,
        }
    }

    #[test]
    fn regions_come_from_the_listener_arn_and_cloudfront_is_us_east_1() {
        let elb = TargetConfig::Elbv2Listener {
            listener_arn: "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/shop/50dc6c495c0c9188/f2f7dc8efc522ab2".into(),
            sni: false,
        };
        assert_eq!(elb.region().expect("region"), "eu-west-1");
        let cf = TargetConfig::Cloudfront {
            distribution_id: "E2QWRUHAPOMQZL".into(),
        };
        assert_eq!(cf.region().expect("region"), "us-east-1");
        assert!(cf.default_verify_deadline() > elb.default_verify_deadline());
    }

    #[test]
    fn bad_deployments_name_the_input() {
        let err = deployment(TargetConfig::Elbv2Listener {
            listener_arn: "shop-lb".into(),
            sni: false,
        })
        .validate(&[])
        .expect_err("not an ARN");
        assert_eq!(err.input, "shop-lb");

        let mut d = deployment(TargetConfig::Cloudfront {
            distribution_id: "E1".into(),
        });
        d.endpoints.clear();
        let err = d.validate(&[]).expect_err("no endpoints");
        assert!(err.reason.contains("needs endpoints to verify"), "{err}");
        d.validate(&["shop.example.com".parse().expect("target")])
            .expect("certificate's endpoints do");

        let mut d = deployment(TargetConfig::AcmImport {
            region: "eu-west-1".into(),
        });
        d.role_arn = Some("deployer".into());
        assert_eq!(d.validate(&[]).expect_err("role").input, "deployer");
    }

    #[test]
    fn deployments_round_trip_through_json_with_their_kind() {
        let d = deployment(TargetConfig::ApiGateway {
            domain_name: "api.example.com".into(),
            region: "eu-west-1".into(),
            api: ApiGatewayApi::Http,
        });
        let json = serde_json::to_value(&d).expect("json");
        assert_eq!(json["kind"], "api-gateway");
        assert_eq!(json["api"], "http");
        assert_eq!(serde_json::from_value::<Deployment>(json).expect("back"), d);
    }
}
