//! `--deploy KIND:key=value,…` specs and `--deploy-file FILE` for `certificates add`: both
//! read by the registry's descriptors (`certpilot_app::deploy_kinds`), so that this file
//! knows no kind.

use std::path::Path;

use certpilot_core::model::deploy::Deployment;
use certpilot_core::model::deploy_kind::DeployKinds;

use crate::error::{CliError, usage};

/// Parses a `--deploy` spec with the kinds' descriptors; the error names the spec.
pub fn parse_deploy_spec(kinds: &DeployKinds, spec: &str) -> Result<Deployment, CliError> {
    kinds
        .parse_spec(spec)
        .map_err(|e| usage(format!("--deploy {spec:?}: {}", e.reason)))
}

/// Reads `--deploy-file`: one deployment object, or a list of them, in JSON or YAML — the
/// object the API takes (`{name, kind, settings, units?, endpoints, verify_deadline}`).
/// A `.yaml`/`.yml` file, or one that does not start with `{` or `[`, is read as YAML.
pub fn read_deploy_file(kinds: &DeployKinds, path: &Path) -> Result<Vec<Deployment>, CliError> {
    let value = crate::context::read_document("--deploy-file", path)?;
    let items = match value {
        serde_json::Value::Array(items) => items,
        one => vec![one],
    };
    kinds
        .parse_deployments(items)
        .map_err(|reason| usage(format!("--deploy-file {}: {reason}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds() -> DeployKinds {
        certpilot_app::deploy_kinds()
    }

    #[test]
    fn deploy_specs_read_like_the_settings_they_set() {
        let d = parse_deploy_spec(&kinds(),
            "elbv2-listener:name=alb,listener-arn=arn:aws:elasticloadbalancing:eu-west-1:1:listener/app/shop/1/2,sni=true,endpoint=shop.example.com:443,endpoint=www.example.com,verify-deadline=3m",
        )
        .unwrap();
        assert_eq!(d.name, "alb");
        assert_eq!(d.kind, "elbv2-listener");
        assert_eq!(
            d.text("listener-arn"),
            Some("arn:aws:elasticloadbalancing:eu-west-1:1:listener/app/shop/1/2")
        );
        assert_eq!(d.settings["sni"], serde_json::Value::Bool(true));
        assert_eq!(d.endpoints.len(), 2);
        assert_eq!(d.verify_deadline, Some(180));

        let err = parse_deploy_spec(&kinds(), "cloudfront:distribution=E1")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cloudfront has no setting \"distribution\""),
            "{err}"
        );
        let err = parse_deploy_spec(&kinds(), "bunnycdn:zone=1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown kind \"bunnycdn\""), "{err}");
        let err = parse_deploy_spec(&kinds(), "api-gateway:domain-name=api.example.com")
            .unwrap_err()
            .to_string();
        assert!(err.contains("api-gateway needs region="), "{err}");
    }

    #[test]
    fn a_deploy_file_in_yaml_reads_like_its_json() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = dir.path().join("web.yaml");
        std::fs::write(
            &yaml,
            "- name: web\n  kind: files\n  settings:\n    dir: /etc/ssl/web\n    reload: systemctl reload nginx\n    reload-timeout: 30\n  endpoints: [www.example.com]\n  verify_deadline: 5m\n",
        )
        .unwrap();
        let json = dir.path().join("web.json");
        std::fs::write(
            &json,
            r#"[{"name": "web", "kind": "files", "settings": {"dir": "/etc/ssl/web", "reload": "systemctl reload nginx", "reload-timeout": 30}, "endpoints": ["www.example.com"], "verify_deadline": "5m"}]"#,
        )
        .unwrap();
        let from_yaml = read_deploy_file(&kinds(), &yaml).unwrap();
        assert_eq!(from_yaml, read_deploy_file(&kinds(), &json).unwrap());
        assert_eq!(from_yaml[0].text("reload"), Some("systemctl reload nginx"));
        assert_eq!(from_yaml[0].verify_deadline, Some(300));

        std::fs::write(&yaml, "name: web\nkind: files\nsettings:\n  dir: etc/ssl\n").unwrap();
        let err = read_deploy_file(&kinds(), &yaml).unwrap_err().to_string();
        assert!(err.contains("web.yaml") && err.contains("etc/ssl"), "{err}");
        std::fs::write(&yaml, "name: [web\n").unwrap();
        let err = read_deploy_file(&kinds(), &yaml).unwrap_err().to_string();
        assert!(err.contains("not YAML"), "{err}");
    }

    #[test]
    fn quoted_values_hold_commas_and_equals_signs() {
        let d = parse_deploy_spec(
            &kinds(),
            r#"acm-import:region=eu-west-1,name="edge, main",endpoint=shop.example.com"#,
        )
        .unwrap();
        assert_eq!(d.name, "edge, main");
        let err = parse_deploy_spec(&kinds(), r#"acm-import:region="eu-west-1"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no closing"), "{err}");
    }

    mod properties {
        use proptest::prelude::*;

        use super::{kinds, parse_deploy_spec};

        /// Specs a user could type: real kinds and keys in any order and number, and noise.
        fn spec() -> impl Strategy<Value = String> {
            let kind = prop_oneof![
                Just("acm-import".to_owned()),
                Just("elbv2-listener".to_owned()),
                Just("cloudfront".to_owned()),
                Just("api-gateway".to_owned()),
                "[a-z-]{0,12}",
            ];
            let key = prop_oneof![
                Just("name".to_owned()),
                Just("region".to_owned()),
                Just("listener-arn".to_owned()),
                Just("sni".to_owned()),
                Just("distribution-id".to_owned()),
                Just("domain-name".to_owned()),
                Just("api".to_owned()),
                Just("certificate-arn".to_owned()),
                Just("role-arn".to_owned()),
                Just("endpoint".to_owned()),
                Just("verify-deadline".to_owned()),
                "[a-z-]{0,8}",
            ];
            let value = prop_oneof![
                "[ -~]{0,24}",
                Just("true".to_owned()),
                Just("3m".to_owned()),
                Just("http".to_owned())
            ];
            let pair = (key, value).prop_map(|(k, v)| format!("{k}={v}"));
            prop_oneof![
                (kind, prop::collection::vec(pair, 0..6))
                    .prop_map(|(k, pairs)| format!("{k}:{}", pairs.join(","))),
                any::<String>(),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: 1024,
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            #[test]
            fn deploy_specs_parse_or_name_the_spec(text in spec()) {
                match parse_deploy_spec(&kinds(), &text) {
                    Ok(d) => prop_assert!(!d.name.is_empty()),
                    Err(e) => {
                        let message = e.to_string();
                        prop_assert!(
                            message.contains(&format!("--deploy {text:?}"))
                                || message.starts_with("target ")
                                || message.contains(&format!("{text:?}")),
                            "{message}"
                        );
                    }
                }
            }
        }
    }
}
