//! Calls from a running action to other actions. The runtime knows no socket: it hands each
//! call to a [`CallPort`] (the agent, which turns it into an `ASSIGN_REQUEST`) and passes the
//! child's events back to the waiting guest.

use std::sync::Arc;

use tokio::sync::mpsc;

/// Deepest nesting of calls: a task started by a call started by a call ... at this depth may
/// not call further (an action calling itself ends here with a clear error).
pub const MAX_CALL_DEPTH: u32 = 8;
/// Most calls one task may start over its life.
pub const MAX_CHILDREN_PER_TASK: u32 = 64;

/// Which action a guest calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallTarget {
    /// The action with this hash.
    ActionHash(String),
    /// The implementation of `interface` on the agent `agent`.
    AgentInterface {
        /// The agent's id.
        agent: String,
        /// The action key.
        interface: String,
    },
    /// A dependency slot the calling action declared.
    Dependency(String),
}

/// What happened to a child, as its caller needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildEvent {
    /// One set of returns (a JSON object as text).
    Yield(String),
    /// The child completed.
    Completed,
    /// The call was not made (the server refused it, or a cap).
    Refused(String),
    /// The child ended FAILED.
    Failed(String),
    /// The child ended CRITICAL.
    Critical(String),
    /// The child was cancelled or interrupted.
    Cancelled(String),
}

/// Events of one child that may wait for its caller to read them. One more than the returns
/// that may wait: a child whose caller lets more pile up is cancelled, and that last slot
/// tells the caller why.
pub const CHILD_EVENTS: usize = 64;

/// A started child: its events, and whatever cancels it when dropped before it ended.
pub struct ChildCall {
    pub(crate) events: mpsc::Receiver<ChildEvent>,
    pub(crate) done: bool,
    _stop_on_drop: Box<dyn Send + Sync>,
}

impl ChildCall {
    /// A child whose events arrive on `events`; dropping `stop_on_drop` must stop the child
    /// if it still runs.
    pub fn new(events: mpsc::Receiver<ChildEvent>, stop_on_drop: Box<dyn Send + Sync>) -> Self {
        ChildCall {
            events,
            done: false,
            _stop_on_drop: stop_on_drop,
        }
    }

    /// A call refused before it left the host.
    pub fn refused(reason: String) -> Self {
        let (sender, events) = mpsc::channel(1);
        let _ = sender.try_send(ChildEvent::Refused(reason));
        ChildCall::new(events, Box::new(()))
    }
}

/// Where calls go: implemented by the agent over its socket.
pub trait CallPort: Send + Sync {
    /// Starts `target` with `args_json` as a child of the task `parent`.
    fn start(&self, parent: &str, target: CallTarget, args_json: String) -> ChildCall;
}

/// What a task needs to make calls: the port, its own task id and nesting depth.
#[derive(Clone)]
pub struct TaskCalls {
    /// Where calls go.
    pub port: Arc<dyn CallPort>,
    /// The running task's id (the children's `parent`).
    pub task: String,
    /// Its nesting depth: 0 for a task a plain client assigned, its parent's plus one for a
    /// child.
    pub depth: u32,
    /// Where its shelves and states live (`None`: it cannot keep anything).
    pub keep: Option<Arc<dyn super::KeepPort>>,
}
