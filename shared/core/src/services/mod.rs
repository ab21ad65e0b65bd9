//! Use cases. Each takes its ports as arguments so that every front end (CLI, Lambda) runs
//! the same code.

pub mod acm;
pub mod deploy;
pub mod digest;
pub mod endpoints;
pub mod findings;
pub mod guard;
pub mod lease;
pub mod metrics;
pub mod renew;
pub mod scan;
pub mod scheduled;
pub mod verify;

#[cfg(test)]
pub(crate) mod test_support;
