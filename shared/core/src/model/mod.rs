//! The domain model: targets, endpoints, what a scan observed, and managed certificates.

pub mod certificate;
pub mod channel;
pub mod deploy;
pub mod deploy_kind;
pub mod endpoint;
pub mod finding;
pub mod observation;
pub mod overview;
pub mod request;
pub mod target;
