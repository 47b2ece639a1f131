//! The thin layer between the WIT bindings and the plain-Rust definitions and dispatch.

use std::rc::Rc;

use crate::bindings::arkitekt::rekuest::{calls, host, keep};
use crate::bindings::exports::arkitekt::rekuest::actions;
use crate::call::{CallError, ChildStream, Target};
use crate::context::{Context, Host, LogLevel};
use crate::definition;
use crate::dispatch::{self, Action, RunError};

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

    fn get_state(&self, key: &str) -> Result<String, String> {
        keep::get_state(key)
    }

    fn set_state(&self, key: &str, value_json: &str) -> Result<(), String> {
        keep::set_state(key, value_json)
    }

    fn call(&self, target: &Target, args_json: &str) -> Result<Box<dyn ChildStream>, CallError> {
        let target = match target {
            Target::Dependency(slot) => calls::Target::Dependency(slot.clone()),
            Target::ActionHash(hash) => calls::Target::ActionHash(hash.clone()),
            Target::AgentInterface { agent, interface } => {
                calls::Target::AgentInterface(calls::AgentInterface {
                    agent: agent.clone(),
                    interface: interface.clone(),
                })
            }
        };
        let child = calls::call(&target, args_json).map_err(call_error)?;
        Ok(Box::new(WitChild(child)))
    }
}

/// A child call as the WIT resource; dropping it stops the child if it still runs.
struct WitChild(calls::Child);

impl ChildStream for WitChild {
    fn next(&mut self) -> Result<Option<String>, CallError> {
        self.0.next().map_err(call_error)
    }
}

fn call_error(error: calls::CallError) -> CallError {
    match error {
        calls::CallError::Refused(reason) => CallError::Refused(reason),
        calls::CallError::Failed(error) => CallError::Failed(error),
        calls::CallError::Critical(error) => CallError::Critical(error),
        calls::CallError::Cancelled(reason) => CallError::Cancelled(reason),
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
    definition::describe(actions)
}

/// The WIT `run` export.
pub fn run(actions: &[Action], key: &str, args_json: &str) -> Result<(), actions::RunError> {
    crate::panic::install_hook(report_panic);
    let ctx = Context::new(Rc::new(WitHost));
    dispatch::run(actions, key, args_json, &ctx).map_err(|error| match error {
        RunError::Failed(message) => actions::RunError::Failed(message),
        RunError::Critical(message) => actions::RunError::Critical(message),
    })
}
