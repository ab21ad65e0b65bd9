//! The real renew and deploy functions under `cargo lambda watch`, against moto (DynamoDB,
//! Secrets Manager, Route 53, SQS, ACM, ELBv2, CloudFront, API Gateway) and Pebble (30% of
//! nonces rejected): the renew function issues through DNS-01 in Route 53 (a nameserver
//! answers Pebble from moto's records) and announces the certificate; the deploy function
//! takes that very message, installs the certificate on a load balancer, a distribution and an
//! API domain (TLS servers stand in for their data planes) and proves each serves it; a node
//! that keeps the old certificate makes the message fail and the record say `not_serving`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use certpilot_core::Tags;
use certpilot_core::model::certificate::{
    AcmeIssuer as IssuerConfig, CertificateSpec, ChallengeConfig, DnsProviderConfig, IssuedMessage,
    KeyType, ManagedCertificate, RenewalPolicy,
};
use certpilot_core::model::deploy::{Deployment, DeploymentStatus};
use certpilot_core::ports::{CertificateStore, SecretStore, SecretVersion};
use certpilot_dynamodb::DynamoStore;
use certpilot_e2e::estate::Estate;
use certpilot_testkit::certs::{Ca, Leaf};
use certpilot_testkit::procs::{shared_moto, workspace_root};

fn sqs_event(message: &aws_sdk_sqs::types::Message) -> serde_json::Value {
    certpilot_e2e::sqs_event(message, "deploy")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_renew_function_issues_stores_the_key_and_announces_the_certificate() {
    let moto = shared_moto();
    let aws = certpilot_e2e::moto_sdk_config(&moto.endpoint_url);
    let run = std::process::id();
    let table = format!("renew-fn-{run}");
    let store = DynamoStore::new(certpilot_dynamodb::Client::new(&aws), &table);
    store.create_table().await.unwrap();
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let queue_url = sqs
        .create_queue()
        .queue_name(format!("deploy-{run}"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let route53 = aws_sdk_route53::Client::new(&aws);
    let domain = format!("fn-{run}.certpilot.test");
    let zone = certpilot_e2e::route53_zone(&route53, &domain).await;

    // Where the certificate is installed: a load balancer, a distribution, a REST API domain
    // (bound to an ARN certpilot adopts), each with a TLS server standing in for its data plane.
    let estate = Estate::new(&moto.endpoint_url);
    let legacy = Ca::new("Team CA").leaf(&[&domain]).build();
    let legacy_arn = estate.import(&legacy).await;
    let adopted_arn = estate.import(&legacy).await;
    let listener = estate.listener(&format!("fn-{run}"), &legacy_arn).await;
    let distribution = estate
        .distribution(&legacy_arn, &format!("fn-cf-{run}"))
        .await;
    let api_domain = format!("api.{domain}");
    estate.rest_domain(&api_domain, &adopted_arn).await;
    let http_domain = format!("http.{domain}");
    let http_arn = estate.import(&legacy).await;
    estate.http_domain(&http_domain, &http_arn).await;
    let sni_listener = estate.listener(&format!("fn-sni-{run}"), &legacy_arn).await;
    let sni = estate.follow_listener(&sni_listener, true).await;
    let http = estate.follow_http_domain(&http_domain).await;
    let alb = estate.follow_listener(&listener, false).await;
    let cdn = estate.follow_distribution(&distribution).await;
    let api = estate.follow_rest_domain(&api_domain).await;
    let deployment = |name: &str, target: (&str, serde_json::Value), endpoint: String| {
        let mut d = Deployment::new(name, target.0).with_endpoint(endpoint.parse().unwrap());
        d.settings = target.1.as_object().cloned().unwrap_or_default();
        d.verify_deadline = Some(10);
        d
    };
    let deployments = vec![
        deployment(
            "alb",
            ("elbv2-listener", serde_json::json!({"listener-arn": listener.clone(), "sni": false})),
            alb.endpoint(),
        ),
        deployment(
            "cdn",
            ("cloudfront", serde_json::json!({"distribution-id": distribution.clone()})),
            cdn.endpoint(),
        ),
        deployment(
            "api",
            ("api-gateway", serde_json::json!({"domain-name": api_domain.clone(), "region": "us-east-1", "api": "rest"})),
            api.endpoint(),
        )
        .with("certificate-arn", adopted_arn.clone()),
        deployment(
            "alb-sni",
            ("elbv2-listener", serde_json::json!({"listener-arn": sni_listener.clone(), "sni": true})),
            sni.endpoint(),
        ),
        deployment(
            "http-api",
            ("api-gateway", serde_json::json!({"domain-name": http_domain.clone(), "region": "us-east-1", "api": "http"})),
            http.endpoint(),
        )
        .with("certificate-arn", http_arn.clone()),
        Deployment {
            endpoints: vec![],
            ..deployment(
                "acm",
                ("acm-import", serde_json::json!({"region": "eu-west-1"})),
                "unused:443".into(),
            )
        },
    ];

    let nameserver = certpilot_e2e::route53_nameserver(&route53, &zone).await;
    let (pebble, _dir, ca_file) = certpilot_e2e::pebble_resolving_through(nameserver.addr);

    // What `certpilot --store dynamodb:TABLE certificates add …` stores.
    let spec = CertificateSpec {
        names: vec![
            domain.parse().unwrap(),
            format!("*.{domain}").parse().unwrap(),
        ],
        key_type: KeyType::EcdsaP256,
        issuer: IssuerConfig {
            directory: pebble.directory_url.clone(),
            contact: vec!["mailto:ops@certpilot.test".into()],
            eab: None,
            profile: None,
            account_secret: None,
        },
        challenge: ChallengeConfig::Dns01 {
            provider: DnsProviderConfig::Route53 { zone_id: None },
        },
        renewal: RenewalPolicy::Auto,
        tags: Tags::new(),
        endpoints: vec![],
        deployments,
        acm: None,
    };
    store
        .add_certificate(&ManagedCertificate::new(
            "shop".into(),
            spec,
            time::OffsetDateTime::now_utc(),
        ))
        .await
        .unwrap();

    let prefix = format!("renew-fn-{run}/");
    let watch = certpilot_e2e::LambdaWatch::start(
        &moto.endpoint_url,
        &[
            ("CERTPILOT_TABLE", table.clone()),
            ("CERTPILOT_DEPLOY_QUEUE_URL", queue_url.clone()),
            ("CERTPILOT_SECRETS_PREFIX", prefix.clone()),
            ("CERTPILOT_ACME_CA_FILE", ca_file.display().to_string()),
            ("CERTPILOT_ACME_TIMEOUT", "30s".into()),
            ("CERTPILOT_VERIFY_INTERVAL", "200ms".into()),
            ("CERTPILOT_VERIFY_MAX_DEADLINE", "10s".into()),
        ],
    );
    let tick: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join("infra/events/scheduled.json")).unwrap(),
    )
    .unwrap();
    let summary = watch.invoke("renew", &tick).await;
    assert_eq!(summary["issued"], 1, "{summary}");
    assert_eq!(summary["failed"], 0, "{summary}");
    let fingerprint = summary["results"][0]["fingerprint"].as_str().unwrap();

    // The record in DynamoDB has the certificate and no key; the key is current in Secrets
    // Manager under the version the record names.
    let cert = store.certificate("shop").await.unwrap().unwrap();
    let current = cert.current.clone().unwrap();
    assert_eq!(current.fingerprint, fingerprint);
    let record = serde_json::to_string(&cert).unwrap();
    assert!(!record.contains("PRIVATE KEY"));
    let secrets = certpilot_aws::SecretsManagerStore::new(
        aws_sdk_secretsmanager::Client::new(&aws),
        prefix,
        None,
    );
    let (version, key) = secrets
        .get("certificate-key/shop", &SecretVersion::Current)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(version, current.key_version);
    assert!(key.expose_str().unwrap().contains("PRIVATE KEY"));
    assert!(!record.contains(key.expose_str().unwrap().lines().nth(1).unwrap()));

    // One "issued" message on the deploy queue, naming the new certificate.
    let received = sqs
        .receive_message()
        .queue_url(&queue_url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    let messages = received.messages();
    assert_eq!(messages.len(), 1);
    let message: IssuedMessage = serde_json::from_str(messages[0].body().unwrap()).unwrap();
    assert_eq!(message.id, "shop");
    assert_eq!(message.fingerprint, fingerprint);
    assert_eq!(message.key_version, current.key_version);
    assert!(!cert.is_deployed(), "issued is not yet done");

    // The deploy function takes the message: every target serves the certificate.
    estate.keyring.remember(&Leaf::from_pem(
        &current.chain_pem,
        key.expose_str().unwrap(),
    ));
    let event = sqs_event(&messages[0]);
    let answer = watch.invoke("deploy", &event).await;
    assert_eq!(
        answer["batchItemFailures"],
        serde_json::json!([]),
        "{answer}"
    );
    let cert = store.certificate("shop").await.unwrap().unwrap();
    assert!(cert.is_deployed(), "{:?}", cert.deployments);
    assert_eq!(
        estate.acm_fingerprint(&adopted_arn).await,
        fingerprint,
        "the adopted ARN was re-imported"
    );
    // Delivered again: nothing changes, nothing fails.
    let answer = watch.invoke("deploy", &event).await;
    assert_eq!(
        answer["batchItemFailures"],
        serde_json::json!([]),
        "{answer}"
    );
    assert_eq!(
        store
            .certificate("shop")
            .await
            .unwrap()
            .unwrap()
            .deployments,
        cert.deployments
    );

    // The next tick has nothing to do.
    let again = watch.invoke("renew", &tick).await;
    assert_eq!(again["results"].as_array().unwrap().len(), 0, "{again}");
    // ACM warns about the certificate certpilot imported at a deployment: it is checked
    // (not dropped as "not managed") and, being far from due, left alone.
    let expiring = serde_json::json!({
        "version": "0",
        "id": "9c95e8e4-96a4-ef3f-b739-b6aa5b193afb",
        "detail-type": "ACM Certificate Approaching Expiration",
        "source": "aws.acm",
        "account": "123456789012",
        "time": "2026-12-02T00:00:00Z",
        "region": "us-east-1",
        "resources": [adopted_arn],
        "detail": {"DaysToExpiry": 31, "CommonName": domain}
    });
    let checked = watch.invoke("renew", &expiring).await;
    assert_eq!(checked["results"][0]["id"], "shop", "{checked}");
    assert_eq!(checked["results"][0]["outcome"], "not_due", "{checked}");
    // An operator's forced renewal through the same function issues a new certificate.
    let forced = watch
        .invoke(
            "renew",
            &serde_json::json!({"ids": ["shop"], "force": true}),
        )
        .await;
    assert_eq!(forced["issued"], 1, "{forced}");
    assert_ne!(forced["results"][0]["fingerprint"], fingerprint);
    let (_, previous) = secrets
        .get("certificate-key/shop", &SecretVersion::Previous)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(previous, key, "the former key is kept as AWSPREVIOUS");

    // The outage, through the functions: the new certificate is issued and its message
    // delivered, the load balancer's API takes it, its nodes keep serving the first one.
    alb.freeze();
    let renewed = store.certificate("shop").await.unwrap().unwrap();
    let renewed_current = renewed.current.clone().unwrap();
    let (_, renewed_key) = secrets
        .get("certificate-key/shop", &SecretVersion::Current)
        .await
        .unwrap()
        .unwrap();
    estate.keyring.remember(&Leaf::from_pem(
        &renewed_current.chain_pem,
        renewed_key.expose_str().unwrap(),
    ));
    let received = sqs
        .receive_message()
        .queue_url(&queue_url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    let message = received
        .messages()
        .iter()
        .find(|m| m.body().unwrap().contains(&renewed_current.fingerprint))
        .expect("the forced renewal's message");
    let answer = watch.invoke("deploy", &sqs_event(message)).await;
    assert_eq!(
        answer["batchItemFailures"][0]["itemIdentifier"],
        message.message_id().unwrap(),
        "a renewal not served is retried: {answer}"
    );
    let cert = store.certificate("shop").await.unwrap().unwrap();
    assert!(!cert.is_deployed());
    let alb_record = cert.deployment_record("alb").unwrap();
    assert_eq!(alb_record.state.status, DeploymentStatus::NotServing);
    assert!(
        alb_record
            .state
            .detail
            .as_deref()
            .unwrap()
            .contains(fingerprint),
        "names what the endpoint serves instead: {alb_record:?}"
    );
    assert_eq!(
        cert.deployment_record("cdn").unwrap().state.status,
        DeploymentStatus::Verified
    );

    // Once the nodes follow again, the scheduled sweep finishes the job.
    alb.thaw();
    let swept = watch.invoke("deploy", &tick).await;
    assert_eq!(swept["verified"], 1, "{swept}");
    assert!(
        store
            .certificate("shop")
            .await
            .unwrap()
            .unwrap()
            .is_deployed()
    );
}
