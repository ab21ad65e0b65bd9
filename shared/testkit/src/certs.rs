//! Certificate builders: CAs, intermediates and leaves with chosen names, dates and keys.
//!
//! ```text
//! let root = Ca::new("Test Root");
//! let issuing = root.intermediate("Test Issuing CA");
//! let leaf = issuing.leaf(&["shop.test"]).expiring_in_days(5).build();
//! ```

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PublicKeyData, RsaKeySize, SignatureAlgorithm,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

/// A key algorithm for a test certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// ECDSA on P-256 (the default).
    EcdsaP256,
    /// ECDSA on P-384.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
    /// RSA, 2048-bit modulus.
    Rsa2048,
    /// RSA, 4096-bit modulus.
    Rsa4096,
}

fn generate(kind: KeyKind) -> KeyPair {
    let key = match kind {
        KeyKind::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyKind::EcdsaP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
        KeyKind::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519),
        KeyKind::Rsa2048 => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_2048),
        KeyKind::Rsa4096 => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_4096),
    };
    key.expect("key generation")
}

/// A certificate authority: a root, or an intermediate signed by another [`Ca`].
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// Certificates a server sends after its leaf to reach this CA's root: this CA (if it is
    /// an intermediate) and its parents, root excluded.
    path: Vec<CertificateDer<'static>>,
    root: CertificateDer<'static>,
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "certpilot tests");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(365);
    params.not_after = now + Duration::days(3650);
    params
}

impl Ca {
    /// A self-signed root with a P-256 key, valid from a year ago for ten years.
    pub fn new(cn: &str) -> Ca {
        let issuer = CertifiedIssuer::self_signed(ca_params(cn), generate(KeyKind::EcdsaP256))
            .expect("self-signed root");
        let root = issuer.der().clone();
        Ca {
            issuer,
            path: Vec::new(),
            root,
        }
    }

    /// An intermediate CA signed by this one.
    pub fn intermediate(&self, cn: &str) -> Ca {
        self.intermediate_with(cn, BasicConstraints::Unconstrained)
    }

    /// An intermediate CA signed by this one that allows at most `path_len` CAs below it.
    pub fn constrained_intermediate(&self, cn: &str, path_len: u8) -> Ca {
        self.intermediate_with(cn, BasicConstraints::Constrained(path_len))
    }

    fn intermediate_with(&self, cn: &str, constraints: BasicConstraints) -> Ca {
        let mut params = ca_params(cn);
        params.is_ca = IsCa::Ca(constraints);
        params.use_authority_key_identifier_extension = true;
        let issuer = CertifiedIssuer::signed_by(params, generate(KeyKind::EcdsaP256), &self.issuer)
            .expect("intermediate");
        let mut path = vec![issuer.der().clone()];
        path.extend(self.path.iter().cloned());
        Ca {
            issuer,
            path,
            root: self.root.clone(),
        }
    }

    /// This CA's own certificate, DER.
    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// The root this CA chains to, PEM (what a `--ca-file` holds).
    pub fn root_pem(&self) -> String {
        pem("CERTIFICATE", &self.root)
    }

    /// Starts a leaf for `names` (DNS names or IP addresses), issued by this CA.
    pub fn leaf(&self, names: &[&str]) -> LeafBuilder<'_> {
        LeafBuilder::new(Some(self), names)
    }
}

/// Builds a leaf certificate and the chain a server would send with it.
pub struct LeafBuilder<'a> {
    issuer: Option<&'a Ca>,
    names: Vec<String>,
    cn: Option<String>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    key: KeyKind,
    rsa_1024_public_key: bool,
    sha1_signature: bool,
    send_intermediates: bool,
    send_root: bool,
}

impl<'a> LeafBuilder<'a> {
    fn new(issuer: Option<&'a Ca>, names: &[&str]) -> Self {
        let now = OffsetDateTime::now_utc();
        LeafBuilder {
            issuer,
            names: names.iter().map(|s| (*s).to_owned()).collect(),
            cn: names.first().map(|s| (*s).to_owned()),
            not_before: now - Duration::days(30),
            not_after: now + Duration::days(60),
            key: KeyKind::EcdsaP256,
            rsa_1024_public_key: false,
            sha1_signature: false,
            send_intermediates: true,
            send_root: false,
        }
    }

    /// A self-signed leaf for `names`.
    pub fn self_signed(names: &[&str]) -> LeafBuilder<'static> {
        LeafBuilder::new(None, names)
    }

    /// Sets the validity window.
    pub fn valid(mut self, not_before: OffsetDateTime, not_after: OffsetDateTime) -> Self {
        self.not_before = not_before;
        self.not_after = not_after;
        self
    }

    /// Valid from 30 days ago until `days` from now (negative: already expired).
    pub fn expiring_in_days(self, days: i64) -> Self {
        let now = OffsetDateTime::now_utc();
        self.valid(now - Duration::days(30), now + Duration::days(days))
    }

    /// Expired yesterday.
    pub fn expired(self) -> Self {
        let now = OffsetDateTime::now_utc();
        self.valid(now - Duration::days(90), now - Duration::days(1))
    }

    /// Valid from tomorrow.
    pub fn not_yet_valid(self) -> Self {
        let now = OffsetDateTime::now_utc();
        self.valid(now + Duration::days(1), now + Duration::days(90))
    }

    /// Uses a key of `kind`.
    pub fn key(mut self, kind: KeyKind) -> Self {
        self.key = kind;
        self
    }

    /// Puts a 1024-bit RSA public key in the certificate. The server still signs its handshake
    /// with a P-256 key: no current library generates 1024-bit RSA keys, and the scanner does
    /// not check handshake signatures, so only the certificate's contents matter.
    pub fn weak_rsa_1024(mut self) -> Self {
        self.rsa_1024_public_key = true;
        self
    }

    /// Makes the certificate claim `sha1WithRSAEncryption`. Only for self-signed leaves: it
    /// signs with RSA and SHA-256, then rewrites the algorithm identifiers, so the signature
    /// itself no longer verifies (as no SHA-1 signature should).
    pub fn sha1_signature(mut self) -> Self {
        self.sha1_signature = true;
        self.key = KeyKind::Rsa2048;
        self
    }

    /// Leaves the intermediates out of the served chain.
    pub fn without_intermediates(mut self) -> Self {
        self.send_intermediates = false;
        self
    }

    /// Sends the root too, as some servers do.
    pub fn with_root(mut self) -> Self {
        self.send_root = true;
        self
    }

    /// Sets the subject common name (defaults to the first name).
    pub fn common_name(mut self, cn: &str) -> Self {
        self.cn = Some(cn.to_owned());
        self
    }

    /// Issues the certificate.
    pub fn build(self) -> Leaf {
        let mut params = CertificateParams::new(self.names.clone()).expect("valid SAN names");
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = &self.cn {
            params
                .distinguished_name
                .push(DnType::CommonName, cn.as_str());
        }
        params.not_before = self.not_before;
        params.not_after = self.not_after;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = self.issuer.is_some();

        let signing = if self.rsa_1024_public_key {
            generate(KeyKind::EcdsaP256)
        } else {
            generate(self.key)
        };
        let cert = match (self.issuer, self.rsa_1024_public_key) {
            (Some(ca), true) => params.signed_by(&Rsa1024PublicKey::new(), &ca.issuer),
            (Some(ca), false) => params.signed_by(&signing, &ca.issuer),
            (None, true) => {
                // A self-signed certificate needs the private half of its own key; issue the
                // weak key from a throwaway CA named like the leaf instead.
                let ca = Ca::new(self.cn.as_deref().unwrap_or("weak"));
                params.signed_by(&Rsa1024PublicKey::new(), &ca.issuer)
            }
            (None, false) => params.self_signed(&signing),
        }
        .expect("certificate signing");
        let mut der = cert.der().to_vec();
        if self.sha1_signature {
            rewrite_signature_oid_to_sha1(&mut der);
        }
        let cert = CertificateDer::from(der);

        let mut chain = vec![cert.clone()];
        if let Some(ca) = self.issuer {
            if self.send_intermediates {
                chain.extend(ca.path.iter().cloned());
            }
            if self.send_root {
                chain.push(ca.root.clone());
            }
        }
        Leaf {
            cert,
            chain,
            key: PrivatePkcs8KeyDer::from(signing.serialize_der()),
        }
    }
}

/// An issued leaf, its private key, and the chain a server sends.
pub struct Leaf {
    /// The leaf, DER.
    pub cert: CertificateDer<'static>,
    /// What the server sends: the leaf, then intermediates (and the root if asked).
    pub chain: Vec<CertificateDer<'static>>,
    /// The key the server signs its handshake with, PKCS#8.
    pub key: PrivatePkcs8KeyDer<'static>,
}

impl Leaf {
    /// A leaf from files a server would be given: the full chain (leaf first) and a PKCS#8
    /// key, both PEM — to serve a certificate certpilot issued.
    pub fn from_pem(fullchain_pem: &str, key_pem: &str) -> Leaf {
        use rustls_pki_types::pem::PemObject;
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(fullchain_pem.as_bytes())
                .collect::<Result<_, _>>()
                .expect("PEM certificates");
        let key = PrivatePkcs8KeyDer::from_pem_slice(key_pem.as_bytes()).expect("a PKCS#8 key");
        Leaf {
            cert: chain.first().expect("at least the leaf").clone(),
            chain,
            key,
        }
    }

    /// The leaf, DER.
    pub fn der(&self) -> CertificateDer<'static> {
        self.cert.clone()
    }

    /// The private key in the form rustls takes.
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }

    /// The leaf, PEM.
    pub fn pem(&self) -> String {
        pem("CERTIFICATE", &self.cert)
    }

    /// The served chain, PEM (what a server's certificate file holds).
    pub fn chain_pem(&self) -> String {
        self.chain.iter().map(|c| pem("CERTIFICATE", c)).collect()
    }

    /// The private key, PKCS#8 PEM.
    pub fn key_pem(&self) -> String {
        pem("PRIVATE KEY", self.key.secret_pkcs8_der())
    }

    /// SHA-256 fingerprint of the leaf, lowercase hex (what the scanner reports).
    pub fn fingerprint(&self) -> String {
        use std::fmt::Write;
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, self.cert.as_ref());
        digest.as_ref().iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }
}

/// Wraps DER in PEM armour.
pub fn pem(label: &str, der: &[u8]) -> String {
    ::pem::encode(&::pem::Pem::new(label, der.to_vec()))
}

/// sha256WithRSAEncryption (1.2.840.113549.1.1.11) and sha1WithRSAEncryption (…1.1.5) have
/// OIDs of the same length, so the swap keeps every DER length intact.
fn rewrite_signature_oid_to_sha1(der: &mut [u8]) {
    const SHA256_RSA: [u8; 11] = [
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b,
    ];
    let mut i = 0;
    let mut replaced = 0;
    while i + SHA256_RSA.len() <= der.len() {
        if der[i..i + SHA256_RSA.len()] == SHA256_RSA {
            der[i + SHA256_RSA.len() - 1] = 0x05;
            replaced += 1;
        }
        i += 1;
    }
    assert_eq!(
        replaced, 2,
        "expected the OID in tbsCertificate and signatureAlgorithm"
    );
}

/// SHA-256 of the first certificate of a PEM chain, hex (what certpilot calls a
/// certificate's fingerprint).
pub fn fingerprint_of(chain_pem: &str) -> String {
    use rustls_pki_types::pem::PemObject;
    let der = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()
        .expect("a certificate")
        .expect("PEM");
    use std::fmt::Write;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der.as_ref());
    digest.as_ref().iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// What the vendor mocks read from an uploaded leaf: its DNS SANs (lowercase), its serial
/// (decimal, as vendors report it) and its SubjectPublicKeyInfo (DER).
pub struct LeafFacts {
    /// DNS SANs, lowercase.
    pub sans: Vec<String>,
    /// Serial, decimal.
    pub serial: String,
    /// The SubjectPublicKeyInfo, DER.
    pub spki: Vec<u8>,
}

/// The facts of the first certificate of a PEM chain; `None` when it does not parse.
pub fn leaf_facts(chain_pem: &str) -> Option<LeafFacts> {
    let (_, block) = x509_parser::pem::parse_x509_pem(chain_pem.as_bytes()).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&block.contents).ok()?;
    let sans = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => {
                        Some(d.to_ascii_lowercase())
                    }
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Some(LeafFacts {
        sans,
        serial: cert.tbs_certificate.serial.to_string(),
        spki: cert.public_key().raw.to_vec(),
    })
}

/// The public key of a CSR, for signing a certificate to a key the test never holds.
struct CsrPublicKey {
    bits: Vec<u8>,
    algorithm: &'static SignatureAlgorithm,
}

impl PublicKeyData for CsrPublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.bits
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.algorithm
    }
}

impl Ca {
    /// Signs `csr_pem` as a CA signs a CSR whose key it never sees (a vendor's): a leaf for
    /// the CSR's SANs and public key, valid from a month ago for sixty days. The full chain
    /// (leaf, then intermediates), PEM.
    pub fn sign_csr(&self, csr_pem: &str) -> String {
        use x509_parser::prelude::FromDer;
        let block = pem::parse(csr_pem.trim()).expect("a PEM CSR");
        let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(
            block.contents(),
        )
        .expect("a CSR");
        let mut names = vec![];
        for ext in csr.requested_extensions().into_iter().flatten() {
            if let x509_parser::extensions::ParsedExtension::SubjectAlternativeName(san) = ext {
                for n in &san.general_names {
                    if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                        names.push((*d).to_owned());
                    }
                }
            }
        }
        let spki = &csr.certification_request_info.subject_pki;
        let rsa = spki.algorithm.algorithm.to_id_string() == "1.2.840.113549.1.1.1";
        let key = CsrPublicKey {
            bits: spki.subject_public_key.data.to_vec(),
            algorithm: if rsa {
                &rcgen::PKCS_RSA_SHA256
            } else {
                &rcgen::PKCS_ECDSA_P256_SHA256
            },
        };
        let mut params = CertificateParams::new(names).expect("valid SANs");
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(30);
        params.not_after = now + Duration::days(60);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer).expect("signing");
        let mut chain = cert.pem();
        for der in &self.path {
            chain.push_str(&pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec())));
        }
        chain
    }
}

/// A 1024-bit RSA public key (modulus of 128 bytes with the top bit set, exponent 65537).
struct Rsa1024PublicKey {
    der: Vec<u8>,
}

impl Rsa1024PublicKey {
    fn new() -> Self {
        let mut der = vec![0x30, 0x81, 0x89, 0x02, 0x81, 0x81, 0x00];
        der.extend((0..128u32).map(|i| {
            if i == 0 {
                0xc3
            } else {
                (i * 37 % 251) as u8 | 1
            }
        }));
        der.extend([0x02, 0x03, 0x01, 0x00, 0x01]);
        Rsa1024PublicKey { der }
    }
}

impl PublicKeyData for Rsa1024PublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.der
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &rcgen::PKCS_RSA_SHA256
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_carry_intermediates_unless_told_not_to() {
        let root = Ca::new("Root");
        let issuing = root.intermediate("Issuing");
        assert_eq!(issuing.leaf(&["a.test"]).build().chain.len(), 2);
        assert_eq!(
            issuing
                .leaf(&["a.test"])
                .without_intermediates()
                .build()
                .chain
                .len(),
            1
        );
        assert_eq!(issuing.leaf(&["a.test"]).with_root().build().chain.len(), 3);
        assert!(root.root_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    }
}
