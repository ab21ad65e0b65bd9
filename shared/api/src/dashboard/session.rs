//! Browser sessions: a cookie holding who signed in, until when, and the session's CSRF
//! token, signed with HMAC-SHA256 under a key only the server holds — so any instance of
//! the API function (or `certpilot serve`) can check it without a session table, and a
//! changed cookie is refused. The cookie is `HttpOnly` (scripts cannot read it), `Secure`,
//! and `SameSite=Strict` (no other site's page sends it); every form also carries the CSRF
//! token, checked on every POST.

use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use data_encoding::BASE64URL_NOPAD;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::Caller;

/// The cookie's name.
pub const COOKIE: &str = "certpilot_session";
/// How long a session lasts: a working day.
pub const LIFETIME: time::Duration = time::Duration::hours(8);

/// What the cookie says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The caller's principal.
    #[serde(rename = "p")]
    pub principal: String,
    /// When it ends (Unix seconds).
    #[serde(rename = "e")]
    pub expires: i64,
    /// The CSRF token every form of this session carries.
    #[serde(rename = "c")]
    pub csrf: String,
}

impl Session {
    /// The caller it stands for.
    pub fn caller(&self) -> Caller {
        Caller::new(self.principal.clone())
    }
}

/// Signs and checks session cookies.
#[derive(Clone)]
pub struct SessionKey {
    key: hmac::Key,
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

fn random(n: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n];
    // The system's generator fails only when the OS has no entropy source at all.
    if SystemRandom::new().fill(&mut bytes).is_err() {
        panic!("the system random generator failed");
    }
    bytes
}

impl SessionKey {
    /// A key from `secret` (at least 32 bytes: a secret-store value shared by every instance).
    pub fn from_secret(secret: &[u8]) -> Result<Self, String> {
        if secret.len() < 32 {
            return Err(format!(
                "the session key is {} bytes; it needs at least 32 random bytes",
                secret.len()
            ));
        }
        Ok(SessionKey {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        })
    }

    /// The key every instance shares, kept in `secrets` under `name` (made on first use):
    /// a session opened by one instance of the API function is good at any other. Two
    /// instances starting together may each write one; both read back the current one.
    pub async fn shared(
        secrets: &dyn certpilot_core::ports::SecretStore,
        name: &str,
    ) -> Result<Self, String> {
        use certpilot_core::ports::{SecretValue, SecretVersion};
        let current =
            |e: certpilot_core::ports::SecretError| format!("the session key {name:?}: {e}");
        if secrets
            .get(name, &SecretVersion::Current)
            .await
            .map_err(current)?
            .is_none()
        {
            secrets
                .put_current(name, &SecretValue::new(random(32)))
                .await
                .map_err(current)?;
        }
        let (_, value) = secrets
            .get(name, &SecretVersion::Current)
            .await
            .map_err(current)?
            .ok_or_else(|| format!("the session key {name:?} vanished as it was written"))?;
        Self::from_secret(value.expose())
    }

    /// A fresh random key: sessions end when the process does (`certpilot serve`).
    pub fn random() -> Self {
        SessionKey {
            key: hmac::Key::new(hmac::HMAC_SHA256, &random(32)),
        }
    }

    /// A new session for `caller` from `now`.
    pub fn open(&self, caller: &Caller, now: OffsetDateTime) -> Session {
        Session {
            principal: caller.principal.clone(),
            expires: (now + LIFETIME).unix_timestamp(),
            csrf: BASE64URL_NOPAD.encode(&random(18)),
        }
    }

    /// The cookie's value for `session`.
    pub fn seal(&self, session: &Session) -> String {
        let payload = BASE64URL_NOPAD.encode(&serde_json::to_vec(session).unwrap_or_default());
        let tag = hmac::sign(&self.key, payload.as_bytes());
        format!("{payload}.{}", BASE64URL_NOPAD.encode(tag.as_ref()))
    }

    /// The session a cookie value holds, if this key signed it and it has not ended.
    pub fn unseal(&self, value: &str, now: OffsetDateTime) -> Option<Session> {
        let (payload, tag) = value.split_once('.')?;
        let tag = BASE64URL_NOPAD.decode(tag.as_bytes()).ok()?;
        hmac::verify(&self.key, payload.as_bytes(), &tag).ok()?;
        let session: Session =
            serde_json::from_slice(&BASE64URL_NOPAD.decode(payload.as_bytes()).ok()?).ok()?;
        (session.expires > now.unix_timestamp()).then_some(session)
    }

    /// The `Set-Cookie` value that keeps `session` in the browser.
    pub fn set_cookie(&self, session: &Session) -> String {
        format!(
            "{COOKIE}={}; Path=/ui; Max-Age={}; HttpOnly; Secure; SameSite=Strict",
            self.seal(session),
            LIFETIME.whole_seconds()
        )
    }

    /// The `Set-Cookie` value that ends the session.
    pub fn clear_cookie() -> String {
        format!("{COOKIE}=; Path=/ui; Max-Age=0; HttpOnly; Secure; SameSite=Strict")
    }
}

/// The session cookie's value among `Cookie` headers.
pub fn cookie_value<'a>(headers: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    headers
        .flat_map(|h| h.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

/// Constant-time equality, for CSRF tokens.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn a_session_survives_the_round_trip_and_nothing_else_does() {
        let key = SessionKey::random();
        let now = OffsetDateTime::now_utc();
        let s = key.open(&Caller::new("token:ops"), now);
        let sealed = key.seal(&s);
        assert_eq!(key.unseal(&sealed, now), Some(s.clone()));
        // Another key, a changed principal, an ended session: refused.
        assert_eq!(SessionKey::random().unseal(&sealed, now), None);
        let (payload, tag) = sealed.split_once('.').unwrap();
        let forged = Session {
            principal: "token:admin".into(),
            ..s.clone()
        };
        let forged_payload = BASE64URL_NOPAD.encode(&serde_json::to_vec(&forged).unwrap());
        assert_ne!(payload, forged_payload);
        assert_eq!(key.unseal(&format!("{forged_payload}.{tag}"), now), None);
        assert_eq!(key.unseal(&sealed, now + LIFETIME), None);
        assert!(
            key.set_cookie(&s)
                .contains("HttpOnly; Secure; SameSite=Strict")
        );
        assert!(SessionKey::from_secret(b"short").is_err());
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let headers = ["a=1; certpilot_session=abc.def", "b=2"];
        assert_eq!(cookie_value(headers.into_iter()), Some("abc.def"));
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
