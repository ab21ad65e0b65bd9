//! An AWS estate on moto (a load balancer with two HTTPS listeners, a CloudFront distribution,
//! REST and HTTP API custom domains, each first serving a team's own "legacy" certificate) and,
//! for each, a real TLS server standing in for its data plane.
//!
//! moto only models the control plane, so each stand-in polls it (every 100 ms) for the ACM
//! certificate bound, reads that certificate from ACM, and serves it with the matching key from
//! a keyring the test fills: what the real data plane does once a change propagates. A stand-in
//! can be frozen, which is the outage certpilot exists for: the API accepted the new
//! certificate, but the endpoint keeps serving the old one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use certpilot_testkit::certs::Leaf;
use certpilot_testkit::servers::Swappable;
use futures::future::BoxFuture;
use tokio::task::JoinHandle;

/// The keys a data plane was given at import: certificates the test made itself, and any key
/// in the directories named (a secret store's files), matched to a certificate by public key.
#[derive(Clone, Default)]
pub struct Keyring {
    leaves: Arc<Mutex<HashMap<String, Leaf>>>,
    key_dirs: Arc<Mutex<Vec<std::path::PathBuf>>>,
}

impl Keyring {
    /// Remembers `leaf` (chain and key) under its fingerprint.
    pub fn remember(&self, leaf: &Leaf) {
        self.leaves.lock().unwrap().insert(
            leaf.fingerprint(),
            Leaf::from_pem(&leaf.chain_pem(), &leaf.key_pem()),
        );
    }

    /// Also looks for keys in the files under `dir`.
    pub fn watch_keys(&self, dir: &std::path::Path) {
        self.key_dirs.lock().unwrap().push(dir.to_owned());
    }

    /// What to serve for the certificate `chain_pem` (leaf first).
    fn get(&self, chain_pem: &str) -> Option<Leaf> {
        let fingerprint = certpilot_deploy_aws::acm::pem_fingerprint(chain_pem)?;
        if let Some(l) = self.leaves.lock().unwrap().get(&fingerprint) {
            return Some(Leaf::from_pem(&l.chain_pem(), &l.key_pem()));
        }
        let (_, block) = x509_parser::pem::parse_x509_pem(chain_pem.as_bytes()).ok()?;
        let cert = block.parse_x509().ok()?;
        let spki = cert.tbs_certificate.subject_pki.raw.to_vec();
        let dirs = self.key_dirs.lock().unwrap().clone();
        for dir in dirs {
            for key_pem in key_files(&dir) {
                let Ok(pair) = rcgen::KeyPair::from_pem(&key_pem) else {
                    continue;
                };
                if rcgen::PublicKeyData::subject_public_key_info(&pair) == spki {
                    return Some(Leaf::from_pem(chain_pem, &key_pem));
                }
            }
        }
        None
    }
}

/// Every PKCS#8 key PEM in the files under `dir`.
fn key_files(dir: &std::path::Path) -> Vec<String> {
    let mut keys = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return keys;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            keys.extend(key_files(&path));
        } else if let Ok(text) = std::fs::read_to_string(&path)
            && text.contains("-----BEGIN PRIVATE KEY-----")
        {
            keys.push(text);
        }
    }
    keys
}

/// A data-plane stand-in: serves what its control plane names until frozen.
pub struct DataPlane {
    plane: Arc<Swappable>,
    frozen: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl DataPlane {
    /// `127.0.0.1:port`.
    pub fn endpoint(&self) -> String {
        self.plane.server().target()
    }

    /// Stops following the control plane (keeps serving what it serves now).
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }

    /// Follows the control plane again.
    pub fn thaw(&self) {
        self.frozen.store(false, Ordering::SeqCst);
    }
}

impl Drop for DataPlane {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads which ACM ARN a target serves.
pub type ReadBound = Arc<dyn Fn() -> BoxFuture<'static, Option<String>> + Send + Sync>;

/// A [`ReadBound`] calling `read` with a clone of `with` (a client and what to look up).
fn reading<C, F, Fut>(with: C, read: F) -> ReadBound
where
    C: Clone + Send + Sync + 'static,
    F: Fn(C) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Option<String>> + Send + 'static,
{
    let read = Arc::new(read);
    Arc::new(move || {
        let (with, read) = (with.clone(), read.clone());
        Box::pin(async move { read(with).await })
    })
}

/// The estate's clients and keyring.
pub struct Estate {
    /// The SDK configuration (moto, us-east-1).
    pub aws: aws_config::SdkConfig,
    /// ACM in us-east-1.
    pub acm: aws_sdk_acm::Client,
    /// ELBv2.
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    /// CloudFront.
    pub cloudfront: aws_sdk_cloudfront::Client,
    /// API Gateway (REST).
    pub apigw: aws_sdk_apigateway::Client,
    /// API Gateway (HTTP).
    pub apigwv2: aws_sdk_apigatewayv2::Client,
    /// Keys the data planes serve.
    pub keyring: Keyring,
    endpoint_url: String,
}

impl Estate {
    /// Clients for the moto server at `endpoint_url`.
    pub fn new(endpoint_url: &str) -> Estate {
        let aws = crate::moto_sdk_config(endpoint_url);
        Estate {
            acm: aws_sdk_acm::Client::new(&aws),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(&aws),
            cloudfront: aws_sdk_cloudfront::Client::new(&aws),
            apigw: aws_sdk_apigateway::Client::new(&aws),
            apigwv2: aws_sdk_apigatewayv2::Client::new(&aws),
            aws,
            keyring: Keyring::default(),
            endpoint_url: endpoint_url.to_owned(),
        }
    }

    /// Imports `leaf` the way a team would have by hand; returns its ARN.
    pub async fn import(&self, leaf: &Leaf) -> String {
        use aws_sdk_acm::primitives::Blob;
        self.keyring.remember(leaf);
        let chain = leaf.chain_pem();
        let (_, rest) = certpilot_core::model::certificate::split_chain(&chain).unwrap();
        let mut call = self
            .acm
            .import_certificate()
            .certificate(Blob::new(leaf.pem().into_bytes()))
            .private_key(Blob::new(leaf.key_pem().into_bytes()));
        if !rest.is_empty() {
            call = call.certificate_chain(Blob::new(rest.into_bytes()));
        }
        call.send().await.unwrap().certificate_arn.unwrap()
    }

    /// The fingerprint of what ACM holds at `arn`.
    pub async fn acm_fingerprint(&self, arn: &str) -> String {
        let out = self
            .acm
            .get_certificate()
            .certificate_arn(arn)
            .send()
            .await
            .unwrap();
        certpilot_deploy_aws::acm::pem_fingerprint(&out.certificate.unwrap()).unwrap()
    }

    /// A load balancer (named `name`) with an HTTPS listener serving `default_arn`; returns
    /// the listener's ARN.
    pub async fn listener(&self, name: &str, default_arn: &str) -> String {
        use aws_sdk_elasticloadbalancingv2::types::{
            Action, ActionTypeEnum, Certificate, FixedResponseActionConfig, ProtocolEnum,
        };
        let subnets = self.default_subnets().await;
        let lb = self
            .elb
            .create_load_balancer()
            .name(name)
            .set_subnets(Some(subnets))
            .send()
            .await
            .unwrap();
        let lb_arn = lb.load_balancers()[0].load_balancer_arn.clone().unwrap();
        let listener = self
            .elb
            .create_listener()
            .load_balancer_arn(lb_arn)
            .protocol(ProtocolEnum::Https)
            .port(443)
            .certificates(Certificate::builder().certificate_arn(default_arn).build())
            .default_actions(
                Action::builder()
                    .r#type(ActionTypeEnum::FixedResponse)
                    .fixed_response_config(
                        FixedResponseActionConfig::builder()
                            .status_code("200")
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .unwrap();
        listener.listeners()[0].listener_arn.clone().unwrap()
    }

    /// A CloudFront distribution serving `arn`; returns its id.
    pub async fn distribution(&self, arn: &str, caller: &str) -> String {
        use aws_sdk_cloudfront::types::*;
        let config = DistributionConfig::builder()
            .caller_reference(caller)
            .comment("checkout")
            .enabled(true)
            .origins(
                Origins::builder()
                    .quantity(1)
                    .items(
                        Origin::builder()
                            .id("shop")
                            .domain_name("shop-origin.example.com")
                            .custom_origin_config(
                                CustomOriginConfig::builder()
                                    .http_port(80)
                                    .https_port(443)
                                    .origin_protocol_policy(OriginProtocolPolicy::HttpsOnly)
                                    .build()
                                    .unwrap(),
                            )
                            .build()
                            .unwrap(),
                    )
                    .build()
                    .unwrap(),
            )
            .default_cache_behavior(
                DefaultCacheBehavior::builder()
                    .target_origin_id("shop")
                    .viewer_protocol_policy(ViewerProtocolPolicy::RedirectToHttps)
                    .build()
                    .unwrap(),
            )
            .viewer_certificate(
                ViewerCertificate::builder()
                    .acm_certificate_arn(arn)
                    .ssl_support_method(SslSupportMethod::SniOnly)
                    .minimum_protocol_version(MinimumProtocolVersion::TlSv122021)
                    .cloud_front_default_certificate(false)
                    .build(),
            )
            .build()
            .unwrap();
        let out = self
            .cloudfront
            .create_distribution()
            .distribution_config(config)
            .send()
            .await
            .unwrap();
        out.distribution.unwrap().id
    }

    /// The distribution's whole configuration, to check that a deploy kept it.
    pub async fn distribution_config(
        &self,
        id: &str,
    ) -> aws_sdk_cloudfront::types::DistributionConfig {
        self.cloudfront
            .get_distribution_config()
            .id(id)
            .send()
            .await
            .unwrap()
            .distribution_config
            .unwrap()
    }

    /// A regional REST API custom domain bound to `arn`.
    pub async fn rest_domain(&self, name: &str, arn: &str) {
        use aws_sdk_apigateway::types::{EndpointConfiguration, EndpointType};
        self.apigw
            .create_domain_name()
            .domain_name(name)
            .regional_certificate_arn(arn)
            .endpoint_configuration(
                EndpointConfiguration::builder()
                    .types(EndpointType::Regional)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }

    /// An HTTP API custom domain bound to `arn`.
    pub async fn http_domain(&self, name: &str, arn: &str) {
        use aws_sdk_apigatewayv2::types::{DomainNameConfiguration, EndpointType};
        self.apigwv2
            .create_domain_name()
            .domain_name(name)
            .domain_name_configurations(
                DomainNameConfiguration::builder()
                    .certificate_arn(arn)
                    .endpoint_type(EndpointType::Regional)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }

    /// A stand-in for `listener`'s data plane: the default certificate, or (`sni`) the SNI
    /// certificate added last.
    pub async fn follow_listener(&self, listener: &str, sni: bool) -> DataPlane {
        let reader = reading(
            (self.elb.clone(), listener.to_owned()),
            move |(elb, listener)| async move {
                let out = elb
                    .describe_listener_certificates()
                    .listener_arn(&listener)
                    .send()
                    .await
                    .ok()?;
                if sni {
                    return out
                        .certificates()
                        .iter()
                        .rfind(|c| c.is_default != Some(true))
                        .and_then(|c| c.certificate_arn.clone());
                }
                let out = elb
                    .describe_listeners()
                    .listener_arns(&listener)
                    .send()
                    .await
                    .ok()?;
                out.listeners()[0].certificates()[0].certificate_arn.clone()
            },
        );
        self.follow(reader).await
    }

    /// A stand-in for a distribution's edge.
    pub async fn follow_distribution(&self, id: &str) -> DataPlane {
        let reader = reading(
            (self.cloudfront.clone(), id.to_owned()),
            |(cf, id)| async move {
                let out = cf.get_distribution_config().id(&id).send().await.ok()?;
                out.distribution_config?
                    .viewer_certificate?
                    .acm_certificate_arn
            },
        );
        self.follow(reader).await
    }

    /// A stand-in for a REST API domain.
    pub async fn follow_rest_domain(&self, name: &str) -> DataPlane {
        let reader = reading(
            (self.apigw.clone(), name.to_owned()),
            |(api, name)| async move {
                let out = api.get_domain_name().domain_name(&name).send().await.ok()?;
                out.regional_certificate_arn.or(out.certificate_arn)
            },
        );
        self.follow(reader).await
    }

    /// A stand-in for an HTTP API domain.
    pub async fn follow_http_domain(&self, name: &str) -> DataPlane {
        let reader = reading(
            (self.apigwv2.clone(), name.to_owned()),
            |(api, name)| async move {
                let out = api.get_domain_name().domain_name(&name).send().await.ok()?;
                out.domain_name_configurations?
                    .first()?
                    .certificate_arn
                    .clone()
            },
        );
        self.follow(reader).await
    }

    /// A stand-in that serves what `read` names, once it is serving something.
    pub async fn follow(&self, read: ReadBound) -> DataPlane {
        let plane = Arc::new(Swappable::start().await);
        let frozen = Arc::new(AtomicBool::new(false));
        let (acm, keyring) = (self.acm.clone(), self.keyring.clone());
        let (p, f) = (plane.clone(), frozen.clone());
        let sync = move || {
            let (read, acm, keyring, p, f) = (
                read.clone(),
                acm.clone(),
                keyring.clone(),
                p.clone(),
                f.clone(),
            );
            async move {
                if f.load(Ordering::SeqCst) {
                    return;
                }
                let Some(arn) = read().await else { return };
                let Ok(out) = acm.get_certificate().certificate_arn(&arn).send().await else {
                    return;
                };
                let Some(leaf_pem) = out.certificate else {
                    return;
                };
                let chain = format!(
                    "{}\n{}",
                    leaf_pem.trim(),
                    out.certificate_chain.unwrap_or_default()
                );
                if let Some(leaf) = keyring.get(&chain) {
                    p.serve(&leaf);
                }
            }
        };
        sync().await;
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                sync().await;
            }
        });
        DataPlane {
            plane,
            frozen,
            task,
        }
    }

    /// The default VPC's subnets, through EC2's query API (the SDK's EC2 crate is too heavy
    /// to build for one call).
    async fn default_subnets(&self) -> Vec<String> {
        let authority = self
            .endpoint_url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let body = "Action=DescribeSubnets&Version=2016-11-15";
        let request = format!(
            "POST / HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/x-www-form-urlencoded\r\nAuthorization: AWS4-HMAC-SHA256 Credential=testing/20261122/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let mut stream = tokio::net::TcpStream::connect(&authority).await.unwrap();
        let response = crate::exchange(&mut stream, &request).await;
        let subnets: Vec<String> = response
            .split("<subnetId>")
            .skip(1)
            .filter_map(|s| s.split("</subnetId>").next())
            .map(str::to_owned)
            .collect();
        assert!(
            !subnets.is_empty(),
            "moto has no default subnets: {response}"
        );
        subnets
    }
}
