//! The `mytasks` feed of one caller identity: every change of the tasks it assigned, in order,
//! to each of its subscribers through a bounded queue. A subscriber that falls more than
//! [`SUBSCRIBER_QUEUE`] changes behind is dropped (its stream ends and it is told why) rather
//! than buffered without bound or served with holes.
//!
//! Changes published while a caller has no subscriber at all are kept (at most
//! [`SUBSCRIBER_QUEUE`], for [`REPLAY_WINDOW`]) and go to its next subscriber: the official
//! client subscribes and assigns at the same time, and a fast task can be over before its
//! subscription arrives; a caller's reconnect loses nothing either. Nothing is delivered twice.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use serde_json::Value;
use tokio::sync::mpsc;

/// Changes queued per subscriber before it counts as too slow and is dropped.
pub const SUBSCRIBER_QUEUE: usize = 4096;
/// How long changes nobody was subscribed for wait for the caller's next subscriber.
pub const REPLAY_WINDOW: Duration = Duration::from_secs(30);

/// One change (`{"create": ..}` or `{"event": ..}`, a `TaskChangeEvent`), built once and
/// shared by every subscriber.
pub(crate) type Change = Arc<Value>;

/// The subscribers of one caller identity (a token).
#[derive(Default)]
pub(crate) struct Subscribers {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    queues: Vec<mpsc::Sender<Change>>,
    /// Changes published while nobody was subscribed, oldest first.
    undelivered: VecDeque<(Instant, Change)>,
}

impl Subscribers {
    /// A new subscriber, first given the changes nobody received yet; its receiver ends
    /// when it is dropped for falling behind.
    pub(crate) fn subscribe(&self) -> mpsc::Receiver<Change> {
        let (sender, receiver) = mpsc::channel(SUBSCRIBER_QUEUE);
        let mut inner = self.lock();
        let now = Instant::now();
        for (published, change) in inner.undelivered.drain(..) {
            if now.duration_since(published) <= REPLAY_WINDOW {
                // At most SUBSCRIBER_QUEUE are kept, so they fit.
                let _ = sender.try_send(change);
            }
        }
        inner.queues.push(sender);
        receiver
    }

    /// Queues the change `make` builds for every subscriber, dropping the ones that are gone
    /// or full; without subscribers, keeps it for the next one.
    pub(crate) fn publish(&self, make: impl FnOnce() -> Value) {
        let mut inner = self.lock();
        let change = Arc::new(make());
        inner
            .queues
            .retain(|queue| !queue.is_closed() && queue.try_send(Arc::clone(&change)).is_ok());
        if inner.queues.is_empty() {
            let now = Instant::now();
            while inner.undelivered.front().is_some_and(|(published, _)| {
                inner.undelivered.len() >= SUBSCRIBER_QUEUE
                    || now.duration_since(*published) > REPLAY_WINDOW
            }) {
                inner.undelivered.pop_front();
            }
            inner.undelivered.push_back((now, change));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Plain data: a panic elsewhere leaves it usable.
        self.inner
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
        assert_eq!(subscribers.lock().queues.len(), 1);
    }

    #[tokio::test]
    async fn changes_nobody_got_go_to_the_next_subscriber_once() {
        let subscribers = Subscribers::default();
        for index in 0..SUBSCRIBER_QUEUE + 2 {
            subscribers.publish(|| json!({"event": {"id": index}}));
        }
        let mut first = subscribers.subscribe();
        // The oldest two went to keep the bound.
        for index in 2..SUBSCRIBER_QUEUE + 2 {
            let change = first.recv().await.expect("replayed");
            assert_eq!(change["event"]["id"], json!(index));
        }
        subscribers.publish(|| json!({"event": {"id": "live"}}));
        assert_eq!(first.recv().await.expect("live")["event"]["id"], "live");
        let mut second = subscribers.subscribe();
        assert!(second.try_recv().is_err(), "nothing is replayed twice");
    }
}
