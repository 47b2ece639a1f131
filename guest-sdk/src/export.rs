//! The thin layer between the WIT bindings and the plain-Rust runtime.

use std::rc::Rc;

use crate::bindings::arkitekt::rekuest::host;
use crate::bindings::exports::arkitekt::rekuest::actions;
use crate::context::{Context, Host, LogLevel};
use crate::runtime::{self, Action, RunError};

/// The host as the component's WIT imports reach it.
struct WitHost;

impl From<LogLevel> for host::LogLevel {
    fn from(level: LogLevel) -> Self {
        match level {
            LogLevel::Debug => host::LogLevel::Debug,
            LogLevel::Info => host::LogLevel::Info,
            LogLevel::Warn => host::LogLevel::Warn,
            LogLevel::Error => host::LogLevel::Error,
            LogLevel::Critical => host::LogLevel::Critical,
        }
    }
}

impl Host for WitHost {
    fn log(&self, level: LogLevel, message: &str) {
        host::log(level.into(), message);
    }

    fn progress(&self, percent: u8, message: Option<&str>) {
        host::progress(percent, message);
    }

    fn yield_returns(&self, returns_json: &str) {
        host::yield_returns(returns_json);
    }

    fn is_cancelled(&self) -> bool {
        host::is_cancelled()
    }

    fn task_token(&self) -> Option<String> {
        host::task_token()
    }
}

/// Sends a panic's message to the host as a CRITICAL log line: on wasm32-wasip2 the panic then
/// aborts (a trap), so this line is the only place the message survives.
fn report_panic(message: &str) {
    host::log(host::LogLevel::Critical, message);
}

/// The WIT `describe` export.
pub fn describe(actions: &[Action]) -> String {
    crate::panic::install_hook(report_panic);
    runtime::describe(actions)
}

/// The WIT `run` export.
pub fn run(actions: &[Action], key: &str, args_json: &str) -> Result<(), actions::RunError> {
    crate::panic::install_hook(report_panic);
    let ctx = Context::new(Rc::new(WitHost));
    runtime::run(actions, key, args_json, &ctx).map_err(|error| match error {
        RunError::Failed(message) => actions::RunError::Failed(message),
        RunError::Critical(message) => actions::RunError::Critical(message),
    })
}
