//! What the local server remembers: agents (keyed by token), their implementations, tasks
//! and their events. One lock guards it all; nothing awaits while holding it.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::DevServerConfig;
use super::feed::Subscribers;
use crate::protocol::{
    Assign, AssignRequest, ChildControl, Inquiry, ReportType, TaskEventKind, ToAgent,
};

mod callers;
pub(crate) use callers::CallerAssign;

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
    /// CANCEL.
    Cancel,
    /// INTERRUPT.
    Interrupt,
    /// PAUSE.
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
    /// None fits.
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
        for agent in &self.agents {
            for implementation in &agent.implementations {
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

/// Digest of a definition, the action's `hash`.
fn action_hash(definition: &Value) -> String {
    hex::encode(Sha256::digest(definition.to_string().as_bytes()))
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

    /// GraphQL `ensureAgent`: get or create the token's agent.
    pub(crate) fn ensure_agent(&self, token: &str, input: &Value) -> Value {
        let name = input
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("agent")
            .to_string();
        let mut db = self.db();
        if db.agent_by_token(token).is_none() {
            let id = db.next_id().to_string();
            db.agents.push(AgentRecord {
                id,
                token: token.to_string(),
                name: name.clone(),
                hash: String::new(),
                implementations: Vec::new(),
                live: None,
                session_id: None,
                grace: None,
                stale_until: None,
            });
        }
        match db.agent_by_token(token) {
            Some(agent) => {
                agent.name = name;
                self.keep.wipe(&agent.id);
                agent.to_json()
            }
            None => Value::Null,
        }
    }

    /// GraphQL `implementAgent`: replace the agent's implementations.
    pub(crate) fn implement_agent(&self, token: &str, input: &Value) -> Result<Value, String> {
        let mut parsed = Vec::new();
        for (index, implementation) in input
            .get("implementations")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let definition = implementation
                .get("definition")
                .filter(|definition| definition.is_object())
                .ok_or_else(|| format!("implementations[{index}] has no definition"))?;
            let interface = implementation
                .get("interface")
                .and_then(Value::as_str)
                .or_else(|| definition.get("key").and_then(Value::as_str))
                .ok_or_else(|| format!("implementations[{index}] has no interface"))?;
            let dependencies = implementation
                .get("dependencies")
                .cloned()
                .unwrap_or(Value::Array(Vec::new()));
            parsed.push((interface.to_string(), definition.clone(), dependencies));
        }
        let hash = input
            .get("hash")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut db = self.db();
        let mut implementations = Vec::new();
        for (interface, definition, dependencies) in parsed {
            let id = db.next_id().to_string();
            implementations.push(Implementation {
                id,
                action_hash: action_hash(&definition),
                interface,
                definition,
                dependencies,
            });
        }
        let agent = db
            .agent_by_token(token)
            .ok_or("Agent not found: call ensureAgent first")?;
        if let Some(name) = input.get("name").and_then(Value::as_str) {
            agent.name = name.to_string();
        }
        agent.hash = hash;
        agent.implementations = implementations;
        self.keep.implemented(&agent.id, input);
        Ok(agent.to_json())
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

    /// Creates a task for `interface` on a connected agent implementing it and sends ASSIGN.
    pub(crate) fn assign(
        &self,
        interface: &str,
        args: Map<String, Value>,
        step: Option<bool>,
    ) -> Result<String, String> {
        let mut db = self.db();
        let chosen = db.choose(interface, |_, implementation| {
            implementation.interface == interface
        })?;
        Ok(db.start_task(chosen, args, step, None, None))
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

    /// Sends a control message for `task` to its agent.
    pub(crate) fn control(&self, task: &str, control: Control) -> Result<(), String> {
        let mut db = self.db();
        let id = task
            .parse::<u64>()
            .ok()
            .filter(|id| db.tasks.contains_key(id))
            .ok_or_else(|| format!("No task '{task}'"))?;
        let Some(record) = db.tasks.get(&id) else {
            return Err(format!("No task '{task}'"));
        };
        if record.done {
            return Err(format!("Task '{task}' is already done"));
        }
        let agent = record.agent.clone();
        let outbox = db
            .agent_by_id(&agent)
            .and_then(|agent| agent.live.as_ref().map(|live| live.outbox.clone()))
            .ok_or_else(|| format!("The agent of task '{task}' is offline"))?;
        let message_id = uuid::Uuid::new_v4().to_string();
        let task_id = task.to_string();
        let (frame, kind) = match control {
            Control::Cancel => (
                ToAgent::Cancel {
                    id: message_id,
                    task: task_id,
                },
                TaskEventKind::Cancelling,
            ),
            Control::Interrupt => (
                ToAgent::Interrupt {
                    id: message_id,
                    task: task_id,
                },
                TaskEventKind::Interrupting,
            ),
            Control::Pause => (
                ToAgent::Pause {
                    id: message_id,
                    task: task_id,
                },
                TaskEventKind::Pausing,
            ),
            Control::Resume(step) => (
                ToAgent::Resume {
                    id: message_id,
                    task: task_id,
                    step,
                },
                TaskEventKind::Resuming,
            ),
        };
        if let Some(record) = db.tasks.get_mut(&id) {
            let freed = record.push(ServerEvent::new(kind));
            db.event_bytes -= freed;
        }
        let _ = outbox.send(Outgoing::Text(frame.to_json()));
        Ok(())
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
        let db = self.db();
        db.agents
            .iter()
            .flat_map(|agent| {
                agent
                    .implementations
                    .iter()
                    .map(move |implementation| OfferedAction {
                        interface: implementation.interface.clone(),
                        agent: agent.name.clone(),
                        connected: agent.live.is_some(),
                        definition: implementation.definition.clone(),
                    })
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

    use super::*;
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
