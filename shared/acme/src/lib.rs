//! certpilot's ACME [`Issuer`], over instant-acme.
//!
//! - **Accounts** are created once per (directory, contacts, EAB key) and their credentials
//!   kept in the SecretStore; later runs restore them. External Account Binding reads its
//!   HMAC key from the SecretStore too.
//! - **Orders** ask for the configured profile only when the directory lists it, and name
//!   the certificate they replace (ARI `replaces`) when there is one.
//! - **Challenges**: HTTP-01 through the built-in responder ([`http01::Http01Responder`]) or a
//!   web root ([`http01::Webroot`]); DNS-01 through the [`DnsProvider`]s given with
//!   [`AcmeIssuer::with_dns`] (Route 53, RFC 2136). Every DNS record of an order is published
//!   and in sync before the CA is told to validate any of them; wildcard names validate
//!   through `_acme-challenge.<base name>`.
//! - **Errors**: `badNonce` is retried here beyond instant-acme's three tries; rate limits,
//!   server errors and validation failures map to [`IssueError`] kinds the renew service acts
//!   on, with the CA's problem document kept.
//! - Every call to the CA is bounded by a timeout.

pub mod http;
pub mod http01;
pub mod keys;
pub mod rfc2136;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use certpilot_core::model::certificate::{
    CertificateSpec, ChallengeConfig, Identifier, IssuedCertificate, KeyType, RenewalWindow,
};
use certpilot_core::ports::{
    DnsProvider, DownloadedCertificate, IssueError, Issuer, KeySource, NewOrderInfo, SecretStore,
    SecretValue, SecretVersion, TxtRecord,
};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, ExternalAccountKey,
    NewAccount, NewOrder, OrderStatus, Problem, RetryPolicy,
};
use tokio::sync::Mutex;
use tracing::{debug, info};

use crate::http01::{Http01Responder, Webroot};

/// How often a `badNonce` is retried on top of instant-acme's own three tries.
const NONCE_RETRIES: usize = 10;

/// Settings of the ACME issuer.
#[derive(Clone, Debug)]
pub struct AcmeSettings {
    /// Bound on each call to the CA, and on waiting for validation or issuance.
    pub timeout: Duration,
    /// A PEM CA certificate to trust for the ACME server's own HTTPS (a private or test CA);
    /// `None` uses the platform's trust store.
    pub ca_file: Option<PathBuf>,
}

impl Default for AcmeSettings {
    fn default() -> Self {
        AcmeSettings {
            timeout: Duration::from_secs(90),
            ca_file: None,
        }
    }
}

/// The ACME issuer.
pub struct AcmeIssuer {
    secrets: Arc<dyn SecretStore>,
    settings: AcmeSettings,
    accounts: Mutex<HashMap<String, Account>>,
    responders: Mutex<HashMap<String, Arc<Http01Responder>>>,
    /// Tokens published per order, so they can be withdrawn.
    published: std::sync::Mutex<HashMap<String, Vec<String>>>,
    /// DNS-01 providers by kind (`route53`, `rfc2136`).
    dns: HashMap<&'static str, Arc<dyn DnsProvider>>,
    /// DNS records published per order, so they can be withdrawn.
    published_dns: std::sync::Mutex<HashMap<String, Vec<TxtRecord>>>,
}

impl std::fmt::Debug for AcmeIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeIssuer")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn problem_json(p: &Problem) -> serde_json::Value {
    serde_json::json!({
        "type": p.r#type,
        "detail": p.detail,
        "status": p.status,
        "subproblems": p.subproblems.iter().map(|s| serde_json::json!({
            "identifier": s.identifier.as_ref().map(identifier_text),
            "type": s.r#type,
            "detail": s.detail,
        })).collect::<Vec<_>>(),
    })
}

fn problem_text(p: &Problem) -> String {
    let mut text = p.detail.clone().unwrap_or_else(|| {
        p.r#type
            .clone()
            .unwrap_or_else(|| "unspecified problem".into())
    });
    for s in &p.subproblems {
        text.push_str(&format!(
            "; {}",
            s.detail.as_deref().unwrap_or("unspecified problem")
        ));
    }
    text
}

fn problem_kind(p: &Problem) -> &str {
    p.r#type
        .as_deref()
        .and_then(|t| t.rsplit(':').next())
        .unwrap_or("")
}

/// Maps an instant-acme error. `validating` marks the step where a CA's connection or DNS
/// problem means the challenge failed rather than the CA being unreachable.
fn map_error(e: instant_acme::Error, validating: bool) -> IssueError {
    use instant_acme::Error as E;
    match e {
        E::Api(p) => {
            let detail = problem_text(&p);
            match problem_kind(&p) {
                "rateLimited" => IssueError::RateLimited {
                    retry_after: retry_after_in(&detail, time::OffsetDateTime::now_utc()),
                    detail,
                },
                "badNonce" => IssueError::BadNonce(detail),
                "serverInternal" => IssueError::Unavailable(detail),
                "alreadyReplaced" => IssueError::ReplacesRefused(detail),
                "orderNotReady" => IssueError::OrderGone(detail),
                "connection" | "dns" | "incorrectResponse" | "tls" | "unauthorized"
                    if validating =>
                {
                    IssueError::Validation {
                        detail,
                        problem: problem_json(&p),
                    }
                }
                _ if p.status.is_some_and(|s| s >= 500) => IssueError::Unavailable(detail),
                _ if p.status == Some(404) => IssueError::OrderGone(detail),
                _ => IssueError::Rejected {
                    detail,
                    problem: Some(problem_json(&p)),
                },
            }
        }
        E::Unsupported(what) => IssueError::ReplacesRefused(format!("the CA lacks {what}")),
        E::Timeout(_) => IssueError::Unavailable("timed out waiting for the CA".into()),
        E::Json(e) => IssueError::Rejected {
            detail: format!("the CA's answer is not the JSON ACME expects: {e}"),
            problem: None,
        },
        other => transport_error(&other),
    }
}

/// Classifies a failure below ACME (connection, TLS, HTTP) and says it in words.
fn transport_error(e: &(dyn std::error::Error + 'static)) -> IssueError {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(status) = err.downcast_ref::<http::HttpStatus>() {
            let code = status.status.as_u16();
            return if code >= 500 || code == 429 || code == 408 {
                IssueError::Unavailable(status.to_string())
            } else {
                IssueError::Config(format!(
                    "{status}: not an ACME server's answer (is the directory URL right?)"
                ))
            };
        }
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return IssueError::Config(tls_words(tls));
        }
        // io::Error and instant-acme's transparent `Other` hide their inner error from
        // `source()`.
        let hidden: Option<&(dyn std::error::Error + 'static)> =
            if let Some(instant_acme::Error::Other(inner)) =
                err.downcast_ref::<instant_acme::Error>()
            {
                Some(inner.as_ref())
            } else {
                err.downcast_ref::<std::io::Error>()
                    .and_then(|io| io.get_ref())
                    .map(|inner| inner as &(dyn std::error::Error + 'static))
            };
        next = hidden.or_else(|| err.source());
    }
    IssueError::Unavailable(certpilot_core::error_chain(e))
}

/// What a TLS failure with the ACME server means, and what fixes it.
fn tls_words(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    const FIX: &str = "if the CA uses a private or test root, trust it with --acme-ca-file \
                       (CERTPILOT_ACME_CA_FILE)";
    let why = match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => {
                format!("is issued by an authority this machine does not trust; {FIX}")
            }
            C::Expired | C::ExpiredContext { .. } => "has expired".to_owned(),
            C::NotValidYet | C::NotValidYetContext { .. } => {
                "is not valid yet (check this machine's clock)".to_owned()
            }
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "is not valid for the directory's host name".to_owned()
            }
            C::Revoked => "is revoked".to_owned(),
            C::BadEncoding => "cannot be parsed".to_owned(),
            C::BadSignature => "has a bad signature".to_owned(),
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
                "is not meant for a TLS server".to_owned()
            }
            C::Other(other) => match other.0.downcast_ref::<webpki::Error>() {
                Some(webpki::Error::CaUsedAsEndEntity) => format!(
                    "is a CA certificate, not a server's: the server is misconfigured, or \
                     this is the CA's root given as the server's; {FIX}"
                ),
                Some(webpki::Error::UnknownIssuer) => {
                    format!("is issued by an authority this machine does not trust; {FIX}")
                }
                _ => format!("is not acceptable ({other}); {FIX}"),
            },
            _ => format!("is not acceptable; {FIX}"),
        },
        rustls::Error::AlertReceived(alert) => {
            return format!(
                "the ACME server ended the TLS handshake with the alert {}",
                u8::from(*alert)
            );
        }
        other => return format!("TLS with the ACME server failed: {other}"),
    };
    format!("the ACME server's HTTPS certificate {why}")
}

/// The wait a rate-limit problem names in its text. instant-acme does not surface the HTTP
/// `Retry-After` header, but Let's Encrypt writes the time into the detail too: "…, retry
/// after 2025-02-10 21:07:52 UTC: see https://…" or "retry after 2025-02-10T21:07:52Z".
fn retry_after_in(detail: &str, now: time::OffsetDateTime) -> Option<Duration> {
    use time::format_description::well_known::Rfc3339;
    let lower = detail.to_ascii_lowercase();
    let at = lower.find("retry after ")? + "retry after ".len();
    let rest = &detail[at..];
    let words: Vec<&str> = rest.split_whitespace().collect();
    let stamp = match words.as_slice() {
        [date, clock, zone, ..] if zone.trim_end_matches([':', ',', '.']) == "UTC" => {
            format!("{date}T{}Z", clock.trim_end_matches([':', ',', '.']))
        }
        [first, ..] => first.trim_end_matches([':', ',', '.']).to_owned(),
        [] => return None,
    };
    let when = time::OffsetDateTime::parse(&stamp, &Rfc3339).ok()?;
    let wait = when - now;
    (wait > time::Duration::ZERO).then(|| Duration::from_secs(wait.whole_seconds().unsigned_abs()))
}

/// A name or address as people write it (no Rust `Debug` in messages).
fn identifier_text(identifier: &instant_acme::Identifier) -> String {
    match identifier {
        instant_acme::Identifier::Dns(name) => name.clone(),
        instant_acme::Identifier::Ip(ip) => ip.to_string(),
        _ => "an identifier of another kind".to_owned(),
    }
}

fn is_bad_nonce(e: &instant_acme::Error) -> bool {
    matches!(e, instant_acme::Error::Api(p) if problem_kind(p) == "badNonce")
}

fn acme_identifiers(names: &[Identifier]) -> Vec<instant_acme::Identifier> {
    names
        .iter()
        .map(|n| match n {
            Identifier::Dns(d) => instant_acme::Identifier::Dns(d.clone()),
            Identifier::Ip(ip) => instant_acme::Identifier::Ip(*ip),
        })
        .collect()
}

impl AcmeIssuer {
    /// An issuer keeping account credentials in `secrets`.
    pub fn new(secrets: Arc<dyn SecretStore>, settings: AcmeSettings) -> Self {
        AcmeIssuer {
            secrets,
            settings,
            accounts: Mutex::default(),
            responders: Mutex::default(),
            published: std::sync::Mutex::default(),
            dns: HashMap::new(),
            published_dns: std::sync::Mutex::default(),
        }
    }

    /// Answers DNS-01 challenges of certificates whose provider is of `kind` (`route53`,
    /// `rfc2136`) through `provider`.
    pub fn with_dns(mut self, kind: &'static str, provider: Arc<dyn DnsProvider>) -> Self {
        self.dns.insert(kind, provider);
        self
    }

    fn dns_provider(
        &self,
        spec: &CertificateSpec,
    ) -> Result<Option<Arc<dyn DnsProvider>>, IssueError> {
        let ChallengeConfig::Dns01 { provider } = &spec.challenge else {
            return Ok(None);
        };
        self.dns
            .get(provider.kind())
            .cloned()
            .map(Some)
            .ok_or_else(|| {
                IssueError::Config(format!(
                    "DNS-01 through {} is not configured in this process",
                    provider.kind()
                ))
            })
    }

    /// Runs one CA call under the timeout, retrying `badNonce` beyond instant-acme's tries.
    async fn call<T, F, Fut>(&self, what: &str, mut f: F) -> Result<T, instant_acme::Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, instant_acme::Error>>,
    {
        let mut tries = 0;
        loop {
            let result = self.bounded(what, self.settings.timeout, f()).await;
            match result {
                Err(e) if is_bad_nonce(&e) && tries < NONCE_RETRIES => {
                    tries += 1;
                    debug!(what, tries, "badNonce; retrying");
                }
                other => return other,
            }
        }
    }

    /// Bounds one call that [`AcmeIssuer::call`] cannot repeat (it borrows the order or a
    /// challenge mutably): a CA that stops answering fails the step instead of holding it.
    async fn bounded<T>(
        &self,
        what: &str,
        limit: Duration,
        f: impl std::future::Future<Output = Result<T, instant_acme::Error>>,
    ) -> Result<T, instant_acme::Error> {
        tokio::time::timeout(limit, f).await.unwrap_or_else(|_| {
            Err(instant_acme::Error::Other(
                format!("{what}: no answer from the CA within {limit:?}").into(),
            ))
        })
    }

    /// Tells the CA a challenge is ready to be validated, within the timeout.
    async fn set_ready(
        &self,
        challenge: &mut instant_acme::ChallengeHandle<'_>,
    ) -> Result<(), IssueError> {
        self.bounded(
            "set challenge ready",
            self.settings.timeout,
            challenge.set_ready(),
        )
        .await
        .map_err(|e| map_error(e, true))
    }

    /// The next authorization of an order, read within the timeout.
    async fn next_authorization<'a>(
        &self,
        authorizations: &'a mut instant_acme::Authorizations<'_>,
    ) -> Result<Option<instant_acme::AuthorizationHandle<'a>>, IssueError> {
        let next = self
            .bounded("read authorizations", self.settings.timeout, async {
                Ok(authorizations.next().await)
            })
            .await
            .map_err(|e| map_error(e, true))?;
        next.transpose().map_err(|e| map_error(e, true))
    }

    /// The order at `order_url`, read through `spec`'s account.
    async fn order(
        &self,
        spec: &CertificateSpec,
        order_url: &str,
        validating: bool,
    ) -> Result<instant_acme::Order, IssueError> {
        let account = self.account(spec).await?;
        self.call("read order", || account.order(order_url.to_owned()))
            .await
            .map_err(|e| map_error(e, validating))
    }

    /// How to poll an order: quickly at first (a local or fast CA answers in milliseconds),
    /// within the issuer's timeout.
    fn polling(&self) -> RetryPolicy {
        RetryPolicy::new()
            .initial_delay(Duration::from_millis(100))
            .backoff(1.5)
            .timeout(self.settings.timeout)
    }

    fn builder(&self) -> Result<instant_acme::AccountBuilder, IssueError> {
        let client = http::CappedClient::new(self.settings.ca_file.as_deref(), http::MAX_BODY)
            .map_err(IssueError::Config)?;
        Ok(Account::builder_with_http(Box::new(client)))
    }

    /// The account for `spec`'s issuer: cached, else restored from the SecretStore, else
    /// created (with EAB when configured) and stored.
    async fn account(&self, spec: &CertificateSpec) -> Result<Account, IssueError> {
        let name = spec.issuer.account_secret_name();
        // Held across creation so that concurrent renewals create one account, not several.
        let mut accounts = self.accounts.lock().await;
        if let Some(a) = accounts.get(&name) {
            return Ok(a.clone());
        }
        let stored = self
            .secrets
            .get(&name, &SecretVersion::Current)
            .await
            .map_err(|e| IssueError::Config(format!("reading ACME account {name}: {e}")))?;
        let account = match stored {
            Some((_, value)) => {
                let credentials: AccountCredentials = serde_json::from_slice(value.expose())
                    .map_err(|e| IssueError::Config(format!("ACME account {name}: {e}")))?;
                self.call("restore account", || {
                    let builder = self
                        .builder()
                        .map_err(|e| instant_acme::Error::Other(e.to_string().into()));
                    let credentials = credentials_clone(&credentials);
                    async move { builder?.from_credentials(credentials?).await }
                })
                .await
                .map_err(|e| map_error(e, false))?
            }
            None => {
                let eab = match &spec.issuer.eab {
                    Some(eab) => {
                        let (_, hmac) = self
                            .secrets
                            .get(&eab.hmac_secret, &SecretVersion::Current)
                            .await
                            .map_err(|e| IssueError::Config(format!("EAB key: {e}")))?
                            .ok_or_else(|| {
                                IssueError::Config(format!(
                                    "EAB HMAC key {:?} is not in the secret store",
                                    eab.hmac_secret
                                ))
                            })?;
                        let text = hmac
                            .expose_str()
                            .map_err(|e| IssueError::Config(format!("EAB HMAC key: {e}")))?;
                        let bytes = decode_eab_hmac(text).map_err(|e| {
                            IssueError::Config(format!("EAB HMAC key {:?}: {e}", eab.hmac_secret))
                        })?;
                        Some(ExternalAccountKey::new(eab.key_id.clone(), &bytes))
                    }
                    None => None,
                };
                let contact: Vec<&str> = spec.issuer.contact.iter().map(String::as_str).collect();
                let new = NewAccount {
                    contact: &contact,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                };
                let (account, credentials) = self
                    .call("create account", || {
                        let b = self.builder();
                        let new = &new;
                        let eab = eab.as_ref();
                        let directory = spec.issuer.directory.clone();
                        async move {
                            match b {
                                Ok(b) => b.create(new, directory, eab).await,
                                Err(e) => Err(instant_acme::Error::Other(e.to_string().into())),
                            }
                        }
                    })
                    .await
                    .map_err(|e| map_error(e, false))?;
                let json = serde_json::to_vec(&credentials)
                    .map_err(|e| IssueError::Config(format!("ACME account credentials: {e}")))?;
                self.secrets
                    .put_current(&name, &SecretValue::new(json))
                    .await
                    .map_err(|e| IssueError::Config(format!("storing ACME account: {e}")))?;
                info!(directory = %certpilot_core::model::certificate::redact_url(&spec.issuer.directory), account = account.id(), "ACME account created");
                account
            }
        };
        accounts.insert(name, account.clone());
        Ok(account)
    }

    /// Serves `token` from the responder on `listen`, binding it first if needed. The map
    /// stays locked throughout, so a withdrawal that finds the responder idle never unbinds it
    /// between its binding and the token's insertion.
    async fn serve_token(
        &self,
        listen: &str,
        token: &str,
        key_authorization: &str,
    ) -> Result<(), IssueError> {
        let mut responders = self.responders.lock().await;
        if let Some(r) = responders.get(listen) {
            r.insert(token, key_authorization);
            return Ok(());
        }
        let r = Arc::new(
            Http01Responder::bind(listen)
                .await
                .map_err(|e| IssueError::Config(e.to_string()))?,
        );
        r.insert(token, key_authorization);
        responders.insert(listen.to_owned(), r);
        Ok(())
    }

    async fn publish_token(
        &self,
        spec: &CertificateSpec,
        token: &str,
        key_authorization: &str,
    ) -> Result<(), IssueError> {
        match &spec.challenge {
            ChallengeConfig::Http01Listen { listen } => {
                self.serve_token(listen, token, key_authorization).await
            }
            ChallengeConfig::Http01Webroot { webroot } => Webroot::new(webroot)
                .insert(token, key_authorization)
                .await
                .map_err(|e| IssueError::Config(format!("web root: {e}"))),
            ChallengeConfig::Dns01 { .. } => Err(IssueError::Config(
                "DNS-01 records are published per order, not per token".into(),
            )),
        }
    }

    async fn withdraw(&self, spec: &CertificateSpec, order_url: &str) {
        let records = self
            .published_dns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(order_url)
            .unwrap_or_default();
        if let (ChallengeConfig::Dns01 { provider }, Ok(Some(dns))) =
            (&spec.challenge, self.dns_provider(spec))
            && !records.is_empty()
            && let Err(e) = dns.withdraw(provider, &records).await
        {
            // Stale challenge records are harmless; the next order overwrites or adds.
            tracing::warn!(error = %e, "could not remove DNS-01 records");
        }
        let tokens = self
            .published
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(order_url)
            .unwrap_or_default();
        for token in tokens {
            match &spec.challenge {
                ChallengeConfig::Http01Listen { listen } => {
                    let mut responders = self.responders.lock().await;
                    if let Some(r) = responders.get(listen) {
                        r.remove(&token);
                        // Validation is over for every order this responder served: free the
                        // port (80 in production) for the deploy hook and other renewals.
                        if r.is_idle() {
                            responders.remove(listen);
                        }
                    }
                }
                ChallengeConfig::Http01Webroot { webroot } => {
                    Webroot::new(webroot).remove(&token).await;
                }
                ChallengeConfig::Dns01 { .. } => {}
            }
        }
    }

    fn challenge_type(spec: &CertificateSpec) -> ChallengeType {
        match spec.challenge {
            ChallengeConfig::Dns01 { .. } => ChallengeType::Dns01,
            _ => ChallengeType::Http01,
        }
    }

    /// The first failed challenge's problem, for a validation error the owner can act on.
    async fn validation_failure(
        &self,
        order: &mut instant_acme::Order,
    ) -> Result<IssueError, IssueError> {
        let mut authorizations = order.authorizations();
        while let Some(authz) = self.next_authorization(&mut authorizations).await? {
            for c in &authz.challenges {
                if let Some(p) = &c.error {
                    return Ok(IssueError::Validation {
                        detail: format!(
                            "{}: {}",
                            identifier_text(authz.identifier().identifier),
                            problem_text(p)
                        ),
                        problem: problem_json(p),
                    });
                }
            }
        }
        Ok(IssueError::Validation {
            detail: "the CA marked the order invalid".into(),
            problem: serde_json::json!({ "detail": "order invalid" }),
        })
    }
}

/// Decodes an EAB HMAC key as CAs hand it out: base64url (RFC 8555 §7.3.4), with or
/// without padding, surrounding whitespace ignored. The error says what is wrong.
pub fn decode_eab_hmac(text: &str) -> Result<Vec<u8>, String> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim().trim_end_matches('='))
        .map_err(|e| format!("not base64url: {e}"))?;
    // HS256 wants at least 256 bits; CAs issue 256 to 512.
    if bytes.len() < 16 {
        return Err(format!(
            "{} bytes is too short for an HMAC key (CAs issue 32 or more)",
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// Checks that `chain_pem`'s leaf is the certificate of `key` (the pair a server would load),
/// without looking at names: what `export` checks before writing anything.
pub fn check_pair(chain_pem: &str, key: &SecretValue) -> Result<(), IssueError> {
    keys::check_pair(chain_pem, key)
}

fn parse_ari_id(id: &str) -> Result<instant_acme::CertificateIdentifier<'static>, IssueError> {
    let quoted = serde_json::Value::String(id.to_owned()).to_string();
    serde_json::from_str::<instant_acme::CertificateIdentifier<'_>>(&quoted)
        .map(|c| c.into_owned())
        .map_err(|e| IssueError::Config(format!("stored ARI id {id:?}: {e}")))
}

fn credentials_clone(c: &AccountCredentials) -> Result<AccountCredentials, instant_acme::Error> {
    Ok(serde_json::from_value(serde_json::to_value(c)?)?)
}

impl AcmeIssuer {
    async fn create_order_once(
        &self,
        spec: &CertificateSpec,
        replaces: Option<&str>,
    ) -> Result<NewOrderInfo, IssueError> {
        let account = self.account(spec).await?;
        let identifiers = acme_identifiers(&spec.names);
        let profile = spec
            .issuer
            .profile
            .as_deref()
            .filter(|wanted| account.profiles().any(|p| p.name == *wanted));
        if let (Some(wanted), None) = (&spec.issuer.profile, profile) {
            info!(profile = %wanted, "the CA does not offer this profile; ordering without it");
        }
        let replaced: Option<instant_acme::CertificateIdentifier<'static>> = match replaces {
            Some(id) => Some(parse_ari_id(id)?),
            None => None,
        };
        let order = self
            .call("new order", || {
                let mut new = NewOrder::new(&identifiers);
                if let Some(p) = profile {
                    new = new.profile(p);
                }
                if let Some(r) = &replaced {
                    new = new.replaces(r.clone());
                }
                let account = account.clone();
                async move { account.new_order(&new).await }
            })
            .await
            .map_err(|e| map_error(e, false))?;
        Ok(NewOrderInfo {
            url: order.url().to_owned(),
            profile: profile.map(str::to_owned),
            replaces: replaces.map(str::to_owned),
        })
    }

    async fn publish_challenges_once(
        &self,
        spec: &CertificateSpec,
        order_url: &str,
    ) -> Result<(), IssueError> {
        let mut order = self.order(spec, order_url, false).await?;
        match order.state().status {
            OrderStatus::Pending => {}
            OrderStatus::Invalid => {
                return Err(self.validation_failure(&mut order).await?);
            }
            // Ready, processing or valid: nothing left to prove.
            _ => return Ok(()),
        }
        if let Some(dns) = self.dns_provider(spec)? {
            return self
                .publish_dns(spec, dns.as_ref(), order_url, &mut order)
                .await;
        }
        let kind = Self::challenge_type(spec);
        let mut tokens = Vec::new();
        let mut authorizations = order.authorizations();
        while let Some(mut authz) = self.next_authorization(&mut authorizations).await? {
            if authz.status != AuthorizationStatus::Pending {
                continue;
            }
            let identifier = identifier_text(authz.identifier().identifier);
            let Some(mut challenge) = authz.challenge(kind.clone()) else {
                return Err(IssueError::Rejected {
                    detail: format!(
                        "the CA offers no {} challenge for {identifier}",
                        if kind == ChallengeType::Dns01 {
                            "dns-01"
                        } else {
                            "http-01"
                        }
                    ),
                    problem: None,
                });
            };
            let key_authorization = challenge.key_authorization();
            self.publish_token(spec, &challenge.token, key_authorization.as_str())
                .await?;
            tokens.push(challenge.token.clone());
            if challenge.status == instant_acme::ChallengeStatus::Pending {
                self.set_ready(&mut challenge).await?;
            }
        }
        self.published
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(order_url.to_owned())
            .or_default()
            .extend(tokens);
        Ok(())
    }

    /// DNS-01: publishes every pending authorization's record and waits for the provider to
    /// have them in sync, then tells the CA — so no validation races the DNS.
    async fn publish_dns(
        &self,
        spec: &CertificateSpec,
        dns: &dyn DnsProvider,
        order_url: &str,
        order: &mut instant_acme::Order,
    ) -> Result<(), IssueError> {
        let ChallengeConfig::Dns01 { provider } = &spec.challenge else {
            return Ok(());
        };
        let mut records = Vec::new();
        let mut pending = order.authorizations();
        while let Some(mut authz) = self.next_authorization(&mut pending).await? {
            if authz.status != AuthorizationStatus::Pending {
                continue;
            }
            let name = match authz.identifier().identifier {
                instant_acme::Identifier::Dns(d) => d.clone(),
                other => {
                    return Err(IssueError::Config(format!(
                        "{} cannot be validated with DNS-01",
                        identifier_text(other)
                    )));
                }
            };
            let Some(challenge) = authz.challenge(ChallengeType::Dns01) else {
                return Err(IssueError::Rejected {
                    detail: format!("the CA offers no DNS-01 challenge for {name}"),
                    problem: None,
                });
            };
            records.push(TxtRecord {
                name: format!("_acme-challenge.{}", name.trim_start_matches("*.")),
                value: challenge.key_authorization().dns_value(),
            });
        }
        if records.is_empty() {
            return Ok(());
        }
        dns.publish(provider, &records).await?;
        // Added to, never replaced: a retried step sees only the authorizations still
        // pending, and the records of those validated meanwhile must still be withdrawn.
        {
            let mut published = self
                .published_dns
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let all = published.entry(order_url.to_owned()).or_default();
            for r in records {
                if !all.contains(&r) {
                    all.push(r);
                }
            }
        }
        let mut authorizations = order.authorizations();
        while let Some(mut authz) = self.next_authorization(&mut authorizations).await? {
            if let Some(mut challenge) = authz.challenge(ChallengeType::Dns01)
                && challenge.status == instant_acme::ChallengeStatus::Pending
            {
                self.set_ready(&mut challenge).await?;
            }
        }
        Ok(())
    }

    async fn await_ready_once(
        &self,
        spec: &CertificateSpec,
        order_url: &str,
    ) -> Result<(), IssueError> {
        let result = async {
            let mut order = self.order(spec, order_url, true).await?;
            let status = self
                .bounded(
                    "wait for validation",
                    self.settings.timeout * 2,
                    order.poll_ready(&self.polling()),
                )
                .await
                .map_err(|e| map_error(e, true))?;
            match status {
                OrderStatus::Ready | OrderStatus::Processing | OrderStatus::Valid => Ok(()),
                _ => Err(self.validation_failure(&mut order).await?),
            }
        }
        .await;
        self.withdraw(spec, order_url).await;
        result
    }

    async fn finalize_once(
        &self,
        spec: &CertificateSpec,
        order_url: &str,
        key: KeySource<'_>,
    ) -> Result<(), IssueError> {
        let mut order = self.order(spec, order_url, false).await?;
        match order.state().status {
            OrderStatus::Ready => {}
            // Finalized before a crash: nothing to send again.
            OrderStatus::Processing | OrderStatus::Valid => return Ok(()),
            OrderStatus::Invalid => {
                return Err(IssueError::OrderGone("the order is invalid".into()));
            }
            OrderStatus::Pending => {
                return Err(IssueError::OrderGone(
                    "the order is not validated yet".into(),
                ));
            }
        }
        let csr = match key {
            KeySource::Key(key) => keys::csr(&spec.names, key)?,
            KeySource::Csr(pem) => keys::target_csr(&spec.names, pem)?,
        };
        self.bounded("finalize", self.settings.timeout, order.finalize_csr(&csr))
            .await
            .map_err(|e| map_error(e, false))
    }

    async fn download_once(
        &self,
        spec: &CertificateSpec,
        order_url: &str,
        key: KeySource<'_>,
    ) -> Result<DownloadedCertificate, IssueError> {
        let mut order = self.order(spec, order_url, false).await?;
        let chain = self
            .bounded(
                "wait for the certificate",
                self.settings.timeout * 2,
                order.poll_certificate(&self.polling()),
            )
            .await
            .map_err(|e| map_error(e, false))?;
        let profile = order.state().profile.clone();
        keys::check(&chain, &spec.names, key, profile)
    }
}

#[async_trait]
impl Issuer for AcmeIssuer {
    async fn generate_key(&self, key_type: KeyType) -> Result<SecretValue, IssueError> {
        // RSA 4096 takes long enough to stall the runtime's other tasks.
        tokio::task::spawn_blocking(move || keys::generate(key_type))
            .await
            .map_err(|e| IssueError::Config(format!("key generation failed: {e}")))?
    }

    async fn renewal_info(
        &self,
        spec: &CertificateSpec,
        cert: &IssuedCertificate,
    ) -> Result<Option<(RenewalWindow, Duration)>, IssueError> {
        let Some(id) = &cert.ari_id else {
            return Ok(None);
        };
        let account = self.account(spec).await?;
        let id = parse_ari_id(id)?;
        match self
            .call("renewal info", || account.renewal_info(&id))
            .await
        {
            Ok((info, retry_after)) => Ok(Some((
                RenewalWindow {
                    start: info.suggested_window.start,
                    end: info.suggested_window.end,
                },
                retry_after,
            ))),
            Err(instant_acme::Error::Unsupported(_)) => Ok(None),
            Err(e) => Err(map_error(e, false)),
        }
    }

    async fn create_order(
        &self,
        spec: &CertificateSpec,
        replaces: Option<&str>,
    ) -> Result<NewOrderInfo, IssueError> {
        self.retry_nonce(|| self.create_order_once(spec, replaces))
            .await
    }

    async fn publish_challenges(
        &self,
        spec: &CertificateSpec,
        order_url: &str,
    ) -> Result<(), IssueError> {
        self.retry_nonce(|| self.publish_challenges_once(spec, order_url))
            .await
    }

    async fn await_ready(&self, spec: &CertificateSpec, order_url: &str) -> Result<(), IssueError> {
        self.retry_nonce(|| self.await_ready_once(spec, order_url))
            .await
    }

    async fn finalize(
        &self,
        spec: &CertificateSpec,
        order_url: &str,
        key: KeySource<'_>,
    ) -> Result<(), IssueError> {
        self.retry_nonce(|| self.finalize_once(spec, order_url, key))
            .await
    }

    async fn download(
        &self,
        spec: &CertificateSpec,
        order_url: &str,
        key: KeySource<'_>,
    ) -> Result<DownloadedCertificate, IssueError> {
        self.retry_nonce(|| self.download_once(spec, order_url, key))
            .await
    }
}

impl AcmeIssuer {
    /// Runs a whole step again when a `badNonce` got through instant-acme's retries: every
    /// step is idempotent at the CA.
    async fn retry_nonce<T, F, Fut>(&self, mut step: F) -> Result<T, IssueError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, IssueError>>,
    {
        let mut tries = 0;
        loop {
            match step().await {
                Err(IssueError::BadNonce(_)) if tries < NONCE_RETRIES => {
                    tries += 1;
                    debug!(tries, "badNonce; running the step again");
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_waits_are_read_from_the_cas_words() {
        let now = time::macros::datetime!(2025-02-10 20:07:52 UTC);
        let hour = Some(Duration::from_secs(3600));
        assert_eq!(
            retry_after_in(
                "too many certificates (5) already issued for this exact set of identifiers in the last 168h0m0s, retry after 2025-02-10 21:07:52 UTC: see https://letsencrypt.org/docs/rate-limits/",
                now
            ),
            hour
        );
        assert_eq!(
            retry_after_in("Rate limited; retry after 2025-02-10T21:07:52Z.", now),
            hour
        );
        assert_eq!(retry_after_in("too many new orders recently", now), None);
        assert_eq!(
            retry_after_in("retry after 2025-02-10T19:00:00Z", now),
            None,
            "past"
        );
        assert_eq!(retry_after_in("retry after soon", now), None);
    }
}
