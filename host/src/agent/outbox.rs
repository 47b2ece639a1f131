//! Reports waiting to be sent, and sent reports kept until the server confirms them.
//!
//! Delivery, as the real server (rekuest-server-next 2.2.0) makes possible: it handles one
//! connection's frames in order and answers STARTED, PAUSED, RESUMED and every terminal
//! report with EVENT_ACK once stored, so an acknowledgement confirms every frame written
//! before it on that connection. YIELD and terminal reports are kept from the moment they
//! are written until such a confirmation; after a reconnect the unconfirmed ones are sent
//! again, in order, before anything else. The server does not deduplicate YIELD (the local
//! server does, by report id), so a yield in flight when a connection broke may be stored
//! twice there, never lost silently: unconfirmed yields beyond
//! [`AgentCaps::retained_yield_bytes`] are forgotten, and if the connection then breaks before a confirmation, the task's COMPLETED
//! becomes a CRITICAL that says results were lost.
//!
//! A report written on [`AgentCaps::report_attempts`] connections that each broke before confirming it is
//! not sent again: a terminal report is replaced by a small CRITICAL naming the cause (and
//! that one dropped after as many failures), a yield is dropped and its task ends CRITICAL.
//!
//! Task output is bounded: while [`AgentCaps::outbox_reports`] reports or
//! [`AgentCaps::outbox_bytes`] wait, a task's next output waits too ([`Outbox::push_output`]), which makes the guest wait in its
//! output call. LOG lines of one task and level are joined into one frame (up to
//! [`MAX_MESSAGE_CHARS`]), sent at most every [`LOG_FLUSH_INTERVAL`] per task and at most
//! [`AgentCaps::log_frames_per_second`] agent-wide; lines beyond that are dropped with a marker.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::caps::AgentCaps;
use crate::protocol::{LogLevel, Report, ReportKind, ReportType};

/// Longest text of a LOG, PROGRESS, FAILED or CRITICAL message on the wire (the server
/// stores them in a column of this many characters); longer text is cut with a marker.
pub const MAX_MESSAGE_CHARS: usize = 30_000;
/// How long a task's log lines are gathered into one LOG frame.
pub const LOG_FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// Room kept for the dropped-lines marker in a gathered LOG frame.
const LOG_MARKER_ROOM: usize = 100;
/// The fixed part of a report frame (type, task, id, seq), for byte accounting.
const FRAME_OVERHEAD: usize = 128;

/// A report on its way out, with how many broken connections it was written on before.
pub(crate) struct Queued {
    /// The report; the writer stamps its `seq`.
    pub(crate) report: Report,
    attempts: u8,
}

/// A written report awaiting confirmation.
struct Sent {
    report: Report,
    attempts: u8,
}

/// Log lines of one task gathered into one frame.
struct PendingLog {
    task: String,
    level: LogLevel,
    text: String,
    since: Instant,
    dropped: u64,
}

/// An agent-wide token bucket over LOG frames, `per_second` sustained and in a burst.
struct LogRate {
    tokens: f64,
    refilled: Instant,
    per_second: f64,
}

impl LogRate {
    fn new(per_second: u32) -> Self {
        LogRate {
            tokens: f64::from(per_second),
            refilled: Instant::now(),
            per_second: f64::from(per_second),
        }
    }

    fn refill(&mut self, now: Instant) {
        let rate = self.per_second;
        let earned = now.duration_since(self.refilled).as_secs_f64() * rate;
        self.tokens = (self.tokens + earned).min(rate);
        self.refilled = now;
    }

    /// When the next token is there.
    fn available_at(&self) -> Instant {
        let missing = (1.0 - self.tokens).max(0.0);
        self.refilled + Duration::from_secs_f64(missing / self.per_second)
    }

    /// Takes a token; `force` may go into debt (at most one second's worth).
    fn take(&mut self, force: bool) -> bool {
        if self.tokens >= 1.0 || force {
            self.tokens = (self.tokens - 1.0).max(-self.per_second);
            true
        } else {
            false
        }
    }
}

struct State {
    /// What may be queued and retained.
    caps: AgentCaps,
    queue: VecDeque<Queued>,
    queued_bytes: usize,
    in_flight: VecDeque<Sent>,
    retained_bytes: usize,
    /// Tasks whose unconfirmed yields were forgotten (over the retention bound), and the
    /// seq up to which a confirmation clears them.
    at_risk: HashSet<String>,
    at_risk_until: u64,
    /// Tasks whose results were lost, with why; their COMPLETED becomes CRITICAL.
    lost: HashMap<String, String>,
    logs: Vec<PendingLog>,
    log_rate: LogRate,
}

impl State {
    fn new(caps: &AgentCaps) -> Self {
        State {
            caps: *caps,
            queue: VecDeque::new(),
            queued_bytes: 0,
            in_flight: VecDeque::new(),
            retained_bytes: 0,
            at_risk: HashSet::new(),
            at_risk_until: 0,
            lost: HashMap::new(),
            logs: Vec::new(),
            log_rate: LogRate::new(caps.log_frames_per_second),
        }
    }
}

/// The agent's outgoing reports; shared by the dispatcher (writes) and the connection (reads).
pub struct Outbox {
    state: Mutex<State>,
    ready: Notify,
    space: Notify,
}

impl Default for Outbox {
    /// An outbox held to [`AgentCaps::DEFAULT`].
    fn default() -> Self {
        Outbox::new(&AgentCaps::DEFAULT)
    }
}

/// About how many bytes `report` takes on the wire.
fn size_of(report: &Report) -> usize {
    FRAME_OVERHEAD
        + match &report.kind {
            ReportKind::Yield { returns } => returns.get().len(),
            ReportKind::Log { message, .. } => message.len(),
            ReportKind::Progress { message, .. } => message.as_ref().map_or(0, String::len),
            ReportKind::Failed { error } | ReportKind::Critical { error } => error.len(),
            _ => 0,
        }
}

/// Whether `report` is kept until confirmed and sent again after a reconnect: its returns
/// and its end must not be lost.
fn is_retained(report: &Report) -> bool {
    let kind = report.kind.report_type();
    kind == ReportType::Yield || kind.is_terminal()
}

/// Cuts `text` to at most `limit` characters, marking the cut.
pub fn cap_text(text: &mut String, limit: usize) {
    // Bytes bound characters: most texts need no counting at all.
    if text.len() <= limit {
        return;
    }
    let chars = text.chars().count();
    if chars <= limit {
        return;
    }
    let marker = format!("… [{} characters cut]", chars - limit);
    let keep = limit.saturating_sub(marker.chars().count());
    let end = text
        .char_indices()
        .nth(keep)
        .map_or(text.len(), |(at, _)| at);
    text.truncate(end);
    text.push_str(&marker);
}

/// Caps the free text of `kind` to what the server stores.
fn cap_message(kind: &mut ReportKind) {
    match kind {
        ReportKind::Log { message, .. } => cap_text(message, MAX_MESSAGE_CHARS),
        ReportKind::Progress {
            message: Some(message),
            ..
        } => cap_text(message, MAX_MESSAGE_CHARS),
        ReportKind::Failed { error } | ReportKind::Critical { error } => {
            cap_text(error, MAX_MESSAGE_CHARS);
        }
        _ => {}
    }
}

impl State {
    fn enqueue(&mut self, report: Report, attempts: u8) {
        self.queued_bytes += size_of(&report);
        self.queue.push_back(Queued { report, attempts });
    }

    fn has_space(&self) -> bool {
        self.queue.len() < self.caps.outbox_reports && self.queued_bytes < self.caps.outbox_bytes
    }

    /// A terminal report of a task whose results were lost says so.
    fn mark_if_lost(&mut self, report: &mut Report) {
        if !self.lost.is_empty()
            && report.kind.is_terminal()
            && let Some(reason) = self.lost.remove(&report.task)
            && report.kind == ReportKind::Completed
        {
            report.kind = ReportKind::Critical { error: reason };
        }
    }

    /// Moves the gathered log lines of `index` into the queue.
    fn release_log(&mut self, index: usize) {
        let pending = self.logs.swap_remove(index);
        let mut message = pending.text;
        if pending.dropped > 0 {
            message.push_str(&format!(
                "\n[{} log lines dropped: the server takes at most {} log frames per second]",
                pending.dropped, self.caps.log_frames_per_second
            ));
        }
        let report = Report::new(
            pending.task,
            ReportKind::Log {
                message,
                level: pending.level,
            },
        );
        self.enqueue(report, 0);
    }

    /// Before another report of `task`: its gathered log lines go first, if there is room.
    fn release_log_of(&mut self, task: &str) {
        if self.logs.is_empty() {
            return;
        }
        if let Some(index) = self.logs.iter().position(|log| log.task == task) {
            if self.has_space() {
                self.log_rate.take(true);
                self.release_log(index);
            } else {
                let dropped = self.logs.swap_remove(index);
                tracing::warn!(
                    task = %dropped.task,
                    "{} log line(s) dropped: the server is not reading and the outbox is full",
                    dropped.text.lines().count() as u64 + dropped.dropped
                );
            }
        }
    }

    /// Gathers a log line into its task's pending frame.
    fn gather_log(&mut self, task: String, level: LogLevel, mut line: String, now: Instant) {
        cap_text(&mut line, MAX_MESSAGE_CHARS - LOG_MARKER_ROOM);
        let room = MAX_MESSAGE_CHARS - LOG_MARKER_ROOM;
        if let Some(index) = self.logs.iter().position(|log| log.task == task) {
            let pending = &mut self.logs[index];
            let same_level = pending.level == level;
            if same_level && pending.text.len() + 1 + line.len() <= room {
                pending.text.push('\n');
                pending.text.push_str(&line);
                return;
            }
            // Another level, or full: the gathered lines go now if the rate allows.
            self.log_rate.refill(now);
            if self.has_space() && self.log_rate.take(!same_level) {
                self.release_log(index);
            } else {
                self.logs[index].dropped += 1;
                return;
            }
        }
        self.logs.push(PendingLog {
            task,
            level,
            text: line,
            since: now,
            dropped: 0,
        });
    }

    /// Releases the gathered log frames that are due, as the rate allows.
    fn release_due_logs(&mut self, now: Instant) {
        if self.logs.is_empty() {
            return;
        }
        self.log_rate.refill(now);
        while let Some(index) = self
            .logs
            .iter()
            .enumerate()
            .filter(|(_, log)| log.since + LOG_FLUSH_INTERVAL <= now)
            .min_by_key(|(_, log)| log.since)
            .map(|(index, _)| index)
        {
            if !self.has_space() || !self.log_rate.take(false) {
                return;
            }
            self.release_log(index);
        }
    }

    /// Forgets the oldest unconfirmed yields while more than the bound is retained.
    fn evict_over_bound(&mut self) {
        while self.retained_bytes > self.caps.retained_yield_bytes {
            let Some(index) = self
                .in_flight
                .iter()
                .position(|sent| matches!(sent.report.kind, ReportKind::Yield { .. }))
            else {
                return;
            };
            if let Some(sent) = self.in_flight.remove(index) {
                self.retained_bytes -= size_of(&sent.report);
                self.at_risk_until = self.at_risk_until.max(sent.report.seq.unwrap_or(0));
                self.at_risk.insert(sent.report.task);
            }
        }
    }

    fn lose(&mut self, task: &str, reason: String) {
        tracing::error!(%task, "{reason}");
        // The terminal report may already wait in the queue.
        if let Some(queued) = self
            .queue
            .iter_mut()
            .find(|queued| queued.report.task == task && queued.report.kind.is_terminal())
        {
            if queued.report.kind == ReportKind::Completed {
                queued.report.kind = ReportKind::Critical { error: reason };
            }
            return;
        }
        self.lost.insert(task.to_string(), reason);
    }
}

impl Outbox {
    /// An empty outbox held to `caps`.
    pub fn new(caps: &AgentCaps) -> Self {
        Outbox {
            state: Mutex::new(State::new(caps)),
            ready: Notify::new(),
            space: Notify::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `report` for sending now, whatever waits already (terminal reports and
    /// confirmations, whose number the tasks bound).
    pub fn push(&self, mut report: Report) {
        cap_message(&mut report.kind);
        {
            let mut state = self.state();
            state.release_log_of(&report.task);
            state.mark_if_lost(&mut report);
            state.enqueue(report, 0);
        }
        self.ready.notify_one();
    }

    /// Queues a task's output (LOG, PROGRESS, YIELD); waits while the outbox is full.
    /// LOG lines are gathered per task and level and go out within [`LOG_FLUSH_INTERVAL`].
    pub async fn push_output(&self, mut report: Report) {
        cap_message(&mut report.kind);
        if let ReportKind::Log { message, level } = report.kind {
            self.state()
                .gather_log(report.task, level, message, Instant::now());
            self.ready.notify_one();
            return;
        }
        loop {
            let space = self.space.notified();
            {
                let mut state = self.state();
                if state.has_space() {
                    state.release_log_of(&report.task);
                    state.enqueue(report, 0);
                    break;
                }
            }
            space.await;
        }
        self.ready.notify_one();
    }

    /// Up to `max` reports, and at most about `max_bytes` (always at least one), to send now.
    pub(crate) fn take_batch(&self, max: usize, max_bytes: usize) -> Vec<Queued> {
        let batch = {
            let mut state = self.state();
            state.release_due_logs(Instant::now());
            let mut batch = Vec::new();
            let mut bytes = 0;
            while batch.len() < max {
                let Some(front) = state.queue.front() else {
                    break;
                };
                let size = size_of(&front.report);
                if !batch.is_empty() && bytes + size > max_bytes {
                    break;
                }
                let Some(queued) = state.queue.pop_front() else {
                    break;
                };
                bytes += size;
                state.queued_bytes -= size;
                batch.push(queued);
            }
            batch
        };
        self.space.notify_waiters();
        batch
    }

    /// Puts reports that were not written back at the front, in order.
    pub(crate) fn requeue_front(&self, reports: impl DoubleEndedIterator<Item = Queued>) {
        let mut state = self.state();
        for mut queued in reports.rev() {
            queued.report.seq = None;
            state.queued_bytes += size_of(&queued.report);
            state.queue.push_front(queued);
        }
    }

    /// `sent` was written (with its seq): YIELD and terminal reports are kept until
    /// confirmed, acknowledged ones are remembered as confirmation marks.
    pub(crate) fn written(&self, sent: Queued) {
        if !sent.report.kind.report_type().is_acked() && !is_retained(&sent.report) {
            return;
        }
        let mut state = self.state();
        if is_retained(&sent.report) {
            state.retained_bytes += size_of(&sent.report);
        }
        state.in_flight.push_back(Sent {
            report: sent.report,
            attempts: sent.attempts,
        });
        state.evict_over_bound();
    }

    /// EVENT_ACK for report `id`: it and everything written before it on this connection
    /// are confirmed. True if `id` was awaiting confirmation.
    pub(crate) fn ack(&self, id: &str) -> bool {
        let mut state = self.state();
        let Some(index) = state
            .in_flight
            .iter()
            .position(|sent| sent.report.seq.is_some() && sent.report.id == id)
        else {
            return false;
        };
        let seq = state.in_flight[index].report.seq.unwrap_or(0);
        let confirmed: Vec<Sent> = state.in_flight.drain(..=index).collect();
        for sent in confirmed {
            if is_retained(&sent.report) {
                state.retained_bytes -= size_of(&sent.report);
            }
        }
        if seq >= state.at_risk_until {
            state.at_risk.clear();
        }
        true
    }

    /// After a reconnect: every unconfirmed YIELD and terminal report goes out again, in
    /// order and before anything else; reports that broke [`AgentCaps::report_attempts`] connections are
    /// replaced or dropped, and tasks with forgotten yields lose their COMPLETED. Returns how
    /// many reports are resent.
    pub(crate) fn resend_unacked(&self) -> usize {
        let count = {
            let mut state = self.state();
            let max_attempts = state.caps.report_attempts;
            let in_flight = std::mem::take(&mut state.in_flight);
            state.retained_bytes = 0;
            for task in std::mem::take(&mut state.at_risk) {
                state.lose(
                    &task,
                    "results of this task were lost: the connection to the server broke while \
                     more yields were unconfirmed than rekuest-host keeps for resending"
                        .into(),
                );
            }
            let mut resend = Vec::new();
            for sent in in_flight {
                if !is_retained(&sent.report) {
                    continue;
                }
                let attempts = sent.attempts + 1;
                let mut report = sent.report;
                report.seq = None;
                // A replacement (past `max_attempts`) gets as many tries of its own.
                if attempts != max_attempts && attempts < 2 * max_attempts {
                    resend.push(Queued { report, attempts });
                    continue;
                }
                let wire_type = report.kind.report_type();
                let cause = format!(
                    "the server closed the connection right after its {wire_type} report \
                     {max_attempts} times"
                );
                match report.kind {
                    ReportKind::Yield { .. } => {
                        let task = report.task.clone();
                        state.lose(&task, format!("results of this task were lost: {cause}"));
                    }
                    _ if attempts >= 2 * max_attempts => {
                        tracing::error!(
                            task = %report.task,
                            "giving up on the {wire_type} report: {cause}"
                        );
                    }
                    _ => {
                        tracing::error!(task = %report.task, "replacing the {wire_type} report: {cause}");
                        resend.push(Queued {
                            report: Report::new(
                                report.task,
                                ReportKind::Critical {
                                    error: format!(
                                        "rekuest-host could not deliver this task's result: \
                                         {cause}"
                                    ),
                                },
                            ),
                            attempts,
                        });
                    }
                }
            }
            // Lost tasks whose terminal report is among those resent.
            for queued in &mut resend {
                state.mark_if_lost(&mut queued.report);
            }
            let count = resend.len();
            for queued in resend.into_iter().rev() {
                state.queued_bytes += size_of(&queued.report);
                state.queue.push_front(queued);
            }
            count
        };
        if count > 0 {
            self.ready.notify_one();
        }
        count
    }

    /// Whether a terminal report of `task` is queued or awaiting confirmation.
    pub fn retains_terminal(&self, task: &str) -> bool {
        let state = self.state();
        state
            .in_flight
            .iter()
            .map(|sent| &sent.report)
            .chain(state.queue.iter().map(|queued| &queued.report))
            .any(|report| report.task == task && report.kind.is_terminal())
    }

    /// Nothing queued or gathered, and every written report confirmed.
    pub fn is_settled(&self) -> bool {
        let state = self.state();
        state.queue.is_empty()
            && state.logs.is_empty()
            && !state.in_flight.iter().any(|sent| is_retained(&sent.report))
    }

    /// Whether no frame is queued for sending (retained, unacked reports do not count).
    pub(crate) fn is_empty(&self) -> bool {
        self.state().queue.is_empty()
    }

    /// When gathered log lines are next due to go out, if any wait.
    pub(crate) fn logs_due(&self) -> Option<Instant> {
        let state = self.state();
        let oldest = state.logs.iter().map(|log| log.since).min()?;
        Some((oldest + LOG_FLUSH_INTERVAL).max(state.log_rate.available_at()))
    }

    /// How many written YIELD and terminal reports await confirmation.
    pub fn unacked(&self) -> usize {
        self.state()
            .in_flight
            .iter()
            .filter(|sent| is_retained(&sent.report))
            .count()
    }

    /// Resolves when something was queued since the last call.
    pub(crate) async fn ready(&self) {
        self.ready.notified().await;
    }

    /// Wakes the writer (more to send, or a state it should look at).
    pub(crate) fn wake(&self) {
        self.ready.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;
    use serde_json::value::RawValue;

    use super::*;

    const CAPS: AgentCaps = AgentCaps::DEFAULT;

    fn report(task: &str, kind: ReportKind) -> Report {
        Report::new(task, kind)
    }

    fn yielding(task: &str, value: &str) -> Report {
        let returns = RawValue::from_string(format!("{{\"return0\": \"{value}\"}}")).expect("json");
        report(task, ReportKind::Yield { returns })
    }

    fn log(task: &str, line: &str) -> Report {
        report(
            task,
            ReportKind::Log {
                message: line.into(),
                level: LogLevel::Info,
            },
        )
    }

    /// Writes everything queued, as the connection does: stamps a seq, then `written`.
    fn write_all(outbox: &Outbox, seq: &mut u64) -> Vec<Report> {
        let mut written = Vec::new();
        for mut queued in outbox.take_batch(usize::MAX, usize::MAX) {
            *seq += 1;
            queued.report.seq = Some(*seq);
            written.push(queued.report.clone());
            outbox.written(queued);
        }
        written
    }

    fn push_now(outbox: &Outbox, report: Report) {
        outbox
            .push_output(report)
            .now_or_never()
            .expect("room in the outbox");
    }

    #[test]
    fn yields_and_terminal_reports_are_resent_in_order_until_confirmed() {
        let outbox = Outbox::default();
        let mut seq = 0;
        outbox.push(report("1", ReportKind::Started));
        push_now(&outbox, yielding("1", "a"));
        push_now(&outbox, yielding("1", "b"));
        outbox.push(report("1", ReportKind::Completed));
        let first = write_all(&outbox, &mut seq);
        assert_eq!(first.len(), 4);
        assert!(outbox.retains_terminal("1"));
        assert!(!outbox.is_settled());
        // The connection broke before any EVENT_ACK: the yields and the COMPLETED go again,
        // same ids, same order; STARTED (a confirmation only) does not.
        assert_eq!(outbox.resend_unacked(), 3);
        let again = write_all(&outbox, &mut seq);
        let ids: Vec<&str> = again.iter().map(|sent| sent.id.as_str()).collect();
        let expected: Vec<&str> = first[1..].iter().map(|sent| sent.id.as_str()).collect();
        assert_eq!(ids, expected);
        assert!(outbox.ack(&again[2].id));
        assert!(!outbox.ack(&again[2].id));
        assert!(outbox.is_settled());
        assert!(!outbox.retains_terminal("1"));
        assert_eq!(outbox.resend_unacked(), 0);
    }

    #[test]
    fn an_acknowledgement_confirms_everything_written_before_it() {
        let outbox = Outbox::default();
        let mut seq = 0;
        push_now(&outbox, yielding("1", "a"));
        outbox.push(report("2", ReportKind::Started));
        push_now(&outbox, yielding("1", "b"));
        let written = write_all(&outbox, &mut seq);
        // STARTED of another task is acknowledged: the yield before it is stored.
        assert!(outbox.ack(&written[1].id));
        assert_eq!(outbox.unacked(), 1);
        assert_eq!(outbox.resend_unacked(), 1);
        let again = write_all(&outbox, &mut seq);
        assert_eq!(again[0].id, written[2].id);
    }

    #[test]
    fn a_terminal_report_that_keeps_breaking_the_connection_becomes_a_small_critical() {
        let outbox = Outbox::default();
        let mut seq = 0;
        outbox.push(report(
            "1",
            ReportKind::Failed {
                error: "e".repeat(1024 * 1024),
            },
        ));
        for _ in 0..CAPS.report_attempts - 1 {
            let sent = write_all(&outbox, &mut seq);
            assert!(matches!(sent[0].kind, ReportKind::Failed { .. }));
            outbox.resend_unacked();
        }
        let sent = write_all(&outbox, &mut seq);
        let ReportKind::Failed { error } = &sent[0].kind else {
            panic!("{:?}", sent[0].kind);
        };
        // Cut to what the server stores, with a marker.
        assert_eq!(error.chars().count(), MAX_MESSAGE_CHARS);
        assert!(
            error.ends_with("characters cut]"),
            "{}",
            &error[error.len() - 40..]
        );
        outbox.resend_unacked();
        let replaced = write_all(&outbox, &mut seq);
        assert_eq!(replaced.len(), 1);
        let ReportKind::Critical { error } = &replaced[0].kind else {
            panic!("{:?}", replaced[0].kind);
        };
        assert!(
            error.contains("closed the connection right after its FAILED report 3 times"),
            "{error}"
        );
        assert!(error.len() < 300);
        // The replacement gets as many tries, then the task is given up (logged).
        for _ in 0..CAPS.report_attempts - 1 {
            outbox.resend_unacked();
            assert_eq!(write_all(&outbox, &mut seq).len(), 1);
        }
        outbox.resend_unacked();
        assert!(write_all(&outbox, &mut seq).is_empty());
        assert!(outbox.is_settled());
    }

    #[test]
    fn a_yield_that_keeps_breaking_the_connection_ends_its_task_critical() {
        let outbox = Outbox::default();
        let mut seq = 0;
        push_now(&outbox, yielding("1", "poison"));
        for _ in 0..CAPS.report_attempts {
            write_all(&outbox, &mut seq);
            outbox.resend_unacked();
        }
        assert!(outbox.is_empty(), "the yield is given up");
        outbox.push(report("1", ReportKind::Completed));
        let sent = write_all(&outbox, &mut seq);
        let ReportKind::Critical { error } = &sent[0].kind else {
            panic!("{:?}", sent[0].kind);
        };
        assert!(error.contains("results of this task were lost"), "{error}");
    }

    #[test]
    fn forgotten_unconfirmed_yields_turn_completed_into_critical_after_a_break() {
        let big = "x".repeat(1024 * 1024);
        let count = CAPS.retained_yield_bytes / big.len() + 4;
        let outbox = Outbox::default();
        let mut seq = 0;
        for _ in 0..count {
            push_now(&outbox, yielding("1", &big));
            write_all(&outbox, &mut seq);
        }
        outbox.push(report("1", ReportKind::Completed));
        outbox.push(report("2", ReportKind::Completed));
        write_all(&outbox, &mut seq);
        // Connection lost: the kept yields are resent, but some were forgotten.
        let resent = outbox.resend_unacked();
        assert!(resent < count + 2, "{resent}");
        let again = write_all(&outbox, &mut seq);
        let ends: Vec<&ReportKind> = again
            .iter()
            .filter(|sent| sent.kind.is_terminal())
            .map(|sent| &sent.kind)
            .collect();
        assert!(
            matches!(ends[0], ReportKind::Critical { error } if error.contains("results of this task were lost")),
            "{:?}",
            ends[0]
        );
        assert_eq!(ends[1], &ReportKind::Completed, "the other task is whole");
    }

    #[test]
    fn a_confirmation_after_forgotten_yields_clears_the_risk() {
        let big = "x".repeat(1024 * 1024);
        let outbox = Outbox::default();
        let mut seq = 0;
        for _ in 0..CAPS.retained_yield_bytes / big.len() + 4 {
            push_now(&outbox, yielding("1", &big));
            write_all(&outbox, &mut seq);
        }
        outbox.push(report("2", ReportKind::Started));
        let marker = write_all(&outbox, &mut seq);
        assert!(outbox.ack(&marker[0].id));
        outbox.resend_unacked();
        outbox.push(report("1", ReportKind::Completed));
        let sent = write_all(&outbox, &mut seq);
        assert_eq!(sent[0].kind, ReportKind::Completed);
    }

    #[test]
    fn an_outbox_holds_to_its_own_caps() {
        let outbox = Outbox::new(&AgentCaps {
            outbox_reports: 2,
            ..CAPS
        });
        push_now(&outbox, yielding("1", "a"));
        push_now(&outbox, yielding("1", "b"));
        let waiting = outbox.push_output(yielding("1", "c"));
        tokio::pin!(waiting);
        assert!(
            (&mut waiting).now_or_never().is_none(),
            "waits at 2 reports"
        );
        assert_eq!(outbox.take_batch(1, usize::MAX).len(), 1);
        assert!(waiting.now_or_never().is_some(), "room again");
    }

    #[test]
    fn task_output_waits_while_the_outbox_is_full() {
        let outbox = Outbox::default();
        let big = "x".repeat(1024 * 1024);
        for _ in 0..CAPS.outbox_bytes / big.len() {
            push_now(&outbox, yielding("1", &big));
        }
        let waiting = outbox.push_output(yielding("1", "next"));
        tokio::pin!(waiting);
        assert!((&mut waiting).now_or_never().is_none(), "waits while full");
        // Terminal reports and confirmations are never held back.
        outbox.push(report("2", ReportKind::Completed));
        assert!(!outbox.take_batch(1, usize::MAX).is_empty());
        assert!(waiting.now_or_never().is_some(), "room again");
    }

    #[test]
    fn log_lines_of_a_task_are_gathered_into_one_frame() {
        let outbox = Outbox::default();
        for index in 0..1000 {
            push_now(&outbox, log("1", &format!("line {index}")));
        }
        // A task that does not log is not held up by one that does.
        outbox.push(report("2", ReportKind::Completed));
        let now = outbox.take_batch(usize::MAX, usize::MAX);
        assert_eq!(now.len(), 1);
        assert_eq!(now[0].report.kind, ReportKind::Completed);
        assert!(outbox.logs_due().is_some());
        outbox
            .state()
            .release_due_logs(Instant::now() + LOG_FLUSH_INTERVAL);
        let frames = outbox.take_batch(usize::MAX, usize::MAX);
        assert_eq!(frames.len(), 1);
        let ReportKind::Log { message, .. } = &frames[0].report.kind else {
            panic!("{:?}", frames[0].report.kind);
        };
        assert_eq!(message.lines().count(), 1000);
        assert!(message.starts_with("line 0\nline 1\n"));
        assert!(outbox.logs_due().is_none());
    }

    #[test]
    fn gathered_log_lines_go_before_the_tasks_next_report() {
        let outbox = Outbox::default();
        push_now(&outbox, log("1", "before"));
        outbox.push(report("1", ReportKind::Completed));
        let batch = outbox.take_batch(usize::MAX, usize::MAX);
        let kinds: Vec<&str> = batch
            .iter()
            .map(|queued| queued.report.kind.report_type().as_str())
            .collect();
        assert_eq!(kinds, ["LOG", "COMPLETED"]);
    }

    #[test]
    fn log_frames_are_rate_limited_agent_wide() {
        let outbox = Outbox::default();
        let tasks = 3 * CAPS.log_frames_per_second as usize;
        for task in 0..tasks {
            push_now(&outbox, log(&task.to_string(), "hello"));
        }
        outbox
            .state()
            .release_due_logs(Instant::now() + LOG_FLUSH_INTERVAL);
        let first = outbox.take_batch(usize::MAX, usize::MAX).len();
        // The burst, plus what the bucket earned while this test ran.
        assert!(
            (CAPS.log_frames_per_second as usize..tasks).contains(&first),
            "{first} of {tasks}"
        );
        // The rest wait for tokens (gathering more lines meanwhile), never lost.
        let due = outbox.logs_due().expect("more due");
        assert!(due > Instant::now());
    }

    #[test]
    fn a_full_log_frame_drops_lines_with_a_marker_while_over_the_rate() {
        let outbox = Outbox::default();
        // Use up the agent-wide burst.
        outbox.state().log_rate.tokens = 0.0;
        let line = "y".repeat(1000);
        for _ in 0..100 {
            push_now(&outbox, log("1", &line));
        }
        outbox.state().log_rate.tokens = 1.0;
        outbox
            .state()
            .release_due_logs(Instant::now() + LOG_FLUSH_INTERVAL);
        let frames = outbox.take_batch(usize::MAX, usize::MAX);
        let ReportKind::Log { message, .. } = &frames[0].report.kind else {
            panic!("{:?}", frames[0].report.kind);
        };
        assert!(message.chars().count() <= MAX_MESSAGE_CHARS);
        assert!(
            message
                .ends_with("log lines dropped: the server takes at most 20 log frames per second]"),
            "{}",
            &message[message.len() - 120..]
        );
    }

    #[test]
    fn text_is_cut_to_the_servers_column() {
        let mut short = "ä".repeat(MAX_MESSAGE_CHARS);
        cap_text(&mut short, MAX_MESSAGE_CHARS);
        assert_eq!(short.chars().count(), MAX_MESSAGE_CHARS);
        assert!(!short.contains("cut"));
        let mut long = "ä".repeat(MAX_MESSAGE_CHARS + 10);
        cap_text(&mut long, MAX_MESSAGE_CHARS);
        assert_eq!(long.chars().count(), MAX_MESSAGE_CHARS);
        assert!(long.ends_with("[10 characters cut]"), "{long}");
    }
}
