//! Reading the facts certpilot reports out of a DER certificate.

use std::net::IpAddr;

use aws_lc_rs::digest;
use certpilot_core::{CertificateInfo, ChainEntry, KeyInfo};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry::{self, Oid};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

/// A certificate parsed once, with the facts the scanner needs from it.
pub(crate) struct Parsed<'a> {
    pub der: &'a [u8],
    pub cert: X509Certificate<'a>,
}

impl<'a> Parsed<'a> {
    pub fn new(der: &'a [u8]) -> Result<Self, String> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| format!("unparseable certificate: {e}"))?;
        Ok(Parsed { der, cert })
    }

    pub fn fingerprint(&self) -> String {
        hex::encode(digest::digest(&digest::SHA256, self.der))
    }

    pub fn not_before(&self) -> OffsetDateTime {
        self.cert.validity().not_before.to_datetime()
    }

    pub fn not_after(&self) -> OffsetDateTime {
        self.cert.validity().not_after.to_datetime()
    }

    /// The subject's DER encoding (the whole Name, tag included).
    pub fn subject_raw(&self) -> &[u8] {
        self.cert.subject().as_raw()
    }

    /// The issuer's DER encoding (the whole Name, tag included).
    pub fn issuer_raw(&self) -> &[u8] {
        self.cert.issuer().as_raw()
    }

    /// The SubjectPublicKeyInfo's DER encoding (tag included).
    pub fn spki_raw(&self) -> &[u8] {
        self.cert.public_key().raw
    }

    pub fn is_self_issued(&self) -> bool {
        self.subject_raw() == self.issuer_raw()
    }

    /// DNS names and IP addresses from subjectAltName, in order.
    pub fn sans(&self) -> (Vec<String>, Vec<IpAddr>) {
        let mut dns = Vec::new();
        let mut ips = Vec::new();
        if let Ok(Some(san)) = self.cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(n) => dns.push((*n).to_owned()),
                    GeneralName::IPAddress(bytes) => {
                        if let Some(ip) = ip_from_bytes(bytes) {
                            ips.push(ip);
                        }
                    }
                    _ => {}
                }
            }
        }
        (dns, ips)
    }

    pub fn key(&self) -> KeyInfo {
        let spki = self.cert.public_key();
        let alg = &spki.algorithm.algorithm;
        match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => KeyInfo {
                kind: "RSA".into(),
                bits: u32::try_from(rsa.key_size()).unwrap_or(u32::MAX),
                curve: None,
            },
            Ok(PublicKey::EC(point)) => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .map(|oid| curve_name(&oid));
                KeyInfo {
                    kind: "EC".into(),
                    bits: u32::try_from(point.key_size()).unwrap_or(u32::MAX),
                    curve,
                }
            }
            Ok(PublicKey::DSA(_)) => KeyInfo {
                kind: "DSA".into(),
                bits: 0,
                curve: None,
            },
            _ if *alg == oid_registry::OID_SIG_ED25519 => KeyInfo {
                kind: "Ed25519".into(),
                bits: 256,
                curve: None,
            },
            _ if *alg == oid_registry::OID_SIG_ED448 => KeyInfo {
                kind: "Ed448".into(),
                bits: 456,
                curve: None,
            },
            _ => KeyInfo {
                kind: alg.to_id_string(),
                bits: 0,
                curve: None,
            },
        }
    }

    pub fn signature_algorithm(&self) -> String {
        oid_name(&self.cert.signature_algorithm.algorithm)
    }

    pub fn info(&self) -> CertificateInfo {
        let (dns, ips) = self.sans();
        let mut sans = dns;
        sans.extend(ips.iter().map(IpAddr::to_string));
        CertificateInfo {
            subject: self.cert.subject().to_string(),
            issuer: self.cert.issuer().to_string(),
            sans,
            serial: serial_hex(self.cert.raw_serial()),
            not_before: self.not_before(),
            not_after: self.not_after(),
            fingerprint_sha256: self.fingerprint(),
            key: self.key(),
            signature_algorithm: self.signature_algorithm(),
        }
    }

    pub fn chain_entry(&self) -> ChainEntry {
        ChainEntry {
            subject: self.cert.subject().to_string(),
            issuer: self.cert.issuer().to_string(),
            not_after: self.not_after(),
            fingerprint_sha256: self.fingerprint(),
        }
    }
}

/// Lowercase hex of the serial's magnitude: the DER sign byte is dropped, as OpenSSL prints it.
fn serial_hex(raw: &[u8]) -> String {
    let trimmed = match raw {
        [0, rest @ ..] if !rest.is_empty() => rest,
        other => other,
    };
    hex::encode(trimmed)
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

fn oid_name(oid: &Oid<'_>) -> String {
    match x509_parser::objects::oid2sn(oid, x509_parser::objects::oid_registry()) {
        Ok(name) => name.to_owned(),
        Err(_) => oid.to_id_string(),
    }
}

fn curve_name(oid: &Oid<'_>) -> String {
    match oid.to_id_string().as_str() {
        "1.2.840.10045.3.1.7" => "P-256".into(),
        "1.3.132.0.34" => "P-384".into(),
        "1.3.132.0.35" => "P-521".into(),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_drop_the_sign_byte_only() {
        assert_eq!(serial_hex(&[0x00, 0x8f, 0x01]), "8f01");
        assert_eq!(serial_hex(&[0x00]), "00");
        assert_eq!(serial_hex(&[0x12, 0x00]), "1200");
    }
}
