//! Time, read only through a port so that tests fix it.

#![allow(unused_imports)]

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

use super::*;
use crate::model::endpoint::Endpoint;
use crate::model::observation::{Observation, ProbeError, Served};
use crate::model::target::ScanRequest;

/// The source of the current time. Services read time only through this, so tests fix it.
pub trait Clock: Send + Sync {
    /// The current time, UTC.
    fn now(&self) -> OffsetDateTime;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}
