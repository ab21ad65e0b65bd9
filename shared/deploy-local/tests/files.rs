//! The `files` kind on a real directory: the deploy contract, taking over an existing
//! directory, the reload command's environment and failures, and pruning.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use certpilot_core::model::certificate::KeyType;
use certpilot_core::model::deploy::{Deployment, Unit};
use certpilot_core::ports::{DeployError, DeployMaterial, DeployRequest, DeployTargets};
use certpilot_deploy_local::files::Kind;
use certpilot_testkit::certs::Ca;
use certpilot_testkit::deploy_contract::{deploy_target_contract, material};

const NAME: &str = "shop.example.test";

fn registry() -> DeployTargets {
    let mut targets = DeployTargets::new();
    let (descriptor, factory) = Kind::entry();
    targets.register(descriptor, factory);
    targets
}

fn unit(dir: &Path, reload: Option<&str>) -> Unit {
    let mut d = Deployment::new("web", "files")
        .with("dir", dir.to_str().unwrap())
        .with_endpoint(format!("{NAME}:443").parse().unwrap());
    if let Some(r) = reload {
        d = d.with("reload", r);
    }
    d.resolved_units(&[]).remove(0)
}

fn certificates(n: usize) -> Vec<DeployMaterial> {
    let ca = Ca::new("Files Test CA");
    (0..n)
        .map(|_| material(&ca.leaf(&[NAME]).build(), KeyType::EcdsaP256, &[NAME]))
        .collect()
}

fn request<'a>(
    unit: &'a Unit,
    certificate: &'a DeployMaterial,
    previous: Option<&'a DeployMaterial>,
) -> DeployRequest<'a> {
    DeployRequest {
        id: "shop",
        unit,
        certificate,
        previous,
        record: None,
    }
}

/// Deploys `cert` at `unit`, expecting a refusal.
async fn refused(unit: &Unit, cert: &DeployMaterial) -> DeployError {
    registry()
        .target(unit)
        .await
        .unwrap()
        .deploy(request(unit, cert, None))
        .await
        .unwrap_err()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[tokio::test]
async fn files_keeps_the_deploy_target_contract() {
    let root = tempfile::tempdir().unwrap();
    let certs = certificates(2);
    let unit = unit(&root.path().join("shop"), Some("true"));
    deploy_target_contract(&registry(), &unit, &certs[0], &certs[1]).await;
}

#[tokio::test]
async fn the_server_reads_whole_versions_through_one_symlink_and_the_key_stays_private() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("shop");
    let certs = certificates(1);
    let unit = unit(&dir, None);
    let target = registry().target(&unit).await.unwrap();
    let deployed = target
        .deploy(request(&unit, &certs[0], None))
        .await
        .unwrap();
    let version = deployed.handle.unwrap();
    assert_eq!(
        std::fs::read_link(&dir).unwrap(),
        Path::new("shop.versions").join(&version),
        "a relative link, so the tree can be moved or mounted elsewhere"
    );
    // Line endings aside, the files are the chain as issued, split.
    let norm = |s: &str| s.replace("\r\n", "\n").trim().to_owned();
    let chain = norm(&certs[0].chain_pem);
    let (leaf, rest) = (
        norm(&read(&dir.join("cert.pem"))),
        norm(&read(&dir.join("chain.pem"))),
    );
    assert_eq!(norm(&read(&dir.join("fullchain.pem"))), chain);
    assert!(chain.starts_with(&leaf) && chain.ends_with(&rest) && !rest.contains(&leaf));
    assert_eq!(
        read(&dir.join("privkey.pem")).as_bytes(),
        certs[0].key.as_ref().unwrap().expose()
    );
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.join("privkey.pem")), 0o600);
    assert_eq!(mode(&root.path().join("shop.versions")), 0o700);
}

#[tokio::test]
async fn an_existing_directory_is_taken_over_once_and_kept_as_the_version_to_roll_back_to() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("shop");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("fullchain.pem"), "what certbot left").unwrap();
    std::fs::write(dir.join("privkey.pem"), "its key").unwrap();
    let certs = certificates(1);
    let unit = unit(&dir, None);
    let target = registry().target(&unit).await.unwrap();
    let deployed = target
        .deploy(request(&unit, &certs[0], None))
        .await
        .unwrap();
    assert_eq!(deployed.replaced.as_deref(), Some("before-certpilot"));
    assert!(std::fs::symlink_metadata(&dir).unwrap().is_symlink());
    let kept = root.path().join("shop.versions/before-certpilot");
    assert_eq!(read(&kept.join("fullchain.pem")), "what certbot left");

    // Not served: back to the server's own files, through the same symlink.
    target
        .roll_back(request(&unit, &certs[0], None), Some(&deployed))
        .await
        .unwrap();
    assert_eq!(read(&dir.join("fullchain.pem")), "what certbot left");
    assert_eq!(read(&dir.join("privkey.pem")), "its key");
}

#[tokio::test]
async fn only_the_current_and_previous_versions_are_kept_after_finish() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("shop");
    let certs = certificates(3);
    let unit = unit(&dir, None);
    let targets = registry();
    let mut previous = None;
    let mut handles = Vec::new();
    for cert in &certs {
        let target = targets.target(&unit).await.unwrap();
        let deployed = target.deploy(request(&unit, cert, previous)).await.unwrap();
        target.finish(&deployed).await.unwrap();
        handles.push(deployed.handle.unwrap());
        previous = Some(cert);
    }
    let mut left: Vec<String> = std::fs::read_dir(root.path().join("shop.versions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    let mut expected = vec![handles[1].clone(), handles[2].clone()];
    expected.sort();
    assert_eq!(left, expected, "the oldest version, and its key, are gone");
}

#[tokio::test]
async fn the_reload_command_gets_the_hook_variables_and_its_failure_says_what_it_printed() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("shop");
    let env = root.path().join("env");
    let certs = certificates(1);
    let reload = format!(
        "echo \"$CERTPILOT_ID|$CERTPILOT_NAMES|$CERTPILOT_FINGERPRINT|$CERTPILOT_LIVE_DIR\" > '{}'",
        env.display()
    );
    let unit_ok = unit(&dir, Some(&reload));
    let target = registry().target(&unit_ok).await.unwrap();
    target
        .deploy(request(&unit_ok, &certs[0], None))
        .await
        .unwrap();
    assert_eq!(
        read(&env).trim(),
        format!("shop|{NAME}|{}|{}", certs[0].fingerprint, dir.display())
    );

    let failing = unit(
        &dir,
        Some("echo 'nginx: [emerg] cannot load certificate' >&2; exit 1"),
    );
    let target = registry().target(&failing).await.unwrap();
    let e = target
        .deploy(request(&failing, &certs[0], None))
        .await
        .unwrap_err();
    assert!(matches!(e, DeployError::Target(_)), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("reload command"), "{text}");
    assert!(text.contains("exit status 1"), "{text}");
    assert!(text.contains("cannot load certificate"), "{text}");
}

#[tokio::test]
async fn bad_directories_are_refused_with_the_path_and_the_reason() {
    let kinds = registry();
    let kinds = kinds.kinds();
    let e = kinds.parse_spec("files:dir=etc/ssl/shop").unwrap_err();
    assert!(e.to_string().contains("etc/ssl/shop"), "{e}");
    let e = kinds.parse_spec("files:dir=/etc/../ssl").unwrap_err();
    assert!(e.to_string().contains(".."), "{e}");

    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("shop");
    std::fs::write(&file, "not a directory").unwrap();
    let certs = certificates(1);
    let u = unit(&file, None);
    let e = refused(&u, &certs[0]).await;
    assert!(e.to_string().contains("is a file"), "{e}");
    assert_eq!(read(&file), "not a directory", "nothing was touched");

    let elsewhere = root.path().join("certbot-live");
    std::fs::create_dir(&elsewhere).unwrap();
    let link = root.path().join("linked");
    std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
    let u = unit(&link, None);
    let e = refused(&u, &certs[0]).await;
    assert!(e.to_string().contains("certpilot did not make"), "{e}");

    let u = unit(&root.path().join("missing/shop"), None);
    let e = refused(&u, &certs[0]).await;
    assert!(e.to_string().contains("no such directory"), "{e}");
}

#[tokio::test]
async fn a_certificate_without_its_key_is_refused_before_anything_is_written() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("shop");
    let mut certs = certificates(1);
    certs[0].key = None;
    let unit = unit(&dir, None);
    let e = refused(&unit, &certs[0]).await;
    assert!(matches!(e, DeployError::Config(_)), "{e:?}");
    assert!(!root.path().join("shop.versions").exists());
}
