//! What outlives a task on this agent: memory shelves (values kept under drawers registered
//! with the server, dropped by COLLECT), agent states (declared by actions, changed through
//! the host API, streamed to the server as JSON patches) and locks (one task at a time per
//! lock). Everything is bounded here; guests reach it only through the `keep` imports.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};
use tokio::sync::{Notify, Semaphore};

use super::caps::AgentCaps;
use super::registration::{GraphqlClient, Implementation};
use crate::definition::{Port, PortKind, StateSchema, fits, state_input};
use crate::protocol::{FromAgent, KeepFrame, SessionInit};
use crate::runtime::limits::format_bytes;
use crate::runtime::{KeepPort, Shelving};

/// Default of [`KeepConfig::shelf_bytes`].
pub const DEFAULT_SHELF_BYTES: usize = 256 * 1024 * 1024;
/// Default of [`KeepConfig::shelf_drawers`].
pub const DEFAULT_SHELF_DRAWERS: usize = 1024;
/// A `STATE_SNAPSHOT` follows every this many revisions.
pub const SNAPSHOT_EVERY: u64 = 100;
/// Longest structure identifier of a shelved drawer: the same bound as a definition's
/// identifiers (one rule for structure identifiers, wherever they appear).
const MAX_IDENTIFIER: usize = crate::definition::DefinitionCaps::DEFAULT.identifier;

const SHELVE: &str = "mutation ShelveInMemoryDrawer($input: ShelveInMemoryDrawerInput!) { shelveInMemoryDrawer(input: $input) { id } }";
const UNSHELVE: &str = "mutation UnshelveMemoryDrawer($input: UnshelveMemoryDrawerInput!) { unshelveMemoryDrawer(input: $input) }";

/// Bounds of what the agent keeps, and where its states persist.
#[derive(Debug, Clone)]
pub struct KeepConfig {
    /// Bytes (of JSON text) all drawers may hold together.
    pub shelf_bytes: usize,
    /// Drawers that may exist at once.
    pub shelf_drawers: usize,
    /// A file the states are written to on every change and read from at start.
    pub state_file: Option<PathBuf>,
}

impl Default for KeepConfig {
    fn default() -> Self {
        KeepConfig {
            shelf_bytes: DEFAULT_SHELF_BYTES,
            shelf_drawers: DEFAULT_SHELF_DRAWERS,
            state_file: None,
        }
    }
}

/// Why the agent's states cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum KeepError {
    /// Two actions declare one state key with different schemas.
    #[error(
        "the state '{key}' is declared by several actions with different schemas; a state key \
         names one schema per agent"
    )]
    ConflictingState {
        /// The key.
        key: String,
    },
    /// The state file exists but cannot be read.
    #[error("cannot read the state file {}: {reason}", path.display())]
    StateFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// The states and locks `implementations` declare, as `implementAgent` takes them (each once).
pub fn declared(implementations: &[Implementation]) -> (Vec<Value>, Vec<Value>) {
    let mut states: Vec<&StateSchema> = Vec::new();
    let mut locks: Vec<&str> = Vec::new();
    for implementation in implementations {
        for state in &implementation.definition.states {
            if !states.iter().any(|known| known.key == state.key) {
                states.push(state);
            }
        }
        for lock in &implementation.definition.locks {
            if !locks.contains(&lock.as_str()) {
                locks.push(lock);
            }
        }
    }
    (
        states.iter().copied().map(state_input).collect(),
        locks
            .iter()
            .map(|key| json!({"key": key, "definition": {"key": key}}))
            .collect(),
    )
}

/// One kept value.
struct Drawer {
    value: Arc<str>,
}

#[derive(Default)]
struct Shelf {
    drawers: HashMap<String, Drawer>,
    bytes: usize,
    /// Shelvings waiting for the server: they count against the bounds already.
    pending: usize,
    pending_bytes: usize,
}

struct States {
    schemas: HashMap<String, StateSchema>,
    values: Map<String, Value>,
    /// One revision counter for all states of this process.
    rev: u64,
    last_snapshot: u64,
}

/// The agent's shelves, states and locks; shared by the dispatcher (locks), the tasks (through
/// [`KeepPort`]) and the connection (which writes the frames and routes COLLECT).
pub struct Keep {
    session_id: String,
    graphql: GraphqlClient,
    config: KeepConfig,
    /// Largest state value (its JSON text): [`AgentCaps::state_bytes`].
    state_bytes: usize,
    shelf: Mutex<Shelf>,
    states: Mutex<States>,
    outgoing: Mutex<VecDeque<FromAgent>>,
    ready: Notify,
    locks: HashMap<String, Arc<Semaphore>>,
    this: Weak<Keep>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The value a state starts with: each port's default, else an empty value of its kind (null
/// for a nullable port).
fn initial_value(ports: &[Port]) -> Value {
    fn of(port: &Port) -> Value {
        if let Some(default) = &port.default {
            return default.clone();
        }
        if port.nullable {
            return Value::Null;
        }
        match port.kind {
            PortKind::Int => json!(0),
            PortKind::Float => json!(0.0),
            PortKind::String => json!(""),
            PortKind::Bool => json!(false),
            PortKind::List => json!([]),
            PortKind::Dict => json!({}),
            PortKind::Model => initial_value(port.children.as_deref().unwrap_or(&[])),
            _ => Value::Null,
        }
    }
    Value::Object(
        ports
            .iter()
            .map(|port| (port.key.clone(), of(port)))
            .collect(),
    )
}

/// Whether `value` is a JSON object of exactly the schema's ports, each fitting.
fn check_state(schema: &StateSchema, value: &Value) -> Result<(), String> {
    let Value::Object(fields) = value else {
        return Err(format!(
            "the state '{}' must be a JSON object of its fields",
            schema.key
        ));
    };
    if let Some(unknown) = fields
        .keys()
        .find(|key| !schema.ports.iter().any(|port| &port.key == *key))
    {
        return Err(format!(
            "the state '{}' has no field '{unknown}'",
            schema.key
        ));
    }
    for port in &schema.ports {
        if !fits(port, fields.get(&port.key).unwrap_or(&Value::Null)) {
            return Err(format!(
                "the state '{}': field '{}' does not fit its {} port",
                schema.key,
                port.key,
                port.kind.as_str()
            ));
        }
    }
    Ok(())
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |elapsed| elapsed.as_secs_f64())
}

fn read_state_file(path: &Path) -> Result<Map<String, Value>, KeepError> {
    let failed = |reason: String| KeepError::StateFile {
        path: path.to_path_buf(),
        reason,
    };
    match std::fs::read(path) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(Value::Object(states)) => Ok(states),
            Ok(_) => Err(failed("it is not a JSON object of states".into())),
            Err(error) => Err(failed(error.to_string())),
        },
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Map::new()),
        Err(error) => Err(failed(error.to_string())),
    }
}

/// Writes `states` to `path` whole (a temporary file renamed over it).
fn write_state_file(path: &Path, states: &Map<String, Value>) -> std::io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    std::fs::write(&temporary, Value::Object(states.clone()).to_string())?;
    std::fs::rename(&temporary, path)
}

/// Frees a shelving's share of the bounds when it ends, whether it stored its drawer or not
/// (the task may be stopped while the server answers).
struct Reservation<'a> {
    keep: &'a Keep,
    bytes: usize,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut shelf = lock(&self.keep.shelf);
        shelf.pending -= 1;
        shelf.pending_bytes -= self.bytes;
    }
}

impl Keep {
    /// The keep of an agent serving `implementations` (their states start from `config`'s
    /// state file, else empty), registering drawers through `graphql`.
    pub fn new(
        session_id: String,
        graphql: GraphqlClient,
        config: KeepConfig,
        caps: &AgentCaps,
        implementations: &[Implementation],
    ) -> Result<Arc<Self>, KeepError> {
        let mut schemas: HashMap<String, StateSchema> = HashMap::new();
        let mut locks = HashMap::new();
        for implementation in implementations {
            for state in &implementation.definition.states {
                match schemas.get(&state.key) {
                    Some(known) if known.ports != state.ports => {
                        return Err(KeepError::ConflictingState {
                            key: state.key.clone(),
                        });
                    }
                    Some(_) => {}
                    None => {
                        schemas.insert(state.key.clone(), state.clone());
                    }
                }
            }
            for key in &implementation.definition.locks {
                locks
                    .entry(key.clone())
                    .or_insert_with(|| Arc::new(Semaphore::new(1)));
            }
        }
        let mut saved = match &config.state_file {
            Some(path) if !schemas.is_empty() => read_state_file(path)?,
            _ => Map::new(),
        };
        let mut values = Map::new();
        for (key, schema) in &schemas {
            let value = match saved.remove(key) {
                Some(value) if check_state(schema, &value).is_ok() => value,
                Some(_) => {
                    tracing::warn!(
                        state = %key,
                        "the saved value no longer fits the state's schema; starting it afresh"
                    );
                    initial_value(&schema.ports)
                }
                None => initial_value(&schema.ports),
            };
            values.insert(key.clone(), value);
        }
        Ok(Arc::new_cyclic(|this| Keep {
            session_id,
            graphql,
            config,
            state_bytes: caps.state_bytes,
            shelf: Mutex::default(),
            states: Mutex::new(States {
                schemas,
                values,
                rev: 0,
                last_snapshot: 0,
            }),
            outgoing: Mutex::default(),
            ready: Notify::new(),
            locks,
            this: this.clone(),
        }))
    }

    /// The semaphores of the locks `keys`, sorted by key (so tasks holding several take them
    /// in one order and cannot deadlock).
    pub fn locks_of(&self, keys: &[String]) -> Box<[(String, Arc<Semaphore>)]> {
        let mut locks: Vec<(String, Arc<Semaphore>)> = keys
            .iter()
            .filter_map(|key| {
                self.locks
                    .get(key)
                    .map(|semaphore| (key.clone(), Arc::clone(semaphore)))
            })
            .collect();
        locks.sort_by(|a, b| a.0.cmp(&b.0));
        locks.into()
    }

    fn queue(&self, frame: FromAgent) {
        lock(&self.outgoing).push_back(frame);
        self.ready.notify_one();
    }

    /// The task `task` holds the lock `key` now: tell the server.
    pub fn locked(&self, key: &str, task: &str) {
        self.queue(FromAgent::Keep(KeepFrame::Lock {
            id: uuid::Uuid::new_v4().to_string(),
            key: key.to_string(),
            task: task.to_string(),
        }));
    }

    /// The lock `key` was released: tell the server.
    pub fn unlocked(&self, key: &str) {
        self.queue(FromAgent::Keep(KeepFrame::Unlock {
            id: uuid::Uuid::new_v4().to_string(),
            key: key.to_string(),
        }));
    }

    /// A connection was registered: for an agent with states, `SESSION_INIT` with every
    /// state's value goes first; patches and snapshots not yet written are dropped (the values
    /// they led to are in it). An agent without states sends none.
    pub(crate) fn session_started(&self) {
        let states = lock(&self.states);
        if states.schemas.is_empty() {
            return;
        }
        let mut outgoing = lock(&self.outgoing);
        outgoing.retain(|frame| {
            !matches!(
                frame,
                FromAgent::Keep(KeepFrame::StatePatch { .. } | KeepFrame::StateSnapshot { .. })
            )
        });
        outgoing.push_front(FromAgent::SessionInit(SessionInit {
            id: uuid::Uuid::new_v4().to_string(),
            session_id: self.session_id.clone(),
            states: states.values.clone(),
        }));
        drop(outgoing);
        drop(states);
        self.ready.notify_one();
    }

    /// Resolves when frames wait to be written.
    pub(crate) async fn ready(&self) {
        self.ready.notified().await;
    }

    /// The frames to write now.
    pub(crate) fn take_outgoing(&self) -> Vec<FromAgent> {
        lock(&self.outgoing).drain(..).collect()
    }

    /// Puts frames that could not be written back in front.
    pub(crate) fn requeue(&self, frames: Vec<FromAgent>) {
        if frames.is_empty() {
            return;
        }
        let mut outgoing = lock(&self.outgoing);
        for frame in frames.into_iter().rev() {
            outgoing.push_front(frame);
        }
        drop(outgoing);
        self.ready.notify_one();
    }

    /// COLLECT: drops the drawers kept here and unregisters them on the server.
    pub fn collect(&self, drawers: &[String]) {
        let mut dropped = Vec::new();
        {
            let mut shelf = lock(&self.shelf);
            for id in drawers {
                if let Some(drawer) = shelf.drawers.remove(id) {
                    shelf.bytes -= drawer.value.len();
                    dropped.push(id.clone());
                }
            }
        }
        tracing::info!(
            "COLLECT: dropped {} of {} drawer(s)",
            dropped.len(),
            drawers.len()
        );
        if dropped.is_empty() {
            return;
        }
        let graphql = self.graphql.clone();
        tokio::spawn(async move {
            for id in dropped {
                if let Err(error) = graphql
                    .request(
                        "unregistering a collected drawer (unshelveMemoryDrawer)",
                        UNSHELVE,
                        json!({"input": {"id": id}}),
                    )
                    .await
                {
                    tracing::debug!("{error}");
                }
            }
        });
    }

    /// `ensureAgent` wipes the agent's drawers on the server: drop them here too.
    pub fn forget_drawers(&self) {
        let mut shelf = lock(&self.shelf);
        let count = shelf.drawers.len();
        shelf.drawers.clear();
        shelf.bytes = 0;
        if count > 0 {
            tracing::warn!(
                "dropped {count} shelved drawer(s): registering the agent again (ensureAgent) \
                 wiped them on the server, so their references no longer resolve"
            );
        }
    }

    /// Takes a share of the shelf's bounds for a value of `bytes`, or says why it is full.
    fn reserve(&self, bytes: usize) -> Result<Reservation<'_>, String> {
        let mut shelf = lock(&self.shelf);
        let drawers = shelf.drawers.len() + shelf.pending;
        if drawers >= self.config.shelf_drawers {
            return Err(format!(
                "the shelf is full: this agent keeps {drawers} drawer(s), its limit \
                 (shelf_drawers); nothing was evicted: COLLECT drawers no longer needed"
            ));
        }
        let used = shelf.bytes + shelf.pending_bytes;
        if used.saturating_add(bytes) > self.config.shelf_bytes {
            return Err(format!(
                "the shelf is full: its drawers hold {} and this value's {} would pass the {} \
                 limit (shelf_bytes); nothing was evicted: COLLECT drawers no longer needed",
                format_bytes(used as u64),
                format_bytes(bytes as u64),
                format_bytes(self.config.shelf_bytes as u64)
            ));
        }
        shelf.pending += 1;
        shelf.pending_bytes += bytes;
        Ok(Reservation { keep: self, bytes })
    }

    async fn shelve_value(&self, identifier: String, value_json: String) -> Result<String, String> {
        if identifier.is_empty() || identifier.len() > MAX_IDENTIFIER {
            return Err(format!(
                "a drawer's structure identifier must have 1 to {MAX_IDENTIFIER} bytes"
            ));
        }
        if let Err(error) = serde_json::from_str::<serde::de::IgnoredAny>(&value_json) {
            return Err(format!("the value to shelve is not JSON: {error}"));
        }
        let reservation = self.reserve(value_json.len())?;
        let data = self
            .graphql
            .request(
                "registering a drawer (shelveInMemoryDrawer)",
                SHELVE,
                json!({"input": {
                    "identifier": identifier,
                    "resourceId": uuid::Uuid::new_v4().to_string(),
                    "label": identifier,
                }}),
            )
            .await
            .map_err(|error| format!("the value was not shelved: {error}"))?;
        let Some(id) = data["shelveInMemoryDrawer"]["id"]
            .as_str()
            .map(str::to_string)
        else {
            return Err("the value was not shelved: the server named no drawer".into());
        };
        let mut shelf = lock(&self.shelf);
        shelf.bytes += value_json.len();
        shelf.drawers.insert(
            id.clone(),
            Drawer {
                value: value_json.into(),
            },
        );
        drop(shelf);
        drop(reservation);
        Ok(id)
    }

    /// Replaces state `name` with `value`; queues its patches (and a snapshot when due) and
    /// writes the state file.
    fn change_state(&self, task: &str, name: &str, value: Value) -> Result<(), String> {
        let mut states = lock(&self.states);
        let Some(schema) = states.schemas.get(name) else {
            let mut known: Vec<&str> = states.schemas.keys().map(String::as_str).collect();
            known.sort_unstable();
            return Err(format!(
                "this agent has no state '{name}' (declared: {}); an action declares the \
                 states it uses",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ));
        };
        check_state(schema, &value)?;
        let old = states
            .values
            .insert(name.to_string(), value.clone())
            .unwrap_or(Value::Null);
        let (Value::Object(old), Value::Object(new)) = (old, value) else {
            return Ok(());
        };
        let ts = now();
        let mut patches = Vec::new();
        for (key, value) in &new {
            let op = match old.get(key) {
                Some(before) if before == value => continue,
                Some(_) => "replace",
                None => "add",
            };
            patches.push((op, key, value.clone(), old.get(key).cloned()));
        }
        for (key, before) in &old {
            if !new.contains_key(key) {
                patches.push(("remove", key, Value::Null, Some(before.clone())));
            }
        }
        let mut frames = Vec::with_capacity(patches.len() + 1);
        for (op, key, value, old_value) in patches {
            states.rev += 1;
            frames.push(FromAgent::Keep(KeepFrame::StatePatch {
                id: uuid::Uuid::new_v4().to_string(),
                session_id: self.session_id.clone(),
                global_rev: states.rev,
                state_name: name.to_string(),
                ts,
                op: op.to_string(),
                path: format!("/{}", key.replace('~', "~0").replace('/', "~1")),
                value,
                old_value: old_value.unwrap_or(Value::Null),
                task_id: Some(task.to_string()),
            }));
        }
        if states.rev - states.last_snapshot >= SNAPSHOT_EVERY {
            states.last_snapshot = states.rev;
            frames.push(FromAgent::Keep(KeepFrame::StateSnapshot {
                id: uuid::Uuid::new_v4().to_string(),
                session_id: self.session_id.clone(),
                global_rev: states.rev,
                snapshots: states.values.clone(),
            }));
        }
        if let Some(path) = &self.config.state_file
            && let Err(error) = write_state_file(path, &states.values)
        {
            tracing::warn!(
                "cannot write the state file {}: {error}; the state lives on in memory",
                path.display()
            );
        }
        // Queued under the states lock: patches leave in revision order.
        let mut outgoing = lock(&self.outgoing);
        outgoing.extend(frames);
        drop(outgoing);
        drop(states);
        self.ready.notify_one();
        Ok(())
    }
}

impl KeepPort for Keep {
    fn shelve(&self, identifier: String, value_json: String) -> Shelving {
        let this = self.this.upgrade();
        Box::pin(async move {
            match this {
                Some(keep) => keep.shelve_value(identifier, value_json).await,
                None => Err("the agent is shutting down".into()),
            }
        })
    }

    fn unshelve(&self, drawer: &str) -> Result<String, String> {
        match lock(&self.shelf).drawers.get(drawer) {
            Some(kept) => Ok(kept.value.to_string()),
            None => Err(format!(
                "no drawer '{drawer}' on this agent: it was collected, or it was shelved by \
                 another agent or an earlier run of this host (drawers live as long as the \
                 host process)"
            )),
        }
    }

    fn get_state(&self, name: &str) -> Result<String, String> {
        match lock(&self.states).values.get(name) {
            Some(value) => Ok(value.to_string()),
            None => Err(format!("this agent has no state '{name}'")),
        }
    }

    fn set_state(&self, task: &str, name: &str, value_json: &str) -> Result<(), String> {
        if value_json.len() > self.state_bytes {
            return Err(format!(
                "the state '{name}' would be {}; at most {} is allowed",
                format_bytes(value_json.len() as u64),
                format_bytes(self.state_bytes as u64)
            ));
        }
        let value: Value = serde_json::from_str(value_json)
            .map_err(|error| format!("the state '{name}' is not JSON: {error}"))?;
        self.change_state(task, name, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::parse_definitions;
    use crate::tls::ClientTls;

    fn keep(shelf: KeepConfig) -> Arc<Keep> {
        let definitions = parse_definitions(
            &json!([{
                "key": "increment", "version": "1", "name": "Increment", "kind": "FUNCTION",
                "args": [], "returns": [], "locks": ["counter"],
                "states": [{"key": "counter", "name": "Counter", "ports": [
                    {"key": "count", "kind": "INT", "nullable": false},
                    {"key": "label", "kind": "STRING", "nullable": true},
                ]}],
            }])
            .to_string(),
        )
        .expect("valid definitions");
        let implementations: Vec<Implementation> = definitions
            .into_iter()
            .map(|definition| Implementation {
                interface: definition.key.clone(),
                definition,
            })
            .collect();
        let tls = ClientTls::new(&[]).expect("tls");
        let graphql = GraphqlClient::new(
            "http://127.0.0.1:9/graphql".parse().expect("url"),
            "token".to_string(),
            &tls,
        )
        .expect("client");
        Keep::new(
            "session".into(),
            graphql,
            shelf,
            &AgentCaps::DEFAULT,
            &implementations,
        )
        .expect("keep")
    }

    fn frames(keep: &Keep) -> Vec<Value> {
        keep.take_outgoing()
            .iter()
            .map(|frame| serde_json::from_str(&frame.to_json()).expect("json"))
            .collect()
    }

    #[test]
    fn a_state_starts_at_its_defaults_and_each_change_is_one_patch_per_field() {
        let keep = keep(KeepConfig::default());
        assert_eq!(
            keep.get_state("counter").expect("declared"),
            r#"{"count":0,"label":null}"#
        );
        keep.set_state("7", "counter", r#"{"count":2,"label":"a"}"#)
            .expect("fits");
        keep.set_state("8", "counter", r#"{"count":2,"label":null}"#)
            .expect("fits");
        let seen: Vec<_> = frames(&keep)
            .into_iter()
            .map(|frame| {
                (
                    frame["global_rev"].as_u64().unwrap_or_default(),
                    frame["op"].as_str().unwrap_or_default().to_string(),
                    frame["path"].as_str().unwrap_or_default().to_string(),
                    frame["value"].clone(),
                    frame["task_id"].clone(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                (1, "replace".into(), "/count".into(), json!(2), json!("7")),
                (2, "replace".into(), "/label".into(), json!("a"), json!("7")),
                (
                    3,
                    "replace".into(),
                    "/label".into(),
                    Value::Null,
                    json!("8")
                ),
            ]
        );
    }

    #[test]
    fn values_that_do_not_fit_the_schema_are_refused_and_change_nothing() {
        let keep = keep(KeepConfig::default());
        for (value, expected) in [
            (
                r#"{"count":"x"}"#,
                "field 'count' does not fit its INT port",
            ),
            (r#"{"count":1,"extra":2}"#, "has no field 'extra'"),
            ("[1]", "must be a JSON object"),
            ("{", "is not JSON"),
        ] {
            let refused = keep.set_state("1", "counter", value).expect_err("refused");
            assert!(refused.contains(expected), "{refused}");
        }
        let unknown = keep.set_state("1", "position", "{}").expect_err("refused");
        assert!(
            unknown.contains("no state 'position' (declared: counter)"),
            "{unknown}"
        );
        assert!(frames(&keep).is_empty());
        assert_eq!(
            keep.get_state("counter").expect("declared"),
            r#"{"count":0,"label":null}"#
        );
    }

    #[test]
    fn session_init_goes_first_and_replaces_unsent_patches_and_a_snapshot_follows_every_100() {
        let keep = keep(KeepConfig::default());
        keep.locked("counter", "1");
        for count in 1..=SNAPSHOT_EVERY {
            keep.set_state(
                "1",
                "counter",
                &json!({"count": count, "label": null}).to_string(),
            )
            .expect("fits");
        }
        let snapshots: Vec<Value> = frames(&keep)
            .into_iter()
            .filter(|frame| frame["type"] == "STATE_SNAPSHOT")
            .collect();
        assert_eq!(snapshots.len(), 1);
        assert_eq!(snapshots[0]["global_rev"], SNAPSHOT_EVERY);
        assert_eq!(
            snapshots[0]["snapshots"]["counter"]["count"],
            SNAPSHOT_EVERY
        );

        keep.set_state("2", "counter", r#"{"count":500,"label":null}"#)
            .expect("fits");
        keep.unlocked("counter");
        keep.session_started();
        let kinds: Vec<Value> = frames(&keep)
            .into_iter()
            .map(|frame| {
                if frame["type"] == "SESSION_INIT" {
                    assert_eq!(frame["states"]["counter"]["count"], 500);
                }
                frame["type"].clone()
            })
            .collect();
        assert_eq!(kinds, vec![json!("SESSION_INIT"), json!("UNLOCK")]);
    }

    #[tokio::test]
    async fn a_full_shelf_refuses_by_count_and_by_bytes_and_collect_frees_it() {
        let keep = keep(KeepConfig {
            shelf_bytes: 10,
            shelf_drawers: 1,
            state_file: None,
        });
        let taken = keep.reserve(4).expect("room");
        let Err(count) = keep.reserve(1) else {
            panic!("a second drawer past the count limit");
        };
        assert!(count.contains("keeps 1 drawer(s)"), "{count}");
        drop(taken);
        let Err(bytes) = keep.reserve(11) else {
            panic!("a value past the bytes limit");
        };
        assert!(
            bytes.contains("this value's 11 B would pass the 10 B limit"),
            "{bytes}"
        );
        lock(&keep.shelf).drawers.insert(
            "d1".into(),
            Drawer {
                value: "[1,2]".into(),
            },
        );
        lock(&keep.shelf).bytes = 5;
        assert_eq!(keep.unshelve("d1").expect("kept"), "[1,2]");
        keep.collect(&["d1".to_string(), "other".to_string()]);
        assert!(keep.unshelve("d1").is_err());
        assert!(keep.reserve(10).is_ok());
    }
}
