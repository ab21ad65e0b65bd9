//! Judging a presented chain: trusted or not, and every problem found, each named.

use std::collections::HashSet;
use std::path::Path;

use certpilot_core::model::target::Host;
use certpilot_core::policy;
use certpilot_core::{Problem, Validation};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, TrustAnchor, UnixTime};
use time::OffsetDateTime;
use webpki::{EndEntityCert, KeyUsage};

use crate::x509::Parsed;

/// The roots a chain must lead to: Mozilla's (from `webpki-roots`) plus any the operator adds.
#[derive(Clone, Debug)]
pub struct TrustStore {
    anchors: Vec<TrustAnchor<'static>>,
    /// Subjects of the anchors (Name contents, as webpki stores them), for "is this issuer
    /// trusted" without building a path.
    subjects: HashSet<Vec<u8>>,
    /// (subject, SPKI) of every anchor, so a self-signed leaf the operator trusts explicitly
    /// (`--ca-file` holding the leaf itself) is recognised as pinned.
    pinned: HashSet<(Vec<u8>, Vec<u8>)>,
}

/// Why a CA file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// The file could not be read.
    #[error("--ca-file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file holds no PEM certificate, or a malformed one.
    #[error("--ca-file {path}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

impl TrustStore {
    /// Mozilla's roots only.
    pub fn mozilla() -> Self {
        let anchors: Vec<_> = webpki_roots::TLS_SERVER_ROOTS.to_vec();
        Self::from_anchors(anchors)
    }

    fn from_anchors(anchors: Vec<TrustAnchor<'static>>) -> Self {
        let subjects = anchors
            .iter()
            .map(|a| a.subject.as_ref().to_vec())
            .collect();
        let pinned = anchors.iter().map(anchor_identity).collect();
        TrustStore {
            anchors,
            subjects,
            pinned,
        }
    }

    /// Adds the certificates of a PEM file as trusted roots (a private CA, a test CA).
    pub fn add_pem_file(&mut self, path: &Path) -> Result<usize, TrustError> {
        let shown = path.display().to_string();
        let pem = std::fs::read(path).map_err(|source| TrustError::Read {
            path: shown.clone(),
            source,
        })?;
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| TrustError::Invalid {
                path: shown.clone(),
                reason: format!("not a valid PEM certificate: {e}"),
            })?;
            self.add_der(&cert).map_err(|reason| TrustError::Invalid {
                path: shown.clone(),
                reason,
            })?;
            added += 1;
        }
        if added == 0 {
            return Err(TrustError::Invalid {
                path: shown,
                reason: "no PEM certificate (-----BEGIN CERTIFICATE-----) found".into(),
            });
        }
        Ok(added)
    }

    /// Adds one DER certificate as a trusted root.
    pub fn add_der(&mut self, der: &CertificateDer<'_>) -> Result<(), String> {
        let anchor = webpki::anchor_from_trusted_cert(der)
            .map_err(|e| format!("certificate cannot be a trust anchor: {e:?}"))?
            .to_owned();
        self.subjects.insert(anchor.subject.as_ref().to_vec());
        self.pinned.insert(anchor_identity(&anchor));
        self.anchors.push(anchor);
        Ok(())
    }

    fn trusts_issuer(&self, issuer_raw: &[u8]) -> bool {
        self.subjects.contains(der_contents(issuer_raw))
    }

    /// Whether this exact certificate (subject and key) is itself a trust anchor.
    fn pins(&self, cert: &Parsed<'_>) -> bool {
        let identity = (
            der_contents(cert.subject_raw()).to_vec(),
            der_contents(cert.spki_raw()).to_vec(),
        );
        self.pinned.contains(&identity)
    }
}

fn anchor_identity(anchor: &TrustAnchor<'_>) -> (Vec<u8>, Vec<u8>) {
    (
        anchor.subject.as_ref().to_vec(),
        anchor.subject_public_key_info.as_ref().to_vec(),
    )
}

/// Names and keys are DER SEQUENCEs; webpki keeps only their contents, so strip the tag and
/// length.
fn der_contents(raw: &[u8]) -> &[u8] {
    let Some((&len, rest)) = raw.get(1..).and_then(|r| r.split_first()) else {
        return raw;
    };
    if len & 0x80 == 0 {
        rest
    } else {
        rest.get(usize::from(len & 0x7f)..).unwrap_or(rest)
    }
}

/// Validates `chain` (leaf first, as presented) for `host` at `now`.
pub(crate) fn validate(
    chain_der: &[CertificateDer<'static>],
    parsed: &[Parsed<'_>],
    host: &Host,
    trust: &TrustStore,
    now: OffsetDateTime,
) -> Validation {
    let mut problems = Vec::new();
    let Some(leaf) = parsed.first() else {
        return Validation {
            trusted: false,
            problems,
        };
    };

    if let Some(p) = policy::validity_problems(leaf.not_before(), leaf.not_after(), now) {
        problems.push(p);
    }
    let (dns, ips) = leaf.sans();
    let name_ok = policy::hostname_matches(host, &dns, &ips);
    if !name_ok {
        problems.push(Problem::HostnameMismatch);
    }
    // A self-signed leaf the operator put in the trust store is pinned, not a problem.
    let pinned = leaf.is_self_issued() && trust.pins(leaf);
    if leaf.is_self_issued() && !pinned {
        problems.push(Problem::SelfSigned);
    }
    for (i, cert) in parsed.iter().enumerate() {
        let key = cert.key();
        if key.kind == "RSA" && policy::is_weak_rsa(key.bits) {
            problems.push(Problem::WeakKey);
        }
        // A root's self-signature is never checked by clients, so a SHA-1 root is harmless.
        let checked_signature = i == 0 || !cert.is_self_issued();
        if checked_signature && policy::is_weak_signature(&cert.signature_algorithm()) {
            problems.push(Problem::WeakSignature);
        }
    }

    let path = if pinned {
        Ok(())
    } else {
        trusted_path(chain_der, trust, now)
    };
    let path_ok = path.is_ok();
    if let Err(error) = path
        && !leaf.is_self_issued()
    {
        let explained = match error {
            // A path-building failure: where the presented chain stops says which.
            webpki::Error::UnknownIssuer => classify_path_failure(parsed, trust),
            // The leaf's own dates and weak algorithms are on the list already; the same
            // error from an intermediate is a broken chain.
            webpki::Error::CertExpired { .. } if problems.contains(&Problem::Expired) => None,
            webpki::Error::CertNotValidYet { .. } if problems.contains(&Problem::NotYetValid) => {
                None
            }
            webpki::Error::UnsupportedSignatureAlgorithmForPublicKeyContext(_)
            | webpki::Error::UnsupportedSignatureAlgorithmContext(_)
            | webpki::Error::InvalidSignatureForPublicKey
                if problems
                    .iter()
                    .any(|p| matches!(p, Problem::WeakKey | Problem::WeakSignature)) =>
            {
                None
            }
            _ => Some(Problem::InvalidChain),
        };
        problems.extend(explained);
    }

    problems.sort();
    problems.dedup();
    // Current browsers refuse every problem on the list, weak keys and SHA-1 included.
    let trusted = path_ok && problems.is_empty();
    // An untrusted verdict always says why.
    if !trusted && problems.is_empty() {
        problems.push(Problem::InvalidChain);
    }
    Validation { trusted, problems }
}

/// Builds a path from the leaf through the presented intermediates to a trusted root at
/// `now`, as webpki (the verifier inside rustls) does for a real client.
fn trusted_path(
    chain: &[CertificateDer<'static>],
    trust: &TrustStore,
    now: OffsetDateTime,
) -> Result<(), webpki::Error> {
    let Some(leaf) = chain.first() else {
        return Err(webpki::Error::BadDer);
    };
    let ee = EndEntityCert::try_from(leaf)?;
    let secs = u64::try_from(now.unix_timestamp()).unwrap_or(0);
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &trust.anchors,
        &chain[1..],
        UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs)),
        KeyUsage::server_auth(),
        None,
        None,
    )
    .map(|_| ())
}

/// Why no trusted path exists, from the shape of the presented chain: follow each
/// certificate's issuer through the presented ones; where the walk stops tells the story.
fn classify_path_failure(parsed: &[Parsed<'_>], trust: &TrustStore) -> Option<Problem> {
    let mut current = parsed.first()?;
    let mut visited = 1;
    loop {
        if current.is_self_issued() {
            // The chain ends at a root the server sent; were it trusted, the path would build.
            return Some(Problem::UntrustedRoot);
        }
        if trust.trusts_issuer(current.issuer_raw()) {
            // The issuer is a trusted root, yet no path was built: something on the way
            // breaks a rule.
            return Some(Problem::InvalidChain);
        }
        let next = parsed
            .iter()
            .find(|c| c.subject_raw() == current.issuer_raw() && !std::ptr::eq(*c, current));
        match next {
            Some(issuer) if visited < parsed.len() => {
                current = issuer;
                visited += 1;
            }
            // The leaf alone, its issuer neither sent nor trusted: the server forgot its
            // intermediate (the classic misconfiguration).
            _ if visited == 1 => return Some(Problem::IncompleteChain),
            // The server sent its intermediates and they lead to a root this machine does
            // not trust: a private or unknown CA. (Roots are normally not sent.)
            _ => return Some(Problem::UntrustedRoot),
        }
    }
}

/// Unused outside tests: the webpki name check, kept to cross-check our own matcher.
#[cfg(test)]
fn webpki_name_ok(leaf: &CertificateDer<'_>, host: &str) -> bool {
    let Ok(ee) = EndEntityCert::try_from(leaf) else {
        return false;
    };
    let Ok(name) = rustls::pki_types::ServerName::try_from(host) else {
        return false;
    };
    ee.verify_is_valid_for_subject_name(&name).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_contents_strips_short_and_long_headers() {
        assert_eq!(der_contents(&[0x30, 0x02, 0xaa, 0xbb]), &[0xaa, 0xbb]);
        assert_eq!(der_contents(&[0x30, 0x81, 0x02, 0xaa, 0xbb]), &[0xaa, 0xbb]);
    }

    #[test]
    fn mozilla_store_is_not_empty() {
        assert!(TrustStore::mozilla().anchors.len() > 100);
    }

    #[test]
    fn our_name_matcher_agrees_with_webpki() {
        let key = rcgen_free_leaf();
        for host in [
            "shop.example.com",
            "x.wild.example.com",
            "other.example.com",
        ] {
            let parsed = Parsed::new(key.as_ref()).expect("parses");
            let (dns, ips) = parsed.sans();
            let ours = policy::hostname_matches(&Host::Name(host.into()), &dns, &ips);
            assert_eq!(ours, webpki_name_ok(&key, host), "{host}");
        }
    }

    /// A leaf for shop.example.com and *.wild.example.com, built by the test kit.
    fn rcgen_free_leaf() -> CertificateDer<'static> {
        certpilot_testkit::certs::Ca::new("Test Root")
            .leaf(&["shop.example.com", "*.wild.example.com"])
            .build()
            .der()
    }
}
