//! The local server's side of shelves, states and locks: the GraphQL `shelveInMemoryDrawer`,
//! `unshelveMemoryDrawer` and `collect` (which sends the owning agent COLLECT), the states and
//! locks `implementAgent` registers, and the agent's SESSION_INIT / STATE_PATCH /
//! STATE_SNAPSHOT / LOCK / UNLOCK frames (patches applied to the value it shows).

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use serde_json::{Map, Value, json};

use super::graphql::Field;
use super::state::{Outgoing, Shared};
use crate::protocol::{KeepFrame, SessionInit, ToAgent};

/// Frames remembered per agent (the oldest are dropped first).
const MAX_KEEP_FRAMES: usize = 10_000;

#[derive(Default)]
struct AgentKeep {
    /// State keys `implementAgent` registered.
    registered_states: HashSet<String>,
    /// Lock keys `implementAgent` registered.
    registered_locks: HashSet<String>,
    /// The states as the agent's frames left them.
    values: Map<String, Value>,
    /// Every SESSION_INIT, STATE_PATCH, STATE_SNAPSHOT, LOCK and UNLOCK, as received.
    frames: Vec<Value>,
    /// Held locks and their tasks.
    held: HashMap<String, String>,
}

#[derive(Default)]
struct Inner {
    agents: HashMap<String, AgentKeep>,
    /// Drawer id → owning agent id.
    drawers: HashMap<String, String>,
}

/// What the local server knows of the agents' shelves, states and locks.
#[derive(Default)]
pub(crate) struct KeepStore {
    inner: Mutex<Inner>,
}

impl Inner {
    fn agent(&mut self, agent: &str) -> &mut AgentKeep {
        self.agents.entry(agent.to_string()).or_default()
    }
}

impl AgentKeep {
    fn remember(&mut self, frame: Value) {
        if self.frames.len() >= MAX_KEEP_FRAMES {
            self.frames.remove(0);
        }
        self.frames.push(frame);
    }
}

/// Applies one top-level JSON Patch operation (`/key`) to `state`.
fn apply(state: &mut Value, op: &str, path: &str, value: &Value) -> Result<(), String> {
    let key = path
        .strip_prefix('/')
        .filter(|key| !key.contains('/'))
        .ok_or_else(|| format!("unsupported patch path '{path}'"))?
        .replace("~1", "/")
        .replace("~0", "~");
    if !state.is_object() {
        *state = Value::Object(Map::new());
    }
    let Value::Object(fields) = state else {
        return Ok(());
    };
    match op {
        "add" | "replace" => {
            fields.insert(key, value.clone());
        }
        "remove" => {
            fields.remove(&key);
        }
        other => return Err(format!("unsupported patch op '{other}'")),
    }
    Ok(())
}

impl KeepStore {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `implementAgent` of `agent`: remembers the states and locks it registers.
    pub(crate) fn implemented(&self, agent: &str, input: &Value) {
        let keys = |list: &str, key: &str| -> HashSet<String> {
            input
                .get(list)
                .and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|item| item.get(key).and_then(Value::as_str))
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut inner = self.inner();
        let record = inner.agent(agent);
        record.registered_states = keys("states", "interface");
        record.registered_locks = keys("locks", "key");
    }

    /// `ensureAgent` of `agent`: like the real server, its drawers are wiped.
    pub(crate) fn wipe(&self, agent: &str) {
        self.inner().drawers.retain(|_, owner| owner != agent);
    }

    /// SESSION_INIT: the agent's states start over with these values.
    pub(crate) fn session_init(&self, agent: &str, init: &SessionInit) {
        let mut inner = self.inner();
        let record = inner.agent(agent);
        record.values = init.states.clone();
        record.held.clear();
        let mut frame = serde_json::to_value(init).unwrap_or(Value::Null);
        frame["type"] = json!("SESSION_INIT");
        record.remember(frame);
    }

    /// A state or lock frame; `Err` says why the server refuses it.
    pub(crate) fn frame(&self, agent: &str, frame: &KeepFrame) -> Result<(), String> {
        let mut inner = self.inner();
        let record = inner.agent(agent);
        record.remember(serde_json::to_value(frame).unwrap_or(Value::Null));
        match frame {
            KeepFrame::StatePatch {
                state_name,
                op,
                path,
                value,
                ..
            } => {
                if !record.registered_states.contains(state_name) {
                    return Err(format!(
                        "STATE_PATCH for the state '{state_name}', which this agent did not \
                         register"
                    ));
                }
                let state = record
                    .values
                    .entry(state_name.clone())
                    .or_insert(Value::Null);
                apply(state, op, path, value)
            }
            KeepFrame::StateSnapshot { snapshots, .. } => {
                record.values.extend(snapshots.clone());
                Ok(())
            }
            KeepFrame::Lock { key, task, .. } => {
                if !record.registered_locks.contains(key) {
                    return Err(format!(
                        "LOCK of '{key}', which this agent did not register"
                    ));
                }
                match record.held.insert(key.clone(), task.clone()) {
                    Some(holder) => Err(format!(
                        "LOCK of '{key}' for task {task} while task {holder} holds it"
                    )),
                    None => Ok(()),
                }
            }
            KeepFrame::Unlock { key, .. } => {
                record.held.remove(key);
                Ok(())
            }
        }
    }

    /// The frames `agent` sent about its states and locks, in order.
    pub(crate) fn frames(&self, agent: &str) -> Vec<Value> {
        self.inner()
            .agents
            .get(agent)
            .map(|record| record.frames.clone())
            .unwrap_or_default()
    }

    /// The value of `agent`'s state `key`, as its frames left it.
    pub(crate) fn state(&self, agent: &str, key: &str) -> Option<Value> {
        self.inner()
            .agents
            .get(agent)
            .and_then(|record| record.values.get(key).cloned())
    }

    /// The drawers `agent` has registered.
    pub(crate) fn drawers(&self, agent: &str) -> Vec<String> {
        let mut drawers: Vec<String> = self
            .inner()
            .drawers
            .iter()
            .filter(|(_, owner)| owner.as_str() == agent)
            .map(|(id, _)| id.clone())
            .collect();
        drawers.sort();
        drawers
    }

    /// Forgets `drawers` (each must exist); the owners of each, with their drawers.
    fn take(&self, drawers: &[String]) -> Result<HashMap<String, Vec<String>>, String> {
        let mut inner = self.inner();
        if let Some(unknown) = drawers.iter().find(|id| !inner.drawers.contains_key(*id)) {
            return Err(format!("Drawer {unknown} does not exist"));
        }
        let mut owners: HashMap<String, Vec<String>> = HashMap::new();
        for id in drawers {
            if let Some(owner) = inner.drawers.remove(id) {
                owners.entry(owner).or_default().push(id.clone());
            }
        }
        Ok(owners)
    }
}

impl Shared {
    /// `collect`: forgets `drawers` and sends each owning agent COLLECT for its own.
    pub(crate) fn collect(&self, drawers: &[String]) -> Result<(), String> {
        for (owner, drawers) in self.keep.take(drawers)? {
            let frame = ToAgent::Collect {
                id: uuid::Uuid::new_v4().to_string(),
                drawers,
            };
            self.send_to_agent(&owner, Outgoing::Text(frame.to_json()));
        }
        Ok(())
    }
}

/// The GraphQL fields of shelves, for the agent or caller of `principal`; `None` for other
/// fields.
pub(crate) fn resolve(
    shared: &Shared,
    principal: &str,
    kind: &str,
    field: &Field,
) -> Option<Result<Value, String>> {
    let input = field.arguments.get("input").unwrap_or(&Value::Null);
    let agent = || {
        shared
            .agent_id(principal)
            .ok_or_else(|| "Agent not found: call ensureAgent first".to_string())
    };
    Some(match (kind, field.name.as_str()) {
        ("mutation", "shelveInMemoryDrawer") => agent().and_then(|agent| {
            if input
                .get("identifier")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                return Err("shelveInMemoryDrawer needs an identifier".into());
            }
            // Unique across servers, like the real server's database ids.
            let id = format!("drawer-{}", uuid::Uuid::new_v4());
            shared.keep.inner().drawers.insert(id.clone(), agent);
            Ok(json!({"__typename": "MemoryDrawer", "id": id}))
        }),
        ("mutation", "unshelveMemoryDrawer") => agent().map(|agent| {
            let id = input.get("id").and_then(Value::as_str).unwrap_or_default();
            let mut inner = shared.keep.inner();
            if inner.drawers.get(id) == Some(&agent) {
                inner.drawers.remove(id);
            }
            json!(id)
        }),
        ("mutation", "collect") => {
            let drawers: Vec<String> = input
                .get("drawers")
                .and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            shared.collect(&drawers).map(|()| json!(drawers))
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_apply_to_top_level_fields() {
        let mut state = json!({"count": 1});
        apply(&mut state, "replace", "/count", &json!(2)).expect("applies");
        apply(&mut state, "add", "/a~1b", &json!(true)).expect("applies");
        assert_eq!(state, json!({"count": 2, "a/b": true}));
        apply(&mut state, "remove", "/count", &Value::Null).expect("applies");
        assert_eq!(state, json!({"a/b": true}));
        assert!(apply(&mut state, "move", "/x", &Value::Null).is_err());
    }
}
