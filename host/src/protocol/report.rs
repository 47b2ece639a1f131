//! Reports about a task (`STARTED`, `LOG`, `YIELD`, ..., `COMPLETED`), their wire types, and
//! the server's task event kinds that a caller sees (the report types plus the server's own,
//! such as `ASSIGNED` or `CANCELLING`). Each wire name is spelled once, here.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};

use serde::de::Error as _;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;

use super::MessageError;

/// Severity of a LOG report: the wire's `level` (the model shared with the guest SDK).
pub use rekuest_definition::LogLevel;

/// The `type` of a report, without its fields; what acknowledgement and retention decide on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportType {
    /// `STARTED`: the task began.
    Started,
    /// `PROGRESS`: a percentage and/or a text.
    Progress,
    /// `LOG`: a log line with a level.
    Log,
    /// `YIELD`: one set of returns.
    Yield,
    /// `COMPLETED`: ended well.
    Completed,
    /// `FAILED`: ended with an error meant for the caller.
    Failed,
    /// `CRITICAL`: ended by a crash or a host bug.
    Critical,
    /// `CANCELLED`: stopped by CANCEL.
    Cancelled,
    /// `INTERRUPTED`: stopped by INTERRUPT.
    Interrupted,
    /// `PAUSED`: parked by PAUSE.
    Paused,
    /// `RESUMED`: continued by RESUME.
    Resumed,
}

impl ReportType {
    /// Every report type, in the order of the protocol.
    pub const ALL: [ReportType; 11] = [
        ReportType::Started,
        ReportType::Progress,
        ReportType::Log,
        ReportType::Yield,
        ReportType::Completed,
        ReportType::Failed,
        ReportType::Critical,
        ReportType::Cancelled,
        ReportType::Interrupted,
        ReportType::Paused,
        ReportType::Resumed,
    ];

    /// The wire `type`, e.g. `COMPLETED`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportType::Started => "STARTED",
            ReportType::Progress => "PROGRESS",
            ReportType::Log => "LOG",
            ReportType::Yield => "YIELD",
            ReportType::Completed => "COMPLETED",
            ReportType::Failed => "FAILED",
            ReportType::Critical => "CRITICAL",
            ReportType::Cancelled => "CANCELLED",
            ReportType::Interrupted => "INTERRUPTED",
            ReportType::Paused => "PAUSED",
            ReportType::Resumed => "RESUMED",
        }
    }

    /// The report type a wire `type` names, if it names one.
    pub fn from_wire(kind: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|known| known.as_str() == kind)
    }

    /// Whether this ends its task: the agent keeps it until the server acknowledges it, and
    /// the server ignores later reports of the task.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            ReportType::Completed
                | ReportType::Failed
                | ReportType::Critical
                | ReportType::Cancelled
                | ReportType::Interrupted
        )
    }

    /// Whether the server confirms it with EVENT_ACK: all but the streaming types (`LOG`,
    /// `PROGRESS`, `YIELD`).
    pub fn is_acked(self) -> bool {
        !matches!(
            self,
            ReportType::Log | ReportType::Progress | ReportType::Yield
        )
    }
}

impl fmt::Display for ReportType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// Hashes as its wire name, so a map keyed by report type can be looked up by that name
// (`Borrow<str>` below requires equal hashes for equal keys).
impl Hash for ReportType {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl Borrow<str> for ReportType {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

/// What a report says about its task.
#[derive(Debug, Clone)]
pub enum ReportKind {
    /// The task began.
    Started,
    /// Progress, in percent, with optional text.
    Progress {
        /// Percent done, 0..=100, if the action said.
        progress: Option<i64>,
        /// Text shown with the percentage.
        message: Option<String>,
    },
    /// A log line.
    Log {
        /// The log line, already cut to the output caps.
        message: String,
        /// How severe the line is (the server's five levels).
        level: LogLevel,
    },
    /// Returns, keyed `return0`, `return1`, ...
    Yield {
        /// The returns object, as JSON text.
        returns: Box<RawValue>,
    },
    /// Ended well (terminal).
    Completed,
    /// Ended with an error meant for the caller (terminal).
    Failed {
        /// What went wrong, for the caller (cut to the output caps).
        error: String,
    },
    /// Ended by a crash or a host bug (terminal).
    Critical {
        /// What crashed, for the caller and the operator (cut to the output caps).
        error: String,
    },
    /// Stopped by CANCEL (terminal).
    Cancelled,
    /// Stopped by INTERRUPT (terminal).
    Interrupted,
    /// Parked by PAUSE.
    Paused,
    /// Continued by RESUME.
    Resumed,
}

impl PartialEq for ReportKind {
    fn eq(&self, other: &Self) -> bool {
        use ReportKind::*;
        match (self, other) {
            (Yield { returns: a }, Yield { returns: b }) => a.get() == b.get(),
            (
                Progress {
                    progress: a,
                    message: m,
                },
                Progress {
                    progress: b,
                    message: n,
                },
            ) => a == b && m == n,
            (
                Log {
                    message: a,
                    level: l,
                },
                Log {
                    message: b,
                    level: m,
                },
            ) => a == b && l == m,
            (Failed { error: a }, Failed { error: b })
            | (Critical { error: a }, Critical { error: b }) => a == b,
            _ => self.report_type() == other.report_type(),
        }
    }
}

impl ReportKind {
    /// The report's `type`.
    pub fn report_type(&self) -> ReportType {
        match self {
            ReportKind::Started => ReportType::Started,
            ReportKind::Progress { .. } => ReportType::Progress,
            ReportKind::Log { .. } => ReportType::Log,
            ReportKind::Yield { .. } => ReportType::Yield,
            ReportKind::Completed => ReportType::Completed,
            ReportKind::Failed { .. } => ReportType::Failed,
            ReportKind::Critical { .. } => ReportType::Critical,
            ReportKind::Cancelled => ReportType::Cancelled,
            ReportKind::Interrupted => ReportType::Interrupted,
            ReportKind::Paused => ReportType::Paused,
            ReportKind::Resumed => ReportType::Resumed,
        }
    }

    /// Whether this ends its task (see [`ReportType::is_terminal`]).
    pub fn is_terminal(&self) -> bool {
        self.report_type().is_terminal()
    }

    /// The error text of FAILED and CRITICAL.
    pub fn error(&self) -> Option<&str> {
        match self {
            ReportKind::Failed { error } | ReportKind::Critical { error } => Some(error),
            _ => None,
        }
    }
}

/// A report about one task: `{"type", "task", "id", "seq", ...}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The id of the task it reports on, as ASSIGN gave it.
    pub task: String,
    /// This report's own id (EVENT_ACK names it).
    pub id: String,
    /// Per-connection sequence number, stamped when sent.
    pub seq: Option<u64>,
    /// What it says.
    pub kind: ReportKind,
}

impl Report {
    /// A new report with a fresh uuid and no seq yet.
    pub fn new(task: impl Into<String>, kind: ReportKind) -> Self {
        Report {
            task: task.into(),
            id: uuid::Uuid::new_v4().to_string(),
            seq: None,
            kind,
        }
    }

    /// Parses a report frame whose `type` is `kind`. A report without an `id` gets a fresh
    /// one, as the server does; returns stay the sender's text.
    pub(super) fn parse(kind: ReportType, text: &str) -> Result<Self, MessageError> {
        let frame: ReportFrame = serde_json::from_str(text).map_err(MessageError::Schema)?;
        let missing = |field: &str| {
            MessageError::Schema(serde_json::Error::custom(format_args!(
                "missing field `{field}`"
            )))
        };
        let kind = match kind {
            ReportType::Started => ReportKind::Started,
            ReportType::Progress => ReportKind::Progress {
                progress: frame.progress,
                message: frame.message,
            },
            ReportType::Log => ReportKind::Log {
                message: frame.message.ok_or_else(|| missing("message"))?,
                level: frame.level.unwrap_or(LogLevel::Info),
            },
            ReportType::Yield => ReportKind::Yield {
                returns: match frame.returns {
                    Some(returns) => returns,
                    None => RawValue::from_string("null".into()).map_err(MessageError::Schema)?,
                },
            },
            ReportType::Completed => ReportKind::Completed,
            ReportType::Failed => ReportKind::Failed {
                error: frame.error.ok_or_else(|| missing("error"))?,
            },
            ReportType::Critical => ReportKind::Critical {
                error: frame.error.ok_or_else(|| missing("error"))?,
            },
            ReportType::Cancelled => ReportKind::Cancelled,
            ReportType::Interrupted => ReportKind::Interrupted,
            ReportType::Paused => ReportKind::Paused,
            ReportType::Resumed => ReportKind::Resumed,
        };
        Ok(Report {
            task: frame.task,
            id: frame.id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            seq: frame.seq,
            kind,
        })
    }
}

impl Serialize for Report {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("type", self.kind.report_type().as_str())?;
        map.serialize_entry("task", &self.task)?;
        map.serialize_entry("id", &self.id)?;
        if let Some(seq) = self.seq {
            map.serialize_entry("seq", &seq)?;
        }
        match &self.kind {
            ReportKind::Progress { progress, message } => {
                map.serialize_entry("progress", progress)?;
                map.serialize_entry("message", message)?;
            }
            ReportKind::Log { message, level } => {
                map.serialize_entry("message", message)?;
                map.serialize_entry("level", level)?;
            }
            ReportKind::Yield { returns } => map.serialize_entry("returns", returns)?,
            ReportKind::Failed { error } | ReportKind::Critical { error } => {
                map.serialize_entry("error", error)?;
            }
            ReportKind::Started
            | ReportKind::Completed
            | ReportKind::Cancelled
            | ReportKind::Interrupted
            | ReportKind::Paused
            | ReportKind::Resumed => {}
        }
        map.end()
    }
}

/// The fields any report may have; which are required depends on the type.
#[derive(Deserialize)]
struct ReportFrame {
    task: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    progress: Option<i64>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    level: Option<LogLevel>,
    #[serde(default)]
    returns: Option<Box<RawValue>>,
    #[serde(default)]
    error: Option<String>,
}

/// The kind of a task event as the server records it and shows a caller: a report's type,
/// or one of the server's own (`ASSIGNED`, `DISCONNECTED`, and the controls it passed on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskEventKind {
    /// A report of this type arrived from the agent.
    Report(ReportType),
    /// The server assigned the task to an agent.
    Assigned,
    /// The agent went away and did not come back in time: the task's fate is unknown and a
    /// later report may still come.
    Disconnected,
    /// The server passed a CANCEL on to the agent.
    Cancelling,
    /// The server passed an INTERRUPT on to the agent.
    Interrupting,
    /// The server passed a PAUSE on to the agent.
    Pausing,
    /// The server passed a RESUME on to the agent.
    Resuming,
}

impl TaskEventKind {
    /// The server's own kinds (those that record no report).
    const SERVER_OWN: [TaskEventKind; 6] = [
        TaskEventKind::Assigned,
        TaskEventKind::Disconnected,
        TaskEventKind::Cancelling,
        TaskEventKind::Interrupting,
        TaskEventKind::Pausing,
        TaskEventKind::Resuming,
    ];

    /// The wire name, e.g. `CANCELLING` (a mirrored event's `type` adds `_EVENT`).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskEventKind::Report(report) => report.as_str(),
            TaskEventKind::Assigned => "ASSIGNED",
            TaskEventKind::Disconnected => "DISCONNECTED",
            TaskEventKind::Cancelling => "CANCELLING",
            TaskEventKind::Interrupting => "INTERRUPTING",
            TaskEventKind::Pausing => "PAUSING",
            TaskEventKind::Resuming => "RESUMING",
        }
    }

    /// The report type this event records, if it records a report.
    pub fn report_type(self) -> Option<ReportType> {
        match self {
            TaskEventKind::Report(report) => Some(report),
            _ => None,
        }
    }

    /// The kind a mirrored event's wire `type` names (`YIELD_EVENT` → `Report(Yield)`); `None`
    /// for kinds this host does not know, which the real server may add at any time.
    pub fn from_mirrored(kind: &str) -> Option<Self> {
        let name = kind.strip_suffix(super::messages::EXECUTION_EVENT_SUFFIX)?;
        match ReportType::from_wire(name) {
            Some(report) => Some(TaskEventKind::Report(report)),
            None => Self::SERVER_OWN
                .into_iter()
                .find(|known| known.as_str() == name),
        }
    }

    /// Whether the task is over after this event, as far as a caller is concerned
    /// (`DISCONNECTED` is not: a later report may still come).
    pub fn is_terminal(self) -> bool {
        self.report_type().is_some_and(ReportType::is_terminal)
    }
}

impl From<ReportType> for TaskEventKind {
    fn from(report: ReportType) -> Self {
        TaskEventKind::Report(report)
    }
}

impl Serialize for TaskEventKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl fmt::Display for TaskEventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compares with a wire name, so `event.kind == "COMPLETED"` reads as the protocol does.
impl PartialEq<str> for TaskEventKind {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for TaskEventKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_report_type_round_trips_its_wire_name() {
        for kind in ReportType::ALL {
            assert_eq!(ReportType::from_wire(kind.as_str()), Some(kind));
            let event = TaskEventKind::from(kind);
            assert_eq!(event.as_str(), kind.as_str());
            assert_eq!(event.report_type(), Some(kind));
            assert_eq!(event.is_terminal(), kind.is_terminal());
            let mirrored = format!("{kind}_EVENT");
            assert_eq!(TaskEventKind::from_mirrored(&mirrored), Some(event));
        }
        assert_eq!(ReportType::from_wire("HEARTBEAT_ANSWER"), None);
        assert_eq!(ReportType::from_wire("completed"), None);
    }

    #[test]
    fn terminal_and_acked_sets_match_the_protocol() {
        let names = |keep: fn(ReportType) -> bool| -> Vec<&str> {
            ReportType::ALL
                .into_iter()
                .filter(|kind| keep(*kind))
                .map(ReportType::as_str)
                .collect()
        };
        assert_eq!(
            names(ReportType::is_terminal),
            [
                "COMPLETED",
                "FAILED",
                "CRITICAL",
                "CANCELLED",
                "INTERRUPTED"
            ]
        );
        assert_eq!(
            names(ReportType::is_acked),
            [
                "STARTED",
                "COMPLETED",
                "FAILED",
                "CRITICAL",
                "CANCELLED",
                "INTERRUPTED",
                "PAUSED",
                "RESUMED"
            ]
        );
    }

    #[test]
    fn server_event_kinds_have_their_names_and_unknown_mirrors_are_none() {
        assert_eq!(
            TaskEventKind::from_mirrored("DISCONNECTED_EVENT"),
            Some(TaskEventKind::Disconnected)
        );
        assert!(!TaskEventKind::Disconnected.is_terminal());
        assert_eq!(TaskEventKind::from_mirrored("A_FUTURE_KIND_EVENT"), None);
        assert_eq!(TaskEventKind::from_mirrored("COMPLETED"), None);
        assert_eq!(
            serde_json::to_value(TaskEventKind::Interrupting).expect("json"),
            "INTERRUPTING"
        );
        assert!(TaskEventKind::Report(ReportType::Cancelled) == "CANCELLED");
    }

    #[test]
    fn log_levels_parse_and_a_missing_level_is_info() {
        let warn = Report::parse(
            ReportType::Log,
            r#"{"type":"LOG","task":"1","message":"m","level":"WARN"}"#,
        )
        .expect("parses");
        assert_eq!(
            warn.kind,
            ReportKind::Log {
                message: "m".into(),
                level: LogLevel::Warn
            }
        );
        let plain = Report::parse(
            ReportType::Log,
            r#"{"type":"LOG","task":"1","message":"m"}"#,
        )
        .expect("parses");
        assert!(matches!(
            plain.kind,
            ReportKind::Log {
                level: LogLevel::Info,
                ..
            }
        ));
    }
}
