//! Reaching an EKS cluster from where no exec plugin runs (the deploy function): the
//! cluster's endpoint and CA from `eks:DescribeCluster`, and a bearer token made the way
//! `aws eks get-token` makes it — an STS `GetCallerIdentity` URL presigned with SigV4 for
//! 60 seconds, its `x-k8s-aws-id` header naming the cluster, base64url-encoded after
//! `k8s-aws-v1.`. The cluster's authenticator calls that URL and maps the caller's ARN
//! through its access entries to a Kubernetes user; RBAC does the rest.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_credential_types::provider::ProvideCredentials as _;
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use aws_types::service_config::ServiceConfigKey;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use certpilot_core::ports::DeployError;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

/// The AWS configuration a cluster is reached with: the standard one, in another region or
/// with an assumed role when the deployment says so. The composition root supplies it (the
/// same configurations the AWS kinds use).
#[async_trait]
pub trait AwsConfigs: Send + Sync {
    /// The configuration for `region` (the standard region when `None`), with `role`'s
    /// credentials when given.
    async fn config(&self, role: Option<&str>, region: Option<&str>) -> SdkConfig;
}

/// What a client needs to reach one cluster.
pub(crate) struct ClusterAccess {
    /// `https://…`
    pub(crate) endpoint: String,
    /// The cluster's CA certificates, DER.
    pub(crate) ca: Vec<Vec<u8>>,
    /// The bearer token (`k8s-aws-v1.…`), good for 15 minutes.
    pub(crate) token: String,
}

/// The header naming the cluster, signed into the token so it is good for that cluster only.
pub const CLUSTER_HEADER: &str = "x-k8s-aws-id";
/// What the token starts with.
pub const TOKEN_PREFIX: &str = "k8s-aws-v1.";

/// A cluster named by name (the configuration's region) or by ARN
/// (`arn:aws:eks:REGION:ACCOUNT:cluster/NAME`): its name and region.
pub fn parse_cluster(cluster: &str) -> Result<(String, Option<String>), String> {
    if let Some(rest) = cluster.strip_prefix("arn:") {
        let parts: Vec<&str> = rest.splitn(5, ':').collect();
        return match parts.as_slice() {
            [_, "eks", region, _, resource] if !region.is_empty() => resource
                .strip_prefix("cluster/")
                .filter(|n| valid_name(n))
                .map(|n| (n.to_owned(), Some((*region).to_owned())))
                .ok_or_else(|| {
                    "not an EKS cluster ARN (arn:aws:eks:REGION:ACCOUNT:cluster/NAME)".into()
                }),
            _ => Err("not an EKS cluster ARN (arn:aws:eks:REGION:ACCOUNT:cluster/NAME)".into()),
        };
    }
    if valid_name(cluster) {
        Ok((cluster.to_owned(), None))
    } else {
        Err("an EKS cluster name is 1 to 100 letters, digits, '-' and '_', starting with a letter or digit".into())
    }
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 100
        && n.starts_with(|c: char| c.is_ascii_alphanumeric())
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The endpoint, CA and a fresh token of `cluster` (a name or ARN), with `configs`.
pub(crate) async fn access(
    configs: &dyn AwsConfigs,
    cluster: &str,
    role: Option<&str>,
) -> Result<ClusterAccess, DeployError> {
    let (name, region) =
        parse_cluster(cluster).map_err(|e| DeployError::Config(format!("{cluster:?}: {e}")))?;
    let config = configs.config(role, region.as_deref()).await;
    let at = format!("eks:{name}");
    let described = aws_sdk_eks::Client::new(&config)
        .describe_cluster()
        .name(&name)
        .send()
        .await
        .map_err(|e| {
            let words = aws_sdk_eks::error::DisplayErrorContext(&e).to_string();
            match e.as_service_error() {
                Some(s) if s.is_resource_not_found_exception() => DeployError::Config(format!(
                    "{at}: no such cluster in {}: {words}",
                    config.region().map(|r| r.as_ref()).unwrap_or("the configured region")
                )),
                Some(_) => DeployError::Target(format!(
                    "{at}: DescribeCluster was refused; certpilot's role needs eks:DescribeCluster on it ({words})"
                )),
                None => DeployError::Unavailable(format!("{at}: DescribeCluster: {words}")),
            }
        })?;
    let c = described
        .cluster
        .ok_or_else(|| DeployError::Target(format!("{at}: DescribeCluster returned no cluster")))?;
    if let Some(status) = &c.status
        && status.as_str() != "ACTIVE"
        && status.as_str() != "UPDATING"
    {
        return Err(DeployError::Unavailable(format!(
            "{at}: the cluster is {}, not ACTIVE",
            status.as_str()
        )));
    }
    let endpoint = c
        .endpoint
        .ok_or_else(|| DeployError::Target(format!("{at}: the cluster has no endpoint yet")))?;
    let ca_pem = c
        .certificate_authority
        .and_then(|a| a.data)
        .and_then(|d| STANDARD.decode(d.trim()).ok())
        .ok_or_else(|| {
            DeployError::Target(format!(
                "{at}: the cluster's certificate authority is missing"
            ))
        })?;
    let ca = ca_certificates(&ca_pem).map_err(|e| {
        DeployError::Target(format!("{at}: the cluster's certificate authority: {e}"))
    })?;
    let token = token(&config, &name, SystemTime::now())
        .await
        .map_err(|e| DeployError::Config(format!("{at}: making the token: {e}")))?;
    Ok(ClusterAccess {
        endpoint,
        ca,
        token,
    })
}

fn ca_certificates(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;
    let certs: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(pem)
        .map(|c| c.map(|c| c.to_vec()).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    if certs.is_empty() {
        return Err("no PEM certificate in it".into());
    }
    Ok(certs)
}

/// STS's endpoint for `config`: the STS-specific one (`AWS_ENDPOINT_URL_STS`), the shared
/// one (`AWS_ENDPOINT_URL`), or the region's.
fn sts_endpoint(config: &SdkConfig, region: &str) -> String {
    let key = ServiceConfigKey::builder()
        .service_id("STS")
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build()
        .ok();
    config
        .service_config()
        .zip(key)
        .and_then(|(c, key)| c.load_config(key))
        .or_else(|| config.endpoint_url().map(str::to_owned))
        .unwrap_or_else(|| format!("https://sts.{region}.amazonaws.com"))
        .trim_end_matches('/')
        .to_owned()
}

/// The bearer token for cluster `name`, signed at `now` with `config`'s credentials.
pub async fn token(config: &SdkConfig, name: &str, now: SystemTime) -> Result<String, String> {
    let provider = config
        .credentials_provider()
        .ok_or("no AWS credentials are configured")?;
    let credentials = provider
        .provide_credentials()
        .await
        .map_err(|e| format!("the AWS credentials: {e}"))?;
    let region = config
        .region()
        .map(|r| r.as_ref().to_owned())
        .ok_or("no AWS region is configured")?;
    let url = format!(
        "{}/?Action=GetCallerIdentity&Version=2011-06-15",
        sts_endpoint(config, &region)
    );
    let identity = credentials.into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    // The authenticator takes tokens up to 15 minutes old whatever this says; 60 s is what
    // `aws eks get-token` asks for.
    settings.expires_in = Some(Duration::from_secs(60));
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&region)
        .name("sts")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let request = SignableRequest::new(
        "GET",
        &url,
        [(CLUSTER_HEADER, name)].into_iter(),
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| e.to_string())?;
    let (instructions, _) = sign(request, &params)
        .map_err(|e| e.to_string())?
        .into_parts();
    let mut presigned = url;
    for (k, v) in instructions.params() {
        presigned.push_str(&format!(
            "&{k}={}",
            utf8_percent_encode(v, NON_ALPHANUMERIC)
        ));
    }
    Ok(format!(
        "{TOKEN_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(presigned)
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn a_cluster_is_named_by_name_or_arn() {
        assert_eq!(
            parse_cluster("shop-prod").unwrap(),
            ("shop-prod".into(), None)
        );
        assert_eq!(
            parse_cluster("arn:aws:eks:eu-west-1:123456789012:cluster/shop").unwrap(),
            ("shop".into(), Some("eu-west-1".into()))
        );
        assert!(parse_cluster("arn:aws:eks:eu-west-1:123456789012:nodegroup/shop").is_err());
        assert!(parse_cluster("shop prod").is_err());
        assert!(parse_cluster("").is_err());
    }

    #[tokio::test]
    async fn the_token_is_a_presigned_get_caller_identity_naming_the_cluster() {
        let config = SdkConfig::builder()
            .region(aws_types::region::Region::new("eu-west-1"))
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(
                    aws_credential_types::Credentials::new(
                        "AKIDEXAMPLE",
                        "secret",
                        Some("tok+en/=".into()),
                        None,
                        "test",
                    ),
                ),
            )
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let t = token(
            &config,
            "shop",
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        )
        .await
        .unwrap();
        let url = String::from_utf8(
            URL_SAFE_NO_PAD
                .decode(t.strip_prefix(TOKEN_PREFIX).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert!(
            url.starts_with(
                "https://sts.eu-west-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&"
            ),
            "{url}"
        );
        for part in [
            "X-Amz-Algorithm=AWS4%2DHMAC%2DSHA256",
            "X-Amz-Credential=AKIDEXAMPLE%2F20231114%2Feu%2Dwest%2D1%2Fsts%2Faws4%5Frequest",
            "X-Amz-Date=20231114T221320Z",
            "X-Amz-Expires=60",
            "X-Amz-SignedHeaders=host%3Bx%2Dk8s%2Daws%2Did",
            "X-Amz-Security-Token=tok%2Ben%2F%3D",
            "X-Amz-Signature=",
        ] {
            assert!(url.contains(part), "{part} in {url}");
        }
    }
}
