//! The platform team's guardrails for certificates requested through the API: which caller
//! may ask for which names, from which issuer, validated how, with which key, profile,
//! deployment kinds and tags, and whose approval the request waits for.
//!
//! Issuers and challenges are named by the operator in the policy, and requests choose among
//! those names: a caller never supplies a directory URL, an EAB secret, a TSIG secret name or
//! a web root, so a request cannot point certpilot at a secret or a path it should not touch.
//!
//! A request is allowed when at least one rule whose `callers` match the caller allows every
//! part of it; that rule's `approval`, if any, then applies. A refusal names the rule and the
//! clause that refused (the first rule that matched the caller), so the requester knows what
//! to change or whom to ask.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Tags;
use crate::model::certificate::{
    AcmIssuance, AcmeIssuer, ChallengeConfig, ExternalAccountBinding, Identifier, KeyType,
};

/// The tag every requested certificate must carry: alerts go to its owner.
pub const OWNER_TAG: &str = "owner";

/// The guardrails document (`certpilot serve --policy FILE`; an SSM parameter on AWS).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestPolicy {
    /// The issuers requests may name, by name.
    #[serde(default)]
    pub issuers: BTreeMap<String, IssuerChoice>,
    /// The ways of validation requests may name, by name.
    #[serde(default)]
    pub challenges: BTreeMap<String, ChallengeConfig>,
    /// Who may request what.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// An issuer the operator offers: an ACME directory (with its account's contacts and EAB),
/// or AWS Certificate Manager in a region.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerChoice {
    /// The ACME directory URL.
    #[serde(default)]
    pub directory: Option<String>,
    /// The ACME account's contacts (`mailto:` URLs).
    #[serde(default)]
    pub contact: Vec<String>,
    /// External Account Binding (the HMAC key's secret-store name, never the key).
    #[serde(default)]
    pub eab: Option<ExternalAccountBinding>,
    /// Issue through ACM in this region instead.
    #[serde(default)]
    pub acm_region: Option<String>,
}

/// Who may request what.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Named in refusals; `rules[N]` when absent.
    #[serde(default)]
    pub name: Option<String>,
    /// Principal ids (`iam:<ARN>`, `jwt:<issuer>|<subject>`, `token:<name>`); a trailing `*`
    /// matches any rest.
    pub callers: Vec<String>,
    /// Every name must be one of these or under one (`example.com` covers
    /// `api.example.com` and `*.example.com`, never `badexample.com`).
    pub suffixes: Vec<String>,
    /// Issuer names from `issuers`.
    pub issuers: Vec<String>,
    /// Challenge names from `challenges`; every one when empty.
    #[serde(default)]
    pub challenges: Vec<String>,
    /// Key types; every one when empty.
    #[serde(default)]
    pub key_types: Vec<KeyType>,
    /// ACME profiles; any (or none) when empty.
    #[serde(default)]
    pub profiles: Vec<String>,
    /// Deployment kinds a request may include; none when empty, since a deployment writes to
    /// systems (files on the server, load balancers) the operator must choose to expose.
    #[serde(default)]
    pub deploy_kinds: Vec<String>,
    /// Tags a request must carry besides `owner`.
    #[serde(default)]
    pub required_tags: Vec<String>,
    /// When present, requests this rule allows wait for one of these approvers.
    #[serde(default)]
    pub approval: Option<Approval>,
}

/// Who approves the requests a rule allows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// Principal ids (a trailing `*` matches any rest); never the requester.
    pub approvers: Vec<String>,
}

/// What a request asks for, as the policy judges it.
#[derive(Clone, Debug)]
pub struct Ask<'a> {
    /// The names, validated.
    pub names: &'a [Identifier],
    /// The issuer's name in the policy.
    pub issuer: &'a str,
    /// The challenge's name in the policy.
    pub challenge: &'a str,
    /// The key type.
    pub key_type: KeyType,
    /// The ACME profile.
    pub profile: Option<&'a str>,
    /// The kinds of its deployments.
    pub deploy_kinds: Vec<&'a str>,
    /// Its tags.
    pub tags: &'a Tags,
}

/// A request the policy allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allowed {
    /// The rule that allowed it.
    pub rule: String,
    /// Who must approve it first, when someone must.
    pub approvers: Option<Vec<String>>,
}

/// A refusal: the rule and what in the request it refuses.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    /// The rule that refused, when one matched the caller.
    pub rule: Option<String>,
    /// The sentence naming the field and the rule.
    pub message: String,
}

/// A mistake in the policy document, naming the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

/// Whether `principal` matches `pattern` (exact, or a prefix when it ends with `*`).
pub fn principal_matches(pattern: &str, principal: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => principal.starts_with(prefix),
        None => pattern == principal,
    }
}

/// Whether `name` is `suffix` or under it, at a label boundary.
fn under(name: &Identifier, suffix: &str) -> bool {
    let suffix = suffix.trim_end_matches('.').to_ascii_lowercase();
    match name {
        Identifier::Ip(ip) => ip.to_string() == suffix,
        Identifier::Dns(_) => {
            let base = name.validation_name();
            base == suffix || base.ends_with(&format!(".{suffix}"))
        }
    }
}

impl Rule {
    fn label(&self, index: usize) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("rules[{index}]"))
    }

    fn matches_caller(&self, caller: &str) -> bool {
        self.callers.iter().any(|p| principal_matches(p, caller))
    }

    /// Whether every name is under one of this rule's suffixes.
    fn covers(&self, names: &[Identifier]) -> Result<(), String> {
        match names
            .iter()
            .find(|n| !self.suffixes.iter().any(|s| under(n, s)))
        {
            Some(n) => Err(format!(
                "names: {n} is not under {}",
                self.suffixes.join(", ")
            )),
            None => Ok(()),
        }
    }

    fn judge(&self, ask: &Ask<'_>, all_challenges: &[&String]) -> Result<(), String> {
        self.covers(ask.names)?;
        if !self.issuers.iter().any(|i| i == ask.issuer) {
            return Err(format!(
                "issuer: {:?} is not allowed (allowed: {})",
                ask.issuer,
                self.issuers.join(", ")
            ));
        }
        let challenges: Vec<&String> = if self.challenges.is_empty() {
            all_challenges.to_vec()
        } else {
            self.challenges.iter().collect()
        };
        if !challenges.iter().any(|c| *c == ask.challenge) {
            return Err(format!(
                "challenge: {:?} is not allowed (allowed: {})",
                ask.challenge,
                challenges
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if !self.key_types.is_empty() && !self.key_types.contains(&ask.key_type) {
            return Err(format!(
                "key_type: {} is not allowed (allowed: {})",
                ask.key_type.as_str(),
                self.key_types
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if !self.profiles.is_empty() {
            match ask.profile {
                Some(p) if self.profiles.iter().any(|q| q == p) => {}
                other => {
                    return Err(format!(
                        "profile: {} is not allowed (allowed: {})",
                        other.map_or_else(|| "none".to_owned(), |p| format!("{p:?}")),
                        self.profiles.join(", ")
                    ));
                }
            }
        }
        if let Some(kind) = ask
            .deploy_kinds
            .iter()
            .find(|k| !self.deploy_kinds.iter().any(|a| a == *k))
        {
            return Err(format!(
                "deployments: kind {kind:?} is not allowed ({})",
                if self.deploy_kinds.is_empty() {
                    "this rule allows no deployments".to_owned()
                } else {
                    format!("allowed: {}", self.deploy_kinds.join(", "))
                }
            ));
        }
        let required =
            std::iter::once(OWNER_TAG).chain(self.required_tags.iter().map(|t| t.as_str()));
        for tag in required {
            if ask.tags.get(tag).is_none_or(|v| v.trim().is_empty()) {
                return Err(format!("tags: {tag:?} is required"));
            }
        }
        Ok(())
    }
}

impl RequestPolicy {
    /// Checks the document: every rule has callers, suffixes and issuers, names only issuers
    /// and challenges the document defines, and every issuer is one ACME directory or one
    /// ACM region.
    pub fn check(&self) -> Result<(), PolicyError> {
        for (name, issuer) in &self.issuers {
            let field = format!("issuers.{name}");
            match (&issuer.directory, &issuer.acm_region) {
                (Some(_), Some(_)) => {
                    return Err(PolicyError(format!(
                        "{field}: either directory (ACME) or acm_region, not both"
                    )));
                }
                (None, None) => {
                    return Err(PolicyError(format!(
                        "{field}: needs directory (ACME) or acm_region"
                    )));
                }
                (Some(d), None) if !d.starts_with("https://") => {
                    return Err(PolicyError(format!(
                        "{field}.directory: {d:?} is not an https:// URL"
                    )));
                }
                _ => {}
            }
        }
        for (i, rule) in self.rules.iter().enumerate() {
            let field = format!("rules[{i}]");
            for (what, list) in [
                ("callers", &rule.callers),
                ("suffixes", &rule.suffixes),
                ("issuers", &rule.issuers),
            ] {
                if list.is_empty() || list.iter().any(|x| x.trim().is_empty()) {
                    return Err(PolicyError(format!(
                        "{field}.{what}: needs at least one, none empty"
                    )));
                }
            }
            if rule.callers.iter().any(|c| c == "*") {
                return Err(PolicyError(format!(
                    "{field}.callers: \"*\" would let every caller in; name them, or a prefix \
                     such as \"token:*\""
                )));
            }
            if let Some(s) = rule
                .suffixes
                .iter()
                .find(|s| s.starts_with('*') || !s.contains('.'))
            {
                return Err(PolicyError(format!(
                    "{field}.suffixes: {s:?}: write a domain such as example.com (it covers \
                     every name under it); a top-level domain alone is too wide"
                )));
            }
            if let Some(i) = rule.issuers.iter().find(|i| !self.issuers.contains_key(*i)) {
                return Err(PolicyError(format!(
                    "{field}.issuers: {i:?} is not defined under issuers"
                )));
            }
            if let Some(c) = rule
                .challenges
                .iter()
                .find(|c| !self.challenges.contains_key(*c))
            {
                return Err(PolicyError(format!(
                    "{field}.challenges: {c:?} is not defined under challenges"
                )));
            }
            if let Some(a) = &rule.approval
                && a.approvers.is_empty()
            {
                return Err(PolicyError(format!(
                    "{field}.approval.approvers: needs at least one approver"
                )));
            }
        }
        Ok(())
    }

    /// Judges `ask` from `caller`.
    pub fn authorize(&self, caller: &str, ask: &Ask<'_>) -> Result<Allowed, Refused> {
        if !self.issuers.contains_key(ask.issuer) {
            return Err(Refused {
                rule: None,
                message: format!(
                    "issuer: {:?} is not one of this API's issuers ({})",
                    ask.issuer,
                    self.issuers.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            });
        }
        if !self.challenges.contains_key(ask.challenge) {
            return Err(Refused {
                rule: None,
                message: format!(
                    "challenge: {:?} is not one of this API's challenges ({})",
                    ask.challenge,
                    self.challenges
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        let all_challenges: Vec<&String> = self.challenges.keys().collect();
        let mut first_refusal = None;
        for (i, rule) in self.rules.iter().enumerate() {
            if !rule.matches_caller(caller) {
                continue;
            }
            match rule.judge(ask, &all_challenges) {
                Ok(()) => {
                    return Ok(Allowed {
                        rule: rule.label(i),
                        approvers: rule.approval.as_ref().map(|a| a.approvers.clone()),
                    });
                }
                Err(why) => {
                    first_refusal.get_or_insert_with(|| Refused {
                        rule: Some(rule.label(i)),
                        message: format!("refused by rule {}: {why}", rule.label(i)),
                    });
                }
            }
        }
        Err(first_refusal.unwrap_or_else(|| Refused {
            rule: None,
            message: format!("no rule of the request policy lets {caller} request certificates"),
        }))
    }

    /// Whether `caller` may renew, roll back or remove a certificate with `names`: some rule
    /// of theirs covers every name.
    pub fn may_manage(&self, caller: &str, names: &[Identifier]) -> Result<(), Refused> {
        let mut first = None;
        for (i, rule) in self.rules.iter().enumerate() {
            if !rule.matches_caller(caller) {
                continue;
            }
            match rule.covers(names) {
                Ok(()) => return Ok(()),
                Err(why) => {
                    first.get_or_insert_with(|| Refused {
                        rule: Some(rule.label(i)),
                        message: format!("refused by rule {}: {why}", rule.label(i)),
                    });
                }
            }
        }
        Err(first.unwrap_or_else(|| Refused {
            rule: None,
            message: format!("no rule of the request policy lets {caller} manage certificates"),
        }))
    }

    /// The issuer named `name` as a certificate's issuer settings, with `profile`.
    pub fn issuer(
        &self,
        name: &str,
        profile: Option<String>,
    ) -> Option<(AcmeIssuer, Option<AcmIssuance>)> {
        let choice = self.issuers.get(name)?;
        Some(match &choice.acm_region {
            Some(region) => (
                AcmeIssuer {
                    directory: crate::model::certificate::LETS_ENCRYPT.to_owned(),
                    contact: Vec::new(),
                    eab: None,
                    profile: None,
                    account_secret: None,
                },
                Some(AcmIssuance {
                    region: region.clone(),
                }),
            ),
            None => (
                AcmeIssuer {
                    directory: choice.directory.clone().unwrap_or_default(),
                    contact: choice.contact.clone(),
                    eab: choice.eab.clone(),
                    profile,
                    account_secret: None,
                },
                None,
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RequestPolicy {
        let mut p = RequestPolicy::default();
        p.issuers.insert(
            "le".into(),
            IssuerChoice {
                directory: Some("https://acme.example/dir".into()),
                ..IssuerChoice::default()
            },
        );
        p.issuers.insert(
            "acm".into(),
            IssuerChoice {
                acm_region: Some("eu-west-1".into()),
                ..IssuerChoice::default()
            },
        );
        p.challenges.insert(
            "route53".into(),
            ChallengeConfig::Dns01 {
                provider: crate::model::certificate::DnsProviderConfig::Route53 { zone_id: None },
            },
        );
        p.rules.push(Rule {
            name: Some("payments".into()),
            callers: vec![
                "token:payments".into(),
                "iam:arn:aws:iam::1:role/pay-*".into(),
            ],
            suffixes: vec!["pay.example.com".into()],
            issuers: vec!["le".into()],
            key_types: vec![KeyType::EcdsaP256],
            profiles: vec!["tlsserver".into()],
            deploy_kinds: vec!["acm".into()],
            ..Rule::default()
        });
        p.rules.push(Rule {
            name: Some("restricted".into()),
            callers: vec!["token:*".into()],
            suffixes: vec!["secure.example.com".into()],
            issuers: vec!["le".into(), "acm".into()],
            required_tags: vec!["environment".into()],
            approval: Some(Approval {
                approvers: vec!["token:security".into()],
            }),
            ..Rule::default()
        });
        p
    }

    fn names(list: &[&str]) -> Vec<Identifier> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn tags(list: &[(&str, &str)]) -> Tags {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn ask<'a>(names: &'a [Identifier], tags: &'a Tags) -> Ask<'a> {
        Ask {
            names,
            issuer: "le",
            challenge: "route53",
            key_type: KeyType::EcdsaP256,
            profile: Some("tlsserver"),
            deploy_kinds: vec!["acm"],
            tags,
        }
    }

    #[test]
    fn the_policy_document_checks_out() {
        assert_eq!(policy().check(), Ok(()));
    }

    #[test]
    fn a_request_within_a_rule_is_allowed_without_approval() {
        let n = names(&[
            "api.pay.example.com",
            "*.pay.example.com",
            "pay.example.com",
        ]);
        let t = tags(&[("owner", "payments")]);
        let allowed = policy().authorize("token:payments", &ask(&n, &t)).unwrap();
        assert_eq!(allowed.rule, "payments");
        assert_eq!(allowed.approvers, None);
        let by_role = policy()
            .authorize("iam:arn:aws:iam::1:role/pay-ci", &ask(&n, &t))
            .unwrap();
        assert_eq!(by_role.rule, "payments");
    }

    #[test]
    fn each_clause_refuses_naming_the_rule_and_the_field() {
        let p = policy();
        let t = tags(&[("owner", "payments")]);
        let n = names(&["api.pay.example.com"]);
        let cases: Vec<(Ask<'_>, &str)> = vec![
            (
                Ask {
                    names: &names(&["badpay.example.com"]).leak()[..],
                    ..ask(&n, &t)
                },
                "names: badpay.example.com is not under pay.example.com",
            ),
            (
                Ask {
                    issuer: "acm",
                    ..ask(&n, &t)
                },
                "issuer: \"acm\" is not allowed",
            ),
            (
                Ask {
                    key_type: KeyType::Rsa2048,
                    ..ask(&n, &t)
                },
                "key_type: rsa2048 is not allowed",
            ),
            (
                Ask {
                    profile: None,
                    ..ask(&n, &t)
                },
                "profile: none is not allowed",
            ),
            (
                Ask {
                    deploy_kinds: vec!["files"],
                    ..ask(&n, &t)
                },
                "deployments: kind \"files\" is not allowed",
            ),
        ];
        for (a, want) in cases {
            let refused = p.authorize("token:payments", &a).unwrap_err();
            assert_eq!(refused.rule.as_deref(), Some("payments"));
            assert!(
                refused.message.contains(want) && refused.message.contains("rule payments"),
                "{refused:?} should say {want}"
            );
        }
        let untagged = Tags::new();
        let refused = p
            .authorize("token:payments", &ask(&n, &untagged))
            .unwrap_err();
        assert!(
            refused.message.contains("tags: \"owner\" is required"),
            "{refused:?}"
        );
    }

    #[test]
    fn a_caller_no_rule_names_is_refused_saying_so() {
        let n = names(&["api.pay.example.com"]);
        let t = tags(&[("owner", "x")]);
        let refused = policy()
            .authorize("jwt:https://idp|alice", &ask(&n, &t))
            .unwrap_err();
        assert_eq!(refused.rule, None);
        assert!(refused.message.contains("jwt:https://idp|alice"));
    }

    #[test]
    fn an_approval_rule_names_its_approvers_and_required_tags() {
        let n = names(&["www.secure.example.com"]);
        let t = tags(&[("owner", "web")]);
        let a = Ask {
            profile: None,
            deploy_kinds: vec![],
            ..ask(&n, &t)
        };
        let refused = policy().authorize("token:web", &a).unwrap_err();
        assert!(refused.message.contains("\"environment\" is required"));
        let t = tags(&[("owner", "web"), ("environment", "prod")]);
        let a = Ask { tags: &t, ..a };
        let allowed = policy().authorize("token:web", &a).unwrap();
        assert_eq!(allowed.approvers, Some(vec!["token:security".to_owned()]));
    }

    #[test]
    fn managing_needs_a_rule_covering_every_name() {
        let p = policy();
        assert!(
            p.may_manage("token:payments", &names(&["a.pay.example.com"]))
                .is_ok()
        );
        assert!(
            p.may_manage(
                "token:payments",
                &names(&["a.pay.example.com", "example.com"])
            )
            .is_err()
        );
        assert!(
            p.may_manage("token:other", &names(&["a.pay.example.com"]))
                .is_err()
        );
    }

    #[test]
    fn mistakes_in_the_document_name_the_field() {
        let mut p = policy();
        p.rules[0].issuers.push("nope".into());
        assert!(
            p.check()
                .unwrap_err()
                .0
                .starts_with("rules[0].issuers: \"nope\"")
        );
        let mut p = policy();
        p.rules[1].callers = vec!["*".into()];
        assert!(p.check().unwrap_err().0.starts_with("rules[1].callers"));
        let mut p = policy();
        p.rules[0].suffixes = vec!["com".into()];
        assert!(p.check().unwrap_err().0.starts_with("rules[0].suffixes"));
        let mut p = policy();
        p.issuers.get_mut("le").unwrap().acm_region = Some("x".into());
        assert!(p.check().unwrap_err().0.starts_with("issuers.le"));
    }
}
