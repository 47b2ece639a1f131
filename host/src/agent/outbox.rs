//! Reports waiting to be sent, and terminal reports kept until the server acknowledges them.
//!
//! Non-terminal reports are sent at most once (the server does not acknowledge LOG, PROGRESS
//! or YIELD); terminal reports at least once: they are retained from the moment they are
//! written until EVENT_ACK names them, and resent after every reconnect.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::protocol::{Report, ReportKind};

/// Reports queued beyond this drop new LOG and PROGRESS reports (never YIELD or terminal).
pub const MAX_QUEUED: usize = 10_000;

#[derive(Default)]
struct State {
    queue: VecDeque<Report>,
    unacked: Vec<Report>,
    dropped: u64,
}

/// The agent's outgoing reports; shared by the dispatcher (writes) and the connection (reads).
#[derive(Default)]
pub struct Outbox {
    state: Mutex<State>,
    ready: Notify,
}

impl Outbox {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `report` for sending.
    pub fn push(&self, report: Report) {
        {
            let mut state = self.state();
            let droppable = matches!(
                report.kind,
                ReportKind::Log { .. } | ReportKind::Progress { .. }
            );
            if droppable && state.queue.len() >= MAX_QUEUED {
                state.dropped += 1;
                if state.dropped.is_power_of_two() {
                    tracing::warn!(
                        "{} log/progress reports dropped: the server is not keeping up",
                        state.dropped
                    );
                }
                return;
            }
            state.queue.push_back(report);
        }
        self.ready.notify_one();
    }

    /// Up to `max` reports to send now.
    pub(crate) fn take_batch(&self, max: usize) -> Vec<Report> {
        let mut state = self.state();
        let count = state.queue.len().min(max);
        state.queue.drain(..count).collect()
    }

    /// Puts reports that were not written back at the front, in order.
    pub(crate) fn requeue_front(&self, reports: Vec<Report>) {
        let mut state = self.state();
        for report in reports.into_iter().rev() {
            state.queue.push_front(report);
        }
    }

    /// A terminal report was written: keep it until acknowledged.
    pub(crate) fn written(&self, report: Report) {
        if report.kind.is_terminal() {
            let mut state = self.state();
            state.unacked.retain(|kept| kept.id != report.id);
            state.unacked.push(report);
        }
    }

    /// EVENT_ACK for report `id`; true if it was retained.
    pub(crate) fn ack(&self, id: &str) -> bool {
        let mut state = self.state();
        let before = state.unacked.len();
        state.unacked.retain(|kept| kept.id != id);
        before != state.unacked.len()
    }

    /// After a reconnect: every unacknowledged terminal report goes out again, first.
    pub(crate) fn resend_unacked(&self) -> usize {
        let count = {
            let mut state = self.state();
            let unacked = std::mem::take(&mut state.unacked);
            let count = unacked.len();
            for report in unacked.into_iter().rev() {
                state.queue.push_front(report);
            }
            count
        };
        if count > 0 {
            self.ready.notify_one();
        }
        count
    }

    /// Whether a terminal report of `task` is queued or awaiting its acknowledgement.
    pub fn retains_terminal(&self, task: &str) -> bool {
        let state = self.state();
        state
            .unacked
            .iter()
            .chain(state.queue.iter())
            .any(|report| report.task == task && report.kind.is_terminal())
    }

    /// Nothing queued and every terminal report acknowledged.
    pub fn is_settled(&self) -> bool {
        let state = self.state();
        state.queue.is_empty() && state.unacked.is_empty()
    }

    /// Nothing queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.state().queue.is_empty()
    }

    /// How many terminal reports await acknowledgement.
    pub fn unacked(&self) -> usize {
        self.state().unacked.len()
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
    use super::*;

    fn report(task: &str, kind: ReportKind) -> Report {
        Report::new(task, kind)
    }

    #[test]
    fn terminal_reports_stay_until_acked_and_are_resent_first() {
        let outbox = Outbox::default();
        outbox.push(report("1", ReportKind::Started));
        outbox.push(report("1", ReportKind::Completed));
        outbox.push(report("2", ReportKind::Started));
        let batch = outbox.take_batch(2);
        assert_eq!(batch.len(), 2);
        let completed = batch[1].clone();
        for sent in batch {
            outbox.written(sent);
        }
        assert!(outbox.retains_terminal("1"));
        assert!(!outbox.is_settled());
        // Reconnect: the unacked COMPLETED goes out before the rest.
        assert_eq!(outbox.resend_unacked(), 1);
        let again = outbox.take_batch(10);
        assert_eq!(again[0].id, completed.id);
        assert_eq!(again[1].kind, ReportKind::Started);
        outbox.written(again[0].clone());
        assert!(outbox.ack(&completed.id));
        assert!(!outbox.ack(&completed.id));
        assert!(outbox.is_settled());
        assert!(!outbox.retains_terminal("1"));
    }

    #[test]
    fn drops_chatter_not_results_when_flooded() {
        let outbox = Outbox::default();
        for _ in 0..MAX_QUEUED {
            outbox.push(report("1", ReportKind::Started));
        }
        outbox.push(report(
            "1",
            ReportKind::Log {
                message: "x".into(),
                level: "INFO".into(),
            },
        ));
        outbox.push(report("1", ReportKind::Completed));
        assert_eq!(outbox.take_batch(usize::MAX).len(), MAX_QUEUED + 1);
    }
}
