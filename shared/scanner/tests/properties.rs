//! Property tests of certificate parsing and validation with hostile input: random bytes,
//! and real chains with bytes flipped, cut or appended. Whatever a server sends: no panic;
//! what does not parse says which certificate; an untrusted verdict always names why.

use certpilot_core::model::target::Host;
use certpilot_scanner::{TrustStore, inspect_chain};
use certpilot_testkit::certs::Ca;
use proptest::prelude::*;
use rustls::pki_types::CertificateDer;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A real chain (leaf, intermediate) and a trust store holding its root.
fn real_chain() -> (Vec<Vec<u8>>, TrustStore) {
    let root = Ca::new("Property Root");
    let leaf = root
        .intermediate("Property Issuing CA")
        .leaf(&["shop.test"])
        .build();
    let chain = rustls::pki_types::pem::PemObject::pem_slice_iter(leaf.chain_pem().as_bytes())
        .map(|c: Result<CertificateDer<'static>, _>| c.expect("PEM").as_ref().to_vec())
        .collect();
    let mut trust = TrustStore::mozilla();
    trust
        .add_der(&CertificateDer::from(root_der(&root)))
        .expect("root");
    (chain, trust)
}

fn root_der(root: &Ca) -> Vec<u8> {
    let pem = root.root_pem();
    let der: CertificateDer<'static> =
        rustls::pki_types::pem::PemObject::from_pem_slice(pem.as_bytes()).expect("root PEM");
    der.as_ref().to_vec()
}

/// One way a hostile server or a broken middlebox changes a certificate.
#[derive(Clone, Debug)]
enum Damage {
    Flip { at: usize, with: u8 },
    Cut { at: usize },
    Append { bytes: Vec<u8> },
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, with)| Damage::Flip { at, with }),
        any::<usize>().prop_map(|at| Damage::Cut { at }),
        prop::collection::vec(any::<u8>(), 1..16).prop_map(|bytes| Damage::Append { bytes }),
    ]
}

fn apply(der: &mut Vec<u8>, damage: &Damage) {
    if der.is_empty() {
        return;
    }
    match damage {
        Damage::Flip { at, with } => {
            let i = at % der.len();
            der[i] ^= with | 1;
        }
        Damage::Cut { at } => der.truncate(at % der.len()),
        Damage::Append { bytes } => der.extend_from_slice(bytes),
    }
}

fn check(chain: &[Vec<u8>], host: &str, trust: &TrustStore) -> Result<(), TestCaseError> {
    let ders: Vec<CertificateDer<'static>> = chain
        .iter()
        .map(|d| CertificateDer::from(d.clone()))
        .collect();
    let host = Host::Name(host.to_owned());
    match inspect_chain(&ders, &host, trust, time::OffsetDateTime::now_utc()) {
        Ok(inspected) => {
            let v = inspected.validation;
            prop_assert_eq!(v.trusted, v.problems.is_empty(), "{:?}", v);
        }
        Err(e) => prop_assert!(
            e.starts_with("certificate ") || e.contains("empty certificate chain"),
            "{e}"
        ),
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_bytes_never_panic(chain in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..600), 0..4)) {
        let trust = TrustStore::mozilla();
        check(&chain, "shop.test", &trust)?;
    }

    #[test]
    fn damaged_real_chains_never_panic_and_never_pass_silently(
        which in 0usize..2,
        damages in prop::collection::vec(damage(), 1..4),
        host in "(shop|www|other)\\.test",
    ) {
        let (mut chain, trust) = real_chain();
        for d in &damages {
            apply(&mut chain[which], d);
        }
        check(&chain, &host, &trust)?;
    }
}

#[test]
fn the_undamaged_chain_is_trusted() {
    let (chain, trust) = real_chain();
    let ders: Vec<CertificateDer<'static>> = chain.into_iter().map(CertificateDer::from).collect();
    let inspected = inspect_chain(
        &ders,
        &Host::Name("shop.test".into()),
        &trust,
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    assert!(inspected.validation.trusted, "{:?}", inspected.validation);
}
