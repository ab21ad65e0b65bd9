//! What each kind of deploy target is: its descriptor, and the catalogue of every kind this
//! build knows.
//!
//! A descriptor is data: the settings of a kind (with a line of documentation each, which of
//! them name secrets, which repeat), its default verification deadline, the permissions it
//! needs, whether it takes the private key and which key types it accepts, and where it can
//! run. [`DeployKinds`] turns descriptors into the `--deploy KIND:key=value,…` parser, its
//! help, the validation of a deployment, the JSON schema of `--deploy-file` and of the API,
//! and the documentation table, so that adding a kind is adding a descriptor.

use std::time::Duration;

use serde_json::{Value, json};

use crate::model::certificate::{CertificateSpec, KeyType, SpecError};
use crate::model::deploy::{Deployment, Settings, Unit, split_spec};
use crate::model::target::Target;

/// The type of a setting's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    /// Free text.
    Text,
    /// `true` or `false`.
    Bool,
    /// One of a fixed list; the first is the default.
    OneOf(&'static [&'static str]),
    /// An absolute path on the host.
    Path,
    /// A shell command run on the host.
    Command,
    /// A duration (`90s`, `5m`), stored in seconds.
    Duration,
}

impl ValueKind {
    fn describe(self) -> String {
        match self {
            ValueKind::Text => "text".into(),
            ValueKind::Bool => "true|false".into(),
            ValueKind::OneOf(choices) => choices.join("|"),
            ValueKind::Path => "absolute path".into(),
            ValueKind::Command => "shell command".into(),
            ValueKind::Duration => "duration (90s, 5m)".into(),
        }
    }
}

/// One setting of a kind.
#[derive(Clone, Copy, Debug)]
pub struct Setting {
    /// Its key, in kebab-case (`listener-arn`).
    pub name: &'static str,
    /// One line for people.
    pub doc: &'static str,
    /// The type of its value.
    pub value: ValueKind,
    /// Whether a deployment must give it.
    pub required: bool,
    /// Whether it may be given more than once (a list).
    pub repeated: bool,
    /// Whether its value names a secret in the secret store (never the secret itself).
    pub secret: bool,
}

impl Setting {
    /// A required text setting.
    pub const fn required(name: &'static str, doc: &'static str) -> Self {
        Setting {
            name,
            doc,
            value: ValueKind::Text,
            required: true,
            repeated: false,
            secret: false,
        }
    }

    /// An optional text setting.
    pub const fn optional(name: &'static str, doc: &'static str) -> Self {
        Setting {
            required: false,
            ..Setting::required(name, doc)
        }
    }

    /// The same setting with another value type.
    pub const fn of(self, value: ValueKind) -> Self {
        Setting { value, ..self }
    }

    /// The same setting, naming a secret.
    pub const fn naming_a_secret(self) -> Self {
        Setting {
            secret: true,
            ..self
        }
    }

    /// The same setting, repeatable.
    pub const fn repeatable(self) -> Self {
        Setting {
            repeated: true,
            ..self
        }
    }
}

/// How the private key reaches the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyDelivery {
    /// In the request that installs the certificate, over TLS.
    InRequest,
    /// Written to a file on the host that only the server's user reads (0600).
    File,
    /// Through a secret store the host reads itself: certpilot writes it there and sends
    /// the host a reference.
    SecretReference,
    /// The target generates and keeps the key; certpilot never sees it.
    HeldByTarget,
    /// The target never receives the key (it takes the certificate and chain only).
    None,
}

impl KeyDelivery {
    /// The words the docs use.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyDelivery::InRequest => "in the request, over TLS",
            KeyDelivery::File => "a 0600 file on the host",
            KeyDelivery::SecretReference => "a Secrets Manager version the host reads",
            KeyDelivery::HeldByTarget => "held by the target",
            KeyDelivery::None => "never sent",
        }
    }

    /// Whether certpilot hands the key to the target.
    pub fn sends_key(self) -> bool {
        matches!(
            self,
            KeyDelivery::InRequest | KeyDelivery::File | KeyDelivery::SecretReference
        )
    }
}

/// Where a kind can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunsIn {
    /// Anywhere certpilot runs: the deploy function and the CLI.
    Anywhere,
    /// Only on the host that serves the certificate (the CLI there), like `files`.
    Host,
}

impl RunsIn {
    /// The words the docs use.
    pub fn as_str(self) -> &'static str {
        match self {
            RunsIn::Anywhere => "deploy function, CLI",
            RunsIn::Host => "CLI on the host",
        }
    }
}

/// A cross-setting check of a kind: `Err((input, reason))`.
pub type Check = fn(&Settings) -> Result<(), (String, String)>;

/// Everything certpilot knows about one kind of deploy target.
#[derive(Clone, Debug)]
pub struct KindDescriptor {
    /// The kind's name, as written in `--deploy KIND:…` and stored in records.
    pub kind: &'static str,
    /// The family it belongs to (`aws`, `host`, `cdn`…): which adapter crate builds it.
    pub family: &'static str,
    /// One line for people.
    pub summary: &'static str,
    /// Its settings.
    pub settings: Vec<Setting>,
    /// How long its endpoints may take to serve a new certificate.
    pub default_verify_deadline: Duration,
    /// The permissions it needs (IAM actions, file modes, API scopes).
    pub permissions: Vec<&'static str>,
    /// The key types it accepts, checked when a certificate is added.
    pub key_types: Vec<KeyType>,
    /// How the private key reaches it.
    pub key_delivery: KeyDelivery,
    /// Where it can run.
    pub runs_in: RunsIn,
    /// Whether it binds the certificate to something that serves it, so that endpoints are
    /// needed to prove it (a plain ACM import does not).
    pub binds: bool,
    /// Whether it can put the previous certificate back.
    pub can_roll_back: bool,
    /// A boolean setting without which the target cannot serve the certificate at any
    /// endpoint (a webhook receiver given no key): a deployment with endpoints to prove must
    /// set it, or it is refused when added, since it could never be served.
    pub serves_only_with: Option<&'static str>,
    /// Checks between settings (an ARN's shape, a region's name).
    pub check: Option<Check>,
}

impl KindDescriptor {
    /// The setting named `name`.
    pub fn setting(&self, name: &str) -> Option<&Setting> {
        self.settings.iter().find(|s| s.name == name)
    }

    /// Whether the target receives the private key.
    pub fn needs_key(&self) -> bool {
        self.key_delivery.sends_key()
    }
}

/// Settings every kind has, handled by the catalogue itself.
const COMMON: [(&str, &str); 3] = [
    ("name", "the deployment's name (default: the kind)"),
    (
        "endpoint",
        "an endpoint that serves what the target holds (repeatable; default: the certificate's endpoints)",
    ),
    (
        "verify-deadline",
        "how long the endpoints may take to serve the new certificate (default: the kind's)",
    ),
];

/// The catalogue of deploy target kinds this build knows.
#[derive(Clone, Debug, Default)]
pub struct DeployKinds {
    kinds: Vec<KindDescriptor>,
}

impl DeployKinds {
    /// A catalogue of `kinds`.
    pub fn new(kinds: Vec<KindDescriptor>) -> Self {
        DeployKinds { kinds }
    }

    /// Adds a kind.
    pub fn add(&mut self, kind: KindDescriptor) {
        self.kinds.push(kind);
    }

    /// Every kind, in registration order.
    pub fn iter(&self) -> impl Iterator<Item = &KindDescriptor> {
        self.kinds.iter()
    }

    /// The descriptor of `kind`.
    pub fn get(&self, kind: &str) -> Option<&KindDescriptor> {
        self.kinds.iter().find(|k| k.kind == kind)
    }

    fn names(&self) -> String {
        self.kinds
            .iter()
            .map(|k| k.kind)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The descriptor of `kind`, or an error listing the kinds there are.
    pub fn descriptor(&self, kind: &str) -> Result<&KindDescriptor, SpecError> {
        self.get(kind).ok_or_else(|| SpecError {
            input: kind.to_owned(),
            reason: format!("unknown deploy target kind (known: {})", self.names()),
        })
    }

    /// The verification deadline of `deployment`: its own, else its kind's.
    pub fn verify_deadline(&self, deployment: &Deployment) -> Duration {
        deployment.verify_deadline().unwrap_or_else(|| {
            self.get(&deployment.kind)
                .map_or(Duration::from_secs(5 * 60), |k| k.default_verify_deadline)
        })
    }

    /// Parses a `--deploy` spec, `KIND:key=value,…`. Values are typed and checked by the
    /// kind's descriptor; `name`, `endpoint` (repeatable) and `verify-deadline` are common to
    /// every kind. The error names the spec and what is wrong with it.
    pub fn parse_spec(&self, spec: &str) -> Result<Deployment, SpecError> {
        let bad = |reason: String| SpecError {
            input: spec.to_owned(),
            reason,
        };
        let (kind, pairs) = split_spec(spec).map_err(bad)?;
        let descriptor = self.get(kind).ok_or_else(|| {
            bad(format!(
                "unknown kind {kind:?} (expected one of {})",
                self.names()
            ))
        })?;
        let mut deployment = Deployment::new(kind, kind);
        let mut seen: Vec<String> = Vec::new();
        for (key, value) in pairs {
            let key = key.replace('_', "-");
            let repeated =
                key == "endpoint" || descriptor.setting(&key).is_some_and(|s| s.repeated);
            if !repeated && seen.contains(&key) {
                return Err(bad(format!(
                    "{key} is given twice; give each setting once (only endpoint and lists repeat)"
                )));
            }
            seen.push(key.clone());
            match key.as_str() {
                "name" => deployment.name = value,
                "endpoint" => deployment.endpoints.push(
                    value
                        .parse::<Target>()
                        .map_err(|e| bad(format!("endpoint={value}: {e}")))?,
                ),
                "verify-deadline" => {
                    let d = parse_duration(&value)
                        .map_err(|e| bad(format!("verify-deadline={value}: {e}")))?;
                    deployment.verify_deadline = Some(d.as_secs());
                }
                _ => {
                    let setting = descriptor.setting(&key).ok_or_else(|| {
                        bad(format!(
                            "{kind} has no setting {key:?}{}",
                            suggest(descriptor, &key)
                        ))
                    })?;
                    let typed =
                        typed(setting, &value).map_err(|e| bad(format!("{key}={value}: {e}")))?;
                    if setting.repeated {
                        match deployment.settings.entry(key) {
                            serde_json::map::Entry::Occupied(mut o) => {
                                if let Value::Array(items) = o.get_mut() {
                                    items.push(typed);
                                }
                            }
                            serde_json::map::Entry::Vacant(v) => {
                                v.insert(Value::Array(vec![typed]));
                            }
                        }
                    } else {
                        deployment.settings.insert(key, typed);
                    }
                }
            }
        }
        self.check_settings(&deployment, &deployment.settings)
            .map_err(|e| bad(e.reason))?;
        Ok(deployment)
    }

    /// Checks one deployment against its kind: settings known, typed and complete, the
    /// kind's own checks, units. `certificate_endpoints` are the certificate's own.
    pub fn check_deployment(
        &self,
        deployment: &Deployment,
        certificate_endpoints: &[Target],
    ) -> Result<(), SpecError> {
        let descriptor = self.descriptor(&deployment.kind).map_err(|e| SpecError {
            input: e.input,
            reason: format!("deployment {:?}: {}", deployment.name, e.reason),
        })?;
        let mut names = std::collections::BTreeSet::new();
        for unit in &deployment.units {
            if !names.insert(unit.name.as_str()) {
                return Err(SpecError {
                    input: unit.name.clone(),
                    reason: format!("deployment {:?}: two units have this name", deployment.name),
                });
            }
        }
        for unit in deployment.resolved_units(certificate_endpoints) {
            self.check_unit(descriptor, deployment, &unit)?;
        }
        Ok(())
    }

    fn check_unit(
        &self,
        descriptor: &KindDescriptor,
        deployment: &Deployment,
        unit: &Unit,
    ) -> Result<(), SpecError> {
        let bad = |input: &str, reason: String| SpecError {
            input: input.to_owned(),
            reason: if unit.name == deployment.name {
                format!("deployment {:?}: {reason}", deployment.name)
            } else {
                format!(
                    "deployment {:?}, unit {:?}: {reason}",
                    deployment.name, unit.name
                )
            },
        };
        self.check_settings(deployment, &unit.settings)
            .map_err(|e| bad(&e.input, e.reason))?;
        if let Some(setting) = descriptor.serves_only_with
            && !unit.endpoints.is_empty()
            && !unit
                .settings
                .get(setting)
                .is_some_and(|v| v == &Value::Bool(true) || v == "true")
        {
            return Err(bad(
                setting,
                format!(
                    "endpoints are to serve this certificate, which needs {setting}=true (the key) \
                     to be served at all; set it, or give no endpoints for a delivery only"
                ),
            ));
        }
        if descriptor.binds && unit.endpoints.is_empty() {
            return Err(bad(
                descriptor.kind,
                "needs endpoints to verify (the deployment's or the certificate's): without a handshake nothing proves the new certificate is served".into(),
            ));
        }
        Ok(())
    }

    /// Checks settings against the deployment's kind: known keys, typed values, required
    /// ones present, the kind's own check.
    fn check_settings(
        &self,
        deployment: &Deployment,
        settings: &Settings,
    ) -> Result<(), SpecError> {
        let descriptor = self.descriptor(&deployment.kind)?;
        let bad = |input: &str, reason: String| SpecError {
            input: input.to_owned(),
            reason,
        };
        for (key, value) in settings {
            let setting = descriptor.setting(key).ok_or_else(|| {
                bad(
                    key,
                    format!(
                        "{} has no setting {key:?}{}",
                        descriptor.kind,
                        suggest(descriptor, key)
                    ),
                )
            })?;
            let values: Vec<&Value> = match value {
                Value::Array(items) if setting.repeated => items.iter().collect(),
                other => vec![other],
            };
            for v in values {
                check_value(setting, v).map_err(|e| bad(&v.to_string(), format!("{key}: {e}")))?;
            }
        }
        for setting in descriptor.settings.iter().filter(|s| s.required) {
            if !settings.contains_key(setting.name) {
                return Err(bad(
                    descriptor.kind,
                    format!(
                        "{} needs {}=… ({})",
                        descriptor.kind, setting.name, setting.doc
                    ),
                ));
            }
        }
        if let Some(check) = descriptor.check {
            check(settings).map_err(|(input, reason)| bad(&input, reason))?;
        }
        if let Some(secs) = deployment.verify_deadline
            && secs == 0
        {
            return Err(bad("0", "verify-deadline must be longer than 0s".into()));
        }
        Ok(())
    }

    /// Checks every deployment of `spec` against its kind, and the key type against what each
    /// kind accepts: before anything is issued, not after.
    pub fn check_spec(&self, spec: &CertificateSpec) -> Result<(), SpecError> {
        // A target that keeps the key is the certificate's only home: no other target could
        // be given a key certpilot never has.
        if let Some(holder) = spec.deployments.iter().find(|d| {
            self.descriptor(&d.kind)
                .is_ok_and(|k| k.key_delivery == KeyDelivery::HeldByTarget)
        }) && (spec.deployments.len() > 1 || spec.acm.is_some())
        {
            return Err(SpecError {
                input: holder.name.clone(),
                reason: format!(
                    "deployment {:?}: {} keeps the private key and signs with it, so it must be \
                     the certificate's only deployment (and the CA an ACME one): manage other \
                     targets under another certificate",
                    holder.name, holder.kind
                ),
            });
        }
        for d in &spec.deployments {
            self.check_deployment(d, &spec.endpoints)?;
            let descriptor = self.descriptor(&d.kind)?;
            if !descriptor.key_types.contains(&spec.key_type) {
                return Err(SpecError {
                    input: spec.key_type.as_str().to_owned(),
                    reason: format!(
                        "deployment {:?}: {} accepts {} keys only",
                        d.name,
                        descriptor.kind,
                        descriptor
                            .key_types
                            .iter()
                            .map(|k| k.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
        }
        Ok(())
    }

    /// The help text of `--deploy`: every kind with its settings.
    pub fn help(&self) -> String {
        let mut out = String::from(
            "KIND:key=value,… (quote a value with \"…\" to hold ',' or '='; \\\" and \\\\ escape). Every kind takes:\n",
        );
        for (key, doc) in COMMON {
            out.push_str(&format!("    {key}: {doc}\n"));
        }
        for k in &self.kinds {
            out.push_str(&format!(
                "  {} — {} (runs in: {}; verify within {}s by default)\n",
                k.kind,
                k.summary,
                k.runs_in.as_str(),
                k.default_verify_deadline.as_secs()
            ));
            for s in &k.settings {
                out.push_str(&format!(
                    "    {}{}: {} [{}{}{}]\n",
                    s.name,
                    if s.required { " (required)" } else { "" },
                    s.doc,
                    s.value.describe(),
                    if s.repeated { ", repeatable" } else { "" },
                    if s.secret { ", names a secret" } else { "" },
                ));
            }
        }
        out
    }

    /// The JSON schema (draft 2020-12) of a deployment object, as `--deploy-file` and the API
    /// take it: `{name, kind, settings, units?, endpoints, verify_deadline}`, one branch per
    /// kind.
    pub fn json_schema(&self) -> Value {
        let branches: Vec<Value> = self
            .kinds
            .iter()
            .map(|k| {
                let mut properties = serde_json::Map::new();
                for s in &k.settings {
                    let one = value_schema(s);
                    let schema = if s.repeated {
                        json!({"anyOf": [one, {"type": "array", "items": one}], "description": s.doc})
                    } else {
                        let mut one = one;
                        one["description"] = json!(s.doc);
                        one
                    };
                    properties.insert(s.name.to_owned(), schema);
                }
                let required: Vec<&str> =
                    k.settings.iter().filter(|s| s.required).map(|s| s.name).collect();
                let settings = json!({
                    "type": "object",
                    "properties": properties,
                    "additionalProperties": false,
                });
                let unit_settings = json!({
                    "type": "object",
                    "properties": settings["properties"].clone(),
                    "additionalProperties": false,
                });
                let mut settings = settings;
                if !required.is_empty() {
                    settings["required"] = json!(required);
                }
                json!({
                    "if": {"properties": {"kind": {"const": k.kind}}},
                    "then": {
                        "description": k.summary,
                        "properties": {
                            "settings": settings,
                            "units": {"type": "array", "items": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "settings": unit_settings,
                                    "endpoints": {"type": "array", "items": {"type": "string"}},
                                },
                                "additionalProperties": false,
                            }},
                        }
                    }
                })
            })
            .collect();
        let kinds: Vec<&str> = self.kinds.iter().map(|k| k.kind).collect();
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "https://certpilot.dev/schema/deployment.json",
            "title": "certpilot deployment",
            "type": "object",
            "required": ["name", "kind"],
            "properties": {
                "name": {"type": "string", "pattern": "^[A-Za-z0-9._-]+$"},
                "kind": {"enum": kinds},
                "settings": {"type": "object"},
                "units": {"type": "array"},
                "endpoints": {"type": "array", "items": {"type": "string"}, "description": "host[:port] or a STARTTLS URL"},
                "verify_deadline": {
                    "description": "seconds, or a duration such as 5m",
                    "anyOf": [{"type": "integer", "minimum": 1}, {"type": "string"}]
                },
            },
            "additionalProperties": false,
            "allOf": branches,
        })
    }

    /// The deployment schema as a `oneOf` on `kind`, one branch per kind with its own
    /// settings (what OpenAPI tools and form builders read best).
    pub fn one_of_schema(&self) -> Value {
        let whole = self.json_schema();
        let base = whole["properties"].clone();
        let branches: Vec<Value> = self
            .kinds
            .iter()
            .zip(whole["allOf"].as_array().cloned().unwrap_or_default())
            .map(|(k, branch)| {
                let mut properties = base.clone();
                properties["kind"] = json!({"const": k.kind});
                for (name, schema) in branch["then"]["properties"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default()
                {
                    properties[name.as_str()] = schema;
                }
                json!({
                    "title": k.kind,
                    "description": k.summary,
                    "type": "object",
                    "required": ["name", "kind"],
                    "properties": properties,
                    "additionalProperties": false,
                })
            })
            .collect();
        json!({
            "description": "Where a certificate is installed after each issuance, as in --deploy-file",
            "oneOf": branches,
            "discriminator": {"propertyName": "kind"},
        })
    }

    /// Deployments as written in a deploy file or an API request, each checked against its
    /// kind; a mistake is named with the deployment's index and field.
    pub fn parse_deployments(&self, items: Vec<Value>) -> Result<Vec<Deployment>, String> {
        let schema = self.json_schema();
        let top: Vec<&str> = schema["properties"]
            .as_object()
            .map(|p| p.keys().map(String::as_str).collect())
            .unwrap_or_default();
        items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                if let Some(extra) = item
                    .as_object()
                    .and_then(|o| o.keys().find(|k| !top.contains(&k.as_str())))
                {
                    return Err(format!(
                        "deployment {i}: unknown field {extra:?} (fields: {})",
                        top.join(", ")
                    ));
                }
                let d: Deployment =
                    serde_json::from_value(item).map_err(|e| format!("deployment {i}: {e}"))?;
                d.validate().map_err(|e| e.to_string())?;
                self.check_deployment(&d, &[])
                    .or_else(|e| {
                        // Endpoints may come from the certificate; checked again with them.
                        if e.reason.contains("needs endpoints") {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    })
                    .map_err(|e| e.to_string())?;
                Ok(d)
            })
            .collect()
    }

    /// The documentation table of every kind (Markdown), as the README holds it.
    pub fn markdown_table(&self) -> String {
        let mut out = String::from(
            "| kind | settings | key types | key | runs in | verify deadline | permissions |\n|---|---|---|---|---|---|---|\n",
        );
        for k in &self.kinds {
            let settings: Vec<String> = k
                .settings
                .iter()
                .map(|s| {
                    format!(
                        "`{}`{}{}",
                        s.name,
                        if s.required { "" } else { "?" },
                        if s.repeated { "…" } else { "" }
                    )
                })
                .collect();
            let keys: Vec<&str> = k.key_types.iter().map(|t| t.as_str()).collect();
            let deadline = k.default_verify_deadline.as_secs();
            let deadline = if deadline % 60 == 0 {
                format!("{}m", deadline / 60)
            } else {
                format!("{deadline}s")
            };
            out.push_str(&format!(
                "| `{}` | {} | {} | {} | {} | {} | {} |\n",
                k.kind,
                settings.join(", "),
                keys.join(", "),
                k.key_delivery.as_str(),
                k.runs_in.as_str(),
                deadline,
                k.permissions.join(", ")
            ));
        }
        out
    }
}

/// `, did you mean "x"?` when a setting of the kind differs by case, `_` or a prefix.
fn suggest(descriptor: &KindDescriptor, key: &str) -> String {
    let plain = |s: &str| s.to_ascii_lowercase().replace(['-', '_'], "");
    let key = plain(key);
    descriptor
        .settings
        .iter()
        .find(|s| {
            let name = plain(s.name);
            !key.is_empty() && (name.starts_with(&key) || key.starts_with(&name))
        })
        .map(|s| format!(", did you mean {:?}?", s.name))
        .unwrap_or_else(|| {
            let names: Vec<&str> = descriptor.settings.iter().map(|s| s.name).collect();
            format!(" (it has {})", names.join(", "))
        })
}

/// The JSON value a spec's text stands for, by the setting's type.
fn typed(setting: &Setting, text: &str) -> Result<Value, String> {
    let value = match setting.value {
        ValueKind::Bool => match text {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return Err("expected true or false".into()),
        },
        ValueKind::Duration => Value::from(parse_duration(text)?.as_secs()),
        _ => Value::String(text.to_owned()),
    };
    check_value(setting, &value)?;
    Ok(value)
}

/// Checks one value against its setting's type.
fn check_value(setting: &Setting, value: &Value) -> Result<(), String> {
    match (setting.value, value) {
        (ValueKind::Bool, Value::Bool(_)) => Ok(()),
        (ValueKind::Bool, _) => Err("expected true or false".into()),
        (ValueKind::Duration, Value::Number(n)) if n.as_u64().is_some_and(|n| n > 0) => Ok(()),
        (ValueKind::Duration, _) => Err("expected a number of seconds above 0".into()),
        (_, Value::String(s)) if s.trim().is_empty() => Err("is empty".into()),
        (ValueKind::OneOf(choices), Value::String(s)) => {
            if choices.contains(&s.as_str()) {
                Ok(())
            } else {
                Err(format!("expected {}", choices.join(" or ")))
            }
        }
        (ValueKind::Path, Value::String(s)) => {
            if s.starts_with('/') {
                Ok(())
            } else {
                Err("expected an absolute path".into())
            }
        }
        (_, Value::String(s)) if s.contains('\0') => Err("holds a NUL character".into()),
        (_, Value::String(_)) => Ok(()),
        _ => Err("expected text".into()),
    }
}

fn value_schema(s: &Setting) -> Value {
    match s.value {
        ValueKind::Bool => json!({"type": "boolean"}),
        ValueKind::Duration => json!({"type": "integer", "minimum": 1}),
        ValueKind::OneOf(choices) => json!({"enum": choices}),
        ValueKind::Path => json!({"type": "string", "pattern": "^/"}),
        ValueKind::Text | ValueKind::Command => json!({"type": "string", "minLength": 1}),
    }
}

/// Parses `90s`, `5m`, `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("{e}; expected a duration such as 90s, 5m or 1h30m"))
}

/// Settings of a kind read from a map (the adapter's typed configuration), with the kind's
/// name in the error.
pub fn settings_as<T: serde::de::DeserializeOwned>(
    kind: &str,
    settings: &Settings,
) -> Result<T, String> {
    serde_json::from_value(Value::Object(settings.clone()))
        .map_err(|e| format!("{kind}: settings: {e}"))
}
