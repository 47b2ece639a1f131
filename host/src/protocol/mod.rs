//! The rekuest agent protocol: the socket's frames, its close codes, and the endpoints a
//! deployment's base URL gives.

pub mod endpoints;
pub mod keep;
pub mod messages;
pub mod report;

pub use endpoints::{EndpointError, Endpoints};
pub use keep::KeepFrame;
pub use messages::{
    Assign, AssignRequest, ChildControl, ExecutionEvent, FromAgent, Inquiry, MessageError,
    Register, SessionInit, ToAgent,
};
pub use report::{LogLevel, Report, ReportKind, ReportType, TaskEventKind};

/// Read buffer of a protocol WebSocket. tungstenite zero-fills the free part of its read
/// buffer before every read; at its 128 KiB default that memset was 15% of an agent's CPU
/// per task. Protocol frames are a few hundred bytes; larger ones simply take several reads.
pub const SOCKET_READ_BUFFER: usize = 4 * 1024;

/// Close codes of the agent socket, as the server uses them.
pub mod close_code {
    /// A HEARTBEAT was not answered in time.
    pub const HEARTBEAT_NOT_RESPONDED: u16 = 3001;
    /// A frame was binary or not JSON.
    pub const NOT_JSON: u16 = 3002;
    /// A frame did not match the schema, REGISTER was not first or was refused (bad token,
    /// agent not ensured), or a second REGISTER came.
    pub const SCHEMA_MISMATCH: u16 = 3003;
    /// The agent is blocked on the server.
    pub const AGENT_BLOCKED: u16 = 4003;
    /// Another connection holds this agent (and REGISTER had no `force`).
    pub const ALREADY_CONNECTED: u16 = 4004;
    /// A forced connection for the same agent replaced this one.
    pub const REPLACED: u16 = 4005;
}
