//! Calls from running tasks to other actions, over the agent socket: each becomes an
//! `ASSIGN_REQUEST` with the task as `parent`; `ASSIGN_RESPONSE` names the child task, whose
//! `*_EVENT` frames are routed back to the waiting guest. Children are stopped with their
//! parent (CANCEL_REQUEST / INTERRUPT_REQUEST) and paused and resumed with it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use serde_json::{Map, Value};
use tokio::sync::{Notify, mpsc};

use super::caps::AgentCaps;
use crate::protocol::{
    AssignRequest, ChildControl, ExecutionEvent, FromAgent, ReportType, TaskEventKind,
};
use crate::runtime::{CHILD_EVENTS, CallPort, CallTarget, ChildCall, ChildEvent};

struct Call {
    parent: String,
    events: mpsc::Sender<ChildEvent>,
    /// The child task, once ASSIGN_RESPONSE named it.
    task: Option<String>,
    /// The caller dropped the call before the child was named: stop it when it is.
    abandoned: bool,
}

#[derive(Default)]
struct State {
    /// Frames waiting for the socket.
    outgoing: VecDeque<FromAgent>,
    /// Calls by request id.
    calls: HashMap<String, Call>,
    /// Request ids by child task.
    by_task: HashMap<String, String>,
}

impl State {
    fn control(&mut self, control: ChildControl, task: String) {
        self.outgoing.push_back(FromAgent::ControlRequest {
            id: uuid::Uuid::new_v4().to_string(),
            control,
            task,
        });
    }

    fn end(&mut self, request: &str) -> Option<Call> {
        let call = self.calls.remove(request)?;
        if let Some(task) = &call.task {
            self.by_task.remove(task);
        }
        Some(call)
    }
}

/// The calls of this agent's tasks; shared by the dispatcher (which starts and steers them)
/// and the connection (which writes their frames and routes the answers).
pub struct Calls {
    /// Largest args text of one call: [`AgentCaps::call_args_bytes`].
    args_bytes: usize,
    state: Mutex<State>,
    ready: Notify,
    /// Handed to guests so they can start calls; set once at construction.
    this: Weak<Calls>,
}

impl Calls {
    /// An empty call table, refusing calls with args over `caps`' `call_args_bytes`.
    pub fn new(caps: &AgentCaps) -> Arc<Self> {
        Arc::new_cyclic(|this| Calls {
            args_bytes: caps.call_args_bytes,
            state: Mutex::default(),
            ready: Notify::new(),
            this: this.clone(),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn queue(&self, frame: FromAgent) {
        self.state().outgoing.push_back(frame);
        self.ready.notify_one();
    }

    /// Resolves when frames wait to be written.
    pub(crate) async fn ready(&self) {
        self.ready.notified().await;
    }

    /// The frames to write now.
    pub(crate) fn take_outgoing(&self) -> Vec<FromAgent> {
        self.state().outgoing.drain(..).collect()
    }

    /// Puts frames that could not be written back in front.
    pub(crate) fn requeue(&self, frames: Vec<FromAgent>) {
        if frames.is_empty() {
            return;
        }
        let mut state = self.state();
        for frame in frames.into_iter().rev() {
            state.outgoing.push_front(frame);
        }
        drop(state);
        self.ready.notify_one();
    }

    /// ASSIGN_RESPONSE: the child of `request` is `task`, or the call was refused.
    pub(crate) fn answered(&self, request: &str, task: Option<String>, error: Option<String>) {
        let mut state = self.state();
        let (task, abandoned) = match (task, error) {
            (Some(task), None) => match state.calls.get_mut(request) {
                Some(call) => {
                    call.task = Some(task.clone());
                    (task, call.abandoned)
                }
                None => return,
            },
            (task, error) => {
                if let Some(call) = state.end(request) {
                    let reason = error.unwrap_or_else(|| {
                        format!("the server answered the call without a task ({task:?})")
                    });
                    let _ = call.events.try_send(ChildEvent::Refused(format!(
                        "the server refused the call: {reason}"
                    )));
                }
                return;
            }
        };
        state.by_task.insert(task.clone(), request.to_string());
        if abandoned {
            state.end(request);
            state.control(ChildControl::Cancel, task);
            drop(state);
            self.ready.notify_one();
        }
    }

    /// A `*_EVENT` frame: passes it to the call waiting for that task; false if none is.
    pub(crate) fn route(&self, event: &ExecutionEvent) -> bool {
        let mut state = self.state();
        let Some(request) = state.by_task.get(&event.task).cloned() else {
            return false;
        };
        let text = |field: &str| {
            event
                .fields
                .get(field)
                .and_then(Value::as_str)
                .unwrap_or("no error given")
                .to_string()
        };
        let child_event = match TaskEventKind::from_mirrored(&event.kind) {
            Some(TaskEventKind::Report(ReportType::Yield)) => {
                let returns = event.fields.get("returns").cloned().unwrap_or(Value::Null);
                ChildEvent::Yield(returns.to_string())
            }
            Some(TaskEventKind::Report(ReportType::Completed)) => ChildEvent::Completed,
            Some(TaskEventKind::Report(ReportType::Failed)) => ChildEvent::Failed(text("error")),
            Some(TaskEventKind::Report(ReportType::Critical)) => {
                ChildEvent::Critical(text("error"))
            }
            Some(TaskEventKind::Report(ReportType::Cancelled)) => {
                ChildEvent::Cancelled("the child task was cancelled".into())
            }
            Some(TaskEventKind::Report(ReportType::Interrupted)) => {
                ChildEvent::Cancelled("the child task was interrupted".into())
            }
            // Progress, logs, the server's own events and kinds yet unknown: nothing to pass on.
            _ => return true,
        };
        let mut child_event = child_event;
        let mut terminal = !matches!(child_event, ChildEvent::Yield(_));
        let unread = !terminal
            && state
                .calls
                .get(&request)
                .is_some_and(|call| call.events.capacity() <= 1);
        if unread {
            // The caller lets the child's returns pile up: stop the child, and say why in
            // the slot kept for it.
            child_event = ChildEvent::Cancelled(format!(
                "the child was cancelled: {} of its returns were waiting unread",
                CHILD_EVENTS - 1
            ));
            terminal = true;
            state.control(ChildControl::Cancel, event.task.clone());
        }
        let call = if terminal { state.end(&request) } else { None };
        let sender = match &call {
            Some(call) => Some(call.events.clone()),
            None => state.calls.get(&request).map(|call| call.events.clone()),
        };
        drop(state);
        if unread {
            self.ready.notify_one();
        }
        if let Some(sender) = sender {
            let _ = sender.try_send(child_event);
        }
        true
    }

    /// Passes `control` of the parent `task` on to its running children.
    pub(crate) fn control_children(&self, task: &str, control: ChildControl) {
        let mut state = self.state();
        let children: Vec<String> = state
            .calls
            .values_mut()
            .filter(|call| call.parent == task)
            .filter_map(|call| {
                if call.task.is_none()
                    && matches!(control, ChildControl::Cancel | ChildControl::Interrupt)
                {
                    call.abandoned = true;
                }
                call.task.clone()
            })
            .collect();
        if children.is_empty() {
            return;
        }
        for child in children {
            state.control(control, child);
        }
        drop(state);
        self.ready.notify_one();
    }

    /// The caller dropped the call: stop the child unless it ended.
    fn abandon(&self, request: &str) {
        let mut state = self.state();
        let Some(call) = state.calls.get_mut(request) else {
            return;
        };
        match call.task.clone() {
            None => call.abandoned = true,
            Some(task) => {
                state.end(request);
                state.control(ChildControl::Cancel, task);
                drop(state);
                self.ready.notify_one();
            }
        }
    }
}

/// Stops a child whose caller dropped it.
struct StopOnDrop {
    calls: Weak<Calls>,
    request: String,
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(calls) = self.calls.upgrade() {
            calls.abandon(&self.request);
        }
    }
}

impl CallPort for Calls {
    fn start(&self, parent: &str, target: CallTarget, args_json: String) -> ChildCall {
        if args_json.len() > self.args_bytes {
            return ChildCall::refused(format!(
                "the call's args are {} bytes; at most {} are allowed",
                args_json.len(),
                self.args_bytes
            ));
        }
        let args = match serde_json::from_str::<Map<String, Value>>(&args_json) {
            Ok(args) => args,
            Err(error) => {
                return ChildCall::refused(format!(
                    "the call's args must be a JSON object keyed by arg port: {error}"
                ));
            }
        };
        let mut request = AssignRequest {
            id: uuid::Uuid::new_v4().to_string(),
            reference: uuid::Uuid::new_v4().to_string(),
            parent: parent.to_string(),
            args,
            action_hash: None,
            agent: None,
            interface: None,
            dependency: None,
            method: None,
        };
        match target {
            CallTarget::ActionHash(hash) => request.action_hash = Some(hash),
            CallTarget::AgentInterface { agent, interface } => {
                request.agent = Some(agent);
                request.interface = Some(interface);
            }
            CallTarget::Dependency(slot) => {
                request.method = Some(slot.clone());
                request.dependency = Some(slot);
            }
        }
        let (sender, events) = mpsc::channel(CHILD_EVENTS);
        let id = request.id.clone();
        self.state().calls.insert(
            id.clone(),
            Call {
                parent: parent.to_string(),
                events: sender,
                task: None,
                abandoned: false,
            },
        );
        self.queue(FromAgent::AssignRequest(Box::new(request)));
        let guard = StopOnDrop {
            calls: self.this.clone(),
            request: id,
        };
        ChildCall::new(events, Box::new(guard))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(kind: &str, task: &str, fields: Value) -> ExecutionEvent {
        ExecutionEvent {
            kind: kind.into(),
            task: task.into(),
            event: "e".into(),
            seq: None,
            fields: fields.as_object().cloned().unwrap_or_default(),
        }
    }

    fn request_id(frame: &FromAgent) -> String {
        match frame {
            FromAgent::AssignRequest(request) => request.id.clone(),
            other => panic!("expected an ASSIGN_REQUEST, got {other:?}"),
        }
    }

    #[test]
    fn args_over_the_agents_cap_are_refused_before_anything_is_sent() {
        let calls = Calls::new(&AgentCaps {
            call_args_bytes: 8,
            ..AgentCaps::DEFAULT
        });
        let mut child = calls.start(
            "p",
            CallTarget::Dependency("words".into()),
            r#"{"a": 12}"#.into(),
        );
        assert_eq!(
            child.events.try_recv().ok(),
            Some(ChildEvent::Refused(
                "the call's args are 9 bytes; at most 8 are allowed".into()
            ))
        );
        assert!(calls.take_outgoing().is_empty());
    }

    #[tokio::test]
    async fn a_child_whose_returns_are_not_read_is_cancelled_with_the_reason() {
        let calls = Calls::new(&AgentCaps::DEFAULT);
        let mut child = calls.start("p", CallTarget::Dependency("words".into()), "{}".into());
        let request = request_id(&calls.take_outgoing()[0]);
        calls.answered(&request, Some("c".into()), None);
        for index in 0..(CHILD_EVENTS * 2) {
            calls.route(&event(
                "YIELD_EVENT",
                "c",
                json!({"returns": {"return0": index}}),
            ));
        }
        let mut yields = 0;
        let last = loop {
            match child.events.recv().await {
                Some(ChildEvent::Yield(_)) => yields += 1,
                other => break other,
            }
        };
        assert_eq!(yields, CHILD_EVENTS - 1);
        assert_eq!(
            last,
            Some(ChildEvent::Cancelled(format!(
                "the child was cancelled: {} of its returns were waiting unread",
                CHILD_EVENTS - 1
            )))
        );
        assert!(calls.take_outgoing().iter().any(|frame| matches!(
            frame,
            FromAgent::ControlRequest { control: ChildControl::Cancel, task, .. } if task == "c"
        )));
        assert!(!calls.route(&event("YIELD_EVENT", "c", json!({}))));
    }

    #[tokio::test]
    async fn events_reach_the_caller_and_the_call_ends_with_the_child() {
        let calls = Calls::new(&AgentCaps::DEFAULT);
        let mut child = calls.start("p", CallTarget::Dependency("add".into()), "{}".into());
        let frames = calls.take_outgoing();
        let FromAgent::AssignRequest(request) = &frames[0] else {
            panic!("expected an ASSIGN_REQUEST");
        };
        assert_eq!(request.parent, "p");
        assert_eq!(request.dependency.as_deref(), Some("add"));
        calls.answered(&request.id, Some("c".into()), None);
        assert!(calls.route(&event(
            "YIELD_EVENT",
            "c",
            json!({"returns": {"return0": 3}})
        )));
        assert!(calls.route(&event("COMPLETED_EVENT", "c", json!({}))));
        assert_eq!(
            child.events.recv().await,
            Some(ChildEvent::Yield(r#"{"return0":3}"#.into()))
        );
        assert_eq!(child.events.recv().await, Some(ChildEvent::Completed));
        assert!(!calls.route(&event("YIELD_EVENT", "c", json!({}))));
        drop(child);
        assert!(
            calls.take_outgoing().is_empty(),
            "an ended child is not cancelled"
        );
    }

    #[test]
    fn a_dropped_call_cancels_its_child_even_before_it_is_named() {
        let calls = Calls::new(&AgentCaps::DEFAULT);
        let child = calls.start("p", CallTarget::ActionHash("h".into()), "{}".into());
        let id = request_id(&calls.take_outgoing()[0]);
        drop(child);
        assert!(calls.take_outgoing().is_empty());
        calls.answered(&id, Some("c".into()), None);
        let frames = calls.take_outgoing();
        assert!(
            matches!(&frames[..], [FromAgent::ControlRequest { control: ChildControl::Cancel, task, .. }] if task == "c"),
            "{frames:?}"
        );
    }

    #[test]
    fn parent_controls_reach_running_children() {
        let calls = Calls::new(&AgentCaps::DEFAULT);
        let _child = calls.start("p", CallTarget::ActionHash("h".into()), "{}".into());
        let id = request_id(&calls.take_outgoing()[0]);
        calls.answered(&id, Some("c".into()), None);
        calls.control_children("p", ChildControl::Pause);
        calls.control_children("other", ChildControl::Cancel);
        let frames = calls.take_outgoing();
        assert!(
            matches!(&frames[..], [FromAgent::ControlRequest { control: ChildControl::Pause, task, .. }] if task == "c"),
            "{frames:?}"
        );
    }

    #[tokio::test]
    async fn refusals_and_bad_args_are_errors_for_the_caller() {
        let calls = Calls::new(&AgentCaps::DEFAULT);
        let mut bad = calls.start("p", CallTarget::Dependency("x".into()), "[1]".into());
        assert!(
            matches!(bad.events.recv().await, Some(ChildEvent::Refused(reason)) if reason.contains("JSON object"))
        );
        let mut child = calls.start("p", CallTarget::Dependency("x".into()), "{}".into());
        let id = request_id(&calls.take_outgoing()[0]);
        calls.answered(&id, None, Some("no such slot".into()));
        assert!(
            matches!(child.events.recv().await, Some(ChildEvent::Refused(reason)) if reason.contains("no such slot"))
        );
    }
}
