//! The frames of the agent socket in both directions, with the field names the server uses.
//!
//! Parsing is lenient where the server may grow: extra fields are ignored and an unknown
//! `type` parses as an `Unknown` case for the caller to log. Only REGISTER is strict, as the
//! server is (an unknown key there is a schema mismatch).

use std::borrow::Cow;

use serde::de::Error as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::report::{Report, ReportType};

/// Why a frame could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// Not JSON at all (the server closes with 3002 for this).
    #[error("not valid JSON")]
    NotJson(#[source] serde_json::Error),
    /// JSON, but not a frame of the protocol (3003).
    #[error("does not match the protocol")]
    Schema(#[source] serde_json::Error),
    /// An ASSIGN whose task id could be read but whose other fields are malformed: the task
    /// must be answered (FAILED), or it hangs on the server.
    #[error("the ASSIGN of task {task} is malformed")]
    BadAssign {
        /// The task id.
        task: String,
        /// What was wrong.
        #[source]
        error: serde_json::Error,
    },
}

impl MessageError {
    fn from_json(error: serde_json::Error) -> Self {
        match error.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                MessageError::NotJson(error)
            }
            _ => MessageError::Schema(error),
        }
    }
}

/// A task the server asks about after a same-session reconnect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inquiry {
    /// The task id.
    pub task: String,
}

/// Work for the agent: run `interface` with `args` as task `task`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assign {
    /// The server's id of this frame (nothing in the agent protocol refers back to it).
    #[serde(default)]
    pub id: String,
    /// The implementation's interface: the action key it was registered with.
    pub interface: String,
    /// Stop at the first breakpoint (`null`: run freely).
    #[serde(default)]
    pub step: Option<bool>,
    /// The task id every report of this task carries.
    pub task: String,
    /// The root of cascaded tasks.
    #[serde(default)]
    pub root: Option<String>,
    /// The direct parent task.
    #[serde(default)]
    pub parent: Option<String>,
    /// The resolution of dependencies.
    #[serde(default)]
    pub resolution: Option<String>,
    /// Debug capture mode.
    #[serde(default)]
    pub capture: Option<bool>,
    /// The assigner's reference.
    #[serde(default)]
    pub reference: Option<String>,
    /// The args, keyed by arg port.
    #[serde(default)]
    pub args: Map<String, Value>,
    /// A message from the assigner.
    #[serde(default)]
    pub message: Option<String>,
    /// The assigning user.
    #[serde(default)]
    pub user: String,
    /// The user's organization.
    #[serde(default)]
    pub org: String,
    /// The action's hash.
    #[serde(default)]
    pub action: String,
    /// The implementation id.
    #[serde(default)]
    pub implementation: String,
    /// Provenance token, forwarded untouched.
    #[serde(default)]
    pub token: Option<String>,
}

/// A frame from the server to the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ToAgent {
    /// The answer to REGISTER.
    Init {
        /// The server's id of this frame (nothing in the agent protocol refers back to it).
        #[serde(default)]
        id: String,
        /// The agent's id on the server.
        agent: String,
        /// In-flight tasks the server asks about after a same-session reconnect.
        #[serde(default, deserialize_with = "null_as_default")]
        inquiries: Vec<Inquiry>,
    },
    /// Liveness check: answer with HEARTBEAT_ANSWER at once.
    Heartbeat {
        /// The server's id of this frame (nothing in the agent protocol refers back to it).
        #[serde(default)]
        id: String,
    },
    /// Run a task.
    Assign(Box<Assign>),
    /// Stop a task nicely (report CANCELLED).
    Cancel {
        /// The server's id of this frame (nothing in the agent protocol refers back to it).
        #[serde(default)]
        id: String,
        /// The task id, as ASSIGN gave it.
        task: String,
    },
    /// Stop a task forcefully (report INTERRUPTED).
    Interrupt {
        /// The server's id of this frame (nothing in the agent protocol refers back to it).
        #[serde(default)]
        id: String,
        /// The task id, as ASSIGN gave it.
        task: String,
    },
    /// Park a task (report PAUSED).
    Pause {
        /// The server's id of this frame (nothing in the agent protocol refers back to it).
        #[serde(default)]
        id: String,
        /// The task id, as ASSIGN gave it.
        task: String,
    },
    /// Continue a parked task (report RESUMED).
    Resume {
        /// The server's id of this frame (nothing in the agent protocol refers back to it).
        #[serde(default)]
        id: String,
        /// The task id, as ASSIGN gave it.
        task: String,
        /// Run only to the next breakpoint, then park again.
        #[serde(default, deserialize_with = "null_as_default")]
        step: bool,
    },
    /// Drop shelved data.
    Collect {
        /// The server's id of this frame (nothing in the agent protocol refers back to it).
        #[serde(default)]
        id: String,
        /// The drawers to drop.
        #[serde(default, deserialize_with = "null_as_default")]
        drawers: Vec<String>,
    },
    /// Reconnect, optionally after `duration` seconds.
    Bounce {
        /// The server's id of this frame (nothing in the agent protocol refers back to it).
        #[serde(default)]
        id: String,
        /// Seconds to wait before reconnecting.
        #[serde(default)]
        duration: Option<u64>,
    },
    /// Disconnect and do not reconnect.
    Kick {
        /// The server's id of this frame (nothing in the agent protocol refers back to it).
        #[serde(default)]
        id: String,
        /// The server's reason, if it gave one (shown in the host's log).
        #[serde(default)]
        reason: Option<String>,
    },
    /// The server made a report durable; stop retaining it.
    EventAck {
        /// The server's id of this frame (nothing in the agent protocol refers back to it).
        #[serde(default)]
        id: String,
        /// The id of the acknowledged report.
        event: String,
        /// The acknowledged report's task id (informational).
        #[serde(default)]
        task: Option<String>,
        /// The acknowledged report's sequence number (informational).
        #[serde(default)]
        seq: Option<u64>,
    },
    /// The server refused a frame; a close follows.
    ProtocolError {
        /// The server's id of this frame (nothing in the agent protocol refers back to it).
        #[serde(default)]
        id: String,
        /// The server's message.
        #[serde(default)]
        error: String,
    },
    /// The answer to an ASSIGN_REQUEST: the child task, or why there is none.
    AssignResponse {
        /// The server's id of this frame (nothing in the agent protocol refers back to it).
        #[serde(default)]
        id: String,
        /// The id of the ASSIGN_REQUEST.
        request: String,
        /// The requester's reference.
        #[serde(default)]
        reference: Option<String>,
        /// The child task's id.
        #[serde(default)]
        task: Option<String>,
        /// Whether the task was created now (not found by its reference).
        #[serde(default)]
        created: Option<bool>,
        /// Why the request was refused.
        #[serde(default)]
        error: Option<String>,
    },
    /// The answer to a CANCEL_REQUEST, INTERRUPT_REQUEST, PAUSE_REQUEST or RESUME_REQUEST.
    ControlResponse {
        /// The server's id of this frame (nothing in the agent protocol refers back to it).
        #[serde(default)]
        id: String,
        /// The id of the request.
        #[serde(default)]
        request: String,
        /// The child task the request was about.
        #[serde(default)]
        task: Option<String>,
        /// Whether the control was passed on.
        #[serde(default)]
        accepted: bool,
        /// Why the control was not passed on (set when `accepted` is false).
        #[serde(default)]
        error: Option<String>,
    },
    /// A task event mirrored to the identity that created the task (`STARTED_EVENT`,
    /// `YIELD_EVENT`, ..., see [`ExecutionEvent`]): normal traffic of the real server.
    #[serde(skip)]
    Execution(ExecutionEvent),
    /// A type this agent does not know (logged and ignored).
    #[serde(other)]
    Unknown,
}

/// A task event the server mirrors to the identity that created the task
/// (`{"type": "YIELD_EVENT", "task", "event", "seq", ...}`); they will carry the results of
/// calls made from inside actions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionEvent {
    /// The wire type, e.g. `YIELD_EVENT`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The task it belongs to.
    pub task: String,
    /// The originating task event's id.
    #[serde(default)]
    pub event: String,
    /// The originating task event's ordering key.
    #[serde(default)]
    pub seq: Option<i64>,
    /// The event's other fields (`returns`, `message`, `level`, `progress`, `error`, ...).
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

/// The suffix of the mirrored task event types.
pub(super) const EXECUTION_EVENT_SUFFIX: &str = "_EVENT";

/// A frame's type and task, read without copying either.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    task: Option<Cow<'a, str>>,
}

impl ToAgent {
    /// Parses one text frame. A frame that does not parse but is an ASSIGN with a readable
    /// task id is [`MessageError::BadAssign`], so the task can still be answered.
    pub fn parse(text: &str) -> Result<Self, MessageError> {
        match serde_json::from_str::<Head>(text) {
            // One ASSIGN per task, the largest frame: decoded straight into its struct, where the
            // tagged enum would first copy the whole frame into an intermediate tree.
            Ok(Head { kind, task }) if kind == "ASSIGN" => serde_json::from_str(text)
                .map(|assign| ToAgent::Assign(Box::new(assign)))
                .map_err(|error| match task {
                    Some(task) => MessageError::BadAssign {
                        task: task.into_owned(),
                        error,
                    },
                    None => MessageError::from_json(error),
                }),
            _ => match serde_json::from_str(text) {
                Ok(ToAgent::Unknown) => Ok(Self::parse_unknown(text)),
                Ok(message) => Ok(message),
                Err(error) => Err(MessageError::from_json(error)),
            },
        }
    }

    /// A frame of a type outside the main enum: a mirrored task event, or unknown.
    fn parse_unknown(text: &str) -> Self {
        match serde_json::from_str::<ExecutionEvent>(text) {
            Ok(event) if event.kind.ends_with(EXECUTION_EVENT_SUFFIX) => ToAgent::Execution(event),
            _ => ToAgent::Unknown,
        }
    }

    /// The JSON text of this frame.
    pub fn to_json(&self) -> String {
        // Serializing plain data into a string cannot fail.
        match self {
            ToAgent::Execution(event) => serde_json::to_string(event),
            other => serde_json::to_string(other),
        }
        .unwrap_or_default()
    }
}

/// The `type` of a JSON frame, if it has one (for logging unknown frames).
pub fn frame_type(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Head {
        #[serde(rename = "type")]
        kind: String,
    }
    serde_json::from_str::<Head>(text)
        .ok()
        .map(|head| head.kind)
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// The first frame of a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Register {
    /// An id of the agent's choosing for this frame; the real server ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The agent's token.
    pub token: String,
    /// The per-process id: the same across reconnects of one process.
    #[serde(default)]
    pub session_id: Option<String>,
    /// Take the agent over from another live connection.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

/// Sent by the Python agent after REGISTER; accepted by the local server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionInit {
    /// An id of the agent's choosing for this frame; the real server ignores it.
    #[serde(default)]
    pub id: String,
    /// The per-process id.
    pub session_id: String,
    /// Initial state snapshots by state name.
    #[serde(default)]
    pub states: Map<String, Value>,
}

/// A call from inside a running task: run an action as a child of `parent`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssignRequest {
    /// Message id (ASSIGN_RESPONSE names it as `request`).
    pub id: String,
    /// The caller's idempotency key.
    pub reference: String,
    /// The running task making the call.
    pub parent: String,
    /// The args, keyed by arg port.
    #[serde(default)]
    pub args: Map<String, Value>,
    /// The action by its hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_hash: Option<String>,
    /// The agent whose implementation of `interface` to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The action key on `agent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// The dependency slot (of the parent's implementation) to call through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependency: Option<String>,
    /// The action dependency within the slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

/// The control requests an agent may send about a child task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildControl {
    /// CANCEL_REQUEST.
    Cancel,
    /// INTERRUPT_REQUEST.
    Interrupt,
    /// PAUSE_REQUEST.
    Pause,
    /// RESUME_REQUEST.
    Resume,
}

impl ChildControl {
    /// The wire type.
    pub fn wire_type(self) -> &'static str {
        match self {
            ChildControl::Cancel => "CANCEL_REQUEST",
            ChildControl::Interrupt => "INTERRUPT_REQUEST",
            ChildControl::Pause => "PAUSE_REQUEST",
            ChildControl::Resume => "RESUME_REQUEST",
        }
    }

    fn from_wire(kind: &str) -> Option<Self> {
        Some(match kind {
            "CANCEL_REQUEST" => ChildControl::Cancel,
            "INTERRUPT_REQUEST" => ChildControl::Interrupt,
            "PAUSE_REQUEST" => ChildControl::Pause,
            "RESUME_REQUEST" => ChildControl::Resume,
            _ => return None,
        })
    }
}

/// A frame from the agent to the server.
#[derive(Debug, Clone, PartialEq)]
pub enum FromAgent {
    /// The first frame.
    Register(Register),
    /// The answer to a HEARTBEAT.
    HeartbeatAnswer {
        /// A fresh id.
        id: String,
    },
    /// The Python agent's session announcement.
    SessionInit(SessionInit),
    /// A report about a task.
    Report(Report),
    /// A call from inside a running task.
    AssignRequest(Box<AssignRequest>),
    /// A control request about a child task.
    ControlRequest {
        /// A fresh id for this request: CONTROL_RESPONSE names it in `request`.
        id: String,
        /// Which of CANCEL, INTERRUPT, PAUSE or RESUME the parent asks for.
        control: ChildControl,
        /// The child task.
        task: String,
    },
    /// About states or locks.
    Keep(super::KeepFrame),
    /// Another type (named); the local server ignores the ones it knows to exist.
    Other(String),
}

impl FromAgent {
    /// Parses one text frame. A report without an `id` gets a fresh one, as the server does.
    pub fn parse(text: &str) -> Result<Self, MessageError> {
        let value: Value = serde_json::from_str(text).map_err(MessageError::NotJson)?;
        let Value::Object(mut object) = value else {
            return Err(MessageError::Schema(serde_json::Error::custom(
                "a frame must be a JSON object",
            )));
        };
        let kind = match object.get("type") {
            Some(Value::String(kind)) => kind.clone(),
            _ => {
                return Err(MessageError::Schema(serde_json::Error::custom(
                    "the frame has no string `type`",
                )));
            }
        };
        let schema = MessageError::Schema;
        if let Some(control) = ChildControl::from_wire(&kind) {
            let text_of = |field: &str| {
                object
                    .get(field)
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            let task = text_of("task").ok_or_else(|| {
                MessageError::Schema(serde_json::Error::custom("missing field `task`"))
            })?;
            return Ok(FromAgent::ControlRequest {
                id: text_of("id").unwrap_or_default(),
                control,
                task,
            });
        }
        match kind.as_str() {
            "REGISTER" => {
                object.remove("type");
                serde_json::from_value(Value::Object(object))
                    .map(FromAgent::Register)
                    .map_err(schema)
            }
            "HEARTBEAT_ANSWER" => Ok(FromAgent::HeartbeatAnswer {
                id: object
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            }),
            "SESSION_INIT" => serde_json::from_value(Value::Object(object))
                .map(FromAgent::SessionInit)
                .map_err(schema),
            kind if super::KeepFrame::TYPES.contains(&kind) => {
                serde_json::from_value(Value::Object(object))
                    .map(FromAgent::Keep)
                    .map_err(schema)
            }
            "ASSIGN_REQUEST" => {
                object.remove("type");
                serde_json::from_value(Value::Object(object))
                    .map(|request| FromAgent::AssignRequest(Box::new(request)))
                    .map_err(schema)
            }
            kind => match ReportType::from_wire(kind) {
                // Parsed from the text (not the Value) so returns stay the sender's text.
                Some(report) => Report::parse(report, text).map(FromAgent::Report),
                None => Ok(FromAgent::Other(kind.to_string())),
            },
        }
    }

    /// The JSON text of this frame.
    pub fn to_json(&self) -> String {
        let result = match self {
            FromAgent::Register(register) => {
                let mut value = serde_json::to_value(register).unwrap_or(Value::Null);
                if let Value::Object(object) = &mut value {
                    object.insert("type".into(), Value::from("REGISTER"));
                }
                serde_json::to_string(&value)
            }
            FromAgent::HeartbeatAnswer { id } => {
                serde_json::to_string(&serde_json::json!({"type": "HEARTBEAT_ANSWER", "id": id}))
            }
            FromAgent::SessionInit(init) => {
                let mut value = serde_json::to_value(init).unwrap_or(Value::Null);
                if let Value::Object(object) = &mut value {
                    object.insert("type".into(), Value::from("SESSION_INIT"));
                }
                serde_json::to_string(&value)
            }
            FromAgent::Report(report) => serde_json::to_string(report),
            FromAgent::AssignRequest(request) => {
                let mut value = serde_json::to_value(request).unwrap_or(Value::Null);
                if let Value::Object(object) = &mut value {
                    object.insert("type".into(), Value::from("ASSIGN_REQUEST"));
                }
                serde_json::to_string(&value)
            }
            FromAgent::ControlRequest { id, control, task } => serde_json::to_string(
                &serde_json::json!({"type": control.wire_type(), "id": id, "task": task}),
            ),
            FromAgent::Keep(frame) => serde_json::to_string(frame),
            FromAgent::Other(kind) => serde_json::to_string(&serde_json::json!({"type": kind})),
        };
        // Plain data (and returns that are already valid JSON) always serializes.
        result.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{LogLevel, ReportKind};
    use serde_json::json;
    use serde_json::value::RawValue;

    #[test]
    fn parses_the_observed_assign() {
        let text = r#"{"id":"m1","type":"ASSIGN","interface":"add","step":null,"task":"1","root":null,
            "parent":null,"resolution":null,"capture":false,"reference":"ref","args":{"a":1,"b":2},
            "message":null,"user":"2","org":"static_org","action":"h","implementation":"1",
            "token":null,"some_future_field":[1]}"#;
        let ToAgent::Assign(assign) = ToAgent::parse(text).expect("parses") else {
            panic!("not an assign");
        };
        assert_eq!(assign.interface, "add");
        assert_eq!(assign.task, "1");
        assert_eq!(Value::Object(assign.args.clone()), json!({"a": 1, "b": 2}));
        assert_eq!(assign.step, None);
        // The local server sends every key, nulls included.
        let sent: Value = serde_json::from_str(&ToAgent::Assign(assign).to_json()).expect("json");
        assert_eq!(sent["type"], "ASSIGN");
        assert!(sent.as_object().expect("object").contains_key("parent"));
        assert_eq!(sent["parent"], Value::Null);
    }

    #[test]
    fn parses_server_control_frames() {
        let cases = [
            (
                r#"{"id":"1","type":"INIT","agent":"7","inquiries":[{"task":"4"}]}"#,
                ToAgent::Init {
                    id: "1".into(),
                    agent: "7".into(),
                    inquiries: vec![Inquiry { task: "4".into() }],
                },
            ),
            (
                r#"{"id":"1","type":"INIT","agent":"7","inquiries":null}"#,
                ToAgent::Init {
                    id: "1".into(),
                    agent: "7".into(),
                    inquiries: vec![],
                },
            ),
            (
                r#"{"id":"2","type":"RESUME","task":"3","step":true}"#,
                ToAgent::Resume {
                    id: "2".into(),
                    task: "3".into(),
                    step: true,
                },
            ),
            (
                r#"{"id":"2","type":"RESUME","task":"3"}"#,
                ToAgent::Resume {
                    id: "2".into(),
                    task: "3".into(),
                    step: false,
                },
            ),
            (
                r#"{"id":"3","type":"BOUNCE","duration":null}"#,
                ToAgent::Bounce {
                    id: "3".into(),
                    duration: None,
                },
            ),
            (
                r#"{"id":"4","type":"KICK","reason":"bye"}"#,
                ToAgent::Kick {
                    id: "4".into(),
                    reason: Some("bye".into()),
                },
            ),
            (
                r#"{"id":"5","type":"EVENT_ACK","event":"e","task":"2","seq":4}"#,
                ToAgent::EventAck {
                    id: "5".into(),
                    event: "e".into(),
                    task: Some("2".into()),
                    seq: Some(4),
                },
            ),
            (
                r#"{"id":"6","type":"HEARTBEAT"}"#,
                ToAgent::Heartbeat { id: "6".into() },
            ),
            (r#"{"id":"7","type":"PROVIDE","x":1}"#, ToAgent::Unknown),
        ];
        for (text, expected) in cases {
            assert_eq!(ToAgent::parse(text).expect(text), expected, "{text}");
        }
        assert_eq!(
            frame_type(r#"{"type":"PROVIDE"}"#).as_deref(),
            Some("PROVIDE")
        );
    }

    #[test]
    fn mirrored_task_events_are_typed() {
        let text = r#"{"id":"m","type":"YIELD_EVENT","task":"12","event":"99","seq":99,
            "returns":{"return0":1}}"#;
        let ToAgent::Execution(event) = ToAgent::parse(text).expect("parses") else {
            panic!("not an execution event");
        };
        assert_eq!(event.kind, "YIELD_EVENT");
        assert_eq!(event.task, "12");
        assert_eq!(event.event, "99");
        assert_eq!(event.seq, Some(99));
        assert_eq!(event.fields["returns"], json!({"return0": 1}));
        let again = ToAgent::parse(&ToAgent::Execution(event.clone()).to_json()).expect("parses");
        assert_eq!(again, ToAgent::Execution(event));
        for kind in ["STARTED_EVENT", "DISCONNECTED_EVENT", "FAILED_EVENT"] {
            let text = format!(r#"{{"type":"{kind}","task":"1","event":"2","seq":2}}"#);
            assert!(
                matches!(ToAgent::parse(&text), Ok(ToAgent::Execution(ref e)) if e.kind == kind),
                "{kind}"
            );
        }
        assert_eq!(
            ToAgent::parse(r#"{"type":"A_FRAME_FROM_THE_FUTURE","request":"r"}"#).expect("parses"),
            ToAgent::Unknown
        );
    }

    #[test]
    fn a_malformed_assign_still_names_its_task() {
        let deep = format!("{}1{}", "[".repeat(300), "]".repeat(300));
        for (args, step) in [
            ("null".to_string(), "null"),
            ("{}".to_string(), "\"yes\""),
            (r#"{"a":"\ud800"}"#.to_string(), "null"),
            (format!(r#"{{"a":{deep}}}"#), "null"),
        ] {
            let text = format!(
                r#"{{"type":"ASSIGN","id":"m","interface":"add","task":"t1","step":{step},"args":{args}}}"#
            );
            match ToAgent::parse(&text) {
                Err(MessageError::BadAssign { task, .. }) => assert_eq!(task, "t1"),
                other => panic!("{args} {step}: {other:?}"),
            }
        }
        assert!(matches!(
            ToAgent::parse(r#"{"type":"ASSIGN","task":5}"#),
            Err(MessageError::Schema(_))
        ));
    }

    #[test]
    fn a_parse_error_says_what_failed_and_keeps_the_parser_error_as_its_cause() {
        use std::error::Error as _;

        for text in ["{nope", r#"{"type":"CANCEL"}"#] {
            let error = ToAgent::parse(text).expect_err("refused");
            let cause = error
                .source()
                .expect("the parser's error is the cause")
                .to_string();
            assert!(!error.to_string().contains(&cause), "{error}");
            assert_eq!(
                crate::error_chain::ErrorChain(&error).to_string(),
                format!("{error}: {cause}")
            );
        }
    }

    #[test]
    fn tells_bad_json_from_bad_frames() {
        assert!(matches!(
            ToAgent::parse("{nope"),
            Err(MessageError::NotJson(_))
        ));
        assert!(matches!(
            ToAgent::parse(r#"{"type":"CANCEL"}"#),
            Err(MessageError::Schema(_))
        ));
        assert!(matches!(
            ToAgent::parse(r#"[1,2]"#),
            Err(MessageError::Schema(_))
        ));
        assert!(matches!(
            FromAgent::parse("\u{0}"),
            Err(MessageError::NotJson(_))
        ));
        assert!(matches!(
            FromAgent::parse(r#"{"type":"FAILED","task":"1"}"#),
            Err(MessageError::Schema(_))
        ));
        assert!(matches!(
            FromAgent::parse(r#"{"type":"REGISTER","token":"t","mode":"OBSERVER"}"#),
            Err(MessageError::Schema(_))
        ));
    }

    #[test]
    fn reports_have_the_wire_shape() {
        let mut report = Report::new(
            "1",
            ReportKind::Yield {
                returns: RawValue::from_string(r#"{"return0": 3}"#.into()).expect("raw"),
            },
        );
        report.seq = Some(2);
        let text = FromAgent::Report(report.clone()).to_json();
        let value: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(
            value,
            json!({"type": "YIELD", "task": "1", "id": report.id, "seq": 2, "returns": {"return0": 3}})
        );
        assert_eq!(
            FromAgent::parse(&text).expect("parses"),
            FromAgent::Report(report)
        );

        let log = Report::new(
            "9",
            ReportKind::Log {
                message: "hi".into(),
                level: LogLevel::Warn,
            },
        );
        let value: Value =
            serde_json::from_str(&FromAgent::Report(log.clone()).to_json()).expect("json");
        assert_eq!(
            value,
            json!({"type": "LOG", "task": "9", "id": log.id, "message": "hi", "level": "WARN"})
        );
        let failed = Report::new(
            "9",
            ReportKind::Failed {
                error: "argument 'a': missing".into(),
            },
        );
        assert!(failed.kind.is_terminal());
        assert!(!log.kind.is_terminal());
        assert_eq!(
            FromAgent::parse(&FromAgent::Report(failed.clone()).to_json()).expect("parses"),
            FromAgent::Report(failed)
        );
    }

    #[test]
    fn register_and_answers_round_trip() {
        let register = FromAgent::Register(Register {
            id: None,
            token: "tok".into(),
            session_id: Some("s1".into()),
            force: true,
        });
        let value: Value = serde_json::from_str(&register.to_json()).expect("json");
        assert_eq!(
            value,
            json!({"type": "REGISTER", "token": "tok", "session_id": "s1", "force": true})
        );
        assert_eq!(
            FromAgent::parse(&register.to_json()).expect("parses"),
            register
        );
        let answer = FromAgent::HeartbeatAnswer { id: "h".into() };
        assert_eq!(FromAgent::parse(&answer.to_json()).expect("parses"), answer);
        let init = FromAgent::parse(r#"{"type":"SESSION_INIT","session_id":"s","states":{}}"#)
            .expect("parses");
        assert!(matches!(init, FromAgent::SessionInit(ref s) if s.session_id == "s"));
        assert_eq!(
            FromAgent::parse(r#"{"type":"APP_CANCELLED"}"#).expect("parses"),
            FromAgent::Other("APP_CANCELLED".into())
        );
        let unlock =
            FromAgent::parse(r#"{"type":"UNLOCK","id":"u","key":"stage"}"#).expect("parses");
        assert_eq!(FromAgent::parse(&unlock.to_json()).expect("parses"), unlock);
        assert!(matches!(
            FromAgent::parse(r#"{"type":"STATE_PATCH"}"#),
            Err(MessageError::Schema(_))
        ));
        // A report without an id gets one.
        let FromAgent::Report(report) =
            FromAgent::parse(r#"{"type":"COMPLETED","task":"3"}"#).expect("parses")
        else {
            panic!("not a report");
        };
        assert!(!report.id.is_empty());
        assert_eq!(report.seq, None);
    }
}
