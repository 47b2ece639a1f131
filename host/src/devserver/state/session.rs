//! An agent's session on the socket: REGISTER and INIT with its inquiries, the connection's
//! loss and the grace before its tasks become DISCONNECTED, the reports it sends (recorded,
//! deduplicated, acknowledged), and its calls from running tasks (ASSIGN_REQUEST, the control
//! requests about the children it called).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::{
    Control, Db, Demand, EVENT_OVERHEAD, Live, MAX_MESSAGE_CHARS, ParentLink, ServerEvent, Shared,
};
use crate::protocol::{AssignRequest, ChildControl, Inquiry, ReportType, ToAgent};

/// A frame (or a deed) for one agent connection's writer.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// A text frame.
    Text(String),
    /// Any frame, as is (tests send hostile ones).
    Raw(Message),
    /// A close frame with this code; the connection ends.
    Close(u16, String),
    /// Answer the peer's close frame (the handshake the peer waits for); the connection ends.
    CloseReply,
    /// Drop the TCP connection without a close frame.
    Cut,
}

/// How a REGISTER went.
pub(crate) enum Registration {
    /// Registered: send this INIT.
    Accepted {
        /// The agent id.
        agent: String,
        /// The INIT frame.
        init: ToAgent,
    },
    /// Refused: send the optional PROTOCOL_ERROR text, then close with the code.
    Refused(Option<String>, u16),
}

/// What a report did to the task.
pub(crate) enum ReportEffect {
    /// Recorded (or deduplicated); answer with an EVENT_ACK when `ack`.
    Recorded {
        /// Whether the server acknowledges this report type.
        ack: bool,
    },
    /// A YIELD for a task the server does not know: close 3003.
    UnknownTask,
    /// Text longer than the server stores: its insert fails and it closes with 3003.
    TooLong(&'static str),
}

impl Shared {
    /// Follows whether agent connections are read.
    pub(crate) fn reading(&self) -> tokio::sync::watch::Receiver<bool> {
        self.reading.subscribe()
    }

    /// Switches reading agent connections on or off.
    pub(crate) fn set_reading(&self, reading: bool) {
        self.reading.send_replace(reading);
    }

    pub(crate) fn new_connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    /// Handles REGISTER on connection `connection`.
    pub(crate) fn register(
        &self,
        connection: u64,
        token: &str,
        session_id: Option<String>,
        force: bool,
        outbox: mpsc::UnboundedSender<Outgoing>,
        silent: Arc<AtomicBool>,
    ) -> Registration {
        let Ok(principal) = self.principal(token) else {
            return Registration::Refused(None, crate::protocol::close_code::SCHEMA_MISMATCH);
        };
        let mut db = self.db();
        let Some(agent) = db.agent_by_token(&principal) else {
            // Like the real server: REGISTER only finds agents that ensureAgent created.
            return Registration::Refused(None, crate::protocol::close_code::SCHEMA_MISMATCH);
        };
        if agent.connected() && !force {
            return Registration::Refused(
                Some(
                    "Another connection is already registered for this agent. Reconnect with \
                     force to take over."
                        .into(),
                ),
                crate::protocol::close_code::ALREADY_CONNECTED,
            );
        }
        agent.stale_until = None;
        if let Some(live) = &agent.live {
            let _ = live.outbox.send(Outgoing::Close(
                crate::protocol::close_code::REPLACED,
                "replaced by a forced connection".into(),
            ));
        }
        if let Some(grace) = agent.grace.take() {
            grace.abort();
        }
        let agent_id = agent.id.clone();
        let prior = agent.session_id.clone();
        agent.session_id = session_id.clone();
        agent.live = Some(Live {
            connection,
            outbox,
            silent,
        });
        db.registrations += 1;
        let in_flight = db.in_flight(&agent_id);
        let fresh_process =
            matches!((&prior, &session_id), (Some(prior), Some(new)) if prior != new);
        let inquiries = if fresh_process {
            db.disconnect_tasks(&in_flight);
            Vec::new()
        } else {
            in_flight
                .iter()
                .map(|id| Inquiry {
                    task: id.to_string(),
                })
                .collect()
        };
        Registration::Accepted {
            agent: agent_id.clone(),
            init: ToAgent::Init {
                id: uuid::Uuid::new_v4().to_string(),
                agent: agent_id,
                inquiries,
            },
        }
    }

    /// The connection ended: unless replaced, the agent is offline (after a close handshake,
    /// `clean`) or stale for the stale window (lost otherwise); after the grace window
    /// without a same-session reconnect its in-flight tasks become DISCONNECTED.
    pub(crate) fn disconnected(self: &Arc<Self>, agent_id: &str, connection: u64, clean: bool) {
        let mut db = self.db();
        let Some(agent) = db.agent_by_id(agent_id) else {
            return;
        };
        if agent.live.as_ref().map(|live| live.connection) != Some(connection) {
            return;
        }
        self.lost(db, agent_id, clean);
    }

    /// Silences the live connection of `token` (see [`super::DevServer::silence`]).
    pub(crate) fn silence(self: &Arc<Self>, token: &str) -> bool {
        let mut db = self.db();
        let Some(agent) = db.agent_by_token(token) else {
            return false;
        };
        let Some(live) = &agent.live else {
            return false;
        };
        live.silent.store(true, Ordering::SeqCst);
        let agent_id = agent.id.clone();
        self.lost(db, &agent_id, false);
        true
    }

    /// The agent's live connection is gone (`clean`: with a close handshake).
    fn lost(self: &Arc<Self>, mut db: MutexGuard<'_, Db>, agent_id: &str, clean: bool) {
        let Some(agent) = db.agent_by_id(agent_id) else {
            return;
        };
        agent.live = None;
        agent.stale_until = (!clean).then(|| Instant::now() + self.config.stale_window);
        let grace = self.config.reconnect_grace;
        if grace.is_zero() {
            let in_flight = db.in_flight(agent_id);
            db.disconnect_tasks(&in_flight);
            return;
        }
        let shared = Arc::clone(self);
        let agent_key = agent_id.to_string();
        let timer = tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let mut db = shared.db();
            let offline = db
                .agent_by_id(&agent_key)
                .is_some_and(|agent| agent.live.is_none());
            if offline {
                let in_flight = db.in_flight(&agent_key);
                db.disconnect_tasks(&in_flight);
            }
        });
        if let Some(agent) = db.agent_by_id(agent_id) {
            agent.grace = Some(timer.abort_handle());
        }
    }

    /// Records a report from `agent_id`.
    pub(crate) fn report(&self, agent_id: &str, report: &crate::protocol::Report) -> ReportEffect {
        use crate::protocol::ReportKind;
        let kind = report.kind.report_type();
        let ack = kind.is_acked();
        let mut db = self.db();
        let task = report
            .task
            .parse::<u64>()
            .ok()
            .and_then(|id| db.tasks.get_mut(&id))
            .filter(|task| task.agent == agent_id);
        let Some(task) = task else {
            return if kind == ReportType::Yield {
                ReportEffect::UnknownTask
            } else {
                ReportEffect::Recorded { ack }
            };
        };
        *task.received.entry(kind).or_default() += 1;
        if task.done {
            // Resent terminal reports (and stragglers) are deduplicated by task.
            return ReportEffect::Recorded { ack };
        }
        let text = match &report.kind {
            ReportKind::Progress {
                message: Some(text),
                ..
            }
            | ReportKind::Log { message: text, .. }
            | ReportKind::Failed { error: text }
            | ReportKind::Critical { error: text } => Some(text),
            _ => None,
        };
        if let Some(text) = text
            && text.len() > MAX_MESSAGE_CHARS
            && text.chars().count() > MAX_MESSAGE_CHARS
        {
            return ReportEffect::TooLong(kind.as_str());
        }
        if let ReportKind::Yield { .. } = report.kind
            && task.seen_yield(&report.id)
        {
            // Resent after a reconnect: recorded once.
            return ReportEffect::Recorded { ack };
        }
        let cost = EVENT_OVERHEAD
            + match &report.kind {
                ReportKind::Yield { returns } => returns.get().len(),
                _ => text.map_or(0, String::len),
            };
        let mut event = ServerEvent::new(kind.into());
        match &report.kind {
            ReportKind::Progress { progress, message } => {
                event.fields.insert("progress".into(), json!(progress));
                event.fields.insert("message".into(), json!(message));
            }
            ReportKind::Log { message, level } => {
                event.fields.insert("message".into(), json!(message));
                event.fields.insert("level".into(), json!(level));
            }
            ReportKind::Yield { returns } => {
                let returns = serde_json::from_str(returns.get()).unwrap_or(Value::Null);
                event.fields.insert("returns".into(), returns);
            }
            ReportKind::Failed { error } | ReportKind::Critical { error } => {
                event.fields.insert("error".into(), json!(error));
            }
            _ => {}
        }
        task.done = kind.is_terminal();
        let mirror = task
            .calling_agent
            .clone()
            .map(|caller| (caller, event.clone()));
        let freed = task.push_costing(event, cost);
        db.event_bytes = db.event_bytes + cost - freed;
        db.forget_over_bound();
        if let Some((caller, event)) = mirror {
            db.mirror_to_caller(&caller, report, event);
        }
        ReportEffect::Recorded { ack }
    }

    pub(crate) fn heartbeat_answered(&self) {
        self.db().heartbeats_answered += 1;
    }

    pub(crate) fn closed_with(&self, code: u16) {
        self.db().closes.push(code);
    }

    /// ASSIGN_REQUEST from the agent `caller`: starts the child of one of its running tasks
    /// and answers on `reply` with ASSIGN_RESPONSE (an error does not close the socket). The
    /// answer is queued before any event of the child can be.
    pub(crate) fn assign_request(
        &self,
        caller: &str,
        request: &AssignRequest,
        reply: &mpsc::UnboundedSender<Outgoing>,
    ) {
        let mut db = self.db();
        let started = Self::start_child(&mut db, caller, request);
        let (task, error) = match started {
            Ok(task) => (Some(task), None),
            Err(error) => (None, Some(error)),
        };
        let answer = ToAgent::AssignResponse {
            id: uuid::Uuid::new_v4().to_string(),
            request: request.id.clone(),
            reference: Some(request.reference.clone()),
            created: Some(task.is_some()),
            task,
            error,
        };
        let _ = reply.send(Outgoing::Text(answer.to_json()));
    }

    fn start_child(db: &mut Db, caller: &str, request: &AssignRequest) -> Result<String, String> {
        let parent = request
            .parent
            .parse::<u64>()
            .ok()
            .and_then(|id| db.tasks.get(&id))
            .filter(|parent| parent.agent == caller)
            .ok_or_else(|| {
                format!(
                    "the parent task '{}' is not a task of this agent",
                    request.parent
                )
            })?;
        if parent.done {
            return Err(format!("the parent task '{}' has ended", request.parent));
        }
        let parent_implementation = parent.implementation.clone();
        let chosen = match (
            &request.action_hash,
            &request.agent,
            &request.interface,
            &request.dependency,
        ) {
            (Some(hash), ..) => db.choose(hash, |_, implementation| {
                implementation.action_hash == *hash
            })?,
            (None, Some(agent), Some(interface), _) => {
                db.choose(interface, |candidate, implementation| {
                    candidate.id == *agent && implementation.interface == *interface
                })?
            }
            (None, _, _, Some(slot)) => {
                match db.demand(&parent_implementation, slot, request.method.as_deref())? {
                    Demand::Hash(hash) => db.choose(&hash, |_, implementation| {
                        implementation.action_hash == hash
                    })?,
                    Demand::Key(key) => {
                        db.choose(&key, |_, implementation| implementation.interface == key)?
                    }
                }
            }
            _ => {
                return Err(
                    "the request names no action: give an action hash, an agent and \
                     interface, or a dependency"
                        .into(),
                );
            }
        };
        let link = ParentLink {
            root: db.root_of(&request.parent),
            task: request.parent.clone(),
            calling_agent: caller.to_string(),
        };
        Ok(db.start_task(chosen, request.args.clone(), None, None, Some(link)))
    }

    /// CANCEL_REQUEST, ... from the agent `caller` about one of the children it called:
    /// passes the control on and answers with CONTROL_RESPONSE.
    pub(crate) fn control_request(
        &self,
        caller: &str,
        id: &str,
        control: ChildControl,
        task: &str,
    ) -> ToAgent {
        let called_by_caller = task
            .parse::<u64>()
            .ok()
            .and_then(|id| {
                self.db()
                    .tasks
                    .get(&id)
                    .map(|record| record.calling_agent.clone())
            })
            .flatten()
            .is_some_and(|called_by| called_by == caller);
        let result = if called_by_caller {
            self.control(
                task,
                match control {
                    ChildControl::Cancel => Control::Cancel,
                    ChildControl::Interrupt => Control::Interrupt,
                    ChildControl::Pause => Control::Pause,
                    ChildControl::Resume => Control::Resume(false),
                },
            )
        } else {
            Err(format!("task '{task}' was not called by this agent"))
        };
        ToAgent::ControlResponse {
            id: uuid::Uuid::new_v4().to_string(),
            request: id.to_string(),
            task: Some(task.to_string()),
            accepted: result.is_ok(),
            error: result.err(),
        }
    }

    /// How long to wait for a HEARTBEAT_ANSWER.
    pub(crate) fn heartbeat_timing(&self) -> (Duration, Duration) {
        (
            self.config.heartbeat_interval,
            self.config.heartbeat_timeout,
        )
    }
}

#[cfg(test)]
mod tests {
    use serde_json::value::RawValue;

    use serde_json::Map;

    use super::super::{MAX_EVENT_BYTES, MAX_TASK_EVENT_BYTES};
    use super::*;
    use crate::devserver::DevServerConfig;
    use crate::protocol::{Report, ReportKind};

    /// A server with one connected agent and task "2" assigned to it (the agent id is "1").
    fn with_task() -> Arc<Shared> {
        let shared = Shared::new(DevServerConfig::default());
        shared.ensure_agent("t", &json!({"name": "a"}));
        shared
            .implement_agent(
                "t",
                &json!({"hash": "h", "implementations": [{"interface": "x", "definition": {"key": "x"}}]}),
            )
            .expect("implements");
        let (outbox, _frames) = mpsc::unbounded_channel();
        assert!(matches!(
            shared.register(
                1,
                "t",
                Some("s".into()),
                false,
                outbox,
                Arc::new(AtomicBool::new(false))
            ),
            Registration::Accepted { .. }
        ));
        // The task id continues the id counter (agent 1, implementation 2).
        assert_eq!(shared.assign("x", Map::new(), None).as_deref(), Ok("3"));
        shared
    }

    fn yield_report(id: &str, value: usize) -> Report {
        Report {
            task: "3".into(),
            id: id.into(),
            seq: None,
            kind: ReportKind::Yield {
                returns: RawValue::from_string(format!("{{\"return0\": {value}}}")).expect("json"),
            },
        }
    }

    #[test]
    fn a_resent_yield_is_recorded_once() {
        let shared = with_task();
        for (id, value) in [("y1", 1), ("y2", 2), ("y1", 1), ("y2", 2), ("y3", 3)] {
            assert!(matches!(
                shared.report("1", &yield_report(id, value)),
                ReportEffect::Recorded { ack: false }
            ));
        }
        let snapshot = shared.snapshot("3").expect("task");
        let yields: Vec<&Value> = snapshot
            .events
            .iter()
            .filter(|event| event.kind == "YIELD")
            .map(|event| &event.fields["returns"]["return0"])
            .collect();
        assert_eq!(yields, [&json!(1), &json!(2), &json!(3)]);
        assert_eq!(snapshot.received.get("YIELD"), Some(&5));
    }

    #[test]
    fn text_longer_than_the_server_stores_is_refused() {
        let shared = with_task();
        let fits = Report::new(
            "3",
            ReportKind::Failed {
                error: "é".repeat(MAX_MESSAGE_CHARS),
            },
        );
        let too_long = Report::new(
            "3",
            ReportKind::Log {
                message: "x".repeat(MAX_MESSAGE_CHARS + 1),
                level: crate::protocol::LogLevel::Info,
            },
        );
        assert!(matches!(
            shared.report("1", &too_long),
            ReportEffect::TooLong("LOG")
        ));
        assert!(matches!(
            shared.report("1", &fits),
            ReportEffect::Recorded { ack: true }
        ));
        assert!(shared.snapshot("3").expect("task").done);
    }

    #[test]
    fn retention_is_bounded_per_task_and_in_total() {
        let shared = with_task();
        let big = "y".repeat(1024 * 1024);
        let returns = |index: usize| format!("{{\"return0\": \"{index}{big}\"}}");
        let count = MAX_TASK_EVENT_BYTES / big.len() + 8;
        for index in 0..count {
            let report = Report {
                task: "3".into(),
                id: format!("y{index}"),
                seq: None,
                kind: ReportKind::Yield {
                    returns: RawValue::from_string(returns(index)).expect("json"),
                },
            };
            shared.report("1", &report);
        }
        let snapshot = shared.snapshot("3").expect("task");
        assert!(snapshot.dropped_events >= 8, "{}", snapshot.dropped_events);
        assert!(shared.db().event_bytes <= MAX_TASK_EVENT_BYTES);
        // Finished tasks go, oldest first, once the total is over its bound.
        shared.report("1", &Report::new("3", ReportKind::Completed));
        let mut tasks = Vec::new();
        while shared.db().tasks.contains_key(&3) {
            let task = shared.assign("x", Map::new(), None).expect("assigns");
            for index in 0..MAX_TASK_EVENT_BYTES / big.len() {
                let report = Report {
                    task: task.clone(),
                    id: format!("y{index}"),
                    seq: None,
                    kind: ReportKind::Yield {
                        returns: RawValue::from_string(returns(index)).expect("json"),
                    },
                };
                shared.report("1", &report);
            }
            tasks.push(task);
            assert!(tasks.len() <= MAX_EVENT_BYTES / MAX_TASK_EVENT_BYTES + 1);
        }
        assert!(shared.db().event_bytes <= MAX_EVENT_BYTES);
        // Running tasks are kept whole.
        assert!(tasks.iter().all(|task| shared.snapshot(task).is_some()));
    }
}
