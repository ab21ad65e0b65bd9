//! Where a certificate is installed (deployments), and what certpilot last did there.
//!
//! A deployment names a target (an ACM import, a load-balancer listener, a CDN distribution,
//! an API Gateway domain) and the endpoints that prove it: after installing, certpilot
//! handshakes with them until they serve the new certificate. A renewal is done only when
//! every deployment is [`DeploymentStatus::Verified`] for the current certificate.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::model::certificate::{KeyType, SpecError};
use crate::model::target::Target;

/// A deployment's settings, typed by its kind's descriptor (kebab-case keys: strings,
/// booleans, numbers of seconds, arrays for repeated settings).
pub type Settings = serde_json::Map<String, serde_json::Value>;

/// One place a certificate is installed: a name, a kind (see
/// [`crate::model::deploy_kind::DeployKinds`]) with its settings, the endpoints that prove
/// it, and a verification deadline. A deployment is made of units (a listener, a
/// distribution, a cluster's secret): by default one, named after the deployment; `units`
/// lists several, each with settings over the deployment's and endpoints of its own.
///
/// Records written before kinds were descriptors (the kind's settings flat beside the name,
/// `verify_deadline_secs`) load as this shape; they are written back in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "DeploymentWire")]
pub struct Deployment {
    /// Unique within the certificate; names the deployment in commands and findings.
    pub name: String,
    /// The kind of target.
    pub kind: String,
    /// The kind's settings.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub settings: Settings,
    /// Units of the deployment, when there is more than one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub units: Vec<UnitSpec>,
    /// The endpoints that serve what the target holds; the certificate's own endpoints when
    /// empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<Target>,
    /// How long to wait for the endpoints, in seconds; the kind's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_deadline: Option<u64>,
}

/// One unit of a deployment as written: settings over the deployment's, and its endpoints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitSpec {
    /// Unique within the deployment.
    pub name: String,
    /// Settings that differ from the deployment's.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub settings: Settings,
    /// Its endpoints; the deployment's when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<Target>,
}

/// One unit as a target adapter sees it: settings merged, endpoints resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unit {
    /// The unit's name (the deployment's when it has a single unit).
    pub name: String,
    /// The deployment's kind.
    pub kind: String,
    /// The deployment's settings with the unit's over them.
    pub settings: Settings,
    /// The endpoints that prove it.
    pub endpoints: Vec<Target>,
}

impl Unit {
    /// A text setting.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.settings.get(key).and_then(|v| v.as_str())
    }
}

/// A deployment as stored by any version: today's shape, or the kind's settings flat beside
/// the name (the records of the first versions).
#[derive(Deserialize)]
struct DeploymentWire {
    name: String,
    kind: String,
    #[serde(default)]
    settings: Settings,
    #[serde(default)]
    units: Vec<UnitSpec>,
    #[serde(default)]
    endpoints: Vec<Target>,
    #[serde(default)]
    verify_deadline: Option<DeadlineInput>,
    /// The first versions' name of `verify_deadline`.
    #[serde(default)]
    verify_deadline_secs: Option<u64>,
    /// The first versions' settings: `listener_arn`, `sni`, `region`, `certificate_arn`…
    #[serde(flatten)]
    flat: Settings,
}

/// A verification deadline as people write it: seconds, or `5m`.
#[derive(Deserialize)]
#[serde(untagged)]
enum DeadlineInput {
    Seconds(u64),
    Text(String),
}

impl From<DeploymentWire> for Deployment {
    fn from(w: DeploymentWire) -> Self {
        let mut settings = Settings::new();
        for (key, value) in w.flat.into_iter().chain(w.settings) {
            if !value.is_null() {
                settings.insert(key.replace('_', "-"), value);
            }
        }
        let verify_deadline = match w.verify_deadline {
            Some(DeadlineInput::Seconds(s)) => Some(s),
            // An unreadable text is kept as 0, which validation refuses with the input named.
            Some(DeadlineInput::Text(t)) => Some(
                crate::model::deploy_kind::parse_duration(&t)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
            ),
            None => w.verify_deadline_secs,
        };
        Deployment {
            name: w.name,
            kind: w.kind,
            settings,
            units: w
                .units
                .into_iter()
                .map(|mut u| {
                    u.settings = std::mem::take(&mut u.settings)
                        .into_iter()
                        .map(|(k, v)| (k.replace('_', "-"), v))
                        .collect();
                    u
                })
                .collect(),
            endpoints: w.endpoints,
            verify_deadline,
        }
    }
}

impl Deployment {
    /// A deployment of `kind` named `name`, with no settings yet.
    pub fn new(name: &str, kind: &str) -> Self {
        Deployment {
            name: name.to_owned(),
            kind: kind.to_owned(),
            settings: Settings::new(),
            units: Vec::new(),
            endpoints: Vec::new(),
            verify_deadline: None,
        }
    }

    /// The same deployment with `key` set to `value` (builders and tests).
    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.settings.insert(key.to_owned(), value.into());
        self
    }

    /// The same deployment proven by `endpoint`.
    pub fn with_endpoint(mut self, endpoint: Target) -> Self {
        self.endpoints.push(endpoint);
        self
    }

    /// Its own verification deadline, when it sets one.
    pub fn verify_deadline(&self) -> Option<Duration> {
        self.verify_deadline.map(Duration::from_secs)
    }

    /// A text setting.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.settings.get(key).and_then(|v| v.as_str())
    }

    /// Its units, settings merged and endpoints resolved (`certificate_endpoints` when
    /// neither the unit nor the deployment lists any).
    pub fn resolved_units(&self, certificate_endpoints: &[Target]) -> Vec<Unit> {
        let endpoints = if self.endpoints.is_empty() {
            certificate_endpoints
        } else {
            &self.endpoints
        };
        if self.units.is_empty() {
            return vec![Unit {
                name: self.name.clone(),
                kind: self.kind.clone(),
                settings: self.settings.clone(),
                endpoints: endpoints.to_vec(),
            }];
        }
        self.units
            .iter()
            .map(|u| {
                let mut settings = self.settings.clone();
                settings.extend(u.settings.clone());
                Unit {
                    name: u.name.clone(),
                    kind: self.kind.clone(),
                    settings,
                    endpoints: if u.endpoints.is_empty() {
                        endpoints.to_vec()
                    } else {
                        u.endpoints.clone()
                    },
                }
            })
            .collect()
    }

    /// Checks what holds for every kind: the name's shape. Each kind's settings are checked
    /// by [`crate::model::deploy_kind::DeployKinds::check_deployment`].
    pub fn validate(&self) -> Result<(), SpecError> {
        let named = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        if !named(&self.name) {
            return Err(SpecError {
                input: self.name.clone(),
                reason: format!(
                    "deployment {:?}: a name is letters, digits, '-', '_' or '.'",
                    self.name
                ),
            });
        }
        if let Some(u) = self.units.iter().find(|u| !named(&u.name)) {
            return Err(SpecError {
                input: u.name.clone(),
                reason: format!(
                    "deployment {:?}: a unit's name is letters, digits, '-', '_' or '.'",
                    self.name
                ),
            });
        }
        if self.verify_deadline == Some(0) {
            return Err(SpecError {
                input: "verify_deadline".into(),
                reason: format!(
                    "deployment {:?}: the verification deadline must be a duration above 0 (90s, 5m)",
                    self.name
                ),
            });
        }
        Ok(())
    }
}

/// Where a deployment stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentStatus {
    /// Installed and served by every endpoint.
    Verified,
    /// Installed, but some endpoint kept serving something else: rolled back to the previous
    /// certificate when there was one.
    NotServing,
    /// The target refused or could not be reached: rolled back when anything had changed.
    Failed,
    /// Put back to the previous certificate by hand (`certpilot rollback`); left alone until
    /// the next explicit deploy.
    RolledBack,
    /// Installing takes longer than a run (a CDN change, a rate limit): the next run after
    /// the record's `check_after` resumes it. Nothing sleeps inside a run.
    InProgress,
}

impl DeploymentStatus {
    /// The name shown to people.
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentStatus::Verified => "verified",
            DeploymentStatus::NotServing => "not_serving",
            DeploymentStatus::Failed => "failed",
            DeploymentStatus::RolledBack => "rolled_back",
            DeploymentStatus::InProgress => "in_progress",
        }
    }

    /// How much a status needs attention, to sum up a deployment from its units: a failure
    /// outranks an outage, which outranks work in progress.
    fn weight(self) -> u8 {
        match self {
            DeploymentStatus::Verified => 0,
            DeploymentStatus::RolledBack => 1,
            DeploymentStatus::InProgress => 2,
            DeploymentStatus::NotServing => 3,
            DeploymentStatus::Failed => 4,
        }
    }
}

/// Why a deployment is not (cleanly) serving its certificate, as a kind alerts key on; the
/// words are in the record's `detail`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DeployProblem {
    /// The deployment's configuration cannot work.
    Config,
    /// The target's API refused (permissions, a missing resource, a rule of the target's).
    Refused,
    /// The target's API could not be reached or throttled.
    Unavailable,
    /// The certificate's key could not be read.
    SecretStore,
    /// The certificate store failed.
    Store,
    /// An endpoint kept serving something else past the deadline.
    NotServing,
    /// With no endpoint to handshake with, the target's API does not hold the certificate.
    NotHeld,
    /// Served, but the certificate it replaced is still bound (untidy, not an outage).
    ReplacedStillBound,
    /// A kind this version does not know (written by a newer one).
    #[serde(other)]
    Other,
}

impl DeployProblem {
    /// The kind of a deploy target's failure.
    pub fn of(e: &crate::ports::DeployError) -> Self {
        use crate::ports::DeployError as E;
        match e {
            E::Config(_) => DeployProblem::Config,
            E::Target(_) => DeployProblem::Refused,
            E::Unavailable(_) => DeployProblem::Unavailable,
            E::Secret(_) => DeployProblem::SecretStore,
            E::Store(_) => DeployProblem::Store,
        }
    }
}

/// A deployment spec's settings, in the order given: `(key, value)`.
pub type SpecSettings = Vec<(String, String)>;

/// Splits a deployment spec, `KIND:key=value,key="quoted, value",…`, into its kind and its
/// settings in order. A value may be double-quoted, with `\"` and `\\` as the only escapes,
/// so that it can hold `,` and `=` (a reload command); a bare value runs to the next `,` and
/// is trimmed. Empty pairs (`,,`) are skipped. The error says what is wrong and where.
pub fn split_spec(spec: &str) -> Result<(&str, SpecSettings), String> {
    let (kind, rest) = spec
        .split_once(':')
        .ok_or("expected KIND:key=value,… (e.g. elbv2-listener:listener-arn=arn:…)")?;
    let mut settings = Vec::new();
    let mut chars = rest.char_indices().peekable();
    loop {
        // A key, up to '='.
        let mut key = String::new();
        let mut saw_eq = false;
        for (_, c) in chars.by_ref() {
            match c {
                '=' => {
                    saw_eq = true;
                    break;
                }
                ',' if key.trim().is_empty() => key.clear(),
                ',' => return Err(format!("{:?} is not key=value", key.trim())),
                c => key.push(c),
            }
        }
        let key = key.trim().to_owned();
        if !saw_eq {
            if key.is_empty() {
                break;
            }
            return Err(format!("{key:?} is not key=value"));
        }
        if key.is_empty() {
            return Err("a setting has no key before '='".into());
        }
        // Its value: quoted, or bare up to the next ','.
        while chars.peek().is_some_and(|(_, c)| *c == ' ') {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek().is_some_and(|(_, c)| *c == '"') {
            let (start, _) = chars.next().unwrap_or_default();
            let mut closed = false;
            while let Some((_, c)) = chars.next() {
                match c {
                    '"' => {
                        closed = true;
                        break;
                    }
                    '\\' => match chars.next() {
                        Some((_, e @ ('"' | '\\'))) => value.push(e),
                        Some((_, other)) => {
                            return Err(format!(
                                "{key}: unknown escape \\{other} in a quoted value (only \\\" and \\\\)"
                            ));
                        }
                        None => break,
                    },
                    c => value.push(c),
                }
            }
            if !closed {
                return Err(format!(
                    "{key}: the quoted value starting at character {} has no closing '\"'",
                    kind.chars().count() + 1 + rest[..start].chars().count() + 1
                ));
            }
            while chars.peek().is_some_and(|(_, c)| *c == ' ') {
                chars.next();
            }
            match chars.next() {
                None | Some((_, ',')) => {}
                Some((_, c)) => {
                    return Err(format!(
                        "{key}: {c:?} after a quoted value; separate settings with ','"
                    ));
                }
            }
        } else {
            for (_, c) in chars.by_ref() {
                if c == ',' {
                    break;
                }
                value.push(c);
            }
            value = value.trim().to_owned();
        }
        settings.push((key, value));
    }
    Ok((kind, settings))
}

/// Writes `value` so that [`split_spec`] reads it back whole: bare when it can be, else
/// quoted with `"` and `\` escaped.
pub fn quote_spec_value(value: &str) -> String {
    let bare = !value.is_empty()
        && value.trim() == value
        && !value.contains([',', '"', '\\'])
        && !value.starts_with('"');
    if bare {
        value.to_owned()
    } else {
        format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// What certpilot last did at one deployment; for a deployment of several units, the sum of
/// its units (the worst status), each unit's own record in `units`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentRecord {
    /// The deployment's name.
    pub name: String,
    /// The certificate the deployment was last asked to serve (SHA-256 of the leaf, hex).
    pub fingerprint: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Where it stands (a single unit's state, or the sum of its units').
    #[serde(flatten)]
    pub state: UnitState,
    /// Each unit's record, for a deployment of several units.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub units: Vec<UnitRecord>,
}

/// What certpilot last did at one unit of a deployment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitRecord {
    /// The unit's name.
    pub name: String,
    /// Where it stands.
    #[serde(flatten)]
    pub state: UnitState,
}

/// Where a unit stands (and a deployment, summed over its units), stored flat in its record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitState {
    /// The outcome.
    pub status: DeploymentStatus,
    /// What went wrong, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// What went wrong, as a kind (absent in records written before kinds existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<DeployProblem>,
    /// The certificate the target holds now (after a rollback, the previous one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holding: Option<String>,
    /// The adapter's own reference to what it installed (an ACM ARN, a CDN certificate id,
    /// a version directory): opaque to everything else. Records of the first versions called
    /// it `certificate_arn`.
    #[serde(
        default,
        alias = "certificate_arn",
        skip_serializing_if = "Option::is_none"
    )]
    pub handle: Option<String>,
    /// The key type of what the handle holds (ACM re-imports must keep the key algorithm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_type: Option<KeyType>,
    /// For `in_progress`: when the next run should look again.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub check_after: Option<OffsetDateTime>,
}

impl UnitState {
    /// A state with `status` and nothing else known.
    pub fn new(status: DeploymentStatus) -> Self {
        UnitState {
            status,
            detail: None,
            problem: None,
            holding: None,
            handle: None,
            key_type: None,
            check_after: None,
        }
    }
}

impl DeploymentRecord {
    /// The record of unit `name`: its own, or for a single-unit deployment (and every record
    /// written before units existed) the deployment's.
    pub fn unit(&self, name: &str) -> Option<UnitRecord> {
        if let Some(u) = self.units.iter().find(|u| u.name == name) {
            return Some(u.clone());
        }
        (self.units.is_empty() && name == self.name).then(|| UnitRecord {
            name: self.name.clone(),
            state: self.state.clone(),
        })
    }

    /// Every handle the record holds (the deployment's and its units').
    pub fn handles(&self) -> impl Iterator<Item = &str> {
        self.state
            .handle
            .iter()
            .chain(self.units.iter().filter_map(|u| u.state.handle.as_ref()))
            .map(String::as_str)
    }

    /// The record of a deployment made of `units`, summed up: the worst status, the details
    /// of the units that are not verified, the earliest `check_after`. A single unit named
    /// after the deployment is stored flat, as records always were.
    pub fn of_units(
        name: &str,
        fingerprint: &str,
        at: OffsetDateTime,
        units: Vec<UnitRecord>,
    ) -> Self {
        let status = units
            .iter()
            .map(|u| u.state.status)
            .max_by_key(|s| s.weight())
            .unwrap_or(DeploymentStatus::Verified);
        if units.len() == 1 && units[0].name == name {
            let mut units = units;
            let only = units.remove(0);
            return DeploymentRecord {
                name: name.to_owned(),
                fingerprint: fingerprint.to_owned(),
                at,
                state: only.state,
                units: Vec::new(),
            };
        }
        let lines: Vec<String> = units
            .iter()
            .filter_map(|u| u.state.detail.as_ref().map(|d| format!("{}: {d}", u.name)))
            .collect();
        let holding = {
            let mut held: Vec<&Option<String>> = units.iter().map(|u| &u.state.holding).collect();
            held.dedup();
            // One certificate everywhere, or none named when the units differ.
            if held.len() == 1 {
                held[0].clone()
            } else {
                None
            }
        };
        DeploymentRecord {
            name: name.to_owned(),
            fingerprint: fingerprint.to_owned(),
            at,
            state: UnitState {
                status,
                detail: (!lines.is_empty()).then(|| lines.join("; ")),
                problem: units
                    .iter()
                    .filter(|u| u.state.status == status)
                    .find_map(|u| u.state.problem),
                holding,
                handle: None,
                key_type: None,
                check_after: units.iter().filter_map(|u| u.state.check_after).min(),
            },
            units,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    /// A deployment as the first versions stored it (the kind's settings flat, the deadline
    /// in `verify_deadline_secs`), taken from a record written on 2026-11-30.
    const FIRST_VERSION: &str = r#"{"name":"alb","kind":"elbv2-listener","listener_arn":"arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/shop/50dc6c495c0c9188/f2f7dc8efc522ab2","sni":true,"certificate_arn":"arn:aws:acm:eu-west-1:123456789012:certificate/0b6d3b2c","role_arn":"arn:aws:iam::123456789012:role/deployer","endpoints":["shop.example.com:443"],"verify_deadline_secs":180}"#;

    #[test]
    fn first_version_deployments_load_with_their_settings_and_are_written_in_todays_shape() {
        let d: Deployment = serde_json::from_str(FIRST_VERSION).expect("loads");
        assert_eq!(d.kind, "elbv2-listener");
        assert_eq!(
            d.text("listener-arn")
                .map(|a| a.ends_with("f2f7dc8efc522ab2")),
            Some(true)
        );
        assert_eq!(d.settings["sni"], serde_json::Value::Bool(true));
        assert_eq!(
            d.text("certificate-arn"),
            Some("arn:aws:acm:eu-west-1:123456789012:certificate/0b6d3b2c")
        );
        assert_eq!(
            d.text("role-arn"),
            Some("arn:aws:iam::123456789012:role/deployer")
        );
        assert_eq!(d.verify_deadline(), Some(Duration::from_secs(180)));
        let json = serde_json::to_value(&d).expect("json");
        assert_eq!(json["settings"]["listener-arn"], d.settings["listener-arn"]);
        assert_eq!(json["verify_deadline"], 180);
        assert!(json.get("listener_arn").is_none() && json.get("verify_deadline_secs").is_none());
        assert_eq!(serde_json::from_value::<Deployment>(json).expect("back"), d);
    }

    #[test]
    fn first_version_records_keep_their_arn_as_the_handle() {
        let old = r#"{"name":"alb","fingerprint":"ab","status":"verified","at":"2026-11-30T10:00:00Z","holding":"ab","certificate_arn":"arn:aws:acm:eu-west-1:1:certificate/x","key_type":"ecdsa-p256"}"#;
        let r: DeploymentRecord = serde_json::from_str(old).expect("loads");
        assert_eq!(
            r.state.handle.as_deref(),
            Some("arn:aws:acm:eu-west-1:1:certificate/x")
        );
        let unit = r
            .unit("alb")
            .expect("a single unit named after the deployment");
        assert_eq!(unit.state.handle, r.state.handle);
        assert_eq!(unit.state.key_type, Some(KeyType::EcdsaP256));
        assert!(r.unit("other").is_none());
        let json = serde_json::to_value(&r).expect("json");
        assert_eq!(json["handle"], "arn:aws:acm:eu-west-1:1:certificate/x");
    }

    #[test]
    fn deadlines_may_be_written_as_durations_and_settings_in_snake_case() {
        let d: Deployment = serde_json::from_str(
            r#"{"name":"cdn","kind":"cloudfront","settings":{"distribution_id":"E1"},"verify_deadline":"20m"}"#,
        )
        .expect("loads");
        assert_eq!(d.text("distribution-id"), Some("E1"));
        assert_eq!(d.verify_deadline, Some(1200));
        let d: Deployment =
            serde_json::from_str(r#"{"name":"cdn","kind":"cloudfront","verify_deadline":"soon"}"#)
                .expect("loads");
        assert!(
            d.validate()
                .expect_err("refused")
                .reason
                .contains("above 0")
        );
    }

    #[test]
    fn units_take_the_deployments_settings_and_endpoints_unless_they_set_their_own() {
        let shop: Target = "shop.example.com".parse().expect("target");
        let eu: Target = "eu.shop.example.com".parse().expect("target");
        let mut d = Deployment::new("k8s", "files").with("dir", "/srv/a");
        d.units = vec![
            UnitSpec {
                name: "a".into(),
                settings: Settings::new(),
                endpoints: Vec::new(),
            },
            UnitSpec {
                name: "b".into(),
                settings: Deployment::new("x", "x").with("dir", "/srv/b").settings,
                endpoints: vec![eu.clone()],
            },
        ];
        let units = d.resolved_units(std::slice::from_ref(&shop));
        assert_eq!(units[0].text("dir"), Some("/srv/a"));
        assert_eq!(units[0].endpoints, vec![shop]);
        assert_eq!(units[1].text("dir"), Some("/srv/b"));
        assert_eq!(units[1].endpoints, vec![eu]);
    }

    fn unit(name: &str, status: DeploymentStatus) -> UnitRecord {
        UnitRecord {
            name: name.into(),
            state: UnitState {
                detail: (status != DeploymentStatus::Verified).then(|| "serves the old one".into()),
                holding: Some("ab".into()),
                handle: Some(format!("id-{name}")),
                ..UnitState::new(status)
            },
        }
    }

    #[test]
    fn a_deployment_is_as_bad_as_its_worst_unit_and_names_it() {
        let at = datetime!(2026-12-04 10:00 UTC);
        let r = DeploymentRecord::of_units(
            "k8s",
            "ab",
            at,
            vec![
                unit("eu", DeploymentStatus::Verified),
                unit("us", DeploymentStatus::NotServing),
            ],
        );
        assert_eq!(r.state.status, DeploymentStatus::NotServing);
        assert_eq!(r.state.detail.as_deref(), Some("us: serves the old one"));
        assert_eq!(r.units.len(), 2);
        assert_eq!(r.handles().collect::<Vec<_>>(), ["id-eu", "id-us"]);
        let one = DeploymentRecord::of_units(
            "k8s",
            "ab",
            at,
            vec![unit("k8s", DeploymentStatus::Verified)],
        );
        assert!(one.units.is_empty(), "a single unit is stored flat");
        assert_eq!(one.state.handle.as_deref(), Some("id-k8s"));
    }
}
