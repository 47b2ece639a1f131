//! What a running task reports, how it ends, and how a caller steers it.

use std::time::Duration;

use serde_json::value::RawValue;
use tokio::sync::watch;

use super::limits::LimitExceeded;

/// Severity of a guest log line, as the guest gave it (the level a LOG report carries).
pub use rekuest_definition::LogLevel;

/// Something a running task reports before it ends.
#[derive(Debug)]
pub enum TaskEvent {
    /// A log line (from the log import or the guest's stdout/stderr).
    Log {
        /// How severe the line is.
        level: LogLevel,
        /// The line, bounded in size.
        message: String,
    },
    /// A progress update.
    Progress {
        /// Percent done, 0..=100 (larger values are clamped).
        percent: u8,
        /// Text shown with the percentage, cut to the output caps.
        message: Option<String>,
    },
    /// One set of returns, a JSON object keyed `return0`, `return1`, ... (checked to be an
    /// object, kept as the guest's text so it is never re-encoded).
    Yield(Box<RawValue>),
}

/// Why a task failed in a way the caller is told about (FAILED on the wire).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Failure {
    /// The action itself reported an error (a `Result::Err`).
    #[error("{0}")]
    Action(String),
    /// The args do not fit the action (or the action does not exist).
    #[error("{0}")]
    InvalidArgs(String),
    /// A resource limit was hit.
    #[error("{0}")]
    Limit(#[from] LimitExceeded),
    /// An output of the action was refused: JSON the server or a client cannot parse.
    #[error("{0}")]
    RefusedOutput(String),
}

/// How a task ended: exactly one per task.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Ran to the end; its returns were yielded.
    Completed,
    /// Ended with an error meant for the caller.
    Failed(Failure),
    /// Ended by a bug: a trap, a panic, a broken contract. The text is safe to show a caller.
    Critical(String),
    /// Stopped by a CANCEL.
    Cancelled,
    /// Stopped by an INTERRUPT.
    Interrupted,
}

impl Outcome {
    /// The error text of FAILED / CRITICAL.
    pub fn error(&self) -> Option<String> {
        match self {
            Outcome::Failed(failure) => Some(failure.to_string()),
            Outcome::Critical(message) => Some(message.clone()),
            _ => None,
        }
    }
}

/// What a caller asked a running task to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Keep running (the normal state, and after RESUME).
    Run,
    /// Park at the next epoch tick until resumed.
    Pause,
    /// Stop cooperatively, reporting CANCELLED: the guest sees `is_cancelled()` and may end
    /// cleanly within its grace period, then it is stopped.
    Cancel,
    /// Stop now, reporting INTERRUPTED.
    Interrupt,
}

/// Steers one running task; cheap to clone. Pause and interrupt act preemptively: a spinning
/// guest parks or stops within one epoch tick, a guest blocked in a host call stops at once.
/// A cancel is cooperative first: the guest runs on for its grace period
/// ([`Limits::cancel_grace`](super::Limits::cancel_grace)) and is stopped as by an interrupt
/// if it has not ended by then.
#[derive(Debug, Clone)]
pub struct TaskControl {
    sender: watch::Sender<Signal>,
}

impl Default for TaskControl {
    fn default() -> Self {
        TaskControl {
            sender: watch::Sender::new(Signal::Run),
        }
    }
}

impl TaskControl {
    /// A control in the `Run` state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the task to stop, reporting CANCELLED: cooperatively within its grace period.
    pub fn cancel(&self) {
        self.stop(Signal::Cancel);
    }

    /// Asks the task to stop now, reporting INTERRUPTED (also during a cancel's grace period).
    pub fn interrupt(&self) {
        self.stop(Signal::Interrupt);
    }

    /// Parks the task (unless it is already stopping).
    pub fn pause(&self) {
        self.sender.send_if_modified(|signal| {
            let changed = *signal == Signal::Run;
            if changed {
                *signal = Signal::Pause;
            }
            changed
        });
    }

    /// Continues a parked task.
    pub fn resume(&self) {
        self.sender.send_if_modified(|signal| {
            let changed = *signal == Signal::Pause;
            if changed {
                *signal = Signal::Run;
            }
            changed
        });
    }

    /// The current signal.
    pub fn signal(&self) -> Signal {
        *self.sender.borrow()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Signal> {
        self.sender.subscribe()
    }

    fn stop(&self, stop: Signal) {
        self.sender.send_if_modified(|signal| {
            // A cancel may still be sharpened into an interrupt; nothing else changes a stop.
            let changed = match *signal {
                Signal::Interrupt => false,
                Signal::Cancel => stop == Signal::Interrupt,
                Signal::Run | Signal::Pause => true,
            };
            if changed {
                *signal = stop;
            }
            changed
        });
    }
}

/// Waits until `signal` leaves `Pause`; returns how long it waited.
pub(crate) async fn wait_while_paused(signal: &mut watch::Receiver<Signal>) -> Duration {
    let started = tokio::time::Instant::now();
    // A closed channel means the controller is gone: nobody can resume, so stop waiting.
    let _ = signal.wait_for(|signal| *signal != Signal::Pause).await;
    started.elapsed()
}
