//! End-to-end tests that need third-party servers (Pebble, moto) live in `tests/tests/`; the
//! scan benchmark is `src/bin/scan_bench.rs`. This library holds what they share.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

pub mod deploy_world;
pub mod estate;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `request` on `stream` and reads the whole response (the server closes, or 10 s).
pub async fn exchange<S>(stream: &mut S, request: &str) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send request");
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    String::from_utf8_lossy(&response).into_owned()
}

/// A DynamoDB client configuration for a moto server at `endpoint_url`, with moto's dummy
/// credentials; callers add interceptors or timeouts before `build()`.
pub fn moto_dynamodb_config(endpoint_url: &str) -> aws_sdk_dynamodb::config::Builder {
    use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
    aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint_url)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
}

/// The shared AWS configuration for a moto server at `endpoint_url` (moto's dummy
/// credentials, us-east-1), for any service's client.
pub fn moto_sdk_config(endpoint_url: &str) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint_url)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(
            aws_sdk_dynamodb::config::Credentials::new("testing", "testing", None, None, "tests"),
        ))
        .timeout_config(certpilot_aws::config::default_timeouts())
        // What `aws_config::load` supplies; assumed-role credentials need both.
        .time_source(aws_smithy_async::time::SystemTimeSource::new())
        .sleep_impl(aws_smithy_async::rt::sleep::TokioSleep::new())
        .build()
}

/// Serves the API's router over `app` on loopback, every request made by `principal` (as a
/// front that authenticated it would say): where it listens. For the benchmarks.
pub async fn serve_router_as(
    app: certpilot_app::App,
    principal: &'static str,
) -> std::net::SocketAddr {
    let state = certpilot_api::ApiState::new(
        app,
        certpilot_core::policy::address::AddressPolicy::default(),
        std::sync::Arc::new(certpilot_api::resolve::SystemResolver),
    );
    let router = certpilot_api::router(state).layer(axum::middleware::from_fn(
        move |mut req: axum::extract::Request, next: axum::middleware::Next| async move {
            req.extensions_mut()
                .insert(certpilot_api::Caller::new(principal));
            next.run(req).await
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(async move { axum::serve(listener, router).await.expect("serve") });
    addr
}

/// Creates the EKS cluster `name` in moto (its endpoint and CA made up there; see
/// `certpilot_testkit::kube_api::EksFront`).
pub async fn create_eks_cluster(aws: &aws_config::SdkConfig, name: &str) {
    aws_sdk_eks::Client::new(aws)
        .create_cluster()
        .name(name)
        .role_arn("arn:aws:iam::123456789012:role/eks-cluster")
        .resources_vpc_config(aws_sdk_eks::types::VpcConfigRequest::builder().build())
        .send()
        .await
        .expect("CreateCluster in moto");
}

/// The Lambda runtime emulator (`cargo lambda watch --only-lambda-apis`) with the workspace's
/// function binaries attached to it, each started on its first invocation with `env` as a
/// deployed function gets it; everything is killed on drop.
///
/// The binaries are the ones `cargo test --workspace` already built (each function crate's
/// own tests need them), with the workspace's features: letting `cargo lambda watch` build
/// them instead compiled the AWS SDK a second time, with other features, for 20 minutes.
pub struct LambdaWatch {
    child: std::process::Child,
    port: String,
    cargo_lambda: std::path::PathBuf,
    env: Vec<(String, String)>,
    functions: std::sync::Mutex<Vec<std::process::Child>>,
    started: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

/// A workspace binary built beside the running test (`target/<profile>/<name>`).
pub fn workspace_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("the test runs from target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: `cargo test --workspace` builds it (its crate's tests need it)",
        path.display()
    );
    path
}

impl LambdaWatch {
    /// Starts the emulator; functions get the AWS environment for moto at `endpoint_url` and
    /// the extra `env` pairs.
    pub fn start(endpoint_url: &str, env: &[(&str, String)]) -> LambdaWatch {
        use std::os::unix::process::CommandExt;
        use std::process::{Command, Stdio};
        let cargo_lambda =
            certpilot_testkit::procs::locate("CERTPILOT_CARGO_LAMBDA", "cargo-lambda");
        let port = certpilot_testkit::procs::free_port().to_string();
        let mut all: Vec<(String, String)> = vec![
            ("AWS_ENDPOINT_URL".into(), endpoint_url.into()),
            ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
            ("AWS_REGION".into(), "us-east-1".into()),
        ];
        all.extend(env.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        let mut watch = Command::new(&cargo_lambda);
        watch
            .args([
                "lambda",
                "watch",
                "--only-lambda-apis",
                "--invoke-address",
                "127.0.0.1",
                "--invoke-port",
                &port,
                "--ignore-changes",
                "--quiet",
            ])
            .current_dir(certpilot_testkit::procs::workspace_root())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        let child = watch.spawn().expect("cargo lambda watch starts");
        // A function started before the runtime API listens exits at once.
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap_or(0))).is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "cargo lambda watch never listened on {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        LambdaWatch {
            child,
            port,
            cargo_lambda,
            env: all,
            functions: std::sync::Mutex::default(),
            started: std::sync::Mutex::default(),
        }
    }

    /// Starts `function`'s binary against the emulator, once.
    fn attach(&self, function: &str) {
        use std::process::{Command, Stdio};
        let mut started = self.started.lock().unwrap_or_else(|e| e.into_inner());
        if !started.insert(function.to_owned()) {
            return;
        }
        let child = Command::new(workspace_binary(function))
            .env_remove("AWS_PROFILE")
            .envs(self.env.iter().cloned())
            // What the Lambda service sets for every function.
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{}/.rt/{function}", self.port),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", function)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
            .env(
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{function}"),
            )
            .env("AWS_LAMBDA_LOG_STREAM_NAME", format!("test/{function}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the function binary starts");
        self.functions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(child);
    }

    /// Invokes `function` with `payload` (JSON), retrying while the emulator starts, and
    /// returns its JSON answer; a function error fails the test.
    pub async fn invoke(&self, function: &str, payload: &serde_json::Value) -> serde_json::Value {
        self.try_invoke(function, payload)
            .await
            .unwrap_or_else(|e| panic!("{function} failed: {e}"))
    }

    /// Invokes `function` with `payload`: its JSON answer, or the error it returned (what
    /// Lambda would retry or dead-letter), as the emulator printed it.
    pub async fn try_invoke(
        &self,
        function: &str,
        payload: &serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        self.attach(function);
        let started = std::time::Instant::now();
        loop {
            let invoke = tokio::process::Command::new(&self.cargo_lambda)
                .args(["lambda", "invoke", function, "--invoke-port", &self.port])
                .args(["--invoke-address", "127.0.0.1"])
                .args(["--data-ascii", &payload.to_string()])
                .current_dir(certpilot_testkit::procs::workspace_root())
                .kill_on_drop(true)
                .output();
            let out = tokio::time::timeout(Duration::from_secs(600), invoke)
                .await
                .unwrap_or_else(|_| panic!("{function} did not answer within 10 minutes"))
                .expect("cargo lambda invoke runs");
            if out.status.success() {
                return Ok(serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
                    panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout))
                }));
            }
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            // A function error is an answer, not an emulator still starting: cargo lambda
            // prints `Error: <errorType>` on a line of its own, then the message.
            let function_error = stderr.lines().next().is_some_and(|l| {
                l.strip_prefix("Error: ").is_some_and(|t| {
                    !t.is_empty()
                        && t.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "._:".contains(c))
                })
            });
            if function_error || stderr.contains("errorType") || stderr.contains("error_type") {
                return Err(stderr);
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "invoke kept failing: {stderr}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

impl Drop for LambdaWatch {
    fn drop(&mut self) {
        for child in self
            .functions
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .iter_mut()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

/// Creates a public hosted zone for `domain` in Route 53 (moto); returns its id.
pub async fn route53_zone(client: &aws_sdk_route53::Client, domain: &str) -> String {
    client
        .create_hosted_zone()
        .name(domain)
        .caller_reference(domain)
        .send()
        .await
        .expect("CreateHostedZone")
        .hosted_zone()
        .expect("the zone")
        .id()
        .trim_start_matches("/hostedzone/")
        .to_owned()
}

/// Changes one record in Route 53 (moto) the way another party would: `value` is the record
/// data as Route 53 takes it (TXT values quoted).
pub async fn route53_change(
    client: &aws_sdk_route53::Client,
    zone: &str,
    action: aws_sdk_route53::types::ChangeAction,
    name: &str,
    kind: aws_sdk_route53::types::RrType,
    value: &str,
) {
    use aws_sdk_route53::types::{Change, ChangeBatch, ResourceRecord, ResourceRecordSet};
    let set = ResourceRecordSet::builder()
        .name(name)
        .r#type(kind)
        .ttl(300)
        .resource_records(ResourceRecord::builder().value(value).build().unwrap())
        .build()
        .unwrap();
    let change = Change::builder()
        .action(action)
        .resource_record_set(set)
        .build()
        .unwrap();
    client
        .change_resource_record_sets()
        .hosted_zone_id(zone)
        .change_batch(ChangeBatch::builder().changes(change).build().unwrap())
        .send()
        .await
        .expect("ChangeResourceRecordSets");
}

/// The TXT values Route 53 (moto) holds at `name` in `zone`, unquoted.
pub async fn route53_txt_values(
    client: &aws_sdk_route53::Client,
    zone: &str,
    name: &str,
) -> Vec<String> {
    use aws_sdk_route53::types::RrType;
    let out = client
        .list_resource_record_sets()
        .hosted_zone_id(zone)
        .start_record_name(name)
        .start_record_type(RrType::Txt)
        .max_items(1)
        .send()
        .await
        .expect("ListResourceRecordSets");
    out.resource_record_sets()
        .iter()
        .filter(|s| s.name().trim_end_matches('.') == name && *s.r#type() == RrType::Txt)
        .flat_map(|s| {
            s.resource_records()
                .iter()
                .map(|r| r.value().trim_matches('"').to_owned())
        })
        .collect()
}

/// Route 53's nameservers as the CA sees them: a DNS server answering TXT questions from
/// moto's records in `zone` at the moment it is asked.
pub async fn route53_nameserver(
    client: &aws_sdk_route53::Client,
    zone: &str,
) -> certpilot_testkit::dns::TxtServer {
    let (client, zone) = (client.clone(), zone.to_owned());
    certpilot_testkit::dns::TxtServer::start(std::sync::Arc::new(move |name: String| {
        let (client, zone) = (client.clone(), zone.clone());
        Box::pin(async move { route53_txt_values(&client, &zone, &name).await })
    }))
    .await
}

/// Pebble validating against the DNS server at `dns` and rejecting 30% of nonces, with its
/// HTTPS CA written to `<dir>/pebble-ca.pem` (returned) in a fresh directory.
pub fn pebble_resolving_through(
    dns: std::net::SocketAddr,
) -> (
    certpilot_testkit::procs::Pebble,
    tempfile::TempDir,
    std::path::PathBuf,
) {
    use certpilot_testkit::procs::{Pebble, PebbleOptions, free_port};
    let pebble = Pebble::start_with(&PebbleOptions {
        http_port: free_port(),
        tls_port: free_port(),
        dns_server: Some(dns),
        nonce_reject: 30,
        ..PebbleOptions::default()
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = dir.path().join("pebble-ca.pem");
    std::fs::write(&ca_file, &pebble.tls_ca_pem).expect("write the CA");
    (pebble, dir, ca_file)
}

/// A verifier that trusts `ca` besides the Mozilla roots (its root is written to `dir`), as
/// the deploy tests prove by handshake with servers holding certificates `ca` signed.
pub fn verifier_trusting(
    ca: &certpilot_testkit::certs::Ca,
    dir: &std::path::Path,
) -> certpilot_core::services::verify::VerifyService {
    use std::sync::Arc;
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.root_pem()).unwrap();
    let mut trust = certpilot_scanner::TrustStore::mozilla();
    trust.add_pem_file(&ca_file).unwrap();
    let scanner = certpilot_core::services::scan::ScanService::new(
        Arc::new(certpilot_scanner::TlsProber::new(
            trust,
            certpilot_scanner::Deadlines::default(),
        )),
        Arc::new(certpilot_core::ports::SystemClock),
        certpilot_core::ports::ScanLimits {
            concurrency: 16,
            target_timeout: Duration::from_secs(5),
        },
    );
    certpilot_core::services::verify::VerifyService::new(scanner)
}

/// Whether `target` serves the certificate `fingerprint` (within 5 s), by handshake.
pub async fn serves(ca: &certpilot_testkit::certs::Ca, target: &str, fingerprint: &str) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let checks = verifier_trusting(ca, dir.path())
        .verify(
            fingerprint,
            vec![certpilot_core::model::target::ScanRequest::new(
                target.parse().unwrap(),
            )],
            certpilot_core::services::verify::VerifySettings {
                deadline: Duration::from_secs(5),
                interval: Duration::from_millis(200),
            },
        )
        .await;
    !checks.is_empty() && checks.iter().all(|c| c.is_verified())
}

/// `leaf` as issued now for 90 days, its key at `key_version` in the secret store.
pub fn issued(
    leaf: &certpilot_testkit::certs::Leaf,
    key_version: &str,
) -> certpilot_core::model::certificate::IssuedCertificate {
    let now = time::OffsetDateTime::now_utc();
    certpilot_core::model::certificate::IssuedCertificate {
        fingerprint: leaf.fingerprint(),
        serial: "01".into(),
        not_before: now,
        not_after: now + time::Duration::days(90),
        issued_at: now,
        ari_id: None,
        profile: None,
        chain_pem: leaf.chain_pem(),
        key_version: key_version.into(),
        order_url: "https://ca.example/order/1".into(),
        key_holder: None,
        stacked: vec![],
    }
}

/// SNS topics read back through SQS on moto: what a subscriber receives.
pub mod sns_queue {
    use serde_json::Value;

    /// A topic named `name` with an SQS queue subscribed to it (with `filter` as its filter
    /// policy, raw or in SNS's envelope): the topic's ARN and the queue's URL.
    pub async fn topic_with_queue(
        config: &aws_config::SdkConfig,
        name: &str,
        filter: Option<&Value>,
        raw: bool,
    ) -> (String, String) {
        let sns = aws_sdk_sns::Client::new(config);
        let topic = sns
            .create_topic()
            .name(name)
            .send()
            .await
            .unwrap()
            .topic_arn
            .unwrap();
        let (url, arn) = queue(config, &format!("{name}-sub")).await;
        let mut subscribe = sns
            .subscribe()
            .topic_arn(&topic)
            .protocol("sqs")
            .endpoint(&arn);
        if let Some(f) = filter {
            subscribe = subscribe.attributes("FilterPolicy", f.to_string());
        }
        if raw {
            subscribe = subscribe.attributes("RawMessageDelivery", "true");
        }
        subscribe.send().await.unwrap();
        (topic, url)
    }

    /// A new SQS queue: its URL and ARN.
    pub async fn queue(config: &aws_config::SdkConfig, name: &str) -> (String, String) {
        use aws_sdk_sqs::types::QueueAttributeName;
        let sqs = aws_sdk_sqs::Client::new(config);
        let url = sqs
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap()[&QueueAttributeName::QueueArn]
            .clone();
        (url, arn)
    }

    /// Every message on the queue now (received until a receive comes back empty), deleted.
    pub async fn drain(
        config: &aws_config::SdkConfig,
        url: &str,
    ) -> Vec<aws_sdk_sqs::types::Message> {
        let sqs = aws_sdk_sqs::Client::new(config);
        let mut all = Vec::new();
        loop {
            let got = sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .message_attribute_names("All")
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap()
                .messages
                .unwrap_or_default();
            if got.is_empty() {
                return all;
            }
            for m in &got {
                sqs.delete_message()
                    .queue_url(url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
            all.extend(got);
        }
    }
}

/// The event SQS hands a function for `message`, received from the queue named `queue`.
pub fn sqs_event(message: &aws_sdk_sqs::types::Message, queue: &str) -> serde_json::Value {
    serde_json::json!({"Records": [{
        "messageId": message.message_id().unwrap_or_default(),
        "receiptHandle": message.receipt_handle().unwrap_or_default(),
        "body": message.body().unwrap_or_default(),
        "attributes": {},
        "messageAttributes": {},
        "md5OfBody": message.md5_of_body().unwrap_or_default(),
        "eventSource": "aws:sqs",
        "eventSourceARN": format!("arn:aws:sqs:us-east-1:123456789012:{queue}"),
        "awsRegion": "us-east-1"
    }]})
}
