//! The contract every deploy target kind keeps (see `DeployTarget`), run against a unit of
//! that kind through the registry, so each step uses a target built afresh, as separate runs
//! would:
//!
//! 1. `bound` reports what `deploy` installed: its handle and the leaf's fingerprint;
//! 2. `deploy` is idempotent: deploying the same certificate again changes nothing;
//! 3. nothing is removed before `finish`: after deploying a renewal, `roll_back` restores
//!    what was bound before (read back by the handle it reports, when it moved), and a second
//!    `roll_back` leaves it so;
//! 4. after `finish`, the renewal is what is bound.

use certpilot_core::model::certificate::KeyType;
use certpilot_core::model::deploy::{DeploymentStatus, Unit, UnitRecord, UnitState};
use certpilot_core::ports::{
    Bound, DeployMaterial, DeployRequest, DeployTargets, Deployed, SecretValue,
};

use crate::certs::Leaf;

/// `leaf` as a deploy target receives it, with its key.
pub fn material(leaf: &Leaf, key_type: KeyType, names: &[&str]) -> DeployMaterial {
    DeployMaterial {
        fingerprint: leaf.fingerprint(),
        names: names.iter().map(|n| (*n).to_owned()).collect(),
        not_after: time::OffsetDateTime::now_utc() + time::Duration::days(90),
        key_type,
        chain_pem: leaf.chain_pem(),
        key: Some(SecretValue::new(leaf.key_pem().into_bytes())),
        acm_arn: None,
        stacked: vec![],
    }
}

/// What the service records after `deployed`.
fn record_of(unit: &Unit, deployed: &Deployed, material: &DeployMaterial) -> UnitRecord {
    UnitRecord {
        name: unit.name.clone(),
        state: UnitState {
            holding: Some(material.fingerprint.clone()),
            handle: deployed.handle.clone(),
            key_type: Some(material.key_type),
            ..UnitState::new(DeploymentStatus::Verified)
        },
    }
}

async fn bound(targets: &DeployTargets, unit: &Unit, recorded: &Deployed) -> Bound {
    targets
        .target(unit)
        .await
        .unwrap()
        .bound(recorded.handle.as_deref())
        .await
        .unwrap_or_else(|e| panic!("{}: bound: {e}", unit.kind))
}

/// Deploys `certificate` and drives it to the end: a deploy that needs time
/// (`check_after`) is asked again, and one that waits on a stage (`prove_first`) is promoted
/// (the stage's handshake is the service's business, not the target's contract).
async fn deploy(
    targets: &DeployTargets,
    unit: &Unit,
    certificate: &DeployMaterial,
    previous: Option<&DeployMaterial>,
    record: Option<&UnitRecord>,
) -> Deployed {
    let target = targets.target(unit).await.unwrap();
    let mut record = record.cloned();
    for _ in 0..30 {
        let request = DeployRequest {
            id: "contract",
            unit,
            certificate,
            previous,
            record: record.as_ref(),
        };
        let mut deployed = target
            .deploy(request)
            .await
            .unwrap_or_else(|e| panic!("{}: deploy: {e}", unit.kind));
        if deployed.prove_first.is_some() {
            deployed = target
                .promote(request, &deployed)
                .await
                .unwrap_or_else(|e| panic!("{}: promote: {e}", unit.kind));
        }
        if deployed.check_after.is_none() {
            return deployed;
        }
        let mut r = record_of(unit, &deployed, certificate);
        r.state.status = DeploymentStatus::InProgress;
        record = Some(r);
    }
    panic!("{}: the deploy never finished", unit.kind)
}

/// Runs the contract on `unit` with two certificates for the same names: `first` is
/// installed, then `second` as its renewal. The unit's target must not hold `first` or
/// `second` yet.
pub async fn deploy_target_contract(
    targets: &DeployTargets,
    unit: &Unit,
    first: &DeployMaterial,
    second: &DeployMaterial,
) {
    deploy_target_contract_renewing(targets, unit, first, async || second.clone()).await;
}

/// The contract for a kind whose renewal can only be made once the first certificate is in
/// place (a vendor that makes a new CSR per change): `renewal` makes the second. For a kind
/// whose descriptor says it cannot roll back, the rollback clause is skipped.
pub async fn deploy_target_contract_renewing(
    targets: &DeployTargets,
    unit: &Unit,
    first: &DeployMaterial,
    renewal: impl AsyncFnOnce() -> DeployMaterial,
) {
    let kind = unit.kind.as_str();
    let can_roll_back = targets.kinds().get(kind).is_none_or(|d| d.can_roll_back);

    // 1. What deploy installed is what bound reports.
    let d1 = deploy(targets, unit, first, None, None).await;
    let after_first = bound(targets, unit, &d1).await;
    let handle = d1.handle.clone().expect("deploy returns a handle");
    assert!(
        after_first.certificates.contains(&handle),
        "{kind}: bound {after_first:?} lacks the handle {handle}"
    );
    assert!(
        after_first.fingerprints.contains(&first.fingerprint),
        "{kind}: bound {after_first:?} lacks the deployed certificate"
    );

    // 2. Idempotent.
    let r1 = record_of(unit, &d1, first);
    let again = deploy(targets, unit, first, None, Some(&r1)).await;
    assert_eq!(
        again.handle, d1.handle,
        "{kind}: a second deploy moved the handle"
    );
    assert_eq!(
        bound(targets, unit, &again).await,
        after_first,
        "{kind}: a second deploy of the same certificate changed what is bound"
    );

    // 3. A renewal leaves the previous certificate restorable until finish.
    let second = &renewal().await;
    let d2 = deploy(targets, unit, second, Some(first), Some(&r1)).await;
    let renewed = bound(targets, unit, &d2).await;
    assert!(
        renewed.fingerprints.contains(&second.fingerprint),
        "{kind}: bound {renewed:?} lacks the renewal"
    );
    let request = DeployRequest {
        id: "contract",
        unit,
        certificate: second,
        previous: Some(first),
        record: Some(&r1),
    };
    for round in (1..=2).filter(|_| can_roll_back) {
        let moved = targets
            .target(unit)
            .await
            .unwrap()
            .roll_back(request, Some(&d2))
            .await
            .unwrap_or_else(|e| panic!("{kind}: roll back #{round}: {e}"));
        // A kind whose re-upload gets a new id says so; what it holds is read by that.
        let now = Deployed {
            handle: moved.or_else(|| d1.handle.clone()),
            ..Deployed::default()
        };
        let rolled = bound(targets, unit, &now).await;
        assert!(
            rolled.fingerprints.contains(&first.fingerprint)
                && !rolled.fingerprints.contains(&second.fingerprint),
            "{kind}: after roll back #{round} bound is {rolled:?}, expected the first certificate only"
        );
    }

    // 4. Deployed again and finished: the renewal is what is bound (and only it).
    let d2 = deploy(targets, unit, second, Some(first), Some(&r1)).await;
    targets
        .target(unit)
        .await
        .unwrap()
        .finish(&d2)
        .await
        .unwrap_or_else(|e| panic!("{kind}: finish: {e}"));
    let finished = bound(targets, unit, &d2).await;
    assert!(
        finished.fingerprints.contains(&second.fingerprint)
            && !finished.fingerprints.contains(&first.fingerprint),
        "{kind}: after finish bound is {finished:?}"
    );
}
