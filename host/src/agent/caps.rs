//! The bounds a serving agent holds itself to, in one place: what may wait for a slot, what
//! its outbox queues and retains, what it remembers of finished tasks, the frames it reads,
//! the states and calls its tasks send, and how long it waits on a server.

use std::time::Duration;

use crate::runtime::OutputCaps;

/// The caps of one agent, carried in [`AgentConfig::caps`](super::AgentConfig::caps) (tests
/// shrink them there). Every agent runs with [`AgentCaps::DEFAULT`] unless told otherwise.
///
/// What a single task may send back is [`OutputCaps`], part of each task's
/// [`Limits`](crate::runtime::Limits); the shelves' bounds are configurable and live in
/// [`KeepConfig`](super::KeepConfig).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentCaps {
    /// Tasks that may wait for a slot beyond the concurrency; more are answered FAILED
    /// ("agent overloaded") at once.
    pub queued_tasks: usize,
    /// Bytes of ASSIGN frames that may wait for a slot; a task that would pass it is answered
    /// FAILED ("agent overloaded") unless nothing is waiting (frames are at most
    /// [`frame_bytes`](Self::frame_bytes) each, so the task cap alone would let the queue hold
    /// gigabytes).
    pub queued_bytes: usize,
    /// Finished tasks remembered (their summaries) to answer inquiries and duplicate
    /// assignments; the oldest are forgotten beyond it.
    pub finished_tasks: usize,
    /// Longest error text remembered per finished task (characters; the summary resent on
    /// inquiries), cut with a marker.
    pub finished_error_chars: usize,
    /// Reports waiting in the outbox to be written before a task's next output waits.
    pub outbox_reports: usize,
    /// Bytes of reports waiting in the outbox before a task's next output waits.
    pub outbox_bytes: usize,
    /// Bytes of written but unconfirmed yields kept for resending after a reconnect; the
    /// oldest are forgotten beyond it (and their tasks end CRITICAL if that connection breaks).
    pub retained_yield_bytes: usize,
    /// Connections a report may be written on, each breaking before it was confirmed, before
    /// it is given up.
    pub report_attempts: u8,
    /// LOG frames per second for all tasks together (and the burst allowed); the lines over
    /// it are dropped and counted in a marker.
    pub log_frames_per_second: u32,
    /// Largest frame accepted from the server (bytes); a larger one ends the session and the
    /// agent reconnects.
    pub frame_bytes: usize,
    /// A write the server does not take within this long ends the session: it stopped
    /// reading.
    pub write_stall: Duration,
    /// Largest agent state a task may set (its JSON text, bytes).
    pub state_bytes: usize,
    /// Largest args text of one call from a task to another action (bytes; the same bound as
    /// one yield).
    pub call_args_bytes: usize,
    /// At shutdown, how long cancelled tasks get to report before shutdown moves on.
    pub stop_wait: Duration,
    /// At shutdown, how long the agent waits for its reports to be written and acknowledged.
    pub flush_wait: Duration,
}

impl AgentCaps {
    /// The caps of every agent: 1024 tasks and 128 MiB of ASSIGN frames waiting, 10,000
    /// finished tasks remembered with 1,000 characters of error, 10,000 reports and 16 MiB
    /// queued, 16 MiB of yields retained, 3 attempts per report, 20 LOG frames per second,
    /// 16 MiB frames, a 10 s write stall, 1 MiB states, call args as large as a yield
    /// (512 KiB), 5 s for cancelled tasks and 10 s for acknowledgements at shutdown.
    pub const DEFAULT: AgentCaps = AgentCaps {
        queued_tasks: 1024,
        queued_bytes: 128 * 1024 * 1024,
        finished_tasks: 10_000,
        finished_error_chars: 1_000,
        outbox_reports: 10_000,
        outbox_bytes: 16 * 1024 * 1024,
        retained_yield_bytes: 16 * 1024 * 1024,
        report_attempts: 3,
        log_frames_per_second: 20,
        frame_bytes: 16 * 1024 * 1024,
        write_stall: Duration::from_secs(10),
        state_bytes: 1024 * 1024,
        call_args_bytes: OutputCaps::DEFAULT.yield_bytes,
        stop_wait: Duration::from_secs(5),
        flush_wait: Duration::from_secs(10),
    };
}

impl Default for AgentCaps {
    /// [`AgentCaps::DEFAULT`].
    fn default() -> Self {
        AgentCaps::DEFAULT
    }
}
