//! The state side of the caller GraphQL: finding actions and implementations, assigning a
//! task for a caller identity (announced on its `mytasks` feed), and the JSON shapes of the
//! rekuest schema (`Action`, `Implementation`, `Task`, `TaskChange`, `TaskEventChange`).

use std::sync::Arc;

use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use super::{AgentRecord, Control, Implementation, NotChosen, ServerEvent, Shared, TaskRecord};
use crate::devserver::feed::{Change, Subscribers};
use crate::protocol::TaskEventKind;

/// Now, as the rekuest schema's `DateTime` (RFC 3339, UTC).
fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The `TaskEventKind` of an event (the server's own `ASSIGNED` is `BOUND`: bound to an
/// agent).
fn event_kind(event: &ServerEvent) -> &'static str {
    match event.kind {
        TaskEventKind::Assigned => "BOUND",
        other => other.as_str(),
    }
}

/// The text of an event: its message, or the error of FAILED/CRITICAL.
fn event_message(event: &ServerEvent) -> Value {
    event
        .fields
        .get("message")
        .or_else(|| event.fields.get("error"))
        .cloned()
        .unwrap_or(Value::Null)
}

/// Which implementation a caller wants: every given field must match.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct AssignTarget {
    /// An action id (the local server uses the action's hash as its id).
    pub(crate) action: Option<String>,
    /// The action's hash.
    pub(crate) action_hash: Option<String>,
    /// An implementation id.
    pub(crate) implementation: Option<String>,
    /// An agent id.
    pub(crate) agent: Option<String>,
    /// The interface (action key) on the agent.
    pub(crate) interface: Option<String>,
}

impl AssignTarget {
    fn string(input: &Value, key: &str) -> Result<Option<String>, String> {
        match input.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(Value::Number(number)) => Ok(Some(number.to_string())),
            Some(other) => Err(format!("'{key}' must be a string, not {other}")),
        }
    }

    /// Reads the target fields of an `AssignInput` (or the arguments of `action(...)`).
    pub(crate) fn from_input(input: &Value) -> Result<Self, String> {
        let target = AssignTarget {
            action: Self::string(input, "action")?.or(Self::string(input, "id")?),
            action_hash: Self::string(input, "actionHash")?.or(Self::string(input, "hash")?),
            implementation: Self::string(input, "implementation")?,
            agent: Self::string(input, "agent")?,
            interface: Self::string(input, "interface")?,
        };
        if target.action.is_none()
            && target.action_hash.is_none()
            && target.implementation.is_none()
            && target.interface.is_none()
        {
            return Err(
                "name what to run: action, actionHash, implementation, or interface (with or \
                 without agent)"
                    .into(),
            );
        }
        Ok(target)
    }

    fn matches(&self, agent: &AgentRecord, implementation: &Implementation) -> bool {
        let is =
            |wanted: &Option<String>, actual: &str| wanted.as_deref().is_none_or(|w| w == actual);
        is(&self.action, &implementation.action_hash)
            && is(&self.action_hash, &implementation.action_hash)
            && is(&self.implementation, &implementation.id)
            && is(&self.agent, &agent.id)
            && is(&self.interface, &implementation.interface)
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (name, value) in [
            ("action", &self.action),
            ("actionHash", &self.action_hash),
            ("implementation", &self.implementation),
            ("agent", &self.agent),
            ("interface", &self.interface),
        ] {
            if let Some(value) = value {
                parts.push(format!("{name} '{value}'"));
            }
        }
        parts.join(", ")
    }
}

/// A GraphQL `assign`: what to run, with which args.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CallerAssign {
    /// What to run.
    pub(crate) target: AssignTarget,
    /// The args by port key.
    pub(crate) args: Map<String, Value>,
    /// The caller's reference (its idempotency key; echoed on the `create` change).
    pub(crate) reference: Option<String>,
    /// Start stepping: stop at the first breakpoint (ASSIGN's `step`).
    pub(crate) step: Option<bool>,
}

impl CallerAssign {
    /// Reads an `AssignInput`.
    pub(crate) fn from_input(input: &Value) -> Result<Self, String> {
        if !input.is_object() {
            return Err("assign needs an input object".into());
        }
        let args = match input.get("args") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(args)) => args.clone(),
            Some(other) => return Err(format!("'args' must be an object, not {other}")),
        };
        Ok(CallerAssign {
            target: AssignTarget::from_input(input)?,
            args,
            reference: AssignTarget::string(input, "reference")?,
            step: input.get("step").and_then(Value::as_bool),
        })
    }
}

/// What a GraphQL caller's task carries: who assigned it and how, and its feed.
pub(crate) struct CallerTask {
    task: String,
    reference: Option<String>,
    args: Map<String, Value>,
    action: String,
    implementation: String,
    agent: String,
    created_at: String,
    feed: Arc<Subscribers>,
}

impl CallerTask {
    /// Publishes the `create` change of task `task`.
    pub(super) fn announce(&mut self, task: &str) {
        self.task = task.to_string();
        self.feed.publish(|| {
            json!({
                "__typename": "TaskChangeEvent",
                "create": {
                    "__typename": "TaskChange",
                    "id": self.task,
                    "reference": self.reference,
                    "isDone": false,
                    "latestEventKind": "BOUND",
                    "latestInstructKind": "ASSIGN",
                    "statusMessage": null,
                    "action": self.action,
                    "implementation": self.implementation,
                    "agent": self.agent,
                    "root": null,
                    "parent": null,
                    "createdAt": self.created_at,
                    "updatedAt": self.created_at,
                    "finishedAt": null,
                },
                "event": null,
            })
        });
    }

    /// Publishes event number `seq` of the task.
    pub(super) fn publish(&self, seq: usize, event: &ServerEvent) {
        self.feed.publish(|| {
            json!({
                "__typename": "TaskChangeEvent",
                "create": null,
                "event": {
                    "__typename": "TaskEventChange",
                    "id": format!("{}.{seq}", self.task),
                    "task": self.task,
                    "kind": event_kind(event),
                    "returns": event.fields.get("returns"),
                    "message": event_message(event),
                    "progress": event.fields.get("progress"),
                    "createdAt": now(),
                },
            })
        });
    }
}

/// The ports of a definition in the schema's shape (`ArgPort`/`ReturnPort`, nested).
fn ports(ports: Option<&Value>, typename: &str) -> Value {
    let Some(Value::Array(ports)) = ports else {
        return json!([]);
    };
    Value::Array(
        ports
            .iter()
            .map(|port| {
                let mut port = port.as_object().cloned().unwrap_or_default();
                port.insert("__typename".into(), json!(typename));
                if !port.get("nullable").is_some_and(Value::is_boolean) {
                    port.insert("nullable".into(), json!(false));
                }
                if let Some(children) = port.get("children").filter(|c| c.is_array()) {
                    let children = self::ports(Some(children), typename);
                    port.insert("children".into(), children);
                }
                if let Some(Value::Array(choices)) = port.get_mut("choices") {
                    for choice in choices.iter_mut().filter_map(Value::as_object_mut) {
                        choice.insert("__typename".into(), json!("Choice"));
                    }
                }
                Value::Object(port)
            })
            .collect(),
    )
}

/// The `Action` an implementation implements.
fn action_json(implementation: &Implementation) -> Value {
    let definition = &implementation.definition;
    let text = |key: &str| definition.get(key).and_then(Value::as_str);
    let flag = |key: &str| {
        definition
            .get(key)
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    let collections: Vec<Value> = definition
        .get("collections")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|collection| match collection {
            Value::String(name) => json!({"__typename": "Collection", "name": name}),
            other => other.clone(),
        })
        .collect();
    let key = text("key").unwrap_or(&implementation.interface);
    json!({
        "__typename": "Action",
        "id": implementation.action_hash,
        "hash": implementation.action_hash,
        "key": key,
        "version": text("version").unwrap_or("0.0.0"),
        "name": text("name").unwrap_or(key),
        "description": text("description"),
        "kind": text("kind").unwrap_or("FUNCTION"),
        "stateful": flag("stateful"),
        "pure": flag("pure"),
        "idempotent": flag("idempotent"),
        "isDev": true,
        "scope": "LOCAL",
        "collections": collections,
        "isTestFor": [],
        "tests": [],
        "protocols": [],
        "portGroups": [],
        "args": ports(definition.get("args"), "ArgPort"),
        "returns": ports(definition.get("returns"), "ReturnPort"),
    })
}

/// An `Implementation` with its agent and action.
fn implementation_json(agent: &AgentRecord, implementation: &Implementation) -> Value {
    json!({
        "__typename": "Implementation",
        "id": implementation.id,
        "interface": implementation.interface,
        "params": {},
        "active": agent.live.is_some(),
        "agent": agent.to_json(),
        "action": action_json(implementation),
    })
}

/// A `Task` as the mutations answer it.
fn task_json(id: &str, record: &TaskRecord) -> Value {
    let caller = record.caller.as_ref();
    let created_at = caller.map_or_else(now, |caller| caller.created_at.clone());
    let events: Vec<Value> = record
        .events
        .iter()
        .enumerate()
        .map(|(index, event)| {
            json!({
                "__typename": "TaskEvent",
                "id": format!("{id}.{}", index + record.dropped_events),
                "kind": event_kind(event),
                "returns": event.fields.get("returns"),
                "message": event_message(event),
                "progress": event.fields.get("progress"),
                "level": event.fields.get("level").and_then(Value::as_str).unwrap_or("INFO"),
                "createdAt": created_at,
            })
        })
        .collect();
    json!({
        "__typename": "Task",
        "id": id,
        "args": caller.map(|caller| Value::Object(caller.args.clone())),
        "reference": caller.and_then(|caller| caller.reference.clone()),
        "parent": null,
        "isDone": record.done,
        "latestEventKind": record.events.last().map_or("BOUND", event_kind),
        "events": events,
        "instructs": [],
        "createdAt": created_at,
        "updatedAt": now(),
    })
}

impl Shared {
    /// GraphQL `assign` for the caller `token`: picks an implementation matching the target
    /// whose agent is connected, creates the task (announced on the caller's `mytasks`), and
    /// answers the `Task`.
    pub(crate) fn caller_assign(
        &self,
        token: &str,
        request: CallerAssign,
    ) -> Result<Value, String> {
        let mut db = self.db();
        let chosen = db
            .pick(|agent, implementation| request.target.matches(agent, implementation))
            .map_err(|not_chosen| {
                let target = request.target.describe();
                match not_chosen {
                    NotChosen::Offline => {
                        format!("No active implementation found for {target}: its agent is offline")
                    }
                    NotChosen::Missing => format!("No implementation found for {target}"),
                }
            })?;
        let feed = Arc::clone(db.feeds.entry(token.to_string()).or_default());
        let caller = CallerTask {
            task: String::new(),
            reference: request.reference,
            args: request.args.clone(),
            action: chosen.action.clone(),
            implementation: chosen.implementation.clone(),
            agent: chosen.agent.clone(),
            created_at: now(),
            feed,
        };
        let task = db.start_task(chosen, request.args, request.step, Some(caller), None);
        db.tasks
            .get(&task.parse::<u64>().map_err(|error| error.to_string())?)
            .map(|record| task_json(&task, record))
            .ok_or_else(|| format!("No task '{task}'"))
    }

    /// GraphQL `cancel`/`interrupt`/`pause`/`resume`: sends the control, answers the `Task`.
    pub(crate) fn caller_control(&self, input: &Value, control: Control) -> Result<Value, String> {
        let task =
            AssignTarget::string(input, "task")?.ok_or("the input needs the 'task' to control")?;
        let control = match control {
            Control::Resume(_) => {
                Control::Resume(input.get("step").and_then(Value::as_bool).unwrap_or(false))
            }
            other => other,
        };
        self.control(&task, control)?;
        self.task_json(&task)
    }

    /// The task `task` as GraphQL's `task(id)` query returns it, or why there is none.
    pub(crate) fn task_json(&self, task: &str) -> Result<Value, String> {
        let db = self.db();
        task.parse::<u64>()
            .ok()
            .and_then(|id| db.tasks.get(&id))
            .map(|record| task_json(task, record))
            .ok_or_else(|| format!("No task '{task}'"))
    }

    /// Every implementation `keep` accepts, as `Implementation`s.
    fn implementations_where(
        &self,
        keep: impl Fn(&AgentRecord, &Implementation) -> bool,
    ) -> Vec<Value> {
        self.db()
            .implementations()
            .filter(|(agent, implementation)| keep(agent, implementation))
            .map(|(agent, implementation)| implementation_json(agent, implementation))
            .collect()
    }

    /// GraphQL `implementation(id)`, `implementationAt(agent, interface | actionHash)`,
    /// `myImplementationAt(interface | actionId)` (of the caller's own agent).
    pub(crate) fn caller_implementation(
        &self,
        token: &str,
        field: &str,
        arguments: &Map<String, Value>,
    ) -> Result<Value, String> {
        let arguments = Value::Object(arguments.clone());
        let text = |key: &str| AssignTarget::string(&arguments, key);
        let target = match field {
            "implementation" => AssignTarget {
                implementation: Some(text("id")?.ok_or("implementation needs an id")?),
                ..AssignTarget::default()
            },
            "implementationAt" => AssignTarget {
                agent: Some(text("agent")?.ok_or("implementationAt needs an agent")?),
                interface: text("interface")?,
                action_hash: text("actionHash")?,
                ..AssignTarget::default()
            },
            _ => {
                let own = self
                    .db()
                    .agent_by_token(token)
                    .map(|agent| agent.id.clone())
                    .ok_or("this token has no agent: call ensureAgent first")?;
                AssignTarget {
                    agent: Some(own),
                    interface: text("interface")?,
                    action: text("actionId")?,
                    ..AssignTarget::default()
                }
            }
        };
        self.implementations_where(|agent, implementation| target.matches(agent, implementation))
            .into_iter()
            .next()
            .ok_or_else(|| format!("No implementation found for {}", target.describe()))
    }

    /// GraphQL `implementations(filters: {ids, interface: {exact}, actionHash, agent: {ids}})`.
    pub(crate) fn caller_implementations(&self, filters: &Value) -> Result<Value, String> {
        let filter = ListFilter::read(
            filters,
            &["ids", "interface", "actionHash", "agent", "active"],
        )?;
        let action_hash = AssignTarget::string(filters, "actionHash")?;
        let agents = filters
            .get("agent")
            .map(|agent| ListFilter::read(agent, &["ids"]))
            .transpose()?;
        let active = filters.get("active").and_then(Value::as_bool);
        Ok(Value::Array(self.implementations_where(
            |agent, implementation| {
                filter.keeps(
                    &implementation.id,
                    &implementation.interface,
                    &implementation.interface,
                ) && action_hash
                    .as_deref()
                    .is_none_or(|hash| hash == implementation.action_hash)
                    && agents
                        .as_ref()
                        .is_none_or(|agents| agents.keeps(&agent.id, &agent.name, &agent.name))
                    && active.is_none_or(|active| active == agent.live.is_some())
            },
        )))
    }

    /// GraphQL `action(id | hash | implementation | agent + interface | interface |
    /// matching: {hash, key})`.
    pub(crate) fn caller_action(&self, arguments: &Map<String, Value>) -> Result<Value, String> {
        let mut arguments = Value::Object(arguments.clone());
        if let Some(matching) = arguments.get("matching").cloned().filter(Value::is_object) {
            for (from, to) in [("hash", "hash"), ("key", "interface")] {
                if let Some(value) = matching.get(from).filter(|value| !value.is_null()) {
                    arguments[to] = value.clone();
                }
            }
        }
        let target = AssignTarget::from_input(&arguments)?;
        let db = self.db();
        db.implementations()
            .find(|(agent, implementation)| target.matches(agent, implementation))
            .map(|(_, implementation)| action_json(implementation))
            .ok_or_else(|| format!("No action found for {}", target.describe()))
    }

    /// GraphQL `actions(filters: {ids, search, name: {exact...}})`: one per distinct hash.
    pub(crate) fn caller_actions(&self, filters: &Value) -> Result<Value, String> {
        let filter = ListFilter::read(filters, &["ids", "search", "name", "kind"])?;
        let kind = AssignTarget::string(filters, "kind")?;
        let db = self.db();
        let mut seen = std::collections::HashSet::new();
        let mut actions = Vec::new();
        for (_, implementation) in db.implementations() {
            let action = action_json(implementation);
            let name = action["name"].as_str().unwrap_or_default();
            if filter.keeps(&implementation.action_hash, name, &implementation.interface)
                && kind.as_deref().is_none_or(|kind| action["kind"] == kind)
                && seen.insert(implementation.action_hash.clone())
            {
                actions.push(action);
            }
        }
        Ok(Value::Array(actions))
    }

    /// GraphQL `agents` and `agent(id)`.
    pub(crate) fn caller_agents(&self, id: Option<&str>) -> Result<Value, String> {
        let db = self.db();
        match id {
            None => Ok(Value::Array(
                db.agents.iter().map(AgentRecord::to_json).collect(),
            )),
            Some(id) => db
                .agents
                .iter()
                .find(|agent| agent.id == id)
                .map(AgentRecord::to_json)
                .ok_or_else(|| format!("No agent '{id}'")),
        }
    }

    /// Subscribes to the `mytasks` feed of `token`.
    pub(crate) fn my_tasks(&self, token: &str) -> mpsc::Receiver<Change> {
        self.db()
            .feeds
            .entry(token.to_string())
            .or_default()
            .subscribe()
    }
}

/// The list filters the local server understands: `ids`, `search` (a substring of the name
/// or key), `name`/`interface` as a string lookup (`exact`, `iExact`, `contains`,
/// `iContains`, `startsWith`, `inList`). Anything else is refused, not ignored.
struct ListFilter {
    ids: Option<Vec<String>>,
    search: Option<String>,
    lookup: Option<Map<String, Value>>,
}

impl ListFilter {
    fn read(filters: &Value, known: &[&str]) -> Result<Self, String> {
        let Some(object) = filters.as_object() else {
            return if filters.is_null() {
                Ok(ListFilter {
                    ids: None,
                    search: None,
                    lookup: None,
                })
            } else {
                Err("filters must be an object".into())
            };
        };
        if let Some((key, _)) = object
            .iter()
            .find(|(key, value)| !value.is_null() && !known.contains(&key.as_str()))
        {
            return Err(format!("the local server cannot filter by '{key}'"));
        }
        let ids = match object.get("ids") {
            None | Some(Value::Null) => None,
            Some(Value::Array(ids)) => Some(
                ids.iter()
                    .map(|id| match id {
                        Value::String(id) => id.clone(),
                        other => other.to_string(),
                    })
                    .collect(),
            ),
            Some(other) => return Err(format!("'ids' must be a list, not {other}")),
        };
        let lookup = ["name", "interface"]
            .iter()
            .find_map(|key| object.get(*key).and_then(Value::as_object).cloned());
        if let Some(lookup) = &lookup
            && let Some(key) = lookup.keys().find(|key| {
                !matches!(
                    key.as_str(),
                    "exact" | "iExact" | "contains" | "iContains" | "startsWith" | "inList"
                )
            })
        {
            return Err(format!("the local server cannot filter names by '{key}'"));
        }
        Ok(ListFilter {
            ids,
            search: object
                .get("search")
                .and_then(Value::as_str)
                .map(str::to_lowercase),
            lookup,
        })
    }

    /// Whether the item with `id`, `name` and `key` passes.
    fn keeps(&self, id: &str, name: &str, key: &str) -> bool {
        let ids = self
            .ids
            .as_ref()
            .is_none_or(|ids| ids.iter().any(|wanted| wanted == id));
        let search = self.search.as_ref().is_none_or(|search| {
            name.to_lowercase().contains(search) || key.to_lowercase().contains(search)
        });
        let lookup = self.lookup.as_ref().is_none_or(|lookup| {
            lookup.iter().all(|(how, wanted)| {
                let text = |value: &Value| value.as_str().unwrap_or_default().to_string();
                match how.as_str() {
                    "exact" => name == text(wanted) || key == text(wanted),
                    "iExact" => {
                        name.eq_ignore_ascii_case(&text(wanted))
                            || key.eq_ignore_ascii_case(&text(wanted))
                    }
                    "contains" => name.contains(&text(wanted)) || key.contains(&text(wanted)),
                    "iContains" => {
                        let wanted = text(wanted).to_lowercase();
                        name.to_lowercase().contains(&wanted)
                            || key.to_lowercase().contains(&wanted)
                    }
                    "startsWith" => {
                        name.starts_with(&text(wanted)) || key.starts_with(&text(wanted))
                    }
                    "inList" => wanted
                        .as_array()
                        .is_some_and(|list| list.iter().any(|item| item == name || item == key)),
                    _ => false,
                }
            })
        });
        ids && search && lookup
    }
}
