//! The GraphQL the agent calls (`ensureAgent`, `implementAgent`) and what a caller asks of
//! a task through the handle or the caller API: assigning it and controlling it.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{AgentRecord, Control, Implementation, Outgoing, ServerEvent, Shared};
use crate::protocol::{TaskEventKind, ToAgent};

/// Digest of a definition, the action's `hash`.
fn action_hash(definition: &Value) -> String {
    hex::encode(Sha256::digest(definition.to_string().as_bytes()))
}

impl Shared {
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
}
