//! The exit codes of `call`, `assign` and `dev --assign`: one table for every way of running a
//! task from the command line.

use std::process::ExitCode;

use rekuest_host::runtime::{Failure, LimitExceeded, Outcome};

/// How a task run from the command line ended, as its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: COMPLETED.
    Completed = 0,
    /// 1: FAILED: the action returned an error (or its output was refused).
    Failed = 1,
    /// 2: bad or missing arguments, an unknown action, a bad flag (clap's usage errors too).
    Usage = 2,
    /// 3: a limit was hit (fuel, memory, time, output, ...).
    Limit = 3,
    /// 4: CRITICAL: the action crashed or broke its contract, or the agent went away.
    Crashed = 4,
    /// 130: cancelled with Ctrl-C.
    Cancelled = 130,
}

/// The table, as `--help` shows it after `call`, `assign` and `dev`.
pub const EXIT_CODES: &str = "Exit codes (call, assign, dev --assign): 0 completed, 1 the action \
    failed, 2 bad or missing arguments or flags, 3 a limit was hit, 4 the action crashed, \
    130 cancelled with Ctrl-C.";

impl Exit {
    /// The exit code of a task that ended with `outcome` in this process.
    pub fn of(outcome: &Outcome) -> Exit {
        match outcome {
            Outcome::Completed => Exit::Completed,
            Outcome::Failed(Failure::Action(_) | Failure::RefusedOutput(_)) => Exit::Failed,
            Outcome::Failed(Failure::InvalidArgs(_)) => Exit::Usage,
            Outcome::Failed(Failure::Limit(_)) => Exit::Limit,
            Outcome::Critical(_) => Exit::Crashed,
            Outcome::Cancelled | Outcome::Interrupted => Exit::Cancelled,
        }
    }

    /// The exit code of a task a server reported FAILED with `error`: a limit when the text is
    /// one of this host's limit reports, else an action error.
    pub fn of_failed(error: &str) -> Exit {
        if LimitExceeded::is_report(error) {
            Exit::Limit
        } else {
            Exit::Failed
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
    }
}

/// An error in what the user typed (exits with [`Exit::Usage`]); its text says what to fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);
