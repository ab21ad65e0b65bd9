//! One classification of failures, read by every front: can a retry help, and was the input
//! at fault. CLI exit codes (0/1/2/75), Lambda error types (`Retryable`/`NonRetryable`) and
//! HTTP statuses all come from [`Classify::class`], never from an error's text.

use serde::Serialize;

use crate::ports::{AnnounceError, DeployError, IssueError, QueueError, SecretError, StoreError};
use crate::services::deploy::DeployServiceError;
use crate::services::renew::RenewError;
use crate::services::scheduled::ScheduledError;

/// What the caller of a failed operation can do about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The same request later can succeed without anyone acting: a service unavailable or
    /// throttling, a rate limit that lapses, another worker busy, a write that lost a race.
    Retryable,
    /// The request named something missing or malformed; nothing was changed.
    Input,
    /// A person must act: configuration, permissions, a refusal, data that cannot be read.
    Permanent,
}

/// A failure that knows its [`ErrorClass`].
pub trait Classify {
    /// The class of this failure.
    fn class(&self) -> ErrorClass;

    /// Whether a retry later can succeed.
    fn is_retryable(&self) -> bool {
        self.class() == ErrorClass::Retryable
    }

    /// Whether the input was at fault (nothing was changed).
    fn is_input(&self) -> bool {
        self.class() == ErrorClass::Input
    }
}

impl Classify for StoreError {
    fn class(&self) -> ErrorClass {
        match self {
            StoreError::Conflict { .. } | StoreError::Unavailable(_) => ErrorClass::Retryable,
            StoreError::NotFound { .. } | StoreError::AlreadyExists { .. } => ErrorClass::Input,
            StoreError::Backend(_) => ErrorClass::Permanent,
        }
    }
}

impl Classify for SecretError {
    fn class(&self) -> ErrorClass {
        match self {
            SecretError::Unavailable(_) => ErrorClass::Retryable,
            SecretError::NotFound(_) | SecretError::Backend(_) => ErrorClass::Permanent,
        }
    }
}

impl Classify for QueueError {
    fn class(&self) -> ErrorClass {
        match self {
            QueueError::Unavailable(_) => ErrorClass::Retryable,
            QueueError::Rejected(_) => ErrorClass::Permanent,
        }
    }
}

impl Classify for IssueError {
    fn class(&self) -> ErrorClass {
        match self {
            IssueError::RateLimited { .. }
            | IssueError::Unavailable(_)
            | IssueError::BadNonce(_)
            | IssueError::DnsUnavailable(_) => ErrorClass::Retryable,
            IssueError::Validation { .. }
            | IssueError::OrderGone(_)
            | IssueError::ReplacesRefused(_)
            | IssueError::Rejected { .. }
            | IssueError::Check(_)
            | IssueError::Config(_) => ErrorClass::Permanent,
        }
    }
}

impl Classify for AnnounceError {
    fn class(&self) -> ErrorClass {
        match self {
            AnnounceError::Queue(e) => e.class(),
            AnnounceError::Secret(e) => e.class(),
            AnnounceError::Failed(_) => ErrorClass::Permanent,
        }
    }
}

impl Classify for DeployError {
    fn class(&self) -> ErrorClass {
        match self {
            DeployError::Unavailable(_) => ErrorClass::Retryable,
            DeployError::Config(_) | DeployError::Target(_) => ErrorClass::Permanent,
            DeployError::Secret(e) => e.class(),
            DeployError::Store(e) => e.class(),
        }
    }
}

impl Classify for RenewError {
    fn class(&self) -> ErrorClass {
        match self {
            RenewError::NotFound(_) => ErrorClass::Input,
            RenewError::Store(e) => e.class(),
            RenewError::Secret(e) => e.class(),
            RenewError::Issue { error, .. } => error.class(),
            RenewError::LeaseLost(_) => ErrorClass::Retryable,
            RenewError::Announce { error, .. } => error.class(),
        }
    }
}

impl Classify for DeployServiceError {
    fn class(&self) -> ErrorClass {
        match self {
            DeployServiceError::Busy { .. } => ErrorClass::Retryable,
            DeployServiceError::NotFound(_)
            | DeployServiceError::NotIssued(_)
            | DeployServiceError::NoPrevious(_)
            | DeployServiceError::NoDeployment { .. } => ErrorClass::Input,
            DeployServiceError::Deploy(e) => e.class(),
            DeployServiceError::Store(e) => e.class(),
        }
    }
}

impl Classify for ScheduledError {
    fn class(&self) -> ErrorClass {
        match self {
            ScheduledError::Store(e) => e.class(),
            ScheduledError::Queue(e) => e.class(),
        }
    }
}
