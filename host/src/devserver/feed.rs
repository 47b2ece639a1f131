//! The `mytasks` feed of one caller identity: every change of the tasks it assigned, in order,
//! to each of its subscribers through a bounded queue. A subscriber that falls more than
//! [`SUBSCRIBER_QUEUE`] changes behind is dropped (its stream ends and it is told why) rather
//! than buffered without bound or served with holes.

use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::mpsc;

/// Changes queued per subscriber before it counts as too slow and is dropped.
pub const SUBSCRIBER_QUEUE: usize = 4096;

/// One change (`{"create": ..}` or `{"event": ..}`, a `TaskChangeEvent`), built once and
/// shared by every subscriber.
pub(crate) type Change = Arc<Value>;

/// The subscribers of one caller identity (a token).
#[derive(Default)]
pub(crate) struct Subscribers {
    queues: Mutex<Vec<mpsc::Sender<Change>>>,
}

impl Subscribers {
    /// A new subscriber; its receiver ends when it is dropped for falling behind.
    pub(crate) fn subscribe(&self) -> mpsc::Receiver<Change> {
        let (sender, receiver) = mpsc::channel(SUBSCRIBER_QUEUE);
        self.lock().push(sender);
        receiver
    }

    /// Queues the change `make` builds (only if anyone listens) for every subscriber; drops
    /// the ones that are gone or full.
    pub(crate) fn publish(&self, make: impl FnOnce() -> Value) {
        let mut queues = self.lock();
        if queues.is_empty() {
            return;
        }
        let change = Arc::new(make());
        queues.retain(|queue| queue.try_send(Arc::clone(&change)).is_ok());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<mpsc::Sender<Change>>> {
        // Plain data: a panic elsewhere leaves it usable.
        self.queues
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn a_subscriber_gets_changes_in_order_and_a_slow_one_is_dropped() {
        let subscribers = Subscribers::default();
        let mut reader = subscribers.subscribe();
        let mut sleeper = subscribers.subscribe();
        for index in 0..SUBSCRIBER_QUEUE + 1 {
            subscribers.publish(|| json!({"event": {"id": index}}));
            let change = reader.recv().await.expect("the reader keeps up");
            assert_eq!(change["event"]["id"], json!(index));
        }
        // The sleeper got the first SUBSCRIBER_QUEUE changes, in order, then its stream ends.
        for index in 0..SUBSCRIBER_QUEUE {
            let change = sleeper.recv().await.expect("queued");
            assert_eq!(change["event"]["id"], json!(index));
        }
        assert!(sleeper.recv().await.is_none());
        assert_eq!(subscribers.lock().len(), 1);
    }
}
