//! What outlives a task: memory shelves and agent states. The runtime keeps none of it: each
//! `keep` import goes to a [`KeepPort`] (the agent), which bounds and stores it.

use std::future::Future;
use std::pin::Pin;

use super::bindings::arkitekt::rekuest::keep::Host;
use super::host_api::TaskState;

/// A shelving in progress (it registers the drawer with the server).
pub type Shelving = Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;

/// Where a task's shelves and states live: implemented by the agent.
pub trait KeepPort: Send + Sync {
    /// Keeps `value_json` under a new drawer for a structure named `identifier`; its id.
    fn shelve(&self, identifier: String, value_json: String) -> Shelving;
    /// The value kept in `drawer`.
    fn unshelve(&self, drawer: &str) -> Result<String, String>;
    /// The current value of state `name` as JSON.
    fn get_state(&self, name: &str) -> Result<String, String>;
    /// Replaces state `name` with `value_json`, on behalf of `task`.
    fn set_state(&self, task: &str, name: &str, value_json: &str) -> Result<(), String>;
}

/// Why a run without an agent (e.g. `rekuest-host call`) cannot keep anything.
const NO_AGENT: &str = "shelves and agent states live in a serving agent: this task was not \
                        assigned by a rekuest server (run it with `rekuest-host dev` or `serve`)";

impl TaskState {
    fn keep_port(&self) -> Result<(&dyn KeepPort, &str), String> {
        match &self.calls {
            Some(calls) => match &calls.keep {
                Some(keep) => Ok((keep.as_ref(), calls.task.as_str())),
                None => Err(NO_AGENT.to_string()),
            },
            None => Err(NO_AGENT.to_string()),
        }
    }
}

impl Host for TaskState {
    async fn shelve(
        &mut self,
        identifier: String,
        value_json: String,
    ) -> wasmtime::Result<Result<String, String>> {
        let shelving = match self.keep_port() {
            Ok((keep, _)) => keep.shelve(identifier, value_json),
            Err(reason) => return Ok(Err(reason)),
        };
        Ok(shelving.await)
    }

    async fn unshelve(&mut self, drawer: String) -> wasmtime::Result<Result<String, String>> {
        Ok(self
            .keep_port()
            .and_then(|(keep, _)| keep.unshelve(&drawer)))
    }

    async fn get_state(&mut self, name: String) -> wasmtime::Result<Result<String, String>> {
        Ok(self.keep_port().and_then(|(keep, _)| keep.get_state(&name)))
    }

    async fn set_state(
        &mut self,
        name: String,
        value_json: String,
    ) -> wasmtime::Result<Result<(), String>> {
        Ok(self
            .keep_port()
            .and_then(|(keep, task)| keep.set_state(task, &name, &value_json)))
    }
}
