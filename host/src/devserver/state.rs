//! What the local server remembers (its storage): agents (keyed by token), their
//! implementations, tasks and their events, behind one lock that nothing awaits while
//! holding. What changes it lives in the submodules: [`session`] for an agent's socket
//! (REGISTER, reports, calls from running tasks), [`resolvers`] for the agent-facing GraphQL
//! and the controls, [`callers`] for the caller-facing GraphQL.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::DevServerConfig;
use super::feed::Subscribers;
use crate::protocol::{Assign, ReportType, TaskEventKind, ToAgent};

mod callers;
mod resolvers;
mod session;
pub(crate) use callers::CallerAssign;
pub(crate) use session::{Outgoing, Registration, ReportEffect};

/// Something that happened to a task, as a caller sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerEvent {
    /// The report type (`STARTED`, `YIELD`, `COMPLETED`, ...), or one of the server's own
    /// (`ASSIGNED`, `DISCONNECTED`, `CANCELLING`, ...); serialized as its wire name.
    pub kind: TaskEventKind,
    /// The report's fields (`returns`, `progress`, `message`, `level`, `error`).
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

impl ServerEvent {
    fn new(kind: TaskEventKind) -> Self {
        ServerEvent {
            kind,
            fields: Map::new(),
        }
    }

    fn with(kind: TaskEventKind, message: &str) -> Self {
        let mut event = ServerEvent::new(kind);
        event.fields.insert("message".into(), Value::from(message));
        event
    }

    /// Whether the task is over after this event, as far as a caller is concerned
    /// (`DISCONNECTED` means the fate is unknown; a later report may still come).
    pub fn is_terminal(&self) -> bool {
        self.kind.is_terminal()
    }
}

struct Live {
    connection: u64,
    outbox: mpsc::UnboundedSender<Outgoing>,
    /// Set by [`Shared::silence`]: the connection neither sends nor reads any more.
    silent: Arc<AtomicBool>,
}

struct Implementation {
    id: String,
    interface: String,
    definition: Value,
    action_hash: String,
    /// The `dependencies` given at `implementAgent` (slots a child call may name).
    dependencies: Value,
}

struct AgentRecord {
    id: String,
    token: String,
    name: String,
    hash: String,
    implementations: Vec<Implementation>,
    live: Option<Live>,
    session_id: Option<String>,
    grace: Option<tokio::task::AbortHandle>,
    /// A lost connection still counts as live until then.
    stale_until: Option<Instant>,
}

impl AgentRecord {
    /// Whether a connection is live, or lost but not yet noticed as such.
    fn connected(&self) -> bool {
        self.live.is_some() || self.stale_until.is_some_and(|until| Instant::now() < until)
    }

    fn to_json(&self) -> Value {
        json!({
            "__typename": "Agent",
            "id": self.id,
            "name": self.name,
            "hash": self.hash,
            "connected": self.connected(),
            "kind": "WEBSOCKET",
            "client": {"__typename": "Client", "id": "dev", "clientId": "dev"},
            "user": {"__typename": "User", "id": "1", "sub": "dev"},
            "organization": {"__typename": "Organization", "id": "1", "slug": "dev"},
            "memoryShelve": {"__typename": "MemoryShelve", "id": self.id},
            "implementations": self.implementations.iter().map(|implementation| json!({
                "__typename": "Implementation",
                "id": implementation.id,
                "interface": implementation.interface,
                "action": {"__typename": "Action", "hash": implementation.action_hash},
            })).collect::<Vec<_>>(),
        })
    }
}

/// Events kept per task; older ones are dropped first (followers saw them live).
pub const MAX_TASK_EVENTS: usize = 10_000;
/// Bytes of event text (returns, messages) kept per task; older events are dropped first.
pub const MAX_TASK_EVENT_BYTES: usize = 64 * 1024 * 1024;
/// Bytes of event text kept for all tasks; the oldest finished tasks are forgotten first.
pub const MAX_EVENT_BYTES: usize = 256 * 1024 * 1024;
/// Longest text of an event's message or error the real server stores (its column size);
/// a longer one fails its database insert and it closes the socket with 3003.
pub const MAX_MESSAGE_CHARS: usize = 30_000;
/// The fixed cost counted per event.
const EVENT_OVERHEAD: usize = 64;

struct TaskRecord {
    agent: String,
    /// The implementation it runs (its dependencies resolve its children's calls).
    implementation: String,
    /// For a child task: the agent that called it, which gets its events as `*_EVENT`.
    calling_agent: Option<String>,
    /// For a child task: its parent task.
    parent: Option<String>,
    events: Vec<ServerEvent>,
    /// The bytes each kept event counts, in step with `events`.
    costs: Vec<usize>,
    bytes: usize,
    dropped_events: usize,
    done: bool,
    received: HashMap<ReportType, usize>,
    /// The ids of the YIELDs recorded (a resent one is recorded once), at most
    /// [`MAX_TASK_EVENTS`] of the latest.
    yields: HashSet<String>,
    yield_order: VecDeque<String>,
    /// Followers of the task; dropped after its terminal event (their streams end).
    watchers: Vec<mpsc::UnboundedSender<ServerEvent>>,
    /// Set for tasks a GraphQL caller assigned: its `mytasks` feed gets every event.
    caller: Option<callers::CallerTask>,
}

impl TaskRecord {
    fn new(agent: String, implementation: String) -> Self {
        TaskRecord {
            agent,
            implementation,
            calling_agent: None,
            parent: None,
            events: Vec::new(),
            costs: Vec::new(),
            bytes: 0,
            dropped_events: 0,
            done: false,
            received: HashMap::new(),
            yields: HashSet::new(),
            yield_order: VecDeque::new(),
            watchers: Vec::new(),
            caller: None,
        }
    }

    /// Records `event`, which counts `cost` bytes; returns how many bytes were freed.
    fn push_costing(&mut self, event: ServerEvent, cost: usize) -> usize {
        if let Some(caller) = &self.caller {
            caller.publish(self.events.len() + self.dropped_events, &event);
        }
        self.watchers
            .retain(|watcher| watcher.send(event.clone()).is_ok());
        if event.is_terminal() {
            self.watchers.clear();
        }
        self.events.push(event);
        self.costs.push(cost);
        self.bytes += cost;
        let mut freed = 0;
        while self.events.len() > 1
            && (self.events.len() > MAX_TASK_EVENTS || self.bytes > MAX_TASK_EVENT_BYTES)
        {
            self.events.remove(0);
            let cost = self.costs.remove(0);
            self.bytes -= cost;
            freed += cost;
            self.dropped_events += 1;
        }
        freed
    }

    /// Records an event without text of its own; returns how many bytes were freed.
    fn push(&mut self, event: ServerEvent) -> usize {
        self.push_costing(event, 0)
    }

    /// Whether the YIELD `id` is recorded already; remembers it if not.
    fn seen_yield(&mut self, id: &str) -> bool {
        if self.yields.contains(id) {
            return true;
        }
        self.yields.insert(id.to_string());
        self.yield_order.push_back(id.to_string());
        if self.yield_order.len() > MAX_TASK_EVENTS
            && let Some(old) = self.yield_order.pop_front()
        {
            self.yields.remove(&old);
        }
        false
    }
}

/// What the local server knows about one task (for tests and the dev API).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSnapshot {
    /// Everything that happened, in order.
    pub events: Vec<ServerEvent>,
    /// Whether a terminal report arrived.
    pub done: bool,
    /// How many reports of each type arrived, duplicates included.
    pub received: HashMap<ReportType, usize>,
    /// How many of the oldest events were dropped to keep within the retention bounds.
    pub dropped_events: usize,
}

/// An action some agent implements.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OfferedAction {
    /// The interface (action key).
    pub interface: String,
    /// The agent's name.
    pub agent: String,
    /// Whether that agent is connected.
    pub connected: bool,
    /// The registered definition.
    pub definition: Value,
}

/// A control message a caller can send to a running task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// CANCEL: the task may end on its own within its grace period.
    Cancel,
    /// INTERRUPT: the task is stopped at once.
    Interrupt,
    /// PAUSE: the task parks until RESUME.
    Pause,
    /// RESUME (`true`: step).
    Resume(bool),
}

#[derive(Default)]
struct Db {
    next_id: u64,
    agents: Vec<AgentRecord>,
    tasks: BTreeMap<u64, TaskRecord>,
    /// Event bytes kept for all tasks.
    event_bytes: usize,
    heartbeats_answered: u64,
    closes: Vec<u16>,
    registrations: u64,
    /// The `mytasks` subscribers of each caller token.
    feeds: HashMap<String, Arc<Subscribers>>,
}

impl Db {
    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn agent_by_token(&mut self, token: &str) -> Option<&mut AgentRecord> {
        self.agents.iter_mut().find(|agent| agent.token == token)
    }

    fn agent_by_id(&mut self, id: &str) -> Option<&mut AgentRecord> {
        self.agents.iter_mut().find(|agent| agent.id == id)
    }

    /// Every implementation of every agent, with its agent.
    fn implementations(&self) -> impl Iterator<Item = (&AgentRecord, &Implementation)> {
        self.agents.iter().flat_map(|agent| {
            agent
                .implementations
                .iter()
                .map(move |implementation| (agent, implementation))
        })
    }

    fn in_flight(&self, agent: &str) -> Vec<u64> {
        self.tasks
            .iter()
            .filter(|(_, task)| task.agent == agent && !task.done)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Forgets the oldest finished tasks while more than [`MAX_EVENT_BYTES`] are kept.
    fn forget_over_bound(&mut self) {
        while self.event_bytes > MAX_EVENT_BYTES {
            let Some(oldest) = self
                .tasks
                .iter()
                .find(|(_, task)| task.done)
                .map(|(id, _)| *id)
            else {
                return;
            };
            if let Some(task) = self.tasks.remove(&oldest) {
                self.event_bytes -= task.bytes;
            }
        }
    }

    fn disconnect_tasks(&mut self, ids: &[u64]) {
        for id in ids {
            if let Some(task) = self.tasks.get_mut(id)
                && task
                    .events
                    .last()
                    .is_none_or(|last| last.kind != TaskEventKind::Disconnected)
            {
                let freed = task.push(ServerEvent::with(
                    TaskEventKind::Disconnected,
                    "Agent disconnected. Fate unknown",
                ));
                self.event_bytes -= freed;
            }
        }
    }
}

/// Where a new task goes: its agent, implementation and the agent's connection.
struct Chosen {
    agent: String,
    implementation: String,
    interface: String,
    action: String,
    outbox: mpsc::UnboundedSender<Outgoing>,
}

/// Why [`Db::pick`] found no implementation.
pub(crate) enum NotChosen {
    /// Some fit, but none of their agents is connected.
    Offline,
    /// No registered implementation matches the demand.
    Missing,
}

/// A child task's link to its parent.
struct ParentLink {
    /// The parent task.
    task: String,
    /// The root of the call tree.
    root: String,
    /// The agent that called (gets the child's events).
    calling_agent: String,
}

impl Db {
    /// The first implementation that `fits` on a connected agent.
    fn pick(
        &self,
        fits: impl Fn(&AgentRecord, &Implementation) -> bool,
    ) -> Result<Chosen, NotChosen> {
        let mut offered = false;
        for (agent, implementation) in self.implementations() {
            if !fits(agent, implementation) {
                continue;
            }
            offered = true;
            if let Some(live) = &agent.live {
                return Ok(Chosen {
                    agent: agent.id.clone(),
                    implementation: implementation.id.clone(),
                    interface: implementation.interface.clone(),
                    action: implementation.action_hash.clone(),
                    outbox: live.outbox.clone(),
                });
            }
        }
        Err(if offered {
            NotChosen::Offline
        } else {
            NotChosen::Missing
        })
    }

    /// [`pick`](Self::pick), with `wanted` named in the error.
    fn choose(
        &self,
        wanted: &str,
        fits: impl Fn(&AgentRecord, &Implementation) -> bool,
    ) -> Result<Chosen, String> {
        self.pick(fits).map_err(|not_chosen| match not_chosen {
            NotChosen::Offline => {
                format!("No active implementation found for '{wanted}': its agent is offline")
            }
            NotChosen::Missing => format!("No agent implements '{wanted}'"),
        })
    }

    /// Records a new task on `chosen` (announced to a GraphQL `caller`'s feed, if any; the
    /// child of `parent`, if any) and sends it the ASSIGN; returns the task id.
    fn start_task(
        &mut self,
        chosen: Chosen,
        args: Map<String, Value>,
        step: Option<bool>,
        caller: Option<callers::CallerTask>,
        parent: Option<ParentLink>,
    ) -> String {
        let id = self.next_id();
        let task = id.to_string();
        let mut record = TaskRecord::new(chosen.agent, chosen.implementation.clone());
        if let Some(mut caller) = caller {
            caller.announce(&task);
            record.caller = Some(caller);
        }
        record.calling_agent = parent.as_ref().map(|parent| parent.calling_agent.clone());
        record.parent = parent.as_ref().map(|parent| parent.task.clone());
        record.push(ServerEvent::new(TaskEventKind::Assigned));
        self.tasks.insert(id, record);
        self.forget_over_bound();
        let assign = ToAgent::Assign(Box::new(Assign {
            id: uuid::Uuid::new_v4().to_string(),
            interface: chosen.interface,
            step,
            task: task.clone(),
            root: parent.as_ref().map(|parent| parent.root.clone()),
            parent: parent.map(|parent| parent.task),
            resolution: None,
            capture: Some(false),
            reference: Some(uuid::Uuid::new_v4().to_string()),
            args,
            message: None,
            user: "dev".into(),
            org: "dev".into(),
            action: chosen.action,
            implementation: chosen.implementation,
            // A stand-in for rekuest's signed provenance JWT: the same per-task role, unsigned.
            token: Some(format!("dev-task-{task}")),
        }));
        let _ = chosen.outbox.send(Outgoing::Text(assign.to_json()));
        task
    }

    /// Sends a child's event to the agent that called it, as `{KIND}_EVENT`.
    fn mirror_to_caller(
        &mut self,
        caller: &str,
        report: &crate::protocol::Report,
        event: ServerEvent,
    ) {
        let Some(live) = self
            .agent_by_id(caller)
            .and_then(|agent| agent.live.as_ref())
        else {
            // Best effort, like the real server: lost while the caller is away.
            return;
        };
        let frame = ToAgent::Execution(crate::protocol::ExecutionEvent {
            kind: format!("{}_EVENT", event.kind),
            task: report.task.clone(),
            event: report.id.clone(),
            seq: report.seq.and_then(|seq| i64::try_from(seq).ok()),
            fields: event.fields,
        });
        let _ = live.outbox.send(Outgoing::Text(frame.to_json()));
    }

    /// The root of `task`'s call tree.
    fn root_of(&self, task: &str) -> String {
        let mut root = task.to_string();
        let mut current = self.tasks.get(&task.parse::<u64>().unwrap_or(0));
        while let Some(parent) = current.and_then(|record| record.parent.clone()) {
            current = self.tasks.get(&parent.parse::<u64>().unwrap_or(0));
            root = parent;
        }
        root
    }

    /// The implementation a call through the dependency `slot` (and `method`) of the
    /// implementation `of` demands: its action key or hash.
    fn demand(&self, of: &str, slot: &str, method: Option<&str>) -> Result<Demand, String> {
        let implementation = self
            .agents
            .iter()
            .flat_map(|agent| &agent.implementations)
            .find(|implementation| implementation.id == of)
            .ok_or("the calling task's implementation is gone")?;
        let dependency = implementation
            .dependencies
            .as_array()
            .into_iter()
            .flatten()
            .find(|dependency| dependency.get("key").and_then(Value::as_str) == Some(slot))
            .ok_or_else(|| {
                format!(
                    "'{}' declares no dependency '{slot}'",
                    implementation.interface
                )
            })?;
        let method = method.unwrap_or(slot);
        let action = dependency
            .get("actionDependencies")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|action| action.get("key").and_then(Value::as_str) == Some(method))
            .ok_or_else(|| format!("the dependency '{slot}' has no action '{method}'"))?;
        let demand = action.get("demand").unwrap_or(&Value::Null);
        if let Some(hash) = demand.get("hash").and_then(Value::as_str) {
            return Ok(Demand::Hash(hash.to_string()));
        }
        match demand.get("key").and_then(Value::as_str) {
            Some(key) => Ok(Demand::Key(key.to_string())),
            None => Err(format!(
                "the dependency '{slot}' demands neither a hash nor a key"
            )),
        }
    }
}

/// What a dependency slot demands.
enum Demand {
    Hash(String),
    Key(String),
}

/// The server's state; shared by its connections and its handle.
pub(crate) struct Shared {
    pub(crate) config: DevServerConfig,
    /// The login endpoints and the tokens they issued.
    pub(crate) platform: super::platform::Platform,
    db: Mutex<Db>,
    /// The agents' shelves, states and locks.
    pub(crate) keep: super::keep::KeepStore,
    next_connection: AtomicU64,
    /// Whether agent connections are read (tests switch it off).
    reading: tokio::sync::watch::Sender<bool>,
}

impl Shared {
    pub(crate) fn new(config: DevServerConfig) -> Arc<Self> {
        Arc::new(Shared {
            platform: super::platform::Platform::new(config.platform.clone()),
            config,
            db: Mutex::new(Db::default()),
            keep: super::keep::KeepStore::default(),
            next_connection: AtomicU64::new(1),
            reading: tokio::sync::watch::Sender::new(true),
        })
    }

    fn db(&self) -> MutexGuard<'_, Db> {
        // A panic while holding the lock leaves plain data; keep serving it.
        self.db
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whom `token` stands for: the client of an access token the platform issued (while it
    /// is valid), or a static token itself; `Err` says why it is refused.
    pub(crate) fn principal(&self, token: &str) -> Result<String, &'static str> {
        if let Some(client) = self.platform.principal(token) {
            return client;
        }
        let allowed = !token.is_empty()
            && self
                .config
                .tokens
                .as_ref()
                .is_none_or(|tokens| tokens.iter().any(|allowed| allowed == token));
        if allowed {
            Ok(token.to_string())
        } else {
            Err("Invalid token")
        }
    }

    /// The events so far and a receiver for the rest (it ends after the terminal event),
    /// taken atomically.
    pub(crate) fn watch(
        &self,
        task: &str,
    ) -> Option<(Vec<ServerEvent>, mpsc::UnboundedReceiver<ServerEvent>)> {
        let mut db = self.db();
        let record = db.tasks.get_mut(&task.parse::<u64>().ok()?)?;
        let (sender, receiver) = mpsc::unbounded_channel();
        if !record.done {
            record.watchers.push(sender);
        }
        Some((record.events.clone(), receiver))
    }

    /// The child tasks that `task` called, in the order they were started.
    pub(crate) fn children(&self, task: &str) -> Vec<String> {
        self.db()
            .tasks
            .iter()
            .filter(|(_, record)| record.parent.as_deref() == Some(task))
            .map(|(id, _)| id.to_string())
            .collect()
    }

    pub(crate) fn snapshot(&self, task: &str) -> Option<TaskSnapshot> {
        let db = self.db();
        let record = db.tasks.get(&task.parse::<u64>().ok()?)?;
        Some(TaskSnapshot {
            events: record.events.clone(),
            done: record.done,
            received: record.received.clone(),
            dropped_events: record.dropped_events,
        })
    }

    pub(crate) fn actions(&self) -> Vec<OfferedAction> {
        self.db()
            .implementations()
            .map(|(agent, implementation)| OfferedAction {
                interface: implementation.interface.clone(),
                agent: agent.name.clone(),
                connected: agent.live.is_some(),
                definition: implementation.definition.clone(),
            })
            .collect()
    }

    /// Sends `outgoing` to the live connection of the agent with `token`.
    /// The id of the agent of `token`, if it was ensured.
    pub(crate) fn agent_id(&self, token: &str) -> Option<String> {
        self.db()
            .agent_by_token(token)
            .map(|agent| agent.id.clone())
    }

    /// Sends to the live connection of the agent `id`; false if it is not connected.
    pub(crate) fn send_to_agent(&self, id: &str, outgoing: Outgoing) -> bool {
        let mut db = self.db();
        db.agent_by_id(id)
            .and_then(|agent| agent.live.as_ref())
            .is_some_and(|live| live.outbox.send(outgoing).is_ok())
    }

    pub(crate) fn send_to(&self, token: &str, outgoing: Outgoing) -> bool {
        let mut db = self.db();
        db.agent_by_token(token)
            .and_then(|agent| agent.live.as_ref())
            .is_some_and(|live| live.outbox.send(outgoing).is_ok())
    }

    pub(crate) fn is_connected(&self, token: &str) -> bool {
        self.db()
            .agent_by_token(token)
            .is_some_and(|agent| agent.live.is_some())
    }

    pub(crate) fn counts_as_connected(&self, token: &str) -> bool {
        self.db()
            .agent_by_token(token)
            .is_some_and(|agent| agent.connected())
    }

    pub(crate) fn agent_hash(&self, token: &str) -> Option<String> {
        self.db()
            .agent_by_token(token)
            .map(|agent| agent.hash.clone())
    }

    pub(crate) fn heartbeats(&self) -> u64 {
        self.db().heartbeats_answered
    }

    pub(crate) fn registrations(&self) -> u64 {
        self.db().registrations
    }

    pub(crate) fn closes(&self) -> Vec<u16> {
        self.db().closes.clone()
    }
}
