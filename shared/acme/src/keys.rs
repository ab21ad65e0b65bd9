//! Private keys, CSRs and the checks a downloaded certificate must pass.

use certpilot_core::model::certificate::{Identifier, KeyType};
use certpilot_core::ports::{DownloadedCertificate, IssueError, SecretValue};
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
    key: &SecretValue,
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
    let pair = key_pair(key)?;
    if leaf.public_key().subject_public_key.data.as_ref() != pair.public_key_raw() {
        return Err(IssueError::Check(
            "the leaf's public key is not the key this renewal generated".into(),
        ));
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
        let e = check(&leaf.chain_pem(), &names, &ours, None).unwrap_err();
        assert!(e.to_string().contains("public key"), "{e}");
        let theirs = SecretValue::new(leaf.key_pem().into_bytes());
        let ok = check(&leaf.chain_pem(), &names, &theirs, None).unwrap();
        assert_eq!(ok.fingerprint, leaf.fingerprint());
        let more: Vec<Identifier> = vec![
            "shop.example.com".parse().unwrap(),
            "www.example.com".parse().unwrap(),
        ];
        let e = check(&leaf.chain_pem(), &more, &theirs, None).unwrap_err();
        assert!(e.to_string().contains("www.example.com"), "{e}");
        let e = check("garbage", &names, &theirs, None).unwrap_err();
        assert!(e.to_string().contains("no certificate"), "{e}");
    }
}
