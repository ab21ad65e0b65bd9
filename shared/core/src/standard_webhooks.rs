//! The Standard Webhooks signature (standardwebhooks.com): `webhook-signature:
//! v1,<base64 of HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`, the key being the base64
//! after `whsec_` in the secret.
//!
//! Written here with aws-lc-rs (ten lines) rather than through the `standardwebhooks`
//! crate, which brings RustCrypto's `hmac`/`sha2` as a second crypto stack. Shared by the
//! webhook channel and the webhook deploy target.

use aws_lc_rs::hmac;
use data_encoding::BASE64 as STANDARD;

/// The shortest and longest key the scheme allows (24 to 64 bytes).
const KEY_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

/// A signing key, from a `whsec_…` secret.
pub struct Key(hmac::Key);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(redacted)")
    }
}

/// Reads a secret: `whsec_<base64>` (or the base64 alone), of 24 to 64 bytes. The error
/// never holds the secret.
pub fn key(secret: &str) -> Result<Key, String> {
    let text = secret.trim();
    let b64 = text.strip_prefix("whsec_").unwrap_or(text);
    let bytes = STANDARD
        .decode(b64.as_bytes())
        .map_err(|_| "is not a Standard Webhooks secret (`whsec_` and base64)".to_owned())?;
    if !KEY_BYTES.contains(&bytes.len()) {
        return Err(format!(
            "holds {} bytes; a Standard Webhooks key has 24 to 64 (`whsec_` and the base64 of 32 random bytes)",
            bytes.len()
        ));
    }
    Ok(Key(hmac::Key::new(hmac::HMAC_SHA256, &bytes)))
}

/// The `webhook-signature` header value for message `id` sent at `timestamp` with `body`.
pub fn sign(key: &Key, id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut ctx = hmac::Context::with_key(&key.0);
    ctx.update(format!("{id}.{timestamp}.").as_bytes());
    ctx.update(body);
    format!("v1,{}", STANDARD.encode(ctx.sign().as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_matches_the_standard_webhooks_test_vector() {
        // The specification's published vector (also in its reference libraries' tests).
        let key = key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            sign(
                &key,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn bad_secrets_are_refused_without_echoing_them() {
        let e = key("whsec_not base64!").unwrap_err();
        assert!(e.contains("not a Standard Webhooks secret"), "{e}");
        assert!(!e.contains("not base64!"));
        let e = key("whsec_c2hvcnQ=").unwrap_err();
        assert!(e.contains("holds 5 bytes"), "{e}");
        assert!(key("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_ok());
    }
}
