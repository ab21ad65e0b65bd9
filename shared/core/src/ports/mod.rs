//! The ports: traits that adapters implement and services depend on, one file per family.
//!
//! Each trait documents its contract. The same contract test suite
//! (`certpilot_testkit::store_contract!`) runs against every [`Store`] implementation.

mod acm;
mod acme;
mod certificates;
mod clock;
mod deploy;
mod dns;
mod findings;
mod notify;
mod probe;
mod queue;
mod requests;
mod secrets;
mod store;

pub use acm::*;
pub use acme::*;
pub use certificates::*;
pub use clock::*;
pub use deploy::*;
pub use dns::*;
pub use findings::*;
pub use notify::*;
pub use probe::*;
pub use queue::*;
pub use requests::*;
pub use secrets::*;
pub use store::*;
