//! The severity of a log line, as a guest gives it and as the protocol's LOG report carries it.

use serde::{Deserialize, Serialize};

/// Severity of a log line; on the wire (a LOG report's `level`) `DEBUG`, `INFO`, `WARN`,
/// `ERROR` or `CRITICAL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LogLevel {
    /// Detail only a developer wants.
    Debug,
    /// Normal progress notes; also a guest's stdout, and what a LOG without a level means.
    Info,
    /// Something odd that did not stop the task; also a guest's stderr.
    Warn,
    /// Something failed.
    Error,
    /// Something is badly broken.
    Critical,
}

impl LogLevel {
    /// The wire name, e.g. `WARN`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warn => "WARN",
            LogLevel::Error => "ERROR",
            LogLevel::Critical => "CRITICAL",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LogLevel;

    #[test]
    fn serializes_by_its_wire_name() {
        for level in [
            LogLevel::Debug,
            LogLevel::Info,
            LogLevel::Warn,
            LogLevel::Error,
            LogLevel::Critical,
        ] {
            let wire = serde_json::to_string(&level).expect("serializes");
            assert_eq!(wire, format!("\"{}\"", level.as_str()));
            assert_eq!(serde_json::from_str::<LogLevel>(&wire).ok(), Some(level));
        }
        assert!(serde_json::from_str::<LogLevel>("\"WARNING\"").is_err());
    }
}
