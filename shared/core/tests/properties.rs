//! Property tests of the parsers of outside input: targets, targets files, tags,
//! certificate names and ids. Whatever the input: no panic; a refusal names the input; what
//! is accepted reads back the same.

use certpilot_core::model::certificate::{Identifier, validate_certificate_id};
use certpilot_core::model::deploy::{quote_spec_value, split_spec};
use certpilot_core::{Target, parse_tag, parse_targets_file};
use proptest::prelude::*;

/// Text a careless user or a hostile file could hold: target-ish pieces and any characters.
fn input() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-zA-Z0-9.:_\\[\\]/@*=-]{0,40}",
        "(https|smtp|ldap|ftp|xyz)://[a-z0-9.:\\[\\]@]{0,30}(/[ -~]{0,10})?",
        "[0-9.x]{1,20}(:[0-9]{0,7})?",
    ]
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn targets_parse_or_name_the_input(text in input()) {
        match text.parse::<Target>() {
            Ok(target) => {
                let canonical = target.to_string();
                let again: Target = canonical.parse().expect("a canonical target parses");
                prop_assert_eq!(again.to_string(), canonical);
            }
            Err(e) => {
                let message = e.to_string();
                prop_assert!(
                    message.contains(&format!("{text:?}"))
                        || (text.trim().is_empty() && message.contains("empty")),
                    "{message} does not name {text:?}"
                );
            }
        }
    }

    #[test]
    fn targets_files_parse_or_name_the_file_and_line(lines in prop::collection::vec(input(), 0..8)) {
        let text = lines.join("\n");
        match parse_targets_file("estate.txt", &text) {
            Ok(requests) => prop_assert!(requests.len() <= text.lines().count()),
            Err(e) => {
                let message = e.to_string();
                prop_assert!(message.contains("estate.txt"), "{message}");
                prop_assert!(e.line >= 1 && e.line <= text.lines().count(), "{message}");
            }
        }
    }

    #[test]
    fn tags_parse_or_name_the_input(text in "[ -~]{0,300}") {
        match parse_tag(&text) {
            Ok((key, value)) => prop_assert_eq!(format!("{key}={value}"), text),
            Err(e) => {
                let message = e.to_string();
                // Long inputs are shown cut short, never echoed whole.
                let shown: String = text.chars().take(80).collect();
                let quoted = format!("{shown:?}");
                prop_assert!(message.contains(quoted.trim_end_matches('"')), "{message}");
                prop_assert!(message.len() < 400, "{message}");
            }
        }
    }

    #[test]
    fn certificate_names_parse_or_name_the_input(text in input()) {
        match text.parse::<Identifier>() {
            Ok(name) => {
                let again: Identifier = name.to_string().parse().expect("an accepted name parses");
                prop_assert_eq!(again, name);
            }
            Err(e) => prop_assert!(e.to_string().contains(&format!("{text:?}")), "{e}"),
        }
    }

    #[test]
    fn certificate_ids_are_checked_without_panic(text in input()) {
        if let Err(e) = validate_certificate_id(&text) {
            prop_assert!(e.to_string().contains(&format!("{text:?}")), "{e}");
        }
    }

    #[test]
    fn deploy_specs_read_back_what_was_written(
        kind in "[a-z][a-z0-9-]{0,12}",
        settings in prop::collection::vec(("[a-z][a-z0-9-]{0,10}", any::<String>()), 0..5),
    ) {
        let text = format!(
            "{kind}:{}",
            settings
                .iter()
                .map(|(k, v)| format!("{k}={}", quote_spec_value(v)))
                .collect::<Vec<_>>()
                .join(",")
        );
        let (read_kind, read) = split_spec(&text).map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
        prop_assert_eq!(read_kind, kind.as_str());
        prop_assert_eq!(read, settings);
    }

    #[test]
    fn any_deploy_spec_splits_or_says_why(text in any::<String>()) {
        if let Err(e) = split_spec(&text) {
            prop_assert!(!e.is_empty());
        }
    }
}
