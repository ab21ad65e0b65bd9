//! The SAM template passes cfn-lint and `sam validate --lint` (both offline, from PyPI).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use certpilot_testkit::procs::{locate, workspace_root};

fn run(program: &str, env_var: &str, args: &[&str]) -> std::process::Output {
    Command::new(locate(env_var, program))
        .args(args)
        .current_dir(workspace_root())
        .env("SAM_CLI_TELEMETRY", "0")
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

#[test]
fn cfn_lint_finds_nothing() {
    let out = run("cfn-lint", "CERTPILOT_CFN_LINT", &["infra/template.yaml"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sam_validate_lint_passes() {
    let out = run(
        "sam",
        "CERTPILOT_SAM",
        &[
            "validate",
            "--lint",
            "--template",
            "infra/template.yaml",
            "--region",
            "us-east-1",
        ],
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("is a valid SAM Template"),
        "{text}"
    );
}

#[test]
fn the_table_in_the_template_matches_the_one_the_store_creates() {
    let template = std::fs::read_to_string(workspace_root().join("infra/template.yaml")).unwrap();
    for index in [
        certpilot_dynamodb::DUE_INDEX,
        certpilot_dynamodb::INVENTORY_INDEX,
    ] {
        assert!(
            template.contains(&format!("IndexName: {index}")),
            "index {index} missing"
        );
    }
    for attr in ["gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk", "expires_at"] {
        assert!(template.contains(attr), "attribute {attr} missing");
    }
}

#[test]
fn every_function_crate_is_deployed_and_every_deployed_binary_exists() {
    let root = workspace_root();
    let template = std::fs::read_to_string(root.join("infra/template.yaml")).unwrap();
    let mut crates = 0;
    for entry in std::fs::read_dir(root.join("functions")).unwrap() {
        let dir = entry.unwrap().path();
        let Ok(manifest) = std::fs::read_to_string(dir.join("Cargo.toml")) else {
            continue;
        };
        crates += 1;
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            template.contains(&format!("CodeUri: ../functions/{name}")),
            "functions/{name} is not in the template"
        );
        let bin = manifest
            .split("[[bin]]")
            .nth(1)
            .and_then(|b| b.lines().find(|l| l.starts_with("name")))
            .and_then(|l| l.split('"').nth(1))
            .unwrap();
        assert!(
            template.contains(&format!("Binary: {bin}")),
            "binary {bin} of functions/{name} is not built by the template"
        );
    }
    assert!(crates >= 2, "scan and renew at least");
}
