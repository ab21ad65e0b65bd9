//! Where the Slack function posts: one incoming webhook for everything, or one per owner.
//!
//! The secret holds either a webhook URL, or a JSON object from owner (the `owner` tag) to
//! URL with `"*"` for everyone else: `{"payments": "https://hooks.slack.com/…", "*": "…"}`.
//! Without `"*"`, findings of other owners (and of none) are not posted: the topic's other
//! subscribers still get them.

use std::collections::BTreeMap;

use crate::http::check_url;

/// The key of the webhook for every owner without one of their own.
pub const DEFAULT: &str = "*";

/// Owner → webhook URL. Never printed: the URLs are the secret.
#[derive(Clone)]
pub struct Routes(BTreeMap<String, String>);

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Routes")
            .field(&self.0.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Routes {
    /// Reads the secret's text. The error names the owner whose URL is wrong, never the URL.
    pub fn parse(text: &str) -> Result<Routes, String> {
        let text = text.trim();
        if !text.starts_with('{') {
            check_url(text).map_err(|e| format!("the webhook URL {e}"))?;
            return Ok(Routes(BTreeMap::from([(
                DEFAULT.to_owned(),
                text.to_owned(),
            )])));
        }
        let map: BTreeMap<String, String> = serde_json::from_str(text).map_err(|_| {
            "not a webhook URL, nor a JSON object from owner to webhook URL ({\"payments\": \"https://hooks.slack.com/…\", \"*\": \"…\"})".to_owned()
        })?;
        if map.is_empty() {
            return Err("the JSON object names no owner and no \"*\"".into());
        }
        for (owner, url) in &map {
            check_url(url.trim()).map_err(|e| format!("the webhook URL of {owner:?} {e}"))?;
        }
        Ok(Routes(
            map.into_iter()
                .map(|(o, u)| (o, u.trim().to_owned()))
                .collect(),
        ))
    }

    /// Whether `owner` has a webhook of their own.
    pub fn has_own(&self, owner: &str) -> bool {
        owner != DEFAULT && self.0.contains_key(owner)
    }

    /// The URL for `owner`'s messages: theirs, else the default, else none.
    pub fn url_for(&self, owner: Option<&str>) -> Option<&str> {
        owner
            .and_then(|o| self.0.get(o))
            .or_else(|| self.0.get(DEFAULT))
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_serves_everyone_and_a_map_routes_by_owner() {
        let one = Routes::parse(" https://hooks.slack.com/services/T/B/x\n").unwrap();
        assert_eq!(
            one.url_for(Some("payments")),
            Some("https://hooks.slack.com/services/T/B/x")
        );
        assert_eq!(
            one.url_for(None),
            Some("https://hooks.slack.com/services/T/B/x")
        );
        let map = Routes::parse(
            r#"{"payments": "https://hooks.slack.com/services/T/P/x", "*": "https://hooks.slack.com/services/T/D/x"}"#,
        )
        .unwrap();
        assert_eq!(
            map.url_for(Some("payments")),
            Some("https://hooks.slack.com/services/T/P/x")
        );
        assert_eq!(
            map.url_for(Some("search")),
            Some("https://hooks.slack.com/services/T/D/x")
        );
        let only =
            Routes::parse(r#"{"payments": "https://hooks.slack.com/services/T/P/x"}"#).unwrap();
        assert_eq!(only.url_for(Some("search")), None);
        assert!(!format!("{only:?}").contains("hooks"), "never printed");
    }

    #[test]
    fn a_wrong_secret_is_named_without_its_urls() {
        let e = Routes::parse(r#"{"payments": "http://hooks.example/secret-token"}"#).unwrap_err();
        assert!(e.contains("\"payments\""), "{e}");
        assert!(!e.contains("secret-token"), "{e}");
        assert!(Routes::parse("{}").is_err());
        assert!(Routes::parse("not a url").is_err());
    }
}
