//! The real renew function under `cargo lambda watch`, invoked with the sample scheduled
//! event, against moto (DynamoDB, Secrets Manager, Route 53, SQS) and Pebble (30% of nonces
//! rejected), with DNS-01 through Route 53 and a nameserver answering from moto's records.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use certpilot_core::Tags;
use certpilot_core::model::certificate::{
    AcmeIssuer as IssuerConfig, CertificateSpec, ChallengeConfig, DnsProviderConfig, IssuedMessage,
    KeyType, ManagedCertificate, RenewalPolicy,
};
use certpilot_core::ports::{CertificateStore, SecretStore, SecretVersion};
use certpilot_dynamodb::DynamoStore;
use certpilot_testkit::procs::{shared_moto, workspace_root};

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
        },
        challenge: ChallengeConfig::Dns01 {
            provider: DnsProviderConfig::Route53 { zone_id: None },
        },
        renewal: RenewalPolicy::Auto,
        tags: Tags::new(),
        endpoints: vec![],
        deployments: Vec::new(),
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

    // The next tick has nothing to do.
    let again = watch.invoke("renew", &tick).await;
    assert_eq!(again["results"].as_array().unwrap().len(), 0, "{again}");
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
}
