//! Registered endpoints and the tags teams attach to them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::target::{Target, TargetError};

/// Free-form labels (`owner=payments env=prod platform=alb`), sorted by key so that every
/// output lists them in the same order.
pub type Tags = BTreeMap<String, String>;

/// The longest tag key, in characters (AWS's tag limit, so tags can follow a certificate
/// into ACM and DynamoDB).
pub const MAX_TAG_KEY: usize = 128;
/// The longest tag value, in characters.
pub const MAX_TAG_VALUE: usize = 256;
/// The most tags one endpoint or certificate carries.
pub const MAX_TAGS: usize = 50;

/// Parses one `key=value` tag. Keys are lowercase letters, digits, `_`, `-` and `.`; values
/// are any non-empty text without whitespace; both are bounded in length.
pub fn parse_tag(input: &str) -> Result<(String, String), TargetError> {
    let err = |reason: &str| TargetError::Tag {
        input: shorten(input),
        reason: reason.to_owned(),
    };
    let (key, value) = input.split_once('=').ok_or_else(|| err("missing '='"))?;
    if key.is_empty() {
        return Err(err("key is empty"));
    }
    if key.chars().count() > MAX_TAG_KEY {
        return Err(err(&format!("key is longer than {MAX_TAG_KEY} characters")));
    }
    if value.chars().count() > MAX_TAG_VALUE {
        return Err(err(&format!(
            "value is longer than {MAX_TAG_VALUE} characters"
        )));
    }
    if !key
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.'))
    {
        return Err(err(
            "key may hold only lowercase letters, digits, '_', '-' and '.'",
        ));
    }
    if value.is_empty() {
        return Err(err("value is empty"));
    }
    if value.chars().any(char::is_whitespace) {
        return Err(err("value contains whitespace"));
    }
    Ok((key.to_owned(), value.to_owned()))
}

/// Parses `input` and adds it to `tags`, refusing the one that would exceed [`MAX_TAGS`].
pub fn add_tag(tags: &mut Tags, input: &str) -> Result<(), TargetError> {
    let (key, value) = parse_tag(input)?;
    if tags.len() >= MAX_TAGS && !tags.contains_key(&key) {
        return Err(TargetError::Tag {
            input: shorten(input),
            reason: format!("more than {MAX_TAGS} tags"),
        });
    }
    tags.insert(key, value);
    Ok(())
}

/// `input` cut to a length an error message can show.
fn shorten(input: &str) -> String {
    const SHOWN: usize = 80;
    if input.chars().count() <= SHOWN {
        input.to_owned()
    } else {
        let head: String = input.chars().take(SHOWN).collect();
        format!("{head}… ({} characters)", input.chars().count())
    }
}

/// An endpoint someone registered so that it is scanned on every run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// What to scan; its canonical spelling is the endpoint's key.
    pub target: Target,
    /// Owner, environment, platform…
    pub tags: Tags,
    /// When it was first registered.
    #[serde(with = "time::serde::rfc3339")]
    pub added_at: OffsetDateTime,
    /// Optimistic-locking version: 1 on creation, incremented by the store on every update.
    pub version: u64,
    /// An explicit due time that overrides the endpoint's slot (see
    /// [`policy::scan_slot`](crate::policy::scan_slot)): set when the endpoint is added (so
    /// the next run scans it) and when a run could not finish it; cleared once it is scanned.
    /// `None` is the usual state, and scheduled scans then write nothing for it. Scheduling is
    /// not configuration: stores change it without touching `version`.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub due_at: Option<OffsetDateTime>,
}

impl Endpoint {
    /// A new, not yet stored endpoint (version 0: the store assigns 1), due at once.
    pub fn new(target: Target, tags: Tags, added_at: OffsetDateTime) -> Self {
        Endpoint {
            target,
            tags,
            added_at,
            version: 0,
            due_at: Some(added_at),
        }
    }

    /// The key the endpoint is stored under.
    pub fn key(&self) -> String {
        self.target.to_string()
    }

    /// Its place in the scan interval.
    pub fn slot(&self) -> u32 {
        crate::policy::scan_slot(&self.key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_parse_or_say_what_is_wrong() {
        assert_eq!(
            parse_tag("owner=payments").unwrap(),
            ("owner".into(), "payments".into())
        );
        assert_eq!(
            parse_tag("cost.center=a=b").unwrap(),
            ("cost.center".into(), "a=b".into())
        );
        for (bad, why) in [
            ("owner", "missing '='"),
            ("=x", "key is empty"),
            ("Owner=x", "lowercase"),
            ("owner=", "value is empty"),
        ] {
            let e = parse_tag(bad).unwrap_err().to_string();
            assert!(e.contains(why) && e.contains(bad), "{bad}: {e}");
        }
    }
}
