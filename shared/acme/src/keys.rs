//! Private keys, CSRs and the checks a downloaded certificate must pass.

use certpilot_core::model::certificate::{Identifier, KeyType};
use certpilot_core::ports::{DownloadedCertificate, IssueError, KeySource, SecretValue};
use rcgen::{CertificateParams, DistinguishedName, KeyPair, SanType};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate};

/// Generates a private key of `key_type`, as PKCS#8 PEM.
pub fn generate(key_type: KeyType) -> Result<SecretValue, IssueError> {
    use rcgen::{PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_RSA_SHA256, RsaKeySize};
    let pair = match key_type {
        KeyType::EcdsaP256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256),
        KeyType::EcdsaP384 => KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384),
        KeyType::Rsa2048 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048),
        KeyType::Rsa3072 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_3072),
        KeyType::Rsa4096 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_4096),
    }
    .map_err(|e| IssueError::Config(format!("cannot generate a {key_type} key: {e}")))?;
    Ok(SecretValue::new(pair.serialize_pem().into_bytes()))
}

fn key_pair(key: &SecretValue) -> Result<KeyPair, IssueError> {
    let pem = key
        .expose_str()
        .map_err(|_| IssueError::Config("the stored private key is not PEM".into()))?;
    KeyPair::from_pem(pem)
        .map_err(|e| IssueError::Config(format!("the stored private key does not parse: {e}")))
}

/// A CSR (DER) for `names`, signed with `key`, with an empty subject as CAs ignore it.
pub fn csr(names: &[Identifier], key: &SecretValue) -> Result<Vec<u8>, IssueError> {
    let pair = key_pair(key)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    for name in names {
        params.subject_alt_names.push(match name {
            Identifier::Dns(n) => SanType::DnsName(
                n.clone()
                    .try_into()
                    .map_err(|e| IssueError::Config(format!("{n}: {e}")))?,
            ),
            Identifier::Ip(ip) => SanType::IpAddress(*ip),
        });
    }
    params
        .serialize_request(&pair)
        .map(|csr| csr.der().to_vec())
        .map_err(|e| IssueError::Config(format!("cannot build the CSR: {e}")))
}

fn csr_der(pem: &str) -> Result<Vec<u8>, IssueError> {
    rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(pem.as_bytes())
        .map(|d| d.as_ref().to_vec())
        .map_err(|e| IssueError::Config(format!("the target's CSR is not PEM: {e}")))
}

/// The DER of a CSR a target made (PEM), checked to ask for exactly `names` — the CA issues
/// what the order names, so an enrollment's names must be the certificate's.
pub fn target_csr(names: &[Identifier], pem: &str) -> Result<Vec<u8>, IssueError> {
    use x509_parser::certification_request::X509CertificationRequest;
    let der = csr_der(pem)?;
    let (_, csr) = X509CertificationRequest::from_der(&der)
        .map_err(|e| IssueError::Config(format!("the target's CSR does not parse: {e}")))?;
    let mut asked: Vec<Identifier> = Vec::new();
    if let Some(exts) = csr.requested_extensions() {
        for ext in exts {
            if let ParsedExtension::SubjectAlternativeName(san) = ext {
                for n in &san.general_names {
                    if let GeneralName::DNSName(d) = n {
                        asked.push(Identifier::Dns(d.to_ascii_lowercase()));
                    }
                }
            }
        }
    }
    let mut want: Vec<Identifier> = names.to_vec();
    want.sort();
    asked.sort();
    asked.dedup();
    if asked != want {
        let list = |v: &[Identifier]| {
            v.iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(IssueError::Config(format!(
            "the target's CSR asks for {} but the certificate is for {}: make the names the same",
            list(&asked),
            list(&want)
        )));
    }
    Ok(der)
}

/// The public key (the subject public key's bits) a certificate for `source` must hold.
pub fn public_key(source: KeySource<'_>) -> Result<Vec<u8>, IssueError> {
    match source {
        KeySource::Key(key) => Ok(key_pair(key)?.public_key_raw().to_vec()),
        KeySource::Csr(pem) => {
            use x509_parser::certification_request::X509CertificationRequest;
            let der = csr_der(pem)?;
            let (_, csr) = X509CertificationRequest::from_der(&der)
                .map_err(|e| IssueError::Config(format!("the target's CSR does not parse: {e}")))?;
            Ok(csr
                .certification_request_info
                .subject_pki
                .subject_public_key
                .data
                .to_vec())
        }
    }
}

/// Checks that the first certificate of `chain_pem` holds `key`'s public key.
pub fn check_pair(chain_pem: &str, key: &SecretValue) -> Result<(), IssueError> {
    let leaf_der = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()
        .ok_or_else(|| IssueError::Check("the stored chain holds no certificate".into()))?
        .map_err(|e| IssueError::Check(format!("the stored chain is not PEM certificates: {e}")))?;
    let (_, leaf) = X509Certificate::from_der(&leaf_der)
        .map_err(|e| IssueError::Check(format!("the stored leaf: {e}")))?;
    let pair = key_pair(key)
        .map_err(|_| IssueError::Check("the stored private key cannot be read".into()))?;
    if leaf.public_key().subject_public_key.data.as_ref() != pair.public_key_raw() {
        return Err(IssueError::Check(
            "the stored private key does not belong to the certificate".into(),
        ));
    }
    Ok(())
}

/// Parses and checks a downloaded chain: every block is a certificate, the leaf's public key
/// is `key`'s, and the leaf covers every name.
pub fn check(
    chain_pem: &str,
    names: &[Identifier],
    key: KeySource<'_>,
    profile: Option<String>,
) -> Result<DownloadedCertificate, IssueError> {
    let ders: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| IssueError::Check(format!("the chain is not PEM certificates: {e}")))?;
    let Some(leaf_der) = ders.first() else {
        return Err(IssueError::Check("the CA sent no certificate".into()));
    };
    for (i, der) in ders.iter().enumerate() {
        X509Certificate::from_der(der)
            .map_err(|e| IssueError::Check(format!("certificate {i} of the chain: {e}")))?;
    }
    let (_, leaf) =
        X509Certificate::from_der(leaf_der).map_err(|e| IssueError::Check(format!("leaf: {e}")))?;
    if leaf.public_key().subject_public_key.data.as_ref() != public_key(key)?.as_slice() {
        return Err(IssueError::Check(match key {
            KeySource::Key(_) => {
                "the leaf's public key is not the key this renewal generated".into()
            }
            KeySource::Csr(_) => "the leaf's public key is not the one of the target's CSR".into(),
        }));
    }
    let mut covered: Vec<Identifier> = Vec::new();
    for ext in leaf.extensions() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() {
            for name in &san.general_names {
                match name {
                    GeneralName::DNSName(n) => {
                        covered.push(Identifier::Dns(n.to_ascii_lowercase()));
                    }
                    GeneralName::IPAddress(bytes) => {
                        let ip = match bytes.len() {
                            4 => <[u8; 4]>::try_from(*bytes).ok().map(std::net::IpAddr::from),
                            16 => <[u8; 16]>::try_from(*bytes)
                                .ok()
                                .map(std::net::IpAddr::from),
                            _ => None,
                        };
                        covered.extend(ip.map(Identifier::Ip));
                    }
                    _ => {}
                }
            }
        }
    }
    if let Some(missing) = names.iter().find(|n| !covered.contains(n)) {
        return Err(IssueError::Check(format!(
            "the certificate does not cover {missing}"
        )));
    }
    let to_time = |t: x509_parser::time::ASN1Time| t.to_datetime();
    let fingerprint = hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        leaf_der.as_ref(),
    ));
    let ari_id = instant_acme::CertificateIdentifier::try_from(leaf_der)
        .ok()
        .map(|id| id.to_string());
    Ok(DownloadedCertificate {
        chain_pem: chain_pem.to_owned(),
        fingerprint,
        serial: hex::encode(leaf.raw_serial()),
        not_before: to_time(leaf.validity().not_before),
        not_after: to_time(leaf.validity().not_after),
        ari_id,
        profile,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_type_generates_and_signs_a_csr() {
        let names: Vec<Identifier> = vec![
            "shop.example.com".parse().unwrap(),
            "192.0.2.7".parse().unwrap(),
        ];
        for key_type in KeyType::ALL {
            let key = generate(key_type).unwrap();
            assert!(key.expose_str().unwrap().contains("PRIVATE KEY"));
            assert!(!format!("{key:?}").contains("PRIVATE"), "Debug redacts");
            let der = csr(&names, &key).unwrap();
            assert!(der.len() > 100, "{key_type}");
        }
    }

    #[test]
    fn a_chain_for_another_key_or_missing_a_name_is_refused() {
        let ca = certpilot_testkit::certs::Ca::new("Check Root");
        let leaf = ca.leaf(&["shop.example.com"]).build();
        let ours = generate(KeyType::EcdsaP256).unwrap();
        let names: Vec<Identifier> = vec!["shop.example.com".parse().unwrap()];
        let e = check(&leaf.chain_pem(), &names, KeySource::Key(&ours), None).unwrap_err();
        assert!(e.to_string().contains("public key"), "{e}");
        let theirs = SecretValue::new(leaf.key_pem().into_bytes());
        let ok = check(&leaf.chain_pem(), &names, KeySource::Key(&theirs), None).unwrap();
        assert_eq!(ok.fingerprint, leaf.fingerprint());
        let more: Vec<Identifier> = vec![
            "shop.example.com".parse().unwrap(),
            "www.example.com".parse().unwrap(),
        ];
        let e = check(&leaf.chain_pem(), &more, KeySource::Key(&theirs), None).unwrap_err();
        assert!(e.to_string().contains("www.example.com"), "{e}");
        let e = check("garbage", &names, KeySource::Key(&theirs), None).unwrap_err();
        assert!(e.to_string().contains("no certificate"), "{e}");
    }

    #[test]
    fn a_targets_csr_must_ask_for_the_certificates_names_and_its_key_is_checked() {
        let names: Vec<Identifier> = vec![
            "shop.example.com".parse().unwrap(),
            "www.example.com".parse().unwrap(),
        ];
        // A vendor's CSR, with the key it keeps.
        let vendor = generate(KeyType::Rsa2048).unwrap();
        let der = csr(&names, &vendor).unwrap();
        let pem = rustls_pki_types::CertificateSigningRequestDer::from(der.clone());
        let pem = format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
            data_encoding::BASE64.encode(pem.as_ref())
        );
        assert_eq!(target_csr(&names, &pem).unwrap(), der);
        let other: Vec<Identifier> = vec!["shop.example.com".parse().unwrap()];
        let e = target_csr(&other, &pem).unwrap_err().to_string();
        assert!(
            e.contains("asks for shop.example.com, www.example.com but the certificate is for shop.example.com"),
            "{e}"
        );
        assert!(target_csr(&names, "not a csr").is_err());
        // A certificate for the vendor's key passes; one for another key does not.
        let ca = certpilot_testkit::certs::Ca::new("CSR Root");
        let leaf = ca.leaf(&["shop.example.com", "www.example.com"]).build();
        let e = check(&leaf.chain_pem(), &names, KeySource::Csr(&pem), None).unwrap_err();
        assert!(
            e.to_string().contains("not the one of the target's CSR"),
            "{e}"
        );
    }
}
