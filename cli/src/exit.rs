//! The exit statuses of every command, in one place: `--help`, the README and every code
//! path take them from here.

use std::process::ExitCode;

use certpilot_core::{Classify, ErrorClass};

use crate::CliError;

/// The table shown by `--help` for every command.
pub(crate) const EXIT_CODES: &str = "\
Exit status (every command):
  0    done, or nothing was due
  1    usage or input error; nothing was changed
  2    a person must act: a check found a problem, a renewal or deploy failed, an endpoint
       does not serve the certificate, the store or secret store refused, a channel
       refused a message
  75   a retry later can help (EX_TEMPFAIL): busy, deferred by the CA's rate limit, backing
       off after a failure, the store, CA, network or a channel unavailable
  130  interrupted (SIGINT or SIGTERM); what was done so far is recorded";

/// How a command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Done, or nothing was due.
    Done,
    /// Usage or input error; nothing was changed.
    Usage,
    /// A person must act.
    Attention,
    /// A retry later can help (`EX_TEMPFAIL`).
    TempFail,
    /// Interrupted by SIGINT or SIGTERM.
    Interrupted,
}

impl Exit {
    /// The process exit status.
    pub(crate) fn code(self) -> u8 {
        match self {
            Exit::Done => 0,
            Exit::Usage => 1,
            Exit::Attention => 2,
            Exit::TempFail => 75,
            Exit::Interrupted => 130,
        }
    }

    /// Of two outcomes of one run, the one to report: an interruption, then what a person
    /// must act on, then what a retry fixes. (Usage errors stop a run before it has others.)
    pub(crate) fn worst(self, other: Exit) -> Exit {
        let rank = |e: Exit| match e {
            Exit::Done => 0,
            Exit::TempFail => 1,
            Exit::Usage => 2,
            Exit::Attention => 3,
            Exit::Interrupted => 4,
        };
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }

    /// For a failure of `class` (the one classification core gives every error).
    pub(crate) fn of_class(class: ErrorClass) -> Exit {
        match class {
            ErrorClass::Retryable => Exit::TempFail,
            ErrorClass::Input => Exit::Usage,
            ErrorClass::Permanent => Exit::Attention,
        }
    }

    /// For any classified failure.
    pub(crate) fn of(e: &impl Classify) -> Exit {
        Exit::of_class(e.class())
    }

    /// For an error that ended a command.
    pub(crate) fn of_error(e: &CliError) -> Exit {
        match e {
            CliError::Usage(_)
            | CliError::Trust(_)
            | CliError::TargetsFile(_)
            | CliError::File { .. } => Exit::Usage,
            CliError::Store(e) => Exit::of(e),
            CliError::Secret(e) => Exit::of(e),
            CliError::Renew(e) => Exit::of(e),
            CliError::Deploy(e) => Exit::of(e),
            CliError::Notify(certpilot_core::ports::NotifyError::Unavailable(_)) => Exit::TempFail,
            CliError::Notify(_) | CliError::Output(_) => Exit::Attention,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_help_table_lists_every_status_the_code_returns() {
        for e in [
            Exit::Done,
            Exit::Usage,
            Exit::Attention,
            Exit::TempFail,
            Exit::Interrupted,
        ] {
            let line = format!("\n  {:<4} ", e.code());
            assert!(EXIT_CODES.contains(&line), "{e:?} missing from the table");
        }
    }

    #[test]
    fn what_a_person_must_act_on_wins_over_what_a_retry_fixes() {
        assert_eq!(Exit::Done.worst(Exit::TempFail), Exit::TempFail);
        assert_eq!(Exit::TempFail.worst(Exit::Attention), Exit::Attention);
        assert_eq!(Exit::Attention.worst(Exit::TempFail), Exit::Attention);
        assert_eq!(Exit::Attention.worst(Exit::Interrupted), Exit::Interrupted);
    }
}
