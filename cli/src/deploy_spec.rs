//! `--deploy KIND:key=value,…` specs for `certificates add`.

use certpilot_core::model::deploy::{ApiGatewayApi, Deployment, TargetConfig, split_spec};

use crate::error::{CliError, usage};

/// Parses a `--deploy` spec: `KIND:key=value,…` (a value may be double-quoted to hold `,`
/// or `=`, with `\"` and `\\` escaped) where KIND is `acm-import`,
/// `elbv2-listener`, `cloudfront` or `api-gateway`. Keys: `name` (default: the kind),
/// `region`, `listener-arn`, `sni`, `distribution-id`, `domain-name`, `api` (`rest`|`http`),
/// `certificate-arn`, `role-arn`, `endpoint` (repeatable), `verify-deadline` (e.g. `20m`).
pub fn parse_deploy_spec(spec: &str) -> Result<Deployment, CliError> {
    let bad = |reason: String| usage(format!("--deploy {spec:?}: {reason}"));
    let (kind, settings) = split_spec(spec).map_err(bad)?;
    let mut values: Vec<(String, String)> = Vec::new();
    for (k, v) in settings {
        // Only endpoints repeat; a second value for anything else is a mistake, not an
        // override.
        if k != "endpoint" && values.iter().any(|(seen, _)| *seen == k) {
            return Err(bad(format!(
                "{k} is given twice; give each setting once (only endpoint repeats)"
            )));
        }
        values.push((k, v));
    }
    let take = |key: &str| {
        values
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let need = |key: &str| take(key).ok_or_else(|| bad(format!("{kind} needs {key}=…")));
    let known: &[&str] = match kind {
        "acm-import" => &["region"],
        "elbv2-listener" => &["listener-arn", "sni"],
        "cloudfront" => &["distribution-id"],
        "api-gateway" => &["domain-name", "region", "api"],
        other => {
            return Err(bad(format!(
                "unknown kind {other:?} (expected acm-import, elbv2-listener, cloudfront or api-gateway)"
            )));
        }
    };
    let common = [
        "name",
        "certificate-arn",
        "role-arn",
        "endpoint",
        "verify-deadline",
    ];
    if let Some((k, _)) = values
        .iter()
        .find(|(k, _)| !known.contains(&k.as_str()) && !common.contains(&k.as_str()))
    {
        return Err(bad(format!("{kind} has no setting {k:?}")));
    }
    let target = match kind {
        "acm-import" => TargetConfig::AcmImport {
            region: need("region")?,
        },
        "elbv2-listener" => TargetConfig::Elbv2Listener {
            listener_arn: need("listener-arn")?,
            sni: match take("sni").as_deref() {
                None | Some("false") => false,
                Some("true") => true,
                Some(other) => return Err(bad(format!("sni={other}: expected true or false"))),
            },
        },
        "cloudfront" => TargetConfig::Cloudfront {
            distribution_id: need("distribution-id")?,
        },
        _ => TargetConfig::ApiGateway {
            domain_name: need("domain-name")?,
            region: need("region")?,
            api: match take("api").as_deref() {
                None | Some("rest") => ApiGatewayApi::Rest,
                Some("http") => ApiGatewayApi::Http,
                Some(other) => return Err(bad(format!("api={other}: expected rest or http"))),
            },
        },
    };
    let endpoints = values
        .iter()
        .filter(|(k, _)| k == "endpoint")
        .map(|(_, v)| crate::context::parse_target(v))
        .collect::<Result<Vec<_>, _>>()?;
    let verify_deadline_secs = match take("verify-deadline") {
        Some(text) => Some(
            crate::args::parse_duration(&text)
                .map_err(|e| bad(format!("verify-deadline={text}: {e}")))?
                .as_secs(),
        ),
        None => None,
    };
    Ok(Deployment {
        name: take("name").unwrap_or_else(|| kind.to_owned()),
        target,
        certificate_arn: take("certificate-arn"),
        role_arn: take("role-arn"),
        endpoints,
        verify_deadline_secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deploy_specs_read_like_the_settings_they_set() {
        let d = parse_deploy_spec(
            "elbv2-listener:name=alb,listener-arn=arn:aws:elasticloadbalancing:eu-west-1:1:listener/app/shop/1/2,sni=true,endpoint=shop.example.com:443,endpoint=www.example.com,verify-deadline=3m",
        )
        .unwrap();
        assert_eq!(d.name, "alb");
        assert_eq!(
            d.target,
            TargetConfig::Elbv2Listener {
                listener_arn: "arn:aws:elasticloadbalancing:eu-west-1:1:listener/app/shop/1/2"
                    .into(),
                sni: true
            }
        );
        assert_eq!(d.endpoints.len(), 2);
        assert_eq!(d.verify_deadline_secs, Some(180));

        let err = parse_deploy_spec("cloudfront:distribution=E1")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cloudfront has no setting \"distribution\""),
            "{err}"
        );
        let err = parse_deploy_spec("fastly:service=1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown kind \"fastly\""), "{err}");
        let err = parse_deploy_spec("api-gateway:domain-name=api.example.com")
            .unwrap_err()
            .to_string();
        assert!(err.contains("api-gateway needs region="), "{err}");
    }

    #[test]
    fn quoted_values_hold_commas_and_equals_signs() {
        let d = parse_deploy_spec(
            r#"acm-import:region=eu-west-1,name="edge, main",endpoint=shop.example.com"#,
        )
        .unwrap();
        assert_eq!(d.name, "edge, main");
        let err = parse_deploy_spec(r#"acm-import:region="eu-west-1"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no closing"), "{err}");
    }

    mod properties {
        use proptest::prelude::*;

        use super::parse_deploy_spec;

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
                match parse_deploy_spec(&text) {
                    Ok(d) => prop_assert!(!d.name.is_empty()),
                    Err(e) => {
                        let message = e.to_string();
                        prop_assert!(
                            message.contains(&format!("--deploy {text:?}"))
                                || message.starts_with("target "),
                            "{message}"
                        );
                    }
                }
            }
        }
    }
}
