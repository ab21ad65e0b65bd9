//! Test builders and real local servers shared by certpilot's tests and benchmarks.
//!
//! - [`certs`]: CAs, intermediates and leaves with chosen names, dates and keys (rcgen).
//! - [`servers`]: TLS, STARTTLS and hostile servers on loopback, stopped on drop.
//! - [`procs`]: Pebble and moto server as child processes, killed on drop.
//! - [`observations`]: observation builders for store and policy tests.
//! - [`contract`] and [`store_contract!`]: the suite every `Store` implementation passes.
//! - [`renewal_contract`]: the suites of `CertificateStore` and `SecretStore`.
//! - [`deploy_contract`]: the suite every deploy target kind passes.
//! - [`findings_contract`]: the `FindingStore` suite, and the in-memory store that passes it.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

pub mod akamai;
pub mod certs;
pub mod clock;
pub mod cloudflare;
pub mod contract;
pub mod deploy_contract;
pub mod dns;
pub mod fastly;
pub mod findings_contract;
pub mod hostile_ca;
pub mod http_mock;
pub mod kube_api;
pub mod lambda;
pub mod netscaler;
pub mod observations;
pub mod procs;
pub mod renewal_contract;
pub mod requests_contract;
pub mod servers;
pub mod slack;
pub mod ssm_fleet;
pub mod webdriver;
pub mod webhook_receiver;
