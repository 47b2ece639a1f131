//! The frames about what outlives a task: agent states (`STATE_PATCH`, `STATE_SNAPSHOT`,
//! after the connection's `SESSION_INIT`) and locks (`LOCK`, `UNLOCK`). None is acknowledged.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A frame from the agent about its states or locks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum KeepFrame {
    /// One JSON Patch operation on one state.
    StatePatch {
        /// A fresh id of the agent's choosing for this frame.
        #[serde(default)]
        id: String,
        /// The per-process id.
        session_id: String,
        /// One counter for all states of this process, from 1.
        global_rev: u64,
        /// The state's key.
        state_name: String,
        /// Seconds since the Unix epoch.
        ts: f64,
        /// `add`, `remove` or `replace`.
        op: String,
        /// JSON Pointer into the state (`/count`, or `` for the whole value).
        path: String,
        /// The new value (null for `remove`).
        #[serde(default)]
        value: Value,
        /// The value before.
        #[serde(default)]
        old_value: Value,
        /// The task that changed the state.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task_id: Option<String>,
    },
    /// Every state's full value at revision `global_rev`.
    StateSnapshot {
        /// A fresh id of the agent's choosing for this frame.
        #[serde(default)]
        id: String,
        /// The per-process id.
        session_id: String,
        /// The revision the snapshots are at.
        global_rev: u64,
        /// Values by state key.
        snapshots: Map<String, Value>,
    },
    /// The task `task` took the lock `key`.
    Lock {
        /// A fresh id of the agent's choosing for this frame.
        #[serde(default)]
        id: String,
        /// The lock's key, as the action declared it (`#[register(lock = ...)]`).
        key: String,
        /// The task holding it.
        task: String,
    },
    /// The lock `key` was released.
    Unlock {
        /// A fresh id of the agent's choosing for this frame.
        #[serde(default)]
        id: String,
        /// The lock's key, as the action declared it (`#[register(lock = ...)]`).
        key: String,
    },
}

impl KeepFrame {
    /// The wire types of these frames.
    pub const TYPES: [&'static str; 4] = ["STATE_PATCH", "STATE_SNAPSHOT", "LOCK", "UNLOCK"];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_their_wire_type_and_round_trip() {
        let frame = KeepFrame::Lock {
            id: "1".into(),
            key: "stage".into(),
            task: "7".into(),
        };
        let text = serde_json::to_string(&frame).expect("serializes");
        assert_eq!(
            serde_json::from_str::<Value>(&text).expect("json")["type"],
            "LOCK"
        );
        assert_eq!(
            serde_json::from_str::<KeepFrame>(&text).expect("parses"),
            frame
        );
    }
}
