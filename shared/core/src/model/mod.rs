//! The domain model: targets, endpoints and what a scan observed.

pub mod endpoint;
pub mod observation;
pub mod target;
